//! Bindings for the Solo5 spt ABI (version 2): the unikernel runs inside
//! its tender's process and calls Linux directly; the tender's seccomp
//! filter allows only the calls below, on the descriptors it opened.

use core::arch::asm;
use core::sync::atomic::{AtomicI32, Ordering};
use morgana_abi::Solo5Result;
use morgana_abi::mft::DeviceKind;
use morgana_abi::note::{AbiNote, AbiTarget};
use morgana_abi::spt::{self, BootInfo};

/// The platform's name.
pub const NAME: &str = "spt";

/// The ABI note of spt images.
pub const ABI_NOTE: AbiNote = AbiNote::new(AbiTarget::Spt, spt::ABI_VERSION);

const SYS_READ: u64 = 0;
const SYS_WRITE: u64 = 1;
const SYS_PREAD64: u64 = 17;
const SYS_PWRITE64: u64 = 18;
const SYS_CLOCK_GETTIME: u64 = 228;
const SYS_EXIT_GROUP: u64 = 231;
const SYS_EPOLL_PWAIT: u64 = 281;
const SYS_TIMERFD_SETTIME: u64 = 286;
const EAGAIN: i64 = -11;
const EINTR: i64 = -4;
const TFD_TIMER_ABSTIME: u64 = 1;

/// A Linux system call with up to six arguments.
///
/// # Safety
/// The arguments must be valid for system call `nr` (pointers to memory of
/// the right size).
unsafe fn syscall(nr: u64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the caller guarantees the arguments; `syscall` clobbers rcx
    // and r11 only, and may read and write memory through the pointers.
    unsafe {
        asm!("syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack));
    }
    ret
}

static EPOLLFD: AtomicI32 = AtomicI32::new(-1);
static TIMERFD: AtomicI32 = AtomicI32::new(-1);
/// Host descriptor of each device handle, -1 if none.
static FDS: [AtomicI32; 64] = [const { AtomicI32::new(-1) }; 64];
static NET_DEVICES: AtomicI32 = AtomicI32::new(0);

/// Entry point, called by `_start` with the tender's boot info.
///
/// # Safety
/// `bi` must point to the boot info a tender set up per the ABI.
pub(crate) unsafe extern "C" fn start(bi: *const BootInfo) -> ! {
    // SAFETY: the tender put a BootInfo at this address (the ABI).
    let bi = unsafe { bi.read() };
    super::bare::init_heap(bi.kernel_end, bi.mem_size);
    EPOLLFD.store(bi.epollfd, Ordering::Relaxed);
    TIMERFD.store(bi.timerfd, Ordering::Relaxed);
    // SAFETY: the tender wrote the manifest copy and the command line at
    // these addresses, in memory that stays valid forever.
    let (mft, cmdline) = unsafe { (super::manifest_at(bi.mft), super::cstr_at(bi.cmdline)) };
    super::bare::record_block_devices(&mft);
    for (h, e) in mft.devices() {
        if !e.attached() {
            continue;
        }
        FDS[h].store(e.hostfd(), Ordering::Relaxed);
        if e.kind() == Some(DeviceKind::Net) {
            NET_DEVICES.fetch_add(1, Ordering::Relaxed);
        }
    }
    crate::boot::start(cmdline, mft)
}

fn fd(handle: u64) -> Option<i32> {
    let fd = FDS.get(handle as usize)?.load(Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// Writes to the console (best effort).
pub fn console_write(buf: &[u8]) {
    // SAFETY: writing a valid buffer to fd 1.
    unsafe {
        syscall(
            SYS_WRITE,
            [1, buf.as_ptr() as u64, buf.len() as u64, 0, 0, 0],
        )
    };
}

fn clock(id: u64) -> u64 {
    let mut ts = [0i64; 2];
    // SAFETY: clock_gettime writes one timespec (two i64) into ts.
    unsafe { syscall(SYS_CLOCK_GETTIME, [id, ts.as_mut_ptr() as u64, 0, 0, 0, 0]) };
    ts[0] as u64 * 1_000_000_000 + ts[1] as u64
}

/// Monotonic time (`CLOCK_MONOTONIC`) in nanoseconds.
pub fn clock_monotonic() -> u64 {
    clock(1)
}

/// Wall-clock time (`CLOCK_REALTIME`) in nanoseconds since the epoch.
pub fn clock_wall() -> u64 {
    clock(0)
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct EpollEvent {
    events: u32,
    data: u64,
}

/// Sleeps until `deadline` (absolute, monotonic) or network input: arms the
/// tender's timerfd and waits on its epoll set. Returns the ready handles.
///
/// A deadline of 0 (the scheduler checking for input between rounds) is a
/// poll: `epoll_pwait` with a zero timeout, and the timerfd is left alone,
/// which saves a system call on every busy round (the spt allow-lists of
/// both Morgana's and Solo5's tenders check only the descriptor).
pub fn yield_until(deadline: u64) -> u64 {
    // Timeout for epoll_pwait: none (-1) when the timerfd ends the wait.
    let mut timeout = u64::MAX;
    if deadline == 0 {
        timeout = 0;
    } else {
        // it_interval = 0; it_value = deadline (never zero, which would disarm).
        let it: [i64; 4] = [
            0,
            0,
            (deadline / 1_000_000_000) as i64,
            (deadline % 1_000_000_000) as i64 | 1,
        ];
        let timerfd = TIMERFD.load(Ordering::Relaxed) as u64;
        // SAFETY: `it` is a valid itimerspec; the old value pointer is NULL.
        unsafe {
            syscall(
                SYS_TIMERFD_SETTIME,
                [timerfd, TFD_TIMER_ABSTIME, it.as_ptr() as u64, 0, 0, 0],
            )
        };
    }
    let mut events = [EpollEvent { events: 0, data: 0 }; 65];
    let max = (NET_DEVICES.load(Ordering::Relaxed) + 1) as u64;
    let epollfd = EPOLLFD.load(Ordering::Relaxed) as u64;
    let n = loop {
        // SAFETY: `events` has room for `max` (at most 64 + 1) events.
        let n = unsafe {
            syscall(
                SYS_EPOLL_PWAIT,
                [epollfd, events.as_mut_ptr() as u64, max, timeout, 0, 0],
            )
        };
        if n != EINTR {
            break n;
        }
    };
    let mut ready = 0u64;
    for e in events.iter().take(n.max(0) as usize) {
        let data = e.data;
        if data != spt::INTERNAL_TIMERFD && data < 64 {
            ready |= 1 << data;
        }
    }
    ready
}

/// Reads one frame; `Err(Again)` when none is waiting.
pub fn net_read(handle: u64, buf: &mut [u8]) -> Result<usize, Solo5Result> {
    let fd = fd(handle).ok_or(Solo5Result::Einval)?;
    // SAFETY: reading into a valid buffer.
    let n = unsafe {
        syscall(
            SYS_READ,
            [
                fd as u64,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                0,
                0,
                0,
            ],
        )
    };
    match n {
        n if n > 0 => Ok(n as usize),
        0 | EAGAIN => Err(Solo5Result::Again),
        _ => Err(Solo5Result::Eunspec),
    }
}

/// Writes one frame.
pub fn net_write(handle: u64, buf: &[u8]) -> Result<(), Solo5Result> {
    let fd = fd(handle).ok_or(Solo5Result::Einval)?;
    // SAFETY: writing a valid buffer.
    let n = unsafe {
        syscall(
            SYS_WRITE,
            [fd as u64, buf.as_ptr() as u64, buf.len() as u64, 0, 0, 0],
        )
    };
    if n == buf.len() as i64 || n == EAGAIN {
        Ok(())
    } else {
        Err(Solo5Result::Eunspec)
    }
}

/// The host descriptor of block device `handle`, once the request passed
/// Solo5's guest-side checks (which the seccomp filter also enforces, by
/// killing the process).
fn block_check(handle: u64, offset: u64, len: usize) -> Result<i32, Solo5Result> {
    super::bare::block_check(handle, offset, len)?;
    fd(handle).ok_or(Solo5Result::Einval)
}

/// Reads one block at byte `offset`.
pub fn block_read(handle: u64, offset: u64, buf: &mut [u8]) -> Result<(), Solo5Result> {
    let fd = block_check(handle, offset, buf.len())?;
    // SAFETY: reading into a valid buffer.
    let n = unsafe {
        syscall(
            SYS_PREAD64,
            [
                fd as u64,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                offset,
                0,
                0,
            ],
        )
    };
    if n == buf.len() as i64 {
        Ok(())
    } else {
        Err(Solo5Result::Eunspec)
    }
}

/// Writes one block at byte `offset`.
pub fn block_write(handle: u64, offset: u64, buf: &[u8]) -> Result<(), Solo5Result> {
    let fd = block_check(handle, offset, buf.len())?;
    // SAFETY: writing a valid buffer.
    let n = unsafe {
        syscall(
            SYS_PWRITE64,
            [
                fd as u64,
                buf.as_ptr() as u64,
                buf.len() as u64,
                offset,
                0,
                0,
            ],
        )
    };
    if n == buf.len() as i64 {
        Ok(())
    } else {
        Err(Solo5Result::Eunspec)
    }
}

/// Exits the process with `status`.
pub fn exit(status: i32) -> ! {
    loop {
        // SAFETY: exit_group does not return.
        unsafe { syscall(SYS_EXIT_GROUP, [status as u64, 0, 0, 0, 0, 0]) };
    }
}

/// The runtime has a single thread on this platform.
#[inline(always)]
pub fn assert_runtime_thread() {}

/// The host file descriptor behind device `handle` (for tests of the
/// tender's sandbox).
#[cfg(feature = "raw")]
pub fn host_fd(handle: u64) -> Option<i32> {
    fd(handle)
}

/// Low-level access for tests of the tender's sandbox: makes Linux system
/// call `nr` with raw arguments. The seccomp filter decides what happens;
/// nothing else should use this.
///
/// # Safety
///
/// The call may do anything the filter allows to this process's memory and
/// descriptors: the caller must make sure it breaks nothing the runtime
/// relies on.
#[cfg(feature = "raw")]
pub unsafe fn raw_syscall(nr: u64, args: [u64; 6]) -> i64 {
    // SAFETY: the kernel validates pointers, the seccomp filter kills the
    // process for forbidden calls, and the rest is the caller's duty.
    unsafe { syscall(nr, args) }
}
