//! The FAT file system on a block device the unikernel made read-only:
//! reads work, and every change fails with the FS error set's block device
//! error (the device refuses writes). Prints one line per operation;
//! exits 3 on an unexpected result.

#![no_std]
#![no_main]

extern crate alloc;

use morgana::Block;
use morgana_fs::{Fs, FsError};

#[morgana::main]
async fn main(disk: Block) -> u8 {
    let fs = match Fs::mount(disk.into_read_only()).await {
        Ok(fs) => fs,
        Err(e) => {
            morgana::println!("fs-ro: mount: FAILED: {e}");
            return 3;
        }
    };
    match fs.read("/hello.txt", 0, 100).await {
        Ok(v) => morgana::println!("fs-ro: read /hello.txt: {} bytes", v.len()),
        Err(e) => {
            morgana::println!("fs-ro: read: FAILED: {e}");
            return 3;
        }
    }
    let results = [
        ("write", fs.write("/hello.txt", 0, b"x").await),
        ("create", fs.create("/new.txt").await),
        ("mkdir", fs.mkdir("/newdir").await),
        ("destroy", fs.destroy("/hello.txt").await),
    ];
    for (op, r) in results {
        match r {
            Err(e @ FsError::BlockDevice(_)) => morgana::println!("error block-device: {op}: {e}"),
            other => {
                morgana::println!("fs-ro: {op}: FAILED: got {other:?}");
                return 3;
            }
        }
    }
    0
}
