//! The store on an in-memory device: persistence across reopening, refusal
//! of foreign and short devices, size limits, garbage collection, and a
//! long random run checked against a `BTreeMap`.

use super::*;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use core::cell::RefCell;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

extern crate std;
use alloc::string::ToString;

/// Sectors in memory, shared so that a store can be reopened on them.
#[derive(Clone)]
struct Mem {
    ss: usize,
    bytes: Rc<RefCell<Vec<u8>>>,
}

impl Mem {
    fn zeroed(ss: usize, len: usize) -> Self {
        Self {
            ss,
            bytes: Rc::new(RefCell::new(alloc::vec![0; len])),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.bytes.borrow().clone()
    }
}

impl Sectors for Mem {
    fn sector_size(&self) -> usize {
        self.ss
    }

    fn sectors(&self) -> u64 {
        (self.bytes.borrow().len() / self.ss) as u64
    }

    async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let at = sector as usize * self.ss;
        let b = self.bytes.borrow();
        if !buf.len().is_multiple_of(self.ss) || buf.is_empty() {
            return Err(BlockError::Misaligned);
        }
        let src = b.get(at..at + buf.len()).ok_or(BlockError::OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        let at = sector as usize * self.ss;
        let mut b = self.bytes.borrow_mut();
        if !buf.len().is_multiple_of(self.ss) || buf.is_empty() {
            return Err(BlockError::Misaligned);
        }
        let dst = b
            .get_mut(at..at + buf.len())
            .ok_or(BlockError::OutOfRange)?;
        dst.copy_from_slice(buf);
        Ok(())
    }
}

/// Runs a future whose I/O never waits (memory).
fn run<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory store operation waited"),
    }
}

fn open(m: &Mem) -> Result<Store<Mem>, KvError> {
    run(Store::open(m.clone()))
}

