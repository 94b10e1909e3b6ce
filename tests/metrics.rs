//! --metrics-listen, --metrics-linger and --metrics-push: the endpoint
//! over a real socket, its counters against the JSON report of the same
//! run, and a 20 s --rate run scraped by Debian's real Prometheus (and
//! pushed to its real Pushgateway), with every PromQL expression of the
//! Grafana dashboard run against that Prometheus.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::support::fake_server::FakeServer;
use crate::support::prometheus::{
    free_port, http_get, http_get_header, sample, scrape_config, Prometheus,
    Pushgateway,
};
use crate::support::{ours, spawn, Outcome, TempDir};

/// Waits (bounded) for the report file to appear: the reports are
/// written before the linger starts.
fn wait_for_file(path: &Path, limit: Duration) -> serde_json::Value {
    let until = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str(&text) {
                return v;
            }
        }
        assert!(Instant::now() < until, "no report at {}", path.display());
        thread::sleep(Duration::from_millis(20));
    }
}

fn run_in_background(
    args: Vec<String>,
    limit: Duration,
) -> thread::JoinHandle<Outcome> {
    spawn("smtp-source", move || {
        ours().cmd().args(args).timeout(limit).run()
    })
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Every counter of the exposition against the report's count.
fn assert_counters_match(text: &str, report: &serde_json::Value) {
    let n = |v: &serde_json::Value| v.as_u64().map(|x| x as f64);
    for result in ["accepted", "rejected", "failed", "unknown"] {
        assert_eq!(
            sample(text, "smtp_source_messages_total", &[("result", result)]),
            n(&report["messages"][result]),
            "messages {result}\n{text}"
        );
        assert_eq!(
            sample(
                text,
                "smtp_source_recipients_total",
                &[("result", result)]
            ),
            n(&report["recipients"][result]),
            "recipients {result}"
        );
    }
    for (class, count) in report["errors"].as_object().expect("errors") {
        assert_eq!(
            sample(text, "smtp_source_errors_total", &[("class", class)]),
            n(count),
            "errors {class}"
        );
    }
    assert_eq!(
        sample(text, "smtp_source_connections_total", &[]),
        n(&report["connections"])
    );
    for (resumed, key) in [("false", "full"), ("true", "resumed")] {
        assert_eq!(
            sample(
                text,
                "smtp_source_tls_handshakes_total",
                &[("resumed", resumed)]
            ),
            n(&report["tls"][key])
        );
    }
    let latency = report["latency_ms"].as_object().expect("latency_ms");
    for (phase, stats) in latency {
        assert_eq!(
            sample(
                text,
                "smtp_source_phase_duration_seconds_count",
                &[("phase", phase)]
            ),
            n(&stats["count"]),
            "latency count {phase}"
        );
    }
}

/// The whole run's counters at exit equal the report's, over a real
/// socket; the shard label is on every series; other paths get 404,
/// garbage 400; OpenMetrics when asked for.
#[test]
fn metrics_at_exit_equal_the_report() {
    let srv = FakeServer::responder();
    let dir = TempDir::new("metrics");
    let report = dir.path().join("report.json");
    let port = free_port();
    let args = vec![
        "-m".into(),
        "60".into(),
        "-s".into(),
        "4".into(),
        "-r".into(),
        "2".into(),
        "--rate=60".into(),
        "--shard=1/1".into(),
        format!("--report-file={}", report.display()),
        format!("--metrics-listen=127.0.0.1:{port}"),
        "--metrics-linger=3".into(),
        srv.endpoint(),
    ];
    let run = run_in_background(args, Duration::from_secs(20));
    let json = wait_for_file(&report, Duration::from_secs(15));
    let (status, text) =
        http_get(local(port), "/metrics", None).expect("scrape");
    assert_eq!(status, 200, "{text}");
    assert_counters_match(&text, &json);
    assert_eq!(json["messages"]["accepted"].as_u64(), Some(60));
    assert_eq!(json["recipients"]["accepted"].as_u64(), Some(120));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.contains("shard=\"1/1\""), "no shard label: {line}");
    }
    assert_eq!(sample(&text, "smtp_source_target_rate", &[]), Some(60.0));
    assert_eq!(sample(&text, "smtp_source_sessions_active", &[]), Some(0.0));
    assert!(text.contains("smtp_source_info{version=\""), "{text}");
    let (status, _) = http_get(local(port), "/", None).expect("GET /");
    assert_eq!(status, 404);
    let (status, _) = http_get(local(port), "/metrics/x", None).expect("GET");
    assert_eq!(status, 404);
    let om = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
    let ct =
        http_get_header(local(port), "/metrics", Some(om), "content-type");
    assert_eq!(
        ct.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let (_, om_text) =
        http_get(local(port), "/metrics", Some(om)).expect("om");
    assert!(om_text.ends_with("# EOF\n"), "{om_text}");
    assert!(om_text.contains("# TYPE smtp_source_messages counter\n"));
    garbage_gets_400(local(port));
    let out = run.join().expect("run");
    out.assert_status(0).assert_stderr("");
    // It lingered: it ended about 3 s after the report, not at once.
    assert!(out.elapsed >= Duration::from_secs(3), "{:?}", out.elapsed);
    drop(srv.finish());
}

