//! net: connecting. Socket options in the reference's order, a connect
//! bounded by the stage timeout, and the connect gate. The connected
//! socket becomes a `transport::Transport`, which moves the bytes.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::transport::Transport;

/// Socket settings taken from the plan.
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions<'a> {
    pub window: Option<u32>,
    /// --bind: the source address (port 0) for this connection.
    pub bind: Option<&'a SockAddr>,
    pub keepalive: bool,
    /// Yield the CPU before each blocking read (see
    /// `Transport::read_by`).
    pub yield_first: bool,
}

/// Creates a socket, applies the options and connects within `timeout`.
/// `warn` receives setsockopt warnings (the reference goes on after
/// them).
pub fn connect(
    addr: &SockAddr,
    opts: SocketOptions<'_>,
    timeout: Duration,
    warn: &mut dyn FnMut(String),
) -> io::Result<Transport> {
    let domain = Domain::from(i32::from(addr.family()));
    let sock = Socket::new(domain, Type::STREAM.cloexec(), None)?;
    // RST on close: no TIME_WAIT pile-up, which would exhaust the local
    // ports in a long run without -d.
    sock.set_linger(Some(Duration::ZERO))?;
    if let Some(size) = opts.window {
        set_buffers(&sock, size as usize, warn);
    }
    if opts.keepalive {
        sock.set_keepalive(true)?;
    }
    if let Some(local) = opts.bind {
        bind_source(&sock, local)?;
    }
    let armed = connect_by(&sock, addr, Instant::now() + timeout)?;
    Ok(Transport::plain(sock, armed, opts.yield_first))
}

/// A blocking connect() that gives up at `deadline`; returns the write
/// timeout left armed.
///
/// A blocking connect() gives up after SO_SNDTIMEO (Linux: TCP and
/// UNIX alike), and the write timeout is needed later anyway: two
/// system calls fewer per connection than non-blocking connect + poll.
/// The kernel's socket timeouts grow coarse with their length, so a
/// long one is armed short (`transport::arm_for`) and connect() called
/// again while the attempt goes on (it waits for the same attempt).
fn connect_by(
    sock: &Socket,
    addr: &SockAddr,
    deadline: Instant,
) -> io::Result<Duration> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
        }
        let armed = crate::transport::arm_for(left);
        sock.set_write_timeout(Some(armed))?;
        match sock.connect(addr) {
            Ok(()) => return Ok(armed),
            // Connected while we were away.
            Err(e) if e.raw_os_error() == Some(libc::EISCONN) => {
                return Ok(armed)
            }
            Err(e) if is_connect_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Binds to a --bind source address, its port left to connect() where
/// the kernel supports that (the option is an optimisation only).
fn bind_source(sock: &Socket, local: &SockAddr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let _ = crate::sys::bind_address_no_port(sock.as_raw_fd());
    sock.bind(local)
}

/// Checks once, before the run, that `local` can be bound: an address
/// that is not this host's fails here rather than at every connect.
pub fn try_bind(local: &SockAddr) -> io::Result<()> {
    let domain = Domain::from(i32::from(local.family()));
    let sock = Socket::new(domain, Type::STREAM.cloexec(), None)?;
    sock.bind(local)
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

/// A counting gate: at most `limit` connects in flight at once (the
/// reference connects one at a time: man page NOTES, X9).
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
