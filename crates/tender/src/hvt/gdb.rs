//! `--gdb=PORT`: a GDB remote-protocol stub (the `gdbstub` crate) for the
//! hvt guest.
//!
//! The tender listens on 127.0.0.1:PORT, waits for gdb before the guest's
//! first instruction, then lets gdb drive the vCPU: registers
//! (`KVM_GET_REGS`/`KVM_SET_REGS`), memory (guest-virtual addresses equal
//! guest-physical ones: the hvt page tables are an identity map), software
//! breakpoints (an `int3` written into the code, caught by KVM with
//! `KVM_GUESTDBG_USE_SW_BP`), single steps (`KVM_GUESTDBG_SINGLESTEP`),
//! continue, and Ctrl-C.
//!
//! Everything runs in the tender's one thread. While the guest runs, the
//! connection raises `SIGIO` when gdb sends something; the handler sets a
//! flag and `immediate_exit` in the vCPU's `kvm_run`, so `KVM_RUN` (or the
//! `ppoll` of a POLL hypercall) returns with `EINTR` and the stub reads the
//! input. When the guest halts, gdb is told its exit status; when it
//! faults, gdb sees a signal (SIGSEGV, SIGILL) and can inspect it, and
//! continuing ends the tender with the usual error report.

use super::{Event, Vm, hypercalls::Devices, kvm_err};
use crate::TenderError;
use gdbstub::common::Signal;
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::stub::run_blocking::{self, BlockingEventLoop, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::breakpoints::{Breakpoints, BreakpointsOps, HwBreakpoint, SwBreakpoint};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::X86_64_SSE;
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use kvm_bindings::{
    KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
    kvm_guest_debug,
};
use kvm_ioctls::VcpuFd;
use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// Whether a debugger is attached (the `SIGIO` handler does nothing
/// after it detached).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Set by the `SIGIO` handler: the debugger's connection has input.
static INTERRUPT: AtomicBool = AtomicBool::new(false);
/// `kvm_run.immediate_exit` of the vCPU, for the `SIGIO` handler.
static IMMEDIATE_EXIT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());

/// Whether the debugger has sent input that has not been looked at
/// (always false without `--gdb`). A POLL hypercall returns early then.
pub fn interrupt_pending() -> bool {
    INTERRUPT.load(Ordering::SeqCst)
}

/// Takes the pending-input flag.
pub(super) fn take_interrupt() -> bool {
    INTERRUPT.swap(false, Ordering::SeqCst)
}

extern "C" fn on_sigio(_sig: libc::c_int) {
    if !ACTIVE.load(Ordering::SeqCst) {
        return;
    }
    INTERRUPT.store(true, Ordering::SeqCst);
    let p = IMMEDIATE_EXIT.load(Ordering::SeqCst);
    if !p.is_null() {
        // SAFETY: `p` points into the vCPU's kvm_run mapping, which lives
        // as long as the process (the VM is never dropped once it runs).
        unsafe { p.write_volatile(1) };
    }
}

/// Binds 127.0.0.1:`port` (before anything else, so a port in use is
/// reported at once).
pub(super) fn listen(port: u16) -> Result<TcpListener, TenderError> {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        .map_err(|e| TenderError::Debug(format!("--gdb: cannot listen on 127.0.0.1:{port}: {e}")))
}

/// Waits for gdb to connect.
pub(super) fn accept(listener: TcpListener) -> Result<TcpStream, TenderError> {
    let port = listener.local_addr().map_or(0, |a| a.port());
    eprintln!(
        "morgana-hvt: waiting for gdb on 127.0.0.1:{port} (gdb IMAGE -ex 'target remote :{port}')"
    );
    let (conn, peer) = listener.accept().map_err(|e| TenderError::Host {
        what: "--gdb: accepting the debugger's connection".into(),
        source: e,
    })?;
    eprintln!("morgana-hvt: gdb connected from {peer}");
    conn.set_nodelay(true).map_err(|e| TenderError::Host {
        what: "--gdb: configuring the connection".into(),
        source: e,
    })?;
    Ok(conn)
}

