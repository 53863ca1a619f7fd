//! Boot: what the platform hands over (command line, manifest of attached
//! devices), and the call into the program's `#[morgana::main]`.

use crate::global::Global;
use morgana_abi::mft::{DeviceKind, Entry, ManifestView};
#[cfg(any(
    test,
    morgana_sim,
    morgana_platform = "unix",
    morgana_platform = "virtio"
))]
use {alloc::boxed::Box, morgana_abi::mft::Manifest};

struct BootData {
    cmdline: &'static str,
    manifest: ManifestView<'static>,
    acquired: u64,
}

static BOOT: Global<Option<BootData>> = Global::new(None);

unsafe extern "Rust" {
    /// Defined by `#[morgana::main]`: acquires the devices, runs the
    /// program, returns its exit status.
    safe fn __morgana_main() -> i32;
}

/// Records the boot data, runs the program, exits with its status.
#[cfg_attr(any(test, morgana_sim), allow(dead_code))]
pub(crate) fn start(cmdline: &'static str, manifest: ManifestView<'static>) -> ! {
    BOOT.with(|b| {
        *b = Some(BootData {
            cmdline,
            manifest,
            acquired: 0,
        })
    });
    crate::console::init_logger(log_level(cmdline));
    let status = __morgana_main();
    crate::platform::exit(status)
}

/// Boot data for the unit tests and the simulated platform (no program,
/// no `__morgana_main`).
#[cfg(any(test, morgana_sim))]
pub(crate) fn set_for_test(manifest: Manifest, cmdline: &'static str) {
    let manifest = leak_encoded(&manifest);
    BOOT.with(|b| {
        *b = Some(BootData {
            cmdline,
            manifest,
            acquired: 0,
        })
    });
}

/// The `--log-level=LEVEL` of the command line (error, warn, info, debug,
/// trace, off); info by default.
fn log_level(cmdline: &str) -> log::LevelFilter {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|a| a.strip_prefix("--log-level="))
        .filter_map(|l| l.parse().ok())
        .next_back()
        .unwrap_or(log::LevelFilter::Info)
}

/// A manifest the runtime built itself (unix, tests), encoded and kept for
/// the life of the program, viewed like a tender's copy.
#[cfg(any(test, morgana_platform = "unix", morgana_platform = "virtio"))]
pub(crate) fn leak_encoded(m: &Manifest) -> ManifestView<'static> {
    let mut bytes = alloc::vec![0u8; m.encoded_len()];
    m.encode(&mut bytes);
    ManifestView::new(Box::leak(bytes.into_boxed_slice()))
        .expect("a valid manifest encodes validly")
}

/// The unikernel's command line: the arguments after the image on the
/// tender's command line, separated by spaces.
pub fn cmdline() -> &'static str {
    BOOT.with(|b| b.as_ref().map_or("", |b| b.cmdline))
}

/// The command line split into arguments at whitespace.
pub fn args() -> impl Iterator<Item = &'static str> {
    cmdline().split_ascii_whitespace()
}

/// Why a platform device could not be acquired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcquireError {
    /// The program did not declare it (so no tender attached it).
    NotDeclared(&'static str),
    /// Declared, but the tender did not attach it.
    NotAttached(&'static str),
    /// Already acquired: a device is acquired at most once.
    AlreadyAcquired(&'static str),
}

impl core::fmt::Display for AcquireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotDeclared(n) => write!(f, "device '{n}' is not in the manifest"),
            Self::NotAttached(n) => write!(f, "device '{n}' is declared but not attached"),
            Self::AlreadyAcquired(n) => write!(f, "device '{n}' is already acquired"),
        }
    }
}

impl core::error::Error for AcquireError {}

/// The handle of the attached platform device `name` of `kind`, without
/// acquiring it.
#[cfg(all(morgana_platform = "unix", not(any(test, morgana_sim))))]
pub(crate) fn find(name: &str, kind: DeviceKind) -> Option<u64> {
    BOOT.with(|b| {
        let (h, e) = b.as_ref()?.manifest.find(name, kind)?;
        e.attached().then_some(h as u64)
    })
}

/// Acquires the platform device `name` of `kind`: returns its handle and
/// manifest entry.
pub(crate) fn acquire(name: &'static str, kind: DeviceKind) -> Result<(u64, Entry), AcquireError> {
    BOOT.with(|b| {
        let b = b.as_mut().ok_or(AcquireError::NotDeclared(name))?;
        let (h, e) = b
            .manifest
            .find(name, kind)
            .ok_or(AcquireError::NotDeclared(name))?;
        if !e.attached() {
            return Err(AcquireError::NotAttached(name));
        }
        if b.acquired & (1 << h) != 0 {
            return Err(AcquireError::AlreadyAcquired(name));
        }
        b.acquired |= 1 << h;
        Ok((h as u64, e))
    })
}
