//! Differential tests: run the reference smtp-source (Debian's Postfix
//! 3.7.11, see `tests/fetch-reference.sh`) and ours with the same options
//! against two fresh fake servers with the same behaviour, and compare
//! exit status, stdout, stderr (argv[0] fixed, the reference's internal
//! -v trace lines dropped: man page NOTES X12) and what the client sent
//! on each connection (Date and the Message-Id pid/fd masked; the
//! connection's end, FIN vs. RST, included).
//! Elapsed time is never compared (the reference sleeps 1 s before a
//! fatal exit: NOTES X6).
//!
//! Cases come from one table (`cases!` below); adding a case is one line.
//! Each case is also its own `#[test]` (`differential::cases::<name>`).
//! All cases run together once, in parallel, on first use: the reference
//! sleeps 1 s before every fatal exit, and the test harness runs only a few
//! tests at a time.
//!
//! Where we deliberately differ (the man page's NOTES, X1-X15), there is
//! no comparison: `deliberate` holds plain tests of our behaviour, one
//! per NOTES entry.
//!
//! Self-check of the harness: `SMTP_SOURCE_UNDER_TEST=<reference binary>
//! cargo test --test integration differential::` compares the reference
//! with itself (every case must pass; `deliberate` tests then fail, as
//! they describe where we differ). `sensitivity` shows that the
//! comparison catches real differences.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::support::fake_server::{
    mask, mask_all, Behavior, End, FakeServer, Listen, Options, Responder,
    Script, Step, Transcript, Verb,
};
use crate::support::{
    data_file, diff, escape_lines, filter_verbose, ours, reference,
    reference_or_skip, spawn, Outcome, Program, RefusingPort,
};

/// Per-run hard limit (the slowest case, `-w 1 -m 2`, takes 2 s).
const RUN_LIMIT: Duration = Duration::from_secs(12);

/// How many cases run at once.
const PARALLEL: usize = 16;

// ---------------------------------------------------------------------------
// Cases

/// Where the client connects.
#[derive(Clone, Debug)]
enum Target {
    /// A fresh fake server per run; its endpoint replaces `@EP` in the
    /// arguments (and `@PORT` its port), or is appended when neither
    /// appears.
    Server(Listen, Behavior),
    /// `127.0.0.1:<a closed port>`, appended unless `@EP` appears.
    Refused,
    /// No server; the arguments are used as they are.
    Nothing,
}

/// One differential case: arguments, a server, and what to compare.
#[derive(Clone, Debug)]
pub struct Case {
    args: Vec<String>,
    target: Target,
    /// Compare only the wire transcripts (not status/stdout/stderr).
    wire_only: bool,
    /// Compare connections (and stderr lines) as multisets, with the
    /// Message-Id counter masked too (several sessions interleave).
    unordered: bool,
}

/// A case with these arguments against the default responder over TCP.
fn c(args: &[&str]) -> Case {
    let unordered = args
        .windows(2)
        .any(|w| w[0] == "-s" && w[1].trim().parse::<u32>().unwrap_or(1) > 1);
    Case {
        args: args.iter().map(|s| s.to_string()).collect(),
        target: Target::Server(Listen::Tcp, Responder::new().into()),
        wire_only: false,
        unordered,
    }
}

impl Case {
    /// Use this responder (TCP).
    fn resp(mut self, r: Responder) -> Case {
        self.target = Target::Server(self.listen(), r.into());
        self
    }

    /// Use this script (TCP).
    fn script(mut self, s: Script) -> Case {
        self.target = Target::Server(self.listen(), s.into());
        self
    }

    /// Listen on a unix socket instead of TCP.
    fn unix(mut self) -> Case {
        if let Target::Server(_, b) = self.target {
            self.target = Target::Server(Listen::Unix, b);
        }
        self
    }

    fn refused(mut self) -> Case {
        self.target = Target::Refused;
        self
    }

    fn no_server(mut self) -> Case {
        self.target = Target::Nothing;
        self
    }

    fn wire_only(mut self) -> Case {
        self.wire_only = true;
        self
    }

    fn listen(&self) -> Listen {
        match &self.target {
            Target::Server(l, _) => *l,
            _ => Listen::Tcp,
        }
    }
}

/// A responder answering `verb` with `line` on every occurrence.
fn on(verb: Verb, line: &str) -> Responder {
    Responder::new().on(verb, line)
}

/// A fresh responder (default replies).
fn r() -> Responder {
    Responder::new()
}

/// A case with these arguments; the responder answers `verb` with `line`.
fn with(args: &[&str], verb: Verb, line: &str) -> Case {
    c(args).resp(on(verb, line))
}

/// `-A -m 2`; the responder answers `verb` with `line`.
fn a2(verb: Verb, line: &str) -> Case {
    with(&["-A", "-m", "2"], verb, line)
}

/// A case with `-F tests/data/<file>` (plus `extra` options).
fn file(name: &str, extra: &[&str]) -> Case {
    let path = data_file(name).to_string_lossy().into_owned();
    let mut args: Vec<&str> = vec!["-F", &path];
    args.extend_from_slice(extra);
    c(&args)
}

/// A case with `before` options, then `-F tests/data/<file>`.
fn file_after(before: &[&str], name: &str) -> Case {
    let path = data_file(name).to_string_lossy().into_owned();
    let mut args = before.to_vec();
    args.extend_from_slice(&["-F", &path]);
    c(&args)
}

/// A case whose operand is `endpoint` verbatim, with no server.
fn ep(args: &[&str], endpoint: &str) -> Case {
    let mut v = args.to_vec();
    v.push(endpoint);
    c(&v).no_server()
}

macro_rules! cases {
    ($($name:ident => $case:expr,)*) => {
        fn table() -> Vec<(&'static str, Case)> {
            vec![$((stringify!($name), $case),)*]
        }

        /// One `#[test]` per table row.
        mod cases {
            $(
                #[test]
                fn $name() {
                    super::check(stringify!($name));
                }
            )*
        }
    };
}

