//! `SharedArray<T, D>`: a typed ndarray view over a self-describing segment.
//!
//! # Publishing protocol
//! A creator (1) creates the file exclusively and reserves its size, (2) writes the
//! header bytes after the first eight, (3) writes the control block in state
//! `BUILDING`, (4) initialises the data, (5) stores `READY` into the control block's
//! state (`Release`) and (6) stores the first eight header bytes (`\x93NUMPY` + version)
//! as one `u64` (`Release`). An opener loads those eight bytes (`Acquire`) first:
//! zero means the segment is still being built (`NotReady`); anything but the NPY
//! magic means the file is not ours (`NotShmarray`). After that everything the
//! creator wrote is visible, and immutable.
//!
//! ## Memory ordering
//! Steps 2–5 happen-before step 6 (Release); an opener's Acquire load of the magic
//! synchronises with it, so a non-zero magic implies the header, control block and
//! initial data are visible. The header is copied out of the mapping once and only
//! the copy is validated.
//!
//! # What is and isn't guaranteed when other processes write
//! Guaranteed by this type: every view is in bounds of a mapping that lives as long
//! as the borrow, correctly aligned, of the element type and shape the header
//! declares (checked at open), and `T: Pod` means any bytes another process writes
//! are a valid `T`. Within one process the borrow checker keeps `view_mut` exclusive.
//!
//! Not guaranteed: exclusivity *across* processes. The compiler cannot see other
//! processes; two processes writing the same elements without the segment's lock
//! race like two C programs would: values may be torn or lost (never an invalid
//! `T`, never out of bounds). Coordinate with `lock()`, or with disjoint parts as
//! the pool does. A hostile process of the same user could also `ftruncate` a named
//! segment under a mapping (touching the lost pages raises SIGBUS); anonymous
//! (memfd) segments are sealed against that.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{
    ArrayBase, ArrayView, ArrayViewMut, Data, Dimension, IntoDimension, IxDyn, ShapeBuilder,
};

use crate::element::Element;
use crate::error::{Corruption, Error, Result};
use crate::header::{
    self, fnv1a64, ControlBlock, ControlFields, Dtype, HeaderError, Layout, CONTROL_MAGIC,
    FLAG_LOCK_READY, FLAG_PERSISTENT, LAYOUT_VERSION, NPY_MAGIC,
};
use crate::segment::{Namespace, Segment};
use crate::sync::{LockError, LockResult, RawMutexGuard, RawRobustMutex};
use crate::sys::proc as sys;

/// Memory order of a new array: row-major (C, the default) or column-major (Fortran).
pub use ndarray::Order;

/// Options for creating and opening shared arrays: namespace (directory),
/// memory order, persistence, read-only access.
#[derive(Clone, Debug, Default)]
pub struct Options {
    ns: Option<Namespace>,
    fortran: bool,
    persistent: bool,
    read_only: bool,
}

impl Options {
    /// Default options: `/dev/shm` (or `$SHMARRAY_DIR`), C order, owned, read-write.
    pub fn new() -> Options {
        Options::default()
    }

    /// Use segments in `ns` instead of the default directory.
    pub fn namespace(mut self, ns: Namespace) -> Options {
        self.ns = Some(ns);
        self
    }

    /// Memory order of created arrays.
    pub fn order(mut self, order: Order) -> Options {
        self.fortran = order.is_column_major();
        self
    }

    /// Created segments outlive the creating handle (not unlinked on drop, never
    /// collected by `shmarray gc`); remove them with [`remove`] or `shmarray rm`.
    pub fn persistent(mut self, persistent: bool) -> Options {
        self.persistent = persistent;
        self
    }

    /// Open read-only (`O_RDONLY`, `PROT_READ`): views work, mutation and locking don't.
    pub fn read_only(mut self, read_only: bool) -> Options {
        self.read_only = read_only;
        self
    }

    fn ns(&self) -> Result<Namespace> {
        match &self.ns {
            Some(ns) => Ok(ns.clone()),
            None => Namespace::default_dir(),
        }
    }

    /// Creates a zero-filled array named `name`. Fails with `AlreadyExists` (and
    /// leaves the existing segment untouched) if the name is taken.
    pub fn create<T: Element, D: Dimension>(
        &self,
        name: &str,
        shape: impl IntoDimension<Dim = D>,
    ) -> Result<SharedArray<T, D>> {
        let dim = shape.into_dimension();
        let seg = publish(
            Target::Named(&self.ns()?, name),
            T::DTYPE,
            self.fortran,
            dim.slice(),
            self.persistent,
            |_| {},
        )?;
        SharedArray::from_segment(seg)
    }

