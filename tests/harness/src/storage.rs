//! Helpers for the storage tests: temporary directories, FAT images made
//! and inspected with Debian's dosfstools and mtools, and the test patterns
//! and hashes the storage test kernels use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub use crate::tree::{pat, pattern, test_tree};

/// A temporary directory, removed with its contents when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "morgana-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    /// `rel` inside the directory.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a tool (in a UTF-8 locale, so mtools maps long names both ways)
/// and returns its stdout; fails the test if it cannot start or fails.
#[track_caller]
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install dosfstools and mtools): {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes `path` (which must exist, of the volume's size) a FAT volume of
/// `bits` (16 or 32) with `mkfs.fat`.
pub fn mkfs(path: &str, bits: u32) {
    let b = bits.to_string();
    let mut args = vec!["-F", &b, "-n", "MORGANA"];
    if bits == 16 {
        // One sector per cluster, so that a small volume is still FAT16.
        args.extend(["-s", "1"]);
    }
    args.push(path);
    tool("mkfs.fat", &args);
}

/// Copies the contents of `dir` (recursively) into the root of the FAT
/// image `img` with `mcopy`.
pub fn mcopy_in(img: &str, dir: &Path) {
    let mut args = vec!["-s", "-i", img];
    let entries: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_string())
        .collect();
    args.extend(entries.iter().map(String::as_str));
    args.push("::/");
    tool("mcopy", &args);
}

/// Copies the whole FAT image `img` out into the empty directory `dir`.
pub fn mcopy_out(img: &str, dir: &Path) {
    tool(
        "mcopy",
        &["-s", "-n", "-i", img, "::/*", dir.to_str().unwrap()],
    );
}

/// Runs `fsck.fat -n` (check, change nothing) on `img` and fails the test
/// unless it exits 0 and reports nothing beyond its summary line.
#[track_caller]
pub fn fsck_clean(img: &str) {
    let out = Command::new("fsck.fat")
        .args(["-n", img])
        .output()
        .unwrap_or_else(|e| panic!("cannot run fsck.fat (install dosfstools): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("fsck.fat ") && !l.contains(" files, "))
        .collect();
    assert!(
        out.status.success() && lines.is_empty(),
        "fsck.fat -n {img}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// FNV-1a, 64 bits (as the test kernels compute it).
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The lines `t-fs walk` prints for the tree under `root`, sorted: `D
/// /path` for a directory, `F /path size hash midhash` for a file.
pub fn walk_lines(root: &Path) -> Vec<String> {
    fn go(root: &Path, rel: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(root.join(rel.trim_start_matches('/'))).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let path = format!("{rel}/{name}");
            if e.file_type().unwrap().is_dir() {
                out.push(format!("D {path}"));
                go(root, &path, out);
            } else {
                let data = std::fs::read(e.path()).unwrap();
                let size = data.len();
                let from = (size / 3).min(size);
                let mid = &data[from..(from + 4097).min(size)];
                out.push(format!(
                    "F {path} {size} {:016x} {:016x}",
                    fnv(&data),
                    fnv(mid)
                ));
            }
        }
    }
    let mut out = Vec::new();
    go(root, "", &mut out);
    out.sort();
    out
}

/// The `D ` and `F ` lines of a kernel's output, sorted.
pub fn walk_output(stdout: &str) -> Vec<String> {
    let mut v: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("D /") || l.starts_with("F /"))
        .map(String::from)
        .collect();
    v.sort();
    v
}
