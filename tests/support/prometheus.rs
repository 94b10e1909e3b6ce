//! Debian's real `prometheus` and `prometheus-pushgateway`, started by a
//! test on loopback with their data in a temporary directory, and a
//! small HTTP client to scrape and query them. Nothing is written
//! outside the temporary directory; the processes are killed (by their
//! own id) when the value drops.
//!
//! Typical use (a test that wants Prometheus to scrape some shards):
//!
//! ```ignore
//! let targets = vec![format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}")];
//! let Some(prom) = Prometheus::start("my_test", &scrape_config(&targets, 1))
//! else { return };   // skipped (fails under SMTP_SOURCE_REQUIRE_ALL=1)
//! // ... run the shards with --metrics-listen and --metrics-linger ...
//! prom.wait_for_scrape_after(start_of_linger, Duration::from_secs(5));
//! let v = prom.value("sum(smtp_source_messages_total{result=\"accepted\"})");
//! ```
//!
//! `scrape_config` makes the `scrape_configs` part for static targets;
//! `Prometheus::start` takes any `scrape_configs` YAML (`start_on` also
//! the address to listen on). `query` runs any PromQL through
//! /api/v1/query and fails unless the API says success; `value` and
//! `samples` read its answer. `sample` reads one value from a text
//! exposition (ours, or a Pushgateway's /metrics).
//! `Pushgateway::start` runs a Pushgateway; `metrics()` is its /metrics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::{skip, TempDir};

/// A loopback port free a moment ago (bound to port 0, then closed).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `scrape_configs` for Prometheus: one job, `smtp-source`, scraping
/// `targets` every `interval_s` seconds.
pub fn scrape_config(targets: &[String], interval_s: u32) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "scrape_configs:\n  - job_name: smtp-source\n    \
scrape_interval: {interval_s}s\n    scrape_timeout: {interval_s}s\n    \
static_configs:\n      - targets: [{}]\n",
        list.join(", ")
    )
}

/// One GET: (status, body). Bounded: 5 s, 16 MiB.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> Result<(u16, String), String> {
    let limit = Duration::from_secs(5);
    let mut s =
        TcpStream::connect_timeout(&addr, limit).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.take(16 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// The header `name` of a GET answer, for content-type checks.
pub fn http_get_header(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
    name: &str,
) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.take(16 << 20).read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let head = text.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Percent-encodes a query parameter.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
}

impl Prometheus {
    /// Starts `/usr/bin/prometheus` on a free loopback port with
    /// `scrape_configs` (YAML) and waits until it is ready; None (after
    /// `support::skip`) when Debian's prometheus is not installed.
    pub fn start(test: &str, scrape_configs: &str) -> Option<Prometheus> {
        let addr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        Prometheus::start_on(test, scrape_configs, addr)
    }

    /// As `start`, listening on `addr` (say, an address on a test bridge
    /// that the scraped hosts and this process can both reach).
    pub fn start_on(
        test: &str,
        scrape_configs: &str,
        addr: SocketAddr,
    ) -> Option<Prometheus> {
        let bin = "/usr/bin/prometheus";
        if !std::path::Path::new(bin).exists() {
            skip(test, "Debian's prometheus is not installed (apt-get install prometheus)");
            return None;
        }
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  evaluation_interval: 1s\n{scrape_configs}"),
        )
        .expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .expect("log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .current_dir(dir.path())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, addr, dir };
        p.wait_ready("/-/ready", Duration::from_secs(20));
        Some(p)
    }

    fn wait_ready(&self, path: &str, limit: Duration) {
        let until = Instant::now() + limit;
        loop {
            if let Ok((200, _)) = http_get(self.addr, path, None) {
                return;
            }
            assert!(
                Instant::now() < until,
                "prometheus not ready: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// What Prometheus logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log"))
            .unwrap_or_default()
    }

    /// An instant query now: the API's whole answer, which must say
    /// `"status":"success"` (Err with the answer otherwise).
    pub fn query(&self, expr: &str) -> Result<serde_json::Value, String> {
        let path = format!("/api/v1/query?query={}", urlencode(expr));
        let (status, body) = http_get(self.addr, &path, None)?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        match (status, v["status"].as_str()) {
            (200, Some("success")) => Ok(v),
            _ => Err(format!("{expr}: HTTP {status}: {body}")),
        }
    }

    /// The samples of an instant query: (labels, value).
    pub fn samples(&self, expr: &str) -> Vec<(serde_json::Value, f64)> {
        let v = self.query(expr).unwrap_or_else(|e| panic!("{e}"));
        let result =
            v["data"]["result"].as_array().cloned().unwrap_or_default();
        result
            .into_iter()
            .map(|s| {
                let x = s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), x)
            })
            .collect()
    }

    /// The one value of an instant query (None: no sample).
    pub fn value(&self, expr: &str) -> Option<f64> {
        let s = self.samples(expr);
        assert!(s.len() <= 1, "{expr}: more than one series: {s:?}");
        s.first().map(|(_, x)| *x)
    }

    /// Waits until every target of the scrape config has been scraped
    /// (successfully) at or after `after`.
    pub fn wait_for_scrape_after(&self, after: SystemTime, limit: Duration) {
        let after = after
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let until = Instant::now() + limit;
        loop {
            let v = self.query("min(timestamp(up))").ok();
            let count =
                self.samples("count(up == 1)").first().map_or(0.0, |s| s.1);
            let all = self.samples("count(up)").first().map_or(0.0, |s| s.1);
            let at = v
                .and_then(|v| {
                    v["data"]["result"][0]["value"][1]
                        .as_str()
                        .and_then(|x| x.parse::<f64>().ok())
                })
                .unwrap_or(0.0);
            if at >= after && count == all && all > 0.0 {
                return;
            }
            assert!(
                Instant::now() < until,
                "no scrape after {after}: last at {at}, {count} of {all} up\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running Pushgateway.
pub struct Pushgateway {
    child: Child,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Pushgateway {
    /// Starts `/usr/bin/prometheus-pushgateway` on a free loopback port
    /// (no persistence); None (after `support::skip`) when it is not
    /// installed.
    pub fn start(test: &str) -> Option<Pushgateway> {
        let bin = "/usr/bin/prometheus-pushgateway";
        if !std::path::Path::new(bin).exists() {
            skip(test, "Debian's prometheus-pushgateway is not installed");
            return None;
        }
        let dir = TempDir::new("pushgateway");
        let addr: SocketAddr =
            format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = std::fs::File::create(dir.path().join("pushgateway.log"))
            .expect("log");
        let child = Command::new(bin)
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .current_dir(dir.path())
            .spawn()
            .expect("start prometheus-pushgateway");
        let gw = Pushgateway {
            child,
            addr,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while !matches!(http_get(gw.addr, "/-/ready", None), Ok((200, _))) {
            assert!(Instant::now() < until, "pushgateway not ready");
            thread::sleep(Duration::from_millis(100));
        }
        Some(gw)
    }

    /// Its /metrics text.
    pub fn metrics(&self) -> String {
        let (status, body) =
            http_get(self.addr, "/metrics", None).expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample `name{labels}` in a text exposition, when
/// every `label="value"` given is among its labels.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse().ok()).flatten()
        })
}
