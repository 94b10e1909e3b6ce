//! http: the little HTTP the metrics need, on std::net with hard bounds:
//! one GET at a time for `/metrics` (request head at most `MAX_HEAD`
//! bytes, read and written within `IO_LIMIT`), and one PUT to a
//! Pushgateway. The request parsing is pure and unit-tested.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Largest request head read; a scraper's is a few hundred bytes.
pub const MAX_HEAD: usize = 8 << 10;

/// The longest one request may take to arrive, or its answer to leave.
pub const IO_LIMIT: Duration = Duration::from_secs(2);

/// The longest a push may take in each of connect, write and read.
pub const PUSH_LIMIT: Duration = Duration::from_secs(5);

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// GET /metrics, with the Accept header if any.
    Metrics { accept: Option<Vec<u8>> },
    /// Anything else that parses as HTTP: 404.
    Other,
    /// Not a request we can read: 400.
    Bad,
}

/// Parses a request head (up to and including the blank line).
pub fn parse(head: &[u8]) -> Request {
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let Some(first) = lines.next() else {
        return Request::Bad;
    };
    let mut words = first.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let (Some(method), Some(target), Some(version)) =
        (words.next(), words.next(), words.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with(b"HTTP/") {
        return Request::Bad;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if method != b"GET" || path != b"/metrics" {
        return Request::Other;
    }
    let accept = lines.find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        name.eq_ignore_ascii_case(b"accept")
            .then(|| value[1..].trim_ascii().to_vec())
    });
    Request::Metrics { accept }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads a request head from `s` within `IO_LIMIT` and `MAX_HEAD`
/// bytes; None if it does not come whole.
pub fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let deadline = Instant::now() + IO_LIMIT;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n")
        && !head.windows(2).any(|w| w == b"\n\n")
    {
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let room = (MAX_HEAD - head.len()).min(buf.len());
        if room == 0 {
            return None;
        }
        match s.read(&mut buf[..room]) {
            Ok(0) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(head)
}

/// Writes a whole response and closes.
pub fn respond(
    s: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    s.set_write_timeout(Some(IO_LIMIT))?;
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n\
Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut all = head.into_bytes();
    all.extend_from_slice(body);
    s.write_all(&all)?;
    s.flush()
}

/// A listener that `accept` can poll (so the serving thread sees when
/// to stop).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Where and how to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The URL as given (for messages).
    pub url: String,
    /// host[:port] as given, for the Host header.
    pub host: String,
    pub port: u16,
    /// The path, grouping key included.
    pub path: String,
}

/// The default Pushgateway path when the URL has none.
pub const DEFAULT_PUSH_PATH: &str = "/metrics/job/smtp-source";

/// Parses `http://HOST[:PORT][/PATH]` (port 80 by default; an empty
/// path means `DEFAULT_PUSH_PATH`). With a shard, its `K/N` becomes the
/// grouping label `shard` (base64url, as the Pushgateway takes values
/// with a slash), so that shards do not replace one another.
pub fn parse_push(url: &[u8], shard: Option<&str>) -> Option<Push> {
    if !url.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    let text = std::str::from_utf8(url).ok()?;
    let rest = text.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = split_port(authority)?;
    if host.is_empty() {
        return None;
    }
    let mut path = match path.trim_end_matches('/') {
        "" => DEFAULT_PUSH_PATH.to_string(),
        p => p.to_string(),
    };
    if let Some(shard) = shard {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE.encode(shard);
        path.push_str(&format!("/shard@base64/{b64}"));
    }
    Some(Push {
        url: text.to_string(),
        host: authority.to_string(),
        port,
        path,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        return match after {
            "" => Some((host, 80)),
            p => Some((host, p.strip_prefix(':')?.parse().ok()?)),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((authority, 80)),
    }
}

/// The host part of a push URL, for name lookup.
pub fn push_host(p: &Push) -> &str {
    let h = p.host.as_str();
    match h.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => h.rsplit_once(':').map_or(h, |(host, _)| host),
    }
}

/// PUTs `body` (text format) to the Pushgateway at `addr`; Err with
/// what went wrong unless the answer is 2xx.
pub fn put(addr: SocketAddr, p: &Push, body: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, PUSH_LIMIT)
        .map_err(|e| crate::error::io_text(&e))?;
    let io = |e: io::Error| crate::error::io_text(&e);
    s.set_write_timeout(Some(PUSH_LIMIT)).map_err(io)?;
    s.set_read_timeout(Some(PUSH_LIMIT)).map_err(io)?;
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nContent-Type: \
text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\
Connection: close\r\n\r\n",
        p.path,
        p.host,
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(io)?;
    s.write_all(body).map_err(io)?;
    let mut answer = Vec::new();
    s.take(MAX_HEAD as u64)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let status = answer
        .split(|&b| b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(trim_cr(l)).into_owned())
        .unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or("");
    match code.starts_with('2') {
        true => Ok(()),
        false => Err(format!(
            "the Pushgateway answered \"{}\"",
            crate::diag::censored(&status)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_metrics_with_accept() {
        let head = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\
ACCEPT: application/openmetrics-text\r\n\r\n";
        assert_eq!(
            parse(head),
            Request::Metrics {
                accept: Some(b"application/openmetrics-text".to_vec())
            }
        );
    }

    #[test]
    fn anything_else_is_other_or_bad() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Request::Other);
        assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n"), Request::Other);
        assert_eq!(parse(b"GET /metricsx HTTP/1.0\r\n\r\n"), Request::Other);
        assert_eq!(parse(b"hello\r\n\r\n"), Request::Bad);
        assert_eq!(parse(b"GET /metrics FTP\r\n\r\n"), Request::Bad);
        assert_eq!(parse(b""), Request::Bad);
    }

    #[test]
    fn push_urls() {
        let p = parse_push(b"http://127.0.0.1:9091", None).unwrap();
        assert_eq!((p.port, p.path.as_str()), (9091, DEFAULT_PUSH_PATH));
        assert_eq!(push_host(&p), "127.0.0.1");
        let p = parse_push(b"http://gw/metrics/job/x/", Some("2/3")).unwrap();
        assert_eq!(p.port, 80);
        assert_eq!(p.path, "/metrics/job/x/shard@base64/Mi8z");
        let p = parse_push(b"http://[::1]:9/", None).unwrap();
        assert_eq!((push_host(&p), p.port), ("::1", 9));
        for bad in [
            &b"https://gw"[..],
            b"http://",
            b"http://gw:x",
            b"http://u@gw",
            b"http://gw/a b",
            b"http://g\x1bw:1/",
            b"gw:9091",
        ] {
            assert_eq!(parse_push(bad, None), None, "{bad:?}");
        }
    }
}
