//! workload: what the messages of a run are made of, decided before any
//! connection. The bodies (one, a --size-mix class each, or a
//! --message-dir file each), each built once in both forms (DATA and
//! BDAT) and shared by every session; and the --rcpt-file and
//! --sender-file lists. Which body, sender and recipients a message gets
//! is a function of its number in the run (`work::Dealer` numbers them),
//! so a run's sequence does not depend on thread scheduling.

use std::sync::Arc;

use crate::cli::Args;
use crate::command::Command;
use crate::draw::SizeMix;
use crate::error::{Config, Conflict, Error, FileOp, Problem};
use crate::message::{self, Form, DEFAULT_BODY};

/// Most bytes of --message-dir files a run reads (they are held in
/// memory, in up to three forms, for the whole run).
pub const MAX_CORPUS: u64 = 256 << 20;

/// Most bytes of a --rcpt-file or --sender-file.
const MAX_LIST: u64 = 64 << 20;

/// One message body.
#[derive(Debug, Clone)]
pub struct Body {
    /// As DATA sends it: dot-stuffed, the end-of-data dot appended.
    pub data: Bytes,
    /// With --chunking, as BDAT sends it (no stuffing, no dot).
    pub raw: Option<Bytes>,
    /// The --size-mix payload size or the --message-dir file size.
    pub size: u64,
}

/// Body bytes shared by every session: the first `len` bytes of a
/// buffer. A filler has nothing to stuff, so its BDAT form is its DATA
/// form without the dot: one buffer holds both, and a -l of 2 GiB
/// costs 2 GiB, made in place.
#[derive(Clone)]
pub struct Bytes {
    buf: Arc<Vec<u8>>,
    len: usize,
}

impl Bytes {
    /// All of `buf` (moved, not copied).
    fn whole(buf: Vec<u8>) -> Bytes {
        let len = buf.len();
        Bytes {
            buf: Arc::new(buf),
            len,
        }
    }

    /// The first `len` bytes of the same buffer.
    fn prefix(&self, len: usize) -> Bytes {
        Bytes {
            buf: Arc::clone(&self.buf),
            len: len.min(self.len),
        }
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The length only: a body may be gigabytes (and Plan is Debug).
impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.len)
    }
}

/// Whether the bodies are made: --dry-run prints none, so it only
/// checks what they are made from (the files are still read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    Build,
    CheckOnly,
}

/// How each message's body is chosen.
#[derive(Debug, Clone)]
pub enum Choice {
    /// Every message has body 0 (default text, -l or -F).
    One,
    /// Drawn with the weights; body i is class i.
    Mix(SizeMix),
    /// Message n has file n modulo the count (name order).
    Corpus,
}

/// The bodies and address lists of a run.
#[derive(Debug, Clone)]
pub struct Content {
    pub bodies: Vec<Body>,
    pub choice: Choice,
    /// --sender-file: message n has sender n modulo the count.
    pub senders: Option<Vec<Vec<u8>>>,
    /// --rcpt-file: message n's recipients are r consecutive entries
    /// from entry n*r, wrapping.
    pub rcpts: Option<Vec<Vec<u8>>>,
}

impl Content {
    /// The sender of message `n` (`default`: -f or foo@myhostname).
    pub fn sender<'a>(&'a self, n: u64, default: &'a [u8]) -> &'a [u8] {
        match &self.senders {
            Some(list) => &list[(n % list.len() as u64) as usize],
            None => default,
        }
    }

    /// The `k`-th --rcpt-file address, wrapping (empty without one).
    pub fn rcpt(&self, k: u64) -> &[u8] {
        match &self.rcpts {
            Some(list) => &list[(k % list.len() as u64) as usize],
            None => b"",
        }
    }
}

/// Options that cannot go together; the fatal text, as the -l/-F
/// conflict is reported.
pub fn conflicts(args: &Args) -> Result<(), Error> {
    let l = &args.long;
    let pairs = [
        (
            l.size_mix.is_some(),
            args.length.is_some(),
            "--size-mix",
            "-l",
        ),
        (
            l.size_mix.is_some(),
            args.file.is_some(),
            "--size-mix",
            "-F",
        ),
        (
            l.message_dir.is_some(),
            args.length.is_some(),
            "--message-dir",
            "-l",
        ),
        (
            l.message_dir.is_some(),
            args.file.is_some(),
            "--message-dir",
            "-F",
        ),
        (
            l.message_dir.is_some(),
            l.size_mix.is_some(),
            "--message-dir",
            "--size-mix",
        ),
        (
            l.rcpt_file.is_some(),
            args.to.is_some(),
            "--rcpt-file",
            "-t",
        ),
        (l.rcpt_file.is_some(), args.numbered, "--rcpt-file", "-N"),
        (
            l.rcpt_file.is_some(),
            l.numbering == crate::longopts::Numbering::Postfix39,
            "--rcpt-file",
            "--numbering=3.9",
        ),
        (
            l.sender_file.is_some(),
            args.from.is_some(),
            "--sender-file",
            "-f",
        ),
    ];
    match pairs.iter().find(|(a, b, _, _)| *a && *b) {
        Some((_, _, x, y)) => {
            Err(Config::Conflict(Conflict::Options(x, y)).into())
        }
        None => Ok(()),
    }
}

