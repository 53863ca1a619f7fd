//! A FAT file system for Morgana unikernels (MirageOS's `FS`), built from
//! a block device and declared like any other device:
//!
//! ```no_run
//! # #![no_std]
//! # #![no_main]
//! use morgana_fs::Fs;
//!
//! #[morgana::main]
//! async fn main(disk: Fs) -> Result<(), morgana_fs::FsError> {
//!     disk.mkdir("/logs").await?;
//!     disk.write("/logs/boot.txt", 0, b"booted\n").await?;
//!     for name in disk.listdir("/logs").await? {
//!         morgana::println!("{name}: {} bytes", disk.size(&alloc::format!("/logs/{name}")).await?);
//!     }
//!     Ok(())
//! }
//! # extern crate alloc;
//! ```
//!
//! `disk: Fs` declares a block device named `disk` in the manifest; at boot
//! the FAT volume on it is mounted. A device that does not hold a FAT12,
//! FAT16 or FAT32 volume is refused with one line
//! ([`FsError::FormatNotRecognised`]) and left untouched.
//!
//! The on-disk format is FAT with long file names (VFAT), so images are
//! made and inspected with the standard tools (`mkfs.fat`, `mtools`,
//! `fsck.fat`). Underneath is the [hadris-fat] driver, in its asynchronous
//! mode, over the runtime's *scheduled* block I/O ([`Block::read`],
//! [`Block::write`]): a busy file system never holds up the network.
//!
//! Paths are absolute or relative to the root, with `/` between
//! components. Every operation that changes the volume returns once the
//! change is on the device and the volume is marked clean again, so an
//! image is consistent (`fsck.fat -n` finds nothing) between operations.
//! Operations from several tasks are serialized.
//!
//! [hadris-fat]: https://docs.rs/hadris-fat

#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use hadris_fat::FatOptions;
use hadris_fat::async_::FatFs;
use hadris_fs::local::Volume;
use hadris_fs::{ErrorKind, MountOptions, OpenOptions};
use hadris_storage::async_::BlockDevice;
use hadris_storage::{BlockIndex, BlockSize};
use morgana::{Block, BlockError};

/// Why a file system operation failed: MirageOS's FS error set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsError {
    /// A path component that must be a directory is a file.
    NotADirectory(String),
    /// The contents of a directory were read or written.
    IsADirectory(String),
    /// A directory that still has entries was destroyed.
    DirectoryNotEmpty(String),
    /// No entry `.1` in directory `.0`.
    NoDirectoryEntry(String, String),
    /// A file or directory of that name already exists.
    FileAlreadyExists(String),
    /// The volume is full.
    NoSpace,
    /// The device holds no FAT volume (it was left untouched).
    FormatNotRecognised(String),
    /// The block device failed.
    BlockDevice(BlockError),
    /// Anything else the driver reported (a damaged volume, a name FAT
    /// cannot store, an open file).
    Unknown(String),
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotADirectory(p) => write!(f, "{p}: not a directory"),
            Self::IsADirectory(p) => write!(f, "{p}: is a directory"),
            Self::DirectoryNotEmpty(p) => write!(f, "{p}: directory not empty"),
            Self::NoDirectoryEntry(d, n) => write!(f, "{d}: no entry {n:?}"),
            Self::FileAlreadyExists(p) => write!(f, "{p}: already exists"),
            Self::NoSpace => f.write_str("no space left on the file system"),
            Self::FormatNotRecognised(why) => write!(
                f,
                "the device does not hold a FAT file system ({why}; left untouched)"
            ),
            Self::BlockDevice(e) => write!(f, "block device error: {e}"),
            Self::Unknown(why) => write!(f, "file system error: {why}"),
        }
    }
}

impl core::error::Error for FsError {}

/// What [`Fs::stat`] tells about a file or directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The name within its directory (`/` for the root).
    pub filename: String,
    /// Whether the contents are read-only (FAT's read-only attribute).
    pub read_only: bool,
    /// Whether it is a directory.
    pub directory: bool,
    /// Its size in bytes (0 for a directory).
    pub size: u64,
}

/// A [`Block`] device as hadris-storage's asynchronous block device: each
/// operation is one scheduled [`Block::read`] or [`Block::write`].
pub struct Disk {
    block: Rc<Block>,
}

type Io = Pin<Box<dyn Future<Output = Result<Vec<u8>, BlockError>>>>;

/// The state of one operation of a [`Disk`]: the scheduled I/O in flight.
#[derive(Default)]
pub struct DiskOp(Option<Io>);

