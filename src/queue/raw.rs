//! The untyped queue both front ends share: a segment holding a member table, a
//! ring header and slots; attach-time validation; membership (joining, rejoining
//! after `fork`, reusing entries); the blocking claim loop with its recovery of dead
//! members' slots; the put/get batches.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::ring::{Ring, RingHeader, Step};
use super::QueueError;
use crate::error::Error;
use crate::format::control::ObjectKind;
use crate::format::dtype::Dtype;
use crate::format::objects::{
    ParamsError, QueueGeometry, MAX_MEMBERS, MEMBER_TABLE_BYTES, MIN_CAPACITY, QUEUE_VERSION,
};
use crate::format::Corruption;
use crate::segment::liveness::Liveness;
use crate::segment::{self, KindSpec, Mapping, Options, Spec, Target};
use crate::sync::members::{self, Member, MemberTable, Membership};
use crate::sync::{wait_while_equal, wake_all};
use crate::sys::proc;
// The crate's deadline type, for the queue handles too (`super::raw::Wait`).
pub(crate) use crate::sync::Wait;

/// How long a blocked call spins before it sleeps on the futex: long enough to
/// catch a peer that is about to answer (ping-pong), short enough to be noise.
const SPIN: Duration = Duration::from_micros(20);
/// How long a blocked call sleeps before it checks for a dead holder.
const SLICE: Duration = Duration::from_millis(10);
/// The first sleep of a call blocked behind a slot that the other side has
/// claimed but not finished (it doubles up to `SLICE`; see `ring.rs`, "Waiting
/// and waking").
const NAP: Duration = Duration::from_micros(50);
/// `RawQueue::me` while the handle has no entry.
const NO_MEMBER: u32 = u32::MAX;

/// The data area's alignment this layout needs (the ring header's).
const DATA_ALIGN: usize = align_of::<RingHeader>();