    /// Creates an array named `name` holding a copy of `array` (the one copy in),
    /// in this options' memory order.
    pub fn create_from<T, S, D>(
        &self,
        name: &str,
        array: &ArrayBase<S, D>,
    ) -> Result<SharedArray<T, D>>
    where
        T: Element,
        S: Data<Elem = T>,
        D: Dimension,
    {
        let seg = publish(
            Target::Named(&self.ns()?, name),
            T::DTYPE,
            self.fortran,
            array.shape(),
            self.persistent,
            |data| copy_into(data, array, self.fortran),
        )?;
        SharedArray::from_segment(seg)
    }

    /// Creates a segment of `len` bytes whose data is initialised by `init` before
    /// publication (for the named objects in [`crate::objects`] and the queues).
    /// `name == None` makes an anonymous (memfd) segment.
    pub(crate) fn create_initialised(
        &self,
        name: Option<&str>,
        len: usize,
        init: impl FnOnce(*mut u8),
    ) -> Result<SharedArray<u8, ndarray::Ix1>> {
        let ns;
        let target = match name {
            Some(name) => {
                ns = self.ns()?;
                Target::Named(&ns, name)
            }
            None => Target::Anonymous,
        };
        let persistent = self.persistent && name.is_some();
        let seg = publish(target, Dtype::U8, false, &[len], persistent, init)?;
        SharedArray::from_segment(seg)
    }

    /// Creates an anonymous (memfd) array: no name, sealed against resizing, gone when
    /// the last process closes it. Share it with children through its descriptor.
    pub fn create_anonymous<T: Element, D: Dimension>(
        &self,
        shape: impl IntoDimension<Dim = D>,
    ) -> Result<SharedArray<T, D>> {
        let dim = shape.into_dimension();
        let seg = publish(
            Target::Anonymous,
            T::DTYPE,
            self.fortran,
            dim.slice(),
            false,
            |_| {},
        )?;
        SharedArray::from_segment(seg)
    }

    /// Opens (attaches) the array `name`, checked against `T` and `D`.
    pub fn open<T: Element, D: Dimension>(&self, name: &str) -> Result<SharedArray<T, D>> {
        let seg = Segment::open(&self.ns()?, name, !self.read_only)?;
        SharedArray::from_segment(seg)
    }
}

enum Target<'a> {
    Named(&'a Namespace, &'a str),
    Anonymous,
}

/// Runs the publishing protocol (module docs) and returns the published segment.
fn publish(
    target: Target<'_>,
    dtype: Dtype,
    fortran: bool,
    shape: &[usize],
    persistent: bool,
    init: impl FnOnce(*mut u8),
) -> Result<Segment> {
    let (hdr, layout) = header::build_header(dtype, fortran, shape).map_err(|e| match e {
        HeaderError::Overflow { shape, itemsize } => Error::ShapeOverflow { shape, itemsize },
        other => Error::Shape(other.to_string()),
    })?;
    let total = layout.total_len();
    let mut seg = match target {
        Target::Named(ns, name) => Segment::create(ns, name, total)?,
        Target::Anonymous => Segment::create_anonymous("shmarray", total)?,
    };
    let pid = sys::current_pid();
    let fields = ControlFields {
        magic: CONTROL_MAGIC,
        layout_version: LAYOUT_VERSION,
        state: header::state::BUILDING,
        creator_pid: pid,
        flags: if persistent { FLAG_PERSISTENT } else { 0 },
        creator_start_time: sys::process_start_time(pid).unwrap_or(0),
        created_unix_ms: sys::now_unix_ms(),
        data_offset: layout.data_offset as u64,
        data_len: layout.data_len as u64,
        header_checksum: fnv1a64(&hdr),
        dtype_code: dtype.code(),
        ndim: shape.len() as u32,
    };
    let base = seg.as_ptr();
    // SAFETY: the mapping is `total` bytes, writable, zero-filled and not yet visible
    // to any opener (the magic is still zero). `hdr.len() == data_offset <= total`,
    // the control block lies at `control_offset`, page aligned, with
    // `control_offset + CONTROL_SIZE == total`, and `data_offset + data_len <=
    // control_offset`, so every write below stays inside the mapping.
    unsafe {
        std::ptr::copy_nonoverlapping(hdr.as_ptr().add(8), base.add(8), hdr.len() - 8);
        let cb = base.add(layout.control_offset).cast::<ControlBlock>();
        ControlBlock::init_at(cb, &fields);
        let lock = std::ptr::addr_of_mut!((*cb).lock).cast::<RawRobustMutex>();
        if RawRobustMutex::init_at(lock).is_ok() {
            (*cb).flags.fetch_or(FLAG_LOCK_READY, Ordering::Relaxed);
        }
        init(base.add(layout.data_offset));
        (*cb).state.store(header::state::READY, Ordering::Release);
        let magic = u64::from_le_bytes(hdr[..8].try_into().expect("8 bytes"));
        (*base.cast::<AtomicU64>()).store(magic, Ordering::Release);
    }
    seg.set_owner(!persistent);
    Ok(seg)
}

