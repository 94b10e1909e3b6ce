//! cli: argv to plain `Args`, exactly as the reference reads its command
//! line.
//!
//! The scanner is glibc getopt with the reference's option string
//! `+46AcC:df:F:l:Lm:M:Nor:R:s:S:t:T:vw:`: option clusters, attached or
//! separate arguments, `--`, and parsing stops at the first operand.
//! Each option is checked as it is met, left to right, so the first bad
//! one is the one reported, as in the reference. Values are bytes, never
//! required to be UTF-8. Long options exist only for our extensions
//! (man page NOTES, X13); an unknown one fails as the reference fails on
//! any `--x`.
//!
//! Why not the getopts crate: it parses the whole line before any check
//! (so `-m 0 -x` would report `-x`, the reference reports `-m 0`) and it
//! rejects arguments that are not UTF-8, which the reference sends on.

use crate::endpoint::Family;
use crate::error::{Config, Conflict, Error, Usage};
use crate::hostname;
use crate::longopts::{self, LongArgs, Outcome};
use crate::plan::Delay;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// Usage text after "usage: <argv0> " (it omits -4 -6 -A -F -S -T, as
/// the reference's does).
const USAGE_TAIL: &str = " -cdLNov -s sess -l msglen -m msgs -C count \
-M myhostname -f from -t to -r rcptcount -R delay -w delay host[:port]";

/// Short options that take an argument.
const WITH_ARG: &[u8] = b"CfFlmMrRsStTw";
/// Short options that are flags.
const FLAGS: &[u8] = b"46AcdLNov";

/// The command line, checked value by value but not yet combined.
#[derive(Debug, Clone)]
pub struct Args {
    pub family: Family,
    pub allow_reject: bool,
    pub count: bool,
    pub connect_count: u32,
    pub reuse: bool,
    pub from: Option<Vec<u8>>,
    pub file: Option<Vec<u8>>,
    pub length: Option<u32>,
    pub lmtp: bool,
    pub messages: u32,
    pub myhostname: Option<Vec<u8>>,
    pub numbered: bool,
    pub old_mode: bool,
    pub recipients: u32,
    pub delay: Delay,
    pub sessions: u32,
    pub subject: Option<Vec<u8>>,
    pub to: Option<Vec<u8>>,
    pub window: Option<u32>,
    pub verbose: u32,
    pub endpoint: Vec<u8>,
    /// Whether -m was given (--duration treats it as an upper bound).
    pub messages_given: bool,
    /// Whether -r was given (3.9 numbering turns on with it).
    pub recipients_given: bool,
    /// Long options: our extensions.
    pub long: LongArgs,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Args>),
    Help,
    Version,
}

impl Args {
    fn new() -> Self {
        Args {
            family: Family::Any,
            allow_reject: false,
            count: false,
            connect_count: 1,
            reuse: false,
            from: None,
            file: None,
            length: None,
            lmtp: false,
            messages: 1,
            myhostname: None,
            numbered: false,
            old_mode: false,
            recipients: 1,
            delay: Delay::None,
            sessions: 1,
            subject: None,
            to: None,
            window: None,
            verbose: 0,
            endpoint: Vec::new(),
            messages_given: false,
            recipients_given: false,
            long: LongArgs::default(),
        }
    }
}

/// The usage fatal text (after "fatal: ").
pub fn usage_text(argv0: &[u8]) -> Vec<u8> {
    let mut out = b"usage: ".to_vec();
    out.extend_from_slice(argv0);
    out.extend_from_slice(USAGE_TAIL.as_bytes());
    out
}

/// Parses argv (argv[0] included).
pub fn parse(argv: Vec<OsString>) -> Result<Parsed, Error> {
    let mut argv: Vec<Vec<u8>> =
        argv.into_iter().map(OsStringExt::into_vec).collect();
    if argv.is_empty() {
        argv.push(b"smtp-source".to_vec());
    }
    let mut args = Args::new();
    let mut i = 1;
    while i < argv.len() {
        let word = &argv[i];
        if word == b"--" {
            i += 1;
            break;
        }
        if let Some(long) = word.strip_prefix(b"--") {
            let long = long.to_vec();
            i += 1;
            let mut next = || {
                let word = argv.get(i).cloned();
                i += usize::from(word.is_some());
                word
            };
            match longopts::apply(&mut args.long, &long, &mut next)? {
                Outcome::Continue => continue,
                Outcome::Help => return Ok(Parsed::Help),
                Outcome::Version => return Ok(Parsed::Version),
            }
        }
        if word.len() < 2 || word[0] != b'-' {
            break; // first operand: the '+' in the option string
        }
        i = cluster(&mut args, &argv, i)?;
    }
    let operands = &argv[i..];
    if operands.len() != 1 {
        return Err(Error::Usage(Usage::Operands));
    }
    args.endpoint = operands[0].clone();
    Ok(Parsed::Run(Box::new(args)))
}

