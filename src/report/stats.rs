//! stats: what a run measures for --report, --hlog and --rate: counters,
//! reply codes per command, error classes, and latency histograms
//! (HdrHistogram, microseconds) that merge exactly across sessions.
//!
//! Sessions record into a private `Recorder` and flush it into one of a
//! few shared shards once per transaction, so the lock is taken rarely
//! and never across socket I/O. Nothing here is used unless the run
//! measures (the drop-in path stays as lean as before).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;

use crate::report::codec::{new_histogram, MAX_MICROS};

use crate::capacity::Capacity;
use crate::report::spool::{IntervalSpool, Spooled};
use crate::schedule::Profile;
use crate::threshold::{Snapshot, Verdict};
use crate::txn::{Fate, Tally};

/// Latency phases, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Connect,
    Banner,
    Helo,
    /// The TLS handshake (STARTTLS or --tls-wrapper).
    TlsHandshake,
    /// AUTH, from the command to its final reply.
    Auth,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Quit,
    Transaction,
}

pub const PHASES: [Phase; 11] = [
    Phase::Connect,
    Phase::Banner,
    Phase::Helo,
    Phase::TlsHandshake,
    Phase::Auth,
    Phase::Mail,
    Phase::Rcpt,
    Phase::Data,
    Phase::EndOfData,
    Phase::Quit,
    Phase::Transaction,
];

impl Phase {
    /// The stable key used in the JSON report and the text table.
    pub fn key(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Banner => "banner",
            Phase::Helo => "helo",
            Phase::TlsHandshake => "tls_handshake",
            Phase::Auth => "auth",
            Phase::Mail => "mail",
            Phase::Rcpt => "rcpt",
            Phase::Data => "data",
            Phase::EndOfData => "end_of_data",
            Phase::Quit => "quit",
            Phase::Transaction => "transaction",
        }
    }
}

/// Why a connection failed, for the report's error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Refused,
    Reset,
    Timeout,
    Lost,
    /// A TLS handshake failed, or TLS was required and not to be had.
    Tls,
    /// AUTH was refused (535 and the like) or could not be sent.
    Auth,
    /// connect(): no route to the host or its network.
    Unreachable,
    /// A message that needs SMTPUTF8, to a server that does not offer
    /// it: not sent, counted rejected.
    Smtputf8,
}

/// The class of a failed connect(): refused (ECONNREFUSED and anything
/// unclassed, as before), timeout, unreachable (host or network), reset.
pub fn connect_class(e: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => ErrorClass::Timeout,
        K::ConnectionReset | K::ConnectionAborted => ErrorClass::Reset,
        K::HostUnreachable | K::NetworkUnreachable => ErrorClass::Unreachable,
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => {
                ErrorClass::Unreachable
            }
            Some(libc::ETIMEDOUT) => ErrorClass::Timeout,
            _ => ErrorClass::Refused,
        },
    }
}

/// The report's names of the error classes, in `ErrorClass` order.
/// How many error classes there are (`ERROR_KEYS`, `ErrorClass`).
pub const ERROR_CLASSES: usize = 8;

pub const ERROR_KEYS: [&str; ERROR_CLASSES] = [
    "refused",
    "reset",
    "timeout",
    "lost_connection",
    "tls",
    "auth",
    "unreachable",
    "smtputf8",
];

