#![no_main]
//! See `palaver_fuzzing::json_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| palaver_fuzzing::json_frame(data));
