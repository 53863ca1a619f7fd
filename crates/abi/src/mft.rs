//! The Solo5 application manifest (version 1): the list of devices a
//! unikernel declares, embedded in its image as the "MFT1" ELF note.
//!
//! Binary layout (little-endian, x86_64):
//!
//! ```text
//! struct mft       { u32 version; u32 entries; struct mft_entry e[entries]; }    8 + 104*N bytes
//! struct mft_entry { char name[68];              @0   NUL terminated
//!                    u32  type;                  @68  1 BLOCK_BASIC, 2 NET_BASIC, 1<<30 RESERVED_FIRST
//!                    union { struct { u64 capacity; u16 block_size; } block;   @72, @80
//!                            struct { u8 mac[6]; u16 mtu; } net; } u;          @72, @78
//!                    union { int hostfd; void *data; } b;                      @88
//!                    bool attached; }                                          @96, size 104
//! ```
//!
//! Guests build their manifest note at compile time with [`MftNote::new`];
//! tenders parse and validate the note from the image with
//! [`Manifest::validate`], fill in the attached devices, and copy it into the
//! guest with [`Manifest::encode`]; guests read the copy back with
//! [`Manifest::decode`].

use core::fmt;

/// Manifest format version.
pub const VERSION: u32 = 1;
/// Bytes in an entry's name, including the NUL terminator.
pub const NAME_SIZE: usize = 68;
/// Longest device name, in characters.
pub const NAME_MAX: usize = 67;
/// Most entries a manifest may hold (entry 0 is reserved, so 63 devices).
pub const MAX_ENTRIES: usize = 64;
/// Most devices a manifest may declare.
pub const MAX_DEVICES: usize = MAX_ENTRIES - 1;
/// Size of one entry.
pub const ENTRY_SIZE: usize = 104;
/// Size of the manifest header (`version`, `entries`).
pub const HEADER_SIZE: usize = 8;

/// Entry type of a basic block device.
pub const TYPE_BLOCK_BASIC: u32 = 1;
/// Entry type of a basic network device.
pub const TYPE_NET_BASIC: u32 = 2;
/// Entry type of the reserved first entry.
pub const TYPE_RESERVED_FIRST: u32 = 1 << 30;

/// Byte offsets of the fields of a manifest entry.
pub mod offsets {
    /// `name[68]`.
    pub const NAME: usize = 0;
    /// `type`.
    pub const TYPE: usize = 68;
    /// `u.block_basic.capacity`.
    pub const BLOCK_CAPACITY: usize = 72;
    /// `u.block_basic.block_size`.
    pub const BLOCK_SIZE: usize = 80;
    /// `u.net_basic.mac[6]`.
    pub const NET_MAC: usize = 72;
    /// `u.net_basic.mtu`.
    pub const NET_MTU: usize = 78;
    /// Bytes of virtio-net header on each frame, granted by a Morgana
    /// tender (an extension: [`crate::offload`]); unused by Solo5, 0 there.
    pub const NET_VNET_HDR: usize = 80;
    /// `b.hostfd` / `b.data`.
    pub const HOSTFD: usize = 88;
    /// `attached`.
    pub const ATTACHED: usize = 96;
}

/// The kind of a device a unikernel can declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// A basic block device (Solo5 `BLOCK_BASIC`).
    Block,
    /// A basic network device (Solo5 `NET_BASIC`).
    Net,
}

impl DeviceKind {
    /// The manifest entry type of this kind.
    pub const fn raw(self) -> u32 {
        match self {
            Self::Block => TYPE_BLOCK_BASIC,
            Self::Net => TYPE_NET_BASIC,
        }
    }

    /// Decodes an entry type; `None` for the reserved or unknown types.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            TYPE_BLOCK_BASIC => Some(Self::Block),
            TYPE_NET_BASIC => Some(Self::Net),
            _ => None,
        }
    }

    /// Solo5's name for the entry type.
    pub const fn solo5_name(self) -> &'static str {
        match self {
            Self::Block => "BLOCK_BASIC",
            Self::Net => "NET_BASIC",
        }
    }
}

