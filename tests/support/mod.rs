//! Shared helpers for the integration tests: run a smtp-source binary
//! (ours or the reference) with a hard time limit, capture what it did,
//! and compare bytes with readable diffs. The scripted SMTP peer lives in
//! [`fake_server`].
//!
//! Typical use:
//!
//! ```ignore
//! let srv = FakeServer::responder();
//! let out = ours().cmd().args(["-m", "2"]).arg(srv.endpoint()).run();
//! let tr = srv.finish();
//! out.assert_status(0).assert_stderr("");
//! assert_eq!(tr.len(), 2);
//! ```
#![allow(dead_code)]

pub mod counting_server;
pub mod fake_server;
pub mod model;
pub mod prometheus;
pub mod tls_server;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The argv[0] every run uses by default, so that stderr prefixes
/// (`smtp-source: fatal: ...`) do not depend on where a binary lives.
pub const ARGV0: &str = "smtp-source";

/// Hard limit for one run unless [`Cmd::timeout`] says otherwise.
pub const DEFAULT_RUN_LIMIT: Duration = Duration::from_secs(10);

/// `SMTP_SOURCE_TIMEOUT` given to every run (our stage timeout, man page
/// NOTES X1).
pub const DEFAULT_STAGE_TIMEOUT: &str = "5";

/// A smtp-source binary and the environment it needs.
#[derive(Clone, Debug)]
pub struct Program {
    pub path: PathBuf,
    pub env: Vec<(OsString, OsString)>,
    /// "ours" or "reference" (for messages).
    pub label: &'static str,
}

/// Our binary: `CARGO_BIN_EXE_smtp-source`, unless the environment
/// variable `SMTP_SOURCE_UNDER_TEST` names another binary (used to
/// self-check the harness by running the reference as "ours").
/// Ours with `-M host`, `args` and the server's endpoint, within
/// `DEFAULT_RUN_LIMIT`; the outcome and what the server saw.
pub fn run_ours_on(
    host: &str,
    srv: fake_server::FakeServer,
    args: &[&str],
) -> (Outcome, fake_server::Transcript) {
    let out = ours()
        .cmd()
        .args(["-M", host])
        .args(args)
        .arg(srv.endpoint())
        .timeout(DEFAULT_RUN_LIMIT)
        .run();
    (out, srv.finish())
}

pub fn ours() -> Program {
    if let Some(p) = std::env::var_os("SMTP_SOURCE_UNDER_TEST") {
        return program(PathBuf::from(p), "ours");
    }
    program(PathBuf::from(env!("CARGO_BIN_EXE_smtp-source")), "ours")
}

/// The reference (Debian's Postfix 3.7.11 smtp-source), from
/// `SMTP_SOURCE_REFERENCE` or `$CARGO_MANIFEST_DIR/target/reference/
/// usr/sbin/smtp-source` (`make reference`). None when absent.
pub fn reference() -> Option<Program> {
    let path = match std::env::var_os("SMTP_SOURCE_REFERENCE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/reference/usr/sbin/smtp-source"),
    };
    path.is_file().then(|| program(path, "reference"))
}

/// [`reference`], or a [`skip`] naming `test` when it is absent (the
/// caller then returns early).
pub fn reference_or_skip(test: &str) -> Option<Program> {
    let r = reference();
    if r.is_none() {
        skip(
            test,
            "reference smtp-source not found (run `make reference` or set \
             SMTP_SOURCE_REFERENCE)",
        );
    }
    r
}

/// Every test that does not run (or runs only in part) because the
/// machine lacks something says so here, and then returns early, so the
/// runner counts it as passed. To keep that honest:
/// - with `SMTP_SOURCE_REQUIRE_ALL=1` (set by .ci/run, where everything
///   is installed) a skip is a failure: it panics with `why`;
/// - with `SMTP_SOURCE_SKIP_LOG=FILE` (set by `make test`) it appends
///   `test<TAB>why` to FILE, which the Makefile sums up after the
///   runner's summary (tests/skip-summary.sh);
/// - it always prints `SKIP test: why` on stderr.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("SMTP_SOURCE_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{test} cannot run: {why} (SMTP_SOURCE_REQUIRE_ALL=1)");
    }
    eprintln!("SKIP {test}: {why}");
    let Some(log) = std::env::var_os("SMTP_SOURCE_SKIP_LOG") else {
        return;
    };
    // One write of one short line with O_APPEND: tests running in
    // parallel processes do not interleave their lines.
    let line = format!("{test}\t{}\n", why.replace(['\t', '\n'], " "));
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = appended {
        panic!("cannot record the skip of {test} in {log:?}: {e}");
    }
}

