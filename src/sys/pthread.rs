//! Robust, process-shared pthread mutexes: the FFI behind `sync::RawRobustMutex`.

use std::cell::UnsafeCell;
use std::time::Duration;

use nix::errno::Errno;

extern "C" {
    // glibc >= 2.30; not (yet) declared by the libc crate.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// Result of a pthread mutex call, as an errno-like code (0 = success).
pub(crate) type Code = libc::c_int;

/// Initialises a robust, process-shared, error-checking mutex in place.
///
/// # Safety
/// `m` must be valid for writes, aligned, and not in use by anyone (not locked,
/// no waiters): initialising a mutex in use is undefined behaviour.
pub(crate) unsafe fn mutex_init(m: *mut libc::pthread_mutex_t) -> Result<(), Errno> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `attr` is a local we initialise before use and destroy after; `m` is
    // valid per the caller's contract.
    unsafe {
        Errno::result(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
        let a = attr.as_mut_ptr();
        let rc = (|| {
            check(libc::pthread_mutexattr_setpshared(
                a,
                libc::PTHREAD_PROCESS_SHARED,
            ))?;
            check(libc::pthread_mutexattr_setrobust(
                a,
                libc::PTHREAD_MUTEX_ROBUST,
            ))?;
            check(libc::pthread_mutexattr_settype(
                a,
                libc::PTHREAD_MUTEX_ERRORCHECK,
            ))?;
            check(libc::pthread_mutex_init(m, a))
        })();
        libc::pthread_mutexattr_destroy(a);
        rc
    }
}

/// Offset of glibc's type word (`__data.__kind`, an `int`) in a
/// `pthread_mutex_t`: after `__lock`, `__count`, `__owner` and `__nusers` (four
/// `int`s) on both x86_64 and aarch64 (glibc's `struct __pthread_mutex_s`,
/// `sysdeps/x86/nptl/bits/struct_mutex.h` and `sysdeps/nptl/bits/struct_mutex.h`).
/// `None` where the layout is not known: mutexes in files are then never locked
/// (see [`mutex_kind`]).
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
const KIND_OFFSET: Option<usize> = Some(16);
#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
const KIND_OFFSET: Option<usize> = None;

/// glibc's type word for `PTHREAD_MUTEX_ERRORCHECK_NP` (2) |
/// `PTHREAD_MUTEX_ROBUST_NORMAL_NP` (16) | `PTHREAD_MUTEX_PSHARED_BIT` (128), as
/// `pthread_mutex_init` writes it for [`mutex_init`]'s attributes (glibc's
/// `nptl/pthread_mutex_init.c`, unchanged since 2.x).
const GLIBC_ROBUST_PSHARED_ERRORCHECK: u32 = 2 | 16 | 128;

/// Where the type word of a mutex made by [`mutex_init`] lies in its bytes and
/// what it is: `(offset, value)`, or `None` when this C library's layout is not
/// known, which callers must treat as "cannot validate" (fail closed: never lock
/// a mutex read from a file).
///
/// Known means: glibc on x86_64 or aarch64 (the offset), *and* a mutex
/// initialised here with the same attributes has exactly glibc's documented
/// value at that offset (checked once, at run time), so a C library whose layout
/// or encoding differs is caught too. The type word decides which code glibc runs
/// (robust, priority-inheriting, priority-protecting, ...); a word it never
/// writes for these attributes can make a lock hit an assertion (abort), return
/// `EINVAL`, or, without the robust bit, stay locked forever after its holder
/// died.
pub(crate) fn mutex_kind() -> Option<(usize, u32)> {
    static KIND: std::sync::OnceLock<Option<(usize, u32)>> = std::sync::OnceLock::new();
    *KIND.get_or_init(|| {
        let at = KIND_OFFSET?;
        if at + 4 > std::mem::size_of::<libc::pthread_mutex_t>() {
            return None;
        }
        let mut m = Box::new(std::mem::MaybeUninit::<libc::pthread_mutex_t>::zeroed());
        // SAFETY: fresh, aligned, private memory.
        unsafe { mutex_init(m.as_mut_ptr()) }.ok()?;
        let mut word = [0u8; 4];
        // SAFETY: `at + 4` bytes lie inside the initialised mutex (checked above);
        // a byte copy reads them whatever their type.
        unsafe {
            std::ptr::copy_nonoverlapping(m.as_ptr().cast::<u8>().add(at), word.as_mut_ptr(), 4);
            mutex_destroy(m.as_mut_ptr());
        }
        let kind = u32::from_ne_bytes(word);
        (kind == GLIBC_ROBUST_PSHARED_ERRORCHECK).then_some((at, kind))
    })
}

fn check(code: Code) -> Result<(), Errno> {
    if code == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw(code))
    }
}

