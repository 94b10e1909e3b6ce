//! session::drive: runs a transaction core (`txn::Txn`) over a
//! connection. The core decides; this writes what it says, reads the
//! reply it waits for and hands it back, prints the warnings its verdict
//! calls for, and moves its counts to the report as they happen.
//!
//! Lock-step and pipelined are the same loop: the core hands out one
//! command, or (pipelined) a whole group, before it wants a reply. With
//! PIPELINING, -d and a job ready now, the next transaction's group is
//! written behind this message's dot (the look-ahead); it is driven next
//! on this connection, or cut with it and counted failed. A pipelined
//! group is written in pieces of at most about `FLUSH_AT` bytes, so its
//! memory does not grow with -r.
//!
//! After each write the core learns which of the commands it handed
//! out went out whole (`Txn::written`, from where each ends in the
//! write and how many bytes left): a command a halt refused, or one a
//! broken write cut, is never counted sent.

use std::time::Instant;

use super::{Flow, Link, Session};
use crate::command::Command;
use crate::diag;
use crate::error::{reject_text, Error, Stage};
use crate::esmtp::{borrowed, Local, Owned};
use crate::reply::Reply;
use crate::report::stats::Phase;
use crate::txn::{refusals, Cut, Fate, Heard, Mode, Step, Txn};
use crate::work::Job;

/// A pipelined group is written once this many bytes are queued.
const FLUSH_AT: usize = 64 * 1024;

/// With more recipients than this no look-ahead group is built: it would
/// have to be held whole behind the dot.
const AHEAD_MAX_RCPTS: u32 = 1024;

/// A message on its way: its job, its transaction, when it began, and
/// the first refusal of its group (what a server said before it went
/// away).
pub(crate) struct Pending {
    job: Job,
    txn: Txn,
    began: Instant,
    refused: Option<Reply>,
    /// The look-ahead: where each of its commands ends in
    /// `ahead_wire`, until the write that carries them.
    ends: Vec<usize>,
    /// Its MAIL parameters (`params`; empty without ESMTP).
    mail: Vec<Owned>,
    /// Its RCPTs carry parameters.
    rcpt_params: bool,
    /// It is not to be sent at all, and why.
    local: Option<Local>,
}

