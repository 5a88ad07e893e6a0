//! MPI tests (feature `mpi`; `harness = false`). Run as a normal test:
//!
//! ```text
//! cargo build --features mpi --example mpi_heat   # the heat cases run the example
//! cargo test --features mpi --test mpi
//! ```
//!
//! Without `OMPI_COMM_WORLD_SIZE` in its environment this binary is the *driver*:
//! it launches itself (and the `mpi_heat` example) under `mpirun` for each case,
//! with a watchdog, and checks from outside what only the outside can see (segments
//! in `/dev/shm` gone after a clean end, left after a crash and removed by `gc`, the
//! `.npy` output read back with numpy). Launched by mpirun, it is a *rank* and runs
//! the case named in `SHMARRAY_MPI_TEST_CASE`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mpi::traits::*;
use shmarray::ndarray::{Array2, Ix2};
use shmarray::{
    admin::{collect_garbage, inspect, Usage},
    format::ObjectKind,
    mpi::{DistArray, HaloSync, MpiError, NodeArray, NodeComm, PRETEND_NODES_ENV},
    Namespace,
};

const CASE_ENV: &str = "SHMARRAY_MPI_TEST_CASE";
const PREFIX_ENV: &str = "SHMARRAY_MPI_TEST_PREFIX";
const NPY_ENV: &str = "SHMARRAY_MPI_TEST_NPY";
/// Set by the driver when each pretend node has its own segment directory
/// (`{base}/node{k}`, chosen per rank by `.ci/pretend-node-dir`): the base.
const NODE_DIRS_ENV: &str = "SHMARRAY_MPI_TEST_NODE_DIRS";

fn main() {
    if std::env::var_os("OMPI_COMM_WORLD_SIZE").is_some() || std::env::var_os(CASE_ENV).is_some() {
        rank_main();
    } else {
        driver();
    }
}

// ---------------------------------------------------------------------------------
// The rank side.

fn rank_main() {
    let universe = mpi::initialize().expect("MPI initialises once");
    let world = universe.world();
    // A failed assertion in one rank must end the job, not leave the others in a
    // collective: abort the whole MPI job from the panic hook.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        mpi::topology::SimpleCommunicator::world().abort(101);
    }));
    let case = std::env::var(CASE_ENV).unwrap_or_default();
    let prefix = std::env::var(PREFIX_ENV).expect("the driver sets the prefix");
    match case.as_str() {
        "nodes" => case_nodes(&world, &prefix),
        "dist" => case_dist(&world, &prefix),
        "crash" => case_crash(&world, &prefix),
        "halo" => case_halo(&world, &prefix),
        "crash-steps" => case_crash_steps(&world, &prefix),
        other => panic!("unknown case {other:?}"),
    }
}

