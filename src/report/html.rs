//! html: `smtp-report html`, one self-contained page from one or more
//! reports that tells the run's story: what each run was (command line,
//! target, start and end, host, version, shard), its counts and
//! thresholds, then over time the achieved rate against the target
//! (with stage boundaries), transaction p50, p90 and p99, and errors by
//! class; for a capacity search the rate-latency curve with the knee;
//! and each phase's latency by percentile (HdrHistogram's log scale).
//! Several reports are drawn as separate series, one colour each.
//!
//! Every quantity has a chart of its own, with its own y axis (small
//! multiples): a p99 a hundred times the p50, or a run a hundred times
//! faster than the other, never flattens the rest against the axis. A
//! series of one point (a run shorter than one interval) is drawn as a
//! point, with a note; a chart with nothing to draw says so.
//!
//! Hand-written SVG rather than `plotters`: tried on the same chart,
//! plotters' SVG backend (without its font stack) put the y label over
//! the tick labels, cut the last x tick, printed `250.0` for 250, drew
//! its legend over the data and wrote 16 KB per chart; it also cannot
//! size the text it lays out without the ttf feature. The code here is
//! shorter than the configuration those fixes would take.
//!
//! Inline SVG and CSS only: no script, no font, no image, nothing
//! fetched, so the page can be mailed or archived as it is. Charts scale
//! to the page's width (a grid of as many columns as fit).

use std::fmt::Write as _;
use std::time::SystemTime;

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::report::stats::{Interval, Phase, ERROR_KEYS, PHASES};
use crate::report::{decode_histogram, iso8601, Summary};

/// Series colours, in file order (distinct in print and for the common
/// colour-vision deficiencies).
pub const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// Error class colours (ERROR_KEYS order, then `rejected`).
const CLASS_COLORS: [&str; 8] = [
    "#e6550d", "#9e0142", "#756bb1", "#31a354", "#3182bd", "#636363",
    "#8c6d31", "#d6616b",
];

/// The plot area's fill: tests find the plots by it.
pub const PLOT_FILL: &str = "#f4f6fb";

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 44.0;

/// A report with what the page draws beyond the `Summary`: keys that
/// runs with thresholds, stages or a capacity search add to the JSON.
pub struct Report {
    pub name: String,
    pub summary: Summary,
    pub extras: Extras,
}

/// Optional parts of a report, read from its JSON when present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// `thresholds`: each {expr, value, ok}.
    pub thresholds: Vec<Threshold>,
    /// The intervals' `target_rate`, in interval order (empty without).
    pub target_rates: Vec<Option<f64>>,
    /// `capacity`: the answer and the steps.
    pub capacity: Option<Capacity>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub expr: String,
    /// The measured value as written (a number or a text).
    pub value: String,
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub rate: Option<f64>,
    pub steps: Vec<Step>,
}

/// A number a step may have.
type StepValue = fn(&Step) -> Option<f64>;

/// One step of a capacity search.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub target: Option<f64>,
    pub achieved: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub ok: Option<bool>,
}

impl Extras {
    /// What `json` (a whole report) has of them; anything malformed is
    /// left out rather than refused (the counts are what matters).
    pub fn from_json(json: &Value) -> Extras {
        let thresholds = json
            .get("thresholds")
            .and_then(Value::as_array)
            .map(|all| all.iter().filter_map(threshold).collect())
            .unwrap_or_default();
        let target_rates: Vec<Option<f64>> = json
            .get("intervals")
            .and_then(Value::as_array)
            .map(|all| {
                all.iter()
                    .map(|i| number(i, &["target_rate", "target"]))
                    .collect()
            })
            .unwrap_or_default();
        let any_target = target_rates.iter().any(Option::is_some);
        let capacity = json.get("capacity").and_then(|c| {
            let steps = c.get("steps").and_then(Value::as_array)?;
            Some(Capacity {
                rate: number(c, &["rate"]),
                steps: steps.iter().map(step).collect(),
            })
        });
        Extras {
            thresholds,
            target_rates: if any_target { target_rates } else { Vec::new() },
            capacity,
        }
    }
}

fn threshold(v: &Value) -> Option<Threshold> {
    let value = match v.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => trim(n.as_f64().unwrap_or(0.0)),
        _ => "-".into(),
    };
    Some(Threshold {
        expr: v.get("expr")?.as_str()?.to_string(),
        value,
        ok: v.get("ok")?.as_bool()?,
    })
}

