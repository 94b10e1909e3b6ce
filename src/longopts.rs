//! longopts: the long options, our extensions. Postfix's
//! smtp-source has none, so none of these can change what an old command
//! line does; an unknown `--name` fails exactly as every `--x` fails in
//! the reference (`invalid option -- '-'`, then the usage line).
//!
//! Forms: `--name`, `--name=value`, and `--name value` for options that
//! require a value. `--report` takes its optional format only as
//! `--report=json`.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::error::Error;
use crate::identity::{Cidr, ProxyVersion, Xclient};
use crate::plan::{Arrival, AuthMech, ReportFormat};
use crate::scale::{self, Shard};
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
        }
    }
}

/// Long options that take a value.
const VALUED: &[&[u8]] = &[
    b"timeout",
    b"max-connecting",
    b"report-file",
    b"hlog",
    b"rate",
    b"arrival",
    b"duration",
    b"numbering",
    b"tls-ca",
    b"tls-servername",
    b"tls-cert",
    b"tls-key",
    b"auth",
    b"auth-user",
    b"auth-file",
    b"xclient",
    b"proxy",
    b"proxy-source",
    b"size-mix",
    b"message-dir",
    b"rcpt-file",
    b"sender-file",
    b"seed",
    b"shard",
    b"start-at",
    b"bind",
];

/// What a long option asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Help,
    Version,
}

/// The error for anything we do not know: the reference's text for any
/// word starting with `--`.
pub fn unknown() -> Error {
    getopt_error("invalid option -- '-'")
}

fn getopt_error(line: &str) -> Error {
    Error::Usage {
        getopt_line: Some(line.as_bytes().to_vec()),
    }
}

fn fatal(text: Vec<u8>) -> Error {
    Error::Config {
        warning: None,
        fatal: text,
    }
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
    let flag = |set: &mut bool| -> Result<Outcome, Error> {
        match inline {
            Some(_) => Err(unknown()),
            None => {
                *set = true;
                Ok(Outcome::Continue)
            }
        }
    };
    match name {
        b"help" if inline.is_none() => return Ok(Outcome::Help),
        b"version" if inline.is_none() => return Ok(Outcome::Version),
        b"ehlo" => return flag(&mut args.ehlo),
        b"pipelining" => return flag(&mut args.pipelining),
        b"chunking" => return flag(&mut args.chunking),
        b"report" => args.report = Some(report_format(inline)?),
        b"tls" => args.tls.level = Some(tls_level(inline)?),
        b"tls-wrapper" => return flag(&mut args.tls.wrapper),
        b"tls-resume" => return flag(&mut args.tls.resume),
        b"auth-plaintext" => return flag(&mut args.auth_plaintext),
        b"progress" => return flag(&mut args.progress),
        b"dry-run" => return flag(&mut args.dry_run),
        _ if !VALUED.contains(&name) => return Err(unknown()),
        _ => {
            let value = match inline {
                Some(v) => v,
                None => next().ok_or_else(|| missing(name))?,
            };
            valued(args, name, value)?;
        }
    }
    Ok(Outcome::Continue)
}

fn missing(name: &[u8]) -> Error {
    let name = String::from_utf8_lossy(name);
    getopt_error(&format!("option '--{name}' requires an argument"))
}

fn report_format(value: Option<Vec<u8>>) -> Result<ReportFormat, Error> {
    match value.as_deref() {
        None | Some(b"text") => Ok(ReportFormat::Text),
        Some(b"json") => Ok(ReportFormat::Json),
        Some(other) => Err(bad("--report", other)),
    }
}

/// `--tls` alone means `encrypt`.
fn tls_level(value: Option<Vec<u8>>) -> Result<Level, Error> {
    match value.as_deref() {
        None | Some(b"encrypt") => Ok(Level::Encrypt),
        Some(b"may") => Ok(Level::May),
        Some(b"verify") => Ok(Level::Verify),
        Some(other) => Err(bad("--tls", other)),
    }
}

fn valued(args: &mut LongArgs, name: &[u8], v: Vec<u8>) -> Result<(), Error> {
    if identity(args, name, &v)?
        || workload(args, name, &v)?
        || scale_out(args, name, &v)?
    {
        return Ok(());
    }
    match name {
        b"timeout" => args.timeout = Some(seconds(&v, "--timeout")?),
        b"max-connecting" => {
            args.max_connecting = match number(&v) {
                Some(n) if (1.0..=1e6).contains(&n) && n.fract() == 0.0 => {
                    n as u32
                }
                _ => return Err(bad("--max-connecting", &v)),
            }
        }
        b"report-file" => args.report_file = Some(v),
        b"hlog" => args.hlog = Some(v),
        b"rate" => {
            args.rate = match number(&v) {
                Some(r) if r > 0.0 && r <= 1e7 => Some(r),
                _ => return Err(bad("--rate", &v)),
            }
        }
        b"arrival" => {
            args.arrival = match &v[..] {
                b"uniform" => Arrival::Uniform,
                b"poisson" => Arrival::Poisson,
                _ => return Err(bad("--arrival", &v)),
            }
        }
        b"duration" => args.duration = Some(seconds(&v, "--duration")?),
        b"numbering" => {
            args.numbering = match &v[..] {
                b"3.7" => Numbering::Postfix37,
                b"3.9" => Numbering::Postfix39,
                _ => return Err(bad("--numbering", &v)),
            }
        }
        _ => return Err(unknown()),
    }
    Ok(())
}

