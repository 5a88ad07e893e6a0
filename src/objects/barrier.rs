//! `Barrier`: Python's `multiprocessing.Barrier(n)`, by name, with dead
//! participants detected.

use std::fmt;
use std::fs::File;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ndarray::Ix1;

use crate::array::SharedArray;
use crate::error::Error;
use crate::format::control::{ControlError, ObjectKind};
use crate::format::objects::{
    check_parties, ParamsError, BARRIER_DATA_BYTES, BARRIER_VERSION, MEMBER_TABLE_BYTES,
};
use crate::segment::handle::sealed;
use crate::segment::liveness::Liveness;
use crate::segment::{Create, KindSpec, Mapping, Open, Options, Segment, Source};
use crate::sync::members::{self, Member, MemberTable, Membership};
use crate::sync::{BarrierError, BarrierOpenError, BarrierState};

/// A reusable barrier for N processes, by name: Python's `Barrier(n)`.
///
/// Each handle is one participant (it holds a slot of the barrier's member table
/// from `create`/`open` to drop); threads that take part open a handle each (two
/// threads waiting on one handle are one participant: they take turns). `abort`,
/// `n_waiting`, `is_broken` and `reset` work from any thread, also while another
/// waits on the same handle. A participant that dies makes the others'
/// `wait` fail with `ParticipantDied` within ~10 ms, never hang; a participant
/// whose liveness cannot be decided is waited for until the timeout.
///
/// # Examples
/// ```
/// use shmarray::Barrier;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-barrier-type-{}", std::process::id());
/// let a = Barrier::create(&name, 2)?;
/// // The other participant: usually another process opening the name.
/// let b = Barrier::open(&name)?;
/// let other = std::thread::spawn(move || b.wait());
/// let here = a.wait()?;
/// let there = other.join().unwrap()?;
/// assert!(here != there); // exactly one participant per round gets `true`
/// assert_eq!((a.parties(), a.n_waiting()), (2, 0));
/// # Ok(()) }
/// ```
///
/// # Threads
/// `Send + Sync`: `abort` and `n_waiting` from another thread reach a `wait` on the
/// same handle (Python's `Barrier.abort()`); two threads that `wait` on one handle
/// are one participant and take turns.
pub struct Barrier {
    seg: SharedArray<u8, Ix1>,
    /// Held for the whole of a `wait` (one participant waits at a time).
    member: Mutex<Option<Membership>>,
}

impl Barrier {
    /// Creates barrier `name` for `parties` processes (1..=64) and joins it (owner:
    /// removed on drop); [`Options::create`] creates with other options.
    pub fn create(name: &str, parties: u32) -> Result<Barrier, BarrierOpenError> {
        Options::new().create(name, parties)
    }

    /// Attaches barrier `name` and joins it as a participant;
    /// [`Options::open`] opens with other options.
    pub fn open(name: &str) -> Result<Barrier, BarrierOpenError> {
        Options::new().open(name)
    }

    /// Checks an attached barrier's parameters, then joins it.
    fn checked(seg: SharedArray<u8, Ix1>) -> Result<Barrier, BarrierOpenError> {
        let bad = |problem: String| {
            Error::corrupt(
                seg.name().unwrap_or("<anonymous>"),
                ControlError::Params {
                    kind: ObjectKind::Barrier,
                    problem,
                },
            )
        };
        let c = seg
            .control()
            .ok_or_else(|| bad("no control block".into()))?;
        if c.kind_version != BARRIER_VERSION {
            return Err(bad(format!("layout version {}", c.kind_version)).into());
        }
        check_parties(c.params[0]).map_err(|e: ParamsError| bad(e.to_string()))?;
        if seg.len() != BARRIER_DATA_BYTES || !seg.is_writable() {
            return Err(bad(format!("{} data bytes", seg.len())).into());
        }
        Barrier::join(seg)
    }

    fn join(seg: SharedArray<u8, Ix1>) -> Result<Barrier, BarrierOpenError> {
        let b = Barrier {
            seg,
            member: Mutex::new(None),
        };
        let m = b.new_membership()?;
        *b.membership() = Some(m);
        Ok(b)
    }

    fn membership(&self) -> MutexGuard<'_, Option<Membership>> {
        // A panic while holding it leaves a valid `Option<Membership>`.
        self.member.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_membership(&self) -> Result<Membership, BarrierError> {
        let parties = self.parties();
        let m = Membership::join(self.table(), parties as usize, self.seg.file(), |_| true)
            .map_err(|_| BarrierError::TooManyParticipants { parties })?;
        self.state().reset_slot(m.slot());
        Ok(m)
    }

    fn table(&self) -> &MemberTable {
        // SAFETY: the data area is BARRIER_DATA_BYTES (checked at open), page aligned,
        // and starts with the member table (atomics only, valid for any bytes); the
        // mapping lives as long as `self`.
        unsafe { &*self.seg.data_ptr().cast::<MemberTable>() }
    }

    fn state(&self) -> &BarrierState {
        // SAFETY: as for `table`: the state follows the table, 64-aligned, atomics
        // only; nothing read from it is used as an offset (the party count used
        // is the control block's, validated at open).
        unsafe {
            &*self
                .seg
                .data_ptr()
                .add(MEMBER_TABLE_BYTES)
                .cast::<BarrierState>()
        }
    }

