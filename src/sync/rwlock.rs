//! The read-write lock as a handle uses it: the handle's [`RwLockState`] (where its
//! lock lives and its seat in the reader table), read and write acquisition over
//! the robust mutex and [`RwCore`] (`rwcore.rs`), asking the per-thread record of
//! held reads (`held_reads.rs`) first so that self-deadlocks become errors.
//!
//! A thread that holds a read and asks for the write lock of the same segment
//! would wait for itself forever; so would a thread that reads again through a
//! *second* handle while a writer waits. Both are reported as
//! [`LockFailure::Deadlock`] instead (the thread-local record knows which segments
//! this thread reads). A second read through the *same* handle never waits: the
//! writer cannot get past a slot that holds, so it is counted in directly.

use std::fmt;
use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::format::control::{ReaderSlots, RwSlot, READER_SLOTS};
use crate::segment::liveness::Liveness;
use crate::sync::deadline::Wait;
use crate::sync::held_reads::{enter_note, note_enter, note_exit, reading, thread_full, Reading};
use crate::sync::members::{self, Member, MemberEntry, Membership};
use crate::sync::mutex::{LockError, LockFailure, RawMutexGuard, RawRobustMutex};
use crate::sync::rwcore::{Drained, RwCore, RwHeader};
use crate::sys::proc;

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
struct ReaderSeat {
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
}

/// One handle's read-write lock: where it lives in the handle's mapping, and the
/// handle's seat among the readers. Leaves the reader table on drop, so it must be
/// dropped before the mapping (declare it before the segment in the handle).
pub(crate) struct RwLockState {
    mutex: NonNull<RawRobustMutex>,
    header: NonNull<RwHeader>,
    table: NonNull<[MemberEntry; READER_SLOTS]>,
    seat: ReaderSeat,
    key: FileKey,
    /// The handle's own open file description (a descriptor the handle owns and
    /// keeps open for as long as this lives): probes other members' locks, and is
    /// reopened for a membership.
    fd: RawFd,
    /// Write tokens of this handle not yet dropped. Nonzero when the handle is
    /// dropped means a guard was leaked (`mem::forget`) while its thread holds the
    /// mutex: the mutex is then on that thread's robust list, which glibc and the
    /// kernel walk through the mutex's memory, so the mapping must stay (see
    /// [`RwLockState::leaked_writes`]).
    writes_out: AtomicUsize,
}

// SAFETY: the pointers lead into the owning handle's mapping, valid in every
// thread; everything they reach is a process-shared pthread mutex or atomics; the
// seat is `Sync` (a `OnceLock` and a `Mutex`).
unsafe impl Send for RwLockState {}
// SAFETY: as above.
unsafe impl Sync for RwLockState {}

impl fmt::Debug for RwLockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLockState")
            .field("key", &self.key)
            .field("slot", &self.seat.slot())
            .finish()
    }
}

impl RwLockState {
    /// The lock of a control block.
    ///
    /// # Safety
    /// - `mutex` was initialised (`RawRobustMutex::init_in_slot`), and the mutex
    ///   and both slots lie in a mapping that outlives the returned value.
    /// - `file` stays open for as long as the returned value lives.
    pub(crate) unsafe fn new(
        mutex: &RawRobustMutex,
        rw: &RwSlot,
        readers: &ReaderSlots,
        key: FileKey,
        file: &File,
    ) -> RwLockState {
        RwLockState {
            mutex: NonNull::from(mutex),
            header: NonNull::new(rw.0.get().cast::<RwHeader>()).expect("not null"),
            table: NonNull::new(readers.0.get().cast::<[MemberEntry; READER_SLOTS]>())
                .expect("not null"),
            seat: ReaderSeat::default(),
            key,
            fd: {
                // Registers the fork counter, which the tokens read unchecked.
                let _ = proc::fork_generation();
                file.as_raw_fd()
            },
            writes_out: AtomicUsize::new(0),
        }
    }

    /// Whether a write guard of this handle was leaked (`mem::forget`) and so may
    /// still hold the mutex: the handle must then leave its mapping in place when
    /// it is dropped, or the robust-list walk of the holding thread (by glibc on
    /// its next robust lock, by the kernel when it exits) would reach unmapped, or
    /// reused, memory; and a holder that exits could not be reported as dead.
    pub(crate) fn leaked_writes(&self) -> bool {
        self.writes_out.load(Ordering::Relaxed) != 0
    }

    /// The handle's file, borrowed for one call.
    fn file(&self) -> ManuallyDrop<File> {
        // SAFETY: the descriptor is open for as long as `self` lives (`new`), and
        // `ManuallyDrop` never closes it: this is a borrow in `File`'s clothes, for
        // APIs that take `&File`.
        ManuallyDrop::new(unsafe { File::from_raw_fd(self.fd) })
    }

    #[inline]
    fn mutex(&self) -> &RawRobustMutex {
        // SAFETY: initialised and mapped for as long as `self` lives (`new`).
        unsafe { self.mutex.as_ref() }
    }

