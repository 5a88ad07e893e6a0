//! What every segment handle has ([`Segment`]), and what [`Options`] creates
//! ([`Create`]) and opens ([`Open`]).

use std::fs::File;
use std::path::PathBuf;

use super::{Backing, Mapping, Namespace, Options, SegmentInfo};
use crate::error::{Error, Result};
use crate::format::control::{flags, ControlFields, ObjectKind};

/// Where an [`Open`] handle comes from.
pub(crate) enum Source<'a> {
    /// Segment `name` of the options' namespace.
    Named(&'a str),
    /// An open segment file (an anonymous segment's memfd, handed over).
    File(File),
}

/// Attaches segment `name` of `opts`' namespace, or an open file, expecting `kind`.
pub(crate) fn open_source(opts: &Options, from: Source<'_>, kind: ObjectKind) -> Result<Mapping> {
    let expect = opts.expect(kind);
    match from {
        Source::Named(name) => super::open(&opts.ns()?, name, &expect),
        Source::File(file) => super::from_file(file, "<file>", &expect),
    }
}

pub(crate) mod sealed {
    /// Seals [`Segment`](super::Segment): only this crate's handles implement it.
    /// Its method is how the trait's methods reach the handle's mapping.
    pub trait Sealed {
        /// The handle's mapping.
        fn mapping(&self) -> &crate::segment::Mapping;
        /// The handle's mapping, mutably (for `into_persistent`).
        fn mapping_mut(&mut self) -> &mut crate::segment::Mapping;
    }
}

/// What every segment handle has: its name, file, pages, owner and persistence,
/// whatever object it holds. Implemented by [`SharedArray`](crate::SharedArray),
/// [`SharedValue`](crate::SharedValue), the [atomics](crate::atomic),
/// [`Event`](crate::Event), [`Barrier`](crate::Barrier), [`Queue`](crate::Queue),
/// [`ByteQueue`](crate::ByteQueue), [`SharedMap`](crate::SharedMap),
/// [`BytesMap`](crate::containers::BytesMap) and [`SharedVec`](crate::SharedVec);
/// sealed (no other type can implement it). Bring it into scope to call its
/// methods:
///
/// ```
/// use shmarray::{Event, Segment};
/// # fn main() -> Result<(), shmarray::Error> {
/// let name = format!("doc-segment-{}", std::process::id());
/// let ready = Event::create(&name)?;
/// assert_eq!(ready.name(), Some(name.as_str()));
/// assert!(ready.path().unwrap().ends_with(&name)); // e.g. /dev/shm/<name>
/// assert!(ready.is_owner() && !ready.is_persistent()); // removed when dropped
/// let info = ready.info()?; // what `shmarray inspect` shows
/// assert_eq!(info.kind(), shmarray::format::ObjectKind::Event);
/// # Ok(()) }
/// ```
pub trait Segment: sealed::Sealed {
    /// The error this kind's constructors return: [`Error`] for arrays, values,
    /// atomics and events, a kind's own error type (which converts from [`Error`])
    /// for the others.
    type Error: std::error::Error + From<Error> + Send + Sync + 'static;

    /// The segment name (`None` for an anonymous segment).
    ///
    /// ```
    /// use shmarray::{Segment, SharedValue};
    /// let name = format!("doc-name-{}", std::process::id());
    /// let v = SharedValue::<u32>::create(&name, 7)?;
    /// assert_eq!(v.name(), Some(name.as_str()));
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    fn name(&self) -> Option<&str> {
        self.mapping().name()
    }

    /// The segment file's path (`None` for an anonymous segment): for arrays,
    /// `numpy.load(path, mmap_mode="r+")` maps the same bytes.
    ///
    /// ```
    /// use shmarray::{ndarray::Ix1, Segment, SharedArray};
    /// let name = format!("doc-path-{}", std::process::id());
    /// let a = SharedArray::<f32, Ix1>::create(&name, 8)?;
    /// let path = a.path().unwrap();
    /// assert_eq!(&std::fs::read(&path)?[..6], b"\x93NUMPY"); // a valid .npy file
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn path(&self) -> Option<PathBuf> {
        self.mapping().path()
    }

    /// The namespace the segment was created in or opened from (`None` for an
    /// anonymous segment).
    fn namespace(&self) -> Option<&Namespace> {
        self.mapping().namespace()
    }

    /// The pages behind the segment (base, transparent huge or hugetlb pages, and
    /// their size); for a segment created with
    /// [`HugePages::Prefer`](crate::huge::HugePages::Prefer) that got base pages,
    /// [`Backing::fallback`] says why.
    ///
    /// ```
    /// use shmarray::{huge::PageKind, Segment, SharedVec};
    /// let v = SharedVec::<u64>::create(&format!("doc-backing-{}", std::process::id()), 16)?;
    /// assert_eq!(v.backing().kind, PageKind::Base); // /dev/shm: base pages
    /// # Ok::<(), shmarray::containers::VecError>(())
    /// ```
    fn backing(&self) -> &Backing {
        self.mapping().backing()
    }

    /// This handle's open segment file (its own open file description): for an
    /// anonymous segment, the memfd to hand to another process (inherit it, or open
    /// `/proc/<pid>/fd/<n>`), which attaches with
    /// [`Options::from_file`].
    fn file(&self) -> &File {
        self.mapping().file()
    }

    /// Whether dropping this handle removes the name (the creating handle, unless
    /// made persistent).
    fn is_owner(&self) -> bool {
        self.mapping().is_owner()
    }

