//! A scripted SMTP/LMTP peer for the integration tests.
//!
//! Std-only, apart from `socket2` to turn a close into an RST. It binds
//! `127.0.0.1:0` or a unix socket in a private temp dir, serves every
//! connection on its own thread, and records per connection exactly what the
//! client sent (raw bytes), what the server sent, and how the connection
//! ended (client FIN vs. RST, server close, watchdog).
//!
//! Two behaviours:
//! * [`Script`]: a fixed list of [`Step`]s per connection (Exim's
//!   `server.c` style): send, expect, stall, close, reset, ...
//! * [`Responder`]: a small, normal SMTP/LMTP server with per-command
//!   overridable replies, for runs with many messages and sessions.
//!
//! TLS: [`Step::StartTls`] runs a rustls server handshake (certificates
//! from [`super::tls_server`]) and the connection goes on inside TLS; the
//! record then holds the plaintext part and the decrypted part of what
//! the client sent, split at [`TlsInfo::at`]. As STARTTLS reply, or first
//! of all for SMTPS ([`Responder::before_banner`]).
//!
//! Every wait is bounded: reads tick every few milliseconds and check the
//! server's watchdog deadline and its stop flag, so a misbehaving client can
//! never hang `cargo test`. Call [`FakeServer::finish`] after the client has
//! exited to get the [`Transcript`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::{HandshakeKind, ServerConnection};

use super::tls_server::{TlsInfo, TlsServer};
use super::{escape, TempDir};

/// How often blocked reads, sleeps and stalls look at the stop flag and
/// the watchdog.
const TICK: Duration = Duration::from_millis(10);

/// Default lifetime of a server: after this, every connection is dropped
/// and recorded as [`End::Watchdog`].
pub const DEFAULT_WATCHDOG: Duration = Duration::from_secs(20);

/// A line longer than this (without LF) is returned as it is, so a client
/// that never sends LF cannot make the server buffer without end.
const MAX_LINE: usize = 1 << 24;

// ---------------------------------------------------------------------------
// Steps

/// One action of a scripted connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes, then CRLF.
    Send(Vec<u8>),
    /// Send exactly these bytes (bare LF, NUL, no terminator, ...).
    Raw(Vec<u8>),
    /// Read one line from the client; it must start with this prefix. On a
    /// mismatch the script stops (an error is recorded) and the server
    /// just keeps recording until the client goes away.
    Expect(Vec<u8>),
    /// Read DATA content up to the line ".\r\n" and record the body bytes
    /// (everything before the dot line) in [`Conn::data`].
    ExpectData,
    /// Pause (the connection is not read meanwhile).
    Sleep(Duration),
    /// Never speak again; keep reading and recording until the client
    /// closes, or the server stops.
    Stall,
    /// Keep the socket open but never read from it again.
    StopReading,
    /// Send `line` (exact bytes) again and again, every `every`, until the
    /// client goes away or the server stops.
    Stream { line: Vec<u8>, every: Duration },
    /// Send `bytes` one byte at a time, one every `every`.
    Trickle { bytes: Vec<u8>, every: Duration },
    /// Half-close: send FIN (shutdown write side). Reading and recording
    /// go on, so what the client sends afterwards is still captured.
    Close,
    /// SO_LINGER 0, then close: the client sees an RST. Nothing more is
    /// recorded on this connection.
    Reset,
    /// Read exactly this many bytes (binary: a PROXY v2 header, the
    /// start of a ClientHello) and note them as one client event.
    Read(usize),
    /// Run a TLS server handshake, then go on inside TLS. Bytes already
    /// read past the last line (a ClientHello that came with a PROXY
    /// header) go to the handshake. A failed handshake ends the
    /// connection ([`End::Tls`]).
    StartTls(TlsServer),
}

impl Step {
    /// [`Step::Send`]: the bytes plus CRLF. `"250-a\r\n250 b"` sends a
    /// two-line reply.
    pub fn send(line: impl AsRef<[u8]>) -> Step {
        Step::Send(line.as_ref().to_vec())
    }

    /// [`Step::Raw`]: exactly these bytes.
    pub fn raw(bytes: impl AsRef<[u8]>) -> Step {
        Step::Raw(bytes.as_ref().to_vec())
    }

    /// [`Step::Expect`]: one client line starting with `prefix`.
    pub fn expect(prefix: impl AsRef<[u8]>) -> Step {
        Step::Expect(prefix.as_ref().to_vec())
    }

    /// [`Step::Sleep`] for `ms` milliseconds.
    pub fn sleep_ms(ms: u64) -> Step {
        Step::Sleep(Duration::from_millis(ms))
    }

    /// The wire bytes this step sends, if it sends anything at once.
    fn sent_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Step::Send(b) => {
                let mut v = b.clone();
                v.extend_from_slice(b"\r\n");
                Some(v)
            }
            Step::Raw(b) => Some(b.clone()),
            Step::Trickle { bytes, .. } => Some(bytes.clone()),
            _ => None,
        }
    }
}

/// The first three bytes of the last non-empty line that `steps` send,
/// i.e. the reply code a client would act on.
pub fn reply_code(steps: &[Step]) -> Option<[u8; 3]> {
    let mut all = Vec::new();
    for s in steps {
        all.extend(s.sent_bytes().unwrap_or_default());
    }
    let last = all
        .split(|&b| b == b'\n')
        .rfind(|l| !l.is_empty() && *l != b"\r")?;
    (last.len() >= 3).then(|| [last[0], last[1], last[2]])
}

/// A standard SMTP conversation for one message, as a script: banner,
/// HELO (unless `helo` is None), MAIL, one RCPT, DATA, content, ".",
/// QUIT.
pub fn happy_script(helo: Option<&str>) -> Vec<Step> {
    let mut s = vec![Step::send("220 fake.example ESMTP fake")];
    if let Some(verb) = helo {
        s.push(Step::expect(verb));
        s.push(Step::send("250 fake.example"));
    }
    s.extend([
        Step::expect("MAIL FROM:"),
        Step::send("250 2.1.0 Ok"),
        Step::expect("RCPT TO:"),
        Step::send("250 2.1.5 Ok"),
        Step::expect("DATA"),
        Step::send("354 End data with <CR><LF>.<CR><LF>"),
        Step::ExpectData,
        Step::send("250 2.0.0 Ok: queued"),
        Step::expect("QUIT"),
        Step::send("221 2.0.0 Bye"),
    ]);
    s
}

// ---------------------------------------------------------------------------
// Behaviours

/// Per-connection scripts. Connection `i` (in accept order) runs
/// `per_conn[i]`; when there are more connections than scripts, the last
/// script is reused if `repeat_last`, else the extra connection only gets
/// recorded (and an error is noted).
#[derive(Clone, Debug)]
pub struct Script {
    pub per_conn: Vec<Vec<Step>>,
    pub repeat_last: bool,
}

