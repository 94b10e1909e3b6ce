//! -F body transformation: unstuffing gives the input back, and the
//! body never holds an early end-of-data line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_model::check_dotstuff(data);
});