/// Solo5's name for a raw entry type, for messages.
pub const fn type_name(raw: u32) -> &'static str {
    match raw {
        TYPE_BLOCK_BASIC => "BLOCK_BASIC",
        TYPE_NET_BASIC => "NET_BASIC",
        TYPE_RESERVED_FIRST => "RESERVED_FIRST",
        _ => "<undefined type>",
    }
}

/// Whether `name` is a valid device name: 1 to 67 ASCII letters or digits
/// (the characters Solo5's tenders accept on their command line).
pub const fn is_valid_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > NAME_MAX {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        if !name[i].is_ascii_alphanumeric() {
            return false;
        }
        i += 1;
    }
    true
}

/// One device declaration: what a unikernel asks for, by name and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceDecl {
    /// The device name, e.g. `"service"`.
    pub name: &'static str,
    /// The device kind.
    pub kind: DeviceKind,
}

/// A manifest entry exactly as it is laid out in an image (`struct
/// mft_entry`), used by guests to build their manifest note.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct RawEntry {
    name: [u8; NAME_SIZE],
    kind: u32,
    props: [u8; 16],
    hostfd: [u8; 8],
    attached: u8,
    pad: [u8; 7],
}

impl RawEntry {
    const fn new(name: &[u8], kind: u32) -> Self {
        let mut buf = [0u8; NAME_SIZE];
        let mut i = 0;
        while i < name.len() {
            buf[i] = name[i];
            i += 1;
        }
        Self {
            name: buf,
            kind,
            props: [0; 16],
            hostfd: [0; 8],
            attached: 0,
            pad: [0; 7],
        }
    }
}

/// The complete "MFT1" note with `N` entries (the reserved entry included),
/// as laid out in a guest image (`struct mft1_note`).
///
/// Built at compile time by the `#[morgana::main]` macro from the program's
/// own device declarations, so a manifest is never written by hand.
#[repr(C, align(8))]
#[derive(Debug)]
pub struct MftNote<const N: usize> {
    n_namesz: u32,
    n_descsz: u32,
    n_type: u32,
    n_name: [u8; 8],
    pad: u32,
    version: u32,
    entries: u32,
    e: [RawEntry; N],
}

impl<const N: usize> MftNote<N> {
    /// Builds the note for `devices`; `N` must be `devices.len() + 1`.
    ///
    /// Evaluated in a `const` context, an invalid declaration (bad or
    /// duplicate name, too many devices, wrong `N`) is a compile error.
    pub const fn new(devices: &[DeviceDecl]) -> Self {
        assert!(
            N == devices.len() + 1,
            "Morgana manifest: entry count must be the number of devices plus one"
        );
        assert!(
            devices.len() <= MAX_DEVICES,
            "Morgana manifest: a unikernel may declare at most 63 devices"
        );
        let mut e = [RawEntry::new(b"", TYPE_RESERVED_FIRST); N];
        let mut i = 0;
        while i < devices.len() {
            let name = devices[i].name.as_bytes();
            assert!(
                is_valid_name(name),
                "Morgana manifest: a device name must be 1 to 67 ASCII letters or digits"
            );
            let mut j = 0;
            while j < i {
                assert!(
                    !bytes_eq(devices[j].name.as_bytes(), name),
                    "Morgana manifest: two devices share a name"
                );
                j += 1;
            }
            e[i + 1] = RawEntry::new(name, devices[i].kind.raw());
            i += 1;
        }
        Self {
            n_namesz: crate::note::NOTE_NAME.len() as u32,
            n_descsz: (4 + HEADER_SIZE + ENTRY_SIZE * N) as u32,
            n_type: crate::note::MFT1_NOTE_TYPE,
            n_name: *b"Solo5\0\0\0",
            pad: 0,
            version: VERSION,
            entries: N as u32,
            e,
        }
    }

