//! Validating and planning the load of a unikernel ELF image, with every
//! check of Solo5's loader, plus reading its Solo5 notes.
//!
//! Everything here is a pure function of the image bytes and the guest
//! memory size: the result is a [`LoadPlan`] that a tender then applies to
//! guest memory. Image files are untrusted; every read is bounds-checked and
//! every failure is a one-line [`ElfError`].

use morgana_abi::{GUEST_MIN_BASE, PAGE_SIZE, note, read_u16, read_u32, read_u64};
use thiserror::Error;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// Segment flag: executable.
pub const PF_X: u32 = 1;
/// Segment flag: writable.
pub const PF_W: u32 = 2;
/// Segment flag: readable.
pub const PF_R: u32 = 4;

/// Why an image was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF header.
    #[error("truncated file: {0} bytes, shorter than an ELF header")]
    Truncated(usize),
    /// No ELF magic.
    #[error("not an ELF file")]
    NotElf,
    /// Not ELF64, little-endian, version 1.
    #[error("unsupported ELF format (need 64-bit little-endian ELF version 1)")]
    Format,
    /// A position-independent executable or shared object.
    #[error("position-independent executable (ET_DYN): unikernels must be linked static, non-PIE")]
    Pie,
    /// Not an executable.
    #[error("not an executable (e_type {0})")]
    NotExec(u16),
    /// Built for another CPU.
    #[error("wrong machine: e_machine {0}, expected x86_64 (62)")]
    Machine(u16),
    /// Odd header or program-header sizes, or no program headers.
    #[error("invalid ELF header: {0}")]
    Header(&'static str),
    /// The program headers lie outside the file.
    #[error("truncated file: program headers lie beyond its end")]
    PhdrsTruncated,
    /// The entry point lies outside `[0x100000, mem_size)`.
    #[error("entry point {entry:#x} is outside guest memory [{min:#x}, {mem:#x})")]
    Entry {
        /// e_entry.
        entry: u64,
        /// Lowest load address.
        min: u64,
        /// Guest memory size.
        mem: u64,
    },
    /// A segment starts below the lowest load address.
    #[error("segment {index} at {vaddr:#x} lies below {min:#x}")]
    BelowBase {
        /// Program header index.
        index: usize,
        /// Its start (aligned down).
        vaddr: u64,
        /// Lowest load address.
        min: u64,
    },
    /// A segment extends past the end of guest memory.
    #[error("segment {index} [{start:#x}, {end:#x}) lies beyond guest memory ({mem:#x} bytes)")]
    BeyondMemory {
        /// Program header index.
        index: usize,
        /// Segment start.
        start: u64,
        /// Segment end (aligned up), saturated on overflow.
        end: u64,
        /// Guest memory size.
        mem: u64,
    },
    /// Segments out of order, overlapping, or sharing a page.
    #[error("segment {0} overlaps or shares a page with the previous one")]
    Overlap(usize),
    /// A segment both writable and executable.
    #[error("segment {0} is both writable and executable (W+X)")]
    WriteExec(usize),
    /// `p_align` not a power of two, or start/end not page aligned.
    #[error("segment {0} is not page aligned")]
    Align(usize),
    /// `p_memsz < p_filesz`.
    #[error("segment {0} has p_memsz smaller than p_filesz")]
    MemSize(usize),
    /// The segment's bytes lie beyond the end of the file.
    #[error("truncated file: segment {0} lies beyond its end")]
    SegmentTruncated(usize),
    /// No loadable segment at all.
    #[error("no loadable segment")]
    NoSegments,
    /// A note program header that cannot hold a note header.
    #[error("invalid note: PT_NOTE {0} is smaller than a note header")]
    NoteTooSmall(usize),
    /// A Solo5 note whose size is out of bounds or beyond its segment.
    #[error("corrupt {what} note: invalid size ({size} bytes)")]
    NoteSize {
        /// Which note.
        what: &'static str,
        /// Its n_descsz.
        size: u32,
    },
    /// A note's bytes lie beyond the end of the file.
    #[error("truncated file: {0} note lies beyond its end")]
    NoteTruncated(&'static str),
}

/// One segment to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest address of the first byte.
    pub vaddr: u64,
    /// Offset of its bytes in the file.
    pub offset: u64,
    /// Bytes to copy from the file.
    pub filesz: u64,
    /// Bytes in memory; `memsz - filesz` are zeroed.
    pub memsz: u64,
    /// Page-aligned start of the protected range.
    pub prot_start: u64,
    /// Page-aligned end of the protected range.
    pub prot_end: u64,
    /// `PF_R | PF_W | PF_X` flags.
    pub flags: u32,
}

