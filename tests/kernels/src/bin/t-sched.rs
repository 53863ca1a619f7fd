//! The scheduling contract on a real image, one scenario per run (the first
//! argument); each prints result lines that the host checks exactly:
//!
//! * `fair`: two CPU-bound tasks of unequal work that `yield_now` after
//!   each step alternate (`a0 b0 a1 b1 ...`); so do two that await an
//!   already-expired sleep (availability first);
//! * `spawn`: 10,000 tasks spawned (all alive at once) and joined;
//! * `cancel`: a queued task that never runs, a sleeping task dropped at
//!   once, a finished task unaffected, a task cancelling itself, and a
//!   joiner woken by the cancellation;
//! * `sleep`: tasks sleeping 300, 100 and 200 ms and a 250 ms timeout wake
//!   in deadline order, each reporting its lateness in microseconds.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt::Write;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::time::Duration;
use morgana::{Instant, JoinError, sleep, sleep_until, spawn, timeout, yield_now};

type Log = Rc<RefCell<String>>;

/// Some CPU work that the compiler cannot remove (kept small: on an
/// emulating hypervisor each iteration costs about a microsecond).
fn spin(n: u32) -> u32 {
    let mut x = 0u32;
    for i in 0..n {
        x = core::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

const STEPS: u32 = 8;

async fn fair() {
    let log: Log = Rc::default();
    let worker = |name: char, work: u32, log: Log| async move {
        for i in 0..STEPS {
            spin(work);
            let _ = write!(log.borrow_mut(), " {name}{i}");
            yield_now().await;
        }
    };
    // `a` does three times the work of `b` per step: turns, not time, are
    // shared.
    let a = spawn(worker('a', 600, log.clone()));
    let b = spawn(worker('b', 200, log.clone()));
    let _ = a.await;
    let _ = b.await;
    morgana::println!("sched: fair yield_now:{}", log.borrow());

    // Awaiting a runtime future that is already complete (an expired
    // sleep) still gives the other ready task its turn.
    let log: Log = Rc::default();
    let worker = |name: char, log: Log| async move {
        for i in 0..STEPS {
            let _ = write!(log.borrow_mut(), " {name}{i}");
            sleep(Duration::ZERO).await;
        }
    };
    let c = spawn(worker('c', log.clone()));
    let d = spawn(worker('d', log.clone()));
    let _ = c.await;
    let _ = d.await;
    morgana::println!("sched: fair expired-sleep:{}", log.borrow());
}

const TASKS: u64 = 10_000;

async fn spawn_many() {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            spawn(async move {
                yield_now().await;
                i * 3
            })
        })
        .collect();
    let alive = morgana::stats().tasks;
    let mut sum = 0u64;
    let mut joined = 0u64;
    for h in handles {
        if let Ok(v) = h.await {
            sum += v;
            joined += 1;
        }
    }
    morgana::println!(
        "sched: spawn tasks={TASKS} alive={alive} joined={joined} sum={sum} left={} in {} ms",
        morgana::stats().tasks,
        t0.elapsed().as_millis()
    );
}

fn show<T: core::fmt::Debug>(r: &Result<T, JoinError>) -> String {
    let mut s = String::new();
    let _ = match r {
        Ok(v) => write!(s, "ok({v:?})"),
        Err(JoinError::Cancelled) => write!(s, "cancelled"),
        Err(JoinError::Panicked(_)) => write!(s, "panicked"),
    };
    s
}

/// Sets its flag when dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

