//! sink: the project's own loopback SMTP/LMTP sink, for `make demo` and
//! for trying smtp-source without a mail server.
//!
//! It listens on 127.0.0.1 (port 0 unless given) or a UNIX socket, runs a
//! thread per connection, accepts everything, and when the expected
//! number of messages has arrived (or the time limit passes) prints what
//! it received: connection, message, recipient and byte counts, and the
//! first message exactly as it came in.
//!
//! Usage: sink [--lmtp] [--messages N] [--seconds S] [--listen ADDR]
//!             [--timeout S] [--tls] [--tls-wrapper] [--require-tls]
//!             [--tls-name NAME]... [--ca-out FILE] [--auth USER:PASS]...
//!             [--auth-file FILE]... [--auth-plaintext] [--require-auth]
//!             [--xclient] [--proxy] [--peers] [--workers N --service MS]
//! It prints `listening ADDR` on stdout as soon as it accepts.
//!
//! Capacity model (`--workers N --service MS`): each message, once its
//! end-of-data has arrived, needs one of N workers, which holds it for MS
//! milliseconds before the reply; a message that finds every worker busy
//! waits in line for one (up to `--timeout`). The sink then takes at most
//! N × 1000 / MS messages a second, and beyond that the line grows: a
//! server whose knee is known exactly, for capacity searches.
//!
//! Every connection is bounded: a command line longer than 4 KiB or a
//! message line longer than 64 KiB ends it, and so does a read or write
//! that waits longer than `--timeout` seconds (30 by default).
//!
//! Secure transport and client identity (all opt-in: without these
//! flags the sink answers and prints exactly as it always did):
//!
//! - `--tls`: EHLO/LHLO offers STARTTLS; `STARTTLS` gets `220 2.0.0
//!   Ready to start TLS` and a TLS handshake. Whatever the client sent
//!   after STARTTLS before the handshake is discarded, and the session
//!   starts over (RFC 3207): MAIL needs a new EHLO/LHLO.
//! - `--tls-wrapper`: TLS from the first byte (SMTPS).
//! - `--require-tls`: MAIL (and AUTH, XCLIENT where offered) before TLS
//!   get `530 5.7.0 Must issue a STARTTLS command first`.
//! - The certificate is minted at start: a self-signed CA "smtp-source
//!   test CA" and a leaf it signed for localhost, 127.0.0.1 and ::1, plus
//!   each `--tls-name NAME`. `--ca-out FILE` writes the CA's PEM, for a
//!   client's `--tls-ca=FILE`. Sessions resume (session cache and
//!   tickets).
//! - `--auth USER:PASS`, `--auth-file FILE` (`user:password` a line;
//!   blank and `#` lines skipped): `AUTH PLAIN LOGIN` is offered after
//!   TLS, or also before it with `--auth-plaintext`. `--require-auth`:
//!   MAIL before AUTH gets `530 5.7.0 Authentication required`.
//! - `--xclient`: offers `XCLIENT NAME ADDR PORT PROTO HELO LOGIN
//!   DESTADDR DESTPORT`; an accepted XCLIENT gets a new `220` greeting
//!   and the session starts over. LOGIN=user counts as authenticated.
//! - `--proxy`: each connection must open with a HAProxy PROXY header,
//!   v1 or v2 (told apart by their first bytes), before the greeting;
//!   one that does not is closed and counted as bad.
//! - `--peers`: counts TCP connections by the client's address and
//!   notes when each address first connected (the wall clock, for
//!   comparing hosts that share it, such as network namespaces).
//!
//! With those flags the summary gains, after the `sink received:` line
//! and before the first message, one line for each feature in use:
//!
//! ```text
//! tls: H handshakes (R resumed, F failed), versions V=N,..., ciphers C=N,...
//! auth: K ok, F failed; users U=N,...
//! xclient: C commands (J rejected), D distinct ADDR; ADDR A=N,...
//! proxy: H headers (v1=N, v2=N), D distinct sources, B bad; sources S=N,...
//! peers: D distinct; connections A=N,...; first A=UNIX.mmm,...
//! ```
//!
//! Lists are sorted by name, `-` when empty, at most 32 entries and then
//! `,...`. Names are printed as xtext (`+XX` for a byte that is not
//! printable ASCII, or is `+`, `,` or `=`). `failed` AUTH counts every
//! AUTH that did not end in 235; ADDR values are as sent, after xtext
//! decoding (`IPV6:2001:db8::1`); sources are the PROXY source IPs.

use base64::Engine as _;
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A command (or AUTH response) line longer than this ends the
/// connection; message lines may be longer, as before.
const COMMAND_MAX: u64 = 4096;
const DATA_MAX: u64 = 1 << 16;
const BANNER: &[u8] = b"220 sink ESMTP\r\n";
const XCLIENT_ATTRS: [&str; 8] = [
    "NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT",
];
const MUST_TLS: &[u8] = b"530 5.7.0 Must issue a STARTTLS command first\r\n";
const IN_MAIL: &[u8] = b"503 5.5.1 Error: MAIL transaction in progress\r\n";
const NO_HELO: &[u8] = b"503 5.5.1 Error: send HELO/EHLO first\r\n";
const UNKNOWN: &[u8] = b"502 5.5.2 Error: command not recognized\r\n";

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    messages: AtomicU64,
    recipients: AtomicU64,
    bytes: AtomicU64,
    first: Mutex<Option<Vec<u8>>>,
    seen: Mutex<Seen>,
}

