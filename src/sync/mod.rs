//! Process-shared synchronisation that survives a process dying.
//!
//! - [`RawRobustMutex`]: a robust, process-shared pthread mutex placed in shared
//!   memory (every array's control block holds one: [`crate::SharedArray::lock`]).
//!   A holder killed with `kill -9` does not deadlock anyone: the next locker gets
//!   [`LockError::OwnerDied`] *with* the guard.
//! - [`wait_while_equal`] / [`wake_all`]: futex wait/wake on a 32-bit word, across
//!   processes, with a monotonic timeout.
//! - [`RawEvent`], [`RawBarrier`]: an event flag and a reusable N-process barrier
//!   whose dead participants are detected (pid + process start time).
//!
//! Named, attachable forms live in [`crate::objects`]: `SharedValue<T>` (Python's
//! `Value` with `get_lock()`), `SharedAtomicU32/U64/I64`, `Event`, `Barrier`.

mod barrier;
mod event;
mod mutex;
mod wait;

pub use barrier::{BarrierError, RawBarrier, MAX_PARTIES};
pub use event::RawEvent;
pub use mutex::{robust_mutexes_supported, LockError, LockResult, RawMutexGuard, RawRobustMutex};
pub use wait::{wait_while_equal, wake_all, wake_one, TimedOut};
