//! Network devices (MirageOS `NETWORK`): raw Ethernet frames.
//!
//! Reading suspends the task when no frame is waiting and lets the others
//! run; it resumes when the platform reports the device ready. Writing is
//! immediate and never suspends (a frame may be dropped by the host).

use crate::device::{Device, DeviceError};
use crate::exec;
use core::cell::Cell;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use morgana_abi::Solo5Result;
use morgana_abi::mft::DeviceKind;
use morgana_abi::offload::{self, VNET_HDR_LEN};
use morgana_abi::trace::Kind;

/// Length of an Ethernet header: frames are at most `mtu + ETHERNET_HEADER`.
pub const ETHERNET_HEADER: usize = 14;

/// Traffic counters of a network device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
}

/// A network error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// A read buffer smaller than `mtu + 14` bytes.
    BufferTooSmall,
    /// A frame longer than `mtu + 14` bytes, or empty.
    BadFrameLength,
    /// The platform reported an error.
    Device(Solo5Result),
    /// An offload operation on a device without offloads.
    NoOffload,
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall => f.write_str("read buffer smaller than MTU + 14 bytes"),
            Self::BadFrameLength => f.write_str("frame empty or longer than MTU + 14 bytes"),
            Self::Device(r) => write!(f, "device error ({r:?})"),
            Self::NoOffload => f.write_str("the device carries no virtio-net headers"),
        }
    }
}

impl core::error::Error for NetError {}

/// A network device, acquired by name.
pub struct Net {
    handle: u64,
    mac: [u8; 6],
    mtu: u16,
    /// Frames carry a virtio-net header (the tender granted offloads).
    vnet: bool,
    stats: Cell<NetStats>,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("handle", &self.handle)
            .field("mac", &self.mac)
            .field("mtu", &self.mtu)
            .finish()
    }
}

impl Net {
    /// Acquires the network device `name` declared in the manifest.
    pub fn acquire(name: &'static str) -> Result<Self, DeviceError> {
        let (handle, e) = crate::boot::acquire(name, DeviceKind::Net)
            .map_err(|err| DeviceError::new(name, err))?;
        #[cfg(all(morgana_platform = "unix", not(any(test, morgana_sim))))]
        if crate::platform::is_sockets(handle) {
            return Err(DeviceError::new(
                name,
                "it is attached to the host's sockets (--net:NAME=socket), which carry no \
                 Ethernet frames: only a TCP/IP stack (morgana_net::Stack) can use it; \
                 attach a tap instead",
            ));
        }
        let (mac, mtu) = e.net();
        Ok(Self {
            handle,
            mac,
            mtu,
            vnet: usize::from(e.vnet_hdr()) == VNET_HDR_LEN,
            stats: Cell::new(NetStats::default()),
        })
    }

    /// The device's handle (its manifest index).
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// The MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The MTU: frames carry at most this many bytes after the Ethernet
    /// header.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The largest frame, header included.
    pub fn max_frame(&self) -> usize {
        usize::from(self.mtu) + ETHERNET_HEADER
    }

    /// Traffic counters.
    pub fn stats(&self) -> NetStats {
        self.stats.get()
    }

    /// Resets the traffic counters.
    pub fn reset_stats(&self) {
        self.stats.set(NetStats::default());
    }

    /// Reads one frame into `buf` (at least `mtu + 14` bytes), waiting for
    /// one if none is there; returns its length.
    pub fn read<'a>(&'a self, buf: &'a mut [u8]) -> Read<'a> {
        Read {
            net: self,
            buf,
            yielded: false,
        }
    }

    /// Reads one frame if one is waiting, without suspending.
    ///
    /// On an offloading device ([`Net::offload`]) the frame's virtio-net
    /// header is dropped (and a frame longer than `buf` is an error): use
    /// [`Net::try_read_offload`] there.
    pub fn try_read(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        if buf.len() < self.max_frame() {
            return Err(NetError::BufferTooSmall);
        }
        if !self.vnet {
            return self.read_raw(buf, 0);
        }
        let mut tmp = alloc::vec![0; VNET_HDR_LEN + offload::MAX_FRAME];
        let Some(n) = self.read_raw(&mut tmp, VNET_HDR_LEN)? else {
            return Ok(None);
        };
        let frame = &tmp[VNET_HDR_LEN..n];
        buf.get_mut(..frame.len())
            .ok_or(NetError::BadFrameLength)?
            .copy_from_slice(frame);
        Ok(Some(frame.len()))
    }

