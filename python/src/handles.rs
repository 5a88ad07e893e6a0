//! The typed handles behind the Python objects: a crate handle of any element type.
//! Below the objects that use them (arrays, values, guards, counters), so that those
//! import downwards only.

use std::sync::atomic::AtomicU64;

use shmarray::ndarray::IxDyn;
use shmarray::SharedValue;

use crate::{dispatch, typed_enum};

pub(crate) type Arr<T> = shmarray::SharedArray<T, IxDyn>;
typed_enum!(
    /// A `SharedArray` of any element type.
    AnyArray,
    Arr
);

impl AnyArray {
    pub(crate) fn file(&self) -> &std::fs::File {
        dispatch!(self, AnyArray, a => a.file())
    }
    pub(crate) fn unlink(&self) -> shmarray::Result<()> {
        dispatch!(self, AnyArray, a => a.unlink())
    }
    pub(crate) fn counter(&self, i: usize) -> shmarray::Result<&AtomicU64> {
        dispatch!(self, AnyArray, a => a.counter(i))
    }
}

typed_enum!(
    /// A `SharedValue` of any element type.
    AnyValue,
    SharedValue
);