fn garbage_gets_400(addr: SocketAddr) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"\x16\x03\x01 hello\r\n\r\n").expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
}

/// A request head that never ends costs the endpoint its time limit,
/// not the run: the scrape after it is answered.
#[test]
fn metrics_slow_client_is_cut_off() {
    use std::io::{Read, Write};
    let srv = FakeServer::responder();
    let port = free_port();
    let args = vec![
        // 5 s: the run outlasts the slow client's 2 s.
        "-m".into(),
        "50".into(),
        "--rate=10".into(),
        format!("--metrics-listen=127.0.0.1:{port}"),
        srv.endpoint(),
    ];
    let run = run_in_background(args, Duration::from_secs(20));
    let until = Instant::now() + Duration::from_secs(5);
    let mut slow = loop {
        if let Ok(s) = std::net::TcpStream::connect(local(port)) {
            break s;
        }
        assert!(Instant::now() < until, "endpoint never listened");
        thread::sleep(Duration::from_millis(20));
    };
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").expect("write");
    let t = Instant::now();
    let (status, _) = http_get(local(port), "/metrics", None).expect("scrape");
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let mut rest = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = slow.read_to_end(&mut rest);
    assert!(
        rest.starts_with(b"HTTP/1.1 400 "),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    run.join().expect("run").assert_status(0).assert_stderr("");
    drop(srv.finish());
}

/// A port in use ends the run before any connection.
#[test]
fn metrics_listen_port_in_use_fails_before_traffic() {
    let srv = FakeServer::responder();
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let out = ours()
        .cmd()
        .args(["-m", "1", &format!("--metrics-listen=127.0.0.1:{port}")])
        .arg(srv.endpoint())
        .run();
    out.assert_status(1).assert_stderr(&format!(
        "smtp-source: fatal: --metrics-listen 127.0.0.1:{port}: Address already in use\n"
    ));
    assert_eq!(srv.finish().len(), 0);
}

#[test]
fn metrics_options_checked() {
    for (args, err) in [
        (
            &["--metrics-linger=2"][..],
            "--metrics-linger needs --metrics-listen",
        ),
        (&["--metrics-listen=0"][..], "bad --metrics-listen value: 0"),
        (
            &["--metrics-push=https://x"][..],
            "bad --metrics-push value: https://x",
        ),
    ] {
        let out = ours().cmd().args(args).arg("127.0.0.1:9").run();
        out.assert_status(1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(err), "{args:?}: {stderr}");
    }
}

fn dashboard_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/grafana/smtp-source.json")
}

/// Every `"expr"` of the dashboard, with Grafana's variables given
/// values Prometheus can run.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(dashboard_path()).expect("dashboard");
    let v: serde_json::Value =
        serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    collect_exprs(&v, &mut out);
    out.into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "30s")
                .replace("${shard:regex}", ".*")
                .replace("$shard", ".*")
                .replace("$job", ".*")
        })
        .collect()
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => collect_exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => {
            a.iter().for_each(|x| collect_exprs(x, out))
        }
        _ => {}
    }
}

/// The run's end in Unix seconds, from the report.
fn bucket_bounds_holding(p99_ms: f64) -> (f64, f64) {
    let bounds = [
        0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
        0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 60.0,
    ];
    let s = p99_ms / 1000.0;
    let mut lower = 0.0;
    for &le in &bounds {
        // The report rounds to whole microseconds: compare in them.
        if (s * 1e6).round() <= (le * 1e6_f64).round() {
            return (lower, le);
        }
        lower = le;
    }
    (60.0, f64::INFINITY)
}

