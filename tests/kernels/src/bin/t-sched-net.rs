//! A task blocked on a network read lets the others run, and wakes when a
//! frame arrives. Two phases, each waiting for one frame of EtherType
//! 0x88b5 whose payload starts with the phase's name:
//!
//! * `busy`: meanwhile a ticker task loops on `yield_now`, so the scheduler
//!   never idles (the frame is found by its per-round event check);
//! * `idle`: the ticker sleeps 5 ms per tick, so the scheduler idles in the
//!   platform until the next deadline or network input.
//!
//! For each phase it prints "sched-net: PHASE waiting" once the reader is
//! suspended, then "sched-net: PHASE woke after MS ms ticks=N ..." where N
//! is how often the ticker ran while the reader waited.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use core::cell::Cell;
use core::time::Duration;
use morgana::{Instant, Net, sleep, spawn, yield_now};

const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

#[morgana::main]
async fn main(service: Net) -> Result<(), morgana::NetError> {
    let net = Rc::new(service);
    let ticks = Rc::new(Cell::new(0u64));
    for phase in ["busy", "idle"] {
        let t = ticks.clone();
        let busy = phase == "busy";
        let ticker = spawn(async move {
            loop {
                if busy {
                    yield_now().await;
                } else {
                    sleep(Duration::from_millis(5)).await;
                }
                t.set(t.get() + 1);
            }
        });
        let (n, t) = (net.clone(), ticks.clone());
        let reader = spawn(async move {
            let mut buf = alloc::vec![0u8; n.max_frame()];
            let mut others = 0u32;
            loop {
                let len = n.read(&mut buf).await?;
                if len >= 14 + 4 && buf[12..14] == ETHERTYPE {
                    let tag = core::str::from_utf8(&buf[14..18]).unwrap_or("?");
                    return Ok((t.get(), alloc::string::String::from(tag), others));
                }
                others += 1;
            }
        });
        // Let the reader reach its read and suspend there.
        yield_now().await;
        yield_now().await;
        let t0 = Instant::now();
        let k0 = ticks.get();
        morgana::println!("sched-net: {phase} waiting");
        let r: Result<_, morgana::NetError> = match reader.await {
            Ok(r) => r,
            Err(e) => {
                morgana::println!("sched-net: reader failed: {e}");
                return Ok(());
            }
        };
        let (at_wake, tag, others) = r?;
        let ms = t0.elapsed().as_millis();
        ticker.cancel();
        morgana::println!(
            "sched-net: {phase} woke after {ms} ms ticks={} frame={tag} others={others}",
            at_wake - k0
        );
    }
    Ok(())
}
