//! error: the one error type of the crate, and the stage names that every
//! diagnostic carries, in Postfix's words.
//!
//! Errors are values; `text()` renders them once, here: no error carries
//! its text pre-rendered (`Config` says what is wrong, not how to say
//! it). Only `diag` decides whether a text is printed as a warning or as
//! a fatal error.

use std::io;
use std::net::IpAddr;

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
    /// Bad command line: glibc's line about it when it has one (printed
    /// without "fatal:"), then the usage fatal.
    Usage(Usage),
    /// The command line or the set-up cannot run (found before any
    /// connect).
    Config(Config),
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
            Error::Usage(_) => b"usage".to_vec(),
            Error::Config(c) => c.text(),
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

/// A command line that getopt (or the operand count) rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    /// Not exactly one operand: the usage line alone.
    Operands,
    /// An option letter not in the option string.
    InvalidOption(u8),
    /// A `--word` we do not know (without its dashes and any `=value`):
    /// named, since the reference accepts no long option at all and its
    /// `invalid option -- '-'` tells a user nothing.
    UnknownLong(Vec<u8>),
    /// `--name=value` for a long option that takes no value.
    NoValueAllowed(&'static str),
    /// An option letter that takes an argument, last on the line.
    MissingArgument(u8),
    /// A long option that takes a value, last on the line.
    MissingValue(&'static str),
}

impl Usage {
    /// glibc getopt's line, without the "argv0: " prefix.
    pub fn getopt_line(&self) -> Option<Vec<u8>> {
        let quoted = |what: &str, opt: u8| {
            let mut line = format!("{what} -- '").into_bytes();
            line.push(opt);
            line.push(b'\'');
            line
        };
        match self {
            Usage::Operands => None,
            Usage::InvalidOption(opt) => Some(quoted("invalid option", *opt)),
            Usage::UnknownLong(name) => {
                let mut line = b"unknown option --".to_vec();
                // User input bound for a terminal: printable ASCII only.
                line.extend(name.iter().map(|&b| match b {
                    0x21..=0x7e => b,
                    _ => b'?',
                }));
                Some(line)
            }
            Usage::NoValueAllowed(name) => Some(
                format!("option '--{name}' doesn't allow an argument")
                    .into_bytes(),
            ),
            Usage::MissingArgument(opt) => {
                Some(quoted("option requires an argument", *opt))
            }
            Usage::MissingValue(name) => Some(
                format!("option '--{name}' requires an argument").into_bytes(),
            ),
        }
    }
}

/// Why a run cannot start: a value, a combination of options, a file,
/// the host. `text()` renders every one of them (in the reference's words
/// where it has any); `warning()` is the line some print first.
#[derive(Debug)]
pub enum Config {
    /// A short option's value that is not a number > 0 (`what`: "message
    /// count", ...).
    BadNumber {
        what: &'static str,
        value: Vec<u8>,
    },
    /// A long option's value (or SMTP_SOURCE_TIMEOUT's), and why when
    /// the parser can say.
    BadValue {
        option: &'static str,
        value: Vec<u8>,
        why: Option<String>,
    },
    /// Two options that cannot go together.
    Conflict(Conflict),
    /// -M is neither a valid hostname nor an address literal; `warning`
    /// is Postfix's `valid_hostname`/literal complaint.
    Myhostname {
        warning: Vec<u8>,
        literal: bool,
        value: Vec<u8>,
    },
    /// Without -M, the machine's own name is not a valid hostname.
    OwnHostname {
        warning: Vec<u8>,
    },
    Gethostname(io::Error),
    /// The endpoint operand, in the endpoint module's words (parse or
    /// name lookup).
    Endpoint(Vec<u8>),
    /// A file or directory that could not be opened, read or written.
    File {
        op: FileOp,
        path: Vec<u8>,
        error: io::Error,
    },
    /// A file longer than `limit` bytes (callers say which limit).
    OverLimit {
        path: Vec<u8>,
        limit: u64,
    },
    /// A file error about the input of `option`.
    Option {
        option: &'static str,
        inner: Box<Config>,
    },
    /// An input of `option` that cannot be used as it is.
    Input {
        option: &'static str,
        path: Vec<u8>,
        problem: Problem,
    },
    /// -s needs more descriptors than the open file limit allows.
    OpenFiles {
        sessions: u32,
        want: u64,
        have: u64,
    },
    /// `what` has no effect without `needs`.
    Needs {
        what: &'static str,
        needs: &'static str,
    },
    /// --auth without TLS and without --auth-plaintext.
    PlaintextAuth,
    /// A --bind address of the other family than the server's.
    BindFamily {
        ip: IpAddr,
        server: IpAddr,
    },
    /// A listening address (`option`: --metrics-listen) that cannot be
    /// bound.
    Listen {
        option: &'static str,
        addr: std::net::SocketAddr,
        error: io::Error,
    },
    /// A --bind address that cannot be bound here.
    Bind {
        ip: IpAddr,
        error: io::Error,
    },
    /// The TLS options cannot make a client configuration.
    Tls(TlsSetup),
    /// An error quoted as text (an --auth-file that cannot be read).
    Refused(String),
    /// An output the run was asked for (`option`: --report-file, --hlog)
    /// that cannot be written.
    Output {
        option: &'static str,
        path: Vec<u8>,
        error: io::Error,
    },
}

/// Why the TLS options cannot make a client configuration.
#[derive(Debug)]
pub enum TlsSetup {
    /// rustls refused the protocol versions (`detail`: its words).
    Versions(String),
    /// --tls-ca with a level that does not check certificates.
    CaWithoutVerify { level: &'static str },
    /// Only one of --tls-cert and --tls-key.
    CertWithoutKey,
    /// A PEM file (`option`'s) rustls could not use: its words.
    Pem {
        option: &'static str,
        detail: String,
    },
    /// No certificate in the --tls-ca file.
    NoCaCertificate { path: Vec<u8> },
    /// --tls=verify without --tls-ca, and no system roots.
    NoSystemRoots,
    /// No certificate in the --tls-cert file.
    NoClientCertificate,
    /// --tls=verify with a host that cannot be a certificate's name.
    NotAName { host: String },
}

/// Options that exclude each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// -l with -F (the reference's text).
    LengthAndFile,
    /// -w with -R (the reference's text).
    FixedAndRandomDelay,
    /// One of our options with another option.
    Options(&'static str, &'static str),
    /// -o (no EHLO) with an extension that is negotiated after EHLO.
    OldModeAndEhloExtensions,
    /// --auth-user with --auth-file.
    AuthUserAndFile,
    /// One of our options without another it needs.
    Requires(&'static str, &'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    Open,
    Read,
    Write,
}

/// What is wrong with an input as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The parser's reason.
    Invalid(String),
    NoFiles,
    NoAddresses,
    /// Over the limit of a list (MiB).
    LargerThan {
        mib: u64,
    },
    /// Over the limit of a message directory (MiB).
    CorpusOver {
        mib: u64,
    },
}

impl Config {
    /// The line printed as a warning before the fatal one, if any.
    pub fn warning(&self) -> Option<&[u8]> {
        match self {
            Config::Myhostname { warning, .. }
            | Config::OwnHostname { warning } => Some(warning),
            _ => None,
        }
    }

    /// The fatal text, without "argv0: fatal: ".
    pub fn text(&self) -> Vec<u8> {
        let cat = |parts: &[&[u8]]| parts.concat();
        match self {
            Config::BadNumber { what, value } => {
                cat(&[b"bad ", what.as_bytes(), b": ", value])
            }
            Config::BadValue { option, value, why } => {
                let mut out =
                    cat(&[b"bad ", option.as_bytes(), b" value: ", value]);
                if let Some(why) = why {
                    out.extend_from_slice(format!(" ({why})").as_bytes());
                }
                out
            }
            Config::Conflict(c) => c.text().into_bytes(),
            Config::Myhostname { literal, value, .. } => {
                let what: &[u8] = match literal {
                    true => b"bad address literal: ",
                    false => b"bad hostname: ",
                };
                cat(&[what, value])
            }
            Config::OwnHostname { .. } => {
                b"unable to use my own hostname".to_vec()
            }
            Config::Gethostname(e) => {
                format!("gethostname: {}", io_text(e)).into_bytes()
            }
            Config::Endpoint(text) => text.clone(),
            Config::File { op, path, error } => {
                let why = io_text(error);
                cat(&[op.verb().as_bytes(), b" ", path, b": ", why.as_bytes()])
            }
            Config::OverLimit { path, limit } => {
                let limit = format!(": larger than {limit} bytes");
                cat(&[path, limit.as_bytes()])
            }
            Config::Option { option, inner } => {
                cat(&[option.as_bytes(), b": ", &inner.text()])
            }
            Config::Input {
                option,
                path,
                problem,
            } => {
                let path = String::from_utf8_lossy(path);
                format!("{option} {path}: {}", problem.text()).into_bytes()
            }
            Config::OpenFiles {
                sessions,
                want,
                have,
            } => format!(
                "{sessions} sessions need {want} open files, but the open \
file limit (ulimit -n) is {have}"
            )
            .into_bytes(),
            Config::Needs { what, needs } => {
                format!("{what} needs {needs}").into_bytes()
            }
            Config::PlaintextAuth => b"--auth would send a password in \
plaintext: give --tls or --tls-wrapper (or --auth-plaintext to allow it)"
                .to_vec(),
            Config::BindFamily { ip, server } => format!(
                "--bind address {ip} is {}, but the server address {server} \
is {}",
                family(ip),
                family(server)
            )
            .into_bytes(),
            Config::Listen {
                option,
                addr,
                error,
            } => format!("{option} {addr}: {}", io_text(error)).into_bytes(),
            Config::Bind { ip, error } => {
                format!("--bind address {ip}: {}", io_text(error)).into_bytes()
            }
            Config::Tls(t) => t.text().into_bytes(),
            Config::Refused(text) => text.clone().into_bytes(),
            Config::Output {
                option,
                path,
                error,
            } => crate::report::output::failure_text(option, path, error),
        }
    }
}

impl TlsSetup {
    fn text(&self) -> String {
        match self {
            TlsSetup::Versions(detail) => format!("TLS setup: {detail}"),
            TlsSetup::CaWithoutVerify { level } => format!(
                "--tls-ca is used only with --tls=verify (the level is \
{level})"
            ),
            TlsSetup::CertWithoutKey => {
                "--tls-cert and --tls-key go together".into()
            }
            TlsSetup::Pem { option, detail } => format!("{option}: {detail}"),
            TlsSetup::NoCaCertificate { path } => format!(
                "--tls-ca: no certificate in {}",
                String::from_utf8_lossy(path)
            ),
            TlsSetup::NoSystemRoots => "--tls=verify: no system root \
certificates found (give --tls-ca)"
                .into(),
            TlsSetup::NoClientCertificate => {
                "--tls-cert: no certificate in the file".into()
            }
            TlsSetup::NotAName { host } => format!(
                "--tls=verify: {host} is not a name a certificate can \
carry; give --tls-servername"
            ),
        }
    }
}

impl Conflict {
    fn text(self) -> String {
        match self {
            Conflict::LengthAndFile => {
                "-l option cannot be used with -F".into()
            }
            Conflict::FixedAndRandomDelay => {
                "do not use -w and -R options at the same time".into()
            }
            Conflict::Options(a, b) => format!("{a} cannot be used with {b}"),
            Conflict::Requires(a, b) => format!("{a} requires {b}"),
            Conflict::OldModeAndEhloExtensions => {
                "-o sends no EHLO: it cannot be combined with --tls (without \
--tls-wrapper), --auth or --xclient"
                    .into()
            }
            Conflict::AuthUserAndFile => {
                "give --auth-user or --auth-file, not both".into()
            }
        }
    }
}

impl FileOp {
    fn verb(self) -> &'static str {
        match self {
            FileOp::Open => "open",
            FileOp::Read => "read",
            FileOp::Write => "write",
        }
    }
}

