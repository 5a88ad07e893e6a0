//! `Namespace`: where segments live, and where they are looked up by name.
//!
//! A namespace is an ordered list of directories: the first (`/dev/shm`, or
//! `$SHMARRAY_DIR`, or an explicit one) holds ordinary segments; the others are
//! huge-capable directories (hugetlbfs, or tmpfs mounted `huge=always`/
//! `within_size`) for segments asked to live on huge pages. Every directory passes
//! one rule before it joins ([`Namespace`]'s docs), and a name means one segment
//! of the caller's in the whole namespace ([`Namespace::resolve`]).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;

use super::huge::{backing_of, huge_page_support, Backing, PageKind};
use super::map_errno;
use super::name::check_os_name;
use crate::error::{DirectoryProblem, Error, Result};
use crate::sys::fs::{self, Dir, FileInfo, FileKind};
use crate::sys::{mounts, proc};

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
///
/// ```
/// use shmarray::{admin::Directory, Namespace};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ns = Namespace::default_dir()?;
/// let dirs: Vec<Directory> = ns.directories();
/// // The first is where ordinary segments go; huge-page directories follow.
/// assert_eq!(dirs[0].path, ns.path());
/// for d in &dirs {
///     if let (Some(size), Some(free)) = (d.size, d.free) {
///         assert!(free <= size, "{}: {free} of {size} bytes free", d.path.display());
///     }
/// }
/// # Ok(()) }
/// ```
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

/// A directory that was not taken into a namespace, and why
/// ([`Namespace::refused`]).
///
/// ```
/// use shmarray::Namespace;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ns = Namespace::default_dir()?;
/// // What `shmarray doctor` lists: huge-page mounts left out, and why.
/// for r in ns.refused() {
///     println!("not used: {} ({})", r.path.display(), r.problem);
///     // A refused directory is not part of the namespace.
///     assert!(ns.directories().iter().all(|d| d.path != r.path));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusedDirectory {
    /// Its path.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: DirectoryProblem,
}

/// Where segments live: `/dev/shm` (POSIX shared memory) by default, or any other
/// tmpfs/hugetlbfs directory, followed by the directories for huge-page segments
/// (see [`Options::huge_pages`](crate::Options::huge_pages)). Cheap to clone.
///
/// # Every directory, the same rule
///
/// A directory is taken into a namespace — to create in, open from, list, inspect,
/// remove from or collect garbage in — only if:
/// - its last path component is not a symbolic link: it is opened with
///   `O_DIRECTORY|O_NOFOLLOW` (trailing `/` and `.` are dropped first, so `dir/`
///   cannot make the kernel follow a link named `dir`);
/// - the opened directory (`fstat` of the descriptor, not of the path) belongs to
///   this process's effective uid or to root;
/// - if its group or others may write it (mode `g+w`/`o+w`, which also shows an
///   ACL's write grants), it is sticky (`+t`), so that nobody else may remove,
///   rename or replace the files in it. `/dev/shm` (root, `1777`) passes, and so
///   does a directory of your own; another user's directory, or a `0777`
///   directory without the sticky bit, does not.
///
/// Everything after the check goes through the directory's descriptor, so what is
/// created, opened, listed and removed is decided by the directory that passed.
/// Components before the last one are resolved as usual, symlinks included
/// (`/var/run`-style links are common): they can only choose *which* directory of
/// that name is reached, and that one must still pass. The path is kept for
/// messages and for [`path_of`](Self::path_of) (what numpy opens later, by path).
///
/// [`Options::trust_owner`](crate::Options::trust_owner) does **not** extend to
/// directories: it trusts another user's *files*, while a directory's owner
/// decides which file a name means (it can rename, remove or replace any of them),
/// and every command (`ls`, `gc`, `rm`) must see the same directories as the
/// program that opens. To share segments between users, use a root-owned sticky
/// directory (`/dev/shm`, or `install -d -m 1770 -g GROUP DIR`).
///
/// A primary directory, or one given to [`with_huge_dir`](Self::with_huge_dir),
/// that fails the rule is an [`Error::DirectoryRefused`]; a huge-page directory
/// that [`discover`](Self::discover) finds and that fails is left out and listed
/// in [`refused`](Self::refused) (`shmarray doctor` shows it).
///
/// # One name, one segment
///
/// A name is looked up in every directory: the caller's own file is what the name
/// means, wherever it is; another user's file of the same name neither hides it
/// nor stands in for it (open, inspect, `path_of` and remove all pass it over). Two files of the caller under one name are an
/// [`Error::DuplicateName`] naming both. Creation refuses a name that any
/// directory holds, whoever's it is.
///
/// # Examples
/// ```
/// use shmarray::{ndarray::Ix1, Namespace, Options, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A directory of this process's own (tests, or segments kept apart from /dev/shm).
/// let dir = std::env::temp_dir().join(format!("doc-ns-{}", std::process::id()));
/// std::fs::create_dir(&dir)?;
/// let ns = Namespace::at(&dir)?;
/// let opts = Options::new().namespace(ns.clone());
/// let a: SharedArray<u8, Ix1> = opts.create("frames", 4096)?;
/// assert_eq!(ns.entries()?, ["frames"]);
/// assert_eq!(ns.path_of("frames")?, dir.join("frames"));
/// drop(a); // the owner removes the name
/// assert!(ns.entries()?.is_empty());
/// std::fs::remove_dir(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Namespace {
    dirs: Arc<Vec<Arc<NsDir>>>,
    refused: Arc<Vec<RefusedDirectory>>,
}

