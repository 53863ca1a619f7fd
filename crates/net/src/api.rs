//! The public API: one `Stack`, `TcpListener`, `TcpStream` and `UdpSocket`
//! whichever serves them, smoltcp over a `Net` device or (unix, with
//! `--net:NAME=socket`) the host's own sockets.

use crate::Error;
use crate::config::Config;
use crate::stack::{SmolStack, StackStats};
use crate::tcp::{SmolListener, SmolStream};
use crate::udp::SmolUdp;
use alloc::vec::Vec;
use morgana::Net;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint, Ipv4Cidr};

#[cfg(target_os = "linux")]
use {
    crate::host::{Host, HostListener, HostStream, HostUdp},
    alloc::rc::Rc,
};

/// A TCP/IP stack. Cloning gives another handle to the same stack.
///
/// Declared as a parameter of `#[morgana::main]`, it is built from the net
/// device of the same name: smoltcp over its Ethernet frames, or, on the
/// unix platform with `--net:NAME=socket`, the host kernel's sockets (see
/// the crate docs).
#[derive(Clone)]
pub struct Stack(StackImp);

#[derive(Clone)]
enum StackImp {
    Smol(SmolStack),
    #[cfg(target_os = "linux")]
    Host(Rc<Host>),
}

impl core::fmt::Debug for Stack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stack")
            .field("host_sockets", &self.is_host_sockets())
            .field("ipv4", &self.ipv4_addr())
            .finish()
    }
}

impl Stack {
    /// Starts a smoltcp stack on `net` with `config`, and its driver task.
    pub fn new(net: Net, config: Config) -> Result<Self, Error> {
        SmolStack::new(net, config).map(|s| Self(StackImp::Smol(s)))
    }

    /// Whether the host's sockets serve this stack (unix socket mode).
    pub fn is_host_sockets(&self) -> bool {
        match &self.0 {
            StackImp::Smol(_) => false,
            #[cfg(target_os = "linux")]
            StackImp::Host(_) => true,
        }
    }

    /// The MAC address (all zeros on host sockets).
    pub fn mac(&self) -> [u8; 6] {
        match &self.0 {
            StackImp::Smol(s) => s.mac(),
            #[cfg(target_os = "linux")]
            StackImp::Host(_) => [0; 6],
        }
    }

    /// The IPv4 address and prefix, once configured. On host sockets:
    /// `--ipv4`, or 127.0.0.1/8.
    pub fn ipv4_addr(&self) -> Option<Ipv4Cidr> {
        match &self.0 {
            StackImp::Smol(s) => s.ipv4_addr(),
            #[cfg(target_os = "linux")]
            StackImp::Host(h) => Some(h.ipv4()),
        }
    }

    /// Every configured address (IPv4, IPv6 link-local, SLAAC or static; on
    /// host sockets, the `--ipv4`/`--ipv6` bind addresses).
    pub fn addrs(&self) -> Vec<IpCidr> {
        match &self.0 {
            StackImp::Smol(s) => s.addrs(),
            #[cfg(target_os = "linux")]
            StackImp::Host(h) => h.addrs(),
        }
    }

    /// Waits until the stack has an IPv4 address (DHCP) and returns it (at
    /// once on host sockets: see [`Stack::ipv4_addr`]).
    pub async fn wait_ipv4(&self) -> Ipv4Cidr {
        match &self.0 {
            StackImp::Smol(s) => s.wait_ipv4().await,
            #[cfg(target_os = "linux")]
            StackImp::Host(h) => h.ipv4(),
        }
    }

    /// The stack's counters (on host sockets, only `sockets` and
    /// `handshakes_timed_out` count).
    pub fn stats(&self) -> StackStats {
        match &self.0 {
            StackImp::Smol(s) => s.stats(),
            #[cfg(target_os = "linux")]
            StackImp::Host(h) => h.stats(),
        }
    }

    /// The counters of the stack's network device: frames and bytes (all
    /// zero on host sockets, which have no frames).
    pub fn net_stats(&self) -> morgana::NetStats {
        match &self.0 {
            StackImp::Smol(s) => s.net_stats(),
            #[cfg(target_os = "linux")]
            StackImp::Host(_) => morgana::NetStats::default(),
        }
    }