/// Segments in the namespace directory whose names start with `prefix`.
fn segments(prefix: &str) -> Vec<String> {
    let ns = Namespace::default_dir().expect("namespace");
    let mut v: Vec<String> = ns
        .entries()
        .expect("list")
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// With one segment directory per node: checks that this rank's directory is its
/// node's and that its node's leader finds there only its own node's segments of
/// `prefix`; returns how many segments of `prefix` the node's directory holds
/// (on leaders; 0 elsewhere). Without: world rank 0's count of the shared directory.
fn node_segments(nodes: &NodeComm, prefix: &str) -> usize {
    match std::env::var_os(NODE_DIRS_ENV) {
        Some(base) => {
            let mine = PathBuf::from(base).join(format!("node{}", nodes.node_index()));
            let dir = std::env::var_os(shmarray::admin::DIR_ENV).map(PathBuf::from);
            assert_eq!(
                dir.as_ref(),
                Some(&mine),
                "this rank's SHMARRAY_DIR is its node's"
            );
            if !nodes.is_leader() {
                return 0;
            }
            let segs = segments(prefix);
            let suffix = format!("-n{}", nodes.node_index());
            for s in &segs {
                assert!(
                    s.ends_with(&suffix),
                    "{s} in node {}'s directory",
                    nodes.node_index()
                );
            }
            segs.len()
        }
        None if nodes.world().rank() == 0 => segments(prefix).len(),
        None => 0,
    }
}

/// The sum of `x` over the world, on world rank 0.
fn sum_to_root(world: &mpi::topology::SimpleCommunicator, x: usize) -> usize {
    let root = world.process_at_rank(0);
    let x = x as u64;
    if world.rank() == 0 {
        let mut total = 0u64;
        root.reduce_into_root(&x, &mut total, mpi::collective::SystemOperation::sum());
        total as usize
    } else {
        root.reduce_into(&x, mpi::collective::SystemOperation::sum());
        0
    }
}

/// Node split and one node-shared segment per (pretend) node.
fn case_nodes(world: &mpi::topology::SimpleCommunicator, prefix: &str) {
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    let nodes = NodeComm::new(world).expect("node split");
    let pretend: usize = std::env::var(PRETEND_NODES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // One real node here: pretend nodes are consecutive blocks of world ranks.
    let want_nodes = pretend.min(size);
    assert_eq!(nodes.node_count(), want_nodes, "{nodes:?}");
    let want_node = rank * want_nodes / size;
    assert_eq!(nodes.node_index(), want_node, "{nodes:?}");
    assert_eq!(nodes.is_leader(), nodes.node_rank() == 0);
    assert_eq!(nodes.leaders().is_some(), nodes.is_leader());
    let mut ids = [nodes.job_id()];
    world.process_at_rank(0).broadcast_into(&mut ids[..]);
    assert_eq!(ids[0], nodes.job_id(), "one job id everywhere");

    let rows = 13;
    let mut a = NodeArray::<f64, Ix2>::create(&nodes, &format!("{prefix}-node"), (rows, 3))
        .expect("node array");
    assert_eq!(a.rows(), a.rows_of(nodes.node_rank()));
    // Rows of the node's ranks: disjoint, in order, covering axis 0.
    let mut next = 0;
    for r in 0..nodes.node_size() {
        let b = a.rows_of(r);
        assert_eq!(b.start, next);
        next = b.end;
    }
    assert_eq!(next, rows);
    let me = (rank + 1) as f64;
    a.rows_mut().expect("my rows").fill(me);
    a.barrier();
    // Every rank sees every other rank of its node in place: one copy per node.
    {
        let node_first_world_rank = rank - nodes.node_rank();
        let blocks: Vec<_> = (0..nodes.node_size()).map(|r| a.rows_of(r)).collect();
        let v = a.view().expect("view");
        for (r, rows) in blocks.into_iter().enumerate() {
            let want = (node_first_world_rank + r + 1) as f64;
            for i in rows {
                assert!(v.row(i).iter().all(|&x| x == want), "row {i} of rank {r}");
            }
        }
    }
    // A second handle of the segment in this process is refused (the claim).
    let name = a.name().expect("named").to_string();
    assert!(matches!(
        shmarray::SharedArray::<f64, Ix2>::open(&name),
        Err(shmarray::Error::InUse { .. })
    ));
    // The segment lives in this rank's directory (its node's, with node dirs).
    let ns = Namespace::default_dir().expect("namespace");
    let dir = ns.directories()[0].path.clone();
    assert_eq!(a.path().expect("a file").parent(), Some(dir.as_path()));
    world.barrier();
    if nodes.is_leader() {
        for s in segments(prefix) {
            let info = inspect(&ns, &s).expect("inspect");
            assert_eq!(info.kind(), ObjectKind::Array);
            assert_eq!(info.usage, Usage::InUse, "{s}");
            assert!(!info.is_persistent());
        }
    }
    let total = sum_to_root(world, node_segments(&nodes, prefix));
    if rank == 0 {
        assert_eq!(total, want_nodes, "one segment per node");
        println!("SEGMENTS {total}");
    }
    world.barrier();
    drop(a);
    world.barrier();
    let total = sum_to_root(world, node_segments(&nodes, prefix));
    if rank == 0 {
        assert_eq!(total, 0, "removed at the end");
        println!("CASE nodes ok");
    }
}

/// The value of global element (i, j) in the dist case.
fn f(i: usize, j: usize) -> f64 {
    (i * 100 + j) as f64
}

/// Halo exchange, reductions, gather and .npy output of a distributed array.
fn case_dist(world: &mpi::topology::SimpleCommunicator, prefix: &str) {
    let rank = world.rank();
    let nodes = NodeComm::new(world).expect("node split");
    let (rows, cols) = (23, 5);

    // Fewer rows than nodes: refused on every rank, before any collective.
    if nodes.node_count() > 1 {
        let e = DistArray::new(&nodes, &format!("{prefix}-few"), (1, cols)).unwrap_err();
        assert!(matches!(e, MpiError::TooFewRows { .. }), "{e}");
    }

    let mut a = DistArray::new(&nodes, &format!("{prefix}-dist"), (rows, cols)).expect("dist");
    assert_eq!(a.global_shape(), (rows, cols));
    let mine = a.rows();
    assert!(mine.start >= a.node_rows().start && mine.end <= a.node_rows().end);
    let node_rows = a.node_rows();
    let fill = |a: &mut DistArray<'_>, plus: f64| {
        for (k, mut row) in a.rows_mut().expect("rows").outer_iter_mut().enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = f(mine.start + k, j) + plus;
            }
        }
    };
    // The whole node block, ghosts included.
    let check_all = |a: &mut DistArray<'_>, plus: f64| {
        let local = a.local_view().expect("local view");
        assert_eq!(local.nrows(), node_rows.len() + 2);
        for (l, row) in local.outer_iter().enumerate() {
            let g = (node_rows.start + l) as isize - 1;
            let want = |j: usize| {
                if g < 0 || g as usize >= rows {
                    0.0 // ghost rows at the global edges stay zero
                } else {
                    f(g as usize, j) + plus
                }
            };
            for (j, &x) in row.iter().enumerate() {
                assert_eq!(
                    x,
                    want(j),
                    "node {} local row {l} col {j}",
                    nodes.node_index()
                );
            }
        }
    };
    // Node barriers: after the exchange the whole node block is current.
    a.set_halo_sync(HaloSync::NodeBarrier);
    fill(&mut a, 0.5);
    a.exchange_halos().expect("halos");
    check_all(&mut a, 0.5);
    a.node_array().barrier(); // everyone has read before anyone writes again
                              // Neighbour counters (the default): the rows next to each rank's block are
                              // current; a node barrier after the exchange makes the whole block current.
    a.set_halo_sync(HaloSync::Neighbours);
    fill(&mut a, 0.0);
    a.exchange_halos().expect("halos");
    a.node_array().barrier();
    check_all(&mut a, 0.0);
    // Reductions: exact (integers well inside f64's range).
    let want_sum: f64 = (0..rows)
        .flat_map(|i| (0..cols).map(move |j| f(i, j)))
        .sum();
    assert_eq!(a.sum().expect("sum"), want_sum);
    assert_eq!(a.max().expect("max"), f(rows - 1, cols - 1));

    // The data segment and its step counters (`.halo`), per node.
    let total = sum_to_root(world, node_segments(&nodes, prefix));
    if rank == 0 {
        assert_eq!(total, 2 * nodes.node_count(), "data and counters per node");
    }

    // Gather and the .npy file (the driver reads it back with numpy).
    let all = a.gather().expect("gather");
    if rank == 0 {
        let all = all.expect("rank 0 gets the array");
        assert_eq!(all, Array2::from_shape_fn((rows, cols), |(i, j)| f(i, j)));
    } else {
        assert!(all.is_none());
    }
    let npy = std::env::var(NPY_ENV).expect("the driver names the output");
    let wrote = a.write_npy(&npy).expect("write npy");
    assert_eq!(wrote, rank == 0);
    drop(a);
    world.barrier();
    let total = sum_to_root(world, node_segments(&nodes, prefix));
    if rank == 0 {
        assert_eq!(total, 0, "removed at the end");
        println!("CASE dist ok");
    }
}

