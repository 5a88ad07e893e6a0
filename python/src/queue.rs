//! `Queue` (numbers, with numpy batches) and `ByteQueue` (byte messages).

use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict};
use shmarray::{
    format::{Dtype, ObjectKind},
    queue::QueueError,
    Segment,
};

use crate::errors::{from_error, from_queue, raise, shm_error};
use crate::life::{Handle, Named, Ownership};
use crate::objects::lifecycle_methods;
use crate::{dispatch, for_dtype, lock, parse_dtype, typed_enum, with_dtype, Elem};

/// A queue capacity argument: at least 1 (`ValueError` otherwise: a pyshmarray
/// queue is bounded, so `multiprocessing`'s 0 for "unbounded" has no equivalent).
pub(crate) fn capacity_arg(capacity: i64) -> PyResult<usize> {
    usize::try_from(capacity)
        .ok()
        .filter(|&c| c >= 1)
        .ok_or_else(|| {
            raise(
                "ValueError",
                format!(
                    "capacity must be at least 1, not {capacity} (a shared queue is bounded: \
                     there is no unbounded queue as multiprocessing.Queue(0) is)"
                ),
            )
        })
}

impl Named for Mutex<AnyQueue> {
    fn remove_name(&self) -> PyResult<()> {
        dispatch!(&*lock(self), AnyQueue, q => q.unlink()).map_err(from_error)
    }
    fn file_path(&self) -> Option<std::path::PathBuf> {
        dispatch!(&*lock(self), AnyQueue, q => q.path())
    }
}

impl Named for Mutex<shmarray::ByteQueue> {
    fn remove_name(&self) -> PyResult<()> {
        lock(self).unlink().map_err(from_error)
    }
    fn file_path(&self) -> Option<std::path::PathBuf> {
        lock(self).path()
    }
}

/// A queue item type these bindings cannot handle.
fn unsupported(other: Dtype) -> PyErr {
    shm_error(format!("unsupported dtype {other}"))
}

typed_enum!(
    /// A `Queue<T>` of any element type.
    AnyQueue,
    TypedQueue
);
type TypedQueue<T> = shmarray::Queue<T>;

/// The outcome of one try of a queue call: `None` to try (or wait) again.
pub(crate) fn busy<R>(r: Result<R, QueueError>) -> Option<Result<R, QueueError>> {
    match r {
        Err(QueueError::Full | QueueError::Empty | QueueError::Timeout(_)) => None,
        other => Some(other),
    }
}

/// How often a queue call retries with the GIL held, spinning, before it releases
/// the GIL to wait: a few microseconds, about one item's time at the other end,
/// so that a producer and a consumer that keep pace never pay for a GIL release
/// and a futex sleep.
pub(crate) const SPINS: u32 = 64;

