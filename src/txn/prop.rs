//! The property test of the transaction core: seeded random server
//! scripts crossed with the modes, through the core alone (no sockets).
//!
//! A model server reads the commands the core has written, in order,
//! and answers each with a reply drawn at random (any code, 421, or
//! dying without a word), as a real server would in its state: 503 to
//! RCPT without MAIL, one reply per accepted recipient to LMTP's end of
//! data, and so on. The client side is driven as the session drives
//! the core: lock-step or pipelined, BDAT or DATA, -d with the
//! look-ahead group written behind the dot, -A or fatal refusals, and
//! sometimes a halt, between replies or refusing a write, or a write
//! that breaks part-way. For every case the core's counts must equal
//! what the model server saw and answered, RCPTs sent must equal the
//! RCPTs that went out whole, and the invariant must hold.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// How many cases; the CI bound (< 20 s in a debug build).
const CASES: u64 = 100_000;

/// A command as the model server receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Mail,
    Rcpt,
    Data,
    /// The message (after 354, or as `BDAT LAST`).
    Content {
        bdat: bool,
    },
    LoneDot,
    Rset,
}

/// The model server: its transaction state, what it saw, what it
/// answered.
struct Server {
    rng: StdRng,
    lmtp: bool,
    /// Commands written and not yet read.
    unread: VecDeque<Wire>,
    /// Replies made and not yet read by the client.
    replies: VecDeque<u16>,
    dead: bool,
    mail_ok: bool,
    rcpt_ok: u32,
    /// How likely a reply is positive (per case).
    kindness: f64,
    seen_mail: u64,
    seen_rcpt: u64,
    /// Messages with at least one recipient that got a 2xx to their end
    /// of data (the count the client's `accepted` must equal).
    accepted: u64,
    /// 2xx / other replies made to RCPT.
    rcpt_yes: u64,
    rcpt_no: u64,
}

impl Server {
    /// A positive reply, a refusal, a 421, or death.
    fn draw(&mut self, positive: u16) -> Option<u16> {
        let x: f64 = self.rng.gen();
        if x < self.kindness {
            return Some(positive);
        }
        match self.rng.gen_range(0..10) {
            0 => None,
            1 => Some(421),
            2 => Some(521),
            3 => Some(503),
            4..=6 => Some(450 + self.rng.gen_range(0..3)),
            _ => Some(550 + self.rng.gen_range(0..5)),
        }
    }

    /// Reads the next command and makes its replies; false when there
    /// is nothing left to read.
    fn serve_one(&mut self) -> bool {
        let Some(cmd) = self.unread.pop_front() else {
            return false;
        };
        let mut out = Vec::new();
        match cmd {
            Wire::Mail => {
                self.seen_mail += 1;
                out.push(self.draw(250));
                if out[0] == Some(250) {
                    self.mail_ok = true;
                }
            }
            Wire::Rcpt => {
                self.seen_rcpt += 1;
                let r = if self.mail_ok {
                    self.draw(250)
                } else {
                    Some(503)
                };
                match r {
                    Some(250) => {
                        self.rcpt_ok += 1;
                        self.rcpt_yes += 1;
                    }
                    Some(_) => self.rcpt_no += 1,
                    None => {}
                }
                out.push(r);
            }
            Wire::Data => {
                let r = if self.mail_ok && self.rcpt_ok > 0 {
                    self.draw(354)
                } else if self.rng.gen_bool(0.2) {
                    // Some servers say 354 anyway in a group (RFC 2920).
                    Some(354)
                } else {
                    Some(554)
                };
                out.push(r);
            }
            Wire::Content { .. } | Wire::LoneDot => {
                self.end_of_data(&mut out);
            }
            Wire::Rset => {
                self.mail_ok = false;
                self.rcpt_ok = 0;
                out.push(self.draw(250));
            }
        }
        for r in out {
            match r {
                Some(code) => {
                    self.replies.push_back(code);
                    if code == 421 || code == 521 {
                        self.die();
                        break;
                    }
                }
                None => {
                    self.die();
                    break;
                }
            }
        }
        true
    }

