//! pipeline: the ESMTP forms of a transaction. With PIPELINING (RFC
//! 2920) MAIL, every RCPT and DATA (or BDAT) go out in one write and the
//! replies are read in order; with -d the end-of-data dot and the next
//! transaction's group share one write, so a message costs one round
//! trip. With CHUNKING (RFC 3030) the message goes out as one
//! `BDAT <n> LAST` chunk, byte-exact, no dot-stuffing.
//!
//! The stage names and the -A policy are those of lock-step. Replies
//! that only follow from an earlier rejection in the same group (the 503
//! to RCPT after a rejected MAIL, the 554 to DATA with no recipient) are
//! consumed without a warning: lock-step would not have sent those
//! commands at all.
//!
//! A BDAT chunk is only put behind MAIL and RCPT once the server has
//! proven on this connection that it reads a pipelined group (a MAIL
//! accepted): a server that refuses MAIL (Postfix's 530 before STARTTLS)
//! would otherwise read the chunk's lines as commands. Until then the
//! envelope goes first and BDAT follows its replies: one round trip per
//! connection. After any refusal of a BDAT chunk the transaction is
//! reset with RSET, as after a refused DATA: a server keeps its
//! envelope otherwise (Dovecot LMTP then answers 503 to every MAIL).

use std::time::Instant;

use super::{Flow, Link, Session, Verdict};
use crate::command::Command;
use crate::error::{Error, Stage};
use crate::reply::Reply;

/// What the group's MAIL and RCPT replies came to.
struct GroupOutcome {
    mail_ok: bool,
    accepted: u32,
}