    /// Sends one frame (header included). Never suspends.
    pub fn write(&self, frame: &[u8]) -> Result<(), NetError> {
        if frame.is_empty() || frame.len() > self.max_frame() {
            return Err(NetError::BadFrameLength);
        }
        if !self.vnet {
            return self.write_raw(frame, 0);
        }
        let mut tmp = alloc::vec![0; VNET_HDR_LEN];
        tmp.extend_from_slice(frame);
        self.write_raw(&tmp, VNET_HDR_LEN)
    }

    /// Whether the tender granted this device virtio-net headers and
    /// offloads (`morgana_abi::offload`; only devices whose type asks for
    /// them, like the TCP/IP stack, and only on Morgana's spt and unix
    /// platforms): frames then move with [`Net::try_read_offload`] and
    /// [`Net::write_offload`], TCP frames may be up to
    /// [`offload::MAX_FRAME`] bytes (the host segments them), and
    /// checksums may be left to the host.
    pub fn offload(&self) -> bool {
        self.vnet
    }

    /// Reads one frame preceded by its virtio-net header
    /// ([`offload::VNET_HDR_LEN`] bytes) into `buf`, which holds at least
    /// `VNET_HDR_LEN + offload::MAX_FRAME` bytes, if one is waiting;
    /// returns the length of header and frame.
    pub fn try_read_offload(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        if !self.vnet {
            return Err(NetError::NoOffload);
        }
        if buf.len() < VNET_HDR_LEN + offload::MAX_FRAME {
            return Err(NetError::BufferTooSmall);
        }
        self.read_raw(buf, VNET_HDR_LEN)
    }

    /// Sends one frame preceded by its virtio-net header. Never suspends.
    pub fn write_offload(&self, buf: &[u8]) -> Result<(), NetError> {
        if !self.vnet {
            return Err(NetError::NoOffload);
        }
        if buf.len() <= VNET_HDR_LEN + ETHERNET_HEADER
            || buf.len() > VNET_HDR_LEN + offload::MAX_FRAME
        {
            return Err(NetError::BadFrameLength);
        }
        self.write_raw(buf, VNET_HDR_LEN)
    }

    /// Reads what the platform has, counting `hdr` bytes of it as header.
    fn read_raw(&self, buf: &mut [u8], hdr: usize) -> Result<Option<usize>, NetError> {
        match crate::platform::net_read(self.handle, buf) {
            Ok(n) if n <= hdr => Err(NetError::BadFrameLength),
            Ok(n) => {
                let len = (n - hdr) as u64;
                crate::trace::record(Kind::NetRx, self.handle as u32, [len, 0, 0]);
                let mut s = self.stats.get();
                s.rx_bytes += len;
                s.rx_packets += 1;
                self.stats.set(s);
                Ok(Some(n))
            }
            Err(Solo5Result::Again) => Ok(None),
            Err(e) => Err(NetError::Device(e)),
        }
    }

    /// Hands `buf` to the platform, counting `hdr` bytes of it as header.
    fn write_raw(&self, buf: &[u8], hdr: usize) -> Result<(), NetError> {
        crate::platform::net_write(self.handle, buf).map_err(NetError::Device)?;
        let len = (buf.len() - hdr) as u64;
        crate::trace::record(Kind::NetTx, self.handle as u32, [len, 0, 0]);
        let mut s = self.stats.get();
        s.tx_bytes += len;
        s.tx_packets += 1;
        self.stats.set(s);
        Ok(())
    }

    /// Registers the current task to be woken when the device has input
    /// (for stacks built on [`Net::try_read`]).
    pub fn register_waker(&self, cx: &Context<'_>) {
        exec::wait_net(self.handle, cx.waker());
    }
}

/// Future of [`Net::read`].
#[must_use = "futures do nothing unless awaited"]
pub struct Read<'a> {
    net: &'a Net,
    buf: &'a mut [u8],
    yielded: bool,
}

