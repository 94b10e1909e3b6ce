//! diag: every byte smtp-source writes to stderr and stdout.
//!
//! Lines are `argv0: text`, `argv0: warning: text`, `argv0: fatal: text`,
//! each written whole in one write, with every byte that is not printable
//! ASCII shown as `?`, as the reference shows it. The -c counter goes to
//! stdout. Write errors are ignored: a closed stderr or a closed pipe on
//! stdout never changes what the run does (tests
//! `f41_count_into_closed_pipe`, `f42_stderr_closed`).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static ARGV0: OnceLock<Vec<u8>> = OnceLock::new();
static VERBOSE: AtomicU32 = AtomicU32::new(0);
/// Held while the fatal line is written and the process exits, so that a
/// second failing session cannot print after the first.
static FATAL: Mutex<()> = Mutex::new(());
/// The -c count.
static COUNTER: Counter = Counter::new();
/// A --progress line is on the terminal without its newline: the next
/// diagnostic clears it first (the next status line redraws it).
static STATUS_SHOWN: AtomicBool = AtomicBool::new(false);

/// Clears the terminal line: carriage return, erase to end of line.
const CLEAR_LINE: &[u8] = b"\r\x1b[K";

/// Sets the program name used as the prefix of every line (argv[0] as
/// invoked, no basename stripping).
pub fn init(argv0: &[u8]) {
    let _ = ARGV0.set(argv0.to_vec());
}

pub fn set_verbose(level: u32) {
    VERBOSE.store(level, Ordering::Relaxed);
}

/// The -v level.
pub fn verbose() -> u32 {
    VERBOSE.load(Ordering::Relaxed)
}

pub fn argv0() -> &'static [u8] {
    ARGV0.get().map_or(b"smtp-source", Vec::as_slice)
}

/// `argv0: text` (Postfix's msg_info).
pub fn info(text: &[u8]) {
    emit(b"", text);
}

/// `argv0: warning: text`.
pub fn warn(text: &[u8]) {
    emit(b"warning: ", text);
}

/// `argv0: fatal: text`, then exit 1 at once (the reference sleeps 1 s
/// first: man page NOTES, X6), with no -c newline.
pub fn fatal(text: &[u8]) -> ! {
    fatal_then(text, || {})
}

/// A fatal line, then `last` (the --report of a failed run), then exit 1.
/// Only the first fatal error of a run gets this far.
pub fn fatal_then(text: &[u8], last: impl FnOnce()) -> ! {
    let _held = FATAL.lock();
    emit(b"fatal: ", text);
    last();
    std::process::exit(1)
}

/// A line printed as glibc's getopt prints it: not censored, no level.
pub fn raw_line(text: &[u8]) {
    let mut line = argv0().to_vec();
    line.extend_from_slice(b": ");
    line.extend_from_slice(text);
    line.push(b'\n');
    let _ = io::stderr().lock().write_all(&line);
}

/// Where --progress lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusLines {
    /// stderr is a terminal: each line replaces the one on screen.
    Rewrite,
    /// A file or a pipe: a line each.
    Append,
}

/// Whether a status line is the run's last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAt {
    During,
    End,
}

/// What starts a --progress line: the program's name without its
/// directories (the line is for a person, and must fit a terminal), then
/// `: `.
pub fn status_prefix() -> Vec<u8> {
    let argv0 = argv0();
    let name = argv0.rsplit(|&b| b == b'/').find(|n| !n.is_empty());
    let mut prefix = name.unwrap_or(argv0).to_vec();
    prefix.extend_from_slice(b": ");
    prefix
}

/// --progress: `name: text`. Rewritten on a terminal, where it ends
/// with a newline only at the end; otherwise a line of its own.
pub fn status(text: &[u8], lines: StatusLines, at: StatusAt) {
    let rewrite = lines == StatusLines::Rewrite;
    let last = at == StatusAt::End;
    let mut line = Vec::with_capacity(argv0().len() + text.len() + 8);
    if rewrite {
        line.extend_from_slice(CLEAR_LINE);
    }
    line.extend(status_prefix().iter().map(|&b| censor(b)));
    line.extend(text.iter().map(|&b| censor(b)));
    if !rewrite || last {
        line.push(b'\n');
    }
    let _ = io::stderr().lock().write_all(&line);
    STATUS_SHOWN.store(rewrite && !last, Ordering::SeqCst);
}

fn emit(level: &[u8], text: &[u8]) {
    let mut line = Vec::with_capacity(argv0().len() + text.len() + 16);
    if STATUS_SHOWN.swap(false, Ordering::SeqCst) {
        line.extend_from_slice(CLEAR_LINE);
    }
    line.extend_from_slice(argv0());
    line.extend_from_slice(b": ");
    line.extend_from_slice(level);
    line.extend(text.iter().map(|&b| censor(b)));
    line.push(b'\n');
    let _ = io::stderr().lock().write_all(&line);
}

/// Text a peer may have written, as it may reach a terminal: every byte
/// through `censor`, so that it can never start a line, move the cursor
/// or send an escape sequence. Every report on stdout shows server text
/// through this, as stderr does.
pub fn censored(text: &str) -> String {
    text.bytes().map(|b| char::from(censor(b))).collect()
}

