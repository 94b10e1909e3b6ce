//! esmtp: the ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2):
//! which ones a message carries, given what the server offered and what
//! the message holds. Pure: no I/O, no clock; the session asks, writes
//! what it is told, and counts what it is told to count.
//!
//! A MAIL parameter is one rule in `MAIL_RULES`: it looks at the
//! message (`Msg`) and the offer (`Capabilities`), and adds its
//! parameter, notes that it could not (`Note`), or refuses to send the
//! message at all (`Local`). The report counts each parameter by its
//! keyword, so a new rule needs nothing outside this file.
//!
//! Nothing here runs for an old command line: parameters are only
//! computed when the greeting's capabilities are read (`--ehlo` and the
//! long options that imply it).

use crate::error::{Config, Error};
use crate::reply::Capabilities;

/// The options of the ESMTP parameters, as parsed (all off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EsmtpArgs {
    /// --dsn-notify, upper case: `NEVER` or a list of SUCCESS, FAILURE
    /// and DELAY.
    pub notify: Option<Vec<u8>>,
    /// --dsn-ret: `FULL` or `HDRS`.
    pub ret: Option<Vec<u8>>,
    /// --dsn-envid template (`%n`: the message number).
    pub envid: Option<Vec<u8>>,
    pub orcpt: bool,
    pub requiretls: bool,
    /// --mail-param and --rcpt-param, checked, in the order given.
    pub mail: Vec<Owned>,
    pub rcpt: Vec<Owned>,
}

impl EsmtpArgs {
    /// Whether any of these options was given (they imply ESMTP).
    pub fn any(&self) -> bool {
        *self != EsmtpArgs::default()
    }

    /// Whether any DSN option was given.
    fn dsn(&self) -> bool {
        self.notify.is_some()
            || self.ret.is_some()
            || self.envid.is_some()
            || self.orcpt
    }
}

/// A parameter with its keyword and value owned.
pub type Owned = (Vec<u8>, Option<Vec<u8>>);

/// Keywords the client sets itself: given with --mail-param or
/// --rcpt-param they would go out twice.
const OWN_KEYWORDS: [&str; 8] = [
    "SIZE",
    "BODY",
    "SMTPUTF8",
    "RET",
    "ENVID",
    "REQUIRETLS",
    "NOTIFY",
    "ORCPT",
];

/// `--mail-param`/`--rcpt-param` value: `KEYWORD[=VALUE]`, the keyword
/// an esmtp-keyword, the value xtext (RFC 3461 §4), not empty.
pub fn param(option: &'static str, v: &[u8]) -> Result<Owned, Error> {
    let bad = |why: &str| {
        Error::Config(Config::BadValue {
            option,
            value: v.to_vec(),
            why: Some(why.into()),
        })
    };
    let (keyword, value) = match v.iter().position(|&b| b == b'=') {
        Some(eq) => (&v[..eq], Some(&v[eq + 1..])),
        None => (v, None),
    };
    if !is_keyword(keyword) {
        return Err(bad("not an esmtp-keyword"));
    }
    let upper = keyword.to_ascii_uppercase();
    if OWN_KEYWORDS.iter().any(|k| k.as_bytes() == upper) {
        return Err(bad("set by its own option or by the client"));
    }
    if let Some(value) = value {
        if value.is_empty() || !is_xtext(value) {
            return Err(bad("value is not xtext"));
        }
    }
    Ok((keyword.to_vec(), value.map(<[u8]>::to_vec)))
}

/// esmtp-keyword: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
fn is_keyword(k: &[u8]) -> bool {
    k.first().is_some_and(u8::is_ascii_alphanumeric)
        && k.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// xtext: printable ASCII but `+` and `=`, or `+` and two upper-case
/// hex digits.
fn is_xtext(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'+' => {
                let hex = |b: Option<&u8>| {
                    b.is_some_and(|b| {
                        b.is_ascii_digit() || (b'A'..=b'F').contains(b)
                    })
                };
                if !(hex(v.get(i + 1)) && hex(v.get(i + 2))) {
                    return false;
                }
                i += 3;
            }
            33..=126 if v[i] != b'=' => i += 1,
            _ => return false,
        }
    }
    true
}

/// Encodes `v` as xtext: `+`, `=` and bytes outside 33..=126 as `+HH`.
pub fn xtext(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("+{b:02X}").as_bytes());
        }
    }
    out
}

