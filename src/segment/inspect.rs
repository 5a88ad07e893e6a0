//! What `shmarray ls` and `inspect` show about a segment, read without mapping it
//! and without knowing its type.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use super::huge::{file_backing, Backing};
use super::liveness::{self, Liveness, Usage};
use super::name::check_os_name;
use super::open::describe_error;
use super::{map_errno, Mapping, Namespace, NsDir};
use crate::error::{Error, Result};
use crate::format::containers::{
    map_len, read_counter, vec_capacity, vec_counter, vec_counter_offset, MapGeometry,
    MAP_REPAIRS_COUNTER,
};
use crate::format::control::{
    parse_rw, ControlError, ControlFields, ObjectKind, READERS_OFFSET, READER_ENTRY_BYTES,
    READER_SLOTS, RW_OFFSET,
};
use crate::format::describe::{describe, Description};
use crate::format::npy::Layout;
use crate::sys::fs::{self, Access};

/// Everything known about a segment, read with `pread` (never through a mapping, so
/// a file changing under us is an error, not a signal), for any element type or
/// object kind, from any owner (inspection adopts nothing).
///
/// ```
/// use shmarray::admin::{inspect, Usage};
/// use shmarray::{format::ObjectKind, ndarray::Ix2, Namespace, Segment, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-segment-info-{}", std::process::id());
/// let a = SharedArray::<f32, Ix2>::create(&name, (3, 4))?;
/// let info = inspect(&Namespace::default_dir()?, &name)?;
/// assert_eq!((info.kind(), info.usage), (ObjectKind::Array, Usage::InUse));
/// // Owned by this user (the owner of this process's /proc entry).
/// assert_eq!(info.owner, std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self")?));
/// assert!(!info.is_persistent() && !info.is_garbage());
/// // The same, for a handle's own segment:
/// assert_eq!(a.info()?.file_size, info.file_size);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// Segment name (a name that is not UTF-8 is given lossily; `path` is exact).
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
    /// For a map or vec: its occupancy and layout, read with `pread` when the
    /// segment was inspected (a live count: others may be changing it).
    pub contents: Option<Contents>,
    /// The read-write lock's state (`None` without a control block), read when the
    /// segment was inspected: a snapshot.
    pub rwlock: Option<RwLockInfo>,
}

/// What `inspect` saw of a segment's read-write lock (the array lock's write side
/// and the readers registered with it).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RwLockInfo {
    /// The writer word: `free`, `writer` (a writer holds the lock or waits for the
    /// readers to leave) or `poisoned` (a dead writer's data was left unrepaired).
    pub writer: &'static str,
    /// The registered reading handles.
    pub readers: Vec<ReaderInfo>,
}

/// One registered reading handle of a read-write lock.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaderInfo {
    /// Its entry in the reader table.
    pub slot: usize,
    /// The pid it recorded, in its own pid namespace (informational).
    pub pid: u32,
    /// Read locks it holds now.
    pub holds: u32,
    /// Whether its process is alive (its entry's file lock); a dead one that still
    /// holds is recovered by the next writer.
    pub liveness: Liveness,
}

/// What a container segment (a map or vec) holds, as `shmarray ls`/`inspect` show.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Contents {
    /// A `SharedMap`.
    Map(MapContents),
    /// A `SharedVec`.
    Vec(VecContents),
}

impl Contents {
    /// `(len, capacity)`.
    pub fn occupancy(&self) -> (u64, u64) {
        match self {
            Contents::Map(m) => (m.len, m.capacity),
            Contents::Vec(v) => (v.len, v.capacity),
        }
    }
}

