//! Block devices (MirageOS `BLOCK`): whole sectors, read and written either
//! *atomically* (done at once, nothing else runs meanwhile) or *scheduled*
//! (queued at the lowest priority, done when the scheduler checks for
//! events or has nothing else to do, in the order queued).
//!
//! Every operation takes a starting sector and a buffer whose length is a
//! non-zero multiple of the sector size, so a multi-sector transfer is one
//! call; underneath, the platform moves one sector at a time.

use crate::device::{Device, DeviceError};
use crate::exec::{self, BlockOp};
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use morgana_abi::Solo5Result;
use morgana_abi::mft::DeviceKind;

/// What a block device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// Whether writes are allowed.
    pub read_write: bool,
    /// Bytes per sector (a power of two, at least 512).
    pub sector_size: u32,
    /// Number of sectors.
    pub sectors: u64,
}

impl BlockInfo {
    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.sectors * u64::from(self.sector_size)
    }
}

/// A block device error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// A write to a read-only device.
    ReadOnly,
    /// Sectors beyond the end of the device.
    OutOfRange,
    /// A buffer that is not a non-zero multiple of the sector size.
    Misaligned,
    /// The platform reported an error.
    Device(Solo5Result),
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadOnly => f.write_str("block device is read-only"),
            Self::OutOfRange => f.write_str("sector out of range"),
            Self::Misaligned => f.write_str("buffer is not a whole number of sectors"),
            Self::Device(r) => write!(f, "device error ({r:?})"),
        }
    }
}

impl core::error::Error for BlockError {}

/// A block device, acquired by name.
#[derive(Debug)]
pub struct Block {
    handle: u64,
    info: BlockInfo,
}

impl Block {
    /// Acquires the block device `name` declared in the manifest.
    pub fn acquire(name: &'static str) -> Result<Self, DeviceError> {
        let (handle, e) = crate::boot::acquire(name, DeviceKind::Block)
            .map_err(|err| DeviceError::new(name, err))?;
        let (capacity, sector) = e.block();
        let sector_size = u32::from(sector.max(1));
        Ok(Self {
            handle,
            info: BlockInfo {
                read_write: true,
                sector_size,
                sectors: capacity / u64::from(sector_size),
            },
        })
    }

    /// The device's handle (its manifest index).
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// What the device is.
    pub fn info(&self) -> BlockInfo {
        self.info
    }

    /// This device, refusing writes from now on.
    pub fn into_read_only(mut self) -> Self {
        self.info.read_write = false;
        self
    }

    /// Checks a transfer of `len` bytes from `sector`; returns the number of
    /// sectors.
    fn check(&self, sector: u64, len: usize, write: bool) -> Result<u64, BlockError> {
        if write && !self.info.read_write {
            return Err(BlockError::ReadOnly);
        }
        let ss = self.info.sector_size as usize;
        if len == 0 || !len.is_multiple_of(ss) {
            return Err(BlockError::Misaligned);
        }
        let n = (len / ss) as u64;
        match sector.checked_add(n) {
            Some(end) if end <= self.info.sectors => Ok(n),
            _ => Err(BlockError::OutOfRange),
        }
    }

    fn offset(&self, sector: u64) -> u64 {
        sector * u64::from(self.info.sector_size)
    }

