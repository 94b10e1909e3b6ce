//! merge: reading JSON reports back (`smtp-report`) and merging the
//! reports of one run's shards into one report of the same schema.
//!
//! A report read back is the `Summary` that wrote it: every number in
//! the JSON is exact (whole microseconds, integer counts, the raw
//! histograms), so `smtp-report text` prints what `--report=text` did,
//! and a merge adds histograms rather than averaging percentiles.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde_json::{Map, Value};

use crate::capacity::{Capacity, Step};
use crate::plan::Arrival;
use crate::report::codec::new_histogram;
use crate::report::run::RunInfo;
use crate::report::stats::{Counts, Interval, ERROR_KEYS, PHASES};
use crate::report::{
    decode_histogram, encode_histogram, Schedule, ShardCut, SizeClass, Summary,
};
use crate::scale::Shard;
use crate::threshold::{Unit, Verdict};

/// Reads one JSON report; Err says what is wrong with it.
pub fn parse(text: &str) -> Result<Summary, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or("not a JSON object")?;
    if o.get("version").and_then(Value::as_u64) != Some(1) {
        return Err("not a version 1 smtp-source report".into());
    }
    if !o.contains_key("histograms") {
        return Err("no \"histograms\" (written by an smtp-source without \
smtp-report support?)"
            .into());
    }
    Ok(Summary {
        start: unix_time(field(o, "start_unix")?)?,
        elapsed: micros_of(field(o, "elapsed_seconds")?, 1e6)?,
        counts: counts(o)?,
        latency: histograms(field(o, "histograms")?)?,
        schedule: schedule(field(o, "schedule")?)?,
        completed: field(o, "completed")?.as_bool().ok_or("bad completed")?,
        fatal: match field(o, "fatal")? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => return Err("bad fatal".into()),
        },
        // Both absent from reports written before they existed.
        interrupted: match o.get("interrupted") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            _ => return Err("bad interrupted".into()),
        },
        interrupted_shards: match o.get("interrupted_shards") {
            None => Vec::new(),
            Some(v) => shard_cuts(v)?,
        },
        shard: shard(field(o, "shard")?)?,
        spooled: None,
        intervals: intervals(field(o, "intervals")?)?,
        run: run(o.get("run"))?,
        size_classes: match o.get("size_classes") {
            None => Vec::new(),
            Some(v) => size_classes(v)?,
        },
        thresholds: thresholds(o)?,
        capacity: capacity(o)?,
    })
}

/// `"interrupted_shards":[{"shard":K,"signal":"SIGTERM"},...]`.
fn shard_cuts(v: &Value) -> Result<Vec<ShardCut>, String> {
    let bad = || "bad interrupted_shards".to_string();
    let items = v.as_array().ok_or_else(bad)?;
    items
        .iter()
        .map(|c| {
            let c = c.as_object().ok_or_else(bad)?;
            let shard = uint(c, "shard")?;
            let signal = c.get("signal").and_then(Value::as_str);
            Ok(ShardCut {
                shard: u32::try_from(shard).map_err(|_| bad())?,
                signal: signal.ok_or_else(bad)?.to_string(),
            })
        })
        .collect()
}

/// The shards `r` says were cut short: those a merged report lists, or
/// the report's own run (a report without a shard is shard 1).
fn cuts_of(r: &Summary) -> Vec<ShardCut> {
    if !r.interrupted_shards.is_empty() {
        return r.interrupted_shards.clone();
    }
    r.interrupted
        .iter()
        .map(|signal| ShardCut {
            shard: r.shard.map_or(1, |s| s.index),
            signal: signal.clone(),
        })
        .collect()
}

/// `"size_classes":[{"size":..,"messages":..,"bytes":..},...]`.
fn size_classes(v: &Value) -> Result<Vec<SizeClass>, String> {
    let items = v.as_array().ok_or("\"size_classes\" is not a list")?;
    items
        .iter()
        .map(|c| {
            let c = c.as_object().ok_or("bad size class")?;
            Ok(SizeClass {
                size: uint(c, "size")?,
                messages: uint(c, "messages")?,
                bytes: uint(c, "bytes")?,
            })
        })
        .collect()
}

/// Adds `from`'s size classes into `into`, class by class (by size; a
/// class only one shard saw is kept).
fn add_size_classes(into: &mut Vec<SizeClass>, from: &[SizeClass]) {
    for c in from {
        match into.iter_mut().find(|x| x.size == c.size) {
            Some(x) => {
                x.messages += c.messages;
                x.bytes += c.bytes;
            }
            None => into.push(*c),
        }
    }
}

