//! The demo/benchmark worker: a process that doubles an `f64` array, either in place
//! in a shared segment (zero copy) or received through a pipe (copy). Used by
//! `shmarray demo` and `benches/zero_copy.rs`; public so both can share it.
//!
//! Protocol, one command per line on the worker's stdin:
//! - `shm NAME [MODE [START END]]`: attach NAME (f64, 1-D), map elements
//!   `START..END` (default: all) as MODE says (`lazy`, the default: on first touch;
//!   `read`/`write`: populated ahead; `all`: the whole array populated ahead, see
//!   [`Prefault`]), double them in place, reply `ok ATTACH_NS KERNEL_NS` (the
//!   attach time includes populating);
//! - `pipe BYTES`: read BYTES of f64 from stdin, double them, write them back;
//! - `quit` (or end of input): exit.
//!
//! The worker prints `ready` once at start.

use std::io::{BufRead, BufReader, Read, Write};
use std::ops::Range;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ndarray::Ix1;

use crate::array::SharedArray;
use crate::error::{Error, Result};
use crate::segment::Namespace;
use crate::segment::Options;
use crate::sys::mman::Populate;

/// How the worker maps the part it doubles before doubling it (the attach
/// benchmarks compare them; `open` itself maps lazily).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prefault {
    /// Nothing ahead: each page faults in when the kernel first touches it (the
    /// kernel maps up to 64 KiB of neighbours per fault).
    Lazy,
    /// `MADV_POPULATE_READ` of the part first.
    Read,
    /// `MADV_POPULATE_WRITE` of the part first.
    Write,
    /// `MADV_POPULATE_READ` of the whole array first, however little the kernel
    /// touches.
    All,
}

impl Prefault {
    fn word(self) -> &'static str {
        match self {
            Prefault::Lazy => "lazy",
            Prefault::Read => "read",
            Prefault::Write => "write",
            Prefault::All => "all",
        }
    }

    fn parse(word: &str) -> Option<Prefault> {
        [
            Prefault::Lazy,
            Prefault::Read,
            Prefault::Write,
            Prefault::All,
        ]
        .into_iter()
        .find(|p| p.word() == word)
    }
}

fn pipe_err(e: std::io::Error) -> Error {
    Error::Io {
        op: "worker pipe",
        name: String::new(),
        source: e,
    }
}

/// Runs the worker loop on this process's stdin/stdout until `quit` or end of input.
pub fn serve(ns: &Namespace) -> Result<()> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready").map_err(pipe_err)?;
    out.flush().map_err(pipe_err)?;
    let mut line = String::new();
    let mut buf: Vec<f64> = Vec::new();
    loop {
        line.clear();
        if input.read_line(&mut line).map_err(pipe_err)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("shm"), Some(name)) => {
                let rest: Vec<&str> = parts.collect();
                let request = match rest.as_slice() {
                    [] => Some((Prefault::Lazy, None)),
                    [mode] => Prefault::parse(mode).map(|m| (m, None)),
                    [mode, start, end] => Prefault::parse(mode).zip(
                        start
                            .parse()
                            .ok()
                            .zip(end.parse().ok())
                            .map(|(s, e)| Some(s..e)),
                    ),
                    _ => None,
                };
                let reply =
                    match request.map(|(mode, range)| double_in_place(ns, name, mode, range)) {
                        None => format!("err bad request {line:?}"),
                        Some(Ok((attach, kernel))) => {
                            format!("ok {} {}", attach.as_nanos(), kernel.as_nanos())
                        }
                        Some(Err(e)) => format!("err {e}"),
                    };
                writeln!(out, "{reply}").map_err(pipe_err)?;
                out.flush().map_err(pipe_err)?;
            }
            (Some("pipe"), Some(bytes)) => {
                let n: usize = bytes.parse().unwrap_or(0) / 8;
                buf.resize(n, 0.0);
                input
                    .read_exact(bytemuck::cast_slice_mut(&mut buf))
                    .map_err(pipe_err)?;
                for x in &mut buf {
                    *x *= 2.0;
                }
                out.write_all(bytemuck::cast_slice(&buf))
                    .map_err(pipe_err)?;
                out.flush().map_err(pipe_err)?;
            }
            _ => return Ok(()),
        }
    }
}

