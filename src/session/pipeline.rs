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

use std::time::Instant;

use super::{Fate, Flow, Link, Session, Verdict};
use crate::command::Command;
use crate::error::{Error, Stage};

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
        if !sent {
            self.wire.clear();
            self.queue_group(link, bdat);
            self.group_sent = Instant::now();
            self.flush_wire(link, Stage::Mail)?;
            if bdat {
                self.count_sent();
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

    /// Appends MAIL, the RCPTs and DATA (or BDAT with the message) to
    /// `self.wire`.
    fn queue_group(&mut self, link: &Link, bdat: bool) {
        let plan = &self.sh.plan;
        self.queue(Command::Mail(&plan.sender));
        for number in self.rcpt_numbers() {
            let addr = self.rcpt_addr(plan, number);
            self.queue(Command::Rcpt(addr));
        }
        if bdat {
            self.queue_bdat(link);
        } else {
            self.queue(Command::Data);
        }
    }

    /// `BDAT <n> LAST` and the message bytes, into `self.wire`.
    fn queue_bdat(&mut self, link: &Link) {
        let mut content = Vec::new();
        std::mem::swap(&mut content, &mut self.wire);
        self.headers(link);
        let raw = self.sh.plan.raw_body.clone().unwrap_or_default();
        let size = self.wire.len() + raw.len();
        let mut headers = std::mem::take(&mut self.wire);
        self.wire = content;
        self.queue(Command::BdatLast(size));
        self.wire.append(&mut headers);
        self.wire.extend_from_slice(&raw);
    }

    /// -c counts a BDAT message once its chunk is written, as DATA
    /// counts once the dot is.
    fn count_sent(&self) {
        if self.sh.plan.count {
            crate::diag::count_message();
        }
    }

    /// Reads the MAIL and RCPT replies of a group; None after a 421/521.
    fn group_replies(
        &mut self,
        link: &mut Link,
    ) -> Result<Option<GroupOutcome>, Error> {
        // Replies of a group count from when the group was written.
        let started = self.group_sent;
        let mail = self.reply(link, Stage::Mail)?;
        self.observe(Stage::Mail, mail.code, started);
        let ok = mail.is_positive();
        let mail_ok = match self.judge(Stage::Mail, mail, ok)? {
            Verdict::Closing => return Ok(None),
            v => v == Verdict::Ok,
        };
        let mut accepted = 0;
        for _ in 0..self.sh.plan.recipients {
            let reply = self.reply(link, Stage::Rcpt)?;
            self.observe(Stage::Rcpt, reply.code, started);
            let ok = reply.is_positive();
            match self.judge_quietly(!mail_ok, Stage::Rcpt, reply, ok)? {
                Verdict::Ok => accepted += 1,
                Verdict::Rejected => {}
                Verdict::Closing => return Ok(None),
            }
        }
        self.rcpts(accepted);
        Ok(Some(GroupOutcome { mail_ok, accepted }))
    }

    /// Judges a reply, but when `quiet` only a 421/521 matters.
    fn judge_quietly(
        &mut self,
        quiet: bool,
        stage: Stage,
        reply: crate::reply::Reply,
        ok: bool,
    ) -> Result<Verdict, Error> {
        if !quiet {
            return self.judge(stage, reply, ok);
        }
        if ok {
            return Ok(Verdict::Ok);
        }
        if reply.is_closing() {
            return self.judge(stage, reply, false);
        }
        Ok(Verdict::Rejected)
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
        match self.judge_quietly(quiet, Stage::Data, reply, go)? {
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
        let headers = std::mem::take(&mut self.wire);
        let next = self.next_group(link);
        let sent_at = Instant::now();
        self.send_message(link, headers, &next)?;
        if !next.is_empty() {
            self.group_sent = sent_at;
        }
        let flow = self.end_of_data(link, g.accepted)?;
        Ok((flow, !next.is_empty()))
    }

    /// With -d and no delay, the next transaction's group goes out with
    /// this message's dot when a job is ready now.
    fn next_group(&mut self, link: &Link) -> Vec<u8> {
        let plan = &self.sh.plan;
        let delay = !matches!(plan.delay, crate::cli::Delay::None);
        if !plan.reuse || delay || self.sh.unclaimed() < 1 {
            return Vec::new();
        }
        let Some(job) = self.jobs.try_claim() else {
            return Vec::new();
        };
        self.take(job);
        let current = std::mem::take(&mut self.wire);
        self.queue_group(link, false);
        std::mem::replace(&mut self.wire, current)
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
        self.fate(Fate::Rejected);
        let ok = reply.is_positive();
        Ok(match self.judge_quietly(true, Stage::Message, reply, ok)? {
            Verdict::Closing => Flow::Closed,
            _ => Flow::Go,
        })
    }

    /// BDAT replies: one, or with LMTP one per accepted recipient.
    fn bdat_replies(
        &mut self,
        link: &mut Link,
        g: &GroupOutcome,
    ) -> Result<Flow, Error> {
        if g.mail_ok && g.accepted > 0 {
            return self.end_of_data(link, g.accepted);
        }
        // Nothing to deliver: the BDAT reply only confirms it.
        self.quiet_end(link)
    }

    /// Lock-step CHUNKING: `BDAT <n> LAST` and the message in one write.
    pub(crate) fn bdat(
        &mut self,
        link: &mut Link,
        accepted: u32,
    ) -> Result<Flow, Error> {
        self.wire.clear();
        self.queue_bdat(link);
        self.flush_wire(link, Stage::Message)?;
        self.count_sent();
        self.end_of_data(link, accepted)
    }
}
