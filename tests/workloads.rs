//! Realistic workloads and the live view (man page EXTENSIONS), against
//! the scripted server: --size-mix (distribution, byte format, report,
//! --seed), --message-dir (every file intact, as -F sends it),
//! --rcpt-file and --sender-file (exact rotation), --progress (a line a
//! second, the last one before the report on SIGINT) and the usage
//! errors. Each run has a hard time limit.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fake_server::{
    FakeServer, Responder, Step, Transcript, Verb,
};
use crate::support::{ours, spawn, Outcome, TempDir, ARGV0};

/// Hard limit for one run.
const LIMIT: Duration = Duration::from_secs(10);

/// The HELO name and address domain of every run (`-M`).
const HOST: &str = "wl.example";

/// EHLO reply of a server with PIPELINING and CHUNKING.
const EHLO_BOTH: &str = "250-fake.example\r\n250-PIPELINING\r\n250 CHUNKING";

fn run_on(srv: FakeServer, args: &[&str]) -> (Outcome, Transcript) {
    crate::support::run_ours_on(HOST, srv, args)
}

fn run(args: &[&str]) -> (Outcome, Transcript) {
    run_on(FakeServer::tcp(Responder::new()), args)
}

/// Exit 1 with exactly this fatal line, and no connection made.
fn assert_fatal(args: &[&str], text: &str) {
    let (out, tr) = run(args);
    out.assert_status(1)
        .assert_stdout(b"")
        .assert_stderr(&format!("{ARGV0}: fatal: {text}\n"));
    assert_eq!(tr.len(), 0, "no connection expected:\n{}", tr.render());
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).expect("write test file");
    p.to_string_lossy().into_owned()
}

/// Every message's content (DATA or BDAT), over all connections, in
/// the order the server got them (one connection: send order).
fn messages(tr: &Transcript) -> Vec<Vec<u8>> {
    tr.conns.iter().flat_map(|c| c.data.clone()).collect()
}

/// The body after the headers' blank line.
fn body(message: &[u8]) -> &[u8] {
    let at = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    &message[at + 4..]
}

/// Payload sizes of the messages of a --size-mix run, checked to be
/// exactly -l bodies.
fn payload_sizes(tr: &Transcript) -> Vec<usize> {
    messages(tr)
        .iter()
        .map(|m| {
            let b = body(m);
            let size = b.len() - 2;
            // What our -l sends (pinned to the reference's bytes by the
            // differential len_* cases).
            let l_body = smtp_source::message::filler(size);
            assert!(b == l_body, "not an -l body of {size} bytes");
            size
        })
        .collect()
}