impl Script {
    /// The same script for every connection.
    pub fn every(steps: Vec<Step>) -> Script {
        Script {
            per_conn: vec![steps],
            repeat_last: true,
        }
    }

    /// One script per connection, in accept order; no extra connections.
    pub fn each(per_conn: Vec<Vec<Step>>) -> Script {
        Script {
            per_conn,
            repeat_last: false,
        }
    }
}

/// What the client said, as the responder classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Not a command: the greeting sent on connect.
    Banner,
    Helo,
    Ehlo,
    Lhlo,
    Mail,
    Rcpt,
    Data,
    /// The end-of-data "." line (after the content).
    Dot,
    /// `BDAT <n> [LAST]` (RFC 3030): the responder reads exactly n bytes
    /// of chunk and records them in [`Conn::data`]. Its reply is the
    /// `Bdat` rule's if one matches; otherwise `BDAT ... LAST` gets the
    /// end-of-data reply ([`Verb::Dot`]'s rule or default, one per
    /// accepted RCPT under LMTP) and other chunks `250 2.0.0 Ok`.
    Bdat,
    Rset,
    Quit,
    Noop,
    /// `STARTTLS`, `AUTH ...`, `XCLIENT ...`: by default answered like
    /// [`Verb::Other`].
    StartTls,
    Auth,
    Xclient,
    /// Anything else.
    Other,
}

impl Verb {
    /// Classify a client command line by its first word (ASCII case
    /// insensitive). `MAIL FROM:` / `RCPT TO:` only need the verb.
    pub fn of(line: &[u8]) -> Verb {
        let word: Vec<u8> = line
            .iter()
            .take_while(|b| !b" \t\r\n:".contains(b))
            .map(u8::to_ascii_uppercase)
            .collect();
        match &word[..] {
            b"HELO" => Verb::Helo,
            b"EHLO" => Verb::Ehlo,
            b"LHLO" => Verb::Lhlo,
            b"MAIL" => Verb::Mail,
            b"RCPT" => Verb::Rcpt,
            b"DATA" => Verb::Data,
            b"BDAT" => Verb::Bdat,
            b"RSET" => Verb::Rset,
            b"QUIT" => Verb::Quit,
            b"NOOP" => Verb::Noop,
            b"STARTTLS" => Verb::StartTls,
            b"AUTH" => Verb::Auth,
            b"XCLIENT" => Verb::Xclient,
            _ => Verb::Other,
        }
    }
}

/// One reply override of a [`Responder`]. It applies when the verb
/// matches and, if given, the connection index (accept order, from 0) and
/// the occurrence of the verb within the connection (from 0).
#[derive(Clone, Debug)]
pub struct Rule {
    pub verb: Verb,
    pub conn: Option<usize>,
    pub nth: Option<usize>,
    pub steps: Vec<Step>,
}

/// A normal SMTP (or, with [`Responder::lmtp`], LMTP) server whose replies
/// can be overridden per command. Defaults are modelled on Postfix
/// smtpd's replies: `220 fake.example ESMTP fake`, `250 fake.example`,
/// `250 2.1.0 Ok`, `250 2.1.5 Ok`, `354 End data with <CR><LF>.<CR><LF>`,
/// `250 2.0.0 Ok: queued`, `250 2.0.0 Ok` (RSET, NOOP), `221 2.0.0 Bye`,
/// and `502 5.5.2 Error: command not recognized`.
///
/// After DATA, if the reply sent has code 354, the content is read up to
/// ".\r\n" and recorded, and the reply for [`Verb::Dot`] follows. In LMTP
/// mode the default end-of-data reply is one `250 2.0.0 Ok: queued` line per
/// accepted RCPT (RFC 2033 §4.2); a RCPT counts as accepted when its reply
/// code starts with `2`.
///
/// After the QUIT reply the connection stays open (and recorded) until
/// the client closes it, so the client's FIN vs. RST is visible; set
/// [`Responder::close_after_quit`] to close like a real server.
#[derive(Clone, Debug)]
pub struct Responder {
    pub lmtp: bool,
    pub close_after_quit: bool,
    pub rules: Vec<Rule>,
    /// Steps run on connect, before the banner (a PROXY header, SMTPS).
    pub prelude: Vec<Step>,
}

impl Default for Responder {
    fn default() -> Self {
        Responder::new()
    }
}

impl Responder {
    pub fn new() -> Responder {
        Responder {
            lmtp: false,
            close_after_quit: false,
            rules: Vec::new(),
            prelude: Vec::new(),
        }
    }

    /// Run `steps` on connect, before the banner.
    pub fn before_banner(mut self, steps: Vec<Step>) -> Responder {
        self.prelude = steps;
        self
    }

    /// LMTP mode (end-of-data: one reply per accepted RCPT).
    pub fn lmtp(mut self) -> Responder {
        self.lmtp = true;
        self
    }

    /// Close (FIN) right after the QUIT reply.
    pub fn close_after_quit(mut self) -> Responder {
        self.close_after_quit = true;
        self
    }

    /// Add a rule; later rules win over earlier ones.
    pub fn rule(mut self, rule: Rule) -> Responder {
        self.rules.push(rule);
        self
    }

    /// Reply `line` (CRLF appended; may contain inner CRLFs for a
    /// multi-line reply) to every `verb`.
    pub fn on(self, verb: Verb, line: &str) -> Responder {
        self.on_steps(verb, vec![Step::send(line)])
    }

    /// Run `steps` instead of the default reply to every `verb`.
    pub fn on_steps(self, verb: Verb, steps: Vec<Step>) -> Responder {
        self.rule(Rule {
            verb,
            conn: None,
            nth: None,
            steps,
        })
    }

    /// Reply `line` to the `nth` (from 0) `verb` of every connection.
    pub fn on_nth(self, verb: Verb, nth: usize, line: &str) -> Responder {
        self.rule(Rule {
            verb,
            conn: None,
            nth: Some(nth),
            steps: vec![Step::send(line)],
        })
    }

    /// Run `steps` for every `verb` on connection `conn` (from 0) only.
    pub fn on_conn(
        self,
        conn: usize,
        verb: Verb,
        steps: Vec<Step>,
    ) -> Responder {
        self.rule(Rule {
            verb,
            conn: Some(conn),
            nth: None,
            steps,
        })
    }

    /// Reply with exactly these bytes (no CRLF added) to every `verb`.
    pub fn on_raw(self, verb: Verb, bytes: &[u8]) -> Responder {
        self.on_steps(verb, vec![Step::raw(bytes)])
    }

    /// The greeting line.
    pub fn banner(self, line: &str) -> Responder {
        self.on(Verb::Banner, line)
    }

