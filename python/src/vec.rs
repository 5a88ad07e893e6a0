//! `SharedVec`: `Manager().list()` of numbers without the server.

use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PySlice};
use shmarray::{Dtype, ObjectKind, VecError};

use crate::array::Mapping;
use crate::errors::{from_error, from_lock, raise, shm_error};
use crate::life::{Handle, Named, Ownership};
use crate::objects::lifecycle_methods;
use crate::{dispatch, for_dtype, parse_dtype, typed_enum, Elem};

type TypedVec<T> = shmarray::SharedVec<T>;
typed_enum!(
    /// A `SharedVec<T>` of any element type.
    AnyVec,
    TypedVec
);

impl Named for AnyVec {
    fn remove_name(&self) -> PyResult<()> {
        dispatch!(self, AnyVec, v => v.unlink()).map_err(from_error)
    }
    fn file_path(&self) -> Option<std::path::PathBuf> {
        dispatch!(self, AnyVec, v => v.path())
    }
}

/// A vec error as the matching exception.
pub(crate) fn from_vec(e: VecError) -> PyErr {
    match e {
        VecError::Full { .. } => raise("CapacityError", e.to_string()),
        VecError::OutOfBounds { .. } => PyIndexError::new_err(e.to_string()),
        VecError::Params(p) => raise("ValueError", p.to_string()),
        VecError::Lock(l) => from_lock(l),
        VecError::Segment(s) => from_error(s),
        e => shm_error(e.to_string()),
    }
}

fn push<T: Elem>(py: Python<'_>, v: &TypedVec<T>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
    let x = T::from_py(x)?;
    py.detach(|| v.push(x)).map_err(from_vec)
}

fn extend<T: Elem>(py: Python<'_>, v: &TypedVec<T>, data: &[u8]) -> PyResult<()> {
    let items: Vec<T> = data
        .chunks_exact(std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned::<T>)
        .collect();
    py.detach(|| v.extend_from_slice(&items)).map_err(from_vec)
}

fn get<T: Elem>(py: Python<'_>, v: &TypedVec<T>, i: usize) -> PyResult<Option<Py<PyAny>>> {
    match py.detach(|| v.get(i)).map_err(from_vec)? {
        Some(x) => Ok(Some(x.to_py(py)?)),
        None => Ok(None),
    }
}

fn set<T: Elem>(py: Python<'_>, v: &TypedVec<T>, i: usize, x: &Bound<'_, PyAny>) -> PyResult<()> {
    let x = T::from_py(x)?;
    py.detach(|| v.set(i, x)).map_err(from_vec)?;
    Ok(())
}

fn pop<T: Elem>(py: Python<'_>, v: &TypedVec<T>) -> PyResult<Option<Py<PyAny>>> {
    match py.detach(|| v.pop()).map_err(from_vec)? {
        Some(x) => Ok(Some(x.to_py(py)?)),
        None => Ok(None),
    }
}

fn snapshot<T: Elem>(py: Python<'_>, v: &TypedVec<T>) -> PyResult<Vec<u8>> {
    let items = py.detach(|| v.to_vec()).map_err(from_vec)?;
    Ok(bytemuck::cast_slice(&items).to_vec())
}

/// A bounded list of numbers in shared memory: `multiprocessing.Manager().list()`
/// without the server process. `append`, `extend` (all or nothing), `v[i]`,
/// `v[i] = x`, `pop()`, `len`, iteration (over a snapshot), `view()` (a read-only
/// numpy view of the items, zero copy), `to_numpy()` (a copy taken under the
/// lock). Every operation runs under the segment's robust lock; a process killed
/// in the middle of one leaves no half-written element and no stuck lock (the next
/// user repairs it and `repairs` counts it). The capacity is fixed at creation
/// (`CapacityError` when full). Same lifecycle as every handle; pickles as "open by
/// name".
#[pyclass(frozen, module = "pyshmarray._native", name = "SharedVec")]
pub(crate) struct SharedVec {
    handle: Handle<AnyVec>,
    dtype: Dtype,
}

lifecycle_methods!(SharedVec);

