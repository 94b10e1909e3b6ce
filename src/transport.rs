//! transport: the one byte stream a session talks over, plain or TLS,
//! always against a deadline.
//!
//! `Transport` owns the connected socket and, once TLS is on, a rustls
//! client connection layered over it. STARTTLS upgrades it in place
//! (`start_tls`); `--tls-wrapper` does the same before the banner.
//! Reads go through `lineio::Source`, so the line reader's byte bounds
//! hold inside TLS exactly as outside.
//!
//! Deadlines: before every system call the socket timeout is set to the
//! time left, and `WouldBlock` becomes `TimedOut`. rustls reads and
//! writes the socket several times per record and per handshake, and
//! each of those calls is re-armed the same way, so a stalled peer is
//! caught at the deadline whatever state TLS is in. The timeout last set
//! is remembered, so the common case (a fresh stage, the full timeout
//! already in force) costs no extra system call.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind};
use socket2::Socket;

use crate::lineio::Source;

/// How much shorter than the time left a remembered socket timeout may
/// be and still stand: it fires early and is then re-armed exactly, so
/// this costs a wake-up, never precision. Replies come much faster than
/// any timeout, so each stage would otherwise cost one more system call.
const SLACK: Duration = Duration::from_millis(20);

/// How much longer than the time left a remembered socket timeout may
/// be and still stand: all a read or write can overrun its deadline by
/// (the kernel rounds up to a tick on top). A new stage finds the last
/// one's full timeout in force, a few microseconds longer than its own
/// time left; anything more is set again.
const OVERRUN: Duration = Duration::from_millis(10);

/// The connected socket with its remembered timeouts.
struct Wire {
    sock: Socket,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// A session's connection: the socket, and TLS once it is on.
pub struct Transport {
    wire: Wire,
    tls: Option<Box<ClientConnection>>,
    yield_first: bool,
}

/// What a finished handshake negotiated (for -v and the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// `TLSv1_3`, `TLSv1_2`.
    pub version: String,
    /// The IANA-style suite name rustls reports.
    pub cipher: String,
    pub resumed: bool,
}

/// Why a TLS handshake did not finish.
#[derive(Debug)]
pub enum TlsFailure {
    /// The peer closed, reset, or the deadline passed: an I/O error.
    Io(io::Error),
    /// rustls refused what the peer sent (bad certificate, junk, alert).
    Protocol(rustls::Error),
}

/// Whether a remembered timeout can stand for `want`: at most `OVERRUN`
/// longer (so a deadline holds to within that at any --timeout), or
/// somewhat shorter (it fires early; the caller then re-arms with the
/// exact time left and calls again).
fn close_enough(have: Option<Duration>, want: Duration) -> bool {
    let early = SLACK.max(want / 64);
    have.is_some_and(|h| h <= want + OVERRUN && h + early >= want)
}

/// The time left before `deadline` as a socket timeout (see `arm_for`),
/// or `TimedOut` when none is left.
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(arm_for(left))
    }
}

/// Time left below which a socket timeout is armed as it is.
const FINE: Duration = Duration::from_millis(200);

/// The socket timeout to arm with `left` before the deadline.
///
/// The kernel runs SO_RCVTIMEO and SO_SNDTIMEO on its timer wheel,
/// which fires a timer of T up to T/8 late (its slots grow coarser
/// with distance: 300 s can end 30 s late). So a long wait is armed
/// short, to wake at the latest FINE/2 before the deadline, and then
/// armed again with what is left; the last wait is at most FINE long,
/// where the wheel is exact to a few milliseconds. A 300 s stall wakes
/// about five times.
pub(crate) fn arm_for(left: Duration) -> Duration {
    if left <= FINE {
        left
    } else {
        (left - FINE / 2) * 8 / 9
    }
}

/// A socket timeout that fired before the deadline.
fn early(e: &io::Error, deadline: Instant) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) && Instant::now() < deadline
}

fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut.into(),
        _ => e,
    }
}

impl Wire {
    fn arm_read(&mut self, deadline: Instant, exact: bool) -> io::Result<()> {
        let want = left(deadline)?;
        if exact || !close_enough(self.read_timeout, want) {
            self.sock.set_read_timeout(Some(want))?;
            self.read_timeout = Some(want);
        }
        Ok(())
    }

    fn arm_write(&mut self, deadline: Instant, exact: bool) -> io::Result<()> {
        let want = left(deadline)?;
        if exact || !close_enough(self.write_timeout, want) {
            self.sock.set_write_timeout(Some(want))?;
            self.write_timeout = Some(want);
        }
        Ok(())
    }

    /// One read() before `deadline` (0 at end of stream).
    fn read_by(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> io::Result<usize> {
        let mut exact = false;
        loop {
            self.arm_read(deadline, exact)?;
            match (&self.sock).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if early(&e, deadline) => exact = true,
                other => return other.map_err(timed_out),
            }
        }
    }

