//! session: one SMTP/LMTP session thread's work: connect, the banner
//! and greeting, the secure steps, then transactions, each run by the
//! I/O-free core in `txn` (`drive`), and QUIT.
//!
//! This is the only code that reads or writes a socket. Every read is a
//! bounded line read against the stage deadline; every error names its
//! stage. A session never prints a fatal error itself: it returns it.
//!
//! Submodules: `io` (command writes, reply reads, their errors),
//! `drive` (a transaction: what the core says, written; its replies,
//! read), `secure` (PROXY, TLS, XCLIENT, AUTH), `measure` (the --report
//! hooks).

mod drive;
mod io;
mod measure;
mod params;
mod secure;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;

use crate::command::{split_recipient, Command, RcptAddr};
use crate::diag;
use crate::draw;
use crate::error::{reject_text, Error, Stage};
use crate::lineio::LineReader;
use crate::message::MessageId;
use crate::net::{self, SocketOptions};
use crate::plan::Delay;
use crate::plan::{Greeting, Numbering, Plan};
use crate::reply::{self, Capabilities, Reply};
use crate::report::stats::{self, Phase, Recorder};
use crate::transport::Transport;
use crate::txn::open::{OpenStep, Opening};
use crate::txn::{self, Fate, Heard, Said};
use crate::work::{Claim, Job, Jobs, Shared};

/// The pause between connect attempts (the reference's usleep(10)).
const RETRY_PAUSE: Duration = Duration::from_micros(10);

/// How long to wait for the server's reason after a failed message
/// write (the reply a server sends before it stops reading).
const LAST_WORDS_WAIT: Duration = Duration::from_secs(2);

/// What a step left the connection in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Go,
    /// 421/521 under -A: closed without QUIT.
    Closed,
    /// A refused STARTTLS, XCLIENT or AUTH under -A: QUIT, then close.
    Abandon,
}

/// How a reply of the greeting or a secure step was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    /// Rejected under -A, not 421/521: warned, go on.
    Rejected,
    /// 421/521 under -A: warned, close now.
    Closing,
}

/// What follows a connection.
enum After {
    /// Wait the -w/-R delay, then ask for the next message.
    Delay,
    /// The session already waited and found no work left.
    Done,
}

/// A connection, its line reader and what the server offers.
pub(crate) struct Link {
    pub(crate) conn: Transport,
    reader: LineReader,
    pub(crate) caps: Capabilities,
    /// The server accepted a MAIL in a pipelined group on this
    /// connection: it reads groups, so a BDAT chunk may join one.
    pub(crate) proven: bool,
    /// This connection's number in the run (from 0): it picks the
    /// --xclient and --proxy-source address and the --auth-file user.
    pub(crate) n: u64,
    /// The last EHLO/LHLO reply (for "not offered" diagnostics).
    pub(crate) greeting: Option<Reply>,
}

/// One session's state across its connections.
pub struct Session<'a> {
    pub(crate) sh: &'a Shared,
    pub(crate) jobs: &'a Jobs<'a>,
    /// -C budget: connect attempts for the whole run, not per
    /// connection.
    connects_left: u32,
    pub(crate) wire: Vec<u8>,
    /// With --pipelining and -d: the next transaction's group, written
    /// behind this message's dot ...
    pub(crate) ahead_wire: Vec<u8>,
    /// ... and its transaction, driven next on this connection.
    ahead: Option<drive::Pending>,
    pub(crate) rec: Option<Recorder<'a>>,
    /// The current message goes out with BDAT (for the report's label).
    pub(crate) bdat_now: bool,
    /// When the last write began: a reply's latency counts from it.
    pub(crate) last_write: Instant,
    /// Bytes of the last `write` that left (a command counts as sent
    /// only once all of its bytes did).
    pub(crate) wrote: usize,
    /// While the core's commands are written (`write_sends`): the last
    /// write's permit, held until the core has been told what left and
    /// the counts are in the report's ledgers, so that a halt cannot
    /// take its snapshot between a write and its count.
    pub(crate) held: Option<crate::work::WritePermit<'a>>,
    /// `write` keeps its permit in `held` (see there).
    pub(crate) hold_permits: bool,
    /// 3.9 numbering: the last recipient sent, for To:.
    last_rcpt: Vec<u8>,
    /// -N, 3.9 numbering: the first number of the transaction's
    /// recipients (taken as one block when its first RCPT is queued).
    rcpt_base: u64,
    /// The block of `rcpt_base` was taken early, for headers rendered
    /// before the RCPTs (`params`): the first RCPT takes no other.
    rcpt_block_taken: bool,
    /// The headers of message n, rendered at its MAIL to know its size
    /// (`params`), used at its content.
    early_headers: Option<(u64, Vec<u8>)>,
    /// Which claim comes next (the first was counted at the start).
    next_claim: Claim,
    pub(crate) job: Job,
    /// `job` was claimed and no transaction has taken it yet: if the
    /// connection dies first, it failed.
    in_hand: bool,
    /// TLS settings for this session's connections (its own session
    /// cache with --tls-resume).
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The -R pauses: this session's stream of the run seed.
    rng: StdRng,
    /// A connection of this session is open (for --progress).
    linked: bool,
    /// This session's number (from 0).
    pub(crate) n: usize,
}