impl SharedVec {
    pub(crate) fn open_handle(name: &str) -> PyResult<SharedVec> {
        let dt = crate::array::recorded_dtype(name, ObjectKind::Vec)?;
        let v = for_dtype!(dt, AnyVec, T => TypedVec::<T>::open(name).map_err(from_vec)?);
        Ok(SharedVec {
            handle: Handle::new("vec", name, v, Ownership::opened()),
            dtype: dt,
        })
    }

    /// `index` (negative: from the end) as a position below the current length.
    fn position(&self, index: i64) -> PyResult<usize> {
        let len = self.__len__()? as i64;
        let i = if index < 0 { index + len } else { index };
        if (0..len).contains(&i) {
            Ok(i as usize)
        } else {
            Err(PyIndexError::new_err("vec index out of range"))
        }
    }
}

#[pymethods]
impl SharedVec {
    /// Creates vec `name` with room for `capacity` items of `dtype` (a number type
    /// of at most 8 bytes; default float64). Owner: the name is removed on
    /// `close()` or collection, unless `persistent`.
    #[staticmethod]
    #[pyo3(signature = (name, capacity, dtype=None, *, persistent=false))]
    fn create(
        name: &str,
        capacity: i64,
        dtype: Option<&Bound<'_, PyAny>>,
        persistent: bool,
    ) -> PyResult<SharedVec> {
        let capacity = usize::try_from(capacity).map_err(|_| {
            raise(
                "ValueError",
                format!("capacity must not be negative, not {capacity}"),
            )
        })?;
        let dt = match dtype {
            Some(d) => parse_dtype(d)?,
            None => Dtype::F64,
        };
        let opts = crate::options(persistent, "off")?;
        let v = for_dtype!(dt, AnyVec, T => TypedVec::<T>::create_with(&opts, name, capacity).map_err(from_vec)?);
        Ok(SharedVec {
            handle: Handle::new("vec", name, v, Ownership::created(persistent)),
            dtype: dt,
        })
    }

    /// Attaches vec `name` (its dtype from the segment; not the owner).
    #[staticmethod]
    fn open(name: &str) -> PyResult<SharedVec> {
        Self::open_handle(name)
    }

    /// Appends `x` (`CapacityError` if full).
    fn append(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = self.handle.get()?;
        dispatch!(&*v, AnyVec, v => push(py, v, x))?;
        Ok(())
    }

    /// Appends every item of `items` (converted to the dtype), all or nothing:
    /// `CapacityError` and no change if they do not all fit.
    fn extend(&self, py: Python<'_>, items: &Bound<'_, PyAny>) -> PyResult<()> {
        let np = py.import("numpy")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", crate::type_str(self.dtype))?;
        let a = np.call_method("ascontiguousarray", (items,), Some(&kwargs))?;
        let a = a.call_method1("reshape", (-1,))?;
        let b = a.call_method0("tobytes")?;
        let data = b.cast::<PyBytes>()?.as_bytes();
        let v = self.handle.get()?;
        dispatch!(&*v, AnyVec, v => extend(py, v, data))
    }

    /// `v[i]` (negative from the end; `IndexError` beyond the length); a slice
    /// gives a numpy copy.
    fn __getitem__(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if index.is_instance_of::<PySlice>() {
            return Ok(self.to_numpy(py)?.bind(py).get_item(index)?.unbind());
        }
        let i = self.position(index.extract()?)?;
        let v = self.handle.get()?;
        dispatch!(&*v, AnyVec, v => get(py, v, i))?
            .ok_or_else(|| PyIndexError::new_err("vec index out of range"))
    }

    /// `v[i] = x` (an undoable write: a process killed mid-write leaves the old
    /// value).
    fn __setitem__(
        &self,
        py: Python<'_>,
        index: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if index.is_instance_of::<PySlice>() {
            return Err(PyTypeError::new_err(
                "a SharedVec sets one item at a time (v[i] = x)",
            ));
        }
        let i = self.position(index.extract()?)?;
        let v = self.handle.get()?;
        dispatch!(&*v, AnyVec, v => set(py, v, i, value))
    }

    /// Removes and returns the last item (`IndexError` if empty). Only the last
    /// item can be popped.
    #[pyo3(signature = (index=-1))]
    fn pop(&self, py: Python<'_>, index: i64) -> PyResult<Py<PyAny>> {
        if index != -1 {
            let len = self.__len__()? as i64;
            if index != len - 1 {
                return Err(raise(
                    "ValueError",
                    "a SharedVec pops its last item only (pop() or pop(-1))",
                ));
            }
        }
        let v = self.handle.get()?;
        dispatch!(&*v, AnyVec, v => pop(py, v))?
            .ok_or_else(|| PyIndexError::new_err("pop from empty vec"))
    }

