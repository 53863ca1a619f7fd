//! Hand-made Ethernet/IPv4/TCP/UDP frames for robustness tests: valid
//! ones (SYNs for a flood) and malformed ones of many kinds.

use crate::net::Lcg;

/// The Internet checksum of `data`, starting from `sum`.
pub fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet header.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(1514);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// A 20-byte IPv4 header with a correct checksum.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload_len: usize) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h[6] = 0x40; // don't fragment
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let c = checksum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

fn pseudo(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let mut p = Vec::new();
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum()
}

/// A TCP segment (20-byte header, no options) with a correct checksum.
pub fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(payload);
    let c = checksum(&t, pseudo(src, dst, 6, t.len()));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// TCP SYN flag.
pub const SYN: u8 = 0x02;

/// A SYN from `src:sport` to `dst:dport`.
pub fn syn_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
) -> Vec<u8> {
    let seg = tcp(src, dst, sport, dport, seq, SYN, &[]);
    let mut f = ethernet(dst_mac, src_mac, 0x0800);
    f.extend_from_slice(&ipv4(src, dst, 6, seg.len()));
    f.extend_from_slice(&seg);
    f
}

/// The `i`-th malformed frame of twelve kinds, cycling: a runt (Ethernet
/// header and at most 5 bytes), truncated IPv4, bad IPv4 checksum, total length beyond or
/// below the frame, fragments, bad TCP checksum, bogus UDP length, random
/// bytes with a random EtherType, short ARP, IPv6 garbage, bad ICMP
/// checksum.
pub fn malformed(
    i: usize,
    rng: &mut Lcg,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
) -> Vec<u8> {
    let mut garbage = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.next_u64() as u8).collect() };
    let ip_frame = |hdr: [u8; 20], payload: &[u8]| {
        let mut f = ethernet(dst_mac, src_mac, 0x0800);
        f.extend_from_slice(&hdr);
        f.extend_from_slice(payload);
        f
    };
    match i % 12 {
        0 => {
            // A bare Ethernet header, or one with a few stray bytes (raw
            // sockets cannot send less than a header).
            let mut f = ethernet(dst_mac, src_mac, 0x0800);
            f.extend_from_slice(&garbage(i % 6));
            f
        }
        1 => {
            let mut f = ethernet(dst_mac, src_mac, 0x0800);
            f.extend_from_slice(&ipv4(src, dst, 6, 0)[..1 + i % 19]);
            f
        }
        2 => {
            let mut h = ipv4(src, dst, 17, 8);
            h[10] ^= 0x5a;
            ip_frame(h, &garbage(8))
        }
        3 => {
            let mut h = ipv4(src, dst, 6, 1400);
            h[10..12].fill(0);
            let c = checksum(&h, 0);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            ip_frame(h, &garbage(40))
        }
        4 => {
            let mut h = ipv4(src, dst, 6, 0);
            h[2..4].copy_from_slice(&10u16.to_be_bytes());
            h[10..12].fill(0);
            let c = checksum(&h, 0);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            ip_frame(h, &garbage(20))
        }
        5 => {
            let payload = garbage(64);
            let mut h = ipv4(src, dst, 17, payload.len());
            let off = (i as u16 % 100) | 0x2000; // more fragments
            h[6..8].copy_from_slice(&off.to_be_bytes());
            h[10..12].fill(0);
            let c = checksum(&h, 0);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            ip_frame(h, &payload)
        }
        6 => {
            let mut seg = tcp(
                src,
                dst,
                40000 + (i % 1000) as u16,
                7,
                i as u32,
                0x18,
                b"bad checksum",
            );
            seg[16] ^= 0xff;
            ip_frame(ipv4(src, dst, 6, seg.len()), &seg)
        }
        7 => {
            let mut u = vec![0u8; 16];
            u[0..2].copy_from_slice(&5000u16.to_be_bytes());
            u[2..4].copy_from_slice(&7u16.to_be_bytes());
            u[4..6].copy_from_slice(&9000u16.to_be_bytes()); // length beyond the datagram
            ip_frame(ipv4(src, dst, 17, u.len()), &u)
        }
        8 => {
            let n = 14 + i * 7 % 1400;
            let mut f = garbage(n);
            f[..6].copy_from_slice(&dst_mac);
            f
        }
        9 => {
            let mut f = ethernet([0xff; 6], src_mac, 0x0806);
            f.extend_from_slice(&garbage(10));
            f
        }
        10 => {
            let mut f = ethernet(dst_mac, src_mac, 0x86dd);
            f.extend_from_slice(&garbage(40 + i % 60));
            f
        }
        _ => {
            let mut icmp = vec![8u8, 0, 0xde, 0xad, 0, 1, 0, 1];
            icmp.extend_from_slice(&garbage(32));
            ip_frame(ipv4(src, dst, 1, icmp.len()), &icmp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let h = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 6, 20);
        assert_eq!(checksum(&h, 0), 0);
        let src = [10, 0, 0, 1];
        let dst = [10, 0, 0, 2];
        let t = tcp(src, dst, 1, 2, 3, SYN, b"abc");
        assert_eq!(checksum(&t, pseudo(src, dst, 6, t.len())), 0);
    }
}
