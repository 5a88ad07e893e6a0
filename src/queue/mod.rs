//! A bounded multi-producer multi-consumer queue between processes, in a named
//! segment: Python's `multiprocessing.Queue` without pickling or a feeder thread.
//!
//! - [`Queue<T>`] moves `T: Element` items (numbers), one copy into shared memory
//!   and one out, with batch forms (`put_slice`, `get_into`).
//! - [`ByteQueue`] moves byte messages up to a fixed maximum size; `put_with` writes a
//!   message straight into its slot and `get_with` reads it in place, so a message is
//!   copied at most once (into shared memory).
//!
//! Blocking calls spin briefly, then sleep on a process-shared futex; uncontended
//! puts/gets make no syscall (waiter counts tell whether anyone sleeps). `close()`
//! lets consumers drain what is left and then get `Closed`.
//!
//! # A process that dies mid-operation
//! Every attached process registers in the queue's member table (pid + process start
//! time) and, before it claims slots, announces the positions it is claiming; it
//! withdraws the announcement when the operation is finished. A producer that dies
//! after claiming a slot but before publishing it, or a consumer that dies after
//! taking a slot but before releasing it, would stop the ring at that slot. A peer
//! that is blocked behind such a slot checks, every 10 ms, whether every process
//! whose announcement covers the slot is dead, and if so finishes the step for it:
//! the dead producer's item is skipped and counted in [`Queue::lost`]; the dead
//! consumer's slot is released, and the item it had taken is counted in
//! [`Queue::abandoned`]. This holds at whatever instruction the process died, and
//! items are never duplicated (see `src/queue/ring.rs`).
//!
//! The layout and the slot state table are documented in `src/queue/ring.rs`.

mod ring;

#[cfg(not(loom))]
pub use imp::*;

// Everything but the ring touches real shared memory and syscalls; under
// `--cfg loom` only the ring is compiled, for model checking.
#[cfg(not(loom))]
mod imp {

    use std::marker::PhantomData;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use ndarray::Ix1;

    use super::ring::{Padded, Ring, RingHeader, Step, MIN_CAPACITY};
    use crate::array::SharedArray;
    use crate::element::Element;
    use crate::format::control::ObjectKind;
    use crate::format::objects::{ParamsError, QueueGeometry, MAX_MEMBERS, QUEUE_VERSION};
    use crate::segment::{KindSpec, Liveness, Options, Target};
    use crate::sync::members::{self, Member, MemberTable, Membership};
    use crate::sync::{self, wait_while_equal};
    /// How long a blocked call spins before it sleeps on the futex: long enough to
    /// catch a peer that is about to answer (ping-pong), short enough to be noise.
    const SPIN: Duration = Duration::from_micros(20);
    const SLICE: Duration = Duration::from_millis(10);

