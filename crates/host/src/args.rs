//! Solo5's tender command line:
//!
//! ```text
//! [--mem=MiB] [--net:NAME=IFACE] [--net-mac:NAME=MAC] [--block:NAME=PATH]
//! [--block-sector-size:NAME=N] [--] UNIKERNEL [ARGS...]
//! ```
//!
//! Parsing happens in two passes, as in Solo5: [`scan`] finds the image (or a
//! terminal option such as `--help`) so its manifest can be read, then
//! [`parse`] reads the options before it. Everything after the image is the
//! guest's own command line.

use thiserror::Error;

/// What a first pass over the arguments found.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan<'a> {
    /// `--help` came before the image.
    Help,
    /// `--version` came before the image.
    Version,
    /// No image operand.
    MissingImage,
    /// The image path.
    Image(&'a str),
}

/// Finds the image operand: the first argument that is not an option, or the
/// one after `--`.
pub fn scan(args: &[String]) -> Scan<'_> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => {
                return it
                    .next()
                    .map_or(Scan::MissingImage, |s| Scan::Image(s.as_str()));
            }
            "--help" | "-h" => return Scan::Help,
            "--version" => return Scan::Version,
            s if s.starts_with('-') => {}
            s => return Scan::Image(s),
        }
    }
    Scan::MissingImage
}

/// A device-related option, naming a device declared in the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceOpt {
    /// `--net:NAME=IFACE` (or `@FD`, an already open tap descriptor).
    Net {
        /// Device name.
        name: String,
        /// Tap interface name, or `@FD`.
        iface: String,
    },
    /// `--net-mac:NAME=MAC`.
    NetMac {
        /// Device name.
        name: String,
        /// MAC address.
        mac: [u8; 6],
    },
    /// `--block:NAME=PATH`.
    Block {
        /// Device name.
        name: String,
        /// Backing file.
        path: String,
    },
    /// `--block-sector-size:NAME=N`.
    BlockSectorSize {
        /// Device name.
        name: String,
        /// Sector size: a power of two, at least 512.
        size: u16,
    },
}

impl DeviceOpt {
    /// The device name the option refers to.
    pub fn name(&self) -> &str {
        match self {
            Self::Net { name, .. }
            | Self::NetMac { name, .. }
            | Self::Block { name, .. }
            | Self::BlockSectorSize { name, .. } => name,
        }
    }
}

/// Parsed options of a tender (or of a unix build of a unikernel).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Guest memory in bytes, if `--mem` was given.
    pub mem: Option<u64>,
    /// Device options, in order.
    pub devices: Vec<DeviceOpt>,
    /// The image path.
    pub image: String,
    /// The guest's command line arguments.
    pub guest_args: Vec<String>,
    /// `--no-net-offload`: refuse the image's offload request
    /// (`morgana_abi::offload`), so that every tap carries plain frames.
    pub no_net_offload: bool,
}

/// A malformed command line.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArgError {
    /// No image operand.
    #[error("missing UNIKERNEL operand (see --help)")]
    MissingImage,
    /// An option nobody understands.
    #[error("invalid option: `{0}' (see --help)")]
    Unknown(String),
    /// `--mem=` without a positive number of MiB.
    #[error("malformed argument to --mem: `{0}' (expected a number of MiB)")]
    Mem(String),
    /// `NAME` is not 1 to 67 letters or digits.
    #[error("invalid device name in `{0}': names are 1 to 67 ASCII letters or digits")]
    Name(String),
    /// `--net:NAME=` or `--block:NAME=` without a value.
    #[error("missing value in `{0}'")]
    MissingValue(String),
    /// A MAC address that is not six hexadecimal bytes.
    #[error("malformed MAC address in `{0}' (expected xx:xx:xx:xx:xx:xx)")]
    Mac(String),
    /// A sector size that is not a power of two >= 512.
    #[error("invalid sector size in `{0}': it must be a power of two from 512 to 32768")]
    SectorSize(String),
}

