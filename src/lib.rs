//! # shmarray
//!
//! Zero-copy numeric arrays shared between processes, for Rust and numpy: what
//! Python's `multiprocessing` (Process, Pool, Queue, Value, Event, Barrier,
//! `shared_memory`) gives Python users, with typed `ndarray` views, locks that
//! survive a holder killed with `kill -9`, and files in a shared directory treated
//! as hostile input. Linux only.
//!
//! A **segment** is a named file in `/dev/shm` that describes itself: it *is* a
//! valid `.npy` file whose data starts on a page boundary, followed by a control
//! block (object kind, creator, lock, counters; `FORMAT.md` specifies it). Any
//! process of the same user attaches by name and gets a checked view; numpy maps the
//! same bytes with `numpy.load(path, mmap_mode="r+")`. Every example below runs as a
//! doctest (`cargo test --doc`).
//!
//! The [`guide`] explains it all in chapters whose examples run the same way: start
//! with [getting started](guide::ch01_getting_started).
//!
//! ## Arrays
//! [`SharedArray<T, D>`] (with [`Options`] and [`Namespace`] for where and how):
//! `view`/`view_mut` for the only handle of a segment in a process, `lock` to share.
//!
//! ```
//! use shmarray::{ndarray::Ix2, LockResultExt, SharedArray};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let name = format!("doc-frames-{}", std::process::id());
//! // process A: create (owner: the name is removed when `frames` is dropped)
//! let mut frames = SharedArray::<f64, Ix2>::create(&name, (64, 64))?;
//! frames.view_mut()?.fill(1.0);
//! drop(frames.view()?); // a direct view claims the segment for this handle
//!
//! // process B would attach by name, checked against the header; here a second
//! // handle in the same process shows that a claimed segment is not opened twice:
//! assert!(matches!(
//!     SharedArray::<f64, Ix2>::open(&name),
//!     Err(shmarray::Error::InUse { .. })
//! ));
//! // ...and that the robust lock is the way to share (repairing if a holder died).
//! let mut g = frames.lock().recover(|g| g.fill(0.0))?;
//! g[[0, 0]] = 2.0;
//! assert_eq!(g.sum(), 64.0 * 64.0 + 1.0);
//! # Ok(()) }
//! ```
//!
//! ## Element types
//! Numbers (`i8`…`u64`, `f32`, `f64`), [`Bool`] (numpy `bool`: any non-zero byte
//! is true, and no Rust `bool` is ever made from shared bytes), `half::f16`
//! (feature `f16`), `Complex<f32>`/`Complex<f64>` ([`num_complex`]), and records
//! declared with [`record!`]: a `#[repr(C)]` struct that numpy sees as a
//! structured dtype, its fields checked against the header at open.
//!
//! ```
//! use shmarray::{ndarray::Ix1, num_complex::Complex, record, Bool, SharedArray};
//! record! {
//!     #[derive(Debug, Default)]
//!     pub struct Particle { pub x: f32, pub y: f32, pub mass: f64 }
//! }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let n = |s: &str| format!("doc-{s}-{}", std::process::id());
//! // numpy: np.load(path, mmap_mode="r+") has dtype [('x', '<f4'), ('y', '<f4'), ('mass', '<f8')]
//! let mut ps = SharedArray::<Particle, Ix1>::create(&n("particles"), 1000)?;
//! ps.view_mut()?[0].mass = 2.0;
//! let mut mask = SharedArray::<Bool, Ix1>::create(&n("mask"), 1000)?;
//! mask.view_mut()?[3] = Bool::TRUE;
//! let _fft = SharedArray::<Complex<f64>, Ix1>::create(&n("fft"), 1024)?;
//! assert!(mask.view()?[3].get());
//! # Ok(()) }
//! ```
//!
//! ## Values, atomics, events, barriers
//! [`SharedValue`] (Python's `Value` with `get_lock()`), [`SharedAtomicU64`] and its
//! siblings, [`Event`], [`Barrier`] — each its own segment kind:
//!
//! ```
//! use std::sync::atomic::Ordering;
//! use shmarray::{Barrier, Event, SharedAtomicU64, SharedValue};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let n = |s: &str| format!("doc-{s}-{}", std::process::id());
//! let total = SharedValue::<f64>::create(&n("total"), 0.0)?;
//! *total.lock().map_err(shmarray::LockError::into_failure)? += 2.5;
//! let hits = SharedAtomicU64::create(&n("hits"), 0)?;
//! hits.fetch_add(1, Ordering::Relaxed);
//! let ready = Event::create(&n("ready"))?;
//! ready.set();
//! ready.wait();
//! let b = Barrier::create(&n("barrier"), 1)?; // one party: passes at once
//! assert!(b.wait()?);
//! assert_eq!((total.get().unwrap(), hits.load(Ordering::Relaxed)), (2.5, 1));
//! # Ok(()) }
//! ```
//!
//! ## Queues
//! [`Queue<T>`] for numbers and [`ByteQueue`] for byte messages: bounded, MPMC,
//! between processes, recovering from members killed mid-operation.
//!
//! ```
//! use shmarray::{ByteQueue, Queue};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let jobs = Queue::<u64>::create(&format!("doc-jobs-{}", std::process::id()), 16)?;
//! jobs.put_slice(&[1, 2, 3])?;
//! let mut got = [0u64; 8];
//! assert_eq!(jobs.get_into(&mut got)?, 3);
//! let fruit = ByteQueue::create(&format!("doc-fruit-{}", std::process::id()), 4, 64)?;
//! fruit.put(b"apple")?;
//! assert_eq!(fruit.get_with(|m| m.len())?, 5);
//! # Ok(()) }
//! ```
//!
//! ## Maps and lists
//! [`SharedMap<K, V>`] and [`SharedVec<T>`]: Python's `Manager().dict()` and
//! `.list()` without a server process, each one segment, safe under many
//! processes at once and repaired after a process killed mid-operation;
//! [`FixedStr`] for string keys.
//!
//! ```
//! use shmarray::{FixedStr, SharedMap, SharedVec};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let d = SharedMap::<FixedStr<16>, i64>::create(&format!("doc-d-{}", std::process::id()), 100)?;
//! d.upsert(FixedStr::new("hits")?, 0, |n| *n += 1)?;
//! let l = SharedVec::<f64>::create(&format!("doc-l-{}", std::process::id()), 10)?;
//! l.push(0.5)?;
//! assert_eq!((d.get(&FixedStr::new("hits")?)?, l.to_vec()?), (Some(1), vec![0.5]));
//! # Ok(()) }
//! ```
//!
//! ## Processes and the pool
//! [`Process`] and [`Pool`] run plain `fn`s in worker processes; kernels work in
//! place on disjoint parts of a shared array ([`Pool::for_each_chunk`],
//! [`ArrayHandle`] for arrays as task arguments). Call [`init`] first in `main`.
//!
//! ```
//! use shmarray::ndarray::{ArrayViewMut1, Axis, Ix1};
//! use shmarray::{Pool, SharedArray};
//!
//! fn square(x: u64) -> u64 { x * x }
//! fn double(mut part: ArrayViewMut1<'_, f64>) { part *= 2.0 }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     shmarray::init(); // in a worker, this runs the worker loop and exits
//!     let pool = Pool::new(2)?;
//!     assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
//!     let mut a = SharedArray::<f64, Ix1>::create(&format!("doc-pool-{}", std::process::id()), 1000)?;
//!     a.view_mut()?.fill(1.0);
//!     pool.for_each_chunk(&a, Axis(0), double)?;
//!     assert_eq!(a.view()?.sum(), 2000.0);
//!     Ok(())
//! }
//! ```
//!
//! ## Huge pages
//! [`Options::huge_pages`] with [`HugePages::Prefer`] or [`HugePages::Require`] puts
//! a segment on hugetlbfs or a THP tmpfs found in the mount table (or an
//! `MFD_HUGETLB` memfd), so a fresh process attaching it faults 2 MiB pages, not
//! 4 KiB ones; [`Backing`] says what a segment got, [`huge_page_support`] what the
//! machine offers. Opening needs nothing extra:
//!
//! ```
//! use shmarray::{HugePages, Options, PageKind, SharedArray};
//! # fn main() -> Result<(), shmarray::Error> {
//! let name = format!("doc-huge-{}", std::process::id());
//! let opts = Options::new().huge_pages(HugePages::Prefer);
//! let a = SharedArray::<f32, ndarray::Ix1>::create_with(&opts, &name, 1 << 20)?;
//! // Huge pages where this machine has them; else base pages, and why.
//! assert!(a.backing().is_huge() || a.backing().fallback.is_some());
//! let b = SharedArray::<f32, ndarray::Ix1>::open(&name)?;
//! assert_eq!(b.backing().kind == PageKind::Base, !a.backing().is_huge());
//! # Ok(()) }
//! ```
//!
//! ## Inspection and clean-up
//! [`inspect`] (read with `pread` only, any kind, any owner), [`collect_garbage`] /
//! [`find_garbage`] (what `shmarray gc` does), [`export_npy`], [`remove`]:
//!
//! ```
//! use shmarray::{inspect, Namespace, ObjectKind, SharedAtomicU32, Usage};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let name = format!("doc-inspect-{}", std::process::id());
//! let _flag = SharedAtomicU32::create(&name, 7)?;
//! let info = inspect(&Namespace::default_dir()?, &name)?;
//! assert_eq!((info.kind(), info.usage), (ObjectKind::Atomic, Usage::InUse));
//! let mut npy = Vec::new();
//! shmarray::export_npy(&Namespace::default_dir()?, &name, &mut npy)?;
//! assert_eq!(&npy[..6], b"\x93NUMPY");
//! # Ok(()) }
//! ```
//!
//! ## Layers
//! Top to bottom; a lower layer never uses a higher one, and every module is
//! private (each item has one path, at the crate root):
//!
//! | layer | what |
//! |---|---|
//! | pool, process | worker processes, a pool, in-place kernels over shared arrays (feature `pool`, default) |
//! | array, objects, queue | typed handles, each a segment *kind*: [`SharedArray`], [`SharedValue`], atomics, [`Event`], [`Barrier`], [`Queue`], [`ByteQueue`], [`SharedMap`], [`SharedVec`] |
//! | sync | the robust mutex ([`LockError`], [`LockFailure`]), futex waits, the member table (liveness) |
//! | segment | exclusive create, checked attach, kinds, liveness ([`Liveness`], [`Usage`]), removal, `gc`, inspection |
//! | error, format | [`Error`] and friends; the segment format as pure code ([`Dtype`], [`ObjectKind`], [`Layout`]) |
//! | sys | the one place that calls libc/nix |
//!
//! The `shmarray` command (feature `cli`, default) lists, inspects and cleans up
//! segments; the guide's [CLI chapter](guide::ch10_cli) documents it.
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
#[cfg(feature = "mpi")]
mod mpi;
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

