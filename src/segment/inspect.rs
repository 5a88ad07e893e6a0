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
///
/// ```
/// use shmarray::admin::{Liveness, ReaderInfo, RwLockInfo};
/// use shmarray::{ndarray::Ix1, LockResultExt, Segment, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-rwlock-info-{}", std::process::id());
/// let a = SharedArray::<f64, Ix1>::create(&name, 8)?;
/// let no_one: Option<RwLockInfo> = a.info()?.rwlock;
/// assert_eq!(no_one.map(|rw| (rw.writer, rw.readers.len())), Some(("free", 0)));
///
/// let r = a.read().recover(|w| w.fill(0.0))?; // a read lock: this handle registers
/// let rw = a.info()?.rwlock.expect("a segment with a control block");
/// assert_eq!(rw.writer, "free");
/// let me: &ReaderInfo = &rw.readers[0];
/// assert_eq!((me.pid, me.holds, me.liveness), (std::process::id(), 1, Liveness::Alive));
/// drop(r);
/// assert_eq!(a.info()?.rwlock.map(|rw| rw.readers[0].holds), Some(0));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RwLockInfo {
    /// The writer word: `free`, `writer` (a writer holds the lock or waits for the
    /// readers to leave) or `poisoned` (a dead writer's data was left unrepaired).
    pub writer: &'static str,
    /// The registered reading handles.
    pub readers: Vec<ReaderInfo>,
}

/// One registered reading handle of a read-write lock; [`RwLockInfo`] shows one
/// being registered.
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
///
/// ```
/// use shmarray::admin::Contents;
/// use shmarray::{ndarray::Ix1, Segment, SharedArray, SharedMap, SharedVec};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let n = |s: &str| format!("doc-contents-{s}-{}", std::process::id());
/// let map = SharedMap::<u64, f32>::create(&n("map"), 100)?;
/// map.insert(7, 0.5)?;
/// let vec = SharedVec::<u16>::create(&n("vec"), 10)?;
/// vec.push(1)?;
/// vec.push(2)?;
/// let array = SharedArray::<u8, Ix1>::create(&n("array"), 4)?;
///
/// let Some(Contents::Map(m)) = map.info()?.contents else { panic!("a map") };
/// assert_eq!((m.len, m.capacity, m.key_size, m.value_size), (1, 100, 8, 4));
/// assert_eq!(vec.info()?.contents.map(|c| c.occupancy()), Some((2, 10)));
/// assert!(array.info()?.contents.is_none()); // arrays are not containers
/// # Ok(()) }
/// ```
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
///
/// ```
/// use shmarray::{admin::{Contents, MapContents}, Segment, SharedMap};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-map-contents-{}", std::process::id());
/// let m = SharedMap::<u32, [u8; 24]>::create(&name, 3000)?;
/// m.insert(1, [9; 24])?;
/// let Some(Contents::Map(c)) = m.info()?.contents else { panic!("a map") };
/// let c: MapContents = c;
/// assert_eq!((c.len, c.capacity, c.shards), (1, 3000, m.shards() as u64));
/// assert_eq!(c.seed, m.seed());
/// // Where numpy finds the entries: `entry_count` of `entry_stride` bytes.
/// assert_eq!(c.entry_count, c.shards * c.slots_per_shard);
/// assert!(c.value_offset + c.value_size <= c.entry_stride);
/// assert_eq!(c.key_offset, 8); // values over 8 bytes: the key follows the state word
/// # Ok(()) }
/// ```
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
///
/// ```
/// use std::os::unix::fs::FileExt;
/// use shmarray::{admin::Contents, Segment, SharedVec};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-vec-contents-{}", std::process::id());
/// let v = SharedVec::<f64>::create(&name, 100)?;
/// v.push(1.5)?;
/// let info = v.info()?;
/// let Some(Contents::Vec(c)) = info.contents else { panic!("a vec") };
/// assert_eq!((c.len, c.capacity, c.repairs), (1, 100, 0));
/// // Another language reads the length where `len_offset` says: a little-endian u64.
/// let mut len = [0u8; 8];
/// std::fs::File::open(&info.path)?.read_exact_at(&mut len, c.len_offset)?;
/// assert_eq!(u64::from_le_bytes(len), 1);
/// # Ok(()) }
/// ```
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