fn field<'a>(
    o: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Value, String> {
    o.get(key).ok_or_else(|| format!("no \"{key}\""))
}

fn uint(o: &Map<String, Value>, key: &str) -> Result<u64, String> {
    field(o, key)?
        .as_u64()
        .ok_or_else(|| format!("\"{key}\" is not a count"))
}

/// A count added after the first reports: missing reads as 0.
fn uint_or_0(o: &Map<String, Value>, key: &str) -> Result<u64, String> {
    match o.get(key) {
        None => Ok(0),
        Some(_) => uint(o, key),
    }
}

fn object<'a>(
    o: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Map<String, Value>, String> {
    field(o, key)?
        .as_object()
        .ok_or_else(|| format!("\"{key}\" is not an object"))
}

/// A number of seconds (or milliseconds, `scale` 1e3) as a whole number
/// of microseconds: what the report wrote, exactly.
fn micros_of(v: &Value, scale: f64) -> Result<Duration, String> {
    let x = v.as_f64().filter(|x| *x >= 0.0).ok_or("bad time")?;
    Ok(Duration::from_micros((x * scale).round() as u64))
}

fn unix_time(v: &Value) -> Result<SystemTime, String> {
    Ok(SystemTime::UNIX_EPOCH + micros_of(v, 1e6)?)
}

fn counts(o: &Map<String, Value>) -> Result<Counts, String> {
    let m = object(o, "messages")?;
    let r = object(o, "recipients")?;
    let e = object(o, "errors")?;
    let t = object(o, "tls")?;
    let mut c = Counts {
        attempted: uint(m, "attempted")?,
        accepted: uint(m, "accepted")?,
        rejected: uint(m, "rejected")?,
        failed: uint(m, "failed")?,
        unknown: uint_or_0(m, "unknown")?,
        rcpt_sent: uint(r, "sent")?,
        rcpt_accepted: uint(r, "accepted")?,
        rcpt_rejected: uint_or_0(r, "rejected")?,
        rcpt_failed: uint_or_0(r, "failed")?,
        rcpt_unknown: uint_or_0(r, "unknown")?,
        bytes_sent: uint(o, "bytes_sent")?,
        connections: uint(o, "connections")?,
        tls_full: uint(t, "full")?,
        tls_resumed: uint(t, "resumed")?,
        tls_versions: named_counts(object(t, "versions")?)?,
        tls_ciphers: named_counts(object(t, "ciphers")?)?,
        ..Counts::default()
    };
    for (i, key) in ERROR_KEYS.iter().enumerate() {
        c.errors[i] = uint_or_0(e, key)?;
    }
    // Reports from before the ESMTP parameters have no "esmtp": none.
    if let Some(x) = o.get("esmtp") {
        let x = x.as_object().ok_or("\"esmtp\" is not an object")?;
        c.esmtp_params = named_counts(object(x, "params")?)?;
        c.esmtp_refusals = named_counts(object(x, "refusals")?)?;
    }
    for (cmd, per) in object(o, "reply_codes")? {
        let per = per.as_object().ok_or("bad reply_codes")?;
        for (code, n) in per {
            let code: u16 = code.parse().map_err(|_| "bad reply code")?;
            let n = n.as_u64().ok_or("bad reply code count")?;
            c.codes.insert((command_name(cmd), code), n);
        }
    }
    Ok(c)
}

fn named_counts(
    m: &Map<String, Value>,
) -> Result<BTreeMap<String, u64>, String> {
    m.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_u64().ok_or("bad count")?)))
        .collect()
}

/// The report's command labels are static strings; names read back are
/// those, or (from some other writer) kept for the life of the process,
/// which is one short command.
fn command_name(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "banner",
        "HELO",
        "EHLO",
        "LHLO",
        "STARTTLS",
        "XCLIENT",
        "AUTH",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "end_of_data",
        "RSET",
        "QUIT",
        "PROXY",
    ];
    match KNOWN.iter().find(|k| **k == name) {
        Some(k) => k,
        None => Box::leak(name.to_string().into_boxed_str()),
    }
}

