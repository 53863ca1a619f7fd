//! A persistent key-value store for Morgana unikernels (MirageOS's `KV`),
//! built from a block device and declared like any other device:
//!
//! ```no_run
//! # #![no_std]
//! # #![no_main]
//! use morgana_kv::Kv;
//!
//! #[morgana::main]
//! async fn main(storage: Kv) -> Result<(), morgana_kv::KvError> {
//!     let boots = match storage.get("boots").await? {
//!         Some(v) => u32::from_le_bytes(v.try_into().unwrap_or_default()) + 1,
//!         None => 1,
//!     };
//!     storage.set("boots", &boots.to_le_bytes()).await?;
//!     morgana::println!("boot number {boots}");
//!     Ok(())
//! }
//! ```
//!
//! `storage: Kv` declares a block device named `storage` in the manifest;
//! at boot the store is opened on it. A zero-filled device gets a new store
//! (its whole extent is read once, to make sure it is unused); a device
//! holding anything else is refused and left untouched.
//!
//! The store is [sequential-storage]'s map (a log of items in pages with
//! garbage collection, tolerant of an interrupted write) over NOR-flash
//! semantics emulated on whole sectors. Its I/O is *scheduled* block I/O:
//! it runs when the rest of the unikernel has nothing to do, so a busy
//! network service is not held up by its store. Writes from several tasks
//! are serialized; a `set` or `remove` returns once it is on the device.
//!
//! The live keys and values are also kept in memory (read in one pass when
//! the store is opened), so `get`, `exists` and `list` do no I/O: give the
//! unikernel heap for the live data ([`Store::live_bytes`]) besides some
//! 300 KiB of buffers and sector cache. The store is meant for state and configuration, not bulk
//! data.
//!
//! Limits: a key is at most 1,024 bytes of UTF-8, and one key and its
//! value must fit in a 16 KiB page with some 30 bytes of headers; the
//! store uses at most 4 GiB of its device.
//!
//! Disk layout: the first 16 KiB hold a superblock (magic, version, page
//! size and page count, checksum) in their first sector; the pages follow.
//! Each item's value starts with a tag byte: 0 (the value follows) or 1
//! (the key was removed).
//!
//! [sequential-storage]: https://docs.rs/sequential-storage

#![no_std]

extern crate alloc;

mod flash;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::mutex::Mutex;
pub use flash::FlashError;
use flash::{Flash, PAGE};
use morgana::{Block, BlockError};
use sequential_storage::cache::Cache;
use sequential_storage::cache::key_pointers::HeapKeyPointers;
use sequential_storage::cache::page_pointers::HeapPagePointers;
use sequential_storage::cache::page_states::HeapPageStates;
use sequential_storage::map::{MapConfig, MapStorage, SerializationError};

/// Whole-sector storage a [`Store`] can live on: a [`Block`] device, or
/// memory in tests.
pub trait Sectors {
    /// Bytes per sector (a power of two).
    fn sector_size(&self) -> usize;
    /// Number of sectors.
    fn sectors(&self) -> u64;
    /// Reads whole sectors from `sector` into `buf`.
    fn read(&self, sector: u64, buf: &mut [u8]) -> impl Future<Output = Result<(), BlockError>>;
    /// Writes whole sectors from `buf` at `sector`.
    fn write(&self, sector: u64, buf: &[u8]) -> impl Future<Output = Result<(), BlockError>>;
}

impl Sectors for Block {
    fn sector_size(&self) -> usize {
        self.info().sector_size as usize
    }

    fn sectors(&self) -> u64 {
        self.info().sectors
    }

    async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        Block::read(self, sector, buf).await
    }

    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        Block::write(self, sector, buf).await
    }
}

/// The longest key, in bytes.
pub const MAX_KEY: usize = 1024;

const MAGIC: &[u8; 16] = b"MORGANA-KV-STORE";
/// The first byte of a stored item's value: a value follows ...
const LIVE: u8 = 0;
/// ... or the key was removed.
const REMOVED: u8 = 1;
const VERSION: u32 = 1;
/// How many keys' locations are remembered between operations.
const KEY_CACHE: usize = 256;

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvError {
    /// The block device failed.
    Block(BlockError),
    /// The device holds something that is not a Morgana store (it was left
    /// untouched).
    NotAStore,
    /// The superblock is damaged or from another version.
    BadSuperblock(&'static str),
    /// The device is too small for a store.
    TooSmall {
        /// Bytes on the device.
        bytes: u64,
        /// Bytes a store needs at least.
        need: u64,
    },
    /// The device is shorter than the store written on it (a truncated
    /// image).
    Truncated {
        /// Bytes on the device.
        bytes: u64,
        /// Bytes the store occupies.
        need: u64,
    },
    /// A key longer than [`MAX_KEY`] bytes.
    KeyTooLong,
    /// A key and value too large for one page.
    TooLarge,
    /// No room left, even after garbage collection.
    Full,
    /// The store's contents are inconsistent.
    Corrupted,
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Block(e) => write!(f, "block device error: {e}"),
            Self::NotAStore => f.write_str(
                "the device holds data that is not a Morgana key-value store \
                 (left untouched; give a zero-filled device to make a new store)",
            ),
            Self::BadSuperblock(why) => write!(f, "bad store superblock: {why}"),
            Self::TooSmall { bytes, need } => write!(
                f,
                "the device has {bytes} bytes, a store needs at least {need}"
            ),
            Self::Truncated { bytes, need } => write!(
                f,
                "the device has {bytes} bytes but the store on it needs {need} (truncated image?)"
            ),
            Self::KeyTooLong => write!(f, "key longer than {MAX_KEY} bytes"),
            Self::TooLarge => f.write_str("key and value do not fit in one 16 KiB page"),
            Self::Full => f.write_str("the store is full"),
            Self::Corrupted => f.write_str("the store's contents are corrupted"),
        }
    }
}

