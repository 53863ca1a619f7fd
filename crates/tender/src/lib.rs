//! Morgana's tenders: the host programs that load a unikernel image and
//! serve it.
//!
//! * `morgana-hvt` ([`hvt`]) runs the image in a KVM virtual machine and
//!   serves the Solo5 hvt hypercalls;
//! * `morgana-spt` ([`spt`]) runs the image inside its own process, confined
//!   by a seccomp filter, per the Solo5 spt ABI.
//!
//! Both share the command line (`--mem`, `--net:NAME=IFACE`, ...), the ELF
//! loader and its checks ([`elf`]), note and manifest validation
//! ([`image`]) and device attachment (`morgana-host`). Every error a user
//! can cause ends the tender with status 1 and a one-line message.

use morgana_abi::note::AbiTarget;
use morgana_host::args::{self, Scan};
use morgana_host::attach::{self, Attached};
use std::io::Write;
use thiserror::Error;

pub mod elf;
pub mod hvt;
pub mod image;
pub mod sandbox;
pub mod spt;
pub mod trace;

/// Everything a monitor needs to start the guest, validated.
#[derive(Debug)]
pub struct Setup {
    /// The image and its manifest.
    pub image: image::Image,
    /// Where its segments go.
    pub plan: elf::LoadPlan,
    /// Attached devices; `attached.manifest` is the guest's copy.
    pub attached: Attached,
    /// Guest memory size in bytes.
    pub mem_size: u64,
    /// The guest's command line.
    pub cmdline: String,
    /// The tender's own debugging options.
    pub debug: DebugOpts,
    /// With `--trace`: the trace file, created, to map over the guest's buffer.
    pub trace: Option<trace::TraceFile>,
}

/// Options of Morgana's tenders that are not Solo5's: debugging and
/// tracing. They come before the image, like the device options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugOpts {
    /// `--gdb=PORT`: wait for gdb on 127.0.0.1:PORT before the guest's
    /// first instruction (hvt only).
    pub gdb: Option<u16>,
    /// `--trace=FILE`: write the guest's trace buffer to FILE.
    pub trace: Option<std::path::PathBuf>,
}

/// Takes the tender's own options (`--gdb=PORT`, `--trace=FILE`) out of
/// the options before the image; everything else is left for Solo5's
/// parser.
pub fn split_debug_opts(argv: &[String]) -> Result<(DebugOpts, Vec<String>), TenderError> {
    let mut opts = DebugOpts::default();
    let mut rest = Vec::with_capacity(argv.len());
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--" || !a.starts_with('-') {
            rest.push(a.clone());
            rest.extend(it.cloned());
            break;
        }
        if let Some(v) = a.strip_prefix("--gdb=") {
            let port = v.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                TenderError::Debug(format!(
                    "malformed argument to --gdb: `{v}' (expected a TCP port, 1 to 65535)"
                ))
            })?;
            opts.gdb = Some(port);
        } else if let Some(v) = a.strip_prefix("--trace=") {
            if v.is_empty() {
                return Err(TenderError::Debug(
                    "missing file name in `--trace=' (expected --trace=FILE)".into(),
                ));
            }
            opts.trace = Some(v.into());
        } else {
            rest.push(a.clone());
        }
    }
    Ok((opts, rest))
}

