//! Reports that survive faults and signals: output paths checked before
//! the first connect, report files replaced whole or not at all, a
//! failing output as an error, SIGINT and SIGTERM ending a run with its
//! reports (also during the --start-at wait), and the `interrupted` mark.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::support::fake_server::{FakeServer, Responder, Step, Verb};
use crate::support::{ours, Outcome, TempDir, ARGV0};

/// `-M` of every run.
const HOST: &str = "survive.example";

/// Hard limit for a run that a signal ends.
const SIGNAL_LIMIT: Duration = Duration::from_secs(10);

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim_end())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

fn int(v: &Value, key: &str) -> u64 {
    v["messages"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no messages/{key} in {v}"))
}

/// A server whose end of data takes `ms`.
fn slow_dot(ms: u64) -> Responder {
    Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(ms), Step::send("250 2.0.0 Ok: queued")],
    )
}

/// Messages the server accepted (end of data answered 250).
fn accepted_by(tr: &crate::support::fake_server::Transcript) -> u64 {
    tr.conns.iter().map(|c| c.data.len() as u64).sum()
}

// ---------------------------------------------------------------------------
// Outputs checked before the first connect

fn run_with(srv: &FakeServer, args: &[&str]) -> Outcome {
    ours()
        .cmd()
        .args(["-M", HOST])
        .args(args)
        .arg(srv.endpoint())
        .run()
}

/// Each bad output path: fatal before any connection, naming the path
/// and the reason, without waiting for --duration.
#[test]
fn bad_output_paths_are_fatal_before_the_first_connect() {
    let dir = TempDir::new("outputs");
    let missing = dir.path().join("no-such-folder/r.json");
    let folder = dir.path().to_path_buf();
    let cases: [(&str, &Path, &str); 4] = [
        ("--report-file", &missing, "No such file or directory"),
        ("--report-file", &folder, "Is a directory"),
        ("--hlog", &missing, "No such file or directory"),
        ("--hlog", &folder, "Is a directory"),
    ];
    for (opt, path, reason) in cases {
        let srv = FakeServer::tcp(Responder::new());
        let arg = format!("{opt}={}", path.display());
        let out = run_with(&srv, &["--duration=30", "--report=json", &arg]);
        assert_eq!(srv.accepted(), 0, "{arg}: connected\n{}", out.render());
        out.assert_status(1).assert_stderr(&format!(
            "{ARGV0}: fatal: cannot write {opt}={}: {reason}\n",
            path.display()
        ));
        assert!(out.stdout.is_empty(), "{}", out.render());
        assert!(out.elapsed < Duration::from_secs(3), "{}", out.render());
    }
}

/// --dry-run checks the output paths as a run does.
#[test]
fn dry_run_checks_the_output_paths() {
    let dir = TempDir::new("dry");
    let missing = dir.path().join("nope/r.json");
    let arg = format!("--report-file={}", missing.display());
    let out = ours().cmd().args(["--dry-run", &arg, "127.0.0.1:9"]).run();
    out.assert_status(1).assert_stderr(&format!(
        "{ARGV0}: fatal: cannot write --report-file={}: No such file or \
         directory\n",
        missing.display()
    ));
    let ok = format!("--report-file={}", dir.path().join("r.json").display());
    let out = ours().cmd().args(["--dry-run", &ok, "127.0.0.1:9"]).run();
    out.assert_status(0).assert_stderr("");
    assert_eq!(others(dir.path(), ""), Vec::<String>::new());
}

/// A folder we may not write to (as root, only a read-only mount says
/// so: root writes through permission bits).
#[test]
fn read_only_folder_is_fatal_before_the_first_connect() {
    let dir = TempDir::new("ro");
    let path = dir.path().join("r.json");
    let _ro = if is_root() {
        match Mount::tmpfs(dir.path(), "size=64k,ro") {
            Some(m) => Some(m),
            None => {
                eprintln!(
                    "SKIP read_only_folder_is_fatal_before_the_first_connect: \
                     root, and mount -t tmpfs failed"
                );
                return;
            }
        }
    } else {
        set_mode(dir.path(), 0o555);
        None
    };
    let srv = FakeServer::tcp(Responder::new());
    let arg = format!("--report-file={}", path.display());
    let out = run_with(&srv, &["-m", "1", &arg]);
    if !is_root() {
        set_mode(dir.path(), 0o755);
    }
    assert_eq!(srv.accepted(), 0, "{}", out.render());
    let reason = if is_root() {
        "Read-only file system"
    } else {
        "Permission denied"
    };
    out.assert_status(1).assert_stderr(&format!(
        "{ARGV0}: fatal: cannot write --report-file={}: {reason}\n",
        path.display()
    ));
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .expect("chmod");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
            .unwrap_or(false)
    })
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount {
    at: PathBuf,
}

