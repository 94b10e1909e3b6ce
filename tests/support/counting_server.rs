//! A counting SMTP/LMTP server for the accounting tests: it follows a
//! per-connection [`Policy`] (any reply code at any step, 421 then close,
//! close or reset with or without part of a reply, multi-line replies,
//! PIPELINING/CHUNKING offered or not, LMTP per-recipient replies) and
//! keeps its own count of what it saw and delivered ([`Seen`]), to hold
//! the client's report against.
//!
//! The counts must be exact despite timing, so:
//! * A reply counts as delivered when `write_all` returned: a later FIN
//!   keeps it (TCP delivers it before the EOF), so 421-then-close and
//!   close-at-QUIT never make a count uncertain.
//! * A fatal act (a close, reset or cut reply outside QUIT, or a refusal
//!   when the client runs without `-A`) first *freezes* the server: no
//!   other connection writes again, and the acting one waits until every
//!   counted 2xx already written is confirmed, i.e. its client sent
//!   another command after it. A lock-step client sends a command only
//!   after reading the reply before it, so every 2xx the server counted
//!   reached the client before the error that ends its run: the report's
//!   accepted counts must then equal the server's. A pipelining client
//!   cannot confirm this way (its next group left before the reply came
//!   back); with `confirm` off the server does not wait, and a case whose
//!   2xx could be lost is flagged [`Seen::ambiguous`] (assert bounds).
//! * Only the first fatal act runs, and after it no connection writes
//!   again, the acting one included (its client stops reading at the
//!   reply that ends its run); every case has at most one.
//!
//! Every wait is bounded (read ticks check a stop flag and a watchdog).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::spawn;

/// How often blocked reads look at the stop flag and the watchdog.
const TICK: Duration = Duration::from_millis(20);
/// A command or content line longer than this ends the connection.
const MAX_LINE: usize = 1 << 20;
/// A BDAT chunk larger than this ends the connection.
const MAX_CHUNK: usize = 16 << 20;

/// Where in a connection a reply is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    Banner,
    /// HELO, EHLO or LHLO.
    Helo,
    Mail,
    Rcpt,
    Data,
    /// The end-of-data reply (SMTP), after DATA content or BDAT LAST.
    Dot,
    /// One LMTP end-of-data reply: `nth` is the accepted recipient's
    /// index in the transaction.
    LmtpRcpt,
    /// A BDAT chunk that is not LAST.
    Bdat,
    Rset,
    Quit,
    Other,
}

/// What the server does at a reply point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// The positive reply (or, where the state forces one, the refusal a
    /// real server gives: 503 without MAIL, 554 without recipients).
    Normal,
    /// A refusal with this code; 421 and 521 are followed by a close.
    Code(u16),
    /// Close (FIN) instead of replying.
    Close,
    /// Reset (SO_LINGER 0, close) instead of replying.
    Reset,
    /// Part of the reply, then a close.
    CutClose,
    /// Part of the reply, then a reset.
    CutReset,
    /// Never reply; keep reading until the client goes away.
    Stall,
}

/// An [`Act`] and the form of the reply it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub act: Act,
    /// Send the reply as three lines (`250-a`, `250-b`, `250 c`).
    pub multiline: bool,
    /// Where a cut reply stops: after byte `1 + cut % (len - 1)`, so at
    /// least one byte is sent and never the whole reply.
    pub cut: usize,
    /// Wait this long before acting (a slow server).
    pub delay: Duration,
}

impl Reply {
    pub const NORMAL: Reply = Reply {
        act: Act::Normal,
        multiline: false,
        cut: 0,
        delay: Duration::ZERO,
    };

    pub fn act(act: Act) -> Reply {
        Reply {
            act,
            ..Reply::NORMAL
        }
    }
}

/// What the policy is told about a reply point.
#[derive(Clone, Copy, Debug)]
pub struct At {
    /// Connection index, in accept order, from 0.
    pub conn: usize,
    pub point: Point,
    /// Occurrence of `point` on this connection, from 0 (for
    /// [`Point::LmtpRcpt`]: the recipient's index in the transaction).
    pub nth: usize,
    /// MAIL commands received by the whole server so far, this one
    /// included.
    pub mails: usize,
}

/// The keywords an EHLO/LHLO reply advertises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub pipelining: bool,
    pub chunking: bool,
}

