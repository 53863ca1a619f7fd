//! The spt allow-list: exactly what the Solo5 spt ABI lets a guest do,
//! argument filters included, and nothing else (default: kill the process).
//!
//! * `write` on fd 1 (console) and on each tap; `read` on each tap;
//! * `pread64`/`pwrite64` on each block file, with `count` equal to the
//!   sector size and `offset <= capacity - sector size`;
//! * `epoll_pwait` on the tender's epoll set, `timerfd_settime` on its
//!   timerfd;
//! * `clock_gettime` on `CLOCK_MONOTONIC` and `CLOCK_REALTIME`;
//! * `arch_prctl(ARCH_SET_FS)`;
//! * `exit_group`.

use super::Waitset;
use crate::sandbox::{AllowList, arg_eq, arg_le, arg_masked_eq};
use crate::{Setup, TenderError};
use morgana_abi::mft::DeviceKind;
use seccompiler::BpfProgram;
use std::os::fd::AsRawFd;

const ARCH_SET_FS: u64 = 0x1002;

/// The parent's filter, once the guest runs in the child: wait for it,
/// write the report, exit; `mmap` without `PROT_EXEC`, `munmap` and `brk`
/// for an error message that allocates. One filter, not hvt's two (a
/// first one making `brk` fail): the parent never maps guest memory, and
/// `brk` can do nothing that `mmap` without `PROT_EXEC` cannot, so the
/// second filter would only cost its installation (a BPF compilation in the
/// kernel) on every boot.
pub fn parent_filter() -> Result<BpfProgram, TenderError> {
    let mut l = AllowList::default();
    l.allow(libc::SYS_wait4);
    for fd in [1, 2] {
        l.allow_if(libc::SYS_write, vec![arg_eq(0, fd)])?;
    }
    l.allow(libc::SYS_exit_group);
    l.allow_if(
        libc::SYS_mmap,
        vec![arg_masked_eq(2, libc::PROT_EXEC as u64, 0)],
    )?;
    l.allow(libc::SYS_munmap);
    l.allow(libc::SYS_brk);
    l.compile()
}

/// Compiles the guest's allow-list.
pub fn filter(setup: &Setup, ws: &Waitset) -> Result<BpfProgram, TenderError> {
    let mut l = AllowList::default();
    l.allow_if(libc::SYS_write, vec![arg_eq(0, 1)])?;
    l.allow(libc::SYS_exit_group);
    l.allow_if(
        libc::SYS_epoll_pwait,
        vec![arg_eq(0, ws.epoll.as_raw_fd() as u64)],
    )?;
    l.allow_if(
        libc::SYS_timerfd_settime,
        vec![arg_eq(0, ws.timer.as_raw_fd() as u64)],
    )?;
    for clock in [libc::CLOCK_MONOTONIC, libc::CLOCK_REALTIME] {
        l.allow_if(libc::SYS_clock_gettime, vec![arg_eq(0, clock as u64)])?;
    }
    l.allow_if(libc::SYS_arch_prctl, vec![arg_eq(0, ARCH_SET_FS)])?;
    for d in &setup.attached.devices {
        let fd = d.raw_fd() as u64;
        match d.kind {
            DeviceKind::Net => {
                l.allow_if(libc::SYS_read, vec![arg_eq(0, fd)])?;
                l.allow_if(libc::SYS_write, vec![arg_eq(0, fd)])?;
            }
            DeviceKind::Block => {
                let (capacity, sector) = d.block.expect("block devices have a geometry");
                let sector = u64::from(sector);
                for sys in [libc::SYS_pread64, libc::SYS_pwrite64] {
                    l.allow_if(
                        sys,
                        vec![
                            arg_eq(0, fd),
                            arg_eq(2, sector),
                            arg_le(3, capacity - sector),
                        ],
                    )?;
                }
            }
        }
    }
    l.compile()
}
