//! Bindings for the Solo5 hvt ABI (version 2): hypercalls through I/O
//! ports, the TSC as monotonic clock, boot information at 0x10000.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use morgana_abi::Solo5Result;
use morgana_abi::hvt::{
    self, BootInfo, HcBlockIo, HcHalt, HcNetIo, HcPoll, HcPuts, HcWalltime, Hypercall,
};
use morgana_abi::note::{AbiNote, AbiTarget};

/// The platform's name.
pub const NAME: &str = "hvt";

/// The ABI note of hvt images.
pub const ABI_NOTE: AbiNote = AbiNote::new(AbiTarget::Hvt, hvt::ABI_VERSION);

/// Performs hypercall `hc` with argument structure `arg`.
#[inline(always)]
fn hypercall<T>(hc: Hypercall, arg: &mut T) {
    let gpa = arg as *mut T as u64;
    // SAFETY: `out` to a hypercall port traps to the tender, which reads and
    // writes `*arg` (guest memory is identity mapped, below 4 GiB, so the
    // low 32 bits are its guest-physical address). The asm block is not
    // `nomem`, so the compiler assumes memory is read and written.
    unsafe {
        asm!("out dx, eax", in("dx") hc.port(), in("eax") gpa as u32, options(nostack, preserves_flags));
    }
}

static TSC_BASE: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick, as a 32.32 fixed-point number.
static TSC_MULT: AtomicU64 = AtomicU64::new(0);

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects (it may trap to the host, which
    // emulates it).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Entry point, called by `_start` with the tender's boot info.
///
/// # Safety
/// `bi` must point to the boot info a tender set up per the ABI.
pub(crate) unsafe extern "C" fn start(bi: *const BootInfo) -> ! {
    // SAFETY: the tender put a BootInfo at this address (the ABI), in memory
    // mapped read-only for the guest.
    let bi = unsafe { bi.read() };
    super::bare::init_heap(bi.kernel_end, bi.mem_size);
    super::x86::init();
    let freq = bi.cpu_cycle_freq.max(1);
    TSC_MULT.store(
        ((1_000_000_000u128 << 32) / freq as u128) as u64,
        Ordering::Relaxed,
    );
    TSC_BASE.store(rdtsc(), Ordering::Relaxed);
    // SAFETY: the tender wrote the manifest copy and the command line at
    // these addresses, in guest memory that stays valid forever.
    let (mft, cmdline) = unsafe { (super::manifest_at(bi.mft), super::cstr_at(bi.cmdline)) };
    super::bare::record_block_devices(&mft);
    crate::boot::start(cmdline, mft)
}

/// Writes to the console (best effort).
pub fn console_write(buf: &[u8]) {
    let mut a = HcPuts {
        data: buf.as_ptr() as u64,
        len: buf.len() as u64,
    };
    hypercall(Hypercall::Puts, &mut a);
}

/// Monotonic time in nanoseconds since boot.
pub fn clock_monotonic() -> u64 {
    let delta = rdtsc().wrapping_sub(TSC_BASE.load(Ordering::Relaxed));
    ((delta as u128 * TSC_MULT.load(Ordering::Relaxed) as u128) >> 32) as u64
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn clock_wall() -> u64 {
    let mut a = HcWalltime::default();
    hypercall(Hypercall::Walltime, &mut a);
    a.nsecs
}

/// Sleeps until the monotonic `deadline` or until a network device has
/// input; returns the set of ready handles.
pub fn yield_until(deadline: u64) -> u64 {
    let now = clock_monotonic();
    let mut a = HcPoll {
        timeout_nsecs: deadline.saturating_sub(now),
        ..Default::default()
    };
    hypercall(Hypercall::Poll, &mut a);
    a.ready_set
}

fn result(ret: i32) -> Result<(), Solo5Result> {
    match Solo5Result::from_raw(ret) {
        Solo5Result::Ok => Ok(()),
        e => Err(e),
    }
}

/// Reads one frame into `buf`; `Err(Again)` when none is waiting.
pub fn net_read(handle: u64, buf: &mut [u8]) -> Result<usize, Solo5Result> {
    let mut a = HcNetIo {
        handle,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ret: 0,
    };
    hypercall(Hypercall::NetRead, &mut a);
    result(a.ret).map(|()| a.len as usize)
}

/// Writes one frame.
pub fn net_write(handle: u64, buf: &[u8]) -> Result<(), Solo5Result> {
    let mut a = HcNetIo {
        handle,
        data: buf.as_ptr() as u64,
        len: buf.len() as u64,
        ret: 0,
    };
    hypercall(Hypercall::NetWrite, &mut a);
    result(a.ret)
}

/// Reads one block at byte `offset`.
pub fn block_read(handle: u64, offset: u64, buf: &mut [u8]) -> Result<(), Solo5Result> {
    super::bare::block_check(handle, offset, buf.len())?;
    let mut a = HcBlockIo {
        handle,
        offset,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ret: 0,
    };
    hypercall(Hypercall::BlockRead, &mut a);
    result(a.ret)
}

/// Writes one block at byte `offset`.
pub fn block_write(handle: u64, offset: u64, buf: &[u8]) -> Result<(), Solo5Result> {
    super::bare::block_check(handle, offset, buf.len())?;
    let mut a = HcBlockIo {
        handle,
        offset,
        data: buf.as_ptr() as u64,
        len: buf.len() as u64,
        ret: 0,
    };
    hypercall(Hypercall::BlockWrite, &mut a);
    result(a.ret)
}

/// Halts the guest with `status`.
pub fn exit(status: i32) -> ! {
    let mut a = HcHalt {
        cookie: 0,
        exit_status: status,
    };
    loop {
        hypercall(Hypercall::Halt, &mut a);
    }
}

/// The runtime has a single thread on this platform.
#[inline(always)]
pub fn assert_runtime_thread() {}

/// Low-level access for tests of the tender: performs hypercall number
/// `nr` (a raw port offset) with an arbitrary, unchecked argument address.
///
/// This exists so that test unikernels can prove the tender rejects wild
/// pointers; nothing else should use it.
///
/// # Safety
///
/// The tender may write the hypercall's results anywhere in guest memory
/// that `arg_gpa` and the structure there designate: the caller must make
/// sure that this memory is not in use by anything else.
#[cfg(feature = "raw")]
pub unsafe fn raw_hypercall(nr: u16, arg_gpa: u32) {
    // SAFETY: the tender validates every guest address; what it may write
    // is the caller's responsibility (see above).
    unsafe {
        asm!("out dx, eax", in("dx") hvt::HYPERCALL_PIO_BASE + nr, in("eax") arg_gpa, options(nostack, preserves_flags));
    }
}
