//! scale: one logical run split over many processes (`--shard=K/N`)
//! that start together (`--start-at`). Pure: the share arithmetic, the
//! K/N and time parsers; nothing here reads a clock or a socket.
//!
//! A shard is a contiguous slice of the whole run's messages: shard K
//! sends messages `first + 1 ..= first + count` of `-m`, so everything
//! numbered by message (`-N` recipients, the Message-Id counter)
//! continues where shard K-1 stopped, and the union of all N shards is
//! the unsharded run.

use std::time::{Duration, SystemTime};

/// Part `index` (from 1) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Most shards of one run (far beyond any fleet; keeps the arithmetic
/// in range).
pub const MAX_SHARDS: u32 = 1_000_000;

impl Shard {
    /// `K/N` with 1 <= K <= N <= MAX_SHARDS, decimal digits only.
    pub fn parse(text: &[u8]) -> Option<Shard> {
        let slash = text.iter().position(|&b| b == b'/')?;
        let index = decimal(&text[..slash])?;
        let count = decimal(&text[slash + 1..])?;
        (1..=count)
            .contains(&index)
            .then_some(Shard { index, count })
            .filter(|_| count <= MAX_SHARDS)
    }

    /// The whole run when there is no --shard.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// This shard's slice of `total` messages: (messages before it, its
    /// own count). Shares differ by at most one; the first `total mod N`
    /// shards get the extra message.
    pub fn share(self, total: u64) -> (u64, u64) {
        let (n, k) = (u64::from(self.count), u64::from(self.index - 1));
        let (base, extra) = (total / n, total % n);
        let first = k * base + k.min(extra);
        (first, base + u64::from(k < extra))
    }
}

fn decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `--start-at`: Unix seconds (a fraction allowed) or RFC 3339
/// (`2026-12-05T10:00:00Z`, `2026-12-05T11:00:00.5+01:00`).
pub fn parse_time(text: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(text).ok()?.trim();
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = s.parse().ok()?;
        return (secs.is_finite() && secs < 1e11)
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    rfc3339(s)
}

