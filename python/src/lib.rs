//! `pyshmarray._native`: the Python bindings of shmarray, on the crate's public API.
//!
//! The pure-Python package `pyshmarray` wraps this module (dtype normalisation,
//! the exception classes, named tuples); everything that touches a segment, a lock
//! or a queue is here. Every blocking call releases the GIL and waits in slices of
//! [`SLICE`], checking for signals (Ctrl-C) between them.

mod array;
mod array_queue;
mod counter;
mod errors;
mod guard;
mod handles;
mod held;
mod life;
mod listing;
mod map;
mod objects;
mod queue;
mod value;
mod vec;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyComplex;
use pyo3::IntoPyObjectExt;
use shmarray::half::f16;
use shmarray::num_complex::Complex;
use shmarray::{
    element::{Bool, Element},
    format::{Descr, Dtype},
    huge::HugePages,
    Options,
};

/// How long one GIL-free wait lasts before signals are checked again.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// The element types the crate supports, with their Python conversions.
pub(crate) trait Elem: Element + Copy {
    /// Converts a Python number (range-checked for integers).
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<Self>;
    /// Converts to a Python number.
    fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>>;
    /// `self + d`, wrapping for integers (as C and numpy do).
    fn plus(self, d: Self) -> Self;
}

macro_rules! elem_int {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn from_py(o: &Bound<'_, PyAny>) -> PyResult<Self> { o.extract::<$t>() }
            fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> { self.into_py_any(py) }
            fn plus(self, d: Self) -> Self { self.wrapping_add(d) }
        }
    )*};
}
elem_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Elem for f32 {
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<Self> {
        o.extract::<f64>().map(|v| v as f32)
    }
    fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        (self as f64).into_py_any(py)
    }
    fn plus(self, d: Self) -> Self {
        self + d
    }
}

impl Elem for f64 {
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<Self> {
        o.extract::<f64>()
    }
    fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.into_py_any(py)
    }
    fn plus(self, d: Self) -> Self {
        self + d
    }
}

impl Elem for Bool {
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Bool::new(o.is_truthy()?))
    }
    fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.get().into_py_any(py)
    }
    /// numpy's `True + True` in a bool array: logical or.
    fn plus(self, d: Self) -> Self {
        self | d
    }
}

impl Elem for f16 {
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<Self> {
        o.extract::<f64>().map(f16::from_f64)
    }
    fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.to_f64().into_py_any(py)
    }
    fn plus(self, d: Self) -> Self {
        self + d
    }
}

/// A Python number as `(real, imag)`: `complex`, `float`, `int` or anything with
/// `__complex__` (numpy's complex scalars).
fn complex_parts(o: &Bound<'_, PyAny>) -> PyResult<(f64, f64)> {
    if let Ok(c) = o.cast::<PyComplex>() {
        return Ok((c.real(), c.imag()));
    }
    if let Ok(x) = o.extract::<f64>() {
        return Ok((x, 0.0));
    }
    let c = o.py().import("builtins")?.getattr("complex")?.call1((o,))?;
    let c = c.cast::<PyComplex>()?;
    Ok((c.real(), c.imag()))
}

impl Elem for Complex<f32> {
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<Self> {
        complex_parts(o).map(|(re, im)| Complex::new(re as f32, im as f32))
    }
    fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        PyComplex::from_doubles(py, self.re.into(), self.im.into()).into_py_any(py)
    }
    fn plus(self, d: Self) -> Self {
        self + d
    }
}

impl Elem for Complex<f64> {
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<Self> {
        complex_parts(o).map(|(re, im)| Complex::new(re, im))
    }
    fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        PyComplex::from_doubles(py, self.re, self.im).into_py_any(py)
    }
    fn plus(self, d: Self) -> Self {
        self + d
    }
}

