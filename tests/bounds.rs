//! Bounds: what a hostile peer or an extreme local input must not be
//! able to do. Server text in every stdout report is censored (it can
//! never begin a new line or drive the terminal), file arguments never
//! block in open(2), deadlines hold to within 50 ms, and legal extremes
//! of -l and -m neither abort nor need memory that grows with them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::fake_server::{FakeServer, Responder, Step, Verb};
use crate::support::{ours, program, spawn, Cmd, Outcome, TempDir};

const LIMIT: Duration = Duration::from_secs(10);

/// A reply that tries to rewrite the terminal (set its title, clear the
/// screen) and to forge a report line after a bare CR.
const HOSTILE: &[u8] = b"550 5.7.1 x\x1b]0;owned\x07\x1b[2J\rmessages: 999 \
attempted, 999 accepted, 0 rejected, 0 failed\r\n";

fn report_tool() -> Cmd {
    let path = std::path::PathBuf::from(env!("CARGO_BIN_EXE_smtp-report"));
    program(path, "smtp-report").cmd().timeout(LIMIT)
}

/// No byte of `out` can move the cursor or start a line of its own: only
/// printable ASCII and LF, and no line that the server's text began.
fn assert_terminal_safe(what: &str, out: &[u8]) {
    let bad: Vec<u8> = out
        .iter()
        .copied()
        .filter(|&b| b != b'\n' && !(0x20..0x7f).contains(&b))
        .collect();
    assert!(bad.is_empty(), "{what}: raw bytes {bad:?} in {out:?}");
    let text = String::from_utf8_lossy(out);
    assert!(
        !text.lines().any(|l| l.starts_with("messages: 999")),
        "{what}: a server line began a report line:\n{text}"
    );
}

fn hostile_server() -> FakeServer {
    FakeServer::tcp(Responder::new().on_raw(Verb::Mail, HOSTILE))
}

#[test]
fn server_text_is_censored_in_the_text_report() {
    let srv = hostile_server();
    let out = ours()
        .cmd()
        .args(["-M", "h.example", "--report"])
        .arg(srv.endpoint())
        .timeout(LIMIT)
        .run();
    srv.finish();
    out.assert_status(1);
    assert!(out.stdout_text().contains("ended by:"), "{}", out.render());
    assert_terminal_safe("--report", &out.stdout);
    // stderr censors with the same function.
    assert_terminal_safe("stderr", &out.stderr);
}

#[test]
fn server_text_is_exact_but_valid_in_the_json_report() {
    let srv = hostile_server();
    let out = ours()
        .cmd()
        .args(["-M", "h.example", "--report=json"])
        .arg(srv.endpoint())
        .timeout(LIMIT)
        .run();
    srv.finish();
    out.assert_status(1);
    assert_terminal_safe("--report=json", &out.stdout);
    let text = out.stdout_text();
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let fatal = v["fatal"].as_str().unwrap();
    assert!(
        fatal.ends_with(
            "x\x1b]0;owned\x07\x1b[2J\rmessages: 999 attempted, 999 \
accepted, 0 rejected, 0 failed"
        ),
        "{fatal:?}"
    );
}

#[test]
fn server_text_is_censored_by_smtp_report() {
    let dir = TempDir::new("bounds-censor");
    let file = dir.path().join("r.json");
    let srv = hostile_server();
    let out = ours()
        .cmd()
        .args(["-M", "h.example"])
        .arg(format!("--report-file={}", file.display()))
        .arg(srv.endpoint())
        .timeout(LIMIT)
        .run();
    srv.finish();
    out.assert_status(1);
    let text = report_tool().arg("text").arg(&file).run();
    text.assert_status(0);
    assert!(
        text.stdout_text().contains("ended by:"),
        "{}",
        text.render()
    );
    assert_terminal_safe("smtp-report text", &text.stdout);
    let html = report_tool().arg("html").arg(&file).run();
    html.assert_status(0);
    let page = html.stdout_text();
    assert!(!page.contains('\x1b') && !page.contains('\x07'), "{page}");
    assert!(!page.contains('\r'), "a CR in the page");
    let merged = report_tool().arg("merge").arg(&file).run();
    merged.assert_status(0);
    assert_terminal_safe("smtp-report merge", &merged.stdout);
    let v: Value = serde_json::from_str(&merged.stdout_text()).unwrap();
    assert!(v["fatal"].as_str().unwrap().contains("\x1b]0;owned\x07"));
}

// ---------------------------------------------------------------------
// Deadlines

