//! `SharedAtomicU32/U64/I64`: one integer in shared memory, accessed atomically only.

use std::fs::File;
use std::ops::Deref;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};
use std::time::Duration;

use ndarray::Ix0;

use crate::array::SharedArray;
use crate::error::{Error, Result};
use crate::format::control::ObjectKind;
use crate::segment::handle::sealed;
use crate::segment::{Create, KindSpec, Mapping, Open, Options, Segment, Source};
use crate::sync::TimedOut;

macro_rules! shared_atomic {
    ($(#[$doc:meta])* $name:ident, $t:ty, $atomic:ty) => {
        $(#[$doc])*
        ///
        /// Derefs to the std atomic, so `fetch_add`, `compare_exchange`, `load`,
        /// `store`, ... work as usual, across processes. The value sits alone on its
        /// own page (the data of its segment), so it shares no cache line. There is
        /// no non-atomic view of it.
        ///
        /// # Threads
        /// `Send + Sync`, as the std atomic.
        #[derive(Debug)]
        pub struct $name {
            array: SharedArray<$t, Ix0>,
        }

        impl $name {
            /// Creates `name` with initial value `v` (owner: removed on drop);
            /// [`Options::create`] creates with other options.
            pub fn create(name: &str, v: $t) -> Result<Self> {
                Options::new().create(name, v)
            }

            /// Attaches `name`; [`Options::open`] opens with other options (the
            /// mapping must be writable: an atomic read-modify-write on a read-only
            /// mapping would fault).
            pub fn open(name: &str) -> Result<Self> {
                Options::new().open(name)
            }

            fn checked(array: SharedArray<$t, Ix0>) -> Result<Self> {
                if !array.is_writable() {
                    return Err(Error::ReadOnly {
                        name: array.name().unwrap_or("<anonymous>").to_string(),
                    });
                }
                Ok($name { array })
            }
        }

        impl sealed::Sealed for $name {
            fn mapping(&self) -> &Mapping {
                self.array.mapping()
            }
            fn mapping_mut(&mut self) -> &mut Mapping {
                self.array.mapping_mut()
            }
        }

        impl Segment for $name {
            type Error = Error;
        }

        impl Create<$t> for $name {
            fn create_segment(opts: &Options, name: Option<&str>, v: $t) -> Result<Self> {
                let kind = KindSpec::plain(ObjectKind::Atomic);
                let array =
                    SharedArray::create_named_or_anonymous(opts, name, kind, &[], |a| a.fill(v))?;
                Ok($name { array })
            }
        }

        impl Open for $name {
            fn open_segment(opts: &Options, name: &str) -> Result<Self> {
                Self::checked(SharedArray::open_kind(opts, Source::Named(name), ObjectKind::Atomic)?)
            }

            fn open_file(opts: &Options, file: File) -> Result<Self> {
                Self::checked(SharedArray::open_kind(opts, Source::File(file), ObjectKind::Atomic)?)
            }
        }

        impl Deref for $name {
            type Target = $atomic;
            fn deref(&self) -> &$atomic {
                // SAFETY: the element is in a writable shared mapping that lives as
                // long as `self`, page aligned (so aligned for the atomic, which has
                // the size of `$t`), and this crate never accesses it non-atomically.
                unsafe { <$atomic>::from_ptr(self.array.data_ptr()) }
            }
        }
    };
}

shared_atomic!(
    /// A `u32` in shared memory, accessed atomically; also a futex word:
    /// [`SharedAtomicU32::wait_while_equal`] / [`SharedAtomicU32::wake_all`].
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use shmarray::atomic::SharedAtomicU32;
    /// let name = format!("doc-atomic-u32-{}", std::process::id());
    /// let flag = SharedAtomicU32::create(&name, 0)?;
    /// let other = SharedAtomicU32::open(&name)?; // e.g. in another process
    /// other.store(1, Ordering::Release);
    /// other.wake_all();
    /// flag.wait_while_equal(0); // returns at once: the value is 1
    /// assert_eq!(flag.load(Ordering::Acquire), 1);
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    SharedAtomicU32, u32, AtomicU32
);
shared_atomic!(
    /// A `u64` in shared memory, accessed atomically.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use shmarray::atomic::SharedAtomicU64;
    /// let hits = SharedAtomicU64::create(&format!("doc-atomic-u64-{}", std::process::id()), 0)?;
    /// hits.fetch_add(3, Ordering::Relaxed);
    /// assert_eq!(hits.compare_exchange(3, 10, Ordering::AcqRel, Ordering::Acquire), Ok(3));
    /// assert_eq!(hits.load(Ordering::Relaxed), 10);
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    SharedAtomicU64, u64, AtomicU64
);
shared_atomic!(
    /// An `i64` in shared memory, accessed atomically.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use shmarray::atomic::SharedAtomicI64;
    /// let balance = SharedAtomicI64::create(&format!("doc-atomic-i64-{}", std::process::id()), 5)?;
    /// balance.fetch_sub(7, Ordering::Relaxed);
    /// assert_eq!(balance.load(Ordering::Relaxed), -2);
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    SharedAtomicI64, i64, AtomicI64
);

impl SharedAtomicU32 {
    /// Blocks while the value equals `expected` (a futex wait: woken by
    /// [`wake_all`](Self::wake_all) after a store).
    pub fn wait_while_equal(&self, expected: u32) {
        // Without a deadline the wait only ends once the value differs.
        let _ = crate::sync::wait_while_equal(self, expected, None);
    }

    /// Blocks while the value equals `expected`, at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmarray::atomic::SharedAtomicU32;
    /// let w = SharedAtomicU32::create(&format!("doc-atomic-wait-{}", std::process::id()), 0)?;
    /// // Nobody changes it: the wait times out.
    /// assert!(w.wait_while_equal_timeout(0, Duration::from_millis(10)).is_err());
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    pub fn wait_while_equal_timeout(
        &self,
        expected: u32,
        timeout: Duration,
    ) -> std::result::Result<(), TimedOut> {
        crate::sync::wait_while_equal(self, expected, Some(timeout))
    }

    /// Wakes every process waiting on this value; returns how many were woken.
    pub fn wake_all(&self) -> usize {
        crate::sync::wake_all(self)
    }
}