fn step(v: &Value) -> Step {
    Step {
        target: number(v, &["target_rate", "target"]),
        achieved: number(v, &["achieved_rate", "achieved", "rate"]),
        p50_ms: number(v, &["p50_ms", "p50"]),
        p99_ms: number(v, &["p99_ms", "p99"]),
        ok: ["ok", "pass", "passed"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_bool)),
    }
}

/// The first of `keys` that `v` has as a number.
fn number(v: &Value, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| v.get(*k).and_then(Value::as_f64))
}

/// The page for `reports` (name, report), in the order given.
pub fn render(reports: &[(String, Summary)]) -> String {
    let all: Vec<Report> = reports
        .iter()
        .map(|(name, summary)| Report {
            name: name.clone(),
            summary: summary.clone(),
            extras: Extras::default(),
        })
        .collect();
    render_reports(&all)
}

/// The page for `reports`, with what their JSON adds.
pub fn render_reports(reports: &[Report]) -> String {
    let mut o = String::with_capacity(64 * 1024);
    o.push_str(HEAD);
    o.push_str("<h1>smtp-source report</h1>\n");
    legend(&mut o, reports);
    run_table(&mut o, reports);
    o.push_str("<div class=\"tables\">\n");
    counts_table(&mut o, reports);
    thresholds_table(&mut o, reports);
    o.push_str("</div>\n<h2>Over time</h2>\n<div class=\"plots\">\n");
    over_time(&mut o, reports);
    o.push_str("</div>\n");
    if reports.iter().any(|r| r.extras.capacity.is_some()) {
        o.push_str("<h2>Capacity</h2>\n<div class=\"plots\">\n");
        for (i, r) in reports.iter().enumerate() {
            if let Some(c) = &r.extras.capacity {
                capacity_plot(&mut o, i, &r.name, c, reports.len() > 1);
            }
        }
        o.push_str("</div>\n<div class=\"tables\">\n");
        for r in reports {
            if let Some(c) = &r.extras.capacity {
                capacity_table(&mut o, &r.name, c);
            }
        }
        o.push_str("</div>\n");
    }
    o.push_str("<h2>Latency by percentile</h2>\n<div class=\"plots\">\n");
    for phase in PHASES {
        percentile_plot(&mut o, reports, phase);
    }
    o.push_str("</div>\n</body>\n</html>\n");
    o
}