/// How one connection behaves.
pub trait Policy: Send {
    fn caps(&mut self) -> Caps;
    fn reply(&mut self, at: &At) -> Reply;
}

/// Makes the [`Policy`] of connection `i`.
pub type Factory = Arc<dyn Fn(usize) -> Box<dyn Policy> + Send + Sync>;

/// A policy from two closures (tests that script a few points).
pub struct FnPolicy<F: FnMut(&At) -> Reply + Send> {
    pub caps: Caps,
    pub reply: F,
}

impl<F: FnMut(&At) -> Reply + Send> Policy for FnPolicy<F> {
    fn caps(&mut self) -> Caps {
        self.caps
    }
    fn reply(&mut self, at: &At) -> Reply {
        (self.reply)(at)
    }
}

/// A factory whose every connection offers `caps` and asks `f`.
pub fn scripted<F>(caps: Caps, f: F) -> Factory
where
    F: Fn(&At) -> Reply + Send + Sync + Clone + 'static,
{
    Arc::new(move |_| {
        let f = f.clone();
        Box::new(FnPolicy {
            caps,
            reply: move |at: &At| f(at),
        })
    })
}

/// Server settings.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// LMTP: one end-of-data reply per accepted recipient.
    pub lmtp: bool,
    /// The client runs without `-A`: every refusal (but at QUIT) ends
    /// its run, so it is a fatal act.
    pub refusals_fatal: bool,
    /// A fatal act freezes the other connections (the default). Without,
    /// they go on serving, as a real server would, and the counts can
    /// only be bounded.
    pub freeze: bool,
    /// Before a fatal act, wait (up to `confirm_limit`) until every
    /// counted 2xx was confirmed. Only meaningful with a lock-step
    /// client.
    pub confirm: bool,
    pub confirm_limit: Duration,
    /// After this every connection is dropped.
    pub watchdog: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lmtp: false,
            refusals_fatal: false,
            freeze: true,
            confirm: true,
            confirm_limit: Duration::from_secs(2),
            watchdog: Duration::from_secs(30),
        }
    }
}

/// What the server saw and did, summed over connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub conns: usize,
    /// MAIL commands read (and answered or acted on).
    pub mails: usize,
    /// RCPT commands read.
    pub rcpts: usize,
    /// RCPT 2xx replies fully written.
    pub rcpt_ok: usize,
    /// End-of-data points reached (DATA content or BDAT LAST read).
    pub dots: usize,
    /// Messages whose end-of-data 2xx (LMTP: at least one) was fully
    /// written.
    pub delivered: usize,
    /// Fatal acts carried out (at most one, see the module doc).
    pub fatal: usize,
    /// A counted 2xx may not have reached the client before a fatal
    /// act (assert bounds, not equality).
    pub ambiguous: bool,
    /// 421/521 replies written (with close).
    pub closing_replies: usize,
    /// Refusals written (QUIT excluded).
    pub refusals: usize,
    /// Messages the server's replies classed as rejected: the
    /// transaction ended by a refusal other than 421/521 (MAIL, DATA, end
    /// of data or a BDAT chunk refused, or RSET after every RCPT was).
    pub rejected: usize,
    /// Messages cut by a 421/521: their transaction's, one at the
    /// greeting or HELO (the session had taken a message before it
    /// connected), and each MAIL that arrived after it (a pipelined
    /// look-ahead).
    pub failed: usize,
    /// A 421/521 to RSET, or a transaction the client left without a
    /// verdict: `rejected` and `failed` are not to be compared.
    pub classes_ambiguous: bool,
}

/// The freeze and the unconfirmed 2xx of each connection.
#[derive(Default)]
struct Freeze {
    by: Option<usize>,
    /// Connection indexes with a counted 2xx not yet confirmed.
    unconfirmed: Vec<usize>,
}

struct Shared {
    opts: Options,
    factory: Factory,
    stop: AtomicBool,
    deadline: Instant,
    seen: Mutex<Seen>,
    freeze: Mutex<Freeze>,
    freeze_cv: Condvar,
    logs: Mutex<Vec<(usize, Vec<String>)>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }

    fn count(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().expect("seen lock"));
    }
}

