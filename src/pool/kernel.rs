//! In-place parallel kernels: split a shared array along an axis into disjoint parts
//! and run a plain `fn` on each part in the workers.
//!
//! The parts travel as (directory, name, device, inode, axis, range). A worker
//! attaches each segment once and keeps the mapping (keyed by device + inode, so a
//! name that was removed and re-created is attached afresh), so repeated kernels
//! over the same array pay no attach or page-fault cost again.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::Range;
use std::rc::Rc;

use ndarray::{ArrayView, ArrayViewMut, Axis, Dimension, Slice};
use serde::{Deserialize, Serialize};

use super::Pool;
use crate::array::SharedArray;
use crate::element::Element;
use crate::process::{decode, encode, run_items, TaskError, Trampoline};
use crate::segment::{Namespace, Options};

/// How to cut an array into parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Partition {
    /// One part per worker (best for uniform kernels).
    PerWorker,
    /// This many parts (more parts balance uneven work).
    Parts(usize),
}

/// Where a named segment is, and which file it was when the handle was made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct Location {
    dir: String,
    name: String,
    dev: u64,
    ino: u64,
}

impl Location {
    fn of<T: Element, D: Dimension>(array: &SharedArray<T, D>) -> Result<Location, TaskError> {
        let (Some(name), Some(path)) = (array.name(), array.path()) else {
            return Err(TaskError::Array(
                "only named segments can be sent to workers (anonymous ones have no name to attach)".into(),
            ));
        };
        let (dev, ino) = array.file_id();
        Ok(Location {
            dir: path
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            name: name.to_string(),
            dev,
            ino,
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Part {
    at: Location,
    axis: usize,
    start: usize,
    end: usize,
}

thread_local! {
    /// Worker-side cache of attached arrays, keyed by (device, inode).
    static ATTACHED: RefCell<HashMap<(u64, u64), Rc<dyn Any>>> = RefCell::new(HashMap::new());
}

/// Runs `f` with the cached `SharedArray<T, D>` at `at`, attaching it on first use.
/// The cache is not borrowed while `f` runs, so `f` may attach other handles.
fn with_attached<T: Element, D: Dimension + 'static, O>(
    at: &Location,
    f: impl FnOnce(&SharedArray<T, D>) -> O,
) -> Result<O, String> {
    let key = (at.dev, at.ino);
    let cached = ATTACHED.with(|c| c.borrow().get(&key).cloned());
    let array = match cached.and_then(|a| a.downcast::<SharedArray<T, D>>().ok()) {
        Some(a) => a,
        None => {
            let ns = Namespace::at(&at.dir).map_err(|e| e.to_string())?;
            let a: SharedArray<T, D> =
                SharedArray::open_with(&Options::new().namespace(ns), &at.name)
                    .map_err(|e| e.to_string())?;
            if a.file_id() != key {
                return Err(format!(
                    "segment {:?} was replaced since the handle was made",
                    at.name
                ));
            }
            let a = Rc::new(a);
            ATTACHED.with(|c| c.borrow_mut().insert(key, a.clone()));
            a
        }
    };
    Ok(f(&array))
}

/// A shared array as a task argument: serialises to its location (directory, name,
/// device, inode), and in a worker attaches once and is cached for later tasks.
///
/// ```no_run
/// use shmarray::pool::{ArrayHandle, Pool};
/// fn row_sum((h, row): (ArrayHandle<f64, ndarray::Ix2>, usize)) -> f64 {
///     h.with(|a| a.view().row(row).sum()).unwrap()
/// }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # shmarray::process::init();
/// let a = shmarray::SharedArray::<f64, ndarray::Ix2>::create("m", (4, 4))?;
/// let h = ArrayHandle::of(&a)?;
/// let pool = Pool::new(2)?;
/// let sums = pool.map(row_sum, (0..4).map(|r| (h.clone(), r)))?;
/// # Ok(()) }
/// ```
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub struct ArrayHandle<T, D> {
    at: Location,
    #[serde(skip)]
    _t: PhantomData<fn() -> (T, D)>,
}

impl<T, D> Clone for ArrayHandle<T, D> {
    fn clone(&self) -> Self {
        ArrayHandle {
            at: self.at.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Element, D: Dimension + 'static> ArrayHandle<T, D> {
    /// A handle to a named array (anonymous arrays have no name: `TaskError::Array`).
    pub fn of(array: &SharedArray<T, D>) -> Result<Self, TaskError> {
        Ok(ArrayHandle {
            at: Location::of(array)?,
            _t: PhantomData,
        })
    }

    /// Runs `f` with the array, attaching it on first use in this process and
    /// reusing the mapping afterwards. Fails if the name now refers to a different
    /// file, or holds a different type.
    pub fn with<R>(&self, f: impl FnOnce(&SharedArray<T, D>) -> R) -> Result<R, TaskError> {
        with_attached(&self.at, f).map_err(TaskError::Array)
    }
}

fn call_kernel<T: Element, D: Dimension + 'static>(
    func: usize,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    // SAFETY: `func` is the address of a `fn(ArrayViewMut<T, D>)` of this executable
    // (sent with this monomorphised trampoline; same executable checked at handshake).
    let f: fn(ArrayViewMut<'_, T, D>) =
        unsafe { std::mem::transmute::<usize, fn(ArrayViewMut<'_, T, D>)>(func) };
    let parts: Vec<Part> = decode(payload)?;
    let outcomes = run_items(parts, |p| {
        with_attached::<T, D, ()>(&p.at, |a| {
            // SAFETY: the pool hands out disjoint ranges of one axis, each exactly
            // once, so no two views of the same elements exist at the same time; the
            // caller's array handle is borrowed for the kernel's whole duration.
            let view = unsafe { a.view_mut_unchecked() };
            f(view.slice_axis_move(Axis(p.axis), Slice::from(p.start..p.end)))
        })
    });
    let flat: Vec<Result<(), String>> = outcomes.into_iter().map(|r| r.and_then(|x| x)).collect();
    encode(&flat)
}

fn call_reduce<T: Element, D: Dimension + 'static, R: Serialize>(
    func: usize,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    // SAFETY: as in `call_kernel`, for a `fn(ArrayView<T, D>) -> R`.
    let f: fn(ArrayView<'_, T, D>) -> R =
        unsafe { std::mem::transmute::<usize, fn(ArrayView<'_, T, D>) -> R>(func) };
    let parts: Vec<Part> = decode(payload)?;
    let outcomes = run_items(parts, |p| {
        with_attached::<T, D, R>(&p.at, |a| {
            // SAFETY: parts are read-only here and no task of this worker holds a
            // mutable view while a reduction runs (one task at a time).
            let view = unsafe { a.view_unchecked() };
            f(view.slice_axis_move(Axis(p.axis), Slice::from(p.start..p.end)))
        })
    });
    let flat: Vec<Result<R, String>> = outcomes.into_iter().map(|r| r.and_then(|x| x)).collect();
    encode(&flat)
}

/// Cuts `0..len` into about `parts` ranges whose boundaries fall on multiples of
/// `align` (except the end), none empty, covering every index exactly once.
pub(crate) fn split(len: usize, parts: usize, align: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let align = align.max(1);
    let step = len.div_ceil(parts).div_ceil(align) * align;
    let step = step.max(1);
    (0..len)
        .step_by(step)
        .map(|s| s..(s + step).min(len))
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Pool {
    fn parts<T: Element, D: Dimension>(
        &self,
        array: &SharedArray<T, D>,
        axis: Axis,
        partition: Partition,
    ) -> Result<Vec<Part>, TaskError> {
        let at = Location::of(array)?;
        if axis.0 >= array.shape().len() {
            return Err(TaskError::Array(format!(
                "axis {} out of range for shape {:?}",
                axis.0,
                array.shape()
            )));
        }
        let len = array.shape()[axis.0];
        // Along the outermost axis of a C-order array every index is a contiguous
        // block of `row` bytes: put boundaries on page (else cache-line) multiples.
        let row: usize =
            array.shape()[axis.0 + 1..].iter().product::<usize>() * std::mem::size_of::<T>();
        let n = match partition {
            Partition::PerWorker => self.size,
            Partition::Parts(n) => n,
        };
        let contiguous = axis.0 == 0 && !array.is_fortran() && row > 0;
        let mut ranges = split(len, n, 1);
        if contiguous {
            // Page alignment first; cache-line alignment if pages would cost parts.
            for boundary in [4096, 64] {
                let aligned = split(len, n, boundary / gcd(row, boundary));
                if aligned.len() >= ranges.len() {
                    ranges = aligned;
                    break;
                }
            }
        }
        Ok(ranges
            .into_iter()
            .map(|r| Part {
                at: at.clone(),
                axis: axis.0,
                start: r.start,
                end: r.end,
            })
            .collect())
    }

    fn run_parts<R: serde::de::DeserializeOwned>(
        &self,
        tramp: Trampoline,
        func: usize,
        parts: Vec<Part>,
    ) -> Result<Vec<R>, TaskError> {
        self.batch::<Part, R>(tramp, func, &parts, 1)?.get(None)
    }

    /// Runs `kernel` in place on disjoint parts of `array` along `axis`, one part per
    /// worker, and waits for all of them. Every index along the axis is in exactly
    /// one part. Boundaries along axis 0 of a C-order array fall on page boundaries
    /// where that keeps the number of parts, else on cache-line boundaries where
    /// the row size allows (so no two workers write the same cache line).
    ///
    /// The kernel is a plain `fn`; panics and worker deaths come back as errors
    /// naming the part (its index).
    pub fn for_each_chunk<T: Element, D: Dimension + 'static>(
        &self,
        array: &SharedArray<T, D>,
        axis: Axis,
        kernel: fn(ArrayViewMut<'_, T, D>),
    ) -> Result<(), TaskError> {
        self.for_each_chunk_with(array, axis, Partition::PerWorker, kernel)
    }

    /// [`for_each_chunk`](Self::for_each_chunk) with an explicit partition.
    pub fn for_each_chunk_with<T: Element, D: Dimension + 'static>(
        &self,
        array: &SharedArray<T, D>,
        axis: Axis,
        partition: Partition,
        kernel: fn(ArrayViewMut<'_, T, D>),
    ) -> Result<(), TaskError> {
        if array.is_empty() {
            return Ok(());
        }
        if !array.is_writable() {
            return Err(TaskError::Array("the array is read-only".into()));
        }
        let parts = self.parts(array, axis, partition)?;
        self.run_parts::<()>(call_kernel::<T, D>, kernel as usize, parts)
            .map(drop)
    }

    /// Reduction form: runs `f` on each part (read-only) in the workers and returns
    /// the parts' results in order, for the caller to combine.
    pub fn map_chunks<T: Element, D: Dimension + 'static, R>(
        &self,
        array: &SharedArray<T, D>,
        axis: Axis,
        partition: Partition,
        f: fn(ArrayView<'_, T, D>) -> R,
    ) -> Result<Vec<R>, TaskError>
    where
        R: Serialize + serde::de::DeserializeOwned,
    {
        if array.is_empty() {
            return Ok(Vec::new());
        }
        let parts = self.parts(array, axis, partition)?;
        self.run_parts::<R>(call_reduce::<T, D, R>, f as usize, parts)
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_covers_every_index_once_with_aligned_boundaries() {
        for len in [0usize, 1, 7, 100, 4096, 10_001] {
            for parts in [1usize, 2, 3, 8] {
                for align in [1usize, 4, 512] {
                    let rs = split(len, parts, align);
                    let mut next = 0;
                    for r in &rs {
                        assert_eq!(r.start, next);
                        assert!(r.end > r.start);
                        assert!(r.start % align == 0);
                        next = r.end;
                    }
                    assert_eq!(next, len);
                }
            }
        }
    }
}
