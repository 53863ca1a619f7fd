//! An HTTPS server on port 443: http-hello's routes (`GET /` a page, `POST
//! /echo` the body) over TLS 1.3 or 1.2, from `morgana-tls` and
//! `morgana-http`. The certificate chain and key come from the block device
//! `tls` (a PEM bundle, zero-filled after it): a corrupt or mismatched
//! bundle stops it at boot with one line and status 1.
//!
//! ```sh
//! cat cert.pem key.pem > tls.img && truncate -s %512 tls.img
//! morgana-hvt --net:service=tap0 --block:tls=tls.img https-hello --ipv4=10.0.0.2/24
//! ```

#![no_std]
#![no_main]

use core::time::Duration;
use morgana_http::{Limits, Request, Response, Router, Server};
use morgana_net::Stack;
use morgana_tls::{Identity, TlsError, TlsListener};

const PAGE: &str =
    "<!doctype html>\n<title>Morgana</title>\n<h1>Hello from a Morgana unikernel, over TLS</h1>\n";

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
async fn main(service: Stack, tls: Identity) -> Result<(), TlsError> {
    let (limits, handshake) = match (Limits::from_args(), handshake_timeout()) {
        (Ok(l), Ok(h)) => (l, h),
        (Err(e), _) => {
            morgana::println!("https-hello: {e}");
            morgana::exit(1)
        }
        (_, Err(e)) => {
            morgana::println!("https-hello: {e}");
            morgana::exit(1)
        }
    };
    let router = Router::new()
        .get("/", |_: Request| async { Response::html(PAGE) })
        .post("/echo", |req: Request| async move {
            Response::ok(req.into_body()).with_header("Content-Type", "application/octet-stream")
        });
    let server = Server::new(router).with_limits(limits);
    let listener = TlsListener::bind(&service, 443, &tls)?.with_handshake_timeout(handshake);
    log::info!("https-hello: listening on port 443");
    loop {
        let (mut stream, peer) = listener.accept().await?;
        let server = server.clone();
        morgana::spawn(async move {
            match stream.handshake().await {
                Ok(()) => server.serve_connection(&mut stream, Some(peer)).await,
                Err(e) => log::debug!("https-hello: {peer}: {e}"),
            }
            let _ = stream.close().await;
        });
    }
}
