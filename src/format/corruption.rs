//! What is wrong with a segment file that exists but cannot be used: a description
//! of the file's bytes, so it lives with the format (`Error::Corrupt` carries it).

use super::control::ControlError;
use super::npy::HeaderError;

/// What is wrong with a segment that exists but cannot be used.
///
/// ```
/// use shmarray::{admin, format::Corruption, ndarray::Ix1, Error, Namespace, Options, Segment, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A directory of its own for the damaged copy.
/// let dir = std::env::temp_dir().join(format!("doc-corruption-{}", std::process::id()));
/// std::fs::create_dir(&dir)?;
/// let ns = Namespace::at(&dir)?;
/// let a: SharedArray<u8, Ix1> = Options::new().namespace(ns.clone()).create("whole", 8192)?;
/// std::fs::copy(a.path().expect("a named segment"), dir.join("cut"))?;
/// std::fs::OpenOptions::new().write(true).open(dir.join("cut"))?.set_len(4096)?;
///
/// let err = admin::inspect(&ns, "cut").unwrap_err();
/// assert!(matches!(
///     err,
///     Error::Corrupt { problem: Corruption::Truncated { actual: 4096, .. }, .. }
/// ), "{err}");
/// // Opening it is the same error, and nothing is mapped.
/// assert!(matches!(
///     Options::new().namespace(ns.clone()).open::<SharedArray<u8, Ix1>>("cut"),
///     Err(Error::Corrupt { .. })
/// ));
/// std::fs::remove_file(dir.join("cut"))?;
/// drop(a);
/// std::fs::remove_dir(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The file is smaller than its header says.
    #[error("file is {actual} bytes but its header needs {needed}")]
    Truncated {
        /// Bytes the header implies.
        needed: u64,
        /// Bytes the file has (`fstat`).
        actual: u64,
    },
    /// The NPY header is malformed or overflows.
    #[error("bad NPY header: {0}")]
    Header(#[from] HeaderError),
    /// The control block disagrees with the header, or its parameters are bad.
    #[error("bad control block: {0}")]
    Control(#[from] ControlError),
    /// The data offset is not a multiple of the element alignment.
    #[error("data offset {offset} is not aligned to {align} bytes")]
    Misaligned {
        /// Offset of the data in the file.
        offset: usize,
        /// Alignment the element type needs.
        align: usize,
    },
    /// A robust mutex in the file is not what this library's creator writes: its
    /// type word (glibc's `__kind`) is not that of a robust, process-shared,
    /// error-checking mutex (forged, overwritten, or a lock flag set over bytes
    /// that were never initialised). Locking it could abort inside the C library
    /// or wait forever, so it is never locked.
    #[error("the robust mutex at file offset {offset} has type word {kind:#x}, not a robust process-shared mutex")]
    Lock {
        /// File offset of the mutex.
        offset: u64,
        /// The type word found.
        kind: u32,
    },
}