/// Handles one `-xyz` word; returns the index of the next word.
fn cluster(
    args: &mut Args,
    argv: &[Vec<u8>],
    mut i: usize,
) -> Result<usize, Error> {
    let word = &argv[i];
    let mut pos = 1;
    while pos < word.len() {
        let opt = word[pos];
        pos += 1;
        if FLAGS.contains(&opt) {
            flag(args, opt);
        } else if WITH_ARG.contains(&opt) {
            let value = if pos < word.len() {
                word[pos..].to_vec()
            } else {
                i += 1;
                match argv.get(i) {
                    Some(v) => v.clone(),
                    None => {
                        return Err(Error::Usage(Usage::MissingArgument(opt)))
                    }
                }
            };
            with_arg(args, opt, value)?;
            return Ok(i + 1);
        } else {
            return Err(Error::Usage(Usage::InvalidOption(opt)));
        }
    }
    Ok(i + 1)
}

fn flag(args: &mut Args, opt: u8) {
    match opt {
        b'4' => args.family = Family::V4,
        b'6' => args.family = Family::V6,
        b'A' => args.allow_reject = true,
        b'c' => args.count = true,
        b'd' => args.reuse = true,
        b'L' => args.lmtp = true,
        b'N' => args.numbered = true,
        b'o' => args.old_mode = true,
        _ => args.verbose += 1, // 'v'
    }
}

fn with_arg(args: &mut Args, opt: u8, value: Vec<u8>) -> Result<(), Error> {
    match opt {
        b'C' => args.connect_count = positive(&value, "connection count")?,
        b'f' => args.from = Some(value),
        b'F' => {
            if args.length.is_some() {
                return Err(conflict(Conflict::LengthAndFile));
            }
            args.file = Some(value);
        }
        b'l' => {
            if args.file.is_some() {
                return Err(conflict(Conflict::LengthAndFile));
            }
            args.length = Some(positive(&value, "message length")?);
        }
        b'm' => {
            args.messages = positive(&value, "message count")?;
            args.messages_given = true;
        }
        b'M' => {
            check_myhostname(&value)?;
            args.myhostname = Some(value);
        }
        b'r' => {
            args.recipients = positive(&value, "recipient count")?;
            args.recipients_given = true;
        }
        b'R' => {
            if matches!(args.delay, Delay::Fixed(_)) {
                return Err(conflict(Conflict::FixedAndRandomDelay));
            }
            args.delay = Delay::Random(positive(&value, "random delay")?);
        }
        b's' => args.sessions = positive(&value, "session count")?,
        b'S' => args.subject = Some(value),
        b't' => args.to = Some(value),
        b'T' => args.window = Some(positive(&value, "TCP window size")?),
        _ => {
            // 'w'
            if matches!(args.delay, Delay::Random(_)) {
                return Err(conflict(Conflict::FixedAndRandomDelay));
            }
            args.delay = Delay::Fixed(positive(&value, "fixed delay")?);
        }
    }
    Ok(())
}

fn conflict(c: Conflict) -> Error {
    Error::Config(Config::Conflict(c))
}

/// -M must be a hostname, or an address literal when it starts with `[`.
fn check_myhostname(value: &[u8]) -> Result<(), Error> {
    hostname::check_myhostname(value).map_err(|(warning, _)| {
        Error::Config(Config::Myhostname {
            warning,
            literal: value.first() == Some(&b'['),
            value: value.to_vec(),
        })
    })
}

/// An `atoi` value that must be > 0, else `bad <what>: <value>`.
fn positive(value: &[u8], what: &'static str) -> Result<u32, Error> {
    match atoi(value) {
        n if n > 0 => Ok(n as u32),
        _ => Err(Error::Config(Config::BadNumber {
            what,
            value: value.to_vec(),
        })),
    }
}

