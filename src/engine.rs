//! engine: runs the plan. It starts one named thread per session, hands
//! out message jobs over a crossbeam channel (all at once, or on the
//! --rate schedule, or until --duration ends), keeps the global message
//! budget, and waits for the sessions to finish.
//!
//! What the engine and the sessions share (`Shared`, `Jobs`, `Job`)
//! lives in `work`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender};

use crate::capacity::KEEP_UP;
use crate::error::{Config, Error};
use crate::plan::Plan;
use crate::report::output;
use crate::report::stats::{Reader, Stats};
use crate::schedule::{Profile, Schedule};
use crate::session;
use crate::sys;
use crate::threshold::{self, Watch};
use crate::work::{Dealer, Job, Jobs, Shared};
use crate::{diag, interrupt, report};

/// Session threads run shallow code (name resolution stays in the main
/// thread), so a small explicit stack keeps thousands of them cheap.
pub const STACK_SIZE: usize = 256 * 1024;

/// The --hlog writer's stack (zlib compression is stack hungry).
pub(crate) const HLOG_STACK_SIZE: usize = 4 << 20;

/// Most jobs queued at once (one slot is a few words).
const JOB_ROOM: usize = 1 << 16;

/// How often the dispatcher looks at SIGINT and the clock while it
/// waits for room in the channel.
const TICK: Duration = Duration::from_millis(50);

/// Holds the sessions back until every one of them exists, so that a
/// failed thread spawn ends the run before any traffic (test
/// `f36_thread_creation_fails`).
#[derive(Default)]
struct Latch {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Latch {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }
}

/// Runs all sessions to the end. A fatal session error ends the process
/// from inside its thread, as one fatal error ends the reference.
pub fn run(plan: Plan) -> Result<(), Error> {
    ensure_fds(plan.sessions)?;
    // A bad output path costs no traffic (and no --duration).
    output::check(&plan)?;
    if catches_interrupt(&plan) {
        // A first SIGINT or SIGTERM ends the run early, with its reports.
        let _ = sys::catch_interrupt();
    }
    if plan
        .scale
        .start_at
        .is_some_and(|at| at <= SystemTime::now())
    {
        diag::warn(b"--start-at is in the past; starting now");
    }
    let shared = Shared::new(plan);
    // A --metrics-listen port in use ends the run before any traffic.
    let listener = crate::metrics::bind(&shared)?;
    let stop_metrics = AtomicBool::new(false);
    // /metrics is served from before the first session to after the
    // reports (and --metrics-linger).
    thread::scope(|outer| {
        let _serving =
            crate::metrics::serve(outer, &shared, listener, &stop_metrics)?;
        run_sessions(&shared)?;
        finish(&shared);
        Ok(())
    })
}

/// The sessions, from the first connect to the last one's end.
fn run_sessions(shared: &Shared) -> Result<(), Error> {
    // A bad --hlog path ends the run before any connection.
    let hlog = output::open_hlog(shared)?;
    let room = shared.plan.messages.clamp(1, JOB_ROOM as u64) as usize;
    let (tx, rx) = bounded::<Job>(room);
    // --find-capacity empties the queue between steps.
    let drain = shared.plan.ext.capacity.is_some().then(|| rx.clone());
    let mut dealer = Dealer::new(&shared.plan);
    let queued = prefill(shared, &mut dealer, &tx, room);
    let done = AtomicBool::new(false);
    let start = Latch::default();
    // The receiver learns at once when the last session has ended: the
    // sender lives in `Sessions`, which the session threads share.
    let (alive, all_done) = bounded::<()>(0);
    thread::scope(|scope| {
        let sessions = Arc::new(Sessions {
            scope,
            shared,
            rx,
            start: &start,
            spawned: AtomicU32::new(0),
            _alive: alive,
        });
        let mut handles = Vec::new();
        for _ in 0..eager_sessions(&shared.plan) {
            match Sessions::spawn(&sessions) {
                Ok(Some(handle)) => handles.push(handle),
                Ok(None) => break,
                // Fatal at once; no session has sent a byte yet.
                Err(e) => die(shared, Error::Spawn(e)),
            }
        }
        let later = Arc::downgrade(&sessions);
        drop(sessions);
        interrupt::start_watch(scope, shared, &done)?;
        wait_for_start(&shared.plan);
        if sys::interrupted() {
            // Before the latch opens: no session takes a job, so a
            // signal during the --start-at wait connects nowhere.
            shared.stopping.store(true, Ordering::SeqCst);
        }
        start.open();
        if shared.plan.sessions > EAGER_SESSIONS {
            start_grower(scope, later)?;
        }
        if shared.stats.is_some() {
            start_intervals(scope, shared, hlog, &done)?;
        }
        if shared.plan.ext.progress {
            start_progress(scope, shared, &done)?;
        }
        dispatch(shared, &mut dealer, &tx, queued, drain.as_ref());
        drop(tx);
        watch(shared, &all_done);
        for handle in handles {
            handle.join().map_err(|_| Error::Internal("session died"))?;
        }
        // Sessions started later are joined by the scope itself.
        let _ = all_done.recv();
        done.store(true, Ordering::SeqCst);
        Ok::<(), Error>(())
    })
}

