//! `SharedArray<T, D>`: a typed ndarray over a segment (see the type's docs for
//! the access rules in one process and across processes).

use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use ndarray::{
    ArrayBase, ArrayView, ArrayViewMut, Data, Dimension, IntoDimension, IxDyn, ShapeBuilder,
};

use crate::element::Element;
use crate::error::{Error, Result};
use crate::format::control::{flags, ObjectKind, COUNTERS, MUTEX_OFFSET};
use crate::format::descr::Descr;
use crate::format::dtype::Dtype;
use crate::format::Corruption;
use crate::segment::handle::sealed;
use crate::segment::{
    self, Create, KindSpec, Mapping, Open, Options, Segment, Source, Spec, Target,
};
use crate::sync::{
    check_mutex_in_file, ArrayGuard, ArrayReadGuard, BadMutex, LockError, LockFailure, LockResult,
    RawRobustMutex, ReadResult, RwLockState, Wait, WriteToken,
};
use crate::sys::mman::Populate;

/// A typed, n-dimensional array in a shared-memory segment.
///
/// # Who may look at the data, and how
/// In one process, safe code can never hold a shared and a mutable reference (or
/// view) of the same elements:
/// - [`SharedArray::lock`] (`&self`) hands out a guard that derefs to
///   `ArrayViewMut`: the robust lock excludes every other locker, in every thread
///   and process, as `lock_api::Mutex` owns its data;
/// - [`SharedArray::view`] and [`SharedArray::view_mut`] take `&mut self`: the
///   borrow checker excludes every other use of the handle, and the handle must be
///   the only one of its segment in this process (see [`Error::InUse`]);
/// - `view_unchecked` / `view_mut_unchecked` are `unsafe`: the caller promises the
///   exclusivity the compiler cannot see (the pool's disjoint parts).
///
/// # What other processes can do
/// The compiler cannot see other processes. The contract is memmap2's for files
/// another process may modify: every view is in bounds of a mapping that lives as
/// long as the borrow, aligned, of the element type and shape the header declares
/// (checked at attach), and `T: Pod` means any bytes another process writes are a
/// valid `T`. But a process writing the same elements without the lock, while this
/// one reads them through a view, races like two C programs would: values may be
/// torn or stale (never invalid, never out of bounds). Coordinate with `lock()`, or
/// with disjoint parts as the pool does. A process of the same user that shrinks a
/// named segment file under a mapping makes touching the lost pages raise `SIGBUS`;
/// anonymous (memfd) segments are sealed against that.
///
/// ```no_run
/// use shmarray::{ndarray::Ix2, LockResultExt, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // process A: create (the name is removed when `frames` is dropped)
/// let mut frames = SharedArray::<f64, Ix2>::create("frames", (1024, 1024))?;
/// frames.view_mut()?.fill(1.0);
///
/// // process B: attach by name, checked against the header, and update under the
/// // lock (if a previous holder died mid-update, reset the array, then go on)
/// let frames = SharedArray::<f64, Ix2>::open("frames")?;
/// let mut g = frames.lock().recover(|g| g.fill(0.0))?;
/// g[[0, 0]] += 1.0;
/// # Ok(()) }
/// ```
///
/// # Threads
/// `Send + Sync`: share one handle between threads (`&` or `Arc`); the lock and
/// the read-write lock work between threads as between processes.
pub struct SharedArray<T: Element, D: Dimension> {
    /// The lock, if it can be used through this handle (see `lock_usable`).
    /// Declared before `seg`: it leaves the reader table on drop, while the
    /// mapping is still there.
    rw: Option<RwLockState>,
    /// Why the lock is refused although the creator initialised it: its mutex,
    /// validated at attach, is not one this library makes (with its file offset).
    bad_lock: Option<(BadMutex, u64)>,
    seg: Mapping,
    dim: D,
    _elem: PhantomData<T>,
}

impl<T: Element, D: Dimension> Drop for SharedArray<T, D> {
    fn drop(&mut self) {
        // A leaked (`mem::forget`) write guard may still hold the mutex, which is
        // then on its thread's robust list: the mapping must outlive this handle.
        if self.rw.as_ref().is_some_and(RwLockState::leaked_writes) {
            self.seg.keep_mapped();
        }
    }
}

// SAFETY: the handle owns its mapping (valid in any thread); moving it to another
// thread moves the only ways to reach the data (`&mut self` views, the lock).
unsafe impl<T: Element, D: Dimension> Send for SharedArray<T, D> {}
// SAFETY: through `&SharedArray` a thread can only take the lock (which excludes
// every other holder), read counters (atomics) and metadata; views need `&mut self`
// or `unsafe`.
unsafe impl<T: Element, D: Dimension> Sync for SharedArray<T, D> {}

