//! `ls`, `gc`, `remove`: what `shmarray ls`/`gc`/`rm` do, as Python data.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use shmarray::{collect_garbage, find_garbage, inspect, Namespace, Usage};

use crate::errors::from_error;

/// Every segment of the namespace (`/dev/shm` or `$SHMARRAY_DIR`) as a dict:
/// name, kind, dtype, shape, bytes, pages, in_use, usage, persistent, creator,
/// creator_pid, path, error (for files that could not be read).
#[pyfunction]
pub(crate) fn ls(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let ns = Namespace::default_dir().map_err(from_error)?;
    let names = ns.entries().map_err(from_error)?;
    let out = PyList::empty(py);
    for n in names {
        let name = n.to_string_lossy().into_owned();
        let d = PyDict::new(py);
        d.set_item("name", &name)?;
        match inspect(&ns, &name) {
            Ok(info) => {
                d.set_item("kind", info.kind().to_string())?;
                d.set_item(
                    "dtype",
                    info.layout
                        .dtype
                        .map(|t| crate::type_str(t).to_string())
                        .unwrap_or_else(|| info.layout.header.descr.to_string()),
                )?;
                d.set_item("shape", PyTuple::new(py, &info.layout.header.shape)?)?;
                d.set_item("bytes", info.file_size)?;
                d.set_item(
                    "pages",
                    format!(
                        "{} {} KiB",
                        info.backing.kind,
                        info.backing.page_size / 1024
                    ),
                )?;
                d.set_item("in_use", info.usage == Usage::InUse)?;
                d.set_item("usage", info.usage.as_str())?;
                d.set_item("persistent", info.is_persistent())?;
                d.set_item("creator", info.creator.map(|c| c.as_str()))?;
                d.set_item("creator_pid", info.control.map(|c| c.creator_pid))?;
                d.set_item("path", info.path.display().to_string())?;
                d.set_item("error", py.None())?;
            }
            Err(e) => {
                for k in [
                    "kind",
                    "dtype",
                    "shape",
                    "bytes",
                    "pages",
                    "in_use",
                    "usage",
                    "persistent",
                    "creator",
                    "creator_pid",
                ] {
                    d.set_item(k, py.None())?;
                }
                d.set_item("path", ns.path().join(&name).display().to_string())?;
                d.set_item("error", e.to_string())?;
            }
        }
        out.append(d)?;
    }
    Ok(out)
}

/// Removes (or with `dry_run`, lists) the segments nobody uses: not persistent,
/// with a control block, open by no process. Returns
/// `{"removed": [(name, why)], "undecided": [name], "failed": [(name, error)]}`.
#[pyfunction]
#[pyo3(signature = (dry_run=false))]
pub(crate) fn gc(py: Python<'_>, dry_run: bool) -> PyResult<Bound<'_, PyDict>> {
    let ns = Namespace::default_dir().map_err(from_error)?;
    let report = py
        .detach(|| {
            if dry_run {
                find_garbage(&ns)
            } else {
                collect_garbage(&ns)
            }
        })
        .map_err(from_error)?;
    let d = PyDict::new(py);
    d.set_item(
        "removed",
        report
            .removed
            .iter()
            .map(|(n, why)| (n.clone(), *why))
            .collect::<Vec<_>>(),
    )?;
    d.set_item("undecided", report.undecided.clone())?;
    d.set_item(
        "failed",
        report
            .failed
            .iter()
            .map(|(n, e)| (n.clone(), e.to_string()))
            .collect::<Vec<_>>(),
    )?;
    Ok(d)
}

/// Removes this user's segment `name` (another process's too: a deliberate act;
/// never another user's file: `PermissionDeniedError` then).
#[pyfunction]
pub(crate) fn remove(name: &str) -> PyResult<()> {
    shmarray::remove(name).map_err(from_error)
}

/// The directory segments are created in.
#[pyfunction]
pub(crate) fn segment_dir() -> PyResult<String> {
    let ns = Namespace::default_dir().map_err(from_error)?;
    Ok(ns.path().display().to_string())
}
