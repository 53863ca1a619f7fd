//! The unix platform: the unikernel as an ordinary Linux process, for
//! development and debugging (run it under `gdb` like any program).
//!
//! Its command line is a tender's without the image:
//! `PROGRAM [--net:NAME=TAP] [--net-mac:NAME=MAC] [--block:NAME=FILE]
//! [--block-sector-size:NAME=N] [--] [ARGS...]`. Devices are attached with
//! the same code and checks as `morgana-hvt` and `morgana-spt`, against the
//! manifest the program declares, so an undeclared or unattached device is
//! refused exactly as a tender refuses it. Block I/O follows the Solo5
//! rules (one whole sector at an aligned, in-range offset, else `EINVAL`).
//!
//! `--net:NAME=socket` attaches the net device `NAME` to the host's own
//! sockets instead of a tap (MirageOS's socket stack): a TCP/IP stack built
//! on it (`morgana_net::Stack`) then opens non-blocking host sockets, and
//! the scheduler waits for them with epoll, so network unikernels run as
//! ordinary unprivileged processes.

use crate::global::Global;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, Ordering};
use morgana_abi::Solo5Result;
use morgana_abi::mft::{DeviceDecl, DeviceKind, Manifest};
use std::alloc::System;
use std::boxed::Box;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::string::{String, ToString};
use std::vec::Vec;

/// The platform's name.
pub const NAME: &str = "unix";

unsafe extern "Rust" {
    /// The program's device declarations, emitted by `#[morgana::main]`.
    safe static __MORGANA_DECLS: &'static [DeviceDecl];
    /// The program's offload request, emitted by `#[morgana::main]`.
    safe static __MORGANA_OFFLOAD: morgana_abi::offload::Request;
}

#[derive(Clone, Copy)]
enum Dev {
    None,
    Net {
        fd: i32,
    },
    /// A net device attached to the host's sockets (`--net:NAME=socket`).
    Sockets,
    Block {
        fd: i32,
        capacity: u64,
        sector: u64,
    },
}

static DEVS: Global<[Dev; 64]> = Global::new([Dev::None; 64]);

/// The tasks waiting for a host socket: a reader and a writer per socket.
#[derive(Default)]
struct FdWait {
    read: Option<core::task::Waker>,
    write: Option<core::task::Waker>,
}

/// Host sockets registered with the epoll set, and who waits on them.
static FD_WAITS: Global<Waits> = Global::new(Waits {
    fds: BTreeMap::new(),
    waiting: 0,
});

/// The host sockets' waiters, and how many wakers they hold (so that the
/// scheduler's check is O(1) whatever the number of sockets).
struct Waits {
    fds: BTreeMap<i32, FdWait>,
    waiting: usize,
}

/// The epoll set the scheduler waits on: the taps (level-triggered, tagged
/// with [`TAP_TAG`] and their handle) and the host sockets (edge-triggered,
/// tagged with their descriptor). -1 until the first device is attached.
static EPOLL: Global<i32> = Global::new(-1);

/// Marks an epoll event as a tap's (the low bits are its handle).
const TAP_TAG: u64 = 1 << 40;

/// The name `--net:NAME=VALUE` gives for host sockets.
pub const SOCKETS: &str = "socket";

std::thread_local! {
    static RUNTIME_THREAD: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Panics if runtime state is touched from a thread other than the one
/// running the unikernel.
pub fn assert_runtime_thread() {
    if !RUNTIME_THREAD.with(|t| t.get()) {
        panic!("morgana: runtime used from a foreign thread");
    }
}

struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
            ALLOCATED.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap statistics: the heap grows on demand, so its size is reported 0.
pub fn heap_stats() -> (u64, u64) {
    (0, ALLOCATED.load(Ordering::Relaxed))
}

fn program_name() -> String {
    std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(ToString::to_string))
        .unwrap_or_else(|| "unikernel".into())
}

fn fail(msg: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "{}: {msg}", program_name());
    std::process::exit(morgana_abi::EXIT_TENDER_ERROR.into())
}

