//! report: the end-of-run report (--report text or JSON, --report-file)
//! and the HdrHistogram interval log (--hlog).
//!
//! Pure rendering from a `Summary`; the JSON keys are stable and listed
//! in the man page (EXTENSIONS). Latencies are in milliseconds.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use crate::capacity::Capacity;
use crate::diag::censored;
use crate::plan::Arrival;
use crate::report::codec::encode_histogram;
use crate::report::run::RunInfo;
use crate::report::spool::{interval_json, Spooled};
use crate::report::stats::{Counts, Interval, ERROR_KEYS, PHASES};
use crate::scale::Shard;
use crate::threshold::Verdict;

/// The --rate schedule and how far behind it the run fell.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub rate: f64,
    pub arrival: Arrival,
    pub max_lag: Duration,
    pub final_lag: Duration,
    /// --stages: (seconds, rate reached at the end), in order.
    pub stages: Vec<(f64, f64)>,
}

/// Everything a report shows.
#[derive(Clone)]
pub struct Summary {
    /// Whole microseconds (so that a report read back from its JSON
    /// is the same report).
    pub start: SystemTime,
    /// Whole microseconds, as `start`.
    pub elapsed: Duration,
    pub counts: Counts,
    pub latency: Vec<Histogram<u64>>,
    pub schedule: Option<Schedule>,
    /// False when a fatal error or a signal ended the run; `fatal` or
    /// `interrupted` then says why.
    pub completed: bool,
    pub fatal: Option<String>,
    /// The signal that cut the run short (`SIGINT`, `SIGTERM`).
    pub interrupted: Option<String>,
    /// A merged report: each shard a signal cut short (empty in the
    /// report of one run).
    pub interrupted_shards: Vec<ShardCut>,
    /// --shard, or None for a whole run (and a complete merge).
    pub shard: Option<Shard>,
    /// A run's intervals, one a second (what --hlog writes), oldest
    /// first, as they were written out (None for a report read back).
    pub spooled: Option<Spooled>,
    /// Intervals after the spooled ones: a report read back holds all
    /// of its own here, a run cut short the one under way.
    pub intervals: Vec<Interval>,
    /// --size-mix: each class's size, messages and bytes sent, in the
    /// order given (empty without a mix).
    pub size_classes: Vec<SizeClass>,
    /// What the run was (None in reports written before it existed).
    pub run: Option<RunInfo>,
    /// --threshold results, in the order given.
    pub thresholds: Vec<Verdict>,
    /// --find-capacity: the steps and the answer.
    pub capacity: Option<Capacity>,
}

/// A shard that a signal cut short, in a merged report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCut {
    /// K of --shard=K/N (1 for a report without a shard).
    pub shard: u32,
    pub signal: String,
}

/// One --size-mix class in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeClass {
    pub size: u64,
    pub messages: u64,
    pub bytes: u64,
}

const QUANTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)];

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Summary {
    /// Whether every threshold held and a capacity search found one:
    /// otherwise the exit status is `threshold::EXIT_FAILED`.
    pub fn thresholds_hold(&self) -> bool {
        self.thresholds.iter().all(|v| v.ok)
            && self.capacity.as_ref().is_none_or(|c| c.rate.is_some())
    }

    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.counts.accepted as f64 / secs
        } else {
            0.0
        }
    }

    /// The JSON form: one object, one line (in memory; see
    /// `write_json`).
    pub fn json(&self) -> String {
        let mut out = Vec::with_capacity(4096);
        let _ = self.write_json(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Writes the JSON form to `out`: all but the intervals made in
    /// memory, the intervals streamed from their spool, so that a run
    /// of any length needs no more memory for it than a short one.
    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(self.json_head().as_bytes())?;
        let mut first = true;
        if let Some(s) = self.spooled.as_ref().filter(|s| s.count() > 0) {
            s.write_to(out)?;
            first = false;
        }
        for v in &self.intervals {
            if !std::mem::take(&mut first) {
                out.write_all(b",")?;
            }
            out.write_all(interval_json(v).as_bytes())?;
        }
        out.write_all(b"]}\n")
    }

    /// The JSON form up to and with `"intervals":[`.
    fn json_head(&self) -> String {
        let c = &self.counts;
        let mut o = String::with_capacity(2048);
        let _ = write!(
            o,
            "{{\"version\":1,\"start\":\"{}\",\"elapsed_seconds\":{:.6},\
\"completed\":{},\"fatal\":{},\"interrupted\":{},\"messages\":{{\
\"attempted\":{},\"accepted\":{},\"rejected\":{},\"failed\":{},\"unknown\":{}}},\
\"recipients\":{{\"sent\":{},\"accepted\":{},\"rejected\":{},\"failed\":{},\
\"unknown\":{}}},\"bytes_sent\":{},\"connections\":{},\
\"messages_per_second\":{:.3},",
            iso8601(self.start),
            self.elapsed.as_secs_f64(),
            self.completed,
            self.fatal.as_deref().map_or("null".into(), json_string),
            self.interrupted.as_deref().map_or("null".into(), json_string),
            c.attempted,
            c.accepted,
            c.rejected,
            c.failed,
            c.unknown,
            c.rcpt_sent,
            c.rcpt_accepted,
            c.rcpt_rejected,
            c.rcpt_failed,
            c.rcpt_unknown,
            c.bytes_sent,
            c.connections,
            self.rate(),
        );
        self.json_tls(&mut o);
        self.json_codes(&mut o);
        o.push_str(",\"errors\":{");
        for (i, key) in ERROR_KEYS.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(o, "{sep}\"{key}\":{}", c.errors[i]);
        }
        let _ = write!(
            o,
            "}},\"esmtp\":{{\"params\":{},\"refusals\":{}}}",
            json_counts(&c.esmtp_params),
            json_counts(&c.esmtp_refusals)
        );
        o.push_str(",\"latency_ms\":{");
        for (i, (phase, h)) in PHASES.iter().zip(&self.latency).enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(o, "{sep}\"{}\":{}", phase.key(), json_hist(h));
        }
        o.push_str("},\"schedule\":");
        match &self.schedule {
            None => o.push_str("null"),
            Some(s) => {
                let _ = write!(
                    o,
                    "{{\"rate\":{},\"arrival\":\"{}\",\"max_lag_ms\":{:.3},\
\"final_lag_ms\":{:.3},\"stages\":[{}]}}",
                    s.rate,
                    arrival_name(s.arrival),
                    s.max_lag.as_secs_f64() * 1000.0,
                    s.final_lag.as_secs_f64() * 1000.0,
                    s.stages
                        .iter()
                        .map(|(d, r)| format!(
                            "{{\"seconds\":{d:.6},\"rate\":{r}}}"
                        ))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        self.json_thresholds(&mut o);
        self.json_capacity(&mut o);
        o.push_str(",\"size_classes\":[");
        for (i, c) in self.size_classes.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                o,
                "{sep}{{\"size\":{},\"messages\":{},\"bytes\":{}}}",
                c.size, c.messages, c.bytes
            );
        }
        o.push(']');
        self.json_raw(&mut o);
        o
    }

    /// `,"shard":..,"start_unix":..,"end_unix":..,"histograms":{..},
    /// "intervals":[`: what merging needs (version 1 additions; the
    /// intervals follow).
    fn json_raw(&self, o: &mut String) {
        o.push_str(",\"shard\":");
        match self.shard {
            None => o.push_str("null"),
            Some(s) => {
                let _ = write!(
                    o,
                    "{{\"index\":{},\"count\":{}}}",
                    s.index, s.count
                );
            }
        }
        o.push_str(",\"interrupted_shards\":[");
        for (i, cut) in self.interrupted_shards.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                o,
                "{sep}{{\"shard\":{},\"signal\":{}}}",
                cut.shard,
                json_string(&cut.signal)
            );
        }
        o.push(']');
        self.json_run(o);
        let _ = write!(
            o,
            ",\"start_unix\":{},\"end_unix\":{},\"histograms\":{{",
            unix_text(self.start),
            unix_text(self.start + self.elapsed)
        );
        for (i, (phase, h)) in PHASES.iter().zip(&self.latency).enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                o,
                "{sep}\"{}\":\"{}\"",
                phase.key(),
                encode_histogram(h)
            );
        }
        o.push_str("},\"intervals\":[");
    }

    /// `,"run":{...}`: what the run was (null when unknown).
    fn json_run(&self, o: &mut String) {
        o.push_str(",\"run\":");
        match &self.run {
            None => o.push_str("null"),
            Some(r) => {
                let _ = write!(
                    o,
                    "{{\"command_line\":{},\"target\":{},\"host\":{},\
\"version\":{},\"end\":\"{}\"}}",
                    json_string(&r.command_line),
                    json_string(&r.target),
                    json_string(&r.host),
                    json_string(&r.version),
                    iso8601(self.start + self.elapsed)
                );
            }
        }
    }

    /// The text report's head: what the run was, when, how long.
    fn text_run(&self, o: &mut String) {
        if let Some(r) = &self.run {
            let _ = writeln!(o, "command:      {}", censored(&r.command_line));
            let _ = writeln!(o, "target:       {}", censored(&r.target));
            let _ = writeln!(
                o,
                "host:         {} ({})",
                censored(&r.host),
                censored(&r.version)
            );
        }
        if let Some(s) = self.shard {
            let _ = writeln!(o, "shard:        {}/{}", s.index, s.count);
        }
        let _ = writeln!(o, "start:        {}", iso8601(self.start));
        if self.run.is_some() {
            let _ = writeln!(
                o,
                "end:          {}",
                iso8601(self.start + self.elapsed)
            );
        }
    }

    /// `,"thresholds":[{"expr":..,"value":..,"unit":..,"ok":..},...]`.
    fn json_thresholds(&self, o: &mut String) {
        o.push_str(",\"thresholds\":[");
        for (i, v) in self.thresholds.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                o,
                "{sep}{{\"expr\":{},\"value\":{},\"unit\":\"{}\",\"ok\":{}}}",
                json_string(&v.expr),
                json_number(v.value),
                v.unit.suffix(),
                v.ok
            );
        }
        o.push(']');
    }

    /// `,"capacity":null` or the search's steps and answer.
    fn json_capacity(&self, o: &mut String) {
        let Some(c) = &self.capacity else {
            o.push_str(",\"capacity\":null");
            return;
        };
        let _ = write!(
            o,
            ",\"capacity\":{{\"rate\":{},\"step_seconds\":{:.3},\
\"warmup_seconds\":{:.3},\"precision\":{},\"steps\":[",
            json_number(c.rate),
            c.step_seconds,
            c.warmup_seconds,
            c.precision
        );
        for (i, s) in c.steps.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                o,
                "{sep}{{\"target\":{:.3},\"achieved\":{:.3},\"p50_ms\":{},\
\"p99_ms\":{},\"errors\":{},\"ok\":{}}}",
                s.target,
                s.achieved,
                json_number(s.p50_ms),
                json_number(s.p99_ms),
                s.errors,
                s.ok
            );
        }
        o.push_str("]}");
    }

    /// The --threshold results, one line each (empty without any).
    pub fn thresholds_text(&self) -> String {
        let mut o = String::new();
        if self.thresholds.is_empty() {
            return o;
        }
        let _ = writeln!(o, "thresholds:");
        for v in &self.thresholds {
            let verdict = if v.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(
                o,
                "  {verdict}  {:<30} measured {}",
                censored(&v.expr),
                v.value_text()
            );
        }
        o
    }

    /// The capacity search's table and answer line (empty without a
    /// search).
    pub fn capacity_text(&self) -> String {
        let mut o = String::new();
        let Some(c) = &self.capacity else {
            return o;
        };
        let _ = writeln!(
            o,
            "capacity search: steps of {} s (the first {} s of each not \
measured), precision {}%",
            c.step_seconds,
            c.warmup_seconds,
            c.precision * 100.0
        );
        let _ = writeln!(
            o,
            "  {:>4} {:>10} {:>10} {:>9} {:>9} {:>7}  result",
            "step", "target/s", "achieved/s", "p50 ms", "p99 ms", "errors"
        );
        let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        for (i, s) in c.steps.iter().enumerate() {
            let _ = writeln!(
                o,
                "  {:>4} {:>10.1} {:>10.1} {:>9} {:>9} {:>7}  {}",
                i + 1,
                s.target,
                s.achieved,
                opt(s.p50_ms),
                opt(s.p99_ms),
                s.errors,
                if s.ok { "pass" } else { "FAIL" }
            );
        }
        match c.rate {
            Some(r) => {
                let _ = writeln!(o, "capacity: {r:.1} messages/s");
            }
            None => {
                let _ = writeln!(o, "capacity: none (the first step failed)");
            }
        }
        o
    }

    /// `"tls":{...},`: handshakes, full and resumed, versions, ciphers.
    fn json_tls(&self, o: &mut String) {
        let c = &self.counts;
        let _ = write!(
            o,
            "\"tls\":{{\"handshakes\":{},\"full\":{},\"resumed\":{},\
\"versions\":{},\"ciphers\":{}}},",
            c.tls_full + c.tls_resumed,
            c.tls_full,
            c.tls_resumed,
            json_counts(&c.tls_versions),
            json_counts(&c.tls_ciphers),
        );
    }

    fn json_codes(&self, o: &mut String) {
        o.push_str("\"reply_codes\":{");
        let mut last: Option<&str> = None;
        for (&(cmd, code), n) in &self.counts.codes {
            if last != Some(cmd) {
                if last.is_some() {
                    o.push_str("},");
                }
                let _ = write!(o, "\"{cmd}\":{{");
            } else {
                o.push(',');
            }
            let _ = write!(o, "\"{code}\":{n}");
            last = Some(cmd);
        }
        if last.is_some() {
            o.push('}');
        }
        o.push('}');
    }

    /// The text form.
    pub fn text(&self) -> String {
        let c = &self.counts;
        let mut o = String::with_capacity(2048);
        let _ = writeln!(o, "smtp-source report");
        self.text_run(&mut o);
        let _ =
            writeln!(o, "elapsed:      {:.3} s", self.elapsed.as_secs_f64());
        if let Some(f) = &self.fatal {
            // The server's words, often: never raw to a terminal.
            let _ = writeln!(o, "ended by:     {}", censored(f));
        }
        if let Some(signal) = &self.interrupted {
            let _ = writeln!(o, "ended by:     interrupted by {signal}");
        }
        if !self.interrupted_shards.is_empty() {
            let cuts: Vec<String> = self
                .interrupted_shards
                .iter()
                .map(|c| format!("shard {} by {}", c.shard, c.signal))
                .collect();
            let _ = writeln!(o, "interrupted:  {}", cuts.join(", "));
        }
        let _ = writeln!(
            o,
            "messages:     {} attempted, {} accepted, {} rejected, {} failed, \
{} unknown",
            c.attempted, c.accepted, c.rejected, c.failed, c.unknown
        );
        let _ = writeln!(
            o,
            "recipients:   {} sent, {} accepted, {} rejected, {} failed, \
{} unknown",
            c.rcpt_sent,
            c.rcpt_accepted,
            c.rcpt_rejected,
            c.rcpt_failed,
            c.rcpt_unknown
        );
        let _ = writeln!(o, "bytes sent:   {}", c.bytes_sent);
        let _ = writeln!(o, "connections:  {}", c.connections);
        let _ = writeln!(o, "rate:         {:.1} messages/s", self.rate());
        if let Some(s) = &self.schedule {
            let _ = writeln!(
                o,
                "schedule:     {} messages/s ({}), max lag {:.3} ms, \
final lag {:.3} ms",
                s.rate,
                arrival_name(s.arrival),
                s.max_lag.as_secs_f64() * 1000.0,
                s.final_lag.as_secs_f64() * 1000.0
            );
            if !s.stages.is_empty() {
                let items: Vec<String> = s
                    .stages
                    .iter()
                    .map(|(d, r)| format!("{d} s to {r}/s"))
                    .collect();
                let _ = writeln!(o, "stages:       {}", items.join(", "));
            }
        }
        let handshakes = c.tls_full + c.tls_resumed;
        if handshakes > 0 {
            let _ = writeln!(
                o,
                "tls:          {handshakes} handshakes ({} full, {} resumed); \
{}; {}",
                c.tls_full,
                c.tls_resumed,
                text_counts(&c.tls_versions),
                text_counts(&c.tls_ciphers)
            );
        }
        let _ = writeln!(
            o,
            "errors:       {} refused, {} reset, {} timeout, {} lost \
connection, {} tls, {} auth, {} unreachable, {} smtputf8",
            c.errors[0],
            c.errors[1],
            c.errors[2],
            c.errors[3],
            c.errors[4],
            c.errors[5],
            c.errors[6],
            c.errors[7]
        );
        if !c.esmtp_params.is_empty() || !c.esmtp_refusals.is_empty() {
            let _ = writeln!(
                o,
                "esmtp:        params {}; refusals {}",
                text_counts(&c.esmtp_params),
                text_counts(&c.esmtp_refusals)
            );
        }
        self.text_codes(&mut o);
        self.text_sizes(&mut o);
        self.text_latency(&mut o);
        o.push_str(&self.thresholds_text());
        o.push_str(&self.capacity_text());
        o
    }

    /// `size classes: 2048: 60 messages, 130000 bytes; ...` (with a mix).
    fn text_sizes(&self, o: &mut String) {
        if self.size_classes.is_empty() {
            return;
        }
        let items: Vec<String> = self
            .size_classes
            .iter()
            .map(|c| {
                format!(
                    "{}: {} messages, {} bytes",
                    c.size, c.messages, c.bytes
                )
            })
            .collect();
        let _ = writeln!(o, "size classes: {}", items.join("; "));
    }

    fn text_codes(&self, o: &mut String) {
        let _ = write!(o, "reply codes: ");
        if self.counts.codes.is_empty() {
            o.push_str(" none");
        }
        for (&(cmd, code), n) in &self.counts.codes {
            let _ = write!(o, " {} {code}={n}", censored(cmd));
        }
        o.push('\n');
    }

    fn text_latency(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "latency ms      {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "count", "min", "p50", "p90", "p99", "p99.9", "max"
        );
        for (phase, h) in PHASES.iter().zip(&self.latency) {
            if h.is_empty() {
                continue;
            }
            let _ = write!(o, "  {:<13} {:>9}", phase.key(), h.len());
            let _ = write!(o, " {:>9.3}", ms(h.min()));
            for (_, q) in QUANTILES {
                let _ = write!(o, " {:>9.3}", ms(h.value_at_quantile(q)));
            }
            let _ = writeln!(o, " {:>9.3}", ms(h.max()));
        }
    }
}

