//! The bodies of Morgana's fuzz targets: every place where input from
//! outside the tender's trust crosses into it.
//!
//! * [`elf()`]: an image file, through the ELF loader's planning, note
//!   lookup and the image checks (ABI note, manifest note), then the load
//!   into real hvt guest memory;
//! * [`manifest`]: a manifest note, through both of its decoders (the
//!   tender's [`Manifest::validate`] and the guest's zero-copy
//!   [`ManifestView`]), which must agree, and the encoder;
//! * [`args()`]: a tender command line (NUL-separated arguments) through the
//!   option scanner, both parsers (tender and unix) and the guest command
//!   line builder;
//! * [`hypercalls()`]: arbitrary guest memory and a sequence of hvt
//!   hypercalls on it, served by the hvt tender's real handler with a real
//!   block file and a real datagram socket in place of the tap;
//! * `net` (only in a build with `MORGANA_SIM=1`, on the runtime's
//!   simulated platform): Ethernet frames through `morgana-net`'s driver
//!   and smoltcp, in the crate `morgana-fuzz-net` (a library of its own,
//!   so that `morgana build` does not take this crate for unikernels);
//! * `fs` and `tar` (the same build): a disk's bytes through `morgana-fs`
//!   (FAT) and `morgana-kv-ro`'s tar store, in the same crate.
//!
//! Each function panics only on a bug (a violated invariant); every
//! rejection must come back as an error. The binaries in `fuzz_targets/`
//! hand these functions to libFuzzer (`cargo xtask fuzz`); the tests replay
//! the committed seeds and every input that ever crashed a target.

use morgana_abi::mft::{DeviceDecl, DeviceKind, Manifest, ManifestView};
use morgana_abi::note::{self, AbiTarget};
use morgana_host::args;
use morgana_host::attach::{Attached, Device};
use morgana_tender::elf;
use morgana_tender::hvt::hypercalls::{self, Devices};
use morgana_tender::hvt::memory::GuestMem;
use morgana_tender::image;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: what `cargo xtask fuzz TARGET` runs.
pub const TARGETS: &[(&str, Target)] = &[
    ("elf", elf),
    ("manifest", manifest),
    ("args", args),
    ("hypercalls", hypercalls),
    #[cfg(morgana_sim)]
    ("net", morgana_fuzz_net::net),
    #[cfg(morgana_sim)]
    ("fs", morgana_fuzz_net::fs),
    #[cfg(morgana_sim)]
    ("tar", morgana_fuzz_net::tar),
];

/// Guest memory size the `elf` target plans and loads for.
const ELF_MEM: u64 = 4 << 20;

/// An image file: planned for an hvt guest of 4 MiB, its notes and
/// Morgana's sections looked up, checked as an hvt and an spt image, and
/// loaded.
pub fn elf(data: &[u8]) {
    for (ty, align, max) in [
        (
            note::ABI1_NOTE_TYPE,
            note::ABI1_NOTE_ALIGN,
            note::ABI1_NOTE_MAX_SIZE,
        ),
        (
            note::MFT1_NOTE_TYPE,
            note::MFT1_NOTE_ALIGN,
            note::MFT1_NOTE_MAX_SIZE,
        ),
    ] {
        if let Ok(Some(desc)) = elf::find_note(data, ty, align, max, "fuzz") {
            assert!(desc.len() <= max, "a note larger than its maximum");
        }
    }
    // Morgana's own sections, found by name: the offload request as the
    // tenders read it, and the trace buffer.
    if let Some(b) = elf::section_bytes(data, morgana_abi::offload::SECTION) {
        assert!(b.len() <= data.len(), "a section larger than its file");
        let _ = morgana_abi::offload::Request::parse(b);
    }
    let _ = elf::find_section(data, morgana_abi::trace::SECTION);
    for (target, version) in [
        (AbiTarget::Hvt, morgana_abi::hvt::ABI_VERSION),
        (AbiTarget::Spt, morgana_abi::spt::ABI_VERSION),
    ] {
        let _ = image::check(data.to_vec(), target, version);
    }
    let Ok(plan) = elf::plan(data, ELF_MEM) else {
        return;
    };
    check_plan(data, &plan);
    let mut mem = GuestMem::new(ELF_MEM).expect("guest memory");
    // Loading may refuse (an overlap with what the ABI reserves), but it
    // must never touch memory outside the guest's.
    let _ = mem.load(data, &plan);
}