impl Mount {
    fn tmpfs(at: &Path, opts: &str) -> Option<Mount> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount { at: at.into() })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

// ---------------------------------------------------------------------------
// Report files replaced whole, or not at all

const OLD: &str = "{\"old\":true}\n";

/// The files in `dir` other than `keep`: no temporary is left behind.
fn others(dir: &Path, keep: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != keep && n != "filler")
        .collect()
}

/// RLIMIT_FSIZE below the report's size (SIGXFSZ ignored, so the write
/// fails with EFBIG): the old report stays, the run fails and says so.
#[test]
fn file_size_limit_keeps_the_old_report() {
    let dir = TempDir::new("fsize");
    let path = dir.path().join("r.json");
    std::fs::write(&path, OLD).expect("old report");
    let srv = FakeServer::tcp(Responder::new());
    let out = ours()
        .cmd()
        .via_shell("trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"")
        .args(["-M", HOST, "-m", "2"])
        .arg(format!("--report-file={}", path.display()))
        .arg(srv.endpoint())
        .run();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), OLD);
    assert_eq!(others(dir.path(), "r.json"), Vec::<String>::new());
    assert_eq!(out.status, Some(1), "{}", out.render());
    let err = out.stderr_text();
    let want = format!(
        "fatal: cannot write --report-file={}: File too large\n",
        path.display()
    );
    assert!(err.ends_with(&want), "{}", out.render());
    assert_eq!(srv.finish().len(), 2);
}

/// A full filesystem (a small tmpfs, filled up): the old report stays.
#[test]
fn full_filesystem_keeps_the_old_report() {
    const TEST: &str = "full_filesystem_keeps_the_old_report";
    if !is_root() {
        eprintln!("SKIP {TEST}: needs root to mount a tmpfs");
        return;
    }
    let dir = TempDir::new("full");
    let Some(_mount) = Mount::tmpfs(dir.path(), "size=64k") else {
        eprintln!("SKIP {TEST}: mount -t tmpfs failed");
        return;
    };
    let path = dir.path().join("r.json");
    std::fs::write(&path, OLD).expect("old report");
    fill(&dir.path().join("filler"));
    let srv = FakeServer::tcp(Responder::new());
    let arg = format!("--report-file={}", path.display());
    let out = run_with(&srv, &["-m", "2", &arg]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), OLD);
    assert_eq!(others(dir.path(), "r.json"), Vec::<String>::new());
    out.assert_status(1).assert_stderr(&format!(
        "{ARGV0}: fatal: cannot write --report-file={}: No space left on \
         device\n",
        path.display()
    ));
}

/// Writes to `path` until the filesystem is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let block = [b'x'; 512];
    while f.write_all(&block).is_ok() {}
}

/// `--report=json > /dev/full`: an error, and the report file is still
/// written.
#[test]
fn report_to_a_full_stdout_is_an_error() {
    let dir = TempDir::new("devfull");
    let path = dir.path().join("r.json");
    let srv = FakeServer::tcp(Responder::new());
    let out = ours()
        .cmd()
        .via_shell("exec \"$0\" \"$@\" > /dev/full")
        .args(["-M", HOST, "-m", "2", "--report=json"])
        .arg(format!("--report-file={}", path.display()))
        .arg(srv.endpoint())
        .run();
    assert_eq!(out.status, Some(1), "{}", out.render());
    let err = out.stderr_text();
    assert!(
        err.ends_with(
            "fatal: cannot write the report to standard output: No space \
             left on device\n"
        ),
        "{}",
        out.render()
    );
    let j = json(&std::fs::read_to_string(&path).expect("report file"));
    assert_eq!(int(&j, "accepted"), 2);
}

