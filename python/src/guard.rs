//! `Guard`: a robust lock (an array's write or read lock, a value's lock) as a
//! Python context manager, and the `OwnerDiedError` that hands one over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use shmarray::ndarray::IxDyn;
use shmarray::{
    sync::{ArrayGuard, ArrayReadGuard, LockFailure, LockResult, ValueGuard},
    LockError, SharedArray, SharedValue,
};

use crate::errors::{from_lock, raise, shm_error};
use crate::handles::{AnyArray, AnyValue};
use crate::held::{Erased, Held};
use crate::{dispatch, lock, Elem};

/// Where a held guard lives: in the `Guard` object's own slot (arrays) or in the
/// value's slot, shared by its guards (so that `v.value` inside `with v.lock():`
/// uses the held lock). The number tells which acquisition it is.
pub(crate) type Slot = Mutex<Option<(u64, Held)>>;

static TICKETS: AtomicU64 = AtomicU64::new(1);

/// What a guard locks.
#[derive(Clone)]
pub(crate) enum Source {
    /// An array's exclusive lock.
    Write(Arc<AnyArray>),
    /// An array's read lock.
    Read(Arc<AnyArray>),
    /// A value's lock.
    Value(Arc<AnyValue>),
}

/// One try to lock.
pub(crate) enum Attempt {
    Got(Held),
    Died(Held),
    Fail(LockFailure),
}

// ---- the crate's guards, erased ---------------------------------------------------

fn not_a_value() -> PyErr {
    shm_error("only a Value's guard has a value")
}

impl<'a, T: Elem> Erased<'a> for ArrayGuard<'a, T, IxDyn> {
    fn owner_died(&self) -> bool {
        ArrayGuard::owner_died(self)
    }
    fn mark_consistent(&mut self) {
        ArrayGuard::mark_consistent(self)
    }
    fn downgrade(self: Box<Self>) -> Result<Box<dyn Erased<'a> + 'a>, LockFailure> {
        let r: ArrayReadGuard<'a, T, IxDyn> = ArrayGuard::downgrade(*self)?;
        Ok(Box::new(r))
    }
    fn get(&self, _py: Python<'_>) -> Option<PyResult<Py<PyAny>>> {
        None
    }
    fn set(&mut self, _v: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(not_a_value())
    }
    fn add(&mut self, _d: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Err(not_a_value())
    }
}

impl<'a, T: Elem> Erased<'a> for ArrayReadGuard<'a, T, IxDyn> {
    fn owner_died(&self) -> bool {
        false
    }
    fn mark_consistent(&mut self) {}
    fn downgrade(self: Box<Self>) -> Result<Box<dyn Erased<'a> + 'a>, LockFailure> {
        Ok(self)
    }
    fn get(&self, _py: Python<'_>) -> Option<PyResult<Py<PyAny>>> {
        None
    }
    fn set(&mut self, _v: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(not_a_value())
    }
    fn add(&mut self, _d: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Err(not_a_value())
    }
}

impl<'a, T: Elem> Erased<'a> for ValueGuard<'a, T> {
    fn owner_died(&self) -> bool {
        ValueGuard::owner_died(self)
    }
    fn mark_consistent(&mut self) {
        ValueGuard::mark_consistent(self)
    }
    fn downgrade(self: Box<Self>) -> Result<Box<dyn Erased<'a> + 'a>, LockFailure> {
        Ok(self)
    }
    fn get(&self, py: Python<'_>) -> Option<PyResult<Py<PyAny>>> {
        Some((**self).to_py(py))
    }
    fn set(&mut self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        **self = T::from_py(v)?;
        Ok(())
    }
    fn add(&mut self, d: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let new = (**self).plus(T::from_py(d)?);
        **self = new;
        new.to_py(d.py())
    }
}

// ---- one attempt ------------------------------------------------------------------

/// Wraps a lock result whose guards borrow from `*owner`.
///
/// # Safety
/// The guards in `r` must borrow only from `*owner`, and come from this thread.
unsafe fn outcome<'a, O, G, H>(owner: &'a Arc<O>, r: Result<G, LockError<H>>) -> Option<Attempt>
where
    O: std::any::Any + Send + Sync,
    G: Erased<'a>,
    H: Erased<'a>,
{
    match r {
        // SAFETY: forwarded from this function's contract.
        Ok(g) => Some(Attempt::Got(unsafe { Held::new(owner, Box::new(g)) })),
        Err(LockError::OwnerDied(g)) => {
            // SAFETY: as above.
            Some(Attempt::Died(unsafe { Held::new(owner, Box::new(g)) }))
        }
        Err(LockError::Failed(LockFailure::Timeout(_) | LockFailure::WouldBlock)) => None,
        Err(e) => Some(Attempt::Fail(e.into_failure())),
    }
}

