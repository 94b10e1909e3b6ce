//! Wire transcripts per option, pinned to exact bytes (the transcripts
//! the reference produces). These tests need no reference binary:
//! every expectation is written out here. Each test checks what the
//! client sent on each connection (Date and the Message-Id pid/fd masked,
//! the Message-Id counter kept), how each connection ended (RST after
//! QUIT on TCP, EOF on unix sockets), the exit status, stdout and stderr.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::fake_server::{
    mask_all, End, FakeServer, Options, Responder, Step, Transcript, Verb,
};
use crate::support::{
    hostname, ours, skip, spawn, Outcome, RefusingPort, TempDir, ARGV0,
};

/// Hard limit for one run (the slowest test, `-w 1 -m 2`, takes 2 s).
const LIMIT: Duration = Duration::from_secs(8);

/// The default body (no -l, no -F, or an empty -F file).
const LADEDA: &str = "La de da de da 1.\r\nLa de da de da 2.\r\n\
                      La de da de da 3.\r\nLa de da de da 4.\r\n";

// ---------------------------------------------------------------------------
// Helpers

/// Run ours with `args` and the server's endpoint appended.
fn run_on(srv: FakeServer, args: &[&str]) -> (Outcome, Transcript) {
    let out = ours()
        .cmd()
        .args(args)
        .arg(srv.endpoint())
        .timeout(LIMIT)
        .run();
    (out, srv.finish())
}

/// Run ours with `args` against a TCP responder.
fn run(args: &[&str], r: Responder) -> (Outcome, Transcript) {
    run_on(FakeServer::tcp(r), args)
}

/// Run ours with `args` against the default TCP responder.
fn run_default(args: &[&str]) -> (Outcome, Transcript) {
    run(args, Responder::new())
}

/// The machine hostname (default HELO name and address domain).
fn me() -> String {
    hostname()
}

/// `foo@<hostname>`.
fn foo() -> String {
    format!("foo@{}", me())
}

/// Generated headers: From, To, Date (masked), Message-Id (pid/fd
/// masked, counter `cnt`), optional Subject, blank line.
fn headers(
    from: &str,
    to: &str,
    cnt: &str,
    host: &str,
    subject: Option<&str>,
) -> String {
    let mut s = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nDate: <DATE>\r\n\
         Message-Id: <PID.FD.{cnt}@{host}>\r\n"
    );
    if let Some(subj) = subject {
        s.push_str(&format!("Subject: {subj}\r\n"));
    }
    s.push_str("\r\n");
    s
}

/// Default headers (foo@host both ways) plus the La de da body.
fn default_content(cnt: &str) -> String {
    format!("{}{LADEDA}", headers(&foo(), &foo(), cnt, &me(), None))
}

