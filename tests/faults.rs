//! Faults: one test per thing that can go wrong (a refused or silent
//! peer, broken reply syntax, protocol surprises, local resources),
//! numbered `f01`-`f43`, plus `x9` and `x14`. Where we deliberately
//! differ from the reference (the man page's NOTES, entries X1-X15; "NOTES
//! X2" below means entry X2 there), our behaviour is what is asserted,
//! e.g. the 1 MiB discard bound of NOTES X2.
//!
//! Every run uses `SMTP_SOURCE_TIMEOUT=1` (the stage timeout T) and a hard
//! kill limit, and each test asserts the exit status, the exact stderr and
//! an upper bound on the elapsed time (a lower bound too where the client
//! must wait for T). The tests are independent and run in parallel.
//! The load faults (many sessions, many connections) live in
//! `tests/load.rs`.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fake_server::{
    happy_script, FakeServer, Responder, Step, Transcript, Verb,
};
use crate::support::{
    normalize_argv0, ours, program, skip, Cmd, Outcome, RefusingPort, TempDir,
};

/// Hard kill limit of one run: far above T = 1 s, far below the harness.
const LIMIT: Duration = Duration::from_secs(8);

/// The latest a run that waits for T (1 s) may end.
const T_MAX: Duration = Duration::from_secs(3);

/// The earliest a run that must wait for T may end (T - 10%).
const T_MIN: Duration = Duration::from_millis(900);

/// The latest a run that never waits may end.
const QUICK: Duration = Duration::from_millis(2500);

// ---------------------------------------------------------------------------
// Helpers

/// Our binary with T = 1 s and the hard limit.
fn cmd(args: &[&str]) -> Cmd {
    ours().cmd().args(args).stage_timeout(1).timeout(LIMIT)
}

/// Run against `srv` (its endpoint is the last argument).
fn run(srv: &FakeServer, args: &[&str]) -> Outcome {
    cmd(args).arg(srv.endpoint()).run()
}

/// A responder server, run with `args`, and its transcript.
fn run_resp(r: Responder, args: &[&str]) -> (Outcome, Transcript) {
    let srv = FakeServer::tcp(r);
    let out = run(&srv, args);
    (out, srv.finish())
}

/// A script server (the same steps on every connection), run with
/// `args`, and its transcript.
fn run_script(steps: Vec<Step>, args: &[&str]) -> (Outcome, Transcript) {
    let srv = FakeServer::script(steps);
    let out = run(&srv, args);
    (out, srv.finish())
}

fn fatal(text: &str) -> String {
    format!("smtp-source: fatal: {text}\n")
}

fn warning(text: &str) -> String {
    format!("smtp-source: warning: {text}\n")
}

/// Exit 1 with exactly this fatal text, within `limit`.
fn assert_fatal(out: &Outcome, text: &str, limit: Duration) {
    out.assert_status(1)
        .assert_stderr(&fatal(text))
        .assert_elapsed_below(limit);
}

/// Exit 1 with this fatal text, after waiting for T (and not much more).
fn assert_fatal_at_t(out: &Outcome, text: &str) {
    assert_fatal(out, text, T_MAX);
    assert_waited(out);
}

fn assert_waited(out: &Outcome) {
    assert!(
        out.elapsed >= T_MIN,
        "expected to wait for T (1 s)\n{}",
        out.render()
    );
}

/// Exit 0, nothing on stderr, quickly.
fn assert_clean(out: &Outcome) {
    out.assert_status(0)
        .assert_stderr("")
        .assert_elapsed_below(QUICK);
}

/// The verbs the client sent on connection `i` ("." for end of data).
fn verbs(tr: &Transcript, i: usize) -> Vec<String> {
    tr.conn(i)
        .commands()
        .iter()
        .map(|l| l.split([' ', ':']).next().unwrap_or("").to_string())
        .collect()
}

fn assert_verbs(tr: &Transcript, i: usize, want: &[&str]) {
    assert_eq!(verbs(tr, i), want, "connection {i}:\n{}", tr.render());
}

const HAPPY: &[&str] = &["HELO", "MAIL", "RCPT", "DATA", ".", "QUIT"];

/// The happy script up to and including the 354 reply to DATA.
fn script_to_354() -> Vec<Step> {
    let mut s = happy_script(Some("HELO"));
    s.truncate(9);
    assert_eq!(s[8], Step::send("354 End data with <CR><LF>.<CR><LF>"));
    s
}

/// A stderr with the real binary path as argv[0], as `smtp-source: ...`.
fn stderr_as_argv0(out: &Outcome, path: &Path) -> String {
    let from = path.to_string_lossy();
    String::from_utf8_lossy(&normalize_argv0(
        &out.stderr,
        &from,
        "smtp-source",
    ))
    .into_owned()
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// A copy of our binary that user `nobody` can run: mode 0755 in a 0755
/// directory (the build tree may not be reachable for other users).
struct NobodyCopy {
    _dir: TempDir,
    bin: PathBuf,
}

impl NobodyCopy {
    fn new(tag: &str) -> NobodyCopy {
        let dir = TempDir::new(tag);
        let bin = dir.path().join("smtp-source");
        fs::copy(&ours().path, &bin).expect("copy binary");
        for p in [dir.path(), bin.as_path()] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755))
                .expect("chmod 0755");
        }
        NobodyCopy { _dir: dir, bin }
    }

    /// `runuser -u nobody -- /bin/sh -c SCRIPT BIN`: inside the script
    /// `$0` is the binary.
    fn run(&self, script: &str) -> Outcome {
        let mut p = program("/usr/sbin/runuser".into(), "ours");
        p.env.clear();
        p.cmd()
            .argv0(None)
            .stage_timeout(1)
            .timeout(LIMIT)
            .args(["-u", "nobody", "--", "/bin/sh", "-c", script])
            .arg(&self.bin)
            .run()
    }
}

/// `runuser` is usable: we are root and the tool is there.
fn can_run_as_nobody(test: &str) -> bool {
    let ok = is_root() && Path::new("/usr/sbin/runuser").exists();
    if !ok {
        skip(test, "needs root and /usr/sbin/runuser (util-linux)");
    }
    ok
}

// ---------------------------------------------------------------------------
// Connecting and the endpoint

// With -C n: n-1 warnings, then the fatal connect error.
#[test]
fn f01_connection_refused() {
    let port = RefusingPort::new();
    let out = cmd(&["-C", "3"]).arg(port.endpoint()).run();
    let w = warning("connect: Connection refused");
    out.assert_status(1)
        .assert_stderr(&format!(
            "{w}{w}{}",
            fatal("connect: Connection refused")
        ))
        .assert_elapsed_below(QUICK);
}

