//! `SharedArray`: a named array segment, its numpy view, its locks and counters.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use memmap2::{Mmap, MmapMut, MmapOptions};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use shmarray::ndarray::{IxDyn, Order};
use shmarray::{inspect, Descr, Dtype, Namespace, ObjectKind, Options, SegmentInfo};

use crate::counter::{Counter, CounterSource};
use crate::errors::{from_error, raise, shm_error};
use crate::guard::{Guard, Slot, Source};
use crate::{dispatch, for_dtype, lock, parse_descr};

use crate::handles::{AnyArray, Arr};

/// Where the element data is, in a mapping of the bindings' own.
enum Map {
    Ro(#[allow(dead_code)] Mmap),
    Rw(#[allow(dead_code)] MmapMut),
}

/// A mapping of an array segment's file that numpy arrays use as their memory
/// (through `__array_interface__`): it lives as long as any array made from it,
/// independently of the `SharedArray` handle.
#[pyclass(frozen, module = "pyshmarray._native", name = "Mapping")]
pub(crate) struct Mapping {
    _map: Map,
    addr: usize,
    shape: Vec<usize>,
    strides: Option<Vec<isize>>,
    typestr: String,
    readonly: bool,
}

impl Mapping {
    /// Maps the data of `a` (an attached, validated segment).
    fn new(
        a: &AnyArray,
        descr: &Descr,
        shape: &[usize],
        fortran: bool,
        writable: bool,
    ) -> PyResult<Mapping> {
        let control = dispatch!(a, AnyArray, x => x.control()).ok_or_else(|| {
            shm_error("this array has no control block (a plain .npy file): use numpy.load")
        })?;
        let offset = usize::try_from(control.data_offset)
            .map_err(|_| shm_error("data offset out of range"))?;
        let nbytes = dispatch!(a, AnyArray, x => x.nbytes());
        let file = a.file();
        let file_len = file
            .metadata()
            .map_err(|e| shm_error(format!("fstat: {e}")))?
            .len();
        let len = offset
            .checked_add(nbytes)
            .ok_or_else(|| shm_error("array size overflows"))?
            .max(usize::try_from(file_len).unwrap_or(usize::MAX));
        let (map, base) = if writable {
            // SAFETY: a shared mapping of a shared-memory segment: other processes
            // may change the bytes at any time, which is the crate's documented
            // contract (memmap2's for files others modify). Rust never forms a
            // reference into this mapping; only numpy reads and writes it, through
            // the address.
            let mut m = unsafe { MmapOptions::new().len(len).map_mut(file) }
                .map_err(|e| shm_error(format!("mmap: {e}")))?;
            let p = m.as_mut_ptr() as usize;
            (Map::Rw(m), p)
        } else {
            // SAFETY: as above, read-only.
            let m = unsafe { MmapOptions::new().len(len).map(file) }
                .map_err(|e| shm_error(format!("mmap: {e}")))?;
            let p = m.as_ptr() as usize;
            (Map::Ro(m), p)
        };
        // A record is mapped as opaque bytes of its size (`|V16`) and viewed with
        // its numpy dtype afterwards (`ndarray_obj`).
        let itemsize = descr.itemsize().unwrap_or(0);
        let typestr = match descr.dtype() {
            Some(d) => crate::type_str(d).to_string(),
            None => format!("|V{itemsize}"),
        };
        let itemsize = itemsize as isize;
        let strides = fortran.then(|| {
            let mut s = Vec::with_capacity(shape.len());
            let mut acc = itemsize;
            for &d in shape {
                s.push(acc);
                acc *= d.max(1) as isize;
            }
            s
        });
        Ok(Mapping {
            _map: map,
            addr: base + offset,
            shape: shape.to_vec(),
            strides,
            typestr,
            readonly: !writable,
        })
    }
}

#[pymethods]
impl Mapping {
    /// numpy's array interface: the data of the segment, in place.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("shape", PyTuple::new(py, &self.shape)?)?;
        d.set_item("typestr", &self.typestr)?;
        d.set_item("data", (self.addr, self.readonly))?;
        match &self.strides {
            Some(s) => d.set_item("strides", PyTuple::new(py, s)?)?,
            None => d.set_item("strides", py.None())?,
        }
        Ok(d)
    }
}

/// A shared array segment (from `pyshmarray.create` / `pyshmarray.open`).
///
/// `.ndarray` is a numpy array over the segment's memory (zero copy, writable
/// unless opened read-only); the mapping behind it lives as long as any array that
/// uses it. The creator owns the name: `close()` (or garbage collection of the
/// last reference) removes it unless the array was created `persistent=True`.
#[pyclass(frozen, module = "pyshmarray._native", name = "SharedArray")]
pub(crate) struct SharedArray {
    handle: Mutex<Option<Arc<AnyArray>>>,
    ndarray: Mutex<Option<Py<PyAny>>>,
    name: String,
    path: Option<PathBuf>,
    shape: Vec<usize>,
    /// The header's descriptor (a record's fields; the handle is then a byte view).
    descr: Descr,
    fortran: bool,
    writable: bool,
    persistent: bool,
}

impl SharedArray {
    fn wrap(a: AnyArray, persistent: bool) -> SharedArray {
        let (name, path, shape, descr, fortran, writable) = dispatch!(&a, AnyArray, x => (
            x.name().unwrap_or("").to_string(),
            x.path(),
            x.shape().to_vec(),
            x.descr().clone(),
            x.is_fortran(),
            x.is_writable(),
        ));
        SharedArray {
            handle: Mutex::new(Some(Arc::new(a))),
            ndarray: Mutex::new(None),
            name,
            path,
            shape,
            descr,
            fortran,
            writable,
            persistent,
        }
    }

