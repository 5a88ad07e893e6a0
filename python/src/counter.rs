//! `Counter`: one of an array's atomic counters, or an `AtomicU64` segment's value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;

use crate::handles::AnyArray;

/// What a `Counter` reads and writes.
pub(crate) enum CounterSource {
    Array(Arc<AnyArray>, usize),
    Atomic(Arc<shmarray::SharedAtomicU64>),
}

/// An atomic 64-bit counter shared between processes: one of an array's counters
/// (`a.counter(i)`) or an `AtomicU64` segment's value. Sequentially consistent.
#[pyclass(frozen, subclass, module = "pyshmarray._native", name = "Counter")]
pub(crate) struct Counter {
    pub(crate) source: CounterSource,
}

impl Counter {
    fn atomic(&self) -> &AtomicU64 {
        match &self.source {
            // Checked when the counter was made; the handle is kept alive by the Arc.
            CounterSource::Array(a, i) => a.counter(*i).expect("index checked at creation"),
            CounterSource::Atomic(a) => a,
        }
    }
}

#[pymethods]
impl Counter {
    /// The current value.
    fn load(&self) -> u64 {
        self.atomic().load(Ordering::SeqCst)
    }

    /// Stores `value`.
    fn store(&self, value: u64) {
        self.atomic().store(value, Ordering::SeqCst)
    }

    /// Adds `delta` (wrapping); returns the previous value.
    #[pyo3(signature = (delta=1))]
    fn fetch_add(&self, delta: u64) -> u64 {
        self.atomic().fetch_add(delta, Ordering::SeqCst)
    }

    /// Subtracts `delta` (wrapping); returns the previous value.
    #[pyo3(signature = (delta=1))]
    fn fetch_sub(&self, delta: u64) -> u64 {
        self.atomic().fetch_sub(delta, Ordering::SeqCst)
    }

    /// Swaps in `value`; returns the previous value.
    fn swap(&self, value: u64) -> u64 {
        self.atomic().swap(value, Ordering::SeqCst)
    }

    /// Stores `new` if the value is `current`; returns `(success, previous)`.
    fn compare_exchange(&self, current: u64, new: u64) -> (bool, u64) {
        match self
            .atomic()
            .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(v) => (true, v),
            Err(v) => (false, v),
        }
    }

    /// The value (same as `load()`).
    #[getter]
    fn value(&self) -> u64 {
        self.load()
    }

    fn __repr__(&self) -> String {
        format!("<pyshmarray.Counter {}>", self.load())
    }
}
