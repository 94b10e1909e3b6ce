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
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use crossbeam_channel::Receiver;
use rand::rngs::StdRng;

use crate::draw;
use crate::error::Error;
use crate::message;
use crate::net::Gate;
use crate::plan::Plan;
use crate::report;
use crate::stats::{Counts, Stats};
use crate::sys;
use crate::workload::{Choice, Content};

/// One message to send.
#[derive(Debug, Clone, Copy, Default)]
pub struct Job {
    /// --rate: when it was meant to start; latency counts from here, so a
    /// stalled server shows as latency (no coordinated omission).
    pub due: Option<Instant>,
    /// The message's number in the run, from 0, in dispatch order: it
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
            next: 0,
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
}

impl Shared {
    pub fn new(plan: Plan) -> Self {
        let stats = plan.ext.measure.then(|| Stats::new(plan.sessions));
        Shared {
            // The reference starts every session at once, and each takes
            // one from M before any connects: take them all here, so the
            // Message-Id counter never depends on thread scheduling
            // (`-m 1 -s 3` shows fffffffe, always).
            budget: AtomicI64::new(
                plan.messages.min(i64::MAX as u64 / 2) as i64
                    - i64::from(plan.sessions),
            ),
            // 3.7 numbers from 1, 3.9 from 0.
            rcpt_seq: AtomicU64::new(u64::from(
                plan.numbering != crate::plan::Numbering::Appended,
            )),
            date: OnceLock::new(),
            gate: Gate::new(plan.max_connecting),
            pid: std::process::id(),
            stats,
            stopping: AtomicBool::new(false),
            conn_seq: AtomicU64::new(0),
            plan,
        }
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
        let (max_lag, final_lag) = stats.lags();
        Some(report::Summary {
            start: stats.started_wall,
            elapsed: stats.started.elapsed(),
            size_classes: self.size_classes(&counts),
            counts,
            latency,
            schedule: self.plan.ext.rate.map(|(rate, arrival)| {
                report::Schedule {
                    rate,
                    arrival,
                    max_lag,
                    final_lag,
                }
            }),
            completed: fatal.is_none(),
            fatal: fatal
                .map(|e| String::from_utf8_lossy(&e.text()).into_owned()),
        })
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

/// A session's end of the job channel.
pub struct Jobs<'a> {
    pub(crate) rx: Receiver<Job>,
    pub shared: &'a Shared,
}

impl Jobs<'_> {
    /// Takes the next message, waiting for one if the channel is open.
    /// Takes one from the budget either way, as the reference does; a
    /// session's first claim was already taken when the run started.
    pub fn claim(&self, first: bool) -> Option<Job> {
        let job = if self.shared.stopping.load(Ordering::SeqCst) {
            None
        } else {
            self.rx.recv().ok()
        };
        if !first {
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
