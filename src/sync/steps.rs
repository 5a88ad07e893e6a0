//! Step counters: ranks that share rows in a node segment synchronise a halo
//! exchange with the ranks whose rows they read, not with the whole node.
//!
//! Each rank of a node has an *arrival* counter, and the node one *ghost*
//! counter (slot `node_size`), all in shared memory; the `k`-th exchange of an
//! array is epoch `k` (wrapping `u32`, epoch 0 is "none yet"). What each rank
//! does at an exchange ([`plan`]):
//!
//! 1. store `k` into its arrival counter ([`publish`]: Release, then wake). In
//!    program order before it, the rank wrote its rows and finished reading
//!    whatever it read in earlier steps (of this array and of any other);
//! 2. the *leader* (node rank 0), if the node has neighbouring nodes: exchange
//!    boundary rows with them over MPI — the first row is the leader's own; before
//!    touching the node's last row and the ghost row below, wait until the rank
//!    owning the last row (`last`) has arrived at `k` ([`Plan::before_below`]) —
//!    then store `k` into the ghost counter;
//! 3. a rank that owns rows: wait ([`wait_reached`]) until the ranks owning the
//!    rows just above and below its block have arrived at `k`, and, for `last`
//!    (unless it is the leader) when a node lies below, until the ghost counter
//!    reached `k` ([`Plan::then`]).
//!
//! Blocks are balanced, so rowless ranks (more ranks than rows) come last; they
//! arrive and wait for nobody. A rank enters epoch `k + 1` only after its
//! neighbours reached `k`, so neighbours are never more than one epoch apart and
//! [`reached`] compares with wrapping arithmetic.
//!
//! ## Memory ordering
//! Rows are plain memory; the counters order the accesses to them.
//! - *Read after write.* The owner of a row writes it, then publishes its arrival
//!   (Release). A reader waits until it loads an arrival `>= k` with Acquire
//!   (also after every futex wake-up), and only then reads the row: the
//!   Release/Acquire pair on the counter makes the write happen-before the read.
//!   The same pairs order `last`'s row before the leader's MPI send of it
//!   (`before_below`), and the leader's MPI receive into the ghost row before
//!   `last` reads it (ghost counter, Release then Acquire).
//! - *Write after read.* A solver swaps two arrays each step: in step `k` a rank
//!   reads its neighbours' rows of `u` and writes its own of `v`; in step `k + 1`
//!   it reads `v` and writes `u`. A neighbour finishes its reads of `u` before it
//!   publishes its arrival at the exchange of `v` (Release: the reads are complete
//!   before the store is visible), and a rank overwrites its rows of `u` only
//!   after that exchange's wait for the neighbour (Acquire). The leader overwrites
//!   a ghost row only after `last` arrived at the next exchange of that array
//!   (`before_below`), so `last`'s reads of it are done; `last` returns from an
//!   exchange only after the ghost counter, so the leader's send of `last`'s row
//!   completed before `last` writes the row again.
//! - *No lost wake-up.* A publisher stores, then wakes; a waiter sleeps with
//!   `FUTEX_WAIT` on the counter and the value it saw, and the kernel sleeps only if
//!   the word still holds that value (compared under the futex bucket lock). A
//!   store between the waiter's load and its sleep makes the sleep return at once.
//!
//! The loom model below checks the two-rank case (a leader and `last`, with a node
//! below, over a pair of swapped arrays) for data races on the rows, and that each
//! kind of wait is needed. On real processes the `halo rows` cases of `tests/mpi.rs`
//! check every row a rank reads at every step (removing the `then` waits, or the
//! leader's `before_below`, by hand makes them fail).

use std::time::Duration;

use crate::primitive::{sleep_while, wake_all, AtomicU32, Ordering};

/// Polls of a counter before sleeping on it: a neighbour that is about to arrive
/// is waited for without two system calls; short enough not to starve the
/// neighbour when ranks outnumber cores (longer spins, and yielding, measured
/// slower with 4 ranks on 2 cores). None under loom, where every poll is a
/// branch of the model and a sleep is a yield.
const SPINS: u32 = if cfg!(loom) { 0 } else { 64 };

/// How long one futex sleep lasts before the counter is looked at again (a wake-up
/// is never lost, see the module docs; the slice only bounds a sleep).
const SLICE: Duration = Duration::from_secs(1);

/// Whether counter value `seen` has reached epoch `k` (wrapping).
#[inline]
pub(crate) fn reached(seen: u32, k: u32) -> bool {
    seen.wrapping_sub(k) as i32 >= 0
}