impl Counts {
    fn seen(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// What the opt-in features saw, for the summary lines.
#[derive(Default)]
struct Seen {
    tls: u64,
    resumed: u64,
    tls_failed: u64,
    versions: Names,
    ciphers: Names,
    auth_ok: u64,
    auth_failed: u64,
    users: Names,
    xclient: u64,
    xclient_rejected: u64,
    addrs: Names,
    proxy_v1: u64,
    proxy_v2: u64,
    proxy_bad: u64,
    sources: Names,
    peers: Names,
    /// When each peer address first connected, in Unix milliseconds;
    /// capped like `peers`.
    first: BTreeMap<String, u128>,
}

/// A count per name; names come from peers, so their number is capped
/// (a name first seen past the cap is not counted).
#[derive(Default)]
struct Names(BTreeMap<String, u64>);

impl Names {
    const MAX: usize = 1 << 14;
    const SHOWN: usize = 32;

    fn add(&mut self, name: &[u8]) {
        let name = xtext(name);
        if self.0.len() < Self::MAX || self.0.contains_key(&name) {
            *self.0.entry(name).or_default() += 1;
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn list(&self) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        let mut out: Vec<String> = (self.0.iter().take(Self::SHOWN))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if self.0.len() > Self::SHOWN {
            out.push("...".into());
        }
        out.join(",")
    }
}

/// Prints a peer's bytes as one word of a `name=N,...` list.
fn xtext(name: &[u8]) -> String {
    let mut out = String::new();
    for &b in name {
        if b.is_ascii_graphic() && !b"+,=".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "+{b:02X}");
        }
    }
    out
}

struct Config {
    lmtp: bool,
    messages: u64,
    seconds: u64,
    listen: String,
    timeout: u64,
    tls: bool,
    tls_wrapper: bool,
    require_tls: bool,
    tls_names: Vec<String>,
    ca_out: Option<String>,
    auth: Vec<String>,
    auth_files: Vec<String>,
    auth_plaintext: bool,
    require_auth: bool,
    xclient: bool,
    proxy: bool,
    peers: bool,
    workers: u32,
    service_ms: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: sink [--lmtp] [--messages N] [--seconds S] \
[--listen ADDR|unix:PATH]
            [--timeout S] [--tls] [--tls-wrapper] [--require-tls] \
[--tls-name NAME]...
            [--ca-out FILE] [--auth USER:PASS]... [--auth-file FILE]... \
[--auth-plaintext]
            [--require-auth] [--xclient] [--proxy] [--peers] [--workers N --service MS]"
    );
    std::process::exit(2);
}

fn config() -> Config {
    let mut c = Config {
        lmtp: false,
        messages: u64::MAX,
        seconds: 60,
        listen: "127.0.0.1:0".into(),
        timeout: 30,
        tls: false,
        tls_wrapper: false,
        require_tls: false,
        tls_names: Vec::new(),
        ca_out: None,
        auth: Vec::new(),
        auth_files: Vec::new(),
        auth_plaintext: false,
        require_auth: false,
        xclient: false,
        proxy: false,
        peers: false,
        workers: 0,
        service_ms: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match a.as_str() {
            "--lmtp" => c.lmtp = true,
            "--messages" => c.messages = value().parse().unwrap_or(u64::MAX),
            "--seconds" => c.seconds = value().parse().unwrap_or(60),
            "--listen" => c.listen = value(),
            "--timeout" => {
                c.timeout = value().parse().unwrap_or_else(|_| usage())
            }
            "--tls" => c.tls = true,
            "--tls-wrapper" => c.tls_wrapper = true,
            "--require-tls" => c.require_tls = true,
            "--tls-name" => c.tls_names.push(value()),
            "--ca-out" => c.ca_out = Some(value()),
            "--auth" => c.auth.push(value()),
            "--auth-file" => c.auth_files.push(value()),
            "--auth-plaintext" => c.auth_plaintext = true,
            "--require-auth" => c.require_auth = true,
            "--xclient" => c.xclient = true,
            "--proxy" => c.proxy = true,
            "--peers" => c.peers = true,
            "--workers" => {
                c.workers = value().parse().unwrap_or_else(|_| usage())
            }
            "--service" => {
                c.service_ms = value().parse().unwrap_or_else(|_| usage())
            }
            _ => usage(),
        }
    }
    c
}

/// What every connection needs to know, fixed at start.
struct Server {
    lmtp: bool,
    timeout: Duration,
    tls: Option<Arc<ServerConfig>>,
    starttls: bool,
    tls_wrapper: bool,
    require_tls: bool,
    users: HashMap<String, String>,
    auth_plaintext: bool,
    require_auth: bool,
    xclient: bool,
    proxy: bool,
    peers: bool,
    counts: Counts,
    /// --workers/--service: the capacity model.
    workers: Option<Workers>,
}

/// N workers, each holding a message for a fixed service time; the
/// rest wait in line.
struct Workers {
    free: Mutex<u32>,
    freed: std::sync::Condvar,
    service: Duration,
}

