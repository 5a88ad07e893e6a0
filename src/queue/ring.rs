//! The bounded MPMC ring (Vyukov-style sequence stamps) over raw shared memory.
//!
//! Layout (all `#[repr(C)]`, offsets only): a [`RingHeader`] (control words and one
//! [`Intent`] per member) followed by `capacity` slots of `stride` bytes: a
//! [`SlotHead`] (sequence stamp + length) then the payload bytes.
//!
//! ## Slot state table (position `p`, capacity `c`)
//! | `seq` of slot `p % c` | meaning | next transition |
//! |---|---|---|
//! | `p` | free for the producer of position `p` | producer wins `head: p → p+1`, writes, stores `p+1` (Release) |
//! | `p+1` | holds the item of position `p` | consumer wins `tail: p → p+1`, reads, stores `p+c` (Release) |
//! | `p+1`, `LOST` flag | the producer of `p` died after claiming | consumer skips it (counted in `lost`) |
//!
//! ## Who holds a slot: intents
//! Before its `head`/`tail` CAS a member announces an [`Intent`] (first position + 1
//! and count) in its own cache line, and withdraws it only after the last stamp
//! store of the operation ([`Ring::done`]), or when it gives up (`Blocked`). So while
//! a slot is claimed (`head`/`tail` past it) but not finished, the member that won
//! it has an intent covering it. Others' intents may cover it too (a member whose
//! CAS for the same position failed, before it retries), so a blocked peer finishes
//! the step for the holder only when *every* member whose intent covers the slot is
//! dead (pid + start time in the queue's member table): a dead producer's slot is
//! published as `LOST`, a dead consumer's slot is released. A dying process thus
//! never wedges the ring, whatever instruction it died at.
//!
//! ## Memory ordering
//! Stamps are stored with Release after the payload is written/read and loaded with
//! Acquire before it is read/overwritten. An intent is stored (Release) before the
//! AcqRel `head`/`tail` CAS, so a recoverer that loads `head`/`tail` (Acquire) past a
//! position sees the winner's intent or a later value of that word; later values are
//! written (Release) only after the winner's stamp store, so a recoverer that reads
//! one also sees the new stamp and its recovery CAS fails, as it must.

// Under `--cfg loom` the ring's atomics are loom's, so its index logic can be model
// checked on heap memory (see the `loom_tests` module for the command).
#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Flag in the high bit of a stamp: the slot's item was lost with its producer.
pub(crate) const LOST: u64 = 1 << 63;
/// Smallest capacity the stamp scheme supports: with one slot, "published for
/// position p" (`p+1`) and "free for position p+1" (`p+1`) would be the same stamp,
/// and a producer could overwrite an item not yet consumed (found by loom).
pub(crate) const MIN_CAPACITY: u64 = 2;
/// Most processes that can attach one ring at the same time (member indices are
/// `0..MAX_MEMBERS`). Smaller under loom, whose models track every atomic.
#[cfg(not(loom))]
pub const MAX_MEMBERS: usize = 64;
#[cfg(loom)]
pub const MAX_MEMBERS: usize = 3;

/// Ring control words, each on its own cache-line pair.
#[repr(C, align(128))]
pub(crate) struct Padded<T>(pub T);

/// Start of the ring region.
#[repr(C)]
pub(crate) struct RingHeader {
    pub head: Padded<AtomicU64>,
    pub tail: Padded<AtomicU64>,
    /// Bumped after each put; consumers sleep on it.
    pub puts: Padded<AtomicU32>,
    /// Bumped after each get; producers sleep on it.
    pub gets: Padded<AtomicU32>,
    pub get_waiters: Padded<AtomicU32>,
    pub put_waiters: Padded<AtomicU32>,
    pub closed: Padded<AtomicU32>,
    /// Items lost to producers that died after claiming a slot.
    pub lost: Padded<AtomicU64>,
    /// Items taken by consumers that died before releasing the slot.
    pub abandoned: Padded<AtomicU64>,
    /// What each member is claiming right now (see the module docs).
    pub intents: [Intent; MAX_MEMBERS],
}

