//! The key-value store on a real block device, across boots. The guest
//! arguments are operations run in order on keys `key0` .. `key99`:
//!
//! * `write:SEED` stores every key with a value made from SEED (lengths
//!   0 to 1,499 bytes);
//! * `check:SEED` checks every key has SEED's value, and that `list` gives
//!   exactly the 100 keys;
//! * `drop-odd` removes the odd keys;
//! * `check-even:SEED` checks the even keys have SEED's value and the odd
//!   ones are gone.
//!
//! Meanwhile a task ticks on a 5 ms sleep, to show that the store's
//! (scheduled) I/O lets it run. Prints one line per operation; exits 3 on
//! the first mismatch.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::time::Duration;
use morgana_kv::Kv;

const KEYS: usize = 100;

fn value(seed: u32, i: usize) -> Vec<u8> {
    let len = (i * 37 + seed as usize * 101) % 1500;
    (0..len)
        .map(|j| {
            (j as u32)
                .wrapping_mul(31)
                .wrapping_add(seed * 7 + i as u32) as u8
        })
        .collect()
}

fn key(i: usize) -> String {
    format!("key{i}")
}

async fn check(kv: &Kv, seed: u32, odd_gone: bool) -> Result<usize, String> {
    let mut n = 0;
    for i in 0..KEYS {
        let got = kv.get(&key(i)).await.map_err(|e| format!("get {i}: {e}"))?;
        let want = (!odd_gone || i % 2 == 0).then(|| value(seed, i));
        if got != want {
            return Err(format!("key{i}: wrong value"));
        }
        n += usize::from(want.is_some());
    }
    let listed = kv.list().await.map_err(|e| format!("list: {e}"))?;
    if listed.len() != n {
        return Err(format!("list gave {} keys, want {n}", listed.len()));
    }
    Ok(n)
}

#[morgana::main]
async fn main(storage: Kv) -> u8 {
    let info = storage.info();
    morgana::println!(
        "kv: {} pages of {} bytes ({})",
        info.pages,
        info.page_size,
        if info.created { "created" } else { "opened" }
    );
    let ticks = Rc::new(Cell::new(0u32));
    let t = ticks.clone();
    let ticker = morgana::spawn(async move {
        loop {
            morgana::sleep(Duration::from_millis(5)).await;
            t.set(t.get() + 1);
        }
    });
    for op in morgana::args().filter(|a| !a.starts_with("--")) {
        let (name, seed) = op.split_once(':').unwrap_or((op, "0"));
        let seed: u32 = seed.parse().unwrap_or(0);
        let r = match name {
            "write" => {
                let mut r = Ok(KEYS);
                for i in 0..KEYS {
                    if let Err(e) = storage.set(&key(i), &value(seed, i)).await {
                        r = Err(format!("set {i}: {e}"));
                        break;
                    }
                }
                r
            }
            "check" => check(&storage, seed, false).await,
            "check-even" => check(&storage, seed, true).await,
            "drop-odd" => {
                let mut r = Ok(KEYS / 2);
                for i in (1..KEYS).step_by(2) {
                    if let Err(e) = storage.remove(&key(i)).await {
                        r = Err(format!("remove {i}: {e}"));
                        break;
                    }
                }
                r
            }
            _ => Err(format!("unknown operation {op}")),
        };
        match r {
            Ok(n) => morgana::println!("kv: {op}: {n} keys"),
            Err(e) => {
                morgana::println!("kv: {op}: FAILED: {e}");
                return 3;
            }
        }
    }
    ticker.cancel();
    morgana::println!("kv: ticker ran {} times", ticks.get());
    0
}
