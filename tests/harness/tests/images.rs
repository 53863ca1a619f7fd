//! Bad images get exit status 1 and a one-line reason from both tenders,
//! never a crash or a hang. Each case is a real image (hello) with one
//! thing broken.

use morgana_tests::{Output, Platform, TempFile, image, run_command, tender};
use std::process::Command;
use std::time::Duration;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offsets of the program headers of `kind` (1 = PT_LOAD, 4 = PT_NOTE).
fn phdrs(b: &[u8], kind: u32) -> Vec<usize> {
    let phoff = u64_at(b, 32) as usize;
    (0..u16_at(b, 56) as usize)
        .map(|i| phoff + i * 56)
        .filter(|&o| u32_at(b, o) == kind)
        .collect()
}

/// File offset of the note of type `ntype`.
fn note(b: &[u8], ntype: u32) -> usize {
    phdrs(b, 4)
        .into_iter()
        .map(|ph| u64_at(b, ph + 8) as usize)
        .find(|&o| u32_at(b, o + 8) == ntype)
        .expect("note")
}

const ABI1: u32 = 0x3149_4241;
const MFT1: u32 = 0x3154_464d;

fn run(p: Platform, img: &[u8], opts: &[&str]) -> Output {
    let f = TempFile::with(img);
    let mut c = Command::new(tender(p).unwrap());
    c.args(opts).arg(f.path());
    run_command(c, Duration::from_secs(30))
}

#[track_caller]
fn rejected(p: Platform, img: &[u8], msg: &str) {
    let o = run(p, img, &[]);
    o.expect_one_line_error(p, msg);
    assert!(!o.stderr.contains("panicked"), "{p:?}: {}", o.stderr);
}

fn hello(p: Platform) -> Vec<u8> {
    std::fs::read(image(p, "hello")).unwrap()
}

#[test]
fn the_unbroken_image_runs() {
    for p in Platform::TENDERS {
        let o = run(p, &hello(p), &[]);
        o.expect_status(0);
        o.expect_output("Hello, world");
    }
}

#[test]
fn truncated_and_non_elf_files() {
    for p in Platform::TENDERS {
        let img = hello(p);
        rejected(
            p,
            &img[..40],
            "invalid image: truncated file: 40 bytes, shorter than an ELF header",
        );
        rejected(
            p,
            &img[..100],
            "invalid image: truncated file: program headers lie beyond its end",
        );
        rejected(p, &img[..img.len() / 2], "truncated file");
        rejected(
            p,
            b"#!/bin/sh\necho not a unikernel\n",
            "invalid image: not an ELF file",
        );
        rejected(p, b"", "invalid image: truncated file: 0 bytes");
        let o = run_command(
            {
                let mut c = Command::new(tender(p).unwrap());
                c.arg("/nonexistent/image");
                c
            },
            Duration::from_secs(10),
        );
        o.expect_status(1)
            .expect_output("cannot read image: No such file");
        let o = run_command(Command::new(tender(p).unwrap()), Duration::from_secs(10));
        o.expect_status(1)
            .expect_output("missing UNIKERNEL operand");
    }
}

#[test]
fn wrong_machine_and_pie() {
    for p in Platform::TENDERS {
        let mut img = hello(p);
        img[18] = 183; // EM_AARCH64
        rejected(
            p,
            &img,
            "wrong machine: e_machine 183, expected x86_64 (62)",
        );
        let mut img = hello(p);
        img[16] = 3; // ET_DYN
        rejected(p, &img, "position-independent executable (ET_DYN)");
    }
}

#[test]
fn writable_and_executable_segment() {
    for p in Platform::TENDERS {
        let mut img = hello(p);
        let text = phdrs(&img, 1)[0];
        let flags = u32_at(&img, text + 4);
        put32(&mut img, text + 4, flags | 2);
        rejected(p, &img, "is both writable and executable (W+X)");
    }
}

