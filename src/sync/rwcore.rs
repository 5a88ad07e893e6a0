//! A robust read-write lock across processes: many readers or one writer, and a
//! reader or writer killed while holding it never blocks anyone for good.
//!
//! POSIX's `pthread_rwlock_t` is not robust (a reader or writer killed with
//! `kill -9` blocks writers forever), so this lock is built from three parts:
//!
//! - the array's **robust mutex** (`RawRobustMutex`), which every writer holds for
//!   the whole write: a dead writer hands `OwnerDied` to the next locker, reader or
//!   writer, who then holds exclusive access and repairs the data;
//! - a **writer word** (`FREE`, `WRITING`, `POISONED`) and a mask of registered
//!   reader slots, in the control block;
//! - a **reader table**: one 32-byte entry per reading handle (a `MemberEntry` of
//!   the member table, with its own liveness lock byte) whose `holds` word counts
//!   the read locks that handle holds. Readers only ever write their own entry, so
//!   two readers in two processes share no cache line that either writes.
//!
//! | operation | steps |
//! |---|---|
//! | join (first read through a handle) | under the mutex: take a free slot's liveness byte, `holds = 0`, set the slot's bit in the mask |
//! | read, fast | `holds += 1`; if the writer word is `FREE`, done; else `holds -= 1` (waking a draining writer) and go slow |
//! | read, slow | lock the mutex (waits for the writer); `holds += 1`; unlock. A dead writer: `OwnerDied`, this reader becomes the writer |
//! | read unlock | `holds -= 1`; if it reached 0 and the writer word is not `FREE`, wake the writer |
//! | write | lock the mutex; if no reader is registered, done (nobody can join: joins need the mutex); else writer word = `WRITING`, then wait until every registered slot's `holds` is 0 |
//! | drain, dead reader | a slot whose `holds` stays non-zero and whose member lock is free belongs to a dead process: `holds = 0`, slot vacated (counted as recovered) |
//! | write unlock | writer word = `FREE` (or `POISONED` when an `OwnerDied` guard is dropped unrepaired), then unlock the mutex |
//!
//! No writer starvation: once a writer holds the mutex and has set the writer word,
//! new readers go the slow way and queue on the mutex behind it; the writer only
//! waits for the readers that were already inside.
//!
//! ## Memory ordering
//! The reader's `holds += 1` then `load(writer)` and the writer's
//! `store(writer, WRITING)` then `load(holds)` are all `SeqCst`: in the single total
//! order, either the writer's load sees the reader's increment (and waits for it),
//! or the reader's load sees `WRITING` (and backs out); both cannot miss each other
//! (Dekker). The unlock's `holds -= 1` then `load(writer)` pairs the same way with
//! the writer's `store` then futex wait on `holds`, so a wake-up is never lost (and
//! the futex wait re-checks the value in the kernel). Joins, recoveries and the
//! writer's reading of the mask happen under the mutex, which orders them.

use std::time::Duration;

#[cfg(not(loom))]
use crate::format::control::{ReaderSlots, RwSlot, READER_SLOTS};
use crate::primitive::{dekker_fence, sleep_while, wake_all, AtomicU32, AtomicU64, Ordering};
use crate::segment::liveness::Liveness;
use crate::sync::members::{self, MemberEntry};
use crate::sync::{TimedOut, Wait};

/// Writer word: no writer.
const FREE: u32 = 0;
/// Writer word: a writer holds the lock or is waiting for the readers to leave.
const WRITING: u32 = 1;
/// Writer word: a writer's `OwnerDied` guard was dropped unrepaired; the mutex is
/// not recoverable, and readers must not read the torn data either.
const POISONED: u32 = 2;

/// How often a draining writer asks whether a reader that still holds is alive.
const POLL: Duration = Duration::from_millis(10);

/// The lock's shared words (`#[repr(C)]`, atomics only; all-zero bytes are a free
/// lock with no readers).
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct RwHeader {
    writer: AtomicU32,
    _reserved: AtomicU32,
    /// Bit `i`: slot `i` of the reader table is registered.
    registered: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<RwHeader>() <= std::mem::size_of::<RwSlot>());
    assert!(std::mem::align_of::<RwHeader>() <= std::mem::align_of::<RwSlot>());
    assert!(
        std::mem::size_of::<[MemberEntry; READER_SLOTS]>() == std::mem::size_of::<ReaderSlots>()
    );
    assert!(READER_SLOTS <= 64);
};

/// What a finished drain found, packed in one word (it travels in every write
/// guard): whether the writer word was set (readers were registered, so unlock must
/// clear it) and how many dead readers' shares were taken back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Drained(u32);

impl Drained {
    const ANNOUNCED: u32 = 1 << 31;

