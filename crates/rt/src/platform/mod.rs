//! Platform bindings: the Solo5 guest interface (console, clocks, yield,
//! net, block, exit) on each platform. Exactly one is compiled in:
//!
//! * `hvt`: hypercalls to an hvt tender (`morgana-hvt` or Solo5's);
//! * `spt`: Linux system calls under an spt tender's seccomp filter;
//! * `virtio`: a standard VMM (QEMU, Firecracker) booting the image through
//!   PVH, with virtio-net and virtio-blk devices;
//! * `unix`: an ordinary Linux process, for development and debugging.
//!
//! Every platform-specific `unsafe` of the runtime lives in this module.

#[cfg(any(
    morgana_platform = "hvt",
    morgana_platform = "spt",
    morgana_platform = "virtio"
))]
pub(crate) mod bare;
#[cfg(morgana_platform = "hvt")]
pub mod hvt;
#[cfg(any(test, morgana_sim))]
pub mod sim;
#[cfg(morgana_platform = "spt")]
pub mod spt;
#[cfg(all(morgana_platform = "unix", not(any(test, morgana_sim))))]
pub mod unix;
#[cfg(morgana_platform = "virtio")]
pub mod virtio;
#[cfg(any(morgana_platform = "hvt", morgana_platform = "virtio"))]
mod x86;

#[cfg(morgana_platform = "hvt")]
pub(crate) use hvt as imp;
#[cfg(any(test, morgana_sim))]
pub(crate) use sim as imp;
#[cfg(morgana_platform = "spt")]
pub(crate) use spt as imp;
#[cfg(all(morgana_platform = "unix", not(any(test, morgana_sim))))]
pub(crate) use unix as imp;
#[cfg(morgana_platform = "virtio")]
pub(crate) use virtio as imp;

#[cfg(any(
    morgana_platform = "hvt",
    morgana_platform = "spt",
    morgana_platform = "virtio"
))]
pub use imp::ABI_NOTE;
pub use imp::NAME;
pub(crate) use imp::{
    assert_runtime_thread, block_read, block_write, clock_monotonic, clock_wall, console_write,
    net_read, net_write, yield_until,
};

/// Ends the unikernel with `status` (recorded in the trace buffer first).
pub(crate) fn exit(status: i32) -> ! {
    crate::trace::record(morgana_abi::trace::Kind::Exit, status as u32, [0, 0, 0]);
    imp::exit(status)
}

#[cfg(morgana_platform = "unix")]
pub(crate) use imp::catch_panic;
#[cfg(all(morgana_platform = "unix", not(any(test, morgana_sim))))]
pub(crate) use imp::{deregister_fd, is_sockets, register_fd, wait_fd};

/// Whether a task waits for a host socket (unix socket mode).
pub(crate) fn fd_waiters() -> bool {
    #[cfg(all(morgana_platform = "unix", not(any(test, morgana_sim))))]
    return imp::fd_waiters();
    #[cfg(not(all(morgana_platform = "unix", not(any(test, morgana_sim)))))]
    false
}

/// Runs `f`; on the bare platforms a panic ends the unikernel (there is no
/// unwinding), so this never returns `Err`.
#[cfg(any(
    morgana_platform = "hvt",
    morgana_platform = "spt",
    morgana_platform = "virtio"
))]
pub(crate) fn catch_panic<T>(
    f: impl FnOnce() -> core::task::Poll<T>,
) -> core::task::Poll<Result<T, alloc::string::String>> {
    f().map(Ok)
}

/// Exit status of an abort.
pub const ABORT: i32 = morgana_abi::EXIT_ABORT as i32;

/// Ends the unikernel with status 255.
pub(crate) fn abort() -> ! {
    exit(ABORT)
}

/// Checks that the stack has not overflowed (bare platforms).
pub(crate) fn check_stack() {
    #[cfg(any(
        morgana_platform = "hvt",
        morgana_platform = "spt",
        morgana_platform = "virtio"
    ))]
    bare::check_stack();
}

/// Heap statistics: `(heap size, bytes allocated)`.
pub(crate) fn heap_stats() -> (u64, u64) {
    imp_heap_stats()
}

#[cfg(any(
    morgana_platform = "hvt",
    morgana_platform = "spt",
    morgana_platform = "virtio"
))]
fn imp_heap_stats() -> (u64, u64) {
    bare::heap_stats()
}

#[cfg(morgana_platform = "unix")]
fn imp_heap_stats() -> (u64, u64) {
    imp::heap_stats()
}

/// Fills `seed` from the host's entropy source, where the platform has one.
pub(crate) fn host_random(seed: &mut [u8]) -> bool {
    #[cfg(morgana_platform = "unix")]
    return imp::host_random(seed);
    #[cfg(not(morgana_platform = "unix"))]
    {
        let _ = seed;
        false
    }
}

/// The manifest copy a tender wrote at `addr`.
///
/// # Safety
/// `addr` must point to a manifest in memory that stays valid and unchanged
/// for the life of the unikernel.
#[cfg(any(morgana_platform = "hvt", morgana_platform = "spt"))]
unsafe fn manifest_at(addr: u64) -> morgana_abi::mft::ManifestView<'static> {
    use morgana_abi::mft::{ENTRY_SIZE, HEADER_SIZE, MAX_ENTRIES, ManifestView};
    // SAFETY: the header is there per the caller's contract.
    let n = unsafe { ((addr + 4) as *const u32).read_unaligned() } as usize;
    let len = HEADER_SIZE + n.min(MAX_ENTRIES) * ENTRY_SIZE;
    // SAFETY: a manifest of n entries (at most 64 read) is there.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    match ManifestView::new(bytes) {
        Ok(m) => m,
        Err(e) => {
            use core::fmt::Write;
            let mut out = crate::console::Buffered::new();
            let _ = writeln!(out, "morgana: the tender's manifest is invalid: {e}");
            out.flush();
            abort()
        }
    }
}

/// The NUL-terminated command line a tender wrote at `addr` (at most
/// 8191 bytes; non-UTF-8 bytes are cut off).
///
/// # Safety
/// `addr` must point to a NUL-terminated string in memory that stays valid
/// and unchanged for the life of the unikernel.
#[cfg(any(morgana_platform = "hvt", morgana_platform = "spt"))]
unsafe fn cstr_at(addr: u64) -> &'static str {
    let p = addr as *const u8;
    let mut len = 0;
    // SAFETY: the string is NUL terminated within CMDLINE_SIZE bytes.
    while len < morgana_abi::CMDLINE_SIZE - 1 && unsafe { p.add(len).read() } != 0 {
        len += 1;
    }
    // SAFETY: `len` bytes were just read from this valid memory.
    let bytes = unsafe { core::slice::from_raw_parts(p, len) };
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    }
}
