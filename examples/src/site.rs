//! The static website shared by the `website` (HTTP) and `https-website`
//! (HTTPS) examples: a store of files (baked, tar or FAT, by `--store=`)
//! answered by path with content types, entity tags and `304`.

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use morgana::Block;
use morgana_fs::{Fs, FsError};
use morgana_http::{Request, Response, Router};
use morgana_kv_ro::{Baked, KvRo, KvRoError, Tar};

static SITE: Baked = morgana_kv_ro::include_baked!("site");

/// Where the files come from.
enum Store {
    Baked,
    Tar(Tar),
    Fat(Fs),
}

impl Store {
    /// The contents of `key`, `None` if there is no such file.
    async fn get(&self, key: &str) -> Result<Option<Cow<'static, [u8]>>, String> {
        match self {
            Self::Baked => Ok(SITE.get_static(key).ok().map(Cow::Borrowed)),
            Self::Tar(t) => match t.get(key).await {
                Ok(v) => Ok(Some(Cow::Owned(v))),
                Err(KvRoError::UnknownKey(_)) => Ok(None),
                Err(e) => Err(format!("{e}")),
            },
            Self::Fat(fs) => {
                let path = format!("/{key}");
                match fs.stat(&path).await {
                    Ok(st) if !st.directory => fs
                        .read(&path, 0, st.size as usize)
                        .await
                        .map(|v| Some(Cow::Owned(v)))
                        .map_err(|e| format!("{e}")),
                    Ok(_) | Err(FsError::NoDirectoryEntry(..)) | Err(FsError::NotADirectory(_)) => {
                        Ok(None)
                    }
                    Err(e) => Err(format!("{e}")),
                }
            }
        }
    }
}

/// The content type of a file name, by its extension.
fn content_type(key: &str) -> &'static str {
    let ext = key.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "xml" => "application/xml",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The key a request path names: without the leading `/`, `%XX` decoded,
/// `index.html` added to a directory path. `None` for a path that is not
/// UTF-8 once decoded or that has `..` or empty components.
fn key_of(path: &str) -> Option<String> {
    let raw = path.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex = core::str::from_utf8(&raw[i + 1..i + 3]).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    let mut key = String::from_utf8(bytes).ok()?;
    if key.ends_with('/') {
        key.push_str("index.html");
    }
    let key = String::from(key.trim_start_matches('/'));
    if key.split('/').any(|c| c.is_empty() || c == "..") {
        return None;
    }
    Some(key)
}

/// FNV-1a, 64 bits: the entity tag of a file's contents.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Site {
    store: Store,
    /// Entity tags already computed, by key (the files never change).
    tags: RefCell<BTreeMap<String, String>>,
}

impl Site {
    fn tag(&self, key: &str, body: &[u8]) -> String {
        if let Some(t) = self.tags.borrow().get(key) {
            return t.clone();
        }
        let t = format!("\"{:x}-{:016x}\"", body.len(), fnv(body));
        self.tags.borrow_mut().insert(String::from(key), t.clone());
        t
    }

    async fn answer(&self, req: Request) -> Response {
        let Some(key) = key_of(req.path()) else {
            return Response::not_found();
        };
        let body = match self.store.get(&key).await {
            Ok(Some(b)) => b,
            Ok(None) => return Response::not_found(),
            Err(e) => {
                log::warn!("website: {key}: {e}");
                return Response::error(500);
            }
        };
        let tag = self.tag(&key, &body);
        let matches = req.header("If-None-Match").is_some_and(|h| {
            h.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == tag || t == "*")
        });
        if matches {
            return Response::new(304).with_header("ETag", tag);
        }
        Response::ok(body)
            .with_header("Content-Type", content_type(&key))
            .with_header("ETag", tag)
    }
}

/// Opens the store `--store=` names (default `baked`) on `files` and
/// returns a router answering its files, and the store's name. `prog`
/// prefixes the error lines.
pub async fn router(prog: &str, files: Block) -> Result<(Router, &'static str), String> {
    let mut which = "baked";
    for a in morgana::args() {
        if let Some(v) = a.strip_prefix("--store=") {
            which = v;
        }
    }
    let store = match which {
        "baked" => Store::Baked,
        "tar" => Store::Tar(
            Tar::open(files.into_read_only())
                .await
                .map_err(|e| format!("{prog}: files: {e}"))?,
        ),
        "fat" => Store::Fat(
            Fs::mount(files)
                .await
                .map_err(|e| format!("{prog}: files: {e}"))?,
        ),
        other => {
            return Err(format!(
                "{prog}: --store={other}: expected baked, tar or fat"
            ));
        }
    };
    let site = Rc::new(Site {
        store,
        tags: RefCell::new(BTreeMap::new()),
    });
    let router = Router::new().get("/*", move |req: Request| {
        let site = site.clone();
        async move { site.answer(req).await }
    });
    Ok((router, which))
}
