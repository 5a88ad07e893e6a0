//! A 2-D heat equation (Jacobi steps with a variable diffusivity `kappa`) on a global
//! grid over MPI, in two versions:
//!
//! - **node-shared** (default): the grid is two [`DistArray`]s, `u` and `v`, swapped
//!   every step (one segment per node each, each rank updating its own rows in place;
//!   only node leaders exchange boundary rows, with the neighbouring nodes), and the
//!   read-only `kappa` field is one [`NodeArray`] per node. Each step's
//!   `exchange_halos` synchronises a rank with its neighbouring ranks only
//!   (`--sync neighbours`, the default) or with the whole node (`--sync barrier`, as
//!   before neighbour counters);
//! - **plain MPI** (`--plain`): every rank owns its block in private memory and
//!   exchanges halo rows by messages with its neighbouring ranks, and holds its own
//!   copy of `kappa` (the usual "every rank keeps the shared input").
//!
//! Every version is checked against the same steps computed by one process on world
//! rank 0: the grids must be bit-identical, else exit status 1. `--bench` runs all
//! three, timed, in turns (`--rounds`, each round in a rotating order), and prints
//! steps/s per round, best and median, and the memory (PSS) of the node's ranks.
//!
//! ```text
//! cargo build --release --features mpi --example mpi_heat
//! mpirun --oversubscribe -np 4 target/release/examples/mpi_heat [--plain | --bench]
//!        [--sync neighbours|barrier] [--n 512] [--steps 100] [--rounds 3]
//!        [--out grid.npy] [--no-verify]
//! SHMARRAY_MPI_PRETEND_NODES=2 mpirun ...   # two "nodes" on one machine
//! ```

use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Count;
use shmarray::mpi::{DistArray, HaloSync, MpiError, NodeArray, NodeComm};
use shmarray::ndarray::{Array2, Ix2};

