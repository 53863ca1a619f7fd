//! A TCP client: `fetch HOST PORT` resolves HOST through DNS, connects to
//! it, sends `GET / HTTP/1.0` and prints what the server sends back.
//! Without `--ipv4` it waits for DHCP (which also gives the DNS server).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use morgana_net::{Stack, TcpStream};

#[morgana::main]
async fn main(service: Stack) -> u8 {
    let args: Vec<&str> = morgana::args().filter(|a| !a.starts_with("--")).collect();
    let (Some(host), Some(port)) = (
        args.first(),
        args.get(1).and_then(|p| p.parse::<u16>().ok()),
    ) else {
        morgana::println!("usage: fetch HOST PORT");
        return 2;
    };
    let me = service.wait_ipv4().await;
    morgana::println!("fetch: my address is {me}");
    let addrs = match service.dns_lookup(host).await {
        Ok(a) if !a.is_empty() => a,
        Ok(_) | Err(_) => {
            morgana::println!("fetch: cannot resolve {host}");
            return 3;
        }
    };
    morgana::println!("fetch: {host} is {}", addrs[0]);
    let s = match TcpStream::connect(&service, (addrs[0], port)).await {
        Ok(s) => s,
        Err(e) => {
            morgana::println!("fetch: cannot connect to {}:{port}: {e}", addrs[0]);
            return 4;
        }
    };
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.is_err() {
        return 4;
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => {
                morgana::println!("fetch: read failed: {e}");
                return 4;
            }
        }
    }
    morgana::println!("fetch: {} bytes from {}:{port}", reply.len(), addrs[0]);
    morgana::println!("{}", core::str::from_utf8(&reply).unwrap_or("<not UTF-8>"));
    0
}
