//! The arrival/generation logic of a reusable N-process barrier whose dead
//! participants are detected.
//!
//! Participants hold a slot of the barrier's member table (see `members`). A waiter
//! sleeps on the `generation` futex in short slices; between slices it asks whether
//! a registered participant that has not arrived in this generation is dead (its
//! member lock is free). A dead one *breaks* the barrier: every waiter returns
//! `ParticipantDied` within one slice. A timeout also breaks it (as Python's
//! `Barrier` does), so nobody is left waiting for a party that gave up. `reset`
//! repairs a broken barrier once the survivors agree to continue. A participant
//! whose liveness cannot be decided is waited for (until the timeout), never
//! declared dead.
//!
//! ## Memory ordering
//! | step | operation | ordering |
//! |---|---|---|
//! | arrive | `generation.load` | Acquire |
//! | arrive | `arrived.fetch_add` | AcqRel (the last arriver sees all arrivals) |
//! | release | `arrived.store(0)` then `generation.fetch_add(1)` | Relaxed, then Release |
//! | wait | `generation.load` | Acquire (pairs with the Release bump) |
//! | break | `broken.compare_exchange(0, code)` | AcqRel; waiters load Acquire |
//!
//! Resetting `arrived` happens before the generation bump (program order + Release),
//! so a process that observes the new generation and arrives again counts from 0.

use std::time::Duration;

use crate::format::objects::MAX_MEMBERS;
use crate::primitive::{sleep_while, wake_all, AtomicU32, Ordering};
use crate::sync::Wait;

/// How often a waiter checks that the others are alive.
const POLL: Duration = Duration::from_millis(10);

/// `broken` code for a barrier broken by a timeout (other codes: dead slot + 1).
const BROKEN_TIMEOUT: u32 = u32::MAX;

/// `broken` code for a barrier broken by `abort` (Python's `Barrier.abort`).
const BROKEN_ABORT: u32 = u32::MAX - 1;

/// Why a barrier wait failed. The barrier stays broken until `reset`.
///
/// ```
/// use std::time::Duration;
/// use shmarray::{sync::BarrierError, Barrier};
/// let b = Barrier::create(&format!("doc-barrier-error-{}", std::process::id()), 2)?;
/// // The other party never comes: this wait times out and breaks the barrier...
/// let timeout = Duration::from_millis(10);
/// assert_eq!(b.wait_timeout(timeout), Err(BarrierError::Timeout(timeout)));
/// assert!(b.is_broken());
/// // ...for every participant, until it is reset.
/// assert!(matches!(b.wait(), Err(BarrierError::Broken)));
/// b.reset();
/// assert!(!b.is_broken());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// This wait timed out; the barrier is now broken for the others too.
    #[error("barrier wait timed out after {0:?}; the barrier is broken")]
    Timeout(Duration),
    /// A registered participant died before arriving.
    #[error("barrier participant in slot {slot} (pid {pid} in its pid namespace) died; the barrier is broken")]
    ParticipantDied {
        /// Its member slot.
        slot: usize,
        /// The pid it recorded, as seen in its own pid namespace (informational).
        pid: u32,
    },
    /// Broken earlier by another participant's timeout.
    #[error("the barrier was broken by another participant's timeout")]
    Broken,
    /// More participants than the barrier has parties.
    #[error("more participants than the barrier's {parties} parties")]
    TooManyParticipants {
        /// The barrier's party count.
        parties: u32,
    },
    /// Broken by a participant's `abort`.
    #[error("the barrier was aborted")]
    Aborted,
}

/// Barrier state in shared memory (`#[repr(C)]`, atomics only). All-zero bytes are
/// a valid (0-party) state; `init` sets the parties.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct BarrierState {
    parties: AtomicU32,
    arrived: AtomicU32,
    generation: AtomicU32,
    broken: AtomicU32,
    /// Pid recorded by the participant that broke it by dying (informational).
    dead_pid: AtomicU32,
    _reserved: [AtomicU32; 11],
    /// `generation + 1` of the generation each slot last arrived in.
    arrived_gen: [AtomicU32; MAX_MEMBERS],
}

#[cfg(not(loom))]
const _: () =
    assert!(std::mem::size_of::<BarrierState>() == crate::format::objects::BARRIER_STATE_BYTES);

impl BarrierState {
    /// Sets the number of parties of a fresh barrier.
    pub(crate) fn init(&mut self, parties: u32) {
        self.parties.store(parties, Ordering::Relaxed);
    }

    /// Forgets slot `slot`'s arrivals (a new participant takes it).
    pub(crate) fn reset_slot(&self, slot: usize) {
        if let Some(a) = self.arrived_gen.get(slot) {
            a.store(0, Ordering::Release);
        }
    }

