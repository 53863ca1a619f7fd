//! The cooperative, single-core scheduler.
//!
//! See the crate documentation for the contract. In short: tasks run in
//! rounds, in the order they became ready; after each round in which tasks
//! remain ready the scheduler checks for events (one queued block
//! operation, network readiness with a zero timeout, expired sleeps); when
//! no task is ready it performs queued block operations until the next
//! deadline, then yields to the platform until that deadline (or with a
//! zero timeout, if it did block work) or network input.

mod task;
#[cfg(test)]
mod tests;
pub mod time;

pub use task::{JoinError, JoinHandle, spawn};

use crate::global::Global;
use crate::platform;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, RawWaker, RawWakerVTable, Waker};
use morgana_abi::Solo5Result;
use morgana_abi::trace::Kind;

/// A task's identity: slot index and generation, packed in a `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskRef(u64);

impl TaskRef {
    fn new(index: u32, generation: u32) -> Self {
        Self((u64::from(generation) << 32) | u64::from(index))
    }
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    /// Waiting for a wake-up.
    Idle,
    /// In the ready queue.
    Queued,
    /// Being polled; `true` if woken meanwhile.
    Running(bool),
}

struct Slot {
    generation: u32,
    state: State,
    future: Option<BoxFuture>,
    cancel: bool,
}

/// A scheduled block operation (see [`crate::block::Block::read`]).
pub(crate) struct BlockOp {
    pub(crate) handle: u64,
    pub(crate) offset: u64,
    pub(crate) write: bool,
    pub(crate) buf: RefCell<Box<[u8]>>,
    pub(crate) result: Cell<Option<Result<(), Solo5Result>>>,
    pub(crate) waker: RefCell<Option<Waker>>,
    pub(crate) cancelled: Cell<bool>,
}

/// Scheduler counters, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Task polls.
    pub polls: u64,
    /// Scheduler rounds.
    pub rounds: u64,
    /// Yields to the platform.
    pub yields: u64,
    /// Scheduled block operations performed.
    pub block_ops: u64,
    /// Tasks alive now.
    pub tasks: u64,
}

struct Executor {
    slots: Vec<Slot>,
    free: Vec<u32>,
    ready: VecDeque<TaskRef>,
    sleepers: BTreeMap<(u64, u64), Waker>,
    next_seq: u64,
    net_waiters: Vec<(u64, Waker)>,
    block_queue: VecDeque<Rc<BlockOp>>,
    stats: Stats,
}

static EXEC: Global<Executor> = Global::new(Executor::new());

/// Fresh scheduler state, for the unit tests.
#[cfg(test)]
pub(crate) fn reset() {
    let old = EXEC.with(|e| core::mem::replace(e, Executor::new()));
    // Leftover tasks of a previous test are dropped with their futures.
    core::mem::forget(old);
    HOOKS.with(|h| h.clear());
}

type Hook = Rc<RefCell<dyn FnMut()>>;
static HOOKS: Global<Vec<Hook>> = Global::new(Vec::new());

impl Executor {
    const fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
            sleepers: BTreeMap::new(),
            next_seq: 0,
            net_waiters: Vec::new(),
            block_queue: VecDeque::new(),
            stats: Stats {
                polls: 0,
                rounds: 0,
                yields: 0,
                block_ops: 0,
                tasks: 0,
            },
        }
    }

    fn insert(&mut self, future: BoxFuture) -> TaskRef {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    state: State::Free,
                    future: None,
                    cancel: false,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.state = State::Queued;
        slot.future = Some(future);
        slot.cancel = false;
        let r = TaskRef::new(index, slot.generation);
        self.ready.push_back(r);
        self.stats.tasks += 1;
        crate::trace::record(Kind::Spawn, index, [u64::from(r.generation()), 0, 0]);
        r
    }

    fn slot(&mut self, r: TaskRef) -> Option<&mut Slot> {
        self.slots
            .get_mut(r.index())
            .filter(|s| s.generation == r.generation() && s.state != State::Free)
    }

    fn schedule(&mut self, r: TaskRef) {
        let Some(slot) = self.slot(r) else { return };
        match slot.state {
            State::Idle => {
                slot.state = State::Queued;
                self.ready.push_back(r);
                crate::trace::record(Kind::Wake, r.index() as u32, [0, 0, 0]);
            }
            State::Running(_) => slot.state = State::Running(true),
            State::Queued | State::Free => {}
        }
    }

    /// Takes the next ready task's future out of its slot to poll it.
    fn take_next(&mut self) -> Option<(TaskRef, BoxFuture)> {
        while let Some(r) = self.ready.pop_front() {
            let Some(slot) = self.slot(r) else { continue };
            if slot.state != State::Queued {
                continue;
            }
            if let Some(f) = slot.future.take() {
                slot.state = State::Running(false);
                return Some((r, f));
            }
        }
        None
    }

    /// Puts a polled task back. Returns the future if it must be dropped
    /// (finished or cancelled), which the caller does outside the borrow.
    fn put_back(&mut self, r: TaskRef, f: BoxFuture, finished: bool) -> Option<BoxFuture> {
        let index = r.index();
        let Some(slot) = self.slot(r) else {
            return Some(f);
        };
        if finished || slot.cancel {
            slot.state = State::Free;
            self.free.push(index as u32);
            self.stats.tasks -= 1;
            return Some(f);
        }
        slot.future = Some(f);
        if slot.state == State::Running(true) {
            slot.state = State::Queued;
            self.ready.push_back(r);
        } else {
            slot.state = State::Idle;
        }
        None
    }

    /// Cancels a task: returns its future to drop (outside the borrow), or
    /// marks it so that it is dropped when its current poll returns.
    fn cancel(&mut self, r: TaskRef) -> Option<BoxFuture> {
        let index = r.index();
        let slot = self.slot(r)?;
        if let State::Running(_) = slot.state {
            slot.cancel = true;
            return None;
        }
        let f = slot.future.take();
        slot.state = State::Free;
        self.free.push(index as u32);
        self.stats.tasks -= 1;
        f
    }
}

