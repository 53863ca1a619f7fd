//! Attaching to a Linux tap interface.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An open tap device.
#[derive(Debug)]
pub struct Tap {
    /// The tap file descriptor (non-blocking, `IFF_TAP | IFF_NO_PI`).
    pub fd: OwnedFd,
    /// The interface's MTU.
    pub mtu: u16,
    /// Whether frames carry a virtio-net header (`IFF_VNET_HDR`, with
    /// checksum and TSO offloads on: [`attach_offload`]).
    pub vnet_hdr: bool,
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name must be 1 to {} bytes", libc::IFNAMSIZ - 1),
        ));
    }
    // SAFETY: ifreq is plain old data for which all-zero bytes are valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

/// A datagram socket used only for interface ioctls.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

fn ifreq_ioctl(sock: RawFd, req: libc::Ioctl, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `ifr` is a valid, properly sized ifreq for these requests.
    if unsafe { libc::ioctl(sock, req, ifr as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the existing, up tap interface `name`, as Solo5 does: it must
/// exist (no create-on-open) and be up; it is opened non-blocking with
/// `IFF_TAP | IFF_NO_PI`, and GRO/GSO are turned off so that no frame
/// larger than the MTU is ever delivered.
///
/// `@N` names an already open tap descriptor `N` instead.
pub fn attach(name: &str) -> io::Result<Tap> {
    attach_with(name, false)
}

/// Opens the tap interface `name` as [`attach`] does, but with
/// `IFF_VNET_HDR` and the checksum and TSO offloads on (the negotiated
/// offload of `morgana_abi::offload`): each frame then carries a
/// virtio-net header, and TCP frames may be up to 64 KiB, segmented and
/// checksummed by the kernel. `@N` descriptors are taken as they are,
/// without offloads.
pub fn attach_offload(name: &str) -> io::Result<Tap> {
    attach_with(name, true)
}

fn attach_with(name: &str, offload: bool) -> io::Result<Tap> {
    if let Some(fd) = name.strip_prefix('@') {
        return attach_fd(fd);
    }
    let sock = ioctl_socket()?;
    let mut ifr = ifreq_for(name)?;
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `cname` is a valid NUL-terminated string.
    if unsafe { libc::if_nametoindex(cname.as_ptr()) } == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no such network interface",
        ));
    }
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr)?;
    // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags } as libc::c_int;
    if flags & libc::IFF_UP == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NetworkDown,
            "interface is down (ip link set dev IFACE up)",
        ));
    }

    let tun = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = ifreq_for(name)?;
    let vnet = if offload { libc::IFF_VNET_HDR } else { 0 };
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | vnet) as libc::c_short;
    ifreq_ioctl(tun.as_raw_fd(), libc::TUNSETIFF as _, &mut req).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            io::Error::new(io::ErrorKind::InvalidInput, "interface is not a tap device")
        } else {
            e
        }
    })?;
    let got: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    if got != name.as_bytes() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the kernel attached a different interface",
        ));
    }

    let mut m = ifreq_for(name)?;
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU as _, &mut m)?;
    // SAFETY: SIOCGIFMTU filled in the mtu member of the union.
    let mtu = unsafe { m.ifr_ifru.ifru_mtu };
    if offload {
        enable_offloads(tun.as_raw_fd())?;
    } else {
        // A tap keeps its offloads when its opener goes: turn off what an
        // offloading opener before us left on, then GRO/GSO.
        let _ = set_offload(tun.as_raw_fd(), 0);
        disable_offloads(sock.as_raw_fd(), name);
    }
    Ok(Tap {
        fd: tun.into(),
        mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
        vnet_hdr: offload,
    })
}

/// `TUNSETOFFLOAD` with `flags` (`TUN_F_*`).
fn set_offload(fd: RawFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    if unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD as _, flags as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A 10-byte virtio-net header on each frame, and checksum and TSO
/// offloads (IPv4 and IPv6) on.
fn enable_offloads(fd: RawFd) -> io::Result<()> {
    let len = morgana_abi::offload::VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer.
    if unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ as _, &len as *const libc::c_int) } < 0 {
        return Err(io::Error::last_os_error());
    }
    set_offload(fd, libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6)
}

use std::os::unix::fs::OpenOptionsExt;

fn attach_fd(s: &str) -> io::Result<Tap> {
    let fd: RawFd = s
        .parse()
        .ok()
        .filter(|&n: &RawFd| n >= 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad descriptor number"))?;
    // Work on a duplicate: the number names a descriptor someone else owns
    // (and may name twice).
    // SAFETY: F_DUPFD_CLOEXEC on an arbitrary number fails cleanly if it is
    // not an open descriptor.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
    // SAFETY: ifreq is plain old data for which all-zero bytes are valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ifreq_ioctl(fd.as_raw_fd(), libc::TUNGETIFF as _, &mut ifr).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptor is not a tap device",
        )
    })?;
    // SAFETY: TUNGETIFF filled in the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags } as libc::c_int;
    if flags & libc::IFF_TAP == 0 || flags & libc::IFF_NO_PI == 0 || flags & libc::IFF_VNET_HDR != 0
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptor is not a tap device opened with IFF_TAP | IFF_NO_PI (and no IFF_VNET_HDR)",
        ));
    }
    // SAFETY: F_GETFL/F_SETFL on our own descriptor.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if fl < 0 || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let name: String = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let sock = ioctl_socket()?;
    let mut m = ifreq_for(&name)?;
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU as _, &mut m)?;
    // SAFETY: SIOCGIFMTU filled in the mtu member of the union.
    let mtu = unsafe { m.ifr_ifru.ifru_mtu };
    Ok(Tap {
        fd,
        mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
        vnet_hdr: false,
    })
}

/// `ethtool -K IFACE gro off gso off`, best effort.
fn disable_offloads(sock: RawFd, name: &str) {
    const ETHTOOL_SGSO: u32 = 0x24;
    const ETHTOOL_SGRO: u32 = 0x2c;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    for cmd in [ETHTOOL_SGRO, ETHTOOL_SGSO] {
        let mut v = EthtoolValue { cmd, data: 0 };
        if let Ok(mut ifr) = ifreq_for(name) {
            ifr.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
            let _ = ifreq_ioctl(sock, libc::SIOCETHTOOL as _, &mut ifr);
        }
    }
}

/// A random, locally administered, unicast MAC address.
pub fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    // SAFETY: getrandom(2) writes at most mac.len() bytes into mac.
    let n = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    if n != mac.len() as isize {
        // No entropy source at all: derive one from the clock and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()) << 32;
        mac.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_interface_is_a_clear_error() {
        let e = attach("nosuchtap9").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(attach("").is_err());
        assert!(attach("a-very-long-interface-name").is_err());
        assert!(attach("@notanumber").is_err());
        // An open descriptor that is not a tap (standard input).
        let e = attach("@0").unwrap_err();
        assert!(e.to_string().contains("not a tap device"), "{e}");
        assert!(attach("@999999").is_err());
    }

    #[test]
    fn random_macs_are_local_unicast() {
        for _ in 0..32 {
            let m = random_mac();
            assert_eq!(m[0] & 1, 0);
            assert_eq!(m[0] & 2, 2);
        }
    }
}
