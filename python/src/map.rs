//! `SharedMap`: `Manager().dict()` without the server, on the crate's `BytesMap`
//! (key and value dtypes chosen at run time).

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use shmarray::{BytesMap, Dtype, MapError};

use crate::errors::{from_error, from_lock, raise, shm_error};
use crate::life::{Handle, Named, Ownership};
use crate::objects::lifecycle_methods;
use crate::{with_dtype, Elem};

impl Named for BytesMap {
    fn remove_name(&self) -> PyResult<()> {
        self.unlink().map_err(from_error)
    }
    fn file_path(&self) -> Option<std::path::PathBuf> {
        self.path()
    }
}

/// A map error as the matching exception.
pub(crate) fn from_map(e: MapError) -> PyErr {
    match e {
        MapError::Full { .. } => raise("CapacityError", e.to_string()),
        MapError::Params(p) => raise("ValueError", p.to_string()),
        MapError::Lock(l) => from_lock(l),
        MapError::Segment(s) => from_error(s),
        e => shm_error(e.to_string()),
    }
}

/// How keys or values of one numpy dtype become bytes and back.
pub(crate) enum Codec {
    /// A number type of the bindings: Python `int`/`float`, without numpy.
    Scalar(Dtype),
    /// `S<n>`: `bytes` (a `str` is encoded as UTF-8), zero-padded to `n`; read
    /// back without the trailing NULs (numpy's rule), as Rust's `FixedStr<n>`.
    Bytes(usize),
    /// Any other fixed-size dtype (records, `U<n>`, ...), through numpy: values
    /// come back as numpy scalars (`numpy.void` for records).
    Numpy,
}

/// A codec with its numpy dtype and size.
pub(crate) struct Typed {
    codec: Codec,
    dtype: Py<PyAny>,
    size: usize,
}

