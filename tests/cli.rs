//! Command-line checks pinned to exact bytes: option values, conflicts,
//! operands, getopt's messages, the usage line, and the long options. No
//! reference binary needed. Every failing command line must exit 1 at
//! once (the reference sleeps 1 s first: man page NOTES X6), print
//! nothing on stdout, print exactly the expected stderr, and never
//! connect: where an endpoint is given it is a fresh fake server, which
//! must have accepted nothing.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use crate::support::fake_server::{FakeServer, Responder, Transcript};
use crate::support::{hostname, ours, usage_line, Cmd, TempDir, ARGV0};

const LIMIT: Duration = Duration::from_secs(8);

/// Fatal errors exit at once (man page NOTES X6).
const AT_ONCE: Duration = Duration::from_millis(500);

/// The command line for `args`: `@EP` becomes the server's endpoint and
/// `@PORT` its port.
fn expand(args: &[&str], srv: &FakeServer) -> Vec<String> {
    let ep = srv.endpoint();
    let port = srv.port().expect("tcp port").to_string();
    args.iter()
        .map(|a| a.replace("@EP", &ep).replace("@PORT", &port))
        .collect()
}

/// Run `cmd` with `args` (expanded against a fresh server) and assert a
/// fatal exit with exactly `stderr` and no connection.
fn fatal_with(cmd: Cmd, args: &[&str], stderr: &str) {
    let srv = FakeServer::responder();
    let out = cmd.args(expand(args, &srv)).timeout(LIMIT).run();
    let tr = srv.finish();
    out.assert_status(1)
        .assert_stdout(b"")
        .assert_stderr(stderr)
        .assert_elapsed_below(AT_ONCE);
    assert_eq!(tr.len(), 0, "no connection expected:\n{}", tr.render());
}

/// [`fatal_with`] for our binary run as `smtp-source`.
fn fatal(args: &[&str], stderr: &str) {
    fatal_with(ours().cmd(), args, stderr);
}

/// `smtp-source: fatal: <text>\n`.
fn f(text: &str) -> String {
    format!("{ARGV0}: fatal: {text}\n")
}

/// The usage fatal line for argv0 `smtp-source`.
fn usage() -> String {
    usage_line(ARGV0)
}

/// Run `args` (expanded) against a default responder; assert exit 0
/// with empty stdout and stderr, and return the transcript.
fn works(args: &[&str]) -> Transcript {
    let srv = FakeServer::responder();
    let out = ours().cmd().args(expand(args, &srv)).timeout(LIMIT).run();
    out.assert_status(0).assert_stdout(b"").assert_stderr("");
    let tr = srv.finish();
    tr.assert_no_errors();
    tr
}

fn raw_text(tr: &Transcript, i: usize) -> String {
    String::from_utf8_lossy(&tr.conn(i).raw).into_owned()
}

// ---------------------------------------------------------------------------
// Numeric values (read like C atoi, must be > 0; docs/reference-behaviour.md)

const NUMERIC: [(&str, &str); 8] = [
    ("-m", "bad message count"),
    ("-s", "bad session count"),
    ("-r", "bad recipient count"),
    ("-l", "bad message length"),
    ("-C", "bad connection count"),
    ("-T", "bad TCP window size"),
    ("-R", "bad random delay"),
    ("-w", "bad fixed delay"),
];

/// Values atoi turns into a count ≤ 0: zero, negative, junk, empty,
/// overflow (strtol clamps to LONG_MAX, which is -1 as an int).
const BAD_VALUES: [&str; 7] =
    ["0", "-1", "abc", "", "-0", "x3", "99999999999999999999"];

fn bad_values(opt: &str) {
    let (_, msg) = NUMERIC
        .iter()
        .find(|(o, _)| *o == opt)
        .expect("known option");
    for v in BAD_VALUES {
        fatal(&[opt, v, "@EP"], &f(&format!("{msg}: {v}")));
        // Attached form, same text (for non-empty values).
        if !v.is_empty() {
            let joined = format!("{opt}{v}");
            fatal(&[&joined, "@EP"], &f(&format!("{msg}: {v}")));
        }
    }
}