/// A running counting server on `127.0.0.1:0`.
pub struct CountingServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl CountingServer {
    pub fn start(factory: Factory, opts: Options) -> CountingServer {
        let listener = listen();
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            opts,
            factory,
            stop: AtomicBool::new(false),
            deadline: Instant::now() + opts.watchdog,
            seen: Mutex::new(Seen::default()),
            freeze: Mutex::new(Freeze::default()),
            freeze_cv: Condvar::new(),
            logs: Mutex::new(Vec::new()),
            handles: Mutex::new(Vec::new()),
        });
        let sh = Arc::clone(&shared);
        let acceptor =
            spawn("count-accept", move || accept_loop(listener, sh));
        CountingServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Stop (after the client exited), wait for every connection, and
    /// return the counts and a log per connection.
    pub fn finish(mut self) -> (Seen, String) {
        self.stop();
        let seen = self.shared.seen.lock().expect("seen").clone();
        let mut logs = self.shared.logs.lock().expect("logs").clone();
        logs.sort_by_key(|(i, _)| *i);
        let mut text = String::new();
        for (i, lines) in logs {
            text.push_str(&format!("--- connection {i}\n"));
            for l in lines {
                text.push_str(&l);
                text.push('\n');
            }
        }
        (seen, text)
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.freeze_cv.notify_all();
        // Wake the blocking accept().
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        let handles: Vec<_> = self
            .shared
            .handles
            .lock()
            .expect("handles")
            .drain(..)
            .collect();
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback listener with a deep backlog (thousands of sessions may
/// connect at once).
fn listen() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    sock.bind(&any.into()).expect("bind");
    sock.listen(4096).expect("listen");
    sock.into()
}

fn accept_loop(listener: TcpListener, sh: Arc<Shared>) {
    let mut index = 0;
    loop {
        let Ok((stream, _)) = listener.accept() else {
            if sh.stopping() {
                return;
            }
            continue;
        };
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        let i = index;
        index += 1;
        sh.count(|s| s.conns += 1);
        let policy = (sh.factory)(i);
        let sh2 = Arc::clone(&sh);
        let h = spawn("count-conn", move || {
            let mut c = Conn::new(i, stream, policy, Arc::clone(&sh2));
            c.serve();
            c.settle();
            c.forget();
            sh2.logs.lock().expect("logs").push((i, c.log));
        });
        sh.handles.lock().expect("handles").push(h);
    }
}

/// Why serving a connection stopped.
enum Gone {
    /// The client closed, reset, or the server stopped.
    Client,
    /// The server closed or reset it (or froze).
    Server,
}

/// The class of a message, as the server's replies give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Rejected,
    Failed,
}

/// Transaction state, as a real server keeps it.
#[derive(Default)]
struct Tx {
    /// MAIL accepted and no end of data or RSET since.
    open: bool,
    /// Recipients accepted in the open transaction.
    accepted: usize,
}

struct Conn {
    index: usize,
    /// None once reset.
    s: Option<TcpStream>,
    policy: Box<dyn Policy>,
    sh: Arc<Shared>,
    buf: Vec<u8>,
    counts: std::collections::HashMap<&'static str, usize>,
    tx: Tx,
    log: Vec<String>,
    caps: Caps,
    /// The greeting was EHLO or LHLO (its reply lists `caps`).
    extended: bool,
    /// A MAIL was read and its message has no class yet.
    pending: bool,
    /// The socket was shut down for writing (or reset).
    closed: bool,
    /// ... after a 421 or 521 reply.
    closed_by_code: bool,
}

impl Conn {
    fn new(
        index: usize,
        s: TcpStream,
        policy: Box<dyn Policy>,
        sh: Arc<Shared>,
    ) -> Conn {
        let _ = s.set_read_timeout(Some(TICK));
        let _ = s.set_nodelay(true);
        let mut policy = policy;
        let caps = policy.caps();
        Conn {
            index,
            s: Some(s),
            policy,
            caps,
            extended: false,
            pending: false,
            closed_by_code: false,
            sh,
            buf: Vec::new(),
            counts: Default::default(),
            tx: Tx::default(),
            log: Vec::new(),
            closed: false,
        }
    }