/// Arranges for input on `conn` to interrupt the vCPU: a `SIGIO` handler
/// (installed after the tender reset its signals) and `O_ASYNC` on the
/// socket.
pub(super) fn prepare(conn: &TcpStream, vcpu: &mut VcpuFd) -> Result<(), TenderError> {
    let run = vcpu.get_kvm_run();
    IMMEDIATE_EXIT.store(&mut run.immediate_exit, Ordering::SeqCst);
    ACTIVE.store(true, Ordering::SeqCst);
    let fd = conn.as_raw_fd();
    // SAFETY: installing a handler that only touches atomics and the
    // kvm_run mapping; sa_flags without SA_RESTART so that KVM_RUN and
    // ppoll return EINTR. Then plain fcntl calls on our own socket.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigio as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGIO, &sa, std::ptr::null_mut()) != 0 {
            return Err(TenderError::last_os("--gdb: installing the SIGIO handler"));
        }
        if libc::fcntl(fd, libc::F_SETOWN, libc::getpid()) != 0 {
            return Err(TenderError::last_os("--gdb: F_SETOWN on the connection"));
        }
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_ASYNC) != 0 {
            return Err(TenderError::last_os("--gdb: O_ASYNC on the connection"));
        }
    }
    Ok(())
}

/// The connection, with `recv`/`send` only (the calls the seccomp filter
/// allows on it). It does not own the socket: closing it is forbidden once
/// the tender is confined.
struct Conn(RawFd);

impl Conn {
    fn fd(&self) -> RawFd {
        self.0
    }