fn histograms(v: &Value) -> Result<Vec<Histogram<u64>>, String> {
    let o = v.as_object().ok_or("bad histograms")?;
    PHASES
        .iter()
        .map(|p| match o.get(p.key()) {
            None => Ok(new_histogram()),
            Some(b64) => b64
                .as_str()
                .and_then(decode_histogram)
                .ok_or_else(|| format!("bad histogram for {}", p.key())),
        })
        .collect()
}

fn schedule(v: &Value) -> Result<Option<Schedule>, String> {
    let Some(o) = v.as_object() else {
        return Ok(None);
    };
    let arrival = match field(o, "arrival")?.as_str() {
        Some("uniform") => Arrival::Uniform,
        Some("poisson") => Arrival::Poisson,
        _ => return Err("bad schedule arrival".into()),
    };
    Ok(Some(Schedule {
        rate: field(o, "rate")?.as_f64().ok_or("bad schedule rate")?,
        arrival,
        max_lag: micros_of(field(o, "max_lag_ms")?, 1e3)?,
        final_lag: micros_of(field(o, "final_lag_ms")?, 1e3)?,
        stages: match o.get("stages") {
            None => Vec::new(),
            Some(v) => stages(v)?,
        },
    }))
}

/// `"stages":[{"seconds":S,"rate":R},...]`.
fn stages(v: &Value) -> Result<Vec<(f64, f64)>, String> {
    let bad = || "bad stages".to_string();
    let items = v.as_array().ok_or_else(bad)?;
    items
        .iter()
        .map(|s| {
            let s = s.as_object().ok_or_else(bad)?;
            let n = |k| field(s, k)?.as_f64().ok_or_else(bad);
            Ok((n("seconds")?, n("rate")?))
        })
        .collect()
}

/// A number or null.
fn number_or_null(v: &Value) -> Result<Option<f64>, String> {
    match v {
        Value::Null => Ok(None),
        v => v.as_f64().map(Some).ok_or_else(|| "bad number".into()),
    }
}

/// `"thresholds":[{"expr":..,"value":..,"unit":..,"ok":..}]` (absent from
/// reports written before thresholds were).
fn thresholds(o: &Map<String, Value>) -> Result<Vec<Verdict>, String> {
    let Some(v) = o.get("thresholds") else {
        return Ok(Vec::new());
    };
    let bad = || "bad thresholds".to_string();
    let items = v.as_array().ok_or_else(bad)?;
    items
        .iter()
        .map(|t| {
            let t = t.as_object().ok_or_else(bad)?;
            let expr = field(t, "expr")?.as_str().ok_or_else(bad)?;
            let unit = match field(t, "unit")?.as_str() {
                Some("ms") => Unit::Ms,
                Some("/s") => Unit::PerSecond,
                Some("%") => Unit::Percent,
                Some("") => Unit::Count,
                _ => return Err(bad()),
            };
            Ok(Verdict {
                expr: expr.to_string(),
                value: number_or_null(field(t, "value")?)?,
                unit,
                ok: field(t, "ok")?.as_bool().ok_or_else(bad)?,
            })
        })
        .collect()
}

