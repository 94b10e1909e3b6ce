//! threshold: --threshold expressions (`METRIC OP VALUE`), parsed once
//! and judged against measurements: the whole run's at the end, a
//! trailing window for an early abort, one step of a capacity search.
//! Pure: no clock, no I/O; a bad expression is an error that names the
//! bad part.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::report::stats::{Counts, ERROR_KEYS, PHASES};

/// The exit status of a run whose thresholds did not all hold (exit 1
/// stays "fatal").
pub const EXIT_FAILED: i32 = 99;

/// Longest expression accepted (a command-line word, not a program).
const MAX_LEN: usize = 200;

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A phase's latency statistic, in microseconds.
    Latency {
        phase: usize,
        stat: Stat,
    },
    /// Messages accepted per second.
    Rate,
    /// Connection errors: all classes (None) or one (`ERROR_KEYS`).
    Errors(Option<usize>),
    Rejected,
    Accepted,
    Failed,
}

/// A latency statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// A quantile in (0, 1].
    Quantile(f64),
    Mean,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Lt => value < limit,
            Op::Le => value <= limit,
            Op::Gt => value > limit,
            Op::Ge => value >= limit,
            Op::Eq => value == limit,
        }
    }
}

/// The unit a value is measured (and shown) in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds (latencies).
    Ms,
    /// Messages per second.
    PerSecond,
    /// A count.
    Count,
    /// A percentage of the messages attempted.
    Percent,
}

impl Unit {
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::PerSecond => "/s",
            Unit::Count => "",
            Unit::Percent => "%",
        }
    }
}

/// One --threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As given (reports show it).
    pub expr: String,
    pub metric: Metric,
    pub op: Op,
    /// The limit, in `unit`.
    pub limit: f64,
    pub unit: Unit,
    /// `,abort=DURATION`: judged once a second over this trailing
    /// window; the first breach ends the run.
    pub abort: Option<Duration>,
}

/// What a threshold is judged on: counts and latency histograms (in
/// `PHASES` order) over `seconds`.
pub struct Measured<'a> {
    pub counts: &'a Counts,
    pub latency: &'a [Histogram<u64>],
    pub seconds: f64,
}

/// One threshold's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub expr: String,
    /// In the threshold's unit; None when nothing was measured (a
    /// latency with no samples), which fails.
    pub value: Option<f64>,
    pub unit: Unit,
    pub ok: bool,
}

impl Verdict {
    /// `312.400ms`, `0.5%`, `none`.
    pub fn value_text(&self) -> String {
        match self.value {
            None => "none".into(),
            Some(v) => format!("{}{}", trim(v), self.unit.suffix()),
        }
    }
}

/// A number shown without needless decimals (three at most).
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Parses `METRIC OP VALUE[,abort=DURATION]`; the error says which part
/// is wrong.
pub fn parse(text: &[u8]) -> Result<Threshold, String> {
    if text.len() > MAX_LEN {
        return Err(format!("longer than {MAX_LEN} bytes"));
    }
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8")?;
    let (body, abort) = match text.split_once(',') {
        Some((body, opt)) => (body, Some(abort_window(opt)?)),
        None => (text, None),
    };
    let at = body
        .find(['<', '>', '=', '!'])
        .ok_or("no comparison (<, <=, >, >= or ==)")?;
    let (name, rest) = body.split_at(at);
    let (op, value) = op(rest)?;
    let name = name.trim();
    let metric = metric(name)?;
    let (limit, unit) = value_of(metric, value.trim())?;
    Ok(Threshold {
        expr: text.to_string(),
        metric,
        op,
        limit,
        unit,
        abort,
    })
}

fn abort_window(opt: &str) -> Result<Duration, String> {
    let window = match opt.trim() {
        "abort" => return Ok(Duration::from_secs(10)),
        o => o.strip_prefix("abort=").ok_or_else(|| {
            format!("unknown option '{o}' (only abort or abort=DURATION)")
        })?,
    };
    let secs = duration_secs(window)
        .filter(|s| (1.0..=86_400.0).contains(s))
        .ok_or_else(|| format!("bad abort window '{window}' (1s to 24h)"))?;
    Ok(Duration::from_secs_f64(secs))
}

