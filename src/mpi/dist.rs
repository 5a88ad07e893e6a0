//! `DistArray`: a global 2-D f64 array partitioned by rows across nodes, one
//! node-shared segment per node with a ghost row above and below.

use std::io::Write;
use std::ops::Range;
use std::path::Path;

use ::mpi::collective::SystemOperation;
use ::mpi::datatype::PartitionMut;
use ::mpi::traits::*;
use ::mpi::Count;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, Ix2};

use super::neighbours::StepCounters;
use super::{block, MpiError, NodeArray, NodeComm};
use crate::sync::steps;

/// Tag of a boundary row travelling to the next node (higher index).
const TAG_DOWN: i32 = 0x5348_4d01;
/// Tag of a boundary row travelling to the previous node.
const TAG_UP: i32 = 0x5348_4d02;

/// A global `rows × cols` array of `f64`, partitioned by rows across *nodes*: node
/// `k` holds the balanced block [`node_rows`](Self::node_rows) in one node-shared
/// segment of shape `(node_rows + 2, cols)`, whose first and last rows are ghost
/// copies of the neighbouring nodes' boundary rows. Inside a node the block is
/// split again into one block of rows per rank ([`rows`](Self::rows)), which the
/// rank writes in place ([`rows_mut`](Self::rows_mut)).
///
/// Halo exchange ([`exchange_halos`](Self::exchange_halos)) sends only the boundary
/// rows between neighbouring nodes, leader to leader over MPI; ranks of one node
/// see each other's rows in the shared segment and exchange nothing. Each rank
/// waits only for the ranks whose rows it reads, through step counters in a
/// second node segment, `{name}.halo` ([`HaloSync`]). Reductions
/// ([`sum`](Self::sum), [`max`](Self::max)) reduce each rank's rows, then the node's
/// partials, then across nodes. [`gather`](Self::gather) and
/// [`write_npy`](Self::write_npy) bring the array to world rank 0.
///
/// Every method that takes `&mut self` except the views is collective over the
/// world: every rank calls it, in the same order.
///
/// ```no_run
/// use shmarray::mpi::{DistArray, NodeComm};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let universe = shmarray::mpi::rsmpi::initialize().ok_or("MPI already initialised")?;
/// let nodes = NodeComm::new(&universe.world())?;
/// let mut u = DistArray::new(&nodes, "grid", (512, 512))?;
/// let first = u.rows().start;
/// for (i, mut row) in u.rows_mut()?.outer_iter_mut().enumerate() {
///     row.fill((first + i) as f64);
/// }
/// u.exchange_halos()?; // ghost rows now hold the neighbouring nodes' boundary rows
/// let local = u.local_view()?; // row 0 is the ghost above this node's block
/// # let _ = local;
/// let total = u.sum()?; // the same on every rank
/// u.write_npy("grid.npy")?; // world rank 0 writes the whole array
/// # let _ = total; Ok(()) }
/// ```
#[derive(Debug)]
pub struct DistArray<'c> {
    local: NodeArray<'c, f64, Ix2>,
    /// The node's step counters of this array (see `neighbours`).
    steps: StepCounters<'c>,
    /// Halo exchanges made so far (wrapping): the epoch of the last one.
    epoch: u32,
    sync: HaloSync,
    rows: usize,
    cols: usize,
    node_rows: Range<usize>,
}

/// How [`DistArray::exchange_halos`] synchronises the ranks of a node.
///
/// ```no_run
/// // no_run: an MPI program is started by `mpirun`, which `cargo test --doc` is not.
/// use shmarray::mpi::{DistArray, HaloSync, NodeComm};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let universe = shmarray::mpi::rsmpi::initialize().ok_or("MPI already initialised")?;
/// let nodes = NodeComm::new(&universe.world())?;
/// let mut u = DistArray::new(&nodes, "heat", (256, 256))?;
/// assert_eq!(u.halo_sync(), HaloSync::Neighbours); // the default
/// // A step that reads rows beyond the neighbouring ones needs the whole node
/// // current: every rank switches, as for any collective.
/// u.set_halo_sync(HaloSync::NodeBarrier);
/// u.exchange_halos()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HaloSync {
    /// Each rank waits only for the ranks whose rows it reads (the ranks owning the
    /// rows just above and below its block) and, on the ranks next to a ghost row,
    /// for the leader's exchange with the neighbouring node: per-rank step counters
    /// in a node segment, futex waits. The default.
    #[default]
    Neighbours,
    /// Every rank waits for the whole node, twice (an MPI barrier of the node
    /// before the leaders' exchange and one after), as every exchange did before
    /// the step counters: kept for comparison (`mpi_heat --bench`) and for steps
    /// that read rows beyond the neighbouring ones.
    NodeBarrier,
}

