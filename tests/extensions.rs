//! The opt-in long options (man page EXTENSIONS), against the scripted
//! server:
//! --ehlo, --pipelining (groups on the wire, rejections inside a group,
//! a server without PIPELINING), --chunking (BDAT byte-exactness),
//! --report / --report-file (counts equal to what the server saw,
//! percentiles from known delays), --hlog, --rate, --arrival, --duration
//! and SIGINT. Timing is asserted loosely; precise figures belong to the
//! benchmark.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::fake_server::{
    mask_all, End, FakeServer, Responder, Step, Transcript, Verb,
};
use crate::support::{escape, ours, Outcome, TempDir, ARGV0};

/// Hard limit for one run (the slowest, --hlog, takes about 2.5 s).
const LIMIT: Duration = Duration::from_secs(10);

/// Hard limit for a run that is interrupted (it should end at once).
const SIGINT_LIMIT: Duration = Duration::from_secs(5);

/// The HELO name and address domain of every run (`-M`).
const HOST: &str = "ext.example";

/// The default body.
const LADEDA: &str = "La de da de da 1.\r\nLa de da de da 2.\r\n\
                      La de da de da 3.\r\nLa de da de da 4.\r\n";

/// EHLO reply lines of a server with both extensions. No SIZE: with
/// it every MAIL would carry SIZE= (tests/esmtp.rs tests that).
const EHLO_BOTH: &str = "250-fake.example\r\n250-PIPELINING\r\n\
     250-CHUNKING\r\n250 8BITMIME";
const EHLO_PIPELINING: &str = "250-fake.example\r\n250 PIPELINING";
const EHLO_CHUNKING: &str = "250-fake.example\r\n250 CHUNKING";

// ---------------------------------------------------------------------------
// Helpers

/// Ours with `-M ext.example`, `args` and the server's endpoint.
fn run_on(srv: FakeServer, args: &[&str]) -> (Outcome, Transcript) {
    crate::support::run_ours_on(HOST, srv, args)
}

fn run(args: &[&str], r: Responder) -> (Outcome, Transcript) {
    run_on(FakeServer::tcp(r), args)
}

/// A responder that offers `ehlo` as its EHLO reply.
fn esmtp(ehlo: &str) -> Responder {
    Responder::new().on(Verb::Ehlo, ehlo)
}

/// `foo@ext.example`.
fn foo() -> String {
    format!("foo@{HOST}")
}

/// Default headers (Date masked, Message-Id pid/fd masked, counter `cnt`).
fn headers(cnt: &str) -> String {
    let f = foo();
    format!(
        "From: <{f}>\r\nTo: <{f}>\r\nDate: <DATE>\r\n\
         Message-Id: <PID.FD.{cnt}@{HOST}>\r\n\r\n"
    )
}

/// Default headers and the La de da body.
fn content(cnt: &str) -> String {
    format!("{}{LADEDA}", headers(cnt))
}

/// `RCPT TO:` for `r` recipients, counted down as 3.7 does.
fn rcpts(r: usize) -> String {
    (1..=r)
        .rev()
        .map(|n| {
            if n > 1 {
                format!("RCPT TO:<{n}{}>\r\n", foo())
            } else {
                format!("RCPT TO:<{}>\r\n", foo())
            }
        })
        .collect()
}

/// MAIL, `r` RCPTs and DATA: a pipelined group.
fn group(r: usize) -> String {
    format!("MAIL FROM:<{}>\r\n{}DATA\r\n", foo(), rcpts(r))
}

fn ehlo() -> String {
    format!("EHLO {HOST}\r\n")
}

fn helo() -> String {
    format!("HELO {HOST}\r\n")
}

/// One default transaction with one recipient (counter `cnt`).
fn txn(cnt: &str) -> String {
    format!("{}{}.\r\n", group(1), content(cnt))
}

/// Exit 0, nothing on stdout or stderr.
fn assert_clean(out: &Outcome) {
    out.assert_status(0).assert_stdout(b"").assert_stderr("");
}

/// `n` connections, each ended by the client's RST (after QUIT on TCP),
/// no script errors.
fn assert_conns(tr: &Transcript, n: usize) {
    assert_eq!(tr.len(), n, "connections:\n{}", tr.render());
    for c in &tr.conns {
        assert_eq!(c.end, End::ClientReset, "{}", tr.render());
    }
    tr.assert_no_errors();
}

/// Assert that some single read() on connection `i` returned exactly
/// `chunk` (after masking): what one write of the client put on the wire.
fn assert_one_read(tr: &Transcript, i: usize, chunk: &str) {
    let want = crate::support::fake_server::mask(chunk.as_bytes());
    let reads = &tr.conn(i).reads;
    let found = reads
        .iter()
        .any(|r| crate::support::fake_server::mask(r) == want);
    let shown: String = reads
        .iter()
        .map(|r| format!("  [{}]\n", escape(r)))
        .collect();
    assert!(
        found,
        "no single read returned [{}]; reads were:\n{shown}",
        escape(&want)
    );
}

/// An expectation written with `<PID.FD.cnt@`, masked as [`mask_all`]
/// masks real bytes (Date, and the whole Message-Id number).
fn mask_counters(expected: &str) -> Vec<u8> {
    mask_all(expected.replace("<PID.FD.", "<0000.0000.").as_bytes())
}

/// A file in `dir` with these bytes; its path.
fn write_file(dir: &TempDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).expect("write test file");
    p.to_string_lossy().into_owned()
}

fn warning(text: &str) -> String {
    format!("{ARGV0}: warning: {text}\n")
}

// ---------------------------------------------------------------------------
// A tiny JSON reader (enough for the report)

#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Json {
        let b = text.trim().as_bytes();
        let mut pos = 0;
        let v = json_value(b, &mut pos);
        assert_eq!(pos, b.len(), "trailing bytes in JSON: {text}");
        v
    }

    /// The member at a `/`-separated path; panics if absent.
    fn at(&self, path: &str) -> &Json {
        let mut v = self;
        for key in path.split('/') {
            v = match v {
                Json::Obj(members) => members
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| panic!("no key {path} in {self:?}")),
                _ => panic!("{path}: not an object at {key}"),
            };
        }
        v
    }

    fn num(&self, path: &str) -> f64 {
        match self.at(path) {
            Json::Num(n) => *n,
            other => panic!("{path} is not a number: {other:?}"),
        }
    }

    fn int(&self, path: &str) -> u64 {
        self.num(path) as u64
    }

    fn keys(&self) -> Vec<String> {
        match self {
            Json::Obj(m) => m.iter().map(|(k, _)| k.clone()).collect(),
            _ => panic!("not an object: {self:?}"),
        }
    }

    /// `reply_codes` as {CMD: {code: count}}.
    fn codes(&self) -> Codes {
        let mut out = Codes::new();
        let Json::Obj(cmds) = self.at("reply_codes") else {
            panic!("reply_codes is not an object");
        };
        for (cmd, per) in cmds {
            let Json::Obj(per) = per else {
                panic!("{cmd}: not object")
            };
            for (code, n) in per {
                let Json::Num(n) = n else {
                    panic!("{cmd}/{code}")
                };
                out.insert((cmd.clone(), code.clone()), *n as u64);
            }
        }
        out
    }
}

type Codes = BTreeMap<(String, String), u64>;

fn json_ws(b: &[u8], pos: &mut usize) {
    while *pos < b.len() && b[*pos].is_ascii_whitespace() {
        *pos += 1;
    }
}

fn json_value(b: &[u8], pos: &mut usize) -> Json {
    json_ws(b, pos);
    let rest = &b[*pos..];
    for (word, v) in [
        (&b"null"[..], Json::Null),
        (b"true", Json::Bool(true)),
        (b"false", Json::Bool(false)),
    ] {
        if rest.starts_with(word) {
            *pos += word.len();
            return v;
        }
    }
    match rest.first() {
        Some(b'"') => Json::Str(json_str(b, pos)),
        Some(b'{') => {
            *pos += 1;
            let mut m = Vec::new();
            loop {
                json_ws(b, pos);
                if b[*pos] == b'}' {
                    *pos += 1;
                    return Json::Obj(m);
                }
                if b[*pos] == b',' {
                    *pos += 1;
                    json_ws(b, pos);
                }
                let k = json_str(b, pos);
                json_ws(b, pos);
                assert_eq!(b[*pos], b':', "JSON: ':' expected at {pos}");
                *pos += 1;
                m.push((k, json_value(b, pos)));
            }
        }
        Some(b'[') => {
            *pos += 1;
            let mut a = Vec::new();
            loop {
                json_ws(b, pos);
                if b[*pos] == b']' {
                    *pos += 1;
                    return Json::Arr(a);
                }
                if b[*pos] == b',' {
                    *pos += 1;
                }
                a.push(json_value(b, pos));
            }
        }
        _ => {
            let start = *pos;
            while *pos < b.len() && b"+-.eE0123456789".contains(&b[*pos]) {
                *pos += 1;
            }
            let s = std::str::from_utf8(&b[start..*pos]).expect("ascii");
            Json::Num(
                s.parse()
                    .unwrap_or_else(|_| panic!("JSON: bad number at {start}")),
            )
        }
    }
}

