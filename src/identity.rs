//! identity: who the client says it is, as pure values and bytes.
//! Address ranges that step one address per connection (`--xclient
//! ADDR=CIDR`, `--proxy-source`), the XCLIENT command's xtext, the
//! HAProxy PROXY header (text v1 and binary v2), and AUTH credentials
//! with their PLAIN/LOGIN encodings and the redaction -v uses.
//!
//! No I/O here: the plan builds these once, sessions only read them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// An address range that hands out one address per connection, in
/// order, wrapping around at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    base: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `ADDR` or `ADDR/PREFIX`, IPv4 or IPv6 (IPv6 optionally in
    /// brackets or with Postfix's `IPv6:` prefix). Host bits are
    /// cleared: `10.0.0.7/30` means `10.0.0.4/30`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr = addr
            .strip_prefix("IPv6:")
            .or_else(|| addr.strip_prefix("IPV6:"))
            .unwrap_or(addr);
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let base: IpAddr = addr.parse().ok()?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|&n| n <= max)?
            }
            Some(_) => return None,
        };
        let bits = host_bits(base, prefix);
        let base = from_u128(base, to_u128(base) & !bits);
        Some(Cidr { base, prefix })
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.base.is_ipv4()
    }

    /// The n-th address of the range (n counts connections; it wraps).
    pub fn nth(&self, n: u64) -> IpAddr {
        let size_mask = host_bits(self.base, self.prefix);
        let offset = u128::from(n) & size_mask;
        from_u128(self.base, to_u128(self.base) | offset)
    }
}

/// The host-part mask of a prefix (all ones for the addresses inside).
fn host_bits(addr: IpAddr, prefix: u8) -> u128 {
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let host = u32::from(width - prefix);
    if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    }
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address `n` in the family of `like`.
fn from_u128(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// xtext (RFC 1891 §5, used by XCLIENT): `+`, `=`, controls, space and
/// non-ASCII bytes become `+XX`.
pub fn xtext(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("+{b:02X}").as_bytes());
        }
    }
}

/// The XCLIENT attributes Postfix knows.
pub const XCLIENT_ATTRS: [&str; 8] = [
    "NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT",
];

/// One `--xclient` attribute: a fixed value, or an ADDR range stepped
/// per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XValue {
    Fixed(Vec<u8>),
    Range(Cidr),
}

/// `--xclient=ATTR=VALUE[,ATTR=VALUE...]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xclient {
    pub attrs: Vec<(&'static str, XValue)>,
}

impl Xclient {
    /// Parses the option's value; Err names what is wrong.
    pub fn parse(text: &[u8]) -> Result<Xclient, String> {
        let text = std::str::from_utf8(text)
            .map_err(|_| "not ASCII text".to_string())?;
        let mut attrs = Vec::new();
        for item in text.split(',') {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' is not ATTR=VALUE"))?;
            let upper = name.to_ascii_uppercase();
            let name = XCLIENT_ATTRS
                .iter()
                .find(|a| **a == upper)
                .ok_or_else(|| format!("unknown attribute '{name}'"))?;
            if attrs.iter().any(|(n, _)| n == name) {
                return Err(format!("attribute {name} given twice"));
            }
            let value = match *name {
                "ADDR" | "DESTADDR" if value.contains('/') => {
                    XValue::Range(Cidr::parse(value).ok_or_else(|| {
                        format!("bad {name} range '{value}'")
                    })?)
                }
                _ => XValue::Fixed(value.as_bytes().to_vec()),
            };
            attrs.push((*name, value));
        }
        Ok(Xclient { attrs })
    }

    /// The command's arguments for connection `n` (without `XCLIENT `),
    /// xtext-encoded; range addresses in Postfix's form (`IPV6:` in
    /// front of an IPv6 address).
    pub fn args(&self, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (name, value)) in self.attrs.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            match value {
                XValue::Fixed(v) => xtext(v, &mut out),
                XValue::Range(r) => {
                    let addr = match r.nth(n) {
                        IpAddr::V4(a) => a.to_string(),
                        IpAddr::V6(a) => format!("IPV6:{a}"),
                    };
                    xtext(addr.as_bytes(), &mut out);
                }
            }
        }
        out
    }
}

/// The PROXY protocol version (`--proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    V1,
    V2,
}

/// The v2 header's fixed signature.
pub const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The PROXY header that says `source` connected to `dest`. The two
/// must be of one family (the plan maps the destination over).
pub fn proxy_header(
    version: ProxyVersion,
    source: SocketAddr,
    dest: SocketAddr,
) -> Vec<u8> {
    match version {
        ProxyVersion::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                dest.ip(),
                source.port(),
                dest.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => proxy_v2(source, dest),
    }
}