/// A listener with backlog 0 that never accepts, its accept queue filled
/// by dummy connections so that further SYNs are dropped (Linux default
/// `tcp_abort_on_overflow=0`). None if no SYN was dropped.
pub(crate) fn full_listener(
) -> Option<(socket2::Socket, Vec<TcpStream>, SocketAddr)> {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    l.bind(&any.into()).expect("bind");
    l.listen(0).expect("listen(0)");
    let addr = l
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("local address");
    let mut fill = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Some((l, fill, addr));
            }
            Err(e) => panic!("dummy connect to {addr}: {e}"),
        }
    }
    None
}

// A dropped SYN must not leave connect() to the kernel's
// ~127 s of SYN retries: the connect ends at T.
#[test]
fn f02_syn_dropped_connect_times_out() {
    let Some((_l, _fill, addr)) = full_listener() else {
        skip(
            "faults::f02_syn_dropped_connect_times_out",
            "the listen queue never dropped a SYN",
        );
        return;
    };
    let out = cmd(&[]).arg(addr.to_string()).run();
    assert_fatal_at_t(&out, "connect: Connection timed out");
}

// Sessions connect independently (NOTES X9). Four sessions against a
// listener that drops SYNs, two attempts each (-C 2): all four first
// attempts are in flight together, so four warnings come at T and the
// fatal at 2T.
// One connect at a time (the reference, or --max-connecting=1) cannot
// show four warnings before 4T.
#[test]
fn x9_independent_connects() {
    let Some((_l, _fill, addr)) = full_listener() else {
        skip(
            "faults::x9_independent_connects",
            "the listen queue never dropped a SYN",
        );
        return;
    };
    let timed_out = warning("connect: Connection timed out");
    let out = cmd(&["-s", "4", "-m", "4", "-C", "2"])
        .arg(addr.to_string())
        .run();
    let err = out.stderr_text();
    assert_eq!(err.matches(timed_out.as_str()).count(), 4, "{err}");
    assert!(
        err.ends_with(&fatal("connect: Connection timed out")),
        "{err}"
    );
    out.assert_status(1);
    assert!(
        out.elapsed >= T_MIN * 2 && out.elapsed < T_MIN * 2 + T_MAX / 2,
        "expected the fatal at 2T: {:?}",
        out.elapsed
    );
    // With one connect in flight the same run is serialized: each
    // warning costs T of its own before the fatal.
    let out = cmd(&["--max-connecting=1", "-s", "4", "-m", "4", "-C", "2"])
        .arg(addr.to_string())
        .run();
    let warnings = out.stderr_text().matches(timed_out.as_str()).count();
    out.assert_status(1);
    assert!(
        out.elapsed >= T_MIN * (warnings as u32 + 1),
        "{warnings} warnings in {:?}",
        out.elapsed
    );
}

// -R waits a uniformly drawn whole number of seconds in 0..=interval
// before each message but the first (and after the last) (NOTES X14).
#[test]
fn x14_random_delay_whole_seconds() {
    let srv = FakeServer::responder();
    let out = cmd(&["-R", "1", "-m", "4"]).arg(srv.endpoint()).run();
    let tr = srv.finish();
    out.assert_status(0).assert_stderr("");
    assert_eq!(tr.len(), 4, "{}", tr.render());
    let at: Vec<f64> = tr
        .conns
        .iter()
        .map(|c| c.accepted_at.as_secs_f64())
        .collect();
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        let whole = gap.round();
        assert!(
            (0.0..=1.0).contains(&whole) && (gap - whole).abs() < 0.3,
            "gaps must be 0 or 1 s: {at:?}"
        );
    }
    assert!(out.elapsed.as_secs_f64() < 4.0 + 1.5, "{:?}", out.elapsed);
}

// `unix:` path missing, a stale socket file, no permission.
#[test]
fn f03_unix_missing_stale_noperm() {
    let dir = TempDir::new("f03");
    let missing = dir.path().join("missing.sock");
    let out = cmd(&[]).arg(format!("unix:{}", missing.display())).run();
    assert_fatal(&out, "connect: No such file or directory", QUICK);

    // A socket file whose listener is gone: ECONNREFUSED.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let out = cmd(&[]).arg(format!("unix:{}", stale.display())).run();
    assert_fatal(&out, "connect: Connection refused", QUICK);

    // A listening socket in a directory the client may not search:
    // EACCES. Root ignores permissions, so then run as nobody.
    let srv = FakeServer::unix(Responder::new());
    let path = srv.unix_path().expect("unix path").to_path_buf();
    let sock_dir = path.parent().expect("parent").to_path_buf();
    fs::set_permissions(&sock_dir, fs::Permissions::from_mode(0o700))
        .expect("chmod 0700");
    let out = if is_root() {
        if !can_run_as_nobody(
            "faults::f03_unix_missing_stale_noperm (its permission part)",
        ) {
            return;
        }
        let copy = NobodyCopy::new("f03");
        let o = copy.run(&format!("exec \"$0\" unix:{}", path.display()));
        let stderr = stderr_as_argv0(&o, &copy.bin);
        assert_eq!(
            stderr,
            fatal("connect: Permission denied"),
            "{}",
            o.render()
        );
        o
    } else {
        let o = cmd(&[]).arg(format!("unix:{}", path.display())).run();
        o.assert_stderr(&fatal("connect: Permission denied"));
        o
    };
    let tr = srv.finish();
    out.assert_status(1).assert_elapsed_below(QUICK);
    assert!(tr.is_empty(), "connected anyway:\n{}", tr.render());
}

// A sun_path of 108 bytes or more fails while planning.
#[test]
fn f04_unix_path_too_long() {
    let path = format!("/tmp/{}", "p".repeat(103));
    assert_eq!(path.len(), 108);
    let out = cmd(&[]).arg(format!("unix:{path}")).run();
    assert_fatal(&out, &format!("unix-domain name too long: {path}"), QUICK);
    let short = format!("/tmp/{}", "p".repeat(102));
    let out = cmd(&[]).arg(format!("unix:{short}")).run();
    assert_fatal(&out, "connect: No such file or directory", QUICK);
}