    /// Resolves `name` to its IPv4 addresses (an address literal resolves
    /// to itself), asking the configured DNS servers (on host sockets
    /// without `--dns-server`: `/etc/resolv.conf`'s).
    pub async fn dns_lookup(&self, name: &str) -> Result<Vec<IpAddress>, Error> {
        if let Ok(ip) = name.parse::<IpAddress>() {
            return Ok(alloc::vec![ip]);
        }
        match &self.0 {
            StackImp::Smol(s) => s.dns_lookup(name).await,
            #[cfg(target_os = "linux")]
            StackImp::Host(h) => crate::host::dns_lookup(h, name).await,
        }
    }
}

/// A listening TCP port. On smoltcp, up to `backlog` connections can be in
/// their handshake or waiting for `accept` at once (each has its own
/// listening socket); further SYNs are dropped, so clients retry, until one
/// is accepted or times out. On host sockets, `backlog` is `listen`'s.
pub struct TcpListener(ListenerImp);

enum ListenerImp {
    Smol(SmolListener),
    #[cfg(target_os = "linux")]
    Host(HostListener),
}

impl TcpListener {
    /// Listens on `port` on every address of `stack` (on host sockets: on
    /// `--ipv4`/`--ipv6` if given, else on every address, dual-stack).
    pub fn bind(stack: &Stack, port: u16) -> Result<Self, Error> {
        Ok(Self(match &stack.0 {
            StackImp::Smol(s) => ListenerImp::Smol(SmolListener::bind(s, port)?),
            #[cfg(target_os = "linux")]
            StackImp::Host(h) => ListenerImp::Host(HostListener::bind(h, port)?),
        }))
    }

    /// The port.
    pub fn local_port(&self) -> u16 {
        match &self.0 {
            ListenerImp::Smol(l) => l.local_port(),
            #[cfg(target_os = "linux")]
            ListenerImp::Host(l) => l.local_port(),
        }
    }

    /// Waits for a connection; returns it and the peer's address.
    pub async fn accept(&self) -> Result<(TcpStream, IpEndpoint), Error> {
        match &self.0 {
            ListenerImp::Smol(l) => l
                .accept()
                .await
                .map(|(s, p)| (TcpStream(StreamImp::Smol(s)), p)),
            #[cfg(target_os = "linux")]
            ListenerImp::Host(l) => l
                .accept()
                .await
                .map(|(s, p)| (TcpStream(StreamImp::Host(s)), p)),
        }
    }
}

/// A TCP connection. Reading and writing take `&self`, so a reader task
/// and a writer task can share one stream. Dropping a stream closes it
/// gracefully in the background; its memory is freed once closed.
///
/// One task at a time may wait on each direction: one in `read` (or
/// `close`), one in `write`, `write_all`, `flush` or `shutdown`. A second
/// task waiting on the same direction replaces the first's wake-up (as in
/// smoltcp), so the first is not woken again until something else polls
/// it: give each direction of a stream to one task.
pub struct TcpStream(StreamImp);

enum StreamImp {
    Smol(SmolStream),
    #[cfg(target_os = "linux")]
    Host(HostStream),
}

impl core::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local_addr())
            .field("peer", &self.peer_addr())
            .finish()
    }
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match &$self.0 {
            StreamImp::Smol($s) => $e,
            #[cfg(target_os = "linux")]
            StreamImp::Host($s) => $e,
        }
    };
}

impl TcpStream {
    /// Connects to `remote` (an address and port), within the handshake
    /// timeout.
    pub async fn connect(stack: &Stack, remote: impl Into<IpEndpoint>) -> Result<Self, Error> {
        let remote = remote.into();
        Ok(Self(match &stack.0 {
            StackImp::Smol(s) => StreamImp::Smol(SmolStream::connect(s, remote).await?),
            #[cfg(target_os = "linux")]
            StackImp::Host(h) => StreamImp::Host(HostStream::connect(h, remote).await?),
        }))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<IpEndpoint> {
        each!(self, s => s.peer_addr())
    }

    /// The local address.
    pub fn local_addr(&self) -> Option<IpEndpoint> {
        each!(self, s => s.local_addr())
    }

    /// Reads into `buf`; returns 0 at the end of the stream.
    pub async fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        each!(self, s => s.read(buf).await)
    }

