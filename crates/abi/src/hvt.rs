//! The hvt ABI (version 2) on x86_64: guest memory layout, initial CPU
//! state, boot information and hypercalls.
//!
//! A hypercall is `out dx, eax` with `dx = 0x500 + number` and `eax` the low
//! 32 bits of the guest-physical address of the argument structure. All
//! structures are `repr(C)`; their sizes and field offsets are pinned by the
//! tests below, and tenders access guest copies through the `*_OFF`
//! constants only (never by casting guest memory).

/// ABI version of the hvt target.
pub const ABI_VERSION: u32 = 2;

/// I/O port base for hypercalls.
pub const HYPERCALL_PIO_BASE: u16 = 0x500;

/// I/O port the guest writes to kick the ring I/O thread (ring I/O only).
pub const RING_KICK_PIO: u16 = 0x600;

/// Guest-physical address of [`BootInfo`].
pub const BOOT_INFO_BASE: u64 = 0x1_0000;

/// Bytes of guest memory a halt cookie may point to.
pub const HALT_COOKIE_MAX: usize = 512;

/// `host_features` bit: the tender offers ring I/O.
pub const FEATURE_RING_IO: u32 = 1;

/// Hypercall numbers (`enum hvt_hypercall`).
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// Read the host's wall clock ([`HcWalltime`]).
    Walltime = 1,
    /// Write to the console ([`HcPuts`]).
    Puts = 2,
    /// Wait for network input or a timeout ([`HcPoll`]).
    Poll = 3,
    /// Write one block ([`HcBlockIo`]).
    BlockWrite = 4,
    /// Read one block ([`HcBlockIo`]).
    BlockRead = 5,
    /// Send one frame ([`HcNetIo`]).
    NetWrite = 6,
    /// Receive one frame ([`HcNetIo`]).
    NetRead = 7,
    /// Stop the guest ([`HcHalt`]).
    Halt = 8,
}

impl Hypercall {
    /// Number of hypercall ports, starting at [`HYPERCALL_PIO_BASE`]
    /// (`HVT_HYPERCALL_MAX`, port 0x500 itself being reserved).
    pub const MAX: u16 = 9;

    /// Decodes a hypercall from the I/O port the guest wrote to.
    pub const fn from_port(port: u16) -> Option<Self> {
        if port < HYPERCALL_PIO_BASE {
            return None;
        }
        Some(match port - HYPERCALL_PIO_BASE {
            1 => Self::Walltime,
            2 => Self::Puts,
            3 => Self::Poll,
            4 => Self::BlockWrite,
            5 => Self::BlockRead,
            6 => Self::NetWrite,
            7 => Self::NetRead,
            8 => Self::Halt,
            _ => return None,
        })
    }

    /// The I/O port of this hypercall.
    pub const fn port(self) -> u16 {
        HYPERCALL_PIO_BASE + self as u16
    }
}

/// Boot information at [`BOOT_INFO_BASE`] (`struct hvt_boot_info`); a
/// pointer to it is the only argument of the guest's `_start`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// Guest memory size in bytes.
    pub mem_size: u64,
    /// End of the loaded image (highest segment end, page aligned).
    pub kernel_end: u64,
    /// TSC frequency in Hz.
    pub cpu_cycle_freq: u64,
    /// Guest address of the NUL-terminated command line.
    pub cmdline: u64,
    /// Guest address of the manifest copy.
    pub mft: u64,
    /// Features the tender offers ([`FEATURE_RING_IO`]).
    pub host_features: u32,
    /// Features the guest accepted.
    pub guest_features: u32,
    /// Guest address of the network ring, 0 if none.
    pub net_ring: u64,
}

impl BootInfo {
    /// Offset of `mem_size`.
    pub const MEM_SIZE_OFF: usize = 0;
    /// Offset of `kernel_end`.
    pub const KERNEL_END_OFF: usize = 8;
    /// Offset of `cpu_cycle_freq`.
    pub const CPU_CYCLE_FREQ_OFF: usize = 16;
    /// Offset of `cmdline`.
    pub const CMDLINE_OFF: usize = 24;
    /// Offset of `mft`.
    pub const MFT_OFF: usize = 32;
    /// Offset of `host_features`.
    pub const HOST_FEATURES_OFF: usize = 40;
    /// Offset of `guest_features`.
    pub const GUEST_FEATURES_OFF: usize = 44;
    /// Offset of `net_ring`.
    pub const NET_RING_OFF: usize = 48;
    /// Size of the structure.
    pub const SIZE: usize = 56;