const _: () = {
    assert!(size_of::<MemberTable>() == MEMBER_TABLE_BYTES);
    assert!(MEMBER_TABLE_BYTES.is_multiple_of(DATA_ALIGN));
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

/// The untyped queue. One handle is one member of the queue: it has one operation
/// in flight at a time (`busy`), so it is `Send` but not `Sync` (the cells).
#[derive(Debug)]
pub(crate) struct RawQueue {
    seg: Mapping,
    /// Copied from the control block and validated at attach; never re-read from
    /// shared memory. Every address is computed from it.
    geo: QueueGeometry,
    /// This handle's member entry; `None` only between a forked child dropping its
    /// parent's entry and joining one of its own (if the table was full).
    member: RefCell<Option<Membership>>,
    /// `member`'s slot (`NO_MEMBER` if none) and fork generation, copied for the
    /// fast path's check.
    me: Cell<u32>,
    generation: Cell<u64>,
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
            if b.data.len() != data_len || !(base as usize).is_multiple_of(DATA_ALIGN) {
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
    pub(crate) fn from_file(
        opts: &Options,
        file: File,
        flavor: Flavor,
    ) -> Result<RawQueue, QueueError> {
        let seg = segment::from_file(file, "<file>", &opts.expect(flavor.kind()))
            .map_err(|e| kind_error(e, flavor))?;
        RawQueue::validate(seg, flavor)
    }

    /// Checks an attached segment's queue parameters (from the validated control
    /// block copy) against `flavor` and the mapping, then joins it.
    fn validate(seg: Mapping, flavor: Flavor) -> Result<RawQueue, QueueError> {
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
    fn attach(seg: Mapping, geo: QueueGeometry) -> Result<RawQueue, QueueError> {
        let layout = seg.layout();
        if !(seg.data_ptr() as usize).is_multiple_of(DATA_ALIGN) {
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
            me: Cell::new(NO_MEMBER),
            generation: Cell::new(0),
            busy: Cell::new(false),
        };
        let m = q.join()?;
        q.set_member(Some(m));
        Ok(q)
    }

    /// Installs this handle's entry (and its copies for the fast path).
    fn set_member(&self, m: Option<Membership>) {
        let mut member = self.member.borrow_mut();
        self.me
            .set(m.as_ref().map_or(NO_MEMBER, |m| m.slot() as u32));
        self.generation
            .set(m.as_ref().map_or(0, Membership::fork_generation));
        *member = m;
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
            let reusable = ring.claims_finished(slot);
            if reusable {
                // A previous member killed while waiting left its bits set.
                let bit = 1u64 << slot;
                ring.clear_waiters(true, bit);
                ring.clear_waiters(false, bit);
            }
            reusable
        });
        if recovered.get() {
            notify(&ring, true);
            notify(&ring, false);
        }
        m.map_err(|_| QueueError::TooManyProcesses)
    }

    /// Starts an operation: refuses a reentrant call, and gives a handle copied
    /// into a forked child an entry of its own first. Returns the member index.
    #[inline]
    fn begin(&self) -> Result<(Busy<'_>, u32), QueueError> {
        let me = self.me.get();
        // `join` registered the fork counter, so its plain load is enough here.
        if self.busy.get()
            || me == NO_MEMBER
            || self.generation.get() != proc::fork_generation_registered()
        {
            return self.begin_slow();
        }
        self.busy.set(true);
        Ok((Busy(&self.busy), me))
    }

    /// `begin` for a reentrant call, or a handle without an entry of its own.
    #[cold]
    #[inline(never)]
    fn begin_slow(&self) -> Result<(Busy<'_>, u32), QueueError> {
        if self.busy.replace(true) {
            return Err(QueueError::Reentrant);
        }
        let busy = Busy(&self.busy);
        Ok((busy, self.rejoin()?))
    }

    /// After `fork`: drops the parent's entry (closing this process's copy of its
    /// description, so the parent's liveness is its own again) and joins anew.
    #[cold]
    #[inline(never)]
    fn rejoin(&self) -> Result<u32, QueueError> {
        self.set_member(None);
        let m = self.join()?;
        let me = m.slot() as u32;
        self.set_member(Some(m));
        Ok(me)
    }

    /// Claims up to `max` slots for producing (or consuming), without waiting;
    /// `None` if blocked (or, for a put, closed): then `claim_slow` waits as allowed.
    #[inline]
    fn try_claim(&self, ring: &Ring<'_>, put: bool, max: u64, me: u32) -> Option<(u64, u64)> {
        let step = if put {
            if ring.header().closed.0.load(Ordering::Acquire) != 0 {
                return None;
            }
            ring.claim_put(max, me)
        } else {
            ring.claim_get(max, me)
        };
        match step {
            Step::Done(r) => Some(r),
            Step::Blocked => None,
        }
    }

    /// Why a blocked put (`put`) or get ends now: the queue is closed (for a get:
    /// and drained).
    fn ended(&self, ring: &Ring<'_>, put: bool) -> Option<QueueError> {
        let closed = ring.header().closed.0.load(Ordering::Acquire) != 0;
        (closed && (put || ring.len() == 0)).then_some(QueueError::Closed)
    }

    /// The claim found its slot not ready: spin for up to `SPIN`, then sleep on the
    /// futex word of the other side (see `ring.rs`, "Waiting and waking"), checking
    /// every `SLICE` for a dead member holding the slot.
    #[cold]
    #[inline(never)]
    fn claim_slow(
        &self,
        put: bool,
        max: u64,
        me: u32,
        wait: Wait,
    ) -> Result<(u64, u64), QueueError> {
        let ring = self.ring();
        let rh = ring.header();
        let counter = if put { &rh.gets.0 } else { &rh.puts.0 };
        let step = || {
            if put {
                ring.claim_put(max, me)
            } else {
                ring.claim_get(max, me)
            }
        };
        // The fast path's attempt may have given up early (a lost slot, a lost
        // race): one full attempt first. A put to a closed queue fails first, a
        // get drains it first.
        if put {
            if let Some(e) = self.ended(&ring, true) {
                return Err(e);
            }
        }
        if let Step::Done(r) = step() {
            return Ok(r);
        }
        if !put {
            // The failed claim may have skipped slots lost with their producer,
            // releasing them: producers may be waiting for those.
            wake_waiting(self, &ring, true);
            if let Some(e) = self.ended(&ring, false) {
                return Err(e);
            }
        }
        let deadline = match wait {
            Wait::No if put => return Err(QueueError::Full),
            Wait::No => return Err(QueueError::Empty),
            Wait::Forever => None,
            Wait::Until(d, t) => Some((d, t)),
        };
        // The clock is read only after 64 spins (a read costs about as much as a
        // put here): a peer that answers within them (ping-pong) costs none.
        let mut start = None;
        let mut spins = 0u32;
        let start = loop {
            std::hint::spin_loop();
            if let Step::Done(r) = step() {
                return Ok(r);
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                if let Some(e) = self.ended(&ring, put) {
                    return Err(e);
                }
                let now = Instant::now();
                if let Some((d, t)) = deadline {
                    if now >= d {
                        return Err(QueueError::Timeout(t));
                    }
                }
                let start = *start.get_or_insert(now);
                if now >= start + SPIN {
                    break start;
                }
            }
        };
        let mut nap = NAP;
        let mut recover_at = start + SLICE;
        loop {
            ring.register_waiter(put, me);
            let seen = counter.load(Ordering::SeqCst);
            let outcome = match self.ended(&ring, put) {
                Some(e) => Some(Err(e)),
                None => match step() {
                    Step::Done(r) => Some(Ok(r)),
                    Step::Blocked => None,
                },
            };
            if let Some(outcome) = outcome {
                ring.unregister_waiter(put, me);
                return outcome;
            }
            let idle = ring.idle(put);
            let mut slice = if idle { SLICE } else { nap };
            if let Some((d, t)) = deadline {
                match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => slice = slice.min(left),
                    _ => {
                        ring.unregister_waiter(put, me);
                        return Err(QueueError::Timeout(t));
                    }
                }
            }
            let _ = wait_while_equal(counter, seen, Some(slice));
            ring.unregister_waiter(put, me);
            if !idle {
                nap = (nap * 2).min(SLICE);
            }
            let now = Instant::now();
            if now >= recover_at {
                self.recover_blocker(put);
                recover_at = now + SLICE;
            }
        }
    }

    /// A blocked call made no progress for a slice: finish the step of a dead
    /// member that holds the slot it waits for, and wake the others waiting.
    #[cold]
    fn recover_blocker(&self, put: bool) {
        let ring = self.ring();
        let dead = |m| self.is_dead(m);
        let recovered = if put {
            ring.recover_dead_consumer(dead)
        } else {
            ring.recover_dead_producer(dead)
        };
        if recovered {
            notify(&ring, put);
        }
    }

    /// Clears the waiter bits (in `mask`, of those waiting to put if `put`) of
    /// entries nobody owns: members killed while waiting. Called when a wake-up
    /// found no sleeper; a bit left set would cost every operation of the other
    /// side a futex call.
    #[cold]
    fn clear_dead_waiters(&self, ring: &Ring<'_>, put: bool, mask: u64) {
        let Ok(member) = self.member.try_borrow() else {
            return;
        };
        let Some(member) = member.as_ref() else {
            return;
        };
        for slot in 0..MAX_MEMBERS.min(64) {
            let bit = 1u64 << slot;
            if mask & bit != 0 {
                member.while_unowned(slot, || ring.clear_waiters(put, bit));
            }
        }
    }

    /// Puts one item: `fill(payload)` writes it into its slot (`item_size` bytes)
    /// and returns its length. The one-item twin of `put_batch`, with nothing to
    /// count.
    #[inline]
    pub(crate) fn put_one(
        &self,
        wait: Wait,
        fill: impl FnOnce(&mut [u8]) -> u32,
    ) -> Result<(), QueueError> {
        let (_busy, me) = self.begin()?;
        let ring = self.ring();
        let open = ring.header().closed.0.load(Ordering::Acquire) == 0;
        let c = match open.then(|| ring.try_claim_put_one(me)).flatten() {
            Some(c) => c,
            None => ring.claimed(self.claim_slow(true, 1, me, wait)?.0),
        };
        let mut op = Finish::new(self, ring, me, true, c.pos, 1);
        // SAFETY: we own position `c.pos` (won the head CAS), and hold no other
        // borrow of its payload.
        let len = fill(unsafe { ring.claimed_payload(&c) });
        ring.publish_claimed(&c, len);
        op.next = op.end;
        Ok(())
    }

    /// Gets one item: `take(payload, len)` reads it in place (`item_size` bytes, of
    /// which the producer wrote `len`, clamped to the item size). The one-item twin
    /// of `get_batch`.
    #[inline]
    pub(crate) fn get_one<R>(
        &self,
        wait: Wait,
        take: impl FnOnce(&[u8], usize) -> R,
    ) -> Result<R, QueueError> {
        let (_busy, me) = self.begin()?;
        let ring = self.ring();
        let c = match ring.try_claim_get_one(me) {
            Some(c) => c,
            None => ring.claimed(self.claim_slow(false, 1, me, wait)?.0),
        };
        let mut op = Finish::new(self, ring, me, false, c.pos, 1);
        let len = ring.claimed_len(&c);
        // SAFETY: we own position `c.pos` (won the tail CAS), as in `put_one`.
        let r = take(unsafe { ring.claimed_payload(&c) }, len);
        ring.release_claimed(&c);
        op.next = op.end;
        Ok(r)
    }

    /// Puts up to `max` items: `fill(k, payload)` writes the `k`-th into its slot
    /// (`item_size` bytes) and returns its length. Returns how many were put.
    #[inline]
    pub(crate) fn put_batch(
        &self,
        max: u64,
        wait: Wait,
        mut fill: impl FnMut(u64, &mut [u8]) -> u32,
    ) -> Result<u64, QueueError> {
        let (_busy, me) = self.begin()?;
        let ring = self.ring();
        let (pos, n) = match self.try_claim(&ring, true, max, me) {
            Some(r) => r,
            None => self.claim_slow(true, max, me, wait)?,
        };
        let mut op = Finish::new(self, ring, me, true, pos, n);
        for k in 0..n {
            let c = ring.claimed(pos.wrapping_add(k));
            // SAFETY: we own positions pos..pos+n (won the head CAS; `claim_put`
            // never returns more than `capacity` of them, so their slots are
            // distinct), and the previous payload borrow has ended.
            let len = fill(k, unsafe { ring.claimed_payload(&c) });
            ring.publish_claimed(&c, len);
            op.next = c.pos.wrapping_add(1);
        }
        Ok(n)
    }

    /// Gets up to `max` items: `take(k, payload, len)` reads the `k`-th in place
    /// (`item_size` bytes, of which the producer wrote `len`, clamped to the item
    /// size). Returns how many were taken.
    #[inline]
    pub(crate) fn get_batch(
        &self,
        max: u64,
        wait: Wait,
        mut take: impl FnMut(u64, &[u8], usize),
    ) -> Result<u64, QueueError> {
        let (_busy, me) = self.begin()?;
        let ring = self.ring();
        let (pos, n) = match self.try_claim(&ring, false, max, me) {
            Some(r) => r,
            None => self.claim_slow(false, max, me, wait)?,
        };
        let mut op = Finish::new(self, ring, me, false, pos, n);
        for k in 0..n {
            let c = ring.claimed(pos.wrapping_add(k));
            let len = ring.claimed_len(&c);
            // SAFETY: we own positions pos..pos+n (won the tail CAS), as in put_batch.
            take(k, unsafe { ring.claimed_payload(&c) }, len);
            ring.release_claimed(&c);
            op.next = c.pos.wrapping_add(1);
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

    pub(crate) fn segment(&self) -> &Mapping {
        &self.seg
    }

    pub(crate) fn segment_mut(&mut self) -> &mut Mapping {
        &mut self.seg
    }

    /// Items in the queue (approximate while others are active).
    pub(crate) fn len(&self) -> usize {
        self.ring().len() as usize
    }

    /// The capacity in items.
    pub(crate) fn capacity(&self) -> usize {
        self.geo.capacity as usize
    }

    /// Whether the queue was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.header().closed.0.load(Ordering::Acquire) != 0
    }

    /// Items lost because their producer died after claiming a slot.
    pub(crate) fn lost(&self) -> u64 {
        self.header().lost.0.load(Ordering::Relaxed)
    }

    /// Items taken by consumers that died before finishing with them.
    pub(crate) fn abandoned(&self) -> u64 {
        self.header().abandoned.0.load(Ordering::Relaxed)
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

/// The futex word of those waiting to put (`put`: bumped by gets) or to get.
fn futex_word<'a>(ring: &Ring<'a>, put: bool) -> &'a AtomicU32 {
    let rh = ring.header();
    if put {
        &rh.gets.0
    } else {
        &rh.puts.0
    }
}

/// Bumps the futex word of those waiting to put (`put`) or get, and wakes them if
/// any are registered (recoveries: whether or not this member made a claim).
fn notify(ring: &Ring<'_>, put: bool) {
    futex_word(ring, put).fetch_add(1, Ordering::SeqCst);
    if ring.waiting(put) != 0 {
        wake_all(futex_word(ring, put));
    }
}

/// The end of an operation (after its CAS and stamp stores): wakes the members
/// waiting to put (`put`) or get, if any; else nothing (no write, no syscall).
#[inline]
fn wake_waiting(q: &RawQueue, ring: &Ring<'_>, put: bool) {
    let mask = ring.waiting(put);
    if mask != 0 {
        wake(q, ring, put, mask);
    }
}

/// Wakes the members of `mask` waiting to put (`put`) or get. If none was asleep,
/// some bits may be those of members killed while waiting: clear those.
#[cold]
#[inline(never)]
fn wake(q: &RawQueue, ring: &Ring<'_>, put: bool, mask: u64) {
    let word = futex_word(ring, put);
    word.fetch_add(1, Ordering::SeqCst);
    if wake_all(word) == 0 {
        q.clear_dead_waiters(ring, put, mask);
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
    me: u32,
    put: bool,
    next: u64,
    end: u64,
}

impl<'q> Finish<'q> {
    #[inline]
    fn new(q: &'q RawQueue, ring: Ring<'q>, me: u32, put: bool, pos: u64, n: u64) -> Finish<'q> {
        Finish {
            q,
            ring,
            me,
            put,
            next: pos,
            end: pos.wrapping_add(n),
        }
    }
}

impl Drop for Finish<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.next != self.end {
            self.unwind();
        }
        self.ring.done(self.me, self.put);
        // A put wakes waiting consumers; a get, waiting producers.
        wake_waiting(self.q, &self.ring, !self.put);
    }
}

impl Finish<'_> {
    /// The caller's closure unwound: finish the positions it did not.
    #[cold]
    fn unwind(&mut self) {
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
        self.next = p;
    }
}