impl<T: Element, D: Dimension> SharedArray<T, D> {
    /// Creates a zero-filled array `name` in `/dev/shm` (or `$SHMARRAY_DIR`), owned by
    /// this handle: the name is removed when it is dropped. Fails with
    /// `AlreadyExists` (leaving the existing file untouched) if the name is taken.
    /// [`Options::create`] creates with other options.
    ///
    /// ```
    /// use shmarray::{ndarray::Ix2, SharedArray};
    /// let name = format!("doc-array-create-{}", std::process::id());
    /// let mut a = SharedArray::<f64, Ix2>::create(&name, (2, 3))?;
    /// assert_eq!(a.shape(), &[2, 3]);
    /// assert_eq!(a.view()?.sum(), 0.0);
    /// assert!(matches!(
    ///     SharedArray::<f64, Ix2>::create(&name, (2, 3)),
    ///     Err(shmarray::Error::AlreadyExists { .. })
    /// ));
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    pub fn create(name: &str, shape: impl IntoDimension<Dim = D>) -> Result<Self> {
        Options::new().create(name, shape)
    }

    /// Creates an array `name` holding a copy of `array` (the one copy in);
    /// [`Options::create_from`] creates with other options.
    ///
    /// ```
    /// use shmarray::{ndarray::array, SharedArray};
    /// let name = format!("doc-create-from-{}", std::process::id());
    /// let mut a = SharedArray::create_from(&name, &array![[1.0, 2.0], [3.0, 4.0]])?;
    /// assert_eq!(a.view()?[[1, 0]], 3.0);
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    pub fn create_from<S: Data<Elem = T>>(name: &str, array: &ArrayBase<S, D>) -> Result<Self> {
        Options::new().create_from(name, array)
    }

    /// Creates an anonymous (memfd) array: no name, sealed against resizing, gone
    /// when the last process closes it. Share it through
    /// [`file`](crate::Segment::file) and [`from_file`](Self::from_file);
    /// [`Options::create_anonymous`] creates with other options (huge pages:
    /// `MFD_HUGETLB`).
    ///
    /// ```
    /// use shmarray::{ndarray::Ix1, Segment, SharedArray};
    /// let a = SharedArray::<u32, Ix1>::create_anonymous(100)?;
    /// assert!(a.name().is_none() && a.len() == 100);
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    pub fn create_anonymous(shape: impl IntoDimension<Dim = D>) -> Result<Self> {
        Options::new().create_anonymous(shape)
    }

    /// Opens (attaches) array `name`, read-write, checked against `T` and `D`
    /// (`TypeMismatch` otherwise); [`Options::open`] opens with other options
    /// (read-only, another directory, trusted owners).
    ///
    /// ```
    /// use shmarray::{ndarray::{Ix1, Ix2}, Error, SharedArray};
    /// let name = format!("doc-array-open-{}", std::process::id());
    /// let a = SharedArray::<i32, Ix1>::create(&name, 10)?;
    /// let b = SharedArray::<i32, Ix1>::open(&name)?; // e.g. in another process
    /// assert_eq!(b.len(), 10);
    /// assert!(matches!(SharedArray::<f64, Ix1>::open(&name), Err(Error::TypeMismatch { .. })));
    /// assert!(matches!(SharedArray::<i32, Ix2>::open(&name), Err(Error::TypeMismatch { .. })));
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Self> {
        Options::new().open(name)
    }

    /// Attaches an open segment file, e.g. an anonymous array's memfd inherited from
    /// a parent or opened through `/proc/<pid>/fd/<n>`; [`Options::from_file`]
    /// attaches with other options.
    pub fn from_file(file: File) -> Result<Self> {
        Options::new().from_file(file)
    }

