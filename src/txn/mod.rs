//! txn: the transaction core, without I/O. One `Txn` is one message's
//! transaction on a connection: it says which command to write next,
//! takes each reply, applies the -A policy, and keeps the message's and
//! its recipients' accounting. It never touches a socket, a clock or a
//! terminal: the session writes what it says, reads a reply, hands it
//! back, and prints the warnings it is told to print.
//!
//! ```text
//!            ┌─────────────────────── 421/521 (-A) or connection lost ──┐
//!            │                                                          ▼
//!  Mail ─2xx─▶ Rcpt × r ─any 2xx─▶ Data ─354─▶ Content ─▶ End × n ─▶ Done
//!   │ refused    │ none 2xx         │ refused     (BDAT n LAST    │
//!   ▼            ▼                  ▼              carries it)     │ BDAT refused
//!  Rset ◀────────┴──────────────────┘                              ▼
//!   │                                                             Rset
//!   └──────────────────────────────────────────────────────────────▶ Done
//! ```
//!
//! `n` is 1, or with LMTP one reply per accepted recipient. Lock-step
//! and pipelined sending are two ways of driving the same `Txn`:
//! lock-step takes one command, then its reply; pipelined takes MAIL,
//! every RCPT and DATA (or BDAT and the content, once the connection
//! has shown it reads groups) before the first reply. In a group a
//! reply that only follows from an earlier refusal (RCPT after a
//! refused MAIL, DATA with no recipient) is `Quiet`; a 354 to such a
//! DATA is answered with a lone dot, and the message is rejected.
//!
//! The steps before the first transaction (banner, greeting, STARTTLS,
//! XCLIENT, AUTH) are ordered by `open`, the same way: the core says
//! which step is next, the session runs it.
//!
//! Accounting: every message ends in exactly one `Fate`, every RCPT
//! written in exactly one `Fate` of its own; `Txn::cut` decides what a
//! connection's death means for what was written and not answered (see
//! `Cut`). The session moves the counts to the report as they happen
//! (`take_tally`).
//!
//! A command handed out is not yet written: the session reports each
//! write back (`Txn::written`), and only then does a RCPT count as
//! sent. A write refused by a halt, or cut part-way, leaves the
//! commands that did not go out whole unsent: they are in no count,
//! since no server can have read them. So a RCPT is sent exactly when
//! every byte of it left the client, and a server never reads more
//! RCPTs than were sent.

pub(crate) mod open;
#[cfg(test)]
mod prop;
#[cfg(test)]
mod tests;

use crate::error::Stage;

/// How a message or a recipient ended, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Its 2xx (the end of data's, or with LMTP at least one
    /// recipient's; for a recipient its RCPT's) reached us.
    Accepted,
    /// A reply refused it.
    Rejected,
    /// No reply will come: the connection closed (421/521) or died.
    Failed,
}

/// What a refusal does: ends the run, or (-A) is warned about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusals {
    Fatal,
    /// -A: refusals are warnings, 421/521 close the connection.
    Allowed,
}

/// What a reply said to the command it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Said {
    /// What the step wanted (2xx; 354 to DATA).
    Yes,
    No,
    /// A refusal that only follows from an earlier one in the same
    /// group (503 to RCPT after a refused MAIL, 554 to DATA with no
    /// recipient): lock-step would not have sent the command at all.
    Echo,
}

/// The plan's settings a transaction follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    pub refusals: Refusals,
    /// -L: one end-of-data reply per accepted recipient.
    pub lmtp: bool,
    /// The message goes out as `BDAT <n> LAST` (asked for and offered).
    pub bdat: bool,
    /// MAIL, RCPT and DATA go out as one group (asked for and offered).
    pub pipelined: bool,
    /// The connection has shown it reads groups (a MAIL accepted in one):
    /// a BDAT chunk may join the group.
    pub proven: bool,
    /// -r.
    pub recipients: u32,
}