/// A Program for `path`; a Debian-layout binary
/// (`DIR/usr/sbin/smtp-source`) gets `LD_LIBRARY_PATH=DIR/usr/lib/postfix`.
pub fn program(path: PathBuf, label: &'static str) -> Program {
    let mut env = Vec::new();
    if let Some(usr) = path.parent().and_then(Path::parent) {
        let lib = usr.join("lib/postfix");
        if lib.is_dir() {
            env.push(("LD_LIBRARY_PATH".into(), lib.into_os_string()));
        }
    }
    Program { path, env, label }
}

impl Program {
    /// A command line for this program: argv[0] is [`ARGV0`], the limit is
    /// [`DEFAULT_RUN_LIMIT`], `SMTP_SOURCE_TIMEOUT` is
    /// [`DEFAULT_STAGE_TIMEOUT`] and `LC_ALL=C`.
    pub fn cmd(&self) -> Cmd {
        let mut env = vec![
            ("SMTP_SOURCE_TIMEOUT".into(), DEFAULT_STAGE_TIMEOUT.into()),
            ("LC_ALL".into(), "C".into()),
        ];
        env.extend(self.env.iter().cloned());
        Cmd {
            program: self.clone(),
            args: Vec::new(),
            env,
            env_remove: Vec::new(),
            argv0: Some(ARGV0.into()),
            limit: DEFAULT_RUN_LIMIT,
            cwd: None,
            shell: None,
        }
    }
}

/// A configured run of a [`Program`] (builder style).
#[derive(Clone, Debug)]
pub struct Cmd {
    pub program: Program,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub env_remove: Vec<OsString>,
    pub argv0: Option<OsString>,
    pub limit: Duration,
    pub cwd: Option<PathBuf>,
    /// Run `/bin/sh -c <script> <program> <args...>` instead.
    pub shell: Option<String>,
}

impl Cmd {
    pub fn arg(mut self, a: impl Into<OsString>) -> Cmd {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set (or override) an environment variable.
    pub fn env(
        mut self,
        k: impl Into<OsString>,
        v: impl Into<OsString>,
    ) -> Cmd {
        let k = k.into();
        self.env.retain(|(key, _)| *key != k);
        self.env.push((k, v.into()));
        self
    }

    /// Remove an environment variable (also one set by default).
    pub fn env_remove(mut self, k: impl Into<OsString>) -> Cmd {
        let k = k.into();
        self.env.retain(|(key, _)| *key != k);
        self.env_remove.push(k);
        self
    }

    /// Our stage timeout (`SMTP_SOURCE_TIMEOUT`), in seconds.
    pub fn stage_timeout(self, secs: u32) -> Cmd {
        self.env("SMTP_SOURCE_TIMEOUT", secs.to_string())
    }

    /// Hard limit: the child is killed after this and the run fails.
    pub fn timeout(mut self, limit: Duration) -> Cmd {
        self.limit = limit;
        self
    }

    /// Run with this argv[0]; None keeps the real path.
    pub fn argv0(mut self, name: Option<&str>) -> Cmd {
        self.argv0 = name.map(Into::into);
        self
    }

    /// Run through `/bin/sh -c script`, with the program's path as `$0`
    /// and the arguments as `$1...` (e.g. `ulimit -n 64 && exec "$0" "$@"`).
    /// argv[0] of the program is then whatever the script execs it as.
    pub fn via_shell(mut self, script: &str) -> Cmd {
        self.shell = Some(script.to_string());
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Cmd {
        self.cwd = Some(dir.into());
        self
    }

    /// Run and wait; panics (with the captured output) if the hard limit
    /// was hit.
    pub fn run(&self) -> Outcome {
        let out = self.run_unchecked();
        if out.timed_out {
            panic!(
                "{} did not finish within {:?} and was killed\n{}",
                self.describe(),
                self.limit,
                out.render()
            );
        }
        out
    }

    /// Run and wait; a run that hit the limit is killed and returned
    /// with `timed_out` set.
    pub fn run_unchecked(&self) -> Outcome {
        self.start().finish()
    }

    /// Starts the command without waiting for it: its output is read as
    /// it comes; `Started::finish` waits (bounded by the limit) and gives
    /// the outcome. For runs that are signalled while they go on.
    pub fn start(&self) -> Started {
        let mut c = match &self.shell {
            Some(script) => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(script).arg(&self.program.path);
                c
            }
            None => Command::new(&self.program.path),
        };
        c.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for k in &self.env_remove {
            c.env_remove(k);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let (Some(a0), None) = (&self.argv0, &self.shell) {
            c.arg0(a0);
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        let start = Instant::now();
        let mut child = c.spawn().unwrap_or_else(|e| {
            panic!("cannot start {}: {e}", self.describe())
        });
        Started {
            out_reader: reader(child.stdout.take()),
            err_reader: reader(child.stderr.take()),
            child,
            start,
            label: self.program.label,
            command: self.describe(),
            limit: self.limit,
        }
    }

    /// `label: argv0 args...` for messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} ({}):",
            self.program.label,
            self.program.path.display()
        );
        for a in &self.args {
            let _ = write!(s, " {}", shell_quote(&a.to_string_lossy()));
        }
        s
    }
}

fn reader<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> thread::JoinHandle<Vec<u8>> {
    thread::Builder::new()
        .name("child-pipe".into())
        .spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
        .expect("spawn pipe reader")
}

/// A command started by `Cmd::start`, not yet waited for.
pub struct Started {
    child: std::process::Child,
    start: Instant,
    out_reader: thread::JoinHandle<Vec<u8>>,
    err_reader: thread::JoinHandle<Vec<u8>>,
    label: &'static str,
    command: String,
    limit: Duration,
}

impl Started {
    /// Sends `sig` ("INT", "TERM") at `at` from the start, unless the
    /// command has ended by then.
    pub fn signal_at(&mut self, sig: &str, at: Duration) {
        thread::sleep(at.saturating_sub(self.start.elapsed()));
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status();
    }

