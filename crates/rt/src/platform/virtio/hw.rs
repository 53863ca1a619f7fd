//! The PC hardware a standard VMM emulates: port I/O, the serial port
//! (console), the PIT (to calibrate the TSC and the local APIC timer), the
//! CMOS real-time clock (wall clock), the local APIC (timer, end of
//! interrupt), the I/O APIC (device interrupts), QEMU's debug devices.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Reads a byte from I/O port `port`.
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port input has no memory effects; the ports this module uses
    // belong to emulated PC devices (or read as 0xff when absent).
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes a byte to I/O port `port`.
pub fn outb(port: u16, v: u8) {
    // SAFETY: as for `inb`: emulated PC device ports, no memory effects.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a 32-bit word from I/O port `port`.
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for `inb` (PCI configuration ports).
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes a 32-bit word to I/O port `port`.
pub fn outl(port: u16, v: u32) {
    // SAFETY: as for `inb` (PCI configuration ports).
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    };
}

/// The TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

// ---- serial console (COM1, 16550) ----

const COM1: u16 = 0x3f8;

/// Sets up COM1: no interrupts, 8 data bits, no parity, one stop bit,
/// FIFOs on (the VMM ignores the speed).
pub fn serial_init() {
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0xc7);
}

/// Writes `buf` to COM1, waiting for the transmitter before each byte
/// (an emulated UART is always ready, so this costs one read).
pub fn serial_write(buf: &[u8]) {
    for &b in buf {
        let mut spins = 0u32;
        while inb(COM1 + 5) & 0x20 == 0 && spins < 100_000 {
            spins += 1;
        }
        outb(COM1, b);
    }
}

// ---- QEMU's debug devices ----

/// The port of QEMU's `isa-debug-exit` (`iobase=0x501`): writing `s`
/// ends QEMU with status `(s << 1) | 1`.
pub const DEBUG_EXIT: u16 = 0x501;
/// The port of QEMU's `isa-debugcon` (`iobase=0xe9`): the host channel
/// that `morgana run` reads (errors before boot, the exact exit status).
pub const DEBUGCON: u16 = 0xe9;

static HAS_DEBUGCON: AtomicBool = AtomicBool::new(false);
static HAS_DEBUG_EXIT: AtomicBool = AtomicBool::new(false);

/// Looks for QEMU's debug devices: `isa-debugcon` reads back 0xe9, and
/// `isa-debug-exit` reads as 0; a port with no device reads as 0xff.
pub fn probe_debug_devices() {
    HAS_DEBUGCON.store(inb(DEBUGCON) == 0xe9, Ordering::Relaxed);
    HAS_DEBUG_EXIT.store(inb(DEBUG_EXIT) == 0, Ordering::Relaxed);
}

/// Whether the host channel (`isa-debugcon`) is there.
pub fn has_debugcon() -> bool {
    HAS_DEBUGCON.load(Ordering::Relaxed)
}

/// Writes `buf` to the host channel.
pub fn debugcon_write(buf: &[u8]) {
    for &b in buf {
        outb(DEBUGCON, b);
    }
}

/// Powers the machine off with `status`: the exact status on the host
/// channel (a NUL then the status byte: `isa-debug-exit` loses bit 7),
/// then `isa-debug-exit`; without it, ACPI soft-off on the PM1a control
/// ports of QEMU's q35 and pc machines, then a keyboard-controller reset
/// (Firecracker's way to stop a guest), then a triple fault (QEMU with
/// `-no-reboot` exits).
pub fn power_off(status: u8) -> ! {
    if has_debugcon() {
        debugcon_write(&[0, status]);
    }
    if HAS_DEBUG_EXIT.load(Ordering::Relaxed) {
        outb(DEBUG_EXIT, status);
    }
    for port in [0x604u16, 0xb004] {
        // SAFETY: writing SLP_EN (typ 0: soft-off) to a PM1a control port;
        // where there is none the write is dropped.
        unsafe { asm!("out dx, ax", in("dx") port, in("ax") 0x2000u16, options(nomem, nostack)) };
    }
    outb(0x64, 0xfe);
    let null = x86_64::structures::DescriptorTablePointer {
        limit: 0,
        base: x86_64::VirtAddr::new(0),
    };
    // SAFETY: an empty IDT makes the next exception a triple fault, which
    // resets (or, with -no-reboot, stops) the machine: nothing returns.
    unsafe {
        x86_64::instructions::tables::lidt(&null);
        asm!("int3", options(nomem, nostack));
    }
    loop {
        x86_64::instructions::hlt();
    }
}