    /// Number of entries, the reserved one included.
    pub const fn entries(&self) -> usize {
        N
    }
}

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Why a manifest was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MftError {
    /// Fewer bytes than a manifest header.
    TooShort(usize),
    /// `version` is not 1.
    BadVersion(u32),
    /// More than 64 entries.
    TooManyEntries(u32),
    /// The size does not match `8 + 104 * entries`.
    SizeMismatch {
        /// Size implied by the entry count.
        expected: usize,
        /// Actual size.
        actual: usize,
    },
    /// No entries at all (entry 0 must exist).
    NoEntries,
    /// Entry 0 is not of type `RESERVED_FIRST`.
    FirstNotReserved,
    /// Entry 0 has a name.
    FirstNamed,
    /// An entry's name is not NUL terminated within 68 bytes.
    NameNotTerminated(usize),
    /// An entry is already marked attached in the image.
    AttachedInImage(usize),
}

impl fmt::Display for MftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort(n) => write!(f, "manifest is {n} bytes, shorter than its header"),
            Self::BadVersion(v) => write!(f, "manifest version {v} is not {VERSION}"),
            Self::TooManyEntries(n) => {
                write!(f, "manifest has {n} entries, more than {MAX_ENTRIES}")
            }
            Self::SizeMismatch { expected, actual } => write!(
                f,
                "manifest is {actual} bytes but its entry count implies {expected}"
            ),
            Self::NoEntries => write!(f, "manifest has no entries"),
            Self::FirstNotReserved => write!(f, "manifest entry 0 is not RESERVED_FIRST"),
            Self::FirstNamed => write!(f, "manifest entry 0 has a name"),
            Self::NameNotTerminated(i) => {
                write!(
                    f,
                    "manifest entry {i} has a name that is not NUL terminated"
                )
            }
            Self::AttachedInImage(i) => write!(f, "manifest entry {i} is marked attached"),
        }
    }
}

impl core::error::Error for MftError {}

/// One parsed manifest entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    name: [u8; NAME_SIZE],
    kind: u32,
    props: [u8; 16],
    hostfd: u64,
    attached: bool,
}

impl Entry {
    const EMPTY: Self = Self {
        name: [0; NAME_SIZE],
        kind: 0,
        props: [0; 16],
        hostfd: 0,
        attached: false,
    };

    fn parse(b: &[u8]) -> Self {
        let mut e = Self::EMPTY;
        e.name.copy_from_slice(&b[..NAME_SIZE]);
        e.kind = crate::read_u32(b, offsets::TYPE).unwrap_or(0);
        e.props
            .copy_from_slice(&b[offsets::BLOCK_CAPACITY..offsets::BLOCK_CAPACITY + 16]);
        e.hostfd = crate::read_u64(b, offsets::HOSTFD).unwrap_or(0);
        e.attached = b[offsets::ATTACHED] != 0;
        e
    }

    fn encode(&self, out: &mut [u8]) {
        out[..ENTRY_SIZE].fill(0);
        out[..NAME_SIZE].copy_from_slice(&self.name);
        out[offsets::TYPE..offsets::TYPE + 4].copy_from_slice(&self.kind.to_le_bytes());
        out[offsets::BLOCK_CAPACITY..offsets::BLOCK_CAPACITY + 16].copy_from_slice(&self.props);
        out[offsets::HOSTFD..offsets::HOSTFD + 8].copy_from_slice(&self.hostfd.to_le_bytes());
        out[offsets::ATTACHED] = self.attached as u8;
    }

    /// The name's bytes, up to (not including) the NUL terminator.
    pub fn name_bytes(&self) -> &[u8] {
        let end = self.name.iter().position(|&c| c == 0).unwrap_or(NAME_SIZE);
        &self.name[..end]
    }

    /// The name, or `"<invalid>"` if it is not UTF-8.
    pub fn name(&self) -> &str {
        core::str::from_utf8(self.name_bytes()).unwrap_or("<invalid>")
    }

    /// The raw entry type.
    pub fn raw_kind(&self) -> u32 {
        self.kind
    }

    /// The device kind, `None` for the reserved entry or an unknown type.
    pub fn kind(&self) -> Option<DeviceKind> {
        DeviceKind::from_raw(self.kind)
    }

    /// Block device properties: `(capacity in bytes, block size)`.
    pub fn block(&self) -> (u64, u16) {
        (
            crate::read_u64(&self.props, 0).unwrap_or(0),
            crate::read_u16(&self.props, 8).unwrap_or(0),
        )
    }

