//! `morgana-spt`: runs a Solo5 spt unikernel inside a process confined by
//! seccomp.
//!
//! The image is loaded into this process's own address space at its link
//! addresses (guest memory is `[0x10000, mem_size)`), the spt boot info,
//! manifest copy (with host descriptors) and command line are written at
//! 0x11000, and the devices, an epoll set and a timerfd are opened. Then the
//! tender forks: the child installs the spt ABI's allow-list (and nothing
//! more) and jumps to the guest; the parent only waits, and reports how the
//! guest ended: its exit status, or the signal that killed it (SIGSYS for a
//! forbidden system call, SIGSEGV for a bad memory access) as `128 + signal`.

mod seccomp;

use crate::elf::{LoadPlan, PF_W, PF_X};
use crate::{Monitor, Setup, TenderError};
use morgana_abi::mft::DeviceKind;
use morgana_abi::note::AbiTarget;
use morgana_abi::spt::{self, BootInfo};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The spt monitor.
pub struct Spt;

/// Largest guest memory (the same bound as hvt).
pub const MAX_MEM_SIZE: u64 = 4 << 30;

impl Monitor for Spt {
    const TARGET: AbiTarget = AbiTarget::Spt;
    const ABI_VERSION: u32 = spt::ABI_VERSION;
    const NAME: &'static str = "morgana-spt";
    const HELP: &'static str = "The guest runs in this process under a seccomp filter: a forbidden system call\n\
         kills it with SIGSYS (status 159), a bad memory access with SIGSEGV (status 139).";

    const NET_OFFLOAD: bool = true;
    const GDB: bool = false;

    fn mem_size(requested: u64) -> Result<u64, TenderError> {
        let mem = requested & !(morgana_abi::PAGE_SIZE - 1);
        if !(2 << 20..=MAX_MEM_SIZE).contains(&mem) {
            return Err(TenderError::Memory(format!(
                "guest memory must be between 2 and {} MiB",
                MAX_MEM_SIZE >> 20
            )));
        }
        Ok(mem)
    }

    fn run(setup: Setup) -> Result<u8, TenderError> {
        check_personality()?;
        let waitset = Waitset::new(&setup)?;
        let filter = seccomp::filter(&setup, &waitset)?;
        supervise(setup, waitset, &filter)
    }
}

fn check_personality() -> Result<(), TenderError> {
    // SAFETY: querying the personality has no side effects.
    let p = unsafe { libc::personality(0xffff_ffff) };
    if p >= 0 && p & libc::READ_IMPLIES_EXEC != 0 {
        return Err(TenderError::Guest(
            "refusing to run with the READ_IMPLIES_EXEC personality (it makes data executable)"
                .into(),
        ));
    }
    Ok(())
}

/// Guest memory: `[HOST_MEM_BASE, mem_size)` of this process.
struct GuestMem {
    size: u64,
}

impl GuestMem {
    fn map(size: u64) -> Result<Self, TenderError> {
        let base = spt::HOST_MEM_BASE;
        // SAFETY: a fresh anonymous mapping at a fixed address; NOREPLACE
        // makes the kernel refuse rather than replace anything mapped there.
        let p = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                (size - base) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | libc::MAP_FIXED_NOREPLACE
                    | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(TenderError::last_os(format!(
                "cannot map guest memory at [{base:#x}, {size:#x})"
            )));
        }
        if p as u64 != base {
            // An old kernel that ignored MAP_FIXED_NOREPLACE.
            // SAFETY: unmapping what was just mapped.
            unsafe { libc::munmap(p, (size - base) as usize) };
            return Err(TenderError::Memory(format!(
                "cannot map guest memory at {base:#x}: the address is in use"
            )));
        }
        Ok(Self { size })
    }

    /// A pointer to guest address `addr`, for `len` bytes within guest memory.
    fn at(&self, addr: u64, len: u64) -> Result<*mut u8, TenderError> {
        match addr.checked_add(len) {
            Some(end) if addr >= spt::HOST_MEM_BASE && end <= self.size => Ok(addr as *mut u8),
            _ => Err(TenderError::Memory(format!(
                "[{addr:#x}, +{len:#x}) lies outside guest memory"
            ))),
        }
    }

    fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), TenderError> {
        let p = self.at(addr, bytes.len() as u64)?;
        // SAFETY: [p, p+len) lies in our guest mapping (checked), which no
        // Rust object aliases.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }

    fn load(&self, img: &[u8], plan: &LoadPlan) -> Result<(), TenderError> {
        for s in &plan.segments {
            self.write(
                s.vaddr,
                &img[s.offset as usize..(s.offset + s.filesz) as usize],
            )?;
            let mut prot = libc::PROT_READ;
            if s.flags & PF_W != 0 {
                prot |= libc::PROT_WRITE;
            }
            if s.flags & PF_X != 0 {
                prot |= libc::PROT_EXEC;
            }
            let len = s.prot_end - s.prot_start;
            let p = self.at(s.prot_start, len)?;
            // SAFETY: a page-aligned range of our guest mapping.
            if unsafe { libc::mprotect(p.cast(), len as usize, prot) } != 0 {
                return Err(TenderError::last_os("mprotect of guest memory"));
            }
        }
        Ok(())
    }
}