// ---- PIT, TSC and local APIC timer calibration ----

const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 10 ms of PIT ticks.
const CAL_TICKS: u64 = 11_932;

/// Measures the TSC and local APIC timer (divide by 1) frequencies in Hz
/// against PIT channel 0, counting down from 0xffff in mode 0, read back
/// with latch commands until `CAL_TICKS` have passed (only ports 0x40 and
/// 0x43: QEMU's microvm has a PIT but no port 0x61 to watch channel 2's
/// output). `None` if the PIT does not count.
pub fn calibrate() -> Option<(u64, u64)> {
    let count = || {
        outb(0x43, 0x00); // latch channel 0
        let lo = inb(0x40);
        let hi = inb(0x40);
        u64::from(u16::from_le_bytes([lo, hi]))
    };
    outb(0x43, 0x30); // channel 0, lobyte/hibyte, mode 0, binary
    outb(0x40, 0xff);
    outb(0x40, 0xff);
    lapic_write(LAPIC_TIMER_DIV, 0xb); // divide by 1
    lapic_write(LAPIC_LVT_TIMER, 1 << 16); // masked
    let start = count();
    lapic_write(LAPIC_TIMER_INIT, u32::MAX);
    let a0 = lapic_read(LAPIC_TIMER_CUR);
    let t0 = rdtsc();
    let mut spins = 0u64;
    let mut elapsed;
    loop {
        elapsed = start.saturating_sub(count());
        if elapsed >= CAL_TICKS {
            break;
        }
        spins += 1;
        if spins > 2_000_000 {
            lapic_write(LAPIC_TIMER_INIT, 0);
            lapic_write(LAPIC_LVT_TIMER, u32::from(TIMER_VECTOR));
            return None;
        }
    }
    let t1 = rdtsc();
    let a1 = lapic_read(LAPIC_TIMER_CUR);
    lapic_write(LAPIC_TIMER_INIT, 0);
    lapic_write(LAPIC_LVT_TIMER, u32::from(TIMER_VECTOR)); // one-shot
    let tsc = (t1 - t0) * PIT_HZ / elapsed;
    let apic = u64::from(a0.wrapping_sub(a1)) * PIT_HZ / elapsed;
    Some((tsc, apic))
}

// ---- CMOS real-time clock ----

fn cmos(reg: u8) -> u8 {
    outb(0x70, reg);
    inb(0x71)
}

