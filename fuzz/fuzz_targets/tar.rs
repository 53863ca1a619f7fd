//! Fuzz target `tar`: a disk through morgana-kv-ro's tar store; see `morgana_fuzz_net::tar` (built
//! with `MORGANA_SIM=1`, as `cargo xtask fuzz` does).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| morgana_fuzz_net::tar(data));
