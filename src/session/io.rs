//! session::io: a session's socket I/O. Commands are queued into the
//! wire buffer (logged under -v) and written against the stage deadline;
//! replies are read line by line through the bounded reader. I/O errors
//! become stage-named errors here, and are classed for the report.

use std::time::Instant;

use super::{Link, Session, LAST_WORDS_WAIT};
use crate::command::Command;
use crate::diag;
use crate::error::{Error, Stage};
use crate::lineio::LineError;
use crate::reply::{Push, Reply, ReplyBuilder};
use crate::report::stats::ErrorClass;

impl Session<'_> {
    /// Writes the wire buffer within the stage deadline.
    pub(crate) fn flush_wire(
        &mut self,
        link: &mut Link,
        stage: Stage,
    ) -> Result<(), Error> {
        let wire = std::mem::take(&mut self.wire);
        let result = self.write(link, &[&wire], stage);
        self.wire = wire;
        result
    }

    /// Writes `bufs` within the stage deadline, unless the run is halted:
    /// every socket write of a session goes through here. `self.wrote`
    /// says how many of the bytes left (all of them once this is Ok;
    /// none when the halt refused the write).
    pub(crate) fn write(
        &mut self,
        link: &mut Link,
        bufs: &[&[u8]],
        stage: Stage,
    ) -> Result<(), Error> {
        self.wrote = 0;
        // One permit at a time: a second read of the same lock while a
        // halt waits for it would wait for ever.
        self.held = None;
        let sh = self.sh;
        let Some(permit) = sh.write_permit(self.n) else {
            return Err(Error::Halted);
        };
        self.last_write = Instant::now();
        let deadline = self.last_write + sh.plan.timeout;
        let mut wrote = 0;
        let result = link.conn.write_all_by(bufs, deadline, &mut wrote);
        self.wrote = wrote;
        if self.hold_permits {
            self.held = Some(permit);
        }
        self.written(link, wrote, result, stage)
    }

    /// Counts what a write sent (what left, also of a write that failed
    /// part-way) and turns its failure into the stage's error. A failed
    /// message write looks for the server's reason (the reply it may
    /// have sent before it stopped reading).
    pub(crate) fn written(
        &mut self,
        link: &mut Link,
        len: usize,
        result: std::io::Result<()>,
        stage: Stage,
    ) -> Result<(), Error> {
        if let Some(r) = &mut self.rec {
            r.counts.bytes_sent += len as u64;
        }
        result.map_err(|e| self.io_failed(link, e, stage))
    }

    /// The stage's error for a failed write (or handshake), classed for
    /// the report.
    pub(crate) fn io_failed(
        &mut self,
        link: &mut Link,
        e: std::io::Error,
        stage: Stage,
    ) -> Error {
        let class = io_class(&e);
        self.error_class(class);
        if class == ErrorClass::Timeout {
            return Error::Timeout { stage };
        }
        let said = (stage == Stage::Message).then(|| {
            let wait = LAST_WORDS_WAIT.min(self.sh.plan.timeout);
            read_reply(link, Instant::now() + wait).ok()
        });
        Error::Lost {
            stage,
            server_said: said.flatten(),
        }
    }

    /// Appends a command's wire text to `self.wire` (logged under -v).
    pub(crate) fn queue(&mut self, cmd: Command) {
        let start = self.wire.len();
        cmd.write_wire(&mut self.wire);
        if self.sh.plan.verbose > 0 {
            if matches!(cmd, Command::Auth(..) | Command::AuthResponse(_)) {
                let mut shown = Vec::new();
                cmd.write_log(&mut shown);
                diag::info(&shown);
            } else {
                diag::info(&self.wire[start..self.wire.len() - 2]);
            }
        }
    }

    /// Writes one command and reads its reply.
    pub(super) fn command(
        &mut self,
        link: &mut Link,
        cmd: Command,
        stage: Stage,
    ) -> Result<Reply, Error> {
        self.wire.clear();
        self.queue(cmd);
        let started = Instant::now();
        self.flush_wire(link, stage)?;
        let reply = self.reply(link, stage)?;
        self.observe(stage, reply.code, started);
        Ok(reply)
    }

    /// Reads one reply within the stage deadline.
    pub(crate) fn reply(
        &mut self,
        link: &mut Link,
        stage: Stage,
    ) -> Result<Reply, Error> {
        let deadline = Instant::now() + self.sh.plan.timeout;
        read_reply(link, deadline).map_err(|e| self.read_error(e, stage))
    }

    fn read_error(&mut self, e: ReadError, stage: Stage) -> Error {
        let verbose = self.sh.plan.verbose > 0;
        match e {
            ReadError::Line(LineError::Timeout) => {
                if verbose {
                    diag::info(b"smtp_get: timeout");
                }
                self.error_class(ErrorClass::Timeout);
                Error::Timeout { stage }
            }
            ReadError::Line(LineError::TooLong) => Error::TooLong {
                stage,
                lines: false,
            },
            ReadError::TooManyLines => Error::TooLong { stage, lines: true },
            ReadError::Line(LineError::Eof) => self.lost(stage, false),
            ReadError::Line(LineError::Io(e)) => {
                self.lost(stage, io_class(&e) == ErrorClass::Reset)
            }
        }
    }

    fn lost(&mut self, stage: Stage, reset: bool) -> Error {
        if self.sh.plan.verbose > 0 {
            diag::info(b"smtp_get: EOF");
        }
        let class = if reset {
            ErrorClass::Reset
        } else {
            ErrorClass::Lost
        };
        self.error_class(class);
        Error::Lost {
            stage,
            server_said: None,
        }
    }
}

/// The report's class of an I/O error.
fn io_class(e: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => ErrorClass::Timeout,
        K::ConnectionReset | K::ConnectionAborted => ErrorClass::Reset,
        _ => ErrorClass::Lost,
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
