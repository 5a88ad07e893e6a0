//! `NodeArray`: one segment per node, shared by the node's ranks, each working in
//! place on its own rows.

use std::mem::ManuallyDrop;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;

use ::mpi::traits::*;
use ndarray::{ArrayView, ArrayViewMut, Axis, Dimension, IntoDimension, RemoveAxis};

use super::{block, MpiError, NodeComm};
use crate::array::SharedArray;
use crate::element::Element;
use crate::segment::Segment;

/// An array with one copy per node: a [`SharedArray`] segment created by the node's
/// leader and attached by the node's other ranks, with axis 0 split into one block
/// of rows per node rank.
///
/// # Views and soundness
/// [`rows_mut`](Self::rows_mut) hands this rank a mutable view of *its own rows
/// only*, [`view`](Self::view) a read-only view of the whole array; both need `&mut
/// self`, and the handle claims its segment at creation (no second handle of it can
/// be opened in this process), so inside this process there is exactly one view at
/// a time. The row blocks of the node's ranks are disjoint, so ranks writing their
/// own rows never touch the same elements. Reading rows of *other* ranks is safe
/// memory-wise (they are `Pod` numbers in bounds of the mapping) but races with
/// their writers unless it happens after a [`barrier`](Self::barrier) that follows
/// the writes: the protocol, not the compiler, orders processes (see
/// [`SharedArray`]'s contract).
///
/// # Lifetime of the segment
/// The leader's handle owns the segment. Dropping a `NodeArray` is collective over
/// the node: the other ranks unmap their handle and meet the leader at a barrier,
/// then the leader removes the segment. (During a panic the barrier is skipped: a
/// panicking rank must not block in a collective.) After a crash the segment is
/// left behind with no process attached, and `shmarray gc` removes it.
///
/// ```no_run
/// use shmarray::ndarray::Ix2;
/// use shmarray::mpi::{NodeArray, NodeComm};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let universe = shmarray::mpi::rsmpi::initialize().ok_or("MPI already initialised")?;
/// let nodes = NodeComm::new(&universe.world())?;
/// let mut table = NodeArray::<f64, Ix2>::create(&nodes, "table", (1000, 64))?;
/// let rows = table.rows(); // this rank's rows
/// for (i, mut row) in table.rows_mut()?.outer_iter_mut().enumerate() {
///     row.fill((rows.start + i) as f64);
/// }
/// table.barrier(); // every rank's rows are written
/// let total = table.view()?.sum(); // one copy per node, read by every rank
/// # let _ = total; Ok(()) }
/// ```
pub struct NodeArray<'c, T: Element, D: Dimension> {
    comm: &'c NodeComm,
    /// Dropped by hand in `Drop`: before the barrier on other ranks, after it on
    /// the leader.
    array: ManuallyDrop<SharedArray<T, D>>,
    /// This rank's rows (axis 0).
    rows: Range<usize>,
    /// The rows split among the ranks (the others are ghost rows).
    split: Range<usize>,
}

impl<'c, T: Element, D: Dimension + RemoveAxis> NodeArray<'c, T, D> {
    /// Creates the node's zero-filled array (collective over the node): the leader
    /// creates segment [`NodeComm::segment_name`]`(name)`, the others attach it once
    /// it is published. Axis 0 is split in balanced blocks over the node's ranks.
    pub fn create(
        comm: &'c NodeComm,
        name: &str,
        shape: impl IntoDimension<Dim = D>,
    ) -> Result<Self, MpiError> {
        Self::create_reserving(comm, name, shape.into_dimension(), 0, 0)
    }

    /// As `create`, but only rows `head..len - tail` of axis 0 are split among the
    /// ranks (the others are nobody's: ghost rows).
    pub(super) fn create_reserving(
        comm: &'c NodeComm,
        name: &str,
        dim: D,
        head: usize,
        tail: usize,
    ) -> Result<Self, MpiError> {
        let seg_name = comm.segment_name(name);
        let node = comm.node();
        let mut created = if comm.is_leader() {
            Some(SharedArray::<T, D>::create(&seg_name, dim.clone()))
        } else {
            None
        };
        // The leader tells the node whether the segment exists; the others open it
        // only after this (the broadcast orders "published" before "open").
        let mut ok = [u8::from(matches!(created, Some(Ok(_))))];
        node.process_at_rank(0).broadcast_into(&mut ok[..]);
        let mut array = match created.take() {
            Some(r) => r?,
            None if ok[0] == 1 => SharedArray::<T, D>::open(&seg_name)?,
            None => {
                return Err(MpiError::LeaderFailed {
                    node: comm.node_index(),
                    name: seg_name,
                })
            }
        };
        // Claim the segment for this handle: from now on no second handle of it can
        // be opened in this process, so `&mut self` views are the only ones.
        array.view()?;
        let len = dim.as_array_view().first().copied().unwrap_or(0);
        let inner = len.saturating_sub(head + tail);
        let mine = block(inner, comm.node_size(), comm.node_rank());
        Ok(NodeArray {
            comm,
            array: ManuallyDrop::new(array),
            rows: mine.start + head..mine.end + head,
            split: head..head + inner,
        })
    }

