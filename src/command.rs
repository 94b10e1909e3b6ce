//! command: the SMTP/LMTP commands smtp-source sends, and the only place
//! their wire text is made.
//!
//! Pure: appends bytes to a buffer. Arguments are inserted verbatim, as
//! the reference does: no quoting, no bracket stripping
//! (`arguments_are_verbatim` below).

/// An ESMTP parameter of MAIL or RCPT (RFC 5321 §4.1.2): a keyword and
/// maybe a value, sent as ` KEYWORD` or ` KEYWORD=value` after the
/// address. A new MAIL parameter (SIZE, BODY, SMTPUTF8, ...) is one more
/// entry in the slice the session passes; nothing here changes.
pub type Param<'a> = (&'a [u8], Option<&'a [u8]>);

/// One command, borrowing its arguments from the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    Helo(&'a [u8]),
    Ehlo(&'a [u8]),
    Lhlo(&'a [u8]),
    /// The reverse path and its ESMTP parameters.
    Mail(&'a [u8], &'a [Param<'a>]),
    /// The forward path and its ESMTP parameters.
    Rcpt(RcptAddr<'a>, &'a [Param<'a>]),
    Data,
    /// `BDAT <size> LAST` (RFC 3030): the whole message in one chunk.
    BdatLast(usize),
    Dot,
    Rset,
    Quit,
    StartTls,
    /// `XCLIENT` with its xtext-encoded attributes.
    Xclient(&'a [u8]),
    /// `AUTH <mechanism>` with an optional initial response (secret).
    Auth(&'a str, Option<&'a [u8]>),
    /// An answer to a 334 challenge (secret).
    AuthResponse(&'a [u8]),
}

/// A recipient address as RCPT TO sends it (without the brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptAddr<'a> {
    /// Postfix 3.7: the number, if any, in front (`3foo@vm`).
    Prefixed(Option<u64>, &'a [u8]),
    /// Postfix 3.9 (--numbering=3.9): the number appended to the local
    /// part, before the last `@` (`foo0@vm`).
    Suffixed {
        local: &'a [u8],
        number: u64,
        domain: &'a [u8],
    },
}

impl RcptAddr<'_> {
    /// Appends the address.
    pub fn write(&self, out: &mut Vec<u8>) {
        match *self {
            RcptAddr::Prefixed(number, to) => {
                if let Some(n) = number {
                    out.extend_from_slice(n.to_string().as_bytes());
                }
                out.extend_from_slice(to);
            }
            RcptAddr::Suffixed {
                local,
                number,
                domain,
            } => {
                out.extend_from_slice(local);
                out.extend_from_slice(number.to_string().as_bytes());
                out.extend_from_slice(domain);
            }
        }
    }
}

/// Splits a recipient at its last `@` into local part and `@domain`
/// (3.9 numbering); without `@` the domain is empty.
pub fn split_recipient(to: &[u8]) -> (&[u8], &[u8]) {
    match to.iter().rposition(|&b| b == b'@') {
        Some(at) => to.split_at(at),
        None => (to, &[]),
    }
}

impl Command<'_> {
    /// Appends the command line without CRLF.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        match *self {
            Command::Helo(name) => join(out, b"HELO ", name, b""),
            Command::Ehlo(name) => join(out, b"EHLO ", name, b""),
            Command::Lhlo(name) => join(out, b"LHLO ", name, b""),
            Command::Mail(from, params) => {
                join(out, b"MAIL FROM:<", from, b">");
                write_params(out, params);
            }
            Command::Rcpt(addr, params) => {
                out.extend_from_slice(b"RCPT TO:<");
                addr.write(out);
                out.push(b'>');
                write_params(out, params);
            }
            Command::Data => out.extend_from_slice(b"DATA"),
            Command::BdatLast(size) => {
                out.extend_from_slice(format!("BDAT {size} LAST").as_bytes())
            }
            // The end-of-data line: also appended to the DATA content
            // once, when the plan is made (`plan::body`).
            Command::Dot => out.push(b'.'),
            Command::Rset => out.extend_from_slice(b"RSET"),
            Command::Quit => out.extend_from_slice(b"QUIT"),
            Command::StartTls => out.extend_from_slice(b"STARTTLS"),
            Command::Xclient(args) => join(out, b"XCLIENT ", args, b""),
            Command::Auth(mech, initial) => {
                join(out, b"AUTH ", mech.as_bytes(), b"");
                if let Some(response) = initial {
                    join(out, b" ", response, b"");
                }
            }
            Command::AuthResponse(response) => out.extend_from_slice(response),
        }
    }

    /// Appends the text -v logs: the command line, with credentials
    /// replaced by `<hidden>`.
    pub fn write_log(&self, out: &mut Vec<u8>) {
        match *self {
            Command::Auth(mech, Some(_)) => {
                join(out, b"AUTH ", mech.as_bytes(), b" <hidden>")
            }
            Command::AuthResponse(_) => out.extend_from_slice(b"<hidden>"),
            _ => self.write_text(out),
        }
    }

    /// Appends the command line with CRLF: the bytes on the wire.
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        self.write_text(out);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends ` KEYWORD[=value]` for each parameter.
fn write_params(out: &mut Vec<u8>, params: &[Param]) {
    for (keyword, value) in params {
        join(out, b" ", keyword, b"");
        if let Some(value) = value {
            join(out, b"=", value, b"");
        }
    }
}

/// Appends `head`, `arg` and `tail`: a command line or a header line
/// (`message`) without its CRLF.
pub(crate) fn join(out: &mut Vec<u8>, head: &[u8], arg: &[u8], tail: &[u8]) {
    out.extend_from_slice(head);
    out.extend_from_slice(arg);
    out.extend_from_slice(tail);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(c: Command) -> Vec<u8> {
        let mut out = Vec::new();
        c.write_wire(&mut out);
        out
    }

    #[test]
    fn wire_texts() {
        assert_eq!(wire(Command::Helo(b"vm")), b"HELO vm\r\n");
        assert_eq!(wire(Command::Lhlo(b"vm")), b"LHLO vm\r\n");
        assert_eq!(
            wire(Command::Mail(b"foo@vm", &[])),
            b"MAIL FROM:<foo@vm>\r\n"
        );
        assert_eq!(
            wire(Command::Rcpt(RcptAddr::Prefixed(None, b"foo@vm"), &[])),
            b"RCPT TO:<foo@vm>\r\n"
        );
        assert_eq!(
            wire(Command::Rcpt(RcptAddr::Prefixed(Some(12), b"foo@vm"), &[])),
            b"RCPT TO:<12foo@vm>\r\n"
        );
        assert_eq!(wire(Command::Data), b"DATA\r\n");
        assert_eq!(wire(Command::Ehlo(b"vm")), b"EHLO vm\r\n");
        assert_eq!(wire(Command::BdatLast(189)), b"BDAT 189 LAST\r\n");
        assert_eq!(wire(Command::Dot), b".\r\n");
        assert_eq!(wire(Command::Rset), b"RSET\r\n");
        assert_eq!(wire(Command::Quit), b"QUIT\r\n");
    }

    #[test]
    fn security_commands_and_redaction() {
        assert_eq!(wire(Command::StartTls), b"STARTTLS\r\n");
        assert_eq!(
            wire(Command::Xclient(b"ADDR=10.0.0.1")),
            b"XCLIENT ADDR=10.0.0.1\r\n"
        );
        let plain = Command::Auth("PLAIN", Some(b"AGEAYg=="));
        assert_eq!(wire(plain), b"AUTH PLAIN AGEAYg==\r\n");
        assert_eq!(wire(Command::Auth("LOGIN", None)), b"AUTH LOGIN\r\n");
        let log = |c: Command| {
            let mut out = Vec::new();
            c.write_log(&mut out);
            out
        };
        assert_eq!(log(plain), b"AUTH PLAIN <hidden>");
        assert_eq!(log(Command::Auth("LOGIN", None)), b"AUTH LOGIN");
        assert_eq!(log(Command::AuthResponse(b"c2VjcmV0")), b"<hidden>");
        assert_eq!(log(Command::Quit), b"QUIT");
    }

    #[test]
    fn numbering_39_appends_to_the_local_part() {
        let (local, domain) = split_recipient(b"a@b@x.ex");
        let addr = RcptAddr::Suffixed {
            local,
            number: 7,
            domain,
        };
        assert_eq!(wire(Command::Rcpt(addr, &[])), b"RCPT TO:<a@b7@x.ex>\r\n");
        let (local, domain) = split_recipient(b"foo");
        let addr = RcptAddr::Suffixed {
            local,
            number: 0,
            domain,
        };
        assert_eq!(wire(Command::Rcpt(addr, &[])), b"RCPT TO:<foo0>\r\n");
    }

    #[test]
    fn esmtp_parameters_follow_the_address() {
        let size: &[Param] = &[(b"SIZE", Some(b"1024")), (b"SMTPUTF8", None)];
        assert_eq!(
            wire(Command::Mail(b"a@b", size)),
            b"MAIL FROM:<a@b> SIZE=1024 SMTPUTF8\r\n"
        );
        let notify: &[Param] = &[(b"NOTIFY", Some(b"NEVER"))];
        assert_eq!(
            wire(Command::Rcpt(RcptAddr::Prefixed(None, b"c@d"), notify)),
            b"RCPT TO:<c@d> NOTIFY=NEVER\r\n"
        );
    }

    #[test]
    fn arguments_are_verbatim() {
        assert_eq!(
            wire(Command::Mail(b"<a@b>", &[])),
            b"MAIL FROM:<<a@b>>\r\n"
        );
        assert_eq!(wire(Command::Mail(b"", &[])), b"MAIL FROM:<>\r\n");
        assert_eq!(
            wire(Command::Rcpt(RcptAddr::Prefixed(None, b"x y@z"), &[])),
            b"RCPT TO:<x y@z>\r\n"
        );
    }
}
