//! The spt ABI (version 2) on x86_64: the guest runs inside the tender's own
//! process, at its link addresses, and calls Linux directly under a seccomp
//! filter.

/// ABI version of the spt target.
pub const ABI_VERSION: u32 = 2;

/// Lowest address the tender maps guest memory at (`vm.mmap_min_addr`
/// forbids 0); guest memory is `[HOST_MEM_BASE, mem_size)`.
pub const HOST_MEM_BASE: u64 = 0x1_0000;

/// Address of [`BootInfo`].
pub const BOOT_INFO_BASE: u64 = HOST_MEM_BASE + 0x1000;

/// `epoll_event.data.u64` of the tender's internal timerfd
/// (`SPT_INTERNAL_TIMERFD`, `~1U` widened to 64 bits).
pub const INTERNAL_TIMERFD: u64 = !1u32 as u64;

/// Boot information at [`BOOT_INFO_BASE`] (`struct spt_boot_info`); a
/// pointer to it is the only argument of the guest's `_start`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// Guest memory size in bytes (the top of guest memory).
    pub mem_size: u64,
    /// End of the loaded image.
    pub kernel_end: u64,
    /// Address of the NUL-terminated command line.
    pub cmdline: u64,
    /// Address of the manifest copy (`hostfd` filled in).
    pub mft: u64,
    /// The epoll set `yield` waits on.
    pub epollfd: i32,
    /// The timerfd `yield` arms with its deadline.
    pub timerfd: i32,
}

impl BootInfo {
    /// Offset of `mem_size`.
    pub const MEM_SIZE_OFF: usize = 0;
    /// Offset of `kernel_end`.
    pub const KERNEL_END_OFF: usize = 8;
    /// Offset of `cmdline`.
    pub const CMDLINE_OFF: usize = 16;
    /// Offset of `mft`.
    pub const MFT_OFF: usize = 24;
    /// Offset of `epollfd`.
    pub const EPOLLFD_OFF: usize = 32;
    /// Offset of `timerfd`.
    pub const TIMERFD_OFF: usize = 36;
    /// Size of the structure.
    pub const SIZE: usize = 40;

    /// The structure's bytes, as the tender writes them.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.mem_size.to_le_bytes());
        b[8..16].copy_from_slice(&self.kernel_end.to_le_bytes());
        b[16..24].copy_from_slice(&self.cmdline.to_le_bytes());
        b[24..32].copy_from_slice(&self.mft.to_le_bytes());
        b[32..36].copy_from_slice(&self.epollfd.to_le_bytes());
        b[36..40].copy_from_slice(&self.timerfd.to_le_bytes());
        b
    }
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
        assert_eq!(offset_of!(BootInfo, cmdline), BootInfo::CMDLINE_OFF);
        assert_eq!(offset_of!(BootInfo, mft), BootInfo::MFT_OFF);
        assert_eq!(offset_of!(BootInfo, epollfd), BootInfo::EPOLLFD_OFF);
        assert_eq!(offset_of!(BootInfo, timerfd), BootInfo::TIMERFD_OFF);
        assert_eq!(BOOT_INFO_BASE, 0x11000);
        assert_eq!(INTERNAL_TIMERFD, 0xffff_fffe);
        let b = BootInfo {
            mem_size: 1,
            kernel_end: 2,
            cmdline: 3,
            mft: 4,
            epollfd: 5,
            timerfd: -1,
        }
        .to_bytes();
        assert_eq!(crate::read_u64(&b, BootInfo::MFT_OFF), Some(4));
        assert_eq!(crate::read_u32(&b, BootInfo::TIMERFD_OFF), Some(u32::MAX));
    }
}