/// `5`, `250ms`, `1.5s`, `2m`, `1h` as seconds (a bare number is
/// seconds).
pub fn duration_secs(text: &str) -> Option<f64> {
    let (num, scale) = split_unit(
        text,
        &[
            ("us", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ],
    )?;
    let n = number(num)?;
    Some(n * scale.unwrap_or(1.0)).filter(|s| s.is_finite() && *s >= 0.0)
}

fn op(rest: &str) -> Result<(Op, &str), String> {
    let table = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    for (text, op) in table {
        if let Some(value) = rest.strip_prefix(text) {
            if value.starts_with(['<', '>', '=']) {
                break;
            }
            return Ok((op, value));
        }
    }
    let shown: String = rest.chars().take(3).collect();
    Err(format!("bad comparison '{shown}' (<, <=, >, >= or ==)"))
}

fn metric(name: &str) -> Result<Metric, String> {
    match name {
        "" => return Err("no metric before the comparison".into()),
        "rate" => return Ok(Metric::Rate),
        "errors" => return Ok(Metric::Errors(None)),
        "rejected" => return Ok(Metric::Rejected),
        "accepted" => return Ok(Metric::Accepted),
        "failed" => return Ok(Metric::Failed),
        _ => {}
    }
    let (head, tail) = name.split_once('.').ok_or_else(|| {
        format!(
            "unknown metric '{name}' (PHASE.STAT, rate, errors[.CLASS], \
rejected, accepted or failed)"
        )
    })?;
    if head == "errors" {
        let class = ERROR_KEYS
            .iter()
            .position(|k| {
                *k == tail || (tail == "lost" && *k == "lost_connection")
            })
            .ok_or_else(|| format!("unknown error class '{tail}'"))?;
        return Ok(Metric::Errors(Some(class)));
    }
    let phase = PHASES
        .iter()
        .position(|p| p.key() == head)
        .ok_or_else(|| format!("unknown phase '{head}'"))?;
    Ok(Metric::Latency {
        phase,
        stat: stat(tail)?,
    })
}

fn stat(text: &str) -> Result<Stat, String> {
    match text {
        "mean" | "avg" => return Ok(Stat::Mean),
        "max" => return Ok(Stat::Max),
        "min" => return Ok(Stat::Min),
        _ => {}
    }
    let bad = || format!("unknown statistic '{text}' (pNN, mean, min, max)");
    let digits = text.strip_prefix('p').ok_or_else(bad)?.replace('_', ".");
    let q = number(&digits)
        .filter(|q| *q > 0.0 && *q <= 100.0)
        .ok_or_else(bad)?;
    // Rounded so that p99.9 is 0.999 exactly.
    Ok(Stat::Quantile((q * 1e6).round() / 1e8))
}

fn value_of(metric: Metric, text: &str) -> Result<(f64, Unit), String> {
    let bad = |what: &str| format!("bad value '{text}' ({what})");
    match metric {
        Metric::Latency { .. } => {
            let secs = duration_secs(text)
                .filter(|_| !text.ends_with(['m', 'h']))
                .ok_or_else(|| bad("a time such as 250ms, 1s or 500us"))?;
            // A bare number is milliseconds, as for k6.
            let bare = number(text).is_some();
            let ms = if bare { secs } else { secs * 1000.0 };
            Ok((ms, Unit::Ms))
        }
        Metric::Rate => number(text)
            .filter(|n| *n >= 0.0)
            .map(|n| (n, Unit::PerSecond))
            .ok_or_else(|| bad("messages per second")),
        _ => match text.strip_suffix('%') {
            Some(p) => number(p)
                .filter(|n| (0.0..=100.0).contains(n))
                .map(|n| (n, Unit::Percent))
                .ok_or_else(|| bad("a percentage from 0% to 100%")),
            None => number(text)
                .filter(|n| *n >= 0.0 && n.fract() == 0.0)
                .map(|n| (n, Unit::Count))
                .ok_or_else(|| bad("a whole count or a percentage")),
        },
    }
}

/// Splits a trailing unit off (longest first as listed).
fn split_unit<'a>(
    text: &'a str,
    units: &[(&str, f64)],
) -> Option<(&'a str, Option<f64>)> {
    for (unit, scale) in units {
        if let Some(num) = text.strip_suffix(unit) {
            return Some((num, Some(*scale)));
        }
    }
    Some((text, None))
}

/// A plain decimal number (no sign, exponent, inf or nan).
fn number(text: &str) -> Option<f64> {
    let ok = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().any(|b| b.is_ascii_digit());
    ok.then(|| text.parse().ok()).flatten()
}

