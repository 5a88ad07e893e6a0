//! Waiting on a condition variable with an optional deadline, and locking without
//! caring about poisoning: shared by the fork server's client and the pool's jobs.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Locks `m`, ignoring poisoning (no code that can panic runs under these locks,
/// and a poisoned flag must not turn into a hang or a second panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `cv` until `ready(&*guard)`, or until `deadline` passes (`None`:
/// forever); `None` on timeout.
pub(crate) fn wait_until<'a, T>(
    cv: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    ready: impl Fn(&T) -> bool,
) -> Option<MutexGuard<'a, T>> {
    while !ready(&guard) {
        guard = match deadline {
            None => cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return None;
                }
                cv.wait_timeout(guard, d - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
    Some(guard)
}