#[test]
fn bad_message_count() {
    bad_values("-m");
}

#[test]
fn bad_session_count() {
    bad_values("-s");
}

#[test]
fn bad_recipient_count() {
    bad_values("-r");
}

#[test]
fn bad_message_length() {
    bad_values("-l");
}

#[test]
fn bad_connection_count() {
    bad_values("-C");
}

#[test]
fn bad_window_size() {
    bad_values("-T");
}

#[test]
fn bad_random_delay() {
    bad_values("-R");
}

#[test]
fn bad_fixed_delay() {
    bad_values("-w");
}

#[test]
fn sessions_attached_and_separate_both_work() {
    for args in [&["-s5", "@EP"][..], &["-s", "5", "@EP"][..]] {
        let tr = works(args);
        // -m 1: the other four sessions end without connecting.
        assert_eq!(tr.len(), 1, "{args:?}:\n{}", tr.render());
    }
}

#[test]
fn messages_trailing_garbage_is_ignored() {
    assert_eq!(works(&["-m", "3x", "@EP"]).len(), 3);
    assert_eq!(works(&["-m3x", "@EP"]).len(), 3);
}

#[test]
fn messages_leading_blank_and_plus_sign() {
    assert_eq!(works(&["-m", " 2", "@EP"]).len(), 2);
    assert_eq!(works(&["-m", "+2", "@EP"]).len(), 2);
}

#[test]
fn messages_atoi_truncates_to_int() {
    // glibc atoi is (int)strtol: 4294967297 = 2^32 + 1 becomes 1.
    assert_eq!(works(&["-m", "4294967297", "@EP"]).len(), 1);
}

#[test]
fn recipients_trailing_garbage_is_ignored() {
    let tr = works(&["-r", "3x", "@EP"]);
    let h = hostname();
    let raw = raw_text(&tr, 0);
    assert!(
        raw.contains(&format!(
            "RCPT TO:<3foo@{h}>\r\nRCPT TO:<2foo@{h}>\r\nRCPT TO:<foo@{h}>\r\n"
        )),
        "{raw}"
    );
}

#[test]
fn length_trailing_garbage_is_ignored() {
    let tr = works(&["-o", "-l", "3x", "@EP"]);
    assert_eq!(tr.conn(0).data, [b"XXX\r\n".to_vec()]);
}

#[test]
fn connections_window_trailing_garbage_is_ignored() {
    assert_eq!(works(&["-C", "3x", "@EP"]).len(), 1);
    assert_eq!(works(&["-T", "4096x", "@EP"]).len(), 1);
}

#[test]
fn delays_trailing_garbage_is_ignored() {
    let srv = FakeServer::responder();
    let out = ours()
        .cmd()
        .args(expand(&["-w", "1x", "@EP"], &srv))
        .timeout(LIMIT)
        .run();
    out.assert_status(0).assert_stdout(b"").assert_stderr("");
    assert!(
        out.elapsed >= Duration::from_millis(950),
        "{}",
        out.render()
    );
    assert_eq!(srv.finish().len(), 1);
    assert_eq!(works(&["-R", "1x", "@EP"]).len(), 1);
}

// ---------------------------------------------------------------------------
// Conflicts

#[test]
fn length_with_file_either_order() {
    let dir = TempDir::new("cli-lf");
    let p = dir.path().join("msg");
    std::fs::write(&p, b"Subject: x\n\nbody\n").expect("write");
    let p = p.to_string_lossy().into_owned();
    let msg = f("-l option cannot be used with -F");
    fatal(&["-l", "10", "-F", &p, "@EP"], &msg);
    fatal(&["-F", &p, "-l", "10", "@EP"], &msg);
}

