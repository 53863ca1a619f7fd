//! Fuzz target `elf`: see [`morgana_fuzz::elf`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| morgana_fuzz::elf(data));
