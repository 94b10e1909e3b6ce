//! The ESMTP parameters of MAIL and RCPT (man page, "ESMTP parameters")
//! against the scripted server: SIZE, BODY=8BITMIME, SMTPUTF8, DSN,
//! REQUIRETLS, --mail-param and --rcpt-param, exactly on the wire; a
//! server that lacks an extension; the report's counts; composition
//! with --pipelining, --chunking and -L. An old command line sends none
//! of them (tests/differential.rs compares it with the reference).

use std::time::Duration;

use serde_json::Value;

use crate::support::fake_server::{FakeServer, Responder, Transcript, Verb};
use crate::support::{Outcome, TempDir};

const HOST: &str = "esmtp.example";

/// Every extension this module speaks.
const EHLO_ALL: &str =
    "250-fake.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250 CHUNKING";
const EHLO_NONE: &str = "250-fake.example\r\n250 PIPELINING";

const LIMIT: Duration = Duration::from_secs(10);

fn run(args: &[&str], r: Responder) -> (Outcome, Transcript) {
    let srv = FakeServer::tcp(r);
    let out = crate::support::ours()
        .cmd()
        .args(["-M", HOST])
        .args(args)
        .arg(srv.endpoint())
        .timeout(LIMIT)
        .run();
    (out, srv.finish())
}

fn offering(ehlo: &str) -> Responder {
    Responder::new().on(Verb::Ehlo, ehlo).on(Verb::Lhlo, ehlo)
}

/// The client's command lines (DATA content left out).
fn commands(tr: &Transcript, conn: usize) -> Vec<String> {
    tr.conn(conn).commands()
}

fn report(out: &Outcome) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", out.stdout_text()))
}

