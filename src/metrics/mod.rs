//! metrics: the run's live Prometheus metrics. `--metrics-listen` serves
//! GET /metrics from one thread (`serve`); `--metrics-linger` keeps it up
//! after the reports so a last scrape sees the final values;
//! `--metrics-push` PUTs the final values to a Pushgateway.
//!
//! Every number comes from `report::stats`, the report's own exact
//! accounting, read at the scrape. While the run goes on, what is in
//! flight is not shown as `unknown` (it would fall again when the
//! verdicts come, and a counter never falls); once the reports are made
//! the endpoint shows the very counts the report was made from
//! (`freeze`), so at exit every counter equals the report.
//!
//! Crates: none new. The exposition is a few dozen lines of our own
//! (`expo`): `prometheus-client` would keep a second registry of
//! counters beside the report's, which is the drift this module exists
//! to rule out. HTTP is `std::net` with hard bounds (`http`): one
//! request at a time on one thread needs no server crate and no async
//! runtime.

pub(crate) mod expo;
pub(crate) mod http;

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::engine::STACK_SIZE;
use crate::error::{Config, Error};
use crate::report::stats::Counts;
use crate::report::Summary;
use crate::sys;
use crate::work::Shared;

/// What the metrics options ask for.
#[derive(Debug, Clone)]
pub struct MetricsPlan {
    pub listen: Option<SocketAddr>,
    pub linger: Option<Duration>,
    /// The Pushgateway and its address, looked up before the run.
    pub push: Option<(http::Push, SocketAddr)>,
    /// The server operand as given, for `smtp_source_info`.
    pub target: String,
    /// `K/N` with --shard.
    pub shard: Option<String>,
}

/// `[ADDR:]PORT`: an IP literal (IPv6 in brackets) and a port 1-65535;
/// a port alone listens on every IPv4 address (to be scraped from other
/// hosts).
pub fn parse_listen(value: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(value).ok()?;
    let addr = match text.bytes().all(|b| b.is_ascii_digit()) {
        true => SocketAddr::from(([0, 0, 0, 0], text.parse::<u16>().ok()?)),
        false => text.parse().ok()?,
    };
    (addr.port() != 0).then_some(addr)
}

/// The metrics part of the plan (None without a metrics option).
pub fn plan(
    listen: Option<SocketAddr>,
    linger: Option<Duration>,
    push: Option<&[u8]>,
    target: &[u8],
    shard: Option<crate::scale::Shard>,
) -> Result<Option<MetricsPlan>, Config> {
    if linger.is_some() && listen.is_none() {
        return Err(Config::Needs {
            what: "--metrics-linger",
            needs: "--metrics-listen",
        });
    }
    if listen.is_none() && push.is_none() {
        return Ok(None);
    }
    let shard = shard.map(|s| format!("{}/{}", s.index, s.count));
    let push = match push {
        Some(url) => Some(resolve_push(url, shard.as_deref())?),
        None => None,
    };
    Ok(Some(MetricsPlan {
        listen,
        linger,
        push,
        target: String::from_utf8_lossy(target).into_owned(),
        shard,
    }))
}

fn resolve_push(
    url: &[u8],
    shard: Option<&str>,
) -> Result<(http::Push, SocketAddr), Config> {
    let bad = |why: Option<String>| Config::BadValue {
        option: "--metrics-push",
        value: url.to_vec(),
        why,
    };
    let push = http::parse_push(url, shard).ok_or_else(|| bad(None))?;
    let addr = (http::push_host(&push), push.port)
        .to_socket_addrs()
        .map_err(|e| bad(Some(crate::error::io_text(&e))))?
        .next()
        .ok_or_else(|| bad(Some("no address".into())))?;
    Ok((push, addr))
}

/// Binds --metrics-listen before any traffic: a port in use ends the
/// run before it starts.
pub(crate) fn bind(shared: &Shared) -> Result<Option<TcpListener>, Error> {
    let Some(addr) = shared.plan.ext.metrics.as_ref().and_then(|m| m.listen)
    else {
        return Ok(None);
    };
    http::listen(addr).map(Some).map_err(|error| {
        Error::Config(Config::Listen {
            option: "--metrics-listen",
            addr,
            error,
        })
    })
}

/// Stops the serving thread when dropped.
pub(crate) struct Serving<'s>(&'s AtomicBool);

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// How often the serving thread looks for a connection and for `stop`.
const TICK: Duration = Duration::from_millis(20);

/// Serves /metrics on its own thread until the returned guard drops.
pub(crate) fn serve<'s>(
    scope: &'s thread::Scope<'s, '_>,
    shared: &'s Shared,
    listener: Option<TcpListener>,
    stop: &'s AtomicBool,
) -> Result<Serving<'s>, Error> {
    let guard = Serving(stop);
    let Some(listener) = listener else {
        return Ok(guard);
    };
    thread::Builder::new()
        .name("metrics".into())
        .stack_size(STACK_SIZE)
        .spawn_scoped(scope, move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => answer(shared, s),
                    Err(_) => thread::sleep(TICK),
                }
            }
        })
        .map_err(Error::Spawn)?;
    Ok(guard)
}

