//! TLS (STARTTLS at the three levels, SMTPS), AUTH PLAIN/LOGIN, XCLIENT
//! and PROXY v1/v2, against the scripted server with a TLS server side
//! (`support::tls_server`: certificates minted per test), then once per
//! feature against the project's sink (`examples/sink.rs`).
//!
//! Each test asserts the exit status, the exact stderr and, where it
//! means something, the exact bytes the client sent: before TLS
//! (`Conn::plain`) and inside it, decrypted (`Conn::secure`). Runs that
//! wait use a 1 s stage timeout and assert an elapsed-time bound.

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::support::fake_server::{
    mask_all, End, FakeServer, Responder, Step, Transcript, Verb,
};
use crate::support::tls_server::{Leaf, Pki, TlsServer, OTHER_NAME};
use crate::support::{
    assert_bytes_eq, escape, ours, skip, spawn, Cmd, Outcome, TempDir, ARGV0,
};

/// Hard limit of one run.
const LIMIT: Duration = Duration::from_secs(8);

/// The latest a run that never waits may end.
const QUICK: Duration = Duration::from_millis(4000);

/// The latest a run that waits for a 1 s stage timeout may end, and the
/// earliest.
const T_MAX: Duration = Duration::from_millis(4000);
const T_MIN: Duration = Duration::from_millis(900);

/// `-M` of every run: the EHLO name and the address domain.
const HOST: &str = "secure.example";

const LADEDA: &str = "La de da de da 1.\r\nLa de da de da 2.\r\n\
                      La de da de da 3.\r\nLa de da de da 4.\r\n";

const READY: &str = "220 2.0.0 Ready to start TLS";
const EHLO_TLS: &str = "250-fake.example\r\n250 STARTTLS";
const EHLO_PLAIN: &str = "250-fake.example\r\n250 8BITMIME";
const EHLO_AUTH: &str = "250-fake.example\r\n250 AUTH PLAIN LOGIN";
const EHLO_XCLIENT: &str =
    "250-fake.example\r\n250 XCLIENT NAME ADDR PORT PROTO HELO LOGIN";
const AUTH_OK: &str = "235 2.7.0 Authentication successful";
const AUTH_BAD: &str = "535 5.7.8 Error: authentication failed: bad";

/// A password that stands out in any output, with a colon in it.
const PASSWORD: &str = "Tr0ub4dor:&3-xyzzy";

// ---------------------------------------------------------------------------
// Helpers

/// Ours with `-M secure.example`, `args` and the hard limit.
fn client(args: &[&str]) -> Cmd {
    ours().cmd().args(["-M", HOST]).args(args).timeout(LIMIT)
}

/// Runs `cmd` against `srv`; the outcome and the transcript.
fn run_cmd(cmd: Cmd, srv: FakeServer) -> (Outcome, Transcript) {
    let out = cmd.arg(srv.endpoint()).run();
    (out, srv.finish())
}

fn run(srv: FakeServer, args: &[&str]) -> (Outcome, Transcript) {
    run_cmd(client(args), srv)
}

/// A run with a 1 s stage timeout.
fn run_t1(srv: FakeServer, args: &[&str]) -> (Outcome, Transcript) {
    run_cmd(client(args).stage_timeout(1), srv)
}

fn fatal(text: &str) -> String {
    format!("{ARGV0}: fatal: {text}\n")
}

fn warning(text: &str) -> String {
    format!("{ARGV0}: warning: {text}\n")
}

/// Exit 0, nothing on stdout or stderr, quickly.
fn assert_clean(out: &Outcome) {
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr("")
        .assert_elapsed_below(QUICK);
}

/// Exit 1 with exactly this fatal text, quickly.
fn assert_fatal(out: &Outcome, text: &str) {
    out.assert_status(1)
        .assert_stderr(&fatal(text))
        .assert_elapsed_below(QUICK);
}

/// Exit 1 with this fatal text after waiting for the 1 s timeout.
fn assert_fatal_at_t(out: &Outcome, text: &str) {
    out.assert_status(1)
        .assert_stderr(&fatal(text))
        .assert_elapsed_below(T_MAX);
    assert!(out.elapsed >= T_MIN, "did not wait\n{}", out.render());
}

/// `foo@secure.example`.
fn foo() -> String {
    format!("foo@{HOST}")
}

fn ehlo() -> String {
    format!("EHLO {HOST}\r\n")
}

fn helo() -> String {
    format!("HELO {HOST}\r\n")
}

fn lhlo() -> String {
    format!("LHLO {HOST}\r\n")
}

/// MAIL, RCPT and DATA of one default message.
fn envelope() -> String {
    let f = foo();
    format!("MAIL FROM:<{f}>\r\nRCPT TO:<{f}>\r\nDATA\r\n")
}

/// The default message content (headers as [`mask_all`] shows them).
fn content() -> String {
    let f = foo();
    format!(
        "From: <{f}>\r\nTo: <{f}>\r\nDate: <DATE>\r\n\
         Message-Id: <PID.FD.CNT@{HOST}>\r\n\r\n{LADEDA}"
    )
}

/// One default transaction, lock-step.
fn txn() -> String {
    format!("{}{}.\r\n", envelope(), content())
}

/// `actual` (masked) must equal `expected`.
fn assert_wire(what: &str, expected: &str, actual: &[u8]) {
    assert_bytes_eq(what, &mask_all(expected.as_bytes()), &mask_all(actual));
}

/// Connection `i`: these plaintext bytes, then these inside TLS.
fn assert_sent(tr: &Transcript, i: usize, plain: &str, secure: &str) {
    let c = tr.conn(i);
    let ctx = tr.render();
    assert_wire(&format!("plaintext of {i}\n{ctx}"), plain, c.plain());
    assert_wire(&format!("TLS part of {i}\n{ctx}"), secure, c.secure());
}

/// Connection `i` made no TLS handshake and sent exactly `plain`.
fn assert_plain_only(tr: &Transcript, i: usize, plain: &str) {
    let c = tr.conn(i);
    assert!(c.tls.is_none(), "TLS on {i}:\n{}", tr.render());
    assert_wire(&format!("connection {i}\n{}", tr.render()), plain, &c.raw);
}

/// STARTTLS: `220`, then the handshake with `tls`.
fn starttls_steps(tls: &TlsServer) -> Vec<Step> {
    vec![Step::send(READY), Step::StartTls(tls.clone())]
}

/// A server that offers STARTTLS (`before` is its first EHLO reply)
/// and answers the EHLO inside TLS with `after`.
fn tls_responder(tls: &TlsServer, before: &str, after: &str) -> Responder {
    Responder::new()
        .on_nth(Verb::Ehlo, 0, before)
        .on_nth(Verb::Ehlo, 1, after)
        .on_steps(Verb::StartTls, starttls_steps(tls))
}

/// [`tls_responder`] with the good certificate and plain capabilities.
fn good_tls(pki: &Pki) -> Responder {
    tls_responder(&pki.server(Leaf::Good), EHLO_TLS, EHLO_PLAIN)
}

/// What a STARTTLS session sends before TLS.
fn plain_starttls() -> String {
    format!("{}STARTTLS\r\n", ehlo())
}

/// EHLO again, one transaction and QUIT: a whole session inside TLS.
fn secure_session() -> String {
    format!("{}{}QUIT\r\n", ehlo(), txn())
}

/// A banner, an EHLO reply offering STARTTLS, then `after_starttls`
/// (on every connection).
fn starttls_script(after_starttls: Vec<Step>) -> FakeServer {
    let mut steps = vec![
        Step::send("220 fake.example ESMTP"),
        Step::expect("EHLO"),
        Step::send(EHLO_TLS),
        Step::expect("STARTTLS"),
    ];
    steps.extend(after_starttls);
    FakeServer::script(steps)
}

/// A CA file of `pki` in `dir`, as an argument value.
fn ca_file(pki: &Pki, dir: &TempDir) -> String {
    pki.write_ca(dir.path()).to_string_lossy().into_owned()
}

/// The server's port.
fn port(srv: &FakeServer) -> u16 {
    srv.port().expect("tcp server")
}

/// The TLS handshake failure as the client words it.
fn handshake_failed(reason: &str) -> String {
    format!("TLS handshake failed: {reason}")
}

