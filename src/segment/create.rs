//! Creating a segment so that its name only ever shows a complete one.
//!
//! 1. Make the file **unnamed** in the target directory (`O_TMPFILE`, mode 0600), or,
//!    where the file system or permissions cannot link unnamed files, under a
//!    reserved temporary name (`.shmarray-build-<pid>-<n>`, created exclusively).
//! 2. Take the handle's and the creator's liveness locks on it.
//! 3. Reserve the whole size (`posix_fallocate`: a full file system is `NoSpace`
//!    now, never a `SIGBUS` later), map it, write the NPY header, the control block
//!    (state `READY`) and the object's initial data.
//! 4. **Link** it to its name: `linkat` fails with `EEXIST` if the name is taken, so
//!    creation stays exclusive and never replaces anything. The temporary name, if
//!    any, is then removed.
//!
//! A creator killed at any instant leaves either nothing (an unnamed file dies with
//! its last descriptor), or a complete segment, or a `.shmarray-build-` file whose
//! builder's lock is gone, which `gc` removes. Anonymous segments (memfd) are built
//! the same way, then sealed against resizing.

use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;

use super::huge::{file_backing, huge_page_support, human_size, Backing, HugePages, PageKind};
use super::liveness;
use super::name::{check_name, temp_name, BUILD_PREFIX};
use super::open::{in_use, map_file, new_segment};
use super::{map_errno, Namespace, NsDir, Segment};
use crate::error::{Error, Result};
use crate::format::control::{
    checksum, flags, state, ControlBlock, ControlFields, ObjectKind, LAYOUT_VERSION, PARAMS,
};
use crate::format::descr::Descr;
use crate::format::describe::Description;
use crate::format::npy::{build_header_aligned, header_window, HeaderError, Layout, MAX_DIMS};
use crate::sys::fs::{self, Dir};
use crate::sys::proc;

/// Environment variable that forces creation under a temporary name instead of
/// `O_TMPFILE` (`SHMARRAY_CREATE=named`): the fallback path, for tests.
pub(crate) const CREATE_ENV: &str = "SHMARRAY_CREATE";

/// Where to create a segment.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    /// A named segment in a directory.
    Named(&'a Namespace, &'a str),
    /// An anonymous memfd segment.
    Anonymous,
}

/// What object a segment will hold: kind, version of its data layout, parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KindSpec {
    /// The object kind recorded in the control block.
    pub(crate) kind: ObjectKind,
    /// Version of the kind's data layout.
    pub(crate) version: u32,
    /// Kind parameters.
    pub(crate) params: [u64; PARAMS],
}

impl KindSpec {
    /// A kind without parameters, layout version 0.
    pub(crate) fn plain(kind: ObjectKind) -> KindSpec {
        KindSpec {
            kind,
            version: 0,
            params: [0; PARAMS],
        }
    }
}

/// What to create.
#[derive(Clone, Debug)]
pub(crate) struct Spec<'a> {
    /// The object.
    pub(crate) kind: KindSpec,
    /// Element type of the NPY header.
    pub(crate) descr: Descr,
    /// Column-major data.
    pub(crate) fortran: bool,
    /// Shape of the NPY header.
    pub(crate) shape: &'a [usize],
    /// Outlives its creating handle.
    pub(crate) persistent: bool,
    /// Huge pages asked for.
    pub(crate) huge: HugePages,
}

/// The parts of a segment under construction that an object initialises before
/// anyone can see it.
pub(crate) struct Building<'a> {
    /// The data area, zero-filled and private to this process.
    pub(crate) data: &'a mut [u8],
    block: *mut ControlBlock,
}

impl Building<'_> {
    /// The control block being built (zero-filled lock slot, counters and aux).
    pub(crate) fn block(&self) -> &ControlBlock {
        // SAFETY: `block` points to the initialised, private control block of the
        // mapping, which outlives `self`; all its shared fields are atomics or
        // UnsafeCells, so a shared reference is fine beside `data` (disjoint bytes).
        unsafe { &*self.block }
    }
}

/// Where a segment is built and on what pages.
struct Place {
    /// The directory, `None` for an anonymous segment.
    dir: Option<Arc<NsDir>>,
    /// Ask `memfd_create` for hugetlb pages (anonymous segments).
    huge_memfd: bool,
    /// The pages it gets.
    backing: Backing,
}

/// Why building a segment's file failed.
enum Failed {
    /// An error to return.
    Error(Error),
    /// Huge pages could not be had: the error for `Require`, the reason to fall back
    /// to ordinary pages for `Prefer`.
    Huge { error: Error, reason: String },
}

