//! The `website` example over HTTPS: the same files and answers (the
//! `--store=baked|tar|fat` switch and the block device `files`, see
//! `website`) on TCP port 443, over TLS 1.3 or 1.2 from `morgana-tls`. The
//! certificate chain and key come from the block device `tls` (a PEM
//! bundle, zero-filled after it), as for `https-hello`: a corrupt or
//! mismatched bundle stops it at boot with one line and status 1.
//!
//! It is a binary of its own because Solo5 manifests have no optional
//! devices: `website` would otherwise need a `tls` device even for HTTP.
//!
//! ```sh
//! cat cert.pem key.pem > tls.img && truncate -s %512 tls.img
//! truncate -s 512 none.img
//! morgana-spt --net:service=tap0 --block:files=none.img --block:tls=tls.img \
//!     https-website --ipv4=10.0.0.2/24
//! ```

#![no_std]
#![no_main]

extern crate alloc;

#[path = "../site.rs"]
mod site;

use alloc::format;
use alloc::string::String;
use core::time::Duration;
use morgana::Block;
use morgana_http::{Limits, Server};
use morgana_net::Stack;
use morgana_tls::{Identity, TlsListener};

/// `--tls-handshake-timeout=SECONDS` (default 10).
fn handshake_timeout() -> Result<Duration, &'static str> {
    for a in morgana::args() {
        if let Some(v) = a.strip_prefix("--tls-handshake-timeout=") {
            return match v.parse::<u64>() {
                Ok(s) if s > 0 => Ok(Duration::from_secs(s)),
                _ => Err("--tls-handshake-timeout: expected a positive whole number of seconds"),
            };
        }
    }
    Ok(morgana_tls::HANDSHAKE_TIMEOUT)
}

#[morgana::main]
async fn main(service: Stack, files: Block, tls: Identity) -> Result<(), String> {
    let limits = Limits::from_args()?;
    let handshake = handshake_timeout().map_err(|e| format!("https-website: {e}"))?;
    let (router, which) = site::router("https-website", files).await?;
    let server = Server::new(router).with_limits(limits);
    let listener = TlsListener::bind(&service, 443, &tls)
        .map_err(|e| format!("https-website: {e}"))?
        .with_handshake_timeout(handshake);
    log::info!("https-website: serving the {which} store on port 443");
    loop {
        let (mut stream, peer) = listener
            .accept()
            .await
            .map_err(|e| format!("https-website: {e}"))?;
        let server = server.clone();
        morgana::spawn(async move {
            match stream.handshake().await {
                Ok(()) => server.serve_connection(&mut stream, Some(peer)).await,
                Err(e) => log::debug!("https-website: {peer}: {e}"),
            }
            let _ = stream.close().await;
        });
    }
}
