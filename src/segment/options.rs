//! `Options`: where segments live and how they are created and trusted, for every
//! kind of object.

use super::open::{Expect, Trust};
use super::{HugePages, Namespace};
use crate::error::Result;
use crate::format::control::ObjectKind;
use crate::sys::fs::Access;

/// Options for creating and opening any named object (arrays, values, atomics,
/// events, barriers, queues): directory, memory order, persistence, access, and
/// whom to trust.
///
/// ```no_run
/// use shmarray::{Namespace, Options, SharedArray};
/// # fn main() -> Result<(), shmarray::Error> {
/// let opts = Options::new().namespace(Namespace::at("/dev/shm")?).persistent(true);
/// let a = SharedArray::<f32, ndarray::Ix1>::create_with(&opts, "frames", 1024)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Options {
    ns: Option<Namespace>,
    pub(crate) fortran: bool,
    pub(crate) persistent: bool,
    pub(crate) huge: HugePages,
    read_only: bool,
    trust: Trust,
}

impl Options {
    /// Default options: `/dev/shm` (or `$SHMARRAY_DIR`), C order, owned by the
    /// creating handle, read-write, only this user's files trusted.
    pub fn new() -> Options {
        Options::default()
    }

    /// Use segments in `ns` instead of the default directory.
    pub fn namespace(mut self, ns: Namespace) -> Options {
        self.ns = Some(ns);
        self
    }

    /// Memory order of created arrays (row-major C order by default).
    pub fn order(mut self, order: ndarray::Order) -> Options {
        self.fortran = order.is_column_major();
        self
    }

    /// Created segments outlive the creating handle (not removed on drop, never
    /// collected by `shmarray gc`); remove them with [`crate::remove`] or
    /// `shmarray rm`.
    pub fn persistent(mut self, persistent: bool) -> Options {
        self.persistent = persistent;
        self
    }

    /// Whether created segments should be on huge pages ([`HugePages::Off`] by
    /// default). `Prefer` and `Require` put a named segment in a huge-capable
    /// directory of the namespace (a hugetlbfs or THP tmpfs mount; see
    /// [`Namespace::discover`]) and an anonymous one in an `MFD_HUGETLB` memfd.
    /// Opening needs no option: a name is found in whichever directory holds it,
    /// and [`Backing`](crate::Backing) says what pages a segment got.
    pub fn huge_pages(mut self, huge: HugePages) -> Options {
        self.huge = huge;
        self
    }

    /// Open read-only (`O_RDONLY`, `PROT_READ`): views work; mutation, locking,
    /// queues and barriers do not.
    pub fn read_only(mut self, read_only: bool) -> Options {
        self.read_only = read_only;
        self
    }

    /// Also accept segments owned by user `uid` (by default only files of this
    /// process's effective uid are opened: another user's file could hold forged
    /// data and a forged lock). A name held by a trusted owner counts as this
    /// user's in lookups (two such files are `DuplicateName`).
    ///
    /// Files only: directories owned by `uid` are still refused (see
    /// [`Namespace`]'s "every directory, the same rule"; share segments through a
    /// root-owned sticky directory such as `/dev/shm`).
    pub fn trust_owner(mut self, uid: u32) -> Options {
        self.trust.owners.push(uid);
        self
    }

    /// Accept files that their group or others may write (mode `g+w`/`o+w`). By
    /// default they are refused with [`crate::Error::InsecureMode`]: somebody else
    /// could rewrite such a file under us. Allow it for deliberate multi-user setups
    /// where the group is trusted.
    pub fn allow_shared_write(mut self, allow: bool) -> Options {
        self.trust.shared_write = allow;
        self
    }

    /// The namespace to use.
    pub(crate) fn ns(&self) -> Result<Namespace> {
        match &self.ns {
            Some(ns) => Ok(ns.clone()),
            None => Namespace::default_dir(),
        }
    }

    /// What `open` should check for an object of `kind`.
    pub(crate) fn expect(&self, kind: ObjectKind) -> Expect {
        Expect {
            kind,
            access: if self.read_only {
                Access::Read
            } else {
                Access::ReadWrite
            },
            trust: self.trust.clone(),
        }
    }
}