// getaddrinfo errors, in gai_strerror's words, before any
// session.
#[test]
fn f05_unresolvable_host_unknown_service() {
    let port = RefusingPort::new();
    let ep = format!("no.such.host.invalid:{}", port.port);
    let out = cmd(&[]).arg(&ep).run();
    assert_fatal(&out, &format!("{ep}: Name or service not known"), QUICK);
    let out = cmd(&[]).arg("127.0.0.1:nosuchsvc").run();
    assert_fatal(
        &out,
        "127.0.0.1:nosuchsvc: Servname not supported for ai_socktype",
        QUICK,
    );
}

// A tarpit that never greets: a deadline, not forever (NOTES X1).
#[test]
fn f06_silent_greeting_times_out() {
    let (out, tr) = run_script(vec![Step::Stall], &[]);
    assert_fatal_at_t(&out, "timeout while reading server greeting");
    assert_eq!(tr.conn(0).raw, b"", "{}", tr.render());
}

// FIN or RST before the greeting.
#[test]
fn f07_close_or_reset_before_greeting() {
    let (out, _) = run_script(vec![Step::Close], &[]);
    assert_fatal(&out, "lost connection while reading server greeting", QUICK);
    // Wait a little first, so the RST cannot beat connect()'s completion.
    let (out, _) = run_script(vec![Step::sleep_ms(100), Step::Reset], &[]);
    assert_fatal(&out, "lost connection while reading server greeting", QUICK);
}

// Not an SMTP peer. A talkative one (SSH) is a rejected banner;
// a silent one (TLS-only, HTTP) times out at T.
#[test]
fn f08_not_an_smtp_peer() {
    let (out, _) = run_script(vec![Step::send("SSH-2.0-x"), Step::Stall], &[]);
    assert_fatal(&out, "rejected at server banner: 0 SSH-2.0-x", QUICK);
    let (out, _) = run_script(vec![Step::Stall], &[]);
    assert_fatal_at_t(&out, "timeout while reading server greeting");
}

// 530 at MAIL: fatal; under -A a warning, RSET, next message.
#[test]
fn f09_starttls_required_at_mail() {
    let reply = "530 5.7.0 Must issue a STARTTLS command first";
    let (out, _) = run_resp(Responder::new().on(Verb::Mail, reply), &[]);
    assert_fatal(&out, &format!("sender rejected: {reply}"), QUICK);

    let r = Responder::new().on(Verb::Mail, reply);
    let (out, tr) = run_resp(r, &["-A", "-m", "2"]);
    let w = warning(&format!("sender rejected: {reply}"));
    out.assert_status(0)
        .assert_stderr(&format!("{w}{w}"))
        .assert_elapsed_below(QUICK);
    assert_eq!(tr.len(), 2, "{}", tr.render());
    for i in 0..2 {
        assert_verbs(&tr, i, &["HELO", "MAIL", "RSET", "QUIT"]);
    }
}

// ---------------------------------------------------------------------------
// Reply syntax

// A code-only final line is a complete reply (RFC 5321 §4.2).
#[test]
fn f10_code_only_final_line() {
    let r = Responder::new()
        .banner("220")
        .on(Verb::Helo, "250")
        .on(Verb::Mail, "250")
        .on(Verb::Rcpt, "250")
        .on(Verb::Dot, "250");
    let (out, tr) = run_resp(r, &[]);
    assert_clean(&out);
    assert_verbs(&tr, 0, HAPPY);
    let (out, _) = run_resp(Responder::new().on(Verb::Mail, "550"), &[]);
    assert_fatal(&out, "sender rejected: 550 ", QUICK);
}

// Not exactly three digits: code 0, then rejected. The text
// is what follows the digits (and a space).
#[test]
fn f11_not_three_digits() {
    let cases: &[(&[u8], &str)] = &[
        (b"25\r\n", "0 "),
        (b"abc\r\n", "0 abc"),
        (b"\r\n", "0 "),
        (b"2500 x\r\n", "0 x"),
        (b"25 0\r\n", "0 0"),
        (b"2\r\n", "0 "),
    ];
    for (banner, shown) in cases {
        let r = Responder::new().on_raw(Verb::Banner, banner);
        let (out, _) = run_resp(r, &[]);
        assert_fatal(
            &out,
            &format!("rejected at server banner: {shown}"),
            QUICK,
        );
    }
    // Under -A a warning, and the session goes on.
    let r = Responder::new().on_raw(Verb::Rcpt, b"25\r\n");
    let (out, tr) = run_resp(r, &["-A"]);
    out.assert_status(0)
        .assert_stderr(&warning("recipient rejected: 0 "))
        .assert_elapsed_below(QUICK);
    assert_verbs(&tr, 0, &["HELO", "MAIL", "RCPT", "RSET", "QUIT"]);
}

// Three digits and junk (`250x`) is 250, as in the reference.
#[test]
fn f12_three_digits_plus_junk() {
    let r = Responder::new()
        .on(Verb::Mail, "250x whatever")
        .on(Verb::Rcpt, "250x");
    let (out, tr) = run_resp(r, &[]);
    assert_clean(&out);
    assert_verbs(&tr, 0, HAPPY);
}

// First digit outside 2-5 is a rejection (RFC 5321 §4.2); the
// code is printed as a number (`099` shows as 99, like C's %d).
#[test]
fn f13_code_out_of_range() {
    for (banner, shown) in [
        ("150 prelim", "150 prelim"),
        ("600 x", "600 x"),
        ("099 x", "99 x"),
        ("199", "199 "),
    ] {
        let (out, _) = run_resp(Responder::new().banner(banner), &[]);
        assert_fatal(
            &out,
            &format!("rejected at server banner: {shown}"),
            QUICK,
        );
    }
}

// Mismatched codes in a multi-line reply: the final line
// decides (parity).
#[test]
fn f14_multiline_mismatched_codes() {
    let (out, tr) = run_resp(Responder::new().banner("220-a\r\n250 b"), &[]);
    assert_clean(&out);
    assert_verbs(&tr, 0, HAPPY);
    let r = Responder::new().banner("220-a\r\n554 b");
    let (out, _) = run_resp(r, &[]);
    assert_fatal(&out, "rejected at server banner: 554 a?b", QUICK);
}

// A multi-line reply that stops halfway: the deadline at T.
#[test]
fn f15_unfinished_multiline_then_silence() {
    let (out, _) =
        run_script(vec![Step::raw("220-first\r\n"), Step::Stall], &[]);
    assert_fatal_at_t(&out, "timeout while reading server greeting");
    let r = Responder::new()
        .on_steps(Verb::Mail, vec![Step::raw("250-part\r\n"), Step::Stall]);
    let (out, _) = run_resp(r, &[]);
    assert_fatal_at_t(&out, "timeout while sending sender");
}