    /// Waits for all parties; `Ok(true)` in exactly one participant per round.
    /// A participant that dies makes this fail with `ParticipantDied` instead of
    /// waiting forever.
    pub fn wait(&self) -> Result<bool, BarrierError> {
        self.wait_within(None)
    }

    /// As [`wait`](Self::wait), for at most `timeout` (a timeout breaks the barrier
    /// for the others too, as in Python).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, BarrierError> {
        self.wait_within(Some(timeout))
    }

    fn wait_within(&self, timeout: Option<Duration>) -> Result<bool, BarrierError> {
        let mut member = self.membership();
        if member.as_ref().is_none_or(Membership::is_stale) {
            // Copied into a forked child: join with a slot of our own.
            *member = Some(self.new_membership()?);
        }
        let me = member.as_ref().expect("joined above");
        let table = self.table();
        let state = self.state();
        let parties = self.parties();
        let slots = (parties as usize).min(table.len());
        state.wait(me.slot(), parties, timeout, |gen| {
            (0..slots)
                .filter(|&s| s != me.slot() && !state.has_arrived(s, gen))
                .find(|&s| {
                    members::check(table, s, me.file()) == Member::Registered(Liveness::Dead)
                })
                .map(|s| (s, members::recorded_pid(table, s)))
        })
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.seg
            .control()
            .and_then(|c| check_parties(c.params[0]).ok())
            .unwrap_or(0)
    }

    /// Repairs a broken barrier (call when no survivor is inside `wait`).
    pub fn reset(&self) {
        self.state().reset()
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.state().is_broken()
    }

    /// Breaks the barrier for every participant: waiters and later `wait`s fail
    /// with [`BarrierError::Aborted`] until [`reset`](Self::reset) (Python's
    /// `Barrier.abort`).
    ///
    /// ```
    /// use shmarray::{sync::BarrierError, Barrier};
    /// let name = format!("doc-barrier-abort-{}", std::process::id());
    /// let b = Barrier::create(&name, 2)?;
    /// let other = Barrier::open(&name)?; // e.g. another process
    /// std::thread::scope(|s| {
    ///     let waiter = s.spawn(|| other.wait()); // waiting, or about to
    ///     b.abort();
    ///     assert_eq!(waiter.join().unwrap(), Err(BarrierError::Aborted));
    /// });
    /// assert!(b.is_broken());
    /// b.reset(); // when nobody is inside `wait`
    /// assert!(!b.is_broken());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn abort(&self) {
        self.state().abort()
    }

    /// How many participants are waiting in the current round (0 while broken;
    /// Python's `Barrier.n_waiting`). A snapshot.
    pub fn n_waiting(&self) -> u32 {
        self.state().waiting()
    }
}

impl sealed::Sealed for Barrier {
    fn mapping(&self) -> &Mapping {
        self.seg.mapping()
    }
    fn mapping_mut(&mut self) -> &mut Mapping {
        self.seg.mapping_mut()
    }
}

impl Segment for Barrier {
    type Error = BarrierOpenError;
}

impl Create<u32> for Barrier {
    fn create_segment(
        opts: &Options,
        name: Option<&str>,
        parties: u32,
    ) -> Result<Barrier, BarrierOpenError> {
        check_parties(u64::from(parties))
            .map_err(|_| BarrierError::TooManyParticipants { parties })?;
        let mut params = [0u64; 8];
        params[0] = u64::from(parties);
        let kind = KindSpec {
            kind: ObjectKind::Barrier,
            version: BARRIER_VERSION,
            params,
        };
        let seg = SharedArray::create_named_or_anonymous(
            opts,
            name,
            kind,
            &[BARRIER_DATA_BYTES],
            |data| {
                let bytes: &mut [u8] = data
                    .as_slice_mut()
                    .expect("a 1-d C-order array is contiguous");
                // SAFETY: the data area is BARRIER_DATA_BYTES zeroed, private bytes,
                // page aligned; the state lies after the member table, 64-aligned,
                // and zero bytes are a valid state (atomics only).
                let state = unsafe {
                    &mut *bytes
                        .as_mut_ptr()
                        .add(MEMBER_TABLE_BYTES)
                        .cast::<BarrierState>()
                };
                state.init(parties);
            },
        )?;
        Barrier::join(seg)
    }
}

impl Open for Barrier {
    fn open_segment(opts: &Options, name: &str) -> Result<Barrier, BarrierOpenError> {
        Self::checked(SharedArray::open_kind(
            opts,
            Source::Named(name),
            ObjectKind::Barrier,
        )?)
    }

    fn open_file(opts: &Options, file: File) -> Result<Barrier, BarrierOpenError> {
        Self::checked(SharedArray::open_kind(
            opts,
            Source::File(file),
            ObjectKind::Barrier,
        )?)
    }
}

impl Drop for Barrier {
    fn drop(&mut self) {
        let member = self
            .member
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = member.take() {
            m.leave(self.table());
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("name", &self.name())
            .field("parties", &self.parties())
            .field(
                "slot",
                &self
                    .member
                    .try_lock()
                    .ok()
                    .and_then(|m| m.as_ref().map(Membership::slot)),
            )
            .finish()
    }
}
