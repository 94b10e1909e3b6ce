//! message: the DATA content, built once before any session starts.
//!
//! Pure: the body (default text, the -l filler or the -F file) is made
//! once and shared by every session with the end-of-data dot already
//! appended; only the headers (Date once per process, Message-Id per
//! message) are made per message. The byte formats are the reference's
//! (man page, "Message content"; `docs/reference-behaviour.md`).

use crate::command::join;
use crate::sys::LocalTime;

/// The body when neither -l nor a non-empty -F file is given.
pub const DEFAULT_BODY: &[u8] = b"La de da de da 1.\r\n\
La de da de da 2.\r\n\
La de da de da 3.\r\n\
La de da de da 4.\r\n";

/// The -l payload: `len` bytes of `X` where every 80th position gets a
/// CRLF and the byte 80 before it a line-number digit, then CRLF.
/// So: 80-byte lines `<digit>` + 77 `X` + CRLF, and a last line of 1..=80
/// `X` with no digit, as the reference makes it. Never starts a line
/// with `.`.
pub fn filler(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 2);
    filler_into(len, &mut out);
    out
}

/// `filler(len)` appended to `out` (which the caller sizes: a body of
/// gigabytes is then made in place, in one allocation).
pub fn filler_into(len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + len, b'X');
    let line = &mut out[start..];
    let mut i = 80;
    while i < len {
        line[i - 80] = b'0' + ((i / 80) % 10) as u8;
        line[i - 2] = b'\r';
        line[i - 1] = b'\n';
        i += 80;
    }
    out.extend_from_slice(b"\r\n");
}

/// The -F transformation: split at LF (a CR before it is kept), put a
/// `.` in front of lines that start with `.`, end every line with CRLF,
/// then add one more CRLF. An empty file gives the default body.
pub fn from_file(data: &[u8]) -> Vec<u8> {
    from_file_as(data, Form::Data)
}

/// How the content will be sent, which decides whether lines that start
/// with `.` are stuffed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// After DATA: dot-stuffed.
    Data,
    /// In BDAT chunks: the lines as they are (RFC 3030 §2).
    Bdat,
}