/// The value of global element (i, j) at step `s` of the halo case.
fn g(i: usize, j: usize, s: usize) -> f64 {
    (s * 1_000_000 + i * 1000 + j) as f64
}

/// The contract of `exchange_halos`, step after step, on a double-buffered pair
/// (as a Jacobi solver uses it): after step `s`'s exchange of `arrays[s % 2]`, the
/// rows this rank's stencil reads (its own, the rows next to its block, ghosts)
/// hold step `s`'s values. Every third step synchronises with node barriers, the
/// others with neighbour counters, so switching is covered too. Small blocks,
/// rowless ranks and many steps give races a chance to show.
fn case_halo(world: &mpi::topology::SimpleCommunicator, prefix: &str) {
    let nodes = NodeComm::new(world).expect("node split");
    let rows: usize = std::env::var("SHMARRAY_MPI_TEST_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let (cols, steps) = (3, 600);
    let mut arrays = [
        DistArray::new(&nodes, &format!("{prefix}-a"), (rows, cols)).expect("a"),
        DistArray::new(&nodes, &format!("{prefix}-b"), (rows, cols)).expect("b"),
    ];
    assert_eq!(arrays[0].halo_sync(), HaloSync::Neighbours, "the default");
    let mine = arrays[0].rows();
    let node_rows = arrays[0].node_rows();
    let mut checked = 0usize;
    for s in 0..steps {
        let a = &mut arrays[s % 2];
        a.set_halo_sync(if s % 3 == 2 {
            HaloSync::NodeBarrier
        } else {
            HaloSync::Neighbours
        });
        for (k, mut row) in a.rows_mut().expect("rows").outer_iter_mut().enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = g(mine.start + k, j, s);
            }
        }
        a.exchange_halos().expect("halos");
        if mine.is_empty() {
            continue; // a rowless rank reads nothing
        }
        let local = a.local_view().expect("local view");
        // Local row l is global row node_rows.start + l - 1.
        let first = mine.start - node_rows.start; // local row above the block
        for l in first..=mine.end - node_rows.start + 1 {
            let gi = (node_rows.start + l) as isize - 1;
            for j in 0..cols {
                let want = if gi < 0 || gi as usize >= rows {
                    0.0
                } else {
                    g(gi as usize, j, s)
                };
                let got = local[(l, j)];
                assert_eq!(got, want, "step {s}: local row {l} col {j} on {nodes:?}");
                checked += 1;
            }
        }
    }
    let total = sum_to_root(world, checked);
    drop(arrays);
    world.barrier();
    if world.rank() == 0 {
        assert!(total > 0);
        println!("CASE halo ok ({total} elements checked)");
    }
}