    /// Close (FIN) instead of replying to `verb` (`Banner`: send nothing
    /// and close at once).
    pub fn close_at(self, verb: Verb) -> Responder {
        self.on_steps(verb, vec![Step::Close])
    }

    /// Reset (RST) instead of replying to `verb`.
    pub fn reset_at(self, verb: Verb) -> Responder {
        self.on_steps(verb, vec![Step::Reset])
    }

    /// Reply normally to `verb`, then close (FIN).
    pub fn close_after(self, verb: Verb) -> Responder {
        let mut steps = default_reply(verb, 1);
        steps.push(Step::Close);
        self.on_steps(verb, steps)
    }

    /// Never answer `verb` (keep reading and recording).
    pub fn stall_at(self, verb: Verb) -> Responder {
        self.on_steps(verb, vec![Step::Stall])
    }

    fn rule_for(&self, conn: usize, verb: Verb, nth: usize) -> Option<&Rule> {
        self.rules.iter().rev().find(|r| {
            r.verb == verb
                && r.conn.is_none_or(|c| c == conn)
                && r.nth.is_none_or(|n| n == nth)
        })
    }

    fn steps_for(
        &self,
        conn: usize,
        verb: Verb,
        nth: usize,
        accepted: usize,
    ) -> Vec<Step> {
        let hit = self.rule_for(conn, verb, nth);
        match hit {
            Some(rule) => rule.steps.clone(),
            None if verb == Verb::Dot && self.lmtp => {
                default_reply(verb, accepted)
            }
            None => default_reply(verb, 1),
        }
    }
}

/// The responder's default reply to `verb` (`count` copies for the LMTP
/// end-of-data reply).
pub fn default_reply(verb: Verb, count: usize) -> Vec<Step> {
    let line = match verb {
        Verb::Banner => "220 fake.example ESMTP fake",
        Verb::Helo | Verb::Ehlo | Verb::Lhlo => "250 fake.example",
        Verb::Mail => "250 2.1.0 Ok",
        Verb::Rcpt => "250 2.1.5 Ok",
        Verb::Data => "354 End data with <CR><LF>.<CR><LF>",
        Verb::Dot | Verb::Bdat => "250 2.0.0 Ok: queued",
        Verb::Rset | Verb::Noop => "250 2.0.0 Ok",
        Verb::Quit => "221 2.0.0 Bye",
        Verb::StartTls | Verb::Auth | Verb::Xclient | Verb::Other => {
            "502 5.5.2 Error: command not recognized"
        }
    };
    vec![Step::send(line); count]
}

/// What a server does with each connection.
#[derive(Clone, Debug)]
pub enum Behavior {
    Script(Script),
    Responder(Responder),
}

impl From<Script> for Behavior {
    fn from(s: Script) -> Self {
        Behavior::Script(s)
    }
}

impl From<Responder> for Behavior {
    fn from(r: Responder) -> Self {
        Behavior::Responder(r)
    }
}

/// Where to listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `127.0.0.1:0`.
    Tcp,
    /// `s.sock` in a fresh private temp dir.
    Unix,
}

// ---------------------------------------------------------------------------
// Transcript

/// How a connection ended, seen from the server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// read() returned 0: the client closed normally (FIN / unix EOF).
    ClientEof,
    /// read() failed with ECONNRESET: the client reset (SO_LINGER 0).
    ClientReset,
    /// The script reset the connection ([`Step::Reset`]).
    ServerReset,
    /// The server was stopped (by [`FakeServer::finish`]) while the
    /// connection was still open.
    Stopped,
    /// The watchdog deadline passed.
    Watchdog,
    /// The client ended TLS with close_notify (what follows it, a FIN
    /// or an RST, is not read).
    CloseNotify,
    /// The TLS handshake failed on the server's side (rustls's reason).
    Tls(String),
    /// Another I/O error.
    Error(String),
}

/// One thing that happened on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Bytes the server wrote.
    Server(Vec<u8>),
    /// A line the server read from the client (including its LF).
    Client(Vec<u8>),
    /// A DATA body was read (its length in bytes).
    Data(usize),
    /// A remark (half-close, write failure, ...).
    Note(String),
}

/// Everything recorded about one connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Accept order, from 0.
    pub index: usize,
    /// Every byte the client sent, exactly.
    pub raw: Vec<u8>,
    /// Events with their time since the server started.
    pub events: Vec<(Duration, Event)>,
    /// DATA bodies (the bytes between the DATA reply and the dot line),
    /// and BDAT chunks (exactly the n bytes after `BDAT n`).
    pub data: Vec<Vec<u8>>,
    /// The client's bytes as each read() returned them (their
    /// concatenation is [`Conn::raw`]): shows what arrived together.
    pub reads: Vec<Vec<u8>>,
    pub end: End,
    /// Script mismatches and unexpected connections.
    pub errors: Vec<String>,
    pub accepted_at: Duration,
    pub ended_at: Duration,
    /// The TLS handshake, once one finished.
    pub tls: Option<TlsInfo>,
    /// The client's address (TCP only).
    pub peer: Option<SocketAddr>,
}

impl Conn {
    fn new(index: usize, at: Duration) -> Conn {
        Conn {
            index,
            raw: Vec::new(),
            events: Vec::new(),
            data: Vec::new(),
            reads: Vec::new(),
            end: End::Stopped,
            errors: Vec::new(),
            accepted_at: at,
            ended_at: at,
            tls: None,
            peer: None,
        }
    }

    /// What the client sent before TLS (all of it without TLS).
    pub fn plain(&self) -> &[u8] {
        let at = self.tls.as_ref().map_or(self.raw.len(), |t| t.at);
        &self.raw[..at]
    }

    /// What the client sent inside TLS, decrypted (empty without TLS).
    pub fn secure(&self) -> &[u8] {
        let at = self.tls.as_ref().map_or(self.raw.len(), |t| t.at);
        &self.raw[at..]
    }

    /// What the client sent, split after each LF (a final partial line is
    /// included).
    pub fn lines(&self) -> Vec<Vec<u8>> {
        split_lines(&self.raw)
    }

    /// [`Conn::raw`] with Date and Message-Id pid/fd masked ([`mask`]).
    pub fn masked(&self) -> Vec<u8> {
        mask(&self.raw)
    }

