//! Thresholds, stages and the capacity search, through real sockets:
//! exit status 99 when a threshold fails (and only then), an early
//! abort, usage errors before any connect, achieved against target rate
//! per interval under --stages, and --find-capacity against the sink's
//! capacity model (`--workers N --service MS`), whose knee is known.

use std::time::Duration;

use serde_json::Value;

use crate::secure::Sink;
use crate::support::fake_server::FakeServer;
use crate::support::{ours, spawn, Outcome, RefusingPort};

fn json(out: &Outcome) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}\n{}", out.render()))
}

/// The report's threshold list as (expr, ok).
fn verdicts(j: &Value) -> Vec<(String, bool)> {
    j["thresholds"]
        .as_array()
        .expect("thresholds")
        .iter()
        .map(|t| {
            let expr = t["expr"].as_str().unwrap().to_string();
            (expr, t["ok"].as_bool().unwrap())
        })
        .collect()
}

#[test]
fn thresholds_that_hold_exit_0() {
    let srv = FakeServer::responder();
    let out = ours()
        .cmd()
        .args(["-s", "2", "-m", "20", "--report=json"])
        .args(["--threshold=transaction.p99<10s", "--threshold=rate>0"])
        .args(["--threshold=errors==0", "--threshold=accepted>=20"])
        .arg(srv.endpoint())
        .stage_timeout(10)
        .timeout(Duration::from_secs(30))
        .run();
    srv.finish();
    out.assert_status(0).assert_stderr("");
    let j = json(&out);
    assert_eq!(
        verdicts(&j),
        [
            ("transaction.p99<10s".into(), true),
            ("rate>0".into(), true),
            ("errors==0".into(), true),
            ("accepted>=20".into(), true),
        ]
    );
    assert_eq!(j["thresholds"][3]["value"], 20.0);
    assert_eq!(j["thresholds"][0]["unit"], "ms");
}

/// One failed threshold: exit 99, each failure named on stderr, the
/// report written in full.
#[test]
fn a_failed_threshold_exits_99_and_says_which() {
    let srv = FakeServer::responder();
    let out = ours()
        .cmd()
        .args(["-s", "2", "-m", "10", "--report"])
        .args([
            "--threshold=transaction.p50<1us",
            "--threshold=accepted>=10",
        ])
        .args(["--threshold=accepted>=11"])
        .arg(srv.endpoint())
        .stage_timeout(10)
        .timeout(Duration::from_secs(30))
        .run();
    srv.finish();
    out.assert_status(99);
    let err = out.stderr_text();
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.contains(
            "warning: threshold failed: transaction.p50<1us (measured "
        ),
        "{err}"
    );
    assert!(
        err.contains("warning: threshold failed: accepted>=11 (measured 10)"),
        "{err}"
    );
    let text = out.stdout_text();
    assert!(
        text.contains("\nthresholds:\n  FAIL  transaction.p50<1us"),
        "{text}"
    );
    assert!(text.contains("\n  ok    accepted>=10 "), "{text}");
}

/// A threshold without --report still gates the exit status.
#[test]
fn a_threshold_alone_gates_the_exit_status() {
    let srv = FakeServer::responder();
    let out = ours()
        .cmd()
        .args(["-m", "3", "--threshold=rejected>0"])
        .arg(srv.endpoint())
        .stage_timeout(10)
        .timeout(Duration::from_secs(30))
        .run();
    srv.finish();
    out.assert_status(99);
    assert!(out.stdout.is_empty(), "{}", out.render());
}

