//! Raw segments: named files in a shared-memory directory (or anonymous memfds),
//! mapped into this process. No knowledge of the array format lives here.
//!
//! Ownership: a segment made with [`Segment::create`] is owned, and the name is
//! unlinked when it is dropped, unless [`Segment::set_owner(false)`](Segment::set_owner)
//! was called. Opened segments are never unlinked implicitly.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::sys::fs::{self as sys, Dir, FileInfo};

/// Environment variable that overrides the default segment directory (`/dev/shm`).
pub const DIR_ENV: &str = "SHMARRAY_DIR";

/// A directory of segments: `/dev/shm` (POSIX shared memory) by default, or any
/// other tmpfs/hugetlbfs directory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Namespace {
    dir: Arc<Dir>,
}

impl Namespace {
    /// The default namespace: `$SHMARRAY_DIR` if set, else `/dev/shm`.
    pub fn default_dir() -> Result<Namespace> {
        let path = std::env::var_os(DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(sys::DEFAULT_DIR));
        Namespace::at(path)
    }

    /// A namespace backed by the directory `path` (which must exist).
    pub fn at(path: impl AsRef<Path>) -> Result<Namespace> {
        let path = path.as_ref();
        let dir = Dir::open(path).map_err(|e| match e {
            Errno::ENOENT => Error::NotFound {
                name: path.display().to_string(),
            },
            e => Error::io("open directory", &path.display().to_string(), e),
        })?;
        Ok(Namespace { dir: Arc::new(dir) })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The file path of segment `name` (what numpy opens).
    pub fn path_of(&self, name: &str) -> Result<PathBuf> {
        let bare = check_name(name)?;
        Ok(self.dir.path().join(bare))
    }

    /// Names of all entries in the directory (segments and foreign files alike).
    pub fn entries(&self) -> Result<Vec<String>> {
        self.dir
            .entries()
            .map_err(|e| Error::io("read directory", &self.path().display().to_string(), e))
    }

    /// Removes segment `name`. This is a deliberate act: it works on segments other
    /// processes created. Processes that have it mapped keep their mapping.
    pub fn unlink(&self, name: &str) -> Result<()> {
        let bare = check_name(name)?;
        self.dir
            .unlink(bare)
            .map_err(|e| map_errno("unlink", bare, e))
    }
}

/// Validates a name before any syscall; returns it without a leading `/`.
pub(crate) fn check_name(name: &str) -> Result<&str> {
    sys::validate_name(name).map_err(|problem| Error::InvalidName {
        name: name.to_string(),
        problem,
    })
}

/// Maps an errno from a named operation to the error a user can act on.
pub(crate) fn map_errno(op: &'static str, name: &str, e: Errno) -> Error {
    let name = name.to_string();
    match e {
        Errno::ENOENT => Error::NotFound { name },
        Errno::EEXIST => Error::AlreadyExists { name },
        Errno::EACCES | Errno::EPERM => Error::PermissionDenied { name },
        Errno::ELOOP => Error::NotShmarray {
            name,
            reason: "it is a symbolic link",
        },
        _ => Error::Io {
            op,
            name,
            source: e.into(),
        },
    }
}

/// A mapped segment file.
#[derive(Debug)]
pub struct Segment {
    /// `None` for anonymous (memfd) segments.
    name: Option<String>,
    ns: Option<Namespace>,
    file: File,
    map: MmapRaw,
    info: FileInfo,
    writable: bool,
    owner: bool,
}

impl Segment {
    /// Creates `name` exclusively with `len` bytes reserved (zero-filled) and maps it.
    /// On any failure after the file was created, the file is removed again.
    pub fn create(ns: &Namespace, name: &str, len: usize) -> Result<Segment> {
        let bare = check_name(name)?;
        let file = ns
            .dir
            .create_exclusive(bare)
            .map_err(|e| map_errno("create", bare, e))?;
        // From here on the file is ours: remove it if anything fails.
        let mut seg = Segment::reserve_and_map(file, len, bare, |_| Ok(())).inspect_err(|_| {
            let _ = ns.dir.unlink(bare);
        })?;
        seg.name = Some(bare.to_string());
        seg.ns = Some(ns.clone());
        seg.owner = true;
        Ok(seg)
    }

    /// Creates an anonymous segment (memfd) of `len` bytes, sealed against resizing.
    /// It vanishes when the last process closes its descriptor and mapping.
    pub fn create_anonymous(label: &str, len: usize) -> Result<Segment> {
        let file = sys::memfd(label).map_err(|e| Error::io("memfd_create", label, e))?;
        Segment::reserve_and_map(file, len, label, |f| {
            sys::seal_size(f).map_err(|e| Error::io("seal", label, e))
        })
    }