fn proxy_v2(source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let mut out = PROXY_V2_SIGNATURE.to_vec();
    // Version 2, command PROXY.
    out.push(0x21);
    let (family, addrs): (u8, Vec<u8>) = match (source.ip(), dest.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            (0x11, [s.octets().as_slice(), &d.octets()].concat())
        }
        (s, d) => (0x21, [v6(s).octets(), v6(d).octets()].concat()),
    };
    out.push(family);
    let len = (addrs.len() + 4) as u16;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&addrs);
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&dest.port().to_be_bytes());
    out
}

fn v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// The destination a PROXY header names: the real peer, in the source's
/// family (a UNIX-socket peer becomes the loopback address, port 0).
pub fn proxy_dest(peer: Option<SocketAddr>, source_v4: bool) -> SocketAddr {
    let loopback: IpAddr = if source_v4 {
        Ipv4Addr::LOCALHOST.into()
    } else {
        Ipv6Addr::LOCALHOST.into()
    };
    match peer {
        Some(p) if p.is_ipv4() == source_v4 => p,
        Some(SocketAddr::V4(p)) if !source_v4 => {
            SocketAddr::new(p.ip().to_ipv6_mapped().into(), p.port())
        }
        Some(p) => SocketAddr::new(loopback, p.port()),
        None => SocketAddr::new(loopback, 0),
    }
}

/// One AUTH identity. Its Debug form never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub user: Vec<u8>,
    password: Vec<u8>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credential {
    pub fn new(user: Vec<u8>, password: Vec<u8>) -> Credential {
        Credential { user, password }
    }

    /// AUTH PLAIN's initial response: base64 of `\0user\0password`.
    pub fn plain(&self) -> Vec<u8> {
        let raw = [&b"\0"[..], &self.user, b"\0", &self.password].concat();
        B64.encode(raw).into_bytes()
    }

    /// AUTH LOGIN's answers: base64 of the user, then of the password.
    pub fn login(&self) -> (Vec<u8>, Vec<u8>) {
        (
            B64.encode(&self.user).into_bytes(),
            B64.encode(&self.password).into_bytes(),
        )
    }
}

