//! Scheduled and atomic block I/O against the scheduling contract, on a
//! zeroed disk of at least 48 sectors. Every sector written is filled with
//! one byte (its "mark"); each part prints one line that the host checks
//! exactly, and the host checks the disk afterwards:
//!
//! * `order`: three tasks queue, in this order, a scheduled write of
//!   sectors 0..4 (mark 1), a write of 2..6 (mark 2) and a read of 0..6:
//!   they complete in that order and the read sees both writes;
//! * `busy`: while a task stays runnable, a queued 8-sector write (sectors
//!   8..16, mark 3) advances exactly one sector per scheduler round, as
//!   that task observes with atomic reads between its yields;
//! * `idle`: when the only other task sleeps, the whole queued write
//!   (16..24, mark 4) is done while the scheduler would otherwise sleep;
//! * `atomic`: two tasks take turns to atomically write 16 sectors (24..40,
//!   marks 6 and 7) and read them back, while a scheduled write of the same
//!   sectors (mark 5) is queued: each read-back is entirely the writer's
//!   own (nothing ran in between), while between turns the scheduled
//!   write lands one sector per round (and is overwritten by the next
//!   turn); the sectors it reaches after the last turn keep mark 5;
//! * `cancel`: a scheduled write (40..44, mark 8) whose task is cancelled
//!   right after queueing it is never performed.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use core::cell::{Cell, RefCell};
use core::fmt::Write;
use core::time::Duration;
use morgana::{Block, sleep, spawn, yield_now};

type Log = Rc<RefCell<String>>;

/// The mark of a sector (its first byte) if the whole sector carries it;
/// 255 for a mixed sector.
fn mark(sector: &[u8]) -> u8 {
    let m = sector[0];
    let word = u64::from_ne_bytes([m; 8]);
    let uniform = sector
        .chunks_exact(8)
        .all(|w| u64::from_ne_bytes(w.try_into().unwrap()) == word);
    if uniform { m } else { 255 }
}

/// The marks of sectors `first..first + n`, read atomically.
fn marks(disk: &Block, first: u64, n: u64) -> vec::Vec<u8> {
    let ss = disk.info().sector_size as usize;
    let mut buf = vec![0u8; ss * n as usize];
    if let Err(e) = disk.atomic_read(first, &mut buf) {
        morgana::println!("sched-block: atomic read failed: {e}");
        morgana::exit(3);
    }
    buf.chunks(ss).map(mark).collect()
}

fn filled(disk: &Block, sectors: u64, m: u8) -> vec::Vec<u8> {
    vec![m; disk.info().sector_size as usize * sectors as usize]
}

fn check(r: Result<(), morgana::BlockError>) {
    if let Err(e) = r {
        morgana::println!("sched-block: I/O failed: {e}");
        morgana::exit(3);
    }
}

async fn order(disk: &Rc<Block>) {
    let log: Log = Rc::default();
    let (d, l) = (disk.clone(), log.clone());
    let w1 = spawn(async move {
        check(d.write(0, &filled(&d, 4, 1)).await);
        l.borrow_mut().push_str(" w1");
    });
    let (d, l) = (disk.clone(), log.clone());
    let w2 = spawn(async move {
        check(d.write(2, &filled(&d, 4, 2)).await);
        l.borrow_mut().push_str(" w2");
    });
    let (d, l) = (disk.clone(), log.clone());
    let r = spawn(async move {
        let mut buf = vec![0u8; d.info().sector_size as usize * 6];
        check(d.read(0, &mut buf).await);
        l.borrow_mut().push_str(" r");
        buf.chunks(d.info().sector_size as usize)
            .map(mark)
            .collect::<vec::Vec<u8>>()
    });
    let _ = w1.await;
    let _ = w2.await;
    let seen = r.await.unwrap_or_default();
    morgana::println!("sched-block: order{} read={seen:?}", log.borrow());
}

