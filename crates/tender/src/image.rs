//! Opening a unikernel image: read it, check its ABI note against the
//! tender's target, and validate its manifest.

use crate::elf::{self, ElfError};
use morgana_abi::mft::{Manifest, MftError};
use morgana_abi::note::{self, AbiInfo, AbiTarget};
use thiserror::Error;

/// Largest image file a tender reads (the largest guest memory).
pub const MAX_IMAGE_SIZE: u64 = morgana_abi::hvt::x86::MAX_MEM_SIZE;

/// A unikernel image whose notes have been checked.
#[derive(Debug)]
pub struct Image {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Its validated manifest.
    pub manifest: Manifest,
}

/// Why an image was refused.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("cannot read image: {0}")]
    Io(#[from] std::io::Error),
    /// The file is larger than any guest memory.
    #[error("image is {0} bytes, larger than the largest guest memory")]
    TooLarge(u64),
    /// A malformed ELF file or note.
    #[error("invalid image: {0}")]
    Elf(#[from] ElfError),
    /// No ABI note.
    #[error("no Solo5 ABI note: not a Solo5 unikernel")]
    NoAbiNote,
    /// Built for another target.
    #[error("image is built for the {found} target, not {expected}")]
    WrongTarget {
        /// The image's target.
        found: &'static str,
        /// This tender's target.
        expected: &'static str,
    },
    /// Built for another ABI version.
    #[error("image requests unsupported ABI version {found} (this tender implements {expected})")]
    WrongVersion {
        /// The image's version.
        found: u32,
        /// This tender's version.
        expected: u32,
    },
    /// No manifest note.
    #[error("no Solo5 manifest note in image")]
    NoManifest,
    /// An invalid manifest.
    #[error("invalid manifest: {0}")]
    Manifest(#[from] MftError),
}

/// Reads `path` and checks it is an image for `target` at ABI `version`
/// with a valid manifest.
pub fn open(path: &str, target: AbiTarget, version: u32) -> Result<Image, ImageError> {
    use std::io::Read;
    // One open and one fstat: the path is looked up once.
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > MAX_IMAGE_SIZE {
        return Err(ImageError::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.read_to_end(&mut bytes)?;
    check(bytes, target, version)
}

/// Checks image bytes (see [`open`]).
pub fn check(bytes: Vec<u8>, target: AbiTarget, version: u32) -> Result<Image, ImageError> {
    let abi = elf::find_note(
        &bytes,
        note::ABI1_NOTE_TYPE,
        note::ABI1_NOTE_ALIGN,
        note::ABI1_NOTE_MAX_SIZE,
        "ABI",
    )?
    .ok_or(ImageError::NoAbiNote)?;
    let info = AbiInfo::parse(abi).ok_or(ElfError::NoteSize {
        what: "ABI",
        size: abi.len() as u32,
    })?;
    if info.target != target as u32 {
        return Err(ImageError::WrongTarget {
            found: AbiTarget::from_raw(info.target).map_or("unknown", AbiTarget::name),
            expected: target.name(),
        });
    }
    if info.version != version {
        return Err(ImageError::WrongVersion {
            found: info.version,
            expected: version,
        });
    }
    let mft = elf::find_note(
        &bytes,
        note::MFT1_NOTE_TYPE,
        note::MFT1_NOTE_ALIGN,
        note::MFT1_NOTE_MAX_SIZE,
        "manifest",
    )?
    .ok_or(ImageError::NoManifest)?;
    let manifest = Manifest::validate(mft)?;
    Ok(Image { bytes, manifest })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::tests::{Builder, note};

    fn abi_desc(target: u32, version: u32) -> Vec<u8> {
        let mut d = target.to_le_bytes().to_vec();
        d.extend_from_slice(&version.to_le_bytes());
        d.extend_from_slice(&[0; 8]);
        d
    }

    fn mft_desc(entries: u32) -> Vec<u8> {
        let mut d = vec![0u8; 4];
        d.extend_from_slice(&1u32.to_le_bytes());
        d.extend_from_slice(&entries.to_le_bytes());
        for i in 0..entries {
            let mut e = [0u8; 104];
            if i == 0 {
                e[68..72].copy_from_slice(&(1u32 << 30).to_le_bytes());
            } else {
                e[..3].copy_from_slice(format!("d{:02}", i % 100).as_bytes());
                e[68..72].copy_from_slice(&2u32.to_le_bytes());
            }
            d.extend_from_slice(&e);
        }
        d
    }

    fn image(abi: Option<Vec<u8>>, mft: Option<Vec<u8>>) -> Vec<u8> {
        let mut b = Builder::new();
        if let Some(a) = abi {
            b.phdrs
                .push((4, 4, 0, note(note::ABI1_NOTE_TYPE, &a), 0, 4));
        }
        if let Some(m) = mft {
            b.phdrs
                .push((4, 4, 0, note(note::MFT1_NOTE_TYPE, &m), 0, 8));
        }
        b.build()
    }

    #[test]
    fn notes_are_checked_in_order() {
        let ok = image(Some(abi_desc(1, 2)), Some(mft_desc(3)));
        let img = check(ok, AbiTarget::Hvt, 2).unwrap();
        assert_eq!(img.manifest.len(), 3);

        let e = |b| check(b, AbiTarget::Hvt, 2).unwrap_err().to_string();
        assert_eq!(
            e(image(None, Some(mft_desc(1)))),
            "no Solo5 ABI note: not a Solo5 unikernel"
        );
        assert_eq!(
            e(image(Some(abi_desc(2, 2)), Some(mft_desc(1)))),
            "image is built for the spt target, not hvt"
        );
        assert_eq!(
            e(image(Some(abi_desc(1, 1)), Some(mft_desc(1)))),
            "image requests unsupported ABI version 1 (this tender implements 2)"
        );
        assert_eq!(
            e(image(Some(abi_desc(1, 2)), None)),
            "no Solo5 manifest note in image"
        );
        assert_eq!(
            e(image(Some(abi_desc(1, 2)), Some(mft_desc(65)))),
            "invalid image: corrupt manifest note: invalid size (6772 bytes)"
        );
        let mut corrupt = abi_desc(1, 2);
        corrupt.truncate(3);
        assert!(e(image(Some(corrupt), Some(mft_desc(1)))).contains("ABI"));
        assert!(e(image(Some(abi_desc(1, 2)), Some(mft_desc(0)))).contains("no entries"));
    }
}
