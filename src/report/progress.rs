//! progress: the --progress status line. Once a second, on the second
//! of the run, one line on stderr: elapsed time, messages accepted so
//! far, accepted per second over the last second, connections open,
//! errors so far (messages rejected or failed) and the p99 transaction
//! latency of the last second. A last line follows when the run ends
//! (also when a SIGINT ends it), before any report.
//!
//! On a terminal the line is rewritten in place; otherwise each line is
//! a line of its own, so a log shows one per second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::diag;
use crate::report::stats::{Reader, Stats};

/// How often the thread looks whether the run is over.
const POLL: Duration = Duration::from_millis(10);

/// What one line shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub elapsed: Duration,
    pub accepted: u64,
    /// Accepted per second since the previous line.
    pub rate: f64,
    pub connected: u64,
    pub errors: u64,
    /// p99 transaction latency since the previous line, if any finished.
    pub p99_ms: Option<f64>,
}

impl Status {
    /// `12.0s: 3456 accepted, 287.0 msg/s, 20 connected, 0 errors, p99
    /// 4.211 ms` (one line).
    pub fn text(&self) -> String {
        let p99 = match self.p99_ms {
            Some(ms) => format!("{ms:.3} ms"),
            None => "- ms".into(),
        };
        format!(
            "{:.1}s: {} accepted, {:.1} msg/s, {} connected, {} errors, \
p99 {p99}",
            self.elapsed.as_secs_f64(),
            self.accepted,
            self.rate,
            self.connected,
            self.errors
        )
    }
}

/// Prints the line every second until `done`, then the last one.
pub fn run(stats: &Stats, done: &AtomicBool, lines: diag::StatusLines) {
    let mut meter = Meter::new(stats);
    let mut tick = 1;
    loop {
        let at = stats.started + Duration::from_secs(tick);
        let last = wait_until(at, done);
        let status = meter.read();
        let when = match last {
            true => diag::StatusAt::End,
            false => diag::StatusAt::During,
        };
        diag::status(status.text().as_bytes(), lines, when);
        if last {
            return;
        }
        // A stall (a suspended process) skips the seconds it missed.
        let behind = stats.started.elapsed().as_secs();
        tick = (tick + 1).max(behind + 1);
    }
}

/// Sleeps until `at`; true if the run ended first.
fn wait_until(at: Instant, done: &AtomicBool) -> bool {
    loop {
        if done.load(Ordering::SeqCst) {
            return true;
        }
        let now = Instant::now();
        if now >= at {
            return false;
        }
        std::thread::sleep((at - now).min(POLL));
    }
}

/// A line that comes sooner than this after the previous one (the last
/// line, when the run ends just after a tick) also covers the second
/// before, so that its figures are not those of a few milliseconds.
const SHORT: Duration = Duration::from_millis(500);

/// Reads the run's counters, remembering the two previous readings.
struct Meter<'a> {
    stats: &'a Stats,
    /// (when, accepted) of the previous line and of the one before.
    prev: (Duration, u64),
    before: (Duration, u64),
    /// Transaction latency of the previous line's interval.
    prev_hist: Histogram<u64>,
}

impl<'a> Meter<'a> {
    fn new(stats: &'a Stats) -> Self {
        // Transactions before the first line belong to its second.
        let _ = stats.take_interval(Reader::Progress);
        Meter {
            stats,
            prev: (Duration::ZERO, 0),
            before: (Duration::ZERO, 0),
            prev_hist: crate::report::codec::new_histogram(),
        }
    }

    fn read(&mut self) -> Status {
        let elapsed = self.stats.started.elapsed();
        let (counts, _) = self.stats.snapshot();
        let (interval, _) = self.stats.take_interval(Reader::Progress);
        let short = elapsed.saturating_sub(self.prev.0) < SHORT;
        let (from, window) = if short {
            let mut both = self.prev_hist.clone();
            let _ = both.add(&interval);
            (self.before, both)
        } else {
            (self.prev, interval.clone())
        };
        let span = elapsed.saturating_sub(from.0).as_secs_f64();
        let rate = if span > 0.0 {
            counts.accepted.saturating_sub(from.1) as f64 / span
        } else {
            0.0
        };
        self.before = self.prev;
        self.prev = (elapsed, counts.accepted);
        self.prev_hist = interval;
        let p99 = window.value_at_quantile(0.99) as f64 / 1000.0;
        let p99_ms = (!window.is_empty()).then_some(p99);
        Status {
            elapsed,
            accepted: counts.accepted,
            rate,
            connected: self.stats.connections_open(),
            errors: counts.rejected + counts.failed,
            p99_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_text() {
        let mut s = Status {
            elapsed: Duration::from_millis(12_040),
            accepted: 3456,
            rate: 287.0,
            connected: 20,
            errors: 1,
            p99_ms: Some(4.2114),
        };
        assert_eq!(
            s.text(),
            "12.0s: 3456 accepted, 287.0 msg/s, 20 connected, 1 errors, \
p99 4.211 ms"
        );
        s.p99_ms = None;
        assert!(s.text().ends_with("p99 - ms"));
    }

    #[test]
    fn meter_rate_is_over_the_last_interval() {
        let stats = Stats::new(1);
        let mut meter = Meter::new(&stats);
        let mut r = stats.recorder(0);
        r.counts.accepted = 5;
        r.latency(
            crate::report::stats::Phase::Transaction,
            Duration::from_millis(3),
        );
        r.flush();
        let first = meter.read();
        assert_eq!(first.accepted, 5);
        assert!(first.p99_ms.is_some_and(|ms| (ms - 3.0).abs() < 0.01));
        // Soon after: the previous interval counts too.
        let soon = meter.read();
        assert_eq!(soon.accepted, 5);
        assert!(soon.rate > 0.0);
        assert!(soon.p99_ms.is_some());
    }

    #[test]
    fn a_full_interval_without_transactions_shows_none() {
        let stats = Stats::new(1);
        let mut meter = Meter::new(&stats);
        std::thread::sleep(SHORT + Duration::from_millis(20));
        let s = meter.read();
        assert_eq!((s.accepted, s.rate, s.p99_ms), (0, 0.0, None));
    }
}