/// Declares an enum with one variant per element type, each holding `$inner<T>`.
macro_rules! typed_enum {
    ($(#[$m:meta])* $name:ident, $inner:ident) => {
        $(#[$m])*
        pub(crate) enum $name {
            I8($inner<i8>), I16($inner<i16>), I32($inner<i32>), I64($inner<i64>),
            U8($inner<u8>), U16($inner<u16>), U32($inner<u32>), U64($inner<u64>),
            F32($inner<f32>), F64($inner<f64>),
            Bool($inner<shmarray::element::Bool>), F16($inner<shmarray::half::f16>),
            C64($inner<shmarray::num_complex::Complex<f32>>),
            C128($inner<shmarray::num_complex::Complex<f64>>),
        }
        typed_enum!(@from $name, $inner, I8 i8, I16 i16, I32 i32, I64 i64, U8 u8, U16 u16,
            U32 u32, U64 u64, F32 f32, F64 f64, Bool shmarray::element::Bool, F16 shmarray::half::f16,
            C64 shmarray::num_complex::Complex<f32>, C128 shmarray::num_complex::Complex<f64>);
    };
    (@from $name:ident, $inner:ident, $($v:ident $t:ty),*) => {$(
        impl From<$inner<$t>> for $name {
            fn from(x: $inner<$t>) -> Self {
                $name::$v(x)
            }
        }
    )*};
}
pub(crate) use typed_enum;

/// `match` on a typed enum, binding the inner value to `$x` in every arm.
macro_rules! dispatch {
    ($e:expr, $name:ident, $x:ident => $body:expr) => {
        match $e {
            $name::I8($x) => $body,
            $name::I16($x) => $body,
            $name::I32($x) => $body,
            $name::I64($x) => $body,
            $name::U8($x) => $body,
            $name::U16($x) => $body,
            $name::U32($x) => $body,
            $name::U64($x) => $body,
            $name::F32($x) => $body,
            $name::F64($x) => $body,
            $name::Bool($x) => $body,
            $name::F16($x) => $body,
            $name::C64($x) => $body,
            $name::C128($x) => $body,
        }
    };
}
pub(crate) use dispatch;

/// Evaluates `$body` with the type alias `$T` naming the element type of a runtime
/// `Dtype`; `$other` binds a type these bindings do not support, for `$fallback`.
macro_rules! with_dtype {
    ($dt:expr, $T:ident => $body:expr, $other:ident => $fallback:expr) => {
        match $dt {
            shmarray::format::Dtype::I8 => {
                type $T = i8;
                $body
            }
            shmarray::format::Dtype::I16 => {
                type $T = i16;
                $body
            }
            shmarray::format::Dtype::I32 => {
                type $T = i32;
                $body
            }
            shmarray::format::Dtype::I64 => {
                type $T = i64;
                $body
            }
            shmarray::format::Dtype::U8 => {
                type $T = u8;
                $body
            }
            shmarray::format::Dtype::U16 => {
                type $T = u16;
                $body
            }
            shmarray::format::Dtype::U32 => {
                type $T = u32;
                $body
            }
            shmarray::format::Dtype::U64 => {
                type $T = u64;
                $body
            }
            shmarray::format::Dtype::F32 => {
                type $T = f32;
                $body
            }
            shmarray::format::Dtype::F64 => {
                type $T = f64;
                $body
            }
            shmarray::format::Dtype::Bool => {
                type $T = shmarray::element::Bool;
                $body
            }
            shmarray::format::Dtype::F16 => {
                type $T = shmarray::half::f16;
                $body
            }
            shmarray::format::Dtype::C64 => {
                type $T = shmarray::num_complex::Complex<f32>;
                $body
            }
            shmarray::format::Dtype::C128 => {
                type $T = shmarray::num_complex::Complex<f64>;
                $body
            }
            $other => $fallback,
        }
    };
}
pub(crate) use with_dtype;

/// Builds a typed enum's variant for a runtime `Dtype`: `$ctor` is evaluated with
/// the type alias `$T` naming the element type.
macro_rules! for_dtype {
    ($dt:expr, $name:ident, $T:ident => $ctor:expr) => {
        $crate::with_dtype!($dt, $T => $name::from($ctor), other => {
            return Err($crate::errors::raise(
                "TypeMismatchError",
                format!("element type {other} is not supported by these bindings"),
            ))
        })
    };
}
pub(crate) use for_dtype;

/// The dtypes these bindings take, for error messages.
const SUPPORTED: &str = "u1, u2, u4, u8, i1, i2, i4, i8, f2, f4, f8, c8, c16, bool \
                         (native byte order), or a structured dtype of them";

/// Parses a dtype argument the way numpy does (`numpy.dtype(x)`: `"f8"`,
/// `"float64"`, `numpy.float64`, `bool`, `"c16"`, a structured dtype...) into the
/// NPY descriptor numpy would write for it. Only little-endian (native) numbers,
/// `bool`, and structured dtypes of them (padding included, nested, with array
/// fields) are accepted.
pub(crate) fn parse_descr(obj: &Bound<'_, PyAny>) -> PyResult<Descr> {
    let py = obj.py();
    let dt = py.import("numpy")?.getattr("dtype")?.call1((obj,))?;
    let unsupported = |what: String| {
        errors::raise(
            "TypeMismatchError",
            format!("unsupported dtype {what}: expected {SUPPORTED}"),
        )
    };
    let descr = if dt.getattr("names")?.is_none() {
        let s: String = dt.getattr("str")?.extract()?;
        Descr::Simple(s)
    } else {
        // numpy's own header descriptor of the dtype (padding as ('', '|Vn')),
        // parsed by the crate's header parser from its repr.
        let d = py
            .import("numpy.lib.format")?
            .getattr("dtype_to_descr")?
            .call1((&dt,))
            .map_err(|e| unsupported(format!("{dt} ({e})")))?;
        let text: String = d.repr()?.extract()?;
        Descr::from_literal(&text).map_err(|e| unsupported(format!("{text} ({e})")))?
    };
    if !descr.is_supported() {
        return Err(unsupported(descr.literal()));
    }
    Ok(descr)
}

/// [`parse_descr`] for objects that hold one number (values, queues): no records.
pub(crate) fn parse_dtype(obj: &Bound<'_, PyAny>) -> PyResult<Dtype> {
    let descr = parse_descr(obj)?;
    descr.dtype().ok_or_else(|| {
        errors::raise(
            "TypeMismatchError",
            format!(
                "structured dtype {} is supported for arrays only (put records in a \
                 ByteQueue as bytes)",
                descr.literal()
            ),
        )
    })
}

/// The NPY type string of an element type that is not a record (`<f8`).
pub(crate) fn type_str(dt: Dtype) -> &'static str {
    dt.type_str().unwrap_or("|V0")
}

/// `numpy.dtype` of an element type.
pub(crate) fn numpy_dtype(py: Python<'_>, dt: Dtype) -> PyResult<Py<PyAny>> {
    Ok(py
        .import("numpy")?
        .getattr("dtype")?
        .call1((type_str(dt),))?
        .unbind())
}

/// `numpy.dtype` of any descriptor a header holds, read as numpy reads a header
/// (`numpy.lib.format.descr_to_dtype`): a record's padding fields are gaps.
pub(crate) fn numpy_dtype_of(py: Python<'_>, descr: &Descr) -> PyResult<Py<PyAny>> {
    let value = py
        .import("ast")?
        .getattr("literal_eval")?
        .call1((descr.literal(),))?;
    Ok(py
        .import("numpy.lib.format")?
        .getattr("descr_to_dtype")?
        .call1((value,))?
        .unbind())
}

/// Creation options from the Python keywords.
pub(crate) fn options(persistent: bool, huge_pages: &str) -> PyResult<Options> {
    let huge = match huge_pages {
        "off" => HugePages::Off,
        "prefer" => HugePages::Prefer,
        "require" => HugePages::Require,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "huge_pages must be 'off', 'prefer' or 'require', not {other:?}"
            )))
        }
    };
    Ok(Options::new().persistent(persistent).huge_pages(huge))
}

