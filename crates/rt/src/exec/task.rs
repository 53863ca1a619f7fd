//! Spawning tasks and joining them.

use super::TaskRef;
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::RefCell;
use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};

/// Why a task produced no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// The task was cancelled with [`JoinHandle::cancel`].
    Cancelled,
    /// The task panicked with this message (unix platform only: on hvt and
    /// spt a panic always ends the unikernel, see the crate docs).
    Panicked(String),
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled => f.write_str("task cancelled"),
            Self::Panicked(m) => write!(f, "task panicked: {m}"),
        }
    }
}

impl core::error::Error for JoinError {}

struct JoinState<T> {
    result: Option<Result<T, JoinError>>,
    waiter: Option<Waker>,
    handle_alive: bool,
    task: Option<TaskRef>,
}

/// An owned permission to await a spawned task's result, or to cancel it.
///
/// Dropping the handle detaches the task: it keeps running. A task whose
/// handle is gone and that panics ends the unikernel (status 255).
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
    yielded: bool,
}

impl<T> JoinHandle<T> {
    /// Cancels the task: it is dropped at once (or, if it is the running
    /// task, when it next returns to the scheduler), and awaiting this
    /// handle gives [`JoinError::Cancelled`]. No effect on a finished task.
    pub fn cancel(&self) {
        let task = self.state.borrow().task;
        if let Some(t) = task {
            super::cancel(t);
        }
    }

    /// Whether the task has finished (completed, panicked or cancelled).
    pub fn is_finished(&self) -> bool {
        self.state.borrow().result.is_some()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if super::coop(cx, &mut this.yielded) {
            return Poll::Pending;
        }
        let mut s = this.state.borrow_mut();
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let mut s = self.state.borrow_mut();
        s.handle_alive = false;
        if let Some(Err(JoinError::Panicked(m))) = &s.result {
            crate::console::write_fmt(format_args!(
                "morgana: a task panicked and its handle was dropped: {m}\n"
            ));
            crate::platform::abort();
        }
    }
}

/// Completes a task's join state, once.
fn complete<T>(state: &RefCell<JoinState<T>>, r: Result<T, JoinError>) {
    let waiter = {
        let mut s = state.borrow_mut();
        if s.result.is_some() || s.task.is_none() {
            return;
        }
        s.task = None;
        if let Err(JoinError::Panicked(_)) = &r
            && !s.handle_alive
        {
            // Nobody can observe this panic (the hook printed it): abort.
            crate::platform::abort();
        }
        s.result = Some(r);
        s.waiter.take()
    };
    if let Some(w) = waiter {
        w.wake();
    }
}

/// Sets a cancelled result if the task's future is dropped unfinished.
struct CancelGuard<T>(Rc<RefCell<JoinState<T>>>);

impl<T> Drop for CancelGuard<T> {
    fn drop(&mut self) {
        complete(&self.0, Err(JoinError::Cancelled));
    }
}

/// Spawns `future` as a new task; it runs when the current task next
/// awaits. Returns a handle to await its output or cancel it.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let state = Rc::new(RefCell::new(JoinState {
        result: None,
        waiter: None,
        handle_alive: true,
        task: None,
    }));
    // The guard exists before the task first runs, so that cancelling a
    // task that never ran (dropping its unpolled future) completes its
    // handle too.
    let guard = CancelGuard(state.clone());
    let task = async move {
        let guard = guard;
        let mut future = pin!(future);
        let r = poll_fn(|cx| crate::platform::catch_panic(|| future.as_mut().poll(cx))).await;
        complete(&guard.0, r.map_err(JoinError::Panicked));
    };
    let r = super::insert(Box::pin(task));
    state.borrow_mut().task = Some(r);
    JoinHandle {
        state,
        yielded: false,
    }
}
