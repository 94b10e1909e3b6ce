//! reply: SMTP/LMTP reply parsing, exactly as smtp-source reads replies.
//!
//! Pure: bytes in, values out, no I/O. Lines arrive already split and
//! stripped of their line ending (see `lineio`); this module decides the
//! code, whether the reply continues, and gathers the text, all within
//! fixed caps (`docs/reference-behaviour.md`, "Replies").

/// Most bytes of joined reply text that start a new line's append; the
/// total may exceed it by one line, as the reference's text buffer does.
pub const TEXT_LIMIT: usize = 10240;

/// Most lines in one reply (a bound of ours: man page NOTES, X2): a
/// peer that streams continuation lines forever is cut off here.
pub const MAX_LINES: usize = 1000;

/// One parsed reply: the code of its last line (0 when that line did not
/// start with exactly three digits) and the texts of all lines joined
/// with `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub code: u16,
    pub text: Vec<u8>,
}

impl Reply {
    /// 2xx: the success test of every step but DATA.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 421 and 521 mean the server is closing: under -A the session
    /// closes without QUIT (`docs/reference-behaviour.md`, "The -A policy").
    pub fn is_closing(&self) -> bool {
        self.code == 421 || self.code == 521
    }
}

/// What one line says about the reply it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineInfo {
    /// Value of exactly three leading digits, else 0.
    pub code: u16,
    /// The byte after the digit run is `-` (whatever the digit count).
    pub continues: bool,
    /// Where the line's text starts: after the digits, the optional `-`
    /// and any blanks.
    pub text_start: usize,
}

/// Classifies one reply line (without its line ending).
///
/// `250x` is code 250 (three digits, then text), `2500 x` and `25 x` are
/// code 0, and `  220 x` is code 0 with text `220 x`: smtp-source counts
/// the leading digits and accepts exactly three (tests
/// `f11_not_three_digits`, `f12_three_digits_plus_junk`).
pub fn classify_line(line: &[u8]) -> LineInfo {
    let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
    let code = if digits == 3 {
        line[..3]
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'))
    } else {
        0
    };
    let continues = line.get(digits) == Some(&b'-');
    let mut text_start = digits + usize::from(continues);
    while line.get(text_start).is_some_and(|b| is_c_space(*b)) {
        text_start += 1;
    }
    LineInfo {
        code,
        continues,
        text_start,
    }
}

/// C isspace() in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Gathers the lines of one reply.
#[derive(Debug, Default)]
pub struct ReplyBuilder {
    reply: Reply,
    lines: usize,
    mixed_codes: bool,
    first_code: Option<u16>,
}

/// Result of adding a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    /// More lines belong to this reply.
    More,
    /// The reply is complete.
    Done,
    /// The reply has more than `MAX_LINES` lines.
    TooManyLines,
}

impl ReplyBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one line; the last line's code becomes the reply's code.
    pub fn push_line(&mut self, line: &[u8]) -> Push {
        let info = classify_line(line);
        if self.lines >= MAX_LINES {
            return Push::TooManyLines;
        }
        self.note_code(info.code);
        if self.lines > 0 && self.reply.text.len() < TEXT_LIMIT {
            self.reply.text.push(b'\n');
        }
        if self.reply.text.len() < TEXT_LIMIT {
            self.reply.text.extend_from_slice(&line[info.text_start..]);
        }
        self.lines += 1;
        self.reply.code = info.code;
        if info.continues {
            Push::More
        } else {
            Push::Done
        }
    }

    fn note_code(&mut self, code: u16) {
        match self.first_code {
            None => self.first_code = Some(code),
            Some(first) if first != code => self.mixed_codes = true,
            Some(_) => {}
        }
    }

    /// True when the lines carried different codes (RFC 5321 §4.2.1 says
    /// they must not; the last line decides anyway, as in the reference:
    /// test `f14_multiline_mismatched_codes`).
    pub fn mixed_codes(&self) -> bool {
        self.mixed_codes
    }

    pub fn finish(self) -> Reply {
        self.reply
    }
}

/// Parses a whole reply from a byte string holding complete lines (LF
/// terminated, trailing CRs stripped). Returns the reply and the bytes it
/// used, or None while the input does not yet hold a complete reply.
/// Lines here are not length-capped: callers that read from a peer go
/// through `lineio`, which caps them first.
pub fn parse(input: &[u8]) -> Option<Result<(Reply, usize), Push>> {
    let mut builder = ReplyBuilder::new();
    let mut pos = 0;
    while let Some(lf) = input[pos..].iter().position(|&b| b == b'\n') {
        let line = strip_crs(&input[pos..pos + lf]);
        pos += lf + 1;
        match builder.push_line(line) {
            Push::More => {}
            Push::Done => return Some(Ok((builder.finish(), pos))),
            Push::TooManyLines => return Some(Err(Push::TooManyLines)),
        }
    }
    None
}

