//! `ByteQueue`: byte messages up to a fixed maximum size, written into and read
//! from shared memory in place.

use std::fmt;
use std::fs::File;
use std::time::Duration;

use super::raw::{Flavor, RawQueue, Wait};
use super::QueueError;
use crate::segment::handle::sealed;
use crate::segment::{Create, Mapping, Open, Options, Segment};

/// A bounded MPMC queue of byte messages (up to a fixed maximum size) between
/// processes. `put_with` writes a message straight into its slot and `get_with`
/// reads it in place, so a message is copied at most once (into shared memory).
/// For messages much larger than a slot, put the data in a `SharedArray` and send
/// its offsets through a `Queue<u64>`.
///
/// Handles, threads, `fork`, processes that die mid-operation and files from
/// others work as for [`Queue`](crate::Queue): in short, a handle is `Send` but not
/// `Sync` (threads open a handle each), and a `put_with`/`get_with` closure cannot
/// call back into the same handle (`Err(Reentrant)`):
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<shmarray::ByteQueue>();
/// ```
pub struct ByteQueue {
    raw: RawQueue,
}

impl ByteQueue {
    /// Creates queue `name` of `capacity` messages (at least 2) of at most
    /// `max_message` bytes (1 B to 1 GiB). Sizes too large to lay out are
    /// `Err(Params)`, and nothing is created. [`Options::create`] creates with
    /// other options (its argument is `(capacity, max_message)`).
    pub fn create(name: &str, capacity: usize, max_message: usize) -> Result<Self, QueueError> {
        Options::new().create(name, (capacity, max_message))
    }

    /// Creates an anonymous byte queue (memfd); see
    /// [`Queue::create_anonymous`](crate::Queue::create_anonymous).
    pub fn create_anonymous(capacity: usize, max_message: usize) -> Result<Self, QueueError> {
        Options::new().create_anonymous((capacity, max_message))
    }

    /// Attaches byte queue `name`; [`Options::open`] opens with other options.
    pub fn open(name: &str) -> Result<Self, QueueError> {
        Options::new().open(name)
    }

    /// Attaches a byte queue from an open segment file; [`Options::from_file`]
    /// attaches with other options.
    pub fn from_file(file: File) -> Result<Self, QueueError> {
        Options::new().from_file(file)
    }

    /// The largest message this queue carries.
    pub fn max_message(&self) -> usize {
        self.raw.geometry().item_size as usize
    }

    fn check(&self, len: usize) -> Result<u32, QueueError> {
        if len > self.max_message() {
            Err(QueueError::TooLarge {
                len,
                max: self.max_message(),
            })
        } else {
            // max_message <= MAX_ITEM_BYTES (1 GiB) fits in u32.
            Ok(len as u32)
        }
    }

