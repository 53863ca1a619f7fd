//! The stack on the host's sockets (unix platform, `--net:NAME=socket`):
//! the same API served by the host kernel's TCP/IP stack, MirageOS's
//! socket stack. Every socket is non-blocking and registered with the
//! scheduler's epoll set; an operation that would block suspends its task
//! until epoll reports the socket ready, so the scheduling contract is the
//! smoltcp stack's.
//!
//! The command line keeps its meaning where the host allows it:
//! `--ipv4=ADDR/N` and `--ipv6=ADDR/N` are the addresses listeners and UDP
//! sockets bind to (default: every address, dual-stack); `--dns-server` the
//! servers `dns_lookup` asks (default: `/etc/resolv.conf`'s);
//! `--max-sockets`, `--backlog` (the `listen` backlog), `--tcp-buffer` and
//! `--udp-buffer` (`SO_SNDBUF`/`SO_RCVBUF`, left to the kernel's autotuning
//! unless given), `--tcp-handshake-timeout` (connect) and
//! `--tcp-idle-timeout` (a read that waits this long resets the
//! connection). The gateways are the host's routes: `--ipv4-gateway` and
//! `--ipv6-gateway` are refused.

extern crate std;

use crate::Error;
use crate::config::{Config, Limits};
use crate::stack::StackStats;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use core::future::poll_fn;
use core::task::{Context, Poll};
use morgana::net::host::HostSockets;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr, Ipv6Address};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, RawFd};

/// The stack's state in socket mode.
pub(crate) struct Host {
    dev: HostSockets,
    config: Config,
    dns_servers: Vec<IpAddress>,
    sockets: Cell<usize>,
    stats: Cell<StackStats>,
}

fn to_std(ip: IpAddress) -> IpAddr {
    match ip {
        IpAddress::Ipv4(a) => IpAddr::V4(Ipv4Addr::from(a.octets())),
        IpAddress::Ipv6(a) => IpAddr::V6(Ipv6Addr::from(a.octets())),
    }
}

fn from_std(addr: SocketAddr) -> IpEndpoint {
    let ip = match addr.ip().to_canonical() {
        IpAddr::V4(a) => IpAddress::Ipv4(Ipv4Address::from_octets(a.octets())),
        IpAddr::V6(a) => IpAddress::Ipv6(Ipv6Address::from_octets(a.octets())),
    };
    IpEndpoint::new(ip, addr.port())
}

fn map_err(e: &io::Error) -> Error {
    match e.kind() {
        ErrorKind::ConnectionRefused => Error::ConnectionRefused,
        ErrorKind::AddrInUse => Error::AddrInUse,
        ErrorKind::TimedOut => Error::TimedOut,
        ErrorKind::PermissionDenied => Error::PermissionDenied,
        ErrorKind::AddrNotAvailable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::HostUnreachable => Error::Unreachable,
        ErrorKind::InvalidInput => Error::InvalidInput,
        // EMFILE, ENFILE: out of descriptors.
        _ if matches!(e.raw_os_error(), Some(23 | 24)) => Error::TooManySockets,
        _ => Error::ConnectionReset,
    }
}

/// The nameservers of `/etc/resolv.conf`.
fn resolv_conf() -> Vec<IpAddress> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<IpAddress>().ok())
        .take(4)
        .collect()
}

impl Host {
    /// Starts the stack on the host sockets of `dev`.
    pub(crate) fn new(dev: HostSockets, config: Config) -> Result<Rc<Self>, alloc::string::String> {
        if config.ipv4_gateway.is_some() || config.ipv6_gateway.is_some() {
            return Err(String::from(
                "--ipv4-gateway and --ipv6-gateway do not apply to host sockets \
                 (--net:NAME=socket): the host's routes are used",
            ));
        }
        let dns_servers = if config.dns_servers.is_empty() {
            resolv_conf()
        } else {
            config.dns_servers.clone()
        };
        log::info!(
            "host sockets on {}",
            match (config.ipv4, config.ipv6) {
                (None, None) => String::from("every address"),
                (a, b) => alloc::format!(
                    "{}{}",
                    a.map_or(String::new(), |a| alloc::format!("{} ", a.address())),
                    b.map_or(String::new(), |b| alloc::format!("{}", b.address()))
                ),
            }
        );
        let host = Rc::new(Self {
            dev,
            config,
            dns_servers,
            sockets: Cell::new(0),
            stats: Cell::new(StackStats::default()),
        });
        if let Some(every) = host.config.stats_interval {
            let h = host.clone();
            drop(morgana::spawn(async move {
                loop {
                    let m = morgana::mem_stats();
                    log::info!(
                        "stats: allocated={} sockets={} frames=0 syns_dropped=0 handshakes_timed_out={}",
                        m.allocated,
                        h.sockets.get(),
                        h.stats.get().handshakes_timed_out
                    );
                    morgana::sleep(every).await;
                }
            }));
        }
        Ok(host)
    }

    fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// A new non-blocking socket, counted against `--max-sockets`.
    fn socket(self: &Rc<Self>, domain: Domain, ty: Type) -> Result<Socket, Error> {
        if self.sockets.get() >= self.limits().max_sockets {
            return Err(Error::TooManySockets);
        }
        let proto = if ty == Type::STREAM {
            Protocol::TCP
        } else {
            Protocol::UDP
        };
        let s = Socket::new(domain, ty.nonblocking().cloexec(), Some(proto))
            .map_err(|e| map_err(&e))?;
        if domain == Domain::IPV6 {
            // Dual-stack: IPv4 peers appear as mapped addresses.
            s.set_only_v6(false).map_err(|e| map_err(&e))?;
        }
        let defaults = Limits::default();
        if ty == Type::STREAM && self.limits().tcp_buffer != defaults.tcp_buffer {
            let _ = s.set_recv_buffer_size(self.limits().tcp_buffer);
            let _ = s.set_send_buffer_size(self.limits().tcp_buffer);
        }
        if ty == Type::DGRAM && self.limits().udp_buffer != defaults.udp_buffer {
            let _ = s.set_recv_buffer_size(self.limits().udp_buffer);
            let _ = s.set_send_buffer_size(self.limits().udp_buffer);
        }
        Ok(s)
    }

    /// Registers `s` with the scheduler and wraps it.
    fn own<S: AsFd>(self: &Rc<Self>, s: S) -> Result<Owned<S>, Error> {
        self.dev.register(s.as_fd()).map_err(|e| map_err(&e))?;
        self.sockets.set(self.sockets.get() + 1);
        Ok(Owned {
            fd: s.as_fd().as_raw_fd(),
            sock: s,
            host: self.clone(),
        })
    }

    /// The local address to bind for a socket (`--ipv4`/`--ipv6`, or every
    /// address).
    fn bind_addr(&self, port: u16) -> SocketAddr {
        match (self.config.ipv4, self.config.ipv6) {
            (Some(a), _) => SocketAddr::new(to_std(IpAddress::Ipv4(a.address())), port),
            (None, Some(b)) => SocketAddr::new(to_std(IpAddress::Ipv6(b.address())), port),
            (None, None) => SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)),
        }
    }

    fn bound(self: &Rc<Self>, ty: Type, port: u16) -> Result<Socket, Error> {
        let addr = self.bind_addr(port);
        let s = self.socket(Domain::for_address(addr), ty)?;
        if ty == Type::STREAM {
            let _ = s.set_reuse_address(true);
        }
        s.bind(&SockAddr::from(addr)).map_err(|e| map_err(&e))?;
        Ok(s)
    }

    /// The configured addresses (the bind addresses, if given).
    pub(crate) fn addrs(&self) -> Vec<IpCidr> {
        let mut v = Vec::new();
        if let Some(a) = self.config.ipv4 {
            v.push(IpCidr::Ipv4(a));
        }
        if let Some(b) = self.config.ipv6 {
            v.push(IpCidr::Ipv6(b));
        }
        v
    }

    /// The IPv4 address: `--ipv4`, or the loopback address.
    pub(crate) fn ipv4(&self) -> Ipv4Cidr {
        self.config
            .ipv4
            .unwrap_or(Ipv4Cidr::new(Ipv4Address::new(127, 0, 0, 1), 8))
    }

    /// The counters.
    pub(crate) fn stats(&self) -> StackStats {
        let mut s = self.stats.get();
        s.sockets = self.sockets.get();
        s
    }
}

/// A socket registered with the scheduler: deregistered, then closed,
/// when dropped.
struct Owned<S: AsFd> {
    sock: S,
    fd: RawFd,
    host: Rc<Host>,
}

impl<S: AsFd> Drop for Owned<S> {
    fn drop(&mut self) {
        self.host.dev.deregister(self.fd);
        self.host.sockets.set(self.host.sockets.get() - 1);
    }
}