    /// Whether the segment is marked persistent (created with
    /// [`Options::persistent`] or kept with
    /// [`into_persistent`](Self::into_persistent)): nobody removes it on drop and
    /// `shmarray gc` leaves it alone.
    fn is_persistent(&self) -> bool {
        self.mapping().flags() & flags::PERSISTENT != 0
    }

    /// Whether the mapping is writable (not opened with
    /// [`Options::read_only`]).
    fn is_writable(&self) -> bool {
        self.mapping().is_writable()
    }

    /// A copy of the control block as read at attach, with the current flags
    /// (`None` for a plain `.npy` file opened as an array).
    fn control(&self) -> Option<ControlFields> {
        let m = self.mapping();
        m.control().map(|c| ControlFields {
            flags: m.flags(),
            ..*c
        })
    }

    /// What [`admin::inspect`](crate::admin::inspect) (and `shmarray inspect`)
    /// says about this handle's segment: its kind, layout, creator, whether others
    /// have it open, a map's or vec's occupancy. Read from this handle's file with
    /// `pread` (the name may since have been removed or re-created).
    ///
    /// ```
    /// use shmarray::{admin::Usage, Segment, SharedMap};
    /// let m = SharedMap::<u64, f64>::create(&format!("doc-info-{}", std::process::id()), 100)?;
    /// m.insert(1, 0.5)?;
    /// let info = m.info()?;
    /// assert_eq!(info.usage, Usage::InUse); // this handle has it open
    /// assert_eq!(info.contents.unwrap().occupancy(), (1, 100));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn info(&self) -> Result<SegmentInfo> {
        super::inspect::inspect_mapping(self.mapping())
    }

    /// Removes the name now: handles already open (here and in other processes)
    /// keep working, new opens fail with `NotFound`. A name since re-created by
    /// someone else is left alone.
    ///
    /// ```
    /// use shmarray::{Error, Event, Segment};
    /// let name = format!("doc-unlink-{}", std::process::id());
    /// let e = Event::create(&name)?;
    /// e.unlink()?;
    /// assert!(matches!(Event::open(&name), Err(Error::NotFound { .. })));
    /// e.set(); // still works
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    fn unlink(&self) -> Result<()> {
        self.mapping().unlink()
    }

    /// Keeps the segment after this handle is dropped and marks it persistent (so
    /// `shmarray gc` leaves it alone); remove it with [`unlink`](Self::unlink),
    /// [`admin::remove`](crate::admin::remove) or `shmarray rm`.
    ///
    /// ```
    /// use shmarray::{Segment, SharedValue};
    /// let name = format!("doc-persist-{}", std::process::id());
    /// let v = SharedValue::<f64>::create(&name, 1.5)?.into_persistent();
    /// assert!(v.is_persistent() && !v.is_owner());
    /// drop(v);
    /// let again = SharedValue::<f64>::open(&name)?; // still there
    /// again.unlink()?;
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    fn into_persistent(mut self) -> Self
    where
        Self: Sized,
    {
        self.mapping_mut().persist();
        self
    }
}

/// A kind of segment [`Options::create`] makes from arguments `A`: a shape for
/// [`SharedArray`](crate::SharedArray), the initial value for
/// [`SharedValue`](crate::SharedValue) and the atomics, `()` for
/// [`Event`](crate::Event), the number of parties for [`Barrier`](crate::Barrier),
/// the capacity for [`Queue`](crate::Queue), [`SharedMap`](crate::SharedMap) and
/// [`SharedVec`](crate::SharedVec), `(capacity, max_message)` for
/// [`ByteQueue`](crate::ByteQueue), `(key_size, value_size, capacity)` for
/// [`BytesMap`](crate::containers::BytesMap). Sealed.
///
/// ```
/// use shmarray::{ndarray::Ix2, ByteQueue, Event, Options, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let n = |s: &str| format!("doc-create-{s}-{}", std::process::id());
/// let opts = Options::new();
/// let a: SharedArray<f64, Ix2> = opts.create(&n("a"), (4, 4))?;
/// let e: Event = opts.create(&n("e"), ())?;
/// let q: ByteQueue = opts.create(&n("q"), (8, 256))?;
/// assert_eq!((a.len(), e.is_set(), q.max_message()), (16, false, 256));
/// # Ok(()) }
/// ```
pub trait Create<A>: Segment + Sized {
    /// Creates the segment: named (`Some(name)`) in the options' namespace, or
    /// anonymous (`None`). Use [`Options::create`] and
    /// [`Options::create_anonymous`].
    #[doc(hidden)]
    fn create_segment(opts: &Options, name: Option<&str>, args: A) -> Result<Self, Self::Error>;
}

/// A kind of segment [`Options::open`] attaches: every handle type; the kind and
/// (for typed handles) the element type are checked against the segment's header
/// and control block. Sealed.
///
/// ```
/// use shmarray::{Error, Event, Options, SharedValue};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-open-{}", std::process::id());
/// let _made = SharedValue::<f64>::create(&name, 1.5)?;
/// let opts = Options::new();
/// let v: SharedValue<f64> = opts.open(&name)?;
/// assert_eq!(v.get().unwrap(), 1.5);
/// // The kind is checked: a value is not an event.
/// assert!(matches!(opts.open::<Event>(&name), Err(Error::KindMismatch { .. })));
/// # Ok(()) }
/// ```
pub trait Open: Segment + Sized {
    /// Attaches segment `name` of the options' namespace. Use [`Options::open`].
    #[doc(hidden)]
    fn open_segment(opts: &Options, name: &str) -> Result<Self, Self::Error>;

    /// Attaches an open segment file. Use [`Options::from_file`].
    #[doc(hidden)]
    fn open_file(opts: &Options, file: File) -> Result<Self, Self::Error>;
}