    fn nth(&mut self, p: Point) -> usize {
        let key = match p {
            Point::Banner => "banner",
            Point::Helo => "helo",
            Point::Mail => "mail",
            Point::Rcpt => "rcpt",
            Point::Data => "data",
            Point::Dot => "dot",
            Point::LmtpRcpt => "lmtp",
            Point::Bdat => "bdat",
            Point::Rset => "rset",
            Point::Quit => "quit",
            Point::Other => "other",
        };
        let n = self.counts.entry(key).or_insert(0);
        *n += 1;
        *n - 1
    }

    fn serve(&mut self) {
        if self.reply_at(Point::Banner).is_err() {
            return;
        }
        while let Ok(line) = self.read_line() {
            self.confirm();
            let text = String::from_utf8_lossy(&line).into_owned();
            self.log.push(format!("C: {}", text.trim_end()));
            if self.command(&line).is_err() {
                return;
            }
        }
    }

    /// After serving: keep reading (without answering) until the client
    /// goes away, so a close is a FIN the client reads after our last
    /// reply, never an RST caused by unread data. A frozen connection
    /// still counts the commands it receives (its client wrote them).
    fn settle(&mut self) {
        let frozen = !self.closed && self.s.is_some();
        while let Ok(line) = self.read_line() {
            if self.closed_by_code && verb(&line) == "MAIL" {
                self.log.push("C (after close): MAIL".into());
                self.sh.count(|s| s.failed += 1);
            }
            if !frozen {
                continue;
            }
            self.confirm();
            let text = String::from_utf8_lossy(&line).into_owned();
            self.log.push(format!("C (frozen): {}", text.trim_end()));
            match verb(&line).as_str() {
                "MAIL" => self.sh.count(|s| s.mails += 1),
                "RCPT" => self.sh.count(|s| s.rcpts += 1),
                _ => {}
            }
        }
    }

    /// The connection is over: nothing of it is waited for any more.
    fn forget(&self) {
        let mut f = self.sh.freeze.lock().expect("freeze");
        f.unconfirmed.retain(|&c| c != self.index);
        self.sh.freeze_cv.notify_all();
    }

    /// The client sent something after our replies: every 2xx before
    /// was read (true of a lock-step client).
    fn confirm(&self) {
        let mut f = self.sh.freeze.lock().expect("freeze");
        if let Some(p) = f.unconfirmed.iter().position(|&c| c == self.index) {
            f.unconfirmed.swap_remove(p);
            self.sh.freeze_cv.notify_all();
        }
    }

    fn command(&mut self, line: &[u8]) -> Result<(), Gone> {
        let verb = verb(line);
        match verb.as_str() {
            "HELO" | "EHLO" | "LHLO" => {
                self.tx = Tx::default();
                self.extended = verb != "HELO";
                self.reply_at(Point::Helo)
            }
            "MAIL" => {
                self.open_verdict();
                let mails = {
                    let mut s = self.sh.seen.lock().expect("seen");
                    s.mails += 1;
                    s.mails
                };
                let code = self.reply_full(Point::Mail, None, mails)?;
                self.tx = Tx {
                    open: is_2xx(code),
                    accepted: 0,
                };
                Ok(())
            }
            "RCPT" => {
                self.sh.count(|s| s.rcpts += 1);
                let forced = (!self.tx.open).then_some(503);
                let code = self.reply_full(Point::Rcpt, forced, 0)?;
                if is_2xx(code) {
                    self.tx.accepted += 1;
                }
                Ok(())
            }
            "DATA" => {
                let forced = self.no_tx_code();
                let code = self.reply_full(Point::Data, forced, 0)?;
                if code != Some(354) {
                    if forced.is_none() {
                        self.tx = Tx::default();
                    }
                    return Ok(());
                }
                self.read_content()?;
                self.end_of_data()
            }
            "BDAT" => self.bdat(line),
            "RSET" => {
                self.tx = Tx::default();
                // Under -A, RSET after every RCPT was refused.
                self.verdict(Verdict::Rejected);
                self.reply_at(Point::Rset)
            }
            "QUIT" => {
                if self.pending {
                    self.sh.count(|s| s.classes_ambiguous = true);
                }
                self.reply_at(Point::Quit)?;
                self.close();
                Err(Gone::Server)
            }
            _ => self.reply_full(Point::Other, Some(502), 0).map(drop),
        }
    }

