#![no_main]
//! See `palaver_fuzzing::ws_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| palaver_fuzzing::ws_frame(data));
