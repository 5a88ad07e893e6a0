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
//! Numbers (`i8`…`u64`, `f32`, `f64`), [`Bool`](element::Bool) (numpy `bool`: any non-zero byte
//! is true, and no Rust `bool` is ever made from shared bytes), `half::f16`
//! (feature `f16`), `Complex<f32>`/`Complex<f64>` ([`num_complex`]), and records
//! declared with [`record!`]: a `#[repr(C)]` struct that numpy sees as a
//! structured dtype, its fields checked against the header at open.
//!
//! ```
//! use shmarray::{element::Bool, ndarray::Ix1, num_complex::Complex, record, SharedArray};
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
//! [`SharedValue`] (Python's `Value` with `get_lock()`), the [atomics](atomic), [`Event`], [`Barrier`] — each its own segment kind:
//!
//! ```
//! use std::sync::atomic::Ordering;
//! use shmarray::{atomic::SharedAtomicU64, Barrier, Event, SharedValue};
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
//! [`FixedStr`](containers::FixedStr) for string keys.
//!
//! ```
//! use shmarray::{containers::FixedStr, SharedMap, SharedVec};
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
//! [`Process`] and [`Pool`](pool::Pool) run plain `fn`s in worker processes;
//! kernels work in place on disjoint parts of a shared array
//! ([`Pool::for_each_chunk`](pool::Pool::for_each_chunk),
//! [`ArrayHandle`](pool::ArrayHandle) for arrays as task arguments). Call [`init`]
//! first in `main`.
//!
//! ```
//! use shmarray::ndarray::{ArrayViewMut1, Axis, Ix1};
//! use shmarray::{pool::Pool, SharedArray};
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
//! [`Options::huge_pages`] with [`HugePages::Prefer`](huge::HugePages::Prefer) or
//! [`HugePages::Require`](huge::HugePages::Require) puts
//! a segment on hugetlbfs or a THP tmpfs found in the mount table (or an
//! `MFD_HUGETLB` memfd), so a fresh process attaching it faults 2 MiB pages, not
//! 4 KiB ones; [`Backing`](huge::Backing) says what a segment got,
//! [`huge_page_support`](huge::huge_page_support) what the machine offers. Opening
//! needs nothing extra:
//!
//! ```
//! use shmarray::huge::{HugePages, PageKind};
//! use shmarray::{ndarray::Ix1, Options, Segment, SharedArray};
//! # fn main() -> Result<(), shmarray::Error> {
//! let name = format!("doc-huge-{}", std::process::id());
//! let a: SharedArray<f32, Ix1> =
//!     Options::new().huge_pages(HugePages::Prefer).create(&name, 1 << 20)?;
//! // Huge pages where this machine has them; else base pages, and why.
//! assert!(a.backing().is_huge() || a.backing().fallback.is_some());
//! let b = SharedArray::<f32, Ix1>::open(&name)?;
//! assert_eq!(b.backing().kind == PageKind::Base, !a.backing().is_huge());
//! # Ok(()) }
//! ```
//!
//! ## Inspection and clean-up
//! In [`admin`]: [`inspect`](admin::inspect) (read with `pread` only, any kind,
//! any owner), [`collect_garbage`](admin::collect_garbage) /
//! [`find_garbage`](admin::find_garbage) (what `shmarray gc` does),
//! [`export_npy`](admin::export_npy), [`remove`](admin::remove); and
//! [`Segment::info`] for a handle's own segment:
//!
//! ```
//! use shmarray::admin::{inspect, Usage};
//! use shmarray::{atomic::SharedAtomicU32, format::ObjectKind, Namespace};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let name = format!("doc-inspect-{}", std::process::id());
//! let _flag = SharedAtomicU32::create(&name, 7)?;
//! let info = inspect(&Namespace::default_dir()?, &name)?;
//! assert_eq!((info.kind(), info.usage), (ObjectKind::Atomic, Usage::InUse));
//! let mut npy = Vec::new();
//! shmarray::admin::export_npy(&Namespace::default_dir()?, &name, &mut npy)?;
//! assert_eq!(&npy[..6], b"\x93NUMPY");
//! # Ok(()) }
//! ```
//!
//! ## Where things are
//! One path per item. At the root, what a newcomer types first: the handles
//! ([`SharedArray`], [`SharedValue`], [`Event`], [`Barrier`], [`Queue`],
//! [`ByteQueue`], [`SharedMap`], [`SharedVec`], [`Process`] and [`init`]), how
//! segments are made and what they all have ([`Options`], [`Namespace`],
//! [`Segment`], [`Create`], [`Open`]), and [`Error`], [`Result`], [`LockError`],
//! [`LockResultExt`], [`record!`]. Everything else by topic:
//!
//! | module | what |
//! |---|---|
//! | [`sync`] | lock guards ([`ArrayGuard`](sync::ArrayGuard), [`ValueGuard`](sync::ValueGuard)), lock and barrier errors, timeouts |
//! | [`atomic`] | [`SharedAtomicU32`](atomic::SharedAtomicU32), `U64`, `I64` |
//! | [`queue`] | [`QueueError`](queue::QueueError) |
//! | [`containers`] | [`FixedStr`](containers::FixedStr) keys, [`BytesMap`](containers::BytesMap), map and vec errors |
//! | [`pool`] | [`Pool`](pool::Pool), its futures and kernels, start methods, [`TaskError`](pool::TaskError) (feature `pool`, default) |
//! | [`admin`] | inspect, garbage collection, removal, `.npy` export; directories |
//! | [`huge`] | huge pages: asking, what a segment got, what the machine has |
//! | [`element`] | [`Element`](element::Element) and the element types beyond numbers |
//! | [`format`](mod@format) | the segment format: dtypes, descriptors, headers, control block |
//! | `mpi` | node-shared and distributed arrays over MPI (feature `mpi`) |
//!
//! Internally the crate is layered, top to bottom (a lower layer never uses a
//! higher one): pool and process; the handles (array, objects, queue); sync (robust
//! mutex, futex waits, member tables); segment (exclusive create, checked attach,
//! liveness, removal, inspection); format and error (pure code); sys (the one place
//! that calls libc/nix). `CONTRIBUTING.md` has the file map.
//!
//! The `shmarray` command (package `shmarray-cli` in this repository's workspace)
//! lists, inspects and cleans up segments; the guide's [CLI chapter](guide::ch10_cli)
//! documents it.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::undocumented_unsafe_blocks
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "shmarray supports Linux only: it relies on /dev/shm, memfd, robust futexes and OFD locks"
);