#[test]
fn values_survive_reopening_with_both_sector_sizes() {
    for ss in [512, 4096] {
        let m = Mem::zeroed(ss, 1 << 20);
        let s = open(&m).unwrap();
        assert!(s.info().created);
        assert_eq!(s.info().pages, 63, "1 MiB less the superblock page");
        assert_eq!(run(s.get("a")).unwrap(), None);
        run(s.set("a", b"one")).unwrap();
        run(s.set("b", b"")).unwrap();
        run(s.set("c", &[7u8; 5000])).unwrap();
        run(s.set("a", b"two")).unwrap();
        run(s.remove("c")).unwrap();
        run(s.remove("never-there")).unwrap();
        assert_eq!(run(s.get("a")).unwrap().as_deref(), Some(&b"two"[..]));
        drop(s);
        let s = open(&m).unwrap();
        assert!(!s.info().created);
        assert_eq!(run(s.get("a")).unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(run(s.get("b")).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(run(s.get("c")).unwrap(), None);
        assert!(run(s.exists("b")).unwrap());
        assert_eq!(run(s.list()).unwrap(), ["a", "b"]);
    }
}

#[test]
fn a_device_holding_other_data_is_refused_and_left_untouched() {
    // Data in the first sector (a partition table, a file system) ...
    let m = Mem::zeroed(512, 1 << 20);
    m.bytes.borrow_mut()[510] = 0x55;
    let before = m.snapshot();
    assert_eq!(open(&m).err(), Some(KvError::NotAStore));
    assert_eq!(m.snapshot(), before);
    // ... or further in, behind a zero first sector.
    let m = Mem::zeroed(512, 1 << 20);
    m.bytes.borrow_mut()[(200 << 10) + 3] = 1;
    let before = m.snapshot();
    assert_eq!(open(&m).err(), Some(KvError::NotAStore));
    assert_eq!(m.snapshot(), before);
}

#[test]
fn small_truncated_and_damaged_devices_give_clear_errors() {
    let m = Mem::zeroed(512, 40 << 10);
    assert_eq!(
        open(&m).err(),
        Some(KvError::TooSmall {
            bytes: 40 << 10,
            need: 48 << 10
        })
    );
    assert!(m.snapshot().iter().all(|&b| b == 0));

    let m = Mem::zeroed(512, 1 << 20);
    let s = open(&m).unwrap();
    run(s.set("k", b"v")).unwrap();
    drop(s);
    let full = m.snapshot();
    m.bytes.borrow_mut().truncate(512 << 10);
    let e = open(&m).err().unwrap();
    assert_eq!(
        e,
        KvError::Truncated {
            bytes: 512 << 10,
            need: 1 << 20
        }
    );
    assert!(e.to_string().contains("truncated image"), "{e}");

    let mut bad = full.clone();
    bad[24] ^= 1;
    let m = Mem {
        ss: 512,
        bytes: Rc::new(RefCell::new(bad.clone())),
    };
    assert_eq!(
        open(&m).err(),
        Some(KvError::BadSuperblock("checksum mismatch"))
    );
    assert_eq!(m.snapshot(), bad);
}

#[test]
fn size_limits() {
    let m = Mem::zeroed(512, 1 << 20);
    let s = open(&m).unwrap();
    run(s.set("big", &[1u8; 16_000])).unwrap();
    assert_eq!(run(s.get("big")).unwrap().unwrap().len(), 16_000);
    assert_eq!(run(s.set("bigger", &[1u8; PAGE])), Err(KvError::TooLarge));
    let long = "k".repeat(MAX_KEY + 1);
    assert_eq!(run(s.set(&long, b"v")), Err(KvError::KeyTooLong));
    assert_eq!(run(s.get(&long)), Err(KvError::KeyTooLong));
    run(s.set(&long[1..], b"v")).unwrap();
}

#[test]
fn a_full_store_says_so_and_keeps_what_it_has() {
    let m = Mem::zeroed(512, 256 << 10);
    let s = open(&m).unwrap();
    let mut stored = 0;
    let err = loop {
        match run(s.set(&std::format!("key{stored}"), &[stored as u8; 4000])) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 1000, "never full");
    };
    assert_eq!(err, KvError::Full);
    assert!(stored > 30, "only {stored} items fit");
    for i in 0..stored {
        let v = run(s.get(&std::format!("key{i}"))).unwrap().unwrap();
        assert_eq!(v, [i as u8; 4000]);
    }
    // Removing makes room again.
    for i in 0..stored / 2 {
        run(s.remove(&std::format!("key{i}"))).unwrap();
    }
    run(s.set("again", &[9u8; 4000])).unwrap();
    assert_eq!(run(s.list()).unwrap().len(), stored - stored / 2 + 1);
}

#[test]
fn overwriting_one_key_many_times_collects_garbage() {
    let m = Mem::zeroed(4096, 256 << 10);
    let s = open(&m).unwrap();
    for i in 0u32..2000 {
        let mut v = alloc::vec![0u8; 2000];
        v[..4].copy_from_slice(&i.to_le_bytes());
        run(s.set("counter", &v)).unwrap();
    }
    drop(s);
    let s = open(&m).unwrap();
    let v = run(s.get("counter")).unwrap().unwrap();
    assert_eq!(u32::from_le_bytes(v[..4].try_into().unwrap()), 1999);
}

#[test]
fn random_operations_match_a_btreemap_across_reopens() {
    let m = Mem::zeroed(512, 512 << 10);
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut s = open(&m).unwrap();
    for round in 0..3000 {
        let key = std::format!("k{}", next() % 64);
        match next() % 10 {
            0..=5 => {
                let len = (next() % 1500) as usize;
                let v: Vec<u8> = (0..len).map(|i| (i as u64 ^ next()) as u8).collect();
                run(s.set(&key, &v)).unwrap();
                model.insert(key, v);
            }
            6 | 7 => {
                run(s.remove(&key)).unwrap();
                model.remove(&key);
            }
            _ => assert_eq!(run(s.get(&key)).unwrap().as_ref(), model.get(&key)),
        }
        if round % 500 == 499 {
            drop(s);
            s = open(&m).unwrap();
            let keys: Vec<String> = model.keys().cloned().collect();
            assert_eq!(run(s.list()).unwrap(), keys, "round {round}");
        }
    }
    for (k, v) in &model {
        assert_eq!(run(s.get(k)).unwrap().as_ref(), Some(v));
    }
}
