//! plan: `Args` to the immutable `Plan` that sessions run from.
//!
//! Everything that can be decided before the first connect is decided
//! here, in the reference's order (so the first error is the one the
//! reference would report): read the -F file, build the
//! body, parse and resolve the endpoint, find myhostname, make the
//! default addresses. Sessions never see argv.

use std::time::Duration;

use socket2::SockAddr;

use crate::cli::{Args, Delay};
use crate::endpoint::{self, Spec};
use crate::error::Error;
use crate::hostname;
use crate::identity::{self, Cidr, Credential, ProxyVersion, Xclient};
use crate::longopts::{self, Arrival, AuthMech, ReportFormat};
use crate::message::HeaderTemplate;
use crate::sys;
use crate::tls::{self, TlsPlan};
use crate::workload::{self, Content};

/// Default per-stage deadline: the reference's 300 s I/O limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The greeting command, if any (-o sends none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    None,
    Helo,
    /// --ehlo (SMTP); LMTP's LHLO is already extended.
    Ehlo,
    Lhlo,
}

/// What the long options ask of the run (all off for an old command
/// line).
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    /// Read the greeting reply's capability list.
    pub capabilities: bool,
    pub pipelining: bool,
    pub chunking: bool,
    /// Counters and latencies are recorded (--report, --report-file,
    /// --hlog, --rate, --duration).
    pub measure: bool,
    pub report: Option<ReportFormat>,
    pub report_file: Option<Vec<u8>>,
    pub hlog: Option<Vec<u8>>,
    pub rate: Option<(f64, Arrival)>,
    pub duration: Option<Duration>,
    /// --progress: a status line on stderr every second.
    pub progress: bool,
}

/// Secure transport and client identity (all None for an old command
/// line).
#[derive(Debug, Clone, Default)]
pub struct Security {
    pub tls: Option<TlsPlan>,
    pub auth: Option<AuthPlan>,
    pub xclient: Option<Xclient>,
    /// --proxy; the source range, or None for the socket's own address.
    pub proxy: Option<(ProxyVersion, Option<Cidr>)>,
}

/// --auth: the mechanism and the users, taken in turn per connection.
#[derive(Debug, Clone)]
pub struct AuthPlan {
    pub mech: AuthMech,
    pub users: Vec<Credential>,
    /// --auth-plaintext: AUTH may go over a connection without TLS.
    pub plaintext_ok: bool,
}

/// What the environment gives the plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct Env<'a> {
    /// SMTP_SOURCE_TIMEOUT.
    pub timeout: Option<&'a [u8]>,
    /// SMTP_SOURCE_PASSWORD (--auth-user's password).
    pub password: Option<&'a [u8]>,
}

/// Everything a session needs, fixed for the whole run.
#[derive(Debug)]
pub struct Plan {
    pub addr: SockAddr,
    /// SO_KEEPALIVE is set on IPv4 sockets only, as the reference does.
    pub keepalive: bool,
    pub window: Option<u32>,
    pub connect_count: u32,
    pub max_connecting: u32,
    pub timeout: Duration,
    pub myhostname: Vec<u8>,
    pub greeting: Greeting,
    pub lmtp: bool,
    pub sender: Vec<u8>,
    pub recipient: Vec<u8>,
    pub recipients: u32,
    pub numbering: Numbering,
    /// Per-message headers; None with -o or -F.
    pub headers: Option<HeaderTemplate>,
    /// The bodies (built once, shared by all) and the address lists.
    pub content: Content,
    /// The seed of every random draw (--seed, or a random one).
    pub seed: u64,
    pub ext: Extensions,
    pub security: Security,
    pub reuse: bool,
    pub allow_reject: bool,
    pub count: bool,
    pub verbose: u32,
    pub delay: Delay,
    pub sessions: u32,
    /// The message budget; `UNLIMITED` with --duration and no -m.
    pub messages: u64,
}

/// The budget of a --duration run without -m.
pub const UNLIMITED: u64 = 1 << 60;

