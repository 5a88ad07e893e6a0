//! Removing names without ever taking a live segment: by its owner on drop, on
//! purpose (`remove`, `shmarray rm`) and as garbage (`shmarray gc`).
//!
//! There is no "unlink if this name still refers to that file" syscall, and a check
//! followed by an unlink leaves a window in which someone may remove the name and
//! create a new segment under it, which the unlink would then take. So a remover
//! first *renames* the name to a private one (`.shmarray-rm-<pid>-<n>`, never
//! replacing anything), then checks which file it got: its own is unlinked under
//! the private name; anyone else's is renamed back. A racing creator's segment is
//! at worst briefly missing from its name, never deleted.
//!
//! `gc` removes only segments of this user that have a control block, are not
//! persistent and have **no open handle**: it takes the exclusive remover's lock on
//! the handle byte, which succeeds only when no handle holds its shared lock and
//! keeps new handles out until the name is gone. Where locks cannot tell (no lock
//! support), nothing is removed.

use std::ffi::OsStr;
use std::fs::File;

use nix::errno::Errno;

use super::liveness;
use super::name::{check_os_name, temp_name, BUILD_PREFIX, REMOVE_PREFIX, RESERVED_PREFIX};
use super::open::describe_error;
use super::{map_errno, Namespace};
use crate::error::{Error, Result};
use crate::format::describe::describe;
use crate::sys::fs::{self, Access, Dir, FileKind};
use crate::sys::proc;

/// Told the file (device, inode) of every segment this process removes, once the
/// name is gone: set once by a higher layer (the pool, whose idle workers then let
/// go of their cached mappings, so the memory is free when this returns).
static ON_REMOVED: std::sync::OnceLock<fn((u64, u64))> = std::sync::OnceLock::new();

/// Sets the function told of removals (the first call wins).
#[cfg(feature = "pool")]
pub(crate) fn on_removed(f: fn((u64, u64))) {
    let _ = ON_REMOVED.set(f);
}

/// This process removed the name of file `id`.
pub(crate) fn removed(id: (u64, u64)) {
    if let Some(f) = ON_REMOVED.get() {
        f(id);
    }
}

/// Removes `name` if it still refers to the file `id`; `Ok(false)` if the name is
/// gone or now refers to another file (which is left in place).
pub(crate) fn remove_if_same(dir: &Dir, name: impl AsRef<OsStr>, id: (u64, u64)) -> Result<bool> {
    let name_os = name.as_ref();
    let lossy = name_os.to_string_lossy();
    let name = &*lossy;
    let private = temp_name(REMOVE_PREFIX);
    match dir.rename_noreplace(name_os, &private) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(false),
        Err(Errno::EINVAL | Errno::ENOSYS) => {
            // No RENAME_NOREPLACE here: the best we can do is check, then unlink.
            return match dir.stat(name_os) {
                Ok(st) if st.id() == id => dir
                    .unlink(name_os)
                    .map(|()| true)
                    .map_err(|e| map_errno("unlink", name, e)),
                Ok(_) | Err(Errno::ENOENT) => Ok(false),
                Err(e) => Err(map_errno("stat", name, e)),
            };
        }
        Err(e) => return Err(map_errno("rename", name, e)),
    }
    match dir.stat(&private) {
        Ok(st) if st.id() == id => dir
            .unlink(&private)
            .map(|()| true)
            .map_err(|e| map_errno("unlink", name, e)),
        Ok(_) => match dir.rename_noreplace(&private, name_os) {
            // Someone else's file: it goes back under its name.
            Ok(()) => Ok(false),
            Err(e) => Err(Error::io(
                "rename back (the name was taken again; the other file keeps a .shmarray-rm- name)",
                name,
                e,
            )),
        },
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(map_errno("stat", name, e)),
    }
}

impl Namespace {
    /// Removes this user's file `name`, in whichever directory of the namespace it
    /// is, whatever file it is and whoever uses it: a deliberate act. Processes
    /// that have it mapped keep their mapping; new opens fail with `NotFound`.
    ///
    /// Only this user's file is taken: another user's file of that name is never
    /// what this removes (`ForeignOwner` if it is the only one; see
    /// [`remove_owned_by`](Self::remove_owned_by)), and a name this user holds in
    /// two directories is `DuplicateName`. The name may be any bytes a directory
    /// holds. The file is removed only if the name still refers to the file
    /// judged (see the module docs); `NotFound` if it changed meanwhile.
    pub fn remove(&self, name: impl AsRef<OsStr>) -> Result<()> {
        let euid = proc::euid();
        let bare = check_os_name(name.as_ref())?;
        let hits = self.hits(bare)?;
        if !hits.is_empty() && hits.iter().all(|(_, i)| i.uid != euid) {
            return Err(Error::ForeignOwner {
                name: bare.to_string_lossy().into_owned(),
                owner: hits[0].1.uid,
                euid,
            });
        }
        self.remove_owned_by(bare, euid)
    }

