//! Fuzz target `net`: see `morgana_fuzz_net::net` (built with `MORGANA_SIM=1`,
//! as `cargo xtask fuzz` does).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| morgana_fuzz_net::net(data));