    /// Reads sectors `sector..` into `buf` now; nothing else runs meanwhile.
    pub fn atomic_read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check(sector, buf.len(), false)?;
        let ss = self.info.sector_size as usize;
        for (i, chunk) in buf.chunks_mut(ss).enumerate() {
            crate::platform::block_read(self.handle, self.offset(sector + i as u64), chunk)
                .map_err(BlockError::Device)?;
        }
        Ok(())
    }

    /// Writes `buf` to sectors `sector..` now; nothing else runs meanwhile.
    pub fn atomic_write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check(sector, buf.len(), true)?;
        let ss = self.info.sector_size as usize;
        for (i, chunk) in buf.chunks(ss).enumerate() {
            crate::platform::block_write(self.handle, self.offset(sector + i as u64), chunk)
                .map_err(BlockError::Device)?;
        }
        Ok(())
    }

    /// Reads sectors `sector..` into `buf`, scheduled: the read is queued
    /// and done when the scheduler is otherwise idle; other tasks run.
    pub fn read<'a>(&'a self, sector: u64, buf: &'a mut [u8]) -> Scheduled<'a> {
        let check = self.check(sector, buf.len(), false);
        Scheduled {
            block: self,
            sector,
            out: Some(buf),
            data: None,
            ops: Vec::new(),
            error: check.err(),
            enqueued: false,
            done: false,
            yielded: false,
        }
    }

    /// Writes `buf` to sectors `sector..`, scheduled (see [`Block::read`]).
    /// The data is copied when the call is made.
    pub fn write<'a>(&'a self, sector: u64, buf: &[u8]) -> Scheduled<'a> {
        let check = self.check(sector, buf.len(), true);
        Scheduled {
            block: self,
            sector,
            out: None,
            data: Some(buf.into()),
            ops: Vec::new(),
            error: check.err(),
            enqueued: false,
            done: false,
            yielded: false,
        }
    }
}

/// Future of a scheduled [`Block::read`] or [`Block::write`].
#[must_use = "futures do nothing unless awaited"]
pub struct Scheduled<'a> {
    block: &'a Block,
    sector: u64,
    out: Option<&'a mut [u8]>,
    data: Option<Box<[u8]>>,
    ops: Vec<Rc<BlockOp>>,
    error: Option<BlockError>,
    enqueued: bool,
    done: bool,
    yielded: bool,
}

impl Scheduled<'_> {
    fn enqueue(&mut self) {
        let ss = self.block.info.sector_size as usize;
        let write = self.data.is_some();
        let len = self.out.as_deref().map_or(0, <[u8]>::len)
            + self.data.as_deref().map_or(0, <[u8]>::len);
        for i in 0..len / ss {
            let buf: Box<[u8]> = match &self.data {
                Some(d) => d[i * ss..(i + 1) * ss].into(),
                None => alloc::vec![0u8; ss].into_boxed_slice(),
            };
            let op = Rc::new(BlockOp {
                handle: self.block.handle,
                offset: self.block.offset(self.sector + i as u64),
                write,
                buf: RefCell::new(buf),
                result: Cell::new(None),
                waker: RefCell::new(None),
                cancelled: Cell::new(false),
            });
            exec::queue_block_op(op.clone());
            self.ops.push(op);
        }
    }
}

impl Future for Scheduled<'_> {
    type Output = Result<(), BlockError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(e) = this.error {
            return Poll::Ready(Err(e));
        }
        if this.done {
            return Poll::Ready(Ok(()));
        }
        if !this.enqueued {
            this.enqueue();
            this.enqueued = true;
        }
        if exec::coop(cx, &mut this.yielded) {
            return Poll::Pending;
        }
        // Operations complete in order: the last one done means all are.
        let last = this.ops.last().expect("at least one sector");
        if last.result.get().is_none() {
            *last.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let ss = this.block.info.sector_size as usize;
        for (i, op) in this.ops.iter().enumerate() {
            if let Some(Err(e)) = op.result.get() {
                return Poll::Ready(Err(BlockError::Device(e)));
            }
            if let Some(out) = this.out.as_deref_mut() {
                out[i * ss..(i + 1) * ss].copy_from_slice(&op.buf.borrow());
            }
        }
        this.ops.clear();
        this.done = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Scheduled<'_> {
    fn drop(&mut self) {
        for op in &self.ops {
            op.cancelled.set(true);
        }
    }
}

impl Device for Block {
    const NEEDS: &'static [DeviceKind] = &[DeviceKind::Block];

    async fn connect(names: &'static [&'static str]) -> Result<Self, DeviceError> {
        Block::acquire(names[0])
    }
}