cases! {
    // Defaults and modes.
    defaults => c(&[]),
    old_mode => c(&["-o"]),
    lmtp => c(&["-L"]).resp(r().lmtp()),
    old_mode_lmtp => c(&["-o", "-L"]).resp(r().lmtp()),
    lmtp_rcpt_3 => c(&["-L", "-r", "3"]).resp(r().lmtp()),
    // Recipients and numbering.
    rcpt_1 => c(&["-r", "1"]),
    rcpt_2 => c(&["-r", "2"]),
    rcpt_3 => c(&["-r", "3"]),
    number => c(&["-N"]),
    number_r2_m2 => c(&["-N", "-r", "2", "-m", "2"]),
    number_to_r2_m2 => c(&["-N", "-t", "bar+@x.ex", "-r", "2", "-m", "2"]),
    to_r3 => c(&["-t", "bar@x.ex", "-r", "3"]),
    // Messages, sessions, reuse.
    messages_3 => c(&["-m", "3"]),
    reuse_m3 => c(&["-d", "-m", "3"]),
    old_reuse_m2 => c(&["-o", "-d", "-m", "2"]),
    m3_s2 => c(&["-m", "3", "-s", "2"]),
    m3_s2_reuse => c(&["-m", "3", "-s", "2", "-d"]),
    m1_s3 => c(&["-m", "1", "-s", "3"]),
    m3x_means_3 => c(&["-m", "3x"]),
    // Addresses, names, subject.
    from_custom => c(&["-f", "sender@example.com"]),
    from_empty => c(&["-f", ""]),
    from_brackets => c(&["-f", "<a@b>"]),
    to_custom => c(&["-t", "rcpt@example.net"]),
    to_empty => c(&["-t", ""]),
    to_brackets => c(&["-t", "<a@b>"]),
    to_space => c(&["-t", "x y@z"]),
    helo_name => c(&["-M", "mail.example.com"]),
    helo_literal => c(&["-M", "[1.2.3.4]"]),
    helo_literal_lmtp => c(&["-L", "-M", "[1.2.3.4]"]).resp(r().lmtp()),
    subject => c(&["-S", "Test subject"]),
    subject_empty => c(&["-S", ""]),
    subject_old_mode => c(&["-o", "-S", "ignored"]),
    // -l payloads.
    len_1 => c(&["-l", "1"]),
    len_79 => c(&["-l", "79"]),
    len_80 => c(&["-l", "80"]),
    len_81 => c(&["-l", "81"]),
    len_100 => c(&["-l", "100"]),
    len_160 => c(&["-l", "160"]),
    len_1000 => c(&["-l", "1000"]),
    len_100000 => c(&["-l", "100000"]),
    len_old_mode => c(&["-o", "-l", "200"]),
    // -F files.
    file_lf => file("lf.txt", &[]),
    file_crlf => file("crlf.txt", &[]),
    file_no_final_newline => file("nonl.txt", &[]),
    file_leading_dots => file("dots.txt", &[]),
    file_lone_dot => file("lonedot.txt", &[]),
    file_nul_8bit => file("nul8bit.bin", &[]),
    file_empty => file("empty.txt", &[]),
    file_one_newline => file("onenl.txt", &[]),
    file_empty_lines => file("empty_lines.txt", &[]),
    file_subject_ignored => file("lf.txt", &["-S", "ignored"]),
    file_old_mode => file("dots.txt", &["-o"]),
    file_reuse_m2 => file("nonl.txt", &["-d", "-m", "2"]),
    // -c, -v.
    count_m3 => c(&["-c", "-m", "3"]),
    count_m12_s3 => c(&["-c", "-m", "12", "-s", "3"]),
    count_twice => c(&["-c", "-c", "-m", "2"]),
    count_fatal_dot => with(&["-c", "-m", "3", "-d"], Verb::Dot, "554 nope"),
    count_all_data_rejected =>
        with(&["-A", "-c", "-m", "3"], Verb::Data, "554 nope"),
    verbose => c(&["-v"]),
    verbose_twice => c(&["-v", "-v", "-m", "2", "-d"]),
    verbose_multiline => c(&["-v"]).resp(
        r()
            .banner("220-first line\r\n220-second\r\n220 third")
            .on(Verb::Rcpt, "250-ok\r\n250 fine")
            .on(Verb::Quit, "221-bye\r\n221 really")),
    verbose_lost_after_mail => c(&["-v"]).resp(r().close_at(Verb::Mail)),
    verbose_rejected => with(&["-v", "-A"], Verb::Rcpt, "550-a\r\n550 b"),
    verbose_3_unix => c(&["-v", "-v", "-v"]).unix(),
    // Rejections without -A: fatal.
    reject_banner => c(&[]).resp(r().banner("550 5.0.0 rejected BANNER")),
    reject_helo => with(&[], Verb::Helo, "550 5.0.0 rejected HELO"),
    reject_lhlo => with(&["-L"], Verb::Lhlo, "550 5.0.0 rejected LHLO"),
    reject_mail => with(&[], Verb::Mail, "550 5.0.0 rejected MAIL"),
    reject_rcpt => with(&[], Verb::Rcpt, "550 5.0.0 rejected RCPT"),
    reject_data => with(&[], Verb::Data, "550 5.0.0 rejected DATA"),
    reject_dot => with(&[], Verb::Dot, "550 5.0.0 rejected DOT"),
    reject_dot_lmtp_second =>
        c(&["-L", "-r", "2"]).resp(r().lmtp().on_steps(Verb::Dot,
            vec![Step::send("250 2.0.0 ok 1"), Step::send("452 4.2.2 full")])),
    reject_rcpt_421 => with(&[], Verb::Rcpt, "421 4.3.0 closing"),
    // Rejections with -A: warnings.
    a_banner_450 => c(&["-A", "-m", "2"]).resp(r().banner("450 busy")),
    a_banner_554 => c(&["-A"]).resp(r().banner("554 go away")),
    a_helo_450 => a2(Verb::Helo, "450 4.0.0 helo later"),
    a_helo_550 => a2(Verb::Helo, "550 5.0.0 helo no"),
    a_mail_450 => a2(Verb::Mail, "450 4.1.0 mail later"),
    a_mail_550 => a2(Verb::Mail, "550 5.1.0 mail no"),
    a_rcpt_450 => a2(Verb::Rcpt, "450 4.1.1 rcpt later"),
    a_rcpt_550 => a2(Verb::Rcpt, "550 5.1.1 rcpt no"),
    a_data_450 => a2(Verb::Data, "451 4.3.0 data later"),
    a_data_550 => a2(Verb::Data, "554 5.3.0 data no"),
    a_dot_450 => a2(Verb::Dot, "452 4.3.1 dot later"),
    a_dot_550 => a2(Verb::Dot, "552 5.3.4 dot no"),
    a_helo_421 => a2(Verb::Helo, "421 4.3.2 helo bye"),
    a_mail_421 => a2(Verb::Mail, "421 4.3.2 mail bye"),
    a_rcpt_421 => a2(Verb::Rcpt, "421 4.3.2 rcpt bye"),
    a_data_421 => a2(Verb::Data, "421 4.3.2 data bye"),
    a_dot_421 => a2(Verb::Dot, "421 4.3.2 dot bye"),
    a_rcpt_521_reuse =>
        with(&["-A", "-d", "-m", "2"], Verb::Rcpt, "521 5.3.2 bye"),
    a_all_rcpts_rejected_r2 => with(&["-A", "-r", "2"], Verb::Rcpt, "550 no"),
    a_all_rcpts_rejected_reuse =>
        with(&["-A", "-d", "-m", "2", "-r", "2", "-N"], Verb::Rcpt, "550 no"),
    a_one_rcpt_rejected_r3 =>
        c(&["-A", "-r", "3"]).resp(r().on_nth(Verb::Rcpt, 1, "550 no rcpt 2")),
    a_rset_rejected_reuse => c(&["-A", "-d", "-m", "2"]).resp(
        r().on_nth(Verb::Mail, 0, "550 no").on(Verb::Rset, "554 rset no")),
    a_dot_rejected_reuse =>
        with(&["-A", "-d", "-m", "2"], Verb::Dot, "554 no"),
    // Reply parsing.
    data_250 => with(&[], Verb::Data, "250 not 354"),
    data_354_multiline => with(&[], Verb::Data, "354-go\r\n354 go"),
    reply_multiline_reject =>
        with(&[], Verb::Rcpt, "550-line one\r\n550 line two"),
    reply_ok_then_bad => with(&[], Verb::Rcpt, "250-ok\r\n550 bad"),
    reply_bad_then_ok => with(&[], Verb::Rcpt, "550-x\r\n250 ok"),
    reply_code_only => c(&[]).resp(
        r().banner("220").on(Verb::Helo, "250").on(Verb::Dot, "250")),
    reply_4_digits => with(&[], Verb::Rcpt, "2500 foo"),
    reply_2_digits => with(&[], Verb::Rcpt, "25 ok"),
    reply_leading_blanks => c(&[]).resp(r().banner("  220 x")),
    reply_three_digits_junk => with(&[], Verb::Mail, "250x whatever"),
    reply_bare_lf => c(&[]).resp(r()
        .on_raw(Verb::Banner, b"220-a\n220 bare\n")
        .on_raw(Verb::Rcpt, b"250 bare lf\n")),
    reply_cr_cr_lf => c(&["-v"]).resp(r().on_raw(Verb::Mail, b"250 ok\r\r\n")),
    reply_nonprintable => c(&["-v"]).resp(
        r().on_raw(Verb::Rcpt, b"550 a\x01b\tc\xe9d\r\n")),
    reply_nonprintable_a => c(&["-A", "-v"]).resp(
        r().on_raw(Verb::Mail, b"450 \x1b[31mred\x7f\r\n")),
    reply_extra_line => c(&["-v"]).resp(
        r().on_raw(Verb::Banner, b"220 a\r\n250 extra\r\n")),
    reply_long_line =>
        with(&[], Verb::Rcpt, &format!("550 {}", "x".repeat(20000))),
    // A line cut at the limit right after a CR keeps it ('?'), even when
    // only another CR was cut; when the CR is the limit's last byte and
    // LF follows, it is stripped as usual.
    reply_cut_after_cr => with(&["-v"], Verb::Rcpt,
        &format!("550 {}\ryy", "x".repeat(10235))),
    reply_cut_between_crs => with(&["-v"], Verb::Rcpt,
        &format!("550 {}\r", "x".repeat(10235))),
    reply_cr_at_limit => with(&["-v"], Verb::Rcpt,
        &format!("550 {}", "x".repeat(10235))),
    reply_long_multiline => c(&[]).resp(on(Verb::Rcpt, &format!(
        "250-{}\r\n250-{}\r\n250-{}\r\n550 end",
        "a".repeat(6000), "b".repeat(6000), "c".repeat(6000)))),
    reply_long_first_line => c(&[]).resp(on(Verb::Rcpt, &format!(
        "550-{}\r\n550 second line", "a".repeat(20000)))),
    reply_slow_trickle => c(&[]).resp(r().on_steps(Verb::Helo, vec![
        Step::Trickle {
            bytes: b"250 slow\r\n".to_vec(),
            every: Duration::from_millis(5),
        },
    ])),
    quit_500 => with(&[], Verb::Quit, "500 5.5.2 what"),
    // The server goes away.
    close_at_banner => c(&[]).resp(r().close_at(Verb::Banner)),
    // An RST right at accept() can reach the reference before its connect
    // completes ("fatal: connect: Connection reset by peer"): wait first.
    reset_at_banner => c(&[]).resp(r().on_steps(
        Verb::Banner,
        vec![Step::sleep_ms(100), Step::Reset],
    )),
    close_after_banner => c(&[]).resp(r().close_after(Verb::Banner)),
    close_after_helo => c(&[]).resp(r().close_at(Verb::Helo)),
    close_after_lhlo => c(&["-L"]).resp(r().lmtp().close_at(Verb::Lhlo)),
    close_after_mail => c(&[]).resp(r().close_at(Verb::Mail)),
    reset_after_mail => c(&[]).resp(r().reset_at(Verb::Mail)),
    close_after_rcpt => c(&[]).resp(r().close_at(Verb::Rcpt)),
    close_after_data => c(&[]).resp(r().close_at(Verb::Data)),
    close_after_354 => c(&[]).resp(r().close_after(Verb::Data)),
    close_after_dot => c(&[]).resp(r().close_at(Verb::Dot)),
    close_idle_reuse => c(&["-d", "-m", "2"]).resp(r().close_after(Verb::Dot)),
    close_after_partial_reply => c(&[]).resp(r().on_steps(Verb::Mail,
        vec![Step::raw("250-partial\r\n"), Step::Close])),
    script_happy => c(&[]).script(Script::every(
        crate::support::fake_server::happy_script(Some("HELO")))),
    // Connecting.
    refused => c(&[]).refused(),
    refused_c1 => c(&["-C", "1"]).refused(),
    refused_retry_3 => c(&["-C", "3"]).refused(),
    refused_retry_3_m2 => c(&["-C", "3", "-m", "2"]).refused(),
    unix => c(&[]).unix(),
    unix_lmtp => c(&["-L", "-r", "2"]).resp(r().lmtp()).unix(),
    unix_missing => ep(&[], "unix:/nonexistent-smtp-source-test/s.sock"),
    unix_window => c(&["-T", "4096"]).unix(),
    window_4096 => c(&["-T", "4096"]),
    window_4096_big => c(&["-T", "4096", "-l", "300000"]),
    inet_prefix => c(&["inet:@EP"]),
    bracketed => c(&["[127.0.0.1]:@PORT"]),
    localhost => c(&["localhost:@PORT"]),
    double_dash => c(&["--", "@EP"]),
    family_4 => c(&["-4"]),
    wait_1_m2 => c(&["-w", "1", "-m", "2"]).wire_only(),
    // Usage and configuration errors.
    usage_no_operand => c(&[]).no_server(),
    usage_two_operands => c(&["@EP", "@EP"]),
    usage_option_after_operand => c(&["@EP", "-m", "2"]),
    usage_unknown_option => c(&["-x"]),
    usage_missing_argument => c(&["-m"]).no_server(),
    usage_dash_operand => c(&["-", "@EP"]),
    bad_messages_0 => c(&["-m", "0"]),
    bad_messages_abc => c(&["-m", "abc"]),
    bad_messages_negative => c(&["-m", "-1"]),
    bad_sessions_0 => c(&["-s", "0"]),
    bad_length_negative => c(&["-l", "-5"]),
    bad_recipients_0 => c(&["-r", "0"]),
    bad_connections_0 => c(&["-C", "0"]),
    bad_window_0 => c(&["-T", "0"]),
    bad_random_delay_0 => c(&["-R", "0"]),
    bad_fixed_delay_0 => c(&["-w", "0"]),
    wait_with_random => c(&["-w", "1", "-R", "1"]),
    random_with_wait => c(&["-R", "1", "-w", "1"]),
    length_with_file => file_after(&["-l", "10"], "lf.txt"),
    file_with_length => file("lf.txt", &["-l", "10"]),
    file_missing => c(&["-F", "/nonexistent/smtp-source-test"]),
    file_missing_before_endpoint =>
        ep(&["-F", "/nonexistent/smtp-source-test"], "bad_host!:25"),
    helo_bad_char => c(&["-M", "bad_name!"]),
    helo_bad_hyphen => c(&["-M", "-bad"]),
    helo_numeric => c(&["-M", "1234"]),
    helo_ip_not_literal => c(&["-M", "127.0.0.1"]),
    helo_empty => c(&["-M", ""]),
    literal_octets => c(&["-M", "[1.2.3]"]),
    literal_trailing => c(&["-M", "[1.2.3.4]x"]),
    literal_unclosed => c(&["-M", "[1.2.3.4"]),
    endpoint_missing_bracket => ep(&[], "[127.0.0.1"),
    endpoint_garbage_after_bracket => ep(&[], "[127.0.0.1]x"),
    endpoint_garbage_port => ep(&[], "127.0.0.1:12ab"),
    endpoint_hex_port => ep(&[], "127.0.0.1:0x19"),
    endpoint_missing_host => ep(&[], ":25"),
    endpoint_bare_v6 => ep(&[], "::1"),
    endpoint_empty_brackets => ep(&[], "[]:25"),
    endpoint_inet_twice => ep(&[], "inet:inet:127.0.0.1:1"),
    endpoint_bad_host => ep(&[], "bad_host!:25"),
    endpoint_bad_service => ep(&[], "127.0.0.1:nosuchservice"),
    endpoint_wrong_family_6 => ep(&["-6"], "127.0.0.1:1"),
    endpoint_wrong_family_4 => ep(&["-4"], "[::1]:1"),
}

