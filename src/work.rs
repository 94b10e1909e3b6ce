//! work: what the engine and the session threads share. `Shared` holds
//! the plan and the run's counters (the message budget, the recipient
//! and connection sequences, the Date: value, the connect gate, the
//! measurements); `Jobs` is a session's end of the job channel; `Job` is
//! one message to send.
//!
//! The budget is the reference's counter M: every claim, successful or
//! not, takes one from it, so it goes negative once the work is gone,
//! and its value at DATA time goes into Message-Id.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard};
use std::time::{Instant, SystemTime};

use crossbeam_channel::Receiver;
use rand::rngs::StdRng;

use crate::draw;
use crate::error::Error;
use crate::message;
use crate::net::Gate;
use crate::plan::Plan;
use crate::report;
use crate::report::stats::{Counts, Stats};
use crate::sys;
use crate::workload::{Choice, Content};

/// One message to send.
#[derive(Debug, Clone, Copy, Default)]
pub struct Job {
    /// --rate: when it was meant to start; latency counts from here, so a
    /// stalled server shows as latency (no coordinated omission).
    pub due: Option<Instant>,
    /// The message's number in the run, from 0, in dispatch order (after
    /// the earlier shards' messages under --shard): it
    /// picks the --message-dir file, the --sender-file sender and the
    /// --rcpt-file recipients.
    pub n: u64,
    /// Its body (an index into the plan's bodies).
    pub body: u32,
}

/// Makes the jobs, in order, in the dispatching thread: numbers them
/// and draws their bodies, so that the sequence of a run with --seed is
/// the same whatever the sessions do.
pub struct Dealer<'a> {
    content: &'a Content,
    next: u64,
    sizes: StdRng,
}

impl<'a> Dealer<'a> {
    pub fn new(plan: &'a Plan) -> Self {
        Dealer {
            content: &plan.content,
            // A shard's messages follow the earlier shards' in the run's
            // numbering (files, senders and recipients rotate on).
            next: plan.scale.first,
            sizes: draw::stream(plan.seed, draw::Purpose::SizeMix, 0),
        }
    }

    /// The next message.
    pub fn deal(&mut self, due: Option<Instant>) -> Job {
        let n = self.next;
        self.next += 1;
        let body = match &self.content.choice {
            Choice::One => 0,
            Choice::Mix(mix) => mix.pick(&mut self.sizes),
            Choice::Corpus => (n % self.content.bodies.len() as u64) as usize,
        };
        Job {
            due,
            n,
            body: body as u32,
        }
    }
}

/// What every session shares: the plan and the run's counters.
pub struct Shared {
    pub plan: Plan,
    /// The reference's M: messages not yet claimed (may go negative).
    budget: AtomicI64,
    /// -N (or 3.9 numbering): the next recipient number.
    pub rcpt_seq: AtomicU64,
    /// The Date: value, made once at the first message and reused for
    /// the whole run, as the reference does.
    date: OnceLock<Vec<u8>>,
    pub gate: Gate,
    pub pid: u32,
    /// Measurements, when the run measures (--report and friends).
    pub stats: Option<Stats>,
    /// Set when dispatching stops early (--duration over, SIGINT):
    /// queued jobs are then left alone.
    pub(crate) stopping: AtomicBool,
    /// Connections opened so far, run-wide: the n-th connection takes
    /// the n-th --xclient/--proxy-source address and --auth-file user.
    pub conn_seq: AtomicU64,
    /// Connect attempts so far: the n-th takes the n-th --bind address.
    bind_seq: AtomicU64,
    /// The run-wide stop (`halt`).
    halt: Halt,
}

/// The run-wide stop for a fatal error or a signal. Every session write
/// holds a read guard of one of `writes` and checks `halted` under it;
/// the halter sets `halted`, then takes the write side of each, so it
/// waits out the writes already under way (each bounded by its write
/// deadline) and no write starts after it returns. The locks are
/// sharded by session, each on its own cache lines, so sessions do not
/// contend for them on every write.
struct Halt {
    halted: AtomicBool,
    writes: Vec<WriteLock>,
}

#[derive(Default)]
#[repr(align(128))]
struct WriteLock(RwLock<()>);

