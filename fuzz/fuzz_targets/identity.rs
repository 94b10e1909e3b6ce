//! Client identity parsing (--xclient, CIDR ranges, --auth-file): no
//! panic on any input, and every address a range hands out lies inside
//! it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_source::identity::{parse_auth_file, Cidr, Xclient};

fuzz_target!(|raw: &[u8]| {
    if let Ok(x) = Xclient::parse(raw) {
        for n in [0, 1, u64::MAX] {
            let _ = x.args(n);
        }
    }
    if let Ok(text) = std::str::from_utf8(raw) {
        if let Some(range) = Cidr::parse(text) {
            let first = range.nth(0);
            for n in [1, 255, u64::MAX] {
                assert_eq!(range.nth(n).is_ipv4(), first.is_ipv4());
                assert_eq!(Cidr::parse(&format!("{}/{}", range.nth(n), range.prefix())), Some(range));
            }
        }
    }
    let _ = parse_auth_file(raw);
});