    /// Creates a segment of `kind` holding a `T` array of `shape`, zero-filled:
    /// named (`Some`) in the options' namespace, or anonymous.
    pub(crate) fn create_named_or_anonymous(
        opts: &Options,
        name: Option<&str>,
        kind: KindSpec,
        shape: &[usize],
        init: impl FnOnce(&mut ArrayViewMut<'_, T, D>),
    ) -> Result<Self> {
        let ns;
        let target = match name {
            Some(name) => {
                ns = opts.ns()?;
                Target::Named(&ns, name)
            }
            None => Target::Anonymous,
        };
        Self::create_kind(target, kind, opts, shape, init)
    }

    /// Creates a segment of `kind` holding a `T` array of `shape`: its lock
    /// initialised and its data set by `init` before anyone can see it.
    pub(crate) fn create_kind(
        target: Target<'_>,
        kind: KindSpec,
        opts: &Options,
        shape: &[usize],
        init: impl FnOnce(&mut ArrayViewMut<'_, T, D>),
    ) -> Result<Self> {
        Self::create_descr(target, kind, opts, T::DTYPE.descr(), shape, shape, init)
    }

    /// Creates a segment of `kind` whose header holds `shape` elements of `descr`,
    /// seen as a `T` array of `view_shape` (the same shape, or for a byte view the
    /// shape with the element's bytes as one more axis).
    fn create_descr(
        target: Target<'_>,
        kind: KindSpec,
        opts: &Options,
        descr: Descr,
        shape: &[usize],
        view_shape: &[usize],
        init: impl FnOnce(&mut ArrayViewMut<'_, T, D>),
    ) -> Result<Self> {
        let bytes = view_shape.len() != shape.len();
        let spec = Spec {
            kind,
            descr,
            fortran: opts.fortran,
            shape,
            persistent: opts.persistent,
            huge: opts.huge,
        };
        let dim = D::from_dimension(&IxDyn(view_shape)).ok_or_else(|| Error::ShapeOverflow {
            shape: shape.to_vec(),
            itemsize: T::DTYPE.size(),
        })?;
        let seg = segment::create(target, &spec, |b| {
            // SAFETY: nobody can see the segment yet.
            if unsafe { RawRobustMutex::init_in_slot(&b.block().lock) }.is_ok() {
                b.block().set_flags(flags::LOCK_READY);
            }
            let data: &mut [T] = bytemuck::try_cast_slice_mut(b.data).map_err(|_| {
                Error::corrupt(
                    "<new>",
                    Corruption::Misaligned {
                        offset: 0,
                        align: std::mem::align_of::<T>(),
                    },
                )
            })?;
            let mut view = ArrayViewMut::from_shape(dim.clone().set_f(opts.fortran), data)
                .map_err(|_| Error::ShapeOverflow {
                    shape: shape.to_vec(),
                    itemsize: T::DTYPE.size(),
                })?;
            init(&mut view);
            Ok(())
        })?;
        Self::from_segment_as(seg, bytes)
    }

    /// Opens segment `name` (or an open file) of `kind` as a `T` array.
    pub(crate) fn open_kind(opts: &Options, from: Source<'_>, kind: ObjectKind) -> Result<Self> {
        Self::from_segment(segment::open_source(opts, from, kind)?)
    }

    /// Checks that an attached segment holds `T` with `D`'s number of dimensions.
    fn from_segment(seg: Mapping) -> Result<Self> {
        Self::from_segment_as(seg, false)
    }

    /// [`from_segment`](Self::from_segment), or with `bytes` a byte view of any
    /// element type whose size is known (`T` is `u8` then: see `open_bytes`).
    fn from_segment_as(seg: Mapping, bytes: bool) -> Result<Self> {
        let layout = seg.layout();
        let name = seg.label();
        let expected = || match D::NDIM {
            Some(n) => format!("{} ({}) with {n} dimension(s)", T::DTYPE, T::DTYPE.descr()),
            None => format!("{} ({})", T::DTYPE, T::DTYPE.descr()),
        };
        let found = || {
            format!(
                "{} with shape {:?}",
                layout.header.descr.literal(),
                layout.header.shape
            )
        };
        let mismatch = || Error::TypeMismatch {
            name: name.to_string(),
            expected: expected(),
            found: found(),
        };
        // A record's fields (names, types, shapes, offsets, order, size) are
        // compared with the header's, however its padding is spelled.
        let dim = if bytes {
            let view_shape = layout
                .header
                .descr
                .itemsize()
                .filter(|&n| n > 0 && T::DTYPE == Dtype::U8)
                .map(|n| byte_view_shape(&layout.header.shape, n, layout.header.fortran_order))
                .ok_or_else(|| Error::TypeMismatch {
                    name: name.to_string(),
                    expected: "elements of a known size".to_string(),
                    found: found(),
                })?;
            D::from_dimension(&IxDyn(&view_shape)).ok_or_else(mismatch)?
        } else {
            if !layout.header.descr.matches(T::DTYPE) {
                return Err(mismatch());
            }
            D::from_dimension(&IxDyn(&layout.header.shape)).ok_or_else(mismatch)?
        };
        if !(seg.data_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
            return Err(Error::corrupt(
                name,
                Corruption::Misaligned {
                    offset: layout.data_offset,
                    align: std::mem::align_of::<T>(),
                },
            ));
        }
        let mut bad_lock = None;
        let usable = Self::lock_usable(&seg) && {
            // The flag is outside the checksum, and the mutex's bytes are anyone's
            // to write: check that they are a mutex this library made before
            // glibc ever sees them (read with `pread`, like everything at attach).
            let at = (seg.layout().control_offset + MUTEX_OFFSET) as u64;
            match check_mutex_in_file(seg.file(), at) {
                Ok(()) => true,
                Err(bad) => {
                    bad_lock = Some((bad, at));
                    false
                }
            }
        };
        let rw = match (usable, seg.lock_slot(), seg.rw_slots()) {
            (true, Some(slot), Some((rw, readers))) => {
                // SAFETY: `lock_usable` says the creator initialised the mutex
                // (LOCK_READY is set before publication), and its type word is the
                // one initialisation writes (checked just above); the slots lie in
                // the mapping, and the file is the segment's, both of which outlive
                // `rw` (dropped first, see the field order).
                Some(unsafe {
                    RwLockState::new(
                        RawRobustMutex::in_slot(slot),
                        rw,
                        readers,
                        seg.file_id(),
                        seg.file(),
                    )
                })
            }
            _ => None,
        };
        Ok(SharedArray {
            rw,
            bad_lock,
            seg,
            dim,
            _elem: PhantomData,
        })
    }

    #[inline]
    pub(crate) fn data_ptr(&self) -> *mut T {
        self.seg.data_ptr().cast::<T>()
    }

    #[inline]
    fn shape_spec(&self) -> ndarray::Shape<D> {
        self.dim
            .clone()
            .set_f(self.seg.layout().header.fortran_order)
    }

    /// A read-only view of the whole array. Needs `&mut self`, and this handle must
    /// be the only one of its segment in this process (else [`Error::InUse`]); the
    /// first call claims the segment for this handle until it is dropped. Use
    /// [`lock`](Self::lock) to share one handle between threads.
    ///
    /// A view and a lock guard of one handle never coexist; this does not compile:
    /// ```compile_fail,E0502
    /// use shmarray::{ndarray::Ix1, SharedArray};
    /// let mut a = SharedArray::<f64, Ix1>::create("doc-view-lock", 4).unwrap();
    /// let v = a.view().unwrap();
    /// let g = a.lock();
    /// drop(g);
    /// let _ = &v;
    /// ```
    /// while the same steps with the guard dropped before the view is taken do:
    /// ```no_run
    /// use shmarray::{ndarray::Ix1, SharedArray};
    /// let mut a = SharedArray::<f64, Ix1>::create("doc-view-lock", 4).unwrap();
    /// let g = a.lock();
    /// drop(g);
    /// let v = a.view().unwrap();
    /// let _ = &v;
    /// ```
    #[inline]
    pub fn view(&mut self) -> Result<ArrayView<'_, T, D>> {
        self.seg.claim_direct()?;
        // SAFETY: `&mut self` rules out every other use of this handle while the view
        // lives, and the claim rules out other handles of the file in this process,
        // so no mutable view of these elements exists in this process; bounds,
        // alignment and shape were checked at attach.
        Ok(unsafe { self.view_unchecked() })
    }

    /// A mutable view of the whole array: as [`view`](Self::view), and `ReadOnly`
    /// for arrays opened read-only. Cross-process exclusivity is a protocol: use
    /// `lock()` or disjoint parts.
    #[inline]
    pub fn view_mut(&mut self) -> Result<ArrayViewMut<'_, T, D>> {
        self.check_writable()?;
        self.seg.claim_direct()?;
        // SAFETY: as for `view`, and the mapping is writable.
        Ok(unsafe { self.view_mut_unchecked() })
    }

    /// A read-only view from a shared reference, for callers that coordinate access
    /// themselves.
    ///
    /// # Safety
    /// For the lifetime of the returned view, no mutable view or lock guard (in this
    /// process) of the same elements may be used.
    #[inline]
    pub unsafe fn view_unchecked(&self) -> ArrayView<'_, T, D> {
        // SAFETY: the pointer is aligned (checked at attach) and points to `len()`
        // elements inside a mapping that lives as long as `&self`, which the header's
        // shape/order describe exactly (a byte view's `dim` is that shape plus the
        // element's bytes: `data_len` bytes, the same extent); the caller rules out
        // mutable aliases.
        unsafe { ArrayView::from_shape_ptr(self.shape_spec(), self.data_ptr()) }
    }

