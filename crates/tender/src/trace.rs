//! `--trace=FILE`: the guest's trace buffer (`morgana_abi::trace`), kept in
//! FILE.
//!
//! The tender finds the image's `.morgana.trace` section, creates FILE
//! with the section's size and maps it `MAP_SHARED` over the guest's
//! buffer before the guest runs: every event the guest records lands in
//! the file's pages at once, so FILE holds the events while the guest
//! runs, after it exits, and after it hangs, crashes or the tender is
//! killed (even with SIGKILL). The tender writes the header (enabling
//! tracing) and, when it can, how the guest ended.

use crate::TenderError;
use crate::elf::{LoadPlan, PF_W, find_section};
use morgana_abi::trace as t;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest buffer a tender maps (a sanity bound on the image's section).
const MAX_SIZE: u64 = 64 << 20;

/// The trace file and where the buffer lies in the guest.
#[derive(Debug)]
pub struct TraceFile {
    file: File,
    /// Guest address of the buffer.
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
    /// A mapping of the header page, kept by the tender to write the end.
    header: *mut AtomicU64,
}

fn err(msg: String) -> TenderError {
    TenderError::Debug(format!("--trace: {msg}"))
}

impl TraceFile {
    /// Checks that the image has a trace buffer inside a writable segment
    /// and creates `path` for it (before anything runs, so that a bad path
    /// is reported at once).
    pub fn create(path: &Path, img: &[u8], plan: &LoadPlan) -> Result<Self, TenderError> {
        let Some((addr, size)) = find_section(img, t::SECTION) else {
            return Err(err(format!(
                "the image has no trace buffer (no {} section: it was not built with \
                 this version of Morgana's runtime)",
                t::SECTION
            )));
        };
        let page = morgana_abi::PAGE_SIZE;
        let inside = plan
            .segments
            .iter()
            .any(|s| s.flags & PF_W != 0 && addr >= s.vaddr && addr + size <= s.vaddr + s.memsz);
        if addr % page != 0
            || size % page != 0
            || !(page..=MAX_SIZE).contains(&size)
            || t::capacity(size as usize) == 0
            || !inside
        {
            return Err(err(format!(
                "the image's trace buffer [{addr:#x}, +{size:#x}) is not whole pages of its \
                 writable memory"
            )));
        }
        if let Ok(m) = std::fs::metadata(path)
            && !m.is_file()
        {
            return Err(err(format!(
                "{} is not a regular file (the trace is written to a file)",
                path.display()
            )));
        }
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
        file.set_len(size)
            .map_err(|e| err(format!("cannot size {}: {e}", path.display())))?;
        // SAFETY: a fresh shared mapping of the file's first page, anywhere.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(TenderError::last_os("--trace: mapping the trace file"));
        }
        Ok(Self {
            file,
            addr,
            size,
            header: p.cast(),
        })
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        // SAFETY: `header` maps one page (512 words) for the life of the
        // process; the header's words are in its first 64 bytes. The
        // guest writes other words of the same file concurrently, which is
        // why they are accessed as atomics.
        unsafe { &*self.header.add(i) }
    }

    /// Maps the file over the guest's buffer at host address `host` (the
    /// guest's view of `addr`) and enables tracing.
    ///
    /// # Safety
    /// `host` must be the host address of guest address `addr` in a live
    /// mapping of guest memory with at least `size` bytes from there, which
    /// holds no Rust object.
    pub unsafe fn map_over(&self, host: *mut u8) -> Result<(), TenderError> {
        // SAFETY: per the caller's contract, [host, host+size) is guest
        // memory of ours; MAP_FIXED replaces those pages with the file's.
        let p = unsafe {
            libc::mmap(
                host.cast(),
                self.size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                self.file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED || p.cast() != host {
            return Err(TenderError::last_os(
                "--trace: mapping the trace file into guest memory",
            ));
        }
        self.word(t::CAPACITY_WORD)
            .store(t::capacity(self.size as usize) as u64, Ordering::Relaxed);
        self.word(t::HEAD_WORD).store(0, Ordering::Relaxed);
        self.word(t::END_WORD).store(0, Ordering::Relaxed);
        self.word(t::MAGIC_WORD).store(t::MAGIC, Ordering::Relaxed);
        self.word(t::CONTROL_WORD)
            .store(t::CONTROL_ENABLED, Ordering::Release);
        Ok(())
    }

    /// Records how the guest ended (see `morgana_abi::trace::END_WORD`).
    pub fn set_end(&self, end: u64) {
        self.word(t::END_WORD).store(end, Ordering::Release);
    }
}

/// The end word for a guest that exited with `status`.
pub fn end_exited(status: u8) -> u64 {
    t::END_EXITED | u64::from(status) << 8
}
