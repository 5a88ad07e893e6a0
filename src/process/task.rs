//! Typed tasks: a plain `fn` and the trampoline monomorphised for its exact type,
//! paired in one place ([`TaskFn`]), and the checks that make sending their
//! addresses to another process sound.
//!
//! A function crosses the process boundary as its offset from [`anchor`], a
//! function of this crate. That names the same function in a worker only if both
//! the function and the anchor lie in the same loaded object (executable or shared
//! library) and the worker maps the same file for it: [`check_same_object`] checks
//! the first (parent side at submit, worker side before every new pair), the
//! handshake ([`Image`]) the second.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use ndarray::{ArrayView, ArrayViewMut, Dimension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{ItemFailure, MessageFailure, TaskError};
use super::wire::{decode, encode, Image};
use crate::element::Element;
use crate::sys::dl;

#[inline(never)]
fn anchor() {}

fn anchor_addr() -> usize {
    anchor as fn() as usize
}

/// A type-erased entry point: runs a serialized chunk of inputs through the
/// function at `func` and returns the serialized outcomes.
///
/// # Safety
/// `func` must be the address of a function of exactly the type this trampoline
/// was instantiated for (as [`TaskFn`] pairs them).
pub(crate) type Trampoline =
    unsafe fn(func: usize, payload: &[u8]) -> Result<Vec<u8>, MessageFailure>;

/// Per-input outcome inside a chunk.
pub(crate) type ItemOutcome<R> = Result<R, ItemFailure>;

/// A plain function and the trampoline for its type. Constructed only from typed
/// function pointers, so the pair always matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskFn {
    tramp: usize,
    func: usize,
}

impl TaskFn {
    /// `fn(A) -> R` (`map`, `submit`, `Process`).
    pub(crate) fn unary<A: DeserializeOwned, R: Serialize>(f: fn(A) -> R) -> TaskFn {
        TaskFn {
            tramp: call_fn::<A, R> as Trampoline as usize,
            func: f as usize,
        }
    }

    /// `fn(A, B) -> R` (`starmap`).
    pub(crate) fn binary<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
        f: fn(A, B) -> R,
    ) -> TaskFn {
        TaskFn {
            tramp: call_fn2::<A, B, R> as Trampoline as usize,
            func: f as usize,
        }
    }

    /// An in-place kernel over parts of a shared array (`for_each_chunk`).
    pub(crate) fn kernel<T: Element, D: Dimension + 'static>(
        f: fn(ArrayViewMut<'_, T, D>),
    ) -> TaskFn {
        TaskFn {
            tramp: super::parts::call_kernel::<T, D> as Trampoline as usize,
            func: f as usize,
        }
    }

    /// A read-only reduction over parts of a shared array (`map_chunks`).
    pub(crate) fn reduce<T: Element, D: Dimension + 'static, R: Serialize>(
        f: fn(ArrayView<'_, T, D>) -> R,
    ) -> TaskFn {
        TaskFn {
            tramp: super::parts::call_reduce::<T, D, R> as Trampoline as usize,
            func: f as usize,
        }
    }

    /// Checks that both addresses lie in this crate's object (so their offsets name
    /// them in a worker) and returns the offsets to send.
    ///
    /// # Errors
    /// [`TaskError::ForeignFunction`] if either lies in another object.
    pub(crate) fn offsets(&self) -> Result<TaskOffsets, TaskError> {
        for addr in [self.tramp, self.func] {
            check_same_object(addr).map_err(|f| f.into_error(0))?;
        }
        Ok(TaskOffsets {
            tramp: offset_of(self.tramp),
            func: offset_of(self.func),
        })
    }
}

/// A [`TaskFn`] checked for sending: the offsets of its trampoline and function
/// from the anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskOffsets {
    tramp: isize,
    func: isize,
}

impl TaskOffsets {
    /// `(trampoline, function)` offsets, for the wire.
    pub(crate) fn get(self) -> (isize, isize) {
        (self.tramp, self.func)
    }
}

fn offset_of(addr: usize) -> isize {
    (addr as isize).wrapping_sub(anchor_addr() as isize)
}

fn addr_of(off: isize) -> usize {
    (anchor_addr() as isize).wrapping_add(off) as usize
}

/// The anchor's object (load address and name), looked up once.
fn anchor_object() -> Option<&'static dl::Object> {
    static OBJ: OnceLock<Option<dl::Object>> = OnceLock::new();
    OBJ.get_or_init(|| dl::object_of(anchor_addr())).as_ref()
}

/// `Ok` if `addr` lies in the same loaded object as the anchor function.
pub(crate) fn check_same_object(addr: usize) -> Result<(), MessageFailure> {
    let expected = anchor_object();
    let found = dl::object_of(addr);
    match (expected, &found) {
        (Some(e), Some(f)) if e.base == f.base => Ok(()),
        _ => Err(MessageFailure::ForeignFunction {
            address: addr,
            object: found.map(|o| o.name),
            expected: expected.map(|o| o.name.clone()),
        }),
    }
}

