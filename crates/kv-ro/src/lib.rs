//! Read-only key-value stores for Morgana unikernels (MirageOS's `KV_RO`):
//! a website's files, certificates, configuration. Two stores implement
//! one trait, [`KvRo`]:
//!
//! * [`Baked`]: data baked into the image at build time from a directory
//!   (MirageOS's `crunch`), named in the build script with
//!   `morgana_crunch::bake` and included with [`include_baked!`]; no disk
//!   is needed;
//! * [`Tar`]: a tar archive on a block device (MirageOS's `tar` KV),
//!   declared like any device (`files: Tar`), indexed once at boot with
//!   *scheduled* block I/O and read from the device on demand.
//!
//! ```ignore
//! # #![no_std]
//! # #![no_main]
//! use morgana_kv_ro::{Baked, KvRo, Tar};
//!
//! static SITE: Baked = morgana_kv_ro::include_baked!("site");
//!
//! #[morgana::main]
//! async fn main(files: Tar) -> Result<(), morgana_kv_ro::KvRoError> {
//!     let page = SITE.get("index.html").await?;
//!     let conf = files.read("etc/app.conf", 0, 4096).await?;
//!     morgana::println!("{} and {} bytes", page.len(), conf.len());
//!     Ok(())
//! }
//! ```
//!
//! Keys are paths relative to the directory or archive root, with `/`
//! between components (a leading `/` is ignored); only regular files are
//! keys.

#![no_std]

extern crate alloc;

mod tar;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use morgana::BlockError;
pub use tar::Tar;

/// Why a read-only store operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvRoError {
    /// No value under this key.
    UnknownKey(String),
    /// The block device failed.
    Block(BlockError),
    /// The device does not hold a tar archive (or holds a damaged one).
    NotATar(String),
}

impl fmt::Display for KvRoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey(k) => write!(f, "unknown key {k:?}"),
            Self::Block(e) => write!(f, "block device error: {e}"),
            Self::NotATar(why) => write!(f, "the device does not hold a tar archive ({why})"),
        }
    }
}

impl core::error::Error for KvRoError {}

/// A read-only key-value store (MirageOS's `KV_RO`).
pub trait KvRo {
    /// The whole value under `key`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, KvRoError>>;
    /// Up to `len` bytes of the value under `key` from byte `offset`:
    /// fewer (possibly none) where the value ends.
    fn read(
        &self,
        key: &str,
        offset: u64,
        len: usize,
    ) -> impl Future<Output = Result<Vec<u8>, KvRoError>>;
    /// The size in bytes of the value under `key`.
    fn size(&self, key: &str) -> impl Future<Output = Result<u64, KvRoError>>;
    /// Every key, in byte order.
    fn list(&self) -> impl Future<Output = Result<Vec<String>, KvRoError>>;
    /// Whether there is a value under `key`.
    fn exists(&self, key: &str) -> impl Future<Output = Result<bool, KvRoError>>;
}

/// `key` without a leading `/`.
fn key(k: &str) -> &str {
    k.trim_start_matches('/')
}

/// The part of `value` that `read(offset, len)` gives.
fn window(value: &[u8], offset: u64, len: usize) -> &[u8] {
    let from = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(value.len());
    &value[from..from + len.min(value.len() - from)]
}

/// Data baked into the image: sorted `(key, value)` pairs, made by
/// `morgana_crunch` and [`include_baked!`].
#[derive(Clone, Copy, Debug)]
pub struct Baked {
    files: &'static [(&'static str, &'static [u8])],
}

impl Baked {
    /// A store of `files`, which must be sorted by key (as
    /// `morgana_crunch` writes them).
    pub const fn new(files: &'static [(&'static str, &'static [u8])]) -> Self {
        Self { files }
    }

    /// The value under `key`, without copying it.
    pub fn get_static(&self, k: &str) -> Result<&'static [u8], KvRoError> {
        let k = key(k);
        self.files
            .binary_search_by(|(name, _)| name.as_bytes().cmp(k.as_bytes()))
            .map(|i| self.files[i].1)
            .map_err(|_| KvRoError::UnknownKey(k.to_string()))
    }

    /// Every key and value, in key order.
    pub fn entries(&self) -> &'static [(&'static str, &'static [u8])] {
        self.files
    }
}

impl KvRo for Baked {
    async fn get(&self, k: &str) -> Result<Vec<u8>, KvRoError> {
        self.get_static(k).map(<[u8]>::to_vec)
    }

    async fn read(&self, k: &str, offset: u64, len: usize) -> Result<Vec<u8>, KvRoError> {
        self.get_static(k).map(|v| window(v, offset, len).to_vec())
    }

    async fn size(&self, k: &str) -> Result<u64, KvRoError> {
        self.get_static(k).map(|v| v.len() as u64)
    }

    async fn list(&self) -> Result<Vec<String>, KvRoError> {
        Ok(self.files.iter().map(|(k, _)| (*k).to_string()).collect())
    }

    async fn exists(&self, k: &str) -> Result<bool, KvRoError> {
        Ok(self.get_static(k).is_ok())
    }
}

/// The store that `morgana_crunch::bake(name, dir)` made in the build
/// script: `static SITE: Baked = include_baked!("site");`.
#[macro_export]
macro_rules! include_baked {
    ($name:literal) => {
        include!(concat!(env!("OUT_DIR"), "/morgana-baked-", $name, ".rs"))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(window(b"hello", 1, 3), b"ell");
        assert_eq!(window(b"hello", 3, 10), b"lo");
        assert_eq!(window(b"hello", 5, 1), b"");
        assert_eq!(window(b"hello", u64::MAX, 1), b"");
    }

    #[test]
    fn baked_lookup() {
        static B: Baked = Baked::new(&[("a", b"1"), ("b/c", b"23")]);
        assert_eq!(B.get_static("/b/c"), Ok(&b"23"[..]));
        assert_eq!(
            B.get_static("x"),
            Err(KvRoError::UnknownKey(String::from("x")))
        );
    }
}