/// A map's occupancy and where numpy finds its entries (`FORMAT.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapContents {
    /// Entries (the sum of the shards' counts).
    pub len: u64,
    /// The capacity it was created with.
    pub capacity: u64,
    /// The most entries it can hold (all shards full).
    pub max_len: u64,
    /// Number of shards.
    pub shards: u64,
    /// Slots per shard.
    pub slots_per_shard: u64,
    /// Bytes of a key.
    pub key_size: u64,
    /// Bytes of a value.
    pub value_size: u64,
    /// Bytes of an entry.
    pub entry_stride: u64,
    /// Offset of the key inside an entry (16 when values are at most 8 bytes,
    /// else 8).
    pub key_offset: u64,
    /// Offset of the value inside an entry.
    pub value_offset: u64,
    /// File offset of the first entry; `shards * slots_per_shard` entries follow.
    pub entries_offset: u64,
    /// Number of entries (slots, used or not).
    pub entry_count: u64,
    /// The numpy structured dtype of an entry, key and value as raw bytes.
    pub numpy_dtype: String,
    /// The hash seed.
    pub seed: u64,
    /// Repairs after a process died holding a shard's lock.
    pub repairs: u64,
}

/// A vec's occupancy and where its length is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VecContents {
    /// Elements.
    pub len: u64,
    /// Room for this many (the data's shape).
    pub capacity: u64,
    /// File offset of the length (a little-endian `u64`).
    pub len_offset: u64,
    /// Repairs after a process died holding the lock.
    pub repairs: u64,
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
///
/// The name may be any bytes a directory holds (`shmarray ls` lists names that are
/// not UTF-8 too). Of the files of that name in the namespace's directories, this
/// user's is inspected; another user's only if this user has none (see
/// [`Namespace`]'s "one name, one segment").
pub fn inspect(ns: &Namespace, name: impl AsRef<OsStr>) -> Result<SegmentInfo> {
    let bare = check_os_name(name.as_ref())?;
    let (dir, file, info, desc) = read_description(ns, bare)?;
    let backing = file_backing(&file, Some(&dir.backing));
    info_of(
        &bare.to_string_lossy(),
        dir.dir.path().join(bare),
        backing,
        &file,
        &info,
        desc,
    )
}

/// What [`Segment::info`](crate::Segment::info) reports: the handle's own file,
/// opened again read-only (a new open file description, so the handle's own
/// liveness locks count as any other process's would), read with `pread`.
pub(crate) fn inspect_mapping(m: &Mapping) -> Result<SegmentInfo> {
    let label = m.label();
    let file = fs::reopen(m.file(), Access::Read).map_err(|e| map_errno("open", label, e))?;
    let info = fs::fstat(&file).map_err(|e| map_errno("fstat", label, e))?;
    let desc = describe(info.size, |offset, buf| {
        fs::read_exact_at(&file, buf, offset)
    })
    .map_err(|e| describe_error(label, e))?;
    let path = m.path().unwrap_or_else(|| {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            m.file().as_raw_fd()
        ))
    });
    info_of(label, path, m.backing().clone(), &file, &info, desc)
}

/// The [`SegmentInfo`] of a file read with `pread` (`info` and `desc` from it).
fn info_of(
    name: &str,
    path: PathBuf,
    backing: Backing,
    file: &File,
    info: &fs::FileInfo,
    desc: Description,
) -> Result<SegmentInfo> {
    let contents = contents(&desc, file).map_err(|e| match e {
        ContentsError::Control(c) => Error::corrupt(name, c),
        ContentsError::Read(e) => Error::Io {
            op: "pread",
            name: name.to_string(),
            source: e,
        },
    })?;
    let rwlock = rwlock(&desc, file).map_err(|e| Error::Io {
        op: "pread",
        name: name.to_string(),
        source: e,
    })?;
    Ok(SegmentInfo {
        rwlock,
        contents,
        name: name.to_string(),
        path,
        backing,
        file_size: info.size,
        owner: info.uid,
        mode: info.mode,
        creator: desc.control.map(|_| liveness::creator(file)),
        creator_pid_here: desc.control.and_then(|c| {
            let ours = crate::sys::proc::pid_namespace()?;
            (c.creator_pid_ns != 0).then_some(c.creator_pid_ns == ours)
        }),
        usage: liveness::usage(file),
        layout: desc.layout,
        control: desc.control,
    })
}

