//! Attaching the devices a manifest declares, from the command-line options.

use crate::args::DeviceOpt;
use crate::tap;
use morgana_abi::mft::{DeviceKind, Manifest};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use thiserror::Error;

/// Default sector size of a block device.
pub const DEFAULT_SECTOR_SIZE: u16 = 512;

/// An attached device.
#[derive(Debug)]
pub struct Device {
    /// Its handle: the manifest index.
    pub handle: usize,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: DeviceKind,
    /// The host descriptor backing it (a tap or a file).
    pub fd: OwnedFd,
    /// Block devices: capacity in bytes and sector size.
    pub block: Option<(u64, u16)>,
}

impl Device {
    /// The raw host descriptor.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Every declared device, attached.
#[derive(Debug)]
pub struct Attached {
    /// The manifest with `attached`, device properties and `hostfd` set.
    pub manifest: Manifest,
    /// The attached devices, in manifest order.
    pub devices: Vec<Device>,
}

impl Attached {
    /// The device with handle `handle`, if attached.
    pub fn by_handle(&self, handle: u64) -> Option<&Device> {
        self.devices.iter().find(|d| d.handle as u64 == handle)
    }
}

/// Why attaching failed. Messages are one line, for the user.
#[derive(Debug, Error)]
pub enum AttachError {
    /// The option names a device the unikernel does not declare.
    #[error("device '{name}' is not declared by the unikernel (it declares: {declared})")]
    Undeclared {
        /// Name given on the command line.
        name: String,
        /// What the manifest declares.
        declared: String,
    },
    /// The option's kind differs from the declaration's.
    #[error("device '{name}' is declared as {declared}, not {given}")]
    WrongKind {
        /// Device name.
        name: String,
        /// Declared kind.
        declared: &'static str,
        /// Kind the option implies.
        given: &'static str,
    },
    /// The same device was attached twice.
    #[error("device '{0}' is attached more than once")]
    Duplicate(String),
    /// The tap interface could not be attached.
    #[error("cannot attach tap interface '{iface}' as '{name}': {source}")]
    Tap {
        /// Device name.
        name: String,
        /// Interface name.
        iface: String,
        /// Cause.
        source: io::Error,
    },
    /// The block file could not be opened.
    #[error("cannot open block device '{name}' at {path}: {source}")]
    Block {
        /// Device name.
        name: String,
        /// File path.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// The block file is not a whole number of sectors.
    #[error(
        "block device '{name}' ({path}): size {size} is not a positive multiple of the sector size {sector}"
    )]
    BlockSize {
        /// Device name.
        name: String,
        /// File path.
        path: String,
        /// File size.
        size: u64,
        /// Sector size.
        sector: u16,
    },
    /// `--net:NAME=socket` where there are no host sockets (a tender).
    #[error(
        "--net:{0}=socket: host sockets are only for unix builds (a tender needs a tap: --net:{0}=TAP)"
    )]
    SocketsUnsupported(String),
    /// Declared devices left unattached.
    #[error("declared but not attached: {0} (every declared device must be attached)")]
    NotAttached(String),
}

fn declared_list(m: &Manifest) -> String {
    let list: Vec<String> = m
        .devices()
        .map(|(_, e)| {
            format!(
                "{} ({})",
                e.name(),
                morgana_abi::mft::type_name(e.raw_kind())
            )
        })
        .collect();
    if list.is_empty() {
        "no devices".into()
    } else {
        list.join(", ")
    }
}

fn lookup(m: &Manifest, name: &str, kind: DeviceKind) -> Result<usize, AttachError> {
    match m.find_any(name) {
        None => Err(AttachError::Undeclared {
            name: name.into(),
            declared: declared_list(m),
        }),
        Some(h) if m.entries()[h].kind() != Some(kind) => Err(AttachError::WrongKind {
            name: name.into(),
            declared: morgana_abi::mft::type_name(m.entries()[h].raw_kind()),
            given: kind.solo5_name(),
        }),
        Some(h) => Ok(h),
    }
}

/// Attaches every device of `manifest` as the options say: taps for
/// `--net`, files for `--block`, MACs and sector sizes from their options.
/// Fails on an undeclared device, a device attached twice, a missing or
/// down tap, an unopenable or badly sized block file, or a declared device
/// left unattached.
pub fn attach_devices(manifest: &Manifest, opts: &[DeviceOpt]) -> Result<Attached, AttachError> {
    attach_devices_offload(manifest, opts, 0)
}

