//! The hvt hypercalls, served from the guest's argument structures with
//! every guest pointer and length checked against guest memory.

use super::memory::GuestMem;
use crate::TenderError;
use morgana_abi::Solo5Result;
use morgana_abi::hvt::{HcBlockIo, HcHalt, HcNetIo, HcPoll, HcPuts, HcWalltime, Hypercall};
use morgana_abi::mft::DeviceKind;
use morgana_abi::offload;
use morgana_host::attach::Attached;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A device as the hypercalls see it.
#[derive(Clone, Copy, Debug)]
enum Dev {
    Net {
        fd: RawFd,
        /// Longest write: MTU + 14, or header and 64 KiB with offloads.
        max_write: u64,
    },
    Block {
        fd: RawFd,
        capacity: u64,
        sector: u16,
    },
}

/// The attached devices, indexed by handle.
pub struct Devices {
    by_handle: Vec<Option<Dev>>,
    pollfds: Vec<libc::pollfd>,
    poll_handles: Vec<u64>,
}

impl Devices {
    /// Indexes the attached devices.
    pub fn new(attached: &Attached) -> Self {
        let mut by_handle = vec![None; morgana_abi::mft::MAX_ENTRIES];
        let mut pollfds = Vec::new();
        let mut poll_handles = Vec::new();
        for d in &attached.devices {
            let e = &attached.manifest.entries()[d.handle];
            by_handle[d.handle] = Some(match d.kind {
                DeviceKind::Net => {
                    pollfds.push(libc::pollfd {
                        fd: d.raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                    poll_handles.push(d.handle as u64);
                    // With offloads granted (morgana_abi::offload), a
                    // write carries a virtio-net header and up to 64 KiB.
                    let max_write = if usize::from(e.vnet_hdr()) == offload::VNET_HDR_LEN {
                        (offload::VNET_HDR_LEN + offload::MAX_FRAME) as u64
                    } else {
                        u64::from(e.net().1) + 14
                    };
                    Dev::Net {
                        fd: d.raw_fd(),
                        max_write,
                    }
                }
                DeviceKind::Block => {
                    let (capacity, sector) = e.block();
                    Dev::Block {
                        fd: d.raw_fd(),
                        capacity,
                        sector,
                    }
                }
            });
        }
        Self {
            by_handle,
            pollfds,
            poll_handles,
        }
    }

    fn get(&self, handle: u64) -> Option<Dev> {
        usize::try_from(handle)
            .ok()
            .and_then(|h| self.by_handle.get(h).copied().flatten())
    }

    /// The descriptors of the network devices.
    pub fn net_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.pollfds.iter().map(|p| p.fd)
    }

    /// Block devices: `(fd, capacity, sector size)`.
    pub fn block_devs(&self) -> impl Iterator<Item = (RawFd, u64, u16)> + '_ {
        self.by_handle.iter().flatten().filter_map(|d| match *d {
            Dev::Block {
                fd,
                capacity,
                sector,
            } => Some((fd, capacity, sector)),
            Dev::Net { .. } => None,
        })
    }
}

fn host_error(what: &str, e: io::Error) -> TenderError {
    TenderError::Host {
        what: what.into(),
        source: e,
    }
}

