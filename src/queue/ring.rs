//! The bounded MPMC ring (Vyukov-style sequence stamps) over raw memory: pure index
//! logic, no syscalls, model checked with loom on heap memory.
//!
//! Layout (all `#[repr(C)]`, offsets only, sizes asserted against
//! `format::objects`): a [`RingHeader`] (control words and one [`Intent`] per
//! member) followed by `capacity` slots of `stride` bytes: a [`SlotHead`] (sequence
//! stamp + length) then `item_size` payload bytes.
//!
//! ## Slot state table (position `p`, capacity `c`)
//! | `seq` of slot `p % c` | meaning | next transition |
//! |---|---|---|
//! | `p` | free for the producer of position `p` | producer wins `head: p → p+1`, writes, stores `p+1` (Release) |
//! | `p+1` | holds the item of position `p` | consumer wins `tail: p → p+1`, reads, stores `p+c` (Release) |
//! | `p+1`, `LOST` flag | the producer of `p` died after claiming | consumer skips it (counted in `lost`) |
//!
//! Position `p` is *claimed and unfinished* for producing when `head > p` and
//! `seq == p`, for consuming when `tail > p` and `seq & !LOST == p+1`. Stamps only
//! grow, so once a position is finished it stays finished.
//!
//! ## Who holds a slot: intents
//! Before its `head`/`tail` CAS a member announces an [`Intent`] (first position + 1
//! and count) in its own cache line, and withdraws it only after the last stamp
//! store of the operation ([`Ring::done`]), or when it gives up (`Blocked`). So while
//! a slot is claimed but unfinished, the member that won it has an intent covering
//! it. Others' intents may cover it too (a member whose CAS for the same position
//! failed, before it retries), so a peer finishes the step for the holder only when
//! *every* member whose intent covers the slot is dead: a dead producer's slot is
//! published as `LOST`, a dead consumer's slot is released. A dying process thus
//! never wedges the ring, whatever instruction it died at.
//!
//! This needs one operation at a time per member: two threads (or a closure that
//! calls back into the queue) sharing a member would overwrite each other's intent.
//! The handles are therefore `!Sync` and refuse reentrant calls.
//!
//! ## Reusing a dead member's entry
//! A member's intent is the only record of the positions it holds, so its entry
//! (its [`Intent`]) is handed to a newcomer only when no unfinished position is
//! covered by it ([`Ring::claims_finished`]); the newcomer first tries to finish
//! them itself ([`Ring::recover_member`]), under the same rule as any recoverer
//! (every covering member dead). Otherwise the newcomer's first announcement
//! would erase the record, and the slot would stay blocked for good.
//!
//! The newcomer decides while holding the entry's member lock, so the entry has no
//! writer: the dead member cannot act, and no other process can own the entry. Its
//! positions can only move from unfinished to finished (a recoverer's CAS), never
//! back, so a "finished" verdict cannot be invalidated by a racing recoverer; an
//! "unfinished" one only makes the newcomer take another entry. A recoverer that
//! read the old intent and then finds the entry alive (the newcomer's lock) backs
//! off, which is harmless: the newcomer only took the entry because none of its
//! positions needed recovery.
//!
//! ## Memory ordering
//! Stamps are stored with Release after the payload is written/read and loaded with
//! Acquire before it is read/overwritten. An intent is stored (Release) before the
//! `head`/`tail` CAS (SeqCst for waking, below; AcqRel would do here), so a
//! recoverer that loads `head`/`tail` (Acquire) past a position sees the winner's
//! intent or a later value of that word; later values are
//! written (Release) only after the winner's stamp store, so a recoverer that reads
//! one also sees the new stamp and its recovery CAS fails, as it must. Stamp values
//! never repeat, so a recovery CAS against a stale stamp always fails.
//!
//! ## Waiting and waking
//! A put or get that finds its slot not ready spins briefly, then *registers*: it
//! sets its bit in `get_waiters` (a consumer) or `put_waiters` (a producer)
//! (SeqCst), reads the futex word it will sleep on (`puts` / `gets`), tries its
//! claim once more, and then asks [`Ring::idle`], which loads `tail` and `head`
//! (SeqCst):
//!
//! | waiter | `idle` (may sleep until woken) | otherwise |
//! |---|---|---|
//! | consumer | `head == tail`: no position past the consumed ones is claimed | a producer is between its CAS and its stamp store (or died there): sleep briefly |
//! | producer | `head - tail >= capacity`: the position whose slot it needs is not claimed by a consumer | a consumer is between its CAS and its release (or died there): sleep briefly |
//!
//! Every put or get ends with [`Ring::waiting`]: a SeqCst load of the other
//! side's mask, after its own SeqCst `head`/`tail` CAS. If the mask is not zero it
//! bumps the futex word and wakes its sleepers; if it is zero (nobody waits) it
//! makes no syscall and writes nothing shared: one atomic read-modify-write (the
//! CAS) per operation. This loses no wake-up: the CAS that frees what an idle
//! waiter waits for comes after the waiter's `idle` loads in the SeqCst order (or
//! `idle` would have seen it), so its maker's mask load, later still, sees the
//! waiter's bit, set before those loads; and its futex bump comes after the
//! waiter read the futex word, so the sleep returns at once or is woken. A
//! non-idle waiter has no such guarantee (the CAS came first, and its maker may
//! have read the mask before the waiter registered), so it sleeps for a short,
//! doubling slice: by then the stamp store has landed, or its maker is stuck or
//! dead and recovery takes over. `close` and recoveries bump and wake
//! unconditionally. A member killed while registered leaves its bit set; its
//! entry's next owner clears it, and so does a waker that woke nobody and finds
//! the entry unowned (see `raw.rs`), so a dead sleeper costs its peers no
//! syscall per operation for long. Loom models SeqCst accesses as AcqRel, so under
//! loom a SeqCst fence follows the claim CAS and the registration
//! (`dekker_fence`); the loom models of a sleeping consumer and producer check
//! that no wake-up is lost, and fail if `idle` always allows a long sleep.
//!
//! ## Hostile peers
//! Nothing read from the ring decides a memory address: positions are reduced
//! modulo the capacity the caller copied at attach, batch sizes are capped at that
//! capacity, and the length a consumer reads is clamped to the copied item size. A
//! peer that scribbles over the header can lose or duplicate items, never make this
//! process touch memory outside the ring. Position arithmetic wraps rather than
//! overflows for the same reason, and a claim that finds a slot a lap ahead while
//! `head`/`tail` did not move (impossible unless stamps were forged) gives up
//! (`Blocked`) instead of spinning, so timed calls still time out.

use std::mem::{align_of, offset_of, size_of};

use crate::format::objects::{MAX_MEMBERS, RING_HEADER_BYTES, SLOT_HEAD_BYTES};
use crate::primitive::{dekker_fence, AtomicU32, AtomicU64, Ordering};

/// Flag in the high bit of a stamp: the slot's item was lost with its producer.
pub(crate) const LOST: u64 = 1 << 63;

/// Intents in a ring header: one per member. Under loom a handful, since a model
/// explores every access to each.
#[cfg(not(loom))]
pub(crate) const INTENTS: usize = MAX_MEMBERS;
#[cfg(loom)]
pub(crate) const INTENTS: usize = 4;

/// A control word on its own cache-line pair (crossbeam's `CachePadded` size on
/// x86_64, which prefetches lines in pairs).
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct Padded<T>(pub(crate) T);

/// Start of the ring region.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RingHeader {
    pub(crate) head: Padded<AtomicU64>,
    pub(crate) tail: Padded<AtomicU64>,
    /// Bumped by a put that found consumers waiting (and by `close` and
    /// recoveries); consumers sleep on it (see "Waiting and waking").
    pub(crate) puts: Padded<AtomicU32>,
    /// Bumped by a get that found producers waiting; producers sleep on it.
    pub(crate) gets: Padded<AtomicU32>,
    /// Members waiting for a put (bit `m` for member `m`).
    pub(crate) get_waiters: Padded<AtomicU64>,
    /// Members waiting for a get (bit `m` for member `m`).
    pub(crate) put_waiters: Padded<AtomicU64>,
    pub(crate) closed: Padded<AtomicU32>,
    /// Items lost to producers that died after claiming a slot.
    pub(crate) lost: Padded<AtomicU64>,
    /// Items taken by consumers that died before releasing the slot.
    pub(crate) abandoned: Padded<AtomicU64>,
    /// What each member is claiming right now (see the module docs).
    pub(crate) intents: [Intent; INTENTS],
}