    /// A writer that announced itself and recovered `recovered` dead readers.
    pub(crate) fn announced(recovered: u32) -> Drained {
        Drained(Self::ANNOUNCED | recovered.min(Self::ANNOUNCED - 1))
    }

    /// Whether the writer word was set.
    #[inline]
    pub(crate) fn is_announced(self) -> bool {
        self.0 & Self::ANNOUNCED != 0
    }

    /// Dead readers whose share was taken back.
    pub(crate) fn recovered(self) -> u32 {
        self.0 & !Self::ANNOUNCED
    }
}

/// The lock's state machine over its shared words: pure logic (no syscalls besides
/// futex sleeps), model checked with loom. The caller supplies the mutex: methods
/// that say "under the mutex" must only be called while holding it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RwCore<'a> {
    header: &'a RwHeader,
    table: &'a [MemberEntry],
}

impl<'a> RwCore<'a> {
    /// The state machine over a header and a reader table.
    pub(crate) fn new(header: &'a RwHeader, table: &'a [MemberEntry]) -> RwCore<'a> {
        RwCore { header, table }
    }

    /// The reader table.
    pub(crate) fn table(&self) -> &'a [MemberEntry] {
        self.table
    }

    /// Reader fast path: counts this slot in, then looks for a writer. `false`: a
    /// writer is there (or the lock is poisoned); the slot is counted out again and
    /// the caller must go the slow way.
    #[inline]
    pub(crate) fn try_enter(&self, slot: usize) -> bool {
        let holds = &self.table[slot].holds;
        holds.fetch_add(1, Ordering::SeqCst);
        dekker_fence();
        if self.header.writer.load(Ordering::SeqCst) == FREE {
            return true;
        }
        self.exit(slot);
        false
    }

    /// Counts a read in without looking for a writer: only under the mutex (no
    /// writer can be inside), or while the caller already holds a read through
    /// this slot (a writer cannot get past a slot that holds).
    #[inline]
    pub(crate) fn enter_unchecked(&self, slot: usize) {
        self.table[slot].holds.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a read out; wakes a draining writer when the slot empties.
    #[inline]
    pub(crate) fn exit(&self, slot: usize) {
        let holds = &self.table[slot].holds;
        let last = holds.fetch_sub(1, Ordering::SeqCst) == 1;
        dekker_fence();
        if last && self.header.writer.load(Ordering::SeqCst) != FREE {
            wake_all(holds);
        }
    }

    /// Under the mutex: makes `slot` (just joined) a registered reader slot.
    pub(crate) fn register(&self, slot: usize) {
        self.table[slot].holds.store(0, Ordering::SeqCst);
        self.header.registered.fetch_or(1 << slot, Ordering::SeqCst);
    }

    /// Takes `slot` out of the mask (its handle leaves; it holds nothing).
    pub(crate) fn unregister(&self, slot: usize) {
        self.header
            .registered
            .fetch_and(!(1u64 << slot), Ordering::SeqCst);
    }

    /// The mask bits of the table's entries.
    fn table_mask(&self) -> u64 {
        match self.table.len() {
            n if n >= 64 => u64::MAX,
            n => (1u64 << n) - 1,
        }
    }

    /// Whether the lock was poisoned by an unrepaired dead writer.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.header.writer.load(Ordering::Acquire) == POISONED
    }

    /// Under the mutex: `Some` if no reader can be inside (none is registered and
    /// no writer word is left over), so a writer need not announce itself.
    #[inline]
    pub(crate) fn no_readers(&self) -> Option<Drained> {
        (self.header.registered.load(Ordering::SeqCst) == 0
            && self.header.writer.load(Ordering::Relaxed) == FREE)
            .then(Drained::default)
    }

    /// Under the mutex: announces a writer and waits until no reader holds.
    ///
    /// A slot that still holds after a sleep is asked about with `liveness`; a
    /// `Dead` one is recovered (its holds cleared, its slot vacated), `Alive` and
    /// `Unknown` ones are waited for. Once `wait` runs out this gives up with
    /// `TimedOut` (the caller then calls [`end_write`](Self::end_write) and unlocks).
    pub(crate) fn begin_write(
        &self,
        wait: Wait,
        mut liveness: impl FnMut(usize) -> Liveness,
    ) -> Result<Drained, TimedOut> {
        if let Some(d) = self.no_readers() {
            // No reader can be inside: entering needs a registered slot, and
            // registering needs the mutex, which we hold.
            return Ok(d);
        }
        self.header.writer.store(WRITING, Ordering::SeqCst);
        dekker_fence();
        let mut recovered = 0;
        let mut mask = self.header.registered.load(Ordering::SeqCst);
        let stray = mask & !self.table_mask();
        if stray != 0 {
            // Bits of entries the table does not have (a stray write): no reader
            // can be behind them, and left set they would send every writer here.
            self.header.registered.fetch_and(!stray, Ordering::SeqCst);
            mask &= !stray;
        }
        for slot in (0..self.table.len()).filter(|s| mask & (1 << s) != 0) {
            let holds = &self.table[slot].holds;
            loop {
                let n = holds.load(Ordering::SeqCst);
                if n == 0 {
                    break;
                }
                let Some(slice) = wait.slice(POLL) else {
                    return Err(TimedOut);
                };
                sleep_while(holds, n, slice);
                if holds.load(Ordering::SeqCst) != 0 && liveness(slot) == Liveness::Dead {
                    // The member's process is gone, so nobody else writes `holds`
                    // (joins, which could reuse the slot, need the mutex we hold).
                    holds.store(0, Ordering::SeqCst);
                    members::vacate(self.table, slot);
                    self.unregister(slot);
                    recovered += 1;
                }
            }
        }
        Ok(Drained::announced(recovered))
    }

    /// Under the mutex, before unlocking it: lets readers in again, or, when the
    /// data was left unrepaired after a dead writer (`poison`), keeps them out for
    /// good (they then meet the not-recoverable mutex).
    #[inline]
    pub(crate) fn end_write(&self, drained: Drained, poison: bool) {
        if poison {
            self.header.writer.store(POISONED, Ordering::SeqCst);
        } else if drained.is_announced() {
            self.header.writer.store(FREE, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
impl RwHeader {
    /// A free lock (for heap models).
    pub(crate) fn new() -> RwHeader {
        RwHeader {
            writer: AtomicU32::new(FREE),
            _reserved: AtomicU32::new(0),
            registered: AtomicU64::new(0),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    /// The same protocol as the loom model, with real threads on heap memory and
    /// many rounds: readers never see a half-written pair, the writer always gets in.
    #[test]
    fn threads_never_see_a_torn_pair() {
        let header = RwHeader::new();
        let table: Vec<MemberEntry> = (0..3).map(|_| MemberEntry::vacant()).collect();
        let core = RwCore::new(&header, &table);
        for slot in 0..3 {
            core.register(slot);
        }
        let mutex = Mutex::new(());
        let data = [AtomicU64::new(0), AtomicU64::new(0)];
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for slot in 0..3 {
                let (mutex, data, stop) = (&mutex, &data, &stop);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if !core.try_enter(slot) {
                            let _g = mutex.lock().unwrap();
                            core.enter_unchecked(slot);
                        }
                        let a = data[0].load(Ordering::Relaxed);
                        let b = data[1].load(Ordering::Relaxed);
                        core.exit(slot);
                        assert_eq!(a, b, "a read overlapped a write");
                    }
                });
            }
            for i in 1..=2000u64 {
                let _g = mutex.lock().unwrap();
                let d = core
                    .begin_write(Wait::Forever, |_| Liveness::Alive)
                    .unwrap();
                data[0].store(i, Ordering::Relaxed);
                data[1].store(i, Ordering::Relaxed);
                core.end_write(d, false);
            }
            stop.store(true, Ordering::Relaxed);
        });
    }

    #[test]
    fn a_dead_slot_is_recovered_and_an_unknown_one_is_waited_for() {
        let header = RwHeader::new();
        let table: Vec<MemberEntry> = (0..2).map(|_| MemberEntry::vacant()).collect();
        let core = RwCore::new(&header, &table);
        core.register(0);
        core.register(1);
        assert!(core.try_enter(0));
        assert!(core.try_enter(1));
        // Slot 0 "died" holding; slot 1 cannot be decided: the writer recovers 0
        // and times out on 1, then lets readers in again.
        let r = core.begin_write(Wait::timeout(Duration::from_millis(50)), |slot| {
            if slot == 0 {
                Liveness::Dead
            } else {
                Liveness::Unknown
            }
        });
        assert_eq!(r, Err(TimedOut));
        assert_eq!(table[0].holds.load(Ordering::SeqCst), 0);
        assert_eq!(table[1].holds.load(Ordering::SeqCst), 1);
        core.end_write(Drained::announced(1), false);
        core.exit(1);
        assert!(core.try_enter(1), "readers are let in again");
        core.exit(1);
        let d = core
            .begin_write(Wait::Forever, |_| Liveness::Alive)
            .unwrap();
        assert_eq!(d.recovered(), 0);
        core.end_write(d, true);
        assert!(core.is_poisoned());
        assert!(!core.try_enter(1), "a poisoned lock keeps readers out");
    }
}