// Endless continuation lines. The reply deadline (T) or the
// 1000-line bound (NOTES X2), whichever comes first.
#[test]
fn f16_endless_continuation_lines() {
    let slow = Step::Stream {
        line: b"220-x\r\n".to_vec(),
        every: Duration::from_millis(10),
    };
    let (out, _) = run_script(vec![slow], &[]);
    // 100 lines/s cannot reach 1000 lines within T = 1 s.
    assert_fatal_at_t(&out, "timeout while reading server greeting");

    let fast = Step::Stream {
        line: b"220-x\r\n".repeat(100),
        every: Duration::from_millis(1),
    };
    let (out, _) = run_script(vec![fast], &[]);
    out.assert_status(1).assert_elapsed_below(T_MAX);
    let e = out.stderr_text();
    assert!(
        e == fatal("reply too long while reading server greeting")
            || e == fatal("timeout while reading server greeting"),
        "{}",
        out.render()
    );
}

/// Peak RSS (KiB) of one run of our binary through `/usr/bin/time`,
/// against `srv`. None when /usr/bin/time is missing.
fn max_rss_kib(srv: &FakeServer, args: &[&str]) -> Option<(Outcome, u64)> {
    if !Path::new("/usr/bin/time").exists() {
        return None;
    }
    let dir = TempDir::new("rss");
    let file = dir.path().join("rss");
    let script = format!(
        "exec /usr/bin/time -f %M -o {} \"$0\" \"$@\"",
        file.display()
    );
    let out = cmd(args).arg(srv.endpoint()).via_shell(&script).run();
    let kib = fs::read_to_string(&file).ok()?.trim().parse().ok()?;
    Some((out, kib))
}

// Single lines of 15 KB and of 1 MB are accepted: 10240 bytes kept, the
// rest discarded (under the 1 MiB bound of NOTES X2), the code taken from
// the start of the line. Memory must not grow with the line.
#[test]
fn f17_single_long_lines_accepted() {
    let kb15 = format!("250 {}", "k".repeat(15_000));
    let mb1 = format!("250 {}", "m".repeat(1_000_000 - 6));
    let r = Responder::new().on(Verb::Helo, &kb15).on(Verb::Rcpt, &mb1);
    let (out, tr) = run_resp(r, &[]);
    assert_clean(&out);
    assert_verbs(&tr, 0, HAPPY);

    // Peak RSS varies by some 400 KiB between identical runs: compare
    // the smallest of three runs each. Keeping a 1 MB line would add
    // at least 1 MiB.
    let long = Responder::new()
        .on(Verb::Helo, &mb1)
        .on(Verb::Mail, &mb1)
        .on(Verb::Rcpt, &mb1);
    let (Some(base_kib), Some(long_kib)) =
        (min_rss_kib(Responder::new()), min_rss_kib(long))
    else {
        skip(
            "faults::f17_single_long_lines_accepted (its memory part)",
            "no /usr/bin/time (apt-get install time)",
        );
        return;
    };
    eprintln!(
        "f17: max RSS {base_kib} KiB (plain), {long_kib} KiB (3 x 1 MB)"
    );
    // The kept line is capped at 10 KiB, so growth should stay far below
    // 64 KiB; peak RSS cannot resolve that finely, so allow 512 KiB.
    assert!(
        long_kib < base_kib + 512,
        "max RSS grew from {base_kib} KiB to {long_kib} KiB"
    );
}

/// The smallest peak RSS (KiB) of three successful runs against `r`.
fn min_rss_kib(r: Responder) -> Option<u64> {
    let srv = FakeServer::tcp(r);
    let mut min = u64::MAX;
    for _ in 0..3 {
        let (out, kib) = max_rss_kib(&srv, &[])?;
        out.assert_status(0).assert_stderr("");
        min = min.min(kib);
    }
    Some(min)
}

// An endless line without LF: "reply line too long" after
// 1 MiB discarded (NOTES X2), or the deadline, whichever comes first.
#[test]
fn f18_endless_line_without_lf() {
    let flood = Step::Stream {
        line: vec![b'x'; 64 * 1024],
        every: Duration::from_millis(1),
    };
    let (out, _) = run_script(vec![flood], &[]);
    out.assert_status(1).assert_elapsed_below(T_MAX);
    let e = out.stderr_text();
    assert!(
        e == fatal("reply line too long while reading server greeting")
            || e == fatal("timeout while reading server greeting"),
        "{}",
        out.render()
    );
    // Slowly (64 KiB / 100 ms), 1 MiB takes 1.6 s: the deadline first.
    let slow = Step::Stream {
        line: vec![b'x'; 64 * 1024],
        every: Duration::from_millis(100),
    };
    let (out, _) = run_script(vec![slow], &[]);
    assert_fatal_at_t(&out, "timeout while reading server greeting");
}

// One byte every 0.5 s: each read succeeds, the reply deadline
// fires at T.
#[test]
fn f19_slow_trickle() {
    let trickle = Step::Trickle {
        bytes: b"220 slow greeting\r\n".to_vec(),
        every: Duration::from_millis(500),
    };
    let (out, _) = run_script(vec![trickle], &[]);
    assert_fatal_at_t(&out, "timeout while reading server greeting");
}

// Bare LF ends a line, trailing CRs are stripped, an inner CR
// is kept and shown as `?`.
#[test]
fn f20_line_endings() {
    let r = Responder::new()
        .on_raw(Verb::Banner, b"220-a\n220 bare lf\n")
        .on_raw(Verb::Helo, b"250 ok\r\r\n")
        .on_raw(Verb::Mail, b"250 ok\r\r\r\n")
        .on_raw(Verb::Rcpt, b"250 ok\n");
    let (out, tr) = run_resp(r, &[]);
    assert_clean(&out);
    assert_verbs(&tr, 0, HAPPY);
    let r = Responder::new().on_raw(Verb::Rcpt, b"550 a\rb\r\r\n");
    let (out, _) = run_resp(r, &[]);
    assert_fatal(&out, "recipient rejected: 550 a?b", QUICK);
}

// NUL, 8-bit, invalid UTF-8 and ESC in a reply: kept as bytes,
// each shown as `?`, nothing cut at the NUL (NOTES X15).
#[test]
fn f21_binary_reply_text() {
    let r = Responder::new()
        .on_raw(Verb::Rcpt, b"550 a\x00b\xff\xc3(\x1b[31mred\x7f\r\n");
    let (out, _) = run_resp(r, &[]);
    assert_fatal(&out, "recipient rejected: 550 a?b??(?[31mred?", QUICK);
    assert!(!out.stderr.contains(&0x1b), "{}", out.render());
}