/// The header lines named `name` of each message.
fn header(tr: &Transcript, name: &str) -> Vec<String> {
    messages(tr)
        .iter()
        .flat_map(|m| {
            m.split(|&b| b == b'\n')
                .filter(|l| l.starts_with(name.as_bytes()))
                .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The commands starting with `prefix`, connection after connection.
fn commands(tr: &Transcript, prefix: &str) -> Vec<String> {
    tr.conns
        .iter()
        .flat_map(|c| c.commands())
        .filter(|l| l.starts_with(prefix))
        .collect()
}

// ---------------------------------------------------------------------------
// --size-mix and --seed

const MIX: &str = "--size-mix=100:50,1k:30,5k:20";
const MIX_SIZES: [usize; 3] = [100, 1024, 5120];
const MIX_WEIGHTS: [f64; 3] = [0.5, 0.3, 0.2];

fn counts(sizes: &[usize]) -> [u64; 3] {
    let mut n = [0; 3];
    for s in sizes {
        let class = MIX_SIZES.iter().position(|c| c == s);
        n[class.unwrap_or_else(|| panic!("size {s} not in the mix"))] += 1;
    }
    n
}

#[test]
fn size_mix_distribution_matches_the_weights() {
    let m = 600;
    let (out, tr) =
        run(&[MIX, "--seed=11", "-s", "3", "-d", "-m", &m.to_string()]);
    out.assert_status(0).assert_stdout(b"").assert_stderr("");
    tr.assert_no_errors();
    let seen = counts(&payload_sizes(&tr));
    assert_eq!(seen.iter().sum::<u64>(), m);
    // Pearson's chi-square, 2 degrees of freedom: 13.8 is p = 0.001. The
    // seed is fixed, so the draw (and this figure) is the same each run.
    let chi2: f64 = seen
        .iter()
        .zip(MIX_WEIGHTS)
        .map(|(&o, w)| {
            let e = m as f64 * w;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    assert!(chi2 < 13.8, "chi-square {chi2:.2} for {seen:?}");
}

#[test]
fn size_mix_repeats_with_the_seed() {
    let sizes = |seed: &str| {
        let (out, tr) = run(&[MIX, seed, "-d", "-m", "40"]);
        out.assert_status(0).assert_stderr("");
        payload_sizes(&tr)
    };
    let a = sizes("--seed=5");
    assert_eq!(a, sizes("--seed=5"), "same seed, same sequence");
    assert_ne!(a, sizes("--seed=6"), "another seed, another sequence");
}

#[test]
fn size_mix_report_counts_each_class() {
    let (out, tr) =
        run(&[MIX, "--seed=3", "-s", "2", "-m", "30", "--report=json"]);
    out.assert_status(0).assert_stderr("");
    let seen = counts(&payload_sizes(&tr));
    let json = out.stdout_text();
    let mut want = String::from("\"size_classes\":[");
    for (i, (size, n)) in MIX_SIZES.iter().zip(seen).enumerate() {
        // Bytes: the headers and body as sent, dot included.
        let bytes: usize = messages(&tr)
            .iter()
            .filter(|d| body(d).len() - 2 == *size)
            .map(|d| d.len() + 3)
            .sum();
        let sep = if i == 0 { "" } else { "," };
        want += &format!(
            "{sep}{{\"size\":{size},\"messages\":{n},\"bytes\":{bytes}}}"
        );
    }
    want += "],\"shard\":";
    assert!(json.contains(&want), "{json}\nwant {want}");
}

#[test]
fn size_mix_with_chunking_and_pipelining_sends_each_class_exactly() {
    let srv = FakeServer::tcp(Responder::new().on(Verb::Ehlo, EHLO_BOTH));
    let (out, tr) = run_on(
        srv,
        &[
            MIX,
            "--seed=2",
            "--pipelining",
            "--chunking",
            "-d",
            "-m",
            "12",
        ],
    );
    out.assert_status(0).assert_stderr("");
    let sizes = payload_sizes(&tr);
    assert_eq!(sizes.len(), 12);
    // The same draw as over DATA: the body goes with its own message,
    // also when the next message's group is already claimed.
    let (_, plain) = run(&[MIX, "--seed=2", "-d", "-m", "12"]);
    assert_eq!(sizes, payload_sizes(&plain));
}

#[test]
fn size_mix_cannot_go_with_l_or_f() {
    assert_fatal(&["-l", "10", MIX], "--size-mix cannot be used with -l");
    assert_fatal(
        &[MIX, "-F", "/dev/null"],
        "--size-mix cannot be used with -F",
    );
    assert_fatal(&["--size-mix=2k"], "bad --size-mix value: 2k");
    assert_fatal(&["--seed=abc"], "bad --seed value: abc");
}

// ---------------------------------------------------------------------------
// --message-dir

/// Files with dot lines, CRLF lines, no final newline, an empty file.
fn corpus(dir: &TempDir) -> Vec<(String, Vec<u8>)> {
    let files: [(&str, &[u8]); 4] = [
        ("b-second", b"Subject: two\r\n\r\n.leading dot\r\n..two\r\n"),
        ("a-first", b"Subject: one\n\nline\n.\nend"),
        ("c-empty", b""),
        ("d-nul", b"X-Bin: \x00\xff\n\nlone\rcr\n"),
    ];
    let mut out: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, b)| (write(dir, n, b), b.to_vec()))
        .collect();
    // Skipped: a hidden file and a directory.
    write(dir, ".hidden", b"never sent\n");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    out.sort();
    out
}

/// What -F sends for `path` (the DATA content), from a run of ours.
fn as_f_sends(path: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["-F", path];
    args.extend_from_slice(extra);
    let srv = FakeServer::tcp(Responder::new().on(Verb::Ehlo, EHLO_BOTH));
    let (out, tr) = run_on(srv, &args);
    out.assert_status(0).assert_stderr("");
    messages(&tr).remove(0)
}

fn message_dir_case(extra: &[&str]) {
    let dir = TempDir::new("corpus");
    let files = corpus(&dir);
    let want: Vec<Vec<u8>> =
        files.iter().map(|(p, _)| as_f_sends(p, extra)).collect();
    let d = dir.path().to_string_lossy().into_owned();
    let mut args = vec!["--message-dir", &d, "-d", "-m", "10"];
    args.extend_from_slice(extra);
    let srv = FakeServer::tcp(Responder::new().on(Verb::Ehlo, EHLO_BOTH));
    let (out, tr) = run_on(srv, &args);
    out.assert_status(0).assert_stdout(b"").assert_stderr("");
    let got = messages(&tr);
    assert_eq!(got.len(), 10);
    for (i, m) in got.iter().enumerate() {
        assert!(
            *m == want[i % want.len()],
            "message {i} is not file {} as -F sends it:\n{}\n{}",
            files[i % files.len()].0,
            crate::support::escape(m),
            crate::support::escape(&want[i % want.len()])
        );
    }
}

#[test]
fn message_dir_sends_every_file_intact_in_name_order() {
    message_dir_case(&[]);
}

#[test]
fn message_dir_with_bdat_sends_files_unstuffed() {
    message_dir_case(&["--pipelining", "--chunking"]);
}

#[test]
fn message_dir_with_many_sessions_sends_each_file_equally() {
    let dir = TempDir::new("corpus-s");
    let files = corpus(&dir);
    let want: Vec<Vec<u8>> =
        files.iter().map(|(p, _)| as_f_sends(p, &[])).collect();
    let d = dir.path().to_string_lossy().into_owned();
    let (out, tr) = run(&["--message-dir", &d, "-s", "4", "-m", "20"]);
    out.assert_status(0).assert_stderr("");
    let mut seen = vec![0; want.len()];
    for m in messages(&tr) {
        let i = want.iter().position(|w| *w == m).expect("a corpus file");
        seen[i] += 1;
    }
    assert_eq!(seen, vec![5; want.len()]);
}

#[test]
fn message_dir_errors_come_before_any_connection() {
    let dir = TempDir::new("corpus-bad");
    let d = dir.path().to_string_lossy().into_owned();
    assert_fatal(
        &["--message-dir", &d],
        &format!("--message-dir {d}: no files"),
    );
    let missing = format!("{d}/missing");
    assert_fatal(
        &["--message-dir", &missing],
        &format!("--message-dir: open {missing}: No such file or directory"),
    );
    // Sparse: too large without taking the space.
    let big = std::fs::File::create(dir.path().join("big")).expect("create");
    big.set_len(257 << 20).expect("set_len");
    assert_fatal(
        &["--message-dir", &d],
        &format!("--message-dir {d}: more than 256 MiB of messages"),
    );
    assert_fatal(
        &["-l", "5", "--message-dir", &d],
        "--message-dir cannot be used with -l",
    );
    assert_fatal(
        &["--message-dir", &d, MIX],
        "--message-dir cannot be used with --size-mix",
    );
}

// ---------------------------------------------------------------------------
// --rcpt-file and --sender-file

fn address_files(dir: &TempDir) -> (String, String) {
    let rcpts = write(
        dir,
        "rcpts",
        b"# test recipients\nr1@x.ex\n  r2@x.ex \r\n\nr3@x.ex\n#r9@x.ex\nr4@x.ex\nr5@x.ex",
    );
    let senders = write(dir, "senders", b"s1@y.ex\ns2@y.ex\ns3@y.ex\n");
    (rcpts, senders)
}

#[test]
fn rcpt_file_rotation_is_exact_with_r() {
    let dir = TempDir::new("rcpts");
    let (rcpts, _) = address_files(&dir);
    let (out, tr) = run(&["--rcpt-file", &rcpts, "-r", "2", "-d", "-m", "6"]);
    out.assert_status(0).assert_stderr("");
    let r = |n: u32| format!("RCPT TO:<r{n}@x.ex>");
    let want: Vec<String> = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]
        .into_iter()
        .map(r)
        .collect();
    assert_eq!(commands(&tr, "RCPT"), want);
    // To: names the last recipient of each message.
    let to: Vec<String> = [2, 4, 1, 3, 5, 2]
        .into_iter()
        .map(|n| format!("To: <r{n}@x.ex>"))
        .collect();
    assert_eq!(header(&tr, "To: "), to);
}

#[test]
fn rcpt_file_with_many_sessions_keeps_groups_consecutive() {
    let dir = TempDir::new("rcpts-s");
    let (rcpts, _) = address_files(&dir);
    let (out, tr) =
        run(&["--rcpt-file", &rcpts, "-r", "3", "-s", "4", "-m", "10"]);
    out.assert_status(0).assert_stderr("");
    let mut groups: Vec<Vec<String>> = tr
        .conns
        .iter()
        .map(|c| {
            c.commands()
                .into_iter()
                .filter(|l| l.starts_with("RCPT"))
                .collect()
        })
        .collect();
    let mut want: Vec<Vec<String>> = (0..10)
        .map(|n| {
            (0..3)
                .map(|i| format!("RCPT TO:<r{}@x.ex>", (n * 3 + i) % 5 + 1))
                .collect()
        })
        .collect();
    groups.sort();
    want.sort();
    assert_eq!(groups, want);
}

#[test]
fn sender_file_rotation_in_mail_and_from() {
    let dir = TempDir::new("senders");
    let (_, senders) = address_files(&dir);
    let (out, tr) = run(&["--sender-file", &senders, "-d", "-m", "4"]);
    out.assert_status(0).assert_stderr("");
    let n = [1, 2, 3, 1];
    let mail: Vec<String> =
        n.iter().map(|k| format!("MAIL FROM:<s{k}@y.ex>")).collect();
    assert_eq!(commands(&tr, "MAIL"), mail);
    let from: Vec<String> =
        n.iter().map(|k| format!("From: <s{k}@y.ex>")).collect();
    assert_eq!(header(&tr, "From: "), from);
}

#[test]
fn sender_and_rcpt_files_pipelined_look_ahead_keeps_the_order() {
    let dir = TempDir::new("both");
    let (rcpts, senders) = address_files(&dir);
    let srv = FakeServer::tcp(Responder::new().on(Verb::Ehlo, EHLO_BOTH));
    let args = [
        "--rcpt-file",
        &rcpts,
        "--sender-file",
        &senders,
        "--pipelining",
        "-d",
        "-m",
        "4",
    ];
    let (out, tr) = run_on(srv, &args);
    out.assert_status(0).assert_stderr("");
    let mail: Vec<String> = [1, 2, 3, 1]
        .iter()
        .map(|k| format!("MAIL FROM:<s{k}@y.ex>"))
        .collect();
    assert_eq!(commands(&tr, "MAIL"), mail);
    let from: Vec<String> = [1, 2, 3, 1]
        .iter()
        .map(|k| format!("From: <s{k}@y.ex>"))
        .collect();
    assert_eq!(header(&tr, "From: "), from);
    let to: Vec<String> = [1, 2, 3, 4]
        .iter()
        .map(|k| format!("To: <r{k}@x.ex>"))
        .collect();
    assert_eq!(header(&tr, "To: "), to);
}

#[test]
fn address_file_errors() {
    let dir = TempDir::new("addr-bad");
    let (rcpts, senders) = address_files(&dir);
    assert_fatal(
        &["-t", "a@b", "--rcpt-file", &rcpts],
        "--rcpt-file cannot be used with -t",
    );
    assert_fatal(
        &["--rcpt-file", &rcpts, "-N"],
        "--rcpt-file cannot be used with -N",
    );
    assert_fatal(
        &["--sender-file", &senders, "-f", "a@b"],
        "--sender-file cannot be used with -f",
    );
    let empty = write(&dir, "empty", b"# nothing\n\n   \n");
    assert_fatal(
        &["--rcpt-file", &empty],
        &format!("--rcpt-file {empty}: no addresses"),
    );
    let missing = format!("{}/missing", dir.path().display());
    assert_fatal(
        &["--sender-file", &missing],
        &format!("--sender-file: open {missing}: No such file or directory"),
    );
}

// ---------------------------------------------------------------------------
// --progress

/// A progress line: `argv0: <secs>s: <n> accepted, <r> msg/s, <c>
/// connected, <e> errors, p99 <x> ms`; (secs, accepted, errors).
fn progress_line(line: &str) -> (f64, u64, u64) {
    // argv0 is the path when run through a shell.
    let at = line
        .find(&format!("{ARGV0}: "))
        .unwrap_or_else(|| panic!("no prefix: {line:?}"));
    let rest = &line[at + ARGV0.len() + 2..];
    let words: Vec<&str> = rest.split_whitespace().collect();
    assert_eq!(words.len(), 12, "{line:?}");
    assert_eq!(
        [words[2], words[4], words[6], words[8], words[9], words[11]],
        ["accepted,", "msg/s,", "connected,", "errors,", "p99", "ms"],
        "{line:?}"
    );
    let secs = words[0].trim_end_matches("s:").parse().expect("seconds");
    let accepted = words[1].parse().expect("accepted");
    let errors = words[7].parse().expect("errors");
    (secs, accepted, errors)
}

#[test]
fn progress_prints_a_line_each_second_under_rate() {
    let (out, _tr) = run(&["--progress", "--rate=20", "-m", "50", "-s", "2"]);
    out.assert_status(0).assert_stdout(b"");
    let err = out.stderr_text();
    assert!(!err.contains('\r'), "redirected: no rewriting\n{err:?}");
    let lines: Vec<(f64, u64, u64)> = err.lines().map(progress_line).collect();
    // At 1 s and 2 s, then the last line when the run ends (about 2.5 s).
    assert_eq!(lines.len(), 3, "{err}");
    assert_eq!(lines[0].0, 1.0, "{err}");
    assert_eq!(lines[1].0, 2.0, "{err}");
    assert!(lines[2].0 >= 2.4 && lines[2].0 < 4.0, "{err}");
    assert!((15..=25).contains(&lines[0].1), "{err}");
    assert!((35..=45).contains(&lines[1].1), "{err}");
    assert_eq!((lines[2].1, lines[2].2), (50, 0), "{err}");
}

#[test]
fn progress_counts_errors() {
    let srv = FakeServer::tcp(Responder::new().on_nth(
        Verb::Rcpt,
        1,
        "550 5.1.1 no such user",
    ));
    let (out, _) = run_on(srv, &["--progress", "-A", "-d", "-m", "3"]);
    out.assert_status(0);
    let err = out.stderr_text();
    let last = err.lines().last().expect("a line");
    let (_, accepted, errors) = progress_line(last);
    assert_eq!((accepted, errors), (2, 1), "{err}");
}

#[test]
fn sigint_prints_the_last_progress_line_before_the_report() {
    let srv = FakeServer::tcp(Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(50), Step::send("250 2.0.0 Ok: queued")],
    ));
    // stdout and stderr into one pipe, to see their order.
    let p = ours();
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&1")
        .arg(&p.path)
        .args([
            "-M",
            HOST,
            "--progress",
            "--report=json",
            "-d",
            "-m",
            "1000",
        ])
        .arg(srv.endpoint())
        .env("SMTP_SOURCE_TIMEOUT", "5")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = c.spawn().expect("spawn ours");
    let mut so = child.stdout.take().expect("stdout");
    let reader = spawn("progress-out", move || {
        let mut v = String::new();
        let _ = so.read_to_string(&mut v);
        v
    });
    std::thread::sleep(Duration::from_millis(1300));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ours did not end after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let text = reader.join().unwrap_or_default();
    drop(srv);
    // 128 + SIGINT, as a shell reports a job a SIGINT ended.
    assert_eq!(status.code(), Some(130), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    let (report, progress) = lines.split_last().expect("lines");
    assert!(report.starts_with("{\"version\":1"), "{text}");
    // One line at 1 s, then the last one, at the SIGINT.
    assert_eq!(progress.len(), 2, "{text}");
    let last = progress_line(progress[1]);
    assert!(last.0 >= 1.2 && last.0 < 3.0, "{text}");
    let accepted = format!("\"accepted\":{},", last.1);
    assert!(report.contains(&accepted), "{text}");
}

#[test]
fn progress_is_quiet_about_everything_else() {
    // Without --progress, stderr stays silent (the old contract).
    let (out, _) = run(&["-m", "2", "-s", "2"]);
    out.assert_status(0).assert_stderr("");
    let (with, _) = run(&["-m", "2", "-s", "2", "--progress"]);
    with.assert_status(0).assert_stdout(b"");
    let text = with.stderr_text();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!(progress_line(text.trim_end()).1, 2);
}

/// tmux on PATH, or None after `support::skip`.
fn tmux(test: &str) -> Option<()> {
    let found = Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        crate::support::skip(
            test,
            "tmux is not installed (apt-get install tmux; .ci/run installs it)",
        );
    }
    found.then_some(())
}

