//! `Queue<T>`: numbers between processes, one copy in and one out, with batch forms.

use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
use std::mem::size_of;
use std::time::Duration;

use super::raw::{Flavor, RawQueue, Wait};
use super::QueueError;
use crate::element::Element;
use crate::segment::handle::sealed;
use crate::segment::{Create, Mapping, Open, Options, Segment};

/// A bounded MPMC queue of `T` items between processes: Python's
/// `multiprocessing.Queue` for numbers, with no pickling and no feeder thread.
/// Items are copied once into shared memory and once out; `put_slice` and
/// `get_into` move runs of items with one claim. Blocking calls spin briefly,
/// then sleep on a process-shared futex; uncontended puts and gets make no
/// syscall. [`close`](Self::close) lets consumers drain what is left and then
/// get `Closed`. [`ByteQueue`](crate::ByteQueue) carries byte messages the same way.
///
/// # Handles, threads and `fork`
/// Each handle is one *member* of the queue: it holds an entry of the queue's member
/// table (through a kernel file lock of its own) and has at most one operation in
/// flight, whose claims it records in that entry. So a handle is `Send` but not
/// `Sync`: threads open a handle each. A closure passed to `put_with`/`get_with`
/// cannot call back into the same handle (`Err(Reentrant)`). A handle copied into a
/// forked child notices on its next call and joins the table afresh, so parent and
/// child never share an entry; until that call the child keeps the parent's entry
/// looking alive.
///
/// # A process that dies mid-operation
/// Before a member claims slots it announces the positions it is claiming in its
/// entry, and it withdraws the announcement when the operation is finished. A
/// producer that dies after claiming a slot but before publishing it, or a consumer
/// that dies after taking a slot but before releasing it, would stop the ring at
/// that slot. A peer that is blocked behind such a slot checks, every 10 ms, whether
/// every member whose announcement covers the slot is dead (its file lock is free),
/// and if so finishes the step for it: the dead producer's item is skipped and
/// counted in [`Queue::lost`]; the dead consumer's slot is released, and the item
/// it had taken is counted in [`Queue::abandoned`]. This holds at whatever
/// instruction the process died, and items are never duplicated. A dead member's
/// entry is given to a newcomer only after its claims are finished (the newcomer
/// finishes them itself when it can), so the record of a blocked slot is never
/// erased.
///
/// # Files from others
/// The queue's parameters (item size, capacity, stride) are read once from the
/// checksummed control block and checked (`QueueGeometry`): a forged or damaged
/// file gives `Err(Segment(Corrupt))` at open, never a crash. Afterwards nothing in
/// shared memory decides an address: a peer that scribbles over the ring can make
/// items go missing or repeat, but cannot make this process read or write outside
/// the queue's mapping.
///
/// A handle cannot be shared between threads:
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<shmarray::Queue<u64>>();
/// ```
pub struct Queue<T: Element> {
    raw: RawQueue,
    _t: PhantomData<fn() -> T>,
}

impl<T: Element> Queue<T> {
    fn wrap(raw: RawQueue) -> Self {
        Queue {
            raw,
            _t: PhantomData,
        }
    }

    /// Creates queue `name` in `/dev/shm` (or `$SHMARRAY_DIR`) holding up to
    /// `capacity` items (at least 2; smaller values are rounded up). The creator owns
    /// it: the name is removed when this handle is dropped. A capacity too large to
    /// lay out is `Err(Params)`, and nothing is created. [`Options::create`]
    /// creates with other options.
    pub fn create(name: &str, capacity: usize) -> Result<Self, QueueError> {
        Options::new().create(name, capacity)
    }