#[cfg(feature = "mpi")]
pub use self::mpi::{write_npy, DistArray, MpiError, NodeArray, NodeComm, PRETEND_NODES_ENV};
/// The MPI bindings (rsmpi) the [`NodeComm`] communicators are made of (feature `mpi`).
#[cfg(feature = "mpi")]
pub use ::mpi as rsmpi;
pub use array::{ArrayGuard, ArrayReadGuard, ReadResult, SharedArray};
pub use element::{Bool, Element, Pad, RecordMember};
pub use error::{Corruption, DirectoryProblem, Error, NameProblem, Result};
pub use format::control::{ControlError, ControlFields, ObjectKind};
pub use format::descr::{Descr, DescrField};
pub use format::dtype::{Dtype, FieldType, RecordDescr, RecordField, UnknownDtype, MAX_FIELD_DIMS};
pub use format::npy::{HeaderError, Layout, NpyHeader};
pub use format::objects::ParamsError;
#[cfg(feature = "f16")]
/// The `half` crate whose `f16` is an element type (feature `f16`).
pub use half;
pub use ndarray;
/// The `num-complex` crate whose `Complex<f32>`/`Complex<f64>` are element types.
pub use num_complex;
pub use objects::{
    Barrier, BarrierOpenError, BytesMap, Event, FixedStr, FixedStrError, MapError, SharedAtomicI64,
    SharedAtomicU32, SharedAtomicU64, SharedMap, SharedValue, SharedVec, ValueGuard, VecError,
};
#[cfg(feature = "pool")]
pub use pool::{as_completed, ArrayHandle, Imap, MapResult, Partition, Pool, TaskFuture};
#[cfg(feature = "pool")]
pub use process::{init, Process, StartMethod, TaskError, WORKER_ENV};
#[cfg(not(loom))]
pub use queue::{ByteQueue, Queue, QueueError};
pub use segment::{
    collect_garbage, export_npy, find_garbage, huge_page_support, inspect, remove, Backing,
    Contents, Directory, GcReport, HugeMount, HugePageSupport, HugePages, HugePool, Liveness,
    MapContents, Namespace, Options, PageKind, ReaderInfo, RefusedDirectory, RwLockInfo,
    SegmentInfo, Usage, VecContents, DIR_ENV, HUGE_DIR_ENV,
};
pub use sync::{
    BarrierError, LockError, LockFailure, LockResult, LockResultExt, RobustGuard, TimedOut,
};

