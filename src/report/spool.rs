//! spool: the report's one-second intervals, written out as they close
//! and streamed into the JSON report at the end, so that a run of any
//! length holds none of them in memory (a day-long run closes 86,400).
//!
//! Each interval is kept as the exact text the JSON report's
//! `"intervals"` array holds for it (`interval_json`), comma-separated,
//! in an unlinked temporary file (O_TMPFILE in the temp directory, or a
//! file removed as soon as it is made). Where no such file can be made
//! or written, the text is kept in memory instead: the report is the
//! same either way.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::report::stats::{Interval, ERROR_KEYS};
use crate::report::unix_text;

/// The JSON text of one interval, as the report's `"intervals"` holds
/// it (smtp-report merge reads it back).
pub fn interval_json(v: &Interval) -> String {
    let mut o = String::with_capacity(128 + v.histogram.len());
    let _ = write!(
        o,
        "{{\"start_unix\":{},\"seconds\":{:.6},\"accepted\":{},\
\"rate\":{:.3},\"target_rate\":{},\"rejected\":{},\"errors\":{{",
        unix_text(v.start),
        v.length.as_secs_f64(),
        v.accepted,
        achieved(v),
        v.target.map_or("null".into(), |t| format!("{t:.3}")),
        v.rejected,
    );
    // Only the classes that occurred: most seconds have none.
    let mut sep = "";
    for (key, n) in ERROR_KEYS.iter().zip(v.errors) {
        if n > 0 {
            let _ = write!(o, "{sep}\"{key}\":{n}");
            sep = ",";
        }
    }
    let _ = write!(o, "}},\"histogram\":\"{}\"}}", v.histogram);
    o
}

/// Messages accepted per second over the interval.
pub fn achieved(v: &Interval) -> f64 {
    // Over the length as the report prints it ("seconds", rounded to
    // whole microseconds): a report read back says the same.
    match (v.length.as_secs_f64() * 1e6).round() / 1e6 {
        s if s > 0.0 => v.accepted as f64 / s,
        _ => 0.0,
    }
}

/// Where the text goes.
enum Store {
    File(File),
    Memory(Vec<u8>),
}

struct Inner {
    store: Store,
    /// Bytes of text so far.
    len: u64,
    /// Intervals so far.
    count: u64,
    /// The end of the last interval.
    end: Option<SystemTime>,
}

/// The closed intervals of a run, oldest first.
pub struct IntervalSpool {
    inner: Mutex<Inner>,
}

/// The intervals closed by one moment of the run (what a report
/// written then holds).
#[derive(Clone)]
pub struct Spooled {
    spool: Arc<IntervalSpool>,
    len: u64,
    count: u64,
}

impl IntervalSpool {
    /// A spool in an unlinked file in the temp directory, or in memory
    /// if there is none to be had.
    pub fn new() -> IntervalSpool {
        let store = temp_file().map_or(Store::Memory(Vec::new()), Store::File);
        IntervalSpool::with(store)
    }

    /// A spool in memory (tests, and where no file can be made).
    #[cfg(test)]
    pub fn in_memory() -> IntervalSpool {
        IntervalSpool::with(Store::Memory(Vec::new()))
    }