impl Workers {
    /// Serves one message: waits for a worker (at most `limit`), holds
    /// it for the service time, lets it go. False if none came free.
    fn serve(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            free = match self.freed.wait_timeout(free, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        *free -= 1;
        drop(free);
        std::thread::sleep(self.service);
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
        true
    }
}

fn server(c: &Config) -> Result<Server, String> {
    let tls = if c.tls || c.tls_wrapper {
        Some(tls_config(&c.tls_names, c.ca_out.as_deref())?)
    } else {
        None
    };
    let users = users(&c.auth, &c.auth_files)?;
    if !users.is_empty() && tls.is_none() && !c.auth_plaintext {
        eprintln!("sink: AUTH is offered only after TLS: add --tls");
    }
    Ok(Server {
        lmtp: c.lmtp,
        timeout: Duration::from_secs(c.timeout.max(1)),
        tls,
        starttls: c.tls,
        tls_wrapper: c.tls_wrapper,
        require_tls: c.require_tls,
        users,
        auth_plaintext: c.auth_plaintext,
        require_auth: c.require_auth,
        xclient: c.xclient,
        proxy: c.proxy,
        peers: c.peers,
        counts: Counts::default(),
        workers: (c.workers > 0).then(|| Workers {
            free: Mutex::new(c.workers),
            freed: std::sync::Condvar::new(),
            service: Duration::from_millis(c.service_ms),
        }),
    })
}

fn users(
    pairs: &[String],
    files: &[String],
) -> Result<HashMap<String, String>, String> {
    let mut lines = pairs.to_vec();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("--auth-file {f}: {e}"))?;
        lines.extend(
            text.lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    let mut users = HashMap::new();
    for l in lines {
        let (user, pass) = l
            .split_once(':')
            .ok_or_else(|| format!("not user:password: {l}"))?;
        users.insert(user.to_owned(), pass.to_owned());
    }
    Ok(users)
}

/// Mints a CA and a leaf for the loopback names, and the server config
/// that offers the leaf; clients trust the CA written to `ca_out`.
fn tls_config(
    names: &[String],
    ca_out: Option<&str>,
) -> Result<Arc<ServerConfig>, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| format!("certificate: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.distinguished_name
        .push(DnType::CommonName, "smtp-source test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca.self_signed(&ca_key).map_err(err)?;
    let mut sans: Vec<String> =
        ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    sans.extend_from_slice(names);
    let mut leaf = CertificateParams::new(sans).map_err(err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).map_err(err)?;
    if let Some(path) = ca_out {
        std::fs::write(path, ca.pem())
            .map_err(|e| format!("--ca-out {path}: {e}"))?;
    }
    let key =
        rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der());
    let tls = |e: rustls::Error| format!("tls: {e}");
    let mut config = ServerConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls)?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca.der().clone()],
            key.into(),
        )
        .map_err(tls)?;
    // Tickets resume TLS 1.2 and 1.3 however many clients there are; the
    // default session cache (256 sessions) stays for TLS 1.2 session ids.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(tls)?;
    Ok(Arc::new(config))
}

/// The ring provider, which rustls 0.23.48 deprecated for lacking
/// post-quantum key exchange; that does not matter to a loopback test
/// sink, and ring is the provider the project builds with.
#[allow(deprecated)]
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A listening socket's accepted connection, with its timeouts set.
trait Socket: Read + Write + Send + 'static {
    fn set_timeouts(&self, t: Duration) -> io::Result<()>;
}

impl Socket for TcpStream {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

impl Socket for UnixStream {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

/// The connection as the SMTP conversation sees it: plain, or TLS after
/// STARTTLS or from the start.
enum Conn<S: Socket> {
    Plain(S),
    Tls(Box<StreamOwned<ServerConnection, S>>),
}

impl<S: Socket> Read for Conn<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl<S: Socket> Write for Conn<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

impl<S: Socket> Conn<S> {
    /// Ends TLS with a close_notify, so that the client sees a clean end.
    fn close(&mut self) {
        if let Conn::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }
}

/// What the conversation knows about its client; STARTTLS and XCLIENT
/// start it over.
#[derive(Default)]
struct Session {
    /// HELO/EHLO/LHLO since the start or the last start-over.
    greeted: bool,
    /// The session started over, so MAIL needs a new HELO/EHLO/LHLO.
    restarted: bool,
    /// A MAIL was refused: RCPT and DATA wait for one that is accepted.
    /// (At the start the sink takes RCPT and DATA without MAIL, as it
    /// always did.)
    need_mail: bool,
    in_mail: bool,
    rcpts: u64,
    tls: bool,
    user: Option<String>,
}

impl Session {
    fn start_over(&mut self) {
        let tls = self.tls;
        *self = Session {
            restarted: true,
            need_mail: true,
            tls,
            ..Session::default()
        };
    }

