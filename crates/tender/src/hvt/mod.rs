//! `morgana-hvt`: runs a Solo5 hvt unikernel in a KVM virtual machine.
//!
//! Set-up follows the hvt ABI to the byte (see `morgana_abi::hvt`): one
//! memory slot at guest-physical 0, the tender's GDT and identity-mapped page
//! tables, long mode, `rip = e_entry`, `rsp = mem_size - 8`,
//! `rdi = &boot_info`. Then the tender confines itself with seccomp and
//! serves hypercalls until the guest halts. `host_features` is 0: ring I/O
//! is not offered, so guests use the hypercalls.

mod gdb;
pub mod hypercalls;
pub mod memory;
mod seccomp;

use crate::{Monitor, Setup, TenderError};
use hypercalls::Devices;
use kvm_bindings::{
    KVM_MAX_CPUID_ENTRIES, kvm_regs, kvm_segment, kvm_sregs, kvm_userspace_memory_region,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};
use memory::GuestMem;
use morgana_abi::hvt::{self, BootInfo, Hypercall, x86};
use morgana_abi::note::AbiTarget;
use std::os::fd::AsRawFd;

/// The hvt monitor.
pub struct Hvt;

impl Monitor for Hvt {
    const TARGET: AbiTarget = AbiTarget::Hvt;
    const ABI_VERSION: u32 = hvt::ABI_VERSION;
    const NAME: &'static str = "morgana-hvt";
    const HELP: &'static str =
        "Needs /dev/kvm. Guest memory is rounded down to 2 MiB (at most 4096 MiB).";
    const NET_OFFLOAD: bool = true;
    const GDB: bool = true;

    fn mem_size(requested: u64) -> Result<u64, TenderError> {
        let mut mem = requested / x86::GUEST_PAGE_SIZE * x86::GUEST_PAGE_SIZE;
        if mem == 0 {
            mem = x86::MIN_MEM_SIZE;
        }
        if mem > x86::MAX_MEM_SIZE {
            return Err(TenderError::Memory(format!(
                "guest memory of {} MiB exceeds the maximum of {} MiB",
                mem >> 20,
                x86::MAX_MEM_SIZE >> 20
            )));
        }
        if mem != requested {
            eprintln!("{}: adjusting memory to {mem} bytes", Self::NAME);
        }
        Ok(mem)
    }

    fn run(setup: Setup) -> Result<u8, TenderError> {
        let listener = setup.debug.gdb.map(gdb::listen).transpose()?;
        let mut vm = Vm::new(&setup)?;
        let mut devs = Devices::new(&setup.attached);
        let conn = listener.map(gdb::accept).transpose()?;
        crate::sandbox::default_signals();
        if let Some(c) = &conn {
            gdb::prepare(c, &mut vm.vcpu)?;
        }
        seccomp::confine(
            vm.vcpu.as_raw_fd(),
            &devs,
            conn.as_ref().map(|c| c.as_raw_fd()),
        )?;

        let status = match conn {
            Some(c) => {
                let status = gdb::serve(&mut vm, &mut devs, &c);
                std::mem::forget(c);
                status
            }
            None => vm.run(&mut devs),
        };
        // Once confined, nothing may be closed or unmapped: the process
        // exits right after, and the kernel reclaims everything.
        if let Some(t) = &setup.trace {
            t.set_end(match &status {
                Ok(s) => crate::trace::end_exited(*s),
                Err(_) => morgana_abi::trace::END_ERROR,
            });
        }
        std::mem::forget(vm);
        std::mem::forget(setup);
        status
    }
}

