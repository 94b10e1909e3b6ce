//! The reference models of the pure parsers, shared by the property
//! tests (`tests/properties.rs`, stable toolchain) and the cargo-fuzz
//! targets (`fuzz/src/lib.rs` includes this file), so one model serves
//! both. The models are written from the reply rules of
//! `docs/reference-behaviour.md` ("Replies"), not from the code they check; the
//! `check_*` functions run the code under test against them.

use std::time::Instant;

use smtp_source::lineio::{
    ChunkSource, LineError, LineReader, DISCARD_LIMIT, LINE_LIMIT,
};
use smtp_source::message::{self, DEFAULT_BODY};
use smtp_source::reply::{self, Push, ReplyBuilder, MAX_LINES, TEXT_LIMIT};

/// The reply alphabet of the fuzz target: `0-9 a-z - space \r \n`.
pub const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz- \r\n";

/// How one reply read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reply {
        code: u16,
        text: Vec<u8>,
    },
    TooManyLines,
    /// End of input inside (or at the start of) a reply.
    Incomplete,
    /// A line had more than `DISCARD_LIMIT` bytes over the cap.
    TooLong,
}

// ---- reference models ----

pub fn model_strip(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    &line[..end]
}

/// Split at LF, cap at `cap` (when given), strip trailing CRs unless the
/// line was cut; a line more than `DISCARD_LIMIT` over the cap ends
/// reading (man page NOTES X2).
pub fn model_lines(data: &[u8], cap: Option<usize>) -> (Vec<&[u8]>, Outcome) {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let lf = rest.iter().position(|&b| b == b'\n');
        let len = lf.unwrap_or(rest.len());
        if cap.is_some_and(|c| len > c + DISCARD_LIMIT) {
            return (out, Outcome::TooLong);
        }
        let Some(lf) = lf else {
            return (out, Outcome::Incomplete);
        };
        let keep = cap.map_or(lf, |c| lf.min(c));
        // A cut line keeps its trailing CRs (as 3.7.11 does).
        let kept = &rest[..keep];
        out.push(if keep < lf { kept } else { model_strip(kept) });
        rest = &rest[lf + 1..];
    }
}

/// The code is exactly three leading digits, else 0; a
/// `-` right after the digit run (of any length) continues the reply;
/// blanks after it are skipped.
pub fn model_line(line: &[u8]) -> (u16, bool, &[u8]) {
    let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
    let code = if digits == 3 {
        line[..3]
            .iter()
            .fold(0, |a, d| a * 10 + u16::from(d - b'0'))
    } else {
        0
    };
    let cont = line.get(digits) == Some(&b'-');
    let mut start = digits + usize::from(cont);
    while line
        .get(start)
        .is_some_and(|b| b" \t\n\x0b\x0c\r".contains(b))
    {
        start += 1;
    }
    (code, cont, &line[start..])
}

/// Every reply in `data`, one after the other, as the reference reads
/// them.
pub fn model_replies(data: &[u8], cap: Option<usize>) -> Vec<Outcome> {
    let (lines, end) = model_lines(data, cap);
    replies_from_lines(&lines, end)
}

/// Groups model lines into replies; text is only appended while under
/// `TEXT_LIMIT`, at most `MAX_LINES` lines (man page NOTES X2).
pub fn replies_from_lines(lines: &[&[u8]], end: Outcome) -> Vec<Outcome> {
    let mut lines = lines.iter();
    let mut out = Vec::new();
    loop {
        let (mut text, mut n) = (Vec::new(), 0);
        let done = loop {
            let Some(line) = lines.next() else {
                break end.clone();
            };
            if n == MAX_LINES {
                break Outcome::TooManyLines;
            }
            let (code, cont, t) = model_line(line);
            if n > 0 && text.len() < TEXT_LIMIT {
                text.push(b'\n');
            }
            if text.len() < TEXT_LIMIT {
                text.extend_from_slice(t);
            }
            n += 1;
            if !cont {
                break Outcome::Reply { code, text };
            }
        };
        let last = !matches!(done, Outcome::Reply { .. });
        out.push(done);
        if last {
            return out;
        }
    }
}

// ---- the code under test ----