impl Session<'_> {
    /// A pipelined transaction; `sent` means its group already went out
    /// behind the previous message. Returns whether the next
    /// transaction's group went out behind this one's dot.
    pub(crate) fn transaction_pipelined(
        &mut self,
        link: &mut Link,
        sent: bool,
    ) -> Result<(Flow, bool), Error> {
        let bdat = self.bdat_now;
        if bdat && !link.proven {
            return Ok((self.envelope_then_bdat(link)?, false));
        }
        if !sent {
            self.wire.clear();
            self.queue_envelope();
            self.group_sent = Instant::now();
            if bdat {
                self.queue_bdat(link);
                self.ahead.clear();
                self.send_message(link, self.job)?;
            } else {
                self.queue(Command::Data);
                self.flush_wire(link, Stage::Mail)?;
            }
        }
        let Some(group) = self.group_replies(link)? else {
            return Ok((self.closed(), false));
        };
        if bdat {
            let flow = self.bdat_replies(link, &group)?;
            return Ok((flow, false));
        }
        self.data_reply(link, group)
    }

    /// MAIL and the RCPTs as one group; BDAT and the message only once
    /// their replies are in (a connection that has not yet shown that
    /// it reads pipelined commands).
    fn envelope_then_bdat(&mut self, link: &mut Link) -> Result<Flow, Error> {
        self.wire.clear();
        self.queue_envelope();
        self.group_sent = Instant::now();
        self.flush_wire(link, Stage::Mail)?;
        let Some(group) = self.group_replies(link)? else {
            return Ok(self.closed());
        };
        if !group.mail_ok || group.accepted == 0 {
            return self.rejected_then_rset(link);
        }
        self.wire.clear();
        self.queue_bdat(link);
        self.ahead.clear();
        self.send_message(link, self.job)?;
        self.bdat_replies(link, &group)
    }

    /// Appends MAIL and every RCPT to `self.wire`.
    fn queue_envelope(&mut self) {
        let plan = &self.sh.plan;
        self.queue(Command::Mail(self.sender()));
        for number in self.rcpt_numbers() {
            let addr = self.rcpt_addr(plan, number);
            self.queue(Command::Rcpt(addr));
        }
    }

    /// Appends `BDAT <n> LAST` and the headers to `self.wire`; the body
    /// follows from the plan in the same write (`send_message`), never
    /// copied.
    pub(crate) fn queue_bdat(&mut self, link: &Link) {
        let start = self.wire.len();
        self.headers(link);
        let size = self.wire.len() - start + self.raw_len();
        let mut cmd = Vec::with_capacity(32);
        Command::BdatLast(size).write_wire(&mut cmd);
        if self.sh.plan.verbose > 0 {
            crate::diag::info(&cmd[..cmd.len() - 2]);
        }
        self.wire.splice(start..start, cmd);
    }

    /// The length of this message's body as BDAT sends it.
    fn raw_len(&self) -> usize {
        self.body_of(self.job).len()
    }

    /// Reads the MAIL and RCPT replies of a group; None after a 421/521.
    fn group_replies(
        &mut self,
        link: &mut Link,
    ) -> Result<Option<GroupOutcome>, Error> {
        // Replies of a group count from when the group was written.
        let started = self.group_sent;
        let mut refused = None;
        let mail = self.group_reply(link, Stage::Mail, &refused)?;
        self.observe(Stage::Mail, mail.code, started);
        let ok = mail.is_positive();
        if !ok {
            refused = Some(mail.clone());
        }
        let mail_ok = match self.judge(Stage::Mail, mail, ok)? {
            Verdict::Closing => return Ok(None),
            v => v == Verdict::Ok,
        };
        link.proven |= mail_ok;
        let mut accepted = 0;
        for _ in 0..self.sh.plan.recipients {
            let reply = self.group_reply(link, Stage::Rcpt, &refused)?;
            self.observe(Stage::Rcpt, reply.code, started);
            let ok = reply.is_positive();
            if !ok && refused.is_none() {
                refused = Some(reply.clone());
            }
            match self.judge_in(Stage::Rcpt, reply, ok, !mail_ok)? {
                Verdict::Ok => accepted += 1,
                Verdict::Rejected => {}
                Verdict::Closing => return Ok(None),
            }
        }
        self.rcpts(accepted);
        Ok(Some(GroupOutcome { mail_ok, accepted }))
    }

    /// One reply of a group. When the connection is lost after the
    /// server refused part of the group, the refusal is what it said:
    /// the diagnostic carries it (a server that closes after rejecting
    /// MAIL would otherwise look like it vanished for no reason).
    fn group_reply(
        &mut self,
        link: &mut Link,
        stage: Stage,
        refused: &Option<Reply>,
    ) -> Result<Reply, Error> {
        self.reply(link, stage).map_err(|e| match e {
            Error::Lost {
                stage,
                server_said: None,
            } => Error::Lost {
                stage,
                server_said: refused.clone(),
            },
            e => e,
        })
    }

    /// The DATA reply, then the content (and maybe the next group).
    fn data_reply(
        &mut self,
        link: &mut Link,
        g: GroupOutcome,
    ) -> Result<(Flow, bool), Error> {
        let started = self.group_sent;
        let reply = self.reply(link, Stage::Data)?;
        self.observe(Stage::Data, reply.code, started);
        let go = reply.code == 354;
        let quiet = !g.mail_ok || g.accepted == 0;
        match self.judge_in(Stage::Data, reply, go, quiet)? {
            Verdict::Closing => return Ok((self.closed(), false)),
            // RFC 2920 §3.1: a failed DATA in a group is followed by RSET.
            Verdict::Rejected => {
                return Ok((self.rejected_then_rset(link)?, false))
            }
            Verdict::Ok => {}
        }
        if quiet {
            // 354 with no recipient: end the empty message (RFC 2920).
            return Ok((self.lone_dot(link)?, false));
        }
        if self.sh.plan.verbose > 0 {
            crate::diag::info(b".");
        }
        // The headers first: their Message-Id counter must not see the
        // look-ahead claim of the next message.
        self.wire.clear();
        self.headers(link);
        // The look-ahead takes the next job: this message's goes along.
        let job = self.job;
        let ahead = self.next_group();
        let sent_at = Instant::now();
        self.send_message(link, job)?;
        if ahead {
            self.group_sent = sent_at;
        }
        let flow = self.end_of_data(link, g.accepted)?;
        Ok((flow, ahead))
    }

    /// With -d and no delay, the next transaction's group goes into
    /// `self.ahead`, to be written with this message's dot, when a job
    /// is ready now.
    fn next_group(&mut self) -> bool {
        self.ahead.clear();
        let delay = !matches!(self.sh.plan.delay, crate::plan::Delay::None);
        if delay || !self.more_on_this_connection() {
            return false;
        }
        let Some(job) = self.jobs.try_claim() else {
            return false;
        };
        self.take(job);
        // Queue into the (empty) look-ahead buffer: swap it in and out.
        std::mem::swap(&mut self.wire, &mut self.ahead);
        self.queue_envelope();
        self.queue(Command::Data);
        std::mem::swap(&mut self.wire, &mut self.ahead);
        true
    }

    /// Ends a message that no recipient accepted with a lone dot.
    fn lone_dot(&mut self, link: &mut Link) -> Result<Flow, Error> {
        self.wire.clear();
        self.queue(Command::Dot);
        self.flush_wire(link, Stage::Message)?;
        self.quiet_end(link)
    }

    /// Reads the end-of-data reply of a message nobody was to receive:
    /// counted, never warned about (only a 421/521 matters).
    fn quiet_end(&mut self, link: &mut Link) -> Result<Flow, Error> {
        let started = Instant::now();
        let reply = self.reply(link, Stage::Message)?;
        self.observe(Stage::Message, reply.code, started);
        self.fate(super::Fate::Rejected);
        let ok = reply.is_positive();
        self.end_refused = !ok;
        Ok(match self.judge_in(Stage::Message, reply, ok, true)? {
            Verdict::Closing => Flow::Closed,
            _ => Flow::Go,
        })
    }

    /// BDAT replies: one, or with LMTP one per accepted recipient; RSET
    /// after any refusal.
    fn bdat_replies(
        &mut self,
        link: &mut Link,
        g: &GroupOutcome,
    ) -> Result<Flow, Error> {
        let flow = if g.mail_ok && g.accepted > 0 {
            self.end_of_data(link, g.accepted)?
        } else {
            // Nothing to deliver: the BDAT reply only confirms it.
            self.quiet_end(link)?
        };
        self.rset_after_refused_bdat(link, flow)
    }

    /// A refused BDAT chunk leaves the envelope in place on some
    /// servers: RSET clears it before the next MAIL.
    fn rset_after_refused_bdat(
        &mut self,
        link: &mut Link,
        flow: Flow,
    ) -> Result<Flow, Error> {
        if flow == Flow::Go && self.end_refused {
            return self.rset(link);
        }
        Ok(flow)
    }

    /// Lock-step CHUNKING: `BDAT <n> LAST` and the message in one write.
    pub(crate) fn bdat(
        &mut self,
        link: &mut Link,
        accepted: u32,
    ) -> Result<Flow, Error> {
        self.wire.clear();
        self.queue_bdat(link);
        self.ahead.clear();
        self.send_message(link, self.job)?;
        let flow = self.end_of_data(link, accepted)?;
        self.rset_after_refused_bdat(link, flow)
    }
}
