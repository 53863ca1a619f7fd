//! The stack's configuration, from the unikernel's command line (MirageOS
//! style): `--ipv4=10.0.0.2/24 --ipv4-gateway=10.0.0.1 --dns-server=10.0.0.1`,
//! `--ipv6=fd00::2/64 --ipv6-gateway=fd00::1`; DHCPv4 when no `--ipv4` is
//! given, SLAAC when no `--ipv6` is. Resource limits: `--max-sockets=N`,
//! `--tcp-buffer=BYTES`, `--backlog=N`, `--udp-buffer=BYTES`,
//! `--tcp-handshake-timeout=SECS`, `--tcp-idle-timeout=SECS`.
//! `--stats-interval=MS` logs the
//! stack's counters and the heap's size that often. Other arguments are
//! the program's.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;
use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr};

/// Bounds on what the stack may allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most sockets (TCP, UDP, listening) alive at once. The socket table
    /// is allocated for this many at start-up ([`Limits::table_bytes`]), so
    /// that load never grows it and its memory is known from the start.
    pub max_sockets: usize,
    /// Receive and transmit buffer of each TCP socket, in bytes.
    pub tcp_buffer: usize,
    /// Connections a listener may be establishing (SYN received) at once.
    pub backlog: usize,
    /// How long a half-open connection may wait for the handshake to end.
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is dropped.
    pub idle_timeout: Duration,
    /// Payload bytes buffered per UDP socket, each way.
    pub udp_buffer: usize,
    /// Datagrams buffered per UDP socket, each way.
    pub udp_datagrams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sockets: 1024,
            tcp_buffer: 16 * 1024,
            backlog: 64,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            udp_buffer: 64 * 1024,
            udp_datagrams: 64,
        }
    }
}

/// How the stack gets its addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Static IPv4 address; `None` means DHCPv4.
    pub ipv4: Option<Ipv4Cidr>,
    /// IPv4 default gateway (static configuration).
    pub ipv4_gateway: Option<Ipv4Address>,
    /// Static IPv6 address; `None` means SLAAC (plus the link-local address).
    pub ipv6: Option<Ipv6Cidr>,
    /// IPv6 default gateway (static configuration).
    pub ipv6_gateway: Option<Ipv6Address>,
    /// DNS servers (DHCP adds its own).
    pub dns_servers: Vec<IpAddress>,
    /// Resource limits.
    pub limits: Limits,
    /// Log the stack's and the heap's counters this often.
    pub stats_interval: Option<Duration>,
}

fn bad(opt: &str, value: &str, why: &str) -> String {
    format!("bad {opt} value '{value}': {why}")
}

fn unicast_v4(a: Ipv4Address) -> bool {
    !a.is_multicast() && !a.is_broadcast() && !a.is_unspecified()
}

fn num(opt: &str, v: &str, min: usize, max: usize) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| bad(opt, v, &format!("expected a number from {min} to {max}")))
}

impl Limits {
    /// Bytes a listener allocates up front (its backlog of sockets, each
    /// with a receive and a transmit buffer).
    pub fn listener_bytes(&self) -> u64 {
        self.backlog as u64 * 2 * self.tcp_buffer as u64
    }

