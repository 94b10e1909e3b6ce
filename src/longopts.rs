//! longopts: the long options, our extensions. Postfix's
//! smtp-source has none, so none of these can change what an old command
//! line does; an unknown `--name` is named (`unknown option --name`,
//! then the usage line, exit status as for any usage error).
//!
//! Forms: `--name`, `--name=value`, and `--name value` for options that
//! require a value. `--report` takes its optional format only as
//! `--report=json`.
//!
//! Every option is one entry of `LONG_OPTIONS` (its name, how it takes a
//! value, its --help entry, what it sets): the parser, `--help` and the
//! manual page check read that table, so they cannot disagree.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::error::{Config, Error, Usage};
use crate::esmtp::{self, EsmtpArgs};
use crate::identity::{Cidr, ProxyVersion, Xclient};
use crate::plan::{Arrival, AuthMech, ReportFormat};
use crate::scale::{self, Shard};
use crate::threshold::{self, Threshold};
use crate::tls::{Level, TlsArgs};

/// Recipient numbering scheme (the man page's EXTENSIONS, --numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// Postfix 3.7 (the default): numbers in front, `-r` counts down.
    Postfix37,
    /// Postfix 3.9: with -N or -r, a global count from 0 appended to
    /// the local part; To: names the last recipient sent.
    Postfix39,
}

/// Settings made by long options.
#[derive(Debug, Clone)]
pub struct LongArgs {
    /// --timeout, else SMTP_SOURCE_TIMEOUT, else 300 s.
    pub timeout: Option<Duration>,
    /// --max-connecting: connects in flight at once.
    pub max_connecting: u32,
    pub ehlo: bool,
    pub pipelining: bool,
    pub chunking: bool,
    pub report: Option<ReportFormat>,
    pub report_file: Option<Vec<u8>>,
    pub hlog: Option<Vec<u8>>,
    /// --rate, messages per second across all sessions.
    pub rate: Option<f64>,
    pub arrival: Arrival,
    pub duration: Option<Duration>,
    pub numbering: Numbering,
    pub tls: TlsArgs,
    pub auth: Option<AuthMech>,
    pub auth_user: Option<Vec<u8>>,
    pub auth_file: Option<Vec<u8>>,
    pub auth_plaintext: bool,
    pub xclient: Option<Xclient>,
    pub proxy: Option<ProxyVersion>,
    pub proxy_source: Option<Cidr>,
    /// --size-mix: (payload size, weight), sizes distinct, in the order
    /// given.
    pub size_mix: Option<Vec<(u32, u64)>>,
    pub message_dir: Option<Vec<u8>>,
    pub rcpt_file: Option<Vec<u8>>,
    pub sender_file: Option<Vec<u8>>,
    pub progress: bool,
    /// --seed: the random draws (size mix, -R, Poisson arrivals) repeat.
    pub seed: Option<u64>,
    /// --shard=K/N: this process is part K of N of one run.
    pub shard: Option<Shard>,
    /// --start-at: when the first connect may happen.
    pub start_at: Option<SystemTime>,
    /// --bind: local source addresses, one per connection in turn.
    pub bind: Vec<IpAddr>,
    /// --dry-run: print the plan, connect nowhere.
    pub dry_run: bool,
    /// --metrics-listen: where /metrics is served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// --metrics-linger: how long /metrics outlives the run.
    pub metrics_linger: Option<Duration>,
    /// --metrics-push: the Pushgateway URL, as given.
    pub metrics_push: Option<Vec<u8>>,
    /// --dsn-*, --requiretls, --mail-param, --rcpt-param.
    pub esmtp: EsmtpArgs,
    /// --threshold, in the order given.
    pub thresholds: Vec<Threshold>,
    /// --stages: (duration, rate reached at its end).
    pub stages: Option<Vec<(Duration, f64)>>,
    pub find_capacity: bool,
    /// --step: a capacity step's length.
    pub step: Option<Duration>,
    /// --precision, a fraction.
    pub precision: Option<f64>,
}

impl Default for LongArgs {
    fn default() -> Self {
        LongArgs {
            timeout: None,
            max_connecting: 16,
            ehlo: false,
            pipelining: false,
            chunking: false,
            report: None,
            report_file: None,
            hlog: None,
            rate: None,
            arrival: Arrival::Uniform,
            duration: None,
            numbering: Numbering::Postfix37,
            tls: TlsArgs::default(),
            auth: None,
            auth_user: None,
            auth_file: None,
            auth_plaintext: false,
            xclient: None,
            proxy: None,
            proxy_source: None,
            size_mix: None,
            message_dir: None,
            rcpt_file: None,
            sender_file: None,
            progress: false,
            seed: None,
            shard: None,
            start_at: None,
            bind: Vec::new(),
            dry_run: false,
            metrics_listen: None,
            metrics_linger: None,
            metrics_push: None,
            esmtp: EsmtpArgs::default(),
            thresholds: Vec::new(),
            stages: None,
            find_capacity: false,
            step: None,
            precision: None,
        }
    }
}

