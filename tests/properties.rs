//! Deterministic property tests for the pure parsers: the
//! stable-toolchain twin of the `fuzz/` targets. A fixed-seed `StdRng`
//! generates raw bytes and inputs over the SMTP reply alphabet, cut into
//! random read sizes; each result is compared with a model
//! (`support/model.rs`) written from the reply rules of
//! `docs/reference-behaviour.md` ("Replies"), not from the code under test. Also:
//! the same input cut at every read size gives the same replies, every
//! proper prefix of a reply is incomplete, and the -F dot-stuffing round
//! trip.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use smtp_source::lineio::{DISCARD_LIMIT, LINE_LIMIT};
use smtp_source::reply::{self, Push, MAX_LINES, TEXT_LIMIT};

use crate::support::model::*;

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

/// The reply-syntax faults of `tests/faults.rs` (`f10`-`f21`), in one
/// stream.
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
    // A 15 KB line (as in `f17`), then a normal reply; cut around the
    // buffer size and the cap.
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
    // TooLong only after more than DISCARD_LIMIT discarded bytes (man
    // page NOTES X2).
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

// ---- --threshold expressions (the twin of fuzz target `threshold`) ----

#[test]
fn threshold_parser_on_random_inputs() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0015);
    for i in 0..30_000 {
        let len = rng.gen_range(0..40);
        let data = match rng.gen_range(0..3) {
            0 => random_bytes(&mut rng, len),
            _ => from_alphabet(&mut rng, len, THRESHOLD_ALPHABET),
        };
        let r = std::panic::catch_unwind(|| check_threshold(&data));
        assert!(
            r.is_ok(),
            "input #{i}: {:?}",
            String::from_utf8_lossy(&data)
        );
    }
}

/// Expressions made from the grammar parse, to the limit the model
/// computes; one byte changed in them never panics.
#[test]
fn threshold_grammar_parses_to_the_model() {
    use smtp_source::report::stats::PHASES;
    use smtp_source::threshold::{self, Metric, Op};
    let mut rng = StdRng::seed_from_u64(0x5eed_0016);
    let ops = [
        ("<", Op::Lt),
        ("<=", Op::Le),
        (">", Op::Gt),
        (">=", Op::Ge),
        ("==", Op::Eq),
    ];
    for _ in 0..600 {
        let (op_text, op) = ops[rng.gen_range(0..ops.len())];
        let n = rng.gen_range(0..5000);
        let (text, limit) = match rng.gen_range(0..4) {
            0 => {
                let phase = PHASES[rng.gen_range(0..PHASES.len())].key();
                let stat = ["p50", "p99", "p99.9", "mean", "max", "min"]
                    [rng.gen_range(0..6)];
                let (unit, ms) =
                    [("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("", 1.0)]
                        [rng.gen_range(0..4)];
                (
                    format!("{phase}.{stat}{op_text}{n}{unit}"),
                    f64::from(n) * ms,
                )
            }
            1 => (format!("rate{op_text}{n}"), f64::from(n)),
            2 => {
                let m = [
                    "errors",
                    "rejected",
                    "accepted",
                    "failed",
                    "errors.timeout",
                ][rng.gen_range(0..5)];
                (format!("{m}{op_text}{n}"), f64::from(n))
            }
            _ => {
                let p = f64::from(n % 1001) / 10.0;
                (format!("errors{op_text}{p}%"), p)
            }
        };
        let t = threshold::parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(t.op, op, "{text}");
        assert!(
            (t.limit - limit).abs() <= 1e-9 * limit.max(1.0),
            "{text}: {t:?}"
        );
        if text.starts_with("rate") {
            assert_eq!(t.metric, Metric::Rate);
        }
        check_threshold(text.as_bytes());
        let mut bent = text.into_bytes();
        let at = rng.gen_range(0..bent.len());
        bent[at] =
            THRESHOLD_ALPHABET[rng.gen_range(0..THRESHOLD_ALPHABET.len())];
        check_threshold(&bent);
    }
}
