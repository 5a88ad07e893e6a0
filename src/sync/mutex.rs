//! A robust, process-shared mutex that lives in shared memory.
//!
//! Built on a pthread mutex with `PTHREAD_PROCESS_SHARED`, `PTHREAD_MUTEX_ROBUST` and
//! `PTHREAD_MUTEX_ERRORCHECK`. When a holder dies (even by `kill -9`), the kernel's
//! robust-futex list hands the lock to the next locker with `EOWNERDEAD`; we surface
//! that as [`LockError::OwnerDied`], which *carries the guard*: the caller holds the
//! lock, checks/repairs the data and calls [`RawMutexGuard::mark_consistent`]. A
//! guard dropped without that makes the mutex permanently
//! [`LockError::NotRecoverable`] for everyone — visible, never a deadlock, never a
//! silent success.
//!
//! | outcome of `lock()`          | lock held? | meaning                                  |
//! |------------------------------|------------|------------------------------------------|
//! | `Ok(guard)`                  | yes        | normal                                   |
//! | `Err(OwnerDied(guard))`      | yes        | previous holder died; data may be torn   |
//! | `Err(NotRecoverable)`        | no         | an OwnerDied guard was dropped unrepaired|
//! | `Err(Timeout(d))`            | no         | `lock_timeout` elapsed                   |
//! | `Err(WouldBlock)`            | no         | `try_lock` found it held                 |
//! | `Err(Deadlock)`              | no         | this thread already holds it             |

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use crate::format::control::LockSlot;
use crate::sys::pthread as sys;

/// Result of a lock operation: the guard, or why not (possibly still with a guard).
pub type LockResult<G> = Result<G, LockError<G>>;

/// Why a lock operation did not simply succeed: either the previous holder died
/// and **the caller now holds the lock** (the guard is inside), or a guard-free
/// [`LockFailure`].
///
/// A `LockFailure` is `'static + Send + Sync` and composes with `?` into
/// `Box<dyn Error>`, anyhow and friends; the guard-carrying `LockError` does not
/// (a guard borrows its handle), so either match `OwnerDied` or convert:
/// [`LockResultExt::recover`] repairs and goes on, [`LockError::into_failure`]
/// gives up.
///
/// # Examples
/// ```
/// use shmarray::{sync::LockFailure, LockError, SharedValue};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let total = SharedValue::<u64>::create(&format!("doc-lock-error-{}", std::process::id()), 0)?;
/// let held = total.lock().map_err(LockError::into_failure)?;
/// // Busy: a guard-free failure (here from the same thread, which would deadlock).
/// match total.try_lock() {
///     Err(LockError::Failed(LockFailure::WouldBlock | LockFailure::Deadlock)) => {}
///     other => panic!("unexpected: ok = {}", other.is_ok()),
/// }
/// drop(held);
/// match total.lock() {
///     Ok(mut g) => *g += 1,
///     // The last holder died mid-update: repair, mark consistent, go on.
///     Err(LockError::OwnerDied(mut g)) => {
///         *g = 0;
///         shmarray::sync::RobustGuard::mark_consistent(&mut g);
///     }
///     Err(other) => return Err(other.into_failure().into()),
/// }
/// assert_eq!(total.get().unwrap(), 1);
/// # Ok(()) }
/// ```
#[non_exhaustive]
pub enum LockError<G> {
    /// The previous holder died while holding the lock. **The lock is now held by
    /// the caller** through the guard inside: inspect/repair the data, then call
    /// `mark_consistent()` on the guard before dropping it. Dropping it unrepaired
    /// makes the lock [`LockFailure::NotRecoverable`] for everyone.
    OwnerDied(G),
    /// The lock was not acquired.
    Failed(LockFailure),
}

