//! Segmentation and checksum offload on a device whose frames carry
//! virtio-net headers (`morgana::abi::offload`, granted by Morgana's spt
//! and unix platforms on a tap).
//!
//! smoltcp has no notion of TSO, so the stack is given a 64 KiB MTU and
//! this layer keeps the link honest:
//!
//! * **TCP segments up to 64 KiB go out as one frame**, marked for
//!   segmentation (`GSO_TCPV4`/`GSO_TCPV6`) into segments that fit the
//!   link's real MTU and the peer's MSS; the host kernel cuts them.
//! * **MSS options are rewritten** so that each side sees what it must: the
//!   stack's SYNs announce the link's real MSS to the peer, and the peer's
//!   SYNs announce 65535 to the stack (which then fills its 64 KiB packets),
//!   while the peer's real MSS is kept per connection for segmentation.
//! * **Checksums**: TCP and UDP checksums of frames sent are left to the
//!   host (`F_NEEDS_CSUM`, with the pseudo-header sum in place, as the
//!   kernel expects); frames received whose checksums the host vouches for
//!   (`F_NEEDS_CSUM`: made by the host itself, `F_DATA_VALID`: checked by
//!   it) are taken as they are, and every other TCP or UDP frame is checked
//!   here and dropped if wrong, as smoltcp would have.
//!
//! Frames other than TCP longer than the real MTU are dropped, as smoltcp
//! drops a packet larger than its MTU when it cannot fragment.

use alloc::collections::BTreeMap;
use morgana::abi::offload::{F_DATA_VALID, F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6, VnetHdr};
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Address, Ipv6Address, TcpPacket, UdpPacket, checksum,
};

/// MSS the stack is told its peers accept: the most an IP packet holds.
const STACK_MSS: u16 = 65535;
/// Connections whose peer MSS is remembered; past it the table starts
/// over (segments then fall back to the link's MSS), so a flood of SYNs
/// cannot grow it.
const MAX_FLOWS: usize = 4096;

/// A connection as the stack sees it: remote address, remote port, local port.
type Flow = ([u8; 16], u16, u16);

/// What to do with a received frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rx {
    /// Hand it to the stack.
    Accept,
    /// Drop it (bad checksum).
    Drop,
}

/// Offload state of one device.
#[derive(Debug)]
pub(crate) struct Offload {
    /// The link's largest frame (its MTU plus the Ethernet header).
    link_frame: usize,
    /// The MSS each peer announced, by connection.
    peer_mss: BTreeMap<Flow, u16>,
}

/// The IP and transport layers of a frame.
struct Layers {
    v6: bool,
    src: IpAddress,
    dst: IpAddress,
    proto: u8,
    /// Offset of the transport header in the frame.
    l4: usize,
    /// Length of the transport header and payload.
    l4_len: usize,
}

fn be16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(o)?, *b.get(o + 1)?]))
}

fn layers(f: &[u8]) -> Option<Layers> {
    match be16(f, 12)? {
        0x0800 => {
            let ihl = usize::from(f.get(14)? & 0x0f) * 4;
            let total = usize::from(be16(f, 16)?);
            let frag = be16(f, 20)? & 0x3fff;
            if ihl < 20 || total < ihl || 14 + total > f.len() || frag != 0 {
                return None;
            }
            let a = |o: usize| Ipv4Address::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
            Some(Layers {
                v6: false,
                src: IpAddress::Ipv4(a(26)),
                dst: IpAddress::Ipv4(a(30)),
                proto: f[23],
                l4: 14 + ihl,
                l4_len: total - ihl,
            })
        }
        0x86dd => {
            let len = usize::from(be16(f, 18)?);
            if 54 + len > f.len() {
                return None;
            }
            // Past hop-by-hop, routing and destination options headers to
            // the upper layer (a fragment header ends the walk: fragments
            // are not checked here, and smoltcp does not reassemble them).
            let (mut proto, mut l4) = (f[20], 54);
            for _ in 0..8 {
                if !matches!(proto, 0 | 43 | 60) {
                    break;
                }
                proto = *f.get(l4)?;
                l4 += (usize::from(*f.get(l4 + 1)?) + 1) * 8;
            }
            if l4 > 54 + len {
                return None;
            }
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&f[o..o + 16]);
                Ipv6Address::from(b)
            };
            Some(Layers {
                v6: true,
                src: IpAddress::Ipv6(a(22)),
                dst: IpAddress::Ipv6(a(38)),
                proto,
                l4,
                l4_len: 54 + len - l4,
            })
        }
        _ => None,
    }
}

