//! Bounded multi-producer multi-consumer queues between processes, each in a
//! segment of its own kind ([`Queue<T>`](crate::Queue) for numbers,
//! [`ByteQueue`](crate::ByteQueue) for byte messages; both at the crate root), and
//! their error, [`QueueError`]. What users need to know is in
//! [`Queue`](crate::Queue)'s documentation.
//!
//! ```
//! use shmarray::{queue::QueueError, Queue};
//! let q = Queue::<u64>::create_anonymous(2)?;
//! q.put(1)?;
//! q.put(2)?;
//! assert!(matches!(q.try_put(3), Err(QueueError::Full)));
//! # Ok::<(), QueueError>(())
//! ```
//!
//! <!-- Internal layout:
//! | file | what |
//! |---|---|
//! | `ring.rs` | the slot ring: stamps, claims, intents, recovery of dead members' slots, the rule for reusing member entries; pure, model checked with loom |
//! | `raw.rs` | the untyped queue: create/open with checked geometry, membership (rejoin after `fork`), the blocking claim loop, put/get batches |
//! | `typed.rs`, `bytes.rs` | the two front ends |
//! | `error.rs` | `QueueError` |
//! -->

mod ring;

#[cfg(not(loom))]
pub(crate) mod bytes;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod raw;
#[cfg(not(loom))]
pub(crate) mod typed;

#[cfg(not(loom))]
pub use error::QueueError;
#[cfg(all(test, not(loom)))]
use {bytes::ByteQueue, typed::Queue};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn send<T: Send>() {}

    #[test]
    fn handles_are_send() {
        send::<Queue<u64>>();
        send::<ByteQueue>();
    }
}