/// Why a lock was not acquired, without any guard: composes with `?`.
///
/// ```
/// use shmarray::{sync::LockFailure, LockError, SharedValue};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let v = SharedValue::<u32>::create(&format!("doc-lock-failure-{}", std::process::id()), 0)?;
/// let held = v.lock().map_err(LockError::into_failure)?;
/// // Locking again from the same thread is an error, not a hang.
/// assert!(matches!(v.lock(), Err(LockError::Failed(LockFailure::Deadlock))));
/// // Another thread that must not wait is told the lock is held.
/// std::thread::scope(|s| {
///     let r = s.spawn(|| matches!(v.try_lock(), Err(LockError::Failed(LockFailure::WouldBlock))));
///     assert!(r.join().unwrap());
/// });
/// drop(held);
///
/// // A holder died and the guard that came with it was dropped unrepaired: the
/// // lock is lost for good (the segment must be re-created).
/// std::thread::scope(|s| {
///     s.spawn(|| std::mem::forget(v.lock()));
/// });
/// assert!(matches!(v.lock().map_err(LockError::into_failure), Err(LockFailure::OwnerDied)));
/// assert!(matches!(v.lock(), Err(LockError::Failed(LockFailure::NotRecoverable))));
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockFailure {
    /// The previous holder died and the guard that came with it was dropped
    /// unrepaired (by [`LockError::into_failure`] or `?`): the lock is now
    /// not recoverable.
    #[error("the previous lock holder died and the data was left unrepaired; the lock is now not recoverable")]
    OwnerDied,
    /// A guard obtained through `OwnerDied` was dropped without `mark_consistent()`:
    /// the lock can never be acquired again (re-create the segment).
    #[error("the lock is not recoverable: a holder died and the data was never marked consistent")]
    NotRecoverable,
    /// `lock_timeout` gave up after this long.
    #[error("lock not acquired within {0:?}")]
    Timeout(Duration),
    /// `try_lock` found the lock held.
    #[error("the lock is held by someone else")]
    WouldBlock,
    /// The calling thread already holds this lock.
    #[error("this thread already holds the lock")]
    Deadlock,
    /// Every entry of the read-write lock's reader table is taken by a live
    /// handle (each handle that reads takes one, until it is dropped).
    #[error("all {slots} reader slots of the read-write lock are taken by live handles")]
    TooManyReaders {
        /// Entries in the reader table.
        slots: usize,
    },
    /// This thread already holds read guards of this many handles at once (the
    /// per-thread record that detects self-deadlocks is full).
    #[error("this thread holds read locks of {limit} handles already")]
    TooManyHeldReads {
        /// Handles whose read guards one thread can hold at once.
        limit: usize,
    },
    /// The platform does not provide robust process-shared mutexes.
    #[error("robust process-shared locks unsupported: {0}")]
    Unsupported(&'static str),
    /// The lock is unavailable on this segment (no control block, read-only mapping).
    #[error("the lock is unavailable")]
    Segment(#[source] crate::error::Error),
    /// Any other error from the OS.
    #[error("lock failed")]
    Os(#[source] std::io::Error),
}

impl<G> LockError<G> {
    /// Converts the guard inside an `OwnerDied` (failures pass through).
    pub fn map_guard<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::Failed(e) => LockError::Failed(e),
        }
    }

    /// The guard, if the lock was acquired anyway (`OwnerDied`).
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            LockError::Failed(_) => None,
        }
    }

    /// Whether this is `OwnerDied`.
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }

    /// The guard-free failure. An `OwnerDied` guard is dropped unrepaired, which
    /// makes the lock not recoverable (visibly, for everyone): use
    /// [`LockResultExt::recover`] to repair instead.
    pub fn into_failure(self) -> LockFailure {
        match self {
            LockError::OwnerDied(g) => {
                drop(g);
                LockFailure::OwnerDied
            }
            LockError::Failed(e) => e,
        }
    }
}

impl<G> From<LockFailure> for LockError<G> {
    fn from(e: LockFailure) -> Self {
        LockError::Failed(e)
    }
}

impl<G> From<LockError<G>> for LockFailure {
    fn from(e: LockError<G>) -> Self {
        e.into_failure()
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str(
                "the previous lock holder died; the lock is held now, check the data and mark it consistent",
            ),
            LockError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::OwnerDied(_) => None,
            LockError::Failed(e) => e.source(),
        }
    }
}

/// A guard of a robust lock: it can tell whether the previous holder died and
/// declare the data repaired. Implemented by the crate's guards.
///
/// ```
/// use shmarray::{ndarray::Ix1, sync::{LockFailure, RobustGuard}, LockError, SharedArray, SharedValue};
/// // One repair policy for every kind of lock: take the guard, whoever died.
/// fn take<G: RobustGuard>(r: Result<G, LockError<G>>) -> Result<G, LockFailure> {
///     match r {
///         Ok(g) => Ok(g),
///         Err(LockError::OwnerDied(mut g)) => {
///             g.mark_consistent(); // (a real policy would check the data first)
///             Ok(g)
///         }
///         Err(other) => Err(other.into_failure()), // `Failed(_)`
///     }
/// }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let n = |s: &str| format!("doc-robust-guard-{s}-{}", std::process::id());
/// let a = SharedArray::<f32, Ix1>::create(&n("array"), 4)?;
/// let v = SharedValue::<i64>::create(&n("value"), 0)?;
/// take(a.lock())?.fill(1.0);
/// *take(v.lock())? = 7;
/// assert_eq!(a.lock().map_err(LockError::into_failure)?.sum(), 4.0);
/// assert_eq!(v.get().map_err(LockError::into_failure)?, 7);
/// # Ok(()) }
/// ```
pub trait RobustGuard: sealed::Sealed {
    /// Whether the previous holder died and the data is not yet marked consistent.
    fn owner_died(&self) -> bool;
    /// Declares the data repaired after an `OwnerDied`, so the lock stays usable.
    fn mark_consistent(&mut self);
}

