//! html: `smtp-report html`, one self-contained page from one or more
//! reports: the counts table, the latency percentile distribution of
//! each phase (HdrHistogram's log-scale percentile plot), and messages/s
//! and p99 transaction latency over time from the intervals. Several
//! reports are drawn as separate series.
//!
//! Inline SVG and CSS only: no script, no font, no image, nothing
//! fetched, so the page can be mailed or archived as it is.

use std::fmt::Write as _;
use std::time::SystemTime;

use hdrhistogram::Histogram;

use crate::report::stats::{Phase, PHASES};
use crate::report::{decode_histogram, iso8601, Summary};

/// Series colours, in file order (distinct in print and for the common
/// colour-vision deficiencies).
pub const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// The plot area's fill: tests find the plots by it.
pub const PLOT_FILL: &str = "#f4f6fb";

const WIDTH: f64 = 540.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;

/// One plotted line: its label, colour and points.
struct Series<'a> {
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// How the x axis is drawn.
enum XAxis {
    /// Seconds since the start of the run.
    Seconds(f64),
    /// Percentiles on HdrHistogram's scale: x = log10(1 / (1 - p)),
    /// up to this many nines.
    Nines(u32),
}

/// The page for `reports` (name, report), in the order given.
pub fn render(reports: &[(String, Summary)]) -> String {
    let mut o = String::with_capacity(64 * 1024);
    o.push_str(HEAD);
    o.push_str("<h1>smtp-source report</h1>\n");
    legend(&mut o, reports);
    counts_table(&mut o, reports);
    o.push_str("<h2>Over time</h2>\n<div class=\"plots\">\n");
    over_time(&mut o, reports);
    o.push_str(
        "</div>\n<h2>Latency by percentile</h2>\n<div class=\"plots\">\n",
    );
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
<title>smtp-source report</title>
<style>
body { font-family: sans-serif; margin: 16px; color: #222; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 17px; margin: 18px 0 6px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 8px; }
.legend span { display: inline-block; margin-right: 16px; font-size: 14px; }
.swatch { display: inline-block; width: 14px; height: 14px;
  vertical-align: middle; margin-right: 4px; }
svg text { font-family: sans-serif; font-size: 11px; fill: #222; }
svg .title { font-size: 13px; font-weight: bold; }
</style>
</head>
<body>
";

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn legend(o: &mut String, reports: &[(String, Summary)]) {
    o.push_str("<p class=\"legend\">");
    for (i, (name, r)) in reports.iter().enumerate() {
        let _ = write!(
            o,
            "<span><span class=\"swatch\" style=\"background:{}\"></span>\
{} (start {})</span>",
            color(i),
            escape(name),
            iso8601(r.start)
        );
    }
    o.push_str("</p>\n");
}

fn counts_table(o: &mut String, reports: &[(String, Summary)]) {
    o.push_str("<h2>Counts</h2>\n<table>\n<tr><th></th>");
    for (i, (name, _)) in reports.iter().enumerate() {
        let _ = write!(
            o,
            "<th style=\"color:{}\">{}</th>",
            color(i),
            escape(name)
        );
    }
    o.push_str("</tr>\n");
    let txn = |r: &Summary, q: f64| {
        let h = &r.latency[Phase::Transaction as usize];
        if h.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", h.value_at_quantile(q) as f64 / 1000.0)
        }
    };
    type Row = (&'static str, fn(&Summary) -> String);
    let rows: [Row; 14] = [
        ("shard", |r| {
            r.shard
                .map_or("-".into(), |s| format!("{}/{}", s.index, s.count))
        }),
        ("elapsed s", |r| format!("{:.3}", r.elapsed.as_secs_f64())),
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
        ("completed", |r| {
            if r.completed { "yes" } else { "no" }.to_string()
        }),
        ("ended by", |r| {
            r.fatal.clone().unwrap_or_else(|| "-".into())
        }),
    ];
    for (label, f) in rows {
        let _ = write!(o, "<tr><td>{label}</td>");
        for (_, r) in reports {
            let _ = write!(o, "<td>{}</td>", escape(&f(r)));
        }
        o.push_str("</tr>\n");
    }
    for (label, q) in
        [("transaction p50 ms", 0.5), ("transaction p99 ms", 0.99)]
    {
        let _ = write!(o, "<tr><td>{label}</td>");
        for (_, r) in reports {
            let _ = write!(o, "<td>{}</td>", txn(r, q));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
}

/// Messages/s and p99 transaction latency, one point per interval, at
/// the interval's middle (seconds since that report's start).
fn over_time(o: &mut String, reports: &[(String, Summary)]) {
    let mut rate = Vec::new();
    let mut p99 = Vec::new();
    let mut end: f64 = 1.0;
    for (i, (_, r)) in reports.iter().enumerate() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for v in &r.intervals {
            let from = seconds_since(r.start, v.start);
            let len = v.length.as_secs_f64();
            end = end.max(from + len);
            if len > 0.0 {
                a.push((from + len / 2.0, v.accepted as f64 / len));
            }
            let h = decode_histogram(&v.histogram);
            if let Some(h) = h.filter(|h| !h.is_empty()) {
                b.push((
                    from + len / 2.0,
                    h.value_at_quantile(0.99) as f64 / 1000.0,
                ));
            }
        }
        rate.push(Series {
            color: color(i),
            points: a,
        });
        p99.push(Series {
            color: color(i),
            points: b,
        });
    }
    plot(o, "messages/s", "messages/s", &rate, XAxis::Seconds(end));
    plot(o, "transaction p99 (ms)", "ms", &p99, XAxis::Seconds(end));
}

fn seconds_since(start: SystemTime, t: SystemTime) -> f64 {
    t.duration_since(start).map_or(0.0, |d| d.as_secs_f64())
}

/// One phase's latency by percentile, if any report has samples of it.
fn percentile_plot(
    o: &mut String,
    reports: &[(String, Summary)],
    phase: Phase,
) {
    let hists: Vec<&Histogram<u64>> = reports
        .iter()
        .map(|(_, r)| &r.latency[phase as usize])
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
            points: percentile_points(h, nines),
        })
        .collect();
    let title = format!("{} latency (ms) by percentile", phase.key());
    plot(o, &title, "ms", &series, XAxis::Nines(nines));
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

/// An SVG line plot with axes, ticks, labels and a title.
fn plot(
    o: &mut String,
    title: &str,
    y_label: &str,
    series: &[Series],
    x: XAxis,
) {
    let (x_max, x_ticks) = match x {
        XAxis::Seconds(end) => {
            let step = nice_step(end / 5.0);
            let ticks = (0..=(end / step).ceil() as u32)
                .map(|i| (f64::from(i) * step, trim(f64::from(i) * step)))
                .collect::<Vec<_>>();
            (end.max(step), ticks)
        }
        XAxis::Nines(n) => (
            f64::from(n),
            (0..=n).map(|i| (f64::from(i), nines_label(i))).collect(),
        ),
    };
    let y_top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let y_step = nice_step(y_top.max(1e-3) / 5.0);
    let y_max = (y_top / y_step).ceil().max(1.0) * y_step;
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let sx = |v: f64| LEFT + v / x_max * pw;
    let sy = |v: f64| TOP + ph - v / y_max * ph;
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
aria-label=\"{}\">\n<text class=\"title\" x=\"{LEFT}\" y=\"18\">{}</text>\n\
<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" \
fill=\"{PLOT_FILL}\" stroke=\"#888\"/>\n",
        escape(title),
        escape(title)
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
    let x_label = match x {
        XAxis::Seconds(_) => "seconds since start",
        XAxis::Nines(_) => "percentile",
    };
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x_label}</text>\n\
<text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        LEFT + pw / 2.0,
        HEIGHT - 6.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
    for s in series {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x.min(x_max)), sy(y)))
            .collect();
        let _ = writeln!(
            o,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\" \
points=\"{}\"/>",
            s.color,
            pts.join(" ")
        );
    }
    o.push_str("</svg>\n");
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
}
