//! The scheduling contract, rule by rule, on the deterministic platform.

use super::block_on;
use crate::platform::sim::{self, Event};
use crate::{Block, BlockError, JoinError, Net, sleep, sleep_until, spawn, timeout, yield_now};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::time::Duration;
use morgana_abi::mft::{DeviceDecl, DeviceKind};

const MS: u64 = 1_000_000;

fn net() -> [DeviceDecl; 1] {
    [DeviceDecl {
        name: "service",
        kind: DeviceKind::Net,
    }]
}

fn disk() -> [DeviceDecl; 1] {
    [DeviceDecl {
        name: "storage",
        kind: DeviceKind::Block,
    }]
}

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

#[test]
fn cpu_bound_tasks_that_yield_alternate_fairly() {
    sim::run(&[], 512, || {
        let l = log();
        let status = block_on({
            let l = l.clone();
            async move {
                let mut hs = Vec::new();
                for name in ["a", "b", "c"] {
                    let l = l.clone();
                    hs.push(spawn(async move {
                        for i in 0..4 {
                            l.borrow_mut().push(format!("{name}{i}"));
                            yield_now().await;
                        }
                    }));
                }
                for h in hs {
                    h.await.unwrap();
                }
                0
            }
        });
        assert_eq!(status, 0);
        assert_eq!(l.borrow().join(" "), "a0 b0 c0 a1 b1 c1 a2 b2 c2 a3 b3 c3");
    });
}

#[test]
fn a_task_cannot_starve_others_by_awaiting_ready_runtime_futures() {
    sim::run(&[], 512, || {
        let l = log();
        block_on({
            let l = l.clone();
            async move {
                let done = spawn(async {});
                // A finished task's handle, a zero sleep: both ready at once.
                let spinner = {
                    let l = l.clone();
                    spawn(async move {
                        for i in 0..3 {
                            sleep(Duration::ZERO).await;
                            l.borrow_mut().push(format!("spin{i}"));
                        }
                    })
                };
                let other = {
                    let l = l.clone();
                    spawn(async move {
                        for i in 0..3 {
                            l.borrow_mut().push(format!("other{i}"));
                            yield_now().await;
                        }
                    })
                };
                done.await.unwrap();
                spinner.await.unwrap();
                other.await.unwrap();
                0
            }
        });
        let l = l.borrow();
        // The spinner gives the CPU away at every await: the other task
        // runs between each of its steps.
        let pos = |s: &str| l.iter().position(|x| x == s).unwrap();
        assert!(pos("other0") < pos("spin0"), "{l:?}");
        assert!(pos("other1") < pos("spin1"), "{l:?}");
        assert!(pos("other2") < pos("spin2"), "{l:?}");
    });
}

#[test]
fn a_net_read_suspends_lets_others_run_and_wakes_on_arrival() {
    sim::run(&net(), 512, || {
        let l = log();
        sim::inject(1, 1_000 * MS + 50 * MS, &[0xaa; 60]);
        block_on({
            let l = l.clone();
            async move {
                let net = Net::acquire("service").unwrap();
                let counter = {
                    let l = l.clone();
                    spawn(async move {
                        for i in 0..3 {
                            l.borrow_mut().push(format!("tick{i}@{}", sim::now() / MS));
                            sleep(Duration::from_millis(10)).await;
                        }
                    })
                };
                let mut buf = vec![0u8; 1514];
                l.borrow_mut().push("read".into());
                let n = net.read(&mut buf).await.unwrap();
                l.borrow_mut().push(format!("got {n}@{}", sim::now() / MS));
                counter.await.unwrap();
                0
            }
        });
        assert_eq!(
            l.borrow().join(" "),
            "read tick0@1000 tick1@1010 tick2@1020 got 60@1050"
        );
    });
}

#[test]
fn a_net_write_never_suspends() {
    sim::run(&net(), 512, || {
        let l = log();
        block_on({
            let l = l.clone();
            async move {
                let net = Net::acquire("service").unwrap();
                let other = {
                    let l = l.clone();
                    spawn(async move {
                        l.borrow_mut().push("other".into());
                    })
                };
                for _ in 0..100 {
                    net.write(&[1u8; 64]).unwrap();
                }
                l.borrow_mut().push("wrote 100".into());
                other.await.unwrap();
                assert_eq!(net.stats().tx_packets, 100);
                0
            }
        });
        assert_eq!(l.borrow().join(" "), "wrote 100 other");
        assert_eq!(sim::sent().len(), 100);
    });
}