/// Counters; merged by addition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub attempted: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub failed: u64,
    /// In flight when a fatal error or a signal cut the run short.
    pub unknown: u64,
    /// RCPT commands written; each ends accepted, rejected (its reply
    /// said no), failed (no reply: the connection died) or unknown.
    pub rcpt_sent: u64,
    pub rcpt_accepted: u64,
    pub rcpt_rejected: u64,
    pub rcpt_failed: u64,
    pub rcpt_unknown: u64,
    pub bytes_sent: u64,
    pub connections: u64,
    /// Counted by `ErrorClass` (see `ERROR_KEYS`).
    pub errors: [u64; ERROR_CLASSES],
    /// TLS handshakes: full and resumed.
    pub tls_full: u64,
    pub tls_resumed: u64,
    /// Negotiated protocol versions and cipher suites, with counts.
    pub tls_versions: BTreeMap<String, u64>,
    pub tls_ciphers: BTreeMap<String, u64>,
    /// (command, reply code) -> replies seen.
    pub codes: BTreeMap<(&'static str, u16), u64>,
    /// --size-mix: payload size -> (messages sent, bytes sent).
    pub size_classes: BTreeMap<u64, (u64, u64)>,
    /// ESMTP parameters sent, by keyword (`BODY=8BITMIME` by value).
    pub esmtp_params: BTreeMap<String, u64>,
    /// What became of them: local refusals and notes, and the servers'
    /// refusals of a MAIL or RCPT that carried any, by reply code.
    pub esmtp_refusals: BTreeMap<String, u64>,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.attempted += o.attempted;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.failed += o.failed;
        self.unknown += o.unknown;
        self.rcpt_sent += o.rcpt_sent;
        self.rcpt_accepted += o.rcpt_accepted;
        self.rcpt_rejected += o.rcpt_rejected;
        self.rcpt_failed += o.rcpt_failed;
        self.rcpt_unknown += o.rcpt_unknown;
        self.bytes_sent += o.bytes_sent;
        self.connections += o.connections;
        for (a, b) in self.errors.iter_mut().zip(o.errors) {
            *a += b;
        }
        for (k, v) in &o.codes {
            *self.codes.entry(*k).or_default() += v;
        }
        self.tls_full += o.tls_full;
        self.tls_resumed += o.tls_resumed;
        for (k, v) in &o.tls_versions {
            *self.tls_versions.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.tls_ciphers {
            *self.tls_ciphers.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.esmtp_params {
            *self.esmtp_params.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.esmtp_refusals {
            *self.esmtp_refusals.entry(k.clone()).or_default() += v;
        }
        for (k, (m, b)) in &o.size_classes {
            let e = self.size_classes.entry(*k).or_default();
            e.0 += m;
            e.1 += b;
        }
    }

    /// A message of the size class `size` went out in `bytes`.
    pub fn size_class(&mut self, size: u64, bytes: u64) {
        let e = self.size_classes.entry(size).or_default();
        e.0 += 1;
        e.1 += bytes;
    }

    /// One finished TLS handshake.
    pub fn handshake(&mut self, version: &str, cipher: &str, resumed: bool) {
        if resumed {
            self.tls_resumed += 1;
        } else {
            self.tls_full += 1;
        }
        *self.tls_versions.entry(version.to_string()).or_default() += 1;
        *self.tls_ciphers.entry(cipher.to_string()).or_default() += 1;
    }

    pub fn error(&mut self, class: ErrorClass) {
        self.errors[class as usize] += 1;
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_MICROS)
}

/// Who reads transaction latency one interval at a time; each has an
/// interval histogram of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The one-second intervals of the report and --hlog.
    Intervals = 0,
    /// --progress.
    Progress = 1,
}

/// A shard's message and recipient counts, moved here the moment they
/// happen (a claim, a RCPT written, a verdict), not at a flush: a report
/// taken at any time, after a fatal error or a signal, sees all of them.
/// Padded to its own cache lines: sessions of other shards do not slow
/// it down.
#[derive(Default)]
#[repr(align(128))]
struct Ledger {
    attempted: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    rcpt_sent: AtomicU64,
    rcpt_accepted: AtomicU64,
    rcpt_rejected: AtomicU64,
    rcpt_failed: AtomicU64,
}

impl Ledger {
    /// Adds this ledger's counts to `c`; what was claimed (or written)
    /// and has no verdict is `unknown`. The verdicts are read before
    /// the claims, so a verdict is never seen without its claim.
    fn add_to(&self, c: &mut Counts) {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let (acc, rej, fail) =
            (get(&self.accepted), get(&self.rejected), get(&self.failed));
        let (r_acc, r_rej, r_fail) = (
            get(&self.rcpt_accepted),
            get(&self.rcpt_rejected),
            get(&self.rcpt_failed),
        );
        let (attempted, sent) = (get(&self.attempted), get(&self.rcpt_sent));
        // Read after their verdicts, claims can only be ahead of them:
        // more verdicts than claims would be a message counted twice.
        debug_assert!(acc + rej + fail <= attempted, "a second verdict");
        debug_assert!(r_acc + r_rej + r_fail <= sent, "a second RCPT verdict");
        c.attempted += attempted;
        c.accepted += acc;
        c.rejected += rej;
        c.failed += fail;
        c.unknown += attempted.saturating_sub(acc + rej + fail);
        c.rcpt_sent += sent;
        c.rcpt_accepted += r_acc;
        c.rcpt_rejected += r_rej;
        c.rcpt_failed += r_fail;
        c.rcpt_unknown += sent.saturating_sub(r_acc + r_rej + r_fail);
    }
}

/// One lock's worth of shared state.
struct Shard {
    counts: Counts,
    hist: Vec<Histogram<u64>>,
    /// Transaction latency since each reader's last interval.
    intervals: [Histogram<u64>; 2],
    /// Messages accepted since each reader's last interval.
    interval_accepted: [u64; 2],
    /// Messages rejected and errors by class since the intervals
    /// reader's last interval.
    interval_rejected: u64,
    interval_errors: [u64; ERROR_CLASSES],
}

/// One interval of the run (a second, the last one shorter): what
/// --hlog writes and the JSON report's `"intervals"` hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub start: SystemTime,
    pub length: Duration,
    pub accepted: u64,
    /// Messages rejected in it (absent from older reports: 0).
    pub rejected: u64,
    /// Errors in it by class, in `ERROR_KEYS` order (absent from older
    /// reports: 0).
    pub errors: [u64; ERROR_CLASSES],
    /// Transaction latency, HdrHistogram's compressed base64 form (kept
    /// encoded: a whole histogram per second would cost far more).
    pub histogram: String,
    /// The open-loop target over the interval, messages per second
    /// (None without --rate, --stages or --find-capacity).
    pub target: Option<f64>,
}