/// `"capacity":null` or `{"rate":..,"steps":[..],..}`.
fn capacity(o: &Map<String, Value>) -> Result<Option<Capacity>, String> {
    let Some(c) = o.get("capacity").and_then(Value::as_object) else {
        return Ok(None);
    };
    let bad = || "bad capacity".to_string();
    let n = |o: &Map<String, Value>, k| field(o, k)?.as_f64().ok_or_else(bad);
    let steps = field(c, "steps")?.as_array().ok_or_else(bad)?;
    let steps = steps
        .iter()
        .map(|s| {
            let s = s.as_object().ok_or_else(bad)?;
            Ok(Step {
                target: n(s, "target")?,
                achieved: n(s, "achieved")?,
                p50_ms: number_or_null(field(s, "p50_ms")?)?,
                p99_ms: number_or_null(field(s, "p99_ms")?)?,
                errors: uint(s, "errors")?,
                ok: field(s, "ok")?.as_bool().ok_or_else(bad)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Some(Capacity {
        rate: number_or_null(field(c, "rate")?)?,
        step_seconds: n(c, "step_seconds")?,
        warmup_seconds: n(c, "warmup_seconds")?,
        precision: n(c, "precision")?,
        steps,
    }))
}

fn shard(v: &Value) -> Result<Option<Shard>, String> {
    let Some(o) = v.as_object() else {
        return Ok(None);
    };
    let n = |k| -> Result<u32, String> {
        let x = uint(o, k)?;
        u32::try_from(x).map_err(|_| "bad shard".to_string())
    };
    let (index, count) = (n("index")?, n("count")?);
    if index == 0 || index > count {
        return Err(format!("bad shard {index}/{count}"));
    }
    Ok(Some(Shard { index, count }))
}

/// The `run` object (null or absent in older reports).
fn run(v: Option<&Value>) -> Result<Option<RunInfo>, String> {
    let o = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v.as_object().ok_or("bad run")?,
    };
    let text = |k: &str| -> Result<String, String> {
        let v = field(o, k)?.as_str().ok_or(format!("bad run {k}"))?;
        Ok(v.to_string())
    };
    Ok(Some(RunInfo {
        command_line: text("command_line")?,
        target: text("target")?,
        host: text("host")?,
        version: text("version")?,
    }))
}

fn intervals(v: &Value) -> Result<Vec<Interval>, String> {
    let all = v.as_array().ok_or("bad intervals")?;
    all.iter()
        .map(|i| {
            let o = i.as_object().ok_or("bad interval")?;
            let histogram = field(o, "histogram")?
                .as_str()
                .ok_or("bad interval histogram")?;
            Ok(Interval {
                start: unix_time(field(o, "start_unix")?)?,
                length: micros_of(field(o, "seconds")?, 1e6)?,
                accepted: uint(o, "accepted")?,
                rejected: match o.get("rejected") {
                    None => 0,
                    Some(_) => uint(o, "rejected")?,
                },
                errors: interval_errors(o.get("errors"))?,
                histogram: histogram.to_string(),
                // Absent from reports written before targets were.
                target: match o.get("target_rate") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_f64().ok_or("bad target_rate")?),
                },
            })
        })
        .collect()
}

/// An interval's `errors` object (only the classes that occurred; none
/// in reports written before it existed).
fn interval_errors(
    v: Option<&Value>,
) -> Result<[u64; crate::report::stats::ERROR_CLASSES], String> {
    let mut errors = [0; crate::report::stats::ERROR_CLASSES];
    let Some(v) = v else {
        return Ok(errors);
    };
    let o = v.as_object().ok_or("bad interval errors")?;
    for (key, n) in ERROR_KEYS.iter().zip(errors.iter_mut()) {
        if o.contains_key(*key) {
            *n = uint(o, key)?;
        }
    }
    Ok(errors)
}

/// Merges the reports of one run's shards (`names` for the messages).
/// Refuses reports of different runs: shards of different N, or one
/// shard twice. A report without a shard counts as shard 1 of 1.
/// Returns the merged report and warnings (shards missing).
pub fn merge(
    reports: &[(String, Summary)],
) -> Result<(Summary, Vec<String>), String> {
    let first = reports.first().ok_or("nothing to merge")?;
    let whole = |r: &Summary| r.shard.unwrap_or(Shard::WHOLE);
    let n = whole(&first.1).count;
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for (name, r) in reports {
        let s = whole(r);
        if s.count != n {
            return Err(format!(
                "{name} is shard {}/{} but {} is shard {}/{}: not one run",
                s.index,
                s.count,
                first.0,
                whole(&first.1).index,
                n
            ));
        }
        if let Some(other) = seen.insert(s.index, name) {
            return Err(format!(
                "{other} and {name} are both shard {}/{n}",
                s.index
            ));
        }
    }
    let mut warnings = Vec::new();
    if seen.len() < n as usize {
        let missing: Vec<String> = (1..=n)
            .filter(|k| !seen.contains_key(k))
            .map(|k| k.to_string())
            .collect();
        warnings.push(format!(
            "{} of {n} shards; missing: {}",
            seen.len(),
            missing.join(", ")
        ));
    }
    Ok((merge_all(reports.iter().map(|(_, r)| r)), warnings))
}

