//! `Event` and `Barrier`.

use std::time::Instant;

use pyo3::prelude::*;

use crate::errors::{from_barrier, from_barrier_open, from_error};
use crate::life::{Handle, Named, Ownership};

impl Named for shmarray::Event {
    fn remove_name(&self) -> PyResult<()> {
        self.unlink().map_err(from_error)
    }
    fn file_path(&self) -> Option<std::path::PathBuf> {
        self.path()
    }
}

impl Named for shmarray::Barrier {
    fn remove_name(&self) -> PyResult<()> {
        self.unlink().map_err(from_error)
    }
    fn file_path(&self) -> Option<std::path::PathBuf> {
        self.path()
    }
}

/// The lifecycle methods of a handle type with a `handle: Handle<_>` field:
/// `name`, `path`, `is_owner`, `closed`, `unlink`, `close`, `with`, pickling.
macro_rules! lifecycle_methods {
    ($ty:ident) => {
        lifecycle_methods!($ty, no_reduce);

        #[pymethods]
        impl $ty {
            /// Pickles as "open this segment by name" (the copy is not the owner).
            fn __reduce__<'py>(
                &self,
                py: Python<'py>,
            ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, pyo3::types::PyTuple>)> {
                self.handle.reduce(py, vec![])
            }
        }
    };
    ($ty:ident, no_reduce) => {
        #[pymethods]
        impl $ty {
            /// Segment name.
            #[getter]
            fn name(&self) -> &str {
                self.handle.name()
            }

            /// The segment's file.
            #[getter]
            fn path(&self) -> PyResult<Option<String>> {
                Ok(self
                    .handle
                    .get()?
                    .file_path()
                    .map(|p| p.display().to_string()))
            }

            /// Whether closing this handle removes the name (the creator, unless
            /// persistent, in the process that created it).
            #[getter]
            fn is_owner(&self) -> bool {
                self.handle.owns()
            }

            /// Whether `close()` has been called.
            #[getter]
            fn closed(&self) -> bool {
                self.handle.is_closed()
            }

            /// Removes the name now (processes that have it open keep using it).
            fn unlink(&self) -> PyResult<()> {
                self.handle.unlink()
            }

            /// Drops this handle; the owner removes the name now. Idempotent.
            fn close(&self) {
                self.handle.close()
            }

            fn __enter__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
                self.close();
                false
            }
        }
    };
}
pub(crate) use lifecycle_methods;

/// `multiprocessing.Event` by name: `set`, `clear`, `is_set`, `wait(timeout)`.
/// Waiters sleep on a process-shared futex; `wait` releases the GIL and can be
/// interrupted with Ctrl-C. Same lifecycle as every handle; pickles as "open by
/// name".
#[pyclass(frozen, module = "pyshmarray._native", name = "Event")]
pub(crate) struct Event {
    handle: Handle<shmarray::Event>,
}

impl Event {
    pub(crate) fn open_handle(name: &str) -> PyResult<Event> {
        let e = shmarray::Event::open(name).map_err(from_error)?;
        Ok(Event {
            handle: Handle::new("event", name, e, Ownership::opened()),
        })
    }
}

lifecycle_methods!(Event);

#[pymethods]
impl Event {
    /// Creates a clear event `name` (owner: removed on `close()` or collection,
    /// unless `persistent`).
    #[staticmethod]
    #[pyo3(signature = (name, *, persistent=false))]
    fn create(name: &str, persistent: bool) -> PyResult<Event> {
        let opts = crate::options(persistent, "off")?;
        let e = shmarray::Event::create_with(&opts, name).map_err(from_error)?;
        Ok(Event {
            handle: Handle::new("event", name, e, Ownership::created(persistent)),
        })
    }

    /// Attaches event `name` (not the owner).
    #[staticmethod]
    fn open(name: &str) -> PyResult<Event> {
        Self::open_handle(name)
    }

    /// Sets the event, waking every waiter in every process.
    fn set(&self) -> PyResult<()> {
        self.handle.get()?.set();
        Ok(())
    }

    /// Clears the event.
    fn clear(&self) -> PyResult<()> {
        self.handle.get()?.clear();
        Ok(())
    }

    /// Whether it is set.
    fn is_set(&self) -> PyResult<bool> {
        Ok(self.handle.get()?.is_set())
    }