impl Typed {
    /// From anything `numpy.dtype` takes; fixed size, no Python objects.
    pub(crate) fn parse(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Typed> {
        let py = obj.py();
        let dtype = py.import("numpy")?.getattr("dtype")?.call1((obj,))?;
        let size: usize = dtype.getattr("itemsize")?.extract()?;
        let has_object: bool = dtype.getattr("hasobject")?.extract()?;
        if has_object || size == 0 {
            return Err(raise(
                "TypeMismatchError",
                format!(
                    "the {what} dtype must have a fixed size and no Python objects, not {}",
                    dtype.str()?
                ),
            ));
        }
        let kind: String = dtype.getattr("kind")?.extract()?;
        let descr: String = dtype.getattr("str")?.extract()?;
        let codec = match (kind.as_str(), Dtype::from_descr(&descr)) {
            ("S", _) => Codec::Bytes(size),
            (_, Some(dt)) => {
                with_dtype!(dt, T => { let _ = std::mem::size_of::<T>(); Codec::Scalar(dt) }, _other => Codec::Numpy)
            }
            _ => Codec::Numpy,
        };
        Ok(Typed {
            codec,
            dtype: dtype.unbind(),
            size,
        })
    }

    /// The numpy dtype.
    pub(crate) fn dtype(&self, py: Python<'_>) -> Py<PyAny> {
        self.dtype.clone_ref(py)
    }

    /// `obj` as `size` bytes.
    pub(crate) fn encode(&self, obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let py = obj.py();
        match self.codec {
            Codec::Scalar(dt) => with_dtype!(dt,
                T => Ok(bytemuck::bytes_of(&T::from_py(obj)?).to_vec()),
                _other => self.encode_numpy(obj)),
            Codec::Bytes(n) => {
                let b: Vec<u8> = if let Ok(s) = obj.cast::<PyString>() {
                    s.to_cow()?.as_bytes().to_vec()
                } else if let Ok(b) = obj.cast::<PyBytes>() {
                    b.as_bytes().to_vec()
                } else if obj.hasattr("tobytes")? && obj.hasattr("dtype")? {
                    // A numpy bytes scalar.
                    obj.call_method0("tobytes")?.extract()?
                } else {
                    return Err(PyTypeError::new_err(format!(
                        "expected bytes or str for an S{n} field, not {}",
                        obj.get_type().name()?
                    )));
                };
                let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                if end > n {
                    return Err(raise(
                        "ValueError",
                        format!("{} bytes do not fit in S{n}", b.len()),
                    ));
                }
                let mut out = vec![0u8; n];
                out[..end].copy_from_slice(&b[..end]);
                let _ = py;
                Ok(out)
            }
            Codec::Numpy => self.encode_numpy(obj),
        }
    }

    fn encode_numpy(&self, obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let py = obj.py();
        let np = py.import("numpy")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", self.dtype.bind(py))?;
        let a = np.call_method("array", (obj,), Some(&kwargs))?;
        let ndim: usize = a.getattr("ndim")?.extract()?;
        if ndim != 0 {
            return Err(PyTypeError::new_err(format!(
                "expected one {} item, not an array of shape {}",
                self.dtype.bind(py).str()?,
                a.getattr("shape")?.str()?
            )));
        }
        let b: Vec<u8> = a.call_method0("tobytes")?.extract()?;
        Ok(b)
    }

    /// The Python object of `size` bytes.
    pub(crate) fn decode(&self, py: Python<'_>, b: &[u8]) -> PyResult<Py<PyAny>> {
        match self.codec {
            Codec::Scalar(dt) => with_dtype!(dt,
                T => bytemuck::pod_read_unaligned::<T>(b).to_py(py),
                _other => self.decode_numpy(py, b)),
            Codec::Bytes(_) => {
                let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                Ok(PyBytes::new(py, &b[..end]).into_any().unbind())
            }
            Codec::Numpy => self.decode_numpy(py, b),
        }
    }

    fn decode_numpy(&self, py: Python<'_>, b: &[u8]) -> PyResult<Py<PyAny>> {
        let np = py.import("numpy")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", self.dtype.bind(py))?;
        let a = np.call_method("frombuffer", (PyBytes::new(py, b),), Some(&kwargs))?;
        Ok(a.get_item(0)?.unbind())
    }
}

/// A hash map in shared memory: `multiprocessing.Manager().dict()` without the
/// server process, for keys and values of fixed-size numpy dtypes (numbers,
/// records, `S<n>` bytes or `U<n>` strings). Every operation holds the lock of one
/// shard for a few hundred nanoseconds (a call from Python takes about a
/// microsecond, the GIL released meanwhile); a process killed in the middle of one
/// leaves no torn entry and no stuck lock (the next user repairs the shard and
/// `repairs` counts it). Keys are compared by their bytes.
///
/// The capacity is fixed at creation (`CapacityError` when full). Iteration,
/// `keys()`, `values()` and `items()` work on a snapshot (lists, as
/// `Manager().dict()` returns). Same lifecycle as every handle; pickles as "open
/// by name" with the same dtypes.
#[pyclass(frozen, module = "pyshmarray._native", name = "SharedMap")]
pub(crate) struct SharedMap {
    handle: Handle<BytesMap>,
    key: Typed,
    value: Typed,
}

lifecycle_methods!(SharedMap, no_reduce);

impl SharedMap {
    fn wrap(m: BytesMap, name: &str, key: Typed, value: Typed, own: Ownership) -> SharedMap {
        SharedMap {
            handle: Handle::new("map", name, m, own),
            key,
            value,
        }
    }

    pub(crate) fn open_handle(
        name: &str,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<SharedMap> {
        let key = Typed::parse(key, "key")?;
        let value = Typed::parse(value, "value")?;
        let m = BytesMap::open(name).map_err(from_map)?;
        if (m.key_size(), m.value_size()) != (key.size, value.size) {
            return Err(raise(
                "TypeMismatchError",
                format!(
                    "map {name:?} has {}-byte keys and {}-byte values, not {} and {}",
                    m.key_size(),
                    m.value_size(),
                    key.size,
                    value.size
                ),
            ));
        }
        Ok(SharedMap::wrap(m, name, key, value, Ownership::opened()))
    }

    fn entries(&self, py: Python<'_>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let m = self.handle.get()?;
        py.detach(|| m.to_vec()).map_err(from_map)
    }

    fn key_error(key: &Bound<'_, PyAny>) -> PyErr {
        PyKeyError::new_err(key.clone().unbind())
    }
}

#[pymethods]
impl SharedMap {
    /// Creates map `name` for `capacity` entries with keys of dtype `key` and
    /// values of dtype `value` (anything `numpy.dtype` takes, fixed size). Owner:
    /// the name is removed on `close()` or collection, unless `persistent`.
    #[staticmethod]
    #[pyo3(signature = (name, capacity, key, value, *, persistent=false))]
    fn create(
        name: &str,
        capacity: i64,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        persistent: bool,
    ) -> PyResult<SharedMap> {
        let capacity = usize::try_from(capacity)
            .ok()
            .filter(|&c| c >= 1)
            .ok_or_else(|| {
                raise(
                    "ValueError",
                    format!("capacity must be at least 1, not {capacity}"),
                )
            })?;
        let key = Typed::parse(key, "key")?;
        let value = Typed::parse(value, "value")?;
        let opts = crate::options(persistent, "off")?;
        let m =
            BytesMap::create_with(&opts, name, key.size, value.size, capacity).map_err(from_map)?;
        Ok(SharedMap::wrap(
            m,
            name,
            key,
            value,
            Ownership::created(persistent),
        ))
    }