#[test]
fn segments_outside_guest_memory() {
    for p in Platform::TENDERS {
        let mut img = hello(p);
        let text = phdrs(&img, 1)[0];
        put64(&mut img, text + 16, 0x80000);
        put64(&mut img, text + 24, 0x80000);
        rejected(p, &img, "lies below 0x100000");

        let mut img = hello(p);
        let data = *phdrs(&img, 1).last().unwrap();
        put64(&mut img, data + 16, 0x7ff0_0000);
        put64(&mut img, data + 24, 0x7ff0_0000);
        rejected(p, &img, "lies beyond guest memory (0x20000000 bytes)");
        // The unbroken image does not fit in 2 MiB of memory either way
        // minus the stack: here it still loads, so only the moved one fails.
    }
}

#[test]
fn missing_or_corrupt_abi_note_and_wrong_target() {
    for p in Platform::TENDERS {
        let mut img = hello(p);
        let n = note(&img, ABI1);
        put32(&mut img, n + 8, 0x1234_5678);
        rejected(p, &img, "no Solo5 ABI note: not a Solo5 unikernel");

        let mut img = hello(p);
        let n = note(&img, ABI1);
        put32(&mut img, n + 4, 0x1000);
        rejected(
            p,
            &img,
            "invalid image: corrupt ABI note: invalid size (4096 bytes)",
        );

        let mut img = hello(p);
        let n = note(&img, ABI1);
        put32(&mut img, n + 24, 1); // ABI version 1
        rejected(p, &img, "image requests unsupported ABI version 1");
    }
    rejected(
        Platform::Hvt,
        &hello(Platform::Spt),
        "image is built for the spt target, not hvt",
    );
    rejected(
        Platform::Spt,
        &hello(Platform::Hvt),
        "image is built for the hvt target, not spt",
    );
}

/// Appends a manifest note with `entries` in its header and `stored`
/// entries of data, and points the manifest's PT_NOTE at it.
fn with_manifest(mut img: Vec<u8>, entries: u32, stored: u32) -> Vec<u8> {
    let ph = phdrs(&img, 4)
        .into_iter()
        .find(|&ph| u32_at(&img, u64_at(&img, ph + 8) as usize + 8) == MFT1)
        .unwrap();
    while !img.len().is_multiple_of(8) {
        img.push(0);
    }
    let at = img.len();
    let descsz = 4 + 8 + 104 * stored;
    let mut n = Vec::new();
    n.extend_from_slice(&6u32.to_le_bytes());
    n.extend_from_slice(&descsz.to_le_bytes());
    n.extend_from_slice(&MFT1.to_le_bytes());
    n.extend_from_slice(b"Solo5\0\0\0");
    n.extend_from_slice(&[0; 4]);
    n.extend_from_slice(&1u32.to_le_bytes());
    n.extend_from_slice(&entries.to_le_bytes());
    for i in 0..stored {
        let mut e = [0u8; 104];
        if i == 0 {
            e[68..72].copy_from_slice(&(1u32 << 30).to_le_bytes());
        } else {
            e[..4].copy_from_slice(format!("n{:03}", i).as_bytes());
            e[68..72].copy_from_slice(&2u32.to_le_bytes());
        }
        n.extend_from_slice(&e);
    }
    img.extend_from_slice(&n);
    put64(&mut img, ph + 8, at as u64);
    put64(&mut img, ph + 32, n.len() as u64);
    put64(&mut img, ph + 40, n.len() as u64);
    img
}

#[test]
fn manifest_with_65_entries() {
    for p in Platform::TENDERS {
        let img = with_manifest(hello(p), 65, 65);
        rejected(
            p,
            &img,
            "invalid image: corrupt manifest note: invalid size (6772 bytes)",
        );
        let img = with_manifest(hello(p), 65, 2);
        rejected(
            p,
            &img,
            "invalid manifest: manifest has 65 entries, more than 64",
        );
        // 64 entries is the most a manifest may have: it passes validation
        // and the tender then asks for the 63 devices to be attached.
        let img = with_manifest(hello(p), 64, 64);
        let o = run(p, &img, &[]);
        o.expect_status(1)
            .expect_output("declared but not attached: 'n001' (NET_BASIC");
    }
}