    fn with(store: Store) -> IntervalSpool {
        IntervalSpool {
            inner: Mutex::new(Inner {
                store,
                len: 0,
                count: 0,
                end: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a closed interval.
    pub fn push(&self, v: &Interval) {
        let mut text = Vec::new();
        let mut s = self.lock();
        if s.count > 0 {
            text.push(b',');
        }
        text.extend_from_slice(interval_json(v).as_bytes());
        let at = s.len;
        let failed = match &s.store {
            Store::File(f) => f.write_all_at(&text, at).is_err(),
            Store::Memory(_) => false,
        };
        if failed {
            // A full or failing disk: keep the rest in memory.
            s.move_to_memory();
        }
        match &mut s.store {
            Store::Memory(m) => m.extend_from_slice(&text),
            Store::File(_) => {}
        }
        s.len = match &s.store {
            Store::Memory(m) => m.len() as u64,
            Store::File(_) => at + text.len() as u64,
        };
        s.count += 1;
        s.end = Some(v.start + v.length);
    }

    /// When the last interval ended (None before the first).
    pub fn end(&self) -> Option<SystemTime> {
        self.lock().end
    }

    /// The intervals closed so far.
    pub fn spooled(self: &Arc<Self>) -> Spooled {
        let s = self.lock();
        Spooled {
            spool: Arc::clone(self),
            len: s.len,
            count: s.count,
        }
    }

    /// Bytes of interval text held in memory (0 while the file serves).
    #[cfg(test)]
    pub fn held_in_memory(&self) -> usize {
        match &self.lock().store {
            Store::Memory(m) => m.len(),
            Store::File(_) => 0,
        }
    }
}

impl Default for IntervalSpool {
    fn default() -> Self {
        IntervalSpool::new()
    }
}

impl Inner {
    /// Moves what the file holds into memory (best effort: if it cannot
    /// be read back, the intervals so far are dropped, so the text stays
    /// whole JSON).
    fn move_to_memory(&mut self) {
        let mut back = vec![0; self.len as usize];
        let read = match &self.store {
            Store::File(f) => f.read_exact_at(&mut back, 0).is_ok(),
            Store::Memory(_) => return,
        };
        if !read {
            back.clear();
            self.count = 0;
        }
        self.len = back.len() as u64;
        self.store = Store::Memory(back);
    }
}

impl Spooled {
    /// Intervals in it.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes the intervals' text (comma-separated, no brackets) to
    /// `out`, a piece at a time.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = self.spool.lock();
        let len = self.len.min(s.len);
        match &s.store {
            Store::Memory(m) => out.write_all(&m[..len as usize]),
            Store::File(f) => copy_range(f, len, out),
        }
    }
}

/// The first `len` bytes of `file` to `out`.
fn copy_range(file: &File, len: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0; 64 << 10];
    let mut at = 0;
    while at < len {
        let want = (len - at).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        out.write_all(&buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// An unlinked file in the temp directory: O_TMPFILE where the file
/// system has it, else a new file removed at once.
fn temp_file() -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    let tmpfile = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(&dir);
    if let Ok(f) = tmpfile {
        return Some(f);
    }
    let name = format!(
        ".smtp-source-intervals-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    );
    let path = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    std::fs::remove_file(&path).ok()?;
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn interval(i: u64) -> Interval {
        Interval {
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i),
            length: Duration::from_secs(1),
            accepted: i,
            rejected: 0,
            errors: [0; crate::report::stats::ERROR_CLASSES],
            histogram: "HISTFAKE".into(),
            target: None,
        }
    }

    fn text(s: &Spooled) -> String {
        let mut out = Vec::new();
        s.write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A day of intervals: none of them in memory, all in the text.
    #[test]
    fn a_day_of_intervals_holds_none_in_memory() {
        if temp_file().is_none() {
            eprintln!("SKIP: no temp directory to spool to");
            return;
        }
        let spool = Arc::new(IntervalSpool::new());
        for i in 0..86_400 {
            spool.push(&interval(i));
        }
        assert_eq!(spool.held_in_memory(), 0);
        let all = spool.spooled();
        assert_eq!(all.count(), 86_400);
        let t = text(&all);
        assert_eq!(t.matches("\"start_unix\"").count(), 86_400);
        assert!(t.starts_with(&interval_json(&interval(0))));
        assert!(t.ends_with(&format!(",{}", interval_json(&interval(86_399)))));
        assert_eq!(
            spool.end(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(87_400))
        );
    }

    /// File or memory, the same text; a report taken earlier keeps what
    /// it had.
    #[test]
    fn file_and_memory_give_the_same_text() {
        let file = Arc::new(IntervalSpool::new());
        let memory = Arc::new(IntervalSpool::in_memory());
        for i in 0..3 {
            file.push(&interval(i));
            memory.push(&interval(i));
        }
        let early = file.spooled();
        file.push(&interval(3));
        memory.push(&interval(3));
        assert_eq!(text(&file.spooled()), text(&memory.spooled()));
        let want: Vec<String> =
            (0..3).map(|i| interval_json(&interval(i))).collect();
        assert_eq!(text(&early), want.join(","));
    }

    /// A file that stops taking writes: the rest goes to memory, and the
    /// text stays whole.
    #[test]
    fn a_failing_file_falls_back_move_to_memory() {
        let spool = Arc::new(IntervalSpool::new());
        spool.push(&interval(0));
        {
            let mut s = spool.lock();
            s.move_to_memory();
        }
        spool.push(&interval(1));
        let want = [interval_json(&interval(0)), interval_json(&interval(1))];
        assert_eq!(text(&spool.spooled()), want.join(","));
    }
}