    /// Creates an anonymous queue (memfd): no name, gone when the last process
    /// closes it. Hand [`file`](crate::Segment::file) to other processes (inherit
    /// it, or open `/proc/<pid>/fd/<n>`) and attach with
    /// [`from_file`](Self::from_file).
    ///
    /// ```
    /// use shmarray::{Queue, Segment};
    /// let q = Queue::<u32>::create_anonymous(8)?;
    /// let other = Queue::<u32>::from_file(q.file().try_clone()?)?; // as another process would
    /// q.put(5)?;
    /// assert_eq!(other.get()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_anonymous(capacity: usize) -> Result<Self, QueueError> {
        Options::new().create_anonymous(capacity)
    }

    /// Attaches queue `name`, checked: a queue of `T` whose recorded parameters
    /// are consistent (else `NotAQueue`, or `Segment(Corrupt)`); [`Options::open`]
    /// opens with other options.
    pub fn open(name: &str) -> Result<Self, QueueError> {
        Options::new().open(name)
    }

    /// Attaches a queue from an open segment file (e.g. an anonymous queue's memfd);
    /// [`Options::from_file`] attaches with other options.
    pub fn from_file(file: File) -> Result<Self, QueueError> {
        Options::new().from_file(file)
    }

    const FLAVOR: Flavor = Flavor::Items(T::DTYPE);

    fn put_one(&self, v: T, wait: Wait) -> Result<(), QueueError> {
        self.raw.put_one(wait, |slot| {
            slot.copy_from_slice(bytemuck::bytes_of(&v));
            size_of::<T>() as u32
        })
    }

    fn get_one(&self, wait: Wait) -> Result<T, QueueError> {
        self.raw
            .get_one(wait, |item, _| bytemuck::pod_read_unaligned(item))
    }

    /// Puts `v`, waiting while the queue is full.
    pub fn put(&self, v: T) -> Result<(), QueueError> {
        self.put_one(v, Wait::Forever)
    }

    /// Puts `v` or fails with `Full` at once.
    pub fn try_put(&self, v: T) -> Result<(), QueueError> {
        self.put_one(v, Wait::No)
    }

    /// Puts `v`, waiting at most `timeout`.
    pub fn put_timeout(&self, v: T, timeout: Duration) -> Result<(), QueueError> {
        self.put_one(v, Wait::timeout(timeout))
    }

    /// Puts every item of `items` in order, claiming runs of free slots at once.
    pub fn put_slice(&self, items: &[T]) -> Result<(), QueueError> {
        let mut done = 0usize;
        while done < items.len() {
            let chunk = &items[done..];
            let n = self
                .raw
                .put_batch(chunk.len() as u64, Wait::Forever, |k, slot| {
                    slot.copy_from_slice(bytemuck::bytes_of(&chunk[k as usize]));
                    size_of::<T>() as u32
                })?;
            done += n as usize;
        }
        Ok(())
    }

    /// Puts a leading run of `items` in order, waiting at most `timeout` in all;
    /// returns how many were put: all of them, or fewer when the time ran out after
    /// some were put. `Err(Timeout)` if none could be put in time. The bounded
    /// form of [`put_slice`](Self::put_slice), for callers that wait in slices
    /// (to check for interrupts, as the Python bindings do).
    pub fn put_slice_timeout(&self, items: &[T], timeout: Duration) -> Result<usize, QueueError> {
        let wait = Wait::timeout(timeout);
        let mut done = 0usize;
        while done < items.len() {
            let chunk = &items[done..];
            let put = self.raw.put_batch(chunk.len() as u64, wait, |k, slot| {
                slot.copy_from_slice(bytemuck::bytes_of(&chunk[k as usize]));
                size_of::<T>() as u32
            });
            match put {
                Ok(n) => done += n as usize,
                Err(QueueError::Timeout(_)) if done > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Takes the next item, waiting while the queue is empty.
    pub fn get(&self) -> Result<T, QueueError> {
        self.get_one(Wait::Forever)
    }

    /// Takes the next item or fails with `Empty` (or `Closed`) at once.
    pub fn try_get(&self) -> Result<T, QueueError> {
        self.get_one(Wait::No)
    }

    /// Takes the next item, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.get_one(Wait::timeout(timeout))
    }

    /// Waits for at least one item, then fills `buf` with as many as are ready (up
    /// to its length); returns how many.
    pub fn get_into(&self, buf: &mut [T]) -> Result<usize, QueueError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self
            .raw
            .get_batch(buf.len() as u64, Wait::Forever, |k, item, _| {
                buf[k as usize] = bytemuck::pod_read_unaligned(item);
            })?;
        Ok(n as usize)
    }

    /// Like [`get_into`](Self::get_into), but waits at most `timeout` for the first
    /// item (`Err(Timeout)`); an empty `buf` returns `Ok(0)` at once.
    pub fn get_into_timeout(&self, buf: &mut [T], timeout: Duration) -> Result<usize, QueueError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self
            .raw
            .get_batch(buf.len() as u64, Wait::timeout(timeout), |k, item, _| {
                buf[k as usize] = bytemuck::pod_read_unaligned(item);
            })?;
        Ok(n as usize)
    }

    /// Items currently in the queue (approximate while others are active).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity in items.
    pub fn capacity(&self) -> usize {
        self.raw.capacity()
    }

    /// Closes the queue: puts fail with `Closed`; gets drain what is left, then
    /// fail with `Closed`. Wakes every waiter, in every process.
    ///
    /// ```
    /// use shmarray::{queue::QueueError, Queue};
    /// let q = Queue::<u8>::create_anonymous(4)?;
    /// q.put(1)?;
    /// q.close();
    /// assert!(q.is_closed());
    /// assert!(matches!(q.put(1), Err(QueueError::Closed)));
    /// assert!(q.get().is_ok()); // what is left is still delivered
    /// assert!(matches!(q.get(), Err(QueueError::Closed)));
    /// # Ok::<(), QueueError>(())
    /// ```
    pub fn close(&self) {
        self.raw.close()
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.raw.is_closed()
    }

    /// Items lost because their producer died after claiming a slot (or its
    /// `put_with` closure panicked).
    pub fn lost(&self) -> u64 {
        self.raw.lost()
    }

    /// Items taken by consumers that died before finishing with them (or whose
    /// `get_with` closure panicked).
    pub fn abandoned(&self) -> u64 {
        self.raw.abandoned()
    }
}

impl<T: Element> sealed::Sealed for Queue<T> {
    fn mapping(&self) -> &Mapping {
        self.raw.segment()
    }
    fn mapping_mut(&mut self) -> &mut Mapping {
        self.raw.segment_mut()
    }
}

impl<T: Element> Segment for Queue<T> {
    type Error = QueueError;
}

impl<T: Element> Create<usize> for Queue<T> {
    fn create_segment(
        opts: &Options,
        name: Option<&str>,
        capacity: usize,
    ) -> Result<Self, QueueError> {
        RawQueue::create(opts, name, Self::FLAVOR, size_of::<T>(), capacity).map(Self::wrap)
    }
}

impl<T: Element> Open for Queue<T> {
    fn open_segment(opts: &Options, name: &str) -> Result<Self, QueueError> {
        RawQueue::open(opts, name, Self::FLAVOR).map(Self::wrap)
    }

    fn open_file(opts: &Options, file: File) -> Result<Self, QueueError> {
        RawQueue::from_file(opts, file, Self::FLAVOR).map(Self::wrap)
    }
}

impl<T: Element> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.raw.segment().label())
            .field("item", &T::DTYPE)
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}
