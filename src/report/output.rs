//! output: the files and streams a run was asked to write (--report,
//! --report-file, --hlog), and the exit status they call for. Each path
//! is checked before the first connect, so that a bad one costs no
//! traffic; a report file is replaced whole (temporary file in the same
//! folder, fsync, rename) or not at all; the reports are written once,
//! by whoever ends the run (its end, a fatal error, a signal); and a
//! failed write is an error named on stderr, never a silent loss.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::diag;
use crate::error::Error;
use crate::plan::Plan;
use crate::report::{HistogramLog, Summary};
use crate::sys;
use crate::work::Shared;

/// The output files of a run, each with the option that names it.
fn files(plan: &Plan) -> Vec<(&'static str, &[u8])> {
    let ext = &plan.ext;
    [("--report-file", &ext.report_file), ("--hlog", &ext.hlog)]
        .into_iter()
        .filter_map(|(opt, path)| Some((opt, path.as_deref()?)))
        .collect()
}

/// Checks every output file before the first connect: its folder exists
/// and takes a new file, and the path is not a directory.
pub(crate) fn check(plan: &Plan) -> Result<(), Error> {
    for (opt, path) in files(plan) {
        check_one(path).map_err(|e| failed(opt, path, e))?;
    }
    Ok(())
}

/// `cannot write --report-file=PATH: reason`.
pub(crate) fn failure_text(opt: &str, path: &[u8], e: &io::Error) -> Vec<u8> {
    let mut text = format!("cannot write {opt}=").into_bytes();
    text.extend_from_slice(path);
    text.extend_from_slice(b": ");
    text.extend_from_slice(crate::error::io_text(e).as_bytes());
    text
}

fn failed(option: &'static str, path: &[u8], error: io::Error) -> Error {
    Error::Config(crate::error::Config::Output {
        option,
        path: path.to_vec(),
        error,
    })
}

fn check_one(path: &[u8]) -> io::Result<()> {
    let given = Path::new(OsStr::from_bytes(path));
    let Target::Replace(path) = &target(given) else {
        // Opened without blocking: a FIFO nobody reads is refused now
        // (ENXIO) rather than hanging the end of the run.
        return open_in_place(given, libc::O_NONBLOCK).map(drop);
    };
    if path.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    // Creating a file is the only test that sees everything: a missing
    // folder, permissions, a read-only mount, ACLs, root's exemptions.
    let probe = temp_path(path, "check");
    create(&probe)?;
    std::fs::remove_file(&probe)
}

/// Where a report file goes.
enum Target {
    /// Written into as it is, appending, with no temporary file and no
    /// rename: not a regular file (`/dev/stdout` to a pipe, a FIFO, a
    /// terminal), or a link whose target has no name to replace
    /// (`/dev/stdout` to a deleted file, as GNU parallel buffers a job's
    /// output). A link is never renamed over.
    InPlace,
    /// Replaced whole by a rename in its folder: this path (a link is
    /// followed to the file it names, so a `latest.json` link keeps
    /// pointing at the report it named).
    Replace(std::path::PathBuf),
}

fn target(given: &Path) -> Target {
    use std::os::unix::fs::MetadataExt;
    let link = given
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink());
    let Ok(meta) = std::fs::metadata(given) else {
        // Nothing there yet, or a link to nothing.
        return match link {
            false => Target::Replace(given.to_path_buf()),
            true => Target::InPlace,
        };
    };
    if meta.is_dir() {
        return Target::Replace(given.to_path_buf());
    }
    if !meta.is_file() {
        return Target::InPlace;
    }
    if !link {
        return Target::Replace(given.to_path_buf());
    }
    match std::fs::canonicalize(given) {
        Ok(named)
            if std::fs::metadata(&named).is_ok_and(|n| {
                (n.dev(), n.ino()) == (meta.dev(), meta.ino())
            }) =>
        {
            Target::Replace(named)
        }
        _ => Target::InPlace,
    }
}