    /// A mutable view from a shared reference, for callers that coordinate access
    /// themselves (e.g. disjoint parts handed to different workers).
    ///
    /// # Safety
    /// - The array must be writable (not opened read-only).
    /// - For the lifetime of the returned view, no other view or lock guard (in this
    ///   process) of the same elements may be used.
    #[inline]
    pub unsafe fn view_mut_unchecked(&self) -> ArrayViewMut<'_, T, D> {
        // SAFETY: the caller upholds writability and exclusivity; bounds, alignment
        // and shape hold as for `view_unchecked`.
        unsafe { ArrayViewMut::from_shape_ptr(self.shape_spec(), self.data_ptr()) }
    }

    /// Populates the page tables of elements `range` of the data (in memory order)
    /// now instead of on first touch (`madvise(MADV_POPULATE_READ/WRITE)`, Linux ≥
    /// 5.14): a kernel that then runs over the range takes no page faults.
    /// `Ok(false)` where the kernel cannot (nothing was done; pages fault in on first
    /// touch as usual). Attaching maps lazily; this is the way to pay the faults
    /// up front, outside a timed region. Never raises `SIGBUS`: a page missing from
    /// a file shrunk under the mapping is an error instead.
    ///
    /// # Examples
    /// ```
    /// use shmarray::{huge::Populate, ndarray::Ix1, SharedArray};
    /// let name = format!("doc-populate-{}", std::process::id());
    /// let a = SharedArray::<f64, Ix1>::create(&name, 1 << 16)?;
    /// let done = a.populate(0..a.len(), Populate::Read)?; // false before Linux 5.14
    /// let _ = done;
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    pub fn populate(&self, range: std::ops::Range<usize>, how: Populate) -> Result<bool> {
        let size = std::mem::size_of::<T>();
        let bytes = range.start.saturating_mul(size)..range.end.saturating_mul(size);
        self.seg.populate(bytes, how)
    }

    fn check_writable(&self) -> Result<()> {
        if self.seg.is_writable() {
            Ok(())
        } else {
            Err(Error::ReadOnly {
                name: self.seg.label().to_string(),
            })
        }
    }

    /// Number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.seg.layout().len
    }

    /// Whether the array has no elements.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape, as the header says (a byte view's [`raw_dim`](Self::raw_dim) has
    /// one more axis).
    #[inline]
    pub fn shape(&self) -> &[usize] {
        &self.seg.layout().header.shape
    }

    /// The shape as an ndarray dimension.
    pub fn raw_dim(&self) -> D {
        self.dim.clone()
    }

    /// The element type (`u8` for a byte view: see [`descr`](Self::descr)).
    pub fn dtype(&self) -> Dtype {
        T::DTYPE
    }

    /// The header's element type descriptor: for a record, its fields.
    pub fn descr(&self) -> &Descr {
        &self.seg.layout().header.descr
    }

    /// Whether the data is in column-major (Fortran) order.
    pub fn is_fortran(&self) -> bool {
        self.seg.layout().header.fortran_order
    }

    /// Size of the data in bytes.
    pub fn nbytes(&self) -> usize {
        self.seg.layout().data_len
    }

    /// Device and inode of the segment file (identifies it across renames).
    pub fn file_id(&self) -> (u64, u64) {
        self.seg.file_id()
    }

    /// The array's robust process-shared mutex, if it can be used here.
    /// Whether this handle can use the lock: a control block whose creator
    /// initialised the mutex (LOCK_READY is set before publication, so the copy
    /// taken at attach knows), and a writable mapping. Decided once, at attach.
    /// The copy is read, not the live block: attaching touches no page of the
    /// mapping (a file shrunk under us meanwhile would make that touch a SIGBUS).
    fn lock_usable(seg: &Mapping) -> bool {
        seg.is_writable()
            && seg
                .control()
                .is_some_and(|c| c.flags & flags::LOCK_READY != 0)
            && seg.lock_slot().is_some()
    }

    #[cold]
    fn why_no_lock(&self) -> Error {
        let no_lock = |what| Error::NoControlBlock {
            name: self.seg.label().to_string(),
            what,
        };
        if self.seg.lock_slot().is_none() {
            no_lock("the array lock")
        } else if let Err(e) = self.check_writable() {
            e
        } else {
            no_lock("the array lock (its creator could not initialise a robust mutex)")
        }
    }

    /// The lock, if it can be used through this handle.
    #[inline]
    fn rw(&self) -> Result<&RwLockState, LockFailure> {
        self.rw.as_ref().ok_or_else(|| self.lock_failure())
    }

    /// Why the lock cannot be used through this handle.
    #[cold]
    fn lock_failure(&self) -> LockFailure {
        match self.bad_lock {
            Some((bad, offset)) => bad.failure(self.seg.label(), offset),
            None => LockFailure::Segment(self.why_no_lock()),
        }
    }

    /// The error that makes an object that cannot work without the lock refuse
    /// to open (a vec): a mutex found corrupt at attach.
    pub(crate) fn corrupt_lock(&self) -> Option<Error> {
        match self.bad_lock {
            Some((BadMutex::Corrupt { kind }, offset)) => Some(Error::corrupt(
                self.seg.label(),
                Corruption::Lock { offset, kind },
            )),
            _ => None,
        }
    }

    /// File offset of the data area.
    pub(crate) fn data_file_offset(&self) -> u64 {
        self.seg.layout().data_offset as u64
    }

    #[inline(always)]
    fn write_guard<'a>(
        &'a self,
        r: std::result::Result<WriteToken<'a>, LockError<WriteToken<'a>>>,
    ) -> LockResult<ArrayGuard<'a, T, D>> {
        let wrap = |token| {
            // SAFETY: the lock is held exclusively for the guard's lifetime: every
            // other locker and every reader, in every thread and process, is
            // excluded; plain views need `&mut self` (impossible while `self` is
            // borrowed by the guard) or `unsafe`; the mapping is writable (checked
            // in `mutex`).
            let view = unsafe { self.view_mut_unchecked() };
            ArrayGuard::new(view, token)
        };
        r.map(wrap).map_err(|e| e.map_guard(wrap))
    }

    #[inline(always)]
    fn lock_with(&self, wait: Wait) -> LockResult<ArrayGuard<'_, T, D>> {
        match self.rw() {
            Ok(rw) => self.write_guard(rw.write(wait)),
            Err(e) => Err(LockError::Failed(e)),
        }
    }

    #[inline(always)]
    fn read_with(&self, wait: Wait) -> ReadResult<'_, T, D> {
        let rw = match self.rw() {
            Ok(rw) => rw,
            Err(e) => return Err(LockError::Failed(e)),
        };
        match rw.read(wait) {
            Ok(token) => {
                // SAFETY: a read lock is held for the guard's lifetime: no writer,
                // in any thread or process, holds the lock or can take it; mutable
                // plain views need `&mut self` (impossible while the guard borrows
                // `self`) or `unsafe`.
                let view = unsafe { self.view_unchecked() };
                Ok(ArrayReadGuard::new(view, token))
            }
            Err(e) => Err(self.write_guard(Err(e)).unwrap_err()),
        }
    }

    /// Locks the array exclusively and returns a guard that derefs to the mutable
    /// view. Blocks until the lock is free: no other locker, writer or reader (see
    /// [`read`](Self::read)) holds it, in any thread or process.
    ///
    /// If the previous holder died while holding it, this returns
    /// `Err(LockError::OwnerDied(guard))`: the lock *is* held; check or repair the
    /// data, call [`ArrayGuard::mark_consistent`], then drop the guard. Dropping it
    /// unrepaired makes the lock `NotRecoverable` for everyone. Readers that died
    /// holding a read lock are recovered on the way (see
    /// [`ArrayGuard::recovered_readers`]). `Deadlock` if this thread holds a read
    /// lock of the same array.
    #[inline]
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T, D>> {
        self.lock_with(Wait::Forever)
    }

    /// Like [`lock`](Self::lock), but `Err(WouldBlock)` instead of waiting (for the
    /// lock or for readers to leave).
    pub fn try_lock(&self) -> LockResult<ArrayGuard<'_, T, D>> {
        self.lock_with(Wait::No)
    }

    /// Like [`lock`](Self::lock), but gives up with `Err(Timeout)` after `timeout`
    /// (monotonic clock; any duration is accepted).
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ArrayGuard<'_, T, D>> {
        self.lock_with(Wait::timeout(timeout))
    }

    /// The write side of the read-write lock: the same exclusive lock as
    /// [`lock`](Self::lock), named for symmetry with [`read`](Self::read).
    pub fn write(&self) -> LockResult<ArrayGuard<'_, T, D>> {
        self.lock()
    }

    /// [`write`](Self::write) with a timeout.
    pub fn write_timeout(&self, timeout: Duration) -> LockResult<ArrayGuard<'_, T, D>> {
        self.lock_timeout(timeout)
    }

    /// Takes a read lock and returns a guard that derefs to the read-only view.
    /// Any number of readers, in any thread or process, hold it at once; a writer
    /// ([`lock`](Self::lock)/[`write`](Self::write)) waits for them to leave, and
    /// readers that come after a waiting writer wait for it (no writer starvation).
    ///
    /// A reader killed while holding its read lock is recovered by the next writer
    /// (each handle that reads registers in the lock's reader table, whose liveness
    /// the kernel keeps). If the last *writer* died holding the lock, this returns
    /// `Err(LockError::OwnerDied(write_guard))`: the caller holds the lock
    /// exclusively and must repair the data; [`ArrayGuard::downgrade`] (or
    /// [`LockResultExt::recover`](crate::LockResultExt::recover)) then turns it
    /// into the read guard:
    ///
    /// ```no_run
    /// use shmarray::{ndarray::Ix1, LockResultExt, SharedArray};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let table = SharedArray::<f64, Ix1>::open("table")?;
    /// let r = table.read().recover(|w| w.fill(0.0))?; // a dead writer's half update: reset
    /// println!("sum {}", r.sum());
    /// # Ok(()) }
    /// ```
    ///
    /// A second read through the same handle in the same thread never waits; a read
    /// through a second handle of the same array while a writer waits, or a write
    /// while this thread reads, is `Err(Deadlock)` rather than a hang. At most 56
    /// handles can read one array at a time (`TooManyReaders`).
    #[inline]
    pub fn read(&self) -> ReadResult<'_, T, D> {
        self.read_with(Wait::Forever)
    }

    /// Like [`read`](Self::read), but `Err(WouldBlock)` instead of waiting.
    pub fn try_read(&self) -> ReadResult<'_, T, D> {
        self.read_with(Wait::No)
    }

    /// Like [`read`](Self::read), but gives up with `Err(Timeout)` after `timeout`.
    pub fn read_timeout(&self, timeout: Duration) -> ReadResult<'_, T, D> {
        self.read_with(Wait::timeout(timeout))
    }

    /// The control block's scratch words (a vec's undo record), if it has one.
    pub(crate) fn scratch(&self) -> Option<&[AtomicU64]> {
        self.seg.scratch()
    }

    /// One of the control block's cache-padded atomic counters (`index < 8`), shared
    /// by every process that attaches this array.
    pub fn counter(&self, index: usize) -> Result<&AtomicU64> {
        let counters = self.seg.counters().ok_or_else(|| Error::NoControlBlock {
            name: self.seg.label().to_string(),
            what: "atomic counters",
        })?;
        counters
            .get(index)
            .map(|c| &c.value)
            .ok_or(Error::CounterIndex {
                index,
                count: COUNTERS,
            })
    }
}

