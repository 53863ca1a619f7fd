//! The Solo5 ABI as Morgana implements it: hvt ABI version 2, spt ABI version
//! 2 and application manifest version 1, on x86_64.
//!
//! This crate is shared by both sides of the guest/host boundary:
//!
//! * the **tenders** (`morgana-hvt`, `morgana-spt`) use it to validate ELF
//!   notes and manifests read from untrusted image files and to lay out the
//!   boot information they hand to the guest;
//! * the **guest runtime** (`morgana`) uses it to declare its ELF notes at
//!   compile time and to read what the tender handed over at boot.
//!
//! Everything here is `no_std`, allocation-free and free of `unsafe`. Every
//! size and offset is pinned by unit tests against
//! `../shared/docs/solo5-abi.md` and Solo5's public headers, so that images
//! built by Morgana run on Solo5's tenders and the other way round.

#![no_std]
#![cfg_attr(not(test), forbid(unsafe_code))]

pub mod hvt;
pub mod mft;
pub mod note;
pub mod offload;
pub mod spt;
pub mod trace;

/// Result codes of the guest-visible Solo5 API (`solo5_result_t`).
///
/// The hvt hypercalls report these in their `ret` field.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solo5Result {
    /// The operation completed successfully.
    Ok = 0,
    /// The operation would block (no frame to read).
    Again = 1,
    /// Invalid argument (bad handle, misaligned or out-of-range offset...).
    Einval = 2,
    /// Unspecified error.
    Eunspec = 3,
}

impl Solo5Result {
    /// Decodes a raw result code; unknown codes become [`Solo5Result::Eunspec`].
    pub const fn from_raw(raw: i32) -> Self {
        match raw {
            0 => Self::Ok,
            1 => Self::Again,
            2 => Self::Einval,
            _ => Self::Eunspec,
        }
    }
}

/// Exit status reserved for `solo5_abort()`, fatal traps and panics.
pub const EXIT_ABORT: u8 = 255;

/// Exit status of a tender that fails for a reason of its own (bad image,
/// bad arguments, invalid guest access, unexpected VM exit).
pub const EXIT_TENDER_ERROR: u8 = 1;

/// Maximum number of bytes of guest command line, including the NUL
/// terminator (the same on hvt and spt).
pub const CMDLINE_SIZE: usize = 8192;

/// Lowest address at which an image may be loaded (hvt and spt).
pub const GUEST_MIN_BASE: u64 = 0x10_0000;

/// Architectural page size on x86_64; segments must not share pages of it.
pub const PAGE_SIZE: u64 = 0x1000;

/// Default guest memory size (512 MiB) when `--mem` is not given.
pub const DEFAULT_MEM_SIZE: u64 = 512 << 20;

/// Solo5's rule for one block transfer: exactly one sector of
/// `sector_size` bytes, at a sector-aligned `offset`, wholly within
/// `capacity` bytes. Guests check it before asking; tenders check it again.
pub const fn block_request_ok(offset: u64, len: u64, capacity: u64, sector_size: u64) -> bool {
    sector_size != 0
        && len == sector_size
        && offset.is_multiple_of(sector_size)
        && capacity >= sector_size
        && offset <= capacity - sector_size
}

/// Reads a little-endian `u16` at `off`; `None` when out of bounds.
pub const fn read_u16(b: &[u8], off: usize) -> Option<u16> {
    if off > b.len() || b.len() - off < 2 {
        return None;
    }
    Some(u16::from_le_bytes([b[off], b[off + 1]]))
}

/// Reads a little-endian `u32` at `off`; `None` when out of bounds.
pub const fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    if off > b.len() || b.len() - off < 4 {
        return None;
    }
    Some(u32::from_le_bytes([
        b[off],
        b[off + 1],
        b[off + 2],
        b[off + 3],
    ]))
}

/// Reads a little-endian `u64` at `off`; `None` when out of bounds.
pub const fn read_u64(b: &[u8], off: usize) -> Option<u64> {
    if off > b.len() || b.len() - off < 8 {
        return None;
    }
    Some(u64::from_le_bytes([
        b[off],
        b[off + 1],
        b[off + 2],
        b[off + 3],
        b[off + 4],
        b[off + 5],
        b[off + 6],
        b[off + 7],
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_match_solo5_h() {
        assert_eq!(Solo5Result::Ok as i32, 0);
        assert_eq!(Solo5Result::Again as i32, 1);
        assert_eq!(Solo5Result::Einval as i32, 2);
        assert_eq!(Solo5Result::Eunspec as i32, 3);
        assert_eq!(Solo5Result::from_raw(2), Solo5Result::Einval);
        assert_eq!(Solo5Result::from_raw(-7), Solo5Result::Eunspec);
    }

    #[test]
    fn block_requests() {
        let cap = 8 * 512;
        assert!(block_request_ok(0, 512, cap, 512));
        assert!(block_request_ok(cap - 512, 512, cap, 512));
        assert!(!block_request_ok(cap, 512, cap, 512));
        assert!(!block_request_ok(256, 512, cap, 512));
        assert!(!block_request_ok(0, 256, cap, 512));
        assert!(!block_request_ok(0, 1024, cap, 512));
        assert!(!block_request_ok(u64::MAX - 511, 512, cap, 512));
        assert!(!block_request_ok(0, 0, cap, 0));
        assert!(!block_request_ok(0, 512, 256, 512));
    }

    #[test]
    fn little_endian_readers_check_bounds() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(read_u16(&b, 0), Some(0x0201));
        assert_eq!(read_u32(&b, 5), Some(0x0908_0706));
        assert_eq!(read_u32(&b, 6), None);
        assert_eq!(read_u64(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(read_u64(&b, 2), None);
        assert_eq!(read_u64(&b, usize::MAX), None);
    }
}