/// A command the session is to write next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Mail,
    /// One RCPT; `left` counts it and those after it (`r` first, then
    /// down to 1: the 3.7 count-down numbering reads it).
    Rcpt {
        left: u32,
    },
    Data,
    /// The message: headers, body and dot, or `BDAT <n> LAST` and the
    /// headers and body.
    Content,
    /// The end of a message no recipient is to get (a 354 after a
    /// group's refusals).
    LoneDot,
    Rset,
}

/// What a reply means, by the -A policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heard {
    Positive,
    /// A refusal to warn about (-A).
    Refused,
    /// A refusal that only follows from an earlier one: not warned.
    Quiet,
    /// 421/521 under -A: warn, then close without QUIT.
    Closing,
    /// A refusal without -A: the run ends.
    Fatal,
}

/// The refusal policy of -A (`allow_reject`).
pub(crate) fn refusals(allow_reject: bool) -> Refusals {
    if allow_reject {
        Refusals::Allowed
    } else {
        Refusals::Fatal
    }
}

/// The -A policy, once for every stage of a connection: without -A a
/// refusal is fatal; with it, a warning, and 421/521 close the
/// connection. An echoed refusal is not warned about unless it closes.
pub(crate) fn judge(refusals: Refusals, code: u16, said: Said) -> Heard {
    let closing = code == 421 || code == 521;
    match (said, refusals) {
        (Said::Yes, _) => Heard::Positive,
        (Said::Echo, _) if !closing => Heard::Quiet,
        (_, Refusals::Fatal) => Heard::Fatal,
        (_, Refusals::Allowed) if closing => Heard::Closing,
        (_, Refusals::Allowed) => Heard::Refused,
    }
}

/// Why a transaction ends before its last reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The connection died (EOF, reset, timeout, a failed write) or a
    /// fatal error ended the session: the message, if it has no fate
    /// yet, failed, and so did every RCPT written and not answered. A
    /// message whose MAIL was never written fails too: it is never sent
    /// again on another connection (the reference does not either).
    Lost,
    /// The run was halted (fatal error elsewhere, or a signal): nothing
    /// is decided, what was in flight stays unknown.
    Halted,
}

/// Counts to move to the report: what happened since the last take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub message: Option<Fate>,
    pub rcpt_sent: u64,
    pub rcpt_accepted: u64,
    pub rcpt_rejected: u64,
    pub rcpt_failed: u64,
}

/// Which reply the transaction waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Await {
    Mail,
    Rcpt,
    Data,
    End,
    Rset,
}

/// Commands decided and not yet handed out (or handed out and not yet
/// written), in wire order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Out {
    mail: bool,
    /// RCPTs still to write.
    rcpts: u32,
    data: bool,
    content: bool,
    lone_dot: bool,
    rset: bool,
}

impl Out {
    fn is_empty(&self) -> bool {
        *self == Out::default()
    }

    /// Adds one command.
    fn push(&mut self, step: Step) {
        match step {
            Step::Mail => self.mail = true,
            Step::Rcpt { .. } => self.rcpts += 1,
            Step::Data => self.data = true,
            Step::Content => self.content = true,
            Step::LoneDot => self.lone_dot = true,
            Step::Rset => self.rset = true,
        }
    }

    /// Takes up to `n` commands off the front, in wire order; how many
    /// of them were RCPTs.
    fn take_front(&mut self, mut n: usize) -> u32 {
        take_one(&mut self.mail, &mut n);
        let rcpts = self.rcpts.min(u32::try_from(n).unwrap_or(u32::MAX));
        self.rcpts -= rcpts;
        n -= rcpts as usize;
        for flag in [
            &mut self.data,
            &mut self.content,
            &mut self.lone_dot,
            &mut self.rset,
        ] {
            take_one(flag, &mut n);
        }
        rcpts
    }
}