    pub(crate) fn handle(&self) -> PyResult<Arc<AnyArray>> {
        lock(&self.handle)
            .clone()
            .ok_or_else(|| shm_error(format!("array {:?} is closed", self.name)))
    }

    fn ndarray_obj(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut cached = lock(&self.ndarray);
        if let Some(a) = cached.as_ref() {
            return Ok(a.clone_ref(py));
        }
        let h = self.handle()?;
        let m = Mapping::new(&h, &self.descr, &self.shape, self.fortran, self.writable)?;
        let mut arr = py
            .import("numpy")?
            .call_method1("asarray", (Bound::new(py, m)?,))?;
        if self.descr.is_record() {
            arr = arr.call_method1("view", (crate::numpy_dtype_of(py, &self.descr)?,))?;
        }
        let arr = arr.unbind();
        *cached = Some(arr.clone_ref(py));
        Ok(arr)
    }

    fn guard(
        &self,
        py: Python<'_>,
        read: bool,
        timeout: Option<f64>,
        recover: Option<Py<PyAny>>,
    ) -> PyResult<Guard> {
        crate::deadline(timeout)?;
        let h = self.handle()?;
        let arr = self.ndarray_obj(py)?;
        let (source, target) = if read {
            let view = arr.bind(py).call_method0("view")?;
            view.call_method("setflags", (), Some(&[("write", false)].into_py_dict(py)?))?;
            (Source::Read(h), view.unbind())
        } else {
            (Source::Write(h), arr.clone_ref(py))
        };
        // A repair needs the writable array (a read that found a dead writer holds
        // the write lock while `recover` runs).
        Ok(Guard::new(
            source,
            Arc::new(Slot::default()),
            timeout,
            recover,
            Some(target),
        )
        .with_repair_arg(arr))
    }
}

use pyo3::types::IntoPyDict;

#[pymethods]
impl SharedArray {
    /// Segment name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The segment's file (for `numpy.load(path, mmap_mode="r+")`).
    #[getter]
    fn path(&self) -> Option<String> {
        self.path.as_ref().map(|p| p.display().to_string())
    }

    /// The shape, from the segment's header.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.shape)
    }

    /// The element type's NPY descriptor (`'<f8'`; a structured dtype's list of
    /// fields as the header holds it, `"[('x', '<f4'), ('y', '<f4')]"`).
    #[getter]
    fn descr(&self) -> String {
        self.descr.to_string()
    }

