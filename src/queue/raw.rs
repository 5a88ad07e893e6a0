//! The untyped queue both front ends share: a segment holding a member table, a
//! ring header and slots; attach-time validation; membership (joining, rejoining
//! after `fork`, reusing entries); the blocking claim loop with its recovery of dead
//! members' slots; the put/get batches.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::mem::{align_of, size_of};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::ring::{Padded, Ring, RingHeader, Step};
use super::QueueError;
use crate::error::{Corruption, Error};
use crate::format::control::ObjectKind;
use crate::format::dtype::Dtype;
use crate::format::objects::{
    ParamsError, QueueGeometry, MAX_MEMBERS, MEMBER_TABLE_BYTES, MIN_CAPACITY, QUEUE_VERSION,
};
use crate::segment::liveness::Liveness;
use crate::segment::{self, KindSpec, Options, Segment, Spec, Target};
use crate::sync::members::{self, Member, MemberTable, Membership};
use crate::sync::{wait_while_equal, wake_all};

/// How long a blocked call spins before it sleeps on the futex: long enough to
/// catch a peer that is about to answer (ping-pong), short enough to be noise.
const SPIN: Duration = Duration::from_micros(20);
/// How long a blocked call sleeps before it checks for a dead holder.
const SLICE: Duration = Duration::from_millis(10);

/// The data area's alignment this layout needs (the ring header's).
const DATA_ALIGN: usize = align_of::<RingHeader>();

const _: () = {
    assert!(size_of::<MemberTable>() == MEMBER_TABLE_BYTES);
    assert!(MEMBER_TABLE_BYTES % DATA_ALIGN == 0);
    assert!(align_of::<MemberTable>() <= DATA_ALIGN);
};

/// What kind of queue a handle expects.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Flavor {
    /// A `Queue<T>` of this element type.
    Items(Dtype),
    /// A `ByteQueue` (any maximum message size).
    Bytes,
}

impl Flavor {
    fn kind(self) -> ObjectKind {
        match self {
            Flavor::Items(_) => ObjectKind::Queue,
            Flavor::Bytes => ObjectKind::ByteQueue,
        }
    }

    /// The element code recorded in the parameters (0 for byte queues).
    fn element(self) -> u32 {
        match self {
            Flavor::Items(d) => d.code(),
            Flavor::Bytes => 0,
        }
    }

    /// The record fingerprint recorded in parameter 4 (0 unless the items are
    /// records: their fields are in no header, the queue's holds bytes).
    fn fingerprint(self) -> u64 {
        match self {
            Flavor::Items(d @ Dtype::Record(_)) => d.descr().fingerprint(),
            _ => 0,
        }
    }

    /// Whether a queue of `item_size`-byte slots fits.
    fn fits(self, item_size: u64) -> bool {
        match self {
            Flavor::Items(d) => d.size() as u64 == item_size,
            Flavor::Bytes => true,
        }
    }

    fn describe(self) -> String {
        match self {
            Flavor::Items(d) => format!("a queue of {d}"),
            Flavor::Bytes => "a byte queue".to_string(),
        }
    }
}

/// How long a call may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all: `Full` / `Empty`.
    No,
    /// Until it succeeds (or the queue is closed).
    Forever,
    /// Until the instant, then `Timeout(duration)`.
    Until(Instant, Duration),
}

impl Wait {
    /// At most `timeout` from now (forever if the instant cannot be represented).
    pub(crate) fn timeout(timeout: Duration) -> Wait {
        Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, |d| Wait::Until(d, timeout))
    }
}

/// The untyped queue. One handle is one member of the queue: it has one operation
/// in flight at a time (`busy`), so it is `Send` but not `Sync` (the cells).
#[derive(Debug)]
pub(crate) struct RawQueue {
    seg: Segment,
    /// Copied from the control block and validated at attach; never re-read from
    /// shared memory. Every address is computed from it.
    geo: QueueGeometry,
    /// This handle's member entry; `None` only between a forked child dropping its
    /// parent's entry and joining one of its own (if the table was full).
    member: RefCell<Option<Membership>>,
    /// An operation of this handle is in progress (reentrant calls are refused).
    busy: Cell<bool>,
}