/// The pane's text once `done` shows in it (or the time limit passes).
fn pane_when(socket: &str, done: &str) -> String {
    let start = Instant::now();
    loop {
        let out = Command::new("tmux")
            .args(["-L", socket, "capture-pane", "-p", "-t", "t"])
            .output()
            .expect("tmux capture-pane");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(done) || start.elapsed() > LIMIT {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// In a real terminal (tmux) 80 and 60 columns wide, --progress run by
/// its path rewrites one line: the pane ends with the last line alone,
/// under the program's name, within the width, with the rate target.
#[test]
fn progress_rewrites_one_line_in_a_narrow_terminal() {
    if tmux("workloads::progress_rewrites_one_line_in_a_narrow_terminal")
        .is_none()
    {
        return;
    }
    for columns in [80, 60] {
        let srv = FakeServer::tcp(Responder::new());
        let socket =
            format!("smtp-source-test-{}-{columns}", std::process::id());
        let cmd = format!(
            "'{}' -M {HOST} --progress --rate=20 -m 50 -s 2 {}; echo EXIT=$?; \
sleep 30",
            ours().path.display(),
            srv.endpoint()
        );
        let started = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-s", "t", "-x", &columns.to_string(), "-y", "20", &cmd])
            .env("SMTP_SOURCE_TIMEOUT", "5")
            .status()
            .expect("tmux new-session");
        assert!(started.success());
        let pane = pane_when(&socket, "EXIT=");
        let _ = Command::new("tmux")
            .args(["-L", &socket, "kill-server"])
            .status();
        assert_eq!(srv.finish().len(), 50, "{pane}");
        let lines: Vec<&str> =
            pane.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 2, "{columns} columns:\n{pane}");
        assert_eq!(lines[1], "EXIT=0", "{pane}");
        let line = lines[0].trim_end();
        assert!(line.starts_with("smtp-source: "), "{pane}");
        assert!(line.len() < columns, "{columns} columns: {line:?}");
        assert!(line.contains(" 50 ok "), "{pane}");
        assert!(line.contains("/20"), "target rate: {pane}");
    }
}
