//! One run over many processes: --shard, --start-at, --bind and
//! --dry-run against the fake server, and the JSON report additions
//! that merging needs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use crate::support::fake_server::{mask, FakeServer, Responder, Transcript};
use crate::support::{ours, Outcome, TempDir, ARGV0};

const LIMIT: Duration = Duration::from_secs(10);
const HOST: &str = "scale.example";

fn run(args: &[&str]) -> (Outcome, Transcript) {
    crate::support::run_ours_on(HOST, FakeServer::tcp(Responder::new()), args)
}

/// Every RCPT address, in order.
fn recipients(tr: &Transcript) -> Vec<String> {
    let mut out = Vec::new();
    for c in &tr.conns {
        for cmd in c.commands() {
            if let Some(a) = cmd.strip_prefix("RCPT TO:<") {
                out.push(a.trim_end_matches('>').to_string());
            }
        }
    }
    out
}

/// Every Message-Id counter, as a number.
fn id_counters(tr: &Transcript) -> Vec<u32> {
    let mut out = Vec::new();
    for c in &tr.conns {
        for line in c.lines() {
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(v) = line.strip_prefix("Message-Id: <") {
                let cnt = v.split(['.', '@']).nth(2).unwrap();
                out.push(u32::from_str_radix(cnt, 16).unwrap());
            }
        }
    }
    out
}

/// Three shards of `-N -r 2 -m 10` send, together, exactly the
/// recipients and Message-Id counters of the unsharded run, each shard
/// its own contiguous part.
#[test]
fn shards_together_equal_the_unsharded_run() {
    let args = ["-N", "-r", "2", "-m", "10", "-t", "u@x"];
    let (out, whole) = run(&args);
    out.assert_status(0).assert_stderr("");
    let want_rcpts = recipients(&whole);
    let want: Vec<String> = (1..=20).map(|n| format!("{n}u@x")).collect();
    assert_eq!(want_rcpts, want);
    let mut want_ids = id_counters(&whole);
    want_ids.sort_unstable();
    assert_eq!(want_ids, (0..10).collect::<Vec<u32>>());

    let mut rcpts = Vec::new();
    let mut ids = Vec::new();
    for (k, share) in [(1, 4), (2, 3), (3, 3)] {
        let shard = format!("--shard={k}/3");
        let mut a = vec![shard.as_str()];
        a.extend(args);
        let (out, tr) = run(&a);
        out.assert_status(0).assert_stderr("");
        assert_eq!(tr.len(), share, "shard {k}");
        rcpts.extend(recipients(&tr));
        ids.extend(id_counters(&tr));
    }
    assert_eq!(rcpts, want_rcpts, "in shard order, the whole sequence");
    ids.sort_unstable();
    assert_eq!(ids, want_ids);
}

/// 3.9 numbering continues across shards too (from 0).
#[test]
fn shards_continue_3_9_numbering() {
    let (out, tr) = run(&[
        "--shard=2/2",
        "--numbering=3.9",
        "-r",
        "2",
        "-m",
        "4",
        "-t",
        "u@x",
    ]);
    out.assert_status(0).assert_stderr("");
    assert_eq!(recipients(&tr), ["u4@x", "u5@x", "u6@x", "u7@x"]);
}

/// `--shard=1/1` sends the bytes and prints the output of no --shard.
#[test]
fn shard_one_of_one_is_the_whole_run() {
    let args = ["-N", "-c", "-r", "2", "-m", "3", "-S", "s"];
    let (plain, a) = run(&args);
    let mut with = vec!["--shard=1/1"];
    with.extend(args);
    let (sharded, b) = run(&with);
    plain.assert_status(0);
    sharded.assert_status(0);
    assert_eq!(plain.stdout, sharded.stdout);
    assert_eq!(plain.stderr, sharded.stderr);
    let masked = |t: &Transcript| -> Vec<Vec<u8>> {
        t.conns.iter().map(|c| mask(&c.raw)).collect()
    };
    assert_eq!(masked(&a), masked(&b));
}

/// A shard with no message of its own (more shards than messages)
/// connects nowhere and succeeds.
#[test]
fn shard_without_messages_connects_nowhere() {
    let (out, tr) = run(&["--shard=3/3", "-m", "2"]);
    out.assert_status(0).assert_stderr("");
    assert_eq!(tr.len(), 0);
}

