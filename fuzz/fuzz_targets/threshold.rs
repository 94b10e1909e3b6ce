//! --threshold expressions: no panic; what parses re-parses the same and
//! judges as its comparison says. Byte 0 bit 0 maps the rest onto the
//! threshold alphabet (`fuzz_model::threshold_input`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    fuzz_model::check_threshold(&fuzz_model::threshold_input(raw));
});