    /// Why a queue operation did not complete.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum QueueError {
        /// The queue was closed (for `get`: and is drained).
        #[error("the queue is closed")]
        Closed,
        /// `try_put` on a full queue.
        #[error("the queue is full")]
        Full,
        /// `try_get` on an empty queue.
        #[error("the queue is empty")]
        Empty,
        /// A timed operation gave up.
        #[error("timed out after {0:?}")]
        Timeout(Duration),
        /// A byte message larger than the queue's maximum.
        #[error("message of {len} bytes exceeds the maximum of {max}")]
        TooLarge {
            /// Message length.
            len: usize,
            /// The queue's maximum message size.
            max: usize,
        },
        /// More than [`MAX_MEMBERS`] processes attached at once.
        #[error("more than {MAX_MEMBERS} processes attached to the queue")]
        TooManyProcesses,
        /// The segment is not a queue of this kind.
        #[error("segment {name:?} is not {expected}")]
        NotAQueue {
            /// Segment name.
            name: String,
            /// What was expected.
            expected: String,
        },
        /// The capacity or item size is out of range (nothing was created).
        #[error(transparent)]
        Params(#[from] ParamsError),
        /// Creating or opening the segment failed.
        #[error(transparent)]
        Segment(#[from] crate::Error),
    }

    /// The untyped queue both front ends share.
    struct RawQueue {
        seg: SharedArray<u8, Ix1>,
        /// Copied from the control block and validated at attach; never re-read
        /// from shared memory.
        geo: QueueGeometry,
        member: Membership,
        me: u32,
    }

    impl RawQueue {
        fn create(
            name: Option<&str>,
            kind: ObjectKind,
            dtype_code: u32,
            item_size: usize,
            capacity: usize,
        ) -> Result<RawQueue, QueueError> {
            // Rounded up to the ring's minimum of 2 slots.
            let capacity = (capacity as u64).max(MIN_CAPACITY);
            let geo = QueueGeometry::new(item_size as u64, capacity)?;
            let data_len = usize::try_from(geo.data_len).map_err(|_| {
                QueueError::Params(ParamsError::TooLarge {
                    capacity,
                    stride: geo.stride,
                    max: geo.data_len,
                })
            })?;
            let opts = Options::new();
            let ns;
            let target = match name {
                Some(n) => {
                    ns = opts.ns()?;
                    Target::Named(&ns, n)
                }
                None => Target::Anonymous,
            };
            let spec = KindSpec {
                kind,
                version: QUEUE_VERSION,
                params: geo.to_params(dtype_code),
            };
            let seg = SharedArray::<u8, Ix1>::create_kind(target, spec, &opts, &[data_len], |d| {
                let p = d.as_mut_ptr();
                // SAFETY: `p` is the zeroed, private, page-aligned data area of
                // `geo.data_len` bytes; the ring header and `capacity` slots of
                // `stride` bytes lie inside it (checked geometry).
                let ring = unsafe {
                    Ring::new(
                        &*p.add(geo.ring_offset as usize).cast::<RingHeader>(),
                        p.add(geo.slots_offset as usize),
                        geo.capacity,
                        geo.stride as usize,
                    )
                };
                ring.init();
            })?;
            RawQueue::attach(seg, geo)
        }

        /// Checks that `seg` is a queue of this kind and attaches to it.
        fn validate(
            seg: SharedArray<u8, Ix1>,
            dtype_code: u32,
            item_size: Option<usize>,
        ) -> Result<RawQueue, QueueError> {
            let name = seg.name().unwrap_or("<anonymous>").to_string();
            let c = seg.control().ok_or_else(|| {
                QueueError::Segment(crate::Error::NoControlBlock {
                    name: name.clone(),
                    what: "the queue",
                })
            })?;
            let geo = QueueGeometry::from_control(&c)
                .map_err(|e| QueueError::Segment(crate::Error::corrupt(&name, e)))?;
            let mismatch = || QueueError::NotAQueue {
                name: name.clone(),
                expected: format!("element code {dtype_code}, item size {item_size:?}"),
            };
            if c.params[3] != u64::from(dtype_code)
                || item_size.is_some_and(|s| s as u64 != geo.item_size)
                || seg.len() as u64 != geo.data_len
            {
                return Err(mismatch());
            }
            if !seg.is_writable() {
                return Err(QueueError::Segment(crate::Error::ReadOnly { name }));
            }
            RawQueue::attach(seg, geo)
        }

        fn open(
            name: &str,
            kind: ObjectKind,
            dtype_code: u32,
            item_size: Option<usize>,
        ) -> Result<RawQueue, QueueError> {
            let seg = SharedArray::<u8, Ix1>::open_kind(&Options::new(), name, kind)?;
            Self::validate(seg, dtype_code, item_size)
        }

        fn from_file(
            file: std::fs::File,
            kind: ObjectKind,
            dtype_code: u32,
            item_size: Option<usize>,
        ) -> Result<RawQueue, QueueError> {
            let seg = SharedArray::<u8, Ix1>::from_file_kind(&Options::new(), file, kind)?;
            Self::validate(seg, dtype_code, item_size)
        }

        fn attach(seg: SharedArray<u8, Ix1>, geo: QueueGeometry) -> Result<RawQueue, QueueError> {
            // SAFETY: the member table lies at the start of the validated data area.
            let table = unsafe { &*seg.data_ptr().cast::<MemberTable>() };
            let member = Membership::join(table, MAX_MEMBERS, seg.file(), |_| true)
                .map_err(|_| QueueError::TooManyProcesses)?;
            let me = member.slot() as u32;
            Ok(RawQueue {
                seg,
                geo,
                member,
                me,
            })
        }

        fn table(&self) -> &MemberTable {
            // SAFETY: validated at create/open; lives as long as `self.seg`.
            unsafe { &*self.seg.data_ptr().cast::<MemberTable>() }
        }

        fn ring(&self) -> Ring<'_> {
            let base = self.seg.data_ptr();
            // SAFETY: the geometry was validated against the data area at attach: the
            // ring header and `capacity` slots of `stride` bytes lie inside it.
            unsafe {
                Ring::new(
                    &*base.add(self.geo.ring_offset as usize).cast::<RingHeader>(),
                    base.add(self.geo.slots_offset as usize),
                    self.geo.capacity,
                    self.geo.stride as usize,
                )
            }
        }

        fn is_dead(&self, member: u32) -> bool {
            member as usize != self.member.slot()
                && members::check(self.table(), member as usize, self.member.file())
                    == Member::Registered(Liveness::Dead)
        }

        fn rh(&self) -> &RingHeader {
            // SAFETY: as in `ring`.
            unsafe {
                &*self
                    .seg
                    .data_ptr()
                    .add(self.geo.ring_offset as usize)
                    .cast::<RingHeader>()
            }
        }

        fn notify(&self, counter: &Padded<AtomicU32>, waiters: &Padded<AtomicU32>) {
            counter.0.fetch_add(1, Ordering::SeqCst);
            if waiters.0.load(Ordering::SeqCst) > 0 {
                sync::wake_all(&counter.0);
            }
        }

        /// Claims up to `max` slots for producing (or consuming), blocking as allowed.
        fn claim(
            &self,
            put: bool,
            max: u64,
            deadline: Option<Option<Instant>>,
        ) -> Result<(u64, u64), QueueError> {
            let ring = self.ring();
            let rh = self.rh();
            let (counter, waiters) = if put {
                (&rh.gets, &rh.put_waiters)
            } else {
                (&rh.puts, &rh.get_waiters)
            };
            let mut spin_until: Option<Instant> = None;
            let mut spins = 0u32;
            loop {
                let closed = rh.closed.0.load(Ordering::Acquire) != 0;
                if put && closed {
                    return Err(QueueError::Closed);
                }
                let step = if put {
                    ring.claim_put(max, self.me)
                } else {
                    ring.claim_get(max, self.me)
                };
                if let Step::Done(r) = step {
                    return Ok(r);
                }
                if !put && closed && ring.len() == 0 {
                    return Err(QueueError::Closed);
                }
                let Some(deadline) = deadline else {
                    return Err(if put {
                        QueueError::Full
                    } else {
                        QueueError::Empty
                    });
                };
                spins = spins.wrapping_add(1);
                if spins % 64 != 0
                    || *spin_until.get_or_insert_with(|| Instant::now() + SPIN) > Instant::now()
                {
                    std::hint::spin_loop();
                    continue;
                }
                waiters.0.fetch_add(1, Ordering::SeqCst);
                let seen = counter.0.load(Ordering::SeqCst);
                let again = if put {
                    ring.claim_put(max, self.me)
                } else {
                    ring.claim_get(max, self.me)
                };
                if let Step::Done(r) = again {
                    waiters.0.fetch_sub(1, Ordering::SeqCst);
                    return Ok(r);
                }
                let slice = match deadline {
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => left.min(SLICE),
                        _ => {
                            waiters.0.fetch_sub(1, Ordering::SeqCst);
                            return Err(QueueError::Timeout(Duration::ZERO));
                        }
                    },
                    None => SLICE,
                };
                let timed_out = wait_while_equal(&counter.0, seen, Some(slice)).is_err();
                waiters.0.fetch_sub(1, Ordering::SeqCst);
                if timed_out {
                    let dead = |m| self.is_dead(m);
                    let recovered = if put {
                        ring.recover_dead_consumer(dead)
                    } else {
                        ring.recover_dead_producer(dead)
                    };
                    if recovered {
                        let (c, w) = if put {
                            (&rh.gets, &rh.get_waiters)
                        } else {
                            (&rh.puts, &rh.put_waiters)
                        };
                        self.notify(c, w);
                    }
                }
            }
        }