/// `{"name":count,...}`.
fn json_counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    let items: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_string(k)))
        .collect();
    format!("{{{}}}", items.join(","))
}

/// `name=count name=count`.
fn text_counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    let items: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}={v}", censored(k)))
        .collect();
    items.join(" ")
}

fn json_hist(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "{\"count\":0}".into();
    }
    let mut o = format!("{{\"count\":{},\"min\":{:.3}", h.len(), ms(h.min()));
    for (key, q) in QUANTILES {
        let _ = write!(o, ",\"{key}\":{:.3}", ms(h.value_at_quantile(q)));
    }
    let _ = write!(o, ",\"max\":{:.3}}}", ms(h.max()));
    o
}

/// A number, or `null`.
fn json_number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "null".into(),
    }
}

fn arrival_name(a: Arrival) -> &'static str {
    match a {
        Arrival::Uniform => "uniform",
        Arrival::Poisson => "poisson",
    }
}

/// A JSON string literal: controls and everything outside printable
/// ASCII escaped as `\uXXXX`, a character beyond U+FFFF as its UTF-16
/// surrogate pair (JSON has no longer escape).
pub fn json_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(o, "\\u{unit:04x}");
                }
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) without a date library.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix seconds with six decimals, exact to the microsecond (no
/// floating point on the way).
pub fn unix_text(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// Drops what is below a microsecond: reports keep whole microseconds.
pub fn whole_micros(d: Duration) -> Duration {
    Duration::from_micros(d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::codec::new_histogram;
    use crate::report::stats::Phase;

    #[test]
    fn iso_dates() {
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(iso8601(t(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(t(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(t(1_795_794_840)), "2026-11-27T15:54:00.000Z");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn json_strings_escape_beyond_the_bmp_as_surrogate_pairs() {
        assert_eq!(json_string("\u{e9}\u{7f}"), "\"\\u00e9\\u007f\"");
        assert_eq!(json_string("\u{fffd}"), "\"\\ufffd\"");
        assert_eq!(json_string("a\u{1f600}b"), "\"a\\ud83d\\ude00b\"");
        assert_eq!(json_string("\u{10ffff}"), "\"\\udbff\\udfff\"");
    }

    fn summary() -> Summary {
        let mut latency: Vec<_> =
            PHASES.iter().map(|_| new_histogram()).collect();
        for us in [1000, 2000, 3000] {
            latency[Phase::Mail as usize].record(us).unwrap();
        }
        let mut counts = Counts {
            attempted: 3,
            accepted: 3,
            ..Counts::default()
        };
        counts.codes.insert(("MAIL", 250), 3);
        counts.codes.insert(("RCPT", 550), 1);
        Summary {
            start: SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(2),
            counts,
            latency,
            schedule: None,
            completed: true,
            fatal: None,
            interrupted: None,
            interrupted_shards: Vec::new(),
            size_classes: Vec::new(),
            shard: None,
            spooled: None,
            intervals: Vec::new(),
            run: None,
            thresholds: Vec::new(),
            capacity: None,
        }
    }

    #[test]
    fn json_has_stable_keys() {
        let j = summary().json();
        assert!(j.starts_with("{\"version\":1,\"start\":\"1970-01-01T"));
        assert!(j.contains("\"messages\":{\"attempted\":3,\"accepted\":3"));
        assert!(j.contains(
            "\"reply_codes\":{\"MAIL\":{\"250\":3},\
\"RCPT\":{\"550\":1}}"
        ));
        assert!(
            j.contains(
                "\"mail\":{\"count\":3,\"min\":1.000,\
\"p50\":2.000,\"p90\":3.001,\"p99\":3.001,\"p99_9\":3.001,\"max\":3.001}"
            ),
            "{j}"
        );
        assert!(j.contains("\"connect\":{\"count\":0}"));
        assert!(j.contains("\"messages_per_second\":1.500"));
        assert!(j.contains(
            "\"schedule\":null,\"thresholds\":[],\"capacity\":null,\
\"size_classes\":[],\"shard\":null,"
        ));
        assert!(j.contains(
            "\"start_unix\":0.000000,\"end_unix\":2.000000,\"histograms\":{\"connect\":\"HIST"
        ));
        assert!(j.ends_with("\"intervals\":[]}\n"), "{j}");
    }

    /// Spooled intervals and the one under way come out as one array,
    /// in the exact form smtp-report reads back; the same bytes whether
    /// written whole or streamed.
    #[test]
    fn spooled_intervals_stream_into_the_json() {
        use crate::report::spool::IntervalSpool;
        use std::sync::Arc;
        let one = |i: u64| Interval {
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(i),
            length: Duration::from_millis(1000 - i),
            accepted: i,
            rejected: i % 2,
            errors: [0, i, 0, 0, 0, 0, 1, 0],
            histogram: encode_histogram(&new_histogram()),
            target: (i % 2 == 1).then_some(i as f64 * 10.5),
        };
        for spooled in [0, 1, 3] {
            for held in [0, 1] {
                let spool = Arc::new(IntervalSpool::new());
                let want: Vec<Interval> =
                    (0..spooled + held).map(one).collect();
                for v in &want[..spooled as usize] {
                    spool.push(v);
                }
                let mut s = summary();
                s.spooled = Some(spool.spooled());
                s.intervals = want[spooled as usize..].to_vec();
                let j = s.json();
                let mut streamed = Vec::new();
                s.write_json(&mut streamed).unwrap();
                assert_eq!(streamed, j.as_bytes());
                let back = crate::report::merge::parse(j.trim_end()).unwrap();
                assert_eq!(back.intervals, want, "{spooled}+{held}: {j}");
                assert!(j.ends_with("]}\n"));
            }
        }
    }

    #[test]
    fn esmtp_counts_in_json_and_text() {
        let mut s = summary();
        assert!(!s.text().contains("esmtp:"), "nothing to say");
        assert!(s
            .json()
            .contains(",\"esmtp\":{\"params\":{},\"refusals\":{}},"));
        s.counts.esmtp_params.insert("SIZE".into(), 2);
        s.counts.esmtp_refusals.insert("mail_552".into(), 1);
        s.counts.errors[7] = 3;
        assert!(s.json().contains(
            "\"unreachable\":0,\"smtputf8\":3},\"esmtp\":{\"params\":\
{\"SIZE\":2},\"refusals\":{\"mail_552\":1}},"
        ));
        let text = s.text();
        assert!(text.contains("0 unreachable, 3 smtputf8\n"), "{text}");
        assert!(
            text.contains(
                "esmtp:        params SIZE=2; refusals mail_552=1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn size_classes_in_json_and_text() {
        let mut s = summary();
        s.size_classes = vec![
            SizeClass {
                size: 2048,
                messages: 2,
                bytes: 4300,
            },
            SizeClass {
                size: 10,
                messages: 0,
                bytes: 0,
            },
        ];
        assert!(s.json().contains(
            "\"size_classes\":[{\"size\":2048,\"messages\":2,\
\"bytes\":4300},{\"size\":10,\"messages\":0,\"bytes\":0}],\"shard\":"
        ));
        assert!(s.text().contains(
            "size classes: 2048: 2 messages, 4300 bytes; 10: 0 messages, \
0 bytes\n"
        ));
        assert!(!summary().text().contains("size classes"));
    }

    #[test]
    fn unix_times_are_exact() {
        let t =
            SystemTime::UNIX_EPOCH + Duration::new(1_796_464_800, 1_234_567);
        assert_eq!(unix_text(t), "1796464800.001234");
        assert_eq!(
            whole_micros(Duration::new(3, 999_999_999)),
            Duration::new(3, 999_999_000)
        );
    }

    #[test]
    fn thresholds_capacity_and_stages_in_text() {
        use crate::capacity::{Capacity, Step};
        use crate::threshold::{Unit, Verdict};
        let mut s = summary();
        assert!(s.thresholds_hold());
        s.schedule = Some(Schedule {
            rate: 0.0,
            arrival: Arrival::Uniform,
            max_lag: Duration::ZERO,
            final_lag: Duration::ZERO,
            stages: vec![(30.0, 1000.0), (60.0, 1000.0)],
        });
        s.thresholds = vec![Verdict {
            expr: "transaction.p99<250ms".into(),
            value: Some(312.4),
            unit: Unit::Ms,
            ok: false,
        }];
        s.capacity = Some(Capacity {
            rate: Some(387.5),
            step_seconds: 2.0,
            warmup_seconds: 0.4,
            precision: 0.05,
            steps: vec![Step {
                target: 400.0,
                achieved: 389.4,
                p50_ms: Some(84.735),
                p99_ms: None,
                errors: 0,
                ok: true,
            }],
        });
        let t = s.text();
        assert!(t.contains("\nstages:       30 s to 1000/s, 60 s to 1000/s\n"));
        assert!(t.contains(
            "thresholds:\n  FAIL  transaction.p99<250ms          measured \
312.4ms\n"
        ));
        assert!(t.ends_with(
            "     1      400.0      389.4    84.735         -       0  pass\n\
capacity: 387.5 messages/s\n"
        ), "{t}");
        assert!(!s.thresholds_hold());
        s.thresholds.clear();
        assert!(s.thresholds_hold());
        s.capacity.as_mut().unwrap().rate = None;
        assert!(!s.thresholds_hold());
        assert!(s
            .text()
            .ends_with("capacity: none (the first step failed)\n"));
    }

    #[test]
    fn text_lists_phases_with_samples() {
        let t = summary().text();
        assert!(t.contains("messages:     3 attempted, 3 accepted"));
        assert!(t.contains("  mail                  3"), "{t}");
        assert!(!t.contains("  connect "));
        assert!(t.contains("reply codes:  MAIL 250=3 RCPT 550=1"));
    }
}
