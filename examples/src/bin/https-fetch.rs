//! An HTTPS client: `https-fetch HOST PORT [NAME]` resolves HOST (or takes
//! it as an address), connects, verifies the server's certificate against
//! the CA certificates on the block device `ca` (PEM, zero-filled after
//! it) and the name NAME (default HOST), sends `GET /` and prints the
//! reply; `--tls-handshake-timeout=SECONDS` (default 10). Exit status: 0 fetched, 2 usage, 3 no address, 5 TLS refused
//! (bad certificate, wrong name, untrusted CA...).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use morgana_net::{IpAddress, Stack};
use morgana_tls::TrustAnchors;

#[morgana::main]
async fn main(service: Stack, ca: TrustAnchors) -> u8 {
    let args: Vec<&str> = morgana::args().filter(|a| !a.starts_with("--")).collect();
    let (Some(&host), Some(port)) = (
        args.first(),
        args.get(1).and_then(|p| p.parse::<u16>().ok()),
    ) else {
        morgana::println!("usage: https-fetch HOST PORT [NAME]");
        return 2;
    };
    let name = args.get(2).copied().unwrap_or(host);
    let mut limit = morgana_tls::HANDSHAKE_TIMEOUT;
    for a in morgana::args() {
        if let Some(v) = a.strip_prefix("--tls-handshake-timeout=") {
            match v.parse::<u64>() {
                Ok(s) if s > 0 => limit = core::time::Duration::from_secs(s),
                _ => {
                    morgana::println!("https-fetch: {a}: expected a positive whole number");
                    return 2;
                }
            }
        }
    }
    let addr = match host.parse::<IpAddress>() {
        Ok(a) => a,
        Err(_) => match service.dns_lookup(host).await {
            Ok(a) if !a.is_empty() => a[0],
            _ => {
                morgana::println!("https-fetch: cannot resolve {host}");
                return 3;
            }
        },
    };
    let mut s =
        match morgana_tls::connect_with_timeout(&service, (addr, port), name, &ca, limit).await {
            Ok(s) => s,
            Err(e) => {
                morgana::println!("https-fetch: {addr}:{port} ({name}): {e}");
                return 5;
            }
        };
    morgana::println!(
        "https-fetch: connected to {addr}:{port} as {name} with {:?}",
        s.protocol_version()
    );
    let req = alloc::format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    if let Err(e) = s.write_all(req.as_bytes()).await {
        morgana::println!("https-fetch: write failed: {e}");
        return 5;
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => {
                morgana::println!("https-fetch: read failed: {e}");
                return 5;
            }
        }
    }
    let _ = s.close().await;
    morgana::println!("https-fetch: {} bytes", reply.len());
    morgana::println!("{}", alloc::string::String::from_utf8_lossy(&reply));
    0
}