/// Reads and builds everything: the -F file or the --message-dir files,
/// the bodies (unless `bodies` says only to check), the address lists.
pub fn build(args: &Args, bodies: Bodies) -> Result<Content, Error> {
    let forms = Forms::of(args);
    let made = |size: u64, make: &dyn Fn() -> Body| match bodies {
        Bodies::Build => make(),
        Bodies::CheckOnly => unmade(size),
    };
    let (bodies, choice) = if let Some(mix) = &args.long.size_mix {
        let bodies = mix
            .iter()
            .map(|&(size, _)| {
                made(u64::from(size), &|| filler_body(size as usize, forms))
            })
            .collect();
        (bodies, Choice::Mix(SizeMix::new(mix)))
    } else if let Some(dir) = &args.long.message_dir {
        let files = read_corpus(dir)?;
        let bodies = files
            .iter()
            .map(|f| made(f.len() as u64, &|| file_body(f, forms)))
            .collect();
        (bodies, Choice::Corpus)
    } else {
        (vec![single_body(args, bodies)?], Choice::One)
    };
    Ok(Content {
        bodies,
        choice,
        senders: list(args.long.sender_file.as_deref(), "--sender-file")?,
        rcpts: list(args.long.rcpt_file.as_deref(), "--rcpt-file")?,
    })
}

/// The body of an old command line: -F file, -l filler or the default.
fn single_body(args: &Args, bodies: Bodies) -> Result<Body, Error> {
    let file = match &args.file {
        Some(path) => Some(read_file(path, u64::MAX)?),
        None => None,
    };
    if bodies == Bodies::CheckOnly {
        return Ok(unmade(0));
    }
    let forms = Forms::of(args);
    Ok(match (&file, args.length) {
        (Some(data), _) => Body {
            size: 0,
            ..file_body(data, forms)
        },
        (None, Some(len)) => Body {
            size: 0,
            ..filler_body(len as usize, forms)
        },
        (None, None) => body(|_| DEFAULT_BODY.to_vec(), forms, 0),
    })
}

/// Which forms of each body the run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forms {
    Data,
    /// --chunking: BDAT's as well.
    DataAndBdat,
}

impl Forms {
    fn of(args: &Args) -> Forms {
        match args.long.chunking {
            true => Forms::DataAndBdat,
            false => Forms::Data,
        }
    }
}

/// What --dry-run holds for a body it does not make.
fn unmade(size: u64) -> Body {
    Body {
        data: Bytes::whole(Vec::new()),
        raw: None,
        size,
    }
}

/// A filler body of `size` bytes (-l, a --size-mix class), made in
/// place in one buffer: nothing to stuff, so the BDAT form is the DATA
/// form without its dot.
fn filler_body(size: usize, forms: Forms) -> Body {
    let mut data = Vec::with_capacity(size.saturating_add(5));
    message::filler_into(size, &mut data);
    let raw_len = data.len();
    Command::Dot.write_wire(&mut data);
    let data = Bytes::whole(data);
    Body {
        raw: (forms == Forms::DataAndBdat).then(|| data.prefix(raw_len)),
        data,
        size: size as u64,
    }
}

fn file_body(file: &[u8], forms: Forms) -> Body {
    let make = |form| message::from_file_as(file, form);
    body(make, forms, file.len() as u64)
}

fn body(make: impl Fn(Form) -> Vec<u8>, forms: Forms, size: u64) -> Body {
    let mut data = make(Form::Data);
    Command::Dot.write_wire(&mut data);
    Body {
        data: Bytes::whole(data),
        raw: (forms == Forms::DataAndBdat)
            .then(|| Bytes::whole(make(Form::Bdat))),
        size,
    }
}

/// The regular files of `dir` (hidden ones skipped), in byte order of
/// their names, read whole; at most `MAX_CORPUS` bytes in all.
fn read_corpus(dir: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let os = std::ffi::OsStr::from_bytes(dir);
    // The directory is named as text here (a file in it, as bytes).
    let shown = String::from_utf8_lossy(dir).into_owned().into_bytes();
    let failed = |op, error| Config::Option {
        option: "--message-dir",
        inner: Box::new(Config::File {
            op,
            path: shown.clone(),
            error,
        }),
    };
    let entries =
        std::fs::read_dir(os).map_err(|e| failed(FileOp::Open, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| failed(FileOp::Read, e))?;
        let name = entry.file_name().into_vec();
        // Editors and tools leave dot files behind (swap files, .git).
        if name.first() == Some(&b'.') {
            continue;
        }
        let path = entry.path();
        // Follows symbolic links: a link to a message is a message.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            paths.push((name, path));
        }
    }
    if paths.is_empty() {
        return Err(input("--message-dir", dir, Problem::NoFiles));
    }
    paths.sort();
    // Sizes first: a directory too large fails without reading it.
    let listed: u64 = paths
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    if listed > MAX_CORPUS {
        return Err(too_large(dir));
    }
    let mut left = MAX_CORPUS;
    let mut files = Vec::with_capacity(paths.len());
    for (_, path) in paths {
        let data = read_file(path.as_os_str().as_bytes(), left).map_err(
            |e| match e {
                // A file that grew since it was listed.
                Error::Config(Config::OverLimit { .. }) => too_large(dir),
                e => prefixed("--message-dir", e),
            },
        )?;
        left -= data.len() as u64;
        files.push(data);
    }
    Ok(files)
}