impl Session<'_> {
    /// The message in hand, then every look-ahead message after it, on
    /// this connection.
    pub(super) fn transaction(
        &mut self,
        link: &mut Link,
    ) -> Result<Flow, Error> {
        let job = self.job;
        let began = job.due.unwrap_or_else(Instant::now);
        let mode = self.mode(link);
        let mut cur = self.pending(link, job, mode, began);
        self.in_hand = false;
        loop {
            let flow = self.drive_or_cut(link, &mut cur);
            self.flush_stats();
            let flow = flow?;
            match self.ahead.take() {
                Some(next) if flow == Flow::Go => cur = next,
                Some(mut next) => {
                    // Its group went out; its connection is gone.
                    next.txn.cut(Cut::Lost);
                    self.tally(&mut next.txn);
                    return Ok(flow);
                }
                None => return Ok(flow),
            }
        }
    }

    /// `job`'s transaction, with its ESMTP parameters decided first: a
    /// message the server cannot take as it is gets one that writes
    /// nothing.
    fn pending(
        &mut self,
        link: &Link,
        job: Job,
        mode: Mode,
        began: Instant,
    ) -> Pending {
        let (txn, mail, local) = match self.mail_params(link, job) {
            Ok(mail) => (Txn::new(mode), mail, None),
            Err(local) => {
                (Txn::refused_locally(mode), Vec::new(), Some(local))
            }
        };
        Pending {
            job,
            txn,
            began,
            refused: None,
            ends: Vec::new(),
            mail,
            rcpt_params: self.rcpt_has_params(link),
            local,
        }
    }

    /// What this connection's transactions follow.
    fn mode(&mut self, link: &Link) -> Mode {
        let plan = &self.sh.plan;
        // In this order: -v notes what is not offered, PIPELINING first.
        let pipelined = self.pipelined(link);
        self.bdat_now = self.bdat_offered(link);
        Mode {
            refusals: refusals(plan.allow_reject),
            lmtp: plan.lmtp,
            bdat: self.bdat_now,
            pipelined,
            proven: link.proven,
            recipients: plan.recipients,
        }
    }

    /// `drive`; on an error the transaction (and its look-ahead) is cut:
    /// failed, or unknown when the run was halted.
    fn drive_or_cut(
        &mut self,
        link: &mut Link,
        cur: &mut Pending,
    ) -> Result<Flow, Error> {
        let out = self.drive(link, cur);
        if let Err(e) = &out {
            let why = match e {
                Error::Halted => Cut::Halted,
                _ => Cut::Lost,
            };
            cur.txn.cut(why);
            self.tally(&mut cur.txn);
            if let Some(mut next) = self.ahead.take() {
                next.txn.cut(why);
                self.tally(&mut next.txn);
            }
        }
        out
    }

    /// Writes what the core says, reads each reply it waits for, until
    /// the transaction is over.
    fn drive(
        &mut self,
        link: &mut Link,
        cur: &mut Pending,
    ) -> Result<Flow, Error> {
        if let Some(local) = cur.local.take() {
            self.tally(&mut cur.txn);
            self.local_refusal(local)?;
        }
        loop {
            self.write_sends(link, cur)?;
            let Some(stage) = cur.txn.stage() else { break };
            self.take_reply(link, cur, stage)?;
        }
        debug_assert!(cur.txn.is_done(), "a transaction stalled");
        if cur.txn.fate() == Some(Fate::Accepted) {
            self.latency(Phase::Transaction, cur.began);
        }
        Ok(if cur.txn.closed() {
            Flow::Closed
        } else {
            Flow::Go
        })
    }

    /// Reads the reply the core waits for and hands it over; warns as
    /// its verdict says.
    fn take_reply(
        &mut self,
        link: &mut Link,
        cur: &mut Pending,
        stage: Stage,
    ) -> Result<(), Error> {
        let reply = self.txn_reply(link, cur, stage)?;
        self.observe(stage, reply.code, self.last_write);
        let heard = cur.txn.on_reply(reply.code);
        self.tally(&mut cur.txn);
        link.proven |= cur.txn.proven();
        if heard != Heard::Positive
            && matches!(stage, Stage::Mail | Stage::Rcpt)
            && cur.refused.is_none()
        {
            cur.refused = Some(reply.clone());
        }
        if !matches!(heard, Heard::Positive | Heard::Quiet) {
            match stage {
                Stage::Mail if !cur.mail.is_empty() => {
                    self.params_refused("mail", reply.code)
                }
                Stage::Rcpt if cur.rcpt_params => {
                    self.params_refused("rcpt", reply.code)
                }
                _ => {}
            }
        }
        match heard {
            Heard::Refused | Heard::Closing => {
                diag::warn(&reject_text(stage, &reply));
            }
            Heard::Fatal => return Err(Error::Rejected { stage, reply }),
            Heard::Positive | Heard::Quiet => {}
        }
        Ok(())
    }

    /// Between the pieces of a large group: the replies already here
    /// are taken now, so a server that answers as it reads never waits
    /// on us with a full socket buffer (and a 421 stops the group).
    fn take_waiting_replies(
        &mut self,
        link: &mut Link,
        cur: &mut Pending,
    ) -> Result<(), Error> {
        while link.reader.has_buffered() || link.conn.has_incoming() {
            let Some(stage) = cur.txn.stage() else { break };
            self.take_reply(link, cur, stage)?;
        }
        Ok(())
    }

    /// One reply of the transaction. When the connection is lost after
    /// the server refused part of a group, the refusal is what it said:
    /// the diagnostic carries it (a server that closes after rejecting
    /// MAIL would otherwise look like it vanished for no reason).
    fn txn_reply(
        &mut self,
        link: &mut Link,
        cur: &Pending,
        stage: Stage,
    ) -> Result<Reply, Error> {
        let grouped = cur.txn.mode().pipelined
            && matches!(stage, Stage::Mail | Stage::Rcpt);
        self.reply(link, stage).map_err(|e| match e {
            Error::Lost {
                stage,
                server_said: None,
            } if grouped => Error::Lost {
                stage,
                server_said: cur.refused.clone(),
            },
            e => e,
        })
    }

    /// Writes every command the core hands out now: one write, or for a
    /// large group a few, the message content last.
    fn write_sends(
        &mut self,
        link: &mut Link,
        cur: &mut Pending,
    ) -> Result<(), Error> {
        self.hold_permits = true;
        let out = self.write_sends_held(link, cur);
        self.hold_permits = false;
        self.held = None;
        out
    }

    /// `write_sends`, each write's permit held until its commands (and
    /// a look-ahead's behind them) are counted.
    fn write_sends_held(
        &mut self,
        link: &mut Link,
        cur: &mut Pending,
    ) -> Result<(), Error> {
        self.wire.clear();
        // Where each command handed out ends in the write.
        let mut ends = Vec::new();
        let mut stage = None;
        let mut content = false;
        while let Some(send) = cur.txn.poll_send() {
            stage.get_or_insert(send_stage(send));
            if send == Step::Content {
                // Last of the write: it ends after the body.
                content = true;
                self.content(link, cur);
                ends.push(self.wire.len() + self.body_of(cur.job).len());
            } else {
                self.queue_send(link, send, cur.job, &cur.mail);
                ends.push(self.wire.len());
            }
            if self.wire.len() >= FLUSH_AT && !content {
                let out = self.flush_wire(link, stage.unwrap_or(Stage::Mail));
                self.confirm(&mut cur.txn, &ends, 0);
                // Counted: a halt may take its snapshot now.
                self.held = None;
                out?;
                ends.clear();
                self.wire.clear();
                self.take_waiting_replies(link, cur)?;
            }
        }
        let out = match stage {
            _ if content => self.send_message(link, cur.job),
            Some(stage) if !self.wire.is_empty() => {
                self.flush_wire(link, stage)
            }
            _ => Ok(()),
        };
        self.confirm(&mut cur.txn, &ends, 0);
        match self.ahead.take() {
            // Its group went in the same write, behind the content.
            Some(mut next) if content => {
                let base = ends.last().copied().unwrap_or(0);
                let ahead_ends = std::mem::take(&mut next.ends);
                self.confirm(&mut next.txn, &ahead_ends, base);
                self.ahead = Some(next);
            }
            ahead => self.ahead = ahead,
        }
        out
    }

    /// Tells the core which of the commands it handed out went out
    /// whole in the last write (each ends at `base` + its end), and
    /// moves the counts that follows to the report.
    fn confirm(&mut self, txn: &mut Txn, ends: &[usize], base: usize) {
        let left = self.wrote;
        txn.written(ends.iter().take_while(|&&e| base + e <= left).count());
        self.tally(txn);
    }

    /// Appends one command of the envelope (or RSET, or a lone dot).
    fn queue_send(
        &mut self,
        link: &Link,
        send: Step,
        job: Job,
        mail: &[Owned],
    ) {
        let plan = &self.sh.plan;
        match send {
            Step::Mail => {
                self.queue(Command::Mail(self.sender(job), &borrowed(mail)))
            }
            Step::Rcpt { left } => {
                let number = self.rcpt_number(job, left);
                let addr = self.rcpt_addr(plan, number);
                let params = self.rcpt_params(link, addr);
                self.queue(Command::Rcpt(addr, &borrowed(&params)));
            }
            Step::Data => self.queue(Command::Data),
            Step::LoneDot => self.queue(Command::Dot),
            Step::Rset => self.queue(Command::Rset),
            Step::Content => {}
        }
    }

    /// Queues what goes before the body: `BDAT <n> LAST` and the
    /// headers, or the headers (and, pipelined, maybe the next group).
    fn content(&mut self, link: &Link, cur: &Pending) {
        self.ahead_wire.clear();
        if cur.txn.mode().bdat {
            self.queue_bdat(link, cur.job);
            return;
        }
        if self.sh.plan.verbose > 0 {
            diag::info(b".");
        }
        // The headers first: their Message-Id counter must not see the
        // look-ahead claim of the next message.
        self.headers(link, cur.job);
        self.look_ahead(link, cur.txn.mode());
    }

    /// With -d, no delay and a job ready now, the next transaction's
    /// group goes into `self.ahead_wire`, to be written with this
    /// message's dot; its transaction waits in `self.ahead`.
    fn look_ahead(&mut self, link: &Link, mode: Mode) {
        let delay = !matches!(self.sh.plan.delay, crate::plan::Delay::None);
        if !mode.pipelined
            || delay
            || mode.recipients > AHEAD_MAX_RCPTS
            || !self.more_on_this_connection()
        {
            return;
        }
        let Some(job) = self.jobs.try_claim() else {
            return;
        };
        self.take(job);
        self.in_hand = false;
        let mode = Mode {
            proven: link.proven,
            ..mode
        };
        let began = job.due.unwrap_or_else(Instant::now);
        let mut next = self.pending(link, job, mode, began);
        // Queue into the (empty) look-ahead buffer: swap it in and out.
        std::mem::swap(&mut self.wire, &mut self.ahead_wire);
        let mut ends = Vec::new();
        while let Some(send) = next.txn.poll_send() {
            self.queue_send(link, send, job, &next.mail);
            ends.push(self.wire.len());
        }
        std::mem::swap(&mut self.wire, &mut self.ahead_wire);
        next.ends = ends;
        self.ahead = Some(next);
    }

    /// Appends `BDAT <n> LAST` and the headers to `self.wire`; the body
    /// follows from the plan in the same write (`send_message`), never
    /// copied.
    fn queue_bdat(&mut self, link: &Link, job: Job) {
        let start = self.wire.len();
        self.headers(link, job);
        let size = self.wire.len() - start + self.body_of(job).len();
        let mut cmd = Vec::with_capacity(32);
        Command::BdatLast(size).write_wire(&mut cmd);
        if self.sh.plan.verbose > 0 {
            diag::info(&cmd[..cmd.len() - 2]);
        }
        self.wire.splice(start..start, cmd);
    }

    /// Moves a transaction's counts to the report.
    pub(super) fn tally(&mut self, txn: &mut Txn) {
        let t = txn.take_tally();
        if let Some(r) = &mut self.rec {
            r.tally(t);
        }
    }
}

/// The stage a write is named after: its first command's.
fn send_stage(send: Step) -> Stage {
    match send {
        Step::Mail => Stage::Mail,
        Step::Rcpt { .. } => Stage::Rcpt,
        Step::Data => Stage::Data,
        Step::Content | Step::LoneDot => Stage::Message,
        Step::Rset => Stage::Rset,
    }
}
