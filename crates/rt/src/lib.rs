//! Morgana: write unikernels in Rust.
//!
//! A Morgana program is an ordinary `#![no_std]` + `alloc` Rust program
//! whose `main` is an `async fn` marked `#[morgana::main]`, taking its
//! devices as parameters:
//!
//! ```no_run
//! #![no_std]
//! #![no_main]
//! use morgana::{Block, Net};
//!
//! #[morgana::main]
//! async fn main(service: Net, storage: Block) {
//!     morgana::println!("MAC {:02x?}, {} sectors", service.mac(), storage.info().sectors);
//! }
//! ```
//!
//! The same source builds for every platform: `hvt` (a KVM tender such as
//! `morgana-hvt` or Solo5's `solo5-hvt`), `spt` (a seccomp process tender)
//! and `unix` (a plain Linux process, for development and `gdb`).
//!
//! # Devices
//!
//! Each parameter of `main` is a [`Device`]: a platform
//! device acquired by name ([`Net`], [`Block`]), a device composed from
//! platform devices (a TCP/IP stack from a `Net`), or a pure one
//! ([`Console`], [`Clock`], [`Random`]). From the parameters the macro
//! generates the Solo5 manifest at compile time (so it is never written by
//! hand) and the code that connects every device at boot. A parameter's
//! platform devices are named after it (`service: Net` is the net device
//! `service`); `#[name = "x"]` or `#[names("a", "b")]` override that. A
//! device that cannot be connected stops the unikernel at boot with a
//! one-line error and status 1.
//!
//! # Scheduling contract
//!
//! Morgana runs one cooperative, single-core scheduler in the spirit of
//! MirageOS's Miou on Solo5. The rules, which hold identically on hvt, spt
//! and unix:
//!
//! 1. **Tasks.** [`spawn`] starts a task and returns a [`JoinHandle`] that
//!    can be awaited for the task's output or [`cancelled`](JoinHandle::cancel).
//!    The unikernel exits when `main` returns.
//! 2. **Availability first.** Tasks run in rounds, in the order they became
//!    ready. Every future the runtime provides (net reads, sleeps, timeouts,
//!    scheduled block I/O, join handles, [`yield_now`]) is a scheduling
//!    point: if another task is ready when it is first polled, the current
//!    task yields the CPU first. So a task that loops on runtime futures that
//!    are already complete cannot starve the others. (Futures outside the
//!    runtime's control, such as `core::future::ready`, cannot be
//!    interrupted: cooperation needs an await point on a runtime future.)
//! 3. **Network reads** try the device first; if no frame is waiting the
//!    task is suspended until the platform reports the device ready, and
//!    other tasks run. **Network writes** are immediate and never suspend.
//! 4. **Block I/O, atomic**: [`Block::atomic_read`] and
//!    [`Block::atomic_write`] are done at once; nothing else runs meanwhile.
//! 5. **Block I/O, scheduled**: [`Block::read`] and [`Block::write`] queue
//!    their sectors at the lowest priority, never doing them inline. While
//!    tasks are ready, the scheduler performs one queued operation each time
//!    it checks for events; when no task is ready, it performs as many as fit
//!    before the next sleep deadline (all of them if no task sleeps). Queued
//!    operations complete in the order queued; a cancelled (dropped) one is
//!    skipped.
//! 6. **Events and idling.** The scheduler checks for events after each
//!    round. If tasks are still ready it performs one queued block
//!    operation, polls the network devices that tasks wait on (a
//!    zero-timeout yield to the platform, only if some task waits on one),
//!    and wakes expired sleepers. If no task is ready it does the queued
//!    block work (rule 5), then yields to the platform until the earliest
//!    sleep deadline (with a zero timeout if it did block work), then wakes
//!    the readers of ready devices and the expired sleepers. Hooks
//!    registered with [`on_yield`] run after every yield to the platform. If
//!    every task waits and nothing can ever wake one (no sleeper, no network
//!    reader, no queued block operation), the unikernel aborts with a
//!    `deadlock` message.

//! 7. **Time.** [`sleep`], [`sleep_until`] and [`timeout`] use the
//!    monotonic clock ([`Instant`]); [`WallTime`] is the host's wall clock.
//! 8. **Panics.** A panic in `main`, or in a task whose handle has been
//!    dropped, ends the unikernel with its message and status 255. On the
//!    unix platform a panic in a task whose handle is still held surfaces
//!    as [`JoinError::Panicked`] when the handle is awaited. On hvt and spt
//!    every panic ends the unikernel: catching one needs unwinding, which
//!    stable Rust does not provide for the bare `x86_64-unknown-none`
//!    target (its `core` is built `panic=abort`).
//!
//! # Logging
//!
//! The console is the `log` crate's logger from boot, at level `info`;
//! `--log-level=debug` (or error, warn, trace, off) on the unikernel's
//! command line changes it.
//!
//! # Exit status
//!
//! `main` may return `()` (status 0), an integer status, or a `Result`
//! (an `Err` is printed and gives status 1); [`exit`] ends the unikernel
//! anywhere. Status 255 is reserved for aborts, traps and panics.

#![no_std]

extern crate alloc;
#[cfg(morgana_platform = "unix")]
extern crate std;

pub mod block;
mod boot;
pub mod clock;
pub mod console;
pub mod device;
mod exec;
mod global;
pub mod net;
#[cfg(feature = "raw")]
pub mod platform;
#[cfg(not(feature = "raw"))]
mod platform;
pub mod random;
pub mod trace;