/// Checks every output file the run would write (what `run` checks
/// first), for --dry-run.
pub fn check_outputs(plan: &Plan) -> Result<(), Error> {
    output::check(plan)
}

/// Sessions started before any traffic (all of them for a small -s).
/// A thread that cannot be created then ends the run before the first
/// connect; the rest start as they are needed (`grow`).
const EAGER_SESSIONS: u32 = 64;

/// How often `grow` looks whether more sessions are needed.
const GROW_TICK: Duration = Duration::from_millis(10);

/// Ticks in a row the process must be mostly idle, with messages
/// queued, before more sessions start (one idle tick is noise on a
/// shared machine).
const IDLE_TICKS: u32 = 5;

fn eager_sessions(plan: &Plan) -> u32 {
    plan.sessions.min(EAGER_SESSIONS)
}

/// Starts session threads: one per session, each when it is needed.
///
/// The reference runs its sessions from one event loop and connects a
/// new one whenever the loop is idle; against a fast server it never
/// has more than a few hundred connected, against one that keeps its
/// clients waiting (a greeting delay, slow replies) it soon has all -s.
/// Idle threads are not free (stack and kernel pages, scheduler work,
/// and a flood of connects that overflows the server's accept queue),
/// so sessions here start the same way: a first group at once, then
/// more, doubling, whenever messages are queued and the process is
/// mostly waiting rather than working.
struct Sessions<'scope, 'env> {
    scope: &'scope thread::Scope<'scope, 'env>,
    shared: &'env Shared,
    rx: Receiver<Job>,
    start: &'env Latch,
    /// Sessions started so far (the next one's number).
    spawned: AtomicU32,
    /// Dropped with the last session: `all_done` disconnects.
    _alive: Sender<()>,
}

impl<'scope, 'env> Sessions<'scope, 'env> {
    /// Starts the next session, unless all -s have been started.
    fn spawn(
        this: &Arc<Self>,
    ) -> std::io::Result<Option<thread::ScopedJoinHandle<'scope, ()>>> {
        let limit = this.shared.plan.sessions;
        let next = this.spawned.fetch_update(
            Ordering::SeqCst,
            Ordering::SeqCst,
            |n| (n < limit).then_some(n + 1),
        );
        let Ok(n) = next else {
            return Ok(None);
        };
        let own = Arc::clone(this);
        thread::Builder::new()
            .name(format!("session-{n}"))
            .stack_size(STACK_SIZE)
            .spawn_scoped(this.scope, move || {
                own.start.wait();
                let jobs = Jobs {
                    rx: own.rx.clone(),
                    shared: own.shared,
                };
                if let Err(e) = session::run(&jobs, n as usize) {
                    die(own.shared, e);
                }
            })
            .map(Some)
    }

    /// Whether every session has been started.
    fn all_started(&self) -> bool {
        self.spawned.load(Ordering::SeqCst) >= self.shared.plan.sessions
    }
}