/// Copies `array` into the data area in the given memory order.
fn copy_into<T: Element, S: Data<Elem = T>, D: Dimension>(
    data: *mut u8,
    array: &ArrayBase<S, D>,
    fortran: bool,
) {
    let dim = array.raw_dim();
    // SAFETY: `data` points to `array.len()` properly aligned, writable, private
    // elements (the segment was created for exactly this shape and type).
    let mut dst = unsafe { ArrayViewMut::from_shape_ptr(dim.set_f(fortran), data.cast::<T>()) };
    dst.assign(array);
}

/// What a successful attach found: the layout and, if present, the control block.
struct Attached {
    layout: Layout,
    control: Option<ControlFields>,
}

/// Validates a mapped segment: reads the magic once (Acquire), copies the header
/// once, parses the copy with checked arithmetic and checks it against the file size
/// and the control block.
fn attach(seg: &Segment) -> Result<Attached> {
    let name = seg.label();
    let size = seg.len();
    if size < 8 {
        return Err(Error::NotShmarray {
            name: name.to_string(),
            reason: "too small to be an NPY file",
        });
    }
    let base = seg.as_ptr();
    // SAFETY: the mapping is page aligned and at least 8 bytes long; AtomicU64 has
    // the alignment and size of u64 and the memory is shared, so atomic access is
    // the right way to read bytes another process publishes.
    let magic = unsafe { (*base.cast::<AtomicU64>()).load(Ordering::Acquire) };
    if magic == 0 {
        return Err(Error::NotReady {
            name: name.to_string(),
        });
    }
    let magic = magic.to_le_bytes();
    if magic[..6] != NPY_MAGIC {
        return Err(Error::NotShmarray {
            name: name.to_string(),
            reason: "not an NPY file (bad magic)",
        });
    }
    let mut pre = [0u8; 12];
    let pre_len = size.min(12);
    // SAFETY: `pre_len <= size` bytes of the mapping are readable.
    unsafe { std::ptr::copy_nonoverlapping(base, pre.as_mut_ptr(), pre_len) };
    pre[..8].copy_from_slice(&magic);
    let (_, data_offset) =
        header::parse_preamble(&pre[..pre_len]).map_err(|e| Error::corrupt(name, e))?;
    if data_offset > size {
        return Err(Error::corrupt(
            name,
            Corruption::Truncated {
                needed: data_offset as u64,
                actual: size as u64,
            },
        ));
    }
    let mut hdr = vec![0u8; data_offset];
    // SAFETY: `data_offset <= size` bytes of the mapping are readable; this is the one
    // copy of the header we validate and use.
    unsafe { std::ptr::copy_nonoverlapping(base, hdr.as_mut_ptr(), data_offset) };
    hdr[..8].copy_from_slice(&magic);
    let layout = header::parse_header(&hdr).map_err(|e| Error::corrupt(name, e))?;
    if layout.data_end() > size {
        return Err(Error::corrupt(
            name,
            Corruption::Truncated {
                needed: layout.data_end() as u64,
                actual: size as u64,
            },
        ));
    }
    let control = if size >= layout.total_len() {
        // SAFETY: `control_offset + CONTROL_SIZE <= size`, the offset is page aligned,
        // and a ControlBlock is valid for any bytes except through its atomics, which
        // we only access atomically.
        let cb = unsafe { &*base.add(layout.control_offset).cast::<ControlBlock>() };
        if cb.magic == CONTROL_MAGIC {
            let fields = cb.fields();
            if fields.state != header::state::READY {
                return Err(Error::NotReady {
                    name: name.to_string(),
                });
            }
            header::validate_control(&fields, &layout, &hdr)
                .map_err(|e| Error::corrupt(name, e))?;
            Some(fields)
        } else {
            None
        }
    } else {
        None
    };
    Ok(Attached { layout, control })
}

