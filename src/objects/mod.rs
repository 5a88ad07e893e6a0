//! Named shared objects, each its own segment *kind*: Python's `Value` (with
//! `get_lock()`), atomic counters, `Event`, `Barrier`, and the `Manager`'s `dict`
//! and `list` (`SharedMap`, `SharedVec`), attachable by name from any
//! process. Naming, exclusive creation, ownership (the creator removes the name on
//! drop), `Options`, `shmarray ls`/`gc` and numpy access work as for arrays, and an
//! object is only ever opened as the kind it is.
//!
//! | object | data, as numpy sees it |
//! |---|---|
//! | `SharedValue<T>` | a 0-d array of `T` |
//! | `SharedAtomicU32/U64/I64` | a 0-d `<u4`/`<u8`/`<i8` array, accessed atomically |
//! | `Event` | a 0-d `<u4` array: 0 clear, 1 set |
//! | `Barrier` | bytes: member table and state |
//! | `SharedMap<K, V>` | bytes: shard heads, then the entries (a structured array) |
//! | `SharedVec<T>` | a 1-d array of `T` of the capacity; the length is in the control block |

/// The accessors every named object has, over the array that holds its segment
/// (`$field`); with `persistent`, also `into_persistent` (for single-field types).
macro_rules! segment_accessors {
    ($field:ident) => {
        /// The segment name (`None` for anonymous segments).
        pub fn name(&self) -> Option<&str> {
            self.$field.name()
        }

        /// The segment's file path (see the table in the module docs for what
        /// numpy sees there).
        pub fn path(&self) -> Option<std::path::PathBuf> {
            self.$field.path()
        }

        /// The pages behind the segment (see [`crate::SharedArray::backing`]).
        pub fn backing(&self) -> &crate::segment::Backing {
            self.$field.backing()
        }

        /// Removes the name now; processes that have it open keep using it.
        pub fn unlink(&self) -> crate::error::Result<()> {
            self.$field.unlink()
        }
    };
    (persistent $field:ident) => {
        segment_accessors!($field);

        /// Keeps the segment after this handle is dropped (never collected by
        /// `shmarray gc`); remove it with `unlink`, `shmarray::remove` or
        /// `shmarray rm`.
        pub fn into_persistent(self) -> Self {
            Self {
                $field: self.$field.into_persistent(),
            }
        }
    };
}

mod atomic;
mod barrier;
mod event;
mod map;
mod value;
mod vec;

pub use atomic::{SharedAtomicI64, SharedAtomicU32, SharedAtomicU64};
pub use barrier::{Barrier, BarrierOpenError};
pub use event::Event;
pub use map::{BytesMap, FixedStr, FixedStrError, MapError, SharedMap};
pub use value::{SharedValue, ValueGuard};
pub use vec::{SharedVec, VecError};
