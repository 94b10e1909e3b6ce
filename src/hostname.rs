//! hostname: validation of host names and address literals, as Postfix's
//! `valid_hostname`, `valid_hostaddr` and `valid_mailhost_literal` behave
//! in smtp-source 3.7.11 (`-M`, the machine hostname, the endpoint host).
//!
//! Pure: bytes in, `Result` out; no I/O, no allocation except for the
//! warning text. Every rule and every message text here was observed by
//! running the reference binary; the warning texts carry the name of the
//! Postfix check that printed them ("valid_hostname: ..."), because the
//! reference prints exactly that after "argv0: warning: ".

/// Longest hostname label (RFC 1035 section 2.3.4).
const LABEL_MAX: usize = 63;
/// Longest hostname (RFC 1035 section 2.3.4).
const NAME_MAX: usize = 255;
/// The reference quotes at most this many bytes of a name ("%.100s").
const SHOW_MAX: usize = 100;
/// Text between `[` and `]` must fit Postfix's 46-byte address buffer.
const LITERAL_MAX: usize = 45;
/// Case-insensitive tag that selects IPv6 inside `[...]`.
const IPV6_TAG: &[u8] = b"ipv6:";

/// Validates a -M value. Err((warning_text, fatal_text)), both WITHOUT
/// the "argv0: warning: "/"fatal: " prefixes.
///
/// A value that starts with `[` must be an address literal; anything else
/// must be a hostname (the reference never treats `1.2.3.4` as an address
/// here: it is a numeric hostname).
pub fn check_myhostname(value: &[u8]) -> Result<(), (Vec<u8>, Vec<u8>)> {
    if value.first() == Some(&b'[') {
        mailhost_literal(value)
            .map_err(|w| (w, cat(&[b"bad address literal: ", value])))
    } else {
        valid_hostname(value)
            .map_err(|w| (w, cat(&[b"bad hostname: ", value])))
    }
}

/// Validates the machine hostname used when -M is absent: Err(warning).
///
/// The reference applies only the hostname rules here, so a hostname such
/// as `[1.2.3.4]` fails on its `[`.
pub fn check_own_hostname(name: &[u8]) -> Result<(), Vec<u8>> {
    valid_hostname(name)
}

/// Postfix `valid_hostname`: labels of letters, digits, `_` and `-`.
/// Err is the warning text, starting with "valid_hostname: ".
pub fn valid_hostname(name: &[u8]) -> Result<(), Vec<u8>> {
    let gripe = |why: &[u8]| cat(&[b"valid_hostname: ", why, show(name)]);
    if name.is_empty() {
        return Err(b"valid_hostname: empty hostname".to_vec());
    }
    let mut label = 0usize;
    let mut numeric = true;
    for (i, &c) in name.iter().enumerate() {
        let next = name.get(i + 1).copied();
        if c.is_ascii_alphanumeric() || c == b'_' {
            label += 1;
            if label > LABEL_MAX {
                return Err(gripe(b"hostname label too long: "));
            }
            numeric &= c.is_ascii_digit();
        } else if c == b'-' {
            // Counts toward the label length, but (as observed) only the
            // next letter or digit triggers "label too long".
            if label == 0 || next.is_none() || next == Some(b'.') {
                return Err(gripe(b"misplaced hyphen: "));
            }
            label += 1;
            numeric = false;
        } else if c == b'.' {
            if label == 0 || next.is_none() {
                return Err(gripe(b"misplaced delimiter: "));
            }
            label = 0;
        } else {
            let code = format!("invalid character {c}(decimal): ");
            return Err(gripe(code.as_bytes()));
        }
    }
    // The whole-name checks, in the reference's order: numeric, then
    // length.
    if numeric {
        return Err(cat(&[b"valid_hostname: numeric hostname: ", show(name)]));
    }
    check_name_length(name)
}

/// The whole name's length.
fn check_name_length(name: &[u8]) -> Result<(), Vec<u8>> {
    if name.len() > NAME_MAX {
        let head = format!("valid_hostname: bad length {} for ", name.len());
        return Err(cat(&[head.as_bytes(), show(name), b"..."]));
    }
    Ok(())
}

/// Postfix `valid_hostaddr`: an IPv6 address if it has a colon, else an
/// IPv4 address. Err is the warning text.
pub fn valid_hostaddr(addr: &[u8]) -> Result<(), Vec<u8>> {
    if addr.contains(&b':') {
        valid_ipv6_hostaddr(addr)
    } else {
        valid_ipv4_hostaddr(addr)
    }
}

/// Postfix `valid_ipv4_hostaddr`: four decimal octets, each <= 255.
/// Leading zeros are accepted (`01.2.3.0004` is valid).
pub fn valid_ipv4_hostaddr(addr: &[u8]) -> Result<(), Vec<u8>> {
    let gripe = |why: &[u8]| cat(&[b"valid_ipv4_hostaddr: ", why, show(addr)]);
    let mut octets = 0usize;
    let mut in_octet = false;
    let mut value = 0u32;
    for (i, &c) in addr.iter().enumerate() {
        if c.is_ascii_digit() {
            if !in_octet {
                octets += 1;
                in_octet = true;
                value = 0;
            }
            // Checked per digit, so "256x" reports the value, not the x.
            value = value * 10 + u32::from(c - b'0');
            if value > 255 {
                return Err(gripe(b"invalid octet value: "));
            }
        } else if c == b'.' {
            if !in_octet || i + 1 == addr.len() {
                return Err(gripe(b"misplaced dot: "));
            }
            in_octet = false;
        } else {
            let code = format!("invalid character {c}(decimal): ");
            return Err(gripe(code.as_bytes()));
        }
    }
    if octets != 4 {
        return Err(gripe(b"invalid octet count: "));
    }
    Ok(())
}