/// A greeting that comes in two parts `gap` apart, then stalls: the
/// reply's deadline is `t` from its start, however the socket timeout
/// was armed for the first part. Measured at the server, from accept to
/// the client's close (no process start-up in it). Never early; late by
/// at most 50 ms in one of three tries: a loaded machine can only add
/// lateness (a thread scheduled late), never take it away, so one clean
/// try shows the deadline logic is exact.
fn greeting_deadline(t: u64, gap: u64) {
    let want = Duration::from_secs(t);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let took = greeting_deadline_once(t, gap);
        assert!(
            took + Duration::from_millis(20) >= want,
            "--timeout={t}, second part after {gap} ms: ended early, \
after {took:?}"
        );
        if took <= want + Duration::from_millis(50) {
            return;
        }
        seen.push(took);
    }
    panic!("--timeout={t}, second part after {gap} ms: the deadline took {seen:?}");
}

fn greeting_deadline_once(t: u64, gap: u64) -> Duration {
    let srv = FakeServer::script(vec![
        Step::raw("220-first\r\n"),
        Step::sleep_ms(gap),
        Step::raw("220-second\r\n"),
        Step::Stall,
    ]);
    let out = ours()
        .cmd()
        .args(["-M", "h.example", &format!("--timeout={t}")])
        .arg(srv.endpoint())
        .timeout(Duration::from_secs(t + 10))
        .run();
    let tr = srv.finish();
    out.assert_status(1);
    assert!(
        out.stderr_text()
            .contains("timeout while reading server greeting"),
        "{}",
        out.render()
    );
    let c = tr.conn(0);
    c.ended_at - c.accepted_at
}

#[test]
fn deadline_holds_at_1s() {
    greeting_deadline(1, 15);
}

#[test]
fn deadline_holds_at_3s() {
    greeting_deadline(3, 45);
}

#[test]
fn deadline_holds_at_5s() {
    greeting_deadline(5, 75);
}

// ---------------------------------------------------------------------
// File arguments that would block

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(ok.success(), "mkfifo {}", path.display());
}

/// `args` name a FIFO nobody writes to: the run must end at once with
/// an error naming it, not hang in open(2).
fn refuses_fifo(args: &[&str], fifo: &Path) -> Outcome {
    let out = ours()
        .cmd()
        .args(["-M", "h.example", "--dry-run"])
        .args(args)
        .arg("127.0.0.1:25")
        .timeout(Duration::from_secs(5))
        .run_unchecked();
    assert!(
        !out.timed_out,
        "{args:?}: hung on the FIFO\n{}",
        out.render()
    );
    out.assert_status(1);
    let shown = fifo.display().to_string();
    assert!(
        out.stderr_text().contains(&shown),
        "{args:?}: the error does not name {shown}\n{}",
        out.render()
    );
    out.assert_elapsed_below(Duration::from_secs(2));
    out
}

#[test]
fn fifo_arguments_never_block() {
    let dir = TempDir::new("bounds-fifo");
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let f = fifo.display().to_string();
    let eq = |opt: &str| format!("{opt}={f}");
    refuses_fifo(&[&eq("--rcpt-file")], &fifo);
    refuses_fifo(&[&eq("--sender-file")], &fifo);
    refuses_fifo(&["-F", &f], &fifo);
    refuses_fifo(
        &["--auth=PLAIN", "--auth-plaintext", &eq("--auth-file")],
        &fifo,
    );
    refuses_fifo(&["--tls=verify", &eq("--tls-ca")], &fifo);
    refuses_fifo(
        &["--tls=encrypt", &eq("--tls-cert"), &eq("--tls-key")],
        &fifo,
    );
}

/// A FIFO with a writer (`--rcpt-file=<(command)`) is read as before,
/// its data taken as it comes.
#[test]
fn fifo_with_a_writer_is_read() {
    let dir = TempDir::new("bounds-fifo-writer");
    let fifo = dir.path().join("rcpts");
    mkfifo(&fifo);
    let path = fifo.clone();
    let writer = spawn("fifo-writer", move || {
        use std::io::Write;
        // Blocks until smtp-source opens the other end.
        let mut w = std::fs::OpenOptions::new().write(true).open(path)?;
        std::thread::sleep(Duration::from_millis(100));
        w.write_all(b"a@x\nb@x\n")
    });
    let out = ours()
        .cmd()
        .args(["-M", "h.example", "--dry-run"])
        .arg(format!("--rcpt-file={}", fifo.display()))
        .arg("127.0.0.1:25")
        .timeout(Duration::from_secs(5))
        .run();
    // Should the run not have opened it: free the writer (it then
    // fails) rather than hang the test.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _unblock = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
        std::thread::sleep(Duration::from_millis(200));
    }
    out.assert_status(0);
    writer.join().unwrap().unwrap();
}

