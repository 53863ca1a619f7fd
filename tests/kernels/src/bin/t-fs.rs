//! The FAT file system (morgana-fs) on a real block device. The guest
//! arguments are operations, run in order:
//!
//! * `walk`: every file and directory, depth first, one line each:
//!   `D path` or `F path size hash midhash`, where `hash` is the FNV-1a
//!   (64 bits) of the whole file read in one `read` and `midhash` that of
//!   `read(path, size / 3, 4097)`;
//! * `scenario`: creates, writes (at offsets, appending, past a cluster,
//!   a 5 MiB file) and destroys files and directories (see [`scenario`]);
//! * `errors`: produces each error of the FS error set the volume can
//!   give and prints `error NAME: message`;
//! * `fill`: writes `/fill.bin` until the volume is full;
//! * `format`: formats the whole device, then creates `/after-format.txt`;
//! * `read:PATH`: reads PATH, printing its size or the error.
//!
//! Meanwhile a task ticks on a 5 ms sleep, to show that the file system's
//! (scheduled) I/O lets it run. Exits 3 on the first unexpected result.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::future::Future;
use core::pin::Pin;
use core::time::Duration;
use morgana_fs::{Fs, FsError};

/// Byte `j` of test pattern `seed` (the harness computes the same).
fn pat(seed: u32, j: u64) -> u8 {
    let x = ((j as u32) ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(0x85EB_CA6B);
    ((x >> 24) as u8) ^ ((j >> 9) as u8)
}

fn pattern(seed: u32, from: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|j| pat(seed, from + j)).collect()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

type R = Result<(), String>;

fn walk<'a>(fs: &'a Fs, dir: String) -> Pin<Box<dyn Future<Output = R> + 'a>> {
    Box::pin(async move {
        let names = fs
            .listdir(&dir)
            .await
            .map_err(|e| format!("listdir {dir}: {e}"))?;
        for name in names {
            let path = if dir == "/" {
                format!("/{name}")
            } else {
                format!("{dir}/{name}")
            };
            let st = fs.stat(&path).await.map_err(|e| format!("stat: {e}"))?;
            if st.filename != name {
                return Err(format!("stat {path}: filename {:?}", st.filename));
            }
            if st.directory {
                morgana::println!("D {path}");
                walk(fs, path).await?;
            } else {
                let size = fs.size(&path).await.map_err(|e| format!("size: {e}"))?;
                let all = fs
                    .read(&path, 0, size as usize + 100)
                    .await
                    .map_err(|e| format!("read {path}: {e}"))?;
                if all.len() as u64 != size || st.size != size {
                    return Err(format!("{path}: read {} of {size} bytes", all.len()));
                }
                let mid = fs
                    .read(&path, size / 3, 4097)
                    .await
                    .map_err(|e| format!("read {path}: {e}"))?;
                morgana::println!("F {path} {size} {:016x} {:016x}", fnv(&all), fnv(&mid));
            }
        }
        Ok(())
    })
}

async fn expect_content(fs: &Fs, path: &str, want: &[u8]) -> R {
    let got = fs
        .read(path, 0, want.len() + 10)
        .await
        .map_err(|e| format!("read {path}: {e}"))?;
    if got != want {
        return Err(format!(
            "{path}: read back {} bytes, not the {} written",
            got.len(),
            want.len()
        ));
    }
    Ok(())
}