    /// Waits for the end (killing the command at its limit) and gives
    /// what it did.
    pub fn finish(mut self) -> Outcome {
        let deadline = self.start + self.limit;
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    let _ = self.child.kill();
                    break self.child.wait().expect("wait for killed child");
                }
                Ok(None) => thread::sleep(Duration::from_millis(2)),
                Err(e) => panic!("wait for {}: {e}", self.command),
            }
        };
        Outcome {
            label: self.label,
            command: self.command,
            status: status.code(),
            signal: status.signal(),
            elapsed: self.start.elapsed(),
            stdout: self.out_reader.join().unwrap_or_default(),
            stderr: self.err_reader.join().unwrap_or_default(),
            timed_out,
        }
    }
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@=+,[]".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub label: &'static str,
    pub command: String,
    /// Exit status, None if killed by a signal.
    pub status: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
    /// The hard limit was hit and the child was killed.
    pub timed_out: bool,
}

impl Outcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// A readable dump for failure messages.
    pub fn render(&self) -> String {
        format!(
            "command: {}\nexit status: {:?} signal: {:?} elapsed: {:.2}s{}\n\
             stdout: {}\nstderr:\n{}",
            self.command,
            self.status,
            self.signal,
            self.elapsed.as_secs_f64(),
            if self.timed_out {
                " (KILLED: time limit)"
            } else {
                ""
            },
            escape(&self.stdout),
            escape_lines(&self.stderr)
        )
    }

    pub fn assert_status(&self, code: i32) -> &Outcome {
        assert!(
            self.status == Some(code),
            "expected exit status {code}\n{}",
            self.render()
        );
        self
    }

    pub fn assert_success(&self) -> &Outcome {
        self.assert_status(0)
    }

    pub fn assert_stdout(&self, expected: &[u8]) -> &Outcome {
        assert_bytes_eq(
            &format!("stdout of {}", self.command),
            expected,
            &self.stdout,
        );
        self
    }

    pub fn assert_stderr(&self, expected: &str) -> &Outcome {
        assert_bytes_eq(
            &format!("stderr of {}", self.command),
            expected.as_bytes(),
            &self.stderr,
        );
        self
    }

    /// stderr with the [`filter_verbose`] lines removed.
    pub fn assert_stderr_filtered(&self, expected: &str) -> &Outcome {
        assert_bytes_eq(
            &format!("stderr of {} (filtered)", self.command),
            expected.as_bytes(),
            &filter_verbose(&self.stderr),
        );
        self
    }

    pub fn assert_elapsed_below(&self, limit: Duration) -> &Outcome {
        assert!(
            self.elapsed < limit,
            "expected to finish within {limit:?}\n{}",
            self.render()
        );
        self
    }
}

// ---------------------------------------------------------------------------
// Normalizing output

/// Remove the Postfix-internal `-v` trace lines that we deliberately do
/// not reproduce (man page NOTES X12): `name_mask:`,
/// `smtp_stream_setup:`, `vstream_tweak_tcp:`, `fd=N: stream buffer size`,
/// and the `-v -v -v` event-loop and stream traces (`event_*`,
/// `vstream_*`). Works on lines of the form `<argv0>: <text>` for any argv0
/// without `: ` in it.
pub fn filter_verbose(stderr: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in stderr.split_inclusive(|&b| b == b'\n') {
        if !is_internal_trace(line) {
            out.extend_from_slice(line);
        }
    }
    out
}