    /// A real server's answer to DATA or BDAT outside a transaction.
    fn no_tx_code(&self) -> Option<u16> {
        if !self.tx.open {
            Some(503)
        } else if self.tx.accepted == 0 {
            Some(554)
        } else {
            None
        }
    }

    fn bdat(&mut self, line: &[u8]) -> Result<(), Gone> {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_ascii_whitespace().skip(1);
        let size: usize =
            words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let last =
            words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
        if size > MAX_CHUNK {
            return Err(Gone::Client);
        }
        self.read_exact_bytes(size)?;
        if let Some(code) = self.no_tx_code() {
            self.reply_full(Point::Bdat, Some(code), 0)?;
            return Ok(());
        }
        if last {
            return self.end_of_data();
        }
        let code = self.reply_full(Point::Bdat, None, 0)?;
        if !is_2xx(code) {
            self.tx = Tx::default();
        }
        Ok(())
    }

    /// The reply (LMTP: one per accepted recipient) to the end of data.
    fn end_of_data(&mut self) -> Result<(), Gone> {
        self.sh.count(|s| s.dots += 1);
        let replies = if self.sh.opts.lmtp {
            self.tx.accepted
        } else {
            1
        };
        let point = if self.sh.opts.lmtp {
            Point::LmtpRcpt
        } else {
            Point::Dot
        };
        self.tx = Tx::default();
        if self.sh.opts.lmtp {
            self.pending = false;
        }
        let mut delivered = false;
        let mut result = Ok(());
        for i in 0..replies {
            match self.reply_point(point, None, 0, Some(i), delivered) {
                Ok(code) => delivered |= is_2xx(code),
                Err(g) => {
                    result = Err(g);
                    break;
                }
            }
        }
        if delivered {
            self.sh.count(|s| s.delivered += 1);
        }
        result
    }

    fn reply_at(&mut self, p: Point) -> Result<(), Gone> {
        self.reply_full(p, None, 0).map(drop)
    }

    fn reply_full(
        &mut self,
        p: Point,
        forced: Option<u16>,
        mails: usize,
    ) -> Result<Option<u16>, Gone> {
        self.reply_point(p, forced, mails, None, false)
    }

    /// Ask the policy and carry out its act at `p`. Ok(Some(code)) when a
    /// whole reply was written; Err when the connection is over.
    /// `lmtp_index` and `earlier_ok` are for LMTP end-of-data replies.
    fn reply_point(
        &mut self,
        p: Point,
        forced: Option<u16>,
        mails: usize,
        lmtp_index: Option<usize>,
        earlier_ok: bool,
    ) -> Result<Option<u16>, Gone> {
        let nth = match lmtp_index {
            Some(i) => i,
            None => self.nth(p),
        };
        let at = At {
            conn: self.index,
            point: p,
            nth,
            mails,
        };
        let mut reply = self.policy.reply(&at);
        if let (Some(code), Act::Normal | Act::Code(_)) = (forced, reply.act) {
            reply.act = Act::Code(code);
        }
        let code = match reply.act {
            Act::Normal => positive(p),
            Act::Code(c) => c,
            _ => 0,
        };
        let counted = match p {
            Point::Rcpt => is_2xx(Some(code)),
            Point::Dot | Point::LmtpRcpt => is_2xx(Some(code)) && !earlier_ok,
            _ => false,
        };
        self.pause(reply.delay);
        let fatal = self.is_fatal(p, reply.act, code);
        self.log
            .push(format!("S: {:?} {code} at {p:?} #{nth}", reply.act));
        if !self.may_write(fatal, counted, reply.act) {
            self.log.push("*** frozen: stall".into());
            self.stall();
            return Err(Gone::Server);
        }
        let caps = self.extended.then_some(self.caps);
        let bytes = render(p, code, reply.multiline, caps);
        self.carry_out(p, reply.act, code, &bytes, reply.cut)
    }