/// `pthread_mutex_lock`; returns the raw code (0, `EOWNERDEAD`, `ENOTRECOVERABLE`, ...).
#[inline]
pub(crate) fn mutex_lock(m: &UnsafeCell<libc::pthread_mutex_t>) -> Code {
    // SAFETY: `m` points to a mutex initialised by `mutex_init` (the callers in
    // `mutex.rs` only hand out references to initialised mutexes).
    unsafe { libc::pthread_mutex_lock(m.get()) }
}

/// Takes the mutex only if that needs no waiting: `pthread_mutex_clocklock` with a
/// deadline in the past (see `RawRobustMutex::try_lock` for why not trylock).
/// Returns `ETIMEDOUT` when the mutex is held.
#[inline]
pub(crate) fn mutex_try_lock(m: &UnsafeCell<libc::pthread_mutex_t>) -> Code {
    let past = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as for `mutex_lock`; `past` is a valid, normalised timespec.
    unsafe { pthread_mutex_clocklock(m.get(), libc::CLOCK_MONOTONIC, &past) }
}

/// `pthread_mutex_clocklock(CLOCK_MONOTONIC)` with a deadline `timeout` from now.
/// The deadline is normalised (`tv_nsec` in `[0, 1e9)`) and saturates for huge
/// timeouts, so this never fails with `EINVAL` because of the duration.
pub(crate) fn mutex_lock_timeout(m: &UnsafeCell<libc::pthread_mutex_t>, timeout: Duration) -> Code {
    let deadline = deadline_after(timeout);
    // SAFETY: as for `mutex_lock`; `deadline` is a valid, normalised timespec.
    unsafe { pthread_mutex_clocklock(m.get(), libc::CLOCK_MONOTONIC, &deadline) }
}

/// `pthread_mutex_unlock`.
///
/// # Safety
/// The calling thread must hold the mutex.
#[inline]
pub(crate) unsafe fn mutex_unlock(m: &UnsafeCell<libc::pthread_mutex_t>) -> Code {
    // SAFETY: the caller holds the mutex.
    unsafe { libc::pthread_mutex_unlock(m.get()) }
}

/// `pthread_mutex_consistent`: marks a mutex acquired with `EOWNERDEAD` as repaired.
///
/// # Safety
/// The calling thread must hold the mutex, acquired with `EOWNERDEAD`.
pub(crate) unsafe fn mutex_consistent(m: &UnsafeCell<libc::pthread_mutex_t>) -> Code {
    // SAFETY: per the caller's contract.
    unsafe { libc::pthread_mutex_consistent(m.get()) }
}

/// `pthread_mutex_destroy`.
///
/// # Safety
/// The mutex must be unlocked and unused from now on.
pub(crate) unsafe fn mutex_destroy(m: *mut libc::pthread_mutex_t) {
    // SAFETY: per the caller's contract.
    unsafe { libc::pthread_mutex_destroy(m) };
}

/// Current `CLOCK_MONOTONIC` time.
fn monotonic_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

/// `CLOCK_MONOTONIC` now + `d`, normalised, saturating at ~292 years from boot.
pub(crate) fn deadline_after(d: Duration) -> libc::timespec {
    timespec_add(monotonic_now(), d)
}

/// Adds `d` to `t`, keeping `tv_nsec` in `[0, 1e9)` and saturating `tv_sec`.
pub(crate) fn timespec_add(t: libc::timespec, d: Duration) -> libc::timespec {
    const NANOS: i64 = 1_000_000_000;
    let max_sec = libc::time_t::MAX / 2;
    let add_sec = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let mut sec = t.tv_sec.saturating_add(add_sec);
    let mut nsec = t.tv_nsec + d.subsec_nanos() as i64;
    if nsec >= NANOS {
        nsec -= NANOS;
        sec = sec.saturating_add(1);
    }
    if sec > max_sec {
        sec = max_sec;
        nsec = 0;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    fn the_mutex_type_word_is_glibcs_here() {
        // The machines this crate is built and tested on are glibc on x86_64 (and
        // aarch64): the layout must be recognised there, or no lock would work.
        assert_eq!(mutex_kind(), Some((16, 2 | 16 | 128)));
    }

    #[test]
    fn timespec_add_normalises_and_saturates() {
        let t = libc::timespec {
            tv_sec: 10,
            tv_nsec: 999_999_999,
        };
        let r = timespec_add(t, Duration::from_nanos(2));
        assert_eq!((r.tv_sec, r.tv_nsec), (11, 1));
        let r = timespec_add(t, Duration::from_millis(1500));
        assert_eq!((r.tv_sec, r.tv_nsec), (12, 499_999_999));
        let r = timespec_add(t, Duration::MAX);
        assert_eq!((r.tv_sec, r.tv_nsec), (libc::time_t::MAX / 2, 0));
        assert!((0..1_000_000_000).contains(&r.tv_nsec));
    }
}
