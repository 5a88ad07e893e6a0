//! Bounded multi-producer multi-consumer queues between processes, each in a
//! segment of its own kind ([`Queue<T>`] for numbers, [`ByteQueue`] for byte
//! messages). What users need to know is in [`Queue`]'s documentation.
//!
//! | file | what |
//! |---|---|
//! | `ring.rs` | the slot ring: stamps, claims, intents, recovery of dead members' slots, the rule for reusing member entries; pure, model checked with loom |
//! | `raw.rs` | the untyped queue: create/open with checked geometry, membership (rejoin after `fork`), the blocking claim loop, put/get batches |
//! | `typed.rs`, `bytes.rs` | the two front ends |
//! | `error.rs` | `QueueError` |

mod ring;

#[cfg(not(loom))]
mod bytes;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod raw;
#[cfg(not(loom))]
mod typed;

#[cfg(not(loom))]
pub use bytes::ByteQueue;
#[cfg(not(loom))]
pub use error::QueueError;
#[cfg(not(loom))]
pub use typed::Queue;

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