/// Opens a file written in place, appending: `/dev/stdout` to a file
/// keeps what the run wrote there before.
fn open_in_place(path: &Path, flags: i32) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .append(true)
        .custom_flags(flags)
        .open(path)
}

/// `.NAME.PID.TAG` in the folder of `path`: rename(2) is atomic only
/// within one filesystem, and a dot file stays out of globs such as
/// `shard-*.json`.
fn temp_path(path: &Path, tag: &str) -> std::path::PathBuf {
    let name = path.file_name().unwrap_or(OsStr::new("report"));
    let mut temp = b".".to_vec();
    temp.extend_from_slice(name.as_bytes());
    temp.extend_from_slice(
        format!(".{}.{tag}", std::process::id()).as_bytes(),
    );
    path.with_file_name(OsStr::from_bytes(&temp))
}

/// Replaces the file at `path` with `bytes`, whole: an old file is never
/// left truncated, whatever fails (a full disk, a file size limit).
#[cfg(test)]
fn replace(path: &[u8], bytes: &[u8]) -> io::Result<()> {
    replace_with(path, &mut |out| out.write_all(bytes))
}

/// `replace`, with the content streamed by `fill` (a report's intervals
/// come from their spool, never whole in memory).
pub(crate) fn replace_with(
    path: &[u8],
    fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let given = Path::new(OsStr::from_bytes(path));
    let Target::Replace(path) = &target(given) else {
        let mut out = io::BufWriter::new(open_in_place(given, 0)?);
        fill(&mut out)?;
        return out.flush();
    };
    let temp = temp_path(path, "tmp");
    let written = write_synced(&temp, path, fill)
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    // The rename itself reaches the disk with the folder; a filesystem
    // that cannot sync a folder still has the report in place.
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Writes what `fill` writes to `temp`, with the permissions of the file
/// it will replace (if any), and syncs it.
fn write_synced(
    temp: &Path,
    path: &Path,
    fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let file = create(temp)?;
    if let Ok(old) = std::fs::metadata(path) {
        file.set_permissions(old.permissions())?;
    }
    let mut out = io::BufWriter::new(file);
    fill(&mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Creates (or empties) one of our own temporary files: its name holds
/// our process id, so no one else writes it; one left by a dead process
/// of the same id is reused.
fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Writes a report to standard output and flushes it; unlike the -c
/// counter (whose write errors the reference ignores), a report that
/// does not arrive is an error.
pub(crate) fn to_stdout(bytes: &[u8]) -> io::Result<()> {
    stream_to_stdout(&mut |out| out.write_all(bytes))
}

/// `to_stdout`, with the content streamed by `fill`.
fn stream_to_stdout(
    fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut out = io::stdout().lock();
    fill(&mut out)?;
    out.flush()
}

/// Exits as the run's end calls for: 1 when a report could not be
/// written (each failure named, the last as the fatal line), else
/// 128+signo when a signal cut the run short; returns otherwise.
pub(crate) fn end(mut failures: Vec<Vec<u8>>) {
    if let Some(last) = failures.pop() {
        for text in failures {
            diag::warn(&text);
        }
        diag::fatal(&last);
    }
    if let Some(signal) = sys::caught() {
        std::process::exit(128 + signal);
    }
    if THRESHOLDS_FAILED.load(std::sync::atomic::Ordering::SeqCst) {
        std::process::exit(crate::threshold::EXIT_FAILED);
    }
}

/// Set when the report found a --threshold that failed, or a capacity
/// search that found nothing.
static THRESHOLDS_FAILED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Names each failed threshold on stderr (a CI log shows why without
/// --report); a capacity search's table and answer go to stdout when no
/// report holds them.
fn tell_thresholds(plan: &Plan, summary: &Summary) -> Option<Vec<u8>> {
    for v in summary.thresholds.iter().filter(|v| !v.ok) {
        let text = format!(
            "threshold failed: {} (measured {})",
            v.expr,
            v.value_text()
        );
        diag::warn(diag::censored(&text).as_bytes());
    }
    if !summary.thresholds_hold() {
        THRESHOLDS_FAILED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    if summary.capacity.is_none() || plan.ext.report.is_some() {
        return None;
    }
    let text = summary.capacity_text();
    to_stdout(text.as_bytes()).err().map(|e| {
        let mut line =
            b"cannot write the capacity table to standard output: ".to_vec();
        line.extend_from_slice(crate::error::io_text(&e).as_bytes());
        line
    })
}

/// Set by whoever writes the reports first (the end of the run, a fatal
/// error, or the signal watcher), and held while they are written: the
/// reports are written once, and no one exits while they are written.
static REPORTED: Mutex<bool> = Mutex::new(false);

/// Writes every report of the run, unless they were written already;
/// returns what could not be written.
pub(crate) fn report_once(
    shared: &Shared,
    fatal: Option<&Error>,
) -> Vec<Vec<u8>> {
    report_first(shared, fatal).unwrap_or_default()
}

/// As `report_once`; None when the reports were written already (it
/// waits for them when they are being written).
pub(crate) fn report_first(
    shared: &Shared,
    fatal: Option<&Error>,
) -> Option<Vec<Vec<u8>>> {
    let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    if *reported {
        return None;
    }
    *reported = true;
    Some(all_reports(shared, fatal))
}

/// Writes every report and returns what could not be written (--hlog
/// included).
fn all_reports(shared: &Shared, fatal: Option<&Error>) -> Vec<Vec<u8>> {
    let mut failures = match shared.summary(fatal) {
        Some(summary) => {
            // /metrics shows the report's counts before the report exists.
            crate::metrics::freeze(shared, &summary);
            let mut failed = write_reports(&shared.plan, &summary);
            failed.extend(crate::metrics::push(shared, &summary).err());
            failed.extend(tell_thresholds(&shared.plan, &summary));
            failed
        }
        None => Vec::new(),
    };
    let hlog = HLOG_FAILURE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    failures.extend(hlog);
    failures
}

/// Writes every report; a report that fails does not stop the others.
fn write_reports(plan: &Plan, summary: &Summary) -> Vec<Vec<u8>> {
    use crate::plan::ReportFormat;
    let mut failures = Vec::new();
    let stdout = match plan.ext.report {
        Some(ReportFormat::Text) => Some(to_stdout(summary.text().as_bytes())),
        // Streamed: the intervals come from their spool.
        Some(ReportFormat::Json) => {
            Some(stream_to_stdout(&mut |out| summary.write_json(out)))
        }
        None => None,
    };
    if let Some(Err(e)) = stdout {
        let mut line =
            b"cannot write the report to standard output: ".to_vec();
        line.extend_from_slice(crate::error::io_text(&e).as_bytes());
        failures.push(line);
    }
    if let Some(path) = &plan.ext.report_file {
        let json = &mut |out: &mut dyn Write| summary.write_json(out);
        if let Err(e) = replace_with(path, json) {
            failures.push(failure_text("--report-file", path, &e));
        }
    }
    failures
}

/// The open --hlog log, its header written; None without --hlog.
pub(crate) fn open_hlog(
    shared: &Shared,
) -> Result<Option<crate::report::HistogramLog<std::fs::File>>, Error> {
    use std::os::unix::ffi::OsStrExt;
    let (Some(path), Some(stats)) = (&shared.plan.ext.hlog, &shared.stats)
    else {
        return Ok(None);
    };
    let os = std::ffi::OsStr::from_bytes(path);
    let failed = |error: std::io::Error| {
        Error::Config(crate::error::Config::Output {
            option: "--hlog",
            path: path.clone(),
            error,
        })
    };
    let file = create_nonblocking(os).map_err(failed)?;
    crate::report::HistogramLog::begin(file, stats.started_wall)
        .map(Some)
        .map_err(failed)
}

/// Creates (or truncates) a file for writing without blocking in
/// open(2): a FIFO nobody reads is refused (ENXIO) instead of hanging
/// the run. A FIFO with a reader is opened again, blocking, so that
/// writes wait for the reader rather than fail.
fn create_nonblocking(
    path: &std::ffi::OsStr,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.file_type().is_fifo() {
        // O_NONBLOCK does nothing to regular files.
        return Ok(file);
    }
    std::fs::OpenOptions::new().write(true).open(path)
}

/// Why --hlog stopped being written during the run, if it did: an
/// error at the end, as a report that cannot be written.
static HLOG_FAILURE: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Writes one interval to --hlog; on failure the log is closed and the
/// failure kept for the end of the run.
pub(crate) fn log_interval(
    plan: &Plan,
    log: &mut Option<HistogramLog<File>>,
    h: &hdrhistogram::Histogram<u64>,
    from: SystemTime,
    length: Duration,
) {
    let (Some(l), Some(path)) = (log.as_mut(), &plan.ext.hlog) else {
        return;
    };
    if let Err(e) = l.interval(h, from, length) {
        let text = failure_text("--hlog", path, &e);
        *HLOG_FAILURE.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
        *log = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("output-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replace_swaps_the_whole_file_and_leaves_no_temporary() {
        let dir = scratch("replace");
        let path = dir.join("r.json");
        std::fs::write(&path, "old").unwrap();
        replace(path.as_os_str().as_bytes(), b"new report").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new report");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replace_into_a_missing_folder_fails_and_leaves_nothing() {
        let dir = scratch("missing");
        let path = dir.join("nope/r.json");
        let e = replace(path.as_os_str().as_bytes(), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `--report-file=/dev/stdout` (as the GNU parallel recipe uses it)
    /// and other files that are not regular are written as they are.
    #[test]
    fn special_files_are_written_in_place() {
        check_one(b"/dev/null").unwrap();
        replace(b"/dev/null", b"report").unwrap();
        let dir = scratch("fifo");
        let fifo = dir.join("r.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        // No reader: refused at once, never blocking.
        let e = check_one(fifo.as_os_str().as_bytes()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENXIO));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `--report-file=/dev/stdout` when stdout is a deleted file (GNU
    /// parallel buffers a job's output so): the report goes into it, and
    /// the link is never renamed over (that once replaced a machine's
    /// /dev/stdout with a regular file).
    #[test]
    fn a_link_to_a_deleted_file_is_written_through_never_replaced() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let dir = scratch("deleted");
        let buffer = dir.join("buffer");
        let file = File::create(&buffer).unwrap();
        std::fs::remove_file(&buffer).unwrap();
        let fd = format!("/proc/self/fd/{}", file.as_raw_fd());
        let link = dir.join("stdout");
        std::os::unix::fs::symlink(&fd, &link).unwrap();
        let bytes = link.as_os_str().as_bytes();
        check_one(bytes).unwrap();
        replace(bytes, b"report").unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        let mut back = String::new();
        File::open(&fd).unwrap().read_to_string(&mut back).unwrap();
        assert_eq!(back, "report");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_refuses_a_directory_and_a_missing_folder() {
        let dir = scratch("check");
        let e = check_one(dir.as_os_str().as_bytes()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        let missing = dir.join("nope/r.json");
        let e = check_one(missing.as_os_str().as_bytes()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        check_one(dir.join("r.json").as_os_str().as_bytes()).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replace_keeps_the_old_files_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let path = dir.join("r.json");
        std::fs::write(&path, "old").unwrap();
        let mode = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&path, mode).unwrap();
        replace(path.as_os_str().as_bytes(), b"new").unwrap();
        let now = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(now & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_keeps_naming_the_report_it_names() {
        let dir = scratch("link");
        let (real, link) = (dir.join("run5.json"), dir.join("latest.json"));
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace(link.as_os_str().as_bytes(), b"new").unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_folder() {
        let temp = temp_path(Path::new("r.json"), "tmp");
        assert_eq!(
            temp.to_str().unwrap(),
            format!(".r.json.{}.tmp", std::process::id())
        );
    }
}
