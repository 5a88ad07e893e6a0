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

mod atomic;
mod barrier;
mod event;
mod fixed_str;
mod map;
mod value;
mod vec;

pub use atomic::{SharedAtomicI64, SharedAtomicU32, SharedAtomicU64};
pub use barrier::Barrier;
pub use event::Event;
pub use fixed_str::{FixedStr, FixedStrError};
pub use map::{BytesMap, MapError, SharedMap};
pub use value::SharedValue;
pub use vec::{SharedVec, VecError};
