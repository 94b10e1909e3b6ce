//! TEMP STUB
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Unix(Vec<u8>),
    Inet { host: Vec<u8>, port: Vec<u8> },
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}
pub fn parse(arg: &[u8]) -> Result<Spec, Vec<u8>> {
    if let Some(p) = arg.strip_prefix(b"unix:") {
        return Ok(Spec::Unix(p.to_vec()));
    }
    let a = arg.strip_prefix(b"inet:").unwrap_or(arg);
    let i = a.iter().rposition(|&b| b == b':').unwrap_or(a.len());
    Ok(Spec::Inet {
        host: a[..i].to_vec(),
        port: a.get(i + 1..).unwrap_or(b"").to_vec(),
    })
}
pub fn resolve(
    spec: &Spec,
    _shown: &[u8],
    _f: Family,
) -> Result<socket2::SockAddr, Vec<u8>> {
    match spec {
        Spec::Unix(p) => {
            socket2::SockAddr::unix(std::str::from_utf8(p).unwrap())
                .map_err(|e| e.to_string().into_bytes())
        }
        Spec::Inet { host, port } => {
            let s = format!(
                "{}:{}",
                String::from_utf8_lossy(host),
                if port.is_empty() {
                    "25".into()
                } else {
                    String::from_utf8_lossy(port).to_string()
                }
            );
            use std::net::ToSocketAddrs;
            Ok(s.to_socket_addrs().unwrap().next().unwrap().into())
        }
    }
}