/// The claim a member has in flight, written by that member only: `*_pos` is the
/// first position + 1 (0: none), `*_n` the count. Stored before the `head`/`tail`
/// CAS (Release), cleared after the operation's last stamp store (Release).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Intent {
    put_pos: AtomicU64,
    put_n: AtomicU64,
    get_pos: AtomicU64,
    get_n: AtomicU64,
}

/// The head of every slot.
#[repr(C, align(16))]
#[derive(Debug)]
pub(crate) struct SlotHead {
    pub(crate) seq: AtomicU64,
    pub(crate) len: AtomicU32,
    _reserved: AtomicU32,
}

/// Bytes before a slot's payload.
const SLOT_HEAD: usize = size_of::<SlotHead>();

// The layout `format::objects` documents and computes offsets with.
#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<RingHeader>() == RING_HEADER_BYTES);
    assert!(align_of::<RingHeader>() == 128);
    assert!(offset_of!(RingHeader, intents) == 9 * 128);
    assert!(size_of::<Intent>() == 64);
    assert!(SLOT_HEAD == SLOT_HEAD_BYTES);
    assert!(align_of::<SlotHead>() == 16);
};
#[cfg(loom)]
const _: () = {
    // Loom's atomics are larger; only the shape of the header is the same.
    let _ = (RING_HEADER_BYTES, SLOT_HEAD_BYTES, MAX_MEMBERS);
    assert!(offset_of!(RingHeader, head) == 0);
    assert!(align_of::<SlotHead>() >= 16);
};

impl Intent {
    fn words(&self, put: bool) -> (&AtomicU64, &AtomicU64) {
        if put {
            (&self.put_pos, &self.put_n)
        } else {
            (&self.get_pos, &self.get_n)
        }
    }

    #[inline]
    fn announce(&self, put: bool, pos: u64, n: u64) {
        let (p, c) = self.words(put);
        c.store(n, Ordering::Relaxed);
        p.store(pos.wrapping_add(1), Ordering::Release);
    }

    #[inline]
    fn clear(&self, put: bool) {
        self.words(put).0.store(0, Ordering::Release);
    }

    /// The claim in flight: first position and count (0 if none).
    fn claim(&self, put: bool) -> (u64, u64) {
        let (p, c) = self.words(put);
        match p.load(Ordering::Acquire) {
            0 => (0, 0),
            first => (first - 1, c.load(Ordering::Relaxed)),
        }
    }

    /// Whether the claim in flight covers `pos`.
    fn covers(&self, put: bool, pos: u64) -> bool {
        let (first, n) = self.claim(put);
        n != 0 && pos.wrapping_sub(first) < n
    }
}

/// A view of a ring in (shared) memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ring<'a> {
    hdr: &'a RingHeader,
    slots: *mut u8,
    capacity: u64,
    /// `capacity - 1` if the capacity is a power of two (a position's slot is then
    /// a mask away, not a division), else 0.
    mask: u64,
    stride: usize,
    item_size: usize,
}

/// Member `me`'s bit in a waiter mask (none for members past the mask's width:
/// there are none, `MAX_MEMBERS` is 64).
#[inline]
fn waiter_bit(me: u32) -> u64 {
    1u64.checked_shl(me).unwrap_or(0)
}

/// A position claimed by the one-item fast path, with its slot located once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Claimed<'a> {
    pub(crate) pos: u64,
    /// The start of the position's slot (from `Ring::slot_ptr`).
    slot: *mut u8,
    _ring: std::marker::PhantomData<&'a RingHeader>,
}

impl<'a> Claimed<'a> {
    #[inline(always)]
    fn head(&self) -> &'a SlotHead {
        // SAFETY: `slot` came from `Ring::slot_ptr` of a ring valid for `'a`: it
        // starts with an aligned SlotHead, only accessed through atomics.
        unsafe { &*self.slot.cast::<SlotHead>() }
    }
}

/// What a non-blocking step found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<T> {
    Done(T),
    /// Full (for puts) / empty (for gets).
    Blocked,
}