fn json_str(b: &[u8], pos: &mut usize) -> String {
    assert_eq!(b[*pos], b'"', "JSON: string expected at {pos}");
    *pos += 1;
    let mut s = String::new();
    loop {
        let c = b[*pos];
        *pos += 1;
        match c {
            b'"' => return s,
            b'\\' => {
                let e = b[*pos];
                *pos += 1;
                match e {
                    b'u' => {
                        let hex = std::str::from_utf8(&b[*pos..*pos + 4])
                            .expect("ascii");
                        *pos += 4;
                        let n = u32::from_str_radix(hex, 16).expect("hex");
                        s.push(char::from_u32(n).unwrap_or('?'));
                    }
                    b'n' => s.push('\n'),
                    b't' => s.push('\t'),
                    b'r' => s.push('\r'),
                    other => s.push(other as char),
                }
            }
            other => s.push(other as char),
        }
    }
}

/// The report on stdout (the one JSON line; -c output before it is
/// skipped).
fn report_json(out: &Outcome) -> Json {
    let text = out.stdout_text();
    let line = text
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON on stdout\n{}", out.render()));
    Json::parse(line)
}

/// What the server saw, counted as the report counts it: the reply code
/// to every command (banner, HELO, EHLO, LHLO, MAIL, RCPT, DATA,
/// end_of_data, BDAT, RSET, QUIT) from the server's events.
fn server_codes(tr: &Transcript) -> Codes {
    use crate::support::fake_server::Event;
    let mut out = Codes::new();
    for c in &tr.conns {
        let mut pending: Vec<String> = vec!["banner".into()];
        for (_, e) in &c.events {
            match e {
                Event::Client(line) => {
                    let word: String = String::from_utf8_lossy(line)
                        .split([' ', '\r', '\n', ':'])
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    let cmd = match word.as_str() {
                        "." => "end_of_data".to_string(),
                        w => w.to_string(),
                    };
                    pending.push(cmd);
                }
                Event::Server(bytes) => {
                    // One reply per write; a multi-line reply's code is
                    // its last line's.
                    let text = String::from_utf8_lossy(bytes);
                    for reply in replies(&text) {
                        if pending.is_empty() {
                            break;
                        }
                        let cmd = pending.remove(0);
                        *out.entry((cmd, reply)).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The codes of the complete replies in `text`.
fn replies(text: &str) -> Vec<String> {
    text.split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| l[..3].to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// --ehlo

#[test]
fn ehlo_replaces_helo() {
    let (out, tr) = run(&["--ehlo"], esmtp(EHLO_BOTH));
    assert_clean(&out);
    assert_conns(&tr, 1);
    tr.assert_client_sent(
        0,
        format!("{}{}QUIT\r\n", ehlo(), txn("0000")).as_bytes(),
    );
}

#[test]
fn ehlo_keeps_lhlo_under_lmtp() {
    let r = Responder::new().lmtp().on(Verb::Lhlo, EHLO_BOTH);
    let (out, tr) = run(&["--ehlo", "-L"], r);
    assert_clean(&out);
    assert_conns(&tr, 1);
    tr.assert_client_sent(
        0,
        format!("LHLO {HOST}\r\n{}QUIT\r\n", txn("0000")).as_bytes(),
    );
}

// ---------------------------------------------------------------------------
// --pipelining

#[test]
fn pipelined_group_is_one_write() {
    let (out, tr) = run(&["--pipelining", "-r", "3"], esmtp(EHLO_BOTH));
    assert_clean(&out);
    assert_conns(&tr, 1);
    let want =
        format!("{}{}{}.\r\nQUIT\r\n", ehlo(), group(3), content("0000"));
    tr.assert_client_sent(0, want.as_bytes());
    assert_one_read(&tr, 0, &group(3));
}

#[test]
fn pipelined_reuse_sends_dot_with_next_group() {
    let (out, tr) =
        run(&["--pipelining", "-d", "-m", "3", "-c"], esmtp(EHLO_BOTH));
    out.assert_status(0)
        .assert_stdout(b"1\r2\r3\r\n")
        .assert_stderr("");
    assert_conns(&tr, 1);
    assert_eq!(tr.conn(0).data.len(), 3);
    // Exact bytes, the Message-Id counters masked (they have their own
    // test below).
    let want = format!(
        "{}{}{}{}QUIT\r\n",
        ehlo(),
        txn("0002"),
        txn("0001"),
        txn("0000")
    );
    crate::support::assert_bytes_eq(
        "client bytes (Message-Id counters masked)",
        &mask_counters(&want),
        &mask_all(&tr.conn(0).raw),
    );
    // One write each: the first group; each dot with the next group;
    // the last dot alone.
    let dot_and_next = format!("{}.\r\n{}", content("0000"), group(1));
    let reads: Vec<Vec<u8>> =
        tr.conn(0).reads.iter().map(|r| mask_all(r)).collect();
    let want_reads = [
        mask_counters(&group(1)),
        mask_counters(&dot_and_next),
        mask_counters(&dot_and_next),
        mask_counters(&format!("{}.\r\n", content("0000"))),
        b"QUIT\r\n".to_vec(),
    ];
    let shown: String = reads
        .iter()
        .map(|r| format!("  [{}]\n", escape(r)))
        .collect();
    assert!(
        reads.ends_with(&want_reads),
        "reads (counters masked) were:\n{shown}"
    );
}

#[test]
fn pipelined_reuse_message_id_counters_match_lock_step() {
    // The Message-Id counter is the budget after the message's own
    // claim: 2, 1, 0 for -d -m 3, as in lock-step. Taking the next job
    // early (to send its group with the dot) must not shift it.
    let (lock, ltr) = run(&["--ehlo", "-d", "-m", "3"], esmtp(EHLO_BOTH));
    let (out, tr) = run(&["--pipelining", "-d", "-m", "3"], esmtp(EHLO_BOTH));
    assert_clean(&lock);
    assert_clean(&out);
    let want = format!(
        "{}{}{}{}QUIT\r\n",
        ehlo(),
        txn("0002"),
        txn("0001"),
        txn("0000")
    );
    ltr.assert_client_sent(0, want.as_bytes());
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn pipelined_reuse_message_ids_are_distinct() {
    let (out, tr) = run(&["--pipelining", "-d", "-m", "3"], esmtp(EHLO_BOTH));
    assert_clean(&out);
    let ids: Vec<String> = tr
        .conn(0)
        .data
        .iter()
        .filter_map(|d| {
            String::from_utf8_lossy(d)
                .lines()
                .find(|l| l.starts_with("Message-Id:"))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(ids.len(), 3, "{}", tr.render());
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 3, "duplicate Message-Id: {ids:#?}");
}

#[test]
fn pipelined_rejected_rcpt_still_delivers() {
    let r = esmtp(EHLO_BOTH).on_nth(Verb::Rcpt, 0, "550 5.1.1 no such user");
    let (out, tr) = run(&["--pipelining", "-A", "-r", "2"], r);
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&warning("recipient rejected: 550 5.1.1 no such user"));
    assert_conns(&tr, 1);
    let want =
        format!("{}{}{}.\r\nQUIT\r\n", ehlo(), group(2), content("0000"));
    tr.assert_client_sent(0, want.as_bytes());
    assert_one_read(&tr, 0, &group(2));
}

/// All RCPTs rejected and DATA answered `data` (not 354): the DATA reply
/// follows from the rejections, so it is consumed quietly; then RSET.
fn no_recipient_case(data: &str) {
    let r = esmtp(EHLO_BOTH)
        .on(Verb::Rcpt, "550 5.1.1 no such user")
        .on(Verb::Data, data);
    let (out, tr) = run(&["--pipelining", "-A", "-r", "2"], r);
    let w = warning("recipient rejected: 550 5.1.1 no such user");
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&format!("{w}{w}"));
    assert_conns(&tr, 1);
    let want = format!("{}{}RSET\r\nQUIT\r\n", ehlo(), group(2));
    tr.assert_client_sent(0, want.as_bytes());
    assert_one_read(&tr, 0, &group(2));
}

#[test]
fn pipelined_no_recipient_data_554_quiet_then_rset() {
    no_recipient_case("554 5.5.1 Error: no valid recipients");
}

#[test]
fn pipelined_no_recipient_data_503_quiet_then_rset() {
    no_recipient_case("503 5.5.1 Error: need RCPT command");
}

#[test]
fn pipelined_no_recipient_but_354_sends_lone_dot() {
    let r = esmtp(EHLO_BOTH)
        .on(Verb::Rcpt, "550 5.1.1 no such user")
        .on(Verb::Dot, "554 5.5.1 Error: no valid recipients");
    let (out, tr) = run(&["--pipelining", "-A"], r);
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&warning("recipient rejected: 550 5.1.1 no such user"));
    assert_conns(&tr, 1);
    let want = format!("{}{}.\r\nQUIT\r\n", ehlo(), group(1));
    tr.assert_client_sent(0, want.as_bytes());
    assert_eq!(tr.conn(0).data, [Vec::<u8>::new()], "an empty message");
}

#[test]
fn pipelined_rejected_data_then_rset() {
    let r = esmtp(EHLO_BOTH).on(Verb::Data, "451 4.3.0 try again later");
    let (out, tr) = run(&["--pipelining", "-A"], r);
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&warning("data rejected: 451 4.3.0 try again later"));
    assert_conns(&tr, 1);
    let want = format!("{}{}RSET\r\nQUIT\r\n", ehlo(), group(1));
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn pipelined_rejected_mail_quiet_rcpt_and_data_then_rset() {
    let r = esmtp(EHLO_BOTH)
        .on(Verb::Mail, "550 5.7.1 sender rejected")
        .on(Verb::Rcpt, "503 5.5.1 Error: need MAIL command")
        .on(Verb::Data, "503 5.5.1 Error: need RCPT command");
    let (out, tr) = run(&["--pipelining", "-A", "-r", "2"], r);
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&warning("sender rejected: 550 5.7.1 sender rejected"));
    assert_conns(&tr, 1);
    let want = format!("{}{}RSET\r\nQUIT\r\n", ehlo(), group(2));
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn pipelined_421_at_rcpt_closes_without_quit() {
    let r = esmtp(EHLO_BOTH).on_steps(
        Verb::Rcpt,
        vec![Step::send("421 4.3.2 shutting down"), Step::Close],
    );
    let (out, tr) = run(&["--pipelining", "-A", "-r", "2"], r);
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&warning("recipient rejected: 421 4.3.2 shutting down"))
        .assert_elapsed_below(Duration::from_secs(3));
    assert_eq!(tr.len(), 1, "{}", tr.render());
    let want = format!("{}{}", ehlo(), group(2));
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn pipelined_421_at_mail_closes_without_quit() {
    let r = esmtp(EHLO_BOTH).on_steps(
        Verb::Mail,
        vec![Step::send("421 4.3.2 shutting down"), Step::Close],
    );
    let (out, tr) = run(&["--pipelining", "-A", "-r", "2", "-m", "2"], r);
    let w = warning("sender rejected: 421 4.3.2 shutting down");
    // Each message gets its own connection, and each is closed at once.
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&format!("{w}{w}"))
        .assert_elapsed_below(Duration::from_secs(3));
    assert_eq!(tr.len(), 2, "{}", tr.render());
    for i in 0..2 {
        tr.assert_client_sent(i, format!("{}{}", ehlo(), group(2)).as_bytes());
    }
}

#[test]
fn pipelined_reuse_with_w_keeps_dot_and_next_group_apart() {
    // -w: the next message waits, so its group cannot ride on the dot.
    let (out, tr) = run(
        &["--pipelining", "-d", "-m", "2", "-w", "1"],
        esmtp(EHLO_BOTH),
    );
    assert_clean(&out);
    assert_conns(&tr, 1);
    let want = format!("{}{}{}QUIT\r\n", ehlo(), txn("0001"), txn("0000"));
    tr.assert_client_sent(0, want.as_bytes());
    assert_one_read(&tr, 0, &format!("{}.\r\n", content("0001")));
    assert!(
        out.elapsed >= Duration::from_millis(900),
        "{}",
        out.render()
    );
}

#[test]
fn pipelined_reuse_many_sessions_delivers_every_message() {
    let (out, tr) = run(
        &["--pipelining", "-d", "-m", "12", "-s", "3", "-r", "2", "-c"],
        esmtp(EHLO_BOTH),
    );
    out.assert_status(0).assert_stderr("");
    let counted: String = (1..=12).map(|n| format!("{n}\r")).collect();
    out.assert_stdout(format!("{counted}\n").as_bytes());
    let delivered: usize = tr.conns.iter().map(|c| c.data.len()).sum();
    assert_eq!(delivered, 12, "{}", tr.render());
    assert!(tr.len() <= 3, "{}", tr.render());
    for c in &tr.conns {
        let text = String::from_utf8_lossy(&c.raw).into_owned();
        assert_eq!(text.matches("MAIL FROM:").count(), c.data.len());
        assert_eq!(text.matches("RCPT TO:").count(), 2 * c.data.len());
        assert!(text.ends_with(".\r\nQUIT\r\n"), "{}", escape(&c.raw));
        assert!(!text.contains("RSET"));
    }
}

/// Without -A the first rejection in a group is fatal with the text
/// lock-step prints.
#[test]
fn pipelined_rejection_without_a_is_fatal_like_lock_step() {
    let r = || esmtp(EHLO_BOTH).on_nth(Verb::Rcpt, 1, "550 5.1.1 nobody");
    let (lock, _) = run(&["--ehlo", "-r", "2"], r());
    let (out, tr) = run(&["--pipelining", "-r", "2"], r());
    let fatal =
        format!("{ARGV0}: fatal: recipient rejected: 550 5.1.1 nobody\n");
    lock.assert_status(1)
        .assert_stdout(b"")
        .assert_stderr(&fatal);
    out.assert_status(1)
        .assert_stdout(b"")
        .assert_stderr(&fatal);
    tr.assert_client_sent(0, format!("{}{}", ehlo(), group(2)).as_bytes());
}

#[test]
fn no_pipelining_offered_is_lock_step_with_ehlo() {
    let (plain, ptr) = run(&[], Responder::new());
    let (out, tr) = run(&["--pipelining"], Responder::new());
    assert_clean(&plain);
    assert_clean(&out);
    assert_conns(&tr, 1);
    let want = format!("{}{}QUIT\r\n", ehlo(), txn("0000"));
    tr.assert_client_sent(0, want.as_bytes());
    // The same bytes as the default run, with EHLO for HELO.
    let default = crate::support::fake_server::mask(&ptr.conn(0).raw);
    let default =
        String::from_utf8_lossy(&default).replacen(&helo(), &ehlo(), 1);
    tr.assert_client_sent(0, default.as_bytes());
    // Lock-step: nothing was written before its predecessor's reply.
    assert!(
        tr.conn(0)
            .reads
            .iter()
            .all(|r| !escape(r).contains("\\r\\nRCPT")),
        "{:?}",
        tr.conn(0).reads
    );
}

#[test]
fn no_pipelining_offered_says_so_under_v() {
    let (out, tr) = run(&["--pipelining", "-v"], Responder::new());
    out.assert_status(0);
    let err = out.stderr_text();
    let line = format!(
        "{ARGV0}: server does not offer PIPELINING; using lock-step\n"
    );
    assert_eq!(err.matches(&line).count(), 1, "{}", out.render());
    assert_conns(&tr, 1);
}

// ---------------------------------------------------------------------------
// --chunking

/// `BDAT <n> LAST` and `content` (masked bytes). `n` is the length of
/// the real content, Date included: pass the chunk length the server
/// read, checked against the content separately ([`assert_chunk`]).
fn bdat(n: usize, content: &str) -> String {
    format!("BDAT {n} LAST\r\n{content}")
}

/// The length of chunk `k` the server read on connection `i`, after
/// checking that its masked bytes are `content` exactly.
fn assert_chunk(tr: &Transcript, i: usize, k: usize, content: &str) -> usize {
    let data = &tr.conn(i).data;
    assert!(data.len() > k, "no chunk {k}:\n{}", tr.render());
    crate::support::assert_bytes_eq(
        &format!("BDAT chunk {k} (masked)"),
        &crate::support::fake_server::mask(content.as_bytes()),
        &crate::support::fake_server::mask(&data[k]),
    );
    // Masking only ever replaces the Date value: the real length is the
    // expected one with the real Date in place of <DATE>.
    if !content.contains("<DATE>") {
        assert_eq!(data[k].len(), content.len());
    }
    data[k].len()
}

/// A one-message --chunking run: the transcript is EHLO, MAIL, RCPT,
/// `BDAT n LAST` + exactly `content`, QUIT; the server read `content`.
fn chunking_case(args: &[&str], content: &str) -> Transcript {
    let mut all = vec!["--chunking"];
    all.extend_from_slice(args);
    let (out, tr) = run(&all, esmtp(EHLO_CHUNKING));
    assert_clean(&out);
    assert_conns(&tr, 1);
    assert_eq!(tr.conn(0).data.len(), 1, "{}", tr.render());
    let n = assert_chunk(&tr, 0, 0, content);
    let want = format!(
        "{}MAIL FROM:<{}>\r\n{}{}QUIT\r\n",
        ehlo(),
        foo(),
        rcpts(1),
        bdat(n, content)
    );
    tr.assert_client_sent(0, want.as_bytes());
    tr
}

#[test]
fn chunking_default_body() {
    let c = content("0000");
    let tr = chunking_case(&[], &c);
    let n = tr.conn(0).data[0].len();
    assert_one_read(&tr, 0, &bdat(n, &c));
}

#[test]
fn chunking_length_200() {
    let x77 = "X".repeat(77);
    let body = format!("1{x77}\r\n2{x77}\r\n{}\r\n", "X".repeat(40));
    chunking_case(&["-l", "200"], &format!("{}{body}", headers("0000")));
}

#[test]
fn chunking_file_with_leading_dots_is_not_stuffed() {
    let dir = TempDir::new("ext-chunk");
    let f =
        write_file(&dir, "msg", b"Subject: dots\n\n.one\n..two\nthree\n.\n");
    // -F: no generated headers; lines end in CRLF, one more CRLF at the
    // end; leading dots go as they are (RFC 3030 §2).
    chunking_case(
        &["-F", &f],
        "Subject: dots\r\n\r\n.one\r\n..two\r\nthree\r\n.\r\n\r\n",
    );
}

#[test]
fn chunking_pipelined_envelope_first_then_one_write_per_message() {
    // A BDAT chunk joins the MAIL/RCPT group only once the server has
    // accepted a MAIL on this connection: the first envelope goes alone.
    let (out, tr) = run(
        &["--chunking", "--pipelining", "-r", "2", "-d", "-m", "2"],
        esmtp(EHLO_BOTH),
    );
    assert_clean(&out);
    assert_conns(&tr, 1);
    let envelope = format!("MAIL FROM:<{}>\r\n{}", foo(), rcpts(2));
    let n0 = assert_chunk(&tr, 0, 0, &content("0001"));
    let n1 = assert_chunk(&tr, 0, 1, &content("0000"));
    let first = format!("{envelope}{}", bdat(n0, &content("0001")));
    let second = format!("{envelope}{}", bdat(n1, &content("0000")));
    tr.assert_client_sent(
        0,
        format!("{}{first}{second}QUIT\r\n", ehlo()).as_bytes(),
    );
    assert_one_read(&tr, 0, &envelope);
    assert_one_read(&tr, 0, &second);
}

#[test]
fn chunking_pipelined_reuse_m2() {
    let (out, tr) = run(
        &["--chunking", "--pipelining", "-d", "-m", "2"],
        esmtp(EHLO_BOTH),
    );
    assert_clean(&out);
    assert_conns(&tr, 1);
    assert_eq!(tr.conn(0).data.len(), 2);
    let g = |k: usize, cnt: &str| {
        let n = assert_chunk(&tr, 0, k, &content(cnt));
        format!(
            "MAIL FROM:<{}>\r\n{}{}",
            foo(),
            rcpts(1),
            bdat(n, &content(cnt))
        )
    };
    let want = format!("{}{}{}QUIT\r\n", ehlo(), g(0, "0001"), g(1, "0000"));
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn chunking_lmtp_two_recipients_two_replies() {
    let r = Responder::new().lmtp().on(Verb::Lhlo, EHLO_CHUNKING);
    let (out, tr) = run(&["--chunking", "-L", "-r", "2"], r);
    assert_clean(&out);
    assert_conns(&tr, 1);
    let n = assert_chunk(&tr, 0, 0, &content("0000"));
    let want = format!(
        "LHLO {HOST}\r\nMAIL FROM:<{}>\r\n{}{}QUIT\r\n",
        foo(),
        rcpts(2),
        bdat(n, &content("0000"))
    );
    tr.assert_client_sent(0, want.as_bytes());
    let said =
        String::from_utf8_lossy(&tr.conn(0).server_bytes()).into_owned();
    assert_eq!(said.matches("Ok: queued").count(), 2, "{said}");
    // QUIT came after both replies.
    assert!(said.ends_with("221 2.0.0 Bye\r\n"), "{said}");
}

#[test]
fn chunking_lmtp_pipelined_one_rejected() {
    let r = Responder::new().lmtp().on(Verb::Lhlo, EHLO_BOTH).on_nth(
        Verb::Rcpt,
        0,
        "550 5.1.1 unknown",
    );
    let (out, tr) =
        run(&["--chunking", "--pipelining", "-L", "-A", "-r", "2"], r);
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&warning("recipient rejected: 550 5.1.1 unknown"));
    assert_conns(&tr, 1);
    let n = assert_chunk(&tr, 0, 0, &content("0000"));
    let want = format!(
        "LHLO {HOST}\r\nMAIL FROM:<{}>\r\n{}{}QUIT\r\n",
        foo(),
        rcpts(2),
        bdat(n, &content("0000"))
    );
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn no_chunking_offered_uses_data() {
    let (out, tr) = run(&["--chunking"], esmtp(EHLO_PIPELINING));
    assert_clean(&out);
    assert_conns(&tr, 1);
    let want = format!("{}{}QUIT\r\n", ehlo(), txn("0000"));
    tr.assert_client_sent(0, want.as_bytes());
}

#[test]
fn no_chunking_offered_says_so_under_v() {
    let (out, _) = run(&["--chunking", "-v"], Responder::new());
    out.assert_status(0);
    let line =
        format!("{ARGV0}: server does not offer CHUNKING; using lock-step\n");
    assert_eq!(
        out.stderr_text().matches(&line).count(),
        1,
        "{}",
        out.render()
    );
}

// ---------------------------------------------------------------------------
// Refused BDAT chunks, refused envelopes, fallback notes

/// An envelope: MAIL and `r` RCPTs.
fn envelope(r: usize) -> String {
    format!("MAIL FROM:<{}>\r\n{}", foo(), rcpts(r))
}

#[test]
fn chunking_lock_step_refused_bdat_then_rset() {
    // The server refuses the first chunk after accepting the envelope:
    // the transaction is reset before the next MAIL (a server may keep
    // the envelope of a refused chunk and refuse every later MAIL).
    let r = esmtp(EHLO_CHUNKING).on_nth(Verb::Bdat, 0, "550 5.7.1 no thanks");
    let (out, tr) = run(&["--chunking", "-A", "-d", "-m", "2"], r);
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&warning("end of data rejected: 550 5.7.1 no thanks"));
    assert_conns(&tr, 1);
    let n0 = assert_chunk(&tr, 0, 0, &content("0001"));
    let n1 = assert_chunk(&tr, 0, 1, &content("0000"));
    let want = format!(
        "{}{}{}RSET\r\n{}{}QUIT\r\n",
        ehlo(),
        envelope(1),
        bdat(n0, &content("0001")),
        envelope(1),
        bdat(n1, &content("0000")),
    );
    tr.assert_client_sent(0, want.as_bytes());
}

/// LMTP, pipelined, chunked, -d -m 3: every RCPT refused with 550, and
/// a BDAT chunk with no valid recipient answered 503.
fn lmtp_all_refused(extra: &[&str]) -> (Outcome, Transcript) {
    let r = Responder::new()
        .lmtp()
        .on(Verb::Lhlo, EHLO_BOTH)
        .on(Verb::Rcpt, "550 5.1.1 unknown")
        .on(Verb::Bdat, "503 5.5.1 No valid recipients");
    let mut args = vec!["--pipelining", "--chunking", "-L", "-A", "-d"];
    args.extend_from_slice(&["-m", "3"]);
    args.extend_from_slice(extra);
    run(&args, r)
}

#[test]
fn chunking_lmtp_pipelined_refused_rcpt_then_rset_every_time() {
    // The first envelope goes alone (no MAIL accepted yet on this
    // connection), so no chunk follows its refused RCPT. Later groups
    // carry the chunk; its 503 follows from the refused RCPT and is
    // taken quietly, and RSET clears the transaction each time.
    let (out, tr) = lmtp_all_refused(&[]);
    let w = warning("recipient rejected: 550 5.1.1 unknown");
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&w.repeat(3));
    assert_conns(&tr, 1);
    let verbs: Vec<String> = tr
        .conn(0)
        .commands()
        .iter()
        .map(|c| c.split(' ').next().unwrap_or("").to_string())
        .collect();
    let verbs = verbs.join(" ");
    assert_eq!(
        verbs,
        "LHLO MAIL RCPT RSET MAIL RCPT BDAT RSET MAIL RCPT BDAT RSET QUIT"
    );
    let n0 = assert_chunk(&tr, 0, 0, &content("0001"));
    let n1 = assert_chunk(&tr, 0, 1, &content("0000"));
    let want = format!(
        "LHLO {HOST}\r\n{}RSET\r\n{}{}RSET\r\n{}{}RSET\r\nQUIT\r\n",
        envelope(1),
        envelope(1),
        bdat(n0, &content("0001")),
        envelope(1),
        bdat(n1, &content("0000")),
    );
    tr.assert_client_sent(0, want.as_bytes());
    let said =
        String::from_utf8_lossy(&tr.conn(0).server_bytes()).into_owned();
    assert_eq!(said.matches("503 5.5.1").count(), 2, "{said}");
}

#[test]
fn chunking_lmtp_pipelined_refused_rcpt_report_counts() {
    let (out, tr) = lmtp_all_refused(&["--report=json"]);
    let w = warning("recipient rejected: 550 5.1.1 unknown");
    out.assert_status(0).assert_stderr(&w.repeat(3));
    assert_conns(&tr, 1);
    let j = report_json(&out);
    assert_report_matches_server(&j, &tr, 3);
    assert_eq!(j.int("messages/rejected"), 3);
    assert_eq!(j.int("messages/accepted"), 0);
    assert_eq!(j.int("messages/failed"), 0);
    assert_eq!(j.int("recipients/accepted"), 0);
    // Each transaction was reset; the two chunks were refused.
    let codes = j.codes();
    let code =
        |cmd: &str, c: &str| codes.get(&(cmd.into(), c.into())).copied();
    assert_eq!(code("RSET", "250"), Some(3), "{codes:?}");
    assert_eq!(code("BDAT", "503"), Some(2), "{codes:?}");
}

#[test]
fn chunking_pipelined_552_after_accepted_rcpts_then_rset() {
    // The envelope was accepted, the chunk refused for its size: RSET
    // before the next transaction, whose group then carries its chunk.
    let r = esmtp(EHLO_BOTH).on_nth(
        Verb::Bdat,
        0,
        "552 5.3.4 Message size exceeds fixed limit",
    );
    let (out, tr) = run(
        &[
            "--pipelining",
            "--chunking",
            "-A",
            "-r",
            "2",
            "-d",
            "-m",
            "2",
        ],
        r,
    );
    out.assert_status(0)
        .assert_stdout(b"")
        .assert_stderr(&warning(
            "end of data rejected: 552 5.3.4 Message size exceeds fixed limit",
        ));
    assert_conns(&tr, 1);
    let n0 = assert_chunk(&tr, 0, 0, &content("0001"));
    let n1 = assert_chunk(&tr, 0, 1, &content("0000"));
    let second = format!("{}{}", envelope(2), bdat(n1, &content("0000")));
    let want = format!(
        "{}{}{}RSET\r\n{second}QUIT\r\n",
        ehlo(),
        envelope(2),
        bdat(n0, &content("0001")),
    );
    tr.assert_client_sent(0, want.as_bytes());
    assert_one_read(&tr, 0, &second);
}

/// Postfix with TLS required, before STARTTLS: 530 to MAIL, 530 to the
/// first RCPT, then the connection closes.
fn tls_required() -> Responder {
    const NEED_TLS: &str = "530 5.7.0 Must issue a STARTTLS command first";
    esmtp(EHLO_BOTH).on(Verb::Mail, NEED_TLS).rule(
        crate::support::fake_server::Rule {
            verb: Verb::Rcpt,
            conn: None,
            nth: Some(0),
            steps: vec![Step::send(NEED_TLS), Step::Close],
        },
    )
}

/// The envelope of a refused MAIL went out alone: no BDAT chunk behind
/// it for the server to read as commands.
fn assert_envelope_alone(tr: &Transcript) {
    assert_eq!(tr.len(), 1, "{}", tr.render());
    tr.assert_client_sent(0, format!("{}{}", ehlo(), envelope(2)).as_bytes());
    assert_one_read(tr, 0, &envelope(2));
    assert!(tr.conn(0).data.is_empty(), "{}", tr.render());
}

#[test]
fn chunking_pipelined_530_to_mail_is_fatal_without_a() {
    let (out, tr) =
        run(&["--pipelining", "--chunking", "-r", "2"], tls_required());
    out.assert_status(1)
        .assert_stdout(b"")
        .assert_stderr(&format!(
            "{ARGV0}: fatal: sender rejected: \
         530 5.7.0 Must issue a STARTTLS command first\n"
        ));
    assert_envelope_alone(&tr);
}

#[test]
fn chunking_pipelined_530_then_close_names_stage_and_reply_under_a() {
    // Under -A the refused MAIL is a warning; the connection then ends
    // while a RCPT reply is awaited, and the fatal error carries the
    // refusal the server gave before it went.
    let (out, tr) = run(
        &["--pipelining", "--chunking", "-A", "-r", "2"],
        tls_required(),
    );
    let said = "530 5.7.0 Must issue a STARTTLS command first";
    out.assert_status(1)
        .assert_stdout(b"")
        .assert_stderr(&format!(
            "{}{ARGV0}: fatal: lost connection while sending recipient \
         (server said: {said})\n",
            warning(&format!("sender rejected: {said}")),
        ));
    assert_envelope_alone(&tr);
}

#[test]
fn no_pipelining_and_no_chunking_offered_both_noted_under_v() {
    let (out, tr) = run(
        &["--pipelining", "--chunking", "-v", "-d", "-m", "2"],
        Responder::new(),
    );
    let f = foo();
    let one = [
        format!("MAIL FROM:<{f}>"),
        "<<< 250 2.1.0 Ok".into(),
        format!("RCPT TO:<{f}>"),
        "<<< 250 2.1.5 Ok".into(),
        "DATA".into(),
        "<<< 354 End data with <CR><LF>.<CR><LF>".into(),
        ".".into(),
        "<<< 250 2.0.0 Ok: queued".into(),
    ];
    let mut lines = vec![
        "<<< 220 fake.example ESMTP fake".to_string(),
        format!("EHLO {HOST}"),
        "<<< 250 fake.example".into(),
        "server does not offer PIPELINING; using lock-step".into(),
        "server does not offer CHUNKING; using lock-step".into(),
    ];
    lines.extend_from_slice(&one);
    lines.extend_from_slice(&one);
    lines.extend(["QUIT".into(), "<<< 221 2.0.0 Bye".into()]);
    let want: String =
        lines.iter().map(|l| format!("{ARGV0}: {l}\n")).collect();
    out.assert_status(0).assert_stdout(b"").assert_stderr(&want);
    assert_conns(&tr, 1);
    let want = format!("{}{}{}QUIT\r\n", ehlo(), txn("0001"), txn("0000"));
    tr.assert_client_sent(0, want.as_bytes());
}

// ---------------------------------------------------------------------------
// --report, --report-file

/// Assert the report's counters equal what the server saw.
fn assert_report_matches_server(j: &Json, tr: &Transcript, messages: u64) {
    assert_report_matches_server_but(j, tr, messages, 0);
}

/// Likewise, where `empty` messages had no accepted recipient but still
/// got a 2xx end reply (a BDAT that only confirms an empty message): the
/// report counts those as rejected, not accepted.
fn assert_report_matches_server_but(
    j: &Json,
    tr: &Transcript,
    messages: u64,
    empty: u64,
) {
    let raw: usize = tr.conns.iter().map(|c| c.raw.len()).sum();
    let commands = |verb: &str| -> u64 {
        tr.conns
            .iter()
            .flat_map(|c| c.commands())
            .filter(|c| c.starts_with(verb))
            .count() as u64
    };
    let codes = server_codes(tr);
    let seen = j.codes();
    assert_eq!(seen, codes, "reply_codes (left: report, right: server)");
    let count = |cmd: &str, pred: &dyn Fn(&str) -> bool| -> u64 {
        codes
            .iter()
            .filter(|((c, code), _)| c == cmd && pred(code))
            .map(|(_, n)| n)
            .sum()
    };
    let ok = |c: &str| c.starts_with('2');
    assert_eq!(j.int("bytes_sent"), raw as u64, "bytes_sent");
    assert_eq!(j.int("connections"), tr.len() as u64, "connections");
    assert_eq!(j.int("messages/attempted"), messages, "attempted");
    assert_eq!(j.int("recipients/sent"), commands("RCPT"), "rcpt sent");
    assert_eq!(
        j.int("recipients/accepted"),
        count("RCPT", &ok),
        "rcpt accepted"
    );
    let delivered = count("end_of_data", &ok) + count("BDAT", &ok) - empty;
    assert_eq!(j.int("messages/accepted"), delivered, "accepted");
    assert_eq!(
        j.int("messages/accepted")
            + j.int("messages/rejected")
            + j.int("messages/failed"),
        messages,
        "every attempted message has one fate"
    );
    assert_eq!(j.at("completed"), &Json::Bool(true));
    assert_eq!(j.at("fatal"), &Json::Null);
}

#[test]
fn report_json_counts_equal_server_lock_step() {
    // Connection i carries message i: 0 fine, 1 one RCPT rejected, 2 MAIL
    // rejected, 3 all RCPTs rejected, 4 DATA rejected, 5 end of data
    // rejected.
    let r = Responder::new()
        .on_conn(1, Verb::Rcpt, vec![Step::send("550 5.1.1 a")])
        .rule(crate::support::fake_server::Rule {
            verb: Verb::Rcpt,
            conn: Some(1),
            nth: Some(1),
            steps: vec![Step::send("250 2.1.5 Ok")],
        })
        .on_conn(2, Verb::Mail, vec![Step::send("550 5.7.1 b")])
        .on_conn(3, Verb::Rcpt, vec![Step::send("550 5.1.1 c")])
        .on_conn(4, Verb::Data, vec![Step::send("554 5.5.1 d")])
        .on_conn(5, Verb::Dot, vec![Step::send("552 5.3.4 e")]);
    let (out, tr) = run(&["-A", "-r", "2", "-m", "6", "--report=json"], r);
    out.assert_status(0);
    assert_conns(&tr, 6);
    let j = report_json(&out);
    assert_report_matches_server(&j, &tr, 6);
    assert_eq!(j.int("messages/accepted"), 2);
    assert_eq!(j.int("messages/rejected"), 4);
    assert_eq!(j.int("messages/failed"), 0);
    assert_eq!(j.int("recipients/sent"), 10);
    assert_eq!(j.int("recipients/accepted"), 7);
}

#[test]
fn report_json_counts_equal_server_pipelined() {
    // Connection i carries message i: 0 fine, 1 one RCPT rejected, 2 all
    // RCPTs rejected (DATA 554, RSET), 3 MAIL rejected, 4 all RCPTs
    // rejected but DATA 354 (lone dot), 5 DATA rejected.
    let r = esmtp(EHLO_BOTH)
        .rule(crate::support::fake_server::Rule {
            verb: Verb::Rcpt,
            conn: Some(1),
            nth: Some(0),
            steps: vec![Step::send("550 5.1.1 a")],
        })
        .on_conn(2, Verb::Rcpt, vec![Step::send("550 5.1.1 b")])
        .on_conn(2, Verb::Data, vec![Step::send("554 5.5.1 no rcpt")])
        .on_conn(3, Verb::Mail, vec![Step::send("550 5.7.1 c")])
        .on_conn(3, Verb::Rcpt, vec![Step::send("503 5.5.1 need MAIL")])
        .on_conn(3, Verb::Data, vec![Step::send("503 5.5.1 need RCPT")])
        .on_conn(4, Verb::Rcpt, vec![Step::send("550 5.1.1 d")])
        .on_conn(4, Verb::Dot, vec![Step::send("554 5.5.1 no rcpt")])
        .on_conn(5, Verb::Data, vec![Step::send("451 4.3.0 e")]);
    let (out, tr) = run(
        &["--pipelining", "-A", "-r", "2", "-m", "6", "--report=json"],
        r,
    );
    out.assert_status(0);
    assert_conns(&tr, 6);
    let j = report_json(&out);
    assert_report_matches_server(&j, &tr, 6);
    assert_eq!(j.int("messages/accepted"), 2);
    assert_eq!(j.int("messages/rejected"), 4);
    assert_eq!(j.int("recipients/accepted"), 5);
}

#[test]
fn report_json_counts_equal_server_chunking_reuse() {
    // One connection, four messages; the third one's only RCPT is
    // rejected, so its BDAT reply confirms an empty message.
    let r = esmtp(EHLO_BOTH).on_nth(Verb::Rcpt, 2, "550 5.1.1 third");
    let (out, tr) = run(
        &[
            "--chunking",
            "--pipelining",
            "-A",
            "-d",
            "-m",
            "4",
            "--report=json",
        ],
        r,
    );
    out.assert_status(0);
    let j = report_json(&out);
    assert_report_matches_server_but(&j, &tr, 4, 1);
    assert_eq!(j.int("messages/rejected"), 1, "the empty message");
}

#[test]
fn report_json_counts_equal_server_chunking_fallback() {
    // --chunking without CHUNKING offered: the message goes with DATA, so
    // its final reply is an end_of_data reply, not a BDAT one.
    let (out, tr) = run(&["--chunking", "--report=json"], Responder::new());
    out.assert_status(0).assert_stderr("");
    assert_conns(&tr, 1);
    let j = report_json(&out);
    assert_report_matches_server(&j, &tr, 1);
}

#[test]
fn report_json_shape() {
    let (out, tr) = run(&["--report=json"], Responder::new());
    out.assert_status(0).assert_stderr("");
    assert_conns(&tr, 1);
    let text = out.stdout_text();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let j = report_json(&out);
    assert_eq!(
        j.keys(),
        [
            "version",
            "start",
            "elapsed_seconds",
            "completed",
            "fatal",
            "interrupted",
            "messages",
            "recipients",
            "bytes_sent",
            "connections",
            "messages_per_second",
            "tls",
            "reply_codes",
            "errors",
            "esmtp",
            "latency_ms",
            "schedule",
            "thresholds",
            "capacity",
            "size_classes",
            // Added for smtp-report merge (still version 1).
            "shard",
            "interrupted_shards",
            // What the run was (for smtp-report html).
            "run",
            "start_unix",
            "end_unix",
            "histograms",
            "intervals"
        ]
    );
    assert_eq!(j.int("version"), 1);
    assert_eq!(j.at("schedule"), &Json::Null);
    // Without --size-mix there are no classes.
    assert_eq!(j.at("size_classes"), &Json::Arr(Vec::new()));
    assert_eq!(j.at("shard"), &Json::Null);
    assert_eq!(j.at("interrupted"), &Json::Null);
    assert_eq!(j.at("interrupted_shards"), &Json::Arr(Vec::new()));
    assert_eq!(j.at("histograms").keys(), j.at("latency_ms").keys());
    let elapsed = j.num("end_unix") - j.num("start_unix");
    assert!(
        (elapsed - j.num("elapsed_seconds")).abs() < 2e-6,
        "{elapsed}"
    );
    let Json::Arr(intervals) = j.at("intervals") else {
        panic!("intervals")
    };
    assert_eq!(intervals.len(), 1, "a run shorter than a second");
    assert_eq!(
        intervals[0].keys(),
        [
            "start_unix",
            "seconds",
            "accepted",
            "rate",
            "target_rate",
            "rejected",
            "errors",
            "histogram"
        ]
    );
    assert_eq!(intervals[0].int("accepted"), 1);
    assert_eq!(intervals[0].int("rejected"), 0);
    assert_eq!(intervals[0].at("errors").keys(), Vec::<String>::new());
    assert_eq!(
        j.at("run").keys(),
        ["command_line", "target", "host", "version", "end"]
    );
    assert_eq!(
        j.at("latency_ms").keys(),
        [
            "connect",
            "banner",
            "helo",
            "tls_handshake",
            "auth",
            "mail",
            "rcpt",
            "data",
            "end_of_data",
            "quit",
            "transaction"
        ]
    );
    assert_eq!(
        j.at("errors").keys(),
        [
            "refused",
            "reset",
            "timeout",
            "lost_connection",
            "tls",
            "auth",
            "unreachable",
            "smtputf8"
        ]
    );
    assert_eq!(j.at("esmtp").keys(), ["params", "refusals"]);
    for phase in j.at("latency_ms").keys() {
        let h = j.at("latency_ms").at(&phase);
        if phase == "tls_handshake" || phase == "auth" {
            // No TLS and no AUTH in this run.
            assert_eq!(h.keys(), ["count"], "{phase}");
            assert_eq!(h.int("count"), 0, "{phase}");
            continue;
        }
        assert_eq!(h.int("count"), 1, "{phase}");
        assert_eq!(
            h.keys(),
            ["count", "min", "p50", "p90", "p99", "p99_9", "max"],
            "{phase}"
        );
        assert!(h.num("min") <= h.num("p50") && h.num("p50") <= h.num("max"));
    }
    let Json::Str(start) = j.at("start") else {
        panic!("start")
    };
    assert!(start.ends_with('Z') && start.len() == 24, "{start}");
    assert_report_matches_server(&j, &tr, 1);
}

#[test]
fn report_percentiles_from_known_delays() {
    let r = Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(100), Step::send("250 2.0.0 Ok: queued")],
    );
    let (out, tr) = run(&["-s", "4", "-m", "20", "--report=json"], r);
    out.assert_status(0).assert_stderr("");
    assert_conns(&tr, 20);
    let j = report_json(&out);
    let eod = j.at("latency_ms/end_of_data");
    assert_eq!(eod.int("count"), 20);
    let p50 = eod.num("p50");
    assert!((95.0..=200.0).contains(&p50), "end_of_data p50 {p50}");
    assert!(eod.num("max") >= 100.0, "max {}", eod.num("max"));
    assert!(eod.num("min") >= 95.0, "min {}", eod.num("min"));
    // A transaction includes its end of data.
    let txn = j.at("latency_ms/transaction");
    assert_eq!(txn.int("count"), 20);
    assert!(txn.num("p50") >= p50, "transaction p50 {}", txn.num("p50"));
    // The other phases are fast on loopback.
    assert!(j.num("latency_ms/mail/p50") < 95.0);
}

#[test]
fn report_text_lines() {
    let r = Responder::new().on_nth(Verb::Rcpt, 1, "550 5.1.1 no");
    let (out, tr) = run(&["-A", "-r", "2", "--report"], r);
    out.assert_status(0)
        .assert_stderr(&warning("recipient rejected: 550 5.1.1 no"));
    assert_conns(&tr, 1);
    let text = out.stdout_text();
    let bytes = tr.conn(0).raw.len();
    for want in [
        format!(
            "smtp-source report\ncommand:      smtp-source -M {HOST} -A -r 2 \
             --report 127.0.0.1:"
        ),
        "\ntarget:       127.0.0.1:".to_string(),
        "\nend:          20".to_string(),
        "messages:     1 attempted, 1 accepted, 0 rejected, 0 failed, \
         0 unknown\n"
            .to_string(),
        "recipients:   2 sent, 1 accepted, 1 rejected, 0 failed, 0 unknown\n"
            .to_string(),
        format!("bytes sent:   {bytes}\n"),
        "connections:  1\n".to_string(),
        "errors:       0 refused, 0 reset, 0 timeout, 0 lost connection, \
         0 tls, 0 auth, 0 unreachable, 0 smtputf8\n"
            .to_string(),
        "reply codes:  DATA 354=1 HELO 250=1 MAIL 250=1 QUIT 221=1 \
         RCPT 250=1 RCPT 550=1 banner 220=1 end_of_data 250=1\n"
            .to_string(),
        "latency ms          count       min       p50       p90       p99     \
         p99.9       max\n"
            .to_string(),
    ] {
        assert!(text.contains(&want), "missing [{want}] in:\n{text}");
    }
    assert!(text.starts_with("smtp-source report\n"), "{text}");
    for phase in ["connect", "banner", "helo", "mail", "rcpt", "data"] {
        let row = format!("\n  {phase:<13} ");
        assert!(text.contains(&row), "no {phase} row in:\n{text}");
    }
    assert!(text.contains("\n  end_of_data           1 "), "{text}");
    assert!(text.contains("\n  transaction           1 "), "{text}");
    assert!(!text.contains("schedule:"), "{text}");
}

#[test]
fn report_after_count_newline() {
    let (out, _) = run(&["-c", "-m", "2", "--report=json"], Responder::new());
    out.assert_status(0).assert_stderr("");
    let text = out.stdout_text();
    assert!(text.starts_with("1\r2\r\n{\"version\":1,"), "{text:?}");
    assert!(text.ends_with("}\n"), "{text:?}");
}

#[test]
fn report_file_gets_the_json() {
    let dir = TempDir::new("ext-report");
    let path = dir.path().join("r.json");
    let arg = format!("--report-file={}", path.display());
    let (out, tr) = run(&["-m", "2", &arg], Responder::new());
    assert_clean(&out);
    let text = std::fs::read_to_string(&path).expect("report file");
    assert!(text.ends_with("}\n"), "{text}");
    let j = Json::parse(&text);
    assert_report_matches_server(&j, &tr, 2);
    assert_eq!(j.int("messages/accepted"), 2);
}

#[test]
fn report_file_and_text_report_together() {
    let dir = TempDir::new("ext-report2");
    let path = dir.path().join("r.json");
    let arg = format!("--report-file={}", path.display());
    let (out, _) = run(&["--report=text", &arg], Responder::new());
    out.assert_status(0).assert_stderr("");
    assert!(out.stdout_text().starts_with("smtp-source report\n"));
    let j = Json::parse(&std::fs::read_to_string(&path).expect("file"));
    assert_eq!(j.int("messages/accepted"), 1);
}

#[test]
fn fatal_error_still_reports() {
    let r = Responder::new().on(Verb::Mail, "550 5.7.1 go away");
    let (out, tr) = run(&["-m", "3", "--report=json"], r);
    let fatal = "sender rejected: 550 5.7.1 go away";
    out.assert_status(1)
        .assert_stderr(&format!("{ARGV0}: fatal: {fatal}\n"));
    assert_eq!(tr.len(), 1);
    let j = report_json(&out);
    assert_eq!(j.at("completed"), &Json::Bool(false));
    assert_eq!(j.at("fatal"), &Json::Str(fatal.into()));
    assert_eq!(j.int("messages/attempted"), 1);
    assert_eq!(j.int("messages/accepted"), 0);
    assert_eq!(j.int("connections"), 1);
    assert_eq!(j.int("bytes_sent"), tr.conn(0).raw.len() as u64);
}

#[test]
fn fatal_connect_error_reports_refused() {
    let port = crate::support::RefusingPort::new();
    let out = ours()
        .cmd()
        .args(["--report=json", &port.endpoint()])
        .timeout(LIMIT)
        .run();
    out.assert_status(1);
    assert!(
        out.stderr_text()
            .starts_with(&format!("{ARGV0}: fatal: connect")),
        "{}",
        out.render()
    );
    let j = report_json(&out);
    assert_eq!(j.at("completed"), &Json::Bool(false));
    assert_eq!(j.int("errors/refused"), 1);
    assert_eq!(j.int("messages/failed"), 1);
}

// ---------------------------------------------------------------------------
// --hlog

#[test]
fn hlog_header_and_intervals() {
    let dir = TempDir::new("ext-hlog");
    let path = dir.path().join("t.hlog");
    let arg = format!("--hlog={}", path.display());
    // Six arrivals at 2/s: about 2.5 s.
    let (out, tr) = run(&["-m", "6", "--rate=2", &arg], Responder::new());
    assert_clean(&out);
    assert_eq!(tr.len(), 6);
    assert!(
        out.elapsed >= Duration::from_millis(2300),
        "{}",
        out.render()
    );
    let text = std::fs::read_to_string(&path).expect("hlog file");
    assert!(text.contains("#[StartTime: "), "{text}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("\"StartTimestamp"))
        .collect();
    assert!(lines.len() >= 2, "interval lines: {text}");
    for l in &lines {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 4, "{l}");
        for n in &f[..3] {
            n.parse::<f64>().unwrap_or_else(|_| panic!("{l}"));
        }
        assert!(f[3].starts_with("HISTF"), "{l}");
    }
}

