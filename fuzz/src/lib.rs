//! Shared input decoding, reference models and checks for the fuzz
//! targets (faults.md §5.4). Each target is one call into this library,
//! so a crash input can also be replayed from a plain test.
//!
//! The models are written from the spec (behavior.md §3 reply parsing,
//! faults.md R1/R3, X2), not from the code they check. The same checks
//! run without nightly in `tests/properties.rs`.

use std::time::Instant;

use smtp_source::endpoint::{self, Spec};
use smtp_source::lineio::{
    ChunkSource, LineError, LineReader, DISCARD_LIMIT, LINE_LIMIT,
};
use smtp_source::message::{self, DEFAULT_BODY};
use smtp_source::reply::{self, Push, ReplyBuilder, MAX_LINES, TEXT_LIMIT};

/// The SMTP reply alphabet of the Stalwart trick: mapped inputs reach
/// digits, dashes and line ends far more often than raw bytes do.
pub const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz- \r\n";

/// A fuzz input split into its parts.
///
/// Layout: byte 0 is the mode (bit 0: map the data onto `ALPHABET`),
/// byte 1 is the number of read sizes (mod 64), then one byte per
/// read size, then the data. Missing parts are empty.
pub struct Input {
    pub mode: u8,
    pub chunks: Vec<usize>,
    pub data: Vec<u8>,
}

impl Input {
    pub fn decode(raw: &[u8]) -> Input {
        let mode = raw.first().copied().unwrap_or(0);
        let n = raw.get(1).map_or(0, |&b| usize::from(b % 64));
        let rest = raw.get(2..).unwrap_or(&[]);
        let n = n.min(rest.len());
        let pattern: Vec<usize> =
            rest[..n].iter().map(|&b| chunk_size(b)).collect();
        let mut data = rest[n..].to_vec();
        if mode & 1 == 1 {
            map_alphabet(&mut data);
        }
        // The sizes repeat until they cover the data; with none given,
        // `ChunkSource` reads 1 byte at a time (the worst case).
        let mut chunks = Vec::new();
        let mut sum = 0;
        for &size in pattern.iter().cycle() {
            if sum >= data.len() {
                break;
            }
            sum += size;
            chunks.push(size);
        }
        Input { mode, chunks, data }
    }
}

/// 1..=240 bytes, or 1 KiB steps up to 16 KiB (over the reader's 4 KiB
/// buffer, to reach its clamping).
fn chunk_size(b: u8) -> usize {
    match b {
        0..=239 => usize::from(b) + 1,
        _ => (usize::from(b) - 239) * 1024,
    }
}

pub fn map_alphabet(data: &mut [u8]) {
    for b in data {
        *b = ALPHABET[usize::from(*b) % ALPHABET.len()];
    }
}

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

/// Trailing CRs stripped (F20), written apart from `reply::strip_crs`.
fn model_strip(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    &line[..end]
}

/// The lines a reader should return: split at LF, cap at `cap` (when
/// given), strip trailing CRs unless the line was cut. The last element says how reading ends.
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