/// Serves hypercall `hc` whose argument structure is at `gpa`. Returns
/// `Some(status)` when the guest halts.
pub fn serve(
    mem: &GuestMem,
    devs: &mut Devices,
    hc: Hypercall,
    gpa: u64,
) -> Result<Option<u8>, TenderError> {
    match hc {
        Hypercall::Walltime => {
            mem.check("WALLTIME argument", gpa, HcWalltime::SIZE as u64)?;
            let ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            mem.write_u64("WALLTIME argument", gpa, HcWalltime::NSECS_OFF, ns)?;
        }
        Hypercall::Puts => {
            mem.check("PUTS argument", gpa, HcPuts::SIZE as u64)?;
            let data = mem.read_u64("PUTS argument", gpa, HcPuts::DATA_OFF)?;
            let len = mem.read_u64("PUTS argument", gpa, HcPuts::LEN_OFF)?;
            let p = mem.ptr("PUTS data", data, len)?;
            write_all_best_effort(1, p, len as usize);
        }
        Hypercall::Poll => poll(mem, devs, gpa)?,
        Hypercall::NetWrite | Hypercall::NetRead => net(mem, devs, hc, gpa)?,
        Hypercall::BlockWrite | Hypercall::BlockRead => block(mem, devs, hc, gpa)?,
        Hypercall::Halt => {
            mem.check("HALT argument", gpa, HcHalt::SIZE as u64)?;
            let cookie = mem.read_u64("HALT argument", gpa, HcHalt::COOKIE_OFF)?;
            if cookie != 0 {
                mem.check(
                    "HALT cookie",
                    cookie,
                    morgana_abi::hvt::HALT_COOKIE_MAX as u64,
                )?;
            }
            let status = mem.read_u64("HALT argument", gpa, HcHalt::EXIT_STATUS_OFF)? as u32;
            return Ok(Some((status & 0xff) as u8));
        }
    }
    Ok(None)
}