    fn auth_offered(&self, srv: &Server) -> bool {
        !srv.users.is_empty() && (self.tls || srv.auth_plaintext)
    }
}

enum Next {
    Go,
    Quit,
    StartTls,
}

type Rd<S> = BufReader<Conn<S>>;

/// One SMTP/LMTP conversation.
fn serve<S: Socket>(mut sock: S, srv: &Server) -> io::Result<()> {
    if srv.proxy && !proxy(&mut sock, &srv.counts) {
        return Ok(());
    }
    let mut s = Session::default();
    let conn = if srv.tls_wrapper {
        s.tls = true;
        handshake(sock, srv)?
    } else {
        Conn::Plain(sock)
    };
    let mut rd = BufReader::new(conn);
    let mut line = Vec::new();
    send(&mut rd, BANNER)?;
    loop {
        if read_line(&mut rd, &mut line, COMMAND_MAX)? == 0 {
            return Ok(());
        }
        match command(&mut rd, &mut line, &mut s, srv)? {
            Next::Go => {}
            Next::Quit => {
                rd.get_mut().close();
                return Ok(());
            }
            Next::StartTls => rd = starttls(rd, &mut s, srv)?,
        }
    }
}

fn send<S: Socket>(rd: &mut Rd<S>, reply: &[u8]) -> io::Result<()> {
    let w = rd.get_mut();
    w.write_all(reply)?;
    w.flush()
}

/// The opt-in commands first, then the ones the sink always knew.
fn command<S: Socket>(
    rd: &mut Rd<S>,
    line: &mut Vec<u8>,
    s: &mut Session,
    srv: &Server,
) -> io::Result<Next> {
    match &verb(line)[..] {
        b"STARTTLS" if srv.starttls => match starttls_refusal(line, s) {
            Some(r) => send(rd, r).map(|()| Next::Go),
            None => Ok(Next::StartTls),
        },
        b"AUTH" if !srv.users.is_empty() => {
            let command = line.clone();
            auth(rd, &command, line, s, srv).map(|()| Next::Go)
        }
        b"XCLIENT" if srv.xclient => {
            let r = xclient(line, s, srv);
            send(rd, &r).map(|()| Next::Go)
        }
        _ => smtp(rd, line, s, srv),
    }
}

/// HELO to QUIT, told apart by their first four bytes as they always
/// were.
fn smtp<S: Socket>(
    rd: &mut Rd<S>,
    line: &mut Vec<u8>,
    s: &mut Session,
    srv: &Server,
) -> io::Result<Next> {
    let verb = line.get(..4).unwrap_or(line).to_ascii_uppercase();
    let ehlo;
    let reply: &[u8] = match &verb[..] {
        b"HELO" => {
            s.greeted = true;
            s.in_mail = false;
            b"250 sink\r\n"
        }
        b"EHLO" | b"LHLO" => {
            s.greeted = true;
            s.in_mail = false;
            ehlo = ehlo_reply(s, srv);
            &ehlo
        }
        b"MAIL" => mail(s, srv),
        b"RCPT" | b"DATA" if s.need_mail => {
            b"503 5.5.1 Error: need MAIL command\r\n"
        }
        b"RCPT" => {
            s.rcpts += 1;
            b"250 2.1.5 Ok\r\n"
        }
        b"DATA" => return message(rd, line, s, srv).map(|()| Next::Go),
        b"RSET" => {
            s.in_mail = false;
            b"250 2.0.0 Ok\r\n"
        }
        b"NOOP" => b"250 2.0.0 Ok\r\n",
        b"QUIT" => {
            send(rd, b"221 2.0.0 Bye\r\n")?;
            return Ok(Next::Quit);
        }
        _ => UNKNOWN,
    };
    send(rd, reply).map(|()| Next::Go)
}

/// DATA: the message, then one reply (LMTP: one per recipient).
fn message<S: Socket>(
    rd: &mut Rd<S>,
    line: &mut Vec<u8>,
    s: &mut Session,
    srv: &Server,
) -> io::Result<()> {
    let counts = &srv.counts;
    send(rd, b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
    data(rd, line, counts)?;
    if let Some(w) = &srv.workers {
        if !w.serve(srv.timeout) {
            s.in_mail = false;
            return send(rd, b"451 4.3.2 No worker came free\r\n");
        }
    }
    counts.recipients.fetch_add(s.rcpts, Ordering::Relaxed);
    let n = if srv.lmtp { s.rcpts.max(1) } else { 1 };
    for _ in 0..n {
        send(rd, b"250 2.0.0 Ok: queued\r\n")?;
    }
    counts.messages.fetch_add(1, Ordering::Relaxed);
    s.in_mail = false;
    Ok(())
}

/// The command word, upper-cased.
fn verb(line: &[u8]) -> Vec<u8> {
    let end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    line[..end].to_ascii_uppercase()
}

/// The words after the command word, split at spaces.
fn args(line: &[u8]) -> Vec<&[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .skip(1)
        .collect()
}

/// `250 sink` alone, as always, unless a feature adds an extension.
fn ehlo_reply(s: &Session, srv: &Server) -> Vec<u8> {
    let mut lines = vec!["sink".to_owned()];
    if srv.starttls && !s.tls {
        lines.push("STARTTLS".into());
    }
    if s.auth_offered(srv) {
        lines.push("AUTH PLAIN LOGIN".into());
    }
    if srv.xclient {
        lines.push(format!("XCLIENT {}", XCLIENT_ATTRS.join(" ")));
    }
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        let _ = write!(out, "250{sep}{l}\r\n");
    }
    out
}

fn mail(s: &mut Session, srv: &Server) -> &'static [u8] {
    let refusal: Option<&'static [u8]> = if srv.require_tls && !s.tls {
        Some(MUST_TLS)
    } else if srv.require_auth && s.user.is_none() {
        Some(b"530 5.7.0 Authentication required\r\n")
    } else if s.restarted && !s.greeted {
        Some(NO_HELO)
    } else {
        None
    };
    if let Some(r) = refusal {
        s.need_mail = true;
        return r;
    }
    s.rcpts = 0;
    s.in_mail = true;
    s.need_mail = false;
    b"250 2.1.0 Ok\r\n"
}