/// Attaches `name`, maps `range` (default: all of it) as `mode` says, doubles it in
/// place and returns the (attach including populating, kernel) times.
fn double_in_place(
    ns: &Namespace,
    name: &str,
    mode: Prefault,
    range: Option<Range<usize>>,
) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let mut a = SharedArray::<f64, Ix1>::open_with(&Options::new().namespace(ns.clone()), name)?;
    let range = range.unwrap_or(0..a.len());
    if range.start > range.end || range.end > a.len() {
        return Err(Error::io(
            "worker range",
            name,
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    match mode {
        Prefault::Lazy => true,
        Prefault::Read => a.populate(range.clone(), Populate::Read)?,
        Prefault::Write => a.populate(range.clone(), Populate::Write)?,
        Prefault::All => a.populate(0..a.len(), Populate::Read)?,
    };
    let attach = t0.elapsed();
    let t1 = Instant::now();
    let mut v = a.view_mut()?;
    let mut part = v.slice_mut(ndarray::s![range]);
    part *= 2.0;
    Ok((attach, t1.elapsed()))
}

/// A running worker process (the `shmarray` binary's hidden `__worker` command).
/// Dropping it asks it to quit, waits up to 5 s, then kills and reaps it.
#[derive(Debug)]
pub struct WorkerProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl WorkerProc {
    /// Starts `exe --dir <dir> [--huge-dir <dir>...] __worker` with the
    /// directories of `ns` and waits for its `ready`.
    pub fn start(exe: &Path, ns: &Namespace) -> std::io::Result<WorkerProc> {
        let mut cmd = Command::new(exe);
        let dirs = ns.directories();
        for (i, d) in dirs.iter().enumerate() {
            cmd.arg(if i == 0 { "--dir" } else { "--huge-dir" })
                .arg(&d.path);
        }
        if dirs.len() == 1 {
            // Only this directory: no discovered huge directories either.
            cmd.env(crate::segment::HUGE_DIR_ENV, "");
        }
        let mut child = cmd
            .arg("__worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let mut w = WorkerProc {
            child,
            stdin,
            stdout,
        };
        if line.trim() != "ready" {
            let _ = w.child.kill();
            return Err(std::io::Error::other(format!("worker said {line:?}")));
        }
        Ok(w)
    }

    /// Has the worker attach `name` and double it in place; returns the worker's
    /// own (attach, kernel) times.
    pub fn double_shm(&mut self, name: &str) -> std::io::Result<(Duration, Duration)> {
        self.double_shm_with(name, Prefault::Lazy, None)
    }

    /// As [`double_shm`](Self::double_shm), for elements `range` only (default:
    /// all), mapped ahead as `mode` says (the attach time includes that).
    pub fn double_shm_with(
        &mut self,
        name: &str,
        mode: Prefault,
        range: Option<Range<usize>>,
    ) -> std::io::Result<(Duration, Duration)> {
        match range {
            None => writeln!(self.stdin, "shm {name} {}", mode.word())?,
            Some(r) => writeln!(
                self.stdin,
                "shm {name} {} {} {}",
                mode.word(),
                r.start,
                r.end
            )?,
        }
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let nums: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|s| s.parse().ok())
            .collect();
        match (line.starts_with("ok"), nums.as_slice()) {
            (true, [a, k]) => Ok((Duration::from_nanos(*a), Duration::from_nanos(*k))),
            _ => Err(std::io::Error::other(format!("worker failed: {line:?}"))),
        }
    }

    /// Sends `data` through the pipe, has the worker double it and reads it back.
    pub fn double_pipe(&mut self, data: &mut [f64]) -> std::io::Result<()> {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(data);
        writeln!(self.stdin, "pipe {}", bytes.len())?;
        self.stdin.write_all(bytes)?;
        self.stdin.flush()?;
        self.stdout.read_exact(bytes)
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