/// A scheduled write of 8 sectors from `first` (mark `m`) while another
/// task observes its progress, yielding with `pause` between looks.
async fn progress<F: Future<Output = ()> + 'static>(
    disk: &Rc<Block>,
    what: &str,
    first: u64,
    m: u8,
    pause: fn() -> F,
) {
    let done = Rc::new(Cell::new(false));
    let (d, fin) = (disk.clone(), done.clone());
    let w = spawn(async move {
        check(d.write(first, &filled(&d, 8, m)).await);
        fin.set(true);
    });
    let (d, fin) = (disk.clone(), done.clone());
    let p = spawn(async move {
        let mut seen = String::new();
        loop {
            let n = marks(&d, first, 8).iter().filter(|&&x| x == m).count();
            let _ = write!(seen, " {n}");
            if fin.get() {
                return seen;
            }
            pause().await;
        }
    });
    let _ = w.await;
    let seen = p.await.unwrap_or_default();
    morgana::println!("sched-block: {what}{seen}");
}

async fn atomic(disk: &Rc<Block>) {
    const FIRST: u64 = 24;
    const N: u64 = 16;
    const TURNS: u32 = 6;
    let (d, done) = (disk.clone(), Rc::new(Cell::new(false)));
    let fin = done.clone();
    let w = spawn(async move {
        check(d.write(FIRST, &filled(&d, N, 5)).await);
        fin.set(true);
    });
    let log: Log = Rc::default();
    let consistent = Rc::new(Cell::new(0u32));
    let turn = |name: char, m: u8| {
        let (d, log, consistent) = (disk.clone(), log.clone(), consistent.clone());
        async move {
            for _ in 0..TURNS {
                let queued = marks(&d, FIRST, N).iter().filter(|&&x| x == 5).count();
                let _ = write!(log.borrow_mut(), " {name}{queued}");
                check(d.atomic_write(FIRST, &filled(&d, N, m)));
                if marks(&d, FIRST, N).iter().all(|&x| x == m) {
                    consistent.set(consistent.get() + 1);
                }
                yield_now().await;
            }
        }
    };
    let a = spawn(turn('a', 6));
    let b = spawn(turn('b', 7));
    let _ = a.await;
    let _ = b.await;
    let _ = w.await;
    // Run-length encoded marks of the 16 sectors, e.g. "7*5,5*11".
    let mut last = String::new();
    let fin = marks(disk, FIRST, N);
    let mut i = 0;
    while i < fin.len() {
        let run = fin[i..].iter().take_while(|&&x| x == fin[i]).count();
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(last, "{sep}{}*{run}", fin[i]);
        i += run;
    }
    morgana::println!(
        "sched-block: atomic{} consistent={} final={last} done={}",
        log.borrow(),
        consistent.get(),
        done.get()
    );
}

async fn cancel(disk: &Rc<Block>) {
    let d = disk.clone();
    let c = spawn(async move {
        check(d.write(40, &filled(&d, 4, 8)).await);
    });
    // It runs, queues its write and yields; then it is cancelled.
    yield_now().await;
    c.cancel();
    let r = c.await;
    // Idle for a while: a queued operation would be done now.
    sleep(Duration::from_millis(20)).await;
    let written = marks(disk, 40, 4).iter().filter(|&&x| x == 8).count();
    morgana::println!(
        "sched-block: cancel result={} written={written}",
        if r.is_err() { "cancelled" } else { "finished" }
    );
}

#[morgana::main]
async fn main(storage: Block) -> u8 {
    if storage.info().sectors < 48 {
        morgana::println!("sched-block: needs at least 48 sectors");
        return 2;
    }
    let disk = Rc::new(storage);
    order(&disk).await;
    progress(&disk, "busy", 8, 3, yield_now).await;
    progress(&disk, "idle", 16, 4, || sleep(Duration::from_millis(20))).await;
    atomic(&disk).await;
    cancel(&disk).await;
    let s = morgana::stats();
    morgana::println!("sched-block: OK block_ops={}", s.block_ops);
    0
}