/// A typed, n-dimensional array in a shared-memory segment.
///
/// See the [module docs](self) for the publishing protocol and for exactly what is
/// guaranteed when other processes write.
pub struct SharedArray<T: Element, D: Dimension> {
    seg: Segment,
    layout: Layout,
    dim: D,
    control: Option<NonNull<ControlBlock>>,
    _elem: PhantomData<T>,
}

// SAFETY: the handle owns its mapping; shared access goes through `&self` views of
// `T: Sync` data, exclusive access through `&mut self` or the process-shared lock.
unsafe impl<T: Element, D: Dimension> Send for SharedArray<T, D> {}
// SAFETY: as above; `&SharedArray` only hands out shared views and atomics.
unsafe impl<T: Element, D: Dimension> Sync for SharedArray<T, D> {}

impl<T: Element, D: Dimension> SharedArray<T, D> {
    /// Creates a zero-filled array `name` in `/dev/shm` (or `$SHMARRAY_DIR`), owned by
    /// this handle: the name is removed when it is dropped.
    pub fn create(name: &str, shape: impl IntoDimension<Dim = D>) -> Result<Self> {
        Options::new().create(name, shape)
    }

    /// Creates an array `name` holding a copy of `array`.
    pub fn create_from<S: Data<Elem = T>>(name: &str, array: &ArrayBase<S, D>) -> Result<Self> {
        Options::new().create_from(name, array)
    }

    /// Creates an anonymous (memfd) array; see [`Options::create_anonymous`].
    pub fn create_anonymous(shape: impl IntoDimension<Dim = D>) -> Result<Self> {
        Options::new().create_anonymous(shape)
    }

    /// Opens (attaches) `name` read-write, checked against `T` and `D`.
    pub fn open(name: &str) -> Result<Self> {
        Options::new().open(name)
    }

    /// Attaches an already open segment file (e.g. a memfd inherited from a parent).
    pub fn from_file(file: std::fs::File, writable: bool) -> Result<Self> {
        SharedArray::from_segment(Segment::from_file(file, writable, "<fd>")?)
    }

    fn from_segment(seg: Segment) -> Result<Self> {
        let Attached { layout, control } = attach(&seg)?;
        let name = seg.label();
        let expected = || match D::NDIM {
            Some(n) => format!("{} ({}) with {n} dimension(s)", T::DTYPE, T::DTYPE.descr()),
            None => format!("{} ({})", T::DTYPE, T::DTYPE.descr()),
        };
        let found = || {
            format!(
                "'{}' with shape {:?}",
                layout.header.descr, layout.header.shape
            )
        };
        if layout.dtype != Some(T::DTYPE) {
            return Err(Error::TypeMismatch {
                name: name.to_string(),
                expected: expected(),
                found: found(),
            });
        }
        let dim =
            D::from_dimension(&IxDyn(&layout.header.shape)).ok_or_else(|| Error::TypeMismatch {
                name: name.to_string(),
                expected: expected(),
                found: found(),
            })?;
        if layout.data_offset % std::mem::align_of::<T>() != 0 {
            return Err(Error::corrupt(
                name,
                Corruption::Misaligned {
                    offset: layout.data_offset,
                    align: std::mem::align_of::<T>(),
                },
            ));
        }
        let control = control.map(|_| {
            // SAFETY: `attach` checked that the control block lies inside the mapping.
            let p = unsafe { seg.as_ptr().add(layout.control_offset) };
            NonNull::new(p.cast::<ControlBlock>()).expect("mapping is non-null")
        });
        Ok(SharedArray {
            seg,
            layout,
            dim,
            control,
            _elem: PhantomData,
        })
    }

    #[inline]
    pub(crate) fn data_ptr(&self) -> *mut T {
        // SAFETY: `data_offset <= data_end <= mapping length` (checked in `attach`).
        unsafe { self.seg.as_ptr().add(self.layout.data_offset).cast::<T>() }
    }

    #[inline]
    fn shape_spec(&self) -> ndarray::Shape<D> {
        self.dim.clone().set_f(self.layout.header.fortran_order)
    }