fn kvm_err(what: &str, e: kvm_ioctls::Error) -> TenderError {
    TenderError::Host {
        what: format!("KVM: {what}"),
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

/// Why the vCPU stopped running.
enum Event {
    /// The guest halted with this status.
    Halt(u8),
    /// A breakpoint or single-step exit (only with the debugger).
    Debug(kvm_bindings::kvm_debug_exit_arch),
    /// The debugger's connection has input (a Ctrl-C).
    Interrupted,
}

/// A configured virtual machine, ready to run.
struct Vm {
    // Field order is drop order: the vCPU and VM go before guest memory.
    vcpu: VcpuFd,
    _vm: kvm_ioctls::VmFd,
    _kvm: Kvm,
    mem: GuestMem,
}

impl Vm {
    fn new(setup: &Setup) -> Result<Self, TenderError> {
        let kvm = Kvm::new().map_err(|e| TenderError::Host {
            what: "cannot open /dev/kvm".into(),
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
        let api = kvm.get_api_version();
        if api != 12 {
            return Err(TenderError::Guest(format!(
                "KVM API version is {api}, morgana-hvt requires 12"
            )));
        }
        let vm = kvm.create_vm().map_err(|e| kvm_err("create VM", e))?;
        let mut mem = GuestMem::new(setup.mem_size)?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: setup.mem_size,
            userspace_addr: mem.host_base() as u64,
        };
        // SAFETY: the region is our own mapping of mem_size bytes; it lives
        // in `Vm` next to the VM fd and is dropped after it (field order).
        unsafe { vm.set_user_memory_region(region) }.map_err(|e| kvm_err("set guest memory", e))?;

        mem.write("low memory", 0, &memory::low_memory(setup.mem_size))?;
        mem.load(&setup.image.bytes, &setup.plan)?;
        if let Some(t) = &setup.trace {
            mem.check("trace buffer", t.addr, t.size)?;
            // SAFETY: [addr, addr+size) lies in guest memory (checked just
            // now), our own mapping at host_base(), which holds no Rust object.
            unsafe { t.map_over(mem.host_base().wrapping_add(t.addr as usize))? };
        }
        write_boot_info(&mem, setup)?;

        let vcpu = vm.create_vcpu(0).map_err(|e| kvm_err("create vCPU", e))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| kvm_err("get supported CPUID", e))?;
        vcpu.set_cpuid2(&cpuid)
            .map_err(|e| kvm_err("set CPUID", e))?;
        set_long_mode(&vcpu)?;
        let freq = vcpu
            .get_tsc_khz()
            .map_err(|e| kvm_err("get TSC frequency", e))? as u64
            * 1000;
        mem.write_u64(
            "boot info",
            hvt::BOOT_INFO_BASE,
            BootInfo::CPU_CYCLE_FREQ_OFF,
            freq,
        )?;
        let regs = kvm_regs {
            rip: setup.plan.entry,
            rflags: x86::RFLAGS_INIT,
            rsp: setup.mem_size - 8,
            rdi: hvt::BOOT_INFO_BASE,
            ..Default::default()
        };
        vcpu.set_regs(&regs)
            .map_err(|e| kvm_err("set registers", e))?;
        Ok(Self {
            vcpu,
            _vm: vm,
            _kvm: kvm,
            mem,
        })
    }

    fn run(&mut self, devs: &mut Devices) -> Result<u8, TenderError> {
        match self.run_until_event(devs, false)? {
            Event::Halt(status) => Ok(status),
            Event::Debug(_) | Event::Interrupted => Err(TenderError::Guest(format!(
                "unexpected VM exit: debug{}",
                self.report()
            ))),
        }
    }

    /// Runs the vCPU, serving hypercalls, until the guest halts, a debug
    /// exit (breakpoint, single step) or, with `gdb`, an interruption by
    /// the debugger's connection.
    fn run_until_event(&mut self, devs: &mut Devices, gdb: bool) -> Result<Event, TenderError> {
        loop {
            let exit = match self.vcpu.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    if gdb {
                        self.vcpu.set_kvm_immediate_exit(0);
                        if gdb::take_interrupt() {
                            return Ok(Event::Interrupted);
                        }
                    }
                    continue;
                }
                Err(e) if e.errno() == libc::EFAULT => {
                    return Err(TenderError::GuestFault(format!(
                        "host/guest translation fault (a write to read-only memory?){}",
                        self.report()
                    )));
                }
                Err(e) => return Err(kvm_err("run vCPU", e)),
            };
            let (port, gpa) = match exit {
                VcpuExit::IoOut(port, data) if data.len() == 4 => (
                    port,
                    u64::from(u32::from_le_bytes([data[0], data[1], data[2], data[3]])),
                ),
                VcpuExit::Debug(arch) if gdb => return Ok(Event::Debug(arch)),
                VcpuExit::IoOut(port, _) | VcpuExit::IoIn(port, _) => {
                    return Err(TenderError::Guest(format!(
                        "invalid guest port access: port={port:#x}{}",
                        self.report()
                    )));
                }
                VcpuExit::MmioWrite(addr, _) | VcpuExit::MmioRead(addr, _) => {
                    let what = if addr < self.mem.size() {
                        format!("access to read-only guest memory at gpa={addr:#x}")
                    } else {
                        format!("access to unmapped guest-physical address {addr:#x}")
                    };
                    return Err(TenderError::GuestFault(format!("{what}{}", self.report())));
                }
                VcpuExit::MemoryFault { gpa, size, .. } => {
                    return Err(TenderError::GuestFault(format!(
                        "fault at gpa={gpa:#x} size={size}{}",
                        self.report()
                    )));
                }
                VcpuExit::Intr => {
                    if gdb && gdb::take_interrupt() {
                        return Ok(Event::Interrupted);
                    }
                    continue;
                }
                VcpuExit::InternalError => {
                    let sub = self.vcpu.get_kvm_run();
                    // SAFETY: for KVM_EXIT_INTERNAL_ERROR the `internal`
                    // member of the union is the one KVM filled in.
                    let suberror = unsafe { sub.__bindgen_anon_1.internal.suberror };
                    return Err(TenderError::Guest(format!(
                        "unexpected VM exit: KVM internal error, suberror {suberror} (an \
                         instruction KVM could not emulate; on nested KVM any x87/SSE \
                         instruction does this: build guests soft-float){}",
                        self.report()
                    )));
                }
                VcpuExit::Shutdown => {
                    return Err(TenderError::Guest(format!(
                        "unexpected VM exit: shutdown (triple fault){}",
                        self.report()
                    )));
                }
                other => {
                    let name = format!("{other:?}");
                    let name = name
                        .split(['(', ' ', '{'])
                        .next()
                        .unwrap_or("?")
                        .to_string();
                    return Err(TenderError::Guest(format!(
                        "unexpected VM exit: {name}{}",
                        self.report()
                    )));
                }
            };
            let Some(hc) = Hypercall::from_port(port) else {
                return Err(TenderError::Guest(format!(
                    "invalid guest port access: port={port:#x}{}",
                    self.report()
                )));
            };
            if let Some(status) = hypercalls::serve(&self.mem, devs, hc, gpa)? {
                return Ok(Event::Halt(status));
            }
        }
    }

    /// The vCPU's registers, for an error report.
    fn report(&self) -> String {
        let Ok(r) = self.vcpu.get_regs() else {
            return String::from(" (registers unavailable)");
        };
        let s = self.vcpu.get_sregs().unwrap_or_default();
        format!(
            "\n  rip={:#018x} rsp={:#018x} rbp={:#018x} rflags={:#x}\n  \
             rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n  \
             rsi={:#018x} rdi={:#018x} r8={:#018x}  r9={:#018x}\n  \
             cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
            r.rip,
            r.rsp,
            r.rbp,
            r.rflags,
            r.rax,
            r.rbx,
            r.rcx,
            r.rdx,
            r.rsi,
            r.rdi,
            r.r8,
            r.r9,
            s.cr0,
            s.cr2,
            s.cr3,
            s.cr4,
            s.efer
        )
    }
}

