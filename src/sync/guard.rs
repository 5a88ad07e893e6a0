//! The lock guards of arrays and values: the only safe ways to a view through
//! `&self`.

use std::fmt;
use std::ops::{Deref, DerefMut};

use ndarray::{ArrayView, ArrayViewMut, Dimension, Ix0};

use crate::element::Element;
use crate::sync::{LockError, LockFailure, ReadToken, RobustGuard, WriteToken};

/// The result of [`SharedArray::read`](crate::SharedArray::read): the read guard,
/// or why not. `OwnerDied` carries the *write* guard: the last writer died, and
/// the data needs repair before anyone reads it.
pub type ReadResult<'a, T, D> =
    std::result::Result<ArrayReadGuard<'a, T, D>, LockError<ArrayGuard<'a, T, D>>>;

/// The array's lock, held exclusively (from [`lock`](crate::SharedArray::lock) or
/// [`write`](crate::SharedArray::write)): derefs to the mutable view. Unlocks on
/// drop.
///
/// # Threads
/// Not `Send`: the thread that locked is the one that unlocks (a pthread mutex
/// belongs to its locking thread). `Sync`, as `std::sync::MutexGuard`: other threads
/// may read through a shared reference. Sending one to another thread does not
/// compile:
///
/// ```compile_fail,E0277
/// # use shmarray::{ndarray::Ix1, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = SharedArray::<f64, Ix1>::create(&format!("doc-gsend-{}", std::process::id()), 4)?;
/// let g = a.lock().map_err(shmarray::LockError::into_failure)?;
/// std::thread::scope(|s| {
///     s.spawn(move || drop(g));
/// });
/// # Ok(()) }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Element, D: Dimension> {
    view: ArrayViewMut<'a, T, D>,
    token: WriteToken<'a>,
}

impl<'a, T: Element, D: Dimension> ArrayGuard<'a, T, D> {
    pub(crate) fn new(view: ArrayViewMut<'a, T, D>, token: WriteToken<'a>) -> Self {
        ArrayGuard { view, token }
    }

    /// Whether the previous holder died and the data is not yet marked consistent.
    pub fn owner_died(&self) -> bool {
        self.token.owner_died()
    }

    /// After an `OwnerDied`, declares the data repaired so the lock stays usable.
    pub fn mark_consistent(&mut self) {
        self.token.mark_consistent();
    }

    /// How many readers this lock found dead while it waited for the readers to
    /// leave, and took their shares back from (readers never write, so their death
    /// leaves nothing to repair).
    pub fn recovered_readers(&self) -> u32 {
        self.token.recovered_readers()
    }

    /// Turns the exclusive lock into a read lock, without letting another writer in
    /// between. A guard from `OwnerDied` that was not marked consistent makes the
    /// lock not recoverable for everyone else, as dropping it would.
    pub fn downgrade(self) -> Result<ArrayReadGuard<'a, T, D>, LockFailure> {
        let ArrayGuard { view, token } = self;
        let raw = view.raw_view();
        drop(view);
        let token = token.downgrade()?;
        // SAFETY: `raw` describes the same in-bounds, aligned elements of a mapping
        // that lives for `'a` (the lifetime of the consumed view); the mutable view
        // is gone, and the read lock now held excludes every writer for the guard's
        // lifetime.
        let view = unsafe { raw.deref_into_view() };
        Ok(ArrayReadGuard { view, token })
    }
}

impl<T: Element, D: Dimension> fmt::Debug for ArrayGuard<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("shape", &self.view.shape())
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

impl<'a, T: Element, D: Dimension> std::ops::Deref for ArrayGuard<'a, T, D> {
    type Target = ArrayViewMut<'a, T, D>;
    fn deref(&self) -> &Self::Target {
        &self.view
    }
}

impl<T: Element, D: Dimension> std::ops::DerefMut for ArrayGuard<'_, T, D> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.view
    }
}

impl<T: Element, D: Dimension> crate::sync::sealed::Sealed for ArrayGuard<'_, T, D> {}

impl<T: Element, D: Dimension> RobustGuard for ArrayGuard<'_, T, D> {
    fn owner_died(&self) -> bool {
        ArrayGuard::owner_died(self)
    }
    fn mark_consistent(&mut self) {
        ArrayGuard::mark_consistent(self)
    }
}