    fn broken_error(&self, code: u32) -> BarrierError {
        match code {
            BROKEN_TIMEOUT => BarrierError::Broken,
            BROKEN_ABORT => BarrierError::Aborted,
            slot_plus_one => BarrierError::ParticipantDied {
                slot: slot_plus_one as usize - 1,
                pid: self.dead_pid.load(Ordering::Acquire),
            },
        }
    }

    fn break_with(&self, code: u32) -> BarrierError {
        let code = match self
            .broken
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => code,
            Err(existing) => existing,
        };
        wake_all(&self.generation);
        self.broken_error(code)
    }

    /// Repairs a broken barrier: clears the broken flag and the arrival count. Call
    /// it when all surviving participants are outside `wait`.
    pub(crate) fn reset(&self) {
        self.arrived.store(0, Ordering::Relaxed);
        self.broken.store(0, Ordering::Release);
    }

    /// Whether the barrier is broken.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire) != 0
    }

    /// Breaks the barrier: waiters and later `wait`s fail with `Aborted` until
    /// `reset` (Python's `Barrier.abort`).
    pub(crate) fn abort(&self) {
        self.break_with(BROKEN_ABORT);
    }

    /// Participants waiting in the current generation (0 while broken).
    pub(crate) fn waiting(&self) -> u32 {
        if self.is_broken() {
            0
        } else {
            self.arrived.load(Ordering::Acquire)
        }
    }

    /// Whether slot `slot` has arrived in generation `gen`.
    pub(crate) fn has_arrived(&self, slot: usize, gen: u32) -> bool {
        self.arrived_gen
            .get(slot)
            .is_some_and(|a| a.load(Ordering::Acquire) == gen.wrapping_add(1))
    }

    /// Waits until all `parties` have arrived, for at most `timeout`. Returns
    /// `true` in exactly one participant per generation (the last to arrive).
    /// `parties` comes from the caller's validated copy of the control block: the
    /// word in shared memory is informational (a stray write there must not make
    /// every wait wait for parties that do not exist).
    /// `dead_straggler(gen)` names a registered participant that has not arrived in
    /// generation `gen` and is dead, as `(slot, pid)`; it is asked between sleeps.
    pub(crate) fn wait(
        &self,
        slot: usize,
        parties: u32,
        timeout: Option<Duration>,
        dead_straggler: impl Fn(u32) -> Option<(usize, u32)>,
    ) -> Result<bool, BarrierError> {
        let b = self.broken.load(Ordering::Acquire);
        if b != 0 {
            return Err(self.broken_error(b));
        }
        let gen = self.generation.load(Ordering::Acquire);
        if let Some(a) = self.arrived_gen.get(slot) {
            a.store(gen.wrapping_add(1), Ordering::Release);
        }
        let n = self.arrived.fetch_add(1, Ordering::AcqRel) + 1;
        if n == parties {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            wake_all(&self.generation);
            return Ok(true);
        }
        if n > parties {
            return Err(self.break_with(BROKEN_TIMEOUT));
        }
        let wait = Wait::optional(timeout);
        loop {
            if self.generation.load(Ordering::Acquire) != gen {
                return Ok(false);
            }
            let b = self.broken.load(Ordering::Acquire);
            if b != 0 {
                return Err(self.broken_error(b));
            }
            let Some(slice) = wait.slice(POLL) else {
                self.break_with(BROKEN_TIMEOUT);
                return Err(BarrierError::Timeout(timeout.unwrap_or_default()));
            };
            if sleep_while(&self.generation, gen, slice) {
                if let Some((dead, pid)) = dead_straggler(gen) {
                    self.dead_pid.store(pid, Ordering::Release);
                    return Err(self.break_with(dead as u32 + 1));
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn barrier(parties: u32) -> Arc<BarrierState> {
        // SAFETY: all-zero bytes are a valid BarrierState (atomics only).
        let mut b: BarrierState = unsafe { std::mem::zeroed() };
        b.init(parties);
        Arc::new(b)
    }

    #[test]
    fn threads_pass_repeatedly_with_one_leader_per_generation() {
        let b = barrier(3);
        let handles: Vec<_> = (0..3)
            .map(|slot| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| {
                            b.wait(slot, 3, Some(Duration::from_secs(10)), |_| None)
                                .unwrap() as u32
                        })
                        .sum::<u32>()
                })
            })
            .collect();
        let leaders: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(leaders, 50);
    }

    #[test]
    fn timeout_breaks_the_barrier_for_everyone_until_reset() {
        let b = barrier(2);
        assert_eq!(
            b.wait(0, 2, Some(Duration::from_millis(30)), |_| None),
            Err(BarrierError::Timeout(Duration::from_millis(30)))
        );
        assert_eq!(
            b.wait(0, 2, Some(Duration::from_millis(30)), |_| None),
            Err(BarrierError::Broken)
        );
        b.reset();
        assert!(!b.is_broken());
    }

    #[test]
    fn a_dead_straggler_breaks_it_with_its_slot_and_pid() {
        let b = barrier(2);
        let r = b.wait(0, 2, Some(Duration::from_secs(5)), |gen| {
            (!b.has_arrived(1, gen)).then_some((1, 4242))
        });
        assert_eq!(r, Err(BarrierError::ParticipantDied { slot: 1, pid: 4242 }));
        assert_eq!(
            b.wait(0, 2, Some(Duration::from_secs(5)), |_| None),
            Err(BarrierError::ParticipantDied { slot: 1, pid: 4242 })
        );
    }

    #[test]
    fn abort_wakes_the_waiters_and_n_waiting_counts_them() {
        let b = barrier(3);
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || b.wait(0, 3, Some(Duration::from_secs(10)), |_| None))
        };
        let t = std::time::Instant::now();
        while b.waiting() == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the waiter never arrived"
            );
            std::thread::yield_now();
        }
        assert_eq!(b.waiting(), 1);
        b.abort();
        assert_eq!(waiter.join().unwrap(), Err(BarrierError::Aborted));
        assert!(b.is_broken());
        assert_eq!(b.waiting(), 0);
        assert_eq!(
            b.wait(1, 3, Some(Duration::from_secs(5)), |_| None),
            Err(BarrierError::Aborted)
        );
        b.reset();
        assert!(!b.is_broken());
    }
}

