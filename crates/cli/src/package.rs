//! `morgana package`: an OCI image (image-spec 1.1 layout: `oci-layout`,
//! `index.json`, `blobs/sha256/...`) holding a unikernel and the metadata
//! urunc, the Kubernetes runtime for unikernels, reads to run it.
//!
//! urunc's contract (its `pkg/unikontainers`): the annotations
//! `com.urunc.unikernel.unikernelType` (Morgana images take MirageOS's
//! command-line conventions, `--ipv4=`/`--ipv4-gateway=`, net device
//! `service`, block device `storage`: type `mirage`),
//! `com.urunc.unikernel.hypervisor` (`hvt`, `spt`, or `qemu` for virtio),
//! `com.urunc.unikernel.binary` (the path in the root file system),
//! `com.urunc.unikernel.cmdline`, optionally `com.urunc.unikernel.block`
//! and the Solo5 device names `com.urunc.unikernel.solo5NetDev` /
//! `solo5BlkDev`. They are set on the manifest and as the config's labels,
//! and repeated, base64-encoded, in `/urunc.json` of the root file system
//! (for runtimes that do not pass image annotations on). The command line
//! is also the config's `Cmd`, which urunc prefers when the container has
//! arguments.

use crate::Platform;
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `morgana package` makes an image for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OciTarget {
    /// Solo5 hvt (urunc runs `solo5-hvt`).
    Hvt,
    /// Solo5 spt (urunc runs `solo5-spt`).
    Spt,
    /// virtio (urunc runs QEMU).
    Virtio,
}

impl OciTarget {
    /// The ABI target name an image for it carries.
    pub fn abi_name(self) -> &'static str {
        match self {
            Self::Hvt => "hvt",
            Self::Spt => "spt",
            Self::Virtio => "virtio",
        }
    }

    /// urunc's monitor name.
    pub fn monitor(self) -> &'static str {
        match self {
            Self::Hvt => "hvt",
            Self::Spt => "spt",
            Self::Virtio => "qemu",
        }
    }

    /// The platform whose build directory holds its images.
    pub fn platform(self) -> Platform {
        match self {
            Self::Hvt => Platform::Hvt,
            Self::Spt => Platform::Spt,
            Self::Virtio => Platform::Virtio,
        }
    }
}

/// What to package.
#[derive(Clone, Debug)]
pub struct PackageOptions {
    /// The unikernel image.
    pub image: PathBuf,
    /// Its target.
    pub target: OciTarget,
    /// The unikernel's command line.
    pub cmdline: String,
    /// A disk image to ship and attach as the block device.
    pub block: Option<PathBuf>,
    /// The reference name in `index.json` (`org.opencontainers.image.ref.name`).
    pub tag: String,
}