    /// A slow reply; the stop flag ends the wait.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.sh.stopping() {
            std::thread::sleep(TICK.min(until - Instant::now()));
        }
    }

    /// Whether this act ends the client's run.
    fn is_fatal(&self, p: Point, act: Act, code: u16) -> bool {
        if p == Point::Quit {
            return false;
        }
        match act {
            Act::Close | Act::Reset | Act::CutClose | Act::CutReset => true,
            Act::Stall => false,
            Act::Normal | Act::Code(_) => {
                self.sh.opts.refusals_fatal && !is_positive(p, code)
            }
        }
    }

    /// Check the freeze before writing. A counted 2xx is marked
    /// unconfirmed before it is written (so a freeze that starts now waits
    /// for it); a fatal act takes the freeze and waits for the others.
    fn may_write(&mut self, fatal: bool, counted: bool, act: Act) -> bool {
        let sh = Arc::clone(&self.sh);
        let mut f = sh.freeze.lock().expect("freeze");
        // Frozen; on the acting connection too once its act is done:
        // the client stops reading at the reply that ends its run, so a
        // 2xx after it (a later RCPT of a pipelined group, a later LMTP
        // reply) could be counted here and never reach it.
        if f.by.is_some() {
            return false;
        }
        if counted {
            f.unconfirmed.push(self.index);
        }
        if !fatal {
            return true;
        }
        if !sh.opts.freeze {
            drop(f);
            self.log.push("*** fatal act (no freeze)".into());
            sh.count(|s| {
                s.fatal += 1;
                s.ambiguous = true;
            });
            return true;
        }
        f.by = Some(self.index);
        // Our own unconfirmed 2xx (LMTP replies before this one): a FIN
        // keeps it, an RST may not.
        let own = f.unconfirmed.contains(&self.index);
        let mut ambiguous = own && matches!(act, Act::Reset | Act::CutReset);
        if sh.opts.confirm {
            let limit = Instant::now() + sh.opts.confirm_limit;
            while f.unconfirmed.iter().any(|&c| c != self.index) {
                let now = Instant::now();
                if now >= limit || sh.stopping() {
                    ambiguous = true;
                    break;
                }
                f = sh.freeze_cv.wait_timeout(f, limit - now).expect("cv").0;
            }
        } else {
            ambiguous = true;
        }
        drop(f);
        self.log
            .push(format!("*** fatal act (ambiguous: {ambiguous})"));
        sh.count(|s| {
            s.fatal += 1;
            s.ambiguous |= ambiguous;
        });
        true
    }

    fn carry_out(
        &mut self,
        p: Point,
        act: Act,
        code: u16,
        bytes: &[u8],
        cut: usize,
    ) -> Result<Option<u16>, Gone> {
        match act {
            Act::Normal | Act::Code(_) => {
                self.write(bytes)?;
                if p != Point::Quit && !is_positive(p, code) {
                    self.sh.count(|s| s.refusals += 1);
                }
                if is_2xx(Some(code)) && p == Point::Rcpt {
                    self.sh.count(|s| s.rcpt_ok += 1);
                }
                let closing = code == 421 || code == 521;
                self.judge(p, code, closing);
                if closing {
                    self.sh.count(|s| s.closing_replies += 1);
                    self.close();
                    self.closed_by_code = true;
                    return Err(Gone::Server);
                }
                Ok(Some(code))
            }
            Act::Close => {
                self.close();
                Err(Gone::Server)
            }
            Act::Reset => {
                self.reset();
                Err(Gone::Server)
            }
            Act::CutClose | Act::CutReset => {
                let cut = 1 + cut % bytes.len().saturating_sub(1).max(1);
                self.write(&bytes[..cut])?;
                if act == Act::CutClose {
                    self.close();
                } else {
                    self.reset();
                }
                Err(Gone::Server)
            }
            Act::Stall => {
                self.stall();
                Err(Gone::Server)
            }
        }
    }

    /// A MAIL starts a message that needs a class.
    fn open_verdict(&mut self) {
        if self.pending {
            self.sh.count(|s| s.classes_ambiguous = true);
        }
        self.pending = true;
    }

    /// Give the pending message its class.
    fn verdict(&mut self, v: Verdict) {
        if !std::mem::take(&mut self.pending) {
            return;
        }
        self.sh.count(|s| match v {
            Verdict::Accepted => {}
            Verdict::Rejected => s.rejected += 1,
            Verdict::Failed => s.failed += 1,
        });
    }

    /// The class a written reply gives (see [`Seen::rejected`] and
    /// [`Seen::failed`]).
    fn judge(&mut self, p: Point, code: u16, closing: bool) {
        let refused = if closing {
            Verdict::Failed
        } else {
            Verdict::Rejected
        };
        match p {
            Point::Banner | Point::Helo if closing => {
                if self.pending {
                    self.sh.count(|s| s.classes_ambiguous = true);
                }
                self.sh.count(|s| s.failed += 1);
            }
            Point::Rset if closing => {
                self.sh.count(|s| s.classes_ambiguous = true);
            }
            Point::Mail | Point::Data | Point::Bdat | Point::Dot => {
                if is_2xx(Some(code)) && p == Point::Dot {
                    self.verdict(Verdict::Accepted);
                } else if !is_positive(p, code) {
                    self.verdict(refused);
                }
            }
            Point::Rcpt if closing => self.verdict(Verdict::Failed),
            // LMTP classes are not compared; QUIT ends no message.
            _ => {}
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Gone> {
        let s = self.s.as_mut().ok_or(Gone::Server)?;
        s.write_all(bytes).map_err(|_| Gone::Client)
    }

    fn close(&mut self) {
        self.log.push("*** close".into());
        if let Some(s) = &self.s {
            let _ = s.shutdown(Shutdown::Write);
        }
        self.closed = true;
    }

    /// SO_LINGER 0 and close: the client gets an RST.
    fn reset(&mut self) {
        self.log.push("*** reset".into());
        if let Some(s) = self.s.take() {
            let _ =
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        }
        self.closed = true;
    }

    /// Never answer again; [`Conn::settle`] reads until the client goes.
    fn stall(&mut self) {
        self.log.push("*** stall".into());
    }

    /// One line (with its LF); the stop flag and the watchdog end the
    /// wait.
    fn read_line(&mut self) -> Result<Vec<u8>, Gone> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=p).collect());
            }
            if self.buf.len() > MAX_LINE {
                return Err(Gone::Client);
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> Result<(), Gone> {
        let mut chunk = [0u8; 16384];
        loop {
            let s = self.s.as_mut().ok_or(Gone::Server)?;
            match s.read(&mut chunk) {
                Ok(0) => return Err(Gone::Client),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if is_tick(&e) => {
                    if self.sh.stopping() {
                        return Err(Gone::Client);
                    }
                }
                Err(_) => return Err(Gone::Client),
            }
        }
    }

    /// DATA content up to the lone dot line.
    fn read_content(&mut self) -> Result<(), Gone> {
        loop {
            let line = self.read_line()?;
            if line == b".\r\n" || line == b".\n" {
                self.log.push("C: <content> .".into());
                return Ok(());
            }
        }
    }

    fn read_exact_bytes(&mut self, n: usize) -> Result<(), Gone> {
        while self.buf.len() < n {
            self.fill()?;
        }
        self.buf.drain(..n);
        self.log.push(format!("C: <chunk of {n}>"));
        Ok(())
    }
}