/// The service extensions a server offered in its EHLO/LHLO reply: each
/// keyword with its value (the rest of its line), looked up without
/// regard to case. A new extension needs no new field: `has` and
/// `value` answer for any keyword.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// (keyword in upper case, value as sent), in the order offered.
    offered: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Capabilities {
    /// Whether `keyword` (say `"PIPELINING"`) was offered.
    pub fn has(&self, keyword: &str) -> bool {
        self.value(keyword).is_some()
    }

    /// The value offered with `keyword` (`SIZE 10240000` gives
    /// `10240000`; empty when it has none), or None when not offered.
    pub fn value(&self, keyword: &str) -> Option<&[u8]> {
        let k = keyword.as_bytes();
        self.offered
            .iter()
            .find(|(offered, _)| offered.eq_ignore_ascii_case(k))
            .map(|(_, value)| value.as_slice())
    }

    /// Whether AUTH offers the SASL mechanism `mech` (say `"PLAIN"`), in
    /// any of its lines (`AUTH PLAIN` and the old `AUTH=LOGIN` may both
    /// be there).
    pub fn auth_offers(&self, mech: &str) -> bool {
        self.offered
            .iter()
            .filter(|(keyword, _)| keyword == b"AUTH")
            .flat_map(|(_, mechs)| mechs.split(|&b| b == b' '))
            .any(|m| m.eq_ignore_ascii_case(mech.as_bytes()))
    }
}

/// Reads the extension keywords of an EHLO/LHLO reply: every line after
/// the first starts with a keyword (RFC 5321 §4.1.1.1), case-insensitive,
/// then its parameters after a space (or, in the old `AUTH=PLAIN LOGIN`
/// form, after `=`).
pub fn capabilities(reply: &Reply) -> Capabilities {
    let mut caps = Capabilities::default();
    for line in reply.text.split(|&b| b == b'\n').skip(1) {
        let end = line
            .iter()
            .position(|&b| b == b' ' || b == b'=')
            .unwrap_or(line.len());
        let keyword = line[..end].to_ascii_uppercase();
        let value = line.get(end + 1..).unwrap_or_default().to_vec();
        if !keyword.is_empty() {
            caps.offered.push((keyword, value));
        }
    }
    caps
}