/// The claim a member has in flight, written by that member only: `*_pos` is the
/// first position + 1 (0: none), `*_n` the count. Stored before the `head`/`tail`
/// CAS (Release), cleared after the operation's last stamp store (Release).
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct Intent {
    put_pos: AtomicU64,
    put_n: AtomicU64,
    get_pos: AtomicU64,
    get_n: AtomicU64,
}

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
        p.store(pos + 1, Ordering::Release);
    }

    #[inline]
    fn clear(&self, put: bool) {
        self.words(put).0.store(0, Ordering::Release);
    }

    /// Whether the claim in flight covers `pos`.
    fn covers(&self, put: bool, pos: u64) -> bool {
        let (p, c) = self.words(put);
        let first = p.load(Ordering::Acquire);
        first != 0
            && (first - 1..(first - 1).saturating_add(c.load(Ordering::Relaxed))).contains(&pos)
    }
}

/// The head of every slot.
#[repr(C, align(16))]
pub(crate) struct SlotHead {
    pub seq: AtomicU64,
    pub len: AtomicU32,
    _reserved: AtomicU32,
}

pub(crate) const SLOT_HEAD: usize = std::mem::size_of::<SlotHead>();
#[cfg(not(loom))]
const _: () = assert!(SLOT_HEAD == 16);