// ---------------------------------------------------------------------------
// Running and comparing

/// What one implementation did in one case.
pub struct Observation {
    pub out: Outcome,
    pub wire: Option<Transcript>,
}

/// Run `prog` on `case` against a fresh server.
fn observe(prog: &Program, case: &Case) -> Observation {
    let server = match &case.target {
        Target::Server(listen, behavior) => Some(FakeServer::start(
            behavior.clone(),
            Options {
                listen: *listen,
                watchdog: RUN_LIMIT + Duration::from_secs(5),
            },
        )),
        _ => None,
    };
    let refusing =
        matches!(case.target, Target::Refused).then(RefusingPort::new);
    let endpoint = match (&server, &refusing) {
        (Some(s), _) => Some(s.endpoint()),
        (None, Some(p)) => Some(p.endpoint()),
        _ => None,
    };
    let port = server.as_ref().and_then(FakeServer::port);
    let mut args = Vec::new();
    let mut placed = false;
    for a in &case.args {
        let mut a = a.clone();
        if let Some(ep) = &endpoint {
            placed |= a.contains("@EP");
            a = a.replace("@EP", ep);
        }
        if let Some(p) = port {
            placed |= a.contains("@PORT");
            a = a.replace("@PORT", &p.to_string());
        }
        args.push(a);
    }
    if let (false, Some(ep)) = (placed, &endpoint) {
        args.push(ep.clone());
    }
    let out = prog.cmd().args(&args).timeout(RUN_LIMIT).run_unchecked();
    let wire = server.map(FakeServer::finish);
    drop(refusing);
    Observation { out, wire }
}