impl<'c> DistArray<'c> {
    /// Creates a zero-filled distributed array of global shape `(rows, cols)`
    /// (collective over the world): every node gets one or more rows
    /// ([`MpiError::TooFewRows`] otherwise), in one segment named
    /// [`NodeComm::segment_name`]`(name)`.
    pub fn new(
        comm: &'c NodeComm,
        name: &str,
        (rows, cols): (usize, usize),
    ) -> Result<Self, MpiError> {
        let nodes = comm.node_count();
        if rows < nodes {
            return Err(MpiError::TooFewRows { rows, nodes });
        }
        let elements = rows.saturating_mul(cols);
        if Count::try_from(elements).is_err() {
            return Err(MpiError::TooLarge { elements });
        }
        let node_rows = block(rows, nodes, comm.node_index());
        let local = NodeArray::create_reserving(comm, name, Ix2(node_rows.len() + 2, cols), 1, 1)?;
        let steps = StepCounters::new(comm, &format!("{name}.halo"))?;
        Ok(DistArray {
            local,
            steps,
            epoch: 0,
            sync: HaloSync::default(),
            rows,
            cols,
            node_rows,
        })
    }

    /// The global shape `(rows, cols)`.
    pub fn global_shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The global rows this node holds.
    pub fn node_rows(&self) -> Range<usize> {
        self.node_rows.clone()
    }

    /// The global rows this rank owns (a part of [`node_rows`](Self::node_rows);
    /// may be empty when a node has more ranks than rows).
    pub fn rows(&self) -> Range<usize> {
        let local = self.local.rows();
        let base = self.node_rows.start;
        base + local.start - 1..base + local.end - 1
    }