/// One transaction: MAIL, the RCPTs, DATA, `content`, the dot.
fn txn(from: &str, rcpts: &[String], content: &str) -> String {
    let mut s = format!("MAIL FROM:<{from}>\r\n");
    for r in rcpts {
        s.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    s.push_str("DATA\r\n");
    s.push_str(content);
    s.push_str(".\r\n");
    s
}

/// A default transaction (foo@host, one RCPT, headers, La de da).
fn default_txn(cnt: &str) -> String {
    txn(&foo(), &[foo()], &default_content(cnt))
}

/// `HELO <host>\r\n`.
fn helo() -> String {
    format!("HELO {}\r\n", me())
}

/// Assert exit 0, empty stdout and stderr.
fn assert_clean(out: &Outcome) {
    out.assert_status(0).assert_stdout(b"").assert_stderr("");
}

/// Assert the number of connections, and that every one ended as `end`.
fn assert_ends(tr: &Transcript, n: usize, end: &End) {
    assert_eq!(tr.len(), n, "connections:\n{}", tr.render());
    for c in &tr.conns {
        assert_eq!(&c.end, end, "connection {}:\n{}", c.index, tr.render());
    }
    tr.assert_no_errors();
}

/// A one-message run over TCP: one connection, `expected` sent, RST.
fn assert_single(out: &Outcome, tr: &Transcript, expected: &str) {
    assert_clean(out);
    assert_ends(tr, 1, &End::ClientReset);
    tr.assert_client_sent(0, expected.as_bytes());
}

/// A file with these contents in `dir`; its path as a String.
fn write_file(dir: &TempDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).expect("write test file");
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// Defaults and modes

#[test]
fn default_transcript() {
    let (out, tr) = run_default(&[]);
    let want = format!("{}{}QUIT\r\n", helo(), default_txn("0000"));
    assert_single(&out, &tr, &want);
    // The whole DATA content plus the dot arrives as one write would;
    // at least the server must have seen exactly one DATA body.
    assert_eq!(tr.conn(0).data.len(), 1);
}

#[test]
fn old_mode_no_helo_no_headers() {
    let (out, tr) = run_default(&["-o"]);
    let want = format!("{}QUIT\r\n", txn(&foo(), &[foo()], LADEDA));
    assert_single(&out, &tr, &want);
}

#[test]
fn lmtp_lhlo() {
    let (out, tr) = run(&["-L"], Responder::new().lmtp());
    let want = format!("LHLO {}\r\n{}QUIT\r\n", me(), default_txn("0000"));
    assert_single(&out, &tr, &want);
}

#[test]
fn lmtp_r3_reads_one_reply_per_recipient() {
    // The responder sends 3 end-of-data replies (one per accepted RCPT);
    // the client must read all three before QUIT.
    let (out, tr) = run(&["-L", "-r", "3"], Responder::new().lmtp());
    let h = me();
    let rcpts = [format!("3foo@{h}"), format!("2foo@{h}"), foo()];
    let want = format!(
        "LHLO {h}\r\n{}QUIT\r\n",
        txn(&foo(), &rcpts, &default_content("0000"))
    );
    assert_single(&out, &tr, &want);
    let replies = tr.conn(0).server_bytes();
    let queued = replies
        .windows(b"Ok: queued".len())
        .filter(|w| w == b"Ok: queued")
        .count();
    assert_eq!(queued, 3, "{}", tr.render());
}

#[test]
fn lmtp_rejected_rcpt_one_reply_per_accepted_x3() {
    // One end-of-data reply per RCPT *accepted* (man page NOTES X3); the
    // reference would hang here.
    let r = Responder::new()
        .lmtp()
        .on_nth(Verb::Rcpt, 1, "550 no rcpt 2");
    let (out, tr) = run(&["-A", "-L", "-r", "3"], r);
    let h = me();
    let rcpts = [format!("3foo@{h}"), format!("2foo@{h}"), foo()];
    let want = format!(
        "LHLO {h}\r\n{}QUIT\r\n",
        txn(&foo(), &rcpts, &default_content("0000"))
    );
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&format!(
            "{ARGV0}: warning: recipient rejected: 550 no rcpt 2\n"
        ))
        .assert_elapsed_below(Duration::from_secs(3));
    assert_ends(&tr, 1, &End::ClientReset);
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn old_mode_lmtp_no_lhlo() {
    let (out, tr) = run(&["-o", "-L"], Responder::new().lmtp());
    let want = format!("{}QUIT\r\n", txn(&foo(), &[foo()], LADEDA));
    assert_single(&out, &tr, &want);
}

// ---------------------------------------------------------------------------
// Recipients and numbering

#[test]
fn rcpt_3_counts_down() {
    let (out, tr) = run_default(&["-r", "3"]);
    let h = me();
    let rcpts = [format!("3foo@{h}"), format!("2foo@{h}"), foo()];
    let want = format!(
        "{}{}QUIT\r\n",
        helo(),
        txn(&foo(), &rcpts, &default_content("0000"))
    );
    assert_single(&out, &tr, &want);
}

#[test]
fn number_r2_m2_global_across_connections() {
    let (out, tr) = run_default(&["-N", "-r", "2", "-m", "2"]);
    assert_clean(&out);
    assert_ends(&tr, 2, &End::ClientReset);
    let h = me();
    for (i, (a, b, cnt)) in
        [(1, 2, "0001"), (3, 4, "0000")].into_iter().enumerate()
    {
        let rcpts = [format!("{a}foo@{h}"), format!("{b}foo@{h}")];
        // To: stays unnumbered.
        let want = format!(
            "{}{}QUIT\r\n",
            helo(),
            txn(&foo(), &rcpts, &default_content(cnt))
        );
        tr.assert_client_sent(i, want.as_bytes());
    }
}

// ---------------------------------------------------------------------------
// Messages, sessions, reuse

#[test]
fn reuse_d_m3_one_connection_counter_down() {
    let (out, tr) = run_default(&["-d", "-m", "3"]);
    let want = format!(
        "{}{}{}{}QUIT\r\n",
        helo(),
        default_txn("0002"),
        default_txn("0001"),
        default_txn("0000")
    );
    assert_single(&out, &tr, &want);
    assert!(!String::from_utf8_lossy(&tr.conn(0).raw).contains("RSET"));
}

#[test]
fn old_mode_reuse_m2() {
    let (out, tr) = run_default(&["-o", "-d", "-m", "2"]);
    let t = txn(&foo(), &[foo()], LADEDA);
    assert_single(&out, &tr, &format!("{t}{t}QUIT\r\n"));
}

#[test]
fn m3_s2_connection_multiset() {
    let (out, tr) = run_default(&["-m", "3", "-s", "2"]);
    assert_clean(&out);
    assert_ends(&tr, 3, &End::ClientReset);
    // The counter depends on how the sessions interleave: mask it too.
    let one = format!("{}{}QUIT\r\n", helo(), default_txn("0000"))
        .replace("<PID.FD.", "<0000.0000.");
    let one = mask_all(one.as_bytes());
    for c in &tr.conns {
        crate::support::assert_bytes_eq(
            &format!("connection {} (all masked)", c.index),
            &one,
            &mask_all(&c.raw),
        );
    }
}

#[test]
fn m1_s3_one_connection_counter_fffffffe() {
    let (out, tr) = run_default(&["-m", "1", "-s", "3"]);
    let want = format!("{}{}QUIT\r\n", helo(), default_txn("fffffffe"));
    assert_single(&out, &tr, &want);
}

// ---------------------------------------------------------------------------
// Addresses, names, subject

fn addr_case(args: &[&str], from: &str, to: &str) {
    let (out, tr) = run_default(args);
    let content =
        format!("{}{LADEDA}", headers(from, to, "0000", &me(), None));
    let want = format!(
        "{}{}QUIT\r\n",
        helo(),
        txn(from, &[to.to_string()], &content)
    );
    assert_single(&out, &tr, &want);
}

#[test]
fn from_and_to_verbatim() {
    addr_case(
        &["-f", "sender@example.com", "-t", "rcpt@example.org"],
        "sender@example.com",
        "rcpt@example.org",
    );
}

#[test]
fn from_and_to_empty() {
    addr_case(&["-f", "", "-t", ""], "", "");
}

#[test]
fn from_brackets_and_to_with_space() {
    addr_case(&["-f", "<a@b>", "-t", "x y@z"], "<a@b>", "x y@z");
}

#[test]
fn to_brackets() {
    addr_case(&["-t", "<a@b>"], &foo(), "<a@b>");
}

fn myhostname_case(name: &str) {
    let (out, tr) = run_default(&["-M", name]);
    let a = format!("foo@{name}");
    let content = format!("{}{LADEDA}", headers(&a, &a, "0000", name, None));
    let want = format!(
        "HELO {name}\r\n{}QUIT\r\n",
        txn(&a, std::slice::from_ref(&a), &content)
    );
    assert_single(&out, &tr, &want);
}

#[test]
fn myhostname_name() {
    myhostname_case("mail.example.com");
}

#[test]
fn myhostname_literal() {
    myhostname_case("[1.2.3.4]");
}

fn subject_case(subject: &str) {
    let (out, tr) = run_default(&["-S", subject]);
    let content = format!(
        "{}{LADEDA}",
        headers(&foo(), &foo(), "0000", &me(), Some(subject))
    );
    let want =
        format!("{}{}QUIT\r\n", helo(), txn(&foo(), &[foo()], &content));
    assert_single(&out, &tr, &want);
}

#[test]
fn subject_text() {
    subject_case("Hello world  test");
}

#[test]
fn subject_empty_has_trailing_space() {
    subject_case("");
}

#[test]
fn subject_ignored_with_old_mode() {
    let (out, tr) = run_default(&["-o", "-S", "ignored"]);
    let want = format!("{}QUIT\r\n", txn(&foo(), &[foo()], LADEDA));
    assert_single(&out, &tr, &want);
}

#[test]
fn subject_ignored_with_file() {
    let dir = TempDir::new("proto-subj");
    let f = write_file(&dir, "hdr.txt", b"Subject: hdr\nX-Test: 1\n\nbody\n");
    let (out, tr) = run_default(&["-F", &f, "-S", "ignored"]);
    let content = "Subject: hdr\r\nX-Test: 1\r\n\r\nbody\r\n\r\n";
    let want = format!("{}{}QUIT\r\n", helo(), txn(&foo(), &[foo()], content));
    assert_single(&out, &tr, &want);
}

// ---------------------------------------------------------------------------
// -l payloads

/// `<digit>` + 77 X + CRLF.
fn full_line(digit: u32) -> String {
    format!("{digit}{}\r\n", "X".repeat(77))
}

fn length_case(n: &str, body: &str) {
    let (out, tr) = run_default(&["-l", n]);
    let content =
        format!("{}{body}", headers(&foo(), &foo(), "0000", &me(), None));
    let want =
        format!("{}{}QUIT\r\n", helo(), txn(&foo(), &[foo()], &content));
    assert_single(&out, &tr, &want);
}

#[test]
fn length_1() {
    length_case("1", "X\r\n");
}

#[test]
fn length_80_no_digit() {
    length_case("80", &format!("{}\r\n", "X".repeat(80)));
}

#[test]
fn length_81() {
    length_case("81", &format!("{}X\r\n", full_line(1)));
}

#[test]
fn length_160() {
    length_case("160", &format!("{}{}\r\n", full_line(1), "X".repeat(80)));
}

#[test]
fn length_1000_digits_wrap() {
    let mut body = String::new();
    for i in 1..=12 {
        body.push_str(&full_line(i % 10));
    }
    body.push_str(&format!("{}\r\n", "X".repeat(40)));
    length_case("1000", &body);
}

#[test]
fn length_with_old_mode() {
    let (out, tr) = run_default(&["-o", "-l", "100"]);
    let body = format!("{}{}\r\n", full_line(1), "X".repeat(20));
    let want = format!("{}QUIT\r\n", txn(&foo(), &[foo()], &body));
    assert_single(&out, &tr, &want);
}

// ---------------------------------------------------------------------------
// -F files

fn file_case(contents: &[u8], expected_content: &str) {
    let dir = TempDir::new("proto-file");
    let f = write_file(&dir, "msg", contents);
    let (out, tr) = run_default(&["-F", &f]);
    let want = format!(
        "{}{}QUIT\r\n",
        helo(),
        txn(&foo(), &[foo()], expected_content)
    );
    assert_single(&out, &tr, &want);
}

#[test]
fn file_lf() {
    file_case(
        b"Subject: hdr\nX-Test: 1\n\nbody\n",
        "Subject: hdr\r\nX-Test: 1\r\n\r\nbody\r\n\r\n",
    );
}

#[test]
fn file_crlf_keeps_cr() {
    file_case(
        b"Subject: crlf\r\n\r\nbody1\r\nbody2\r\n",
        "Subject: crlf\r\r\n\r\r\nbody1\r\r\nbody2\r\r\n\r\n",
    );
}

#[test]
fn file_no_final_newline() {
    file_case(b"abc\ndef", "abc\r\ndef\r\n\r\n");
}

#[test]
fn file_leading_dots_are_stuffed() {
    file_case(
        b".hidden\n..double\n.\nnormal line\n",
        "..hidden\r\n...double\r\n..\r\nnormal line\r\n\r\n",
    );
}

#[test]
fn file_empty_falls_back_to_la_de_da_without_headers() {
    file_case(b"", LADEDA);
}

#[test]
fn file_just_newline() {
    file_case(b"\n", "\r\n\r\n");
}

#[test]
fn file_nul_and_bare_cr_pass_through() {
    let dir = TempDir::new("proto-file");
    let f = write_file(&dir, "nul", b"a\0b\nc\rd\n");
    let (out, tr) = run_default(&["-F", &f]);
    let want = format!(
        "{}{}QUIT\r\n",
        helo(),
        txn(&foo(), &[foo()], "a\0b\r\nc\rd\r\n\r\n")
    );
    assert_single(&out, &tr, &want);
}

// ---------------------------------------------------------------------------
// -c

#[test]
fn count_m3_stdout() {
    let (out, tr) = run_default(&["-c", "-m", "3"]);
    out.assert_status(0)
        .assert_stdout(b"1\r2\r3\r\n")
        .assert_stderr("");
    assert_ends(&tr, 3, &End::ClientReset);
    for (i, cnt) in ["0002", "0001", "0000"].into_iter().enumerate() {
        let want = format!("{}{}QUIT\r\n", helo(), default_txn(cnt));
        tr.assert_client_sent(i, want.as_bytes());
    }
}

#[test]
fn count_fatal_has_no_trailing_newline() {
    let r = Responder::new().on(Verb::Dot, "554 nope");
    let (out, tr) = run(&["-c", "-m", "3", "-d"], r);
    out.assert_status(1)
        .assert_stdout(b"1\r")
        .assert_stderr(&format!(
            "{ARGV0}: fatal: end of data rejected: 554 nope\n"
        ))
        .assert_elapsed_below(Duration::from_millis(500));
    assert_ends(&tr, 1, &End::ClientReset);
    let want = format!("{}{}", helo(), default_txn("0002"));
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn count_all_data_rejected_is_just_newline() {
    let r = Responder::new().on(Verb::Data, "554 nope");
    let (out, tr) = run(&["-A", "-c", "-m", "3"], r);
    let w = format!("{ARGV0}: warning: data rejected: 554 nope\n");
    out.assert_status(0)
        .assert_stdout(b"\n")
        .assert_stderr(&w.repeat(3));
    assert_ends(&tr, 3, &End::ClientReset);
}

// ---------------------------------------------------------------------------
// -v (no Postfix-internal trace lines: man page NOTES X12)

#[test]
fn verbose_exact_lines() {
    let (out, tr) = run_default(&["-v"]);
    let h = me();
    let lines = [
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
    ];
    let want: String =
        lines.iter().map(|l| format!("{ARGV0}: {l}\n")).collect();
    out.assert_status(0).assert_stdout(b"").assert_stderr(&want);
    assert_ends(&tr, 1, &End::ClientReset);
    tr.assert_client_sent(
        0,
        format!("{}{}QUIT\r\n", helo(), default_txn("0000")).as_bytes(),
    );
}

#[test]
fn verbose_multiline_and_censored_reply() {
    let r = Responder::new()
        .banner("220-first line\r\n220-second\r\n220 third")
        .on_raw(Verb::Rcpt, b"550 a\x01b\tc\xe9d\r\n");
    let (out, tr) = run(&["-v"], r);
    let h = me();
    let lines = [
        "<<< 220-first line".to_string(),
        "<<< 220-second".into(),
        "<<< 220 third".into(),
        format!("HELO {h}"),
        "<<< 250 fake.example".into(),
        format!("MAIL FROM:<foo@{h}>"),
        "<<< 250 2.1.0 Ok".into(),
        format!("RCPT TO:<foo@{h}>"),
        "<<< 550 a?b?c?d".into(),
        "fatal: recipient rejected: 550 a?b?c?d".into(),
    ];
    let want: String =
        lines.iter().map(|l| format!("{ARGV0}: {l}\n")).collect();
    out.assert_status(1).assert_stdout(b"").assert_stderr(&want);
    assert_ends(&tr, 1, &End::ClientReset);
    let sent =
        format!("{}MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\n", helo(), foo(), foo());
    tr.assert_client_sent(0, sent.as_bytes());
}

#[test]
fn verbose_eof_before_lost_connection_fatal() {
    let r = Responder::new().close_at(Verb::Mail);
    let (out, tr) = run(&["-v"], r);
    let h = me();
    let lines = [
        "<<< 220 fake.example ESMTP fake".to_string(),
        format!("HELO {h}"),
        "<<< 250 fake.example".into(),
        format!("MAIL FROM:<foo@{h}>"),
        "smtp_get: EOF".into(),
        "fatal: lost connection while sending sender".into(),
    ];
    let want: String =
        lines.iter().map(|l| format!("{ARGV0}: {l}\n")).collect();
    out.assert_status(1)
        .assert_stdout(b"")
        .assert_stderr(&want)
        .assert_elapsed_below(Duration::from_millis(500));
    assert_eq!(tr.len(), 1);
    tr.assert_client_sent(
        0,
        format!("{}MAIL FROM:<{}>\r\n", helo(), foo()).as_bytes(),
    );
}

// ---------------------------------------------------------------------------
// -A

/// `-A -m 2` with every `verb` answered by `line`: two connections,
/// each sending `conn_bytes`, and one warning per connection.
fn a2_case(verb: Verb, line: &str, warning: &str, conn_bytes: &[String]) {
    let (out, tr) = run(&["-A", "-m", "2"], Responder::new().on(verb, line));
    let w = format!("{ARGV0}: warning: {warning}: {line}\n");
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&w.repeat(2));
    assert_ends(&tr, 2, &End::ClientReset);
    for (i, c) in conn_bytes.iter().enumerate() {
        tr.assert_client_sent(i, c.as_bytes());
    }
}

#[test]
fn a_mail_rejected_rset() {
    let c = format!("{}MAIL FROM:<{}>\r\nRSET\r\nQUIT\r\n", helo(), foo());
    a2_case(
        Verb::Mail,
        "450 4.0.0 tempfail MAIL",
        "sender rejected",
        &[c.clone(), c],
    );
}

#[test]
fn a_all_rcpts_rejected_rset() {
    let c = format!(
        "{}MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nRSET\r\nQUIT\r\n",
        helo(),
        foo(),
        foo()
    );
    a2_case(
        Verb::Rcpt,
        "450 4.0.0 tempfail RCPT",
        "recipient rejected",
        &[c.clone(), c],
    );
}

#[test]
fn a_all_rcpts_rejected_reuse_numbered() {
    let r = Responder::new().on(Verb::Rcpt, "550 no");
    let (out, tr) = run(&["-A", "-d", "-m", "2", "-r", "2", "-N"], r);
    let w = format!("{ARGV0}: warning: recipient rejected: 550 no\n");
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&w.repeat(4));
    assert_ends(&tr, 1, &End::ClientReset);
    let (h, f) = (me(), foo());
    let want = format!(
        "{}MAIL FROM:<{f}>\r\nRCPT TO:<1foo@{h}>\r\nRCPT TO:<2foo@{h}>\r\n\
         RSET\r\nMAIL FROM:<{f}>\r\nRCPT TO:<3foo@{h}>\r\n\
         RCPT TO:<4foo@{h}>\r\nRSET\r\nQUIT\r\n",
        helo()
    );
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn a_data_rejected_rset() {
    let c = format!(
        "{}MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\nRSET\r\nQUIT\r\n",
        helo(),
        foo(),
        foo()
    );
    a2_case(
        Verb::Data,
        "450 4.0.0 tempfail DATA",
        "data rejected",
        &[c.clone(), c],
    );
}

#[test]
fn a_dot_rejected_no_rset() {
    let c0 = format!("{}{}QUIT\r\n", helo(), default_txn("0001"));
    let c1 = format!("{}{}QUIT\r\n", helo(), default_txn("0000"));
    a2_case(
        Verb::Dot,
        "450 4.0.0 tempfail DOT",
        "end of data rejected",
        &[c0, c1],
    );
}

#[test]
fn a_rcpt_421_closes_without_quit() {
    let r = Responder::new().on_conn(
        0,
        Verb::Rcpt,
        vec![Step::send("421 4.3.2 shutting down")],
    );
    let (out, tr) = run(&["-A", "-m", "2"], r);
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&format!(
            "{ARGV0}: warning: recipient rejected: 421 4.3.2 shutting down\n"
        ));
    assert_ends(&tr, 2, &End::ClientReset);
    tr.assert_client_sent(
        0,
        format!("{}MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\n", helo(), foo(), foo())
            .as_bytes(),
    );
    tr.assert_client_sent(
        1,
        format!("{}{}QUIT\r\n", helo(), default_txn("0000")).as_bytes(),
    );
}