/// --hlog that stops taking lines during the run (a file size limit):
/// the run ends with an error naming it, not silently.
#[test]
fn hlog_that_fails_during_the_run_is_an_error() {
    let dir = TempDir::new("hlog-fsize");
    let path = dir.path().join("h.log");
    let srv = FakeServer::tcp(slow_dot(5));
    let out = ours()
        .cmd()
        .via_shell("trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"")
        .args(["-M", HOST, "-d", "--duration=3"])
        .arg(format!("--hlog={}", path.display()))
        .arg(srv.endpoint())
        .run();
    assert_eq!(out.status, Some(1), "{}", out.render());
    let want = format!(
        "fatal: cannot write --hlog={}: File too large\n",
        path.display()
    );
    assert!(out.stderr_text().ends_with(&want), "{}", out.render());
}

/// -c into a full stdout: the reference ignores the error (exit 0, no
/// word), so ours does too; only the report is ours to insist on.
#[test]
fn count_into_a_full_stdout_is_the_references_business() {
    let mut runs = vec![ours()];
    runs.extend(crate::support::reference_or_skip(
        "count_into_a_full_stdout_is_the_references_business",
    ));
    for p in runs {
        let srv = FakeServer::tcp(Responder::new());
        let out = p
            .cmd()
            .via_shell("exec \"$0\" \"$@\" > /dev/full")
            .args(["-c", "-m", "3"])
            .arg(srv.endpoint())
            .run();
        out.assert_status(0).assert_stderr("");
    }
}

/// A report that is written replaces the old one whole.
#[test]
fn report_file_replaces_the_old_one() {
    let dir = TempDir::new("replace");
    let path = dir.path().join("r.json");
    std::fs::write(&path, OLD).expect("old report");
    let srv = FakeServer::tcp(Responder::new());
    let arg = format!("--report-file={}", path.display());
    let out = run_with(&srv, &["-m", "3", &arg]);
    out.assert_status(0).assert_stderr("");
    let j = json(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(int(&j, "accepted"), 3);
    assert_eq!(j["interrupted"], Value::Null);
    assert_eq!(others(dir.path(), "r.json"), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Signals

struct Ended {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// A run of ours, started but not waited for.
struct Running(crate::support::Started);

fn start(srv: &FakeServer, args: &[&str]) -> Running {
    let run = ours()
        .cmd()
        .args(["-M", HOST])
        .args(args)
        .arg(srv.endpoint())
        .env("SMTP_SOURCE_TIMEOUT", "5")
        .timeout(SIGNAL_LIMIT)
        .start();
    Running(run)
}

impl Running {
    /// Sends `sig` ("INT", "TERM") at `at` from the start.
    fn signal_at(&mut self, sig: &str, at: Duration) {
        self.0.signal_at(sig, at);
    }

    fn wait(self) -> Ended {
        let out = self.0.finish();
        assert!(!out.timed_out, "ours did not end within {SIGNAL_LIMIT:?}");
        Ended {
            code: out.status,
            signal: out.signal,
            elapsed: out.elapsed,
            stdout: out.stdout_text(),
            stderr: out.stderr_text(),
        }
    }
}

/// Finding 7: SIGTERM ends a --duration run with both reports, marked,
/// exit 143; the counts are the server's.
#[test]
fn sigterm_ends_a_duration_run_with_every_report() {
    let dir = TempDir::new("sigterm");
    let path = dir.path().join("r.json");
    let arg = format!("--report-file={}", path.display());
    let srv = FakeServer::tcp(slow_dot(20));
    let mut run = start(
        &srv,
        &["-d", "-s", "4", "--duration=30", "--report=json", &arg],
    );
    run.signal_at("TERM", Duration::from_secs(2));
    let end = run.wait();
    let tr = srv.finish();
    assert_eq!(end.code, Some(143), "stdout {}\n{}", end.stdout, end.stderr);
    assert_eq!(end.stderr, "");
    assert!(
        end.elapsed < Duration::from_secs(4),
        "took {:?}",
        end.elapsed
    );
    let on_stdout = json(&end.stdout);
    let in_file = json(&std::fs::read_to_string(&path).expect("report"));
    for j in [&on_stdout, &in_file] {
        assert_eq!(j["interrupted"], Value::from("SIGTERM"));
        assert_eq!(j["completed"], Value::Bool(false));
        let n = int(j, "accepted");
        assert!(n > 10, "accepted {n}");
        assert_eq!(n, accepted_by(&tr), "report and server differ");
        // In-flight work finished within the grace: nothing unknown.
        assert_eq!(int(j, "unknown"), 0);
        assert_eq!(int(j, "attempted"), n);
    }
    assert_eq!(on_stdout["messages"], in_file["messages"]);
}

/// SIGINT the same way, with its own status and name; the text report
/// names the signal.
#[test]
fn sigint_ends_a_run_marked_with_its_signal() {
    let srv = FakeServer::tcp(slow_dot(20));
    let mut run = start(&srv, &["-d", "--duration=30", "--report"]);
    run.signal_at("INT", Duration::from_millis(700));
    let end = run.wait();
    drop(srv);
    assert_eq!(end.code, Some(130), "{}", end.stderr);
    assert_eq!(end.stderr, "");
    assert!(
        end.stdout
            .contains("\nended by:     interrupted by SIGINT\n"),
        "{}",
        end.stdout
    );
}

/// --report-file alone asks for a report: SIGTERM writes it.
#[test]
fn report_file_alone_catches_sigterm() {
    let dir = TempDir::new("rf-term");
    let path = dir.path().join("r.json");
    let arg = format!("--report-file={}", path.display());
    let srv = FakeServer::tcp(slow_dot(20));
    let mut run = start(&srv, &["-d", "-m", "100000", &arg]);
    run.signal_at("TERM", Duration::from_millis(700));
    let end = run.wait();
    let tr = srv.finish();
    assert_eq!(end.code, Some(143), "{}", end.stderr);
    assert_eq!(end.stdout, "");
    let j = json(&std::fs::read_to_string(&path).expect("report"));
    assert_eq!(j["interrupted"], Value::from("SIGTERM"));
    assert_eq!(int(&j, "accepted"), accepted_by(&tr));
}

/// In-flight work gets a bounded grace (min(--timeout, 5 s)); after it
/// the reports are written with what there is.
#[test]
fn grace_for_in_flight_work_is_bounded() {
    let srv = FakeServer::tcp(slow_dot(8000));
    let mut run =
        start(&srv, &["--timeout=20", "--duration=30", "--report=json"]);
    run.signal_at("TERM", Duration::from_millis(500));
    let end = run.wait();
    drop(srv);
    assert_eq!(end.code, Some(143), "{}", end.stderr);
    let took = end.elapsed;
    assert!(took >= Duration::from_millis(5300), "took {took:?}");
    assert!(took < Duration::from_millis(7500), "took {took:?}");
    let j = json(&end.stdout);
    assert_eq!(j["interrupted"], Value::from("SIGTERM"));
    // The message stalled at its end of data when the grace ran out.
    assert_eq!((int(&j, "attempted"), int(&j, "unknown")), (1, 1));
    // The intervals cover the whole run, the last partial second too.
    let intervals = j["intervals"].as_array().expect("intervals");
    let covered: f64 = intervals
        .iter()
        .map(|i| i["seconds"].as_f64().unwrap())
        .sum();
    let elapsed = j["elapsed_seconds"].as_f64().unwrap();
    assert!((covered - elapsed).abs() < 0.1, "{covered} of {elapsed} s");
}

/// A second signal ends the run at once, and still writes the reports.
#[test]
fn second_signal_ends_at_once_with_the_reports() {
    // The first signal names the interruption and sets the status.
    for (first, second, code) in [
        ("INT", "INT", 130),
        ("TERM", "INT", 143),
        ("INT", "TERM", 130),
    ] {
        let dir = TempDir::new("second");
        let path = dir.path().join("r.json");
        let arg = format!("--report-file={}", path.display());
        let srv = FakeServer::tcp(slow_dot(8000));
        let mut run = start(&srv, &["--duration=30", "--report=json", &arg]);
        run.signal_at(first, Duration::from_millis(400));
        run.signal_at(second, Duration::from_millis(800));
        let end = run.wait();
        drop(srv);
        let took = end.elapsed;
        assert_eq!(end.code, Some(code), "{first}+{second}: {}", end.stderr);
        assert!(took >= Duration::from_millis(750), "took {took:?}");
        assert!(took < Duration::from_millis(2000), "took {took:?}");
        let name = format!("SIG{first}");
        assert_eq!(json(&end.stdout)["interrupted"], Value::from(&*name));
        let j = json(&std::fs::read_to_string(&path).expect("report"));
        assert_eq!(j["interrupted"], Value::from(&*name));
    }
}

/// Finding 8: a signal during the --start-at wait: no connection at all,
/// the report marked, the signal's status.
#[test]
fn signal_during_start_at_wait_connects_nowhere() {
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + 3.0;
        let start_at = format!("--start-at={at:.3}");
        let srv = FakeServer::tcp(Responder::new());
        let mut run =
            start(&srv, &["-s", "3", "-m", "3", "--report=json", &start_at]);
        run.signal_at(sig, Duration::from_millis(700));
        let end = run.wait();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(srv.accepted(), 0, "SIG{sig}: connected");
        assert_eq!(end.code, Some(code), "SIG{sig}: {}", end.stderr);
        assert!(end.elapsed < Duration::from_secs(2), "{:?}", end.elapsed);
        let j = json(&end.stdout);
        assert_eq!(j["interrupted"], Value::from(format!("SIG{sig}")));
        assert_eq!(int(&j, "attempted"), 0);
    }
}

/// Without a long option asking for a report, both signals keep their
/// default action (death by the signal), as in the reference.
#[test]
fn plain_command_line_dies_by_the_signal() {
    for (sig, num) in [("INT", 2), ("TERM", 15)] {
        let srv = FakeServer::script(vec![Step::Stall]);
        let mut run = start(&srv, &["-m", "1"]);
        assert!(srv.wait_for_conns(1, Duration::from_secs(5)));
        run.signal_at(sig, Duration::ZERO);
        let end = run.wait();
        assert_eq!((end.code, end.signal), (None, Some(num)), "SIG{sig}");
    }
}

/// A merged report says which shards a signal cut short: shard 2 of 3
/// ends by SIGTERM, the others complete.
#[test]
fn merge_names_the_shards_a_signal_cut_short() {
    let dir = TempDir::new("merge-cut");
    let mut files = Vec::new();
    for k in 1..=3 {
        let path = dir.path().join(format!("shard{k}.json"));
        let arg = format!("--report-file={}", path.display());
        let shard = format!("--shard={k}/3");
        let srv = FakeServer::tcp(slow_dot(10));
        if k == 2 {
            let mut run = start(&srv, &[&shard, "-d", "--duration=30", &arg]);
            run.signal_at("TERM", Duration::from_millis(500));
            assert_eq!(run.wait().code, Some(143));
        } else {
            run_with(&srv, &[&shard, "-d", "-m", "6", &arg]).assert_status(0);
        }
        files.push(path);
    }
    let tool = crate::support::program(
        PathBuf::from(env!("CARGO_BIN_EXE_smtp-report")),
        "smtp-report",
    );
    let out = tool.cmd().arg("merge").args(&files).run();
    out.assert_status(0).assert_stderr("");
    let m = json(&out.stdout_text());
    assert_eq!(m["interrupted"], Value::from("SIGTERM"));
    assert_eq!(m["completed"], Value::Bool(false));
    let want: Value =
        serde_json::from_str(r#"[{"shard":2,"signal":"SIGTERM"}]"#).unwrap();
    assert_eq!(m["interrupted_shards"], want);
    let merged = dir.path().join("merged.json");
    std::fs::write(&merged, out.stdout_text()).unwrap();
    let text = tool.cmd().arg("text").arg(&merged).run();
    text.assert_status(0);
    let text = text.stdout_text();
    assert!(
        text.contains(
            "\nended by:     interrupted by SIGTERM\n\
             interrupted:  shard 2 by SIGTERM\n"
        ),
        "{text}"
    );
}

/// A signal ignored at start (a shell's background job, nohup) stays
/// ignored, as in the reference: SIGINT does not end the run.
#[test]
fn an_ignored_sigint_stays_ignored() {
    let srv = FakeServer::tcp(slow_dot(20));
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("trap '' INT; exec \"$0\" \"$@\"")
        .arg(ours().path)
        .args(["-M", HOST, "-d", "--duration=2", "--report=json"])
        .arg(srv.endpoint())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let mut out = String::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(start.elapsed() >= Duration::from_millis(1900));
    assert_eq!(json(&out)["interrupted"], Value::Null);
}

/// A signal outranks a failed --threshold: exit 130, not 99, and the
/// failed threshold is still named.
#[test]
fn a_signal_outranks_a_failed_threshold() {
    let srv = FakeServer::tcp(slow_dot(20));
    let mut run = start(
        &srv,
        &["-d", "--duration=30", "--threshold=accepted>=1000000"],
    );
    run.signal_at("INT", Duration::from_millis(700));
    let end = run.wait();
    drop(srv);
    assert_eq!(end.code, Some(130), "{}", end.stderr);
    assert!(
        end.stderr
            .contains("warning: threshold failed: accepted>=1000000"),
        "{}",
        end.stderr
    );
}
