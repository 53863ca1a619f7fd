//! The virtio platform: the unikernel boots by itself on a standard VMM
//! (QEMU `-M microvm` or `q35`, Firecracker, cloud-hypervisor) through the
//! PVH entry, and drives virtio-net and virtio-blk devices over virtio-mmio
//! or virtio-pci with the `virtio-drivers` crate.
//!
//! * Boot: [`entry`] (32-bit PVH entry, page tables, long mode); memory map
//!   and command line from the `hvm_start_info`.
//! * Console: the serial port COM1. Clocks: the TSC, calibrated against the
//!   PIT; wall clock from the CMOS clock at boot.
//! * Waiting: with nothing to do, the CPU halts until a device interrupt
//!   (I/O APIC) or the local APIC timer set for the next deadline.
//! * Exit: QEMU's `isa-debug-exit` where present, else a power-off.
//!
//! The unikernel's command line is
//! `[--net:NAME=virtioN] [--block:NAME=virtioN] [--] ARGS...` (the
//! VMM's `virtio_mmio.device=...` announcements are taken out of it).
//! The bindings may come anywhere among the leading options, which end at
//! the first `--` (taken out) or the first word not starting with `-`:
//! urunc puts `--ipv4=... --ipv4-gateway=...` before the image's own
//! command line. The bindings are taken out; the other leading options
//! stay, in order, in the program's arguments.
//! `virtioN` is the N-th virtio device found (virtio-mmio ones in command
//! line order, then virtio-pci ones in slot order). A declared device that
//! no option names gets the only device of its kind when the image declares
//! one device of that kind. Errors are one line and status 1, as with the
//! tenders.

pub mod dev;
mod entry;
pub mod hw;

use crate::global::Global;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use morgana_abi::Solo5Result;
use morgana_abi::mft::{DeviceDecl, DeviceKind, Manifest};
use morgana_abi::note::{AbiNote, AbiTarget};

/// The platform's name.
pub const NAME: &str = "virtio";

/// The ABI note of virtio images (Solo5's virtio target, version 1).
pub const ABI_NOTE: AbiNote = AbiNote::new(AbiTarget::Virtio, 1);

unsafe extern "Rust" {
    /// The program's device declarations, emitted by `#[morgana::main]`.
    safe static __MORGANA_DECLS: &'static [DeviceDecl];
}

/// `hvm_start_info` magic.
const PVH_MAGIC: u32 = 0x336e_c578;
/// Bytes of command line kept.
const CMDLINE_MAX: usize = morgana_abi::CMDLINE_SIZE - 1;

static mut CMDLINE: [u8; CMDLINE_MAX] = [0; CMDLINE_MAX];
static CMDLINE_LEN: AtomicU64 = AtomicU64::new(0);
static MEM_TOP: AtomicU64 = AtomicU64::new(0);

/// Reads a `T` at physical address `addr`.
///
/// # Safety
/// `addr` must be mapped memory holding a `T` (boot data the VMM wrote).
unsafe fn phys<T: Copy>(addr: u64) -> T {
    // SAFETY: per the caller's contract.
    unsafe { (addr as *const T).read_unaligned() }
}

/// The top of the RAM region that holds the image, from the PVH memory
/// map (below 4 GiB: what the boot page tables map).
fn mem_top(si: u64, version: u32) -> Option<u64> {
    if version < 1 {
        return None;
    }
    // SAFETY: version 1 start info has the memory map fields at 40 and 48.
    let (map, n) = unsafe { (phys::<u64>(si + 40), phys::<u32>(si + 48)) };
    let image = (&raw const entry::PML4) as u64;
    (0..u64::from(n.min(128)))
        .map(|i| {
            // SAFETY: entry i of the VMM's memory map: u64 address, u64
            // size, u32 type.
            unsafe {
                (
                    phys::<u64>(map + 24 * i),
                    phys::<u64>(map + 24 * i + 8),
                    phys::<u32>(map + 24 * i + 16),
                )
            }
        })
        .find(|&(a, s, t)| t == 1 && a <= image && image < a.saturating_add(s))
        .map(|(a, s, _)| (a + s).min(1 << 32) & !0xf)
}