impl Threshold {
    /// The measured value, in `unit`; None when nothing was measured.
    pub fn value(&self, m: &Measured) -> Option<f64> {
        let c = m.counts;
        let of_attempted = |n: u64| match (self.unit, c.attempted) {
            (Unit::Percent, 0) => Some(if n > 0 { 100.0 } else { 0.0 }),
            (Unit::Percent, a) => Some(n as f64 * 100.0 / a as f64),
            _ => Some(n as f64),
        };
        match self.metric {
            Metric::Latency { phase, stat } => {
                let h = m.latency.get(phase).filter(|h| !h.is_empty())?;
                let us = match stat {
                    Stat::Quantile(q) => h.value_at_quantile(q) as f64,
                    Stat::Mean => h.mean(),
                    Stat::Min => h.min() as f64,
                    Stat::Max => h.max() as f64,
                };
                Some(us / 1000.0)
            }
            Metric::Rate => Some(match m.seconds > 0.0 {
                true => c.accepted as f64 / m.seconds,
                false => 0.0,
            }),
            Metric::Errors(None) => of_attempted(c.errors.iter().sum()),
            Metric::Errors(Some(k)) => of_attempted(c.errors[k]),
            Metric::Rejected => of_attempted(c.rejected),
            Metric::Accepted => of_attempted(c.accepted),
            Metric::Failed => of_attempted(c.failed),
        }
    }

    /// Judges the threshold on `m`.
    pub fn judge(&self, m: &Measured) -> Verdict {
        let value = self.value(m);
        Verdict {
            expr: self.expr.clone(),
            value,
            unit: self.unit,
            ok: value.is_some_and(|v| self.op.holds(v, self.limit)),
        }
    }
}

/// Judges every threshold on `m`.
pub fn judge_all(all: &[Threshold], m: &Measured) -> Vec<Verdict> {
    all.iter().map(|t| t.judge(m)).collect()
}

/// Counts and histograms at one moment, to take windows between.
#[derive(Clone)]
pub struct Snapshot {
    /// Seconds since the run started.
    pub at: f64,
    pub counts: Counts,
    pub latency: Vec<Histogram<u64>>,
}

impl Snapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut latency = self.latency.clone();
        for (h, e) in latency.iter_mut().zip(&earlier.latency) {
            let _ = h.subtract(e);
        }
        let (a, b) = (&self.counts, &earlier.counts);
        let mut counts = Counts {
            attempted: a.attempted.saturating_sub(b.attempted),
            accepted: a.accepted.saturating_sub(b.accepted),
            rejected: a.rejected.saturating_sub(b.rejected),
            failed: a.failed.saturating_sub(b.failed),
            ..Counts::default()
        };
        for (i, e) in counts.errors.iter_mut().enumerate() {
            *e = a.errors[i].saturating_sub(b.errors[i]);
        }
        Snapshot {
            at: self.at - earlier.at,
            counts,
            latency,
        }
    }

    pub fn measured(&self) -> Measured<'_> {
        Measured {
            counts: &self.counts,
            latency: &self.latency,
            seconds: self.at,
        }
    }
}

/// Judges the thresholds that have an abort window, once a snapshot,
/// over their trailing windows.
pub struct Watch {
    all: Vec<Threshold>,
    /// Snapshots back to the longest window, oldest first.
    ring: std::collections::VecDeque<Snapshot>,
    longest: f64,
}

impl Watch {
    pub fn new(all: Vec<Threshold>) -> Self {
        let longest = all
            .iter()
            .filter_map(|t| t.abort)
            .map(|d| d.as_secs_f64())
            .fold(0.0, f64::max);
        Watch {
            all,
            ring: std::collections::VecDeque::new(),
            longest,
        }
    }

