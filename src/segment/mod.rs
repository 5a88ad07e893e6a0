//! The segment layer under every object: a named file in a shared-memory directory
//! (or an anonymous memfd) in the segment format, mapped into this process.
//!
//! It owns what every kind of object needs and none should redo:
//! - **exclusive creation without half-built names** ([`create`]): the file is built
//!   unnamed (`O_TMPFILE`) and linked to its name only when complete, so a creator
//!   killed at any instant leaves no name behind;
//! - **trusted directories** ([`Namespace`]): every directory is owned by this user
//!   or root, sticky if shared, and opened without following a symlink; a name
//!   means this user's one file across all of them;
//! - **checked attach** ([`open`]): files others control are opened without following
//!   links or blocking, refused unless owned by this user and not writable by others,
//!   read with `pread` and validated before anything is mapped, and checked to be
//!   the kind of object the caller asked for;
//! - **liveness** ([`liveness`]): kernel-released file locks, not pids;
//! - **removal that never takes a live segment** ([`remove`]) and `gc`;
//! - **inspection without mapping** ([`inspect`]);
//! - **one direct-view owner per file per process** ([`registry`]).

mod create;
mod export;
pub(crate) mod handle;
pub(crate) mod huge;
mod inspect;
pub(crate) mod liveness;
pub(crate) mod name;
mod namespace;
mod open;
mod options;
pub(crate) mod registry;
mod remove;

use std::fs::File;
use std::path::PathBuf;

use memmap2::MmapRaw;
use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::format::control::{
    ControlBlock, ControlFields, CounterSlot, LockSlot, ReaderSlots, RwSlot, COUNTERS,
};
use crate::format::describe::Description;
use crate::format::npy::Layout;

pub(crate) use create::{create, KindSpec, Spec, Target};
pub use export::{export_npy, write_npy};
pub(crate) use handle::{open_source, Source};
pub use handle::{Create, Open, Segment};
pub use huge::{
    huge_page_support, Backing, HugeMount, HugePageSupport, HugePages, HugePool, PageKind,
};
pub use inspect::{
    inspect, Contents, MapContents, ReaderInfo, RwLockInfo, SegmentInfo, VecContents,
};
pub use liveness::{Liveness, Usage};
pub(crate) use name::check_name;
pub(crate) use namespace::NsDir;
pub use namespace::{Directory, Namespace, RefusedDirectory, DIR_ENV, HUGE_DIR_ENV};
pub(crate) use open::{from_file, open};
pub use options::Options;
#[cfg(feature = "pool")]
pub(crate) use remove::on_removed;
pub use remove::{collect_garbage, find_garbage, remove, GcReport};

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
        Errno::EISDIR => Error::NotShmarray {
            name,
            reason: "it is a directory",
        },
        // open(2) of a UNIX socket.
        Errno::ENXIO => Error::NotShmarray {
            name,
            reason: "it is a socket or device",
        },
        Errno::ENOSPC | Errno::EFBIG => Error::NoSpace { name, requested: 0 },
        _ => Error::Io {
            op,
            name,
            source: e.into(),
        },
    }
}

/// A mapped segment: one handle of this process (every public handle holds one,
/// and reaches it through [`Segment`]'s seal).
///
/// Holds its own open file description of the file (so its liveness locks are its
/// own), the validated description (copied and checked once at attach; never read
/// from shared memory again) and the mapping.
#[derive(Debug)]
pub struct Mapping {
    /// `None` for anonymous (memfd) segments.
    name: Option<String>,
    ns: Option<Namespace>,
    /// The directory of `ns` the file is in.
    dir: Option<std::sync::Arc<NsDir>>,
    /// The pages behind it.
    backing: Backing,
    file: File,
    /// Unmapped on drop unless `keep_mapped` was called.
    map: std::mem::ManuallyDrop<MmapRaw>,
    /// Leave the mapping in place on drop (a leaked lock guard may still use it).
    keep_mapped: bool,
    desc: Description,
    id: registry::FileId,
    writable: bool,
    owner: bool,
    registration: registry::Registration,
    /// The fork generation when this handle was made: a copy of it in a forked
    /// child did not create the segment and must not remove it on drop.
    fork_generation: u64,
}

impl Mapping {
    /// Base address of the mapping (page aligned).
    #[inline]
    fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The data area: `layout().data_len` bytes at `layout().data_offset`, inside the
    /// mapping, page aligned for segments this crate made (numpy's own files align
    /// to 64).
    #[inline]
    pub(crate) fn data_ptr(&self) -> *mut u8 {
        // SAFETY: `data_offset + data_len <= mapped length`, checked at attach
        // (`describe` against the file size, and the mapping is `mapped_len` long).
        unsafe { self.base().add(self.desc.layout.data_offset) }
    }

    /// The validated layout.
    #[inline]
    pub(crate) fn layout(&self) -> &Layout {
        &self.desc.layout
    }

    /// The validated control block copy (as of attach; `flags` may change since).
    pub(crate) fn control(&self) -> Option<&ControlFields> {
        self.desc.control.as_ref()
    }

    /// The live control block, if there is one.
    fn block(&self) -> Option<&ControlBlock> {
        self.desc.control.as_ref()?;
        // SAFETY: attach checked that a control block lies at `control_offset`, inside
        // the mapping (`total_len <= mapped length`), page aligned. A `ControlBlock`
        // is valid for any bytes: its shared parts are atomics and `UnsafeCell`s, and
        // its immutable prefix is never read through this reference (only copied out
        // of the file at attach). The mapping lives as long as `&self`.
        Some(unsafe {
            &*self
                .base()
                .add(self.desc.layout.control_offset)
                .cast::<ControlBlock>()
        })
    }

