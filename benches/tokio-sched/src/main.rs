//! The work of Morgana's `b-sched` benchmark (tests/kernels/src/bin/b-sched.rs)
//! on tokio's current-thread runtime, for comparison:
//!
//! * spawn+join: spawn N empty tasks, then await every handle;
//! * switch: two tasks ping-pong with `tokio::task::yield_now`, M yields in
//!   all.
//!
//! Arguments: `N M` (default 100000 1000000). Prints the same lines as
//! `b-sched`:
//!
//! ```text
//! spawn_join tasks=N ns=TOTAL ns_per_op=X.Y
//! switch switches=M ns=TOTAL ns_per_op=X.Y
//! ```

use std::process::ExitCode;
use std::time::Instant;

fn per_op(total: u64, n: u64) -> (u64, u64) {
    let tenths = total * 10 / n.max(1);
    (tenths / 10, tenths % 10)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut num = |default: u64| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let tasks = num(100_000);
    let switches = num(1_000_000);
    if tasks == 0 || switches < 2 {
        eprintln!("usage: tokio-sched [TASKS [SWITCHES]]");
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async {
        let t0 = Instant::now();
        let handles: Vec<_> = (0..tasks).map(|_| tokio::spawn(async {})).collect();
        for h in handles {
            h.await.expect("an empty task completes");
        }
        let ns = t0.elapsed().as_nanos() as u64;
        let (i, f) = per_op(ns, tasks);
        println!("spawn_join tasks={tasks} ns={ns} ns_per_op={i}.{f}");

        let half = switches / 2;
        let t0 = Instant::now();
        let ping = || {
            tokio::spawn(async move {
                for _ in 0..half {
                    tokio::task::yield_now().await;
                }
            })
        };
        let (a, b) = (ping(), ping());
        a.await.expect("ping completes");
        b.await.expect("pong completes");
        let ns = t0.elapsed().as_nanos() as u64;
        let (i, f) = per_op(ns, 2 * half);
        println!("switch switches={} ns={ns} ns_per_op={i}.{f}", 2 * half);
    });
    ExitCode::SUCCESS
}