    /// The command lines the client sent outside DATA content, without
    /// line ends (as the responder/script read them).
    pub fn commands(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Client(l) => Some(
                    String::from_utf8_lossy(l)
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                ),
                _ => None,
            })
            .collect()
    }

    /// Everything the server wrote, concatenated.
    pub fn server_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for (_, e) in &self.events {
            if let Event::Server(b) = e {
                v.extend_from_slice(b);
            }
        }
        v
    }

    /// A readable, escaped, line-per-entry dump (for failure messages).
    pub fn render(&self) -> String {
        let mut out = format!(
            "--- connection {} (t={:.2}s .. {:.2}s, end {:?})\n",
            self.index,
            self.accepted_at.as_secs_f64(),
            self.ended_at.as_secs_f64(),
            self.end
        );
        for (at, e) in &self.events {
            let t = at.as_secs_f64();
            let _ = match e {
                Event::Server(b) => {
                    writeln!(out, "[{t:6.2}] S: {}", escape(b))
                }
                Event::Client(b) => {
                    writeln!(out, "[{t:6.2}] C: {}", escape(b))
                }
                Event::Data(n) => writeln!(out, "[{t:6.2}] C: <{n} bytes>"),
                Event::Note(s) => writeln!(out, "[{t:6.2}] *** {s}"),
            };
        }
        for err in &self.errors {
            let _ = writeln!(out, "!!! {err}");
        }
        out
    }
}

/// All connections of one server run, in accept order.
#[derive(Clone, Debug)]
pub struct Transcript {
    pub conns: Vec<Conn>,
}

impl Transcript {
    /// Number of connections accepted.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Connection `i` (panics with the whole transcript if missing).
    pub fn conn(&self, i: usize) -> &Conn {
        match self.conns.get(i) {
            Some(c) => c,
            None => {
                panic!("no connection {i}; transcript:\n{}", self.render())
            }
        }
    }

    /// Masked raw client bytes of every connection, in accept order.
    pub fn masked(&self) -> Vec<Vec<u8>> {
        self.conns.iter().map(Conn::masked).collect()
    }

    /// Script mismatches of all connections.
    pub fn errors(&self) -> Vec<String> {
        self.conns
            .iter()
            .flat_map(|c| {
                c.errors
                    .iter()
                    .map(move |e| format!("conn {}: {e}", c.index))
            })
            .collect()
    }

    /// Panic (with the transcript) if any script step did not match.
    pub fn assert_no_errors(&self) {
        let errs = self.errors();
        assert!(
            errs.is_empty(),
            "fake server errors: {errs:#?}\n{}",
            self.render()
        );
    }

    /// Assert the masked bytes the client sent on connection `i`.
    pub fn assert_client_sent(&self, i: usize, expected: &[u8]) {
        super::assert_bytes_eq(
            &format!("client bytes on connection {i} (masked)"),
            &mask(expected),
            &self.conn(i).masked(),
        );
    }

    pub fn render(&self) -> String {
        self.conns.iter().map(Conn::render).collect()
    }
}

/// Split after each LF; a trailing partial line is kept.
pub fn split_lines(raw: &[u8]) -> Vec<Vec<u8>> {
    raw.split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

// ---------------------------------------------------------------------------
// Masking

/// Mask what cannot match between two implementations (two runs never
/// share a time, a process ID or a descriptor number):
/// the value of a `Date:` header line and the pid and fd fields of a
/// `Message-Id: <PID.FD.CNT@host>` line. The counter and host are kept.
///
/// Only well-formed values are masked (`Date:` must look like
/// `Www, _D Mmm YYYY HH:MM:SS +HHMM (ZONE)`, and the Message-Id numbers
/// must be lowercase hex of at least 4 digits), so a malformed header
/// still shows up in a diff.
pub fn mask(raw: &[u8]) -> Vec<u8> {
    mask_with(raw, false)
}

/// Like [`mask`], but the Message-Id counter is masked too: with several
/// sessions its value depends on the interleaving of sessions.
pub fn mask_all(raw: &[u8]) -> Vec<u8> {
    mask_with(raw, true)
}

fn mask_with(raw: &[u8], counter: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let body_len = line
            .iter()
            .rposition(|&b| b != b'\r' && b != b'\n')
            .map_or(0, |p| p + 1);
        let (body, ending) = line.split_at(body_len);
        match mask_line(body, counter) {
            Some(m) => {
                out.extend_from_slice(&m);
                out.extend_from_slice(ending);
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

fn mask_line(body: &[u8], counter: bool) -> Option<Vec<u8>> {
    if let Some(value) = body.strip_prefix(b"Date: ") {
        return is_date(value).then(|| b"Date: <DATE>".to_vec());
    }
    let value = body.strip_prefix(b"Message-Id: <")?;
    let value = value.strip_suffix(b">")?;
    let at = value.iter().position(|&b| b == b'@')?;
    let (nums, host) = value.split_at(at);
    let parts: Vec<&[u8]> = nums.split(|&b| b == b'.').collect();
    let hex = |p: &[u8]| {
        p.len() >= 4 && p.iter().all(|b| b"0123456789abcdef".contains(b))
    };
    if parts.len() != 3 || !parts.iter().all(|p| hex(p)) {
        return None;
    }
    let mut m = b"Message-Id: <PID.FD.".to_vec();
    m.extend_from_slice(if counter { b"CNT" } else { parts[2] });
    m.extend_from_slice(host);
    m.push(b'>');
    Some(m)
}

/// `Www, _D Mmm YYYY HH:MM:SS +HHMM (ZONE)`; `_` is a digit or a space.
fn is_date(v: &[u8]) -> bool {
    const PAT: &[u8] = b"Aaa, _9 Aaa 9999 99:99:99 +9999 (";
    if v.len() < PAT.len() + 2 || v.last() != Some(&b')') {
        return false;
    }
    PAT.iter().zip(v).all(|(&p, &c)| match p {
        b'A' => c.is_ascii_uppercase(),
        b'a' => c.is_ascii_lowercase(),
        b'9' => c.is_ascii_digit(),
        b'_' => c.is_ascii_digit() || c == b' ',
        b'+' => c == b'+' || c == b'-',
        lit => c == lit,
    })
}

// ---------------------------------------------------------------------------
// The server

/// Options for [`FakeServer::start`].
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub listen: Listen,
    /// The server's lifetime bound (see [`DEFAULT_WATCHDOG`]).
    pub watchdog: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: Listen::Tcp,
            watchdog: DEFAULT_WATCHDOG,
        }
    }
}

struct Shared {
    behavior: Behavior,
    start: Instant,
    deadline: Instant,
    stop: AtomicBool,
    next_index: AtomicUsize,
    conns: Mutex<Vec<Conn>>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }
}

/// A running fake server. Dropping it without [`FakeServer::finish`] stops
/// it as well (and discards the transcript).
pub struct FakeServer {
    endpoint: String,
    addr: Option<SocketAddr>,
    unix_path: Option<PathBuf>,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    _dir: Option<TempDir>,
}

