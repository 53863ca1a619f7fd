//! A tar archive on a block device as a read-only store.
//!
//! The archive is indexed once, when the device is connected: its headers
//! are read in order (scheduled block I/O) and every regular file's name,
//! data offset and size kept in memory; values are read from the device
//! when asked for. Formats: the POSIX ustar (with its name prefix), GNU
//! tar's long names (`L` entries) and pax extended headers (`path` and
//! `size`), so archives made by GNU tar, bsdtar or Python's tarfile work.
//! Directories, links and other entries are skipped.
//!
//! The no_std tar crates take the whole archive as one slice in memory;
//! this reader keeps only the index and reads the device on demand, which
//! is why it is a small parser of its own.

use crate::{KvRo, KvRoError, key};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use morgana::Block;

const HEADER: u64 = 512;

/// A tar archive on a block device, indexed at boot.
pub struct Tar {
    block: Block,
    /// Key to (byte offset of the data on the device, size).
    index: BTreeMap<String, (u64, u64)>,
}

fn not_tar(why: impl Into<String>) -> KvRoError {
    KvRoError::NotATar(why.into())
}

/// An octal (or, with the top bit of the first byte set, base-256) number
/// field.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let mut v: u64 = 0;
    let mut digits = 0;
    for &b in field {
        match b {
            b'0'..=b'7' => {
                v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
                digits += 1;
            }
            b' ' | 0 if digits > 0 => break,
            b' ' => {}
            0 => break,
            _ => return None,
        }
    }
    Some(v)
}

/// A NUL-terminated string field.
fn text(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Whether the header's checksum is right.
fn checksum_ok(h: &[u8]) -> bool {
    let Some(want) = number(&h[148..156]) else {
        return false;
    };
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    sum == want
}

/// The `path` and `size` records of a pax extended header.
fn pax(mut data: &[u8]) -> (Option<Vec<u8>>, Option<u64>) {
    let (mut path, mut size) = (None, None);
    while let Some(sp) = data.iter().position(|&b| b == b' ') {
        let Some(len) = core::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        if len <= sp + 1 || len > data.len() {
            break;
        }
        let record = &data[sp + 1..len - 1];
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            let (k, v) = (&record[..eq], &record[eq + 1..]);
            match k {
                b"path" => path = Some(v.to_vec()),
                b"size" => {
                    size = core::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
                }
                _ => {}
            }
        }
        data = &data[len..];
    }
    (path, size)
}

/// The key of an entry name: without `./` and leading `/`.
fn key_of(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    let mut s: &str = &s;
    loop {
        if let Some(r) = s.strip_prefix("./") {
            s = r;
        } else if let Some(r) = s.strip_prefix('/') {
            s = r;
        } else {
            break;
        }
    }
    s.to_string()
}

/// Reads `len` bytes at byte `at` of `block` (scheduled).
async fn read_bytes(block: &Block, at: u64, len: usize) -> Result<Vec<u8>, KvRoError> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let ss = u64::from(block.info().sector_size);
    let first = at / ss;
    let last = (at + len as u64).div_ceil(ss);
    let mut buf = alloc::vec![0u8; ((last - first) * ss) as usize];
    block
        .read(first, &mut buf)
        .await
        .map_err(KvRoError::Block)?;
    let skip = (at - first * ss) as usize;
    buf.drain(..skip);
    buf.truncate(len);
    Ok(buf)
}

