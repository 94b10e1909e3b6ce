//! Each state of the transaction core, without sockets: what it sends,
//! what each reply makes of it, and its accounting.

use super::*;

fn mode() -> Mode {
    Mode {
        refusals: Refusals::Allowed,
        lmtp: false,
        bdat: false,
        pipelined: false,
        proven: false,
        recipients: 1,
    }
}

/// Everything the core hands out now, written whole.
fn sends(t: &mut Txn) -> Vec<Step> {
    let steps = std::iter::from_fn(|| t.poll_send()).collect();
    t.written(usize::MAX);
    steps
}

/// The whole tally since the last take, summed into one.
fn total(t: &mut Txn, into: &mut Tally) {
    let x = t.take_tally();
    into.rcpt_sent += x.rcpt_sent;
    into.rcpt_accepted += x.rcpt_accepted;
    into.rcpt_rejected += x.rcpt_rejected;
    into.rcpt_failed += x.rcpt_failed;
    if x.message.is_some() {
        assert!(into.message.is_none(), "a second verdict");
        into.message = x.message;
    }
}

use Step::*;

#[test]
fn policy() {
    use Refusals::{Allowed, Fatal};
    assert_eq!(judge(Fatal, 250, Said::Yes), Heard::Positive);
    assert_eq!(judge(Fatal, 550, Said::No), Heard::Fatal);
    assert_eq!(judge(Allowed, 550, Said::No), Heard::Refused);
    assert_eq!(judge(Allowed, 421, Said::No), Heard::Closing);
    assert_eq!(judge(Allowed, 521, Said::Echo), Heard::Closing);
    assert_eq!(judge(Fatal, 503, Said::Echo), Heard::Quiet);
    assert_eq!(judge(Fatal, 421, Said::Echo), Heard::Fatal);
}

#[test]
fn lock_step_happy_path() {
    let mut t = Txn::new(Mode {
        recipients: 2,
        ..mode()
    });
    assert_eq!(sends(&mut t), [Mail]);
    assert_eq!(t.stage(), Some(Stage::Mail));
    assert_eq!(t.on_reply(250), Heard::Positive);
    assert_eq!(sends(&mut t), [Rcpt { left: 2 }]);
    t.on_reply(250);
    assert_eq!(sends(&mut t), [Rcpt { left: 1 }]);
    t.on_reply(550);
    assert_eq!(sends(&mut t), [Data]);
    assert_eq!(t.on_reply(250), Heard::Refused, "DATA wants 354");
    assert_eq!(sends(&mut t), [Rset]);
    assert_eq!(t.fate(), Some(Fate::Rejected));
    t.on_reply(250);
    assert!(t.is_done() && !t.closed());
    let mut tally = Tally::default();
    total(&mut t, &mut tally);
    assert_eq!(
        (tally.rcpt_sent, tally.rcpt_accepted, tally.rcpt_rejected),
        (2, 1, 1)
    );
}

#[test]
fn lock_step_message_accepted() {
    let mut t = Txn::new(mode());
    for (want, code) in [(Mail, 250), (Rcpt { left: 1 }, 250), (Data, 354)] {
        assert_eq!(sends(&mut t), [want]);
        assert_eq!(t.on_reply(code), Heard::Positive);
    }
    assert_eq!(sends(&mut t), [Content]);
    assert_eq!(t.stage(), Some(Stage::Message));
    t.on_reply(250);
    assert_eq!(t.fate(), Some(Fate::Accepted));
    assert!(t.is_done());
    assert_eq!(sends(&mut t), []);
}

#[test]
fn mail_refused_then_rset() {
    let mut t = Txn::new(mode());
    sends(&mut t);
    assert_eq!(t.on_reply(553), Heard::Refused);
    assert_eq!(sends(&mut t), [Rset]);
    t.on_reply(250);
    assert_eq!(t.fate(), Some(Fate::Rejected));
}

#[test]
fn no_recipient_then_rset() {
    let mut t = Txn::new(mode());
    sends(&mut t);
    t.on_reply(250);
    sends(&mut t);
    t.on_reply(550);
    assert_eq!(sends(&mut t), [Rset]);
}