impl<S: AsFd> Owned<S> {
    /// Runs `op`; if it would block, waits for the socket to be ready for
    /// it (`write`: writable) and tries again.
    async fn io<R>(&self, write: bool, mut op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        let mut yielded = false;
        poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            self.poll_io(cx, write, &mut op)
        })
        .await
    }

    fn poll_io<R>(
        &self,
        cx: &Context<'_>,
        write: bool,
        op: &mut impl FnMut(&S) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            match op(&self.sock) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.host.dev.wait(self.fd, write, cx);
                    return Poll::Pending;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

/// A listening TCP socket on the host.
pub(crate) struct HostListener {
    sock: Owned<std::net::TcpListener>,
    port: u16,
}

impl HostListener {
    pub(crate) fn bind(host: &Rc<Host>, port: u16) -> Result<Self, Error> {
        if port == 0 {
            return Err(Error::InvalidInput);
        }
        let s = host.bound(Type::STREAM, port)?;
        let backlog = i32::try_from(host.limits().backlog).unwrap_or(i32::MAX);
        s.listen(backlog).map_err(|e| map_err(&e))?;
        Ok(Self {
            sock: host.own(std::net::TcpListener::from(s))?,
            port,
        })
    }

    pub(crate) fn local_port(&self) -> u16 {
        self.port
    }

    pub(crate) async fn accept(&self) -> Result<(HostStream, IpEndpoint), Error> {
        loop {
            let (s, peer) = self
                .sock
                .io(false, |l| l.accept())
                .await
                .map_err(|e| map_err(&e))?;
            let host = &self.sock.host;
            if host.sockets.get() >= host.limits().max_sockets {
                // Over the limit: the connection is closed at once.
                log::warn!("too many sockets: connection from {peer} closed");
                continue;
            }
            s.set_nonblocking(true).map_err(|e| map_err(&e))?;
            let _ = s.set_nodelay(true);
            return Ok((HostStream::new(host.own(s)?), from_std(peer)));
        }
    }
}

/// A TCP connection through the host.
pub(crate) struct HostStream {
    sock: Owned<std::net::TcpStream>,
}

impl HostStream {
    fn new(sock: Owned<std::net::TcpStream>) -> Self {
        Self { sock }
    }

    pub(crate) async fn connect(host: &Rc<Host>, remote: IpEndpoint) -> Result<Self, Error> {
        let addr = SocketAddr::new(to_std(remote.addr), remote.port);
        let s = host.socket(Domain::for_address(addr), Type::STREAM)?;
        let _ = s.set_tcp_nodelay(true);
        let r = s.connect(&SockAddr::from(addr));
        let in_progress = match &r {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(115) || e.kind() == ErrorKind::WouldBlock => true,
            Err(e) => return Err(map_err(e)),
        };
        let stream = Self::new(host.own(std::net::TcpStream::from(s))?);
        if in_progress {
            // Writable once the handshake has ended, either way.
            let wait = stream.sock.io(true, |s| match s.take_error() {
                Ok(Some(e)) => Err(e),
                Err(e) => Err(e),
                Ok(None) => match s.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::NotConnected => {
                        Err(io::Error::from(ErrorKind::WouldBlock))
                    }
                    Err(e) => Err(e),
                },
            });
            match morgana::timeout(host.limits().handshake_timeout, wait).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(map_err(&e)),
                Err(_) => {
                    let mut st = host.stats.get();
                    st.handshakes_timed_out += 1;
                    host.stats.set(st);
                    return Err(Error::TimedOut);
                }
            }
        }
        Ok(stream)
    }

    pub(crate) fn peer_addr(&self) -> Option<IpEndpoint> {
        self.sock.sock.peer_addr().ok().map(from_std)
    }

    pub(crate) fn local_addr(&self) -> Option<IpEndpoint> {
        self.sock.sock.local_addr().ok().map(from_std)
    }

    pub(crate) async fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let idle = self.sock.host.limits().idle_timeout;
        let read = self.sock.io(false, |mut s| s.read(buf));
        match morgana::timeout(idle, read).await {
            Ok(r) => r.map_err(|e| map_err(&e)),
            Err(_) => {
                // Idle for --tcp-idle-timeout: reset, as the smoltcp stack does.
                self.abort();
                Err(Error::ConnectionReset)
            }
        }
    }

    pub(crate) async fn write(&self, buf: &[u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.sock
            .io(true, |mut s| s.write(buf))
            .await
            .map_err(|e| map_err(&e))
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.sock.sock.shutdown(Shutdown::Write);
    }

    /// Closes the sending half and waits for the peer to close its half
    /// (data it still sends is discarded).
    pub(crate) async fn close(&self) -> Result<(), Error> {
        self.shutdown();
        let mut scratch = vec![0u8; 4096];
        loop {
            match self.read(&mut scratch).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(Error::ConnectionReset) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Resets the connection: a zero linger time makes the close send RST.
    pub(crate) fn abort(&self) {
        let s = socket2::SockRef::from(&self.sock.sock);
        let _ = s.set_linger(Some(core::time::Duration::ZERO));
        let _ = self.sock.sock.shutdown(Shutdown::Both);
    }
}

/// A UDP socket on the host.
pub(crate) struct HostUdp {
    sock: Owned<std::net::UdpSocket>,
    port: u16,
    /// Receives whole datagrams, so that one longer than the caller's
    /// buffer is recognised (and dropped, as the smoltcp stack does).
    scratch: Cell<Vec<u8>>,
    v6: bool,
}

impl HostUdp {
    pub(crate) fn bind(host: &Rc<Host>, port: u16) -> Result<Self, Error> {
        let s = host.bound(Type::DGRAM, port)?;
        let local = s
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or(Error::InvalidInput)?;
        Ok(Self {
            sock: host.own(std::net::UdpSocket::from(s))?,
            port: local.port(),
            scratch: Cell::new(vec![0u8; 65_536]),
            v6: local.is_ipv6(),
        })
    }

    pub(crate) fn local_port(&self) -> u16 {
        self.port
    }

    pub(crate) async fn send_to(&self, buf: &[u8], remote: IpEndpoint) -> Result<(), Error> {
        let mut ip = to_std(remote.addr);
        if let (true, IpAddr::V4(a)) = (self.v6, ip) {
            ip = IpAddr::V6(a.to_ipv6_mapped());
        }
        let addr = SocketAddr::new(ip, remote.port);
        self.sock
            .io(true, |s| s.send_to(buf, addr))
            .await
            .map(|_| ())
            .map_err(|e| map_err(&e))
    }

    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, IpEndpoint), Error> {
        // Taken while in use (a second receiving task gets a buffer of its own).
        let mut scratch = self.scratch.take();
        if scratch.is_empty() {
            scratch = vec![0u8; 65_536];
        }
        let r = self.sock.io(false, |s| s.recv_from(&mut scratch)).await;
        let r = match r {
            Ok((n, _)) if n > buf.len() => Err(Error::InvalidInput),
            Ok((n, peer)) => {
                buf[..n].copy_from_slice(&scratch[..n]);
                Ok((n, from_std(peer)))
            }
            Err(e) => Err(map_err(&e)),
        };
        self.scratch.set(scratch);
        r
    }
}

/// Resolves `name` (A records) through the configured servers over UDP:
/// up to 3 attempts per server, 2 s each.
pub(crate) async fn dns_lookup(host: &Rc<Host>, name: &str) -> Result<Vec<IpAddress>, Error> {
    use smoltcp::wire::{
        DnsFlags, DnsOpcode, DnsPacket, DnsQueryType, DnsQuestion, DnsRcode, DnsRecord,
        DnsRecordData, DnsRepr,
    };
    if host.dns_servers.is_empty() {
        return Err(Error::NoDnsServer);
    }
    let mut qname = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(Error::InvalidInput);
        }
        qname.push(label.len() as u8);
        qname.extend_from_slice(label.as_bytes());
    }
    qname.push(0);
    if qname.len() > 255 {
        return Err(Error::InvalidInput);
    }
    let mut id = [0u8; 2];
    morgana::random::fill_bytes(&mut id);
    let id = u16::from_le_bytes(id);
    let repr = DnsRepr {
        transaction_id: id,
        opcode: DnsOpcode::Query,
        flags: DnsFlags::RECURSION_DESIRED,
        question: DnsQuestion {
            name: &qname,
            type_: DnsQueryType::A,
        },
    };
    let mut query = vec![0u8; repr.buffer_len()];
    repr.emit(&mut DnsPacket::new_unchecked(&mut query[..]));
    let udp = HostUdp::bind(host, 0)?;
    let mut reply = vec![0u8; 1500];
    for &server in &host.dns_servers {
        for _ in 0..3 {
            udp.send_to(&query, IpEndpoint::new(server, 53)).await?;
            let got = morgana::timeout(core::time::Duration::from_secs(2), async {
                loop {
                    let (n, from) = udp.recv_from(&mut reply).await?;
                    if from.addr == server && from.port == 53 {
                        return Ok::<usize, Error>(n);
                    }
                }
            })
            .await;
            let n = match got {
                Ok(Ok(n)) => n,
                Ok(Err(Error::InvalidInput)) | Err(_) => continue,
                Ok(Err(e)) => return Err(e),
            };
            let Ok(p) = DnsPacket::new_checked(&reply[..n]) else {
                continue;
            };
            if p.transaction_id() != id || !p.flags().contains(DnsFlags::RESPONSE) {
                continue;
            }
            if p.rcode() != DnsRcode::NoError {
                return Err(Error::DnsFailed);
            }
            let mut rest = p.payload();
            for _ in 0..p.question_count() {
                match DnsQuestion::parse(rest) {
                    Ok((r, _)) => rest = r,
                    Err(_) => return Err(Error::DnsFailed),
                }
            }
            let mut addrs = Vec::new();
            for _ in 0..p.answer_record_count() {
                match DnsRecord::parse(rest) {
                    Ok((r, rec)) => {
                        rest = r;
                        if let DnsRecordData::A(a) = rec.data {
                            addrs.push(IpAddress::Ipv4(a));
                        }
                    }
                    Err(_) => break,
                }
            }
            return if addrs.is_empty() {
                Err(Error::DnsFailed)
            } else {
                Ok(addrs)
            };
        }
    }
    Err(Error::DnsFailed)
}
