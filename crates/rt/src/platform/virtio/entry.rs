//! The PVH entry: the Xen `PHYS32_ENTRY` note that tells a VMM (QEMU's
//! `-kernel`, Firecracker, cloud-hypervisor) where to start the image, and
//! the 32-bit code there that zeroes the BSS, builds identity-mapped page
//! tables for the first 4 GiB, enters long mode and calls
//! [`super::start`] with the address of the `hvm_start_info`.
//!
//! PVH machine state at entry: 32-bit protected mode, paging off, flat code
//! and data segments, interrupts off, `ebx` = start info, no stack.
//!
//! Page tables: 2 MiB pages everywhere except the first 16 MiB, which have
//! 4 KiB pages so that the image's text and read-only data can be mapped
//! read-only (CR0.WP makes that bind the kernel too). Pages below 0x10000
//! are unmapped by [`super::start`] once the boot data there was copied.

use core::arch::global_asm;

/// Number of 4 KiB page tables (each maps 2 MiB) at the bottom of memory.
pub const SMALL_PTS: usize = 8;

// XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen", an 8-byte descriptor (QEMU
// reads a native word) holding the physical address of the 32-bit entry.
global_asm!(
    ".pushsection .note.Xen,\"a\",@note",
    ".balign 4",
    ".long 4",
    ".long 8",
    ".long 18",
    ".asciz \"Xen\"",
    ".balign 4",
    ".quad _morgana_pvh_start",
    ".popsection",
);

global_asm!(
    ".section .text._pvh_start,\"ax\"",
    ".code32",
    ".global _morgana_pvh_start",
    "_morgana_pvh_start:",
    "    cli",
    "    cld",
    "    mov esi, ebx",
    // Zero the BSS (the page tables and the boot stack are in it).
    "    mov edi, offset __morgana_bss_start",
    "    mov ecx, offset __morgana_bss_end",
    "    sub ecx, edi",
    "    xor eax, eax",
    "    rep stosb",
    // PML4[0] -> PDPT.
    "    mov eax, offset {pdpt}",
    "    or eax, 3",
    "    mov [{pml4}], eax",
    // PDPT[0..4] -> the four page directories.
    "    mov edi, offset {pdpt}",
    "    mov eax, offset {pd}",
    "    or eax, 3",
    "    mov ecx, 4",
    "2:  mov [edi], eax",
    "    add eax, 4096",
    "    add edi, 8",
    "    dec ecx",
    "    jnz 2b",
    // PD entries: 2 MiB pages, present, writable (0x83), for 4 GiB.
    "    mov edi, offset {pd}",
    "    mov eax, 0x83",
    "    mov ecx, 2048",
    "3:  mov [edi], eax",
    "    add eax, 0x200000",
    "    add edi, 8",
    "    dec ecx",
    "    jnz 3b",
    // The first SMALL_PTS directory entries point to 4 KiB page tables.
    "    mov edi, offset {pd}",
    "    mov eax, offset {pt}",
    "    or eax, 3",
    "    mov ecx, {small}",
    "4:  mov [edi], eax",
    "    add eax, 4096",
    "    add edi, 8",
    "    dec ecx",
    "    jnz 4b",
    // 4 KiB pages: the image's text and rodata present read-only (1),
    // everything else present and writable (3).
    "    mov edi, offset {pt}",
    "    xor eax, eax",
    "    mov ecx, {small} * 512",
    "5:  mov edx, eax",
    "    or edx, 3",
    "    cmp eax, offset __morgana_image_start",
    "    jb 6f",
    "    cmp eax, offset __morgana_rodata_end",
    "    jae 6f",
    "    and edx, -3",
    "6:  mov [edi], edx",
    "    add eax, 4096",
    "    add edi, 8",
    "    dec ecx",
    "    jnz 5b",
    // CR4.PAE, CR3, EFER.LME, then CR0.PG|WP|PE.
    "    mov eax, cr4",
    "    or eax, 0x20",
    "    mov cr4, eax",
    "    mov eax, offset {pml4}",
    "    mov cr3, eax",
    "    mov ecx, 0xc0000080",
    "    rdmsr",
    "    or eax, 0x100",
    "    wrmsr",
    "    mov eax, cr0",
    "    or eax, 0x80010001",
    "    mov cr0, eax",
    "    lgdt [{gdtr}]",
    // ljmp 0x8:_morgana_pvh_long (ptr16:32), spelled out.
    "    .byte 0xea",
    "    .long _morgana_pvh_long",
    "    .word 0x8",
    ".code64",
    "_morgana_pvh_long:",
    "    mov ax, 0x10",
    "    mov ds, ax",
    "    mov es, ax",
    "    mov ss, ax",
    "    xor eax, eax",
    "    mov fs, ax",
    "    mov gs, ax",
    "    lea rsp, [rip + {stack} + {stack_size}]",
    "    mov edi, esi",
    "    xor ebp, ebp",
    "    call {start}",
    "    ud2",
    pml4 = sym PML4,
    pdpt = sym PDPT,
    pd = sym PD,
    pt = sym PT,
    small = const SMALL_PTS,
    gdtr = sym GDTR,
    stack = sym BOOT_STACK,
    stack_size = const BOOT_STACK_SIZE,
    start = sym super::start,
);

/// A page-aligned table of 512 entries.
#[repr(C, align(4096))]
pub struct Table(pub [u64; 512]);

/// The top-level page table.
#[unsafe(no_mangle)]
pub static mut PML4: Table = Table([0; 512]);
static mut PDPT: Table = Table([0; 512]);
static mut PD: [Table; 4] = [const { Table([0; 512]) }; 4];
/// The 4 KiB page tables of the first `2 * SMALL_PTS` MiB.
pub static mut PT: [Table; SMALL_PTS] = [const { Table([0; 512]) }; SMALL_PTS];

/// Bytes of the boot stack (used until [`super::start`] moves to the top
/// of memory).
const BOOT_STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack([u8; BOOT_STACK_SIZE]);
static mut BOOT_STACK: Stack = Stack([0; BOOT_STACK_SIZE]);

/// The boot GDT: null, 64-bit code (0x8), data (0x10). The accessed bits
/// are set: the CPU would write them, and the table is read-only.
#[repr(C, align(16))]
struct Gdt([u64; 3]);
static GDT: Gdt = Gdt([0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff]);

/// The operand of `lgdt` in 32-bit mode: a 16-bit limit, a 32-bit base.
#[repr(C, packed)]
struct Gdtr {
    limit: u16,
    base: &'static Gdt,
}
static GDTR: Gdtr = Gdtr {
    limit: 23,
    base: &GDT,
};
