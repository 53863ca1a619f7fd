//! Fuzz target `fs`: a disk's start through morgana-fs; see `morgana_fuzz_net::fs` (built
//! with `MORGANA_SIM=1`, as `cargo xtask fuzz` does).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| morgana_fuzz_net::fs(data));