/// The body of a unix build's C `main` (which `#[morgana::main]` emits in
/// the program, so that libraries depending on the runtime can still link
/// their own test harnesses): attach the devices named on the command
/// line, then boot the program.
pub fn unix_main() -> i32 {
    RUNTIME_THREAD.with(|t| t.set(true));
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => fail(&std::format!("argument is not UTF-8: {a:?}")),
        }
    }
    if args.first().is_some_and(|a| a == "--help") {
        println_help();
        std::process::exit(0);
    }
    let mut opts = morgana_host::args::parse_unix(&args).unwrap_or_else(|e| fail(&e.to_string()));
    let decls: &'static [DeviceDecl] = __MORGANA_DECLS;
    let mut manifest = Manifest::from_decls(decls)
        .unwrap_or_else(|| fail("the program's device declarations are invalid"));
    let sockets = attach_sockets(&mut manifest, &mut opts.devices).unwrap_or_else(|e| fail(&e));
    let offload = if opts.no_net_offload {
        0
    } else {
        __MORGANA_OFFLOAD.nets
    };
    let attached = morgana_host::attach_devices_offload(&manifest, &opts.devices, offload)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let cmdline = morgana_host::args::guest_cmdline(&opts.guest_args).unwrap_or_else(|e| fail(&e));
    let epoll =
        new_epoll().unwrap_or_else(|e| fail(&std::format!("cannot create an epoll set: {e}")));
    EPOLL.with(|e| *e = epoll);
    DEVS.with(|devs| {
        for &h in &sockets {
            devs[h] = Dev::Sockets;
        }
        for d in attached.devices {
            let e = attached.manifest.entries()[d.handle];
            let fd = d.fd.into_raw_fd();
            devs[d.handle] = match d.kind {
                DeviceKind::Net => {
                    let mut ev = libc::epoll_event {
                        events: libc::EPOLLIN as u32,
                        u64: TAP_TAG | d.handle as u64,
                    };
                    // SAFETY: adding a valid descriptor to our epoll set.
                    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
                        fail(&std::format!(
                            "cannot wait for net device '{}': {}",
                            d.name,
                            std::io::Error::last_os_error()
                        ));
                    }
                    Dev::Net { fd }
                }
                DeviceKind::Block => {
                    let (capacity, sector) = e.block();
                    Dev::Block {
                        fd,
                        capacity,
                        sector: u64::from(sector),
                    }
                }
            };
        }
    });
    std::panic::set_hook(Box::new(|info| {
        let msg = panic_message(info.payload());
        match info.location() {
            Some(l) => crate::println!(
                "morgana: panic: {msg} at {}:{}:{}",
                l.file(),
                l.line(),
                l.column()
            ),
            None => crate::println!("morgana: panic: {msg}"),
        }
    }));
    let manifest = crate::boot::leak_encoded(&attached.manifest);
    crate::boot::start(Box::leak(cmdline.into_boxed_str()), manifest)
}

/// Takes the `--net:NAME=socket` options out of `opts` and marks their
/// devices attached (to the host's sockets: no tap, MAC 0, MTU 1500);
/// returns their handles.
fn attach_sockets(
    manifest: &mut Manifest,
    opts: &mut Vec<morgana_host::args::DeviceOpt>,
) -> Result<Vec<usize>, String> {
    use morgana_host::args::DeviceOpt;
    let mut handles = Vec::new();
    let mut err = None;
    opts.retain(|o| match o {
        DeviceOpt::Net { name, iface } if iface == SOCKETS => {
            match manifest.find_any(name) {
                Some(h) if manifest.entries()[h].kind() == Some(DeviceKind::Net) => {
                    if handles.contains(&h) {
                        err.get_or_insert(std::format!(
                            "device '{name}' is attached more than once"
                        ));
                    }
                    handles.push(h);
                }
                Some(_) => {
                    err.get_or_insert(std::format!(
                        "device '{name}' is not a net device: only net devices use host sockets"
                    ));
                }
                None => {
                    err.get_or_insert(std::format!(
                        "device '{name}' is not declared by the unikernel"
                    ));
                }
            }
            false
        }
        _ => true,
    });
    if let Some(e) = err {
        return Err(e);
    }
    for o in opts.iter() {
        let h = manifest.find_any(o.name());
        if h.is_some_and(|h| handles.contains(&h)) {
            return Err(std::format!(
                "device '{}' uses host sockets (--net:{}=socket): `{}` does not apply to it",
                o.name(),
                o.name(),
                match o {
                    DeviceOpt::Net { .. } => "--net",
                    DeviceOpt::NetMac { .. } => "--net-mac",
                    _ => "this option",
                }
            ));
        }
    }
    for &h in &handles {
        let e = &mut manifest.entries_mut()[h];
        e.set_net([0; 6], 1500);
        e.set_attached(true);
        e.set_hostfd(-1);
    }
    Ok(handles)
}