#[test]
fn bad_shard_values_are_fatal() {
    for v in ["0/3", "4/3", "3", "1/0", "x/y", "1/3/4"] {
        let out = ours()
            .cmd()
            .arg(format!("--shard={v}"))
            .arg("127.0.0.1:9")
            .timeout(LIMIT)
            .run();
        out.assert_status(1).assert_stderr(&format!(
            "{ARGV0}: fatal: bad --shard value: {v}\n"
        ));
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// --start-at holds the first connect until then; the report's elapsed
/// time counts from it (not from the process start).
#[test]
fn start_at_waits_and_elapsed_counts_from_it() {
    let at = unix_now() + 1.0;
    let start = format!("--start-at={at:.3}");
    let began = Instant::now();
    let srv = FakeServer::tcp(Responder::new());
    let out = ours()
        .cmd()
        .args([start.as_str(), "--report=json", "-m", "2"])
        .arg(srv.endpoint())
        .timeout(LIMIT)
        .run();
    let took = began.elapsed();
    let tr = srv.finish();
    out.assert_status(0).assert_stderr("");
    assert_eq!(tr.len(), 2);
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let j: serde_json::Value =
        serde_json::from_str(out.stdout_text().trim()).unwrap();
    let start_unix = j["start_unix"].as_f64().unwrap();
    assert!((start_unix - at).abs() < 0.002, "{start_unix} vs {at}");
    let elapsed = j["elapsed_seconds"].as_f64().unwrap();
    assert!(elapsed < 0.8, "elapsed {elapsed} counts from --start-at");
}

#[test]
fn start_at_in_the_past_starts_now_with_a_warning() {
    let began = Instant::now();
    let (out, tr) = run(&["--start-at=2020-01-01T00:00:00Z", "-m", "1"]);
    out.assert_status(0).assert_stderr(&format!(
        "{ARGV0}: warning: --start-at is in the past; starting now\n"
    ));
    assert_eq!(tr.len(), 1);
    out.assert_elapsed_below(Duration::from_secs(3));
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[test]
fn bad_start_at_is_fatal() {
    let out = ours()
        .cmd()
        .args(["--start-at=2026-12-05T10:00:00", "127.0.0.1:9"])
        .timeout(LIMIT)
        .run();
    out.assert_status(1).assert_stderr(&format!(
        "{ARGV0}: fatal: bad --start-at value: 2026-12-05T10:00:00\n"
    ));
}

/// --bind addresses are used in turn, one per connection.
#[test]
fn bind_addresses_are_used_in_turn() {
    let (out, tr) = run(&["--bind=127.0.0.2,127.0.0.3", "-m", "4"]);
    out.assert_status(0).assert_stderr("");
    let peers: Vec<String> = tr
        .conns
        .iter()
        .map(|c| c.peer.unwrap().ip().to_string())
        .collect();
    assert_eq!(peers, ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]);
}

#[test]
fn bind_errors_are_fatal_before_connecting() {
    let srv = FakeServer::tcp(Responder::new());
    let ep = srv.endpoint();
    for (bind, why) in [
        (
            "192.0.2.1",
            "--bind address 192.0.2.1: Cannot assign requested address",
        ),
        (
            "::1",
            "--bind address ::1 is IPv6, but the server address 127.0.0.1 \
is IPv4",
        ),
        ("127.0.0.1,nope", "bad --bind value: 127.0.0.1,nope"),
    ] {
        let out = ours()
            .cmd()
            .arg(format!("--bind={bind}"))
            .arg(&ep)
            .timeout(LIMIT)
            .run();
        out.assert_status(1)
            .assert_stderr(&format!("{ARGV0}: fatal: {why}\n"));
    }
    assert_eq!(srv.finish().len(), 0);
}

/// --dry-run prints the plan and connects nowhere.
#[test]
fn dry_run_prints_the_plan() {
    let srv = FakeServer::tcp(Responder::new());
    let ep = srv.endpoint();
    let out = ours()
        .cmd()
        .args([
            "--dry-run",
            "--shard=2/4",
            "--start-at=2026-12-05T11:00:00+01:00",
            "--rate=100",
            "--bind=127.0.0.2",
            "--report-file=r.json",
            "-M",
            HOST,
            "-N",
            "-s",
            "5",
            "-m",
            "1001",
        ])
        .arg(&ep)
        .timeout(LIMIT)
        .run();
    out.assert_status(0).assert_stderr("");
    let want = format!(
        "smtp-source plan
server:       {ep}
protocol:     SMTP, HELO {HOST}
sessions:     5
messages:     250 of 1001 in the whole run
shard:        2 of 4 (messages 252 to 501)
recipients:   1 per message, numbered from 252
start:        2026-12-05T10:00:00.000Z
rate:         25 messages/s (uniform)
duration:     none
bind:         127.0.0.2
reuse:        no
pipelining:   no
chunking:     no
tls:          none
report:       file r.json
"
    );
    assert_eq!(out.stdout_text(), want);
    assert_eq!(srv.finish().len(), 0);
}

/// The report of a shard names it; its histograms decode to the counts
/// of latency_ms; its intervals add up to the accepted messages.
#[test]
fn shard_report_carries_raw_histograms_and_intervals() {
    let dir = TempDir::new("scale-report");
    let file = dir.path().join("r.json");
    let file_arg = format!("--report-file={}", file.display());
    let (out, tr) = run(&["--shard=2/2", &file_arg, "-s", "2", "-m", "9"]);
    out.assert_status(0).assert_stderr("");
    assert_eq!(tr.len(), 4);
    let text = std::fs::read_to_string(&file).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(j["shard"], serde_json::json!({"index": 2, "count": 2}));
    assert_eq!(j["messages"]["accepted"], 4);
    for (phase, b64) in j["histograms"].as_object().unwrap() {
        let h = smtp_source::report::decode_histogram(b64.as_str().unwrap())
            .unwrap();
        assert_eq!(
            h.len(),
            j["latency_ms"][phase]["count"].as_u64().unwrap(),
            "{phase}"
        );
    }
    let intervals = j["intervals"].as_array().unwrap();
    let accepted: u64 = intervals
        .iter()
        .map(|i| i["accepted"].as_u64().unwrap())
        .sum();
    assert_eq!(accepted, 4);
    let seen: BTreeSet<&str> = intervals
        .iter()
        .map(|i| i["histogram"].as_str().unwrap())
        .collect();
    assert!(!seen.is_empty());
}

/// --shard composes with --pipelining and -d: the numbers continue, the
/// groups are pipelined as without --shard.
#[test]
fn shard_composes_with_pipelining_and_reuse() {
    let srv = FakeServer::tcp(Responder::new().on(
        crate::support::fake_server::Verb::Ehlo,
        "250-x\r\n250 PIPELINING",
    ));
    let out = ours()
        .cmd()
        .args(["-M", HOST, "--shard=2/2", "--pipelining", "-d", "-N"])
        .args(["-t", "u@x", "-m", "6"])
        .arg(srv.endpoint())
        .timeout(LIMIT)
        .run();
    let tr = srv.finish();
    out.assert_status(0).assert_stderr("");
    assert_eq!(tr.len(), 1);
    assert_eq!(recipients(&tr), ["4u@x", "5u@x", "6u@x"]);
    let first = &tr.conns[0].reads;
    assert!(
        first.iter().any(|r| r.starts_with(b"MAIL FROM:")
            && r.windows(4).any(|w| w == b"DATA")),
        "MAIL..DATA in one write"
    );
}

/// --shard with --rate and --duration: the shard keeps 1/N of the rate.
#[test]
fn shard_keeps_its_part_of_the_rate() {
    let (out, tr) = run(&[
        "--shard=1/4",
        "--rate=80",
        "--duration=1",
        "--report=json",
        "-s",
        "2",
    ]);
    out.assert_status(0).assert_stderr("");
    let j: serde_json::Value =
        serde_json::from_str(out.stdout_text().trim()).unwrap();
    assert_eq!(j["schedule"]["rate"], 20.0);
    let n = tr.len();
    assert!((15..=21).contains(&n), "{n} messages at 20/s for 1 s");
}