// ---------------------------------------------------------------------------
// --rate, --arrival

#[test]
fn rate_20_for_20_messages_takes_a_second() {
    let (out, tr) = run(
        &["-m", "20", "-s", "4", "--rate=20", "--report=json"],
        Responder::new(),
    );
    out.assert_status(0).assert_stderr("");
    assert_eq!(tr.len(), 20);
    let secs = out.elapsed.as_secs_f64();
    assert!((0.8..3.0).contains(&secs), "took {secs} s");
    let j = report_json(&out);
    assert_eq!(j.num("schedule/rate"), 20.0);
    assert_eq!(j.at("schedule/arrival"), &Json::Str("uniform".into()));
    assert_eq!(j.int("messages/accepted"), 20);
}

#[test]
fn rate_poisson_arrivals() {
    let (out, tr) = run(
        &[
            "-m",
            "10",
            "-s",
            "2",
            "--rate=50",
            "--arrival=poisson",
            "--report=json",
        ],
        Responder::new(),
    );
    out.assert_status(0).assert_stderr("");
    assert_eq!(tr.len(), 10);
    let j = report_json(&out);
    assert_eq!(j.at("schedule/arrival"), &Json::Str("poisson".into()));
    assert!(out.elapsed < Duration::from_secs(5));
}

#[test]
fn rate_slow_server_latency_counts_from_schedule() {
    // Arrivals every 20 ms; one session needs 200+ ms per message. With
    // latency from each job's scheduled start, later messages wait longer
    // and longer (no coordinated omission).
    let r = Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(200), Step::send("250 2.0.0 Ok: queued")],
    );
    let (out, tr) = run(
        &["-s", "1", "-d", "-m", "10", "--rate=50", "--report=json"],
        r,
    );
    out.assert_status(0).assert_stderr("");
    assert_eq!(tr.conn(0).data.len(), 10);
    let j = report_json(&out);
    let p50 = j.num("latency_ms/transaction/p50");
    let eod = j.num("latency_ms/end_of_data/p50");
    assert!((195.0..400.0).contains(&eod), "end_of_data p50 {eod}");
    // Message k is due at 20k ms and done at about 200(k+1) ms.
    assert!(p50 > 600.0, "transaction p50 {p50} not corrected");
    assert!(j.num("latency_ms/transaction/max") > 1500.0);
    // And the report says the run fell behind its schedule.
    let lag = j.num("schedule/max_lag_ms");
    assert!(
        lag >= 100.0,
        "schedule/max_lag_ms {lag}: behind not reported"
    );
}

