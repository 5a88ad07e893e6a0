//! `Value` (a number under a robust lock) and `AtomicU64`.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shmarray::Segment;
use shmarray::{
    format::{Dtype, ObjectKind},
    sync::LockFailure,
    LockError, SharedValue,
};

use crate::array::recorded_dtype;
use crate::errors::{from_error, from_lock, shm_error};
use crate::guard::{owner_died_error, spin, Guard, Slot, Source};
use crate::handles::AnyValue;
use crate::held::{Erased, Held};
use crate::life::{Handle, Named, Ownership};
use crate::{dispatch, for_dtype, lock, parse_dtype, Elem};

fn with_value_init<T: Elem>(
    name: &str,
    init: &Bound<'_, PyAny>,
    opts: &shmarray::Options,
) -> PyResult<SharedValue<T>> {
    let v = T::from_py(init)?;
    opts.create::<SharedValue<T>, _>(name, v)
        .map_err(from_error)
}

/// A number in shared memory under a robust lock: `multiprocessing.Value` with
/// `get_lock()`, by name.
///
/// `v.value` reads or writes under the lock (taking it for the call, or using the
/// lock this thread holds through `with v.lock():`); `v.add(d)` adds in one call.
/// If a holder died, these raise `OwnerDiedError` as `lock()` does. Same
/// lifecycle as every handle; pickles as "open by name".
#[pyclass(frozen, module = "pyshmarray._native", name = "Value")]
pub(crate) struct Value {
    handle: Handle<AnyValue>,
    /// The lock held through `with v.lock():` (shared by this handle's guards).
    slot: Arc<Slot>,
    dtype: Dtype,
}

impl Named for AnyValue {
    fn remove_name(&self) -> PyResult<()> {
        dispatch!(self, AnyValue, v => v.unlink()).map_err(from_error)
    }
    fn file_path(&self) -> Option<std::path::PathBuf> {
        dispatch!(self, AnyValue, v => v.path())
    }
}

impl Value {
    fn wrap(v: AnyValue, name: &str, dtype: Dtype, ownership: Ownership) -> Value {
        Value {
            handle: Handle::new("value", name, v, ownership),
            slot: Arc::new(Slot::default()),
            dtype,
        }
    }

    fn handle(&self) -> PyResult<Arc<AnyValue>> {
        self.handle.get()
    }

    /// Runs `op` under the lock: the one this thread holds through a guard of this
    /// handle, or one taken (and released) for the call.
    fn under_lock(&self, py: Python<'_>, op: Op<'_, '_>) -> PyResult<Py<PyAny>> {
        {
            let mut slot = lock(&self.slot);
            if let Some((_, h)) = slot.as_mut() {
                if h.is_mine() {
                    return op.on(py, h.guard_mut()?);
                }
            }
        }
        let owner = self.handle()?;
        // Fast path: a lock taken for the call, spinning a few microseconds if
        // another process holds it.
        let fast = dispatch!(&*owner, AnyValue, x => {
            // SAFETY: `x` is the value inside `owner`, reached through it.
            unsafe { typed_op(py, &owner, x, &op) }
        });
        let (mut held, died) = match fast {
            Fast::Done(r) => return r,
            Fast::Died(h) => (h, true),
            Fast::Busy => Source::Value(owner).acquire(py, None)?,
        };
        if died {
            let g = Guard::new(
                Source::Value(self.handle()?),
                self.slot.clone(),
                None,
                None,
                None,
            );
            g.store(held);
            let g = Bound::new(py, g)?;
            return Err(owner_died_error(g.as_any()));
        }
        op.on(py, held.guard_mut()?)
    }
}

/// What `value`, `value = x` and `add(d)` do under the lock.
enum Op<'a, 'py> {
    Get,
    Set(&'a Bound<'py, PyAny>),
    Add(&'a Bound<'py, PyAny>),
}

impl Op<'_, '_> {
    /// Applies the operation through a held guard; returns the value read or
    /// made (`None` for a set).
    fn on<'x>(&self, py: Python<'_>, g: &mut (dyn Erased<'x> + 'x)) -> PyResult<Py<PyAny>> {
        match self {
            Op::Get => g.get(py).unwrap_or_else(|| Err(shm_error("not a value"))),
            Op::Set(v) => g.set(v).map(|()| py.None()),
            Op::Add(d) => g.add(d),
        }
    }
}

/// The outcome of the fast path.
enum Fast<R> {
    Done(PyResult<R>),
    Died(Held),
    Busy,
}

