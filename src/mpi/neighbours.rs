//! The step counters of a [`DistArray`](super::DistArray) on one node: a small node
//! segment (`{name}.halo`, `u32`, shape `(node_size + 1, 32)`) whose row `r` holds
//! node rank `r`'s arrival counter in its first word and whose last row holds the
//! leader's ghost counter. Every counter sits alone on 128 bytes (two cache lines:
//! no false sharing, with the adjacent-line prefetcher either). The protocol and
//! its memory ordering are in [`crate::sync::steps`].
//!
//! A rank that dies leaves its counter behind: its neighbours wait in
//! `FUTEX_WAIT` (interruptible) until mpirun, which sees the rank die, kills the
//! job, as it kills ranks waiting in an MPI collective (tested with `SIGKILL`).

use std::sync::atomic::AtomicU32;

use ndarray::Ix2;

use super::{MpiError, NodeArray, NodeComm};
use crate::sync::steps;

/// `u32` words per counter: 128 bytes.
const WORDS_PER_COUNTER: usize = 32;

/// The arrival and ghost counters of one distributed array on one node.
#[derive(Debug)]
pub(super) struct StepCounters<'c> {
    words: NodeArray<'c, u32, Ix2>,
}

impl<'c> StepCounters<'c> {
    /// Creates (leader) or attaches (others) the node's counter segment
    /// `segment_name(name)`, all counters at epoch 0 (collective over the node).
    pub(super) fn new(comm: &'c NodeComm, name: &str) -> Result<Self, MpiError> {
        let shape = (comm.node_size() + 1, WORDS_PER_COUNTER);
        let words = NodeArray::<u32, Ix2>::create(comm, name, shape)?;
        Ok(StepCounters { words })
    }

    /// Counter `slot`: node rank `slot`'s arrival, or the ghost counter (slot
    /// `node_size`).
    #[inline]
    fn counter(&self, slot: usize) -> &AtomicU32 {
        &self.words.atomics()[slot * WORDS_PER_COUNTER]
    }

    /// Stores epoch `k` into counter `slot` (Release) and wakes its waiters.
    #[inline]
    pub(super) fn publish(&self, slot: usize, k: u32) {
        steps::publish(self.counter(slot), k);
    }

    /// Returns once counter `slot` has reached epoch `k` (Acquire).
    #[inline]
    pub(super) fn wait_for(&self, slot: usize, k: u32) {
        steps::wait_reached(self.counter(slot), k);
    }
}
