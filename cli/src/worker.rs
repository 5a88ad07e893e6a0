//! The demo/benchmark worker: a process that doubles an `f64` array, either in place
//! in a shared segment (zero copy) or received through a pipe (copy). Used by
//! `shmarray demo`, `benches/zero_copy.rs` and `benches/attach.rs`.
//!
//! Protocol, one command per line on the worker's stdin:
//! - `shm NAME`: attach NAME (f64, 1-D), double it in place, reply `ok ATTACH_NS KERNEL_NS`;
//! - `pipe BYTES`: read BYTES of f64 from stdin, double them, write them back;
//! - `quit` (or end of input): exit.
//!
//! The worker prints `ready` once at start.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use shmarray::ndarray::Ix1;
use shmarray::{Error, Namespace, Options, Result, SharedArray};

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
                let reply = match double_in_place(ns, name) {
                    Ok((attach, kernel)) => {
                        format!("ok {} {}", attach.as_nanos(), kernel.as_nanos())
                    }
                    Err(e) => format!("err {e}"),
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

/// Attaches `name`, doubles it in place and returns the (attach, kernel) times.
fn double_in_place(ns: &Namespace, name: &str) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let mut a = Options::new()
        .namespace(ns.clone())
        .open::<SharedArray<f64, Ix1>>(name)?;
    let attach = t0.elapsed();
    let t1 = Instant::now();
    let mut v = a.view_mut()?;
    v *= 2.0;
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
            cmd.env(shmarray::huge::HUGE_DIR_ENV, "");
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
        writeln!(self.stdin, "shm {name}")?;
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