    /// One reply, or with LMTP one per accepted recipient; the message
    /// counts as accepted once one of them is a 2xx.
    fn end_of_data(&mut self, out: &mut Vec<Option<u16>>) {
        let n = if self.rcpt_ok == 0 {
            out.push(if self.rng.gen_bool(0.8) {
                Some(554)
            } else {
                self.draw(250)
            });
            0
        } else if self.lmtp {
            self.rcpt_ok
        } else {
            1
        };
        let mut delivered = false;
        for _ in 0..n {
            let r = self.draw(250);
            out.push(r);
            match r {
                Some(250) => delivered = true,
                Some(421 | 521) | None => break,
                Some(_) => {}
            }
        }
        self.accepted += u64::from(delivered);
        self.mail_ok = false;
        self.rcpt_ok = 0;
    }

    fn die(&mut self) {
        self.dead = true;
        self.unread.clear();
    }

    /// The next reply for the client, reading commands as needed; None
    /// once the connection is dead.
    fn reply(&mut self) -> Option<u16> {
        loop {
            if let Some(code) = self.replies.pop_front() {
                return Some(code);
            }
            if self.dead {
                return None;
            }
            assert!(self.serve_one(), "the client waits for a reply not owed");
        }
    }

    fn new_connection(&mut self) {
        self.unread.clear();
        self.replies.clear();
        self.dead = false;
        self.mail_ok = false;
        self.rcpt_ok = 0;
    }
}

/// The client's counts, summed from the core's tallies.
#[derive(Debug, Default)]
struct Counts {
    attempted: u64,
    accepted: u64,
    rejected: u64,
    failed: u64,
    rcpt_sent: u64,
    rcpt_accepted: u64,
    rcpt_rejected: u64,
    rcpt_failed: u64,
    /// RCPTs whose every byte went out (the wire's count, not the
    /// core's).
    rcpt_left: u64,
}

impl Counts {
    fn take(&mut self, txn: &mut Txn) {
        let t = txn.take_tally();
        self.rcpt_sent += t.rcpt_sent;
        self.rcpt_accepted += t.rcpt_accepted;
        self.rcpt_rejected += t.rcpt_rejected;
        self.rcpt_failed += t.rcpt_failed;
        match t.message {
            Some(Fate::Accepted) => self.accepted += 1,
            Some(Fate::Rejected) => self.rejected += 1,
            Some(Fate::Failed) => self.failed += 1,
            None => {}
        }
    }

    fn verdicts(&self) -> u64 {
        self.accepted + self.rejected + self.failed
    }
}

/// One case's settings.
#[derive(Debug, Clone, Copy)]
struct Case {
    mode: Mode,
    /// -d: several messages per connection.
    reuse: bool,
    /// -m.
    messages: u64,
    /// Halt after this many replies read (a fatal error elsewhere, or a
    /// signal).
    halt_after: Option<u32>,
    /// The n-th write (from 0) does not go out whole.
    write_fault: Option<(u32, Fault)>,
}

/// How a write goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A halt refuses it: nothing goes out, the run stops.
    Halt,
    /// The connection breaks after this many of its commands (modulo
    /// their number) went out whole: the run ends, as on any lost
    /// connection.
    Break(usize),
}

fn draw_case(rng: &mut StdRng) -> Case {
    let pipelined = rng.gen_bool(0.5);
    Case {
        mode: Mode {
            refusals: if rng.gen_bool(0.8) {
                Refusals::Allowed
            } else {
                Refusals::Fatal
            },
            lmtp: rng.gen_bool(0.3),
            bdat: rng.gen_bool(0.3),
            pipelined,
            proven: false,
            recipients: rng.gen_range(1..=4),
        },
        reuse: rng.gen_bool(0.6),
        messages: rng.gen_range(1..=6),
        halt_after: rng.gen_bool(0.15).then(|| rng.gen_range(0..20)),
        write_fault: rng.gen_bool(0.2).then(|| {
            let fault = if rng.gen_bool(0.5) {
                Fault::Halt
            } else {
                Fault::Break(rng.gen_range(0..16))
            };
            (rng.gen_range(0..12), fault)
        }),
    }
}