/// Command-line options.
#[derive(Clone, Debug)]
struct Args {
    plain: bool,
    sync: HaloSync,
    bench: bool,
    verify: bool,
    n: usize,
    steps: usize,
    rounds: usize,
    out: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        plain: false,
        sync: HaloSync::Neighbours,
        bench: false,
        verify: true,
        n: 512,
        steps: 100,
        rounds: 3,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().ok_or(format!("{what} needs a value"));
        match a.as_str() {
            "--plain" => args.plain = true,
            "--sync" => {
                args.sync = match value("--sync")?.as_str() {
                    "neighbours" => HaloSync::Neighbours,
                    "barrier" => HaloSync::NodeBarrier,
                    v => return Err(format!("--sync: {v:?} is not neighbours or barrier")),
                }
            }
            "--bench" => args.bench = true,
            "--no-verify" => args.verify = false,
            "--n" => args.n = value("--n")?.parse().map_err(|e| format!("--n: {e}"))?,
            "--steps" => {
                args.steps = value("--steps")?
                    .parse()
                    .map_err(|e| format!("--steps: {e}"))?
            }
            "--rounds" => {
                args.rounds = value("--rounds")?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?
            }
            "--out" => args.out = Some(PathBuf::from(value("--out")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.n < 3 {
        return Err("--n must be at least 3".into());
    }
    Ok(args)
}

/// Initial temperature: hot top edge, warm left edge, cold right and bottom edges
/// (fixed for all steps), a deterministic pattern inside.
fn initial(i: usize, j: usize, n: usize) -> f64 {
    if i == 0 {
        100.0
    } else if j == 0 {
        50.0
    } else if i == n - 1 || j == n - 1 {
        0.0
    } else {
        ((i * 7 + j * 13) % 17) as f64 / 17.0
    }
}

/// Diffusivity in `[0.5, 1]` (1 everywhere would be plain Jacobi averaging).
fn kappa(i: usize, j: usize) -> f64 {
    0.5 + ((i * 31 + j * 17) % 11) as f64 / 20.0
}

/// One step for global row `g` of `n`: boundary rows and columns keep their values.
/// Every version calls this same function, so results agree to the last bit.
#[inline]
fn update_row(g: usize, n: usize, rows: [&[f64]; 3], k: &[f64], dst: &mut [f64]) {
    let [above, center, below] = rows;
    if g == 0 || g == n - 1 {
        dst.copy_from_slice(center);
        return;
    }
    dst[0] = center[0];
    dst[n - 1] = center[n - 1];
    for j in 1..n - 1 {
        let c = center[j];
        let avg = 0.25 * (above[j] + below[j] + center[j - 1] + center[j + 1]);
        dst[j] = c + k[j] * (avg - c);
    }
}

/// The reference: all steps in one process.
fn serial(n: usize, steps: usize) -> Array2<f64> {
    let mut u = Array2::from_shape_fn((n, n), |(i, j)| initial(i, j, n));
    let mut v = u.clone();
    let k = Array2::from_shape_fn((n, n), |(i, j)| kappa(i, j));
    for _ in 0..steps {
        {
            let src = u.as_slice().expect("C order");
            let dst = v.as_slice_mut().expect("C order");
            for g in 0..n {
                let row = |r: usize| &src[r.min(n - 1) * n..][..n];
                let above = row(g.saturating_sub(1));
                let kr = &k.as_slice().expect("C order")[g * n..][..n];
                update_row(
                    g,
                    n,
                    [above, row(g), row(g + 1)],
                    kr,
                    &mut dst[g * n..][..n],
                );
            }
        }
        std::mem::swap(&mut u, &mut v);
    }
    u
}

/// Balanced block `part` of `parts` over `0..len` (as the library splits rows).
fn block(len: usize, parts: usize, part: usize) -> Range<usize> {
    let start = |p: usize| len / parts * p + p.min(len % parts);
    start(part)..start(part + 1)
}

/// This process's proportional set size in KiB (`Pss:` of /proc/self/smaps_rollup).
fn pss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Sum of `x` over the ranks of `comm`, on every rank.
fn comm_sum(comm: &SimpleCommunicator, x: u64) -> u64 {
    let mut total = 0u64;
    comm.all_reduce_into(&x, &mut total, SystemOperation::sum());
    total
}

/// What one version measured.
struct Outcome {
    result: Option<Array2<f64>>,
    seconds: f64,
    /// PSS of node 0's ranks (KiB) while the arrays exist, and its growth over
    /// the phase.
    pss_node: u64,
    pss_node_delta: u64,
}

/// The node-shared version.
fn run_node_shared(nodes: &NodeComm, args: &Args, sync: HaloSync) -> Result<Outcome, MpiError> {
    let n = args.n;
    let base = comm_sum(nodes.node(), pss_kib());
    let mut u = DistArray::new(nodes, "shmarray-example-heat-u", (n, n))?;
    let mut v = DistArray::new(nodes, "shmarray-example-heat-v", (n, n))?;
    u.set_halo_sync(sync);
    v.set_halo_sync(sync);
    let mut k = NodeArray::<f64, Ix2>::create(nodes, "shmarray-example-heat-kappa", (n, n))?;
    // Each rank fills its own rows of the grids and of the node's kappa.
    for a in [&mut u, &mut v] {
        let first = a.rows().start;
        for (r, mut row) in a.rows_mut()?.outer_iter_mut().enumerate() {
            row.indexed_iter_mut()
                .for_each(|(j, x)| *x = initial(first + r, j, n));
        }
    }
    let first = k.rows().start;
    for (r, mut row) in k.rows_mut()?.outer_iter_mut().enumerate() {
        row.indexed_iter_mut()
            .for_each(|(j, x)| *x = kappa(first + r, j));
    }
    k.barrier();

    nodes.world().barrier();
    let t = Instant::now();
    for _ in 0..args.steps {
        u.exchange_halos()?;
        let base_row = u.node_rows().start;
        let rows = v.rows();
        let src = u.local_view()?;
        let src = src.as_slice().expect("C order");
        let kv = k.view()?;
        let kv = kv.as_slice().expect("C order");
        let mut dst = v.rows_mut()?;
        let dst = dst.as_slice_mut().expect("C order");
        for (i, g) in rows.enumerate() {
            let l = g - base_row + 1; // local row of global row g (ghost row is 0)
            let row = |r: usize| &src[r * n..][..n];
            update_row(
                g,
                n,
                [row(l - 1), row(l), row(l + 1)],
                &kv[g * n..][..n],
                &mut dst[i * n..][..n],
            );
        }
        std::mem::swap(&mut u, &mut v);
    }
    nodes.world().barrier();
    let seconds = t.elapsed().as_secs_f64();
    let pss_node = comm_sum(nodes.node(), pss_kib());
    let result = match &args.out {
        Some(path) if !args.bench => {
            u.write_npy(path)?;
            None
        }
        _ => u.gather()?,
    };
    Ok(Outcome {
        result,
        seconds,
        pss_node,
        pss_node_delta: pss_node.saturating_sub(base),
    })
}

/// The plain-MPI version: private blocks with ghost rows, halo messages between
/// neighbouring ranks, and a private copy of the whole kappa on every rank.
fn run_plain(nodes: &NodeComm, args: &Args) -> Outcome {
    let world = nodes.world();
    let (n, rank, size) = (args.n, world.rank() as usize, world.size() as usize);
    let base = comm_sum(nodes.node(), pss_kib());
    let mine = block(n, size, rank);
    let m = mine.len();
    let mut u = vec![0.0f64; (m + 2) * n];
    for (r, g) in mine.clone().enumerate() {
        for j in 0..n {
            u[(r + 1) * n + j] = initial(g, j, n);
        }
    }
    let mut v = u.clone();
    let k: Vec<f64> = (0..n * n).map(|x| kappa(x / n, x % n)).collect();

    world.barrier();
    let t = Instant::now();
    for _ in 0..args.steps {
        if size > 1 && m > 0 {
            let (top, rest) = u.split_at_mut(n);
            let (mid, bottom) = rest.split_at_mut(m * n);
            let (first, last) = (&mid[..n], &mid[(m - 1) * n..]);
            mpi::request::scope(|scope| {
                let mut pending = Vec::with_capacity(4);
                if rank > 0 {
                    let up = world.process_at_rank(rank as i32 - 1);
                    pending.push(up.immediate_receive_into_with_tag(scope, top, 1));
                    pending.push(up.immediate_send_with_tag(scope, first, 2));
                }
                if rank + 1 < size {
                    let down = world.process_at_rank(rank as i32 + 1);
                    pending.push(down.immediate_receive_into_with_tag(scope, bottom, 2));
                    pending.push(down.immediate_send_with_tag(scope, last, 1));
                }
                for r in pending {
                    r.wait();
                }
            });
        }
        for (i, g) in mine.clone().enumerate() {
            let row = |r: usize| &u[r * n..][..n];
            update_row(
                g,
                n,
                [row(i), row(i + 1), row(i + 2)],
                &k[g * n..][..n],
                &mut v[(i + 1) * n..][..n],
            );
        }
        std::mem::swap(&mut u, &mut v);
    }
    world.barrier();
    let seconds = t.elapsed().as_secs_f64();
    let pss_node = comm_sum(nodes.node(), pss_kib());

    let interior = &u[n..(m + 1) * n];
    let root = world.process_at_rank(0);
    let result = if rank == 0 {
        let counts: Vec<Count> = (0..size)
            .map(|p| (block(n, size, p).len() * n) as Count)
            .collect();
        let displs: Vec<Count> = (0..size)
            .map(|p| (block(n, size, p).start * n) as Count)
            .collect();
        let mut all = vec![0.0f64; n * n];
        let mut parts = PartitionMut::new(&mut all[..], counts, &displs[..]);
        root.gather_varcount_into_root(interior, &mut parts);
        Some(Array2::from_shape_vec((n, n), all).expect("n * n elements"))
    } else {
        root.gather_varcount_into(interior);
        None
    };
    drop(k);
    Outcome {
        result,
        seconds,
        pss_node,
        pss_node_delta: pss_node.saturating_sub(base),
    }
}

/// Whether `a` and `b` hold the same bits in every element.
fn bit_identical(a: &Array2<f64>, b: &Array2<f64>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    a.iter()
        .zip(b.iter())
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

/// Runs what `args` asks for; `Ok(false)` if a check failed (on world rank 0).
fn run(world: &SimpleCommunicator, args: &Args) -> Result<bool, MpiError> {
    let nodes = NodeComm::new(world)?;
    let rank0 = world.rank() == 0;
    let (size, steps, n) = (world.size(), args.steps, args.n);
    if rank0 {
        println!(
            "mpi_heat: {n}x{n} grid, {steps} steps, {size} ranks on {} node(s) ({} pretend per real node)",
            nodes.node_count(),
            nodes.pretend_nodes()
        );
    }
    let reference = (rank0 && args.verify).then(|| serial(n, steps));
    let check = |name: &str, got: &Option<Array2<f64>>| -> bool {
        match (&reference, got) {
            (Some(want), Some(got)) => {
                let d = max_abs_diff(want, got);
                let ok = bit_identical(want, got);
                println!(
                    "  {name}: max |difference| vs single-process run = {d:e} ({})",
                    if ok { "ok" } else { "FAILED" }
                );
                ok
            }
            _ => true,
        }
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    if args.bench {
        // The three versions take turns, in a rotating order, and each keeps its
        // fastest round: this machine's other load (and which version runs first)
        // then matters less. "before" is the node-shared version with full node
        // barriers (as every step synchronised before neighbour counters).
        const NAMES: [&str; 3] = ["node-shared", "node-shared, node barriers", "plain MPI"];
        let run_one = |v: usize| -> Result<Outcome, MpiError> {
            match v {
                0 => run_node_shared(&nodes, args, HaloSync::Neighbours),
                1 => run_node_shared(&nodes, args, HaloSync::NodeBarrier),
                _ => Ok(run_plain(&nodes, args)),
            }
        };
        let mut best: [Option<Outcome>; 3] = [None, None, None];
        let mut all: [Vec<f64>; 3] = Default::default();
        let mut mismatches = 0;
        for round in 0..args.rounds.max(1) {
            for i in 0..3 {
                let v = (round + i) % 3;
                let o = run_one(v)?;
                all[v].push(o.seconds);
                if let (Some(want), Some(got)) = (&reference, &o.result) {
                    if !bit_identical(want, got) {
                        println!(
                            "  {} round {round}: differs from the single-process run (FAILED)",
                            NAMES[v]
                        );
                        mismatches += 1;
                    }
                }
                match &mut best[v] {
                    Some(b) => b.seconds = b.seconds.min(o.seconds),
                    None => best[v] = Some(o),
                }
            }
        }
        let best = best.map(|b| b.expect("one round or more"));
        let mut ok = true;
        if rank0 {
            let rate = |s: f64| steps as f64 / s;
            let median = |v: &[f64]| {
                let mut r: Vec<f64> = v.iter().map(|&s| rate(s)).collect();
                r.sort_by(f64::total_cmp);
                r[r.len() / 2]
            };
            for (name, v) in NAMES.iter().zip(&all) {
                let r: Vec<String> = v.iter().map(|&s| format!("{:.0}", rate(s))).collect();
                println!("  steps/s per round, {name}: [{}]", r.join(" "));
            }
            println!(
                "  version                      best steps/s   median   PSS node 0 (MiB)   growth during run (MiB)"
            );
            for ((name, o), v) in NAMES.iter().zip(&best).zip(&all) {
                println!(
                    "  {name:<28} {:>12.1}   {:>6.0}   {:>16.1}   {:>23.1}",
                    rate(o.seconds),
                    median(v),
                    mib(o.pss_node),
                    mib(o.pss_node_delta)
                );
            }
            let [s, b, p] = [0, 1, 2].map(|i| rate(best[i].seconds));
            let [sm, bm, pm] = [0, 1, 2].map(|i| median(&all[i]));
            println!(
                "  node-shared / plain MPI throughput: {:.2}x (best), {:.2}x (median)",
                s / p,
                sm / pm
            );
            println!(
                "  node-shared with node barriers / plain MPI throughput: {:.2}x (best), {:.2}x (median)",
                b / p,
                bm / pm
            );
            println!(
                "  neighbour counters / node barriers: {:.2}x (best), {:.2}x (median)",
                s / b,
                sm / bm
            );
            for (name, o) in NAMES.iter().zip(&best) {
                ok &= check(name, &o.result);
            }
            if let (Some(a), Some(b), Some(p)) = (&best[0].result, &best[1].result, &best[2].result)
            {
                println!(
                    "  max |node-shared - plain MPI| = {:e}, max |node barriers - plain MPI| = {:e}",
                    max_abs_diff(a, p),
                    max_abs_diff(b, p)
                );
            }
            if reference.is_some() {
                println!(
                    "  every round of every version bit-identical to the single-process run: {}",
                    if mismatches == 0 { "yes" } else { "NO" }
                );
                ok &= mismatches == 0;
            }
        }
        return Ok(ok);
    }
    let (name, o) = if args.plain {
        ("plain MPI", run_plain(&nodes, args))
    } else {
        let name = match args.sync {
            HaloSync::NodeBarrier => "node-shared, node barriers",
            _ => "node-shared",
        };
        (name, run_node_shared(&nodes, args, args.sync)?)
    };
    if rank0 {
        println!(
            "  {name}: {:.1} steps/s, PSS of node 0's ranks {:.1} MiB",
            steps as f64 / o.seconds,
            mib(o.pss_node)
        );
        if let (Some(path), false) = (&args.out, args.plain) {
            println!("  wrote {}", path.display());
        }
    }
    let mut ok = check(name, &o.result);
    if let (Some(path), Some(want), true) = (&args.out, &reference, !args.plain) {
        ok &= check_npy(path, want);
    }
    Ok(ok)
}

/// Reads back the `.npy` file world rank 0 wrote (plain NPY 1.0, `<f8`, C order)
/// and compares it with the reference.
fn check_npy(path: &std::path::Path, want: &Array2<f64>) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        println!("  {}: cannot read it back (FAILED)", path.display());
        return false;
    };
    let header_len = bytes
        .get(8..10)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .unwrap_or(usize::MAX);
    let data = bytes.get(10 + header_len.min(bytes.len())..).unwrap_or(&[]);
    let got: Vec<f64> = data
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let ok = bytes.starts_with(b"\x93NUMPY")
        && got.len() == want.len()
        && got.iter().zip(want.iter()).all(|(a, b)| a == b);
    println!(
        "  {}: read back, {}",
        path.display(),
        if ok {
            "equal to the reference"
        } else {
            "FAILED"
        }
    );
    ok
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mpi_heat: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(universe) = mpi::initialize() else {
        eprintln!("mpi_heat: MPI was already initialised");
        return ExitCode::from(2);
    };
    let world = universe.world();
    match run(&world, &args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mpi_heat: rank {}: {e}", world.rank());
            // The other ranks would wait in a collective for ever: end the job.
            world.abort(2)
        }
    }
}