/// [`attach_devices`], granting the image's offload request
/// (`morgana_abi::offload`): the taps of the net devices whose manifest
/// entries are in the mask `offload` are opened with virtio-net headers and
/// offloads, and their entries say so ([`morgana_abi::mft::Entry::vnet_hdr`]).
pub fn attach_devices_offload(
    manifest: &Manifest,
    opts: &[DeviceOpt],
    offload: u64,
) -> Result<Attached, AttachError> {
    let mut m = manifest.clone();
    let mut devices: Vec<Device> = Vec::new();
    let mut macs: Vec<(usize, [u8; 6])> = Vec::new();
    let mut sectors: Vec<(usize, u16)> = Vec::new();
    let mut paths: Vec<(usize, String)> = Vec::new();

    for opt in opts {
        match opt {
            DeviceOpt::Net { name, iface } => {
                let h = lookup(&m, name, DeviceKind::Net)?;
                if devices.iter().any(|d| d.handle == h) {
                    return Err(AttachError::Duplicate(name.clone()));
                }
                if iface == "socket" {
                    return Err(AttachError::SocketsUnsupported(name.clone()));
                }
                let wants = h < 64 && offload & (1 << h) != 0;
                let t = if wants {
                    tap::attach_offload(iface)
                } else {
                    tap::attach(iface)
                };
                let t = t.map_err(|source| AttachError::Tap {
                    name: name.clone(),
                    iface: iface.clone(),
                    source,
                })?;
                let e = &mut m.entries_mut()[h];
                e.set_net([0; 6], t.mtu);
                if t.vnet_hdr {
                    e.set_vnet_hdr(morgana_abi::offload::VNET_HDR_LEN as u16);
                }
                devices.push(Device {
                    handle: h,
                    name: name.clone(),
                    kind: DeviceKind::Net,
                    fd: t.fd,
                    block: None,
                });
            }
            DeviceOpt::NetMac { name, mac } => {
                macs.push((lookup(&m, name, DeviceKind::Net)?, *mac));
            }
            DeviceOpt::Block { name, path } => {
                let h = lookup(&m, name, DeviceKind::Block)?;
                if devices.iter().any(|d| d.handle == h) {
                    return Err(AttachError::Duplicate(name.clone()));
                }
                let f = File::options()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(path)
                    .and_then(|f| {
                        let len = f.metadata()?.len();
                        Ok((f, len))
                    })
                    .map_err(|source| AttachError::Block {
                        name: name.clone(),
                        path: path.clone(),
                        source,
                    })?;
                let (file, len) = f;
                let len = if len == 0 {
                    block_device_size(&file).unwrap_or(0)
                } else {
                    len
                };
                paths.push((h, path.clone()));
                devices.push(Device {
                    handle: h,
                    name: name.clone(),
                    kind: DeviceKind::Block,
                    fd: file.into(),
                    block: Some((len, DEFAULT_SECTOR_SIZE)),
                });
            }
            DeviceOpt::BlockSectorSize { name, size } => {
                sectors.push((lookup(&m, name, DeviceKind::Block)?, *size));
            }
        }
    }

    for d in &mut devices {
        let e = &mut m.entries_mut()[d.handle];
        e.set_attached(true);
        e.set_hostfd(d.fd.as_raw_fd());
        match d.kind {
            DeviceKind::Net => {
                let mtu = e.net().1;
                let mac = macs
                    .iter()
                    .rev()
                    .find(|(h, _)| *h == d.handle)
                    .map_or_else(tap::random_mac, |(_, m)| *m);
                let vnet = e.vnet_hdr();
                e.set_net(mac, mtu);
                e.set_vnet_hdr(vnet);
            }
            DeviceKind::Block => {
                let (capacity, _) = d.block.unwrap_or((0, DEFAULT_SECTOR_SIZE));
                let sector = sectors
                    .iter()
                    .rev()
                    .find(|(h, _)| *h == d.handle)
                    .map_or(DEFAULT_SECTOR_SIZE, |(_, s)| *s);
                if capacity == 0 || capacity % u64::from(sector) != 0 {
                    let path = paths
                        .iter()
                        .find(|(h, _)| *h == d.handle)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_default();
                    return Err(AttachError::BlockSize {
                        name: d.name.clone(),
                        path,
                        size: capacity,
                        sector,
                    });
                }
                d.block = Some((capacity, sector));
                e.set_block(capacity, sector);
            }
        }
    }

    let missing: Vec<String> = m
        .devices()
        .filter(|(_, e)| !e.attached())
        .map(|(_, e)| {
            let hint = match e.kind() {
                Some(DeviceKind::Net) => format!("--net:{}=IFACE", e.name()),
                Some(DeviceKind::Block) => format!("--block:{}=PATH", e.name()),
                None => "unknown device type".into(),
            };
            format!(
                "'{}' ({}, use {hint})",
                e.name(),
                morgana_abi::mft::type_name(e.raw_kind())
            )
        })
        .collect();
    if !missing.is_empty() {
        return Err(AttachError::NotAttached(missing.join(", ")));
    }
    devices.sort_by_key(|d| d.handle);
    Ok(Attached {
        manifest: m,
        devices,
    })
}