async fn cancel() {
    let mut out = String::new();

    // A task cancelled before it first runs never runs.
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = spawn(async move { r.set(true) });
    h.cancel();
    let res = h.await;
    for _ in 0..3 {
        yield_now().await;
    }
    let _ = write!(out, " queued={} ran={}", show(&res), ran.get());

    // A sleeping task is dropped at once, and never wakes.
    let (dropped, woke) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
    let (d, w) = (dropped.clone(), woke.clone());
    let h = spawn(async move {
        let _guard = DropFlag(d);
        sleep(Duration::from_millis(30)).await;
        w.set(true);
    });
    // Its first poll yields to us (availability first), its second
    // registers the sleep.
    yield_now().await;
    yield_now().await;
    h.cancel();
    let dropped_at_once = dropped.get();
    let res = h.await;
    sleep(Duration::from_millis(60)).await;
    let _ = write!(
        out,
        " sleeping={} dropped={dropped_at_once} woke={}",
        show(&res),
        woke.get()
    );

    // Cancelling a finished task changes nothing.
    let h = spawn(async { 7u32 });
    while !h.is_finished() {
        yield_now().await;
    }
    h.cancel();
    let _ = write!(out, " finished={}", show(&h.await));

    // A task that cancels itself is dropped when it next returns to the
    // scheduler: code after its next await never runs.
    let slot: Rc<RefCell<Option<morgana::JoinHandle<()>>>> = Rc::default();
    let (before, after) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
    let (s, b, a) = (slot.clone(), before.clone(), after.clone());
    let h = spawn(async move {
        yield_now().await;
        if let Some(me) = s.borrow().as_ref() {
            me.cancel();
        }
        b.set(true);
        yield_now().await;
        a.set(true);
    });
    *slot.borrow_mut() = Some(h);
    while !before.get() {
        yield_now().await;
    }
    let h = slot.borrow_mut().take();
    let res = match h {
        Some(h) => h.await,
        None => Ok(()),
    };
    let _ = write!(out, " self={} after={}", show(&res), after.get());

    // A task awaiting a handle is woken when another task cancels it
    // (the handle is shared so that both can reach it).
    let target = Rc::new(RefCell::new(spawn(sleep(Duration::from_secs(3600)))));
    let seen: Rc<RefCell<String>> = Rc::default();
    let (t, s) = (target.clone(), seen.clone());
    let joiner = spawn(async move {
        let r = poll_fn(|cx| Pin::new(&mut *t.borrow_mut()).poll(cx)).await;
        *s.borrow_mut() = show(&r);
    });
    // Two rounds: the target then sleeps and the joiner waits on it.
    yield_now().await;
    yield_now().await;
    target.borrow().cancel();
    let _ = joiner.await;
    let _ = write!(out, " joiner={}", seen.borrow());

    morgana::println!("sched: cancel{out} tasks={}", morgana::stats().tasks);
}

async fn sleeps() {
    let t0 = Instant::now();
    morgana::println!("sched: sleep start");
    let order: Rc<RefCell<String>> = Rc::default();
    let mut handles = Vec::new();
    for ms in [300u64, 100, 200] {
        let order = order.clone();
        handles.push(spawn(async move {
            let deadline = t0 + Duration::from_millis(ms);
            sleep_until(deadline).await;
            let late = Instant::now().duration_since(deadline).as_micros();
            morgana::println!("sched: woke {ms} late_us={late}");
            let _ = write!(order.borrow_mut(), " {ms}");
        }));
    }
    let o = order.clone();
    handles.push(spawn(async move {
        let deadline = t0 + Duration::from_millis(250);
        // The same deadline as the sleeps: measured from t0, not from now.
        let left = deadline.duration_since(Instant::now());
        let r = timeout(left, sleep(Duration::from_secs(10))).await;
        let late = Instant::now().duration_since(deadline).as_micros();
        morgana::println!("sched: timeout 250 elapsed={} late_us={late}", r.is_err());
        let _ = write!(o.borrow_mut(), " t250");
    }));
    for h in handles {
        let _ = h.await;
    }
    morgana::println!("sched: sleep order{}", order.borrow());
}

#[morgana::main]
async fn main() -> u8 {
    match morgana::args().next().unwrap_or("") {
        "fair" => fair().await,
        "spawn" => spawn_many().await,
        "cancel" => cancel().await,
        "sleep" => sleeps().await,
        _ => {
            morgana::println!("usage: t-sched fair|spawn|cancel|sleep");
            return 2;
        }
    }
    0
}