/// The commands inside TLS on connection `i` (decrypted lines).
fn secure_lines(tr: &Transcript, i: usize) -> Vec<String> {
    String::from_utf8_lossy(tr.conn(i).secure())
        .split_inclusive('\n')
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// Whether `hay` contains `needle`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// STARTTLS at the three levels

#[test]
fn may_offered_upgrades_and_greets_again() {
    let pki = Pki::new();
    let (out, tr) = run(FakeServer::tcp(good_tls(&pki)), &["--tls=may"]);
    assert_clean(&out);
    assert_sent(&tr, 0, &plain_starttls(), &secure_session());
    let info = tr.conn(0).tls.clone().expect("handshake");
    assert!(!info.resumed);
    // An address literal: no SNI.
    assert_eq!(info.sni, None);
    // QUIT, then close_notify.
    assert_eq!(tr.conn(0).end, End::CloseNotify, "{}", tr.render());
    tr.assert_no_errors();
}

#[test]
fn may_not_offered_stays_plaintext() {
    let r = Responder::new().on(Verb::Ehlo, EHLO_PLAIN);
    let (out, tr) = run(FakeServer::tcp(r), &["--tls=may"]);
    assert_clean(&out);
    assert_plain_only(&tr, 0, &format!("{}{}QUIT\r\n", ehlo(), txn()));
}

#[test]
fn may_refused_goes_on_in_plaintext() {
    let r = Responder::new().on(Verb::Ehlo, EHLO_TLS).on(
        Verb::StartTls,
        "454 4.7.0 TLS not available due to local problem",
    );
    let (out, tr) = run(FakeServer::tcp(r.clone()), &["--tls=may"]);
    assert_clean(&out);
    let want = format!("{}STARTTLS\r\n{}QUIT\r\n", ehlo(), txn());
    assert_plain_only(&tr, 0, &want);
    // -v says why.
    let (out, _) = run(FakeServer::tcp(r), &["-v", "--tls=may"]);
    out.assert_status(0);
    let note = format!(
        "{ARGV0}: STARTTLS refused, going on in plaintext: STARTTLS \
         rejected: 454 4.7.0 TLS not available due to local problem\n"
    );
    assert!(
        contains(&out.stderr, note.as_bytes()),
        "no note\n{}",
        out.render()
    );
}

/// STARTTLS answered with 421, then the server closes.
fn starttls_421() -> FakeServer {
    FakeServer::tcp(Responder::new().on(Verb::Ehlo, EHLO_TLS).on_steps(
        Verb::StartTls,
        vec![Step::send("421 4.3.2 going away"), Step::Close],
    ))
}

#[test]
fn may_421_to_starttls_closes_like_any_421() {
    // 421 means the server is closing: going on in plaintext would only
    // meet a lost connection (fatal even under -A). As at every stage:
    // fatal without -A; under -A a warning and close without QUIT.
    let text = "STARTTLS rejected: 421 4.3.2 going away";
    let (out, tr) = run(starttls_421(), &["--tls=may"]);
    assert_fatal(&out, text);
    assert_plain_only(&tr, 0, &plain_starttls());
    let (out, tr) = run(starttls_421(), &["--tls=may", "-A", "-m", "2"]);
    out.assert_status(0)
        .assert_stderr(&warning(text).repeat(2))
        .assert_elapsed_below(QUICK);
    for i in 0..2 {
        assert_plain_only(&tr, i, &plain_starttls());
    }
}

#[test]
fn encrypt_not_offered_is_fatal_and_sends_nothing_more() {
    let r = Responder::new().on(Verb::Ehlo, EHLO_PLAIN);
    let (out, tr) = run(FakeServer::tcp(r), &["--tls=encrypt"]);
    assert_fatal(
        &out,
        "STARTTLS not offered in reply to EHLO: 250 fake.example",
    );
    assert_plain_only(&tr, 0, &ehlo());
}

#[test]
fn encrypt_not_offered_under_a_quits_and_goes_on() {
    let r = Responder::new().on(Verb::Ehlo, EHLO_PLAIN);
    let (out, tr) = run(FakeServer::tcp(r), &["-A", "--tls", "-m", "2"]);
    let w = warning("STARTTLS not offered in reply to EHLO: 250 fake.example");
    out.assert_status(0)
        .assert_stderr(&w.repeat(2))
        .assert_elapsed_below(QUICK);
    assert_eq!(tr.len(), 2, "{}", tr.render());
    for i in 0..2 {
        assert_plain_only(&tr, i, &format!("{}QUIT\r\n", ehlo()));
    }
}

#[test]
fn encrypt_refused_is_fatal() {
    let r = Responder::new()
        .on(Verb::Ehlo, EHLO_TLS)
        .on(Verb::StartTls, "454 4.7.0 TLS not available");
    let (out, tr) = run(FakeServer::tcp(r), &["--tls=encrypt"]);
    assert_fatal(&out, "STARTTLS rejected: 454 4.7.0 TLS not available");
    assert_plain_only(&tr, 0, &plain_starttls());
}

#[test]
fn encrypt_refused_under_a_quits_and_goes_on() {
    let r = Responder::new()
        .on(Verb::Ehlo, EHLO_TLS)
        .on(Verb::StartTls, "454 4.7.0 TLS not available");
    let (out, tr) = run(FakeServer::tcp(r), &["-A", "--tls", "-m", "2"]);
    let w = warning("STARTTLS rejected: 454 4.7.0 TLS not available");
    out.assert_status(0)
        .assert_stderr(&w.repeat(2))
        .assert_elapsed_below(QUICK);
    for i in 0..2 {
        assert_plain_only(&tr, i, &format!("{}QUIT\r\n", plain_starttls()));
    }
}

#[test]
fn encrypt_refused_with_421_under_a_closes_without_quit() {
    let r = Responder::new()
        .on(Verb::Ehlo, EHLO_TLS)
        .on(Verb::StartTls, "421 4.3.2 going away");
    let (out, tr) = run(FakeServer::tcp(r), &["-A", "--tls"]);
    out.assert_status(0)
        .assert_stderr(&warning("STARTTLS rejected: 421 4.3.2 going away"))
        .assert_elapsed_below(QUICK);
    assert_plain_only(&tr, 0, &plain_starttls());
}

#[test]
fn encrypt_does_not_check_the_certificate() {
    let pki = Pki::new();
    for leaf in [Leaf::SelfSigned, Leaf::Expired, Leaf::OtherName] {
        let r = tls_responder(&pki.server(leaf), EHLO_TLS, EHLO_PLAIN);
        let (out, tr) = run(FakeServer::tcp(r), &["--tls=encrypt"]);
        assert_clean(&out);
        assert_sent(&tr, 0, &plain_starttls(), &secure_session());
    }
}

/// Runs `--tls=verify --tls-ca=<the CA of pki>` and `args` against a
/// STARTTLS server offering `leaf`; `endpoint` maps the server to the
/// operand (None: its own `127.0.0.1:PORT`).
fn verify_run(
    leaf: Leaf,
    args: &[&str],
    endpoint: Option<&dyn Fn(&FakeServer) -> String>,
) -> (Outcome, Transcript) {
    let pki = Pki::new();
    let dir = TempDir::new("verify");
    let ca = format!("--tls-ca={}", ca_file(&pki, &dir));
    let tls = pki.server(leaf);
    let srv = FakeServer::tcp(tls_responder(&tls, EHLO_TLS, EHLO_PLAIN));
    let operand = endpoint.map_or_else(|| srv.endpoint(), |f| f(&srv));
    let out = client(&["--tls=verify", &ca]).args(args).arg(operand).run();
    (out, srv.finish())
}

#[test]
fn verify_good_ca_and_address_literal() {
    let (out, tr) = verify_run(Leaf::Good, &[], None);
    assert_clean(&out);
    assert_sent(&tr, 0, &plain_starttls(), &secure_session());
    // The address is what is verified; no SNI is sent for it.
    assert_eq!(tr.conn(0).tls.as_ref().and_then(|t| t.sni.clone()), None);
}

#[test]
fn verify_default_name_is_the_endpoint_host_sent_as_sni() {
    let localhost = |s: &FakeServer| format!("localhost:{}", port(s));
    let (out, tr) = verify_run(Leaf::Good, &["-4"], Some(&localhost));
    assert_clean(&out);
    assert_sent(&tr, 0, &plain_starttls(), &secure_session());
    let sni = tr.conn(0).tls.as_ref().and_then(|t| t.sni.clone());
    assert_eq!(sni.as_deref(), Some("localhost"));
}

#[test]
fn verify_unknown_ca_fails() {
    let (out, tr) = verify_run(Leaf::SelfSigned, &[], None);
    assert_fatal(
        &out,
        &handshake_failed("invalid peer certificate: UnknownIssuer"),
    );
    // Nothing after the handshake: no EHLO, no QUIT.
    assert!(tr.conn(0).tls.is_none());
    assert_wire("plaintext", &plain_starttls(), &tr.conn(0).raw);
    // The client's alert ends the handshake (unless its RST overtakes
    // the alert).
    assert!(
        matches!(tr.conn(0).end, End::Tls(_) | End::ClientReset),
        "{}",
        tr.render()
    );
}

#[test]
fn verify_wrong_name_fails() {
    let (out, _) = verify_run(Leaf::OtherName, &[], None);
    assert_fatal(
        &out,
        &handshake_failed(
            "invalid peer certificate: certificate not valid for name \
             \"127.0.0.1\"; certificate is only valid for DnsName(\"mx.\
             other.example\")",
        ),
    );
}

#[test]
fn verify_expired_fails() {
    let (out, _) = verify_run(Leaf::Expired, &[], None);
    out.assert_status(1).assert_elapsed_below(QUICK);
    // rustls names the times: the verification time varies.
    let text = out.stderr_text();
    let head = fatal(&handshake_failed(
        "invalid peer certificate: certificate expired: verification \
         time ",
    ));
    let tail = " (UNIX), but certificate is not valid after 978307200 (";
    assert!(
        text.starts_with(head.trim_end())
            && text.contains(tail)
            && text.ends_with(" seconds ago)\n")
            && text.lines().count() == 1,
        "{}",
        out.render()
    );
}

#[test]
fn verify_servername_overrides_the_checked_and_sent_name() {
    let name = format!("--tls-servername={OTHER_NAME}");
    let (out, tr) = verify_run(Leaf::OtherName, &[&name], None);
    assert_clean(&out);
    assert_sent(&tr, 0, &plain_starttls(), &secure_session());
    let sni = tr.conn(0).tls.as_ref().and_then(|t| t.sni.clone());
    assert_eq!(sni.as_deref(), Some(OTHER_NAME));
    // The good certificate does not name it.
    let (out, _) = verify_run(Leaf::Good, &[&name], None);
    assert_fatal(
        &out,
        &handshake_failed(
            "invalid peer certificate: certificate not valid for name \
             \"mx.other.example\"; certificate is only valid for \
             DnsName(\"localhost\") or IpAddress(127.0.0.1)",
        ),
    );
}

#[test]
fn verify_failure_under_a_drops_without_quit_and_goes_on() {
    let (out, tr) = verify_run(Leaf::SelfSigned, &["-A", "-m", "2"], None);
    let w =
        warning(&handshake_failed("invalid peer certificate: UnknownIssuer"));
    out.assert_status(0)
        .assert_stderr(&w.repeat(2))
        .assert_elapsed_below(QUICK);
    assert_eq!(tr.len(), 2, "{}", tr.render());
    for i in 0..2 {
        assert_plain_only(&tr, i, &plain_starttls());
    }
}

// ---------------------------------------------------------------------------
// SMTPS, injection, capabilities

#[test]
fn smtps_wrapper_handshakes_before_the_banner() {
    let pki = Pki::new();
    let r = Responder::new()
        .before_banner(vec![Step::StartTls(pki.server(Leaf::Good))]);
    let (out, tr) = run(FakeServer::tcp(r), &["--tls-wrapper"]);
    assert_clean(&out);
    // SMTPS alone greets with HELO, as without TLS.
    assert_sent(&tr, 0, "", &format!("{}{}QUIT\r\n", helo(), txn()));
    // With --tls=verify the certificate is checked as well.
    let dir = TempDir::new("smtps");
    let ca = format!("--tls-ca={}", ca_file(&pki, &dir));
    let r = Responder::new()
        .before_banner(vec![Step::StartTls(pki.server(Leaf::Good))]);
    let (out, tr) =
        run(FakeServer::tcp(r), &["--tls-wrapper", "--tls=verify", &ca]);
    assert_clean(&out);
    assert_sent(&tr, 0, "", &secure_session());
}

/// What a peer that answers the handshake with anything but TLS gets.
const NOT_TLS: &str = "the server did not answer with TLS (a plaintext port?)";

#[test]
fn smtps_wrapper_against_a_plaintext_server_fails() {
    let (out, _) = run(FakeServer::responder(), &["--tls-wrapper"]);
    assert_fatal(&out, &handshake_failed(NOT_TLS));
}

#[test]
fn injection_after_starttls_reply_drops_the_connection() {
    let inject = || {
        starttls_script(vec![
            Step::send(format!("{READY}\r\n250 injected")),
            Step::Stall,
        ])
    };
    let text = "plaintext data received after the reply to STARTTLS \
                (command injection?); connection dropped";
    let (out, tr) = run(inject(), &["--tls"]);
    assert_fatal(&out, text);
    // No ClientHello, no QUIT.
    assert_plain_only(&tr, 0, &plain_starttls());
    // Under -A: a warning, the connection dropped, the run goes on.
    let (out, tr) = run(inject(), &["-A", "--tls", "-m", "2"]);
    out.assert_status(0)
        .assert_stderr(&warning(text).repeat(2))
        .assert_elapsed_below(QUICK);
    for i in 0..2 {
        assert_plain_only(&tr, i, &plain_starttls());
    }
}

#[test]
fn capabilities_before_tls_do_not_count_after_it() {
    let pki = Pki::new();
    let before = "250-fake.example\r\n250-PIPELINING\r\n250 STARTTLS";
    let r = tls_responder(&pki.server(Leaf::Good), before, EHLO_PLAIN);
    let (out, tr) = run(FakeServer::tcp(r), &["--tls", "--pipelining"]);
    assert_clean(&out);
    assert_sent(&tr, 0, &plain_starttls(), &secure_session());
    // Lock-step inside TLS: MAIL alone in its record.
    let mail = format!("MAIL FROM:<{}>\r\n", foo());
    assert!(
        tr.conn(0).reads.iter().any(|r| r == mail.as_bytes()),
        "{}",
        tr.render()
    );
}

#[test]
fn pipelining_offered_only_after_tls_is_used_after_tls() {
    let pki = Pki::new();
    let after = "250-fake.example\r\n250 PIPELINING";
    let r = tls_responder(&pki.server(Leaf::Good), EHLO_TLS, after);
    let (out, tr) = run(FakeServer::tcp(r), &["--tls", "--pipelining"]);
    assert_clean(&out);
    assert_sent(&tr, 0, &plain_starttls(), &secure_session());
    let reads = &tr.conn(0).reads;
    // STARTTLS alone in its write; MAIL, RCPT and DATA together in TLS.
    assert!(
        reads.iter().any(|r| r == b"STARTTLS\r\n"),
        "{}",
        tr.render()
    );
    assert!(
        reads.iter().any(|r| r == envelope().as_bytes()),
        "no pipelined group\n{}",
        tr.render()
    );
}

#[test]
fn starttls_is_never_pipelined() {
    let pki = Pki::new();
    let before = "250-fake.example\r\n250-PIPELINING\r\n250 STARTTLS";
    let after = "250-fake.example\r\n250 PIPELINING";
    let r = tls_responder(&pki.server(Leaf::Good), before, after);
    let (out, tr) = run(FakeServer::tcp(r), &["--tls", "--pipelining"]);
    assert_clean(&out);
    let c = tr.conn(0);
    assert_eq!(
        c.reads[..2],
        [ehlo().into_bytes(), b"STARTTLS\r\n".to_vec()],
        "{}",
        tr.render()
    );
    assert_sent(&tr, 0, &plain_starttls(), &secure_session());
}

// ---------------------------------------------------------------------------
// Handshake and stream faults

#[test]
fn handshake_junk_instead_of_server_hello() {
    let srv = starttls_script(vec![
        Step::send(READY),
        Step::Read(5),
        Step::raw("HTTP/1.1 400 Bad Request\r\n\r\n"),
        Step::Stall,
    ]);
    let (out, tr) = run(srv, &["--tls"]);
    assert_fatal(&out, &handshake_failed(NOT_TLS));
    assert_eq!(tr.conn(0).end, End::ClientReset, "{}", tr.render());
}

#[test]
fn handshake_junk_under_a_is_a_warning() {
    let srv = starttls_script(vec![
        Step::send(READY),
        Step::Read(5),
        Step::raw("HTTP/1.1 400 Bad Request\r\n\r\n"),
        Step::Stall,
    ]);
    let (out, tr) = run(srv, &["-A", "--tls", "-m", "2"]);
    let w = warning(&handshake_failed(NOT_TLS));
    out.assert_status(0)
        .assert_stderr(&w.repeat(2))
        .assert_elapsed_below(QUICK);
    assert_eq!(tr.len(), 2);
}

#[test]
fn handshake_close_after_client_hello() {
    let srv =
        starttls_script(vec![Step::send(READY), Step::Read(5), Step::Close]);
    let (out, tr) = run(srv, &["--tls"]);
    assert_fatal(&out, "lost connection while performing TLS handshake");
    // What was read: the header of a handshake record.
    let c = tr.conn(0);
    let start = plain_starttls().len();
    assert_eq!(c.raw[start], 0x16, "{}", tr.render());
    assert_eq!(c.raw[start + 1], 0x03, "{}", tr.render());
    // A lost connection is fatal under -A too.
    let srv =
        starttls_script(vec![Step::send(READY), Step::Read(5), Step::Close]);
    let (out, _) = run(srv, &["-A", "--tls"]);
    assert_fatal(&out, "lost connection while performing TLS handshake");
}

#[test]
fn handshake_reset_after_client_hello() {
    let srv =
        starttls_script(vec![Step::send(READY), Step::Read(5), Step::Reset]);
    let (out, _) = run(srv, &["--tls"]);
    assert_fatal(&out, "lost connection while performing TLS handshake");
}

#[test]
fn handshake_stall_times_out() {
    let srv = starttls_script(vec![Step::send(READY), Step::Stall]);
    let (out, _) = run_t1(srv, &["--tls"]);
    assert_fatal_at_t(&out, "timeout while performing TLS handshake");
    // --timeout does the same, and -A does not soften a timeout.
    let srv = starttls_script(vec![Step::send(READY), Step::Stall]);
    let (out, _) = run(srv, &["--timeout=1", "-A", "--tls"]);
    assert_fatal_at_t(&out, "timeout while performing TLS handshake");
}

#[test]
fn smtps_stall_times_out() {
    let r = Responder::new().before_banner(vec![Step::Stall]);
    let (out, _) = run_t1(FakeServer::tcp(r), &["--tls-wrapper"]);
    assert_fatal_at_t(&out, "timeout while performing TLS handshake");
}

#[test]
fn timeout_inside_tls() {
    let pki = Pki::new();
    let r = good_tls(&pki).stall_at(Verb::Mail);
    let (out, tr) = run_t1(FakeServer::tcp(r), &["--tls"]);
    assert_fatal_at_t(&out, "timeout while sending sender");
    let mail = format!("{}MAIL FROM:<{}>\r\n", ehlo(), foo());
    assert_sent(&tr, 0, &plain_starttls(), &mail);
    // Half a reply, then nothing: the same.
    let r = good_tls(&pki)
        .on_steps(Verb::Rcpt, vec![Step::raw("250-part\r\n"), Step::Stall]);
    let (out, _) = run_t1(FakeServer::tcp(r), &["--tls"]);
    assert_fatal_at_t(&out, "timeout while sending recipient");
}

#[test]
fn lost_connection_inside_tls() {
    let pki = Pki::new();
    let r = good_tls(&pki).close_at(Verb::Data);
    let (out, _) = run(FakeServer::tcp(r), &["--tls"]);
    assert_fatal(&out, "lost connection while sending DATA command");
    let r = good_tls(&pki).reset_at(Verb::Rcpt);
    let (out, _) = run(FakeServer::tcp(r), &["--tls"]);
    assert_fatal(&out, "lost connection while sending recipient");
}

#[test]
fn reply_line_bound_holds_inside_tls() {
    let pki = Pki::new();
    // More than 1 MiB of excess on one line, in one go.
    let flood = format!("250 {}", "x".repeat(1_100_000));
    let r = good_tls(&pki)
        .on_steps(Verb::Mail, vec![Step::raw(flood.as_bytes()), Step::Stall]);
    let (out, _) = run(FakeServer::tcp(r), &["--tls"]);
    assert_fatal(&out, "reply line too long while sending sender");
    // The same in plaintext.
    let r = Responder::new()
        .on_steps(Verb::Mail, vec![Step::raw(flood.as_bytes()), Step::Stall]);
    let (out, _) = run(FakeServer::tcp(r), &[]);
    assert_fatal(&out, "reply line too long while sending sender");
    // A line of 15 KB is cut, not fatal.
    let long = format!("250 {}", "k".repeat(15_000));
    let r = good_tls(&pki).on(Verb::Mail, &long);
    let (out, _) = run(FakeServer::tcp(r), &["--tls"]);
    assert_clean(&out);
}

#[test]
fn reply_lines_bound_holds_inside_tls() {
    let pki = Pki::new();
    let lines = "250-x\r\n".repeat(1001);
    let r = good_tls(&pki)
        .on_steps(Verb::Rcpt, vec![Step::raw(lines.as_bytes()), Step::Stall]);
    let (out, _) = run(FakeServer::tcp(r), &["--tls"]);
    assert_fatal(&out, "reply too long while sending recipient");
}

#[test]
fn rejection_inside_tls_follows_a() {
    let pki = Pki::new();
    let r = good_tls(&pki).on(Verb::Rcpt, "550 5.1.1 no such user");
    let (out, _) = run(FakeServer::tcp(r.clone()), &["--tls"]);
    assert_fatal(&out, "recipient rejected: 550 5.1.1 no such user");
    let (out, tr) = run(FakeServer::tcp(r), &["--tls", "-A"]);
    out.assert_status(0)
        .assert_stderr(&warning("recipient rejected: 550 5.1.1 no such user"))
        .assert_elapsed_below(QUICK);
    let f = foo();
    let want = format!(
        "{}MAIL FROM:<{f}>\r\nRCPT TO:<{f}>\r\nRSET\r\nQUIT\r\n",
        ehlo()
    );
    assert_sent(&tr, 0, &plain_starttls(), &want);
}

// ---------------------------------------------------------------------------
// AUTH

/// AUTH LOGIN's dialogue on the server's side, ending in `last`.
fn login_steps(last: &str) -> Vec<Step> {
    vec![
        Step::send("334 VXNlcm5hbWU6"),
        Step::expect(""),
        Step::send("334 UGFzc3dvcmQ6"),
        Step::expect(""),
        Step::send(last),
    ]
}

/// A STARTTLS server that offers AUTH PLAIN LOGIN inside TLS and runs
/// `auth` for every AUTH.
fn auth_server(pki: &Pki, auth: Vec<Step>) -> FakeServer {
    let tls = pki.server(Leaf::Good);
    let r =
        tls_responder(&tls, EHLO_TLS, EHLO_AUTH).on_steps(Verb::Auth, auth);
    FakeServer::tcp(r)
}

/// Ours with `--tls --auth=MECH --auth-user=alice` and the password in
/// the environment.
fn auth_client(mech: &str, args: &[&str]) -> Cmd {
    client(&["--tls", &format!("--auth={mech}"), "--auth-user=alice"])
        .args(args)
        .env("SMTP_SOURCE_PASSWORD", PASSWORD)
}

/// The base64 text of `bytes`.
fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// AUTH PLAIN's initial response for `user` and `password`.
fn plain_blob(user: &str, password: &str) -> String {
    b64(format!("\0{user}\0{password}").as_bytes())
}

/// The argument of the line starting with `prefix` inside TLS on
/// connection `i`, base64-decoded.
fn decoded_after(tr: &Transcript, i: usize, prefix: &str) -> Vec<u8> {
    let lines = secure_lines(tr, i);
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?}\n{}", tr.render()));
    B64.decode(line)
        .unwrap_or_else(|e| panic!("not base64: {line:?}: {e}"))
}

