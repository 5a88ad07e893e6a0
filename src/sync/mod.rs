//! Process-shared synchronisation that survives a process dying.
//!
//! - `RawRobustMutex`: a robust, process-shared pthread mutex in a control block's
//!   lock slot (every array and value has one). A holder killed with `kill -9`
//!   deadlocks nobody: the next locker gets [`LockError::OwnerDied`] *with* the
//!   guard.
//! - `wait_while_equal` / `wake_all`: futex wait/wake on a 32-bit word, across
//!   processes, with a monotonic timeout.
//! - `rwcore` (`RwCore`, the state machine over the reader table, model checked)
//!   and `rwlock` (`RwLockState`, what a handle holds: its seat, read and write
//!   acquisition): a robust read-write lock over that mutex whose dead readers a
//!   writer recovers; `held_reads`, the per-thread record of held reads that turns
//!   self-deadlocks into errors.
//! - `deadline`: `Wait`, the one deadline type (blocking, `try_*`, `*_timeout`),
//!   converted once at the API edge.
//! - `members`: the member table of queues and barriers, with liveness from
//!   kernel-released file locks.
//! - `RawEvent`, `BarrierState`: an event flag and the logic of a reusable N-process
//!   barrier.
//! - `steps`: step counters with which ranks sharing rows wait only for the ranks
//!   whose rows they read (the `mpi` module's halo exchange).
//!
//! The named objects built on these live in `objects`; the lock guards they hand
//! out ([`ArrayGuard`], [`ArrayReadGuard`], [`ValueGuard`]) live here, with the
//! results and errors of locking and waiting.

mod barrier;
mod deadline;
mod event;
mod guard;
mod held_reads;
pub(crate) mod members;
pub(crate) mod mutex;
mod rwcore;
mod rwlock;
// Used by the `mpi` module's distributed arrays; unit and loom tests run without it.
#[cfg(any(feature = "mpi", test))]
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) mod steps;
mod wait;

pub(crate) use barrier::BarrierState;
pub use barrier::{BarrierError, BarrierOpenError};
pub(crate) use deadline::Wait;
pub(crate) use event::RawEvent;
pub use guard::{ArrayGuard, ArrayReadGuard, ReadResult, ValueGuard};
pub(crate) use mutex::sealed;
pub(crate) use mutex::LockError;
#[allow(unused_imports)] // used by some object kinds only
pub(crate) use mutex::{check_mutex_in_file, BadMutex, RawMutexGuard, RawRobustMutex};
pub use mutex::{LockFailure, LockResult, RobustGuard};
pub(crate) use rwlock::{ReadToken, RwLockState, WriteToken};
pub use wait::TimedOut;
pub(crate) use wait::{wait_while_equal, wake_all};

/// A marker that makes its holder `!Send` but keeps it `Sync`: for lock guards,
/// which must be released by the thread that took them (a pthread mutex is unlocked
/// by its owner thread; a read is counted out of this thread's record), while a
/// shared reference to a guard only reads.
#[derive(Clone, Copy, Default)]
pub(crate) struct NotSend(std::marker::PhantomData<*const ()>);

// SAFETY: `NotSend` has no data; it only withholds `Send`. Sharing a reference to it
// between threads does nothing.
unsafe impl Sync for NotSend {}

impl std::fmt::Debug for NotSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NotSend")
    }
}
