//! The read-write lock as a handle uses it: the handle's seat in the reader table,
//! read and write acquisition over the robust mutex and [`RwCore`], and the
//! per-thread record of held reads that turns self-deadlocks into errors.
//!
//! A thread that holds a read and asks for the write lock of the same segment
//! would wait for itself forever; so would a thread that reads again through a
//! *second* handle while a writer waits. Both are reported as
//! [`LockFailure::Deadlock`] instead (the thread-local record knows which segments
//! this thread reads). A second read through the *same* handle never waits: the
//! writer cannot get past a slot that holds, so it is counted in directly.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::format::control::READER_SLOTS;
use crate::segment::liveness::Liveness;
use crate::sync::members::{self, Member, Membership};
use crate::sync::mutex::{LockError, LockFailure, RawMutexGuard, RawRobustMutex};
use crate::sync::rwlock::{Drained, RwCore};

/// Identifies a segment file in this process: device and inode.
pub(crate) type FileKey = (u64, u64);

/// Slots in the order joiners take them: even slots first, so that the first 28
/// reading handles each have a cache line of their own (entries are 32 bytes).
fn join_order() -> impl Iterator<Item = usize> {
    (0..READER_SLOTS)
        .step_by(2)
        .chain((1..READER_SLOTS).step_by(2))
}

/// A handle's place in the reader table, taken on its first read.
#[derive(Debug, Default)]
pub(crate) struct ReaderSeat {
    seat: OnceLock<Membership>,
    /// The seat of a copy of the handle in a forked child (the parent's is not
    /// ours to use).
    forked: Mutex<Option<Membership>>,
}

impl ReaderSeat {
    /// The slot this handle reads through, if it has joined (in this process).
    #[inline]
    fn slot(&self) -> Option<usize> {
        match self.seat.get() {
            Some(m) if !m.is_stale() => Some(m.slot()),
            Some(_) => self.forked_slot(),
            None => None,
        }
    }

    #[cold]
    fn forked_slot(&self) -> Option<usize> {
        let f = self.forked.lock().unwrap_or_else(PoisonError::into_inner);
        f.as_ref().filter(|m| !m.is_stale()).map(Membership::slot)
    }

    /// Under the mutex: the slot, joining the table first if needed.
    fn join_locked(&self, core: &RwCore<'_>, file: &File) -> Result<usize, LockFailure> {
        if let Some(slot) = self.slot() {
            return Ok(slot);
        }
        let m = Membership::join_in_order(core.table(), join_order(), file, |_| true).map_err(
            |_| LockFailure::TooManyReaders {
                slots: READER_SLOTS,
            },
        )?;
        let slot = m.slot();
        core.register(slot);
        if self.seat.get().is_none() {
            // Cannot fail: only lock holders join, and we hold the lock.
            let _ = self.seat.set(m);
        } else {
            *self.forked.lock().unwrap_or_else(PoisonError::into_inner) = Some(m);
        }
        Ok(slot)
    }

    /// Leaves the reader table (the handle is dropped, so it holds nothing).
    pub(crate) fn leave(&mut self, core: &RwCore<'_>) {
        let forked = self
            .forked
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for m in self.seat.take().into_iter().chain(forked) {
            if !m.is_stale() {
                core.unregister(m.slot());
                m.leave(core.table());
            }
        }
    }
}

/// What a lock of one handle works with.
#[derive(Clone, Copy)]
pub(crate) struct RwParts<'a> {
    pub(crate) mutex: &'a RawRobustMutex,
    pub(crate) core: RwCore<'a>,
    pub(crate) seat: &'a ReaderSeat,
    /// The handle's own open file description: probes other members' locks.
    pub(crate) file: &'a File,
    pub(crate) key: FileKey,
}

impl fmt::Debug for RwParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwParts").field("key", &self.key).finish()
    }
}

// ---- the per-thread record of held reads ----------------------------------------

#[derive(Clone, Copy)]
struct Held {
    key: FileKey,
    /// Address of the handle's seat: distinguishes two handles of one file.
    seat: usize,
    depth: u32,
}

thread_local! {
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
}

/// How this thread already reads `key`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    No,
    /// Through this seat.
    Here,
    /// Only through another handle of the same file.
    Elsewhere,
}