/// --dsn-notify: `NEVER`, or SUCCESS, FAILURE and DELAY, comma
/// separated, each once; any case, sent in upper case.
pub fn notify(v: &[u8]) -> Option<Vec<u8>> {
    let upper = v.to_ascii_uppercase();
    if upper == b"NEVER" {
        return Some(upper);
    }
    let words: Vec<&[u8]> = upper.split(|&b| b == b',').collect();
    let known = [&b"SUCCESS"[..], b"FAILURE", b"DELAY"];
    let ok = words.iter().all(|w| known.contains(w))
        && known
            .iter()
            .all(|k| words.iter().filter(|w| *w == k).count() <= 1);
    ok.then_some(upper)
}

/// --dsn-ret: FULL or HDRS, any case.
pub fn ret(v: &[u8]) -> Option<Vec<u8>> {
    let upper = v.to_ascii_uppercase();
    matches!(upper.as_slice(), b"FULL" | b"HDRS").then_some(upper)
}

/// --dsn-envid: a template, printable ASCII (xtext-encoded when sent).
pub fn envid(v: &[u8]) -> Option<Vec<u8>> {
    let ok = !v.is_empty() && v.iter().all(|b| (32..=126).contains(b));
    ok.then(|| v.to_vec())
}

/// What the session knows of one message when its MAIL is due.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    /// Its number in the run (`%n` of --dsn-envid).
    pub n: u64,
    /// Its exact size as sent: headers and body, without the
    /// end-of-data line (dot-stuffing included).
    pub size: u64,
    /// A byte of its headers or body has the high bit set.
    pub eight_bit: bool,
    /// An address of its envelope or a header is not ASCII.
    pub utf8: bool,
    pub args: &'a EsmtpArgs,
}

/// Something a rule could not do; the message still goes (counted, and
/// said once under -v).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// An 8-bit message to a server without 8BITMIME: sent as it is.
    No8BitMime,
    /// DSN asked for, not offered: sent without it.
    NoDsn,
}

impl Note {
    /// The report's key.
    pub fn key(self) -> &'static str {
        match self {
            Note::No8BitMime => "8bitmime_not_offered",
            Note::NoDsn => "dsn_not_offered",
        }
    }

    /// The -v line.
    pub fn text(self) -> &'static [u8] {
        match self {
            Note::No8BitMime => {
                b"server does not offer 8BITMIME; 8-bit messages go out undeclared"
            }
            Note::NoDsn => b"server does not offer DSN; sending without DSN parameters",
        }
    }
}

/// Why a message is not sent at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// Its addresses or headers need SMTPUTF8 and the server does not
    /// offer it (RFC 6531 §3.2): counted rejected.
    NoSmtpUtf8,
}

impl Local {
    pub fn key(self) -> &'static str {
        match self {
            Local::NoSmtpUtf8 => "smtputf8_not_offered",
        }
    }
}

/// The MAIL parameters of one message, and what could not be done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mail {
    pub params: Vec<Owned>,
    pub notes: Vec<Note>,
}

impl Mail {
    fn add(&mut self, keyword: &str, value: Option<Vec<u8>>) {
        self.params.push((keyword.as_bytes().to_vec(), value));
    }
}

/// One MAIL parameter's rule.
type Rule = fn(&Msg, &Capabilities, &mut Mail) -> Result<(), Local>;

/// The MAIL parameters, in the order they are sent.
const MAIL_RULES: &[Rule] =
    &[size, body, smtputf8, dsn_ret, dsn_envid, requiretls, given];

/// The MAIL parameters of `msg` for a server offering `caps`, or why
/// it is not to be sent.
pub fn mail(msg: &Msg, caps: &Capabilities) -> Result<Mail, Local> {
    let mut out = Mail::default();
    for rule in MAIL_RULES {
        rule(msg, caps, &mut out)?;
    }
    Ok(out)
}

/// SIZE=<the message's size as sent> when SIZE is offered (RFC 1870):
/// a server over its limit says 552 at MAIL, before the body.
fn size(m: &Msg, caps: &Capabilities, out: &mut Mail) -> Result<(), Local> {
    if caps.has("SIZE") {
        out.add("SIZE", Some(m.size.to_string().into_bytes()));
    }
    Ok(())
}