    /// One writev() before `deadline`.
    fn write_by(
        &mut self,
        bufs: &[IoSlice<'_>],
        deadline: Instant,
    ) -> io::Result<usize> {
        let mut exact = false;
        loop {
            self.arm_write(deadline, exact)?;
            match (&self.sock).write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if early(&e, deadline) => exact = true,
                other => return other.map_err(timed_out),
            }
        }
    }

    /// Writes all of `bufs` (in as few system calls as the kernel
    /// allows) before `deadline`; `wrote` counts the bytes the kernel
    /// took, also when the write fails part-way.
    fn write_all_by(
        &mut self,
        bufs: &[&[u8]],
        deadline: Instant,
        wrote: &mut usize,
    ) -> io::Result<()> {
        let mut slices: Vec<IoSlice> = bufs
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| IoSlice::new(b))
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = self.write_by(rest, deadline)?;
            *wrote += n;
            IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }
}

/// The socket as rustls sees it: every read and write re-armed against
/// one deadline.
struct Deadlined<'a> {
    wire: &'a mut Wire,
    deadline: Instant,
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.wire.read_by(buf, self.deadline)
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wire.write_by(&[IoSlice::new(buf)], self.deadline)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.wire.write_by(bufs, self.deadline)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends whatever TLS records rustls has queued.
fn flush_tls(
    tls: &mut ClientConnection,
    wire: &mut Wire,
    deadline: Instant,
) -> io::Result<()> {
    let mut io = Deadlined { wire, deadline };
    while tls.wants_write() {
        tls.write_tls(&mut io)?;
    }
    Ok(())
}

/// rustls's verdict on received records as an I/O error (for reads
/// after the handshake; the handshake keeps the rustls error).
fn protocol_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Transport {
    /// Wraps a connected socket whose write timeout is `write_timeout`.
    pub fn plain(
        sock: Socket,
        write_timeout: Duration,
        yield_first: bool,
    ) -> Self {
        Transport {
            wire: Wire {
                sock,
                read_timeout: None,
                write_timeout: Some(write_timeout),
            },
            tls: None,
            yield_first,
        }
    }

    /// Whether reads yield the CPU first (see `read_by`).
    pub fn set_yield(&mut self, on: bool) {
        self.yield_first = on;
    }

    /// The socket's descriptor number (it goes into Message-Id).
    pub fn fd(&self) -> i32 {
        self.wire.sock.as_raw_fd()
    }

    /// The socket, for address queries (PROXY headers).
    pub fn socket(&self) -> &Socket {
        &self.wire.sock
    }

    /// Whether the peer has sent bytes not read yet (a reply waiting),
    /// without blocking.
    pub fn has_incoming(&self) -> bool {
        let mut one = [std::mem::MaybeUninit::<u8>::uninit()];
        let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
        matches!(self.wire.sock.recv_with_flags(&mut one, flags), Ok(n) if n > 0)
    }

    /// Whether the bytes now go through TLS.
    pub fn is_encrypted(&self) -> bool {
        self.tls.is_some()
    }

    /// Starts TLS on this connection (STARTTLS, or SMTPS before the
    /// banner) and finishes the handshake before `deadline`. On failure
    /// the connection is unusable and must be dropped.
    pub fn start_tls(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        deadline: Instant,
    ) -> Result<Handshake, TlsFailure> {
        let mut tls = ClientConnection::new(config, name)
            .map_err(TlsFailure::Protocol)?;
        while tls.is_handshaking() {
            flush_tls(&mut tls, &mut self.wire, deadline)
                .map_err(TlsFailure::Io)?;
            if !tls.is_handshaking() {
                break;
            }
            let mut io = Deadlined {
                wire: &mut self.wire,
                deadline,
            };
            match tls.read_tls(&mut io) {
                Ok(0) => {
                    return Err(TlsFailure::Io(
                        io::ErrorKind::UnexpectedEof.into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(TlsFailure::Io(e)),
            }
            if let Err(e) = tls.process_new_packets() {
                // Tell the server why (the alert), best effort.
                let _ = flush_tls(&mut tls, &mut self.wire, deadline);
                return Err(TlsFailure::Protocol(e));
            }
        }
        // The client's last flight (TLS 1.3: its Finished) stays queued:
        // it goes out with the next command (EHLO after STARTTLS), or
        // before the next read (the SMTPS banner), one write fewer.
        let done = Handshake {
            // `TLSv1_3` as Postfix and OpenSSL write it: `TLSv1.3`.
            version: tls.protocol_version().map_or_else(
                || "unknown".into(),
                |v| format!("{v:?}").replace('_', "."),
            ),
            cipher: tls.negotiated_cipher_suite().map_or_else(
                || "unknown".into(),
                |s| format!("{:?}", s.suite()),
            ),
            resumed: tls.handshake_kind() == Some(HandshakeKind::Resumed),
        };
        self.tls = Some(Box::new(tls));
        Ok(done)
    }

    /// Ends TLS politely (close_notify), best effort; a plain
    /// connection has nothing to say.
    pub fn close_notify(&mut self, deadline: Instant) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = flush_tls(tls, &mut self.wire, deadline);
        }
    }

    /// Writes all of `bufs` before `deadline`: in as few system calls
    /// as the kernel allows in plaintext, as TLS records otherwise.
    /// `wrote` counts the bytes that may have left, also when the write
    /// fails part-way: in plaintext what the kernel took; with TLS what
    /// rustls took (a record holding them may have gone out).
    pub fn write_all_by(
        &mut self,
        bufs: &[&[u8]],
        deadline: Instant,
        wrote: &mut usize,
    ) -> io::Result<()> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.wire.write_all_by(bufs, deadline, wrote);
        };
        // Everything into rustls first, so that a command group or a
        // message goes out in as few records and writes as plaintext
        // would (separate small writes meet Nagle and delayed ACKs);
        // when its buffer is full, send what it holds and go on.
        for buf in bufs {
            let mut rest = *buf;
            while !rest.is_empty() {
                let n = tls.writer().write(rest)?;
                *wrote += n;
                if n == 0 {
                    flush_tls(tls, &mut self.wire, deadline)?;
                }
                rest = &rest[n..];
            }
        }
        flush_tls(tls, &mut self.wire, deadline)?;
        Ok(())
    }

    /// One read of plaintext from TLS: what rustls already decrypted,
    /// else more records from the socket.
    fn read_tls_by(
        tls: &mut ClientConnection,
        wire: &mut Wire,
        buf: &mut [u8],
        deadline: Instant,
    ) -> io::Result<usize> {
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: an EOF all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(0)
                }
                Err(e) => return Err(e),
            }
            // Key updates and alerts rustls wants to answer go first.
            flush_tls(tls, wire, deadline)?;
            let mut io = Deadlined { wire, deadline };
            if tls.read_tls(&mut io)? == 0 {
                return Ok(0);
            }
            tls.process_new_packets().map_err(protocol_error)?;
        }
    }
}