    /// Attaches map `name` with keys of dtype `key` and values of dtype `value`
    /// (their sizes are checked against the segment; not the owner).
    #[staticmethod]
    fn open(name: &str, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<SharedMap> {
        Self::open_handle(name, key, value)
    }

    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let k = self.key.encode(key)?;
        let m = self.handle.get()?;
        match py.detach(|| m.get(&k)).map_err(from_map)? {
            Some(v) => self.value.decode(py, &v),
            None => Err(Self::key_error(key)),
        }
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let k = self.key.encode(key)?;
        let v = self.value.encode(value)?;
        let m = self.handle.get()?;
        py.detach(|| m.insert(&k, &v)).map_err(from_map)?;
        Ok(())
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = self.key.encode(key)?;
        let m = self.handle.get()?;
        match py.detach(|| m.remove(&k)).map_err(from_map)? {
            Some(_) => Ok(()),
            None => Err(Self::key_error(key)),
        }
    }

    /// `key in m` (a key that the key dtype cannot hold is not in it).
    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(k) = self.key.encode(key) else {
            return Ok(false);
        };
        let m = self.handle.get()?;
        py.detach(|| m.contains_key(&k)).map_err(from_map)
    }

    /// Number of entries (exact when nobody is changing the map).
    fn __len__(&self) -> PyResult<usize> {
        Ok(self.handle.get()?.len())
    }

    /// Iterates over a snapshot of the keys.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.keys(py)?.try_iter()?.into_any())
    }