    /// Sets the block device properties.
    pub fn set_block(&mut self, capacity: u64, block_size: u16) {
        self.props = [0; 16];
        self.props[..8].copy_from_slice(&capacity.to_le_bytes());
        self.props[8..10].copy_from_slice(&block_size.to_le_bytes());
    }

    /// Network device properties: `(MAC address, MTU)`.
    pub fn net(&self) -> ([u8; 6], u16) {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.props[..6]);
        (mac, crate::read_u16(&self.props, 6).unwrap_or(0))
    }

    /// Sets the network device properties.
    pub fn set_net(&mut self, mac: [u8; 6], mtu: u16) {
        self.props = [0; 16];
        self.props[..6].copy_from_slice(&mac);
        self.props[6..8].copy_from_slice(&mtu.to_le_bytes());
    }

    /// Bytes of virtio-net header that precede each frame of this network
    /// device: 0 (plain frames, always under Solo5's tenders) or
    /// [`crate::offload::VNET_HDR_LEN`] when a Morgana tender granted the
    /// image's offload request ([`crate::offload`]).
    pub fn vnet_hdr(&self) -> u16 {
        crate::read_u16(&self.props, offsets::NET_VNET_HDR - offsets::NET_MAC).unwrap_or(0)
    }

    /// Grants virtio-net headers of `len` bytes (set after [`Self::set_net`],
    /// which clears it).
    pub fn set_vnet_hdr(&mut self, len: u16) {
        let o = offsets::NET_VNET_HDR - offsets::NET_MAC;
        self.props[o..o + 2].copy_from_slice(&len.to_le_bytes());
    }

    /// The host file descriptor backing the device (spt), as an `int`.
    pub fn hostfd(&self) -> i32 {
        self.hostfd as u32 as i32
    }

    /// Sets the host file descriptor (the upper bytes are cleared).
    pub fn set_hostfd(&mut self, fd: i32) {
        self.hostfd = fd as u32 as u64;
    }

    /// Whether the tender attached the device.
    pub fn attached(&self) -> bool {
        self.attached
    }

    /// Marks the device attached or not.
    pub fn set_attached(&mut self, attached: bool) {
        self.attached = attached;
    }
}

/// A checked view of an encoded manifest, without copying it: how a guest
/// reads the copy its tender left in memory (a [`Manifest`] is 6.6 KB,
/// costly to build and move on a hypervisor that emulates instructions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestView<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> ManifestView<'a> {
    /// Checks `bytes` as [`Manifest::decode`] does (version 1, 1 to 64
    /// entries, exact size, entry 0 reserved and unnamed, every name NUL
    /// terminated) and views them.
    pub fn new(bytes: &'a [u8]) -> Result<Self, MftError> {
        if bytes.len() < HEADER_SIZE {
            return Err(MftError::TooShort(bytes.len()));
        }
        let version = crate::read_u32(bytes, 0).unwrap_or(0);
        if version != VERSION {
            return Err(MftError::BadVersion(version));
        }
        let n = crate::read_u32(bytes, 4).unwrap_or(0);
        if n as usize > MAX_ENTRIES {
            return Err(MftError::TooManyEntries(n));
        }
        let expected = HEADER_SIZE + n as usize * ENTRY_SIZE;
        if bytes.len() != expected {
            return Err(MftError::SizeMismatch {
                expected,
                actual: bytes.len(),
            });
        }
        if n == 0 {
            return Err(MftError::NoEntries);
        }
        let v = Self {
            bytes,
            len: n as usize,
        };
        for i in 0..v.len {
            if v.raw(i)[NAME_MAX] != 0 {
                return Err(MftError::NameNotTerminated(i));
            }
        }
        let first = v.raw(0);
        if crate::read_u32(first, offsets::TYPE) != Some(TYPE_RESERVED_FIRST) {
            return Err(MftError::FirstNotReserved);
        }
        if first[0] != 0 {
            return Err(MftError::FirstNamed);
        }
        Ok(v)
    }

    fn raw(&self, i: usize) -> &'a [u8] {
        let off = HEADER_SIZE + i * ENTRY_SIZE;
        &self.bytes[off..off + ENTRY_SIZE]
    }

    fn raw_entry(&self, i: usize) -> Entry {
        Entry::parse(self.raw(i))
    }

    /// Number of entries, the reserved one included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries (never true once checked).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entry `i` (its handle), parsed.
    pub fn entry(&self, i: usize) -> Option<Entry> {
        (i < self.len).then(|| self.raw_entry(i))
    }

    /// Declared devices (every entry but the reserved one), with handles.
    pub fn devices(&self) -> impl Iterator<Item = (usize, Entry)> + 'a {
        let v = *self;
        (1..v.len).map(move |i| (i, v.raw_entry(i)))
    }

    /// Finds the device named `name` of kind `kind`: its handle and entry.
    pub fn find(&self, name: &str, kind: DeviceKind) -> Option<(usize, Entry)> {
        (1..self.len)
            .find(|&i| {
                let raw = self.raw(i);
                let end = raw[..NAME_SIZE]
                    .iter()
                    .position(|&c| c == 0)
                    .unwrap_or(NAME_SIZE);
                &raw[..end] == name.as_bytes()
                    && crate::read_u32(raw, offsets::TYPE) == Some(kind.raw())
            })
            .map(|i| (i, self.raw_entry(i)))
    }
}