// ---------------------------------------------------------------------------
// Protocol meaning

// 421 at the greeting. -A: warn, close, next message (NOTES X4).
#[test]
fn f22_421_at_greeting() {
    let r = Responder::new().banner("421 busy");
    let (out, _) = run_resp(r, &[]);
    assert_fatal(&out, "rejected at server banner: 421 busy", QUICK);

    let r = Responder::new().on_conn(
        0,
        Verb::Banner,
        vec![Step::send("421 busy")],
    );
    let (out, tr) = run_resp(r, &["-A", "-m", "2"]);
    out.assert_status(0)
        .assert_stderr(&warning("rejected at server banner: 421 busy"))
        .assert_elapsed_below(QUICK);
    assert_eq!(tr.len(), 2, "{}", tr.render());
    assert_eq!(tr.conn(0).raw, b"", "{}", tr.render());
    assert_verbs(&tr, 1, HAPPY);
}

/// Stage verb, its reject label, and the verbs connection 0 sends up to
/// and including that stage.
const STAGES: &[(Verb, &str, &[&str])] = &[
    (Verb::Helo, "HELO rejected", &["HELO"]),
    (Verb::Mail, "sender rejected", &["HELO", "MAIL"]),
    (Verb::Rcpt, "recipient rejected", &["HELO", "MAIL", "RCPT"]),
    (
        Verb::Data,
        "data rejected",
        &["HELO", "MAIL", "RCPT", "DATA"],
    ),
    (
        Verb::Dot,
        "end of data rejected",
        &["HELO", "MAIL", "RCPT", "DATA", "."],
    ),
];

// 421/521 at each stage: fatal, or (-A) warn and close without
// QUIT; the next message gets a new connection.
#[test]
fn f23_421_521_at_each_stage() {
    for code in ["421 4.3.2 bye", "521 5.3.2 bye"] {
        for (verb, label, sent) in STAGES {
            let (out, _) = run_resp(Responder::new().on(*verb, code), &[]);
            assert_fatal(&out, &format!("{label}: {code}"), QUICK);

            let r = Responder::new().on_conn(0, *verb, vec![Step::send(code)]);
            let (out, tr) = run_resp(r, &["-A", "-m", "2"]);
            out.assert_status(0)
                .assert_stderr(&warning(&format!("{label}: {code}")))
                .assert_elapsed_below(QUICK);
            assert_eq!(tr.len(), 2, "{}", tr.render());
            assert_verbs(&tr, 0, sent);
            assert_verbs(&tr, 1, HAPPY);
        }
        // RSET (only sent under -A): MAIL rejected, then 421 to RSET.
        let r = Responder::new()
            .on_conn(0, Verb::Mail, vec![Step::send("550 5.1.0 no")])
            .on_conn(0, Verb::Rset, vec![Step::send(code)]);
        let (out, tr) = run_resp(r, &["-A", "-m", "2"]);
        out.assert_status(0)
            .assert_stderr(&format!(
                "{}{}",
                warning("sender rejected: 550 5.1.0 no"),
                warning(&format!("rset rejected: {code}"))
            ))
            .assert_elapsed_below(QUICK);
        assert_eq!(tr.len(), 2, "{}", tr.render());
        assert_verbs(&tr, 0, &["HELO", "MAIL", "RSET"]);
        assert_verbs(&tr, 1, HAPPY);
    }
}

// 4xx/5xx at each stage. Fatal without -A; with -A: HELO goes
// on; MAIL, all RCPTs, DATA rejected: RSET; end of data: done, QUIT.
#[test]
fn f24_rejects_at_each_stage() {
    let after: &[&[&str]] = &[
        HAPPY,
        &["HELO", "MAIL", "RSET", "QUIT"],
        &["HELO", "MAIL", "RCPT", "RSET", "QUIT"],
        &["HELO", "MAIL", "RCPT", "DATA", "RSET", "QUIT"],
        HAPPY,
    ];
    for code in ["450 4.0.0 later", "554 5.0.0 no"] {
        for ((verb, label, _), want) in STAGES.iter().zip(after) {
            let (out, _) = run_resp(Responder::new().on(*verb, code), &[]);
            assert_fatal(&out, &format!("{label}: {code}"), QUICK);
            let (out, tr) =
                run_resp(Responder::new().on(*verb, code), &["-A"]);
            out.assert_status(0)
                .assert_stderr(&warning(&format!("{label}: {code}")))
                .assert_elapsed_below(QUICK);
            assert_verbs(&tr, 0, want);
        }
    }
    // Some recipients accepted: DATA goes ahead.
    let r = Responder::new().on_nth(Verb::Rcpt, 0, "550 5.1.1 no");
    let (out, tr) = run_resp(r, &["-A", "-r", "2"]);
    out.assert_status(0)
        .assert_stderr(&warning("recipient rejected: 550 5.1.1 no"));
    assert_verbs(
        &tr,
        0,
        &["HELO", "MAIL", "RCPT", "RCPT", "DATA", ".", "QUIT"],
    );
}

// The wrong positive code for the stage is a rejection: DATA needs 354,
// every other step 2xx.
#[test]
fn f25_wrong_positive_code() {
    let (out, _) = run_resp(Responder::new().on(Verb::Data, "250 go"), &[]);
    assert_fatal(&out, "data rejected: 250 go", QUICK);
    let (out, _) = run_resp(Responder::new().on(Verb::Mail, "354 go"), &[]);
    assert_fatal(&out, "sender rejected: 354 go", QUICK);
    let r = Responder::new().on(Verb::Dot, "354 more?");
    let (out, _) = run_resp(r, &[]);
    assert_fatal(&out, "end of data rejected: 354 more?", QUICK);
}