/// Said once per run under -v when PIPELINING is not offered.
static NO_PIPELINING_NOTED: AtomicBool = AtomicBool::new(false);
/// Said once per run under -v when CHUNKING is not offered.
static NO_CHUNKING_NOTED: AtomicBool = AtomicBool::new(false);

/// Runs one session until no message is left for it.
pub fn run(jobs: &Jobs, n: usize) -> Result<(), Error> {
    let sh = jobs.shared;
    let mut s = Session {
        sh,
        jobs,
        connects_left: sh.plan.connect_count,
        wire: Vec::with_capacity(512),
        ahead_wire: Vec::new(),
        ahead: None,
        rec: sh.stats.as_ref().map(|st| st.recorder(n)),
        bdat_now: false,
        last_write: Instant::now(),
        wrote: 0,
        held: None,
        hold_permits: false,
        last_rcpt: Vec::new(),
        rcpt_base: 0,
        rcpt_block_taken: false,
        early_headers: None,
        next_claim: Claim::First,
        job: Job::default(),
        in_hand: false,
        tls_config: sh.plan.security.tls.as_ref().map(|t| t.session_config()),
        rng: draw::stream(sh.plan.seed, draw::Purpose::Delay, n as u64),
        linked: false,
        n,
    };
    while s.claim() {
        let after = s.connection();
        s.flush_stats();
        match after {
            Ok(After::Delay) => s.delay(),
            Ok(After::Done) => break,
            // Whoever halted the run reports it; what was in flight
            // stays unknown.
            Err(Error::Halted) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl<'a> Session<'a> {
    /// Takes the next job, if any.
    fn claim(&mut self) -> bool {
        let claim = std::mem::replace(&mut self.next_claim, Claim::Next);
        match self.jobs.claim(claim) {
            Some(job) => self.take(job),
            None => false,
        }
    }

    /// Starts work on a claimed job: counted as attempted at once.
    pub(crate) fn take(&mut self, job: Job) -> bool {
        self.job = job;
        self.in_hand = true;
        if let Some(r) = &self.rec {
            r.claimed();
        }
        if let (Some(due), Some(stats)) = (job.due, &self.sh.stats) {
            // --rate: how far behind its schedule this message starts.
            let lag = Instant::now().saturating_duration_since(due);
            stats.schedule_lag(job.n, lag);
        }
        true
    }

    /// One connection: greeting, then transactions until done. A fatal
    /// error on it counts the message in hand as failed (unless the run
    /// was halted: then it is in flight, unknown).
    fn connection(&mut self) -> Result<After, Error> {
        let out = self.connection_inner();
        self.unlinked();
        if out.as_ref().is_err_and(|e| !matches!(e, Error::Halted)) {
            self.fail_in_hand();
        }
        self.in_hand = false;
        out
    }

    /// The message in hand never got a transaction: its connection
    /// died first. It is not sent again (the reference does not).
    fn fail_in_hand(&mut self) {
        if std::mem::take(&mut self.in_hand) {
            if let Some(r) = &mut self.rec {
                r.message(Fate::Failed);
            }
        }
    }

    fn connection_inner(&mut self) -> Result<After, Error> {
        let mut link = self.connect()?;
        match self.open(&mut link)? {
            Flow::Go => {}
            Flow::Closed => {
                self.fail_in_hand();
                return Ok(After::Delay);
            }
            Flow::Abandon => {
                self.fail_in_hand();
                self.quit(&mut link);
                return Ok(After::Delay);
            }
        }
        loop {
            let flow = self.transaction(&mut link)?;
            if flow == Flow::Closed {
                return Ok(After::Delay);
            }
            if !self.more_on_this_connection() {
                self.quit(&mut link);
                return Ok(After::Delay);
            }
            // -d: the delay comes first, then the claim; a session that
            // finds nothing left says QUIT.
            self.delay();
            if !self.claim() {
                self.quit(&mut link);
                return Ok(After::Done);
            }
        }
    }

    /// -d, and messages are left to claim.
    pub(crate) fn more_on_this_connection(&self) -> bool {
        self.sh.plan.reuse && self.sh.unclaimed() >= 1
    }

    /// Whether this message goes out with BDAT: asked for and offered.
    fn bdat_offered(&self, link: &Link) -> bool {
        let want = self.sh.plan.ext.chunking;
        if want && !link.caps.has("CHUNKING") {
            note_once(&NO_CHUNKING_NOTED, self.sh.plan.verbose, b"CHUNKING");
        }
        want && link.caps.has("CHUNKING")
    }

    fn pipelined(&self, link: &Link) -> bool {
        let want = self.sh.plan.ext.pipelining;
        if want && !link.caps.has("PIPELINING") {
            note_once(
                &NO_PIPELINING_NOTED,
                self.sh.plan.verbose,
                b"PIPELINING",
            );
        }
        want && link.caps.has("PIPELINING")
    }

    fn connect(&mut self) -> Result<Link, Error> {
        let plan = &self.sh.plan;
        loop {
            let opts = SocketOptions {
                window: plan.window,
                bind: self.sh.next_bind(),
                keepalive: plan.keepalive,
                yield_first: plan.sessions > 1,
            };
            let started = Instant::now();
            let attempt = self.sh.gate.pass(|| {
                net::connect(&plan.addr, opts, plan.timeout, &mut |w| {
                    diag::warn(w.as_bytes())
                })
            });
            let err = match attempt {
                Ok(conn) => return Ok(self.connected(conn, started)),
                Err(e) => e,
            };
            self.error_class(stats::connect_class(&err));
            self.connects_left = self.connects_left.saturating_sub(1);
            if self.connects_left == 0 {
                return Err(Error::Connect(err));
            }
            let text = format!("connect: {}", crate::error::io_text(&err));
            diag::warn(text.as_bytes());
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    fn connected(&mut self, conn: Transport, started: Instant) -> Link {
        self.latency(Phase::Connect, started);
        self.linked();
        if let Some(r) = &mut self.rec {
            r.counts.connections += 1;
        }
        Link {
            conn,
            reader: LineReader::new(),
            caps: Capabilities::default(),
            proven: false,
            n: self.sh.conn_seq.fetch_add(1, Ordering::Relaxed),
            greeting: None,
        }
    }

    /// PROXY and SMTPS if asked, then the banner and, unless -o,
    /// HELO/EHLO/LHLO, STARTTLS, XCLIENT and AUTH if asked, in the
    /// order `txn::open` decides.
    fn open(&mut self, link: &mut Link) -> Result<Flow, Error> {
        let flow = self.prelude(link)?;
        if flow != Flow::Go {
            return Ok(flow);
        }
        let mut opening = Opening::new(self.open_plan());
        loop {
            let flow = match opening.step() {
                OpenStep::Banner => self.banner(link)?,
                OpenStep::Greet => self.greet(link)?,
                OpenStep::StartTls => self.starttls(link, &mut opening)?,
                OpenStep::Xclient => self.xclient(link)?,
                OpenStep::Auth => self.auth(link)?,
                OpenStep::Ready => return self.requiretls(link),
            };
            if flow != Flow::Go {
                return Ok(flow);
            }
            opening.advance();
        }
    }

    /// The server's banner; under -A a 421/521 closes like at every
    /// other stage.
    fn banner(&mut self, link: &mut Link) -> Result<Flow, Error> {
        let started = Instant::now();
        let banner = self.reply(link, Stage::Banner)?;
        self.observe(Stage::Banner, banner.code, started);
        Ok(match self.judge(Stage::Banner, banner)? {
            Verdict::Closing => Flow::Closed,
            _ => Flow::Go,
        })
    }

    /// HELO, EHLO or LHLO; an extended greeting's reply gives the
    /// connection's capabilities (replacing any from before STARTTLS
    /// or XCLIENT).
    fn greet(&mut self, link: &mut Link) -> Result<Flow, Error> {
        let name = &self.sh.plan.myhostname;
        let (cmd, stage) = match self.sh.plan.greeting {
            Greeting::None => return Ok(Flow::Go),
            Greeting::Helo => (Command::Helo(name), Stage::Helo),
            Greeting::Ehlo => (Command::Ehlo(name), Stage::Ehlo),
            Greeting::Lhlo => (Command::Lhlo(name), Stage::Lhlo),
        };
        let reply = self.command(link, cmd, stage)?;
        let positive = reply.is_positive();
        if self.sh.plan.ext.capabilities {
            link.caps = if positive {
                reply::capabilities(&reply)
            } else {
                Capabilities::default()
            };
            if self.sh.plan.security.after_greeting() {
                // Kept only where a diagnostic may quote it: a copy per
                // connection is not free on the plain ESMTP path.
                link.greeting = Some(reply.clone());
            }
        }
        Ok(match self.judge(stage, reply)? {
            Verdict::Closing => Flow::Closed,
            _ => Flow::Go,
        })
    }

    /// The sender of `job`: -f (or the default), or its turn of
    /// --sender-file.
    pub(crate) fn sender(&self, job: Job) -> &'a [u8] {
        let plan = &self.sh.plan;
        plan.content.sender(job.n, &plan.sender)
    }

    /// The number of the RCPT with `left` RCPTs to go, itself included
    /// (with --rcpt-file, its place in the list). -N numbers are taken
    /// as one block of -r at the first RCPT, so a message's recipients
    /// are numbered in a row whatever the other sessions do; nothing is
    /// built per recipient ahead of time.
    pub(crate) fn rcpt_number(&mut self, job: Job, left: u32) -> Option<u64> {
        let plan = &self.sh.plan;
        let r = u64::from(plan.recipients);
        let index = r - u64::from(left);
        match plan.numbering {
            Numbering::Sequence | Numbering::Appended => {
                if index == 0 && !std::mem::take(&mut self.rcpt_block_taken) {
                    self.rcpt_base =
                        self.sh.rcpt_seq.fetch_add(r, Ordering::Relaxed);
                }
                Some(self.rcpt_base + index)
            }
            // 3.7 count-down: `3foo`, `2foo`, then plain `foo`.
            Numbering::CountDown => (left > 1).then_some(u64::from(left)),
            Numbering::Plain => None,
            // Message n takes entries n*r .. n*r+r-1, in order.
            Numbering::File => Some(job.n * r + index),
        }
    }

    /// The address of one RCPT; with 3.9 numbering it is remembered for
    /// the To: header.
    pub(crate) fn rcpt_addr<'p>(
        &mut self,
        plan: &'p Plan,
        number: Option<u64>,
    ) -> RcptAddr<'p> {
        let addr = match (plan.numbering, number) {
            (Numbering::Appended, Some(number)) => {
                let (local, domain) = split_recipient(&plan.recipient);
                RcptAddr::Suffixed {
                    local,
                    number,
                    domain,
                }
            }
            (Numbering::File, Some(k)) => {
                RcptAddr::Prefixed(None, plan.content.rcpt(k))
            }
            _ => RcptAddr::Prefixed(number, &plan.recipient),
        };
        if names_last_rcpt(plan.numbering) {
            self.last_rcpt.clear();
            addr.write(&mut self.last_rcpt);
        }
        addr
    }

    /// Appends the headers of `job`'s message to `self.wire`.
    pub(crate) fn headers(&mut self, link: &Link, job: Job) {
        if let Some((n, early)) = self.early_headers.take() {
            if n == job.n {
                self.wire.extend_from_slice(&early);
                return;
            }
        }
        let sh = self.sh;
        if let Some(headers) = &sh.plan.headers {
            let id = MessageId {
                pid: sh.pid,
                fd: link.conn.fd(),
                counter: sh.id_counter(),
            };
            let to = names_last_rcpt(sh.plan.numbering)
                .then_some(self.last_rcpt.as_slice());
            let from =
                sh.plan.content.senders.is_some().then(|| self.sender(job));
            headers.write(from, to, sh.date(), id, &mut self.wire);
        }
    }

    /// The body of `job` as this message goes out: with its dot for
    /// DATA, raw for BDAT.
    pub(crate) fn body_of(&self, job: Job) -> &'a [u8] {
        let body = &self.sh.plan.content.bodies[job.body as usize];
        match (&body.raw, self.bdat_now) {
            (Some(raw), true) => raw,
            _ => &body.data,
        }
    }

    /// Writes the wire buffer (the headers, or a BDAT group), the body
    /// of `job` and `self.ahead_wire` (a look-ahead group) in one go;
    /// then -c counts the message.
    pub(crate) fn send_message(
        &mut self,
        link: &mut Link,
        job: Job,
    ) -> Result<(), Error> {
        let body = self.body_of(job);
        let (wire, ahead) = (
            std::mem::take(&mut self.wire),
            std::mem::take(&mut self.ahead_wire),
        );
        let result = self.write(link, &[&wire, body, &ahead], Stage::Message);
        let len = wire.len() + body.len();
        (self.wire, self.ahead_wire) = (wire, ahead);
        result?;
        self.size_class(job, len);
        if self.sh.plan.count {
            diag::count_message();
        }
        Ok(())
    }

    /// QUIT; its reply is best effort (a missing one is only noted under
    /// -v), then the socket is closed.
    fn quit(&mut self, link: &mut Link) {
        // Nothing waits on the QUIT reply: no point yielding for it.
        link.conn.set_yield(false);
        let outcome = self.command(link, Command::Quit, Stage::Quit);
        // Servers log a TLS connection that ends without close_notify.
        if let Some(_permit) = self.sh.write_permit(self.n) {
            link.conn
                .close_notify(Instant::now() + self.sh.plan.timeout);
        }
        if let Err(e) = outcome {
            if self.sh.plan.verbose > 0 && !matches!(e, Error::Halted) {
                let mut text = b"no reply to QUIT: ".to_vec();
                text.extend_from_slice(&e.text());
                diag::info(&text);
            }
        }
    }

    /// The -A policy (`txn::judge`) for the greeting and the secure
    /// steps, which want a 2xx: a refusal is fatal without -A; with it,
    /// a warning, and 421/521 close the connection.
    pub(crate) fn judge(
        &self,
        stage: Stage,
        reply: Reply,
    ) -> Result<Verdict, Error> {
        let said = if reply.is_positive() {
            Said::Yes
        } else {
            Said::No
        };
        let refusals = txn::refusals(self.sh.plan.allow_reject);
        let heard = txn::judge(refusals, reply.code, said);
        if matches!(heard, Heard::Refused | Heard::Closing) {
            diag::warn(&reject_text(stage, &reply));
        }
        match heard {
            Heard::Positive => Ok(Verdict::Ok),
            Heard::Refused | Heard::Quiet => Ok(Verdict::Rejected),
            Heard::Closing => Ok(Verdict::Closing),
            Heard::Fatal => Err(Error::Rejected { stage, reply }),
        }
    }

    /// The -w/-R pause between messages (whole seconds; -R uniform in
    /// 0..=interval).
    fn delay(&mut self) {
        let secs = delay_seconds(self.sh.plan.delay, &mut self.rng);
        if secs > 0 {
            std::thread::sleep(Duration::from_secs(secs));
        }
    }
}

/// Whether To: names the last recipient sent (3.9 numbering and
/// --rcpt-file), not the plan's recipient.
fn names_last_rcpt(numbering: Numbering) -> bool {
    matches!(numbering, Numbering::Appended | Numbering::File)
}

/// -v, once per run: an extension asked for is not offered.
fn note_once(noted: &AtomicBool, verbose: u32, what: &[u8]) {
    if verbose > 0 && !noted.swap(true, Ordering::Relaxed) {
        let text = [b"server does not offer ", what, b"; using lock-step"];
        diag::info(&text.concat());
    }
}

/// The -w/-R pause in whole seconds: -w exactly, -R uniform in
/// 0..=interval (any uniform draw; glibc's rand() sequence is not
/// reproduced).
pub(crate) fn delay_seconds(delay: Delay, rng: &mut impl rand::Rng) -> u64 {
    match delay {
        Delay::None => 0,
        Delay::Fixed(n) => u64::from(n),
        Delay::Random(n) => rng.gen_range(0..=u64::from(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_delay_is_uniform_over_whole_seconds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let mut seen = [0u32; 4];
        for _ in 0..40_000 {
            seen[delay_seconds(Delay::Random(3), &mut rng) as usize] += 1;
        }
        for n in seen {
            assert!((9_400..10_600).contains(&n), "{seen:?}");
        }
    }

    #[test]
    fn fixed_and_no_delay() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(delay_seconds(Delay::Fixed(2), &mut rng), 2);
        assert_eq!(delay_seconds(Delay::None, &mut rng), 0);
    }
}