/// A rank killed (SIGKILL) in the middle of the steps: its neighbours wait on its
/// step counter, and mpirun ends the job.
fn case_crash_steps(world: &mpi::topology::SimpleCommunicator, prefix: &str) {
    let nodes = NodeComm::new(world).expect("node split");
    let mut a = DistArray::new(&nodes, &format!("{prefix}-steps"), (16, 4)).expect("dist");
    let victim = world.size() / 2 - 1; // the last rank of node 0 with two nodes
    for s in 0.. {
        if s == 20 && world.rank() == victim {
            println!("KILLING rank {victim}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &std::process::id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(30));
        }
        a.rows_mut().expect("rows").fill(s as f64);
        a.exchange_halos().expect("halos");
    }
}

/// A job that dies with its segments attached: MPI aborts every rank.
fn case_crash(world: &mpi::topology::SimpleCommunicator, prefix: &str) {
    let nodes = NodeComm::new(world).expect("node split");
    let a = NodeArray::<f64, Ix2>::create(&nodes, &format!("{prefix}-crash"), (8, 8))
        .expect("node array");
    world.barrier();
    if world.rank() == 0 {
        println!("SEGMENTS {}", segments(prefix).join(" "));
        use std::io::Write;
        let _ = std::io::stdout().flush();
        world.abort(7);
    }
    // The other ranks wait to be killed by the abort.
    std::thread::sleep(Duration::from_secs(30));
    drop(a);
}

// ---------------------------------------------------------------------------------
// The driver side.

/// mpirun with what this machine (root, 2 cores, a container) needs.
fn mpirun(np: usize, pretend: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--oversubscribe",
        "--bind-to",
        "none",
        "-np",
        &np.to_string(),
    ])
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    .env(PRETEND_NODES_ENV, pretend.to_string())
    .stdin(Stdio::null());
    c
}