/// The epoll set and timerfd the guest's `yield` waits on.
pub(crate) struct Waitset {
    pub(crate) epoll: OwnedFd,
    pub(crate) timer: OwnedFd,
}

fn cvt(r: libc::c_int, what: &str) -> Result<RawFd, TenderError> {
    if r < 0 {
        Err(TenderError::last_os(what))
    } else {
        Ok(r)
    }
}

impl Waitset {
    fn new(setup: &Setup) -> Result<Self, TenderError> {
        // SAFETY: plain system calls; results are checked.
        let epoll = cvt(unsafe { libc::epoll_create1(0) }, "epoll_create1")?;
        // SAFETY: `epoll` is a fresh descriptor we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: as above.
        let timer = cvt(
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK) },
            "timerfd_create",
        )?;
        // SAFETY: `timer` is a fresh descriptor we own.
        let timer = unsafe { OwnedFd::from_raw_fd(timer) };
        let add = |fd: RawFd, data: u64| {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: data,
            };
            // SAFETY: adding a valid descriptor with a valid event.
            cvt(
                unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) },
                "epoll_ctl",
            )
        };
        add(timer.as_raw_fd(), spt::INTERNAL_TIMERFD)?;
        for d in &setup.attached.devices {
            if d.kind == DeviceKind::Net {
                add(d.raw_fd(), d.handle as u64)?;
            }
        }
        Ok(Self { epoll, timer })
    }
}

/// The bytes to write at [`spt::BOOT_INFO_BASE`]: the boot info, then the
/// manifest copy, then the NUL-terminated command line. Made before the
/// fork, so that the child writes no heap page it shares with the parent
/// (each would be copied on the write).
fn boot_info(setup: &Setup, ws: &Waitset) -> Vec<u8> {
    let mft = &setup.attached.manifest;
    let mft_addr = spt::BOOT_INFO_BASE + BootInfo::SIZE as u64;
    let cmdline_addr = mft_addr + mft.encoded_len() as u64;
    let bi = BootInfo {
        mem_size: setup.mem_size,
        kernel_end: setup.plan.end,
        cmdline: cmdline_addr,
        mft: mft_addr,
        epollfd: ws.epoll.as_raw_fd(),
        timerfd: ws.timer.as_raw_fd(),
    };
    let mut bytes = bi.to_bytes().to_vec();
    let at = bytes.len();
    bytes.resize(at + mft.encoded_len(), 0);
    mft.encode(&mut bytes[at..]);
    bytes.extend_from_slice(setup.cmdline.as_bytes());
    bytes.push(0);
    bytes
}