    /// A mutable view of this rank's rows (global rows [`rows`](Self::rows)).
    #[inline]
    pub fn rows_mut(&mut self) -> Result<ArrayViewMut2<'_, f64>, MpiError> {
        self.local.rows_mut()
    }

    /// A read-only view of the node's block with its ghost rows: local row `i`
    /// is global row `node_rows().start + i - 1` (row 0 and the last row are the
    /// ghosts; at the global edges they stay zero). The rows next to this rank's
    /// block (and the ghost rows next to it) are current after
    /// [`exchange_halos`](Self::exchange_halos) that follows their writes; the
    /// whole block is current after a node barrier ([`NodeArray::barrier`], or an
    /// exchange with [`HaloSync::NodeBarrier`]).
    #[inline]
    pub fn local_view(&mut self) -> Result<ArrayView2<'_, f64>, MpiError> {
        self.local.view()
    }

    /// The node-shared array behind this one (shape `(node_rows + 2, cols)`).
    pub fn node_array(&self) -> &NodeArray<'c, f64, Ix2> {
        &self.local
    }

    /// How [`exchange_halos`](Self::exchange_halos) synchronises the node's ranks.
    pub fn halo_sync(&self) -> HaloSync {
        self.sync
    }

    /// Chooses how [`exchange_halos`](Self::exchange_halos) synchronises the node's
    /// ranks from the next exchange on. Every rank of the world must choose the same
    /// (as for any collective); switching between exchanges is fine.
    pub fn set_halo_sync(&mut self, sync: HaloSync) {
        self.sync = sync;
    }

    /// Refreshes the ghost rows and synchronises each rank with the ranks whose
    /// rows it reads (collective over the world).
    ///
    /// With [`HaloSync::Neighbours`] (the default), when this returns on a rank:
    /// - the rows its stencil reads are current: its own, the last row of the rank
    ///   above and the first row of the rank below (as written before *their*
    ///   calls), and the ghost rows next to its block (the neighbouring nodes'
    ///   boundary rows, sent by the node leaders over MPI);
    /// - the ranks that read its rows (the same neighbours) have finished whatever
    ///   they did before their calls, so it may overwrite its rows of an array they
    ///   read in the previous step (double buffering).
    ///
    /// Ranks of other blocks may still be in the previous step: to read rows
    /// beyond the neighbouring ones, call [`NodeArray::barrier`] (through
    /// [`node_array`](Self::node_array)) or use [`HaloSync::NodeBarrier`]. No rank
    /// waits for the whole node: each waits for at most two neighbours (and the
    /// ranks next to a ghost row for the leader), through step counters in a node
    /// segment named `{name}.halo` (see the guide's MPI chapter for the protocol
    /// and its memory ordering). Only node leaders send and receive, each with the
    /// neighbouring nodes' leaders; ranks of one node exchange nothing.
    ///
    /// With [`HaloSync::NodeBarrier`]: a node barrier, the leaders' exchange, a
    /// second node barrier (after it every rank's earlier writes are visible to
    /// every rank of the node).
    pub fn exchange_halos(&mut self) -> Result<(), MpiError> {
        let k = self.epoch.wrapping_add(1);
        self.epoch = k;
        let comm = self.local.comm();
        let (me, size) = (comm.node_rank(), comm.node_size());
        let (index, count) = (comm.node_index(), comm.node_count());
        let ghost = size; // the ghost counter's slot
        match self.sync {
            HaloSync::NodeBarrier => {
                // The counters advance too, so a later switch to `Neighbours` finds
                // them in step.
                self.steps.publish(me, k);
                comm.node_barrier();
                if count > 1 {
                    if comm.is_leader() {
                        self.swap_boundary_rows(|| {})?;
                        self.steps.publish(ghost, k);
                    }
                    comm.node_barrier();
                }
            }
            HaloSync::Neighbours => {
                // Who waits for whom: see `crate::sync::steps`.
                let plan =
                    steps::plan(me, size, self.node_rows.len(), index > 0, index + 1 < count);
                self.steps.publish(me, k);
                if plan.leader_exchanges {
                    let counters = &self.steps;
                    let before_below = || {
                        if let Some(slot) = plan.before_below {
                            counters.wait_for(slot, k);
                        }
                    };
                    // Borrows `local` mutably and `steps` shared: disjoint fields.
                    Self::swap_rows(&mut self.local, &self.node_rows, before_below)?;
                    self.steps.publish(ghost, k);
                }
                for slot in plan.then.into_iter().flatten() {
                    self.steps.wait_for(slot, k);
                }
            }
        }
        Ok(())
    }

    /// The leaders' part of an exchange (see [`swap_rows`](Self::swap_rows)).
    fn swap_boundary_rows(&mut self, before_below: impl FnOnce()) -> Result<(), MpiError> {
        Self::swap_rows(&mut self.local, &self.node_rows, before_below)
    }

    /// On a node leader: sends the node's first and last rows to the neighbouring
    /// nodes' leaders and receives their boundary rows into the ghost rows
    /// (non-blocking, straight from and into the segment), calling `before_below`
    /// before touching the last row and the ghost row below. The caller makes sure
    /// no rank of the node writes those rows (or reads the ghosts) meanwhile.
    fn swap_rows(
        local: &mut NodeArray<'c, f64, Ix2>,
        node_rows: &Range<usize>,
        before_below: impl FnOnce(),
    ) -> Result<(), MpiError> {
        let comm = local.comm();
        let (index, count) = (comm.node_index(), comm.node_count());
        let Some(leaders) = comm.leaders() else {
            return Ok(());
        };
        let n = node_rows.len();
        // Row views are pointers: references come into being only for the four
        // rows touched, and for the last row and the ghost below only after
        // `before_below` (their writer and reader may be busy until then).
        let all = local.view_all_mut()?;
        let (mut top, rest) = all.split_at(Axis(0), 1);
        let (mid, bottom) = rest.split_at(Axis(0), n);
        let mid = mid.view();
        fn row(v: ArrayView2<'_, f64>, i: usize) -> &[f64] {
            v.index_axis_move(Axis(0), i)
                .to_slice()
                .expect("node arrays are created in C order")
        }
        ::mpi::request::scope(|scope| {
            let mut pending = Vec::with_capacity(4);
            if index > 0 {
                let up = leaders.process_at_rank(index as i32 - 1);
                let top = top.as_slice_mut().expect("C order");
                pending.push(up.immediate_receive_into_with_tag(scope, top, TAG_DOWN));
                pending.push(up.immediate_send_with_tag(scope, row(mid, 0), TAG_UP));
            }
            if index + 1 < count {
                before_below();
                let down = leaders.process_at_rank(index as i32 + 1);
                let bottom = bottom.into_slice().expect("C order");
                pending.push(down.immediate_receive_into_with_tag(scope, bottom, TAG_UP));
                pending.push(down.immediate_send_with_tag(scope, row(mid, n - 1), TAG_DOWN));
            }
            for request in pending {
                request.wait();
            }
        });
        Ok(())
    }

    /// This rank's part of a reduction, reduced over the node, then across nodes,
    /// then handed to every rank of the node.
    fn reduce(&self, mine: f64, op: SystemOperation) -> f64 {
        let comm = self.local.comm();
        let root = comm.node().process_at_rank(0);
        let mut value = mine;
        if let Some(leaders) = comm.leaders() {
            let mut node_total = 0.0;
            root.reduce_into_root(&mine, &mut node_total, op);
            leaders.all_reduce_into(&node_total, &mut value, op);
        } else {
            root.reduce_into(&mine, op);
        }
        root.broadcast_into(&mut value);
        value
    }

    /// This rank's rows, read-only.
    fn my_rows(&mut self) -> Result<ArrayView2<'_, f64>, MpiError> {
        let rows = self.local.rows();
        Ok(self.local.view()?.slice_axis_move(Axis(0), rows.into()))
    }

    /// The sum of all elements (collective over the world; the same value on every
    /// rank). Each rank sums its own rows, so no barrier is needed first.
    pub fn sum(&mut self) -> Result<f64, MpiError> {
        let mine = self.my_rows()?.sum();
        Ok(self.reduce(mine, SystemOperation::sum()))
    }

    /// The largest element (collective over the world; `-inf` for an empty array;
    /// NaNs are skipped locally).
    pub fn max(&mut self) -> Result<f64, MpiError> {
        let mine = self.my_rows()?.fold(f64::NEG_INFINITY, |m, &x| m.max(x));
        Ok(self.reduce(mine, SystemOperation::max()))
    }

    /// Gathers the global array to world rank 0 (collective over the world):
    /// `Some(array)` there, `None` elsewhere. Node leaders send their blocks; the
    /// node's ranks wait (before, so their writes are in; after, so nobody writes
    /// while the leader reads).
    pub fn gather(&mut self) -> Result<Option<Array2<f64>>, MpiError> {
        self.local.barrier();
        let (rows, cols, count) = (self.rows, self.cols, self.local.comm().node_count());
        let n = self.node_rows.len();
        let comm = self.local.comm();
        let mut out = None;
        if let Some(leaders) = comm.leaders() {
            let view = self.local.view()?;
            let data = view.as_slice().expect("node arrays are created in C order");
            let mine = &data[cols..(n + 1) * cols];
            let root = leaders.process_at_rank(0);
            if leaders.rank() == 0 {
                // Sizes were checked against `Count` in `new`.
                let counts: Vec<Count> = (0..count)
                    .map(|k| (block(rows, count, k).len() * cols) as Count)
                    .collect();
                let displs: Vec<Count> = (0..count)
                    .map(|k| (block(rows, count, k).start * cols) as Count)
                    .collect();
                let mut all = vec![0.0f64; rows * cols];
                let mut parts = PartitionMut::new(&mut all[..], counts, &displs[..]);
                root.gather_varcount_into_root(mine, &mut parts);
                out =
                    Some(Array2::from_shape_vec((rows, cols), all).expect("rows * cols elements"));
            } else {
                root.gather_varcount_into(mine);
            }
        }
        self.local.barrier();
        Ok(out)
    }

    /// Gathers the array (see [`gather`](Self::gather)) and writes it on world rank 0
    /// to `path` as a plain `.npy` file; returns whether this rank wrote it.
    pub fn write_npy(&mut self, path: impl AsRef<Path>) -> Result<bool, MpiError> {
        let Some(all) = self.gather()? else {
            return Ok(false);
        };
        let path = path.as_ref();
        let io = |source| MpiError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        crate::segment::write_npy(&mut out, all.view()).map_err(io)?;
        out.flush().map_err(io)?;
        Ok(true)
    }
}