    fn recv(&self, flags: libc::c_int) -> io::Result<Option<u8>> {
        let mut b = 0u8;
        loop {
            // SAFETY: a one-byte buffer we own.
            let n = unsafe { libc::recv(self.fd(), (&raw mut b).cast(), 1, flags) };
            if n == 1 {
                return Ok(Some(b));
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }
}

impl Connection for Conn {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.write_all(&[byte])
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            // SAFETY: sending from a slice we borrow.
            let n = unsafe {
                libc::send(
                    self.fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            buf = &buf[n as usize..];
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ConnectionExt for Conn {
    fn read(&mut self) -> io::Result<u8> {
        loop {
            if let Some(b) = self.recv(0)? {
                return Ok(b);
            }
        }
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        self.recv(libc::MSG_PEEK | libc::MSG_DONTWAIT)
    }
}

/// How the guest is to be resumed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    Continue,
    Step,
}

/// The guest as gdb sees it.
struct Guest<'a> {
    vm: &'a mut Vm,
    devs: &'a mut Devices,
    /// Software breakpoints: address and the byte the `int3` replaced.
    breakpoints: BTreeMap<u64, u8>,
    /// Hardware breakpoints: the addresses in DR0-DR3.
    hw: [Option<u64>; 4],
    resume: Resume,
    /// A fault gdb has been told about (as a signal); resuming ends the
    /// tender with it.
    fault: Option<TenderError>,
}

impl Guest<'_> {
    fn set_debug(&self, step: bool) -> Result<(), TenderError> {
        let mut control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP;
        if step {
            control |= KVM_GUESTDBG_SINGLESTEP;
        }
        let mut dbg = kvm_guest_debug {
            control,
            ..Default::default()
        };
        if self.hw.iter().any(Option::is_some) {
            dbg.control |= KVM_GUESTDBG_USE_HW_BP;
            let mut dr7 = 0u64;
            for (i, a) in self.hw.iter().enumerate() {
                if let Some(a) = a {
                    dbg.arch.debugreg[i] = *a;
                    // Local enable; R/W and LEN 0: break on execution.
                    dr7 |= 1 << (2 * i);
                }
            }
            dbg.arch.debugreg[7] = dr7;
        }
        self.vm
            .vcpu
            .set_guest_debug(&dbg)
            .map_err(|e| kvm_err("set guest debug", e))
    }

    /// Guest-virtual `[addr, addr + len)` as guest-physical: the identity
    /// map covers `[0x10000, mem_size)`.
    fn check(&self, addr: u64, len: usize) -> Result<(), TargetError<TenderError>> {
        match addr.checked_add(len as u64) {
            Some(end) if addr >= morgana_abi::GUEST_MIN_BASE && end <= self.vm.mem.size() => Ok(()),
            _ => Err(TargetError::Errno(libc::EFAULT as u8)),
        }
    }
}

impl Target for Guest<'_> {
    type Arch = X86_64_SSE;
    type Error = TenderError;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for Guest<'_> {
    fn read_registers(&mut self, regs: &mut X86_64CoreRegs) -> TargetResult<(), Self> {
        let r = self
            .vm
            .vcpu
            .get_regs()
            .map_err(|e| TargetError::Fatal(kvm_err("get registers", e)))?;
        let s = self
            .vm
            .vcpu
            .get_sregs()
            .map_err(|e| TargetError::Fatal(kvm_err("get sregs", e)))?;
        regs.regs = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ];
        regs.rip = r.rip;
        regs.eflags = r.rflags as u32;
        regs.segments.cs = s.cs.selector.into();
        regs.segments.ss = s.ss.selector.into();
        regs.segments.ds = s.ds.selector.into();
        regs.segments.es = s.es.selector.into();
        regs.segments.fs = s.fs.selector.into();
        regs.segments.gs = s.gs.selector.into();
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86_64CoreRegs) -> TargetResult<(), Self> {
        let mut r = self
            .vm
            .vcpu
            .get_regs()
            .map_err(|e| TargetError::Fatal(kvm_err("get registers", e)))?;
        let g = &regs.regs;
        (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp) =
            (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
        (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) =
            (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
        r.rip = regs.rip;
        r.rflags = (r.rflags & !0xffff_ffff) | u64::from(regs.eflags);
        self.vm
            .vcpu
            .set_regs(&r)
            .map_err(|e| TargetError::Fatal(kvm_err("set registers", e)))
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        self.check(start, data.len())?;
        let p = self
            .vm
            .mem
            .ptr("debugger read", start, data.len() as u64)
            .map_err(|_| TargetError::Errno(libc::EFAULT as u8))?;
        // SAFETY: [p, p+len) lies in guest memory (checked above).
        unsafe { std::ptr::copy_nonoverlapping(p, data.as_mut_ptr(), data.len()) };
        // gdb must see the code as it is, not the breakpoints in it.
        let end = start + data.len() as u64;
        for (&a, &orig) in self.breakpoints.range(start..end) {
            data[(a - start) as usize] = orig;
        }
        Ok(data.len())
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        self.check(start, data.len())?;
        self.vm
            .mem
            .poke(start, data)
            .map_err(|_| TargetError::Errno(libc::EFAULT as u8))
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for Guest<'_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), TenderError> {
        self.resume = Resume::Continue;
        self.set_debug(false)
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for Guest<'_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), TenderError> {
        self.resume = Resume::Step;
        self.set_debug(true)
    }
}

impl Breakpoints for Guest<'_> {
    fn support_sw_breakpoint(
        &mut self,
    ) -> Option<gdbstub::target::ext::breakpoints::SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(
        &mut self,
    ) -> Option<gdbstub::target::ext::breakpoints::HwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl HwBreakpoint for Guest<'_> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.hw.contains(&Some(addr)) {
            return Ok(true);
        }
        let Some(slot) = self.hw.iter_mut().find(|s| s.is_none()) else {
            return Ok(false);
        };
        *slot = Some(addr);
        Ok(true)
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let Some(slot) = self.hw.iter_mut().find(|s| **s == Some(addr)) else {
            return Ok(false);
        };
        *slot = None;
        Ok(true)
    }
}

impl SwBreakpoint for Guest<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.breakpoints.contains_key(&addr) {
            return Ok(true);
        }
        self.check(addr, 1)?;
        let p = self
            .vm
            .mem
            .ptr("breakpoint", addr, 1)
            .map_err(|_| TargetError::Errno(libc::EFAULT as u8))?;
        // SAFETY: one byte of guest memory (checked above).
        let orig = unsafe { p.read() };
        if self.vm.mem.poke(addr, &[0xcc]).is_err() {
            return Ok(false);
        }
        self.breakpoints.insert(addr, orig);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let Some(orig) = self.breakpoints.remove(&addr) else {
            return Ok(false);
        };
        self.vm
            .mem
            .poke(addr, &[orig])
            .map_err(|_| TargetError::Errno(libc::EFAULT as u8))?;
        Ok(true)
    }
}

/// The signal gdb is shown for a fatal guest error.
fn fault_signal(e: &TenderError) -> Signal {
    match e {
        TenderError::GuestFault(_) | TenderError::GuestAccess(_) => Signal::SIGSEGV,
        _ => Signal::SIGILL,
    }
}

struct EventLoop<'a>(std::marker::PhantomData<&'a ()>);