fn waker(r: TaskRef) -> Waker {
    // SAFETY: the vtable functions below uphold RawWaker's contract: the
    // data is a plain integer (no ownership), so clone/drop are trivial.
    unsafe { Waker::from_raw(RawWaker::new(r.0 as usize as *const (), &VTABLE)) }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(
    |p| RawWaker::new(p, &VTABLE),
    |p| wake(TaskRef(p as usize as u64)),
    |p| wake(TaskRef(p as usize as u64)),
    |_| {},
);

fn wake(r: TaskRef) {
    EXEC.with(|e| e.schedule(r));
}

pub(crate) fn insert(future: BoxFuture) -> TaskRef {
    EXEC.with(|e| e.insert(future))
}

pub(crate) fn cancel(r: TaskRef) {
    let f = EXEC.with(|e| e.cancel(r));
    drop(f);
}

/// Whether any task other than the running one is ready to run.
pub(crate) fn others_ready() -> bool {
    EXEC.with(|e| !e.ready.is_empty())
}

/// The availability rule: the first poll of a runtime future yields the CPU
/// if another task is ready. Returns `true` when the caller must return
/// `Poll::Pending` (its task has been re-queued).
pub(crate) fn coop(cx: &mut Context<'_>, yielded: &mut bool) -> bool {
    if *yielded {
        return false;
    }
    *yielded = true;
    if others_ready() {
        cx.waker().wake_by_ref();
        return true;
    }
    false
}

pub(crate) fn add_sleeper(deadline: u64, waker: Waker) -> (u64, u64) {
    EXEC.with(|e| {
        let key = (deadline, e.next_seq);
        e.next_seq += 1;
        e.sleepers.insert(key, waker);
        crate::trace::record(Kind::Sleep, 0, [deadline, 0, 0]);
        key
    })
}

pub(crate) fn update_sleeper(key: (u64, u64), waker: &Waker) {
    // The replaced waker is dropped outside the scheduler's state: a
    // foreign waker's drop may call back into the runtime.
    let old = EXEC.with(|e| match e.sleepers.get_mut(&key) {
        Some(w) if !w.will_wake(waker) => Some(core::mem::replace(w, waker.clone())),
        _ => None,
    });
    drop(old);
}

pub(crate) fn remove_sleeper(key: (u64, u64)) {
    let w = EXEC.with(|e| e.sleepers.remove(&key));
    drop(w);
}

pub(crate) fn wait_net(handle: u64, waker: &Waker) {
    EXEC.with(|e| {
        if !e
            .net_waiters
            .iter()
            .any(|(h, w)| *h == handle && w.will_wake(waker))
        {
            e.net_waiters.push((handle, waker.clone()));
        }
    })
}

pub(crate) fn queue_block_op(op: Rc<BlockOp>) {
    crate::trace::record(
        Kind::BlockRequest,
        op.handle as u32,
        [op.offset, u64::from(op.write), 0],
    );
    EXEC.with(|e| e.block_queue.push_back(op));
}

/// Registers `hook` to run after every yield to the platform (for example
/// to feed an entropy pool with timing).
pub fn on_yield(hook: impl FnMut() + 'static) {
    let h: Hook = Rc::new(RefCell::new(hook));
    HOOKS.with(|v| v.push(h));
}

/// The scheduler's counters so far.
pub fn stats() -> Stats {
    EXEC.with(|e| e.stats)
}

fn run_hooks() {
    let hooks: Vec<Hook> = HOOKS.with(|v| v.clone());
    for h in hooks {
        (h.borrow_mut())();
    }
}

fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}