/// Write locks of the halt: one per this many sessions at most.
const HALT_SHARDS: usize = 16;

/// Leave to write to a socket: held across one write.
pub(crate) struct WritePermit<'a> {
    _guard: RwLockReadGuard<'a, ()>,
}

impl Shared {
    pub fn new(plan: Plan) -> Self {
        let (started, started_wall) = start_time(&plan);
        let stats = plan
            .ext
            .measure
            .then(|| Stats::starting(plan.sessions, started, started_wall));
        Shared {
            // The reference starts every session at once, and each takes
            // one from M before any connects: take them all here, so the
            // Message-Id counter never depends on thread scheduling
            // (`-m 1 -s 3` shows fffffffe, always).
            budget: AtomicI64::new(
                plan.messages.min(i64::MAX as u64 / 2) as i64
                    - i64::from(plan.sessions),
            ),
            rcpt_seq: AtomicU64::new(first_rcpt(&plan)),
            date: OnceLock::new(),
            gate: Gate::new(plan.max_connecting),
            pid: std::process::id(),
            stats,
            stopping: AtomicBool::new(false),
            conn_seq: AtomicU64::new(0),
            bind_seq: AtomicU64::new(0),
            halt: Halt {
                halted: AtomicBool::new(false),
                writes: (0..(plan.sessions as usize).clamp(1, HALT_SHARDS))
                    .map(|_| WriteLock::default())
                    .collect(),
            },
            plan,
        }
    }

    /// Stops the run where it stands, for a fatal error or a signal: no
    /// session starts another write once this returns (writes under way
    /// end first, each within its write deadline), and from then on the
    /// report counts every message and recipient still in flight as
    /// `unknown`. Call it before taking the report's snapshot. Safe to
    /// call more than once and from any thread that holds no permit.
    pub fn halt(&self) {
        self.halt.halted.store(true, Ordering::SeqCst);
        self.stopping.store(true, Ordering::SeqCst);
        for gate in &self.halt.writes {
            drop(gate.0.write());
        }
    }

    /// Whether `halt` was called.
    pub fn halted(&self) -> bool {
        self.halt.halted.load(Ordering::SeqCst)
    }

