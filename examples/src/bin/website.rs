//! A static website on TCP port 80: the files of `examples/site`, baked
//! into the image at build time, or those of a tar archive or a FAT file
//! system on the block device `files`, chosen by a switch:
//!
//! * `--store=baked` (the default): the baked-in directory; the block
//!   device is not read (Solo5 has no optional devices: attach any file,
//!   `truncate -s 512 none.img`);
//! * `--store=tar`: the tar archive on `files`;
//! * `--store=fat`: the FAT file system on `files`.
//!
//! `GET` and `HEAD` of `/path` answer the file `path` (`index.html` for a
//! path ending in `/`; `%XX` escapes decoded) with a `Content-Type` by
//! extension and an `ETag`; a request whose `If-None-Match` names the
//! current tag gets `304 Not Modified`; a missing file gets `404`, other
//! methods `405`. Connections are kept alive (HTTP/1.1).

#![no_std]
#![no_main]

extern crate alloc;

#[path = "../site.rs"]
mod site;

use alloc::format;
use alloc::string::String;
use morgana::Block;
use morgana_http::{Limits, Server};
use morgana_net::Stack;

#[morgana::main]
async fn main(service: Stack, files: Block) -> Result<(), String> {
    let limits = Limits::from_args()?;
    let (router, which) = site::router("website", files).await?;
    let server = Server::new(router).with_limits(limits);
    log::info!("website: serving the {which} store on port 80");
    server
        .serve(&service, 80)
        .await
        .map_err(|e| format!("website: {e}"))
}