impl Future for Read<'_> {
    type Output = Result<usize, NetError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if exec::coop(cx, &mut this.yielded) {
            return Poll::Pending;
        }
        match this.net.try_read(this.buf) {
            Ok(Some(n)) => Poll::Ready(Ok(n)),
            Ok(None) => {
                this.net.register_waker(cx);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Device for Net {
    const NEEDS: &'static [DeviceKind] = &[DeviceKind::Net];

    async fn connect(names: &'static [&'static str]) -> Result<Self, DeviceError> {
        Net::acquire(names[0])
    }
}

/// Host sockets (unix platform): a net device attached with
/// `--net:NAME=socket` is served by the host kernel's TCP/IP stack instead
/// of a tap. A TCP/IP stack acquires it with [`host::HostSockets::acquire`]
/// and opens non-blocking host sockets, registering each with
/// [`host::HostSockets::register`]; a task that finds a socket not ready
/// calls [`host::HostSockets::wait`] and returns `Pending`, and the scheduler
/// wakes it when epoll reports the socket ready (edge-triggered: wait only
/// after an operation returned `EAGAIN`).
#[cfg(all(morgana_platform = "unix", not(any(test, morgana_sim))))]
pub mod host {
    use crate::device::DeviceError;
    use core::task::Context;
    use morgana_abi::mft::DeviceKind;
    use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

    /// A net device attached to the host's sockets.
    #[derive(Debug)]
    pub struct HostSockets {
        name: &'static str,
    }

    /// Whether the declared net device `name` is attached to the host's
    /// sockets (`--net:NAME=socket`), without acquiring it.
    pub fn is_attached(name: &str) -> bool {
        crate::boot::find(name, DeviceKind::Net).is_some_and(crate::platform::is_sockets)
    }

    impl HostSockets {
        /// Acquires net device `name`, which must be attached to host sockets.
        pub fn acquire(name: &'static str) -> Result<Self, DeviceError> {
            let (handle, _) = crate::boot::acquire(name, DeviceKind::Net)
                .map_err(|err| DeviceError::new(name, err))?;
            if !crate::platform::is_sockets(handle) {
                return Err(DeviceError::new(name, "not attached to host sockets"));
            }
            Ok(Self { name })
        }

        /// The device's name.
        pub fn name(&self) -> &'static str {
            self.name
        }

        /// Adds a (non-blocking) host socket to the scheduler's epoll set.
        pub fn register(&self, fd: BorrowedFd<'_>) -> std::io::Result<()> {
            crate::platform::register_fd(fd.as_raw_fd())
        }

        /// Removes a socket from the epoll set; call it before closing it.
        pub fn deregister(&self, fd: RawFd) {
            crate::platform::deregister_fd(fd)
        }

        /// Wakes the current task when `fd` becomes readable (or, with
        /// `write`, writable), or fails. One task per direction: a second
        /// waiter replaces the first.
        pub fn wait(&self, fd: RawFd, write: bool, cx: &Context<'_>) {
            crate::platform::wait_fd(fd, write, cx.waker())
        }
    }
}

/// Host sockets on the simulated platform (`MORGANA_SIM`, the fuzzers'
/// build): the same API as on unix, but no device is ever attached to host
/// sockets there, so acquiring one fails and nothing is registered.
#[cfg(all(morgana_platform = "unix", morgana_sim, not(test)))]
pub mod host {
    use crate::device::DeviceError;
    use core::task::Context;
    use std::os::fd::{BorrowedFd, RawFd};

    /// A net device attached to the host's sockets (never, here).
    #[derive(Debug)]
    pub struct HostSockets {
        name: &'static str,
    }

    /// Always false on the simulated platform.
    pub fn is_attached(_name: &str) -> bool {
        false
    }

    impl HostSockets {
        /// Fails: the simulated platform has no host sockets.
        pub fn acquire(name: &'static str) -> Result<Self, DeviceError> {
            Err(DeviceError::new(
                name,
                "host sockets are not available on the simulated platform",
            ))
        }

        /// The device's name.
        pub fn name(&self) -> &'static str {
            self.name
        }

        /// Fails: nothing can be registered.
        pub fn register(&self, _fd: BorrowedFd<'_>) -> std::io::Result<()> {
            Err(std::io::Error::other(
                "no host sockets on the simulated platform",
            ))
        }

        /// Does nothing.
        pub fn deregister(&self, _fd: RawFd) {}

        /// Does nothing.
        pub fn wait(&self, _fd: RawFd, _write: bool, _cx: &Context<'_>) {}
    }
}