/// Applies `op` under a lock taken for the call: the argument is converted
/// before the lock is taken and the result after it is released, so that no
/// Python code runs under it and other processes wait as little as possible.
/// Retries for a few microseconds while another process holds the lock.
///
/// # Safety
/// `v` must be the value inside `owner`.
unsafe fn typed_op<'a, T: Elem>(
    py: Python<'_>,
    owner: &'a Arc<AnyValue>,
    v: &'a SharedValue<T>,
    op: &Op<'_, '_>,
) -> Fast<Py<PyAny>> {
    let arg = match op {
        Op::Get => None,
        Op::Set(x) | Op::Add(x) => match T::from_py(x) {
            Ok(a) => Some(a),
            Err(e) => return Fast::Done(Err(e)),
        },
    };
    let once = || match v.try_lock() {
        Ok(mut g) => {
            let out = match (op, arg) {
                (Op::Set(_), Some(a)) => {
                    *g = a;
                    None
                }
                (Op::Add(_), Some(a)) => {
                    let new = (*g).plus(a);
                    *g = new;
                    Some(new)
                }
                _ => Some(*g),
            };
            drop(g); // unlocks
            Some(Fast::Done(match out {
                Some(x) => x.to_py(py),
                None => Ok(py.None()),
            }))
        }
        // SAFETY: the guard borrows `v`, inside `owner` (our contract), and was
        // taken by this thread just now.
        Err(LockError::OwnerDied(g)) => Some(Fast::Died(unsafe { Held::new(owner, Box::new(g)) })),
        Err(LockError::Failed(LockFailure::WouldBlock)) => None,
        Err(e) => Some(Fast::Done(Err(from_lock(e.into_failure())))),
    };
    once().or_else(|| spin(once)).unwrap_or(Fast::Busy)
}

#[pymethods]
impl Value {
    /// Creates value `name` holding `value` (owner: removed on close unless
    /// `persistent`). `dtype`: anything `numpy.dtype` takes (default int64).
    #[staticmethod]
    #[pyo3(signature = (name, value=None, dtype=None, *, persistent=false))]
    fn create(
        py: Python<'_>,
        name: &str,
        value: Option<Bound<'_, PyAny>>,
        dtype: Option<&Bound<'_, PyAny>>,
        persistent: bool,
    ) -> PyResult<Value> {
        let dt = match dtype {
            Some(d) => parse_dtype(d)?,
            None => Dtype::I64,
        };
        let opts = crate::options(persistent, "off")?;
        let init = match value {
            Some(v) => v,
            None => 0i64.into_pyobject(py)?.into_any(),
        };
        let v = for_dtype!(dt, AnyValue, T => with_value_init::<T>(name, &init, &opts)?);
        Ok(Value::wrap(v, name, dt, Ownership::created(persistent)))
    }

    /// Attaches value `name` (its dtype from the segment; not the owner).
    #[staticmethod]
    pub(crate) fn open(name: &str) -> PyResult<Value> {
        let dt = recorded_dtype(name, ObjectKind::Value)?;
        let v = for_dtype!(dt, AnyValue, T => SharedValue::<T>::open(name).map_err(from_error)?);
        Ok(Value::wrap(v, name, dt, Ownership::opened()))
    }

    /// The value, read under the lock.
    #[getter]
    fn get_value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.under_lock(py, Op::Get)
    }

    /// Writes the value under the lock.
    #[setter]
    fn set_value(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.under_lock(py, Op::Set(v)).map(drop)
    }

    /// Adds `delta` under the lock in one call (wrapping for integers); returns the
    /// new value.
    #[pyo3(signature = (delta=None))]
    fn add(&self, py: Python<'_>, delta: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let delta = match delta {
            Some(d) => d,
            None => 1i64.into_pyobject(py)?.into_any(),
        };
        self.under_lock(py, Op::Add(&delta))
    }

    /// The lock as a context manager (`with v.lock(): v.value += 1`); see `Guard`.
    /// With `recover=fn`, a dead holder's lock is repaired by `fn(guard)` (set
    /// `guard.value`) and marked consistent.
    #[pyo3(signature = (timeout=None, recover=None))]
    fn lock(&self, timeout: Option<f64>, recover: Option<Py<PyAny>>) -> PyResult<Guard> {
        crate::deadline(timeout)?;
        Ok(Guard::new(
            Source::Value(self.handle()?),
            self.slot.clone(),
            timeout,
            recover,
            None,
        ))
    }

    /// Alias of `lock()` (`multiprocessing.Value.get_lock()`).
    #[pyo3(signature = (timeout=None, recover=None))]
    fn get_lock(&self, timeout: Option<f64>, recover: Option<Py<PyAny>>) -> PyResult<Guard> {
        self.lock(timeout, recover)
    }

    /// Segment name.
    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    /// The element type's NPY descriptor.
    #[getter]
    fn descr(&self) -> &'static str {
        crate::type_str(self.dtype)
    }

    /// The element type, as a `numpy.dtype`.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        crate::numpy_dtype(py, self.dtype)
    }

    /// The segment's file.
    #[getter]
    fn path(&self) -> PyResult<Option<String>> {
        let h = self.handle()?;
        Ok(dispatch!(&*h, AnyValue, v => v.path()).map(|p| p.display().to_string()))
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

    /// Drops this handle; the owner removes the name now, even while a guard of
    /// it is still referenced. Idempotent.
    fn close(&self) {
        self.handle.close()
    }

    /// Pickles as "open this segment by name" (the copy is not the owner).
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        self.handle.reduce(py, vec![])
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<pyshmarray.Value {:?} dtype={}{}>",
            self.handle.name(),
            crate::type_str(self.dtype),
            if self.handle.is_closed() {
                " closed"
            } else {
                ""
            }
        )
    }
}
