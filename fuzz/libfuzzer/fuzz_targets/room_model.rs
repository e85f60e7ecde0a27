#![no_main]
//! See `palaver_fuzzing::room_model`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| palaver_fuzzing::room_model(data));
