//! diag: every byte smtp-source writes to stderr and stdout.
//!
//! Lines are `argv0: text`, `argv0: warning: text`, `argv0: fatal: text`,
//! each written whole in one write, with every byte that is not printable
//! ASCII shown as `?` (spec §6). The -c counter goes to stdout. Write
//! errors are ignored: a closed stderr or a closed pipe on stdout never
//! changes what the run does (F41, F42).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

static ARGV0: OnceLock<Vec<u8>> = OnceLock::new();
static VERBOSE: AtomicU32 = AtomicU32::new(0);
/// Held while the fatal line is written and the process exits, so that a
/// second failing session cannot print after the first.
static FATAL: Mutex<()> = Mutex::new(());
/// The -c count; locked with stdout so that numbers appear in order.
static COUNTER: Mutex<u64> = Mutex::new(0);

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

/// `argv0: fatal: text`, then exit 1 at once (X6: no 1 s sleep, and no
/// -c newline).
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

fn emit(level: &[u8], text: &[u8]) {
    let mut line = Vec::with_capacity(argv0().len() + text.len() + 12);
    line.extend_from_slice(argv0());
    line.extend_from_slice(b": ");
    line.extend_from_slice(level);
    line.extend(text.iter().map(|&b| censor(b)));
    line.push(b'\n');
    let _ = io::stderr().lock().write_all(&line);
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
    let mut n = COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    let mut out = io::stdout().lock();
    let _ = write!(out, "{}\r", *n);
    let _ = out.flush();
}

/// -c at a normal exit: one newline.
pub fn end_count() {
    let _n = COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = io::stdout().lock();
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::censor;

    #[test]
    fn censor_keeps_printable_ascii_only() {
        let shown: Vec<u8> = b"550 a\x01b\tc\xe9d\0e\n~"
            .iter()
            .map(|&b| censor(b))
            .collect();
        assert_eq!(shown, b"550 a?b?c?d?e?~");
    }
}