/// What `take_interval` hands over.
pub struct Taken {
    pub hist: Histogram<u64>,
    pub accepted: u64,
    /// Only for `Reader::Intervals` (0 for the others).
    pub rejected: u64,
    pub errors: [u64; ERROR_CLASSES],
}

/// The run's measurements.
pub struct Stats {
    shards: Vec<Mutex<Shard>>,
    /// One per shard.
    ledgers: Vec<Ledger>,
    pub started: Instant,
    pub started_wall: SystemTime,
    /// --rate: the largest lag of a message's start behind its schedule.
    max_lag_micros: AtomicU64,
    /// --rate: (number, lag in µs) of the last message started by the
    /// schedule (the highest number: sessions may start them out of
    /// order).
    final_lag: Mutex<(u64, u64)>,
    /// Connections open now.
    connected: AtomicI64,
    /// The intervals so far, oldest first, written out as they close.
    intervals: Arc<IntervalSpool>,
    /// The arrival rate the run aims at, from its start (the intervals'
    /// targets).
    target: Mutex<Option<Profile>>,
    /// The --threshold that ended the run early, judged on its window.
    pub(crate) breach: Mutex<Option<Verdict>>,
    /// --find-capacity: the steps so far and the answer.
    pub(crate) capacity: Mutex<Option<Capacity>>,
}

/// Sessions share this many locks at most.
const SHARDS: usize = 8;

impl Stats {
    pub fn new(sessions: u32) -> Self {
        Self::starting(sessions, Instant::now(), SystemTime::now())
    }

    /// Measurements of a run that starts (or started) at `started`
    /// (--start-at: elapsed time counts from then).
    pub fn starting(
        sessions: u32,
        started: Instant,
        started_wall: SystemTime,
    ) -> Self {
        let n = (sessions as usize).clamp(1, SHARDS);
        let shard = || {
            Mutex::new(Shard {
                counts: Counts::default(),
                hist: PHASES.iter().map(|_| new_histogram()).collect(),
                intervals: [new_histogram(), new_histogram()],
                interval_accepted: [0, 0],
                interval_rejected: 0,
                interval_errors: [0; ERROR_CLASSES],
            })
        };
        Stats {
            shards: (0..n).map(|_| shard()).collect(),
            ledgers: (0..n).map(|_| Ledger::default()).collect(),
            started,
            started_wall,
            max_lag_micros: AtomicU64::new(0),
            final_lag: Mutex::new((0, 0)),
            connected: AtomicI64::new(0),
            intervals: Arc::new(IntervalSpool::new()),
            target: Mutex::new(None),
            breach: Mutex::new(None),
            capacity: Mutex::new(None),
        }
    }