    /// A read-only ndarray view of the whole array.
    #[inline]
    pub fn view(&self) -> ArrayView<'_, T, D> {
        // SAFETY: the pointer is aligned (checked at attach), points to `len()`
        // elements inside a mapping that lives as long as `&self`, and the header's
        // shape/order describe exactly those elements. See the module docs for writes
        // by other processes.
        unsafe { ArrayView::from_shape_ptr(self.shape_spec(), self.data_ptr()) }
    }

    /// A mutable ndarray view, exclusive within this process (`&mut self`).
    /// Cross-process exclusivity is a protocol: use `lock()` or disjoint parts.
    /// Fails with `ReadOnly` for arrays opened read-only.
    #[inline]
    pub fn view_mut(&mut self) -> Result<ArrayViewMut<'_, T, D>> {
        self.check_writable()?;
        // SAFETY: as for `view`, plus the mapping is writable and `&mut self` rules out
        // any other view from this handle for the borrow's duration.
        Ok(unsafe { ArrayViewMut::from_shape_ptr(self.shape_spec(), self.data_ptr()) })
    }

    /// A mutable view from a shared reference, for callers that coordinate access
    /// themselves (e.g. disjoint chunks handed to different threads).
    ///
    /// # Safety
    /// - The array must be writable (not opened read-only).
    /// - For the lifetime of the returned view, no other view (in this process) of
    ///   the same elements may be used, and the caller accepts the cross-process rules
    ///   of the module docs.
    #[inline]
    pub unsafe fn view_mut_unchecked(&self) -> ArrayViewMut<'_, T, D> {
        // SAFETY: the caller upholds writability and exclusivity; bounds, alignment and
        // shape hold as for `view`.
        unsafe { ArrayViewMut::from_shape_ptr(self.shape_spec(), self.data_ptr()) }
    }

    /// A read-only view from a shared reference, for callers that coordinate access
    /// themselves.
    ///
    /// # Safety
    /// For the lifetime of the returned view, no mutable view (in this process) of
    /// the same elements may be used.
    #[inline]
    pub unsafe fn view_unchecked(&self) -> ArrayView<'_, T, D> {
        // SAFETY: the caller rules out mutable views; bounds, alignment and shape hold
        // as for `view`.
        unsafe { ArrayView::from_shape_ptr(self.shape_spec(), self.data_ptr()) }
    }

    /// Device and inode of the segment file (identifies it across renames).
    pub fn file_id(&self) -> (u64, u64) {
        self.seg.file_id()
    }

    /// Whether the mapping is writable.
    pub fn is_writable(&self) -> bool {
        self.seg.is_writable()
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
        self.layout.len
    }

    /// Whether the array has no elements.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.layout.len == 0
    }

    /// The shape.
    #[inline]
    pub fn shape(&self) -> &[usize] {
        &self.layout.header.shape
    }

    /// The shape as an ndarray dimension.
    pub fn raw_dim(&self) -> D {
        self.dim.clone()
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        T::DTYPE
    }

    /// Whether the data is in column-major (Fortran) order.
    pub fn is_fortran(&self) -> bool {
        self.layout.header.fortran_order
    }

    /// Size of the data in bytes.
    pub fn nbytes(&self) -> usize {
        self.layout.data_len
    }

    /// The segment name (`None` for anonymous segments).
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// The segment's file path, for `numpy.load(path, mmap_mode="r+")`.
    pub fn path(&self) -> Option<PathBuf> {
        self.seg.path()
    }

    /// The underlying segment (file, descriptor, mapping).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The control block, absent for plain `.npy` files.
    pub fn control_block(&self) -> Option<&ControlBlock> {
        // SAFETY: the pointer was checked at attach and the mapping lives as long as
        // `&self`; shared fields of a ControlBlock are atomics.
        self.control.map(|p| unsafe { &*p.as_ptr() })
    }

    pub(crate) fn require_control(&self, what: &'static str) -> Result<&ControlBlock> {
        self.control_block().ok_or_else(|| Error::NoControlBlock {
            name: self.seg.label().to_string(),
            what,
        })
    }

    /// Whether dropping this handle removes the name.
    pub fn is_owner(&self) -> bool {
        self.seg.is_owner()
    }

    /// Keeps the segment after this handle is dropped, marks it persistent (so
    /// `shmarray gc` leaves it alone) and returns the handle.
    pub fn into_persistent(mut self) -> Self {
        self.seg.set_owner(false);
        if let Some(cb) = self.control_block() {
            if self.seg.is_writable() {
                cb.flags.fetch_or(FLAG_PERSISTENT, Ordering::Relaxed);
            }
        }
        self
    }

    /// Removes the name now (other processes keep their mappings; new opens fail with
    /// `NotFound`). A name since re-created by someone else is left alone.
    pub fn unlink(&self) -> Result<()> {
        self.seg.unlink()
    }

    /// The array's robust process-shared mutex, if it can be used here.
    fn mutex(&self) -> std::result::Result<&RawRobustMutex, Error> {
        let cb = self.require_control("the array lock")?;
        self.check_writable()?;
        if cb.flags.load(Ordering::Relaxed) & FLAG_LOCK_READY == 0 {
            return Err(Error::NoControlBlock {
                name: self.seg.label().to_string(),
                what: "the array lock (its creator could not initialise a robust mutex)",
            });
        }
        // SAFETY: the slot is 128 bytes, 64-byte aligned, inside the mapping, and was
        // initialised as a RawRobustMutex before publication (FLAG_LOCK_READY).
        Ok(unsafe { &*std::ptr::addr_of!(cb.lock).cast::<RawRobustMutex>() })
    }

    fn guard_result<'a>(
        &'a self,
        r: LockResult<RawMutexGuard<'a>>,
    ) -> LockResult<ArrayGuard<'a, T, D>> {
        let wrap = |raw| ArrayGuard {
            raw,
            // SAFETY: the lock is held for the guard's lifetime; everyone mutating this
            // array through `lock()` is excluded, the mapping is writable (checked in
            // `mutex`) and bounds/alignment hold as for `view`.
            view: unsafe { self.view_mut_unchecked() },
        };
        r.map(wrap).map_err(|e| e.map_guard(wrap))
    }

    /// Locks the array's robust process-shared mutex and returns a guard that derefs
    /// to the mutable view. Blocks until the lock is free.
    ///
    /// If the previous holder died while holding it, this returns
    /// `Err(LockError::OwnerDied(guard))`: the lock *is* held; check or repair the
    /// data, call [`ArrayGuard::mark_consistent`], then drop the guard. Dropping it
    /// unrepaired makes the lock `NotRecoverable` for everyone. See [`crate::sync`].
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T, D>> {
        match self.mutex() {
            Ok(m) => self.guard_result(m.lock()),
            Err(e) => Err(LockError::Segment(e)),
        }
    }

    /// Like [`lock`](Self::lock), but `Err(WouldBlock)` instead of waiting.
    pub fn try_lock(&self) -> LockResult<ArrayGuard<'_, T, D>> {
        match self.mutex() {
            Ok(m) => self.guard_result(m.try_lock()),
            Err(e) => Err(LockError::Segment(e)),
        }
    }

    /// Like [`lock`](Self::lock), but gives up with `Err(Timeout)` after `timeout`
    /// (monotonic clock; any duration is accepted).
    pub fn lock_timeout(&self, timeout: std::time::Duration) -> LockResult<ArrayGuard<'_, T, D>> {
        match self.mutex() {
            Ok(m) => self.guard_result(m.lock_timeout(timeout)),
            Err(e) => Err(LockError::Segment(e)),
        }
    }

    /// One of the control block's cache-padded atomic counters (`index < 8`), shared
    /// by every process that attaches this array.
    pub fn counter(&self, index: usize) -> Result<&AtomicU64> {
        let cb = self.require_control("atomic counters")?;
        cb.counters.get(index).map(|c| &c.value).ok_or_else(|| {
            Error::Shape(format!(
                "counter index {index} out of range 0..{}",
                header::COUNTERS
            ))
        })
    }
}

