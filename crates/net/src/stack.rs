//! The stack: smoltcp's interface and sockets over a `Net` device, and the
//! driver task that runs them.
//!
//! The driver is an ordinary Morgana task. Each time it runs it processes
//! at most [`BATCH`] received frames (so a flood cannot monopolise the
//! CPU), sends what the sockets have queued, and does the housekeeping
//! (DHCP, recycling half-open and closed sockets). Then it waits for the
//! first of: a frame on the device, the stack's next timer (retransmission,
//! delayed ACK, DHCP renewal...), or a socket operation by the program.
//! It never busy-polls.

use crate::Error;
use crate::config::{Config, Limits};
use crate::device::Device;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use morgana::Net;
use smoltcp::iface::{Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, dns, tcp};
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Cidr, Ipv6Address, Ipv6Cidr,
};

/// Frames the driver processes before letting other tasks run.
pub const BATCH: usize = 32;

/// Counters of the stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Sockets alive (TCP, UDP, listening, internal).
    pub sockets: usize,
    /// Times the driver ran.
    pub driver_runs: u64,
    /// Frames processed.
    pub frames_in: u64,
    /// Half-open connections dropped after the handshake timeout.
    pub handshakes_timed_out: u64,
    /// Frames the device refused.
    pub device_errors: u64,
    /// SYNs dropped because a listener's backlog was full.
    pub syns_dropped: u64,
}

pub(crate) struct Listener {
    /// Its listening sockets, and connections waiting for `accept`.
    pub(crate) pool: Vec<SocketHandle>,
    /// Tasks waiting in `accept`.
    pub(crate) waiters: Vec<Waker>,
}

/// How long a closed connection whose owner is gone may linger (a peer
/// that keeps a zero window open forever, say) before it is reset.
const RETIRE_DEADLINE: Duration = Duration::from_secs(60);

pub(crate) struct Inner {
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) dev: Device,
    pub(crate) limits: Limits,
    pub(crate) dns: Option<SocketHandle>,
    pub(crate) dns_servers: Vec<IpAddress>,
    pub(crate) listeners: BTreeMap<u16, Listener>,
    pub(crate) stats: StackStats,
    dhcp: Option<SocketHandle>,
    static_dns: Vec<IpAddress>,
    driver: Option<Waker>,
    v4_waiters: Vec<Waker>,
    next_port: u16,
    /// Connections whose owner is gone, with when it went.
    closing: Vec<(SocketHandle, SInstant)>,
    /// Bound UDP ports.
    pub(crate) udp_ports: Vec<u16>,
}

pub(crate) fn now() -> SInstant {
    SInstant::from_micros((morgana::Instant::now().as_nanos() / 1_000) as i64)
}

impl Inner {
    /// Wakes the driver: the program changed a socket's state.
    pub(crate) fn notify(&mut self) {
        if let Some(w) = self.driver.take() {
            w.wake();
        }
    }