/// Builds the plan from the arguments and the environment.
pub fn build(args: &Args, env: Env) -> Result<Plan, Error> {
    workload::conflicts(args)?;
    let timeout = timeout(args, env.timeout)?;
    let content = workload::build(args)?;
    let (addr, keepalive) = resolve(args)?;
    let security =
        security(args, env.password).map_err(|fatal| Error::Config {
            warning: None,
            fatal: fatal.into_bytes(),
        })?;
    let myhostname = myhostname(args)?;
    let default_addr = [&b"foo@"[..], &myhostname].concat();
    let sender = args.from.clone().unwrap_or_else(|| default_addr.clone());
    let recipient = args.to.clone().unwrap_or(default_addr);
    // A -F file or a --message-dir file brings its own headers.
    let own_headers = args.file.is_some() || args.long.message_dir.is_some();
    let headers = (!args.old_mode && !own_headers).then(|| HeaderTemplate {
        from: sender.clone(),
        to: recipient.clone(),
        subject: args.subject.clone(),
        myhostname: myhostname.clone(),
    });
    Ok(Plan {
        addr,
        keepalive,
        window: args.window,
        connect_count: args.connect_count,
        max_connecting: args.long.max_connecting,
        timeout,
        greeting: greeting(args),
        lmtp: args.lmtp,
        sender,
        recipient,
        recipients: args.recipients,
        numbering: numbering(args),
        headers,
        content,
        seed: crate::draw::run_seed(args.long.seed),
        ext: extensions(args),
        security,
        reuse: args.reuse,
        allow_reject: args.allow_reject,
        count: args.count,
        verbose: args.verbose,
        delay: args.delay,
        sessions: args.sessions,
        messages: match (args.long.duration, args.messages_given) {
            (Some(_), false) => UNLIMITED,
            _ => u64::from(args.messages),
        },
        myhostname,
    })
}

/// Whether the greeting is EHLO (or LHLO) and its reply is read: asked
/// for, or needed by an extension (STARTTLS, AUTH and XCLIENT are
/// offered there).
fn extended(l: &longopts::LongArgs) -> bool {
    l.ehlo
        || l.pipelining
        || l.chunking
        || l.tls.level.is_some()
        || l.auth.is_some()
        || l.xclient.is_some()
}

fn greeting(args: &Args) -> Greeting {
    let ehlo = extended(&args.long);
    match (args.old_mode, args.lmtp, ehlo) {
        (true, _, _) => Greeting::None,
        (false, true, _) => Greeting::Lhlo,
        (false, false, true) => Greeting::Ehlo,
        (false, false, false) => Greeting::Helo,
    }
}

/// How RCPT addresses are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// 3.7 without -N: `-r 3` sends `3foo`, `2foo`, `foo`.
    CountDown,
    /// 3.7 -N: a global sequence from 1 in front of every recipient.
    Sequence,
    /// 3.9 with -N or -r: a global count from 0 appended to the local
    /// part; To: carries the last numbered address.
    Appended,
    /// 3.9 without -N and -r: the address as given.
    Plain,
    /// --rcpt-file: the addresses of the list, in turn.
    File,
}

fn numbering(args: &Args) -> Numbering {
    if args.long.rcpt_file.is_some() {
        return Numbering::File;
    }
    let on = args.numbered || args.recipients_given;
    match (args.long.numbering, args.numbered, on) {
        (longopts::Numbering::Postfix37, true, _) => Numbering::Sequence,
        (longopts::Numbering::Postfix37, false, _) => Numbering::CountDown,
        (longopts::Numbering::Postfix39, _, true) => Numbering::Appended,
        (longopts::Numbering::Postfix39, _, false) => Numbering::Plain,
    }
}

fn extensions(args: &Args) -> Extensions {
    let l = &args.long;
    Extensions {
        capabilities: extended(l),
        pipelining: l.pipelining,
        chunking: l.chunking,
        measure: l.report.is_some()
            || l.report_file.is_some()
            || l.hlog.is_some()
            || l.rate.is_some()
            || l.duration.is_some()
            || l.progress,
        report: l.report,
        report_file: l.report_file.clone(),
        hlog: l.hlog.clone(),
        rate: l.rate.map(|r| (r, l.arrival)),
        duration: l.duration,
        progress: l.progress,
    }
}

/// TLS, AUTH, XCLIENT and PROXY from the long options; Err is the fatal
/// text. Options that would be silently ignored are errors.
fn security(args: &Args, password: Option<&[u8]>) -> Result<Security, String> {
    let l = &args.long;
    let starttls = l.tls.level.is_some() && !l.tls.wrapper;
    if args.old_mode && (starttls || l.auth.is_some() || l.xclient.is_some()) {
        return Err("-o sends no EHLO: it cannot be combined with --tls \
(without --tls-wrapper), --auth or --xclient"
            .into());
    }
    let tls = tls::build(&l.tls, peer(args))?;
    let auth = auth(l, password, tls.is_some())?;
    let proxy = match (l.proxy, l.proxy_source) {
        (Some(v), source) => Some((v, source)),
        (None, Some(_)) => return Err("--proxy-source needs --proxy".into()),
        (None, None) => None,
    };
    Ok(Security {
        tls,
        auth,
        xclient: l.xclient.clone(),
        proxy,
    })
}