/// Parses a tender's argument list (program name excluded): options, the
/// image, the guest's arguments.
pub fn parse(args: &[String]) -> Result<Options, ArgError> {
    parse_with(args, true)
}

/// Parses the arguments of a unix build of a unikernel (program name
/// excluded): the same options, then (after an optional `--`) the guest's
/// arguments, with no image operand.
pub fn parse_unix(args: &[String]) -> Result<Options, ArgError> {
    parse_with(args, false)
}

fn parse_with(args: &[String], image_operand: bool) -> Result<Options, ArgError> {
    let mut opts = Options::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') {
            break;
        }
        if let Some(v) = a.strip_prefix("--mem=") {
            let mib: u64 = v
                .parse()
                .ok()
                .filter(|&m| m > 0 && m <= (1 << 20))
                .ok_or_else(|| ArgError::Mem(a.to_string()))?;
            opts.mem = Some(mib << 20);
        } else if a == "--no-net-offload" {
            opts.no_net_offload = true;
        } else if let Some(rest) = a.strip_prefix("--net:") {
            let (name, iface) = name_value(a, rest)?;
            opts.devices.push(DeviceOpt::Net { name, iface });
        } else if let Some(rest) = a.strip_prefix("--net-mac:") {
            let (name, mac) = name_value(a, rest)?;
            let mac = parse_mac(&mac).ok_or_else(|| ArgError::Mac(a.to_string()))?;
            opts.devices.push(DeviceOpt::NetMac { name, mac });
        } else if let Some(rest) = a.strip_prefix("--block:") {
            let (name, path) = name_value(a, rest)?;
            opts.devices.push(DeviceOpt::Block { name, path });
        } else if let Some(rest) = a.strip_prefix("--block-sector-size:") {
            let (name, size) = name_value(a, rest)?;
            let size: u16 = size
                .parse()
                .ok()
                .filter(|s: &u16| *s >= 512 && s.is_power_of_two())
                .ok_or_else(|| ArgError::SectorSize(a.to_string()))?;
            opts.devices.push(DeviceOpt::BlockSectorSize { name, size });
        } else {
            return Err(ArgError::Unknown(a.to_string()));
        }
        i += 1;
    }
    if image_operand {
        let image = args.get(i).ok_or(ArgError::MissingImage)?;
        opts.image = image.clone();
        i += 1;
    }
    opts.guest_args = args[i..].to_vec();
    Ok(opts)
}