fn new_epoll() -> std::io::Result<i32> {
    // SAFETY: creates a descriptor; no pointers involved.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

fn println_help() {
    let decls: &'static [DeviceDecl] = __MORGANA_DECLS;
    let mut s = std::format!(
        "usage: {} [--net:NAME=TAP|socket] [--net-mac:NAME=MAC] [--block:NAME=FILE] \
         [--block-sector-size:NAME=N] [--no-net-offload] [--] [ARGS...]\n\
         A Morgana unikernel built for the unix platform.\nDevices it declares:",
        program_name()
    );
    if decls.is_empty() {
        s.push_str(" none");
    }
    for d in decls {
        s.push_str(&std::format!("\n  {} ({})", d.name, d.kind.solo5_name()));
    }
    std::println!("{s}");
}

fn panic_message(p: &(dyn core::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).into()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

/// Runs `f`, turning a panic into `Err(message)` (the panic hook has
/// already printed it).
pub fn catch_panic<T>(
    f: impl FnOnce() -> core::task::Poll<T>,
) -> core::task::Poll<Result<T, String>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(p) => p.map(Ok),
        Err(payload) => core::task::Poll::Ready(Err(panic_message(&*payload))),
    }
}

/// Writes to stdout (best effort).
pub fn console_write(mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: writing a valid buffer to fd 1.
        let n = unsafe { libc::write(1, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Monotonic time in nanoseconds.
pub fn clock_monotonic() -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

/// Wall-clock time in nanoseconds since the epoch.
pub fn clock_wall() -> u64 {
    clock(libc::CLOCK_REALTIME)
}

/// Sleeps until `deadline` or network input; returns the ready handles of
/// the taps, and wakes the tasks waiting for host sockets that are ready.
pub fn yield_until(deadline: u64) -> u64 {
    let epoll = EPOLL.with(|e| *e);
    if epoll < 0 {
        // Before boot (nothing attached): just sleep.
        let left = deadline.saturating_sub(clock_monotonic());
        std::thread::sleep(core::time::Duration::from_nanos(left));
        return 0;
    }
    let left = deadline.saturating_sub(clock_monotonic());
    let ts = libc::timespec {
        tv_sec: (left / 1_000_000_000) as libc::time_t,
        tv_nsec: (left % 1_000_000_000) as libc::c_long,
    };
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    // SAFETY: `events` is a valid array of its length; `ts` a valid timeout.
    let n = unsafe {
        libc::epoll_pwait2(
            epoll,
            events.as_mut_ptr(),
            events.len() as i32,
            &ts,
            core::ptr::null(),
        )
    };
    if n <= 0 {
        return 0;
    }
    let mut ready = 0;
    let mut woken = Vec::new();
    FD_WAITS.with(|waits| {
        for ev in &events[..n as usize] {
            let (data, flags) = (ev.u64, ev.events);
            if data & TAP_TAG != 0 {
                ready |= 1 << (data & 63);
                continue;
            }
            let Some(w) = waits.fds.get_mut(&(data as i32)) else {
                continue;
            };
            let err = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
            let before = woken.len();
            if flags & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 | err != 0 {
                woken.extend(w.read.take());
            }
            if flags & libc::EPOLLOUT as u32 | err != 0 {
                woken.extend(w.write.take());
            }
            waits.waiting -= woken.len() - before;
        }
    });
    for w in woken {
        w.wake();
    }
    ready
}

/// Whether a task waits for a host socket.
pub fn fd_waiters() -> bool {
    FD_WAITS.with(|w| w.waiting > 0)
}

/// Whether net device `handle` is attached to the host's sockets.
pub fn is_sockets(handle: u64) -> bool {
    matches!(dev(handle), Dev::Sockets)
}

/// Adds host socket `fd` to the scheduler's epoll set (edge-triggered).
pub fn register_fd(fd: i32) -> std::io::Result<()> {
    let epoll = EPOLL.with(|e| *e);
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
        u64: fd as u64,
    };
    // SAFETY: adding a descriptor to our epoll set; the kernel checks it.
    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let old = FD_WAITS.with(|w| {
        let old = w.fds.insert(fd, FdWait::default());
        if let Some(o) = &old {
            w.waiting -= usize::from(o.read.is_some()) + usize::from(o.write.is_some());
        }
        old
    });
    drop(old);
    Ok(())
}

/// Removes host socket `fd` from the epoll set (before it is closed), and
/// drops its waiters' wakers.
pub fn deregister_fd(fd: i32) {
    let epoll = EPOLL.with(|e| *e);
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: removing a descriptor from our epoll set; the kernel checks it.
    unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, &mut ev) };
    let w = FD_WAITS.with(|w| {
        let old = w.fds.remove(&fd);
        if let Some(o) = &old {
            w.waiting -= usize::from(o.read.is_some()) + usize::from(o.write.is_some());
        }
        old
    });
    drop(w);
}