fn data<R: BufRead>(
    rd: &mut R,
    line: &mut Vec<u8>,
    counts: &Counts,
) -> io::Result<()> {
    let mut message = Vec::new();
    loop {
        if read_line(rd, line, DATA_MAX)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" {
            break;
        }
        counts.bytes.fetch_add(line.len() as u64, Ordering::Relaxed);
        if message.len() < 1 << 16 {
            message.extend_from_slice(line);
        }
    }
    let mut first = counts.first.lock().unwrap_or_else(|e| e.into_inner());
    first.get_or_insert(message);
    Ok(())
}

fn read_line<R: BufRead>(
    rd: &mut R,
    line: &mut Vec<u8>,
    max: u64,
) -> io::Result<usize> {
    line.clear();
    let n = rd.take(max).read_until(b'\n', line)?;
    if n > 0 && !line.ends_with(b"\n") {
        return Err(io::ErrorKind::InvalidData.into());
    }
    Ok(n)
}

// STARTTLS and TLS

fn starttls_refusal(line: &[u8], s: &Session) -> Option<&'static [u8]> {
    if !args(line).is_empty() {
        Some(b"501 5.5.4 Syntax: STARTTLS\r\n")
    } else if s.tls {
        Some(b"554 5.5.1 Error: TLS already active\r\n")
    } else if s.in_mail {
        Some(IN_MAIL)
    } else {
        None
    }
}

fn starttls<S: Socket>(
    mut rd: Rd<S>,
    s: &mut Session,
    srv: &Server,
) -> io::Result<Rd<S>> {
    send(&mut rd, b"220 2.0.0 Ready to start TLS\r\n")?;
    // into_inner drops what the client pipelined after STARTTLS: commands
    // sent in clear must not run inside the TLS session (RFC 3207).
    let Conn::Plain(sock) = rd.into_inner() else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    let conn = handshake(sock, srv)?;
    s.start_over();
    s.tls = true;
    Ok(BufReader::new(conn))
}

/// Runs the TLS handshake to its end (bounded by the socket timeouts and
/// a deadline) and counts it.
fn handshake<S: Socket>(mut sock: S, srv: &Server) -> io::Result<Conn<S>> {
    let config = srv.tls.clone().ok_or(io::ErrorKind::InvalidInput)?;
    let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
    let deadline = Instant::now() + srv.timeout;
    let mut done = || -> io::Result<()> {
        while tls.is_handshaking() {
            if Instant::now() > deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            tls.complete_io(&mut sock)?;
        }
        // Send the TLS 1.3 session tickets now, not with the banner.
        if tls.wants_write() {
            tls.complete_io(&mut sock)?;
        }
        Ok(())
    };
    if let Err(e) = done() {
        srv.counts.seen(|seen| seen.tls_failed += 1);
        return Err(e);
    }
    srv.counts.seen(|seen| {
        seen.tls += 1;
        if tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            seen.resumed += 1;
        }
        if let Some(v) = tls.protocol_version() {
            // `TLSv1.3`, as the client and OpenSSL write it.
            seen.versions
                .add(format!("{v:?}").replace('_', ".").as_bytes());
        }
        if let Some(c) = tls.negotiated_cipher_suite() {
            seen.ciphers.add(format!("{:?}", c.suite()).as_bytes());
        }
    });
    Ok(Conn::Tls(Box::new(StreamOwned::new(tls, sock))))
}

// AUTH

enum Auth {
    Ok(String),
    Bad,
    Cancelled,
    Undecodable,
    Syntax,
    Mechanism,
}

fn auth<S: Socket>(
    rd: &mut Rd<S>,
    command: &[u8],
    line: &mut Vec<u8>,
    s: &mut Session,
    srv: &Server,
) -> io::Result<()> {
    let refusal: Option<&[u8]> = if srv.require_tls && !s.tls {
        Some(MUST_TLS)
    } else if !s.auth_offered(srv) {
        Some(b"503 5.5.1 Error: authentication not enabled\r\n")
    } else if !s.greeted {
        Some(NO_HELO)
    } else if s.user.is_some() {
        Some(b"503 5.5.1 Error: already authenticated\r\n")
    } else if s.in_mail {
        Some(IN_MAIL)
    } else {
        None
    };
    if let Some(r) = refusal {
        return send(rd, r);
    }
    let words = args(command);
    let initial = words.get(1).copied();
    let outcome = match words.first().map(|m| m.to_ascii_uppercase()) {
        _ if words.len() > 2 => Auth::Syntax,
        None => Auth::Syntax,
        Some(m) if m == b"PLAIN" => plain(rd, line, initial, srv)?,
        Some(m) if m == b"LOGIN" => login(rd, line, initial, srv)?,
        Some(_) => Auth::Mechanism,
    };
    let reply: &[u8] = match &outcome {
        Auth::Ok(_) => b"235 2.7.0 Authentication successful\r\n",
        Auth::Bad => b"535 5.7.8 Error: authentication failed\r\n",
        Auth::Cancelled => b"501 5.7.0 Authentication aborted\r\n",
        Auth::Undecodable => b"501 5.5.2 Cannot decode response\r\n",
        Auth::Syntax => b"501 5.5.4 Syntax: AUTH mechanism\r\n",
        Auth::Mechanism => {
            b"504 5.5.4 Unsupported authentication mechanism\r\n"
        }
    };
    srv.counts.seen(|seen| match &outcome {
        Auth::Ok(user) => {
            seen.auth_ok += 1;
            seen.users.add(user.as_bytes());
        }
        _ => seen.auth_failed += 1,
    });
    if let Auth::Ok(user) = outcome {
        s.user = Some(user);
    }
    send(rd, reply)
}

