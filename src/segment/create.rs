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

use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;

use super::liveness;
use super::name::{check_name, temp_name, BUILD_PREFIX};
use super::open::{in_use, map_file, new_segment};
use super::{map_errno, Namespace, Segment};
use crate::error::{Error, Result};
use crate::format::control::{
    checksum, flags, state, ControlBlock, ControlFields, ObjectKind, LAYOUT_VERSION, PARAMS,
};
use crate::format::describe::Description;
use crate::format::dtype::Dtype;
use crate::format::npy::{build_header, HeaderError};
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
    pub(crate) dtype: Dtype,
    /// Column-major data.
    pub(crate) fortran: bool,
    /// Shape of the NPY header.
    pub(crate) shape: &'a [usize],
    /// Outlives its creating handle.
    pub(crate) persistent: bool,
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
    let (hdr, layout) =
        build_header(spec.dtype, spec.fortran, spec.shape).map_err(|e| match e {
            HeaderError::Overflow { shape, itemsize } => Error::ShapeOverflow { shape, itemsize },
            _ => Error::ShapeOverflow {
                shape: spec.shape.to_vec(),
                itemsize: spec.dtype.size(),
            },
        })?;
    let total = layout.total_len();
    let mut fields = ControlFields {
        layout_version: LAYOUT_VERSION,
        kind: spec.kind.kind,
        kind_version: spec.kind.version,
        dtype_code: spec.dtype.code(),
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
    fields.checksum = checksum(&hdr, &fields);

    let (file, temp) = match target {
        Target::Named(ns, _) => new_file(ns.dir()).map_err(|e| map_errno("create", label, e))?,
        Target::Anonymous => (
            fs::memfd("shmarray").map_err(|e| Error::io("memfd_create", label, e))?,
            None,
        ),
    };
    // From here on, a temporary name is ours to remove if anything fails.
    let cleanup = |e: Error| {
        if let (Target::Named(ns, _), Some(t)) = (target, &temp) {
            let _ = ns.dir().unlink(t);
        }
        e
    };
    liveness::hold_handle(&file);
    liveness::hold_creator(&file);
    fs::reserve(&file, total as u64)
        .map_err(|e| match e {
            Errno::ENOSPC | Errno::EFBIG => Error::NoSpace {
                name: label.to_string(),
                requested: total as u64,
            },
            e => map_errno("fallocate", label, e),
        })
        .map_err(cleanup)?;
    let map = map_file(&file, total, true)
        .map_err(|e| Error::io("mmap", label, e))
        .map_err(cleanup)?;
    let base = map.as_mut_ptr();
    // SAFETY: the mapping is `total` bytes, writable, zero-filled and private (the
    // file has no name yet, or only a reserved temporary one nobody opens). The
    // header is `data_offset <= total` bytes; the control block lies at
    // `control_offset`, page aligned, with `control_offset + CONTROL_SIZE == total`;
    // the data lies between them. The three regions are disjoint.
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
    let id = fs::fstat(&file)
        .map_err(|e| map_errno("fstat", label, e))
        .map_err(cleanup)?
        .id();
    match target {
        Target::Named(ns, name) => publish(ns.dir(), &file, temp.as_deref(), name)?,
        Target::Anonymous => fs::seal_size(&file).map_err(|e| Error::io("seal", label, e))?,
    }
    let desc = Description {
        layout,
        control: Some(fields),
    };
    let mut seg = new_segment(file, map, desc, id, true).map_err(|why| in_use(label, why))?;
    if let Target::Named(ns, name) = target {
        seg.name = Some(name.trim_start_matches('/').to_string());
        seg.ns = Some(ns.clone());
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