/// Run the reference and ours concurrently on `case`.
fn observe_pair(
    reference: &Program,
    ours: &Program,
    case: &Case,
) -> (Observation, Observation) {
    let (r, c) = (reference.clone(), case.clone());
    let h = spawn("diff-reference", move || observe(&r, &c));
    let mine = observe(ours, case);
    let theirs = match h.join() {
        Ok(o) => o,
        Err(p) => panic::resume_unwind(p),
    };
    (theirs, mine)
}

/// The comparable form of one connection: masked client bytes and end.
fn conn_views(t: Option<&Transcript>, all: bool) -> Vec<(Vec<u8>, End)> {
    let Some(t) = t else { return Vec::new() };
    t.conns
        .iter()
        .map(|c| {
            let m = if all { mask_all(&c.raw) } else { mask(&c.raw) };
            (m, c.end.clone())
        })
        .collect()
}

fn sorted_lines(b: &[u8]) -> Vec<u8> {
    let mut v: Vec<&[u8]> = b.split_inclusive(|&x| x == b'\n').collect();
    v.sort();
    v.concat()
}

/// Compare what the reference did with what ours did. Err lists every
/// difference, with diffs, then both full observations.
pub fn compare(
    case: &Case,
    r: &Observation,
    o: &Observation,
) -> Result<(), String> {
    let mut bad = String::new();
    for (who, x) in [("reference", r), ("ours", o)] {
        if x.out.timed_out {
            let _ = writeln!(bad, "{who} hit the time limit and was killed");
        }
    }
    if !case.wire_only {
        if r.out.status != o.out.status || r.out.signal != o.out.signal {
            let _ = writeln!(
                bad,
                "exit status: reference {:?}/{:?}, ours {:?}/{:?}",
                r.out.status, r.out.signal, o.out.status, o.out.signal
            );
        }
        if let Some(d) = diff(&r.out.stdout, &o.out.stdout) {
            let _ =
                writeln!(bad, "stdout differs (- reference, + ours):\n{d}");
        }
        let (mut re, mut oe): (Vec<u8>, Vec<u8>) =
            (filter_verbose(&r.out.stderr), filter_verbose(&o.out.stderr));
        if case.unordered {
            (re, oe) = (sorted_lines(&re), sorted_lines(&oe));
        }
        if let Some(d) = diff(&re, &oe) {
            let _ =
                writeln!(bad, "stderr differs (- reference, + ours):\n{d}");
        }
    }
    let mut rv = conn_views(r.wire.as_ref(), case.unordered);
    let mut ov = conn_views(o.wire.as_ref(), case.unordered);
    if case.unordered {
        rv.sort();
        ov.sort();
    }
    if rv.len() != ov.len() {
        let _ = writeln!(
            bad,
            "connections: reference {}, ours {}",
            rv.len(),
            ov.len()
        );
    }
    let none = (Vec::new(), End::Stopped);
    for i in 0..rv.len().max(ov.len()) {
        let (a, b) = (rv.get(i), ov.get(i));
        let (ab, bb) = (a.unwrap_or(&none), b.unwrap_or(&none));
        if let Some(d) = diff(&ab.0, &bb.0) {
            let _ = writeln!(
                bad,
                "client bytes on connection {i} differ \
                 (- reference, + ours):\n{d}"
            );
        }
        if let (Some(a), Some(b)) = (a, b) {
            if a.1 != b.1 {
                let _ = writeln!(
                    bad,
                    "connection {i} ended: reference {:?}, ours {:?}",
                    a.1, b.1
                );
            }
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let _ = writeln!(bad, "\n=== reference\n{}", render(r));
    let _ = writeln!(bad, "=== ours\n{}", render(o));
    Err(bad)
}

fn render(x: &Observation) -> String {
    let wire = x.wire.as_ref().map_or_else(
        || "(no server)\n".to_string(),
        |t| {
            if t.is_empty() {
                "(no connections)\n".into()
            } else {
                t.render()
            }
        },
    );
    format!(
        "{}\nstderr (filtered):\n{}{wire}",
        x.out.render(),
        escape_lines(&filter_verbose(&x.out.stderr))
    )
}

fn run_case(
    name: &str,
    reference: &Program,
    ours: &Program,
    case: &Case,
) -> Result<(), String> {
    let (r, o) = observe_pair(reference, ours, case);
    // SMTP_SOURCE_DIFF_DUMP=<dir>: keep what the reference did, per case,
    // for reviewing the cases themselves.
    if let Some(dir) = std::env::var_os("SMTP_SOURCE_DIFF_DUMP") {
        let path = std::path::Path::new(&dir).join(format!("{name}.txt"));
        let _ = std::fs::write(path, render(&r));
    }
    compare(case, &r, &o)
}

type Results = HashMap<&'static str, Result<(), String>>;

/// All cases, run once (in parallel) on first use; None without the
/// reference.
fn results() -> Option<&'static Results> {
    static RESULTS: OnceLock<Option<Results>> = OnceLock::new();
    RESULTS.get_or_init(run_all).as_ref()
}

fn run_all() -> Option<Results> {
    let reference = reference()?;
    let ours = ours();
    let queue = Mutex::new(table());
    let done = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for n in 0..PARALLEL {
            let (queue, done, reference, ours) =
                (&queue, &done, &reference, &ours);
            std::thread::Builder::new()
                .name(format!("diff-worker-{n}"))
                .spawn_scoped(s, move || loop {
                    let next =
                        queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some((name, case)) = next else { return };
                    let res = panic::catch_unwind(AssertUnwindSafe(|| {
                        run_case(name, reference, ours, &case)
                    }))
                    .unwrap_or_else(|p| Err(panic_text(&p)));
                    done.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name, res);
                })
                .expect("spawn differential worker");
        }
    });
    Some(done.into_inner().unwrap_or_else(|e| e.into_inner()))
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    let msg = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into());
    format!("harness panic: {msg}")
}