/// Replies by `reply::parse`, each from where the previous one ended,
/// with the per-reply invariants checked on the way.
pub fn parse_replies(data: &[u8]) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        match reply::parse(&data[pos..]) {
            None => out.push(Outcome::Incomplete),
            Some(Err(push)) => {
                assert_eq!(push, Push::TooManyLines);
                out.push(Outcome::TooManyLines);
            }
            Some(Ok((r, used))) => {
                assert!(used > 0 && pos + used <= data.len());
                assert_eq!(data[pos + used - 1], b'\n', "ends at an LF");
                check_bounds(&data[pos..pos + used - 1], r.code, &r.text);
                pos += used;
                out.push(Outcome::Reply {
                    code: r.code,
                    text: r.text,
                });
                continue;
            }
        }
        return out;
    }
}

/// Code ≤ 999; 0 unless the last line has exactly three leading digits,
/// and then their value; text ≤ TEXT_LIMIT plus one line.
pub fn check_bounds(lines: &[u8], code: u16, text: &[u8]) {
    let last = lines.rsplit(|&b| b == b'\n').next().unwrap_or(lines);
    let last = model_strip(last);
    let digits = last.iter().take_while(|b| b.is_ascii_digit()).count();
    assert!(code <= 999, "code {code}");
    if digits == 3 {
        let want = std::str::from_utf8(&last[..3]).unwrap().parse();
        assert_eq!(Ok(code), want, "code of {last:?}");
    } else {
        assert_eq!(code, 0, "code of {last:?}");
    }
    let longest = lines.split(|&b| b == b'\n').map(<[u8]>::len).max();
    assert!(text.len() <= TEXT_LIMIT + longest.unwrap_or(0));
}

pub fn end_outcome(e: LineError) -> Outcome {
    match e {
        LineError::Eof => Outcome::Incomplete,
        LineError::TooLong => Outcome::TooLong,
        other => panic!("unexpected read error {other:?}"),
    }
}

/// What one pass of `LineReader` over a `ChunkSource` gives: every line
/// and how reading ended, and the replies a `ReplyBuilder` makes of
/// those lines (as a session reads them).
pub struct Read {
    pub lines: Vec<Vec<u8>>,
    pub end: Outcome,
    pub replies: Vec<Outcome>,
}

pub fn read_all(data: &[u8], chunks: &[usize]) -> Read {
    let mut src = ChunkSource::new(data, chunks.to_vec());
    let mut rd = LineReader::new();
    let mut builder = ReplyBuilder::new();
    let (mut lines, mut replies) = (Vec::new(), Vec::new());
    let mut stopped = false;
    let end = loop {
        let line = match rd.read_line(&mut src, Instant::now()) {
            Ok(line) => line,
            Err(e) => break end_outcome(e),
        };
        assert!(line.len() <= LINE_LIMIT, "line of {}", line.len());
        lines.push(line.to_vec());
        if stopped {
            continue;
        }
        match builder.push_line(line) {
            Push::More => {}
            Push::Done => {
                let r = std::mem::take(&mut builder).finish();
                replies.push(Outcome::Reply {
                    code: r.code,
                    text: r.text,
                });
            }
            Push::TooManyLines => {
                replies.push(Outcome::TooManyLines);
                stopped = true;
            }
        }
    };
    if !stopped {
        replies.push(end.clone());
    }
    Read {
        lines,
        end,
        replies,
    }
}

pub fn reader_lines(data: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, Outcome) {
    let read = read_all(data, chunks);
    (read.lines, read.end)
}

pub fn reader_replies(data: &[u8], chunks: &[usize]) -> Vec<Outcome> {
    read_all(data, chunks).replies
}

pub fn lines_within_cap(data: &[u8]) -> bool {
    data.split(|&b| b == b'\n').all(|l| l.len() <= LINE_LIMIT)
}

/// The reply and lineio invariants of the fuzz targets, in one pass:
/// lines read in chunks match the capped model, replies made of them
/// match the model's, and `reply::parse` on the whole input matches the
/// uncapped model (the same one when no line is over the cap).
pub fn check_reply_and_lines(data: &[u8], chunks: &[usize]) {
    let (lines, end) = model_lines(data, Some(LINE_LIMIT));
    let read = read_all(data, chunks);
    assert_eq!(read.lines, lines, "lines");
    assert_eq!(read.end, end, "end of reading");
    let want = replies_from_lines(&lines, end);
    assert_eq!(read.replies, want, "chunked replies");
    let whole = parse_replies(data);
    if lines_within_cap(data) {
        assert_eq!(whole, want, "whole vs chunked");
    } else {
        assert_eq!(whole, model_replies(data, None), "whole vs model");
    }
}