fn file(dir: &TempDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// A -F message with an 8-bit body and a UTF-8 Subject.
const UTF8_MESSAGE: &str = "Subject: gr\u{fc}\u{df}e\n\nK\u{e4}se\n";

#[test]
fn every_parameter_on_the_wire_and_size_is_exact() {
    let dir = TempDir::new("esmtp-all");
    let f = file(&dir, "m", UTF8_MESSAGE.as_bytes());
    let (out, tr) = run(
        &[
            "--ehlo",
            "-F",
            &f,
            "-t",
            "j\u{f6}rg@example.org",
            "--dsn-notify=success,failure",
            "--dsn-ret=hdrs",
            "--dsn-envid=run-%n",
            "--dsn-orcpt",
            "--mail-param=MT-PRIORITY=3",
            "--rcpt-param=X-TAG=a+2Bb",
            "--report=json",
        ],
        offering(EHLO_ALL),
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    let size = tr.conn(0).data[0].len();
    let cmds = commands(&tr, 0);
    assert_eq!(
        cmds[1],
        format!(
            "MAIL FROM:<foo@{HOST}> SIZE={size} BODY=8BITMIME SMTPUTF8 \
RET=HDRS ENVID=run-0 MT-PRIORITY=3"
        )
    );
    assert_eq!(
        cmds[2],
        "RCPT TO:<j\u{f6}rg@example.org> NOTIFY=SUCCESS,FAILURE \
ORCPT=rfc822;j+C3+B6rg@example.org X-TAG=a+2Bb"
    );
    let r = report(&out);
    let p = &r["esmtp"]["params"];
    for key in ["SIZE", "BODY=8BITMIME", "SMTPUTF8", "RET", "ENVID"] {
        assert_eq!(p[key], 1, "{key}: {r}");
    }
    for key in ["NOTIFY", "ORCPT", "MT-PRIORITY", "X-TAG"] {
        assert_eq!(p[key], 1, "{key}: {r}");
    }
    assert_eq!(r["messages"]["accepted"], 1);
}

#[test]
fn size_is_exact_for_generated_headers_and_bdat() {
    for extra in [&[][..], &["--chunking"][..], &["--pipelining"][..]] {
        let mut args = vec!["--ehlo", "-l", "200", "-m", "2", "-d"];
        args.extend_from_slice(extra);
        let (out, tr) = run(&args, offering(EHLO_ALL));
        assert_eq!(out.status, Some(0), "{extra:?} {}", out.stderr_text());
        let mails: Vec<String> = commands(&tr, 0)
            .into_iter()
            .filter(|c| c.starts_with("MAIL"))
            .collect();
        assert_eq!(mails.len(), 2);
        for (mail, data) in mails.iter().zip(&tr.conn(0).data) {
            assert_eq!(
                *mail,
                format!("MAIL FROM:<foo@{HOST}> SIZE={}", data.len()),
                "{extra:?}"
            );
        }
    }
}

#[test]
fn size_over_the_limit_is_552_at_mail_no_body_counted_rejected() {
    let r = offering(EHLO_ALL)
        .on(Verb::Mail, "552 5.3.4 Message size exceeds fixed limit");
    for pipelining in [false, true] {
        let mut args = vec!["--ehlo", "-A", "-m", "2", "--report=json"];
        if pipelining {
            args.push("--pipelining");
        }
        let (out, tr) = run(&args, r.clone());
        assert_eq!(out.status, Some(0), "{}", out.stderr_text());
        // Pipelined, this server's 354 after the refusals gets a lone
        // dot: an empty body.
        for i in 0..tr.len() {
            let data = &tr.conn(i).data;
            assert!(data.iter().all(|d| d.is_empty()), "a body went out");
        }
        let rep = report(&out);
        assert_eq!(rep["messages"]["rejected"], 2, "{rep}");
        assert_eq!(rep["esmtp"]["refusals"]["mail_552"], 2, "{rep}");
    }
}

#[test]
fn no_smtputf8_means_not_sent_counted_under_its_own_class() {
    let dir = TempDir::new("esmtp-utf8");
    let f = file(&dir, "m", UTF8_MESSAGE.as_bytes());
    let (out, tr) = run(
        &["--ehlo", "-A", "-F", &f, "-m", "2", "--report=json"],
        offering(EHLO_NONE),
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    for i in 0..tr.len() {
        assert!(
            !commands(&tr, i).iter().any(|c| c.starts_with("MAIL")),
            "{}",
            tr.render()
        );
    }
    let rep = report(&out);
    assert_eq!(rep["messages"]["rejected"], 2, "{rep}");
    assert_eq!(rep["errors"]["smtputf8"], 2, "{rep}");
    assert_eq!(rep["esmtp"]["refusals"]["smtputf8_not_offered"], 2);
    assert!(out.stderr_text().contains("need SMTPUTF8"));
    // Without -A, like any refusal, it ends the run.
    let (out, _) = run(&["--ehlo", "-F", &f], offering(EHLO_NONE));
    assert_eq!(out.status, Some(1));
    assert!(
        out.stderr_text().contains(
            "fatal: message not sent: its addresses or headers need \
SMTPUTF8, which the server does not offer"
        ),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn eight_bit_without_8bitmime_goes_undeclared_said_once() {
    let dir = TempDir::new("esmtp-8bit");
    let f = file(&dir, "m", "Subject: x\n\nK\u{e4}se\n".as_bytes());
    let (out, tr) = run(
        &[
            "--ehlo",
            "-v",
            "-F",
            &f,
            "-m",
            "3",
            "--dsn-ret=FULL",
            "--report=json",
        ],
        offering(EHLO_NONE),
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    let err = out.stderr_text();
    assert_eq!(err.matches("does not offer 8BITMIME").count(), 1, "{err}");
    assert_eq!(err.matches("does not offer DSN").count(), 1, "{err}");
    let mails: Vec<String> = (0..tr.len())
        .flat_map(|i| commands(&tr, i))
        .filter(|c| c.starts_with("MAIL"))
        .collect();
    assert_eq!(mails, vec![format!("MAIL FROM:<foo@{HOST}>"); 3]);
    let rep = report(&out);
    assert_eq!(rep["esmtp"]["refusals"]["8bitmime_not_offered"], 3);
    assert_eq!(rep["esmtp"]["refusals"]["dsn_not_offered"], 3);
    assert_eq!(rep["messages"]["accepted"], 3);
}

#[test]
fn helo_sends_no_parameter_whatever_the_message() {
    // No long option: HELO, and no capabilities, so no parameters.
    let dir = TempDir::new("esmtp-helo");
    let f = file(&dir, "m", UTF8_MESSAGE.as_bytes());
    let (out, tr) = run(&["-F", &f], offering(EHLO_ALL));
    assert_eq!(out.status, Some(0));
    assert_eq!(commands(&tr, 0)[1], format!("MAIL FROM:<foo@{HOST}>"));
}

#[test]
fn lmtp_and_chunking_carry_the_parameters() {
    let dir = TempDir::new("esmtp-lmtp");
    let f = file(&dir, "m", "Subject: x\n\nK\u{e4}se\n".as_bytes());
    // -L with a long option: LHLO's capabilities are read.
    let (out, tr) = run(
        &["-L", "--chunking", "-F", &f, "--dsn-notify=NEVER"],
        offering(EHLO_ALL).lmtp(),
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    let cmds = commands(&tr, 0);
    let size = tr.conn(0).data[0].len();
    // BDAT carries the 8-bit body as it is; BODY=8BITMIME declares it
    // (BINARYMIME is not used).
    assert_eq!(
        cmds[1],
        format!("MAIL FROM:<foo@{HOST}> SIZE={size} BODY=8BITMIME")
    );
    assert_eq!(cmds[2], format!("RCPT TO:<foo@{HOST}> NOTIFY=NEVER"));
    assert!(cmds[3].starts_with("BDAT "), "{cmds:?}");
}

#[test]
fn bad_parameters_are_usage_errors() {
    for (arg, text) in [
        ("--mail-param=X=a b", "bad --mail-param value: X=a b (value is not xtext)"),
        ("--rcpt-param=_X", "bad --rcpt-param value: _X (not an esmtp-keyword)"),
        (
            "--mail-param=SIZE=1",
            "bad --mail-param value: SIZE=1 (set by its own option or by the client)",
        ),
        ("--dsn-notify=NEVER,DELAY", "bad --dsn-notify value: NEVER,DELAY"),
        ("--dsn-ret=BODY", "bad --dsn-ret value: BODY"),
        ("--requiretls", "--requiretls needs --tls or --tls-wrapper"),
    ] {
        let out = crate::support::ours()
            .cmd()
            .args([arg, "127.0.0.1:9"])
            .timeout(LIMIT)
            .run();
        assert_eq!(out.status, Some(1), "{arg}");
        assert!(out.stderr_text().contains(text), "{arg}: {}", out.stderr_text());
    }
}

#[test]
fn requiretls_without_tls_sends_no_message() {
    // --tls=may and no STARTTLS: plaintext, so REQUIRETLS cannot be had.
    let r = offering("250-fake.example\r\n250 REQUIRETLS");
    let (out, tr) = run(&["--tls=may", "--requiretls"], r);
    assert_eq!(out.status, Some(1), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains(
            "fatal: REQUIRETLS not offered over TLS: no message sent"
        ),
        "{}",
        out.stderr_text()
    );
    assert!(!commands(&tr, 0).iter().any(|c| c.starts_with("MAIL")));
}

/// A server offering STARTTLS, and `after` inside TLS.
fn starttls_offering(after: &str) -> Responder {
    use crate::support::fake_server::Step;
    use crate::support::tls_server::{Leaf, Pki};
    let tls = Pki::new().server(Leaf::Good);
    Responder::new()
        .on_nth(Verb::Ehlo, 0, "250-fake.example\r\n250 STARTTLS")
        .on_nth(Verb::Ehlo, 1, after)
        .on_steps(
            Verb::StartTls,
            vec![
                Step::send("220 2.0.0 Ready to start TLS"),
                Step::StartTls(tls),
            ],
        )
}

#[test]
fn requiretls_goes_inside_tls_when_offered_there() {
    let r = starttls_offering("250-fake.example\r\n250-DSN\r\n250 REQUIRETLS");
    let (out, tr) = run(&["--tls", "--requiretls", "--dsn-ret=HDRS"], r);
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    let c = tr.conn(0);
    assert!(c.tls.is_some());
    let secure = String::from_utf8_lossy(c.secure()).into_owned();
    assert!(
        secure.contains(&format!(
            "MAIL FROM:<foo@{HOST}> RET=HDRS REQUIRETLS\r\n"
        )),
        "{secure}"
    );
}

#[test]
fn requiretls_not_offered_after_tls_is_the_same_error() {
    let r = starttls_offering("250-fake.example\r\n250 DSN");
    let (out, tr) = run(&["--tls", "--requiretls"], r.clone());
    assert_eq!(out.status, Some(1), "{}", out.stderr_text());
    assert!(out
        .stderr_text()
        .contains("fatal: REQUIRETLS not offered over TLS: no message sent"));
    assert!(tr.conn(0).tls.is_some());
    assert!(!String::from_utf8_lossy(tr.conn(0).secure()).contains("MAIL"));
    // -A: a warning per connection, the message in hand failed.
    let (out, _) = run(
        &["--tls", "--requiretls", "-A", "-m", "2", "--report=json"],
        r,
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    let rep = report(&out);
    assert_eq!(rep["messages"]["failed"], 2, "{rep}");
    assert_eq!(rep["errors"]["tls"], 2, "{rep}");
    assert_eq!(rep["esmtp"]["refusals"]["requiretls_not_offered"], 2);
}

#[test]
fn size_is_exact_when_to_names_the_last_recipient() {
    let dir = TempDir::new("esmtp-rcpts");
    let rcpts = file(&dir, "r", b"a@x.example\nb@x.example\nc@x.example\n");
    for args in [
        &["--numbering=3.9", "-r", "2"][..],
        &["--rcpt-file", &rcpts, "-r", "2"][..],
    ] {
        let mut all = vec!["--ehlo", "--pipelining", "-d", "-m", "3"];
        all.extend_from_slice(args);
        let (out, tr) = run(&all, offering(EHLO_ALL));
        assert_eq!(out.status, Some(0), "{args:?} {}", out.stderr_text());
        let cmds = commands(&tr, 0);
        let mails: Vec<&String> =
            cmds.iter().filter(|c| c.starts_with("MAIL")).collect();
        let rcpt_lines: Vec<&String> =
            cmds.iter().filter(|c| c.starts_with("RCPT")).collect();
        assert_eq!(mails.len(), 3);
        for (k, (mail, data)) in mails.iter().zip(&tr.conn(0).data).enumerate()
        {
            assert!(
                mail.ends_with(&format!(" SIZE={}", data.len())),
                "{mail}"
            );
            // To: names the message's last RCPT, as without SIZE.
            let last = rcpt_lines[2 * k + 1]
                .trim_start_matches("RCPT TO:")
                .to_string();
            let to = format!("To: {last}\r\n");
            let text = String::from_utf8_lossy(data);
            assert!(text.contains(&to), "{args:?} {to:?} in {text}");
        }
    }
}

#[test]
fn local_refusals_with_pipelining_and_look_ahead() {
    let dir = TempDir::new("esmtp-ahead");
    let f = file(&dir, "m", UTF8_MESSAGE.as_bytes());
    let (out, tr) = run(
        &[
            "--pipelining",
            "-d",
            "-A",
            "-F",
            &f,
            "-m",
            "3",
            "--report=json",
        ],
        offering(EHLO_NONE),
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    assert_eq!(tr.len(), 1);
    let cmds = commands(&tr, 0);
    assert_eq!(cmds, [format!("EHLO {HOST}"), "QUIT".to_string()]);
    let rep = report(&out);
    assert_eq!(rep["messages"]["rejected"], 3, "{rep}");
    assert_eq!(rep["errors"]["smtputf8"], 3, "{rep}");
}