        fn put_batch(
            &self,
            max: u64,
            deadline: Option<Option<Instant>>,
            mut fill: impl FnMut(u64, &mut [u8]) -> u32,
        ) -> Result<u64, QueueError> {
            let (pos, n) = self.claim(true, max, deadline)?;
            let mut op = Finish::new(self, true, pos, n);
            for k in 0..n {
                // SAFETY: we own positions pos..pos+n (won the head CAS).
                let len = fill(k, unsafe { op.ring.payload(pos + k) });
                op.ring.publish(pos + k, len);
                op.next += 1;
            }
            Ok(n)
        }

        fn get_batch(
            &self,
            max: u64,
            deadline: Option<Option<Instant>>,
            mut take: impl FnMut(u64, &[u8]),
        ) -> Result<u64, QueueError> {
            let (pos, n) = self.claim(false, max, deadline)?;
            let mut op = Finish::new(self, false, pos, n);
            for k in 0..n {
                let len = op.ring.slot(pos + k).len.load(Ordering::Relaxed) as usize;
                // SAFETY: we own positions pos..pos+n (won the tail CAS).
                let payload = unsafe { op.ring.payload(pos + k) };
                take(k, &payload[..len.min(payload.len())]);
                op.ring.release(pos + k);
                op.next += 1;
            }
            Ok(n)
        }