    /// The control block's lock slot.
    pub(crate) fn lock_slot(&self) -> Option<&LockSlot> {
        self.block().map(|b| &b.lock)
    }

    /// The control block's read-write lock state and reader table.
    pub(crate) fn rw_slots(&self) -> Option<(&RwSlot, &ReaderSlots)> {
        self.block().map(|b| (&b.rw, &b.readers))
    }

    /// The control block's scratch words.
    pub(crate) fn scratch(&self) -> Option<&[std::sync::atomic::AtomicU64]> {
        self.block().map(|b| &b.scratch[..])
    }

    /// The control block's counters.
    pub(crate) fn counters(&self) -> Option<&[CounterSlot; COUNTERS]> {
        self.block().map(|b| &b.counters)
    }

    /// Current flag bits of the live control block.
    pub(crate) fn flags(&self) -> u32 {
        self.block()
            .map_or(0, |b| b.flags.load(std::sync::atomic::Ordering::Acquire))
    }

    /// The segment name, `None` for anonymous segments.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The name for messages: the name, or `<anonymous>`.
    pub(crate) fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("<anonymous>")
    }

    /// The file path (for numpy), `None` for anonymous segments.
    pub(crate) fn path(&self) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.dir.path().join(self.name.as_ref()?))
    }

    /// The pages behind the segment.
    pub(crate) fn backing(&self) -> &Backing {
        &self.backing
    }

    /// The namespace the segment lives in.
    pub(crate) fn namespace(&self) -> Option<&Namespace> {
        self.ns.as_ref()
    }

    /// Device and inode of the file: identifies the segment even if its name is
    /// removed and re-created.
    pub(crate) fn file_id(&self) -> (u64, u64) {
        self.id
    }

    /// Whether the mapping is writable.
    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    /// Whether dropping this handle removes the name.
    pub(crate) fn is_owner(&self) -> bool {
        self.owner
    }

    /// This handle's open file (its own open file description).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Populates (prefaults) the page tables of data bytes `range` now, so that
    /// touching them later takes no page fault (see `sys::mman`). Returns
    /// `Ok(false)` where the kernel cannot (before Linux 5.14): the pages then fault
    /// in on first touch as always.
    ///
    /// # Errors
    /// [`Error::Corrupt`] (`Truncated`) if the file is now shorter than the range
    /// (another process shrank it: populating reports it, where touching the
    /// pages would have raised `SIGBUS`); [`Error::Io`] for what else the kernel
    /// reports (`ENOMEM`, a range outside the data, ...); [`Error::ReadOnly`] for
    /// `Write` on a read-only mapping.
    pub(crate) fn populate(
        &self,
        range: std::ops::Range<usize>,
        how: crate::sys::mman::Populate,
    ) -> Result<bool> {
        use crate::sys::mman::{populate, Populated};
        let layout = &self.desc.layout;
        let label = self.label();
        if range.start > range.end || range.end > layout.data_len {
            return Err(Error::io("populate", label, Errno::ERANGE));
        }
        if how == crate::sys::mman::Populate::Write && !self.writable {
            return Err(Error::ReadOnly {
                name: label.to_string(),
            });
        }
        let offset = layout.data_offset + range.start;
        match populate(&self.map, offset, range.len(), how) {
            Ok(Populated::Done) => Ok(true),
            Ok(Populated::Unsupported) => Ok(false),
            Err(Errno::EFAULT) => {
                let actual = crate::sys::fs::fstat(&self.file).map_or(0, |i| i.size);
                Err(Error::corrupt(
                    label,
                    crate::format::Corruption::Truncated {
                        needed: (offset + range.len()) as u64,
                        actual,
                    },
                ))
            }
            Err(e) => Err(Error::io("populate", label, e)),
        }
    }

    /// Claims the file for direct views (see [`registry`]).
    pub(crate) fn claim_direct(&mut self) -> Result<()> {
        let name = self.label().to_string();
        self.registration
            .claim()
            .map_err(|why| Error::InUse { name, why })
    }

    /// Keeps the segment after this handle is dropped and marks it persistent (so
    /// `gc` leaves it alone). Needs a writable handle to set the flag.
    pub(crate) fn persist(&mut self) {
        self.owner = false;
        if self.writable {
            if let Some(b) = self.block() {
                b.set_flags(crate::format::control::flags::PERSISTENT);
            }
        }
    }

    /// Removes the name now if it still refers to this segment's file; a name that
    /// was removed and re-created by someone else is left alone. The mapping stays
    /// valid.
    pub(crate) fn unlink(&self) -> Result<()> {
        let (Some(dir), Some(name)) = (&self.dir, &self.name) else {
            return Ok(());
        };
        if remove::remove_if_same(&dir.dir, name, self.id)? {
            remove::removed(self.id);
        }
        Ok(())
    }
}

impl Mapping {
    /// Leaves the mapping in place when this handle is dropped (its address range
    /// stays reserved for the rest of the process): for a handle whose lock guard
    /// was leaked, whose mutex may still be on a thread's robust list.
    pub(crate) fn keep_mapped(&mut self) {
        self.keep_mapped = true;
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.owner && self.fork_generation == crate::sys::proc::fork_generation() {
            let _ = self.unlink();
        }
        if !self.keep_mapped {
            // SAFETY: dropped exactly once, here; the field is not used afterwards.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.map) };
        }
    }
}
