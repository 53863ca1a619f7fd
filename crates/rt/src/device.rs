//! Devices a program declares: platform devices (net, block) by name, and
//! devices composed from them (a TCP/IP stack from a net device, a store
//! from a block device), in the spirit of MirageOS's `map`.
//!
//! A program lists its devices as the parameters of its
//! `#[morgana::main]` function. From the parameter types and names the
//! macro generates, at compile time, the Solo5 manifest note (one entry per
//! platform device, named after the parameter unless `#[name = "..."]` or
//! `#[names("a", "b")]` says otherwise), and at boot the code that connects
//! each device with [`Device::connect`].

use alloc::string::{String, ToString};
use core::fmt;
use core::future::Future;
pub use morgana_abi::mft::{DeviceDecl, DeviceKind, MftNote};

/// A device a program can declare as a parameter of `#[morgana::main]`.
pub trait Device: Sized + 'static {
    /// The platform devices it is built from, in manifest order: empty for
    /// the console, `[Net]` for a network device or a TCP/IP stack...
    const NEEDS: &'static [DeviceKind];

    /// Whether the net devices among [`Device::NEEDS`] may carry frames
    /// with virtio-net headers and offloads (`morgana_abi::offload`): the
    /// image then asks its tender for them. Only a device that handles
    /// [`crate::Net::offload`] frames says yes (the TCP/IP stack does).
    const NET_OFFLOAD: bool = false;

    /// Connects the device, given the names of its platform devices (one
    /// per entry of [`Device::NEEDS`]).
    fn connect(names: &'static [&'static str]) -> impl Future<Output = Result<Self, DeviceError>>;
}

/// Why a device could not be connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceError {
    device: String,
    reason: String,
}

impl DeviceError {
    /// An error connecting `device`.
    pub fn new(device: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self {
            device: device.into(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot connect device '{}': {}",
            self.device, self.reason
        )
    }
}

impl core::error::Error for DeviceError {}

/// Copies the declarations of one parameter into `out` at `at`: used by the
/// code `#[morgana::main]` generates, in a `const` context, so that a
/// mismatch between a device's needs and its names is a compile error.
pub const fn declare<const N: usize>(
    mut out: [DeviceDecl; N],
    at: usize,
    needs: &[DeviceKind],
    names: &[&'static str],
) -> [DeviceDecl; N] {
    assert!(
        needs.len() == names.len(),
        "Morgana: a device parameter needs one name per platform device it uses (see #[names(...)])"
    );
    let mut i = 0;
    while i < needs.len() {
        out[at + i] = DeviceDecl {
            name: names[i],
            kind: needs[i],
        };
        i += 1;
    }
    out
}

/// The names of a parameter's platform devices when it has no
/// `#[name]`/`#[names]` attribute: none for a device that needs none, the
/// parameter's own name for a device that needs one.
pub const fn default_names(
    needs: &[DeviceKind],
    param: &'static [&'static str; 1],
) -> &'static [&'static str] {
    assert!(
        needs.len() <= 1,
        "Morgana: this device uses several platform devices: name them with #[names(\"a\", \"b\", ...)]"
    );
    if needs.is_empty() { &[] } else { param }
}

/// Adds to the offload mask `mask` the net devices of one parameter whose
/// declarations start at `at` (manifest entry `at + 1`: entry 0 is
/// reserved), if the parameter's type handles offloads: used by the code
/// `#[morgana::main]` generates for the image's offload request.
pub const fn offload_mask(mut mask: u64, at: usize, needs: &[DeviceKind], offload: bool) -> u64 {
    let mut i = 0;
    while offload && i < needs.len() {
        let entry = at + i + 1;
        if matches!(needs[i], DeviceKind::Net) && entry < 64 {
            mask |= 1 << entry;
        }
        i += 1;
    }
    mask
}

/// An empty declaration, to initialise arrays in `const` code.
pub const EMPTY_DECL: DeviceDecl = DeviceDecl {
    name: "",
    kind: DeviceKind::Net,
};