/// What the tenders rely on when they apply a plan.
fn check_plan(img: &[u8], plan: &elf::LoadPlan) {
    let page = morgana_abi::PAGE_SIZE;
    assert!(plan.entry >= morgana_abi::GUEST_MIN_BASE && plan.entry < ELF_MEM);
    assert!(plan.end <= ELF_MEM && plan.end.is_multiple_of(page));
    let mut last_end = 0;
    for s in &plan.segments {
        assert!(s.filesz <= s.memsz, "filesz > memsz: {s:?}");
        let file_end = s.offset.checked_add(s.filesz).expect("offset overflow");
        assert!(
            file_end <= img.len() as u64,
            "segment beyond the file: {s:?}"
        );
        let end = s.vaddr.checked_add(s.memsz).expect("vaddr overflow");
        assert!(s.vaddr >= morgana_abi::GUEST_MIN_BASE && end <= plan.end);
        assert!(s.prot_start.is_multiple_of(page) && s.prot_end.is_multiple_of(page));
        assert!(s.prot_start <= s.vaddr && s.prot_end >= end && s.prot_end <= ELF_MEM);
        assert!(
            s.prot_start >= last_end,
            "segments overlap or are out of order"
        );
        last_end = s.prot_end;
    }
}

/// A manifest note's bytes through both decoders and the encoder.
pub fn manifest(data: &[u8]) {
    let decoded = Manifest::decode(data);
    let view = ManifestView::new(data);
    match (&decoded, &view) {
        (Ok(m), Ok(v)) => {
            assert_eq!(m.len(), v.len(), "the decoders disagree on the length");
            let mut again = vec![0u8; m.encoded_len()];
            m.encode(&mut again);
            let back = Manifest::decode(&again).expect("an encoded manifest decodes");
            assert_eq!(back.len(), m.len());
        }
        (Err(_), Err(_)) => {}
        (d, v) => panic!("the decoders disagree: decode {d:?}, view {v:?}"),
    }
    if let Ok(m) = Manifest::validate(data) {
        assert!(decoded.is_ok(), "validate accepts what decode refuses");
        for (_, e) in m.devices() {
            let _ = (e.name(), e.kind());
        }
    }
}

/// A command line: arguments separated by NUL bytes.
pub fn args(data: &[u8]) {
    let argv: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let _ = args::scan(&argv);
    if let Ok(o) = args::parse(&argv) {
        let _ = args::guest_cmdline(&o.guest_args);
    }
    let _ = args::parse_unix(&argv);
    for a in &argv {
        let _ = args::parse_mac(a);
    }
}

/// Guest memory size of the `hypercalls` target.
const HC_MEM: u64 = 1 << 16;
/// Sector size and count of its block device.
const HC_SECTOR: u16 = 512;
const HC_SECTORS: u64 = 8;

/// The hypercall target's VM: guest memory and devices, made once.
struct Vm {
    mem: GuestMem,
    devs: Devices,
    /// The other end of the datagram socket standing in for the tap.
    peer: OwnedFd,
    _attached: Attached,
}

static VM: Mutex<Option<Vm>> = Mutex::new(None);

fn new_vm() -> Vm {
    let mut manifest = Manifest::from_decls(&[
        DeviceDecl {
            name: "storage",
            kind: DeviceKind::Block,
        },
        DeviceDecl {
            name: "service",
            kind: DeviceKind::Net,
        },
    ])
    .expect("a manifest of two devices");
    // SAFETY: plain system calls whose results are checked.
    let (disk, pair) = unsafe {
        let disk = libc::memfd_create(c"morgana-fuzz-disk".as_ptr(), 0);
        assert!(disk >= 0, "memfd_create");
        assert_eq!(
            libc::ftruncate(disk, (HC_SECTORS * u64::from(HC_SECTOR)) as i64),
            0
        );
        let mut pair = [0; 2];
        let r = libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK,
            0,
            pair.as_mut_ptr(),
        );
        assert_eq!(r, 0, "socketpair");
        (disk, pair)
    };
    let mut devices = Vec::new();
    for (i, e) in manifest.entries_mut().iter_mut().enumerate().skip(1) {
        match e.kind() {
            Some(DeviceKind::Block) => {
                e.set_block(HC_SECTORS * u64::from(HC_SECTOR), HC_SECTOR);
                e.set_hostfd(disk);
                e.set_attached(true);
                devices.push(Device {
                    handle: i,
                    name: e.name().into(),
                    kind: DeviceKind::Block,
                    // SAFETY: a fresh descriptor, owned only here.
                    fd: unsafe { OwnedFd::from_raw_fd(disk) },
                    block: Some((HC_SECTORS * u64::from(HC_SECTOR), HC_SECTOR)),
                });
            }
            _ => {
                e.set_net([2, 0, 0, 0, 0, 1], 1500);
                e.set_hostfd(pair[0]);
                e.set_attached(true);
                devices.push(Device {
                    handle: i,
                    name: e.name().into(),
                    kind: DeviceKind::Net,
                    // SAFETY: as above.
                    fd: unsafe { OwnedFd::from_raw_fd(pair[0]) },
                    block: None,
                });
            }
        }
    }
    let attached = Attached { manifest, devices };
    Vm {
        mem: GuestMem::new(HC_MEM).expect("guest memory"),
        devs: Devices::new(&attached),
        // SAFETY: a fresh descriptor, owned only here.
        peer: unsafe { OwnedFd::from_raw_fd(pair[1]) },
        _attached: attached,
    }
}