/// Console output is best effort: a closed or full stdout loses output but
/// never stops the guest.
fn write_all_best_effort(fd: RawFd, mut p: *const u8, mut len: usize) {
    while len > 0 {
        // SAFETY: [p, p+len) lies in guest memory (checked by the caller).
        let n = unsafe { libc::write(fd, p.cast(), len) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        len -= n as usize;
        p = p.wrapping_add(n as usize);
    }
}

fn poll(mem: &GuestMem, devs: &mut Devices, gpa: u64) -> Result<(), TenderError> {
    const WHAT: &str = "POLL argument";
    mem.check(WHAT, gpa, HcPoll::SIZE as u64)?;
    let timeout = mem.read_u64(WHAT, gpa, HcPoll::TIMEOUT_OFF)?;
    let deadline = Instant::now().checked_add(Duration::from_nanos(timeout));
    let n = loop {
        let left = deadline.map_or(Duration::from_secs(u32::MAX.into()), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let ts = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        for p in &mut devs.pollfds {
            p.revents = 0;
        }
        // SAFETY: pollfds is a valid array of pollfd of the given length.
        let n = unsafe {
            libc::ppoll(
                devs.pollfds.as_mut_ptr(),
                devs.pollfds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(host_error("poll", e));
        }
        if super::gdb::interrupt_pending() {
            // The debugger wants the guest stopped: return now, with
            // nothing ready (the guest polls again when it resumes).
            break 0;
        }
    };
    let mut ready = 0u64;
    if n > 0 {
        for (p, h) in devs.pollfds.iter().zip(&devs.poll_handles) {
            if p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0 {
                ready |= 1 << h;
            }
        }
    }
    mem.write_u64(WHAT, gpa, HcPoll::READY_SET_OFF, ready)?;
    mem.write_i32(WHAT, gpa, HcPoll::RET_OFF, ready.count_ones() as i32)
}

fn net(mem: &GuestMem, devs: &Devices, hc: Hypercall, gpa: u64) -> Result<(), TenderError> {
    let what = if hc == Hypercall::NetRead {
        "NET_READ argument"
    } else {
        "NET_WRITE argument"
    };
    mem.check(what, gpa, HcNetIo::SIZE as u64)?;
    let handle = mem.read_u64(what, gpa, HcNetIo::HANDLE_OFF)?;
    let data = mem.read_u64(what, gpa, HcNetIo::DATA_OFF)?;
    let len = mem.read_u64(what, gpa, HcNetIo::LEN_OFF)?;
    let ret = |r: Solo5Result| mem.write_i32(what, gpa, HcNetIo::RET_OFF, r as i32);
    let Some(Dev::Net { fd, max_write }) = devs.get(handle) else {
        return ret(Solo5Result::Einval);
    };
    if hc == Hypercall::NetWrite {
        let p = mem.ptr("NET_WRITE frame", data, len)?;
        if len == 0 || len > max_write {
            return ret(Solo5Result::Einval);
        }
        // SAFETY: [p, p+len) lies in guest memory (checked above).
        let n = unsafe { libc::write(fd, p.cast(), len as usize) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // A full queue drops the frame: writes never block.
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => ret(Solo5Result::Ok),
                _ => Err(host_error("writing to the tap device", e)),
            };
        }
        if n as u64 != len {
            return Err(TenderError::Guest(format!(
                "short write to the tap device ({n} of {len} bytes)"
            )));
        }
        return ret(Solo5Result::Ok);
    }
    let p = mem.ptr_mut("NET_READ buffer", data, len)?;
    // SAFETY: [p, p+len) lies in writable guest memory (checked above).
    let n = unsafe { libc::read(fd, p.cast(), len as usize) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => ret(Solo5Result::Again),
            Some(libc::EFAULT) => Err(TenderError::GuestAccess(format!(
                "NET_READ buffer: gpa={data:#x}, len={len:#x} is not writable guest memory"
            ))),
            _ => Err(host_error("reading from the tap device", e)),
        };
    }
    if n == 0 {
        return ret(Solo5Result::Again);
    }
    mem.write_u64(what, gpa, HcNetIo::LEN_OFF, n as u64)?;
    ret(Solo5Result::Ok)
}

fn block(mem: &GuestMem, devs: &Devices, hc: Hypercall, gpa: u64) -> Result<(), TenderError> {
    let read = hc == Hypercall::BlockRead;
    let what = if read {
        "BLOCK_READ argument"
    } else {
        "BLOCK_WRITE argument"
    };
    mem.check(what, gpa, HcBlockIo::SIZE as u64)?;
    let handle = mem.read_u64(what, gpa, HcBlockIo::HANDLE_OFF)?;
    let offset = mem.read_u64(what, gpa, HcBlockIo::OFFSET_OFF)?;
    let data = mem.read_u64(what, gpa, HcBlockIo::DATA_OFF)?;
    let len = mem.read_u64(what, gpa, HcBlockIo::LEN_OFF)?;
    let ret = |r: Solo5Result| mem.write_i32(what, gpa, HcBlockIo::RET_OFF, r as i32);
    let Some(Dev::Block {
        fd,
        capacity,
        sector,
    }) = devs.get(handle)
    else {
        return ret(Solo5Result::Einval);
    };
    let sector = u64::from(sector);
    if !morgana_abi::block_request_ok(offset, len, capacity, sector) {
        return ret(Solo5Result::Einval);
    }
    let p = if read {
        mem.ptr_mut("BLOCK_READ buffer", data, len)?
    } else {
        mem.ptr("BLOCK_WRITE buffer", data, len)?.cast_mut()
    };

    let mut done = 0u64;
    while done < len {
        let (ptr, count, pos) = (
            p.wrapping_add(done as usize),
            (len - done) as usize,
            (offset + done) as libc::off_t,
        );
        // SAFETY: [ptr, ptr+count) lies in guest memory (checked above).
        let n = unsafe {
            if read {
                libc::pread(fd, ptr.cast(), count, pos)
            } else {
                libc::pwrite(fd, ptr.cast(), count, pos)
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EFAULT) => {
                    return Err(TenderError::GuestAccess(format!(
                        "block buffer: gpa={data:#x}, len={len:#x} is not accessible guest memory"
                    )));
                }
                _ => return Err(host_error("block device I/O", e)),
            }
        }
        if n == 0 {
            return Err(TenderError::Guest(format!(
                "block device I/O: short {} at offset {offset}",
                if read { "read" } else { "write" }
            )));
        }
        done += n as u64;
    }
    ret(Solo5Result::Ok)
}
