//! The trace buffer: a ring of timestamped runtime events that the host
//! reads from guest memory (`morgana-hvt --trace=FILE`, `morgana-spt
//! --trace=FILE`, then `morgana trace FILE`).
//!
//! The runtime records task spawns, wake-ups, switches (run/park), frames
//! received and sent, scheduled block requests and completions, sleeps,
//! yields to the platform, log records, panics and the exit; programs add
//! their own events with [`trace!`](crate::trace!). The buffer (format in
//! [`morgana_abi::trace`]) lives in its own ELF section that a tender
//! enables by writing its header: without a tender that does (Solo5's
//! tenders, Morgana's without `--trace`, the unix platform), recording an
//! event costs one load and a branch, and nothing is written.

use core::sync::atomic::{AtomicU64, Ordering};
use morgana_abi::trace::{self as t, Event, Kind};

const WORDS: usize = t::AREA_SIZE / 8;

/// The buffer: page aligned, so that a tender can map a file over it.
#[repr(C, align(4096))]
struct Area([AtomicU64; WORDS]);

#[cfg_attr(
    any(morgana_platform = "hvt", morgana_platform = "spt"),
    unsafe(link_section = ".morgana.trace")
)]
#[used]
static AREA: Area = Area([const { AtomicU64::new(0) }; WORDS]);

/// Whether a tender enabled tracing.
#[inline(always)]
pub fn enabled() -> bool {
    !cfg!(morgana_no_trace) && AREA.0[t::CONTROL_WORD].load(Ordering::Relaxed) == t::CONTROL_ENABLED
}

/// Records an event if tracing is enabled.
#[inline(always)]
pub(crate) fn record(kind: Kind, arg: u32, data: [u64; 3]) {
    if enabled() {
        record_enabled(kind, arg, data);
    }
}

#[cold]
#[inline(never)]
fn record_enabled(kind: Kind, arg: u32, data: [u64; 3]) {
    let cap = AREA.0[t::CAPACITY_WORD]
        .load(Ordering::Relaxed)
        .min(t::capacity(t::AREA_SIZE) as u64);
    if cap == 0 {
        return;
    }
    let head = AREA.0[t::HEAD_WORD].load(Ordering::Relaxed);
    let at = t::HEADER_SIZE / 8 + (head % cap) as usize * (t::EVENT_SIZE / 8);
    let e = Event {
        ts: crate::platform::clock_monotonic(),
        kind: kind as u32,
        arg,
        data,
    };
    for (i, w) in e.to_words().into_iter().enumerate() {
        AREA.0[at + i].store(w, Ordering::Relaxed);
    }
    // The event is complete before the host can count it.
    AREA.0[t::HEAD_WORD].store(head + 1, Ordering::Release);
}

/// Records a user event: `name` (its first 16 bytes) and a value. Use
/// [`trace!`](crate::trace!).
#[inline]
pub fn event(name: &str, value: u64) {
    if enabled() {
        let n: [u64; 2] = t::pack_text(name.as_bytes());
        record_enabled(Kind::User, 0, [n[0], n[1], value]);
    }
}

/// Records the first 24 bytes of a text event (panics, log records).
pub(crate) fn text(kind: Kind, arg: u32, s: &[u8]) {
    if enabled() {
        record_enabled(kind, arg, t::pack_text(s));
    }
}

/// A `core::fmt::Write` that keeps the first 24 bytes written.
pub(crate) struct Prefix {
    buf: [u8; 24],
    len: usize,
}

impl Prefix {
    /// An empty prefix.
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; 24],
            len: 0,
        }
    }

    /// The bytes kept.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for Prefix {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Records a user event in the trace buffer: `trace!("name")` or
/// `trace!("name", value)` (a value convertible to `u64` with `as`). Names
/// keep their first 16 bytes. Costs a load and a branch when tracing is off.
///
/// ```no_run
/// morgana::trace!("request", 42);
/// ```
#[macro_export]
macro_rules! trace {
    ($name:expr) => {
        $crate::trace::event($name, 0)
    };
    ($name:expr, $value:expr) => {
        $crate::trace::event($name, ($value) as u64)
    };
}