/// The thread that starts the sessions not started at once: after
/// `IDLE_TICKS` ticks in a row in which messages waited in the queue and
/// the process used less than half a core, as many more as run now. It ends
/// when all are started or all that were started have ended.
fn start_grower<'scope, 'env>(
    scope: &'scope thread::Scope<'scope, 'env>,
    sessions: Weak<Sessions<'scope, 'env>>,
) -> Result<(), Error> {
    thread::Builder::new()
        .name("grow".into())
        .stack_size(STACK_SIZE)
        .spawn_scoped(scope, move || grow(&sessions))
        .map(|_| ())
        .map_err(Error::Spawn)
}

fn grow(sessions: &Weak<Sessions>) {
    let mut cpu = sys::process_cpu();
    let mut at = Instant::now();
    let mut idle = 0;
    loop {
        thread::sleep(GROW_TICK);
        let Some(s) = sessions.upgrade() else { return };
        if s.all_started() || s.shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (cpu_now, at_now) = (sys::process_cpu(), Instant::now());
        let busy = cpu_now.saturating_sub(cpu) * 2 > at_now - at;
        (cpu, at) = (cpu_now, at_now);
        idle = if busy || s.rx.is_empty() { 0 } else { idle + 1 };
        if idle < IDLE_TICKS {
            continue;
        }
        idle = 0;
        for _ in 0..s.spawned.load(Ordering::SeqCst) {
            match Sessions::spawn(&s) {
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => die(s.shared, Error::Spawn(e)),
            }
        }
    }
}

/// --start-at: sleeps until then (at once if it has passed, or on
/// SIGINT, which the dispatcher then sees).
fn wait_for_start(plan: &Plan) {
    let Some(at) = plan.scale.start_at else {
        return;
    };
    while !sys::interrupted() {
        match at.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => thread::sleep(left.min(TICK)),
            _ => return,
        }
    }
}

/// A fatal error: the fatal line, then the reports (if any; one that
/// fails is a warning, the status is 1 anyway); exit 1.
/// The report is made on a thread of its own: compressing its
/// histograms needs more stack than a session thread has.
fn die(shared: &Shared, e: Error) -> ! {
    // No session writes another byte: the report's counts are then what
    // the server can have seen, with what was in flight as unknown.
    shared.halt();
    diag::fatal_then(&e.text(), || {
        let report = || {
            for text in output::report_once(shared, Some(&e)) {
                diag::warn(&text);
            }
        };
        thread::scope(|s| {
            let spawned = thread::Builder::new()
                .stack_size(HLOG_STACK_SIZE)
                .spawn_scoped(s, report);
            if let Ok(handle) = spawned {
                let _ = handle.join();
            }
        });
    })
}

/// After the last session: -c's newline, then the reports, then
/// --metrics-linger, then the exit status a failed report or a signal
/// calls for.
fn finish(shared: &Shared) {
    if shared.plan.count {
        diag::end_count();
    }
    let failures = output::report_once(shared, None);
    crate::metrics::linger(shared);
    output::end(failures);
}

/// A plain count run queues what fits before any session starts, so
/// sessions never wait on (or contend with) the dispatcher for it.
fn prefill(
    shared: &Shared,
    dealer: &mut Dealer,
    tx: &Sender<Job>,
    room: usize,
) -> u64 {
    let ext = &shared.plan.ext;
    if ext.rate.is_some() || ext.duration.is_some() {
        return 0;
    }
    let n = shared.plan.messages.min(room as u64);
    for _ in 0..n {
        let _ = tx.try_send(dealer.deal(None));
    }
    n
}