/// Clears `flag` if set and `n` allows one more; counts it off `n`.
fn take_one(flag: &mut bool, n: &mut usize) {
    if *n > 0 && std::mem::take(flag) {
        *n -= 1;
    }
}

/// Commands written whose replies are still owed, in wire order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Owed {
    mail: bool,
    rcpts: u32,
    data: bool,
    /// Content written whose reply count is not fixed yet (a BDAT in a
    /// group: it depends on the RCPT replies before it).
    content: bool,
    /// End-of-data replies still to come, and whether they belong to a
    /// message nobody was to get.
    end: u32,
    end_quiet: bool,
    rset: bool,
}

impl Owed {
    fn is_empty(&self) -> bool {
        !self.mail
            && self.rcpts == 0
            && !self.data
            && !self.content
            && self.end == 0
            && !self.rset
    }
}

/// One message's transaction.
#[derive(Debug, Clone)]
pub(crate) struct Txn {
    mode: Mode,
    out: Out,
    /// Handed out, and not yet reported written (`written`).
    unwritten: Out,
    owed: Owed,
    /// Pipelined: the first group is still being handed out, so
    /// commands go out before the replies owed.
    group_open: bool,
    mail_ok: bool,
    rcpt_ok: u32,
    end_ok: bool,
    end_refused: bool,
    fate: Option<Fate>,
    closed: bool,
    done: bool,
    tally: Tally,
}

