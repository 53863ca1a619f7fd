//! x86_64 CPU set-up of the hvt and virtio guests: its own GDT (with a TSS
//! whose IST stack takes double faults) and an IDT whose handlers report the
//! trap (vector, error code, rip, cr2) on the console and abort with status
//! 255. On virtio, vectors 32 to 63 are the platform's interrupts.

use core::arch::global_asm;
use core::fmt::Write;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::{lidt, load_tss};
use x86_64::registers::control::Cr2;
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// Register state saved by the trap stubs, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rdi: u64,
    rsi: u64,
    rbp: u64,
    rbx: u64,
    rdx: u64,
    rcx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

macro_rules! trap_stubs {
    ($($vec:literal $err:ident),* $(,)?) => {
        $(trap_stub!($vec, $err);)*
        const STUBS: [unsafe extern "C" fn(); 32] = [$(paste_stub!($vec)),*];
    };
}

macro_rules! trap_stub {
    ($vec:literal, code) => {
        global_asm!(concat!(
            ".section .text.morgana_trap_",
            $vec,
            ",\"ax\"\n",
            ".global morgana_trap_",
            $vec,
            "\n",
            "morgana_trap_",
            $vec,
            ":\n",
            "    push ",
            $vec,
            "\n",
            "    jmp morgana_trap_common\n",
        ));
    };
    ($vec:literal, none) => {
        global_asm!(concat!(
            ".section .text.morgana_trap_",
            $vec,
            ",\"ax\"\n",
            ".global morgana_trap_",
            $vec,
            "\n",
            "morgana_trap_",
            $vec,
            ":\n",
            "    push 0\n",
            "    push ",
            $vec,
            "\n",
            "    jmp morgana_trap_common\n",
        ));
    };
}

macro_rules! paste_stub {
    ($vec:literal) => {{
        unsafe extern "C" {
            #[link_name = concat!("morgana_trap_", $vec)]
            fn stub();
        }
        stub
    }};
}

global_asm!(
    ".section .text.morgana_trap_common,\"ax\"",
    ".global morgana_trap_common",
    "morgana_trap_common:",
    "    push rax",
    "    push rcx",
    "    push rdx",
    "    push rbx",
    "    push rbp",
    "    push rsi",
    "    push rdi",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov rdi, rsp",
    "    and rsp, -16",
    "    call {handler}",
    "    ud2",
    handler = sym trap_handler,
);

trap_stubs!(
    0 none, 1 none, 2 none, 3 none, 4 none, 5 none, 6 none, 7 none,
    8 code, 9 none, 10 code, 11 code, 12 code, 13 code, 14 code, 15 none,
    16 none, 17 code, 18 none, 19 none, 20 none, 21 code, 22 none, 23 none,
    24 none, 25 none, 26 none, 27 none, 28 none, 29 code, 30 code, 31 none,
);

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 floating point",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating point",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

extern "C" fn trap_handler(f: &TrapFrame) -> ! {
    let mut out = crate::console::Buffered::new();
    let name = NAMES.get(f.vector as usize).copied().unwrap_or("unknown");
    let _ = write!(
        out,
        "morgana: trap: {name} (vector {}), error code {:#x}, rip={:#x}, rsp={:#x}, rflags={:#x}",
        f.vector, f.error_code, f.rip, f.rsp, f.rflags
    );
    if f.vector == 14 {
        let cr2 = Cr2::read_raw();
        let _ = write!(
            out,
            ", cr2={cr2:#x} ({} of a {} page)",
            if f.error_code & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if f.error_code & 1 != 0 {
                "present"
            } else {
                "not-present"
            }
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "morgana: trap: rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x}",
        f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp
    );
    if super::bare::stack_overflowed() {
        let _ = writeln!(out, "morgana: the stack overflowed (it grew into the heap)");
    }
    out.flush();
    super::abort()
}

const IST_STACK_SIZE: usize = 16 * 1024;

/// Exceptions only on hvt: interrupts stay disabled, so vectors 32 and up
/// never fire, and a 32-entry IDT (512 bytes) is all the CPU needs. Building
/// the 4 KiB, 256-entry table of the `x86_64` crate costs about 3 ms of boot
/// time on a hypervisor that emulates guest instructions.
#[cfg(not(morgana_platform = "virtio"))]
const IDT_ENTRIES: usize = 32;
/// On virtio, 32 more for the local APIC timer and device interrupts.
#[cfg(morgana_platform = "virtio")]
const IDT_ENTRIES: usize = 64;

/// An interrupt gate for `handler` (present, DPL 0, 64-bit), as the two
/// quadwords of its 16-byte descriptor.
fn gate(handler: u64, code: SegmentSelector, ist: u8) -> [u64; 2] {
    let low = (handler & 0xffff)
        | (u64::from(code.0) << 16)
        | (u64::from(ist) << 32)
        | (0x8e << 40)
        | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// Loads the guest's own GDT, TSS and IDT. Called once at boot, right
/// after the heap is set up (the tables live on it, leaked: they must stay
/// valid forever).
pub fn init() {
    use alloc::boxed::Box;
    // A stack needs no initial contents.
    let ist: &'static mut [core::mem::MaybeUninit<u64>] =
        Box::leak(Box::new_uninit_slice(IST_STACK_SIZE / 8));
    let top = ist.as_ptr() as u64 + IST_STACK_SIZE as u64;
    let tss: &'static mut TaskStateSegment = Box::leak(Box::new(TaskStateSegment::new()));
    tss.interrupt_stack_table[0] = VirtAddr::new(top & !0xf);
    let gdt: &'static mut GlobalDescriptorTable = Box::leak(Box::new(GlobalDescriptorTable::new()));
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = gdt;
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose code and data
    // descriptors are the 64-bit kernel ones the CPU already runs with.
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_sel);
    }
    let mut idt = [[0u64; 2]; IDT_ENTRIES];
    for (vec, stub) in STUBS.iter().enumerate() {
        // Double faults switch to the IST stack: the regular one may be
        // what overflowed.
        idt[vec] = gate(*stub as usize as u64, code, if vec == 8 { 1 } else { 0 });
    }
    #[cfg(morgana_platform = "virtio")]
    for (vec, g) in idt.iter_mut().enumerate().skip(32) {
        use super::virtio::hw;
        let stub = if vec == usize::from(hw::SPURIOUS_VECTOR) {
            hw::morgana_irq_spurious as *const () as usize
        } else {
            hw::morgana_irq as *const () as usize
        };
        *g = gate(stub as u64, code, 0);
    }
    let idt: &'static [[u64; 2]; IDT_ENTRIES] = Box::leak(Box::new(idt));
    let ptr = DescriptorTablePointer {
        limit: (IDT_ENTRIES * 16 - 1) as u16,
        base: VirtAddr::new(idt.as_ptr() as u64),
    };
    // SAFETY: `idt` is a valid table of interrupt gates that lives
    // forever; each exception gate points to a stub that saves the
    // registers and calls the trap handler, which never returns; each
    // interrupt gate (virtio) to a stub that preserves every register.
    unsafe { lidt(&ptr) };
}
