//! txn::open: the order of the steps that open a connection, without
//! I/O. The session runs the step `Opening::step` names (writes its
//! command, reads its reply, does the TLS handshake) and reports back;
//! this decides what comes next.
//!
//! ```text
//!  Banner ─▶ Greet ─▶ StartTls ─220, handshake─▶ Greet ─▶ Xclient ─2xx─▶ Greet ─▶ Auth ─▶ Ready
//!    │ (-o)             │ (not asked, or            ▲        (not asked) ─────────────▲  (not asked)
//!    ▼                  │  refused/absent under      │
//!  Ready                └── --tls=may: plaintext) ───┴──────────────▶ Xclient ...
//! ```
//!
//! Each step is taken at most once, the greeting after each of the
//! steps that make the server start over (STARTTLS, XCLIENT, RFC 3207
//! §4.2). A step that ends the connection (refused under -A, 421/521)
//! is the session's to act on: it stops asking.

/// A step of opening a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenStep {
    /// Read the server's greeting banner.
    Banner,
    /// HELO, EHLO or LHLO.
    Greet,
    /// STARTTLS and the TLS handshake.
    StartTls,
    Xclient,
    /// The whole AUTH exchange.
    Auth,
    /// Ready for transactions.
    Ready,
}

/// Which steps the plan asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenPlan {
    /// A greeting at all (not -o).
    pub greet: bool,
    /// STARTTLS (--tls without --tls-wrapper).
    pub starttls: bool,
    pub xclient: bool,
    pub auth: bool,
}

/// Where opening a connection stands.
#[derive(Debug, Clone)]
pub(crate) struct Opening {
    plan: OpenPlan,
    step: OpenStep,
    starttls_done: bool,
    xclient_done: bool,
    /// STARTTLS was skipped (--tls=may): no greeting again.
    plaintext: bool,
}

impl Opening {
    pub(crate) fn new(plan: OpenPlan) -> Opening {
        Opening {
            plan,
            step: OpenStep::Banner,
            starttls_done: false,
            xclient_done: false,
            plaintext: false,
        }
    }

    /// The step to run now.
    pub(crate) fn step(&self) -> OpenStep {
        self.step
    }

    /// STARTTLS went no further (--tls=may, not offered or refused):
    /// the connection goes on in plaintext, without greeting again.
    pub(crate) fn plaintext(&mut self) {
        debug_assert_eq!(self.step, OpenStep::StartTls);
        self.plaintext = true;
    }

    /// The current step went through (or, under -A, was refused in a way
    /// the connection survives): on to the next.
    pub(crate) fn advance(&mut self) {
        self.step = match self.step {
            OpenStep::Banner if self.plan.greet => OpenStep::Greet,
            OpenStep::Banner => OpenStep::Ready,
            OpenStep::Greet => self.after_greeting(),
            OpenStep::StartTls => {
                self.starttls_done = true;
                if std::mem::take(&mut self.plaintext) {
                    self.after_greeting()
                } else {
                    OpenStep::Greet
                }
            }
            OpenStep::Xclient => {
                self.xclient_done = true;
                OpenStep::Greet
            }
            OpenStep::Auth | OpenStep::Ready => OpenStep::Ready,
        };
    }

    /// The first secure step not yet taken, in wire order.
    fn after_greeting(&self) -> OpenStep {
        let p = &self.plan;
        if p.starttls && !self.starttls_done {
            OpenStep::StartTls
        } else if p.xclient && !self.xclient_done {
            OpenStep::Xclient
        } else if p.auth {
            OpenStep::Auth
        } else {
            OpenStep::Ready
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OpenStep::*;

    /// The steps taken when every one goes through.
    fn walk(plan: OpenPlan, plaintext_at_starttls: bool) -> Vec<OpenStep> {
        let mut o = Opening::new(plan);
        let mut seen = vec![o.step()];
        while o.step() != Ready {
            if o.step() == StartTls && plaintext_at_starttls {
                o.plaintext();
            }
            o.advance();
            seen.push(o.step());
            assert!(seen.len() < 20, "no end: {seen:?}");
        }
        seen
    }

    const NONE: OpenPlan = OpenPlan {
        greet: true,
        starttls: false,
        xclient: false,
        auth: false,
    };

    #[test]
    fn plain_greeting() {
        assert_eq!(walk(NONE, false), [Banner, Greet, Ready]);
        let o = OpenPlan {
            greet: false,
            ..NONE
        };
        assert_eq!(walk(o, false), [Banner, Ready]);
    }

    #[test]
    fn every_secure_step_greets_again_where_the_server_starts_over() {
        let all = OpenPlan {
            greet: true,
            starttls: true,
            xclient: true,
            auth: true,
        };
        assert_eq!(
            walk(all, false),
            [Banner, Greet, StartTls, Greet, Xclient, Greet, Auth, Ready]
        );
        // --tls=may and no STARTTLS: on in plaintext, no second greeting.
        assert_eq!(
            walk(all, true),
            [Banner, Greet, StartTls, Xclient, Greet, Auth, Ready]
        );
    }

    #[test]
    fn single_steps() {
        let tls = OpenPlan {
            starttls: true,
            ..NONE
        };
        assert_eq!(walk(tls, false), [Banner, Greet, StartTls, Greet, Ready]);
        let auth = OpenPlan { auth: true, ..NONE };
        assert_eq!(walk(auth, false), [Banner, Greet, Auth, Ready]);
        let x = OpenPlan {
            xclient: true,
            ..NONE
        };
        assert_eq!(walk(x, false), [Banner, Greet, Xclient, Greet, Ready]);
    }
}