/// The endpoint's host as TLS names it.
fn peer(args: &Args) -> tls::Peer {
    match endpoint::parse(&args.endpoint) {
        Ok(Spec::Inet { host, .. }) => {
            let text = String::from_utf8_lossy(&host).into_owned();
            match text.parse::<std::net::IpAddr>() {
                Ok(ip) => tls::Peer::Address(ip),
                Err(_) => tls::Peer::Name(text),
            }
        }
        _ => tls::Peer::Unix,
    }
}

fn auth(
    l: &longopts::LongArgs,
    password: Option<&[u8]>,
    tls: bool,
) -> Result<Option<AuthPlan>, String> {
    let Some(mech) = l.auth else {
        let stray = [
            (l.auth_user.is_some(), "--auth-user"),
            (l.auth_file.is_some(), "--auth-file"),
            (l.auth_plaintext, "--auth-plaintext"),
        ];
        return match stray.iter().find(|(on, _)| *on) {
            Some((_, name)) => Err(format!("{name} needs --auth")),
            None => Ok(None),
        };
    };
    if !tls && !l.auth_plaintext {
        return Err("--auth would send a password in plaintext: give --tls \
or --tls-wrapper (or --auth-plaintext to allow it)"
            .into());
    }
    let users = match (&l.auth_user, &l.auth_file) {
        (Some(user), None) => {
            let Some(pw) = password else {
                return Err("--auth-user needs the password in \
SMTP_SOURCE_PASSWORD"
                    .into());
            };
            vec![Credential::new(user.clone(), pw.to_vec())]
        }
        (None, Some(path)) => {
            let text = read_file(path).map_err(|e| {
                format!("--auth-file: {}", String::from_utf8_lossy(&e.text()))
            })?;
            identity::parse_auth_file(&text).map_err(|why| {
                format!("--auth-file {}: {why}", String::from_utf8_lossy(path))
            })?
        }
        (Some(_), Some(_)) => {
            return Err("give --auth-user or --auth-file, not both".into())
        }
        (None, None) => {
            return Err("--auth needs --auth-user or --auth-file".into())
        }
    };
    Ok(Some(AuthPlan {
        mech,
        users,
        plaintext_ok: l.auth_plaintext,
    }))
}

/// --timeout wins over SMTP_SOURCE_TIMEOUT; 300 s otherwise.
fn timeout(args: &Args, env: Option<&[u8]>) -> Result<Duration, Error> {
    if let Some(t) = args.long.timeout {
        return Ok(t);
    }
    match env {
        Some(v) => crate::longopts::seconds(v, "SMTP_SOURCE_TIMEOUT"),
        None => Ok(DEFAULT_TIMEOUT),
    }
}

fn read_file(path: &[u8]) -> Result<Vec<u8>, Error> {
    workload::read_file(path, u64::MAX)
}

/// Parses and resolves the operand once, in the main thread.
fn resolve(args: &Args) -> Result<(SockAddr, bool), Error> {
    let config = |fatal| Error::Config {
        warning: None,
        fatal,
    };
    let spec = endpoint::parse(&args.endpoint).map_err(config)?;
    let shown = endpoint::after_inet(&args.endpoint);
    let addr = endpoint::resolve(&spec, shown, args.family).map_err(config)?;
    let keepalive = matches!(spec, Spec::Inet { .. }) && addr.is_ipv4();
    Ok((addr, keepalive))
}

/// -M as given (already checked), or the machine's name, checked here.
fn myhostname(args: &Args) -> Result<Vec<u8>, Error> {
    if let Some(name) = &args.myhostname {
        return Ok(name.clone());
    }
    let name = sys::gethostname().map_err(|e| Error::Config {
        warning: None,
        fatal: format!("gethostname: {}", crate::error::io_text(&e))
            .into_bytes(),
    })?;
    hostname::check_own_hostname(&name).map_err(|warning| Error::Config {
        warning: Some(warning),
        fatal: b"unable to use my own hostname".to_vec(),
    })?;
    Ok(name)
}
