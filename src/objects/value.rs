//! `SharedValue<T>`: Python's `multiprocessing.Value`, with its lock.

use std::fmt;
use std::fs::File;
use std::time::Duration;

use ndarray::Ix0;

use crate::array::SharedArray;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::format::control::ObjectKind;
use crate::segment::handle::sealed;
use crate::segment::{Create, KindSpec, Mapping, Open, Options, Segment, Source};
use crate::sync::{LockResult, ValueGuard};

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
    /// Creates `name` holding `value` (owner: removed on drop);
    /// [`Options::create`] creates with other options.
    ///
    /// ```
    /// use shmarray::SharedValue;
    /// let name = format!("doc-value-create-{}", std::process::id());
    /// let speed = SharedValue::<f32>::create(&name, 1.5)?;
    /// assert_eq!(speed.get()?, 1.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(name: &str, value: T) -> Result<Self> {
        Options::new().create(name, value)
    }

    /// Attaches value `name`, checked against `T`; [`Options::open`] opens with
    /// other options.
    ///
    /// ```
    /// use shmarray::SharedValue;
    /// let name = format!("doc-value-open-{}", std::process::id());
    /// let a = SharedValue::<u64>::create(&name, 0)?;
    /// let b = SharedValue::<u64>::open(&name)?; // e.g. in another process
    /// b.set(42)?;
    /// assert_eq!(a.get()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(name: &str) -> Result<Self> {
        Options::new().open(name)
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
}

impl<T: Element> sealed::Sealed for SharedValue<T> {
    fn mapping(&self) -> &Mapping {
        self.array.mapping()
    }
    fn mapping_mut(&mut self) -> &mut Mapping {
        self.array.mapping_mut()
    }
}

impl<T: Element> Segment for SharedValue<T> {
    type Error = Error;
}

impl<T: Element> Create<T> for SharedValue<T> {
    fn create_segment(opts: &Options, name: Option<&str>, value: T) -> Result<Self> {
        let kind = KindSpec::plain(ObjectKind::Value);
        let array =
            SharedArray::create_named_or_anonymous(opts, name, kind, &[], |v| v.fill(value))?;
        Ok(SharedValue { array })
    }
}

impl<T: Element> Open for SharedValue<T> {
    fn open_segment(opts: &Options, name: &str) -> Result<Self> {
        let array = SharedArray::open_kind(opts, Source::Named(name), ObjectKind::Value)?;
        Ok(SharedValue { array })
    }

    fn open_file(opts: &Options, file: File) -> Result<Self> {
        let array = SharedArray::open_kind(opts, Source::File(file), ObjectKind::Value)?;
        Ok(SharedValue { array })
    }
}

impl<T: Element> fmt::Debug for SharedValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedValue")
            .field("name", &self.name())
            .field("dtype", &T::DTYPE)
            .finish()
    }
}
