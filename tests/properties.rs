//! Deterministic property tests for the pure parsers (faults.md §5.4):
//! the stable-toolchain twin of the `fuzz/` targets. A fixed-seed
//! `StdRng` generates raw bytes and inputs over the SMTP reply alphabet,
//! cut into random read sizes; each result is compared with a reference
//! model written from behavior.md §3 and faults.md R1/R3/X2, not from the
//! code under test. Also: the chunking test (Stalwart), the every-prefix
//! test (ureq-proto) and the -F dot-stuffing round trip.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use smtp_source::lineio::{
    ChunkSource, LineError, LineReader, DISCARD_LIMIT, LINE_LIMIT,
};
use smtp_source::message::{self, DEFAULT_BODY};
use smtp_source::reply::{self, Push, ReplyBuilder, MAX_LINES, TEXT_LIMIT};

/// The reply alphabet of the fuzz target: `0-9 a-z - space \r \n`.
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz- \r\n";

/// How one reply read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
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

fn model_strip(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    &line[..end]
}

/// Split at LF, cap at `cap` (when given), strip trailing CRs unless the
/// line was cut; a line
/// more than `DISCARD_LIMIT` over the cap ends reading (X2).
fn model_lines(data: &[u8], cap: Option<usize>) -> (Vec<&[u8]>, Outcome) {
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

/// behavior.md §3: the code is exactly three leading digits, else 0; a
/// `-` right after the digit run (of any length) continues the reply;
/// blanks after it are skipped.
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

/// Every reply in `data`, one after the other, as the spec reads them.
fn model_replies(data: &[u8], cap: Option<usize>) -> Vec<Outcome> {
    let (lines, end) = model_lines(data, cap);
    replies_from_lines(&lines, end)
}

/// Groups model lines into replies; text is only appended while under
/// `TEXT_LIMIT` (behavior.md §3), at most `MAX_LINES` lines (X2).
fn replies_from_lines(lines: &[&[u8]], end: Outcome) -> Vec<Outcome> {
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
fn parse_replies(data: &[u8]) -> Vec<Outcome> {
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
fn check_bounds(lines: &[u8], code: u16, text: &[u8]) {
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

fn end_outcome(e: LineError) -> Outcome {
    match e {
        LineError::Eof => Outcome::Incomplete,
        LineError::TooLong => Outcome::TooLong,
        other => panic!("unexpected read error {other:?}"),
    }
}

/// What one pass of `LineReader` over a `ChunkSource` gives: every line
/// and how reading ended, and the replies a `ReplyBuilder` makes of
/// those lines (as a session reads them).
struct Read {
    lines: Vec<Vec<u8>>,
    end: Outcome,
    replies: Vec<Outcome>,
}

fn read_all(data: &[u8], chunks: &[usize]) -> Read {
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

fn reader_lines(data: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, Outcome) {
    let read = read_all(data, chunks);
    (read.lines, read.end)
}

fn reader_replies(data: &[u8], chunks: &[usize]) -> Vec<Outcome> {
    read_all(data, chunks).replies
}

fn lines_within_cap(data: &[u8]) -> bool {
    data.split(|&b| b == b'\n').all(|l| l.len() <= LINE_LIMIT)
}

/// The reply and lineio invariants of the fuzz targets, in one pass:
/// lines read in chunks match the capped model, replies made of them
/// match the model's, and `reply::parse` on the whole input matches the
/// uncapped model (the same one when no line is over the cap).
fn check_reply_and_lines(data: &[u8], chunks: &[usize]) {
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
fn check_dotstuff(data: &[u8]) {
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

// ---- generators ----

/// Random bytes. Filled in bulk: `gen_range` per byte is slow in debug
/// builds, where ChaCha is unoptimized.
fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    rng.fill(&mut out[..]);
    out
}

fn from_alphabet(rng: &mut StdRng, len: usize, alphabet: &[u8]) -> Vec<u8> {
    let mut out = random_bytes(rng, len);
    for b in &mut out {
        *b = alphabet[usize::from(*b) % alphabet.len()];
    }
    out
}

/// One reply-like line: 2-4 digits (mostly 3), a separator, alphabet
/// text, and a line end (CRLF, LF, CRCRLF, or sometimes none).
fn reply_line(rng: &mut StdRng, out: &mut Vec<u8>) {
    let digits = [3, 3, 3, 3, 0, 2, 4][rng.gen_range(0..7)];
    out.extend(from_alphabet(rng, digits, b"0123456789"));
    out.extend_from_slice([&b"-"[..], b" ", b"", b"x"][rng.gen_range(0..4)]);
    let len = rng.gen_range(0..12);
    out.extend(from_alphabet(rng, len, ALPHABET));
    let ends: [&[u8]; 5] = [b"\r\n", b"\n", b"\r\r\n", b"\r\n", b""];
    out.extend_from_slice(ends[rng.gen_range(0..ends.len())]);
}

/// A line near the `LINE_LIMIT` boundary, with CRs where it is cut.
fn long_line(rng: &mut StdRng, out: &mut Vec<u8>) {
    out.extend_from_slice(b"250-");
    let len = LINE_LIMIT - 8 + rng.gen_range(0..16);
    out.extend(from_alphabet(rng, len, b"x\r"));
    out.extend_from_slice(b"\r\n");
}

fn gen_data(rng: &mut StdRng) -> Vec<u8> {
    match rng.gen_range(0..10_000) {
        0..=2999 => {
            let len = rng.gen_range(0..100);
            random_bytes(rng, len)
        }
        3000..=5999 => {
            let len = rng.gen_range(0..120);
            from_alphabet(rng, len, ALPHABET)
        }
        6000..=9997 => {
            let mut out = Vec::new();
            for _ in 0..rng.gen_range(0..6) {
                reply_line(rng, &mut out);
            }
            out
        }
        9998 => {
            // Around the MAX_LINES boundary.
            b"2-\n".repeat(MAX_LINES - 2 + rng.gen_range(0..4))
        }
        _ => {
            let mut out = Vec::new();
            long_line(rng, &mut out);
            reply_line(rng, &mut out);
            out
        }
    }
}

/// Read sizes that cover `len` bytes: mostly small, sometimes 1 (the
/// worst case), sometimes past the reader's 4 KiB buffer. A 0 in the
/// list is read as 1 by `ChunkSource`.
fn gen_chunks(rng: &mut StdRng, len: usize) -> Vec<usize> {
    let max = [1, 4, 16, 16, 300, 300, 5000][rng.gen_range(0..7)];
    let mut chunks = Vec::new();
    let mut sum = 0;
    while sum < len {
        for b in random_bytes(rng, 32) {
            let size = usize::from(b) * (max + 1) / 256;
            sum += size.max(1);
            chunks.push(size);
        }
    }
    chunks
}

// ---- tests ----

/// Runs `count` generated inputs through the reply and lineio checks.
fn random_inputs(seed: u64, count: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..count {
        let data = gen_data(&mut rng);
        let chunks = gen_chunks(&mut rng, data.len());
        let r = std::panic::catch_unwind(|| {
            check_reply_and_lines(&data, &chunks);
        });
        assert!(r.is_ok(), "seed {seed:#x} #{i}: {data:?} {chunks:?}");
    }
}

// 200,000 inputs in all, split in two tests so they run in parallel.
#[test]
fn reply_and_lineio_random_inputs_a() {
    random_inputs(0x5eed_000a, 100_000);
}

#[test]
fn reply_and_lineio_random_inputs_b() {
    random_inputs(0x5eed_000b, 100_000);
}

/// Every reply row of faults.md §4.2 (F10-F21), in one stream.
fn fault_replies() -> Vec<u8> {
    let rows: [&[u8]; 18] = [
        b"220\r\n",
        b"250\n",
        b"25\r\nabc\r\n\r\n2500 x\r\n25 0\r\n",
        b"250x\r\n",
        b"150 prelim\r\n600 x\r\n099\r\n",
        b"220-a\r\n250 b\r\n",
        b"250-ok\r\n550 bad\r\n",
        b"220-first line\r\n220-second\r\n220 third\r\n",
        b"220-x\r\n220-x\r\n220-x\r\n220 x\r\n",
        b"220-a\n220 b\n",
        b"250 x\r\r\n",
        b"250 a\rb\r\n",
        b"220 a\0b\xe9\xff\x1b[31mred\x1b[0m\r\n",
        b"  220 x\r\n",
        b"2500-x\r\n250 y\r\n",
        b"-\n250-\r\n250\r\n",
        b"SSH-2.0-x\r\n",
        b"220-unfinished\r\n220-and then silence",
    ];
    rows.concat()
}

#[test]
fn chunking_does_not_change_replies_or_lines() {
    let data = fault_replies();
    let whole = parse_replies(&data);
    let (lines, end) = reader_lines(&data, &[data.len()]);
    for size in 1..=data.len() {
        let chunks = vec![size; data.len() + 1];
        assert_eq!(reader_replies(&data, &chunks), whole, "size {size}");
        let got = reader_lines(&data, &chunks);
        assert_eq!((&got.0, &got.1), (&lines, &end), "size {size}");
    }
}

#[test]
fn chunking_of_long_lines_keeps_the_cap() {
    // F17: a 15 KB line, then a normal reply; cut around the buffer
    // size and the cap.
    let mut data = b"250 ".to_vec();
    data.extend(std::iter::repeat_n(b'x', 15_000));
    data.extend_from_slice(b"\r\n250 next\r\n");
    let want = model_replies(&data, Some(LINE_LIMIT));
    for size in [1, 2, 3, 7, 100, 4095, 4096, 4097, 10240, 10241, 20_000] {
        let chunks = vec![size; data.len() + 1];
        assert_eq!(reader_replies(&data, &chunks), want, "size {size}");
    }
}

/// Complete replies: multi-line, bare LF, CRLF, CRCRLF, code-only.
const COMPLETE: [&[u8]; 10] = [
    b"250\r\n",
    b"220\n",
    b"250 ok\r\n",
    b"250 bare lf\n",
    b"250 x\r\r\n",
    b"220-a\r\n220-b\n220 c\r\n",
    b"250-\r\n250\r\n",
    b"550-line one\r\n550 line two\r\n",
    b"250-a\n250-b\n250-c\n250 d\n",
    b"2500-x\r\n25-y\n250 z\r\n",
];

#[test]
fn every_prefix_of_a_reply_is_incomplete() {
    for full in COMPLETE {
        for end in 0..full.len() {
            let prefix = &full[..end];
            assert_eq!(reply::parse(prefix), None, "prefix {prefix:?}");
            let got = reader_replies(prefix, &[]);
            assert_eq!(got, [Outcome::Incomplete], "prefix {prefix:?}");
        }
        let (r, used) = reply::parse(full).unwrap().unwrap();
        assert_eq!(used, full.len(), "{full:?}");
        let want = Outcome::Reply {
            code: r.code,
            text: r.text,
        };
        let got = reader_replies(full, &[]);
        assert_eq!(got, [want, Outcome::Incomplete], "{full:?}");
    }
}

#[test]
fn max_lines_boundary() {
    let mut ok = b"250-x\n".repeat(MAX_LINES - 1);
    ok.extend_from_slice(b"250 x\n");
    assert!(matches!(reply::parse(&ok), Some(Ok((_, n))) if n == ok.len()));
    let mut over = b"250-x\n".repeat(MAX_LINES);
    over.extend_from_slice(b"250 x\n");
    assert_eq!(reply::parse(&over), Some(Err(Push::TooManyLines)));
    check_reply_and_lines(&ok, &[4096; 4]);
    check_reply_and_lines(&over, &[7; 4]);
}

#[test]
fn text_limit_boundary() {
    // The separator and the next line are appended only while the text
    // is under TEXT_LIMIT; the total may pass it by one line.
    for first in TEXT_LIMIT - 2..=TEXT_LIMIT + 1 {
        let mut data = b"250-".to_vec();
        data.extend(std::iter::repeat_n(b'a', first));
        data.extend_from_slice(b"\r\n250-bb\r\n250 ccc\r\n");
        for size in [1, 9, 4096] {
            check_reply_and_lines(&data, &vec![size; data.len() + 1]);
        }
        let (r, _) = reply::parse(&data).unwrap().unwrap();
        // Under the limit by 2: "\nbb" fits in; by 1: only the "\n".
        let want = match first {
            n if n == TEXT_LIMIT - 2 => TEXT_LIMIT + 1,
            n if n == TEXT_LIMIT - 1 => TEXT_LIMIT,
            n => n,
        };
        assert_eq!(r.text.len(), want, "first line text {first}");
    }
}

#[test]
fn discard_limit_boundary() {
    // X2: TooLong only after more than DISCARD_LIMIT discarded bytes.
    let chunks = vec![4096; 400];
    let mut data = vec![b'x'; LINE_LIMIT + DISCARD_LIMIT];
    data.extend_from_slice(b"\n250 next\n");
    let (lines, end) = reader_lines(&data, &chunks);
    assert_eq!(lines, [vec![b'x'; LINE_LIMIT], b"250 next".to_vec()]);
    assert_eq!(end, Outcome::Incomplete);
    check_reply_and_lines(&data, &chunks);
    data.insert(0, b'x');
    let (lines, end) = reader_lines(&data, &chunks);
    assert_eq!((lines.len(), end), (0, Outcome::TooLong));
    check_reply_and_lines(&data, &chunks);
}

#[test]
fn dotstuff_random_inputs_round_trip() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    for i in 0..50_000 {
        let len = rng.gen_range(0..120);
        let data = if rng.gen_bool(0.3) {
            random_bytes(&mut rng, len)
        } else {
            from_alphabet(&mut rng, len, b"..\n\n\r a\0")
        };
        let r = std::panic::catch_unwind(|| check_dotstuff(&data));
        assert!(r.is_ok(), "input #{i}: {data:?}");
    }
}

#[test]
fn dotstuff_edge_cases() {
    for data in [
        &b""[..],
        b"\n",
        b"\n\n",
        b".",
        b".\n",
        b"..\n",
        b"a\n.\nb",
        b"\r\n.\r\n",
        b"a\r",
        b"x\n.",
    ] {
        check_dotstuff(data);
    }
}