// The peer goes away during DATA, with or without a 5xx
// first. Never killed by SIGPIPE; the 550 may be appended (NOTES X7).
#[test]
fn f26_close_during_data() {
    let lost = "lost connection while sending message";
    let big = ["-l", "2000000"];
    // FIN after 354: the content goes into a half-closed socket, then the
    // end-of-data reply read sees EOF.
    let mut s = script_to_354();
    s.push(Step::Close);
    let (out, _) = run_script(s, &big);
    assert_fatal(&out, lost, QUICK);
    // RST after 354: the write fails.
    let mut s = script_to_354();
    s.extend([Step::sleep_ms(20), Step::Reset]);
    let (out, _) = run_script(s, &big);
    assert_fatal(&out, lost, QUICK);
    // 550, then FIN, the server still reading: 2 MB fit in the loopback
    // socket buffers, the write succeeds and the 550 is the end-of-data
    // reply.
    let mut s = script_to_354();
    s.extend([Step::send("550 5.3.4 too big"), Step::Close]);
    let (out, _) = run_script(s, &big);
    assert_fatal(&out, "end of data rejected: 550 5.3.4 too big", QUICK);
    // 550, then RST, with more content than the buffers hold (20 MB): the
    // write fails; the 550 may be appended (NOTES X7).
    let mut s = script_to_354();
    s.extend([
        Step::send("550 5.3.4 too big"),
        Step::sleep_ms(50),
        Step::Reset,
    ]);
    let (out, _) = run_script(s, &["-l", "20000000"]);
    out.assert_status(1).assert_elapsed_below(QUICK);
    let e = out.stderr_text();
    let plain = fatal(lost);
    let said = fatal(&format!("{lost} (server said: 550 5.3.4 too big)"));
    assert!(e == plain || e == said, "{}", out.render());
    eprintln!(
        "f26: 550 then RST: server reply {}",
        if e == said {
            "appended"
        } else {
            "not appended"
        }
    );
}

// The peer stops reading during DATA: the write deadline.
#[test]
fn f27_peer_stops_reading() {
    let mut s = script_to_354();
    s.push(Step::StopReading);
    let (out, tr) = run_script(s, &["-l", "20000000"]);
    assert_fatal_at_t(&out, "timeout while sending message");
    assert!(tr.conn(0).raw.len() < 20_000_000, "{}", tr.render());
}

// A session whose peer stopped reading blocks
// only itself. Two sessions, 20 MB messages: the first connection's
// server stops reading after 354, the second reads everything at once;
// the second message and its QUIT must be done long before the first
// session's write deadline (T = 3 s here) ends the run.
#[test]
fn f27_stuck_session_does_not_slow_others() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let started = Instant::now();
    let server = crate::support::spawn("f27-server", move || {
        let mut conns = Vec::new();
        let mut fast_done = None;
        for n in 0..2 {
            let (stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(8)))
                .expect("timeout");
            let mut w = stream.try_clone().expect("clone");
            let mut r = BufReader::with_capacity(1 << 20, stream);
            let mut line = Vec::new();
            let say = |w: &mut TcpStream, text: &[u8]| {
                let _ = w.write_all(text);
            };
            say(&mut w, b"220 f27\r\n");
            for reply in [&b"250 hi\r\n"[..], b"250 ok\r\n", b"250 ok\r\n"] {
                line.clear();
                let _ = r.read_until(b'\n', &mut line);
                say(&mut w, reply);
            }
            line.clear();
            let _ = r.read_until(b'\n', &mut line); // DATA
            say(&mut w, b"354 go\r\n");
            if n == 0 {
                conns.push(r); // stop reading: hold it open
                continue;
            }
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == b".\r\n" => break,
                    Ok(_) => {}
                }
            }
            say(&mut w, b"250 queued\r\n");
            line.clear();
            let _ = r.read_until(b'\n', &mut line); // QUIT
            say(&mut w, b"221 bye\r\n");
            fast_done = Some((started.elapsed(), line.clone()));
            conns.push(r);
        }
        // Keep the stuck connection open until the client gives up.
        std::thread::sleep(Duration::from_secs(4));
        drop(conns);
        fast_done
    });
    let out = ours()
        .cmd()
        .args(["-s", "2", "-m", "2", "-l", "20000000"])
        .arg(addr.to_string())
        .stage_timeout(3)
        .timeout(LIMIT)
        .run();
    let (fast, quit) = server
        .join()
        .expect("server")
        .expect("fast connection done");
    out.assert_status(1)
        .assert_stderr(&fatal("timeout while sending message"));
    assert_eq!(quit, b"QUIT\r\n");
    assert!(
        fast < Duration::from_millis(2500),
        "the other session took {fast:?}"
    );
    assert!(
        out.elapsed >= Duration::from_millis(2700),
        "{:?}",
        out.elapsed
    );
}

// The end-of-data reply comes after T.
#[test]
fn f28_end_of_data_reply_delayed() {
    let r = Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(2500), Step::send("250 late")],
    );
    let (out, _) = run_resp(r, &[]);
    assert_fatal_at_t(&out, "timeout while sending message");
}

// No reply to QUIT (close, reset, silence) is no error (NOTES X5).
#[test]
fn f29_no_reply_to_quit() {
    let (out, tr) = run_resp(Responder::new().close_at(Verb::Quit), &[]);
    assert_clean(&out);
    assert_verbs(&tr, 0, HAPPY);
    let (out, tr) = run_resp(Responder::new().reset_at(Verb::Quit), &[]);
    assert_clean(&out);
    assert_verbs(&tr, 0, HAPPY);
    let (out, tr) = run_resp(Responder::new().stall_at(Verb::Quit), &[]);
    out.assert_status(0)
        .assert_stderr("")
        .assert_elapsed_below(T_MAX);
    assert_verbs(&tr, 0, HAPPY);
    eprintln!("f29: silent QUIT took {:.2}s", out.elapsed.as_secs_f64());
}

// -d, the server closes the idle connection: the next MAIL
// meets EOF (parity).
#[test]
fn f30_idle_close_with_reuse() {
    let r = Responder::new().close_after(Verb::Dot);
    let (out, tr) = run_resp(r, &["-d", "-m", "2"]);
    assert_fatal(&out, "lost connection while sending sender", QUICK);
    assert_eq!(tr.len(), 1, "{}", tr.render());
}

// Two replies to HELO. Replies are consumed one per command
// (parity): every later reply is one behind, so DATA gets the RCPT's 250.
#[test]
fn f31_extra_reply_shifts_replies() {
    let r = Responder::new().on_steps(
        Verb::Helo,
        vec![Step::send("250 first"), Step::send("250 extra")],
    );
    let (out, tr) = run_resp(r, &[]);
    assert_fatal(&out, "data rejected: 250 2.1.5 Ok", QUICK);
    assert_verbs(&tr, 0, &["HELO", "MAIL", "RCPT", "DATA"]);
}

