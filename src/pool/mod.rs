//! A pool of persistent worker processes (Python's `Pool` / `ProcessPoolExecutor`)
//! and in-place kernels over shared arrays (feature `pool`, default). User docs are
//! on [`Pool`]; [`Process`](crate::Process) and [`init`](crate::init) are at the
//! crate root, and their start methods and errors here.
//!
//! ```
//! use shmarray::pool::Pool;
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> Result<(), shmarray::pool::TaskError> {
//!     shmarray::init(); // in a worker, this runs the worker loop and exits
//!     let pool = Pool::new(2)?;
//!     assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
//!     Ok(())
//! }
//! ```
//!
//! Layout: `driver` (one thread per worker: start, fill its lane, collect
//! results, replace), `lanes` (which jobs wait in which worker's lane; taking
//! them back), `job` (a chunk's state machine and the batch latch), `results`
//! (futures, map results, `imap`), `kernel` (partitions, kernels,
//! [`ArrayHandle`]), `sweep` (idle workers let go of segments this process
//! removes); the lanes' shared memory, the attach cache and the part trampolines
//! live in `process` (the worker side).

mod driver;
mod job;
mod kernel;
mod lanes;
mod results;
mod sweep;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::process::{StartMethod, TaskError, WORKER_ENV};

use crate::process::{encode, ForkServer, TaskFn, TaskOffsets};
use crate::sync::Wait;
use driver::{drive, Launch, Shared};
use job::{lock, Job, Latch};
use results::Chunk;

pub use kernel::{ArrayHandle, Partition};
pub use results::{as_completed, Imap, MapResult, TaskFuture};

/// How long `drop` lets running tasks finish before it kills their workers.
const DROP_GRACE: Duration = Duration::from_secs(2);

/// A pool of worker processes: Python's `Pool` / `ProcessPoolExecutor`, plus
/// in-place parallel kernels over shared arrays.
///
/// Each worker process is driven by one thread of the pool, which starts it, keeps
/// its *lane* filled with jobs from a shared queue, and collects the results. A
/// job is a *chunk* of inputs (`chunksize`) run through a plain `fn`; each input's
/// panic is caught and reported for that input alone. If the worker dies mid-job
/// (a signal, `exit`), that job's inputs fail with [`TaskError::WorkerDied`], a
/// fresh worker replaces it, and the queue goes on: nothing hangs. Dropping the
/// pool asks every worker to exit, kills the ones that do not, and reaps all of
/// them.
///
/// # Dispatch: several jobs per worker
/// A worker's lane is a shared-memory ring of jobs (and one of results) between
/// the pool and that worker, so a worker goes from one job to the next without a
/// round trip, and neither side makes a system call per job while both are busy
/// (the socket carries a wake-up only when the other side sleeps, and tells each
/// side at once when the other died). How many jobs wait in a lane follows how
/// long jobs take: about 200 µs of work (at most 1024 jobs) while they are short,
/// one at a time once they take longer than that. A worker's thread takes at
/// most its share of the queue, so work spreads over the workers; and when a
/// worker has been on one job for a millisecond while others wait behind it in
/// its lane, an idle worker's thread takes those back and runs them. Inputs or
/// outcomes larger than 32 KiB go over the socket instead, one job at a time.
///
/// # When a worker dies: which tasks fail
/// A job runs **at most once**, and fails with [`TaskError::WorkerDied`] only if
/// its worker *began* it. Before a worker calls anything for a job it records the
/// job's id in a word of its lane (ids grow), and the pool reads that word once it
/// has seen the worker die:
/// - the worker died running the job (the word names it): the job's inputs fail
///   with `WorkerDied` and are never run again, since they may have had effects;
/// - the worker died before beginning it (the jobs waiting behind the running one
///   in its lane; a job sent to a worker killed while idle, before the pool
///   noticed): the job did not run, so it goes back to the head of the queue and
///   runs on a live worker or the replacement. After 5 such deaths in a row the
///   job fails with [`TaskError::NotStarted`] instead of looping (something is
///   killing every new worker).
///
/// Results a worker published before it died are kept. A cancelled job is
/// reported `Cancelled`, whether it had begun or not; cancelling a job that waits
/// in a lane takes it back (it never runs, and the worker is not disturbed),
/// while cancelling the job a worker runs kills that worker.
///
/// # Removed segments
/// Workers keep the arrays their tasks attached mapped (see [`ArrayHandle`]), and a
/// mapping keeps a removed file's memory allocated. When this process removes a
/// segment whose location went to workers (an [`ArrayHandle`] or a kernel's
/// parts) — the owner's drop, `unlink`, [`Namespace::remove`](crate::Namespace::remove)
/// — every idle worker of every pool of the process drops its mapping before the
/// removal returns (it waits for them, at most a second), so creating the next
/// array right away finds the memory free. A busy worker lets go when its current
/// job ends; segments removed by other processes are let go within 250 ms.
///
/// # How a task's function reaches a worker
/// A task is a plain `fn(A) -> R` (or `fn(A, B) -> R`; non-capturing closures
/// coerce to these) with serde arguments and result. The function crosses the
/// process boundary as its offset from an anchor function of this crate, together
/// with the trampoline monomorphised for its type (the two are paired in one place,
/// from the typed function pointer). The offset names the same function in the
/// worker because
/// - the function and the anchor lie in the same loaded object: checked with
///   `dladdr` at submit and again in the worker; a `fn` from another shared library
///   is refused with [`TaskError::ForeignFunction`];
/// - the worker runs the same executable and maps the same file for that object,
///   with the anchor at the same offset: checked in a handshake (otherwise
///   [`TaskError::DifferentExecutable`]; a crate inside a shared library or Python
///   extension is not what a re-executed `/proc/self/exe` runs).
///
/// Capturing closures can't be sent (pass the captured data as the argument).
///
/// # Workers and the processes their tasks start
/// - A worker's channel is a socket that is close-on-exec in the worker and is not
///   its standard input (which stays what it was), so processes a task starts do not
///   inherit it.
/// - Every worker leads its own process group. Killing a worker (cancel, timeout,
///   drop, replacement) kills the group, so what its tasks started (and did not move
///   to another group) goes with it; when a worker ends, what is left of its group
///   is killed too.
/// - The pool notices a dead worker even while a task's child holds the worker's
///   socket open: it checks the process itself at least every 50 ms.
/// - Workers die with their parent: each asks for `SIGKILL` on its parent's death
///   (`PR_SET_PDEATHSIG`) and exits at once if the parent is already gone. The
///   kernel sends that signal when the parent *thread* exits, so a spawned worker is
///   started by the pool thread that drives it (which lives as long as the pool),
///   and a [`Process`](crate::process::Process) by a launcher thread that lives as
///   long as the process. Fork-pool workers die with their fork server, which dies
///   with the pool's process.
///
/// # Threads
/// `Send + Sync`: submit from many threads at once.
///
/// # Examples
/// ```
/// use shmarray::pool::{as_completed, Pool};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), shmarray::pool::TaskError> {
///     shmarray::init(); // in a worker, this runs the worker loop and exits
///     let pool = Pool::new(2)?;
///     // One task: a future (Python's executor.submit).
///     let f = pool.submit(square, 12)?;
///     assert_eq!(f.result()?, 144);
///     // Many: results in input order, or lazily, or as they finish.
///     assert_eq!(pool.map(square, 1..=3)?, [1, 4, 9]);
///     let lazy: Vec<u64> = pool
///         .imap(square, 0..4, 1)
///         .map(|(_input, result)| result)
///         .collect::<Result<_, _>>()?;
///     assert_eq!(lazy, [0, 1, 4, 9]);
///     let futures = [pool.submit(square, 2)?, pool.submit(square, 3)?];
///     let mut done = Vec::new();
///     for (i, result) in as_completed(&futures) {
///         done.push((i, result?));
///     }
///     done.sort();
///     assert_eq!(done, [(0, 4), (1, 9)]);
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
    drivers: Vec<JoinHandle<()>>,
    size: usize,
}

