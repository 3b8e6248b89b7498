//! libFuzzer target: see `stephost_fuzz::manifest` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stephost_fuzz::manifest(data));