/// Parses `--auth-file` text: one `user:password` per line (the first
/// colon splits; the password may contain colons). Blank lines and
/// lines starting with `#` are skipped; Err names the first bad line
/// by number, never by content (it may hold a password).
pub fn parse_auth_file(text: &[u8]) -> Result<Vec<Credential>, String> {
    let mut users = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(format!("line {}: not user:password", i + 1));
        };
        if colon == 0 {
            return Err(format!("line {}: empty user name", i + 1));
        }
        users.push(Credential::new(
            line[..colon].to_vec(),
            line[colon + 1..].to_vec(),
        ));
    }
    if users.is_empty() {
        return Err("no user:password line".into());
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_encodes_specials() {
        let mut out = Vec::new();
        xtext(b"a+b=c d\x01\xff~!", &mut out);
        assert_eq!(out, b"a+2Bb+3Dc+20d+01+FF~!");
    }

    #[test]
    fn cidr_v4_steps_and_wraps() {
        let r = Cidr::parse("10.0.0.7/30").unwrap();
        let got: Vec<String> = (0..6).map(|n| r.nth(n).to_string()).collect();
        assert_eq!(
            got,
            [
                "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.4",
                "10.0.0.5"
            ]
        );
        let one = Cidr::parse("192.0.2.9").unwrap();
        assert_eq!(one.nth(12345).to_string(), "192.0.2.9");
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert_eq!(all.nth(u64::MAX).to_string(), "255.255.255.255");
    }

    #[test]
    fn cidr_v6_steps_and_wraps() {
        let r = Cidr::parse("2001:db8::/126").unwrap();
        assert_eq!(r.nth(1).to_string(), "2001:db8::1");
        assert_eq!(r.nth(4).to_string(), "2001:db8::");
        let big = Cidr::parse("[2001:db8::]/64").unwrap();
        assert_eq!(
            big.nth(u64::MAX).to_string(),
            "2001:db8::ffff:ffff:ffff:ffff"
        );
        let full = Cidr::parse("::/0").unwrap();
        assert_eq!(full.nth(7).to_string(), "::7");
        assert!(Cidr::parse("IPv6:2001:db8::1/128").is_some());
    }

    #[test]
    fn cidr_rejects_junk() {
        for bad in ["", "10.0.0.1/33", "10.0.0.1/", "x/8", "::1/129", "1/2"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
        assert_eq!(Cidr::parse("10.0.0.1/+8"), None);
    }

    #[test]
    fn random_inputs_never_panic_and_stay_in_range() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let alphabet = b"0123456789abcdef:./[]IPVv6=,+ADRNMEx\n\r\0\xff";
        for _ in 0..50_000 {
            let len = rng.gen_range(0..40);
            let raw: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            if let Ok(x) = Xclient::parse(&raw) {
                let _ = x.args(rng.gen());
            }
            let _ = parse_auth_file(&raw);
            let Ok(text) = std::str::from_utf8(&raw) else {
                continue;
            };
            if let Some(range) = Cidr::parse(text) {
                let addr = range.nth(rng.gen());
                let again = Cidr::parse(&format!("{addr}/{}", range.prefix()));
                assert_eq!(again, Some(range), "{text}");
            }
        }
    }

    #[test]
    fn xclient_args_step_and_encode() {
        let x = Xclient::parse(b"name=mail.example,ADDR=10.0.0.0/31,HELO=a b")
            .unwrap();
        assert_eq!(x.args(0), b"NAME=mail.example ADDR=10.0.0.0 HELO=a+20b");
        assert_eq!(x.args(1), b"NAME=mail.example ADDR=10.0.0.1 HELO=a+20b");
        assert_eq!(x.args(2), b"NAME=mail.example ADDR=10.0.0.0 HELO=a+20b");
        let v6 = Xclient::parse(b"ADDR=2001:db8::/127").unwrap();
        assert_eq!(v6.args(1), b"ADDR=IPV6:2001:db8::1");
        let fixed = Xclient::parse(b"ADDR=192.0.2.1").unwrap();
        assert_eq!(fixed.args(9), b"ADDR=192.0.2.1");
    }

    #[test]
    fn xclient_rejects_bad_values() {
        assert!(Xclient::parse(b"FOO=1").unwrap_err().contains("FOO"));
        assert!(Xclient::parse(b"NAME").is_err());
        assert!(Xclient::parse(b"ADDR=1.2.3.4/99").is_err());
        assert!(Xclient::parse(b"NAME=a,name=b").is_err());
    }

    #[test]
    fn proxy_v1_text() {
        let s: SocketAddr = "192.0.2.1:5555".parse().unwrap();
        let d: SocketAddr = "127.0.0.1:25".parse().unwrap();
        assert_eq!(
            proxy_header(ProxyVersion::V1, s, d),
            b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 25\r\n"
        );
        let s6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let d6: SocketAddr = "[::1]:25".parse().unwrap();
        assert_eq!(
            proxy_header(ProxyVersion::V1, s6, d6),
            b"PROXY TCP6 2001:db8::1 ::1 1 25\r\n"
        );
    }

    #[test]
    fn proxy_v2_binary() {
        let s: SocketAddr = "192.0.2.1:5555".parse().unwrap();
        let d: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let h = proxy_header(ProxyVersion::V2, s, d);
        let mut want = PROXY_V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12]);
        want.extend_from_slice(&[192, 0, 2, 1, 127, 0, 0, 1]);
        want.extend_from_slice(&[0x15, 0xb3, 0, 25]);
        assert_eq!(h, want);
        let s6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let h6 = proxy_header(ProxyVersion::V2, s6, d);
        assert_eq!(&h6[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h6.len(), 16 + 36);
        // The v4 peer is mapped into IPv6 for a v6 source.
        assert_eq!(
            &h6[32..48],
            &Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets()
        );
    }

    #[test]
    fn proxy_dest_matches_the_source_family() {
        let p: SocketAddr = "127.0.0.1:2525".parse().unwrap();
        assert_eq!(proxy_dest(Some(p), true), p);
        assert!(proxy_dest(Some(p), false).is_ipv6());
        assert_eq!(proxy_dest(None, true).port(), 0);
    }

    #[test]
    fn credentials_encode_and_redact() {
        let c = Credential::new(b"alice".to_vec(), b"s3cr:et".to_vec());
        assert_eq!(c.plain(), B64.encode(b"\0alice\0s3cr:et").into_bytes());
        assert_eq!(c.login().0, b"YWxpY2U=");
        let shown = format!("{c:?}");
        assert!(shown.contains("alice") && !shown.contains("s3cr"));
        assert!(!shown.contains(&B64.encode(b"s3cr:et")));
    }

    #[test]
    fn auth_file_lines() {
        let users = parse_auth_file(b"# test\nalice:one\r\n\nbob:two:three\n")
            .unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].user, b"bob");
        assert_eq!(users[1].login().1, B64.encode(b"two:three").into_bytes());
        let e = parse_auth_file(b"alice:x\nsecretnocolon\n").unwrap_err();
        assert_eq!(e, "line 2: not user:password");
        assert!(parse_auth_file(b"# only\n").is_err());
        assert!(parse_auth_file(b":pw\n").is_err());
    }
}
