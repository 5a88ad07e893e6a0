//! A reusable barrier for N processes whose dead participants are detected.
//!
//! Participants register in a member table (pid + process start time) when they
//! attach. A waiter sleeps on the `generation` futex in short slices; between
//! slices it checks that every registered participant that has not arrived in this
//! generation is still alive. A dead one *breaks* the barrier: every waiter returns
//! `ParticipantDied { pid }` within one slice. A timeout also breaks it (as Python's
//! `Barrier` does), so nobody is left waiting for a party that gave up. `reset`
//! repairs a broken barrier once the survivors agree to continue.
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

// Under `--cfg loom` the barrier's atomics are loom's and its futex sleep is a
// yield, so the arrival/generation logic can be model checked on heap memory (see
// the `loom_tests` module).
#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::proc::{self as sys, Liveness};

/// Most participants a barrier can have (fewer under loom, which tracks every atomic).
#[cfg(not(loom))]
pub const MAX_PARTIES: usize = 64;
/// Most participants a barrier can have (loom models).
#[cfg(loom)]
pub const MAX_PARTIES: usize = 3;

/// Sleeps while `word == expected`, at most `slice`; `true` if the slice ran out.
#[cfg(not(loom))]
fn sleep_while(word: &AtomicU32, expected: u32, slice: Duration) -> bool {
    use crate::sys::futex::{futex_wait, FutexWait};
    futex_wait(word, expected, Some(slice)) == FutexWait::TimedOut
}

#[cfg(not(loom))]
fn wake_all(word: &AtomicU32) {
    super::wait::wake_all(word);
}

#[cfg(loom)]
fn sleep_while(_: &AtomicU32, _: u32, _: Duration) -> bool {
    loom::thread::yield_now();
    false
}

#[cfg(loom)]
fn wake_all(_: &AtomicU32) {}

/// How often a waiter checks that the others are alive.
const POLL: Duration = Duration::from_millis(10);

/// `broken` code for a barrier broken by a timeout.
const BROKEN_TIMEOUT: u32 = u32::MAX;

/// Why a barrier wait failed. The barrier stays broken until [`RawBarrier::reset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// This wait timed out; the barrier is now broken for the others too.
    #[error("barrier wait timed out after {0:?}; the barrier is broken")]
    Timeout(Duration),
    /// A registered participant died before arriving.
    #[error("barrier participant pid {pid} died; the barrier is broken")]
    ParticipantDied {
        /// Pid of the dead participant.
        pid: u32,
    },
    /// Broken earlier by another participant's timeout.
    #[error("the barrier was broken by another participant's timeout")]
    Broken,
    /// More participants than the barrier has parties (or than `MAX_PARTIES`).
    #[error("more participants than the barrier's {parties} parties")]
    TooManyParticipants {
        /// The barrier's party count.
        parties: u32,
    },
}

#[repr(C)]
#[derive(Debug)]
struct Member {
    pid: AtomicU32,
    /// `generation + 1` of the generation this member last arrived in.
    arrived_gen: AtomicU32,
    start_time: AtomicU64,
}

/// Barrier state, placed in shared memory (`#[repr(C)]`, no pointers). All-zero
/// bytes are a valid (unusable, 0-party) state; [`RawBarrier::init`] sets parties.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct RawBarrier {
    parties: AtomicU32,
    arrived: AtomicU32,
    generation: AtomicU32,
    broken: AtomicU32,
    members: [Member; MAX_PARTIES],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<RawBarrier>() == 64 + 16 * MAX_PARTIES);

