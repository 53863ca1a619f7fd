//! TCP and UDP echo on port 7 (RFC 862).
//!
//! `echo --ipv4=10.0.0.2/24` (or DHCP without `--ipv4`).

#![no_std]
#![no_main]

extern crate alloc;

use morgana_net::{Error, Stack, TcpListener, TcpStream, UdpSocket};

async fn echo(stream: TcpStream) -> Result<(), Error> {
    let mut buf = alloc::vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.close().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

#[morgana::main]
async fn main(service: Stack) -> Result<(), Error> {
    let udp = UdpSocket::bind(&service, 7)?;
    morgana::spawn(async move {
        let mut buf = alloc::vec![0u8; 65_535];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&buf[..n], peer).await;
        }
    });
    let tcp = TcpListener::bind(&service, 7)?;
    log::info!("echo: listening on TCP and UDP port 7");
    loop {
        let (stream, _peer) = tcp.accept().await?;
        morgana::spawn(async move {
            let _ = echo(stream).await;
        });
    }
}