fn segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 9 } else { 3 },
        present: 1,
        dpl: 0,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn set_long_mode(vcpu: &VcpuFd) -> Result<(), TenderError> {
    let mut s: kvm_sregs = vcpu.get_sregs().map_err(|e| kvm_err("get sregs", e))?;
    s.cr0 = x86::CR0_INIT;
    s.cr3 = x86::CR3_INIT;
    s.cr4 = x86::CR4_INIT;
    s.efer = x86::EFER_INIT;
    s.cs = segment(x86::SEL_CODE, true);
    let data = segment(x86::SEL_DATA, false);
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.gdt.base = x86::GDT_BASE;
    s.gdt.limit = x86::GDT_LIMIT;
    s.tr = kvm_segment {
        type_: 11,
        present: 1,
        ..Default::default()
    };
    s.ldt = kvm_segment {
        unusable: 1,
        ..Default::default()
    };
    vcpu.set_sregs(&s).map_err(|e| kvm_err("set sregs", e))
}

/// Boot info at 0x10000, the manifest copy after it, the command line after
/// that. `cpu_cycle_freq` is filled in once the vCPU exists.
fn write_boot_info(mem: &GuestMem, setup: &Setup) -> Result<(), TenderError> {
    let mut mft = setup.attached.manifest.clone();
    // The guest has no use for host descriptors: do not leak them.
    for e in mft.entries_mut() {
        e.set_hostfd(0);
    }
    let mut mft_bytes = vec![0u8; mft.encoded_len()];
    mft.encode(&mut mft_bytes);
    let mft_gpa = hvt::BOOT_INFO_BASE + BootInfo::SIZE as u64;
    let cmdline_gpa = mft_gpa + mft_bytes.len() as u64;
    let bi = BootInfo {
        mem_size: setup.mem_size,
        kernel_end: setup.plan.end,
        cpu_cycle_freq: 0,
        cmdline: cmdline_gpa,
        mft: mft_gpa,
        host_features: 0,
        guest_features: 0,
        net_ring: 0,
    };
    mem.write("boot info", hvt::BOOT_INFO_BASE, &bi.to_bytes())?;
    mem.write("manifest", mft_gpa, &mft_bytes)?;
    let mut cmdline = setup.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    mem.write("command line", cmdline_gpa, &cmdline)
}
