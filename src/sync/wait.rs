//! Waiting on a 32-bit word in shared memory across processes (futex based).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sync::Wait;
use crate::sys::futex::{self as sys, FutexWait};

/// The wait ended because its deadline passed.
///
/// ```
/// use std::time::Duration;
/// use shmarray::{sync::TimedOut, Event};
/// let ready = Event::create(&format!("doc-timed-out-{}", std::process::id()))?;
/// // Nobody sets it: the wait gives up.
/// assert_eq!(ready.wait_timeout(Duration::from_millis(10)), Err(TimedOut));
/// ready.set();
/// assert_eq!(ready.wait_timeout(Duration::from_millis(10)), Ok(()));
/// # Ok::<(), shmarray::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct TimedOut;

/// Blocks while `word == expected`, until woken or `timeout` passes.
///
/// Spurious wake-ups are absorbed: this returns `Ok` only once the word no longer
/// holds `expected` (as seen with `Acquire`), and `Err(TimedOut)` once the deadline
/// has passed with the word unchanged. Works across processes for words in shared
/// memory (no `FUTEX_PRIVATE_FLAG`).
pub(crate) fn wait_while_equal(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> Result<(), TimedOut> {
    // Timeouts too large for an Instant behave as "forever".
    let wait = Wait::optional(timeout);
    loop {
        if word.load(Ordering::Acquire) != expected {
            return Ok(());
        }
        let remaining = match wait.remaining() {
            Some(r) if r.is_zero() => return Err(TimedOut),
            r => r,
        };
        if let FutexWait::TimedOut = sys::futex_wait(word, expected, remaining) {
            if word.load(Ordering::Acquire) != expected {
                return Ok(());
            }
            return Err(TimedOut);
        }
    }
}

/// Wakes every process/thread waiting on `word`; returns how many were woken.
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    sys::futex_wake(word, u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn timeout_and_wake() {
        let w = Arc::new(AtomicU32::new(0));
        let t = Instant::now();
        assert_eq!(
            wait_while_equal(&w, 0, Some(Duration::from_millis(30))),
            Err(TimedOut)
        );
        assert!(t.elapsed() >= Duration::from_millis(30));
        let w2 = w.clone();
        let h = std::thread::spawn(move || wait_while_equal(&w2, 0, Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(20));
        w.store(1, Ordering::Release);
        wake_all(&w);
        assert_eq!(h.join().unwrap(), Ok(()));
        // Value already different: returns at once.
        assert_eq!(wait_while_equal(&w, 0, Some(Duration::ZERO)), Ok(()));
        // Huge timeouts are fine.
        w.store(0, Ordering::Release);
        let w3 = w.clone();
        let h = std::thread::spawn(move || wait_while_equal(&w3, 0, Some(Duration::MAX)));
        std::thread::sleep(Duration::from_millis(10));
        w.store(2, Ordering::Release);
        wake_all(&w);
        assert_eq!(h.join().unwrap(), Ok(()));
    }
}