/// Hands out the jobs: all at once, on the --rate or --stages schedule,
/// or step by step for --find-capacity; until --duration (or the last
/// stage) ends, a threshold breaks, or a SIGINT stops it.
fn dispatch(
    shared: &Shared,
    dealer: &mut Dealer,
    tx: &Sender<Job>,
    queued: u64,
    drain: Option<&Receiver<Job>>,
) {
    let plan = &shared.plan;
    let start = shared.started();
    let end = plan.ext.duration.map(|d| start + d);
    if let (Some(capacity), Some(drain)) = (&plan.ext.capacity, drain) {
        search(shared, dealer, tx, capacity, drain);
        shared.stopping.store(true, Ordering::SeqCst);
        return;
    }
    let profile = profile(plan);
    if let (Some(p), Some(stats)) = (&profile, &shared.stats) {
        stats.set_target(p.clone());
    }
    let mut schedule = profile
        .map(|p| Schedule::on(start, p, plan.ext.arrival, plan.seed, 0));
    for _ in queued..plan.messages {
        let due = match schedule.as_mut() {
            None => None,
            Some(s) => match s.next_start() {
                None => break,
                due => due,
            },
        };
        if let Some(at) = due {
            // The lag is measured when a session starts the message
            // (`Stats::schedule_lag`), which includes this wait.
            if !sleep_until(at, end) {
                break;
            }
        }
        if !send(tx, dealer.deal(due), end) {
            break;
        }
    }
    if stopped(end) {
        shared.stopping.store(true, Ordering::SeqCst);
    }
}

/// The open-loop rate profile: --stages from --rate (or 0), or --rate.
fn profile(plan: &crate::plan::Plan) -> Option<Profile> {
    let ext = &plan.ext;
    let rate = ext.rate.map(|r| r.0);
    match &ext.stages {
        Some(stages) => Some(Profile::stages(rate.unwrap_or(0.0), stages)),
        None => rate.map(Profile::constant),
    }
}

/// --find-capacity: runs steps at the rates the search asks for, each
/// judged on its measured part, until the search is over.
fn search(
    shared: &Shared,
    dealer: &mut Dealer,
    tx: &Sender<Job>,
    plan: &crate::capacity::CapacityPlan,
    drain: &Receiver<Job>,
) {
    use crate::capacity::{Capacity, Search};
    let Some(stats) = &shared.stats else { return };
    let mut search = Search::new(plan);
    let mut step_start = shared.started();
    let mut log = Capacity {
        rate: None,
        step_seconds: plan.step.as_secs_f64(),
        warmup_seconds: plan.warmup().as_secs_f64(),
        precision: plan.precision,
        steps: Vec::new(),
    };
    for n in 0.. {
        let rate = search.rate();
        stats.extend_target(plan.step.as_secs_f64(), rate);
        let Some(step) =
            run_step(shared, dealer, tx, plan, rate, step_start, n)
        else {
            break;
        };
        // What the step left queued or in flight would only slow the
        // next one: it starts when they are gone.
        while drain.try_recv().is_ok() {}
        if !settle(stats, plan.step) {
            break;
        }
        let now = Instant::now();
        let idle = now.saturating_duration_since(step_start + plan.step);
        stats.extend_target(idle.as_secs_f64(), 0.0);
        let ok = step.ok;
        log.steps.push(step);
        log.rate = search.answer().or(ok.then_some(rate));
        *stats.capacity.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(log.clone());
        if search.record(ok).is_none() {
            break;
        }
        step_start = now;
    }
    log.rate = search.answer();
    *stats.capacity.lock().unwrap_or_else(|e| e.into_inner()) = Some(log);
}