fn reading(key: FileKey, seat: usize) -> Reading {
    HELD.with(|h| {
        let h = h.borrow();
        if h.iter().any(|e| e.seat == seat) {
            Reading::Here
        } else if h.iter().any(|e| e.key == key) {
            Reading::Elsewhere
        } else {
            Reading::No
        }
    })
}

fn note_enter(key: FileKey, seat: usize) {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        match h.iter_mut().find(|e| e.seat == seat) {
            Some(e) => e.depth += 1,
            None => h.push(Held {
                key,
                seat,
                depth: 1,
            }),
        }
    });
}

fn note_exit(seat: usize) {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if let Some(i) = h.iter().position(|e| e.seat == seat) {
            h[i].depth -= 1;
            if h[i].depth == 0 {
                h.swap_remove(i);
            }
        }
    });
}

// ---- acquisition ----------------------------------------------------------------

/// A held read: counts the read out on drop. Not `Send`: the thread-local record
/// is this thread's.
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub(crate) struct ReadToken<'a> {
    core: RwCore<'a>,
    slot: usize,
    seat: usize,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ReadToken<'_> {
    #[inline]
    fn drop(&mut self) {
        self.core.exit(self.slot);
        note_exit(self.seat);
    }
}

impl fmt::Debug for ReadToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadToken")
            .field("slot", &self.slot)
            .finish()
    }
}

/// A held write: the mutex, with the readers drained. On drop lets readers in
/// again (or keeps them out, when an `OwnerDied` guard is dropped unrepaired), then
/// unlocks.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub(crate) struct WriteToken<'a> {
    parts: RwParts<'a>,
    drained: Drained,
    // Declared last: dropped (unlocked) after `Drop::drop` ran.
    raw: RawMutexGuard<'a>,
}

impl WriteToken<'_> {
    pub(crate) fn owner_died(&self) -> bool {
        self.raw.owner_died()
    }

    pub(crate) fn mark_consistent(&mut self) {
        self.raw.mark_consistent();
    }

    /// Readers found dead and recovered while this writer waited for them.
    pub(crate) fn recovered_readers(&self) -> u32 {
        self.drained.recovered
    }
}

impl<'a> WriteToken<'a> {
    /// Turns the write into a read without letting another writer in between.
    pub(crate) fn downgrade(self) -> Result<ReadToken<'a>, LockFailure> {
        let p = self.parts;
        let slot = p.seat.join_locked(&p.core, p.file)?;
        p.core.enter_unchecked(slot);
        let seat = p.seat as *const ReaderSeat as usize;
        note_enter(p.key, seat);
        let token = ReadToken {
            core: p.core,
            slot,
            seat,
            _not_send: PhantomData,
        };
        drop(self);
        Ok(token)
    }
}

impl Drop for WriteToken<'_> {
    fn drop(&mut self) {
        self.parts
            .core
            .end_write(self.drained, self.raw.owner_died());
    }
}

impl fmt::Debug for WriteToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteToken")
            .field("owner_died", &self.owner_died())
            .field("recovered_readers", &self.drained.recovered)
            .finish()
    }
}

/// How long an acquisition may take.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    Block,
    Try,
    Until(Instant, Duration),
}

impl Wait {
    pub(crate) fn timeout(d: Duration) -> Wait {
        match Instant::now().checked_add(d) {
            Some(t) => Wait::Until(t, d),
            None => Wait::Block,
        }
    }

    fn lock<'a>(
        self,
        m: &'a RawRobustMutex,
    ) -> Result<RawMutexGuard<'a>, LockError<RawMutexGuard<'a>>> {
        match self {
            Wait::Block => m.lock(),
            Wait::Try => m.try_lock(),
            Wait::Until(t, d) => m
                .lock_timeout(t.saturating_duration_since(Instant::now()))
                .map_err(|e| match e {
                    LockError::Failed(LockFailure::Timeout(_)) => {
                        LockError::Failed(LockFailure::Timeout(d))
                    }
                    other => other,
                }),
        }
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Block => None,
            Wait::Try => Some(Instant::now()),
            Wait::Until(t, _) => Some(t),
        }
    }

    fn timed_out(self) -> LockFailure {
        match self {
            Wait::Try => LockFailure::WouldBlock,
            Wait::Until(_, d) => LockFailure::Timeout(d),
            Wait::Block => LockFailure::Timeout(Duration::MAX),
        }
    }
}