pub(crate) mod sealed {
    /// Only this crate's guards are robust guards.
    pub trait Sealed {}
}

/// `recover` on lock results: the short path for "repair and go on".
///
/// ```
/// use shmarray::{ndarray::Ix1, LockResultExt, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = SharedArray::<u32, Ix1>::create(&format!("doc-recover-{}", std::process::id()), 4)?;
/// // A writer that dies halfway (a thread that forgets its guard and exits; a
/// // process killed with `kill -9` is the same):
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let mut g = a.lock().recover(|_| {}).unwrap();
///         g[0] = 1;
///         std::mem::forget(g);
///     });
/// });
/// let mut repairs = 0;
/// // The next locker repairs (here: starts over), and goes on with its guard.
/// let mut g = a.lock().recover(|g| {
///     repairs += 1;
///     g.fill(0);
/// })?;
/// g[1] = 5;
/// assert_eq!((repairs, g.sum()), (1, 5));
/// drop(g);
/// // Reads recover the same way, into a read guard.
/// assert_eq!(a.read().recover(|_| unreachable!("nobody died"))?.sum(), 5);
/// # Ok(()) }
/// ```
pub trait LockResultExt<G> {
    /// What a recovered result gives: the guard the operation promised (for a
    /// read, the read guard the repaired write guard turns into).
    type Guard;

    /// On `OwnerDied`, runs `repair` on the guard, marks the data consistent and
    /// returns the guard the operation promised; on success, that guard; else the
    /// failure, which composes with `?`.
    ///
    /// ```no_run
    /// use shmarray::{LockResultExt, SharedValue};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let total = SharedValue::<u64>::open("total")?;
    /// let mut v = total.lock().recover(|v| **v = 0)?; // a dead holder's half update: reset
    /// *v += 1;
    /// # Ok(()) }
    /// ```
    fn recover(self, repair: impl FnOnce(&mut G)) -> Result<Self::Guard, LockFailure>;
}

impl<R, G> LockResultExt<G> for Result<R, LockError<G>>
where
    G: RobustGuard,
    R: TryFrom<G>,
    LockFailure: From<<R as TryFrom<G>>::Error>,
{
    type Guard = R;

    fn recover(self, repair: impl FnOnce(&mut G)) -> Result<R, LockFailure> {
        match self {
            Ok(g) => Ok(g),
            Err(LockError::OwnerDied(mut g)) => {
                repair(&mut g);
                g.mark_consistent();
                Ok(R::try_from(g)?)
            }
            Err(LockError::Failed(e)) => Err(e),
        }
    }
}

impl From<std::convert::Infallible> for LockFailure {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// A robust, process-shared, error-checking mutex, placed in shared memory.
///
/// It protects no data by itself; [`crate::SharedArray::lock`] and
/// [`crate::objects::SharedValue`] pair it with data.
#[repr(C, align(64))]
pub(crate) struct RawRobustMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

const _: () = {
    assert!(std::mem::size_of::<RawRobustMutex>() <= std::mem::size_of::<LockSlot>());
    assert!(std::mem::align_of::<RawRobustMutex>() <= std::mem::align_of::<LockSlot>());
    assert!(std::mem::align_of::<RawRobustMutex>() == 64);
};

// SAFETY: a process-shared pthread mutex is designed to be used from any thread of
// any process; all access goes through pthread calls.
unsafe impl Sync for RawRobustMutex {}
// SAFETY: as above.
unsafe impl Send for RawRobustMutex {}

/// Whether robust process-shared mutexes really work here, checked once.
///
/// A thread locks a robust mutex and exits without unlocking; the next `lock` must
/// report `EOWNERDEAD` (the kernel's robust list at work), and after
/// `pthread_mutex_consistent` the mutex must be usable again.
pub(crate) fn robust_mutexes_supported() -> Result<(), &'static str> {
    static PROBE: OnceLock<Result<(), &'static str>> = OnceLock::new();
    *PROBE.get_or_init(probe)
}