/// Running state of the IPv6 scan.
#[derive(Default)]
struct V6Scan {
    colons: usize,
    double_colons: usize,
    field_len: usize,
    field_start: usize,
}

/// Postfix `valid_ipv6_hostaddr`: a syntax check that is looser than
/// inet_pton (`1:2:3` passes), with an optional IPv4 tail.
pub fn valid_ipv6_hostaddr(addr: &[u8]) -> Result<(), Vec<u8>> {
    let mut scan = V6Scan::default();
    for (i, &c) in addr.iter().enumerate() {
        match c {
            b'.' => return v6_ipv4_tail(addr, &scan),
            b':' => v6_colon(addr, i, &mut scan)?,
            _ => v6_digit(addr, i, c, &mut scan)?,
        }
    }
    if scan.colons < 2 {
        return Err(v6_gripe(b"too few `:' in IPv6 address: ", addr));
    }
    if addr.ends_with(b":") && !addr.ends_with(b"::") {
        return Err(v6_gripe(b"bad null last field in IPv6 address: ", addr));
    }
    Ok(())
}

/// A `:`: at most one `::`, checked before at most seven colons.
fn v6_colon(addr: &[u8], i: usize, scan: &mut V6Scan) -> Result<(), Vec<u8>> {
    if i > 0 && addr[i - 1] == b':' {
        scan.double_colons += 1;
        if scan.double_colons > 1 {
            return Err(v6_gripe(b"too many `::' in IPv6 address: ", addr));
        }
    }
    scan.colons += 1;
    if scan.colons > 7 {
        return Err(v6_gripe(b"too many `:' in IPv6 address: ", addr));
    }
    scan.field_len = 0;
    scan.field_start = i + 1;
    Ok(())
}

/// Any other byte. As observed, a letter or digit right after a single
/// leading `:` reports the null first field before its own validity,
/// while punctuation reports the invalid character.
fn v6_digit(
    addr: &[u8],
    i: usize,
    c: u8,
    scan: &mut V6Scan,
) -> Result<(), Vec<u8>> {
    let invalid = || {
        let code = format!("invalid character {c}(decimal) in IPv6 address: ");
        v6_gripe(code.as_bytes(), addr)
    };
    if !c.is_ascii_alphanumeric() {
        return Err(invalid());
    }
    if i == 1 && addr[0] == b':' {
        return Err(v6_gripe(b"bad null first field in IPv6 address: ", addr));
    }
    if !c.is_ascii_hexdigit() {
        return Err(invalid());
    }
    scan.field_len += 1;
    if scan.field_len > 4 {
        return Err(v6_gripe(b"malformed IPv6 address: ", addr));
    }
    Ok(())
}

/// A `.`: the current field starts an IPv4 tail, which needs 2 to 6
/// colons before it and is then checked as an IPv4 address on its own.
fn v6_ipv4_tail(addr: &[u8], scan: &V6Scan) -> Result<(), Vec<u8>> {
    if scan.colons < 2 || scan.colons > 6 {
        return Err(v6_gripe(b"malformed IPv4-in-IPv6 address: ", addr));
    }
    valid_ipv4_hostaddr(&addr[scan.field_start..])
}

fn v6_gripe(why: &[u8], addr: &[u8]) -> Vec<u8> {
    cat(&[b"valid_ipv6_hostaddr: ", why, show(addr)])
}

/// Postfix `valid_mailhost_literal`: `[ipv4]` or `[ipv6:addr]`, checked
/// in this order: a `]` exists, nothing follows the first `]`, the text
/// inside fits, then the address itself.
fn mailhost_literal(value: &[u8]) -> Result<(), Vec<u8>> {
    let gripe =
        |why: &[u8]| cat(&[b"valid_mailhost_literal: ", why, show(value)]);
    let Some(close) = value.iter().position(|&c| c == b']') else {
        return Err(gripe(b"']' expected at end: "));
    };
    if close + 1 != value.len() {
        return Err(gripe(b"unexpected text after ']': "));
    }
    let inner = value.get(1..close).unwrap_or_default();
    if inner.len() > LITERAL_MAX {
        return Err(gripe(b"too much text: "));
    }
    match strip_ipv6_tag(inner) {
        Some(addr) => valid_ipv6_hostaddr(addr),
        None => valid_ipv4_hostaddr(inner),
    }
}

/// The address after a case-insensitive `ipv6:` tag, if there is one.
pub fn strip_ipv6_tag(text: &[u8]) -> Option<&[u8]> {
    let tag = text.get(..IPV6_TAG.len())?;
    if tag.eq_ignore_ascii_case(IPV6_TAG) {
        text.get(IPV6_TAG.len()..)
    } else {
        None
    }
}

