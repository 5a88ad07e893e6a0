//! Worker processes: starting them, the wire to them, and the worker loop.
//!
//! The user-facing rules live on the public items, which the crate root re-exports:
//! [`StartMethod`] (spawn, checked fork, the fork server), [`init`], [`Process`],
//! and the pool's docs (how a task's function reaches a worker, and what happens to
//! processes a task starts).
//!
//! Layout: `task` (typed task functions and trampolines, the same-object check),
//! `wire` (codec, messages, framed channel), `worker` (the worker side), `launch`
//! (the parent side of a worker: spawn, fork, liveness, kill), `lane` (the shared
//! memory between the pool and one worker: the word in which the worker records
//! the task it begins, and the task and result rings), `zygote` (the fork server
//! of fork pools), `child` ([`Process`]), `error` ([`TaskError`]).

mod cache;
mod child;
mod error;
pub(crate) mod lane;
mod launch;
mod parts;
mod task;
mod waiting;
mod wire;
mod worker;
mod zygote;

pub use child::Process;
pub use error::TaskError;
pub use worker::{init, WORKER_ENV};

pub(crate) use cache::{with_attached, Location};
pub(crate) use error::{ItemFailure, MessageFailure};
pub(crate) use launch::Worker;
pub(crate) use parts::Part;
pub(crate) use task::{run_chunk, ItemOutcome, TaskFn, TaskOffsets};
pub(crate) use waiting::{lock, wait_until};
pub(crate) use wire::{decode, encode, FromWorker, Lost};
pub(crate) use zygote::ForkServer;

/// How worker processes are started.
///
/// - [`Spawn`](StartMethod::Spawn) (default): re-executes the current executable
///   (`/proc/self/exe`). The program must call [`init`] first thing in `main` (the
///   Rust twin of Python's `if __name__ == "__main__":` guard): in a worker, `init`
///   runs the worker loop and exits; elsewhere it returns at once. Works from
///   multithreaded parents.
/// - [`Fork`](StartMethod::Fork) (opt-in): fastest, and the worker inherits
///   everything, but a forked child of a multithreaded process may find a lock
///   (allocator, stdout, any mutex) held forever by a thread that does not exist in
///   it. So fork is *checked*: before every fork the thread count of the process is
///   read (`/proc/self/status`), and unless it is exactly one the call fails with
///   [`TaskError::NotSingleThreaded`]. A fork pool forks a *fork server* once, at
///   creation, and the server (single-threaded forever) forks every worker, first
///   and replacement; fork-pool workers therefore see the program as it was when
///   the pool was created. Python deprecated fork in multithreaded programs in 3.12
///   and made a fork server its default in 3.14, for the same reason.
///
/// Note that spawning a [`Process`] starts a launcher thread (see
/// [`Process::start_with`]), after which this process is multithreaded.
///
/// ```
/// use shmarray::pool::{Pool, StartMethod, TaskError};
///
/// fn double(x: i32) -> i32 {
///     2 * x
/// }
///
/// fn main() -> Result<(), TaskError> {
///     shmarray::init(); // Spawn (the default) re-executes this program as the workers
///     assert_eq!(StartMethod::default(), StartMethod::Spawn);
///     // Fork while this process has one thread...
///     let forked = Pool::with_method(1, StartMethod::Fork)?;
///     assert_eq!(forked.map(double, [1, 2])?, [2, 4]);
///     // ...but not once it has more (the pool's own threads count).
///     let again = Pool::with_method(1, StartMethod::Fork);
///     assert!(matches!(again, Err(TaskError::NotSingleThreaded { .. })));
///     let spawned = Pool::with_method(1, StartMethod::Spawn)?;
///     assert_eq!(spawned.map(double, [3])?, [6]);
///     Ok(())
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartMethod {
    /// Re-execute the current executable; needs [`init`] at the top of `main`.
    #[default]
    Spawn,
    /// `fork()`, only from a single-threaded process (checked; see above).
    Fork,
}