#[test]
fn wait_with_random_either_order() {
    let msg = f("do not use -w and -R options at the same time");
    fatal(&["-w", "1", "-R", "1", "@EP"], &msg);
    fatal(&["-R", "1", "-w", "1", "@EP"], &msg);
}

#[test]
fn wait_random_conflict_checked_before_value() {
    fatal(
        &["-w", "1", "-R", "0", "@EP"],
        &f("do not use -w and -R options at the same time"),
    );
    fatal(&["-R", "0", "-w", "1", "@EP"], &f("bad random delay: 0"));
    fatal(
        &["-R", "1", "-w", "0", "@EP"],
        &f("do not use -w and -R options at the same time"),
    );
    fatal(&["-w", "0", "-R", "1", "@EP"], &f("bad fixed delay: 0"));
}

// ---------------------------------------------------------------------------
// Operands and getopt

#[test]
fn missing_operand() {
    fatal(&[], &usage());
    fatal(&["-m", "2"], &usage());
}

#[test]
fn two_operands() {
    fatal(&["@EP", "@EP"], &usage());
}

#[test]
fn option_after_operand() {
    fatal(&["@EP", "-m", "2"], &usage());
}

#[test]
fn unknown_option() {
    fatal(
        &["-x", "@EP"],
        &format!("{ARGV0}: invalid option -- 'x'\n{}", usage()),
    );
}

#[test]
fn missing_argument() {
    fatal(
        &["-m"],
        &format!("{ARGV0}: option requires an argument -- 'm'\n{}", usage()),
    );
}

#[test]
fn option_argument_may_look_like_an_option() {
    // "-f -m": -m is -f's argument, not an option.
    let tr = works(&["-f", "-m", "@EP"]);
    assert!(raw_text(&tr, 0).contains("MAIL FROM:<-m>\r\n"));
}

#[test]
fn double_dash_ends_options() {
    assert_eq!(works(&["-m", "2", "--", "@EP"]).len(), 2);
    fatal(&["--", "-m", "2", "@EP"], &usage());
}

#[test]
fn dash_is_an_operand() {
    fatal(&["-", "@EP"], &usage());
}

#[test]
fn errors_in_argv_order() {
    fatal(&["-m", "0", "-x", "@EP"], &f("bad message count: 0"));
    fatal(
        &["-x", "-m", "0", "@EP"],
        &format!("{ARGV0}: invalid option -- 'x'\n{}", usage()),
    );
    fatal(&["-s", "0", "-m", "0", "@EP"], &f("bad session count: 0"));
}

#[test]
fn usage_text_exact() {
    assert_eq!(
        usage(),
        "smtp-source: fatal: usage: smtp-source -cdLNov -s sess -l msglen \
         -m msgs -C count -M myhostname -f from -t to -r rcptcount \
         -R delay -w delay host[:port]\n"
    );
    fatal(&[], &usage());
}

#[test]
fn argv0_used_verbatim() {
    let a0 = "./ss-copy";
    let cmd = || ours().cmd().argv0(Some(a0));
    fatal_with(
        cmd(),
        &["-m", "0", "@EP"],
        "./ss-copy: fatal: bad message count: 0\n",
    );
    fatal_with(cmd(), &[], &usage_line(a0));
    fatal_with(
        cmd(),
        &["-x", "@EP"],
        &format!("./ss-copy: invalid option -- 'x'\n{}", usage_line(a0)),
    );
    let long = "/some/where/smtp-source";
    fatal_with(
        ours().cmd().argv0(Some(long)),
        &["-r", "0", "@EP"],
        "/some/where/smtp-source: fatal: bad recipient count: 0\n",
    );
}

// ---------------------------------------------------------------------------
// -M

