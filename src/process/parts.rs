//! Shared arrays in tasks: which part of an array a task works on ([`Part`]), and the trampolines that run kernels and reductions
//! over parts in a worker, through the attach cache.

use ndarray::{ArrayView, ArrayViewMut, Axis, Dimension, Slice};
use serde::{Deserialize, Serialize};

use super::cache::{with_attached, Location};
use super::{run_chunk, ItemFailure, MessageFailure};
use crate::element::Element;

/// One part of an array: `start..end` along `axis`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Part {
    pub(crate) at: Location,
    pub(crate) axis: usize,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Trampoline for kernels `fn(ArrayViewMut<T, D>)` over parts.
///
/// # Safety
/// `func` must be the address of an `fn(ArrayViewMut<'_, T, D>)`.
pub(crate) unsafe fn call_kernel<T: Element, D: Dimension + 'static>(
    func: usize,
    payload: &[u8],
) -> Result<Vec<u8>, MessageFailure> {
    // SAFETY: the caller guarantees the type of `func`.
    let f = unsafe { std::mem::transmute::<usize, fn(ArrayViewMut<'_, T, D>)>(func) };
    run_chunk(payload, |p: Part| {
        with_attached::<T, D, Result<(), ItemFailure>>(&p.at, |a| {
            // The safe, claiming view: this handle is out of the cache and must be
            // the only one of the array in this process, so nothing the kernel does
            // (another `with`, an `open` by name) can reach these elements again.
            // Other workers write the other parts, in other processes.
            let view = a.view_mut().map_err(|e| ItemFailure::Attach {
                name: p.at.name.clone(),
                reason: e.to_string(),
            })?;
            f(view.slice_axis_move(Axis(p.axis), Slice::from(p.start..p.end)));
            Ok(())
        })
        .map_err(ItemFailure::from_error)?
    })
}

/// Trampoline for reductions `fn(ArrayView<T, D>) -> R` over parts.
///
/// # Safety
/// `func` must be the address of an `fn(ArrayView<'_, T, D>) -> R`.
pub(crate) unsafe fn call_reduce<T: Element, D: Dimension + 'static, R: Serialize>(
    func: usize,
    payload: &[u8],
) -> Result<Vec<u8>, MessageFailure> {
    // SAFETY: the caller guarantees the type of `func`.
    let f = unsafe { std::mem::transmute::<usize, fn(ArrayView<'_, T, D>) -> R>(func) };
    run_chunk(payload, |p: Part| {
        with_attached::<T, D, Result<R, ItemFailure>>(&p.at, |a| {
            // As for kernels: the claiming view, so `f` cannot lock the same array
            // (another handle would be refused) while it reads it.
            let view = a.view().map_err(|e| ItemFailure::Attach {
                name: p.at.name.clone(),
                reason: e.to_string(),
            })?;
            Ok(f(view.slice_axis_move(
                Axis(p.axis),
                Slice::from(p.start..p.end),
            )))
        })
        .map_err(ItemFailure::from_error)?
    })
}