    /// Writes some of `buf` (waits while the send buffer is full); returns
    /// how much.
    pub async fn write(&self, buf: &[u8]) -> Result<usize, Error> {
        each!(self, s => s.write(buf).await)
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Waits until everything written has been acknowledged by the peer (on
    /// host sockets: returns at once, the kernel holding what was written).
    pub async fn flush(&self) -> Result<(), Error> {
        match &self.0 {
            StreamImp::Smol(s) => s.flush().await,
            #[cfg(target_os = "linux")]
            StreamImp::Host(_) => Ok(()),
        }
    }

    /// Closes the sending half (sends FIN); reading still works.
    pub fn shutdown(&self) {
        each!(self, s => s.shutdown())
    }

    /// Closes the connection gracefully and waits until the peer has
    /// closed its half too (or the connection times out).
    pub async fn close(self) -> Result<(), Error> {
        match self.0 {
            StreamImp::Smol(s) => s.close().await,
            #[cfg(target_os = "linux")]
            StreamImp::Host(s) => s.close().await,
        }
    }

    /// Drops the connection at once (sends RST).
    pub fn abort(&self) {
        each!(self, s => s.abort())
    }
}

impl embedded_io_async::ErrorType for TcpStream {
    type Error = Error;
}

impl embedded_io_async::Read for TcpStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        TcpStream::read(self, buf).await
    }
}

impl embedded_io_async::Write for TcpStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        TcpStream::write(self, buf).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        TcpStream::flush(self).await
    }
}

/// A UDP socket bound to a local port.
pub struct UdpSocket(UdpImp);

enum UdpImp {
    Smol(SmolUdp),
    #[cfg(target_os = "linux")]
    Host(HostUdp),
}

impl UdpSocket {
    /// Binds `port` (0 picks an ephemeral port).
    pub fn bind(stack: &Stack, port: u16) -> Result<Self, Error> {
        Ok(Self(match &stack.0 {
            StackImp::Smol(s) => UdpImp::Smol(SmolUdp::bind(s, port)?),
            #[cfg(target_os = "linux")]
            StackImp::Host(h) => UdpImp::Host(HostUdp::bind(h, port)?),
        }))
    }

    /// The local port.
    pub fn local_port(&self) -> u16 {
        match &self.0 {
            UdpImp::Smol(u) => u.local_port(),
            #[cfg(target_os = "linux")]
            UdpImp::Host(u) => u.local_port(),
        }
    }

    /// Sends `buf` to `remote` (waits while the send buffer is full).
    pub async fn send_to(&self, buf: &[u8], remote: impl Into<IpEndpoint>) -> Result<(), Error> {
        let remote = remote.into();
        match &self.0 {
            UdpImp::Smol(u) => u.send_to(buf, remote).await,
            #[cfg(target_os = "linux")]
            UdpImp::Host(u) => u.send_to(buf, remote).await,
        }
    }

    /// Receives one datagram into `buf`; returns its length and sender. A
    /// datagram longer than `buf` is dropped with [`Error::InvalidInput`].
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, IpEndpoint), Error> {
        match &self.0 {
            UdpImp::Smol(u) => u.recv_from(buf).await,
            #[cfg(target_os = "linux")]
            UdpImp::Host(u) => u.recv_from(buf).await,
        }
    }
}

impl morgana::Device for Stack {
    const NEEDS: &'static [morgana::abi::mft::DeviceKind] = &[morgana::abi::mft::DeviceKind::Net];
    /// The stack segments and checksums through virtio-net headers when
    /// the tender grants them (`crate::offload`).
    const NET_OFFLOAD: bool = true;

    async fn connect(names: &'static [&'static str]) -> Result<Self, morgana::DeviceError> {
        let config = Config::from_args(morgana::args())
            .and_then(|c| c.limits.check(morgana::mem_stats().heap_size).map(|()| c))
            .map_err(|e| morgana::DeviceError::new(names[0], e))?;
        #[cfg(target_os = "linux")]
        if morgana::net::host::is_attached(names[0]) {
            let dev = morgana::net::host::HostSockets::acquire(names[0])?;
            return Host::new(dev, config)
                .map(|h| Self(StackImp::Host(h)))
                .map_err(|e| morgana::DeviceError::new(names[0], e));
        }
        let net = Net::acquire(names[0])?;
        Stack::new(net, config).map_err(|e| morgana::DeviceError::new(names[0], e))
    }
}
