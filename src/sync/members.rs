//! The member table shared by queues and barriers: which handles take part, and
//! whether each is alive.
//!
//! A slot is *owned* by whoever holds the exclusive OFD lock on its lock byte
//! (`MEMBER_BASE + slot`, see `segment::liveness`); the table entry in shared
//! memory only says that the slot is registered and, for people, by which pid. The
//! kernel releases the lock when the member's process dies, in any pid namespace,
//! so liveness never depends on pids or `/proc`.
//!
//! | step | order |
//! |---|---|
//! | join | lock byte (fails if held), then `registered = 1` |
//! | leave | `registered = 0`, then unlock |
//! | check | `registered`; probe the byte; if free, `registered` again |
//!
//! A checker calls a slot dead only if it was registered, its byte is free, and it
//! is still registered after the probe: a member that left cleanly clears
//! `registered` before it unlocks, so it reads as vacant, never as dead. A byte the
//! file system cannot probe is `Unknown`, which no caller treats as dead.
//!
//! Each handle joins through its *own* open file description: `F_OFD_GETLK` does not
//! report the asker's own locks, and a description shared with a forked child would
//! keep a dead member alive. A handle copied into a forked child notices (the fork
//! generation changed) and joins again through a description of its own.

use std::fs::File;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::format::objects::MAX_MEMBERS;
#[cfg(not(loom))]
use crate::format::objects::MEMBER_ENTRY_BYTES;
use crate::segment::liveness::{Liveness, MEMBER_BASE};
use crate::sys::fs::{self, Access};
use crate::sys::lock::{self, Probe};
use crate::sys::proc;

/// One slot of the table (32 bytes, `#[repr(C)]`, atomics only).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct MemberEntry {
    registered: AtomicU32,
    pid: AtomicU32,
    pid_ns: AtomicU64,
    /// Read locks the member holds (the read-write lock's reader table; zero in
    /// queues and barriers). Written only by the member, and by a writer that
    /// found the member dead.
    pub(crate) holds: crate::primitive::AtomicU32,
    _reserved0: AtomicU32,
    _reserved1: AtomicU64,
}

/// The table: one entry per possible member.
pub(crate) type MemberTable = [MemberEntry; MAX_MEMBERS];

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<MemberEntry>() == MEMBER_ENTRY_BYTES);
    assert!(MEMBER_ENTRY_BYTES == crate::format::control::READER_ENTRY_BYTES);
};

#[cfg(test)]
impl MemberEntry {
    /// A vacant entry (for tables on the heap).
    pub(crate) fn vacant() -> MemberEntry {
        MemberEntry {
            registered: AtomicU32::new(0),
            pid: AtomicU32::new(0),
            pid_ns: AtomicU64::new(0),
            holds: crate::primitive::AtomicU32::new(0),
            _reserved0: AtomicU32::new(0),
            _reserved1: AtomicU64::new(0),
        }
    }
}

/// What a check of a slot found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Member {
    /// Nobody is registered in it.
    Vacant,
    /// Registered, and liveness as probed.
    Registered(Liveness),
}

/// The table is full (or no slot could be locked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TableFull;

/// This handle's membership: its slot and its own open file description.
#[derive(Debug)]
pub(crate) struct Membership {
    slot: usize,
    file: File,
    fork_generation: u64,
}

impl Membership {
    /// Joins the first of slots `0..limit` whose lock is free and which `reusable`
    /// accepts (a queue refuses slots whose dead previous member still has claims).
    /// Opens `segment_file` again (through `/proc/self/fd`) for a description of its
    /// own; without `/proc` it shares the handle's description, which only matters
    /// after a fork (the member then reads as alive while either process lives:
    /// never dead while alive).
    pub(crate) fn join(
        table: &[MemberEntry],
        limit: usize,
        segment_file: &File,
        reusable: impl Fn(usize) -> bool,
    ) -> Result<Membership, TableFull> {
        Self::join_in_order(table, 0..limit, segment_file, reusable)
    }

    /// As [`join`](Self::join), trying the slots in `order` (indices past the
    /// table's end are skipped).
    pub(crate) fn join_in_order(
        table: &[MemberEntry],
        order: impl IntoIterator<Item = usize>,
        segment_file: &File,
        reusable: impl Fn(usize) -> bool,
    ) -> Result<Membership, TableFull> {
        let file = fs::reopen(segment_file, Access::ReadWrite)
            .or_else(|_| segment_file.try_clone())
            .map_err(|_| TableFull)?;
        let fork_generation = proc::fork_generation();
        for slot in order {
            let Some(e) = table.get(slot) else { continue };
            let byte = MEMBER_BASE + slot as u64;
            if lock::try_lock(&file, byte, true) != Ok(true) {
                continue;
            }
            if !reusable(slot) {
                let _ = lock::unlock(&file, byte);
                continue;
            }
            e.pid.store(proc::current_pid(), Ordering::Relaxed);
            e.pid_ns
                .store(proc::pid_namespace().unwrap_or(0), Ordering::Relaxed);
            e.registered.store(1, Ordering::SeqCst);
            return Ok(Membership {
                slot,
                file,
                fork_generation,
            });
        }
        Err(TableFull)
    }

    /// The slot.
    #[inline]
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    /// Whether this handle was copied into a forked child (and must join again
    /// rather than share its parent's slot).
    #[inline]
    pub(crate) fn is_stale(&self) -> bool {
        self.fork_generation != proc::fork_generation()
    }

    /// The fork generation this membership was made in (see [`is_stale`](Self::is_stale)).
    /// Only the queue's handle (not built under `--cfg loom`) reads it.
    #[cfg_attr(loom, allow(dead_code))]
    #[inline]
    pub(crate) fn fork_generation(&self) -> u64 {
        self.fork_generation
    }