/// Whether a directory with this `fstat` may hold the segments of `euid` (the
/// rule of [`Namespace`]'s docs, less the symlink part). Pure.
pub(crate) fn judge_dir(info: &FileInfo, euid: u32) -> std::result::Result<(), DirectoryProblem> {
    if info.uid != euid && info.uid != 0 {
        return Err(DirectoryProblem::ForeignOwner {
            owner: info.uid,
            euid,
        });
    }
    if info.mode & 0o022 != 0 && info.mode & 0o1000 == 0 {
        return Err(DirectoryProblem::SharedWritable { mode: info.mode });
    }
    Ok(())
}

/// Opens directory `path` and applies the rule of [`Namespace`]'s docs.
fn open_dir(path: &Path) -> Result<NsDir> {
    let not_found = || Error::DirectoryNotFound {
        path: path.to_path_buf(),
    };
    let dir = Dir::open(path).map_err(|e| match e {
        Errno::ENOENT => not_found(),
        Errno::ENOTDIR | Errno::ELOOP => match fs::lstat(path) {
            Ok(i) if i.kind == FileKind::Symlink => Error::DirectoryRefused {
                path: path.to_path_buf(),
                problem: DirectoryProblem::Symlink,
            },
            _ => not_found(),
        },
        e => Error::io("open directory", &path.display().to_string(), e),
    })?;
    let info = dir
        .info()
        .map_err(|e| Error::io("fstat directory", &path.display().to_string(), e))?;
    judge_dir(&info, proc::euid()).map_err(|problem| Error::DirectoryRefused {
        path: dir.path().to_path_buf(),
        problem,
    })?;
    let backing = match (dir.id(), mounts::fstatfs(dir.fd())) {
        (Ok((dev, _)), Ok((f_type, f_bsize, _, _))) => {
            backing_of(mounts::split_dev(dev), f_type, f_bsize)
        }
        _ => Backing::base(),
    };
    Ok(NsDir { dir, backing })
}