/// The shape of a byte view of elements of `itemsize` bytes: one more axis, the
/// element's bytes, last (C order) or first (Fortran order), so that the bytes of
/// one element stay contiguous.
fn byte_view_shape(shape: &[usize], itemsize: usize, fortran: bool) -> Vec<usize> {
    let mut v = Vec::with_capacity(shape.len() + 1);
    if fortran {
        v.push(itemsize);
        v.extend_from_slice(shape);
    } else {
        v.extend_from_slice(shape);
        v.push(itemsize);
    }
    v
}

/// Byte views: arrays of any element type (records declared at run time, by
/// numpy or Python; types this library has no Rust type for), seen as their bytes.
///
/// A byte view of a segment whose header holds `shape` elements of `n` bytes is a
/// `u8` array with the element's bytes as one more axis: `shape + [n]` in C order,
/// `[n] + shape` in Fortran order. [`shape`](SharedArray::shape) stays the
/// header's, [`descr`](SharedArray::descr) says what the bytes mean. Locks,
/// counters and views work as for any array; every byte is a valid `u8`, so the
/// view is sound whatever the bytes.
impl SharedArray<u8, IxDyn> {
    /// Creates a zero-filled array `name` of `shape` elements of `descr` (any
    /// [supported](Descr::is_supported) descriptor: a type string such as `<f8`, or a
    /// record of them, e.g. parsed from numpy's `repr(dtype.descr)`), seen as bytes.
    /// Other programs open it typed (numpy, or a [`record!`](crate::record) type with
    /// the same fields). `TypeMismatch` for a descriptor with types this library
    /// does not map (strings, objects, big-endian numbers).
    /// [`Options::create_bytes`] creates with other options.
    ///
    /// ```
    /// use shmarray::{format::Descr, ndarray::Dimension, SharedArray};
    /// # let name = format!("doc-bytes-{}", std::process::id());
    /// let descr = Descr::from_literal("[('x', '<f4'), ('', '|V4'), ('m', '<f8')]")?;
    /// let a = SharedArray::create_bytes(&name, &descr, &[10])?;
    /// assert_eq!((a.shape(), a.raw_dim().slice()), (&[10][..], &[10, 16][..]));
    /// let b = SharedArray::open_bytes(&name)?;
    /// assert_eq!(b.descr(), &descr);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_bytes(name: &str, descr: &Descr, shape: &[usize]) -> Result<Self> {
        Options::new().create_bytes(name, descr, shape)
    }

    /// Opens array `name` whatever its element type, as a byte view (`TypeMismatch`
    /// only for elements of unknown size, such as numpy object arrays);
    /// [`Options::open_bytes`] opens with other options.
    ///
    /// ```
    /// use shmarray::{ndarray::Ix1, SharedArray};
    /// # let name = format!("doc-open-bytes-{}", std::process::id());
    /// let _a = SharedArray::<u16, Ix1>::create(&name, 3)?;
    /// let b = SharedArray::open_bytes(&name)?;
    /// assert_eq!((b.shape(), b.nbytes(), b.descr().to_string()), (&[3][..], 6, "<u2".to_string()));
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    pub fn open_bytes(name: &str) -> Result<Self> {
        Options::new().open_bytes(name)
    }
}

