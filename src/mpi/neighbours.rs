//! Step counters in a node segment: how the ranks of one node synchronise a halo
//! exchange with the ranks whose rows they read, instead of with the whole node.
//!
//! A [`DistArray`](super::DistArray) keeps, next to its data segment, one small
//! segment per node (`{name}.halo`, `u32`, shape `(node_size + 1, 32)`): row `r`
//! holds node rank `r`'s *arrival* counter in its first word, the last row the
//! leader's *ghost* counter; every counter sits on its own 128 bytes (two cache
//! lines: no false sharing with the spatial prefetcher either). The `k`-th halo
//! exchange of the array is epoch `k` (wrapping `u32`; epoch 0 is "none yet").
//!
//! # Protocol of epoch `k` on node rank `r`
//! 1. *Arrive*: store `k` into `arrival[r]` (Release) and wake its waiters. Before
//!    it, in program order, `r` wrote its rows of this array and finished reading
//!    whatever it read in earlier steps (of this array and any other).
//! 2. *Leader*, if the node has a neighbouring node below: wait until
//!    `arrival[last] >= k` (`last`: the rank owning the node's last row), then
//!    exchange boundary rows with the neighbouring nodes' leaders over MPI
//!    (receiving into the ghost rows), then store `k` into `ghost` (Release) and
//!    wake. The leader owns the node's first row itself (rank 0 has rows first).
//! 3. *Wait* (ranks that own rows): until `arrival[r - 1] >= k` and
//!    `arrival[r + 1] >= k` (the ranks owning the rows next to `r`'s block), and,
//!    for `last != 0` when a node lies below, until `ghost >= k`.
//!
//! Counters only grow by one per exchange and a rank enters epoch `k + 1` only
//! after its neighbours reached `k`, so neighbours are never more than one epoch
//! apart: "reached" is `counter.wrapping_sub(k) as i32 >= 0`, safe across wrapping.
//!
//! # Memory ordering
//! Rows are plain memory written through views; the counters order them.
//! - *Read after write* (halo rows): `r - 1` writes its last row, then stores
//!   `arrival[r - 1] = k` with Release; `r` loads `arrival[r - 1] >= k` with
//!   Acquire (in the futex wait loop too) before it makes its view and reads that
//!   row. Release/Acquire on the same word makes the write happen-before the read.
//!   The same pairs order `last`'s row before the leader's MPI send, and the
//!   leader's MPI receive into the ghost row (`ghost = k`, Release) before `last`
//!   reads it (Acquire).
//! - *Write after read* (the next overwrite): `r - 1` read `r`'s first row in the
//!   step after exchange `k - 1`, then stored `arrival[r - 1] = k` (Release: its
//!   reads are complete before the store is visible). `r` writes that row again only
//!   after an exchange in which it waited for `arrival[r - 1]` (Acquire): of this
//!   array at `k`, or of the other array of a double-buffered pair, whose counters
//!   `r - 1` also advances only after finishing its reads. The ghost rows: the
//!   leader overwrites them at `k` only after `arrival[last] >= k` (so `last`
//!   finished reading them); `last` overwrites its last row only after its next
//!   exchange's wait for `ghost` (so the leader's send of it completed).
//! - A wait that finds the counter not yet reached sleeps in `FUTEX_WAIT` on the
//!   counter's word with the value it saw; the publisher stores first, then wakes,
//!   so a waiter either sees the new value or is woken (the kernel compares the
//!   word under its hash-bucket lock).
//!
//! A rank that dies leaves its counter behind: its neighbours wait in
//! `FUTEX_WAIT` (interruptible) until mpirun, which sees the rank die, kills the
//! job, as it kills ranks waiting in an MPI collective (tested with `SIGKILL`).

use std::sync::atomic::{AtomicU32, Ordering};

use ndarray::Ix2;

use super::{MpiError, NodeArray, NodeComm};

/// `u32` words per counter: 128 bytes.
const WORDS_PER_COUNTER: usize = 32;

/// Polls of a counter before sleeping on it: a neighbour that is about to arrive
/// is waited for without two system calls; short enough not to starve the
/// neighbour when ranks outnumber cores.
const SPINS: u32 = 64;

/// Whether counter value `seen` has reached epoch `k` (wrapping).
#[inline]
pub(super) fn reached(seen: u32, k: u32) -> bool {
    seen.wrapping_sub(k) as i32 >= 0
}

/// The arrival and ghost counters of one distributed array on one node.
#[derive(Debug)]
pub(super) struct StepCounters<'c> {
    words: NodeArray<'c, u32, Ix2>,
    node_size: usize,
}

impl<'c> StepCounters<'c> {
    /// Creates (leader) or attaches (others) the node's counter segment
    /// `segment_name(name)`, all counters at epoch 0 (collective over the node).
    pub(super) fn new(comm: &'c NodeComm, name: &str) -> Result<Self, MpiError> {
        let node_size = comm.node_size();
        let words = NodeArray::<u32, Ix2>::create(comm, name, (node_size + 1, WORDS_PER_COUNTER))?;
        Ok(StepCounters { words, node_size })
    }

    #[inline]
    fn counter(&self, slot: usize) -> &AtomicU32 {
        &self.words.atomics()[slot * WORDS_PER_COUNTER]
    }

    /// The slot of the ghost counter.
    #[inline]
    pub(super) fn ghost_slot(&self) -> usize {
        self.node_size
    }

    /// Stores `k` into counter `slot` (Release) and wakes its waiters.
    #[inline]
    pub(super) fn publish(&self, slot: usize, k: u32) {
        let c = self.counter(slot);
        c.store(k, Ordering::Release);
        crate::sync::wake_all(c);
    }

    /// Returns once counter `slot` has reached epoch `k` (Acquire).
    #[inline]
    pub(super) fn wait_for(&self, slot: usize, k: u32) {
        let c = self.counter(slot);
        for _ in 0..SPINS {
            if reached(c.load(Ordering::Acquire), k) {
                return;
            }
            std::hint::spin_loop();
        }
        self.sleep_until(c, k);
    }

    #[cold]
    fn sleep_until(&self, c: &AtomicU32, k: u32) {
        loop {
            let seen = c.load(Ordering::Acquire);
            if reached(seen, k) {
                return;
            }
            // Without a deadline this returns only once the word differs from
            // `seen` (re-checked above with Acquire).
            let _ = crate::sync::wait_while_equal(c, seen, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reached;

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
}
