//! The read-only stores (morgana-kv-ro): the storage tests' directory baked
//! into this image at build time, and a tar archive of it on the block
//! device `files`. The guest arguments are operations, run in order:
//!
//! * `walk:baked`, `walk:tar`: one line per key, `baked F /key size hash
//!   midhash` (FNV-1a 64 of `get` and of `read(key, size / 3, 4097)`);
//! * `compare`: the two stores hold the same keys, and `get`, `read` (at
//!   several offsets), `size` and `exists` agree on each;
//! * `unknown`: an unknown key gives the unknown-key error in both.
//!
//! Exits 3 on the first unexpected result.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use morgana_kv_ro::{Baked, KvRo, KvRoError, Tar};

static TREE: Baked = morgana_kv_ro::include_baked!("tree");

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

async fn walk(name: &str, kv: &impl KvRo) -> Result<(), String> {
    let e = |e: KvRoError| format!("{name}: {e}");
    for key in kv.list().await.map_err(e)? {
        let size = kv.size(&key).await.map_err(e)?;
        let all = kv.get(&key).await.map_err(e)?;
        if all.len() as u64 != size {
            return Err(format!(
                "{name}: {key}: get gave {} of {size} bytes",
                all.len()
            ));
        }
        let mid = kv.read(&key, size / 3, 4097).await.map_err(e)?;
        morgana::println!(
            "{name} F /{key} {size} {:016x} {:016x}",
            fnv(&all),
            fnv(&mid)
        );
    }
    Ok(())
}

async fn compare(tar: &Tar) -> Result<(), String> {
    let e = |e: KvRoError| format!("{e}");
    let keys = TREE.list().await.map_err(e)?;
    if keys != tar.list().await.map_err(e)? {
        return Err(String::from("the stores list different keys"));
    }
    for key in &keys {
        let a = TREE.get(key).await.map_err(e)?;
        if a != tar.get(key).await.map_err(e)? {
            return Err(format!("{key}: values differ"));
        }
        let size = a.len() as u64;
        if tar.size(key).await.map_err(e)? != size || !tar.exists(key).await.map_err(e)? {
            return Err(format!("{key}: size or exists differ"));
        }
        for (off, len) in [
            (0, 1),
            (1, 600),
            (size / 2, 5000),
            (size, 10),
            (size + 7, 1),
        ] {
            let b = TREE.read(key, off, len).await.map_err(e)?;
            let t = tar.read(key, off, len).await.map_err(e)?;
            let from = (off.min(size)) as usize;
            let want = &a[from..from + len.min(a.len() - from)];
            if b != want || t != want {
                return Err(format!("{key}: read({off}, {len}) differs"));
            }
        }
    }
    morgana::println!("compare: {} keys identical", keys.len());
    Ok(())
}

async fn unknown(tar: &Tar) -> Result<(), String> {
    for (name, r) in [
        ("baked", TREE.get("no/such/key").await),
        ("tar", tar.get("no/such/key").await),
    ] {
        match r {
            Err(e @ KvRoError::UnknownKey(_)) => morgana::println!("{name}: error {e}"),
            other => return Err(format!("{name}: got {other:?}")),
        }
    }
    if TREE.exists("nope").await != Ok(false) || tar.exists("nope").await != Ok(false) {
        return Err(String::from("exists of an unknown key"));
    }
    if !matches!(tar.size("nope").await, Err(KvRoError::UnknownKey(_))) {
        return Err(String::from("size of an unknown key"));
    }
    Ok(())
}

#[morgana::main]
async fn main(files: Tar) -> u8 {
    for op in morgana::args().filter(|a| !a.starts_with("--")) {
        let r = match op {
            "walk:baked" => walk("baked", &TREE).await,
            "walk:tar" => walk("tar", &files).await,
            "compare" => compare(&files).await,
            "unknown" => unknown(&files).await,
            _ => Err(format!("unknown operation {op}")),
        };
        match r {
            Ok(()) => morgana::println!("kvro: {op}: ok"),
            Err(e) => {
                morgana::println!("kvro: {op}: FAILED: {e}");
                return 3;
            }
        }
    }
    0
}