/// The body of every generated case test. Under cargo-nextest every test
/// is a process of its own, so each runs just its case; under cargo test
/// the whole table runs once, in parallel, on first use.
fn check(name: &str) {
    if std::env::var_os("NEXTEST").is_some() {
        return check_alone(name);
    }
    let Some(all) = results() else {
        let _ = reference_or_skip(&format!("differential::cases::{name}"));
        return;
    };
    match all.get(name) {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("differential case {name}:\n{e}"),
        None => panic!("differential case {name} did not run"),
    }
}

fn check_alone(name: &str) {
    let Some(reference) =
        reference_or_skip(&format!("differential::cases::{name}"))
    else {
        return;
    };
    let case = table().into_iter().find(|(n, _)| *n == name);
    let Some((_, case)) = case else {
        panic!("differential case {name} is not in the table");
    };
    if let Err(e) = run_case(name, &reference, &ours(), &case) {
        panic!("differential case {name}:\n{e}");
    }
}

// ---------------------------------------------------------------------------
// The comparison must notice real differences (reference vs. reference
// with one thing changed).

mod sensitivity {
    use super::*;

    /// Observe the reference on `a` and on `b`; their comparison (as if
    /// `a` were the reference and `b` ours) must fail and mention `what`.
    fn must_differ(a: &Case, b: &Case, what: &str) {
        let Some(r) = reference_or_skip("differential::sensitivity") else {
            return;
        };
        let (x, y) = observe_pair(&r, &r, a);
        compare(a, &x, &y).unwrap_or_else(|e| {
            panic!("the same case must compare equal:\n{e}")
        });
        let y = observe(&r, b);
        match compare(a, &x, &y) {
            Ok(()) => panic!("a changed case compared equal ({what})"),
            Err(e) => assert!(e.contains(what), "expected {what:?} in:\n{e}"),
        }
    }

