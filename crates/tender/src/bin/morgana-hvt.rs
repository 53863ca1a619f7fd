//! `morgana-hvt`: the Solo5-compatible KVM tender. See `--help`.
//!
//! A C `main` rather than Rust's, as for `morgana-spt`: see
//! [`morgana_tender::main`].

#![no_main]

/// The process entry point, called by the C runtime.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    morgana_tender::main::<morgana_tender::hvt::Hvt>()
}
