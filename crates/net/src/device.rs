//! smoltcp's view of a `morgana::Net` device: receiving never waits (the
//! stack's driver task waits for readiness itself), sending never suspends.

use crate::offload::{Offload, Rx};
use alloc::vec;
use alloc::vec::Vec;
use morgana::Net;
use morgana::abi::offload::{MAX_FRAME, VNET_HDR_LEN, VnetHdr};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, Ipv4Address,
};

/// A network device with its frame buffers.
pub(crate) struct Device {
    pub(crate) net: Net,
    /// Received bytes: on an offloading device ([`Net::offload`]), a
    /// virtio-net header of `hdr` bytes, then the frame.
    rx: Vec<u8>,
    /// Bytes to send, laid out as `rx`.
    tx: Vec<u8>,
    /// Bytes of virtio-net header before each frame: 0 or `VNET_HDR_LEN`.
    hdr: usize,
    /// Segmentation and checksum offload state, on an offloading device.
    offload: Option<Offload>,
    /// Frames received and dropped because the device reported an error.
    pub(crate) errors: u64,
    /// Listening ports whose backlog is full: SYNs to them are dropped
    /// (the peer retransmits), as a full SYN queue does, instead of
    /// being answered with a reset.
    pub(crate) full_ports: Vec<u16>,
    /// SYNs dropped because of a full backlog.
    pub(crate) syns_dropped: u64,
}

/// The destination port of a TCP SYN (without ACK) in an Ethernet frame.
fn syn_port(f: &[u8]) -> Option<u16> {
    let tcp = match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
        0x0800 if *f.get(23)? == 6 => 14 + usize::from(f.get(14)? & 0x0f) * 4,
        0x86dd if *f.get(20)? == 6 => 54,
        _ => return None,
    };
    let flags = *f.get(tcp + 13)?;
    (flags & 0x12 == 0x02).then(|| u16::from_be_bytes([f[tcp + 2], f[tcp + 3]]))
}

impl Device {
    pub(crate) fn new(net: Net) -> Self {
        let (hdr, n, offload) = if net.offload() {
            let off = Offload::new(net.max_frame());
            (VNET_HDR_LEN, VNET_HDR_LEN + MAX_FRAME, Some(off))
        } else {
            (0, net.max_frame(), None)
        };
        Self {
            net,
            rx: vec![0; n],
            tx: vec![0; n],
            hdr,
            offload,
            errors: 0,
            full_ports: Vec::new(),
            syns_dropped: 0,
        }
    }
}

pub(crate) struct RxToken<'a> {
    frame: &'a mut [u8],
}

pub(crate) struct TxToken<'a> {
    net: &'a Net,
    buf: &'a mut [u8],
    hdr: usize,
    offload: Option<&'a mut Offload>,
    errors: &'a mut u64,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(self.buf.len() - self.hdr);
        let (head, frame) = self.buf.split_at_mut(self.hdr);
        let r = f(&mut frame[..len]);
        let sent = match self.offload {
            None => self.net.write(&frame[..len]),
            Some(off) => match off.prepare_tx(&mut frame[..len]) {
                Some(h) => {
                    h.encode(head);
                    self.net.write_offload(&self.buf[..self.hdr + len])
                }
                // Too long for the link and not TCP: the link drops it.
                None => Err(morgana::NetError::BadFrameLength),
            },
        };
        if sent.is_err() {
            *self.errors += 1;
        }
        r
    }
}

impl Device {
    /// Sends an ARP request for `target` from `sender`: the reply fills the
    /// neighbour cache (smoltcp learns neighbours from ARP only), and the
    /// request announces `sender` to the link.
    pub(crate) fn arp_request(&mut self, sender: Ipv4Address, target: Ipv4Address) {
        let mac = EthernetAddress(self.net.mac());
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: mac,
            source_protocol_addr: sender,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let len = EthernetFrame::<&[u8]>::buffer_len(arp.buffer_len());
        let mut frame = EthernetFrame::new_unchecked(&mut self.tx[..len]);
        frame.set_dst_addr(EthernetAddress::BROADCAST);
        frame.set_src_addr(mac);
        frame.set_ethertype(EthernetProtocol::Arp);
        arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        if self.net.write(&self.tx[..len]).is_err() {
            self.errors += 1;
        }
    }

    /// Reads one frame: its length (after the virtio-net header, if
    /// any), or `None` if none is waiting; frames an offloading device
    /// must drop (bad checksums) are skipped.
    fn read_frame(&mut self) -> Option<usize> {
        loop {
            let Some(off) = self.offload.as_mut() else {
                return match self.net.try_read(&mut self.rx) {
                    Ok(n) => n,
                    Err(_) => {
                        self.errors += 1;
                        None
                    }
                };
            };
            let n = match self.net.try_read_offload(&mut self.rx) {
                Ok(Some(n)) => n,
                Ok(None) => return None,
                Err(_) => {
                    self.errors += 1;
                    return None;
                }
            };
            let (head, frame) = self.rx[..n].split_at_mut(VNET_HDR_LEN);
            let hdr = VnetHdr::decode(head).unwrap_or_default();
            match off.accept_rx(&hdr, frame) {
                Rx::Accept => return Some(n - VNET_HDR_LEN),
                Rx::Drop => self.errors += 1,
            }
        }
    }
}

impl phy::Device for Device {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _ts: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // Dropped SYNs count against a budget, so that a flood cannot keep
        // the driver in this loop: past it, report no frame (the platform
        // still says the device is ready, and the driver comes back).
        let mut dropped = 0;
        let n = loop {
            if dropped == 64 {
                return None;
            }
            let n = self.read_frame()?;
            let h = self.hdr;
            match syn_port(&self.rx[h..h + n]) {
                Some(port) if self.full_ports.contains(&port) => {
                    self.syns_dropped += 1;
                    dropped += 1;
                }

                _ => break n,
            }
        };
        Some((
            RxToken {
                frame: &mut self.rx[self.hdr..self.hdr + n],
            },
            TxToken {
                net: &self.net,
                buf: &mut self.tx,
                hdr: self.hdr,
                offload: self.offload.as_mut(),
                errors: &mut self.errors,
            },
        ))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            net: &self.net,
            buf: &mut self.tx,
            hdr: self.hdr,
            offload: self.offload.as_mut(),
            errors: &mut self.errors,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_burst_size = None;
        // On an offloading device, TCP segments may fill a 64 KiB IP packet
        // (the host cuts them), and TCP and UDP checksums are the host's or
        // checked here (`Offload`): smoltcp neither computes nor checks them.
        let l4 = if self.offload.is_some() {
            caps.max_transmission_unit = MAX_FRAME;
            Checksum::None
        } else {
            caps.max_transmission_unit = self.net.max_frame();
            Checksum::Both
        };
        let mut ck = ChecksumCapabilities::default();
        ck.ipv4 = Checksum::Both;
        ck.tcp = l4;
        ck.udp = l4;
        ck.icmpv4 = Checksum::Both;
        ck.icmpv6 = Checksum::Both;
        caps.checksum = ck;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::syn_port;

    #[test]
    fn syns_are_recognised() {
        let mut f = [0u8; 54];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 6;
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[47] = 0x02;
        assert_eq!(syn_port(&f), Some(80));
        f[47] = 0x12; // SYN-ACK
        assert_eq!(syn_port(&f), None);
        f[47] = 0x02;
        f[23] = 17;
        assert_eq!(syn_port(&f), None);
        assert_eq!(syn_port(&f[..20]), None);
    }
}
