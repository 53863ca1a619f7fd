//! `morgana-spt`: the Solo5-compatible seccomp process tender. See `--help`.
//!
//! A C `main` rather than Rust's: the standard library's start-up (reading
//! `/proc/self/maps` for the stack guard, an alternate signal stack and its
//! handlers) costs about 0.3 ms here, a quarter of a boot; see
//! [`morgana_tender::main`] for what is kept of it.

#![no_main]

/// The process entry point, called by the C runtime.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    morgana_tender::main::<morgana_tender::spt::Spt>()
}