    /// The element type, as a `numpy.dtype`.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        crate::numpy_dtype_of(py, &self.descr)
    }

    /// Number of dimensions.
    #[getter]
    fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Length of the first axis.
    fn __len__(&self) -> PyResult<usize> {
        self.shape
            .first()
            .copied()
            .ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("len() of a 0-d array"))
    }

    /// Whether the data is in Fortran (column-major) order.
    #[getter]
    fn fortran(&self) -> bool {
        self.fortran
    }

    /// Whether this handle can write (not opened read-only).
    #[getter]
    fn writable(&self) -> bool {
        self.writable
    }

    /// Whether closing this handle removes the name.
    #[getter]
    fn is_owner(&self) -> PyResult<bool> {
        Ok(self.handle()?.is_owner() && !self.persistent)
    }

    /// Whether `close()` has been called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.handle).is_none()
    }

    /// Size of the data in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.descr.itemsize().unwrap_or(0)
    }

    /// A numpy array over the segment's memory (zero copy).
    #[getter]
    fn ndarray(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.ndarray_obj(py)
    }

    /// `numpy.asarray(a)` works on the handle itself.
    #[pyo3(signature = (dtype=None, copy=None))]
    fn __array__(
        &self,
        py: Python<'_>,
        dtype: Option<Py<PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        let a = self.ndarray_obj(py)?;
        let np = py.import("numpy")?;
        let kwargs = PyDict::new(py);
        if let Some(d) = dtype {
            kwargs.set_item("dtype", d)?;
        }
        if copy == Some(true) {
            return Ok(np.call_method("array", (a,), Some(&kwargs))?.unbind());
        }
        Ok(np.call_method("asarray", (a,), Some(&kwargs))?.unbind())
    }

    /// The array's robust lock (exclusive) as a context manager; see `Guard`.
    #[pyo3(signature = (timeout=None, recover=None))]
    fn lock(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        recover: Option<Py<PyAny>>,
    ) -> PyResult<Guard> {
        self.guard(py, false, timeout, recover)
    }

    /// The write side of the read-write lock (the same lock as `lock()`).
    #[pyo3(signature = (timeout=None, recover=None))]
    fn write(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        recover: Option<Py<PyAny>>,
    ) -> PyResult<Guard> {
        self.guard(py, false, timeout, recover)
    }

    /// The read side: any number of readers at once, no writer. Entering returns a
    /// read-only view. A dead writer's unrepaired data gives `OwnerDiedError` whose
    /// guard is the *write* guard (or, with `recover=fn`, `fn(array)` runs first).
    #[pyo3(signature = (timeout=None, recover=None))]
    fn read(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        recover: Option<Py<PyAny>>,
    ) -> PyResult<Guard> {
        self.guard(py, true, timeout, recover)
    }

    /// One of the segment's 8 cache-padded atomic counters.
    fn counter(&self, index: usize) -> PyResult<Counter> {
        let h = self.handle()?;
        h.counter(index).map_err(from_error)?;
        Ok(Counter {
            source: CounterSource::Array(h, index),
        })
    }

    /// Removes the name now (mappings stay valid; new opens fail).
    fn unlink(&self) -> PyResult<()> {
        self.handle()?.unlink().map_err(from_error)
    }

    /// Drops this handle: the owner (unless persistent) removes the name. numpy
    /// arrays made from it stay valid. Idempotent.
    fn close(&self) -> PyResult<()> {
        let h = lock(&self.handle).take();
        *lock(&self.ndarray) = None;
        if let Some(h) = h {
            if h.is_owner() && !self.persistent {
                // Remove the name now even if a guard still holds the handle.
                let _ = h.unlink();
            }
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<pyshmarray.SharedArray {:?} shape={:?} dtype={}{}>",
            self.name,
            self.shape,
            self.descr,
            if self.closed() { " closed" } else { "" }
        )
    }
}