    #[test]
    fn wire_rcpt_count() {
        must_differ(&c(&["-r", "1"]), &c(&["-r", "2"]), "client bytes");
    }

    #[test]
    fn wire_body_one_byte() {
        must_differ(&c(&["-l", "100"]), &c(&["-l", "101"]), "client bytes");
    }

    #[test]
    fn wire_message_id_counter() {
        // Same bytes except the Message-Id counter (0000 vs. fffffffe):
        // single-session cases keep the counter unmasked.
        must_differ(
            &c(&["-m", "1"]),
            &c(&["-m", "1", "-s", "3"]),
            "client bytes",
        );
    }

    #[test]
    fn connection_count() {
        must_differ(&c(&["-m", "2"]), &c(&["-m", "3"]), "connections:");
    }

    #[test]
    fn exit_status_and_stderr() {
        let r = on(Verb::Rcpt, "550 no");
        must_differ(
            &c(&[]).resp(r.clone()),
            &c(&["-A"]).resp(r),
            "exit status",
        );
    }

    #[test]
    fn stderr_text() {
        must_differ(
            &c(&[]).resp(on(Verb::Rcpt, "550 no")),
            &c(&[]).resp(on(Verb::Rcpt, "551 no")),
            "stderr differs",
        );
    }

    #[test]
    fn stdout_counter() {
        must_differ(&c(&["-c"]), &c(&[]), "stdout differs");
    }

    #[test]
    fn connection_end() {
        // TCP ends with RST after QUIT; a unix socket with EOF.
        let tcp = c(&[]);
        must_differ(&tcp, &tcp.clone().unix(), "ended");
    }

    #[test]
    fn mask_keeps_counter_and_shape() {
        let m = mask(b"Message-Id: <1a2b.0003.fffe@vm>\r\n");
        assert_eq!(m, b"Message-Id: <PID.FD.fffe@vm>\r\n");
        let m = mask_all(b"Message-Id: <1a2b.0003.fffe@vm>\r\n");
        assert_eq!(m, b"Message-Id: <PID.FD.CNT@vm>\r\n");
        let d = b"Date: Mon,  5 Jan 2026 03:04:05 +0000 (UTC)\r\n";
        assert_eq!(mask(d), b"Date: <DATE>\r\n");
        // Malformed values stay visible.
        for bad in [
            &b"Date: Mon, 5 Jan 2026 03:04:05 +0000 (UTC)\r\n"[..],
            b"Date: Mon,  5 Jan 2026 03:04:05 +0000\r\n",
            b"Message-Id: <1a2b.3.0001@vm>\r\n",
            b"Message-Id: <1A2B.0003.0001@vm>\r\n",
        ] {
            assert_eq!(mask(bad), bad);
        }
    }

    #[test]
    fn verbose_filter() {
        let e = b"smtp-source: name_mask: all\n\
smtp-source: fd=3: stream buffer size old=0 new=130964\n\
smtp-source: vstream_tweak_tcp: TCP_MAXSEG 32741\n\
smtp-source: event_loop: select_delay -1\n\
smtp-source: HELO vm\n\
smtp-source: <<< 250 fd=3: stream buffer size\n";
        assert_eq!(
            filter_verbose(e),
            b"smtp-source: HELO vm\n\
              smtp-source: <<< 250 fd=3: stream buffer size\n"
        );
    }
}

// ---------------------------------------------------------------------------
// Where we deliberately differ from 3.7.11 (man page NOTES X1-X15): no
// comparison with the reference, only our expected behaviour. These run
// our binary only (they fail when SMTP_SOURCE_UNDER_TEST is the
// reference, by design).

mod deliberate {
    use std::time::Duration;

    use crate::support::fake_server::{
        happy_script, FakeServer, Responder, Step, Verb,
    };
    use crate::support::{hostname, ours, Cmd, Outcome};

    const LIMIT: Duration = Duration::from_secs(6);

    fn cmd(args: &[&str], srv: &FakeServer) -> Cmd {
        ours().cmd().args(args).arg(srv.endpoint()).timeout(LIMIT)
    }

    fn run(args: &[&str], srv: &FakeServer) -> Outcome {
        cmd(args, srv).run()
    }