/// A bad expression is a usage error before any connect (a port that
/// refuses would show as a connect error), naming the bad part.
#[test]
fn a_bad_threshold_fails_before_any_connect() {
    let port = RefusingPort::new();
    for (expr, why) in [
        ("transaction.p99<fast", "bad value 'fast'"),
        ("latency.p99<1s", "unknown phase 'latency'"),
        ("transaction.p99", "no comparison"),
        ("errors.dns==0", "unknown error class 'dns'"),
    ] {
        let out = ours()
            .cmd()
            .arg(format!("--threshold={expr}"))
            .arg(port.endpoint())
            .timeout(Duration::from_secs(10))
            .run();
        out.assert_status(1);
        let err = out.stderr_text();
        assert!(
            err.contains(&format!("fatal: bad --threshold value: {expr} (")),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
    }
    let out = ours()
        .cmd()
        .args(["--find-capacity", &port.endpoint()])
        .timeout(Duration::from_secs(10))
        .run();
    out.assert_status(1);
    assert!(out
        .stderr_text()
        .contains("fatal: --find-capacity requires --threshold"));
}

/// `,abort=2s`: a server that got slow ends the run well before its
/// --duration, exit 99, with the window's value in the report.
#[test]
fn an_abort_threshold_ends_the_run_early() {
    let Some(sink) = Sink::start_for(
        "an_abort_threshold_ends_the_run_early",
        &["--workers", "1", "--service", "200"],
        30,
    ) else {
        return;
    };
    let out = ours()
        .cmd()
        .args(["-s", "20", "--rate=20", "--duration=20", "--report=json"])
        .args(["--threshold=transaction.p90<100ms,abort=2s"])
        .arg(&sink.endpoint)
        .stage_timeout(10)
        .timeout(Duration::from_secs(40))
        .run();
    out.assert_status(99);
    assert!(
        out.elapsed < Duration::from_secs(12),
        "not stopped early: {:?}",
        out.elapsed
    );
    let err = out.stderr_text();
    assert!(
        err.contains(
            "warning: threshold breached, stopping: transaction.p90<100ms,abort=2s"
        ),
        "{err}"
    );
    let j = json(&out);
    assert_eq!(j["completed"], true, "stopped like --duration: {j}");
    assert!(!verdicts(&j)[0].1);
    assert!(j["thresholds"][0]["value"].as_f64().unwrap() >= 100.0);
}

/// The same slow server without an abort window: the run lasts.
#[test]
fn without_abort_a_breach_waits_for_the_end() {
    let Some(sink) = Sink::start_for(
        "without_abort_a_breach_waits_for_the_end",
        &["--workers", "1", "--service", "200"],
        30,
    ) else {
        return;
    };
    let out = ours()
        .cmd()
        // 20 messages that one worker takes 4 s to serve: none waits
        // past the 10 s deadline.
        .args(["-s", "20", "--rate=10", "--duration=2"])
        .args(["--threshold=transaction.p90<100ms"])
        .arg(&sink.endpoint)
        .stage_timeout(10)
        .timeout(Duration::from_secs(40))
        .run();
    out.assert_status(99);
    assert!(out.elapsed >= Duration::from_secs(2), "{:?}", out.elapsed);
    assert!(!out.stderr_text().contains("breached"));
}

/// Every full interval's achieved rate is within ±10% of its target,
/// over a ramp from 100 to 2000 messages a second.
#[test]
fn stages_track_their_target_from_100_to_2000() {
    let Some(sink) =
        Sink::start_for("stages_track_their_target_from_100_to_2000", &[], 30)
    else {
        return;
    };
    let out = ours()
        .cmd()
        .args(["-d", "-s", "100", "--report=json"])
        .args(["--rate=100", "--stages=1s:100,4s:2000,2s:2000"])
        .arg(&sink.endpoint)
        .stage_timeout(10)
        .timeout(Duration::from_secs(40))
        .run();
    out.assert_status(0).assert_stderr("");
    let j = json(&out);
    let stages = &j["schedule"]["stages"];
    assert_eq!(stages[1]["rate"], 2000.0, "{}", j["schedule"]);
    let intervals = j["intervals"].as_array().unwrap();
    let mut full = 0;
    let mut seen = Vec::new();
    for i in intervals {
        let secs = i["seconds"].as_f64().unwrap();
        let target = i["target_rate"].as_f64().unwrap();
        let rate = i["rate"].as_f64().unwrap();
        seen.push(format!("{secs:.3}s {rate:.0}/{target:.0}"));
        if secs < 0.9 || target == 0.0 {
            continue;
        }
        full += 1;
        let ratio = rate / target;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "achieved {rate} for target {target}: {seen:?}"
        );
    }
    assert!(full >= 6, "{seen:?}");
    let top = intervals.iter().filter_map(|i| i["target_rate"].as_f64());
    assert!(top.fold(0.0, f64::max) >= 1900.0, "{seen:?}");
    // 100 + (100 + 2000) / 2 × 4 + 2000 × 2 arrivals, from number 0.
    let accepted = j["messages"]["accepted"].as_u64().unwrap();
    assert!((8200..=8301).contains(&accepted), "{accepted}");
}