// Under loom only the index logic is exercised.
#[cfg_attr(loom, allow(dead_code))]
impl<'a> Ring<'a> {
    /// A view of the ring at `hdr` and `slots`.
    ///
    /// # Safety
    /// - `capacity >= 1`; `slots` is aligned to `align_of::<SlotHead>()`, `stride` is
    ///   a multiple of it, and `size_of::<SlotHead>() + item_size <= stride`;
    /// - `capacity` slots of `stride` bytes starting at `slots` are valid for reads
    ///   and writes for `'a`, and are accessed only through `Ring`s (stamps and
    ///   lengths atomically; a payload only by the member that claimed its slot).
    pub(crate) unsafe fn new(
        hdr: &'a RingHeader,
        slots: *mut u8,
        capacity: u64,
        stride: usize,
        item_size: usize,
    ) -> Ring<'a> {
        let mask = if capacity.is_power_of_two() {
            capacity - 1
        } else {
            0
        };
        Ring {
            hdr,
            slots,
            capacity,
            mask,
            stride,
            item_size,
        }
    }

    /// The header.
    #[inline]
    pub(crate) fn header(&self) -> &'a RingHeader {
        self.hdr
    }

    /// Initialises the stamps of a fresh ring (slot `i` free for position `i`).
    pub(crate) fn init(&self) {
        for i in 0..self.capacity {
            self.slot(i).seq.store(i, Ordering::Relaxed);
        }
    }

    #[inline]
    fn slot_ptr(&self, pos: u64) -> *mut u8 {
        // `pos % capacity < capacity` (`pos & mask` is the same for a power of two),
        // and `capacity * stride` bytes are valid (the contract of `new`), so the
        // product fits and stays inside the slots.
        let index = if self.mask != 0 {
            pos & self.mask
        } else {
            pos % self.capacity
        } as usize;
        // SAFETY: see above; the result points at the start of a slot.
        unsafe { self.slots.add(index * self.stride) }
    }

    /// The head of the slot of `pos`.
    #[inline]
    pub(crate) fn slot(&self, pos: u64) -> &'a SlotHead {
        // SAFETY: every slot starts with an aligned SlotHead (slots are aligned and
        // stride is a multiple of the alignment, per `new`); it is only accessed
        // through atomics, valid for any bytes, for `'a`.
        unsafe { &*self.slot_ptr(pos).cast::<SlotHead>() }
    }

    /// The `item_size` payload bytes of the slot of `pos`.
    ///
    /// # Safety
    /// The caller owns the slot for `pos` (won the head or tail CAS for it and has
    /// not yet published/released it), and holds no other reference to this payload.
    #[cfg(test)]
    pub(crate) unsafe fn payload(&self, pos: u64) -> &'a mut [u8] {
        // SAFETY: the payload follows the head inside the slot (`SLOT_HEAD +
        // item_size <= stride`, per `new`); ownership of the slot makes it exclusive
        // among members that follow the protocol.
        unsafe { std::slice::from_raw_parts_mut(self.slot_ptr(pos).add(SLOT_HEAD), self.item_size) }
    }

    /// The length stored with the item of `pos`, clamped to the item size (a peer
    /// may have written anything there).
    #[cfg(test)]
    pub(crate) fn item_len(&self, pos: u64) -> usize {
        (self.slot(pos).len.load(Ordering::Relaxed) as usize).min(self.item_size)
    }

    /// Claims up to `max` consecutive positions for producing. Returns the first
    /// position and the count.
    #[inline]
    pub(crate) fn claim_put(&self, max: u64, me: u32) -> Step<(u64, u64)> {
        let max = max.min(self.capacity);
        let intent = self.hdr.intents.get(me as usize);
        let mut announced = false;
        let mut pos = self.hdr.head.0.load(Ordering::Relaxed);
        loop {
            // A LOST slot not yet skipped by a consumer is "not free yet" (without the
            // mask its huge stamp would read as "another producer moved on").
            let seq = self.slot(pos).seq.load(Ordering::Acquire) & !LOST;
            let dif = seq.wrapping_sub(pos) as i64;
            if dif == 0 {
                // Extend over following free slots (batching).
                let mut n = 1;
                while n < max
                    && self.slot(pos.wrapping_add(n)).seq.load(Ordering::Acquire)
                        == pos.wrapping_add(n)
                {
                    n += 1;
                }
                if let Some(i) = intent {
                    i.announce(true, pos, n);
                    announced = true;
                }
                // SeqCst: waiters rely on it (see "Waiting and waking").
                match self.hdr.head.0.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(n),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        dekker_fence();
                        return Step::Done((pos, n));
                    }
                    Err(cur) => pos = cur,
                }
            } else if dif < 0 {
                break;
            } else {
                // The slot is a lap ahead: another producer took `pos`, so `head` has
                // moved on (its CAS happened before the stamp we read). If it has
                // not, the stamps were scribbled on: give up rather than spin.
                let now = self.hdr.head.0.load(Ordering::Relaxed);
                if now == pos {
                    break;
                }
                pos = now;
            }
        }
        // The claim failed: withdraw the intent, if one was announced.
        if let (true, Some(i)) = (announced, intent) {
            i.clear(true);
        }
        Step::Blocked
    }

    /// One attempt at claiming the single position at `head` for producing: the
    /// fast path of `claim_put(1, me)` when the slot is free and no other producer
    /// races. `None` does not mean full: call `claim_put`.
    #[inline(always)]
    pub(crate) fn try_claim_put_one(&self, me: u32) -> Option<Claimed<'a>> {
        self.try_claim_one::<true>(me)
    }

    /// One attempt at claiming the single position at `tail` for consuming, if its
    /// item is published (not lost): the fast path of `claim_get(1, me)`. `None`
    /// does not mean empty: call `claim_get`.
    #[inline(always)]
    pub(crate) fn try_claim_get_one(&self, me: u32) -> Option<Claimed<'a>> {
        self.try_claim_one::<false>(me)
    }

    /// The one attempt of `try_claim_put_one` (`PUT`) and `try_claim_get_one`: the
    /// two sides differ only in their index (`head`/`tail`) and in the stamp that
    /// makes the slot theirs (its position when free, position + 1 when published).
    #[inline(always)]
    fn try_claim_one<const PUT: bool>(&self, me: u32) -> Option<Claimed<'a>> {
        let index = if PUT {
            &self.hdr.head.0
        } else {
            &self.hdr.tail.0
        };
        let pos = index.load(Ordering::Relaxed);
        let slot = self.claimed(pos);
        let ready = if PUT { pos } else { pos.wrapping_add(1) };
        if slot.head().seq.load(Ordering::Acquire) != ready {
            return None;
        }
        let intent = self.hdr.intents.get(me as usize)?;
        intent.announce(PUT, pos, 1);
        // SeqCst: waiters rely on it (see "Waiting and waking").
        if index
            .compare_exchange(
                pos,
                pos.wrapping_add(1),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_err()
        {
            intent.clear(PUT);
            return None;
        }
        dekker_fence();
        Some(slot)
    }

    /// Claims up to `max` consecutive published positions for consuming; slots lost
    /// with a dead producer are skipped (released; counted in `lost` already).
    #[inline]
    pub(crate) fn claim_get(&self, max: u64, me: u32) -> Step<(u64, u64)> {
        let max = max.min(self.capacity);
        let intent = self.hdr.intents.get(me as usize);
        let mut announced = false;
        let mut pos = self.hdr.tail.0.load(Ordering::Relaxed);
        loop {
            let seq = self.slot(pos).seq.load(Ordering::Acquire);
            let dif = (seq & !LOST).wrapping_sub(pos.wrapping_add(1)) as i64;
            if dif == 0 {
                let mut n = 1;
                while n < max
                    && self.slot(pos.wrapping_add(n)).seq.load(Ordering::Acquire)
                        == pos.wrapping_add(n + 1)
                {
                    n += 1;
                }
                if seq & LOST != 0 {
                    n = 1;
                }
                if let Some(i) = intent {
                    i.announce(false, pos, n);
                    announced = true;
                }
                // SeqCst: waiters rely on it (see "Waiting and waking").
                match self.hdr.tail.0.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(n),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        dekker_fence();
                        if seq & LOST != 0 {
                            self.release(pos);
                            pos = pos.wrapping_add(1);
                            continue;
                        }
                        return Step::Done((pos, n));
                    }
                    Err(cur) => pos = cur,
                }
            } else if dif < 0 {
                break;
            } else {
                // As in `claim_put`: `tail` moved on, unless the stamps were forged.
                let now = self.hdr.tail.0.load(Ordering::Relaxed);
                if now == pos {
                    break;
                }
                pos = now;
            }
        }
        if let (true, Some(i)) = (announced, intent) {
            i.clear(false);
        }
        Step::Blocked
    }

    /// Publishes a produced slot.
    #[cfg(test)]
    pub(crate) fn publish(&self, pos: u64, len: u32) {
        Self::publish_in(self.slot(pos), pos, len);
    }

    #[inline(always)]
    fn publish_in(s: &SlotHead, pos: u64, len: u32) {
        s.len.store(len, Ordering::Relaxed);
        s.seq.store(pos.wrapping_add(1), Ordering::Release);
    }

    /// Locates the slot of `pos` once, for the `*_claimed` methods (a position
    /// claimed with `claim_*` or `try_claim_*_one`).
    #[inline]
    pub(crate) fn claimed(&self, pos: u64) -> Claimed<'a> {
        Claimed {
            pos,
            slot: self.slot_ptr(pos),
            _ring: std::marker::PhantomData,
        }
    }

    /// The payload of a claimed slot (see [`payload`](Self::payload)).
    ///
    /// # Safety
    /// As for `payload`: the caller owns `c.pos` and holds no other reference to
    /// its payload; `c` comes from this ring.
    #[inline]
    pub(crate) unsafe fn claimed_payload(&self, c: &Claimed<'a>) -> &'a mut [u8] {
        // SAFETY: `c.slot` is the start of a slot of this ring (`slot_ptr`), and
        // the payload follows its head inside the slot (`SLOT_HEAD + item_size <=
        // stride`, per `new`); exclusive by the caller's claim.
        unsafe { std::slice::from_raw_parts_mut(c.slot.add(SLOT_HEAD), self.item_size) }
    }

    /// Publishes a claimed slot (`publish` for `c.pos`).
    #[inline]
    pub(crate) fn publish_claimed(&self, c: &Claimed<'a>, len: u32) {
        Self::publish_in(c.head(), c.pos, len);
    }

    /// The stored length of a claimed item (`item_len` for `c.pos`).
    #[inline]
    pub(crate) fn claimed_len(&self, c: &Claimed<'a>) -> usize {
        (c.head().len.load(Ordering::Relaxed) as usize).min(self.item_size)
    }

    /// Releases a claimed slot (`release` for `c.pos`).
    #[inline]
    pub(crate) fn release_claimed(&self, c: &Claimed<'a>) {
        c.head()
            .seq
            .store(c.pos.wrapping_add(self.capacity), Ordering::Release);
    }

    /// Publishes a claimed slot whose item will never be written, as `LOST`
    /// (consumers skip it; counted in `lost`).
    pub(crate) fn publish_lost(&self, pos: u64) {
        self.slot(pos)
            .seq
            .store(pos.wrapping_add(1) | LOST, Ordering::Release);
        self.hdr.lost.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Releases a consumed slot for the producer of `pos + capacity`.
    #[inline]
    pub(crate) fn release(&self, pos: u64) {
        self.slot(pos)
            .seq
            .store(pos.wrapping_add(self.capacity), Ordering::Release);
    }

    /// Ends member `me`'s put (`put`) or get operation: call it after the last
    /// `publish`/`release` of the positions `claim_*` returned.
    #[inline]
    pub(crate) fn done(&self, me: u32, put: bool) {
        if let Some(i) = self.hdr.intents.get(me as usize) {
            i.clear(put);
        }
    }

    /// The waiter mask of members waiting to put (`put`) or to get.
    #[inline]
    fn waiters(&self, put: bool) -> &'a AtomicU64 {
        if put {
            &self.hdr.put_waiters.0
        } else {
            &self.hdr.get_waiters.0
        }
    }

    /// Registers member `me` as waiting to put (`put`) or to get, before it decides
    /// whether to sleep (see "Waiting and waking").
    pub(crate) fn register_waiter(&self, put: bool, me: u32) {
        self.waiters(put).fetch_or(waiter_bit(me), Ordering::SeqCst);
        dekker_fence();
    }

    /// Withdraws `register_waiter`.
    pub(crate) fn unregister_waiter(&self, put: bool, me: u32) {
        self.waiters(put)
            .fetch_and(!waiter_bit(me), Ordering::SeqCst);
    }

    /// Clears the waiter bits of `members` (dead ones, or an entry being taken
    /// over): a bit left set would only cost the other side a wake-up call per
    /// operation.
    pub(crate) fn clear_waiters(&self, put: bool, members: u64) {
        self.waiters(put).fetch_and(!members, Ordering::SeqCst);
    }

    /// The members waiting to put (`put`) or to get. Called after an operation's
    /// `head`/`tail` CAS (and its stamp stores): a non-zero mask means the caller
    /// must wake the other side.
    #[inline]
    pub(crate) fn waiting(&self, put: bool) -> u64 {
        // The CAS before was SeqCst (under loom: followed by a SeqCst fence).
        self.waiters(put).load(Ordering::SeqCst)
    }

    /// After `register_waiter`: whether the caller, blocked on a put (`put`) or a
    /// get, may sleep until woken. True when the ring is full (for a put) or empty
    /// (for a get) *by its indices*: no position the caller can be waiting for has
    /// been claimed by the other side, so the claim that frees one comes after
    /// these loads and its maker will see the caller's bit. False while the other
    /// side is between its CAS and its stamp store (or died there): then the
    /// caller sleeps only briefly (see "Waiting and waking").
    pub(crate) fn idle(&self, put: bool) -> bool {
        let tail = self.hdr.tail.0.load(Ordering::SeqCst);
        let head = self.hdr.head.0.load(Ordering::SeqCst);
        if put {
            head.wrapping_sub(tail) >= self.capacity
        } else {
            head == tail
        }
    }

    /// Items in the ring (approximate while others are active).
    pub(crate) fn len(&self) -> u64 {
        let tail = self.hdr.tail.0.load(Ordering::Acquire);
        let head = self.hdr.head.0.load(Ordering::Acquire);
        head.saturating_sub(tail).min(self.capacity)
    }

    /// Whether position `pos` is claimed and unfinished (see the state table).
    fn unfinished(&self, put: bool, pos: u64) -> bool {
        let seq = self.slot(pos).seq.load(Ordering::Acquire);
        if put {
            seq == pos && self.hdr.head.0.load(Ordering::Acquire) > pos
        } else {
            seq & !LOST == pos.wrapping_add(1) && self.hdr.tail.0.load(Ordering::Acquire) > pos
        }
    }

    /// Whether the member holding the claimed slot of `pos` is dead: some member's
    /// intent covers `pos` and every such member is dead (a live one may be the
    /// holder).
    #[cold]
    fn holder_is_dead(&self, pos: u64, put: bool, is_dead: &impl Fn(u32) -> bool) -> bool {
        let mut any = false;
        for (m, intent) in self.hdr.intents.iter().enumerate() {
            if intent.covers(put, pos) {
                if !is_dead(m as u32) {
                    return false;
                }
                any = true;
            }
        }
        any
    }

    /// Finishes the produce step of `pos` for its dead holder: publishes it as
    /// `LOST`. Only if `pos` is claimed (`head > pos`), unpublished, and every member
    /// whose intent covers it is dead.
    #[cold]
    fn recover_put(&self, pos: u64, is_dead: &impl Fn(u32) -> bool) -> bool {
        // `head` first (Acquire): past `pos`, it makes the winner's intent visible.
        if self.hdr.head.0.load(Ordering::Acquire) <= pos {
            return false;
        }
        let s = self.slot(pos);
        if s.seq.load(Ordering::Acquire) != pos || !self.holder_is_dead(pos, true, is_dead) {
            return false;
        }
        let lost = pos.wrapping_add(1) | LOST;
        if s.seq
            .compare_exchange(pos, lost, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.hdr.lost.0.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Finishes the consume step of `pos` for its dead holder: releases the slot (the
    /// item counts as abandoned, unless it was a `LOST` one being skipped). Only if
    /// `pos` is taken (`tail > pos`), unreleased, and every member whose intent
    /// covers it is dead.
    #[cold]
    fn recover_get(&self, pos: u64, is_dead: &impl Fn(u32) -> bool) -> bool {
        let s = self.slot(pos);
        let seq = s.seq.load(Ordering::Acquire);
        if seq & !LOST != pos.wrapping_add(1)
            || self.hdr.tail.0.load(Ordering::Acquire) <= pos
            || !self.holder_is_dead(pos, false, is_dead)
        {
            return false;
        }
        let free = pos.wrapping_add(self.capacity);
        if s.seq
            .compare_exchange(seq, free, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            if seq & LOST == 0 {
                self.hdr.abandoned.0.fetch_add(1, Ordering::Relaxed);
            }
            return true;
        }
        false
    }

    /// Recovery when consumers are stuck: if the slot at `tail` was claimed by a
    /// producer that is dead (per `is_dead(member)`), publish it as LOST.
    pub(crate) fn recover_dead_producer(&self, is_dead: impl Fn(u32) -> bool) -> bool {
        let pos = self.hdr.tail.0.load(Ordering::Acquire);
        self.recover_put(pos, &is_dead)
    }

    /// Recovery when producers are stuck: if the slot at `head` is still held by a
    /// consumer of the previous lap that is dead, release it.
    pub(crate) fn recover_dead_consumer(&self, is_dead: impl Fn(u32) -> bool) -> bool {
        let pos = self.hdr.head.0.load(Ordering::Acquire);
        pos.checked_sub(self.capacity)
            .is_some_and(|prev| self.recover_get(prev, &is_dead))
    }

    /// Positions covered by `member`'s intent of one kind (at most `capacity`: a
    /// longer count is a peer's scribble, and only `capacity` positions can be held
    /// at once anyway).
    fn covered(&self, member: usize, put: bool) -> impl Iterator<Item = u64> {
        let (first, n) = self
            .hdr
            .intents
            .get(member)
            .map_or((0, 0), |i| i.claim(put));
        (0..n.min(self.capacity)).map(move |k| first.wrapping_add(k))
    }

    /// Tries to finish every unfinished position `member`'s intents cover (for a
    /// newcomer about to take over its entry; see the module docs). `is_dead` must
    /// count `member` itself as dead. Returns whether anything was recovered.
    #[cold]
    pub(crate) fn recover_member(&self, member: usize, is_dead: impl Fn(u32) -> bool) -> bool {
        let mut any = false;
        for put in [true, false] {
            for pos in self.covered(member, put) {
                if self.unfinished(put, pos) {
                    any |= if put {
                        self.recover_put(pos, &is_dead)
                    } else {
                        self.recover_get(pos, &is_dead)
                    };
                }
            }
        }
        any
    }

    /// Whether no unfinished position is covered by `member`'s intents: only then
    /// may its entry be given to a newcomer, whose announcements overwrite them.
    #[cold]
    pub(crate) fn claims_finished(&self, member: usize) -> bool {
        [true, false].into_iter().all(|put| {
            self.covered(member, put)
                .all(|pos| !self.unfinished(put, pos))
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A ring on the heap: a header and `capacity` slots of `STRIDE` bytes.
    struct HeapRing {
        hdr: Box<RingHeader>,
        slots: Vec<u128>,
        capacity: u64,
    }

    const STRIDE: usize = 32;
    const ITEM: usize = 16;

    fn heap_ring(capacity: u64) -> HeapRing {
        // SAFETY: RingHeader is atomics only: zero is valid.
        let hdr: Box<RingHeader> = Box::new(unsafe { std::mem::zeroed() });
        let slots = vec![0u128; capacity as usize * STRIDE / 16];
        let h = HeapRing {
            hdr,
            slots,
            capacity,
        };
        h.ring().init();
        h
    }

    impl HeapRing {
        fn ring(&self) -> Ring<'_> {
            // SAFETY: `capacity` slots of STRIDE bytes (16-aligned u128s), alive and
            // only accessed through rings as long as `self`; 16 + ITEM <= STRIDE.
            unsafe {
                Ring::new(
                    &self.hdr,
                    self.slots.as_ptr().cast_mut().cast::<u8>(),
                    self.capacity,
                    STRIDE,
                    ITEM,
                )
            }
        }
    }

    // SAFETY: the slots are only reached through the ring protocol under test.
    unsafe impl Sync for HeapRing {}

    fn put_one(ring: &Ring<'_>, me: u32) -> u64 {
        let Step::Done((p, 1)) = ring.claim_put(1, me) else {
            panic!("full")
        };
        ring.publish(p, 0);
        ring.done(me, true);
        p
    }

    fn get_one(ring: &Ring<'_>, me: u32) -> u64 {
        let Step::Done((p, 1)) = ring.claim_get(1, me) else {
            panic!("empty")
        };
        ring.release(p);
        ring.done(me, false);
        p
    }

    #[test]
    fn threads_pass_every_item_exactly_once_in_producer_order() {
        let h = heap_ring(64);
        let per = 20_000u64;
        let got = std::thread::scope(|s| {
            for p in 0..2u64 {
                let h = &h;
                s.spawn(move || {
                    let r = h.ring();
                    let mut i = 0;
                    while i < per {
                        // Every other item through the one-item fast path.
                        let fast = (i % 2 == 0)
                            .then(|| r.try_claim_put_one(p as u32).map(|c| c.pos))
                            .flatten()
                            .map(|pos| Step::Done((pos, 1)));
                        let step = fast.unwrap_or_else(|| r.claim_put(3.min(per - i), p as u32));
                        if let Step::Done((pos, n)) = step {
                            for k in 0..n {
                                // SAFETY: we own positions pos..pos+n.
                                unsafe {
                                    r.payload(pos + k)[..8]
                                        .copy_from_slice(&(p << 32 | (i + k)).to_le_bytes())
                                };
                                r.publish(pos + k, 8);
                            }
                            r.done(p as u32, true);
                            i += n;
                        }
                    }
                });
            }
            let consumers: Vec<_> = (0..2u32)
                .map(|c| {
                    let h = &h;
                    s.spawn(move || {
                        let r = h.ring();
                        let mut out = Vec::new();
                        while (out.len() as u64) < per {
                            let fast = (out.len() % 2 == 0)
                                .then(|| r.try_claim_get_one(10 + c).map(|c| c.pos))
                                .flatten()
                                .map(|pos| Step::Done((pos, 1)));
                            let step = fast.unwrap_or_else(|| r.claim_get(4, 10 + c));
                            if let Step::Done((pos, n)) = step {
                                for k in 0..n {
                                    // SAFETY: we own positions pos..pos+n.
                                    let v = u64::from_le_bytes(
                                        unsafe { r.payload(pos + k) }[..8].try_into().unwrap(),
                                    );
                                    r.release(pos + k);
                                    out.push(v);
                                }
                                r.done(10 + c, false);
                            }
                            if r.hdr.tail.0.load(Ordering::Relaxed) >= 2 * per {
                                break;
                            }
                        }
                        out
                    })
                })
                .collect();
            consumers
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        let mut all: Vec<u64> = got.iter().flatten().copied().collect();
        // Per producer, each consumer saw increasing sequence numbers.
        for c in &got {
            for p in 0..2u64 {
                let seq: Vec<u64> = c
                    .iter()
                    .filter(|v| *v >> 32 == p)
                    .map(|v| v & 0xffff_ffff)
                    .collect();
                assert!(seq.windows(2).all(|w| w[0] < w[1]));
            }
        }
        all.sort();
        let want: Vec<u64> = (0..2u64)
            .flat_map(|p| (0..per).map(move |i| p << 32 | i))
            .collect();
        assert_eq!(all, want);
    }

    #[test]
    fn a_dead_producer_is_recovered_only_when_every_possible_holder_is_dead() {
        let h = heap_ring(4);
        let ring = h.ring();
        // Producer 7 wins positions 0..2 and dies before writing (at any instruction
        // after its CAS: its intent is all that records it).
        assert_eq!(ring.claim_put(2, 7), Step::Done((0, 2)));
        assert_eq!(put_one(&ring, 1), 2);
        assert_eq!(ring.claim_get(1, 2), Step::Blocked, "position 0 blocks");
        assert!(!ring.recover_dead_producer(|m| m == 99), "holder alive");
        // Member 5's intent also covers position 0 (its CAS for it failed and it has
        // not retried yet): while 5 lives it may be the holder.
        ring.hdr.intents[5].announce(true, 0, 1);
        assert!(!ring.recover_dead_producer(|m| m == 7));
        assert!(ring.recover_dead_producer(|m| m == 7 || m == 5));
        // The consumer skips position 0 and stops at 1, the dead producer's second.
        assert_eq!(ring.claim_get(1, 2), Step::Blocked);
        assert!(ring.recover_dead_producer(|m| m == 7 || m == 5));
        assert_eq!(ring.hdr.lost.0.load(Ordering::Relaxed), 2);
        assert_eq!(get_one(&ring, 2), 2);
    }

    #[test]
    fn a_dead_consumer_is_recovered_and_a_finished_holder_never_is() {
        let h = heap_ring(4);
        let ring = h.ring();
        for _ in 0..4 {
            put_one(&ring, 1);
        }
        // Member 3 announces position 0 and dies; member 2 wins it and finishes.
        ring.hdr.intents[3].announce(false, 0, 1);
        assert_eq!(get_one(&ring, 2), 0);
        assert_eq!(put_one(&ring, 1), 4);
        // Consumer 6 takes position 1 and dies without releasing it.
        assert_eq!(ring.claim_get(1, 6), Step::Done((1, 1)));
        assert_eq!(get_one(&ring, 2), 2);
        assert_eq!(get_one(&ring, 2), 3);
        assert_eq!(
            ring.claim_put(1, 1),
            Step::Blocked,
            "slot of position 1 held"
        );
        assert!(!ring.recover_dead_consumer(|m| m == 99), "holder alive");
        assert!(ring.recover_dead_consumer(|m| m == 6 || m == 3));
        assert_eq!(ring.hdr.abandoned.0.load(Ordering::Relaxed), 1);
        assert_eq!(put_one(&ring, 1), 5);
        assert_eq!(ring.claim_get(1, 2), Step::Done((4, 1)));
    }

    #[test]
    fn a_consumer_dying_while_skipping_a_lost_slot_is_recovered_without_counting() {
        let h = heap_ring(2);
        let ring = h.ring();
        assert_eq!(ring.claim_put(1, 3), Step::Done((0, 1)));
        assert!(ring.recover_dead_producer(|m| m == 3));
        // Consumer 4 wins the LOST slot's tail CAS and dies before releasing it.
        ring.hdr.intents[4].announce(false, 0, 1);
        assert!(ring
            .hdr
            .tail
            .0
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok());
        assert_eq!(put_one(&ring, 1), 1);
        assert_eq!(ring.claim_put(1, 1), Step::Blocked, "slot 0 never released");
        assert!(!ring.recover_dead_consumer(|m| m == 99));
        assert!(ring.recover_dead_consumer(|m| m == 4 || m == 3));
        assert_eq!(
            ring.hdr.abandoned.0.load(Ordering::Relaxed),
            0,
            "counted as lost already"
        );
        assert_eq!(put_one(&ring, 1), 2);
    }

    /// The one-item fast path takes only a free (published, not lost) slot at
    /// `head` (`tail`), announces its claim like `claim_*` and leaves the rest
    /// (full, empty, a lost slot) to them.
    #[test]
    fn the_one_item_fast_path_claims_like_the_full_one() {
        let h = heap_ring(3);
        let ring = h.ring();
        assert_eq!(ring.try_claim_get_one(1).map(|c| c.pos), None, "empty");
        assert_eq!(ring.try_claim_put_one(0).map(|c| c.pos), Some(0));
        assert!(ring.hdr.intents[0].covers(true, 0), "announced");
        ring.publish(0, 8);
        ring.done(0, true);
        // Producer 5 claims position 1 and dies: the fast path does not skip it.
        assert_eq!(ring.try_claim_put_one(5).map(|c| c.pos), Some(1));
        assert_eq!(ring.try_claim_put_one(0).map(|c| c.pos), Some(2));
        ring.publish(2, 8);
        ring.done(0, true);
        assert_eq!(
            ring.try_claim_put_one(0).map(|c| c.pos),
            None,
            "full (3 slots)"
        );
        assert_eq!(ring.try_claim_get_one(1).map(|c| c.pos), Some(0));
        assert!(ring.hdr.intents[1].covers(false, 0));
        ring.release(0);
        ring.done(1, false);
        assert_eq!(
            ring.try_claim_get_one(1).map(|c| c.pos),
            None,
            "position 1 is unpublished"
        );
        assert!(ring.recover_dead_producer(|m| m == 5));
        assert_eq!(
            ring.try_claim_get_one(1).map(|c| c.pos),
            None,
            "a lost slot is claim_get's"
        );
        assert_eq!(
            ring.claim_get(1, 1),
            Step::Done((2, 1)),
            "skips the lost one"
        );
        ring.release(2);
        ring.done(1, false);
        // Positions 3 and 4 fit again; the capacity is not a power of two here.
        assert_eq!(ring.try_claim_put_one(0).map(|c| c.pos), Some(3));
        assert_eq!(ring.slot(3).seq.load(Ordering::Relaxed), 3);
        assert!(std::ptr::eq(ring.slot(3), ring.slot(0)));
    }

    /// Waiter bits and `idle`: a consumer may sleep until woken only while the
    /// ring is empty by its indices, a producer only while it is full by them.
    #[test]
    fn waiters_register_and_idle_follows_the_indices() {
        let h = heap_ring(2);
        let ring = h.ring();
        ring.register_waiter(false, 3);
        ring.register_waiter(true, 63);
        assert_eq!(ring.waiting(false), 1 << 3);
        assert_eq!(ring.waiting(true), 1 << 63);
        assert!(ring.idle(false) && !ring.idle(true), "empty");
        // Claimed, not yet published: the consumer must not sleep for long.
        let Step::Done((p, 1)) = ring.claim_put(1, 0) else {
            panic!()
        };
        assert!(!ring.idle(false));
        ring.publish(p, 0);
        ring.done(0, true);
        put_one(&ring, 0);
        assert!(
            ring.idle(true),
            "full, and no consumer has claimed anything"
        );
        let Step::Done((p, 1)) = ring.claim_get(1, 1) else {
            panic!()
        };
        assert!(!ring.idle(true), "a consumer is about to release a slot");
        ring.release(p);
        ring.done(1, false);
        ring.unregister_waiter(false, 3);
        ring.clear_waiters(true, u64::MAX);
        assert_eq!((ring.waiting(false), ring.waiting(true)), (0, 0));
        // Members past the mask's width have no bit (there are none).
        ring.register_waiter(false, 64);
        assert_eq!(ring.waiting(false), 0);
    }

    #[test]
    fn intents_are_withdrawn_when_blocked_and_when_done() {
        let h = heap_ring(2);
        let ring = h.ring();
        let withdrawn = |ring: &Ring<'_>| {
            ring.hdr.intents.iter().all(|i| {
                i.put_pos.load(Ordering::Relaxed) == 0 && i.get_pos.load(Ordering::Relaxed) == 0
            })
        };
        assert_eq!(ring.claim_get(1, 1), Step::Blocked);
        assert_eq!(ring.claim_put(2, 1), Step::Done((0, 2)));
        assert!(ring.hdr.intents[1].covers(true, 1), "held until done");
        ring.publish(0, 0);
        ring.publish(1, 0);
        ring.done(1, true);
        assert_eq!(ring.claim_put(1, 1), Step::Blocked);
        assert!(withdrawn(&ring));
        assert_eq!(ring.claim_get(2, 2), Step::Done((0, 2)));
        ring.release(0);
        ring.release(1);
        ring.done(2, false);
        assert!(withdrawn(&ring));
    }

    /// Issue 9.8 on a heap ring: a consumer dies holding a slot; a newcomer that
    /// took its entry and announced anything would erase the only record of it.
    /// The entry is refused while the claim is unfinished, and a newcomer that can
    /// finish the claim itself (every covering member dead) does so first.
    #[test]
    fn an_entry_is_reusable_only_once_its_claims_are_finished() {
        let h = heap_ring(2);
        let ring = h.ring();
        put_one(&ring, 0);
        put_one(&ring, 0);
        // Consumer 1 takes position 0 and dies.
        assert_eq!(ring.claim_get(1, 1), Step::Done((0, 1)));
        assert!(!ring.claims_finished(1), "position 0 is held by member 1");
        assert!(ring.claims_finished(0) && ring.claims_finished(2));
        // A live member (3) whose failed CAS also covers position 0 may be its
        // holder: nothing is recovered, the entry stays refused.
        ring.hdr.intents[3].announce(false, 0, 1);
        assert!(!ring.recover_member(1, |m| m == 1));
        assert!(!ring.claims_finished(1));
        // Once 3 is dead too, the newcomer finishes position 0 and may take entry 1.
        assert!(ring.recover_member(1, |m| m == 1 || m == 3));
        assert!(ring.claims_finished(1));
        assert_eq!(ring.hdr.abandoned.0.load(Ordering::Relaxed), 1);
        assert!(!ring.recover_member(1, |_| true), "nothing left to do");
        // The ring works on: position 1 is read, positions 2 and 3 fit.
        assert_eq!(get_one(&ring, 0), 1);
        assert_eq!(put_one(&ring, 0), 2);
        assert_eq!(put_one(&ring, 0), 3);
    }

    #[test]
    fn a_dead_producers_entry_is_refused_then_recovered_out_of_order() {
        let h = heap_ring(4);
        let ring = h.ring();
        put_one(&ring, 0);
        // Producer 5 claims positions 1..3 and dies; producer 0 goes on at 3.
        assert_eq!(ring.claim_put(2, 5), Step::Done((1, 2)));
        assert_eq!(put_one(&ring, 0), 3);
        assert!(!ring.claims_finished(5));
        // Not at the consumers' front (position 0 is still unread), yet a newcomer
        // may finish both positions: they are claimed and their holder is dead.
        assert!(ring.recover_member(5, |m| m == 5));
        assert!(ring.claims_finished(5));
        assert_eq!(ring.hdr.lost.0.load(Ordering::Relaxed), 2);
        assert_eq!(get_one(&ring, 2), 0);
        assert_eq!(get_one(&ring, 2), 3, "lost positions 1 and 2 are skipped");
        // A stale intent over positions nobody claimed holds nothing.
        ring.hdr.intents[6].announce(true, 9, 3);
        assert!(ring.claims_finished(6));
        assert!(!ring.recover_member(6, |_| true));
    }

    /// A peer that scribbles over the header and stamps can make the ring lose or
    /// repeat items, never make a caller index outside the slots or panic.
    #[test]
    fn scribbled_headers_never_panic_or_escape_the_slots() {
        let h = heap_ring(3);
        let ring = h.ring();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let interesting = [0, 1, 2, 3, u64::MAX, u64::MAX - 1, LOST, LOST | 1, 1 << 62];
        for round in 0..20_000 {
            let mut pick = || {
                let r = next();
                if r & 1 == 0 {
                    interesting[(r >> 1) as usize % interesting.len()]
                } else {
                    r >> 1
                }
            };
            match round % 5 {
                0 => ring.hdr.head.0.store(pick(), Ordering::Relaxed),
                1 => ring.hdr.tail.0.store(pick(), Ordering::Relaxed),
                2 => ring.slot(pick()).seq.store(pick(), Ordering::Relaxed),
                3 => ring
                    .slot(pick())
                    .len
                    .store(pick() as u32, Ordering::Relaxed),
                _ => ring.hdr.intents[(pick() % INTENTS as u64) as usize].announce(
                    pick() & 1 == 0,
                    pick(),
                    pick(),
                ),
            }
            if let Step::Done((pos, n)) = ring.claim_put(pick() % 8, 1) {
                assert!((1..=3).contains(&n));
                for k in 0..n {
                    // SAFETY: claimed (as far as this process can tell).
                    let p = unsafe { ring.payload(pos.wrapping_add(k)) };
                    assert_eq!(p.len(), ITEM);
                    p.fill(7);
                    ring.publish(pos.wrapping_add(k), pick() as u32);
                }
                ring.done(1, true);
            }
            if let Step::Done((pos, n)) = ring.claim_get(pick() % 8, 2) {
                assert!((1..=3).contains(&n));
                for k in 0..n {
                    assert!(ring.item_len(pos.wrapping_add(k)) <= ITEM);
                    ring.release(pos.wrapping_add(k));
                }
                ring.done(2, false);
            }
            if let Some(c) = ring.try_claim_put_one(3) {
                // SAFETY: claimed (as far as this process can tell).
                let p = unsafe { ring.claimed_payload(&c) };
                assert_eq!(p.len(), ITEM);
                p.fill(9);
                ring.publish_claimed(&c, pick() as u32);
                ring.done(3, true);
            }
            if let Some(c) = ring.try_claim_get_one(4) {
                assert!(ring.claimed_len(&c) <= ITEM);
                ring.release_claimed(&c);
                ring.done(4, false);
            }
            let _ = ring.idle(pick() & 1 == 0);
            ring.recover_dead_producer(|_| true);
            ring.recover_dead_consumer(|_| true);
            ring.recover_member((pick() % INTENTS as u64) as usize, |_| true);
            let _ = ring.claims_finished(3);
            assert!(ring.len() <= 3);
        }
    }
}

/// Model checking of the ring's index logic with loom (every interleaving of a few
/// threads on a tiny ring). Run:
/// `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom_tests`
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::format::objects::MIN_CAPACITY;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use std::cell::UnsafeCell;

    #[repr(C, align(16))]
    struct LoomSlot {
        head: SlotHead,
        payload: [u8; 16],
    }

    struct Heap {
        hdr: RingHeader,
        slots: UnsafeCell<Vec<LoomSlot>>,
        cap: u64,
    }

    // SAFETY: slots are only touched through the ring protocol under test.
    unsafe impl Sync for Heap {}
    // SAFETY: as above.
    unsafe impl Send for Heap {}

    fn pad32(v: u32) -> Padded<AtomicU32> {
        Padded(AtomicU32::new(v))
    }

    fn heap(cap: u64) -> Arc<Heap> {
        let hdr = RingHeader {
            head: Padded(AtomicU64::new(0)),
            tail: Padded(AtomicU64::new(0)),
            puts: pad32(0),
            gets: pad32(0),
            get_waiters: Padded(AtomicU64::new(0)),
            put_waiters: Padded(AtomicU64::new(0)),
            closed: pad32(0),
            lost: Padded(AtomicU64::new(0)),
            abandoned: Padded(AtomicU64::new(0)),
            intents: Default::default(),
        };
        let slots = (0..cap)
            .map(|i| LoomSlot {
                head: SlotHead {
                    seq: AtomicU64::new(i),
                    len: AtomicU32::new(0),
                    _reserved: AtomicU32::new(0),
                },
                payload: [0; 16],
            })
            .collect();
        Arc::new(Heap {
            hdr,
            slots: UnsafeCell::new(slots),
            cap,
        })
    }

    fn ring(h: &Heap) -> Ring<'_> {
        // SAFETY: `cap` slots of `size_of::<LoomSlot>()` bytes, 16-aligned, alive
        // with `h`; a 16-byte payload follows each head.
        unsafe {
            Ring::new(
                &h.hdr,
                (*h.slots.get()).as_mut_ptr().cast::<u8>(),
                h.cap,
                size_of::<LoomSlot>(),
                16,
            )
        }
    }

    /// Puts one item, through the one-item fast path first (as `raw.rs` does).
    fn put(r: &Ring<'_>, v: u8, me: u32) {
        loop {
            let fast = r.try_claim_put_one(me).map(|c| Step::Done((c.pos, 1)));
            if let Step::Done((pos, _)) = fast.unwrap_or_else(|| r.claim_put(1, me)) {
                // SAFETY: we own `pos`.
                unsafe { r.payload(pos)[0] = v };
                r.publish(pos, 1);
                r.done(me, true);
                return;
            }
            loom::thread::yield_now();
        }
    }

    /// Gets one item, through the one-item fast path first.
    fn get(r: &Ring<'_>, me: u32) -> u8 {
        loop {
            let fast = r.try_claim_get_one(me).map(|c| Step::Done((c.pos, 1)));
            if let Step::Done((pos, _)) = fast.unwrap_or_else(|| r.claim_get(1, me)) {
                // SAFETY: we own `pos`.
                let v = unsafe { r.payload(pos)[0] };
                r.release(pos);
                r.done(me, false);
                return v;
            }
            loom::thread::yield_now();
        }
    }

    /// Takes one item if there is one (member `me`), without waiting.
    fn try_get(r: &Ring<'_>, me: u32) -> Option<u8> {
        let fast = r.try_claim_get_one(me).map(|c| Step::Done((c.pos, 1)));
        let Step::Done((pos, _)) = fast.unwrap_or_else(|| r.claim_get(1, me)) else {
            return None;
        };
        // SAFETY: we own `pos`.
        let v = unsafe { r.payload(pos)[0] };
        r.release(pos);
        r.done(me, false);
        Some(v)
    }

    /// Puts one item if a slot is free (member `me`), without waiting.
    fn try_put(r: &Ring<'_>, v: u8, me: u32) -> bool {
        let fast = r.try_claim_put_one(me).map(|c| Step::Done((c.pos, 1)));
        let Step::Done((pos, _)) = fast.unwrap_or_else(|| r.claim_put(1, me)) else {
            return false;
        };
        // SAFETY: we own `pos`.
        unsafe { r.payload(pos)[0] = v };
        r.publish(pos, 1);
        r.done(me, true);
        true
    }

    /// The end of an operation as `raw.rs` does it: bump the futex word of the
    /// other side only if someone is registered there.
    fn wake_other_side(r: &Ring<'_>, put: bool) {
        if r.waiting(!put) != 0 {
            let word = if put { &r.hdr.puts.0 } else { &r.hdr.gets.0 };
            word.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The waiting protocol of `raw.rs` for member `me` (see "Waiting and
    /// waking"): try, register, read the futex word, try again, and sleep until
    /// woken only if `idle`. A sleep is modelled as joining `other` (the only
    /// thread that can move the word) and checking that the word moved after it
    /// was read: a futex wait would then return. `try_op` returns true once done.
    fn wait_like_raw(
        r: &Ring<'_>,
        put: bool,
        me: u32,
        other: loom::thread::JoinHandle<()>,
        mut try_op: impl FnMut() -> bool,
    ) {
        let word = if put { &r.hdr.gets.0 } else { &r.hdr.puts.0 };
        let mut other = Some(other);
        loop {
            if try_op() {
                break;
            }
            r.register_waiter(put, me);
            let seen = word.load(Ordering::SeqCst);
            if try_op() {
                r.unregister_waiter(put, me);
                break;
            }
            if r.idle(put) {
                if let Some(t) = other.take() {
                    t.join().unwrap();
                }
                assert_ne!(word.load(Ordering::SeqCst), seen, "a lost wake-up");
            }
            r.unregister_waiter(put, me);
            loom::thread::yield_now();
        }
        if let Some(t) = other.take() {
            t.join().unwrap();
        }
    }

    /// Issue 21.2: uncontended operations make no syscall, yet a consumer that
    /// sleeps on an empty ring is always woken by the put it waits for.
    #[test]
    fn a_consumer_that_sleeps_is_woken_by_the_next_put() {
        loom::model(|| {
            let h = heap(2);
            let h2 = h.clone();
            let producer = loom::thread::spawn(move || {
                let r = ring(&h2);
                put(&r, 7, 0);
                wake_other_side(&r, true);
            });
            let r = ring(&h);
            let mut got = None;
            wait_like_raw(&r, false, 1, producer, || {
                got = try_get(&r, 1);
                got.is_some()
            });
            assert_eq!(got, Some(7));
        });
    }

    /// The same for a producer that sleeps on a full ring, woken by a get.
    #[test]
    fn a_producer_that_sleeps_is_woken_by_the_next_get() {
        loom::model(|| {
            let h = heap(2);
            {
                let r = ring(&h);
                put(&r, 1, 0);
                put(&r, 2, 0);
            }
            let h2 = h.clone();
            let consumer = loom::thread::spawn(move || {
                let r = ring(&h2);
                assert_eq!(get(&r, 1), 1);
                wake_other_side(&r, false);
            });
            let r = ring(&h);
            wait_like_raw(&r, true, 0, consumer, || try_put(&r, 3, 0));
            assert_eq!(try_get(&r, 2), Some(2));
            assert_eq!(try_get(&r, 2), Some(3));
        });
    }

    #[test]
    fn two_producers_one_consumer_each_item_exactly_once() {
        loom::model(|| {
            let h = heap(2);
            let handles: Vec<_> = [1u8, 2]
                .into_iter()
                .map(|v| {
                    let h = h.clone();
                    loom::thread::spawn(move || put(&ring(&h), v, v as u32))
                })
                .collect();
            let r = ring(&h);
            let mut got = [get(&r, 3), get(&r, 3)];
            for t in handles {
                t.join().unwrap();
            }
            got.sort();
            assert_eq!(got, [1, 2]);
        });
    }

    #[test]
    fn wraparound_keeps_order_on_the_smallest_ring() {
        loom::model(|| {
            let h = heap(MIN_CAPACITY);
            let h2 = h.clone();
            let p = loom::thread::spawn(move || {
                let r = ring(&h2);
                for v in 1..=3 {
                    put(&r, v, 0);
                }
            });
            let r = ring(&h);
            for v in 1..=3 {
                assert_eq!(get(&r, 1), v);
            }
            p.join().unwrap();
        });
    }

    #[test]
    fn two_consumers_never_take_the_same_item() {
        loom::model(|| {
            let h = heap(2);
            {
                let r = ring(&h);
                put(&r, 1, 0);
                put(&r, 2, 0);
            }
            let h2 = h.clone();
            let c = loom::thread::spawn(move || get(&ring(&h2), 1));
            let a = get(&ring(&h), 2);
            let b = c.join().unwrap();
            assert_ne!(a, b);
            assert_eq!(a + b, 3);
        });
    }

    /// A member that dies right after its CAS, modelled as: announce, CAS, exit (and
    /// only then counted dead, as the kernel would). Returns the position it won.
    fn die_after_cas(h: &Heap, put: bool, me: u32, dead: &AtomicU32) -> Option<u64> {
        let word = if put { &h.hdr.head.0 } else { &h.hdr.tail.0 };
        let pos = word.load(Ordering::Relaxed);
        h.hdr.intents[me as usize].announce(put, pos, 1);
        let won = word
            .compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        dead.fetch_or(1 << me, Ordering::Release);
        won.then_some(pos)
    }

    /// The death models have three threads with retry loops; every interleaving with
    /// up to two preemptions (tokio's and crossbeam's usual bound) is explored.
    fn bounded_model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound.get_or_insert(2);
        b.max_branches = 100_000;
        b.check(f);
    }

    #[test]
    fn a_producer_dying_after_its_cas_is_recovered_and_never_confused_with_a_live_one() {
        bounded_model(|| {
            let h = heap(2);
            let dead = Arc::new(AtomicU32::new(0));
            let (h1, d1) = (h.clone(), dead.clone());
            let dying = loom::thread::spawn(move || die_after_cas(&h1, true, 0, &d1));
            let h2 = h.clone();
            let live = loom::thread::spawn(move || put(&ring(&h2), 7, 1));
            let r = ring(&h);
            let is_dead = |m: u32| dead.load(Ordering::Acquire) & (1 << m) != 0;
            let mut got = None;
            loop {
                match r.claim_get(1, 2) {
                    Step::Done((pos, _)) => {
                        assert_eq!(got, None, "one item, taken once");
                        // SAFETY: we own `pos`.
                        got = Some(unsafe { r.payload(pos)[0] });
                        r.release(pos);
                        r.done(2, false);
                    }
                    Step::Blocked => {
                        // Dead first: then the head load sees its CAS, if it won.
                        let finished = got.is_some() && is_dead(0);
                        if finished
                            && h.hdr.tail.0.load(Ordering::Acquire)
                                == h.hdr.head.0.load(Ordering::Acquire)
                        {
                            break;
                        }
                        r.recover_dead_producer(is_dead);
                        loom::thread::yield_now();
                    }
                }
            }
            let won = dying.join().unwrap();
            live.join().unwrap();
            assert_eq!(got, Some(7));
            assert_eq!(h.hdr.lost.0.load(Ordering::Relaxed), won.is_some() as u64);
        });
    }

    /// A ring holding items 1 and 2, which member 0 (dying right after its CAS) and
    /// member 1 (live) race to consume; member 0's death is recorded in `dead`.
    fn dying_and_live_consumers() -> (
        Arc<Heap>,
        Arc<AtomicU32>,
        loom::thread::JoinHandle<Option<u64>>,
        loom::thread::JoinHandle<u8>,
    ) {
        let h = heap(2);
        {
            let r = ring(&h);
            put(&r, 1, 2);
            put(&r, 2, 2);
        }
        let dead = Arc::new(AtomicU32::new(0));
        let (h1, d1) = (h.clone(), dead.clone());
        let dying = loom::thread::spawn(move || die_after_cas(&h1, false, 0, &d1));
        let h2 = h.clone();
        let live = loom::thread::spawn(move || get(&ring(&h2), 1));
        (h, dead, dying, live)
    }

    #[test]
    fn a_consumer_dying_after_its_cas_is_recovered_and_never_confused_with_a_live_one() {
        bounded_model(|| {
            let (h, dead, dying, live) = dying_and_live_consumers();
            let r = ring(&h);
            let is_dead = |m: u32| dead.load(Ordering::Acquire) & (1 << m) != 0;
            // A third put needs the slot of position 0, which either consumer may hold.
            loop {
                if let Step::Done((pos, _)) = r.claim_put(1, 2) {
                    r.publish(pos, 1);
                    r.done(2, true);
                    break;
                }
                r.recover_dead_consumer(is_dead);
                loom::thread::yield_now();
            }
            // Only a slot of position 0 held by the dead consumer stands in the way
            // (one it won at position 1 is not needed by this put).
            let took_first = dying.join().unwrap() == Some(0);
            let v = live.join().unwrap();
            assert_eq!(v, if took_first { 2 } else { 1 });
            assert_eq!(h.hdr.abandoned.0.load(Ordering::Relaxed), took_first as u64);
        });
    }

    /// Issue 9.8: a consumer (member 0) dies right after its CAS, racing a live
    /// consumer for position 0 (it may win 0, or 1, or nothing). Then a newcomer takes over entry 0 (modelled: take
    /// its lock, try to finish its claims, and only if they are finished, overwrite
    /// its intent) while a producer blocked on position 0's slot recovers
    /// concurrently. The producer always gets through (a wedge shows as: the
    /// newcomer is done, yet the slot is neither free nor recoverable), and the
    /// abandoned item is counted once. With the newcomer overwriting the intent
    /// unconditionally, this model fails.
    #[test]
    fn a_dead_members_entry_is_reused_only_after_its_claims_are_finished() {
        bounded_model(|| {
            let (h, dead, dying, live) = dying_and_live_consumers();
            // It may have won position 0, or position 1 after the live one took 0.
            let won = dying.join().unwrap();
            assert_eq!(live.join().unwrap(), if won == Some(0) { 2 } else { 1 });

            // Entry 0 is the newcomer's (alive) from the moment it takes the lock.
            let taken = Arc::new(AtomicBool::new(false));
            let joined = Arc::new(AtomicBool::new(false));
            let (h3, d3, t3, j3) = (h.clone(), dead.clone(), taken.clone(), joined.clone());
            let newcomer = loom::thread::spawn(move || {
                let r = ring(&h3);
                t3.store(true, Ordering::Release);
                r.recover_member(0, |m| m == 0 || d3.load(Ordering::Acquire) & (1 << m) != 0);
                if r.claims_finished(0) {
                    // Its first announcement overwrites whatever entry 0 said.
                    r.hdr.intents[0].clear(false);
                } else {
                    t3.store(false, Ordering::Release);
                }
                j3.store(true, Ordering::Release);
            });
            let r = ring(&h);
            let is_dead = |m: u32| {
                dead.load(Ordering::Acquire) & (1 << m) != 0
                    && !(m == 0 && taken.load(Ordering::Acquire))
            };
            // A third put needs the slot of position 0.
            loop {
                let newcomer_done = joined.load(Ordering::Acquire);
                if let Step::Done((pos, _)) = r.claim_put(1, 2) {
                    r.publish(pos, 1);
                    r.done(2, true);
                    break;
                }
                if !r.recover_dead_consumer(is_dead) {
                    assert!(!newcomer_done, "the producer is wedged");
                }
                loom::thread::yield_now();
            }
            newcomer.join().unwrap();
            // Whatever the dead one won is finished once, by the newcomer or the
            // producer, and its entry is then free to reuse.
            assert_eq!(
                h.hdr.abandoned.0.load(Ordering::Relaxed),
                won.is_some() as u64
            );
            assert!(r.claims_finished(0));
        });
    }
}