// ---------------------------------------------------------------------------
// --duration and SIGINT

#[test]
fn duration_1_runs_about_a_second() {
    let (out, tr) = run(&["--duration=1", "--report=json"], Responder::new());
    out.assert_status(0).assert_stderr("");
    let secs = out.elapsed.as_secs_f64();
    assert!((0.9..3.0).contains(&secs), "took {secs} s");
    let j = report_json(&out);
    let n = j.int("messages/attempted");
    assert!(n > 1, "attempted {n}");
    assert_eq!(j.int("messages/accepted"), n);
    assert_eq!(tr.len() as u64, n);
    assert_eq!(j.at("completed"), &Json::Bool(true));
}

#[test]
fn duration_with_m_is_an_upper_bound() {
    let (out, tr) = run(&["--duration=1", "-m", "5"], Responder::new());
    assert_clean(&out);
    assert_conns(&tr, 5);
    let delivered: usize = tr.conns.iter().map(|c| c.data.len()).sum();
    assert_eq!(delivered, 5);
    assert!(out.elapsed < Duration::from_secs(3), "{}", out.render());
}

#[test]
fn duration_lets_in_flight_finish() {
    // Each message takes 300 ms; the run stops dispatching at 1 s and
    // the message then in flight is finished, not cut.
    let r = Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(300), Step::send("250 2.0.0 Ok: queued")],
    );
    let (out, tr) = run(&["--duration=1", "-d", "--report=json"], r);
    out.assert_status(0).assert_stderr("");
    let j = report_json(&out);
    let n = j.int("messages/attempted");
    assert!((3..=5).contains(&n), "attempted {n}");
    assert_eq!(j.int("messages/accepted"), n);
    assert_eq!(tr.conn(0).data.len() as u64, n);
    assert_conns(&tr, 1);
    assert!(tr.conn(0).commands().last().is_some_and(|c| c == "QUIT"));
}