// Internal modules (the layers, top to bottom: pool/process, array/objects/queue,
// sync, segment, format/error, sys). Those that are also a topic of the API are
// public, with exactly their topic's items public in them.
mod array;
pub mod element;
mod error;
pub mod format;
#[cfg(feature = "mpi")]
#[cfg_attr(docsrs, doc(cfg(feature = "mpi")))]
pub mod mpi;
mod objects;
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub mod pool;
mod primitive;
#[cfg(feature = "pool")]
mod process;
pub mod queue;
mod segment;
pub mod sync;
mod sys;

// The headline types: what a newcomer types first.
pub use array::SharedArray;
pub use error::{Error, Result};
pub use objects::{Barrier, Event, SharedMap, SharedValue, SharedVec};
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub use process::{init, Process};
#[cfg(not(loom))]
pub use queue::{bytes::ByteQueue, typed::Queue};
pub use segment::{Create, Namespace, Open, Options, Segment};
pub use sync::mutex::{LockError, LockResultExt};

// The crates whose types are part of the API.
#[cfg(feature = "f16")]
#[cfg_attr(docsrs, doc(cfg(feature = "f16")))]
/// The `half` crate whose `f16` is an element type (feature `f16`).
pub use half;
pub use ndarray;
/// The `num-complex` crate whose `Complex<f32>`/`Complex<f64>` are element types.
pub use num_complex;