#[test]
fn a_rset_rejected_reuse_continues() {
    let r = Responder::new()
        .on_nth(Verb::Mail, 0, "550 no")
        .on(Verb::Rset, "554 rset no");
    let (out, tr) = run(&["-A", "-d", "-m", "2"], r);
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&format!(
            "{ARGV0}: warning: sender rejected: 550 no\n\
         {ARGV0}: warning: rset rejected: 554 rset no\n"
        ));
    assert_ends(&tr, 1, &End::ClientReset);
    let want = format!(
        "{}MAIL FROM:<{}>\r\nRSET\r\n{}QUIT\r\n",
        helo(),
        foo(),
        default_txn("0000")
    );
    tr.assert_client_sent(0, want.as_bytes());
}

// ---------------------------------------------------------------------------
// Delays and connecting

#[test]
fn wait_1_m2_delay_follows_last_message() {
    let srv = FakeServer::start(
        Responder::new(),
        Options {
            watchdog: Duration::from_secs(15),
            ..Options::default()
        },
    );
    let (out, tr) = run_on(srv, &["-w", "1", "-m", "2"]);
    assert_clean(&out);
    assert!(
        out.elapsed >= Duration::from_secs(2),
        "the delay also follows the last message:\n{}",
        out.render()
    );
    assert_ends(&tr, 2, &End::ClientReset);
    let gap = tr.conn(1).accepted_at - tr.conn(0).accepted_at;
    assert!(gap >= Duration::from_millis(950), "gap {gap:?}");
    for (i, cnt) in ["0001", "0000"].into_iter().enumerate() {
        let want = format!("{}{}QUIT\r\n", helo(), default_txn(cnt));
        tr.assert_client_sent(i, want.as_bytes());
    }
}