/// A client's base64 answer: the initial response if it came with the
/// command, else one read after `prompt`. `Err` is the outcome to report.
fn answer<S: Socket>(
    rd: &mut Rd<S>,
    line: &mut Vec<u8>,
    initial: Option<&[u8]>,
    prompt: &[u8],
) -> io::Result<Result<Vec<u8>, Auth>> {
    let text = match initial {
        Some(t) => t.to_vec(),
        None => {
            send(rd, prompt)?;
            if read_line(rd, line, COMMAND_MAX)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            line.trim_ascii_end().to_vec()
        }
    };
    if text == b"*" {
        return Ok(Err(Auth::Cancelled));
    }
    if text == b"=" {
        return Ok(Ok(Vec::new()));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(b64.decode(&text).map_err(|_| Auth::Undecodable))
}

fn plain<S: Socket>(
    rd: &mut Rd<S>,
    line: &mut Vec<u8>,
    initial: Option<&[u8]>,
    srv: &Server,
) -> io::Result<Auth> {
    let token = match answer(rd, line, initial, b"334 \r\n")? {
        Ok(t) => t,
        Err(outcome) => return Ok(outcome),
    };
    // authzid NUL authcid NUL password; an authzid must be the user.
    let parts: Vec<&[u8]> = token.split(|&b| b == 0).collect();
    let [authz, user, pass] = parts[..] else {
        return Ok(Auth::Bad);
    };
    if !authz.is_empty() && authz != user {
        return Ok(Auth::Bad);
    }
    Ok(check(srv, user, pass))
}

fn login<S: Socket>(
    rd: &mut Rd<S>,
    line: &mut Vec<u8>,
    initial: Option<&[u8]>,
    srv: &Server,
) -> io::Result<Auth> {
    let user = match answer(rd, line, initial, b"334 VXNlcm5hbWU6\r\n")? {
        Ok(u) => u,
        Err(outcome) => return Ok(outcome),
    };
    let pass = match answer(rd, line, None, b"334 UGFzc3dvcmQ6\r\n")? {
        Ok(p) => p,
        Err(outcome) => return Ok(outcome),
    };
    Ok(check(srv, &user, &pass))
}

fn check(srv: &Server, user: &[u8], pass: &[u8]) -> Auth {
    let (Ok(user), Ok(pass)) =
        (std::str::from_utf8(user), std::str::from_utf8(pass))
    else {
        return Auth::Bad;
    };
    match srv.users.get(user) {
        Some(p) if p == pass => Auth::Ok(user.to_owned()),
        _ => Auth::Bad,
    }
}

// XCLIENT

/// Answers one XCLIENT command; an accepted one starts the session over
/// with a new greeting, as Postfix's smtpd does.
fn xclient(line: &[u8], s: &mut Session, srv: &Server) -> Vec<u8> {
    let outcome = if srv.require_tls && !s.tls {
        Err(String::from_utf8_lossy(MUST_TLS).trim_end().to_owned())
    } else if s.in_mail {
        Err(String::from_utf8_lossy(IN_MAIL).trim_end().to_owned())
    } else {
        xclient_attrs(line)
    };
    let attrs = match outcome {
        Ok(attrs) => attrs,
        Err(reply) => {
            srv.counts.seen(|seen| seen.xclient_rejected += 1);
            return format!("{reply}\r\n").into_bytes();
        }
    };
    srv.counts.seen(|seen| {
        seen.xclient += 1;
        for (name, value) in &attrs {
            if name == "ADDR" {
                seen.addrs.add(value);
            }
        }
    });
    s.start_over();
    let login = attrs.iter().find(|(n, _)| n == "LOGIN");
    if let Some((_, v)) = login.filter(|(_, v)| !unavailable(v)) {
        s.user = Some(String::from_utf8_lossy(v).into_owned());
    }
    BANNER.to_vec()
}

/// The attributes, names upper-cased and values xtext-decoded, or the
/// reply that refuses them.
fn xclient_attrs(line: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let words = args(line);
    if words.is_empty() {
        return Err("501 5.5.4 Syntax: XCLIENT attribute=value...".into());
    }
    let mut attrs = Vec::new();
    for w in words {
        let show = String::from_utf8_lossy(w);
        let Some(eq) = w.iter().position(|&b| b == b'=') else {
            return Err("501 5.5.4 Error: attribute=value expected".into());
        };
        let (name, raw) = (&w[..eq], &w[eq + 1..]);
        if raw.is_empty() {
            return Err("501 5.5.4 Error: attribute=value expected".into());
        }
        if raw.len() > 255 {
            return Err("501 5.5.4 Error: attribute value too long".into());
        }
        let Some(value) = unxtext(raw) else {
            return Err(format!(
                "501 5.5.4 Error: malformed attribute value: {show}"
            ));
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        if !XCLIENT_ATTRS.contains(&name.as_str()) {
            let shown = String::from_utf8_lossy(&w[..eq]);
            return Err(format!(
                "501 5.5.4 Bad XCLIENT attribute name: {shown}"
            ));
        }
        if !valid_xclient_value(&name, &value) {
            let v = String::from_utf8_lossy(&value);
            return Err(format!("501 5.5.4 Bad {name} syntax: {v}"));
        }
        attrs.push((name, value));
    }
    Ok(attrs)
}

fn unavailable(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"[UNAVAILABLE]")
        || v.eq_ignore_ascii_case(b"[TEMPUNAVAIL]")
}

/// Addresses, ports and the protocol are checked, so that a client's
/// mistake (an IPv6 ADDR without `IPV6:`) shows as a 501.
fn valid_xclient_value(name: &str, value: &[u8]) -> bool {
    if unavailable(value) {
        return true;
    }
    let Ok(v) = std::str::from_utf8(value) else {
        return false;
    };
    match name {
        "ADDR" | "DESTADDR" => {
            match v.get(..5).filter(|p| p.eq_ignore_ascii_case("IPV6:")) {
                Some(_) => v[5..].parse::<Ipv6Addr>().is_ok(),
                None => v.parse::<Ipv4Addr>().is_ok(),
            }
        }
        "PORT" | "DESTPORT" => {
            v.bytes().all(|b| b.is_ascii_digit()) && v.parse::<u16>().is_ok()
        }
        "PROTO" => {
            v.eq_ignore_ascii_case("SMTP") || v.eq_ignore_ascii_case("ESMTP")
        }
        _ => true,
    }
}

/// Decodes xtext (RFC 3461): `+XX` is the byte with hex value XX.
fn unxtext(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b != b'+' {
            out.push(b);
            continue;
        }
        let (hi, lo) = (hex(*it.next()?)?, hex(*it.next()?)?);
        out.push(hi << 4 | lo);
    }
    Some(out)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

// PROXY protocol

enum Proxy {
    /// The peer closed before sending anything.
    Empty,
    Bad,
    V1(Option<IpAddr>),
    V2(Option<IpAddr>),
}

const PROXY_V2: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Reads the PROXY header and counts it; false ends the connection.
fn proxy<R: Read>(r: &mut R, counts: &Counts) -> bool {
    let header = read_proxy(r);
    counts.seen(|seen| match &header {
        Proxy::Empty => {}
        Proxy::Bad => seen.proxy_bad += 1,
        Proxy::V1(source) | Proxy::V2(source) => {
            if matches!(header, Proxy::V1(_)) {
                seen.proxy_v1 += 1;
            } else {
                seen.proxy_v2 += 1;
            }
            if let Some(ip) = source {
                seen.sources.add(ip.to_string().as_bytes());
            }
        }
    });
    matches!(header, Proxy::V1(_) | Proxy::V2(_))
}

/// Reads exactly the header from the socket, no further: with
/// `--tls-wrapper` the TLS handshake follows it.
fn read_proxy<R: Read>(r: &mut R) -> Proxy {
    // Both versions are at least 12 bytes long ("PROXY UNKNOWN\r\n" is
    // the shortest v1 header), so 12 bytes tell them apart.
    let mut head = [0u8; 12];
    match r.read(&mut head[..1]) {
        Ok(0) => return Proxy::Empty,
        Ok(_) => {}
        Err(_) => return Proxy::Bad,
    }
    if r.read_exact(&mut head[1..]).is_err() {
        return Proxy::Bad;
    }
    let parsed = if &head == PROXY_V2 {
        proxy_v2(r)
    } else if head.starts_with(b"PROXY ") {
        proxy_v1(r, &head)
    } else {
        None
    };
    parsed.unwrap_or(Proxy::Bad)
}

/// `PROXY TCP4|TCP6 src dst sport dport\r\n` or `PROXY UNKNOWN ...\r\n`,
/// at most 107 bytes.
fn proxy_v1<R: Read>(r: &mut R, head: &[u8]) -> Option<Proxy> {
    let mut line = head.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= 107 {
            return None;
        }
        let mut b = [0u8];
        r.read_exact(&mut b).ok()?;
        line.push(b[0]);
    }
    let text = std::str::from_utf8(&line[..line.len() - 2]).ok()?;
    let words: Vec<&str> = text.split(' ').collect();
    match words[..] {
        ["PROXY", "UNKNOWN", ..] => Some(Proxy::V1(None)),
        ["PROXY", family, src, dst, sport, dport] => {
            let ip = |a: &str| match family {
                "TCP4" => a.parse::<Ipv4Addr>().ok().map(IpAddr::from),
                "TCP6" => a.parse::<Ipv6Addr>().ok().map(IpAddr::from),
                _ => None,
            };
            let source = ip(src)?;
            ip(dst)?;
            sport.parse::<u16>().ok()?;
            dport.parse::<u16>().ok()?;
            Some(Proxy::V1(Some(source)))
        }
        _ => None,
    }
}