    /// Writes a message of `len` bytes directly into its slot with `fill` (no
    /// intermediate buffer), waiting while the queue is full. If `fill` panics, the
    /// slot is skipped by consumers (counted in [`lost`](Self::lost)).
    pub fn put_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), QueueError> {
        self.put_with_wait(len, Wait::Forever, fill)
    }

    /// [`put_with`](Self::put_with), or `Full` at once (`fill` is not called).
    pub fn try_put_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), QueueError> {
        self.put_with_wait(len, Wait::No, fill)
    }

    /// [`put_with`](Self::put_with), waiting at most `timeout` for room
    /// (`Timeout`; `fill` is not called then).
    pub fn put_with_timeout(
        &self,
        len: usize,
        timeout: Duration,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), QueueError> {
        self.put_with_wait(len, Wait::timeout(timeout), fill)
    }

    fn put_with_wait(
        &self,
        len: usize,
        wait: Wait,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), QueueError> {
        let n = self.check(len)?;
        self.raw.put_one(wait, |slot| {
            fill(&mut slot[..len]);
            n
        })
    }

    fn put_msg(&self, msg: &[u8], wait: Wait) -> Result<(), QueueError> {
        let n = self.check(msg.len())?;
        self.raw.put_one(wait, |slot| {
            slot[..msg.len()].copy_from_slice(msg);
            n
        })
    }

    /// Puts a message, waiting while the queue is full.
    pub fn put(&self, msg: &[u8]) -> Result<(), QueueError> {
        self.put_msg(msg, Wait::Forever)
    }

    /// Puts a message or fails with `Full` at once.
    pub fn try_put(&self, msg: &[u8]) -> Result<(), QueueError> {
        self.put_msg(msg, Wait::No)
    }

    /// Puts a message, waiting at most `timeout`.
    pub fn put_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), QueueError> {
        self.put_msg(msg, Wait::timeout(timeout))
    }

    /// Reads the next message in place with `f` (no copy out), waiting while empty.
    /// If `f` panics, the message is counted in [`abandoned`](Self::abandoned).
    pub fn get_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, QueueError> {
        self.get_with_wait(Wait::Forever, f)
    }

    /// [`get_with`](Self::get_with), or `Empty` (or `Closed`) at once (`f` is not
    /// called).
    pub fn try_get_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, QueueError> {
        self.get_with_wait(Wait::No, f)
    }

    /// [`get_with`](Self::get_with), waiting at most `timeout` for a message
    /// (`Timeout`; `f` is not called then).
    pub fn get_with_timeout<R>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, QueueError> {
        self.get_with_wait(Wait::timeout(timeout), f)
    }

    fn get_with_wait<R>(&self, wait: Wait, f: impl FnOnce(&[u8]) -> R) -> Result<R, QueueError> {
        self.raw.get_one(wait, |slot, len| f(&slot[..len]))
    }

    fn get_msg(&self, wait: Wait) -> Result<Vec<u8>, QueueError> {
        self.raw.get_one(wait, |slot, len| slot[..len].to_vec())
    }

    /// Takes the next message, waiting while the queue is empty.
    pub fn get(&self) -> Result<Vec<u8>, QueueError> {
        self.get_msg(Wait::Forever)
    }

    /// Takes the next message or fails with `Empty` (or `Closed`) at once.
    pub fn try_get(&self) -> Result<Vec<u8>, QueueError> {
        self.get_msg(Wait::No)
    }

    /// Takes the next message, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>, QueueError> {
        self.get_msg(Wait::timeout(timeout))
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
    /// use shmarray::{queue::QueueError, ByteQueue};
    /// let q = ByteQueue::create_anonymous(4, 16)?;
    /// q.put(b"x")?;
    /// q.close();
    /// assert!(q.is_closed());
    /// assert!(matches!(q.put(b"x"), Err(QueueError::Closed)));
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

impl sealed::Sealed for ByteQueue {
    fn mapping(&self) -> &Mapping {
        self.raw.segment()
    }
    fn mapping_mut(&mut self) -> &mut Mapping {
        self.raw.segment_mut()
    }
}

impl Segment for ByteQueue {
    type Error = QueueError;
}

impl Create<(usize, usize)> for ByteQueue {
    fn create_segment(
        opts: &Options,
        name: Option<&str>,
        (capacity, max_message): (usize, usize),
    ) -> Result<Self, QueueError> {
        let raw = RawQueue::create(opts, name, Flavor::Bytes, max_message, capacity)?;
        Ok(ByteQueue { raw })
    }
}

impl Open for ByteQueue {
    fn open_segment(opts: &Options, name: &str) -> Result<Self, QueueError> {
        let raw = RawQueue::open(opts, name, Flavor::Bytes)?;
        Ok(ByteQueue { raw })
    }

    fn open_file(opts: &Options, file: File) -> Result<Self, QueueError> {
        let raw = RawQueue::from_file(opts, file, Flavor::Bytes)?;
        Ok(ByteQueue { raw })
    }
}

impl fmt::Debug for ByteQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteQueue")
            .field("name", &self.raw.segment().label())
            .field("max_message", &self.max_message())
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}
