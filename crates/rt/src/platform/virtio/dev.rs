//! virtio devices through the `virtio-drivers` crate: discovery over
//! virtio-mmio (from `virtio_mmio.device=SIZE@ADDR:IRQ` on the command
//! line, as Linux guests get them) and virtio-pci (PCI bus 0 through the
//! legacy configuration ports), and the net and block devices behind the
//! platform's Solo5-level calls.

use super::hw;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;
use morgana_abi::mft::DeviceKind;
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::device::net::{TxBuffer, VirtIONet};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{
    ConfigurationAccess, DeviceFunction, HeaderType, PciRoot,
};
use virtio_drivers::transport::{DeviceType, SomeTransport, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// Receive (and transmit) queue size of a net device.
const NET_QUEUE: usize = 256;
/// Bytes of each receive buffer: a virtio-net header and a full frame.
const NET_BUF: usize = 2048;

/// The HAL: memory is identity mapped, so physical addresses are virtual
/// ones; DMA memory comes from the heap.
pub struct MorganaHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory whose
// physical address is its address (identity mapping), owned by the caller
// until `dma_dealloc`; `share` hands out the buffer's own address, which the
// device may use until `unshare` (nothing to copy back: no bounce buffers).
unsafe impl Hal for MorganaHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = core::alloc::Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE)
            .expect("a valid DMA layout");
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        match NonNull::new(p) {
            Some(p) => (p.as_ptr() as PhysAddr, p),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let layout = core::alloc::Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE)
            .expect("a valid DMA layout");
        // SAFETY: `vaddr` came from `dma_alloc` with this layout.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("a non-null MMIO address")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// PCI configuration space through ports 0xcf8/0xcfc (configuration
/// mechanism #1, which QEMU's q35 and pc machines have).
pub struct PortCam;

