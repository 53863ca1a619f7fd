//! The fuzz targets of `morgana-fuzz` that run the runtime itself: `net`
//! (Ethernet frames arriving on a `Net` device, read by `morgana-net`'s
//! device driver and its stack, smoltcp, exactly as on a real platform,
//! with TCP and UDP echo servers listening), `fs` (a disk mounted by
//! `morgana-fs`) and `tar` (a disk opened by `morgana-kv-ro`'s tar store).
//!
//! It runs on the runtime's simulated platform (virtual clock, frames
//! injected from memory), which a host build gets with `MORGANA_SIM=1`;
//! without it this crate is empty. A library of its own: `morgana build`
//! takes every workspace package with binaries that depends on `morgana`
//! for a unikernel, and the fuzz targets are not.

#![cfg(morgana_sim)]

use morgana::abi::mft::{DeviceDecl, DeviceKind};

/// Frames of the `net` target: `data` is `[flags, (len: u16 LE, bytes)*]`;
/// each frame (at most 1514 bytes, at most 64 of them) arrives 1 ms after
/// the previous one on the stack's device (`--ipv4=10.0.0.2/24`, TCP and
/// UDP echo on port 7). With bit 0 of `flags` set, IPv4 header, TCP, UDP
/// and ICMP checksums are filled in first, so that the fuzzer gets past
/// them into the protocol code. With bit 1 set, the device has network
/// offloads (as on spt and unix): each frame's bytes start with its
/// 10-byte virtio-net header, and a frame may be up to 64 KiB.
pub fn net(data: &[u8]) {
    net_answers(data);
}