/// Debian's Prometheus scrapes a 20 s --rate run every second; what it
/// holds at the end equals the report; the pushed values reach Debian's
/// Pushgateway; every PromQL expression of the dashboard runs.
#[test]
fn prometheus_scrapes_a_rate_run() {
    let test = "prometheus_scrapes_a_rate_run";
    let port = free_port();
    let Some(prom) = Prometheus::start(
        test,
        &scrape_config(&[format!("127.0.0.1:{port}")], 1),
    ) else {
        return;
    };
    let Some(gw) = Pushgateway::start(test) else {
        return;
    };
    let srv = FakeServer::responder();
    let dir = TempDir::new("prometheus-run");
    let report = dir.path().join("report.json");
    let args = vec![
        "-s".into(),
        "4".into(),
        "--rate=25".into(),
        "--duration=20".into(),
        "--shard=1/1".into(),
        format!("--report-file={}", report.display()),
        format!("--metrics-listen=127.0.0.1:{port}"),
        "--metrics-linger=8".into(),
        format!("--metrics-push=http://{}", gw.addr),
        srv.endpoint(),
    ];
    let run = run_in_background(args, Duration::from_secs(45));
    let json = wait_for_file(&report, Duration::from_secs(35));
    let reported = SystemTime::now();
    prom.wait_for_scrape_after(reported, Duration::from_secs(6));

    let accepted = json["messages"]["accepted"].as_u64().expect("accepted");
    assert!(accepted >= 400, "{json}");
    let seen = prom.value("smtp_source_messages_total{result=\"accepted\"}");
    assert_eq!(seen, Some(accepted as f64), "Prometheus against the report");
    for result in ["rejected", "failed", "unknown"] {
        let v = prom.value(&format!(
            "smtp_source_messages_total{{result=\"{result}\"}}"
        ));
        assert_eq!(
            v,
            json["messages"][result].as_u64().map(|x| x as f64),
            "{result}"
        );
    }
    let p99_ms = json["latency_ms"]["transaction"]["p99"]
        .as_f64()
        .expect("p99");
    let q = prom
        .value(
            "histogram_quantile(0.99, \
smtp_source_phase_duration_seconds_bucket{phase=\"transaction\"})",
        )
        .expect("a quantile");
    let (lo, hi) = bucket_bounds_holding(p99_ms);
    assert!(
        lo <= q && q <= hi,
        "p99 {q} s not in ({lo}, {hi}] holding the report's {p99_ms} ms"
    );
    eprintln!(
        "prometheus: accepted {seen:?} (report {accepted}); transaction p99 {q:.6} s in \
({lo}, {hi}], report p99 {p99_ms} ms"
    );

    let pushed = gw.metrics();
    let v = sample(
        &pushed,
        "smtp_source_messages_total",
        &[("result", "accepted"), ("shard", "1/1")],
    );
    assert_eq!(v, Some(accepted as f64), "pushgateway:\n{pushed}");
    let c = sample(
        &pushed,
        "smtp_source_connections_total",
        &[("shard", "1/1")],
    );
    assert_eq!(c, json["connections"].as_u64().map(|x| x as f64));

    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 6, "{exprs:?}");
    for expr in &exprs {
        let answer = prom
            .query(expr)
            .unwrap_or_else(|e| panic!("dashboard: {e}"));
        let result = &answer["data"]["result"];
        assert!(
            result.as_array().is_some_and(|r| !r.is_empty()),
            "dashboard expression gave nothing: {expr}: {answer}"
        );
    }
    let out = run.join().expect("run");
    out.assert_status(0).assert_stderr("");
    drop(srv.finish());
}

/// A SIGINT ends a metrics run like a --report run: the reports, the
/// push and the endpoint all hold the same final counts; a second
/// SIGINT cuts the linger short (exit 130).
#[test]
fn sigint_freezes_pushes_and_a_second_cuts_the_linger() {
    use std::process::{Command, Stdio};
    let Some(gw) = Pushgateway::start(
        "sigint_freezes_pushes_and_a_second_cuts_the_linger",
    ) else {
        return;
    };
    let srv = FakeServer::responder();
    let dir = TempDir::new("metrics-sigint");
    let report = dir.path().join("report.json");
    let port = free_port();
    let mut child = Command::new(&ours().path)
        .args(["-s", "2", "--rate=50", "--duration=30"])
        .arg(format!("--report-file={}", report.display()))
        .arg(format!("--metrics-listen=127.0.0.1:{port}"))
        .arg("--metrics-linger=30")
        .arg(format!(
            "--metrics-push=http://{}/metrics/job/sigint",
            gw.addr
        ))
        .arg(srv.endpoint())
        .env("SMTP_SOURCE_TIMEOUT", "5")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ours");
    let pid = child.id().to_string();
    let int = || {
        let _ = Command::new("kill").args(["-INT", &pid]).status();
    };
    thread::sleep(Duration::from_millis(1500));
    int();
    let json = wait_for_file(&report, Duration::from_secs(10));
    assert_eq!(json["interrupted"].as_str(), Some("SIGINT"), "{json}");
    let (_, text) = http_get(local(port), "/metrics", None).expect("scrape");
    assert_counters_match(&text, &json);
    let pushed = gw.metrics();
    let accepted = json["messages"]["accepted"].as_u64().expect("accepted");
    assert!(accepted > 20, "{json}");
    assert_eq!(
        sample(
            &pushed,
            "smtp_source_messages_total",
            &[("job", "sigint"), ("result", "accepted")]
        ),
        Some(accepted as f64),
        "{pushed}"
    );
    let t = Instant::now();
    int();
    let until = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second SIGINT did not end the linger");
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(130));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(srv.finish());
}

/// A push that cannot be made is an error at the end, like a report
/// that cannot be written: the run itself is done, the status is 1.
#[test]
fn a_failed_push_is_an_error_at_the_end() {
    let srv = FakeServer::responder();
    let refusing = crate::support::RefusingPort::new();
    let url = format!("http://127.0.0.1:{}", refusing.port);
    let out = ours()
        .cmd()
        .args(["-m", "3", &format!("--metrics-push={url}")])
        .arg(srv.endpoint())
        .run();
    out.assert_status(1).assert_stderr(&format!(
        "smtp-source: fatal: cannot push the metrics to {url}: Connection refused\n"
    ));
    assert_eq!(srv.finish().len(), 3);
}