/// One segment directory per pretend node, `{base}/node{k}` (mode 0700), removed
/// on drop; `.ci/pretend-node-dir` points each rank's `SHMARRAY_DIR` at its node's.
struct NodeDirs {
    base: PathBuf,
    nodes: usize,
}

impl NodeDirs {
    fn new(tag: &str, nodes: usize) -> NodeDirs {
        use std::os::unix::fs::DirBuilderExt;
        let base = PathBuf::from(format!(
            "/dev/shm/shmarray-test-{}-dirs{tag}",
            std::process::id()
        ));
        let dirs = NodeDirs { base, nodes };
        let mut b = std::fs::DirBuilder::new();
        b.mode(0o700);
        b.create(&dirs.base).expect("base directory");
        for k in 0..nodes {
            b.create(dirs.node(k)).expect("node directory");
        }
        dirs
    }

    fn node(&self, k: usize) -> PathBuf {
        self.base.join(format!("node{k}"))
    }

    /// Files left in the node directories.
    fn leftovers(&self) -> Vec<String> {
        (0..self.nodes)
            .flat_map(|k| {
                std::fs::read_dir(self.node(k))
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| format!("node{k}/{}", e.file_name().to_string_lossy()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for NodeDirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// mpirun running `program` on `np` ranks cut into `pretend` nodes, each with its
/// own segment directory when `dirs` is given (through `.ci/pretend-node-dir`).
fn launch(np: usize, pretend: usize, dirs: Option<&NodeDirs>, program: &Path) -> Command {
    let mut c = mpirun(np, pretend);
    if let Some(d) = dirs {
        c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/pretend-node-dir"))
            .arg(&d.base)
            .env(NODE_DIRS_ENV, &d.base);
    }
    c.arg(program);
    c
}

/// Node directories for a job with `pretend` nodes (none for one node).
fn node_dirs(tag: &str, np: usize, pretend: usize) -> Option<NodeDirs> {
    (pretend > 1).then(|| NodeDirs::new(tag, pretend.min(np)))
}

/// Checks that the job left nothing: no segment of `prefix` in /dev/shm, nothing
/// in the node directories.
fn nothing_left(prefix: &str, dirs: Option<&NodeDirs>) -> Result<(), String> {
    let mut left = common::leftovers(prefix);
    if let Some(d) = dirs {
        left.extend(d.leftovers());
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("left behind: {left:?}"))
    }
}

/// Processes still running with `prefix` in their environment (ranks of a job
/// that should have ended).
fn ranks_alive(prefix: &str) -> Vec<u32> {
    let var = format!("{PREFIX_ENV}={prefix}");
    let mut alive = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A zombie's environ reads empty: only live processes count.
        if let Ok(env) = std::fs::read(e.path().join("environ")) {
            if env.split(|&b| b == 0).any(|v| v == var.as_bytes()) {
                alive.push(pid);
            }
        }
    }
    alive
}

/// Runs `c` with a deadline; returns its output.
fn run(mut c: Command, what: &str) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start mpirun ({e}); install openmpi-bin"));
    let out_pipe = child.stdout.take().expect("stdout");
    let err_pipe = child.stderr.take().expect("stderr");
    let read = |mut p: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = p.read_to_end(&mut s);
            s
        })
    };
    let (o, e) = (read(Box::new(out_pipe)), read(Box::new(err_pipe)));
    let status = common::wait_with_deadline(&mut child, Duration::from_secs(120));
    Output {
        status,
        stdout: o.join().expect("reader"),
        stderr: e.join().expect("reader"),
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Driver {
    passed: usize,
    failed: Vec<String>,
}

impl Driver {
    fn case(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        let t = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err("panicked".into()));
        match r {
            Ok(()) => {
                self.passed += 1;
                println!("test {name} ... ok ({:.1?})", t.elapsed());
            }
            Err(e) => {
                println!("test {name} ... FAILED ({:.1?})\n{e}", t.elapsed());
                self.failed.push(name.to_string());
            }
        }
    }
}