/// Called by the PVH entry in long mode, on the boot stack, with the
/// physical address of the `hvm_start_info`. Copies the command line,
/// finds the top of memory and moves the stack there.
extern "C" fn start(si: u64) -> ! {
    hw::probe_debug_devices();
    hw::serial_init();
    // SAFETY: `ebx` held the start info's address at the PVH entry.
    let (magic, version, cmdline) =
        unsafe { (phys::<u32>(si), phys::<u32>(si + 4), phys::<u64>(si + 24)) };
    if magic != PVH_MAGIC {
        fail("the VMM's PVH start info is invalid (bad magic)");
    }
    if cmdline != 0 {
        let mut len = 0;
        // SAFETY: a NUL-terminated string the VMM wrote; at most
        // CMDLINE_MAX bytes are copied into the static buffer, which nothing
        // else uses yet.
        unsafe {
            let buf = (&raw mut CMDLINE).cast::<u8>();
            while len < CMDLINE_MAX {
                let b = phys::<u8>(cmdline + len as u64);
                if b == 0 {
                    break;
                }
                buf.add(len).write(b);
                len += 1;
            }
        }
        CMDLINE_LEN.store(len as u64, Ordering::Relaxed);
    }
    let Some(top) = mem_top(si, version) else {
        fail("the VMM's PVH start info has no memory map (PVH version 1 is needed)");
    };
    MEM_TOP.store(top, Ordering::Relaxed);
    // SAFETY: `top` is the 16-byte aligned end of the RAM region that holds
    // the image; the stack grows down from there (the heap stops below it).
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {main}",
            "ud2",
            top = in(reg) top,
            main = sym start_on_stack,
            options(noreturn),
        )
    }
}

static TSC_BASE: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick, as a 32.32 fixed-point number.
static TSC_MULT: AtomicU64 = AtomicU64::new(0);
/// Local APIC timer ticks per nanosecond, as a 32.32 fixed-point number.
static APIC_MULT: AtomicU64 = AtomicU64::new(0);
/// Wall-clock time at monotonic 0, in nanoseconds.
static WALL_BASE: AtomicU64 = AtomicU64::new(0);

/// A bound device.
struct Bound {
    driver: dev::Driver,
}

static DEVS: Global<Vec<Option<Bound>>> = Global::new(Vec::new());
static NET_HANDLES: AtomicU64 = AtomicU64::new(0);

extern "C" fn start_on_stack() -> ! {
    let top = MEM_TOP.load(Ordering::Relaxed);
    super::bare::init_heap(0, top);
    // The boot data below 0x10000 was read: unmap those pages, so that a
    // null pointer faults as on hvt.
    // SAFETY: the first 16 entries of the first 4 KiB page table map
    // 0..0x10000, which nothing uses any more; reloading CR3 flushes them.
    unsafe {
        let pt = (&raw mut entry::PT).cast::<u64>();
        for i in 0..16 {
            pt.add(i).write_volatile(0);
        }
        let (frame, flags) = x86_64::registers::control::Cr3::read();
        x86_64::registers::control::Cr3::write(frame, flags);
    }
    super::x86::init();
    hw::pic_disable();
    hw::lapic_init();
    let (tsc, apic) = hw::calibrate()
        .or_else(hw::calibrate_by_cpuid)
        .unwrap_or_else(|| {
            hw::serial_write(
                b"morgana: no PIT and no CPUID TSC frequency: assuming 1 GHz clocks\n",
            );
            (1_000_000_000, 1_000_000_000)
        });
    TSC_MULT.store(
        ((1_000_000_000u128 << 32) / u128::from(tsc.max(1))) as u64,
        Ordering::Relaxed,
    );
    APIC_MULT.store(
        ((u128::from(apic.max(1)) << 32) / 1_000_000_000u128) as u64,
        Ordering::Relaxed,
    );
    TSC_BASE.store(hw::rdtsc(), Ordering::Relaxed);
    if let Some(s) = hw::rtc_seconds() {
        WALL_BASE.store(s * 1_000_000_000, Ordering::Relaxed);
    }
    let len = CMDLINE_LEN.load(Ordering::Relaxed) as usize;
    // SAFETY: `start` filled the first `len` bytes and nothing writes them
    // any more.
    let raw = unsafe { core::slice::from_raw_parts((&raw const CMDLINE).cast::<u8>(), len) };
    let raw = match core::str::from_utf8(raw) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&raw[..e.valid_up_to()]).unwrap_or(""),
    };
    let (manifest, cmdline) = bind(raw).unwrap_or_else(|e| fail(&e));
    let mft = crate::boot::leak_encoded(&manifest);
    super::bare::record_block_devices(&mft);
    crate::boot::start(Box::leak(cmdline.into_boxed_str()), mft)
}

