//! Accounting: the report's message and recipient counts on the paths
//! where a connection or the run ends early. One test per way a count
//! used to go wrong; each checks the invariant (attempted = accepted +
//! rejected + failed + unknown, and likewise for recipients) and the
//! counts against what the scripted server saw.

use std::time::Duration;

use crate::support::fake_server::{
    FakeServer, Responder, Rule, Step, Transcript, Verb,
};
use crate::support::{ours, Outcome};

const EHLO_PIPELINING: &str = "250-fake.example\r\n250 PIPELINING";

/// Ours with T = 1 s, `args` and the server's endpoint.
fn run(r: Responder, args: &[&str]) -> (Outcome, Transcript) {
    let srv = FakeServer::tcp(r);
    let out = ours()
        .cmd()
        .args(["-M", "acct.example"])
        .args(args)
        .arg(srv.endpoint())
        .stage_timeout(1)
        .timeout(Duration::from_secs(20))
        .run();
    (out, srv.finish())
}

/// `group/key` of the JSON report on stdout (its last JSON line).
fn count(out: &Outcome, group: &str, key: &str) -> u64 {
    let text = out.stdout_text();
    let line = text
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON on stdout\n{}", out.render()));
    let from = line
        .find(&format!("\"{group}\":{{"))
        .unwrap_or_else(|| panic!("no {group} in {line}"));
    let obj = &line[from..from + line[from..].find('}').unwrap_or(0)];
    let at = obj
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {group}/{key} in {line}"));
    let digits: String = obj[at + key.len() + 3..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{group}/{key} in {line}"))
}

/// The messages' and recipients' counts, and both invariants checked.
struct Counts {
    attempted: u64,
    accepted: u64,
    rejected: u64,
    failed: u64,
    unknown: u64,
    sent: u64,
    r_accepted: u64,
    r_rejected: u64,
    r_failed: u64,
    r_unknown: u64,
}

fn counts(out: &Outcome) -> Counts {
    let m = |k| count(out, "messages", k);
    let r = |k| count(out, "recipients", k);
    let c = Counts {
        attempted: m("attempted"),
        accepted: m("accepted"),
        rejected: m("rejected"),
        failed: m("failed"),
        unknown: m("unknown"),
        sent: r("sent"),
        r_accepted: r("accepted"),
        r_rejected: r("rejected"),
        r_failed: r("failed"),
        r_unknown: r("unknown"),
    };
    assert_eq!(
        c.attempted,
        c.accepted + c.rejected + c.failed + c.unknown,
        "messages do not add up\n{}",
        out.render()
    );
    assert_eq!(
        c.sent,
        c.r_accepted + c.r_rejected + c.r_failed + c.r_unknown,
        "recipients do not add up\n{}",
        out.render()
    );
    c
}

/// Commands the server read, by first word ("." for end of data).
fn seen(tr: &Transcript, verb: &str) -> u64 {
    tr.conns
        .iter()
        .flat_map(|c| c.commands())
        .filter(|l| l.split([' ', ':']).next() == Some(verb))
        .count() as u64
}

/// A look-ahead group written behind a dot that got 421 is failed with
/// its connection, not lost.
#[test]
fn pipelined_look_ahead_cut_by_421_is_failed() {
    let r = Responder::new().on(Verb::Ehlo, EHLO_PIPELINING).on_conn(
        0,
        Verb::Dot,
        vec![Step::send("421 4.3.0 closing"), Step::Close],
    );
    let args = ["--pipelining", "-d", "-A", "-s", "1", "-m", "3"];
    let (out, tr) = run(r, &[&args[..], &["--report=json"]].concat());
    out.assert_status(0);
    let c = counts(&out);
    assert_eq!(c.attempted, 3, "{}", out.render());
    assert_eq!(
        (c.accepted, c.failed, c.unknown),
        (1, 2, 0),
        "{}",
        tr.render()
    );
    assert_eq!(seen(&tr, "."), 2);
}

/// A fatal error stops every session before the report is taken: what
/// the report calls accepted the server accepted, and what the server
/// accepted beyond it is in flight (unknown).
#[test]
fn fatal_error_report_matches_server() {
    let r = Responder::new().rule(Rule {
        verb: Verb::Mail,
        // Every connection at its 6th MAIL: the first to get there ends
        // the run (a fixed connection may get fewer than 6 of the 500
        // when the others are quicker).
        conn: None,
        nth: Some(5),
        steps: vec![Step::Reset],
    });
    let args = ["-d", "-s", "10", "-m", "500", "--report=json"];
    let (out, tr) = run(r, &args);
    out.assert_status(1);
    let c = counts(&out);
    let server = seen(&tr, ".");
    assert!(
        c.accepted <= server && server <= c.accepted + c.unknown,
        "report accepted {} unknown {}, server accepted {server}",
        c.accepted,
        c.unknown
    );
    // A RCPT with a reply was read by the server; one written without
    // may have been lost with the connection.
    let rcpts = seen(&tr, "RCPT");
    assert!(c.r_accepted + c.r_rejected <= rcpts && rcpts <= c.sent);
}

/// Each RCPT counts when written: a 421 in the middle of the list
/// leaves the ones before it counted.
#[test]
fn recipients_cut_by_421_are_counted() {
    let r = Responder::new().rule(Rule {
        verb: Verb::Rcpt,
        conn: None,
        nth: Some(1),
        steps: vec![Step::send("421 4.3.0 closing"), Step::Close],
    });
    let (out, tr) = run(r, &["-A", "-r", "3", "-m", "1", "--report=json"]);
    out.assert_status(0);
    let c = counts(&out);
    assert_eq!(seen(&tr, "RCPT"), 2);
    assert_eq!((c.sent, c.r_accepted, c.r_rejected), (2, 1, 1));
    assert_eq!((c.attempted, c.failed), (1, 1));
}

/// LMTP: a message one recipient took is accepted, whatever the others'
/// end-of-data replies say.
#[test]
fn lmtp_partial_acceptance_is_accepted() {
    let r = Responder::new().lmtp().on_steps(
        Verb::Dot,
        vec![
            Step::send("250 2.0.0 ok"),
            Step::send("421 4.3.0 closing"),
            Step::Close,
        ],
    );
    let (out, _) =
        run(r, &["-A", "-L", "-r", "2", "-m", "1", "--report=json"]);
    out.assert_status(0);
    let c = counts(&out);
    assert_eq!((c.attempted, c.accepted, c.failed), (1, 1, 0));
    assert_eq!((c.sent, c.r_accepted), (2, 2));
}

/// Every session claimed a message before one lost connection ended the
/// run: all of them are attempted, that one failed, the rest in flight.
#[test]
fn fatal_report_counts_every_claimed_message() {
    let r = Responder::new().stall_at(Verb::Banner).on_conn(
        0,
        Verb::Banner,
        vec![Step::sleep_ms(300), Step::Close],
    );
    let (out, _) = run(r, &["-s", "20", "-m", "20", "--report=json"]);
    out.assert_status(1);
    let c = counts(&out);
    assert_eq!(
        (c.attempted, c.failed, c.unknown),
        (20, 1, 19),
        "{}",
        out.render()
    );
}

/// -r at its legal maximum: recipients are made one at a time, never
/// built whole (this used to abort allocating 32 GiB), lock-step and in
/// a pipelined group written in bounded pieces.
#[test]
fn largest_r_is_not_built_whole() {
    let cut_at_third = || {
        Responder::new().on(Verb::Ehlo, EHLO_PIPELINING).rule(Rule {
            verb: Verb::Rcpt,
            conn: None,
            nth: Some(2),
            steps: vec![Step::send("421 4.3.0 enough"), Step::Close],
        })
    };
    let (out, tr) = run(
        cut_at_third(),
        &["-A", "-r", "2147483647", "-m", "1", "--report=json"],
    );
    out.assert_status(0)
        .assert_elapsed_below(Duration::from_secs(5));
    let c = counts(&out);
    assert_eq!(seen(&tr, "RCPT"), 3);
    assert_eq!((c.sent, c.r_accepted, c.r_rejected), (3, 2, 1));
    assert_eq!((c.attempted, c.failed), (1, 1));
    // Pipelined: the group goes out in pieces, and the replies already
    // in are read between them: the 421 stops the group.
    let (out, _) = run(
        cut_at_third(),
        &[
            "--pipelining",
            "-A",
            "-r",
            "2147483647",
            "-m",
            "1",
            "--report=json",
        ],
    );
    out.assert_status(0)
        .assert_elapsed_below(Duration::from_secs(5));
    let c = counts(&out);
    assert_eq!((c.r_accepted, c.r_rejected), (2, 1), "{}", out.render());
    assert_eq!(c.r_failed, c.sent - 3);
    assert_eq!((c.attempted, c.failed), (1, 1));
    let reset_at_third =
        Responder::new().on(Verb::Ehlo, EHLO_PIPELINING).rule(Rule {
            verb: Verb::Rcpt,
            conn: None,
            nth: Some(2),
            steps: vec![Step::Reset],
        });
    let (out, _) = run(
        reset_at_third,
        &["--pipelining", "-A", "-r", "2147483647", "-m", "1"],
    );
    // The group cannot all be written once the server is gone: a lost
    // connection, not an abort.
    assert_eq!(out.status, Some(1), "{}", out.render());
    out.assert_elapsed_below(Duration::from_secs(5));
}
