//! A persistent key-value service: a line protocol on TCP port 6380 over a
//! store kept on the block device `storage`.
//!
//! `kv-server --ipv4=10.0.0.2/24` with `--block:storage=disk.img` (a
//! zero-filled file makes a new store). Requests, one per line:
//!
//! * `SET key value` stores the rest of the line under `key`: `OK`;
//! * `GET key`: `VALUE value`, or `NONE`;
//! * `DEL key`: `OK`;
//! * `KEYS`: `KEYS n`, then one key per line.
//!
//! Anything else, or a failing store, gets `ERR reason`. Values survive
//! reboots: the store is on the disk.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use morgana_kv::{Kv, KvError};
use morgana_net::{Error, Stack, TcpListener, TcpStream};

/// The longest request line.
const MAX_LINE: usize = 17 * 1024;

/// Answers one request line.
async fn answer(store: &Kv, line: &str) -> Result<String, KvError> {
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    Ok(match cmd {
        "SET" => {
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            store.set(key, value.as_bytes()).await?;
            String::from("OK\n")
        }
        "GET" => match store.get(rest).await? {
            Some(v) => format!("VALUE {}\n", String::from_utf8_lossy(&v)),
            None => String::from("NONE\n"),
        },
        "DEL" => {
            store.remove(rest).await?;
            String::from("OK\n")
        }
        "KEYS" => {
            let keys = store.list().await?;
            let mut out = format!("KEYS {}\n", keys.len());
            for k in keys {
                out.push_str(&k);
                out.push('\n');
            }
            out
        }
        _ => String::from("ERR unknown command\n"),
    })
}

async fn serve(store: Rc<Kv>, stream: TcpStream) -> Result<(), Error> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = alloc::vec![0u8; 4096];
    loop {
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            let line = line.trim_end_matches('\r');
            let reply = match answer(&store, line).await {
                Ok(r) => r,
                Err(e) => format!("ERR {e}\n"),
            };
            stream.write_all(reply.as_bytes()).await?;
        }
        if pending.len() > MAX_LINE {
            stream.write_all(b"ERR line too long\n").await?;
            return stream.close().await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.close().await;
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

#[morgana::main]
async fn main(service: Stack, storage: Kv) -> Result<(), Error> {
    let store = Rc::new(storage);
    let tcp = TcpListener::bind(&service, 6380)?;
    log::info!(
        "kv-server: listening on TCP port 6380, store of {} pages ({})",
        store.info().pages,
        if store.info().created {
            "created"
        } else {
            "opened"
        }
    );
    loop {
        let (stream, _peer) = tcp.accept().await?;
        let store = store.clone();
        morgana::spawn(async move {
            let _ = serve(store, stream).await;
        });
    }
}