/// What the command line asks for.
struct Cmdline<'a> {
    mmio: Vec<(u64, u64, u32)>,
    opts: Vec<(DeviceKind, &'a str, &'a str, &'a str)>,
    guest: String,
}

fn parse_cmdline(raw: &str) -> Result<Cmdline<'_>, String> {
    let mut c = Cmdline {
        mmio: Vec::new(),
        opts: Vec::new(),
        guest: String::new(),
    };
    let mut options = true;
    for a in raw.split_ascii_whitespace() {
        if let Some(v) = a.strip_prefix("virtio_mmio.device=") {
            match dev::parse_mmio(v) {
                Some(d) => c.mmio.push(d),
                None => return Err(alloc::format!("malformed `{a}' on the command line")),
            }
            continue;
        }
        if options {
            if a == "--" {
                options = false;
                continue;
            }
            let opt = a
                .strip_prefix("--net:")
                .map(|r| (DeviceKind::Net, r))
                .or_else(|| a.strip_prefix("--block:").map(|r| (DeviceKind::Block, r)));
            if let Some((kind, rest)) = opt {
                let Some((name, value)) = rest.split_once('=') else {
                    return Err(alloc::format!("missing value in `{a}'"));
                };
                c.opts.push((kind, name, value, a));
                continue;
            }
            // Another option (urunc puts `--ipv4=...` first) is the
            // program's, and the leading options go on; the first word
            // that is not an option starts the program's arguments.
            if !a.starts_with('-') {
                options = false;
            }
        }
        if !c.guest.is_empty() {
            c.guest.push(' ');
        }
        c.guest.push_str(a);
    }
    Ok(c)
}

