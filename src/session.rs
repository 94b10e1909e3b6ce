//! session: one SMTP/LMTP session thread's work, one function per
//! protocol step (banner, greeting, MAIL, RCPT, DATA, message, RSET,
//! QUIT), and the -A policy in one place (`judge`).
//!
//! This is the only module that reads or writes a socket. Every read is a
//! bounded line read against the stage deadline; every error names its
//! stage. A session never prints a fatal error itself: it returns it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::cli::Delay;
use crate::command::Command;
use crate::diag;
use crate::engine::{Jobs, Shared};
use crate::error::{reject_text, Error, Stage};
use crate::lineio::{LineError, LineReader};
use crate::message::MessageId;
use crate::net::{self, Conn, SocketOptions};
use crate::plan::Greeting;
use crate::reply::{Push, Reply, ReplyBuilder};

/// The pause between connect attempts (the reference's usleep(10)).
const RETRY_PAUSE: Duration = Duration::from_micros(10);

/// How long to wait for the server's reason after a failed message
/// write (X7).
const LAST_WORDS_WAIT: Duration = Duration::from_secs(2);

/// What a step left the connection in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    /// 421/521 under -A: closed without QUIT.
    Closed,
}

/// How a reply was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
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
    /// The session already waited and found no work left (X8).
    Done,
}

/// A connection and its line reader.
struct Link {
    conn: Conn,
    reader: LineReader,
}

/// One session's state across its connections.
pub struct Session<'a> {
    sh: &'a Shared,
    jobs: &'a Jobs<'a>,
    /// -C budget, for the whole run (spec §2.2).
    connects_left: u32,
    wire: Vec<u8>,
}

/// Runs one session until no message is left for it.
pub fn run(sh: &Shared, jobs: &Jobs) -> Result<(), Error> {
    let mut s = Session {
        sh,
        jobs,
        connects_left: sh.plan.connect_count,
        wire: Vec::with_capacity(512),
    };
    while jobs.claim() {
        match s.connection()? {
            After::Delay => s.delay(),
            After::Done => break,
        }
    }
    Ok(())
}

