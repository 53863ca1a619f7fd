//! Yields to the platform for up to 5 s and reports how soon it came back
//! and which devices were ready: a frame arriving must end the yield early.

#![no_std]
#![no_main]

use morgana::{Net, sys};

#[morgana::main]
async fn main(service: Net) {
    morgana::println!("netwake: ready handle={}", service.handle());
    let t0 = sys::clock_monotonic();
    let ready = sys::yield_until(t0 + 5_000_000_000);
    let ms = (sys::clock_monotonic() - t0) / 1_000_000;
    morgana::println!("netwake: woke after {ms} ms ready_set={ready:#x}");
}