/// # Safety
/// `a` must be the array inside `owner`.
unsafe fn write_once<'a, T: Elem>(
    owner: &'a Arc<AnyArray>,
    a: &'a SharedArray<T, IxDyn>,
    wait: Duration,
) -> Option<Attempt> {
    let r: LockResult<ArrayGuard<'a, T, IxDyn>> = if wait.is_zero() {
        a.try_lock()
    } else {
        a.lock_timeout(wait)
    };
    // SAFETY: the guards borrow `a`, which is inside `owner` (our contract), and
    // were taken by this thread just now.
    unsafe { outcome(owner, r) }
}

/// # Safety
/// `a` must be the array inside `owner`.
unsafe fn read_once<'a, T: Elem>(
    owner: &'a Arc<AnyArray>,
    a: &'a SharedArray<T, IxDyn>,
    wait: Duration,
) -> Option<Attempt> {
    let r = if wait.is_zero() {
        a.try_read()
    } else {
        a.read_timeout(wait)
    };
    // SAFETY: as in `write_once`.
    unsafe { outcome(owner, r) }
}

/// # Safety
/// `v` must be the value inside `owner`.
unsafe fn value_once<'a, T: Elem>(
    owner: &'a Arc<AnyValue>,
    v: &'a SharedValue<T>,
    wait: Duration,
) -> Option<Attempt> {
    let r = if wait.is_zero() {
        v.try_lock()
    } else {
        v.lock_timeout(wait)
    };
    // SAFETY: as in `write_once`.
    unsafe { outcome(owner, r) }
}

impl Source {
    /// One try, waiting at most `wait` (zero: don't wait). `None`: busy.
    pub(crate) fn attempt(&self, wait: Duration) -> Option<Attempt> {
        match self {
            Source::Write(owner) => {
                dispatch!(&**owner, AnyArray, x => {
                    // SAFETY: `x` is the handle inside `owner`, reached through it.
                    unsafe { write_once(owner, x, wait) }
                })
            }
            Source::Read(owner) => {
                dispatch!(&**owner, AnyArray, x => {
                    // SAFETY: `x` is the handle inside `owner`, reached through it.
                    unsafe { read_once(owner, x, wait) }
                })
            }
            Source::Value(owner) => {
                dispatch!(&**owner, AnyValue, x => {
                    // SAFETY: `x` is the handle inside `owner`, reached through it.
                    unsafe { value_once(owner, x, wait) }
                })
            }
        }
    }

    /// Locks, waiting at most `timeout` seconds (`None`: forever) with the GIL
    /// released, in slices; returns the held guard and whether its previous
    /// holder died.
    pub(crate) fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(Held, bool)> {
        let deadline = crate::deadline(timeout)?;
        let mut outcome = self.attempt(Duration::ZERO);
        if outcome.is_none() && timeout != Some(0.0) {
            // Spin a few microseconds for a short critical section elsewhere (a
            // Python `with` block is about one) before sleeping in the kernel.
            outcome = spin(|| self.attempt(Duration::ZERO));
            if outcome.is_none() {
                outcome = crate::wait_in_slices(py, deadline, |d| self.attempt(d))?;
            }
        }
        match outcome {
            Some(Attempt::Got(h)) => Ok((h, false)),
            Some(Attempt::Died(h)) => Ok((h, true)),
            Some(Attempt::Fail(e)) => Err(from_lock(e)),
            None => Err(raise(
                "TimeoutError",
                format!("lock not acquired within {} s", timeout.unwrap_or(0.0)),
            )),
        }
    }
}

/// Retries `attempt` for a few microseconds, backing off, without a clock.
pub(crate) fn spin<R>(mut attempt: impl FnMut() -> Option<R>) -> Option<R> {
    for i in 0..SPINS {
        for _ in 0..(1u32 << (i / 64).min(4)) {
            std::hint::spin_loop();
        }
        if let Some(r) = attempt() {
            return Some(r);
        }
    }
    None
}