impl Session<'_> {
    /// One connection: greeting, then transactions until done.
    fn connection(&mut self) -> Result<After, Error> {
        let mut link = self.connect()?;
        if self.open(&mut link)? == Flow::Closed {
            return Ok(After::Delay);
        }
        loop {
            if self.transaction(&mut link)? == Flow::Closed {
                return Ok(After::Delay);
            }
            if !self.sh.plan.reuse || self.sh.unclaimed() < 1 {
                self.quit(&mut link);
                return Ok(After::Delay);
            }
            // -d: the delay comes first, then the claim; a session that
            // finds nothing left says QUIT (X8).
            self.delay();
            if !self.jobs.claim() {
                self.quit(&mut link);
                return Ok(After::Done);
            }
        }
    }

    fn connect(&mut self) -> Result<Link, Error> {
        let plan = &self.sh.plan;
        let opts = SocketOptions {
            window: plan.window,
            keepalive: plan.keepalive,
        };
        loop {
            let attempt = self.sh.gate.pass(|| {
                net::connect(&plan.addr, opts, plan.timeout, &mut |w| {
                    diag::warn(w.as_bytes())
                })
            });
            let err = match attempt {
                Ok(conn) => {
                    return Ok(Link {
                        conn,
                        reader: LineReader::new(),
                    })
                }
                Err(e) => e,
            };
            self.connects_left = self.connects_left.saturating_sub(1);
            if self.connects_left == 0 {
                return Err(Error::Connect(err));
            }
            let text = format!("connect: {}", crate::error::io_text(&err));
            diag::warn(text.as_bytes());
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    /// Banner and, unless -o, HELO/LHLO.
    fn open(&mut self, link: &mut Link) -> Result<Flow, Error> {
        let banner = self.reply(link, Stage::Banner)?;
        let positive = banner.is_positive();
        // X4: under -A a 421/521 banner closes like at every other stage.
        if self.judge(Stage::Banner, banner, positive)? == Verdict::Closing {
            return Ok(Flow::Closed);
        }
        let name = &self.sh.plan.myhostname;
        let (cmd, stage) = match self.sh.plan.greeting {
            Greeting::None => return Ok(Flow::Go),
            Greeting::Helo => (Command::Helo(name), Stage::Helo),
            Greeting::Lhlo => (Command::Lhlo(name), Stage::Lhlo),
        };
        let reply = self.command(link, cmd, stage)?;
        let positive = reply.is_positive();
        Ok(match self.judge(stage, reply, positive)? {
            Verdict::Closing => Flow::Closed,
            _ => Flow::Go,
        })
    }

    /// MAIL, RCPT×r, DATA, content, end of data; RSET after a rejection.
    fn transaction(&mut self, link: &mut Link) -> Result<Flow, Error> {
        let sender = &self.sh.plan.sender;
        match self.step(link, Command::Mail(sender), Stage::Mail)? {
            Verdict::Ok => {}
            Verdict::Rejected => return self.rset(link),
            Verdict::Closing => return Ok(Flow::Closed),
        }
        let accepted = match self.recipients(link)? {
            None => return Ok(Flow::Closed),
            Some(0) => return self.rset(link),
            Some(n) => n,
        };
        let reply = self.command(link, Command::Data, Stage::Data)?;
        let is_354 = reply.code == 354;
        match self.judge(Stage::Data, reply, is_354)? {
            Verdict::Ok => {}
            Verdict::Rejected => return self.rset(link),
            Verdict::Closing => return Ok(Flow::Closed),
        }
        self.message(link)?;
        self.end_of_data(link, accepted)
    }

    /// Sends the RCPTs; Some(accepted count), or None after a 421/521.
    fn recipients(&mut self, link: &mut Link) -> Result<Option<u32>, Error> {
        let plan = &self.sh.plan;
        let mut accepted = 0;
        for left in (1..=plan.recipients).rev() {
            let number = if plan.numbered {
                Some(self.sh.rcpt_seq.fetch_add(1, Ordering::Relaxed))
            } else {
                // 3.7 count-down: `3foo`, `2foo`, then plain `foo`.
                (left > 1).then_some(u64::from(left))
            };
            let cmd = Command::Rcpt(number, &plan.recipient);
            match self.step(link, cmd, Stage::Rcpt)? {
                Verdict::Ok => accepted += 1,
                Verdict::Rejected => {}
                Verdict::Closing => return Ok(None),
            }
        }
        Ok(Some(accepted))
    }

    /// Headers, body and dot in one write; then -c counts the message.
    fn message(&mut self, link: &mut Link) -> Result<(), Error> {
        let sh = self.sh;
        self.wire.clear();
        if let Some(headers) = &sh.plan.headers {
            let id = MessageId {
                pid: sh.pid,
                fd: link.conn.fd(),
                counter: sh.unclaimed(),
            };
            headers.write(sh.date(), id, &mut self.wire);
        }
        if sh.plan.verbose > 0 {
            diag::info(b".");
        }
        let deadline = Instant::now() + sh.plan.timeout;
        let bufs = [self.wire.as_slice(), &sh.plan.body];
        if let Err(e) = link.conn.write_all_by(&bufs, deadline) {
            return Err(self.message_write_error(link, e));
        }
        if sh.plan.count {
            diag::count_message();
        }
        Ok(())
    }

    /// X7: after a failed write, the server's reason if it gave one.
    fn message_write_error(
        &self,
        link: &mut Link,
        e: std::io::Error,
    ) -> Error {
        if e.kind() == std::io::ErrorKind::TimedOut {
            return Error::Timeout {
                stage: Stage::Message,
            };
        }
        let wait = LAST_WORDS_WAIT.min(self.sh.plan.timeout);
        let said = read_reply(link, Instant::now() + wait).ok();
        Error::Lost {
            stage: Stage::Message,
            server_said: said,
        }
    }

    /// One reply (SMTP) or one per accepted recipient (LMTP, X3).
    fn end_of_data(
        &mut self,
        link: &mut Link,
        accepted: u32,
    ) -> Result<Flow, Error> {
        let replies = if self.sh.plan.lmtp { accepted } else { 1 };
        for _ in 0..replies {
            let reply = self.reply(link, Stage::Message)?;
            let positive = reply.is_positive();
            if self.judge(Stage::Message, reply, positive)? == Verdict::Closing
            {
                return Ok(Flow::Closed);
            }
        }
        Ok(Flow::Go)
    }

    /// RSET after a rejection under -A.
    fn rset(&mut self, link: &mut Link) -> Result<Flow, Error> {
        Ok(match self.step(link, Command::Rset, Stage::Rset)? {
            Verdict::Closing => Flow::Closed,
            _ => Flow::Go,
        })
    }

    /// QUIT; its reply is best effort (X5), then the socket is closed.
    fn quit(&mut self, link: &mut Link) {
        let outcome = self.command(link, Command::Quit, Stage::Quit);
        if let Err(e) = outcome {
            if self.sh.plan.verbose > 0 {
                let mut text = b"no reply to QUIT: ".to_vec();
                text.extend_from_slice(&e.text());
                diag::info(&text);
            }
        }
    }

    /// Sends a command and judges its reply as 2xx-or-rejected.
    fn step(
        &mut self,
        link: &mut Link,
        cmd: Command,
        stage: Stage,
    ) -> Result<Verdict, Error> {
        let reply = self.command(link, cmd, stage)?;
        let positive = reply.is_positive();
        self.judge(stage, reply, positive)
    }

    /// The -A policy, once for every stage (spec §2.4).
    fn judge(
        &self,
        stage: Stage,
        reply: Reply,
        ok: bool,
    ) -> Result<Verdict, Error> {
        if ok {
            return Ok(Verdict::Ok);
        }
        if !self.sh.plan.allow_reject {
            return Err(Error::Rejected { stage, reply });
        }
        diag::warn(&reject_text(stage, &reply));
        Ok(if reply.is_closing() {
            Verdict::Closing
        } else {
            Verdict::Rejected
        })
    }

    /// Writes one command (logged under -v) and reads its reply.
    fn command(
        &mut self,
        link: &mut Link,
        cmd: Command,
        stage: Stage,
    ) -> Result<Reply, Error> {
        self.wire.clear();
        cmd.write_wire(&mut self.wire);
        if self.sh.plan.verbose > 0 {
            diag::info(&self.wire[..self.wire.len() - 2]);
        }
        let deadline = Instant::now() + self.sh.plan.timeout;
        link.conn
            .write_all_by(&[&self.wire], deadline)
            .map_err(|e| io_error(e, stage))?;
        self.reply(link, stage)
    }

    /// Reads one reply within the stage deadline.
    fn reply(&self, link: &mut Link, stage: Stage) -> Result<Reply, Error> {
        let deadline = Instant::now() + self.sh.plan.timeout;
        read_reply(link, deadline).map_err(|e| self.read_error(e, stage))
    }

    fn read_error(&self, e: ReadError, stage: Stage) -> Error {
        let verbose = self.sh.plan.verbose > 0;
        match e {
            ReadError::Line(LineError::Timeout) => {
                if verbose {
                    diag::info(b"smtp_get: timeout");
                }
                Error::Timeout { stage }
            }
            ReadError::Line(LineError::TooLong) => Error::TooLong {
                stage,
                lines: false,
            },
            ReadError::TooManyLines => Error::TooLong { stage, lines: true },
            ReadError::Line(LineError::Eof | LineError::Io(_)) => {
                if verbose {
                    diag::info(b"smtp_get: EOF");
                }
                Error::Lost {
                    stage,
                    server_said: None,
                }
            }
        }
    }

    /// The -w/-R pause between messages (whole seconds; -R uniform in
    /// 0..=interval, X14).
    fn delay(&self) {
        let secs = match self.sh.plan.delay {
            Delay::None => return,
            Delay::Fixed(n) => u64::from(n),
            Delay::Random(n) => {
                use rand::Rng;
                rand::thread_rng().gen_range(0..=u64::from(n))
            }
        };
        std::thread::sleep(Duration::from_secs(secs));
    }
}

/// Why a reply could not be read.
enum ReadError {
    Line(LineError),
    TooManyLines,
}

/// Reads the lines of one reply (logging each under -v).
fn read_reply(link: &mut Link, deadline: Instant) -> Result<Reply, ReadError> {
    let mut builder = ReplyBuilder::new();
    loop {
        let line = link
            .reader
            .read_line(&mut link.conn, deadline)
            .map_err(ReadError::Line)?;
        if diag::verbose() > 0 {
            diag::info(&[&b"<<< "[..], line].concat());
        }
        match builder.push_line(line) {
            Push::More => {}
            Push::Done => break,
            Push::TooManyLines => return Err(ReadError::TooManyLines),
        }
    }
    if builder.mixed_codes() && diag::verbose() > 1 {
        diag::info(b"warning: reply lines carry different codes");
    }
    Ok(builder.finish())
}

/// A failed write: timeout or lost connection, at this stage.
fn io_error(e: std::io::Error, stage: Stage) -> Error {
    match e.kind() {
        std::io::ErrorKind::TimedOut => Error::Timeout { stage },
        _ => Error::Lost {
            stage,
            server_said: None,
        },
    }
}