impl FakeServer {
    /// Start serving `behavior` as described by `opts`.
    pub fn start(behavior: impl Into<Behavior>, opts: Options) -> FakeServer {
        let start = Instant::now();
        let shared = Arc::new(Shared {
            behavior: behavior.into(),
            start,
            deadline: start + opts.watchdog,
            stop: AtomicBool::new(false),
            next_index: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
            handlers: Mutex::new(Vec::new()),
        });
        let (listener, endpoint, addr, unix_path, dir) = match opts.listen {
            Listen::Tcp => {
                let l = TcpListener::bind("127.0.0.1:0")
                    .expect("fake server: bind 127.0.0.1:0");
                let a = l.local_addr().expect("fake server: local_addr");
                (Listener::Tcp(l), a.to_string(), Some(a), None, None)
            }
            Listen::Unix => {
                let dir = TempDir::new("fake-server");
                let path = dir.path().join("s.sock");
                let l = UnixListener::bind(&path)
                    .expect("fake server: bind unix socket");
                let ep = format!("unix:{}", path.display());
                (Listener::Unix(l), ep, None, Some(path), Some(dir))
            }
        };
        match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(true),
        }
        .expect("fake server: set_nonblocking");
        let sh = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("fake-accept".into())
            .spawn(move || accept_loop(&sh, &listener))
            .expect("fake server: spawn acceptor");
        FakeServer {
            endpoint,
            addr,
            unix_path,
            shared,
            acceptor: Some(acceptor),
            _dir: dir,
        }
    }

    /// A TCP server on 127.0.0.1:0 with default options.
    pub fn tcp(behavior: impl Into<Behavior>) -> FakeServer {
        FakeServer::start(behavior, Options::default())
    }

    /// A unix-socket server in a fresh temp dir with default options.
    pub fn unix(behavior: impl Into<Behavior>) -> FakeServer {
        let opts = Options {
            listen: Listen::Unix,
            ..Options::default()
        };
        FakeServer::start(behavior, opts)
    }

    /// A TCP server running `steps` on every connection.
    pub fn script(steps: Vec<Step>) -> FakeServer {
        FakeServer::tcp(Script::every(steps))
    }

    /// A TCP responder with default replies.
    pub fn responder() -> FakeServer {
        FakeServer::tcp(Responder::new())
    }

    /// The smtp-source operand for this server: `127.0.0.1:PORT` or
    /// `unix:PATH`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub fn port(&self) -> Option<u16> {
        self.addr.map(|a| a.port())
    }

    pub fn unix_path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.next_index.load(Ordering::SeqCst)
    }

    /// Wait (bounded) until at least `n` connections were accepted.
    pub fn wait_for_conns(&self, n: usize, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while self.accepted() < n {
            if Instant::now() >= until {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Stop the server (connections still open are recorded as
    /// [`End::Stopped`] once nothing more arrives) and return the
    /// transcript. Call it after the client has exited.
    pub fn finish(mut self) -> Transcript {
        self.stop();
        let mut conns = std::mem::take(&mut *lock(&self.shared.conns));
        conns.sort_by_key(|c| c.index);
        Transcript { conns }
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let handlers = std::mem::take(&mut *lock(&self.shared.handlers));
        for h in handlers {
            let _ = h.join();
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(sh: &Arc<Shared>, listener: &Listener) {
    loop {
        // Read the flag before accepting, so that connections queued
        // before the stop are still accepted by the final sweep.
        let stopping = sh.stopping() || sh.expired();
        match listener.accept() {
            Ok(stream) => spawn_handler(sh, stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stopping {
                    return;
                }
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                if stopping {
                    return;
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn spawn_handler(sh: &Arc<Shared>, stream: Stream) {
    let index = sh.next_index.fetch_add(1, Ordering::SeqCst);
    let sh2 = Arc::clone(sh);
    let h = thread::Builder::new()
        .name(format!("fake-conn-{index}"))
        .spawn(move || {
            let conn = serve(&sh2, stream, index);
            lock(&sh2.conns).push(conn);
        })
        .expect("fake server: spawn connection thread");
    lock(&sh.handlers).push(h);
}

// ---------------------------------------------------------------------------
// One connection

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn prepare(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(TICK))
            }
            Stream::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(TICK))
            }
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    fn set_linger_zero(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                socket2::SockRef::from(s).set_linger(Some(Duration::ZERO))
            }
            // No RST on unix sockets: the close is all there is.
            Stream::Unix(_) => Ok(()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why step execution stopped early.
enum Halt {
    /// The connection is over.
    End(End),
    /// A script expectation failed: stop the script, keep recording.
    Mismatch,
}

impl From<End> for Halt {
    fn from(e: End) -> Self {
        Halt::End(e)
    }
}

struct Peer<'a> {
    sh: &'a Shared,
    s: Stream,
    /// TLS, once a [`Step::StartTls`] handshake finished.
    tls: Option<Box<ServerConnection>>,
    buf: Vec<u8>,
    rec: Conn,
    /// A write already consumed the pending ECONNRESET (later reads
    /// then return 0, which must still count as a reset).
    reset_seen: bool,
}

fn serve(sh: &Arc<Shared>, stream: Stream, index: usize) -> Conn {
    let peer = match &stream {
        Stream::Tcp(s) => s.peer_addr().ok(),
        Stream::Unix(_) => None,
    };
    let mut p = Peer {
        sh,
        s: stream,
        tls: None,
        buf: Vec::new(),
        rec: Conn {
            peer,
            ..Conn::new(index, sh.now())
        },
        reset_seen: false,
    };
    let end = match p.s.prepare() {
        Err(e) => End::Error(format!("socket setup: {e}")),
        Ok(()) => p.run(),
    };
    p.rec.end = end;
    p.rec.ended_at = sh.now();
    p.rec
}

impl Peer<'_> {
    fn run(&mut self) -> End {
        let halt = match &self.sh.behavior {
            Behavior::Script(sc) => {
                let i = self.rec.index;
                let steps = match sc.per_conn.get(i) {
                    Some(s) => s.clone(),
                    None if sc.repeat_last && !sc.per_conn.is_empty() => {
                        sc.per_conn[sc.per_conn.len() - 1].clone()
                    }
                    None => {
                        self.rec.errors.push(format!(
                            "unexpected connection {i} (script has {})",
                            sc.per_conn.len()
                        ));
                        Vec::new()
                    }
                };
                self.steps(&steps).err()
            }
            Behavior::Responder(r) => {
                let r = r.clone();
                Some(self.respond(&r))
            }
        };
        match halt {
            Some(Halt::End(e)) => e,
            None | Some(Halt::Mismatch) => self.drain(),
        }
    }

    fn note(&mut self, e: Event) {
        self.rec.events.push((self.sh.now(), e));
    }

    /// One read (bounded by TICK). Ok(false) on a timeout tick.
    fn fill(&mut self) -> Result<bool, End> {
        if self.sh.expired() {
            return Err(End::Watchdog);
        }
        if self.tls.is_some() {
            return self.fill_tls();
        }
        let mut chunk = [0u8; 65536];
        match self.s.read(&mut chunk) {
            Ok(0) if self.reset_seen => Err(End::ClientReset),
            Ok(0) => Err(End::ClientEof),
            Ok(n) => {
                self.rec.raw.extend_from_slice(&chunk[..n]);
                self.rec.reads.push(chunk[..n].to_vec());
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    if self.sh.stopping() {
                        Err(End::Stopped)
                    } else {
                        Ok(false)
                    }
                }
                io::ErrorKind::Interrupted => Ok(false),
                io::ErrorKind::ConnectionReset => Err(End::ClientReset),
                _ => Err(End::Error(e.to_string())),
            },
        }
    }

    fn read_line(&mut self) -> Result<Vec<u8>, End> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return Ok(line);
            }
            if self.buf.len() >= MAX_LINE {
                return Ok(std::mem::take(&mut self.buf));
            }
            self.fill()?;
        }
    }

    fn read_command(&mut self) -> Result<Vec<u8>, End> {
        let line = self.read_line()?;
        self.note(Event::Client(line.clone()));
        Ok(line)
    }

    fn read_data(&mut self) -> Result<(), End> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            if line == b".\r\n" || line == b".\n" {
                self.note(Event::Data(body.len()));
                self.rec.data.push(body);
                self.note(Event::Client(line));
                return Ok(());
            }
            body.extend_from_slice(&line);
        }
    }

    /// Reads exactly `n` bytes (a BDAT chunk) and records them.
    fn read_chunk(&mut self, n: usize) -> Result<(), End> {
        while self.buf.len() < n {
            self.fill()?;
        }
        let chunk: Vec<u8> = self.buf.drain(..n).collect();
        self.note(Event::Data(chunk.len()));
        self.rec.data.push(chunk);
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.note(Event::Server(bytes.to_vec()));
        let result = match self.tls.as_deref_mut() {
            None => self.s.write_all(bytes),
            Some(tls) => write_tls_all(tls, &mut self.s, bytes),
        };
        if let Err(e) = result {
            if e.kind() == io::ErrorKind::ConnectionReset {
                self.reset_seen = true;
            }
            self.note(Event::Note(format!("write failed: {e}")));
        }
    }

    /// Sleep `d` in ticks; Err if stopped or past the watchdog.
    fn pause(&mut self, d: Duration) -> Result<(), End> {
        let until = Instant::now() + d;
        loop {
            if self.sh.expired() {
                return Err(End::Watchdog);
            }
            if self.sh.stopping() {
                return Err(End::Stopped);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            thread::sleep(TICK.min(until - now));
        }
    }

    /// Record everything until the client goes away.
    fn drain(&mut self) -> End {
        loop {
            if let Err(end) = self.fill() {
                return end;
            }
        }
    }

    fn steps(&mut self, steps: &[Step]) -> Result<(), Halt> {
        for step in steps {
            self.step(step)?;
        }
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), Halt> {
        match step {
            Step::Send(_) | Step::Raw(_) => {
                let bytes = step.sent_bytes().unwrap_or_default();
                self.write(&bytes);
            }
            Step::Expect(prefix) => {
                let line = self.read_command().map_err(|end| {
                    self.rec.errors.push(format!(
                        "expected {}, connection ended: {end:?}",
                        escape(prefix)
                    ));
                    end
                })?;
                if !line.starts_with(prefix) {
                    self.rec.errors.push(format!(
                        "expected {}, got {}",
                        escape(prefix),
                        escape(&line)
                    ));
                    return Err(Halt::Mismatch);
                }
            }
            Step::ExpectData => self.read_data()?,
            Step::Sleep(d) => self.pause(*d)?,
            Step::Stall => return Err(Halt::End(self.drain())),
            Step::StopReading => loop {
                self.pause(TICK)?;
            },
            Step::Stream { line, every } => loop {
                self.write(line);
                self.pause(*every)?;
            },
            Step::Trickle { bytes, every } => {
                for b in bytes {
                    self.write(&[*b]);
                    self.pause(*every)?;
                }
            }
            Step::Close => {
                self.note(Event::Note("server half-close (FIN)".into()));
                if let Some(tls) = self.tls.as_deref_mut() {
                    tls.send_close_notify();
                    let _ = flush_tls(tls, &mut self.s);
                }
                if let Err(e) = self.s.shutdown_write() {
                    self.note(Event::Note(format!("shutdown: {e}")));
                }
            }
            Step::Reset => {
                self.note(Event::Note("server reset (RST)".into()));
                let _ = self.s.set_linger_zero();
                // Replace the stream's socket by closing it: the caller
                // drops the Peer, but nothing may be read or written after
                // this, so end right here.
                let _ = self.s.shutdown_read_and_close();
                return Err(Halt::End(End::ServerReset));
            }
            Step::Read(n) => {
                while self.buf.len() < *n {
                    self.fill()?;
                }
                let bytes: Vec<u8> = self.buf.drain(..*n).collect();
                self.note(Event::Client(bytes));
            }
            Step::StartTls(config) => self.start_tls(config)?,
        }
        Ok(())
    }

    /// The server side of a TLS handshake, bounded like every read.
    fn start_tls(&mut self, config: &TlsServer) -> Result<(), End> {
        let mut tls = ServerConnection::new(std::sync::Arc::clone(&config.0))
            .map_err(|e| End::Tls(e.to_string()))?;
        // Bytes read past the last line belong to the handshake; the
        // record keeps plaintext and decrypted bytes, not TLS records.
        let early = std::mem::take(&mut self.buf);
        let at = self.rec.raw.len() - early.len();
        self.rec.raw.truncate(at);
        if !early.is_empty() {
            self.note(Event::Note(format!(
                "{} bytes of handshake came with the plaintext",
                early.len()
            )));
            let mut rest = &early[..];
            while !rest.is_empty() {
                if tls.read_tls(&mut rest).is_err() {
                    break;
                }
            }
        }
        loop {
            if let Err(e) = tls.process_new_packets() {
                // Send the alert that says why, best effort.
                let _ = flush_tls(&mut tls, &mut self.s);
                self.note(Event::Note(format!("TLS handshake failed: {e}")));
                return Err(End::Tls(e.to_string()));
            }
            flush_tls(&mut tls, &mut self.s)
                .map_err(|e| End::Error(format!("TLS write: {e}")))?;
            if !tls.is_handshaking() {
                break;
            }
            if self.sh.expired() {
                return Err(End::Watchdog);
            }
            match tls.read_tls(&mut self.s) {
                Ok(0) => return Err(End::ClientEof),
                Ok(_) => {}
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {
                        if self.sh.stopping() {
                            return Err(End::Stopped);
                        }
                    }
                    io::ErrorKind::ConnectionReset => {
                        return Err(End::ClientReset)
                    }
                    _ => return Err(End::Error(e.to_string())),
                },
            }
        }
        let info = TlsInfo {
            at,
            sni: tls.server_name().map(str::to_owned),
            version: tls
                .protocol_version()
                .map_or_else(|| "?".into(), |v| format!("{v:?}")),
            resumed: tls.handshake_kind() == Some(HandshakeKind::Resumed),
            client_cert: tls.peer_certificates().is_some(),
        };
        self.note(Event::Note(format!("TLS handshake done: {info:?}")));
        self.rec.tls = Some(info);
        self.tls = Some(Box::new(tls));
        Ok(())
    }

    /// [`Peer::fill`] inside TLS: decrypted bytes, recorded like plain
    /// ones. Ok(false) on a timeout tick.
    fn fill_tls(&mut self) -> Result<bool, End> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(false);
        };
        let mut chunk = [0u8; 65536];
        loop {
            match tls.reader().read(&mut chunk) {
                Ok(0) => return Err(End::CloseNotify),
                Ok(n) => {
                    self.rec.raw.extend_from_slice(&chunk[..n]);
                    self.rec.reads.push(chunk[..n].to_vec());
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(End::ClientEof)
                }
                Err(e) => return Err(End::Error(e.to_string())),
            }
            match tls.read_tls(&mut self.s) {
                Ok(0) if self.reset_seen => return Err(End::ClientReset),
                Ok(0) => return Err(End::ClientEof),
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        let _ = flush_tls(tls, &mut self.s);
                        return Err(End::Tls(e.to_string()));
                    }
                    // Alerts, key updates: answer them.
                    let _ = flush_tls(tls, &mut self.s);
                }
                Err(e) => {
                    return match e.kind() {
                        io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted => {
                            if self.sh.stopping() {
                                Err(End::Stopped)
                            } else {
                                Ok(false)
                            }
                        }
                        io::ErrorKind::ConnectionReset => {
                            Err(End::ClientReset)
                        }
                        _ => Err(End::Error(e.to_string())),
                    }
                }
            }
        }
    }

    fn respond(&mut self, r: &Responder) -> Halt {
        let conn = self.rec.index;
        let mut counts: HashMap<Verb, usize> = HashMap::new();
        let mut accepted = 0usize;
        let mut bdat_seen = 0usize;
        let mut reply = |p: &mut Self, verb: Verb, accepted: usize| {
            let n = counts.entry(verb).or_insert(0);
            let steps = r.steps_for(conn, verb, *n, accepted);
            *n += 1;
            p.steps(&steps).map(|()| steps)
        };
        if let Err(h) = self.steps(&r.prelude) {
            return h;
        }
        if let Err(h) = reply(self, Verb::Banner, 0) {
            return h;
        }
        loop {
            let line = match self.read_command() {
                Ok(l) => l,
                Err(end) => return Halt::End(end),
            };
            let verb = Verb::of(&line);
            if verb == Verb::Bdat {
                let (size, last) = bdat_args(&line);
                if let Err(end) = self.read_chunk(size) {
                    return Halt::End(end);
                }
                let nth = bdat_seen;
                bdat_seen += 1;
                let result = if r.rule_for(conn, Verb::Bdat, nth).is_some() {
                    let steps = r.steps_for(conn, Verb::Bdat, nth, accepted);
                    self.steps(&steps).map(|()| steps)
                } else if last {
                    reply(self, Verb::Dot, accepted)
                } else {
                    let ok = vec![Step::send("250 2.0.0 Ok")];
                    self.steps(&ok).map(|()| ok)
                };
                if let Err(h) = result {
                    return h;
                }
                if last {
                    accepted = 0;
                }
                continue;
            }
            if matches!(verb, Verb::Mail | Verb::Rset | Verb::Helo)
                || matches!(verb, Verb::Ehlo | Verb::Lhlo)
            {
                accepted = 0;
            }
            let steps = match reply(self, verb, accepted) {
                Ok(s) => s,
                Err(h) => return h,
            };
            let code = reply_code(&steps);
            if verb == Verb::Rcpt && code.is_some_and(|c| c[0] == b'2') {
                accepted += 1;
            }
            if verb == Verb::Data && code == Some(*b"354") {
                if let Err(end) = self.read_data() {
                    return Halt::End(end);
                }
                if let Err(h) = reply(self, Verb::Dot, accepted) {
                    return h;
                }
                accepted = 0;
            }
            if verb == Verb::Quit && r.close_after_quit {
                if let Err(h) = self.step(&Step::Close) {
                    return h;
                }
            }
        }
    }
}

