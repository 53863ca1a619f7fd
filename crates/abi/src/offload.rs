//! Network offload: a Morgana extension of the Solo5 ABI, negotiated per
//! network device, under which frames cross the tap with a virtio-net
//! header (`struct virtio_net_hdr`, as Linux's `IFF_VNET_HDR` taps carry
//! them), so that one frame can carry a whole 64 KiB TCP segment that the
//! host kernel segments (TSO) and checksums.
//!
//! Negotiation, compatible both ways with Solo5:
//!
//! 1. The image asks: its [`SECTION`] section holds a [`Request`]: a magic
//!    word and a bit mask of manifest entries (bit `i` for entry `i`) whose
//!    net devices understand virtio-net headers. Solo5's tenders do not
//!    know the section and ignore it.
//! 2. A tender that can grants it: it opens those taps with
//!    `IFF_VNET_HDR` and offloads on, and writes [`VNET_HDR_LEN`] into the
//!    entry's `vnet_hdr` field of the manifest copy it gives the guest
//!    ([`crate::mft::Entry::vnet_hdr`], bytes 80..82 of the entry, unused
//!    by `NET_BASIC`). Images without the section (Solo5's, MirageOS's)
//!    never get it.
//! 3. The guest uses headers only on devices whose entry says so; under
//!    Solo5's tenders the field stays 0 (the guest's own note has 0 there)
//!    and frames are plain.

/// Name of the section holding the image's [`Request`].
pub const SECTION: &str = ".morgana.offload";

/// First word of a [`Request`].
pub const MAGIC: u64 = u64::from_le_bytes(*b"MRGOFFL1");

/// Bytes of a virtio-net header (`struct virtio_net_hdr`, without
/// `num_buffers`): the tap's default `TUNSETVNETHDRSZ`.
pub const VNET_HDR_LEN: usize = 10;

/// Largest frame (Ethernet header included, virtio-net header not) on an
/// offloading device: a 64 KiB IP packet.
pub const MAX_FRAME: usize = 65535 + 14;

/// Header flag: the checksum at `csum_start + csum_offset` covers only the
/// pseudo-header; the receiver completes it over the bytes from `csum_start`.
pub const F_NEEDS_CSUM: u8 = 1;
/// Header flag: the host checked the frame's checksums.
pub const F_DATA_VALID: u8 = 2;
/// `gso_type`: not a segmentation frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: a TCP/IPv4 segment to cut into `gso_size`-byte segments.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: a TCP/IPv6 segment to cut into `gso_size`-byte segments.
pub const GSO_TCPV6: u8 = 4;

/// The image's offload request, as laid out in its [`SECTION`] section.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// [`MAGIC`].
    pub magic: u64,
    /// Bit `i`: manifest entry `i` accepts virtio-net headers.
    pub nets: u64,
}

impl Request {
    /// Bytes of a request.
    pub const SIZE: usize = 16;

    /// A request for the entries of `nets`.
    pub const fn new(nets: u64) -> Self {
        Self { magic: MAGIC, nets }
    }

    /// The entry mask of a request read from an image; `None` if the bytes
    /// are not one (too short, wrong magic).
    pub fn parse(bytes: &[u8]) -> Option<u64> {
        (crate::read_u64(bytes, 0)? == MAGIC).then(|| crate::read_u64(bytes, 8))?
    }
}

/// A virtio-net header, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// [`F_NEEDS_CSUM`], [`F_DATA_VALID`].
    pub flags: u8,
    /// [`GSO_NONE`], [`GSO_TCPV4`], [`GSO_TCPV6`].
    pub gso_type: u8,
    /// Bytes of headers (Ethernet, IP, TCP) before the payload.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed bytes start.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Decodes the first [`VNET_HDR_LEN`] bytes of `b` (little-endian, as
    /// x86 tenders and taps use them); `None` if `b` is shorter.
    pub fn decode(b: &[u8]) -> Option<Self> {
        Some(Self {
            flags: *b.first()?,
            gso_type: *b.get(1)?,
            hdr_len: crate::read_u16(b, 2)?,
            gso_size: crate::read_u16(b, 4)?,
            csum_start: crate::read_u16(b, 6)?,
            csum_offset: crate::read_u16(b, 8)?,
        })
    }

    /// Encodes the header into the first [`VNET_HDR_LEN`] bytes of `b`.
    ///
    /// # Panics
    /// If `b` is shorter than [`VNET_HDR_LEN`].
    pub fn encode(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        let r = Request::new(0b110);
        let mut b = [0u8; Request::SIZE];
        b[..8].copy_from_slice(&r.magic.to_le_bytes());
        b[8..].copy_from_slice(&r.nets.to_le_bytes());
        assert_eq!(Request::parse(&b), Some(0b110));
        assert_eq!(Request::parse(&b[..12]), None);
        b[0] ^= 1;
        assert_eq!(Request::parse(&b), None);
        assert_eq!(core::mem::size_of::<Request>(), Request::SIZE);
    }

    #[test]
    fn headers_round_trip() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.encode(&mut b);
        assert_eq!(b, [1, 1, 66, 0, 0xa8, 5, 34, 0, 16, 0]);
        assert_eq!(VnetHdr::decode(&b), Some(h));
        assert_eq!(VnetHdr::decode(&b[..9]), None);
    }
}
