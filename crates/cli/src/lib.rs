//! The library behind the `morgana` command: building unikernel images for
//! each platform, locating tenders, reading manifests.

pub mod new;
pub mod package;
pub mod trace;

use anyhow::{Context, Result, bail};
use morgana_abi::mft::type_name;
use morgana_abi::note::{self, AbiInfo, AbiTarget};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod virtio;

/// A platform a unikernel can be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Platform {
    /// Solo5 hvt: a KVM virtual machine under `morgana-hvt` or `solo5-hvt`.
    Hvt,
    /// Solo5 spt: a seccomp-confined process under `morgana-spt` or `solo5-spt`.
    Spt,
    /// A standard VMM (QEMU microvm or q35, Firecracker): PVH boot, virtio devices.
    Virtio,
    /// An ordinary Linux executable, for development and gdb.
    Unix,
}

impl Platform {
    /// Every platform.
    pub const ALL: [Platform; 4] = [
        Platform::Hvt,
        Platform::Spt,
        Platform::Virtio,
        Platform::Unix,
    ];

    /// Its name (`hvt`, `spt`, `unix`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Hvt => "hvt",
            Self::Spt => "spt",
            Self::Virtio => "virtio",
            Self::Unix => "unix",
        }
    }

    /// The tender that runs it, if any (virtio images run on QEMU).
    pub fn tender(self) -> Option<&'static str> {
        match self {
            Self::Hvt => Some("morgana-hvt"),
            Self::Spt => Some("morgana-spt"),
            Self::Virtio | Self::Unix => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Rust target of the bare platforms (soft-float, no red zone).
pub const BARE_TARGET: &str = "x86_64-unknown-none";

/// Flags every bare image is linked with: Morgana's linker script (found on
/// the search path the runtime's build script sets up) and a static,
/// non-PIE executable. The `--cfg`s select the RustCrypto crates' portable
/// code (morgana-tls): their default x86 back ends pick SSE2/AES-NI/AVX2
/// code at run time from CPUID, which a soft-float guest cannot run (and
/// curve25519-dalek's SIMD back end does not even compile soft-float).
pub const BARE_RUSTFLAGS: &str = "-C link-arg=-Tmorgana.ld -C relocation-model=static \
    --cfg aes_force_soft --cfg polyval_force_soft --cfg chacha20_force_soft \
    --cfg poly1305_force_soft --cfg curve25519_dalek_backend=\"serial\"";

/// The `unikernel` build profile: small and fast images, no debug info.
pub const PROFILE_CONFIG: [&str; 6] = [
    "profile.unikernel.inherits=\"release\"",
    "profile.unikernel.opt-level=\"s\"",
    "profile.unikernel.lto=\"fat\"",
    "profile.unikernel.codegen-units=1",
    "profile.unikernel.strip=true",
    "profile.unikernel.debug=false",
];

/// What to build.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Platforms (empty: hvt).
    pub platforms: Vec<Platform>,
    /// Packages (empty: every workspace package that depends on `morgana`).
    pub packages: Vec<String>,
    /// Debug build (unoptimised, with symbols: for gdb).
    pub debug: bool,
    /// Output directory (default: `<target dir>/unikernels`).
    pub out: Option<PathBuf>,
    /// Workspace directory (default: current directory).
    pub workspace: Option<PathBuf>,
}

/// A built image.
#[derive(Clone, Debug)]
pub struct Built {
    /// Its platform.
    pub platform: Platform,
    /// Binary name.
    pub name: String,
    /// Where it was copied.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

struct Package {
    name: String,
    bins: Vec<String>,
}

struct Workspace {
    target_dir: PathBuf,
    packages: Vec<Package>,
}

fn metadata(dir: &Path) -> Result<Workspace> {
    let out = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir)
        .output()
        .context("cannot run `cargo metadata`")?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let target_dir = PathBuf::from(
        v["target_directory"]
            .as_str()
            .context("cargo metadata: no target_directory")?,
    );
    let mut packages = Vec::new();
    for p in v["packages"].as_array().into_iter().flatten() {
        let uses_morgana = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["name"] == "morgana" && d["kind"].is_null());
        if !uses_morgana {
            continue;
        }
        let bins: Vec<String> = p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect();
        if !bins.is_empty() {
            packages.push(Package {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                bins,
            });
        }
    }
    Ok(Workspace {
        target_dir,
        packages,
    })
}