/// The first 100 bytes, as the reference's "%.100s" shows them.
fn show(name: &[u8]) -> &[u8] {
    &name[..name.len().min(SHOW_MAX)]
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which fatal line the reference printed after the warning.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        H,
        L,
    }
    use Kind::{H, L};

    type Case = (&'static [u8], Option<(Kind, &'static [u8])>);

    /// Every row was observed with `smtp-source -M <value> :1`: `None`
    /// means the reference went on to the endpoint error.
    const OBSERVED: &[Case] = &[
        (br#"bad_name!"#, Some((H, br#"valid_hostname: invalid character 33(decimal): bad_name!"#))),
        (br#"-bad"#, Some((H, br#"valid_hostname: misplaced hyphen: -bad"#))),
        (br#"a-"#, Some((H, br#"valid_hostname: misplaced hyphen: a-"#))),
        (br#"a-b"#, None),
        (br#"under_score"#, None),
        (br#"_a"#, None),
        (br#"a_"#, None),
        (br#"1234"#, Some((H, br#"valid_hostname: numeric hostname: 1234"#))),
        (br#"127.0.0.1"#, Some((H, br#"valid_hostname: numeric hostname: 127.0.0.1"#))),
        (br#"1.2.3"#, Some((H, br#"valid_hostname: numeric hostname: 1.2.3"#))),
        (br#"1a"#, None),
        (br#"a1"#, None),
        (br#"0x1"#, None),
        (br#"1-2"#, None),
        (br#"1_2"#, None),
        (br#""#, Some((H, br#"valid_hostname: empty hostname"#))),
        (br#"a..b"#, Some((H, br#"valid_hostname: misplaced delimiter: a..b"#))),
        (br#".a"#, Some((H, br#"valid_hostname: misplaced delimiter: .a"#))),
        (br#"a."#, Some((H, br#"valid_hostname: misplaced delimiter: a."#))),
        (br#"."#, Some((H, br#"valid_hostname: misplaced delimiter: ."#))),
        (br#".."#, Some((H, br#"valid_hostname: misplaced delimiter: .."#))),
        (br#"a.-b"#, Some((H, br#"valid_hostname: misplaced hyphen: a.-b"#))),
        (br#"a-.b"#, Some((H, br#"valid_hostname: misplaced hyphen: a-.b"#))),
        (br#"a.b-"#, Some((H, br#"valid_hostname: misplaced hyphen: a.b-"#))),
        (br#"-"#, Some((H, br#"valid_hostname: misplaced hyphen: -"#))),
        (br#"a.1"#, None),
        (br#"1.a"#, None),
        (br#"1.2.3.4.5"#, Some((H, br#"valid_hostname: numeric hostname: 1.2.3.4.5"#))),
        (br#"12."#, Some((H, br#"valid_hostname: misplaced delimiter: 12."#))),
        (br#"1."#, Some((H, br#"valid_hostname: misplaced delimiter: 1."#))),
        (br#"a b"#, Some((H, br#"valid_hostname: invalid character 32(decimal): a b"#))),
        (br#"A-Z.example"#, None),
        (br#"a--b"#, None),
        (br#"xn--a"#, None),
        (br#"a:b"#, Some((H, br#"valid_hostname: invalid character 58(decimal): a:b"#))),
        (br#"a/b"#, Some((H, br#"valid_hostname: invalid character 47(decimal): a/b"#))),
        (br#"a@b"#, Some((H, br#"valid_hostname: invalid character 64(decimal): a@b"#))),
        (br#"a.."#, Some((H, br#"valid_hostname: misplaced delimiter: a.."#))),
        (br#"a-."#, Some((H, br#"valid_hostname: misplaced hyphen: a-."#))),
        (br#"-.a"#, Some((H, br#"valid_hostname: misplaced hyphen: -.a"#))),
        (br#"[1.2.3.4]"#, None),
        (br#"[1.2.3]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: 1.2.3"#))),
        (br#"[1.2.3.4]x"#, Some((L, br#"valid_mailhost_literal: unexpected text after ']': [1.2.3.4]x"#))),
        (br#"[1.2.3.4"#, Some((L, br#"valid_mailhost_literal: ']' expected at end: [1.2.3.4"#))),
        (br#"[]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: "#))),
        (br#"["#, Some((L, br#"valid_mailhost_literal: ']' expected at end: ["#))),
        (br#"]"#, Some((H, br#"valid_hostname: invalid character 93(decimal): ]"#))),
        (br#"a]"#, Some((H, br#"valid_hostname: invalid character 93(decimal): a]"#))),
        (br#"[a]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 97(decimal): a"#))),
        (br#"[1.2.3.256]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 1.2.3.256"#))),
        (br#"[1.2.3.255]"#, None),
        (br#"[01.2.3.4]"#, None),
        (br#"[1..2.3]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1..2.3"#))),
        (br#"[1.2.3.4.]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1.2.3.4."#))),
        (br#"[.1.2.3.4]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: .1.2.3.4"#))),
        (br#"[0.0.0.0]"#, None),
        (br#"[255.255.255.255]"#, None),
        (br#"[256.1.1.1]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 256.1.1.1"#))),
        (br#"[1.2.3.4.5]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: 1.2.3.4.5"#))),
        (br#"[1.2.3.04]"#, None),
        (br#"[1.2.3.0x4]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 120(decimal): 1.2.3.0x4"#))),
        (br#"[ 1.2.3.4]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 32(decimal):  1.2.3.4"#))),
        (br#"[1.2.3.4 ]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 32(decimal): 1.2.3.4 "#))),
        (br#"[-1.2.3.4]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 45(decimal): -1.2.3.4"#))),
        (br#"[1.2.3.0004]"#, None),
        (br#"[1.2.3.999]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 1.2.3.999"#))),
        (br#"[1.2.3.1000]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 1.2.3.1000"#))),
        (br#"[ipv6:::1]"#, None),
        (br#"[ipv6:zz]"#, Some((L, br#"valid_ipv6_hostaddr: invalid character 122(decimal) in IPv6 address: zz"#))),
        (br#"[ipv6:1::2::3]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: 1::2::3"#))),
        (br#"[IPv6:::1]"#, None),
        (br#"[IPV6:::1]"#, None),
        (br#"[ipv6:]"#, Some((L, br#"valid_ipv6_hostaddr: too few `:' in IPv6 address: "#))),
        (br#"[ipv6:1:2:3:4:5:6:7:8]"#, None),
        (br#"[ipv6:1:2:3:4:5:6:7:8:9]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7:8:9"#))),
        (br#"[ipv6:1:2:3:4:5:6:7]"#, None),
        (br#"[ipv6::1]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :1"#))),
        (br#"[ipv6:1:]"#, Some((L, br#"valid_ipv6_hostaddr: too few `:' in IPv6 address: 1:"#))),
        (br#"[ipv6:::]"#, None),
        (br#"[ipv6:::ffff:1.2.3.4]"#, None),
        (br#"[ipv6:::1.2.3]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: 1.2.3"#))),
        (br#"[ipv6:12345::1]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: 12345::1"#))),
        (br#"[ipv6:fe80::1%eth0]"#, Some((L, br#"valid_ipv6_hostaddr: invalid character 37(decimal) in IPv6 address: fe80::1%eth0"#))),
        (br#"[::1]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 58(decimal): ::1"#))),
        (br#"[ipv6:1.2.3.4]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: 1.2.3.4"#))),
        (br#"[ipv6:::1.2.3.256]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 1.2.3.256"#))),
        (br#"[ipv6:g::1]"#, Some((L, br#"valid_ipv6_hostaddr: invalid character 103(decimal) in IPv6 address: g::1"#))),
        (br#"[ipv6:1:2:3:4:5:6:1.2.3.4]"#, None),
        (br#"[ipv6:1:2:3:4:5:6:7:1.2.3.4]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: 1:2:3:4:5:6:7:1.2.3.4"#))),
        (br#"[ipv6:1::2:3:4:5:6:7:8]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1::2:3:4:5:6:7:8"#))),
        (br#"[ipv6:1:2:3:4:5:6:7::]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7::"#))),
        (br#"[ipv6:1:2:3:4:5:6:7:8::]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7:8::"#))),
        (br#"[ipv6:0001::1]"#, None),
        (br#"[ipv6:00001::1]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: 00001::1"#))),
        (br#"[a.b]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 97(decimal): a.b"#))),
        (br#"[1.2.3.4]]"#, Some((L, br#"valid_mailhost_literal: unexpected text after ']': [1.2.3.4]]"#))),
        (br#"[[1.2.3.4]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 91(decimal): [1.2.3.4"#))),
        (br#"[1.2.3.4]["#, Some((L, br#"valid_mailhost_literal: unexpected text after ']': [1.2.3.4]["#))),
        (br#"[localhost]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 108(decimal): localhost"#))),
        (br#"[ipv6]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 105(decimal): ipv6"#))),
        (br#"[ipv6:"#, Some((L, br#"valid_mailhost_literal: ']' expected at end: [ipv6:"#))),
        (br#"[ipv4:1.2.3.4]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 105(decimal): ipv4:1.2.3.4"#))),
        (br#"[1]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: 1"#))),
        (br#"[1.2]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: 1.2"#))),
        (br#"[1.2.3.4x]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 120(decimal): 1.2.3.4x"#))),
        (br#"[1.2.3.x]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 120(decimal): 1.2.3.x"#))),
        (br#"a-!"#, Some((H, br#"valid_hostname: invalid character 33(decimal): a-!"#))),
        (br#"1.1"#, Some((H, br#"valid_hostname: numeric hostname: 1.1"#))),
        (br#"1-"#, Some((H, br#"valid_hostname: misplaced hyphen: 1-"#))),
        (br#"_"#, None),
        (br#"__"#, None),
        (br#"-_"#, Some((H, br#"valid_hostname: misplaced hyphen: -_"#))),
        (br#"_-"#, Some((H, br#"valid_hostname: misplaced hyphen: _-"#))),
        (br#"a_.b"#, None),
        (br#"1_"#, None),
        (br#"0"#, Some((H, br#"valid_hostname: numeric hostname: 0"#))),
        (br#"[1.2.3.4.5x]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 120(decimal): 1.2.3.4.5x"#))),
        (br#"[1.2.3.256x]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 1.2.3.256x"#))),
        (br#"[1.2.3.]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1.2.3."#))),
        (br#"[.]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: ."#))),
        (br#"[1.2.3.999999999999999999999999999999]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 1.2.3.999999999999999999999999999999"#))),
        (br#"[1.2.3.4.5.6]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: 1.2.3.4.5.6"#))),
        (br#"[1.2.3..]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1.2.3.."#))),
        (br#"[1.2.3.4..]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1.2.3.4.."#))),
        (br#"[1.2.3]x"#, Some((L, br#"valid_mailhost_literal: unexpected text after ']': [1.2.3]x"#))),
        (br#"[1.2.3.4]]]"#, Some((L, br#"valid_mailhost_literal: unexpected text after ']': [1.2.3.4]]]"#))),
        (br#"[]x"#, Some((L, br#"valid_mailhost_literal: unexpected text after ']': []x"#))),
        (br#"[]]"#, Some((L, br#"valid_mailhost_literal: unexpected text after ']': []]"#))),
        (br#"[1.2.3.4.5.x]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 120(decimal): 1.2.3.4.5.x"#))),
        (br#"[1.2.3.4.5.6.7.8.9.10.11x]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 120(decimal): 1.2.3.4.5.6.7.8.9.10.11x"#))),
        (br#"[1.2.3.4.5.256]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 1.2.3.4.5.256"#))),
        (br#"[1.2.3.4.5..]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1.2.3.4.5.."#))),
        (br#"[..]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: .."#))),
        (br#"[1.]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1."#))),
        (br#"[1..]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1.."#))),
        (br#"[1]x"#, Some((L, br#"valid_mailhost_literal: unexpected text after ']': [1]x"#))),
        (br#"[1.1.1.1.1]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: 1.1.1.1.1"#))),
        (br#"[x.1.2.3]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 120(decimal): x.1.2.3"#))),
        (br#"[256]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 256"#))),
        (br#"[256.x]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 256.x"#))),
        (br#"[1.2.3.256.]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 1.2.3.256."#))),
        (br#"[1.2.3.25.]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1.2.3.25."#))),
        (br#"[ipv6:1:2:]"#, Some((L, br#"valid_ipv6_hostaddr: bad null last field in IPv6 address: 1:2:"#))),
        (br#"[ipv6:1::2:]"#, Some((L, br#"valid_ipv6_hostaddr: bad null last field in IPv6 address: 1::2:"#))),
        (br#"[ipv6::::]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: :::"#))),
        (br#"[ipv6:1:::2]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: 1:::2"#))),
        (br#"[ipv6:::1::]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: ::1::"#))),
        (br#"[ipv6::1:2:3:4:5:6:7]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :1:2:3:4:5:6:7"#))),
        (br#"[ipv6:1:2:3:4:5:6:7:]"#, Some((L, br#"valid_ipv6_hostaddr: bad null last field in IPv6 address: 1:2:3:4:5:6:7:"#))),
        (br#"[ipv6:1:2:3:4:5:6:7:8:9:zz]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7:8:9:zz"#))),
        (br#"[ipv6:12345::zz]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: 12345::zz"#))),
        (br#"[ipv6:12345]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: 12345"#))),
        (br#"[ipv6:1]"#, Some((L, br#"valid_ipv6_hostaddr: too few `:' in IPv6 address: 1"#))),
        (br#"[ipv6:ABCD::1]"#, None),
        (br#"[ipv6:abcd::ef]"#, None),
        (br#"[ipv6:1:2:3:4:5:6::7]"#, None),
        (br#"[ipv6:1:1.2.3.4]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: 1:1.2.3.4"#))),
        (br#"[ipv6:::1.2.3.4]"#, None),
        (br#"[ipv6:1::1.2.3.4]"#, None),
        (br#"[ipv6:1:2:3:4:5:6:7:8:1.2.3.4]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7:8:1.2.3.4"#))),
        (br#"[ipv6:1:2:3:4:5::1.2.3.4]"#, None),
        (br#"[ipv6:1:2:3:4:5:6:7::1.2.3.4]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7::1.2.3.4"#))),
        (br#"[ipv6:::1.2.3.4x]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 120(decimal): 1.2.3.4x"#))),
        (br#"[ipv6:::1.2.3.4:1]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 58(decimal): 1.2.3.4:1"#))),
        (br#"[ipv6:::1.2.3.4::]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 58(decimal): 1.2.3.4::"#))),
        (br#"[ipv6:::1.2.3.4.5]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: 1.2.3.4.5"#))),
        (br#"[ipv6:::.1.2.3]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: .1.2.3"#))),
        (br#"[ipv6:::1.2.3.]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1.2.3."#))),
        (br#"[ipv6:1.2]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: 1.2"#))),
        (br#"[ipv6:::12345]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: ::12345"#))),
        (br#"[ipv6:::12345:1]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: ::12345:1"#))),
        (br#"[ipv6:1:2:3:4:5:6:7:12345]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: 1:2:3:4:5:6:7:12345"#))),
        (br#"[ipv6:1:12345:zz]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: 1:12345:zz"#))),
        (br#"[ipv6:::1:]"#, Some((L, br#"valid_ipv6_hostaddr: bad null last field in IPv6 address: ::1:"#))),
        (br#"[ipv6:1::2::]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: 1::2::"#))),
        (br#"[ipv6::]"#, Some((L, br#"valid_ipv6_hostaddr: too few `:' in IPv6 address: :"#))),
        (br#"[ipv6::2:3:4:5:6:7:8:9]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :2:3:4:5:6:7:8:9"#))),
        (br#"[ipv6:1:2:3:4:5:6:7:8:]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7:8:"#))),
        (br#"[ipv6:::1:2:3:4:5:6:7]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: ::1:2:3:4:5:6:7"#))),
        (br#"[ipv6:::1:2:3:4:5:6:7:8]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: ::1:2:3:4:5:6:7:8"#))),
        (br#"[ipv6:1:2]"#, Some((L, br#"valid_ipv6_hostaddr: too few `:' in IPv6 address: 1:2"#))),
        (br#"[ipv6:1::]"#, None),
        (br#"[ipv6:1:2::]"#, None),
        (br#"[ipv6::::1]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: :::1"#))),
        (br#"[ipv6:1:::]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: 1:::"#))),
        (br#"[ipv6:1::::2]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: 1::::2"#))),
        (br#"[ipv6:0:0:0:0:0:0:0:0]"#, None),
        (br#"[ipv6:::ffff:1.2.3.256]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 1.2.3.256"#))),
        (br#"[ipv6:1:2:3:4:5:6:1.2.3]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: 1.2.3"#))),
        (br#"[ipv6:1:2:3:4:5:6:1.2.3.4.5]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet count: 1.2.3.4.5"#))),
        (br#"[ipv6:::a.1.2.3]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 97(decimal): a.1.2.3"#))),
        (br#"[ipv6:::1a.2.3.4]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 97(decimal): 1a.2.3.4"#))),
        (br#"[ipv6:::1.2.3.4]]"#, Some((L, br#"valid_mailhost_literal: unexpected text after ']': [ipv6:::1.2.3.4]]"#))),
        (br#"[ipv6:1:2:3:4:5:6:7:1]"#, None),
        (br#"[ipv6:ffff:ffff::]"#, None),
        (br#"[ipv6:fffff::]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: fffff::"#))),
        (br#"[ipv6:1 ::1]"#, Some((L, br#"valid_ipv6_hostaddr: invalid character 32(decimal) in IPv6 address: 1 ::1"#))),
        (br#"[ipv6:::-1]"#, Some((L, br#"valid_ipv6_hostaddr: invalid character 45(decimal) in IPv6 address: ::-1"#))),
        (br#"[ipv6:::1%0]"#, Some((L, br#"valid_ipv6_hostaddr: invalid character 37(decimal) in IPv6 address: ::1%0"#))),
        (br#"[ipv6::::1.2.3.4]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: :::1.2.3.4"#))),
        (br#"[ipv6:1.2.3.4::]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: 1.2.3.4::"#))),
        (br#"[ipv6:::1:1.2.3.4]"#, None),
        (br#"[ipv6:1:2:3:4:5:6:7.1.2.3]"#, None),
        (br#"[ipv6:1:2:3:4:5:6:7:8.1.2.3]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: 1:2:3:4:5:6:7:8.1.2.3"#))),
        (br#"[ipv6:::12.1.2.3]"#, None),
        (br#"[ipv6:::123.1.2.3]"#, None),
        (br#"[ipv6:::1234.1.2.3]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 1234.1.2.3"#))),
        (br#"[ipv6:::00001.1.2.3]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: ::00001.1.2.3"#))),
        (br#"[ipv6:1:2:3:4:5:6:7:8:9:10:11]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7:8:9:10:11"#))),
        (br#"[ipv6:1:2:3:4:5:6:7:8:9:1.2.3.4]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7:8:9:1.2.3.4"#))),
        (br#"[IpV6:::1]"#, None),
        (br#"[ipv6:111111111111111111111111111111111111111]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: 111111111111111111111111111111111111111"#))),
        (br#"[ipv6:1111111111111111111111111111111111111111]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: 1111111111111111111111111111111111111111"#))),
        (br#"[ipv6:11111111111111111111111111111111111111111]"#, Some((L, br#"valid_mailhost_literal: too much text: [ipv6:11111111111111111111111111111111111111111]"#))),
        (br#"[xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]x"#, Some((L, br#"valid_mailhost_literal: unexpected text after ']': [xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]x"#))),
        (br#"[111111111111111111111111111111111111111111111]"#, Some((L, br#"valid_ipv4_hostaddr: invalid octet value: 111111111111111111111111111111111111111111111"#))),
        (br#"[1111111111111111111111111111111111111111111111]"#, Some((L, br#"valid_mailhost_literal: too much text: [1111111111111111111111111111111111111111111111]"#))),
        (br#"[ipv611111111111111111111111111111111111111111]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 105(decimal): ipv611111111111111111111111111111111111111111"#))),
        (br#"[ipv6::z]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :z"#))),
        (br#"[ipv6::.]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: :."#))),
        (br#"[ipv6::1.2.3.4]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :1.2.3.4"#))),
        (br#"[ipv6:::z]"#, Some((L, br#"valid_ipv6_hostaddr: invalid character 122(decimal) in IPv6 address: ::z"#))),
        (br#"[ipv6::::z]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: :::z"#))),
        (br#"[ipv6:1::3:4:5:6:7::]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: 1::3:4:5:6:7::"#))),
        (br#"[ipv6:1:2:3:4:5:6::8:]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6::8:"#))),
        (br#"[ipv6::1:]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :1:"#))),
        (br#"[ipv6:1::2:3:4:5:6:7]"#, None),
        (br#"[ipv6::1::]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :1::"#))),
        (br#"[ipv6:::1:2:3:4:5:6]"#, None),
        (br#"[ipv6::1::2]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :1::2"#))),
        (br#"[ipv6:z:]"#, Some((L, br#"valid_ipv6_hostaddr: invalid character 122(decimal) in IPv6 address: z:"#))),
        (br#"[ipv6::12345]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :12345"#))),
        (br#"[ipv6:: ]"#, Some((L, br#"valid_ipv6_hostaddr: invalid character 32(decimal) in IPv6 address: : "#))),
        (br#"[ipv6::::.]"#, Some((L, br#"valid_ipv6_hostaddr: too many `::' in IPv6 address: :::."#))),
        (br#"[ipv6:1:.]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: 1:."#))),
        (br#"[ipv6:::.]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: ."#))),
        (br#"[ipv6:::.1]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: .1"#))),
        (br#"[ipv6:1::2:.]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: ."#))),
        (br#"[ipv6:::1:2:3:4:5:.]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: ::1:2:3:4:5:."#))),
        (br#"[ipv6:::1:2:3:4:5:6:.]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: ::1:2:3:4:5:6:."#))),
        (br#"[ipv6:1:2:3:4:5:6:7:.]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: 1:2:3:4:5:6:7:."#))),
        (br#"[ipv6:1:2:3:4:5:6:7:8:.]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7:8:."#))),
        (br#"[ipv6:::1.]"#, Some((L, br#"valid_ipv4_hostaddr: misplaced dot: 1."#))),
        (br#"[ipv6:1:2::3.4.5.6]"#, None),
        (br#"[ipv6::2:3:4:5:6:7:8]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :2:3:4:5:6:7:8"#))),
        (br#"[ipv6:g]"#, Some((L, br#"valid_ipv6_hostaddr: invalid character 103(decimal) in IPv6 address: g"#))),
        (br#"[ipv6::g]"#, Some((L, br#"valid_ipv6_hostaddr: bad null first field in IPv6 address: :g"#))),
        (br#"[ipv6:::12345:z]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv6 address: ::12345:z"#))),
        (br#"[ipv6:1:2::3:]"#, Some((L, br#"valid_ipv6_hostaddr: bad null last field in IPv6 address: 1:2::3:"#))),
        (br#"[ipv6:::ffff:0.0.0.0]"#, None),
        (br#"[ipv6:1:2:3:4:5:6:7:8:9:.]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7:8:9:."#))),
        (br#"[ipv6:1:2:3:4:5:6:7:8:z]"#, Some((L, br#"valid_ipv6_hostaddr: too many `:' in IPv6 address: 1:2:3:4:5:6:7:8:z"#))),
        (br#"[ipv6:.]"#, Some((L, br#"valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: ."#))),
        (br#"[ipv6:::1:1.2.3.4:]"#, Some((L, br#"valid_ipv4_hostaddr: invalid character 58(decimal): 1.2.3.4:"#))),
    ];

    fn expect(value: &[u8], want: Option<(Kind, &[u8])>) {
        let got = check_myhostname(value);
        let want = want.map(|(kind, warning)| {
            let head: &[u8] = match kind {
                H => b"bad hostname: ",
                L => b"bad address literal: ",
            };
            (warning.to_vec(), [head, value].concat())
        });
        assert_eq!(got.err(), want, "-M {:?}", String::from_utf8_lossy(value));
    }

    #[test]
    fn myhostname_observed_table() {
        for &(value, want) in OBSERVED {
            expect(value, want);
        }
    }

    #[test]
    fn myhostname_doc_examples() {
        let (w, f) = check_myhostname(b"bad_name!").unwrap_err();
        assert_eq!(
            w,
            b"valid_hostname: invalid character 33(decimal): bad_name!"
        );
        assert_eq!(f, b"bad hostname: bad_name!");
        let (w, f) = check_myhostname(b"[1.2.3]").unwrap_err();
        assert_eq!(w, b"valid_ipv4_hostaddr: invalid octet count: 1.2.3");
        assert_eq!(f, b"bad address literal: [1.2.3]");
    }

    #[test]
    fn empty_value_is_empty_hostname() {
        expect(b"", Some((H, b"valid_hostname: empty hostname")));
    }

    /// The reference prints these bytes as `?`; that is the logger's
    /// job, so the warning text keeps the raw byte.
    #[test]
    fn non_printable_bytes_are_reported_raw() {
        for (value, code) in [
            (&b"a\tb"[..], 9),
            (b"a\x01", 1),
            (b"a\x7f", 127),
            (b"\xe9", 233),
            (b"a\xc3\xa9b", 195),
        ] {
            let head = format!("valid_hostname: invalid character {code}");
            let want = [head.as_bytes(), b"(decimal): ", value].concat();
            expect(value, Some((H, &want)));
        }
    }

    fn a_labels(n: usize) -> Vec<u8> {
        let mut name = b"a.".repeat(n);
        name.pop();
        name
    }

    #[test]
    fn label_of_63_passes_64_fails_quoting_100_bytes() {
        expect(&b"a".repeat(63), None);
        let long = b"a".repeat(64);
        let w = [&b"valid_hostname: hostname label too long: "[..], &long];
        expect(&long, Some((H, &w.concat())));
        let huge = b"a".repeat(300);
        let w = [
            &b"valid_hostname: hostname label too long: "[..],
            &huge[..100],
        ];
        expect(&huge, Some((H, &w.concat())));
    }

    #[test]
    fn label_length_counts_hyphen_and_underscore() {
        let name = [b"a".repeat(62), b"-a".to_vec()].concat();
        let w = [&b"valid_hostname: hostname label too long: "[..], &name];
        expect(&name, Some((H, &w.concat())));
        // A hyphen itself never reports the length: the next byte does.
        let name = [b"a".repeat(63), b"-!".to_vec()].concat();
        let w = [
            &b"valid_hostname: invalid character 33(decimal): "[..],
            &name,
        ];
        expect(&name, Some((H, &w.concat())));
        let name = [b"a".repeat(63), b"_!".to_vec()].concat();
        let w = [&b"valid_hostname: hostname label too long: "[..], &name];
        expect(&name, Some((H, &w.concat())));
    }

    #[test]
    fn name_of_255_passes_256_fails_with_ellipsis() {
        let label = [b"a".repeat(63), b".".to_vec()].concat();
        expect(&[label.repeat(3), b"a".repeat(63)].concat(), None);
        expect(&a_labels(128), None);
        for name in [[a_labels(128), b"b".to_vec()].concat(), a_labels(129)] {
            let head =
                format!("valid_hostname: bad length {} for ", name.len());
            let w = [head.as_bytes(), &name[..100], b"..."].concat();
            expect(&name, Some((H, &w)));
        }
    }

    #[test]
    fn numeric_is_reported_before_length() {
        let name = [b"1.".repeat(127), b"12".to_vec()].concat();
        assert_eq!(name.len(), 256);
        let w = [&b"valid_hostname: numeric hostname: "[..], &name[..100]];
        expect(&name, Some((H, &w.concat())));
    }

    #[test]
    fn long_names_quote_first_100_bytes() {
        let name = [b"a.".repeat(128)].concat();
        let w = [&b"valid_hostname: misplaced delimiter: "[..], &name[..100]];
        expect(&name, Some((H, &w.concat())));
        let name = [b"a.".repeat(127), b"!".to_vec()].concat();
        let w = [
            &b"valid_hostname: invalid character 33(decimal): "[..],
            &name[..100],
        ];
        expect(&name, Some((H, &w.concat())));
        let name = [b"a.".repeat(60), b"-".to_vec()].concat();
        let w = [&b"valid_hostname: misplaced hyphen: "[..], &name[..100]];
        expect(&name, Some((H, &w.concat())));
    }

    #[test]
    fn literal_inner_text_limit_is_45_bytes() {
        let ok = [&b"[1.2.3."[..], &b"0".repeat(38), b"4]"].concat();
        expect(&ok, None);
        let long = [&b"[1.2.3."[..], &b"0".repeat(39), b"4]"].concat();
        let w = [&b"valid_mailhost_literal: too much text: "[..], &long];
        expect(&long, Some((L, &w.concat())));
        let v6 = [&b"[ipv6:"[..], &b"1".repeat(41), b"]"].concat();
        let w = [&b"valid_mailhost_literal: too much text: "[..], &v6];
        expect(&v6, Some((L, &w.concat())));
        let huge = [&b"[1.2.3.4"[..], &b"5".repeat(200), b"]"].concat();
        let w = [
            &b"valid_mailhost_literal: too much text: "[..],
            &huge[..100],
        ];
        expect(&huge, Some((L, &w.concat())));
    }

    #[test]
    fn literal_structure_errors_quote_first_100_bytes() {
        let open = [&b"["[..], &b"x".repeat(200)].concat();
        let w = [
            &b"valid_mailhost_literal: ']' expected at end: "[..],
            &open[..100],
        ];
        expect(&open, Some((L, &w.concat())));
        let tail = [&b"[1.2.3.4]"[..], &b"x".repeat(200)].concat();
        let w = [
            &b"valid_mailhost_literal: unexpected text after ']': "[..],
            &tail[..100],
        ];
        expect(&tail, Some((L, &w.concat())));
        // Trailing text is reported before the inner length.
        let both = [&b"["[..], &b"x".repeat(50), b"]x"].concat();
        let w = [
            &b"valid_mailhost_literal: unexpected text after ']': "[..],
            &both,
        ];
        expect(&both, Some((L, &w.concat())));
    }

    #[test]
    fn own_hostname_uses_hostname_rules_only() {
        // Observed in a UTS namespace with sethostname(2).
        for (name, want) in [
            (&b"vm"[..], None),
            (b"under_score", None),
            (b"x.1", None),
            (
                b"bad_host!",
                Some(&b"invalid character 33(decimal): bad_host!"[..]),
            ),
            (
                b"[1.2.3.4]",
                Some(b"invalid character 91(decimal): [1.2.3.4]"),
            ),
            (b"1234", Some(b"numeric hostname: 1234")),
            (b"1.2.3.4", Some(b"numeric hostname: 1.2.3.4")),
            (b"a..b", Some(b"misplaced delimiter: a..b")),
            (b"a.", Some(b"misplaced delimiter: a.")),
            (b"-x", Some(b"misplaced hyphen: -x")),
            (b"a b", Some(b"invalid character 32(decimal): a b")),
            (b"", Some(b"empty hostname")),
        ] {
            let want = want.map(|w| [&b"valid_hostname: "[..], w].concat());
            assert_eq!(check_own_hostname(name).err(), want);
        }
        let long = b"a".repeat(64);
        let w = [&b"valid_hostname: hostname label too long: "[..], &long];
        assert_eq!(check_own_hostname(&long), Err(w.concat()));
    }

    #[test]
    fn hostaddr_picks_family_by_colon() {
        assert!(valid_hostaddr(b"127.0.0.1").is_ok());
        assert!(valid_hostaddr(b"::1").is_ok());
        assert!(valid_hostaddr(b"::").is_ok());
        assert!(valid_hostaddr(b"1:2:3").is_ok());
        assert!(valid_hostaddr(b"127.1").is_err());
        assert!(valid_hostaddr(b"fe80::1%lo").is_err());
        assert!(valid_hostaddr(b"").is_err());
    }

    #[test]
    fn ipv6_tag_is_case_insensitive() {
        assert_eq!(strip_ipv6_tag(b"IpV6:::1"), Some(&b"::1"[..]));
        assert_eq!(strip_ipv6_tag(b"ipv6:"), Some(&b""[..]));
        assert_eq!(strip_ipv6_tag(b"ipv6"), None);
        assert_eq!(strip_ipv6_tag(b"ipv4:1.2.3.4"), None);
    }

    #[test]
    fn every_prefix_and_byte_is_panic_free() {
        let samples: [&[u8]; 4] = [
            b"[ipv6:1:2:3:4:5:6:1.2.3.4]",
            b"[1.2.3.4]x",
            b"a-b.c_d.1",
            b":1::2:.",
        ];
        for s in samples {
            for end in 0..=s.len() {
                let _ = check_myhostname(&s[..end]);
                let _ = valid_hostaddr(&s[..end]);
                let _ = valid_ipv6_hostaddr(&s[1.min(end)..end]);
            }
        }
        for b in 0..=255u8 {
            let _ = check_myhostname(&[b]);
            let _ = check_myhostname(&[b'[', b, b']']);
            let _ = valid_ipv6_hostaddr(&[b':', b]);
        }
    }
}
