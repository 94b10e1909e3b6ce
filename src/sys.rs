//! sys: the only `unsafe` code in the crate. Thin, safe wrappers over the
//! libc calls smtp-source needs: gethostname, getaddrinfo/gai_strerror,
//! the UNIX-domain sockaddr, localtime_r, RLIMIT_NOFILE, strerror, the
//! terminal's width (TIOCGWINSZ), and the SIGINT handler of
//! --report/--duration runs.
//!
//! Every `unsafe` block has a `SAFETY:` comment. Nothing here panics or
//! formats user-visible messages beyond returning libc's own texts.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::{size_of, MaybeUninit};

use socket2::SockAddr;

/// Bytes in `sun_path` on Linux; a path must leave room for its NUL.
const SUN_PATH_LEN: usize = 108;

/// The machine hostname, exactly as gethostname(2) reports it.
pub fn gethostname() -> io::Result<Vec<u8>> {
    // 257 bytes, as the reference passes (Linux allows at most 64).
    let mut buf = [0u8; 257];
    // SAFETY: buf is writable for buf.len() bytes; gethostname writes at
    // most that many and we never read past the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(buf[..end].to_vec())
}

/// A getaddrinfo failure: its EAI_* code and gai_strerror's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfoError {
    pub code: i32,
    pub text: Vec<u8>,
}

impl AddrInfoError {
    fn from_code(code: i32) -> Self {
        AddrInfoError {
            code,
            text: gai_strerror(code),
        }
    }
}

fn gai_strerror(code: i32) -> Vec<u8> {
    // SAFETY: gai_strerror accepts any int and returns a pointer to a
    // static NUL-terminated string (or NULL, checked below).
    let ptr = unsafe { libc::gai_strerror(code) };
    if ptr.is_null() {
        return format!("Unknown error {code}").into_bytes();
    }
    // SAFETY: ptr is non-NULL and points to a static C string.
    unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec()
}

/// How getaddrinfo is to read the service: a port number, or a name
/// looked up in the services database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Number,
    Name,
}

/// getaddrinfo(host, service) with the reference's hints (family,
/// SOCK_STREAM, AI_NUMERICSERV for a `Service::Number`), first result
/// only.
pub fn getaddrinfo_first(
    host: &[u8],
    service: &[u8],
    family: i32,
    kind: Service,
) -> Result<SockAddr, AddrInfoError> {
    // An interior NUL cannot name any host; report it as glibc would an
    // unknown name instead of panicking.
    let (Ok(node), Ok(serv)) = (CString::new(host), CString::new(service))
    else {
        return Err(AddrInfoError::from_code(libc::EAI_NONAME));
    };
    // SAFETY: an all-zero addrinfo is the documented "no hints" value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = family;
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_flags = match kind {
        Service::Number => libc::AI_NUMERICSERV,
        Service::Name => 0,
    };
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: node and serv are valid C strings, hints is initialised and
    // res is a valid out-pointer; on success res owns a list we free below.
    let rc = unsafe {
        libc::getaddrinfo(node.as_ptr(), serv.as_ptr(), &hints, &mut res)
    };
    if rc != 0 {
        return Err(AddrInfoError::from_code(rc));
    }
    let first = copy_first(res);
    // SAFETY: res came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    first.ok_or_else(|| AddrInfoError::from_code(libc::EAI_NONAME))
}

/// Copies the first entry's address out of a getaddrinfo list.
fn copy_first(res: *const libc::addrinfo) -> Option<SockAddr> {
    if res.is_null() {
        return None;
    }
    // SAFETY: res is a non-NULL entry of a live getaddrinfo list.
    let ai = unsafe { &*res };
    let len = usize::try_from(ai.ai_addrlen).ok()?;
    if ai.ai_addr.is_null() || len > size_of::<libc::sockaddr_storage>() {
        return None;
    }
    // SAFETY: zeroed storage is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // SAFETY: ai_addr points to ai_addrlen readable bytes, and storage is
    // large enough for them (checked above); the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            ai.ai_addr.cast::<u8>(),
            std::ptr::addr_of_mut!(storage).cast::<u8>(),
            len,
        );
    }
    // SAFETY: storage holds a sockaddr of family ai_family and length len,
    // exactly as getaddrinfo produced it.
    Some(unsafe { SockAddr::new(storage, ai.ai_addrlen) })
}