#[test]
fn connect_retry_c3_refused() {
    let port = RefusingPort::new();
    let out = ours()
        .cmd()
        .args(["-C", "3"])
        .arg(port.endpoint())
        .timeout(LIMIT)
        .run();
    let w = format!("{ARGV0}: warning: connect: Connection refused\n");
    out.assert_status(1)
        .assert_stdout(b"")
        .assert_stderr(&format!(
            "{}{ARGV0}: fatal: connect: Connection refused\n",
            w.repeat(2)
        ))
        .assert_elapsed_below(Duration::from_millis(500));
}

// ---------------------------------------------------------------------------
// Endpoints and sockets

#[test]
fn unix_socket_ends_with_eof() {
    let (out, tr) = run_on(FakeServer::unix(Responder::new()), &[]);
    assert_clean(&out);
    assert_ends(&tr, 1, &End::ClientEof);
    tr.assert_client_sent(
        0,
        format!("{}{}QUIT\r\n", helo(), default_txn("0000")).as_bytes(),
    );
}

#[test]
fn unix_lmtp_r2() {
    let (out, tr) = run_on(
        FakeServer::unix(Responder::new().lmtp()),
        &["-L", "-r", "2"],
    );
    assert_clean(&out);
    assert_ends(&tr, 1, &End::ClientEof);
    let h = me();
    let rcpts = [format!("2foo@{h}"), foo()];
    let want = format!(
        "LHLO {h}\r\n{}QUIT\r\n",
        txn(&foo(), &rcpts, &default_content("0000"))
    );
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn window_size_4096_runs() {
    let (out, tr) = run_default(&["-T", "4096"]);
    let want = format!("{}{}QUIT\r\n", helo(), default_txn("0000"));
    assert_single(&out, &tr, &want);
}

#[test]
fn window_size_4096_unix_runs() {
    let (out, tr) =
        run_on(FakeServer::unix(Responder::new()), &["-T", "4096"]);
    assert_clean(&out);
    assert_ends(&tr, 1, &End::ClientEof);
}

/// Run ours with `args` (the operand is built from the server's port by
/// `operand`) against the default responder.
fn endpoint_case(args: &[&str], operand: impl Fn(u16) -> String) {
    let srv = FakeServer::responder();
    let port = srv.port().expect("tcp port");
    let out = ours()
        .cmd()
        .args(args)
        .arg(operand(port))
        .timeout(LIMIT)
        .run();
    let tr = srv.finish();
    let want = format!("{}{}QUIT\r\n", helo(), default_txn("0000"));
    assert_single(&out, &tr, &want);
}

#[test]
fn endpoint_inet_prefix() {
    endpoint_case(&[], |p| format!("inet:127.0.0.1:{p}"));
}

#[test]
fn endpoint_bracketed_address() {
    endpoint_case(&[], |p| format!("[127.0.0.1]:{p}"));
}

#[test]
fn endpoint_localhost_name() {
    endpoint_case(&[], |p| format!("localhost:{p}"));
}

#[test]
fn endpoint_after_double_dash() {
    endpoint_case(&["--"], |p| format!("127.0.0.1:{p}"));
}

#[test]
fn family_4_ipv4_address() {
    endpoint_case(&["-4"], |p| format!("127.0.0.1:{p}"));
}

// ---------------------------------------------------------------------------
// IPv6 (-4 / -6). The support server listens on IPv4 only, so a minimal
// one-connection SMTP peer on [::1] lives here.

/// What the IPv6 peer saw: raw client bytes and whether it was reset.
struct V6Seen {
    raw: Vec<u8>,
    end: End,
}

struct V6Server {
    port: u16,
    handle: JoinHandle<Option<V6Seen>>,
}

/// None (test skipped) when IPv6 loopback is unavailable.
fn v6_server() -> Option<V6Server> {
    let l = match TcpListener::bind("[::1]:0") {
        Ok(l) => l,
        Err(e) => {
            let name = std::thread::current().name().map(str::to_owned);
            let test = name.unwrap_or_else(|| "protocol (IPv6)".into());
            skip(&test, &format!("IPv6 loopback unavailable: {e}"));
            return None;
        }
    };
    let port = l.local_addr().ok()?.port();
    l.set_nonblocking(true).ok()?;
    let handle = spawn("v6-server", move || v6_serve(&l));
    Some(V6Server { port, handle })
}

fn v6_serve(l: &TcpListener) -> Option<V6Seen> {
    let until = Instant::now() + Duration::from_secs(5);
    let s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return None,
        }
    };
    s.set_nonblocking(false).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(v6_dialogue(s))
}