impl core::error::Error for KvError {}

impl From<sequential_storage::Error<FlashError>> for KvError {
    fn from(e: sequential_storage::Error<FlashError>) -> Self {
        use sequential_storage::Error as E;
        match e {
            E::Storage {
                value: FlashError::Block(b),
                ..
            } => Self::Block(b),
            E::FullStorage => Self::Full,
            E::ItemTooBig
            | E::BufferTooSmall(_)
            | E::BufferTooBig
            | E::SerializationError(SerializationError::BufferTooSmall) => Self::TooLarge,
            E::SerializationError(_) | E::Storage { .. } | E::Corrupted { .. } | _ => {
                Self::Corrupted
            }
        }
    }
}

/// How a store is laid out on its device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    /// Bytes per page.
    pub page_size: u32,
    /// Number of pages.
    pub pages: u32,
    /// Whether the store was created (formatted) when it was opened.
    pub created: bool,
}

type KeyCache = Cache<HeapPageStates, HeapPagePointers, HeapKeyPointers<String>, String>;

struct Inner<D: Sectors> {
    map: MapStorage<String, Flash<D>, KeyCache>,
    /// Holds one serialized item.
    buf: Vec<u8>,
}

/// A key-value store on whole-sector storage `D`.
pub struct Store<D: Sectors> {
    inner: Mutex<NoopRawMutex, Inner<D>>,
    /// The live contents, as on the device (read once, when opened).
    mirror: RefCell<BTreeMap<String, Vec<u8>>>,
    info: StoreInfo,
}

/// The store a unikernel declares: one on a [`Block`] device.
pub type Kv = Store<Block>;

/// A superblock for `pages` pages.
fn superblock(pages: u32, sector: usize) -> Vec<u8> {
    let mut s = alloc::vec![0u8; sector];
    s[..16].copy_from_slice(MAGIC);
    s[16..20].copy_from_slice(&VERSION.to_le_bytes());
    s[20..24].copy_from_slice(&(PAGE as u32).to_le_bytes());
    s[24..28].copy_from_slice(&pages.to_le_bytes());
    let sum = fnv1a(&s[..28]);
    s[28..32].copy_from_slice(&sum.to_le_bytes());
    s
}

/// FNV-1a, 32 bits: a checksum of the superblock.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h: u32, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn u32_at(s: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]])
}