#[test]
fn auth_plain_exact_wire() {
    let pki = Pki::new();
    let srv = auth_server(&pki, vec![Step::send(AUTH_OK)]);
    let (out, tr) = run_cmd(auth_client("PLAIN", &[]), srv);
    assert_clean(&out);
    let auth = format!("AUTH PLAIN {}\r\n", plain_blob("alice", PASSWORD));
    let want = format!("{}{auth}{}QUIT\r\n", ehlo(), txn());
    assert_sent(&tr, 0, &plain_starttls(), &want);
    assert_eq!(
        decoded_after(&tr, 0, "AUTH PLAIN "),
        format!("\0alice\0{PASSWORD}").as_bytes()
    );
    tr.assert_no_errors();
}

#[test]
fn auth_login_exact_wire() {
    let pki = Pki::new();
    let srv = auth_server(&pki, login_steps(AUTH_OK));
    let (out, tr) = run_cmd(auth_client("login", &[]), srv);
    assert_clean(&out);
    let want = format!(
        "{}AUTH LOGIN\r\n{}\r\n{}\r\n{}QUIT\r\n",
        ehlo(),
        b64(b"alice"),
        b64(PASSWORD.as_bytes()),
        txn()
    );
    assert_sent(&tr, 0, &plain_starttls(), &want);
    let lines = secure_lines(&tr, 0);
    let user = B64.decode(&lines[2]).expect("base64 user");
    let password = B64.decode(&lines[3]).expect("base64 password");
    assert_eq!(user, b"alice");
    assert_eq!(password, PASSWORD.as_bytes());
    tr.assert_no_errors();
}