    /// Removes user `owner`'s file `name` (for root, or the owner itself, cleaning
    /// up after another user: `shmarray rm --owner UID`), like
    /// [`remove`](Self::remove) otherwise. `NotFound` if `owner` has no file of
    /// that name, `DuplicateName` if it has two.
    pub fn remove_owned_by(&self, name: impl AsRef<OsStr>, owner: u32) -> Result<()> {
        let bare = check_os_name(name.as_ref())?;
        let lossy = bare.to_string_lossy();
        let hits = self.hits(bare)?;
        let theirs: Vec<&(&std::sync::Arc<super::NsDir>, fs::FileInfo)> =
            hits.iter().filter(|(_, i)| i.uid == owner).collect();
        match theirs.as_slice() {
            [] => Err(Error::NotFound {
                name: lossy.into_owned(),
            }),
            [(d, info)] => {
                if remove_if_same(&d.dir, bare, info.id())? {
                    removed(info.id());
                    Ok(())
                } else {
                    Err(Error::NotFound {
                        name: lossy.into_owned(),
                    })
                }
            }
            many => Err(Error::DuplicateName {
                name: lossy.into_owned(),
                paths: many.iter().map(|(d, _)| d.dir.path().join(bare)).collect(),
            }),
        }
    }
}

/// Removes this user's segment `name` from the default namespace (whichever
/// process created it): [`Namespace::remove`].
pub fn remove(name: impl AsRef<OsStr>) -> Result<()> {
    Namespace::default_dir()?.remove(name)
}

/// What [`collect_garbage`] did.
///
/// ```
/// use shmarray::{admin, ndarray::Ix1, Namespace, Options, Segment, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A directory of its own, so that the example collects nobody else's garbage.
/// let dir = std::env::temp_dir().join(format!("doc-gc-{}", std::process::id()));
/// std::fs::create_dir(&dir)?;
/// let ns = Namespace::at(&dir)?;
/// let live: SharedArray<u8, Ix1> = Options::new().namespace(ns.clone()).create("live", 16)?;
/// // A copy of its file is a segment nobody has open, as a killed creator leaves one.
/// std::fs::copy(live.path().expect("a named segment"), dir.join("left"))?;
///
/// let dry: admin::GcReport = admin::find_garbage(&ns)?; // removes nothing
/// assert_eq!(dry.removed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["left"]);
/// assert!(dir.join("left").exists());
/// let report = admin::collect_garbage(&ns)?;
/// assert_eq!((report.removed.len(), report.undecided.len(), report.failed.len()), (1, 0, 0));
/// assert_eq!(ns.entries()?, ["live"]); // the segment in use is kept
/// drop(live);
/// std::fs::remove_dir(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct GcReport {
    /// Names removed (or, in a dry run, that would be), with why.
    pub removed: Vec<(String, &'static str)>,
    /// Names whose state could not be decided (no lock support): left alone.
    pub undecided: Vec<String>,
    /// Names whose removal failed, with the error. Collection goes on after each.
    pub failed: Vec<(String, Error)>,
}

/// Removes this user's garbage in every directory of `ns`: segments nobody has open that are not
/// persistent, and files of creators killed while building. Never a segment with an
/// open handle, a persistent one, another user's file or a foreign file. Goes on
/// after a failure and reports each.
pub fn collect_garbage(ns: &Namespace) -> Result<GcReport> {
    garbage(ns, false)
}

/// What [`collect_garbage`] would remove now, removing nothing (`shmarray gc
/// --dry-run`): `removed` lists the candidates.
pub fn find_garbage(ns: &Namespace) -> Result<GcReport> {
    garbage(ns, true)
}

fn garbage(ns: &Namespace, dry_run: bool) -> Result<GcReport> {
    let mut report = GcReport::default();
    for d in ns.dirs() {
        let names = d
            .dir
            .entries()
            .map_err(|e| Error::io("read directory", &d.dir.path().display().to_string(), e))?;
        for raw in names {
            // Names this crate makes are UTF-8; anything else is not ours.
            let Some(name) = raw.to_str() else { continue };
            match collect_one(&d.dir, name, dry_run) {
                Ok(Verdict::Removed(why)) => report.removed.push((name.to_string(), why)),
                Ok(Verdict::Undecided) => report.undecided.push(name.to_string()),
                Ok(Verdict::Kept) => {}
                Err(e) => report.failed.push((name.to_string(), e)),
            }
        }
    }
    Ok(report)
}

