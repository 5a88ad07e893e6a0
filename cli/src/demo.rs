//! `shmarray demo`: a worker process (this binary's hidden `__worker` command, see
//! `shmarray_cli::worker`) doubles an array in place, compared with a pipe round trip.

use std::io::Write;
use std::time::{Duration, Instant};

use shmarray::ndarray::Ix1;
use shmarray::{Error, Namespace, Options, Segment, SharedArray};
use shmarray_cli::worker::WorkerProc;

use crate::create::HugeArg;
use crate::text::{escape_path, sanitize};
use crate::{CliError, Status};

/// Arguments of `shmarray demo`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Array size in MiB of f64.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65536))]
    mib: u32,
    /// Huge pages for the array: off, prefer (fall back to base pages, saying why)
    /// or require (see `shmarray doctor`).
    #[arg(long, value_enum, default_value_t = HugeArg::Off)]
    huge_pages: HugeArg,
}

/// Runs `f`, printing `what ... <time>`; returns its result and duration.
fn step<T>(
    out: &mut dyn Write,
    what: &str,
    f: impl FnOnce() -> T,
) -> std::io::Result<(T, Duration)> {
    write!(out, "  {what} ... ")?;
    out.flush()?;
    let t = Instant::now();
    let res = f();
    let d = t.elapsed();
    writeln!(out, "{}", fmt_dur(d))?;
    Ok((res, d))
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

pub(crate) fn run(ns: &Namespace, args: &Args, out: &mut dyn Write) -> Result<Status, CliError> {
    let mib = args.mib as usize;
    let n = mib * (1 << 20) / 8;
    let name = format!("shmarray-demo-{}", std::process::id());
    let io = |e: std::io::Error| Error::Io {
        op: "demo worker",
        name: name.clone(),
        source: e,
    };
    writeln!(
        out,
        "shmarray demo: a worker process doubles a {mib} MiB f64 array ({n} elements)\n"
    )?;
    let (arr, t_create) = step(out, &format!("create segment {name:?}"), || {
        let opts = Options::new()
            .namespace(ns.clone())
            .huge_pages(args.huge_pages.into());
        opts.create::<SharedArray<f64, Ix1>, _>(&name, n)
    })?;
    let mut arr = arr?;
    writeln!(out, "    on {}", sanitize(&arr.backing().to_string()))?;
    let (filled, t_fill) = step(out, "fill with 0, 1, 2, ...", || {
        arr.view_mut()
            .map(|mut v| v.indexed_iter_mut().for_each(|(i, x)| *x = i as f64))
    })?;
    filled?;
    let exe = std::env::current_exe().map_err(io)?;
    let (worker, _) = step(out, "start worker process", || WorkerProc::start(&exe, ns))?;
    let mut worker = worker.map_err(io)?;
    let (res, t_shm) = step(
        out,
        "worker attaches and doubles in place (zero copy)",
        || worker.double_shm(&name),
    )?;
    let (t_attach, t_kernel) = res.map_err(io)?;
    let (ok, _) = step(out, "check the result", || {
        arr.view()
            .map(|v| v.indexed_iter().all(|(i, &x)| x == 2.0 * i as f64))
            .unwrap_or(false)
    })?;
    if !ok {
        return Err(CliError::Failed("demo: result check FAILED".into()));
    }
    let mut copy: Vec<f64> = arr.view()?.to_vec();
    let (res, t_pipe) = step(
        out,
        "same through a pipe (copy out, double, copy back)",
        || worker.double_pipe(&mut copy),
    )?;
    res.map_err(io)?;
    if !copy.iter().enumerate().all(|(i, &x)| x == 4.0 * i as f64) {
        return Err(CliError::Failed("demo: pipe result check FAILED".into()));
    }
    drop(worker);
    let path = arr.path().unwrap_or_default();
    drop(arr);

    writeln!(out)?;
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
        writeln!(out, "  {:<28} {:>10}", r[0], r[1])?;
    }
    let speedup = t_pipe.as_secs_f64() / t_shm.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "\n  zero copy was {speedup:.1}x faster than the pipe round trip"
    )?;
    writeln!(
        out,
        "  result checked: all {n} elements doubled; segment {} removed",
        escape_path(&path)
    )?;
    Ok(Status::Ok)
}
