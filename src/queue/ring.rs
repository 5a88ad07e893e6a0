//! The bounded MPMC ring (Vyukov-style sequence stamps) over raw shared memory.
//!
//! Layout (all `#[repr(C)]`, offsets only): a [`RingHeader`] followed by `capacity`
//! slots of `stride` bytes: a [`SlotHead`] (sequence stamp + claimant) then the
//! payload bytes.
//!
//! ## Slot state table (position `p`, capacity `c`)
//! | `seq` of slot `p % c` | meaning | next transition |
//! |---|---|---|
//! | `p` | free for the producer of position `p` | producer wins `head: p → p+1`, writes, stores `p+1` (Release) |
//! | `p+1` | holds the item of position `p` | consumer wins `tail: p → p+1`, reads, stores `p+c` (Release) |
//! | `p+1`, `LOST` flag | the producer of `p` died after claiming | consumer skips it (counted in `lost`) |
//!
//! A producer/consumer writes its member index into `claimant` right after winning
//! its CAS. If a slot stays claimed-but-unfinished while its claimant's process is
//! dead (pid + start time in the member table), a blocked peer finishes the step on
//! its behalf: a dead producer's slot is published as `LOST`, a dead consumer's slot
//! is released. So a dying process never wedges the ring.
//!
//! ## Memory ordering
//! Stamps are stored with Release after the payload is written/read and loaded with
//! Acquire before it is read/overwritten; `head`/`tail` CASes only arbitrate
//! ownership (Relaxed would do; we use AcqRel for clarity of the claimant store).

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
/// Claimant value meaning "nobody".
pub(crate) const NOBODY: u32 = u32::MAX;

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
}

/// The head of every slot.
#[repr(C, align(16))]
pub(crate) struct SlotHead {
    pub seq: AtomicU64,
    pub claimant: AtomicU32,
    pub len: AtomicU32,
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
            let s = self.slot(i);
            s.seq.store(i, Ordering::Relaxed);
            s.claimant.store(NOBODY, Ordering::Relaxed);
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
        let mut pos = self.hdr.head.0.load(Ordering::Relaxed);
        loop {
            let seq = self.slot(pos).seq.load(Ordering::Acquire);
            let dif = seq.wrapping_sub(pos) as i64;
            if dif == 0 {
                // Extend over following free slots (batching).
                let mut n = 1;
                while n < max && self.slot(pos + n).seq.load(Ordering::Acquire) == pos + n {
                    n += 1;
                }
                match self.hdr.head.0.compare_exchange_weak(
                    pos,
                    pos + n,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        for p in pos..pos + n {
                            self.slot(p).claimant.store(me, Ordering::Relaxed);
                        }
                        return Step::Done((pos, n));
                    }
                    Err(cur) => pos = cur,
                }
            } else if dif < 0 {
                return Step::Blocked;
            } else {
                pos = self.hdr.head.0.load(Ordering::Relaxed);
            }
        }
    }

    /// Publishes a produced slot.
    pub fn publish(&self, pos: u64, len: u32) {
        let s = self.slot(pos);
        s.len.store(len, Ordering::Relaxed);
        s.claimant.store(NOBODY, Ordering::Relaxed);
        s.seq.store(pos + 1, Ordering::Release);
    }

    /// Claims up to `max` consecutive published positions for consuming; slots lost
    /// with a dead producer are skipped (released and counted).
    pub fn claim_get(&self, max: u64, me: u32) -> Step<(u64, u64)> {
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
                        for p in pos..pos + n {
                            self.slot(p).claimant.store(me, Ordering::Relaxed);
                        }
                        return Step::Done((pos, n));
                    }
                    Err(cur) => pos = cur,
                }
            } else if dif < 0 {
                return Step::Blocked;
            } else {
                pos = self.hdr.tail.0.load(Ordering::Relaxed);
            }
        }
    }

    /// Releases a consumed slot for the producer of `pos + capacity`.
    pub fn release(&self, pos: u64) {
        let s = self.slot(pos);
        s.claimant.store(NOBODY, Ordering::Relaxed);
        s.seq.store(pos + self.capacity, Ordering::Release);
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
        let c = s.claimant.load(Ordering::Relaxed);
        if s.seq.load(Ordering::Acquire) == pos
            && c != NOBODY
            && is_dead(c)
            && s.seq
                .compare_exchange(pos, (pos + 1) | LOST, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            s.claimant.store(NOBODY, Ordering::Relaxed);
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
        let c = s.claimant.load(Ordering::Relaxed);
        if s.seq.load(Ordering::Acquire) == prev + 1
            && c != NOBODY
            && is_dead(c)
            && self.hdr.tail.0.load(Ordering::Acquire) > prev
            && s.seq
                .compare_exchange(prev + 1, pos, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            s.claimant.store(NOBODY, Ordering::Relaxed);
            self.hdr.abandoned.0.fetch_add(1, Ordering::Relaxed);
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
    fn dead_claimants_are_recovered() {
        let mut h = heap_ring(4, 32);
        let slots = h.slots.as_mut_ptr() as *mut u8;
        // SAFETY: 4 slots of 32 bytes.
        let ring = unsafe { Ring::new(&h.hdr, slots, 4, 32) };
        ring.init();
        // Producer 7 claims position 0 and "dies"; producer 1 publishes position 1.
        let Step::Done((0, 1)) = ring.claim_put(1, 7) else {
            panic!()
        };
        let Step::Done((1, 1)) = ring.claim_put(1, 1) else {
            panic!()
        };
        ring.publish(1, 0);
        assert_eq!(
            ring.claim_get(1, 2),
            Step::Blocked,
            "position 0 blocks the ring"
        );
        assert!(
            !ring.recover_dead_producer(|m| m == 99),
            "claimant alive: no recovery"
        );
        assert!(ring.recover_dead_producer(|m| m == 7));
        assert_eq!(
            ring.claim_get(1, 2),
            Step::Done((1, 1)),
            "lost slot skipped"
        );
        assert_eq!(h.hdr.lost.0.load(Ordering::Relaxed), 1);
        ring.release(1);
        // Consumer 5 takes position 2 and dies without releasing; the ring fills.
        for _ in 0..4 {
            let Step::Done((p, 1)) = ring.claim_put(1, 1) else {
                panic!()
            };
            ring.publish(p, 0);
        }
        let Step::Done((2, 1)) = ring.claim_get(1, 5) else {
            panic!()
        };
        for _ in 0..3 {
            if let Step::Done((p, 1)) = ring.claim_get(1, 2) {
                ring.release(p);
            }
        }
        // Position 6 maps to the slot consumer 5 still holds.
        assert_eq!(
            ring.claim_put(1, 1),
            Step::Blocked,
            "slot of position 2 still held"
        );
        assert!(
            !ring.recover_dead_consumer(|m| m == 99),
            "claimant alive: no recovery"
        );
        assert!(ring.recover_dead_consumer(|m| m == 5));
        assert!(matches!(ring.claim_put(1, 1), Step::Done(_)));
        assert_eq!(h.hdr.abandoned.0.load(Ordering::Relaxed), 1);
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
        };
        let slots = (0..cap)
            .map(|i| LoomSlot {
                head: SlotHead {
                    seq: AtomicU64::new(i),
                    claimant: AtomicU32::new(NOBODY),
                    len: AtomicU32::new(0),
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
}