/// Builds the unikernels of the selected packages for the selected
/// platforms, and copies each image to `OUT/<platform>/<name>`.
pub fn build(opts: &BuildOptions) -> Result<Vec<Built>> {
    let dir = opts.workspace.clone().unwrap_or_else(|| PathBuf::from("."));
    let ws = metadata(&dir)?;
    let packages: Vec<&Package> = if opts.packages.is_empty() {
        ws.packages.iter().collect()
    } else {
        opts.packages
            .iter()
            .map(|name| {
                ws.packages
                    .iter()
                    .find(|p| &p.name == name)
                    .with_context(|| format!("no unikernel package `{name}` (it must depend on `morgana` and have binaries)"))
            })
            .collect::<Result<_>>()?
    };
    if packages.is_empty() {
        bail!("no package in this workspace depends on `morgana`");
    }
    let platforms = if opts.platforms.is_empty() {
        vec![Platform::Hvt]
    } else {
        opts.platforms.clone()
    };
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| ws.target_dir.join("unikernels"));
    let (profile, profile_dir) = if opts.debug {
        ("dev", "debug")
    } else {
        ("unikernel", "unikernel")
    };
    let mut built = Vec::new();
    for platform in platforms {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&dir)
            .arg("build")
            .arg("--profile")
            .arg(profile);
        for c in PROFILE_CONFIG {
            cmd.arg("--config").arg(c);
        }
        for p in &packages {
            cmd.arg("-p").arg(&p.name);
        }
        let artifacts = if platform == Platform::Unix {
            ws.target_dir.join(profile_dir)
        } else {
            cmd.arg("--target")
                .arg(BARE_TARGET)
                .arg("--features")
                .arg(format!("morgana/{}", platform.name()))
                .env("CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS", BARE_RUSTFLAGS);
            ws.target_dir.join(BARE_TARGET).join(profile_dir)
        };
        let status = cmd.status().context("cannot run `cargo build`")?;
        if !status.success() {
            bail!("building the {platform} images failed");
        }
        let dest = out.join(platform.name());
        std::fs::create_dir_all(&dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        for p in &packages {
            for bin in &p.bins {
                let from = artifacts.join(bin);
                let to = dest.join(bin);
                // Copy through a temporary name so a running image is never
                // overwritten in place.
                let tmp = dest.join(format!(".{bin}.tmp"));
                std::fs::copy(&from, &tmp)
                    .with_context(|| format!("cannot copy {}", from.display()))?;
                std::fs::rename(&tmp, &to)?;
                let size = std::fs::metadata(&to)?.len();
                built.push(Built {
                    platform,
                    name: bin.clone(),
                    path: to,
                    size,
                });
            }
        }
    }
    Ok(built)
}

/// Finds a tender: next to the running executable, then on `PATH`.
pub fn find_tender(name: &str) -> Result<PathBuf> {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "cannot find `{name}` next to this program or on PATH (build it with `cargo build --release -p morgana-tender`)"
    )
}

/// What an image's notes say.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    /// ABI target and version.
    pub abi: Option<AbiInfo>,
    /// Declared devices: `(name, type)`.
    pub devices: Vec<(String, &'static str)>,
}

/// An image file's bytes, read for its notes; errors name the file.
pub(crate) struct ImageFile<'a> {
    path: &'a Path,
    bytes: Vec<u8>,
}

impl<'a> ImageFile<'a> {
    /// Reads the image at `path`.
    pub(crate) fn read(path: &'a Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self { path, bytes })
    }

    /// The ABI note, if the image has a valid one.
    pub(crate) fn abi(&self) -> Result<Option<AbiInfo>> {
        Ok(self
            .note(
                note::ABI1_NOTE_TYPE,
                note::ABI1_NOTE_ALIGN,
                note::ABI1_NOTE_MAX_SIZE,
                "ABI",
            )?
            .and_then(AbiInfo::parse))
    }

    /// The Solo5 manifest note, checked as an image's must be.
    pub(crate) fn manifest(&self) -> Result<morgana_abi::mft::Manifest> {
        let path = self.path.display();
        let mft = self
            .note(
                note::MFT1_NOTE_TYPE,
                note::MFT1_NOTE_ALIGN,
                note::MFT1_NOTE_MAX_SIZE,
                "manifest",
            )?
            .with_context(|| format!("{path}: no Solo5 manifest note"))?;
        morgana_abi::mft::Manifest::validate(mft)
            .map_err(|e| anyhow::anyhow!("{path}: invalid manifest: {e}"))
    }

    fn note(
        &self,
        note_type: u32,
        align: usize,
        max_size: usize,
        what: &'static str,
    ) -> Result<Option<&[u8]>> {
        morgana_tender::elf::find_note(&self.bytes, note_type, align, max_size, what)
            .map_err(|e| anyhow::anyhow!("{}: invalid image: {e}", self.path.display()))
    }
}

/// Reads an image's ABI note and manifest (any target).
pub fn inspect(path: &Path) -> Result<ImageInfo> {
    let img = ImageFile::read(path)?;
    let abi = img.abi()?;
    let m = img.manifest()?;
    Ok(ImageInfo {
        abi,
        devices: m
            .devices()
            .map(|(_, e)| (e.name().to_string(), type_name(e.raw_kind())))
            .collect(),
    })
}

impl ImageInfo {
    /// The manifest in Solo5's JSON format (as `solo5-elftool` prints it).
    pub fn manifest_json(&self) -> String {
        let devices: Vec<serde_json::Value> = self
            .devices
            .iter()
            .map(|(n, t)| serde_json::json!({ "name": n, "type": t }))
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "type": "solo5.manifest",
            "version": 1,
            "devices": devices,
        }))
        .unwrap_or_default()
    }

    /// The target's name, if known.
    pub fn target(&self) -> &'static str {
        self.abi
            .and_then(|a| AbiTarget::from_raw(a.target))
            .map_or("unknown", AbiTarget::name)
    }
}