        fn close(&self) {
            let rh = self.rh();
            rh.closed.0.store(1, Ordering::Release);
            rh.puts.0.fetch_add(1, Ordering::SeqCst);
            rh.gets.0.fetch_add(1, Ordering::SeqCst);
            sync::wake_all(&rh.puts.0);
            sync::wake_all(&rh.gets.0);
        }
    }

    /// The end of a put or get operation over positions `next..end`: withdraws the
    /// intent and wakes the other side. If the caller's closure unwound (a panic in
    /// `put_with`/`get_with`), the positions not finished are finished here, so this
    /// live process does not hold them forever: unwritten items are published as
    /// lost, unread ones released as abandoned.
    struct Finish<'q> {
        q: &'q RawQueue,
        ring: Ring<'q>,
        put: bool,
        next: u64,
        end: u64,
    }

    impl<'q> Finish<'q> {
        fn new(q: &'q RawQueue, put: bool, pos: u64, n: u64) -> Finish<'q> {
            Finish {
                q,
                ring: q.ring(),
                put,
                next: pos,
                end: pos + n,
            }
        }
    }

    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            let rh = self.q.rh();
            for p in self.next..self.end {
                if self.put {
                    self.ring.publish_lost(p);
                } else {
                    self.ring.release(p);
                    rh.abandoned.0.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.ring.done(self.q.me, self.put);
            if self.put {
                self.q.notify(&rh.puts, &rh.get_waiters);
            } else {
                self.q.notify(&rh.gets, &rh.put_waiters);
            }
        }
    }

    impl Drop for RawQueue {
        fn drop(&mut self) {
            self.member.leave(self.table());
        }
    }

    fn deadline(timeout: Option<Duration>) -> Option<Option<Instant>> {
        Some(timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    fn with_timeout<T>(r: Result<T, QueueError>, t: Duration) -> Result<T, QueueError> {
        r.map_err(|e| match e {
            QueueError::Timeout(_) => QueueError::Timeout(t),
            e => e,
        })
    }

    macro_rules! common_methods {
        () => {
            /// Items currently in the queue (approximate while others are active).
            pub fn len(&self) -> usize {
                self.raw.ring().len() as usize
            }

            /// Whether the queue is empty.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// The capacity in items.
            pub fn capacity(&self) -> usize {
                self.raw.geo.capacity as usize
            }

            /// Closes the queue: puts fail with `Closed`; gets drain what is left, then
            /// fail with `Closed`. Wakes every waiter.
            pub fn close(&self) {
                self.raw.close()
            }

            /// Whether the queue was closed.
            pub fn is_closed(&self) -> bool {
                self.raw.rh().closed.0.load(Ordering::Acquire) != 0
            }

            /// Items lost because their producer died after claiming a slot (or its
            /// `put_with` closure panicked).
            pub fn lost(&self) -> u64 {
                self.raw.rh().lost.0.load(Ordering::Relaxed)
            }

            /// Items taken by consumers that died before finishing with them (or whose
            /// `get_with` closure panicked).
            pub fn abandoned(&self) -> u64 {
                self.raw.rh().abandoned.0.load(Ordering::Relaxed)
            }

            /// The underlying segment (name, path, unlink).
            pub fn array(&self) -> &SharedArray<u8, Ix1> {
                &self.raw.seg
            }

            /// The segment's open file (for anonymous queues: the memfd to share).
            pub fn file(&self) -> &std::fs::File {
                self.raw.seg.segment().file()
            }
        };
    }

    /// A bounded MPMC queue of `T` items between processes. See the [module docs](crate::queue).
    pub struct Queue<T: Element> {
        raw: RawQueue,
        _t: PhantomData<T>,
    }

    impl<T: Element> Queue<T> {
        /// Creates queue `name` holding up to `capacity` items (at least 2; smaller
        /// values are rounded up). The creator owns it: removed on drop.
        pub fn create(name: &str, capacity: usize) -> Result<Self, QueueError> {
            Self::make(Some(name), capacity)
        }

        /// Creates an anonymous queue (memfd): no name, gone when the last process
        /// closes it. Hand [`file`](Self::file) to other processes (inherit it, or
        /// open `/proc/<pid>/fd/<n>`) and attach with [`from_file`](Self::from_file).
        pub fn create_anonymous(capacity: usize) -> Result<Self, QueueError> {
            Self::make(None, capacity)
        }

        fn make(name: Option<&str>, capacity: usize) -> Result<Self, QueueError> {
            let raw = RawQueue::create(
                name,
                ObjectKind::Queue,
                T::DTYPE.code(),
                std::mem::size_of::<T>(),
                capacity,
            )?;
            Ok(Queue {
                raw,
                _t: PhantomData,
            })
        }

        /// Attaches queue `name` (checked: a queue of `T`).
        pub fn open(name: &str) -> Result<Self, QueueError> {
            let raw = RawQueue::open(
                name,
                ObjectKind::Queue,
                T::DTYPE.code(),
                Some(std::mem::size_of::<T>()),
            )?;
            Ok(Queue {
                raw,
                _t: PhantomData,
            })
        }

        /// Attaches a queue from an open segment file (e.g. an anonymous queue's memfd).
        pub fn from_file(file: std::fs::File) -> Result<Self, QueueError> {
            let raw = RawQueue::from_file(
                file,
                ObjectKind::Queue,
                T::DTYPE.code(),
                Some(std::mem::size_of::<T>()),
            )?;
            Ok(Queue {
                raw,
                _t: PhantomData,
            })
        }

        fn put_one(&self, v: T, d: Option<Option<Instant>>) -> Result<(), QueueError> {
            self.raw
                .put_batch(1, d, |_, buf| {
                    buf[..std::mem::size_of::<T>()].copy_from_slice(bytemuck::bytes_of(&v));
                    std::mem::size_of::<T>() as u32
                })
                .map(drop)
        }

        fn get_one(&self, d: Option<Option<Instant>>) -> Result<T, QueueError> {
            let mut out = T::zeroed();
            self.raw.get_batch(1, d, |_, b| {
                out = bytemuck::pod_read_unaligned(&b[..std::mem::size_of::<T>()])
            })?;
            Ok(out)
        }

        /// Puts `v`, waiting while the queue is full.
        pub fn put(&self, v: T) -> Result<(), QueueError> {
            self.put_one(v, deadline(None))
        }

        /// Puts `v` or fails with `Full` at once.
        pub fn try_put(&self, v: T) -> Result<(), QueueError> {
            self.put_one(v, None)
        }

        /// Puts `v`, waiting at most `timeout`.
        pub fn put_timeout(&self, v: T, timeout: Duration) -> Result<(), QueueError> {
            with_timeout(self.put_one(v, deadline(Some(timeout))), timeout)
        }

        /// Puts every item of `items` in order, claiming runs of free slots at once.
        pub fn put_slice(&self, items: &[T]) -> Result<(), QueueError> {
            let size = std::mem::size_of::<T>();
            let mut done = 0usize;
            while done < items.len() {
                let chunk = &items[done..];
                let n = self
                    .raw
                    .put_batch(chunk.len() as u64, deadline(None), |k, buf| {
                        buf[..size].copy_from_slice(bytemuck::bytes_of(&chunk[k as usize]));
                        size as u32
                    })?;
                done += n as usize;
            }
            Ok(())
        }

        /// Takes the next item, waiting while the queue is empty.
        pub fn get(&self) -> Result<T, QueueError> {
            self.get_one(deadline(None))
        }

        /// Takes the next item or fails with `Empty` (or `Closed`) at once.
        pub fn try_get(&self) -> Result<T, QueueError> {
            self.get_one(None)
        }

        /// Takes the next item, waiting at most `timeout`.
        pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
            with_timeout(self.get_one(deadline(Some(timeout))), timeout)
        }

        /// Waits for at least one item, then fills `buf` with as many as are ready (up
        /// to its length); returns how many.
        pub fn get_into(&self, buf: &mut [T]) -> Result<usize, QueueError> {
            if buf.is_empty() {
                return Ok(0);
            }
            let size = std::mem::size_of::<T>();
            let n = self
                .raw
                .get_batch(buf.len() as u64, deadline(None), |k, b| {
                    buf[k as usize] = bytemuck::pod_read_unaligned(&b[..size]);
                })?;
            Ok(n as usize)
        }

        common_methods!();
    }

    /// A bounded MPMC queue of byte messages (up to a fixed maximum size) between
    /// processes. See the [module docs](crate::queue).
    pub struct ByteQueue {
        raw: RawQueue,
    }

    impl ByteQueue {
        /// Creates queue `name` of `capacity` messages of at most `max_message` bytes.
        pub fn create(name: &str, capacity: usize, max_message: usize) -> Result<Self, QueueError> {
            Ok(ByteQueue {
                raw: RawQueue::create(Some(name), ObjectKind::ByteQueue, 0, max_message, capacity)?,
            })
        }

        /// Creates an anonymous byte queue (memfd); see [`Queue::create_anonymous`].
        pub fn create_anonymous(capacity: usize, max_message: usize) -> Result<Self, QueueError> {
            Ok(ByteQueue {
                raw: RawQueue::create(None, ObjectKind::ByteQueue, 0, max_message, capacity)?,
            })
        }

        /// Attaches a byte queue from an open segment file.
        pub fn from_file(file: std::fs::File) -> Result<Self, QueueError> {
            Ok(ByteQueue {
                raw: RawQueue::from_file(file, ObjectKind::ByteQueue, 0, None)?,
            })
        }

        /// Attaches byte queue `name`.
        pub fn open(name: &str) -> Result<Self, QueueError> {
            Ok(ByteQueue {
                raw: RawQueue::open(name, ObjectKind::ByteQueue, 0, None)?,
            })
        }

        /// The largest message this queue carries.
        pub fn max_message(&self) -> usize {
            self.raw.geo.item_size as usize
        }

        fn check(&self, len: usize) -> Result<(), QueueError> {
            if len > self.max_message() {
                Err(QueueError::TooLarge {
                    len,
                    max: self.max_message(),
                })
            } else {
                Ok(())
            }
        }

        /// Writes a message of `len` bytes directly into its slot with `fill` (no
        /// intermediate buffer), waiting while the queue is full.
        pub fn put_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), QueueError> {
            self.check(len)?;
            let mut fill = Some(fill);
            self.raw
                .put_batch(1, deadline(None), |_, buf| {
                    if let Some(f) = fill.take() {
                        f(&mut buf[..len]);
                    }
                    len as u32
                })
                .map(drop)
        }

        fn put_msg(&self, msg: &[u8], d: Option<Option<Instant>>) -> Result<(), QueueError> {
            self.check(msg.len())?;
            self.raw
                .put_batch(1, d, |_, buf| {
                    buf[..msg.len()].copy_from_slice(msg);
                    msg.len() as u32
                })
                .map(drop)
        }

        /// Puts a message, waiting while the queue is full.
        pub fn put(&self, msg: &[u8]) -> Result<(), QueueError> {
            self.put_msg(msg, deadline(None))
        }

        /// Puts a message or fails with `Full` at once.
        pub fn try_put(&self, msg: &[u8]) -> Result<(), QueueError> {
            self.put_msg(msg, None)
        }

        /// Puts a message, waiting at most `timeout`.
        pub fn put_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), QueueError> {
            with_timeout(self.put_msg(msg, deadline(Some(timeout))), timeout)
        }

        /// Reads the next message in place with `f` (no copy out), waiting while empty.
        pub fn get_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, QueueError> {
            let mut f = Some(f);
            let mut out = None;
            self.raw.get_batch(1, deadline(None), |_, b| {
                if let Some(f) = f.take() {
                    out = Some(f(b));
                }
            })?;
            out.ok_or(QueueError::Empty)
        }

        fn get_msg(&self, d: Option<Option<Instant>>) -> Result<Vec<u8>, QueueError> {
            let mut out = Vec::new();
            self.raw.get_batch(1, d, |_, b| out.extend_from_slice(b))?;
            Ok(out)
        }

        /// Takes the next message, waiting while the queue is empty.
        pub fn get(&self) -> Result<Vec<u8>, QueueError> {
            self.get_msg(deadline(None))
        }

        /// Takes the next message or fails with `Empty` (or `Closed`) at once.
        pub fn try_get(&self) -> Result<Vec<u8>, QueueError> {
            self.get_msg(None)
        }

        /// Takes the next message, waiting at most `timeout`.
        pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>, QueueError> {
            with_timeout(self.get_msg(deadline(Some(timeout))), timeout)
        }

        common_methods!();
    }
}