/// The result of a read: the read, or why not — where `OwnerDied` hands over the
/// *write* lock, because the last writer died and the data needs repair first.
pub(crate) type ReadOutcome<'a> = Result<ReadToken<'a>, LockError<WriteToken<'a>>>;

fn liveness_of(p: &RwParts<'_>, slot: usize) -> Liveness {
    match members::check(p.core.table(), slot, p.file) {
        Member::Registered(l) => l,
        // Holds but not registered: not ours to touch.
        Member::Vacant => Liveness::Unknown,
    }
}

/// Takes the write lock: the mutex, then every reader drained.
pub(crate) fn write<'a>(
    p: RwParts<'a>,
    wait: Wait,
) -> Result<WriteToken<'a>, LockError<WriteToken<'a>>> {
    let seat = p.seat as *const ReaderSeat as usize;
    if reading(p.key, seat) != Reading::No {
        return Err(LockError::Failed(LockFailure::Deadlock));
    }
    match wait.lock(p.mutex) {
        Ok(raw) => drain(p, raw, wait),
        Err(LockError::OwnerDied(raw)) => match drain(p, raw, Wait::Block) {
            Ok(token) => Err(LockError::OwnerDied(token)),
            Err(e) => Err(e),
        },
        Err(LockError::Failed(e)) => Err(LockError::Failed(e)),
    }
}

/// Holding the mutex: announces the writer and waits for the readers. After an
/// `OwnerDied` the wait ignores the deadline: the guard cannot be given back
/// without making the lock not recoverable.
fn drain<'a>(
    p: RwParts<'a>,
    raw: RawMutexGuard<'a>,
    wait: Wait,
) -> Result<WriteToken<'a>, LockError<WriteToken<'a>>> {
    let deadline = if raw.owner_died() {
        None
    } else {
        wait.deadline()
    };
    match p.core.begin_write(deadline, |slot| liveness_of(&p, slot)) {
        Ok(drained) => Ok(WriteToken {
            parts: p,
            drained,
            raw,
        }),
        Err(_) => {
            // Readers still inside: let the others in again and give up.
            p.core.end_write(
                Drained {
                    announced: true,
                    recovered: 0,
                },
                false,
            );
            drop(raw);
            Err(LockError::Failed(wait.timed_out()))
        }
    }
}

/// Takes a read lock.
#[inline]
pub(crate) fn read<'a>(p: RwParts<'a>, wait: Wait) -> ReadOutcome<'a> {
    let seat = p.seat as *const ReaderSeat as usize;
    if let Some(slot) = p.seat.slot() {
        let here = reading(p.key, seat);
        if here == Reading::Here {
            p.core.enter_unchecked(slot);
        } else if !p.core.try_enter(slot) {
            return read_slow(p, wait, here);
        }
        note_enter(p.key, seat);
        return Ok(ReadToken {
            core: p.core,
            slot,
            seat,
            _not_send: PhantomData,
        });
    }
    read_slow(p, wait, reading(p.key, seat))
}

/// A writer is there (or this handle has not joined yet): queue on the mutex.
#[cold]
fn read_slow<'a>(p: RwParts<'a>, wait: Wait, here: Reading) -> ReadOutcome<'a> {
    let seat = p.seat as *const ReaderSeat as usize;
    let raw = if here == Reading::Elsewhere {
        // This thread reads the file through another handle: a writer waiting for
        // that read would wait for us, and we for it.
        match p.mutex.try_lock() {
            Err(LockError::Failed(LockFailure::WouldBlock)) => {
                return Err(LockError::Failed(LockFailure::Deadlock))
            }
            other => other,
        }
    } else {
        wait.lock(p.mutex)
    };
    match raw {
        Ok(raw) => {
            let slot = p.seat.join_locked(&p.core, p.file)?;
            if p.core.is_poisoned() {
                drop(raw);
                return Err(LockError::Failed(LockFailure::NotRecoverable));
            }
            p.core.enter_unchecked(slot);
            drop(raw);
            note_enter(p.key, seat);
            Ok(ReadToken {
                core: p.core,
                slot,
                seat,
                _not_send: PhantomData,
            })
        }
        // The last writer died: this reader holds the lock now and repairs.
        Err(LockError::OwnerDied(raw)) => match drain(p, raw, Wait::Block) {
            Ok(token) => Err(LockError::OwnerDied(token)),
            Err(e) => Err(e),
        },
        Err(LockError::Failed(e)) => Err(LockError::Failed(e)),
    }
}
