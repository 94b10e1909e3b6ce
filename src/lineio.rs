//! lineio: the bounded line reader that every reply read goes through.
//!
//! It owns the read buffer of one connection. A line is kept up to
//! `LINE_LIMIT` bytes; the excess is read and thrown away, but never
//! without end: after `DISCARD_LIMIT` discarded bytes the read fails (a
//! bound of ours: man page NOTES, X2). LF ends a line (bare LF
//! accepted), trailing CRs are stripped, as the reference does (test
//! `f20_line_endings`). Time bounds come from the `Source`, which is
//! given the deadline of the whole reply before each read (every wait
//! has a deadline: man page NOTES, X1).

use std::io;
use std::time::Instant;

use crate::reply::strip_crs;

/// smtp-source's line limit: the kept part of a reply line, code included.
pub const LINE_LIMIT: usize = 10240;

/// Most bytes discarded from one over-long line before giving up (man
/// page NOTES, X2).
pub const DISCARD_LIMIT: usize = 1 << 20;

/// Bytes asked for in one read(). Replies are short (an EHLO reply is a
/// few hundred bytes), and every session holds one buffer: with -s 1000
/// a 4 KiB buffer was a quarter of the client's resident memory.
const BUF_SIZE: usize = 1024;

/// Where bytes come from: a socket (with a deadline) or a test double.
pub trait Source {
    /// Reads at most `buf.len()` bytes, failing with `TimedOut` once
    /// `deadline` has passed. Ok(0) means end of file.
    fn read_by(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> io::Result<usize>;
}

/// Why no line came back.
#[derive(Debug)]
pub enum LineError {
    Eof,
    Timeout,
    TooLong,
    Io(io::Error),
}

impl From<io::Error> for LineError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                LineError::Timeout
            }
            io::ErrorKind::UnexpectedEof => LineError::Eof,
            _ => LineError::Io(e),
        }
    }
}

/// A buffered, bounded line reader.
pub struct LineReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    line: Vec<u8>,
}

impl Default for LineReader {
    fn default() -> Self {
        Self::new()
    }
}

impl LineReader {
    pub fn new() -> Self {
        LineReader {
            buf: vec![0; BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            line: Vec::new(),
        }
    }

    /// True when bytes the peer sent are already buffered (and would be
    /// taken as the next reply).
    pub fn has_buffered(&self) -> bool {
        self.start < self.end
    }

    /// Reads one line, without its line ending, capped at `LINE_LIMIT`.
    pub fn read_line<S: Source>(
        &mut self,
        src: &mut S,
        deadline: Instant,
    ) -> Result<&[u8], LineError> {
        self.line.clear();
        let mut discarded = 0usize;
        loop {
            if self.start == self.end {
                self.fill(src, deadline)?;
            }
            let avail = &self.buf[self.start..self.end];
            let lf = avail.iter().position(|&b| b == b'\n');
            let take = lf.unwrap_or(avail.len());
            let room = LINE_LIMIT.saturating_sub(self.line.len());
            let keep = take.min(room);
            self.line.extend_from_slice(&avail[..keep]);
            discarded += take - keep;
            if discarded > DISCARD_LIMIT {
                return Err(LineError::TooLong);
            }
            match lf {
                Some(at) => {
                    self.start += at + 1;
                    // A cut line keeps its trailing CRs, as 3.7.11 shows
                    // them (`…x?` for `…x\r` cut at the limit).
                    let len = if discarded == 0 {
                        strip_crs(&self.line).len()
                    } else {
                        self.line.len()
                    };
                    return Ok(&self.line[..len]);
                }
                None => self.start = self.end,
            }
        }
    }

    fn fill<S: Source>(
        &mut self,
        src: &mut S,
        deadline: Instant,
    ) -> Result<(), LineError> {
        let n = loop {
            match src.read_by(&mut self.buf, deadline) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Err(LineError::Eof);
        }
        self.start = 0;
        self.end = n;
        Ok(())
    }
}

/// A `Source` over a byte string, handed out in the given chunk sizes:
/// for tests and fuzzing (chunking invariance).
pub struct ChunkSource<'a> {
    data: &'a [u8],
    chunks: Vec<usize>,
    next: usize,
}

impl<'a> ChunkSource<'a> {
    /// `chunks` of 0 are read as 1; when they run out, 1 is used.
    pub fn new(data: &'a [u8], chunks: Vec<usize>) -> Self {
        ChunkSource {
            data,
            chunks,
            next: 0,
        }
    }
}

impl Source for ChunkSource<'_> {
    fn read_by(
        &mut self,
        buf: &mut [u8],
        _deadline: Instant,
    ) -> io::Result<usize> {
        let want = self.chunks.get(self.next).copied().unwrap_or(1).max(1);
        self.next += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(data: &[u8], chunks: Vec<usize>) -> Vec<Vec<u8>> {
        let mut src = ChunkSource::new(data, chunks);
        let mut rd = LineReader::new();
        let mut out = Vec::new();
        let deadline = Instant::now();
        while let Ok(line) = rd.read_line(&mut src, deadline) {
            out.push(line.to_vec());
        }
        out
    }

    #[test]
    fn crlf_and_bare_lf_end_lines() {
        let got = lines(b"220 a\r\n250 b\n250 c\r\r\n", vec![100]);
        assert_eq!(
            got,
            vec![b"220 a".to_vec(), b"250 b".to_vec(), b"250 c".to_vec()]
        );
    }

    #[test]
    fn long_line_keeps_limit_bytes() {
        let mut data = b"550 ".to_vec();
        data.extend(std::iter::repeat_n(b'x', 20000));
        data.extend_from_slice(b"\r\n250 next\r\n");
        let got = lines(&data, vec![4096; 10]);
        assert_eq!(got[0].len(), LINE_LIMIT);
        assert_eq!(got[1], b"250 next");
    }

    #[test]
    fn cut_line_keeps_its_trailing_cr() {
        // Observed in 3.7.11: 550 + 10235 x + CR, then "yy" beyond the
        // limit, shows the CR ('?'); with nothing beyond it, it is
        // stripped.
        let mut cut = b"550 ".to_vec();
        cut.extend(std::iter::repeat_n(b'x', 10235));
        cut.push(b'\r');
        let whole = [&cut[..], b"\n"].concat();
        let longer = [&cut[..], b"yy\r\n"].concat();
        assert_eq!(lines(&longer, vec![4096; 10])[0], cut);
        assert_eq!(lines(&whole, vec![4096; 10])[0], &cut[..cut.len() - 1]);
    }

    #[test]
    fn endless_line_fails_after_discard_limit() {
        let data = vec![b'x'; LINE_LIMIT + DISCARD_LIMIT + 10];
        let mut src = ChunkSource::new(&data, vec![4096; 1000]);
        let mut rd = LineReader::new();
        let r = rd.read_line(&mut src, Instant::now());
        assert!(matches!(r, Err(LineError::TooLong)));
    }

    #[test]
    fn eof_mid_line_is_eof() {
        let mut src = ChunkSource::new(b"220 partial", vec![100]);
        let mut rd = LineReader::new();
        let r = rd.read_line(&mut src, Instant::now());
        assert!(matches!(r, Err(LineError::Eof)));
    }

    #[test]
    fn chunking_does_not_change_lines() {
        let data = b"250-a\r\n250-bb\n\r\n250 ccc\r\n";
        let whole = lines(data, vec![1000]);
        for size in 1..data.len() {
            assert_eq!(lines(data, vec![size; 100]), whole, "size {size}");
        }
    }
}