#[cold]
fn probe() -> Result<(), &'static str> {
    let m = Box::new(RawRobustMutex {
        // SAFETY: all-zero bytes are a valid value to overwrite; `init_at` runs
        // before any use.
        inner: UnsafeCell::new(unsafe { std::mem::zeroed() }),
    });
    // SAFETY: `m.inner` is valid, aligned and unused.
    unsafe { sys::mutex_init(m.inner.get()) }
        .map_err(|_| "pthread_mutex_init refused robust + pshared")?;
    let addr = &m.inner as *const UnsafeCell<libc::pthread_mutex_t> as usize;
    let locked = std::thread::spawn(move || {
        // SAFETY: the Box outlives this thread (joined below).
        let cell = unsafe { &*(addr as *const UnsafeCell<libc::pthread_mutex_t>) };
        sys::mutex_lock(cell) == 0
        // The thread exits holding the lock.
    })
    .join()
    .unwrap_or(false);
    if !locked {
        return Err("could not lock a robust mutex");
    }
    let rc = sys::mutex_lock(&m.inner);
    let result = if rc == libc::EOWNERDEAD {
        // SAFETY: we hold the mutex, acquired with EOWNERDEAD.
        let consistent = unsafe { sys::mutex_consistent(&m.inner) } == 0;
        // SAFETY: we hold the mutex.
        let unlocked = unsafe { sys::mutex_unlock(&m.inner) } == 0;
        if consistent && unlocked {
            Ok(())
        } else {
            Err("pthread_mutex_consistent did not recover the mutex")
        }
    } else {
        Err("a dead holder was not reported (no EOWNERDEAD)")
    };
    // SAFETY: unlocked (or abandoned on failure, where destroy is harmless) and unused.
    unsafe { sys::mutex_destroy(m.inner.get()) };
    result
}

/// Why a mutex stored in a file must not be locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadMutex {
    /// Its type word is not the one [`RawRobustMutex::init_at`] writes: forged,
    /// overwritten, or never initialised (zero bytes under a "lock initialised"
    /// flag). Locking it could abort in the C library or never end.
    Corrupt {
        /// The type word found.
        kind: u32,
    },
    /// This C library's mutex layout is not known, so nothing read from a file
    /// can be validated: fail closed.
    Unknown,
    /// The bytes could not be read (the file shrank under us).
    Read(std::io::ErrorKind),
}

impl BadMutex {
    /// The lock failure to report for the mutex at file offset `offset` of
    /// segment `label`.
    pub(crate) fn failure(self, label: &str, offset: u64) -> LockFailure {
        match self {
            BadMutex::Corrupt { kind } => LockFailure::Segment(crate::error::Error::corrupt(
                label,
                crate::format::Corruption::Lock { offset, kind },
            )),
            BadMutex::Unknown => LockFailure::Unsupported(
                "this C library's pthread_mutex_t layout is unknown, so a mutex in a file cannot be validated",
            ),
            BadMutex::Read(kind) => {
                LockFailure::Segment(crate::error::Error::io("pread", label, kind))
            }
        }
    }
}

/// Checks, with `pread` (nothing mapped is touched), that the mutex at `offset`
/// of `file` is what [`RawRobustMutex::init_at`] makes: its type word (glibc's
/// `__kind`) must be exactly the one `pthread_mutex_init` writes for a robust,
/// process-shared, error-checking mutex. The other words (lock, owner, counters,
/// the robust-list links) are the lock's state, which any locker changes.
pub(crate) fn check_mutex_in_file(file: &std::fs::File, offset: u64) -> Result<(), BadMutex> {
    let (at, expected) = sys::mutex_kind().ok_or(BadMutex::Unknown)?;
    let mut word = [0u8; 4];
    crate::sys::fs::read_exact_at(file, &mut word, offset + at as u64)
        .map_err(|e| BadMutex::Read(e.kind()))?;
    match u32::from_ne_bytes(word) {
        kind if kind == expected => Ok(()),
        kind => Err(BadMutex::Corrupt { kind }),
    }
}

