//! Why a task produced no result: [`TaskError`], and the failures a worker reports
//! over the wire before they become one.

use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a task produced no result.
///
/// # Examples
/// A panic in a task is the task's error, not the caller's panic:
/// ```
/// use shmarray::pool::{Pool, TaskError};
///
/// fn invert(x: i64) -> i64 {
///     assert!(x != 0, "zero has no inverse here");
///     100 / x
/// }
///
/// fn main() -> Result<(), TaskError> {
///     shmarray::init();
///     let pool = Pool::new(1)?;
///     assert_eq!(pool.submit(invert, 4)?.result()?, 25);
///     match pool.submit(invert, 0)?.result() {
///         Err(TaskError::Panicked { message, .. }) => assert!(message.contains("no inverse")),
///         other => panic!("{other:?}"),
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked in the worker.
    #[error("task {task} panicked: {message}")]
    Panicked {
        /// Which task: its index in the batch (0 for single tasks).
        task: usize,
        /// The panic message.
        message: String,
    },
    /// The worker died while running the task (killed by a signal, or exited). A
    /// task is reported so only if the worker had begun it; one handed to a worker
    /// that died before beginning it runs on another worker instead.
    #[error("worker pid {pid} died running task {task} ({})", describe_exit(*signal, *code))]
    WorkerDied {
        /// Which task.
        task: usize,
        /// The worker's pid.
        pid: u32,
        /// The signal that killed it, if any.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        code: Option<i32>,
    },
    /// The task never began: every worker it was handed to in turn died before
    /// beginning it (each was replaced). Only when something kills new workers as
    /// fast as they start; the task did not run.
    #[error("task {task} never began: {workers} workers in a row died before beginning it")]
    NotStarted {
        /// Which task.
        task: usize,
        /// How many workers died holding it.
        workers: u32,
    },
    /// No result within the timeout (the task keeps running).
    #[error("no result within {0:?}")]
    Timeout(Duration),
    /// The task was cancelled.
    #[error("task {task} was cancelled")]
    Cancelled {
        /// Which task.
        task: usize,
    },
    /// Arguments or results could not be serialised or deserialised.
    #[error("(de)serialisation failed: {message}")]
    Serialization {
        /// What the serialiser said.
        message: String,
    },
    /// The worker sent something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The worker does not run the same code as this process: a different
    /// executable, or a different file holding this crate's code (a crate inside a
    /// shared library or Python extension is not what `/proc/self/exe` runs).
    #[error("the worker runs different code: this process has {parent}, the worker {worker}")]
    DifferentExecutable {
        /// This process's executable and the object holding this crate's code.
        parent: String,
        /// The worker's.
        worker: String,
    },
    /// The task's function does not lie in the loaded object (executable or shared
    /// library) that holds this crate, so its address cannot name it in a worker.
    #[error("function at {address:#x} lies in {}, not in {} with this crate: it cannot be sent to a worker",
        object.as_deref().unwrap_or("no known object"), expected.as_deref().unwrap_or("an unknown object"))]
    ForeignFunction {
        /// The function's (or trampoline's) address in the process that checked it.
        address: usize,
        /// The object it lies in, if any.
        object: Option<String>,
        /// The object that holds this crate.
        expected: Option<String>,
    },
    /// `fork` was refused: the process has other threads (or their number could not
    /// be read), and a forked child of a multithreaded process may find any lock
    /// held forever. Use the spawn start method, or fork before starting threads.
    #[error("refusing to fork a process with {} threads; use StartMethod::Spawn or fork before starting threads",
        threads.map_or("an unknown number of".to_string(), |n| n.to_string()))]
    NotSingleThreaded {
        /// How many threads the process has, if known.
        threads: Option<usize>,
    },
    /// A worker ended before completing the handshake.
    #[error("worker pid {pid} failed to start ({}); does main() call shmarray::init() first?",
        describe_exit(*signal, *code))]
    StartFailed {
        /// The worker's pid.
        pid: u32,
        /// The signal that killed it, if any.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        code: Option<i32>,
    },
    /// Starting or talking to a worker failed.
    #[error("worker I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The pool was shut down before the task ran.
    #[error("the pool is closed")]
    PoolClosed,
    /// Only named shared arrays can be sent to workers (anonymous ones have no name
    /// to attach by).
    #[error("only named shared arrays can be sent to workers")]
    AnonymousArray,
    /// A kernel that writes was given a read-only array.
    #[error("shared array {name:?} is read-only")]
    ReadOnlyArray {
        /// The segment name.
        name: String,
    },
    /// The axis does not exist for the array's number of dimensions.
    #[error("axis {axis} out of range for {ndim} dimensions")]
    AxisOutOfRange {
        /// The axis asked for.
        axis: usize,
        /// The array's number of dimensions.
        ndim: usize,
    },
    /// The segment name no longer refers to the file the handle was made for (it
    /// was removed, or removed and created anew).
    #[error("shared array {name:?} was removed or replaced since the handle was made")]
    SegmentReplaced {
        /// The segment name.
        name: String,
    },
    /// A shared array could not be attached (not found, wrong type, ...).
    #[error("cannot attach shared array {name:?}: {reason}")]
    Attach {
        /// The segment name.
        name: String,
        /// Why (the attach error's message).
        reason: String,
    },
}