    /// The description through which this member probes others.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Runs `f` while holding the lock of `slot`, if no process owns that slot (its
    /// member died or left) and it is not this member's own: nobody can join the
    /// slot while `f` runs. Returns whether `f` ran.
    pub(crate) fn while_unowned(&self, slot: usize, f: impl FnOnce()) -> bool {
        if slot == self.slot || self.is_stale() {
            return false;
        }
        let byte = MEMBER_BASE + slot as u64;
        if lock::try_lock(&self.file, byte, true) != Ok(true) {
            return false;
        }
        f();
        let _ = lock::unlock(&self.file, byte);
        true
    }

    /// Leaves the table (clean exit).
    pub(crate) fn leave(&self, table: &[MemberEntry]) {
        if !self.is_stale() {
            table[self.slot].registered.store(0, Ordering::SeqCst);
            let _ = lock::unlock(&self.file, MEMBER_BASE + self.slot as u64);
        }
    }
}

/// Checks slot `slot`, probing through `asker` (a description other than the
/// member's own; a member asking about itself would see its own lock as free).
pub(crate) fn check(table: &[MemberEntry], slot: usize, asker: &File) -> Member {
    let Some(e) = table.get(slot) else {
        return Member::Vacant;
    };
    if e.registered.load(Ordering::SeqCst) == 0 {
        return Member::Vacant;
    }
    match lock::probe(asker, MEMBER_BASE + slot as u64) {
        Probe::Held => Member::Registered(Liveness::Alive),
        Probe::Unknown => Member::Registered(Liveness::Unknown),
        Probe::Free if e.registered.load(Ordering::SeqCst) == 0 => Member::Vacant,
        Probe::Free => Member::Registered(Liveness::Dead),
    }
}

/// Whether a process owns slot `slot` (holds its lock byte), whatever its entry
/// says; probed through `asker` (a description other than the owner's).
pub(crate) fn owner(slot: usize, asker: &File) -> Liveness {
    Liveness::from_probe(lock::probe(asker, MEMBER_BASE + slot as u64))
}

/// Marks a dead member's slot vacant (the caller decided it is dead and holds
/// whatever excludes joiners of this table).
pub(crate) fn vacate(table: &[MemberEntry], slot: usize) {
    if let Some(e) = table.get(slot) {
        e.registered.store(0, Ordering::SeqCst);
    }
}

/// The pid a member recorded (in its own pid namespace), for messages.
pub(crate) fn recorded_pid(table: &[MemberEntry], slot: usize) -> u32 {
    table.get(slot).map_or(0, |e| e.pid.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fs::{memfd, reopen};

    fn table() -> Box<MemberTable> {
        // SAFETY: a member table is atomics only: all-zero bytes are valid (vacant).
        Box::new(unsafe { std::mem::zeroed() })
    }

    /// The queue relies on this contract: `reusable` is asked while the joiner holds
    /// the slot's lock (nobody else can own the slot while it decides), and a slot
    /// it refuses is unlocked again for others.
    #[test]
    fn reusable_is_asked_under_the_lock_and_refused_slots_stay_free() {
        let seg = memfd("members-test", false).unwrap();
        let observer = reopen(&seg, Access::ReadWrite).unwrap();
        let t = table();
        let t: &[MemberEntry] = &t[..];
        let asked = std::cell::RefCell::new(Vec::new());
        let m = Membership::join(t, 4, &seg, |slot| {
            assert_eq!(
                lock::probe(&observer, MEMBER_BASE + slot as u64),
                Probe::Held
            );
            asked.borrow_mut().push(slot);
            slot >= 2
        })
        .unwrap();
        assert_eq!((m.slot(), asked.into_inner()), (2, vec![0, 1, 2]));
        assert_eq!(check(t, 2, &observer), Member::Registered(Liveness::Alive));
        for refused in [0, 1] {
            assert_eq!(check(t, refused, &observer), Member::Vacant);
            assert_eq!(
                lock::probe(&observer, MEMBER_BASE + refused as u64),
                Probe::Free
            );
        }
        let n = Membership::join(t, 4, &seg, |_| true).unwrap();
        assert_eq!(n.slot(), 0, "a refused slot is free for the next joiner");
        assert!(Membership::join(t, 4, &seg, |s| s == 2).is_err());
        n.leave(t);
        m.leave(t);
        assert_eq!(check(t, 2, &observer), Member::Vacant);
    }

    /// `while_unowned` runs only for a slot nobody owns (never the member's own),
    /// and nobody can join that slot while it runs.
    #[test]
    fn while_unowned_holds_a_free_slot_and_skips_owned_ones() {
        let seg = memfd("members-unowned", false).unwrap();
        let t = table();
        let t: &[MemberEntry] = &t[..];
        let a = Membership::join(t, 4, &seg, |_| true).unwrap();
        let b = Membership::join(t, 4, &seg, |_| true).unwrap();
        assert_eq!((a.slot(), b.slot()), (0, 1));
        assert!(!a.while_unowned(0, || unreachable!()), "its own slot");
        assert!(!a.while_unowned(1, || unreachable!()), "owned by b");
        let mut ran = false;
        assert!(a.while_unowned(2, || {
            ran = true;
            // A joiner skips slot 2 while it is held here.
            let c = Membership::join(t, 4, &seg, |_| true).unwrap();
            assert_eq!(c.slot(), 3);
            c.leave(t);
        }));
        assert!(ran);
        // Released afterwards: the next joiner may take it.
        let c = Membership::join(t, 4, &seg, |_| true).unwrap();
        assert_eq!(c.slot(), 2);
        drop(b);
        assert!(a.while_unowned(1, || ()), "b's description is closed");
        c.leave(t);
        a.leave(t);
    }
}