type StopReason = SingleThreadStopReason<u64>;

impl<'a> BlockingEventLoop for EventLoop<'a> {
    type Target = Guest<'a>;
    type Connection = Conn;
    type StopReason = StopReason;

    fn wait_for_stop_reason(
        target: &mut Guest<'a>,
        conn: &mut Conn,
    ) -> Result<run_blocking::Event<StopReason>, WaitForStopReasonError<TenderError, io::Error>>
    {
        if let Some(e) = &target.fault {
            // Resumed after a fault: the guest cannot go on.
            return Ok(run_blocking::Event::TargetStopped(StopReason::Terminated(
                fault_signal(e),
            )));
        }
        loop {
            if conn
                .peek()
                .map_err(WaitForStopReasonError::Connection)?
                .is_some()
            {
                let b = conn.read().map_err(WaitForStopReasonError::Connection)?;
                return Ok(run_blocking::Event::IncomingData(b));
            }
            let ev = target.vm.run_until_event(target.devs, true);
            let stop = match ev {
                Ok(Event::Interrupted) => continue,
                Ok(Event::Halt(status)) => StopReason::Exited(status),
                Ok(Event::Debug(arch)) => {
                    if arch.exception == 3 || target.breakpoints.contains_key(&arch.pc) {
                        StopReason::SwBreak(())
                    } else if arch.dr6 & 0xf != 0 && target.hw.contains(&Some(arch.pc)) {
                        StopReason::HwBreak(())
                    } else if target.resume == Resume::Step {
                        StopReason::DoneStep
                    } else {
                        StopReason::Signal(Signal::SIGTRAP)
                    }
                }
                Err(e) => {
                    let sig = fault_signal(&e);
                    eprintln!(
                        "morgana-hvt: the guest stopped on an error (gdb sees {sig}); \
                         continuing ends the guest and reports it"
                    );
                    target.fault = Some(e);
                    StopReason::Signal(sig)
                }
            };
            return Ok(run_blocking::Event::TargetStopped(stop));
        }
    }

    fn on_interrupt(_target: &mut Guest<'a>) -> Result<Option<StopReason>, TenderError> {
        Ok(Some(StopReason::Signal(Signal::SIGINT)))
    }
}

/// Serves gdb on `conn` until the guest exits (its status), gdb kills it,
/// or gdb detaches (the guest then runs on to its end without it).
pub(super) fn serve(vm: &mut Vm, devs: &mut Devices, conn: &TcpStream) -> Result<u8, TenderError> {
    let mut guest = Guest {
        vm,
        devs,
        breakpoints: BTreeMap::new(),
        hw: [None; 4],
        resume: Resume::Continue,
        fault: None,
    };
    guest.set_debug(false)?;
    let reason = GdbStub::new(Conn(conn.as_raw_fd())).run_blocking::<EventLoop<'_>>(&mut guest);
    match reason {
        Ok(DisconnectReason::TargetExited(status)) => Ok(status),
        Ok(DisconnectReason::Kill) => {
            Err(TenderError::Debug("the debugger killed the guest".into()))
        }
        Ok(DisconnectReason::TargetTerminated(sig)) => Err(guest
            .fault
            .take()
            .unwrap_or_else(|| TenderError::Debug(format!("the guest was terminated with {sig}")))),
        Ok(DisconnectReason::Disconnect) => {
            if let Some(e) = guest.fault.take() {
                return Err(e);
            }
            guest.hw = [None; 4];
            for (addr, orig) in std::mem::take(&mut guest.breakpoints) {
                guest.vm.mem.poke(addr, &[orig])?;
            }
            guest
                .vm
                .vcpu
                .set_guest_debug(&kvm_guest_debug::default())
                .map_err(|e| kvm_err("set guest debug", e))?;
            ACTIVE.store(false, Ordering::SeqCst);
            INTERRUPT.store(false, Ordering::SeqCst);
            guest.vm.vcpu.set_kvm_immediate_exit(0);
            eprintln!("morgana-hvt: gdb detached; the guest runs on");
            guest.vm.run(guest.devs)
        }
        Err(e) => {
            if e.is_target_error() {
                Err(e.into_target_error().expect("a target error"))
            } else {
                Err(TenderError::Debug(format!("gdb connection: {e}")))
            }
        }
    }
}
