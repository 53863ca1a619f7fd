//! Bakes a directory into a Morgana image as a read-only key-value store
//! (MirageOS's `crunch`), from the unikernel's build script:
//!
//! ```ignore
//! // build.rs
//! fn main() {
//!     morgana_crunch::bake("site", "htdocs").expect("bake htdocs");
//! }
//! ```
//!
//! ```ignore
//! // src/main.rs
//! static SITE: morgana_kv_ro::Baked = morgana_kv_ro::include_baked!("site");
//! ```
//!
//! Every regular file under the directory becomes a key, its path relative
//! to the directory with `/` between components (`css/site.css`), and its
//! contents the value (by `include_bytes!`, so the image carries the data
//! and no disk is needed). The build script is rerun when a file or
//! directory under it changes. Symbolic links are followed; names must be
//! UTF-8.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// Bakes every file under `dir` (relative to the package's directory, or
/// absolute) into the store `name`, which `morgana_kv_ro::include_baked!`
/// then includes. Fails on a name that is not UTF-8 or an unreadable
/// entry.
pub fn bake(name: &str, dir: impl AsRef<Path>) -> io::Result<()> {
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").ok_or_else(|| {
            io::Error::other("OUT_DIR is not set: call bake from a build script")
        })?);
    let root = match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(m) => PathBuf::from(m).join(dir.as_ref()),
        None => dir.as_ref().to_path_buf(),
    };
    let code = generate(&root)?;
    std::fs::write(out.join(format!("morgana-baked-{name}.rs")), code)
}

/// The Rust expression of the store of every file under `root` (printing
/// `cargo::rerun-if-changed` lines for each).
pub fn generate(root: &Path) -> io::Result<String> {
    let root = root
        .canonicalize()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
    let mut files = Vec::new();
    collect(&root, String::new(), &mut files)?;
    files.sort();
    let mut code = String::from("::morgana_kv_ro::Baked::new(&[\n");
    for (key, path) in &files {
        let path = path.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not UTF-8", path.display()),
            )
        })?;
        writeln!(code, "    ({key:?}, include_bytes!({path:?})),").unwrap();
    }
    code.push_str("])\n");
    Ok(code)
}

fn collect(dir: &Path, prefix: String, out: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
    println!("cargo::rerun-if-changed={}", dir.display());
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|n| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{n:?}: name is not UTF-8"),
            )
        })?;
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            collect(&path, key, out)?;
        } else if meta.is_file() {
            println!("cargo::rerun-if-changed={}", path.display());
            out.push((key, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_relative_sorted_and_escaped() {
        let d = std::env::temp_dir().join(format!("crunch-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("b/c")).unwrap();
        std::fs::write(d.join("b/c/\"q\".txt"), b"x").unwrap();
        std::fs::write(d.join("a"), b"").unwrap();
        let code = super::generate(&d).unwrap();
        let a = code.find("(\"a\",").expect("key a");
        let q = code.find("(\"b/c/\\\"q\\\".txt\",").expect("escaped key");
        assert!(a < q, "{code}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
