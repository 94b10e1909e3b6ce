//! interrupt: how SIGINT and SIGTERM end a run that asked for a report.
//! The first signal stops new messages; transactions in flight get a
//! grace of min(--timeout, 5 s); then, or at a second signal, the run is
//! halted (`Shared::halt`), every report is written with what there is,
//! and the process exits with 128 + the first signal's number.
//!
//! A command line that asks for no report keeps the default action of
//! both signals, as Postfix's smtp-source has no handler.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::engine::{HLOG_STACK_SIZE, STACK_SIZE};
use crate::error::Error;
use crate::plan::Plan;
use crate::report::output;
use crate::sys;
use crate::work::Shared;

/// The longest a signal leaves transactions in flight to finish (never
/// longer than --timeout).
const GRACE: Duration = Duration::from_secs(5);

/// How often the watcher looks.
const TICK: Duration = Duration::from_millis(10);

/// How long the end after a signal waits for socket writes under way
/// to finish (`Shared::halt`) before it takes the report's snapshot
/// anyway: a write to a server that stopped reading could otherwise
/// hold it for the whole --timeout.
const HALT_WAIT: Duration = Duration::from_millis(500);

/// Whether the run catches SIGINT and SIGTERM: when a long option asks
/// for something that dying would lose (a report, a log, a last
/// progress line, a --duration run's end).
pub(crate) fn catches(plan: &Plan) -> bool {
    let ext = &plan.ext;
    ext.report.is_some()
        || ext.report_file.is_some()
        || ext.hlog.is_some()
        || ext.duration.is_some()
        || ext.progress
        || ext.metrics.is_some()
}

/// With signals caught: a thread that stops the run at the first signal
/// and, after the grace or at a second signal, ends it (`cut_short`).
/// It returns when `done` is set (the sessions have ended: the engine
/// then writes the reports itself).
pub(crate) fn start_watch<'s>(
    scope: &'s thread::Scope<'s, '_>,
    shared: &'s Shared,
    done: &'s AtomicBool,
) -> Result<(), Error> {
    if !catches(&shared.plan) {
        return Ok(());
    }
    thread::Builder::new()
        .name("signals".into())
        // It may write the report: histograms compress on its stack.
        .stack_size(HLOG_STACK_SIZE)
        .spawn_scoped(scope, move || watch(scope, shared, done))
        .map(|_| ())
        .map_err(Error::Spawn)
}

fn watch<'s>(
    scope: &'s thread::Scope<'s, '_>,
    shared: &'s Shared,
    done: &AtomicBool,
) {
    let grace = shared.plan.timeout.min(GRACE);
    let mut since = None;
    while !done.load(Ordering::SeqCst) {
        thread::sleep(TICK);
        let signals = sys::signals();
        if signals == 0 {
            continue;
        }
        shared.stopping.store(true, Ordering::SeqCst);
        let since = *since.get_or_insert_with(Instant::now);
        if signals >= 2 || since.elapsed() >= grace {
            halt_within(scope, shared, HALT_WAIT);
            cut_short(shared);
            return;
        }
    }
}

/// Halts the run (no session writes another byte; what is in flight
/// counts as unknown), waiting at most `limit` for the writes under way.
fn halt_within<'s>(
    scope: &'s thread::Scope<'s, '_>,
    shared: &'s Shared,
    limit: Duration,
) {
    let (halted, wait) = bounded::<()>(1);
    let spawned = thread::Builder::new()
        .name("halt".into())
        .stack_size(STACK_SIZE)
        .spawn_scoped(scope, move || {
            shared.halt();
            let _ = halted.send(());
        });
    if spawned.is_ok() {
        let _ = wait.recv_timeout(limit);
    }
}

/// The end after a second signal or the grace: every report with what
/// there is now, and exit (unless the reports are being written
/// already: that writer exits).
fn cut_short(shared: &Shared) {
    if let Some(failures) = output::report_first(shared, None) {
        output::end(failures);
    }
}