pub use block::{Block, BlockError, BlockInfo};
pub use boot::{AcquireError, args, cmdline};
pub use clock::{Calendar, Clock, WallTime};
pub use console::Console;
pub use device::{Device, DeviceError};
pub use exec::time::{
    self, Elapsed, Instant, Sleep, Timeout, sleep, sleep_until, timeout, yield_now,
};
pub use exec::{JoinError, JoinHandle, Stats, on_yield, spawn, stats};
pub use morgana_abi as abi;
pub use morgana_macros::main;
pub use net::{Net, NetError, NetStats};
pub use random::Random;

/// The platform this program was built for: `"hvt"`, `"spt"`, `"virtio"`
/// or `"unix"`.
pub const PLATFORM: &str = platform::NAME;

/// The Solo5-level platform interface, for code that needs it raw (tests of
/// the tenders, drivers of new device kinds), with the `raw` feature.
/// Programs use the typed devices instead.
#[cfg(feature = "raw")]
pub mod sys {
    pub use morgana_abi::Solo5Result;

    /// Sleeps until the monotonic `deadline` (ns) or until a network
    /// device has input; returns the set of ready handles.
    pub fn yield_until(deadline: u64) -> u64 {
        crate::platform::yield_until(deadline)
    }

    /// Monotonic time in nanoseconds.
    pub fn clock_monotonic() -> u64 {
        crate::platform::clock_monotonic()
    }

    /// Wall-clock time in nanoseconds since the epoch.
    pub fn clock_wall() -> u64 {
        crate::platform::clock_wall()
    }

    /// Reads one block at byte `offset` of device `handle`.
    pub fn block_read(handle: u64, offset: u64, buf: &mut [u8]) -> Result<(), Solo5Result> {
        crate::platform::block_read(handle, offset, buf)
    }

    /// Writes one block at byte `offset` of device `handle`.
    pub fn block_write(handle: u64, offset: u64, buf: &[u8]) -> Result<(), Solo5Result> {
        crate::platform::block_write(handle, offset, buf)
    }

    /// Reads one frame from device `handle`.
    pub fn net_read(handle: u64, buf: &mut [u8]) -> Result<usize, Solo5Result> {
        crate::platform::net_read(handle, buf)
    }

    /// Writes one frame to device `handle`.
    pub fn net_write(handle: u64, buf: &[u8]) -> Result<(), Solo5Result> {
        crate::platform::net_write(handle, buf)
    }
}

/// The availability rule, for futures built on top of the runtime (a
/// network stack, a file system): call it first thing in `poll` with a flag
/// kept in the future, initially `false`. On the future's first poll, if
/// another task is ready, it re-queues the current task and returns `true`:
/// return `Poll::Pending` then. Otherwise, and on every later poll, it
/// returns `false`.
pub fn cooperate(cx: &mut core::task::Context<'_>, yielded: &mut bool) -> bool {
    exec::coop(cx, yielded)
}

/// Ends the unikernel now with `status` (0 to 254; 255 means abort).
pub fn exit(status: u8) -> ! {
    platform::exit(i32::from(status))
}

/// Ends the unikernel now with status 255.
pub fn abort() -> ! {
    platform::abort()
}

/// Memory statistics of the unikernel's heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemStats {
    /// Bytes the heap can hand out in all (0 on unix, where the heap grows).
    pub heap_size: u64,
    /// Bytes allocated now.
    pub allocated: u64,
}

/// The heap's statistics now.
pub fn mem_stats() -> MemStats {
    let (heap_size, allocated) = platform::heap_stats();
    MemStats {
        heap_size,
        allocated,
    }
}

/// What `main` may return: converted to the unikernel's exit status.
pub trait Termination {
    /// The exit status.
    fn report(self) -> i32;
}

impl Termination for () {
    fn report(self) -> i32 {
        0
    }
}

impl Termination for u8 {
    fn report(self) -> i32 {
        i32::from(self)
    }
}

impl Termination for i32 {
    fn report(self) -> i32 {
        self
    }
}

impl<T: Termination, E: core::fmt::Display> Termination for Result<T, E> {
    fn report(self) -> i32 {
        match self {
            Ok(v) => v.report(),
            Err(e) => {
                println!("morgana: main returned an error: {e}");
                1
            }
        }
    }
}

/// Support for the code `#[morgana::main]` generates; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::device::{EMPTY_DECL, declare, default_names, offload_mask};
    pub use crate::exec::block_on;
    pub use morgana_abi::mft::{DeviceDecl, MftNote};
    #[cfg(any(
        morgana_platform = "hvt",
        morgana_platform = "spt",
        morgana_platform = "virtio"
    ))]
    pub use morgana_abi::note::AbiNote;
    pub use morgana_abi::offload::Request as OffloadRequest;

    /// The ABI note of this platform.
    #[cfg(any(
        morgana_platform = "hvt",
        morgana_platform = "spt",
        morgana_platform = "virtio"
    ))]
    pub const ABI_NOTE: AbiNote = crate::platform::ABI_NOTE;

    /// The unix platform's start-up, called by the C `main` that
    /// `#[morgana::main]` emits.
    #[cfg(all(morgana_platform = "unix", not(any(test, morgana_sim))))]
    pub use crate::platform::unix::unix_main;

    /// Reports a device that could not be connected, and exits 1.
    pub fn connect_failed(e: crate::DeviceError) -> ! {
        crate::println!("morgana: {e}");
        crate::platform::exit(1)
    }
}
