//! The crate's errors as the exceptions of `pyshmarray._errors` (defined in
//! Python, so that they can subclass builtin exceptions such as `TimeoutError`,
//! `FileNotFoundError` and `queue.Empty` as well as `ShmarrayError`).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use shmarray::{BarrierError, BarrierOpenError, Error, LockFailure, QueueError};

/// The exception class `name` of `pyshmarray._errors`.
fn class<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let m = MODULE.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("pyshmarray._errors")?.unbind())
    })?;
    Ok(m.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// A `PyErr` of exception class `name` with message `msg`.
pub(crate) fn raise(name: &'static str, msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    Python::attach(|py| match class(py, name) {
        Ok(cls) => PyErr::from_type(cls, (msg,)),
        Err(e) => e,
    })
}

/// A plain `ShmarrayError`.
pub(crate) fn shm_error(msg: impl Into<String>) -> PyErr {
    raise("ShmarrayError", msg)
}

/// The message of an error with its sources.
fn message(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let more = c.to_string();
        if !s.contains(&more) {
            s.push_str(": ");
            s.push_str(&more);
        }
        src = c.source();
    }
    s
}

/// A segment error as the matching exception.
pub(crate) fn from_error(e: Error) -> PyErr {
    let msg = message(&e);
    let name = match &e {
        Error::NotFound { .. } | Error::DirectoryNotFound { .. } => "NotFoundError",
        Error::AlreadyExists { .. } => "AlreadyExistsError",
        Error::TypeMismatch { .. } | Error::KindMismatch { .. } => "TypeMismatchError",
        Error::InvalidName { .. } => "InvalidNameError",
        Error::PermissionDenied { .. }
        | Error::ForeignOwner { .. }
        | Error::InsecureMode { .. }
        | Error::DirectoryRefused { .. } => "PermissionDeniedError",
        Error::ReadOnly { .. } => "ReadOnlyError",
        Error::NoSpace { .. } => "NoSpaceError",
        Error::InUse { .. } => "InUseError",
        Error::Corrupt { .. } | Error::NotShmarray { .. } | Error::NotReady { .. } => {
            "CorruptError"
        }
        Error::ShapeOverflow { .. } => "ValueError",
        Error::CounterIndex { .. } => {
            return pyo3::exceptions::PyIndexError::new_err(msg);
        }
        _ => "ShmarrayError",
    };
    raise(name, msg)
}

/// A guard-free lock failure as the matching exception.
pub(crate) fn from_lock(e: LockFailure) -> PyErr {
    match e {
        LockFailure::Segment(e) => from_error(e),
        LockFailure::OwnerDied | LockFailure::NotRecoverable => {
            raise("NotRecoverableError", message(&e))
        }
        LockFailure::Timeout(_) | LockFailure::WouldBlock => raise("TimeoutError", message(&e)),
        LockFailure::Deadlock => raise("DeadlockError", message(&e)),
        e => shm_error(message(&e)),
    }
}

/// A queue error as the matching exception.
pub(crate) fn from_queue(e: QueueError) -> PyErr {
    match e {
        QueueError::Segment(e) => from_error(e),
        QueueError::Closed => raise("QueueClosed", message(&e)),
        QueueError::Full => raise("Full", message(&e)),
        QueueError::Empty => raise("Empty", message(&e)),
        QueueError::Timeout(_) => raise("TimeoutError", message(&e)),
        QueueError::NotAQueue { .. } => raise("TypeMismatchError", message(&e)),
        QueueError::TooLarge { .. } | QueueError::Params(_) => raise("ValueError", message(&e)),
        e => shm_error(message(&e)),
    }
}

/// A barrier error as the matching exception.
pub(crate) fn from_barrier(e: BarrierError) -> PyErr {
    match e {
        BarrierError::Timeout(_) => raise("BarrierTimeoutError", message(&e)),
        e => raise("BrokenBarrierError", message(&e)),
    }
}

/// A barrier create/open error as the matching exception.
pub(crate) fn from_barrier_open(e: BarrierOpenError) -> PyErr {
    match e {
        BarrierOpenError::Segment(e) => from_error(e),
        e => shm_error(message(&e)),
    }
}