/// The longest timeout a blocking call takes, in seconds: `threading.TIMEOUT_MAX`
/// on Linux (about 292 years). Longer ones (`float("inf")`, `1e300`) raise
/// `OverflowError`, as `threading` does; `None` waits without a limit.
pub(crate) const TIMEOUT_MAX: f64 = 9_223_372_036.0;

/// Checks a Python timeout as `threading` does: a negative or NaN timeout is a
/// `ValueError`, one above [`TIMEOUT_MAX`] an `OverflowError`. No clock is read.
#[inline]
pub(crate) fn check_timeout(timeout: Option<f64>) -> PyResult<()> {
    match timeout {
        None => Ok(()),
        Some(t) if t.is_nan() || t < 0.0 => Err(pyo3::exceptions::PyValueError::new_err(
            "timeout must be a non-negative number or None",
        )),
        Some(t) if t > TIMEOUT_MAX => Err(pyo3::exceptions::PyOverflowError::new_err(format!(
            "timeout value is too large (at most TIMEOUT_MAX = {TIMEOUT_MAX} s; None waits \
             without a limit)"
        ))),
        Some(_) => Ok(()),
    }
}

/// The deadline of a Python timeout (`None`: none), checked by [`check_timeout`].
pub(crate) fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    check_timeout(timeout)?;
    match timeout {
        None => Ok(None),
        Some(t) => Ok(Some(
            Instant::now()
                .checked_add(Duration::from_secs_f64(t))
                .ok_or_else(|| {
                    pyo3::exceptions::PyOverflowError::new_err("timeout value is too large")
                })?,
        )),
    }
}

