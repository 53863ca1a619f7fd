//! Benchmark of the scheduler (run on the unix build; `xtask bench` compares
//! it with tokio's current-thread runtime doing the same work, see
//! benches/tokio-sched):
//!
//! * spawn+join: spawn N empty tasks, then await every handle;
//! * switch: two tasks ping-pong with `yield_now`, M yields in all.
//!
//! Arguments: `N M` (default 100000 1000000). Prints one machine-readable
//! line per measurement:
//!
//! ```text
//! spawn_join tasks=N ns=TOTAL ns_per_op=X.Y
//! switch switches=M ns=TOTAL ns_per_op=X.Y
//! ```

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use morgana::{Instant, spawn, yield_now};

/// `total / n` with one decimal, as text.
fn per_op(total: u64, n: u64) -> (u64, u64) {
    let tenths = total * 10 / n.max(1);
    (tenths / 10, tenths % 10)
}

#[morgana::main]
async fn main() -> u8 {
    let mut args = morgana::args();
    let mut num = |default: u64| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let tasks = num(100_000);
    let switches = num(1_000_000);
    if tasks == 0 || switches < 2 {
        morgana::println!("usage: b-sched [TASKS [SWITCHES]]");
        return 2;
    }

    let t0 = Instant::now();
    let handles: Vec<_> = (0..tasks).map(|_| spawn(async {})).collect();
    for h in handles {
        if h.await.is_err() {
            return 1;
        }
    }
    let ns = t0.elapsed().as_nanos() as u64;
    let (i, f) = per_op(ns, tasks);
    morgana::println!("spawn_join tasks={tasks} ns={ns} ns_per_op={i}.{f}");

    let half = switches / 2;
    let t0 = Instant::now();
    let ping = || {
        spawn(async move {
            for _ in 0..half {
                yield_now().await;
            }
        })
    };
    let (a, b) = (ping(), ping());
    if a.await.is_err() || b.await.is_err() {
        return 1;
    }
    let ns = t0.elapsed().as_nanos() as u64;
    let (i, f) = per_op(ns, 2 * half);
    morgana::println!("switch switches={} ns={ns} ns_per_op={i}.{f}", 2 * half);
    0
}