    /// Adds a socket, within the limit.
    pub(crate) fn add<S: smoltcp::socket::AnySocket<'static>>(
        &mut self,
        s: S,
    ) -> Result<SocketHandle, Error> {
        if self.stats.sockets >= self.limits.max_sockets {
            return Err(Error::TooManySockets);
        }
        self.stats.sockets += 1;
        Ok(self.sockets.add(s))
    }

    /// Removes a socket and frees its buffers.
    pub(crate) fn remove(&mut self, h: SocketHandle) {
        self.sockets.remove(h);
        self.stats.sockets -= 1;
    }

    /// A new TCP socket with the configured buffers.
    pub(crate) fn tcp_socket(&self) -> tcp::Socket<'static> {
        let n = self.limits.tcp_buffer;
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; n]),
            tcp::SocketBuffer::new(vec![0; n]),
        );
        s.set_nagle_enabled(false);
        s
    }

    /// A new listening socket on `port`.
    pub(crate) fn listen_socket(&mut self, port: u16) -> Result<SocketHandle, Error> {
        let mut s = self.tcp_socket();
        s.set_timeout(Some(smoltcp::time::Duration::from_micros(
            self.limits.handshake_timeout.as_micros() as u64,
        )));
        s.listen(port).map_err(|_| Error::InvalidInput)?;
        self.add(s)
    }

    /// A free ephemeral port.
    pub(crate) fn ephemeral_port(&mut self) -> u16 {
        loop {
            self.next_port = if self.next_port >= 65_000 {
                49_152
            } else {
                self.next_port + 1
            };
            let p = self.next_port;
            if !self.listeners.contains_key(&p) && !self.udp_ports.contains(&p) {
                return p;
            }
        }
    }

    /// Hands a socket whose owner is gone to the driver, which closes it
    /// gracefully and frees it once closed.
    pub(crate) fn retire(&mut self, h: SocketHandle) {
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        s.close();
        s.set_timeout(Some(smoltcp::time::Duration::from_micros(
            self.limits.handshake_timeout.as_micros() as u64,
        )));
        self.closing.push((h, now()));
        self.notify();
    }

    pub(crate) fn wait_v4(&mut self, cx: &Context<'_>) {
        if !self.v4_waiters.iter().any(|w| w.will_wake(cx.waker())) {
            self.v4_waiters.push(cx.waker().clone());
        }
    }

    /// Processes up to BATCH frames, sends, does housekeeping. Returns the
    /// stack's next deadline, and whether frames are left to process.
    fn run(&mut self) -> (Option<Duration>, bool) {
        let now = now();
        self.stats.driver_runs += 1;
        self.iface.poll_maintenance(now);
        let mut frames = 0;
        while frames < BATCH {
            match self
                .iface
                .poll_ingress_single(now, &mut self.dev, &mut self.sockets)
            {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => frames += 1,
                PollIngressSingleResult::SocketStateChanged => {
                    frames += 1;
                    // A listening socket may have taken a SYN: the next
                    // SYN of this batch must see the backlog as it is now.
                    self.update_full_ports();
                }
            }
        }
        self.stats.frames_in += frames as u64;
        while self
            .iface
            .poll_egress(now, &mut self.dev, &mut self.sockets)
            != PollResult::None
        {}
        self.dhcp_events();
        self.housekeeping();
        self.stats.device_errors = self.dev.errors;
        self.stats.syns_dropped = self.dev.syns_dropped;
        let delay = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()));
        (delay, frames >= BATCH)
    }

    fn housekeeping(&mut self) {
        // Listening sockets that timed out in SYN-RECEIVED (a handshake that
        // never completed, e.g. a SYN flood) listen again.
        // Connections established and waiting for accept() get the idle
        // timeout instead of the handshake one.
        let mut relisten = Vec::new();
        let idle =
            smoltcp::time::Duration::from_micros(self.limits.idle_timeout.as_micros() as u64);
        for (&port, l) in &self.listeners {
            for &h in &l.pool {
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                match s.state() {
                    tcp::State::Closed => relisten.push((port, h)),
                    tcp::State::Established | tcp::State::CloseWait => s.set_timeout(Some(idle)),
                    _ => {}
                }
            }
        }
        let handshake =
            smoltcp::time::Duration::from_micros(self.limits.handshake_timeout.as_micros() as u64);
        for (port, h) in relisten {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            s.set_timeout(Some(handshake));
            let _ = s.listen(port);
            self.stats.handshakes_timed_out += 1;
        }
        // Pools that lost sockets (a replacement could not be made when a
        // connection was accepted: too many sockets) grow back.
        let backlog = self.limits.backlog;
        let ports: Vec<u16> = self
            .listeners
            .iter()
            .filter(|(_, l)| l.pool.len() < backlog)
            .map(|(&p, _)| p)
            .collect();
        for port in ports {
            while self.listeners[&port].pool.len() < backlog {
                let Ok(h) = self.listen_socket(port) else {
                    break;
                };
                self.listeners.get_mut(&port).expect("listed").pool.push(h);
            }
        }
        self.update_full_ports();
        self.wake_acceptors();
        // Connections whose owner is gone are freed once closed, or reset
        // once they have lingered too long.
        let deadline = smoltcp::time::Duration::from_micros(RETIRE_DEADLINE.as_micros() as u64);
        let now = now();
        let sockets = &mut self.sockets;
        let mut freed = 0;
        self.closing.retain(|&(h, since)| {
            let s = sockets.get_mut::<tcp::Socket>(h);
            if now - since > deadline {
                s.abort();
            }
            if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
                sockets.remove(h);
                freed += 1;
                false
            } else {
                true
            }
        });
        self.stats.sockets -= freed;
    }

    /// Wakes the tasks in `accept` on listeners with a connection ready.
    fn wake_acceptors(&mut self) {
        for l in self.listeners.values_mut() {
            if l.waiters.is_empty() {
                continue;
            }
            let ready = l.pool.iter().any(|&h| {
                matches!(
                    self.sockets.get::<tcp::Socket>(h).state(),
                    tcp::State::Established | tcp::State::CloseWait
                )
            });
            if ready {
                for w in l.waiters.drain(..) {
                    w.wake();
                }
            }
        }
    }

    /// Records which listening ports have no socket left in LISTEN.
    pub(crate) fn update_full_ports(&mut self) {
        let sockets = &self.sockets;
        let full = &mut self.dev.full_ports;
        full.clear();
        for (&port, l) in &self.listeners {
            if !l
                .pool
                .iter()
                .any(|&h| sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen)
            {
                full.push(port);
            }
        }
    }

    fn dhcp_events(&mut self) {
        let Some(h) = self.dhcp else { return };
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(cfg)) => Some((
                cfg.address,
                cfg.router,
                cfg.dns_servers
                    .iter()
                    .map(|a| IpAddress::Ipv4(*a))
                    .collect::<Vec<_>>(),
            )),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        match event {
            Some((addr, router, dns)) => {
                self.set_ipv4(Some(addr));
                if let Some(r) = router {
                    self.dev.arp_request(addr.address(), r);
                }

                if let Some(r) = router {
                    let _ = self.iface.routes_mut().add_default_ipv4_route(r);
                } else {
                    self.iface.routes_mut().remove_default_ipv4_route();
                }
                let mut servers = self.static_dns.clone();
                servers.extend(dns);
                self.set_dns_servers(servers);
                log::info!(
                    "DHCP lease {addr}, gateway {}",
                    router.map_or(alloc::string::String::from("none"), |r| alloc::format!(
                        "{r}"
                    ))
                );
                for w in self.v4_waiters.drain(..) {
                    w.wake();
                }
            }
            None => {
                log::info!("DHCP lease lost");
                self.set_ipv4(None);
                self.iface.routes_mut().remove_default_ipv4_route();
                let servers = self.static_dns.clone();
                self.set_dns_servers(servers);
            }
        }
    }

    fn set_ipv4(&mut self, cidr: Option<Ipv4Cidr>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_)));
            if let Some(c) = cidr {
                let _ = addrs.push(IpCidr::Ipv4(c));
            }
        });
    }

    fn set_dns_servers(&mut self, servers: Vec<IpAddress>) {
        if let Some(h) = self.dns {
            self.sockets
                .get_mut::<dns::Socket>(h)
                .update_servers(&servers);
        }
        self.dns_servers = servers;
    }

    /// The IPv4 address, if configured.
    pub(crate) fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.iface.ip_addrs().iter().find_map(|a| match a {
            IpCidr::Ipv4(c) => Some(*c),
            _ => None,
        })
    }
}