    /// Sets the target rate profile (from the start of the run).
    pub(crate) fn set_target(&self, p: Profile) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
    }

    /// Adds `secs` at `rate` to the target profile (a capacity step).
    pub(crate) fn extend_target(&self, secs: f64, rate: f64) {
        let mut t = self.target.lock().unwrap_or_else(|e| e.into_inner());
        t.get_or_insert_with(|| Profile::stages(0.0, &[]))
            .push(secs, rate, rate);
    }

    /// The mean target rate between two times of the run.
    pub(crate) fn target_between(
        &self,
        a: SystemTime,
        b: SystemTime,
    ) -> Option<f64> {
        let t = self.target.lock().unwrap_or_else(|e| e.into_inner());
        let secs = |x: SystemTime| {
            x.duration_since(self.started_wall)
                .unwrap_or_default()
                .as_secs_f64()
        };
        let rate = t.as_ref()?.mean_rate(secs(a), secs(b));
        Some((rate * 1000.0).round() / 1000.0)
    }

    /// Everything so far, as a snapshot to take windows between.
    pub(crate) fn snapshot_now(&self) -> Snapshot {
        let at = self.started.elapsed().as_secs_f64();
        let (counts, latency) = self.snapshot();
        Snapshot {
            at,
            counts,
            latency,
        }
    }

    /// A recorder for session number `n`.
    pub fn recorder(&self, n: usize) -> Recorder<'_> {
        Recorder {
            stats: self,
            shard: n % self.shards.len(),
            counts: Counts::default(),
            samples: Vec::with_capacity(16),
            accepted: 0,
            rejected: 0,
        }
    }

    /// --rate: a session started message number `n` `lag` after its
    /// scheduled time. This is the one place lag is measured: from the
    /// schedule to the start of the work, so it shows a dispatcher late
    /// and sessions too busy to take the message alike.
    pub fn schedule_lag(&self, n: u64, lag: Duration) {
        let us = lag.as_micros() as u64;
        self.max_lag_micros.fetch_max(us, Ordering::Relaxed);
        let mut last =
            self.final_lag.lock().unwrap_or_else(|e| e.into_inner());
        if n >= last.0 {
            *last = (n, us);
        }
    }

    /// (largest, final) lag behind the --rate schedule: the final one is
    /// that of the last message started (the highest number).
    pub fn lags(&self) -> (Duration, Duration) {
        let max = self.max_lag_micros.load(Ordering::Relaxed);
        let last = self.final_lag.lock().unwrap_or_else(|e| e.into_inner());
        (Duration::from_micros(max), Duration::from_micros(last.1))
    }

    /// Everything recorded so far, merged.
    pub fn snapshot(&self) -> (Counts, Vec<Histogram<u64>>) {
        let mut counts = Counts::default();
        let mut hist: Vec<_> =
            PHASES.iter().map(|_| new_histogram()).collect();
        for ledger in &self.ledgers {
            ledger.add_to(&mut counts);
        }
        for shard in &self.shards {
            let s = shard.lock().unwrap_or_else(|e| e.into_inner());
            counts.add(&s.counts);
            for (into, from) in hist.iter_mut().zip(&s.hist) {
                let _ = into.add(from);
            }
        }
        (counts, hist)
    }

    /// Transaction latency and accepted messages since `reader`'s last
    /// call (and for the intervals, rejections and errors by class).
    pub fn take_interval(&self, reader: Reader) -> Taken {
        let mut t = Taken {
            hist: new_histogram(),
            accepted: 0,
            rejected: 0,
            errors: [0; ERROR_CLASSES],
        };
        let i = reader as usize;
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
            let _ = t.hist.add(&s.intervals[i]);
            s.intervals[i].reset();
            t.accepted += std::mem::take(&mut s.interval_accepted[i]);
            if reader == Reader::Intervals {
                t.rejected += std::mem::take(&mut s.interval_rejected);
                let errors = std::mem::take(&mut s.interval_errors);
                for (into, n) in t.errors.iter_mut().zip(errors) {
                    *into += n;
                }
            }
        }
        t
    }

    /// The interval from `from` to `now` out of what was taken.
    pub fn interval(
        &self,
        from: SystemTime,
        now: SystemTime,
        t: &Taken,
    ) -> Interval {
        let length = now.duration_since(from).unwrap_or_default();
        Interval {
            start: from,
            length,
            accepted: t.accepted,
            rejected: t.rejected,
            errors: t.errors,
            histogram: crate::report::encode_histogram(&t.hist),
            target: self.target_between(from, from + length),
        }
    }

    /// The interval from the end of the last one kept (or the start) to
    /// now, taken and encoded.
    pub fn interval_since_last(&self) -> Interval {
        let from = self.intervals.end().unwrap_or(self.started_wall);
        let now = SystemTime::now();
        self.interval(from, now, &self.take_interval(Reader::Intervals))
    }

    /// Keeps a finished interval for the report (written out: see
    /// `spool`).
    pub fn push_interval(&self, interval: Interval) {
        self.intervals.push(&interval);
    }

    /// The intervals kept so far (a handle, not a copy).
    pub fn intervals(&self) -> Spooled {
        self.intervals.spooled()
    }

    /// A connection opened (+1) or closed (-1).
    pub fn connected(&self, by: i64) {
        self.connected.fetch_add(by, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connected.load(Ordering::Relaxed).max(0) as u64
    }
}

