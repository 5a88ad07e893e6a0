//! Errors of segment, array and object operations.
//!
//! Every variant carries what a user needs to act on it: the segment name,
//! expected versus found values, the sizes involved.

use std::io;
use std::path::PathBuf;

use crate::format::control::ObjectKind;
use crate::format::Corruption;

/// Result alias for segment and array operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a segment name was rejected (before any syscall).
///
/// ```
/// use shmarray::{admin::NameProblem, ndarray::Ix1, Error, SharedArray};
/// let problem = |name: &str| match SharedArray::<u8, Ix1>::create(name, 1) {
///     Err(Error::InvalidName { problem, .. }) => Some(problem),
///     _ => None,
/// };
/// assert_eq!(problem("a/b"), Some(NameProblem::Slash));
/// assert_eq!(problem(".."), Some(NameProblem::Dots));
/// assert_eq!(problem(""), Some(NameProblem::Empty));
/// assert_eq!(problem(&"x".repeat(256)), Some(NameProblem::TooLong));
/// assert_eq!(NameProblem::Slash.to_string(), "it contains '/'");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name is empty (or only `/`).
    Empty,
    /// Longer than 255 bytes.
    TooLong,
    /// Contains `/` (other than one leading `/`).
    Slash,
    /// Contains a NUL byte.
    Nul,
    /// `.` or `..`.
    Dots,
    /// Starts with `.shmarray-`, the prefix of this crate's temporary names.
    Reserved,
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "it is empty",
            NameProblem::TooLong => "it is longer than 255 bytes",
            NameProblem::Slash => "it contains '/'",
            NameProblem::Nul => "it contains a NUL byte",
            NameProblem::Dots => "'.' and '..' are not names",
            NameProblem::Reserved => "names starting with '.shmarray-' are reserved",
        })
    }
}

/// Why a directory is not used for segments (the rule every directory of a
/// [`Namespace`](crate::Namespace) must pass; see its docs).
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// use shmarray::{admin::DirectoryProblem, Error, Namespace};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("doc-dir-problem-{}", std::process::id()));
/// std::fs::create_dir(&dir)?;
/// let link = dir.with_extension("link");
/// std::os::unix::fs::symlink(&dir, &link)?;
/// // Writable by all and not sticky: anyone could replace a segment in it.
/// std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
/// let problem = |p: &std::path::Path| match Namespace::at(p) {
///     Err(Error::DirectoryRefused { problem, .. }) => Some(problem),
///     _ => None,
/// };
/// assert!(matches!(problem(&dir), Some(DirectoryProblem::SharedWritable { .. })));
/// assert_eq!(problem(&link), Some(DirectoryProblem::Symlink)); // not followed
/// std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
/// assert!(Namespace::at(&dir).is_ok());
/// std::fs::remove_file(&link)?;
/// std::fs::remove_dir(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirectoryProblem {
    /// Its last component is a symbolic link: directories are opened without
    /// following one (name the directory itself).
    Symlink,
    /// It belongs to another user, who could remove, rename or replace every
    /// segment in it.
    ForeignOwner {
        /// The directory's owner.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// Its group or others may write it and it is not sticky (`chmod +t`), so they
    /// could remove, rename or replace every segment in it.
    SharedWritable {
        /// Its permission bits.
        mode: u32,
    },
    /// A mount found in `/proc/self/mountinfo` whose path holds control characters
    /// (a newline, an escape): not joined by itself (name it in
    /// `$SHMARRAY_HUGE_DIR` to use it anyway).
    ControlCharacters,
}

impl std::fmt::Display for DirectoryProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirectoryProblem::Symlink => f.write_str(
                "it is a symbolic link (directories are opened without following one: \
                 name the directory itself)",
            ),
            DirectoryProblem::ForeignOwner { owner, euid } => write!(
                f,
                "it belongs to uid {owner}, not to this user (uid {euid}) or root, who \
                 could remove or replace the segments in it"
            ),
            DirectoryProblem::SharedWritable { mode } => write!(
                f,
                "it has mode {mode:04o}: others may write it and it is not sticky, so they \
                 could remove or replace the segments in it (chmod +t)"
            ),
            DirectoryProblem::ControlCharacters => f.write_str(
                "its path contains control characters: a mount found in \
                 /proc/self/mountinfo is not joined then (name it in $SHMARRAY_HUGE_DIR \
                 to use it)",
            ),
        }
    }
}