/// Model checking of the state machine with loom: every interleaving of two readers
/// and a writer, with the data in a loom cell (which reports any read that overlaps
/// a write), and a reader that dies holding its share.
/// `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom_tests`
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::{Arc, Mutex};

    struct Model {
        header: RwHeader,
        table: Vec<MemberEntry>,
        mutex: Mutex<()>,
        data: UnsafeCell<[u64; 2]>,
        dead: AtomicBool,
    }

    impl Model {
        fn new(readers: usize) -> Arc<Model> {
            let m = Model {
                header: RwHeader::new(),
                table: (0..readers).map(|_| MemberEntry::vacant()).collect(),
                mutex: Mutex::new(()),
                data: UnsafeCell::new([0; 2]),
                dead: AtomicBool::new(false),
            };
            for slot in 0..readers {
                m.core().register(slot);
            }
            Arc::new(m)
        }

        fn core(&self) -> RwCore<'_> {
            RwCore::new(&self.header, &self.table)
        }

        fn read_enter(&self, slot: usize) {
            if !self.core().try_enter(slot) {
                let _g = self.mutex.lock().unwrap();
                self.core().enter_unchecked(slot);
            }
        }

        /// Reads both words; a writer writes them together, so they must agree.
        fn read(&self, slot: usize) -> [u64; 2] {
            self.read_enter(slot);
            let v = self.data.with(|p| unsafe { *p });
            self.core().exit(slot);
            v
        }

        fn write(&self, value: u64) -> Drained {
            self.write_with(value, |_| {
                if self.dead.load(Ordering::SeqCst) {
                    Liveness::Dead
                } else {
                    Liveness::Alive
                }
            })
        }

        fn write_with(&self, value: u64, liveness: impl FnMut(usize) -> Liveness) -> Drained {
            let _g = self.mutex.lock().unwrap();
            let d = self.core().begin_write(Wait::Forever, liveness).unwrap();
            self.data.with_mut(|p| unsafe { *p = [value, value] });
            self.core().end_write(d, false);
            d
        }
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(f);
    }

    #[test]
    fn loom_tests_readers_and_a_writer_exclude_each_other() {
        model(|| {
            let m = Model::new(2);
            let readers: Vec<_> = (0..2)
                .map(|slot| {
                    let m = m.clone();
                    loom::thread::spawn(move || {
                        let [a, b] = m.read(slot);
                        assert_eq!(a, b, "torn read");
                    })
                })
                .collect();
            m.write(7);
            for r in readers {
                r.join().unwrap();
            }
            assert_eq!(m.read(0), [7, 7]);
        });
    }

    /// Entry 0 was forged (its bit set, holding, owned by nobody: its lock byte
    /// is free, so the writer's liveness check calls it dead) while a reader joins
    /// entry 1 (under the mutex, as joins are) and reads: the writer takes entry 0
    /// back exactly once, never waits for it, and never overlaps the reader.
    #[test]
    fn loom_tests_an_entry_nobody_owns_is_taken_back_while_a_reader_joins() {
        model(|| {
            let m = Model::new(2);
            m.core().unregister(1);
            m.table[0].holds.store(2, Ordering::SeqCst);
            let reader = {
                let m = m.clone();
                loom::thread::spawn(move || {
                    {
                        let _g = m.mutex.lock().unwrap();
                        m.core().register(1);
                    }
                    let [a, b] = m.read(1);
                    assert_eq!(a, b, "torn read");
                })
            };
            let d = m.write_with(5, |slot| {
                if slot == 0 {
                    Liveness::Dead
                } else {
                    Liveness::Alive
                }
            });
            reader.join().unwrap();
            assert_eq!(d.recovered(), 1);
            assert_eq!(m.table[0].holds.load(Ordering::SeqCst), 0);
            assert_eq!(m.table[1].holds.load(Ordering::SeqCst), 0);
            assert_eq!(m.header.registered.load(Ordering::SeqCst), 0b10);
        });
    }

    #[test]
    fn loom_tests_a_dead_readers_share_is_recovered_by_the_writer() {
        model(|| {
            let m = Model::new(1);
            let reader = {
                let m = m.clone();
                loom::thread::spawn(move || {
                    // Enters and dies holding its share.
                    m.read_enter(0);
                    m.dead.store(true, Ordering::SeqCst);
                })
            };
            let d = m.write(1);
            reader.join().unwrap();
            // Either the reader held when the writer drained (its share is taken
            // back) or it came in after the writer, behind the mutex (its share is
            // still counted).
            let holds = m.table[0].holds.load(Ordering::SeqCst);
            assert_eq!(
                d.recovered() + holds,
                1,
                "recovered {} holds {holds}",
                d.recovered()
            );
        });
    }
}