// LMTP with rejected recipients: one end-of-data reply per
// *accepted* RCPT (RFC 2033 §4.2, NOTES X3); none accepted: RSET.
#[test]
fn f32_lmtp_rejected_recipients() {
    let r = Responder::new()
        .lmtp()
        .on_nth(Verb::Rcpt, 1, "550 5.1.1 no");
    let (out, tr) = run_resp(r, &["-L", "-A", "-r", "3"]);
    out.assert_status(0)
        .assert_stderr(&warning("recipient rejected: 550 5.1.1 no"))
        .assert_elapsed_below(Duration::from_millis(900));
    let want = ["LHLO", "MAIL", "RCPT", "RCPT", "RCPT", "DATA", ".", "QUIT"];
    assert_verbs(&tr, 0, &want);
    let queued = b"250 2.0.0 Ok: queued\r\n";
    let want = [&queued[..], queued, b"221 2.0.0 Bye\r\n"].concat();
    assert!(
        tr.conn(0).server_bytes().ends_with(&want),
        "two end-of-data replies, then QUIT's:\n{}",
        tr.render()
    );

    let r = Responder::new().lmtp().on(Verb::Rcpt, "550 5.1.1 no");
    let (out, tr) = run_resp(r, &["-L", "-A", "-r", "2"]);
    let w = warning("recipient rejected: 550 5.1.1 no");
    out.assert_status(0)
        .assert_stderr(&format!("{w}{w}"))
        .assert_elapsed_below(QUICK);
    assert_verbs(&tr, 0, &["LHLO", "MAIL", "RCPT", "RCPT", "RSET", "QUIT"]);
}

// LMTP: fewer end-of-data replies than accepted RCPTs, then
// close; a 421 in the middle; a per-recipient 5xx.
#[test]
fn f33_lmtp_short_or_421_replies() {
    let lmtp =
        |steps: Vec<Step>| Responder::new().lmtp().on_steps(Verb::Dot, steps);
    let args = ["-L", "-r", "3"];
    let (out, _) =
        run_resp(lmtp(vec![Step::send("250 ok 1"), Step::Close]), &args);
    assert_fatal(&out, "lost connection while sending message", QUICK);

    let mid = vec![Step::send("250 ok 1"), Step::send("421 4.3.2 bye")];
    let (out, _) = run_resp(lmtp(mid.clone()), &args);
    assert_fatal(&out, "end of data rejected: 421 4.3.2 bye", QUICK);
    let (out, tr) = run_resp(lmtp(mid), &["-L", "-A", "-r", "3"]);
    out.assert_status(0)
        .assert_stderr(&warning("end of data rejected: 421 4.3.2 bye"))
        .assert_elapsed_below(QUICK);
    let sent = ["LHLO", "MAIL", "RCPT", "RCPT", "RCPT", "DATA", "."];
    assert_verbs(&tr, 0, &sent);

    let some = vec![
        Step::send("250 ok 1"),
        Step::send("552 5.2.2 full"),
        Step::send("250 ok 3"),
    ];
    let (out, tr) = run_resp(lmtp(some.clone()), &["-L", "-A", "-r", "3"]);
    out.assert_status(0)
        .assert_stderr(&warning("end of data rejected: 552 5.2.2 full"))
        .assert_elapsed_below(QUICK);
    let mut quit = sent.to_vec();
    quit.push("QUIT");
    assert_verbs(&tr, 0, &quit);
    let (out, _) = run_resp(lmtp(some), &args);
    assert_fatal(&out, "end of data rejected: 552 5.2.2 full", QUICK);
}

// ---------------------------------------------------------------------------
// Local resources and process

// Too few descriptors for -s: fail before any connect (NOTES X10);
// a soft limit under a higher hard limit is raised.
#[test]
fn f35_fd_limit() {
    let srv = FakeServer::responder();
    let script = format!(
        "ulimit -n 64 && exec \"$0\" -s 300 -m 300 {}",
        srv.endpoint()
    );
    let out = cmd(&[]).via_shell(&script).run();
    let tr = srv.finish();
    out.assert_status(1).assert_elapsed_below(QUICK);
    assert_eq!(
        stderr_as_argv0(&out, &ours().path),
        fatal(
            "300 sessions need 316 open files, but the open file limit \
             (ulimit -n) is 64"
        ),
        "{}",
        out.render()
    );
    assert!(tr.is_empty(), "connected anyway:\n{}", tr.render());

    let srv = FakeServer::responder();
    let script = format!(
        "ulimit -S -n 64 && exec \"$0\" -s 100 -m 100 {}",
        srv.endpoint()
    );
    let out = cmd(&[]).via_shell(&script).timeout(LIMIT).run();
    let tr = srv.finish();
    out.assert_status(0)
        .assert_stderr("")
        .assert_elapsed_below(Duration::from_secs(6));
    assert_eq!(tr.len(), 100);
}

// Thread creation fails (RLIMIT_NPROC for a non-root user):
// a fatal message, exit 1, no panic. Root ignores RLIMIT_NPROC, so the
// binary runs as nobody through runuser, under `prlimit --nproc` (dash's
// ulimit has no -u).
#[test]
fn f36_thread_creation_fails() {
    if !can_run_as_nobody("faults::f36_thread_creation_fails") {
        return;
    }
    let srv = FakeServer::responder();
    let copy = NobodyCopy::new("f36");
    let out = copy.run(&format!(
        "exec prlimit --nproc=40 \"$0\" -s 100 -m 100 {}",
        srv.endpoint()
    ));
    let tr = srv.finish();
    out.assert_status(1).assert_elapsed_below(QUICK);
    assert_eq!(
        stderr_as_argv0(&out, &copy.bin),
        fatal(
            "cannot create session thread: Resource temporarily unavailable"
        ),
        "{}",
        out.render()
    );
    assert!(tr.is_empty(), "connected anyway:\n{}", tr.render());
}

