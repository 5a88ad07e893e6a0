//! Node-shared and row-distributed arrays over MPI (feature `mpi`), on the crate's
//! public API and rsmpi's (and, for [`DistArray`]'s step counters, the crate's
//! futex wait and the segment's data pointer).
//!
//! MPI programs usually keep one copy of shared data per *rank* and exchange halos by
//! messages even between ranks of the same machine. Here the ranks of one node
//! ([`NodeComm`], split with `MPI_COMM_TYPE_SHARED`) share one ordinary segment
//! ([`NodeArray`]): one copy per node, each rank working in place on its own rows;
//! MPI carries only what crosses nodes ([`DistArray`]: halo rows between
//! neighbouring nodes, reductions, a gather).
//!
//! # Ownership and clean-up
//! A node's segment is created by the node's leader (node rank 0) and attached by
//! the others after the leader has published it (a [`DistArray`] has two per
//! node: its rows, and its ranks' step counters, `{name}.halo`). The leader's
//! handle owns it: when the arrays are dropped normally, the other ranks detach
//! first, then the leader removes the name. The segment is not persistent, so
//! after a crash (MPI aborts the whole job when a rank dies) nobody has it open any
//! more and `shmarray gc` ([`collect_garbage`](crate::admin::collect_garbage)) removes it.
//!
//! # Aliasing
//! Every rank is its own process with exactly one handle of its node's segment; the
//! handle is claimed at creation (a second handle in the same process fails with
//! [`Error::InUse`](crate::Error::InUse)), and views need `&mut self`, so inside a
//! process there is never more than one mutable view, and never a mutable and a
//! shared one. Other processes are outside Rust's aliasing model: what keeps ranks
//! from racing is the protocol (each rank writes only its own rows; rows of other
//! ranks are read only after a node barrier, or, for the rows next to a rank's
//! block, after [`DistArray::exchange_halos`], whose step counters order the
//! neighbours' writes before the reads with Release/Acquire), as for any segment
//! (see [`SharedArray`](crate::SharedArray)'s contract). A rank that breaks the
//! protocol reads torn or stale numbers, never invalid memory.

mod dist;
mod neighbours;
mod node_array;

use std::time::{SystemTime, UNIX_EPOCH};

use ::mpi::topology::{Color, SimpleCommunicator};
use ::mpi::traits::*;

/// The MPI bindings (rsmpi) the [`NodeComm`] communicators are made of.
pub use ::mpi as rsmpi;
pub use dist::{DistArray, HaloSync};
pub use node_array::NodeArray;

/// Environment variable (read by world rank 0, and broadcast) that splits each real
/// node into this many *pretend* nodes of consecutive node ranks, each with its own
/// segments: `SHMARRAY_MPI_PRETEND_NODES=2` with 4 ranks on one machine makes ranks
/// 0–1 and 2–3 two nodes, so the cross-node path runs on one machine. Unset, empty
/// or `1`: real nodes only.
pub const PRETEND_NODES_ENV: &str = "SHMARRAY_MPI_PRETEND_NODES";