    /// The structure's bytes, as a tender writes them into guest memory.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.mem_size.to_le_bytes());
        b[8..16].copy_from_slice(&self.kernel_end.to_le_bytes());
        b[16..24].copy_from_slice(&self.cpu_cycle_freq.to_le_bytes());
        b[24..32].copy_from_slice(&self.cmdline.to_le_bytes());
        b[32..40].copy_from_slice(&self.mft.to_le_bytes());
        b[40..44].copy_from_slice(&self.host_features.to_le_bytes());
        b[44..48].copy_from_slice(&self.guest_features.to_le_bytes());
        b[48..56].copy_from_slice(&self.net_ring.to_le_bytes());
        b
    }
}

/// `HVT_HYPERCALL_WALLTIME` argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcWalltime {
    /// OUT: nanoseconds since the Unix epoch.
    pub nsecs: u64,
}

impl HcWalltime {
    /// Offset of `nsecs`.
    pub const NSECS_OFF: usize = 0;
    /// Size of the structure.
    pub const SIZE: usize = 8;
}

/// `HVT_HYPERCALL_PUTS` argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcPuts {
    /// IN: guest address of the bytes.
    pub data: u64,
    /// IN: number of bytes.
    pub len: u64,
}

impl HcPuts {
    /// Offset of `data`.
    pub const DATA_OFF: usize = 0;
    /// Offset of `len`.
    pub const LEN_OFF: usize = 8;
    /// Size of the structure.
    pub const SIZE: usize = 16;
}

/// `HVT_HYPERCALL_POLL` argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcPoll {
    /// IN: how long to wait, in nanoseconds, relative to the call.
    pub timeout_nsecs: u64,
    /// OUT: set of handles with input ready.
    pub ready_set: u64,
    /// OUT: number of handles with input ready.
    pub ret: i32,
}

impl HcPoll {
    /// Offset of `timeout_nsecs`.
    pub const TIMEOUT_OFF: usize = 0;
    /// Offset of `ready_set`.
    pub const READY_SET_OFF: usize = 8;
    /// Offset of `ret`.
    pub const RET_OFF: usize = 16;
    /// Size of the structure.
    pub const SIZE: usize = 24;
}

/// `HVT_HYPERCALL_BLOCK_READ` / `HVT_HYPERCALL_BLOCK_WRITE` argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcBlockIo {
    /// IN: device handle (manifest index).
    pub handle: u64,
    /// IN: byte offset, a multiple of the block size.
    pub offset: u64,
    /// IN: guest address of the buffer.
    pub data: u64,
    /// IN: length, exactly one block.
    pub len: u64,
    /// OUT: a [`crate::Solo5Result`] code.
    pub ret: i32,
}

impl HcBlockIo {
    /// Offset of `handle`.
    pub const HANDLE_OFF: usize = 0;
    /// Offset of `offset`.
    pub const OFFSET_OFF: usize = 8;
    /// Offset of `data`.
    pub const DATA_OFF: usize = 16;
    /// Offset of `len`.
    pub const LEN_OFF: usize = 24;
    /// Offset of `ret`.
    pub const RET_OFF: usize = 32;
    /// Size of the structure.
    pub const SIZE: usize = 40;
}

/// `HVT_HYPERCALL_NET_READ` / `HVT_HYPERCALL_NET_WRITE` argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcNetIo {
    /// IN: device handle (manifest index).
    pub handle: u64,
    /// IN: guest address of the frame buffer.
    pub data: u64,
    /// IN: buffer or frame length; OUT (read): length of the frame read.
    pub len: u64,
    /// OUT: a [`crate::Solo5Result`] code.
    pub ret: i32,
}

impl HcNetIo {
    /// Offset of `handle`.
    pub const HANDLE_OFF: usize = 0;
    /// Offset of `data`.
    pub const DATA_OFF: usize = 8;
    /// Offset of `len`.
    pub const LEN_OFF: usize = 16;
    /// Offset of `ret`.
    pub const RET_OFF: usize = 24;
    /// Size of the structure.
    pub const SIZE: usize = 32;
}

/// `HVT_HYPERCALL_HALT` argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcHalt {
    /// IN: guest address of up to [`HALT_COOKIE_MAX`] bytes (e.g. a trap
    /// frame), or 0.
    pub cookie: u64,
    /// IN: exit status; the tender exits with `status & 0xff`.
    pub exit_status: i32,
}