/// Waits (at most `limit`) until no message is in flight; false when
/// the run was stopped meanwhile.
fn settle(stats: &Stats, limit: Duration) -> bool {
    let from = Instant::now();
    while from.elapsed() < limit {
        if stopped(None) {
            return false;
        }
        if stats.snapshot_now().counts.unknown == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    true
}

/// One capacity step at `rate` from `from`: None when the run was
/// stopped meanwhile.
fn run_step(
    shared: &Shared,
    dealer: &mut Dealer,
    tx: &Sender<Job>,
    plan: &crate::capacity::CapacityPlan,
    rate: f64,
    from: Instant,
    n: u64,
) -> Option<crate::capacity::Step> {
    let stats = shared.stats.as_ref()?;
    let (warm_end, end) = (from + plan.warmup(), from + plan.step);
    let run_end = shared.plan.ext.duration.map(|d| shared.started() + d);
    let arrival = shared.plan.ext.arrival;
    let mut schedule = Schedule::on(
        from,
        Profile::constant(rate),
        arrival,
        shared.plan.seed,
        n,
    );
    let mut warm = None;
    while let Some(at) = schedule.next_start().filter(|at| *at < end) {
        if warm.is_none() && at >= warm_end {
            sleep_until(warm_end, None).then_some(())?;
            warm = Some(stats.snapshot_now());
        }
        sleep_until(at, None).then_some(())?;
        // Bounded by the run's end, not the step's: a dispatcher that
        // woke late still sends what was due (and it counts as latency).
        send(tx, dealer.deal(Some(at)), run_end).then_some(())?;
    }
    sleep_until(end, None).then_some(())?;
    let warm = warm.unwrap_or_else(|| stats.snapshot_now());
    let window = stats.snapshot_now().since(&warm);
    Some(judge_step(&shared.plan.ext.thresholds, &window, rate))
}

/// A step passes when every threshold holds on its measured part and
/// the server kept up with its rate.
fn judge_step(
    all: &[threshold::Threshold],
    window: &threshold::Snapshot,
    rate: f64,
) -> crate::capacity::Step {
    let m = window.measured();
    let held = threshold::judge_all(all, &m).iter().all(|v| v.ok);
    let accepted = window.counts.accepted as f64;
    let achieved = match m.seconds > 0.0 {
        true => accepted / m.seconds,
        false => 0.0,
    };
    // One message of slack: at a few messages a second, the window's
    // edges alone cost one.
    let kept_up = accepted + 1.0 >= KEEP_UP * rate * m.seconds;
    let t = &window.latency[crate::report::stats::Phase::Transaction as usize];
    let q = |q| (!t.is_empty()).then(|| t.value_at_quantile(q) as f64 / 1e3);
    crate::capacity::Step {
        target: rate,
        achieved,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        errors: window.counts.errors.iter().sum::<u64>()
            + window.counts.failed,
        ok: held && kept_up,
    }
}

/// Thresholds with `,abort=WINDOW`, judged once an interval over their
/// trailing window: the first breach stops the run.
struct Breaches {
    watch: Option<Watch>,
}

impl Breaches {
    fn new(plan: &crate::plan::Plan) -> Self {
        let all = &plan.ext.thresholds;
        let watch = (plan.ext.capacity.is_none()
            && all.iter().any(|t| t.abort.is_some()))
        .then(|| Watch::new(all.to_vec()));
        Breaches { watch }
    }

    fn check(&mut self, shared: &Shared, stats: &Stats) {
        let Some(w) = &mut self.watch else { return };
        let Some(breach) = w.push(stats.snapshot_now()) else {
            return;
        };
        let mut text = b"threshold breached, stopping: ".to_vec();
        text.extend_from_slice(breach.expr.as_bytes());
        text.extend_from_slice(
            format!(" (measured {})", breach.value_text()).as_bytes(),
        );
        let text = diag::censored(&String::from_utf8_lossy(&text));
        diag::warn(text.as_bytes());
        *stats.breach.lock().unwrap_or_else(|e| e.into_inner()) = Some(breach);
        BREACHED.store(true, Ordering::SeqCst);
        shared.stopping.store(true, Ordering::SeqCst);
        self.watch = None;
    }
}

/// Set when an abort threshold broke: dispatching stops, as at the end
/// of --duration.
static BREACHED: AtomicBool = AtomicBool::new(false);

/// With everything queued, a SIGINT or the end of --duration must still
/// stop the sessions from taking queued jobs: watch for it until the
/// sessions are done.
fn watch(shared: &Shared, all_done: &Receiver<()>) {
    let ext = &shared.plan.ext;
    if !catches_interrupt(&shared.plan)
        || shared.stopping.load(Ordering::SeqCst)
    {
        return;
    }
    let end = ext.duration.map(|d| shared.started() + d);
    // Disconnected: every session has ended (no TICK of idle waiting).
    while all_done.recv_timeout(TICK).is_err_and(|e| e.is_timeout()) {
        if stopped(end) {
            shared.stopping.store(true, Ordering::SeqCst);
            return;
        }
    }
}

/// Whether a first SIGINT or SIGTERM ends the run with its reports and
/// last progress line (otherwise both keep their default action, as in
/// the reference).
fn catches_interrupt(plan: &Plan) -> bool {
    interrupt::catches(plan)
}

/// Whether dispatching must stop: --duration over, a threshold broke,
/// or SIGINT.
fn stopped(end: Option<Instant>) -> bool {
    sys::interrupted()
        || BREACHED.load(Ordering::SeqCst)
        || end.is_some_and(|e| Instant::now() >= e)
}

/// Sleeps until `at`; false if the run was stopped meanwhile.
fn sleep_until(at: Instant, end: Option<Instant>) -> bool {
    loop {
        if stopped(end) {
            return false;
        }
        let now = Instant::now();
        if now >= at {
            return true;
        }
        thread::sleep((at - now).min(TICK));
    }
}

/// Queues a job, waiting for room; false if the run was stopped or every
/// session is gone.
fn send(tx: &Sender<Job>, job: Job, end: Option<Instant>) -> bool {
    loop {
        if stopped(end) {
            return false;
        }
        match tx.send_timeout(job, TICK) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(_)) => {}
            Err(SendTimeoutError::Disconnected(_)) => return false,
        }
    }
}

