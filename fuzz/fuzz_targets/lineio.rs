//! Bounded line reader: lines through `ChunkSource` in fuzzer-chosen
//! read sizes match split-at-LF, cap at LINE_LIMIT, strip trailing CRs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let input = fuzz_model::Input::decode(raw);
    fuzz_model::check_lineio(&input.data, &input.chunks);
});
