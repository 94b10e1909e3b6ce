//! run: what the run was, for the top of a report: the command line
//! (secrets redacted), the target, the host and the version. Recorded
//! once at start, from argv, before any thread; the report's `run`
//! object carries it so that `smtp-report` can show it.

use std::ffi::OsString;
use std::sync::OnceLock;

static RUN: OnceLock<RunInfo> = OnceLock::new();

/// What the run was (the start, end and shard are the report's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The command line, shell-quoted, with secrets redacted.
    pub command_line: String,
    /// The endpoint as given.
    pub target: String,
    /// This host's name.
    pub host: String,
    /// `smtp-source 0.1.0`.
    pub version: String,
}

/// Remembers this process's command line and target.
pub fn record(argv: &[OsString], target: &[u8]) {
    let words: Vec<Vec<u8>> =
        argv.iter().map(|a| a.as_encoded_bytes().to_vec()).collect();
    let host = crate::sys::gethostname().unwrap_or_default();
    let _ = RUN.set(RunInfo {
        command_line: command_line(&words),
        target: printable(target),
        host: printable(&host),
        version: concat!("smtp-source ", env!("CARGO_PKG_VERSION")).into(),
    });
}

/// This run's, if `record` was called.
pub fn current() -> Option<RunInfo> {
    RUN.get().cloned()
}

/// Options whose value is a secret, or may hold one. Passwords come
/// from SMTP_SOURCE_PASSWORD or --auth-file, never argv; a user who
/// writes one into --auth-user (`user:password`) or an XCLIENT LOGIN
/// still gets it hidden.
const SECRET_VALUES: [&str; 2] = ["--auth-user", "--xclient"];

const REDACTED: &str = "<redacted>";

/// `argv` as one shell-quoted line, secrets redacted.
pub fn command_line(argv: &[Vec<u8>]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(argv.len());
    let mut secret_next = false;
    for (i, word) in argv.iter().enumerate() {
        let text = printable(word);
        let shown = if i == 0 {
            // The program's name, not where it was run from.
            text.rsplit('/').next().unwrap_or(&text).to_string()
        } else if std::mem::take(&mut secret_next) {
            REDACTED.into()
        } else {
            redact_word(&text, &mut secret_next)
        };
        out.push(quote(&shown));
    }
    out.join(" ")
}

/// A word with any secret in it replaced; sets `secret_next` when the
/// option's value is the next word.
fn redact_word(word: &str, secret_next: &mut bool) -> String {
    for opt in SECRET_VALUES {
        if word == opt {
            *secret_next = true;
            return word.into();
        }
        if let Some(value) =
            word.strip_prefix(opt).and_then(|r| r.strip_prefix('='))
        {
            if value.is_empty() {
                return word.into();
            }
            return format!("{opt}={REDACTED}");
        }
    }
    word.into()
}

/// Printable ASCII as it is, anything else `?` (a report is read on a
/// terminal).
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x20..=0x7e => b as char,
            _ => '?',
        })
        .collect()
}

/// Single quotes around a word the shell would split or expand.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric() || b"-_=./:,@%+[]".contains(&b)
        });
    if plain {
        word.into()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(words: &[&str]) -> String {
        let argv: Vec<Vec<u8>> =
            words.iter().map(|w| w.as_bytes().to_vec()).collect();
        command_line(&argv)
    }

    #[test]
    fn secrets_are_redacted_and_words_quoted() {
        assert_eq!(
            line(&[
                "/usr/sbin/smtp-source",
                "-s",
                "5",
                "--rate=100",
                "127.0.0.1:25"
            ]),
            "smtp-source -s 5 --rate=100 127.0.0.1:25"
        );
        assert_eq!(
            line(&["s", "--auth-user=alice:hunter2", "--auth=PLAIN", "h"]),
            "s '--auth-user=<redacted>' --auth=PLAIN h"
        );
        assert_eq!(
            line(&[
                "s",
                "--auth-user",
                "alice:hunter2",
                "--xclient",
                "LOGIN=x",
                "h"
            ]),
            "s --auth-user '<redacted>' --xclient '<redacted>' h"
        );
        assert_eq!(
            line(&["s", "-S", "it's a test", "-f", "a b\x1b", "h"]),
            "s -S 'it'\\''s a test' -f 'a b?' h"
        );
        assert!(!line(&["s", "--auth-user=u:secret"]).contains("secret"));
    }
}
