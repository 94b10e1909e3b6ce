//! smtp-report: merge, text and html on reports of real runs against
//! the fake server; the html page rendered by headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::support::fake_server::{FakeServer, Responder, Step, Verb};
use crate::support::{ours, program, skip, Cmd, Outcome, TempDir};
use smtp_source::report::html::COLORS;

const LIMIT: Duration = Duration::from_secs(10);

fn tool() -> Cmd {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_smtp-report"));
    program(path, "smtp-report").cmd().timeout(LIMIT)
}

/// A server whose end-of-data reply takes `ms` (so latencies differ).
fn slow_server(ms: u64) -> FakeServer {
    FakeServer::tcp(Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(ms), Step::send("250 2.0.0 Ok: queued")],
    ))
}

/// One run with `args`, its JSON report written to `file`; returns the
/// run's outcome and the server's connection count.
fn run_to(file: &Path, srv: FakeServer, args: &[&str]) -> (Outcome, usize) {
    let out = ours()
        .cmd()
        .arg(format!("--report-file={}", file.display()))
        .args(args)
        .arg(srv.endpoint())
        .timeout(LIMIT)
        .run();
    (out, srv.finish().len())
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hist(v: &Value) -> Histogram<u64> {
    smtp_source::report::decode_histogram(v.as_str().unwrap()).unwrap()
}

/// Three shards, merged: counts add up to what the servers saw, and
/// every phase's histogram (so every percentile) is the sum of the
/// shards' raw histograms.
#[test]
fn merge_adds_counts_and_histograms_exactly() {
    let dir = TempDir::new("report-merge");
    let mut files = Vec::new();
    let mut conns = 0;
    for k in 1..=3 {
        let f = dir.path().join(format!("shard{k}.json"));
        let shard = format!("--shard={k}/3");
        let srv = slow_server(k as u64 * 3);
        let (out, n) = run_to(&f, srv, &[&shard, "-s", "2", "-m", "20"]);
        out.assert_status(0).assert_stderr("");
        conns += n;
        files.push(f);
    }
    assert_eq!(conns, 20);
    let out = tool().arg("merge").args(&files).run();
    out.assert_status(0).assert_stderr("");
    let m: Value = serde_json::from_str(out.stdout_text().trim()).unwrap();
    let shards: Vec<Value> = files.iter().map(|f| json(f)).collect();
    assert_eq!(m["messages"]["accepted"], 20);
    assert_eq!(m["connections"], 20);
    assert_eq!(m["shard"], Value::Null);
    assert_eq!(m["reply_codes"]["MAIL"]["250"], 20);
    let starts = shards.iter().map(|s| s["start_unix"].as_f64().unwrap());
    let ends = shards.iter().map(|s| s["end_unix"].as_f64().unwrap());
    let start = starts.fold(f64::MAX, f64::min);
    let end = ends.fold(0.0, f64::max);
    assert!((m["start_unix"].as_f64().unwrap() - start).abs() < 1e-6);
    assert!(
        (m["elapsed_seconds"].as_f64().unwrap() - (end - start)).abs() < 2e-6
    );
    for (phase, b64) in m["histograms"].as_object().unwrap() {
        let mut sum = smtp_source::report::codec::new_histogram();
        for s in &shards {
            sum.add(hist(&s["histograms"][phase])).unwrap();
        }
        assert_eq!(hist(b64), sum, "{phase}");
        let p = &m["latency_ms"][phase];
        assert_eq!(p["count"].as_u64().unwrap(), sum.len(), "{phase}");
        if !sum.is_empty() {
            let want = sum.value_at_quantile(0.99) as f64 / 1000.0;
            assert_eq!(
                p["p99"].as_f64().unwrap(),
                (want * 1000.0).round() / 1000.0
            );
            assert_eq!(p["max"].as_f64().unwrap(), sum.max() as f64 / 1000.0);
        }
    }
    let accepted: u64 = m["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["accepted"].as_u64().unwrap())
        .sum();
    assert_eq!(accepted, 20);
}

/// `smtp-report text` prints what `--report=text` printed; merging one
/// report gives that report back, byte for byte.
#[test]
fn text_and_merge_of_one_report_reproduce_it() {
    let dir = TempDir::new("report-text");
    let f = dir.path().join("r.json");
    let (out, n) =
        run_to(&f, slow_server(2), &["--report", "-s", "3", "-m", "12"]);
    out.assert_status(0).assert_stderr("");
    assert_eq!(n, 12);
    let text = tool().arg("text").arg(&f).run();
    text.assert_status(0).assert_stderr("");
    assert_eq!(text.stdout_text(), out.stdout_text());
    let merged = tool().arg("merge").arg(&f).run();
    merged.assert_status(0).assert_stderr("");
    assert_eq!(merged.stdout_text(), std::fs::read_to_string(&f).unwrap());
}

/// Reports of different runs are refused, naming the files.
#[test]
fn merge_refuses_reports_of_different_runs() {
    let dir = TempDir::new("report-refuse");
    let (a, b, c) = (
        dir.path().join("a.json"),
        dir.path().join("b.json"),
        dir.path().join("c.json"),
    );
    for (f, shard) in [
        (&a, "--shard=1/2"),
        (&b, "--shard=1/3"),
        (&c, "--shard=1/2"),
    ] {
        let (out, _) = run_to(f, slow_server(0), &[shard, "-m", "2"]);
        out.assert_status(0);
    }
    let out = tool().arg("merge").arg(&a).arg(&b).run();
    out.assert_status(1).assert_stderr(&format!(
        "smtp-report: fatal: {} is shard 1/3 but {} is shard 1/2: not one run\n",
        b.display(),
        a.display()
    ));
    let out = tool().arg("merge").arg(&a).arg(&c).run();
    out.assert_status(1).assert_stderr(&format!(
        "smtp-report: fatal: {} and {} are both shard 1/2\n",
        a.display(),
        c.display()
    ));
    let out = tool().arg("merge").arg(&a).run();
    out.assert_status(0)
        .assert_stderr("smtp-report: warning: 1 of 2 shards; missing: 2\n");
    let missing = dir.path().join("none.json");
    let out = tool().arg("text").arg(&missing).run();
    out.assert_status(1).assert_stderr(&format!(
        "smtp-report: fatal: {}: No such file or directory\n",
        missing.display()
    ));
    let out = tool().arg("frobnicate").run();
    out.assert_status(2);
    assert!(out
        .stderr_text()
        .starts_with("usage: smtp-report merge FILE..."));
}

/// Runs of about 2 s at --rate (several intervals): `ms` per message,
/// when `reject` the 30th RCPT of each connection refused (one
/// connection a session, -d).
fn timed_run(file: &Path, ms: u64, reject: bool) {
    let mut r = Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(ms), Step::send("250 2.0.0 Ok: queued")],
    );
    if reject {
        r = r.on_nth(Verb::Rcpt, 29, "550 5.1.1 no such user");
    }
    let mut args = vec!["-A", "-s", "4", "-m", "240", "--rate=120"];
    if reject {
        args.push("-d");
    }
    let (out, _) = run_to(file, FakeServer::tcp(r), &args);
    out.assert_status(0);
}

