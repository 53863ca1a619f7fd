//! For the trace-buffer tests: spawns two tasks that sleep and record user
//! events, logs a line, then exits 0, or with the argument `hang` records
//! `hanging` and loops forever (the test kills the tender and reads the
//! trace file).

#![no_std]
#![no_main]

use core::time::Duration;

#[morgana::main]
async fn main() -> u8 {
    let hang = morgana::args().any(|a| a == "hang");
    morgana::console::init_logger(log::LevelFilter::Info);
    let workers: [_; 2] = core::array::from_fn(|i| {
        morgana::spawn(async move {
            for round in 0..3u64 {
                morgana::sleep(Duration::from_millis(5)).await;
                morgana::trace!("worker-round", (i as u64) * 100 + round);
            }
        })
    });
    for w in workers {
        let _ = w.await;
    }
    log::info!("workers done");
    if hang {
        morgana::trace!("hanging", 7);
        morgana::println!("trace: hanging");
        loop {
            core::hint::spin_loop();
        }
    }
    morgana::println!("trace: done");
    0
}
