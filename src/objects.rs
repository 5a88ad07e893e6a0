//! Named shared objects built on segments: Python's `Value` (with `get_lock()`),
//! atomic counters, `Event` and `Barrier`, each attachable by name from any process.
//!
//! Each object is an ordinary segment, so naming, exclusive creation, ownership
//! (the creator unlinks on drop), `shmarray ls`/`gc` and numpy access work as for
//! arrays: a `SharedValue<f64>` is a 0-d `<f8` array, a `SharedAtomicU64` a 0-d `<u8`
//! array whose one element is accessed atomically.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};
use std::time::Duration;

use ndarray::{Ix0, Ix1};

use crate::array::{ArrayGuard, Options, SharedArray};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::sync::{BarrierError, LockResult, RawBarrier, RawEvent, TimedOut};

/// A single shared value with a robust lock: Python's `multiprocessing.Value`.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmarray::objects::SharedValue;
/// let counter = SharedValue::<i64>::create("counter", 0)?;   // process A
/// let counter = SharedValue::<i64>::open("counter")?;        // process B
/// match counter.lock() {                                     // counter.get_lock()
///     Ok(mut v) => *v += 1,
///     // The previous holder died mid-update: we hold the lock; repair, then go on.
///     Err(shmarray::LockError::OwnerDied(mut v)) => {
///         v.mark_consistent();
///         *v += 1;
///     }
///     Err(e) => return Err(e.to_string().into()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SharedValue<T: Element> {
    array: SharedArray<T, Ix0>,
}

impl<T: Element> SharedValue<T> {
    /// Creates `name` holding `value` (owner: unlinked on drop).
    pub fn create(name: &str, value: T) -> Result<Self> {
        Self::create_with(&Options::new(), name, value)
    }

    /// Creates `name` with the given options.
    pub fn create_with(opts: &Options, name: &str, value: T) -> Result<Self> {
        let array = opts.create_from(name, &ndarray::arr0(value))?;
        Ok(SharedValue { array })
    }