/// A TCP/IP stack over a network device. Cloning gives another handle to
/// the same stack.
#[derive(Clone)]
pub(crate) struct SmolStack {
    pub(crate) inner: Rc<RefCell<Inner>>,
}

impl core::fmt::Debug for SmolStack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SmolStack")
            .field("ipv4", &self.ipv4_addr())
            .finish()
    }
}

fn eui64_link_local(mac: [u8; 6]) -> Ipv6Address {
    Ipv6Address::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

impl SmolStack {
    /// Starts a stack on `net` with `config`, and its driver task.
    pub fn new(net: Net, config: Config) -> Result<Self, Error> {
        let mac = net.mac();
        let hw = EthernetAddress(mac);
        if !hw.is_unicast() {
            return Err(Error::InvalidInput);
        }
        let mut dev = Device::new(net);
        let mut ic = smoltcp::iface::Config::new(HardwareAddress::Ethernet(hw));
        let mut seed = [0u8; 8];
        morgana::random::fill_bytes(&mut seed);
        ic.random_seed = u64::from_le_bytes(seed);
        ic.slaac = config.ipv6.is_none();
        let mut iface = Interface::new(ic, &mut dev, now());
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv6(Ipv6Cidr::new(eui64_link_local(mac), 64)));
            if let Some(v4) = config.ipv4 {
                let _ = a.push(IpCidr::Ipv4(v4));
            }
            if let Some(v6) = config.ipv6 {
                let _ = a.push(IpCidr::Ipv6(v6));
            }
        });
        if let Some(gw) = config.ipv4_gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .map_err(|_| Error::InvalidInput)?;
        }
        if let Some(gw) = config.ipv6_gateway {
            iface
                .routes_mut()
                .add_default_ipv6_route(gw)
                .map_err(|_| Error::InvalidInput)?;
        }
        let mut inner = Inner {
            iface,
            // Sized once: the table never grows, whatever the load.
            sockets: SocketSet::new(Vec::with_capacity(config.limits.max_sockets)),
            dev,
            limits: config.limits,
            dns: None,
            dns_servers: config.dns_servers.clone(),
            listeners: BTreeMap::new(),
            stats: StackStats::default(),
            dhcp: None,
            static_dns: config.dns_servers.clone(),
            driver: None,
            v4_waiters: Vec::new(),
            next_port: 49_152 + (seed[0] as u16) * 64,
            closing: Vec::new(),
            udp_ports: Vec::new(),
        };
        match config.ipv4 {
            Some(a) => log::info!(
                "IPv4 {a}, gateway {}",
                config
                    .ipv4_gateway
                    .map_or(alloc::string::String::from("none"), |g| alloc::format!(
                        "{g}"
                    ))
            ),
            None => {
                inner.dhcp = Some(inner.add(dhcpv4::Socket::new())?);
                log::info!("IPv4 by DHCP");
            }
        }
        if let (Some(a), Some(gw)) = (config.ipv4, config.ipv4_gateway) {
            inner.dev.arp_request(a.address(), gw);
        }
        let stack = Self {
            inner: Rc::new(RefCell::new(inner)),
        };

        drop(morgana::spawn(Driver {
            inner: stack.inner.clone(),
            timer: None,
        }));
        if let Some(every) = config.stats_interval {
            let s = stack.clone();
            drop(morgana::spawn(async move {
                loop {
                    let (m, st) = (morgana::mem_stats(), s.stats());
                    log::info!(
                        "stats: allocated={} sockets={} frames={} syns_dropped={} handshakes_timed_out={}",
                        m.allocated,
                        st.sockets,
                        st.frames_in,
                        st.syns_dropped,
                        st.handshakes_timed_out
                    );
                    morgana::sleep(every).await;
                }
            }));
        }
        Ok(stack)
    }

    /// The MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.inner.borrow().dev.net.mac()
    }

    /// The IPv4 address and prefix, once configured.
    pub fn ipv4_addr(&self) -> Option<Ipv4Cidr> {
        self.inner.borrow().ipv4()
    }

    /// Every configured address (IPv4, IPv6 link-local, SLAAC or static).
    pub fn addrs(&self) -> Vec<IpCidr> {
        self.inner.borrow().iface.ip_addrs().to_vec()
    }

    /// Waits until the stack has an IPv4 address (DHCP) and returns it.
    pub async fn wait_ipv4(&self) -> Ipv4Cidr {
        let mut yielded = false;
        core::future::poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            let mut i = self.inner.borrow_mut();
            match i.ipv4() {
                Some(a) => Poll::Ready(a),
                None => {
                    i.wait_v4(cx);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The stack's counters.
    pub fn stats(&self) -> StackStats {
        self.inner.borrow().stats
    }

    /// The counters of the stack's network device (frames and bytes).
    pub fn net_stats(&self) -> morgana::NetStats {
        self.inner.borrow().dev.net.stats()
    }
}

/// The driver task (see the module docs).
struct Driver {
    inner: Rc<RefCell<Inner>>,
    timer: Option<morgana::Sleep>,
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            let (delay, more) = {
                let mut i = this.inner.borrow_mut();
                i.driver = Some(cx.waker().clone());
                let r = i.run();
                i.dev.net.register_waker(cx);
                r
            };
            if more {
                // Frames are left: give the other tasks a turn first.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let Some(d) = delay else {
                this.timer = None;
                return Poll::Pending;
            };
            if d.is_zero() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Keep an armed timer that fires no later than needed (waking
            // early is harmless: the driver just looks again).
            let deadline = morgana::Instant::now() + d;
            let t = match &mut this.timer {
                Some(t) if t.deadline() <= deadline => t,
                slot => slot.insert(morgana::sleep_until(deadline)),
            };
            match Pin::new(t).poll(cx) {
                Poll::Ready(()) => this.timer = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