/// One request, one answer, closed (a client that is slow or sends
/// too much only costs `http::IO_LIMIT`).
fn answer(shared: &Shared, mut s: TcpStream) {
    if s.set_nonblocking(false).is_err() {
        return;
    }
    let request = match http::read_head(&mut s) {
        Some(head) => http::parse(&head),
        None => http::Request::Bad,
    };
    let plain = "text/plain; charset=utf-8";
    let _ = match request {
        http::Request::Metrics { accept } => {
            let format = expo::Format::from_accept(accept.as_deref());
            let body = exposition(shared, format);
            http::respond(
                &mut s,
                "200 OK",
                format.content_type(),
                body.as_bytes(),
            )
        }
        http::Request::Other => {
            http::respond(&mut s, "404 Not Found", plain, b"not found\n")
        }
        http::Request::Bad => {
            http::respond(&mut s, "400 Bad Request", plain, b"bad request\n")
        }
    };
}

/// The counts the report was made from, once it was.
static FROZEN: Mutex<Option<(Counts, Vec<Histogram<u64>>)>> = Mutex::new(None);

/// The exposition now: the report's counts once they are final, else
/// the live ones (without the in-flight `unknown`).
fn exposition(shared: &Shared, format: expo::Format) -> String {
    let (Some(stats), Some(m)) = (&shared.stats, &shared.plan.ext.metrics)
    else {
        return String::new();
    };
    let frozen = FROZEN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (counts, latency) = frozen.unwrap_or_else(|| {
        let (mut counts, latency) = stats.snapshot();
        counts.unknown = 0;
        counts.rcpt_unknown = 0;
        (counts, latency)
    });
    render(
        shared,
        m,
        &counts,
        &latency,
        stats.connections_open(),
        format,
    )
}

fn render(
    shared: &Shared,
    m: &MetricsPlan,
    counts: &Counts,
    latency: &[Histogram<u64>],
    sessions_active: u64,
    format: expo::Format,
) -> String {
    expo::render(
        &expo::View {
            counts,
            latency,
            sessions_active,
            target_rate: shared.plan.ext.rate.map(|(rate, _)| rate),
            version: env!("CARGO_PKG_VERSION"),
            target: &m.target,
            shard: m.shard.clone(),
        },
        format,
    )
}

/// Where the reports are made: from now on the endpoint shows exactly
/// the report's counts.
pub(crate) fn freeze(shared: &Shared, summary: &Summary) {
    if shared.plan.ext.metrics.is_some() {
        *FROZEN.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((summary.counts.clone(), summary.latency.clone()));
    }
}

/// --metrics-push: the report's counts to the Pushgateway (Err: why the
/// push failed, to be reported as a report that could not be written).
pub(crate) fn push(shared: &Shared, summary: &Summary) -> Result<(), Vec<u8>> {
    let Some(m) = &shared.plan.ext.metrics else {
        return Ok(());
    };
    let Some((push, addr)) = &m.push else {
        return Ok(());
    };
    let body = render(
        shared,
        m,
        &summary.counts,
        &summary.latency,
        0,
        expo::Format::Text,
    );
    http::put(*addr, push, body.as_bytes()).map_err(|why| {
        let url = crate::diag::censored(&push.url);
        format!("cannot push the metrics to {url}: {why}").into_bytes()
    })
}

/// --metrics-linger: after the reports, keeps serving for that long (a
/// new SIGINT or SIGTERM cuts it short).
pub(crate) fn linger(shared: &Shared) {
    let Some(linger) = shared.plan.ext.metrics.as_ref().and_then(|m| m.linger)
    else {
        return;
    };
    let signals = sys::signals();
    let until = std::time::Instant::now() + linger;
    while std::time::Instant::now() < until && sys::signals() == signals {
        thread::sleep(TICK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let a = |s: &str| parse_listen(s.as_bytes()).map(|a| a.to_string());
        assert_eq!(a("9100").as_deref(), Some("0.0.0.0:9100"));
        assert_eq!(a("127.0.0.1:9100").as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(a("[::1]:9100").as_deref(), Some("[::1]:9100"));
        for bad in ["0", "", "x:1", "127.0.0.1", "70000", "127.0.0.1:0"] {
            assert_eq!(a(bad), None, "{bad}");
        }
    }

    #[test]
    fn linger_needs_listen() {
        let p = plan(None, Some(Duration::from_secs(1)), None, b"x", None);
        assert!(matches!(p, Err(Config::Needs { .. })));
        assert!(matches!(plan(None, None, None, b"x", None), Ok(None)));
    }
}