/// The array's lock, held: derefs to the mutable view. Unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Element, D: Dimension> {
    view: ArrayViewMut<'a, T, D>,
    raw: RawMutexGuard<'a>,
}

impl<T: Element, D: Dimension> ArrayGuard<'_, T, D> {
    /// Whether the previous holder died and the data is not yet marked consistent.
    pub fn owner_died(&self) -> bool {
        self.raw.owner_died()
    }

    /// After an `OwnerDied`, declares the data repaired so the lock stays usable.
    pub fn mark_consistent(&mut self) {
        self.raw.mark_consistent();
    }
}

impl<T: Element, D: Dimension> fmt::Debug for ArrayGuard<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("shape", &self.view.shape())
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

impl<'a, T: Element, D: Dimension> std::ops::Deref for ArrayGuard<'a, T, D> {
    type Target = ArrayViewMut<'a, T, D>;
    fn deref(&self) -> &Self::Target {
        &self.view
    }
}

impl<T: Element, D: Dimension> std::ops::DerefMut for ArrayGuard<'_, T, D> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.view
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

/// Removes the segment `name` from the default directory, whoever created it.
pub fn remove(name: &str) -> Result<()> {
    Namespace::default_dir()?.unlink(name)
}

/// Everything `shmarray inspect` shows about a segment, read without knowing its type.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// Segment name.
    pub name: String,
    /// File path.
    pub path: PathBuf,
    /// File size in bytes.
    pub file_size: u64,
    /// Parsed layout.
    pub layout: Layout,
    /// Control block fields, `None` for plain `.npy` files.
    pub control: Option<ControlFields>,
    /// Whether the creator (pid + start time) still runs; `None` without a control block.
    pub creator_alive: Option<bool>,
}

