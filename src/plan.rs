//! plan: `Args` to the immutable `Plan` that sessions run from.
//!
//! Everything that can be decided before the first connect is decided
//! here, in the reference's order (so the first error is the one the
//! reference would report): read the -F file, build the
//! body, parse and resolve the endpoint, find myhostname, make the
//! default addresses. Sessions never see argv.
//!
//! The plan owns the vocabulary the run is described in (`Delay`,
//! `Arrival`, `ReportFormat`, `AuthMech`...): the parsing layer (`cli`,
//! `longopts`) produces these values, and the runtime reads them from
//! here, never from the parser.

use std::time::Duration;

use socket2::SockAddr;

use crate::cli::Args;
use crate::endpoint::{self, Spec};
use crate::error::{Config, Conflict, Error, Problem};
use crate::esmtp::{self, EsmtpArgs};
use crate::hostname;
use crate::identity::{self, Cidr, Credential, ProxyVersion, Xclient};
use crate::longopts;
use crate::message::HeaderTemplate;
use crate::scale::Shard;
use crate::sys;
use crate::tls::{self, TlsPlan};
use crate::workload::{self, Content};

/// Default per-stage deadline: the reference's 300 s I/O limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// -w / -R: the pause after each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    None,
    Fixed(u32),
    Random(u32),
}

/// --report output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}

/// Arrival process for --rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arrival {
    /// Evenly spaced starts.
    #[default]
    Uniform,
    /// Exponentially distributed gaps (a Poisson process).
    Poisson,
}

/// SASL mechanism for --auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMech {
    Plain,
    Login,
}

impl AuthMech {
    pub fn name(self) -> &'static str {
        match self {
            AuthMech::Plain => "PLAIN",
            AuthMech::Login => "LOGIN",
        }
    }
}

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
    /// --metrics-listen, --metrics-linger, --metrics-push.
    pub metrics: Option<crate::metrics::MetricsPlan>,
    /// --threshold, in the order given.
    pub thresholds: Vec<crate::threshold::Threshold>,
    /// --stages (this shard's part of each rate).
    pub stages: Option<Vec<(Duration, f64)>>,
    /// --find-capacity.
    pub capacity: Option<crate::capacity::CapacityPlan>,
    /// --arrival (for --stages and --find-capacity too).
    pub arrival: Arrival,
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

impl Security {
    /// Whether a step after the greeting (STARTTLS, XCLIENT, AUTH) may
    /// have to quote the greeting's reply ("... not offered").
    pub fn after_greeting(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| !t.wrapper)
            || self.xclient.is_some()
            || self.auth.is_some()
    }
}

/// --auth: the mechanism and the users, taken in turn per connection.
#[derive(Debug, Clone)]
pub struct AuthPlan {
    pub mech: AuthMech,
    pub users: Vec<Credential>,
    /// --auth-plaintext: AUTH may go over a connection without TLS.
    pub plaintext_ok: bool,
}

/// One run over many processes: this process's part of it, when it
/// starts, where its connections come from (all neutral for an old
/// command line: shard 1 of 1 is the whole run).
#[derive(Debug, Clone, Default)]
pub struct Scale {
    /// --shard as given (None: no --shard, reported as null).
    pub shard: Option<Shard>,
    /// The whole run's message budget (-m, or `UNLIMITED`).
    pub total: u64,
    /// Messages of the shards before this one: numbering starts after
    /// them.
    pub first: u64,
    /// Messages of the shards after this one: the Message-Id counter
    /// counts down over this shard's part of the whole run's range.
    pub later: u64,
    /// --start-at.
    pub start_at: Option<std::time::SystemTime>,
    /// --bind: source addresses (port 0), one per connection in turn.
    pub bind: Vec<SockAddr>,
    pub dry_run: bool,
}