/// Model checking of the arrival/generation logic with loom: every interleaving of
/// the participants' atomics (the futex sleep becomes a yield). Run:
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    fn barrier(parties: u32) -> Arc<BarrierState> {
        let mut b = BarrierState {
            parties: AtomicU32::new(0),
            arrived: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            broken: AtomicU32::new(0),
            dead_pid: AtomicU32::new(0),
            _reserved: std::array::from_fn(|_| AtomicU32::new(0)),
            arrived_gen: std::array::from_fn(|_| AtomicU32::new(0)),
        };
        b.init(parties);
        Arc::new(b)
    }

    /// Nobody leaves a generation before every party has arrived in it, exactly one
    /// leader per generation, and the barrier is reusable: `rounds` generations
    /// with `parties` threads.
    fn check(parties: u32, rounds: usize, preemptions: usize) {
        let mut model = loom::model::Builder::new();
        model.preemption_bound.get_or_insert(preemptions);
        model.max_branches = 100_000;
        model.check(move || {
            let b = barrier(parties);
            // arrivals[r]: how many threads have arrived in round r.
            let arrivals = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
            let run = move |slot: usize, b: Arc<BarrierState>, arrivals: Arc<[AtomicU32; 2]>| {
                let mut leaders = 0;
                for r in 0..rounds {
                    arrivals[r].fetch_add(1, Ordering::Relaxed);
                    leaders += b
                        .wait(slot, parties, Some(Duration::from_secs(3600)), |_| None)
                        .unwrap() as u32;
                    // The barrier's Acquire/Release chain must make every arrival
                    // of this round visible here.
                    assert_eq!(arrivals[r].load(Ordering::Relaxed), parties);
                }
                leaders
            };
            let others: Vec<_> = (1..parties as usize)
                .map(|slot| {
                    let (b, a) = (b.clone(), arrivals.clone());
                    loom::thread::spawn(move || run(slot, b, a))
                })
                .collect();
            let mut leaders = run(0, b.clone(), arrivals.clone());
            for t in others {
                leaders += t.join().unwrap();
            }
            assert_eq!(leaders, rounds as u32, "one leader per generation");
            assert!(!b.is_broken());
        });
    }

    /// Two generations exercise reuse (the leader's reset of `arrived` before the
    /// generation bump). Three parties with yield loops do not finish in CI time,
    /// even with one preemption; the 3-process barrier tests in `tests/sync.rs`
    /// cover more parties on real processes.
    #[test]
    fn two_parties_two_generations() {
        check(2, 2, 3);
    }
}

/// Why a barrier could not be created or joined.
///
/// ```
/// use shmarray::{sync::{BarrierError, BarrierOpenError}, Barrier, Error};
/// let name = format!("doc-barrier-open-{}", std::process::id());
/// let first = Barrier::create(&name, 2)?; // the creator joins
/// let second = Barrier::open(&name)?; // e.g. another process
/// assert!(matches!(
///     Barrier::open(&name),
///     Err(BarrierOpenError::Barrier(BarrierError::TooManyParticipants { parties: 2 }))
/// ));
/// assert!(matches!(
///     Barrier::open(&format!("{name}-missing")),
///     Err(BarrierOpenError::Segment(Error::NotFound { .. }))
/// ));
/// # drop((first, second));
/// # Ok::<(), BarrierOpenError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierOpenError {
    /// The segment could not be created/opened.
    #[error(transparent)]
    Segment(#[from] crate::error::Error),
    /// The barrier is full or the party count is invalid.
    #[error(transparent)]
    Barrier(#[from] BarrierError),
}
