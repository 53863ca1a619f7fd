//! Morgana's trace buffer: a ring of timestamped runtime events in guest
//! memory, at a place the tenders find, readable by the host while the
//! guest runs and after it ended, hung or crashed.
//!
//! Not part of the Solo5 ABI, and invisible to it: the buffer is the ELF
//! section [`SECTION`], a page-aligned `NOLOAD` section at the end of the
//! image's data segment. A Solo5 tender (or a Morgana tender without
//! `--trace`) leaves it zero, so the guest sees tracing disabled and
//! records nothing; a Morgana tender with `--trace=FILE` maps FILE over it
//! (`MAP_SHARED`, so the events are in the file even if the tender is
//! killed) and writes the header, enabling it.
//!
//! Layout, in little-endian 64-bit words: a [`HEADER_SIZE`]-byte header,
//! then [`Event`]s of [`EVENT_SIZE`] bytes. Event `n` (counting from 0
//! since boot) is at slot `n % capacity`; `head` is the number of events
//! written so far, stored after the event itself.

/// Name of the ELF section holding the buffer.
pub const SECTION: &str = ".morgana.trace";

/// Size of the buffer the runtime reserves (64 KiB).
pub const AREA_SIZE: usize = 64 * 1024;

/// `"MRGTRACE"`, written by the tender.
pub const MAGIC: u64 = u64::from_le_bytes(*b"MRGTRACE");

/// Format version.
pub const VERSION: u32 = 1;

/// Size of the header.
pub const HEADER_SIZE: usize = 64;

/// Size of one event.
pub const EVENT_SIZE: usize = 40;

/// Header word: [`MAGIC`] (tender).
pub const MAGIC_WORD: usize = 0;
/// Header word: [`VERSION`] in the low half, 1 in the high half when
/// tracing is enabled (tender).
pub const CONTROL_WORD: usize = 1;
/// Header word: capacity in events (tender).
pub const CAPACITY_WORD: usize = 2;
/// Header word: events written since boot (guest).
pub const HEAD_WORD: usize = 3;
/// Header word: how the guest ended (tender): [`END_RUNNING`],
/// [`END_EXITED`] `| status << 8`, [`END_ERROR`] or [`END_SIGNAL`] `|
/// signal << 8`.
pub const END_WORD: usize = 4;

/// The guest has not ended: it still runs, or the tender was killed.
pub const END_RUNNING: u64 = 0;
/// The guest exited (status in bits 8-15).
pub const END_EXITED: u64 = 1;
/// The tender stopped the guest on an error (a fault, an invalid request).
pub const END_ERROR: u64 = 2;
/// The guest was killed by a signal (spt; the signal in bits 8-15).
pub const END_SIGNAL: u64 = 3;

/// Capacity in events of a buffer of `size` bytes.
pub const fn capacity(size: usize) -> usize {
    size.saturating_sub(HEADER_SIZE) / EVENT_SIZE
}

/// The `CONTROL_WORD` of an enabled buffer.
pub const CONTROL_ENABLED: u64 = (1 << 32) | VERSION as u64;

