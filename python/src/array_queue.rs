//! `ArrayQueue`: numpy arrays between processes, each one message that keeps its
//! shape, dtype and memory order.
//!
//! A message is an `.npy` file (the header numpy writes, then the data), in a
//! [`shmarray::ByteQueue`] slot: a `ByteQueue` consumer can `numpy.load` it, and a
//! Rust one can parse it with the crate's NPY reader.
//!
//! # Speed
//! A put copies the array once into its slot (after `tobytes()`, which gathers a
//! non-contiguous array), a get once out of it into the `bytearray` the new array
//! owns. Both try first with the GIL held and no clock; only a full (or empty)
//! queue, after a short spin, releases the GIL and waits in slices. The header
//! of an array is built (and a received header parsed) by numpy once per dtype
//! object and shape; later arrays of the same kind find it in a small cache.

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyTuple, PyType};

use crate::errors::{from_queue, raise};
use crate::life::{Handle, Named, Ownership};
use crate::lock;
use crate::objects::lifecycle_methods;
use crate::queue::{busy, try_locked, SPINS};

/// Bytes of each slot kept for the array's `.npy` header, beyond `max_bytes` of
/// data (a one-dimensional array's header is 128 bytes).
pub(crate) const HEADER_ROOM: usize = 256;

/// The longest header a get accepts (numpy's own default `max_header_size`).
const MAX_HEADER: usize = 10_000;

/// Headers (and dtypes) remembered per handle, in each direction.
const CACHE: usize = 8;

/// `numpy.ndarray`.
fn ndarray_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static T: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    T.import(py, "numpy", "ndarray")
}

/// `numpy.lib.format`.
fn npy_format(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static M: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    Ok(M.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("numpy.lib.format")?.unbind())
    })?
    .bind(py)
    .clone())
}

/// A header built for arrays of one dtype object, shape and order.
struct PutEntry {
    dtype: Py<PyAny>,
    shape: Vec<isize>,
    fortran: bool,
    header: Arc<[u8]>,
}

/// What a received header says.
struct GetEntry {
    header: Box<[u8]>,
    dtype: Py<PyAny>,
    shape: Py<PyTuple>,
    fortran: bool,
    nbytes: usize,
}

/// A small most-recently-used list.
fn remember<E>(cache: &mut Vec<E>, e: E) {
    if cache.len() >= CACHE {
        cache.pop();
    }
    cache.insert(0, e);
}

/// Where a message's data starts, from the `.npy` preamble (`None`: not an
/// `.npy` message; `Some(Err)`: a broken one).
fn header_len(msg: &[u8]) -> Option<Result<usize, String>> {
    if msg.len() < 8 || &msg[..6] != b"\x93NUMPY" {
        return None;
    }
    let (start, len) = match msg[6] {
        1 if msg.len() >= 10 => (10, u16::from_le_bytes([msg[8], msg[9]]) as usize),
        2 | 3 if msg.len() >= 12 => (
            12,
            u32::from_le_bytes([msg[8], msg[9], msg[10], msg[11]]) as usize,
        ),
        v => {
            return Some(Err(format!(
                "unsupported .npy version {v} (or a cut preamble)"
            )))
        }
    };
    if len > MAX_HEADER {
        return Some(Err(format!(
            "a header of {len} bytes (at most {MAX_HEADER} are read)"
        )));
    }
    let end = start + len; // both small: no overflow
    if end > msg.len() {
        return Some(Err(format!(
            "a header of {len} bytes in a message of {} bytes",
            msg.len()
        )));
    }
    Some(Ok(end))
}

/// A message taken from the queue, before it becomes an array.
enum Taken {
    /// The header's bytes and the data, copied into the bytearray the array owns.
    Npy(Vec<u8>, Py<PyByteArray>),
    /// The whole message (taken while waiting with the GIL released).
    Raw(Vec<u8>),
    /// A message that is not an `.npy` array.
    NotNpy(usize),
    /// A broken `.npy` preamble.
    Broken(String),
    /// No memory for the array's bytes.
    Failed(PyErr),
}