/// A view of a ring in (shared) memory.
#[derive(Clone, Copy)]
pub(crate) struct Ring<'a> {
    pub hdr: &'a RingHeader,
    slots: *mut u8,
    capacity: u64,
    stride: usize,
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
    /// # Safety
    /// `hdr` is followed in memory by `capacity` slots of `stride` bytes starting at
    /// `slots`, all valid for the lifetime `'a`, shared only through `Ring`s.
    pub unsafe fn new(
        hdr: &'a RingHeader,
        slots: *mut u8,
        capacity: u64,
        stride: usize,
    ) -> Ring<'a> {
        Ring {
            hdr,
            slots,
            capacity,
            stride,
        }
    }

    /// Initialises the stamps of a fresh ring (slot `i` free for position `i`).
    pub fn init(&self) {
        for i in 0..self.capacity {
            self.slot(i).seq.store(i, Ordering::Relaxed);
        }
    }

    #[inline]
    fn slot_ptr(&self, pos: u64) -> *mut u8 {
        // SAFETY: `pos % capacity < capacity` slots of `stride` bytes follow `slots`.
        unsafe { self.slots.add((pos % self.capacity) as usize * self.stride) }
    }

    #[inline]
    pub fn slot(&self, pos: u64) -> &'a SlotHead {
        // SAFETY: every slot starts with an aligned SlotHead (stride is a multiple of
        // 16, slots start 16-aligned); it is only accessed through atomics.
        unsafe { &*self.slot_ptr(pos).cast::<SlotHead>() }
    }

    /// The payload bytes of the slot of `pos`.
    ///
    /// # Safety
    /// The caller owns the slot for `pos` (won the head or tail CAS for it).
    #[inline]
    pub unsafe fn payload(&self, pos: u64) -> &'a mut [u8] {
        // SAFETY: the payload follows the head inside the slot; ownership of the slot
        // is exclusive per the caller's contract.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.slot_ptr(pos).add(SLOT_HEAD),
                self.stride - SLOT_HEAD,
            )
        }
    }

    /// Claims up to `max` consecutive positions for producing. Returns the first
    /// position and the count.
    pub fn claim_put(&self, max: u64, me: u32) -> Step<(u64, u64)> {
        let intent = self.hdr.intents.get(me as usize);
        let mut pos = self.hdr.head.0.load(Ordering::Relaxed);
        loop {
            // A LOST slot not yet skipped by a consumer is "not free yet" (without the
            // mask its huge stamp would read as "another producer moved on").
            let seq = self.slot(pos).seq.load(Ordering::Acquire) & !LOST;
            let dif = seq.wrapping_sub(pos) as i64;
            if dif == 0 {
                // Extend over following free slots (batching).
                let mut n = 1;
                while n < max && self.slot(pos + n).seq.load(Ordering::Acquire) == pos + n {
                    n += 1;
                }
                if let Some(i) = intent {
                    i.announce(true, pos, n);
                }
                match self.hdr.head.0.compare_exchange_weak(
                    pos,
                    pos + n,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Step::Done((pos, n)),
                    Err(cur) => pos = cur,
                }
            } else if dif < 0 {
                if let Some(i) = intent {
                    i.clear(true);
                }
                return Step::Blocked;
            } else {
                pos = self.hdr.head.0.load(Ordering::Relaxed);
            }
        }
    }

    /// Ends member `me`'s put (`put`) or get operation: call it after the last
    /// `publish`/`release` of the positions `claim_*` returned.
    #[inline]
    pub fn done(&self, me: u32, put: bool) {
        if let Some(i) = self.hdr.intents.get(me as usize) {
            i.clear(put);
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

    /// Publishes a claimed slot whose item will never be written, as `LOST`
    /// (consumers skip it; counted in `lost`).
    pub fn publish_lost(&self, pos: u64) {
        self.slot(pos)
            .seq
            .store((pos + 1) | LOST, Ordering::Release);
        self.hdr.lost.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes a produced slot.
    pub fn publish(&self, pos: u64, len: u32) {
        let s = self.slot(pos);
        s.len.store(len, Ordering::Relaxed);
        s.seq.store(pos + 1, Ordering::Release);
    }

    /// Claims up to `max` consecutive published positions for consuming; slots lost
    /// with a dead producer are skipped (released and counted).
    pub fn claim_get(&self, max: u64, me: u32) -> Step<(u64, u64)> {
        let intent = self.hdr.intents.get(me as usize);
        let mut pos = self.hdr.tail.0.load(Ordering::Relaxed);
        loop {
            let seq = self.slot(pos).seq.load(Ordering::Acquire);
            let dif = (seq & !LOST).wrapping_sub(pos + 1) as i64;
            if dif == 0 {
                let mut n = 1;
                while n < max && self.slot(pos + n).seq.load(Ordering::Acquire) == pos + n + 1 {
                    n += 1;
                }
                if seq & LOST != 0 {
                    n = 1;
                }
                if let Some(i) = intent {
                    i.announce(false, pos, n);
                }
                match self.hdr.tail.0.compare_exchange_weak(
                    pos,
                    pos + n,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        if seq & LOST != 0 {
                            self.release(pos);
                            pos += 1;
                            continue;
                        }
                        return Step::Done((pos, n));
                    }
                    Err(cur) => pos = cur,
                }
            } else if dif < 0 {
                if let Some(i) = intent {
                    i.clear(false);
                }
                return Step::Blocked;
            } else {
                pos = self.hdr.tail.0.load(Ordering::Relaxed);
            }
        }
    }

    /// Releases a consumed slot for the producer of `pos + capacity`.
    pub fn release(&self, pos: u64) {
        self.slot(pos)
            .seq
            .store(pos + self.capacity, Ordering::Release);
    }

    pub fn len(&self) -> u64 {
        let tail = self.hdr.tail.0.load(Ordering::Acquire);
        let head = self.hdr.head.0.load(Ordering::Acquire);
        head.saturating_sub(tail).min(self.capacity)
    }

    /// Recovery when consumers are stuck: if the slot at `tail` was claimed by a
    /// producer that is dead (per `is_dead(member)`), publish it as LOST.
    pub fn recover_dead_producer(&self, is_dead: impl Fn(u32) -> bool) -> bool {
        let pos = self.hdr.tail.0.load(Ordering::Acquire);
        let head = self.hdr.head.0.load(Ordering::Acquire);
        if head <= pos {
            return false;
        }
        let s = self.slot(pos);
        if s.seq.load(Ordering::Acquire) != pos {
            return false;
        }
        if !self.holder_is_dead(pos, true, &is_dead) {
            return false;
        }
        if s.seq
            .compare_exchange(pos, (pos + 1) | LOST, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.hdr.lost.0.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Recovery when producers are stuck: if the slot at `head` is still held by a
    /// consumer that is dead, release it.
    pub fn recover_dead_consumer(&self, is_dead: impl Fn(u32) -> bool) -> bool {
        let pos = self.hdr.head.0.load(Ordering::Acquire);
        if pos < self.capacity {
            return false;
        }
        let prev = pos - self.capacity; // the position whose consumer must release
        let s = self.slot(pos);
        // A consumer that died while skipping a LOST slot leaves the flag on it.
        let seq = s.seq.load(Ordering::Acquire);
        if seq & !LOST != prev + 1 || self.hdr.tail.0.load(Ordering::Acquire) <= prev {
            return false;
        }
        if !self.holder_is_dead(prev, false, &is_dead) {
            return false;
        }
        if s.seq
            .compare_exchange(seq, pos, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            if seq & LOST == 0 {
                self.hdr.abandoned.0.fetch_add(1, Ordering::Relaxed);
            }
            return true;
        }
        false
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct HeapRing {
        hdr: Box<RingHeader>,
        slots: Vec<u128>,
    }

    fn heap_ring(capacity: u64, stride: usize) -> HeapRing {
        // SAFETY: RingHeader is atomics only: zero is valid.
        let hdr: Box<RingHeader> = Box::new(unsafe { std::mem::zeroed() });
        let slots = vec![0u128; capacity as usize * stride / 16];
        HeapRing { hdr, slots }
    }

    #[test]
    fn threads_pass_every_item_exactly_once_in_producer_order() {
        let mut h = heap_ring(64, 32);
        let ptr = h.slots.as_mut_ptr() as usize;
        // SAFETY: 64 slots of 32 bytes follow at `ptr`, alive for the test.
        let ring = unsafe { Ring::new(&h.hdr, ptr as *mut u8, 64, 32) };
        ring.init();
        let hdr_addr = &*h.hdr as *const RingHeader as usize;
        let per = 20_000u64;
        let mk = move || {
            // SAFETY: as above; the header and slots outlive the scoped threads.
            unsafe { Ring::new(&*(hdr_addr as *const RingHeader), ptr as *mut u8, 64, 32) }
        };
        let got = std::thread::scope(|s| {
            for p in 0..2u64 {
                s.spawn(move || {
                    let r = mk();
                    let mut i = 0;
                    while i < per {
                        if let Step::Done((pos, n)) = r.claim_put(3.min(per - i), p as u32) {
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
                    s.spawn(move || {
                        let r = mk();
                        let mut out = Vec::new();
                        while (out.len() as u64) < per {
                            if let Step::Done((pos, n)) = r.claim_get(4, 10 + c) {
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

    fn heap_ring_view(h: &mut HeapRing, capacity: u64) -> Ring<'_> {
        let slots = h.slots.as_mut_ptr() as *mut u8;
        // SAFETY: `capacity` slots of 32 bytes, alive as long as `h`.
        let ring = unsafe { Ring::new(&h.hdr, slots, capacity, 32) };
        ring.init();
        ring
    }

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
    fn a_dead_producer_is_recovered_only_when_every_possible_holder_is_dead() {
        let mut h = heap_ring(4, 32);
        let ring = heap_ring_view(&mut h, 4);
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
        let mut h = heap_ring(4, 32);
        let ring = heap_ring_view(&mut h, 4);
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
        let mut h = heap_ring(2, 32);
        let ring = heap_ring_view(&mut h, 2);
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

    #[test]
    fn intents_are_withdrawn_when_blocked_and_when_done() {
        let mut h = heap_ring(2, 32);
        let ring = heap_ring_view(&mut h, 2);
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
}

/// Model checking of the ring's index logic with loom (every interleaving of a few
/// threads on a tiny ring). Run:
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib queue::ring::loom_tests`
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
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
            get_waiters: pad32(0),
            put_waiters: pad32(0),
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
        // SAFETY: `cap` slots of `size_of::<LoomSlot>()` bytes, alive with `h`.
        unsafe {
            Ring::new(
                &h.hdr,
                (*h.slots.get()).as_mut_ptr().cast::<u8>(),
                h.cap,
                std::mem::size_of::<LoomSlot>(),
            )
        }
    }

    fn put(r: &Ring<'_>, v: u8, me: u32) {
        loop {
            if let Step::Done((pos, _)) = r.claim_put(1, me) {
                // SAFETY: we own `pos`.
                unsafe { r.payload(pos)[0] = v };
                r.publish(pos, 1);
                r.done(me, true);
                return;
            }
            loom::thread::yield_now();
        }
    }

    fn get(r: &Ring<'_>, me: u32) -> u8 {
        loop {
            if let Step::Done((pos, _)) = r.claim_get(1, me) {
                // SAFETY: we own `pos`.
                let v = unsafe { r.payload(pos)[0] };
                r.release(pos);
                r.done(me, false);
                return v;
            }
            loom::thread::yield_now();
        }
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
            let mut got = [get(&r, 9), get(&r, 9)];
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

    #[test]
    fn a_consumer_dying_after_its_cas_is_recovered_and_never_confused_with_a_live_one() {
        bounded_model(|| {
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
}
