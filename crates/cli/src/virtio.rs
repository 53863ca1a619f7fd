//! `morgana run --target virtio`: boots a virtio image on QEMU with the
//! devices the tenders' options name, and returns the unikernel's status.
//!
//! The devices are checked and opened exactly as a tender does (the same
//! code, so the same one-line errors and status 1): taps are opened here
//! and handed to QEMU as descriptors, block files are checked for a whole
//! number of sectors. Each device becomes one virtio device, in the order
//! of the options, and the unikernel's command line binds each declared
//! name to it (`--net:NAME=virtioN`, `--block:NAME=virtioN`).
//!
//! QEMU gets an `isa-debug-exit` device (the guest's status `s` ends QEMU
//! with `(s << 1) | 1`) and an `isa-debugcon` host channel, read after the
//! run: the guest writes its boot errors there (printed on stderr) and,
//! last, a NUL and its exact status byte (bit 7 does not survive
//! `isa-debug-exit`).

use anyhow::{Context, Result, bail};
use morgana_abi::mft::{DeviceKind, Manifest};
use morgana_abi::note;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The QEMU machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `-M microvm`: virtio-mmio devices, announced on the command line.
    Microvm,
    /// `-M q35`: virtio-pci devices.
    Q35,
}

/// QEMU's accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// KVM (`-accel kvm -cpu host`).
    Kvm,
    /// QEMU's emulator (`-accel tcg -cpu max`).
    Tcg,
}

impl Accel {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

/// The QEMU program: `$MORGANA_QEMU`, else `qemu-system-x86_64`.
pub fn qemu() -> PathBuf {
    std::env::var_os("MORGANA_QEMU")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
}

/// Whether QEMU can run a guest with KVM here: starts a paused microvm
/// with `-accel kvm -cpu host` and asks its monitor to quit. Where
/// `/dev/kvm` is missing or refuses QEMU's set-up (a nested KVM that
/// rejects some MSR writes, as on the machines this was developed on),
/// QEMU fails or aborts, and TCG is used instead.
pub fn kvm_works() -> bool {
    use std::io::Write;
    use std::process::Stdio;
    if std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let child = Command::new(qemu())
        .args([
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-M",
            "microvm",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-S",
            "-monitor",
            "stdio",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"quit\n");
    }
    child.wait().is_ok_and(|s| s.success())
}

/// The accelerator to use: `$MORGANA_ACCEL` (`kvm` or `tcg`) if set, else
/// KVM when [`kvm_works`], else TCG.
pub fn choose_accel() -> Result<Accel> {
    match std::env::var("MORGANA_ACCEL").ok().as_deref() {
        Some("kvm") => Ok(Accel::Kvm),
        Some("tcg") => Ok(Accel::Tcg),
        Some(other) => bail!("MORGANA_ACCEL must be `kvm' or `tcg', not `{other}'"),
        None => Ok(if kvm_works() { Accel::Kvm } else { Accel::Tcg }),
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The image.
    pub image: PathBuf,
    /// The machine.
    pub machine: Machine,
    /// The accelerator (`None`: [`choose_accel`]).
    pub accel: Option<Accel>,
    /// Tender-style options, then `--` and the unikernel's arguments.
    pub args: Vec<String>,
}

/// Splits `--machine=M`/`--machine M` and `--accel=A` off `args` (before
/// any `--`).
pub fn take_run_flags(args: &[String]) -> Result<(Machine, Option<Accel>, Vec<String>)> {
    let mut machine = Machine::Microvm;
    let mut accel = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            rest.push(a.clone());
            rest.extend(it.cloned());
            break;
        }
        let (flag, value) = match a.split_once('=') {
            Some((f, v)) if f == "--machine" || f == "--accel" => (f, v.to_string()),
            _ if a == "--machine" || a == "--accel" => (
                a.as_str(),
                it.next()
                    .with_context(|| format!("missing value after `{a}'"))?
                    .clone(),
            ),
            _ => {
                rest.push(a.clone());
                continue;
            }
        };
        if flag == "--machine" {
            machine = match value.as_str() {
                "microvm" => Machine::Microvm,
                "q35" => Machine::Q35,
                v => bail!("unknown machine `{v}' (microvm or q35)"),
            };
        } else {
            accel = Some(match value.as_str() {
                "kvm" => Accel::Kvm,
                "tcg" => Accel::Tcg,
                v => bail!("unknown accelerator `{v}' (kvm or tcg)"),
            });
        }
    }
    Ok((machine, accel, rest))
}