    /// Bytes of the socket table (one slot per socket, allocated at start).
    pub fn table_bytes(&self) -> u64 {
        (self.max_sockets * core::mem::size_of::<smoltcp::iface::SocketStorage<'static>>()) as u64
    }

    /// Checks the limits against a heap of `heap` bytes (0: unknown, as on
    /// unix where the heap grows): a listener must fit in half of it and the
    /// socket table in a quarter.
    pub fn check(&self, heap: u64) -> Result<(), String> {
        if heap != 0 && self.table_bytes() > heap / 4 {
            return Err(format!(
                "--max-sockets={} needs {} bytes for the socket table, more than a quarter of \
                 the heap ({heap} bytes): lower it or give the unikernel more memory",
                self.max_sockets,
                self.table_bytes()
            ));
        }
        if heap != 0 && self.listener_bytes() > heap / 2 {
            return Err(format!(
                "--backlog={} with --tcp-buffer={} needs {} bytes per listener, more than half \
                 the heap ({heap} bytes): lower them or give the unikernel more memory",
                self.backlog,
                self.tcp_buffer,
                self.listener_bytes()
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Reads the configuration from command-line arguments; arguments that
    /// are not the stack's are ignored. A bad value is an error naming it.
    pub fn from_args<'a>(args: impl Iterator<Item = &'a str>) -> Result<Self, String> {
        let mut c = Self::default();
        for a in args {
            let Some((opt, v)) = a.split_once('=') else {
                continue;
            };
            match opt {
                "--ipv4" => {
                    let cidr: Ipv4Cidr = v
                        .parse()
                        .map_err(|_| bad(opt, v, "expected ADDRESS/PREFIX, e.g. 10.0.0.2/24"))?;
                    if cidr.prefix_len() == 0
                        || cidr.prefix_len() > 32
                        || !unicast_v4(cidr.address())
                    {
                        return Err(bad(
                            opt,
                            v,
                            "not a unicast address with a prefix of 1 to 32",
                        ));
                    }
                    c.ipv4 = Some(cidr);
                }
                "--ipv4-gateway" => {
                    c.ipv4_gateway = Some(
                        v.parse()
                            .map_err(|_| bad(opt, v, "expected an IPv4 address"))?,
                    );
                }
                "--ipv6" => {
                    let cidr: Ipv6Cidr = v
                        .parse()
                        .map_err(|_| bad(opt, v, "expected ADDRESS/PREFIX, e.g. fd00::2/64"))?;
                    if cidr.prefix_len() == 0
                        || cidr.prefix_len() > 128
                        || cidr.address().is_multicast()
                        || cidr.address().is_unspecified()
                    {
                        return Err(bad(
                            opt,
                            v,
                            "not a unicast address with a prefix of 1 to 128",
                        ));
                    }
                    c.ipv6 = Some(cidr);
                }
                "--ipv6-gateway" => {
                    c.ipv6_gateway = Some(
                        v.parse()
                            .map_err(|_| bad(opt, v, "expected an IPv6 address"))?,
                    );
                }
                "--dns-server" => {
                    let ip: IpAddress = v
                        .parse()
                        .map_err(|_| bad(opt, v, "expected an IP address"))?;
                    if c.dns_servers.len() >= 4 {
                        return Err(bad(opt, v, "at most 4 DNS servers"));
                    }
                    c.dns_servers.push(ip);
                }
                "--max-sockets" => c.limits.max_sockets = num(opt, v, 4, 65_536)?,
                "--tcp-buffer" => c.limits.tcp_buffer = num(opt, v, 1024, 16 << 20)?,
                "--backlog" => c.limits.backlog = num(opt, v, 1, 1024)?,
                "--udp-buffer" => c.limits.udp_buffer = num(opt, v, 1500, 16 << 20)?,
                "--tcp-handshake-timeout" => {
                    c.limits.handshake_timeout = Duration::from_secs(num(opt, v, 1, 3600)? as u64)
                }
                "--tcp-idle-timeout" => {
                    c.limits.idle_timeout = Duration::from_secs(num(opt, v, 1, 86_400)? as u64)
                }
                "--stats-interval" => {
                    c.stats_interval =
                        Some(Duration::from_millis(num(opt, v, 10, 86_400_000)? as u64))
                }
                _ => {}
            }
        }
        if c.ipv4_gateway.is_some() && c.ipv4.is_none() {
            return Err(String::from(
                "--ipv4-gateway needs --ipv4 (without --ipv4, DHCP provides the gateway)",
            ));
        }
        if c.ipv6_gateway.is_some() && c.ipv6.is_none() {
            return Err(String::from("--ipv6-gateway needs --ipv6"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dhcp_configurations() {
        let c = Config::from_args(
            [
                "app-arg",
                "--ipv4=10.0.0.2/24",
                "--ipv4-gateway=10.0.0.1",
                "--dns-server=10.0.0.1",
                "--backlog=8",
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(
            c.ipv4,
            Some(Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 2), 24))
        );
        assert_eq!(c.ipv4_gateway, Some(Ipv4Address::new(10, 0, 0, 1)));
        assert_eq!(c.dns_servers.len(), 1);
        assert_eq!(c.limits.backlog, 8);
        let d = Config::from_args([].into_iter()).unwrap();
        assert_eq!(d.ipv4, None);
        assert_eq!(d.limits, Limits::default());
    }

    #[test]
    fn limits_are_configurable_and_checked() {
        let c = Config::from_args(
            [
                "--udp-buffer=4096",
                "--tcp-handshake-timeout=5",
                "--tcp-idle-timeout=60",
                "--tcp-buffer=65536",
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(c.limits.udp_buffer, 4096);
        assert_eq!(c.limits.handshake_timeout, Duration::from_secs(5));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.limits.listener_bytes(), 64 * 2 * 65536);
        assert!(c.limits.check(0).is_ok());
        assert!(c.limits.check(64 << 20).is_ok());
        let e = c.limits.check(8 << 20).unwrap_err();
        assert!(e.contains("needs 8388608 bytes per listener"), "{e}");
        let big = Config::from_args(["--max-sockets=65536"].into_iter()).unwrap();
        assert!(big.limits.table_bytes() >= 65536 * 256);
        let e = big.limits.check(64 << 20).unwrap_err();
        assert!(e.starts_with("--max-sockets=65536 needs"), "{e}");
        assert!(Limits::default().check(8 << 20).is_ok());
        assert!(Config::from_args(["--tcp-idle-timeout=0"].into_iter()).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let e = |a: &str| Config::from_args([a].into_iter()).unwrap_err();
        assert_eq!(
            e("--ipv4=10.0.0.300/24"),
            "bad --ipv4 value '10.0.0.300/24': expected ADDRESS/PREFIX, e.g. 10.0.0.2/24"
        );
        assert!(e("--ipv4=10.0.0.2").starts_with("bad --ipv4 value '10.0.0.2'"));
        assert!(e("--ipv4=224.0.0.1/24").contains("not a unicast address"));
        assert!(e("--ipv4-gateway=nope").starts_with("bad --ipv4-gateway value 'nope'"));
        assert!(e("--dns-server=x").starts_with("bad --dns-server value 'x'"));
        assert!(e("--ipv6=fd00::2").starts_with("bad --ipv6 value"));
        assert!(e("--backlog=0").contains("expected a number from 1 to 1024"));
        assert!(e("--ipv4-gateway=10.0.0.1").contains("needs --ipv4"));
    }
}