/// Forks: the child maps guest memory, loads the image, confines itself
/// and becomes the guest; the parent drops everything the guest needs,
/// confines itself to waiting and reporting, and reports how the guest
/// ended.
///
/// Guest memory is made after the fork, in the child only: made before, the
/// fork would copy its page tables and every page the loader wrote would be
/// copied again on the guest's first write to it, and the parent would have
/// to unmap it. The parent's filter is compiled after the fork, while the
/// child boots on the other core.
fn supervise(
    mut setup: Setup,
    waitset: Waitset,
    filter: &seccompiler::BpfProgram,
) -> Result<u8, TenderError> {
    let boot = boot_info(&setup, &waitset);
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork in a single-threaded process: the child may use the
    // allocator and everything else, as the parent could.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(TenderError::last_os("fork"));
    }
    if pid == 0 {
        // SAFETY: asking to be killed with our parent is always allowed;
        // if the parent is already gone, nobody would report: leave.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
        }
        let Err(e) = boot_guest(&setup, &boot, filter);
        // The parent reports the child's status 1, as for any tender error.
        eprintln!("{}: {e}", Spt::NAME);
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(morgana_abi::EXIT_TENDER_ERROR.into()) };
    }
    // The parent needs none of the guest's resources: close the devices,
    // the epoll set and the timerfd, and confine itself to waiting for the
    // child and reporting. The trace file is kept to the end (closing its
    // descriptor is forbidden once confined).
    let trace: Option<&'static crate::trace::TraceFile> =
        setup.trace.take().map(|t| &*Box::leak(Box::new(t)));
    drop(setup);
    drop(waitset);
    crate::sandbox::install(&seccomp::parent_filter()?)?;

    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(TenderError::last_os("waitpid"));
        }
    }
    if libc::WIFEXITED(status) {
        let s = libc::WEXITSTATUS(status) as u8;
        if let Some(t) = trace {
            t.set_end(crate::trace::end_exited(s));
        }
        return Ok(s);
    }
    let sig = libc::WTERMSIG(status);
    if let Some(t) = trace {
        t.set_end(morgana_abi::trace::END_SIGNAL | (sig as u64 & 0xff) << 8);
    }
    eprintln!(
        "morgana-spt: guest killed by {} (signal {sig})",
        signal_name(sig)
    );
    Ok((128 + sig) as u8)
}

/// In the child: sets up guest memory, confines the process and jumps to
/// the guest. Returns only on failure, before the guest has run.
fn boot_guest(
    setup: &Setup,
    boot: &[u8],
    filter: &seccompiler::BpfProgram,
) -> Result<std::convert::Infallible, TenderError> {
    let mem = GuestMem::map(setup.mem_size)?;
    mem.load(&setup.image.bytes, &setup.plan)?;
    if let Some(t) = &setup.trace {
        let p = mem.at(t.addr, t.size)?;
        // SAFETY: [addr, addr+size) lies in guest memory (checked by
        // `at`), which is mapped at its own addresses and holds no Rust
        // object.
        unsafe { t.map_over(p)? };
    }
    mem.write(spt::BOOT_INFO_BASE, boot)?;
    let entry = setup.plan.entry;
    let sp = mem.size - 8;
    // The Rust runtime's handlers (SIGSEGV for stack overflows) must
    // not run inside the guest: a fault must kill it with its signal.
    crate::sandbox::default_signals();
    if let Err(e) = seccompiler::apply_filter(filter) {
        return Err(TenderError::Guest(format!(
            "cannot install the seccomp filter: {e}"
        )));
    }
    // SAFETY: the guest's entry point, stack and boot info were set up
    // above per the spt ABI; control never comes back.
    unsafe { launch(sp, entry, spt::BOOT_INFO_BASE) }
}

/// A signal's name and what it means for a guest.
fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSYS => "SIGSYS: it made a system call the seccomp filter forbids",
        libc::SIGSEGV => "SIGSEGV: it accessed memory it may not",
        libc::SIGBUS => "SIGBUS: it accessed memory it may not",
        libc::SIGILL => "SIGILL: it executed an illegal instruction",
        libc::SIGFPE => "SIGFPE: an arithmetic fault",
        libc::SIGTRAP => "SIGTRAP: a breakpoint or trap",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGXCPU => "SIGXCPU: it ran out of CPU time",
        libc::SIGXFSZ => "SIGXFSZ: a file grew beyond its limit",
        _ => "a signal",
    }
}

/// Switches to the guest's stack and jumps to its entry point with the boot
/// info as argument.
///
/// # Safety
/// `sp`, `entry` and `arg` must be the guest's, set up per the spt ABI.
unsafe fn launch(sp: u64, entry: u64, arg: u64) -> ! {
    // SAFETY: per the caller's contract; nothing of ours runs after.
    unsafe {
        std::arch::asm!(
            "mov rsp, {sp}",
            "xor ebp, ebp",
            "jmp {entry}",
            sp = in(reg) sp,
            entry = in(reg) entry,
            in("rdi") arg,
            options(noreturn)
        )
    }
}