    /// Removes every item.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let v = self.handle.get()?;
        py.detach(|| dispatch!(&*v, AnyVec, v => v.clear()))
            .map_err(from_vec)
    }

    /// Shortens the vec to `len` items (no effect if it is not longer).
    fn truncate(&self, py: Python<'_>, len: usize) -> PyResult<()> {
        let v = self.handle.get()?;
        py.detach(|| dispatch!(&*v, AnyVec, v => v.truncate(len)))
            .map_err(from_vec)
    }

    /// Number of items (read without the lock).
    fn __len__(&self) -> PyResult<usize> {
        let v = self.handle.get()?;
        Ok(dispatch!(&*v, AnyVec, v => v.len()))
    }

    /// Iterates over a snapshot of the items.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.tolist(py)?.try_iter()?.into_any())
    }

    /// `x in v` (over a snapshot).
    fn __contains__(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.tolist(py)?.contains(x)
    }

    /// The position of the first item equal to `x` (`ValueError` if none).
    fn index(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        let l = self.tolist(py)?;
        l.index(x)
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("value is not in the vec"))
    }

    /// How many items equal `x`.
    fn count(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut n = 0;
        for item in self.tolist(py)?.iter() {
            if item.eq(x)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The items as a list (a snapshot).
    fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let a = self.to_numpy(py)?;
        Ok(a.bind(py).call_method0("tolist")?.cast_into::<PyList>()?)
    }

    /// The items as a new numpy array (a copy taken under the lock).
    fn to_numpy(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.handle.get()?;
        let bytes = dispatch!(&*v, AnyVec, v => snapshot(py, v))?;
        let np = py.import("numpy")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", crate::type_str(self.dtype))?;
        let a = np.call_method(
            "frombuffer",
            (pyo3::types::PyByteArray::new(py, &bytes),),
            Some(&kwargs),
        )?;
        Ok(a.unbind())
    }

    /// `numpy.asarray(v)`: a copy of the items taken under the lock.
    #[pyo3(signature = (dtype=None, copy=None))]
    fn __array__(
        &self,
        py: Python<'_>,
        dtype: Option<Py<PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        let _ = copy; // always a copy (the items change under other processes)
        let a = self.to_numpy(py)?;
        match dtype {
            Some(d) => Ok(a.bind(py).call_method1("astype", (d,))?.unbind()),
            None => Ok(a),
        }
    }

    /// A read-only numpy array over the first `len(v)` items in shared memory
    /// (zero copy): items other processes `set` later show through; items
    /// appended later do not (take a new view).
    fn view(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.handle.get()?;
        let (file, control, len) = dispatch!(&*v, AnyVec, x => (x.file(), x.control(), x.len()));
        let control =
            control.ok_or_else(|| shm_error("this vec has no control block to map it by"))?;
        let nbytes = len * self.dtype.size();
        let m = Mapping::of_file(
            file,
            control.data_offset,
            nbytes,
            &self.dtype.descr(),
            &[len],
            false,
            false,
        )?;
        Ok(py
            .import("numpy")?
            .call_method1("asarray", (Bound::new(py, m)?,))?
            .unbind())
    }

    /// The most items it holds.
    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        let v = self.handle.get()?;
        Ok(dispatch!(&*v, AnyVec, v => v.capacity()))
    }

    /// How many times the vec was repaired after a process died holding its lock.
    #[getter]
    fn repairs(&self) -> PyResult<u64> {
        let v = self.handle.get()?;
        Ok(dispatch!(&*v, AnyVec, v => v.repairs()))
    }

    /// The item type, as a `numpy.dtype`.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        crate::numpy_dtype(py, self.dtype)
    }

    fn __repr__(&self) -> String {
        match self.__len__() {
            Ok(n) => format!(
                "<pyshmarray.SharedVec {:?} dtype={} len={n}>",
                self.handle.name(),
                crate::type_str(self.dtype)
            ),
            Err(_) => format!("<pyshmarray.SharedVec {:?} closed>", self.handle.name()),
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<SharedVec>();
}
