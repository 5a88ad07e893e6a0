//! # shmarray
//!
//! Zero-copy numeric arrays shared between processes.
//!
//! A [`SharedArray<T, D>`] is a named shared-memory segment (a file in `/dev/shm`)
//! that describes itself: it *is* a valid `.npy` file whose data starts on a page
//! boundary, followed by a control block (creator, state, lock, counters). Any
//! process can attach by name and get a checked `ndarray` view; numpy maps the same
//! bytes with `numpy.load(path, mmap_mode="r+")`.
//!
//! ```no_run
//! use ndarray::Ix2;
//! use shmarray::SharedArray;
//!
//! # fn main() -> Result<(), shmarray::Error> {
//! // process A: create (owner: the name is removed when `frames` is dropped)
//! let mut frames = SharedArray::<f64, Ix2>::create("frames", (1024, 1024))?;
//! frames.view_mut()?.fill(1.0);
//!
//! // process B: attach by name, checked against the header
//! let seen = SharedArray::<f64, Ix2>::open("frames")?;
//! assert_eq!(seen.view().sum(), 1024.0 * 1024.0);
//! # Ok(()) }
//! ```
//!
//! Layers, top to bottom: [`array`](mod@array) (typed views), [`header`] (the format, pure),
//! [`segment`] (files and mappings), `sys` (the only libc/nix calls), [`error`].
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod array;
#[doc(hidden)]
pub mod demo;
pub mod element;
pub mod error;
pub mod header;
pub mod objects;
pub mod pool;
pub mod process;
pub mod queue;
pub mod segment;
pub mod sync;
mod sys;

pub use array::{inspect, remove, ArrayGuard, Options, Order, SegmentInfo, SharedArray};
pub use element::Element;
pub use error::{Corruption, Error, NameProblem, Result};
pub use header::Dtype;
pub use objects::{Barrier, Event, SharedAtomicI64, SharedAtomicU32, SharedAtomicU64, SharedValue};
#[cfg(not(loom))]
pub use queue::{ByteQueue, Queue, QueueError};
pub use segment::{Namespace, Segment};
pub use sync::{LockError, LockResult};