/// The constructors that only arrays have.
impl Options {
    /// Creates an array `name` holding a copy of `array` (the one copy in), in these
    /// options' memory order; see [`SharedArray::create_from`].
    ///
    /// ```
    /// use shmarray::{ndarray::{arr1, Ix1}, Options, Segment, SharedArray};
    /// let name = format!("doc-opts-create-from-{}", std::process::id());
    /// let a: SharedArray<u8, Ix1> = Options::new()
    ///     .persistent(true)
    ///     .create_from(&name, &arr1(&[1, 2, 3]))?;
    /// assert!(a.is_persistent());
    /// a.unlink()?;
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    pub fn create_from<T: Element, D: Dimension, S: Data<Elem = T>>(
        &self,
        name: &str,
        array: &ArrayBase<S, D>,
    ) -> Result<SharedArray<T, D>> {
        let ns = self.ns()?;
        SharedArray::create_kind(
            Target::Named(&ns, name),
            KindSpec::plain(ObjectKind::Array),
            self,
            array.shape(),
            |dst| dst.assign(array),
        )
    }

    /// Creates a byte view array `name` of `shape` elements of `descr`; see
    /// [`SharedArray::create_bytes`].
    pub fn create_bytes(
        &self,
        name: &str,
        descr: &Descr,
        shape: &[usize],
    ) -> Result<SharedArray<u8, IxDyn>> {
        let itemsize = descr
            .itemsize()
            .filter(|_| descr.is_supported())
            .ok_or_else(|| Error::TypeMismatch {
                name: name.to_string(),
                expected: "element types of this library (numbers, bool, f16, complex, \
                           records of them)"
                    .to_string(),
                found: descr.literal(),
            })?;
        let ns = self.ns()?;
        let view_shape = byte_view_shape(shape, itemsize, self.fortran);
        SharedArray::create_descr(
            Target::Named(&ns, name),
            KindSpec::plain(ObjectKind::Array),
            self,
            descr.clone(),
            shape,
            &view_shape,
            |_| {},
        )
    }