/// A parsed manifest of at most 64 entries, entry 0 being the reserved one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    entries: [Entry; MAX_ENTRIES],
    len: usize,
}

impl Manifest {
    /// Parses a manifest and applies every structural check: version 1,
    /// 1 to 64 entries, exact size, entry 0 reserved and unnamed, every name
    /// NUL terminated. Does not look at `attached` (a tender's copy has it
    /// set), so this is what a guest uses to read its boot-time copy.
    pub fn decode(bytes: &[u8]) -> Result<Self, MftError> {
        let v = ManifestView::new(bytes)?;
        let mut m = Self {
            entries: [Entry::EMPTY; MAX_ENTRIES],
            len: v.len(),
        };
        for (i, e) in m.entries[..v.len()].iter_mut().enumerate() {
            *e = v.raw_entry(i);
        }
        Ok(m)
    }

    /// Parses and validates a manifest read from an image: everything
    /// [`Manifest::decode`] checks, and no entry may be marked attached
    /// (Solo5's `mft_validate`).
    pub fn validate(bytes: &[u8]) -> Result<Self, MftError> {
        let m = Self::decode(bytes)?;
        if let Some(i) = m.entries().iter().position(|e| e.attached) {
            return Err(MftError::AttachedInImage(i));
        }
        Ok(m)
    }

    /// The manifest of `devices`, as a tender would read it from an image
    /// built with them; `None` if a name is invalid or repeated, or there
    /// are more than 63 devices.
    pub fn from_decls(devices: &[DeviceDecl]) -> Option<Self> {
        if devices.len() > MAX_DEVICES {
            return None;
        }
        let mut m = Self {
            entries: [Entry::EMPTY; MAX_ENTRIES],
            len: devices.len() + 1,
        };
        m.entries[0].kind = TYPE_RESERVED_FIRST;
        for (i, d) in devices.iter().enumerate() {
            let name = d.name.as_bytes();
            if !is_valid_name(name) || devices[..i].iter().any(|o| o.name == d.name) {
                return None;
            }
            let e = &mut m.entries[i + 1];
            e.name[..name.len()].copy_from_slice(name);
            e.kind = d.kind.raw();
        }
        Some(m)
    }

    /// Number of entries, the reserved one included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the manifest has no entries (never true once parsed).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All entries; index `i` is the handle of the device in entry `i`.
    pub fn entries(&self) -> &[Entry] {
        &self.entries[..self.len]
    }

    /// All entries, mutably.
    pub fn entries_mut(&mut self) -> &mut [Entry] {
        &mut self.entries[..self.len]
    }

    /// Declared devices (every entry but the reserved one), with handles.
    pub fn devices(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.entries().iter().enumerate().skip(1)
    }