fn image_manifest(path: &Path) -> Result<Manifest> {
    let img = crate::ImageFile::read(path)?;
    if img.abi()?.map(|a| a.target) != Some(note::AbiTarget::Virtio as u32) {
        bail!(
            "{}: not a virtio image (build it with `morgana build --target virtio`)",
            path.display()
        );
    }
    img.manifest()
}

/// A temporary file removed on drop.
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The QEMU command for `opts`, the tap descriptors it inherits, and the
/// host channel file.
fn qemu_command(
    opts: &RunOptions,
    accel: Accel,
) -> Result<(Command, Vec<std::os::fd::OwnedFd>, Temp)> {
    let manifest = image_manifest(&opts.image)?;
    let parsed = morgana_host::args::parse_unix(&opts.args).map_err(|e| anyhow::anyhow!("{e}"))?;
    let attached = morgana_host::attach_devices(&manifest, &parsed.devices)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let guest = morgana_host::args::guest_cmdline(&parsed.guest_args)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mem_mib = parsed.mem.map_or(512, |b| (b >> 20).max(16));

    let chan = Temp(std::env::temp_dir().join(format!(
        "morgana-virtio-{}-{}.chan",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    )));
    let mut c = Command::new(qemu());
    match accel {
        Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => c.args(["-accel", "tcg", "-cpu", "max"]),
    };
    match opts.machine {
        // No ACPI: QEMU then announces the virtio-mmio devices on the
        // kernel command line (auto-kernel-cmdline), as Firecracker does.
        Machine::Microvm => c.args(["-M", "microvm,acpi=off,auto-kernel-cmdline=on"]),
        Machine::Q35 => c.args(["-M", "q35"]),
    };
    c.arg("-m").arg(mem_mib.to_string());
    c.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0x501,iosize=2",
        "-device",
        "isa-debugcon,iobase=0xe9,chardev=morgana_chan",
    ]);
    c.arg("-chardev")
        .arg(format!("file,id=morgana_chan,path={}", chan.0.display()));
    c.arg("-kernel").arg(&opts.image);
    let (net_dev, blk_dev) = match opts.machine {
        Machine::Microvm => ("virtio-net-device", "virtio-blk-device"),
        Machine::Q35 => ("virtio-net-pci", "virtio-blk-pci"),
    };
    let mut fds = Vec::new();
    let mut binds = Vec::new();
    for (i, d) in attached.devices.into_iter().enumerate() {
        let e = attached.manifest.entries()[d.handle];
        // PCI: one slot each, in order (discovery is in slot order).
        let addr = match opts.machine {
            Machine::Q35 => format!(",addr={:#x}", 0x10 + i),
            Machine::Microvm => String::new(),
        };
        // No option ROM: the unikernel does not need iPXE's.
        let rom = match (opts.machine, d.kind) {
            (Machine::Q35, DeviceKind::Net) => ",romfile=",
            _ => "",
        };
        match d.kind {
            DeviceKind::Net => {
                let mac = e
                    .net()
                    .0
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":");
                c.arg("-netdev")
                    .arg(format!("tap,id=net{i},fd={}", d.fd.as_raw_fd()));
                c.arg("-device")
                    .arg(format!("{net_dev},netdev=net{i},mac={mac}{addr}{rom}"));
                binds.push(format!("--net:{}=virtio{i}", d.name));
                fds.push(d.fd);
            }
            DeviceKind::Block => {
                let (_, sector) = e.block();
                let path = parsed
                    .devices
                    .iter()
                    .find_map(|o| match o {
                        morgana_host::args::DeviceOpt::Block { name, path } if *name == d.name => {
                            Some(path.clone())
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                if path.contains(',') {
                    bail!(
                        "block device '{}': QEMU cannot take a path with a comma ({path})",
                        d.name
                    );
                }
                c.arg("-drive").arg(format!(
                    "id=blk{i},file={path},format=raw,if=none,cache=writeback,file.locking=off"
                ));
                c.arg("-device").arg(format!(
                    "{blk_dev},drive=blk{i},logical_block_size={sector},physical_block_size={sector}{addr}"
                ));
                binds.push(format!("--block:{}=virtio{i}", d.name));
            }
        }
    }
    let mut line = binds.join(" ");
    line.push_str(" --");
    if !guest.is_empty() {
        line.push(' ');
        line.push_str(&guest);
    }
    c.arg("-append").arg(line);
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: between fork and exec this only makes system calls that are
    // safe there (fcntl, prctl, getppid): the taps stay open across exec,
    // and QEMU is killed if `morgana` dies, so a killed run leaves no VM
    // holding the taps.
    unsafe {
        c.pre_exec(move || {
            for &fd in &raw {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("morgana exited before QEMU started"));
            }
            Ok(())
        });
    }
    Ok((c, fds, chan))
}