#[test]
fn atomic_block_io_is_done_at_once_and_never_interleaved() {
    sim::run(&disk(), 512, || {
        block_on(async {
            let d = Block::acquire("storage").unwrap();
            let other = spawn(async {
                sim::mark("other");
            });
            d.atomic_write(0, &[7u8; 512 * 8]).unwrap();
            sim::mark("written");
            let mut back = [0u8; 512 * 8];
            d.atomic_read(0, &mut back).unwrap();
            assert!(back.iter().all(|&b| b == 7));
            other.await.unwrap();
            0
        });
        let l = sim::log();
        let written = l
            .iter()
            .position(|e| *e == Event::Mark("written".into()))
            .unwrap();
        let other = l
            .iter()
            .position(|e| *e == Event::Mark("other".into()))
            .unwrap();
        assert!(
            other > written + 8,
            "the other task ran during atomic I/O: {l:?}"
        );
        let writes: Vec<&Event> = l[..written].iter().collect();
        assert_eq!(
            writes,
            (0..8)
                .map(|s| Event::BlockWrite(s * 512))
                .collect::<Vec<_>>()
                .iter()
                .collect::<Vec<_>>()
        );
    });
}

#[test]
fn scheduled_block_io_waits_for_the_scheduler_and_completes_in_order() {
    sim::run(&disk(), 512, || {
        block_on(async {
            let d = Rc::new(Block::acquire("storage").unwrap());
            let mut hs = Vec::new();
            for s in 0..4u64 {
                let d = d.clone();
                hs.push(spawn(async move {
                    d.write(s, &[s as u8 + 1; 512]).await.unwrap();
                    sim::mark(format!("done{s}"));
                }));
            }
            // A CPU-bound task keeps the scheduler busy for a while.
            let busy = spawn(async {
                for i in 0..3 {
                    sim::mark(format!("busy{i}"));
                    yield_now().await;
                }
            });
            for h in hs {
                h.await.unwrap();
            }
            busy.await.unwrap();
            let mut back = [0u8; 512];
            for s in 0..4 {
                d.atomic_read(s, &mut back).unwrap();
                assert!(back.iter().all(|&b| b == s as u8 + 1));
            }
            0
        });
        let l: Vec<String> = sim::log()
            .into_iter()
            .filter_map(|e| match e {
                Event::BlockWrite(o) => Some(format!("W{}", o / 512)),
                Event::Mark(m) => Some(m),
                _ => None,
            })
            .collect();
        // Queued, not done inline: the first write happens only after a
        // round in which the busy task ran; then one per round while a task
        // is busy; in the order queued.
        assert_eq!(
            l.join(" "),
            "busy0 W0 done0 busy1 W1 busy2 done1 W2 done2 W3 done3",
            "{l:?}"
        );
    });
}

#[test]
fn an_idle_scheduler_does_queued_block_work_then_yields_with_zero_deadline() {
    sim::run(&disk(), 512, || {
        block_on(async {
            let d = Block::acquire("storage").unwrap();
            let mut buf = vec![0u8; 512 * 16];
            d.read(0, &mut buf).await.unwrap();
            0
        });
        let l = sim::log();
        // Nothing else to do: all 16 reads in one go, then a yield with a
        // zero deadline to check for events.
        let reads = l
            .iter()
            .take_while(|e| matches!(e, Event::BlockRead(_)))
            .count();
        assert_eq!(reads, 16, "{l:?}");
        assert!(matches!(l[16], Event::Yield { deadline: 0, .. }), "{l:?}");
    });
}

