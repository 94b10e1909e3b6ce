//! net: sockets. Connecting (socket options in the reference's order, the
//! -C retry budget, the connect gate) and the one `Conn` type that moves
//! bytes for TCP and UNIX sockets alike, always against a deadline.
//!
//! Deadlines (X1): before a read or write the socket timeout is set to
//! the time left, and `WouldBlock` becomes `TimedOut`. The timeout last
//! set is remembered, so the common case (a fresh stage, the full timeout
//! already in force) costs no extra system call.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::lineio::Source;

/// How far a socket timeout may differ from the time left before the
/// deadline before it is set again: replies come much faster than any
/// timeout, so each stage would otherwise cost one more system call.
const SLACK: Duration = Duration::from_millis(20);

/// A connected socket with remembered timeouts.
pub struct Conn {
    sock: Socket,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    yield_first: bool,
}

/// Socket settings taken from the plan.
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions {
    pub window: Option<u32>,
    pub keepalive: bool,
    /// Yield the CPU before each blocking read (see `Conn::read_by`).
    pub yield_first: bool,
}

/// Creates a socket, applies the options and connects within `timeout`.
/// `warn` receives setsockopt warnings (the reference goes on after
/// them).
pub fn connect(
    addr: &SockAddr,
    opts: SocketOptions,
    timeout: Duration,
    warn: &mut dyn FnMut(String),
) -> io::Result<Conn> {
    let domain = Domain::from(i32::from(addr.family()));
    let sock = Socket::new(domain, Type::STREAM.cloexec(), None)?;
    // RST on close: no TIME_WAIT pile-up without -d (spec §9, F37).
    sock.set_linger(Some(Duration::ZERO))?;
    if let Some(size) = opts.window {
        set_buffers(&sock, size as usize, warn);
    }
    if opts.keepalive {
        sock.set_keepalive(true)?;
    }
    // A blocking connect() gives up after SO_SNDTIMEO (Linux: TCP and
    // UNIX alike), and the write timeout is needed later anyway: two
    // system calls fewer per connection than non-blocking connect + poll.
    sock.set_write_timeout(Some(timeout))?;
    match sock.connect(addr) {
        Ok(()) => {}
        Err(e) if is_connect_timeout(&e) => {
            return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT))
        }
        Err(e) => return Err(e),
    }
    Ok(Conn {
        sock,
        read_timeout: None,
        write_timeout: Some(timeout),
        yield_first: opts.yield_first,
    })
}

/// What a blocking connect() returns when SO_SNDTIMEO runs out.
fn is_connect_timeout(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINPROGRESS | libc::EAGAIN | libc::EALREADY)
    )
}

fn set_buffers(sock: &Socket, size: usize, warn: &mut dyn FnMut(String)) {
    if let Err(e) = sock.set_send_buffer_size(size) {
        warn(format!(
            "setsockopt SO_SNDBUF {size}: {}",
            crate::error::io_text(&e)
        ));
    }
    if let Err(e) = sock.set_recv_buffer_size(size) {
        warn(format!(
            "setsockopt SO_RCVBUF {size}: {}",
            crate::error::io_text(&e)
        ));
    }
}

/// The time left before `deadline`, or `TimedOut` when none is.
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

/// Whether a remembered timeout can stand for `want`: within the slack
/// either way. One that is shorter may fire early; `early` then re-arms
/// with the exact time left and the call is made again.
fn close_enough(have: Option<Duration>, want: Duration) -> bool {
    let slack = SLACK.max(want / 64);
    have.is_some_and(|h| h.abs_diff(want) <= slack)
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

impl Conn {
    /// Whether reads yield the CPU first (see `read_by`).
    pub fn set_yield(&mut self, on: bool) {
        self.yield_first = on;
    }

    /// The socket's descriptor number (it goes into Message-Id).
    pub fn fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }

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

    /// Writes all of `bufs` (in as few system calls as the kernel
    /// allows) before `deadline`.
    pub fn write_all_by(
        &mut self,
        bufs: &[&[u8]],
        deadline: Instant,
    ) -> io::Result<()> {
        let mut slices: Vec<IoSlice> = bufs
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| IoSlice::new(b))
            .collect();
        let mut rest = &mut slices[..];
        let mut exact = false;
        while !rest.is_empty() {
            self.arm_write(deadline, exact)?;
            match (&self.sock).write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if early(&e, deadline) => exact = true,
                Err(e) => return Err(timed_out(e)),
            }
        }
        Ok(())
    }
}

impl Source for Conn {
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
        let mut exact = false;
        loop {
            self.arm_read(deadline, exact)?;
            match (&self.sock).read(buf) {
                Err(e) if early(&e, deadline) => exact = true,
                other => return other.map_err(timed_out),
            }
        }
    }
}

/// A counting gate: at most `limit` connects in flight at once (X9).
///
/// The common case (a free place) is one atomic operation; the mutex and
/// condition variable are touched only when a session has to wait, so
/// an uncontended connect costs no futex system call.
pub struct Gate {
    in_flight: AtomicU32,
    waiting: AtomicU32,
    lock: Mutex<()>,
    freed: Condvar,
    limit: u32,
}

impl Gate {
    pub fn new(limit: u32) -> Self {
        Gate {
            in_flight: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            lock: Mutex::new(()),
            freed: Condvar::new(),
            limit: limit.max(1),
        }
    }

    /// Runs `f` while holding one of the gate's places.
    pub fn pass<T>(&self, f: impl FnOnce() -> T) -> T {
        if !self.try_enter() {
            self.enter_slowly();
        }
        let out = f();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.freed.notify_one();
        }
        out
    }

    fn try_enter(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn enter_slowly(&self) {
        let mut held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while !self.try_enter() {
            held = self.freed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
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

    #[test]
    fn gate_limits_concurrency() {
        let gate = Gate::new(2);
        let now = AtomicU32::new(0);
        let peak = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    gate.pass(|| {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 2);
    }
}