/// Runs `f` on a handle's crate object without blocking on the handle's mutex
/// (the GIL is held): `None` if another thread of this process is using the
/// handle (it is waiting, with the GIL released; the caller waits its turn the
/// same way).
#[inline]
pub(crate) fn try_locked<Q, R>(m: &Mutex<Q>, f: impl FnOnce(&Q) -> R) -> Option<R> {
    match m.try_lock() {
        Ok(g) => Some(f(&g)),
        Err(TryLockError::Poisoned(p)) => Some(f(&p.into_inner())),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Runs a queue call that may wait. `call(None)` tries without waiting, with the
/// GIL held and no clock read (`None`: the handle is in use by another thread);
/// it is retried for a few microseconds while the queue is full/empty. Then
/// `call(Some(slice))` waits in slices with the GIL released, Ctrl-C checked
/// between them. A timeout becomes `on_timeout` (`Empty` for gets, `Full` for
/// puts, as `queue.Queue`); a bad `timeout` raises before anything is tried.
pub(crate) fn blocking<R: Send>(
    py: Python<'_>,
    timeout: Option<f64>,
    on_timeout: &'static str,
    call: impl FnMut(Option<Duration>) -> Option<Result<R, QueueError>> + Send,
) -> PyResult<R> {
    blocking_spins(py, timeout, on_timeout, SPINS, call)
}

/// [`blocking`] with `spins` tries before waiting. Batches (`put_many`,
/// `get_many`) try once: a batch fills or drains a queue in one call, so the
/// other side needs the CPU to make room, and spinning with the GIL held took it
/// (the batched rows of python/bench/bench.py measured 3-5x slower with 64 tries
/// on a loaded 2-vCPU VM).
pub(crate) fn blocking_spins<R: Send>(
    py: Python<'_>,
    timeout: Option<f64>,
    on_timeout: &'static str,
    spins: u32,
    mut call: impl FnMut(Option<Duration>) -> Option<Result<R, QueueError>> + Send,
) -> PyResult<R> {
    crate::check_timeout(timeout)?;
    for i in 0..spins.max(1) {
        match call(None) {
            None => break,
            Some(r) => {
                if let Some(r) = busy(r) {
                    return r.map_err(from_queue);
                }
            }
        }
        if timeout == Some(0.0) {
            return Err(raise(
                on_timeout,
                format!("queue call timed out ({on_timeout})"),
            ));
        }
        for _ in 0..=i / 16 {
            std::hint::spin_loop();
        }
    }
    let deadline = crate::deadline(timeout)?;
    match crate::wait_in_slices(py, deadline, |d| call(Some(d)).and_then(busy))? {
        Some(r) => r.map_err(from_queue),
        None => Err(raise(
            on_timeout,
            format!("queue call timed out after {} s", timeout.unwrap_or(0.0)),
        )),
    }
}

/// A queue call as `blocking` wants it: `f(queue, wait)` (zero: don't wait)
/// under the handle's mutex, taken without blocking when `wait` is `None`.
#[inline]
pub(crate) fn on<Q, R>(
    m: &Mutex<Q>,
    wait: Option<Duration>,
    f: impl FnOnce(&Q, Duration) -> Result<R, QueueError>,
) -> Option<Result<R, QueueError>> {
    match wait {
        None => try_locked(m, |q| f(q, Duration::ZERO)),
        Some(d) => Some(f(&lock(m), d)),
    }
}

fn put_one<T: Elem>(
    py: Python<'_>,
    q: &Mutex<AnyQueue>,
    x: &Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<()>
where
    AnyQueue: Typed<T>,
{
    let v = T::from_py(x)?;
    blocking(py, timeout, "Full", |w| {
        on(q, w, |q, d| {
            let q = <AnyQueue as Typed<T>>::typed(q);
            if d.is_zero() {
                q.try_put(v)
            } else {
                q.put_timeout(v, d)
            }
        })
    })
}

/// Access to the variant of element type `T`.
pub(crate) trait Typed<T: Elem> {
    fn typed(&self) -> &shmarray::Queue<T>;
}

macro_rules! typed_impl {
    ($($v:ident $t:ty),*) => {$(
        impl Typed<$t> for AnyQueue {
            fn typed(&self) -> &shmarray::Queue<$t> {
                match self {
                    AnyQueue::$v(q) => q,
                    _ => unreachable!("the variant matches the dtype it was made for"),
                }
            }
        }
    )*};
}
typed_impl!(I8 i8, I16 i16, I32 i32, I64 i64, U8 u8, U16 u16, U32 u32, U64 u64, F32 f32, F64 f64,
    Bool shmarray::element::Bool, F16 shmarray::half::f16, C64 shmarray::num_complex::Complex<f32>,
    C128 shmarray::num_complex::Complex<f64>);

fn get_one<T: Elem>(
    py: Python<'_>,
    q: &Mutex<AnyQueue>,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>>
where
    AnyQueue: Typed<T>,
{
    let v: T = blocking(py, timeout, "Empty", |w| {
        on(q, w, |q, d| {
            let q = <AnyQueue as Typed<T>>::typed(q);
            if d.is_zero() {
                q.try_get()
            } else {
                q.get_timeout(d)
            }
        })
    })?;
    v.to_py(py)
}

fn put_many<T: Elem>(
    py: Python<'_>,
    q: &Mutex<AnyQueue>,
    data: &[u8],
    timeout: Option<f64>,
) -> PyResult<usize>
where
    AnyQueue: Typed<T>,
{
    let size = std::mem::size_of::<T>();
    if !data.len().is_multiple_of(size) {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "buffer length is not a whole number of items",
        ));
    }
    // The bytes of a Python `bytes` object are usually aligned for T; else copy.
    let owned: Vec<T>;
    let items: &[T] = match bytemuck_cast::<T>(data) {
        Some(s) => s,
        None => {
            owned = data.chunks_exact(size).map(read_unaligned::<T>).collect();
            &owned
        }
    };
    let mut done = 0usize;
    while done < items.len() {
        let rest = &items[done..];
        let n = blocking_spins(py, timeout, "Full", 1, |w| {
            on(q, w, |q, d| {
                <AnyQueue as Typed<T>>::typed(q).put_slice_timeout(rest, d)
            })
        })?;
        done += n;
    }
    Ok(done)
}

fn get_many<T: Elem>(
    py: Python<'_>,
    q: &Mutex<AnyQueue>,
    max: usize,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>>
where
    AnyQueue: Typed<T>,
{
    let mut buf = vec![T::zeroed(); max];
    let n = if max == 0 {
        0
    } else {
        let b = &mut buf;
        blocking_spins(py, timeout, "Empty", 1, |w| {
            on(q, w, |q, d| {
                <AnyQueue as Typed<T>>::typed(q).get_into_timeout(b, d)
            })
        })?
    };
    let bytes = as_bytes(&buf[..n]);
    Ok(PyByteArray::new(py, bytes).into_any().unbind())
}

// `Element: bytemuck::Pod` (the crate's bound), so bytemuck's checked casts apply.
fn bytemuck_cast<T: Elem>(data: &[u8]) -> Option<&[T]> {
    bytemuck::try_cast_slice(data).ok()
}

fn read_unaligned<T: Elem>(b: &[u8]) -> T {
    bytemuck::pod_read_unaligned(b)
}

fn as_bytes<T: Elem>(s: &[T]) -> &[u8] {
    bytemuck::cast_slice(s)
}

/// A bounded MPMC queue of numbers between processes (no pickling of items):
/// `put`/`get` one item, `put_many`/`get_many` numpy batches. Timeouts raise
/// `Full`/`Empty` (subclasses of `TimeoutError` and of `queue.Full`/`queue.Empty`);
/// after `shutdown()`, puts raise `QueueClosed` and gets drain what is left, then
/// raise `QueueClosed`. `close()` closes this handle only (as every handle's
/// `close()`); the handle pickles as "open by name".
#[pyclass(frozen, module = "pyshmarray._native", name = "Queue")]
pub(crate) struct Queue {
    handle: Handle<Mutex<AnyQueue>>,
    dtype: Dtype,
}

impl Queue {
    fn q(&self) -> PyResult<Arc<Mutex<AnyQueue>>> {
        self.handle.get()
    }

    pub(crate) fn open_handle(name: &str) -> PyResult<Queue> {
        let dt = crate::array::recorded_dtype(name, ObjectKind::Queue)?;
        let q = for_dtype!(dt, AnyQueue, T => q_open::<T>(name)?);
        Ok(Queue {
            handle: Handle::new("queue", name, Mutex::new(q), Ownership::opened()),
            dtype: dt,
        })
    }
}

lifecycle_methods!(Queue);

fn q_create<T: Elem>(
    name: &str,
    capacity: usize,
    opts: &shmarray::Options,
) -> PyResult<shmarray::Queue<T>> {
    opts.create::<shmarray::Queue<T>, _>(name, capacity)
        .map_err(from_queue)
}

fn q_open<T: Elem>(name: &str) -> PyResult<shmarray::Queue<T>> {
    shmarray::Queue::<T>::open(name).map_err(from_queue)
}

#[pymethods]
impl Queue {
    /// Creates queue `name` for `capacity` items (at least 1) of `dtype` (anything
    /// `numpy.dtype` takes; default uint64). Owner: the name is removed on
    /// `close()` or collection, unless `persistent`.
    #[staticmethod]
    #[pyo3(signature = (name, capacity, dtype=None, *, persistent=false))]
    fn create(
        name: &str,
        capacity: i64,
        dtype: Option<&Bound<'_, PyAny>>,
        persistent: bool,
    ) -> PyResult<Queue> {
        let capacity = capacity_arg(capacity)?;
        let dt = match dtype {
            Some(d) => parse_dtype(d)?,
            None => Dtype::U64,
        };
        let opts = crate::options(persistent, "off")?;
        let q = for_dtype!(dt, AnyQueue, T => q_create::<T>(name, capacity, &opts)?);
        Ok(Queue {
            handle: Handle::new("queue", name, Mutex::new(q), Ownership::created(persistent)),
            dtype: dt,
        })
    }

    /// Attaches queue `name` (its item type from the segment; not the owner).
    #[staticmethod]
    fn open(name: &str) -> PyResult<Queue> {
        Self::open_handle(name)
    }

    /// Puts one number, waiting at most `timeout` seconds while the queue is full
    /// (`None`: forever; `Full` when the time is up).
    #[pyo3(signature = (x, timeout=None))]
    fn put(&self, py: Python<'_>, x: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let q = &*self.q()?;
        with_dtype!(self.dtype, T => put_one::<T>(py, q, x, timeout), other => Err(unsupported(other)))
    }

    /// `put(x, timeout=0)`: `Full` at once if there is no room.
    fn put_nowait(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, x, Some(0.0))
    }

    /// `get(timeout=0)`: `Empty` at once if there is no item.
    fn get_nowait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.get(py, Some(0.0))
    }

    /// Takes one number, waiting at most `timeout` seconds while the queue is empty
    /// (`Empty` when the time is up; `QueueClosed` once closed and drained).
    #[pyo3(signature = (timeout=None))]
    fn get(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let q = &*self.q()?;
        with_dtype!(self.dtype, T => get_one::<T>(py, q, timeout), other => Err(unsupported(other)))
    }

    /// Native part of `put_many`: puts the items in `data` (native-endian bytes
    /// of the queue's dtype), in order; returns how many.
    #[pyo3(signature = (data, timeout=None))]
    fn _put_bytes(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyBytes>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let q = &*self.q()?;
        let data = data.as_bytes();
        with_dtype!(self.dtype, T => put_many::<T>(py, q, data, timeout), other => Err(unsupported(other)))
    }

    /// Native part of `get_many`: waits for at least one item, then takes up to
    /// `max_items` that are ready; returns their bytes (a `bytearray`).
    #[pyo3(signature = (max_items, timeout=None))]
    fn _get_bytes(
        &self,
        py: Python<'_>,
        max_items: usize,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let q = &*self.q()?;
        with_dtype!(self.dtype, T => get_many::<T>(py, q, max_items, timeout), other => Err(unsupported(other)))
    }

    /// Shuts the queue down for every process (as Python 3.13's
    /// `queue.Queue.shutdown()`): puts raise `QueueClosed`; gets drain what is
    /// left, then raise `QueueClosed`. Not undone.
    fn shutdown(&self) -> PyResult<()> {
        dispatch!(&*lock(&*self.q()?), AnyQueue, q => q.close());
        Ok(())
    }

    /// Whether the queue was shut down (by any process).
    #[getter]
    fn is_shutdown(&self) -> PyResult<bool> {
        Ok(dispatch!(&*lock(&*self.q()?), AnyQueue, q => q.is_closed()))
    }

    /// Items in the queue now (a snapshot).
    fn __len__(&self) -> PyResult<usize> {
        Ok(dispatch!(&*lock(&*self.q()?), AnyQueue, q => q.len()))
    }

    /// Items in the queue now (`multiprocessing.Queue.qsize`; a snapshot).
    fn qsize(&self) -> PyResult<usize> {
        self.__len__()
    }

    /// Whether the queue is empty now (a snapshot).
    fn empty(&self) -> PyResult<bool> {
        Ok(self.__len__()? == 0)
    }

    /// Whether the queue is full now (a snapshot).
    fn full(&self) -> PyResult<bool> {
        Ok(self.__len__()? >= self.capacity()?)
    }

    /// The most items it holds.
    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        Ok(dispatch!(&*lock(&*self.q()?), AnyQueue, q => q.capacity()))
    }

    /// Items lost because their producer died mid-put.
    #[getter]
    fn lost(&self) -> PyResult<u64> {
        Ok(dispatch!(&*lock(&*self.q()?), AnyQueue, q => q.lost()))
    }

    /// Items taken by consumers that died before finishing the get.
    #[getter]
    fn abandoned(&self) -> PyResult<u64> {
        Ok(dispatch!(&*lock(&*self.q()?), AnyQueue, q => q.abandoned()))
    }

    /// The item type's NPY descriptor.
    #[getter]
    fn descr(&self) -> &'static str {
        crate::type_str(self.dtype)
    }

    /// The item type, as a `numpy.dtype`.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        crate::numpy_dtype(py, self.dtype)
    }

    /// Puts every item of `items` (a numpy array or sequence, converted to the
    /// queue's dtype, flattened in C order), in order; waits at most `timeout`
    /// seconds for room each time the queue is full (`Full`). Returns how many.
    #[pyo3(signature = (items, timeout=None))]
    fn put_many(
        &self,
        py: Python<'_>,
        items: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let np = py.import("numpy")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", crate::type_str(self.dtype))?;
        let a = np.call_method("ascontiguousarray", (items,), Some(&kwargs))?;
        let b = a.call_method0("tobytes")?;
        self._put_bytes(py, b.cast::<PyBytes>()?, timeout)
    }

    /// Waits at most `timeout` seconds for at least one item (`Empty`), then takes
    /// up to `max_items` that are ready, as a 1-d numpy array (writable, owned).
    #[pyo3(signature = (max_items, timeout=None))]
    fn get_many(
        &self,
        py: Python<'_>,
        max_items: usize,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let b = self._get_bytes(py, max_items, timeout)?;
        let np = py.import("numpy")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", crate::type_str(self.dtype))?;
        Ok(np.call_method("frombuffer", (b,), Some(&kwargs))?.unbind())
    }

    fn __repr__(&self) -> String {
        match self.__len__() {
            Ok(n) => format!(
                "<pyshmarray.Queue {:?} dtype={} len={n}>",
                self.handle.name(),
                crate::type_str(self.dtype),
            ),
            Err(_) => format!("<pyshmarray.Queue {:?} closed>", self.handle.name()),
        }
    }
}