impl RawRobustMutex {
    /// Initialises a mutex in place (robust, process-shared, error-checking).
    ///
    /// # Safety
    /// - `ptr` is valid for writes of `size_of::<Self>()` bytes and 64-byte aligned.
    /// - Nobody uses the memory as a mutex yet (it is not visible to other processes,
    ///   or they are known not to touch it until initialisation is published).
    pub(crate) unsafe fn init_at(ptr: *mut RawRobustMutex) -> Result<(), LockError<()>> {
        robust_mutexes_supported().map_err(|e| LockError::Failed(LockFailure::Unsupported(e)))?;
        // SAFETY: per the caller's contract, `ptr` is valid, aligned and unused;
        // `UnsafeCell<T>` has the layout of `T`.
        unsafe { sys::mutex_init(ptr.cast::<libc::pthread_mutex_t>()) }
            .map_err(|e| LockError::Failed(LockFailure::Os(e.into())))
    }

    /// Initialises the mutex stored in a control block's lock slot.
    ///
    /// # Safety
    /// Nobody uses the slot as a mutex yet (the segment is not published).
    pub(crate) unsafe fn init_in_slot(slot: &LockSlot) -> Result<(), LockError<()>> {
        // SAFETY: the slot is 128 bytes, 64-byte aligned, inside an `UnsafeCell`, so
        // writing through its pointer is allowed; per the caller's contract nobody
        // uses it; `RawRobustMutex` fits (asserted below).
        unsafe { RawRobustMutex::init_at(slot.0.get().cast::<RawRobustMutex>()) }
    }

    /// The mutex stored in a lock slot.
    ///
    /// # Safety
    /// The slot was initialised with [`RawRobustMutex::init_in_slot`].
    pub(crate) unsafe fn in_slot(slot: &LockSlot) -> &RawRobustMutex {
        // SAFETY: same size/alignment bounds as above; both types are interior-mutable
        // (`UnsafeCell`), so reinterpreting the shared reference is allowed, and the
        // bytes hold an initialised mutex per the caller's contract.
        unsafe { &*slot.0.get().cast::<RawRobustMutex>() }
    }

    /// Blocks until the lock is acquired.
    #[inline]
    pub(crate) fn lock(&self) -> LockResult<RawMutexGuard<'_>> {
        self.outcome(sys::mutex_lock(&self.inner), None)
    }

    /// Acquires the lock if it is free, else `WouldBlock`.
    ///
    /// Implemented as a timed lock with an already expired deadline, not with
    /// `pthread_mutex_trylock`: glibc's trylock on a robust mutex that is not
    /// recoverable leaves the lock word owned by the caller (it unlocks only when the
    /// word was already ours), after which every other locker blocks forever instead
    /// of getting `ENOTRECOVERABLE`. The timed path releases it correctly.
    #[inline]
    pub(crate) fn try_lock(&self) -> LockResult<RawMutexGuard<'_>> {
        match sys::mutex_try_lock(&self.inner) {
            libc::ETIMEDOUT => Err(LockError::Failed(LockFailure::WouldBlock)),
            code => self.outcome(code, None),
        }
    }

    /// Blocks for at most `timeout` (measured on `CLOCK_MONOTONIC`, so wall-clock
    /// jumps don't matter); any duration is accepted, huge ones saturate.
    pub(crate) fn lock_timeout(&self, timeout: Duration) -> LockResult<RawMutexGuard<'_>> {
        self.outcome(sys::mutex_lock_timeout(&self.inner, timeout), Some(timeout))
    }

    #[inline]
    fn outcome(&self, code: sys::Code, timeout: Option<Duration>) -> LockResult<RawMutexGuard<'_>> {
        if code == 0 {
            Ok(self.guard(false))
        } else {
            self.slow_outcome(code, timeout)
        }
    }

    #[cold]
    fn slow_outcome(
        &self,
        code: sys::Code,
        timeout: Option<Duration>,
    ) -> LockResult<RawMutexGuard<'_>> {
        if code == libc::EOWNERDEAD {
            return Err(LockError::OwnerDied(self.guard(true)));
        }
        Err(LockError::Failed(match code {
            libc::ENOTRECOVERABLE => LockFailure::NotRecoverable,
            libc::ETIMEDOUT => LockFailure::Timeout(timeout.unwrap_or_default()),
            libc::EBUSY => LockFailure::WouldBlock,
            libc::EDEADLK => LockFailure::Deadlock,
            other => LockFailure::Os(std::io::Error::from_raw_os_error(other)),
        }))
    }

    fn guard(&self, owner_died: bool) -> RawMutexGuard<'_> {
        RawMutexGuard {
            mutex: self,
            owner_died,
            _not_send: super::NotSend::default(),
        }
    }
}