/// C `atoi` as glibc does it: `(int) strtol(s, NULL, 10)`. Leading
/// white space and a sign are accepted, trailing garbage is ignored,
/// strtol saturates at the 64-bit bounds and the cast to int keeps the
/// low 32 bits (so `99999999999` is 1215752191, and a value past 2^63
/// is -1).
pub fn atoi(s: &[u8]) -> i32 {
    let mut rest = s;
    while let Some((&b, tail)) = rest.split_first() {
        if !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            break;
        }
        rest = tail;
    }
    let negative = rest.first() == Some(&b'-');
    if matches!(rest.first(), Some(b'-' | b'+')) {
        rest = &rest[1..];
    }
    let mut value: i64 = 0;
    for &b in rest.iter().take_while(|b| b.is_ascii_digit()) {
        let digit = i64::from(b - b'0');
        value = match value.checked_mul(10).and_then(|v| {
            if negative {
                v.checked_sub(digit)
            } else {
                v.checked_add(digit)
            }
        }) {
            Some(v) => v,
            None if negative => i64::MIN,
            None => i64::MAX,
        };
        if value == i64::MIN || value == i64::MAX {
            break;
        }
    }
    value as i32
}

/// The --version text (stdout, exit 0).
pub const VERSION_TEXT: &[u8] = concat!(
    "smtp-source ",
    env!("CARGO_PKG_VERSION"),
    " (Rust; behaves as Postfix 3.7.11 smtp-source)\n"
)
.as_bytes();

/// The --help text (stdout, exit 0): the usage line, the short options,
/// then the long options from their table.
pub fn help_text() -> Vec<u8> {
    let mut out = usage_text(crate::diag::argv0());
    out.extend_from_slice(SHORT_HELP.as_bytes());
    out.extend_from_slice(longopts::help_text().as_bytes());
    out
}

const SHORT_HELP: &str = "

