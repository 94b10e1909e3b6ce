//! smtp-source: a parallel SMTP/LMTP test generator that behaves like
//! Postfix 3.7.11's `smtp-source` on the wire, on stdout/stderr and in its
//! exit status.
//!
//! Layout (parse, then plan, then run):
//! `cli` turns argv into plain `Args`; `plan` turns `Args` into an
//! immutable `Plan`; `engine` starts one thread per session, each running
//! `session` over a `net::Conn`. The protocol core (`reply`, `command`,
//! `message`, `endpoint`, `hostname`) does no I/O.

pub mod capacity;
pub(crate) mod cli;
pub(crate) mod command;
pub mod diag;
pub(crate) mod draw;
pub mod endpoint;
pub(crate) mod engine;
pub mod error;
pub(crate) mod esmtp;
pub(crate) mod hostname;
pub mod identity;
pub(crate) mod interrupt;
pub mod lineio;
pub(crate) mod longopts;
pub mod message;
pub(crate) mod metrics;
pub(crate) mod net;
pub(crate) mod plan;
pub mod reply;
pub mod report;
pub(crate) mod scale;
pub(crate) mod schedule;
pub(crate) mod session;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub mod threshold;
pub(crate) mod tls;
pub(crate) mod transport;
pub(crate) mod txn;
pub(crate) mod work;
pub(crate) mod workload;

use error::Error;

/// The smtp-source command: parse, plan, run; map errors to exit status.
/// (The binary is this one call, so that every module but the few
/// smtp-report and the fuzz targets use stays private to the crate.)
pub fn main() {
    let argv: Vec<_> = std::env::args_os().collect();
    let argv0 = argv.first().map(|a| a.as_encoded_bytes().to_vec());
    diag::init(argv0.as_deref().unwrap_or(b"smtp-source"));
    let argv_copy = argv.clone();
    let args = match cli::parse(argv) {
        Ok(cli::Parsed::Run(args)) => args,
        Ok(cli::Parsed::Help) => return diag::out(&cli::help_text()),
        Ok(cli::Parsed::Version) => return diag::out(cli::VERSION_TEXT),
        Err(e) => fail(e),
    };
    report::run::record(&argv_copy, &args.endpoint);
    diag::set_verbose(args.verbose);
    let timeout = std::env::var_os("SMTP_SOURCE_TIMEOUT");
    let password = std::env::var_os("SMTP_SOURCE_PASSWORD");
    let env = plan::Env {
        timeout: timeout.as_ref().map(|v| v.as_encoded_bytes()),
        password: password.as_ref().map(|v| v.as_encoded_bytes()),
    };
    let plan = plan::build(&args, env).unwrap_or_else(|e| fail(e));
    if plan.scale.dry_run {
        engine::check_outputs(&plan).unwrap_or_else(|e| fail(e));
        return diag::out(plan::describe(&plan).as_bytes());
    }
    engine::run(plan).unwrap_or_else(|e| fail(e));
}

/// Prints the error as the reference would and exits 1.
fn fail(e: Error) -> ! {
    match e {
        Error::Usage(usage) => {
            if let Some(line) = usage.getopt_line() {
                diag::raw_line(&line);
            }
            diag::fatal(&cli::usage_text(diag::argv0()))
        }
        Error::Config(c) => {
            if let Some(w) = c.warning() {
                diag::warn(w);
            }
            diag::fatal(&c.text())
        }
        e => diag::fatal(&e.text()),
    }
}
