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

use super::{block, MpiError, NodeArray, NodeComm};

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
/// see each other's rows in the shared segment and exchange nothing. Reductions
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
    rows: usize,
    cols: usize,
    node_rows: Range<usize>,
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
        Ok(DistArray {
            local,
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
    /// ghosts; at the global edges they stay zero). Rows of other ranks, and the
    /// ghosts, are current after [`exchange_halos`](Self::exchange_halos) (or a
    /// node barrier) that follows their writes.
    #[inline]
    pub fn local_view(&mut self) -> Result<ArrayView2<'_, f64>, MpiError> {
        self.local.view()
    }

    /// The node-shared array behind this one (shape `(node_rows + 2, cols)`).
    pub fn node_array(&self) -> &NodeArray<'c, f64, Ix2> {
        &self.local
    }

    /// Refreshes the ghost rows (collective over the world): waits for every rank of
    /// the node to finish writing; the node leaders send their first and last rows to
    /// the neighbouring nodes' leaders and receive the neighbours' boundary rows into
    /// the ghost rows; a second node barrier publishes them to the node. With one
    /// node there is nothing to exchange and one barrier suffices.
    pub fn exchange_halos(&mut self) -> Result<(), MpiError> {
        let comm = self.local.comm();
        comm.node_barrier();
        let (index, count) = (comm.node_index(), comm.node_count());
        if count == 1 {
            return Ok(());
        }
        if let Some(leaders) = comm.leaders() {
            let (n, cols) = (self.node_rows.len(), self.cols);
            // The other ranks of the node wait at the barrier below: the leader alone
            // touches the segment now.
            let mut all = self.local.view_all_mut()?;
            let data = all
                .as_slice_mut()
                .expect("node arrays are created in C order");
            let (top, rest) = data.split_at_mut(cols);
            let (mid, bottom) = rest.split_at_mut(n * cols);
            let (first, last) = (&mid[..cols], &mid[(n - 1) * cols..]);
            ::mpi::request::scope(|scope| {
                let mut pending = Vec::with_capacity(4);
                if index > 0 {
                    let up = leaders.process_at_rank(index as i32 - 1);
                    pending.push(up.immediate_receive_into_with_tag(scope, top, TAG_DOWN));
                    pending.push(up.immediate_send_with_tag(scope, first, TAG_UP));
                }
                if index + 1 < count {
                    let down = leaders.process_at_rank(index as i32 + 1);
                    pending.push(down.immediate_receive_into_with_tag(scope, bottom, TAG_UP));
                    pending.push(down.immediate_send_with_tag(scope, last, TAG_DOWN));
                }
                for request in pending {
                    request.wait();
                }
            });
        }
        comm.node_barrier();
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
