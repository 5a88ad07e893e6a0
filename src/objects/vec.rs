//! `SharedVec<T>`: Python's `Manager().list()` for numbers, without the server.

use std::fmt;
use std::fs::File;
use std::mem::size_of;
use std::sync::atomic::{compiler_fence, AtomicU64, Ordering};

use ndarray::Ix1;

use crate::array::SharedArray;
use crate::element::Element;
use crate::error::Error;
use crate::format::containers::{vec_capacity, vec_counter, VEC_VERSION};
use crate::format::control::{ControlError, ObjectKind, SCRATCH_WORDS};
use crate::format::objects::ParamsError;
use crate::segment::handle::sealed;
use crate::segment::{Create, KindSpec, Mapping, Open, Options, Segment, Source};
use crate::sync::{ArrayGuard, LockError, LockFailure};

/// Largest `SharedVec` capacity (elements).
const MAX_VEC_CAPACITY: u64 = 1 << 40;

/// Largest `SharedVec` element (bytes): what the undo record of `set` holds, in
/// the control block's scratch words.
const MAX_VEC_ITEM: usize = SCRATCH_WORDS * 8;

/// Why a vec operation, create or open did not succeed.
///
/// # Examples
/// ```
/// use shmarray::{containers::VecError, SharedVec};
/// # fn main() -> Result<(), VecError> {
/// let v = SharedVec::<u16>::create(&format!("doc-vec-error-{}", std::process::id()), 2)?;
/// v.push(1)?;
/// v.push(2)?;
/// // Full: nothing was added, and the error says how full.
/// assert!(matches!(v.push(3), Err(VecError::Full { capacity: 2, len: 2, additional: 1 })));
/// assert_eq!(v.to_vec()?, [1, 2]);
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VecError {
    /// The vec has no room for `additional` more elements (nothing was added).
    #[error("the vec is full: {len} of {capacity} elements, {additional} more do not fit")]
    Full {
        /// The vec's capacity.
        capacity: usize,
        /// Its length when the push was refused.
        len: usize,
        /// Elements that were to be added.
        additional: usize,
    },
    /// An index at or beyond the length.
    #[error("index {index} is out of bounds for length {len}")]
    OutOfBounds {
        /// The index.
        index: usize,
        /// The length.
        len: usize,
    },
    /// The capacity is out of range (nothing was created).
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// The lock could not be taken.
    #[error("vec lock failed: {0}")]
    Lock(#[from] LockFailure),
    /// Creating or opening the segment failed: `NotFound`, `KindMismatch` (not a
    /// vec), `TypeMismatch` (another element type), `Corrupt`, ...
    #[error(transparent)]
    Segment(#[from] Error),
}

/// A bounded vector of numbers in one named segment, shared by any number of
/// processes: Python's `multiprocessing.Manager().list()` without a server.
///
/// The data area is an ordinary 1-d numpy array of `capacity` elements of `T`
/// (`numpy.load(path, mmap_mode="r")`); the first [`len`](Self::len) of them are
/// the vec's elements, and the length is a counter in the control block
/// (`FORMAT.md`).
///
/// ```
/// use shmarray::SharedVec;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-vec-{}", std::process::id());
/// let v = SharedVec::<f64>::create(&name, 100)?; // owner: removed on drop
/// v.extend_from_slice(&[1.0, 2.0])?;
/// let other = SharedVec::<f64>::open(&name)?; // e.g. in another process
/// assert_eq!(other.push(3.0)?, 2); // the index it went to
/// other.set(0, 10.0)?;
/// assert_eq!(v.to_vec()?, [10.0, 2.0, 3.0]);
/// assert_eq!(v.pop()?, Some(3.0));
/// assert_eq!((v.len(), v.capacity()), (2, 100));
/// # Ok(()) }
/// ```
///
/// # Processes killed mid-operation
/// Every operation runs under the segment's robust lock. Push, pop, truncate,
/// clear and `extend_from_slice` write the elements first and commit with one store
/// of the length; `set` saves the old element in an undo record first. The next
/// locker after a holder died rolls back the undo record and checks the length,
/// so nobody ever sees a half-written element or a stuck lock;
/// [`repairs`](Self::repairs) counts it.
///
/// # Threads
/// `Send + Sync`: threads may share one handle (every operation takes the
/// segment's lock).
pub struct SharedVec<T: Element> {
    array: SharedArray<T, Ix1>,
}

impl<T: Element> SharedVec<T> {
    /// Creates vec `name` with room for `capacity` elements (owner: the name is
    /// removed when this handle is dropped); [`Options::create`] creates with
    /// other options.
    pub fn create(name: &str, capacity: usize) -> Result<Self, VecError> {
        Options::new().create(name, capacity)
    }

    /// Opens vec `name`, checked against `T`; [`Options::open`] opens with other
    /// options. A vec cannot be opened read-only (every operation takes the lock).
    ///
    /// ```
    /// use shmarray::{containers::VecError, Error, SharedVec};
    /// let name = format!("doc-vec-open-{}", std::process::id());
    /// let _v = SharedVec::<u32>::create(&name, 8)?;
    /// assert!(SharedVec::<u32>::open(&name).is_ok());
    /// assert!(matches!(
    ///     SharedVec::<i64>::open(&name),
    ///     Err(VecError::Segment(Error::TypeMismatch { .. }))
    /// ));
    /// # Ok::<(), VecError>(())
    /// ```
    pub fn open(name: &str) -> Result<Self, VecError> {
        Options::new().open(name)
    }

    /// Checks an attached vec's parameters, access and lock.
    fn checked(array: SharedArray<T, Ix1>) -> Result<Self, VecError> {
        let label = array.name().unwrap_or("<anonymous>").to_string();
        let c = array.control().ok_or_else(|| Error::NoControlBlock {
            name: label.clone(),
            what: "the vec's length",
        })?;
        let corrupt = |e: ControlError| Error::corrupt(&label, e);
        let capacity = vec_capacity(&c).map_err(corrupt)?;
        check_capacity::<T>(capacity).map_err(|e| {
            corrupt(ControlError::Params {
                kind: ObjectKind::Vec,
                problem: e.to_string(),
            })
        })?;
        if capacity != array.len() as u64 {
            return Err(corrupt(ControlError::Params {
                kind: ObjectKind::Vec,
                problem: format!("capacity {capacity} but {} elements", array.len()),
            })
            .into());
        }
        if !array.is_writable() {
            return Err(Error::ReadOnly { name: label }.into());
        }
        if let Some(e) = array.corrupt_lock() {
            // Every operation needs the lock.
            return Err(e.into());
        }
        Ok(SharedVec { array })
    }

    fn counter(&self, index: usize) -> &AtomicU64 {
        self.array
            .counter(index)
            .expect("a vec has a control block with eight counters (checked at open)")
    }

    /// Takes the lock; repairs first if the previous holder died.
    fn lock(&self) -> Result<ArrayGuard<'_, T, Ix1>, VecError> {
        match self.array.lock() {
            Ok(g) => Ok(g),
            Err(LockError::OwnerDied(mut g)) => {
                self.repair(&mut g);
                g.mark_consistent();
                Ok(g)
            }
            Err(e) => Err(VecError::Lock(e.into_failure())),
        }
    }

    /// Rolls back a half-done `set` and clamps the length (the lock is held).
    /// Idempotent.
    #[cold]
    fn repair(&self, g: &mut ArrayGuard<'_, T, Ix1>) {
        let undo = self.counter(vec_counter::UNDO_INDEX);
        let index = undo.load(Ordering::Acquire);
        if index != 0 {
            if let Some(slot) = usize::try_from(index - 1).ok().and_then(|i| g.get_mut(i)) {
                *slot = self.load_undo();
            }
            undo.store(0, Ordering::Release);
        }
        let len = self.counter(vec_counter::LEN);
        len.store(
            len.load(Ordering::Relaxed).min(self.capacity() as u64),
            Ordering::Release,
        );
        self.counter(vec_counter::REPAIRS)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The words that hold the undo record's element: counter 2 for elements of up
    /// to 8 bytes, the control block's scratch words for larger ones (FORMAT.md).
    fn undo_words(&self) -> &[AtomicU64] {
        if size_of::<T>() <= 8 {
            std::slice::from_ref(self.counter(vec_counter::UNDO_BITS))
        } else {
            self.array
                .scratch()
                .expect("a vec has a control block (checked at open)")
        }
    }

    /// Saves `old` as the undo record's element (the caller holds the lock).
    fn store_undo(&self, old: &T) {
        let bytes = bytemuck::bytes_of(old);
        for (word, chunk) in self.undo_words().iter().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
    }

    /// The undo record's element (the caller holds the lock).
    fn load_undo(&self) -> T {
        let mut out = T::zeroed();
        let bytes = bytemuck::bytes_of_mut(&mut out);
        for (word, chunk) in self.undo_words().iter().zip(bytes.chunks_mut(8)) {
            let b = word.load(Ordering::Relaxed).to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        out
    }

    /// The length, as stored (the caller holds the lock); never above capacity.
    fn len_locked(&self) -> usize {
        (self.counter(vec_counter::LEN).load(Ordering::Relaxed) as usize).min(self.capacity())
    }

    fn commit_len(&self, len: usize) {
        self.counter(vec_counter::LEN)
            .store(len as u64, Ordering::Release);
    }

    /// Appends `value`; returns its index. `Err(Full)` if the vec is full.
    ///
    /// ```
    /// use shmarray::{containers::VecError, SharedVec};
    /// let stack = SharedVec::<u32>::create(&format!("doc-vec-push-{}", std::process::id()), 2)?;
    /// assert_eq!((stack.push(7)?, stack.push(8)?), (0, 1));
    /// assert!(matches!(stack.push(9), Err(VecError::Full { .. })));
    /// assert_eq!(stack.pop()?, Some(8));
    /// assert_eq!((stack.get(0)?, stack.get(1)?), (Some(7), None));
    /// # Ok::<(), VecError>(())
    /// ```
    pub fn push(&self, value: T) -> Result<usize, VecError> {
        let mut g = self.lock()?;
        let len = self.len_locked();
        if len == self.capacity() {
            return Err(VecError::Full {
                capacity: self.capacity(),
                len,
                additional: 1,
            });
        }
        g[len] = value;
        self.commit_len(len + 1);
        Ok(len)
    }

    /// Appends all of `values`, or nothing if they do not fit (`Err(Full)`); one
    /// commit, so other processes see all of them or none.
    ///
    /// ```
    /// use shmarray::{containers::VecError, SharedVec};
    /// let v = SharedVec::<f64>::create(&format!("doc-vec-extend-{}", std::process::id()), 4)?;
    /// v.extend_from_slice(&[1.0, 2.0, 3.0])?;
    /// assert!(matches!(v.extend_from_slice(&[4.0, 5.0]), Err(VecError::Full { .. })));
    /// assert_eq!(v.len(), 3); // all or nothing
    /// assert_eq!(v.set(0, 10.0)?, 1.0);
    /// v.truncate(2)?;
    /// assert_eq!(v.to_vec()?, [10.0, 2.0]);
    /// assert_eq!(v.iter()?.sum::<f64>(), 12.0);
    /// # Ok::<(), VecError>(())
    /// ```
    pub fn extend_from_slice(&self, values: &[T]) -> Result<(), VecError> {
        let mut g = self.lock()?;
        let len = self.len_locked();
        if values.len() > self.capacity() - len {
            return Err(VecError::Full {
                capacity: self.capacity(),
                len,
                additional: values.len(),
            });
        }
        let dst = g.as_slice_mut().expect("a 1-d C-order array is contiguous");
        dst[len..len + values.len()].copy_from_slice(values);
        self.commit_len(len + values.len());
        Ok(())
    }

    /// Removes and returns the last element (`None` if empty).
    pub fn pop(&self) -> Result<Option<T>, VecError> {
        let g = self.lock()?;
        let len = self.len_locked();
        if len == 0 {
            return Ok(None);
        }
        let v = g[len - 1];
        self.commit_len(len - 1);
        Ok(Some(v))
    }

    /// The element at `index` (`None` beyond the length).
    pub fn get(&self, index: usize) -> Result<Option<T>, VecError> {
        let g = self.lock()?;
        Ok((index < self.len_locked()).then(|| g[index]))
    }

    /// Replaces the element at `index`; returns the old one. `Err(OutOfBounds)` at
    /// or beyond the length.
    pub fn set(&self, index: usize, value: T) -> Result<T, VecError> {
        let mut g = self.lock()?;
        let len = self.len_locked();
        if index >= len {
            return Err(VecError::OutOfBounds { index, len });
        }
        let old = g[index];
        self.store_undo(&old);
        let undo = self.counter(vec_counter::UNDO_INDEX);
        undo.store(index as u64 + 1, Ordering::Release);
        // The element is written only after the undo record is complete.
        compiler_fence(Ordering::SeqCst);
        g[index] = value;
        undo.store(0, Ordering::Release);
        Ok(old)
    }

    /// Shortens the vec to `len` elements (no effect if it is not longer).
    pub fn truncate(&self, len: usize) -> Result<(), VecError> {
        let _g = self.lock()?;
        if len < self.len_locked() {
            self.commit_len(len);
        }
        Ok(())
    }

    /// Removes every element.
    pub fn clear(&self) -> Result<(), VecError> {
        self.truncate(0)
    }

    /// A copy of the elements, taken under the lock.
    pub fn to_vec(&self) -> Result<Vec<T>, VecError> {
        let g = self.lock()?;
        let len = self.len_locked();
        Ok(g.as_slice().expect("contiguous")[..len].to_vec())
    }

    /// Iterates over a copy of the elements (see [`to_vec`](Self::to_vec)).
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>, VecError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// The length, read without the lock.
    pub fn len(&self) -> usize {
        (self.counter(vec_counter::LEN).load(Ordering::Acquire) as usize).min(self.capacity())
    }

    /// Whether the vec is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most elements it can hold.
    pub fn capacity(&self) -> usize {
        self.array.len()
    }

    /// How many times the vec was repaired after a process died holding its lock.
    pub fn repairs(&self) -> u64 {
        self.counter(vec_counter::REPAIRS).load(Ordering::Relaxed)
    }
}

impl<T: Element> sealed::Sealed for SharedVec<T> {
    fn mapping(&self) -> &Mapping {
        self.array.mapping()
    }
    fn mapping_mut(&mut self) -> &mut Mapping {
        self.array.mapping_mut()
    }
}

/// The data area of a vec's file (see [`Segment::file`] and [`Segment::control`]:
/// at the control block's `data_offset`) is a 1-d array of `capacity` elements of
/// `T`, the first [`len`](SharedVec::len) of them the vec's.
impl<T: Element> Segment for SharedVec<T> {
    type Error = VecError;
}

impl<T: Element> Create<usize> for SharedVec<T> {
    fn create_segment(
        opts: &Options,
        name: Option<&str>,
        capacity: usize,
    ) -> Result<Self, VecError> {
        check_capacity::<T>(capacity as u64)?;
        let mut params = [0u64; 8];
        params[0] = capacity as u64;
        let kind = KindSpec {
            kind: ObjectKind::Vec,
            version: VEC_VERSION,
            params,
        };
        let array = SharedArray::create_named_or_anonymous(opts, name, kind, &[capacity], |_| {})?;
        Ok(SharedVec { array })
    }
}

impl<T: Element> Open for SharedVec<T> {
    fn open_segment(opts: &Options, name: &str) -> Result<Self, VecError> {
        Self::checked(SharedArray::open_kind(
            opts,
            Source::Named(name),
            ObjectKind::Vec,
        )?)
    }

    fn open_file(opts: &Options, file: File) -> Result<Self, VecError> {
        Self::checked(SharedArray::open_kind(
            opts,
            Source::File(file),
            ObjectKind::Vec,
        )?)
    }
}

fn check_capacity<T>(capacity: u64) -> Result<(), ParamsError> {
    if capacity > MAX_VEC_CAPACITY {
        return Err(ParamsError::Capacity {
            capacity,
            min: 0,
            max: MAX_VEC_CAPACITY,
        });
    }
    if size_of::<T>() > MAX_VEC_ITEM {
        return Err(ParamsError::ItemSize {
            size: size_of::<T>() as u64,
            max: MAX_VEC_ITEM as u64,
        });
    }
    Ok(())
}

impl<T: Element> fmt::Debug for SharedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedVec")
            .field("name", &self.name())
            .field("dtype", &T::DTYPE)
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex;

    crate::record! {
        #[derive(Debug, PartialEq)]
        struct Big { a: [u64; 5], z: Complex<f64> }
    }
    crate::record! { struct Largest { a: [u64; 64] } }
    crate::record! { struct TooLarge { a: [u64; 64], b: u64 } }

    #[test]
    fn a_set_cut_short_is_rolled_back_for_elements_over_8_bytes() {
        let name = format!("vec-undo-big-{}", std::process::id());
        let v = SharedVec::<Big>::create(&name, 4).unwrap();
        let a = Big {
            a: [1, 2, 3, 4, 5],
            z: Complex::new(6.0, 7.0),
        };
        v.push(a).unwrap();
        let b = Big {
            a: [9; 5],
            z: Complex::new(-1.0, -1.0),
        };
        assert_eq!(v.set(0, b).unwrap(), a);
        assert_eq!(v.get(0).unwrap(), Some(b));
        {
            // What a holder killed in the middle of `set(0, ..)` leaves: the undo
            // record complete, the element half written.
            let mut g = v.lock().unwrap();
            v.store_undo(&g[0]);
            v.counter(vec_counter::UNDO_INDEX)
                .store(1, Ordering::Release);
            g[0].a[..2].copy_from_slice(&[0xdead, 0xbeef]);
            v.repair(&mut g);
        }
        assert_eq!(v.get(0).unwrap(), Some(b));
        assert_eq!(v.repairs(), 1);
    }

    #[test]
    fn elements_up_to_the_scratch_size_are_accepted() {
        let name = format!("vec-largest-{}", std::process::id());
        let v = SharedVec::<Largest>::create(&name, 2).unwrap();
        v.push(Largest { a: [7; 64] }).unwrap();
        assert_eq!(v.set(0, Largest { a: [8; 64] }).unwrap().a, [7; 64]);
        let name = format!("vec-too-large-{}", std::process::id());
        assert!(matches!(
            SharedVec::<TooLarge>::create(&name, 2),
            Err(VecError::Params(ParamsError::ItemSize {
                size: 520,
                max: 512
            }))
        ));
    }
}