fn addr_bytes(a: &IpAddress) -> [u8; 16] {
    match a {
        IpAddress::Ipv4(a) => a.to_ipv6_mapped().octets(),
        IpAddress::Ipv6(a) => a.octets(),
    }
}

/// The offset of the value of the MSS option of a TCP SYN at `tcp`.
fn mss_option(tcp: &[u8]) -> Option<usize> {
    if tcp.get(13)? & 0x02 == 0 {
        return None;
    }
    let thl = usize::from(tcp.get(12)? >> 4) * 4;
    let mut o = 20;
    while o < thl.min(tcp.len()) {
        match tcp[o] {
            0 => return None,
            1 => o += 1,
            kind => {
                let len = usize::from(*tcp.get(o + 1)?);
                if len < 2 {
                    return None;
                }
                if kind == 2 && len == 4 && o + 4 <= thl {
                    return Some(o + 2);
                }
                o += len;
            }
        }
    }
    None
}

impl Offload {
    /// The state of a link whose largest frame is `link_frame` bytes.
    pub(crate) fn new(link_frame: usize) -> Self {
        Self {
            link_frame,
            peer_mss: BTreeMap::new(),
        }
    }

    /// Checks a received frame and rewrites the MSS option of a peer's SYN.
    pub(crate) fn accept_rx(&mut self, hdr: &VnetHdr, f: &mut [u8]) -> Rx {
        let Some(l) = layers(f) else {
            return Rx::Accept;
        };
        let seg = l.l4..l.l4 + l.l4_len;
        let vouched = hdr.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0;
        let good = match l.proto {
            6 => {
                vouched
                    || TcpPacket::new_checked(&f[seg.clone()])
                        .is_ok_and(|p| p.verify_checksum(&l.src, &l.dst))
            }
            17 => {
                vouched
                    || UdpPacket::new_checked(&f[seg.clone()])
                        .is_ok_and(|p| p.verify_checksum(&l.src, &l.dst))
            }
            _ => return Rx::Accept,
        };
        if !good {
            return Rx::Drop;
        }
        if l.proto == 6
            && let Some(o) = mss_option(&f[seg.clone()])
        {
            let tcp = &mut f[seg];
            let mss = u16::from_be_bytes([tcp[o], tcp[o + 1]]);
            let flow = (
                addr_bytes(&l.src),
                u16::from_be_bytes([tcp[0], tcp[1]]),
                u16::from_be_bytes([tcp[2], tcp[3]]),
            );
            if self.peer_mss.len() >= MAX_FLOWS && !self.peer_mss.contains_key(&flow) {
                self.peer_mss.clear();
            }
            self.peer_mss.insert(flow, mss);
            // The checksum is not the stack's concern here (see above).
            tcp[o..o + 2].copy_from_slice(&STACK_MSS.to_be_bytes());
        }
        Rx::Accept
    }