/// A bounded MPMC queue of byte messages between processes: `put(bytes)`,
/// `get() -> bytes`, with the same timeouts, `shutdown()` and lifecycle as
/// `Queue`.
#[pyclass(frozen, module = "pyshmarray._native", name = "ByteQueue")]
pub(crate) struct ByteQueue {
    handle: Handle<Mutex<shmarray::ByteQueue>>,
}

impl ByteQueue {
    fn q(&self) -> PyResult<Arc<Mutex<shmarray::ByteQueue>>> {
        self.handle.get()
    }

    pub(crate) fn open_handle(name: &str) -> PyResult<ByteQueue> {
        let q = shmarray::ByteQueue::open(name).map_err(from_queue)?;
        Ok(ByteQueue {
            handle: Handle::new("byte queue", name, Mutex::new(q), Ownership::opened()),
        })
    }
}

lifecycle_methods!(ByteQueue);
byte_queue_state_methods!(ByteQueue);

#[pymethods]
impl ByteQueue {
    /// Creates byte queue `name` for `capacity` messages (at least 1) of at most
    /// `max_message` bytes each.
    #[staticmethod]
    #[pyo3(signature = (name, capacity, max_message=4096, *, persistent=false))]
    fn create(
        name: &str,
        capacity: i64,
        max_message: usize,
        persistent: bool,
    ) -> PyResult<ByteQueue> {
        let capacity = capacity_arg(capacity)?;
        let opts = crate::options(persistent, "off")?;
        let q = opts
            .create::<shmarray::ByteQueue, _>(name, (capacity, max_message))
            .map_err(from_queue)?;
        Ok(ByteQueue {
            handle: Handle::new(
                "byte queue",
                name,
                Mutex::new(q),
                Ownership::created(persistent),
            ),
        })
    }

