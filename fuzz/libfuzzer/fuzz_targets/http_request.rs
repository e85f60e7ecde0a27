#![no_main]
//! See `palaver_fuzzing::http_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| palaver_fuzzing::http_request(data));