impl Txn {
    /// A transaction about to send its MAIL (pipelined: its group).
    pub(crate) fn new(mode: Mode) -> Txn {
        let out = if mode.pipelined {
            // A BDAT chunk joins the group only on a proven connection;
            // otherwise it waits for the envelope's replies.
            Out {
                mail: true,
                rcpts: mode.recipients,
                data: !mode.bdat,
                content: mode.bdat && mode.proven,
                ..Out::default()
            }
        } else {
            Out {
                mail: true,
                ..Out::default()
            }
        };
        Txn {
            mode,
            out,
            unwritten: Out::default(),
            owed: Owed::default(),
            group_open: mode.pipelined,
            mail_ok: false,
            rcpt_ok: 0,
            end_ok: false,
            end_refused: false,
            fate: None,
            closed: false,
            done: false,
            tally: Tally::default(),
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The next command to write now, if any; None means: read a reply
    /// (or, once `is_done`, nothing more). Lock-step, one command at a
    /// time; pipelined, the whole group before the first reply.
    pub(crate) fn poll_send(&mut self) -> Option<Step> {
        if self.done || (!self.owed.is_empty() && !self.group_open) {
            return None;
        }
        let (out, owed) = (&mut self.out, &mut self.owed);
        let send = if out.mail {
            out.mail = false;
            owed.mail = true;
            Step::Mail
        } else if out.rcpts > 0 {
            let left = out.rcpts;
            out.rcpts -= 1;
            owed.rcpts += 1;
            Step::Rcpt { left }
        } else if out.data {
            out.data = false;
            owed.data = true;
            Step::Data
        } else if out.content {
            out.content = false;
            owed.content = true;
            Step::Content
        } else if out.lone_dot {
            out.lone_dot = false;
            owed.end = 1;
            owed.end_quiet = true;
            Step::LoneDot
        } else if out.rset {
            out.rset = false;
            owed.rset = true;
            Step::Rset
        } else {
            self.group_open = false;
            return None;
        };
        if self.out.is_empty() {
            self.group_open = false;
        }
        self.unwritten.push(send);
        Some(send)
    }

    /// The session wrote the first `whole` of the commands handed out
    /// and not yet reported, in the order handed out: every byte of
    /// each left (`usize::MAX`: all of them). A RCPT counts as sent
    /// here. The rest did not go out whole: the session cuts the
    /// transaction next, and they are in no count.
    pub(crate) fn written(&mut self, whole: usize) {
        let rcpts = self.unwritten.take_front(whole);
        self.tally.rcpt_sent += u64::from(rcpts);
    }

    /// The reply awaited now, in wire order.
    fn awaiting(&self) -> Option<Await> {
        let o = &self.owed;
        Some(if o.mail {
            Await::Mail
        } else if o.rcpts > 0 {
            Await::Rcpt
        } else if o.data {
            Await::Data
        } else if o.content || o.end > 0 {
            Await::End
        } else if o.rset {
            Await::Rset
        } else {
            return None;
        })
    }

    /// The stage whose reply is awaited now (for diagnostics and the
    /// report), or None when no reply is due.
    pub(crate) fn stage(&self) -> Option<Stage> {
        Some(match self.awaiting()? {
            Await::Mail => Stage::Mail,
            Await::Rcpt => Stage::Rcpt,
            Await::Data => Stage::Data,
            Await::End => Stage::Message,
            Await::Rset => Stage::Rset,
        })
    }

    /// Nobody is to get this message: MAIL refused or no RCPT accepted.
    fn empty(&self) -> bool {
        !self.mail_ok || self.rcpt_ok == 0
    }

    /// Takes one owed reply off the list; whether it is quiet.
    fn pop(&mut self, at: Await) -> bool {
        let pipelined = self.mode.pipelined;
        match at {
            Await::Mail => self.owed.mail = false,
            Await::Rcpt => {
                self.owed.rcpts -= 1;
                return pipelined && !self.mail_ok;
            }
            Await::Data => {
                self.owed.data = false;
                return pipelined && self.empty();
            }
            Await::End => {
                if std::mem::take(&mut self.owed.content) {
                    // A BDAT that went out in a group: one reply that
                    // only confirms an empty message, or the usual ones.
                    let quiet = self.empty();
                    self.owed.end_quiet = quiet;
                    self.owed.end = if quiet { 1 } else { self.end_replies() };
                }
                self.owed.end -= 1;
                return self.owed.end_quiet;
            }
            Await::Rset => self.owed.rset = false,
        }
        false
    }

    /// The replies content gets: one, or with LMTP one per accepted
    /// recipient (at least one).
    fn end_replies(&self) -> u32 {
        if self.mode.lmtp {
            self.rcpt_ok.max(1)
        } else {
            1
        }
    }

    /// Takes the awaited reply (its code): what it means by the -A
    /// policy. The transaction moves on (`poll_send`, `is_done`).
    pub(crate) fn on_reply(&mut self, code: u16) -> Heard {
        let Some(at) = self.awaiting() else {
            debug_assert!(false, "a reply nobody waited for");
            return Heard::Positive;
        };
        debug_assert!(
            self.unwritten.is_empty(),
            "a reply read before the commands it follows were written"
        );
        let quiet = self.pop(at);
        let positive = match at {
            Await::Data => code == 354,
            _ => (200..300).contains(&code),
        };
        let said = match (positive, quiet) {
            (true, _) => Said::Yes,
            (false, true) => Said::Echo,
            (false, false) => Said::No,
        };
        let heard = judge(self.mode.refusals, code, said);
        match at {
            Await::Mail => self.mail_reply(heard),
            Await::Rcpt => self.rcpt_reply(heard),
            Await::Data => self.data_reply(heard),
            Await::End => self.end_reply(heard),
            Await::Rset => self.done = true,
        }
        if heard == Heard::Fatal && self.owed.end > 0 && self.fate.is_none() {
            // LMTP: the other recipients' replies will not be read; the
            // message may have been delivered to them: in flight.
            self.cut(Cut::Halted);
        }
        if matches!(heard, Heard::Closing | Heard::Fatal) {
            self.cut(Cut::Lost);
            self.closed = heard == Heard::Closing;
        }
        heard
    }

    fn mail_reply(&mut self, heard: Heard) {
        self.mail_ok = heard == Heard::Positive;
        if self.mode.pipelined {
            self.mode.proven |= self.mail_ok;
        } else if self.mail_ok {
            self.out.rcpts = self.mode.recipients;
            if self.out.rcpts == 0 {
                self.after_envelope();
            }
        } else if heard == Heard::Refused {
            self.reject();
        }
    }

    fn rcpt_reply(&mut self, heard: Heard) {
        if heard == Heard::Positive {
            self.rcpt_ok += 1;
            self.tally.rcpt_accepted += 1;
        } else {
            self.tally.rcpt_rejected += 1;
        }
        let last = self.owed.is_empty() && self.out.is_empty();
        if last
            && matches!(heard, Heard::Positive | Heard::Refused | Heard::Quiet)
        {
            // Lock-step's last RCPT, or a group that went without its
            // BDAT chunk.
            self.after_envelope();
        }
    }

    /// Every RCPT answered and nothing else written: the content, or
    /// RSET when nobody is to get it.
    fn after_envelope(&mut self) {
        if self.empty() {
            self.reject();
        } else if self.mode.bdat {
            self.out.content = true;
        } else {
            self.out.data = true;
        }
    }

    fn data_reply(&mut self, heard: Heard) {
        match heard {
            // 354 after a group's refusals: end the empty message.
            Heard::Positive if self.empty() => self.out.lone_dot = true,
            Heard::Positive => self.out.content = true,
            // RFC 2920 §3.1: a failed DATA in a group is followed by RSET.
            Heard::Refused | Heard::Quiet => self.reject(),
            Heard::Closing | Heard::Fatal => {}
        }
    }

    fn end_reply(&mut self, heard: Heard) {
        let quiet = self.owed.end_quiet;
        if quiet {
            // Counted, never warned about: nobody was to get it.
            self.settle(Fate::Rejected);
        }
        match heard {
            Heard::Positive => self.end_ok = true,
            _ => self.end_refused = true,
        }
        if self.end_ok && !quiet {
            // With LMTP, one recipient's 2xx delivers the message.
            self.settle(Fate::Accepted);
        }
        if matches!(heard, Heard::Closing | Heard::Fatal) || self.owed.end > 0
        {
            return;
        }
        self.settle(Fate::Rejected);
        // A refused BDAT chunk leaves the envelope in place on some
        // servers: RSET clears it before the next MAIL.
        if self.mode.bdat && self.end_refused {
            self.out.rset = true;
        } else {
            self.done = true;
        }
    }

    /// The message is refused before its content: RSET, then done.
    fn reject(&mut self) {
        self.settle(Fate::Rejected);
        self.out.rset = true;
    }

    /// The message's fate, the first time only.
    fn settle(&mut self, fate: Fate) {
        if self.fate.is_none() {
            self.fate = Some(fate);
            self.tally.message = Some(fate);
        }
    }

    /// Ends the transaction before its last reply (see `Cut`); a
    /// transaction already over stays as it is.
    pub(crate) fn cut(&mut self, why: Cut) {
        if self.done {
            return;
        }
        // RCPTs handed out that never went out whole were never sent:
        // no server can answer them, no count holds them.
        let written = self.owed.rcpts.saturating_sub(self.unwritten.rcpts);
        if why == Cut::Lost {
            self.settle(Fate::Failed);
            self.tally.rcpt_failed += u64::from(written);
        }
        self.unwritten = Out::default();
        self.out = Out::default();
        self.owed = Owed::default();
        self.group_open = false;
        self.done = true;
    }

    /// The transaction is over: no command to write, no reply to read.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// A 421/521 closed the connection: no QUIT.
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }

    /// The message's fate, once decided.
    pub(crate) fn fate(&self) -> Option<Fate> {
        self.fate
    }

    /// A MAIL of this transaction was accepted in a group: the
    /// connection reads pipelined commands.
    pub(crate) fn proven(&self) -> bool {
        self.mode.proven
    }

    /// The counts since the last take.
    pub(crate) fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }
}