const HEAD: &str = "<!DOCTYPE html>
<html lang=\"en\">
<head>
<meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>smtp-source report</title>
<style>
body { font-family: sans-serif; margin: 16px; color: #222; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 17px; margin: 18px 0 6px; }
h3 { font-size: 14px; margin: 0 0 4px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.text { text-align: left; font-family: monospace; word-break: break-all; }
td.ok { color: #1a7f37; } td.fail { color: #c62828; font-weight: bold; }
.tables { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.tables > div { flex: 0 1 auto; max-width: 100%; overflow-x: auto; }
.run table { width: 100%; table-layout: fixed; }
.run th:first-child { width: 110px; }
.plots { display: grid; gap: 10px;
  grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); }
.plots svg { width: 100%; height: auto; }
.legend span { display: inline-block; margin-right: 16px; font-size: 14px; }
.swatch { display: inline-block; width: 14px; height: 14px;
  vertical-align: middle; margin-right: 4px; }
svg text { font-family: sans-serif; font-size: 11px; fill: #222; }
svg .title { font-size: 13px; font-weight: bold; }
svg .note { font-size: 12px; fill: #555; font-style: italic; }
</style>
</head>
<body>
";

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn legend(o: &mut String, reports: &[Report]) {
    o.push_str("<p class=\"legend\">");
    for (i, r) in reports.iter().enumerate() {
        let _ = write!(
            o,
            "<span><span class=\"swatch\" style=\"background:{}\"></span>\
{} (start {})</span>",
            color(i),
            escape(&r.name),
            iso8601(r.summary.start)
        );
    }
    o.push_str("</p>\n");
}

/// A report's name in a table head or a title: its file's name (the
/// legend has the whole path).
fn short(name: &str) -> &str {
    name.rsplit('/').find(|n| !n.is_empty()).unwrap_or(name)
}

/// A table with one column per report; `text` rows are left-aligned
/// monospace (command lines).
fn table_head(o: &mut String, class: &str, title: &str, reports: &[Report]) {
    let _ = write!(
        o,
        "<div class=\"{class}\"><h3>{title}</h3>\n<table>\n<tr><th></th>"
    );
    for (i, r) in reports.iter().enumerate() {
        let _ = write!(
            o,
            "<th style=\"color:{}\">{}</th>",
            color(i),
            escape(short(&r.name))
        );
    }
    o.push_str("</tr>\n");
}

fn row(o: &mut String, label: &str, class: &str, cells: &[String]) {
    let _ = write!(o, "<tr><td>{label}</td>");
    for c in cells {
        let _ = write!(o, "<td class=\"{class}\">{}</td>", escape(c));
    }
    o.push_str("</tr>\n");
}

/// What each run was.
fn run_table(o: &mut String, reports: &[Report]) {
    table_head(o, "run", "What the run was", reports);
    let run = |f: fn(&crate::report::run::RunInfo) -> &String| -> Vec<String> {
        reports
            .iter()
            .map(|r| {
                r.summary.run.as_ref().map_or("-".into(), |x| f(x).clone())
            })
            .collect()
    };
    row(o, "command line", "text", &run(|r| &r.command_line));
    row(o, "target", "text", &run(|r| &r.target));
    let each = |f: &dyn Fn(&Summary) -> String| -> Vec<String> {
        reports.iter().map(|r| f(&r.summary)).collect()
    };
    row(o, "start", "", &each(&|s| iso8601(s.start)));
    row(o, "end", "", &each(&|s| iso8601(s.start + s.elapsed)));
    row(
        o,
        "elapsed s",
        "",
        &each(&|s| format!("{:.3}", s.elapsed.as_secs_f64())),
    );
    row(o, "host", "text", &run(|r| &r.host));
    row(o, "version", "", &run(|r| &r.version));
    row(
        o,
        "shard",
        "",
        &each(&|s| {
            s.shard
                .map_or("-".into(), |s| format!("{}/{}", s.index, s.count))
        }),
    );
    row(
        o,
        "ended",
        "",
        &each(&|s| {
            if s.completed {
                "completed".into()
            } else if let Some(sig) = &s.interrupted {
                format!("interrupted by {sig}")
            } else {
                s.fatal.clone().unwrap_or_else(|| "-".into())
            }
        }),
    );
    o.push_str("</table></div>\n");
}

fn counts_table(o: &mut String, reports: &[Report]) {
    table_head(o, "", "Counts", reports);
    let txn = |r: &Summary, q: f64| {
        let h = &r.latency[Phase::Transaction as usize];
        if h.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", h.value_at_quantile(q) as f64 / 1000.0)
        }
    };
    type Row = (&'static str, fn(&Summary) -> String);
    let rows: [Row; 10] = [
        ("attempted", |r| r.counts.attempted.to_string()),
        ("accepted", |r| r.counts.accepted.to_string()),
        ("rejected", |r| r.counts.rejected.to_string()),
        ("failed", |r| r.counts.failed.to_string()),
        ("unknown", |r| r.counts.unknown.to_string()),
        ("recipients sent", |r| r.counts.rcpt_sent.to_string()),
        ("connections", |r| r.counts.connections.to_string()),
        ("bytes sent", |r| r.counts.bytes_sent.to_string()),
        ("messages/s", |r| format!("{:.1}", r.rate())),
        ("errors", |r| {
            r.counts.errors.iter().sum::<u64>().to_string()
        }),
    ];
    for (label, f) in rows {
        let cells: Vec<String> =
            reports.iter().map(|r| f(&r.summary)).collect();
        row(o, label, "", &cells);
    }
    for (label, q) in [
        ("transaction p50 ms", 0.5),
        ("transaction p90 ms", 0.9),
        ("transaction p99 ms", 0.99),
    ] {
        let cells: Vec<String> =
            reports.iter().map(|r| txn(&r.summary, q)).collect();
        row(o, label, "", &cells);
    }
    o.push_str("</table></div>\n");
}

/// Every threshold of any report, with each report's value and verdict.
fn thresholds_table(o: &mut String, reports: &[Report]) {
    let mut exprs: Vec<&str> = Vec::new();
    for r in reports {
        for t in &r.extras.thresholds {
            if !exprs.contains(&t.expr.as_str()) {
                exprs.push(&t.expr);
            }
        }
    }
    if exprs.is_empty() {
        return;
    }
    table_head(o, "", "Thresholds", reports);
    for expr in exprs {
        let _ = write!(o, "<tr><td>{}</td>", escape(expr));
        for r in reports {
            match r.extras.thresholds.iter().find(|t| t.expr == expr) {
                None => o.push_str("<td>-</td>"),
                Some(t) => {
                    let (class, verdict) = if t.ok {
                        ("ok", "pass")
                    } else {
                        ("fail", "FAIL")
                    };
                    let _ = write!(
                        o,
                        "<td class=\"{class}\">{} {verdict}</td>",
                        escape(&t.value)
                    );
                }
            }
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table></div>\n");
}

/// How a series is drawn.
#[derive(Clone)]
struct Series {
    color: &'static str,
    /// SVG stroke-dasharray, for a second series of the same colour.
    dash: Option<&'static str>,
    points: Vec<(f64, f64)>,
}

/// A vertical line with a label (a stage boundary, the knee).
struct Mark {
    x: f64,
    label: String,
}

/// How the x axis is drawn.
enum XAxis {
    /// Seconds since the start of the run, up to this many.
    Seconds(f64),
    /// Percentiles on HdrHistogram's scale: x = log10(1 / (1 - p)),
    /// up to this many nines.
    Nines(u32),
    /// A plain scale from 0, with its label.
    Linear(f64, &'static str),
}

/// One chart: what `plot` draws.
struct Chart<'a> {
    title: String,
    y_label: &'a str,
    x: XAxis,
    series: Vec<Series>,
    marks: Vec<Mark>,
    /// Entries of the chart's own legend (top right): label and style.
    keys: Vec<(String, &'static str, Option<&'static str>)>,
    /// Said in the plot area when nothing is drawn, or under the title.
    empty: &'a str,
}

/// The intervals' middle times (seconds since `start`) and lengths.
fn interval_times(start: SystemTime, v: &Interval) -> (f64, f64) {
    let from = seconds_since(start, v.start);
    let len = v.length.as_secs_f64();
    (from + len / 2.0, len)
}

/// Achieved rate (and target), p50/p90/p99, errors: one chart each.
fn over_time(o: &mut String, reports: &[Report]) {
    let end = reports
        .iter()
        .flat_map(|r| {
            r.summary.intervals.iter().map(|v| {
                seconds_since(r.summary.start, v.start)
                    + v.length.as_secs_f64()
            })
        })
        .fold(r_elapsed(reports), f64::max)
        .max(1e-3);
    rate_plot(o, reports, end);
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let series = reports
            .iter()
            .enumerate()
            .map(|(i, r)| Series {
                color: color(i),
                dash: None,
                points: quantile_points(&r.summary, q),
            })
            .collect();
        plot(
            o,
            Chart {
                title: format!("transaction {name} (ms)"),
                y_label: "ms",
                x: XAxis::Seconds(end),
                series,
                marks: stage_marks(reports),
                keys: Vec::new(),
                empty: "no transaction finished",
            },
        );
    }
    for (i, r) in reports.iter().enumerate() {
        errors_plot(o, r, i, end, reports.len() > 1);
    }
}

fn r_elapsed(reports: &[Report]) -> f64 {
    reports
        .iter()
        .map(|r| r.summary.elapsed.as_secs_f64())
        .fold(0.0, f64::max)
}

/// Accepted per second in each interval, and the target rate dashed.
fn rate_plot(o: &mut String, reports: &[Report], end: f64) {
    let mut series = Vec::new();
    let mut any_target = false;
    for (i, r) in reports.iter().enumerate() {
        let s = &r.summary;
        let points = s
            .intervals
            .iter()
            .filter(|v| v.length.as_secs_f64() > 0.0)
            .map(|v| {
                let (mid, len) = interval_times(s.start, v);
                (mid, v.accepted as f64 / len)
            })
            .collect();
        series.push(Series {
            color: color(i),
            dash: None,
            points,
        });
        let target: Vec<(f64, f64)> = s
            .intervals
            .iter()
            .zip(&r.extras.target_rates)
            .filter_map(|(v, t)| Some((interval_times(s.start, v).0, (*t)?)))
            .collect();
        let target = if target.is_empty() {
            // A constant --rate: its line across the run.
            s.schedule
                .as_ref()
                .map(|sch| {
                    vec![(0.0, sch.rate), (s.elapsed.as_secs_f64(), sch.rate)]
                })
                .unwrap_or_default()
        } else {
            target
        };
        if !target.is_empty() {
            any_target = true;
            series.push(Series {
                color: color(i),
                dash: Some("6 4"),
                points: target,
            });
        }
    }
    let keys = if any_target {
        vec![
            ("achieved".into(), "#444", None),
            ("target".into(), "#444", Some("6 4")),
        ]
    } else {
        Vec::new()
    };
    plot(
        o,
        Chart {
            title: "messages/s: achieved and target".into(),
            y_label: "messages/s",
            x: XAxis::Seconds(end),
            series,
            marks: stage_marks(reports),
            keys,
            empty: "no interval recorded",
        },
    );
}

/// The interval's transaction latency at `q`, in ms, where any finished.
fn quantile_points(s: &Summary, q: f64) -> Vec<(f64, f64)> {
    s.intervals
        .iter()
        .filter_map(|v| {
            let h =
                decode_histogram(&v.histogram).filter(|h| !h.is_empty())?;
            let y = h.value_at_quantile(q) as f64 / 1000.0;
            Some((interval_times(s.start, v).0, y))
        })
        .collect()
}

/// Where a stage begins: the target rate's slope changes (a ramp turns
/// into a plateau, or the next ramp starts). From the first report that
/// has targets.
fn stage_marks(reports: &[Report]) -> Vec<Mark> {
    let Some(r) = reports.iter().find(|r| !r.extras.target_rates.is_empty())
    else {
        return Vec::new();
    };
    let s = &r.summary;
    let pts: Vec<(f64, f64)> = s
        .intervals
        .iter()
        .zip(&r.extras.target_rates)
        .filter_map(|(v, t)| Some((seconds_since(s.start, v.start), (*t)?)))
        .collect();
    slope_changes(&pts)
        .into_iter()
        .enumerate()
        .map(|(n, x)| Mark {
            x,
            label: format!("stage {}", n + 2),
        })
        .collect()
}

/// The x of each point where the (x, target) line bends.
fn slope_changes(pts: &[(f64, f64)]) -> Vec<f64> {
    pts.windows(3)
        .filter(|w| {
            let before = (w[1].1 - w[0].1) / (w[1].0 - w[0].0).max(1e-9);
            let after = (w[2].1 - w[1].1) / (w[2].0 - w[1].0).max(1e-9);
            let scale = w[0].1.abs().max(w[2].1.abs()).max(1.0);
            (after - before).abs() > 1e-6 * scale
        })
        .map(|w| w[1].0)
        .collect()
}

/// One report's errors in each interval, a line per class that occurred
/// (rejected messages too); a flat zero line when there were none.
fn errors_plot(o: &mut String, r: &Report, i: usize, end: f64, name_it: bool) {
    let s = &r.summary;
    let mut series = Vec::new();
    let mut keys = Vec::new();
    let classes = ERROR_KEYS.iter().enumerate().map(|(k, key)| (k, *key));
    for (k, key) in classes.chain([(ERROR_KEYS.len(), "rejected")]) {
        let count = |v: &Interval| {
            if k < ERROR_KEYS.len() {
                v.errors[k]
            } else {
                v.rejected
            }
        };
        if s.intervals.iter().all(|v| count(v) == 0) {
            continue;
        }
        let c = CLASS_COLORS[k % CLASS_COLORS.len()];
        series.push(Series {
            color: c,
            dash: None,
            points: s
                .intervals
                .iter()
                .map(|v| (interval_times(s.start, v).0, count(v) as f64))
                .collect(),
        });
        keys.push((key.replace('_', " "), c, None));
    }
    if series.is_empty() && !s.intervals.is_empty() {
        series.push(Series {
            color: color(i),
            dash: None,
            points: s
                .intervals
                .iter()
                .map(|v| (interval_times(s.start, v).0, 0.0))
                .collect(),
        });
        keys.push(("no errors".into(), color(i), None));
    }
    let title = if name_it {
        format!("errors per interval: {}", short(&r.name))
    } else {
        "errors per interval, by class".into()
    };
    plot(
        o,
        Chart {
            title,
            y_label: "errors",
            x: XAxis::Seconds(end),
            series,
            marks: stage_marks(std::slice::from_ref(r)),
            keys,
            empty: "no interval recorded",
        },
    );
}

/// p50 and p99 of each capacity step against its achieved rate, the
/// knee (the rate found) marked.
fn capacity_plot(
    o: &mut String,
    i: usize,
    name: &str,
    c: &Capacity,
    name_it: bool,
) {
    let mut steps: Vec<&Step> =
        c.steps.iter().filter(|s| s.achieved.is_some()).collect();
    steps.sort_by(|a, b| {
        a.achieved
            .partial_cmp(&b.achieved)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let curve = |f: fn(&Step) -> Option<f64>| -> Vec<(f64, f64)> {
        steps
            .iter()
            .filter_map(|s| Some((s.achieved?, f(s)?)))
            .collect()
    };
    let x_max = steps
        .iter()
        .filter_map(|s| s.achieved)
        .chain(c.rate)
        .fold(0.0, f64::max)
        * 1.05;
    let marks = c
        .rate
        .map(|rate| {
            // The knee on the achieved scale: the passing step at the
            // answer's target, else the answer itself.
            let at = c
                .steps
                .iter()
                .find(|s| {
                    s.target.is_some_and(|t| {
                        (t - rate).abs() < 1e-9 * rate.max(1.0)
                    })
                })
                .and_then(|s| s.achieved)
                .unwrap_or(rate);
            vec![Mark {
                x: at,
                label: format!(
                    "capacity {} msg/s",
                    trim((rate * 10.0).round() / 10.0)
                ),
            }]
        })
        .unwrap_or_default();
    // p99 is often a hundred times p50 past the knee: a chart each.
    let curves: [(&str, StepValue); 2] =
        [("p50", |s| s.p50_ms), ("p99", |s| s.p99_ms)];
    for (q, f) in curves {
        let title = if name_it {
            format!("{q} latency against achieved rate: {}", short(name))
        } else {
            format!("{q} latency against achieved rate")
        };
        let marks = marks
            .iter()
            .map(|m| Mark {
                x: m.x,
                label: m.label.clone(),
            })
            .collect();
        plot(
            o,
            Chart {
                title,
                y_label: "ms",
                x: XAxis::Linear(x_max.max(1e-3), "achieved messages/s"),
                series: vec![Series {
                    color: color(i),
                    dash: None,
                    points: curve(f),
                }],
                marks,
                keys: Vec::new(),
                empty: "no step measured",
            },
        );
    }
}

/// The search's steps in the order run, and the answer.
fn capacity_table(o: &mut String, name: &str, c: &Capacity) {
    let answer = c
        .rate
        .map_or("none found".into(), |r| format!("{} msg/s", trim(r)));
    let _ = write!(
        o,
        "<div><h3>{}: capacity {}</h3>\n<table>\n<tr><th>step</th>\
<th>target/s</th><th>achieved/s</th><th>p50 ms</th><th>p99 ms</th>\
<th>result</th></tr>\n",
        escape(short(name)),
        escape(&answer)
    );
    let num = |v: Option<f64>| v.map_or("-".into(), trim);
    for (n, s) in c.steps.iter().enumerate() {
        let (class, verdict) = match s.ok {
            Some(true) => ("ok", "pass"),
            Some(false) => ("fail", "FAIL"),
            None => ("", "-"),
        };
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
<td class=\"{class}\">{verdict}</td></tr>",
            n + 1,
            num(s.target),
            num(s.achieved),
            num(s.p50_ms),
            num(s.p99_ms)
        );
    }
    o.push_str("</table></div>\n");
}

fn seconds_since(start: SystemTime, t: SystemTime) -> f64 {
    t.duration_since(start).map_or(0.0, |d| d.as_secs_f64())
}

/// One phase's latency by percentile, if any report has samples of it.
fn percentile_plot(o: &mut String, reports: &[Report], phase: Phase) {
    let hists: Vec<&Histogram<u64>> = reports
        .iter()
        .map(|r| &r.summary.latency[phase as usize])
        .collect();
    let most = hists.iter().map(|h| h.len()).max().unwrap_or(0);
    if most == 0 {
        return;
    }
    // Enough nines to show the tail the samples have (at least 99.9%).
    let nines = ((most as f64).log10().ceil() as u32).clamp(3, 6);
    let series: Vec<Series> = hists
        .iter()
        .enumerate()
        .map(|(i, h)| Series {
            color: color(i),
            dash: None,
            points: percentile_points(h, nines),
        })
        .collect();
    plot(
        o,
        Chart {
            title: format!("{} latency (ms) by percentile", phase.key()),
            y_label: "ms",
            x: XAxis::Nines(nines),
            series,
            marks: Vec::new(),
            keys: Vec::new(),
            empty: "no samples",
        },
    );
}

/// The percentile curve: x on the nines scale, y in milliseconds, a
/// step at each recorded value.
fn percentile_points(h: &Histogram<u64>, nines: u32) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    let top = f64::from(nines);
    for v in h.iter_quantiles(5) {
        let q: f64 = v.quantile_iterated_to();
        let x = if q >= 1.0 {
            top
        } else {
            (1.0 / (1.0 - q)).log10().min(top)
        };
        let y = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
        out.push((x, y));
    }
    out
}

/// The x axis's extent, ticks and label.
fn x_ticks(x: &XAxis) -> (f64, Vec<(f64, String)>, &'static str) {
    let linear = |end: f64| {
        let step = nice_step(end / 5.0);
        let ticks = (0..=(end / step).ceil() as u32)
            .map(|i| (f64::from(i) * step, trim(f64::from(i) * step)))
            .collect::<Vec<_>>();
        (end.max(step), ticks)
    };
    match *x {
        XAxis::Seconds(end) => {
            let (max, ticks) = linear(end);
            (max, ticks, "seconds since start")
        }
        XAxis::Linear(end, label) => {
            let (max, ticks) = linear(end);
            (max, ticks, label)
        }
        XAxis::Nines(n) => (
            f64::from(n),
            (0..=n).map(|i| (f64::from(i), nines_label(i))).collect(),
            "percentile",
        ),
    }
}

/// An SVG line chart with axes, ticks, labels, a title, its own legend,
/// vertical marks; single points as dots, with a note.
fn plot(o: &mut String, c: Chart) {
    let (x_max, x_ticks, x_label) = x_ticks(&c.x);
    let y_top = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    // All zero (no errors): a scale of 0 to 1, not of 0 to a nothing.
    let y_top = if y_top > 0.0 { y_top } else { 1.0 };
    let y_step = nice_step(y_top / 5.0);
    let y_max = (y_top / y_step).ceil().max(1.0) * y_step;
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let sx = |v: f64| LEFT + v.clamp(0.0, x_max) / x_max * pw;
    let sy = |v: f64| TOP + ph - v / y_max * ph;
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
role=\"img\" aria-label=\"{0}\">\n<text class=\"title\" x=\"{LEFT}\" y=\"16\">{0}</text>\n\
<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" \
fill=\"{PLOT_FILL}\" stroke=\"#888\"/>\n",
        escape(&c.title)
    );
    for (v, label) in &x_ticks {
        if *v > x_max + 1e-9 {
            continue;
        }
        let px = sx(*v);
        let _ = writeln!(
            o,
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" \
stroke=\"#dde\"/><text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            TOP + ph,
            TOP + ph + 14.0
        );
    }
    let mut v = 0.0;
    while v <= y_max + y_step / 2.0 {
        let py = sy(v);
        let _ = writeln!(
            o,
            "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" \
stroke=\"#dde\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + pw,
            LEFT - 4.0,
            py + 4.0,
            trim(v)
        );
        v += y_step;
    }
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x_label}</text>\n\
<text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        LEFT + pw / 2.0,
        HEIGHT - 6.0,
        TOP + ph / 2.0,
        escape(c.y_label)
    );
    for m in &c.marks {
        let px = sx(m.x);
        // The label on the side with room for it.
        let (tx, anchor) = if px > LEFT + pw * 0.7 {
            (px - 3.0, "end")
        } else {
            (px + 3.0, "start")
        };
        let _ = writeln!(
            o,
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" \
stroke=\"#555\" stroke-dasharray=\"2 3\"/><text x=\"{tx:.1}\" y=\"{:.1}\" \
text-anchor=\"{anchor}\" font-size=\"10\">{}</text>",
            TOP + ph,
            TOP + 11.0,
            escape(&m.label)
        );
    }
    let mut dots = false;
    for s in &c.series {
        let dash = s
            .dash
            .map_or(String::new(), |d| format!(" stroke-dasharray=\"{d}\""));
        if s.points.len() >= 2 {
            let pts: Vec<String> = s
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = writeln!(
                o,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\"{dash} \
points=\"{}\"/>",
                s.color,
                pts.join(" ")
            );
        }
        // A lone point has no line to show it: a dot does.
        if s.points.len() == 1 || (s.points.len() <= 3 && s.dash.is_none()) {
            dots |= s.points.len() == 1;
            for &(x, y) in &s.points {
                let _ = writeln!(
                    o,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{}\"/>",
                    sx(x),
                    sy(y),
                    s.color
                );
            }
        }
    }
    chart_keys(o, &c.keys);
    let note = if c.series.iter().all(|s| s.points.is_empty()) {
        Some(c.empty)
    } else if dots {
        Some("one interval only (a run shorter than one): drawn as points")
    } else {
        None
    };
    if let Some(note) = note {
        let _ = writeln!(
            o,
            "<text class=\"note\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + pw / 2.0,
            TOP + 16.0,
            escape(note)
        );
    }
    o.push_str("</svg>\n");
}

/// A chart's own legend, in the title's row at the right.
fn chart_keys(o: &mut String, keys: &[(String, &str, Option<&str>)]) {
    let mut x = WIDTH - RIGHT;
    for (label, color, dash) in keys.iter().rev() {
        let w = 6.5 * label.len() as f64 + 30.0;
        x -= w;
        let dash = dash
            .map_or(String::new(), |d| format!(" stroke-dasharray=\"{d}\""));
        let _ = writeln!(
            o,
            "<line x1=\"{:.1}\" y1=\"28\" x2=\"{:.1}\" y2=\"28\" stroke=\"{color}\" \
stroke-width=\"2.5\"{dash}/><text x=\"{:.1}\" y=\"32\">{}</text>",
            x,
            x + 20.0,
            x + 24.0,
            escape(label)
        );
    }
}

/// `0%`, `90%`, `99%`, `99.9%`, ...
fn nines_label(i: u32) -> String {
    match i {
        0 => "0%".into(),
        1 => "90%".into(),
        n => format!("99.{}%", "9".repeat(n as usize - 2))
            .replace("99.%", "99%"),
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-6);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A tick value without trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Text for the page: censored as on a terminal (a report may carry a
/// server's words), then HTML-escaped.
fn escape(s: &str) -> String {
    crate::diag::censored(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels() {
        let labels: Vec<String> = (0..=5).map(nines_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(31.0), 50.0);
        assert_eq!(trim(2.5), "2.5");
        assert_eq!(trim(10.0), "10");
        assert_eq!(trim(0.0), "0");
        assert_eq!(escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }

    #[test]
    fn percentile_curve_climbs_to_the_max() {
        let mut h = crate::report::codec::new_histogram();
        for us in 1..=1000 {
            h.record(us * 10).unwrap();
        }
        let pts = percentile_points(&h, 3);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let last = pts.last().unwrap();
        assert_eq!(last.0, 3.0);
        assert!((last.1 - 10.0).abs() < 0.01, "{last:?}");
    }

    /// A ramp from 0 to 300 over 3 s, 3 s at 300, a ramp down over 2 s:
    /// stages begin at 3 s and 6 s.
    #[test]
    fn stage_boundaries_are_where_the_target_bends() {
        let t = [0.0, 100.0, 200.0, 300.0, 300.0, 300.0, 300.0, 150.0, 0.0];
        let pts: Vec<(f64, f64)> =
            t.iter().enumerate().map(|(i, &r)| (i as f64, r)).collect();
        assert_eq!(slope_changes(&pts), [3.0, 6.0]);
        let flat: Vec<(f64, f64)> =
            (0..5).map(|i| (f64::from(i), 50.0)).collect();
        assert!(slope_changes(&flat).is_empty());
        assert!(slope_changes(&pts[..2]).is_empty());
    }

    #[test]
    fn extras_are_read_when_present_and_tolerated_when_not() {
        let v: Value = serde_json::from_str(
            r#"{"thresholds":[{"expr":"transaction.p99<250ms","value":12.5,"ok":true},
{"expr":"errors<0.1%","value":"0.5%","ok":false},{"bad":1}],
"intervals":[{"target_rate":10},{"target_rate":20},{"target_rate":30},
{"target_rate":30},{}],
"capacity":{"rate":800,"steps":[{"target_rate":800,"achieved_rate":790,
"p50_ms":2,"p99_ms":9,"ok":true},{"target":1600,"achieved":1200,"p50":40,
"p99":900,"pass":false}]}}"#,
        )
        .unwrap();
        let e = Extras::from_json(&v);
        assert_eq!(e.thresholds.len(), 2);
        assert_eq!(e.thresholds[0].value, "12.5");
        assert!(!e.thresholds[1].ok);
        assert_eq!(
            e.target_rates,
            [Some(10.0), Some(20.0), Some(30.0), Some(30.0), None]
        );
        let c = e.capacity.unwrap();
        assert_eq!(c.rate, Some(800.0));
        assert_eq!(c.steps[1].achieved, Some(1200.0));
        assert_eq!(c.steps[1].ok, Some(false));
        assert_eq!(Extras::from_json(&Value::Null), Extras::default());
    }
}