/// BODY=8BITMIME for an 8-bit message (RFC 6152).
fn body(m: &Msg, caps: &Capabilities, out: &mut Mail) -> Result<(), Local> {
    match (m.eight_bit, caps.has("8BITMIME")) {
        (true, true) => out.add("BODY", Some(b"8BITMIME".to_vec())),
        (true, false) => out.notes.push(Note::No8BitMime),
        _ => {}
    }
    Ok(())
}

/// SMTPUTF8 for a message with non-ASCII addresses or headers.
fn smtputf8(
    m: &Msg,
    caps: &Capabilities,
    out: &mut Mail,
) -> Result<(), Local> {
    match (m.utf8, caps.has("SMTPUTF8")) {
        (true, true) => out.add("SMTPUTF8", None),
        (true, false) => return Err(Local::NoSmtpUtf8),
        _ => {}
    }
    Ok(())
}

/// Whether DSN parameters may go; notes it once per message when not.
fn dsn_offered(m: &Msg, caps: &Capabilities, out: &mut Mail) -> bool {
    if caps.has("DSN") {
        return true;
    }
    if m.args.dsn() && !out.notes.contains(&Note::NoDsn) {
        out.notes.push(Note::NoDsn);
    }
    false
}

fn dsn_ret(m: &Msg, caps: &Capabilities, out: &mut Mail) -> Result<(), Local> {
    if let Some(ret) = &m.args.ret {
        if dsn_offered(m, caps, out) {
            out.add("RET", Some(ret.clone()));
        }
    }
    Ok(())
}

/// ENVID: the template with `%n` as the message number, `%%` as `%`,
/// xtext-encoded.
fn dsn_envid(
    m: &Msg,
    caps: &Capabilities,
    out: &mut Mail,
) -> Result<(), Local> {
    if let Some(template) = &m.args.envid {
        if dsn_offered(m, caps, out) {
            let id = expand(template, m.n);
            out.add("ENVID", Some(xtext(&id)));
        }
    }
    Ok(())
}

/// `%n` becomes `n`, `%%` a `%`; any other `%` stays.
pub fn expand(template: &[u8], n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len() + 8);
    let mut i = 0;
    while i < template.len() {
        match (template[i], template.get(i + 1)) {
            (b'%', Some(b'n')) => {
                out.extend_from_slice(n.to_string().as_bytes());
                i += 2;
            }
            (b'%', Some(b'%')) => {
                out.push(b'%');
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// REQUIRETLS (RFC 8689): the connection was checked before the first
/// MAIL (`requiretls_ready`).
fn requiretls(m: &Msg, _: &Capabilities, out: &mut Mail) -> Result<(), Local> {
    if m.args.requiretls {
        out.add("REQUIRETLS", None);
    }
    Ok(())
}

/// --mail-param, as given, whatever was offered.
fn given(m: &Msg, _: &Capabilities, out: &mut Mail) -> Result<(), Local> {
    out.params.extend(m.args.mail.iter().cloned());
    Ok(())
}

/// Whether a --requiretls connection may carry mail: over TLS, and the
/// server offered REQUIRETLS there. Otherwise the text of the error.
pub fn requiretls_ready(
    args: &EsmtpArgs,
    encrypted: bool,
    caps: &Capabilities,
) -> Result<(), &'static str> {
    if !args.requiretls || (encrypted && caps.has("REQUIRETLS")) {
        return Ok(());
    }
    Err("REQUIRETLS not offered over TLS: no message sent")
}

/// The parameters of the RCPT to `addr`: NOTIFY and ORCPT when DSN is
/// offered, then --rcpt-param as given.
pub fn rcpt(args: &EsmtpArgs, caps: &Capabilities, addr: &[u8]) -> Vec<Owned> {
    let mut out = Vec::new();
    if caps.has("DSN") {
        if let Some(notify) = &args.notify {
            out.push((b"NOTIFY".to_vec(), Some(notify.clone())));
        }
        if args.orcpt {
            let value = [&b"rfc822;"[..], &xtext(addr)].concat();
            out.push((b"ORCPT".to_vec(), Some(value)));
        }
    }
    out.extend(args.rcpt.iter().cloned());
    out
}

/// The borrowed form `Command::Mail` and `Command::Rcpt` take.
pub fn borrowed(params: &[Owned]) -> Vec<crate::command::Param<'_>> {
    params
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_deref()))
        .collect()
}