/// RFC 3339's date-time: `YYYY-MM-DD` `T` (or `t` or a space)
/// `hh:mm:ss[.frac]` then `Z` or `±hh:mm`. Times before 1970 are
/// refused (no run starts then).
pub fn rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b[16] != b':' {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, &d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > month_days(year, month) {
        return None;
    }
    // 60 is a leap second: taken as the next second's start.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let (nanos, rest) = fraction(&s[19..])?;
    let offset = zone(rest)?;
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// `.ddd` (1 to 9 digits) if present, as nanoseconds; and what follows.
fn fraction(s: &str) -> Option<(u32, &str)> {
    let Some(digits) = s.strip_prefix('.') else {
        return Some((0, s));
    };
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 || len > 9 {
        return None;
    }
    let value: u32 = digits[..len].parse().ok()?;
    Some((value * 10u32.pow(9 - len as u32), &digits[len..]))
}

/// `Z` or `±hh:mm`, as seconds east of UTC.
fn zone(s: &str) -> Option<i64> {
    if s == "Z" || s == "z" {
        return Some(0);
    }
    let b = s.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let two = |i: usize| -> Option<i64> {
        let (h, l) = (b[i], b[i + 1]);
        (h.is_ascii_digit() && l.is_ascii_digit())
            .then(|| i64::from(h - b'0') * 10 + i64::from(l - b'0'))
    };
    let (hh, mm) = (two(1)?, two(4)?);
    (hh <= 23 && mm <= 59).then_some(sign * (hh * 3600 + mm * 60))
}

fn month_days(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of
/// `report::civil_from_days`, Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(k: u32, n: u32) -> Shard {
        Shard { index: k, count: n }
    }

    #[test]
    fn shard_values() {
        assert_eq!(Shard::parse(b"1/1"), Some(Shard::WHOLE));
        assert_eq!(Shard::parse(b"3/4"), Some(shard(3, 4)));
        assert_eq!(Shard::parse(b"1000/1000"), Some(shard(1000, 1000)));
        for bad in [
            &b"0/4"[..],
            b"5/4",
            b"4",
            b"/4",
            b"1/",
            b"1/0",
            b"-1/4",
            b"+1/4",
            b"1/4x",
            b" 1/4",
            b"1/2000000",
            b"a/b",
            b"",
        ] {
            assert_eq!(Shard::parse(bad), None, "{bad:?}");
        }
    }

    /// Every m in a spread from 0 to 2^32 and every N up to 1000: the
    /// shares tile 0..m in order, differ by at most one, and the first
    /// m mod N are the larger ones.
    #[test]
    fn shares_tile_the_run() {
        let mut ms: Vec<u64> = (0..=40).collect();
        ms.extend([999, 1000, 1001, 65_537, 1 << 31, (1 << 32) - 1, 1 << 32]);
        let ns = (1..=40).chain([97, 255, 256, 999, 1000]);
        for n in ns {
            for &m in &ms {
                let mut next = 0;
                for k in 1..=n {
                    let (first, count) = shard(k, n).share(m);
                    assert_eq!(first, next, "m={m} n={n} k={k}");
                    let want = m / u64::from(n)
                        + u64::from(u64::from(k - 1) < m % u64::from(n));
                    assert_eq!(count, want, "m={m} n={n} k={k}");
                    next += count;
                }
                assert_eq!(next, m, "m={m} n={n}");
            }
        }
        assert_eq!(Shard::WHOLE.share(7), (0, 7));
        assert_eq!(shard(2, 4).share(10), (3, 3));
        assert_eq!(shard(3, 4).share(10), (6, 2));
    }

    fn unix(t: SystemTime) -> f64 {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    #[test]
    fn start_times() {
        let t = |s: &str| parse_time(s.as_bytes()).map(unix);
        assert_eq!(t("1796464800"), Some(1_796_464_800.0));
        assert_eq!(t("1796464800.25"), Some(1_796_464_800.25));
        assert_eq!(t("2026-12-05T10:00:00Z"), Some(1_796_464_800.0));
        assert_eq!(t("2026-12-05t10:00:00z"), Some(1_796_464_800.0));
        assert_eq!(t("2026-12-05 10:00:00Z"), Some(1_796_464_800.0));
        assert_eq!(t("2026-12-05T11:00:00+01:00"), Some(1_796_464_800.0));
        assert_eq!(t("2026-12-05T04:30:00-05:30"), Some(1_796_464_800.0));
        assert_eq!(t("2026-12-05T10:00:00.5Z"), Some(1_796_464_800.5));
        let nanos = parse_time(b"2026-12-05T10:00:00.123456789Z").unwrap();
        assert_eq!(
            nanos.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::new(1_796_464_800, 123_456_789)
        );
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(t("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        assert_eq!(t("2024-12-31T23:59:60Z"), Some(1_735_689_600.0));
        for bad in [
            "2026-12-05T10:00:00",
            "2026-12-05",
            "2026-13-05T10:00:00Z",
            "2026-02-29T10:00:00Z",
            "2026-12-32T10:00:00Z",
            "2026-12-05T24:00:00Z",
            "2026-12-05T10:60:00Z",
            "2026-12-05T10:00:00.Z",
            "2026-12-05T10:00:00.1234567891Z",
            "2026-12-05T10:00:00+1:00",
            "2026-12-05T10:00:00+01:60",
            "2026-12-05X10:00:00Z",
            "1969-12-31T23:59:59Z",
            "tomorrow",
            "",
            "1e9",
            "-5",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_round_trip_with_the_report() {
        for days in [0u64, 59, 365, 10_957, 20_792, 100_000] {
            let t = SystemTime::UNIX_EPOCH
                + Duration::from_secs(days * 86_400 + 3_723);
            let text = crate::report::iso8601(t);
            assert_eq!(rfc3339(&text), Some(t), "{text}");
        }
    }
}