/// What to load where, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// Entry point.
    pub entry: u64,
    /// End of the highest segment (page aligned): the guest's `kernel_end`.
    pub end: u64,
    /// Segments, in ascending address order.
    pub segments: Vec<Segment>,
}

struct Header {
    phoff: u64,
    phnum: usize,
    entry: u64,
}

fn header(img: &[u8]) -> Result<Header, ElfError> {
    if img.len() < 4 || img[..4] != *b"\x7fELF" {
        return Err(if img.len() < 4 && b"\x7fELF".starts_with(img) {
            ElfError::Truncated(img.len())
        } else {
            ElfError::NotElf
        });
    }
    if img.len() < EHDR_SIZE {
        return Err(ElfError::Truncated(img.len()));
    }
    let r16 = |o| read_u16(img, o).unwrap_or(0);
    if img[4] != 2 || img[5] != 1 || img[6] != 1 || read_u32(img, 20) != Some(1) {
        return Err(ElfError::Format);
    }
    match r16(16) {
        ET_EXEC => {}
        ET_DYN => return Err(ElfError::Pie),
        t => return Err(ElfError::NotExec(t)),
    }
    if r16(18) != EM_X86_64 {
        return Err(ElfError::Machine(r16(18)));
    }
    if r16(52) as usize != EHDR_SIZE {
        return Err(ElfError::Header("e_ehsize is not 64"));
    }
    if r16(54) as usize != PHDR_SIZE {
        return Err(ElfError::Header("e_phentsize is not 56"));
    }
    let phnum = r16(56) as usize;
    if phnum == 0 {
        return Err(ElfError::Header("no program headers"));
    }
    let phoff = read_u64(img, 32).unwrap_or(0);
    let end = phoff
        .checked_add((phnum * PHDR_SIZE) as u64)
        .ok_or(ElfError::PhdrsTruncated)?;
    if end > img.len() as u64 {
        return Err(ElfError::PhdrsTruncated);
    }
    Ok(Header {
        phoff,
        phnum,
        entry: read_u64(img, 24).unwrap_or(0),
    })
}

struct Phdr {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

fn phdr(img: &[u8], h: &Header, i: usize) -> Phdr {
    // `header` checked that all program headers lie within the file.
    let o = h.phoff as usize + i * PHDR_SIZE;
    let r64 = |off| read_u64(img, o + off).unwrap_or(0);
    Phdr {
        kind: read_u32(img, o).unwrap_or(0),
        flags: read_u32(img, o + 4).unwrap_or(0),
        offset: r64(8),
        vaddr: r64(16),
        filesz: r64(32),
        memsz: r64(40),
        align: r64(48),
    }
}

/// Finds the section called `name` by the section headers (which `strip`
/// keeps): its address and size. `None` if there is none or the headers
/// are malformed (sections matter only to Morgana's own extensions, never
/// to loading).
pub fn find_section(img: &[u8], name: &str) -> Option<(u64, u64)> {
    let o = section_index(img, name)?;
    Some((read_u64(img, o + 16)?, read_u64(img, o + 32)?))
}

/// The file bytes of the section called `name` (as [`find_section`]
/// finds it); `None` if there is none, it has no file bytes (`NOBITS`),
/// or it lies outside the file.
pub fn section_bytes<'a>(img: &'a [u8], name: &str) -> Option<&'a [u8]> {
    const SHT_NOBITS: u32 = 8;
    let o = section_index(img, name)?;
    if read_u32(img, o + 4)? == SHT_NOBITS {
        return None;
    }
    let off = usize::try_from(read_u64(img, o + 24)?).ok()?;
    let size = usize::try_from(read_u64(img, o + 32)?).ok()?;
    img.get(off..off.checked_add(size)?)
}