impl HcHalt {
    /// Offset of `cookie`.
    pub const COOKIE_OFF: usize = 0;
    /// Offset of `exit_status`.
    pub const EXIT_STATUS_OFF: usize = 8;
    /// Size of the structure.
    pub const SIZE: usize = 16;
}

/// x86_64 guest memory layout and initial CPU state set up by the tender.
pub mod x86 {
    /// Guest memory is sized in 2 MiB pages.
    pub const GUEST_PAGE_SIZE: u64 = 0x20_0000;
    /// Smallest guest memory.
    pub const MIN_MEM_SIZE: u64 = GUEST_PAGE_SIZE;
    /// Largest guest memory (four page directories of 2 MiB pages).
    pub const MAX_MEM_SIZE: u64 = 4 << 30;
    /// Guest-physical address of the tender's GDT.
    pub const GDT_BASE: u64 = 0x1000;
    /// Guest-physical address of the PML4.
    pub const PML4_BASE: u64 = 0x2000;
    /// Guest-physical address of the PDPT.
    pub const PDPTE_BASE: u64 = 0x3000;
    /// Guest-physical address of the first of four page directories.
    pub const PDE_BASE: u64 = 0x4000;
    /// Guest-physical address of the page table for the first 2 MiB.
    pub const PT0_BASE: u64 = 0x8000;
    /// Pages below this address are not present.
    pub const PT0_MAP_START: u64 = 0x1_0000;
    /// Page-table entry bit: present.
    pub const PTE_P: u64 = 1 << 0;
    /// Page-table entry bit: writable.
    pub const PTE_RW: u64 = 1 << 1;
    /// Page-directory entry bit: 2 MiB page.
    pub const PTE_PS: u64 = 1 << 7;
    /// CR0: PE | NE | WP | PG.
    pub const CR0_INIT: u64 = 0x8001_0021;
    /// CR3: the PML4.
    pub const CR3_INIT: u64 = PML4_BASE;
    /// CR4: PAE | OSFXSR | OSXMMEXCPT.
    pub const CR4_INIT: u64 = 0x620;
    /// EFER: LME | LMA.
    pub const EFER_INIT: u64 = 0x500;
    /// RFLAGS: only the reserved bit 1.
    pub const RFLAGS_INIT: u64 = 0x2;
    /// GDT descriptor of the 64-bit code segment.
    pub const GDT_CODE: u64 = 0x00af_9900_0000_ffff;
    /// GDT descriptor of the data segment.
    pub const GDT_DATA: u64 = 0x00cf_9300_0000_ffff;
    /// Code segment selector.
    pub const SEL_CODE: u16 = 0x8;
    /// Data segment selector.
    pub const SEL_DATA: u16 = 0x10;
    /// GDT limit (three descriptors).
    pub const GDT_LIMIT: u16 = 3 * 8 - 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn boot_info_layout() {
        assert_eq!(size_of::<BootInfo>(), BootInfo::SIZE);
        assert_eq!(offset_of!(BootInfo, mem_size), BootInfo::MEM_SIZE_OFF);
        assert_eq!(offset_of!(BootInfo, kernel_end), BootInfo::KERNEL_END_OFF);
        assert_eq!(
            offset_of!(BootInfo, cpu_cycle_freq),
            BootInfo::CPU_CYCLE_FREQ_OFF
        );
        assert_eq!(offset_of!(BootInfo, cmdline), BootInfo::CMDLINE_OFF);
        assert_eq!(offset_of!(BootInfo, mft), BootInfo::MFT_OFF);
        assert_eq!(
            offset_of!(BootInfo, host_features),
            BootInfo::HOST_FEATURES_OFF
        );
        assert_eq!(
            offset_of!(BootInfo, guest_features),
            BootInfo::GUEST_FEATURES_OFF
        );
        assert_eq!(offset_of!(BootInfo, net_ring), BootInfo::NET_RING_OFF);
        let bi = BootInfo {
            mem_size: 1,
            kernel_end: 2,
            cpu_cycle_freq: 3,
            cmdline: 4,
            mft: 5,
            host_features: 6,
            guest_features: 7,
            net_ring: 8,
        };
        let b = bi.to_bytes();
        assert_eq!(crate::read_u64(&b, BootInfo::CPU_CYCLE_FREQ_OFF), Some(3));
        assert_eq!(crate::read_u32(&b, BootInfo::GUEST_FEATURES_OFF), Some(7));
        assert_eq!(crate::read_u64(&b, BootInfo::NET_RING_OFF), Some(8));
    }