/// Stores epoch `k` into `counter` (Release) and wakes its waiters.
#[inline]
pub(crate) fn publish(counter: &AtomicU32, k: u32) {
    counter.store(k, Ordering::Release);
    wake_all(counter);
}

/// Returns once `counter` has reached epoch `k` (seen with Acquire): a short spin,
/// then futex sleeps.
#[inline]
pub(crate) fn wait_reached(counter: &AtomicU32, k: u32) {
    for _ in 0..SPINS {
        if reached(counter.load(Ordering::Acquire), k) {
            return;
        }
        std::hint::spin_loop();
    }
    sleep_until(counter, k);
}

#[cold]
fn sleep_until(counter: &AtomicU32, k: u32) {
    loop {
        let seen = counter.load(Ordering::Acquire);
        if reached(seen, k) {
            return;
        }
        sleep_while(counter, seen, SLICE);
    }
}

/// Who waits for whom at an exchange, for one rank. Slots `0..node_size` are the
/// node ranks' arrival counters, slot `node_size` the ghost counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// On a leader with neighbouring nodes: it exchanges rows over MPI and then
    /// publishes the ghost counter.
    pub(crate) leader_exchanges: bool,
    /// The counter the leader waits for before touching the node's last row and
    /// the ghost row below.
    pub(crate) before_below: Option<usize>,
    /// The counters this rank waits for after that (the leader's part done).
    pub(crate) then: [Option<usize>; 3],
}