enum ContentsError {
    Control(ControlError),
    Read(std::io::Error),
}

/// Reads a map's or vec's occupancy with `pread`; the layout comes from the
/// validated control block copy, and numbers read from the file are only shown.
fn contents(
    desc: &Description,
    file: &File,
) -> std::result::Result<Option<Contents>, ContentsError> {
    let Some(c) = &desc.control else {
        return Ok(None);
    };
    let mut read_at = |offset: u64, buf: &mut [u8]| fs::read_exact_at(file, buf, offset);
    let control_offset = desc.layout.control_offset as u64;
    let data_offset = desc.layout.data_offset as u64;
    Ok(match c.kind {
        ObjectKind::Map => {
            let g = MapGeometry::from_control(c).map_err(ContentsError::Control)?;
            let len = map_len(&g, data_offset, &mut read_at).map_err(ContentsError::Read)?;
            let repairs = read_counter(control_offset, MAP_REPAIRS_COUNTER, &mut read_at)
                .map_err(ContentsError::Read)?;
            Some(Contents::Map(MapContents {
                len,
                capacity: g.capacity,
                max_len: g.max_len(),
                shards: g.shards,
                slots_per_shard: g.slots,
                key_size: g.key_size,
                value_size: g.value_size,
                entry_stride: g.stride,
                key_offset: g.key_offset,
                value_offset: g.value_offset,
                entries_offset: data_offset + g.entries_offset,
                entry_count: g.shards * g.slots,
                numpy_dtype: g.numpy_dtype(),
                seed: MapGeometry::seed(c),
                repairs,
            }))
        }
        ObjectKind::Vec => {
            let capacity = vec_capacity(c).map_err(ContentsError::Control)?;
            let len = read_counter(control_offset, vec_counter::LEN, &mut read_at)
                .map_err(ContentsError::Read)?;
            let repairs = read_counter(control_offset, vec_counter::REPAIRS, &mut read_at)
                .map_err(ContentsError::Read)?;
            Some(Contents::Vec(VecContents {
                len: len.min(capacity),
                capacity,
                len_offset: control_offset + vec_counter_offset(vec_counter::LEN),
                repairs,
            }))
        }
        _ => None,
    })
}

/// Reads the read-write lock's header and reader table with `pread` and probes the
/// liveness of every registered reader (its entry's lock byte).
fn rwlock(desc: &Description, file: &File) -> std::io::Result<Option<RwLockInfo>> {
    if desc.control.is_none() {
        return Ok(None);
    }
    let base = desc.layout.control_offset as u64;
    let mut header = [0u8; 16];
    fs::read_exact_at(file, &mut header, base + RW_OFFSET as u64)?;
    let mut table = vec![0u8; READER_SLOTS * READER_ENTRY_BYTES];
    fs::read_exact_at(file, &mut table, base + READERS_OFFSET as u64)?;
    let (word, _mask, entries) = parse_rw(&header, &table);
    let readers = entries
        .into_iter()
        .enumerate()
        .filter(|(_, (registered, _, _))| *registered != 0)
        .map(|(slot, (_, pid, holds))| ReaderInfo {
            slot,
            pid,
            holds,
            liveness: liveness::member(file, slot),
        })
        .collect();
    let writer = match word {
        0 => "free",
        1 => "writer",
        2 => "poisoned",
        _ => "unknown",
    };
    Ok(Some(RwLockInfo { writer, readers }))
}

/// Opens `bare` read-only where [`Namespace::resolve`] finds it for this user,
/// without following links or blocking, checks it is a regular file and reads its
/// description with `pread` (nothing is mapped).
pub(crate) fn read_description<'a>(
    ns: &'a Namespace,
    bare: &OsStr,
) -> Result<(&'a Arc<NsDir>, File, fs::FileInfo, Description)> {
    let (dir, _) = ns.resolve(bare, &[crate::sys::proc::euid()])?;
    let bare_os = bare;
    let bare = &*bare_os.to_string_lossy();
    let file = dir
        .dir
        .open_file(bare_os, Access::Read)
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
