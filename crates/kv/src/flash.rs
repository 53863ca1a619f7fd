//! NOR flash over whole sectors: what sequential-storage expects, on top of
//! a block device that can only move whole sectors.
//!
//! Bits are stored inverted, so that a zero-filled disk (a new image made
//! with `truncate`) reads as erased flash (all ones) and needs no
//! formatting pass. A write ANDs the new bits into the old ones, as NOR
//! flash does, so the crate's multi-write markers behave as on real flash.

use crate::Sectors;
use alloc::boxed::Box;
use alloc::vec::Vec;
use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use morgana::BlockError;

/// Bytes in one erase page: the largest item (key and value together) must
/// fit in one page.
pub const PAGE: usize = 16 * 1024;
/// The flash word: writes are made in multiples of it.
pub const WORD: usize = 4;

/// Why a flash operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashError {
    /// The block device failed.
    Block(BlockError),
    /// An address beyond the store.
    OutOfBounds,
    /// An address or length that is not a whole number of words or pages.
    NotAligned,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Block(_) => NorFlashErrorKind::Other,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::NotAligned => NorFlashErrorKind::NotAligned,
        }
    }
}

/// Bytes of recently used sectors kept in memory (write-through): most of
/// the crate's reads are small headers next to what it just read or wrote.
const CACHE_BYTES: usize = 256 * 1024;

/// `len` bytes of flash starting `base` bytes into a sector device.
pub struct Flash<D> {
    pub(crate) dev: D,
    base: u64,
    len: u32,
    scratch: Vec<u8>,
    /// Direct-mapped: sector `s` can only be in slot `s % slots`.
    cache: Vec<Option<(u64, Box<[u8]>)>>,
}

impl<D: Sectors> Flash<D> {
    /// Flash over `len` bytes of `dev` from byte `base` (a sector boundary).
    pub fn new(dev: D, base: u64, len: u32) -> Self {
        let slots = (CACHE_BYTES / dev.sector_size()).max(8);
        Self {
            dev,
            base,
            len,
            scratch: Vec::new(),
            cache: (0..slots).map(|_| None).collect(),
        }
    }

    fn slot(&self, sector: u64) -> usize {
        (sector % self.cache.len() as u64) as usize
    }

    /// Remembers the contents of `sector`.
    fn remember(&mut self, sector: u64, data: &[u8]) {
        let slot = self.slot(sector);
        match &mut self.cache[slot] {
            Some((s, buf)) => {
                *s = sector;
                buf.copy_from_slice(data);
            }
            empty => *empty = Some((sector, data.into())),
        }
    }

    /// Checks `offset..offset + len` and returns the first sector covering
    /// it, the number of sectors and the offset of the range in them.
    fn span(&self, offset: u32, len: usize) -> Result<(u64, usize, usize), FlashError> {
        let end = u64::from(offset) + len as u64;
        if end > u64::from(self.len) {
            return Err(FlashError::OutOfBounds);
        }
        let ss = self.dev.sector_size() as u64;
        let start = self.base + u64::from(offset);
        let first = start / ss;
        let last = (self.base + end).div_ceil(ss);
        Ok((
            first,
            (last - first) as usize,
            (start - first * ss) as usize,
        ))
    }

    /// The contents of `sector`, from the cache or (then cached) the device.
    async fn sector(&mut self, sector: u64) -> Result<&[u8], FlashError> {
        let slot = self.slot(sector);
        if !matches!(&self.cache[slot], Some((s, _)) if *s == sector) {
            let mut data = alloc::vec![0u8; self.dev.sector_size()];
            self.dev
                .read(sector, &mut data)
                .await
                .map_err(FlashError::Block)?;
            self.cache[slot] = Some((sector, data.into()));
        }
        match &self.cache[slot] {
            Some((_, data)) => Ok(data),
            None => unreachable!("filled above"),
        }
    }

    /// Reads `n` sectors from `first` into the scratch buffer.
    async fn load(&mut self, first: u64, n: usize) -> Result<(), FlashError> {
        let ss = self.dev.sector_size();
        let mut scratch = core::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.resize(n * ss, 0);
        let mut r = Ok(());
        for (i, out) in scratch.chunks_mut(ss).enumerate() {
            match self.sector(first + i as u64).await {
                Ok(data) => out.copy_from_slice(data),
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        self.scratch = scratch;
        r
    }

    /// Writes the scratch buffer to the sectors from `first`.
    async fn store(&mut self, first: u64) -> Result<(), FlashError> {
        let ss = self.dev.sector_size();
        let data = core::mem::take(&mut self.scratch);
        let r = self.dev.write(first, &data).await;
        // Whatever happened, the cache must not disagree with the device.
        for (i, chunk) in data.chunks(ss).enumerate() {
            let sector = first + i as u64;
            let slot = self.slot(sector);
            if r.is_ok() {
                self.remember(sector, chunk);
            } else if matches!(&self.cache[slot], Some((s, _)) if *s == sector) {
                self.cache[slot] = None;
            }
        }
        self.scratch = data;
        r.map_err(FlashError::Block)
    }
}

impl<D> ErrorType for Flash<D> {
    type Error = FlashError;
}

impl<D: Sectors> ReadNorFlash for Flash<D> {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let (first, n, mut at) = self.span(offset, bytes.len())?;
        let ss = self.dev.sector_size();
        // Sector by sector, copying only the bytes asked for: most reads
        // are a few bytes of a cached sector.
        let mut done = 0;
        for i in 0..n as u64 {
            let data = self.sector(first + i).await?;
            let take = (ss - at).min(bytes.len() - done);
            for (b, s) in bytes[done..done + take].iter_mut().zip(&data[at..]) {
                *b = !*s;
            }
            done += take;
            at = 0;
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.len as usize
    }
}

impl<D: Sectors> NorFlash for Flash<D> {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        if from > to || !(from as usize).is_multiple_of(PAGE) || !(to as usize).is_multiple_of(PAGE)
        {
            return Err(FlashError::NotAligned);
        }
        let (first, n, _) = self.span(from, (to - from) as usize)?;
        let ss = self.dev.sector_size();
        // Erased flash is all ones, stored inverted: zeros. One page (or
        // one sector, if sectors are larger) per request.
        let per = (PAGE / ss).max(1);
        let mut s = 0;
        while s < n {
            let k = per.min(n - s);
            self.scratch.clear();
            self.scratch.resize(k * ss, 0);
            self.store(first + s as u64).await?;
            s += k;
        }
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        if !(offset as usize).is_multiple_of(WORD) || !bytes.len().is_multiple_of(WORD) {
            return Err(FlashError::NotAligned);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let (first, n, at) = self.span(offset, bytes.len())?;
        self.load(first, n).await?;
        // NOR semantics: new = old & bytes; inverted: !new = !old | !bytes.
        for (s, b) in self.scratch[at..].iter_mut().zip(bytes) {
            *s |= !*b;
        }
        self.store(first).await
    }
}

impl<D: Sectors> MultiwriteNorFlash for Flash<D> {}