    /// Opens array `name` whatever its element type, as a byte view; see
    /// [`SharedArray::open_bytes`].
    pub fn open_bytes(&self, name: &str) -> Result<SharedArray<u8, IxDyn>> {
        let seg = segment::open_source(self, Source::Named(name), ObjectKind::Array)?;
        SharedArray::from_segment_as(seg, true)
    }
}

impl<T: Element, D: Dimension> sealed::Sealed for SharedArray<T, D> {
    fn mapping(&self) -> &Mapping {
        &self.seg
    }
    fn mapping_mut(&mut self) -> &mut Mapping {
        &mut self.seg
    }
}

impl<T: Element, D: Dimension> Segment for SharedArray<T, D> {
    type Error = Error;
}

impl<T: Element, D: Dimension, Sh: IntoDimension<Dim = D>> Create<Sh> for SharedArray<T, D> {
    fn create_segment(opts: &Options, name: Option<&str>, shape: Sh) -> Result<Self> {
        let dim = shape.into_dimension();
        let kind = KindSpec::plain(ObjectKind::Array);
        Self::create_named_or_anonymous(opts, name, kind, dim.slice(), |_| {})
    }
}

impl<T: Element, D: Dimension> Open for SharedArray<T, D> {
    fn open_segment(opts: &Options, name: &str) -> Result<Self> {
        Self::open_kind(opts, Source::Named(name), ObjectKind::Array)
    }