/// After a crashed job: each node directory holds `per_node` segments of the
/// job, no longer attached, and `gc` of that directory removes exactly them.
fn gc_each_node(dirs: &NodeDirs, per_node: usize, o: &Output) -> Result<(), String> {
    for k in 0..dirs.nodes {
        let ns = Namespace::at(dirs.node(k)).map_err(|e| e.to_string())?;
        let left: Vec<String> = ns
            .entries()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .collect();
        if left.len() != per_node || !left.iter().all(|n| n.ends_with(&format!("-n{k}"))) {
            return Err(format!(
                "expected node {k}'s {per_node} segment(s) left in its directory, found {left:?}\n{}",
                text(o)
            ));
        }
        let report = collect_garbage(&ns).map_err(|e| e.to_string())?;
        if report.removed.len() != per_node {
            return Err(format!("gc of node {k} removed {:?}", report.removed));
        }
    }
    Ok(())
}

fn expect_ok(o: &Output, marker: &str) -> Result<(), String> {
    if o.status.success() && String::from_utf8_lossy(&o.stdout).contains(marker) {
        Ok(())
    } else {
        Err(text(o))
    }
}

/// Reads `path` with numpy (if python3 has it) and compares it with the dist case's
/// values; without numpy, parses the NPY 1.0 header by hand.
fn check_npy(path: &Path, rows: usize, cols: usize) -> Result<(), String> {
    let script = format!(
        "import numpy as np\n\
         a = np.load({path:?})\n\
         want = np.fromfunction(lambda i, j: i * 100 + j, ({rows}, {cols}))\n\
         assert a.dtype == np.float64 and a.shape == ({rows}, {cols}), (a.dtype, a.shape)\n\
         assert (a == want).all()\n\
         print('numpy ok')",
        path = path.display().to_string()
    );
    let has_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_numpy {
        let o = Command::new("python3")
            .args(["-c", &script])
            .output()
            .map_err(|e| e.to_string())?;
        return if o.status.success() {
            Ok(())
        } else {
            Err(text(&o))
        };
    }
    println!("  (numpy not available: checking the .npy file by hand)");
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + hl]);
    if !header.contains(&format!("'shape': ({rows}, {cols})")) || !header.contains("'<f8'") {
        return Err(format!("unexpected header {header}"));
    }
    let data: Vec<f64> = bytes[10 + hl..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
        .collect();
    let want: Vec<f64> = (0..rows * cols).map(|x| f(x / cols, x % cols)).collect();
    if data == want {
        Ok(())
    } else {
        Err("data differs".into())
    }
}