fn wake_net(ready: u64) {
    if ready == 0 {
        return;
    }
    let woken: Vec<(u64, Waker)> = EXEC.with(|e| {
        let (woken, waiting) = core::mem::take(&mut e.net_waiters)
            .into_iter()
            .partition(|(h, _)| *h < 64 && ready & (1 << h) != 0);
        e.net_waiters = waiting;
        woken
    });
    wake_all(woken.into_iter().map(|(_, w)| w).collect());
}

fn wake_expired(now: u64) {
    let woken: Vec<Waker> = EXEC.with(|e| {
        let later = e.sleepers.split_off(&(now.saturating_add(1), 0));
        let expired = core::mem::replace(&mut e.sleepers, later);
        expired.into_values().collect()
    });
    wake_all(woken);
}

/// Performs the oldest queued block operation; `false` if there was none.
fn run_one_block_op() -> bool {
    let op = EXEC.with(|e| {
        while let Some(op) = e.block_queue.pop_front() {
            if !op.cancelled.get() {
                e.stats.block_ops += 1;
                return Some(op);
            }
        }
        None
    });
    let Some(op) = op else { return false };
    let r = {
        let mut buf = op.buf.borrow_mut();
        if op.write {
            platform::block_write(op.handle, op.offset, &buf)
        } else {
            platform::block_read(op.handle, op.offset, &mut buf)
        }
    };
    crate::trace::record(
        Kind::BlockComplete,
        op.handle as u32,
        [op.offset, u64::from(r.is_err()), 0],
    );
    op.result.set(Some(r));
    let w = op.waker.borrow_mut().take();
    if let Some(w) = w {
        w.wake();
    }
    true
}

/// How long an idle scheduler sleeps at most before looking again.
const MAX_SLEEP_NS: u64 = 3_600_000_000_000;

/// Checks for events after a round; sleeps if no task is ready.
fn check_events() {
    let (busy, next_deadline, net, block) = EXEC.with(|e| {
        (
            !e.ready.is_empty(),
            e.sleepers.keys().next().map(|k| k.0),
            !e.net_waiters.is_empty(),
            !e.block_queue.is_empty(),
        )
    });
    // Tasks waiting for host sockets (unix socket mode) count as network
    // readers: the platform wakes them itself when it yields.
    let net = net || platform::fd_waiters();
    if busy {
        if block {
            run_one_block_op();
        }
        if net {
            EXEC.with(|e| e.stats.yields += 1);
            let ready = yield_to_platform(0);
            wake_net(ready);
            run_hooks();
        }
        if next_deadline.is_some() {
            wake_expired(platform::clock_monotonic());
        }
        return;
    }
    if next_deadline.is_none() && !net && !block {
        crate::console::write_str(
            "morgana: deadlock: every task is waiting and nothing can wake any of them\n",
        );
        platform::abort();
    }
    let deadline = if block {
        loop {
            if !run_one_block_op() {
                break;
            }
            if let Some(d) = next_deadline
                && platform::clock_monotonic() >= d
            {
                break;
            }
        }
        0
    } else {
        next_deadline.unwrap_or_else(|| platform::clock_monotonic() + MAX_SLEEP_NS)
    };
    EXEC.with(|e| e.stats.yields += 1);
    let ready = yield_to_platform(deadline);
    wake_net(ready);
    run_hooks();
    if next_deadline.is_some() {
        wake_expired(platform::clock_monotonic());
    }
}

/// Yields to the platform until `deadline` (recorded in the trace buffer).
fn yield_to_platform(deadline: u64) -> u64 {
    crate::trace::record(Kind::Idle, 0, [deadline, 0, 0]);
    let ready = platform::yield_until(deadline);
    crate::trace::record(Kind::Ready, 0, [ready, 0, 0]);
    ready
}

/// Polls one task; returns whether it finished.
fn poll_task(r: TaskRef, f: &mut BoxFuture) -> bool {
    let w = waker(r);
    let mut cx = Context::from_waker(&w);
    f.as_mut().poll(&mut cx).is_ready()
}

/// Runs `main` and every task it spawns until `main` completes; returns
/// its result. Used by `#[morgana::main]`.
pub fn block_on<F: Future<Output = i32> + 'static>(main: F) -> i32 {
    let result: Rc<Cell<Option<i32>>> = Rc::new(Cell::new(None));
    let out = result.clone();
    drop(spawn(async move { out.set(Some(main.await)) }));
    loop {
        let n = EXEC.with(|e| {
            e.stats.rounds += 1;
            e.ready.len()
        });
        for _ in 0..n {
            let Some((r, mut f)) = EXEC.with(|e| e.take_next()) else {
                break;
            };
            crate::trace::record(Kind::Run, r.index() as u32, [0, 0, 0]);
            let finished = poll_task(r, &mut f);
            crate::trace::record(Kind::Park, r.index() as u32, [u64::from(finished), 0, 0]);
            let dead = EXEC.with(|e| {
                e.stats.polls += 1;
                e.put_back(r, f, finished)
            });
            drop(dead);
            if let Some(status) = result.get() {
                return status;
            }
        }
        platform::check_stack();
        check_events();
    }
}