/// A new `bytearray` holding a copy of `src` (`MemoryError` if it cannot be
/// allocated, where pyo3's `PyByteArray::new` would panic).
fn bytearray_of<'py>(py: Python<'py>, src: &[u8]) -> PyResult<Bound<'py, PyByteArray>> {
    // A slice never holds more than isize::MAX bytes.
    let len = src.len() as pyo3::ffi::Py_ssize_t;
    // SAFETY: we hold the GIL (`py`); `src` is valid for `len` bytes, which
    // `PyByteArray_FromStringAndSize` copies into a new object, or it returns NULL
    // with an exception set (turned into `Err`); a non-NULL result is a bytearray.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyByteArray_FromStringAndSize(src.as_ptr().cast(), len),
        )
        .map(|b| b.cast_into_unchecked())
    }
}

/// Splits a message under the GIL: header bytes, data copied into a bytearray.
fn take_npy(py: Python<'_>, msg: &[u8]) -> Taken {
    match header_len(msg) {
        None => Taken::NotNpy(msg.len()),
        Some(Err(e)) => Taken::Broken(e),
        Some(Ok(h)) => match bytearray_of(py, &msg[h..]) {
            Ok(data) => Taken::Npy(msg[..h].to_vec(), data.unbind()),
            Err(e) => Taken::Failed(e),
        },
    }
}

/// A bounded queue of numpy arrays between processes: `put(a)` sends one array
/// (any shape and dtype, up to `max_bytes` of data), `get()` returns a new array
/// of the same shape, dtype and memory order (writable, owning its memory). No
/// pickling, no feeder thread; timeouts, `shutdown()` and the lifecycle as
/// `Queue`. Each message is an `.npy` file in a `ByteQueue` slot.
#[pyclass(frozen, module = "pyshmarray._native", name = "ArrayQueue")]
pub(crate) struct ArrayQueue {
    handle: Handle<Mutex<shmarray::ByteQueue>>,
    /// Headers of the arrays this handle put, by dtype object, shape and order.
    puts: Mutex<Vec<PutEntry>>,
    /// Headers this handle received, with their dtype and shape.
    gets: Mutex<Vec<GetEntry>>,
}

impl ArrayQueue {
    fn wrap(q: shmarray::ByteQueue, name: &str, ownership: Ownership) -> ArrayQueue {
        ArrayQueue {
            handle: Handle::new("array queue", name, Mutex::new(q), ownership),
            puts: Mutex::new(Vec::new()),
            gets: Mutex::new(Vec::new()),
        }
    }

    fn q(&self) -> PyResult<Arc<Mutex<shmarray::ByteQueue>>> {
        self.handle.get()
    }

    pub(crate) fn open_handle(name: &str) -> PyResult<ArrayQueue> {
        let q = shmarray::ByteQueue::open(name).map_err(from_queue)?;
        Ok(Self::wrap(q, name, Ownership::opened()))
    }

