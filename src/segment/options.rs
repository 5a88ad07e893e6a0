//! `Options`: where segments live and how they are created and trusted, for every
//! kind of object; the one builder that creates and opens them all.

use std::fs::File;

use super::handle::{Create, Open};
use super::open::{Expect, Trust};
use super::{HugePages, Namespace};
use crate::error::Result;
use crate::format::control::ObjectKind;
use crate::sys::fs::Access;

/// How segments are created and opened, for every kind of object: directory,
/// memory order, persistence, huge pages, access, and whom to trust. The one
/// builder: set what differs from the defaults, then [`create`](Self::create),
/// [`open`](Self::open), [`create_anonymous`](Self::create_anonymous) or
/// [`from_file`](Self::from_file) any kind (the handle type says which). Each kind's
/// `create(name, ..)` and `open(name)` are these with `Options::new()`.
///
/// ```
/// use shmarray::{ndarray::Ix1, Options, Segment, SharedArray, SharedMap};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let n = |s: &str| format!("doc-opts-{s}-{}", std::process::id());
/// let opts = Options::new().persistent(true); // outlives its creator
/// let frames: SharedArray<f32, Ix1> = opts.create(&n("frames"), 1024)?;
/// let prices = opts.create::<SharedMap<u64, f64>, _>(&n("prices"), 100)?;
/// assert!(frames.is_persistent() && prices.is_persistent());
/// // Elsewhere: open read-only (views work, locks and mutation do not).
/// let seen: SharedArray<f32, Ix1> = Options::new().read_only(true).open(&n("frames"))?;
/// assert!(!seen.is_writable());
/// frames.unlink()?;
/// prices.unlink()?;
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
    /// collected by `shmarray gc`); remove them with
    /// [`Segment::unlink`](crate::Segment::unlink), [`crate::admin::remove`] or
    /// `shmarray rm`.
    pub fn persistent(mut self, persistent: bool) -> Options {
        self.persistent = persistent;
        self
    }

    /// Whether created segments should be on huge pages ([`HugePages::Off`](crate::huge::HugePages::Off) by
    /// default). `Prefer` and `Require` put a named segment in a huge-capable
    /// directory of the namespace (a hugetlbfs or THP tmpfs mount; see
    /// [`Namespace::discover`]) and an anonymous one in an `MFD_HUGETLB` memfd.
    /// Opening needs no option: a name is found in whichever directory holds it,
    /// and [`Backing`](crate::huge::Backing) says what pages a segment got.
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

    /// Creates segment `name` of kind `S` from `args` (see [`Create`] for each
    /// kind's arguments). Creation is exclusive: `AlreadyExists` if the name is
    /// taken (the existing file is left untouched). The creating handle owns the
    /// name (removed when it is dropped) unless the options say
    /// [`persistent`](Self::persistent).
    ///
    /// ```
    /// use shmarray::{ndarray::Ix2, Options, SharedArray, SharedValue};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let n = |s: &str| format!("doc-optcreate-{s}-{}", std::process::id());
    /// let opts = Options::new().order(shmarray::ndarray::Order::ColumnMajor);
    /// let grid: SharedArray<f64, Ix2> = opts.create(&n("grid"), (3, 4))?;
    /// assert!(grid.is_fortran());
    /// let total = Options::new().create::<SharedValue<i64>, _>(&n("total"), 5)?;
    /// assert_eq!(total.get()?, 5);
    /// # Ok(()) }
    /// ```
    pub fn create<S: Create<A>, A>(&self, name: &str, args: A) -> Result<S, S::Error> {
        S::create_segment(self, Some(name), args)
    }

    /// Creates an anonymous segment of kind `S` (a memfd, `MFD_HUGETLB` with huge
    /// pages): no name, sealed against resizing, gone when the last process closes
    /// it. Hand [`file`](crate::Segment::file) to another process, which attaches it
    /// with [`from_file`](Self::from_file). The namespace and persistence do not
    /// apply.
    ///
    /// ```
    /// use shmarray::{ndarray::Ix1, Options, Segment, SharedArray};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let a: SharedArray<u8, Ix1> = Options::new().create_anonymous(4096)?;
    /// a.lock().map_err(shmarray::LockError::into_failure)?.fill(7);
    /// assert_eq!((a.name(), a.path()), (None, None));
    /// // Another process would inherit the descriptor (or open /proc/<pid>/fd/<n>):
    /// let b: SharedArray<u8, Ix1> = Options::new().from_file(a.file().try_clone()?)?;
    /// assert_eq!(b.read().map_err(shmarray::LockError::into_failure)?[4095], 7);
    /// # Ok(()) }
    /// ```
    pub fn create_anonymous<S: Create<A>, A>(&self, args: A) -> Result<S, S::Error> {
        S::create_segment(&self.clone().persistent(false), None, args)
    }

    /// Opens (attaches) segment `name` as kind `S`, checked: the kind recorded in
    /// its control block, and for typed handles the element type and dimensions in
    /// its header, must be `S`'s (else `KindMismatch` / `TypeMismatch`); a file
    /// another user owns, or others may write, is refused unless the options
    /// trust it.
    ///
    /// ```
    /// use shmarray::{Event, Options};
    /// # fn main() -> Result<(), shmarray::Error> {
    /// let name = format!("doc-optopen-{}", std::process::id());
    /// let e = Event::create(&name)?;
    /// let same: Event = Options::new().open(&name)?;
    /// same.set();
    /// assert!(e.is_set());
    /// assert!(matches!(
    ///     Options::new().open::<shmarray::SharedValue<u8>>(&name),
    ///     Err(shmarray::Error::KindMismatch { .. })
    /// ));
    /// # Ok(()) }
    /// ```
    pub fn open<S: Open>(&self, name: &str) -> Result<S, S::Error> {
        S::open_segment(self, name)
    }

    /// Attaches an open segment file as kind `S`, checked as [`open`](Self::open)
    /// checks a name (its mode excepted: a descriptor handed over is reachable
    /// through no directory). The file is opened again through `/proc/self/fd`, so
    /// the handle has its own open file description.
    pub fn from_file<S: Open>(&self, file: File) -> Result<S, S::Error> {
        S::open_file(self, file)
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