/// What `scenario` does (the harness checks the result with mtools):
///
/// * `mkdir /made/deep/er` (with its parents);
/// * `/made/Long name with spaces.txt`: created empty, `hello` at 0,
///   ` world` appended, `J` at 0: `Jello world`;
/// * `/made/héllo-ñ.txt`: `unicode`;
/// * `/made/deep/er/grow.bin`: pattern 1, 20,000 bytes appended 1,000 at
///   a time (past several clusters);
/// * `/made/holes.bin`: 100 bytes of pattern 2 at offset 5,000 (zeros
///   before);
/// * `/made/mid.bin`: 8,192 bytes of pattern 4, then bytes 4,000..4,100
///   overwritten with pattern 5 (from its offset 0);
/// * `/big5.bin`: 5 MiB written 64 KiB at a time, chunk `i` all bytes
///   `i ^ 0x5a`;
/// * destroys `/hello.txt`, the empty directory `/emptydir` and
///   `/made/gone.txt` (created for it).
async fn scenario(fs: &Fs) -> R {
    const CHUNK: usize = 64 << 10;
    let e = |what: &'static str| move |e: FsError| format!("{what}: {e}");
    fs.mkdir("/made/deep/er").await.map_err(e("mkdir"))?;
    let long = "/made/Long name with spaces.txt";
    fs.create(long).await.map_err(e("create"))?;
    expect_content(fs, long, b"").await?;
    fs.write(long, 0, b"hello").await.map_err(e("write"))?;
    fs.write(long, 5, b" world").await.map_err(e("append"))?;
    fs.write(long, 0, b"J").await.map_err(e("overwrite"))?;
    expect_content(fs, long, b"Jello world").await?;
    fs.write("/made/héllo-ñ.txt", 0, b"unicode")
        .await
        .map_err(e("write unicode"))?;
    let grow = "/made/deep/er/grow.bin";
    for i in 0..20u64 {
        fs.write(grow, i * 1000, &pattern(1, i * 1000, 1000))
            .await
            .map_err(e("grow"))?;
    }
    expect_content(fs, grow, &pattern(1, 0, 20_000)).await?;
    fs.write("/made/holes.bin", 5000, &pattern(2, 0, 100))
        .await
        .map_err(e("holes"))?;
    let mut holes = alloc::vec![0u8; 5000];
    holes.extend(pattern(2, 0, 100));
    expect_content(fs, "/made/holes.bin", &holes).await?;
    let mut mid = pattern(4, 0, 8192);
    fs.write("/made/mid.bin", 0, &mid).await.map_err(e("mid"))?;
    fs.write("/made/mid.bin", 4000, &pattern(5, 0, 100))
        .await
        .map_err(e("mid"))?;
    mid[4000..4100].copy_from_slice(&pattern(5, 0, 100));
    expect_content(fs, "/made/mid.bin", &mid).await?;
    // Chunk `i` of /big5.bin is 64 KiB of byte `i ^ 0x5a` (cheap to make
    // in a slow guest; the harness checks every byte with mtools).
    for i in 0..(5 << 20) / CHUNK {
        let at = (i * CHUNK) as u64;
        fs.write("/big5.bin", at, &alloc::vec![i as u8 ^ 0x5a; CHUNK])
            .await
            .map_err(e("big"))?;
    }
    if fs.size("/big5.bin").await.map_err(e("size"))? != 5 << 20 {
        return Err(String::from("/big5.bin: wrong size"));
    }
    // Read back in the guest too, except on hvt, where compute in this
    // machine's nested KVM guest is too slow to go over 5 MiB byte by byte.
    #[cfg(not(morgana_platform = "hvt"))]
    {
        let back = fs
            .read("/big5.bin", 0, 5 << 20)
            .await
            .map_err(e("read big"))?;
        let ok = back
            .chunks(CHUNK)
            .enumerate()
            .all(|(i, c)| c.len() == CHUNK && c.iter().all(|&b| b == i as u8 ^ 0x5a));
        if !ok {
            return Err(String::from("/big5.bin: read back differs"));
        }
    }
    fs.destroy("/hello.txt").await.map_err(e("destroy file"))?;
    fs.destroy("/emptydir").await.map_err(e("destroy dir"))?;
    fs.create("/made/gone.txt").await.map_err(e("create"))?;
    fs.destroy("/made/gone.txt").await.map_err(e("destroy"))?;
    if fs.stat("/hello.txt").await.is_ok() {
        return Err(String::from("/hello.txt survived destroy"));
    }
    Ok(())
}

/// Expects `r` to be the error `want` names; prints it.
fn expect<T: core::fmt::Debug>(name: &str, r: Result<T, FsError>, ok: fn(&FsError) -> bool) -> R {
    match r {
        Err(e) if ok(&e) => {
            morgana::println!("error {name}: {e}");
            Ok(())
        }
        other => Err(format!("{name}: got {other:?}")),
    }
}