/// After the signature: version/command, family, 16-bit length, then the
/// addresses and any TLVs (skipped).
fn proxy_v2<R: Read>(r: &mut R) -> Option<Proxy> {
    let mut fixed = [0u8; 4];
    r.read_exact(&mut fixed).ok()?;
    let [ver_cmd, family, hi, lo] = fixed;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([hi, lo]))];
    r.read_exact(&mut body).ok()?;
    match ver_cmd {
        0x20 => return Some(Proxy::V2(None)), // LOCAL: the proxy's own
        0x21 => {}
        _ => return None,
    }
    let source: Option<IpAddr> = match family {
        0x11 | 0x12 => {
            let a: [u8; 4] = body.get(..4)?.try_into().ok()?;
            body.get(..12)?;
            Some(Ipv4Addr::from(a).into())
        }
        0x21 | 0x22 => {
            let a: [u8; 16] = body.get(..16)?.try_into().ok()?;
            body.get(..36)?;
            Some(Ipv6Addr::from(a).into())
        }
        // UNSPEC and UNIX: no address to record.
        0x00 | 0x31 | 0x32 => None,
        _ => return None,
    };
    Some(Proxy::V2(source))
}

// Accepting, waiting and the summary

fn spawn<S: Socket>(stream: S, peer: Option<IpAddr>, srv: &Arc<Server>) {
    srv.counts.connections.fetch_add(1, Ordering::Relaxed);
    if let (true, Some(ip)) = (srv.peers, peer) {
        note_peer(&srv.counts, ip);
    }
    if stream.set_timeouts(srv.timeout).is_err() {
        return;
    }
    // rustls' handshake needs more stack than plain SMTP does.
    let stack = if srv.tls.is_some() { 512 } else { 128 } * 1024;
    let srv = Arc::clone(srv);
    let _ = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            let _ = serve(stream, &srv);
        });
}

