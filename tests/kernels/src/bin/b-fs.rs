//! The file system benchmark (`cargo xtask bench storage`): writes
//! `/bench.bin`, N MiB in 1 MiB writes (`write:N`), then reads it back in
//! 1 MiB reads (`read`), timing each pass with the monotonic clock:
//! `b-fs: write N MiB in T us`, `b-fs: read N MiB in T us`.

#![no_std]
#![no_main]

extern crate alloc;

use morgana::Instant;
use morgana_fs::Fs;

const MIB: usize = 1 << 20;

#[morgana::main]
async fn main(disk: Fs) -> Result<(), morgana_fs::FsError> {
    let mut n = 0usize;
    for op in morgana::args().filter(|a| !a.starts_with("--")) {
        if let Some(v) = op.strip_prefix("write:") {
            n = v.parse().unwrap_or(0);
            let chunk = alloc::vec![0xa5u8; MIB];
            let t0 = Instant::now();
            for i in 0..n {
                disk.write("/bench.bin", (i * MIB) as u64, &chunk).await?;
            }
            let us = t0.elapsed().as_micros();
            morgana::println!("b-fs: write {n} MiB in {us} us");
        } else if op == "read" {
            let size = disk.size("/bench.bin").await? as usize;
            let t0 = Instant::now();
            let mut at = 0;
            while at < size {
                at += disk.read("/bench.bin", at as u64, MIB).await?.len();
            }
            let us = t0.elapsed().as_micros();
            morgana::println!("b-fs: read {} MiB in {us} us", size / MIB);
        }
    }
    let _ = n;
    Ok(())
}