/// Clears `busy` when an operation ends, however it ends.
struct Busy<'q>(&'q Cell<bool>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl RawQueue {
    /// Creates a queue segment (named, or anonymous if `name` is `None`) of
    /// `capacity` slots (at least [`MIN_CAPACITY`]) of `item_size` bytes. Sizes are
    /// checked before anything is created.
    pub(crate) fn create(
        opts: &Options,
        name: Option<&str>,
        flavor: Flavor,
        item_size: usize,
        capacity: usize,
    ) -> Result<RawQueue, QueueError> {
        let capacity = u64::try_from(capacity)
            .unwrap_or(u64::MAX)
            .max(MIN_CAPACITY);
        let item_size = u64::try_from(item_size).unwrap_or(u64::MAX);
        let geo = QueueGeometry::new(item_size, capacity)?;
        let data_len = usize::try_from(geo.data_len).map_err(|_| ParamsError::TooLarge {
            capacity,
            stride: geo.stride,
            max: geo.data_len,
        })?;
        let ns;
        let target = match name {
            Some(n) => {
                ns = opts.ns()?;
                Target::Named(&ns, n)
            }
            None => Target::Anonymous,
        };
        let spec = Spec {
            kind: KindSpec {
                kind: flavor.kind(),
                version: QUEUE_VERSION,
                params: {
                    let mut p = geo.to_params(flavor.element());
                    p[4] = flavor.fingerprint();
                    p
                },
            },
            descr: Dtype::U8.descr(),
            fortran: false,
            shape: &[data_len],
            persistent: opts.persistent,
            huge: opts.huge,
        };
        let seg = segment::create(target, &spec, |b| {
            let base = b.data.as_mut_ptr();
            if b.data.len() != data_len || base as usize % DATA_ALIGN != 0 {
                return Err(Error::corrupt(
                    "<new queue>",
                    Corruption::Misaligned {
                        offset: 0,
                        align: DATA_ALIGN,
                    },
                ));
            }
            // SAFETY: `base` is the zeroed data area of `data_len` bytes, private to
            // this process until published, aligned for the layout (checked above);
            // the geometry places the header and slots inside it.
            unsafe { layout(base, &geo) }.1.init();
            Ok(())
        })?;
        RawQueue::attach(seg, geo)
    }

    /// Attaches queue `name`, checked against `flavor`.
    pub(crate) fn open(opts: &Options, name: &str, flavor: Flavor) -> Result<RawQueue, QueueError> {
        let seg = segment::open(&opts.ns()?, name, &opts.expect(flavor.kind()))
            .map_err(|e| kind_error(e, flavor))?;
        RawQueue::validate(seg, flavor)
    }

    /// Attaches a queue from an open segment file (an anonymous queue's memfd).
    pub(crate) fn from_file(file: File, flavor: Flavor) -> Result<RawQueue, QueueError> {
        let opts = Options::new();
        let seg = segment::from_file(file, "<file>", &opts.expect(flavor.kind()))
            .map_err(|e| kind_error(e, flavor))?;
        RawQueue::validate(seg, flavor)
    }

    /// Checks an attached segment's queue parameters (from the validated control
    /// block copy) against `flavor` and the mapping, then joins it.
    fn validate(seg: Segment, flavor: Flavor) -> Result<RawQueue, QueueError> {
        let name = seg.label().to_string();
        let c = seg.control().ok_or_else(|| Error::NoControlBlock {
            name: name.clone(),
            what: "the queue",
        })?;
        let geo = QueueGeometry::from_control(c).map_err(|e| Error::corrupt(&name, e))?;
        if c.params[3] != u64::from(flavor.element())
            || c.params[4] != flavor.fingerprint()
            || !flavor.fits(geo.item_size)
        {
            return Err(QueueError::NotAQueue {
                name,
                expected: flavor.describe(),
            });
        }
        if !seg.is_writable() {
            return Err(Error::ReadOnly { name }.into());
        }
        RawQueue::attach(seg, geo)
    }

    /// Checks that the mapping holds the geometry, then joins the member table.
    fn attach(seg: Segment, geo: QueueGeometry) -> Result<RawQueue, QueueError> {
        let layout = seg.layout();
        if seg.data_ptr() as usize % DATA_ALIGN != 0 {
            return Err(Error::corrupt(
                seg.label(),
                Corruption::Misaligned {
                    offset: layout.data_offset,
                    align: DATA_ALIGN,
                },
            )
            .into());
        }
        if layout.data_len as u64 != geo.data_len {
            return Err(Error::corrupt(
                seg.label(),
                Corruption::Truncated {
                    needed: geo.data_len,
                    actual: layout.data_len as u64,
                },
            )
            .into());
        }
        let q = RawQueue {
            seg,
            geo,
            member: RefCell::new(None),
            busy: Cell::new(false),
        };
        let m = q.join()?;
        *q.member.borrow_mut() = Some(m);
        Ok(q)
    }

