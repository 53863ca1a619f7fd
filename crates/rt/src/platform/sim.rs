//! The deterministic test platform of the runtime's unit tests: a virtual
//! monotonic clock that only moves when the scheduler yields, network
//! frames injected at chosen virtual times, in-memory disks, and a log of
//! every platform call, so tests can check the scheduling rules exactly.
//!
//! Tests run one at a time (a lock) on fresh runtime state: use [`run`].

use morgana_abi::Solo5Result;
use morgana_abi::mft::{DeviceDecl, DeviceKind, Manifest};
use std::boxed::Box;
use std::collections::VecDeque;
use std::string::{String, ToString};
use std::sync::{Mutex, MutexGuard};
use std::vec::Vec;

/// The platform's name.
pub const NAME: &str = "sim";

/// Something the platform did, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A yield to the platform: its deadline and the ready set returned.
    Yield {
        /// Virtual time of the call.
        at: u64,
        /// Requested deadline.
        deadline: u64,
        /// Ready set returned.
        ready: u64,
    },
    /// A frame read.
    NetRead(u64),
    /// A frame written.
    NetWrite(u64),
    /// A block read at an offset.
    BlockRead(u64),
    /// A block write at an offset.
    BlockWrite(u64),
    /// A mark a test put in the log (see [`mark`]).
    Mark(String),
}

struct Disk {
    sector: u64,
    data: Vec<u8>,
}

struct Sim {
    now: u64,
    /// Pending frames per handle: (arrival time, bytes).
    frames: Vec<VecDeque<(u64, Vec<u8>)>>,
    sent: Vec<(u64, Vec<u8>)>,
    disks: Vec<Option<Disk>>,
    log: Vec<Event>,
    console: Vec<u8>,
}

static SIM: Mutex<Option<Sim>> = Mutex::new(None);
static SERIAL: Mutex<()> = Mutex::new(());

fn with<R>(f: impl FnOnce(&mut Sim) -> R) -> R {
    let mut g = SIM.lock().unwrap_or_else(|e| e.into_inner());
    f(g.as_mut().expect("inside sim::run"))
}

/// Runs `test` on fresh runtime state with `devices` attached (block
/// devices get 64 sectors of `sector` bytes); tests are serialised.
pub fn run<R>(devices: &[DeviceDecl], sector: u16, test: impl FnOnce() -> R) -> R {
    run_with_cmdline(devices, sector, "", test)
}

/// [`run`] with `cmdline` as the unikernel's command line.
pub fn run_with_cmdline<R>(
    devices: &[DeviceDecl],
    sector: u16,
    cmdline: &'static str,
    test: impl FnOnce() -> R,
) -> R {
    let opts = Options {
        sector,
        cmdline,
        ..Options::default()
    };
    run_with(devices, opts, test)
}

/// How [`run_with`] sets the simulated machine up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Sector size of every block device.
    pub sector: u16,
    /// The unikernel's command line.
    pub cmdline: &'static str,
    /// Network offloads granted on every net device
    /// (`morgana_abi::offload`): frames injected and sent then carry a
    /// virtio-net header, as on a tap that the spt and unix platforms open
    /// with them.
    pub offload: bool,
    /// The contents of every block device (its size rounded down to whole
    /// sectors, at least one); `None`: 64 zero sectors.
    pub disk: Option<Vec<u8>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sector: 512,
            cmdline: "",
            offload: false,
            disk: None,
        }
    }
}

/// [`run`] with everything [`Options`] sets.
pub fn run_with<R>(devices: &[DeviceDecl], opts: Options, test: impl FnOnce() -> R) -> R {
    let Options {
        sector,
        cmdline,
        offload,
        disk,
    } = opts;
    let _serial: MutexGuard<'_, ()> = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut m = Manifest::from_decls(devices).expect("valid declarations");
    let mut disks = Vec::new();
    for (h, e) in m.entries_mut().iter_mut().enumerate() {
        disks.push(None);
        match e.kind() {
            Some(DeviceKind::Net) => {
                e.set_net([2, 0, 0, 0, 0, h as u8], 1500);
                if offload {
                    e.set_vnet_hdr(morgana_abi::offload::VNET_HDR_LEN as u16);
                }
            }
            Some(DeviceKind::Block) => {
                let mut data = disk
                    .clone()
                    .unwrap_or_else(|| std::vec![0; 64 * sector as usize]);
                let n = usize::from(sector);
                data.resize((data.len() / n).max(1) * n, 0);
                e.set_block(data.len() as u64, sector);
                disks[h] = Some(Disk {
                    sector: u64::from(sector),
                    data,
                });
            }
            None => continue,
        }
        e.set_attached(true);
    }
    *SIM.lock().unwrap_or_else(|e| e.into_inner()) = Some(Sim {
        now: 1_000_000_000,
        frames: (0..64).map(|_| VecDeque::new()).collect(),
        sent: Vec::new(),
        disks,
        log: Vec::new(),
        console: Vec::new(),
    });
    crate::exec::reset();
    crate::boot::set_for_test(m, cmdline);
    test()
}

/// Virtual time now.
pub fn now() -> u64 {
    with(|s| s.now)
}

/// Makes a frame arrive on `handle` at virtual time `at`.
pub fn inject(handle: u64, at: u64, frame: &[u8]) {
    with(|s| {
        let q = &mut s.frames[handle as usize];
        q.push_back((at, frame.to_vec()));
        q.make_contiguous().sort_by_key(|f| f.0);
    })
}