pub(crate) fn describe_exit(signal: Option<i32>, code: Option<i32>) -> String {
    match (signal, code) {
        (Some(s), _) => format!("signal {s}"),
        (None, Some(c)) => format!("exit code {c}"),
        _ => "unknown".to_string(),
    }
}

impl TaskError {
    /// The same failure, attributed to input `task` (a whole chunk fails together).
    pub(crate) fn clone_for(&self, task: usize) -> TaskError {
        use TaskError as E;
        match self {
            E::WorkerDied {
                pid, signal, code, ..
            } => E::WorkerDied {
                task,
                pid: *pid,
                signal: *signal,
                code: *code,
            },
            E::NotStarted { workers, .. } => E::NotStarted {
                task,
                workers: *workers,
            },
            E::Cancelled { .. } => E::Cancelled { task },
            E::Panicked { message, .. } => E::Panicked {
                task,
                message: message.clone(),
            },
            E::Timeout(d) => E::Timeout(*d),
            E::Serialization { message } => E::Serialization {
                message: message.clone(),
            },
            E::Protocol(s) => E::Protocol(s.clone()),
            E::DifferentExecutable { parent, worker } => E::DifferentExecutable {
                parent: parent.clone(),
                worker: worker.clone(),
            },
            E::ForeignFunction {
                address,
                object,
                expected,
            } => E::ForeignFunction {
                address: *address,
                object: object.clone(),
                expected: expected.clone(),
            },
            E::NotSingleThreaded { threads } => E::NotSingleThreaded { threads: *threads },
            E::StartFailed { pid, signal, code } => E::StartFailed {
                pid: *pid,
                signal: *signal,
                code: *code,
            },
            E::Io(e) => E::Io(io::Error::new(e.kind(), e.to_string())),
            E::PoolClosed => E::PoolClosed,
            E::AnonymousArray => E::AnonymousArray,
            E::ReadOnlyArray { name } => E::ReadOnlyArray { name: name.clone() },
            E::AxisOutOfRange { axis, ndim } => E::AxisOutOfRange {
                axis: *axis,
                ndim: *ndim,
            },
            E::SegmentReplaced { name } => E::SegmentReplaced { name: name.clone() },
            E::Attach { name, reason } => E::Attach {
                name: name.clone(),
                reason: reason.clone(),
            },
        }
    }
}

/// Why one input of a chunk has no result (travels from the worker per input).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum ItemFailure {
    /// The function panicked with this message.
    Panicked(String),
    /// A shared array's name no longer refers to the handle's file.
    Replaced { name: String },
    /// A shared array could not be attached.
    Attach { name: String, reason: String },
}

impl ItemFailure {
    pub(crate) fn into_error(self, task: usize) -> TaskError {
        match self {
            ItemFailure::Panicked(message) => TaskError::Panicked { task, message },
            ItemFailure::Replaced { name } => TaskError::SegmentReplaced { name },
            ItemFailure::Attach { name, reason } => TaskError::Attach { name, reason },
        }
    }

    /// The wire form of an error met while attaching an array in a worker.
    pub(crate) fn from_error(e: TaskError) -> ItemFailure {
        match e {
            TaskError::SegmentReplaced { name } => ItemFailure::Replaced { name },
            TaskError::Attach { name, reason } => ItemFailure::Attach { name, reason },
            other => ItemFailure::Panicked(other.to_string()),
        }
    }
}

/// Why a whole task message failed in the worker (every input of the chunk).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum MessageFailure {
    /// Inputs could not be decoded or outcomes encoded.
    Serialization(String),
    /// The function or trampoline does not lie in this crate's object.
    ForeignFunction {
        address: usize,
        object: Option<String>,
        expected: Option<String>,
    },
    /// The trampoline itself panicked (outside the per-input catch).
    Panicked(String),
}

impl MessageFailure {
    pub(crate) fn into_error(self, task: usize) -> TaskError {
        match self {
            MessageFailure::Serialization(message) => TaskError::Serialization { message },
            MessageFailure::ForeignFunction {
                address,
                object,
                expected,
            } => TaskError::ForeignFunction {
                address,
                object,
                expected,
            },
            MessageFailure::Panicked(message) => TaskError::Panicked { task, message },
        }
    }
}