/// Proof that the calling thread holds a [`RawRobustMutex`]; unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub(crate) struct RawMutexGuard<'a> {
    mutex: &'a RawRobustMutex,
    owner_died: bool,
    // pthread mutexes must be unlocked by the thread that locked them.
    _not_send: super::NotSend,
}

impl RawMutexGuard<'_> {
    /// Whether this guard came from `OwnerDied` and is not yet marked consistent.
    pub(crate) fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Declares the protected data repaired after an `OwnerDied`, so the lock stays
    /// usable. A no-op for guards from a normal lock.
    pub(crate) fn mark_consistent(&mut self) {
        if self.owner_died {
            // SAFETY: this thread holds the mutex, acquired with EOWNERDEAD.
            let rc = unsafe { sys::mutex_consistent(&self.mutex.inner) };
            debug_assert_eq!(rc, 0, "pthread_mutex_consistent failed");
            self.owner_died = false;
        }
    }
}

impl Drop for RawMutexGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard exists only while this thread holds the mutex. If the
        // guard came from OwnerDied and was not marked consistent, this unlock makes
        // the mutex ENOTRECOVERABLE, by design.
        let rc = unsafe { sys::mutex_unlock(&self.mutex.inner) };
        debug_assert_eq!(rc, 0, "pthread_mutex_unlock failed");
    }
}

impl fmt::Debug for RawMutexGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMutexGuard")
            .field("owner_died", &self.owner_died)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap_mutex() -> Box<RawRobustMutex> {
        let mut b = Box::<RawRobustMutex>::new_uninit();
        // SAFETY: fresh, aligned, private memory.
        unsafe { RawRobustMutex::init_at(b.as_mut_ptr()) }.unwrap();
        // SAFETY: initialised just above.
        unsafe { b.assume_init() }
    }

    #[test]
    fn probe_passes_here() {
        robust_mutexes_supported().unwrap();
    }

    #[test]
    fn lock_try_lock_deadlock_detection() {
        let m = heap_mutex();
        let g = m.lock().unwrap();
        assert!(matches!(
            m.lock(),
            Err(LockError::Failed(LockFailure::Deadlock))
        ));
        assert!(matches!(
            m.lock_timeout(Duration::from_millis(5)),
            Err(LockError::Failed(LockFailure::Deadlock))
        ));
        drop(g);
        let g = m.try_lock().unwrap();
        let addr = &*m as *const RawRobustMutex as usize;
        let other = std::thread::spawn(move || {
            // SAFETY: the mutex outlives the thread (joined below).
            let m = unsafe { &*(addr as *const RawRobustMutex) };
            matches!(
                m.try_lock(),
                Err(LockError::Failed(LockFailure::WouldBlock))
            )
        });
        assert!(other.join().unwrap());
        drop(g);
    }

    #[test]
    fn dead_holder_thread_gives_owner_died_then_recovery_or_not_recoverable() {
        for repair in [true, false] {
            let m = heap_mutex();
            let addr = &*m as *const RawRobustMutex as usize;
            std::thread::spawn(move || {
                // SAFETY: the mutex outlives the thread.
                let m = unsafe { &*(addr as *const RawRobustMutex) };
                std::mem::forget(m.lock().unwrap());
            })
            .join()
            .unwrap();
            let mut g = m.lock().unwrap_err().into_guard().expect("OwnerDied");
            assert!(g.owner_died());
            if repair {
                g.mark_consistent();
                drop(g);
                drop(m.lock().expect("usable after repair"));
            } else {
                drop(g);
                assert!(matches!(
                    m.lock(),
                    Err(LockError::Failed(LockFailure::NotRecoverable))
                ));
                assert!(matches!(
                    m.try_lock(),
                    Err(LockError::Failed(LockFailure::NotRecoverable))
                ));
                assert!(matches!(
                    m.lock_timeout(Duration::from_millis(5)),
                    Err(LockError::Failed(LockFailure::NotRecoverable))
                ));
                // Regression: glibc's trylock would have left the word owned by this
                // thread, so other threads would time out (block) instead.
                let addr = &*m as *const RawRobustMutex as usize;
                let other = std::thread::spawn(move || {
                    // SAFETY: the mutex outlives the thread (joined below).
                    let m = unsafe { &*(addr as *const RawRobustMutex) };
                    matches!(
                        m.lock_timeout(Duration::from_secs(2)),
                        Err(LockError::Failed(LockFailure::NotRecoverable))
                    )
                });
                assert!(other.join().unwrap(), "others must see NotRecoverable too");
            }
        }
    }
}