/// The command word of a client line, upper case.
fn verb(line: &[u8]) -> String {
    line.iter()
        .take_while(|b| !b" \t\r\n:".contains(b))
        .map(|&b| char::from(b.to_ascii_uppercase()))
        .collect()
}

fn is_tick(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
    )
}

fn is_2xx(code: Option<u16>) -> bool {
    code.is_some_and(|c| (200..300).contains(&c))
}

/// The code a client needs at `p` to go on.
fn positive(p: Point) -> u16 {
    match p {
        Point::Banner => 220,
        Point::Data => 354,
        Point::Quit => 221,
        Point::Other => 502,
        _ => 250,
    }
}

fn is_positive(p: Point, code: u16) -> bool {
    match p {
        Point::Data => code == 354,
        _ => is_2xx(Some(code)),
    }
}

/// The reply bytes for `code` at `p`; a positive EHLO/LHLO reply lists
/// `caps`.
fn render(
    p: Point,
    code: u16,
    multiline: bool,
    caps: Option<Caps>,
) -> Vec<u8> {
    let text = match (p, code) {
        (Point::Banner, 220) => "count.example ESMTP counting",
        (Point::Helo, 250) => "count.example",
        (Point::Data, 354) => "End data with <CR><LF>.<CR><LF>",
        (Point::Dot | Point::LmtpRcpt, 250) => "2.0.0 Ok: queued",
        (Point::Quit, 221) => "2.0.0 Bye",
        (_, 421) => "4.3.2 Service shutting down, closing channel",
        (_, 503) => "5.5.1 Error: bad sequence of commands",
        (_, 554) => "5.5.1 Error: no valid recipients",
        (_, 200..=299) => "2.0.0 Ok",
        (_, 400..=499) => "4.0.0 try again later",
        _ => "5.0.0 refused",
    };
    let mut lines = vec![text];
    if multiline {
        lines.extend(["more text", "and more"]);
    }
    if let (Point::Helo, 250, Some(caps)) = (p, code, caps) {
        if caps.pipelining {
            lines.push("PIPELINING");
        }
        if caps.chunking {
            lines.push("CHUNKING");
        }
        lines.push("8BITMIME");
    }
    let mut out = Vec::new();
    let n = lines.len();
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == n { ' ' } else { '-' };
        out.extend_from_slice(format!("{code}{sep}{l}\r\n").as_bytes());
    }
    out
}

