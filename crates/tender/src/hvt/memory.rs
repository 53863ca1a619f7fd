//! Guest memory of an hvt virtual machine, with checked access for every
//! guest-supplied address and length, and the low-memory layout (GDT, page
//! tables) the ABI prescribes.

use crate::TenderError;
use crate::elf::{LoadPlan, PF_W};
use morgana_abi::hvt::x86;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// The guest's memory: one region at guest-physical 0.
pub struct GuestMem {
    mem: GuestMemoryMmap,
    size: u64,
    /// Ranges mapped read-only on the host (the image's code and
    /// constants): the tender must never write there for the guest.
    readonly: Vec<(u64, u64)>,
}

impl GuestMem {
    /// Allocates `size` bytes of zero-filled guest memory.
    pub fn new(size: u64) -> Result<Self, TenderError> {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size as usize)])
            .map_err(|e| TenderError::Memory(format!("cannot allocate guest memory: {e}")))?;
        Ok(Self {
            mem,
            size,
            readonly: Vec::new(),
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host address of guest-physical 0.
    pub fn host_base(&self) -> *mut u8 {
        self.mem
            .get_host_address(GuestAddress(0))
            .expect("guest memory starts at 0")
    }

    /// Checks that `[gpa, gpa + len)` lies in guest memory.
    pub fn check(&self, what: &str, gpa: u64, len: u64) -> Result<(), TenderError> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(TenderError::GuestAccess(format!(
                "{what}: gpa={gpa:#x}, len={len:#x} lies outside guest memory ({:#x} bytes)",
                self.size
            ))),
        }
    }

    /// Reads a `u64` at `gpa + off` of a hypercall argument structure.
    pub fn read_u64(&self, what: &str, gpa: u64, off: usize) -> Result<u64, TenderError> {
        let a = gpa + off as u64;
        self.check(what, a, 8)?;
        Ok(u64::from_le(self.mem.read_obj(GuestAddress(a)).map_err(
            |e| TenderError::GuestAccess(format!("{what}: {e}")),
        )?))
    }

    /// Writes a `u64` at `gpa + off`.
    pub fn write_u64(&self, what: &str, gpa: u64, off: usize, v: u64) -> Result<(), TenderError> {
        self.write(what, gpa + off as u64, &v.to_le_bytes())
    }

    /// Writes an `i32` at `gpa + off`.
    pub fn write_i32(&self, what: &str, gpa: u64, off: usize, v: i32) -> Result<(), TenderError> {
        self.write(what, gpa + off as u64, &v.to_le_bytes())
    }

    /// Checks that `[gpa, gpa + len)` lies in guest memory the tender may
    /// write: not in the image's read-only segments (a write there would
    /// fault in the tender itself).
    pub fn check_writable(&self, what: &str, gpa: u64, len: u64) -> Result<(), TenderError> {
        self.check(what, gpa, len)?;
        let end = gpa + len;
        if let Some((s, e)) = self.readonly.iter().find(|(s, e)| gpa < *e && end > *s) {
            return Err(TenderError::GuestAccess(format!(
                "{what}: gpa={gpa:#x}, len={len:#x} overlaps read-only guest memory [{s:#x}, {e:#x})"
            )));
        }
        Ok(())
    }

    /// Writes `bytes` at `gpa`.
    pub fn write(&self, what: &str, gpa: u64, bytes: &[u8]) -> Result<(), TenderError> {
        self.check_writable(what, gpa, bytes.len() as u64)?;
        self.mem
            .write_slice(bytes, GuestAddress(gpa))
            .map_err(|e| TenderError::GuestAccess(format!("{what}: {e}")))
    }

    /// Writes `bytes` at `gpa` for the debugger, also into the image's
    /// read-only segments (software breakpoints go into its code): a
    /// read-only page is made writable for the copy and read-only again
    /// right after.
    pub fn poke(&self, gpa: u64, bytes: &[u8]) -> Result<(), TenderError> {
        const WHAT: &str = "debugger write";
        self.check(WHAT, gpa, bytes.len() as u64)?;
        let mut done = 0usize;
        while done < bytes.len() {
            let at = gpa + done as u64;
            let page = at & !0xfff;
            let n = ((page + 0x1000 - at) as usize).min(bytes.len() - done);
            let chunk = &bytes[done..done + n];
            if self.check_writable(WHAT, at, n as u64).is_ok() {
                self.write(WHAT, at, chunk)?;
            } else {
                let p = self.host_base().wrapping_add(page as usize);
                let protect = |prot| {
                    // SAFETY: `page` is a page of our own guest mapping
                    // (checked above); no Rust object lives there.
                    if unsafe { libc::mprotect(p.cast(), 0x1000, prot) } != 0 {
                        return Err(TenderError::last_os("mprotect of guest memory"));
                    }
                    Ok(())
                };
                protect(libc::PROT_READ | libc::PROT_WRITE)?;
                // SAFETY: [at, at+n) lies in that page, now writable.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        chunk.as_ptr(),
                        self.host_base().wrapping_add(at as usize),
                        n,
                    )
                };
                protect(libc::PROT_READ)?;
            }
            done += n;
        }
        Ok(())
    }

    /// A host pointer to `[gpa, gpa + len)`, checked to lie in guest memory,
    /// for the tender to read.
    pub fn ptr(&self, what: &str, gpa: u64, len: u64) -> Result<*const u8, TenderError> {
        self.check(what, gpa, len)?;
        // `check` guarantees gpa + len <= size, so the offset stays in the
        // single mapping that starts at host_base().
        Ok(self.host_base().wrapping_add(gpa as usize))
    }

    /// A host pointer to `[gpa, gpa + len)`, checked to lie in guest memory
    /// the tender may write.
    pub fn ptr_mut(&self, what: &str, gpa: u64, len: u64) -> Result<*mut u8, TenderError> {
        self.check_writable(what, gpa, len)?;
        // As in `ptr`.
        Ok(self.host_base().wrapping_add(gpa as usize))
    }

    /// Copies the image's segments in and applies their protections on the
    /// host side: text and read-only data become read-only, so a guest write
    /// to them faults.
    pub fn load(&mut self, img: &[u8], plan: &LoadPlan) -> Result<(), TenderError> {
        for s in &plan.segments {
            let bytes = &img[s.offset as usize..(s.offset + s.filesz) as usize];
            self.write("image segment", s.vaddr, bytes)?;
            let prot = if s.flags & PF_W != 0 {
                libc::PROT_READ | libc::PROT_WRITE
            } else {
                libc::PROT_READ
            };
            let p = self.ptr_mut("image segment", s.prot_start, s.prot_end - s.prot_start)?;
            let len = (s.prot_end - s.prot_start) as usize;
            // SAFETY: [p, p+len) is a page-aligned range of our own guest
            // mapping (checked above); changing its protection affects no
            // Rust object.
            if unsafe { libc::mprotect(p.cast(), len, prot) } != 0 {
                return Err(TenderError::last_os("mprotect of guest memory"));
            }
            if prot & libc::PROT_WRITE == 0 {
                self.readonly.push((s.prot_start, s.prot_end));
            }
        }
        Ok(())
    }
}