/// A thread that closes one interval a second until the sessions are
/// done: kept for the report's `"intervals"`, and written to --hlog.
fn start_intervals<'s>(
    scope: &'s thread::Scope<'s, '_>,
    shared: &'s Shared,
    mut log: Option<report::HistogramLog<std::fs::File>>,
    done: &'s AtomicBool,
) -> Result<(), Error> {
    let stats = shared.stats.as_ref().ok_or(Error::Internal("no stats"))?;
    thread::Builder::new()
        .name("intervals".into())
        // Compressing a histogram needs far more stack than a session.
        .stack_size(HLOG_STACK_SIZE)
        .spawn_scoped(scope, move || {
            let mut watch = Breaches::new(&shared.plan);
            let mut from = stats.started_wall;
            loop {
                let last = wait_interval(done);
                let now = SystemTime::now();
                let length = now.duration_since(from).unwrap_or_default();
                let taken = stats.take_interval(Reader::Intervals);
                let h = &taken.hist;
                output::log_interval(&shared.plan, &mut log, h, from, length);
                stats.push_interval(stats.interval(from, now, &taken));
                watch.check(shared, stats);
                from = now;
                if last {
                    break;
                }
            }
        })
        .map_err(Error::Spawn)?;
    Ok(())
}

/// --progress: a thread that prints the status line every second and
/// the last one when the sessions are done.
fn start_progress<'s>(
    scope: &'s thread::Scope<'s, '_>,
    shared: &'s Shared,
    done: &'s AtomicBool,
) -> Result<(), Error> {
    use std::io::IsTerminal;
    let stats = shared.stats.as_ref().ok_or(Error::Internal("no stats"))?;
    let lines = match std::io::stderr().is_terminal() {
        true => diag::StatusLines::Rewrite,
        false => diag::StatusLines::Append,
    };
    let rate = shared.plan.ext.rate.map(|(rate, _)| rate);
    // The open-loop target over the last second: a --stages ramp or a
    // capacity step moves it; a constant --rate does not.
    let target = move |elapsed: Duration| {
        let to = stats.started_wall + elapsed;
        let from = to - elapsed.min(Duration::from_secs(1));
        stats.target_between(from, to).or(rate)
    };
    thread::Builder::new()
        .name("progress".into())
        .stack_size(STACK_SIZE)
        .spawn_scoped(scope, move || {
            crate::report::progress::run(stats, done, lines, &target)
        })
        .map_err(Error::Spawn)?;
    Ok(())
}

/// Waits one second (or until the run is done); true when done.
fn wait_interval(done: &AtomicBool) -> bool {
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if done.load(Ordering::SeqCst) {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    done.load(Ordering::SeqCst)
}

/// Descriptors a run needs besides one socket per session.
const SPARE_FDS: u64 = 16;

/// Raises the soft open-file limit toward the hard one, and fails
/// before any connect if `-s` still cannot fit (the reference does
/// neither: man page NOTES, X10).
fn ensure_fds(sessions: u32) -> Result<(), Error> {
    let want = u64::from(sessions) + SPARE_FDS;
    let have = sys::raise_nofile(want).unwrap_or(0);
    if have >= want {
        return Ok(());
    }
    Err(Error::Config(Config::OpenFiles {
        sessions,
        want,
        have,
    }))
}