#[test]
fn duration_stops_a_run_with_queued_messages() {
    // -m 50 fits in the job queue at once; --duration must still end
    // the run after about a second (each message takes 100 ms).
    let r = Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(100), Step::send("250 2.0.0 Ok: queued")],
    );
    let (out, tr) =
        run(&["--duration=1", "-m", "50", "-d", "--report=json"], r);
    out.assert_status(0).assert_stderr("");
    let j = report_json(&out);
    let n = j.int("messages/attempted");
    assert!(
        out.elapsed < Duration::from_secs(3),
        "--duration=1 with -m 50 took {:?} and sent {n} messages",
        out.elapsed
    );
    assert!((5..=20).contains(&n), "attempted {n}");
    assert_eq!(tr.conn(0).data.len() as u64, n);
}

/// Start ours with `args` against `srv`; SIGINT at each of `at` (from
/// the start); wait (bounded) and return (status, stdout, stderr,
/// elapsed).
fn run_interrupted(
    srv: &FakeServer,
    args: &[&str],
    at: &[Duration],
) -> (Option<i32>, String, String, Duration) {
    let mut run = ours()
        .cmd()
        .args(["-M", HOST])
        .args(args)
        .arg(srv.endpoint())
        .env("SMTP_SOURCE_TIMEOUT", "5")
        .timeout(SIGINT_LIMIT)
        .start();
    for &t in at {
        run.signal_at("INT", t);
    }
    let out = run.finish();
    assert!(
        !out.timed_out,
        "ours did not end within {SIGINT_LIMIT:?} (SIGINT at {at:?}) and \
         was killed"
    );
    (
        out.status,
        out.stdout_text(),
        out.stderr_text(),
        out.elapsed,
    )
}

