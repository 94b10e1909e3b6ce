//! smtp-report: merge, text and html on reports of real runs against
//! the fake server; the html page rendered by headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::support::fake_server::{FakeServer, Responder, Step, Verb};
use crate::support::{ours, program, skip, Cmd, Outcome, TempDir};

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

/// The page: self-contained, and, rendered by headless Chromium, it
/// shows the plot areas with both series drawn and the axis labels.
#[test]
fn html_is_self_contained_and_renders_in_chromium() {
    let dir = TempDir::new("report-html");
    let (a, b) = (
        dir.path().join("before.json"),
        dir.path().join("after.json"),
    );
    for (f, ms) in [(&a, 1), (&b, 6)] {
        let (out, _) = run_to(f, slow_server(ms), &["-s", "4", "-m", "200"]);
        out.assert_status(0);
    }
    let out = tool().arg("html").arg(&a).arg(&b).run();
    out.assert_status(0).assert_stderr("");
    let page = out.stdout_text();
    for banned in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(banned), "{banned} in the page");
    }
    for label in ["percentile", "99.9%", "messages/s", "seconds since start"] {
        assert!(page.contains(label), "{label}");
    }
    assert!(page.contains("transaction latency (ms) by percentile"));
    let html = dir.path().join("report.html");
    std::fs::write(&html, &page).unwrap();
    let Some(png) = screenshot(&html, dir.path()) else {
        return;
    };
    check_screenshot(&png);
}

/// Headless Chromium's screenshot of `page`; None (the test then skips,
/// saying so) only when no chromium is installed.
fn screenshot(page: &Path, dir: &Path) -> Option<PathBuf> {
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
            "report_tool::html_is_self_contained_and_renders_in_chromium",
            "chromium is not installed (apt-get install chromium; .ci/run \
installs it)",
        );
        return None;
    };
    let png = dir.join("out.png");
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
            "--window-size=1200,1600",
            &data,
            &shot,
            &url,
        ])
        .timeout(Duration::from_secs(45))
        .run();
    assert!(png.is_file(), "no screenshot\n{}", out.render());
    Some(png)
}

fn rgb(hex: &str) -> [u8; 3] {
    let n = u32::from_str_radix(&hex[1..], 16).unwrap();
    [(n >> 16) as u8, (n >> 8) as u8, n as u8]
}

fn near(p: &[u8], c: [u8; 3], tol: i32) -> bool {
    (0..3).all(|i| (i32::from(p[i]) - i32::from(c[i])).abs() <= tol)
}

/// The screenshot has plot areas (their fill), both series' colours in
/// quantity, and dark text (titles, axis labels) between them.
fn check_screenshot(png: &Path) {
    let decoder = png::Decoder::new(std::fs::File::open(png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    assert!(step >= 3, "{:?}", info.color_type);
    let (w, h) = (info.width as usize, info.height as usize);
    assert_eq!((w, h), (1200, 1600));
    let fill = rgb(smtp_source::report::html::PLOT_FILL);
    let blue = rgb(smtp_source::report::html::COLORS[0]);
    let red = rgb(smtp_source::report::html::COLORS[1]);
    let (mut n_fill, mut n_blue, mut n_red, mut n_dark) = (0, 0, 0, 0);
    let mut fill_rows = vec![false; h];
    for (y, row_has_fill) in fill_rows.iter_mut().enumerate() {
        for x in 0..w {
            let i = (y * w + x) * step;
            let p = &buf[i..i + 3];
            if near(p, fill, 2) {
                n_fill += 1;
                *row_has_fill = true;
            } else if near(p, blue, 40) {
                n_blue += 1;
            } else if near(p, red, 40) {
                n_red += 1;
            } else if p.iter().all(|&v| v < 90) {
                n_dark += 1;
            }
        }
    }
    // Six plots fit in 1600 pixels; each area is about 490 x 210.
    assert!(n_fill > 4 * 80_000, "plot areas: {n_fill} pixels");
    assert!(n_blue > 1500, "first series: {n_blue} pixels");
    assert!(n_red > 1500, "second series: {n_red} pixels");
    assert!(n_dark > 5000, "text: {n_dark} pixels");
    // At least three separate bands of plots down the page.
    let bands = fill_rows.windows(2).filter(|w| !w[0] && w[1]).count();
    assert!(bands >= 3, "{bands} bands of plots");
}

#[test]
fn version_and_help() {
    let out = tool().arg("--version").run();
    out.assert_status(0).assert_stderr("");
    let want = format!("smtp-report {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(out.stdout_text(), want);
    let out = tool().arg("--help").run();
    out.assert_status(0).assert_stderr("");
    assert!(out.stdout_text().contains("smtp-report --version"));
}