/// Puts a mark in the log.
pub fn mark(m: impl Into<String>) {
    with(|s| s.log.push(Event::Mark(m.into())))
}

/// The log so far.
pub fn log() -> Vec<Event> {
    with(|s| s.log.clone())
}

/// Frames written so far, with their virtual times.
pub fn sent() -> Vec<(u64, Vec<u8>)> {
    with(|s| s.sent.clone())
}

/// Console output so far.
pub fn console() -> String {
    with(|s| String::from_utf8_lossy(&s.console).to_string())
}

/// Writes to the captured console.
pub fn console_write(buf: &[u8]) {
    with(|s| s.console.extend_from_slice(buf))
}

/// Virtual monotonic time.
pub fn clock_monotonic() -> u64 {
    now()
}

/// Virtual wall-clock time (2026-11-15 plus monotonic time).
pub fn clock_wall() -> u64 {
    1_795_000_000_000_000_000 + now()
}

/// Returns at once if a frame has arrived; otherwise advances virtual time
/// to the first frame arrival or the deadline, whichever comes first.
pub fn yield_until(deadline: u64) -> u64 {
    with(|s| {
        let at = s.now;
        let arrived = |s: &Sim, t: u64| {
            s.frames
                .iter()
                .enumerate()
                .filter(|(_, q)| q.front().is_some_and(|f| f.0 <= t))
                .fold(0u64, |set, (h, _)| set | (1 << h))
        };
        let mut ready = arrived(s, s.now);
        if ready == 0 {
            let first = s.frames.iter().filter_map(|q| q.front().map(|f| f.0)).min();
            match first {
                Some(t) if t <= deadline => {
                    s.now = s.now.max(t);
                    ready = arrived(s, s.now);
                }
                _ => s.now = s.now.max(deadline),
            }
        }
        s.log.push(Event::Yield {
            at,
            deadline,
            ready,
        });
        ready
    })
}

/// Reads an arrived frame.
pub fn net_read(handle: u64, buf: &mut [u8]) -> Result<usize, Solo5Result> {
    with(|s| {
        let now = s.now;
        let q = s
            .frames
            .get_mut(handle as usize)
            .ok_or(Solo5Result::Einval)?;
        match q.front() {
            Some((t, _)) if *t <= now => {
                let (_, f) = q.pop_front().unwrap();
                let n = f.len().min(buf.len());
                buf[..n].copy_from_slice(&f[..n]);
                s.log.push(Event::NetRead(handle));
                Ok(n)
            }
            _ => Err(Solo5Result::Again),
        }
    })
}

/// Records a written frame.
pub fn net_write(handle: u64, buf: &[u8]) -> Result<(), Solo5Result> {
    with(|s| {
        s.sent.push((s.now, buf.to_vec()));
        s.log.push(Event::NetWrite(handle));
        Ok(())
    })
}

fn disk_io(
    handle: u64,
    offset: u64,
    len: usize,
    f: impl FnOnce(&mut [u8]),
) -> Result<(), Solo5Result> {
    with(|s| {
        let d = s
            .disks
            .get_mut(handle as usize)
            .and_then(Option::as_mut)
            .ok_or(Solo5Result::Einval)?;
        if !morgana_abi::block_request_ok(offset, len as u64, d.data.len() as u64, d.sector) {
            return Err(Solo5Result::Einval);
        }

        f(&mut d.data[offset as usize..offset as usize + len]);
        Ok(())
    })
}

/// Reads a sector from the in-memory disk.
pub fn block_read(handle: u64, offset: u64, buf: &mut [u8]) -> Result<(), Solo5Result> {
    disk_io(handle, offset, buf.len(), |d| buf.copy_from_slice(d))?;
    with(|s| s.log.push(Event::BlockRead(offset)));
    Ok(())
}

/// Writes a sector to the in-memory disk.
pub fn block_write(handle: u64, offset: u64, buf: &[u8]) -> Result<(), Solo5Result> {
    disk_io(handle, offset, buf.len(), |d| d.copy_from_slice(buf))?;
    with(|s| s.log.push(Event::BlockWrite(offset)));
    Ok(())
}

/// Ends the test with a panic carrying the status (unit tests never exit).
pub fn exit(status: i32) -> ! {
    panic!("sim exit {status}: {}", console())
}

/// Tests are serialised, so any thread may use the runtime.
pub fn assert_runtime_thread() {}

/// No heap accounting in tests.
pub fn heap_stats() -> (u64, u64) {
    (0, 0)
}

/// A fixed seed: tests are deterministic.
pub fn host_random(seed: &mut [u8]) -> bool {
    for (i, b) in seed.iter_mut().enumerate() {
        *b = i as u8;
    }
    true
}

/// Catches a task's panic (the unit tests build with unwinding).
pub fn catch_panic<T>(
    f: impl FnOnce() -> core::task::Poll<T>,
) -> core::task::Poll<Result<T, String>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(p) => p.map(Ok),
        Err(payload) => core::task::Poll::Ready(Err(payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default())),
    }
}

/// Silences the default panic output of deliberate panics.
pub fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if !msg.starts_with("deliberate") && !msg.starts_with("sim exit") {
                prev(info);
            }
        }));
    });
}
