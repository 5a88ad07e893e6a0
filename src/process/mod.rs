//! Worker processes: Python's `multiprocessing.Process`, for plain `fn`s.
//!
//! A task is a plain function `fn(A) -> R` (not a capturing closure) with serde
//! arguments and result (bincode on the wire). The function crosses the process
//! boundary as its address relative to an anchor function of this crate: the worker
//! runs the *same executable* (spawn re-executes `/proc/self/exe`, fork shares the
//! image, and a handshake compares the executable's device and inode), so the same
//! offset is the same function despite ASLR.
//!
//! # Start methods
//! - [`StartMethod::Spawn`] (default): re-executes the current executable with the
//!   worker's socket as its standard input. The program must call [`init`] first thing
//!   in `main` (the Rust twin of Python's `if __name__ == "__main__":` guard): in a
//!   worker, `init` runs the worker loop and exits; elsewhere it returns at once. Safe
//!   from multithreaded parents.
//! - [`StartMethod::Fork`] (opt-in): forks; fastest, and the worker inherits
//!   everything, but fork is only sound while no other thread exists (another thread
//!   may hold the allocator's or stdout's lock at the moment of the fork). Python made
//!   the same trade-off and deprecated fork for multithreaded programs in 3.12.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::sys::process as sys;
pub use sys::Exit;

/// Environment variable that marks a spawned worker.
pub const WORKER_ENV: &str = "SHMARRAY_WORKER";

/// How worker processes are started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartMethod {
    /// Re-execute the current executable; needs [`init`] at the top of `main`.
    #[default]
    Spawn,
    /// `fork()`; only sound before other threads exist (see the module docs).
    Fork,
}

/// Why a task produced no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked in the worker.
    #[error("task {task} panicked: {message}")]
    Panicked {
        /// Which task: its index in the batch (0 for single tasks).
        task: usize,
        /// The panic message.
        message: String,
    },
    /// The worker died while running the task (killed by a signal, or exited).
    #[error("worker pid {pid} died running task {task} ({})", describe_exit(*signal, *code))]
    WorkerDied {
        /// Which task.
        task: usize,
        /// The worker's pid.
        pid: u32,
        /// The signal that killed it, if any.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        code: Option<i32>,
    },
    /// No result within the timeout (the task keeps running).
    #[error("no result within {0:?}")]
    Timeout(Duration),
    /// The task was cancelled.
    #[error("task {task} was cancelled")]
    Cancelled {
        /// Which task.
        task: usize,
    },
    /// Arguments or results could not be (de)serialised, or the worker runs a
    /// different executable.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Starting or talking to a worker failed.
    #[error("worker I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The pool was shut down before the task ran.
    #[error("the pool is closed")]
    PoolClosed,
    /// A shared array could not be attached in the worker.
    #[error("shared array: {0}")]
    Array(String),
}

fn describe_exit(signal: Option<i32>, code: Option<i32>) -> String {
    match (signal, code) {
        (Some(s), _) => format!("signal {s}"),
        (None, Some(c)) => format!("exit code {c}"),
        _ => "unknown".to_string(),
    }
}

// ---------------------------------------------------------------------------------
// Function identity and trampolines

#[inline(never)]
fn anchor() {}

/// Offset of a function address from this crate's anchor function.
pub(crate) fn offset_of_fn(addr: usize) -> isize {
    (addr as isize).wrapping_sub(anchor as fn() as usize as isize)
}

fn addr_of_offset(off: isize) -> usize {
    (anchor as fn() as usize as isize).wrapping_add(off) as usize
}

/// A type-erased entry point: runs a serialized chunk of inputs through the function
/// at `func` and returns the serialized outcomes.
pub(crate) type Trampoline = fn(func: usize, payload: &[u8]) -> Result<Vec<u8>, String>;

/// Per-item outcome inside a chunk: the value, or the panic message.
pub(crate) type ItemOutcome<R> = Result<R, String>;

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs every input of a chunk, catching panics per item.
pub(crate) fn run_items<A, R>(inputs: Vec<A>, f: impl Fn(A) -> R) -> Vec<ItemOutcome<R>> {
    inputs
        .into_iter()
        .map(|a| catch_unwind(AssertUnwindSafe(|| f(a))).map_err(panic_message))
        .collect()
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    bincode::serialize(v).map_err(|e| e.to_string())
}

pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    bincode::deserialize(b).map_err(|e| e.to_string())
}

/// Trampoline for `fn(A) -> R`.
pub(crate) fn call_fn<A: DeserializeOwned, R: Serialize>(
    func: usize,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    // SAFETY: `func` is the address of an `fn(A) -> R` of this executable: the parent
    // sent the offset of exactly such a function together with this monomorphised
    // trampoline, and the handshake checked that both run the same executable.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    let inputs: Vec<A> = decode(payload)?;
    encode(&run_items(inputs, f))
}

/// Trampoline for `fn(A, B) -> R` (starmap).
pub(crate) fn call_fn2<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    func: usize,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    // SAFETY: as in `call_fn`, for an `fn(A, B) -> R`.
    let f: fn(A, B) -> R = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(func) };
    let inputs: Vec<(A, B)> = decode(payload)?;
    encode(&run_items(inputs, |(a, b)| f(a, b)))
}