/// A session's private buffer of measurements.
pub struct Recorder<'a> {
    stats: &'a Stats,
    shard: usize,
    pub counts: Counts,
    samples: Vec<(Phase, u64)>,
    /// Messages accepted and rejected since the last flush (for the
    /// intervals).
    accepted: u64,
    rejected: u64,
}

impl Recorder<'_> {
    pub fn latency(&mut self, phase: Phase, d: Duration) {
        self.samples.push((phase, micros(d)));
    }

    fn ledger(&self) -> &Ledger {
        &self.stats.ledgers[self.shard]
    }

    /// A message was taken from -m.
    pub(crate) fn claimed(&self) {
        self.ledger().attempted.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves a transaction's counts to the run's ledger at once.
    pub(crate) fn tally(&mut self, t: Tally) {
        let l = &self.stats.ledgers[self.shard];
        let add = |a: &AtomicU64, n: u64| {
            if n > 0 {
                a.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&l.rcpt_sent, t.rcpt_sent);
        add(&l.rcpt_accepted, t.rcpt_accepted);
        add(&l.rcpt_rejected, t.rcpt_rejected);
        add(&l.rcpt_failed, t.rcpt_failed);
        if let Some(fate) = t.message {
            self.message(fate);
        }
    }

    /// A message's verdict.
    pub(crate) fn message(&mut self, fate: Fate) {
        let l = &self.stats.ledgers[self.shard];
        let counter = match fate {
            Fate::Accepted => {
                self.accepted += 1;
                &l.accepted
            }
            Fate::Rejected => {
                self.rejected += 1;
                &l.rejected
            }
            Fate::Failed => &l.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn code(&mut self, command: &'static str, code: u16) {
        *self.counts.codes.entry((command, code)).or_default() += 1;
    }

    /// Moves what was recorded into the shared shard.
    pub fn flush(&mut self) {
        let mut s = self.stats.shards[self.shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        s.counts.add(&self.counts);
        for n in &mut s.interval_accepted {
            *n += self.accepted;
        }
        s.interval_rejected += self.rejected;
        for (into, n) in s.interval_errors.iter_mut().zip(self.counts.errors) {
            *into += n;
        }
        for &(phase, us) in &self.samples {
            let _ = s.hist[phase as usize].record(us);
            if phase == Phase::Transaction {
                for h in &mut s.intervals {
                    let _ = h.record(us);
                }
            }
        }
        drop(s);
        self.counts = Counts::default();
        self.accepted = 0;
        self.rejected = 0;
        self.samples.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_merge_exactly() {
        let stats = Stats::new(4);
        let mut a = stats.recorder(0);
        let mut b = stats.recorder(1);
        for ms in 1..=100u64 {
            let r = if ms % 2 == 0 { &mut a } else { &mut b };
            r.latency(Phase::Mail, Duration::from_millis(ms));
            r.claimed();
            r.message(Fate::Accepted);
            r.code("MAIL", 250);
        }
        a.flush();
        b.flush();
        let (counts, hist) = stats.snapshot();
        assert_eq!(counts.accepted, 100);
        assert_eq!(counts.codes[&("MAIL", 250)], 100);
        let h = &hist[Phase::Mail as usize];
        assert_eq!(h.len(), 100);
        assert_eq!(h.value_at_quantile(0.5) / 1000, 50);
        assert_eq!(h.max() / 1000, 100);
    }

    /// The final lag is the last message's, whichever session reported
    /// last; the largest is the largest of all.
    #[test]
    fn final_lag_is_the_last_messages() {
        let stats = Stats::new(2);
        let ms = Duration::from_millis;
        stats.schedule_lag(0, ms(3));
        stats.schedule_lag(2, ms(7));
        // Message 1 started before 2 but reports after it.
        stats.schedule_lag(1, ms(40));
        assert_eq!(stats.lags(), (ms(40), ms(7)));
        stats.schedule_lag(3, ms(1));
        assert_eq!(stats.lags(), (ms(40), ms(1)));
    }

    #[test]
    fn connect_failures_by_class() {
        use std::io::Error as E;
        let class = |errno| connect_class(&E::from_raw_os_error(errno));
        assert_eq!(class(libc::ECONNREFUSED), ErrorClass::Refused);
        assert_eq!(class(libc::ETIMEDOUT), ErrorClass::Timeout);
        assert_eq!(class(libc::EHOSTUNREACH), ErrorClass::Unreachable);
        assert_eq!(class(libc::ENETUNREACH), ErrorClass::Unreachable);
        assert_eq!(class(libc::ECONNRESET), ErrorClass::Reset);
        let timeout = E::new(std::io::ErrorKind::TimedOut, "connect");
        assert_eq!(connect_class(&timeout), ErrorClass::Timeout);
    }

    #[test]
    fn interval_is_taken_and_reset() {
        let stats = Stats::new(1);
        let mut r = stats.recorder(0);
        r.latency(Phase::Transaction, Duration::from_millis(3));
        r.claimed();
        r.message(Fate::Accepted);
        r.flush();
        let Taken {
            hist: h, accepted, ..
        } = stats.take_interval(Reader::Intervals);
        assert_eq!((h.len(), accepted), (1, 1));
        assert_eq!(stats.take_interval(Reader::Intervals).hist.len(), 0);
        assert_eq!(stats.take_interval(Reader::Progress).hist.len(), 1);
        assert_eq!(stats.snapshot().1[Phase::Transaction as usize].len(), 1);
    }

    /// Rejections and errors by class land in the interval they happen
    /// in, once; --progress does not take them away.
    #[test]
    fn interval_counts_rejections_and_errors_by_class() {
        let stats = Stats::new(2);
        let mut r = stats.recorder(1);
        r.claimed();
        r.message(Fate::Rejected);
        r.counts.error(ErrorClass::Timeout);
        r.counts.error(ErrorClass::Timeout);
        r.counts.error(ErrorClass::Unreachable);
        r.flush();
        let _ = stats.take_interval(Reader::Progress);
        let t = stats.take_interval(Reader::Intervals);
        assert_eq!((t.accepted, t.rejected), (0, 1));
        assert_eq!(t.errors, [0, 0, 2, 0, 0, 0, 1, 0]);
        let again = stats.take_interval(Reader::Intervals);
        assert_eq!((again.rejected, again.errors), (0, [0; ERROR_CLASSES]));
        assert_eq!(stats.snapshot().0.errors, [0, 0, 2, 0, 0, 0, 1, 0]);
    }
}
