//! session::params: what the session knows that the ESMTP parameters
//! (`esmtp`) need: the message's size as it will go out, its 8-bit and
//! non-ASCII content, the connection's offer. It asks `esmtp`, counts
//! what was sent and refused, and says once under -v what the server
//! lacked. An old command line never gets here (`Plan::esmtp` is None).

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Flow, Link, Session};
use crate::command::RcptAddr;
use crate::diag;
use crate::error::Error;
use crate::esmtp::{self, Local, Msg, Note, Owned};
use crate::message::MessageId;
use crate::plan::Numbering;
use crate::report::stats::ErrorClass;
use crate::work::Job;

/// Said once per run under -v, per `Note`.
static NOTED: [AtomicBool; 2] =
    [AtomicBool::new(false), AtomicBool::new(false)];

impl Session<'_> {
    /// The MAIL parameters of `job` on this connection, or why the
    /// message is not to be sent.
    pub(super) fn mail_params(
        &mut self,
        link: &Link,
        job: Job,
    ) -> Result<Vec<Owned>, Local> {
        let Some(ep) = &self.sh.plan.esmtp else {
            return Ok(Vec::new());
        };
        let headers_len = self.early_headers(link, job);
        let plan = &self.sh.plan;
        let body = &plan.content.bodies[job.body as usize];
        let body_len = match (&body.raw, self.bdat_now) {
            (Some(raw), true) => raw.len(),
            // Without the end-of-data line.
            _ => body.data.len().saturating_sub(3),
        };
        let (eight_bit, own_utf8) = ep.bodies[job.body as usize];
        let headers_8bit = self
            .early_headers
            .as_ref()
            .is_some_and(|(_, h)| !h.is_ascii());
        let msg = Msg {
            n: job.n,
            size: (headers_len + body_len) as u64,
            eight_bit: eight_bit || headers_8bit,
            utf8: own_utf8 || ep.headers_utf8 || self.envelope_utf8(job),
            args: &ep.args,
        };
        let mail = esmtp::mail(&msg, &link.caps);
        let verbose = plan.verbose;
        match mail {
            Ok(mail) => {
                for note in &mail.notes {
                    self.esmtp_refusal(note.key());
                    let noted = &NOTED[*note as usize];
                    if verbose > 0 && !noted.swap(true, Ordering::Relaxed) {
                        diag::info(note.text());
                    }
                }
                self.count_params(&mail.params);
                Ok(mail.params)
            }
            Err(local) => {
                self.early_headers = None;
                Err(local)
            }
        }
    }

    /// A message not sent (`Local`): counted under its error class;
    /// without -A the run ends, with it a warning.
    pub(super) fn local_refusal(&mut self, local: Local) -> Result<(), Error> {
        self.esmtp_refusal(local.key());
        self.error_class(ErrorClass::Smtputf8);
        let text = match local {
            Local::NoSmtpUtf8 => {
                b"message not sent: its addresses or headers need SMTPUTF8, \
which the server does not offer"
                    .to_vec()
            }
        };
        if !self.sh.plan.allow_reject {
            return Err(Error::Security(text));
        }
        diag::warn(&text);
        Ok(())
    }

    /// The parameters of the RCPT to `addr`.
    pub(super) fn rcpt_params(
        &mut self,
        link: &Link,
        addr: RcptAddr,
    ) -> Vec<Owned> {
        let Some(ep) = &self.sh.plan.esmtp else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        addr.write(&mut bytes);
        let params = esmtp::rcpt(&ep.args, &link.caps, &bytes);
        self.count_params(&params);
        params
    }

    /// Whether RCPTs on this connection carry parameters (a refusal of
    /// one is then counted by its code).
    pub(super) fn rcpt_has_params(&self, link: &Link) -> bool {
        self.sh.plan.esmtp.as_ref().is_some_and(|ep| {
            !esmtp::rcpt(&ep.args, &link.caps, b"").is_empty()
        })
    }

    /// A MAIL or RCPT with parameters was refused: counted by code.
    pub(super) fn params_refused(&mut self, command: &str, code: u16) {
        self.esmtp_refusal(&format!("{command}_{code}"));
    }

    /// --requiretls: the connection must be TLS and the server must
    /// offer REQUIRETLS there; otherwise no message goes on it, and the
    /// error is the same whichever is missing.
    pub(super) fn requiretls(&mut self, link: &Link) -> Result<Flow, Error> {
        let Some(ep) = &self.sh.plan.esmtp else {
            return Ok(Flow::Go);
        };
        let encrypted = link.conn.is_encrypted();
        match esmtp::requiretls_ready(&ep.args, encrypted, &link.caps) {
            Ok(()) => Ok(Flow::Go),
            Err(text) => {
                self.esmtp_refusal("requiretls_not_offered");
                let e = Error::Security(text.as_bytes().to_vec());
                self.give_up(e, Some(ErrorClass::Tls), Flow::Abandon)
            }
        }
    }

    /// Renders `job`'s headers now, as its content will send them, and
    /// keeps them for it (`Session::headers`): their length is part of
    /// SIZE. Returns the length (0 when the message brings its own).
    fn early_headers(&mut self, link: &Link, job: Job) -> usize {
        let sh = self.sh;
        let Some(headers) = &sh.plan.headers else {
            self.early_headers = None;
            return 0;
        };
        let to = self.last_rcpt_ahead(job);
        let id = MessageId {
            pid: sh.pid,
            fd: link.conn.fd(),
            counter: sh.id_counter(),
        };
        let from = sh.plan.content.senders.is_some().then(|| self.sender(job));
        let mut out = Vec::with_capacity(256);
        headers.write(from, to.as_deref(), sh.date(), id, &mut out);
        let len = out.len();
        self.early_headers = Some((job.n, out));
        len
    }

    /// The address To: will name, before the RCPTs are written (3.9
    /// numbering and --rcpt-file: the last recipient). 3.9 numbering
    /// takes the message's block of numbers now.
    fn last_rcpt_ahead(&mut self, job: Job) -> Option<Vec<u8>> {
        let plan = &self.sh.plan;
        let r = u64::from(plan.recipients);
        let last = r.saturating_sub(1);
        match plan.numbering {
            Numbering::File => {
                Some(plan.content.rcpt(job.n * r + last).to_vec())
            }
            Numbering::Appended => {
                self.rcpt_base = self
                    .sh
                    .rcpt_seq
                    .fetch_add(r, std::sync::atomic::Ordering::Relaxed);
                self.rcpt_block_taken = true;
                let (local, domain) =
                    crate::command::split_recipient(&plan.recipient);
                let mut out = local.to_vec();
                out.extend_from_slice(
                    (self.rcpt_base + last).to_string().as_bytes(),
                );
                out.extend_from_slice(domain);
                Some(out)
            }
            _ => None,
        }
    }

    /// Whether `job`'s sender or one of its recipients is not ASCII.
    fn envelope_utf8(&self, job: Job) -> bool {
        let plan = &self.sh.plan;
        let Some(ep) = &plan.esmtp else { return false };
        if esmtp::is_utf8(self.sender(job)) {
            return true;
        }
        match plan.numbering {
            Numbering::File if ep.rcpts_utf8 => {
                let r = u64::from(plan.recipients);
                (0..r)
                    .any(|i| esmtp::is_utf8(plan.content.rcpt(job.n * r + i)))
            }
            Numbering::File => false,
            _ => esmtp::is_utf8(&plan.recipient),
        }
    }

    fn count_params(&mut self, params: &[Owned]) {
        if let Some(r) = &mut self.rec {
            for p in params {
                *r.counts
                    .esmtp_params
                    .entry(esmtp::count_key(p))
                    .or_default() += 1;
            }
        }
    }

    fn esmtp_refusal(&mut self, key: &str) {
        if let Some(r) = &mut self.rec {
            *r.counts.esmtp_refusals.entry(key.to_string()).or_default() += 1;
        }
    }
}

/// `Note` as an index of `NOTED`.
const _: () = assert!(Note::NoDsn as usize == 1);