#[test]
fn bad_myhostname_values() {
    let cases: [(&str, &str, &str); 8] = [
        (
            "bad_name!",
            "valid_hostname: invalid character 33(decimal): bad_name!",
            "bad hostname: bad_name!",
        ),
        (
            "-bad",
            "valid_hostname: misplaced hyphen: -bad",
            "bad hostname: -bad",
        ),
        (
            "1234",
            "valid_hostname: numeric hostname: 1234",
            "bad hostname: 1234",
        ),
        (
            "127.0.0.1",
            "valid_hostname: numeric hostname: 127.0.0.1",
            "bad hostname: 127.0.0.1",
        ),
        ("", "valid_hostname: empty hostname", "bad hostname: "),
        (
            "[1.2.3]",
            "valid_ipv4_hostaddr: invalid octet count: 1.2.3",
            "bad address literal: [1.2.3]",
        ),
        (
            "[1.2.3.4]x",
            "valid_mailhost_literal: unexpected text after ']': [1.2.3.4]x",
            "bad address literal: [1.2.3.4]x",
        ),
        (
            "[1.2.3.4",
            "valid_mailhost_literal: ']' expected at end: [1.2.3.4",
            "bad address literal: [1.2.3.4",
        ),
    ];
    for (value, warning, fatal_text) in cases {
        fatal(
            &["-M", value, "@EP"],
            &format!("{ARGV0}: warning: {warning}\n{}", f(fatal_text)),
        );
    }
}

// ---------------------------------------------------------------------------
// -F

#[test]
fn file_missing() {
    let p = "/nonexistent-smtp-source-test/msg";
    fatal(
        &["-F", p, "@EP"],
        &f(&format!("open {p}: No such file or directory")),
    );
}

#[test]
fn file_missing_reported_before_bad_endpoint() {
    let p = "/nonexistent-smtp-source-test/msg";
    fatal(
        &["-F", p, "bad_host!:@PORT"],
        &f(&format!("open {p}: No such file or directory")),
    );
}

// ---------------------------------------------------------------------------
// Endpoint syntax

#[test]
fn endpoint_syntax_errors() {
    let cases: [(&str, &str); 10] = [
        ("[127.0.0.1", "[127.0.0.1: missing \"]\""),
        ("[127.0.0.1]x", "[127.0.0.1]x: garbage after \"]\""),
        (
            "[127.0.0.1]x:@PORT",
            "[127.0.0.1]x:@PORT: garbage after \"]\"",
        ),
        (
            "127.0.0.1:@PORTab",
            "127.0.0.1:@PORTab: garbage after numerical service",
        ),
        (
            "127.0.0.1:0x19",
            "127.0.0.1:0x19: garbage after numerical service",
        ),
        (":@PORT", ":@PORT: missing host information"),
        (
            "bad_host!:@PORT",
            "bad_host!:@PORT: valid hostname or network address required",
        ),
        ("::1", "::1: valid hostname or network address required"),
        (
            "[]:@PORT",
            "[]:@PORT: valid hostname or network address required",
        ),
        (
            "inet:inet:127.0.0.1:@PORT",
            "inet:127.0.0.1:@PORT: valid hostname or network address \
             required",
        ),
    ];
    for (operand, text) in cases {
        let srv = FakeServer::responder();
        let port = srv.port().expect("port").to_string();
        let operand = operand.replace("@PORT", &port);
        let want = f(&text.replace("@PORT", &port));
        let out = ours().cmd().arg(&operand).timeout(LIMIT).run();
        let tr = srv.finish();
        out.assert_status(1)
            .assert_stdout(b"")
            .assert_stderr(&want)
            .assert_elapsed_below(AT_ONCE);
        assert_eq!(tr.len(), 0, "{operand}: no connection expected");
    }
}

#[test]
fn unix_path_too_long() {
    // sun_path holds 108 bytes including the NUL: 108 is too long.
    let path = format!("/nonexistent-smtp-source/{}", "a".repeat(83));
    assert_eq!(path.len(), 108);
    fatal(
        &[&format!("unix:{path}")],
        &f(&format!("unix-domain name too long: {path}")),
    );
    // 107 fits, and fails at connect() instead.
    let path = &path[..107];
    fatal(
        &[&format!("unix:{path}")],
        &f("connect: No such file or directory"),
    );
}