/// The [`Plan`] of node rank `me` of `node_size`, on a node holding `node_rows`
/// rows (at least one), with or without neighbouring nodes above and below.
pub(crate) fn plan(
    me: usize,
    node_size: usize,
    node_rows: usize,
    node_above: bool,
    node_below: bool,
) -> Plan {
    let ghost = node_size;
    // Ranks `0..active` own rows; `last` owns the node's last row.
    let active = node_rows.min(node_size).max(1);
    let last = active - 1;
    let leader_exchanges = me == 0 && (node_above || node_below);
    let before_below = (leader_exchanges && node_below && last != 0).then_some(last);
    let mut then = [None; 3];
    if me < active {
        then[0] = (me > 0).then(|| me - 1);
        then[1] = (me < last).then_some(me + 1);
        then[2] = (node_below && me == last && me != 0).then_some(ghost);
    }
    Plan {
        leader_exchanges,
        before_below,
        then,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reached_wraps() {
        assert!(reached(5, 5));
        assert!(reached(6, 5));
        assert!(!reached(4, 5));
        assert!(!reached(0, 1));
        assert!(reached(0, u32::MAX)); // 0 is one past u32::MAX
        assert!(!reached(u32::MAX, 0));
        assert!(reached(1, u32::MAX));
    }

    /// The plan against the rows themselves: each rank that owns rows waits for
    /// exactly the owners of the two rows next to its block (for the ghost row
    /// below, the ghost counter; the ghost row above is the leader's, who owns the
    /// first rows), nobody else; the leader waits for the owner of the last row
    /// before sending it; rowless ranks wait for nobody.
    #[test]
    fn plans_wait_for_the_owners_of_the_rows_read() {
        for node_size in 1..7 {
            for node_rows in 1..9 {
                // Balanced blocks over the node's rows, as `NodeArray` splits them.
                let start = |p: usize| node_rows / node_size * p + p.min(node_rows % node_size);
                let block = |p: usize| start(p)..start(p + 1);
                let owner = |row: usize| (0..node_size).find(|&p| block(p).contains(&row));
                for (above, below) in [(false, false), (true, false), (false, true), (true, true)] {
                    for me in 0..node_size {
                        let p = plan(me, node_size, node_rows, above, below);
                        assert_eq!(p.leader_exchanges, me == 0 && (above || below));
                        let mut waits: Vec<usize> = p.then.iter().flatten().copied().collect();
                        waits.sort_unstable();
                        let rows = block(me);
                        let mut want = Vec::new();
                        if !rows.is_empty() {
                            if rows.start > 0 {
                                want.extend(owner(rows.start - 1));
                            } else {
                                assert_eq!(me, 0, "the first rows are the leader's");
                            }
                            if rows.end < node_rows {
                                want.extend(owner(rows.end));
                            } else if below && me != 0 {
                                want.push(node_size); // the ghost counter
                            }
                        }
                        want.sort_unstable();
                        assert_eq!(
                            waits, want,
                            "rank {me} of {node_size}, {node_rows} rows, above {above}, below {below}"
                        );
                        if me == 0 {
                            let last = owner(node_rows - 1).expect("an owner");
                            let want = (below && last != 0).then_some(last);
                            assert_eq!(p.before_below, want, "the leader waits for the last row");
                        } else {
                            assert_eq!(p.before_below, None);
                        }
                    }
                }
            }
        }
    }
}

/// Model checking of the counters with loom: a leader (rank 0) and the rank
/// owning the node's last row (rank 1), a node below, two arrays swapped each
/// step. Rows and ghost rows are loom cells, so any access not ordered by the
/// counters is a reported data race. Run:
/// `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom_tests`
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    const STEPS: u32 = 3;

    struct Node {
        /// `rows[array][rank]`: the one row each rank owns.
        rows: [[UnsafeCell<u32>; 2]; 2],
        /// `ghost[array]`: the ghost row below the node, written by the leader.
        ghost: [UnsafeCell<u32>; 2],
        /// `counters[array][slot]`: arrivals of ranks 0 and 1, then the ghost's.
        counters: [[AtomicU32; 3]; 2],
    }

    /// Rank `me`'s steps; `drop` removes one wait from its plan (to show it is
    /// needed): 1 the leader's `before_below`, 2 the waits of `then`. Returns the
    /// first stale row it read, if any: the caller asserts only after joining, as
    /// a panic while the other thread still runs aborts loom (a panic in a
    /// destructor during unwinding) instead of failing the test.
    fn rank(node: &Node, me: usize, drop: u8) -> Option<String> {
        let mut p = plan(me, 2, 2, false, true);
        match drop {
            1 => p.before_below = None,
            2 => p.then = [None; 3],
            _ => {}
        }
        let mut stale = None;
        let mut expect = |got: u32, want: u32, what: &dyn Fn() -> String| {
            if got != want && stale.is_none() {
                stale = Some(format!("{}: {got} instead of {want}", what()));
            }
        };
        for s in 0..STEPS {
            let a = (s % 2) as usize;
            let k = s / 2 + 1; // the epoch of array `a` at step `s`
            let value = s + 1;
            // SAFETY: loom cells of the model; loom reports any access the
            // counters do not order (here: this rank's own row).
            node.rows[a][me].with_mut(|r| unsafe { *r = value });
            publish(&node.counters[a][me], k);
            if p.leader_exchanges {
                if let Some(slot) = p.before_below {
                    wait_reached(&node.counters[a][slot], k);
                }
                // "Send" the last row, "receive" the ghost row.
                // SAFETY: loom cells; loom checks the ordering.
                let sent = node.rows[a][1].with(|r| unsafe { *r });
                expect(sent, value, &|| format!("the last row of step {s} sent"));
                // SAFETY: as above.
                node.ghost[a].with_mut(|g| unsafe { *g = value });
                publish(&node.counters[a][2], k);
            }
            for slot in p.then.into_iter().flatten() {
                wait_reached(&node.counters[a][slot], k);
            }
            // The stencil: the neighbour's row, and the ghost row for rank 1.
            // SAFETY: loom cells; loom checks the ordering.
            let other = node.rows[a][1 - me].with(|r| unsafe { *r });
            expect(other, value, &|| {
                format!("rank {me} step {s}: the neighbour's row")
            });
            if me == 1 {
                // SAFETY: as above.
                let g = node.ghost[a].with(|g| unsafe { *g });
                expect(g, value, &|| format!("step {s}: the ghost row"));
            }
        }
        stale
    }

    /// Runs the model with waits `drop` removed from rank 0's (`leader`) and rank
    /// 1's (`last`) plans.
    fn check(leader: u8, last: u8) {
        let mut model = loom::model::Builder::new();
        model.preemption_bound.get_or_insert(3);
        model.max_branches = 100_000;
        model.check(move || {
            let node = Arc::new(Node {
                rows: std::array::from_fn(|_| std::array::from_fn(|_| UnsafeCell::new(0))),
                ghost: std::array::from_fn(|_| UnsafeCell::new(0)),
                counters: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU32::new(0))),
            });
            let other = node.clone();
            let t = loom::thread::spawn(move || rank(&other, 1, last));
            let leader_stale = rank(&node, 0, leader);
            let last_stale = t.join().expect("rank 1 joins");
            assert_eq!((leader_stale, last_stale), (None, None), "stale rows read");
        });
    }

    #[test]
    fn loom_tests_step_counters_order_rows_and_ghosts() {
        check(0, 0);
    }

    /// Without the leader's wait for `last`, its send of the last row (and its
    /// write of the ghost row) races with `last`.
    #[test]
    #[should_panic]
    fn loom_tests_step_counters_without_before_below() {
        check(1, 0);
    }

    /// Without `last`'s waits for the leader and the ghost counter, its reads race
    /// with the leader's writes.
    #[test]
    #[should_panic]
    fn loom_tests_step_counters_without_the_neighbour_waits() {
        check(0, 2);
    }
}
