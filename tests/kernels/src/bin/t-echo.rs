//! Echoes every Ethernet frame back with source and destination swapped,
//! until a frame of EtherType 0x88b6 arrives; then reports its counts.

#![no_std]
#![no_main]

extern crate alloc;

use morgana::Net;

const STOP: [u8; 2] = [0x88, 0xb6];

#[morgana::main]
async fn main(service: Net) -> Result<(), morgana::NetError> {
    let mut buf = alloc::vec![0u8; service.max_frame()];
    let m = service.mac();
    morgana::println!(
        "echo: ready mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} mtu={}",
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        service.mtu()
    );
    let mut frames = 0u64;
    loop {
        let n = service.read(&mut buf).await?;
        if n >= 14 && buf[12..14] == STOP {
            break;
        }
        if n >= 12 {
            let (dst, src) = buf.split_at_mut(6);
            dst.swap_with_slice(&mut src[..6]);
        }
        service.write(&buf[..n])?;
        frames += 1;
    }
    let s = service.stats();
    morgana::println!(
        "echo: {frames} frames echoed; rx {} frames {} bytes, tx {} frames {} bytes",
        s.rx_packets,
        s.rx_bytes,
        s.tx_packets,
        s.tx_bytes
    );
    Ok(())
}