/// Binds the declared devices to the virtio devices found: returns the
/// manifest with each device attached, and the unikernel's command line.
fn bind(raw: &str) -> Result<(Manifest, String), String> {
    let c = parse_cmdline(raw)?;
    let decls: &'static [DeviceDecl] = __MORGANA_DECLS;
    let mut m = Manifest::from_decls(decls)
        .ok_or_else(|| String::from("the program's device declarations are invalid"))?;
    let mut found = dev::discover(&c.mmio);
    let list = || {
        let l: Vec<String> = found_list(&found);
        if l.is_empty() {
            String::from("none")
        } else {
            l.join(", ")
        }
    };
    let declared = || {
        let l: Vec<String> = m
            .devices()
            .map(|(_, e)| {
                alloc::format!(
                    "{} ({})",
                    e.name(),
                    morgana_abi::mft::type_name(e.raw_kind())
                )
            })
            .collect();
        if l.is_empty() {
            String::from("no devices")
        } else {
            l.join(", ")
        }
    };
    // handle -> index of the virtio device bound to it.
    let mut binding: Vec<(usize, usize)> = Vec::new();
    for &(kind, name, value, opt) in &c.opts {
        let Some(h) = m.find_any(name) else {
            return Err(alloc::format!(
                "device '{name}' is not declared by the unikernel (it declares: {})",
                declared()
            ));
        };
        let e = m.entries()[h];
        if e.kind() != Some(kind) {
            return Err(alloc::format!(
                "device '{name}' is declared as {}, not {}",
                morgana_abi::mft::type_name(e.raw_kind()),
                morgana_abi::mft::type_name(kind.raw())
            ));
        }
        if binding.iter().any(|&(bh, _)| bh == h) {
            return Err(alloc::format!("device '{name}' is attached more than once"));
        }
        let idx = value
            .strip_prefix("virtio")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&i| i < found.len())
            .ok_or_else(|| {
                alloc::format!(
                    "{opt}: there is no virtio device '{value}' (found: {})",
                    list()
                )
            })?;
        if found[idx].kind != Some(kind) {
            return Err(alloc::format!(
                "{opt}: virtio{idx} is a {} device, not a {} device",
                found[idx].what,
                if kind == DeviceKind::Net {
                    "net"
                } else {
                    "block"
                }
            ));
        }
        if binding.iter().any(|&(_, bi)| bi == idx) {
            return Err(alloc::format!(
                "{opt}: virtio{idx} is already bound to another device"
            ));
        }
        binding.push((h, idx));
    }
    // A lone declared device of a kind takes the first unbound device of
    // that kind.
    for kind in [DeviceKind::Net, DeviceKind::Block] {
        let of_kind: Vec<usize> = m
            .devices()
            .filter(|(_, e)| e.kind() == Some(kind))
            .map(|(h, _)| h)
            .collect();
        if of_kind.len() != 1 || binding.iter().any(|&(h, _)| h == of_kind[0]) {
            continue;
        }
        if let Some(idx) = (0..found.len())
            .find(|&i| found[i].kind == Some(kind) && !binding.iter().any(|&(_, b)| b == i))
        {
            binding.push((of_kind[0], idx));
        }
    }
    let missing: Vec<String> = m
        .devices()
        .filter(|(h, _)| !binding.iter().any(|&(bh, _)| bh == *h))
        .map(|(_, e)| {
            alloc::format!(
                "{} ({})",
                e.name(),
                morgana_abi::mft::type_name(e.raw_kind())
            )
        })
        .collect();
    if !missing.is_empty() {
        return Err(alloc::format!(
            "declared but not attached: {} (every declared device must be attached; virtio devices found: {})",
            missing.join(", "),
            list()
        ));
    }
    let mut devs: Vec<Option<Bound>> = (0..m.len()).map(|_| None).collect();
    let mut nets = 0u64;
    binding.sort_unstable();
    for (h, idx) in binding {
        let f = &mut found[idx];
        let t = f.transport.take().expect("each device is bound once");
        let name = String::from(m.entries()[h].name());
        let e = &mut m.entries_mut()[h];
        let driver = match f.kind {
            Some(DeviceKind::Net) => {
                let (d, mac) = dev::start_net(t).map_err(|err| {
                    alloc::format!("cannot start virtio{idx} ({}) as '{name}': {err}", f.place)
                })?;
                e.set_net(mac, 1500);
                nets |= 1 << h;
                d
            }
            _ => {
                let (d, capacity, sector) = dev::start_block(t).map_err(|err| {
                    alloc::format!("cannot start virtio{idx} ({}) as '{name}': {err}", f.place)
                })?;
                if !sector.is_power_of_two()
                    || !(512..=32768).contains(&sector)
                    || capacity == 0
                    || capacity % sector != 0
                {
                    return Err(alloc::format!(
                        "block device '{name}' (virtio{idx}): size {capacity} is not a positive multiple of the sector size {sector}"
                    ));
                }
                e.set_block(capacity, sector as u16);
                d
            }
        };
        e.set_attached(true);
        devs[h] = Some(Bound { driver });
    }
    NET_HANDLES.store(nets, Ordering::Relaxed);
    DEVS.with(|d| *d = devs);
    Ok((m, c.guest))
}

fn found_list(found: &[dev::Found]) -> Vec<String> {
    found
        .iter()
        .enumerate()
        .map(|(i, f)| alloc::format!("virtio{i} ({}, {})", f.what, f.place))
        .collect()
}

/// Stops the unikernel before it runs with a one-line error and status 1:
/// on the host channel where there is one (`morgana run` prints it on its
/// standard error), else on the console.
fn fail(msg: &str) -> ! {
    let mut line = String::new();
    let _ = writeln!(line, "morgana: {msg}");
    if hw::has_debugcon() {
        hw::debugcon_write(line.as_bytes());
    } else {
        hw::serial_write(line.as_bytes());
    }
    exit(i32::from(morgana_abi::EXIT_TENDER_ERROR))
}