fn family(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

impl Problem {
    fn text(&self) -> String {
        match self {
            Problem::Invalid(why) => why.clone(),
            Problem::NoFiles => "no files".into(),
            Problem::NoAddresses => "no addresses".into(),
            Problem::LargerThan { mib } => format!("larger than {mib} MiB"),
            Problem::CorpusOver { mib } => {
                format!("more than {mib} MiB of messages")
            }
        }
    }
}

impl From<Config> for Error {
    fn from(c: Config) -> Error {
        Error::Config(c)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// ENOENT.
    fn enoent() -> io::Error {
        io::Error::from_raw_os_error(2)
    }

    fn file(path: &[u8]) -> Config {
        Config::File {
            op: FileOp::Open,
            path: path.to_vec(),
            error: enoent(),
        }
    }

    // Each kind of set-up error, rendered as the run prints it (these
    // texts were pre-rendered where the error was found; the wording must
    // not change now that it is made here).
    #[test]
    fn every_config_error_reads_as_before() {
        let nofile = "No such file or directory";
        let cases = [
            (
                Config::BadNumber {
                    what: "message count",
                    value: b"a\xffb".to_vec(),
                },
                b"bad message count: a\xffb".to_vec(),
            ),
            (
                Config::BadValue {
                    option: "--xclient",
                    value: b"X=1".to_vec(),
                    why: Some("unknown attribute X".into()),
                },
                b"bad --xclient value: X=1 (unknown attribute X)".to_vec(),
            ),
            (
                Config::Conflict(Conflict::LengthAndFile),
                b"-l option cannot be used with -F".to_vec(),
            ),
            (
                Config::Conflict(Conflict::FixedAndRandomDelay),
                b"do not use -w and -R options at the same time".to_vec(),
            ),
            (
                Config::Conflict(Conflict::Options("--rcpt-file", "-t")),
                b"--rcpt-file cannot be used with -t".to_vec(),
            ),
            (
                Config::OwnHostname {
                    warning: b"valid_hostname: x".to_vec(),
                },
                b"unable to use my own hostname".to_vec(),
            ),
            (
                Config::Gethostname(enoent()),
                format!("gethostname: {nofile}").into_bytes(),
            ),
            // A path is quoted as bytes, as -F's always was.
            (
                file(b"/m\xff"),
                [&b"open /m\xff: "[..], nofile.as_bytes()].concat(),
            ),
            (
                Config::Option {
                    option: "--rcpt-file",
                    inner: Box::new(file(b"r")),
                },
                format!("--rcpt-file: open r: {nofile}").into_bytes(),
            ),
            (
                Config::Input {
                    option: "--rcpt-file",
                    path: b"r".to_vec(),
                    problem: Problem::LargerThan { mib: 64 },
                },
                b"--rcpt-file r: larger than 64 MiB".to_vec(),
            ),
            (
                Config::Input {
                    option: "--message-dir",
                    path: b"d".to_vec(),
                    problem: Problem::CorpusOver { mib: 256 },
                },
                b"--message-dir d: more than 256 MiB of messages".to_vec(),
            ),
            (
                Config::Input {
                    option: "--message-dir",
                    path: b"d".to_vec(),
                    problem: Problem::NoFiles,
                },
                b"--message-dir d: no files".to_vec(),
            ),
            (
                Config::Input {
                    option: "--sender-file",
                    path: b"s".to_vec(),
                    problem: Problem::NoAddresses,
                },
                b"--sender-file s: no addresses".to_vec(),
            ),
            (
                Config::OpenFiles {
                    sessions: 5000,
                    want: 5016,
                    have: 1024,
                },
                b"5000 sessions need 5016 open files, but the open file \
limit (ulimit -n) is 1024"
                    .to_vec(),
            ),
            (
                Config::Needs {
                    what: "--proxy-source",
                    needs: "--proxy",
                },
                b"--proxy-source needs --proxy".to_vec(),
            ),
            (
                Config::PlaintextAuth,
                b"--auth would send a password in plaintext: give --tls or \
--tls-wrapper (or --auth-plaintext to allow it)"
                    .to_vec(),
            ),
            (
                Config::BindFamily {
                    ip: "::1".parse().unwrap(),
                    server: "127.0.0.1".parse().unwrap(),
                },
                b"--bind address ::1 is IPv6, but the server address \
127.0.0.1 is IPv4"
                    .to_vec(),
            ),
            (
                Config::Conflict(Conflict::OldModeAndEhloExtensions),
                b"-o sends no EHLO: it cannot be combined with --tls \
(without --tls-wrapper), --auth or --xclient"
                    .to_vec(),
            ),
            (
                Config::Conflict(Conflict::AuthUserAndFile),
                b"give --auth-user or --auth-file, not both".to_vec(),
            ),
            (
                Config::Input {
                    option: "--auth-file",
                    path: b"a".to_vec(),
                    problem: Problem::Invalid("line 2: no ':'".into()),
                },
                b"--auth-file a: line 2: no ':'".to_vec(),
            ),
            (
                Config::Tls(TlsSetup::NoSystemRoots),
                b"--tls=verify: no system root certificates found (give \
--tls-ca)"
                    .to_vec(),
            ),
            (
                Config::Tls(TlsSetup::NotAName {
                    host: "bad_name!".into(),
                }),
                b"--tls=verify: bad_name! is not a name a certificate can \
carry; give --tls-servername"
                    .to_vec(),
            ),
            (
                Config::Tls(TlsSetup::Pem {
                    option: "--tls-key",
                    detail: "no private key: NoItemsFound".into(),
                }),
                b"--tls-key: no private key: NoItemsFound".to_vec(),
            ),
            (
                Config::Tls(TlsSetup::NoCaCertificate {
                    path: b"ca.pem".to_vec(),
                }),
                b"--tls-ca: no certificate in ca.pem".to_vec(),
            ),
            (
                Config::BadValue {
                    option: "--tls-servername",
                    value: b"a b".to_vec(),
                    why: None,
                },
                b"bad --tls-servername value: a b".to_vec(),
            ),
        ];
        for (config, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&config.text()),
                String::from_utf8_lossy(&want),
                "{config:?}"
            );
            assert_eq!(config.text(), want, "{config:?}");
        }
    }

    #[test]
    fn only_the_hostname_errors_warn_first() {
        let own = Config::OwnHostname {
            warning: b"w".to_vec(),
        };
        assert_eq!(own.warning(), Some(&b"w"[..]));
        assert_eq!(file(b"x").warning(), None);
    }
}