/// Adds up reports already known to belong together.
fn merge_all<'a>(mut all: impl Iterator<Item = &'a Summary>) -> Summary {
    let Some(first) = all.next() else {
        unreachable!("merge checks for at least one report")
    };
    let mut out = first.clone();
    let mut cuts = cuts_of(first);
    let mut end = first.start + first.elapsed;
    let mut merged = 1;
    for r in all {
        merged += 1;
        out.start = out.start.min(r.start);
        end = end.max(r.start + r.elapsed);
        out.counts.add(&r.counts);
        for (into, from) in out.latency.iter_mut().zip(&r.latency) {
            let _ = into.add(from);
        }
        out.schedule = add_schedules(out.schedule.take(), r.schedule.as_ref());
        out.completed &= r.completed;
        out.fatal = out.fatal.take().or_else(|| r.fatal.clone());
        out.interrupted =
            out.interrupted.take().or_else(|| r.interrupted.clone());
        cuts.extend(cuts_of(r));
        out.run = merge_runs(out.run.take(), r.run.as_ref());
        out.intervals.extend(r.intervals.iter().cloned());
        add_size_classes(&mut out.size_classes, &r.size_classes);
    }
    out.elapsed = end.duration_since(out.start).unwrap_or_default();
    // Several shards make the whole run (or as much of it as there is);
    // one report merged alone stays what it was.
    if merged > 1 {
        rejudge(&mut out);
        out.shard = None;
        cuts.sort_by_key(|c| c.shard);
        out.interrupted_shards = cuts;
    }
    out.intervals = merge_intervals(out.start, &out.intervals);
    out
}

/// The first shard's command line and target; every host that ran one.
fn merge_runs(a: Option<RunInfo>, b: Option<&RunInfo>) -> Option<RunInfo> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            if !a.host.split(", ").any(|h| h == b.host) {
                a.host = format!("{}, {}", a.host, b.host);
            }
            Some(a)
        }
        (a, b) => a.or_else(|| b.cloned()),
    }
}

/// Shards' rates add up to the run's (to a millionth, so that 3 × 100/3
/// is 100 again); the worst lag wins.
fn add_schedules(
    a: Option<Schedule>,
    b: Option<&Schedule>,
) -> Option<Schedule> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Schedule {
            rate: ((a.rate + b.rate) * 1e6).round() / 1e6,
            arrival: a.arrival,
            max_lag: a.max_lag.max(b.max_lag),
            final_lag: a.final_lag.max(b.final_lag),
            stages: add_stages(&a.stages, &b.stages),
        }),
        (a, b) => a.or_else(|| b.cloned()),
    }
}

/// Shards run the same stages, each at its part of the rates.
fn add_stages(a: &[(f64, f64)], b: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if a.len() != b.len() {
        return a.to_vec();
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.0, ((x.1 + y.1) * 1e6).round() / 1e6))
        .collect()
}

/// Judges the shards' thresholds again on the merged counts and
/// histograms: exact, as the shards' own verdicts were.
fn rejudge(out: &mut Summary) {
    let measured = crate::threshold::Measured {
        counts: &out.counts,
        latency: &out.latency,
        seconds: out.elapsed.as_secs_f64(),
    };
    for v in &mut out.thresholds {
        if let Ok(t) = crate::threshold::parse(v.expr.as_bytes()) {
            *v = t.judge(&measured);
        }
    }
}