/// Next line from `s` (buffered in `buf`, every byte recorded in `raw`).
fn v6_line(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    raw: &mut Vec<u8>,
) -> Result<Vec<u8>, End> {
    loop {
        if let Some(p) = buf.iter().position(|&b| b == b'\n') {
            return Ok(buf.drain(..=p).collect());
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => return Err(End::ClientEof),
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(End::ClientReset)
            }
            Err(e) => return Err(End::Error(e.to_string())),
        }
    }
}

fn v6_dialogue(mut s: TcpStream) -> V6Seen {
    let (mut buf, mut raw) = (Vec::new(), Vec::new());
    let _ = s.write_all(b"220 v6.example ESMTP\r\n");
    let end = loop {
        let line = match v6_line(&mut s, &mut buf, &mut raw) {
            Ok(l) => l,
            Err(end) => break end,
        };
        let reply: &[u8] = match Verb::of(&line) {
            Verb::Data => b"354 go\r\n",
            Verb::Quit => b"221 bye\r\n",
            _ => b"250 ok\r\n",
        };
        let _ = s.write_all(reply);
        if Verb::of(&line) == Verb::Data {
            loop {
                match v6_line(&mut s, &mut buf, &mut raw) {
                    Ok(l) if l == b".\r\n" => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = s.write_all(b"250 queued\r\n");
        }
    };
    V6Seen { raw, end }
}

fn v6_case(args: &[&str], operand: impl Fn(u16) -> String) {
    let Some(srv) = v6_server() else { return };
    let out = ours()
        .cmd()
        .args(args)
        .arg(operand(srv.port))
        .timeout(LIMIT)
        .run();
    assert_clean(&out);
    let seen = srv
        .handle
        .join()
        .expect("v6 server thread")
        .expect("a connection over IPv6");
    let want = format!("{}{}QUIT\r\n", helo(), default_txn("0000"));
    crate::support::assert_bytes_eq(
        "client bytes over IPv6 (masked)",
        &crate::support::fake_server::mask(want.as_bytes()),
        &crate::support::fake_server::mask(&seen.raw),
    );
    assert_eq!(seen.end, End::ClientReset, "RST after QUIT over IPv6");
}

#[test]
fn ipv6_bracketed() {
    v6_case(&[], |p| format!("[::1]:{p}"));
}

#[test]
fn ipv6_family_6() {
    v6_case(&["-6"], |p| format!("[::1]:{p}"));
}

#[test]
fn ipv6_rightmost_colon_split() {
    v6_case(&[], |p| format!("::1:{p}"));
}

#[test]
fn ipv6_last_family_option_wins() {
    v6_case(&["-4", "-6"], |p| format!("::1:{p}"));
}

#[test]
fn ipv6_literal_with_ipv6_prefix() {
    v6_case(&[], |p| format!("[ipv6:::1]:{p}"));
}

/// -4 with an IPv6 address, and -6 with an IPv4 one: resolver error,
/// exit 1 at once, no connection.
fn wrong_family_case(family: &str, operand: &str) {
    let out = ours().cmd().args([family, operand]).timeout(LIMIT).run();
    out.assert_status(1)
        .assert_stdout(b"")
        .assert_stderr(&format!(
            "{ARGV0}: fatal: {operand}: Address family for hostname not \
             supported\n"
        ))
        .assert_elapsed_below(Duration::from_millis(500));
}

#[test]
fn family_4_with_ipv6_address() {
    let srv = FakeServer::responder();
    wrong_family_case("-4", &format!("[::1]:{}", srv.port().expect("port")));
    assert_eq!(srv.finish().len(), 0);
}

#[test]
fn family_6_with_ipv4_address() {
    let srv = FakeServer::responder();
    wrong_family_case("-6", &srv.endpoint());
    assert_eq!(srv.finish().len(), 0);
}

#[test]
fn unix_old_mode() {
    let srv = FakeServer::unix(Responder::new());
    let (out, tr) = run_on(srv, &["-o"]);
    assert_clean(&out);
    assert_ends(&tr, 1, &End::ClientEof);
    tr.assert_client_sent(
        0,
        format!("{}QUIT\r\n", txn(&foo(), &[foo()], LADEDA)).as_bytes(),
    );
}