/// behavior.md §3: code from exactly three leading digits; a `-` right
/// after the digit run (any length) continues; blanks after it skipped.
fn model_line(line: &[u8]) -> (u16, bool, &[u8]) {
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

/// The replies in `data`, one after another, as the spec reads them.
pub fn model_replies(data: &[u8], cap: Option<usize>) -> Vec<Outcome> {
    let (lines, end) = model_lines(data, cap);
    let mut out = Vec::new();
    let mut it = lines.into_iter();
    loop {
        let mut text = Vec::new();
        let mut n = 0;
        let done = loop {
            let Some(line) = it.next() else { break None };
            if n == MAX_LINES {
                break Some(Outcome::TooManyLines);
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
                break Some(Outcome::Reply { code, text });
            }
        };
        match done {
            Some(Outcome::TooManyLines) => {
                out.push(Outcome::TooManyLines);
                return out;
            }
            Some(r) => out.push(r),
            None => {
                out.push(end);
                return out;
            }
        }
    }
}

/// The replies in `data` by `reply::parse`, each from where the last
/// one ended; checks the per-reply invariants on the way.
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
                check_reply_bounds(&data[pos..pos + used - 1], &r);
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

/// Code ≤ 999, 0 unless the last line has exactly three leading digits
/// (then their value), text within TEXT_LIMIT plus one line.
fn check_reply_bounds(lines: &[u8], r: &reply::Reply) {
    let last = match lines.iter().rposition(|&b| b == b'\n') {
        Some(i) => &lines[i + 1..],
        None => lines,
    };
    let last = model_strip(last);
    let digits = last.iter().take_while(|b| b.is_ascii_digit()).count();
    assert!(r.code <= 999, "code {}", r.code);
    if digits == 3 {
        let want = std::str::from_utf8(&last[..3]).unwrap().parse();
        assert_eq!(Ok(r.code), want, "code of {last:?}");
    } else {
        assert_eq!(r.code, 0, "code of {last:?}");
    }
    let longest = lines.split(|&b| b == b'\n').map(<[u8]>::len).max();
    assert!(r.text.len() <= TEXT_LIMIT + longest.unwrap_or(0));
}

/// Reads lines through `LineReader` over a `ChunkSource`.
pub fn reader_lines(data: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, Outcome) {
    let mut src = ChunkSource::new(data, chunks.to_vec());
    let mut rd = LineReader::new();
    let mut out = Vec::new();
    let deadline = Instant::now();
    loop {
        match rd.read_line(&mut src, deadline) {
            Ok(line) => {
                assert!(line.len() <= LINE_LIMIT, "line of {}", line.len());
                out.push(line.to_vec());
            }
            Err(e) => return (out, end_outcome(e)),
        }
    }
}

fn end_outcome(e: LineError) -> Outcome {
    match e {
        LineError::Eof => Outcome::Incomplete,
        LineError::TooLong => Outcome::TooLong,
        other => panic!("unexpected read error {other:?}"),
    }
}

/// The replies in `data` read as the session does: `LineReader` lines
/// pushed into a `ReplyBuilder`.
pub fn reader_replies(data: &[u8], chunks: &[usize]) -> Vec<Outcome> {
    let mut src = ChunkSource::new(data, chunks.to_vec());
    let mut rd = LineReader::new();
    let mut out = Vec::new();
    let deadline = Instant::now();
    let mut builder = ReplyBuilder::new();
    loop {
        let line = match rd.read_line(&mut src, deadline) {
            Ok(line) => line,
            Err(e) => {
                out.push(end_outcome(e));
                return out;
            }
        };
        match builder.push_line(line) {
            Push::More => {}
            Push::Done => {
                let r = std::mem::take(&mut builder).finish();
                out.push(Outcome::Reply {
                    code: r.code,
                    text: r.text,
                });
            }
            Push::TooManyLines => {
                out.push(Outcome::TooManyLines);
                return out;
            }
        }
    }
}

/// True when no line is longer than the reader's cap, so reading whole
/// and reading through `LineReader` must agree exactly.
pub fn lines_within_cap(data: &[u8]) -> bool {
    data.split(|&b| b == b'\n').all(|l| l.len() <= LINE_LIMIT)
}

/// The `reply` target: parse whole, read in chunks, compare both with
/// the model and with each other.
pub fn check_reply(data: &[u8], chunks: &[usize]) {
    let whole = parse_replies(data);
    assert_eq!(whole, model_replies(data, None), "parse vs model");
    let chunked = reader_replies(data, chunks);
    assert_eq!(chunked, model_replies(data, Some(LINE_LIMIT)), "reader");
    if lines_within_cap(data) {
        assert_eq!(whole, chunked, "whole vs chunked");
    }
}

/// The `lineio` target: lines and the way reading ends match the model.
pub fn check_lineio(data: &[u8], chunks: &[usize]) {
    let (got, end) = reader_lines(data, chunks);
    let (want, want_end) = model_lines(data, Some(LINE_LIMIT));
    assert_eq!(got, want, "lines");
    assert_eq!(end, want_end, "end of reading");
}

/// The `dotstuff` target: `message::from_file` is undone by unstuffing.
pub fn check_dotstuff(data: &[u8]) {
    let out = message::from_file(data);
    if data.is_empty() {
        assert_eq!(out, DEFAULT_BODY);
        return;
    }
    let body = out.strip_suffix(b"\r\n").expect("final extra CRLF");
    let body = body.strip_suffix(b"\n").expect("last line's LF");
    // Input lines hold no LF, so every LF in the output ends a line.
    let lines: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").expect("CRLF line ends"))
        .collect();
    let want = data.strip_suffix(b"\n").unwrap_or(data);
    let inputs: Vec<&[u8]> = want.split(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), inputs.len(), "line count");
    for (got, line) in lines.iter().zip(&inputs) {
        if line.first() == Some(&b'.') {
            assert!(got.starts_with(b"..") && &got[1..] == *line);
        } else {
            assert_eq!(got, line);
        }
    }
    let unstuffed: Vec<&[u8]> = lines
        .iter()
        .map(|l| if l.starts_with(b"..") { &l[1..] } else { l })
        .collect();
    assert_eq!(unstuffed.join(&b'\n'), want, "unstuffing round trip");
    assert!(!out.starts_with(b".\r\n"));
    assert!(!out.windows(5).any(|w| w == b"\r\n.\r\n"), "early end");
}

