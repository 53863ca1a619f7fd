//! The storage tests' data, shared (by `#[path]`) with the build script of
//! the test kernels, which bakes the same tree into an image: test
//! patterns and a test directory.

use std::path::Path;

/// Byte `j` of test pattern `seed` (as the test kernels make it).
pub fn pat(seed: u32, j: u64) -> u8 {
    let x = ((j as u32) ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(0x85EB_CA6B);
    ((x >> 24) as u8) ^ ((j >> 9) as u8)
}

/// `len` bytes of pattern `seed` from its byte `from`.
pub fn pattern(seed: u32, from: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|j| pat(seed, from + j)).collect()
}

/// A test directory: an empty file, a 3 MiB file, nested paths, long and
/// non-ASCII names.
pub fn test_tree(dir: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("hello.txt", b"hello, world\n");
    w("empty", b"");
    w("big.bin", &pattern(7, 0, 3 << 20));
    w("dir/Long File Name.txt", b"a long name\n");
    w("dir/sub/nested.bin", &pattern(8, 0, 100_000));
    w("dir/sub/deeper/x.html", b"<p>x</p>\n");
    w("dir/ünïcødé ñame.txt", "non-ASCII: ünïcødé\n".as_bytes());
    w("日本語/ファイル.txt", "名前\n".as_bytes());
    std::fs::create_dir_all(dir.join("emptydir")).unwrap();
}
