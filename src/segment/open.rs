//! Attaching an existing segment: a file someone else may control is hostile input.
//!
//! 1. find the name in every directory of the namespace and take this user's file
//!    (or a trusted owner's: another user's file elsewhere neither hides it nor
//!    stands in for it; two are `DuplicateName`), then open it relative to its
//!    directory's descriptor, `O_NOFOLLOW|O_NONBLOCK` (a symlink is refused, a FIFO
//!    cannot make us block);
//! 2. `fstat`: a regular file, owned by this user (or an owner the caller trusts),
//!    not writable by group or others (unless the caller allows it);
//! 3. read the header and control block with `pread` and validate the copies
//!    ([`describe`]), then check the object kind;
//! 4. take this handle's liveness lock (a remover holding the name refuses it), check
//!    the name still refers to this file, `fstat` once more, and only then map.
//!
//! What remains: a process of the same user may still shrink a named file *after* a
//! successful attach; touching the lost pages then raises `SIGBUS`. Anonymous
//! (memfd) segments are sealed against that.

use std::fs::File;

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;

use super::huge::{file_backing, Backing};
use super::liveness::{self, Hold};
use super::registry::Registration;
use super::{check_name, map_errno, Mapping, Namespace};
use crate::error::{Error, Result};
use crate::format::control::ObjectKind;
use crate::format::describe::{describe, DescribeError, Description};
use crate::format::Corruption;
use crate::sys::fs::{self, Access, FileInfo, FileKind};
use crate::sys::proc;

/// Whom to trust beyond this user's own, not-shared-writable files.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trust {
    /// Other owners (uids) whose files are accepted.
    pub(crate) owners: Vec<u32>,
    /// Accept files writable by group or others.
    pub(crate) shared_write: bool,
}

/// What an attach must find.
#[derive(Clone, Debug)]
pub(crate) struct Expect {
    /// The object kind (a plain `.npy` file counts as an array).
    pub(crate) kind: ObjectKind,
    /// Read-only or read-write.
    pub(crate) access: Access,
    /// Whom to trust.
    pub(crate) trust: Trust,
}

/// How often an open retries when the name changed under it (removed, replaced).
const ATTEMPTS: usize = 8;

/// Opens and attaches segment `name` in `ns`.
pub(crate) fn open(ns: &Namespace, name: &str, expect: &Expect) -> Result<Mapping> {
    let bare = check_name(name)?;
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1 << attempt.min(5)));
        }
        let mut trusted = expect.trust.owners.clone();
        trusted.push(proc::euid());
        let (dir, _) = ns.resolve(bare.as_ref(), &trusted)?;
        let file = dir
            .dir
            .open_file(bare, expect.access)
            .map_err(|e| map_errno("open", bare, e))?;
        let mut seg = match attach(file, bare, expect, Some(&dir.backing)) {
            Err(e @ Error::BeingRemoved { .. }) => {
                last = Some(e);
                continue;
            }
            other => other?,
        };
        // Still the file behind the name? (A remover may have taken it between our
        // open and our lock; then the name is gone or names another file.)
        match dir.dir.stat(bare) {
            Ok(now) if now.id() == seg.id => {
                seg.name = Some(bare.to_string());
                seg.ns = Some(ns.clone());
                seg.dir = Some(dir.clone());
                return Ok(seg);
            }
            Ok(_) | Err(Errno::ENOENT) => {
                last = Some(Error::NotFound {
                    name: bare.to_string(),
                })
            }
            Err(e) => return Err(map_errno("stat", bare, e)),
        }
    }
    Err(last.unwrap_or(Error::NotFound {
        name: bare.to_string(),
    }))
}

/// Attaches an open segment file (e.g. a memfd received from another process).
/// The file is opened again through `/proc/self/fd` first, so this handle has its
/// own open file description (and so its own liveness locks); where that is not
/// possible the descriptor is used as it is. The owner is checked as for named
/// files; the mode is not (a descriptor handed over is not reachable by others
/// through a directory, and memfds of other programs are created 0777).
pub(crate) fn from_file(file: File, label: &str, expect: &Expect) -> Result<Mapping> {
    let file = fs::reopen(&file, expect.access).unwrap_or(file);
    let mut expect = expect.clone();
    expect.trust.shared_write = true;
    attach(file, label, &expect, None)
}

