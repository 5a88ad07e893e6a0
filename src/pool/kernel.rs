//! In-place parallel kernels: split a shared array along an axis into disjoint parts
//! and run a plain `fn` on each part in the workers; and [`ArrayHandle`], a shared
//! array as a task argument.
//!
//! The parts travel as (directory, name, device, inode, axis, range). A worker
//! attaches each segment once and keeps the mapping (see the attach cache in
//! `process/cache.rs`: checked against the name at every use, released when the segment
//! is removed, bounded), so repeated kernels over the same array pay no attach or
//! page-fault cost again.

use std::marker::PhantomData;
use std::ops::Range;

use ndarray::{ArrayView, ArrayViewMut, Axis, Dimension};
use serde::{Deserialize, Serialize};

use super::Pool;
use crate::array::SharedArray;
use crate::element::Element;
use crate::process::{with_attached, Location, Part, TaskError, TaskFn};
use crate::segment::Segment as _;

/// How to cut an array into parts.
///
/// ```
/// use shmarray::{ndarray::{ArrayView, Axis, Ix1}, pool::{Partition, Pool}, SharedArray};
///
/// fn part_len(part: ArrayView<'_, u8, Ix1>) -> usize {
///     part.len()
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     shmarray::init(); // in a worker, this runs the worker loop and exits
///     let a = SharedArray::<u8, Ix1>::create(&format!("doc-partition-{}", std::process::id()), 10_000)?;
///     let pool = Pool::new(2)?;
///     let per_worker = pool.map_chunks(&a, Axis(0), Partition::PerWorker, part_len)?;
///     assert_eq!(per_worker.len(), 2);
///     let five = pool.map_chunks(&a, Axis(0), Partition::Parts(5), part_len)?;
///     assert_eq!(five.len(), 5);
///     // Either way, every index is in exactly one part.
///     assert_eq!((per_worker.iter().sum::<usize>(), five.iter().sum::<usize>()), (10_000, 10_000));
///     Ok(())
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Partition {
    /// One part per worker (best for uniform kernels).
    PerWorker,
    /// This many parts (more parts balance uneven work).
    Parts(usize),
}

/// A shared array as a task argument: serialises to its location (directory, name,
/// device, inode); in a worker it is attached on first use and the mapping is
/// reused by later tasks.
///
/// ```no_run
/// use shmarray::pool::{ArrayHandle, Pool};
/// fn row_sum((h, row): (ArrayHandle<f64, ndarray::Ix2>, usize)) -> f64 {
///     h.with(|a| a.lock().map(|g| g.row(row).sum()).unwrap_or(f64::NAN))
///         .unwrap()
/// }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # shmarray::init();
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
    /// A handle to a named array.
    ///
    /// # Errors
    /// [`TaskError::AnonymousArray`] for anonymous (memfd) arrays, which have no
    /// name to attach by.
    pub fn of(array: &SharedArray<T, D>) -> Result<Self, TaskError> {
        Ok(ArrayHandle {
            at: handed_out(array)?,
            _t: PhantomData,
        })
    }

    /// Runs `f` with the array, attaching it on first use in this thread and
    /// reusing the mapping afterwards. `f` gets the handle by `&mut`: it may take
    /// direct views (`view`, `view_mut`), which need the only handle of the array in
    /// this process, or lock it.
    ///
    /// # Errors
    /// [`TaskError::SegmentReplaced`] if the name no longer refers to the file the
    /// handle was made for (removed, or removed and created anew), checked at every
    /// call; [`TaskError::Attach`] if it cannot be attached (e.g. it holds another
    /// element type).
    pub fn with<R>(&self, f: impl FnOnce(&mut SharedArray<T, D>) -> R) -> Result<R, TaskError> {
        with_attached(&self.at, f)
    }
}

/// `array`'s location, remembered as handed to workers: when this process removes
/// the segment, idle workers let go of it at once (see `sweep`).
fn handed_out<T: Element, D: Dimension>(array: &SharedArray<T, D>) -> Result<Location, TaskError> {
    let at = Location::of(array)?;
    super::sweep::handed_out((at.dev, at.ino));
    Ok(at)
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
        let at = handed_out(array)?;
        if axis.0 >= array.shape().len() {
            return Err(TaskError::AxisOutOfRange {
                axis: axis.0,
                ndim: array.shape().len(),
            });
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
        task: TaskFn,
        parts: Vec<Part>,
    ) -> Result<Vec<R>, TaskError> {
        self.batch::<Part, R>(task, &parts, 1)?.get()
    }

    /// Runs `kernel` in place on disjoint parts of `array` along `axis`, one part per
    /// worker, and waits for all of them. Every index along the axis is in exactly
    /// one part. Boundaries along axis 0 of a C-order array fall on page boundaries
    /// where that keeps the number of parts, else on cache-line boundaries where
    /// the row size allows (so no two workers write the same cache line).
    ///
    /// The kernel is a plain `fn`; panics and worker deaths come back as errors
    /// naming the part (its index).
    ///
    /// # Errors
    /// [`TaskError::AnonymousArray`], [`TaskError::ReadOnlyArray`],
    /// [`TaskError::AxisOutOfRange`] before anything runs; then the first failed
    /// part's error ([`TaskError::Panicked`], [`TaskError::WorkerDied`],
    /// [`TaskError::SegmentReplaced`] if the name was re-created meanwhile, ...).
    pub fn for_each_chunk<T: Element, D: Dimension + 'static>(
        &self,
        array: &SharedArray<T, D>,
        axis: Axis,
        kernel: fn(ArrayViewMut<'_, T, D>),
    ) -> Result<(), TaskError> {
        self.for_each_chunk_with(array, axis, Partition::PerWorker, kernel)
    }

    /// [`for_each_chunk`](Self::for_each_chunk) with an explicit partition.
    ///
    /// # Errors
    /// As [`for_each_chunk`](Self::for_each_chunk).
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
            return Err(TaskError::ReadOnlyArray {
                name: array.name().unwrap_or_default().to_string(),
            });
        }
        let parts = self.parts(array, axis, partition)?;
        self.run_parts::<()>(TaskFn::kernel(kernel), parts)
            .map(drop)
    }

    /// Reduction form: runs `f` on each part (read-only) in the workers and returns
    /// the parts' results in order, for the caller to combine.
    ///
    /// # Errors
    /// As [`for_each_chunk`](Self::for_each_chunk), except that a read-only
    /// array is fine.
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
        self.run_parts::<R>(TaskFn::reduce(f), parts)
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
