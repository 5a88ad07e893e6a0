//! `Counter` (one of an array's atomic counters) and `AtomicU64` (a segment
//! holding one atomic `u64`): the same atomic operations.

use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shmarray::SharedAtomicU64;

use crate::errors::from_error;
use crate::handles::AnyArray;
use crate::life::{reduce, Handle, Named, Ownership};

/// The atomic operations of `Counter` and `AtomicU64`, on `$self.atomic()?`.
macro_rules! atomic_methods {
    ($ty:ident) => {
        #[pymethods]
        impl $ty {
            /// The current value.
            fn load(&self) -> PyResult<u64> {
                self.with(|a| a.load(Ordering::SeqCst))
            }

            /// Stores `value`.
            fn store(&self, value: u64) -> PyResult<()> {
                self.with(|a| a.store(value, Ordering::SeqCst))
            }

            /// Adds `delta` (wrapping); returns the previous value.
            #[pyo3(signature = (delta=1))]
            fn fetch_add(&self, delta: u64) -> PyResult<u64> {
                self.with(|a| a.fetch_add(delta, Ordering::SeqCst))
            }

            /// Subtracts `delta` (wrapping); returns the previous value.
            #[pyo3(signature = (delta=1))]
            fn fetch_sub(&self, delta: u64) -> PyResult<u64> {
                self.with(|a| a.fetch_sub(delta, Ordering::SeqCst))
            }

            /// Swaps in `value`; returns the previous value.
            fn swap(&self, value: u64) -> PyResult<u64> {
                self.with(|a| a.swap(value, Ordering::SeqCst))
            }

            /// Stores `new` if the value is `current`; returns `(success, previous)`.
            fn compare_exchange(&self, current: u64, new: u64) -> PyResult<(bool, u64)> {
                self.with(|a| {
                    match a.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst) {
                        Ok(v) => (true, v),
                        Err(v) => (false, v),
                    }
                })
            }

            /// The value (same as `load()`).
            #[getter]
            fn value(&self) -> PyResult<u64> {
                self.load()
            }
        }
    };
}

/// An atomic 64-bit counter shared between processes: one of an array's 8
/// counters (`a.counter(i)`). Sequentially consistent. It keeps the array's
/// mapping alive (like a numpy view) after the array handle is closed; it pickles
/// as "open the array by name, take counter `i`".
#[pyclass(frozen, module = "pyshmarray._native", name = "Counter")]
pub(crate) struct Counter {
    array: Arc<AnyArray>,
    index: usize,
    name: String,
}

impl Counter {
    /// Counter `index` of `array` (checked by the caller).
    pub(crate) fn of_array(array: Arc<AnyArray>, index: usize, name: &str) -> Counter {
        Counter {
            array,
            index,
            name: name.to_string(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&StdAtomicU64) -> R) -> PyResult<R> {
        Ok(f(self.array.counter(self.index).map_err(from_error)?))
    }
}

atomic_methods!(Counter);

#[pymethods]
impl Counter {
    /// Which of the array's counters it is.
    #[getter]
    fn index(&self) -> usize {
        self.index
    }

    /// Pickles as "open the array by name, take this counter".
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let i = self.index.into_pyobject(py)?.into_any();
        reduce(py, "counter", &self.name, vec![i])
    }

    fn __repr__(&self) -> String {
        let v = self
            .load()
            .map_or_else(|_| "?".to_string(), |v| v.to_string());
        format!("<pyshmarray.Counter {:?}[{}] {v}>", self.name, self.index)
    }
}

impl Named for SharedAtomicU64 {
    fn remove_name(&self) -> PyResult<()> {
        self.unlink().map_err(from_error)
    }
    fn file_path(&self) -> Option<std::path::PathBuf> {
        self.path()
    }
}

/// A `u64` in a segment of its own, accessed atomically only (`load`, `store`,
/// `fetch_add`, `compare_exchange`, ...): `AtomicU64.create(name, value=0)` /
/// `AtomicU64.open(name)`. Same lifecycle as every handle (`with`, `close()`,
/// `unlink()`, `closed`); pickles as "open by name".
#[pyclass(frozen, module = "pyshmarray._native", name = "AtomicU64")]
pub(crate) struct AtomicU64 {
    handle: Handle<SharedAtomicU64>,
}

impl AtomicU64 {
    fn with<R>(&self, f: impl FnOnce(&StdAtomicU64) -> R) -> PyResult<R> {
        let a = self.handle.get()?;
        Ok(f(&a))
    }

    pub(crate) fn open_handle(name: &str) -> PyResult<AtomicU64> {
        let a = SharedAtomicU64::open(name).map_err(from_error)?;
        Ok(AtomicU64 {
            handle: Handle::new("atomic", name, a, Ownership::opened()),
        })
    }
}

atomic_methods!(AtomicU64);

#[pymethods]
impl AtomicU64 {
    /// Creates `name` holding `value` (owner: the name is removed on `close()` or
    /// collection, unless `persistent`).
    #[staticmethod]
    #[pyo3(signature = (name, value=0, *, persistent=false))]
    fn create(name: &str, value: u64, persistent: bool) -> PyResult<AtomicU64> {
        let opts = crate::options(persistent, "off")?;
        let a = SharedAtomicU64::create_with(&opts, name, value).map_err(from_error)?;
        Ok(AtomicU64 {
            handle: Handle::new("atomic", name, a, Ownership::created(persistent)),
        })
    }

    /// Attaches `name` (not the owner).
    #[staticmethod]
    fn open(name: &str) -> PyResult<AtomicU64> {
        Self::open_handle(name)
    }

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

    /// Whether closing this handle removes the name.
    #[getter]
    fn is_owner(&self) -> bool {
        self.handle.owns()
    }

    /// Whether `close()` has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Removes the name now.
    fn unlink(&self) -> PyResult<()> {
        self.handle.unlink()
    }

    /// Drops this handle (the owner removes the name now). Idempotent.
    fn close(&self) {
        self.handle.close()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    /// Pickles as "open this segment by name" (the copy is not the owner).
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        self.handle.reduce(py, vec![])
    }

    fn __repr__(&self) -> String {
        match self.load() {
            Ok(v) => format!("<pyshmarray.AtomicU64 {:?} {v}>", self.handle.name()),
            Err(_) => format!("<pyshmarray.AtomicU64 {:?} closed>", self.handle.name()),
        }
    }
}