/// The CMOS clock's time in seconds since the Unix epoch (UTC), or `None`
/// without a plausible clock.
pub fn rtc_seconds() -> Option<u64> {
    let read = || {
        let mut spins = 0;
        while cmos(0x0a) & 0x80 != 0 && spins < 1_000_000 {
            spins += 1;
        }
        [
            cmos(0x00),
            cmos(0x02),
            cmos(0x04),
            cmos(0x07),
            cmos(0x08),
            cmos(0x09),
            cmos(0x32),
        ]
    };
    // Read until two reads agree (an update may fall in between).
    let mut r = read();
    for _ in 0..5 {
        let again = read();
        if again == r {
            break;
        }
        r = again;
    }
    let b = cmos(0x0b);
    let bcd = |v: u8| {
        if b & 0x04 == 0 {
            (v & 0x0f) + (v >> 4) * 10
        } else {
            v
        }
    };
    let sec = u64::from(bcd(r[0]));
    let min = u64::from(bcd(r[1]));
    let mut hour = u64::from(bcd(r[2] & 0x7f));
    if b & 0x02 == 0 && r[2] & 0x80 != 0 {
        hour = (hour % 12) + 12; // 12-hour clock, PM
    }
    let day = u64::from(bcd(r[3]));
    let month = u64::from(bcd(r[4]));
    let century = match bcd(r[6]) {
        c @ 19..=30 => u64::from(c),
        _ => 20,
    };
    let year = century * 100 + u64::from(bcd(r[5]));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

// ---- local APIC ----

const LAPIC_BASE: u64 = 0xfee0_0000;
const LAPIC_EOI: u64 = 0xb0;
const LAPIC_SVR: u64 = 0xf0;
const LAPIC_LVT_TIMER: u64 = 0x320;
const LAPIC_TIMER_INIT: u64 = 0x380;
const LAPIC_TIMER_CUR: u64 = 0x390;
const LAPIC_TIMER_DIV: u64 = 0x3e0;

/// The vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0x20;
/// The first vector of device interrupts (I/O APIC pin `n` gets
/// `IRQ_VECTOR + n`).
pub const IRQ_VECTOR: u8 = 0x21;
/// The spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0x3f;

fn lapic_read(reg: u64) -> u32 {
    // SAFETY: the local APIC's registers are at its default base, identity
    // mapped; a read has no effect on memory the program uses.
    unsafe { ((LAPIC_BASE + reg) as *const u32).read_volatile() }
}

fn lapic_write(reg: u64, v: u32) {
    // SAFETY: as for `lapic_read`.
    unsafe { ((LAPIC_BASE + reg) as *mut u32).write_volatile(v) }
}

/// Enables the local APIC (in xAPIC mode, at its default base).
pub fn lapic_init() {
    const IA32_APIC_BASE: u32 = 0x1b;
    let mut msr = x86_64::registers::model_specific::Msr::new(IA32_APIC_BASE);
    // SAFETY: reading and setting the global-enable bit of the APIC base
    // MSR, which every x86_64 CPU has; the base stays the default.
    unsafe {
        let v = msr.read();
        if v & (1 << 11) == 0 {
            msr.write(v | (1 << 11));
        }
    }
    lapic_write(LAPIC_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    lapic_write(LAPIC_TIMER_DIV, 0xb);
    lapic_write(LAPIC_LVT_TIMER, u32::from(TIMER_VECTOR)); // one-shot
}

/// Arms the one-shot timer for `ticks` (0 stops it).
pub fn lapic_timer(ticks: u32) {
    lapic_write(LAPIC_TIMER_INIT, ticks);
}

// ---- legacy PIC and I/O APIC ----

/// Masks every line of both 8259 PICs (the I/O APIC delivers instead).
pub fn pic_disable() {
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

const IOAPIC_BASE: u64 = 0xfec0_0000;

fn ioapic_write(reg: u32, v: u32) {
    // SAFETY: the I/O APIC's index and data registers at its default base,
    // identity mapped.
    unsafe {
        (IOAPIC_BASE as *mut u32).write_volatile(reg);
        ((IOAPIC_BASE + 0x10) as *mut u32).write_volatile(v);
    }
}

fn ioapic_read(reg: u32) -> u32 {
    // SAFETY: as for `ioapic_write`.
    unsafe {
        (IOAPIC_BASE as *mut u32).write_volatile(reg);
        ((IOAPIC_BASE + 0x10) as *const u32).read_volatile()
    }
}

/// Number of I/O APIC pins (0 if there is no I/O APIC).
pub fn ioapic_pins() -> u32 {
    let v = ioapic_read(1);
    if v == u32::MAX {
        return 0;
    }
    ((v >> 16) & 0xff) + 1
}

/// Routes I/O APIC pin `pin` to the boot CPU as vector `IRQ_VECTOR + pin`,
/// edge-triggered, active high. Edge triggering suits the wake-up rule:
/// the platform acknowledges every device before it checks the queues and
/// halts, so a level that stays high never re-fires.
pub fn ioapic_route(pin: u32) {
    if pin >= ioapic_pins() || pin >= 30 {
        return;
    }
    ioapic_write(0x10 + 2 * pin + 1, 0); // destination: APIC id 0
    ioapic_write(0x10 + 2 * pin, u32::from(IRQ_VECTOR) + pin);
}

static ENABLED: AtomicU64 = AtomicU64::new(0);

/// Routes `pin` once.
pub fn enable_irq(pin: u32) {
    if pin < 64 && ENABLED.fetch_or(1 << pin, Ordering::Relaxed) & (1 << pin) == 0 {
        ioapic_route(pin);
    }
}

// The interrupt handler of every vector from 32 on: an end of interrupt
// to the local APIC, nothing else (the wake-up is the return from `hlt`).
core::arch::global_asm!(
    ".section .text.morgana_irq,\"ax\"",
    ".global morgana_irq",
    "morgana_irq:",
    "    push rax",
    "    mov rax, {eoi}",
    "    mov dword ptr [rax], 0",
    "    pop rax",
    "    iretq",
    ".global morgana_irq_spurious",
    "morgana_irq_spurious:",
    "    iretq",
    eoi = const LAPIC_BASE + LAPIC_EOI,
);

unsafe extern "C" {
    /// The interrupt stub (EOI and return).
    pub fn morgana_irq();
    /// The spurious-interrupt stub (return).
    pub fn morgana_irq_spurious();
}

/// Waits for the next interrupt with interrupts enabled only while halted
/// (`sti` delays them by one instruction, so none is lost between the
/// check the caller made and the `hlt`).
pub fn halt() {
    // SAFETY: interrupts are enabled just for the halt; every vector they
    // can raise has a gate (the stubs above), and they are off again after.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}