/// `smtp-report html FILES` into `dir/name.html`, checked to be one
/// self-contained page; its text.
fn render_page(dir: &Path, name: &str, files: &[&Path]) -> (PathBuf, String) {
    let out = tool().arg("html").args(files).run();
    out.assert_status(0).assert_stderr("");
    let page = out.stdout_text();
    for banned in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(banned), "{banned} in the page");
    }
    let html = dir.join(format!("{name}.html"));
    std::fs::write(&html, &page).unwrap();
    (html, page)
}

/// Two runs compared: what each run was, p50/p90/p99, errors by class
/// over time, all in Chromium with every chart area drawn in.
#[test]
fn html_compares_two_runs_and_renders_in_chromium() {
    let dir = TempDir::new("report-html");
    let (a, b) = (
        dir.path().join("before.json"),
        dir.path().join("after.json"),
    );
    timed_run(&a, 1, false);
    timed_run(&b, 6, true);
    let (html, page) = render_page(dir.path(), "compare", &[&a, &b]);
    for label in [
        "What the run was",
        "command line",
        "--rate=120",
        "99.9%",
        "messages/s: achieved and target",
        "seconds since start",
        "transaction p50 (ms)",
        "transaction p90 (ms)",
        "transaction p99 (ms)",
        "errors per interval: ",
        ">rejected</text>",
        "transaction latency (ms) by percentile",
    ] {
        assert!(page.contains(label), "{label}");
    }
    let Some(png) = screenshot(&html, dir.path(), "compare") else {
        return;
    };
    let charts = check_charts(&png, &[COLORS[0], COLORS[1]]);
    // Rate, three percentiles, two error charts, nine phases.
    assert!(charts >= 15, "{charts} charts");
}