    /// This rank's rows (axis 0).
    pub fn rows(&self) -> Range<usize> {
        self.rows.clone()
    }

    /// The rows of node rank `node_rank` (axis 0).
    pub fn rows_of(&self, node_rank: usize) -> Range<usize> {
        let b = block(self.split.len(), self.comm.node_size(), node_rank);
        b.start + self.split.start..b.end + self.split.start
    }

    /// A mutable view of this rank's rows only (see the type's docs for why this is
    /// sound).
    #[inline]
    pub fn rows_mut(&mut self) -> Result<ArrayViewMut<'_, T, D>, MpiError> {
        let rows = self.rows.clone();
        let all = self.array.view_mut()?;
        Ok(all.slice_axis_move(Axis(0), rows.into()))
    }

    /// A read-only view of the whole node array. Rows of other ranks are consistent
    /// only after a [`barrier`](Self::barrier) that follows their writes.
    #[inline]
    pub fn view(&mut self) -> Result<ArrayView<'_, T, D>, MpiError> {
        Ok(self.array.view()?)
    }

    /// A mutable view of the whole node array, for the one rank that writes rows
    /// nobody owns (ghost rows) or everything, while the node's other ranks wait at
    /// a barrier: the caller keeps to that protocol.
    #[inline]
    pub(super) fn view_all_mut(&mut self) -> Result<ArrayViewMut<'_, T, D>, MpiError> {
        Ok(self.array.view_mut()?)
    }
}

impl<'c, T: Element, D: Dimension> NodeArray<'c, T, D> {
    /// Waits for every rank of the node (after it, every rank's earlier writes are
    /// visible to every other rank).
    pub fn barrier(&self) {
        self.comm.node().barrier();
    }

    /// The node communicator this array was made with.
    pub fn comm(&self) -> &'c NodeComm {
        self.comm
    }

    /// The underlying segment handle (its lock, counters, path, metadata).
    pub fn shared(&self) -> &SharedArray<T, D> {
        &self.array
    }

    /// The segment name on this node.
    pub fn name(&self) -> Option<&str> {
        self.array.name()
    }

    /// The segment file, for `numpy.load(path, mmap_mode="r")` or `shmarray inspect`.
    pub fn path(&self) -> Option<PathBuf> {
        self.array.path()
    }

    /// The shape of the node's array.
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }
}

impl<D: Dimension> NodeArray<'_, u32, D> {
    /// The whole array as atomics: the words of [`StepCounters`](super::neighbours::StepCounters),
    /// whose arrays never hand out a view after creation.
    pub(super) fn atomics(&self) -> &[AtomicU32] {
        let len = self.array.len();
        // SAFETY: the data of a created or opened-writable segment is `len` `u32`s
        // in a mapping that lives as long as `self.array` (so as long as the
        // borrow of `self`), page aligned (so aligned for `AtomicU32`, which has
        // the size and alignment of `u32`). In this process, views of the array
        // need `&mut self`, so none coexists with this shared borrow; other
        // processes are outside Rust's model (see `SharedArray`'s contract), and
        // the crate accesses these words only atomically.
        unsafe { std::slice::from_raw_parts(self.array.data_ptr().cast::<AtomicU32>(), len) }
    }
}

impl<T: Element, D: Dimension> Drop for NodeArray<'_, T, D> {
    fn drop(&mut self) {
        let leader = self.comm.is_leader();
        if !leader || std::thread::panicking() {
            // SAFETY: `array` is dropped exactly once, here, and never used again
            // (the struct is being dropped).
            unsafe { ManuallyDrop::drop(&mut self.array) };
        }
        if std::thread::panicking() {
            return;
        }
        // Others have unmapped their handle; the leader removes the name after this.
        self.comm.node().barrier();
        if leader {
            // SAFETY: as above; the leader's handle was not dropped before.
            unsafe { ManuallyDrop::drop(&mut self.array) };
        }
    }
}

impl<T: Element, D: Dimension> std::fmt::Debug for NodeArray<'_, T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeArray")
            .field("array", &*self.array)
            .field("node", &self.comm.node_index())
            .field("rows", &self.rows)
            .finish()
    }
}