    /// Leave for one socket write of session `n`, or None once the run
    /// is halted.
    pub(crate) fn write_permit(&self, n: usize) -> Option<WritePermit<'_>> {
        let gates = &self.halt.writes;
        let gate = &gates[n % gates.len()].0;
        let guard = gate.read().unwrap_or_else(|e| e.into_inner());
        if self.halted() {
            return None;
        }
        Some(WritePermit { _guard: guard })
    }

    /// The --bind address for the next connect attempt, in turn.
    pub fn next_bind(&self) -> Option<&socket2::SockAddr> {
        let all = &self.plan.scale.bind;
        if all.is_empty() {
            return None;
        }
        let n = self.bind_seq.fetch_add(1, Ordering::Relaxed);
        all.get((n % all.len() as u64) as usize)
    }

    /// The Message-Id counter: the messages not yet claimed here, plus
    /// those of the later shards (so shard K's counters continue the
    /// whole run's count-down; 0 without --shard).
    pub fn id_counter(&self) -> i64 {
        let later = self.plan.scale.later.min(i64::MAX as u64 / 2) as i64;
        self.unclaimed().wrapping_add(later)
    }

    /// When the run began (for --duration and --rate).
    pub(crate) fn started(&self) -> Instant {
        self.stats.as_ref().map_or_else(Instant::now, |s| s.started)
    }

    /// Messages not yet claimed by any session.
    pub fn unclaimed(&self) -> i64 {
        self.budget.load(Ordering::SeqCst)
    }

    pub fn date(&self) -> &[u8] {
        self.date.get_or_init(|| {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            message::date_value(&sys::localtime(now))
        })
    }

    /// The report of the run so far.
    pub(crate) fn summary(
        &self,
        fatal: Option<&Error>,
    ) -> Option<report::Summary> {
        let stats = self.stats.as_ref()?;
        let (counts, latency) = stats.snapshot();
        // A run that ended normally left nothing in flight: every message
        // and every RCPT has its verdict.
        debug_assert!(
            fatal.is_some()
                || self.halted()
                || (counts.unknown, counts.rcpt_unknown) == (0, 0),
            "in flight at the end of a run: {counts:?}"
        );
        let (max_lag, final_lag) = stats.lags();
        let thresholds = self.thresholds(&counts, &latency, stats);
        let spooled = stats.intervals();
        let mut intervals = Vec::new();
        if fatal.is_some() || self.halted() {
            // The interval thread will not write the one under way (a
            // fatal error, or the end a signal's grace ran out).
            intervals.push(stats.interval_since_last());
        }
        let start = stats.started_wall.duration_since(SystemTime::UNIX_EPOCH);
        let interrupted = sys::caught().map(|s| sys::signal_name(s).into());
        Some(report::Summary {
            start: SystemTime::UNIX_EPOCH
                + report::whole_micros(start.unwrap_or_default()),
            elapsed: report::whole_micros(stats.started.elapsed()),
            size_classes: self.size_classes(&counts),
            counts,
            latency,
            schedule: self.schedule(max_lag, final_lag),
            thresholds,
            capacity: stats
                .capacity
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            completed: fatal.is_none() && interrupted.is_none(),
            interrupted,
            interrupted_shards: Vec::new(),
            fatal: fatal
                .map(|e| String::from_utf8_lossy(&e.text()).into_owned()),
            shard: self.plan.scale.shard,
            spooled: Some(spooled),
            intervals,
            run: report::run::current(),
        })
    }

    /// The open-loop schedule (--rate, --stages, --find-capacity), if any.
    fn schedule(
        &self,
        max_lag: std::time::Duration,
        final_lag: std::time::Duration,
    ) -> Option<report::Schedule> {
        let ext = &self.plan.ext;
        let first = ext.capacity.map(|c| c.first);
        let rate = ext.rate.map(|r| r.0).or(first);
        if rate.is_none() && ext.stages.is_none() {
            return None;
        }
        let stages = ext.stages.iter().flatten();
        Some(report::Schedule {
            rate: rate.unwrap_or(0.0),
            arrival: ext.arrival,
            max_lag,
            final_lag,
            stages: stages.map(|(d, r)| (d.as_secs_f64(), *r)).collect(),
        })
    }

    /// The --threshold verdicts on the whole run (none for a capacity
    /// search: its steps are judged one by one); one that ended the run
    /// early shows its trailing window's value.
    fn thresholds(
        &self,
        counts: &Counts,
        latency: &[hdrhistogram::Histogram<u64>],
        stats: &Stats,
    ) -> Vec<crate::threshold::Verdict> {
        let ext = &self.plan.ext;
        if ext.capacity.is_some() {
            return Vec::new();
        }
        let measured = crate::threshold::Measured {
            counts,
            latency,
            seconds: stats.started.elapsed().as_secs_f64(),
        };
        let mut all = crate::threshold::judge_all(&ext.thresholds, &measured);
        let breach = stats.breach.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = breach.as_ref() {
            if let Some(v) = all.iter_mut().find(|v| v.expr == b.expr) {
                *v = b.clone();
            }
        }
        all
    }

    /// Every --size-mix class, in the order given, with what was sent.
    fn size_classes(&self, counts: &Counts) -> Vec<report::SizeClass> {
        let Choice::Mix(mix) = &self.plan.content.choice else {
            return Vec::new();
        };
        mix.sizes
            .iter()
            .map(|&size| {
                let size = u64::from(size);
                let (messages, bytes) = counts
                    .size_classes
                    .get(&size)
                    .copied()
                    .unwrap_or_default();
                report::SizeClass {
                    size,
                    messages,
                    bytes,
                }
            })
            .collect()
    }
}

/// When the run starts: now, or at --start-at (a time in the past
/// means now; the engine warns about it).
pub(crate) fn start_time(plan: &Plan) -> (Instant, SystemTime) {
    let (now, wall) = (Instant::now(), SystemTime::now());
    match plan.scale.start_at.map(|at| at.duration_since(wall)) {
        Some(Ok(ahead)) => (now + ahead, wall + ahead),
        _ => (now, wall),
    }
}

/// The first recipient number: 3.7 numbers from 1, 3.9 from 0, and a
/// shard after the numbers of the shards before it (every message
/// takes -r numbers).
fn first_rcpt(plan: &Plan) -> u64 {
    let base = u64::from(plan.numbering != crate::plan::Numbering::Appended);
    let before = plan.scale.first.saturating_mul(u64::from(plan.recipients));
    base.saturating_add(before)
}

