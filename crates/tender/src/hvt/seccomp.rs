//! The hvt tender's seccomp allow-list, installed once the VM is set up and
//! before the guest runs its first instruction.
//!
//! Narrower than Solo5's (18 system calls, no argument checks): `ioctl`
//! only on the vCPU with `KVM_RUN` and the two register reads of an error
//! report; `read` on the taps; `write` on stdout, stderr and the taps;
//! `pread64`/`pwrite64` on the block files, one sector at a time within
//! capacity; `ppoll`; `clock_gettime` on the two clocks; `exit_group`; and
//! `mmap` without `PROT_EXEC` / `munmap` for the allocator (`brk` fails with
//! `ENOMEM`, so the allocator falls back to `mmap`).

use super::hypercalls::Devices;
use crate::TenderError;
use crate::sandbox::{AllowList, arg_eq, arg_le, arg_masked_eq, brk_enomem, install};
use kvm_bindings::{kvm_guest_debug, kvm_regs, kvm_sregs};
use std::os::fd::RawFd;

const KVMIO: u64 = 0xae;

const fn ior(nr: u64, size: usize) -> u64 {
    (2 << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}

const fn iow(nr: u64, size: usize) -> u64 {
    (1 << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}

/// `KVM_RUN`.
pub const KVM_RUN: u64 = (KVMIO << 8) | 0x80;
/// `KVM_GET_REGS`.
pub const KVM_GET_REGS: u64 = ior(0x81, std::mem::size_of::<kvm_regs>());
/// `KVM_GET_SREGS`.
pub const KVM_GET_SREGS: u64 = ior(0x83, std::mem::size_of::<kvm_sregs>());
/// `KVM_SET_REGS` (the debugger writes registers).
pub const KVM_SET_REGS: u64 = iow(0x82, std::mem::size_of::<kvm_regs>());
/// `KVM_SET_GUEST_DEBUG` (breakpoints and single steps).
pub const KVM_SET_GUEST_DEBUG: u64 = iow(0x9b, std::mem::size_of::<kvm_guest_debug>());

/// Confines the tender: from here on only the calls listed above work.
///
/// With a debugger connected (`gdb`, its socket), also: `recvfrom` and
/// `sendto` on that socket, `KVM_SET_REGS` and `KVM_SET_GUEST_DEBUG` on the
/// vCPU, `mprotect` without `PROT_EXEC` (to put breakpoints into the
/// image's read-only code) and `rt_sigreturn` (the connection's `SIGIO`
/// handler).
pub fn confine(vcpu: RawFd, devs: &Devices, gdb: Option<RawFd>) -> Result<(), TenderError> {
    let mut l = AllowList::default();
    if let Some(sock) = gdb {
        for sys in [libc::SYS_recvfrom, libc::SYS_sendto] {
            l.allow_if(sys, vec![arg_eq(0, sock as u64)])?;
        }
        for cmd in [KVM_SET_REGS, KVM_SET_GUEST_DEBUG] {
            l.allow_if(
                libc::SYS_ioctl,
                vec![arg_eq(0, vcpu as u64), arg_eq(1, cmd)],
            )?;
        }
        l.allow_if(
            libc::SYS_mprotect,
            vec![arg_masked_eq(2, libc::PROT_EXEC as u64, 0)],
        )?;
        l.allow(libc::SYS_rt_sigreturn);
    }
    for cmd in [KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS] {
        l.allow_if(
            libc::SYS_ioctl,
            vec![arg_eq(0, vcpu as u64), arg_eq(1, cmd)],
        )?;
    }
    for fd in [1, 2] {
        l.allow_if(libc::SYS_write, vec![arg_eq(0, fd)])?;
    }
    for fd in devs.net_fds() {
        l.allow_if(libc::SYS_read, vec![arg_eq(0, fd as u64)])?;
        l.allow_if(libc::SYS_write, vec![arg_eq(0, fd as u64)])?;
    }
    for (fd, capacity, sector) in devs.block_devs() {
        let last = capacity - u64::from(sector);
        for sys in [libc::SYS_pread64, libc::SYS_pwrite64] {
            l.allow_if(
                sys,
                vec![
                    arg_eq(0, fd as u64),
                    arg_eq(2, u64::from(sector)),
                    arg_le(3, last),
                ],
            )?;
        }
    }
    l.allow(libc::SYS_ppoll);
    for clock in [libc::CLOCK_REALTIME, libc::CLOCK_MONOTONIC] {
        l.allow_if(libc::SYS_clock_gettime, vec![arg_eq(0, clock as u64)])?;
    }
    l.allow(libc::SYS_exit_group);
    l.allow_if(
        libc::SYS_mmap,
        vec![arg_masked_eq(2, libc::PROT_EXEC as u64, 0)],
    )?;
    l.allow(libc::SYS_munmap);
    l.allow(libc::SYS_brk);
    let main = l.compile()?;
    let brk = brk_enomem()?;
    // The brk filter goes first: once the main filter is in, even
    // seccomp(2) itself is forbidden.
    install(&brk)?;
    install(&main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_kvm_h() {
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_SET_REGS, 0x4090_ae82);
        assert_eq!(KVM_SET_GUEST_DEBUG, 0x4048_ae9b);
    }
}