fn wire_of(step: Step, mode: Mode) -> Wire {
    match step {
        Step::Mail => Wire::Mail,
        Step::Rcpt { .. } => Wire::Rcpt,
        Step::Data => Wire::Data,
        Step::Content => Wire::Content { bdat: mode.bdat },
        Step::LoneDot => Wire::LoneDot,
        Step::Rset => Wire::Rset,
    }
}

/// Writes what the core hands out now, in one write, and reports back
/// what went out whole; the look-ahead (-d, pipelined, DATA) goes out
/// in the same write behind the content and becomes `ahead`. The
/// `case`'s fault strikes the write it names; it is returned.
fn write(
    srv: &mut Server,
    txn: &mut Txn,
    ahead: &mut Option<Txn>,
    new_txn: &mut dyn FnMut() -> Option<Txn>,
    counts: &mut Counts,
    (writes, fault): (&mut u32, Option<(u32, Fault)>),
) -> Option<Fault> {
    // (whether it is the look-ahead's, the command)
    let mut steps = Vec::new();
    let mut new_ahead = None;
    while let Some(step) = txn.poll_send() {
        let wire = wire_of(step, txn.mode());
        steps.push((false, wire));
        if wire == (Wire::Content { bdat: false }) && ahead.is_none() {
            if let Some(mut next) = new_txn() {
                while let Some(step) = next.poll_send() {
                    steps.push((true, wire_of(step, next.mode())));
                }
                new_ahead = Some(next);
            }
        }
    }
    if steps.is_empty() {
        return None;
    }
    let hit = fault.filter(|f| f.0 == *writes).map(|f| f.1);
    *writes += 1;
    let whole = match hit {
        None => steps.len(),
        Some(Fault::Halt) => 0,
        Some(Fault::Break(k)) => k % steps.len(),
    };
    for &(_, wire) in &steps[..whole] {
        // A dead server's socket still takes bytes: the client learns
        // of the death when it reads.
        if !srv.dead {
            srv.unread.push_back(wire);
        }
        counts.rcpt_left += u64::from(wire == Wire::Rcpt);
    }
    let mine = steps[..whole].iter().filter(|s| !s.0).count();
    txn.written(mine);
    counts.take(txn);
    if let Some(mut next) = new_ahead {
        next.written(whole - mine);
        counts.take(&mut next);
        *ahead = Some(next);
    }
    hit
}