/// The image written.
#[derive(Clone, Debug)]
pub struct Packaged {
    /// The manifest's digest (`sha256:...`).
    pub manifest_digest: String,
    /// urunc's annotations.
    pub annotations: BTreeMap<String, String>,
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Writes `bytes` as a blob of `layout`; returns its descriptor.
fn blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Result<Value> {
    let hex = sha256_hex(bytes);
    let p = layout.join("blobs/sha256").join(&hex);
    std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(json!({
        "mediaType": media_type,
        "digest": format!("sha256:{hex}"),
        "size": bytes.len(),
    }))
}

/// A reproducible tar of `files` (path, mode, contents), directories added.
fn layer(files: &[(String, u32, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut t = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = Vec::new();
    for (path, _, _) in files {
        let mut acc = String::new();
        for part in path
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            acc.push_str(part);
            acc.push('/');
            if !dirs.contains(&acc) {
                dirs.push(acc.clone());
            }
        }
    }
    for d in &dirs {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        t.append_data(&mut h, d, std::io::empty())?;
    }
    for (path, mode, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        t.append_data(&mut h, path, data.as_slice())?;
    }
    Ok(t.into_inner()?)
}

/// Writes the OCI image layout for `opts` into `out` (created; it must not
/// exist or be empty).
pub fn package(opts: &PackageOptions, out: &Path) -> Result<Packaged> {
    let info = crate::inspect(&opts.image)
        .with_context(|| format!("{} is not a unikernel image", opts.image.display()))?;
    let Some(_) = info.abi else {
        bail!(
            "{} has no Solo5 ABI note: it is not an hvt, spt or virtio image (unix builds cannot be packaged)",
            opts.image.display()
        );
    };
    if info.target() != opts.target.abi_name() {
        bail!(
            "{} is a {} image, not {} (build it with `morgana build --target {}`)",
            opts.image.display(),
            info.target(),
            opts.target.abi_name(),
            opts.target.abi_name()
        );
    }
    let count = |t: &str| info.devices.iter().filter(|(_, k)| *k == t).count();
    if count("NET_BASIC") > 1 || count("BLOCK_BASIC") > 1 {
        bail!(
            "{} declares {} net and {} block devices: urunc attaches at most one of each",
            opts.image.display(),
            count("NET_BASIC"),
            count("BLOCK_BASIC")
        );
    }
    let blk_dev = info
        .devices
        .iter()
        .find(|(_, k)| *k == "BLOCK_BASIC")
        .map(|(n, _)| n.clone());
    let net_dev = info
        .devices
        .iter()
        .find(|(_, k)| *k == "NET_BASIC")
        .map(|(n, _)| n.clone());
    if opts.block.is_some() && blk_dev.is_none() {
        bail!("--block: {} declares no block device", opts.image.display());
    }
    if let Ok(mut d) = std::fs::read_dir(out)
        && d.next().is_some()
    {
        bail!(
            "{} is not empty: give a new or empty directory",
            out.display()
        );
    }
    let name = opts
        .image
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("unikernel")
        .to_string();
    let binary = format!("/unikernel/{name}.{}", opts.target.abi_name());
    let kernel = std::fs::read(&opts.image)
        .with_context(|| format!("cannot read {}", opts.image.display()))?;

    // A virtio image learns which virtio device is which from its command
    // line (`--net:NAME=virtioN ... --`): net first, then block, as the
    // devices are attached. urunc puts `--ipv4=... --ipv4-gateway=...` in
    // front; the guest reads bindings anywhere before the `--`.
    let cmdline = if opts.target == OciTarget::Virtio {
        let mut binds: Vec<String> = Vec::new();
        if let Some(n) = &net_dev {
            binds.push(format!("--net:{n}=virtio0"));
        }
        if let Some(b) = &blk_dev {
            binds.push(format!("--block:{b}=virtio{}", binds.len()));
        }
        binds.push("--".into());
        if !opts.cmdline.is_empty() {
            binds.push(opts.cmdline.clone());
        }
        binds.join(" ")
    } else {
        opts.cmdline.clone()
    };
    let mut ann: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        ann.insert(format!("com.urunc.unikernel.{k}"), v.to_string());
    };
    set("unikernelType", "mirage");
    set("hypervisor", opts.target.monitor());
    set("binary", &binary);
    set("cmdline", &cmdline);
    set("unikernelVersion", env!("CARGO_PKG_VERSION"));
    set("mountRootfs", "false");
    if let Some(n) = &net_dev {
        set("solo5NetDev", n);
    }
    if let Some(n) = &blk_dev {
        set("solo5BlkDev", n);
    }
    let mut files = vec![(binary.trim_start_matches('/').to_string(), 0o755, kernel)];
    if let Some(b) = &opts.block {
        let disk = std::fs::read(b).with_context(|| format!("cannot read {}", b.display()))?;
        if disk.is_empty() || disk.len() % 512 != 0 {
            bail!(
                "--block {}: size {} is not a positive multiple of 512",
                b.display(),
                disk.len()
            );
        }
        let path = "/unikernel/block.img".to_string();
        ann.insert("com.urunc.unikernel.block".into(), path.clone());
        files.push((path.trim_start_matches('/').to_string(), 0o644, disk));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let urunc_json: BTreeMap<&String, String> =
        ann.iter().map(|(k, v)| (k, b64.encode(v))).collect();
    files.push((
        "urunc.json".into(),
        0o644,
        serde_json::to_vec_pretty(&urunc_json)?,
    ));
    let tarball = layer(&files)?;

    std::fs::create_dir_all(out.join("blobs/sha256"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let layer_desc = blob(out, "application/vnd.oci.image.layer.v1.tar", &tarball)?;
    let diff_id = layer_desc["digest"].clone();
    let cmd: Vec<&str> = cmdline.split_whitespace().collect();
    let mut config = json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": ann },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{
            "created": "1970-01-01T00:00:00Z",
            "created_by": format!("morgana package --target {}", opts.target.abi_name()),
        }],
    });
    if !cmd.is_empty() {
        config["config"]["Cmd"] = json!(cmd);
    }
    let config_desc = blob(
        out,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config)?,
    )?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
        "annotations": ann,
    });
    let mut manifest_desc = blob(
        out,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest)?,
    )?;
    manifest_desc["platform"] = json!({ "architecture": "amd64", "os": "linux" });
    manifest_desc["annotations"] = json!({ "org.opencontainers.image.ref.name": opts.tag });
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest_desc],
    });
    std::fs::write(
        out.join("oci-layout"),
        serde_json::to_vec(&json!({ "imageLayoutVersion": "1.0.0" }))?,
    )?;
    std::fs::write(out.join("index.json"), serde_json::to_vec_pretty(&index)?)?;
    Ok(Packaged {
        manifest_digest: manifest_desc["digest"].as_str().unwrap_or_default().into(),
        annotations: ann,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_reproducible_and_hold_their_directories() {
        let files = vec![("unikernel/x.hvt".to_string(), 0o755, b"abc".to_vec())];
        let a = layer(&files).unwrap();
        assert_eq!(a, layer(&files).unwrap());
        let mut ar = tar::Archive::new(a.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["unikernel/", "unikernel/x.hvt"]);
    }
}