#[test]
fn closing_fails_and_counts_the_rcpt_refused() {
    let mut t = Txn::new(Mode {
        recipients: 3,
        ..mode()
    });
    sends(&mut t);
    t.on_reply(250);
    sends(&mut t);
    t.on_reply(250);
    sends(&mut t);
    assert_eq!(t.on_reply(421), Heard::Closing);
    assert!(t.is_done() && t.closed());
    assert_eq!(t.fate(), Some(Fate::Failed));
    let tally = t.take_tally();
    assert_eq!(
        (tally.rcpt_sent, tally.rcpt_accepted, tally.rcpt_rejected),
        (2, 1, 1)
    );
}

#[test]
fn without_a_the_refusal_is_fatal() {
    let mut t = Txn::new(Mode {
        refusals: Refusals::Fatal,
        ..mode()
    });
    sends(&mut t);
    assert_eq!(t.on_reply(550), Heard::Fatal);
    assert!(t.is_done());
    assert_eq!(t.fate(), Some(Fate::Failed));
}

#[test]
fn lmtp_one_recipient_delivers() {
    let mut t = Txn::new(Mode {
        lmtp: true,
        recipients: 2,
        ..mode()
    });
    for code in [250, 250, 250, 354] {
        sends(&mut t);
        t.on_reply(code);
    }
    assert_eq!(sends(&mut t), [Content]);
    t.on_reply(250);
    assert!(!t.is_done(), "a second LMTP reply is due");
    assert_eq!(t.on_reply(421), Heard::Closing);
    assert_eq!(t.fate(), Some(Fate::Accepted));
    assert!(t.closed());
}

#[test]
fn lmtp_all_refused_is_rejected() {
    let mut t = Txn::new(Mode {
        lmtp: true,
        recipients: 2,
        ..mode()
    });
    for code in [250, 250, 250, 354] {
        sends(&mut t);
        t.on_reply(code);
    }
    sends(&mut t);
    t.on_reply(550);
    t.on_reply(452);
    assert_eq!(t.fate(), Some(Fate::Rejected));
    assert!(t.is_done());
}

#[test]
fn pipelined_group_and_quiet_replies() {
    let mut t = Txn::new(Mode {
        pipelined: true,
        recipients: 2,
        ..mode()
    });
    assert_eq!(
        sends(&mut t),
        [Mail, Rcpt { left: 2 }, Rcpt { left: 1 }, Data]
    );
    assert_eq!(t.on_reply(550), Heard::Refused);
    assert_eq!(t.on_reply(503), Heard::Quiet);
    assert_eq!(t.on_reply(503), Heard::Quiet);
    assert_eq!(t.stage(), Some(Stage::Data));
    assert_eq!(t.on_reply(554), Heard::Quiet);
    assert_eq!(sends(&mut t), [Rset]);
    t.on_reply(250);
    assert_eq!(t.fate(), Some(Fate::Rejected));
}

#[test]
fn pipelined_354_with_no_recipient_ends_with_a_lone_dot() {
    let mut t = Txn::new(Mode {
        pipelined: true,
        ..mode()
    });
    sends(&mut t);
    t.on_reply(250);
    assert_eq!(t.on_reply(550), Heard::Refused);
    assert_eq!(t.on_reply(354), Heard::Positive);
    assert_eq!(sends(&mut t), [LoneDot]);
    assert_eq!(t.on_reply(554), Heard::Quiet);
    assert_eq!(t.fate(), Some(Fate::Rejected));
    assert!(t.is_done());
}

#[test]
fn pipelined_closing_fails_the_unanswered_rcpts() {
    let mut t = Txn::new(Mode {
        pipelined: true,
        recipients: 3,
        ..mode()
    });
    sends(&mut t);
    assert_eq!(t.on_reply(421), Heard::Closing);
    let tally = t.take_tally();
    assert_eq!((tally.rcpt_sent, tally.rcpt_failed), (3, 3));
    assert_eq!(t.fate(), Some(Fate::Failed));
}

#[test]
fn cut_lost_and_halted() {
    let mut t = Txn::new(Mode {
        pipelined: true,
        recipients: 2,
        ..mode()
    });
    sends(&mut t);
    t.on_reply(250);
    t.cut(Cut::Lost);
    let tally = t.take_tally();
    assert_eq!((tally.rcpt_failed, tally.message), (2, Some(Fate::Failed)));
    let mut t = Txn::new(mode());
    sends(&mut t);
    t.cut(Cut::Halted);
    assert_eq!(t.take_tally().message, None);
    assert!(t.is_done());
}