/// Writes all of `bytes` through TLS: rustls buffers a limited amount,
/// so what it takes is sent before the rest goes in.
fn write_tls_all(
    tls: &mut ServerConnection,
    s: &mut Stream,
    mut bytes: &[u8],
) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = tls.writer().write(bytes)?;
        bytes = &bytes[n..];
        flush_tls(tls, s)?;
    }
    Ok(())
}

/// Sends whatever TLS records are queued.
fn flush_tls(tls: &mut ServerConnection, s: &mut Stream) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(s)?;
    }
    Ok(())
}

/// `BDAT <size> [LAST]`: the size (0 if unreadable) and whether LAST.
fn bdat_args(line: &[u8]) -> (usize, bool) {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_ascii_whitespace().skip(1);
    let size = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let last = words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
    (size, last)
}

impl Stream {
    /// Close the socket now (with SO_LINGER 0 set before, that is an RST)
    /// by shutting it down and swapping in a closed placeholder.
    fn shutdown_read_and_close(&mut self) -> io::Result<()> {
        // Dropping the real socket is what sends the RST: replace it by an
        // unconnected unix socket pair half, which is harmless to keep.
        let (a, _b) = UnixStream::pair()?;
        let old = std::mem::replace(self, Stream::Unix(a));
        drop(old);
        Ok(())
    }
}