/// The report's key for one parameter: its keyword, with BODY's value
/// (`BODY=8BITMIME`).
pub fn count_key(p: &Owned) -> String {
    let k = String::from_utf8_lossy(&p.0).to_ascii_uppercase();
    match &p.1 {
        Some(v) if k == "BODY" => {
            format!("BODY={}", String::from_utf8_lossy(v))
        }
        _ => k,
    }
}

/// Whether an address is not ASCII (it needs SMTPUTF8).
pub fn is_utf8(addr: &[u8]) -> bool {
    !addr.is_ascii()
}

/// Whether the header section of a message that brings its own (`-F`,
/// `--message-dir`: up to the first empty line) is UTF-8 and not ASCII.
/// Raw 8-bit headers that are not UTF-8 (old Latin-1 mail) need no
/// SMTPUTF8: they are 8-bit content, declared with BODY=8BITMIME.
pub fn headers_utf8(message: &[u8]) -> bool {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    let h = &message[..end];
    !h.is_ascii() && std::str::from_utf8(h).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{capabilities, parse};

    fn caps(lines: &str) -> Capabilities {
        let mut text = String::from("250-mx\r\n");
        for l in lines.split_whitespace() {
            text.push_str(&format!("250-{l}\r\n"));
        }
        text.push_str("250 HELP\r\n");
        capabilities(&parse(text.as_bytes()).unwrap().unwrap().0)
    }

    fn msg(args: &EsmtpArgs) -> Msg<'_> {
        Msg {
            n: 7,
            size: 321,
            eight_bit: false,
            utf8: false,
            args,
        }
    }

    /// The MAIL line's parameters as text.
    fn line(m: &Msg, c: &Capabilities) -> Result<String, Local> {
        let mail = mail(m, c)?;
        let mut out = Vec::new();
        crate::command::Command::Mail(b"a@b", &borrowed(&mail.params))
            .write_text(&mut out);
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn nothing_asked_nothing_offered_is_a_bare_mail() {
        let args = EsmtpArgs::default();
        assert_eq!(line(&msg(&args), &caps("")).unwrap(), "MAIL FROM:<a@b>");
    }

    #[test]
    fn size_declared_when_offered() {
        let args = EsmtpArgs::default();
        assert_eq!(
            line(&msg(&args), &caps("SIZE SIZE=10240000")).unwrap(),
            "MAIL FROM:<a@b> SIZE=321"
        );
        assert_eq!(line(&msg(&args), &caps("")).unwrap(), "MAIL FROM:<a@b>");
    }

    #[test]
    fn eight_bit_declared_only_when_offered() {
        let args = EsmtpArgs::default();
        let m = Msg {
            eight_bit: true,
            ..msg(&args)
        };
        assert!(line(&m, &caps("8BITMIME"))
            .unwrap()
            .ends_with(" BODY=8BITMIME"));
        let plain = mail(&m, &caps("")).unwrap();
        assert!(plain.params.is_empty());
        assert_eq!(plain.notes, [Note::No8BitMime]);
        // A 7-bit message says nothing, offered or not.
        assert!(mail(&msg(&args), &caps("")).unwrap().notes.is_empty());
    }

    #[test]
    fn smtputf8_declared_when_offered_else_not_sent() {
        let args = EsmtpArgs::default();
        let m = Msg {
            utf8: true,
            eight_bit: true,
            ..msg(&args)
        };
        assert_eq!(
            line(&m, &caps("8BITMIME SMTPUTF8")).unwrap(),
            "MAIL FROM:<a@b> BODY=8BITMIME SMTPUTF8"
        );
        assert_eq!(mail(&m, &caps("8BITMIME")), Err(Local::NoSmtpUtf8));
    }

    #[test]
    fn dsn_parameters_only_when_offered() {
        let args = EsmtpArgs {
            ret: Some(b"HDRS".to_vec()),
            envid: Some(b"load-%n+x=%%".to_vec()),
            notify: Some(b"SUCCESS,FAILURE".to_vec()),
            orcpt: true,
            ..EsmtpArgs::default()
        };
        assert_eq!(
            line(&msg(&args), &caps("DSN")).unwrap(),
            "MAIL FROM:<a@b> RET=HDRS ENVID=load-7+2Bx+3D%"
        );
        let without = mail(&msg(&args), &caps("")).unwrap();
        assert!(without.params.is_empty());
        assert_eq!(without.notes, [Note::NoDsn], "noted once per message");
        let r = rcpt(&args, &caps("DSN"), b"x+y@z");
        assert_eq!(
            r,
            [
                (b"NOTIFY".to_vec(), Some(b"SUCCESS,FAILURE".to_vec())),
                (b"ORCPT".to_vec(), Some(b"rfc822;x+2By@z".to_vec())),
            ]
        );
        assert!(rcpt(&args, &caps(""), b"x@z").is_empty());
    }

    #[test]
    fn given_parameters_go_whatever_the_offer_and_last() {
        let args = EsmtpArgs {
            mail: vec![param("--mail-param", b"MT-PRIORITY=3").unwrap()],
            rcpt: vec![param("--rcpt-param", b"X-VENDOR").unwrap()],
            requiretls: true,
            ..EsmtpArgs::default()
        };
        let m = Msg {
            eight_bit: true,
            ..msg(&args)
        };
        assert_eq!(
            line(&m, &caps("8BITMIME REQUIRETLS")).unwrap(),
            "MAIL FROM:<a@b> BODY=8BITMIME REQUIRETLS MT-PRIORITY=3"
        );
        assert_eq!(
            rcpt(&args, &caps(""), b"x@z"),
            [(b"X-VENDOR".to_vec(), None)]
        );
    }

    #[test]
    fn requiretls_needs_tls_and_the_offer() {
        let args = EsmtpArgs {
            requiretls: true,
            ..EsmtpArgs::default()
        };
        assert!(requiretls_ready(&args, true, &caps("REQUIRETLS")).is_ok());
        let e = requiretls_ready(&args, true, &caps("")).unwrap_err();
        assert_eq!(
            requiretls_ready(&args, false, &caps("REQUIRETLS")),
            Err(e)
        );
        let off = EsmtpArgs::default();
        assert!(requiretls_ready(&off, false, &caps("")).is_ok());
    }

    #[test]
    fn parameter_syntax_is_checked() {
        for good in [&b"MT-PRIORITY=-3"[..], b"HOLDFOR=60", b"X1", b"XV=a+2Bb"]
        {
            assert!(param("--mail-param", good).is_ok(), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"-X",
            b"X_Y",
            b"X=",
            b"X=a b",
            b"X=a=b",
            b"X=+2b",
            b"X=+4",
            b"X=\xc3\xa9",
            b"size=1",
            b"NOTIFY=NEVER",
        ] {
            assert!(param("--mail-param", bad).is_err(), "{bad:?}");
        }
        let e = param("--rcpt-param", b"X=a b").unwrap_err();
        assert_eq!(
            e.text(),
            b"bad --rcpt-param value: X=a b (value is not xtext)"
        );
    }

    #[test]
    fn dsn_option_values() {
        assert_eq!(notify(b"never").unwrap(), b"NEVER");
        assert_eq!(notify(b"delay,Success").unwrap(), b"DELAY,SUCCESS");
        for bad in [&b"NEVER,SUCCESS"[..], b"", b"SUCCESS,SUCCESS", b"ALWAYS"]
        {
            assert!(notify(bad).is_none(), "{bad:?}");
        }
        assert_eq!(ret(b"full").unwrap(), b"FULL");
        assert!(ret(b"BODY").is_none());
        assert!(envid(b"id-%n").is_some() && envid(b"a\tb").is_none());
        assert_eq!(expand(b"%n-%x-%%-%", 12), b"12-%x-%-%");
    }

    #[test]
    fn counted_by_keyword() {
        assert_eq!(
            count_key(&(b"body".to_vec(), Some(b"8BITMIME".to_vec()))),
            "BODY=8BITMIME"
        );
        assert_eq!(
            count_key(&(b"ENVID".to_vec(), Some(b"x".to_vec()))),
            "ENVID"
        );
    }

    #[test]
    fn utf8_detection() {
        assert!(
            is_utf8("j\u{f6}rg@example.org".as_bytes()) && !is_utf8(b"a@b")
        );
        assert!(headers_utf8(
            "Subject: gr\u{fc}\u{df}e\r\n\r\nbody".as_bytes()
        ));
        assert!(!headers_utf8("Subject: x\r\n\r\nb\u{fc}dy".as_bytes()));
        assert!(
            !headers_utf8(b"Subject: gr\xfc\xdfe\r\n\r\nbody"),
            "Latin-1"
        );
    }
}