    /// Waits until the event is set or `timeout` seconds pass; returns whether it
    /// is set (as `threading.Event.wait`; `None`: no limit).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = crate::deadline(timeout)?;
        let e = self.handle.get()?;
        if e.is_set() {
            return Ok(true);
        }
        let e = &*e;
        let r = crate::wait_in_slices(py, deadline, |d| e.wait_timeout(d).ok())?;
        Ok(r.is_some() || e.is_set())
    }

    fn __repr__(&self) -> String {
        match self.handle.get() {
            Ok(e) => format!(
                "<pyshmarray.Event {:?} set={}>",
                self.handle.name(),
                if e.is_set() { "True" } else { "False" }
            ),
            Err(_) => format!("<pyshmarray.Event {:?} closed>", self.handle.name()),
        }
    }
}

/// A reusable barrier for `parties` processes, by name (`threading.Barrier`
/// semantics across processes): each handle is one participant; `wait()` returns
/// `True` in exactly one participant per round. A participant that dies makes the
/// others raise `BrokenBarrierError` instead of hanging; a timeout breaks the
/// barrier for everyone (`BarrierTimeoutError`); `abort()` breaks it on purpose.
/// Closing a handle leaves the barrier. A pickled barrier opens (joins) by name.
#[pyclass(frozen, module = "pyshmarray._native", name = "Barrier")]
pub(crate) struct Barrier {
    handle: Handle<shmarray::Barrier>,
}

impl Barrier {
    pub(crate) fn open_handle(name: &str) -> PyResult<Barrier> {
        let b = shmarray::Barrier::open(name).map_err(from_barrier_open)?;
        Ok(Barrier {
            handle: Handle::new("barrier", name, b, Ownership::opened()),
        })
    }
}

lifecycle_methods!(Barrier);

#[pymethods]
impl Barrier {
    /// Creates barrier `name` for `parties` processes (1 to 64) and joins it.
    #[staticmethod]
    #[pyo3(signature = (name, parties, *, persistent=false))]
    fn create(name: &str, parties: i64, persistent: bool) -> PyResult<Barrier> {
        let parties = u32::try_from(parties)
            .ok()
            .filter(|p| (1..=64).contains(p))
            .ok_or_else(|| {
                crate::errors::raise(
                    "ValueError",
                    format!("parties must be between 1 and 64, not {parties}"),
                )
            })?;
        let opts = crate::options(persistent, "off")?;
        let b = shmarray::Barrier::create_with(&opts, name, parties).map_err(from_barrier_open)?;
        Ok(Barrier {
            handle: Handle::new("barrier", name, b, Ownership::created(persistent)),
        })
    }

    /// Attaches barrier `name` and joins it (not the owner).
    #[staticmethod]
    fn open(name: &str) -> PyResult<Barrier> {
        Self::open_handle(name)
    }

    /// Waits for all parties; returns `True` in one participant per round (the
    /// leader). With a timeout, gives up after `timeout` seconds (the barrier is
    /// then broken for all, as in Python). The GIL is released while waiting; a
    /// barrier wait cannot be resumed after an interruption, so Ctrl-C is noticed
    /// when the wait ends (pass a timeout to bound it).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = crate::deadline(timeout)?;
        let b = self.handle.get()?;
        let r = py.detach(|| match deadline {
            Some(d) => b.wait_timeout(d.saturating_duration_since(Instant::now())),
            None => b.wait(),
        });
        r.map_err(from_barrier)
    }

    /// The number of parties.
    #[getter]
    fn parties(&self) -> PyResult<u32> {
        Ok(self.handle.get()?.parties())
    }

    /// How many participants are waiting in the current round (0 while broken).
    #[getter]
    fn n_waiting(&self) -> PyResult<u32> {
        Ok(self.handle.get()?.n_waiting())
    }

    /// Whether the barrier is broken.
    #[getter]
    fn broken(&self) -> PyResult<bool> {
        Ok(self.handle.get()?.is_broken())
    }

    /// Breaks the barrier: current and later `wait`s raise `BrokenBarrierError`
    /// until `reset()` (as `threading.Barrier.abort`).
    fn abort(&self) -> PyResult<()> {
        self.handle.get()?.abort();
        Ok(())
    }

    /// Repairs a broken barrier (call when no participant is inside `wait`).
    fn reset(&self) -> PyResult<()> {
        self.handle.get()?.reset();
        Ok(())
    }

    fn __repr__(&self) -> String {
        match self.handle.get() {
            Ok(b) => format!(
                "<pyshmarray.Barrier {:?} parties={}>",
                self.handle.name(),
                b.parties()
            ),
            Err(_) => format!("<pyshmarray.Barrier {:?} closed>", self.handle.name()),
        }
    }
}