/// Makes `waker` the one woken when host socket `fd` becomes readable
/// (`write == false`) or writable.
pub fn wait_fd(fd: i32, write: bool, waker: &core::task::Waker) {
    let old = FD_WAITS.with(|waits| {
        let w = waits.fds.entry(fd).or_default();
        let slot = if write { &mut w.write } else { &mut w.read };
        match slot {
            Some(s) if s.will_wake(waker) => None,
            _ => {
                let old = slot.replace(waker.clone());
                if old.is_none() {
                    waits.waiting += 1;
                }
                old
            }
        }
    });
    drop(old);
}

fn dev(handle: u64) -> Dev {
    DEVS.with(|d| d.get(handle as usize).copied().unwrap_or(Dev::None))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reads one frame; `Err(Again)` when none is waiting.
pub fn net_read(handle: u64, buf: &mut [u8]) -> Result<usize, Solo5Result> {
    let Dev::Net { fd } = dev(handle) else {
        return Err(Solo5Result::Einval);
    };
    // SAFETY: reading into a valid buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        n if n > 0 => Ok(n as usize),
        0 => Err(Solo5Result::Again),
        _ if errno() == libc::EAGAIN => Err(Solo5Result::Again),
        _ => Err(Solo5Result::Eunspec),
    }
}

/// Writes one frame (dropped if the tap queue is full).
pub fn net_write(handle: u64, buf: &[u8]) -> Result<(), Solo5Result> {
    let Dev::Net { fd } = dev(handle) else {
        return Err(Solo5Result::Einval);
    };
    // SAFETY: writing a valid buffer.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 && !matches!(errno(), libc::EAGAIN | libc::ENOBUFS) {
        return Err(Solo5Result::Eunspec);
    }
    Ok(())
}

fn block_io(
    handle: u64,
    offset: u64,
    len: usize,
    io: impl Fn(i32, i64) -> isize,
) -> Result<(), Solo5Result> {
    let Dev::Block {
        fd,
        capacity,
        sector,
    } = dev(handle)
    else {
        return Err(Solo5Result::Einval);
    };
    if !morgana_abi::block_request_ok(offset, len as u64, capacity, sector) {
        return Err(Solo5Result::Einval);
    }

    if io(fd, offset as i64) == len as isize {
        Ok(())
    } else {
        Err(Solo5Result::Eunspec)
    }
}

/// Reads one block at byte `offset`.
pub fn block_read(handle: u64, offset: u64, buf: &mut [u8]) -> Result<(), Solo5Result> {
    let (p, len) = (buf.as_mut_ptr(), buf.len());
    // SAFETY: reading into a valid buffer of `len` bytes.
    block_io(handle, offset, len, |fd, off| unsafe {
        libc::pread(fd, p.cast(), len, off)
    })
}

/// Writes one block at byte `offset`.
pub fn block_write(handle: u64, offset: u64, buf: &[u8]) -> Result<(), Solo5Result> {
    let (p, len) = (buf.as_ptr(), buf.len());
    // SAFETY: writing a valid buffer of `len` bytes.
    block_io(handle, offset, len, |fd, off| unsafe {
        libc::pwrite(fd, p.cast(), len, off)
    })
}

/// Exits the process with `status & 0xff`.
pub fn exit(status: i32) -> ! {
    std::process::exit(status & 0xff)
}

/// Fills `buf` from the host's `getrandom(2)`.
pub fn host_random(buf: &mut [u8]) -> bool {
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    n == buf.len() as isize
}