#[test]
fn auth_535_is_fatal() {
    let pki = Pki::new();
    let srv = auth_server(&pki, vec![Step::send(AUTH_BAD)]);
    let (out, tr) = run_cmd(auth_client("PLAIN", &[]), srv);
    assert_fatal(&out, &format!("authentication failed: {AUTH_BAD}"));
    let auth = format!("AUTH PLAIN {}\r\n", plain_blob("alice", PASSWORD));
    assert_sent(&tr, 0, &plain_starttls(), &format!("{}{auth}", ehlo()));
    // LOGIN: the refusal after the password.
    let srv = auth_server(&pki, login_steps(AUTH_BAD));
    let (out, _) = run_cmd(auth_client("LOGIN", &[]), srv);
    assert_fatal(&out, &format!("authentication failed: {AUTH_BAD}"));
}

#[test]
fn auth_535_under_a_quits_and_goes_on() {
    let pki = Pki::new();
    let srv = auth_server(&pki, vec![Step::send(AUTH_BAD)]);
    let (out, tr) = run_cmd(auth_client("PLAIN", &["-A", "-m", "2"]), srv);
    let w = warning(&format!("authentication failed: {AUTH_BAD}"));
    out.assert_status(0)
        .assert_stderr(&w.repeat(2))
        .assert_elapsed_below(QUICK);
    let auth = format!("AUTH PLAIN {}\r\n", plain_blob("alice", PASSWORD));
    for i in 0..2 {
        let want = format!("{}{auth}QUIT\r\n", ehlo());
        assert_sent(&tr, i, &plain_starttls(), &want);
    }
}

#[test]
fn auth_file_users_take_turns_across_connections() {
    let pki = Pki::new();
    let dir = TempDir::new("authfile");
    let file = dir.path().join("users");
    std::fs::write(&file, "# users\nalice:one\n\nbob:two:three\n")
        .expect("write auth file");
    let srv = auth_server(&pki, vec![Step::send(AUTH_OK)]);
    let cmd = client(&[
        "--tls",
        "--auth=PLAIN",
        &format!("--auth-file={}", file.display()),
        "-s",
        "1",
        "-m",
        "3",
    ]);
    let (out, tr) = run_cmd(cmd, srv);
    assert_clean(&out);
    assert_eq!(tr.len(), 3, "{}", tr.render());
    let want: [&[u8]; 3] =
        [b"\0alice\0one", b"\0bob\0two:three", b"\0alice\0one"];
    for (i, w) in want.iter().enumerate() {
        assert_eq!(decoded_after(&tr, i, "AUTH PLAIN "), *w, "connection {i}");
    }
}

#[test]
fn auth_not_offered() {
    let pki = Pki::new();
    let tls = pki.server(Leaf::Good);
    let srv = || FakeServer::tcp(tls_responder(&tls, EHLO_TLS, EHLO_PLAIN));
    let text = "AUTH PLAIN not offered in reply to EHLO: 250 fake.example";
    let (out, tr) = run_cmd(auth_client("PLAIN", &[]), srv());
    assert_fatal(&out, text);
    assert_sent(&tr, 0, &plain_starttls(), &ehlo());
    let (out, tr) = run_cmd(auth_client("PLAIN", &["-A"]), srv());
    out.assert_status(0)
        .assert_stderr(&warning(text))
        .assert_elapsed_below(QUICK);
    assert_sent(&tr, 0, &plain_starttls(), &format!("{}QUIT\r\n", ehlo()));
}

#[test]
fn auth_never_goes_over_plaintext_unless_allowed() {
    // --tls=may and no STARTTLS offered: AUTH would go in clear.
    let r = Responder::new()
        .on(Verb::Ehlo, EHLO_AUTH)
        .on(Verb::Auth, AUTH_OK);
    let text = "AUTH refused: the connection is not encrypted \
                (--auth-plaintext allows it)";
    let cmd = auth_client("PLAIN", &["--tls=may"]);
    let (out, tr) = run_cmd(cmd, FakeServer::tcp(r.clone()));
    assert_fatal(&out, text);
    assert_plain_only(&tr, 0, &ehlo());
    let cmd = auth_client("PLAIN", &["--tls=may", "-A", "-m", "2"]);
    let (out, tr) = run_cmd(cmd, FakeServer::tcp(r.clone()));
    out.assert_status(0)
        .assert_stderr(&warning(text).repeat(2))
        .assert_elapsed_below(QUICK);
    for i in 0..2 {
        assert_plain_only(&tr, i, &format!("{}QUIT\r\n", ehlo()));
    }
    // Nowhere a credential.
    for c in &tr.conns {
        assert!(!contains(&c.raw, b"AUTH"), "{}", tr.render());
    }
    // STARTTLS refused at `may`: the same.
    let refused = r
        .on(
            Verb::Ehlo,
            "250-fake.example\r\n250-STARTTLS\r\n250 AUTH PLAIN",
        )
        .on(Verb::StartTls, "454 4.7.0 TLS not available");
    let cmd = auth_client("PLAIN", &["--tls=may"]);
    let (out, tr) = run_cmd(cmd, FakeServer::tcp(refused));
    assert_fatal(&out, text);
    assert_plain_only(&tr, 0, &plain_starttls());
}

#[test]
fn auth_plaintext_allows_auth_without_tls() {
    let r = Responder::new()
        .on(Verb::Ehlo, EHLO_AUTH)
        .on(Verb::Auth, AUTH_OK);
    let cmd =
        client(&["--auth=PLAIN", "--auth-user=alice", "--auth-plaintext"])
            .env("SMTP_SOURCE_PASSWORD", PASSWORD);
    let (out, tr) = run_cmd(cmd, FakeServer::tcp(r));
    assert_clean(&out);
    let auth = format!("AUTH PLAIN {}\r\n", plain_blob("alice", PASSWORD));
    assert_plain_only(&tr, 0, &format!("{}{auth}{}QUIT\r\n", ehlo(), txn()));
}

/// Every form of the password that must never be shown: itself, its
/// base64, and the PLAIN blob.
fn secret_forms() -> Vec<String> {
    vec![
        PASSWORD.to_string(),
        b64(PASSWORD.as_bytes()),
        plain_blob("alice", PASSWORD),
        // The blob without its padding, and the password's first part
        // alone.
        plain_blob("alice", PASSWORD)
            .trim_end_matches('=')
            .to_string(),
        "Tr0ub4dor".to_string(),
    ]
}

/// Runs `mech` against a server whose AUTH runs `auth`, with -v and a
/// JSON report on stdout and in a file; asserts no secret shows.
fn assert_redacted(mech: &str, auth: Vec<Step>, extra: &[&str]) -> Outcome {
    let pki = Pki::new();
    let dir = TempDir::new("redact");
    let report = dir.path().join("report.json");
    let srv = auth_server(&pki, auth);
    let args = [
        "-v",
        "--report=json",
        &format!("--report-file={}", report.display()),
    ];
    let (out, tr) = run_cmd(auth_client(mech, &args).args(extra), srv);
    let file = std::fs::read(&report).expect("report file");
    assert!(!file.is_empty(), "empty report file");
    for secret in secret_forms() {
        for (what, bytes) in [
            ("stdout", &out.stdout),
            ("stderr", &out.stderr),
            ("report file", &file),
        ] {
            assert!(
                !contains(bytes, secret.as_bytes()),
                "{secret:?} in {what}\n{}\nfile: {}",
                out.render(),
                escape(&file)
            );
        }
    }
    // The wire had it (inside TLS): the test looks for the right thing.
    let plain = plain_blob("alice", PASSWORD);
    let login = b64(PASSWORD.as_bytes());
    let secret = if mech == "PLAIN" { plain } else { login };
    assert!(contains(tr.conn(0).secure(), secret.as_bytes()));
    out
}

#[test]
fn auth_plain_secret_never_shown() {
    let out = assert_redacted("PLAIN", vec![Step::send(AUTH_OK)], &[]);
    out.assert_status(0);
    let shown = format!("{ARGV0}: AUTH PLAIN <hidden>\n");
    assert!(contains(&out.stderr, shown.as_bytes()), "{}", out.render());
    // Refused (under -A), the same.
    let out = assert_redacted("PLAIN", vec![Step::send(AUTH_BAD)], &["-A"]);
    out.assert_status(0);
}

#[test]
fn auth_login_secret_never_shown() {
    let out = assert_redacted("LOGIN", login_steps(AUTH_OK), &[]);
    out.assert_status(0);
    let shown = format!(
        "{ARGV0}: AUTH LOGIN\n{ARGV0}: <<< 334 VXNlcm5hbWU6\n\
         {ARGV0}: <hidden>\n{ARGV0}: <<< 334 UGFzc3dvcmQ6\n\
         {ARGV0}: <hidden>\n"
    );
    assert!(contains(&out.stderr, shown.as_bytes()), "{}", out.render());
    let out = assert_redacted("LOGIN", login_steps(AUTH_BAD), &["-A"]);
    out.assert_status(0);
}

// ---------------------------------------------------------------------------
// XCLIENT

const XCLIENT_OK: &str = "220 fake.example ESMTP";

/// A server that offers XCLIENT, answers it with `reply` and greets
/// again with plain capabilities.
fn xclient_server(reply: &str) -> FakeServer {
    FakeServer::tcp(
        Responder::new()
            .on_nth(Verb::Ehlo, 0, EHLO_XCLIENT)
            .on_nth(Verb::Ehlo, 1, EHLO_PLAIN)
            .on(Verb::Xclient, reply),
    )
}

#[test]
fn xclient_exact_wire_xtext_and_address_stepping() {
    let (out, tr) = run(
        xclient_server(XCLIENT_OK),
        &[
            "--xclient=NAME=mail.example,ADDR=10.0.0.0/31,HELO=a b+c=d",
            "-s",
            "1",
            "-m",
            "3",
        ],
    );
    assert_clean(&out);
    assert_eq!(tr.len(), 3, "{}", tr.render());
    for (i, addr) in ["10.0.0.0", "10.0.0.1", "10.0.0.0"].iter().enumerate() {
        let want = format!(
            "{e}XCLIENT NAME=mail.example ADDR={addr} HELO=a+20b+2Bc+3Dd\r\n\
             {e}{}QUIT\r\n",
            txn(),
            e = ehlo()
        );
        assert_plain_only(&tr, i, &want);
    }
    tr.assert_no_errors();
}