    fn open_file(opts: &Options, file: File) -> Result<Self> {
        Self::open_kind(opts, Source::File(file), ObjectKind::Array)
    }
}

impl<T: Element, D: Dimension> fmt::Debug for SharedArray<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("name", &self.seg.label())
            .field("dtype", &T::DTYPE)
            .field("shape", &self.shape())
            .field("fortran_order", &self.is_fortran())
            .field("owner", &self.is_owner())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populating_a_file_shrunk_under_the_mapping_is_an_error_not_sigbus() {
        let name = format!("shmarray-unit-{}-populate", std::process::id());
        let n = 1 << 16;
        let a = SharedArray::<f64, ndarray::Ix1>::create(&name, n).unwrap();
        let path = a.path().unwrap();
        for how in [Populate::Read, Populate::Write] {
            assert!(a.populate(0..n, how).unwrap());
            assert!(a.populate(n / 2..n / 2, how).unwrap());
            assert!(matches!(
                a.populate(0..n + 1, how),
                Err(Error::Io { op: "populate", .. })
            ));
        }
        let ro = (Options::new().read_only(true))
            .open::<SharedArray<f64, ndarray::Ix1>>(&name)
            .unwrap();
        assert!(ro.populate(0..n, Populate::Read).unwrap());
        assert!(matches!(
            ro.populate(0..n, Populate::Write),
            Err(Error::ReadOnly { .. })
        ));
        drop(ro);
        // Another process could do this to the file: the data's pages are gone.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(8192)
            .unwrap();
        for how in [Populate::Read, Populate::Write] {
            match a.populate(0..n, how) {
                Err(Error::Corrupt {
                    problem: Corruption::Truncated { actual: 8192, .. },
                    ..
                }) => {}
                other => panic!("{other:?}"),
            }
        }
        // Dropping would touch the control block past the file's end now: keep the
        // mapping (this test process ends soon) and remove the file by hand.
        std::mem::forget(a);
        std::fs::remove_file(path).unwrap();
    }
}