async fn errors(fs: &Fs) -> R {
    use FsError as E;
    expect("not-a-directory", fs.create("/hello.txt/x").await, |e| {
        matches!(e, E::NotADirectory(_))
    })?;
    expect("not-a-directory", fs.listdir("/hello.txt").await, |e| {
        matches!(e, E::NotADirectory(_))
    })?;
    expect("is-a-directory", fs.read("/dir", 0, 10).await, |e| {
        matches!(e, E::IsADirectory(_))
    })?;
    expect("is-a-directory", fs.write("/dir", 0, b"x").await, |e| {
        matches!(e, E::IsADirectory(_))
    })?;
    expect("is-a-directory", fs.size("/dir").await, |e| {
        matches!(e, E::IsADirectory(_))
    })?;
    expect("directory-not-empty", fs.destroy("/dir").await, |e| {
        matches!(e, E::DirectoryNotEmpty(_))
    })?;
    expect(
        "no-directory-entry",
        fs.stat("/dir/nope").await,
        |e| matches!(e, E::NoDirectoryEntry(d, n) if d == "/dir" && n == "nope"),
    )?;
    expect(
        "no-directory-entry",
        fs.read("/nope.txt", 0, 1).await,
        |e| matches!(e, E::NoDirectoryEntry(..)),
    )?;
    expect("no-directory-entry", fs.destroy("/nope").await, |e| {
        matches!(e, E::NoDirectoryEntry(..))
    })?;
    expect("file-already-exists", fs.create("/hello.txt").await, |e| {
        matches!(e, E::FileAlreadyExists(_))
    })?;
    expect("file-already-exists", fs.mkdir("/dir").await, |e| {
        matches!(e, E::FileAlreadyExists(_))
    })?;
    Ok(())
}

async fn fill(fs: &Fs) -> R {
    let chunk = pattern(6, 0, 256 << 10);
    let mut at = 0u64;
    loop {
        match fs.write("/fill.bin", at, &chunk).await {
            Ok(()) => at += chunk.len() as u64,
            Err(e @ FsError::NoSpace) => {
                morgana::println!("error no-space: {e} (after {at} bytes)");
                return Ok(());
            }
            Err(e) => return Err(format!("fill: {e}")),
        }
    }
}

#[morgana::main]
async fn main(disk: Fs) -> u8 {
    let ticks = Rc::new(Cell::new(0u32));
    let t = ticks.clone();
    let ticker = morgana::spawn(async move {
        loop {
            morgana::sleep(Duration::from_millis(5)).await;
            t.set(t.get() + 1);
        }
    });
    for op in morgana::args().filter(|a| !a.starts_with("--")) {
        let r = match op {
            "walk" => walk(&disk, String::from("/")).await,
            "scenario" => scenario(&disk).await,
            "errors" => errors(&disk).await,
            "fill" => fill(&disk).await,
            "format" => match disk.format(None).await {
                Ok(()) => match disk.listdir("/").await {
                    Ok(l) if l.is_empty() => disk
                        .write("/after-format.txt", 0, b"formatted")
                        .await
                        .map_err(|e| format!("write: {e}")),
                    other => Err(format!("after format: {other:?}")),
                },
                Err(e) => Err(format!("format: {e}")),
            },
            _ => match op.strip_prefix("read:") {
                Some(path) => {
                    match disk.read(path, 0, 1 << 30).await {
                        Ok(v) => morgana::println!("read {path}: {} bytes", v.len()),
                        Err(e) => morgana::println!("read {path}: error {e}"),
                    }
                    Ok(())
                }
                None => Err(format!("unknown operation {op}")),
            },
        };
        match r {
            Ok(()) => morgana::println!("fs: {op}: ok"),
            Err(e) => {
                morgana::println!("fs: {op}: FAILED: {e}");
                return 3;
            }
        }
    }
    ticker.cancel();
    morgana::println!("fs: ticker ran {} times", ticks.get());
    0
}