#[test]
fn xclient_ipv6_range_in_postfix_form() {
    let (out, tr) = run(
        xclient_server(XCLIENT_OK),
        &["--xclient=ADDR=2001:db8::/127", "-s", "1", "-m", "2"],
    );
    assert_clean(&out);
    for (i, addr) in ["IPV6:2001:db8::", "IPV6:2001:db8::1"].iter().enumerate()
    {
        let want = format!(
            "{e}XCLIENT ADDR={addr}\r\n{e}{}QUIT\r\n",
            txn(),
            e = ehlo()
        );
        assert_plain_only(&tr, i, &want);
    }
}

#[test]
fn xclient_not_offered() {
    let text = "XCLIENT not offered in reply to EHLO: 250 fake.example";
    let srv = || FakeServer::tcp(Responder::new().on(Verb::Ehlo, EHLO_PLAIN));
    let (out, tr) = run(srv(), &["--xclient=ADDR=192.0.2.1"]);
    assert_fatal(&out, text);
    assert_plain_only(&tr, 0, &ehlo());
    let (out, tr) = run(srv(), &["-A", "--xclient=ADDR=192.0.2.1"]);
    out.assert_status(0)
        .assert_stderr(&warning(text))
        .assert_elapsed_below(QUICK);
    assert_plain_only(&tr, 0, &format!("{}QUIT\r\n", ehlo()));
}

#[test]
fn xclient_refused() {
    let refusal = "550 5.7.0 Error: insufficient authorization";
    let text = format!("XCLIENT rejected: {refusal}");
    let (out, tr) =
        run(xclient_server(refusal), &["--xclient=ADDR=192.0.2.1"]);
    assert_fatal(&out, &text);
    let sent = format!("{}XCLIENT ADDR=192.0.2.1\r\n", ehlo());
    assert_plain_only(&tr, 0, &sent);
    let (out, tr) = run(
        xclient_server(refusal),
        &["-A", "-m", "2", "--xclient=ADDR=192.0.2.1"],
    );
    out.assert_status(0)
        .assert_stderr(&warning(&text).repeat(2))
        .assert_elapsed_below(QUICK);
    for i in 0..2 {
        assert_plain_only(&tr, i, &format!("{sent}QUIT\r\n"));
    }
}

#[test]
fn starttls_then_xclient_then_auth_in_order() {
    let pki = Pki::new();
    let r = Responder::new()
        .on_nth(Verb::Ehlo, 0, EHLO_TLS)
        .on_nth(
            Verb::Ehlo,
            1,
            "250-fake.example\r\n250-XCLIENT NAME ADDR\r\n250 AUTH PLAIN",
        )
        .on_nth(Verb::Ehlo, 2, EHLO_AUTH)
        .on_steps(Verb::StartTls, starttls_steps(&pki.server(Leaf::Good)))
        .on(Verb::Xclient, XCLIENT_OK)
        .on(Verb::Auth, AUTH_OK);
    let cmd = auth_client("PLAIN", &["--xclient=ADDR=192.0.2.7"]);
    let (out, tr) = run_cmd(cmd, FakeServer::tcp(r));
    assert_clean(&out);
    let want = format!(
        "{e}XCLIENT ADDR=192.0.2.7\r\n{e}AUTH PLAIN {}\r\n{}QUIT\r\n",
        plain_blob("alice", PASSWORD),
        txn(),
        e = ehlo()
    );
    assert_sent(&tr, 0, &plain_starttls(), &want);
}

// ---------------------------------------------------------------------------
// PROXY

/// The PROXY v2 signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A plain responder that first reads `header` steps (the PROXY
/// header).
fn proxy_server(header: Vec<Step>) -> FakeServer {
    FakeServer::tcp(Responder::new().before_banner(header))
}

/// The client's address on connection `i`, as the server saw it.
fn peer(tr: &Transcript, i: usize) -> SocketAddr {
    tr.conn(i).peer.expect("tcp peer")
}

/// What a plain HELO session sends after the header.
fn helo_session() -> String {
    format!("{}{}QUIT\r\n", helo(), txn())
}

/// A parsed PROXY v2 header: command/version, family/protocol, source,
/// destination; and its length.
fn parse_v2(raw: &[u8]) -> (u8, u8, SocketAddr, SocketAddr, usize) {
    assert_eq!(&raw[..12], V2_SIG, "signature: {}", escape(raw));
    let len = usize::from(u16::from_be_bytes([raw[14], raw[15]]));
    let body = &raw[16..16 + len];
    let (src, dst, ports) = match raw[13] {
        0x11 => {
            let ip = |b: &[u8]| IpAddr::from(<[u8; 4]>::try_from(b).unwrap());
            (ip(&body[..4]), ip(&body[4..8]), &body[8..12])
        }
        0x21 => {
            let ip = |b: &[u8]| IpAddr::from(<[u8; 16]>::try_from(b).unwrap());
            (ip(&body[..16]), ip(&body[16..32]), &body[32..36])
        }
        other => panic!("family/protocol {other:#x}"),
    };
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    (
        raw[12],
        raw[13],
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        16 + len,
    )
}

#[test]
fn proxy_v1_exact_bytes() {
    let srv = proxy_server(vec![Step::expect("PROXY ")]);
    let server_port = port(&srv);
    let (out, tr) = run(srv, &["--proxy=v1"]);
    assert_clean(&out);
    // Without --proxy-source: the socket's own address, the real peer.
    let p = peer(&tr, 0);
    let header = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {server_port}\r\n",
        p.port()
    );
    assert_plain_only(&tr, 0, &format!("{header}{}", helo_session()));
    tr.assert_no_errors();
}

#[test]
fn proxy_v1_source_steps_over_the_range() {
    let srv = proxy_server(vec![Step::expect("PROXY ")]);
    let server_port = port(&srv);
    let args = [
        "--proxy=v1",
        "--proxy-source=192.0.2.0/31",
        "-s",
        "1",
        "-m",
        "3",
    ];
    let (out, tr) = run(srv, &args);
    assert_clean(&out);
    assert_eq!(tr.len(), 3);
    for (i, src) in ["192.0.2.0", "192.0.2.1", "192.0.2.0"].iter().enumerate()
    {
        let header = format!(
            "PROXY TCP4 {src} 127.0.0.1 {} {server_port}\r\n",
            peer(&tr, i).port()
        );
        assert_plain_only(&tr, i, &format!("{header}{}", helo_session()));
    }
}

#[test]
fn proxy_v1_ipv6_source() {
    let srv = proxy_server(vec![Step::expect("PROXY ")]);
    let server_port = port(&srv);
    let (out, tr) = run(srv, &["--proxy=v1", "--proxy-source=2001:db8::5"]);
    assert_clean(&out);
    // The IPv4 peer is named in the source's family.
    let header = format!(
        "PROXY TCP6 2001:db8::5 ::ffff:127.0.0.1 {} {server_port}\r\n",
        peer(&tr, 0).port()
    );
    assert_plain_only(&tr, 0, &format!("{header}{}", helo_session()));
}

#[test]
fn proxy_v2_exact_bytes() {
    let srv = proxy_server(vec![Step::Read(28)]);
    let server_port = port(&srv);
    let (out, tr) = run(srv, &["--proxy=v2"]);
    assert_clean(&out);
    let raw = &tr.conn(0).raw;
    let (cmd, fam, src, dst, len) = parse_v2(raw);
    assert_eq!((cmd, fam, len), (0x21, 0x11, 28));
    assert_eq!(src, peer(&tr, 0));
    assert_eq!(dst, SocketAddr::from(([127, 0, 0, 1], server_port)));
    assert_wire("after the header", &helo_session(), &raw[len..]);
    tr.assert_no_errors();
}

#[test]
fn proxy_v2_source_steps_and_ipv6() {
    let srv = proxy_server(vec![Step::Read(28)]);
    let args = [
        "--proxy=v2",
        "--proxy-source=198.51.100.6/31",
        "-s",
        "1",
        "-m",
        "3",
    ];
    let (out, tr) = run(srv, &args);
    assert_clean(&out);
    for (i, src) in ["198.51.100.6", "198.51.100.7", "198.51.100.6"]
        .iter()
        .enumerate()
    {
        let (_, _, s, _, _) = parse_v2(&tr.conn(i).raw);
        let want = SocketAddr::new(src.parse().unwrap(), peer(&tr, i).port());
        assert_eq!(s, want, "connection {i}");
    }
    let srv = proxy_server(vec![Step::Read(52)]);
    let server_port = port(&srv);
    let (out, tr) = run(
        srv,
        &[
            "--proxy=v2",
            "--proxy-source=2001:db8::/127",
            "-s",
            "1",
            "-m",
            "2",
        ],
    );
    assert_clean(&out);
    for (i, src) in ["2001:db8::", "2001:db8::1"].iter().enumerate() {
        let raw = &tr.conn(i).raw;
        let (cmd, fam, s, d, len) = parse_v2(raw);
        assert_eq!((cmd, fam, len), (0x21, 0x21, 52));
        assert_eq!(
            s,
            SocketAddr::new(src.parse().unwrap(), peer(&tr, i).port())
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(d, SocketAddr::new(mapped, server_port));
        assert_wire("after the header", &helo_session(), &raw[len..]);
    }
}

#[test]
fn proxy_header_comes_before_the_tls_client_hello() {
    let pki = Pki::new();
    // v1, SMTPS: the header in plaintext, then the handshake.
    let tls = pki.server(Leaf::Good);
    let srv = proxy_server(vec![Step::expect("PROXY "), Step::StartTls(tls)]);
    let server_port = port(&srv);
    let (out, tr) = run(srv, &["--proxy=v1", "--tls-wrapper"]);
    assert_clean(&out);
    let header = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {server_port}\r\n",
        peer(&tr, 0).port()
    );
    assert_sent(&tr, 0, &header, &helo_session());
    // v2, SMTPS.
    let srv = proxy_server(vec![
        Step::Read(28),
        Step::StartTls(pki.server(Leaf::Good)),
    ]);
    let (out, tr) = run(srv, &["--proxy=v2", "--tls-wrapper"]);
    assert_clean(&out);
    let (_, _, s, _, len) = parse_v2(tr.conn(0).plain());
    assert_eq!((s, len), (peer(&tr, 0), 28));
    assert_eq!(tr.conn(0).plain().len(), 28);
    assert_wire("TLS part", &helo_session(), tr.conn(0).secure());
    // v1 with STARTTLS: the header, then EHLO and STARTTLS.
    let r = good_tls(&pki).before_banner(vec![Step::expect("PROXY ")]);
    let srv = FakeServer::tcp(r);
    let server_port = port(&srv);
    let (out, tr) =
        run(srv, &["--proxy=v1", "--proxy-source=192.0.2.9", "--tls"]);
    assert_clean(&out);
    let header = format!(
        "PROXY TCP4 192.0.2.9 127.0.0.1 {} {server_port}\r\n",
        peer(&tr, 0).port()
    );
    assert_sent(
        &tr,
        0,
        &format!("{header}{}", plain_starttls()),
        &secure_session(),
    );
}

// ---------------------------------------------------------------------------
// Composition with the other options

#[test]
fn reuse_over_tls_one_handshake_three_transactions() {
    let pki = Pki::new();
    let (out, tr) =
        run(FakeServer::tcp(good_tls(&pki)), &["--tls", "-d", "-m", "3"]);
    assert_clean(&out);
    assert_eq!(tr.len(), 1, "{}", tr.render());
    let want = format!("{}{}QUIT\r\n", ehlo(), txn().repeat(3));
    assert_sent(&tr, 0, &plain_starttls(), &want);
    assert_eq!(tr.conn(0).end, End::CloseNotify, "{}", tr.render());
}