enum Verdict {
    Removed(&'static str),
    Kept,
    Undecided,
}

fn collect_one(dir: &Dir, name: &str, dry_run: bool) -> Result<Verdict> {
    // Files of creators killed while building: possibly half written, judged by
    // their builder's lock alone. Files a remover renamed before it died, and any
    // other name, are judged as segments.
    let build = name.starts_with(BUILD_PREFIX);
    if name.starts_with(RESERVED_PREFIX) && !build && !name.starts_with(REMOVE_PREFIX) {
        return Ok(Verdict::Kept);
    }
    let file = match dir.open_file(name, Access::ReadWrite) {
        Ok(f) => f,
        // Ours but not writable (e.g. immutable): garbage we cannot remove is a
        // failure to report; anything else there is not ours to judge.
        Err(e @ (Errno::EACCES | Errno::EPERM)) => {
            return match dir.open_file(name, Access::Read) {
                Ok(ro) if ours(&ro) && (build || collectable(&ro, name)?) => {
                    Err(map_errno("open for removal", name, e))
                }
                _ => Ok(Verdict::Kept),
            };
        }
        // Gone, a symlink or a directory: not ours to collect.
        Err(Errno::ENOENT | Errno::ELOOP | Errno::EISDIR | Errno::ENXIO) => {
            return Ok(Verdict::Kept)
        }
        Err(e) => return Err(map_errno("open", name, e)),
    };
    if !ours(&file) {
        return Ok(Verdict::Kept);
    }
    let id = fs::fstat(&file)
        .map_err(|e| map_errno("fstat", name, e))?
        .id();
    let why = if build {
        "its creator died while building it"
    } else {
        if !collectable(&file, name)? {
            return Ok(Verdict::Kept);
        }
        "not persistent, and no process has it open"
    };
    if dry_run {
        return Ok(match liveness::usage(&file) {
            super::Usage::Idle => Verdict::Removed(why),
            super::Usage::InUse => Verdict::Kept,
            super::Usage::Unknown => Verdict::Undecided,
        });
    }
    match liveness::hold_for_removal(&file) {
        Ok(true) => {}
        Ok(false) => return Ok(Verdict::Kept),
        Err(_) => return Ok(Verdict::Undecided),
    }
    // No handle can open it now; check again what it is (it may have been made
    // persistent just before its last handle closed).
    if !build && !collectable(&file, name)? {
        return Ok(Verdict::Kept);
    }
    Ok(if remove_if_same(dir, name, id)? {
        Verdict::Removed(why)
    } else {
        Verdict::Kept
    })
}

/// Whether `file` is a regular file of this user.
fn ours(file: &File) -> bool {
    fs::fstat(file).is_ok_and(|i| i.kind == FileKind::Regular && i.uid == proc::euid())
}

/// Whether `file` is a segment of ours that gc may take: a valid segment with a
/// control block, not persistent. Foreign and damaged files are kept.
fn collectable(file: &File, name: &str) -> Result<bool> {
    let info = fs::fstat(file).map_err(|e| map_errno("fstat", name, e))?;
    match describe(info.size, |offset, buf| {
        fs::read_exact_at(file, buf, offset)
    }) {
        Ok(d) => Ok(d.control.is_some_and(|c| !c.is_persistent())),
        Err(e) => match describe_error(name, e) {
            e @ Error::Io { .. } => Err(e),
            _ => Ok(false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (std::path::PathBuf, Dir) {
        let p = std::path::Path::new("/dev/shm").join(temp_name("shmarray-test-unit-rm-"));
        std::fs::create_dir(&p).unwrap();
        let d = Dir::open(&p).unwrap();
        (p, d)
    }

    /// The window gc cannot close by checking first: between its judgment of a
    /// file and its removal, the name is removed and re-created with a live
    /// segment. Removal by "rename aside, then check" must leave the new one.
    #[test]
    fn a_name_recreated_after_the_judgment_is_never_taken() {
        let (path, d) = dir();
        std::fs::write(path.join("frames"), b"old").unwrap();
        let judged = d.stat("frames").unwrap().id();
        // The application removes the old file and creates a new one meanwhile.
        std::fs::remove_file(path.join("frames")).unwrap();
        std::fs::write(path.join("frames"), b"new, live").unwrap();
        assert!(!remove_if_same(&d, "frames", judged).unwrap());
        assert_eq!(std::fs::read(path.join("frames")).unwrap(), b"new, live");
        // No private name is left behind.
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 1);
        // The judged file itself is removed, and a gone name is no error.
        let now = d.stat("frames").unwrap().id();
        assert!(remove_if_same(&d, "frames", now).unwrap());
        assert!(!remove_if_same(&d, "frames", now).unwrap());
        std::fs::remove_dir(&path).unwrap();
    }
}