/// Which claim of a session this is: the budget already counted every
/// session's first claim when the run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    First,
    Next,
}

/// A session's end of the job channel.
pub struct Jobs<'a> {
    pub(crate) rx: Receiver<Job>,
    pub shared: &'a Shared,
}

impl Jobs<'_> {
    /// Takes the next message, waiting for one if the channel is open.
    /// Takes one from the budget either way, as the reference does; a
    /// session's first claim was already taken when the run started.
    pub fn claim(&self, claim: Claim) -> Option<Job> {
        let job = if self.shared.stopping.load(Ordering::SeqCst) {
            None
        } else {
            self.rx.recv().ok()
        };
        if claim == Claim::Next {
            self.shared.budget.fetch_sub(1, Ordering::SeqCst);
        }
        job
    }

    /// Takes a message only if one is ready now (pipelining's look-ahead
    /// with -d); the budget moves only when one is taken.
    pub fn try_claim(&self) -> Option<Job> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let job = self.rx.try_recv().ok()?;
        self.shared.budget.fetch_sub(1, Ordering::SeqCst);
        Some(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn shared(words: &[&str]) -> Shared {
        let mut argv: Vec<OsString> =
            vec!["smtp-source".into(), "-M".into(), "h.example".into()];
        argv.extend(words.iter().map(OsString::from));
        argv.push("127.0.0.1:25".into());
        let crate::cli::Parsed::Run(args) = crate::cli::parse(argv).unwrap()
        else {
            panic!("not a run")
        };
        Shared::new(
            crate::plan::build(&args, crate::plan::Env::default()).unwrap(),
        )
    }

    /// A halt waits out the write under way and lets no other start.
    #[test]
    fn halt_waits_for_writes_and_stops_new_ones() {
        let sh = shared(&[]);
        let permit = sh.write_permit(0).expect("not halted yet");
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                sh.halt();
                done.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!done.load(Ordering::SeqCst), "halt did not wait");
            drop(permit);
        });
        assert!(done.load(Ordering::SeqCst) && sh.halted());
        assert!(sh.write_permit(0).is_none());
        sh.halt();
    }

    /// Shard K's first -N number and Message-Id counter follow shard
    /// K-1's last: together the shards number like one run.
    #[test]
    fn numbering_continues_across_shards() {
        for (m, n, r) in
            [(10u64, 3u32, 2u32), (7, 7, 1), (5, 8, 3), (1000, 16, 4)]
        {
            let (m_s, r_s) = (m.to_string(), r.to_string());
            let mut next_rcpt = 1;
            let mut counters_top = Vec::new();
            for k in 1..=n {
                let shard = format!("--shard={k}/{n}");
                let sh = shared(&[&shard, "-N", "-r", &r_s, "-m", &m_s]);
                let first = sh.rcpt_seq.load(Ordering::SeqCst);
                assert_eq!(first, next_rcpt, "m={m} n={n} k={k}");
                next_rcpt += sh.plan.messages * u64::from(r);
                // One session: its counter starts at (messages left) - 1
                // plus the later shards' messages.
                counters_top.push(sh.id_counter() + 1);
            }
            assert_eq!(next_rcpt, 1 + m * u64::from(r));
            // The shards' counter ranges tile m..0 from the top down.
            let want: Vec<i64> = (1..=n)
                .map(|k| {
                    let (first, _) =
                        crate::scale::Shard { index: k, count: n }.share(m);
                    (m - first) as i64
                })
                .collect();
            assert_eq!(counters_top, want, "m={m} n={n}");
        }
        // 3.9 numbering counts from 0.
        let sh =
            shared(&["--shard=2/2", "--numbering=3.9", "-r", "2", "-m", "4"]);
        assert_eq!(sh.rcpt_seq.load(Ordering::SeqCst), 4);
        let sh = shared(&["--shard=1/1", "-N", "-m", "4"]);
        assert_eq!(
            (sh.rcpt_seq.load(Ordering::SeqCst), sh.id_counter()),
            (1, 3)
        );
    }
}
