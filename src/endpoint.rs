//! endpoint: the `[inet:]host[:port]` / `unix:path` operand, parsed
//! purely, then resolved once in the main thread with getaddrinfo.
//!
//! `parse` does no I/O and owns every syntax rule and error text the
//! reference prints before it looks anything up; `resolve` only calls
//! `sys` and quotes libc's gai_strerror text. All texts were observed by
//! running the 3.7.11 binary (`<argv0>: fatal: <text>`).

use socket2::SockAddr;

use crate::hostname;
use crate::sys;

/// Marks a UNIX-domain operand; case-sensitive, checked before `inet:`.
const UNIX_PREFIX: &[u8] = b"unix:";
/// Stripped once (`inet:inet:x` keeps the second one); case-sensitive.
const INET_PREFIX: &[u8] = b"inet:";
/// `sun_path` holds 108 bytes including the terminating NUL.
const SUN_PATH_LEN: usize = 108;
/// The service looked up (through NSS) when the port is empty.
const DEFAULT_SERVICE: &[u8] = b"smtp";

/// A parsed operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// A UNIX-domain socket path (may be empty: the all-NUL address).
    Unix(Vec<u8>),
    /// `host` is what getaddrinfo gets (brackets and `ipv6:` removed);
    /// port b"" means service "smtp".
    Inet { host: Vec<u8>, port: Vec<u8> },
}

/// Address family requested with -4 / -6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    fn to_libc(self) -> i32 {
        match self {
            Family::Any => libc::AF_UNSPEC,
            Family::V4 => libc::AF_INET,
            Family::V6 => libc::AF_INET6,
        }
    }
}

/// The operand with one leading `inet:` removed: the text that the
/// reference quotes in every inet error. A `unix:` operand is returned
/// unchanged.
pub fn after_inet(arg: &[u8]) -> &[u8] {
    if arg.starts_with(UNIX_PREFIX) {
        return arg;
    }
    arg.strip_prefix(INET_PREFIX).unwrap_or(arg)
}

/// Pure parse of the operand. Err is the full fatal text without
/// "fatal: ", e.g. b"[127.0.0.1: missing \"]\"".
pub fn parse(arg: &[u8]) -> Result<Spec, Vec<u8>> {
    if let Some(path) = arg.strip_prefix(UNIX_PREFIX) {
        return parse_unix(path);
    }
    let text = after_inet(arg);
    parse_inet(text).map_err(|why| [text, b": ", why].concat())
}

fn parse_unix(path: &[u8]) -> Result<Spec, Vec<u8>> {
    if path.len() >= SUN_PATH_LEN {
        return Err([&b"unix-domain name too long: "[..], path].concat());
    }
    Ok(Spec::Unix(path.to_vec()))
}

/// The split of an inet operand before any check.
struct Parts<'a> {
    host: &'a [u8],
    port: &'a [u8],
    bracketed: bool,
}

/// Splits, then checks the host before the port (as the reference does:
/// `bad_host!:12ab` reports the host).
fn parse_inet(text: &[u8]) -> Result<Spec, &'static [u8]> {
    let parts = split(text)?;
    let host = check_host(&parts)?;
    check_port(parts.port)?;
    Ok(Spec::Inet {
        host: host.to_vec(),
        port: parts.port.to_vec(),
    })
}

/// `[host]`, `[host]:`, `[host]:port`; otherwise split at the rightmost
/// colon, so `::1:25` is host `::1`, port 25.
fn split(text: &[u8]) -> Result<Parts<'_>, &'static [u8]> {
    let Some(rest) = text.strip_prefix(b"[") else {
        let (host, port) = match text.iter().rposition(|&c| c == b':') {
            Some(colon) => (&text[..colon], &text[colon + 1..]),
            None => (text, &b""[..]),
        };
        return Ok(Parts {
            host,
            port,
            bracketed: false,
        });
    };
    let close = rest
        .iter()
        .position(|&c| c == b']')
        .ok_or(&b"missing \"]\""[..])?;
    let port = match &rest[close + 1..] {
        [] => &b""[..],
        [b':', port @ ..] => port,
        _ => return Err(b"garbage after \"]\""),
    };
    Ok(Parts {
        host: &rest[..close],
        port,
        bracketed: true,
    })
}

