//! Shared input decoding, reference models and checks for the fuzz
//! targets. Each target is one call into this library, so a crash input
//! can also be replayed from a plain test.
//!
//! The models live in `tests/support/model.rs`, written from the reply
//! rules in `docs/reference-behaviour.md` ("Replies"), not from the code
//! they check; the same checks run without nightly in
//! `tests/properties.rs`.

use smtp_source::endpoint::{self, Spec};

// The reference models and checks, one file shared with the stable
// property tests (tests/properties.rs), so the two cannot drift apart.
#[path = "../../tests/support/model.rs"]
mod model;
pub use model::*;

/// A fuzz input split into its parts.
///
/// Layout: byte 0 is the mode (bit 0: map the data onto `ALPHABET`),
/// byte 1 is the number of read sizes (mod 64), then one byte per
/// read size, then the data. Missing parts are empty.
pub struct Input {
    pub mode: u8,
    pub chunks: Vec<usize>,
    pub data: Vec<u8>,
}

impl Input {
    pub fn decode(raw: &[u8]) -> Input {
        let mode = raw.first().copied().unwrap_or(0);
        let n = raw.get(1).map_or(0, |&b| usize::from(b % 64));
        let rest = raw.get(2..).unwrap_or(&[]);
        let n = n.min(rest.len());
        let pattern: Vec<usize> =
            rest[..n].iter().map(|&b| chunk_size(b)).collect();
        let mut data = rest[n..].to_vec();
        if mode & 1 == 1 {
            map_alphabet(&mut data);
        }
        // The sizes repeat until they cover the data; with none given,
        // `ChunkSource` reads 1 byte at a time (the worst case).
        let mut chunks = Vec::new();
        let mut sum = 0;
        for &size in pattern.iter().cycle() {
            if sum >= data.len() {
                break;
            }
            sum += size;
            chunks.push(size);
        }
        Input { mode, chunks, data }
    }
}

/// 1..=240 bytes, or 1 KiB steps up to 16 KiB (over the reader's 1 KiB
/// buffer, to reach its clamping).
fn chunk_size(b: u8) -> usize {
    match b {
        0..=239 => usize::from(b) + 1,
        _ => (usize::from(b) - 239) * 1024,
    }
}

pub fn map_alphabet(data: &mut [u8]) {
    for b in data {
        *b = ALPHABET[usize::from(*b) % ALPHABET.len()];
    }
}

/// The `reply` target: parse whole, read in chunks, compare both with
/// the shared model and with each other.
pub fn check_reply(data: &[u8], chunks: &[usize]) {
    check_reply_and_lines(data, chunks);
}

/// The `lineio` target: lines and the way reading ends match the model
/// (the same pass also checks the replies made of them).
pub fn check_lineio(data: &[u8], chunks: &[usize]) {
    check_reply_and_lines(data, chunks);
}

/// Bytes of a Spec field, whatever type the endpoint module uses.
pub trait Field {
    fn bytes(&self) -> Vec<u8>;
}

impl Field for [u8] {
    fn bytes(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl Field for Vec<u8> {
    fn bytes(&self) -> Vec<u8> {
        self.clone()
    }
}

impl Field for str {
    fn bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Field for String {
    fn bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Field for std::ffi::OsStr {
    fn bytes(&self) -> Vec<u8> {
        std::os::unix::ffi::OsStrExt::as_bytes(self).to_vec()
    }
}

impl Field for std::ffi::OsString {
    fn bytes(&self) -> Vec<u8> {
        self.as_os_str().bytes()
    }
}

impl Field for std::path::Path {
    fn bytes(&self) -> Vec<u8> {
        self.as_os_str().bytes()
    }
}

impl Field for std::path::PathBuf {
    fn bytes(&self) -> Vec<u8> {
        self.as_os_str().bytes()
    }
}

impl Field for u16 {
    fn bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl<T: Field + ?Sized> Field for &T {
    fn bytes(&self) -> Vec<u8> {
        (**self).bytes()
    }
}

impl<T: Field> Field for Option<T> {
    /// No port means the default service, written as an empty port.
    fn bytes(&self) -> Vec<u8> {
        self.as_ref().map_or_else(Vec::new, Field::bytes)
    }
}

/// Spec back to operand text, or None where that text could read back
/// differently (a `[`/`]` in the host, a `:`/`[`/`]` in the port, an
/// empty host). `inet:` is always written, so hosts named `unix` or
/// `inet` cannot change meaning.
pub fn render(spec: &Spec) -> Option<Vec<u8>> {
    #[allow(unreachable_patterns)]
    match spec {
        Spec::Unix(path) => Some([&b"unix:"[..], &path.bytes()].concat()),
        Spec::Inet { host, port, .. } => {
            let (host, port) = (host.bytes(), port.bytes());
            let bad = |b: &[u8], set: &[u8]| b.iter().any(|c| set.contains(c));
            if host.is_empty() || bad(&host, b"[]") || bad(&port, b":[]") {
                return None;
            }
            let host = if host.contains(&b':') {
                [&b"["[..], &host, b"]"].concat()
            } else {
                host
            };
            Some([&b"inet:"[..], &host, b":", &port].concat())
        }
        _ => None,
    }
}

/// The `endpoint` target: no panic; a parsed operand, printed and
/// parsed again, prints the same. A re-parse may fail (the bracketed
/// form can be checked more strictly than the plain one), so only an
/// accepted re-parse is compared; a `unix:` path must always re-parse.
pub fn check_endpoint(arg: &[u8]) {
    let spec = match endpoint::parse(arg) {
        Ok(spec) => spec,
        Err(msg) => {
            assert!(!msg.is_empty(), "empty error for {arg:?}");
            return;
        }
    };
    let Some(text) = render(&spec) else { return };
    match endpoint::parse(&text) {
        Ok(again) => assert_eq!(render(&again).as_ref(), Some(&text)),
        Err(msg) => assert!(
            !matches!(spec, Spec::Unix(_)),
            "{text:?} does not re-parse: {msg:?}"
        ),
    }
}

/// Operand inputs: mode bit 0 maps onto an endpoint alphabet, bits 1-2
/// pick a prefix (none, `unix:`, `inet:`, `[`).
pub fn endpoint_input(raw: &[u8]) -> Vec<u8> {
    const ALPHA: &[u8] = b"0123456789abcdefinetux:[]./-_v";
    let mode = raw.first().copied().unwrap_or(0);
    let mut data = raw.get(1..).unwrap_or(&[]).to_vec();
    if mode & 1 == 1 {
        for b in &mut data {
            *b = ALPHA[usize::from(*b) % ALPHA.len()];
        }
    }
    let prefix: &[u8] = match (mode >> 1) & 3 {
        0 => b"",
        1 => b"unix:",
        2 => b"inet:",
        _ => b"[",
    };
    [prefix, &data].concat()
}