/// The -F transformation, for DATA or for BDAT.
pub fn from_file_as(data: &[u8], form: Form) -> Vec<u8> {
    if data.is_empty() {
        return DEFAULT_BODY.to_vec();
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 4);
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    for line in body.split(|&b| b == b'\n') {
        if form == Form::Data && line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// What the per-message headers need (absent with -o and with -F).
#[derive(Debug, Clone)]
pub struct HeaderTemplate {
    pub from: Vec<u8>,
    pub to: Vec<u8>,
    pub subject: Option<Vec<u8>>,
    pub myhostname: Vec<u8>,
}

/// Per-message values of the Message-Id.
#[derive(Debug, Clone, Copy)]
pub struct MessageId {
    pub pid: u32,
    pub fd: i32,
    /// The global count of unclaimed messages (may be negative).
    pub counter: i64,
}

impl HeaderTemplate {
    /// Appends From/To/Date/Message-Id/[Subject] and the blank line.
    /// `from` replaces the plan's sender (--sender-file), `to` its
    /// recipient (3.9 numbering and --rcpt-file name the last recipient
    /// sent).
    pub fn write(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        date: &[u8],
        id: MessageId,
        out: &mut Vec<u8>,
    ) {
        header(out, b"From: <", from.unwrap_or(&self.from), b">");
        header(out, b"To: <", to.unwrap_or(&self.to), b">");
        header(out, b"Date: ", date, b"");
        // %04x of C ints: negative values print as 32-bit two's
        // complement (`-m 1 -s 3` gives fffffffe).
        let ids = format!(
            "Message-Id: <{:04x}.{:04x}.{:04x}@",
            id.pid, id.fd as u32, id.counter as i32 as u32
        );
        header(out, ids.as_bytes(), &self.myhostname, b">");
        if let Some(subject) = &self.subject {
            header(out, b"Subject: ", subject, b"");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// One header line: the same join as a command's, and CRLF.
fn header(out: &mut Vec<u8>, head: &[u8], value: &[u8], tail: &[u8]) {
    join(out, head, value, tail);
    out.extend_from_slice(b"\r\n");
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
    "Nov", "Dec",
];

/// The Date: value, `%a, %e %b %Y %H:%M:%S +hhmm (%Z)` in the C locale.
/// The sign is right for offsets under an hour west of UTC (the
/// reference prints `+0030` for -00:30: man page NOTES, X11).
pub fn date_value(t: &LocalTime) -> Vec<u8> {
    let sign = if t.gmtoff < 0 { '-' } else { '+' };
    let off = t.gmtoff.unsigned_abs() / 60;
    let mut out = format!(
        "{}, {:>2} {} {} {:02}:{:02}:{:02} {}{:02}{:02} (",
        DAYS.get(t.wday as usize).unwrap_or(&"???"),
        t.mday,
        MONTHS.get(t.month as usize).unwrap_or(&"???"),
        t.year,
        t.hour,
        t.min,
        t.sec,
        sign,
        off / 60,
        off % 60,
    )
    .into_bytes();
    out.extend_from_slice(&t.zone);
    out.push(b')');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(body: &[u8]) -> Vec<&[u8]> {
        body.split_inclusive(|&b| b == b'\n').collect()
    }

    #[test]
    fn filler_short_lengths_are_one_line_of_x() {
        assert_eq!(filler(1), b"X\r\n");
        assert_eq!(filler(79), [vec![b'X'; 79], b"\r\n".to_vec()].concat());
        assert_eq!(filler(80), [vec![b'X'; 80], b"\r\n".to_vec()].concat());
    }

    #[test]
    fn filler_81_is_a_numbered_line_and_one_x() {
        let mut want = b"1".to_vec();
        want.extend(vec![b'X'; 77]);
        want.extend_from_slice(b"\r\nX\r\n");
        assert_eq!(filler(81), want);
    }

    #[test]
    fn filler_layout_for_1000() {
        let body = filler(1000);
        assert_eq!(body.len(), 1002);
        let l = lines(&body);
        assert_eq!(l.len(), 13);
        for (i, line) in l[..12].iter().enumerate() {
            assert_eq!(line.len(), 80);
            assert_eq!(line[0], b'0' + ((i + 1) % 10) as u8);
            assert!(line[1..78].iter().all(|&b| b == b'X'));
        }
        assert_eq!(l[12], [vec![b'X'; 40], b"\r\n".to_vec()].concat());
    }

    #[test]
    fn file_lines_get_crlf_dot_stuffing_and_a_final_blank_line() {
        assert_eq!(from_file(b"a\n.b\nc"), b"a\r\n..b\r\nc\r\n\r\n");
    }

    #[test]
    fn bdat_body_is_not_dot_stuffed() {
        assert_eq!(from_file_as(b"a\n.b\n", Form::Bdat), b"a\r\n.b\r\n\r\n");
    }

    #[test]
    fn file_crlf_keeps_the_cr() {
        assert_eq!(
            from_file(b"Subject: crlf\r\n"),
            b"Subject: crlf\r\r\n\r\n"
        );
    }

    #[test]
    fn empty_file_is_default_body_and_newline_file_is_blank_lines() {
        assert_eq!(from_file(b""), DEFAULT_BODY);
        assert_eq!(from_file(b"\n"), b"\r\n\r\n");
    }

    #[test]
    fn file_nul_and_lone_cr_pass_through() {
        assert_eq!(from_file(b"a\0b\rc\n"), b"a\0b\rc\r\n\r\n");
    }

    #[test]
    fn headers_in_order() {
        let t = HeaderTemplate {
            from: b"foo@vm".to_vec(),
            to: b"bar@vm".to_vec(),
            subject: Some(Vec::new()),
            myhostname: b"vm".to_vec(),
        };
        let mut out = Vec::new();
        let id = MessageId {
            pid: 0x72ba,
            fd: 3,
            counter: -2,
        };
        t.write(None, None, b"D", id, &mut out);
        assert_eq!(
            out,
            b"From: <foo@vm>\r\nTo: <bar@vm>\r\nDate: D\r\n\
Message-Id: <72ba.0003.fffffffe@vm>\r\nSubject: \r\n\r\n"
        );
    }

    fn tm(gmtoff: i64, mday: u32) -> LocalTime {
        LocalTime {
            year: 2026,
            month: 0,
            mday,
            wday: 1,
            hour: 3,
            min: 4,
            sec: 5,
            gmtoff,
            zone: b"XXX".to_vec(),
        }
    }

    #[test]
    fn date_pads_day_with_space() {
        assert_eq!(
            date_value(&tm(0, 5)),
            b"Mon,  5 Jan 2026 03:04:05 +0000 (XXX)"
        );
    }

    #[test]
    fn date_offsets() {
        assert!(date_value(&tm(19800, 27)).ends_with(b"+0530 (XXX)"));
        assert!(date_value(&tm(-12600, 27)).ends_with(b"-0330 (XXX)"));
        // The reference prints +0030 here (man page NOTES, X11).
        assert!(date_value(&tm(-1800, 27)).ends_with(b"-0030 (XXX)"));
    }
}