impl From<Error> for Failed {
    fn from(e: Error) -> Failed {
        Failed::Error(e)
    }
}

/// A file being built: reserved, not yet mapped or named.
struct Reserved {
    file: std::fs::File,
    /// Its temporary name, if it has one.
    temp: Option<String>,
    place: Place,
    header: Vec<u8>,
    layout: Layout,
    /// Bytes reserved and mapped (`total_len`, rounded up to whole hugetlb pages).
    mapped: usize,
}

/// The first place to try for `huge`.
fn choose(target: Target<'_>, huge: HugePages, label: &str) -> Result<Place> {
    let Target::Named(ns, _) = target else {
        return Ok(Place {
            dir: None,
            huge_memfd: huge != HugePages::Off,
            backing: Backing::base(),
        });
    };
    let primary = ns.primary();
    let dir = match huge {
        HugePages::Off => primary,
        HugePages::Prefer | HugePages::Require => match (ns.huge_dir(), ns.refused().first()) {
            (Some(d), _) => d,
            // The only huge-page directories were refused: say which and why.
            (None, Some(r)) if huge == HugePages::Require => {
                return Err(Error::DirectoryRefused {
                    path: r.path.clone(),
                    problem: r.problem,
                })
            }
            (None, Some(r)) => {
                let why = format!(
                    "the huge-page directory {} is not used: {}",
                    r.path.display(),
                    r.problem
                );
                return Ok(fallback(target, why));
            }
            (None, None) if huge == HugePages::Require => {
                return Err(Error::HugePagesUnavailable {
                    name: label.to_string(),
                    missing: NO_HUGE_DIR.to_string(),
                })
            }
            (None, None) => return Ok(fallback(target, NO_HUGE_DIR.to_string())),
        },
    };
    Ok(Place {
        dir: Some(dir.clone()),
        huge_memfd: false,
        backing: dir.backing.clone(),
    })
}

/// Why a named segment could not get huge pages when no directory offers them.
const NO_HUGE_DIR: &str = "the namespace has no huge-page directory (a writable 2 MiB hugetlbfs \
     mount or a tmpfs mounted huge=always/within_size, found in /proc/self/mountinfo or named by \
     $SHMARRAY_HUGE_DIR); `shmarray doctor` says how to make one";

/// The ordinary place, for `Prefer` when huge pages could not be had.
fn fallback(target: Target<'_>, reason: String) -> Place {
    let dir = match target {
        Target::Named(ns, _) => Some(ns.primary().clone()),
        Target::Anonymous => None,
    };
    let mut backing = dir
        .as_ref()
        .map_or_else(Backing::base, |d| d.backing.clone());
    backing.fallback = Some(reason);
    Place {
        dir,
        huge_memfd: false,
        backing,
    }
}

/// Steps 1–3a: the header for `place`'s pages, a new file there, its liveness locks
/// and its whole size reserved. On failure nothing is left behind.
fn reserve(spec: &Spec<'_>, place: Place, label: &str) -> std::result::Result<Reserved, Failed> {
    let (file, temp) = match &place.dir {
        Some(d) => new_file(&d.dir).map_err(|e| map_errno("create", label, e))?,
        None => match fs::memfd("shmarray", place.huge_memfd) {
            Ok(f) => (f, None),
            Err(e) if place.huge_memfd => {
                let why = format!("memfd_create(MFD_HUGETLB) failed: {e}");
                return Err(Failed::Huge {
                    error: Error::HugePagesUnavailable {
                        name: label.to_string(),
                        missing: why.clone(),
                    },
                    reason: why,
                });
            }
            Err(e) => return Err(Error::io("memfd_create", label, e).into()),
        },
    };
    let mut place = place;
    let fallback = place.backing.fallback.take();
    place.backing = file_backing(&file, place.dir.as_ref().map(|d| &d.backing));
    place.backing.fallback = fallback;
    let remove_temp = || {
        if let (Some(d), Some(t)) = (&place.dir, &temp) {
            let _ = d.dir.unlink(t);
        }
    };
    // Huge pages: a compact header, so that numpy maps the file from offset 0 (see
    // `Backing::header_align`).
    let align = place.backing.header_align();
    let overflow = || Error::ShapeOverflow {
        shape: spec.shape.to_vec(),
        itemsize: spec.descr.itemsize().unwrap_or(0),
    };
    let (header, layout) = match build_header_aligned(&spec.descr, spec.fortran, spec.shape, align)
    {
        Ok(h) => h,
        Err(e) => {
            remove_temp();
            return Err(match e {
                HeaderError::Overflow { shape, itemsize } => {
                    Error::ShapeOverflow { shape, itemsize }
                }
                HeaderError::TooManyDimensions { ndim, max } => {
                    Error::TooManyDimensions { ndim, max }
                }
                _ => overflow(),
            }
            .into());
        }
    };
    let Some(mapped) = place.backing.map_len(layout.total_len()) else {
        remove_temp();
        return Err(overflow().into());
    };
    liveness::hold_handle(&file);
    liveness::hold_creator(&file);
    match fs::reserve(&file, mapped as u64) {
        Ok(()) => {}
        Err(e @ (Errno::ENOSPC | Errno::EFBIG | Errno::ENOMEM)) => {
            remove_temp();
            let error = Error::NoSpace {
                name: label.to_string(),
                requested: mapped as u64,
            };
            if place.backing.kind != PageKind::HugeTlb || e == Errno::EFBIG {
                return Err(error.into());
            }
            return Err(Failed::Huge {
                error,
                reason: pool_shortage(&place.backing, mapped),
            });
        }
        Err(e) => {
            remove_temp();
            return Err(map_errno("fallocate", label, e).into());
        }
    }
    Ok(Reserved {
        file,
        temp,
        place,
        header,
        layout,
        mapped,
    })
}