pub mod atomic {
    //! Atomic integers in shared memory, each its own segment: Python's
    //! `Value('Q', lock=False)` with atomic operations, and (`u32`) a futex word.
    //!
    //! ```
    //! use std::sync::atomic::Ordering;
    //! use shmarray::atomic::SharedAtomicU64;
    //! let hits = SharedAtomicU64::create(&format!("doc-atomic-{}", std::process::id()), 0)?;
    //! hits.fetch_add(1, Ordering::Relaxed);
    //! assert_eq!(hits.load(Ordering::Relaxed), 1);
    //! # Ok::<(), shmarray::Error>(())
    //! ```

    pub use crate::objects::{SharedAtomicI64, SharedAtomicU32, SharedAtomicU64};
}

pub mod containers {
    //! What the shared containers need besides [`SharedMap`](crate::SharedMap) and
    //! [`SharedVec`](crate::SharedVec): string keys ([`FixedStr`]), their errors, and
    //! [`BytesMap`], the map with key and value sizes chosen at run time.
    //!
    //! ```
    //! use shmarray::{containers::FixedStr, SharedMap};
    //! # fn main() -> Result<(), Box<dyn std::error::Error>> {
    //! let d = SharedMap::<FixedStr<16>, i64>::create(&format!("doc-containers-{}", std::process::id()), 100)?;
    //! d.upsert(FixedStr::new("hits")?, 0, |n| *n += 1)?;
    //! assert_eq!(d.get(&FixedStr::new("hits")?)?, Some(1));
    //! # Ok(()) }
    //! ```

    pub use crate::objects::{BytesMap, FixedStr, FixedStrError, MapError, VecError};
}

pub mod admin {
    //! Looking at segments from outside, as the `shmarray` command does: inspecting
    //! any segment with `pread` only ([`inspect`]), finding and collecting what dead
    //! processes left ([`find_garbage`], [`collect_garbage`]), removing by name
    //! ([`remove`]), writing `.npy` files ([`export_npy`], [`write_npy`]), and the
    //! directories a [`Namespace`](crate::Namespace) is made of.
    //!
    //! ```
    //! use shmarray::{admin, atomic::SharedAtomicU32, format::ObjectKind, Namespace};
    //! # fn main() -> Result<(), Box<dyn std::error::Error>> {
    //! let name = format!("doc-admin-{}", std::process::id());
    //! let _flag = SharedAtomicU32::create(&name, 7)?;
    //! let info = admin::inspect(&Namespace::default_dir()?, &name)?;
    //! assert_eq!((info.kind(), info.usage), (ObjectKind::Atomic, admin::Usage::InUse));
    //! assert!(!info.is_garbage()); // in use: `shmarray gc` leaves it alone
    //! # Ok(()) }
    //! ```

    pub use crate::error::{DirectoryProblem, NameProblem};
    pub use crate::segment::{
        collect_garbage, export_npy, find_garbage, inspect, remove, write_npy, Contents, Directory,
        GcReport, Liveness, MapContents, ReaderInfo, RefusedDirectory, RwLockInfo, SegmentInfo,
        Usage, VecContents, DIR_ENV,
    };
}

pub mod huge {
    //! Huge pages: asking for them ([`HugePages`], with
    //! [`Options::huge_pages`](crate::Options::huge_pages)), what a segment got
    //! ([`Backing`]), and what the machine offers ([`huge_page_support`]); and
    //! paying a mapping's page faults up front ([`Populate`], with
    //! [`SharedArray::populate`](crate::SharedArray::populate)).
    //!
    //! ```
    //! use shmarray::{huge::{Backing, HugePages}, ndarray::Ix1, Options, Segment, SharedArray};
    //! # fn main() -> Result<(), shmarray::Error> {
    //! let name = format!("doc-huge-mod-{}", std::process::id());
    //! let a: SharedArray<f32, Ix1> =
    //!     Options::new().huge_pages(HugePages::Prefer).create(&name, 1 << 20)?;
    //! let b: &Backing = a.backing();
    //! // Huge pages where this machine has them; else base pages, and why.
    //! assert!(b.is_huge() || b.fallback.is_some());
    //! # Ok(()) }
    //! ```

    pub use crate::segment::{
        huge_page_support, Backing, HugeMount, HugePageSupport, HugePages, HugePool, PageKind,
        HUGE_DIR_ENV,
    };
    pub use crate::sys::mman::Populate;
}

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