/// A read lock of the array (from [`read`](crate::SharedArray::read)): derefs to
/// the read-only view. Other readers, in any thread or process, may hold one at
/// the same time; no writer can.
///
/// # Threads
/// Not `Send`: the read is counted out of the taking thread's record of held reads,
/// so the thread that took it releases it. `Sync`: other threads may read the view
/// through a shared reference (for example scoped threads summing parts of it).
///
/// ```
/// # use shmarray::{ndarray::Ix1, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = SharedArray::<f64, Ix1>::create(&format!("doc-gsync-{}", std::process::id()), 4)?;
/// let g = a.read().map_err(shmarray::LockError::into_failure)?;
/// let total = std::thread::scope(|s| s.spawn(|| g.sum()).join().unwrap());
/// assert_eq!(total, 0.0);
/// # Ok(()) }
/// ```
///
/// Moving it to another thread does not compile:
///
/// ```compile_fail,E0277
/// # use shmarray::{ndarray::Ix1, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = SharedArray::<f64, Ix1>::create(&format!("doc-rsend-{}", std::process::id()), 4)?;
/// let g = a.read().map_err(shmarray::LockError::into_failure)?;
/// std::thread::scope(|s| {
///     s.spawn(move || drop(g));
/// });
/// # Ok(()) }
/// ```
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub struct ArrayReadGuard<'a, T: Element, D: Dimension> {
    view: ArrayView<'a, T, D>,
    token: ReadToken<'a>,
}

impl<'a, T: Element, D: Dimension> ArrayReadGuard<'a, T, D> {
    pub(crate) fn new(view: ArrayView<'a, T, D>, token: ReadToken<'a>) -> Self {
        ArrayReadGuard { view, token }
    }
}

impl<T: Element, D: Dimension> fmt::Debug for ArrayReadGuard<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayReadGuard")
            .field("shape", &self.view.shape())
            .field("token", &self.token)
            .finish()
    }
}

impl<'a, T: Element, D: Dimension> std::ops::Deref for ArrayReadGuard<'a, T, D> {
    type Target = ArrayView<'a, T, D>;
    fn deref(&self) -> &Self::Target {
        &self.view
    }
}

/// A write guard handed over by `OwnerDied` on a read turns into the read guard
/// once repaired (see [`LockResultExt::recover`](crate::LockResultExt::recover)).
impl<'a, T: Element, D: Dimension> TryFrom<ArrayGuard<'a, T, D>> for ArrayReadGuard<'a, T, D> {
    type Error = LockFailure;
    fn try_from(g: ArrayGuard<'a, T, D>) -> Result<Self, LockFailure> {
        g.downgrade()
    }
}

/// A locked [`SharedValue`](crate::SharedValue); derefs to the value.
///
/// ```
/// use shmarray::{LockError, SharedValue};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let total = SharedValue::<u64>::create(&format!("doc-value-guard-{}", std::process::id()), 40)?;
/// {
///     let mut g = total.lock().map_err(LockError::into_failure)?;
///     *g += 1; // a read-modify-write no other process sees half done
///     *g += 1;
/// } // unlocked here
/// // A holder that dies holding the lock: here a thread that forgets its guard
/// // and exits; a process killed with `kill -9` is the same.
/// std::thread::scope(|s| {
///     s.spawn(|| std::mem::forget(total.lock()));
/// });
/// match total.lock() {
///     Err(LockError::OwnerDied(mut g)) => {
///         assert!(g.owner_died());
///         assert_eq!(*g, 42); // as the dead holder left it: check, repair, then
///         g.mark_consistent();
///     }
///     _ => panic!("expected OwnerDied"),
/// }
/// assert_eq!(total.get().map_err(LockError::into_failure)?, 42);
/// # Ok(()) }
/// ```
///
/// # Threads
/// Not `Send` (the thread that locked unlocks), but `Sync`, as
/// [`ArrayGuard`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Element>(pub(crate) ArrayGuard<'a, T, Ix0>);

impl<T: Element> ValueGuard<'_, T> {
    /// Whether the previous holder died and the value is not yet marked consistent.
    pub fn owner_died(&self) -> bool {
        self.0.owner_died()
    }

    /// After `OwnerDied`, declares the value repaired.
    pub fn mark_consistent(&mut self) {
        self.0.mark_consistent();
    }
}

impl<T: Element + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueGuard")
            .field("value", &**self)
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

impl<T: Element> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0[()]
    }
}

impl<T: Element> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0[()]
    }
}

impl<T: Element> super::sealed::Sealed for ValueGuard<'_, T> {}

impl<T: Element> RobustGuard for ValueGuard<'_, T> {
    fn owner_died(&self) -> bool {
        ValueGuard::owner_died(self)
    }
    fn mark_consistent(&mut self) {
        ValueGuard::mark_consistent(self)
    }
}