// ---------------------------------------------------------------------------------
// Wire protocol: u32 little-endian length + bincode message.

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum ToWorker {
    Hello {
        exe: (u64, u64),
    },
    Task {
        id: u64,
        tramp: isize,
        func: isize,
        payload: Vec<u8>,
    },
    Exit,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum FromWorker {
    Ready {
        pid: u32,
    },
    Refused {
        reason: String,
    },
    Done {
        id: u64,
        outcome: Result<Vec<u8>, String>,
    },
}

pub(crate) fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let bytes = bincode::serialize(msg).map_err(io::Error::other)?;
    w.write_all(&(bytes.len() as u32).to_le_bytes())?;
    w.write_all(&bytes)?;
    w.flush()
}

pub(crate) fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf)?;
    bincode::deserialize(&buf).map_err(io::Error::other)
}

/// Device and inode of the running executable.
fn exe_id() -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/exe")
        .map(|m| (m.dev(), m.ino()))
        .unwrap_or((0, 0))
}

/// The worker loop: handshake, then run tasks until `Exit` or end of input.
fn worker_loop(stream: UnixStream) -> i32 {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return 70,
    });
    let mut writer = BufWriter::new(stream);
    loop {
        let msg: ToWorker = match read_frame(&mut reader) {
            Ok(m) => m,
            Err(_) => return 0, // parent gone or closed: exit quietly
        };
        let reply = match msg {
            ToWorker::Hello { exe } => {
                if exe != exe_id() {
                    let _ = write_frame(
                        &mut writer,
                        &FromWorker::Refused {
                            reason: "the worker runs a different executable".into(),
                        },
                    );
                    return 71;
                }
                FromWorker::Ready {
                    pid: std::process::id(),
                }
            }
            ToWorker::Task {
                id,
                tramp,
                func,
                payload,
            } => {
                // SAFETY: `tramp` is the offset of a `Trampoline` of this executable
                // (same executable checked in the handshake).
                let t: Trampoline =
                    unsafe { std::mem::transmute::<usize, Trampoline>(addr_of_offset(tramp)) };
                let outcome = catch_unwind(AssertUnwindSafe(|| t(addr_of_offset(func), &payload)))
                    .unwrap_or_else(|p| Err(panic_message(p)));
                FromWorker::Done { id, outcome }
            }
            ToWorker::Exit => return 0,
        };
        if write_frame(&mut writer, &reply).is_err() {
            return 0;
        }
    }
}

/// Call first thing in `main`. In a process started as a spawned worker this runs
/// the worker loop and exits; in any other process it returns immediately.
pub fn init() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    // SAFETY: the spawn start method starts workers with WORKER_ENV set and the
    // parent's socket as fd 0; this runs once, at the top of main.
    let stream = unsafe { sys::inherited_socket() };
    let code = worker_loop(stream);
    std::process::exit(code);
}

/// A connected worker process (one socket, one pid).
pub(crate) struct Worker {
    pub(crate) pid: u32,
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    reaped: Option<Exit>,
}

impl Worker {
    /// Starts a worker with `method` and completes the handshake.
    pub(crate) fn start(method: StartMethod) -> io::Result<Worker> {
        let (parent, child) = UnixStream::pair()?;
        let pid = match method {
            StartMethod::Spawn => {
                let child = Command::new("/proc/self/exe")
                    .env(WORKER_ENV, "1")
                    .stdin(Stdio::from(std::os::fd::OwnedFd::from(child)))
                    .spawn()?;
                child.id()
            }
            StartMethod::Fork => {
                let parent_fd = std::os::fd::AsRawFd::as_raw_fd(&parent);
                // SAFETY: documented on StartMethod::Fork: sound before other
                // threads exist; the child only runs the worker loop and _exits.
                unsafe {
                    sys::fork_run(move || {
                        // The child must not keep the parent's end open, or it would
                        // never see end-of-file when the parent dies.
                        sys::close_fd(parent_fd);
                        worker_loop(child)
                    })
                }?
            }
        };
        let mut w = Worker {
            pid,
            reader: BufReader::new(parent.try_clone()?),
            writer: BufWriter::new(parent),
            reaped: None,
        };
        write_frame(&mut w.writer, &ToWorker::Hello { exe: exe_id() })?;
        match read_frame::<FromWorker>(&mut w.reader) {
            Ok(FromWorker::Ready { .. }) => Ok(w),
            Ok(FromWorker::Refused { reason }) => Err(io::Error::other(reason)),
            Ok(other) => Err(io::Error::other(format!("unexpected handshake {other:?}"))),
            Err(e) => {
                let exit = sys::reap(w.pid, true);
                w.reaped = Some(exit);
                Err(io::Error::other(format!(
                    "worker {} failed to start ({e}; {exit:?}); does main() call shmarray::process::init() first?",
                    w.pid
                )))
            }
        }
    }