fn is_internal_trace(line: &[u8]) -> bool {
    let Some(p) = line.windows(2).position(|w| w == b": ") else {
        return false;
    };
    let text = &line[p + 2..];
    const PREFIXES: [&[u8]; 5] = [
        b"name_mask: ",
        b"smtp_stream_setup: ",
        b"vstream_tweak_tcp: ",
        b"event_",
        b"vstream_",
    ];
    if PREFIXES.iter().any(|pre| text.starts_with(pre)) {
        return true;
    }
    // fd=3: stream buffer size old=0 new=130964
    text.starts_with(b"fd=") && contains(text, b": stream buffer size ")
}

/// Replace every `<from>: ` line prefix by `<to>: ` (and the argv0 inside
/// the usage text), for runs that used a real path as argv[0].
pub fn normalize_argv0(stderr: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(stderr);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let line = match line.strip_prefix(&format!("{from}: ")) {
            Some(rest) => format!("{to}: {rest}"),
            None => line.to_string(),
        };
        out.push_str(
            &line
                .replace(&format!("usage: {from} "), &format!("usage: {to} ")),
        );
    }
    out.into_bytes()
}

/// The usage line exactly as smtp-source prints it (man page
/// DIAGNOSTICS).
pub fn usage_line(argv0: &str) -> String {
    format!(
        "{argv0}: fatal: usage: {argv0} -cdLNov -s sess -l msglen -m msgs \
         -C count -M myhostname -f from -t to -r rcptcount -R delay \
         -w delay host[:port]\n"
    )
}

// ---------------------------------------------------------------------------
// Diffs

/// Render bytes as an escaped string: printable ASCII as is, `\r`, `\n`,
/// `\t`, `\\`, and `\xNN` for everything else.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

/// One escaped line per input line (split after LF), each prefixed by
/// two spaces.
pub fn escape_lines(bytes: &[u8]) -> String {
    let mut s = String::new();
    for l in bytes.split_inclusive(|&b| b == b'\n') {
        let _ = writeln!(s, "  {}", escape(l));
    }
    s
}

/// None when equal, else a line diff (`-` expected, `+` actual) with
/// escaped lines.
pub fn diff(expected: &[u8], actual: &[u8]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let a: Vec<&[u8]> = expected.split_inclusive(|&b| b == b'\n').collect();
    let b: Vec<&[u8]> = actual.split_inclusive(|&b| b == b'\n').collect();
    let mut out = String::new();
    for op in line_diff(&a, &b) {
        let _ = match op {
            Op::Same(l) => writeln!(out, "   {}", escape(l)),
            Op::Del(l) => writeln!(out, " - {}", escape(l)),
            Op::Add(l) => writeln!(out, " + {}", escape(l)),
        };
    }
    Some(out)
}

enum Op<'a> {
    Same(&'a [u8]),
    Del(&'a [u8]),
    Add(&'a [u8]),
}

/// LCS line diff; long inputs fall back to a positional comparison.
fn line_diff<'a>(a: &[&'a [u8]], b: &[&'a [u8]]) -> Vec<Op<'a>> {
    let (n, m) = (a.len(), b.len());
    if n * m > 4_000_000 {
        let mut ops = Vec::new();
        for i in 0..n.max(m) {
            match (a.get(i), b.get(i)) {
                (Some(x), Some(y)) if x == y => ops.push(Op::Same(x)),
                (x, y) => {
                    ops.extend(x.map(|l| Op::Del(l)));
                    ops.extend(y.map(|l| Op::Add(l)));
                }
            }
        }
        return ops;
    }
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(Op::Del(a[i]));
            i += 1;
        } else {
            ops.push(Op::Add(b[j]));
            j += 1;
        }
    }
    ops
}

/// Assert two byte strings are equal, showing an escaped line diff.
pub fn assert_bytes_eq(what: &str, expected: &[u8], actual: &[u8]) {
    if let Some(d) = diff(expected, actual) {
        panic!("{what} differs (- expected, + actual):\n{d}");
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Environment helpers

/// A private directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "ss-{tag}.{}.{}.{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loopback TCP port that refuses connections: a socket is bound to it
/// (so no other test can get the port while this value lives) but never
/// listens, so a connect gets an RST (`Connection refused`).
#[derive(Debug)]
pub struct RefusingPort {
    _sock: socket2::Socket,
    pub port: u16,
}

impl RefusingPort {
    pub fn new() -> RefusingPort {
        use socket2::{Domain, Socket, Type};
        let sock =
            Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: std::net::SocketAddr =
            "127.0.0.1:0".parse().expect("address");
        sock.bind(&any.into()).expect("bind 127.0.0.1:0");
        let port = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .expect("local port");
        RefusingPort { _sock: sock, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Default for RefusingPort {
    fn default() -> Self {
        RefusingPort::new()
    }
}

/// `tests/data/<name>`.
pub fn data_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The machine hostname (what smtp-source uses without -M).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Run `f` on a named thread and return its join handle (the clippy
/// config bans plain `thread::spawn`).
pub fn spawn<T, F>(name: &str, f: F) -> thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn test thread")
}