impl RawBarrier {
    /// Sets the number of parties of a fresh barrier.
    pub fn init(&mut self, parties: u32) {
        self.parties.store(parties, Ordering::Relaxed);
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Relaxed)
    }

    /// Registers the calling process as a participant; returns its slot. Slots of
    /// dead processes are reclaimed.
    pub fn join(&self) -> Result<usize, BarrierError> {
        let parties = self.parties();
        let pid = sys::current_pid();
        let start = sys::process_start_time(pid).unwrap_or(0);
        for _ in 0..2 {
            for (i, m) in self.members.iter().enumerate().take(parties as usize) {
                if m.pid
                    .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    m.start_time.store(start, Ordering::Release);
                    m.arrived_gen.store(0, Ordering::Release);
                    return Ok(i);
                }
            }
            // Full: reclaim slots whose owner is dead, then retry once.
            for m in &self.members[..(parties as usize).min(MAX_PARTIES)] {
                let p = m.pid.load(Ordering::Acquire);
                if p != 0
                    && sys::liveness(p, m.start_time.load(Ordering::Acquire)) == Liveness::Dead
                {
                    let _ = m
                        .pid
                        .compare_exchange(p, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
        }
        Err(BarrierError::TooManyParticipants { parties })
    }

    /// Unregisters slot `slot` (on clean exit).
    pub fn leave(&self, slot: usize) {
        if let Some(m) = self.members.get(slot) {
            m.pid.store(0, Ordering::Release);
        }
    }

    fn broken_error(code: u32) -> BarrierError {
        match code {
            BROKEN_TIMEOUT => BarrierError::Broken,
            pid => BarrierError::ParticipantDied { pid },
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
        Self::broken_error(code)
    }

    /// Repairs a broken barrier: clears the broken flag and the arrival count. Call it
    /// when all surviving participants are outside `wait`.
    pub fn reset(&self) {
        self.arrived.store(0, Ordering::Relaxed);
        self.broken.store(0, Ordering::Release);
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire) != 0
    }

    /// Waits until all parties have arrived, for at most `timeout`. Returns `true`
    /// in exactly one participant per generation (the last to arrive).
    pub fn wait(&self, slot: usize, timeout: Duration) -> Result<bool, BarrierError> {
        let parties = self.parties();
        let b = self.broken.load(Ordering::Acquire);
        if b != 0 {
            return Err(Self::broken_error(b));
        }
        let gen = self.generation.load(Ordering::Acquire);
        if let Some(m) = self.members.get(slot) {
            m.arrived_gen.store(gen.wrapping_add(1), Ordering::Release);
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
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.generation.load(Ordering::Acquire) != gen {
                return Ok(false);
            }
            let b = self.broken.load(Ordering::Acquire);
            if b != 0 {
                return Err(Self::broken_error(b));
            }
            let slice = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => r.min(POLL),
                    _ => {
                        self.break_with(BROKEN_TIMEOUT);
                        return Err(BarrierError::Timeout(timeout));
                    }
                },
                None => POLL,
            };
            if sleep_while(&self.generation, gen, slice) {
                if let Some(pid) = self.dead_straggler(gen, parties) {
                    return Err(self.break_with(pid));
                }
            }
        }
    }

    /// A registered participant that has not arrived in generation `gen` and is dead.
    #[cold]
    fn dead_straggler(&self, gen: u32, parties: u32) -> Option<u32> {
        let arrived_mark = gen.wrapping_add(1);
        self.members
            .iter()
            .take((parties as usize).min(MAX_PARTIES))
            .find_map(|m| {
                let pid = m.pid.load(Ordering::Acquire);
                if pid == 0 || m.arrived_gen.load(Ordering::Acquire) == arrived_mark {
                    return None;
                }
                let alive = sys::liveness(pid, m.start_time.load(Ordering::Acquire));
                (alive == Liveness::Dead).then_some(pid)
            })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn barrier(parties: u32) -> Arc<RawBarrier> {
        // SAFETY: all-zero bytes are a valid RawBarrier (atomics and integers).
        let mut b: RawBarrier = unsafe { std::mem::zeroed() };
        b.init(parties);
        Arc::new(b)
    }

    #[test]
    fn threads_pass_repeatedly_with_one_leader_per_generation() {
        let b = barrier(3);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let slot = b.join().unwrap();
                    (0..50)
                        .map(|_| b.wait(slot, Duration::from_secs(10)).unwrap() as u32)
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
        let slot = b.join().unwrap();
        assert_eq!(
            b.wait(slot, Duration::from_millis(30)),
            Err(BarrierError::Timeout(Duration::from_millis(30)))
        );
        assert_eq!(
            b.wait(slot, Duration::from_millis(30)),
            Err(BarrierError::Broken)
        );
        b.reset();
        assert!(!b.is_broken());
    }

    #[test]
    fn registration_is_bounded_by_parties() {
        let b = barrier(2);
        b.join().unwrap();
        let s = b.join().unwrap();
        assert_eq!(
            b.join(),
            Err(BarrierError::TooManyParticipants { parties: 2 })
        );
        b.leave(s);
        assert_eq!(b.join(), Ok(s));
    }
}

/// Model checking of the arrival/generation logic with loom: every interleaving of
/// the participants' atomics (the futex sleep becomes a yield). Run:
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    fn barrier(parties: u32) -> Arc<RawBarrier> {
        let mut b = RawBarrier {
            parties: AtomicU32::new(0),
            arrived: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            broken: AtomicU32::new(0),
            members: std::array::from_fn(|_| Member {
                pid: AtomicU32::new(0),
                arrived_gen: AtomicU32::new(0),
                start_time: AtomicU64::new(0),
            }),
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
            let run = move |b: Arc<RawBarrier>, arrivals: Arc<[AtomicU32; 2]>| {
                let slot = b.join().unwrap();
                let mut leaders = 0;
                for r in 0..rounds {
                    arrivals[r].fetch_add(1, Ordering::Relaxed);
                    leaders += b.wait(slot, Duration::from_secs(3600)).unwrap() as u32;
                    // The barrier's Acquire/Release chain must make every arrival
                    // of this round visible here.
                    assert_eq!(arrivals[r].load(Ordering::Relaxed), parties);
                }
                leaders
            };
            let others: Vec<_> = (1..parties)
                .map(|_| {
                    let (b, a) = (b.clone(), arrivals.clone());
                    loom::thread::spawn(move || run(b, a))
                })
                .collect();
            let mut leaders = run(b.clone(), arrivals.clone());
            for t in others {
                leaders += t.join().unwrap();
            }
            assert_eq!(leaders, rounds as u32, "one leader per generation");
            assert!(!b.is_broken());
        });
    }

    /// Two generations exercise reuse (the leader's reset of `arrived` before the
    /// generation bump). Three parties with yield loops do not finish in CI time,
    /// even with one preemption; the 3-process barrier tests in
    /// `tests/sync.rs` cover more parties on real processes.
    #[test]
    fn two_parties_two_generations() {
        check(2, 2, 3);
    }
}