// -F file errors are fatal before any connect; the content
// goes out byte for byte as the reference sends it (a CRLF file as
// CR CR LF, NUL and 8-bit bytes as they are).
#[test]
fn f38_message_file_faults() {
    let dir = TempDir::new("f38");
    let srv = FakeServer::responder();
    let missing = dir.path().join("missing.txt");
    let m = missing.to_string_lossy().into_owned();
    let out = run(&srv, &["-F", &m]);
    assert_fatal(&out, &format!("open {m}: No such file or directory"), QUICK);
    let d = dir.path().to_string_lossy().into_owned();
    let out = run(&srv, &["-F", &d]);
    assert_fatal(&out, &format!("read {d}: Is a directory"), QUICK);
    assert!(srv.finish().is_empty(), "connected with a bad -F file");

    let f = dir.path().join("msg.txt");
    fs::write(&f, b"a\r\n.b\n\x00\xe9\rc").expect("write -F file");
    let fp = f.to_string_lossy().into_owned();
    let (out, tr) = run_resp(Responder::new(), &["-F", &fp]);
    assert_clean(&out);
    assert_eq!(
        tr.conn(0).data,
        [b"a\r\r\n..b\r\n\x00\xe9\rc\r\n\r\n".to_vec()],
        "{}",
        tr.render()
    );

    if can_run_as_nobody("f38 (unreadable file)") {
        let secret = dir.path().join("secret.txt");
        fs::write(&secret, b"x\n").expect("write");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600))
            .expect("chmod");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let copy = NobodyCopy::new("f38");
        let s = secret.display();
        let out = copy.run(&format!("exec \"$0\" -F {s} 127.0.0.1:1"));
        out.assert_status(1);
        assert_eq!(
            stderr_as_argv0(&out, &copy.bin),
            fatal(&format!("open {s}: Permission denied")),
            "{}",
            out.render()
        );
    }
}

// Bad option values: Postfix's wording, exit 1.
#[test]
fn f39_bad_option_values() {
    let usage = crate::support::usage_line("smtp-source");
    let cases: &[(&[&str], String)] = &[
        (&["-s", "0", "x"], fatal("bad session count: 0")),
        (&["-s", "abc", "x"], fatal("bad session count: abc")),
        (&["-m", "-1", "x"], fatal("bad message count: -1")),
        (
            &["-l", "5", "-F", "/dev/null", "x"],
            fatal("-l option cannot be used with -F"),
        ),
        (
            &["-F", "/dev/null", "-l", "5", "x"],
            fatal("-l option cannot be used with -F"),
        ),
        (
            &["-w", "1", "-R", "1", "x"],
            fatal("do not use -w and -R options at the same time"),
        ),
        (
            &["-y", "x"],
            format!("smtp-source: invalid option -- 'y'\n{usage}"),
        ),
        (&[], usage.clone()),
    ];
    for (args, want) in cases {
        let out = cmd(args).run();
        out.assert_status(1)
            .assert_stderr(want)
            .assert_elapsed_below(QUICK);
    }
    // Overflow wraps as in C atoi (docs/reference-behaviour.md): 2^31 becomes
    // negative, hence "bad"; 99999999999 becomes 1215752191, a valid
    // count that then fails the open-file check (NOTES X10) instead of
    // hanging the way the reference does.
    let out = cmd(&["-s", "2147483648", "127.0.0.1:1"]).run();
    assert_fatal(&out, "bad session count: 2147483648", QUICK);
    let out = cmd(&["-s", "99999999999", "127.0.0.1:1"]).run();
    out.assert_status(1).assert_elapsed_below(QUICK);
    assert!(
        out.stderr_text().starts_with(
            "smtp-source: fatal: 1215752191 sessions need 1215752207 open \
             files, but the open file limit (ulimit -n) is "
        ),
        "{}",
        out.render()
    );
}

/// Start our binary against a silent server (T = 30 s, so only the
/// signal ends it), send `sig` once it has connected, and return how
/// long it took to die and the wait status.
fn kill_with(sig: &str) -> (Duration, std::process::ExitStatus) {
    let srv = FakeServer::script(vec![Step::Stall]);
    let p = ours();
    let mut child = Command::new(&p.path)
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .arg(srv.endpoint())
        .env("SMTP_SOURCE_TIMEOUT", "30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(srv.wait_for_conns(1, Duration::from_secs(5)), "no connect");
    let pid = child.id().to_string();
    let sent = Instant::now();
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
    let deadline = sent + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (sent.elapsed(), status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running 5 s after SIG{sig}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// SIGINT / SIGTERM: no handler, death at once by the signal.
#[test]
fn f40_sigint_sigterm() {
    for (sig, num) in [("INT", 2), ("TERM", 15)] {
        let (took, status) = kill_with(sig);
        assert_eq!(status.signal(), Some(num), "SIG{sig}: {status:?}");
        assert!(took < Duration::from_secs(1), "SIG{sig}: took {took:?}");
    }
}

// -c into a closed pipe: the counter's EPIPE is ignored, the
// run goes on, exit 0.
#[test]
fn f41_count_into_closed_pipe() {
    let srv = FakeServer::responder();
    // `head -c3` exits after three bytes; the reader of `true` is gone
    // before the first byte is written.
    for reader in ["head -c3 >/dev/null", "true"] {
        let script = format!(
            "{{ sleep 0.1; \"$0\" -c -m 200 -s 4 {}; echo \"rc=$?\" >&2; }} \
             | {reader}",
            srv.endpoint()
        );
        let out = cmd(&[]).via_shell(&script).run();
        out.assert_status(0)
            .assert_stderr("rc=0\n")
            .assert_elapsed_below(Duration::from_secs(6));
    }
    let tr = srv.finish();
    assert_eq!(tr.len(), 400, "every message sent");
}

// stderr closed: diagnostics that cannot be written are
// ignored; the exit status does not change.
#[test]
fn f42_stderr_closed() {
    let srv = FakeServer::responder();
    let script = format!("exec \"$0\" {} 2>&-", srv.endpoint());
    let out = cmd(&[]).via_shell(&script).run();
    srv.finish();
    out.assert_status(0).assert_elapsed_below(QUICK);
    let port = RefusingPort::new();
    let script = format!("exec \"$0\" {} 2>&-", port.endpoint());
    let out = cmd(&[]).via_shell(&script).run();
    out.assert_status(1)
        .assert_stderr("")
        .assert_elapsed_below(QUICK);
    assert_eq!(out.signal, None);
}

// A bug that panics inside a session. It cannot be triggered from
// outside the binary (no input reaches a panic, which is the point of the
// other 42 fault tests), and the engine's own reaction to a dead worker
// (join() -> Err -> "internal error: session died") is an engine unit
// test's job. What an integration test can pin is the build setting that
// turns any panic into an immediate abort (exit 134, never a hang):
// `panic = "abort"` in the release profile.
#[test]
fn f43_panicking_session() {
    let toml = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"),
    )
    .expect("read Cargo.toml");
    let release = toml
        .split("\n[")
        .find(|s| s.starts_with("profile.release]"))
        .expect("a [profile.release] section");
    assert!(
        release.lines().any(|l| l.trim() == "panic = \"abort\""),
        "[profile.release] must set panic = \"abort\":\n{release}"
    );
}
