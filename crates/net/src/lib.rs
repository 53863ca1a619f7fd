//! A TCP/IP stack for Morgana unikernels: Ethernet, ARP, IPv4, ICMP echo
//! (answered automatically), UDP, TCP, a DHCPv4 client, a DNS client, and
//! IPv6 with SLAAC, from [smoltcp], over a [`morgana::Net`] device.
//!
//! The stack is a Morgana device: declare it as a parameter of `main` and
//! it is built from the net device of the same name, configured from the
//! unikernel's command line (see [`Config::from_args`]):
//!
//! ```no_run
//! # #![no_std]
//! # #![no_main]
//! #[morgana::main]
//! async fn main(service: morgana_net::Stack) -> Result<(), morgana_net::Error> {
//!     let listener = morgana_net::TcpListener::bind(&service, 7)?;
//!     loop {
//!         let (stream, _peer) = listener.accept().await?;
//!         morgana::spawn(async move {
//!             let mut buf = [0u8; 1024];
//!             while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!                 if stream.write_all(&buf[..n]).await.is_err() { break }
//!             }
//!         });
//!     }
//! }
//! ```
//!
//! A driver task runs the stack: it wakes on frames, on the stack's own
//! timers and on socket operations, never by busy polling, and processes at
//! most a batch of frames before letting other tasks run. Resources are
//! bounded ([`Limits`]): the number of sockets, each socket's buffers, and
//! the handshakes a listener keeps pending; half-open connections time out
//! and a closed connection's memory is freed.
//!
//! # Host sockets (unix)
//!
//! On the unix platform, `--net:NAME=socket` serves the same API with the
//! host kernel's sockets instead of smoltcp over a tap (MirageOS's socket
//! stack): the unikernel runs as an ordinary, unprivileged process with no
//! tap. Sockets are non-blocking and the scheduler waits for them with
//! epoll, so reads suspend as on a tap. The stack's options keep their
//! meaning where the host allows: `--ipv4`/`--ipv6` are the addresses to
//! bind (default: every address, dual-stack), `--dns-server` the DNS servers
//! (default: `/etc/resolv.conf`'s), `--max-sockets`, `--backlog`
//! (`listen`'s), `--tcp-buffer`/`--udp-buffer` (socket buffer sizes, the
//! kernel's autotuning unless given), the handshake timeout (connect) and
//! the idle timeout (a read waiting that long resets the connection). The
//! gateways are the host's routes: `--ipv4-gateway`/`--ipv6-gateway` are
//! refused at boot.

#![no_std]

extern crate alloc;

mod api;
mod config;
mod device;
mod dns;
#[cfg(target_os = "linux")]
mod host;
mod offload;
mod stack;
mod tcp;
mod udp;

pub use api::{Stack, TcpListener, TcpStream, UdpSocket};
pub use config::{Config, Limits};
pub use smoltcp::wire::{
    IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr,
};
pub use stack::StackStats;

/// A network error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The peer reset the connection, or it is closed.
    ConnectionReset,
    /// The connection could not be established.
    ConnectionRefused,
    /// No answer within the handshake timeout.
    TimedOut,
    /// Too many DNS queries in flight.
    TooManyQueries,
    /// No route or no source address for the destination.
    Unreachable,
    /// The port is already in use.
    AddrInUse,
    /// The socket limit is reached.
    TooManySockets,
    /// An invalid argument.
    InvalidInput,
    /// No DNS server is configured.
    NoDnsServer,
    /// The name could not be resolved.
    DnsFailed,
    /// The host refused (host sockets: a port below 1024 without the
    /// privilege to bind it, say).
    PermissionDenied,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::ConnectionReset => "connection reset",
            Self::ConnectionRefused => "connection refused",
            Self::TimedOut => "timed out",
            Self::TooManyQueries => "too many DNS queries in flight",
            Self::Unreachable => "destination unreachable",
            Self::AddrInUse => "address in use",
            Self::TooManySockets => "too many sockets",
            Self::InvalidInput => "invalid input",
            Self::NoDnsServer => "no DNS server configured",
            Self::DnsFailed => "DNS lookup failed",
            Self::PermissionDenied => {
                "permission denied by the host (ports below 1024 need privilege, see \
                 net.ipv4.ip_unprivileged_port_start)"
            }
        })
    }
}

impl core::error::Error for Error {}

impl embedded_io_async::Error for Error {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        use embedded_io_async::ErrorKind as K;
        match self {
            Self::ConnectionReset => K::ConnectionReset,
            Self::ConnectionRefused => K::ConnectionRefused,
            Self::TimedOut => K::TimedOut,
            Self::TooManyQueries => K::OutOfMemory,
            Self::Unreachable => K::NotConnected,
            Self::AddrInUse => K::AddrInUse,
            Self::TooManySockets => K::OutOfMemory,
            Self::InvalidInput => K::InvalidInput,
            Self::NoDnsServer | Self::DnsFailed => K::Other,
            Self::PermissionDenied => K::PermissionDenied,
        }
    }
}