/// Errors of creating, opening, inspecting and removing segments.
///
/// # Examples
/// ```
/// use shmarray::{ndarray::Ix1, Error, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-error-{}", std::process::id());
/// assert!(matches!(SharedArray::<f64, Ix1>::open(&name), Err(Error::NotFound { .. })));
/// let a = SharedArray::<f64, Ix1>::create(&name, 8)?;
/// // Creation is exclusive: a second create of the name is refused, not adopted.
/// assert!(matches!(
///     SharedArray::<f64, Ix1>::create(&name, 8),
///     Err(Error::AlreadyExists { .. })
/// ));
/// // Opened as another element type: checked against the header.
/// assert!(matches!(SharedArray::<u8, Ix1>::open(&name), Err(Error::TypeMismatch { .. })));
/// assert!(matches!(
///     SharedArray::<f64, Ix1>::create("../etc", 8),
///     Err(Error::InvalidName { .. })
/// ));
/// # drop(a); Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name cannot name a segment; no syscall was made.
    #[error("invalid segment name {name:?}: {problem}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// No segment of that name exists.
    #[error("segment {name:?} not found")]
    NotFound {
        /// Segment name.
        name: String,
    },
    /// The segment directory does not exist (or is not a directory).
    #[error("segment directory {} does not exist", path.display())]
    DirectoryNotFound {
        /// The directory.
        path: PathBuf,
    },
    /// The directory fails the rule every segment directory must pass (owned by
    /// this user or root, sticky if others may write it, not a symbolic link); it
    /// is not used. See [`Namespace`](crate::Namespace).
    #[error("directory {} is not used for segments: {problem}", path.display())]
    DirectoryRefused {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: DirectoryProblem,
    },
    /// This user has two files of that name in the namespace's directories: which
    /// one is meant cannot be told, so neither is opened or removed. Remove one
    /// through a namespace of its directory alone ([`Namespace::at`](crate::Namespace::at);
    /// `SHMARRAY_HUGE_DIR= shmarray --dir DIR rm NAME`).
    #[error(
        "segment {name:?} exists more than once among this user's files: {}; remove one",
        paths_text(paths)
    )]
    DuplicateName {
        /// Segment name.
        name: String,
        /// Every file of that name (two or more), in lookup order.
        paths: Vec<PathBuf>,
    },
    /// A segment (or any file) of that name already exists; it was not touched.
    #[error("segment {name:?} already exists")]
    AlreadyExists {
        /// Segment name.
        name: String,
    },
    /// The OS refused access (a read-only file, a directory we may not write, ...).
    #[error("permission denied for segment {name:?}")]
    PermissionDenied {
        /// Segment name.
        name: String,
    },
    /// The file belongs to another user. Opening it would let that user control
    /// what this process reads, locks and trusts; it is refused unless the caller
    /// trusts that owner explicitly (`Options::trust_owner`).
    #[error("segment {name:?} belongs to uid {owner}, not to this user (uid {euid}); not adopted")]
    ForeignOwner {
        /// Segment name.
        name: String,
        /// The file's owner.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// The file is writable by its group or by others, so somebody else could
    /// rewrite it under us; refused unless `Options::allow_shared_write(true)`.
    #[error("segment {name:?} has mode {mode:o}: writable by others; not adopted")]
    InsecureMode {
        /// Segment name.
        name: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Not enough space in the shared-memory file system; nothing was left behind.
    #[error("no space for segment {name:?}: {requested} bytes requested")]
    NoSpace {
        /// Segment name.
        name: String,
        /// Bytes that could not be reserved.
        requested: u64,
    },
    /// Huge pages were required ([`crate::huge::HugePages::Require`]) and this machine
    /// offers none where the segment would go; nothing was created.
    #[error("segment {name:?} cannot have huge pages: {missing}")]
    HugePagesUnavailable {
        /// Segment name.
        name: String,
        /// What is missing, and where to look (`shmarray doctor`).
        missing: String,
    },
    /// The file exists but is not a segment this crate can read (not an NPY file,
    /// not a regular file).
    #[error("{name:?} is not a shmarray/NPY segment: {reason}")]
    NotShmarray {
        /// Segment name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The file looks like a segment but its contents are inconsistent.
    #[error("segment {name:?} is corrupt: {problem}")]
    Corrupt {
        /// Segment name.
        name: String,
        /// What is wrong.
        problem: Corruption,
    },
    /// The segment says it is not complete (a forged or damaged file, or one an
    /// older version was still building).
    #[error("segment {name:?} is not ready (not completely built)")]
    NotReady {
        /// Segment name.
        name: String,
    },
    /// The segment holds a different object (a queue opened as an array, ...).
    #[error("segment {name:?} is a {found}, not a {expected}")]
    KindMismatch {
        /// Segment name.
        name: String,
        /// The kind the caller asked for.
        expected: ObjectKind,
        /// The kind its control block records.
        found: ObjectKind,
    },
    /// The segment holds a different element type or number of dimensions.
    #[error("segment {name:?} holds {found}, expected {expected}")]
    TypeMismatch {
        /// Segment name.
        name: String,
        /// What the caller asked for, e.g. `f64, 2 dims`.
        expected: String,
        /// What the header says, e.g. `<i4, shape (3,)`.
        found: String,
    },
    /// The requested shape cannot be represented (byte size overflows).
    #[error("shape {shape:?} of {itemsize}-byte elements is too large")]
    ShapeOverflow {
        /// Requested shape.
        shape: Vec<usize>,
        /// Element size.
        itemsize: usize,
    },
    /// More dimensions than a segment may have (numpy's limit, 64); nothing was
    /// created.
    #[error("{ndim} dimensions requested; a segment has at most {max} (numpy's limit)")]
    TooManyDimensions {
        /// Dimensions asked for.
        ndim: usize,
        /// The most there may be.
        max: usize,
    },
    /// A counter index beyond the control block's counters.
    #[error("counter index {index} is out of range (a segment has {count} counters)")]
    CounterIndex {
        /// The index asked for.
        index: usize,
        /// How many counters there are.
        count: usize,
    },
    /// The operation needs a control block, which plain `.npy` files lack.
    #[error("segment {name:?} has no control block (a plain .npy file): {what} is unavailable")]
    NoControlBlock {
        /// Segment name.
        name: String,
        /// The feature that needs it.
        what: &'static str,
    },
    /// The segment was opened read-only.
    #[error("segment {name:?} was opened read-only")]
    ReadOnly {
        /// Segment name.
        name: String,
    },
    /// Another handle of this process has the same segment: direct views
    /// (`view`, `view_mut`) need a handle that is alone in its process, and once a
    /// handle has taken a direct view the segment cannot be opened again in this
    /// process until that handle is dropped. `lock()` works on any handle.
    #[error("segment {name:?} has another handle in this process ({why})")]
    InUse {
        /// Segment name.
        name: String,
        /// Which rule applied.
        why: &'static str,
    },
    /// `shmarray gc` (or `remove`) is taking the segment away right now.
    #[error("segment {name:?} is being removed")]
    BeingRemoved {
        /// Segment name.
        name: String,
    },
    /// Any other OS error, with the operation that failed.
    #[error("{op} failed for segment {name:?}: {source}")]
    Io {
        /// The failed operation (`open`, `mmap`, ...).
        op: &'static str,
        /// Segment name (empty for anonymous segments).
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn paths_text(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    v.join(" and ")
}

impl Error {
    pub(crate) fn io(op: &'static str, name: &str, source: impl Into<io::Error>) -> Self {
        Error::Io {
            op,
            name: name.to_string(),
            source: source.into(),
        }
    }

    pub(crate) fn corrupt(name: &str, problem: impl Into<Corruption>) -> Self {
        Error::Corrupt {
            name: name.to_string(),
            problem: problem.into(),
        }
    }

    pub(crate) fn not_shmarray(name: &str, reason: &'static str) -> Self {
        Error::NotShmarray {
            name: name.to_string(),
            reason,
        }
    }
}
