//! Reply parsing: no panic, code and text bounds, and the same replies
//! whether parsed whole or read line by line in fuzzer-chosen chunks.
//! Input layout: see `fuzz_model::Input` (byte 0 bit 0 maps the data
//! onto the SMTP reply alphabet).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let input = fuzz_model::Input::decode(raw);
    fuzz_model::check_reply(&input.data, &input.chunks);
});