#[test]
fn sigint_ends_a_duration_run_with_its_report() {
    let r = Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(50), Step::send("250 2.0.0 Ok: queued")],
    );
    let srv = FakeServer::tcp(r);
    let (code, out, err, elapsed) = run_interrupted(
        &srv,
        &["--duration=30", "-d", "--report=json"],
        &[Duration::from_millis(700)],
    );
    let tr = srv.finish();
    // 128 + SIGINT; the report is marked as cut short.
    assert_eq!(code, Some(130), "stdout {out}\nstderr {err}");
    assert_eq!(err, "");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let j = Json::parse(&out);
    assert_eq!(j.at("completed"), &Json::Bool(false));
    assert_eq!(j.at("interrupted"), &Json::Str("SIGINT".into()));
    let n = j.int("messages/attempted");
    assert!((2..100).contains(&n), "attempted {n}");
    assert_eq!(j.int("messages/accepted"), n);
    assert_eq!(tr.conn(0).data.len() as u64, n);
    assert!(tr.conn(0).commands().last().is_some_and(|c| c == "QUIT"));
}

#[test]
fn sigint_ends_a_report_run_without_duration() {
    let r = Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(50), Step::send("250 2.0.0 Ok: queued")],
    );
    let srv = FakeServer::tcp(r);
    let (code, out, err, elapsed) = run_interrupted(
        &srv,
        &["-m", "1000", "-d", "--report=json"],
        &[Duration::from_millis(500)],
    );
    drop(srv);
    assert_eq!(code, Some(130), "stdout {out}\nstderr {err}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let j = Json::parse(&out);
    let n = j.int("messages/attempted");
    assert!(n < 1000, "attempted {n}");
}