/// Size of a block special file (`BLKGETSIZE64`), for `--block` on a disk.
fn block_device_size(f: &File) -> Option<u64> {
    use std::os::unix::fs::FileTypeExt;
    if !f.metadata().ok()?.file_type().is_block_device() {
        return None;
    }
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 into `size`.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) };
    (r == 0).then_some(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use morgana_abi::mft::{DeviceDecl, MftNote};
    use std::io::Write;

    static NOTE: MftNote<3> = MftNote::new(&[
        DeviceDecl {
            name: "service",
            kind: DeviceKind::Net,
        },
        DeviceDecl {
            name: "storage",
            kind: DeviceKind::Block,
        },
    ]);

    fn manifest() -> Manifest {
        let p = &NOTE as *const MftNote<3> as *const u8;
        // SAFETY: MftNote is repr(C) plain data, fully initialised.
        let b = unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<MftNote<3>>()) };
        Manifest::validate(&b[24..]).unwrap()
    }

    fn disk(len: usize) -> (tempdir::Dir, String) {
        let d = tempdir::Dir::new();
        let path = d.path("disk.img");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&vec![0u8; len])
            .unwrap();
        (d, path)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "morgana-host-test-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                ));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
            pub fn path(&self, f: &str) -> String {
                self.0.join(f).to_string_lossy().into_owned()
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn block(name: &str, path: &str) -> DeviceOpt {
        DeviceOpt::Block {
            name: name.into(),
            path: path.into(),
        }
    }

    #[test]
    fn undeclared_and_unattached_devices_are_errors() {
        let m = manifest();
        let e = attach_devices(&m, &[block("other", "/dev/null")]).unwrap_err();
        assert!(matches!(e, AttachError::Undeclared { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("service (NET_BASIC), storage (BLOCK_BASIC)")
        );

        let e = attach_devices(&m, &[block("service", "/dev/null")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("declared as NET_BASIC, not BLOCK_BASIC"),
            "{e}"
        );

        let (_d, p) = disk(4096);
        let e = attach_devices(&m, &[block("storage", &p)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("'service' (NET_BASIC, use --net:service=IFACE)"),
            "{e}"
        );
    }

    #[test]
    fn block_files_are_checked() {
        let mut m = manifest();
        // Only the block device, to attach it alone.
        m.entries_mut()[1].set_attached(true);
        let (_d, p) = disk(1000);
        let e = attach_devices(&m, &[block("storage", &p)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("size 1000 is not a positive multiple"),
            "{e}"
        );

        let (_d0, p0) = disk(0);
        assert!(matches!(
            attach_devices(&m, &[block("storage", &p0)]).unwrap_err(),
            AttachError::BlockSize { size: 0, .. }
        ));

        let e = attach_devices(&m, &[block("storage", "/nonexistent/x.img")]).unwrap_err();
        assert!(e.to_string().contains("No such file"), "{e}");

        let (_d2, p2) = disk(3 * 512);
        let size = DeviceOpt::BlockSectorSize {
            name: "storage".into(),
            size: 4096,
        };
        let e = attach_devices(&m, &[block("storage", &p2), size.clone()]).unwrap_err();
        assert!(e.to_string().contains("sector size 4096"), "{e}");

        let (_d3, p3) = disk(8192);
        let a = attach_devices(&m, &[size, block("storage", &p3)]).unwrap();
        let e = &a.manifest.entries()[2];
        assert_eq!(e.block(), (8192, 4096));
        assert_eq!(e.hostfd(), a.devices[0].raw_fd());
        assert!(a.by_handle(2).is_some());

        let e = attach_devices(&m, &[block("storage", &p3), block("storage", &p3)]).unwrap_err();
        assert!(matches!(e, AttachError::Duplicate(_)));
    }

    #[test]
    fn missing_tap_is_a_clear_error() {
        let m = manifest();
        let e = attach_devices(
            &m,
            &[DeviceOpt::Net {
                name: "service".into(),
                iface: "nosuchtap0".into(),
            }],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot attach tap interface 'nosuchtap0' as 'service': no such network interface"
        );
    }
}