    /// The `.npy` header of `a` (C order unless `fortran`), from the cache or
    /// built by numpy.
    fn header_of(
        &self,
        a: &Bound<'_, PyAny>,
        dtype: &Bound<'_, PyAny>,
        shape: Vec<isize>,
        fortran: bool,
    ) -> PyResult<Arc<[u8]>> {
        {
            let mut puts = lock(&self.puts);
            if let Some(i) = puts.iter().position(|e| {
                e.dtype.as_ptr() == dtype.as_ptr() && e.fortran == fortran && e.shape == shape
            }) {
                let e = puts.remove(i);
                let h = e.header.clone();
                puts.insert(0, e);
                return Ok(h);
            }
        }
        let py = a.py();
        if dtype.getattr("hasobject")?.is_truthy()? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "an array of dtype {dtype} holds references to Python objects, which do \
                 not cross processes as bytes: use multiprocessing.Queue for it"
            )));
        }
        // numpy's own header (descr, order, shape; padded to 64 bytes).
        let fmt = npy_format(py)?;
        let d = pyo3::types::PyDict::new(py);
        d.set_item("descr", fmt.getattr("dtype_to_descr")?.call1((dtype,))?)?;
        d.set_item("fortran_order", fortran)?;
        d.set_item("shape", PyTuple::new(py, &shape)?)?;
        let buf = py.import("io")?.getattr("BytesIO")?.call0()?;
        fmt.getattr("write_array_header_1_0")?.call1((&buf, d))?;
        let bytes = buf.call_method0("getvalue")?;
        let header: Arc<[u8]> = bytes.cast::<PyBytes>()?.as_bytes().into();
        remember(
            &mut lock(&self.puts),
            PutEntry {
                dtype: dtype.clone().unbind(),
                shape,
                fortran,
                header: header.clone(),
            },
        );
        Ok(header)
    }

    /// What a received header says (cached by its bytes; parsed by numpy).
    fn parse_header<'py>(
        &self,
        py: Python<'py>,
        header: &[u8],
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>, bool, usize)> {
        {
            let mut gets = lock(&self.gets);
            if let Some(i) = gets.iter().position(|e| &*e.header == header) {
                let e = gets.remove(i);
                let out = (
                    e.dtype.bind(py).clone(),
                    e.shape.bind(py).clone(),
                    e.fortran,
                    e.nbytes,
                );
                gets.insert(0, e);
                return Ok(out);
            }
        }
        let corrupt = |why: String| {
            raise(
                "CorruptError",
                format!("a message of this array queue has a bad .npy header: {why}"),
            )
        };
        let fmt = npy_format(py)?;
        let fp = py
            .import("io")?
            .getattr("BytesIO")?
            .call1((PyBytes::new(py, header),))?;
        let version: (u8, u8) = fmt.getattr("read_magic")?.call1((&fp,))?.extract()?;
        let reader = match version {
            (1, 0) => "read_array_header_1_0",
            (2, 0) => "read_array_header_2_0",
            v => return Err(corrupt(format!("unsupported version {v:?}"))),
        };
        let parsed = fmt
            .getattr(reader)?
            .call1((&fp,))
            .map_err(|e| corrupt(e.to_string()))?;
        let (shape, fortran, dtype): (Bound<'py, PyTuple>, bool, Bound<'py, PyAny>) =
            parsed.extract()?;
        if dtype.getattr("hasobject")?.is_truthy()? {
            return Err(corrupt(format!(
                "dtype {dtype} holds Python object references"
            )));
        }
        let itemsize: usize = dtype.getattr("itemsize")?.extract()?;
        let mut nbytes = Some(itemsize);
        for d in shape.iter() {
            let d: usize = d.extract().map_err(|_| corrupt(format!("shape {shape}")))?;
            nbytes = nbytes.and_then(|n| n.checked_mul(d));
        }
        let nbytes = nbytes.ok_or_else(|| corrupt(format!("shape {shape} is too large")))?;
        remember(
            &mut lock(&self.gets),
            GetEntry {
                header: header.into(),
                dtype: dtype.clone().unbind(),
                shape: shape.clone().unbind(),
                fortran,
                nbytes,
            },
        );
        Ok((dtype, shape, fortran, nbytes))
    }

    /// Builds the array of a taken message.
    fn to_array(&self, py: Python<'_>, taken: Taken) -> PyResult<Py<PyAny>> {
        let (header, data) = match taken {
            Taken::Npy(h, d) => (h, d.into_bound(py)),
            Taken::Raw(msg) => match take_npy(py, &msg) {
                Taken::Npy(h, d) => (h, d.into_bound(py)),
                other => return self.to_array(py, other),
            },
            Taken::NotNpy(len) => {
                return Err(raise(
                    "TypeMismatchError",
                    format!(
                        "a message of {len} bytes that is not an array (no .npy header): was \
                         it put through a ByteQueue handle?"
                    ),
                ))
            }
            Taken::Failed(e) => return Err(e),
            Taken::Broken(why) => {
                return Err(raise(
                    "CorruptError",
                    format!("a message of this array queue has a bad .npy preamble: {why}"),
                ))
            }
        };
        let (dtype, shape, fortran, nbytes) = self.parse_header(py, &header)?;
        if data.len() != nbytes {
            return Err(raise(
                "CorruptError",
                format!(
                    "a message of this array queue holds {} bytes of data where its header \
                     ({dtype}, shape {shape}) says {nbytes}",
                    data.len()
                ),
            ));
        }
        let ndarray = ndarray_type(py)?;
        let a = if fortran {
            ndarray.call1((shape, dtype, data, 0, py.None(), "F"))?
        } else {
            ndarray.call1((shape, dtype, data))?
        };
        Ok(a.unbind())
    }

    fn put_impl(&self, py: Python<'_>, a: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let ndarray = ndarray_type(py)?;
        let a = if a.get_type().is(ndarray) {
            a.clone()
        } else if a.is_instance(ndarray)? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "an ArrayQueue carries plain numpy arrays, not {} (its extra state would be \
                 lost): put numpy.asarray(x)",
                a.get_type().name()?
            )));
        } else {
            py.import("numpy")?.getattr("asarray")?.call1((a,))?
        };
        let dtype = a.getattr(pyo3::intern!(py, "dtype"))?;
        let shape: Vec<isize> = a.getattr(pyo3::intern!(py, "shape"))?.extract()?;
        let flags = a.getattr(pyo3::intern!(py, "flags"))?;
        let fortran = !flags
            .getattr(pyo3::intern!(py, "c_contiguous"))?
            .is_truthy()?
            && flags
                .getattr(pyo3::intern!(py, "f_contiguous"))?
                .is_truthy()?;
        let header = self.header_of(&a, &dtype, shape, fortran)?;
        let data = a.call_method1(
            pyo3::intern!(py, "tobytes"),
            (if fortran { "F" } else { "C" },),
        )?;
        let data = data.cast::<PyBytes>()?.as_bytes();
        crate::check_timeout(timeout)?;
        let q = self.q()?;
        let max = lock(&q).max_message();
        let len = header.len() + data.len();
        if len > max {
            return Err(raise(
                "ValueError",
                format!(
                    "an array of {} bytes (with its {}-byte header) does not fit this queue's \
                     messages of {max} bytes: create the ArrayQueue with max_bytes >= {}",
                    data.len(),
                    header.len(),
                    len.saturating_sub(HEADER_ROOM).max(data.len())
                ),
            ));
        }
        let fill = |slot: &mut [u8]| {
            slot[..header.len()].copy_from_slice(&header);
            slot[header.len()..].copy_from_slice(data);
        };
        // With the GIL held and no clock: the common case does not wait.
        for i in 0..SPINS {
            let Some(r) = try_locked(&*q, |q| q.try_put_with(len, fill)) else {
                break; // another thread's wait: join it
            };
            if let Some(r) = busy(r) {
                return r.map_err(from_queue);
            }
            if timeout == Some(0.0) {
                return Err(raise("Full", "the array queue is full"));
            }
            for _ in 0..=i / 16 {
                std::hint::spin_loop();
            }
        }
        let deadline = crate::deadline(timeout)?;
        let q = &*q;
        match crate::wait_in_slices(py, deadline, |d| {
            busy(lock(q).put_with_timeout(len, d, fill))
        })? {
            Some(r) => r.map_err(from_queue),
            None => Err(raise(
                "Full",
                format!(
                    "the array queue stayed full for {} s",
                    timeout.unwrap_or(0.0)
                ),
            )),
        }
    }

    fn get_impl(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        crate::check_timeout(timeout)?;
        let q = self.q()?;
        for i in 0..SPINS {
            let Some(r) = try_locked(&*q, |q| q.try_get_with(|msg| take_npy(py, msg))) else {
                break;
            };
            if let Some(r) = busy(r) {
                return self.to_array(py, r.map_err(from_queue)?);
            }
            if timeout == Some(0.0) {
                return Err(raise("Empty", "the array queue is empty"));
            }
            for _ in 0..=i / 16 {
                std::hint::spin_loop();
            }
        }
        let deadline = crate::deadline(timeout)?;
        let q = &*q;
        // The GIL is released: the message is copied out whole, then split.
        let got = crate::wait_in_slices(py, deadline, |d| {
            busy(lock(q).get_with_timeout(d, |m| m.to_vec()))
        })?;
        match got {
            Some(r) => self.to_array(py, Taken::Raw(r.map_err(from_queue)?)),
            None => Err(raise(
                "Empty",
                format!(
                    "the array queue stayed empty for {} s",
                    timeout.unwrap_or(0.0)
                ),
            )),
        }
    }
}

