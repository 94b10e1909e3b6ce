//! engine: runs the plan. It starts one named thread per session, hands
//! out message jobs over a crossbeam channel, keeps the global message
//! budget, and waits for the sessions to finish.
//!
//! The budget is the reference's counter M (spec §2.1): every claim,
//! successful or not, takes one from it, so it goes negative once the
//! work is gone, and its value at DATA time goes into Message-Id.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::SystemTime;

use crossbeam_channel::{bounded, Receiver};

use crate::error::Error;
use crate::message;
use crate::net::Gate;
use crate::plan::Plan;
use crate::session;
use crate::sys;

/// Session threads run shallow code (name resolution stays in the main
/// thread), so a small explicit stack keeps thousands of them cheap.
pub const STACK_SIZE: usize = 256 * 1024;

/// Most jobs queued at once (8 bytes a slot).
const JOB_ROOM: usize = 1 << 16;

/// What every session shares: the plan and the run's counters.
pub struct Shared {
    pub plan: Plan,
    /// The reference's M: messages not yet claimed (may go negative).
    budget: AtomicI64,
    /// -N: the next recipient number (3.7 starts at 1).
    pub rcpt_seq: AtomicU64,
    /// The Date: value, made once at the first DATA (spec §4.2).
    date: OnceLock<Vec<u8>>,
    pub gate: Gate,
    pub pid: u32,
}

impl Shared {
    pub fn new(plan: Plan) -> Self {
        Shared {
            budget: AtomicI64::new(i64::from(plan.messages)),
            rcpt_seq: AtomicU64::new(1),
            date: OnceLock::new(),
            gate: Gate::new(plan.max_connecting),
            pid: std::process::id(),
            plan,
        }
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
}

/// A session's end of the job channel.
pub struct Jobs<'a> {
    rx: Receiver<()>,
    shared: &'a Shared,
}

impl Jobs<'_> {
    /// Takes the next message, if any is left. Takes one from the budget
    /// either way, as the reference does.
    pub fn claim(&self) -> bool {
        let got = self.rx.recv().is_ok();
        self.shared.budget.fetch_sub(1, Ordering::SeqCst);
        got
    }
}

/// Runs all sessions to the end. A fatal session error ends the process
/// from inside its thread (via `report`), as one fatal error ends the
/// reference.
pub fn run(plan: Plan, report: fn(Error) -> !) -> Result<(), Error> {
    ensure_fds(plan.sessions)?;
    let shared = Shared::new(plan);
    let sessions = shared.plan.sessions as usize;
    // Room for every job up to a bound: the main thread rarely blocks,
    // so handing out a job costs the sessions no wake-up system calls.
    let room = (shared.plan.messages as usize).clamp(1, JOB_ROOM);
    let (tx, rx) = bounded::<()>(room);
    thread::scope(|scope| {
        let mut handles = Vec::with_capacity(sessions);
        for n in 0..sessions {
            let jobs = Jobs {
                rx: rx.clone(),
                shared: &shared,
            };
            let spawned = thread::Builder::new()
                .name(format!("session-{n}"))
                .stack_size(STACK_SIZE)
                .spawn_scoped(scope, move || {
                    if let Err(e) = session::run(jobs.shared, &jobs) {
                        report(e);
                    }
                });
            handles.push(spawned.map_err(Error::Spawn)?);
        }
        drop(rx);
        for _ in 0..shared.plan.messages {
            if tx.send(()).is_err() {
                break; // every session is gone
            }
        }
        drop(tx);
        for handle in handles {
            handle.join().map_err(|_| Error::Internal("session died"))?;
        }
        Ok(())
    })
}

/// Descriptors a run needs besides one socket per session.
const SPARE_FDS: u64 = 16;

/// X10: raise the soft open-file limit toward the hard one, and fail
/// before any connect if `-s` still cannot fit.
fn ensure_fds(sessions: u32) -> Result<(), Error> {
    let want = u64::from(sessions) + SPARE_FDS;
    let have = sys::raise_nofile(want).unwrap_or(0);
    if have >= want {
        return Ok(());
    }
    let fatal = format!(
        "{sessions} sessions need {want} open files, but the open file \
limit (ulimit -n) is {have}"
    );
    Err(Error::Config {
        warning: None,
        fatal: fatal.into_bytes(),
    })
}