impl Pool {
    /// `n` workers started with the spawn method (`n == 0`: one per available core).
    /// The program's `main` must call [`init`](crate::process::init) first.
    ///
    /// # Errors
    /// As [`with_method`](Self::with_method).
    pub fn new(n: usize) -> Result<Pool, TaskError> {
        Pool::with_method(n, StartMethod::Spawn)
    }

    /// `n` workers with the given start method (`n == 0`: one per available core).
    ///
    /// With `Fork`, this process must be single-threaded at this call: the pool
    /// forks a fork server here, which forks every worker (first and replacement)
    /// and stays single-threaded; workers see the program as it was at this call.
    ///
    /// # Errors
    /// [`TaskError::NotSingleThreaded`] for `Fork` when this process has other
    /// threads; [`TaskError::StartFailed`] or [`TaskError::DifferentExecutable`] if
    /// a worker does not come up (spawn needs [`init`](crate::process::init) first
    /// in `main`); [`TaskError::Io`] if a process or thread cannot be created.
    pub fn with_method(n: usize, method: StartMethod) -> Result<Pool, TaskError> {
        Pool::build(n, method, true)
    }

    /// A pool whose workers get no shared-memory lane: one task in flight per
    /// worker, over its socket. This is what a pool falls back to when a lane
    /// cannot be made (`memfd_create` refused), and how the pool dispatched
    /// before lanes existed: for benchmarks and tests, not for use.
    #[doc(hidden)]
    pub fn without_lanes(n: usize, method: StartMethod) -> Result<Pool, TaskError> {
        Pool::build(n, method, false)
    }