#[test]
fn lmtp_over_starttls() {
    let pki = Pki::new();
    let r = Responder::new()
        .lmtp()
        .on_nth(Verb::Lhlo, 0, EHLO_TLS)
        .on_nth(Verb::Lhlo, 1, EHLO_PLAIN)
        .on_steps(Verb::StartTls, starttls_steps(&pki.server(Leaf::Good)));
    let (out, tr) = run(FakeServer::tcp(r), &["-L", "--tls", "-r", "2"]);
    assert_clean(&out);
    let f = foo();
    let want = format!(
        "{}MAIL FROM:<{f}>\r\nRCPT TO:<2{f}>\r\nRCPT TO:<{f}>\r\nDATA\r\n\
         {}.\r\nQUIT\r\n",
        lhlo(),
        content()
    );
    assert_sent(&tr, 0, &format!("{}STARTTLS\r\n", lhlo()), &want);
    // Not offered: the diagnostic names LHLO.
    let r = Responder::new().lmtp().on(Verb::Lhlo, EHLO_PLAIN);
    let (out, _) = run(FakeServer::tcp(r), &["-L", "--tls"]);
    assert_fatal(
        &out,
        "STARTTLS not offered in reply to LHLO: 250 fake.example",
    );
}

#[test]
fn unix_socket_with_starttls() {
    let pki = Pki::new();
    let (out, tr) = run(FakeServer::unix(good_tls(&pki)), &["--tls"]);
    assert_clean(&out);
    assert_sent(&tr, 0, &plain_starttls(), &secure_session());
    assert_eq!(tr.conn(0).tls.as_ref().and_then(|t| t.sni.clone()), None);
    // verify needs a name on a UNIX socket; with one, it is checked.
    let dir = TempDir::new("unix-verify");
    let ca = format!("--tls-ca={}", ca_file(&pki, &dir));
    let args = ["--tls=verify", &ca, "--tls-servername=localhost"];
    let (out, tr) = run(FakeServer::unix(good_tls(&pki)), &args);
    assert_clean(&out);
    let sni = tr.conn(0).tls.as_ref().and_then(|t| t.sni.clone());
    assert_eq!(sni.as_deref(), Some("localhost"));
}

#[test]
fn pipelining_reuse_over_tls() {
    let pki = Pki::new();
    let after = "250-fake.example\r\n250 PIPELINING";
    let r = tls_responder(&pki.server(Leaf::Good), EHLO_TLS, after);
    let args = ["--tls", "--pipelining", "-d", "-m", "2"];
    let (out, tr) = run(FakeServer::tcp(r), &args);
    assert_clean(&out);
    let want = format!("{}{}QUIT\r\n", ehlo(), txn().repeat(2));
    assert_sent(&tr, 0, &plain_starttls(), &want);
    // The first message's dot and the next group in one TLS write.
    let joined = format!(".\r\n{}", envelope());
    assert!(
        tr.conn(0)
            .reads
            .iter()
            .any(|r| r.ends_with(joined.as_bytes())),
        "{}",
        tr.render()
    );
}

#[test]
fn chunking_over_tls() {
    let pki = Pki::new();
    let after = "250-fake.example\r\n250 CHUNKING";
    let r = tls_responder(&pki.server(Leaf::Good), EHLO_TLS, after);
    let (out, tr) = run(FakeServer::tcp(r), &["--tls", "--chunking"]);
    assert_clean(&out);
    assert_eq!(tr.conn(0).data.len(), 1, "{}", tr.render());
    let chunk = &tr.conn(0).data[0];
    let body = content();
    assert_wire("BDAT chunk", &body, chunk);
    let f = foo();
    let want = format!(
        "{}MAIL FROM:<{f}>\r\nRCPT TO:<{f}>\r\nBDAT {} LAST\r\n{body}\
         QUIT\r\n",
        ehlo(),
        chunk.len()
    );
    assert_sent(&tr, 0, &plain_starttls(), &want);
}

#[test]
fn rate_with_tls() {
    let pki = Pki::new();
    let srv = FakeServer::tcp(good_tls(&pki));
    let (out, tr) = run(srv, &["--tls", "--rate=20", "-s", "2", "-m", "4"]);
    assert_clean(&out);
    // Four starts 50 ms apart: at least 150 ms.
    assert!(
        out.elapsed >= Duration::from_millis(150),
        "{}",
        out.render()
    );
    assert_eq!(tr.len(), 4, "{}", tr.render());
    for i in 0..4 {
        assert_sent(&tr, i, &plain_starttls(), &secure_session());
    }
}

#[test]
fn duration_with_tls() {
    let pki = Pki::new();
    let srv = FakeServer::tcp(good_tls(&pki));
    let args = [
        "--tls",
        "--duration=1",
        "--rate=10",
        "-s",
        "2",
        "--report=json",
    ];
    let (out, tr) = run(srv, &args);
    out.assert_status(0).assert_stderr("");
    assert!(
        out.elapsed >= Duration::from_millis(900),
        "{}",
        out.render()
    );
    assert!(out.elapsed < QUICK, "{}", out.render());
    let n = tr.len();
    assert!((5..=12).contains(&n), "{n} connections\n{}", tr.render());
    for i in 0..n {
        assert_sent(&tr, i, &plain_starttls(), &secure_session());
    }
    let report = out.stdout_text();
    let counts =
        format!("\"tls\":{{\"handshakes\":{n},\"full\":{n},\"resumed\":0,");
    assert!(report.contains(&counts), "{report}");
}

#[test]
fn report_counts_full_and_resumed_handshakes() {
    let pki = Pki::new();
    let srv = FakeServer::tcp(good_tls(&pki));
    let args = [
        "--tls",
        "--tls-resume",
        "-s",
        "1",
        "-m",
        "3",
        "--report=json",
    ];
    let (out, tr) = run(srv, &args);
    out.assert_status(0).assert_stderr("");
    let report = out.stdout_text();
    assert!(
        report.contains("\"tls\":{\"handshakes\":3,\"full\":1,\"resumed\":2,"),
        "{report}"
    );
    let resumed: Vec<bool> = tr
        .conns
        .iter()
        .map(|c| c.tls.as_ref().is_some_and(|t| t.resumed))
        .collect();
    assert_eq!(resumed, [false, true, true], "{}", tr.render());
    // Without --tls-resume every handshake is full.
    let srv = FakeServer::tcp(good_tls(&pki));
    let (out, tr) =
        run(srv, &["--tls", "-s", "1", "-m", "3", "--report=json"]);
    out.assert_status(0).assert_stderr("");
    assert!(
        out.stdout_text()
            .contains("\"tls\":{\"handshakes\":3,\"full\":3,\"resumed\":0,"),
        "{}",
        out.render()
    );
    assert!(tr
        .conns
        .iter()
        .all(|c| c.tls.as_ref().is_some_and(|t| !t.resumed)));
}

#[test]
fn report_text_names_the_handshakes() {
    let pki = Pki::new();
    let srv = FakeServer::tcp(good_tls(&pki));
    let args = ["--tls", "--tls-resume", "-s", "1", "-m", "2", "--report"];
    let (out, _) = run(srv, &args);
    out.assert_status(0).assert_stderr("");
    let text = out.stdout_text();
    assert!(
        text.lines().any(|l| l.starts_with("tls:")
            && l.contains("2 handshakes (1 full, 1 resumed)")),
        "{text}"
    );
}

/// The report's `"errors":{...}` object.
fn errors_json(out: &Outcome) -> String {
    let text = out.stdout_text();
    let start = text
        .find("\"errors\":{")
        .unwrap_or_else(|| panic!("{text}"));
    let end = start + text[start..].find('}').expect("end of errors");
    text[start..=end].to_string()
}

#[test]
fn report_error_classes_tls_and_auth_under_a() {
    let pki = Pki::new();
    // TLS: not offered, and a failed handshake.
    let r = Responder::new().on(Verb::Ehlo, EHLO_PLAIN);
    let (out, _) = run(
        FakeServer::tcp(r),
        &["-A", "--tls", "-m", "2", "--report=json"],
    );
    out.assert_status(0);
    assert_eq!(
        errors_json(&out),
        "\"errors\":{\"refused\":0,\"reset\":0,\"timeout\":0,\
         \"lost_connection\":0,\"tls\":2,\"auth\":0,\"unreachable\":0,\"smtputf8\":0}"
    );
    assert!(
        out.stdout_text().contains(
            "\"messages\":{\"attempted\":2,\"accepted\":0,\"rejected\":0,\
             \"failed\":2,\"unknown\":0}"
        ),
        "{}",
        out.render()
    );
    let dir = TempDir::new("classes");
    let ca = format!("--tls-ca={}", ca_file(&pki, &dir));
    let r = tls_responder(&pki.server(Leaf::SelfSigned), EHLO_TLS, EHLO_PLAIN);
    let args = ["-A", "--tls=verify", &ca, "-m", "3", "--report=json"];
    let (out, _) = run(FakeServer::tcp(r), &args);
    out.assert_status(0);
    assert!(
        errors_json(&out).contains("\"tls\":3,\"auth\":0,"),
        "{}",
        out.render()
    );
    // AUTH refused.
    let srv = auth_server(&pki, vec![Step::send(AUTH_BAD)]);
    let cmd = auth_client("PLAIN", &["-A", "-m", "2", "--report=json"]);
    let (out, _) = run_cmd(cmd, srv);
    out.assert_status(0);
    assert_eq!(
        errors_json(&out),
        "\"errors\":{\"refused\":0,\"reset\":0,\"timeout\":0,\
         \"lost_connection\":0,\"tls\":0,\"auth\":2,\"unreachable\":0,\"smtputf8\":0}"
    );
}

#[test]
fn report_counts_fatal_refusals_too() {
    let r = Responder::new()
        .on(Verb::Ehlo, EHLO_TLS)
        .on(Verb::StartTls, "454 4.7.0 TLS not available");
    let (out, _) = run(FakeServer::tcp(r), &["--tls", "--report=json"]);
    out.assert_status(1);
    assert!(
        errors_json(&out).contains("\"tls\":1,\"auth\":0,"),
        "{}",
        out.render()
    );
    let pki = Pki::new();
    let srv = auth_server(&pki, vec![Step::send(AUTH_BAD)]);
    let (out, _) = run_cmd(auth_client("PLAIN", &["--report=json"]), srv);
    out.assert_status(1);
    assert!(
        errors_json(&out).contains("\"tls\":0,\"auth\":1,"),
        "{}",
        out.render()
    );
}

// ---------------------------------------------------------------------------
// Usage and configuration errors (nothing is connected to)

/// Runs `args` with an operand nobody listens on: the error must come
/// before any connect.
fn config_error(args: &[&str], text: &str) {
    let out = client(args)
        .arg("127.0.0.1:9")
        .env_remove("SMTP_SOURCE_PASSWORD")
        .run();
    assert_fatal(&out, text);
}