impl Tar {
    /// Indexes the tar archive on `block`. A device that does not start
    /// with a valid tar header, or whose archive is damaged or cut short,
    /// is refused with [`KvRoError::NotATar`].
    pub async fn open(block: Block) -> Result<Self, KvRoError> {
        let end = block.info().capacity();
        let mut index = BTreeMap::new();
        let mut at = 0u64;
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax_path: Option<Vec<u8>> = None;
        let mut pax_size: Option<u64> = None;
        let mut headers = 0u64;
        while at + HEADER <= end {
            let h = read_bytes(&block, at, HEADER as usize).await?;
            if h.iter().all(|&b| b == 0) {
                if headers == 0 {
                    return Err(not_tar("the device starts with a zero block"));
                }
                break;
            }
            if !checksum_ok(&h) {
                return Err(not_tar(if headers == 0 {
                    "no tar header at the start of the device".to_string()
                } else {
                    alloc::format!("bad header checksum at byte {at}")
                }));
            }
            headers += 1;
            let size = number(&h[124..136])
                .ok_or_else(|| not_tar(alloc::format!("bad size field at byte {at}")))?;
            let size = match h[156] {
                b'0' | 0 | b'7' => pax_size.take().unwrap_or(size),
                _ => size,
            };
            let data = at + HEADER;
            let next = size
                .div_ceil(HEADER)
                .checked_mul(HEADER)
                .and_then(|n| data.checked_add(n))
                .ok_or_else(|| not_tar("entry size overflows"))?;
            if data + size > end {
                return Err(not_tar(alloc::format!(
                    "the archive is cut short (an entry at byte {at} ends past the device's {end} bytes)"
                )));
            }
            match h[156] {
                b'L' => {
                    let n = read_bytes(&block, data, size as usize).await?;
                    long_name = Some(text(&n).to_vec());
                }
                b'x' => {
                    let d = read_bytes(&block, data, size as usize).await?;
                    let (p, s) = pax(&d);
                    pax_path = p;
                    pax_size = s;
                }
                b'0' | 0 | b'7' => {
                    let name = match (pax_path.take(), long_name.take()) {
                        (Some(p), _) | (None, Some(p)) => p,
                        (None, None) => {
                            let mut n = Vec::new();
                            let prefix = text(&h[345..500]);
                            if &h[257..262] == b"ustar" && !prefix.is_empty() {
                                n.extend_from_slice(prefix);
                                n.push(b'/');
                            }
                            n.extend_from_slice(text(&h[..100]));
                            n
                        }
                    };
                    let k = key_of(&name);
                    if !k.is_empty() {
                        index.insert(k, (data, size));
                    }
                }
                _ => {
                    // Directories, links, devices, global pax headers.
                    pax_path = None;
                    long_name = None;
                }
            }
            at = next;
        }
        if headers == 0 {
            return Err(not_tar("the device is smaller than one tar header"));
        }
        Ok(Self { block, index })
    }

    fn entry(&self, k: &str) -> Result<(u64, u64), KvRoError> {
        let k = key(k);
        self.index
            .get(k)
            .copied()
            .ok_or_else(|| KvRoError::UnknownKey(k.to_string()))
    }
}

impl KvRo for Tar {
    async fn get(&self, k: &str) -> Result<Vec<u8>, KvRoError> {
        let (at, size) = self.entry(k)?;
        read_bytes(&self.block, at, size as usize).await
    }

    async fn read(&self, k: &str, offset: u64, len: usize) -> Result<Vec<u8>, KvRoError> {
        let (at, size) = self.entry(k)?;
        let from = offset.min(size);
        let n = (len as u64).min(size - from) as usize;
        read_bytes(&self.block, at + from, n).await
    }

    async fn size(&self, k: &str) -> Result<u64, KvRoError> {
        self.entry(k).map(|(_, size)| size)
    }

    async fn list(&self) -> Result<Vec<String>, KvRoError> {
        Ok(self.index.keys().cloned().collect())
    }

    async fn exists(&self, k: &str) -> Result<bool, KvRoError> {
        Ok(self.entry(k).is_ok())
    }
}

impl morgana::Device for Tar {
    const NEEDS: &'static [morgana::abi::mft::DeviceKind] = &[morgana::abi::mft::DeviceKind::Block];

    async fn connect(names: &'static [&'static str]) -> Result<Self, morgana::DeviceError> {
        let block = Block::acquire(names[0])?.into_read_only();
        Tar::open(block)
            .await
            .map_err(|e| morgana::DeviceError::new(names[0], e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"   17 \0"), Some(0o17));
        assert_eq!(number(&[0x80, 0, 0, 1, 0]), Some(256));
        assert_eq!(number(b"12x"), None);
    }

    #[test]
    fn pax_records() {
        let (p, s) = pax(b"18 path=a/b/c.txt\n11 size=42\n");
        assert_eq!(p.as_deref(), Some(&b"a/b/c.txt"[..]));
        assert_eq!(s, Some(42));
    }

    #[test]
    fn keys() {
        assert_eq!(key_of(b"./a/b"), "a/b");
        assert_eq!(key_of(b"/x"), "x");
    }
}