/// Steps 2–4 of the module docs on an open file, found in a directory with
/// `dir_backing` (`None`: handed over).
pub(crate) fn attach(
    file: File,
    label: &str,
    expect: &Expect,
    dir_backing: Option<&Backing>,
) -> Result<Mapping> {
    let info = fs::fstat(&file).map_err(|e| map_errno("fstat", label, e))?;
    check_file(&info, label, &expect.trust)?;
    let desc = describe(info.size, |offset, buf| {
        fs::read_exact_at(&file, buf, offset)
    })
    .map_err(|e| describe_error(label, e))?;
    let found = desc.control.map_or(ObjectKind::Array, |c| c.kind);
    if found != expect.kind {
        return Err(Error::KindMismatch {
            name: label.to_string(),
            expected: expect.kind,
            found,
        });
    }
    if desc.control.is_none() && expect.kind != ObjectKind::Array {
        return Err(Error::NoControlBlock {
            name: label.to_string(),
            what: "the object's state",
        });
    }
    if liveness::hold_handle(&file) == Hold::Refused {
        return Err(Error::BeingRemoved {
            name: label.to_string(),
        });
    }
    let len = desc.mapped_len();
    let backing = file_backing(&file, dir_backing);
    // hugetlb mappings are whole pages (their unmapping fails otherwise); the bytes
    // past the file's end are never touched.
    let map_len = backing.map_len(len).ok_or_else(|| {
        Error::corrupt(
            label,
            Corruption::Truncated {
                needed: u64::MAX,
                actual: info.size,
            },
        )
    })?;
    let now = fs::fstat(&file).map_err(|e| map_errno("fstat", label, e))?;
    if now.size < len as u64 || now.id() != info.id() {
        return Err(Error::corrupt(
            label,
            Corruption::Truncated {
                needed: len as u64,
                actual: now.size,
            },
        ));
    }
    let writable = expect.access == Access::ReadWrite;
    let map = map_file(&file, map_len, writable).map_err(|e| Error::io("mmap", label, e))?;
    new_segment(file, map, desc, info.id(), writable, backing).map_err(|why| in_use(label, why))
}

/// Wraps a validated, mapped file in a handle, registered in this process.
pub(crate) fn new_segment(
    file: File,
    map: MmapRaw,
    desc: Description,
    id: (u64, u64),
    writable: bool,
    backing: Backing,
) -> std::result::Result<Mapping, &'static str> {
    let registration = Registration::new(id)?;
    Ok(Mapping {
        name: None,
        ns: None,
        dir: None,
        backing,
        file,
        map: std::mem::ManuallyDrop::new(map),
        keep_mapped: false,
        desc,
        id,
        writable,
        owner: false,
        registration,
        fork_generation: crate::sys::proc::fork_generation(),
    })
}

pub(crate) fn in_use(name: &str, why: &'static str) -> Error {
    Error::InUse {
        name: name.to_string(),
        why,
    }
}

/// The checks of step 2.
fn check_file(info: &FileInfo, label: &str, trust: &Trust) -> Result<()> {
    if info.kind != FileKind::Regular {
        return Err(Error::not_shmarray(label, info.kind.describe()));
    }
    let euid = proc::euid();
    if info.uid != euid && !trust.owners.contains(&info.uid) {
        return Err(Error::ForeignOwner {
            name: label.to_string(),
            owner: info.uid,
            euid,
        });
    }
    if info.mode & 0o022 != 0 && !trust.shared_write {
        return Err(Error::InsecureMode {
            name: label.to_string(),
            mode: info.mode,
        });
    }
    Ok(())
}

/// The crate error for a failed [`describe`].
pub(crate) fn describe_error(label: &str, e: DescribeError) -> Error {
    match e {
        DescribeError::NotNpy => Error::not_shmarray(label, "not an NPY file"),
        DescribeError::NotReady => Error::NotReady {
            name: label.to_string(),
        },
        DescribeError::Header(h) => Error::corrupt(label, h),
        DescribeError::Control(c) => Error::corrupt(label, c),
        DescribeError::Truncated { needed, actual } => {
            Error::corrupt(label, Corruption::Truncated { needed, actual })
        }
        DescribeError::Read(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            // The file shrank while we read it.
            Error::corrupt(
                label,
                Corruption::Truncated {
                    needed: 0,
                    actual: 0,
                },
            )
        }
        DescribeError::Read(e) => Error::io("read", label, e),
    }
}

/// Maps `len` bytes of `file`, shared.
pub(crate) fn map_file(file: &File, len: usize, writable: bool) -> std::io::Result<MmapRaw> {
    let mut opts = MmapOptions::new();
    opts.len(len);
    if writable {
        opts.map_raw(file)
    } else {
        opts.map_raw_read_only(file)
    }
}