impl<D: Sectors> Store<D> {
    /// Opens the store on `dev`, creating it if `dev` is zero-filled.
    /// A device holding anything else is refused with
    /// [`KvError::NotAStore`] and not written to.
    pub async fn open(dev: D) -> Result<Self, KvError> {
        let ss = dev.sector_size();
        let bytes = dev.sectors() * ss as u64;
        // The pages start after the superblock's page (or sector, if
        // sectors are larger), so every page starts on a sector boundary.
        let base = PAGE.max(ss) as u64;
        let need = base + 2 * PAGE as u64;
        if bytes < need {
            return Err(KvError::TooSmall { bytes, need });
        }
        let fit = ((bytes - base) / PAGE as u64).min(u64::from(u32::MAX) / PAGE as u64) as u32;
        let mut sector = alloc::vec![0u8; ss];
        dev.read(0, &mut sector).await.map_err(KvError::Block)?;
        let (pages, created) = if &sector[..16] == MAGIC {
            if fnv1a(&sector[..28]) != u32_at(&sector, 28) {
                return Err(KvError::BadSuperblock("checksum mismatch"));
            }
            if u32_at(&sector, 16) != VERSION {
                return Err(KvError::BadSuperblock("unknown version"));
            }
            if u32_at(&sector, 20) != PAGE as u32 {
                return Err(KvError::BadSuperblock("unexpected page size"));
            }
            let pages = u32_at(&sector, 24);
            if pages < 2 {
                return Err(KvError::BadSuperblock("fewer than 2 pages"));
            }
            let need = base + u64::from(pages) * PAGE as u64;
            if need > bytes {
                return Err(KvError::Truncated { bytes, need });
            }
            (pages, false)
        } else {
            // Only an unused device is formatted: every byte the store
            // would occupy must be zero. This reads the device once, when
            // the store is created.
            let mut chunk = alloc::vec![0u8; base as usize];
            let end = (base + u64::from(fit) * PAGE as u64) / ss as u64;
            let step = chunk.len() as u64 / ss as u64;
            let mut at = 0;
            while at < end {
                dev.read(at, &mut chunk).await.map_err(KvError::Block)?;
                if chunk.iter().any(|&b| b != 0) {
                    return Err(KvError::NotAStore);
                }
                at += step;
            }
            dev.write(0, &superblock(fit, ss))
                .await
                .map_err(KvError::Block)?;
            (fit, true)
        };
        let len = pages * PAGE as u32;
        let flash = Flash::new(dev, base, len);
        let config = MapConfig::<Flash<D>>::try_new(0..len)
            .map_err(|_| KvError::BadSuperblock("invalid page range"))?;
        let cache = Cache::new(
            HeapPageStates::new(pages as usize),
            HeapPagePointers::new(pages as usize),
            HeapKeyPointers::new(KEY_CACHE),
        );
        let mut inner = Inner {
            map: MapStorage::new(flash, config, cache),
            buf: alloc::vec![0u8; PAGE],
        };
        // One pass over the log, oldest item first: the last value of
        // each key wins.
        let mut mirror = BTreeMap::new();
        if !created {
            let Inner { map, buf } = &mut inner;
            let mut items = map.fetch_all_items(buf).await?;
            let mut item = alloc::vec![0u8; PAGE];
            while let Some((k, v)) = items.next::<&[u8]>(&mut item).await? {
                match v.split_first() {
                    Some((&LIVE, value)) => mirror.insert(k, value.to_vec()),
                    Some((&REMOVED, [])) => mirror.remove(&k),
                    _ => return Err(KvError::Corrupted),
                };
            }
        }
        Ok(Self {
            inner: Mutex::new(inner),
            mirror: RefCell::new(mirror),
            info: StoreInfo {
                page_size: PAGE as u32,
                pages,
                created,
            },
        })
    }

    /// How the store is laid out.
    pub fn info(&self) -> StoreInfo {
        self.info
    }

    fn key(key: &str) -> Result<String, KvError> {
        if key.len() > MAX_KEY {
            return Err(KvError::KeyTooLong);
        }
        Ok(String::from(key))
    }

    /// The value stored under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Self::key(key)?;
        Ok(self.mirror.borrow().get(key).cloned())
    }

    /// Whether a value is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        Self::key(key)?;
        Ok(self.mirror.borrow().contains_key(key))
    }

    /// Stores `value` under `key`, replacing any earlier value. Once this
    /// returns, the value is on the device.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let key = Self::key(key)?;
        let mut g = self.inner.lock().await;
        let Inner { map, buf } = &mut *g;
        let mut item = Vec::with_capacity(value.len() + 1);
        item.push(LIVE);
        item.extend_from_slice(value);
        map.store_item(buf, &key, &&item[..]).await?;
        self.mirror.borrow_mut().insert(key, value.to_vec());
        Ok(())
    }

    /// Removes `key` and its value (nothing happens if it is absent).
    ///
    /// A removal is one small write, like a `set`: the key's last item
    /// becomes a tombstone (the key and 1 byte), which garbage collection
    /// keeps until the key is set again.
    pub async fn remove(&self, key: &str) -> Result<(), KvError> {
        let key = Self::key(key)?;
        let mut g = self.inner.lock().await;
        if !self.mirror.borrow().contains_key(&key) {
            return Ok(());
        }
        let Inner { map, buf } = &mut *g;
        map.store_item(buf, &key, &&[REMOVED][..]).await?;
        self.mirror.borrow_mut().remove(&key);
        Ok(())
    }

    /// Every key in the store, in order.
    pub async fn list(&self) -> Result<Vec<String>, KvError> {
        Ok(self.mirror.borrow().keys().cloned().collect())
    }

    /// Bytes of keys and values in the store (what it holds in memory).
    pub fn live_bytes(&self) -> usize {
        self.mirror
            .borrow()
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
}

impl morgana::Device for Store<Block> {
    const NEEDS: &'static [morgana::abi::mft::DeviceKind] = &[morgana::abi::mft::DeviceKind::Block];

    async fn connect(names: &'static [&'static str]) -> Result<Self, morgana::DeviceError> {
        let block = Block::acquire(names[0])?;
        Store::open(block)
            .await
            .map_err(|e| morgana::DeviceError::new(names[0], e))
    }
}

#[cfg(test)]
mod tests;
