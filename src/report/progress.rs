//! progress: the --progress status line. Once a second, on the second
//! of the run, one line on stderr: elapsed time, messages accepted so
//! far, accepted per second over the last second (next to the target
//! rate of --rate, when there is one), connections open, errors so far
//! (messages rejected or failed) and the p99 transaction latency of the
//! last second. A last line follows when the run ends (also when a
//! SIGINT ends it), before any report.
//!
//! On a terminal the line is rewritten in place, so it must never wrap
//! (a wrapped line cannot be rewritten and scrolls a new one out every
//! second): it takes the longest of its forms that fits the terminal's
//! width, read again for every line so that a resize takes effect.
//! Otherwise each line is a line of its own, in the long form, so a log
//! shows one per second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::diag;
use crate::report::stats::{Reader, Stats};

/// How often the thread looks whether the run is over.
const POLL: Duration = Duration::from_millis(10);

/// The width assumed for a terminal that does not tell its own.
const DEFAULT_COLUMNS: usize = 80;

/// What one line shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub elapsed: Duration,
    pub accepted: u64,
    /// Accepted per second since the previous line.
    pub rate: f64,
    /// The rate asked for at this moment (--rate), if any.
    pub target: Option<f64>,
    pub connected: u64,
    pub errors: u64,
    /// p99 transaction latency since the previous line, if any finished.
    pub p99_ms: Option<f64>,
}

impl Status {
    /// `12.0s: 3456 accepted, 287.0/300 msg/s, 20 connected, 0 errors,
    /// p99 4.211 ms` (one line; `/300` only with a target).
    pub fn text(&self) -> String {
        let p99 = match self.p99_ms {
            Some(ms) => format!("{ms:.3} ms"),
            None => "- ms".into(),
        };
        format!(
            "{:.1}s: {} accepted, {:.1}{} msg/s, {} connected, {} errors, \
p99 {p99}",
            self.elapsed.as_secs_f64(),
            self.accepted,
            self.rate,
            self.target_text(),
            self.connected,
            self.errors
        )
    }

    /// The longest form that fits in `width` characters, cut to `width`
    /// when even the shortest does not.
    pub fn fitted(&self, width: usize) -> String {
        let forms = [self.text(), self.medium(), self.short(), self.tiny()];
        match forms.iter().find(|f| f.len() <= width) {
            Some(f) => f.clone(),
            // ASCII only, so any byte index is a character boundary.
            None => forms[3][..width.min(forms[3].len())].trim_end().into(),
        }
    }

    /// `12.0s 3456 ok 287.0/300 msg/s 20 conn 0 err p99 4.2 ms`.
    fn medium(&self) -> String {
        format!(
            "{:.1}s {} ok {:.1}{} msg/s {} conn {} err p99 {}",
            self.elapsed.as_secs_f64(),
            self.accepted,
            self.rate,
            self.target_text(),
            self.connected,
            self.errors,
            self.p99_short()
        )
    }

    /// `12s 3456 ok 287/300/s 0 err p99 4.2ms`.
    fn short(&self) -> String {
        format!(
            "{}s {} ok {:.0}{}/s {} err p99 {}",
            self.elapsed.as_secs(),
            self.accepted,
            self.rate,
            self.target_text_short(),
            self.errors,
            self.p99_short().replace(' ', "")
        )
    }

    /// `12s 287/300/s p99 4.2ms`.
    fn tiny(&self) -> String {
        format!(
            "{}s {:.0}{}/s p99 {}",
            self.elapsed.as_secs(),
            self.rate,
            self.target_text_short(),
            self.p99_short().replace(' ', "")
        )
    }

    fn target_text(&self) -> String {
        self.target
            .map_or(String::new(), |t| format!("/{}", trim(t)))
    }

    fn target_text_short(&self) -> String {
        self.target.map_or(String::new(), |t| format!("/{t:.0}"))
    }