/// A tender error: reported on one line, exit status 1.
#[derive(Debug, Error)]
pub enum TenderError {
    /// Bad command line.
    #[error(transparent)]
    Args(#[from] args::ArgError),
    /// Bad image.
    #[error("{path}: {source}")]
    Image {
        /// The image path.
        path: String,
        /// What is wrong with it.
        source: image::ImageError,
    },
    /// The image does not fit its memory.
    #[error("{path}: {source}")]
    Load {
        /// The image path.
        path: String,
        /// What is wrong with it.
        source: elf::ElfError,
    },
    /// A device could not be attached.
    #[error(transparent)]
    Attach(#[from] attach::AttachError),
    /// Bad memory size.
    #[error("{0}")]
    Memory(String),
    /// The guest command line does not fit.
    #[error("{0}")]
    Cmdline(String),
    /// The guest passed a pointer or length outside its memory.
    #[error("invalid guest access: {0}")]
    GuestAccess(String),
    /// The guest faulted in a way only the tender can see.
    #[error("guest memory fault: {0}")]
    GuestFault(String),
    /// Something the guest did that the tender cannot serve.
    #[error("{0}")]
    Guest(String),
    /// A debugging or tracing option that cannot be honoured.
    #[error("{0}")]
    Debug(String),
    /// A host system failure.
    #[error("{what}: {source}")]
    Host {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl TenderError {
    /// A host error for `what`, from the last OS error.
    pub fn last_os(what: impl Into<String>) -> Self {
        Self::Host {
            what: what.into(),
            source: std::io::Error::last_os_error(),
        }
    }
}

/// A way to run a guest: the hvt or the spt monitor.
pub trait Monitor {
    /// The ABI target this monitor runs.
    const TARGET: AbiTarget;
    /// The ABI version it implements.
    const ABI_VERSION: u32;
    /// The program name (`morgana-hvt`).
    const NAME: &'static str;
    /// One line per monitor-specific note for `--help`.
    const HELP: &'static str;
    /// Whether `--gdb` is supported.
    const GDB: bool;
    /// Whether the monitor grants an image's request for virtio-net
    /// headers and offloads on its taps (`morgana_abi::offload`).
    const NET_OFFLOAD: bool;

    /// Rounds and checks a requested memory size.
    fn mem_size(requested: u64) -> Result<u64, TenderError>;

    /// Runs the guest to completion; returns its exit status.
    fn run(setup: Setup) -> Result<u8, TenderError>;
}

fn usage<M: Monitor>() -> String {
    format!(
        "usage: {name} [OPTIONS] [--] UNIKERNEL [ARGS...]\n\
         Runs a Solo5 {target} unikernel (ABI version {abi}).\n\
         \n\
         Options:\n\
         \x20 --mem=MiB                     guest memory (default 512)\n\
         \x20 --net:NAME=IFACE              attach tap interface IFACE (or @FD) as network device NAME\n\
         \x20 --net-mac:NAME=MAC            set the MAC address of network device NAME\n\
         \x20 --block:NAME=PATH             attach file PATH as block device NAME\n\
         \x20 --block-sector-size:NAME=N    sector size of block device NAME (power of two >= 512, default 512)\n\
         \x20 --no-net-offload              plain frames on every tap, even if the unikernel asks for offloads\n\
         \x20 --gdb=PORT                    wait for gdb on 127.0.0.1:PORT before the first guest instruction (hvt)\n\
         \x20 --trace=FILE                  write the guest's trace buffer to FILE (kept after a crash or kill)\n\
         \x20 --help                        show this help\n\
         \x20 --version                     show the version and ABI version\n\
         \n\
         Every device the unikernel declares must be attached; ARGS are its command line.\n\
         {help}\n\
         Exit status: the guest's status; 255 if it aborts; 1 on a tender error.",
        name = M::NAME,
        target = M::TARGET.name(),
        abi = M::ABI_VERSION,
        help = M::HELP,
    )
}

/// Validates everything from the command line up to a [`Setup`].
pub fn prepare<M: Monitor>(argv: &[String]) -> Result<Setup, TenderError> {
    let (debug, argv) = split_debug_opts(argv)?;
    if debug.gdb.is_some() && !M::GDB {
        return Err(TenderError::Debug(format!(
            "--gdb is not supported by {}: debug spt images with gdb on the tender process, or use morgana-hvt",
            M::NAME
        )));
    }
    let opts = args::parse(&argv)?;
    let path = opts.image.clone();
    let image =
        image::open(&path, M::TARGET, M::ABI_VERSION).map_err(|source| TenderError::Image {
            path: path.clone(),
            source,
        })?;
    // The image's offload request (morgana_abi::offload), granted by the
    // monitors that carry virtio-net headers, unless refused.
    let offload = if M::NET_OFFLOAD && !opts.no_net_offload {
        elf::section_bytes(&image.bytes, morgana_abi::offload::SECTION)
            .and_then(morgana_abi::offload::Request::parse)
            .unwrap_or(0)
    } else {
        0
    };
    let attached = attach::attach_devices_offload(&image.manifest, &opts.devices, offload)?;
    let mem_size = M::mem_size(opts.mem.unwrap_or(morgana_abi::DEFAULT_MEM_SIZE))?;
    let plan =
        elf::plan(&image.bytes, mem_size).map_err(|source| TenderError::Load { path, source })?;
    let cmdline = args::guest_cmdline(&opts.guest_args).map_err(TenderError::Cmdline)?;
    let trace = debug
        .trace
        .as_deref()
        .map(|p| trace::TraceFile::create(p, &image.bytes, &plan))
        .transpose()?;
    Ok(Setup {
        image,
        plan,
        attached,
        mem_size,
        cmdline,
        debug,
        trace,
    })
}

/// The `main` of a tender binary. Exits the process directly (a guest may
/// have confined the tender with seccomp, so the usual runtime clean-up at
/// the end of `main` must not run).
///
/// The tender binaries call this from a C `main` (`#![no_main]`), skipping
/// the standard library's start-up, which costs about 0.3 ms of a 1 ms spt
/// boot. Of that start-up this keeps what matters to a tender: descriptors
/// 0, 1 and 2 are open (on `/dev/null` if they were closed, so that a device
/// never gets descriptor 1, the guest's console) and `SIGPIPE` is ignored (a
/// closed stdout loses output, it does not kill the tender). What is lost is
/// the stack-overflow message: an overflow is a plain `SIGSEGV`.
/// Command-line arguments still come from `std::env::args_os` (glibc hands
/// them to the standard library before `main`).
pub fn main<M: Monitor>() -> ! {
    sandbox::stdio_and_sigpipe();
    let code = run_main::<M>();
    let _ = std::io::stdout().flush();
    // `std::process::exit` would run the runtime's clean-up (sigaltstack,
    // munmap), which the seccomp filter forbids: exit directly.
    // SAFETY: _exit ends the process; nothing runs after it.
    unsafe { libc::_exit(code.into()) }
}

fn run_main<M: Monitor>() -> u8 {
    let mut argv = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => argv.push(s),
            Err(a) => return fail::<M>(&format!("argument is not UTF-8: {a:?}")),
        }
    }
    match args::scan(&argv) {
        Scan::Help => {
            println!("{}", usage::<M>());
            return 0;
        }
        Scan::Version => {
            println!(
                "{} {} (Solo5 {} ABI version {})",
                M::NAME,
                env!("CARGO_PKG_VERSION"),
                M::TARGET.name(),
                M::ABI_VERSION
            );
            return 0;
        }
        Scan::MissingImage => {
            return fail::<M>(&args::ArgError::MissingImage.to_string());
        }
        Scan::Image(_) => {}
    }
    match prepare::<M>(&argv).and_then(M::run) {
        Ok(status) => status,
        Err(e) => fail::<M>(&e.to_string()),
    }
}

fn fail<M: Monitor>(msg: &str) -> u8 {
    let _ = writeln!(std::io::stderr(), "{}: {msg}", M::NAME);
    morgana_abi::EXIT_TENDER_ERROR
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn debug_options_are_taken_before_the_image_only() {
        let (o, rest) = split_debug_opts(&v(&[
            "--mem=8",
            "--gdb=1234",
            "--trace=/tmp/t",
            "img",
            "--gdb=1",
        ]))
        .unwrap();
        assert_eq!(o.gdb, Some(1234));
        assert_eq!(o.trace.as_deref(), Some(std::path::Path::new("/tmp/t")));
        // The guest's own arguments are left alone.
        assert_eq!(rest, v(&["--mem=8", "img", "--gdb=1"]));
        let (o, rest) = split_debug_opts(&v(&["--", "--gdb=1"])).unwrap();
        assert_eq!(o, DebugOpts::default());
        assert_eq!(rest, v(&["--", "--gdb=1"]));
        for bad in ["--gdb=0", "--gdb=65536", "--gdb=", "--gdb=x1"] {
            let e = split_debug_opts(&v(&[bad, "img"])).unwrap_err();
            assert!(
                e.to_string().starts_with("malformed argument to --gdb"),
                "{e}"
            );
        }
        assert!(split_debug_opts(&v(&["--trace=", "img"])).is_err());
    }
}