#[test]
fn usage_tls_options_need_tls() {
    config_error(
        &["--tls-ca=/nonexistent"],
        "--tls-ca needs --tls or --tls-wrapper",
    );
    config_error(
        &["--tls-servername=x"],
        "--tls-servername needs --tls or --tls-wrapper",
    );
    config_error(
        &["--tls-resume"],
        "--tls-resume needs --tls or --tls-wrapper",
    );
}

#[test]
fn usage_tls_ca_only_with_verify() {
    config_error(
        &["--tls", "--tls-ca=/nonexistent"],
        "--tls-ca is used only with --tls=verify (the level is encrypt)",
    );
    config_error(
        &["--tls=may", "--tls-ca=/nonexistent"],
        "--tls-ca is used only with --tls=verify (the level is may)",
    );
    config_error(
        &["--tls-wrapper", "--tls-ca=/nonexistent"],
        "--tls-ca is used only with --tls=verify (the level is encrypt)",
    );
}

#[test]
fn usage_bad_tls_level() {
    config_error(&["--tls=foo"], "bad --tls value: foo");
}

#[test]
fn usage_auth_without_tls() {
    config_error(
        &["--auth=PLAIN", "--auth-user=alice"],
        "--auth would send a password in plaintext: give --tls or \
         --tls-wrapper (or --auth-plaintext to allow it)",
    );
}

#[test]
fn usage_auth_user_without_password() {
    config_error(
        &["--tls", "--auth=PLAIN", "--auth-user=alice"],
        "--auth-user needs the password in SMTP_SOURCE_PASSWORD",
    );
    config_error(&["--auth-user=alice"], "--auth-user needs --auth");
    config_error(&["--tls", "--auth=CRAM-MD5"], "bad --auth value: CRAM-MD5");
}

#[test]
fn usage_bad_xclient() {
    config_error(
        &["--xclient=FOO=1"],
        "bad --xclient value: FOO=1 (unknown attribute 'FOO')",
    );
    config_error(
        &["--xclient=NAME"],
        "bad --xclient value: NAME ('NAME' is not ATTR=VALUE)",
    );
}

#[test]
fn usage_proxy_source_needs_proxy() {
    config_error(
        &["--proxy-source=192.0.2.0/24"],
        "--proxy-source needs --proxy",
    );
    config_error(&["--proxy=v3"], "bad --proxy value: v3");
}

#[test]
fn usage_o_cannot_starttls() {
    let text = "-o sends no EHLO: it cannot be combined with --tls \
                (without --tls-wrapper), --auth or --xclient";
    config_error(&["-o", "--tls"], text);
    config_error(&["-o", "--xclient=ADDR=192.0.2.1"], text);
}

// ---------------------------------------------------------------------------
// Against the project's sink (examples/sink.rs)

/// The sink next to our binary (`cargo nextest run --all-targets` and
/// `cargo build --all-targets` build it), or None.
fn sink_path() -> Option<PathBuf> {
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_smtp-source"));
    let beside = ours.parent().map(|d| d.join("examples/sink"));
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/debug/examples/sink");
    beside.into_iter().chain([fallback]).find(|p| p.is_file())
}

/// A running sink; killed (by its own handle) if still running on drop.
pub(crate) struct Sink {
    child: Child,
    /// Its stdout, as it comes.
    chunks: mpsc::Receiver<Vec<u8>>,
    out: Vec<u8>,
    /// `127.0.0.1:PORT` or `unix:PATH`.
    pub(crate) endpoint: String,
}

impl Sink {
    /// Starts the sink with `args` (and bounds on its life); None, with
    /// a SKIP message naming `test`, when it was not built.
    pub(crate) fn start(test: &str, args: &[&str]) -> Option<Sink> {
        Self::start_for(test, args, 10)
    }

    /// `start`, for a sink that lives `seconds`.
    pub(crate) fn start_for(
        test: &str,
        args: &[&str],
        seconds: u64,
    ) -> Option<Sink> {
        let Some(path) = sink_path() else {
            skip(
                test,
                "target/debug/examples/sink not built (cargo build \
                 --all-targets)",
            );
            return None;
        };
        let mut child = Command::new(path)
            .args(args)
            .args(["--seconds", &seconds.to_string(), "--timeout", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the sink");
        let mut pipe = child.stdout.take().expect("sink stdout");
        let (tx, chunks) = mpsc::channel();
        spawn("sink-stdout", move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut sink = Sink {
            child,
            chunks,
            out: Vec::new(),
            endpoint: String::new(),
        };
        let until = Instant::now() + Duration::from_secs(5);
        while !sink.out.contains(&b'\n') {
            let left = until.saturating_duration_since(Instant::now());
            match sink.chunks.recv_timeout(left) {
                Ok(c) => sink.out.extend(c),
                Err(_) => {
                    panic!("the sink did not start: {}", escape(&sink.out))
                }
            }
        }
        let text = String::from_utf8_lossy(&sink.out).into_owned();
        let first = text.lines().next().unwrap_or("");
        sink.endpoint = first
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("sink said {first:?}"))
            .to_string();
        Some(sink)
    }

    /// Waits (bounded) for the sink to exit after its message count,
    /// and returns what it printed.
    pub(crate) fn finish(mut self) -> String {
        let until = Instant::now() + Duration::from_secs(12);
        loop {
            match self.chunks.recv_timeout(Duration::from_millis(50)) {
                Ok(c) => self.out.extend(c),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(
                        Instant::now() < until,
                        "the sink did not finish: {}",
                        escape(&self.out)
                    );
                }
            }
        }
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The sink's summary must have these lines.
fn assert_summary(summary: &str, lines: &[&str]) {
    for want in lines {
        assert!(
            summary.lines().any(|l| l == *want),
            "no line {want:?} in the sink's summary:\n{summary}"
        );
    }
}

/// The summary line starting with `prefix` must contain `part`.
fn assert_summary_has(summary: &str, prefix: &str, part: &str) {
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with(prefix) && l.contains(part)),
        "no {prefix}... line with {part:?} in:\n{summary}"
    );
}

/// Runs ours against the sink with `args`; it must succeed silently.
fn run_sink(sink: &Sink, args: &[&str]) {
    let out = client(args)
        .env("SMTP_SOURCE_PASSWORD", PASSWORD)
        .arg(&sink.endpoint)
        .run();
    assert_clean(&out);
}

#[test]
fn sink_starttls_verify_with_its_ca() {
    let dir = TempDir::new("sink-ca");
    let ca = dir.path().join("ca.pem").to_string_lossy().into_owned();
    let args = ["--tls", "--require-tls", "--ca-out", &ca, "--messages", "2"];
    let Some(sink) = Sink::start("sink_starttls_verify_with_its_ca", &args)
    else {
        return;
    };
    let ca_arg = format!("--tls-ca={ca}");
    run_sink(&sink, &["--tls=verify", &ca_arg, "-s", "1", "-m", "2"]);
    let summary = sink.finish();
    assert_summary_has(
        &summary,
        "sink received: ",
        "connections=2 messages=2",
    );
    assert_summary_has(
        &summary,
        "tls: ",
        "tls: 2 handshakes (0 resumed, 0 failed)",
    );
}

#[test]
fn sink_tls_resume() {
    let args = ["--tls", "--messages", "3"];
    let Some(sink) = Sink::start("sink_tls_resume", &args) else {
        return;
    };
    run_sink(&sink, &["--tls", "--tls-resume", "-s", "1", "-m", "3"]);
    let summary = sink.finish();
    assert_summary_has(
        &summary,
        "tls: ",
        "tls: 3 handshakes (2 resumed, 0 failed)",
    );
}

#[test]
fn sink_smtps() {
    let dir = TempDir::new("sink-smtps");
    let ca = dir.path().join("ca.pem").to_string_lossy().into_owned();
    let args = ["--tls-wrapper", "--ca-out", &ca, "--messages", "2"];
    let Some(sink) = Sink::start("sink_smtps", &args) else {
        return;
    };
    let ca_arg = format!("--tls-ca={ca}");
    run_sink(
        &sink,
        &["--tls-wrapper", "--tls=verify", &ca_arg, "-d", "-m", "2"],
    );
    let summary = sink.finish();
    assert_summary_has(
        &summary,
        "sink received: ",
        "connections=1 messages=2",
    );
    assert_summary_has(
        &summary,
        "tls: ",
        "tls: 1 handshakes (0 resumed, 0 failed)",
    );
}

#[test]
fn sink_auth_plain_and_login() {
    let user = format!("alice:{PASSWORD}");
    let args = [
        "--tls",
        "--auth",
        &user,
        "--require-auth",
        "--messages",
        "2",
    ];
    let Some(sink) = Sink::start("sink_auth_plain_and_login", &args) else {
        return;
    };
    // A wrong password first (the sink ends after its two messages):
    // its 535.
    let out = client(&["--tls", "--auth=PLAIN", "--auth-user=alice"])
        .env("SMTP_SOURCE_PASSWORD", "wrong")
        .arg(&sink.endpoint)
        .run();
    assert_fatal(
        &out,
        "authentication failed: 535 5.7.8 Error: authentication failed",
    );
    run_sink(&sink, &["--tls", "--auth=PLAIN", "--auth-user=alice"]);
    run_sink(&sink, &["--tls", "--auth=LOGIN", "--auth-user=alice"]);
    let summary = sink.finish();
    assert_summary(&summary, &["auth: 2 ok, 1 failed; users alice=2"]);
}

#[test]
fn sink_auth_file_users_in_turn() {
    let dir = TempDir::new("sink-auth");
    let file = dir.path().join("users");
    std::fs::write(&file, "alice:one\nbob:two:three\n").expect("users");
    let file = file.to_string_lossy().into_owned();
    let args = [
        "--tls",
        "--auth-file",
        &file,
        "--require-auth",
        "--messages",
        "3",
    ];
    let Some(sink) = Sink::start("sink_auth_file_users_in_turn", &args) else {
        return;
    };
    let file_arg = format!("--auth-file={file}");
    run_sink(
        &sink,
        &["--tls", "--auth=LOGIN", &file_arg, "-s", "1", "-m", "3"],
    );
    let summary = sink.finish();
    assert_summary(&summary, &["auth: 3 ok, 0 failed; users alice=2,bob=1"]);
}

#[test]
fn sink_xclient_steps_addresses() {
    let args = ["--xclient", "--messages", "3"];
    let Some(sink) = Sink::start("sink_xclient_steps_addresses", &args) else {
        return;
    };
    run_sink(
        &sink,
        &[
            "--xclient=NAME=a.example,ADDR=10.0.0.0/31",
            "-s",
            "1",
            "-m",
            "3",
        ],
    );
    let summary = sink.finish();
    assert_summary(
        &summary,
        &["xclient: 3 commands (0 rejected), 2 distinct ADDR; ADDR \
           10.0.0.0=2,10.0.0.1=1"],
    );
}

#[test]
fn sink_proxy_v1_and_v2() {
    let args = ["--proxy", "--messages", "4"];
    let Some(sink) = Sink::start("sink_proxy_v1_and_v2", &args) else {
        return;
    };
    run_sink(
        &sink,
        &["--proxy=v1", "--proxy-source=192.0.2.0/31", "-m", "2"],
    );
    run_sink(
        &sink,
        &["--proxy=v2", "--proxy-source=2001:db8::7", "-m", "2"],
    );
    let summary = sink.finish();
    assert_summary(
        &summary,
        &["proxy: 4 headers (v1=2, v2=2), 3 distinct sources, 0 bad; \
           sources 192.0.2.0=1,192.0.2.1=1,2001:db8::7=2"],
    );
}

/// --peers counts connections by client address and notes when each
/// first came (Unix seconds with milliseconds, within this test's span).
#[test]
fn sink_peers_by_address() {
    let args = ["--peers", "--messages", "3"];
    let Some(sink) = Sink::start("sink_peers_by_address", &args) else {
        return;
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    let before = now();
    run_sink(&sink, &["--bind=127.0.0.2,127.0.0.3", "-m", "3"]);
    let after = now();
    let summary = sink.finish();
    let line = summary
        .lines()
        .find(|l| l.starts_with("peers: "))
        .unwrap_or_else(|| panic!("no peers: line in:\n{summary}"));
    let (head, first) = line.split_once("; first ").unwrap();
    assert_eq!(
        head,
        "peers: 2 distinct; connections 127.0.0.2=2,127.0.0.3=1"
    );
    let times: Vec<(&str, u128)> = first
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let (s, ms) = v.split_once('.').unwrap();
            assert_eq!(ms.len(), 3, "{line}");
            (
                k,
                s.parse::<u128>().unwrap() * 1000
                    + ms.parse::<u128>().unwrap(),
            )
        })
        .collect();
    assert_eq!(times.len(), 2, "{line}");
    for (addr, ms) in times {
        assert!(addr == "127.0.0.2" || addr == "127.0.0.3", "{line}");
        assert!((before..=after).contains(&ms), "{before}..{after}: {line}");
    }
}