/// Resolves offsets received from a parent into a trampoline and a function
/// address, checking that both lie in this crate's object (unless `checked`: this
/// process already checked the same pair).
pub(crate) fn resolve(
    tramp: isize,
    func: isize,
    checked: bool,
) -> Result<(Trampoline, usize), MessageFailure> {
    let (t, f) = (addr_of(tramp), addr_of(func));
    if !checked {
        check_same_object(t)?;
        check_same_object(f)?;
    }
    // SAFETY: `t` is the address of a `Trampoline` of this crate's object: the
    // parent computed the offset from a `TaskFn` (which holds only trampolines), the
    // handshake checked that this process maps the same file for the anchor at the
    // same offset, and `t` lies in that object (checked above, or earlier for the
    // same offsets).
    let t = unsafe { std::mem::transmute::<usize, Trampoline>(t) };
    Ok((t, f))
}

/// This process's code identity, for the handshake.
pub(crate) fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let unknown = || (String::new(), 0, String::new());
        let (exe_dev, exe_ino, exe_path) =
            dl::mapped_file(dl::executable_address()).unwrap_or_else(unknown);
        let (dev, ino, path) = dl::mapped_file(anchor_addr()).unwrap_or_else(unknown);
        let base = anchor_object().map_or(0, |o| o.base);
        Image {
            exe: (exe_dev, exe_ino),
            object: (dev, ino),
            anchor_offset: anchor_addr().wrapping_sub(base),
            exe_path,
            object_path: path,
        }
    })
}

pub(crate) fn panic_message(p: Box<dyn Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs every input of a chunk, catching panics per input.
pub(crate) fn run_items<A, R>(
    inputs: Vec<A>,
    f: impl Fn(A) -> Result<R, ItemFailure>,
) -> Vec<ItemOutcome<R>> {
    inputs
        .into_iter()
        .map(|a| {
            catch_unwind(AssertUnwindSafe(|| f(a)))
                .unwrap_or_else(|p| Err(ItemFailure::Panicked(panic_message(p))))
        })
        .collect()
}

/// Decodes a chunk of inputs, runs them, encodes the outcomes.
pub(crate) fn run_chunk<A: DeserializeOwned, R: Serialize>(
    payload: &[u8],
    f: impl Fn(A) -> Result<R, ItemFailure>,
) -> Result<Vec<u8>, MessageFailure> {
    let inputs: Vec<A> = decode(payload).map_err(MessageFailure::Serialization)?;
    encode(&run_items(inputs, f)).map_err(MessageFailure::Serialization)
}

/// Trampoline for `fn(A) -> R`.
///
/// # Safety
/// `func` must be the address of an `fn(A) -> R`.
unsafe fn call_fn<A: DeserializeOwned, R: Serialize>(
    func: usize,
    payload: &[u8],
) -> Result<Vec<u8>, MessageFailure> {
    // SAFETY: the caller guarantees `func` is an `fn(A) -> R`.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    run_chunk(payload, |a: A| Ok(f(a)))
}

/// Trampoline for `fn(A, B) -> R` (starmap).
///
/// # Safety
/// `func` must be the address of an `fn(A, B) -> R`.
unsafe fn call_fn2<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    func: usize,
    payload: &[u8],
) -> Result<Vec<u8>, MessageFailure> {
    // SAFETY: the caller guarantees `func` is an `fn(A, B) -> R`.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(func) };
    run_chunk(payload, |(a, b): (A, B)| Ok(f(a, b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: u64) -> u64 {
        x * x
    }

    #[test]
    fn a_function_of_this_crate_round_trips() {
        let t = TaskFn::unary(square);
        let (to, fo) = t.offsets().unwrap().get();
        let (tramp, func) = resolve(to, fo, false).unwrap();
        let payload = encode(&vec![3u64, 4]).unwrap();
        // SAFETY: resolved from a TaskFn made from `square`.
        let out = unsafe { tramp(func, &payload) }.unwrap();
        let items: Vec<ItemOutcome<u64>> = decode(&out).unwrap();
        assert_eq!(
            items.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            vec![9, 16]
        );
    }

    #[test]
    fn a_function_in_another_object_is_refused() {
        let strlen = libc::strlen as *const () as usize;
        match check_same_object(strlen).map_err(|f| f.into_error(0)) {
            Err(TaskError::ForeignFunction {
                address, object, ..
            }) => {
                assert_eq!(address, strlen);
                assert!(object.is_some_and(|o| o.contains("libc")));
            }
            other => panic!("expected ForeignFunction, got {other:?}"),
        }
        // The same refusal when a worker resolves such an offset.
        assert!(matches!(
            resolve(
                offset_of(call_fn::<u64, u64> as Trampoline as usize),
                offset_of(strlen),
                false
            ),
            Err(MessageFailure::ForeignFunction { .. })
        ));
    }

    #[test]
    fn image_names_this_object() {
        let i = image();
        assert!(i.object.1 > 0, "{i}");
        assert!(i.same_code(&i.clone()));
        assert!(i.crate_in_executable(), "{i}");
        let mut other = i.clone();
        other.object.1 += 1;
        assert!(!other.same_code(i) && !other.crate_in_executable());
    }
}