/// The TLS, AUTH, XCLIENT and PROXY options; false for any other.
fn identity(
    args: &mut LongArgs,
    name: &[u8],
    v: &[u8],
) -> Result<bool, Error> {
    let path = || Some(v.to_vec());
    match name {
        b"tls-ca" => args.tls.ca = path(),
        b"tls-servername" => args.tls.servername = path(),
        b"tls-cert" => args.tls.cert = path(),
        b"tls-key" => args.tls.key = path(),
        b"auth" => {
            args.auth = Some(match &v.to_ascii_uppercase()[..] {
                b"PLAIN" => AuthMech::Plain,
                b"LOGIN" => AuthMech::Login,
                _ => return Err(bad("--auth", v)),
            })
        }
        b"auth-user" => args.auth_user = path(),
        b"auth-file" => args.auth_file = path(),
        b"xclient" => {
            let parsed = Xclient::parse(v).map_err(|why| {
                let mut text = bad("--xclient", v).text();
                text.extend_from_slice(format!(" ({why})").as_bytes());
                fatal(text)
            })?;
            args.xclient = Some(parsed);
        }
        b"proxy" => {
            args.proxy = Some(match v {
                b"v1" => ProxyVersion::V1,
                b"v2" => ProxyVersion::V2,
                _ => return Err(bad("--proxy", v)),
            })
        }
        b"proxy-source" => {
            let text = std::str::from_utf8(v).unwrap_or("");
            let range =
                Cidr::parse(text).ok_or_else(|| bad("--proxy-source", v))?;
            args.proxy_source = Some(range);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The workload options (--size-mix, --message-dir, --rcpt-file,
/// --sender-file, --seed); false for any other.
fn workload(
    args: &mut LongArgs,
    name: &[u8],
    v: &[u8],
) -> Result<bool, Error> {
    let path = || Some(v.to_vec());
    match name {
        b"size-mix" => {
            let mix = size_mix(v).ok_or_else(|| bad("--size-mix", v))?;
            args.size_mix = Some(mix);
        }
        b"message-dir" => args.message_dir = path(),
        b"rcpt-file" => args.rcpt_file = path(),
        b"sender-file" => args.sender_file = path(),
        b"seed" => {
            let text = std::str::from_utf8(v).unwrap_or("");
            args.seed = Some(text.parse().map_err(|_| bad("--seed", v))?);
        }
        _ => return Ok(false),
    }
    Ok(true)
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

/// --shard, --start-at and --bind; false for any other.
fn scale_out(
    args: &mut LongArgs,
    name: &[u8],
    v: &[u8],
) -> Result<bool, Error> {
    match name {
        b"shard" => {
            args.shard =
                Some(Shard::parse(v).ok_or_else(|| bad("--shard", v))?)
        }
        b"start-at" => {
            let at = scale::parse_time(v);
            args.start_at = Some(at.ok_or_else(|| bad("--start-at", v))?)
        }
        b"bind" => args.bind = bind_list(v).ok_or_else(|| bad("--bind", v))?,
        _ => return Ok(false),
    }
    Ok(true)
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

fn bad(what: &str, value: &[u8]) -> Error {
    let mut text = format!("bad {what} value: ").into_bytes();
    text.extend_from_slice(value);
    fatal(text)
}

/// Seconds as a decimal number (fractions allowed), > 0.
pub fn seconds(value: &[u8], what: &str) -> Result<Duration, Error> {
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
            Err(Error::Config { fatal, .. }) => {
                String::from_utf8(fatal).unwrap()
            }
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
    fn unknown_and_misused_options_fail_like_the_reference() {
        for words in [&["frobnicate"][..], &["ehlo=yes"], &["progress=1"]] {
            match parse(words) {
                Err(Error::Usage {
                    getopt_line: Some(l),
                }) => {
                    assert_eq!(l, b"invalid option -- '-'")
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
    fn missing_value() {
        match parse(&["rate"]) {
            Err(Error::Usage {
                getopt_line: Some(l),
            }) => {
                assert_eq!(l, b"option '--rate' requires an argument")
            }
            other => panic!("{other:?}"),
        }
    }
}