#[test]
fn sink_proxy_before_smtps() {
    let args = ["--proxy", "--tls-wrapper", "--messages", "2"];
    let Some(sink) = Sink::start("sink_proxy_before_smtps", &args) else {
        return;
    };
    run_sink(&sink, &["--proxy=v2", "--tls-wrapper", "-m", "1"]);
    run_sink(&sink, &["--proxy=v1", "--tls-wrapper", "-m", "1"]);
    let summary = sink.finish();
    assert_summary_has(&summary, "proxy: ", "proxy: 2 headers (v1=1, v2=1)");
    assert_summary_has(&summary, "tls: ", "tls: 2 handshakes");
}

#[test]
fn sink_lmtp_unix_starttls() {
    let dir = TempDir::new("sink-lmtp");
    let sock = format!("unix:{}", dir.path().join("s.sock").display());
    let args = ["--lmtp", "--tls", "--listen", &sock, "--messages", "2"];
    let Some(sink) = Sink::start("sink_lmtp_unix_starttls", &args) else {
        return;
    };
    assert_eq!(sink.endpoint, sock);
    run_sink(&sink, &["-L", "--tls", "-r", "2", "-m", "2"]);
    let summary = sink.finish();
    assert_summary_has(&summary, "sink received: ", "messages=2 recipients=4");
    assert_summary_has(&summary, "tls: ", "tls: 2 handshakes");
}

#[test]
fn sink_everything_at_once() {
    let dir = TempDir::new("sink-all");
    let ca = dir.path().join("ca.pem").to_string_lossy().into_owned();
    let user = format!("alice:{PASSWORD}");
    let args = [
        "--tls",
        "--require-tls",
        "--ca-out",
        &ca,
        "--auth",
        &user,
        "--require-auth",
        "--xclient",
        "--proxy",
        "--messages",
        "3",
    ];
    let Some(sink) = Sink::start("sink_everything_at_once", &args) else {
        return;
    };
    let ca_arg = format!("--tls-ca={ca}");
    run_sink(
        &sink,
        &[
            "--tls=verify",
            &ca_arg,
            "--tls-resume",
            "--auth=PLAIN",
            "--auth-user=alice",
            "--xclient=ADDR=10.0.0.0/31",
            "--proxy=v2",
            "--proxy-source=192.0.2.0/31",
            "--pipelining",
            "-s",
            "1",
            "-m",
            "3",
        ],
    );
    let summary = sink.finish();
    assert_summary_has(
        &summary,
        "sink received: ",
        "connections=3 messages=3",
    );
    assert_summary_has(
        &summary,
        "tls: ",
        "tls: 3 handshakes (2 resumed, 0 failed)",
    );
    assert_summary(
        &summary,
        &[
            "auth: 3 ok, 0 failed; users alice=3",
            "xclient: 3 commands (0 rejected), 2 distinct ADDR; ADDR \
             10.0.0.0=2,10.0.0.1=1",
            "proxy: 3 headers (v1=0, v2=3), 2 distinct sources, 0 bad; \
             sources 192.0.2.0=2,192.0.2.1=1",
        ],
    );
}

// ---------------------------------------------------------------------------
// More: client certificates, -v, write deadlines, CA files

#[test]
fn client_certificate_is_presented() {
    let pki = Pki::new();
    let dir = TempDir::new("client-cert");
    let (cert, key) = pki.write_client_identity(dir.path());
    let tls = pki.server_requiring_client_cert(Leaf::Good);
    let r = tls_responder(&tls, EHLO_TLS, EHLO_PLAIN);
    let cert = format!("--tls-cert={}", cert.display());
    let key = format!("--tls-key={}", key.display());
    let (out, tr) = run(FakeServer::tcp(r), &["--tls", &cert, &key]);
    assert_clean(&out);
    assert_sent(&tr, 0, &plain_starttls(), &secure_session());
    let info = tr.conn(0).tls.clone().expect("handshake");
    assert!(info.client_cert, "{}", tr.render());
    // Without one the server ends the session: a fatal error.
    let r = tls_responder(&tls, EHLO_TLS, EHLO_PLAIN);
    let (out, tr) = run(FakeServer::tcp(r), &["--tls"]);
    out.assert_status(1).assert_elapsed_below(QUICK);
    assert!(tr.conn(0).tls.is_none(), "{}", tr.render());
}

#[test]
fn verbose_transcript_over_starttls() {
    let pki = Pki::new();
    let dir = TempDir::new("verbose");
    let ca = format!("--tls-ca={}", ca_file(&pki, &dir));
    let args = [
        "-v",
        "--tls=verify",
        &ca,
        "--tls-resume",
        "-s",
        "1",
        "-m",
        "2",
    ];
    let (out, _) = run(FakeServer::tcp(good_tls(&pki)), &args);
    out.assert_status(0).assert_stdout(b"");
    let f = foo();
    let session = |kind: &str| {
        format!(
            "<<< 220 fake.example ESMTP fake\nEHLO {HOST}\n\
             <<< 250-fake.example\n<<< 250 STARTTLS\nSTARTTLS\n\
             <<< 220 2.0.0 Ready to start TLS\n\
             Verified TLS connection established: TLSv1.3 with cipher \
             TLS13_AES_256_GCM_SHA384 ({kind})\nEHLO {HOST}\n\
             <<< 250-fake.example\n<<< 250 8BITMIME\nMAIL FROM:<{f}>\n\
             <<< 250 2.1.0 Ok\nRCPT TO:<{f}>\n<<< 250 2.1.5 Ok\nDATA\n\
             <<< 354 End data with <CR><LF>.<CR><LF>\n.\n\
             <<< 250 2.0.0 Ok: queued\nQUIT\n<<< 221 2.0.0 Bye\n"
        )
    };
    let text = format!("{}{}", session("full handshake"), session("resumed"));
    let want: String =
        text.lines().map(|l| format!("{ARGV0}: {l}\n")).collect();
    out.assert_stderr(&want);
}

#[test]
fn verbose_shows_the_proxy_header() {
    let srv = proxy_server(vec![Step::expect("PROXY ")]);
    let server_port = port(&srv);
    let args = ["-v", "--proxy=v1", "--proxy-source=192.0.2.1"];
    let (out, tr) = run(srv, &args);
    out.assert_status(0);
    let line = format!(
        "{ARGV0}: PROXY TCP4 192.0.2.1 127.0.0.1 {} {server_port}\n",
        peer(&tr, 0).port()
    );
    assert!(out.stderr_text().starts_with(&line), "{}", out.render());
    let srv = proxy_server(vec![Step::Read(28)]);
    let server_port = port(&srv);
    let args = ["-v", "--proxy=v2", "--proxy-source=192.0.2.1"];
    let (out, tr) = run(srv, &args);
    out.assert_status(0);
    let line = format!(
        "{ARGV0}: PROXY v2 192.0.2.1:{} -> 127.0.0.1:{server_port}\n",
        peer(&tr, 0).port()
    );
    assert!(out.stderr_text().starts_with(&line), "{}", out.render());
}

#[test]
fn write_timeout_inside_tls() {
    let pki = Pki::new();
    let r = good_tls(&pki).on_steps(
        Verb::Data,
        vec![Step::send("354 go ahead"), Step::StopReading],
    );
    let (out, tr) = run_t1(FakeServer::tcp(r), &["--tls", "-l", "20000000"]);
    assert_fatal_at_t(&out, "timeout while sending message");
    assert!(tr.conn(0).raw.len() < 20_000_000);
}

#[test]
fn usage_tls_files() {
    config_error(
        &["--tls", "--tls-cert=/nonexistent/c.pem"],
        "--tls-cert and --tls-key go together",
    );
    config_error(
        &["--tls=verify", "--tls-ca=/nonexistent/ca.pem"],
        "--tls-ca: open /nonexistent/ca.pem: No such file or directory",
    );
    let dir = TempDir::new("empty-ca");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").expect("write");
    config_error(
        &["--tls=verify", &format!("--tls-ca={}", empty.display())],
        &format!("--tls-ca: no certificate in {}", empty.display()),
    );
    let dir = TempDir::new("unix-verify");
    let ca = format!("--tls-ca={}", Pki::new().write_ca(dir.path()).display());
    let sock = format!("unix:{}", dir.path().join("s.sock").display());
    let out = client(&["--tls=verify", &ca]).arg(sock).run();
    assert_fatal(&out, "--tls=verify on a UNIX socket needs --tls-servername");
}

#[test]
fn sink_shards_over_tls_add_up_to_the_run() {
    // --shard composes with STARTTLS: two shards of -m 5 send 3 and 2
    // messages, each over its own verified TLS connections.
    let dir = TempDir::new("sink-shards");
    let ca = dir.path().join("ca.pem").to_string_lossy().into_owned();
    let args = ["--tls", "--require-tls", "--ca-out", &ca, "--messages", "5"];
    let Some(sink) =
        Sink::start("sink_shards_over_tls_add_up_to_the_run", &args)
    else {
        return;
    };
    let ca_arg = format!("--tls-ca={ca}");
    for (shard, want) in [("--shard=1/2", 3), ("--shard=2/2", 2)] {
        let out = client(&[
            "--tls=verify",
            &ca_arg,
            shard,
            "-m",
            "5",
            "--report=json",
        ])
        .arg(&sink.endpoint)
        .run();
        out.assert_status(0).assert_stderr("");
        let text = out.stdout_text();
        assert!(
            text.contains(&format!("\"accepted\":{want},")),
            "{shard}: {text}"
        );
        assert!(text.contains(&format!("\"handshakes\":{want},")), "{text}");
    }
    let summary = sink.finish();
    assert_summary_has(
        &summary,
        "sink received: ",
        "connections=5 messages=5",
    );
}