/// Strips all trailing CRs, as smtp-source does before the LF (test
/// `f20_line_endings`).
pub fn strip_crs(line: &[u8]) -> &[u8] {
    let keep = line.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1);
    &line[..keep]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> Reply {
        parse(input).unwrap().unwrap().0
    }

    #[test]
    fn code_only_final_line_is_accepted() {
        // RFC 5321 §4.2: a client MUST accept the code without text.
        assert_eq!(
            one(b"250\r\n"),
            Reply {
                code: 250,
                text: vec![]
            }
        );
    }

    #[test]
    fn four_digits_give_code_zero() {
        let r = one(b"2500 foo\r\n");
        assert_eq!((r.code, r.text.as_slice()), (0, &b"foo"[..]));
    }

    #[test]
    fn two_digits_give_code_zero() {
        let r = one(b"25 ok\r\n");
        assert_eq!((r.code, r.text.as_slice()), (0, &b"ok"[..]));
    }

    #[test]
    fn leading_blanks_give_code_zero_and_keep_digits_in_text() {
        let r = one(b"  220 x\r\n");
        assert_eq!((r.code, r.text.as_slice()), (0, &b"220 x"[..]));
    }

    #[test]
    fn three_digits_then_junk_is_that_code() {
        let r = one(b"250x\r\n");
        assert_eq!((r.code, r.text.as_slice()), (250, &b"x"[..]));
    }

    #[test]
    fn empty_line_is_a_final_line_with_code_zero() {
        assert_eq!(
            one(b"\r\n"),
            Reply {
                code: 0,
                text: vec![]
            }
        );
    }

    #[test]
    fn bare_lf_ends_a_line() {
        assert_eq!(one(b"250 bare lf\n").code, 250);
    }

    #[test]
    fn all_trailing_crs_are_stripped() {
        assert_eq!(one(b"250 x\r\r\r\n").text, b"x");
    }

    #[test]
    fn inner_cr_is_kept() {
        assert_eq!(one(b"250 a\rb\r\n").text, b"a\rb");
    }

    #[test]
    fn multiline_texts_join_with_newline() {
        let r = one(b"550-line one\r\n550 line two\r\n");
        assert_eq!(r.code, 550);
        assert_eq!(r.text, b"line one\nline two");
    }

    #[test]
    fn last_line_code_wins() {
        assert_eq!(one(b"550-x\r\n250 ok\r\n").code, 250);
        let r = one(b"250-ok\r\n550 bad\r\n");
        assert_eq!((r.code, r.text.as_slice()), (550, &b"ok\nbad"[..]));
    }

    #[test]
    fn mixed_codes_are_noted() {
        let mut b = ReplyBuilder::new();
        b.push_line(b"220-a");
        b.push_line(b"250 b");
        assert!(b.mixed_codes());
    }

    #[test]
    fn dash_after_any_digit_run_continues() {
        assert!(classify_line(b"-x").continues);
        assert!(classify_line(b"2500-x").continues);
        assert!(!classify_line(b"250 -x").continues);
    }

    #[test]
    fn text_may_exceed_limit_by_one_line() {
        // Three 6000-byte continuation lines and a final one: 12001 bytes.
        let mut b = ReplyBuilder::new();
        for c in [b'a', b'b', b'c'] {
            let mut line = b"250-".to_vec();
            line.extend(std::iter::repeat_n(c, 6000));
            assert_eq!(b.push_line(&line), Push::More);
        }
        assert_eq!(b.push_line(b"550 end"), Push::Done);
        assert_eq!(b.finish().text.len(), 12001);
    }

    #[test]
    fn too_many_lines_is_reported() {
        let mut b = ReplyBuilder::new();
        for _ in 0..MAX_LINES {
            assert_eq!(b.push_line(b"250-x"), Push::More);
        }
        assert_eq!(b.push_line(b"250 x"), Push::TooManyLines);
    }

    #[test]
    fn incomplete_input_is_none() {
        assert!(parse(b"250-a\r\n250 b").is_none());
        assert!(parse(b"").is_none());
    }

    #[test]
    fn nul_and_eight_bit_bytes_are_kept() {
        assert_eq!(one(b"550 a\0b\xe9\r\n").text, b"a\0b\xe9");
    }

    #[test]
    fn capabilities_after_the_first_line() {
        let r = one(b"250-mx.example\r\n250-pipelining\r\n250-SIZE 10\r\n\
250 CHUNKING\r\n");
        let c = capabilities(&r);
        assert!(c.has("PIPELINING") && c.has("chunking") && c.has("Size"));
        assert_eq!(c.value("SIZE"), Some(&b"10"[..]));
        assert_eq!(c.value("CHUNKING"), Some(&b""[..]));
        assert!(!c.has("STARTTLS") && !c.has("MX.EXAMPLE"));
        let r = one(b"250 PIPELINING\r\n");
        assert_eq!(capabilities(&r), Capabilities::default());
    }

    #[test]
    fn security_capabilities() {
        let r = one(b"250-mx\r\n250-STARTTLS\r\n250-AUTH LOGIN PLAIN\r\n\
250 XCLIENT NAME ADDR\r\n");
        let c = capabilities(&r);
        assert!(c.has("STARTTLS") && c.has("XCLIENT"));
        assert!(c.auth_offers("PLAIN") && c.auth_offers("login"));
        assert_eq!(c.value("XCLIENT"), Some(&b"NAME ADDR"[..]));
        let both = one(b"250-mx\r\n250-AUTH PLAIN\r\n250 AUTH=LOGIN\r\n");
        let c = capabilities(&both);
        assert!(c.auth_offers("PLAIN") && c.auth_offers("LOGIN"));
        let old = one(b"250-mx\r\n250 AUTH=login\r\n");
        let c = capabilities(&old);
        assert!(c.auth_offers("LOGIN") && !c.auth_offers("PLAIN"));
        assert!(!c.has("STARTTLS"));
        // A keyword in the first line (the greeting) is not a capability.
        assert!(!capabilities(&one(b"250 STARTTLS\r\n")).has("STARTTLS"));
    }

    #[test]
    fn closing_codes() {
        let r = |code| Reply { code, text: vec![] };
        assert!(r(421).is_closing() && r(521).is_closing());
        assert!(!r(450).is_closing());
        assert!(r(250).is_positive() && !r(354).is_positive());
    }
}