/// What a long option takes after its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// `--name` alone; `--name=x` is an unknown option.
    Nothing,
    /// `--name=value` or `--name value`.
    Value,
    /// `--name` or `--name=value`, never a separate word.
    Optional,
}

/// The --help heading a long option is listed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Extensions,
    Security,
    Scale,
}

impl Section {
    pub const ALL: [Section; 3] =
        [Section::Extensions, Section::Security, Section::Scale];

    pub fn title(self) -> &'static str {
        match self {
            Section::Extensions => "Extensions (long options):",
            Section::Security => "Secure transport and client identity:",
            Section::Scale => "One run over many hosts:",
        }
    }
}

/// What giving the option does.
#[derive(Clone, Copy)]
pub enum Action {
    /// Records the value (None: no value given) in the arguments.
    Set(fn(&mut LongArgs, Option<&[u8]>) -> Result<(), Error>),
    Help,
    Version,
}

/// One long option: how it is parsed, what it does, and its --help
/// entry. `LONG_OPTIONS` is the only list of them: the parser, --help
/// and the manual page check (tests/check-man.sh) all read it.
pub struct LongOpt {
    pub name: &'static str,
    pub takes: Takes,
    pub section: Section,
    /// The --help entry's left column; empty when the entry before names
    /// this option too (`--tls-cert=FILE, --tls-key=FILE`).
    pub usage: &'static str,
    /// The --help description, one line each.
    pub doc: &'static [&'static str],
    pub action: Action,
}

use Section::{Extensions as Ext, Scale, Security as Sec};
use Takes::{Nothing, Optional, Value};