impl SegmentInfo {
    /// Whether the segment is marked persistent.
    pub fn is_persistent(&self) -> bool {
        self.control.is_some_and(|c| c.flags & FLAG_PERSISTENT != 0)
    }

    /// Whether the segment is still being built (its creator has not published it).
    pub fn is_building(&self) -> bool {
        self.control
            .is_some_and(|c| c.state != header::state::READY)
    }

    /// Whether `shmarray gc` may remove it: the creator is dead, and the segment is
    /// either not persistent or was never finished.
    pub fn is_garbage(&self) -> bool {
        self.creator_alive == Some(false) && (!self.is_persistent() || self.is_building())
    }
}

/// Reads and validates segment `name` in `ns` read-only, for any element type.
///
/// Unlike `open`, a segment that is still being built is reported (with
/// `control.state == BUILDING` and its creator) when its header and control block are
/// already written and their checksum matches: that is how `shmarray gc` finds
/// segments whose creator died mid-creation without ever adopting a foreign file.
pub fn inspect(ns: &Namespace, name: &str) -> Result<SegmentInfo> {
    let seg = Segment::open(ns, name, false)?;
    let Attached { layout, control } = match attach(&seg) {
        Err(Error::NotReady { name }) => peek_building(&seg).ok_or(Error::NotReady { name })?,
        other => other?,
    };
    let creator_alive =
        control.map(|c| sys::liveness(c.creator_pid, c.creator_start_time) == sys::Liveness::Alive);
    Ok(SegmentInfo {
        name: seg.label().to_string(),
        path: seg.path().unwrap_or_default(),
        file_size: seg.len() as u64,
        layout,
        control,
        creator_alive,
    })
}

/// Reads a segment whose magic is not published yet: assumes the NPY 1.0 preamble a
/// creator will store, and accepts the result only if a control block in state
/// `BUILDING` sits where the header says and its checksum matches that header.
fn peek_building(seg: &Segment) -> Option<Attached> {
    let size = seg.len();
    let base = seg.as_ptr();
    if size < 12 {
        return None;
    }
    let mut pre = [0u8; 12];
    // SAFETY: 12 <= size bytes of the mapping are readable.
    unsafe { std::ptr::copy_nonoverlapping(base, pre.as_mut_ptr(), 12) };
    if pre[..8] != [0; 8] {
        return None;
    }
    pre[..6].copy_from_slice(&NPY_MAGIC);
    pre[6] = 1;
    let (_, data_offset) = header::parse_preamble(&pre).ok()?;
    if data_offset > size {
        return None;
    }
    let mut hdr = vec![0u8; data_offset];
    // SAFETY: `data_offset <= size` bytes of the mapping are readable.
    unsafe { std::ptr::copy_nonoverlapping(base, hdr.as_mut_ptr(), data_offset) };
    hdr[..8].copy_from_slice(&pre[..8]);
    let layout = header::parse_header(&hdr).ok()?;
    if size < layout.total_len() {
        return None;
    }
    // SAFETY: the control block lies inside the mapping (checked just above) at a
    // page-aligned offset; its shared fields are only read atomically.
    let cb = unsafe { &*base.add(layout.control_offset).cast::<ControlBlock>() };
    if cb.magic != CONTROL_MAGIC {
        return None;
    }
    let fields = cb.fields();
    header::validate_control(&fields, &layout, &hdr).ok()?;
    Some(Attached {
        layout,
        control: Some(fields),
    })
}
