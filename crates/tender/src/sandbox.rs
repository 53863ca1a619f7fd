//! Building and installing seccomp allow-lists (with seccompiler, in pure
//! Rust): everything not listed kills the process with `SIGSYS`.

use crate::TenderError;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// An allow-list under construction.
#[derive(Default)]
pub struct AllowList {
    rules: BTreeMap<i64, Vec<SeccompRule>>,
}

fn build_err(e: impl std::fmt::Display) -> TenderError {
    TenderError::Guest(format!("cannot build the seccomp filter: {e}"))
}

/// Argument `arg` (0-based) equals `value` (64-bit compare).
pub fn arg_eq(arg: u8, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)
        .expect("argument index below 6")
}

/// Argument `arg` is at most `value` (64-bit compare).
pub fn arg_le(arg: u8, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Le, value)
        .expect("argument index below 6")
}

/// `(argument arg & mask) == value`.
pub fn arg_masked_eq(arg: u8, mask: u64, value: u64) -> SeccompCondition {
    SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(mask),
        value,
    )
    .expect("argument index below 6")
}

impl AllowList {
    /// Allows `sysno` unconditionally.
    pub fn allow(&mut self, sysno: libc::c_long) -> &mut Self {
        self.rules.insert(sysno, Vec::new());
        self
    }

    /// Allows `sysno` when all `conds` hold (rules for one system call are
    /// alternatives).
    pub fn allow_if(
        &mut self,
        sysno: libc::c_long,
        conds: Vec<SeccompCondition>,
    ) -> Result<&mut Self, TenderError> {
        let rule = SeccompRule::new(conds).map_err(build_err)?;
        self.rules.entry(sysno).or_default().push(rule);
        Ok(self)
    }

    /// Compiles the list: listed calls are allowed, others kill the process.
    pub fn compile(self) -> Result<BpfProgram, TenderError> {
        let f = SeccompFilter::new(
            self.rules,
            SeccompAction::KillProcess,
            SeccompAction::Allow,
            TargetArch::x86_64,
        )
        .map_err(build_err)?;
        f.try_into().map_err(build_err)
    }
}

/// A filter that makes `brk` fail with `ENOMEM` (so that the C allocator
/// falls back to `mmap`) and lets everything else through to the next filter.
pub fn brk_enomem() -> Result<BpfProgram, TenderError> {
    let mut rules = BTreeMap::new();
    rules.insert(libc::SYS_brk, Vec::new());
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOMEM as u32),
        TargetArch::x86_64,
    )
    .map_err(build_err)?;
    f.try_into().map_err(build_err)
}

/// Restores the default action of every signal but `SIGPIPE` (which
/// stays ignored: a closed stdout loses console output, it does not kill).
/// Run before confinement: the Rust runtime's handlers (its SIGSEGV
/// stack-overflow handler, say) make system calls the filter forbids, so a
/// fault would otherwise show up as SIGSYS instead of itself.
pub fn default_signals() {
    for sig in 1..32 {
        let action = if sig == libc::SIGPIPE {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        // SAFETY: setting a disposition; SIGKILL and SIGSTOP just fail.
        unsafe { libc::signal(sig, action) };
    }
}

/// What the standard library's start-up would have done for a tender that
/// skips it: opens `/dev/null` on any of descriptors 0, 1 and 2 that is
/// closed, and ignores `SIGPIPE`.
pub fn stdio_and_sigpipe() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: polling three valid pollfd structures, without waiting.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    if r > 0 {
        for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
            // SAFETY: opening /dev/null; a closed descriptor is the lowest
            // free one, so this fills `p.fd` (lower ones are open or were
            // filled first).
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd != p.fd {
                // Nothing sensible to run with: stop as the runtime would.
                // SAFETY: ending the process.
                unsafe { libc::abort() };
            }
        }
    }
    // SAFETY: setting a disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Installs `prog` on the calling thread (with `no_new_privs`).
pub fn install(prog: &BpfProgram) -> Result<(), TenderError> {
    seccompiler::apply_filter(prog).map_err(|e| TenderError::Host {
        what: format!("cannot install the seccomp filter ({e})"),
        source: std::io::Error::last_os_error(),
    })
}