/// Why a directory at `path` would not join a namespace, `None` if it would (or
/// if it cannot be opened at all: that is not a verdict on it). A `discovered`
/// path (a mount found in mountinfo) must also be free of control characters.
pub(crate) fn directory_problem(path: &Path, discovered: bool) -> Option<DirectoryProblem> {
    if discovered
        && path
            .as_os_str()
            .as_bytes()
            .iter()
            .any(|b| b.is_ascii_control())
    {
        return Some(DirectoryProblem::ControlCharacters);
    }
    match open_dir(path) {
        Err(Error::DirectoryRefused { problem, .. }) => Some(problem),
        _ => None,
    }
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
    /// and THP tmpfs mounts, found once per process in `/proc/self/mountinfo`).
    ///
    /// Mounts nobody configured join only if they pass the directory rule (see
    /// the type's docs) and their path holds no control character; one named by
    /// `$SHMARRAY_HUGE_DIR` must pass the rule too. A huge directory that fails is
    /// left out and listed in [`refused`](Self::refused): `HugePages::Require` then
    /// fails naming it, `Prefer` falls back saying why, and nothing in it is
    /// opened, listed or collected. One that cannot be opened is left out too:
    /// ordinary segments must not depend on it. The primary directory must pass
    /// ([`Error::DirectoryRefused`] otherwise).
    pub fn discover(primary: impl AsRef<Path>) -> Result<Namespace> {
        let primary = primary.as_ref().to_path_buf();
        let (huge, discovered): (Vec<PathBuf>, bool) = match std::env::var_os(HUGE_DIR_ENV) {
            Some(p) if p.is_empty() => (Vec::new(), false),
            Some(p) => (vec![PathBuf::from(p)], false),
            None => (discovered_huge_dirs(), true),
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
        let mut refused = Vec::new();
        for h in &huge {
            if discovered
                && h.as_os_str()
                    .as_bytes()
                    .iter()
                    .any(|b| b.is_ascii_control())
            {
                refused.push(RefusedDirectory {
                    path: h.clone(),
                    problem: DirectoryProblem::ControlCharacters,
                });
                continue;
            }
            match ns.clone().with_huge_dir(h) {
                Ok(with) => ns = with,
                Err(Error::DirectoryRefused { path, problem }) => {
                    refused.push(RefusedDirectory { path, problem })
                }
                Err(_) => {}
            }
        }
        ns.refused = Arc::new(refused);
        *last = Some((primary, huge, ns.clone()));
        Ok(ns)
    }

    /// A namespace of the one directory `path`, which must exist. Huge-page
    /// segments go there too if it is huge-capable (hugetlbfs or a THP tmpfs);
    /// else see [`with_huge_dir`](Self::with_huge_dir).
    ///
    /// The directory must pass the rule of the type's docs, else
    /// [`Error::DirectoryRefused`] says why.
    pub fn at(path: impl AsRef<Path>) -> Result<Namespace> {
        Ok(Namespace {
            dirs: Arc::new(vec![Arc::new(open_dir(path.as_ref())?)]),
            refused: Arc::new(Vec::new()),
        })
    }

    /// This namespace with `path` added as a directory for huge-page segments
    /// (looked up after the ones before it). A directory already in the namespace
    /// is not added twice. It must pass the rule of the type's docs, else
    /// [`Error::DirectoryRefused`] says why.
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
            refused: self.refused,
        })
    }

    /// The huge-page directories [`discover`](Self::discover) left out because they
    /// fail the directory rule, with why. They are not part of the namespace.
    pub fn refused(&self) -> &[RefusedDirectory] {
        &self.refused
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

    /// The file path of segment `name` (what numpy opens): where this user's file
    /// of that name is, or else where an ordinary segment of that name would be
    /// created (the first directory). Another user's file of that name elsewhere is
    /// passed over; `open` the segment to have it checked. A name this user holds
    /// twice is [`Error::DuplicateName`].
    pub fn path_of(&self, name: impl AsRef<OsStr>) -> Result<PathBuf> {
        let bare = check_os_name(name.as_ref())?;
        let euid = proc::euid();
        let hits = self.hits(bare)?;
        let d = match pick(bare, &hits, &[euid])? {
            Some((d, info)) if info.uid == euid => d,
            _ => self.primary(),
        };
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
                refused: Arc::new(Vec::new()),
            })
            .collect()
    }

    /// The first directory.
    pub(crate) fn primary(&self) -> &Arc<NsDir> {
        &self.dirs[0]
    }

    /// Every directory's entry `bare` (`lstat`: any kind, any owner), in lookup
    /// order.
    pub(crate) fn hits(&self, bare: &OsStr) -> Result<Vec<(&Arc<NsDir>, FileInfo)>> {
        let mut hits = Vec::new();
        for d in self.dirs.iter() {
            match d.dir.stat(bare) {
                Ok(info) => hits.push((d, info)),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(map_errno("stat", &bare.to_string_lossy(), e)),
            }
        }
        Ok(hits)
    }

    /// The entry the name `bare` means to a caller who trusts the owners
    /// `trusted` (its own euid, and any owner it trusts): the one file of a trusted
    /// owner in any directory; if there is none, the first entry of another owner
    /// (for the caller to refuse, as `open` does, or to show, as `inspect` does).
    /// `NotFound` if no directory has it, `DuplicateName` if trusted owners hold
    /// it in two.
    pub(crate) fn resolve(&self, bare: &OsStr, trusted: &[u32]) -> Result<(&Arc<NsDir>, FileInfo)> {
        let hits = self.hits(bare)?;
        pick(bare, &hits, trusted)?.ok_or_else(|| Error::NotFound {
            name: bare.to_string_lossy().into_owned(),
        })
    }

    /// The directories, in lookup order.
    pub(crate) fn dirs(&self) -> &[Arc<NsDir>] {
        &self.dirs
    }

    /// The directory for a huge-page segment: the first directory if it is
    /// huge-capable, else the first huge-capable one after it.
    pub(crate) fn huge_dir(&self) -> Option<&Arc<NsDir>> {
        self.dirs.iter().find(|d| d.backing.kind != PageKind::Base)
    }
}

