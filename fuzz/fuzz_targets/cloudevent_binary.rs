//! libFuzzer target: see `stephost_fuzz::cloudevent_binary` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stephost_fuzz::cloudevent_binary(data));