/// What the environment gives the plan. Its Debug form hides the
/// password (as `identity::Credential`'s does).
#[derive(Clone, Copy, Default)]
pub struct Env<'a> {
    /// SMTP_SOURCE_TIMEOUT.
    pub timeout: Option<&'a [u8]>,
    /// SMTP_SOURCE_PASSWORD (--auth-user's password).
    pub password: Option<&'a [u8]>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let timeout = self.timeout.map(String::from_utf8_lossy);
        f.debug_struct("Env")
            .field("timeout", &timeout)
            .field("password", &self.password.map(|_| "<hidden>"))
            .finish()
    }
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
    /// The ESMTP parameters (None unless the greeting's capabilities
    /// are read: an old command line never computes any).
    pub esmtp: Option<EsmtpPlan>,
    pub security: Security,
    pub scale: Scale,
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
    let bodies = match args.long.dry_run {
        true => workload::Bodies::CheckOnly,
        false => workload::Bodies::Build,
    };
    let content = workload::build(args, bodies)?;
    let (addr, keepalive) = resolve(args)?;
    let security = security(args, env.password)?;
    let bind = bind(args, &addr)?;
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
    let esmtp = extended(&args.long)
        .then(|| esmtp_plan(args, &content, &sender, &recipient));
    load_conflicts(args)?;
    let timed = args.long.duration.is_some()
        || args.long.stages.is_some()
        || args.long.find_capacity;
    let total = match (timed, args.messages_given) {
        (true, false) => UNLIMITED,
        _ => u64::from(args.messages),
    };
    let shard = args.long.shard.unwrap_or(Shard::WHOLE);
    let (first, messages) = shard.share(total);
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
        // Shards of one run draw different streams (the shard index is
        // mixed into the seed; a whole run is shard 1 of 1).
        seed: crate::draw::shard_seed(
            crate::draw::run_seed(args.long.seed),
            shard,
        ),
        ext: Extensions {
            metrics: crate::metrics::plan(
                args.long.metrics_listen,
                args.long.metrics_linger,
                args.long.metrics_push.as_deref(),
                &args.endpoint,
                args.long.shard,
            )?,
            ..extensions(args, shard)
        },
        esmtp,
        security,
        scale: Scale {
            shard: args.long.shard,
            total,
            first,
            later: total - first - messages,
            start_at: args.long.start_at,
            bind,
            dry_run: args.long.dry_run,
        },
        reuse: args.reuse,
        allow_reject: args.allow_reject,
        count: args.count,
        verbose: args.verbose,
        delay: args.delay,
        sessions: args.sessions,
        messages,
        myhostname,
    })
}

/// The ESMTP parameters' settings, and what they need to know of the
/// content, found once.
#[derive(Debug, Clone)]
pub struct EsmtpPlan {
    pub args: EsmtpArgs,
    /// Per body (as `Content::bodies`): it has an 8-bit byte; its own
    /// headers (-F, --message-dir) are not ASCII.
    pub bodies: Vec<(bool, bool)>,
    /// The generated headers (-f, -t, -S) are not ASCII.
    pub headers_utf8: bool,
    /// A --rcpt-file entry is not ASCII.
    pub rcpts_utf8: bool,
}

