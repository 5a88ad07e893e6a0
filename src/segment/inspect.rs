//! What `shmarray ls` and `inspect` show about a segment, read without mapping it
//! and without knowing its type.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::huge::{file_backing, Backing};
use super::liveness::{self, Liveness, Usage};
use super::open::describe_error;
use super::{check_name, map_errno, Namespace, NsDir};
use crate::error::Result;
use crate::format::control::{ControlFields, ObjectKind};
use crate::format::describe::{describe, Description};
use crate::format::npy::Layout;
use crate::sys::fs::{self, Access};

/// Everything known about a segment, read with `pread` (never through a mapping, so
/// a file changing under us is an error, not a signal), for any element type or
/// object kind, from any owner (inspection adopts nothing).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// Segment name.
    pub name: String,
    /// File path.
    pub path: PathBuf,
    /// The pages behind it: hugetlb pages if its file system is hugetlbfs, transparent
    /// huge pages if it is in a THP tmpfs, else base pages.
    pub backing: Backing,
    /// File size in bytes.
    pub file_size: u64,
    /// Owner uid of the file.
    pub owner: u32,
    /// Permission bits of the file.
    pub mode: u32,
    /// Parsed layout.
    pub layout: Layout,
    /// Control block fields, `None` for plain `.npy` files.
    pub control: Option<ControlFields>,
    /// Whether any process has it open (open handles hold a lock the kernel drops
    /// when they close or die).
    pub usage: Usage,
    /// Whether the handle that created it is still open; `None` without a control
    /// block.
    pub creator: Option<Liveness>,
    /// Whether the creator's recorded pid belongs to this process's pid namespace
    /// (`Some(false)`: another container's pid, meaningless here); `None` when
    /// either namespace is unknown or there is no control block.
    pub creator_pid_here: Option<bool>,
}

impl SegmentInfo {
    /// What the segment holds (plain `.npy` files are arrays).
    pub fn kind(&self) -> ObjectKind {
        self.control.map_or(ObjectKind::Array, |c| c.kind)
    }

    /// Whether the segment is marked persistent.
    pub fn is_persistent(&self) -> bool {
        self.control.is_some_and(|c| c.is_persistent())
    }

    /// Whether `shmarray gc` would remove it: a segment with a control block, not
    /// persistent, that no process has open.
    pub fn is_garbage(&self) -> bool {
        self.control.is_some() && !self.is_persistent() && self.usage == Usage::Idle
    }
}

/// Reads and validates segment `name` in `ns` read-only, for any element type and
/// kind. Opens without following links or blocking, so a symlink, FIFO or
/// directory under the name is reported, not followed or waited on.
pub fn inspect(ns: &Namespace, name: &str) -> Result<SegmentInfo> {
    let bare = check_name(name)?;
    let (dir, file, info, desc) = read_description(ns, bare)?;
    Ok(SegmentInfo {
        name: bare.to_string(),
        path: dir.dir.path().join(bare),
        backing: file_backing(&file, Some(&dir.backing)),
        file_size: info.size,
        owner: info.uid,
        mode: info.mode,
        creator: desc.control.map(|_| liveness::creator(&file)),
        creator_pid_here: desc.control.and_then(|c| {
            let ours = crate::sys::proc::pid_namespace()?;
            (c.creator_pid_ns != 0).then_some(c.creator_pid_ns == ours)
        }),
        usage: liveness::usage(&file),
        layout: desc.layout,
        control: desc.control,
    })
}

/// Opens `bare` read-only in the first directory of `ns` that has it, without
/// following links or blocking, checks it is a regular file and reads its
/// description with `pread` (nothing is mapped).
pub(crate) fn read_description<'a>(
    ns: &'a Namespace,
    bare: &str,
) -> Result<(&'a Arc<NsDir>, File, fs::FileInfo, Description)> {
    let (dir, file) = ns
        .open_file(bare, Access::Read)
        .map_err(|e| map_errno("open", bare, e))?;
    let info = fs::fstat(&file).map_err(|e| map_errno("fstat", bare, e))?;
    if info.kind != fs::FileKind::Regular {
        return Err(crate::error::Error::not_shmarray(
            bare,
            info.kind.describe(),
        ));
    }
    let desc = describe(info.size, |offset, buf| {
        fs::read_exact_at(&file, buf, offset)
    })
    .map_err(|e| describe_error(bare, e))?;
    Ok((dir, file, info, desc))
}
