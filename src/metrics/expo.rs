//! expo: the Prometheus text exposition format (0.0.4) and OpenMetrics
//! 1.0, written from one view of the run's counts. No I/O and no
//! registry: the numbers are the report's own (`report::stats`), read
//! at the moment of the scrape, so the two cannot drift apart.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::report::stats::{Counts, ERROR_KEYS, PHASES};

/// Which format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format an Accept header asks for (OpenMetrics only when it
    /// names it, as Prometheus does; everything else gets text).
    pub fn from_accept(accept: Option<&[u8]>) -> Format {
        let asks = accept.is_some_and(|a| {
            a.windows(OPENMETRICS.len())
                .any(|w| w.eq_ignore_ascii_case(OPENMETRICS))
        });
        match asks {
            true => Format::OpenMetrics,
            false => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }
    }
}

const OPENMETRICS: &[u8] = b"application/openmetrics-text";

/// Upper bounds of the latency buckets, in microseconds: 1-2-5 steps
/// from 100 µs to 50 s, then 60 s (the report's histograms reach
/// further; what is above lands in +Inf).
pub const BUCKETS_MICROS: [u64; 19] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000,
    50_000_000, 60_000_000,
];

/// What one scrape shows.
pub struct View<'a> {
    pub counts: &'a Counts,
    /// One per `PHASES`, in microseconds.
    pub latency: &'a [Histogram<u64>],
    pub sessions_active: u64,
    /// --rate (this shard's part), messages per second.
    pub target_rate: Option<f64>,
    pub version: &'a str,
    pub target: &'a str,
    /// `K/N` with --shard: a label on every series.
    pub shard: Option<String>,
}

/// The whole exposition.
pub fn render(v: &View, format: Format) -> String {
    let mut w = Writer {
        out: String::with_capacity(16 << 10),
        format,
        shard: v.shard.as_deref().map(escape),
    };
    let c = v.counts;
    w.family(
        "messages",
        Kind::Counter,
        "Messages by result, as the report counts them.",
    );
    for (result, n) in [
        ("accepted", c.accepted),
        ("rejected", c.rejected),
        ("failed", c.failed),
        ("unknown", c.unknown),
    ] {
        w.sample("messages_total", &[("result", result)], n);
    }
    w.family(
        "recipients",
        Kind::Counter,
        "Recipients by result, as the report counts them.",
    );
    for (result, n) in [
        ("accepted", c.rcpt_accepted),
        ("rejected", c.rcpt_rejected),
        ("failed", c.rcpt_failed),
        ("unknown", c.rcpt_unknown),
    ] {
        w.sample("recipients_total", &[("result", result)], n);
    }
    w.family(
        "errors",
        Kind::Counter,
        "Failed connections by the report's error class.",
    );
    for (class, n) in ERROR_KEYS.iter().zip(c.errors) {
        w.sample("errors_total", &[("class", class)], n);
    }
    w.family("connections", Kind::Counter, "Connections opened.");
    w.sample("connections_total", &[], c.connections);
    w.family("tls_handshakes", Kind::Counter, "Finished TLS handshakes.");
    w.sample("tls_handshakes_total", &[("resumed", "false")], c.tls_full);
    w.sample(
        "tls_handshakes_total",
        &[("resumed", "true")],
        c.tls_resumed,
    );
    w.family("sessions_active", Kind::Gauge, "Connections open now.");
    w.sample("sessions_active", &[], v.sessions_active);
    if let Some(rate) = v.target_rate {
        w.family(
            "target_rate",
            Kind::Gauge,
            "The --rate schedule, messages per second.",
        );
        w.sample_f("target_rate", &[], rate);
    }
    w.family("info", Kind::Gauge, "The program's version and its target.");
    let target = escape(v.target);
    w.sample("info", &[("version", v.version), ("target", &target)], 1);
    w.family(
        "phase_duration_seconds",
        Kind::Histogram,
        "Latency by phase (the report's phases).",
    );
    for (phase, h) in PHASES.iter().zip(v.latency) {
        w.histogram(phase.key(), h);
    }
    if format == Format::OpenMetrics {
        w.out.push_str("# EOF\n");
    }
    w.out
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

struct Writer {
    out: String,
    format: Format,
    /// The escaped shard label value.
    shard: Option<String>,
}

const PREFIX: &str = "smtp_source_";

impl Writer {
    /// HELP and TYPE of a family. Text names a counter by its sample
    /// name (`_total`), OpenMetrics by the family without it.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let (kind, suffix) = match kind {
            Kind::Counter => ("counter", "_total"),
            Kind::Gauge => ("gauge", ""),
            Kind::Histogram => ("histogram", ""),
        };
        let suffix = match self.format {
            Format::Text => suffix,
            Format::OpenMetrics => "",
        };
        let o = &mut self.out;
        let _ = writeln!(o, "# HELP {PREFIX}{name}{suffix} {help}");
        let _ = writeln!(o, "# TYPE {PREFIX}{name}{suffix} {kind}");
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        let shard = self.shard.as_deref().map(|s| ("shard", s));
        let all: Vec<_> = labels.iter().copied().chain(shard).collect();
        if all.is_empty() {
            return;
        }
        self.out.push('{');
        for (i, (k, v)) in all.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{k}=\"{v}\"");
        }
        self.out.push('}');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], n: u64) {
        let _ = write!(self.out, "{PREFIX}{name}");
        self.labels(labels);
        let _ = writeln!(self.out, " {n}");
    }

    fn sample_f(&mut self, name: &str, labels: &[(&str, &str)], x: f64) {
        let _ = write!(self.out, "{PREFIX}{name}");
        self.labels(labels);
        let _ = writeln!(self.out, " {}", float(x));
    }

    /// One phase's buckets, sum and count.
    fn histogram(&mut self, phase: &str, h: &Histogram<u64>) {
        let (buckets, sum_micros) = buckets(h);
        let mut cumulative = 0;
        for (le, n) in BUCKETS_MICROS.iter().zip(buckets) {
            cumulative += n;
            let le = seconds(*le);
            let name = "phase_duration_seconds_bucket";
            self.sample(name, &[("phase", phase), ("le", &le)], cumulative);
        }
        let all = h.len();
        let name = "phase_duration_seconds_bucket";
        self.sample(name, &[("phase", phase), ("le", "+Inf")], all);
        let sum = sum_micros as f64 / 1e6;
        self.sample_f("phase_duration_seconds_sum", &[("phase", phase)], sum);
        self.sample("phase_duration_seconds_count", &[("phase", phase)], all);
    }
}

