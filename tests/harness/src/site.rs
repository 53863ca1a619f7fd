//! The website examples' site (`examples/site`) as the tests see it: its
//! files, their URLs and their content types.

use std::path::{Path, PathBuf};

/// The `website` example's directory, `examples/site`.
pub fn site() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/site")
}

/// Every file under `dir`: (key, path).
pub fn files(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) {
    for e in std::fs::read_dir(dir.join(rel)).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let key = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if e.file_type().unwrap().is_dir() {
            files(dir, &key, out);
        } else {
            out.push((key, e.path()));
        }
    }
}

/// `base` followed by `key`, non-ASCII and reserved bytes percent-encoded.
pub fn url(base: &str, key: &str) -> String {
    let mut s = String::from(base);
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The content type the website examples give `key`.
pub fn want_type(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}
