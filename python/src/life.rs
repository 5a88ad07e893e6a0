//! The lifecycle every handle shares (`with`, `close()`, `unlink()`, `closed`),
//! who removes the name, and pickling as "open this segment by name".
//!
//! - **Owner.** The handle that created a segment (not `persistent`) owns its
//!   name, in the process that created it: a copy inherited through `fork` and a
//!   handle rebuilt from a pickle never own.
//! - **`close()`** drops this handle now; the owner also removes the name now,
//!   whatever else still holds the crate's handle (a released guard, a counter, a
//!   numpy view): mappings stay valid, new opens fail with `NotFoundError`.
//!   Idempotent. Garbage collection of an unclosed handle does the same.
//! - **`unlink()`** removes the name now, from any handle (a deliberate act).
//! - **Pickling** (`__reduce__`) gives `(_reopen, (kind, name, ...))`: the
//!   receiving process opens the segment by name and gets a handle that is not the
//!   owner. A closed handle does not pickle.

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors::raise;
use crate::lock;

/// Who removes the name.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ownership {
    owner: bool,
    pid: u32,
}

impl Ownership {
    /// A handle that created the segment (`persistent`: owns nothing).
    pub(crate) fn created(persistent: bool) -> Ownership {
        Ownership {
            owner: !persistent,
            pid: std::process::id(),
        }
    }

    /// A handle that opened an existing segment.
    pub(crate) fn opened() -> Ownership {
        Ownership {
            owner: false,
            pid: 0,
        }
    }

    /// Whether closing removes the name: the creator, in the creating process
    /// (not a copy in a forked child).
    pub(crate) fn owns(&self) -> bool {
        self.owner && self.pid == std::process::id()
    }
}

/// What a handle's crate object can do for the lifecycle.
pub(crate) trait Named: Send + Sync + 'static {
    /// Removes the name (if it still names this segment's file).
    fn remove_name(&self) -> PyResult<()>;
    /// The segment's file path.
    fn file_path(&self) -> Option<std::path::PathBuf>;
}

/// A crate handle that can be closed, with its name and owner.
pub(crate) struct Handle<T: Named> {
    inner: Mutex<Option<Arc<T>>>,
    kind: &'static str,
    name: String,
    ownership: Ownership,
}

impl<T: Named> Handle<T> {
    pub(crate) fn new(kind: &'static str, name: &str, inner: T, ownership: Ownership) -> Self {
        Handle {
            inner: Mutex::new(Some(Arc::new(inner))),
            kind,
            name: name.to_string(),
            ownership,
        }
    }

    /// The crate handle, or `ValueError` once closed.
    pub(crate) fn get(&self) -> PyResult<Arc<T>> {
        lock(&self.inner).clone().ok_or_else(|| self.closed_error())
    }

    /// The error of an operation on a closed handle.
    pub(crate) fn closed_error(&self) -> PyErr {
        raise(
            "ValueError",
            format!("{} {:?} is closed", self.kind, self.name),
        )
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.inner).is_none()
    }

    /// Whether closing this handle removes the name.
    pub(crate) fn owns(&self) -> bool {
        self.ownership.owns()
    }

    /// Drops this handle; the owner removes the name now. Idempotent.
    pub(crate) fn close(&self) {
        let h = lock(&self.inner).take();
        if let Some(h) = h {
            if self.owns() {
                // Now, even if a guard or a counter still holds the crate handle
                // (its own drop then finds the name gone, or re-created by someone
                // else, and leaves it).
                let _ = h.remove_name();
            }
        }
    }

    /// Removes the name now (any handle).
    pub(crate) fn unlink(&self) -> PyResult<()> {
        self.get()?.remove_name()
    }

    /// `__reduce__`: reopen by name elsewhere (`args` after kind and name).
    pub(crate) fn reduce<'py>(
        &self,
        py: Python<'py>,
        args: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        if self.is_closed() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "cannot pickle a closed {} handle ({:?})",
                self.kind, self.name
            )));
        }
        reduce(py, self.kind, &self.name, args)
    }
}

/// `(_reopen, (kind, name, *args))`.
pub(crate) fn reduce<'py>(
    py: Python<'py>,
    kind: &str,
    name: &str,
    args: Vec<Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
    let f = py.import("pyshmarray._native")?.getattr("_reopen")?;
    let mut all: Vec<Bound<'py, PyAny>> = vec![
        kind.into_pyobject(py)?.into_any(),
        name.into_pyobject(py)?.into_any(),
    ];
    all.extend(args);
    Ok((f, PyTuple::new(py, all)?))
}

impl<T: Named> Drop for Handle<T> {
    fn drop(&mut self) {
        // Collected without `close()`: the same.
        self.close();
    }
}
