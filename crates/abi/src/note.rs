//! Solo5 ELF notes: the common note header and the "ABI1" note.
//!
//! Each Solo5 note sits alone in its own `PT_NOTE` program header (tenders
//! only read the first note of a `PT_NOTE`). Its header is an `Elf64_Nhdr`
//! with `n_namesz == 6` and the name `"Solo5\0"` padded to 8 bytes, so the
//! descriptor starts 20 bytes into the note, plus whatever internal padding
//! the descriptor's alignment needs (none for ABI1, 4 bytes for MFT1).

/// The name that identifies a Solo5-owned note, NUL terminated.
pub const NOTE_NAME: &[u8; 6] = b"Solo5\0";

/// Size of a Solo5 note header: `n_namesz`, `n_descsz`, `n_type` and the
/// name padded to a 4-byte boundary.
pub const NHDR_SIZE: usize = 20;

/// Size of a plain `Elf64_Nhdr` (without the name).
pub const ELF_NHDR_SIZE: usize = 12;

/// Note type of the ABI note ("ABI1").
pub const ABI1_NOTE_TYPE: u32 = 0x3149_4241;

/// Note type of the manifest note ("MFT1").
pub const MFT1_NOTE_TYPE: u32 = 0x3154_464d;

/// Internal alignment of the ABI1 descriptor within its note.
pub const ABI1_NOTE_ALIGN: usize = 4;

/// Internal alignment of the MFT1 descriptor (`struct mft`) within its note.
pub const MFT1_NOTE_ALIGN: usize = 8;

/// Size of the ABI1 descriptor (`struct abi1_info`).
pub const ABI1_INFO_SIZE: usize = 16;

/// Largest ABI1 `n_descsz` a tender accepts (the same bound Solo5 uses).
pub const ABI1_NOTE_MAX_SIZE: usize = 32;

/// Largest MFT1 `n_descsz` a tender accepts: the padding, the manifest
/// header and 64 entries.
pub const MFT1_NOTE_MAX_SIZE: usize =
    4 + crate::mft::HEADER_SIZE + crate::mft::MAX_ENTRIES * crate::mft::ENTRY_SIZE;

/// Section that holds the ABI note.
pub const ABI1_SECTION: &str = ".note.solo5.abi";

/// Section that holds the manifest note.
pub const MFT1_SECTION: &str = ".note.solo5.manifest";

/// Contents of the `PT_INTERP` segment, so that the host kernel refuses to
/// `exec` a unikernel image directly.
pub const INTERP: &[u8; 24] = b"/nonexistent/solo5/\0\0\0\0\0";

/// Offset of a note's descriptor from the start of the note, for a
/// descriptor with internal alignment `align` (a power of two).
pub const fn desc_offset(align: usize) -> usize {
    (NHDR_SIZE + align - 1) & !(align - 1)
}

/// The target platform an image was built for (`enum abi_target`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiTarget {
    /// The KVM (or bhyve, vmm) tender.
    Hvt = 1,
    /// The seccomp process tender.
    Spt = 2,
    /// virtio devices on a standard VMM.
    Virtio = 3,
    /// The Muen separation kernel.
    Muen = 4,
    /// Genode.
    Genode = 5,
    /// Xen PVH.
    Xen = 6,
}

impl AbiTarget {
    /// Decodes a raw target number.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Hvt,
            2 => Self::Spt,
            3 => Self::Virtio,
            4 => Self::Muen,
            5 => Self::Genode,
            6 => Self::Xen,
            _ => return None,
        })
    }

    /// The name Solo5 uses for this target (`hvt`, `spt`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hvt => "hvt",
            Self::Spt => "spt",
            Self::Virtio => "virtio",
            Self::Muen => "muen",
            Self::Genode => "genode",
            Self::Xen => "xen",
        }
    }
}

/// The ABI note's descriptor (`struct abi1_info`): target and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiInfo {
    /// Raw `abi_target` (see [`AbiTarget`]).
    pub target: u32,
    /// ABI version the image was built against.
    pub version: u32,
}

impl AbiInfo {
    /// Parses the descriptor bytes that follow the note header.
    pub fn parse(desc: &[u8]) -> Option<Self> {
        Some(Self {
            target: crate::read_u32(desc, 0)?,
            version: crate::read_u32(desc, 4)?,
        })
    }
}

/// The complete "ABI1" note as it is laid out in a guest image
/// (`struct abi1_note`), built at compile time by the guest runtime.
#[repr(C, align(4))]
#[derive(Debug)]
pub struct AbiNote {
    n_namesz: u32,
    n_descsz: u32,
    n_type: u32,
    n_name: [u8; 8],
    abi_target: u32,
    abi_version: u32,
    reserved0: u32,
    reserved1: u32,
}

impl AbiNote {
    /// The note declaring an image for `target` at ABI `version`.
    pub const fn new(target: AbiTarget, version: u32) -> Self {
        Self {
            n_namesz: NOTE_NAME.len() as u32,
            n_descsz: ABI1_INFO_SIZE as u32,
            n_type: ABI1_NOTE_TYPE,
            n_name: *b"Solo5\0\0\0",
            abi_target: target as u32,
            abi_version: version,
            reserved0: 0,
            reserved1: 0,
        }
    }

    /// The target this note declares.
    pub const fn target(&self) -> u32 {
        self.abi_target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn abi_note_layout_matches_elf_abi_h() {
        assert_eq!(size_of::<AbiNote>(), 36);
        assert_eq!(align_of::<AbiNote>(), 4);
        assert_eq!(offset_of!(AbiNote, n_namesz), 0);
        assert_eq!(offset_of!(AbiNote, n_descsz), 4);
        assert_eq!(offset_of!(AbiNote, n_type), 8);
        assert_eq!(offset_of!(AbiNote, n_name), 12);
        assert_eq!(offset_of!(AbiNote, abi_target), NHDR_SIZE);
        assert_eq!(offset_of!(AbiNote, abi_version), 24);
        assert_eq!(desc_offset(ABI1_NOTE_ALIGN), 20);
        assert_eq!(desc_offset(MFT1_NOTE_ALIGN), 24);
    }

    #[test]
    fn note_constants_match_headers() {
        assert_eq!(ABI1_NOTE_TYPE.to_le_bytes(), *b"ABI1");
        assert_eq!(MFT1_NOTE_TYPE.to_le_bytes(), *b"MFT1");
        assert_eq!(NOTE_NAME.len(), 6);
        assert_eq!(MFT1_NOTE_MAX_SIZE, 6668);
        assert_eq!(&INTERP[..20], b"/nonexistent/solo5/\0");
        assert_eq!(AbiTarget::Hvt as u32, 1);
        assert_eq!(AbiTarget::Spt as u32, 2);
        assert_eq!(AbiTarget::Xen as u32, 6);
        assert_eq!(AbiTarget::from_raw(3), Some(AbiTarget::Virtio));
        assert_eq!(AbiTarget::from_raw(7), None);
    }

    #[test]
    fn abi_note_descriptor_parses_back() {
        let n = AbiNote::new(AbiTarget::Spt, 2);
        assert_eq!(n.target(), 2);
        let desc = [2u8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            AbiInfo::parse(&desc),
            Some(AbiInfo {
                target: 2,
                version: 2
            })
        );
        assert_eq!(AbiInfo::parse(&desc[..7]), None);
    }
}