    #[inline]
    fn core(&self) -> RwCore<'_> {
        // SAFETY: the slots are mapped for as long as `self` lives (`new`); they
        // are `UnsafeCell`s of bytes, 64-aligned and large enough for the header
        // and the table (asserted in `rwcore`), whose atomics are valid for any
        // bytes and interior-mutable, so shared references are allowed.
        unsafe { RwCore::new(self.header.as_ref(), self.table.as_ref()) }
    }

    /// An address that identifies this handle's seat.
    #[inline]
    fn id(&self) -> usize {
        self as *const RwLockState as usize
    }

    /// Whether the reader in `slot` (its bit set, still holding) is alive. Asked
    /// by a draining writer, under the mutex.
    fn liveness(&self, slot: usize) -> Liveness {
        match members::check(self.core().table(), slot, &self.file()) {
            Member::Registered(l) => l,
            // Holds but not registered: no handle left the table this way (a
            // handle clears its bit before `registered`, and holds nothing then),
            // so the entry was written by someone else. Nobody is registering it
            // right now either (joins need the mutex, which the caller holds). Its
            // lock byte decides: free means no process owns the entry, which must
            // not block writers for good (dead: taken back); held means a live
            // process owns it (waited for); unknown is never dead.
            Member::Vacant => members::owner(slot, &self.file()),
        }
    }

    /// Takes the write lock: the mutex, then every reader drained.
    #[inline(always)]
    pub(crate) fn write(&self, wait: Wait) -> WriteOutcome<'_> {
        if reading(self.key, self.id()) != Reading::No {
            return Err(LockError::Failed(LockFailure::Deadlock));
        }
        match lock_within(wait, self.mutex()) {
            Ok(raw) => match self.core().no_readers() {
                Some(drained) => Ok(WriteToken::new(self, drained, raw)),
                None => self.drain(raw, wait),
            },
            Err(LockError::OwnerDied(raw)) => match self.drain(raw, Wait::Forever) {
                Ok(token) => Err(LockError::OwnerDied(token)),
                Err(e) => Err(e),
            },
            Err(LockError::Failed(e)) => Err(LockError::Failed(e)),
        }
    }

    /// Holding the mutex: announces the writer and waits for the readers. After an
    /// `OwnerDied` the wait ignores the deadline: the guard cannot be given back
    /// without making the lock not recoverable.
    #[cold]
    fn drain<'a>(&'a self, raw: RawMutexGuard<'a>, wait: Wait) -> WriteOutcome<'a> {
        let drain_wait = if raw.owner_died() {
            Wait::Forever
        } else {
            wait
        };
        match self
            .core()
            .begin_write(drain_wait, |slot| self.liveness(slot))
        {
            Ok(drained) => Ok(WriteToken::new(self, drained, raw)),
            Err(_) => {
                // Readers still inside: let the others in again and give up.
                self.core().end_write(Drained::announced(0), false);
                drop(raw);
                Err(LockError::Failed(timed_out(wait)))
            }
        }
    }

    /// Takes a read lock.
    #[inline(always)]
    pub(crate) fn read(&self, wait: Wait) -> ReadOutcome<'_> {
        if let Some(slot) = self.seat.slot() {
            match enter_note(self.key, self.id()) {
                Reading::Here => {
                    self.core().enter_unchecked(slot);
                    return Ok(ReadToken::new(self, slot));
                }
                Reading::No if self.core().try_enter(slot) => {
                    return Ok(ReadToken::new(self, slot));
                }
                Reading::No => {
                    note_exit(self.id());
                    return self.read_slow(wait, Reading::No);
                }
                Reading::Elsewhere => {
                    if self.core().try_enter(slot) {
                        note_enter(self.key, self.id());
                        return Ok(ReadToken::new(self, slot));
                    }
                    return self.read_slow(wait, Reading::Elsewhere);
                }
                Reading::Full => return Err(LockError::Failed(thread_full())),
            }
        }
        self.read_slow(wait, reading(self.key, self.id()))
    }

    /// A writer is there (or this handle has not joined yet): queue on the mutex.
    #[cold]
    fn read_slow(&self, wait: Wait, here: Reading) -> ReadOutcome<'_> {
        if here == Reading::Full {
            return Err(LockError::Failed(thread_full()));
        }
        let raw = if here == Reading::Elsewhere {
            // This thread reads the file through another handle: a writer waiting
            // for that read would wait for us, and we for it.
            match self.mutex().try_lock() {
                Err(LockError::Failed(LockFailure::WouldBlock)) => {
                    return Err(LockError::Failed(LockFailure::Deadlock))
                }
                other => other,
            }
        } else {
            lock_within(wait, self.mutex())
        };
        match raw {
            Ok(raw) => {
                let core = self.core();
                let slot = self.seat.join_locked(&core, &self.file())?;
                if core.is_poisoned() {
                    return Err(LockError::Failed(LockFailure::NotRecoverable));
                }
                if enter_note(self.key, self.id()) == Reading::Full {
                    return Err(LockError::Failed(thread_full()));
                }
                core.enter_unchecked(slot);
                drop(raw);
                Ok(ReadToken::new(self, slot))
            }
            // The last writer died: this reader holds the lock now and repairs.
            Err(LockError::OwnerDied(raw)) => match self.drain(raw, Wait::Forever) {
                Ok(token) => Err(LockError::OwnerDied(token)),
                Err(e) => Err(e),
            },
            Err(LockError::Failed(e)) => Err(LockError::Failed(e)),
        }
    }
}