/// Every Rust block of the README compiles and runs (or, where it says so, fails to
/// compile): the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The guide: chapters from `docs/guide/*.md`, rendered here and run by `cargo test`.
// Each chapter is a doc-only module made of its markdown file, so every Rust block in
// it is a doctest (`cargo test --doc`); the MPI chapter's need `--features mpi`.
// Links between chapters are written for GitHub (`NN-topic.md`) and pointed at these
// modules by `docs/guide/links.md`, included first (a markdown link label's first
// definition wins).
#[cfg(any(doc, doctest))]
#[doc = include_str!("../docs/guide/links.md")]
#[doc = include_str!("../docs/guide/README.md")]
pub mod guide {
    macro_rules! chapter {
        ($(#[$attr:meta])* $name:ident, $file:literal) => {
            $(#[$attr])*
            #[doc = include_str!("../docs/guide/links.md")]
            #[doc = include_str!(concat!("../docs/guide/", $file))]
            pub mod $name {}
        };
    }
    chapter!(ch01_getting_started, "01-getting-started.md");
    chapter!(ch02_arrays_and_views, "02-arrays-and-views.md");
    chapter!(ch03_locks_and_safety, "03-locks-and-safety.md");
    chapter!(ch04_processes_and_pool, "04-processes-and-pool.md");
    chapter!(ch05_queues, "05-queues.md");
    chapter!(ch06_maps_and_vecs, "06-maps-and-vecs.md");
    chapter!(ch07_huge_pages, "07-huge-pages.md");
    chapter!(ch08_python, "08-python.md");
    // Its Rust blocks compile with the `mpi` feature only, so `cargo test --doc`
    // runs them under `--features mpi`; `cargo doc` renders the chapter either way.
    chapter!(
        #[cfg(any(all(doc, not(doctest)), feature = "mpi"))]
        ch09_mpi,
        "09-mpi.md"
    );
    chapter!(ch10_cli, "10-cli.md");
    chapter!(ch11_hostile_conditions, "11-hostile-conditions.md");
    chapter!(ch12_benchmarks, "12-benchmarks.md");
    chapter!(ch13_design_notes, "13-design-notes.md");
}

/// What [`record!`] expands to refers to these. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use bytemuck;
    pub use core;
}

/// Pure format code for the fuzz target (`fuzz/`). Not part of the API: no
/// stability promise.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::format::containers::{fmix64, hash_key, MapGeometry};
    pub use crate::format::describe::{describe_bytes, DescribeError, Description};
    pub use crate::format::npy::{build_header, parse_header, parse_preamble};
    pub use crate::format::objects::QueueGeometry;
}