/// `[ipv6:addr]` must pass the IPv6 syntax check; any other host must be
/// a valid hostname or address. Returns what getaddrinfo should get.
fn check_host<'a>(parts: &Parts<'a>) -> Result<&'a [u8], &'static [u8]> {
    if parts.bracketed {
        if let Some(addr) = hostname::strip_ipv6_tag(parts.host) {
            return match hostname::valid_ipv6_hostaddr(addr) {
                Ok(()) => Ok(addr),
                Err(_) => Err(b"malformed IPv6 address"),
            };
        }
    } else if parts.host.is_empty() {
        // `[]` is not "missing": it fails the check below instead.
        return Err(b"missing host information");
    }
    let host = parts.host;
    if hostname::valid_hostname(host).is_ok()
        || hostname::valid_hostaddr(host).is_ok()
    {
        Ok(host)
    } else {
        Err(b"valid hostname or network address required")
    }
}

/// A port that starts with a digit must be all digits. Anything else
/// (`+25`, ` 25`, `-25`, `smtp`) goes to getaddrinfo as a service name,
/// where glibc's own parsing decides.
fn check_port(port: &[u8]) -> Result<(), &'static [u8]> {
    match port.first() {
        Some(c) if c.is_ascii_digit() && !all_digits(port) => {
            Err(b"garbage after numerical service")
        }
        _ => Ok(()),
    }
}

fn all_digits(text: &[u8]) -> bool {
    !text.is_empty() && text.iter().all(u8::is_ascii_digit)
}

