//! Waiting on a condition variable within a `Wait`, and locking without caring
//! about poisoning: shared by the fork server's client and the pool's jobs.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::sync::Wait;

/// Locks `m`, ignoring poisoning (no code that can panic runs under these locks,
/// and a poisoned flag must not turn into a hang or a second panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `cv` until `ready(&*guard)`, or until `deadline` runs out; `None` on
/// timeout.
pub(crate) fn wait_until<'a, T>(
    cv: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Wait,
    ready: impl Fn(&T) -> bool,
) -> Option<MutexGuard<'a, T>> {
    while !ready(&guard) {
        guard = match deadline.remaining() {
            None => cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
            Some(left) if left.is_zero() => return None,
            Some(left) => {
                cv.wait_timeout(guard, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
    Some(guard)
}