/// The fake server checked with plain std clients.
mod selftest {
    use super::*;

    fn client(srv: &FakeServer) -> TcpStream {
        let s = TcpStream::connect(srv.addr().expect("tcp")).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    }

    fn read_some(s: &mut TcpStream) -> io::Result<Vec<u8>> {
        let mut b = [0u8; 4096];
        let n = s.read(&mut b)?;
        Ok(b[..n].to_vec())
    }

    /// Read until `n` LFs were seen.
    fn read_lines(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        while v.iter().filter(|&&b| b == b'\n').count() < n {
            let got = read_some(s).expect("read");
            assert!(!got.is_empty(), "EOF after {}", escape(&v));
            v.extend(got);
        }
        v
    }

    #[test]
    fn responder_dialogue_and_client_fin() {
        let srv = FakeServer::responder();
        let mut s = client(&srv);
        assert_eq!(read_lines(&mut s, 1), b"220 fake.example ESMTP fake\r\n");
        s.write_all(b"HELO x\r\nQUIT\r\n").expect("write");
        assert_eq!(
            read_lines(&mut s, 2),
            b"250 fake.example\r\n221 2.0.0 Bye\r\n"
        );
        drop(s);
        let tr = srv.finish();
        assert_eq!(tr.conn(0).raw, b"HELO x\r\nQUIT\r\n");
        assert_eq!(tr.conn(0).commands(), ["HELO x", "QUIT"]);
        assert_eq!(tr.conn(0).end, End::ClientEof);
    }