    /// Attaches `name` (a 0-d array of `T`).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(&Options::new(), name)
    }

    /// Attaches `name` with the given options.
    pub fn open_with(opts: &Options, name: &str) -> Result<Self> {
        Ok(SharedValue {
            array: opts.open(name)?,
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

    /// The underlying 0-d array (name, path, persistence, unlink).
    pub fn array(&self) -> &SharedArray<T, Ix0> {
        &self.array
    }

    /// Keeps the segment after this handle is dropped.
    pub fn into_persistent(self) -> Self {
        SharedValue {
            array: self.array.into_persistent(),
        }
    }
}

/// A locked [`SharedValue`]; derefs to the value.
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

impl<T: Element + std::fmt::Debug> std::fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

macro_rules! shared_atomic {
    ($(#[$doc:meta])* $name:ident, $t:ty, $atomic:ty) => {
        $(#[$doc])*
        ///
        /// Derefs to the std atomic, so `fetch_add`, `compare_exchange`, `load`,
        /// `store`, ... work as usual, across processes. The value sits alone on its
        /// own page (the data of its segment), so it shares no cache line.
        #[derive(Debug)]
        pub struct $name {
            array: SharedArray<$t, Ix0>,
        }

        impl $name {
            /// Creates `name` with initial value `v` (owner: unlinked on drop).
            pub fn create(name: &str, v: $t) -> Result<Self> {
                Self::create_with(&Options::new(), name, v)
            }

            /// Creates `name` with the given options.
            pub fn create_with(opts: &Options, name: &str, v: $t) -> Result<Self> {
                Ok($name {
                    array: opts.create_from(name, &ndarray::arr0(v))?,
                })
            }

            /// Attaches `name`.
            pub fn open(name: &str) -> Result<Self> {
                Self::open_with(&Options::new(), name)
            }

            /// Attaches `name` with the given options (must be writable).
            pub fn open_with(opts: &Options, name: &str) -> Result<Self> {
                let array: SharedArray<$t, Ix0> = opts.open(name)?;
                if !array.segment().is_writable() {
                    return Err(Error::ReadOnly {
                        name: name.to_string(),
                    });
                }
                Ok($name { array })
            }

            /// The underlying 0-d array.
            pub fn array(&self) -> &SharedArray<$t, Ix0> {
                &self.array
            }
        }

        impl Deref for $name {
            type Target = $atomic;
            fn deref(&self) -> &$atomic {
                // SAFETY: the element is in a writable shared mapping that lives as
                // long as `self`, page aligned (so aligned for the atomic, which has
                // the size of `$t`), and only ever accessed atomically through here.
                unsafe { <$atomic>::from_ptr(self.array.data_ptr()) }
            }
        }
    };
}

shared_atomic!(
    /// A `u32` in shared memory, accessed atomically; also a futex word:
    /// [`SharedAtomicU32::wait_while_equal`] / [`SharedAtomicU32::wake_all`].
    SharedAtomicU32, u32, AtomicU32
);
shared_atomic!(
    /// A `u64` in shared memory, accessed atomically.
    SharedAtomicU64, u64, AtomicU64
);
shared_atomic!(
    /// An `i64` in shared memory, accessed atomically.
    SharedAtomicI64, i64, AtomicI64
);

impl SharedAtomicU32 {
    /// Blocks while the value equals `expected`, until woken or `timeout` passes.
    pub fn wait_while_equal(
        &self,
        expected: u32,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), TimedOut> {
        crate::sync::wait_while_equal(self, expected, timeout)
    }

    /// Wakes every process waiting on this value.
    pub fn wake_all(&self) -> usize {
        crate::sync::wake_all(self)
    }
}

/// A segment whose data is one `#[repr(C)]` state struct, marked by a magic.
struct StateSegment<S> {
    array: SharedArray<u8, Ix1>,
    _state: PhantomData<S>,
}

#[repr(C)]
struct Stamped<S> {
    magic: [u8; 8],
    state: S,
}

impl<S> StateSegment<S> {
    /// # Safety
    /// All-zero bytes must be a valid `S`; `init` receives exclusive access.
    unsafe fn create(
        opts: &Options,
        name: &str,
        magic: [u8; 8],
        init: impl FnOnce(&mut S),
    ) -> Result<Self> {
        let len = std::mem::size_of::<Stamped<S>>();
        let array = opts.create_initialised(Some(name), len, |p| {
            // SAFETY: `p` is the page-aligned, zero-filled, private data area of `len`
            // bytes; zero bytes are a valid `Stamped<S>` (caller's contract).
            let st = unsafe { &mut *p.cast::<Stamped<S>>() };
            st.magic = magic;
            init(&mut st.state);
        })?;
        Ok(StateSegment {
            array,
            _state: PhantomData,
        })
    }

    fn open(opts: &Options, name: &str, magic: [u8; 8], what: &str) -> Result<Self> {
        let array: SharedArray<u8, Ix1> = opts.open(name)?;
        let len = std::mem::size_of::<Stamped<S>>();
        let mismatch = || Error::TypeMismatch {
            name: name.to_string(),
            expected: what.to_string(),
            found: format!("a {}-byte u8 array without its magic", array.len()),
        };
        if array.len() != len || !array.segment().is_writable() {
            return Err(mismatch());
        }
        // SAFETY: `len` bytes of data, page aligned, readable.
        let found = unsafe { *array.data_ptr().cast::<[u8; 8]>() };
        if found != magic {
            return Err(mismatch());
        }
        Ok(StateSegment {
            array,
            _state: PhantomData,
        })
    }

    fn state(&self) -> &S {
        // SAFETY: the data is a `Stamped<S>` (checked size and magic), valid for any
        // bytes (the types used here contain only atomics), page aligned, and lives
        // as long as `self`.
        unsafe { &(*self.array.data_ptr().cast::<Stamped<S>>()).state }
    }
}

/// Python's `multiprocessing.Event`, by name: `set`, `clear`, `is_set`, `wait`.
pub struct Event {
    seg: StateSegment<RawEvent>,
}

impl Event {
    const MAGIC: [u8; 8] = *b"SHMEVNT1";

    /// Creates a clear event `name`.
    pub fn create(name: &str) -> Result<Event> {
        // SAFETY: RawEvent is one AtomicU32: zero bytes are valid (clear).
        let seg = unsafe { StateSegment::create(&Options::new(), name, Self::MAGIC, |_| {}) }?;
        Ok(Event { seg })
    }

    /// Attaches event `name`.
    pub fn open(name: &str) -> Result<Event> {
        let seg = StateSegment::open(&Options::new(), name, Self::MAGIC, "an Event")?;
        Ok(Event { seg })
    }

    /// Sets the event, waking every waiter in every process.
    pub fn set(&self) {
        self.seg.state().set()
    }

    /// Clears the event.
    pub fn clear(&self) {
        self.seg.state().clear()
    }

    /// Whether it is set.
    pub fn is_set(&self) -> bool {
        self.seg.state().is_set()
    }

    /// Waits until set, for at most `timeout` (`None`: forever).
    pub fn wait(&self, timeout: Option<Duration>) -> std::result::Result<(), TimedOut> {
        self.seg.state().wait(timeout)
    }
}

/// A reusable barrier for N processes, by name. A participant that dies makes the
/// others' `wait` fail with `ParticipantDied` (within ~10 ms), never hang.
pub struct Barrier {
    seg: StateSegment<RawBarrier>,
    slot: usize,
}

impl Barrier {
    const MAGIC: [u8; 8] = *b"SHMBARR1";

    /// Creates barrier `name` for `parties` processes and joins it.
    pub fn create(name: &str, parties: u32) -> std::result::Result<Barrier, BarrierOpenError> {
        if parties == 0 || parties as usize > crate::sync::MAX_PARTIES {
            return Err(BarrierError::TooManyParticipants { parties }.into());
        }
        // SAFETY: RawBarrier is atomics and integers: zero bytes are valid.
        let seg = unsafe {
            StateSegment::create(&Options::new(), name, Self::MAGIC, |b: &mut RawBarrier| {
                b.init(parties)
            })
        }?;
        let slot = seg.state().join()?;
        Ok(Barrier { seg, slot })
    }

    /// Attaches barrier `name` and joins it as a participant.
    pub fn open(name: &str) -> std::result::Result<Barrier, BarrierOpenError> {
        let seg: StateSegment<RawBarrier> =
            StateSegment::open(&Options::new(), name, Self::MAGIC, "a Barrier")?;
        let slot = seg.state().join()?;
        Ok(Barrier { seg, slot })
    }

    /// Waits for all parties, for at most `timeout`; `Ok(true)` in exactly one
    /// participant per round.
    pub fn wait(&self, timeout: Duration) -> std::result::Result<bool, BarrierError> {
        self.seg.state().wait(self.slot, timeout)
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.seg.state().parties()
    }

    /// Repairs a broken barrier (call when no survivor is inside `wait`).
    pub fn reset(&self) {
        self.seg.state().reset()
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.seg.state().is_broken()
    }
}

impl Drop for Barrier {
    fn drop(&mut self) {
        self.seg.state().leave(self.slot);
    }
}

/// Why a barrier could not be created or joined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierOpenError {
    /// The segment could not be created/opened.
    #[error(transparent)]
    Segment(#[from] Error),
    /// The barrier is full or the party count is invalid.
    #[error(transparent)]
    Barrier(#[from] BarrierError),
}