/// A UNIX-domain address with the full 110-byte length and a NUL-padded
/// path, as the reference passes to connect(); None if the path has 108
/// bytes or more. An empty path is the all-NUL abstract address.
pub fn unix_sockaddr(path: &[u8]) -> Option<SockAddr> {
    if path.len() >= SUN_PATH_LEN {
        return None;
    }
    // SAFETY: zeroed storage is a valid sockaddr_storage (and zero pads
    // the path).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // SAFETY: sockaddr_storage is larger than and suitably aligned for
    // sockaddr_un, so viewing it as one is sound.
    let sun = unsafe {
        &mut *std::ptr::addr_of_mut!(storage).cast::<libc::sockaddr_un>()
    };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in sun.sun_path.iter_mut().zip(path) {
        *dst = src as libc::c_char;
    }
    let len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: storage now holds an AF_UNIX sockaddr_un of length len.
    Some(unsafe { SockAddr::new(storage, len) })
}

/// Local broken-down time for a Unix timestamp (localtime_r, honours TZ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// 0-11
    pub month: u32,
    pub mday: u32,
    /// 0 = Sunday
    pub wday: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    /// Seconds east of UTC.
    pub gmtoff: i64,
    /// tm_zone, e.g. b"UTC".
    pub zone: Vec<u8>,
}

extern "C" {
    // POSIX; not exported by the libc crate for Linux.
    fn tzset();
}

/// localtime_r for `unix_secs`; falls back to UTC if libc cannot
/// represent the time (only for absurd years).
pub fn localtime(unix_secs: i64) -> LocalTime {
    let Some(t) = libc::time_t::try_from(unix_secs).ok() else {
        return utc_fallback(unix_secs);
    };
    let mut tm = MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: tzset only (re)reads TZ into libc's own state; localtime_r
    // writes into our tm and returns NULL on failure.
    let ok = unsafe {
        tzset();
        !libc::localtime_r(&t, tm.as_mut_ptr()).is_null()
    };
    if !ok {
        return utc_fallback(unix_secs);
    }
    // SAFETY: localtime_r succeeded, so tm is fully initialised.
    let tm = unsafe { tm.assume_init() };
    from_tm(&tm)
}

fn from_tm(tm: &libc::tm) -> LocalTime {
    let zone = if tm.tm_zone.is_null() {
        Vec::new()
    } else {
        // SAFETY: a non-NULL tm_zone points to a NUL-terminated string
        // owned by libc's time zone state, which outlives this call.
        unsafe { CStr::from_ptr(tm.tm_zone) }.to_bytes().to_vec()
    };
    let field = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
    LocalTime {
        year: tm.tm_year.saturating_add(1900),
        month: field(tm.tm_mon),
        mday: field(tm.tm_mday),
        wday: field(tm.tm_wday),
        hour: field(tm.tm_hour),
        min: field(tm.tm_min),
        sec: field(tm.tm_sec),
        gmtoff: tm.tm_gmtoff,
        zone,
    }
}

/// UTC broken-down time computed in Rust (days-from-civil inverse), used
/// only when localtime_r fails, so that the caller never sees a panic.
fn utc_fallback(unix_secs: i64) -> LocalTime {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (year, month, mday) = civil_from_days(days);
    let clock = |v: i64| u32::try_from(v).unwrap_or(0);
    LocalTime {
        year: i32::try_from(year).unwrap_or(i32::MAX),
        month,
        mday,
        // 1970-01-01 was a Thursday (4).
        wday: clock((days + 4).rem_euclid(7)),
        hour: clock(secs / 3600),
        min: clock(secs / 60 % 60),
        sec: clock(secs % 60),
        gmtoff: 0,
        zone: b"UTC".to_vec(),
    }
}

/// (year, month 0-11, day 1-31) for days since 1970-01-01 (H. Hinnant).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month0 = if mp < 10 { mp + 2 } else { mp - 10 };
    let year = yoe + era * 400 + i64::from(month0 < 2);
    let small = |v: i64| u32::try_from(v).unwrap_or(0);
    (year, small(month0), small(day))
}