/// Errors of the [`NodeComm`], [`NodeArray`] and [`DistArray`] operations.
///
/// ```no_run
/// // no_run: an MPI program is started by `mpirun`, which `cargo test --doc` is not.
/// use shmarray::mpi::{DistArray, MpiError, NodeComm};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let universe = shmarray::mpi::rsmpi::initialize().ok_or("MPI already initialised")?;
/// let nodes = NodeComm::new(&universe.world())?;
/// // Every node holds one or more rows: fewer rows than nodes is refused (on
/// // every rank alike, so no rank is left waiting in a collective).
/// match DistArray::new(&nodes, "tiny", (0, 8)) {
///     Err(MpiError::TooFewRows { rows, nodes: n }) => assert_eq!((rows, n), (0, nodes.node_count())),
///     other => panic!("expected TooFewRows, got {:?}", other.err()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MpiError {
    /// Creating, opening or viewing a node's segment failed.
    #[error(transparent)]
    Segment(#[from] crate::error::Error),
    /// The node's leader could not create the segment (its own rank reports why).
    #[error("the leader of node {node} could not create segment {name:?}")]
    LeaderFailed {
        /// The node's index.
        node: usize,
        /// The segment name.
        name: String,
    },
    /// [`PRETEND_NODES_ENV`] is not a whole number ≥ 1.
    #[error("{PRETEND_NODES_ENV}={value:?} on world rank 0: expected a whole number >= 1")]
    PretendNodes {
        /// The value found (on this rank).
        value: String,
    },
    /// A distributed array with fewer rows than nodes (each node holds at least one).
    #[error("{rows} rows cannot be split over {nodes} nodes (each node needs one or more)")]
    TooFewRows {
        /// Global rows asked for.
        rows: usize,
        /// Nodes in the job.
        nodes: usize,
    },
    /// A block too large for one MPI message count (`c_int`).
    #[error("{elements} elements do not fit an MPI count")]
    TooLarge {
        /// Elements in the block.
        elements: usize,
    },
    /// Writing an output file failed.
    #[error("write {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The job's ranks split into nodes: the world, this rank's node (ranks that share
/// memory, or a pretend node: see [`PRETEND_NODES_ENV`]), the communicator of the
/// node leaders, and a job id that makes segment names unique per job.
///
/// Made collectively by every rank of the world; drop it (and every array made with
/// it) before the `mpi::environment::Universe`, as any communicator.
///
/// ```no_run
/// use shmarray::mpi::rsmpi::traits::*;
/// use shmarray::mpi::NodeComm;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let universe = shmarray::mpi::rsmpi::initialize().ok_or("MPI already initialised")?;
/// let nodes = NodeComm::new(&universe.world())?;
/// println!(
///     "world rank {} is rank {} of {} on node {} of {}",
///     nodes.world().rank(),
///     nodes.node_rank(),
///     nodes.node_size(),
///     nodes.node_index(),
///     nodes.node_count()
/// );
/// # Ok(()) }
/// ```
pub struct NodeComm {
    world: SimpleCommunicator,
    node: SimpleCommunicator,
    leaders: Option<SimpleCommunicator>,
    node_index: usize,
    node_count: usize,
    pretend: usize,
    job_id: u64,
}

impl NodeComm {
    /// Splits `world` into nodes (collective over `world`): real nodes with
    /// `MPI_COMM_TYPE_SHARED`, each cut into [`PRETEND_NODES_ENV`] pretend nodes if
    /// set (as world rank 0 sees it). Node ranks follow world ranks; world rank 0 is
    /// the leader of node 0; nodes are numbered in the order of their leaders'
    /// world ranks.
    pub fn new(world: &SimpleCommunicator) -> Result<NodeComm, MpiError> {
        let world = world.duplicate();
        let wrank = world.rank();
        let root = world.process_at_rank(0);

        // World rank 0 decides the pretend split and the job id for everyone: no
        // two ranks can disagree (mpirun need not forward the environment).
        let raw = std::env::var(PRETEND_NODES_ENV).unwrap_or_default();
        let mut params = [0u64; 2];
        if wrank == 0 {
            params[0] = match raw.trim() {
                "" => 1,
                v => v.parse::<u64>().ok().filter(|&n| n >= 1).unwrap_or(0),
            };
            params[1] = fresh_job_id();
        }
        root.broadcast_into(&mut params[..]);
        if params[0] == 0 {
            return Err(MpiError::PretendNodes { value: raw });
        }
        let job_id = params[1];

        let shared = world.split_shared(wrank);
        let (node, pretend) = if params[0] > 1 {
            let size = shared.size() as u64;
            let parts = params[0].min(size);
            let color = shared.rank() as u64 * parts / size;
            let color = Color::with_value(color as i32);
            let node = shared
                .split_by_color_with_key(color, shared.rank())
                .expect("a defined colour always gives a communicator");
            (node, parts as usize)
        } else {
            (shared, 1)
        };
        let leader = node.rank() == 0;
        let color = if leader {
            Color::with_value(0)
        } else {
            Color::undefined()
        };
        let leaders = world.split_by_color_with_key(color, wrank);
        let mut where_ = [0i32; 2];
        if let Some(l) = &leaders {
            where_ = [l.rank(), l.size()];
        }
        node.process_at_rank(0).broadcast_into(&mut where_[..]);
        Ok(NodeComm {
            world,
            node,
            leaders,
            node_index: where_[0] as usize,
            node_count: where_[1] as usize,
            pretend,
            job_id,
        })
    }

    /// The whole job (a duplicate of the communicator given to [`new`](Self::new)).
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// The ranks of this node.
    pub fn node(&self) -> &SimpleCommunicator {
        &self.node
    }

    /// The node leaders (node rank 0 of every node), ranked by node index; `None`
    /// on ranks that do not lead a node.
    pub fn leaders(&self) -> Option<&SimpleCommunicator> {
        self.leaders.as_ref()
    }

    /// This rank's node, `0..node_count()`.
    pub fn node_index(&self) -> usize {
        self.node_index
    }

    /// Number of nodes in the job.
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    /// This rank's rank in its node.
    pub fn node_rank(&self) -> usize {
        self.node.rank() as usize
    }

    /// Number of ranks in this node.
    pub fn node_size(&self) -> usize {
        self.node.size() as usize
    }

    /// Whether this rank leads its node (creates and owns the node's segments).
    pub fn is_leader(&self) -> bool {
        self.leaders.is_some()
    }

    /// Into how many pretend nodes each real node was cut (1: none).
    pub fn pretend_nodes(&self) -> usize {
        self.pretend
    }

    /// The job id chosen by world rank 0 (process id and time), the same on every rank.
    pub fn job_id(&self) -> u64 {
        self.job_id
    }

    /// The segment name of array `name` on this node: `{name}-{job id}-n{node}`.
    pub fn segment_name(&self, name: &str) -> String {
        format!("{name}-{:012x}-n{}", self.job_id, self.node_index)
    }

    /// Waits for every rank of this node.
    pub fn node_barrier(&self) {
        self.node.barrier();
    }
}

impl std::fmt::Debug for NodeComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeComm")
            .field("world_rank", &self.world.rank())
            .field("world_size", &self.world.size())
            .field("node_index", &self.node_index)
            .field("node_count", &self.node_count)
            .field("node_rank", &self.node_rank())
            .field("node_size", &self.node_size())
            .field("pretend_nodes", &self.pretend)
            .field("job_id", &format_args!("{:012x}", self.job_id))
            .finish()
    }
}

/// A job id unique on this machine at this time: world rank 0's pid and the clock.
fn fresh_job_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // 48 bits: pid in the high 22, the clock's low 26 bits of microseconds below.
    ((u64::from(std::process::id()) & 0x3f_ffff) << 26) | ((nanos / 1000) & 0x3ff_ffff)
}

/// Balanced block `part` of `parts` over `0..len`: the first `len % parts` blocks
/// have one more element.
pub(crate) fn block(len: usize, parts: usize, part: usize) -> std::ops::Range<usize> {
    let start = |p: usize| len / parts * p + p.min(len % parts);
    start(part)..start(part + 1)
}

#[cfg(test)]
mod tests {
    use super::block;

    #[test]
    fn blocks_cover_in_order() {
        for len in 0..40 {
            for parts in 1..9 {
                let mut next = 0;
                for p in 0..parts {
                    let b = block(len, parts, p);
                    assert_eq!(b.start, next);
                    assert!(b.len() == len / parts || b.len() == len / parts + 1);
                    next = b.end;
                }
                assert_eq!(next, len);
            }
        }
    }
}
