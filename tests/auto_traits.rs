//! Every `Send`/`Sync` fact the docs state about a public type, checked at compile
//! time: if a type gains or loses an auto trait, this file stops compiling, so the
//! docs and the types cannot drift apart. (Each type's rustdoc states the same fact
//! in words; where a type is `!Send`, its rustdoc also has a `compile_fail` example.)

#![allow(dead_code)]

use shmarray::ndarray::{Ix1, Ix2};
use shmarray::*;

/// `T` implements every listed trait.
macro_rules! assert_impl {
    ($t:ty: $($tr:path),+ $(,)?) => {
        const _: fn() = || {
            fn check<T: ?Sized $(+ $tr)+>() {}
            check::<$t>();
        };
    };
}

/// `T` does not implement the trait: if it did, `<$t as Ambiguous<_>>::some` would
/// have two candidate impls and not compile.
macro_rules! assert_not_impl {
    ($t:ty: $tr:path) => {
        const _: fn() = || {
            trait Ambiguous<A> {
                fn some() {}
            }
            impl<T: ?Sized> Ambiguous<()> for T {}
            struct Invalid;
            impl<T: ?Sized + $tr> Ambiguous<Invalid> for T {}
            let _ = <$t as Ambiguous<_>>::some;
        };
    };
}

// Handles whose every operation is safe from many threads at once: `Send + Sync`
// (share one through an `Arc` or `&`).
assert_impl!(SharedArray<f64, Ix2>: Send, Sync);
assert_impl!(SharedValue<i64>: Send, Sync);
assert_impl!(SharedAtomicU32: Send, Sync);
assert_impl!(SharedAtomicU64: Send, Sync);
assert_impl!(SharedAtomicI64: Send, Sync);
assert_impl!(Event: Send, Sync);
// A barrier handle is one participant; `abort` and `n_waiting` work from any thread.
assert_impl!(Barrier: Send, Sync);
assert_impl!(SharedMap<u64, f64>: Send, Sync);
assert_impl!(SharedVec<f32>: Send, Sync);
assert_impl!(Namespace: Send, Sync);
assert_impl!(Options: Send, Sync);

// Queue handles are members of the segment (a member-table entry, a claim record):
// `Send` but not `Sync`; each thread opens its own.
assert_impl!(Queue<u64>: Send);
assert_not_impl!(Queue<u64>: Sync);
assert_impl!(ByteQueue: Send);
assert_not_impl!(ByteQueue: Sync);

// Lock guards: released by the thread that took them (`!Send`), readable through a
// shared reference from other threads (`Sync`), as `std::sync::MutexGuard`.
assert_not_impl!(ArrayGuard<'static, f64, Ix1>: Send);
assert_impl!(ArrayGuard<'static, f64, Ix1>: Sync);
assert_not_impl!(ArrayReadGuard<'static, f64, Ix1>: Send);
assert_impl!(ArrayReadGuard<'static, f64, Ix1>: Sync);
assert_not_impl!(ValueGuard<'static, f64>: Send);
assert_impl!(ValueGuard<'static, f64>: Sync);
// A result that may carry a guard is `!Send` like the guard.
assert_not_impl!(LockError<ArrayGuard<'static, f64, Ix1>>: Send);

// Errors: `'static + Send + Sync`, so they go through `?` into
// `Box<dyn Error + Send + Sync>` or anyhow.
assert_impl!(Error: Send, Sync, std::error::Error);
assert_impl!(LockFailure: Send, Sync, std::error::Error);
assert_impl!(QueueError: Send, Sync, std::error::Error);
assert_impl!(MapError: Send, Sync, std::error::Error);
assert_impl!(VecError: Send, Sync, std::error::Error);
assert_impl!(BarrierError: Send, Sync, std::error::Error);

#[cfg(feature = "pool")]
mod pool {
    use super::*;
    // The pool and its results: `Send + Sync` (submit from many threads).
    assert_impl!(Pool: Send, Sync);
    assert_impl!(Process<u64>: Send, Sync);
    assert_impl!(TaskFuture<u64>: Send, Sync);
    assert_impl!(MapResult<u64>: Send, Sync);
    assert_impl!(ArrayHandle<f64, Ix2>: Send, Sync);
    assert_impl!(TaskError: Send, Sync, std::error::Error);
}

/// The facts above are compile-time; this test only makes the file a test target
/// that `cargo test` builds.
#[test]
fn auto_traits_are_as_documented() {}
