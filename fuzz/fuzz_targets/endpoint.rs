//! Operand parsing: no panic; parse, print, parse again is stable.
//! Byte 0 picks an alphabet mapping and a prefix (`fuzz_model`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    fuzz_model::check_endpoint(&fuzz_model::endpoint_input(raw));
});