    /// The keys, as a list (a snapshot, shard by shard).
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let e = self.entries(py)?;
        let keys = e
            .iter()
            .map(|(k, _)| self.key.decode(py, k))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, keys)
    }

    /// The values, as a list (a snapshot).
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let e = self.entries(py)?;
        let values = e
            .iter()
            .map(|(_, v)| self.value.decode(py, v))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, values)
    }

    /// The `(key, value)` pairs, as a list (a snapshot).
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let e = self.entries(py)?;
        let items = e
            .iter()
            .map(|(k, v)| Ok((self.key.decode(py, k)?, self.value.decode(py, v)?)))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// A `dict` copy (a snapshot).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.entries(py)? {
            d.set_item(self.key.decode(py, &k)?, self.value.decode(py, &v)?)?;
        }
        Ok(d)
    }

    /// Same as `to_dict()` (`dict.copy` gives a plain dict too).
    fn copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.to_dict(py)
    }

    /// The value under `key`, or `default`.
    #[pyo3(signature = (key, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let Ok(k) = self.key.encode(key) else {
            return Ok(default.unwrap_or_else(|| py.None()));
        };
        let m = self.handle.get()?;
        match py.detach(|| m.get(&k)).map_err(from_map)? {
            Some(v) => self.value.decode(py, &v),
            None => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    /// The value under `key`; if absent, inserts `default` first (atomically) and
    /// returns it. A typed map cannot store `None`: pass a default for absent keys.
    #[pyo3(signature = (key, default=None))]
    fn setdefault(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let k = self.key.encode(key)?;
        let m = self.handle.get()?;
        let Some(default) = default.filter(|d| !d.is_none()) else {
            return match py.detach(|| m.get(&k)).map_err(from_map)? {
                Some(v) => self.value.decode(py, &v),
                None => Err(PyTypeError::new_err(
                    "setdefault: the key is absent and the map cannot store None: pass a default",
                )),
            };
        };
        let d = self.value.encode(default)?;
        let v = py.detach(|| m.upsert(&k, &d, |_| {})).map_err(from_map)?;
        self.value.decode(py, &v)
    }

    /// Removes `key` and returns its value; if absent, returns `default` (or
    /// raises `KeyError` without one).
    #[pyo3(signature = (key, *default))]
    fn pop(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err(format!(
                "pop expected at most 2 arguments, got {}",
                default.len() + 1
            )));
        }
        let removed = match self.key.encode(key) {
            Ok(k) => {
                let m = self.handle.get()?;
                py.detach(|| m.remove(&k)).map_err(from_map)?
            }
            Err(e) if default.is_empty() => return Err(e),
            Err(_) => None,
        };
        match removed {
            Some(v) => self.value.decode(py, &v),
            None if default.is_empty() => Err(Self::key_error(key)),
            None => Ok(default.get_item(0)?.unbind()),
        }
    }

    /// Removes and returns some `(key, value)` pair (`KeyError` if empty).
    fn popitem(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let m = self.handle.get()?;
        // Another process may take the entry first: try the next one.
        loop {
            let e = self.entries(py)?;
            if e.is_empty() {
                return Err(PyKeyError::new_err("popitem(): the map is empty"));
            }
            for (k, _) in e {
                if let Some(v) = py.detach(|| m.remove(&k)).map_err(from_map)? {
                    return Ok((self.key.decode(py, &k)?, self.value.decode(py, &v)?));
                }
            }
        }
    }

    /// Inserts every pair of `other` (a mapping or an iterable of pairs) and of
    /// the keyword arguments, as `dict.update`.
    #[pyo3(signature = (other=None, **kwargs))]
    fn update(
        &self,
        py: Python<'_>,
        other: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        if let Some(o) = other {
            if o.hasattr("keys")? {
                for k in o.call_method0("keys")?.try_iter()? {
                    let k = k?;
                    let v = o.get_item(&k)?;
                    self.__setitem__(py, &k, &v)?;
                }
            } else {
                for pair in o.try_iter()? {
                    let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
                    self.__setitem__(py, &k, &v)?;
                }
            }
        }
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                self.__setitem__(py, &k, &v)?;
            }
        }
        Ok(())
    }

    /// Replaces the value under `key` with `fn(value)`, atomically: `fn` runs
    /// under the shard's lock, so no other process changes the entry meanwhile
    /// (`m.apply(k, lambda n: n + 1)` counts without lost updates). Returns the new
    /// value; `KeyError` if `key` is absent (insert it first with `setdefault`).
    /// If `fn` raises, the value is unchanged. `fn` must be short and must not use
    /// this map (`DeadlockError` on the same shard).
    #[pyo3(name = "apply")]
    fn apply_fn(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        func: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let k = self.key.encode(key)?;
        let m = self.handle.get()?;
        let func = func.clone().unbind();
        let mut failure: Option<PyErr> = None;
        let mut result: Option<Py<PyAny>> = None;
        let found = py
            .detach(|| {
                m.update(&k, |v| {
                    Python::attach(|py| {
                        let r = self
                            .value
                            .decode(py, v)
                            .and_then(|old| func.bind(py).call1((old,)))
                            .and_then(|new| Ok((self.value.encode(&new)?, new.unbind())));
                        match r {
                            Ok((bytes, new)) => {
                                v.copy_from_slice(&bytes);
                                result = Some(new);
                            }
                            Err(e) => failure = Some(e),
                        }
                    })
                })
            })
            .map_err(from_map)?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !found {
            return Err(Self::key_error(key));
        }
        // The stored value, as a later `m[key]` reads it (after the dtype's
        // conversion).
        self.value.decode(
            py,
            &self
                .value
                .encode(result.expect("set when found").bind(py))?,
        )
    }

    /// Removes every entry.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let m = self.handle.get()?;
        py.detach(|| m.clear()).map_err(from_map)
    }

    /// The capacity the map was created with.
    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        Ok(self.handle.get()?.capacity())
    }

    /// Number of shards (each with its own lock).
    #[getter]
    fn shards(&self) -> PyResult<usize> {
        Ok(self.handle.get()?.shards())
    }

    /// How many times a shard was repaired after a process died holding its lock
    /// (in any process; as `SharedMap::repairs` in Rust).
    #[getter]
    fn repairs(&self) -> PyResult<u64> {
        Ok(self.handle.get()?.repairs())
    }

    /// The key dtype.
    #[getter]
    fn key_dtype(&self, py: Python<'_>) -> Py<PyAny> {
        self.key.dtype(py)
    }

    /// The value dtype.
    #[getter]
    fn value_dtype(&self, py: Python<'_>) -> Py<PyAny> {
        self.value.dtype(py)
    }

    /// Pickles as "open this map by name with these dtypes" (not the owner).
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let k = self.key.dtype(py).into_bound(py);
        let v = self.value.dtype(py).into_bound(py);
        self.handle.reduce(py, vec![k, v])
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let d = |t: &Typed| {
            t.dtype
                .bind(py)
                .str()
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        match self.handle.get() {
            Ok(m) => format!(
                "<pyshmarray.SharedMap {:?} key={} value={} len={}>",
                self.handle.name(),
                d(&self.key),
                d(&self.value),
                m.len()
            ),
            Err(_) => format!("<pyshmarray.SharedMap {:?} closed>", self.handle.name()),
        }
    }
}