/// Creates a zero-filled array `name` of `shape` (an int or a tuple) and `dtype`
/// (anything `numpy.dtype` takes; default float64) in `/dev/shm` (or
/// `$SHMARRAY_DIR`). The creator owns the name: it is removed on `close()` or
/// when the handle is collected, unless `persistent=True`. `huge_pages` is
/// `"off"`, `"prefer"` or `"require"`. `AlreadyExistsError` if the name is taken.
#[pyfunction]
#[pyo3(signature = (name, shape, dtype=None, *, fortran=false, persistent=false, huge_pages="off"))]
pub(crate) fn create(
    py: Python<'_>,
    name: &str,
    shape: &Bound<'_, PyAny>,
    dtype: Option<&Bound<'_, PyAny>>,
    fortran: bool,
    persistent: bool,
    huge_pages: &str,
) -> PyResult<SharedArray> {
    let descr = match dtype {
        Some(d) => parse_descr(d)?,
        None => Dtype::F64.descr(),
    };
    let shape: Vec<usize> = match shape.extract::<usize>() {
        Ok(n) => vec![n],
        Err(_) => shape.extract()?,
    };
    if shape.len() > 64 {
        // numpy's limit, which the crate enforces too: say so as numpy would.
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{} dimensions: a segment has at most 64 (numpy's limit)",
            shape.len()
        )));
    }
    let opts =
        crate::options(persistent, huge_pages)?.order(if fortran { Order::F } else { Order::C });
    let a = match descr.dtype() {
        Some(dt) => for_dtype!(dt, AnyArray, T => {
            let created = py.detach(|| Arr::<T>::create_with(&opts, name, IxDyn(&shape)));
            created.map_err(from_error)?
        }),
        // A structured dtype: a byte view, mapped with the record's numpy dtype.
        None => {
            let created = py.detach(|| Arr::<u8>::create_bytes_with(&opts, name, &descr, &shape));
            AnyArray::U8(created.map_err(from_error)?)
        }
    };
    Ok(SharedArray::wrap(a, persistent))
}

/// What segment `name` says about itself, checked to be of `kind`.
fn recorded_info(name: &str, kind: ObjectKind) -> PyResult<SegmentInfo> {
    let ns = Namespace::default_dir().map_err(from_error)?;
    let info = inspect(&ns, name).map_err(from_error)?;
    if info.kind() != kind {
        return Err(raise(
            "TypeMismatchError",
            format!("segment {name:?} is a {}, not a {}", info.kind(), kind),
        ));
    }
    Ok(info)
}

/// The element type recorded in segment `name`, checked to be of `kind`.
pub(crate) fn recorded_dtype(name: &str, kind: ObjectKind) -> PyResult<Dtype> {
    let info = recorded_info(name, kind)?;
    // A queue records its item type's code in parameter 3 (FORMAT.md); an
    // array's header says its element type.
    let recorded = match (kind, info.control) {
        (ObjectKind::Queue, Some(c)) => u32::try_from(c.params[3]).ok().and_then(Dtype::from_code),
        _ => info.layout.dtype,
    };
    recorded.ok_or_else(|| {
        raise(
            "TypeMismatchError",
            format!(
                "segment {name:?} holds {}, which these bindings do not support",
                info.layout.header.descr.literal()
            ),
        )
    })
}

/// `pyshmarray.open`: attaches array `name`; dtype and shape from its header.
#[pyfunction]
#[pyo3(signature = (name, readonly=false))]
pub(crate) fn open(name: &str, readonly: bool) -> PyResult<SharedArray> {
    let opts = Options::new().read_only(readonly);
    let descr = recorded_info(name, ObjectKind::Array)?.layout.header.descr;
    if descr.is_record() {
        // Any structured dtype with fields of the supported types: a byte view,
        // mapped with the numpy dtype its header describes.
        if !descr.is_supported() {
            return Err(raise(
                "TypeMismatchError",
                format!(
                    "segment {name:?} holds {}, which these bindings do not support",
                    descr.literal()
                ),
            ));
        }
        let a = Arr::<u8>::open_bytes_with(&opts, name).map_err(from_error)?;
        if !a.descr().is_record() {
            return Err(raise(
                "TypeMismatchError",
                format!("segment {name:?} changed while it was opened"),
            ));
        }
        return Ok(SharedArray::wrap(AnyArray::U8(a), false));
    }
    let dt = recorded_dtype(name, ObjectKind::Array)?;
    let a = for_dtype!(dt, AnyArray, T => Arr::<T>::open_with(&opts, name).map_err(from_error)?);
    Ok(SharedArray::wrap(a, false))
}

impl Drop for SharedArray {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<SharedArray>();
    f::<Counter>();
    f::<Mapping>();
}