#[test]
fn second_sigint_exits_130_at_once() {
    // The end of data is never answered in time: the first SIGINT waits
    // for it, the second ends the process.
    let r = Responder::new().on_steps(
        Verb::Dot,
        vec![Step::sleep_ms(4000), Step::send("250 2.0.0 Ok: queued")],
    );
    let srv = FakeServer::tcp(r);
    let (code, _, err, elapsed) = run_interrupted(
        &srv,
        &["--duration=30", "--report=json"],
        &[Duration::from_millis(400), Duration::from_millis(800)],
    );
    drop(srv);
    assert_eq!(code, Some(130), "stderr {err}");
    // Not the first SIGINT: that one waits for the message in flight.
    assert!(elapsed >= Duration::from_millis(750), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
}

// ---------------------------------------------------------------------------
// Old command lines are unchanged by measuring

fn same_bytes_with_and_without(args: &[&str], extra: &[&str]) {
    let (plain, ptr) = run(args, Responder::new());
    let mut with = args.to_vec();
    with.extend_from_slice(extra);
    let (out, tr) = run(&with, Responder::new());
    plain.assert_status(0);
    out.assert_status(0).assert_stderr(&plain.stderr_text());
    assert_eq!(ptr.len(), tr.len());
    for (a, b) in ptr.conns.iter().zip(&tr.conns) {
        crate::support::assert_bytes_eq(
            &format!("connection {} with {extra:?}", a.index),
            &a.masked(),
            &b.masked(),
        );
        assert_eq!(a.end, b.end);
    }
}

#[test]
fn report_does_not_change_default_bytes() {
    same_bytes_with_and_without(&[], &["--report"]);
}

#[test]
fn report_json_does_not_change_reuse_bytes() {
    same_bytes_with_and_without(
        &["-d", "-m", "3", "-r", "2"],
        &["--report=json"],
    );
}

#[test]
fn report_does_not_change_count_output() {
    let (plain, _) = run(&["-c", "-m", "3"], Responder::new());
    let (out, _) = run(&["-c", "-m", "3", "--report=json"], Responder::new());
    plain.assert_stdout(b"1\r2\r3\r\n");
    assert!(out.stdout_text().starts_with("1\r2\r3\r\n{"));
}

// ---------------------------------------------------------------------------
// --numbering=3.9 (recipients numbered as Postfix 3.9 does): the number
// appended to the local part, a global count from 0, on with -N or -r;
// To: names the last recipient.

/// The RCPT commands and To: headers of each connection.
fn rcpts_and_to(tr: &Transcript) -> Vec<(Vec<String>, Vec<String>)> {
    tr.conns
        .iter()
        .map(|c| {
            let rcpts = c
                .commands()
                .into_iter()
                .filter(|l| l.starts_with("RCPT TO:"))
                .collect();
            let to = c
                .data
                .iter()
                .flat_map(|d| d.split(|&b| b == b'\n'))
                .filter(|l| l.starts_with(b"To: "))
                .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
                .collect();
            (rcpts, to)
        })
        .collect()
}

#[test]
fn numbering_39_appends_to_the_local_part() {
    let args = ["--numbering=3.9", "-r", "3", "-m", "2", "-t", "bar@x.ex"];
    let (out, tr) = run(&args, Responder::new());
    out.assert_status(0).assert_stderr("");
    assert_conns(&tr, 2);
    let rcpt = |n: u32| format!("RCPT TO:<bar{n}@x.ex>");
    assert_eq!(
        rcpts_and_to(&tr),
        [
            (
                vec![rcpt(0), rcpt(1), rcpt(2)],
                vec!["To: <bar2@x.ex>".to_string()]
            ),
            (
                vec![rcpt(3), rcpt(4), rcpt(5)],
                vec!["To: <bar5@x.ex>".to_string()]
            ),
        ]
    );
}

#[test]
fn numbering_39_is_off_without_n_or_r() {
    let args = ["--numbering=3.9", "-t", "bar@x.ex"];
    let (out, tr) = run(&args, Responder::new());
    out.assert_status(0);
    assert_eq!(
        rcpts_and_to(&tr),
        [(
            vec!["RCPT TO:<bar@x.ex>".to_string()],
            vec!["To: <bar@x.ex>".to_string()]
        )]
    );
}

#[test]
fn numbering_39_r1_or_n_turns_it_on() {
    for flag in [["-r", "1"], ["-N", "-o"]] {
        let args = ["--numbering=3.9", flag[0], flag[1], "-t", "foo"];
        let (out, tr) = run(&args, Responder::new());
        out.assert_status(0);
        let (rcpts, _) = &rcpts_and_to(&tr)[0];
        assert_eq!(rcpts, &["RCPT TO:<foo0>".to_string()], "{flag:?}");
    }
}

#[test]
fn numbering_37_is_the_default() {
    let (out, tr) = run(&["-r", "2", "-t", "bar@x.ex"], Responder::new());
    out.assert_status(0);
    let (rcpts, to) = &rcpts_and_to(&tr)[0];
    assert_eq!(rcpts, &["RCPT TO:<2bar@x.ex>", "RCPT TO:<bar@x.ex>"]);
    assert_eq!(to, &["To: <bar@x.ex>"]);
}
