//! The spt tender's confinement is real: a guest making a system call
//! outside the spt ABI's allow-list (another call, another descriptor,
//! another clock, a block transfer of the wrong size or beyond the disk) is
//! killed by SIGSYS and the tender says so; the calls the ABI allows work.
//!
//! (A write to the image's own code dies of SIGSEGV on spt: that case is
//! `write_to_text_is_a_guest_memory_fault` in boot.rs.)

use morgana_tests::{Output, Platform, TempFile, boot};

const SECTOR: usize = 512;
const SECTORS: usize = 128;

fn sandbox(p: Platform, disk: &TempFile, mode: &str) -> Output {
    boot(
        p,
        "t-sandbox",
        &[&format!("--block:storage={}", disk.path())],
        &[mode],
    )
}

#[test]
fn allowed_calls_work() {
    let disk = TempFile::zeroed((SECTOR * SECTORS) as u64);
    let o = sandbox(Platform::Spt, &disk, "allowed");
    o.expect_status(0);
    assert_eq!(
        o.stdout, "sandbox: raw write to fd 1\nsandbox: allowed calls OK\n",
        "stderr: {}",
        o.stderr
    );
    assert_eq!(o.stderr, "");
    // The pwrite64 of the last sector reached the host file.
    let bytes = std::fs::read(&disk.0).unwrap();
    assert_eq!(bytes.len(), SECTOR * SECTORS);
    let want: Vec<u8> = (0..SECTOR).map(|i| (i as u8) ^ 0x5a).collect();
    assert_eq!(&bytes[(SECTORS - 1) * SECTOR..], &want[..]);
    assert!(bytes[..(SECTORS - 1) * SECTOR].iter().all(|&b| b == 0));
}

#[test]
fn forbidden_calls_are_killed_by_sigsys() {
    for (mode, nr) in [
        ("dup", 32),
        ("openat", 257),
        ("write-stderr", 1),
        ("pwrite-outside", 18),
        ("pwrite-count", 18),
        ("pread-count", 17),
        ("clock-other", 228),
    ] {
        let disk = TempFile::zeroed((SECTOR * SECTORS) as u64);
        let o = sandbox(Platform::Spt, &disk, mode);
        // The guest got as far as the call ...
        assert_eq!(
            o.stdout,
            format!("sandbox: calling {mode} (system call {nr})\n"),
            "{mode}: stderr: {}",
            o.stderr
        );
        // ... and the call killed it.
        o.expect_status(159);
        assert!(
            o.stderr.contains("morgana-spt: guest killed by SIGSYS"),
            "{mode}: stderr: {}",
            o.stderr
        );
        assert!(!o.stdout.contains("survived"), "{mode}: {}", o.stdout);
        assert!(!o.stderr.contains("must not reach stderr"), "{mode}");
        // Nothing was written to the disk.
        let bytes = std::fs::read(&disk.0).unwrap();
        assert_eq!(
            bytes.len(),
            SECTOR * SECTORS,
            "{mode}: the disk changed size"
        );
        assert!(
            bytes.iter().all(|&b| b == 0),
            "{mode}: the disk was written"
        );
    }
}

#[test]
fn sandbox_kernel_is_spt_only() {
    let disk = TempFile::zeroed((SECTOR * SECTORS) as u64);
    for p in [Platform::Hvt, Platform::Unix] {
        let o = sandbox(p, &disk, "dup");
        o.expect_status(2);
        assert_eq!(o.stdout, "sandbox: spt only\n", "{p:?}");
    }
}