/// [`net`], returning the frames the stack sent.
pub fn net_answers(data: &[u8]) -> Vec<Vec<u8>> {
    use morgana::Device as _;
    use morgana::platform::sim;
    use morgana_net::{Stack, TcpListener, UdpSocket};
    const MS: u64 = 1_000_000;
    let Some((&flags, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let decl = [DeviceDecl {
        name: "service",
        kind: DeviceKind::Net,
    }];
    let cmdline = "--ipv4=10.0.0.2/24 --ipv4-gateway=10.0.0.1 --max-sockets=16 --backlog=2 \
                   --tcp-buffer=4096 --udp-buffer=4096 --log-level=off";
    let offload = flags & 2 != 0;
    let (hdr, max) = if offload {
        let h = morgana::abi::offload::VNET_HDR_LEN;
        (h, h + morgana::abi::offload::MAX_FRAME)
    } else {
        (0, 1514)
    };
    let opts = sim::Options {
        cmdline,
        offload,
        ..sim::Options::default()
    };
    sim::run_with(&decl, opts, || {
        let start = sim::now();
        let mut n = 0;
        while rest.len() >= 2 && n < 64 {
            let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % (max + 1);
            let len = len.min(rest.len() - 2);
            let mut frame = rest[2..2 + len].to_vec();
            rest = &rest[2 + len..];
            if flags & 1 == 1 && frame.len() > hdr {
                fill_checksums(&mut frame[hdr..]);
            }
            n += 1;
            sim::inject(1, start + n * MS, &frame);
        }
        morgana::__private::block_on(async move {
            let stack = Stack::connect(&["service"])
                .await
                .expect("the stack starts");
            let tcp = TcpListener::bind(&stack, 7).expect("TCP port 7");
            let udp = UdpSocket::bind(&stack, 7).expect("UDP port 7");
            morgana::spawn(async move {
                while let Ok((s, _)) = tcp.accept().await {
                    morgana::spawn(async move {
                        let mut b = [0u8; 512];
                        while let Ok(n @ 1..) = s.read(&mut b).await {
                            if s.write_all(&b[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            morgana::spawn(async move {
                let mut b = [0u8; 512];
                while let Ok((n, from)) = udp.recv_from(&mut b).await {
                    let _ = udp.send_to(&b[..n], from).await;
                }
            });
            morgana::sleep(core::time::Duration::from_millis(100 + n)).await;
            0
        });
        sim::sent().into_iter().map(|(_, f)| f).collect()
    })
}

/// Size of the disk of the `fs` target: big enough for FAT16.
const FS_DISK: usize = 4 << 20;

/// The `fs` target: `data` is the start of a 4 MiB disk (the rest zero),
/// mounted by `morgana-fs`; if it mounts, the tree is walked (listdir,
/// stat, size, reads of every file), then written to (mkdir, create,
/// write with offsets, destroy). Every refusal must be an error; a panic or
/// a hang is a bug.
pub fn fs(data: &[u8]) {
    fs_walk(data);
}

/// [`fs`], returning how many entries the walk found if the disk mounted.
pub fn fs_walk(data: &[u8]) -> Option<usize> {
    use morgana_fs::Fs;
    let mut disk = data[..data.len().min(FS_DISK)].to_vec();
    disk.resize(FS_DISK, 0);
    let decl = [DeviceDecl {
        name: "disk",
        kind: DeviceKind::Block,
    }];
    let opts = morgana::platform::sim::Options {
        disk: Some(disk),
        ..Default::default()
    };
    let found = std::rc::Rc::new(core::cell::Cell::new(None));
    let out = found.clone();
    morgana::platform::sim::run_with(&decl, opts, || {
        morgana::__private::block_on(async move {
            let block = morgana::Block::acquire("disk").expect("the disk");
            let Ok(fs) = Fs::mount(block).await else {
                return 0;
            };
            // Breadth first, bounded: a corrupt volume may loop.
            let mut dirs = vec![String::from("/")];
            let mut seen = 0;
            while let Some(dir) = dirs.pop() {
                let Ok(names) = fs.listdir(&dir).await else {
                    continue;
                };
                for name in names.into_iter().take(16) {
                    seen += 1;
                    if seen > 64 {
                        break;
                    }
                    let path = if dir == "/" {
                        format!("/{name}")
                    } else {
                        format!("{dir}/{name}")
                    };
                    match fs.stat(&path).await {
                        Ok(st) if st.directory => {
                            if path.matches('/').count() < 4 {
                                dirs.push(path);
                            }
                        }
                        Ok(_) => {
                            let _ = fs.size(&path).await;
                            let _ = fs.read(&path, 0, 4096).await;
                            let _ = fs.read(&path, 1000, 100).await;
                        }
                        Err(_) => {}
                    }
                }
            }
            let _ = fs.mkdir("/fz").await;
            let _ = fs.create("/fz/a.txt").await;
            let _ = fs.write("/fz/a.txt", 0, &[7; 3000]).await;
            let _ = fs.write("/fz/a.txt", 5000, b"tail").await;
            let _ = fs.read("/fz/a.txt", 0, 6000).await;
            let _ = fs.destroy("/fz/a.txt").await;
            let _ = fs.destroy("/fz").await;
            let _ = fs.free().await;
            out.set(Some(seen));
            0
        });
        found.get()
    })
}

/// The `tar` target: `data` is a block device (padded to whole sectors)
/// opened by `morgana-kv-ro`'s tar store; if it opens, every key is
/// listed, sized, read whole and in part, and looked up.
pub fn tar(data: &[u8]) {
    tar_keys(data);
}

/// [`tar`], returning how many keys the store listed if it opened.
pub fn tar_keys(data: &[u8]) -> Option<usize> {
    use morgana_kv_ro::{KvRo, Tar};
    let decl = [DeviceDecl {
        name: "data",
        kind: DeviceKind::Block,
    }];
    let opts = morgana::platform::sim::Options {
        disk: Some(data.to_vec()),
        ..Default::default()
    };
    let found = std::rc::Rc::new(core::cell::Cell::new(None));
    let out = found.clone();
    morgana::platform::sim::run_with(&decl, opts, || {
        morgana::__private::block_on(async move {
            let block = morgana::Block::acquire("data").expect("the disk");
            let Ok(t) = Tar::open(block).await else {
                return 0;
            };
            let keys = t.list().await.unwrap_or_default();
            for k in keys.iter().take(64) {
                let _ = t.size(k).await;
                let _ = t.get(k).await;
                let _ = t.read(k, 3, 10).await;
                let _ = t.exists(k).await;
            }
            let _ = t.get("no/such/key").await;
            out.set(Some(keys.len()));
            0
        });
        found.get()
    })
}

/// Fills in the IPv4 header checksum and the TCP, UDP or ICMP checksum of
/// an Ethernet frame carrying IPv4, where the lengths allow.
fn fill_checksums(f: &mut [u8]) {
    use smoltcp::wire::{Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};
    if f.len() < 34 || f[12..14] != [0x08, 0x00] {
        return;
    }
    let ip = &mut f[14..];
    let Ok(mut p) = Ipv4Packet::new_checked(&mut *ip) else {
        return;
    };
    p.fill_checksum();
    let src = IpAddress::Ipv4(p.src_addr());
    let dst = IpAddress::Ipv4(p.dst_addr());
    let proto = p.next_header();
    let (hl, tl) = (usize::from(p.header_len()), usize::from(p.total_len()));
    if hl > tl || tl > ip.len() {
        return;
    }
    let payload = &mut ip[hl..tl];
    match proto {
        IpProtocol::Tcp => {
            if let Ok(mut t) = TcpPacket::new_checked(payload) {
                t.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut u) = UdpPacket::new_checked(payload) {
                u.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut i) = Icmpv4Packet::new_checked(payload) {
                i.fill_checksum();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A `net` input turned into its offload form: flag bit 1, and a zero
    /// virtio-net header before each frame.
    fn with_headers(data: &[u8]) -> Vec<u8> {
        let mut out = vec![data[0] | 2];
        let mut rest = &data[1..];
        while rest.len() >= 2 {
            let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % 1515;
            let len = len.min(rest.len() - 2);
            out.extend_from_slice(&(len as u16 + 10).to_le_bytes());
            out.extend_from_slice(&[0; 10]);
            out.extend_from_slice(&rest[2..2 + len]);
            rest = &rest[2 + len..];
        }
        out
    }

    /// The `fs` and `tar` seeds reach past the format checks: the FAT
    /// volume mounts and its five entries are walked (a.txt, dir, dir/b.bin,
    /// dir/sub, a long name in it), the archive lists its two files; a
    /// zero disk is refused.
    #[test]
    fn storage_seeds_are_read() {
        let seed = |t: &str, f: &str| {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../seeds")
                .join(t)
                .join(f);
            std::fs::read(p).unwrap()
        };
        assert_eq!(fs_walk(&seed("fs", "fat16-tree")), Some(5));
        assert_eq!(fs_walk(&[0; 4096]), None);
        assert_eq!(tar_keys(&seed("tar", "small.tar")), Some(2));
    }

    /// The `net` target reaches the protocols: an ARP request, a SYN and a
    /// UDP datagram to port 7 get answers.
    #[test]
    fn net_seeds_get_answers() {
        for (seed, at_least) in [("arp-syn-data", 2), ("udp-icmp", 3)] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../seeds/net")
                .join(seed);
            let seed_bytes = std::fs::read(p).unwrap();
            let sent = net_answers(&seed_bytes);
            assert!(sent.len() >= at_least, "{seed}: {} frames sent", sent.len());
            // The same frames on a device with offloads, each after a
            // virtio-net header that vouches for nothing: the same answers
            // come back, each after a header of its own.
            let sent_off = net_answers(&with_headers(&seed_bytes));
            assert_eq!(sent_off.len(), sent.len(), "{seed} with offloads");
            for (a, b) in sent_off.iter().zip(&sent) {
                assert_eq!(a.len(), b.len() + 10, "{seed} with offloads");
            }
        }
    }
}