    /// The member table and the ring.
    #[inline]
    fn parts(&self) -> (&MemberTable, Ring<'_>) {
        // SAFETY: `attach` checked that the data area (mapped for as long as `self`)
        // is `geo.data_len` bytes, aligned for the layout, and `geo` was derived
        // with checked arithmetic; it is only accessed through the table's and the
        // ring's atomics, and payloads by their claimants.
        unsafe { layout(self.seg.data_ptr(), &self.geo) }
    }

    #[inline]
    pub(crate) fn ring(&self) -> Ring<'_> {
        self.parts().1
    }

    #[inline]
    pub(crate) fn header(&self) -> &RingHeader {
        self.ring().header()
    }

    pub(crate) fn geometry(&self) -> &QueueGeometry {
        &self.geo
    }

    /// Whether member `m` is dead, asked through the segment's own description
    /// (which holds no member locks, so every member's lock is visible to it).
    fn is_dead(&self, m: u32) -> bool {
        members::check(self.parts().0, m as usize, self.seg.file())
            == Member::Registered(Liveness::Dead)
    }

    /// Joins the member table through a description of its own. An entry whose
    /// previous member is dead is taken only once no unfinished claim is recorded
    /// in it; the newcomer first tries to finish such claims (see `ring.rs`).
    fn join(&self) -> Result<Membership, QueueError> {
        let (table, ring) = self.parts();
        let recovered = Cell::new(false);
        let m = Membership::join(table, MAX_MEMBERS, self.seg.file(), |slot| {
            // We hold `slot`'s lock: its previous member is gone, and counts as dead.
            let dead = |m: u32| m as usize == slot || self.is_dead(m);
            if ring.recover_member(slot, dead) {
                recovered.set(true);
            }
            ring.claims_finished(slot)
        });
        if recovered.get() {
            let rh = ring.header();
            notify(&rh.puts, &rh.get_waiters);
            notify(&rh.gets, &rh.put_waiters);
        }
        m.map_err(|_| QueueError::TooManyProcesses)
    }

    /// Starts an operation: refuses a reentrant call, and gives a handle copied
    /// into a forked child an entry of its own first. Returns the member index.
    #[inline]
    fn begin(&self) -> Result<(Busy<'_>, u32), QueueError> {
        if self.busy.replace(true) {
            return Err(QueueError::Reentrant);
        }
        let busy = Busy(&self.busy);
        let current = self
            .member
            .borrow()
            .as_ref()
            .filter(|m| !m.is_stale())
            .map(|m| m.slot() as u32);
        let me = match current {
            Some(me) => me,
            None => self.rejoin()?,
        };
        Ok((busy, me))
    }

    /// After `fork`: drops the parent's entry (closing this process's copy of its
    /// description, so the parent's liveness is its own again) and joins anew.
    #[cold]
    fn rejoin(&self) -> Result<u32, QueueError> {
        let mut member = self.member.borrow_mut();
        *member = None;
        let m = self.join()?;
        let me = m.slot() as u32;
        *member = Some(m);
        Ok(me)
    }

    /// Claims up to `max` slots for producing (or consuming), waiting as allowed.
    fn claim(&self, put: bool, max: u64, me: u32, wait: Wait) -> Result<(u64, u64), QueueError> {
        let ring = self.ring();
        let rh = ring.header();
        let (counter, waiters) = if put {
            (&rh.gets, &rh.put_waiters)
        } else {
            (&rh.puts, &rh.get_waiters)
        };
        let step = |ring: &Ring<'_>| {
            if put {
                ring.claim_put(max, me)
            } else {
                ring.claim_get(max, me)
            }
        };
        let mut spin_until: Option<Instant> = None;
        let mut spins = 0u32;
        loop {
            let closed = rh.closed.0.load(Ordering::Acquire) != 0;
            if put && closed {
                return Err(QueueError::Closed);
            }
            if let Step::Done(r) = step(&ring) {
                return Ok(r);
            }
            if !put && closed && ring.len() == 0 {
                return Err(QueueError::Closed);
            }
            let deadline = match wait {
                Wait::No if put => return Err(QueueError::Full),
                Wait::No => return Err(QueueError::Empty),
                Wait::Forever => None,
                Wait::Until(d, t) => Some((d, t)),
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
            if let Step::Done(r) = step(&ring) {
                waiters.0.fetch_sub(1, Ordering::SeqCst);
                return Ok(r);
            }
            let slice = match deadline {
                Some((d, t)) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(SLICE),
                    _ => {
                        waiters.0.fetch_sub(1, Ordering::SeqCst);
                        return Err(QueueError::Timeout(t));
                    }
                },
                None => SLICE,
            };
            let timed_out = wait_while_equal(&counter.0, seen, Some(slice)).is_err();
            waiters.0.fetch_sub(1, Ordering::SeqCst);
            if timed_out {
                self.recover_blocker(put);
            }
        }
    }

    /// A blocked call found no progress for a slice: finish the step of a dead
    /// member that holds the slot it waits for, and wake the other side.
    #[cold]
    fn recover_blocker(&self, put: bool) {
        let ring = self.ring();
        let dead = |m| self.is_dead(m);
        let rh = ring.header();
        if put {
            if ring.recover_dead_consumer(dead) {
                notify(&rh.gets, &rh.put_waiters);
            }
        } else if ring.recover_dead_producer(dead) {
            notify(&rh.puts, &rh.get_waiters);
        }
    }

    /// Puts up to `max` items: `fill(k, payload)` writes the `k`-th into its slot
    /// (`item_size` bytes) and returns its length. Returns how many were put.
    pub(crate) fn put_batch(
        &self,
        max: u64,
        wait: Wait,
        mut fill: impl FnMut(u64, &mut [u8]) -> u32,
    ) -> Result<u64, QueueError> {
        let (_busy, me) = self.begin()?;
        let (pos, n) = self.claim(true, max, me, wait)?;
        let mut op = Finish::new(self, me, true, pos, n);
        for k in 0..n {
            let p = pos.wrapping_add(k);
            // SAFETY: we own positions pos..pos+n (won the head CAS; `claim_put`
            // never returns more than `capacity` of them, so their slots are
            // distinct), and the previous payload borrow has ended.
            let len = fill(k, unsafe { op.ring.payload(p) });
            op.ring.publish(p, len);
            op.next = p.wrapping_add(1);
        }
        Ok(n)
    }

    /// Gets up to `max` items: `take(k, payload, len)` reads the `k`-th in place
    /// (`item_size` bytes, of which the producer wrote `len`, clamped to the item
    /// size). Returns how many were taken.
    pub(crate) fn get_batch(
        &self,
        max: u64,
        wait: Wait,
        mut take: impl FnMut(u64, &[u8], usize),
    ) -> Result<u64, QueueError> {
        let (_busy, me) = self.begin()?;
        let (pos, n) = self.claim(false, max, me, wait)?;
        let mut op = Finish::new(self, me, false, pos, n);
        for k in 0..n {
            let p = pos.wrapping_add(k);
            let len = op.ring.item_len(p);
            // SAFETY: we own positions pos..pos+n (won the tail CAS), as in put_batch.
            take(k, unsafe { op.ring.payload(p) }, len);
            op.ring.release(p);
            op.next = p.wrapping_add(1);
        }
        Ok(n)
    }

    /// Closes the queue and wakes every waiter.
    pub(crate) fn close(&self) {
        let rh = self.header();
        rh.closed.0.store(1, Ordering::Release);
        rh.puts.0.fetch_add(1, Ordering::SeqCst);
        rh.gets.0.fetch_add(1, Ordering::SeqCst);
        wake_all(&rh.puts.0);
        wake_all(&rh.gets.0);
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The segment's path (`None` for anonymous queues).
    pub(crate) fn path(&self) -> Option<PathBuf> {
        self.seg.path()
    }
}