/// Rebuilds a pickled handle: opens segment `name` of `kind` (see `life`); the
/// handle is never the owner.
#[pyfunction]
#[pyo3(signature = (kind, name, *args))]
fn _reopen(
    py: Python<'_>,
    kind: &str,
    name: &str,
    args: &Bound<'_, pyo3::types::PyTuple>,
) -> PyResult<Py<PyAny>> {
    let arg = |i: usize| args.get_item(i);
    Ok(match kind {
        "array" => {
            let readonly: bool = arg(0)?.extract()?;
            array::open(name, readonly)?.into_py_any(py)?
        }
        "counter" => {
            let index: i64 = arg(0)?.extract()?;
            let a = array::open(name, false)?;
            let c = a.counter_at(index)?;
            a.close_now();
            c.into_py_any(py)?
        }
        "value" => value::Value::open(name)?.into_py_any(py)?,
        "atomic" => counter::AtomicU64::open_handle(name)?.into_py_any(py)?,
        "event" => objects::Event::open_handle(name)?.into_py_any(py)?,
        "barrier" => objects::Barrier::open_handle(name)?.into_py_any(py)?,
        "queue" => queue::Queue::open_handle(name)?.into_py_any(py)?,
        "byte queue" => queue::ByteQueue::open_handle(name)?.into_py_any(py)?,
        "array queue" => array_queue::ArrayQueue::open_handle(name)?.into_py_any(py)?,
        "vec" => vec::SharedVec::open_handle(name)?.into_py_any(py)?,
        "map" => map::SharedMap::open_handle(name, &arg(0)?, &arg(1)?)?.into_py_any(py)?,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown pyshmarray handle kind {other:?}"
            )))
        }
    })
}

/// Runs `attempt(slice)` with the GIL released until it gives `Some`, the
/// deadline passes (`Ok(None)`) or a signal handler raises (Ctrl-C:
/// `KeyboardInterrupt`). `attempt` is called at least once.
pub(crate) fn wait_in_slices<R: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(Duration) -> Option<R> + Send,
) -> PyResult<Option<R>> {
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        if let Some(r) = py.detach(|| attempt(slice)) {
            return Ok(Some(r));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// Locks a std mutex of the bindings, ignoring poisoning (the data they guard
/// stays consistent: every critical section is a take or a replace).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<array::SharedArray>()?;
    m.add_class::<array::Mapping>()?;
    m.add_class::<counter::Counter>()?;
    m.add_class::<guard::Guard>()?;
    m.add_class::<value::Value>()?;
    m.add_class::<counter::AtomicU64>()?;
    m.add_class::<objects::Event>()?;
    m.add_class::<objects::Barrier>()?;
    m.add_class::<queue::Queue>()?;
    m.add_class::<queue::ByteQueue>()?;
    m.add_class::<array_queue::ArrayQueue>()?;
    m.add_class::<map::SharedMap>()?;
    m.add_class::<vec::SharedVec>()?;
    m.add_function(wrap_pyfunction!(_reopen, m)?)?;
    m.add("TIMEOUT_MAX", TIMEOUT_MAX)?;
    // Whether `memoryview(array)` works (the abi3-py311 build, or a non-abi3 one).
    m.add("BUFFER_PROTOCOL", cfg!(any(Py_3_11, not(Py_LIMITED_API))))?;
    m.add_function(wrap_pyfunction!(array::create, m)?)?;
    m.add_function(wrap_pyfunction!(array::open, m)?)?;
    m.add_function(wrap_pyfunction!(listing::ls, m)?)?;
    m.add_function(wrap_pyfunction!(listing::gc, m)?)?;
    m.add_function(wrap_pyfunction!(listing::remove, m)?)?;
    m.add_function(wrap_pyfunction!(listing::segment_dir, m)?)?;
    Ok(())
}
