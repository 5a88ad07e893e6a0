//! Futex wait/wake on a 32-bit word, process-shared (no `FUTEX_PRIVATE_FLAG`).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::errno::Errno;

/// Outcome of a futex wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken (or spurious wake-up): re-check the condition.
    Woken,
    /// The word did not hold the expected value when the kernel looked.
    ValueChanged,
    /// The timeout elapsed.
    TimedOut,
}

/// `FUTEX_WAIT` (process-shared: no `FUTEX_PRIVATE_FLAG`) while `*word == expected`,
/// for at most `timeout` (relative, so measured on `CLOCK_MONOTONIC`).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> FutexWait {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX / 2),
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned 32-bit atomic for the duration of the call;
    // the timespec (if any) outlives the call. FUTEX_WAIT only reads the word.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == 0 {
        return FutexWait::Woken;
    }
    match Errno::last() {
        Errno::EAGAIN => FutexWait::ValueChanged,
        Errno::ETIMEDOUT => FutexWait::TimedOut,
        // EINTR and anything unexpected: let the caller re-check its condition.
        _ => FutexWait::Woken,
    }
}

/// `FUTEX_WAKE` (process-shared) for up to `n` waiters; returns how many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32);
    // SAFETY: `word` is a valid, aligned 32-bit atomic; FUTEX_WAKE does not access it.
    let rc = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    rc.max(0) as usize
}