impl Source for Transport {
    fn read_by(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> io::Result<usize> {
        if self.yield_first {
            // With other sessions about, let the ones whose replies have
            // come run first: by the time this one runs again its own
            // reply is usually there, and the read does not sleep. A
            // sleep and wake-up per reply is the dominant client cost of
            // lock-step SMTP (measured with perf: most of the time in
            // finish_task_switch); a yield costs one cheap system call.
            std::thread::yield_now();
        }
        match self.tls.as_deref_mut() {
            None => self.wire.read_by(buf, deadline),
            Some(tls) => Self::read_tls_by(tls, &mut self.wire, buf, deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_enough_allows_only_small_overshoot() {
        let s = Duration::from_secs(300);
        assert!(close_enough(Some(s), s - Duration::from_millis(5)));
        assert!(close_enough(Some(s - Duration::from_millis(5)), s));
        assert!(!close_enough(Some(s), s - Duration::from_secs(10)));
        assert!(!close_enough(Some(s - Duration::from_secs(10)), s));
        let t = Duration::from_secs(1);
        assert!(!close_enough(Some(t), t - Duration::from_millis(30)));
        assert!(!close_enough(None, s));
    }

    /// A remembered timeout longer than the time left by more than a few
    /// milliseconds is set again at any --timeout: 300 s used to allow
    /// 4.7 s (time left / 64), and a read could overrun by that much.
    #[test]
    fn rearm_keeps_every_deadline_within_50ms() {
        let ms = Duration::from_millis;
        for secs in [1, 3, 5, 60, 300, 3600, 86_400] {
            let want = Duration::from_secs(secs);
            for over in [11, 21, 49, 50, 100, 1000, 4000] {
                assert!(
                    !close_enough(Some(want + ms(over)), want),
                    "{secs} s: a timeout {over} ms too long was kept"
                );
            }
            assert!(close_enough(Some(want + ms(1)), want), "{secs} s");
            // Armed long, a wait wakes before the deadline however late
            // the kernel's timer wheel is (up to 1/8).
            let armed = arm_for(want);
            assert!(armed * 9 / 8 + FINE / 2 <= want.max(FINE * 2), "{secs}");
            // A stage's time left just under the last full timeout.
            assert!(close_enough(Some(want), want - ms(1)), "{secs} s");
        }
        // Shorter is fine: it fires early and is re-armed exactly.
        let s = Duration::from_secs(300);
        assert!(close_enough(Some(s - Duration::from_secs(4)), s));
    }
}