#[test]
fn bdat_unproven_envelope_first() {
    let mut t = Txn::new(Mode {
        pipelined: true,
        bdat: true,
        ..mode()
    });
    assert_eq!(sends(&mut t), [Mail, Rcpt { left: 1 }]);
    t.on_reply(250);
    assert!(t.proven());
    t.on_reply(250);
    assert_eq!(sends(&mut t), [Content]);
    t.on_reply(554);
    assert_eq!(sends(&mut t), [Rset], "a refused BDAT is reset");
    t.on_reply(250);
    assert_eq!(t.fate(), Some(Fate::Rejected));
}

#[test]
fn bdat_proven_joins_the_group() {
    let mut t = Txn::new(Mode {
        pipelined: true,
        bdat: true,
        proven: true,
        ..mode()
    });
    assert_eq!(sends(&mut t), [Mail, Rcpt { left: 1 }, Content]);
    t.on_reply(250);
    assert_eq!(t.on_reply(550), Heard::Refused);
    // Nobody was to get it: the BDAT reply only confirms it.
    assert_eq!(t.on_reply(250), Heard::Positive);
    assert_eq!(t.fate(), Some(Fate::Rejected));
    assert!(t.is_done());
}

#[test]
fn lock_step_bdat() {
    let mut t = Txn::new(Mode {
        bdat: true,
        ..mode()
    });
    sends(&mut t);
    t.on_reply(250);
    sends(&mut t);
    t.on_reply(250);
    assert_eq!(sends(&mut t), [Content]);
    t.on_reply(250);
    assert_eq!(t.fate(), Some(Fate::Accepted));
    assert!(t.is_done());
}

#[test]
fn huge_r_is_counted_not_stored() {
    let mut t = Txn::new(Mode {
        pipelined: true,
        recipients: u32::MAX,
        ..mode()
    });
    assert_eq!(t.poll_send(), Some(Mail));
    assert_eq!(t.poll_send(), Some(Rcpt { left: u32::MAX }));
    assert_eq!(t.poll_send(), Some(Rcpt { left: u32::MAX - 1 }));
    assert!(std::mem::size_of::<Txn>() < 128);
}

/// A RCPT counts as sent only once its write went out: a halt that
/// refuses the write leaves it in no count (no server read it).
#[test]
fn a_rcpt_the_halt_kept_from_the_wire_is_not_sent() {
    let mut t = Txn::new(mode());
    sends(&mut t);
    t.on_reply(250);
    assert_eq!(t.poll_send(), Some(Rcpt { left: 1 }));
    assert_eq!(t.take_tally().rcpt_sent, 0, "handed out is not sent");
    t.cut(Cut::Halted);
    assert_eq!(t.take_tally(), Tally::default());
    assert!(t.is_done());
}

/// A group's write cut part-way: the commands that went out whole are
/// sent (and, the connection lost, failed); the rest are in no count.
#[test]
fn a_group_cut_part_way_counts_what_went_out_whole() {
    let mut t = Txn::new(Mode {
        pipelined: true,
        recipients: 3,
        ..mode()
    });
    let steps: Vec<Step> = std::iter::from_fn(|| t.poll_send()).collect();
    assert_eq!(steps.len(), 5);
    // MAIL and the first RCPT whole, the second RCPT cut.
    t.written(2);
    t.cut(Cut::Lost);
    let tally = t.take_tally();
    assert_eq!((tally.rcpt_sent, tally.rcpt_failed), (1, 1));
    assert_eq!(tally.message, Some(Fate::Failed));
}

/// Writes reported in pieces add up, in the order handed out.
#[test]
fn writes_in_pieces_count_each_rcpt_once() {
    let mut t = Txn::new(Mode {
        pipelined: true,
        recipients: 4,
        ..mode()
    });
    for _ in 0..3 {
        t.poll_send();
    }
    t.written(usize::MAX);
    assert_eq!(t.take_tally().rcpt_sent, 2);
    sends(&mut t);
    assert_eq!(t.take_tally().rcpt_sent, 2);
    t.on_reply(250);
    t.cut(Cut::Lost);
    assert_eq!(t.take_tally().rcpt_failed, 4);
}