impl Drop for RawQueue {
    fn drop(&mut self) {
        if let Some(m) = self.member.get_mut().take() {
            // A copy of a parent's handle in a forked child leaves nothing (the
            // entry is the parent's; `leave` checks).
            m.leave(self.parts().0);
        }
    }
}

/// The member table and ring of a queue whose data area starts at `base`.
///
/// # Safety
/// `base` is aligned to [`DATA_ALIGN`] and valid for reads and writes of
/// `geo.data_len` bytes for `'a`, accessed only through member tables and rings;
/// `geo` came from [`QueueGeometry`]'s checked constructors.
unsafe fn layout<'a>(base: *mut u8, geo: &QueueGeometry) -> (&'a MemberTable, Ring<'a>) {
    // SAFETY: the table is at offset 0 and the header at `ring_offset` (a multiple
    // of DATA_ALIGN, asserted), both inside the area and aligned; both are atomics
    // only, valid for any bytes. The slots (16-aligned: `slots_offset` and `stride`
    // are multiples of 16) end at `data_len`; `stride >= 16 + item_size`; and
    // `capacity >= MIN_CAPACITY`: the contract of `Ring::new`. All offsets are below
    // `data_len <= MAX_DATA_BYTES`, so they fit in `usize`.
    unsafe {
        let table = &*base.cast::<MemberTable>();
        let hdr = &*base.add(geo.ring_offset as usize).cast::<RingHeader>();
        let ring = Ring::new(
            hdr,
            base.add(geo.slots_offset as usize),
            geo.capacity,
            geo.stride as usize,
            geo.item_size as usize,
        );
        (table, ring)
    }
}