/// Every long option, in --help order. Keep one `name: "..."` per line:
/// tests/check-man.sh reads the names from here.
#[rustfmt::skip]
pub const LONG_OPTIONS: &[LongOpt] = &[
    LongOpt {
        name: "timeout", takes: Value, section: Ext,
        usage: "--timeout=SECONDS",
        doc: &["deadline per stage (default 300; also",
               "SMTP_SOURCE_TIMEOUT in the environment)"],
        action: Action::Set(|a, v| {
            a.timeout = Some(seconds(val(v), "--timeout")?);
            Ok(())
        }),
    },
    LongOpt {
        name: "max-connecting", takes: Value, section: Ext,
        usage: "--max-connecting=N",
        doc: &["connects in flight at once (default 16)"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.max_connecting = match number(v) {
                Some(n) if (1.0..=1e6).contains(&n) && n.fract() == 0.0 => {
                    n as u32
                }
                _ => return Err(bad("--max-connecting", v)),
            };
            Ok(())
        }),
    },
    LongOpt {
        name: "ehlo", takes: Nothing, section: Ext,
        usage: "--ehlo",
        doc: &["greet with EHLO and read the capabilities"],
        action: Action::Set(|a, _| {
            a.ehlo = true;
            Ok(())
        }),
    },
    LongOpt {
        name: "pipelining", takes: Nothing, section: Ext,
        usage: "--pipelining",
        doc: &["send MAIL, RCPT and DATA as one group (RFC 2920)"],
        action: Action::Set(|a, _| {
            a.pipelining = true;
            Ok(())
        }),
    },
    LongOpt {
        name: "chunking", takes: Nothing, section: Ext,
        usage: "--chunking",
        doc: &["send the message with BDAT (RFC 3030)"],
        action: Action::Set(|a, _| {
            a.chunking = true;
            Ok(())
        }),
    },
    LongOpt {
        name: "report", takes: Optional, section: Ext,
        usage: "--report[=text|json]",
        doc: &["print a run report on stdout at the end"],
        action: Action::Set(|a, v| {
            a.report = Some(match v {
                None | Some(b"text") => ReportFormat::Text,
                Some(b"json") => ReportFormat::Json,
                Some(other) => return Err(bad("--report", other)),
            });
            Ok(())
        }),
    },
    LongOpt {
        name: "report-file", takes: Value, section: Ext,
        usage: "--report-file=PATH",
        doc: &["write the JSON report to PATH"],
        action: Action::Set(|a, v| {
            a.report_file = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "hlog", takes: Value, section: Ext,
        usage: "--hlog=PATH",
        doc: &["HdrHistogram interval log of transaction latency"],
        action: Action::Set(|a, v| {
            a.hlog = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "metrics-listen", takes: Value, section: Ext,
        usage: "--metrics-listen=[ADDR:]PORT",
        doc: &["serve live Prometheus metrics at /metrics"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.metrics_listen = Some(
                crate::metrics::parse_listen(v)
                    .ok_or_else(|| bad("--metrics-listen", v))?,
            );
            Ok(())
        }),
    },
    LongOpt {
        name: "metrics-linger", takes: Value, section: Ext,
        usage: "--metrics-linger=SECONDS",
        doc: &["keep serving /metrics that long after the run"],
        action: Action::Set(|a, v| {
            a.metrics_linger = Some(seconds(val(v), "--metrics-linger")?);
            Ok(())
        }),
    },
    LongOpt {
        name: "metrics-push", takes: Value, section: Ext,
        usage: "--metrics-push=URL",
        doc: &["push the final metrics to a Pushgateway"],
        action: Action::Set(|a, v| {
            a.metrics_push = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "rate", takes: Value, section: Ext,
        usage: "--rate=N",
        doc: &["open-loop arrivals: N messages per second"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.rate = match number(v) {
                Some(r) if r > 0.0 && r <= 1e7 => Some(r),
                _ => return Err(bad("--rate", v)),
            };
            Ok(())
        }),
    },
    LongOpt {
        name: "arrival", takes: Value, section: Ext,
        usage: "--arrival=uniform|poisson",
        doc: &["spacing of --rate arrivals (default uniform)"],
        action: Action::Set(|a, v| {
            a.arrival = match val(v) {
                b"uniform" => Arrival::Uniform,
                b"poisson" => Arrival::Poisson,
                other => return Err(bad("--arrival", other)),
            };
            Ok(())
        }),
    },
    LongOpt {
        name: "duration", takes: Value, section: Ext,
        usage: "--duration=SECONDS",
        doc: &["run for a time (-m, if given, is an upper bound)"],
        action: Action::Set(|a, v| {
            a.duration = Some(seconds(val(v), "--duration")?);
            Ok(())
        }),
    },
    LongOpt {
        name: "numbering", takes: Value, section: Ext,
        usage: "--numbering=3.7|3.9",
        doc: &["recipient numbering of Postfix 3.7 (default)",
               "or 3.9 (number appended to the local part)"],
        action: Action::Set(|a, v| {
            a.numbering = match val(v) {
                b"3.7" => Numbering::Postfix37,
                b"3.9" => Numbering::Postfix39,
                other => return Err(bad("--numbering", other)),
            };
            Ok(())
        }),
    },
    LongOpt {
        name: "size-mix", takes: Value, section: Ext,
        usage: "--size-mix=SIZE:WEIGHT[,SIZE:WEIGHT...]",
        doc: &["-l bodies of sizes drawn with these weights",
               "(k and m suffixes: 2k:60,20k:30,200k:9,2m:1)"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.size_mix = Some(size_mix(v).ok_or_else(|| bad("--size-mix", v))?);
            Ok(())
        }),
    },
    LongOpt {
        name: "message-dir", takes: Value, section: Ext,
        usage: "--message-dir=DIR",
        doc: &["each message the next file of DIR, as -F",
               "sends it (name order, wrapping)"],
        action: Action::Set(|a, v| {
            a.message_dir = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "rcpt-file", takes: Value, section: Ext,
        usage: "--rcpt-file=FILE",
        doc: &["recipients, one a line, taken in turn"],
        action: Action::Set(|a, v| {
            a.rcpt_file = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "dsn-notify", takes: Value, section: Ext,
        usage: "--dsn-notify=WHEN",
        doc: &["NOTIFY= on each RCPT when DSN is offered:",
               "NEVER, or SUCCESS,FAILURE,DELAY (RFC 3461)"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.esmtp.notify =
                Some(esmtp::notify(v).ok_or_else(|| bad("--dsn-notify", v))?);
            Ok(())
        }),
    },
    LongOpt {
        name: "dsn-ret", takes: Value, section: Ext,
        usage: "--dsn-ret=FULL|HDRS",
        doc: &["RET= on each MAIL when DSN is offered"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.esmtp.ret =
                Some(esmtp::ret(v).ok_or_else(|| bad("--dsn-ret", v))?);
            Ok(())
        }),
    },
    LongOpt {
        name: "dsn-envid", takes: Value, section: Ext,
        usage: "--dsn-envid=TEMPLATE",
        doc: &["ENVID= on each MAIL when DSN is offered;",
               "%n is the message number"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.esmtp.envid =
                Some(esmtp::envid(v).ok_or_else(|| bad("--dsn-envid", v))?);
            Ok(())
        }),
    },
    LongOpt {
        name: "dsn-orcpt", takes: Nothing, section: Ext,
        usage: "--dsn-orcpt",
        doc: &["ORCPT=rfc822;ADDRESS on each RCPT when DSN",
               "is offered"],
        action: Action::Set(|a, _| {
            a.esmtp.orcpt = true;
            Ok(())
        }),
    },
    LongOpt {
        name: "requiretls", takes: Nothing, section: Sec,
        usage: "--requiretls",
        doc: &["REQUIRETLS on each MAIL (RFC 8689); needs",
               "--tls, and a server that offers it"],
        action: Action::Set(|a, _| {
            a.esmtp.requiretls = true;
            Ok(())
        }),
    },
    LongOpt {
        name: "mail-param", takes: Value, section: Ext,
        usage: "--mail-param=KEYWORD[=VALUE]",
        doc: &["one more MAIL parameter, sent as given",
               "(repeatable; the value is xtext)"],
        action: Action::Set(|a, v| {
            a.esmtp.mail.push(esmtp::param("--mail-param", val(v))?);
            Ok(())
        }),
    },
    LongOpt {
        name: "rcpt-param", takes: Value, section: Ext,
        usage: "--rcpt-param=KEYWORD[=VALUE]",
        doc: &["one more RCPT parameter, sent as given",
               "(repeatable; the value is xtext)"],
        action: Action::Set(|a, v| {
            a.esmtp.rcpt.push(esmtp::param("--rcpt-param", val(v))?);
            Ok(())
        }),
    },
    LongOpt {
        name: "sender-file", takes: Value, section: Ext,
        usage: "--sender-file=FILE",
        doc: &["senders, one a line, taken in turn"],
        action: Action::Set(|a, v| {
            a.sender_file = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "seed", takes: Value, section: Ext,
        usage: "--seed=N",
        doc: &["repeat the random draws (--size-mix, -R,",
               "--arrival=poisson)"],
        action: Action::Set(|a, v| {
            let v = val(v);
            let text = std::str::from_utf8(v).unwrap_or("");
            a.seed = Some(text.parse().map_err(|_| bad("--seed", v))?);
            Ok(())
        }),
    },
    LongOpt {
        name: "progress", takes: Nothing, section: Ext,
        usage: "--progress",
        doc: &["a status line on stderr every second"],
        action: Action::Set(|a, _| {
            a.progress = true;
            Ok(())
        }),
    },
    LongOpt {
        name: "threshold", takes: Value, section: Ext,
        usage: "--threshold=EXPR",
        doc: &["an SLO such as transaction.p99<250ms (repeatable);",
               "one that fails makes the exit status 99"],
        action: Action::Set(|a, v| {
            let v = val(v);
            let t = threshold::parse(v).map_err(|why| {
                Error::Config(Config::BadValue {
                    option: "--threshold",
                    value: v.to_vec(),
                    why: Some(why),
                })
            })?;
            if a.thresholds.len() >= MAX_THRESHOLDS {
                return Err(bad("--threshold", v));
            }
            a.thresholds.push(t);
            Ok(())
        }),
    },
    LongOpt {
        name: "stages", takes: Value, section: Ext,
        usage: "--stages=DUR:RATE[,...]",
        doc: &["ramp the --rate linearly to each RATE over DUR"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.stages = Some(stages(v).ok_or_else(|| bad("--stages", v))?);
            Ok(())
        }),
    },
    LongOpt {
        name: "find-capacity", takes: Nothing, section: Ext,
        usage: "--find-capacity",
        doc: &["search the highest rate at which every",
               "--threshold holds"],
        action: Action::Set(|a, _| {
            a.find_capacity = true;
            Ok(())
        }),
    },
    LongOpt {
        name: "step", takes: Value, section: Ext,
        usage: "--step=DURATION",
        doc: &["each capacity step's length (default 10s)"],
        action: Action::Set(|a, v| {
            let v = val(v);
            let secs = std::str::from_utf8(v)
                .ok()
                .and_then(threshold::duration_secs)
                .filter(|s| (1.0..=3600.0).contains(s));
            let secs = secs.ok_or_else(|| bad("--step", v))?;
            a.step = Some(Duration::from_secs_f64(secs));
            Ok(())
        }),
    },
    LongOpt {
        name: "precision", takes: Value, section: Ext,
        usage: "--precision=PERCENT",
        doc: &["capacity search precision (default 5%)"],
        action: Action::Set(|a, v| {
            let v = val(v);
            let text = v.strip_suffix(b"%").unwrap_or(v);
            let p = number(text).filter(|p| (0.1..=50.0).contains(p));
            a.precision = Some(p.ok_or_else(|| bad("--precision", v))? / 100.0);
            Ok(())
        }),
    },
    LongOpt {
        name: "tls", takes: Optional, section: Sec,
        usage: "--tls[=may|encrypt|verify]",
        doc: &["STARTTLS at Postfix's security level (bare",
               "--tls: encrypt); implies --ehlo"],
        action: Action::Set(|a, v| {
            a.tls.level = Some(match v {
                None | Some(b"encrypt") => Level::Encrypt,
                Some(b"may") => Level::May,
                Some(b"verify") => Level::Verify,
                Some(other) => return Err(bad("--tls", other)),
            });
            Ok(())
        }),
    },
    LongOpt {
        name: "tls-wrapper", takes: Nothing, section: Sec,
        usage: "--tls-wrapper",
        doc: &["TLS from the first byte (SMTPS, port 465)"],
        action: Action::Set(|a, _| {
            a.tls.wrapper = true;
            Ok(())
        }),
    },
    LongOpt {
        name: "tls-ca", takes: Value, section: Sec,
        usage: "--tls-ca=FILE",
        doc: &["trust anchors for verify (default: the system's)"],
        action: Action::Set(|a, v| {
            a.tls.ca = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "tls-servername", takes: Value, section: Sec,
        usage: "--tls-servername=NAME",
        doc: &["SNI and the name verified (default: the host)"],
        action: Action::Set(|a, v| {
            a.tls.servername = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "tls-cert", takes: Value, section: Sec,
        usage: "--tls-cert=FILE, --tls-key=FILE",
        doc: &["client certificate and key (PEM)"],
        action: Action::Set(|a, v| {
            a.tls.cert = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "tls-key", takes: Value, section: Sec,
        usage: "",
        doc: &[],
        action: Action::Set(|a, v| {
            a.tls.key = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "tls-resume", takes: Nothing, section: Sec,
        usage: "--tls-resume",
        doc: &["resume TLS sessions across a session's",
               "connections (default: a full handshake each)"],
        action: Action::Set(|a, _| {
            a.tls.resume = true;
            Ok(())
        }),
    },
    LongOpt {
        name: "auth", takes: Value, section: Sec,
        usage: "--auth=PLAIN|LOGIN",
        doc: &["authenticate; password in SMTP_SOURCE_PASSWORD"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.auth = Some(match &v.to_ascii_uppercase()[..] {
                b"PLAIN" => AuthMech::Plain,
                b"LOGIN" => AuthMech::Login,
                _ => return Err(bad("--auth", v)),
            });
            Ok(())
        }),
    },
    LongOpt {
        name: "auth-user", takes: Value, section: Sec,
        usage: "--auth-user=NAME",
        doc: &["the user to log in as"],
        action: Action::Set(|a, v| {
            a.auth_user = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "auth-file", takes: Value, section: Sec,
        usage: "--auth-file=FILE",
        doc: &["user:password lines, taken in turn per connection"],
        action: Action::Set(|a, v| {
            a.auth_file = Some(val(v).to_vec());
            Ok(())
        }),
    },
    LongOpt {
        name: "auth-plaintext", takes: Nothing, section: Sec,
        usage: "--auth-plaintext",
        doc: &["allow AUTH over a connection without TLS"],
        action: Action::Set(|a, _| {
            a.auth_plaintext = true;
            Ok(())
        }),
    },
    LongOpt {
        name: "xclient", takes: Value, section: Sec,
        usage: "--xclient=ATTR=VALUE[,ATTR=VALUE...]",
        doc: &["Postfix XCLIENT after EHLO; ADDR=CIDR steps",
               "through the range, one address per connection"],
        action: Action::Set(|a, v| {
            let v = val(v);
            let parsed = Xclient::parse(v).map_err(|why| {
                Error::Config(Config::BadValue {
                    option: "--xclient",
                    value: v.to_vec(),
                    why: Some(why),
                })
            })?;
            a.xclient = Some(parsed);
            Ok(())
        }),
    },
    LongOpt {
        name: "proxy", takes: Value, section: Sec,
        usage: "--proxy=v1|v2",
        doc: &["HAProxy PROXY header before any SMTP byte"],
        action: Action::Set(|a, v| {
            a.proxy = Some(match val(v) {
                b"v1" => ProxyVersion::V1,
                b"v2" => ProxyVersion::V2,
                other => return Err(bad("--proxy", other)),
            });
            Ok(())
        }),
    },
    LongOpt {
        name: "proxy-source", takes: Value, section: Sec,
        usage: "--proxy-source=CIDR",
        doc: &["PROXY source addresses, one per connection"],
        action: Action::Set(|a, v| {
            let v = val(v);
            let text = std::str::from_utf8(v).unwrap_or("");
            let range =
                Cidr::parse(text).ok_or_else(|| bad("--proxy-source", v))?;
            a.proxy_source = Some(range);
            Ok(())
        }),
    },
    LongOpt {
        name: "help", takes: Nothing, section: Sec,
        usage: "--help, --version",
        doc: &[],
        action: Action::Help,
    },
    LongOpt {
        name: "version", takes: Nothing, section: Sec,
        usage: "",
        doc: &[],
        action: Action::Version,
    },
    LongOpt {
        name: "shard", takes: Value, section: Scale,
        usage: "--shard=K/N",
        doc: &["part K of N of one run: -m and --rate are the",
               "whole run's; numbering continues across shards"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.shard = Some(Shard::parse(v).ok_or_else(|| bad("--shard", v))?);
            Ok(())
        }),
    },
    LongOpt {
        name: "start-at", takes: Value, section: Scale,
        usage: "--start-at=TIME",
        doc: &["wait until TIME (Unix seconds or RFC 3339)"],
        action: Action::Set(|a, v| {
            let v = val(v);
            let at = scale::parse_time(v);
            a.start_at = Some(at.ok_or_else(|| bad("--start-at", v))?);
            Ok(())
        }),
    },
    LongOpt {
        name: "bind", takes: Value, section: Scale,
        usage: "--bind=ADDR[,ADDR...]",
        doc: &["local source addresses, one per connection"],
        action: Action::Set(|a, v| {
            let v = val(v);
            a.bind = bind_list(v).ok_or_else(|| bad("--bind", v))?;
            Ok(())
        }),
    },
    LongOpt {
        name: "dry-run", takes: Nothing, section: Scale,
        usage: "--dry-run",
        doc: &["print the plan and exit without connecting"],
        action: Action::Set(|a, _| {
            a.dry_run = true;
            Ok(())
        }),
    },
];

/// A `Takes::Value` option's value (the parser always passes one).
fn val(v: Option<&[u8]>) -> &[u8] {
    v.unwrap_or_default()
}

/// The long options' part of --help, from `LONG_OPTIONS`: a heading per
/// section, then each option with its description from column 27 (on
/// the next line when the left column is too wide).
pub fn help_text() -> String {
    const INDENT: usize = 26;
    let mut out = String::new();
    for section in Section::ALL {
        out.push('\n');
        out.push_str(section.title());
        out.push('\n');
        for opt in LONG_OPTIONS.iter().filter(|o| o.section == section) {
            if opt.usage.is_empty() {
                continue;
            }
            let mut lines = opt.doc.iter();
            let head = format!("  {}", opt.usage);
            match lines.next() {
                Some(first) if head.len() < INDENT => {
                    out.push_str(&format!("{head:<INDENT$}{first}\n"))
                }
                Some(first) => {
                    out.push_str(&format!("{head}\n{:INDENT$}{first}\n", ""))
                }
                None => out.push_str(&format!("{head}\n")),
            }
            for line in lines {
                out.push_str(&format!("{:INDENT$}{line}\n", ""));
            }
        }
    }
    out
}

/// What a long option asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Help,
    Version,
}

/// The error for a `--name` we do not know, naming it (the usage line
/// follows, as after any getopt error).
pub fn unknown(name: &[u8]) -> Error {
    Error::Usage(Usage::UnknownLong(name.to_vec()))
}

/// Handles `--<long>` (without the dashes); `next` yields the following
/// argv words for options whose value is separate.
pub fn apply(
    args: &mut LongArgs,
    long: &[u8],
    next: &mut dyn FnMut() -> Option<Vec<u8>>,
) -> Result<Outcome, Error> {
    let (name, inline) = match long.iter().position(|&b| b == b'=') {
        Some(eq) => (&long[..eq], Some(long[eq + 1..].to_vec())),
        None => (long, None),
    };
    let opt = LONG_OPTIONS
        .iter()
        .find(|o| o.name.as_bytes() == name)
        .ok_or_else(|| unknown(name))?;
    let value = match (opt.takes, inline) {
        (Takes::Nothing, Some(_)) => {
            return Err(Error::Usage(Usage::NoValueAllowed(opt.name)))
        }
        (Takes::Value, None) => {
            let missing = Error::Usage(Usage::MissingValue(opt.name));
            Some(next().ok_or(missing)?)
        }
        (_, inline) => inline,
    };
    match opt.action {
        Action::Set(set) => set(args, value.as_deref())?,
        Action::Help => return Ok(Outcome::Help),
        Action::Version => return Ok(Outcome::Version),
    }
    Ok(Outcome::Continue)
}

/// --threshold options at most.
const MAX_THRESHOLDS: usize = 64;

/// --stages at most.
const MAX_STAGES: usize = 1000;

/// `DUR:RATE[,DUR:RATE...]`: durations as --step takes them (a bare
/// number is seconds), rates from 0 to --rate's largest.
fn stages(v: &[u8]) -> Option<Vec<(Duration, f64)>> {
    let text = std::str::from_utf8(v).ok()?;
    let mut out = Vec::new();
    for item in text.split(',') {
        let (d, r) = item.split_once(':')?;
        let secs = threshold::duration_secs(d).filter(|s| *s > 0.0)?;
        let rate = number(r.as_bytes()).filter(|r| (0.0..=1e7).contains(r))?;
        out.push((Duration::from_secs_f64(secs), rate));
    }
    let total: f64 = out.iter().map(|(d, _)| d.as_secs_f64()).sum();
    (out.len() <= MAX_STAGES && total < 1e9).then_some(out)
}

/// The largest payload of a size class: -l's (a C int).
const MAX_CLASS_SIZE: u64 = i32::MAX as u64;

/// `SIZE:WEIGHT[,SIZE:WEIGHT...]`, sizes in bytes with an optional `k`
/// (1024) or `m` (1048576) suffix, weights whole numbers > 0. A size
/// given twice is one class with the weights added (its body is built
/// once).
fn size_mix(v: &[u8]) -> Option<Vec<(u32, u64)>> {
    let text = std::str::from_utf8(v).ok()?;
    let mut classes: Vec<(u32, u64)> = Vec::new();
    let mut total: u64 = 0;
    for item in text.split(',') {
        let (size, weight) = item.split_once(':')?;
        let size = class_size(size)?;
        let weight: u64 = weight.parse().ok().filter(|w| *w > 0)?;
        total = total
            .checked_add(weight)
            .filter(|t| *t <= u32::MAX.into())?;
        match classes.iter_mut().find(|(s, _)| *s == size) {
            Some((_, w)) => *w += weight,
            None => classes.push((size, weight)),
        }
    }
    Some(classes)
}

fn class_size(text: &str) -> Option<u32> {
    let (digits, unit) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1024),
        b'm' | b'M' => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let size = n.checked_mul(unit)?;
    (1..=MAX_CLASS_SIZE).contains(&size).then_some(size as u32)
}

/// `ADDR[,ADDR...]`: IPv4 or IPv6 addresses (brackets allowed).
fn bind_list(v: &[u8]) -> Option<Vec<IpAddr>> {
    let text = std::str::from_utf8(v).ok()?;
    text.split(',')
        .map(|a| {
            let bare = a.strip_prefix('[').and_then(|b| b.strip_suffix(']'));
            bare.unwrap_or(a).parse().ok()
        })
        .collect()
}

fn number(value: &[u8]) -> Option<f64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite())
}

fn bad(option: &'static str, value: &[u8]) -> Error {
    Error::Config(Config::BadValue {
        option,
        value: value.to_vec(),
        why: None,
    })
}

/// Seconds as a decimal number (fractions allowed), > 0.
pub fn seconds(value: &[u8], what: &'static str) -> Result<Duration, Error> {
    match number(value).filter(|s| *s > 0.0 && *s < 1e9) {
        Some(secs) => Ok(Duration::from_secs_f64(secs)),
        None => Err(bad(what, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<LongArgs, Error> {
        let mut args = LongArgs::default();
        let mut rest: Vec<Vec<u8>> =
            words[1..].iter().map(|w| w.as_bytes().to_vec()).collect();
        rest.reverse();
        let mut next = || rest.pop();
        apply(&mut args, words[0].as_bytes(), &mut next)?;
        Ok(args)
    }

    fn fatal_text(words: &[&str]) -> String {
        match parse(words) {
            Err(e @ Error::Config(_)) => String::from_utf8(e.text()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_and_values() {
        assert!(parse(&["pipelining"]).unwrap().pipelining);
        assert_eq!(parse(&["rate=50.5"]).unwrap().rate, Some(50.5));
        assert_eq!(parse(&["rate", "7"]).unwrap().rate, Some(7.0));
        assert_eq!(
            parse(&["duration=1.5"]).unwrap().duration,
            Some(Duration::from_millis(1500))
        );
        let a = parse(&["arrival=poisson"]).unwrap();
        assert_eq!(a.arrival, Arrival::Poisson);
        assert_eq!(
            parse(&["report"]).unwrap().report,
            Some(ReportFormat::Text)
        );
        assert_eq!(
            parse(&["report=json"]).unwrap().report,
            Some(ReportFormat::Json)
        );
    }

    #[test]
    fn bad_values_are_fatal() {
        assert_eq!(fatal_text(&["rate=0"]), "bad --rate value: 0");
        assert_eq!(fatal_text(&["report=xml"]), "bad --report value: xml");
        assert_eq!(fatal_text(&["timeout=abc"]), "bad --timeout value: abc");
        assert_eq!(
            fatal_text(&["max-connecting=0"]),
            "bad --max-connecting value: 0"
        );
    }

    #[test]
    fn size_mix_values() {
        let mix = parse(&["size-mix=2k:60,20K:30,200k:9,2m:1"]).unwrap();
        assert_eq!(
            mix.size_mix.unwrap(),
            [(2048, 60), (20480, 30), (204_800, 9), (2 << 20, 1)]
        );
        let merged = parse(&["size-mix", "100:1,100:2,7:1"]).unwrap();
        assert_eq!(merged.size_mix.unwrap(), [(100, 3), (7, 1)]);
        for bad in [
            "",
            "2k",
            "2k:",
            ":5",
            "0:1",
            "2k:0",
            "2x:1",
            "k:1",
            "-1:1",
            "2k:1,",
            "2k:-1",
            "3000m:1",
            "1:4294967296",
        ] {
            assert_eq!(
                fatal_text(&[&format!("size-mix={bad}")]),
                format!("bad --size-mix value: {bad}")
            );
        }
    }

    #[test]
    fn seed_and_workload_files() {
        assert_eq!(parse(&["seed=42"]).unwrap().seed, Some(42));
        assert_eq!(fatal_text(&["seed=x"]), "bad --seed value: x");
        assert_eq!(fatal_text(&["seed=-1"]), "bad --seed value: -1");
        let a = parse(&["rcpt-file", "r.txt"]).unwrap();
        assert_eq!(a.rcpt_file.as_deref(), Some(&b"r.txt"[..]));
        assert!(parse(&["progress"]).unwrap().progress);
    }

    #[test]
    fn unknown_and_misused_options_are_named() {
        for (words, want) in [
            (&["reprot"][..], "unknown option --reprot"),
            (&["reprot=json"], "unknown option --reprot"),
            (&["r\x1bx"], "unknown option --r?x"),
            (&["ehlo=yes"], "option '--ehlo' doesn't allow an argument"),
            (
                &["progress=1"],
                "option '--progress' doesn't allow an argument",
            ),
        ] {
            match parse(words) {
                Err(Error::Usage(usage)) => {
                    let line = usage.getopt_line().unwrap();
                    assert_eq!(String::from_utf8(line).unwrap(), want)
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn scale_out_options() {
        let a = parse(&["shard=2/4"]).unwrap();
        assert_eq!(a.shard, Some(Shard { index: 2, count: 4 }));
        let a = parse(&["bind", "127.0.0.2,[::1],127.0.0.3"]).unwrap();
        let want: Vec<IpAddr> = ["127.0.0.2", "::1", "127.0.0.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(a.bind, want);
        let a = parse(&["start-at=1796464800.5"]).unwrap();
        let at = a.start_at.unwrap().duration_since(SystemTime::UNIX_EPOCH);
        assert_eq!(at.unwrap(), Duration::from_millis(1_796_464_800_500));
        assert!(parse(&["dry-run"]).unwrap().dry_run);
        assert_eq!(fatal_text(&["shard=0/4"]), "bad --shard value: 0/4");
        assert_eq!(fatal_text(&["shard=5/4"]), "bad --shard value: 5/4");
        assert_eq!(fatal_text(&["shard=x"]), "bad --shard value: x");
        assert_eq!(fatal_text(&["bind=a.b"]), "bad --bind value: a.b");
        assert_eq!(
            fatal_text(&["bind=1.2.3.4,"]),
            "bad --bind value: 1.2.3.4,"
        );
        assert_eq!(
            fatal_text(&["start-at=noon"]),
            "bad --start-at value: noon"
        );
    }

    #[test]
    fn the_table_names_each_option_once_and_helps_with_each() {
        let help = help_text();
        for (i, opt) in LONG_OPTIONS.iter().enumerate() {
            let dup = LONG_OPTIONS[..i].iter().any(|o| o.name == opt.name);
            assert!(!dup, "--{} is in the table twice", opt.name);
            let shown = format!("--{}", opt.name);
            assert!(help.contains(&shown), "--help lacks {shown}");
            // An entry without a left column shares the one before.
            assert!(!opt.usage.is_empty() || opt.doc.is_empty());
        }
    }

    #[test]
    fn how_each_kind_takes_its_value() {
        for opt in LONG_OPTIONS {
            let eq = format!("{}=x", opt.name);
            match (opt.takes, parse(&[&eq])) {
                (Takes::Nothing, Err(Error::Usage(_))) => {}
                (Takes::Value | Takes::Optional, Err(Error::Config(_))) => {}
                (Takes::Value | Takes::Optional, Ok(_)) => {}
                (_, other) => panic!("--{eq}: {other:?}"),
            }
            if opt.takes == Takes::Value {
                assert!(matches!(
                    parse(&[opt.name]),
                    Err(Error::Usage(Usage::MissingValue(_)))
                ));
            }
        }
    }

    #[test]
    fn thresholds_stages_and_capacity() {
        let a = parse(&["threshold=transaction.p99<250ms"]).unwrap();
        assert_eq!(a.thresholds[0].expr, "transaction.p99<250ms");
        assert_eq!(
            fatal_text(&["threshold=transaction.p99<fast"]),
            "bad --threshold value: transaction.p99<fast (bad value \
'fast' (a time such as 250ms, 1s or 500us))"
        );
        let a = parse(&["stages=30s:100,1m:2000,10:0"]).unwrap();
        assert_eq!(
            a.stages.unwrap(),
            [
                (Duration::from_secs(30), 100.0),
                (Duration::from_secs(60), 2000.0),
                (Duration::from_secs(10), 0.0)
            ]
        );
        for bad in ["", "30s", "30s:", "0s:5", "x:1", "1:-1", "1:1,"] {
            assert_eq!(
                fatal_text(&[&format!("stages={bad}")]),
                format!("bad --stages value: {bad}")
            );
        }
        assert!(parse(&["find-capacity"]).unwrap().find_capacity);
        let a = parse(&["step=5s"]).unwrap();
        assert_eq!(a.step, Some(Duration::from_secs(5)));
        assert_eq!(fatal_text(&["step=0.5s"]), "bad --step value: 0.5s");
        assert_eq!(parse(&["precision=2%"]).unwrap().precision, Some(0.02));
        assert_eq!(parse(&["precision=10"]).unwrap().precision, Some(0.1));
        assert_eq!(fatal_text(&["precision=0"]), "bad --precision value: 0");
    }

    #[test]
    fn missing_value() {
        match parse(&["rate"]) {
            Err(Error::Usage(usage)) => {
                let line = usage.getopt_line().unwrap();
                assert_eq!(line, b"option '--rate' requires an argument")
            }
            other => panic!("{other:?}"),
        }
    }
}
