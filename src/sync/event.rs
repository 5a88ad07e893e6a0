//! A manual-reset event (Python's `multiprocessing.Event`) in shared memory.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::wait::{self, TimedOut};

/// Event state: one futex word, `0` = clear, `1` = set. `#[repr(C)]`, any bytes are
/// a valid state (non-zero counts as set).
///
/// ## Memory ordering
/// `set` stores with `Release` before waking; `wait`/`is_set` load with `Acquire`, so
/// whatever the setter wrote before `set` is visible to a waiter that sees it set.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RawEvent {
    state: AtomicU32,
}

impl RawEvent {
    /// Sets the event and wakes every waiter.
    pub(crate) fn set(&self) {
        if self.state.swap(1, Ordering::Release) == 0 {
            wait::wake_all(&self.state);
        }
    }

    /// Clears the event.
    pub(crate) fn clear(&self) {
        self.state.store(0, Ordering::Release);
    }

    /// Whether the event is set.
    pub(crate) fn is_set(&self) -> bool {
        self.state.load(Ordering::Acquire) != 0
    }

    /// Waits until the event is set, for at most `timeout` (`None`: forever).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<(), TimedOut> {
        wait::wait_while_equal(&self.state, 0, timeout)
    }
}
