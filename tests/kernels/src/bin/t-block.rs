//! Writes every sector of `storage` with a pattern and reads it back, with
//! atomic and scheduled I/O; checks that misaligned, short and out-of-range
//! requests give EINVAL at the platform level. Exit 0 when all is well.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use morgana::Block;
use morgana::sys::{self, Solo5Result};

/// The contents of `sector`: 64-bit words `sector << 32 | word index`,
/// little-endian (word-at-a-time, since every guest instruction counts on
/// an emulating hypervisor).
fn pattern(sector: u64, buf: &mut [u8]) {
    for (w, chunk) in buf.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&((sector << 32) | w as u64).to_le_bytes());
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.chunks_exact(8).zip(b.chunks_exact(8)).all(|(x, y)| {
            u64::from_ne_bytes(x.try_into().unwrap()) == u64::from_ne_bytes(y.try_into().unwrap())
        })
}

#[morgana::main]
async fn main(storage: Block) -> u8 {
    let info = storage.info();
    let ss = info.sector_size as usize;
    morgana::println!("block: {} sectors of {} bytes", info.sectors, ss);
    let mut buf = vec![0u8; ss];
    let mut back = vec![0u8; ss];
    for s in 0..info.sectors {
        pattern(s, &mut buf);
        if let Err(e) = storage.atomic_write(s, &buf) {
            morgana::println!("block: write of sector {s} failed: {e}");
            return 3;
        }
    }
    for s in 0..info.sectors {
        pattern(s, &mut buf);
        if let Err(e) = storage.atomic_read(s, &mut back) {
            morgana::println!("block: read of sector {s} failed: {e}");
            return 3;
        }
        if !same(&buf, &back) {
            morgana::println!("block: sector {s} differs");
            return 3;
        }
    }
    morgana::println!("block: {} sectors written and read back", info.sectors);

    // Scheduled I/O of the last 8 sectors, several at once.
    let n = info.sectors.min(8);
    let first = info.sectors - n;
    let mut many = vec![0u8; ss * n as usize];
    if storage.read(first, &mut many).await.is_err() {
        morgana::println!("block: scheduled read failed");
        return 3;
    }
    for (i, chunk) in many.chunks(ss).enumerate() {
        pattern(first + i as u64, &mut buf);
        if !same(chunk, &buf) {
            morgana::println!(
                "block: scheduled read of sector {} differs",
                first + i as u64
            );
            return 3;
        }
    }
    morgana::println!("block: scheduled read of {n} sectors OK");

    let h = storage.handle();
    let cap = info.capacity();
    let checks: [(&str, Result<(), Solo5Result>); 5] = [
        ("misaligned offset", sys::block_read(h, 1, &mut buf)),
        ("out-of-range offset", sys::block_read(h, cap, &mut buf)),
        ("out-of-range write", sys::block_write(h, cap, &buf)),
        ("short read", sys::block_read(h, 0, &mut buf[..ss / 2])),
        ("misaligned write", sys::block_write(h, ss as u64 / 2, &buf)),
    ];
    for (what, r) in checks {
        match r {
            Err(Solo5Result::Einval) => morgana::println!("block: {what}: EINVAL"),
            other => {
                morgana::println!("block: {what}: expected EINVAL, got {other:?}");
                return 3;
            }
        }
    }
    if !tender_checks(h, cap, &mut buf) {
        return 3;
    }
    morgana::println!("block: OK");
    0
}

/// On hvt, the same bad requests as raw hypercalls, past the guest-side
/// checks: the tender must refuse them too (ret = EINVAL).
#[cfg(morgana_platform = "hvt")]
fn tender_checks(h: u64, cap: u64, buf: &mut [u8]) -> bool {
    use morgana::abi::hvt::{HcBlockIo, Hypercall};
    let ss = buf.len() as u64;
    for (what, nr, offset, len) in [
        ("misaligned offset", Hypercall::BlockRead, 1, ss),
        ("out-of-range offset", Hypercall::BlockRead, cap, ss),
        ("short read", Hypercall::BlockRead, 0, ss / 2),
        ("misaligned write", Hypercall::BlockWrite, ss / 2, ss),
        (
            "out-of-range write",
            Hypercall::BlockWrite,
            cap - ss / 2,
            ss,
        ),
    ] {
        let mut a = HcBlockIo {
            handle: h,
            offset,
            data: buf.as_mut_ptr() as u64,
            len,
            ret: -1,
        };
        // SAFETY: `a` and `buf` are live and owned here; the tender writes
        // at most `a.ret` and `len` bytes of `buf` (it must refuse them all).
        unsafe { morgana::platform::hvt::raw_hypercall(nr as u16, &raw mut a as u32) };
        // SAFETY: the tender wrote `ret` during the hypercall.
        let ret = unsafe { core::ptr::read_volatile(&raw const a.ret) };
        if ret != Solo5Result::Einval as i32 {
            morgana::println!("block: tender: {what}: expected EINVAL, got {ret}");
            return false;
        }
        morgana::println!("block: tender: {what}: EINVAL");
    }
    true
}

#[cfg(not(morgana_platform = "hvt"))]
fn tender_checks(_h: u64, _cap: u64, _buf: &mut [u8]) -> bool {
    true
}
