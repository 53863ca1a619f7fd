//! Fuzz target `hypercalls`: see [`morgana_fuzz::hypercalls`].

#![no_main]

static QUIET: std::sync::Once = std::sync::Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    QUIET.call_once(morgana_fuzz::silence_stdout);
    morgana_fuzz::hypercalls(data)
});