fn block_error(e: BlockError) -> hadris_io::Error<BlockError> {
    hadris_io::Error::device(e, "block device error")
}

impl Disk {
    fn poll_op(
        &mut self,
        state: &mut DiskOp,
        cx: &mut Context<'_>,
        start: impl FnOnce(Rc<Block>) -> Io,
    ) -> Poll<Result<Vec<u8>, BlockError>> {
        let io = state.0.get_or_insert_with(|| start(self.block.clone()));
        let r = io.as_mut().poll(cx);
        if r.is_ready() {
            state.0 = None;
        }
        r
    }
}

impl hadris_io::ErrorType for Disk {
    type Error = BlockError;
}

impl BlockDevice for Disk {
    type State = DiskOp;

    fn block_size(&self) -> BlockSize {
        BlockSize::new(self.block.info().sector_size).expect("sector size is a power of two")
    }

    fn block_count(&self) -> u64 {
        self.block.info().sectors
    }

    fn writable(&self) -> bool {
        self.block.info().read_write
    }

    fn poll_read_blocks(
        &mut self,
        state: &mut DiskOp,
        cx: &mut Context<'_>,
        first: BlockIndex,
        buf: &mut [u8],
    ) -> Poll<Result<(), hadris_io::Error<BlockError>>> {
        let (sector, len) = (first.get(), buf.len());
        // The read goes into a buffer the operation owns: `buf` is only
        // touched here, when it is done.
        self.poll_op(state, cx, |b| {
            Box::pin(async move {
                let mut data = alloc::vec![0u8; len];
                b.read(sector, &mut data).await.map(|()| data)
            })
        })
        .map(|r| {
            r.map(|data| buf.copy_from_slice(&data))
                .map_err(block_error)
        })
    }

    fn poll_write_blocks(
        &mut self,
        state: &mut DiskOp,
        cx: &mut Context<'_>,
        first: BlockIndex,
        buf: &[u8],
    ) -> Poll<Result<(), hadris_io::Error<BlockError>>> {
        let sector = first.get();
        self.poll_op(state, cx, |b| {
            let data = buf.to_vec();
            Box::pin(async move { b.write(sector, &data).await.map(|()| Vec::new()) })
        })
        .map(|r| r.map(drop).map_err(block_error))
    }

    fn cancel(&mut self, state: &mut DiskOp) {
        // Dropping a scheduled operation cancels its queued sectors.
        state.0 = None;
    }
}

type Fat = FatFs<Disk>;
type HError = hadris_io::Error<BlockError>;

/// A FAT file system on a [`Block`] device.
pub struct Fs {
    /// The mounted volume (`None` only while [`Fs::format`] runs).
    vol: RefCell<Option<Volume<Fat>>>,
    block: Rc<Block>,
}