    #[test]
    fn client_rst_is_seen() {
        let srv = FakeServer::responder();
        let s = client(&srv);
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(s);
        assert_eq!(srv.finish().conn(0).end, End::ClientReset);
    }

    #[test]
    fn lmtp_one_reply_per_accepted_rcpt() {
        let srv = FakeServer::tcp(Responder::new().lmtp().on_nth(
            Verb::Rcpt,
            1,
            "550 no",
        ));
        let mut s = client(&srv);
        read_lines(&mut s, 1);
        s.write_all(b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a>\r\n")
            .expect("write");
        s.write_all(b"RCPT TO:<b>\r\nRCPT TO:<c>\r\nDATA\r\n")
            .expect("write");
        let r = read_lines(&mut s, 6);
        let want: &[u8] = b"550 no\r\n250 2.1.5 Ok\r\n\
            354 End data with <CR><LF>.<CR><LF>\r\n";
        assert!(r.ends_with(want), "{}", escape(&r));
        s.write_all(b"body\r\n..x\r\n.\r\nQUIT\r\n").expect("write");
        let r = read_lines(&mut s, 3);
        assert_eq!(
            r,
            b"250 2.0.0 Ok: queued\r\n250 2.0.0 Ok: queued\r\n\
              221 2.0.0 Bye\r\n"
        );
        drop(s);
        let tr = srv.finish();
        assert_eq!(tr.conn(0).data, [b"body\r\n..x\r\n".to_vec()]);
    }

    #[test]
    fn script_close_then_still_recording() {
        let srv = FakeServer::script(vec![Step::send("220 x"), Step::Close]);
        let mut s = client(&srv);
        assert_eq!(read_lines(&mut s, 1), b"220 x\r\n");
        assert_eq!(read_some(&mut s).expect("read"), b"", "FIN expected");
        s.write_all(b"after\r\n").expect("write");
        drop(s);
        let tr = srv.finish();
        tr.assert_no_errors();
        assert_eq!(tr.conn(0).raw, b"after\r\n");
    }

    #[test]
    fn script_reset_gives_econnreset() {
        let srv = FakeServer::script(vec![
            Step::send("220 x"),
            Step::expect("HELO"),
            Step::Reset,
        ]);
        let mut s = client(&srv);
        read_lines(&mut s, 1);
        s.write_all(b"HELO y\r\n").expect("write");
        let e = read_some(&mut s).expect_err("RST expected");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        let tr = srv.finish();
        assert_eq!(tr.conn(0).end, End::ServerReset);
    }

    #[test]
    fn script_mismatch_is_recorded() {
        let srv = FakeServer::script(vec![Step::expect("EHLO")]);
        let mut s = client(&srv);
        s.write_all(b"HELO y\r\n").expect("write");
        drop(s);
        let tr = srv.finish();
        assert_eq!(tr.errors().len(), 1, "{}", tr.render());
    }

    #[test]
    fn trickle_and_watchdog() {
        let opts = Options {
            watchdog: Duration::from_millis(400),
            ..Options::default()
        };
        let srv = FakeServer::start(
            Script::every(vec![
                Step::Trickle {
                    bytes: b"2\r\n".to_vec(),
                    every: Duration::from_millis(10),
                },
                Step::Stall,
            ]),
            opts,
        );
        let mut s = client(&srv);
        assert_eq!(read_lines(&mut s, 1), b"2\r\n");
        thread::sleep(Duration::from_millis(600));
        let tr = srv.finish();
        assert_eq!(tr.conn(0).end, End::Watchdog);
        assert_eq!(tr.conn(0).server_bytes(), b"2\r\n");
    }

    #[test]
    fn unix_listener() {
        let srv = FakeServer::unix(Responder::new());
        let path = srv.unix_path().expect("unix").to_path_buf();
        assert_eq!(srv.endpoint(), format!("unix:{}", path.display()));
        let mut s = UnixStream::connect(&path).expect("connect");
        s.write_all(b"QUIT\r\n").expect("write");
        s.shutdown(Shutdown::Write).expect("shutdown");
        let mut v = Vec::new();
        s.read_to_end(&mut v).expect("read");
        assert_eq!(v, b"220 fake.example ESMTP fake\r\n221 2.0.0 Bye\r\n");
        let tr = srv.finish();
        assert_eq!(tr.conn(0).end, End::ClientEof);
    }

    #[test]
    fn starttls_then_decrypted_record() {
        use crate::support::tls_server::{provider, Leaf, Pki};
        let pki = Pki::new();
        let srv = FakeServer::script(vec![
            Step::send("220 x"),
            Step::expect("STARTTLS"),
            Step::send("220 go"),
            Step::StartTls(pki.server(Leaf::Good)),
            Step::expect("EHLO"),
            Step::send("250 y"),
        ]);
        let mut s = client(&srv);
        read_lines(&mut s, 1);
        s.write_all(b"STARTTLS\r\n").expect("write");
        assert_eq!(read_lines(&mut s, 1), b"220 go\r\n");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der()).expect("root");
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().expect("name");
        let conn =
            rustls::ClientConnection::new(std::sync::Arc::new(config), name)
                .expect("client");
        let mut tls = rustls::StreamOwned::new(conn, s);
        tls.write_all(b"EHLO z\r\n").expect("write in TLS");
        let mut b = [0u8; 64];
        let n = tls.read(&mut b).expect("read in TLS");
        assert_eq!(&b[..n], b"250 y\r\n");
        drop(tls);
        let tr = srv.finish();
        tr.assert_no_errors();
        let c = tr.conn(0);
        assert_eq!(c.plain(), b"STARTTLS\r\n");
        assert_eq!(c.secure(), b"EHLO z\r\n");
        let info = c.tls.clone().expect("handshake");
        assert_eq!(info.sni.as_deref(), Some("localhost"));
    }

    #[test]
    fn reply_code_of_steps() {
        assert_eq!(reply_code(&[Step::send("250-a\r\n550 b")]), Some(*b"550"));
        assert_eq!(reply_code(&[Step::raw("354 go\n")]), Some(*b"354"));
        assert_eq!(reply_code(&[Step::Close]), None);
    }
}