    /// Finds the device named `name` of kind `kind`; returns its handle.
    pub fn find(&self, name: &str, kind: DeviceKind) -> Option<usize> {
        self.devices()
            .find(|(_, e)| e.kind == kind.raw() && e.name_bytes() == name.as_bytes())
            .map(|(i, _)| i)
    }

    /// Finds the device named `name`, of any kind; returns its handle.
    pub fn find_any(&self, name: &str) -> Option<usize> {
        self.devices()
            .find(|(_, e)| e.name_bytes() == name.as_bytes())
            .map(|(i, _)| i)
    }

    /// Size of the encoded manifest.
    pub fn encoded_len(&self) -> usize {
        HEADER_SIZE + self.len * ENTRY_SIZE
    }

    /// Writes the manifest in its binary layout into `out`; returns the
    /// number of bytes written, or `None` if `out` is too small.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let n = self.encoded_len();
        let out = out.get_mut(..n)?;
        out[..4].copy_from_slice(&VERSION.to_le_bytes());
        out[4..8].copy_from_slice(&(self.len as u32).to_le_bytes());
        for (i, e) in self.entries().iter().enumerate() {
            let off = HEADER_SIZE + i * ENTRY_SIZE;
            e.encode(&mut out[off..off + ENTRY_SIZE]);
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    const DECLS: [DeviceDecl; 2] = [
        DeviceDecl {
            name: "service",
            kind: DeviceKind::Net,
        },
        DeviceDecl {
            name: "storage",
            kind: DeviceKind::Block,
        },
    ];
    static NOTE: MftNote<3> = MftNote::new(&DECLS);

    /// The bytes of a note, as a tender reads them from an image.
    fn note_bytes<const N: usize>(n: &MftNote<N>) -> &[u8] {
        let p = n as *const MftNote<N> as *const u8;
        // SAFETY: MftNote is repr(C) plain data without padding bytes left
        // uninitialised (every field is written by `new`, including `pad`).
        unsafe { core::slice::from_raw_parts(p, size_of::<MftNote<N>>()) }
    }

    #[test]
    fn entry_layout_matches_mft_abi_h() {
        assert_eq!(size_of::<RawEntry>(), ENTRY_SIZE);
        assert_eq!(align_of::<RawEntry>(), 8);
        assert_eq!(offset_of!(RawEntry, name), offsets::NAME);
        assert_eq!(offset_of!(RawEntry, kind), offsets::TYPE);
        assert_eq!(offset_of!(RawEntry, props), offsets::BLOCK_CAPACITY);
        assert_eq!(offset_of!(RawEntry, props), offsets::NET_MAC);
        assert_eq!(offsets::BLOCK_SIZE, 80);
        assert_eq!(offsets::NET_MTU, 78);
        assert_eq!(offset_of!(RawEntry, hostfd), offsets::HOSTFD);
        assert_eq!(offset_of!(RawEntry, attached), offsets::ATTACHED);
        assert_eq!(TYPE_BLOCK_BASIC, 1);
        assert_eq!(TYPE_NET_BASIC, 2);
        assert_eq!(TYPE_RESERVED_FIRST, 0x4000_0000);
    }

    #[test]
    fn note_layout_matches_mft_abi_h() {
        assert_eq!(offset_of!(MftNote<1>, n_namesz), 0);
        assert_eq!(offset_of!(MftNote<1>, n_descsz), 4);
        assert_eq!(offset_of!(MftNote<1>, n_type), 8);
        assert_eq!(offset_of!(MftNote<1>, n_name), 12);
        assert_eq!(offset_of!(MftNote<1>, version), 24);
        assert_eq!(offset_of!(MftNote<1>, entries), 28);
        assert_eq!(offset_of!(MftNote<1>, e), 32);
        assert_eq!(size_of::<MftNote<3>>(), 32 + 3 * ENTRY_SIZE);
        assert_eq!(NOTE.n_descsz as usize, 12 + 104 * 3);
        assert_eq!(NOTE.entries(), 3);
    }

    #[test]
    fn built_note_validates_like_a_tender_reads_it() {
        let bytes = note_bytes(&NOTE);
        assert_eq!(&bytes[12..18], b"Solo5\0");
        let desc = &bytes[crate::note::NHDR_SIZE..];
        assert_eq!(desc.len(), NOTE.n_descsz as usize);
        let mft = &desc[4..];
        let m = Manifest::validate(mft).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m.entries()[0].raw_kind(), TYPE_RESERVED_FIRST);
        assert_eq!(m.entries()[0].name(), "");
        assert_eq!(m.find("service", DeviceKind::Net), Some(1));
        assert_eq!(m.find("storage", DeviceKind::Block), Some(2));
        assert_eq!(m.find("storage", DeviceKind::Net), None);
        assert_eq!(m.find_any("storage"), Some(2));
    }