fn cam_address(df: DeviceFunction, reg: u8) -> u32 {
    0x8000_0000
        | (u32::from(df.bus) << 16)
        | (u32::from(df.device) << 11)
        | (u32::from(df.function) << 8)
        | u32::from(reg & 0xfc)
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, reg: u8) -> u32 {
        hw::outl(0xcf8, cam_address(df, reg));
        hw::inl(0xcfc)
    }

    fn write_word(&mut self, df: DeviceFunction, reg: u8, data: u32) {
        hw::outl(0xcf8, cam_address(df, reg));
        hw::outl(0xcfc, data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

type Transport_ = SomeTransport<'static>;

/// A driven virtio device.
pub enum Driver {
    /// virtio-net.
    Net(Box<VirtIONet<MorganaHal, Transport_, NET_QUEUE>>),
    /// virtio-blk, with its sector size.
    Block(Box<VirtIOBlk<MorganaHal, Transport_>>),
}

/// A virtio device found at boot.
pub struct Found {
    /// Its kind (`None`: a virtio device of another type, not driven).
    pub kind: Option<DeviceKind>,
    /// What it is, for messages: `net`, `block`, or the virtio type.
    pub what: &'static str,
    /// Where: `mmio@ADDR` or `pci 00:DD.F`.
    pub place: alloc::string::String,
    /// Its transport, until the device is bound to a declared name.
    pub transport: Option<Transport_>,
}

fn type_name(t: DeviceType) -> (Option<DeviceKind>, &'static str) {
    match t {
        DeviceType::Network => (Some(DeviceKind::Net), "net"),
        DeviceType::Block => (Some(DeviceKind::Block), "block"),
        DeviceType::Console => (None, "console"),
        DeviceType::EntropySource => (None, "rng"),
        _ => (None, "other"),
    }
}

/// Parses Linux's `memparse` numbers: decimal or 0x hex, with an optional
/// K, M or G suffix.
fn parse_num(s: &str) -> Option<u64> {
    let (s, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok()?,
        None => s.parse().ok()?,
    };
    v.checked_mul(mult)
}

/// A `virtio_mmio.device=SIZE@ADDR:IRQ[:ID]` value.
pub fn parse_mmio(v: &str) -> Option<(u64, u64, u32)> {
    let (size, rest) = v.split_once('@')?;
    let (addr, rest) = rest.split_once(':')?;
    let irq = rest.split(':').next()?;
    Some((parse_num(size)?, parse_num(addr)?, irq.parse().ok()?))
}

/// Finds the virtio devices: the virtio-mmio ones the command line lists
/// (in its order), then the virtio-pci ones on bus 0 (in slot order).
/// Routes each one's interrupt through the I/O APIC.
pub fn discover(mmio: &[(u64, u64, u32)]) -> Vec<Found> {
    let mut found = Vec::new();
    for &(size, addr, irq) in mmio {
        let place = alloc::format!("mmio@{addr:#x}");
        if addr == 0 || addr >= 1 << 32 || size < 0x100 {
            continue;
        }
        let Some(header) = NonNull::new(addr as *mut VirtIOHeader) else {
            continue;
        };
        // SAFETY: the VMM announced a virtio-mmio region of `size` bytes at
        // `addr` (below 4 GiB, identity mapped); it stays there forever.
        match unsafe { MmioTransport::new(header, size as usize) } {
            Ok(t) => {
                let (kind, what) = type_name(t.device_type());
                hw::enable_irq(irq);
                found.push(Found {
                    kind,
                    what,
                    place,
                    transport: Some(t.into()),
                });
            }
            // No device behind this transport (QEMU's microvm announces
            // only the ones in use, but a VMM may list empty slots).
            Err(_) => continue,
        }
    }
    // PCI: only where a host bridge answers at 00:00.0.
    let mut root = PciRoot::new(PortCam);
    let host = PortCam.read_word(
        DeviceFunction {
            bus: 0,
            device: 0,
            function: 0,
        },
        0,
    );
    if host != u32::MAX && host & 0xffff != 0xffff {
        let devices: Vec<_> = root
            .enumerate_bus(0)
            .filter(|(_, info)| info.header_type == HeaderType::Standard)
            .collect();
        for (df, info) in devices {
            if virtio_drivers::transport::pci::virtio_device_type(&info).is_none() {
                continue;
            }
            let place = alloc::format!("pci 00:{:02x}.{}", df.device, df.function);
            // Memory space and bus mastering on (the firmware assigned the BARs).
            let (_, cmd) = root.get_status_command(df);
            use virtio_drivers::transport::pci::bus::Command;
            root.set_command(
                df,
                cmd | Command::MEMORY_SPACE | Command::IO_SPACE | Command::BUS_MASTER,
            );
            match PciTransport::new::<MorganaHal, _>(&mut root, df) {
                Ok(t) => {
                    let (kind, what) = type_name(t.device_type());
                    let line = PortCam.read_word(df, 0x3c) & 0xff;
                    if line != 0 && line != 0xff {
                        hw::enable_irq(line);
                    }
                    found.push(Found {
                        kind,
                        what,
                        place,
                        transport: Some(t.into()),
                    });
                }
                Err(_) => continue,
            }
        }
        // In APIC mode, q35's and piix's PCI interrupt links end on I/O
        // APIC pins 16 to 23 whatever the firmware routed for the PIC.
        for pin in 16..24 {
            hw::enable_irq(pin);
        }
    }
    found
}

/// Why a device could not be started.
pub type StartError = virtio_drivers::Error;

/// Starts a net driver on `t`: returns it and the MAC address.
pub fn start_net(t: Transport_) -> Result<(Driver, [u8; 6]), StartError> {
    let net = VirtIONet::<MorganaHal, _, NET_QUEUE>::new(t, NET_BUF)?;
    let mac = net.mac_address();
    Ok((Driver::Net(Box::new(net)), mac))
}

/// Starts a block driver on `t`: returns it, its capacity in bytes and its
/// sector size (the device's `blk_size` when it reports one, else 512).
pub fn start_block(mut t: Transport_) -> Result<(Driver, u64, u64), StartError> {
    const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
    let sector = if t.read_device_features() & VIRTIO_BLK_F_BLK_SIZE != 0 {
        u64::from(t.read_config_space::<u32>(20)?)
    } else {
        512
    };
    let blk = VirtIOBlk::<MorganaHal, _>::new(t)?;
    let capacity = blk.capacity() * 512;
    Ok((Driver::Block(Box::new(blk)), capacity, sector))
}

impl Driver {
    /// Acknowledges the device's interrupt (lowers its line).
    pub fn ack(&mut self) {
        match self {
            Self::Net(n) => {
                n.ack_interrupt();
            }
            Self::Block(b) => {
                b.ack_interrupt();
            }
        }
    }

    /// Whether a frame is waiting (net devices).
    pub fn can_recv(&self) -> bool {
        match self {
            Self::Net(n) => n.can_recv(),
            Self::Block(_) => false,
        }
    }

    /// Reads one frame into `buf` (truncated if longer); `None` if none.
    pub fn recv(&mut self, buf: &mut [u8]) -> Option<Result<usize, StartError>> {
        let Self::Net(n) = self else {
            return Some(Err(virtio_drivers::Error::InvalidParam));
        };
        let rx = match n.receive() {
            Ok(rx) => rx,
            Err(virtio_drivers::Error::NotReady) => return None,
            Err(e) => return Some(Err(e)),
        };
        let p = rx.packet();
        let len = p.len().min(buf.len());
        buf[..len].copy_from_slice(&p[..len]);
        Some(n.recycle_rx_buffer(rx).map(|()| len))
    }

    /// Sends one frame (returns once the device has taken it).
    pub fn send(&mut self, buf: &[u8]) -> Result<(), StartError> {
        match self {
            Self::Net(n) => n.send(TxBuffer::from(buf)),
            Self::Block(_) => Err(virtio_drivers::Error::InvalidParam),
        }
    }

    /// Reads sectors at byte `offset` (a multiple of 512).
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), StartError> {
        match self {
            Self::Block(b) => b.read_blocks((offset / 512) as usize, buf),
            Self::Net(_) => Err(virtio_drivers::Error::InvalidParam),
        }
    }

    /// Writes sectors at byte `offset` (a multiple of 512).
    pub fn write(&mut self, offset: u64, buf: &[u8]) -> Result<(), StartError> {
        match self {
            Self::Block(b) => b.write_blocks((offset / 512) as usize, buf),
            Self::Net(_) => Err(virtio_drivers::Error::InvalidParam),
        }
    }
}