/// The one hit of a trusted owner, else the first hit; `None` without hits.
fn pick<'a>(
    bare: &OsStr,
    hits: &[(&'a Arc<NsDir>, FileInfo)],
    trusted: &[u32],
) -> Result<Option<(&'a Arc<NsDir>, FileInfo)>> {
    let ours: Vec<&(&Arc<NsDir>, FileInfo)> = hits
        .iter()
        .filter(|(_, i)| trusted.contains(&i.uid))
        .collect();
    match ours.as_slice() {
        [] => Ok(hits.first().copied()),
        [one] => Ok(Some(**one)),
        many => Err(Error::DuplicateName {
            name: bare.to_string_lossy().into_owned(),
            paths: many.iter().map(|(d, _)| d.dir.path().join(bare)).collect(),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(uid: u32, mode: u32) -> FileInfo {
        FileInfo {
            size: 0,
            dev: 1,
            ino: 2,
            uid,
            mode,
            nlink: 2,
            kind: FileKind::Directory,
        }
    }

    #[test]
    fn the_directory_rule() {
        let me = 1000;
        // /dev/shm, a root 0755 mount, a directory of one's own (shared or not, if
        // sticky) pass.
        for (uid, mode) in [
            (0, 0o1777),
            (0, 0o755),
            (me, 0o700),
            (me, 0o1777),
            (0, 0o1770),
        ] {
            assert_eq!(judge_dir(&dir(uid, mode), me), Ok(()), "{uid} {mode:o}");
        }
        // Another user's directory, whatever its mode.
        for mode in [0o755, 0o700, 0o1777] {
            assert_eq!(
                judge_dir(&dir(65534, mode), me),
                Err(DirectoryProblem::ForeignOwner {
                    owner: 65534,
                    euid: me
                })
            );
        }
        // Writable by group or others without the sticky bit, even one's own.
        for (uid, mode) in [
            (0, 0o777),
            (me, 0o777),
            (0, 0o775),
            (me, 0o730),
            (0, 0o2777),
        ] {
            assert_eq!(
                judge_dir(&dir(uid, mode), me),
                Err(DirectoryProblem::SharedWritable { mode }),
                "{uid} {mode:o}"
            );
        }
        // Root's own view: only root's directories.
        assert_eq!(judge_dir(&dir(0, 0o755), 0), Ok(()));
        assert!(judge_dir(&dir(me, 0o700), 0).is_err());
    }
}