    fn valid_mft(entries: u32) -> [u8; HEADER_SIZE + 3 * ENTRY_SIZE] {
        let mut b = [0u8; HEADER_SIZE + 3 * ENTRY_SIZE];
        b[0..4].copy_from_slice(&1u32.to_le_bytes());
        b[4..8].copy_from_slice(&entries.to_le_bytes());
        b[8 + 68..8 + 72].copy_from_slice(&TYPE_RESERVED_FIRST.to_le_bytes());
        b
    }

    #[test]
    fn validation_rejects_every_invalid_case() {
        let good = valid_mft(1);
        let one = &good[..HEADER_SIZE + ENTRY_SIZE];
        assert!(Manifest::validate(one).is_ok());

        assert_eq!(Manifest::validate(&one[..7]), Err(MftError::TooShort(7)));

        let mut b = good;
        b[0] = 2;
        assert_eq!(
            Manifest::validate(&b[..HEADER_SIZE + ENTRY_SIZE]),
            Err(MftError::BadVersion(2))
        );

        let mut b = good;
        b[4..8].copy_from_slice(&65u32.to_le_bytes());
        assert_eq!(Manifest::validate(&b), Err(MftError::TooManyEntries(65)));

        let b = valid_mft(0);
        assert_eq!(
            Manifest::validate(&b[..HEADER_SIZE]),
            Err(MftError::NoEntries)
        );

        let b = valid_mft(2);
        assert_eq!(
            Manifest::validate(&b[..HEADER_SIZE + ENTRY_SIZE]),
            Err(MftError::SizeMismatch {
                expected: HEADER_SIZE + 2 * ENTRY_SIZE,
                actual: HEADER_SIZE + ENTRY_SIZE
            })
        );
        let b = valid_mft(1);
        assert!(matches!(
            Manifest::validate(&b[..HEADER_SIZE + ENTRY_SIZE + 1]),
            Err(MftError::SizeMismatch { .. })
        ));

        let mut b = good;
        b[8 + 68..8 + 72].copy_from_slice(&TYPE_NET_BASIC.to_le_bytes());
        assert_eq!(
            Manifest::validate(&b[..HEADER_SIZE + ENTRY_SIZE]),
            Err(MftError::FirstNotReserved)
        );

        let mut b = good;
        b[8] = b'x';
        assert_eq!(
            Manifest::validate(&b[..HEADER_SIZE + ENTRY_SIZE]),
            Err(MftError::FirstNamed)
        );

        let mut b = valid_mft(2);
        let e1 = HEADER_SIZE + ENTRY_SIZE;
        b[e1..e1 + 68].fill(b'a');
        b[e1 + 68..e1 + 72].copy_from_slice(&TYPE_NET_BASIC.to_le_bytes());
        assert_eq!(
            Manifest::validate(&b[..HEADER_SIZE + 2 * ENTRY_SIZE]),
            Err(MftError::NameNotTerminated(1))
        );

        let mut b = valid_mft(2);
        b[e1] = b'n';
        b[e1 + 68..e1 + 72].copy_from_slice(&TYPE_NET_BASIC.to_le_bytes());
        b[e1 + offsets::ATTACHED] = 1;
        let two = &b[..HEADER_SIZE + 2 * ENTRY_SIZE];
        assert_eq!(Manifest::validate(two), Err(MftError::AttachedInImage(1)));
        // A tender's copy may be attached: decode accepts it.
        assert!(Manifest::decode(two).unwrap().entries()[1].attached());
    }

