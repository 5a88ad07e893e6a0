//! Emits pyo3's cfgs (`Py_3_11`, `Py_LIMITED_API`, ...) for this crate: the buffer
//! protocol of `SharedArray` exists only where the stable ABI has it (3.11+).
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