/// Printable ASCII passes; everything else (TAB, LF, NUL, 8-bit) is `?`.
pub fn censor(b: u8) -> u8 {
    if (0x20..0x7f).contains(&b) {
        b
    } else {
        b'?'
    }
}

/// Writes --help / --version text to stdout.
pub fn out(text: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text);
    let _ = out.flush();
}

/// -c: counts one sent message and writes `<n>\r` to stdout.
pub fn count_message() {
    COUNTER.count(&mut to_stdout);
}

/// -c at a normal exit: any number not yet written, then one newline.
pub fn end_count() {
    COUNTER.finish(&mut to_stdout);
}

fn to_stdout(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// The -c counter: `1\r2\r...n\r`, every number once and in order.
///
/// Counting is one atomic add and never waits. Writing is done by one
/// thread at a time: whoever finds no writer at work writes every number
/// counted so far; a thread that finds one at work leaves its number to
/// it. So a stdout that blocks holds up only the session that is
/// writing, never the others.
pub struct Counter {
    counted: AtomicU64,
    /// The last number written (changed only by the writer).
    shown: AtomicU64,
    /// A thread is writing.
    writing: AtomicBool,
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

impl Counter {
    pub const fn new() -> Counter {
        Counter {
            counted: AtomicU64::new(0),
            shown: AtomicU64::new(0),
            writing: AtomicBool::new(false),
        }
    }

    /// Counts one message; writes the pending numbers through `out`
    /// unless another thread is writing them.
    pub fn count(&self, out: &mut dyn FnMut(&[u8])) {
        self.counted.fetch_add(1, Ordering::SeqCst);
        // After letting go, the writer looks again: a number counted
        // while it wrote, by a thread that found it at work, is its to
        // write. (All SeqCst: that thread's add comes before its failed
        // swap, which comes before the writer's release and second look.)
        while self.shown.load(Ordering::SeqCst)
            < self.counted.load(Ordering::SeqCst)
        {
            if self.writing.swap(true, Ordering::SeqCst) {
                return;
            }
            self.write_pending(out, b"");
            self.writing.store(false, Ordering::SeqCst);
        }
    }

    /// Waits for a writer at work to finish, then writes what is pending
    /// and a newline.
    pub fn finish(&self, out: &mut dyn FnMut(&[u8])) {
        while self.writing.swap(true, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.write_pending(out, b"\n");
        self.writing.store(false, Ordering::SeqCst);
    }

    /// The numbers after the last one written, then `tail`, in one
    /// write. Only the thread holding `writing` calls this.
    fn write_pending(&self, out: &mut dyn FnMut(&[u8]), tail: &[u8]) {
        let from = self.shown.load(Ordering::SeqCst);
        let to = self.counted.load(Ordering::SeqCst);
        let mut text = Vec::new();
        for n in from + 1..=to {
            let _ = write!(text, "{n}\r");
        }
        text.extend_from_slice(tail);
        if !text.is_empty() {
            out(&text);
        }
        self.shown.store(to, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::{censor, censored, Counter};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn counter_writes_every_number_in_order() {
        let c = Counter::new();
        let mut got = Vec::new();
        for _ in 0..3 {
            c.count(&mut |b| got.extend_from_slice(b));
        }
        c.finish(&mut |b| got.extend_from_slice(b));
        assert_eq!(got, b"1\r2\r3\r\n");
    }

    #[test]
    fn counter_does_not_wait_for_a_blocked_writer() {
        let c = Counter::new();
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let got = std::sync::Mutex::new(Vec::new());
        let (c, got) = (&c, &got);
        std::thread::scope(|s| {
            // The first write blocks, as on a stdout nobody reads,
            // until released.
            s.spawn(move || {
                let mut first = true;
                c.count(&mut |b| {
                    if std::mem::take(&mut first) {
                        entered_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                    }
                    got.lock().unwrap().extend_from_slice(b);
                });
            });
            entered.recv().unwrap();
            s.spawn(|| {
                c.count(&mut |b| got.lock().unwrap().extend_from_slice(b));
                done_tx.send(()).unwrap();
            });
            let waited = done.recv_timeout(Duration::from_secs(5));
            // Let the writer go either way, so that a failure is a
            // failure and not a hang.
            let _ = release.send(());
            assert!(waited.is_ok(), "a count waited for the blocked write");
        });
        c.finish(&mut |b| got.lock().unwrap().extend_from_slice(b));
        // The writer wrote the second number too, after its own.
        assert_eq!(*got.lock().unwrap(), b"1\r2\r\n");
    }

    #[test]
    fn censor_keeps_printable_ascii_only() {
        let shown: Vec<u8> = b"550 a\x01b\tc\xe9d\0e\n~"
            .iter()
            .map(|&b| censor(b))
            .collect();
        assert_eq!(shown, b"550 a?b?c?d?e?~");
        assert_eq!(censored("x\x1b]0;t\x07\r\n\u{e9}"), "x?]0;t?????");
    }
}
