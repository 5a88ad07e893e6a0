//! `SharedValue<T>`: Python's `multiprocessing.Value`, with its lock.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use ndarray::Ix0;

use crate::array::{ArrayGuard, SharedArray};
use crate::element::Element;
use crate::error::Result;
use crate::format::control::ObjectKind;
use crate::segment::{KindSpec, Options, Target};
use crate::sync::{LockResult, RobustGuard};

/// A single shared value with a robust lock: Python's `multiprocessing.Value`.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmarray::{LockError, SharedValue};
/// let counter = SharedValue::<i64>::create("counter", 0)?;   // process A
/// let counter = SharedValue::<i64>::open("counter")?;        // process B
/// match counter.lock() {                                     // counter.get_lock()
///     Ok(mut v) => *v += 1,
///     // The previous holder died mid-update: we hold the lock; repair, then go on.
///     Err(LockError::OwnerDied(mut v)) => {
///         v.mark_consistent();
///         *v += 1;
///     }
///     Err(LockError::Failed(e)) => return Err(e.into()),
///     Err(e) => return Err(e.into_failure().into()), // (future variants)
/// }
/// # Ok(()) }
/// ```
///
/// # Threads
/// `Send + Sync`, as [`SharedArray`](crate::SharedArray).
pub struct SharedValue<T: Element> {
    array: SharedArray<T, Ix0>,
}

impl<T: Element> SharedValue<T> {
    /// Creates `name` holding `value` (owner: removed on drop).
    pub fn create(name: &str, value: T) -> Result<Self> {
        Self::create_with(&Options::new(), name, value)
    }

    /// Creates `name` with the given options.
    pub fn create_with(opts: &Options, name: &str, value: T) -> Result<Self> {
        let ns = opts.ns()?;
        let array = SharedArray::create_kind(
            Target::Named(&ns, name),
            KindSpec::plain(ObjectKind::Value),
            opts,
            &[],
            |v| v.fill(value),
        )?;
        Ok(SharedValue { array })
    }

    /// Attaches value `name`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(&Options::new(), name)
    }

    /// Attaches `name` with the given options.
    pub fn open_with(opts: &Options, name: &str) -> Result<Self> {
        Ok(SharedValue {
            array: SharedArray::open_kind(opts, name, ObjectKind::Value)?,
        })
    }

    /// Locks the value; the guard derefs to `T`. Same dead-holder semantics as
    /// [`SharedArray::lock`].
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.array
            .lock()
            .map(ValueGuard)
            .map_err(|e| e.map_guard(ValueGuard))
    }

    /// Like [`lock`](Self::lock), but `Err(WouldBlock)` instead of waiting.
    pub fn try_lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.array
            .try_lock()
            .map(ValueGuard)
            .map_err(|e| e.map_guard(ValueGuard))
    }

    /// Locks with a timeout.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ValueGuard<'_, T>> {
        self.array
            .lock_timeout(timeout)
            .map(ValueGuard)
            .map_err(|e| e.map_guard(ValueGuard))
    }

    /// Reads the value under the lock.
    pub fn get(&self) -> LockResult<T> {
        self.lock().map(|g| *g).map_err(|e| e.map_guard(|g| *g))
    }

    /// Writes the value under the lock.
    pub fn set(&self, value: T) -> LockResult<()> {
        match self.lock() {
            Ok(mut g) => {
                *g = value;
                Ok(())
            }
            Err(e) => Err(e.map_guard(|mut g| *g = value)),
        }
    }

    segment_accessors!(persistent array);
}

impl<T: Element> fmt::Debug for SharedValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedValue")
            .field("name", &self.name())
            .field("dtype", &T::DTYPE)
            .finish()
    }
}

/// A locked [`SharedValue`]; derefs to the value.
///
/// # Threads
/// Not `Send` (the thread that locked unlocks), but `Sync`, as
/// [`ArrayGuard`](crate::ArrayGuard).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Element>(ArrayGuard<'a, T, Ix0>);

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

impl<T: Element> crate::sync::sealed::Sealed for ValueGuard<'_, T> {}

impl<T: Element> RobustGuard for ValueGuard<'_, T> {
    fn owner_died(&self) -> bool {
        ValueGuard::owner_died(self)
    }
    fn mark_consistent(&mut self) {
        ValueGuard::mark_consistent(self)
    }
}