    /// Adds the latest snapshot; the first threshold breached over its
    /// full trailing window, judged on that window.
    pub fn push(&mut self, now: Snapshot) -> Option<Verdict> {
        // Intervals close about a second apart, not exactly.
        const SLACK: f64 = 0.1;
        let zero = Snapshot {
            at: 0.0,
            counts: Counts::default(),
            latency: now
                .latency
                .iter()
                .map(|h| {
                    let mut e = h.clone();
                    e.reset();
                    e
                })
                .collect(),
        };
        if self.ring.is_empty() {
            self.ring.push_back(zero);
        }
        while self.ring.len() > 1
            && self.ring[1].at <= now.at - self.longest - SLACK
        {
            self.ring.pop_front();
        }
        let mut found = None;
        for t in &self.all {
            let Some(window) = t.abort.map(|d| d.as_secs_f64()) else {
                continue;
            };
            let from = self
                .ring
                .iter()
                .rev()
                .find(|s| s.at <= now.at - window + SLACK);
            let Some(from) = from else { continue };
            let v = t.judge(&now.since(from).measured());
            if !v.ok {
                found = Some(v);
                break;
            }
        }
        self.ring.push_back(now);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::codec::new_histogram;

    fn ok(text: &str) -> Threshold {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn latency_thresholds_with_units() {
        let t = ok("transaction.p99<250ms");
        assert_eq!(
            t.metric,
            Metric::Latency {
                phase: 10,
                stat: Stat::Quantile(0.99)
            }
        );
        assert_eq!((t.op, t.limit, t.unit), (Op::Lt, 250.0, Unit::Ms));
        assert_eq!(ok("connect.p95<=20ms").op, Op::Le);
        assert_eq!(ok("banner.max<1s").limit, 1000.0);
        assert_eq!(ok("mail.mean < 500us").limit, 0.5);
        assert_eq!(ok("rcpt.p50<7").limit, 7.0);
        let t = ok("end_of_data.p99_9<2s");
        assert_eq!(
            t.metric,
            Metric::Latency {
                phase: 8,
                stat: Stat::Quantile(0.999)
            }
        );
        assert_eq!(ok("data.p99.9<2s").metric, ok("data.p99_9<2s").metric);
    }

    #[test]
    fn counts_rates_and_percentages() {
        let t = ok("rate>=900");
        assert_eq!((t.metric, t.op, t.limit), (Metric::Rate, Op::Ge, 900.0));
        let t = ok("errors<0.1%");
        assert_eq!(
            (t.metric, t.unit, t.limit),
            (Metric::Errors(None), Unit::Percent, 0.1)
        );
        assert_eq!(ok("errors.timeout==0").metric, Metric::Errors(Some(2)));
        assert_eq!(ok("errors.lost==0").metric, Metric::Errors(Some(3)));
        assert_eq!(ok("rejected<1%").metric, Metric::Rejected);
        let t = ok("accepted>=1000");
        assert_eq!((t.metric, t.unit), (Metric::Accepted, Unit::Count));
    }

    #[test]
    fn abort_windows() {
        assert_eq!(ok("transaction.p99<1s").abort, None);
        assert_eq!(
            ok("transaction.p99<1s,abort").abort,
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            ok("errors<5%,abort=30s").abort,
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            ok("errors<5%,abort=2m").abort,
            Some(Duration::from_secs(120))
        );
        assert!(err("errors<5%,abort=0s").contains("abort window '0s'"));
        assert!(err("errors<5%,stop").contains("unknown option 'stop'"));
    }

    /// Each bad expression names its bad part.
    #[test]
    fn bad_expressions_name_the_bad_part() {
        let cases = [
            ("transaction.p99", "no comparison"),
            ("<250ms", "no metric"),
            ("latency.p99<1s", "unknown phase 'latency'"),
            ("transaction.p101<1s", "unknown statistic 'p101'"),
            ("transaction.median<1s", "unknown statistic 'median'"),
            ("transaction.p99<fast", "bad value 'fast'"),
            ("transaction.p99<-1ms", "bad value '-1ms'"),
            ("transaction.p99<1h", "bad value '1h'"),
            ("transaction.p99=<1s", "bad comparison '=<1'"),
            ("transaction.p99<<1s", "bad comparison '<<1'"),
            ("transaction.p99!=1s", "bad comparison '!=1'"),
            ("errors.dns==0", "unknown error class 'dns'"),
            ("errors<101%", "bad value '101%'"),
            ("errors<0.5", "a whole count"),
            ("rate>=many", "bad value 'many'"),
            ("speed>1", "unknown metric 'speed'"),
            ("rate>=1e3", "bad value '1e3'"),
            ("rate>=inf", "bad value 'inf'"),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.contains(want), "{text}: {got}");
        }
        assert!(err(&"x".repeat(300)).contains("longer than"));
        assert_eq!(parse(b"rate>\xff").unwrap_err(), "not UTF-8");
    }

    fn measured(
        counts: Counts,
        samples: &[u64],
    ) -> (Counts, Vec<Histogram<u64>>) {
        let mut latency: Vec<_> =
            PHASES.iter().map(|_| new_histogram()).collect();
        for us in samples {
            latency[10].record(*us).unwrap();
        }
        (counts, latency)
    }

    #[test]
    fn judged_on_exact_histograms_and_counts() {
        let samples: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let counts = Counts {
            attempted: 1000,
            accepted: 990,
            rejected: 10,
            errors: [0, 0, 2, 0, 0, 0, 0, 0],
            ..Counts::default()
        };
        let (c, l) = measured(counts, &samples);
        let m = Measured {
            counts: &c,
            latency: &l,
            seconds: 10.0,
        };
        let v = |text: &str| ok(text).judge(&m);
        let p99 = v("transaction.p99<1s");
        assert!(p99.ok);
        assert!((p99.value.unwrap() - 990.0).abs() < 1.0, "{p99:?}");
        assert!(!v("transaction.p99<900ms").ok);
        assert!(v("transaction.max<=1001ms").ok);
        assert!(v("rate>=99").ok);
        assert!(!v("rate>=100").ok);
        assert_eq!(v("rejected<1%").value, Some(1.0));
        assert!(!v("rejected<1%").ok);
        assert!(v("rejected<=1%").ok);
        assert!(!v("errors.timeout==0").ok);
        assert!(v("errors.refused==0").ok);
        assert!(v("accepted>=990").ok);
        // Nothing measured: a latency threshold fails.
        let none = v("connect.p99<1s");
        assert_eq!((none.value, none.ok), (None, false));
        assert_eq!(none.value_text(), "none");
        assert_eq!(v("transaction.p99<1s").value_text(), "990.207ms");
    }

    fn at(secs: f64, accepted: u64, samples: &[u64]) -> Snapshot {
        let (counts, latency) = measured(
            Counts {
                attempted: accepted,
                accepted,
                ..Counts::default()
            },
            samples,
        );
        Snapshot {
            at: secs,
            counts,
            latency,
        }
    }

    /// A breach counts only over a full trailing window, and only what
    /// happened in that window.
    #[test]
    fn abort_watches_the_trailing_window() {
        let t = ok("transaction.max<5ms,abort=3s");
        let mut w = Watch::new(vec![ok("rate>=0"), t]);
        // A slow message in second 1, then fast ones.
        let mut samples = vec![9000];
        let mut accepted = 1;
        assert_eq!(
            w.push(at(1.0, accepted, &samples)),
            None,
            "window not full"
        );
        for s in 2..=4 {
            samples.push(1000);
            accepted += 1;
            let got = w.push(at(s as f64, accepted, &samples));
            if s < 3 {
                assert_eq!(got, None, "{s}");
            } else if s == 3 {
                let v = got.expect("seconds 0..3 hold the slow one");
                assert_eq!(v.expr, "transaction.max<5ms,abort=3s");
                assert!(!v.ok);
            } else {
                assert_eq!(got, None, "seconds 1..4 are fast");
            }
        }
        // Without an abort window nothing is ever judged early.
        let mut quiet = Watch::new(vec![ok("transaction.max<1us")]);
        for s in 1..20 {
            assert_eq!(quiet.push(at(s as f64, s, &[9000])), None);
        }
    }

    #[test]
    fn windows_subtract_exactly() {
        let (c0, l0) = measured(
            Counts {
                attempted: 5,
                accepted: 5,
                ..Counts::default()
            },
            &[1000; 5],
        );
        let (c1, l1) = measured(
            Counts {
                attempted: 15,
                accepted: 12,
                failed: 3,
                ..Counts::default()
            },
            &[[1000; 5], [9000; 5]].concat(),
        );
        let a = Snapshot {
            at: 1.0,
            counts: c0,
            latency: l0,
        };
        let b = Snapshot {
            at: 3.0,
            counts: c1,
            latency: l1,
        };
        let w = b.since(&a);
        assert_eq!(w.at, 2.0);
        assert_eq!((w.counts.accepted, w.counts.failed), (7, 3));
        assert_eq!(w.latency[10].len(), 5);
        assert!(ok("transaction.min>=8ms").judge(&w.measured()).ok);
        assert_eq!(ok("rate>0").value(&w.measured()), Some(3.5));
    }
}