    #[test]
    fn hypercall_argument_layouts() {
        assert_eq!(size_of::<HcWalltime>(), HcWalltime::SIZE);
        assert_eq!(offset_of!(HcWalltime, nsecs), HcWalltime::NSECS_OFF);

        assert_eq!(size_of::<HcPuts>(), HcPuts::SIZE);
        assert_eq!(offset_of!(HcPuts, data), HcPuts::DATA_OFF);
        assert_eq!(offset_of!(HcPuts, len), HcPuts::LEN_OFF);

        assert_eq!(size_of::<HcPoll>(), HcPoll::SIZE);
        assert_eq!(offset_of!(HcPoll, timeout_nsecs), HcPoll::TIMEOUT_OFF);
        assert_eq!(offset_of!(HcPoll, ready_set), HcPoll::READY_SET_OFF);
        assert_eq!(offset_of!(HcPoll, ret), HcPoll::RET_OFF);

        assert_eq!(size_of::<HcBlockIo>(), HcBlockIo::SIZE);
        assert_eq!(offset_of!(HcBlockIo, handle), HcBlockIo::HANDLE_OFF);
        assert_eq!(offset_of!(HcBlockIo, offset), HcBlockIo::OFFSET_OFF);
        assert_eq!(offset_of!(HcBlockIo, data), HcBlockIo::DATA_OFF);
        assert_eq!(offset_of!(HcBlockIo, len), HcBlockIo::LEN_OFF);
        assert_eq!(offset_of!(HcBlockIo, ret), HcBlockIo::RET_OFF);

        assert_eq!(size_of::<HcNetIo>(), HcNetIo::SIZE);
        assert_eq!(offset_of!(HcNetIo, handle), HcNetIo::HANDLE_OFF);
        assert_eq!(offset_of!(HcNetIo, data), HcNetIo::DATA_OFF);
        assert_eq!(offset_of!(HcNetIo, len), HcNetIo::LEN_OFF);
        assert_eq!(offset_of!(HcNetIo, ret), HcNetIo::RET_OFF);

        assert_eq!(size_of::<HcHalt>(), HcHalt::SIZE);
        assert_eq!(offset_of!(HcHalt, cookie), HcHalt::COOKIE_OFF);
        assert_eq!(offset_of!(HcHalt, exit_status), HcHalt::EXIT_STATUS_OFF);
    }

    #[test]
    fn hypercall_numbers_and_ports() {
        assert_eq!(Hypercall::Walltime.port(), 0x501);
        assert_eq!(Hypercall::Puts as u16, 2);
        assert_eq!(Hypercall::Poll as u16, 3);
        assert_eq!(Hypercall::BlockWrite as u16, 4);
        assert_eq!(Hypercall::BlockRead as u16, 5);
        assert_eq!(Hypercall::NetWrite as u16, 6);
        assert_eq!(Hypercall::NetRead as u16, 7);
        assert_eq!(Hypercall::Halt.port(), 0x508);
        assert_eq!(Hypercall::from_port(0x500), None);
        assert_eq!(Hypercall::from_port(0x509), None);
        assert_eq!(Hypercall::from_port(0x4ff), None);
        assert_eq!(Hypercall::from_port(0x507), Some(Hypercall::NetRead));
        assert_eq!(BOOT_INFO_BASE, 0x10000);
        assert_eq!(crate::CMDLINE_SIZE, 8192);
    }

    #[test]
    fn cpu_state_matches_the_abi_document() {
        assert_eq!(x86::CR0_INIT, (1 << 0) | (1 << 5) | (1 << 16) | (1 << 31));
        assert_eq!(x86::CR4_INIT, (1 << 5) | (1 << 9) | (1 << 10));
        assert_eq!(x86::EFER_INIT, (1 << 8) | (1 << 10));
        assert_eq!(x86::GDT_CODE, 0x00af99000000ffff);
        assert_eq!(x86::GDT_DATA, 0x00cf93000000ffff);
        assert_eq!(x86::PDE_BASE + 4 * 0x1000, x86::PT0_BASE);
        assert_eq!(x86::MAX_MEM_SIZE, 4 * 512 * x86::GUEST_PAGE_SIZE);
    }
}