/// Runs one case; panics with the case on any broken property.
fn run_case(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let case = draw_case(&mut rng);
    let mut srv = Server {
        kindness: rng.gen_range(0.5..0.97),
        rng,
        lmtp: case.mode.lmtp,
        unread: VecDeque::new(),
        replies: VecDeque::new(),
        dead: false,
        mail_ok: false,
        rcpt_ok: 0,
        seen_mail: 0,
        seen_rcpt: 0,
        accepted: 0,
        rcpt_yes: 0,
        rcpt_no: 0,
    };
    let mut c = Counts::default();
    let mut left = case.messages;
    let mut replies_read = 0u32;
    let mut halted = false;
    let mut fatal = false;
    let mut writes = 0u32;
    'connections: while left > 0 && !fatal && !halted {
        srv.new_connection();
        let mut proven = false;
        let mut ahead: Option<Txn> = None;
        left -= 1;
        c.attempted += 1;
        let mut cur = Txn::new(Mode {
            proven,
            ..case.mode
        });
        loop {
            // One transaction, as `drive` runs it.
            loop {
                let look_ahead = case.reuse
                    && case.mode.pipelined
                    && !case.mode.bdat
                    && left > 0;
                let mode = Mode {
                    proven,
                    ..case.mode
                };
                let mut claimed = false;
                let hit = write(
                    &mut srv,
                    &mut cur,
                    &mut ahead,
                    &mut || {
                        (look_ahead && !claimed).then(|| {
                            claimed = true;
                            Txn::new(mode)
                        })
                    },
                    &mut c,
                    (&mut writes, case.write_fault),
                );
                if claimed {
                    left -= 1;
                    c.attempted += 1;
                }
                if let Some(fault) = hit {
                    // The session cuts what it drives, the look-ahead
                    // too; the run ends either way.
                    let why = if fault == Fault::Halt {
                        halted = true;
                        Cut::Halted
                    } else {
                        srv.die();
                        fatal = true;
                        Cut::Lost
                    };
                    cur.cut(why);
                    c.take(&mut cur);
                    if let Some(mut next) = ahead.take() {
                        next.cut(why);
                        c.take(&mut next);
                    }
                    break 'connections;
                }
                let Some(_) = cur.stage() else { break };
                if case.halt_after == Some(replies_read) {
                    halted = true;
                    cur.cut(Cut::Halted);
                    c.take(&mut cur);
                    if let Some(mut next) = ahead.take() {
                        next.cut(Cut::Halted);
                        c.take(&mut next);
                    }
                    break 'connections;
                }
                let Some(code) = srv.reply() else {
                    cur.cut(Cut::Lost);
                    break;
                };
                replies_read += 1;
                let heard = cur.on_reply(code);
                proven |= cur.proven();
                if heard == Heard::Fatal {
                    fatal = true;
                }
            }
            c.take(&mut cur);
            assert!(cur.is_done(), "seed {seed}: not done: {cur:?}");
            assert!(cur.fate().is_some() || fatal, "seed {seed}: no fate");
            let gone = srv.dead || cur.closed() || fatal;
            if !gone {
                assert!(
                    srv.replies.is_empty()
                        && (ahead.is_some() || srv.unread.is_empty()),
                    "seed {seed}: the core left replies unread {case:?}"
                );
            }
            match ahead.take() {
                Some(next) if !gone => cur = next,
                Some(mut next) => {
                    next.cut(Cut::Lost);
                    c.take(&mut next);
                    assert_eq!(next.fate(), Some(Fate::Failed));
                    continue 'connections;
                }
                None if gone || !case.reuse || left == 0 => {
                    continue 'connections
                }
                None => {
                    left -= 1;
                    c.attempted += 1;
                    cur = Txn::new(Mode {
                        proven,
                        ..case.mode
                    });
                }
            }
        }
    }
    let why = format!("seed {seed}: {case:?}\n{c:?}");
    // Sent exactly when it went out whole: never a RCPT a halt or a
    // broken write kept from the wire, never one missed.
    assert_eq!(c.rcpt_sent, c.rcpt_left, "rcpt sent: {why}");
    // Every RCPT written has one class; unknown only after a halt.
    let r_classes = c.rcpt_accepted + c.rcpt_rejected + c.rcpt_failed;
    assert!(r_classes <= c.rcpt_sent, "{why}");
    assert!(c.verdicts() <= c.attempted, "{why}");
    if halted || fatal {
        // Cut short: what was in flight is unknown, never lost.
        assert!(c.accepted <= srv.accepted, "{why}");
        assert!(
            srv.accepted <= c.accepted + (c.attempted - c.verdicts()),
            "{why}"
        );
        return;
    }
    assert_eq!(c.attempted, c.verdicts(), "{why}");
    assert_eq!(c.rcpt_sent, r_classes, "{why}");
    assert_eq!(c.accepted, srv.accepted, "accepted: {why}");
    assert_eq!(c.rcpt_accepted, srv.rcpt_yes, "rcpt accepted: {why}");
    assert_eq!(c.rcpt_rejected, srv.rcpt_no, "rcpt rejected: {why}");
    assert!(srv.seen_rcpt <= c.rcpt_sent, "{why}");
    assert!(srv.seen_mail <= c.attempted, "{why}");
    if !fatal {
        assert_eq!(c.attempted, case.messages, "-m honoured: {why}");
    }
}

#[test]
fn counts_equal_the_model_servers() {
    for seed in 0..CASES {
        run_case(seed);
    }
}
