//! Worker processes: Python's `multiprocessing.Process`, for plain `fn`s.
//!
//! A task is a plain function `fn(A) -> R` (not a capturing closure) with serde
//! arguments and result. The function crosses the process boundary as its address
//! relative to an anchor function of this crate, together with the trampoline
//! monomorphised for its type (the two are paired in one place, from the typed
//! function pointer). That offset names the same function in the worker because:
//! - the function and the anchor lie in the same loaded object: checked with
//!   `dladdr` when a task is submitted, and again in the worker (a `fn` from
//!   another shared library is refused with [`TaskError::ForeignFunction`]);
//! - the worker maps the same file for that object, with the anchor at the same
//!   offset, and runs the same executable: checked in a handshake
//!   ([`TaskError::DifferentExecutable`] otherwise; a crate inside a shared library
//!   or Python extension is not what a re-executed `/proc/self/exe` runs).
//!
//! # Start methods
//! - [`StartMethod::Spawn`] (default): re-executes the current executable. The
//!   program must call [`init`] first thing in `main` (the Rust twin of Python's
//!   `if __name__ == "__main__":` guard): in a worker, `init` runs the worker loop
//!   and exits; elsewhere it returns at once. Works from multithreaded parents.
//! - [`StartMethod::Fork`] (opt-in): fastest, and the worker inherits everything,
//!   but a forked child of a multithreaded process may find a lock (allocator,
//!   stdout, any mutex) held forever by a thread that does not exist in it. So fork
//!   is *checked*: before every fork this crate counts the process's threads
//!   (`/proc/self/status`) and refuses with [`TaskError::NotSingleThreaded`] unless
//!   there is exactly one. A fork [`Pool`](crate::pool::Pool) forks a *fork server*
//!   once, at creation, and the server (single-threaded forever) forks every worker,
//!   first and replacement; workers therefore see the program as it was when the
//!   pool was created. Python deprecated fork for multithreaded programs in 3.12
//!   and made it a forkserver by default in 3.14, for the same reason.
//!
//! # Workers and what their tasks start
//! - A worker's channel is a socket that is close-on-exec in the worker and is not
//!   its standard input (which stays what it was), so processes a task starts do not
//!   inherit it.
//! - Every worker leads its own process group; killing a worker (cancel, timeout,
//!   drop, replacement) kills the group, so the processes its tasks started (and
//!   did not move to another group) go with it. When a worker ends, what is left of
//!   its group is killed too.
//! - The parent notices a dead worker even while a task's child holds the worker's
//!   socket: it checks the process itself at least every 50 ms.
//! - Workers die with their parent: each asks for `SIGKILL` on its parent's death
//!   (`PR_SET_PDEATHSIG`) and exits at once if the parent is already gone. The
//!   kernel sends that signal when the parent *thread* exits, so spawned workers are
//!   started from threads that live as long as they should: a pool's driver thread
//!   starts its own worker, and [`Process`] uses a launcher thread that lives as
//!   long as the process. Fork-pool workers die with their fork server, which dies
//!   with the pool's process.

mod child;
mod error;
mod launch;
mod task;
mod waiting;
mod wire;
mod worker;
mod zygote;

pub use child::Process;
pub use error::TaskError;
pub use worker::{init, WORKER_ENV};

pub(crate) use error::{ItemFailure, MessageFailure};
pub(crate) use launch::Worker;
pub(crate) use task::{run_chunk, ItemOutcome, TaskFn, TaskOffsets};
pub(crate) use waiting::{lock, wait_until};
pub(crate) use wire::{decode, encode, Lost};
pub(crate) use zygote::ForkServer;

/// How worker processes are started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartMethod {
    /// Re-execute the current executable; needs [`init`] at the top of `main`.
    #[default]
    Spawn,
    /// `fork()`, only from a single-threaded process (checked; see the module docs).
    Fork,
}