    pub(crate) fn send_task(
        &mut self,
        id: u64,
        tramp: isize,
        func: isize,
        payload: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(
            &mut self.writer,
            &ToWorker::Task {
                id,
                tramp,
                func,
                payload,
            },
        )
    }

    /// Reads the next result; an error means the worker is gone.
    pub(crate) fn recv(&mut self) -> io::Result<(u64, Result<Vec<u8>, String>)> {
        match read_frame::<FromWorker>(&mut self.reader)? {
            FromWorker::Done { id, outcome } => Ok((id, outcome)),
            other => Err(io::Error::other(format!("unexpected message {other:?}"))),
        }
    }

    pub(crate) fn set_read_timeout(&self, d: Option<Duration>) {
        let _ = self.reader.get_ref().set_read_timeout(d);
    }

    /// Reaps the (dead or dying) worker and describes how it ended.
    pub(crate) fn death(&mut self, task: usize) -> TaskError {
        let exit = *self.reaped.get_or_insert_with(|| sys::reap(self.pid, true));
        let (signal, code) = match exit {
            Exit::Signal(s) => (Some(s), None),
            Exit::Code(c) => (None, Some(c)),
            Exit::Running => (None, None),
        };
        TaskError::WorkerDied {
            task,
            pid: self.pid,
            signal,
            code,
        }
    }

    pub(crate) fn kill(&self) {
        if self.reaped.is_none() {
            sys::send_signal(self.pid, nix::sys::signal::Signal::SIGKILL);
        }
    }

    pub(crate) fn terminate(&self) {
        if self.reaped.is_none() {
            sys::send_signal(self.pid, nix::sys::signal::Signal::SIGTERM);
        }
    }

    pub(crate) fn poll_exit(&mut self) -> Exit {
        if let Some(e) = self.reaped {
            return e;
        }
        let e = sys::reap(self.pid, false);
        if e != Exit::Running {
            self.reaped = Some(e);
        }
        e
    }

    /// Asks the worker to exit, waits up to `grace`, then kills; always reaps.
    pub(crate) fn shutdown(&mut self, grace: Duration) {
        if self.reaped.is_some() {
            return;
        }
        let _ = write_frame(&mut self.writer, &ToWorker::Exit);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.poll_exit() != Exit::Running {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.kill();
        self.reaped = Some(sys::reap(self.pid, true));
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}

/// One worker process running one task: Python's `Process(target=f, args=(a,))`.
pub struct Process<R> {
    worker: Worker,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Process<R> {
    /// Starts `f(arg)` in a new process (spawn start method).
    pub fn start<A: Serialize + DeserializeOwned>(
        f: fn(A) -> R,
        arg: A,
    ) -> Result<Process<R>, TaskError>
    where
        R: Serialize,
    {
        Self::start_with(StartMethod::Spawn, f, arg)
    }

    /// Starts `f(arg)` with the given start method.
    pub fn start_with<A: Serialize + DeserializeOwned>(
        method: StartMethod,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<Process<R>, TaskError>
    where
        R: Serialize,
    {
        let mut worker = Worker::start(method)?;
        let payload = encode(&vec![arg]).map_err(TaskError::Protocol)?;
        worker.send_task(
            0,
            offset_of_fn(call_fn::<A, R> as Trampoline as usize),
            offset_of_fn(f as usize),
            payload,
        )?;
        let _ = write_frame(&mut worker.writer, &ToWorker::Exit);
        Ok(Process {
            worker,
            _result: PhantomData,
        })
    }

    /// The worker's pid.
    pub fn pid(&self) -> u32 {
        self.worker.pid
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        self.worker.poll_exit() == Exit::Running
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.worker.terminate()
    }

    /// Sends SIGKILL.
    pub fn kill(&self) {
        self.worker.kill()
    }

    /// Waits for the result: the value, or why there is none (panic message, exit
    /// code, signal).
    pub fn join(self) -> Result<R, TaskError> {
        self.join_timeout(None)
    }

    /// Like `join`, giving up with `Timeout` after `timeout` (the process is killed
    /// and reaped then, so nothing is left behind).
    pub fn join_timeout(mut self, timeout: Option<Duration>) -> Result<R, TaskError> {
        self.worker.set_read_timeout(timeout);
        match self.worker.recv() {
            Ok((_, Ok(bytes))) => {
                let mut items: Vec<ItemOutcome<R>> = decode(&bytes).map_err(TaskError::Protocol)?;
                match items.pop() {
                    Some(Ok(r)) => Ok(r),
                    Some(Err(message)) => Err(TaskError::Panicked { task: 0, message }),
                    None => Err(TaskError::Protocol("empty result".into())),
                }
            }
            Ok((_, Err(e))) => Err(TaskError::Protocol(e)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                self.worker.kill();
                Err(TaskError::Timeout(timeout.unwrap_or_default()))
            }
            Err(_) => Err(self.worker.death(0)),
        }
    }
}

/// Sends SIGKILL to a worker pid (used to cancel a running task).
pub(crate) fn kill_pid(pid: u32) {
    sys::send_signal(pid, nix::sys::signal::Signal::SIGKILL);
}