#[test]
fn sleeps_wake_in_deadline_order_and_on_time() {
    sim::run(&[], 512, || {
        let l = log();
        let start = sim::now();
        block_on({
            let l = l.clone();
            async move {
                let mut hs = Vec::new();
                for d in [30u64, 10, 20, 10] {
                    let l = l.clone();
                    hs.push(spawn(async move {
                        sleep(Duration::from_millis(d)).await;
                        l.borrow_mut()
                            .push(format!("{d}@{}", (sim::now() - start) / MS));
                    }));
                }
                for h in hs {
                    h.await.unwrap();
                }
                sleep_until(crate::Instant::from_nanos(start + 45 * MS)).await;
                l.borrow_mut()
                    .push(format!("until@{}", (sim::now() - start) / MS));
                0
            }
        });
        assert_eq!(l.borrow().join(" "), "10@10 10@10 20@20 30@30 until@45");
        // The scheduler yielded to the platform with each earliest deadline.
        let deadlines: Vec<u64> = sim::log()
            .iter()
            .filter_map(|e| match e {
                Event::Yield { deadline, .. } => Some((deadline - start) / MS),
                _ => None,
            })
            .collect();
        assert_eq!(deadlines, vec![10, 20, 30, 45]);
    });
}

#[test]
fn ten_thousand_tasks_spawned_and_joined() {
    sim::run(&[], 512, || {
        let total = block_on(async {
            let hs: Vec<_> = (0..10_000u64)
                .map(|i| spawn(async move { i * 2 }))
                .collect();
            let mut sum = 0u64;
            for h in hs {
                sum += h.await.unwrap();
            }
            assert_eq!(crate::stats().tasks, 1, "only main is left");
            (sum / 1_000) as i32
        });
        assert_eq!(total, (2 * (0..10_000u64).sum::<u64>() / 1_000) as i32);
    });
}

#[test]
fn cancellation() {
    sim::run(&[], 512, || {
        block_on(async {
            let l = log();
            let sleeper = {
                let l = l.clone();
                spawn(async move {
                    sleep(Duration::from_secs(60)).await;
                    l.borrow_mut().push("woke".into());
                })
            };
            yield_now().await;
            sleeper.cancel();
            assert!(sleeper.is_finished());
            assert_eq!(sleeper.await, Err(JoinError::Cancelled));

            // A task cancelled before it first runs never runs, and its
            // handle completes.
            let never = {
                let l = l.clone();
                spawn(async move { l.borrow_mut().push("cancelled task ran".into()) })
            };
            never.cancel();
            assert!(never.is_finished());
            assert_eq!(never.await, Err(JoinError::Cancelled));

            // Cancelling a finished task changes nothing.
            let done = spawn(async { 5 });
            yield_now().await;
            done.cancel();
            assert_eq!(done.await, Ok(5));

            // A task may cancel itself through a handle it holds.
            let slot: Rc<RefCell<Option<crate::JoinHandle<()>>>> = Rc::new(RefCell::new(None));
            let me = {
                let slot = slot.clone();
                let l = l.clone();
                spawn(async move {
                    slot.borrow().as_ref().unwrap().cancel();
                    yield_now().await;
                    l.borrow_mut().push("self-cancel ignored".into());
                })
            };
            *slot.borrow_mut() = Some(me);
            yield_now().await;
            yield_now().await;
            assert!(slot.borrow().as_ref().unwrap().is_finished());
            assert!(l.borrow().is_empty(), "{:?}", l.borrow());
            0
        });
        // The cancelled sleeper left no timer behind: the run ended
        // without waiting 60 virtual seconds.
        assert!(sim::now() < 2_000 * MS);
    });
}

#[test]
fn timeouts() {
    sim::run(&[], 512, || {
        block_on(async {
            let start = sim::now();
            let r = timeout(Duration::from_millis(5), sleep(Duration::from_millis(50))).await;
            assert_eq!(r, Err(crate::Elapsed));
            assert_eq!(sim::now() - start, 5 * MS);
            let r = timeout(Duration::from_millis(50), async { 3 }).await;
            assert_eq!(r, Ok(3));
            0
        });
    });
}

#[test]
fn a_panic_surfaces_through_an_awaited_handle() {
    sim::quiet_panics();
    sim::run(&[], 512, || {
        block_on(async {
            let h = spawn(async {
                yield_now().await;
                panic!("deliberate: in a task");
            });
            assert_eq!(
                h.await,
                Err(JoinError::Panicked("deliberate: in a task".into()))
            );
            0
        });
    });
}

#[test]
#[should_panic(expected = "sim exit 255")]
fn a_panic_in_a_detached_task_aborts() {
    sim::quiet_panics();
    sim::run(&[], 512, || {
        block_on(async {
            drop(spawn(async {
                panic!("deliberate: detached");
            }));
            sleep(Duration::from_millis(1)).await;
            0
        });
    });
}