/// Unstuffing the -F output gives the input back (without one final
/// LF); no output line starts with a lone `.`, so there is no early
/// end-of-data line.
pub fn check_dotstuff(data: &[u8]) {
    let out = message::from_file(data);
    if data.is_empty() {
        assert_eq!(out, DEFAULT_BODY);
        return;
    }
    let body = out.strip_suffix(b"\r\n").expect("final extra CRLF");
    let body = body.strip_suffix(b"\n").expect("last line's LF");
    let want = data.strip_suffix(b"\n").unwrap_or(data);
    let mut unstuffed = Vec::with_capacity(want.len());
    // Input lines hold no LF, so every LF in the output ends a line.
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").expect("CRLF line ends");
        if i > 0 {
            unstuffed.push(b'\n');
        }
        match line {
            [b'.', b'.', ..] => unstuffed.extend_from_slice(&line[1..]),
            [b'.', ..] => panic!("unstuffed line {line:?}"),
            _ => unstuffed.extend_from_slice(line),
        }
    }
    assert_eq!(unstuffed, want, "unstuffing round trip");
    assert!(!out.starts_with(b".\r\n"));
    assert!(!out.windows(5).any(|w| w == b"\r\n.\r\n"), "early end");
}

// ---- --threshold expressions ----

/// The threshold alphabet of the fuzz target and the property test.
pub const THRESHOLD_ALPHABET: &[u8] =
    b"transction.pmeaxirolu_0123456789<>=!%,ms ";

/// Fuzz input for the threshold parser: bit 0 of byte 0 maps the rest
/// onto `THRESHOLD_ALPHABET`.
pub fn threshold_input(raw: &[u8]) -> Vec<u8> {
    let mode = raw.first().copied().unwrap_or(0);
    let mut data = raw.get(1..).unwrap_or(&[]).to_vec();
    if mode & 1 == 1 {
        for b in &mut data {
            *b =
                THRESHOLD_ALPHABET[usize::from(*b) % THRESHOLD_ALPHABET.len()];
        }
    }
    data
}

/// Any input: no panic; an error says something; an accepted
/// expression keeps its text, parses again to the same threshold, has a
/// finite limit, and judges consistently with its comparison.
pub fn check_threshold(raw: &[u8]) {
    use smtp_source::threshold::{self, Measured, Op};
    let t = match threshold::parse(raw) {
        Ok(t) => t,
        Err(msg) => {
            assert!(!msg.is_empty(), "empty error for {raw:?}");
            return;
        }
    };
    assert_eq!(t.expr.as_bytes(), raw);
    assert_eq!(threshold::parse(t.expr.as_bytes()), Ok(t.clone()));
    assert!(t.limit.is_finite() && t.limit >= 0.0, "{t:?}");
    let counts = smtp_source::report::stats::Counts {
        attempted: 10,
        accepted: 7,
        rejected: 2,
        failed: 1,
        errors: [1, 0, 2, 0, 0, 0, 0, 0],
        ..Default::default()
    };
    let mut latency: Vec<_> = smtp_source::report::stats::PHASES
        .iter()
        .map(|_| smtp_source::report::codec::new_histogram())
        .collect();
    for (i, h) in latency.iter_mut().enumerate() {
        h.record(1000 * (i as u64 + 1)).unwrap();
    }
    let m = Measured {
        counts: &counts,
        latency: &latency,
        seconds: 2.0,
    };
    let v = t.judge(&m);
    let value = v.value.expect("every metric has samples here");
    let holds = match t.op {
        Op::Lt => value < t.limit,
        Op::Le => value <= t.limit,
        Op::Gt => value > t.limit,
        Op::Ge => value >= t.limit,
        Op::Eq => value == t.limit,
    };
    assert_eq!(v.ok, holds, "{t:?} {v:?}");
}
