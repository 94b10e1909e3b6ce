//! report: everything a run measures and tells. Sessions record into
//! `stats`; at the end `summary` renders the text or JSON report, which
//! `output` writes (checked before the first connect, replaced whole,
//! with the exit status a failed write calls for). During the run,
//! `progress` prints the status line, `hlog` writes the --hlog interval
//! log and `spool` keeps the one-second intervals on disk as they
//! close. `merge` and `html` are smtp-report's: they read reports back,
//! add them up and draw them. `codec` is the one place histograms are
//! made and turned into text; `run` remembers what the run was.
//!
//! Nothing here is used unless the run measures (--report and friends):
//! the drop-in path pays one branch per hook.

pub mod codec;
pub mod hlog;
pub mod html;
pub mod merge;
pub(crate) mod output;
pub(crate) mod progress;
pub mod run;
pub(crate) mod spool;
pub mod stats;
pub mod summary;

pub use codec::{decode_histogram, encode_histogram};
pub use hlog::HistogramLog;
pub use summary::*;