    /// Attaches byte queue `name` (not the owner).
    #[staticmethod]
    fn open(name: &str) -> PyResult<ByteQueue> {
        Self::open_handle(name)
    }

    /// Puts one message (`bytes`-like), waiting at most `timeout` seconds while
    /// full.
    #[pyo3(signature = (msg, timeout=None))]
    fn put(&self, py: Python<'_>, msg: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        // `bytes` as they are; any other bytes-like object (bytearray, memoryview,
        // a numpy array's buffer) through `bytes(msg)`.
        let owned;
        let msg: &[u8] = match msg.cast::<PyBytes>() {
            Ok(b) => b.as_bytes(),
            Err(_) => {
                owned = py
                    .get_type::<PyBytes>()
                    .call1((msg,))?
                    .cast_into::<PyBytes>()?;
                owned.as_bytes()
            }
        };
        let q = &*self.q()?;
        blocking(py, timeout, "Full", |w| {
            on(q, w, |q, d| {
                if d.is_zero() {
                    q.try_put(msg)
                } else {
                    q.put_timeout(msg, d)
                }
            })
        })
    }

    /// Takes one message as `bytes`, waiting at most `timeout` seconds while empty.
    #[pyo3(signature = (timeout=None))]
    fn get<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let q = &*self.q()?;
        let v = blocking(py, timeout, "Empty", |w| {
            on(q, w, |q, d| {
                if d.is_zero() {
                    q.try_get()
                } else {
                    q.get_timeout(d)
                }
            })
        })?;
        Ok(PyBytes::new(py, &v))
    }

    /// `put(msg, timeout=0)`.
    fn put_nowait(&self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, msg, Some(0.0))
    }

    /// `get(timeout=0)`.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.get(py, Some(0.0))
    }

    /// The largest message it takes.
    #[getter]
    fn max_message(&self) -> PyResult<usize> {
        Ok(lock(&*self.q()?).max_message())
    }

    fn __repr__(&self) -> String {
        match self.__len__() {
            Ok(n) => format!("<pyshmarray.ByteQueue {:?} len={n}>", self.handle.name()),
            Err(_) => format!("<pyshmarray.ByteQueue {:?} closed>", self.handle.name()),
        }
    }
}