/// How often `spin` retries (a few microseconds in all).
const SPINS: u32 = 256;

// ---- the Python object -------------------------------------------------------------

#[derive(Default)]
struct State {
    /// The acquisition this guard holds (in `slot`), if any.
    ticket: Option<u64>,
    /// Inside a `with` block.
    entered: bool,
    /// Released once: a guard is used for one acquisition.
    released: bool,
}

/// A robust lock as a context manager, from `SharedArray.lock()`/`read()`/
/// `write()` or `Value.lock()`.
///
/// `with guard:` takes the lock (waiting at most the timeout given when the guard
/// was made) and releases it at the end of the block. If the previous holder died
/// holding the lock, entering raises `OwnerDiedError` whose `.guard` is this object,
/// **holding** the lock: repair the data, call `mark_consistent()`, then `release()`
/// (or `with e.guard:`). Released unrepaired, the lock becomes not recoverable for
/// everyone (`NotRecoverableError`). With `recover=fn`, entering calls `fn(array)`
/// (a value's guard: `fn(guard)`) instead, marks the data consistent and goes on.
///
/// A guard is released by the thread that took it; it is used for one acquisition.
#[pyclass(frozen, module = "pyshmarray._native", name = "Guard")]
pub(crate) struct Guard {
    source: Source,
    slot: Arc<Slot>,
    timeout: Option<f64>,
    recover: Option<Py<PyAny>>,
    /// What entering returns (the array, or a read-only view of it); `None`: the
    /// guard itself.
    target: Option<Py<PyAny>>,
    /// What `recover` is called with (the writable array); `None`: the guard.
    repair_arg: Option<Py<PyAny>>,
    state: Mutex<State>,
}

impl Guard {
    pub(crate) fn new(
        source: Source,
        slot: Arc<Slot>,
        timeout: Option<f64>,
        recover: Option<Py<PyAny>>,
        target: Option<Py<PyAny>>,
    ) -> Guard {
        Guard {
            source,
            slot,
            timeout,
            recover,
            repair_arg: None,
            target,
            state: Mutex::new(State::default()),
        }
    }

    /// Sets what `recover` is called with (default: what entering returns).
    pub(crate) fn with_repair_arg(mut self, arg: Py<PyAny>) -> Guard {
        self.repair_arg = Some(arg);
        self
    }

    /// Stores a freshly taken lock in the slot and records it as this guard's.
    pub(crate) fn store(&self, held: Held) {
        let ticket = TICKETS.fetch_add(1, Ordering::Relaxed);
        let old = lock(&self.slot).replace((ticket, held));
        // Another acquisition in the slot would mean two holders of one lock.
        debug_assert!(old.is_none());
        drop(old);
        lock(&self.state).ticket = Some(ticket);
    }

    /// Runs `f` on this guard's held lock.
    fn with_held<R>(&self, f: impl FnOnce(&mut Held) -> PyResult<R>) -> PyResult<R> {
        let ticket = lock(&self.state).ticket.ok_or_else(not_held)?;
        let mut slot = lock(&self.slot);
        match slot.as_mut() {
            Some((t, h)) if *t == ticket => f(h),
            _ => Err(not_held()),
        }
    }

    /// Releases the lock this guard holds.
    fn release_inner(&self) -> PyResult<()> {
        let mut st = lock(&self.state);
        let ticket = st.ticket.ok_or_else(not_held)?;
        let held = {
            let mut slot = lock(&self.slot);
            match slot.as_ref() {
                Some((t, h)) if *t == ticket => h.check_thread()?,
                _ => return Err(not_held()),
            }
            slot.take().map(|(_, h)| h)
        };
        st.ticket = None;
        st.entered = false;
        st.released = true;
        drop(st);
        drop(held); // unlocks (on this thread, checked above)
        Ok(())
    }

    fn target(slf: &Bound<'_, Self>) -> Py<PyAny> {
        match &slf.get().target {
            Some(t) => t.clone_ref(slf.py()),
            None => slf.clone().into_any().unbind(),
        }
    }
}

fn not_held() -> PyErr {
    shm_error("this guard does not hold the lock (never entered, or already released)")
}