    /// The masked bytes of one default message on its own connection
    /// (HELO .. QUIT), with Message-Id counter `cnt`.
    fn default_conn(greeting: &str, cnt: &str) -> Vec<u8> {
        let h = hostname();
        let mut v = format!("{greeting} {h}\r\n").into_bytes();
        v.extend(default_txn(cnt));
        v.extend_from_slice(b"QUIT\r\n");
        v
    }

    /// MAIL .. "." of one default message (masked form).
    fn default_txn(cnt: &str) -> Vec<u8> {
        let h = hostname();
        format!(
            "MAIL FROM:<foo@{h}>\r\nRCPT TO:<foo@{h}>\r\nDATA\r\n\
             From: <foo@{h}>\r\nTo: <foo@{h}>\r\nDate: <DATE>\r\n\
             Message-Id: <PID.FD.{cnt}@{h}>\r\n\r\n\
             La de da de da 1.\r\nLa de da de da 2.\r\n\
             La de da de da 3.\r\nLa de da de da 4.\r\n.\r\n"
        )
        .into_bytes()
    }

    fn err(text: &str) -> String {
        format!("smtp-source: {text}\n")
    }

    // NOTES X1: every wait has a deadline (SMTP_SOURCE_TIMEOUT).

    #[test]
    fn x1_timeout_silent_greeting() {
        let srv = FakeServer::script(vec![Step::Stall]);
        let out = cmd(&[], &srv).stage_timeout(1).run();
        srv.finish();
        out.assert_status(1)
            .assert_stderr(&err(
                "fatal: timeout while reading server greeting",
            ))
            .assert_elapsed_below(Duration::from_secs(4));
    }

    #[test]
    fn x1_timeout_trickled_reply() {
        // One byte every 300 ms: each read() succeeds, the reply never
        // completes within the 1 s deadline.
        let srv = FakeServer::tcp(Responder::new().on_steps(
            Verb::Helo,
            vec![Step::Trickle {
                bytes: b"250 slow reply\r\n".to_vec(),
                every: Duration::from_millis(300),
            }],
        ));
        let out = cmd(&[], &srv).stage_timeout(1).run();
        srv.finish();
        out.assert_status(1)
            .assert_stderr(&err("fatal: timeout while sending HELO"))
            .assert_elapsed_below(Duration::from_secs(4));
    }

    #[test]
    fn x1_timeout_endless_continuation() {
        let srv = FakeServer::tcp(Responder::new().on_steps(
            Verb::Mail,
            vec![Step::Stream {
                line: b"250-more\r\n".to_vec(),
                every: Duration::from_millis(20),
            }],
        ));
        let out = cmd(&[], &srv).stage_timeout(1).run();
        srv.finish();
        out.assert_status(1)
            .assert_stderr(&err("fatal: timeout while sending sender"))
            .assert_elapsed_below(Duration::from_secs(4));
    }

    // NOTES X2: a reply line is not discarded without end.

    #[test]
    fn x2_endless_reply_line() {
        let srv = FakeServer::tcp(Responder::new().on_steps(
            Verb::Helo,
            vec![Step::Stream {
                line: vec![b'x'; 64 * 1024],
                every: Duration::from_millis(1),
            }],
        ));
        let out = cmd(&[], &srv).stage_timeout(5).run();
        srv.finish();
        out.assert_status(1)
            .assert_stderr(&err(
                "fatal: reply line too long while sending HELO",
            ))
            .assert_elapsed_below(Duration::from_secs(4));
    }

    #[test]
    fn x2_too_many_reply_lines() {
        let srv = FakeServer::tcp(Responder::new().on_steps(
            Verb::Helo,
            vec![Step::Stream {
                line: b"250-x\r\n".repeat(100),
                every: Duration::from_millis(1),
            }],
        ));
        let out = cmd(&[], &srv).stage_timeout(5).run();
        srv.finish();
        out.assert_status(1)
            .assert_elapsed_below(Duration::from_secs(4));
        assert!(
            out.stderr_text().starts_with("smtp-source: fatal: ")
                && out.stderr_text().contains("too long while sending HELO"),
            "{}",
            out.render()
        );
    }

    // NOTES X3: LMTP reads one end-of-data reply per *accepted* recipient.

    #[test]
    fn x3_lmtp_rejected_recipient() {
        let srv = FakeServer::tcp(Responder::new().lmtp().on_nth(
            Verb::Rcpt,
            0,
            "550 5.1.1 no",
        ));
        let out = run(&["-L", "-A", "-r", "2"], &srv);
        let tr = srv.finish();
        out.assert_status(0)
            .assert_stderr(&err("warning: recipient rejected: 550 5.1.1 no"));
        let h = hostname();
        let mut want = format!(
            "LHLO {h}\r\nMAIL FROM:<foo@{h}>\r\nRCPT TO:<2foo@{h}>\r\n\
             RCPT TO:<foo@{h}>\r\n"
        )
        .into_bytes();
        let txn = default_txn("0000");
        let data_at = txn.windows(6).position(|w| w == b"DATA\r\n").unwrap();
        want.extend_from_slice(&txn[data_at..]);
        want.extend_from_slice(b"QUIT\r\n");
        assert_eq!(tr.len(), 1, "{}", tr.render());
        tr.assert_client_sent(0, &want);
    }

    // NOTES X4: -A with 421 at the banner: warn, close without QUIT, next
    // message.

    #[test]
    fn x4_421_banner_with_a() {
        let srv = FakeServer::tcp(Responder::new().on_conn(
            0,
            Verb::Banner,
            vec![Step::send("421 4.3.2 busy")],
        ));
        let out = run(&["-A", "-m", "2"], &srv);
        let tr = srv.finish();
        out.assert_status(0).assert_stderr(&err(
            "warning: rejected at server banner: 421 4.3.2 busy",
        ));
        assert_eq!(tr.len(), 2, "{}", tr.render());
        tr.assert_client_sent(0, b"");
        tr.assert_client_sent(1, &default_conn("HELO", "0000"));
    }

    // NOTES X5: no reply to QUIT is not an error.