/// What an event records.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A task was spawned (`arg`: task id).
    Spawn = 1,
    /// A task was woken (`arg`: task id).
    Wake = 2,
    /// The scheduler switched to a task (`arg`: task id).
    Run = 3,
    /// The task's poll returned (`arg`: task id, `data[0]`: 1 if it finished).
    Park = 4,
    /// A frame was received (`arg`: net handle, `data[0]`: bytes).
    NetRx = 5,
    /// A frame was sent (`arg`: net handle, `data[0]`: bytes).
    NetTx = 6,
    /// A scheduled block operation was queued (`arg`: handle, `data[0]`:
    /// byte offset, `data[1]`: 1 for a write).
    BlockRequest = 7,
    /// A block operation completed (`arg`: handle, `data[0]`: offset,
    /// `data[1]`: 0 on success).
    BlockComplete = 8,
    /// A task went to sleep (`data[0]`: deadline, ns of the monotonic clock).
    Sleep = 9,
    /// The scheduler yielded to the platform (`data[0]`: deadline, 0 to poll).
    Idle = 10,
    /// The platform returned (`data[0]`: set of ready net handles).
    Ready = 11,
    /// A panic (`data`: the first 24 bytes of the message).
    Panic = 12,
    /// A user event from `morgana::trace!` (`data[0..2]`: 16 bytes of
    /// name, `data[2]`: value).
    User = 13,
    /// A log record (`arg`: level, 1 = error .. 5 = trace; `data`: the
    /// first 24 bytes of the message).
    Log = 14,
    /// The guest exits (`arg`: status).
    Exit = 15,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 15] = [
        Kind::Spawn,
        Kind::Wake,
        Kind::Run,
        Kind::Park,
        Kind::NetRx,
        Kind::NetTx,
        Kind::BlockRequest,
        Kind::BlockComplete,
        Kind::Sleep,
        Kind::Idle,
        Kind::Ready,
        Kind::Panic,
        Kind::User,
        Kind::Log,
        Kind::Exit,
    ];

    /// Decodes a raw kind.
    pub fn from_raw(raw: u32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u32 == raw)
    }

    /// Its name in text and JSON output.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Spawn => "spawn",
            Kind::Wake => "wake",
            Kind::Run => "run",
            Kind::Park => "park",
            Kind::NetRx => "net-rx",
            Kind::NetTx => "net-tx",
            Kind::BlockRequest => "block-request",
            Kind::BlockComplete => "block-complete",
            Kind::Sleep => "sleep",
            Kind::Idle => "idle",
            Kind::Ready => "ready",
            Kind::Panic => "panic",
            Kind::User => "user",
            Kind::Log => "log",
            Kind::Exit => "exit",
        }
    }
}

/// One decoded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Monotonic clock, ns.
    pub ts: u64,
    /// Raw kind (see [`Kind`]).
    pub kind: u32,
    /// Task id, handle, level or status, by kind.
    pub arg: u32,
    /// Kind-specific data.
    pub data: [u64; 3],
}

impl Event {
    /// Encodes the event as the five words the buffer holds.
    pub const fn to_words(&self) -> [u64; 5] {
        [
            self.ts,
            self.kind as u64 | (self.arg as u64) << 32,
            self.data[0],
            self.data[1],
            self.data[2],
        ]
    }

    /// Decodes five words.
    pub const fn from_words(w: [u64; 5]) -> Self {
        Self {
            ts: w[0],
            kind: w[1] as u32,
            arg: (w[1] >> 32) as u32,
            data: [w[2], w[3], w[4]],
        }
    }

    /// The text carried in `data` from word `from` on (up to the first
    /// NUL), for panics, logs and user event names.
    pub fn text(&self, from: usize, words: usize) -> [u8; 24] {
        let mut b = [0u8; 24];
        for (i, w) in self.data.iter().skip(from).take(words).enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }
}

/// Packs up to `8 * N` bytes of `s` into words (truncated, NUL padded).
pub fn pack_text<const N: usize>(s: &[u8]) -> [u64; N] {
    let mut w = [0u64; N];
    for (i, chunk) in s.chunks(8).take(N).enumerate() {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        w[i] = u64::from_le_bytes(b);
    }
    w
}

/// The header of a trace file, as read back by the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Capacity in events.
    pub capacity: u64,
    /// Events written since boot.
    pub head: u64,
    /// [`END_WORD`].
    pub end: u64,
}

/// Why a buffer cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceError {
    /// Shorter than a header, or than its capacity says.
    Truncated,
    /// No [`MAGIC`].
    NotATrace,
    /// A version this reader does not know.
    Version(u32),
}

impl core::fmt::Display for TraceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("the trace file is cut short"),
            Self::NotATrace => f.write_str("not a Morgana trace file (no MRGTRACE header)"),
            Self::Version(v) => write!(f, "trace format version {v} is not supported"),
        }
    }
}

