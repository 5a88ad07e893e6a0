//! The one loom switch (as crossbeam-utils' `primitive` module): lock-free state
//! machines that are model checked (the queue ring, the barrier) take their atomics
//! and their futex sleep from here. Under `--cfg loom` they are loom's, and a futex
//! sleep is a yield, so the logic can be checked on heap memory:
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use std::time::Duration;

/// Sleeps while `word == expected`, at most `slice`; `true` if the slice ran out.
#[cfg(not(loom))]
pub(crate) fn sleep_while(word: &AtomicU32, expected: u32, slice: Duration) -> bool {
    use crate::sys::futex::{futex_wait, FutexWait};
    futex_wait(word, expected, Some(slice)) == FutexWait::TimedOut
}

/// Wakes every waiter on `word`.
#[cfg(not(loom))]
pub(crate) fn wake_all(word: &AtomicU32) {
    crate::sys::futex::futex_wake(word, u32::MAX);
}

/// Under loom a sleep is a yield (loom sees no futexes) and never times out.
#[cfg(loom)]
pub(crate) fn sleep_while(_: &AtomicU32, _: u32, _: Duration) -> bool {
    loom::thread::yield_now();
    false
}

/// Under loom there is nothing to wake: sleepers only yield.
#[cfg(loom)]
pub(crate) fn wake_all(_: &AtomicU32) {}

/// Marks a `SeqCst` store (or read-modify-write) followed by a `SeqCst` load of
/// another word (Dekker's pattern). The `SeqCst` operations alone are correct
/// (they lie in one total order), and compile to nothing extra here; loom,
/// however, models `SeqCst` accesses as `AcqRel` and only `SeqCst` fences as
/// sequentially consistent, so under loom this is that fence, which makes the
/// model as strong as the real operations.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn dekker_fence() {}

/// Under loom: a `SeqCst` fence (see the non-loom twin).
#[cfg(loom)]
pub(crate) fn dekker_fence() {
    loom::sync::atomic::fence(Ordering::SeqCst);
}