/// Why a hugetlb reservation of `bytes` failed, for people.
fn pool_shortage(backing: &Backing, bytes: usize) -> String {
    let need = (bytes as u64).div_ceil(backing.page_size.max(1));
    match huge_page_support().free_pages(backing.page_size) {
        Some(free) => format!(
            "the hugetlb pool of {} pages has {free} free, {need} needed",
            human_size(backing.page_size)
        ),
        None => format!(
            "no hugetlb pool of {} pages could give {need} of them",
            human_size(backing.page_size)
        ),
    }
}

/// A name must mean one segment in the whole namespace: `EEXIST` if a directory
/// other than `dir` has an entry `bare`.
fn taken_elsewhere(ns: &Namespace, dir: &Arc<NsDir>, bare: &str) -> bool {
    ns.dirs()
        .iter()
        .filter(|d| !Arc::ptr_eq(d, dir))
        .any(|d| !matches!(d.dir.stat(bare), Err(Errno::ENOENT)))
}

/// Creates a segment per the module docs; `init` fills in the object's initial
/// state. On any failure nothing is left behind.
pub(crate) fn create(
    target: Target<'_>,
    spec: &Spec<'_>,
    init: impl FnOnce(&mut Building<'_>) -> Result<()>,
) -> Result<Segment> {
    let label = match target {
        Target::Named(_, name) => check_name(name)?,
        Target::Anonymous => "<anonymous>",
    };
    if spec.shape.len() > MAX_DIMS {
        // Before any syscall (the header build below would refuse it too).
        return Err(Error::TooManyDimensions {
            ndim: spec.shape.len(),
            max: MAX_DIMS,
        });
    }
    let first = choose(target, spec.huge, label)?;
    if let (Target::Named(ns, _), Some(d)) = (target, &first.dir) {
        if taken_elsewhere(ns, d, label) {
            return Err(Error::AlreadyExists {
                name: label.to_string(),
            });
        }
    }
    let r = match reserve(spec, first, label) {
        Ok(r) => r,
        Err(Failed::Huge { reason, .. }) if spec.huge == HugePages::Prefer => {
            match reserve(spec, fallback(target, reason), label) {
                Ok(r) => r,
                Err(Failed::Error(e) | Failed::Huge { error: e, .. }) => return Err(e),
            }
        }
        Err(Failed::Error(e) | Failed::Huge { error: e, .. }) => return Err(e),
    };
    let Reserved {
        file,
        temp,
        place,
        header: hdr,
        layout,
        mapped,
    } = r;
    let mut fields = ControlFields {
        layout_version: LAYOUT_VERSION,
        kind: spec.kind.kind,
        kind_version: spec.kind.version,
        dtype_code: spec.descr.code().unwrap_or(0),
        ndim: u32::try_from(spec.shape.len()).unwrap_or(u32::MAX),
        creator_pid: proc::current_pid(),
        creator_start_time: proc::own_start_time().unwrap_or(0),
        creator_pid_ns: proc::pid_namespace().unwrap_or(0),
        created_unix_ms: proc::now_unix_ms(),
        data_offset: layout.data_offset as u64,
        data_len: layout.data_len as u64,
        params: spec.kind.params,
        checksum: 0,
        state: state::READY,
        flags: if spec.persistent {
            flags::PERSISTENT
        } else {
            0
        },
    };
    fields.checksum = checksum(&hdr[..header_window(hdr.len())], &fields);
    // From here on, a temporary name is ours to remove if anything fails.
    let cleanup = |e: Error| {
        if let (Some(d), Some(t)) = (&place.dir, &temp) {
            let _ = d.dir.unlink(t);
        }
        e
    };
    let map = map_file(&file, mapped, true)
        .map_err(|e| Error::io("mmap", label, e))
        .map_err(cleanup)?;
    let base = map.as_mut_ptr();
    // SAFETY: the mapping is `mapped >= total_len` bytes, writable, zero-filled and
    // private (the file has no name yet, or only a reserved temporary one nobody
    // opens). The header is `data_offset <= total_len` bytes; the control block
    // lies at `control_offset`, page aligned, with `control_offset + CONTROL_SIZE ==
    // total_len`; the data lies between them. The three regions are disjoint.
    let mut building = unsafe {
        std::ptr::copy_nonoverlapping(hdr.as_ptr(), base, hdr.len());
        let block = base.add(layout.control_offset).cast::<ControlBlock>();
        ControlBlock::init(block, &fields);
        Building {
            data: std::slice::from_raw_parts_mut(base.add(layout.data_offset), layout.data_len),
            block,
        }
    };
    init(&mut building).map_err(cleanup)?;
    // The object may have set flags (LOCK_READY) while building: this handle's copy
    // of the control block says so too, as an opener's copy will.
    fields.flags = building
        .block()
        .flags
        .load(std::sync::atomic::Ordering::Acquire);
    let id = fs::fstat(&file)
        .map_err(|e| map_errno("fstat", label, e))
        .map_err(cleanup)?
        .id();
    match (target, &place.dir) {
        (Target::Named(ns, name), Some(d)) => {
            publish(&d.dir, &file, temp.as_deref(), name)?;
            // A creator racing us in an earlier directory wins the name.
            let mut earlier = ns.dirs().iter().take_while(|e| !Arc::ptr_eq(e, d));
            if earlier.any(|e| !matches!(e.dir.stat(label), Err(Errno::ENOENT))) {
                let _ = super::remove::remove_if_same(&d.dir, label, id);
                return Err(Error::AlreadyExists {
                    name: label.to_string(),
                });
            }
        }
        _ => fs::seal_size(&file).map_err(|e| Error::io("seal", label, e))?,
    }
    let desc = Description {
        layout,
        control: Some(fields),
    };
    let mut seg =
        new_segment(file, map, desc, id, true, place.backing).map_err(|why| in_use(label, why))?;
    if let (Target::Named(ns, name), Some(d)) = (target, place.dir) {
        seg.name = Some(name.trim_start_matches('/').to_string());
        seg.ns = Some(ns.clone());
        seg.dir = Some(d);
        seg.owner = !spec.persistent;
    }
    Ok(seg)
}

/// Step 1: an unnamed file, or a file under a fresh temporary name.
fn new_file(dir: &Dir) -> std::result::Result<(std::fs::File, Option<String>), Errno> {
    if unnamed_files_work(dir) {
        if let Ok(f) = dir.create_unnamed() {
            return Ok((f, None));
        }
    }
    loop {
        let temp = temp_name(BUILD_PREFIX);
        match dir.create_exclusive(&temp) {
            Ok(f) => return Ok((f, Some(temp))),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Step 4: gives the complete file its name, exclusively.
fn publish(dir: &Dir, file: &std::fs::File, temp: Option<&str>, name: &str) -> Result<()> {
    let name = name.trim_start_matches('/');
    match temp {
        None => dir
            .link_unnamed(file, name)
            .map_err(|e| map_errno("link", name, e)),
        Some(t) => {
            let linked = dir.link(t, name).map_err(|e| map_errno("link", name, e));
            let _ = dir.unlink(t);
            linked
        }
    }
}

/// Whether this process can create unnamed files in `dir` *and* link them: checked
/// once per directory and process, with a probe file that never shows a name
/// unless the link works (and is removed at once).
fn unnamed_files_work(dir: &Dir) -> bool {
    static WORKS: Mutex<Vec<((u64, u64), bool)>> = Mutex::new(Vec::new());
    if std::env::var(CREATE_ENV).as_deref() == Ok("named") {
        return false;
    }
    let Ok(id) = dir.id() else {
        return false;
    };
    let mut known = WORKS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(&(_, works)) = known.iter().find(|(k, _)| *k == id) {
        return works;
    }
    let works = dir.create_unnamed().is_ok_and(|f| {
        let probe = temp_name(BUILD_PREFIX);
        let linked = dir.link_unnamed(&f, &probe).is_ok();
        if linked {
            let _ = dir.unlink(&probe);
        }
        linked
    });
    known.push((id, works));
    works
}