/// Resolve (getaddrinfo once, first result only, in the main thread) to
/// a socket address. Err is the full fatal text, e.g.
/// b"localhost:41453: Name or service not known"; `arg_after_inet` is
/// the operand as the reference quotes it (see `after_inet`).
pub fn resolve(
    spec: &Spec,
    arg_after_inet: &[u8],
    family: Family,
) -> Result<SockAddr, Vec<u8>> {
    match spec {
        Spec::Unix(path) => sys::unix_sockaddr(path).ok_or_else(|| {
            [&b"unix-domain name too long: "[..], path].concat()
        }),
        Spec::Inet { host, port } => {
            let (service, kind) = match port.is_empty() {
                true => (DEFAULT_SERVICE, sys::Service::Name),
                false if all_digits(port) => (&port[..], sys::Service::Number),
                false => (&port[..], sys::Service::Name),
            };
            sys::getaddrinfo_first(host, service, family.to_libc(), kind)
                .map_err(|e| [arg_after_inet, b": ", &e.text].concat())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn inet(host: &[u8], port: &[u8]) -> Result<Spec, Vec<u8>> {
        Ok(Spec::Inet {
            host: host.to_vec(),
            port: port.to_vec(),
        })
    }

    fn fatal(text: &[u8]) -> Result<Spec, Vec<u8>> {
        Err(text.to_vec())
    }

    type Case = (&'static [u8], Result<Spec, Vec<u8>>);

    /// Each row: operand, and the parse the reference's behaviour implies
    /// (observed: it connected to that host/port, or printed that text).
    #[test]
    fn parse_observed_forms() {
        let cases: &[Case] = &[
            (b"127.0.0.1:37887", inet(b"127.0.0.1", b"37887")),
            (b"inet:127.0.0.1:1", inet(b"127.0.0.1", b"1")),
            (b"inet:127.0.0.1", inet(b"127.0.0.1", b"")),
            (b"localhost:1", inet(b"localhost", b"1")),
            (b"[127.0.0.1]:1", inet(b"127.0.0.1", b"1")),
            (b"[127.0.0.1]:", inet(b"127.0.0.1", b"")),
            (b"[127.0.0.1]", inet(b"127.0.0.1", b"")),
            (b"127.0.0.1:", inet(b"127.0.0.1", b"")),
            (b"[::1]:1", inet(b"::1", b"1")),
            (b"[::1]", inet(b"::1", b"")),
            (b"::1:1", inet(b"::1", b"1")),
            (b":::1", inet(b"::", b"1")),
            (b"[ipv6:::1]:1", inet(b"::1", b"1")),
            (b"[IPv6:::1]:1", inet(b"::1", b"1")),
            (b"[ipv6:::1]", inet(b"::1", b"")),
            (b"[ipv6:1:2:3]:1", inet(b"1:2:3", b"1")),
            (b"[localhost]:1", inet(b"localhost", b"1")),
            (b"[x]", inet(b"x", b"")),
            (b"[ipv6]:1", inet(b"ipv6", b"1")),
            (b"0x7f.1:1", inet(b"0x7f.1", b"1")),
            (b"0177.0.0.1:1", inet(b"0177.0.0.1", b"1")),
            (b"under_score:1", inet(b"under_score", b"1")),
            (b"1:2:3:4:5:6:7:1", inet(b"1:2:3:4:5:6:7", b"1")),
            (b"127.0.0.1:+25", inet(b"127.0.0.1", b"+25")),
            (b"127.0.0.1:-25", inet(b"127.0.0.1", b"-25")),
            (b"127.0.0.1: 25", inet(b"127.0.0.1", b" 25")),
            (b"127.0.0.1:smtp", inet(b"127.0.0.1", b"smtp")),
            (b"127.0.0.1:00025", inet(b"127.0.0.1", b"00025")),
            (b"[127.0.0.1]::", inet(b"127.0.0.1", b":")),
            (b"UNIX:/x", inet(b"UNIX", b"/x")),
            (b"inet:unix:/x", inet(b"unix", b"/x")),
            (b"inet:inet:x", inet(b"inet", b"x")),
            (b"x", inet(b"x", b"")),
            (b"unix:/nonexistent", Ok(Spec::Unix(b"/nonexistent".to_vec()))),
            (b"unix:", Ok(Spec::Unix(Vec::new()))),
            (b"unix:inet:x", Ok(Spec::Unix(b"inet:x".to_vec()))),
            (b"[127.0.0.1", fatal(b"[127.0.0.1: missing \"]\"")),
            (b"[127.0.0.1:12ab", fatal(b"[127.0.0.1:12ab: missing \"]\"")),
            (b"[", fatal(b"[: missing \"]\"")),
            (b"inet:[1.2.3.4", fatal(b"[1.2.3.4: missing \"]\"")),
            (b"[127.0.0.1]x", fatal(b"[127.0.0.1]x: garbage after \"]\"")),
            (b"[127.0.0.1]x:1", fatal(b"[127.0.0.1]x:1: garbage after \"]\"")),
            (b"[127.0.0.1]]:1", fatal(b"[127.0.0.1]]:1: garbage after \"]\"")),
            (b"[a]b]:1", fatal(b"[a]b]:1: garbage after \"]\"")),
            (b"[]x", fatal(b"[]x: garbage after \"]\"")),
            (b"[]]", fatal(b"[]]: garbage after \"]\"")),
            (b":42305", fatal(b":42305: missing host information")),
            (b":12ab", fatal(b":12ab: missing host information")),
            (b":", fatal(b":: missing host information")),
            (b"", fatal(b": missing host information")),
            (b"inet:", fatal(b": missing host information")),
            (b"inet::1", fatal(b":1: missing host information")),
            (b"127.0.0.1:12ab", fatal(b"127.0.0.1:12ab: garbage after numerical service")),
            (b"127.0.0.1:0x19", fatal(b"127.0.0.1:0x19: garbage after numerical service")),
            (b"127.0.0.1:25 ", fatal(b"127.0.0.1:25 : garbage after numerical service")),
            (b"127.0.0.1:25/tcp", fatal(b"127.0.0.1:25/tcp: garbage after numerical service")),
            (b"[127.0.0.1]:1:2", fatal(b"[127.0.0.1]:1:2: garbage after numerical service")),
            (b"nosuch:12ab", fatal(b"nosuch:12ab: garbage after numerical service")),
            (b"[ipv6:zz]:1", fatal(b"[ipv6:zz]:1: malformed IPv6 address")),
            (b"[ipv6:zz]:12ab", fatal(b"[ipv6:zz]:12ab: malformed IPv6 address")),
            (b"[ipv6:127.0.0.1]:1", fatal(b"[ipv6:127.0.0.1]:1: malformed IPv6 address")),
            (b"[ipv6:1::2::3]:1", fatal(b"[ipv6:1::2::3]:1: malformed IPv6 address")),
            (b"[ipv6:]:1", fatal(b"[ipv6:]:1: malformed IPv6 address")),
            (b"[ipv6:fe80::1%lo]:1", fatal(b"[ipv6:fe80::1%lo]:1: malformed IPv6 address")),
            (b"bad_host!:34397", fatal(b"bad_host!:34397: valid hostname or network address required")),
            (b"bad_host!:12ab", fatal(b"bad_host!:12ab: valid hostname or network address required")),
            (b"::1", fatal(b"::1: valid hostname or network address required")),
            (b"::", fatal(b"::: valid hostname or network address required")),
            (b"[]:25", fatal(b"[]:25: valid hostname or network address required")),
            (b"[]", fatal(b"[]: valid hostname or network address required")),
            (b"[ ]:1", fatal(b"[ ]:1: valid hostname or network address required")),
            (b"]", fatal(b"]: valid hostname or network address required")),
            (b"inet:inet:127.0.0.1:1", fatal(b"inet:127.0.0.1:1: valid hostname or network address required")),
            (b"INET:127.0.0.1:1", fatal(b"INET:127.0.0.1:1: valid hostname or network address required")),
            (b"a-:1", fatal(b"a-:1: valid hostname or network address required")),
            (b"1234:1", fatal(b"1234:1: valid hostname or network address required")),
            (b"127.1:1", fatal(b"127.1:1: valid hostname or network address required")),
            (b"256.1.1.1:1", fatal(b"256.1.1.1:1: valid hostname or network address required")),
            (b"127.0.0.1.:1", fatal(b"127.0.0.1.:1: valid hostname or network address required")),
            (b"localhost.:1", fatal(b"localhost.:1: valid hostname or network address required")),
            (b"[1.2.3]:1", fatal(b"[1.2.3]:1: valid hostname or network address required")),
            (b"[bad_host!]:1", fatal(b"[bad_host!]:1: valid hostname or network address required")),
            (b"fe80::1%lo:1", fatal(b"fe80::1%lo:1: valid hostname or network address required")),
            (b"[fe80::1%lo]:1", fatal(b"[fe80::1%lo]:1: valid hostname or network address required")),
            (b"127.0.0.1::", fatal(b"127.0.0.1::: valid hostname or network address required")),
            (b"127.0.0.1]:1", fatal(b"127.0.0.1]:1: valid hostname or network address required")),
            (b"x[y]:1", fatal(b"x[y]:1: valid hostname or network address required")),
            (b"ipv6:::1:1", fatal(b"ipv6:::1:1: valid hostname or network address required")),
            (b"a\xe9:1", fatal(b"a\xe9:1: valid hostname or network address required")),
        ];
        for (arg, want) in cases {
            assert_eq!(
                &parse(arg),
                want,
                "operand {:?}",
                String::from_utf8_lossy(arg)
            );
        }
    }

    #[test]
    fn unix_path_of_108_bytes_is_too_long() {
        let ok = [&b"unix:"[..], &[b'a'; 107]].concat();
        assert_eq!(parse(&ok), Ok(Spec::Unix(vec![b'a'; 107])));
        let long = vec![b'a'; 108];
        let want = [&b"unix-domain name too long: "[..], &long].concat();
        assert_eq!(parse(&[&b"unix:"[..], &long].concat()), Err(want.clone()));
        let spec = Spec::Unix(long);
        assert_eq!(resolve(&spec, b"", Family::Any).err(), Some(want));
    }

    #[test]
    fn hostname_length_limits_apply_to_hosts() {
        let host = [b"a".repeat(63), b":1".to_vec()].concat();
        assert!(parse(&host).is_ok());
        let host = [b"a".repeat(64), b":1".to_vec()].concat();
        assert!(parse(&host).is_err());
        let mut name = b"a.".repeat(128);
        name.pop();
        assert!(parse(&[name.clone(), b":1".to_vec()].concat()).is_ok());
        name.extend_from_slice(b"a:1");
        assert!(parse(&name).is_err());
    }

    #[test]
    fn after_inet_strips_once_and_leaves_unix() {
        assert_eq!(after_inet(b"inet:inet:x"), b"inet:x");
        assert_eq!(after_inet(b"inet:[::1]:1"), b"[::1]:1");
        assert_eq!(after_inet(b"unix:/x"), b"unix:/x");
        assert_eq!(after_inet(b"INET:x"), b"INET:x");
    }

    fn resolved(arg: &[u8], family: Family) -> Result<SocketAddr, Vec<u8>> {
        let spec = parse(arg)?;
        let addr = resolve(&spec, after_inet(arg), family)?;
        addr.as_socket().ok_or_else(|| b"not inet".to_vec())
    }

    /// Ports observed with strace on the reference's connect().
    #[test]
    fn resolve_ports_like_glibc() {
        for (arg, want) in [
            (&b"127.0.0.1:99999"[..], "127.0.0.1:34463"),
            (b"127.0.0.1:65536", "127.0.0.1:0"),
            (b"127.0.0.1:4294967321", "127.0.0.1:25"),
            (b"127.0.0.1:+25", "127.0.0.1:25"),
            (b"127.0.0.1: 25", "127.0.0.1:25"),
            (b"127.0.0.1:-0", "127.0.0.1:0"),
            (b"127.0.0.1:00025", "127.0.0.1:25"),
            (b"[::1]:99999", "[::1]:34463"),
            (b":::1", "[::]:1"),
            (b"[ipv6:0:0:0:0:0:0:0:1]:1", "[::1]:1"),
            (b"127.000.000.001:1", "127.0.0.1:1"),
            (b"0177.0.0.1:1", "127.0.0.1:1"),
        ] {
            let got = resolved(arg, Family::Any);
            assert_eq!(got, Ok(want.parse().unwrap()), "{arg:?}");
        }
    }

    #[test]
    fn resolve_errors_quote_the_operand_after_inet() {
        for (arg, family, want) in [
            (&b"127.0.0.1:-25"[..], Family::Any, &b"127.0.0.1:-25: Servname not supported for ai_socktype"[..]),
            (b"127.0.0.1:+", Family::Any, b"127.0.0.1:+: Servname not supported for ai_socktype"),
            (b"127.0.0.1:99999999999999999999", Family::Any, b"127.0.0.1:99999999999999999999: Servname not supported for ai_socktype"),
            (b"inet:127.0.0.1:nosuchservice", Family::Any, b"127.0.0.1:nosuchservice: Servname not supported for ai_socktype"),
            (b"[127.0.0.1]::", Family::Any, b"[127.0.0.1]::: Servname not supported for ai_socktype"),
            (b"", Family::Any, b": missing host information"),
            (b"::1:1", Family::V4, b"::1:1: Address family for hostname not supported"),
            (b"[::1]:43175", Family::V4, b"[::1]:43175: Address family for hostname not supported"),
            (b"127.0.0.1:44637", Family::V6, b"127.0.0.1:44637: Address family for hostname not supported"),
            (b"[ipv6:::1]:1", Family::V4, b"[ipv6:::1]:1: Address family for hostname not supported"),
            (b"[127.0.0.1]:1", Family::V6, b"[127.0.0.1]:1: Address family for hostname not supported"),
        ] {
            assert_eq!(resolved(arg, family), Err(want.to_vec()), "{arg:?}");
        }
    }

    #[test]
    fn resolve_families() {
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(resolved(b"127.0.0.1:1", Family::V4), Ok(v4));
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(resolved(b"[::1]:1", Family::V6), Ok(v6));
        // glibc maps a v4-mapped literal to IPv4 under AF_INET.
        assert_eq!(resolved(b"[ipv6:::ffff:127.0.0.1]:1", Family::V4), Ok(v4));
    }

    #[test]
    fn resolve_unix_is_full_length() {
        let addr = resolve(&Spec::Unix(Vec::new()), b"unix:", Family::Any);
        let addr = addr.unwrap();
        assert_eq!(addr.len(), 110);
        assert!(addr.as_socket().is_none());
    }

    #[test]
    fn every_prefix_and_byte_is_panic_free() {
        let samples: [&[u8]; 4] = [
            b"inet:[ipv6:::1]:25",
            b"unix:/tmp/x",
            b"[127.0.0.1]:12ab",
            b"a.b-c:+25",
        ];
        for s in samples {
            for end in 0..=s.len() {
                let _ = parse(&s[..end]);
                let _ = parse(&s[end..]);
            }
        }
        for b in 0..=255u8 {
            let _ = parse(&[b]);
            let _ = parse(&[b'[', b]);
            let _ = parse(&[b'[', b, b']', b]);
        }
    }
}
