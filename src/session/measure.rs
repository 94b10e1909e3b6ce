//! session::measure: what a session tells the run report. Every hook is
//! a no-op unless the run measures (--report and friends), so the
//! drop-in path pays one branch.

use std::time::Instant;

use super::Session;
use crate::error::Stage;
use crate::report::stats::{ErrorClass, Phase};

impl Session<'_> {
    pub(crate) fn latency(&mut self, phase: Phase, since: Instant) {
        if let Some(r) = &mut self.rec {
            r.latency(phase, since.elapsed());
        }
    }

    /// A reply's code and the latency of its stage.
    pub(crate) fn observe(&mut self, stage: Stage, code: u16, since: Instant) {
        let Some(r) = &mut self.rec else { return };
        let (name, phase) = stage_keys(stage, self.bdat_now);
        r.code(name, code);
        if let Some(phase) = phase {
            r.latency(phase, since.elapsed());
        }
    }

    pub(super) fn error_class(&mut self, class: ErrorClass) {
        if let Some(r) = &mut self.rec {
            r.counts.error(class);
        }
    }

    /// --size-mix: a message of `job`'s class went out, `len` bytes.
    pub(crate) fn size_class(&mut self, job: super::Job, len: usize) {
        let content = &self.sh.plan.content;
        let Some(r) = &mut self.rec else { return };
        if let crate::workload::Choice::Mix(_) = content.choice {
            let size = content.bodies[job.body as usize].size;
            r.counts.size_class(size, len as u64);
        }
    }

    /// A connection of this session is up (--progress counts them).
    pub(super) fn linked(&mut self) {
        if let Some(stats) = &self.sh.stats {
            self.linked = true;
            stats.connected(1);
        }
    }

    /// This session's connection, if any, is gone.
    pub(super) fn unlinked(&mut self) {
        if let Some(stats) = &self.sh.stats {
            if std::mem::take(&mut self.linked) {
                stats.connected(-1);
            }
        }
    }

    pub(super) fn flush_stats(&mut self) {
        if let Some(r) = &mut self.rec {
            r.flush();
        }
    }
}

/// The report's command name and latency phase of a stage's reply.
fn stage_keys(stage: Stage, chunking: bool) -> (&'static str, Option<Phase>) {
    match stage {
        Stage::Banner => ("banner", Some(Phase::Banner)),
        Stage::Helo => ("HELO", Some(Phase::Helo)),
        Stage::Ehlo => ("EHLO", Some(Phase::Helo)),
        Stage::Lhlo => ("LHLO", Some(Phase::Helo)),
        Stage::Mail => ("MAIL", Some(Phase::Mail)),
        Stage::Rcpt => ("RCPT", Some(Phase::Rcpt)),
        Stage::Data => ("DATA", Some(Phase::Data)),
        Stage::Message if chunking => ("BDAT", Some(Phase::EndOfData)),
        Stage::Message => ("end_of_data", Some(Phase::EndOfData)),
        Stage::Rset => ("RSET", None),
        Stage::Quit => ("QUIT", Some(Phase::Quit)),
        // AUTH's latency is the whole exchange, measured by the step.
        Stage::Auth => ("AUTH", None),
        Stage::StartTls => ("STARTTLS", None),
        Stage::Xclient => ("XCLIENT", None),
        Stage::Proxy | Stage::TlsHandshake => ("", None),
    }
}
