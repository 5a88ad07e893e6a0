//! `Namespace`: where segments live, and where they are looked up by name.
//!
//! A namespace is an ordered list of directories: the first (`/dev/shm`, or
//! `$SHMARRAY_DIR`, or an explicit one) holds ordinary segments; the others are
//! huge-capable directories (hugetlbfs, or tmpfs mounted `huge=always`/
//! `within_size`) for segments asked to live on huge pages. A name means one
//! segment in the whole namespace: lookups go through the directories in order,
//! and creation refuses a name that any of them holds (see `create`).

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;

use super::check_name;
use super::huge::{backing_of, huge_page_support, Backing, PageKind};
use crate::error::{Error, Result};
use crate::sys::fs::{self, Access, Dir};
use crate::sys::mounts;

/// Environment variable that overrides the default segment directory (`/dev/shm`).
pub const DIR_ENV: &str = "SHMARRAY_DIR";

/// Environment variable that names the directory for huge-page segments (instead of
/// the huge-capable mounts found in `/proc/self/mountinfo`); set but empty, there is
/// none (nothing is discovered).
pub const HUGE_DIR_ENV: &str = "SHMARRAY_HUGE_DIR";

/// One directory of a namespace, with the pages its files get.
#[derive(Debug)]
pub(crate) struct NsDir {
    pub(crate) dir: Dir,
    pub(crate) backing: Backing,
}

/// One directory of a [`Namespace`] ([`Namespace::directories`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Directory {
    /// Its path.
    pub path: PathBuf,
    /// The pages files there get.
    pub backing: Backing,
    /// Size of its file system in bytes (`statfs`), if known.
    pub size: Option<u64>,
    /// Bytes this user may still allocate there, if known.
    pub free: Option<u64>,
}

/// Where segments live: `/dev/shm` (POSIX shared memory) by default, or any other
/// tmpfs/hugetlbfs directory, followed by the directories for huge-page segments
/// (see [`Options::huge_pages`](crate::Options::huge_pages)). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Namespace {
    dirs: Arc<Vec<Arc<NsDir>>>,
}

fn open_dir(path: &Path) -> Result<NsDir> {
    let dir = Dir::open(path).map_err(|e| match e {
        Errno::ENOENT | Errno::ENOTDIR => Error::DirectoryNotFound {
            path: path.to_path_buf(),
        },
        e => Error::io("open directory", &path.display().to_string(), e),
    })?;
    let backing = match (dir.id(), mounts::fstatfs(dir.fd())) {
        (Ok((dev, _)), Ok((f_type, f_bsize, _, _))) => {
            backing_of(mounts::split_dev(dev), f_type, f_bsize)
        }
        _ => Backing::base(),
    };
    Ok(NsDir { dir, backing })
}

impl Namespace {
    /// The default namespace: [`discover`](Self::discover) of `$SHMARRAY_DIR` if
    /// set, else of `/dev/shm`.
    pub fn default_dir() -> Result<Namespace> {
        let primary = std::env::var_os(DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(fs::DEFAULT_DIR));
        Namespace::discover(primary)
    }

    /// The namespace of directory `primary` followed by the directories for huge-page
    /// segments: `$SHMARRAY_HUGE_DIR` if set (none if set but empty), else the
    /// huge-capable mounts of this machine that this user may write (2 MiB hugetlbfs
    /// and THP tmpfs mounts, found once per process in `/proc/self/mountinfo`). A
    /// huge directory that cannot be opened is left out: ordinary segments must not
    /// depend on it.
    pub fn discover(primary: impl AsRef<Path>) -> Result<Namespace> {
        let primary = primary.as_ref().to_path_buf();
        let huge: Vec<PathBuf> = match std::env::var_os(HUGE_DIR_ENV) {
            Some(p) if p.is_empty() => Vec::new(),
            Some(p) => vec![PathBuf::from(p)],
            None => discovered_huge_dirs(),
        };
        // The default namespace is asked for on every default create/open: keep the
        // last one, and build it anew only when the directories asked for changed.
        static LAST: Mutex<Option<(PathBuf, Vec<PathBuf>, Namespace)>> = Mutex::new(None);
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((p, h, ns)) = last.as_ref() {
            if *p == primary && *h == huge {
                return Ok(ns.clone());
            }
        }
        let mut ns = Namespace::at(&primary)?;
        for h in &huge {
            if let Ok(with) = ns.clone().with_huge_dir(h) {
                ns = with;
            }
        }
        *last = Some((primary, huge, ns.clone()));
        Ok(ns)
    }