lifecycle_methods!(ArrayQueue);
crate::queue::byte_queue_state_methods!(ArrayQueue);

#[pymethods]
impl ArrayQueue {
    /// Creates array queue `name` for `capacity` arrays (at least 1) of up to
    /// `max_bytes` bytes of data each (`a.nbytes`; each slot also keeps 256
    /// bytes for the array's `.npy` header). Owner: the name is removed on
    /// `close()` or collection, unless `persistent`.
    #[staticmethod]
    #[pyo3(signature = (name, capacity=128, max_bytes=1 << 16, *, persistent=false))]
    fn create(name: &str, capacity: i64, max_bytes: i64, persistent: bool) -> PyResult<ArrayQueue> {
        let capacity = crate::queue::capacity_arg(capacity)?;
        let max_message = usize::try_from(max_bytes)
            .ok()
            .and_then(|m| m.checked_add(HEADER_ROOM))
            .ok_or_else(|| {
                raise(
                    "ValueError",
                    format!("max_bytes must be a non-negative size, not {max_bytes}"),
                )
            })?;
        let opts = crate::options(persistent, "off")?;
        let q: shmarray::ByteQueue = opts
            .create(name, (capacity, max_message))
            .map_err(from_queue)?;
        Ok(Self::wrap(q, name, Ownership::created(persistent)))
    }

