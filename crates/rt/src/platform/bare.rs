//! What the bare platforms (hvt, spt, virtio) share: the heap, the panic
//! handler, a stack canary and (hvt, spt) the Solo5 `_start` entry point.

#[cfg(not(morgana_platform = "virtio"))]
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use talc::TalcLock;
use talc::source::Manual;

// The entry point, `_start(boot_info)`, per the Solo5 ABI: rdi holds the
// boot info address and rsp = top of memory - 8. Zero the BSS (Solo5's
// loader may skip a segment without file bytes), realign the stack for a
// call, and enter Rust.
#[cfg(not(morgana_platform = "virtio"))]
global_asm!(
    ".section .text._start,\"ax\"",
    ".global _start",
    "_start:",
    "    mov r12, rdi",
    "    lea rdi, [rip + __morgana_bss_start]",
    "    lea rcx, [rip + __morgana_bss_end]",
    "    sub rcx, rdi",
    "    xor eax, eax",
    "    rep stosb",
    "    mov rdi, r12",
    "    xor ebp, ebp",
    "    and rsp, -16",
    "    call {start}",
    "    ud2",
    start = sym super::imp::start,
);

unsafe extern "C" {
    static __morgana_image_end: u8;
}

/// Bytes of memory reserved for the stack, at the top of guest memory.
pub const STACK_SIZE: u64 = 1 << 20;

const CANARY: u64 = 0x6d6f_7267_616e_6121;
const CANARY_WORDS: usize = 8;
static CANARY_AT: AtomicU64 = AtomicU64::new(0);

#[global_allocator]
static HEAP: TalcLock<spinning_top::RawSpinlock, Manual> = TalcLock::new(Manual);
static HEAP_SIZE: AtomicU64 = AtomicU64::new(0);

/// Gives the heap every byte from the end of the image (`kernel_end`) to
/// the bottom of the stack, and plants a canary there.
pub fn init_heap(kernel_end: u64, mem_top: u64) {
    let image_end = (&raw const __morgana_image_end) as u64;
    let start = (kernel_end.max(image_end) + 0xfff) & !0xfff;
    let end = mem_top.saturating_sub(STACK_SIZE);
    if end <= start + (1 << 20) {
        super::console_write(b"morgana: not enough memory for a heap (use a larger --mem)\n");
        super::abort();
    }
    let canary = end as *mut u64;
    for i in 0..CANARY_WORDS {
        // SAFETY: [end, end + 64) is the bottom of the stack region, guest
        // memory that nothing else uses yet.
        unsafe { canary.add(i).write_volatile(CANARY) };
    }
    CANARY_AT.store(end, Ordering::Relaxed);
    let size = end - start;
    // SAFETY: [start, end) is guest memory that nothing else uses: above
    // the image, below the stack.
    unsafe { HEAP.lock().claim(start as *mut u8, size as usize) };
    HEAP_SIZE.store(size, Ordering::Relaxed);
}

/// Heap statistics: `(heap size, bytes allocated)`.
pub fn heap_stats() -> (u64, u64) {
    let allocated = HEAP.lock().counters().allocated_bytes as u64;
    (HEAP_SIZE.load(Ordering::Relaxed), allocated)
}

/// Capacity in bytes of each block device handle (0: not a block device).
static CAPACITY: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
/// Sector size of each block device handle.
static SECTOR: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

/// Records the geometry of the attached block devices, for
/// [`block_check`].
pub fn record_block_devices(mft: &morgana_abi::mft::ManifestView<'_>) {
    for (h, e) in mft.devices() {
        if e.attached() && e.kind() == Some(morgana_abi::mft::DeviceKind::Block) {
            let (cap, ss) = e.block();
            CAPACITY[h].store(cap, Ordering::Relaxed);
            SECTOR[h].store(u64::from(ss), Ordering::Relaxed);
        }
    }
}

/// Solo5's guest-side rule for block I/O: exactly one sector, at a
/// sector-aligned offset, within the device; anything else is `EINVAL`
/// before the tender is asked (Solo5's hvt tender checks only the range,
/// and spt's seccomp filter would kill the process).
pub fn block_check(handle: u64, offset: u64, len: usize) -> Result<(), morgana_abi::Solo5Result> {
    let einval = Err(morgana_abi::Solo5Result::Einval);
    let Some(h) = usize::try_from(handle).ok().filter(|&h| h < 64) else {
        return einval;
    };
    let (cap, ss) = (
        CAPACITY[h].load(Ordering::Relaxed),
        SECTOR[h].load(Ordering::Relaxed),
    );
    if !morgana_abi::block_request_ok(offset, len as u64, cap, ss) {
        return einval;
    }

    Ok(())
}

/// Whether the stack has grown into the canary below it.
pub fn stack_overflowed() -> bool {
    let at = CANARY_AT.load(Ordering::Relaxed);
    if at == 0 {
        return false;
    }
    let canary = at as *const u64;
    // SAFETY: the canary was written by `init_heap` at this address.
    (0..CANARY_WORDS).any(|i| unsafe { canary.add(i).read_volatile() } != CANARY)
}

/// Aborts if the stack has grown into the canary below it.
pub fn check_stack() {
    if stack_overflowed() {
        super::console_write(b"morgana: stack overflow (the stack grew into the heap)\n");
        super::abort();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    static PANICKING: AtomicBool = AtomicBool::new(false);
    if PANICKING.swap(true, Ordering::Relaxed) {
        super::console_write(b"morgana: panic while panicking\n");
        super::abort();
    }
    if crate::trace::enabled() {
        let mut p = crate::trace::Prefix::new();
        let _ = write!(p, "{}", info.message());
        crate::trace::text(morgana_abi::trace::Kind::Panic, 0, p.bytes());
    }
    let mut out = crate::console::Buffered::new();
    let _ = write!(out, "morgana: panic: {}", info.message());
    if let Some(loc) = info.location() {
        let _ = write!(out, " at {}:{}:{}", loc.file(), loc.line(), loc.column());
    }
    let _ = writeln!(out);
    if stack_overflowed() {
        let _ = writeln!(out, "morgana: the stack overflowed (it grew into the heap)");
    }
    out.flush();
    super::abort()
}