/// Raise the soft RLIMIT_NOFILE toward the hard limit so that at least
/// `want` fds fit; returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = want.min(lim.rlim_max);
    if target <= lim.rlim_cur {
        return Ok(lim.rlim_cur);
    }
    let new = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: new is a valid rlimit whose soft limit does not exceed the
    // hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(target)
}

/// strerror text of an errno, exactly as glibc's strerror (e.g.
/// "Connection refused", "Unknown error 999").
pub fn strerror(errno: i32) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for buf.len() bytes; the XSI strerror_r
    // (which the libc crate binds on glibc) NUL-terminates within it.
    let rc =
        unsafe { libc::strerror_r(errno, buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if rc != 0 && end == 0 {
        return format!("Unknown error {errno}");
    }
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The first SIGINT or SIGTERM caught (0: none yet).
static FIRST_SIGNAL: std::sync::atomic::AtomicI32 =
    std::sync::atomic::AtomicI32::new(0);
/// How many have been caught.
static SIGNALS: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    use std::sync::atomic::Ordering;
    // Only atomics here: the engine's watcher thread does the rest.
    let _ = FIRST_SIGNAL.compare_exchange(
        0,
        signal,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set flags (see `interrupted`, `signals`)
/// instead of killing the process. Used only by command lines that ask
/// for a report (man page EXIT STATUS): otherwise both keep their
/// default action, death by the signal, as in the reference (test
/// `f40_sigint_sigterm`). A signal ignored at start (a background job
/// of a shell, nohup) stays ignored, as it does in the reference.
pub fn catch_interrupt() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        if ignored(signal)? {
            continue;
        }
        // SAFETY: an all-zero sigaction is a valid starting value; the
        // handler only touches atomics, which is async-signal-safe, and
        // the mask is initialised by sigemptyset.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether `signal` is ignored (SIG_IGN) now.
fn ignored(signal: libc::c_int) -> io::Result<bool> {
    // SAFETY: a null new action only reads the current one into `old`,
    // an all-zero sigaction that the call overwrites.
    let (rc, old) = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        let rc = libc::sigaction(signal, std::ptr::null(), &mut old);
        (rc, old)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(old.sa_sigaction == libc::SIG_IGN)
}

/// Whether a SIGINT or SIGTERM has arrived since `catch_interrupt`.
pub fn interrupted() -> bool {
    signals() > 0
}

/// How many SIGINT and SIGTERM have arrived since `catch_interrupt`.
pub fn signals() -> u32 {
    SIGNALS.load(std::sync::atomic::Ordering::SeqCst)
}

/// The first signal caught: what cut the run short (a second one only
/// hurries the end).
pub fn caught() -> Option<i32> {
    let first = FIRST_SIGNAL.load(std::sync::atomic::Ordering::SeqCst);
    (first != 0).then_some(first)
}

/// `SIGINT`, `SIGTERM` (the signals `catch_interrupt` catches).
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// CPU time (user and system) the whole process has used so far.
/// IP_BIND_ADDRESS_NO_PORT: a socket bound to a source address
/// (--bind) gets its port at connect(), chosen for the 4-tuple, not at
/// bind() for the address alone; otherwise every source address would
/// give at most one ephemeral port range's worth of connections in
/// all, whatever the destinations.
pub fn bind_address_no_port(fd: std::os::fd::RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: fd is an open socket owned by the caller; `on` is a valid
    // c_int that outlives the call, and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The width in columns of the terminal on stderr (TIOCGWINSZ), or None
/// when stderr is not a terminal or the terminal does not say.
pub fn stderr_columns() -> Option<u16> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` through the pointer,
    // which points to a valid, writable winsize for the whole call; a
    // descriptor that is not a terminal makes it fail with ENOTTY.
    let rc =
        unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col)
}

pub fn process_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call; CLOCK_PROCESS_CPUTIME_ID is always available on Linux.
    let rc = unsafe {
        libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts)
    };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv6Addr, SocketAddr};

    #[test]
    fn hostname_is_nonempty_without_nul() {
        let name = gethostname().unwrap();
        assert!(!name.is_empty());
        assert!(!name.contains(&0));
    }

    #[test]
    fn numeric_lookup_returns_ipv4_port() {
        let addr = getaddrinfo_first(
            b"127.0.0.1",
            b"25",
            libc::AF_UNSPEC,
            Service::Number,
        )
        .unwrap();
        assert_eq!(addr.as_socket(), Some("127.0.0.1:25".parse().unwrap()));
    }

    #[test]
    fn ports_wrap_modulo_65536_as_in_glibc() {
        for (port, want) in [(&b"99999"[..], 34463), (b"65536", 0)] {
            let addr = getaddrinfo_first(
                b"127.0.0.1",
                port,
                libc::AF_INET,
                Service::Number,
            )
            .unwrap();
            assert_eq!(addr.as_socket().map(|a| a.port()), Some(want));
        }
    }

    #[test]
    fn ipv6_lookup_and_family_mismatch() {
        let addr =
            getaddrinfo_first(b"::1", b"1", libc::AF_INET6, Service::Number)
                .unwrap();
        let want = SocketAddr::from((Ipv6Addr::LOCALHOST, 1));
        assert_eq!(addr.as_socket(), Some(want));
        let err =
            getaddrinfo_first(b"::1", b"1", libc::AF_INET, Service::Number)
                .unwrap_err();
        assert_eq!(err.text, b"Address family for hostname not supported");
    }

    #[test]
    fn bad_services_use_gai_strerror_text() {
        let err = getaddrinfo_first(b"127.0.0.1", b"-25", 0, Service::Name)
            .unwrap_err();
        assert_eq!(err.code, libc::EAI_SERVICE);
        assert_eq!(err.text, b"Servname not supported for ai_socktype");
        let err = getaddrinfo_first(b"127.0.0.1", b"x\0y", 0, Service::Name)
            .unwrap_err();
        assert_eq!(err.text, b"Name or service not known");
    }

    #[test]
    fn unix_sockaddr_is_full_length_and_nul_padded() {
        let addr = unix_sockaddr(b"/tmp/sock").unwrap();
        assert_eq!(addr.len(), 110);
        assert_eq!(addr.family(), libc::AF_UNIX as libc::sa_family_t);
        let abstract_ = unix_sockaddr(b"").unwrap();
        assert_eq!(abstract_.len(), 110);
        assert!(unix_sockaddr(&[b'a'; 107]).is_some());
        assert!(unix_sockaddr(&[b'a'; 108]).is_none());
    }

    #[test]
    fn localtime_of_epoch_is_sane() {
        let t = localtime(0);
        // 1970-01-01T00:00Z was a Thursday; local time is within a day.
        assert!(t.year == 1969 || t.year == 1970);
        assert!(t.month < 12 && (1..=31).contains(&t.mday));
        assert!(t.hour < 24 && t.min < 60 && t.sec < 61);
        assert!(t.gmtoff.abs() <= 14 * 3600 + 1800);
        assert!(!t.zone.is_empty());
    }

    #[test]
    fn utc_fallback_known_dates() {
        let t = utc_fallback(0);
        assert_eq!((t.year, t.month, t.mday, t.wday), (1970, 0, 1, 4));
        // 2024-02-29T12:34:56Z, a Thursday.
        let t = utc_fallback(1_709_210_096);
        assert_eq!((t.year, t.month, t.mday, t.wday), (2024, 1, 29, 4));
        assert_eq!((t.hour, t.min, t.sec), (12, 34, 56));
        let t = utc_fallback(-1);
        assert_eq!((t.year, t.month, t.mday, t.hour), (1969, 11, 31, 23));
        let _ = utc_fallback(i64::MAX);
        let _ = utc_fallback(i64::MIN);
        let _ = localtime(i64::MAX);
    }

    #[test]
    fn raise_nofile_keeps_a_sufficient_limit() {
        let now = raise_nofile(0).unwrap();
        assert_eq!(raise_nofile(now).unwrap(), now);
        assert!(raise_nofile(16).unwrap() >= 16);
    }

    #[test]
    fn process_cpu_moves_forward() {
        let a = process_cpu();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu() > a);
    }

    #[test]
    fn strerror_matches_glibc() {
        assert_eq!(strerror(libc::ECONNREFUSED), "Connection refused");
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        assert_eq!(strerror(999_999), "Unknown error 999999");
    }
}
