//! Fuzz target `manifest`: see [`morgana_fuzz::manifest`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| morgana_fuzz::manifest(data));