    fn p99_short(&self) -> String {
        match self.p99_ms {
            Some(ms) if ms >= 100.0 => format!("{ms:.0} ms"),
            Some(ms) => format!("{ms:.1} ms"),
            None => "- ms".into(),
        }
    }
}

/// A rate as given: `300`, `0.5`.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The room the text has on a terminal `columns` wide after the
/// `prefix`: one column less than the rest, since a character in the
/// last column leaves some terminals waiting to wrap.
fn room(columns: usize, prefix: usize) -> usize {
    columns.saturating_sub(prefix + 1).max(1)
}

/// Prints the line every second until `done`, then the last one;
/// `target` is the rate asked for at a time into the run.
pub fn run(
    stats: &Stats,
    done: &AtomicBool,
    lines: diag::StatusLines,
    target: &dyn Fn(Duration) -> Option<f64>,
) {
    let mut meter = Meter::new(stats);
    let mut tick = 1;
    loop {
        let at = stats.started + Duration::from_secs(tick);
        let last = wait_until(at, done);
        let mut status = meter.read();
        status.target = target(status.elapsed);
        let when = match last {
            true => diag::StatusAt::End,
            false => diag::StatusAt::During,
        };
        let text = match lines {
            diag::StatusLines::Append => status.text(),
            diag::StatusLines::Rewrite => {
                let columns = crate::sys::stderr_columns()
                    .map_or(DEFAULT_COLUMNS, usize::from);
                status.fitted(room(columns, diag::status_prefix().len()))
            }
        };
        diag::status(text.as_bytes(), lines, when);
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
        let interval = self.stats.take_interval(Reader::Progress).hist;
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
            target: None,
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
            target: None,
            connected: 20,
            errors: 1,
            p99_ms: Some(4.2114),
        };
        assert_eq!(
            s.text(),
            "12.0s: 3456 accepted, 287.0 msg/s, 20 connected, 1 errors, \
p99 4.211 ms"
        );
        s.target = Some(300.0);
        assert_eq!(
            s.text(),
            "12.0s: 3456 accepted, 287.0/300 msg/s, 20 connected, 1 errors, \
p99 4.211 ms"
        );
        s.p99_ms = None;
        assert!(s.text().ends_with("p99 - ms"));
    }

    /// The line on a terminal never takes the last column: at 80 and 60
    /// columns (after `smtp-source: `) a shorter form, down to a cut.
    #[test]
    fn the_line_fits_the_terminal() {
        let s = Status {
            elapsed: Duration::from_millis(3_612_040),
            accepted: 12_345_678,
            rate: 2874.3,
            target: Some(3000.0),
            connected: 2000,
            errors: 123_456,
            p99_ms: Some(1234.5678),
        };
        let prefix = "smtp-source: ".len();
        assert_eq!(s.fitted(1000), s.text());
        for columns in [200, 100, 80, 60, 40, 30, 20, 14, 1] {
            let room = room(columns, prefix);
            let line = s.fitted(room);
            assert!(line.len() <= room, "{columns}: {line:?}");
            assert!(prefix + line.len() < columns.max(prefix + 2));
        }
        assert_eq!(
            s.fitted(room(80, prefix)),
            "3612s 12345678 ok 2874/3000/s 123456 err p99 1235ms"
        );
        assert_eq!(s.fitted(room(42, prefix)), "3612s 2874/3000/s p99 1235ms");
        assert_eq!(s.fitted(room(20, prefix)), "3612s");
        let typical = Status {
            elapsed: Duration::from_millis(12_040),
            accepted: 3456,
            rate: 287.0,
            target: Some(300.0),
            connected: 20,
            errors: 0,
            p99_ms: Some(4.2114),
        };
        assert_eq!(
            typical.fitted(room(80, prefix)),
            "12.0s 3456 ok 287.0/300 msg/s 20 conn 0 err p99 4.2 ms"
        );
        assert_eq!(
            typical.fitted(room(60, prefix)),
            "12s 3456 ok 287/300/s 0 err p99 4.2ms"
        );
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
