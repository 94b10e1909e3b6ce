//! error: the one error type of the crate, and the stage names that every
//! diagnostic carries, in Postfix's words.
//!
//! Errors are values; `text()` renders them once. Only `diag` decides
//! whether a text is printed as a warning or as a fatal error (style P2).

use std::io;

use crate::reply::Reply;

/// The protocol step whose reply (or write) was in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Banner,
    Helo,
    Ehlo,
    Lhlo,
    Mail,
    Rcpt,
    Data,
    /// Message content, the end-of-data dot and its reply(s).
    Message,
    Rset,
    Quit,
    /// The HAProxy PROXY header, before any SMTP byte (--proxy).
    Proxy,
    StartTls,
    /// The TLS handshake (after STARTTLS, or first with --tls-wrapper).
    TlsHandshake,
    Xclient,
    Auth,
}

impl Stage {
    /// The phrase after "lost connection while" / "timeout while".
    ///
    /// RSET and QUIT have no error context of their own in the reference:
    /// its text then names the message step ("sending message").
    pub fn phrase(self) -> &'static str {
        match self {
            Stage::Banner => "reading server greeting",
            Stage::Helo => "sending HELO",
            Stage::Ehlo => "sending EHLO",
            Stage::Lhlo => "sending LHLO",
            Stage::Mail => "sending sender",
            Stage::Rcpt => "sending recipient",
            Stage::Data => "sending DATA command",
            Stage::Message | Stage::Rset | Stage::Quit => "sending message",
            Stage::Proxy => "sending PROXY header",
            Stage::StartTls => "sending STARTTLS",
            Stage::TlsHandshake => "performing TLS handshake",
            Stage::Xclient => "sending XCLIENT",
            Stage::Auth => "sending AUTH",
        }
    }

    /// The label of a non-success reply at this stage.
    pub fn reject_label(self) -> &'static str {
        match self {
            Stage::Banner => "rejected at server banner",
            Stage::Helo => "HELO rejected",
            Stage::Ehlo => "EHLO rejected",
            Stage::Lhlo => "LHLO rejected",
            Stage::Mail => "sender rejected",
            Stage::Rcpt => "recipient rejected",
            Stage::Data => "data rejected",
            Stage::Message => "end of data rejected",
            Stage::Rset => "rset rejected",
            Stage::Quit => "quit rejected",
            Stage::Proxy => "PROXY header rejected",
            Stage::StartTls => "STARTTLS rejected",
            Stage::TlsHandshake => "TLS handshake failed",
            Stage::Xclient => "XCLIENT rejected",
            Stage::Auth => "authentication failed",
        }
    }
}

/// Everything that can end a run with exit status 1 (or, for `Usage`,
/// print the usage line first).
#[derive(Debug)]
pub enum Error {
    /// Bad command line: an optional glibc-style line (printed without
    /// "fatal:"), then the usage fatal.
    Usage { getopt_line: Option<Vec<u8>> },
    /// A fatal text, possibly preceded by a warning (-M validation).
    Config {
        warning: Option<Vec<u8>>,
        fatal: Vec<u8>,
    },
    /// connect() failed and the -C budget is used up.
    Connect(io::Error),
    /// EOF or reset while a stage's reply was read or its command written.
    Lost {
        stage: Stage,
        server_said: Option<Reply>,
    },
    /// The stage's deadline passed.
    Timeout { stage: Stage },
    /// A reply line overflowed the discard bound, or a reply had too many
    /// lines (the bounds are in `lineio` and `reply`).
    TooLong { stage: Stage, lines: bool },
    /// A non-success reply without -A.
    Rejected { stage: Stage, reply: Reply },
    /// TLS could not be set up: rustls's reason (certificate, alert,
    /// junk instead of a ServerHello).
    Tls { detail: String },
    /// TLS, AUTH or XCLIENT cannot go on as asked (not offered, AUTH
    /// without encryption, data injected before the handshake): the
    /// whole text.
    Security(Vec<u8>),
    /// A session thread could not be created.
    Spawn(io::Error),
    /// A session thread died from a bug (test builds only; release aborts).
    Internal(&'static str),
    /// The run was halted (`Shared::halt`): the session stops where it
    /// stands. Never printed: whoever halted says why.
    Halted,
}

impl Error {
    /// The fatal text, without "argv0: fatal: ".
    pub fn text(&self) -> Vec<u8> {
        match self {
            Error::Usage { .. } => b"usage".to_vec(),
            Error::Config { fatal, .. } => fatal.clone(),
            Error::Connect(e) => {
                format!("connect: {}", io_text(e)).into_bytes()
            }
            Error::Lost { stage, server_said } => {
                lost_text(*stage, server_said.as_ref())
            }
            Error::Timeout { stage } => {
                format!("timeout while {}", stage.phrase()).into_bytes()
            }
            Error::TooLong { stage, lines } => {
                let what = if *lines { "reply" } else { "reply line" };
                format!("{what} too long while {}", stage.phrase())
                    .into_bytes()
            }
            Error::Rejected { stage, reply } => reject_text(*stage, reply),
            Error::Tls { detail } => {
                format!("TLS handshake failed: {detail}").into_bytes()
            }
            Error::Security(text) => text.clone(),
            Error::Spawn(e) => {
                format!("cannot create session thread: {}", io_text(e))
                    .into_bytes()
            }
            Error::Internal(what) => {
                format!("internal error: {what}").into_bytes()
            }
            Error::Halted => b"run halted".to_vec(),
        }
    }
}

/// "<label>: <code> <text>", the form of every rejection diagnostic.
pub fn reject_text(stage: Stage, reply: &Reply) -> Vec<u8> {
    let mut out =
        format!("{}: {} ", stage.reject_label(), reply.code).into_bytes();
    out.extend_from_slice(&reply.text);
    out
}

fn lost_text(stage: Stage, said: Option<&Reply>) -> Vec<u8> {
    let mut out =
        format!("lost connection while {}", stage.phrase()).into_bytes();
    if let Some(reply) = said {
        // What the server answered before it stopped reading.
        out.extend_from_slice(
            format!(" (server said: {} ", reply.code).as_bytes(),
        );
        out.extend_from_slice(&reply.text);
        out.push(b')');
    }
    out
}

/// strerror() text of an I/O error, without Rust's " (os error N)".
pub fn io_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(errno) => crate::sys::strerror(errno),
        None => e.to_string(),
    }
}