Parallel SMTP/LMTP test generator (drop-in for Postfix's smtp-source).

  -4, -6          resolve and connect with IPv4 / IPv6 only
  -A              don't abort on non-positive replies (warn instead)
  -c              print a running count of messages sent
  -C count        connect attempts per session (default 1)
  -d              send the next message over the same connection
  -f from         sender address (default foo@myhostname)
  -F file         send this pre-formatted message (headers and body)
  -l length       send length bytes of payload
  -L              speak LMTP
  -m count        total messages (default 1)
  -M myhostname   HELO name and domain of the default addresses
  -N              prefix each recipient with a global sequence number
  -o              old mode: no HELO, no headers
  -r count        recipients per transaction (default 1)
  -R interval     random delay 0..interval seconds between messages
  -s count        parallel sessions (default 1)
  -S subject      add a Subject: header
  -t to           recipient address (default foo@myhostname)
  -T windowsize   socket send/receive buffer size
  -v              verbose (command and reply lines on stderr)
  -w interval     fixed delay between messages
";

#[cfg(test)]
mod tests {
    use super::*;

    fn run(words: &[&str]) -> Result<Parsed, Error> {
        let mut argv = vec![OsString::from("smtp-source")];
        argv.extend(words.iter().map(OsString::from));
        parse(argv)
    }

    fn args(words: &[&str]) -> Args {
        match run(words) {
            Ok(Parsed::Run(a)) => *a,
            other => panic!("{other:?}"),
        }
    }

    fn fatal_text(words: &[&str]) -> String {
        match run(words) {
            Err(e @ Error::Config(_)) => String::from_utf8(e.text()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_myhostname_is_told_as_the_hostname_check_tells_it() {
        for value in ["bad_name!", "[1.2.3]", "-x"] {
            let (warning, fatal) =
                hostname::check_myhostname(value.as_bytes()).unwrap_err();
            match run(&["-M", value, "h"]) {
                Err(Error::Config(c)) => {
                    assert_eq!(c.warning(), Some(&warning[..]));
                    assert_eq!(c.text(), fatal);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    fn getopt_line(words: &[&str]) -> Option<String> {
        match run(words) {
            Err(Error::Usage(usage)) => {
                usage.getopt_line().map(|l| String::from_utf8(l).unwrap())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn atoi_is_glibc_atoi() {
        assert_eq!(atoi(b"3x"), 3);
        assert_eq!(atoi(b"abc"), 0);
        assert_eq!(atoi(b"  +7"), 7);
        assert_eq!(atoi(b"-1"), -1);
        assert_eq!(atoi(b"0x5"), 0);
        assert_eq!(atoi(b"99999999999"), 1215752191);
        assert_eq!(atoi(b"99999999999999999999"), -1);
        assert_eq!(atoi(b"-99999999999999999999"), 0);
    }

    #[test]
    fn attached_separate_and_clustered_arguments() {
        let a = args(&["-m3", "-s", "5", "-cdr2", "x"]);
        assert_eq!((a.messages, a.sessions, a.recipients), (3, 5, 2));
        assert!(a.count && a.reuse);
        assert_eq!(a.endpoint, b"x");
    }

    #[test]
    fn last_value_wins_and_flags_accumulate() {
        let a = args(&["-m", "2", "-m", "4", "-4", "-6", "-vvv", "h"]);
        assert_eq!(a.messages, 4);
        assert_eq!(a.family, Family::V6);
        assert_eq!(a.verbose, 3);
    }

    #[test]
    fn first_bad_option_is_reported() {
        assert_eq!(
            fatal_text(&["-m", "0", "-x", "h"]),
            "bad message count: 0"
        );
        assert_eq!(
            getopt_line(&["-x", "-m", "0", "h"]).unwrap(),
            "invalid option -- 'x'"
        );
    }

    #[test]
    fn bad_values_quote_the_argument() {
        assert_eq!(fatal_text(&["-m", "abc", "h"]), "bad message count: abc");
        assert_eq!(fatal_text(&["-s", "0", "h"]), "bad session count: 0");
        assert_eq!(fatal_text(&["-r", "0", "h"]), "bad recipient count: 0");
        assert_eq!(fatal_text(&["-l", "-5", "h"]), "bad message length: -5");
        assert_eq!(
            fatal_text(&["-C", "0x5", "h"]),
            "bad connection count: 0x5"
        );
        assert_eq!(fatal_text(&["-T", "0", "h"]), "bad TCP window size: 0");
        assert_eq!(fatal_text(&["-R", "0", "h"]), "bad random delay: 0");
        assert_eq!(fatal_text(&["-w", "0", "h"]), "bad fixed delay: 0");
    }

    #[test]
    fn conflicts_are_checked_before_values() {
        let conflict = "-l option cannot be used with -F";
        assert_eq!(fatal_text(&["-F", "f", "-l", "0", "h"]), conflict);
        assert_eq!(
            fatal_text(&["-l", "0", "-F", "f", "h"]),
            "bad message length: 0"
        );
        assert_eq!(fatal_text(&["-l", "5", "-F", "f", "h"]), conflict);
        let delays = "do not use -w and -R options at the same time";
        assert_eq!(fatal_text(&["-w", "1", "-R", "0", "h"]), delays);
        assert_eq!(fatal_text(&["-R", "1", "-w", "0", "h"]), delays);
        assert_eq!(
            fatal_text(&["-R", "0", "-w", "1", "h"]),
            "bad random delay: 0"
        );
    }

    #[test]
    fn operands_stop_option_parsing() {
        assert_eq!(getopt_line(&["h", "-m", "2"]), None);
        assert_eq!(getopt_line(&[]), None);
        assert_eq!(getopt_line(&["--", "-m", "0"]), None);
        assert_eq!(getopt_line(&["-", "x"]), None);
        assert_eq!(args(&["--", "h"]).endpoint, b"h");
    }

    #[test]
    fn missing_argument() {
        assert_eq!(
            getopt_line(&["-m"]).unwrap(),
            "option requires an argument -- 'm'"
        );
    }

    #[test]
    fn unknown_long_option_is_named() {
        assert_eq!(
            getopt_line(&["--frobnicate", "h"]).unwrap(),
            "unknown option --frobnicate"
        );
    }

    #[test]
    fn long_options() {
        use std::time::Duration;
        assert!(matches!(run(&["--help"]), Ok(Parsed::Help)));
        assert!(matches!(run(&["--version"]), Ok(Parsed::Version)));
        let a = args(&["--timeout=2.5", "--max-connecting", "3", "h"]);
        assert_eq!(a.long.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(a.long.max_connecting, 3);
        assert_eq!(
            fatal_text(&["--timeout=0", "h"]),
            "bad --timeout value: 0"
        );
    }

    #[test]
    fn arguments_need_not_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let argv = vec![
            OsString::from("smtp-source"),
            OsString::from("-f"),
            OsString::from_vec(b"\xe9t\xe9@x".to_vec()),
            OsString::from("h"),
        ];
        match parse(argv) {
            Ok(Parsed::Run(a)) => {
                assert_eq!(a.from.as_deref(), Some(&b"\xe9t\xe9@x"[..]))
            }
            other => panic!("{other:?}"),
        }
    }
}