fn too_large(dir: &[u8]) -> Error {
    let problem = Problem::CorpusOver {
        mib: MAX_CORPUS >> 20,
    };
    input("--message-dir", dir, problem)
}

fn input(option: &'static str, path: &[u8], problem: Problem) -> Error {
    let path = path.to_vec();
    Config::Input {
        option,
        path,
        problem,
    }
    .into()
}

/// An address list: one a line, surrounding white space dropped, blank
/// lines and `#` comments skipped.
fn list(
    path: Option<&[u8]>,
    what: &'static str,
) -> Result<Option<Vec<Vec<u8>>>, Error> {
    let Some(path) = path else { return Ok(None) };
    let text = read_file(path, MAX_LIST).map_err(|e| match e {
        Error::Config(Config::OverLimit { .. }) => {
            let mib = MAX_LIST >> 20;
            input(what, path, Problem::LargerThan { mib })
        }
        e => prefixed(what, e),
    })?;
    let entries: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .map(<[u8]>::to_vec)
        .collect();
    if entries.is_empty() {
        return Err(input(what, path, Problem::NoAddresses));
    }
    Ok(Some(entries))
}

/// A whole file of at most `limit` bytes. Errors are `open PATH: why`
/// and `read PATH: why` (the -F texts); a file over the limit is
/// `Config::OverLimit`, for the caller to word.
///
/// Opening never blocks: the file is opened O_NONBLOCK, so a FIFO
/// nobody writes to is refused at once (open(2) would wait for a
/// writer for ever) rather than hanging the run. A FIFO or terminal
/// with a writer is read as before, as its data comes (`<(command)`).
pub fn read_file(path: &[u8], limit: u64) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let os = std::ffi::OsStr::from_bytes(path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(os)
        .map_err(|e| file_error(FileOp::Open, path, e))?;
    let fifo = file.metadata().is_ok_and(|m| m.file_type().is_fifo());
    let mut data = Vec::new();
    let mut rest = file.take(limit.saturating_add(1));
    let mut chunk = [0u8; 64 << 10];
    loop {
        match rest.read(&mut chunk) {
            Ok(0) if fifo && data.is_empty() => {
                return Err(file_error(FileOp::Open, path, no_writer()))
            }
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A writer that has not written yet.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => return Err(file_error(FileOp::Read, path, e)),
        }
    }
    if data.len() as u64 > limit {
        let path = path.to_vec();
        return Err(Config::OverLimit { path, limit }.into());
    }
    Ok(data)
}

fn file_error(op: FileOp, path: &[u8], error: std::io::Error) -> Error {
    let path = path.to_vec();
    Config::File { op, path, error }.into()
}

/// A FIFO read at once gives end of file when no process has it open
/// for writing.
fn no_writer() -> std::io::Error {
    std::io::Error::other("a FIFO with no writer")
}

/// A file error of `option`'s input, told as `option: <error>`.
fn prefixed(option: &'static str, e: Error) -> Error {
    match e {
        Error::Config(inner) => Config::Option {
            option,
            inner: Box::new(inner),
        }
        .into(),
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_bodies_match_the_l_format() {
        let b = filler_body(200, Forms::DataAndBdat);
        // One buffer for both forms.
        assert!(Arc::ptr_eq(&b.data.buf, &b.raw.as_ref().unwrap().buf));
        let mut want = message::filler(200);
        assert_eq!(&b.raw.unwrap()[..], &want[..]);
        want.extend_from_slice(b".\r\n");
        assert_eq!(&b.data[..], &want[..]);
        assert_eq!(b.size, 200);
    }

    #[test]
    fn lists_skip_blanks_and_comments() {
        let dir = std::env::temp_dir()
            .join(format!("smtp-source-list-{}", std::process::id()));
        std::fs::write(&dir, b"# head\n a@x \r\n\n#b@x\nc@x").unwrap();
        let path = dir.to_string_lossy().into_owned();
        let got = list(Some(path.as_bytes()), "--rcpt-file").unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(got.unwrap(), [b"a@x".to_vec(), b"c@x".to_vec()]);
    }

    #[test]
    fn over_the_limit_is_its_own_error() {
        let dir = std::env::temp_dir()
            .join(format!("smtp-source-limit-{}", std::process::id()));
        std::fs::write(&dir, b"12345").unwrap();
        let path = dir.to_string_lossy().into_owned();
        let small = read_file(path.as_bytes(), 4);
        let fits = read_file(path.as_bytes(), 5);
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(
            small,
            Err(Error::Config(Config::OverLimit { limit: 4, .. }))
        ));
        assert_eq!(fits.unwrap(), b"12345");
    }
}
