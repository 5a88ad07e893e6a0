//! `Event` and `Barrier`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use pyo3::prelude::*;

use crate::errors::{from_barrier, from_barrier_open, from_error};
use crate::lock;

/// `multiprocessing.Event` by name: `set`, `clear`, `is_set`, `wait(timeout)`.
/// Waiters sleep on a process-shared futex; `wait` releases the GIL and can be
/// interrupted with Ctrl-C.
#[pyclass(frozen, module = "pyshmarray._native", name = "Event")]
pub(crate) struct Event {
    inner: Arc<shmarray::Event>,
    name: String,
}

#[pymethods]
impl Event {
    /// Creates a clear event `name` (owner: removed when collected, unless
    /// `persistent`).
    #[staticmethod]
    #[pyo3(signature = (name, persistent=false))]
    fn create(name: &str, persistent: bool) -> PyResult<Event> {
        let opts = crate::options(persistent, "off")?;
        let e = shmarray::Event::create_with(&opts, name).map_err(from_error)?;
        Ok(Event {
            inner: Arc::new(e),
            name: name.to_string(),
        })
    }

    /// Attaches event `name`.
    #[staticmethod]
    fn open(name: &str) -> PyResult<Event> {
        let e = shmarray::Event::open(name).map_err(from_error)?;
        Ok(Event {
            inner: Arc::new(e),
            name: name.to_string(),
        })
    }

    /// Sets the event, waking every waiter in every process.
    fn set(&self) {
        self.inner.set()
    }

    /// Clears the event.
    fn clear(&self) {
        self.inner.clear()
    }

    /// Whether it is set.
    fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    /// Waits until the event is set or `timeout` seconds pass; returns whether it
    /// is set (as `threading.Event.wait`).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if self.inner.is_set() {
            return Ok(true);
        }
        let deadline = crate::deadline(timeout)?;
        let e = &self.inner;
        let r = crate::wait_in_slices(py, deadline, |d| e.wait_timeout(d).ok())?;
        Ok(r.is_some() || e.is_set())
    }

    /// Segment name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Removes the name now.
    fn unlink(&self) -> PyResult<()> {
        self.inner.unlink().map_err(from_error)
    }

    fn __repr__(&self) -> String {
        format!(
            "<pyshmarray.Event {:?} set={}>",
            self.name,
            self.inner.is_set()
        )
    }
}

/// A reusable barrier for `parties` processes, by name (`threading.Barrier`
/// semantics across processes): each handle is one participant; `wait()` returns
/// `True` in exactly one participant per round. A participant that dies makes the
/// others raise `BrokenBarrierError` instead of hanging; a timeout breaks the
/// barrier for everyone (`BarrierTimeoutError`).
#[pyclass(frozen, module = "pyshmarray._native", name = "Barrier")]
pub(crate) struct Barrier {
    inner: Mutex<shmarray::Barrier>,
    name: String,
}

#[pymethods]
impl Barrier {
    /// Creates barrier `name` for `parties` processes (1..=64) and joins it.
    #[staticmethod]
    #[pyo3(signature = (name, parties, persistent=false))]
    fn create(name: &str, parties: u32, persistent: bool) -> PyResult<Barrier> {
        let opts = crate::options(persistent, "off")?;
        let b = shmarray::Barrier::create_with(&opts, name, parties).map_err(from_barrier_open)?;
        Ok(Barrier {
            inner: Mutex::new(b),
            name: name.to_string(),
        })
    }

    /// Attaches barrier `name` and joins it.
    #[staticmethod]
    fn open(name: &str) -> PyResult<Barrier> {
        let b = shmarray::Barrier::open(name).map_err(from_barrier_open)?;
        Ok(Barrier {
            inner: Mutex::new(b),
            name: name.to_string(),
        })
    }

    /// Waits for all parties; returns `True` in one participant per round (the
    /// leader). With a timeout, gives up after `timeout` seconds (the barrier is
    /// then broken for all, as in Python). The GIL is released while waiting; a
    /// barrier wait cannot be resumed after an interruption, so Ctrl-C is noticed
    /// when the wait ends (pass a timeout to bound it).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = crate::deadline(timeout)?;
        let b = &self.inner;
        let r = py.detach(|| {
            let b = lock(b);
            match deadline {
                Some(d) => b.wait_timeout(d.saturating_duration_since(Instant::now())),
                None => b.wait(),
            }
        });
        r.map_err(from_barrier)
    }

    /// The number of parties.
    #[getter]
    fn parties(&self) -> u32 {
        lock(&self.inner).parties()
    }

    /// Whether the barrier is broken.
    #[getter]
    fn broken(&self) -> bool {
        lock(&self.inner).is_broken()
    }

    /// Repairs a broken barrier (call when no participant is inside `wait`).
    fn reset(&self) {
        lock(&self.inner).reset()
    }

    /// Segment name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn __repr__(&self) -> String {
        format!(
            "<pyshmarray.Barrier {:?} parties={}>",
            self.name,
            self.parties()
        )
    }
}