/// The counting server checked with plain std clients.
mod selftest {
    use super::*;

    fn client(srv: &CountingServer) -> TcpStream {
        let s = TcpStream::connect(srv.endpoint()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    }

    /// Read until `n` reply lines with a space after the code came.
    fn replies(s: &mut TcpStream, n: usize) -> io::Result<String> {
        let mut v = Vec::new();
        let finals = |v: &[u8]| {
            v.split(|&b| b == b'\n')
                .filter(|l| l.len() > 3 && l[3] == b' ')
                .count()
        };
        while finals(&v) < n {
            let mut b = [0u8; 4096];
            let got = s.read(&mut b)?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            v.extend_from_slice(&b[..got]);
        }
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    fn transaction(s: &mut TcpStream) -> String {
        s.write_all(b"EHLO c\r\nMAIL FROM:<a>\r\n").expect("write");
        replies(s, 2).expect("EHLO, MAIL");
        s.write_all(b"RCPT TO:<b>\r\nDATA\r\n").expect("write");
        replies(s, 2).expect("RCPT, DATA");
        s.write_all(b"body\r\n.\r\n").expect("write");
        replies(s, 1).expect("end of data")
    }

    #[test]
    fn counts_a_lockstep_transaction() {
        let srv = CountingServer::start(
            scripted(Caps::default(), |_: &At| Reply::NORMAL),
            Options::default(),
        );
        let mut s = client(&srv);
        replies(&mut s, 1).expect("banner");
        assert_eq!(transaction(&mut s), "250 2.0.0 Ok: queued\r\n");
        s.write_all(b"QUIT\r\n").expect("write");
        replies(&mut s, 1).expect("QUIT");
        drop(s);
        let (seen, _) = srv.finish();
        let want = Seen {
            conns: 1,
            mails: 1,
            rcpts: 1,
            rcpt_ok: 1,
            dots: 1,
            delivered: 1,
            ..Seen::default()
        };
        assert_eq!(seen, want);
    }

    /// A reset on connection 1 waits until connection 0 confirmed the 2xx
    /// the server counted for it, and then connection 0 is frozen.
    #[test]
    fn fatal_act_waits_for_confirmation_then_freezes() {
        let f = scripted(Caps::default(), |at: &At| {
            if at.conn == 1 && at.point == Point::Mail {
                Reply::act(Act::Reset)
            } else {
                Reply::NORMAL
            }
        });
        let srv = CountingServer::start(f, Options::default());
        let mut a = client(&srv);
        replies(&mut a, 1).expect("banner a");
        transaction(&mut a);
        let mut b = client(&srv);
        replies(&mut b, 1).expect("banner b");
        b.write_all(b"EHLO c\r\nMAIL FROM:<a>\r\n").expect("write");
        replies(&mut b, 1).expect("EHLO");
        b.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let early = replies(&mut b, 1).expect_err("no RST before a confirms");
        assert_eq!(early.kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"MAIL FROM:<a>\r\n").expect("write");
        b.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let e = replies(&mut b, 1).expect_err("RST");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        a.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let frozen = replies(&mut a, 1).expect_err("a is frozen");
        assert_eq!(frozen.kind(), io::ErrorKind::WouldBlock);
        drop((a, b));
        let (seen, _) = srv.finish();
        assert_eq!(
            (seen.delivered, seen.fatal, seen.ambiguous),
            (1, 1, false)
        );
    }
}
