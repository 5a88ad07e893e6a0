//! Why a queue operation, create or open did not succeed.

use std::time::Duration;

use crate::format::objects::{ParamsError, MAX_MEMBERS};

/// Why a queue operation did not complete.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use shmarray::{queue::QueueError, Queue};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q = Queue::<u64>::create(&format!("doc-queue-error-{}", std::process::id()), 2)?;
/// assert!(matches!(q.try_get(), Err(QueueError::Empty)));
/// for i in 0..q.capacity() as u64 {
///     q.put(i)?;
/// }
/// assert!(matches!(q.try_put(9), Err(QueueError::Full)));
/// let t = Duration::from_millis(10);
/// assert!(matches!(q.put_timeout(9, t), Err(QueueError::Timeout(d)) if d == t));
/// q.close();
/// assert_eq!(q.get()?, 0); // a closed queue is drained first
/// while q.get().is_ok() {}
/// assert!(matches!(q.get(), Err(QueueError::Closed)));
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue was closed (for `get`: and is drained).
    #[error("the queue is closed")]
    Closed,
    /// `try_put` on a full queue.
    #[error("the queue is full")]
    Full,
    /// `try_get` on an empty queue.
    #[error("the queue is empty")]
    Empty,
    /// A timed operation gave up.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A byte message larger than the queue's maximum.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Message length.
        len: usize,
        /// The queue's maximum message size.
        max: usize,
    },
    /// More than 64 handles attached at once (each handle is one member of the
    /// queue; an entry whose dead member still holds unfinished claims is not
    /// reused until they are recovered).
    #[error("more than {MAX_MEMBERS} handles attached to the queue")]
    TooManyProcesses,
    /// A queue call made from inside a `put_with`/`get_with` closure through the
    /// same handle. A handle has one operation in flight at a time (its claims are
    /// what lets others recover them if this process dies); use another handle.
    #[error("queue call from inside a put_with/get_with closure of the same handle")]
    Reentrant,
    /// The segment is not a queue of this kind (another object, or a queue of
    /// another item type or kind).
    #[error("segment {name:?} is not {expected}")]
    NotAQueue {
        /// Segment name.
        name: String,
        /// What was expected.
        expected: String,
    },
    /// The capacity or item size is out of range (nothing was created).
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// Creating or opening the segment failed (including a queue file whose
    /// parameters are inconsistent: `Corrupt`).
    #[error(transparent)]
    Segment(#[from] crate::error::Error),
}