/// Points descriptor 1 (the guest console PUTS writes to) at `/dev/null`,
/// for the fuzzer binary: libFuzzer reports on stderr.
pub fn silence_stdout() {
    // SAFETY: opening /dev/null and moving it onto descriptor 1.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        assert!(
            null >= 0 && libc::dup2(null, 1) == 1,
            "cannot silence stdout"
        );
        libc::close(null);
    }
}

/// Guest memory and hypercalls: `data` is `[n, (port, gpa: u32 LE) * n,
/// memory...]`; the memory bytes fill guest memory from address 0 (the
/// rest is zero), then the `n` hypercalls run in order until one halts.
/// POLL's timeout is forced to zero so that no input blocks the fuzzer.
pub fn hypercalls(data: &[u8]) {
    use morgana_abi::hvt::{HcPoll, Hypercall};
    use std::os::fd::AsRawFd;
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let calls_len = (usize::from(n) * 5).min(rest.len());
    let (calls, memory) = rest.split_at(calls_len);
    let mut guard = VM.lock().unwrap_or_else(|e| e.into_inner());
    let vm = guard.get_or_insert_with(new_vm);
    let mut image = vec![0u8; HC_MEM as usize];
    let m = memory.len().min(image.len());
    image[..m].copy_from_slice(&memory[..m]);
    vm.mem.write("fuzz", 0, &image).expect("guest memory write");
    // A frame for NET_READ to find, if the socket is empty.
    // SAFETY: sending from a valid buffer on our own socket.
    unsafe {
        libc::send(
            vm.peer.as_raw_fd(),
            memory.as_ptr().cast(),
            memory.len().min(1514),
            libc::MSG_DONTWAIT,
        )
    };
    for c in calls.chunks_exact(5) {
        let Some(hc) = Hypercall::from_port(u16::from(c[0])) else {
            continue;
        };
        let gpa = u64::from(u32::from_le_bytes([c[1], c[2], c[3], c[4]]));
        if hc == Hypercall::Poll {
            let _ = vm.mem.write_u64("fuzz", gpa, HcPoll::TIMEOUT_OFF, 0);
        }
        match hypercalls::serve(&vm.mem, &mut vm.devs, hc, gpa) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            // The tender stops the guest with this error: a real VM would
            // be gone, so the sequence ends here too.
            Err(_) => break,
        }
    }
    // Drain what NET_WRITE sent, so the socket never fills.
    let mut buf = [0u8; 2048];
    // SAFETY: receiving into a valid buffer from our own socket.
    while unsafe {
        libc::recv(
            vm.peer.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every file under `fuzz/DIR/TARGET/`, through its target.
    fn replay(dir: &str) -> usize {
        let mut n = 0;
        for (name, f) in TARGETS {
            let d = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(name);
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries {
                let p = e.unwrap().path();
                f(&std::fs::read(&p).unwrap());
                n += 1;
            }
        }
        n
    }

    #[test]
    fn seeds_pass_every_target() {
        assert!(replay("seeds") > 0, "no seeds found under fuzz/seeds");
    }

    #[test]
    fn inputs_that_once_crashed_pass() {
        replay("regressions");
    }

    #[test]
    fn targets_survive_trivial_inputs() {
        for (_, f) in TARGETS {
            for d in [&b""[..], b"\0", b"\x7fELF", &[0xff; 64]] {
                f(d);
            }
        }
    }
}