fn word(b: &[u8], i: usize) -> u64 {
    crate::read_u64(b, i * 8).unwrap_or(0)
}

/// Reads the header of the buffer `b`.
pub fn header(b: &[u8]) -> Result<Header, TraceError> {
    if b.len() < HEADER_SIZE {
        return Err(TraceError::Truncated);
    }
    if word(b, MAGIC_WORD) != MAGIC {
        return Err(TraceError::NotATrace);
    }
    let version = word(b, CONTROL_WORD) as u32;
    if version != VERSION {
        return Err(TraceError::Version(version));
    }
    let capacity = word(b, CAPACITY_WORD);
    if (capacity as usize).saturating_mul(EVENT_SIZE) > b.len() - HEADER_SIZE {
        return Err(TraceError::Truncated);
    }
    Ok(Header {
        capacity,
        head: word(b, HEAD_WORD),
        end: word(b, END_WORD),
    })
}

/// The events still in the buffer `b`, oldest first.
pub fn events<'a>(b: &'a [u8], h: &Header) -> impl Iterator<Item = Event> + 'a {
    let cap = h.capacity.max(1);
    let first = h.head.saturating_sub(h.capacity);
    (first..h.head).map(move |n| {
        let at = HEADER_SIZE / 8 + (n % cap) as usize * (EVENT_SIZE / 8);
        Event::from_words([
            word(b, at),
            word(b, at + 1),
            word(b, at + 2),
            word(b, at + 3),
            word(b, at + 4),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_wrap() {
        let cap = 3usize;
        let mut b = [0u8; HEADER_SIZE + 3 * EVENT_SIZE];
        let put =
            |b: &mut [u8], i: usize, v: u64| b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        put(&mut b, MAGIC_WORD, MAGIC);
        put(&mut b, CONTROL_WORD, CONTROL_ENABLED);
        put(&mut b, CAPACITY_WORD, cap as u64);
        for n in 0..5u64 {
            let e = Event {
                ts: 100 + n,
                kind: Kind::User as u32,
                arg: n as u32,
                data: [1, 2, n],
            };
            let at = HEADER_SIZE / 8 + (n as usize % cap) * 5;
            for (k, w) in e.to_words().into_iter().enumerate() {
                put(&mut b, at + k, w);
            }
            put(&mut b, HEAD_WORD, n + 1);
        }
        let h = header(&b).unwrap();
        assert_eq!(h.head, 5);
        let got: heapless_vec::V = events(&b, &h).map(|e| e.ts).collect();
        assert_eq!(got.0[..got.1], [102, 103, 104]);
        assert_eq!(header(&b[..10]), Err(TraceError::Truncated));
        let mut bad = b;
        bad[0] = 0;
        assert_eq!(header(&bad), Err(TraceError::NotATrace));
    }

    #[test]
    fn text_is_packed_and_truncated() {
        let w: [u64; 2] = pack_text(b"hello, trace buffer!");
        let e = Event {
            ts: 0,
            kind: 0,
            arg: 0,
            data: [w[0], w[1], 0],
        };
        assert_eq!(&e.text(0, 2)[..16], b"hello, trace buf");
        assert_eq!(capacity(AREA_SIZE), 1636);
        assert_eq!(Kind::from_raw(13), Some(Kind::User));
        assert_eq!(Kind::from_raw(99), None);
    }

    /// A tiny fixed vector: the crate is `no_std` without `alloc`.
    mod heapless_vec {
        pub struct V(pub [u64; 8], pub usize);
        impl FromIterator<u64> for V {
            fn from_iter<I: IntoIterator<Item = u64>>(it: I) -> Self {
                let mut v = V([0; 8], 0);
                for x in it {
                    v.0[v.1] = x;
                    v.1 += 1;
                }
                v
            }
        }
    }
}