fn name_value(arg: &str, rest: &str) -> Result<(String, String), ArgError> {
    let (name, value) = rest
        .split_once('=')
        .ok_or_else(|| ArgError::MissingValue(arg.to_string()))?;
    if !morgana_abi::mft::is_valid_name(name.as_bytes()) {
        return Err(ArgError::Name(arg.to_string()));
    }
    if value.is_empty() {
        return Err(ArgError::MissingValue(arg.to_string()));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Parses `xx:xx:xx:xx:xx:xx`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Joins the guest arguments into the command line handed to the guest,
/// as Solo5 does (separated by single spaces). Fails if it does not fit in
/// [`morgana_abi::CMDLINE_SIZE`] bytes with its terminator.
pub fn guest_cmdline(args: &[String]) -> Result<String, String> {
    let line = args.join(" ");
    if line.len() >= morgana_abi::CMDLINE_SIZE {
        return Err(format!(
            "guest command line too long ({} bytes, at most {})",
            line.len(),
            morgana_abi::CMDLINE_SIZE - 1
        ));
    }
    if line.contains('\0') {
        return Err("guest command line contains a NUL byte".into());
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scan_finds_image_or_terminal_option() {
        assert_eq!(scan(&v(&["--mem=8", "img", "--help"])), Scan::Image("img"));
        assert_eq!(scan(&v(&["--mem=8", "--help", "img"])), Scan::Help);
        assert_eq!(scan(&v(&["--version"])), Scan::Version);
        assert_eq!(scan(&v(&["--", "--odd-name"])), Scan::Image("--odd-name"));
        assert_eq!(scan(&v(&["--mem=8"])), Scan::MissingImage);
        assert_eq!(scan(&v(&["--"])), Scan::MissingImage);
    }

    #[test]
    fn parse_reads_every_option() {
        let o = parse(&v(&[
            "--mem=64",
            "--net:service=tap0",
            "--net-mac:service=02:00:00:00:00:01",
            "--block:storage=/tmp/d.img",
            "--block-sector-size:storage=4096",
            "--no-net-offload",
            "--",
            "hello.hvt",
            "a",
            "--b",
        ]))
        .unwrap();
        assert_eq!(o.mem, Some(64 << 20));
        assert!(o.no_net_offload);
        assert!(!parse(&v(&["hello.hvt"])).unwrap().no_net_offload);
        assert_eq!(o.image, "hello.hvt");
        assert_eq!(o.guest_args, v(&["a", "--b"]));
        assert_eq!(
            o.devices,
            vec![
                DeviceOpt::Net {
                    name: "service".into(),
                    iface: "tap0".into()
                },
                DeviceOpt::NetMac {
                    name: "service".into(),
                    mac: [2, 0, 0, 0, 0, 1]
                },
                DeviceOpt::Block {
                    name: "storage".into(),
                    path: "/tmp/d.img".into()
                },
                DeviceOpt::BlockSectorSize {
                    name: "storage".into(),
                    size: 4096
                },
            ]
        );
        assert_eq!(o.devices[2].name(), "storage");
    }

    #[test]
    fn parse_rejects_bad_arguments() {
        let e = |a: &[&str]| parse(&v(a)).unwrap_err();
        assert_eq!(e(&["--mem=0", "x"]), ArgError::Mem("--mem=0".into()));
        assert_eq!(e(&["--mem=lots", "x"]), ArgError::Mem("--mem=lots".into()));
        assert_eq!(e(&["--frob", "x"]), ArgError::Unknown("--frob".into()));
        assert_eq!(
            e(&["--net:my_net=tap0", "x"]),
            ArgError::Name("--net:my_net=tap0".into())
        );
        assert_eq!(
            e(&["--net:service", "x"]),
            ArgError::MissingValue("--net:service".into())
        );
        assert_eq!(
            e(&["--block:d=", "x"]),
            ArgError::MissingValue("--block:d=".into())
        );
        assert_eq!(
            e(&["--net-mac:s=02:00:00:00:00", "x"]),
            ArgError::Mac("--net-mac:s=02:00:00:00:00".into())
        );
        for bad in ["256", "521", "0", "65536", "x"] {
            let a = format!("--block-sector-size:d={bad}");
            assert_eq!(e(&[&a, "x"]), ArgError::SectorSize(a.clone()));
        }
        assert_eq!(e(&["--mem=8"]), ArgError::MissingImage);
        assert!(
            e(&["--net:s=tap0"])
                .to_string()
                .contains("missing UNIKERNEL")
        );
    }

    #[test]
    fn unix_builds_take_no_image() {
        let o = parse_unix(&v(&["--net:s=tap0", "a", "b"])).unwrap();
        assert_eq!(o.image, "");
        assert_eq!(o.guest_args, v(&["a", "b"]));
        let o = parse_unix(&v(&["--", "--net:s=tap0"])).unwrap();
        assert!(o.devices.is_empty());
        assert_eq!(o.guest_args, v(&["--net:s=tap0"]));
        assert_eq!(parse_unix(&[]).unwrap(), Options::default());
    }

    #[test]
    fn macs_and_cmdlines() {
        assert_eq!(
            parse_mac("0a:0B:c:00:ff:10"),
            Some([10, 11, 12, 0, 255, 16])
        );
        assert_eq!(parse_mac("0a:0b:0c:00:ff:10:11"), None);
        assert_eq!(parse_mac("0a:0b:0c:00:ff:1000"), None);
        assert_eq!(guest_cmdline(&v(&["a", "b c"])).unwrap(), "a b c");
        assert!(guest_cmdline(&[String::from("x").repeat(8192)]).is_err());
        assert!(guest_cmdline(&[String::from("x").repeat(8191)]).is_ok());
    }
}