    /// Completes a frame the stack built: the virtio-net header to send it
    /// with, or `None` if the link must drop it (longer than the link's
    /// MTU and not TCP).
    pub(crate) fn prepare_tx(&self, f: &mut [u8]) -> Option<VnetHdr> {
        let too_long = f.len() > self.link_frame;
        let Some(l) = layers(f).filter(|l| matches!(l.proto, 6 | 17)) else {
            return (!too_long).then(VnetHdr::default);
        };
        let (proto, csum_offset) = if l.proto == 6 {
            (IpProtocol::Tcp, 16)
        } else {
            (IpProtocol::Udp, 6)
        };
        let mut h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_NONE,
            csum_start: l.l4 as u16,
            csum_offset,
            ..VnetHdr::default()
        };
        let c = l.l4 + usize::from(csum_offset);
        if c + 2 > f.len() {
            return (!too_long).then(VnetHdr::default);
        }
        let sum = checksum::pseudo_header(&l.src, &l.dst, proto, l.l4_len as u32);
        f[c..c + 2].copy_from_slice(&sum.to_be_bytes());
        if l.proto != 6 {
            return (!too_long).then_some(h);
        }
        let ip_hdr = l.l4 - 14;
        let tcp = &mut f[l.l4..];
        let thl = usize::from(tcp[12] >> 4) * 4;
        if let Some(o) = mss_option(tcp) {
            // Announce the link's real MSS, not the stack's 64 KiB one.
            let link_mss = (self.link_frame - 14 - ip_hdr - 20) as u16;
            let mss = u16::from_be_bytes([tcp[o], tcp[o + 1]]).min(link_mss);
            tcp[o..o + 2].copy_from_slice(&mss.to_be_bytes());
        }
        if too_long {
            let hdr_len = l.l4 + thl;
            let flow = (
                addr_bytes(&l.dst),
                u16::from_be_bytes([tcp[2], tcp[3]]),
                u16::from_be_bytes([tcp[0], tcp[1]]),
            );
            let link = self.link_frame.checked_sub(hdr_len)?;
            let peer = self
                .peer_mss
                .get(&flow)
                .map_or(link, |&m| usize::from(m).saturating_sub(thl - 20));
            h.gso_type = if l.v6 { GSO_TCPV6 } else { GSO_TCPV4 };
            h.hdr_len = hdr_len as u16;
            h.gso_size = link.min(peer).max(8) as u16;
        }
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Ipv4Packet, Ipv4Repr,
        Ipv6Packet, Ipv6Repr, TcpControl, TcpRepr, TcpSeqNumber, UdpRepr,
    };

    const LINK: usize = 1514;
    const PEER: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const US: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

    /// An Ethernet frame holding a TCP segment from `src` to `dst`
    /// (ports 7 and 40000 the other way), checksums filled in.
    fn tcp(src: Ipv4Address, dst: Ipv4Address, payload: usize, mss: Option<u16>) -> Vec<u8> {
        let data = vec![0x5a; payload];
        let (sp, dp) = if src == US { (7, 40000) } else { (40000, 7) };
        let t = TcpRepr {
            src_port: sp,
            dst_port: dp,
            control: if mss.is_some() {
                TcpControl::Syn
            } else {
                TcpControl::None
            },
            seq_number: TcpSeqNumber(1),
            ack_number: None,
            window_len: 1000,
            window_scale: None,
            max_seg_size: mss,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &data,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: t.buffer_len(),
            hop_limit: 64,
        };
        frame(&ip, |b| {
            let mut p = TcpPacket::new_unchecked(b);
            let caps = ChecksumCapabilities::default();
            t.emit(&mut p, &src.into(), &dst.into(), &caps);
        })
    }

    fn frame(ip: &Ipv4Repr, body: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut f = vec![0u8; 14 + ip.buffer_len() + ip.payload_len];
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut e = EthernetFrame::new_unchecked(&mut f[..]);
        eth.emit(&mut e);
        let mut p = Ipv4Packet::new_unchecked(e.payload_mut());
        ip.emit(&mut p, &ChecksumCapabilities::default());
        body(p.payload_mut());
        f
    }

    fn mss_of(f: &[u8]) -> u16 {
        let o = mss_option(&f[34..]).unwrap();
        u16::from_be_bytes([f[34 + o], f[35 + o]])
    }

    fn pseudo(f: &[u8], proto: IpProtocol) -> u16 {
        let len = f.len() as u32 - 34;
        let (s, d) = (&f[26..30], &f[30..34]);
        let a = |b: &[u8]| IpAddress::Ipv4(Ipv4Address::new(b[0], b[1], b[2], b[3]));
        checksum::pseudo_header(&a(s), &a(d), proto, len)
    }

    #[test]
    fn long_tcp_frames_are_segmented_at_the_link_mss() {
        let off = Offload::new(LINK);
        let mut f = tcp(US, PEER, 30000, None);
        let h = off.prepare_tx(&mut f).unwrap();
        assert_eq!(h.gso_type, GSO_TCPV4);
        assert_eq!((h.hdr_len, h.gso_size), (54, 1460));
        assert_eq!(
            (h.flags, h.csum_start, h.csum_offset),
            (F_NEEDS_CSUM, 34, 16)
        );
        assert_eq!(
            u16::from_be_bytes([f[50], f[51]]),
            pseudo(&f, IpProtocol::Tcp)
        );
        // A short one: checksum offload only.
        let mut f = tcp(US, PEER, 100, None);
        let h = off.prepare_tx(&mut f).unwrap();
        assert_eq!(
            (h.gso_type, h.gso_size, h.flags),
            (GSO_NONE, 0, F_NEEDS_CSUM)
        );
    }

    #[test]
    fn mss_options_are_rewritten_both_ways_and_the_peers_is_kept() {
        let mut off = Offload::new(LINK);
        // The stack's SYN-ACK announces 65495: the peer is told 1460.
        let mut f = tcp(US, PEER, 0, Some(65495));
        off.prepare_tx(&mut f).unwrap();
        assert_eq!(mss_of(&f), 1460);
        // The peer's SYN announces 1400: the stack is told 65535, and the
        // segments to that peer are cut at 1400.
        let mut f = tcp(PEER, US, 0, Some(1400));
        assert_eq!(off.accept_rx(&VnetHdr::default(), &mut f), Rx::Accept);
        assert_eq!(mss_of(&f), STACK_MSS);
        let mut f = tcp(US, PEER, 30000, None);
        assert_eq!(off.prepare_tx(&mut f).unwrap().gso_size, 1400);
        // Another connection is cut at the link's MSS.
        let mut f = tcp(US, Ipv4Address::new(10, 0, 0, 3), 30000, None);
        assert_eq!(off.prepare_tx(&mut f).unwrap().gso_size, 1460);
    }

    #[test]
    fn checksums_are_checked_unless_the_host_vouches_for_them() {
        let mut off = Offload::new(LINK);
        let good = tcp(PEER, US, 100, None);
        let mut bad = good.clone();
        bad[60] ^= 1;
        let plain = VnetHdr::default();
        assert_eq!(off.accept_rx(&plain, &mut good.clone()), Rx::Accept);
        assert_eq!(off.accept_rx(&plain, &mut bad.clone()), Rx::Drop);
        for flags in [F_NEEDS_CSUM, F_DATA_VALID] {
            let h = VnetHdr { flags, ..plain };
            assert_eq!(off.accept_rx(&h, &mut bad.clone()), Rx::Accept);
        }
        // Frames that are not TCP or UDP over IP go to the stack as they are.
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(off.accept_rx(&plain, &mut arp), Rx::Accept);
        assert_eq!(off.prepare_tx(&mut arp), Some(VnetHdr::default()));
    }

    /// An IPv6 TCP segment from `src` to `dst`, behind a hop-by-hop
    /// options header if `hop`, checksums filled in.
    fn tcp6(src: Ipv6Address, dst: Ipv6Address, payload: usize, hop: bool) -> Vec<u8> {
        let data = vec![0x33; payload];
        let t = TcpRepr {
            src_port: 7,
            dst_port: 40000,
            control: TcpControl::None,
            seq_number: TcpSeqNumber(1),
            ack_number: None,
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &data,
        };
        let ext = if hop { 8 } else { 0 };
        let mut f = vec![0u8; 54 + ext + t.buffer_len()];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: if hop {
                IpProtocol::HopByHop
            } else {
                IpProtocol::Tcp
            },
            payload_len: ext + t.buffer_len(),
            hop_limit: 64,
        };
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[14..]));
        if hop {
            // Next header TCP, length 0 (8 bytes), a PadN option.
            f[54..62].copy_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        }
        let caps = ChecksumCapabilities::default();
        t.emit(
            &mut TcpPacket::new_unchecked(&mut f[54 + ext..]),
            &src.into(),
            &dst.into(),
            &caps,
        );
        f
    }

    #[test]
    fn ipv6_segments_and_extension_headers() {
        let us = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
        let peer = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        let mut off = Offload::new(LINK);
        let mut f = tcp6(us, peer, 30000, false);
        let h = off.prepare_tx(&mut f).unwrap();
        assert_eq!(
            (h.gso_type, h.gso_size, h.csum_start),
            (GSO_TCPV6, 1440, 54)
        );
        for hop in [false, true] {
            let good = tcp6(peer, us, 100, hop);
            let mut bad = good.clone();
            *bad.last_mut().unwrap() ^= 1;
            let plain = VnetHdr::default();
            assert_eq!(
                off.accept_rx(&plain, &mut good.clone()),
                Rx::Accept,
                "hop={hop}"
            );
            assert_eq!(
                off.accept_rx(&plain, &mut bad.clone()),
                Rx::Drop,
                "hop={hop}"
            );
        }
    }

    #[test]
    fn udp_gets_checksum_offload_but_no_segmentation() {
        let off = Offload::new(LINK);
        let udp = |len: usize| {
            let data = vec![1u8; len];
            let u = UdpRepr {
                src_port: 7,
                dst_port: 40000,
            };
            let ip = Ipv4Repr {
                src_addr: US,
                dst_addr: PEER,
                next_header: IpProtocol::Udp,
                payload_len: u.header_len() + len,
                hop_limit: 64,
            };
            frame(&ip, |b| {
                let mut p = UdpPacket::new_unchecked(b);
                u.emit(
                    &mut p,
                    &US.into(),
                    &PEER.into(),
                    len,
                    |d| d.copy_from_slice(&data),
                    &ChecksumCapabilities::default(),
                );
            })
        };
        let mut f = udp(100);
        let h = off.prepare_tx(&mut f).unwrap();
        assert_eq!(
            (h.flags, h.gso_type, h.csum_offset),
            (F_NEEDS_CSUM, GSO_NONE, 6)
        );
        assert_eq!(
            u16::from_be_bytes([f[40], f[41]]),
            pseudo(&f, IpProtocol::Udp)
        );
        assert_eq!(off.prepare_tx(&mut udp(3000)), None);
    }
}
