//! `Global<T>`: runtime state shared by the whole (single-threaded) unikernel.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A value with exclusive, non-reentrant access through [`Global::with`].
///
/// The runtime is single-threaded on every platform; the busy flag turns an
/// accidental re-entrant access (a waker called while the scheduler holds
/// its state, say) into a clear panic instead of aliasing.
pub(crate) struct Global<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is only ever through `with`, which the atomic
// `busy` flag makes exclusive; on unix `with` also refuses any thread but the
// one that runs the unikernel, so `T` never crosses threads.
unsafe impl<T> Sync for Global<T> {}

struct Release<'a>(&'a AtomicBool);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<T> Global<T> {
    /// A new global holding `value`.
    pub(crate) const fn new(value: T) -> Self {
        Self {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with exclusive access to the value.
    ///
    /// Panics on re-entrant use.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        crate::platform::assert_runtime_thread();
        if self.busy.swap(true, Ordering::Acquire) {
            panic!("morgana: re-entrant access to runtime state");
        }
        let _release = Release(&self.busy);
        // SAFETY: the busy flag grants exclusive access until `_release`
        // drops, even if `f` unwinds.
        f(unsafe { &mut *self.value.get() })
    }
}
