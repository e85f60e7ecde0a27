#![no_main]
//! See `palaver_fuzzing::rkyv_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| palaver_fuzzing::rkyv_frame(data));