/// `OwnerDiedError(msg)` with `.guard` set.
pub(crate) fn owner_died_error(guard: &Bound<'_, PyAny>) -> PyErr {
    let py = guard.py();
    let err = raise(
        "OwnerDiedError",
        "the previous lock holder died holding the lock; e.guard holds it now: repair the \
         data, call e.guard.mark_consistent(), then e.guard.release()",
    );
    let value = err.value(py);
    if let Err(e) = value.setattr("guard", guard) {
        return e;
    }
    err
}

#[pymethods]
impl Guard {
    /// Takes the lock (or, for a guard handed over by `OwnerDiedError`, just enters
    /// the block that releases it) and returns the array (`None` target: the
    /// guard).
    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        {
            let mut st = lock(&this.state);
            if st.ticket.is_some() {
                if st.entered {
                    return Err(shm_error("this guard is already entered"));
                }
                st.entered = true;
                return Ok(Self::target(slf));
            }
            if st.released {
                return Err(shm_error(
                    "this guard was released; take the lock again with a new guard (a.lock())",
                ));
            }
        }
        let (held, died) = this.source.acquire(py, this.timeout)?;
        this.store(held);
        if died {
            let Some(repair) = &this.recover else {
                return Err(owner_died_error(slf.as_any()));
            };
            let arg = match &this.repair_arg {
                Some(a) => a.clone_ref(py),
                None => Self::target(slf),
            };
            if let Err(e) = repair.bind(py).call1((arg,)) {
                // Unrepaired: released as such (the lock becomes not recoverable),
                // as a panic in Rust's `recover` would leave it.
                let _ = this.release_inner();
                return Err(e);
            }
            this.with_held(|h| {
                h.guard_mut()?.mark_consistent();
                Ok(())
            })?;
            if matches!(this.source, Source::Read(_)) {
                // The repaired write guard becomes the read guard.
                let mut st = lock(&this.state);
                let ticket = st.ticket;
                let held = {
                    let mut slot = lock(&this.slot);
                    slot.take().map(|(_, h)| h)
                };
                if let (Some(h), Some(t)) = (held, ticket) {
                    match h.downgrade()? {
                        Ok(r) => *lock(&this.slot) = Some((t, r)),
                        Err(e) => {
                            st.ticket = None;
                            st.released = true;
                            return Err(from_lock(e));
                        }
                    }
                }
            }
        }
        lock(&this.state).entered = true;
        Ok(Self::target(slf))
    }

    /// Releases the lock; exceptions from the block propagate.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.release_inner()?;
        Ok(false)
    }

    /// Releases the lock now (after an `OwnerDiedError`: call `mark_consistent()`
    /// first, or the lock becomes not recoverable).
    fn release(&self) -> PyResult<()> {
        self.release_inner()
    }

    /// After an `OwnerDiedError`: declares the data repaired, so the lock stays
    /// usable.
    fn mark_consistent(&self) -> PyResult<()> {
        self.with_held(|h| {
            h.guard_mut()?.mark_consistent();
            Ok(())
        })
    }

    /// Whether the previous holder died and the data is not yet marked consistent.
    #[getter]
    fn owner_died(&self) -> PyResult<bool> {
        self.with_held(|h| Ok(h.guard()?.owner_died()))
    }

    /// Whether this guard holds the lock now.
    #[getter]
    fn held(&self) -> bool {
        let ticket = lock(&self.state).ticket;
        ticket.is_some_and(|t| matches!(lock(&self.slot).as_ref(), Some((s, _)) if *s == t))
    }

    /// A value guard's value (read and written under the held lock).
    #[getter]
    fn get_value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.with_held(|h| h.guard()?.get(py).unwrap_or_else(|| Err(not_a_value())))
    }

    #[setter]
    fn set_value(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.with_held(|h| h.guard_mut()?.set(v))
    }

    fn __repr__(&self) -> String {
        let kind = match self.source {
            Source::Write(_) => "write",
            Source::Read(_) => "read",
            Source::Value(_) => "value",
        };
        format!("<pyshmarray.Guard {kind} held={}>", self.held())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // A guard collected while holding releases (on the thread that took it;
        // elsewhere `Held` leaks rather than unlock on the wrong thread).
        let ticket = lock(&self.state).ticket.take();
        if let Some(t) = ticket {
            let held = {
                let mut slot = lock(&self.slot);
                match slot.as_ref() {
                    Some((s, _)) if *s == t => slot.take().map(|(_, h)| h),
                    _ => None,
                }
            };
            drop(held);
        }
    }
}