#[test]
#[should_panic(expected = "deadlock")]
fn a_deadlock_is_reported_not_hung() {
    sim::quiet_panics();
    sim::run(&[], 512, || {
        block_on(async {
            core::future::pending::<()>().await;
            0
        });
    });
}

#[test]
fn hooks_run_after_every_yield_to_the_platform() {
    sim::run(&[], 512, || {
        let n = Rc::new(RefCell::new(0));
        block_on({
            let n = n.clone();
            async move {
                crate::on_yield(move || *n.borrow_mut() += 1);
                for _ in 0..3 {
                    sleep(Duration::from_millis(1)).await;
                }
                0
            }
        });
        let yields = sim::log()
            .iter()
            .filter(|e| matches!(e, Event::Yield { .. }))
            .count();
        assert_eq!(*n.borrow(), yields);
        assert_eq!(yields, 3);
    });
}

#[test]
fn busy_tasks_still_poll_the_network_every_round() {
    sim::run(&net(), 512, || {
        block_on(async {
            let net = Rc::new(Net::acquire("service").unwrap());
            let reader = {
                let net = net.clone();
                spawn(async move {
                    let mut buf = [0u8; 1514];
                    net.read(&mut buf).await.unwrap();
                    sim::mark("frame");
                })
            };
            for i in 0..5 {
                if i == 2 {
                    sim::inject(1, sim::now(), &[2; 60]);
                }
                sim::mark(format!("busy{i}"));
                yield_now().await;
            }
            reader.await.unwrap();
            0
        });
        let l: Vec<String> = sim::log()
            .into_iter()
            .map(|e| match e {
                Event::Yield {
                    deadline: 0, ready, ..
                } => format!("poll{ready}"),
                Event::Mark(m) => m,
                e => format!("{e:?}"),
            })
            .collect();
        // The reader first gives way (availability rule), then finds no
        // frame and waits. From then on every round ends with a
        // zero-timeout yield to the platform, although a task is busy: the
        // frame that arrives is found at once and read the next round.
        assert_eq!(
            l.join(" "),
            "busy0 busy1 busy2 poll2 busy3 NetRead(1) frame busy4",
            "{l:?}"
        );
    });
}

#[test]
fn block_errors_are_typed() {
    sim::run(&disk(), 512, || {
        block_on(async {
            let d = Block::acquire("storage").unwrap();
            let mut buf = [0u8; 512];
            assert_eq!(d.atomic_read(64, &mut buf), Err(BlockError::OutOfRange));
            assert_eq!(
                d.atomic_read(0, &mut buf[..100]),
                Err(BlockError::Misaligned)
            );
            assert_eq!(
                d.read(63, &mut [0u8; 1024]).await,
                Err(BlockError::OutOfRange)
            );
            let ro = d.into_read_only();
            assert!(!ro.info().read_write);
            assert_eq!(ro.atomic_write(0, &buf), Err(BlockError::ReadOnly));
            assert_eq!(ro.write(0, &buf).await, Err(BlockError::ReadOnly));
            assert!(Block::acquire("storage").is_err(), "acquired twice");
            assert!(Block::acquire("other").is_err());
            0
        });
    });
}

/// A run's leftover tasks (and what they hold) are freed by the next run:
/// the fuzzer's `net` target does thousands of runs in one process, and
/// leaking them ran it out of memory.
#[test]
fn the_next_run_frees_the_leftover_tasks_of_a_run() {
    let held = Rc::new(());
    sim::run(&net(), 512, || {
        let h = held.clone();
        block_on(async move {
            // One task waiting for a frame that never comes, one asleep.
            drop(spawn({
                let h = h.clone();
                async move {
                    let net = Net::acquire("service").unwrap();
                    let mut b = [0u8; 64];
                    let _ = net.read(&mut b).await;
                    drop(h);
                }
            }));
            drop(spawn(async move {
                sleep(Duration::from_secs(3600)).await;
                drop(h);
            }));
            yield_now().await;
            0
        });
    });
    assert_eq!(Rc::strong_count(&held), 3, "the tasks are still there");
    sim::run(&[], 512, || {});
    assert_eq!(Rc::strong_count(&held), 1, "the leftover tasks leaked");
}