/// --hlog is opened before the first connect: a FIFO nobody reads is
/// refused at once, naming it.
#[test]
fn hlog_fifo_without_reader_never_blocks() {
    let dir = TempDir::new("bounds-hlog-fifo");
    let fifo = dir.path().join("hlog");
    mkfifo(&fifo);
    let srv = FakeServer::tcp(Responder::new());
    let out = ours()
        .cmd()
        .args(["-M", "h.example"])
        .arg(format!("--hlog={}", fifo.display()))
        .arg(srv.endpoint())
        .timeout(Duration::from_secs(5))
        .run_unchecked();
    let tr = srv.finish();
    assert!(!out.timed_out, "hung on the FIFO\n{}", out.render());
    out.assert_status(1);
    assert!(
        out.stderr_text().contains(&fifo.display().to_string()),
        "{}",
        out.render()
    );
    assert_eq!(tr.len(), 0, "connected before failing");
}

#[test]
fn fifo_in_message_dir_never_blocks() {
    let dir = TempDir::new("bounds-fifo-dir");
    std::fs::write(dir.path().join("a.eml"), b"Subject: a\n\nbody\n").unwrap();
    mkfifo(&dir.path().join("b.eml"));
    let arg = format!("--message-dir={}", dir.path().display());
    let out = ours()
        .cmd()
        .args(["-M", "h.example", "--dry-run", &arg, "127.0.0.1:25"])
        .timeout(Duration::from_secs(5))
        .run_unchecked();
    assert!(!out.timed_out, "hung on the FIFO\n{}", out.render());
    out.assert_status(0);
}

// ---------------------------------------------------------------------
// Legal extremes

/// Peak resident memory of a run, from /usr/bin/time -v, in KiB (the
/// `time` package: a test needing it fails without it, it never skips).
fn peak_rss_kib(args: &[&str]) -> (Outcome, u64) {
    assert!(
        Path::new("/usr/bin/time").exists(),
        "these tests need /usr/bin/time (apt-get install time)"
    );
    let out = ours()
        .cmd()
        .via_shell("exec /usr/bin/time -v \"$0\" \"$@\"")
        .args(args)
        .timeout(Duration::from_secs(30))
        .run();
    let rss = out
        .stderr_text()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
                .map(|v| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no RSS in\n{}", out.render()));
    (out, rss)
}

/// The biggest -l prints its plan without building the body.
#[test]
fn dry_run_does_not_build_a_huge_body() {
    let (out, rss) = peak_rss_kib(&[
        "-M",
        "h.example",
        "-l",
        "2147483647",
        "-m",
        "2147483647",
        "--dry-run",
        "127.0.0.1:25",
    ]);
    out.assert_status(0);
    assert!(out.stdout_text().contains("messages:     2147483647"));
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB for --dry-run");
}

/// A real run with a big -l holds the message once: one buffer for the
/// DATA and the BDAT form, made in place (it was made three times over:
/// filler, copy with the dot, BDAT copy).
#[test]
fn big_l_holds_the_body_once() {
    let srv = FakeServer::tcp(Responder::new().banner("421 4.3.2 bye"));
    let len: u64 = 256 << 20;
    let (out, rss) = peak_rss_kib(&[
        "-M",
        "h.example",
        "--chunking",
        "-l",
        &len.to_string(),
        &srv.endpoint(),
    ]);
    srv.finish();
    assert!(out.status.is_some(), "{}", out.render());
    let body_kib = len / 1024;
    assert!(
        rss < body_kib + body_kib / 4 + 32 * 1024,
        "peak RSS {rss} KiB for a body of {body_kib} KiB"
    );
}

/// A connect whose SYN is dropped ends at its deadline, each attempt
/// (-C 3) within 50 ms of it; process start-up gets 150 ms once.
#[test]
fn connect_deadline_holds() {
    let Some((_l, _fill, addr)) = crate::faults::full_listener() else {
        eprintln!("SKIP connect_deadline_holds: no SYN was dropped");
        return;
    };
    let out = ours()
        .cmd()
        .args(["-M", "h.example", "--timeout=3", "-C", "3"])
        .arg(addr.to_string())
        .timeout(Duration::from_secs(20))
        .run();
    out.assert_status(1);
    assert!(
        out.stderr_text()
            .ends_with("connect: Connection timed out\n"),
        "{}",
        out.render()
    );
    let want = Duration::from_secs(9);
    assert!(
        out.elapsed >= want
            && out.elapsed
                <= want
                    + 3 * Duration::from_millis(50)
                    + Duration::from_millis(150),
        "three 3 s connect deadlines took {:?}",
        out.elapsed
    );
}

/// The biggest -m neither aborts nor allocates in proportion: the job
/// channel and the prefill are bounded (a guard; it held before).
#[test]
fn biggest_m_is_bounded() {
    let srv = FakeServer::tcp(Responder::new());
    let (out, rss) = peak_rss_kib(&[
        "-M",
        "h.example",
        "-d",
        "-s",
        "2",
        "-m",
        "2147483647",
        "--duration=1",
        &srv.endpoint(),
    ]);
    srv.finish();
    out.assert_status(0);
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB for -m 2147483647");
}