/// A stage that needs more sessions than -s falls behind, and says so:
/// the achieved rate under the target, the lag in the schedule, and the
/// latency counted from each message's due time.
#[test]
fn a_stage_beyond_the_sessions_shows_as_falling_behind() {
    let Some(sink) = Sink::start_for(
        "a_stage_beyond_the_sessions_shows_as_falling_behind",
        &["--workers", "2", "--service", "50"],
        30,
    ) else {
        return;
    };
    // Two sessions of 50 ms each take 40 a second at most.
    let out = ours()
        .cmd()
        .args(["-d", "-s", "2", "--report=json"])
        .args(["--stages=3s:200"])
        .arg(&sink.endpoint)
        .stage_timeout(10)
        .timeout(Duration::from_secs(40))
        .run();
    out.assert_status(0);
    let j = json(&out);
    let last = j["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|i| i["seconds"].as_f64().unwrap() > 0.9);
    let last = last.unwrap();
    let (rate, target) = (
        last["rate"].as_f64().unwrap(),
        last["target_rate"].as_f64().unwrap(),
    );
    assert!(rate < target * 0.5, "{last}");
    assert!(j["schedule"]["max_lag_ms"].as_f64().unwrap() > 500.0);
    assert!(j["latency_ms"]["transaction"]["p99"].as_f64().unwrap() > 500.0);
}

/// A capacity search against the sink's model, whose knee is
/// workers × 1000 / service.
fn search(test: &str, workers: u32, service_ms: u32) -> Option<(f64, Value)> {
    let (w, s) = (workers.to_string(), service_ms.to_string());
    let sink = Sink::start_for(test, &["--workers", &w, "--service", &s], 60)?;
    let out = ours()
        .cmd()
        .args(["-s", "50", "--report=json", "--find-capacity", "--step=3s"])
        .args(["--rate=10", "--threshold=transaction.p50<100ms"])
        .arg(&sink.endpoint)
        .stage_timeout(10)
        .timeout(Duration::from_secs(55))
        .run();
    out.assert_status(0);
    let j = json(&out);
    let rate = j["capacity"]["rate"].as_f64().expect("a capacity");
    Some((rate, j))
}

/// Three searches at once, each within [0.8, 1.0] of the knee, all
/// within ±10% of their mean.
#[test]
fn capacity_search_finds_the_sink_models_knee() {
    let knee = 2.0 * 1000.0 / 50.0;
    let runs: Vec<_> = (0..3)
        .map(|k| {
            spawn("capacity-search", move || {
                search("capacity_search_finds_the_sink_models_knee", 2, 50)
                    .map(|(r, j)| (r, j, k))
            })
        })
        .collect();
    let mut found = Vec::new();
    for run in runs {
        let Some((rate, j, k)) = run.join().unwrap() else {
            return;
        };
        let steps = j["capacity"]["steps"].as_array().unwrap();
        assert!(
            (0.8 * knee..=knee).contains(&rate),
            "run {k}: {rate} for a knee of {knee}: {steps:?}"
        );
        assert_eq!(steps[0]["target"], 10.0);
        assert!(steps.iter().any(|s| s["ok"] == false), "{steps:?}");
        found.push(rate);
    }
    let mean = found.iter().sum::<f64>() / found.len() as f64;
    for r in &found {
        assert!((r / mean - 1.0).abs() <= 0.1, "{found:?}");
    }
}

/// A search whose first step already fails finds nothing: exit 99, and
/// the table says so on stdout (no --report).
#[test]
fn a_capacity_search_that_fails_at_once_exits_99() {
    let Some(sink) = Sink::start_for(
        "a_capacity_search_that_fails_at_once_exits_99",
        &["--workers", "1", "--service", "100"],
        30,
    ) else {
        return;
    };
    let out = ours()
        .cmd()
        .args(["-s", "20", "--find-capacity", "--step=1s", "--rate=50"])
        .args(["--threshold=transaction.p50<100ms"])
        .arg(&sink.endpoint)
        .stage_timeout(10)
        .timeout(Duration::from_secs(30))
        .run();
    out.assert_status(99);
    let text = out.stdout_text();
    assert!(text.starts_with("capacity search: steps of 1 s"), "{text}");
    assert!(text.contains("     1       50.0 "), "{text}");
    assert!(
        text.ends_with("capacity: none (the first step failed)\n"),
        "{text}"
    );
}

/// --dry-run shows the stages, thresholds and search it would run.
#[test]
fn the_plan_shows_stages_thresholds_and_the_search() {
    let out = ours()
        .cmd()
        .args(["--dry-run", "--rate=10", "--stages=5s:100,1m:100"])
        .args(["--threshold=transaction.p99<1s", "127.0.0.1:25"])
        .timeout(Duration::from_secs(10))
        .run();
    out.assert_status(0).assert_stderr("");
    let text = out.stdout_text();
    assert!(text.contains("\nduration:     65 s\n"), "{text}");
    assert!(
        text.ends_with(
            "stages:       5 s to 100/s, 60 s to 100/s\n\
             thresholds:   transaction.p99<1s\n"
        ),
        "{text}"
    );
    let out = ours()
        .cmd()
        .args(["--dry-run", "--find-capacity", "--threshold=rate>1"])
        .args(["--step=4s", "--precision=2%", "127.0.0.1:25"])
        .timeout(Duration::from_secs(10))
        .run();
    out.assert_status(0);
    assert!(out.stdout_text().ends_with(
        "capacity:     search from 10/s, steps of 4 s, precision 2%\n"
    ));
}

/// A fatal error stays exit status 1, whatever the thresholds say.
#[test]
fn a_fatal_error_stays_1_with_a_failed_threshold() {
    let port = RefusingPort::new();
    let out = ours()
        .cmd()
        .args(["--threshold=accepted>=1", "--report=json", &port.endpoint()])
        .timeout(Duration::from_secs(10))
        .run();
    out.assert_status(1);
    let err = out.stderr_text();
    assert!(err.contains("fatal: connect: Connection refused"), "{err}");
    let j = json(&out);
    assert_eq!(verdicts(&j), [("accepted>=1".to_string(), false)]);
}