impl Drop for RwLockState {
    fn drop(&mut self) {
        let forked = self
            .seat
            .forked
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let seats: Vec<Membership> = self.seat.seat.take().into_iter().chain(forked).collect();
        let core = self.core();
        for m in seats {
            if !m.is_stale() {
                core.unregister(m.slot());
                m.leave(core.table());
            }
        }
    }
}

// ---- guards' tokens ---------------------------------------------------------------

/// A held read: counts the read out on drop. Not `Send`: the thread-local record
/// of held reads is this thread's, so the read must be counted out here.
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub(crate) struct ReadToken<'a> {
    state: &'a RwLockState,
    slot: u32,
    /// The fork generation it was taken in (low 32 bits): a copy in a forked child
    /// holds nothing (the read belongs to the parent) and must not count it out.
    fork: u32,
    _not_send: super::NotSend,
}

impl<'a> ReadToken<'a> {
    #[inline]
    fn new(state: &'a RwLockState, slot: usize) -> ReadToken<'a> {
        ReadToken {
            state,
            slot: slot as u32,
            fork: proc::fork_generation_registered() as u32,
            _not_send: super::NotSend::default(),
        }
    }
}

impl Drop for ReadToken<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.fork == proc::fork_generation_registered() as u32 {
            self.state.core().exit(self.slot as usize);
            note_exit(self.state.id());
        }
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
    state: &'a RwLockState,
    drained: Drained,
    /// The fork generation it was taken in (see `ReadToken::fork`).
    fork: u64,
    // Dropped (unlocked) in `Drop::drop`, after the writer word.
    raw: ManuallyDrop<RawMutexGuard<'a>>,
}

impl<'a> WriteToken<'a> {
    #[inline]
    fn new(state: &'a RwLockState, drained: Drained, raw: RawMutexGuard<'a>) -> WriteToken<'a> {
        state.writes_out.fetch_add(1, Ordering::Relaxed);
        WriteToken {
            state,
            drained,
            fork: proc::fork_generation_registered(),
            raw: ManuallyDrop::new(raw),
        }
    }
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
        self.drained.recovered()
    }
}

impl<'a> WriteToken<'a> {
    /// Turns the write into a read without letting another writer in between.
    pub(crate) fn downgrade(self) -> Result<ReadToken<'a>, LockFailure> {
        let state = self.state;
        let core = state.core();
        let slot = state.seat.join_locked(&core, &state.file())?;
        if enter_note(state.key, state.id()) == Reading::Full {
            return Err(thread_full());
        }
        core.enter_unchecked(slot);
        drop(self);
        Ok(ReadToken::new(state, slot))
    }
}

impl Drop for WriteToken<'_> {
    #[inline]
    fn drop(&mut self) {
        self.state.writes_out.fetch_sub(1, Ordering::Relaxed);
        if self.fork != proc::fork_generation_registered() {
            // A copy in a forked child: the lock is the parent's. Neither the
            // writer word nor the mutex is ours to release.
            return;
        }
        self.state
            .core()
            .end_write(self.drained, self.raw.owner_died());
        // SAFETY: dropped exactly once, here; the field is not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.raw) };
    }
}

impl fmt::Debug for WriteToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteToken")
            .field("owner_died", &self.owner_died())
            .field("recovered_readers", &self.drained.recovered())
            .finish()
    }
}

/// The result of a write: the write token, or why not (`OwnerDied` with it).
pub(crate) type WriteOutcome<'a> = Result<WriteToken<'a>, LockError<WriteToken<'a>>>;

/// The result of a read: the read, or why not — where `OwnerDied` hands over the
/// *write* lock, because the last writer died and the data needs repair first.
pub(crate) type ReadOutcome<'a> = Result<ReadToken<'a>, LockError<WriteToken<'a>>>;

/// Takes the robust mutex within `wait`; a timeout names the caller's duration.
#[inline(always)]
fn lock_within(
    wait: Wait,
    m: &RawRobustMutex,
) -> Result<RawMutexGuard<'_>, LockError<RawMutexGuard<'_>>> {
    match wait {
        Wait::Forever => m.lock(),
        Wait::No => m.try_lock(),
        Wait::Until(_, d) => m
            .lock_timeout(wait.remaining().unwrap_or_default())
            .map_err(|e| match e {
                LockError::Failed(LockFailure::Timeout(_)) => {
                    LockError::Failed(LockFailure::Timeout(d))
                }
                other => other,
            }),
    }
}

/// The failure of an acquisition whose `wait` ran out.
fn timed_out(wait: Wait) -> LockFailure {
    match wait {
        Wait::No => LockFailure::WouldBlock,
        Wait::Until(_, d) => LockFailure::Timeout(d),
        Wait::Forever => LockFailure::Timeout(Duration::MAX),
    }
}