fn driver() {
    let mut d = Driver {
        passed: 0,
        failed: Vec::new(),
    };
    let pid = std::process::id();
    let prefix = |tag: &str| format!("shmarray-test-{pid}-mpi{tag}");
    let me = std::env::current_exe().expect("current exe");
    // This binary as a rank running `case`.
    let self_case = |np: usize, pretend: usize, dirs: Option<&NodeDirs>, case: &str, p: &str| {
        let mut c = launch(np, pretend, dirs, &me);
        c.env(CASE_ENV, case).env(PREFIX_ENV, p);
        c
    };

    for (np, pretend) in [(1, 1), (2, 1), (2, 2), (4, 1), (4, 2), (3, 2)] {
        d.case(&format!("nodes np={np} pretend={pretend}"), || {
            let tag = format!("n{np}{pretend}");
            let (p, dirs) = (prefix(&tag), node_dirs(&tag, np, pretend));
            let o = run(self_case(np, pretend, dirs.as_ref(), "nodes", &p), "nodes");
            expect_ok(&o, "CASE nodes ok")?;
            let stdout = String::from_utf8_lossy(&o.stdout);
            let seen: usize = stdout
                .lines()
                .find_map(|l| l.strip_prefix("SEGMENTS "))
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0);
            if seen != pretend.min(np) {
                return Err(format!("{seen} segments while running\n{}", text(&o)));
            }
            nothing_left(&p, dirs.as_ref())
        });
    }

    for (np, pretend) in [(1, 1), (2, 2), (4, 2), (4, 4), (4, 1)] {
        d.case(&format!("dist np={np} pretend={pretend}"), || {
            let tag = format!("d{np}{pretend}");
            let (p, dirs) = (prefix(&tag), node_dirs(&tag, np, pretend));
            let npy = std::env::temp_dir().join(format!("{p}.npy"));
            let _cleanup = common::ShmFile(npy.clone());
            let mut c = self_case(np, pretend, dirs.as_ref(), "dist", &p);
            c.env(NPY_ENV, &npy);
            let o = run(c, "dist");
            expect_ok(&o, "CASE dist ok")?;
            check_npy(&npy, 23, 5)?;
            nothing_left(&p, dirs.as_ref())
        });
    }

    // Rows per job: 9 over 4 ranks; 10 over 2 nodes of 3; 3 rows for 5 ranks (two
    // rowless); 4 rows over 4 nodes of one rank; 5 rows over 2 nodes of 4 ranks
    // (node 1 has two rows for four ranks).
    for (np, pretend, rows) in [(4, 1, 9), (6, 2, 10), (5, 1, 3), (4, 4, 4), (8, 2, 5)] {
        d.case(
            &format!("halo rows np={np} pretend={pretend} rows={rows}"),
            || {
                let tag = format!("h{np}{pretend}");
                let (p, dirs) = (prefix(&tag), node_dirs(&tag, np, pretend));
                let mut c = self_case(np, pretend, dirs.as_ref(), "halo", &p);
                c.env("SHMARRAY_MPI_TEST_ROWS", rows.to_string());
                let o = run(c, "halo");
                expect_ok(&o, "CASE halo ok")?;
                nothing_left(&p, dirs.as_ref())
            },
        );
    }

    d.case("crash leaves segments for gc", || {
        // Node directories of its own, so gc touches nothing but this job's segments.
        let p = prefix("c");
        let dirs = NodeDirs::new("crash", 2);
        let o = run(self_case(2, 2, Some(&dirs), "crash", &p), "crash");
        if o.status.success() {
            return Err(format!("the aborted job exited 0\n{}", text(&o)));
        }
        gc_each_node(&dirs, 1, &o)
    });

    d.case("a rank killed between steps ends the job", || {
        let p = prefix("k");
        let dirs = NodeDirs::new("kill", 2);
        let t = Instant::now();
        let o = run(
            self_case(4, 2, Some(&dirs), "crash-steps", &p),
            "crash-steps",
        );
        let out = String::from_utf8_lossy(&o.stdout);
        if o.status.success() || !out.contains("KILLING") {
            return Err(format!(
                "expected a killed rank and a failed job\n{}",
                text(&o)
            ));
        }
        let alive = ranks_alive(&p);
        if !alive.is_empty() {
            return Err(format!(
                "ranks still running after {:?}: {alive:?}",
                t.elapsed()
            ));
        }
        // Each node: the array and its step counters, no longer attached.
        gc_each_node(&dirs, 2, &o)
    });

    // The heat example (built by `cargo test --features mpi`, or by hand).
    let example = me
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("examples").join("mpi_heat"))
        .expect("target dir");
    let heat = |np: usize, pretend: usize, tag: &str, args: &[&str], want: &str| {
        if !example.exists() {
            return Err(format!(
                "{} missing: cargo build --features mpi --example mpi_heat",
                example.display()
            ));
        }
        let dirs = node_dirs(tag, np, pretend);
        let mut c = launch(np, pretend, dirs.as_ref(), &example);
        c.args(args);
        let o = run(c, "mpi_heat");
        expect_ok(&o, want)?;
        if !String::from_utf8_lossy(&o.stdout).contains("(ok)") {
            return Err(text(&o));
        }
        nothing_left("shmarray-example-heat", dirs.as_ref())
    };
    for (np, pretend) in [(1, 1), (2, 1), (2, 2), (4, 1), (4, 2)] {
        for (what, flag) in [
            ("node-shared", None),
            ("node-shared, node barriers", Some("--sync=barrier")),
            ("plain MPI", Some("--plain")),
        ] {
            if flag == Some("--plain") && pretend > 1 {
                continue; // the plain version has no nodes
            }
            d.case(
                &format!("mpi_heat {what} np={np} pretend={pretend}"),
                || {
                    let mut args = vec!["--n", "96", "--steps", "40"];
                    if let Some(f) = flag {
                        args.extend(f.split('='));
                    }
                    let want = format!("{what}: max |difference| vs single-process run");
                    heat(np, pretend, &format!("heat{np}{pretend}"), &args, &want)
                },
            );
        }
    }
    // Small blocks, rowless ranks and many steps: a missing wait shows as a
    // difference from the single-process run (checked bit for bit).
    for (np, pretend, n, steps) in [(6, 2, 20, 2000), (8, 2, 7, 2000), (5, 1, 4, 2000)] {
        d.case(
            &format!("mpi_heat stress np={np} pretend={pretend} n={n} steps={steps}"),
            || {
                let (n, steps) = (n.to_string(), steps.to_string());
                let args = ["--n", &n, "--steps", &steps];
                heat(
                    np,
                    pretend,
                    &format!("stress{np}"),
                    &args,
                    "node-shared: max",
                )
            },
        );
    }
    d.case("mpi_heat --bench: three versions, bit-identical", || {
        let args = ["--bench", "--n", "48", "--steps", "30", "--rounds", "2"];
        heat(
            4,
            2,
            "bench",
            &args,
            "every round of every version bit-identical to the single-process run: yes",
        )
    });
    d.case("mpi_heat --out writes an .npy file numpy reads", || {
        let out = std::env::temp_dir().join(format!("{}.npy", prefix("heat")));
        let _cleanup = common::ShmFile(out.clone());
        let dirs = NodeDirs::new("out", 2);
        let mut c = launch(4, 2, Some(&dirs), &example);
        c.args(["--n", "64", "--steps", "10", "--out"]).arg(&out);
        let o = run(c, "mpi_heat --out");
        expect_ok(&o, "equal to the reference")?;
        let ok = Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import numpy as np; a = np.load({:?}); assert a.shape == (64, 64) and a[0, 5] == 100.0",
                    out.display().to_string()
                ),
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(true); // no python3: the example's own read-back counts
        if ok {
            Ok(())
        } else {
            Err("numpy could not read it".into())
        }
    });

    let left = common::leftovers(&format!("shmarray-test-{pid}-"));
    if !left.is_empty() {
        d.failed.push(format!("leftovers {left:?}"));
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if d.failed.is_empty() { "ok" } else { "FAILED" },
        d.passed,
        d.failed.len()
    );
    if !d.failed.is_empty() {
        println!("failures: {:?}", d.failed);
        std::process::exit(1);
    }
}
