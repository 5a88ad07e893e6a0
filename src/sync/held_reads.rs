//! The per-thread record of held reads: which segments (device and inode) this
//! thread reads, through which handles (their `RwLockState::id`, a *seat*) and how
//! deeply. A thread that holds a read and asks for the write lock of the same file,
//! or reads again through a *second* handle while a writer waits, would wait for
//! itself forever; the lock asks this record first and reports
//! `LockFailure::Deadlock` instead.

use std::cell::Cell;

use crate::sync::mutex::LockFailure;
use crate::sync::rwlock::FileKey;

/// Read guards of distinct handles one thread can hold at once.
pub(crate) const READS_PER_THREAD: usize = 16;

#[derive(Clone, Copy)]
struct Held {
    key: FileKey,
    /// The handle's `RwLockState::id`.
    seat: usize,
    depth: u32,
}

/// The reads this thread holds, densely in `0..len`. No destructor, so the
/// thread-local needs no registration check on access.
struct Reads {
    len: Cell<usize>,
    held: [Cell<Option<Held>>; READS_PER_THREAD],
}

thread_local! {
    static READS: Reads = const {
        Reads {
            len: Cell::new(0),
            held: [const { Cell::new(None) }; READS_PER_THREAD],
        }
    };
}

/// How this thread already reads a file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Reading {
    No,
    /// Through this handle.
    Here,
    /// Only through another handle of the same file.
    Elsewhere,
    /// The thread holds reads of `READS_PER_THREAD` handles already.
    Full,
}

pub(super) fn thread_full() -> LockFailure {
    LockFailure::TooManyHeldReads {
        limit: READS_PER_THREAD,
    }
}

fn classify(r: &Reads, key: FileKey, seat: usize) -> (Reading, Option<usize>) {
    let mut found = Reading::No;
    for i in 0..r.len.get() {
        if let Some(h) = r.held[i].get() {
            if h.seat == seat {
                return (Reading::Here, Some(i));
            }
            if h.key == key {
                found = Reading::Elsewhere;
            }
        }
    }
    (found, None)
}

#[inline]
pub(super) fn reading(key: FileKey, seat: usize) -> Reading {
    READS.with(|r| {
        if r.len.get() == 0 {
            Reading::No
        } else {
            classify(r, key, seat).0
        }
    })
}

/// Records one more read through `seat` and says how the thread read the file
/// before (`Full`: nothing recorded).
#[inline]
pub(super) fn enter_note(key: FileKey, seat: usize) -> Reading {
    READS.with(|r| {
        if r.len.get() == 0 {
            r.held[0].set(Some(Held {
                key,
                seat,
                depth: 1,
            }));
            r.len.set(1);
            return Reading::No;
        }
        enter_note_more(r, key, seat)
    })
}

#[cold]
fn enter_note_more(r: &Reads, key: FileKey, seat: usize) -> Reading {
    {
        let (before, at) = classify(r, key, seat);
        if let Some(i) = at {
            if let Some(mut h) = r.held[i].get() {
                h.depth += 1;
                r.held[i].set(Some(h));
            }
            return before;
        }
        let n = r.len.get();
        if n == READS_PER_THREAD {
            return Reading::Full;
        }
        r.held[n].set(Some(Held {
            key,
            seat,
            depth: 1,
        }));
        r.len.set(n + 1);
        before
    }
}

pub(super) fn note_enter(key: FileKey, seat: usize) {
    let _ = enter_note(key, seat);
}

#[inline]
pub(super) fn note_exit(seat: usize) {
    READS.with(|r| {
        if r.len.get() == 1 {
            if let Some(h) = r.held[0].get() {
                if h.seat == seat && h.depth == 1 {
                    r.held[0].set(None);
                    r.len.set(0);
                    return;
                }
            }
        }
        note_exit_more(r, seat)
    });
}

#[cold]
fn note_exit_more(r: &Reads, seat: usize) {
    {
        if let (_, Some(i)) = classify(r, (0, 0), seat) {
            if let Some(mut h) = r.held[i].get() {
                h.depth -= 1;
                if h.depth > 0 {
                    r.held[i].set(Some(h));
                } else {
                    let last = r.len.get() - 1;
                    r.held[i].set(r.held[last].get());
                    r.held[last].set(None);
                    r.len.set(last);
                }
            }
        }
    }
}