/// Intervals of the shards that cover the same second of the run (the
/// shards started together, so their seconds line up) become one.
fn merge_intervals(start: SystemTime, all: &[Interval]) -> Vec<Interval> {
    let mut by_second: BTreeMap<u64, (Interval, Histogram<u64>)> =
        BTreeMap::new();
    for i in all {
        let offset = i.start.duration_since(start).unwrap_or_default();
        let second = offset.as_secs_f64().round() as u64;
        let h = decode_histogram(&i.histogram).unwrap_or_else(new_histogram);
        match by_second.get_mut(&second) {
            None => {
                by_second.insert(second, (i.clone(), h));
            }
            Some((into, sum)) => {
                let end = (into.start + into.length).max(i.start + i.length);
                into.start = into.start.min(i.start);
                into.length =
                    end.duration_since(into.start).unwrap_or_default();
                into.accepted += i.accepted;
                into.rejected += i.rejected;
                for (a, b) in into.errors.iter_mut().zip(i.errors) {
                    *a += b;
                }
                // Each shard aims at its part of the run's rate.
                into.target = match (into.target, i.target) {
                    (Some(a), Some(b)) => Some(((a + b) * 1e3).round() / 1e3),
                    (a, b) => a.or(b),
                };
                let _ = sum.add(&h);
            }
        }
    }
    by_second
        .into_values()
        .map(|(mut i, h)| {
            i.histogram = encode_histogram(&h);
            i
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stats::Phase;
    use rand::{Rng, SeedableRng};

    fn report(
        shard: Option<(u32, u32)>,
        start_s: u64,
        samples: &[u64],
    ) -> Summary {
        let mut latency: Vec<_> =
            PHASES.iter().map(|_| new_histogram()).collect();
        let mut interval = new_histogram();
        for &us in samples {
            latency[Phase::Transaction as usize].record(us).unwrap();
            latency[Phase::Mail as usize].record(us / 3 + 1).unwrap();
            interval.record(us).unwrap();
        }
        let mut counts = Counts {
            attempted: samples.len() as u64,
            accepted: samples.len() as u64,
            ..Counts::default()
        };
        counts.codes.insert(("MAIL", 250), samples.len() as u64);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(start_s);
        Summary {
            start,
            elapsed: Duration::from_micros(1_500_000),
            counts,
            latency,
            schedule: None,
            completed: true,
            fatal: None,
            interrupted: None,
            interrupted_shards: Vec::new(),
            shard: shard.map(|(index, count)| Shard { index, count }),
            spooled: None,
            intervals: vec![Interval {
                start,
                length: Duration::from_secs(1),
                accepted: samples.len() as u64,
                rejected: 1,
                errors: [0, 0, 2, 0, 0, 0, 0, 0],
                histogram: encode_histogram(&interval),
                target: Some(10.0),
            }],
            size_classes: vec![SizeClass {
                size: 2048,
                messages: samples.len() as u64,
                bytes: 2100 * samples.len() as u64,
            }],
            run: None,
            thresholds: Vec::new(),
            capacity: None,
        }
    }

    /// Thresholds and a capacity search come back from the JSON as they
    /// were; a merge judges the thresholds again on the merged data.
    #[test]
    fn thresholds_and_capacity_read_back_and_rejudge() {
        let verdict = |expr: &str, value, ok| Verdict {
            expr: expr.into(),
            value,
            unit: Unit::Ms,
            ok,
        };
        let mut a = report(Some((1, 2)), 100, &[1000, 2000]);
        a.thresholds = vec![
            verdict("transaction.max<5ms", Some(2.001), true),
            verdict("connect.p99<1ms", None, false),
        ];
        a.capacity = Some(Capacity {
            rate: Some(387.5),
            step_seconds: 2.0,
            warmup_seconds: 0.4,
            precision: 0.05,
            steps: vec![Step {
                target: 400.0,
                achieved: 389.4,
                p50_ms: Some(84.735),
                p99_ms: None,
                errors: 3,
                ok: false,
            }],
        });
        let back = parse(a.json().trim_end()).unwrap();
        assert_eq!(back.thresholds, a.thresholds);
        assert_eq!(back.capacity, a.capacity);
        let mut b = report(Some((2, 2)), 100, &[9000]);
        b.thresholds = a.thresholds.clone();
        let (m, _) = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        assert!(!m.thresholds[0].ok, "the merged max is 9 ms");
        assert!((m.thresholds[0].value.unwrap() - 9.0).abs() < 0.01);
        assert_eq!(m.thresholds[1].value, None);
        assert_eq!(m.intervals[0].target, Some(20.0), "both shards' parts");
    }

    fn samples(seed: u64, n: usize) -> Vec<u64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                // Long-tailed, from microseconds to seconds.
                let x: f64 = rng.gen_range(0.0..1.0);
                (10.0 * (1.0 / (1.0 - x).max(1e-6)).powf(1.5)) as u64 + 1
            })
            .collect()
    }

    /// The merged histograms are the histogram of all samples: every
    /// percentile and the max are exact.
    #[test]
    fn merged_histograms_equal_one_built_from_all_samples() {
        let parts: Vec<Vec<u64>> =
            (0..4).map(|k| samples(k, 5000 + k as usize * 77)).collect();
        let reports: Vec<(String, Summary)> = parts
            .iter()
            .enumerate()
            .map(|(k, s)| {
                (format!("r{k}"), report(Some((k as u32 + 1, 4)), 100, s))
            })
            .collect();
        let (merged, warnings) = merge(&reports).unwrap();
        assert!(warnings.is_empty());
        let mut all = new_histogram();
        for s in &parts {
            for &us in s {
                all.record(us).unwrap();
            }
        }
        let got = &merged.latency[Phase::Transaction as usize];
        assert_eq!(got, &all);
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(
                got.value_at_quantile(q),
                all.value_at_quantile(q),
                "{q}"
            );
        }
        assert_eq!(merged.counts.accepted, all.len());
        assert_eq!(merged.counts.codes[&("MAIL", 250)], all.len());
        assert_eq!(merged.shard, None);
        assert_eq!(merged.intervals.len(), 1);
        assert_eq!(merged.intervals[0].accepted, all.len());
        let back = decode_histogram(&merged.intervals[0].histogram).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn elapsed_runs_from_the_first_start_to_the_last_end() {
        let a = report(Some((1, 2)), 100, &[5]);
        let b = report(Some((2, 2)), 102, &[7]);
        let (m, _) = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!(m.start, SystemTime::UNIX_EPOCH + Duration::from_secs(100));
        assert_eq!(m.elapsed, Duration::from_micros(3_500_000));
        assert_eq!(m.intervals.len(), 2, "seconds 0 and 2 of the run");
        assert!((m.rate() - 2.0 / 3.5).abs() < 1e-12);
    }

    #[test]
    fn reports_of_different_runs_are_refused() {
        let a = report(Some((1, 2)), 100, &[5]);
        let b = report(Some((1, 3)), 100, &[5]);
        let err = merge(&[("a".into(), a.clone()), ("b".into(), b)]).err();
        assert_eq!(
            err.unwrap(),
            "b is shard 1/3 but a is shard 1/2: not one run"
        );
        let err = merge(&[("a".into(), a.clone()), ("c".into(), a)]).err();
        assert_eq!(err.unwrap(), "a and c are both shard 1/2");
        let w = report(None, 100, &[5]);
        let err = merge(&[("w".into(), w.clone()), ("x".into(), w)]).err();
        assert_eq!(err.unwrap(), "w and x are both shard 1/1");
    }

    #[test]
    fn missing_shards_are_a_warning() {
        let a = report(Some((2, 3)), 100, &[5]);
        let (_, w) = merge(&[("a".into(), a)]).unwrap();
        assert_eq!(w, ["1 of 3 shards; missing: 1, 3"]);
    }

    /// A report read back is the report: its JSON and text are the same;
    /// merging one report changes nothing.
    #[test]
    fn reports_read_back_and_merged_alone_are_unchanged() {
        let mut r = report(Some((1, 1)), 1_796_464_800, &samples(9, 999));
        r.start += Duration::from_micros(123_456);
        r.elapsed = Duration::from_micros(61_499);
        r.fatal = Some("lost connection \u{e9}".into());
        r.completed = false;
        r.schedule = Some(Schedule {
            rate: 100.0 / 3.0,
            arrival: Arrival::Poisson,
            max_lag: Duration::from_micros(7_420),
            final_lag: Duration::from_micros(219),
            stages: vec![(10.0, 50.0), (5.5, 100.0 / 3.0)],
        });
        r.counts
            .handshake("TLSv1.3", "TLS13_AES_256_GCM_SHA384", false);
        r.counts.errors[3] = 2;
        let json = r.json();
        let back = parse(&json).unwrap();
        assert_eq!(back.json(), json);
        assert_eq!(back.text(), r.text());
        let (m, _) = merge(&[("only".into(), back)]).unwrap();
        assert_eq!(m.json(), json);
    }

    /// A merged report says which shards a signal cut short, and reads
    /// back as itself.
    #[test]
    fn merge_names_the_interrupted_shards() {
        let a = report(Some((1, 3)), 100, &[5]);
        let mut b = report(Some((2, 3)), 100, &[6]);
        let mut c = report(Some((3, 3)), 100, &[7]);
        for (r, signal) in [(&mut c, "SIGINT"), (&mut b, "SIGTERM")] {
            r.interrupted = Some(signal.into());
            r.completed = false;
        }
        let all = [("a".into(), a), ("b".into(), b), ("c".into(), c)];
        let (m, _) = merge(&all).unwrap();
        assert!(!m.completed);
        assert_eq!(m.interrupted.as_deref(), Some("SIGTERM"));
        let cut = |shard, signal: &str| ShardCut {
            shard,
            signal: signal.into(),
        };
        let want = [cut(2, "SIGTERM"), cut(3, "SIGINT")];
        assert_eq!(m.interrupted_shards, want);
        let json = m.json();
        assert!(json.contains(
            ",\"interrupted_shards\":[{\"shard\":2,\"signal\":\"SIGTERM\"},\
             {\"shard\":3,\"signal\":\"SIGINT\"}]"
        ));
        assert!(m.text().contains(
            "\nended by:     interrupted by SIGTERM\n\
             interrupted:  shard 2 by SIGTERM, shard 3 by SIGINT\n"
        ));
        assert_eq!(parse(&json).unwrap().json(), json);
        // Reports from before `interrupted` existed read as not cut short.
        let old = json
            .replace(",\"interrupted\":\"SIGTERM\"", "")
            .replace(",\"interrupted_shards\":[{\"shard\":2,\"signal\":\"SIGTERM\"},{\"shard\":3,\"signal\":\"SIGINT\"}]", "");
        let back = parse(&old).unwrap();
        assert_eq!(
            (back.interrupted, back.interrupted_shards),
            (None, vec![])
        );
    }

    /// The ESMTP parameters' counts and the smtputf8 class add up
    /// across shards; a report written before them reads them as none.
    #[test]
    fn esmtp_counts_merge_and_old_reports_read_as_none() {
        let mut a = report(Some((1, 3)), 100, &[5]);
        a.counts.esmtp_params.insert("SIZE".into(), 3);
        a.counts.esmtp_params.insert("BODY=8BITMIME".into(), 1);
        a.counts.esmtp_refusals.insert("mail_552".into(), 2);
        a.counts.errors[7] = 4;
        let mut b = report(Some((2, 3)), 100, &[5]);
        b.counts.esmtp_params.insert("SIZE".into(), 5);
        b.counts
            .esmtp_refusals
            .insert("smtputf8_not_offered".into(), 1);
        b.counts.errors[7] = 1;
        let c = report(Some((3, 3)), 100, &[5]);
        let old = c
            .json()
            .replace(",\"esmtp\":{\"params\":{},\"refusals\":{}}", "")
            .replace(",\"smtputf8\":0", "");
        assert!(!old.contains("esmtp") && !old.contains("smtputf8"));
        let (a, b, c) = (
            parse(&a.json()).unwrap(),
            parse(&b.json()).unwrap(),
            parse(&old).unwrap(),
        );
        let (m, _) =
            merge(&[("a".into(), a), ("b".into(), b), ("c".into(), c)])
                .unwrap();
        let p = &m.counts.esmtp_params;
        assert_eq!((p["SIZE"], p["BODY=8BITMIME"]), (8, 1));
        let r = &m.counts.esmtp_refusals;
        assert_eq!((r["mail_552"], r["smtputf8_not_offered"]), (2, 1));
        assert_eq!(m.counts.errors[7], 5);
        assert!(m.json().contains(
            "\"esmtp\":{\"params\":{\"BODY=8BITMIME\":1,\"SIZE\":8},\
             \"refusals\":{\"mail_552\":2,\"smtputf8_not_offered\":1}}"
        ));
    }

    /// The unknown counts and the recipients' classes add up across
    /// shards; a report written before they existed reads them as 0.
    #[test]
    fn unknown_counts_merge_and_old_reports_read_as_zero() {
        let mut a = report(Some((1, 2)), 100, &[5]);
        a.counts.unknown = 3;
        a.counts.rcpt_rejected = 2;
        a.counts.rcpt_failed = 1;
        a.counts.rcpt_unknown = 4;
        a.counts.errors[6] = 5;
        let mut b = report(Some((2, 2)), 100, &[5]);
        (b.counts.rcpt_sent, b.counts.rcpt_accepted) = (7, 7);
        let old = b
            .json()
            .replace(
                "\"sent\":7,\"accepted\":7,\"rejected\":0,\"failed\":0,\
                 \"unknown\":0}",
                "\"sent\":7,\"accepted\":7}",
            )
            .replace(",\"unknown\":0", "")
            .replace(",\"unreachable\":0", "");
        assert!(!old.contains("unknown") && !old.contains("unreachable"));
        let b = parse(&old).unwrap();
        let a = parse(&a.json()).unwrap();
        let (m, _) = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        let c = &m.counts;
        assert_eq!((c.unknown, c.rcpt_unknown), (3, 4));
        assert_eq!((c.rcpt_rejected, c.rcpt_failed, c.errors[6]), (2, 1, 5));
    }

    #[test]
    fn bad_reports_say_why() {
        assert_eq!(
            parse("{").err().unwrap().split(':').next(),
            Some("not JSON")
        );
        assert_eq!(parse("[]").err().unwrap(), "not a JSON object");
        assert_eq!(
            parse("{\"version\":2}").err().unwrap(),
            "not a version 1 smtp-source report"
        );
        let old = r#"{"version":1,"start":"x"}"#;
        assert!(parse(old).err().unwrap().starts_with("no \"histograms\""));
    }
}