// ---------------------------------------------------------------------------
// Long options (man page NOTES X1, X13)

#[test]
fn help_prints_to_stdout_and_succeeds() {
    let out = ours().cmd().arg("--help").timeout(LIMIT).run();
    out.assert_status(0).assert_stderr("");
    let text = out.stdout_text();
    assert!(
        text.starts_with("usage: smtp-source -cdLNov "),
        "{}",
        out.render()
    );
    assert!(text.contains("--timeout"), "{}", out.render());
    assert!(text.ends_with('\n'), "{}", out.render());
}

// The whole --help text, byte for byte: it is generated from the long
// option table, and a change to the table must not change it unnoticed.
#[test]
fn help_text_is_exactly_the_documented_one() {
    let out = ours().cmd().arg("--help").timeout(LIMIT).run();
    out.assert_status(0).assert_stderr("");
    let want = include_str!("data/help.txt");
    assert!(out.stdout_text() == want, "{}", out.render());
}

#[test]
fn version_prints_to_stdout_and_succeeds() {
    let out = ours().cmd().arg("--version").timeout(LIMIT).run();
    out.assert_status(0).assert_stderr("");
    let text = out.stdout_text();
    assert!(text.starts_with("smtp-source "), "{}", out.render());
    assert!(text.ends_with('\n'), "{}", out.render());
}

#[test]
fn unknown_long_option_is_named() {
    fatal(
        &["--reprot", "@EP"],
        &format!("{ARGV0}: unknown option --reprot\n{}", usage()),
    );
}

#[test]
fn bad_timeout_option_is_fatal() {
    fatal(&["--timeout=0", "@EP"], &f("bad --timeout value: 0"));
    fatal(&["--timeout=abc", "@EP"], &f("bad --timeout value: abc"));
}

#[test]
fn bad_timeout_environment_is_fatal() {
    fatal_with(
        ours().cmd().env("SMTP_SOURCE_TIMEOUT", "abc"),
        &["@EP"],
        &f("bad SMTP_SOURCE_TIMEOUT value: abc"),
    );
}

// ---------------------------------------------------------------------------
// Bytes pass through verbatim

#[test]
fn non_utf8_sender_sent_verbatim() {
    let srv = FakeServer::tcp(Responder::new());
    let from = OsString::from_vec(b"\xff\xfe\x80@x.example".to_vec());
    let out = ours()
        .cmd()
        .args(["-o", "-f"])
        .arg(from)
        .arg(srv.endpoint())
        .timeout(LIMIT)
        .run();
    out.assert_status(0).assert_stdout(b"").assert_stderr("");
    let tr = srv.finish();
    let h = hostname();
    let mut want = b"MAIL FROM:<\xff\xfe\x80@x.example>\r\n".to_vec();
    want.extend_from_slice(
        format!(
            "RCPT TO:<foo@{h}>\r\nDATA\r\n\
             La de da de da 1.\r\nLa de da de da 2.\r\n\
             La de da de da 3.\r\nLa de da de da 4.\r\n.\r\nQUIT\r\n"
        )
        .as_bytes(),
    );
    tr.assert_client_sent(0, &want);
}

#[test]
fn non_utf8_sender_in_from_header() {
    let srv = FakeServer::tcp(Responder::new());
    let from = OsString::from_vec(b"caf\xe9@x".to_vec());
    let out = ours()
        .cmd()
        .arg("-f")
        .arg(from)
        .arg(srv.endpoint())
        .timeout(LIMIT)
        .run();
    out.assert_status(0).assert_stdout(b"").assert_stderr("");
    let tr = srv.finish();
    let raw = &tr.conn(0).raw;
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"MAIL FROM:<caf\xe9@x>\r\n"), "{}", tr.render());
    assert!(has(b"\r\nFrom: <caf\xe9@x>\r\n"), "{}", tr.render());
}
