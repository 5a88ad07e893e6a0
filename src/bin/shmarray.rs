//! `shmarray`: list, inspect, create and clean up shared-array segments, and run the demo.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ndarray::{Ix1, IxDyn};
use shmarray::demo::{self, WorkerProc};
use shmarray::{Dtype, Error, Namespace, ObjectKind, Options, SegmentInfo, SharedArray, Usage};

#[derive(Parser)]
#[command(
    name = "shmarray",
    version,
    about = "Zero-copy shared-memory arrays: list, inspect, clean up, demo"
)]
struct Cli {
    /// Segment directory (default: $SHMARRAY_DIR or /dev/shm).
    #[arg(long, global = true)]
    dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List segments: name, dtype, shape, bytes, creator pid, alive or dead.
    Ls {
        /// Also list plain .npy files and foreign files.
        #[arg(long)]
        all: bool,
    },
    /// Show a segment's header and control block.
    Inspect { name: String },
    /// Remove segments by name (a deliberate act: works on anyone's segment).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        /// Also remove files that are not shmarray/NPY segments.
        #[arg(long)]
        force: bool,
    },
    /// Remove segments whose creator is dead (never live, persistent or foreign ones).
    Gc {
        /// Only print what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the file path of a segment (for numpy.load(path, mmap_mode="r+")).
    Path { name: String },
    /// Create a zero-filled persistent segment (stays until `shmarray rm`).
    Create {
        name: String,
        /// Element type: f32, f64, i8..i64, u8..u64 (numpy names work too).
        #[arg(long, default_value = "f64")]
        dtype: String,
        /// Comma-separated shape, e.g. 1000,1000 (empty for a 0-d array).
        #[arg(long, value_delimiter = ',')]
        shape: Vec<usize>,
        /// Column-major (Fortran) order.
        #[arg(long)]
        fortran: bool,
    },
    /// Demo: a worker process doubles an array in place; compared with a pipe round trip.
    Demo {
        /// Array size in MiB of f64.
        #[arg(long, default_value_t = 128)]
        mib: usize,
    },
    /// Internal: the demo/benchmark worker (line protocol on stdin/stdout).
    #[command(hide = true, name = "__worker")]
    Worker,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shmarray: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    let ns = match &cli.dir {
        Some(d) => Namespace::at(d)?,
        None => Namespace::default_dir()?,
    };
    match cli.cmd {
        Cmd::Ls { all } => ls(&ns, all),
        Cmd::Inspect { name } => {
            print_inspect(&shmarray::inspect(&ns, &name)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rm { names, force } => rm(&ns, &names, force),
        Cmd::Gc { dry_run } => gc(&ns, dry_run),
        Cmd::Path { name } => {
            println!("{}", ns.path_of(&name)?.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Create {
            name,
            dtype,
            shape,
            fortran,
        } => create(&ns, &name, &dtype, &shape, fortran),
        Cmd::Demo { mib } => demo(&ns, mib),
        Cmd::Worker => demo::serve(&ns).map(|()| ExitCode::SUCCESS),
    }
}

/// One row of `ls`: what an entry of the directory is.
enum Entry {
    Segment(Box<SegmentInfo>),
    Problem(Error),
}

fn classify(ns: &Namespace, name: &str) -> Entry {
    match shmarray::inspect(ns, name) {
        Ok(info) => Entry::Segment(Box::new(info)),
        Err(e) => Entry::Problem(e),
    }
}

fn shape_str(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("({})", parts.join(","))
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn kind_of(info: &SegmentInfo) -> &'static str {
    info.kind().name()
}

fn ls(ns: &Namespace, all: bool) -> Result<ExitCode, Error> {
    let header = ["NAME", "KIND", "DTYPE", "SHAPE", "BYTES", "PID", "CREATOR"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let dashes = |name: String, status: String| {
        let mut r = vec![name];
        r.extend(std::iter::repeat_n("-".to_string(), 5));
        r.push(status);
        r
    };
    for name in ns.entries()? {
        let name = name.to_string_lossy().into_owned();
        match classify(ns, &name) {
            Entry::Segment(info) => {
                let (pid, status) = match (&info.control, info.creator) {
                    (Some(c), Some(creator)) => {
                        let mut s = format!("{}, creator {creator}", info.usage);
                        if info.is_persistent() {
                            s.push_str(", persistent");
                        }
                        (c.creator_pid.to_string(), s)
                    }
                    _ if all => ("-".to_string(), "plain .npy".to_string()),
                    _ => continue,
                };
                rows.push(vec![
                    name,
                    kind_of(&info).to_string(),
                    info.layout.header.descr.clone(),
                    shape_str(&info.layout.header.shape),
                    human_bytes(info.layout.data_len as u64),
                    pid,
                    status,
                ]);
            }
            Entry::Problem(Error::NotReady { .. }) => rows.push(dashes(name, "not ready".into())),
            Entry::Problem(e) if all => {
                rows.push(dashes(name, format!("foreign: {}", short_reason(&e))))
            }
            Entry::Problem(_) => {}
        }
    }
    print_table(&rows);
    Ok(ExitCode::SUCCESS)
}

fn short_reason(e: &Error) -> String {
    match e {
        Error::NotShmarray { reason, .. } => reason.to_string(),
        Error::Corrupt { problem, .. } => format!("corrupt ({problem})"),
        Error::PermissionDenied { .. } => "permission denied".into(),
        other => other.to_string(),
    }
}

fn print_table(rows: &[Vec<String>]) {
    let mut widths = vec![0usize; rows.first().map_or(0, Vec::len)];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn print_inspect(info: &SegmentInfo) {
    let l = &info.layout;
    println!("name           {}", info.name);
    println!("path           {}", info.path.display());
    println!(
        "file size      {} ({})",
        info.file_size,
        human_bytes(info.file_size)
    );
    println!("npy version    {}.0", l.npy_version);
    println!("descr          {}", l.header.descr);
    println!("fortran_order  {}", l.header.fortran_order);
    println!("shape          {}", shape_str(&l.header.shape));
    println!("elements       {}", l.len);
    println!("data offset    {}", l.data_offset);
    println!("data bytes     {}", l.data_len);
    match &info.control {
        None => println!("control block  none (plain .npy file)"),
        Some(c) => {
            println!("control offset {}", l.control_offset);
            println!("layout version {}", c.layout_version);
            println!("kind           {}", c.kind);
            println!("usage          {}", info.usage);
            println!(
                "creator        pid {} (start time {}), handle {}",
                c.creator_pid,
                c.creator_start_time,
                info.creator.map_or("-", |l| l.as_str())
            );
            println!(
                "created        {} ms since the Unix epoch",
                c.created_unix_ms
            );
            println!("persistent     {}", info.is_persistent());
            println!("checksum       {:#018x} (ok)", c.checksum);
        }
    }
}

fn rm(ns: &Namespace, names: &[String], force: bool) -> Result<ExitCode, Error> {
    let mut failed = false;
    for name in names {
        let verdict = match classify(ns, name) {
            Entry::Segment(_) | Entry::Problem(Error::NotReady { .. }) => Ok(()),
            Entry::Problem(e @ (Error::NotFound { .. } | Error::InvalidName { .. })) => Err(e),
            Entry::Problem(_) if force => Ok(()),
            Entry::Problem(e) => {
                eprintln!("shmarray: not removing {name:?}: {e} (use --force to remove it anyway)");
                failed = true;
                continue;
            }
        };
        match verdict.and_then(|()| ns.remove(name)) {
            Ok(()) => println!("removed {name}"),
            Err(e) => {
                eprintln!("shmarray: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn gc(ns: &Namespace, dry_run: bool) -> Result<ExitCode, Error> {
    let report = shmarray::collect_garbage(ns, dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for (name, why) in &report.removed {
        println!("{verb} {name} ({why})");
    }
    for name in &report.undecided {
        println!("kept {name} (whether it is in use cannot be decided here)");
    }
    for (name, e) in &report.failed {
        eprintln!("shmarray: gc could not remove {name}: {e}");
    }
    if report.removed.is_empty() && report.failed.is_empty() {
        println!("nothing to collect");
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn create(
    ns: &Namespace,
    name: &str,
    dtype: &str,
    shape: &[usize],
    fortran: bool,
) -> Result<ExitCode, Error> {
    let dtype: Dtype = dtype
        .parse()
        .map_err(|e: shmarray::UnknownDtype| Error::Io {
            op: "parse --dtype",
            name: name.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
    let opts = Options::new()
        .namespace(ns.clone())
        .persistent(true)
        .order(if fortran {
            shmarray::ndarray::Order::ColumnMajor
        } else {
            shmarray::ndarray::Order::RowMajor
        });
    let shape = IxDyn(shape);
    macro_rules! make {
        ($($d:ident => $t:ty),*) => {
            match dtype {
                $(Dtype::$d => SharedArray::<$t, IxDyn>::create_with(&opts, name, shape)?.path(),)*
                _ => None,
            }
        };
    }
    let path = make!(I8 => i8, I16 => i16, I32 => i32, I64 => i64, U8 => u8, U16 => u16,
        U32 => u32, U64 => u64, F32 => f32, F64 => f64);
    println!("{}", path.unwrap_or_default().display());
    Ok(ExitCode::SUCCESS)
}

fn step<T>(what: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    print!("  {what} ... ");
    let _ = std::io::stdout().flush();
    let t = Instant::now();
    let out = f();
    let d = t.elapsed();
    println!("{}", fmt_dur(d));
    (out, d)
}

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn demo(ns: &Namespace, mib: usize) -> Result<ExitCode, Error> {
    let n = mib.max(1) * (1 << 20) / 8;
    let name = format!("shmarray-demo-{}", std::process::id());
    let io = |e: std::io::Error| Error::Io {
        op: "demo worker",
        name: name.clone(),
        source: e,
    };
    println!("shmarray demo: a worker process doubles a {mib} MiB f64 array ({n} elements)\n");
    let (arr, t_create) = step(&format!("create segment {name:?}"), || {
        SharedArray::<f64, Ix1>::create_with(&Options::new().namespace(ns.clone()), &name, n)
    });
    let mut arr = arr?;
    let (_, t_fill) = step("fill with 0, 1, 2, ...", || {
        arr.view_mut()
            .map(|mut v| v.indexed_iter_mut().for_each(|(i, x)| *x = i as f64))
    });
    let exe = std::env::current_exe().map_err(io)?;
    let (worker, _) = step("start worker process", || WorkerProc::start(&exe, ns));
    let mut worker = worker.map_err(io)?;
    let (res, t_shm) = step("worker attaches and doubles in place (zero copy)", || {
        worker.double_shm(&name)
    });
    let (t_attach, t_kernel) = res.map_err(io)?;
    let (ok, _) = step("check the result", || {
        arr.view()
            .map(|v| v.indexed_iter().all(|(i, &x)| x == 2.0 * i as f64))
            .unwrap_or(false)
    });
    if !ok {
        eprintln!("shmarray demo: result check FAILED");
        return Ok(ExitCode::FAILURE);
    }
    let mut copy: Vec<f64> = arr.view()?.to_vec();
    let (res, t_pipe) = step("same through a pipe (copy out, double, copy back)", || {
        worker.double_pipe(&mut copy)
    });
    res.map_err(io)?;
    let ok = copy.iter().enumerate().all(|(i, &x)| x == 4.0 * i as f64);
    if !ok {
        eprintln!("shmarray demo: pipe result check FAILED");
        return Ok(ExitCode::FAILURE);
    }
    drop(worker);
    let path = arr.path().unwrap_or_default();
    drop(arr);

    println!();
    let rows = [
        ["step", "time"],
        ["create + reserve segment", &fmt_dur(t_create)],
        ["fill (parent)", &fmt_dur(t_fill)],
        ["worker: attach by name", &fmt_dur(t_attach)],
        ["worker: in-place kernel", &fmt_dur(t_kernel)],
        ["round trip, shared memory", &fmt_dur(t_shm)],
        ["round trip, pipe (copy)", &fmt_dur(t_pipe)],
    ];
    for r in rows {
        println!("  {:<28} {:>10}", r[0], r[1]);
    }
    let speedup = t_pipe.as_secs_f64() / t_shm.as_secs_f64().max(1e-9);
    println!("\n  zero copy was {speedup:.1}x faster than the pipe round trip");
    println!(
        "  result checked: all {n} elements doubled; segment {} removed",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
