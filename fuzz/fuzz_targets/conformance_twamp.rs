#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| owamp_fuzz::conformance_twamp(data));