/// The components of `path`, without empty ones and `.`.
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// `path` in normal form: `/a/b`.
fn normal(path: &str) -> String {
    let mut s = String::new();
    for c in components(path) {
        s.push('/');
        s.push_str(c);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// The directory part and the last component of a normal path.
fn split(path: &str) -> (String, String) {
    match path.rfind('/') {
        Some(0) => (String::from("/"), String::from(&path[1..])),
        Some(i) => (String::from(&path[..i]), String::from(&path[i + 1..])),
        None => (String::from("/"), String::from(path)),
    }
}

/// The FS error for `e`, which an operation on `path` met.
fn error(path: &str, e: HError) -> FsError {
    if let Some(b) = e.device_error() {
        return FsError::BlockDevice(*b);
    }
    let p = String::from(path);
    match e.kind() {
        ErrorKind::NotFound => {
            let (d, n) = split(path);
            FsError::NoDirectoryEntry(d, n)
        }
        ErrorKind::AlreadyExists => FsError::FileAlreadyExists(p),
        ErrorKind::NotADirectory => FsError::NotADirectory(p),
        ErrorKind::IsADirectory => FsError::IsADirectory(p),
        ErrorKind::DirectoryNotEmpty => FsError::DirectoryNotEmpty(p),
        ErrorKind::NoSpace => FsError::NoSpace,
        // The driver refuses writes itself when the device is read-only.
        ErrorKind::ReadOnly => FsError::BlockDevice(BlockError::ReadOnly),
        ErrorKind::NotRecognized => FsError::FormatNotRecognised(e.message().to_string()),
        kind => FsError::Unknown(alloc::format!("{path}: {kind:?}: {}", e.message())),
    }
}

async fn mount(disk: Disk) -> Result<Fat, FsError> {
    FatFs::mount(disk, MountOptions::new()).await.map_err(|e| {
        let e: HError = e.into();
        match e.kind() {
            // A device that is not FAT at all, or whose boot sector is not
            // a consistent FAT volume.
            ErrorKind::NotRecognized | ErrorKind::Corrupt | ErrorKind::Unsupported => {
                FsError::FormatNotRecognised(e.message().to_string())
            }
            _ => error("/", e),
        }
    })
}

impl Fs {
    /// Mounts the FAT volume on `block`. A device holding anything else is
    /// refused with [`FsError::FormatNotRecognised`] and not written to.
    pub async fn mount(block: Block) -> Result<Self, FsError> {
        let block = Rc::new(block);
        let fat = mount(Disk {
            block: block.clone(),
        })
        .await?;
        Ok(Self {
            vol: RefCell::new(Some(Volume::new(fat))),
            block,
        })
    }

    /// Formats a new, empty file system of `size` bytes (the whole
    /// device if `None`) over the block device and mounts it: FAT16 or
    /// FAT32 chosen by size, as `mkfs.fat` does. Everything on the volume
    /// is lost. Fails if a file is open in another task.
    pub async fn format(&self, size: Option<u64>) -> Result<(), FsError> {
        let vol = self
            .vol
            .borrow_mut()
            .take()
            .ok_or_else(|| FsError::Unknown(String::from("a format is already running")))?;
        let fat = match vol.into_inner().await {
            Ok(fat) => fat,
            Err(vol) => {
                *self.vol.borrow_mut() = Some(vol);
                return Err(FsError::Unknown(String::from(
                    "cannot format: the file system is in use",
                )));
            }
        };
        // The old volume is dropped without writing to it.
        drop(fat.into_inner());
        let mut disk = Disk {
            block: self.block.clone(),
        };
        let mut options = FatOptions::new();
        if let Some(size) = size {
            options = options.with_size(size);
        }
        let formatted = hadris_fat::async_::format(&mut disk, &options)
            .await
            .map_err(|e| error("/", e));
        let fat = match formatted {
            Ok(_) => mount(disk).await?,
            Err(e) => return Err(e),
        };
        *self.vol.borrow_mut() = Some(Volume::new(fat));
        Ok(())
    }

    /// The mounted volume (shared, so that no borrow is held across an
    /// await).
    fn vol(&self) -> Result<Volume<Fat>, FsError> {
        self.vol
            .borrow()
            .clone()
            .ok_or_else(|| FsError::Unknown(String::from("the file system is being formatted")))
    }

    /// Writes what is pending and marks the volume clean.
    async fn sync(vol: &Volume<Fat>) -> Result<(), FsError> {
        let mut fat = vol.lock().await.map_err(|e| error("/", e))?;
        fat.sync().await.map_err(|e| error("/", e))
    }

    /// Creates the directories above `path` that do not exist yet.
    async fn parents(vol: &Volume<Fat>, path: &str) -> Result<(), FsError> {
        let (dir, _) = split(path);
        if dir != "/" {
            match vol.metadata(&dir).await {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => return Err(FsError::NotADirectory(dir)),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    vol.create_dir_all(&dir).await.map_err(|e| error(&dir, e))?
                }
                Err(e) => return Err(error(&dir, e)),
            }
        }
        Ok(())
    }

    /// Creates an empty file at `path`, and the directories above it that
    /// do not exist yet. Fails with [`FsError::FileAlreadyExists`] if
    /// something is there already.
    pub async fn create(&self, path: &str) -> Result<(), FsError> {
        let path = normal(path);
        let vol = self.vol()?;
        Self::parents(&vol, &path).await?;
        let file = vol
            .open(&path, OpenOptions::new().write().create_new())
            .await
            .map_err(|e| error(&path, e))?;
        file.close().await.map_err(|e| error(&path, e))?;
        Self::sync(&vol).await
    }

    /// Creates an empty directory at `path`, and the directories above it
    /// that do not exist yet. Fails with [`FsError::FileAlreadyExists`] if
    /// something is there already.
    pub async fn mkdir(&self, path: &str) -> Result<(), FsError> {
        let path = normal(path);
        let vol = self.vol()?;
        if path == "/" {
            return Err(FsError::FileAlreadyExists(path));
        }
        Self::parents(&vol, &path).await?;
        vol.create_dir(&path).await.map_err(|e| error(&path, e))?;
        Self::sync(&vol).await
    }

    /// Removes the file or empty directory at `path`.
    pub async fn destroy(&self, path: &str) -> Result<(), FsError> {
        let path = normal(path);
        let vol = self.vol()?;
        let meta = vol.metadata(&path).await.map_err(|e| error(&path, e))?;
        if meta.file_type().is_dir() {
            vol.remove_dir(&path).await
        } else {
            vol.remove_file(&path).await
        }
        .map_err(|e| error(&path, e))?;
        Self::sync(&vol).await
    }

    /// What is at `path`.
    pub async fn stat(&self, path: &str) -> Result<Stat, FsError> {
        let path = normal(path);
        let vol = self.vol()?;
        let meta = vol.metadata(&path).await.map_err(|e| error(&path, e))?;
        let (_, name) = split(&path);
        Ok(Stat {
            filename: if path == "/" { path.clone() } else { name },
            read_only: meta.attributes().contains(hadris_fs::Attributes::READ_ONLY),
            directory: meta.file_type().is_dir(),
            size: meta.len(),
        })
    }

    /// The names of the files and directories in the directory `path`
    /// (without `.` and `..`), in the order they are on the volume.
    pub async fn listdir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let path = normal(path);
        let vol = self.vol()?;
        let mut dir = vol.read_dir(&path).await.map_err(|e| error(&path, e))?;
        let mut names = Vec::new();
        while let Some(entry) = dir.next_entry().await {
            let entry = entry.map_err(|e| error(&path, e))?;
            let name = String::from_utf8_lossy(entry.name().as_bytes()).into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// The size in bytes of the file at `path`.
    pub async fn size(&self, path: &str) -> Result<u64, FsError> {
        let st = self.stat(path).await?;
        if st.directory {
            return Err(FsError::IsADirectory(normal(path)));
        }
        Ok(st.size)
    }

    /// Up to `len` bytes of the file at `path` from byte `offset`: fewer
    /// (possibly none) when the file ends first.
    pub async fn read(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>, FsError> {
        let path = normal(path);
        let vol = self.vol()?;
        let file = vol
            .open(&path, OpenOptions::new().read())
            .await
            .map_err(|e| error(&path, e))?;
        // Never more than the file holds past `offset`.
        let len = match file.metadata().await {
            Ok(m) => len.min(
                m.len()
                    .saturating_sub(offset)
                    .try_into()
                    .unwrap_or(usize::MAX),
            ),
            Err(e) => {
                let _ = file.close().await;
                return Err(error(&path, e));
            }
        };
        let mut out = alloc::vec![0u8; len];
        let mut done = 0;
        let mut result = Ok(());
        while done < len {
            match file.read_at(offset + done as u64, &mut out[done..]).await {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => {
                    result = Err(error(&path, e));
                    break;
                }
            }
        }
        let closed = file.close().await.map_err(|e| error(&path, e));
        result?;
        closed?;
        out.truncate(done);
        Ok(out)
    }

    /// Writes `data` into the file at `path` from byte `offset`, making the
    /// file longer if needed (a gap before `offset` reads as zeros). A
    /// missing file is created (its directory must exist). Returns once
    /// the data is on the device.
    pub async fn write(&self, path: &str, offset: u64, data: &[u8]) -> Result<(), FsError> {
        let path = normal(path);
        let vol = self.vol()?;
        let file = vol
            .open(&path, OpenOptions::new().write().create())
            .await
            .map_err(|e| error(&path, e))?;
        let mut done = 0;
        let mut result = Ok(());
        while done < data.len() {
            match file.write_at(offset + done as u64, &data[done..]).await {
                Ok(0) => {
                    result = Err(FsError::NoSpace);
                    break;
                }
                Ok(n) => done += n,
                Err(e) => {
                    result = Err(error(&path, e));
                    break;
                }
            }
        }
        let closed = file.close().await.map_err(|e| error(&path, e));
        let synced = Self::sync(&vol).await;
        result?;
        closed?;
        synced
    }

    /// Bytes free on the volume.
    pub async fn free(&self) -> Result<u64, FsError> {
        let vol = self.vol()?;
        let mut fat = vol.lock().await.map_err(|e| error("/", e))?;
        let st = fat.statfs().await.map_err(|e| error("/", e))?;
        Ok(st.free_blocks() * u64::from(st.block_size()))
    }
}

impl morgana::Device for Fs {
    const NEEDS: &'static [morgana::abi::mft::DeviceKind] = &[morgana::abi::mft::DeviceKind::Block];

    async fn connect(names: &'static [&'static str]) -> Result<Self, morgana::DeviceError> {
        let block = Block::acquire(names[0])?;
        Fs::mount(block)
            .await
            .map_err(|e| morgana::DeviceError::new(names[0], e))
    }
}
