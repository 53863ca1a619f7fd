//! Makes raw Linux system calls under the spt tender's seccomp filter, one
//! mode per run (the first argument):
//!
//! * `allowed`: calls the spt ABI allows (one-sector `pread64`/`pwrite64`
//!   inside the disk, up to its last sector; `clock_gettime` on both
//!   clocks; `write` to fd 1; `arch_prctl(ARCH_SET_FS)`), checks their
//!   results and exits 0;
//! * a forbidden call (`dup`, `openat`, `write-stderr`, `pwrite-outside`,
//!   `pwrite-count`, `pread-count`, `clock-other`): the filter must kill the
//!   process with SIGSYS. If the call returns, the kernel prints
//!   "sandbox: survived" and exits 1.
//!
//! On hvt and unix it prints "sandbox: spt only" and exits 2.

#![no_std]
#![no_main]

use morgana::Block;

#[cfg(morgana_platform = "spt")]
mod spt {
    extern crate alloc;

    use alloc::vec;
    use morgana::Block;
    use morgana::platform::spt::{host_fd, raw_syscall};

    const SYS_WRITE: u64 = 1;
    const SYS_PREAD64: u64 = 17;
    const SYS_PWRITE64: u64 = 18;
    const SYS_DUP: u64 = 32;
    const SYS_ARCH_PRCTL: u64 = 158;
    const SYS_CLOCK_GETTIME: u64 = 228;
    const SYS_OPENAT: u64 = 257;
    const ARCH_SET_FS: u64 = 0x1002;
    const AT_FDCWD: i64 = -100;
    const CLOCK_REALTIME: u64 = 0;
    const CLOCK_MONOTONIC: u64 = 1;
    const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;

    /// What `arch_prctl(ARCH_SET_FS)` points FS at: memory of our own
    /// (nothing in the guest reads through FS).
    static FS_AREA: [u64; 8] = [0; 8];

    /// System call `nr`: the calls made here read and write only this
    /// module's own buffers, the disk and the console.
    fn call(nr: u64, args: [u64; 6]) -> i64 {
        // SAFETY: every pointer passed is to a live buffer of this module
        // of the length passed, or to a static; the other calls touch no
        // memory (or kill the process, which is the point).
        unsafe { raw_syscall(nr, args) }
    }

    fn clock(id: u64) -> (i64, [i64; 2]) {
        let mut ts = [0i64; 2];
        let r = call(SYS_CLOCK_GETTIME, [id, ts.as_mut_ptr() as u64, 0, 0, 0, 0]);
        (r, ts)
    }

    /// Runs `mode`; returns the exit status (forbidden modes do not return).
    pub fn run(mode: &str, storage: &Block) -> u8 {
        let info = storage.info();
        let ss = u64::from(info.sector_size);
        let cap = info.capacity();
        let Some(fd) = host_fd(storage.handle()) else {
            morgana::println!("sandbox: no host descriptor for the disk");
            return 3;
        };
        let fd = fd as u64;
        let mut buf = vec![0u8; 2 * ss as usize];
        let p = buf.as_mut_ptr() as u64;
        let (nr, args): (u64, [u64; 6]) = match mode {
            "allowed" => return allowed(fd, ss, cap),
            "dup" => (SYS_DUP, [1, 0, 0, 0, 0, 0]),
            "openat" => (
                SYS_OPENAT,
                [AT_FDCWD as u64, c"/etc/passwd".as_ptr() as u64, 0, 0, 0, 0],
            ),
            "write-stderr" => {
                let msg = b"sandbox: this must not reach stderr\n";
                (
                    SYS_WRITE,
                    [2, msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0],
                )
            }
            "pwrite-outside" => (SYS_PWRITE64, [fd, p, ss, cap, 0, 0]),
            "pwrite-count" => (SYS_PWRITE64, [fd, p, 2 * ss, 0, 0, 0]),
            "pread-count" => (SYS_PREAD64, [fd, p, 2 * ss, 0, 0, 0]),
            "clock-other" => (SYS_CLOCK_GETTIME, [CLOCK_PROCESS_CPUTIME_ID, p, 0, 0, 0, 0]),
            _ => {
                morgana::println!(
                    "usage: t-sandbox allowed|dup|openat|write-stderr|pwrite-outside|pwrite-count|pread-count|clock-other"
                );
                return 2;
            }
        };
        morgana::println!("sandbox: calling {mode} (system call {nr})");
        let r = call(nr, args);
        morgana::println!("sandbox: survived {mode}: returned {r}");
        1
    }

    /// Whether a call returned `want`; reports it if not.
    fn check(what: &str, got: i64, want: i64) -> bool {
        if got != want {
            morgana::println!("sandbox: {what} returned {got}, expected {want}");
        }
        got == want
    }

    /// The positive control: every call the spt ABI allows, results checked.
    fn allowed(fd: u64, ss: u64, cap: u64) -> u8 {
        let mut ok = true;
        // One sector at the very end of the disk: the largest allowed offset.
        let last = cap - ss;
        let data: alloc::vec::Vec<u8> = (0..ss).map(|i| (i as u8) ^ 0x5a).collect();
        let r = call(SYS_PWRITE64, [fd, data.as_ptr() as u64, ss, last, 0, 0]);
        ok &= check("pwrite64 of the last sector", r, ss as i64);
        let mut back = vec![0u8; ss as usize];
        let r = call(SYS_PREAD64, [fd, back.as_mut_ptr() as u64, ss, last, 0, 0]);
        ok &= check("pread64 of the last sector", r, ss as i64);
        if back != data {
            morgana::println!("sandbox: the last sector reads back differently");
            ok = false;
        }
        let r = call(SYS_PREAD64, [fd, back.as_mut_ptr() as u64, ss, 0, 0, 0]);
        ok &= check("pread64 of sector 0", r, ss as i64);
        for id in [CLOCK_REALTIME, CLOCK_MONOTONIC] {
            let (r, ts) = clock(id);
            ok &= check("clock_gettime", r, 0);
            if ts[0] <= 0 {
                morgana::println!("sandbox: clock {id} says {}.{:09}", ts[0], ts[1]);
                ok = false;
            }
        }
        let msg = b"sandbox: raw write to fd 1\n";
        let r = call(
            SYS_WRITE,
            [1, msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0],
        );
        ok &= check("write to fd 1", r, msg.len() as i64);
        let r = call(
            SYS_ARCH_PRCTL,
            [ARCH_SET_FS, FS_AREA.as_ptr() as u64, 0, 0, 0, 0],
        );
        ok &= check("arch_prctl(ARCH_SET_FS)", r, 0);
        if ok {
            morgana::println!("sandbox: allowed calls OK");
            0
        } else {
            1
        }
    }
}

#[cfg(morgana_platform = "spt")]
#[morgana::main]
async fn main(storage: Block) -> u8 {
    spt::run(morgana::args().next().unwrap_or(""), &storage)
}

#[cfg(not(morgana_platform = "spt"))]
#[morgana::main]
async fn main(storage: Block) -> u8 {
    let _ = storage;
    morgana::println!("sandbox: spt only");
    2
}