/// The state methods of a queue of byte messages (`ByteQueue`, and `ArrayQueue`
/// over one), for a type whose `q()` gives its `Arc<Mutex<ByteQueue>>`.
macro_rules! byte_queue_state_methods {
    ($ty:ident) => {
        #[pymethods]
        impl $ty {
            /// Shuts the queue down for every process (see `Queue.shutdown`).
            fn shutdown(&self) -> PyResult<()> {
                lock(&*self.q()?).close();
                Ok(())
            }

            /// Whether the queue was shut down (by any process).
            #[getter]
            fn is_shutdown(&self) -> PyResult<bool> {
                Ok(lock(&*self.q()?).is_closed())
            }

            /// Messages in the queue now (a snapshot).
            fn __len__(&self) -> PyResult<usize> {
                Ok(lock(&*self.q()?).len())
            }

            /// Messages in the queue now (`multiprocessing.Queue.qsize`; a snapshot).
            fn qsize(&self) -> PyResult<usize> {
                self.__len__()
            }

            /// Whether the queue is empty now (a snapshot).
            fn empty(&self) -> PyResult<bool> {
                Ok(self.__len__()? == 0)
            }

            /// Whether the queue is full now (a snapshot).
            fn full(&self) -> PyResult<bool> {
                let q = self.q()?;
                let q = lock(&*q);
                Ok(q.len() >= q.capacity())
            }

            /// The most messages it holds.
            #[getter]
            fn capacity(&self) -> PyResult<usize> {
                Ok(lock(&*self.q()?).capacity())
            }
        }
    };
}
pub(crate) use byte_queue_state_methods;
