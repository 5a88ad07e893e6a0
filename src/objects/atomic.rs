//! `SharedAtomicU32/U64/I64`: one integer in shared memory, accessed atomically only.

use std::ops::Deref;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};
use std::time::Duration;

use ndarray::Ix0;

use crate::array::SharedArray;
use crate::error::{Error, Result};
use crate::format::control::ObjectKind;
use crate::segment::{KindSpec, Options, Target};
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
            /// Creates `name` with initial value `v` (owner: removed on drop).
            pub fn create(name: &str, v: $t) -> Result<Self> {
                Self::create_with(&Options::new(), name, v)
            }

            /// Creates `name` with the given options.
            pub fn create_with(opts: &Options, name: &str, v: $t) -> Result<Self> {
                let ns = opts.ns()?;
                let array = SharedArray::create_kind(
                    Target::Named(&ns, name),
                    KindSpec::plain(ObjectKind::Atomic),
                    opts,
                    &[],
                    |a| a.fill(v),
                )?;
                Ok($name { array })
            }

            /// Attaches `name`.
            pub fn open(name: &str) -> Result<Self> {
                Self::open_with(&Options::new(), name)
            }

            /// Attaches `name` with the given options (it must be writable: an atomic
            /// read-modify-write on a read-only mapping would fault).
            pub fn open_with(opts: &Options, name: &str) -> Result<Self> {
                let array: SharedArray<$t, Ix0> =
                    SharedArray::open_kind(opts, name, ObjectKind::Atomic)?;
                if !array.is_writable() {
                    return Err(Error::ReadOnly {
                        name: name.to_string(),
                    });
                }
                Ok($name { array })
            }

            segment_accessors!(persistent array);
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
    /// Blocks while the value equals `expected` (a futex wait: woken by
    /// [`wake_all`](Self::wake_all) after a store).
    pub fn wait_while_equal(&self, expected: u32) {
        // Without a deadline the wait only ends once the value differs.
        let _ = crate::sync::wait_while_equal(self, expected, None);
    }

    /// Blocks while the value equals `expected`, at most `timeout`.
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