/// The bytes of guest memory `[0, 0x9000)`: the GDT at 0x1000 and the
/// identity-mapped page tables at 0x2000-0x8fff, for `mem_size` bytes.
///
/// Pages below 0x10000 are not present, 0x10000-0xfffff read-only (boot
/// info, manifest, command line), 0x100000-0x1fffff 4 KiB read-write
/// pages, the rest 2 MiB read-write pages up to `mem_size`.
pub fn low_memory(mem_size: u64) -> Vec<u8> {
    let mut low = vec![0u8; (x86::PT0_BASE + 0x1000) as usize];
    let mut put = |addr: u64, v: u64| {
        let a = addr as usize;
        low[a..a + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(x86::GDT_BASE + 8, x86::GDT_CODE);
    put(x86::GDT_BASE + 16, x86::GDT_DATA);
    put(x86::PML4_BASE, x86::PDPTE_BASE | x86::PTE_P | x86::PTE_RW);
    for i in 0..4 {
        put(
            x86::PDPTE_BASE + 8 * i,
            (x86::PDE_BASE + 0x1000 * i) | x86::PTE_P | x86::PTE_RW,
        );
    }
    put(x86::PDE_BASE, x86::PT0_BASE | x86::PTE_P | x86::PTE_RW);
    let mut paddr = x86::GUEST_PAGE_SIZE;
    let mut pde = x86::PDE_BASE + 8;
    while paddr < mem_size {
        put(pde, paddr | x86::PTE_P | x86::PTE_RW | x86::PTE_PS);
        paddr += x86::GUEST_PAGE_SIZE;
        pde += 8;
    }
    for page in (x86::PT0_MAP_START..x86::GUEST_PAGE_SIZE).step_by(0x1000) {
        let flags = if page < morgana_abi::GUEST_MIN_BASE {
            x86::PTE_P
        } else {
            x86::PTE_P | x86::PTE_RW
        };
        put(x86::PT0_BASE + page / 0x1000 * 8, page | flags);
    }
    low
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(low: &[u8], addr: u64) -> u64 {
        morgana_abi::read_u64(low, addr as usize).unwrap()
    }

    #[test]
    fn page_tables_follow_the_abi() {
        let mem = 8 << 20;
        let low = low_memory(mem);
        assert_eq!(entry(&low, 0x1000), 0);
        assert_eq!(entry(&low, 0x1008), 0x00af99000000ffff);
        assert_eq!(entry(&low, 0x1010), 0x00cf93000000ffff);
        assert_eq!(entry(&low, 0x2000), 0x3003);
        assert_eq!(entry(&low, 0x3000), 0x4003);
        assert_eq!(entry(&low, 0x3018), 0x7003);
        assert_eq!(entry(&low, 0x4000), 0x8003);
        // 8 MiB: PDEs 1..=3 map 2 MiB pages, PDE 4 is empty.
        assert_eq!(entry(&low, 0x4008), 0x20_0000 | 0x83);
        assert_eq!(entry(&low, 0x4018), 0x60_0000 | 0x83);
        assert_eq!(entry(&low, 0x4020), 0);
        // PT0: nothing below 0x10000, read-only to 0x100000, then RW.
        assert_eq!(entry(&low, 0x8000), 0);
        assert_eq!(entry(&low, 0x8000 + 0xf * 8), 0);
        assert_eq!(entry(&low, 0x8000 + 0x10 * 8), 0x10000 | 1);
        assert_eq!(entry(&low, 0x8000 + 0xff * 8), 0xff000 | 1);
        assert_eq!(entry(&low, 0x8000 + 0x100 * 8), 0x100000 | 3);
        assert_eq!(entry(&low, 0x8000 + 0x1ff * 8), 0x1ff000 | 3);
        // 4 GiB fills all four page directories.
        let low = low_memory(4 << 30);
        assert_eq!(entry(&low, 0x7ff8), ((4u64 << 30) - 0x20_0000) | 0x83);
    }

    #[test]
    fn guest_accesses_are_bounds_checked() {
        let m = GuestMem::new(2 << 20).unwrap();
        assert!(m.check("t", 0, 2 << 20).is_ok());
        assert!(m.check("t", (2 << 20) - 8, 8).is_ok());
        let e = m.check("t", (2 << 20) - 7, 8).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid guest access: t: gpa=0x1ffff9")
        );
        assert!(m.check("t", u64::MAX - 3, 8).is_err());
        assert!(m.check("t", 8, u64::MAX).is_err());
        assert!(m.read_u64("t", 2 << 20, 0).is_err());
        m.write_u64("t", 0x100, 8, 42).unwrap();
        assert_eq!(m.read_u64("t", 0x108, 0).unwrap(), 42);
        assert!(m.ptr("t", 0x1000, u64::MAX).is_err());
    }

    #[test]
    fn read_only_segments_are_not_written_for_the_guest() {
        use crate::elf::{LoadPlan, PF_R, PF_W, PF_X, Segment};
        let mut m = GuestMem::new(4 << 20).unwrap();
        let seg = |vaddr: u64, flags| Segment {
            vaddr,
            offset: 0,
            filesz: 4,
            memsz: 4,
            prot_start: vaddr,
            prot_end: vaddr + 0x1000,
            flags,
        };
        let plan = LoadPlan {
            entry: 0x100000,
            end: 0x103000,
            segments: vec![
                seg(0x100000, PF_R | PF_X),
                seg(0x101000, PF_R),
                seg(0x102000, PF_R | PF_W),
            ],
        };
        m.load(&[1, 2, 3, 4], &plan).unwrap();
        for gpa in [0x100000, 0x100ffc, 0x101800] {
            let e = m.write_u64("HC argument", gpa, 0, 1).unwrap_err();
            assert!(
                e.to_string().contains("overlaps read-only guest memory"),
                "{e}"
            );
        }
        assert!(m.ptr_mut("buffer", 0x100ff0, 0x20).is_err());
        assert!(m.ptr("buffer", 0x100ff0, 0x20).is_ok());
        m.write_u64("HC argument", 0x102000, 0, 1).unwrap();
        m.write_u64("HC argument", 0xfff8, 0, 1).unwrap();
    }
}
