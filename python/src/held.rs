//! Holding a lock guard of the crate across Python calls.
//!
//! A guard of the crate borrows its handle (`ArrayGuard<'a, ..>` borrows the
//! `SharedArray`), and Python needs to keep it between `__enter__` and `__exit__`.
//! [`Held`] stores the guard next to an `Arc` of the handle it borrows, with the
//! borrow's lifetime erased, and is the only place that ever sees the erased guard.
//!
//! # Why this is sound
//! - **The referent outlives the guard.** The guard borrows data inside an `Arc`
//!   allocation (the handle), which never moves. `Held` owns a clone of that `Arc`
//!   and drops the guard *before* it (explicit `Drop`), so the handle lives as long
//!   as the guard. Nobody obtains `&mut` to the handle meanwhile (`Arc::get_mut`
//!   fails while `Held` holds a clone, and the bindings never ask).
//! - **The guard never escapes.** The `'static` guard is a private field; callers
//!   only reach it through `&`/`&mut` methods bounded by the borrow of `Held`.
//! - **One thread.** pthread mutexes are unlocked by the thread that locked them,
//!   and a read guard's bookkeeping is thread-local. `Held` records the thread that
//!   took the lock; every use checks it ([`Held::check_thread`]) and a drop on
//!   another thread *leaks* the guard and the handle instead of unlocking
//!   elsewhere (the lock stays held until this process ends; robust locks then
//!   report `OwnerDied` to the next locker). Leaking is safe; the other outcome is
//!   not.

use std::any::Any;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::thread::ThreadId;

thread_local! {
    /// This thread's id, without `thread::current()`'s reference count traffic.
    static THREAD: ThreadId = std::thread::current().id();
}

/// The calling thread's id.
pub(crate) fn thread_id() -> ThreadId {
    THREAD.with(|t| *t)
}

use pyo3::prelude::*;
use shmarray::sync::LockFailure;

/// What the bindings need from any held guard of the crate, with the borrow's
/// lifetime as a parameter (so that the erased form is the same trait at
/// `'static`).
pub(crate) trait Erased<'a>: 'a {
    /// Whether the previous holder died and the data is not yet marked consistent.
    fn owner_died(&self) -> bool;
    /// Declares the data repaired.
    fn mark_consistent(&mut self);
    /// Turns a write guard into a read guard (an array's `read()` that found a
    /// dead writer and repaired its data).
    fn downgrade(self: Box<Self>) -> Result<Box<dyn Erased<'a> + 'a>, LockFailure>;
    /// The value under a value's lock (`None` for arrays).
    fn get(&self, py: Python<'_>) -> Option<PyResult<Py<PyAny>>>;
    /// Sets the value under a value's lock.
    fn set(&mut self, v: &Bound<'_, PyAny>) -> PyResult<()>;
    /// Adds to the value under a value's lock; returns the new value.
    fn add(&mut self, d: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>>;
}

/// A lock guard held across Python calls, with the handle it borrows.
pub(crate) struct Held {
    /// Borrows from `*_owner` (see the module docs); dropped first.
    guard: ManuallyDrop<Box<dyn Erased<'static>>>,
    thread: ThreadId,
    owner: ManuallyDrop<Arc<dyn Any + Send + Sync>>,
}

// SAFETY: the guard is used and dropped only on `thread` (every method checks, and
// `Drop` leaks it on any other thread), so moving a `Held` to another thread never
// moves a use of the guard there; the owner is an `Arc` of a `Send + Sync` value.
unsafe impl Send for Held {}

impl Held {
    /// Stores `guard`, which borrows from `*owner`, taken by the calling thread.
    ///
    /// # Safety
    /// Everything `guard` borrows must live inside the allocation of `owner` (the
    /// guard came from a method of the value in that `Arc`, called through a
    /// reference derived from `owner` or a clone of it), and the calling thread
    /// must be the one that took the lock.
    pub(crate) unsafe fn new<'a, O: Any + Send + Sync>(
        owner: &'a Arc<O>,
        guard: Box<dyn Erased<'a> + 'a>,
    ) -> Held {
        // SAFETY: only the lifetime changes (same fat pointer, same vtable). The
        // caller promises that the guard borrows only from `*owner`; we keep a clone
        // of `owner` and drop the guard before it (see `Drop`), and the guard never
        // leaves this struct, so no use of it outlives its referent.
        let guard: Box<dyn Erased<'static>> = unsafe {
            std::mem::transmute::<Box<dyn Erased<'a> + 'a>, Box<dyn Erased<'static>>>(guard)
        };
        let owner: Arc<dyn Any + Send + Sync> = owner.clone();
        Held {
            guard: ManuallyDrop::new(guard),
            thread: thread_id(),
            owner: ManuallyDrop::new(owner),
        }
    }

    /// Errors unless the calling thread is the one that took the lock.
    pub(crate) fn check_thread(&self) -> PyResult<()> {
        if thread_id() == self.thread {
            Ok(())
        } else {
            Err(crate::errors::shm_error(
                "this lock was taken by another thread; a lock is released (and used) by the thread that took it",
            ))
        }
    }

    /// Whether the calling thread took this lock.
    pub(crate) fn is_mine(&self) -> bool {
        thread_id() == self.thread
    }

    /// The guard, for the thread that took it.
    pub(crate) fn guard(&self) -> PyResult<&dyn Erased<'static>> {
        self.check_thread()?;
        Ok(&**self.guard)
    }

    /// The guard, mutably, for the thread that took it.
    pub(crate) fn guard_mut(&mut self) -> PyResult<&mut dyn Erased<'static>> {
        self.check_thread()?;
        Ok(&mut **self.guard)
    }

    /// Turns a held write into a held read (same thread, same owner).
    pub(crate) fn downgrade(mut self) -> PyResult<Result<Held, LockFailure>> {
        self.check_thread()?;
        // SAFETY: `self` is forgotten right after: the guard and the owner are moved
        // out exactly once, and `Drop` does not run for them.
        let (guard, owner) = unsafe {
            (
                ManuallyDrop::take(&mut self.guard),
                ManuallyDrop::take(&mut self.owner),
            )
        };
        let thread = self.thread;
        std::mem::forget(self);
        // The read guard borrows from the same owner, which moves along with it.
        Ok(guard.downgrade().map(|g| Held {
            guard: ManuallyDrop::new(g),
            thread,
            owner: ManuallyDrop::new(owner),
        }))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.is_mine() {
            // SAFETY: dropped once, here, before the owner (which the guard borrows).
            unsafe {
                ManuallyDrop::drop(&mut self.guard);
                ManuallyDrop::drop(&mut self.owner);
            }
        } else {
            // Never unlock on another thread: leak the guard and the handle it
            // borrows (fields in `ManuallyDrop` are not dropped).
            eprintln!(
                "pyshmarray: a lock guard was dropped on a thread that does not hold it; \
                 the lock stays held until this process exits"
            );
        }
    }
}