/// Writes to the console (serial port COM1).
pub fn console_write(buf: &[u8]) {
    hw::serial_write(buf);
}

/// Monotonic time in nanoseconds since boot.
pub fn clock_monotonic() -> u64 {
    let delta = hw::rdtsc().wrapping_sub(TSC_BASE.load(Ordering::Relaxed));
    ((u128::from(delta) * u128::from(TSC_MULT.load(Ordering::Relaxed))) >> 32) as u64
}

/// Wall-clock time in nanoseconds since the Unix epoch (the CMOS clock at
/// boot plus the monotonic clock).
pub fn clock_wall() -> u64 {
    WALL_BASE.load(Ordering::Relaxed) + clock_monotonic()
}

/// The handles of the net devices with a frame waiting, after
/// acknowledging every device's interrupt (so that the next frame raises
/// a new edge).
fn ready() -> u64 {
    DEVS.with(|devs| {
        let mut set = 0;
        for (h, d) in devs.iter_mut().enumerate() {
            if let Some(d) = d {
                d.driver.ack();
                if d.driver.can_recv() {
                    set |= 1 << h;
                }
            }
        }
        set
    })
}

/// Sleeps until the monotonic `deadline` or until a net device has input;
/// returns the set of ready handles. The CPU halts in between, woken by a
/// device interrupt or the local APIC timer.
pub fn yield_until(deadline: u64) -> u64 {
    loop {
        let set = ready();
        let now = clock_monotonic();
        if set != 0 || now >= deadline {
            hw::lapic_timer(0);
            return set;
        }
        let ticks =
            (u128::from(deadline - now) * u128::from(APIC_MULT.load(Ordering::Relaxed))) >> 32;
        hw::lapic_timer(ticks.clamp(1, u128::from(u32::MAX)) as u32);
        hw::halt();
    }
}

fn with_dev<R>(handle: u64, f: impl FnOnce(&mut dev::Driver) -> R) -> Result<R, Solo5Result> {
    DEVS.with(|devs| match devs.get_mut(handle as usize) {
        Some(Some(d)) => Ok(f(&mut d.driver)),
        _ => Err(Solo5Result::Einval),
    })
}

/// Reads one frame; `Err(Again)` when none is waiting.
pub fn net_read(handle: u64, buf: &mut [u8]) -> Result<usize, Solo5Result> {
    if NET_HANDLES.load(Ordering::Relaxed) & (1 << (handle & 63)) == 0 || handle >= 64 {
        return Err(Solo5Result::Einval);
    }
    match with_dev(handle, |d| d.recv(buf))? {
        None => Err(Solo5Result::Again),
        Some(Ok(n)) => Ok(n),
        Some(Err(_)) => Err(Solo5Result::Eunspec),
    }
}

/// Writes one frame.
pub fn net_write(handle: u64, buf: &[u8]) -> Result<(), Solo5Result> {
    if NET_HANDLES.load(Ordering::Relaxed) & (1 << (handle & 63)) == 0 || handle >= 64 {
        return Err(Solo5Result::Einval);
    }
    if buf.len() > 1514 {
        return Err(Solo5Result::Einval);
    }
    with_dev(handle, |d| d.send(buf))?.map_err(|_| Solo5Result::Eunspec)
}

/// Reads one block at byte `offset`.
pub fn block_read(handle: u64, offset: u64, buf: &mut [u8]) -> Result<(), Solo5Result> {
    super::bare::block_check(handle, offset, buf.len())?;
    with_dev(handle, |d| d.read(offset, buf))?.map_err(|_| Solo5Result::Eunspec)
}

/// Writes one block at byte `offset`.
pub fn block_write(handle: u64, offset: u64, buf: &[u8]) -> Result<(), Solo5Result> {
    super::bare::block_check(handle, offset, buf.len())?;
    with_dev(handle, |d| d.write(offset, buf))?.map_err(|_| Solo5Result::Eunspec)
}

/// Ends the unikernel with `status` (see [`hw::power_off`]).
pub fn exit(status: i32) -> ! {
    hw::power_off(status as u8)
}

/// The runtime has a single thread on this platform.
#[inline(always)]
pub fn assert_runtime_thread() {}