/// A run shorter than one interval: points with a note, alone and next
/// to a longer run, never an empty chart.
#[test]
fn html_draws_a_run_shorter_than_one_interval_as_points() {
    let dir = TempDir::new("report-short");
    let short = dir.path().join("short.json");
    let (out, _) = run_to(&short, slow_server(1), &["-s", "2", "-m", "6"]);
    out.assert_status(0);
    let long = dir.path().join("long.json");
    timed_run(&long, 1, false);
    let (html, page) = render_page(dir.path(), "short", &[&short]);
    assert!(page.contains("drawn as points"), "the note");
    assert!(page.contains("<circle"), "a point");
    if let Some(png) = screenshot(&html, dir.path(), "short") {
        check_charts(&png, &[COLORS[0]]);
    }
    let (html, _) = render_page(dir.path(), "short-long", &[&short, &long]);
    if let Some(png) = screenshot(&html, dir.path(), "short-long") {
        check_charts(&png, &[COLORS[0], COLORS[1]]);
    }
}

/// The keys other runs add (thresholds, stage targets, a capacity
/// search), hand-written into a real report: drawn when present.
#[test]
fn html_draws_thresholds_stages_and_capacity() {
    let dir = TempDir::new("report-extras");
    let file = dir.path().join("run.json");
    timed_run(&file, 1, false);
    let mut v = json(&file);
    v["thresholds"] = serde_json::json!([
        {"expr": "transaction.p99<250ms", "value": 4.2, "unit": "ms", "ok": true},
        {"expr": "errors<0.1%", "value": 2.5, "unit": "%", "ok": false}
    ]);
    let n = v["intervals"].as_array().unwrap().len();
    assert!(n >= 2, "{n} intervals");
    for (i, interval) in v["intervals"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        let target = if i == 0 { 60.0 } else { 120.0 };
        interval["target_rate"] = serde_json::json!(target);
    }
    let steps: Vec<Value> = [
        (100, 99, 1.1, 3.0, true),
        (200, 198, 1.3, 4.0, true),
        (400, 390, 2.0, 9.0, true),
        (800, 610, 40.0, 900.0, false),
        (600, 560, 6.0, 60.0, true),
        (700, 600, 25.0, 400.0, false),
    ]
    .iter()
    .map(|&(t, a, p50, p99, ok)| {
        serde_json::json!({
            "target": t, "achieved": a, "p50_ms": p50,
            "p99_ms": p99, "errors": 0, "ok": ok
        })
    })
    .collect();
    v["capacity"] = serde_json::json!({
        "rate": 600, "step_seconds": 10.0, "warmup_seconds": 2.0,
        "precision": 0.05, "steps": steps
    });
    std::fs::write(&file, v.to_string()).unwrap();
    let (html, page) = render_page(dir.path(), "extras", &[&file]);
    for label in [
        "Thresholds",
        "transaction.p99&lt;250ms",
        "4.2 pass",
        "2.5 FAIL",
        "p50 latency against achieved rate",
        "p99 latency against achieved rate",
        "capacity 600 msg/s",
        "run.json: capacity 600 msg/s",
        "achieved messages/s",
        ">target</text>",
    ] {
        assert!(page.contains(label), "{label}");
    }
    if let Some(png) = screenshot(&html, dir.path(), "extras") {
        check_charts(&png, &[COLORS[0]]);
    }
}

/// Headless Chromium's screenshot of `page`; None (the test then skips,
/// saying so) only when no chromium is installed.
fn screenshot(page: &Path, dir: &Path, name: &str) -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|c| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {c}"))
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !path.is_empty()).then_some(path)
    });
    let Some(chromium) = found else {
        skip(
            "report_tool::html_*",
            "chromium is not installed (apt-get install chromium; .ci/run \
installs it)",
        );
        return None;
    };
    let png = dir.join(format!("{name}.png"));
    let profile = dir.join("profile");
    let shot = format!("--screenshot={}", png.display());
    let data = format!("--user-data-dir={}", profile.display());
    let url = format!("file://{}", page.display());
    let out = program(PathBuf::from(chromium), "chromium")
        .cmd()
        .argv0(None)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,4000",
            &data,
            &shot,
            &url,
        ])
        .timeout(Duration::from_secs(45))
        .run();
    assert!(png.is_file(), "no screenshot\n{}", out.render());
    // To look at them: SMTP_SOURCE_SCREENSHOTS=DIR keeps a copy.
    if let Some(keep) = std::env::var_os("SMTP_SOURCE_SCREENSHOTS") {
        let _ = std::fs::create_dir_all(&keep);
        let _ =
            std::fs::copy(&png, Path::new(&keep).join(format!("{name}.png")));
    }
    Some(png)
}

