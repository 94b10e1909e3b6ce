//! sink: the project's own loopback SMTP/LMTP sink, for `make demo` and
//! for trying smtp-source without a mail server.
//!
//! It listens on 127.0.0.1 (port 0 unless given) or a UNIX socket, runs a
//! thread per connection, accepts everything, and when the expected
//! number of messages has arrived (or the time limit passes) prints what
//! it received: connection, message, recipient and byte counts, and the
//! first message exactly as it came in.
//!
//! Usage: sink [--lmtp] [--messages N] [--seconds S] [--listen ADDR]
//! It prints `listening ADDR` on stdout as soon as it accepts.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    messages: AtomicU64,
    recipients: AtomicU64,
    bytes: AtomicU64,
    first: Mutex<Option<Vec<u8>>>,
}

struct Config {
    lmtp: bool,
    messages: u64,
    seconds: u64,
    listen: String,
}

fn config() -> Config {
    let mut c = Config {
        lmtp: false,
        messages: u64::MAX,
        seconds: 60,
        listen: "127.0.0.1:0".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match a.as_str() {
            "--lmtp" => c.lmtp = true,
            "--messages" => c.messages = value().parse().unwrap_or(u64::MAX),
            "--seconds" => c.seconds = value().parse().unwrap_or(60),
            "--listen" => c.listen = value(),
            _ => {
                eprintln!(
                    "usage: sink [--lmtp] [--messages N] \
[--seconds S] [--listen ADDR|unix:PATH]"
                );
                std::process::exit(2);
            }
        }
    }
    c
}

/// One SMTP/LMTP conversation; every line is bounded (lines longer than
/// 64 KiB end the connection).
fn serve<S: Read + Write>(
    stream: S,
    lmtp: bool,
    counts: &Counts,
) -> io::Result<()> {
    let mut rd = BufReader::new(stream);
    let mut line = Vec::new();
    rd.get_mut().write_all(b"220 sink ESMTP\r\n")?;
    let mut rcpts = 0u64;
    loop {
        if read_line(&mut rd, &mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
        let reply: &[u8] = match &verb[..] {
            b"HELO" | b"EHLO" | b"LHLO" => b"250 sink\r\n",
            b"MAIL" => {
                rcpts = 0;
                b"250 2.1.0 Ok\r\n"
            }
            b"RCPT" => {
                rcpts += 1;
                b"250 2.1.5 Ok\r\n"
            }
            b"DATA" => {
                rd.get_mut()
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                data(&mut rd, &mut line, counts)?;
                counts.recipients.fetch_add(rcpts, Ordering::Relaxed);
                let n = if lmtp { rcpts.max(1) } else { 1 };
                for _ in 0..n {
                    rd.get_mut().write_all(b"250 2.0.0 Ok: queued\r\n")?;
                }
                counts.messages.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            b"RSET" | b"NOOP" => b"250 2.0.0 Ok\r\n",
            b"QUIT" => {
                rd.get_mut().write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            _ => b"502 5.5.2 Error: command not recognized\r\n",
        };
        rd.get_mut().write_all(reply)?;
    }
}

fn data<R: BufRead>(
    rd: &mut R,
    line: &mut Vec<u8>,
    counts: &Counts,
) -> io::Result<()> {
    let mut message = Vec::new();
    loop {
        if read_line(rd, line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" {
            break;
        }
        counts.bytes.fetch_add(line.len() as u64, Ordering::Relaxed);
        if message.len() < 1 << 16 {
            message.extend_from_slice(line);
        }
    }
    let mut first = counts.first.lock().unwrap_or_else(|e| e.into_inner());
    first.get_or_insert(message);
    Ok(())
}

fn read_line<R: BufRead>(rd: &mut R, line: &mut Vec<u8>) -> io::Result<usize> {
    line.clear();
    let n = rd.take(1 << 16).read_until(b'\n', line)?;
    if n > 0 && !line.ends_with(b"\n") {
        return Err(io::ErrorKind::InvalidData.into());
    }
    Ok(n)
}

fn spawn<S: Read + Write + Send + 'static>(
    stream: S,
    lmtp: bool,
    counts: &Arc<Counts>,
) {
    counts.connections.fetch_add(1, Ordering::Relaxed);
    let counts = Arc::clone(counts);
    let _ =
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = serve(stream, lmtp, &counts);
            });
}

fn main() {
    let c = config();
    let counts = Arc::new(Counts::default());
    let (lmtp, listen) = (c.lmtp, c.listen.clone());
    let accepter = Arc::clone(&counts);
    if let Some(path) = listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).expect("bind unix socket");
        println!("listening unix:{path}");
        spawn_thread(move || {
            for s in l.incoming().flatten() {
                spawn::<UnixStream>(s, lmtp, &accepter);
            }
        });
    } else {
        let l = TcpListener::bind(&listen).expect("bind");
        println!("listening {}", l.local_addr().expect("address"));
        spawn_thread(move || {
            for s in l.incoming().flatten() {
                let _ = s.set_nodelay(true);
                spawn::<TcpStream>(s, lmtp, &accepter);
            }
        });
    }
    let _ = io::stdout().flush();
    wait(&counts, c.messages, Duration::from_secs(c.seconds));
    report(&counts);
}

fn wait(counts: &Counts, messages: u64, limit: Duration) {
    let start = Instant::now();
    while counts.messages.load(Ordering::Relaxed) < messages
        && start.elapsed() < limit
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report(counts: &Counts) {
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "sink received: connections={} messages={} recipients={} \
bytes={}",
        n(&counts.connections),
        n(&counts.messages),
        n(&counts.recipients),
        n(&counts.bytes)
    );
    let first = counts.first.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = first.as_ref() {
        println!("first message, as received:");
        let _ = io::stdout().write_all(m);
    }
    let _ = io::stdout().flush();
}

fn spawn_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name("accept".into())
        .spawn(f)
        .expect("cannot start the accept thread");
}