    #[test]
    fn x5_quit_without_reply_close() {
        let srv = FakeServer::tcp(Responder::new().close_at(Verb::Quit));
        let out = run(&[], &srv);
        let tr = srv.finish();
        out.assert_status(0).assert_stderr("");
        tr.assert_client_sent(0, &default_conn("HELO", "0000"));
    }

    #[test]
    fn x5_quit_without_reply_reset() {
        let srv = FakeServer::tcp(Responder::new().reset_at(Verb::Quit));
        let out = run(&["-m", "2"], &srv);
        let tr = srv.finish();
        out.assert_status(0).assert_stderr("");
        assert_eq!(tr.len(), 2, "{}", tr.render());
    }

    // NOTES X6: fatal errors exit at once.

    #[test]
    fn x6_fatal_exits_at_once() {
        let srv = FakeServer::tcp(Responder::new().on(Verb::Rcpt, "550 no"));
        let out = run(&[], &srv);
        srv.finish();
        out.assert_status(1)
            .assert_stderr(&err("fatal: recipient rejected: 550 no"))
            .assert_elapsed_below(Duration::from_millis(700));
        let out = ours().cmd().args(["-m", "0", "127.0.0.1"]).run();
        out.assert_status(1)
            .assert_stderr(&err("fatal: bad message count: 0"))
            .assert_elapsed_below(Duration::from_millis(700));
    }

    // NOTES X7: a write failure during DATA may add the server's reply.

    #[test]
    fn x7_write_failure_during_data() {
        let mut script = happy_script(Some("HELO"));
        script.truncate(9); // .. DATA, 354
        script.extend([
            Step::send("552 5.3.4 message too big"),
            Step::sleep_ms(50),
            Step::Reset,
        ]);
        let srv = FakeServer::script(script);
        let out = run(&["-l", "20000000"], &srv);
        srv.finish();
        out.assert_status(1);
        let e = out.stderr_text();
        let base = "smtp-source: fatal: lost connection while sending message";
        assert!(
            e == format!("{base}\n")
                || e == format!(
                    "{base} (server said: 552 5.3.4 message too big)\n"
                ),
            "{}",
            out.render()
        );
    }

    // NOTES X8: -d, nothing left after the delay: QUIT and close.

    #[test]
    fn x8_reuse_idle_session_quits() {
        let srv = FakeServer::responder();
        let out = run(&["-d", "-w", "1", "-s", "2", "-m", "3"], &srv);
        let tr = srv.finish();
        out.assert_status(0).assert_stderr("");
        assert_eq!(tr.len(), 2, "{}", tr.render());
        for c in &tr.conns {
            assert!(c.raw.ends_with(b"QUIT\r\n"), "{}", tr.render());
        }
        let msgs: usize = tr.conns.iter().map(|c| c.data.len()).sum();
        assert_eq!(msgs, 3, "{}", tr.render());
    }

    // NOTES X10: too few file descriptors for -s: fail before connecting.

    #[test]
    fn x10_fd_limit_checked_before_connect() {
        let srv = FakeServer::responder();
        let script = format!(
            "ulimit -n 64 && exec \"$0\" -s 300 -m 300 {}",
            srv.endpoint()
        );
        let out = ours().cmd().timeout(LIMIT).via_shell(&script).run();
        let tr = srv.finish();
        out.assert_status(1);
        assert!(tr.is_empty(), "connected anyway:\n{}", tr.render());
        assert!(out.stderr_text().contains("64"), "{}", out.render());
    }

    // NOTES X11: negative UTC offsets under one hour keep their sign.

    #[test]
    fn x11_date_negative_half_hour() {
        let srv = FakeServer::responder();
        let out = cmd(&[], &srv).env("TZ", "XXX+0:30").run();
        let tr = srv.finish();
        out.assert_status(0);
        let body = &tr.conn(0).data[0];
        let date = body
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"Date: "))
            .expect("a Date: header");
        assert!(
            date.ends_with(b" -0030 (XXX)\r"),
            "Date: {}",
            String::from_utf8_lossy(date)
        );
    }

    // NOTES X12: -v shows commands and replies, not Postfix internals.

    #[test]
    fn x12_verbose_lines() {
        let srv = FakeServer::responder();
        let out = run(&["-v"], &srv);
        srv.finish();
        let h = hostname();
        let want: String = [
            "<<< 220 fake.example ESMTP fake".to_string(),
            format!("HELO {h}"),
            "<<< 250 fake.example".into(),
            format!("MAIL FROM:<foo@{h}>"),
            "<<< 250 2.1.0 Ok".into(),
            format!("RCPT TO:<foo@{h}>"),
            "<<< 250 2.1.5 Ok".into(),
            "DATA".into(),
            "<<< 354 End data with <CR><LF>.<CR><LF>".into(),
            ".".into(),
            "<<< 250 2.0.0 Ok: queued".into(),
            "QUIT".into(),
            "<<< 221 2.0.0 Bye".into(),
        ]
        .iter()
        .map(|l| err(l))
        .collect();
        out.assert_status(0).assert_stderr(&want);
    }

    // NOTES X13: --help and --version.

    #[test]
    fn x13_help_and_version() {
        for flag in ["--help", "--version"] {
            let out = ours().cmd().arg(flag).timeout(LIMIT).run();
            out.assert_status(0).assert_stderr("");
            assert!(!out.stdout.is_empty(), "{}", out.render());
        }
    }

    // NOTES X15: a NUL in a reply is one more '?', not the end of the text.

    #[test]
    fn x15_nul_in_reply() {
        let srv = FakeServer::tcp(
            Responder::new().on_raw(Verb::Rcpt, b"550 a\0b\x01c\r\n"),
        );
        let out = run(&["-A"], &srv);
        let tr = srv.finish();
        out.assert_status(0)
            .assert_stderr(&err("warning: recipient rejected: 550 a?b?c"));
        let h = hostname();
        let want = format!(
            "HELO {h}\r\nMAIL FROM:<foo@{h}>\r\nRCPT TO:<foo@{h}>\r\n\
             RSET\r\nQUIT\r\n"
        );
        tr.assert_client_sent(0, want.as_bytes());
    }
}