fn rgb(hex: &str) -> [u8; 3] {
    let n = u32::from_str_radix(&hex[1..], 16).unwrap();
    [(n >> 16) as u8, (n >> 8) as u8, n as u8]
}

fn near(p: &[u8], c: [u8; 3], tol: i32) -> bool {
    (0..3).all(|i| (i32::from(p[i]) - i32::from(c[i])).abs() <= tol)
}

/// Every chart area in the screenshot (a region of the plot fill and
/// what is drawn on it, inside the frame) has something drawn in it
/// besides its grid; `colors` (the series) show in quantity, and dark
/// text (titles, axis labels). Returns the number of chart areas.
fn check_charts(png: &Path, colors: &[&str]) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    assert!(step >= 3, "{:?}", info.color_type);
    let (w, h) = (info.width as usize, info.height as usize);
    assert_eq!((w, h), (1280, 4000));
    let px = |x: usize, y: usize| {
        let i = (y * w + x) * step;
        [buf[i], buf[i + 1], buf[i + 2]]
    };
    let fill = rgb(smtp_source::report::html::PLOT_FILL);
    let grid = rgb("#ddddee");
    let frame = rgb("#888888");
    let white = [255, 255, 255];
    // Inside a chart area: anything but the frame and the page's white.
    let inside = |p: [u8; 3]| !near(&p, frame, 24) && !near(&p, white, 3);
    let mut seen = vec![false; w * h];
    let mut charts = 0;
    let mut wide_gaps = 0;
    for y0 in 0..h {
        for x0 in 0..w {
            if seen[y0 * w + x0] || !near(&px(x0, y0), fill, 2) {
                continue;
            }
            // Flood the area from this fill pixel.
            let (mut fills, mut drawn) = (0usize, 0usize);
            let (mut min_x, mut max_x) = (x0, x0);
            let mut stack = vec![(x0, y0)];
            seen[y0 * w + x0] = true;
            while let Some((x, y)) = stack.pop() {
                min_x = min_x.min(x);
                max_x = max_x.max(x);
                let p = px(x, y);
                if near(&p, fill, 2) {
                    fills += 1;
                } else if !near(&p, grid, 6) {
                    drawn += 1;
                }
                let next = [
                    (x.wrapping_sub(1), y),
                    (x + 1, y),
                    (x, y.wrapping_sub(1)),
                    (x, y + 1),
                ];
                for (nx, ny) in next {
                    if nx < w
                        && ny < h
                        && !seen[ny * w + nx]
                        && inside(px(nx, ny))
                    {
                        seen[ny * w + nx] = true;
                        stack.push((nx, ny));
                    }
                }
            }
            if fills < 20_000 {
                continue;
            }
            charts += 1;
            assert!(
                drawn > 300,
                "chart {charts} at ({x0},{y0}) is empty: {drawn} pixels"
            );
            if max_x - min_x < w / 3 {
                wide_gaps += 1;
            }
        }
    }
    assert!(charts >= 3, "{charts} chart areas");
    // The page uses the width: the charts are at least a third of it.
    assert_eq!(wide_gaps, 0, "narrow charts");
    let mut counts = vec![0usize; colors.len()];
    let mut dark = 0;
    for y in 0..h {
        for x in 0..w {
            let p = px(x, y);
            for (n, c) in counts.iter_mut().zip(colors) {
                if near(&p, rgb(c), 40) {
                    *n += 1;
                }
            }
            if p.iter().all(|&v| v < 90) {
                dark += 1;
            }
        }
    }
    for (n, c) in counts.iter().zip(colors) {
        assert!(*n > 1000, "series {c}: {n} pixels");
    }
    assert!(dark > 5000, "text: {dark} pixels");
    charts
}