/// Counts a connection from `ip`, and when it first came.
fn note_peer(counts: &Counts, ip: IpAddr) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let name = ip.to_string();
    counts.seen(|seen| {
        seen.peers.add(name.as_bytes());
        if seen.first.len() < Names::MAX || seen.first.contains_key(&name) {
            seen.first.entry(name).or_insert(now);
        }
    });
}

fn main() {
    let c = config();
    let srv = match server(&c) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("sink: {e}");
            std::process::exit(2);
        }
    };
    let listen = c.listen.clone();
    let accepter = Arc::clone(&srv);
    if let Some(path) = listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).expect("bind unix socket");
        println!("listening unix:{path}");
        spawn_thread(move || {
            for s in l.incoming().flatten() {
                spawn::<UnixStream>(s, None, &accepter);
            }
        });
    } else {
        let l = TcpListener::bind(&listen).expect("bind");
        println!("listening {}", l.local_addr().expect("address"));
        spawn_thread(move || {
            for s in l.incoming().flatten() {
                let _ = s.set_nodelay(true);
                let peer = s.peer_addr().ok().map(|a| a.ip());
                spawn::<TcpStream>(s, peer, &accepter);
            }
        });
    }
    let _ = io::stdout().flush();
    wait(&srv.counts, c.messages, Duration::from_secs(c.seconds));
    report(&srv);
}

fn wait(counts: &Counts, messages: u64, limit: Duration) {
    let start = Instant::now();
    while counts.messages.load(Ordering::Relaxed) < messages
        && start.elapsed() < limit
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report(srv: &Server) {
    let counts = &srv.counts;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "sink received: connections={} messages={} recipients={} \
bytes={}",
        n(&counts.connections),
        n(&counts.messages),
        n(&counts.recipients),
        n(&counts.bytes)
    );
    counts.seen(|seen| report_features(srv, seen));
    let first = counts.first.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = first.as_ref() {
        println!("first message, as received:");
        let _ = io::stdout().write_all(m);
    }
    let _ = io::stdout().flush();
}

/// One line for each opt-in feature in use (the `//!` header has the
/// formats).
fn report_features(srv: &Server, seen: &Seen) {
    if srv.tls.is_some() {
        println!(
            "tls: {} handshakes ({} resumed, {} failed), versions {}, \
ciphers {}",
            seen.tls,
            seen.resumed,
            seen.tls_failed,
            seen.versions.list(),
            seen.ciphers.list()
        );
    }
    if !srv.users.is_empty() {
        println!(
            "auth: {} ok, {} failed; users {}",
            seen.auth_ok,
            seen.auth_failed,
            seen.users.list()
        );
    }
    if srv.xclient {
        println!(
            "xclient: {} commands ({} rejected), {} distinct ADDR; ADDR {}",
            seen.xclient,
            seen.xclient_rejected,
            seen.addrs.len(),
            seen.addrs.list()
        );
    }
    if srv.proxy {
        println!(
            "proxy: {} headers (v1={}, v2={}), {} distinct sources, {} bad; \
sources {}",
            seen.proxy_v1 + seen.proxy_v2,
            seen.proxy_v1,
            seen.proxy_v2,
            seen.sources.len(),
            seen.proxy_bad,
            seen.sources.list()
        );
    }
    if srv.peers {
        println!(
            "peers: {} distinct; connections {}; first {}",
            seen.peers.len(),
            seen.peers.list(),
            first_list(&seen.first)
        );
    }
}

/// `ADDR=UNIX.mmm,...`, as many as `Names::list` shows.
fn first_list(first: &BTreeMap<String, u128>) -> String {
    if first.is_empty() {
        return "-".into();
    }
    let mut out: Vec<String> = (first.iter().take(Names::SHOWN))
        .map(|(k, ms)| format!("{k}={}.{:03}", ms / 1000, ms % 1000))
        .collect();
    if first.len() > Names::SHOWN {
        out.push("...".into());
    }
    out.join(",")
}

fn spawn_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name("accept".into())
        .spawn(f)
        .expect("cannot start the accept thread");
}
