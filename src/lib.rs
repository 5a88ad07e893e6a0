//! # shmarray
//!
//! Zero-copy numeric arrays shared between processes.
//!
//! A [`SharedArray<T, D>`] is a named shared-memory segment (a file in `/dev/shm`)
//! that describes itself: it *is* a valid `.npy` file whose data starts on a page
//! boundary, followed by a control block (object kind, creator, lock, counters). Any
//! process of the same user can attach by name and get a checked `ndarray` view;
//! numpy maps the same bytes with `numpy.load(path, mmap_mode="r+")`.
//!
//! ```no_run
//! use shmarray::{ndarray::Ix2, LockResultExt, SharedArray};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // process A: create (owner: the name is removed when `frames` is dropped)
//! let mut frames = SharedArray::<f64, Ix2>::create("frames", (1024, 1024))?;
//! frames.view_mut()?.fill(1.0);
//!
//! // process B: attach by name, checked against the header; update under the lock
//! // (if a holder died mid-update, reset the array first)
//! let seen = SharedArray::<f64, Ix2>::open("frames")?;
//! seen.lock().recover(|g| g.fill(0.0))?[[0, 0]] = 2.0;
//! # Ok(()) }
//! ```
//!
//! Layers, top to bottom (a lower layer never uses a higher one):
//!
//! | layer | what |
//! |---|---|
//! | pool, process | worker processes, a pool, in-place kernels over shared arrays |
//! | array, objects, queue | typed handles, each a segment *kind*: [`SharedArray`], [`SharedValue`], atomics, [`Event`], [`Barrier`], [`Queue`], [`ByteQueue`] |
//! | sync | the robust mutex, futex waits, the member table (liveness) |
//! | segment | exclusive create, checked attach, kinds, liveness, removal, `gc`, inspection |
//! | error, format | error enums; the segment format as pure code |
//! | sys | the one place that calls libc/nix |
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::undocumented_unsafe_blocks
)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "shmarray supports Linux only: it relies on /dev/shm, memfd, robust futexes and OFD locks"
);

mod array;
#[doc(hidden)]
pub mod demo;
mod element;
mod error;
mod format;
mod objects;
#[cfg(feature = "pool")]
mod pool;
mod primitive;
#[cfg(feature = "pool")]
mod process;
mod queue;
mod segment;
mod sync;
mod sys;

pub use array::{ArrayGuard, SharedArray};
pub use element::Element;
pub use error::{Corruption, Error, NameProblem, Result};
pub use format::control::{ControlError, ControlFields, ObjectKind};
pub use format::dtype::{Dtype, UnknownDtype};
pub use format::npy::{HeaderError, Layout, NpyHeader};
pub use format::objects::ParamsError;
pub use ndarray;
pub use objects::{
    Barrier, BarrierOpenError, Event, SharedAtomicI64, SharedAtomicU32, SharedAtomicU64,
    SharedValue, ValueGuard,
};
#[cfg(feature = "pool")]
pub use pool::{as_completed, ArrayHandle, Imap, MapResult, Partition, Pool, TaskFuture};
#[cfg(feature = "pool")]
pub use process::{init, Process, StartMethod, TaskError, WORKER_ENV};
#[cfg(not(loom))]
pub use queue::{ByteQueue, Queue, QueueError};
pub use segment::{
    collect_garbage, export_npy, find_garbage, inspect, remove, GcReport, Liveness, Namespace,
    Options, SegmentInfo, Usage, DIR_ENV,
};
pub use sync::{
    BarrierError, LockError, LockFailure, LockResult, LockResultExt, RobustGuard, TimedOut,
};

/// Every Rust block of the README compiles (or, where it says so, fails to compile
/// with the error it names): the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Pure format code for the fuzz target (`fuzz/`). Not part of the API: no
/// stability promise.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::format::describe::{describe_bytes, DescribeError, Description};
    pub use crate::format::npy::{build_header, parse_header, parse_preamble};
    pub use crate::format::objects::QueueGeometry;
}
