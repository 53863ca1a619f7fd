//! Clocks and sleeping: a 100 ms yield to the platform, a 100 ms sleep on
//! the scheduler, and the wall clock.

#![no_std]
#![no_main]

use core::time::Duration;
use morgana::{Instant, WallTime, sys};

#[morgana::main]
async fn main() {
    morgana::println!("time: yield start");
    let t0 = sys::clock_monotonic();
    let deadline = t0 + 100_000_000;
    while sys::clock_monotonic() < deadline {
        sys::yield_until(deadline);
    }
    let ms = (sys::clock_monotonic() - t0) / 1_000_000;
    morgana::println!("time: yield end after {ms} ms");

    morgana::println!("time: sleep start");
    let t = Instant::now();
    morgana::sleep(Duration::from_millis(100)).await;
    morgana::println!("time: sleep end after {} ms", t.elapsed().as_millis());

    let c = WallTime::now().calendar();
    morgana::println!("time: wall clock {c} year {}", c.year);
}