    /// Reserves `len` bytes of a new file, runs `prepare` on it, and maps it read-write.
    fn reserve_and_map(
        file: File,
        len: usize,
        label: &str,
        prepare: impl FnOnce(&File) -> Result<()>,
    ) -> Result<Segment> {
        sys::reserve(&file, len as u64).map_err(|e| match e {
            Errno::ENOSPC | Errno::EFBIG => Error::NoSpace {
                name: label.to_string(),
                requested: len as u64,
            },
            e => map_errno("fallocate", label, e),
        })?;
        prepare(&file)?;
        let info = sys::fstat(&file).map_err(|e| map_errno("fstat", label, e))?;
        let map = map_file(&file, len, true).map_err(|e| Error::io("mmap", label, e))?;
        Ok(Segment {
            name: None,
            ns: None,
            file,
            map,
            info,
            writable: true,
            owner: false,
        })
    }

    /// Opens and maps the whole of an existing segment. An empty file (a segment
    /// whose creator has not reserved its size yet) is `NotReady`.
    pub fn open(ns: &Namespace, name: &str, writable: bool) -> Result<Segment> {
        let bare = check_name(name)?;
        let file = ns
            .dir
            .open_existing(bare, writable)
            .map_err(|e| map_errno("open", bare, e))?;
        let mut seg = Segment::from_file(file, writable, bare)?;
        seg.name = Some(bare.to_string());
        seg.ns = Some(ns.clone());
        Ok(seg)
    }

    /// Maps an already open file (e.g. a memfd received from another process).
    /// `label` names it in errors.
    pub fn from_file(file: File, writable: bool, label: &str) -> Result<Segment> {
        let info = sys::fstat(&file).map_err(|e| map_errno("fstat", label, e))?;
        if !info.regular {
            return Err(Error::NotShmarray {
                name: label.to_string(),
                reason: "it is not a regular file",
            });
        }
        if info.size == 0 {
            return Err(Error::NotReady {
                name: label.to_string(),
            });
        }
        let len = usize::try_from(info.size).map_err(|_| Error::corrupt_size(label))?;
        let map = map_file(&file, len, writable).map_err(|e| Error::io("mmap", label, e))?;
        Ok(Segment {
            name: None,
            ns: None,
            file,
            map,
            info,
            writable,
            owner: false,
        })
    }

    /// Base address of the mapping (page aligned).
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Mapped length in bytes (the file size at open time).
    #[inline]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never true: empty files are refused).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The segment name, `None` for anonymous segments.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The name for messages: the name, or `<anonymous>`.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("<anonymous>")
    }

    /// The file path (for numpy), `None` for anonymous segments.
    pub fn path(&self) -> Option<PathBuf> {
        Some(self.ns.as_ref()?.path().join(self.name.as_ref()?))
    }

    /// The namespace the segment lives in.
    pub fn namespace(&self) -> Option<&Namespace> {
        self.ns.as_ref()
    }

    /// Device and inode of the file: identifies the segment even if its name is
    /// removed and re-created.
    pub fn file_id(&self) -> (u64, u64) {
        (self.info.dev, self.info.ino)
    }

    /// Whether the mapping is writable.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Whether dropping this handle unlinks the name.
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// Makes this handle the owner (unlink on drop) or not.
    pub fn set_owner(&mut self, owner: bool) {
        self.owner = owner && self.name.is_some();
    }

    /// The open file (to hand a memfd to a child process, for example).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Current size of the file behind the mapping (`fstat`).
    pub fn current_file_size(&self) -> Result<u64> {
        sys::fstat(&self.file)
            .map(|i| i.size)
            .map_err(|e| map_errno("fstat", self.label(), e))
    }

    /// Removes the name if it still refers to this segment's file; a name that was
    /// removed and re-created by someone else is left alone. The mapping stays valid.
    pub fn unlink(&self) -> Result<()> {
        let (Some(ns), Some(name)) = (&self.ns, &self.name) else {
            return Ok(());
        };
        match ns.dir.stat(name) {
            Ok(now) if now.dev == self.info.dev && now.ino == self.info.ino => ns
                .dir
                .unlink(name)
                .map_err(|e| map_errno("unlink", name, e)),
            Ok(_) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(map_errno("stat", name, e)),
        }
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.owner {
            let _ = self.unlink();
        }
    }
}

fn map_file(file: &File, len: usize, writable: bool) -> std::io::Result<MmapRaw> {
    let mut opts = MmapOptions::new();
    opts.len(len);
    if writable {
        opts.map_raw(file)
    } else {
        opts.map_raw_read_only(file)
    }
}

impl Error {
    fn corrupt_size(name: &str) -> Error {
        Error::NotShmarray {
            name: name.to_string(),
            reason: "file larger than the address space",
        }
    }
}
