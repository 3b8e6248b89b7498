//! libFuzzer target: see `stephost_fuzz::normaliser` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stephost_fuzz::normaliser(data));