/// Decodes how QEMU ended: the host channel's status record if there is
/// one, else `isa-debug-exit`'s `(s << 1) | 1` (low 7 bits of `s`); a reset
/// of the machine (QEMU's status 0 with `-no-reboot`) is an abort, 255;
/// QEMU's own failures (status 1 without a record, signals) are status 1.
pub fn decode_status(qemu_status: Option<i32>, chan: &[u8]) -> (i32, &[u8]) {
    let (text, record) = match chan {
        [text @ .., 0, s] => (text, Some(*s)),
        _ => (chan, None),
    };
    let status = match (qemu_status, record) {
        (Some(c), Some(s)) if c & 1 == 1 && (c >> 1) & 0x7f == i32::from(s & 0x7f) => i32::from(s),
        (Some(c), None) if c & 1 == 1 && c != 1 => (c >> 1) & 0x7f,
        // QEMU with -no-reboot stops when the guest resets the machine:
        // a triple fault, never a regular exit (which uses isa-debug-exit).
        (Some(0), _) => 255,
        _ => 1,
    };
    (status, text)
}

/// Runs the image; returns the unikernel's exit status.
pub fn run(opts: &RunOptions) -> Result<i32> {
    let accel = match opts.accel {
        Some(a) => a,
        None => choose_accel()?,
    };
    let (mut c, fds, chan) = qemu_command(opts, accel)?;
    let st = c
        .status()
        .with_context(|| format!("cannot run {}", qemu().display()))?;
    drop(fds);
    let bytes = std::fs::read(&chan.0).unwrap_or_default();
    let (status, text) = decode_status(st.code(), &bytes);
    if !text.is_empty() {
        use std::io::Write;
        let _ = std::io::stderr().write_all(text);
    }
    if st.code() == Some(0) {
        eprintln!("morgana: the unikernel reset the machine (a triple fault): status 255");
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decode() {
        // Status 0..=255 through isa-debug-exit plus the record.
        for s in 0..=255u8 {
            let code = ((i32::from(s) << 1) | 1) & 0xff;
            assert_eq!(decode_status(Some(code), &[0, s]).0, i32::from(s));
        }
        // No record: the low 7 bits.
        assert_eq!(decode_status(Some(85), b"").0, 42);
        // QEMU failed to start.
        assert_eq!(decode_status(Some(1), b"").0, 1);
        // Killed.
        assert_eq!(decode_status(None, b"").0, 1);
        // Error text before the record.
        let (s, t) = decode_status(Some(3), b"morgana: bad\n\x00\x01");
        assert_eq!((s, t), (1, &b"morgana: bad\n"[..]));
    }

    #[test]
    fn run_flags_come_off() {
        let a: Vec<String> = [
            "--machine=q35",
            "--block:a=b",
            "--accel",
            "tcg",
            "--",
            "--machine=x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (m, acc, rest) = take_run_flags(&a).unwrap();
        assert_eq!(m, Machine::Q35);
        assert_eq!(acc, Some(Accel::Tcg));
        assert_eq!(rest, ["--block:a=b", "--", "--machine=x"]);
    }
}