    /// Attaches array queue `name` (not the owner).
    #[staticmethod]
    fn open(name: &str) -> PyResult<ArrayQueue> {
        Self::open_handle(name)
    }

    /// Puts a copy of array `a` (a numpy array, or anything `numpy.asarray`
    /// takes; not an object array), waiting at most `timeout` seconds while the
    /// queue is full (`None`: forever; `Full` when the time is up).
    #[pyo3(signature = (a, timeout=None))]
    fn put(&self, py: Python<'_>, a: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        self.put_impl(py, a, timeout)
    }

    /// `put(a, timeout=0)`: `Full` at once if there is no room.
    fn put_nowait(&self, py: Python<'_>, a: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put_impl(py, a, Some(0.0))
    }

    /// Takes the next array (same shape, dtype and order as put; writable, owning
    /// its memory), waiting at most `timeout` seconds while the queue is empty
    /// (`Empty` when the time is up; `QueueClosed` once shut down and drained).
    #[pyo3(signature = (timeout=None))]
    fn get(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        self.get_impl(py, timeout)
    }

    /// `get(timeout=0)`: `Empty` at once if there is no array.
    fn get_nowait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.get_impl(py, Some(0.0))
    }

    /// The most data bytes of one array (`a.nbytes`) it takes for sure (a
    /// header longer than 256 bytes takes its excess from this).
    #[getter]
    fn max_bytes(&self) -> PyResult<usize> {
        Ok(lock(&*self.q()?).max_message().saturating_sub(HEADER_ROOM))
    }

    /// Arrays lost because their producer died mid-put.
    #[getter]
    fn lost(&self) -> PyResult<u64> {
        Ok(lock(&*self.q()?).lost())
    }

    /// Arrays taken by consumers that died before finishing the get.
    #[getter]
    fn abandoned(&self) -> PyResult<u64> {
        Ok(lock(&*self.q()?).abandoned())
    }

    fn __repr__(&self) -> String {
        match self.__len__() {
            Ok(n) => format!("<pyshmarray.ArrayQueue {:?} len={n}>", self.handle.name()),
            Err(_) => format!("<pyshmarray.ArrayQueue {:?} closed>", self.handle.name()),
        }
    }
}