/// A segment of another kind, as the queue error a caller expects.
fn kind_error(e: Error, flavor: Flavor) -> QueueError {
    match e {
        Error::KindMismatch { name, found, .. } => QueueError::NotAQueue {
            name,
            expected: format!("{} (it is a {found})", flavor.describe()),
        },
        e => QueueError::Segment(e),
    }
}

/// Bumps `counter` and wakes its sleepers, if any.
fn notify(counter: &Padded<AtomicU32>, waiters: &Padded<AtomicU32>) {
    counter.0.fetch_add(1, Ordering::SeqCst);
    if waiters.0.load(Ordering::SeqCst) > 0 {
        wake_all(&counter.0);
    }
}

/// The end of a put or get operation over positions `next..end`: withdraws the
/// intent and wakes the other side. If the caller's closure unwound (a panic in
/// `put_with`/`get_with`), the positions not finished are finished here, so this
/// live process does not hold them forever: unwritten items are published as
/// lost, unread ones released as abandoned.
struct Finish<'q> {
    ring: Ring<'q>,
    me: u32,
    put: bool,
    next: u64,
    end: u64,
}

impl<'q> Finish<'q> {
    fn new(q: &'q RawQueue, me: u32, put: bool, pos: u64, n: u64) -> Finish<'q> {
        Finish {
            ring: q.ring(),
            me,
            put,
            next: pos,
            end: pos.wrapping_add(n),
        }
    }
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let rh = self.ring.header();
        let mut p = self.next;
        while p != self.end {
            if self.put {
                self.ring.publish_lost(p);
            } else {
                self.ring.release(p);
                rh.abandoned.0.fetch_add(1, Ordering::Relaxed);
            }
            p = p.wrapping_add(1);
        }
        self.ring.done(self.me, self.put);
        if self.put {
            notify(&rh.puts, &rh.get_waiters);
        } else {
            notify(&rh.gets, &rh.put_waiters);
        }
    }
}

/// The methods `Queue<T>` and `ByteQueue` share, forwarding to their `raw` queue.
macro_rules! handle_methods {
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
            self.raw.geometry().capacity as usize
        }

        /// Closes the queue: puts fail with `Closed`; gets drain what is left, then
        /// fail with `Closed`. Wakes every waiter.
        pub fn close(&self) {
            self.raw.close()
        }

        /// Whether the queue was closed.
        pub fn is_closed(&self) -> bool {
            self.raw
                .header()
                .closed
                .0
                .load(std::sync::atomic::Ordering::Acquire)
                != 0
        }

        /// Items lost because their producer died after claiming a slot (or its
        /// `put_with` closure panicked).
        pub fn lost(&self) -> u64 {
            self.raw
                .header()
                .lost
                .0
                .load(std::sync::atomic::Ordering::Relaxed)
        }

        /// Items taken by consumers that died before finishing with them (or whose
        /// `get_with` closure panicked).
        pub fn abandoned(&self) -> u64 {
            self.raw
                .header()
                .abandoned
                .0
                .load(std::sync::atomic::Ordering::Relaxed)
        }

        /// The segment name (`None` for an anonymous queue).
        pub fn name(&self) -> Option<&str> {
            self.raw.segment().name()
        }

        /// The segment file's path (`None` for an anonymous queue).
        pub fn path(&self) -> Option<std::path::PathBuf> {
            self.raw.path()
        }

        /// The pages behind the segment (see [`crate::SharedArray::backing`]).
        pub fn backing(&self) -> &crate::segment::Backing {
            self.raw.segment().backing()
        }

        /// Whether dropping this handle removes the name (the creating handle).
        pub fn is_owner(&self) -> bool {
            self.raw.segment().is_owner()
        }

        /// Removes the name now: attached handles keep working, new opens fail with
        /// `NotFound`. A name since re-created by someone else is left alone.
        pub fn unlink(&self) -> Result<(), QueueError> {
            Ok(self.raw.segment().unlink()?)
        }

        /// This handle's open segment file: for an anonymous queue, the memfd to
        /// hand to another process (inherit it, or open `/proc/<pid>/fd/<n>`), which
        /// attaches with `from_file`.
        pub fn file(&self) -> &std::fs::File {
            self.raw.segment().file()
        }
    };
}

pub(crate) use handle_methods;