    /// A namespace of the one directory `path`, which must exist. Huge-page
    /// segments go there too if it is huge-capable (hugetlbfs or a THP tmpfs);
    /// else see [`with_huge_dir`](Self::with_huge_dir).
    pub fn at(path: impl AsRef<Path>) -> Result<Namespace> {
        Ok(Namespace {
            dirs: Arc::new(vec![Arc::new(open_dir(path.as_ref())?)]),
        })
    }

    /// This namespace with `path` added as a directory for huge-page segments
    /// (looked up after the ones before it). A directory already in the namespace
    /// is not added twice.
    pub fn with_huge_dir(self, path: impl AsRef<Path>) -> Result<Namespace> {
        let d = open_dir(path.as_ref())?;
        let id = d.dir.id().ok();
        if self
            .dirs
            .iter()
            .any(|e| id.is_some() && e.dir.id().ok() == id)
        {
            return Ok(self);
        }
        let mut dirs: Vec<Arc<NsDir>> = self.dirs.iter().cloned().collect();
        dirs.push(Arc::new(d));
        Ok(Namespace {
            dirs: Arc::new(dirs),
        })
    }

    /// The first directory's path (where ordinary segments are created).
    pub fn path(&self) -> &Path {
        self.dirs[0].dir.path()
    }

    /// Every directory, in lookup order, with the pages its files get and its
    /// file system's size and free space now.
    pub fn directories(&self) -> Vec<Directory> {
        self.dirs
            .iter()
            .map(|d| {
                let space = mounts::fstatfs(d.dir.fd()).ok();
                Directory {
                    path: d.dir.path().to_path_buf(),
                    backing: d.backing.clone(),
                    size: space.map(|s| s.2),
                    free: space.map(|s| s.3),
                }
            })
            .collect()
    }

    /// The file path of segment `name` (what numpy opens): where it is, or where an
    /// ordinary segment of that name would be created.
    pub fn path_of(&self, name: &str) -> Result<PathBuf> {
        let bare = check_name(name)?;
        let d = self.find(bare).unwrap_or(self.primary());
        Ok(d.dir.path().join(bare))
    }

    /// Names of all entries of every directory (segments and foreign files alike, as
    /// raw bytes: a foreign file's name need not be UTF-8), sorted, each once.
    pub fn entries(&self) -> Result<Vec<OsString>> {
        let mut all = Vec::new();
        for d in self.dirs.iter() {
            let mut names = d
                .dir
                .entries()
                .map_err(|e| Error::io("read directory", &d.dir.path().display().to_string(), e))?;
            all.append(&mut names);
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// One namespace per directory, in lookup order (`shmarray ls` lists each).
    pub fn parts(&self) -> Vec<Namespace> {
        self.dirs
            .iter()
            .map(|d| Namespace {
                dirs: Arc::new(vec![d.clone()]),
            })
            .collect()
    }

    /// The first directory.
    pub(crate) fn primary(&self) -> &Arc<NsDir> {
        &self.dirs[0]
    }

    /// Opens `bare` in the first directory that has it, without following links or
    /// blocking: the directory and the file. `ENOENT` if none has it.
    pub(crate) fn open_file(
        &self,
        bare: &str,
        access: Access,
    ) -> std::result::Result<(&Arc<NsDir>, File), Errno> {
        for d in self.dirs.iter() {
            match d.dir.open_file(bare, access) {
                Err(Errno::ENOENT) => continue,
                Ok(f) => return Ok((d, f)),
                Err(e) => return Err(e),
            }
        }
        Err(Errno::ENOENT)
    }

    /// The directories, in lookup order.
    pub(crate) fn dirs(&self) -> &[Arc<NsDir>] {
        &self.dirs
    }

    /// The first directory that has an entry `bare` (of any kind).
    pub(crate) fn find(&self, bare: &str) -> Option<&Arc<NsDir>> {
        self.dirs
            .iter()
            .find(|d| !matches!(d.dir.stat(bare), Err(Errno::ENOENT)))
    }

    /// The directory for a huge-page segment: the first directory if it is
    /// huge-capable, else the first huge-capable one after it.
    pub(crate) fn huge_dir(&self) -> Option<&Arc<NsDir>> {
        self.dirs.iter().find(|d| d.backing.kind != PageKind::Base)
    }
}

/// The huge-capable mounts this user may write, 2 MiB pages only (a 1 GiB page
/// would pad every header to 1 GiB), found once per process.
fn discovered_huge_dirs() -> Vec<PathBuf> {
    static FOUND: Mutex<Option<Vec<PathBuf>>> = Mutex::new(None);
    let mut found = FOUND.lock().unwrap_or_else(PoisonError::into_inner);
    found
        .get_or_insert_with(|| {
            huge_page_support()
                .mounts
                .into_iter()
                .filter(|m| m.writable && m.page_size == 2 << 20)
                .map(|m| m.path)
                .collect()
        })
        .clone()
}
