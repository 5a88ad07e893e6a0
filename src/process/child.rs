//! [`Process`]: one worker process running one task.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::TaskError;
use super::launch::Worker;
use super::task::{ItemOutcome, TaskFn};
use super::wire::{decode, encode, Lost};
use super::StartMethod;
use crate::sync::Wait;

/// One worker process running one task: Python's `Process(target=f, args=(a,))`.
///
/// The worker runs in its own process group and dies with this process; see the
/// pool's docs ([`Pool`](crate::pool::Pool)) for what happens to processes its task
/// starts. Dropping it without [`join`](Process::join) gives the task 2 seconds,
/// then kills the process (and its process group) and reaps it.
///
/// # Examples
/// ```
/// use shmarray::Process;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), shmarray::pool::TaskError> {
///     shmarray::init(); // in the worker, this runs the task and exits
///     let p = Process::start(square, 7)?;
///     assert_ne!(p.pid(), std::process::id());
///     assert_eq!(p.join()?, 49);
///     Ok(())
/// }
/// ```
///
/// # Threads
/// `Send + Sync`.
#[must_use = "a Process is killed when dropped; join it to get the result"]
pub struct Process<R> {
    worker: Worker,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.worker.pid)
            .finish_non_exhaustive()
    }
}

impl<R: Serialize + DeserializeOwned> Process<R> {
    /// Starts `f(arg)` in a new process (spawn start method).
    ///
    /// # Errors
    /// As [`start_with`](Self::start_with).
    pub fn start<A: Serialize + DeserializeOwned>(
        f: fn(A) -> R,
        arg: A,
    ) -> Result<Process<R>, TaskError> {
        Self::start_with(StartMethod::Spawn, f, arg)
    }

    /// Starts `f(arg)` with the given start method.
    ///
    /// Spawned processes are started by a launcher thread that lives as long as
    /// this process (a worker is killed when the thread that started it ends), so a
    /// `Process` may outlive the thread that created it. Once that thread exists,
    /// this process is multithreaded and `Fork` is refused.
    ///
    /// # Errors
    /// [`TaskError::NotSingleThreaded`] for `Fork` when this process has other
    /// threads; [`TaskError::ForeignFunction`] if `f` does not lie in the object
    /// (executable or library) that holds this crate; [`TaskError::StartFailed`] /
    /// [`TaskError::DifferentExecutable`] if the worker does not come up;
    /// [`TaskError::Serialization`] if `arg` cannot be encoded; [`TaskError::Io`].
    pub fn start_with<A: Serialize + DeserializeOwned>(
        method: StartMethod,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<Process<R>, TaskError> {
        let task = TaskFn::unary(f).offsets()?;
        let payload = encode(std::slice::from_ref(&arg))
            .map_err(|message| TaskError::Serialization { message })?;
        let mut worker = match method {
            StartMethod::Spawn => Worker::spawn_detached()?,
            StartMethod::Fork => Worker::fork()?,
        };
        // A worker that is gone by now (its task can end it before `Exit` is sent,
        // or something killed it) was started all the same: `join` says how it
        // ended. Only a message that cannot be framed is an error here.
        match worker
            .send_task(1, task, &payload)
            .and_then(|()| worker.send_exit())
        {
            Ok(()) | Err(Lost::Closed | Lost::Timeout) => {}
            Err(Lost::Garbled(m)) => {
                worker.kill();
                return Err(TaskError::Protocol(m));
            }
        }
        Ok(Process {
            worker,
            _result: PhantomData,
        })
    }

    /// The worker's pid.
    pub fn pid(&self) -> u32 {
        self.worker.pid
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        !self.worker.has_ended()
    }

    /// Sends SIGTERM to the process.
    pub fn terminate(&self) {
        self.worker.terminate()
    }

    /// SIGKILLs the process and its process group (whatever its task started).
    ///
    /// ```
    /// use shmarray::{pool::TaskError, Process};
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms))
    /// }
    ///
    /// fn main() -> Result<(), TaskError> {
    ///     shmarray::init();
    ///     let mut p = Process::start(nap, 60_000)?;
    ///     assert!(p.is_alive());
    ///     p.kill();
    ///     match p.join() {
    ///         Err(TaskError::WorkerDied { signal, .. }) => assert_eq!(signal, Some(9)),
    ///         other => panic!("{other:?}"),
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn kill(&self) {
        self.worker.kill()
    }

    /// Waits for the result: the value, or why there is none (panic message, exit
    /// code, signal).
    ///
    /// # Errors
    /// [`TaskError::Panicked`], [`TaskError::WorkerDied`],
    /// [`TaskError::Serialization`], [`TaskError::ForeignFunction`].
    pub fn join(self) -> Result<R, TaskError> {
        self.join_within(None)
    }

    /// Like `join`, giving up with `Timeout` after `timeout` (the process is killed
    /// and reaped then, so nothing is left behind).
    ///
    /// # Errors
    /// As [`join`](Self::join), and [`TaskError::Timeout`].
    pub fn join_timeout(self, timeout: Duration) -> Result<R, TaskError> {
        self.join_within(Some(timeout))
    }

    fn join_within(mut self, timeout: Option<Duration>) -> Result<R, TaskError> {
        match self.worker.recv(Wait::optional(timeout)) {
            Ok((_, Ok(bytes))) => {
                let mut items: Vec<ItemOutcome<R>> =
                    decode(&bytes).map_err(|message| TaskError::Serialization { message })?;
                match items.pop() {
                    Some(Ok(r)) => Ok(r),
                    Some(Err(failure)) => Err(failure.into_error(0)),
                    None => Err(TaskError::Protocol("empty result".into())),
                }
            }
            Ok((_, Err(failure))) => Err(failure.into_error(0)),
            Err(Lost::Timeout) => {
                self.worker.kill();
                Err(TaskError::Timeout(timeout.unwrap_or_default()))
            }
            Err(Lost::Garbled(m)) => {
                self.worker.kill();
                Err(TaskError::Protocol(m))
            }
            Err(Lost::Closed) => Err(self.worker.death(0)),
        }
    }
}