    fn build(n: usize, method: StartMethod, with_lanes: bool) -> Result<Pool, TaskError> {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            n
        };
        let launch = match method {
            StartMethod::Spawn => Launch::Spawn,
            StartMethod::Fork => Launch::Server(Arc::new(ForkServer::start()?)),
        };
        let shared = Shared::new(n, launch, with_lanes);
        sweep::register(&shared);
        let mut pool = Pool {
            shared: shared.clone(),
            drivers: Vec::with_capacity(n),
            size: n,
        };
        let (started, reports) = mpsc::channel();
        for slot in 0..n {
            let (s, tx) = (shared.clone(), started.clone());
            let d = std::thread::Builder::new()
                .name(format!("shmarray-pool-{slot}"))
                .spawn(move || drive(s, slot, tx))?;
            pool.drivers.push(d);
        }
        drop(started);
        for _ in 0..n {
            match reports.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e), // dropping `pool` stops the others
                Err(_) => return Err(TaskError::Protocol("a pool thread died".into())),
            }
        }
        Ok(pool)
    }

    /// Number of worker processes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Pids of the current workers (a worker being replaced is left out). A worker
    /// that died while idle is listed until the pool notices, at the latest when
    /// it next hands that worker a job.
    pub fn worker_pids(&self) -> Vec<u32> {
        lock(&self.shared.pids)
            .iter()
            .copied()
            .filter(|&p| p != 0)
            .collect()
    }

    /// How many jobs each worker's lane holds (sent to the worker, not finished):
    /// for tests that need tasks waiting in a lane, not for use.
    #[doc(hidden)]
    pub fn lane_depths(&self) -> Vec<usize> {
        self.shared.lanes.iter().map(|l| l.depth()).collect()
    }

    /// A chunk's job, not queued yet.
    fn chunk<A: Serialize, R>(
        base: usize,
        task: TaskOffsets,
        inputs: &[A],
        batch: Option<Arc<Latch>>,
    ) -> Result<Chunk<R>, TaskError> {
        let payload = encode(inputs).map_err(|message| TaskError::Serialization { message })?;
        Ok(Chunk {
            job: Job::new(base, task, payload, batch),
            len: inputs.len(),
            _r: PhantomData,
        })
    }

    pub(crate) fn submit_chunk<A: Serialize, R>(
        &self,
        base: usize,
        task: TaskOffsets,
        inputs: &[A],
        batch: Option<Arc<Latch>>,
    ) -> Result<Chunk<R>, TaskError> {
        let chunk = Pool::chunk(base, task, inputs, batch)?;
        self.shared.enqueue(std::slice::from_ref(&chunk.job))?;
        Ok(chunk)
    }

    /// Runs `f(arg)` in a worker; returns a future (Python's `executor.submit`).
    ///
    /// # Errors
    /// [`TaskError::PoolClosed`], [`TaskError::Serialization`] (the argument),
    /// [`TaskError::ForeignFunction`] (`f` lies in another shared object).
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<TaskFuture<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let task = TaskFn::unary(f).offsets()?;
        let chunk = self.submit_chunk(0, task, std::slice::from_ref(&arg), None)?;
        Ok(TaskFuture { chunk })
    }

    fn default_chunksize(&self, n: usize) -> usize {
        // Python's heuristic: about four chunks per worker.
        n.div_ceil(self.size * 4).max(1)
    }

    /// `f` over every input, results in input order; the first error (in input
    /// order) if any task failed. Chunk size: about four chunks per worker.
    ///
    /// # Errors
    /// The first failed input's error, or a submission error as for
    /// [`submit`](Self::submit).
    pub fn map<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let inputs: Vec<A> = inputs.into_iter().collect();
        let cs = self.default_chunksize(inputs.len());
        self.map_async(f, inputs, cs)?.get()
    }

    /// `map` with an explicit `chunksize` (inputs per message to a worker).
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: Vec<A>,
        chunksize: usize,
    ) -> Result<Vec<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_async(f, inputs, chunksize)?.get()
    }

    /// Starts a map and returns at once; collect with [`MapResult::get`].
    ///
    /// # Errors
    /// A submission error as for [`submit`](Self::submit).
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: Vec<A>,
        chunksize: usize,
    ) -> Result<MapResult<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.batch(TaskFn::unary(f), &inputs, chunksize)
    }

    /// Submits `inputs` in chunks of `chunksize` as one batch.
    pub(crate) fn batch<A: Serialize, R>(
        &self,
        task: TaskFn,
        inputs: &[A],
        chunksize: usize,
    ) -> Result<MapResult<R>, TaskError> {
        let task = task.offsets()?;
        let cs = chunksize.max(1);
        let n = inputs.len().div_ceil(cs);
        let latch = Latch::new(n);
        let mut chunks: Vec<Chunk<R>> = Vec::with_capacity(n);
        // Queued in growing groups (one lock and at most one wake-up each), so
        // workers start on the first chunks while later ones are encoded.
        let (mut queued, mut group) = (0, 16);
        for (i, c) in inputs.chunks(cs).enumerate() {
            let chunk = Pool::chunk(i * cs, task, c, Some(latch.clone()));
            let chunk = chunk.and_then(|chunk| {
                chunks.push(chunk);
                if chunks.len() - queued < group && chunks.len() < n {
                    return Ok(());
                }
                let jobs: Vec<Arc<Job>> = chunks[queued..].iter().map(|c| c.job.clone()).collect();
                self.shared.enqueue(&jobs)?;
                queued = chunks.len();
                group = (group * 2).min(1024);
                Ok(())
            });
            if let Err(e) = chunk {
                // Nothing waits for a batch that is not returned: cancel what was
                // queued so it does not run.
                for c in &chunks[..queued] {
                    c.job.cancel();
                }
                return Err(e);
            }
        }
        Ok(MapResult { chunks, latch })
    }

    /// `f(a, b)` over pairs, in order (Python's `starmap`).
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        inputs: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let inputs: Vec<(A, B)> = inputs.into_iter().collect();
        let cs = self.default_chunksize(inputs.len());
        self.batch(TaskFn::binary(f), &inputs, cs)?.get()
    }

    /// Lazy, ordered map: pulls inputs as results are consumed, keeping at most
    /// `2 × workers` chunks in flight (bounded memory). Yields one result per input.
    pub fn imap<A, R, I>(
        &self,
        f: fn(A) -> R,
        inputs: I,
        chunksize: usize,
    ) -> Imap<'_, A, R, I::IntoIter>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        Imap {
            pool: self,
            task: TaskFn::unary(f).offsets(),
            inputs: inputs.into_iter(),
            chunksize: chunksize.max(1),
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            next_base: 0,
            unordered: None,
            _a: PhantomData,
        }
    }

    /// Like [`imap`](Self::imap), but yields `(input index, result)` as soon as any
    /// chunk finishes.
    pub fn imap_unordered<A, R, I>(
        &self,
        f: fn(A) -> R,
        inputs: I,
        chunksize: usize,
    ) -> Imap<'_, A, R, I::IntoIter>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let mut it = self.imap(f, inputs, chunksize);
        it.unordered = Some(mpsc::channel());
        it
    }
}

impl Drop for Pool {
    /// Queued tasks fail with `PoolClosed`; running tasks get 2 seconds to
    /// finish, then their workers are SIGKILLed with their process groups (their
    /// futures report `WorkerDied`). Every worker is reaped, and the fork server
    /// too. Dropping takes at most about 2.1 s (the grace, then ~50 ms to see the
    /// killed workers die), however stuck a task is and whatever processes it
    /// started. Collect results before dropping the pool if you need them.
    fn drop(&mut self) {
        self.shared.close();
        let deadline = Wait::timeout(DROP_GRACE);
        while !deadline.expired() && !self.drivers.iter().all(|d| d.is_finished()) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if !self.drivers.iter().all(|d| d.is_finished()) {
            self.shared.kill_workers();
        }
        for d in self.drivers.drain(..) {
            let _ = d.join();
        }
    }
}