/// Bytes of a Spec field, whatever type the endpoint module uses.
pub trait Field {
    fn bytes(&self) -> Vec<u8>;
}

impl Field for [u8] {
    fn bytes(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl Field for Vec<u8> {
    fn bytes(&self) -> Vec<u8> {
        self.clone()
    }
}

impl Field for str {
    fn bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Field for String {
    fn bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Field for std::ffi::OsStr {
    fn bytes(&self) -> Vec<u8> {
        std::os::unix::ffi::OsStrExt::as_bytes(self).to_vec()
    }
}

impl Field for std::ffi::OsString {
    fn bytes(&self) -> Vec<u8> {
        self.as_os_str().bytes()
    }
}

impl Field for std::path::Path {
    fn bytes(&self) -> Vec<u8> {
        self.as_os_str().bytes()
    }
}

impl Field for std::path::PathBuf {
    fn bytes(&self) -> Vec<u8> {
        self.as_os_str().bytes()
    }
}

impl Field for u16 {
    fn bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl<T: Field + ?Sized> Field for &T {
    fn bytes(&self) -> Vec<u8> {
        (**self).bytes()
    }
}

impl<T: Field> Field for Option<T> {
    /// No port means the default service, written as an empty port.
    fn bytes(&self) -> Vec<u8> {
        self.as_ref().map_or_else(Vec::new, Field::bytes)
    }
}

/// Spec back to operand text, or None where that text could read back
/// differently (a `[`/`]` in the host, a `:`/`[`/`]` in the port, an
/// empty host). `inet:` is always written, so hosts named `unix` or
/// `inet` cannot change meaning.
pub fn render(spec: &Spec) -> Option<Vec<u8>> {
    #[allow(unreachable_patterns)]
    match spec {
        Spec::Unix(path) => Some([&b"unix:"[..], &path.bytes()].concat()),
        Spec::Inet { host, port, .. } => {
            let (host, port) = (host.bytes(), port.bytes());
            let bad = |b: &[u8], set: &[u8]| b.iter().any(|c| set.contains(c));
            if host.is_empty() || bad(&host, b"[]") || bad(&port, b":[]") {
                return None;
            }
            let host = if host.contains(&b':') {
                [&b"["[..], &host, b"]"].concat()
            } else {
                host
            };
            Some([&b"inet:"[..], &host, b":", &port].concat())
        }
        _ => None,
    }
}

/// The `endpoint` target: no panic; a parsed operand, printed and
/// parsed again, prints the same. A re-parse may fail (the bracketed
/// form can be checked more strictly than the plain one), so only an
/// accepted re-parse is compared; a `unix:` path must always re-parse.
pub fn check_endpoint(arg: &[u8]) {
    let spec = match endpoint::parse(arg) {
        Ok(spec) => spec,
        Err(msg) => {
            assert!(!msg.is_empty(), "empty error for {arg:?}");
            return;
        }
    };
    let Some(text) = render(&spec) else { return };
    match endpoint::parse(&text) {
        Ok(again) => assert_eq!(render(&again).as_ref(), Some(&text)),
        Err(msg) => assert!(
            !matches!(spec, Spec::Unix(_)),
            "{text:?} does not re-parse: {msg:?}"
        ),
    }
}

/// Operand inputs: mode bit 0 maps onto an endpoint alphabet, bits 1-2
/// pick a prefix (none, `unix:`, `inet:`, `[`).
pub fn endpoint_input(raw: &[u8]) -> Vec<u8> {
    const ALPHA: &[u8] = b"0123456789abcdefinetux:[]./-_v";
    let mode = raw.first().copied().unwrap_or(0);
    let mut data = raw.get(1..).unwrap_or(&[]).to_vec();
    if mode & 1 == 1 {
        for b in &mut data {
            *b = ALPHA[usize::from(*b) % ALPHA.len()];
        }
    }
    let prefix: &[u8] = match (mode >> 1) & 3 {
        0 => b"",
        1 => b"unix:",
        2 => b"inet:",
        _ => b"[",
    };
    [prefix, &data].concat()
}