fn esmtp_plan(
    args: &Args,
    content: &Content,
    sender: &[u8],
    recipient: &[u8],
) -> EsmtpPlan {
    let own_headers = args.file.is_some() || args.long.message_dir.is_some();
    let generated = !own_headers
        && (esmtp::is_utf8(sender)
            || esmtp::is_utf8(recipient)
            || args.subject.as_deref().is_some_and(esmtp::headers_utf8));
    EsmtpPlan {
        args: args.long.esmtp.clone(),
        bodies: content
            .bodies
            .iter()
            .map(|b| {
                let data = b.data.as_ref();
                (!data.is_ascii(), own_headers && esmtp::headers_utf8(data))
            })
            .collect(),
        headers_utf8: generated,
        rcpts_utf8: content.rcpts.iter().flatten().any(|a| esmtp::is_utf8(a)),
    }
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
        || l.esmtp.any()
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

/// --stages and --find-capacity set the run's length themselves, and a
/// search needs an SLO to search for.
fn load_conflicts(args: &Args) -> Result<(), Error> {
    let l = &args.long;
    let capacity = l.find_capacity;
    let pairs = [
        (
            l.stages.is_some() && l.duration.is_some(),
            "--stages",
            "--duration",
        ),
        (
            capacity && l.stages.is_some(),
            "--find-capacity",
            "--stages",
        ),
        (
            capacity && l.duration.is_some(),
            "--find-capacity",
            "--duration",
        ),
    ];
    if let Some((_, a, b)) = pairs.iter().find(|p| p.0) {
        return Err(Config::Conflict(Conflict::Options(a, b)).into());
    }
    let needs = [
        (
            capacity && l.thresholds.is_empty(),
            "--find-capacity",
            "--threshold",
        ),
        (!capacity && l.step.is_some(), "--step", "--find-capacity"),
        (
            !capacity && l.precision.is_some(),
            "--precision",
            "--find-capacity",
        ),
    ];
    if let Some((_, a, b)) = needs.iter().find(|p| p.0) {
        return Err(Config::Conflict(Conflict::Requires(a, b)).into());
    }
    Ok(())
}

/// How long a --stages or --find-capacity run may last.
fn run_length(l: &longopts::LongArgs) -> Option<Duration> {
    if let Some(stages) = &l.stages {
        return Some(stages.iter().map(|(d, _)| *d).sum());
    }
    if let Some(c) = capacity(l, Shard::WHOLE) {
        return Some(c.longest() + Duration::from_secs(1));
    }
    l.duration
}

fn capacity(
    l: &longopts::LongArgs,
    shard: Shard,
) -> Option<crate::capacity::CapacityPlan> {
    l.find_capacity.then(|| crate::capacity::CapacityPlan {
        first: l.rate.unwrap_or(crate::capacity::FIRST_RATE)
            / f64::from(shard.count),
        step: l.step.unwrap_or(Duration::from_secs(10)),
        precision: l.precision.unwrap_or(0.05),
    })
}

/// A --rate is the whole run's: each shard keeps its part of it.
fn extensions(args: &Args, shard: Shard) -> Extensions {
    let l = &args.long;
    let part = f64::from(shard.count);
    Extensions {
        thresholds: l.thresholds.clone(),
        stages: l
            .stages
            .as_ref()
            .map(|s| s.iter().map(|&(d, r)| (d, r / part)).collect()),
        capacity: capacity(l, shard),
        arrival: l.arrival,
        capabilities: extended(l),
        pipelining: l.pipelining,
        chunking: l.chunking,
        measure: l.report.is_some()
            || l.report_file.is_some()
            || l.hlog.is_some()
            || l.rate.is_some()
            || l.duration.is_some()
            || l.progress
            || l.metrics_listen.is_some()
            || l.metrics_push.is_some()
            || !l.thresholds.is_empty()
            || l.stages.is_some()
            || l.find_capacity,
        report: l.report,
        report_file: l.report_file.clone(),
        hlog: l.hlog.clone(),
        rate: l.rate.map(|r| (r / f64::from(shard.count), l.arrival)),
        duration: run_length(l),
        progress: l.progress,
        metrics: None,
    }
}

/// --bind: each address must be of the server address's family and
/// local (bound once here, on port 0, so that a typo fails before any
/// connect).
fn bind(args: &Args, server: &SockAddr) -> Result<Vec<SockAddr>, Config> {
    let Some(server) = server.as_socket() else {
        return match args.long.bind.is_empty() {
            true => Ok(Vec::new()),
            false => Err(Config::Needs {
                what: "--bind",
                needs: "an inet endpoint, not unix:",
            }),
        };
    };
    let mut out = Vec::with_capacity(args.long.bind.len());
    for &ip in &args.long.bind {
        if ip.is_ipv4() != server.is_ipv4() {
            let server = server.ip();
            return Err(Config::BindFamily { ip, server });
        }
        let local = SockAddr::from(std::net::SocketAddr::new(ip, 0));
        crate::net::try_bind(&local)
            .map_err(|error| Config::Bind { ip, error })?;
        out.push(local);
    }
    Ok(out)
}

/// TLS, AUTH, XCLIENT and PROXY from the long options. Options that
/// would be silently ignored are errors.
fn security(args: &Args, password: Option<&[u8]>) -> Result<Security, Config> {
    let l = &args.long;
    let starttls = l.tls.level.is_some() && !l.tls.wrapper;
    let esmtp = l.esmtp.any();
    if args.old_mode
        && (starttls || l.auth.is_some() || l.xclient.is_some() || esmtp)
    {
        return Err(Config::Conflict(Conflict::OldModeAndEhloExtensions));
    }
    let tls = tls::build(&l.tls, peer(args))?;
    if l.esmtp.requiretls && tls.is_none() {
        let (what, needs) = ("--requiretls", "--tls or --tls-wrapper");
        return Err(Config::Needs { what, needs });
    }
    let auth = auth(l, password, tls.as_ref())?;
    let proxy = match (l.proxy, l.proxy_source) {
        (Some(v), source) => Some((v, source)),
        (None, Some(_)) => {
            let (what, needs) = ("--proxy-source", "--proxy");
            return Err(Config::Needs { what, needs });
        }
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

/// --auth and its users; `tls` is the plan's TLS, which AUTH needs unless
/// --auth-plaintext allows it without.
fn auth(
    l: &longopts::LongArgs,
    password: Option<&[u8]>,
    tls: Option<&TlsPlan>,
) -> Result<Option<AuthPlan>, Config> {
    let Some(mech) = l.auth else {
        let stray = [
            (l.auth_user.is_some(), "--auth-user"),
            (l.auth_file.is_some(), "--auth-file"),
            (l.auth_plaintext, "--auth-plaintext"),
        ];
        return match stray.iter().find(|(on, _)| *on) {
            Some(&(_, what)) => Err(Config::Needs {
                what,
                needs: "--auth",
            }),
            None => Ok(None),
        };
    };
    if tls.is_none() && !l.auth_plaintext {
        return Err(Config::PlaintextAuth);
    }
    let users = match (&l.auth_user, &l.auth_file) {
        (Some(user), None) => {
            let Some(pw) = password else {
                return Err(Config::Needs {
                    what: "--auth-user",
                    needs: "the password in SMTP_SOURCE_PASSWORD",
                });
            };
            vec![Credential::new(user.clone(), pw.to_vec())]
        }
        (None, Some(path)) => auth_file(path)?,
        (Some(_), Some(_)) => {
            return Err(Config::Conflict(Conflict::AuthUserAndFile))
        }
        (None, None) => {
            return Err(Config::Needs {
                what: "--auth",
                needs: "--auth-user or --auth-file",
            })
        }
    };
    Ok(Some(AuthPlan {
        mech,
        users,
        plaintext_ok: l.auth_plaintext,
    }))
}

/// The users of an --auth-file.
fn auth_file(path: &[u8]) -> Result<Vec<Credential>, Config> {
    let option = "--auth-file";
    let text = read_file(path).map_err(|e| {
        // Quoted as text (a -F or --rcpt-file path is quoted as bytes).
        let text = String::from_utf8_lossy(&e.text()).into_owned();
        let inner = Box::new(Config::Refused(text));
        Config::Option { option, inner }
    })?;
    identity::parse_auth_file(&text).map_err(|why| Config::Input {
        option,
        path: path.to_vec(),
        problem: Problem::Invalid(why),
    })
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
    let spec = endpoint::parse(&args.endpoint).map_err(Config::Endpoint)?;
    let shown = endpoint::after_inet(&args.endpoint);
    let addr = endpoint::resolve(&spec, shown, args.family)
        .map_err(Config::Endpoint)?;
    let keepalive = matches!(spec, Spec::Inet { .. }) && addr.is_ipv4();
    Ok((addr, keepalive))
}

/// -M as given (already checked), or the machine's name, checked here.
fn myhostname(args: &Args) -> Result<Vec<u8>, Error> {
    if let Some(name) = &args.myhostname {
        return Ok(name.clone());
    }
    let name = sys::gethostname().map_err(Config::Gethostname)?;
    hostname::check_own_hostname(&name)
        .map_err(|warning| Config::OwnHostname { warning })?;
    Ok(name)
}

/// --dry-run: the plan as stable `name: value` lines (stdout, exit 0).
/// Nothing is connected; everything a connect would need has been
/// checked (the endpoint resolved, files read, --bind addresses bound).
pub fn describe(plan: &Plan) -> String {
    use std::fmt::Write as _;
    let mut o = String::from("smtp-source plan\n");
    let mut line = |name: &str, value: String| {
        let _ = writeln!(o, "{:<14}{value}", format!("{name}:"));
    };
    line("server", server_text(&plan.addr));
    line("protocol", protocol_text(plan));
    line("sessions", plan.sessions.to_string());
    line("messages", messages_text(plan));
    line("shard", shard_text(plan));
    line("recipients", recipients_text(plan));
    let at = plan.scale.start_at.map(crate::report::iso8601);
    line("start", at.unwrap_or_else(|| "at once".into()));
    line("rate", rate_text(plan));
    let duration = plan.ext.duration.map(|d| format!("{} s", d.as_secs_f64()));
    line("duration", duration.unwrap_or_else(|| "none".into()));
    line("bind", bind_text(plan));
    line("reuse", yes(plan.reuse).into());
    line("pipelining", yes(plan.ext.pipelining).into());
    line("chunking", yes(plan.ext.chunking).into());
    line("tls", tls_text(plan));
    line("report", report_text(plan));
    // Only when given: the plan of an older command line stays as it was.
    let ext = &plan.ext;
    if let Some(stages) = &ext.stages {
        let items: Vec<String> = stages
            .iter()
            .map(|(d, r)| format!("{} s to {r}/s", d.as_secs_f64()))
            .collect();
        line("stages", items.join(", "));
    }
    if !ext.thresholds.is_empty() {
        let exprs: Vec<&str> =
            ext.thresholds.iter().map(|t| t.expr.as_str()).collect();
        line("thresholds", crate::diag::censored(&exprs.join(" ")));
    }
    if let Some(c) = &ext.capacity {
        line(
            "capacity",
            format!(
                "search from {}/s, steps of {} s, precision {}%",
                c.first,
                c.step.as_secs_f64(),
                c.precision * 100.0
            ),
        );
    }
    o
}

fn yes(on: bool) -> &'static str {
    if on {
        "yes"
    } else {
        "no"
    }
}

fn server_text(addr: &SockAddr) -> String {
    match (addr.as_socket(), addr.as_pathname()) {
        (Some(inet), _) => inet.to_string(),
        (None, Some(path)) => format!("unix:{}", path.display()),
        (None, None) => "unix".into(),
    }
}

fn protocol_text(plan: &Plan) -> String {
    let name = String::from_utf8_lossy(&plan.myhostname);
    let proto = if plan.lmtp { "LMTP" } else { "SMTP" };
    match plan.greeting {
        Greeting::None => format!("{proto}, no greeting (-o)"),
        Greeting::Helo => format!("{proto}, HELO {name}"),
        Greeting::Ehlo => format!("{proto}, EHLO {name}"),
        Greeting::Lhlo => format!("{proto}, LHLO {name}"),
    }
}

fn count_text(n: u64) -> String {
    if n >= UNLIMITED / 2 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn messages_text(plan: &Plan) -> String {
    let s = &plan.scale;
    if s.shard.is_none() {
        return count_text(plan.messages);
    }
    format!(
        "{} of {} in the whole run",
        count_text(plan.messages),
        count_text(s.total)
    )
}

fn shard_text(plan: &Plan) -> String {
    let s = &plan.scale;
    match s.shard {
        None => "none".into(),
        Some(sh) if plan.messages == 0 => {
            format!("{} of {} (no messages)", sh.index, sh.count)
        }
        Some(sh) if s.total >= UNLIMITED => format!(
            "{} of {} (messages from {})",
            sh.index,
            sh.count,
            s.first + 1
        ),
        Some(sh) => format!(
            "{} of {} (messages {} to {})",
            sh.index,
            sh.count,
            s.first + 1,
            s.first + plan.messages
        ),
    }
}

fn recipients_text(plan: &Plan) -> String {
    let n = plan.recipients;
    let first = plan.scale.first * u64::from(n);
    match plan.numbering {
        Numbering::CountDown if n > 1 => {
            format!("{n} per message, counted down")
        }
        Numbering::Sequence => {
            format!("{n} per message, numbered from {}", first + 1)
        }
        Numbering::Appended => {
            format!("{n} per message, numbered from {first} (3.9)")
        }
        _ => format!("{n} per message"),
    }
}

fn rate_text(plan: &Plan) -> String {
    match plan.ext.rate {
        None => "as fast as possible".into(),
        Some((rate, arrival)) => {
            let how = match arrival {
                Arrival::Uniform => "uniform",
                Arrival::Poisson => "poisson",
            };
            format!("{rate} messages/s ({how})")
        }
    }
}

fn bind_text(plan: &Plan) -> String {
    let all: Vec<String> = plan
        .scale
        .bind
        .iter()
        .filter_map(|a| a.as_socket().map(|s| s.ip().to_string()))
        .collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

fn tls_text(plan: &Plan) -> String {
    let Some(tls) = &plan.security.tls else {
        return "none".into();
    };
    let level = match tls.level {
        tls::Level::May => "may",
        tls::Level::Encrypt => "encrypt",
        tls::Level::Verify => "verify",
    };
    let how = if tls.wrapper { "wrapper" } else { "STARTTLS" };
    format!("{level} ({how})")
}

fn report_text(plan: &Plan) -> String {
    let mut parts = Vec::new();
    match plan.ext.report {
        Some(ReportFormat::Text) => parts.push("text".to_string()),
        Some(ReportFormat::Json) => parts.push("json".to_string()),
        None => {}
    }
    if let Some(path) = &plan.ext.report_file {
        parts.push(format!("file {}", String::from_utf8_lossy(path)));
    }
    if let Some(path) = &plan.ext.hlog {
        parts.push(format!("hlog {}", String::from_utf8_lossy(path)));
    }
    if let Some(m) = &plan.ext.metrics {
        parts.extend(m.listen.map(|a| format!("metrics at {a}")));
        parts.extend(m.linger.map(|d| format!("linger {:?}", d)));
        parts.extend(m.push.as_ref().map(|(p, _)| format!("push {}", p.url)));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::path::Path;

    /// The modules that read the command line: the parser itself and the
    /// planning that turns its `Args` into a `Plan` (workload builds the
    /// plan's bodies and lists).
    const PARSE_AND_PLAN: &[&str] =
        &["cli.rs", "longopts.rs", "plan.rs", "workload.rs", "main.rs"];

    // Parse, then plan, then run: the run reads the plan, never the
    // parser's types (a session that imports `cli` depends on argv).
    #[test]
    fn the_runtime_never_imports_the_parsing_layer() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let (mut files, mut dirs) = (Vec::new(), vec![src.clone()]);
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 20, "{files:?}");
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy();
            if path.parent() == Some(&src) && PARSE_AND_PLAN.contains(&&*name)
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may build a plan from a command line.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for layer in ["cli", "longopts"] {
                for form in [
                    format!("crate::{layer}"),
                    format!("smtp_source::{layer}"),
                ] {
                    assert!(
                        !code.contains(&form),
                        "{} uses {form}: take it from the plan",
                        path.display()
                    );
                }
            }
        }
    }

    /// No Debug form on the way from the environment to the sessions
    /// shows the password.
    #[test]
    fn debug_never_shows_the_password() {
        let secret = b"hunter2-s3cret";
        let env = Env {
            timeout: Some(b"7"),
            password: Some(secret),
        };
        let shown = format!("{env:?}");
        let as_bytes = format!("{:?}", &secret[..4]).replace(']', "");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains(&as_bytes), "{shown}");
        assert!(shown.contains("<hidden>") && shown.contains("\"7\""));
        let argv: Vec<OsString> = [
            "smtp-source",
            "-M",
            "h.example",
            "--auth=PLAIN",
            "--auth-plaintext",
            "--auth-user=alice",
            "127.0.0.1:25",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let crate::cli::Parsed::Run(args) = crate::cli::parse(argv).unwrap()
        else {
            panic!("not a run")
        };
        let plan = build(&args, env).unwrap();
        let shown = format!("{plan:?} {:?}", plan.security);
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains(&as_bytes), "{shown}");
        // Nor in base64, as AUTH PLAIN sends it.
        let users = &plan.security.auth.as_ref().unwrap().users;
        let b64 = String::from_utf8(users[0].plain()).unwrap();
        assert!(!shown.contains(&b64[4..]), "{shown}");
    }
}