/// Counts per bucket (not cumulative; what is above the last bound is
/// left out) and the sum of the values, in microseconds. A value counts
/// in the bucket that holds its highest equivalent, the value the
/// report's percentiles give, so a percentile of the report falls in
/// the bucket that Prometheus's `histogram_quantile` interpolates in.
pub fn buckets(h: &Histogram<u64>) -> ([u64; BUCKETS_MICROS.len()], u128) {
    let mut out = [0; BUCKETS_MICROS.len()];
    let mut sum = 0u128;
    for v in h.iter_recorded() {
        let n = v.count_at_value();
        let value = v.value_iterated_to();
        sum += u128::from(h.median_equivalent(value)) * u128::from(n);
        if let Some(i) = BUCKETS_MICROS.iter().position(|&le| value <= le) {
            out[i] += n;
        }
    }
    (out, sum)
}

/// A bucket bound in seconds, as short as it goes (`0.0001`, `1`, `60`).
fn seconds(micros: u64) -> String {
    float(micros as f64 / 1e6)
}

/// A float as Prometheus reads it: integers without a fraction.
fn float(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// A label value: backslash, double quote and newline escaped.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::codec::new_histogram;

    fn view<'a>(
        counts: &'a Counts,
        latency: &'a [Histogram<u64>],
    ) -> View<'a> {
        View {
            counts,
            latency,
            sessions_active: 2,
            target_rate: Some(12.5),
            version: "0.1.0",
            target: "127.0.0.1:25",
            shard: Some("2/3".into()),
        }
    }

    fn hists() -> Vec<Histogram<u64>> {
        PHASES.iter().map(|_| new_histogram()).collect()
    }

    #[test]
    fn text_counters_carry_total_and_shard() {
        let counts = Counts {
            accepted: 7,
            rejected: 1,
            connections: 3,
            ..Counts::default()
        };
        let h = hists();
        let text = render(&view(&counts, &h), Format::Text);
        assert!(text.contains("# TYPE smtp_source_messages_total counter\n"));
        assert!(text.contains(
            "smtp_source_messages_total{result=\"accepted\",shard=\"2/3\"} 7\n"
        ));
        assert!(
            text.contains("smtp_source_connections_total{shard=\"2/3\"} 3\n")
        );
        assert!(text.contains("smtp_source_target_rate{shard=\"2/3\"} 12.5\n"));
        assert!(text.contains(
            "smtp_source_info{version=\"0.1.0\",target=\"127.0.0.1:25\",shard=\"2/3\"} 1\n"
        ));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_names_families_without_total_and_ends() {
        let counts = Counts::default();
        let h = hists();
        let text = render(&view(&counts, &h), Format::OpenMetrics);
        assert!(text.contains("# TYPE smtp_source_messages counter\n"));
        assert!(text.contains(
            "# TYPE smtp_source_phase_duration_seconds histogram\n"
        ));
        assert!(text.ends_with("\n# EOF\n"));
    }

    #[test]
    fn buckets_are_cumulative_and_hold_the_percentiles() {
        let mut h = hists();
        let t = PHASES.len() - 1;
        for us in [150, 150, 3_000, 70_000_000] {
            h[t].record(us).unwrap();
        }
        let counts = Counts::default();
        let mut v = view(&counts, &h);
        v.shard = None;
        let text = render(&v, Format::Text);
        let line = |le: &str| {
            format!(
                "smtp_source_phase_duration_seconds_bucket{{phase=\"transaction\",le=\"{le}\"}} "
            )
        };
        for (le, n) in [
            ("0.0001", 0),
            ("0.0002", 2),
            ("0.002", 2),
            ("0.005", 3),
            ("60", 3),
            ("+Inf", 4),
        ] {
            assert!(
                text.contains(&format!("{}{n}\n", line(le))),
                "{le}: {text}"
            );
        }
        assert!(text.contains(
            "smtp_source_phase_duration_seconds_count{phase=\"transaction\"} 4\n"
        ));
    }

    #[test]
    fn accept_header_picks_the_format() {
        let prom = b"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some(b"text/plain")), Format::Text);
        assert_eq!(Format::from_accept(None), Format::Text);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
