//! smtp-source: a parallel SMTP/LMTP test generator that behaves like
//! Postfix 3.7.11's `smtp-source` on the wire, on stdout/stderr and in its
//! exit status.
//!
//! Layout (parse, then plan, then run):
//! `cli` turns argv into plain `Args`; `plan` turns `Args` into an
//! immutable `Plan`; `engine` starts one thread per session, each running
//! `session` over a `net::Conn`. The protocol core (`reply`, `command`,
//! `message`, `endpoint`, `hostname`) does no I/O.

pub mod cli;
pub mod command;
pub mod diag;
pub mod draw;
pub mod endpoint;
pub mod engine;
pub mod error;
pub mod hostname;
pub mod html;
pub mod identity;
pub mod lineio;
pub mod longopts;
pub mod merge;
pub mod message;
pub mod net;
pub mod plan;
pub mod progress;
pub mod reply;
pub mod report;
pub mod scale;
pub mod schedule;
pub mod session;
pub mod stats;
#[allow(unsafe_code)]
pub mod sys;
pub mod tls;
pub mod transport;
pub(crate) mod txn;
pub mod work;
pub mod workload;