    #[test]
    fn encode_round_trips_with_device_properties() {
        let bytes = note_bytes(&NOTE);
        let mut m = Manifest::validate(&bytes[24..]).unwrap();
        let e = &mut m.entries_mut()[1];
        e.set_vnet_hdr(10);
        e.set_net([2, 0, 0, 0, 0, 1], 1500);
        assert_eq!(e.vnet_hdr(), 0, "set_net clears the offload grant");
        e.set_vnet_hdr(10);
        e.set_hostfd(7);
        e.set_attached(true);
        let b = &mut m.entries_mut()[2];
        b.set_block(4 << 20, 4096);
        b.set_hostfd(-1);
        b.set_attached(true);
        let mut out = [0u8; HEADER_SIZE + 3 * ENTRY_SIZE];
        assert_eq!(m.encode(&mut out[..10]), None);
        assert_eq!(m.encode(&mut out), Some(out.len()));
        let e1 = HEADER_SIZE + ENTRY_SIZE;
        assert_eq!(&out[e1 + offsets::NET_MAC..e1 + 78], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&out[e1 + offsets::NET_MTU..e1 + 80], &1500u16.to_le_bytes());
        assert_eq!(
            &out[e1 + offsets::NET_VNET_HDR..e1 + 82],
            &10u16.to_le_bytes()
        );
        assert_eq!(out[e1 + offsets::ATTACHED], 1);
        let e2 = e1 + ENTRY_SIZE;
        assert_eq!(
            &out[e2 + offsets::BLOCK_SIZE..e2 + 82],
            &4096u16.to_le_bytes()
        );
        let back = Manifest::decode(&out).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.entries()[1].net(), ([2, 0, 0, 0, 0, 1], 1500));
        assert_eq!(back.entries()[1].hostfd(), 7);
        assert_eq!(back.entries()[1].vnet_hdr(), 10);
        assert_eq!(back.entries()[2].block(), (4 << 20, 4096));
        assert_eq!(back.entries()[2].hostfd(), -1);
        assert!(Manifest::validate(&out).is_err());
    }

    #[test]
    fn views_read_like_manifests() {
        let bytes = note_bytes(&NOTE);
        let v = ManifestView::new(&bytes[24..]).unwrap();
        let m = Manifest::validate(&bytes[24..]).unwrap();
        assert_eq!(v.len(), m.len());
        assert_eq!(
            v.find("storage", DeviceKind::Block),
            Some((2, m.entries()[2]))
        );
        assert_eq!(v.find("storage", DeviceKind::Net), None);
        assert_eq!(v.find("stor", DeviceKind::Block), None);
        let mut handles = v.devices().map(|(h, _)| h);
        assert_eq!(
            (handles.next(), handles.next(), handles.next()),
            (Some(1), Some(2), None)
        );

        assert_eq!(v.entry(1), Some(m.entries()[1]));
        assert_eq!(v.entry(3), None);
        assert_eq!(
            ManifestView::new(&bytes[24..30]),
            Err(MftError::TooShort(6))
        );
    }

    #[test]
    fn from_decls_matches_the_note() {
        let bytes = note_bytes(&NOTE);
        let from_note = Manifest::validate(&bytes[24..]).unwrap();
        assert_eq!(Manifest::from_decls(&DECLS), Some(from_note));
        let dup = [DECLS[0], DECLS[0]];
        assert_eq!(Manifest::from_decls(&dup), None);
        let bad = [DeviceDecl {
            name: "a_b",
            kind: DeviceKind::Net,
        }];
        assert_eq!(Manifest::from_decls(&bad), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(is_valid_name(b"service"));
        assert!(is_valid_name(b"Net0"));
        assert!(!is_valid_name(b""));
        assert!(!is_valid_name(b"my_net"));
        assert!(!is_valid_name(b"a-b"));
        assert!(is_valid_name(&[b'a'; 67]));
        assert!(!is_valid_name(&[b'a'; 68]));
        assert_eq!(type_name(TYPE_NET_BASIC), "NET_BASIC");
        assert_eq!(type_name(99), "<undefined type>");
        assert_eq!(DeviceKind::Block.solo5_name(), "BLOCK_BASIC");
    }
}