/// File offset of the section header of the section called `name`.
fn section_index(img: &[u8], name: &str) -> Option<usize> {
    const SHDR_SIZE: usize = 64;
    let shoff = read_u64(img, 40)? as usize;
    if read_u16(img, 58)? as usize != SHDR_SIZE {
        return None;
    }
    let shnum = read_u16(img, 60)? as usize;
    let strndx = read_u16(img, 62)? as usize;
    let sh = |i: usize| -> Option<usize> {
        let o = shoff.checked_add(i.checked_mul(SHDR_SIZE)?)?;
        (o.checked_add(SHDR_SIZE)? <= img.len()).then_some(o)
    };
    let strtab = sh(strndx)?;
    let str_off = read_u64(img, strtab + 24)? as usize;
    let str_size = read_u64(img, strtab + 32)? as usize;
    let strs = img.get(str_off..str_off.checked_add(str_size)?)?;
    (0..shnum).find_map(|i| {
        let o = sh(i)?;
        let n = read_u32(img, o)? as usize;
        let rest = strs.get(n..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        (&rest[..end] == name.as_bytes()).then_some(o)
    })
}

/// Validates `img` for a guest of `mem_size` bytes and plans its load.
///
/// As in Solo5, `PT_LOAD` headers with `p_filesz == 0` are skipped.
pub fn plan(img: &[u8], mem_size: u64) -> Result<LoadPlan, ElfError> {
    let h = header(img)?;
    if h.entry < GUEST_MIN_BASE || h.entry >= mem_size {
        return Err(ElfError::Entry {
            entry: h.entry,
            min: GUEST_MIN_BASE,
            mem: mem_size,
        });
    }
    let mut segments: Vec<Segment> = Vec::new();
    let mut end = 0u64;
    let mut last_vaddr = 0u64;
    for i in 0..h.phnum {
        let p = phdr(img, &h, i);
        if p.kind != PT_LOAD || p.filesz == 0 {
            continue;
        }
        if p.align == 0 || !p.align.is_power_of_two() {
            return Err(ElfError::Align(i));
        }
        let start = p.vaddr & !(p.align - 1);
        if p.vaddr < GUEST_MIN_BASE || start < GUEST_MIN_BASE {
            return Err(ElfError::BelowBase {
                index: i,
                vaddr: start,
                min: GUEST_MIN_BASE,
            });
        }
        if p.vaddr < last_vaddr || start < end {
            return Err(ElfError::Overlap(i));
        }
        last_vaddr = p.vaddr;
        if p.memsz < p.filesz {
            return Err(ElfError::MemSize(i));
        }
        let seg_end = p
            .vaddr
            .checked_add(p.memsz)
            .and_then(|e| e.checked_add(p.align - 1))
            .map(|e| e & !(p.align - 1));
        let beyond = |e: u64| ElfError::BeyondMemory {
            index: i,
            start,
            end: e,
            mem: mem_size,
        };
        let seg_end = seg_end.ok_or_else(|| beyond(u64::MAX))?;
        if p.vaddr >= mem_size || seg_end > mem_size {
            return Err(beyond(seg_end));
        }
        if !start.is_multiple_of(PAGE_SIZE) || seg_end % PAGE_SIZE != 0 {
            return Err(ElfError::Align(i));
        }
        if p.flags & PF_W != 0 && p.flags & PF_X != 0 {
            return Err(ElfError::WriteExec(i));
        }
        let in_file = p
            .offset
            .checked_add(p.filesz)
            .is_some_and(|e| e <= img.len() as u64);
        if !in_file {
            return Err(ElfError::SegmentTruncated(i));
        }
        end = end.max(seg_end);
        segments.push(Segment {
            vaddr: p.vaddr,
            offset: p.offset,
            filesz: p.filesz,
            memsz: p.memsz,
            prot_start: start,
            prot_end: seg_end,
            flags: p.flags,
        });
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    Ok(LoadPlan {
        entry: h.entry,
        end,
        segments,
    })
}

/// Finds the Solo5 note of type `note_type` (each in its own `PT_NOTE`) and
/// returns its descriptor, without the internal alignment padding.
///
/// `Ok(None)` when the image has no such note; `Err` when a note is corrupt
/// (too large, beyond its segment or the file), as in Solo5's
/// `elf_load_note`.
pub fn find_note<'a>(
    img: &'a [u8],
    note_type: u32,
    align: usize,
    max_size: usize,
    what: &'static str,
) -> Result<Option<&'a [u8]>, ElfError> {
    let h = header(img)?;
    for i in 0..h.phnum {
        let p = phdr(img, &h, i);
        if p.kind != PT_NOTE {
            continue;
        }
        if p.filesz < note::ELF_NHDR_SIZE as u64 {
            return Err(ElfError::NoteTooSmall(i));
        }
        if p.filesz < note::NHDR_SIZE as u64 {
            continue;
        }
        let o = usize::try_from(p.offset).map_err(|_| ElfError::NoteTruncated(what))?;
        let nhdr = img
            .get(o..)
            .and_then(|s| s.get(..note::NHDR_SIZE))
            .ok_or(ElfError::NoteTruncated(what))?;
        let namesz = read_u32(nhdr, 0).unwrap_or(0);
        let descsz = read_u32(nhdr, 4).unwrap_or(0);
        let ntype = read_u32(nhdr, 8).unwrap_or(0);
        if namesz as usize != note::NOTE_NAME.len() || nhdr[12..18] != *note::NOTE_NAME {
            continue;
        }
        if ntype != note_type {
            continue;
        }
        if descsz < 1 || descsz as usize > max_size {
            return Err(ElfError::NoteSize { what, size: descsz });
        }
        if p.filesz < (note::NHDR_SIZE + descsz as usize) as u64 {
            return Err(ElfError::NoteSize { what, size: descsz });
        }
        let off = note::desc_offset(align);
        let pad = off - note::NHDR_SIZE;
        if descsz as usize <= pad {
            return Err(ElfError::NoteSize { what, size: descsz });
        }
        let len = descsz as usize - pad;
        let desc = img
            .get(o + off..)
            .and_then(|s| s.get(..len))
            .ok_or(ElfError::NoteTruncated(what))?;
        return Ok(Some(desc));
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF image builder for tests.
    pub struct Builder {
        pub e_type: u16,
        pub machine: u16,
        pub entry: u64,
        /// (type, flags, vaddr, data, memsz, align)
        pub phdrs: Vec<(u32, u32, u64, Vec<u8>, u64, u64)>,
    }

    impl Builder {
        pub fn new() -> Self {
            Self {
                e_type: ET_EXEC,
                machine: EM_X86_64,
                entry: 0x100000,
                phdrs: vec![(PT_LOAD, PF_R | PF_X, 0x100000, vec![0xf4; 16], 16, 0x1000)],
            }
        }

        pub fn build(&self) -> Vec<u8> {
            let mut img = vec![0u8; EHDR_SIZE];
            img[..4].copy_from_slice(b"\x7fELF");
            img[4] = 2;
            img[5] = 1;
            img[6] = 1;
            img[16..18].copy_from_slice(&self.e_type.to_le_bytes());
            img[18..20].copy_from_slice(&self.machine.to_le_bytes());
            img[20..24].copy_from_slice(&1u32.to_le_bytes());
            img[24..32].copy_from_slice(&self.entry.to_le_bytes());
            img[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
            img[52..54].copy_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
            img[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
            img[56..58].copy_from_slice(&(self.phdrs.len() as u16).to_le_bytes());
            let mut data_off = EHDR_SIZE + PHDR_SIZE * self.phdrs.len();
            let mut data = Vec::new();
            for (kind, flags, vaddr, bytes, memsz, align) in &self.phdrs {
                let mut ph = [0u8; PHDR_SIZE];
                ph[0..4].copy_from_slice(&kind.to_le_bytes());
                ph[4..8].copy_from_slice(&flags.to_le_bytes());
                ph[8..16].copy_from_slice(&(data_off as u64).to_le_bytes());
                ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
                ph[24..32].copy_from_slice(&vaddr.to_le_bytes());
                ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
                ph[40..48].copy_from_slice(&memsz.to_le_bytes());
                ph[48..56].copy_from_slice(&align.to_le_bytes());
                img.extend_from_slice(&ph);
                data.extend_from_slice(bytes);
                data_off += bytes.len();
            }
            img.extend_from_slice(&data);
            img
        }
    }

    pub fn note(ntype: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&6u32.to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&ntype.to_le_bytes());
        n.extend_from_slice(b"Solo5\0\0\0");
        n.extend_from_slice(desc);
        n
    }

    const MEM: u64 = 512 << 20;

    #[test]
    fn a_good_image_is_planned() {
        let mut b = Builder::new();
        b.phdrs
            .push((PT_LOAD, PF_R | PF_W, 0x101000, vec![1; 8], 0x2000, 0x1000));
        let p = plan(&b.build(), MEM).unwrap();
        assert_eq!(p.entry, 0x100000);
        assert_eq!(p.end, 0x103000);
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].memsz, 0x2000);
        assert_eq!(p.segments[1].prot_end, 0x103000);
    }

    #[test]
    fn every_bad_image_is_rejected() {
        let good = Builder::new().build();
        assert_eq!(plan(&good[..40], MEM), Err(ElfError::Truncated(40)));
        assert_eq!(plan(&good[..2], MEM), Err(ElfError::Truncated(2)));
        assert_eq!(plan(b"#!/bin/sh\n", MEM), Err(ElfError::NotElf));
        assert_eq!(
            plan(&good[..EHDR_SIZE + 10], MEM),
            Err(ElfError::PhdrsTruncated)
        );

        let mut b = Builder::new();
        b.machine = 183;
        assert_eq!(plan(&b.build(), MEM), Err(ElfError::Machine(183)));

        let mut b = Builder::new();
        b.e_type = ET_DYN;
        assert_eq!(plan(&b.build(), MEM), Err(ElfError::Pie));

        let mut b = Builder::new();
        b.e_type = 1;
        assert_eq!(plan(&b.build(), MEM), Err(ElfError::NotExec(1)));

        let mut b = Builder::new();
        b.phdrs[0].1 = PF_R | PF_W | PF_X;
        assert_eq!(plan(&b.build(), MEM), Err(ElfError::WriteExec(0)));

        let mut b = Builder::new();
        b.phdrs[0].2 = 0x80000;
        b.entry = 0x100000;
        assert!(matches!(
            plan(&b.build(), MEM),
            Err(ElfError::BelowBase { .. })
        ));

        let mut b = Builder::new();
        b.phdrs
            .push((PT_LOAD, PF_R, MEM - 0x1000, vec![0; 16], 0x2000, 0x1000));
        assert!(matches!(
            plan(&b.build(), MEM),
            Err(ElfError::BeyondMemory { index: 1, .. })
        ));

        let mut b = Builder::new();
        b.phdrs.push((PT_LOAD, PF_R, MEM, vec![0; 16], 16, 0x1000));
        assert!(matches!(
            plan(&b.build(), MEM),
            Err(ElfError::BeyondMemory { .. })
        ));

        let mut b = Builder::new();
        b.phdrs
            .push((PT_LOAD, PF_R, u64::MAX - 8, vec![0; 16], 16, 0x1000));
        assert!(matches!(
            plan(&b.build(), MEM),
            Err(ElfError::BeyondMemory { .. })
        ));

        let mut b = Builder::new();
        b.entry = MEM;
        assert!(matches!(plan(&b.build(), MEM), Err(ElfError::Entry { .. })));

        let mut b = Builder::new();
        b.phdrs
            .push((PT_LOAD, PF_R, 0x100800, vec![0; 16], 16, 0x1000));
        assert_eq!(plan(&b.build(), MEM), Err(ElfError::Overlap(1)));

        let mut b = Builder::new();
        b.phdrs[0].5 = 3;
        assert_eq!(plan(&b.build(), MEM), Err(ElfError::Align(0)));

        let mut b = Builder::new();
        b.phdrs[0].4 = 8;
        assert_eq!(plan(&b.build(), MEM), Err(ElfError::MemSize(0)));

        let img = Builder::new().build();
        assert_eq!(
            plan(&img[..img.len() - 1], MEM),
            Err(ElfError::SegmentTruncated(0))
        );

        let mut b = Builder::new();
        b.phdrs[0].0 = PT_NOTE;
        assert_eq!(plan(&b.build(), MEM), Err(ElfError::NoSegments));
    }

    #[test]
    fn sections_are_found_by_name() {
        // An ELF header, then three section headers (null, the trace
        // buffer, the name table), then the names.
        let names = b"\0.morgana.trace\0.shstrtab\0";
        let shoff = 64usize;
        let str_off = shoff + 3 * 64;
        let mut img = vec![0u8; str_off + names.len()];
        img[..4].copy_from_slice(b"\x7fELF");
        img[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        img[58..60].copy_from_slice(&64u16.to_le_bytes());
        img[60..62].copy_from_slice(&3u16.to_le_bytes());
        img[62..64].copy_from_slice(&2u16.to_le_bytes());
        let sh = |img: &mut Vec<u8>, i: usize, name: u32, addr: u64, off: u64, size: u64| {
            let o = shoff + i * 64;
            img[o..o + 4].copy_from_slice(&name.to_le_bytes());
            img[o + 16..o + 24].copy_from_slice(&addr.to_le_bytes());
            img[o + 24..o + 32].copy_from_slice(&off.to_le_bytes());
            img[o + 32..o + 40].copy_from_slice(&size.to_le_bytes());
        };
        sh(&mut img, 1, 1, 0x10b000, 0, 0x10000);
        sh(&mut img, 2, 16, 0, str_off as u64, names.len() as u64);
        img[str_off..].copy_from_slice(names);
        assert_eq!(
            find_section(&img, ".morgana.trace"),
            Some((0x10b000, 0x10000))
        );
        assert_eq!(find_section(&img, ".morgana"), None);
        assert_eq!(find_section(&img, ".bss"), None);
        // Section bytes: in the file, or nothing (past its end, NOBITS).
        assert_eq!(section_bytes(&img, ".shstrtab"), Some(&names[..]));
        assert_eq!(section_bytes(&img, ".morgana.trace"), None);
        let mut nobits = img.clone();
        nobits[shoff + 2 * 64 + 4..shoff + 2 * 64 + 8].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(section_bytes(&nobits, ".shstrtab"), None);
        // Cut short, or headers pointing outside the file: nothing found.
        assert_eq!(find_section(&img[..200], ".morgana.trace"), None);
        let mut bad = img.clone();
        bad[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(find_section(&bad, ".morgana.trace"), None);
        let mut bad = img;
        sh(&mut bad, 2, 16, 0, u64::MAX - 4, 100);
        assert_eq!(find_section(&bad, ".morgana.trace"), None);
    }

    #[test]
    fn notes_are_found_and_checked() {
        let abi = |t: u32| {
            let mut d = t.to_le_bytes().to_vec();
            d.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            note(note::ABI1_NOTE_TYPE, &d)
        };
        let find = |img: &[u8]| {
            find_note(
                img,
                note::ABI1_NOTE_TYPE,
                4,
                note::ABI1_NOTE_MAX_SIZE,
                "ABI",
            )
            .map(|o| o.map(|d| d.to_vec()))
        };
        let mut b = Builder::new();
        b.phdrs.push((PT_NOTE, PF_R, 0, abi(1), 0, 4));
        let d = find(&b.build()).unwrap().unwrap();
        assert_eq!(d.len(), 16);
        assert_eq!(read_u32(&d, 0), Some(1));

        assert_eq!(find(&Builder::new().build()), Ok(None));

        let mut b = Builder::new();
        let mut n = abi(1);
        n[4..8].copy_from_slice(&64u32.to_le_bytes());
        b.phdrs.push((PT_NOTE, PF_R, 0, n, 0, 4));
        assert_eq!(
            find(&b.build()),
            Err(ElfError::NoteSize {
                what: "ABI",
                size: 64
            })
        );

        let mut b = Builder::new();
        b.phdrs.push((PT_NOTE, PF_R, 0, vec![0; 8], 0, 4));
        assert_eq!(find(&b.build()), Err(ElfError::NoteTooSmall(1)));

        // A foreign note is skipped, and the next one found.
        let mut b = Builder::new();
        let mut gnu = abi(1);
        gnu[12..18].copy_from_slice(b"GNU\0\0\0");
        b.phdrs.push((PT_NOTE, PF_R, 0, gnu, 0, 4));
        b.phdrs.push((PT_NOTE, PF_R, 0, abi(2), 0, 4));
        assert_eq!(read_u32(&find(&b.build()).unwrap().unwrap(), 0), Some(2));

        // The manifest descriptor skips its 4 bytes of internal padding.
        let mut b = Builder::new();
        let mut d = vec![0xee; 4];
        d.extend_from_slice(&[1, 0, 0, 0, 9, 0, 0, 0]);
        b.phdrs
            .push((PT_NOTE, PF_R, 0, note(note::MFT1_NOTE_TYPE, &d), 0, 8));
        let img = b.build();
        let m = find_note(&img, note::MFT1_NOTE_TYPE, 8, 6668, "manifest")
            .unwrap()
            .unwrap();
        assert_eq!(m, &[1, 0, 0, 0, 9, 0, 0, 0]);
    }
}
