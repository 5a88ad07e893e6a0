//! A pool of persistent worker processes: Python's `Pool` / `ProcessPoolExecutor`,
//! plus in-place parallel kernels over shared arrays.
//!
//! Each worker process is driven by one thread of the pool, which takes jobs from a
//! shared queue, sends them, and waits for the result. A job is a *chunk* of inputs
//! (`chunksize`) run through a plain `fn`; each input's panic is caught and reported
//! for that input alone. If the worker dies mid-job (a signal, `exit`), the job's
//! inputs fail with [`TaskError::WorkerDied`], a fresh worker replaces it, and the
//! queue goes on: nothing hangs. Dropping the pool asks every worker to exit, kills
//! the ones that do not, and reaps all of them.

mod kernel;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::process::{
    call_fn, call_fn2, decode, encode, offset_of_fn, ItemOutcome, StartMethod, TaskError,
    Trampoline, Worker,
};

pub use kernel::{ArrayHandle, Partition};

#[derive(Debug)]
enum Status {
    Queued,
    Running { pid: u32 },
    Done(Result<Vec<u8>, TaskError>),
    Taken,
}

/// One unit of work sent to a worker: a serialized chunk of inputs.
struct Job {
    /// Index of the chunk's first input in its batch (for error messages).
    base: usize,
    tramp: isize,
    func: isize,
    payload: Mutex<Option<Vec<u8>>>,
    status: Mutex<(Status, bool)>, // (status, cancel requested)
    done: Condvar,
    listener: Mutex<Option<(Sender<usize>, usize)>>,
    /// The batch this job belongs to (`map`, `starmap`, `map_async`), if any.
    batch: Option<Arc<Latch>>,
}

/// Counts a batch's unfinished jobs, so whoever waits for the whole batch is woken
/// once, when the last job finishes, not once per job.
struct Latch {
    left: Mutex<usize>,
    zero: Condvar,
}

impl Latch {
    fn new(n: usize) -> Arc<Latch> {
        Arc::new(Latch {
            left: Mutex::new(n),
            zero: Condvar::new(),
        })
    }

    fn count_down(&self) {
        let mut left = self.left.lock().unwrap();
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.zero.notify_all();
        }
    }

    fn is_open(&self) -> bool {
        *self.left.lock().unwrap() == 0
    }

    /// Waits until every job finished; `false` if `deadline` passed first.
    fn wait(&self, deadline: Option<Instant>) -> bool {
        wait_until(&self.zero, self.left.lock().unwrap(), deadline, |left| {
            *left == 0
        })
        .is_some()
    }
}

/// Waits on `cv` until `ready(&*guard)`, or until `deadline` passes (`None`).
fn wait_until<'a, T>(
    cv: &Condvar,
    mut guard: std::sync::MutexGuard<'a, T>,
    deadline: Option<Instant>,
    ready: impl Fn(&T) -> bool,
) -> Option<std::sync::MutexGuard<'a, T>> {
    while !ready(&guard) {
        guard = match deadline {
            None => cv.wait(guard).unwrap(),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return None;
                }
                cv.wait_timeout(guard, d - now).unwrap().0
            }
        };
    }
    Some(guard)
}

impl Job {
    /// Records the outcome, once: a job cancelled while queued is completed then,
    /// and must not be completed again when a driver or `Drop` meets it later.
    fn complete(&self, outcome: Result<Vec<u8>, TaskError>) {
        let mut st = self.status.lock().unwrap();
        if matches!(st.0, Status::Done(_) | Status::Taken) {
            return;
        }
        let outcome = if st.1 {
            Err(TaskError::Cancelled { task: self.base })
        } else {
            outcome
        };
        st.0 = Status::Done(outcome);
        drop(st);
        self.done.notify_all();
        if let Some((tx, idx)) = self.listener.lock().unwrap().take() {
            let _ = tx.send(idx);
        }
        if let Some(b) = &self.batch {
            b.count_down();
        }
    }

    /// Waits for the outcome; `Timeout` leaves the job running.
    fn wait(&self, timeout: Option<Duration>) -> Result<Vec<u8>, TaskError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let finished = |st: &(Status, bool)| matches!(st.0, Status::Done(_) | Status::Taken);
        let Some(mut st) = wait_until(&self.done, self.status.lock().unwrap(), deadline, finished)
        else {
            return Err(TaskError::Timeout(timeout.unwrap_or_default()));
        };
        match std::mem::replace(&mut st.0, Status::Taken) {
            Status::Done(o) => o,
            _ => Err(TaskError::Protocol("result already taken".into())),
        }
    }

    fn is_done(&self) -> bool {
        matches!(
            self.status.lock().unwrap().0,
            Status::Done(_) | Status::Taken
        )
    }

    /// Cancels: a queued job never runs; a running one has its worker killed (the
    /// pool replaces it). Returns false if the job already finished.
    fn cancel(&self) -> bool {
        let mut st = self.status.lock().unwrap();
        match st.0 {
            Status::Queued => {
                st.1 = true;
                drop(st);
                self.complete(Err(TaskError::Cancelled { task: self.base }));
                true
            }
            Status::Running { pid } => {
                st.1 = true;
                drop(st);
                crate::process::kill_pid(pid);
                true
            }
            Status::Done(_) | Status::Taken => false,
        }
    }

    fn set_listener(&self, tx: Sender<usize>, idx: usize) {
        *self.listener.lock().unwrap() = Some((tx, idx));
        if self.is_done() {
            if let Some((tx, idx)) = self.listener.lock().unwrap().take() {
                let _ = tx.send(idx);
            }
        }
    }
}

struct Queue {
    jobs: VecDeque<Arc<Job>>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    method: StartMethod,
    /// Current worker pid of each driver (0 while being replaced).
    pids: Mutex<Vec<u32>>,
}

impl Shared {
    fn next_job(&self) -> Option<Arc<Job>> {
        let mut q = self.queue.lock().unwrap();
        loop {
            if let Some(j) = q.jobs.pop_front() {
                return Some(j);
            }
            if q.closed {
                return None;
            }
            q = self.ready.wait(q).unwrap();
        }
    }
}

/// Starts a worker, retrying a few times (a fork/exec can fail transiently).
fn start_worker(method: StartMethod) -> Result<Worker, TaskError> {
    let mut last = None;
    for attempt in 0..3 {
        match Worker::start(method) {
            Ok(w) => return Ok(w),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10 << attempt));
    }
    Err(TaskError::Io(last.expect("three attempts")))
}

/// The thread that drives one worker process.
fn drive(shared: Arc<Shared>, slot: usize, first: Worker) {
    let set_pid = |pid: u32| shared.pids.lock().unwrap()[slot] = pid;
    let mut worker = Some(first);
    let mut next_id = 0u64;
    while let Some(job) = shared.next_job() {
        {
            let mut st = job.status.lock().unwrap();
            if st.1 || !matches!(st.0, Status::Queued) {
                continue; // cancelled while queued
            }
            let w = match worker.take() {
                Some(w) => w,
                None => match start_worker(shared.method) {
                    Ok(w) => w,
                    Err(e) => {
                        drop(st);
                        job.complete(Err(e));
                        continue;
                    }
                },
            };
            st.0 = Status::Running { pid: w.pid };
            set_pid(w.pid);
            worker = Some(w);
        }
        let w = worker.as_mut().expect("worker present");
        if w.poll_exit() != crate::process::Exit::Running {
            // Died while idle: replace it before handing it the job.
            match start_worker(shared.method) {
                Ok(fresh) => {
                    set_pid(fresh.pid);
                    *w = fresh;
                    job.status.lock().unwrap().0 = Status::Running { pid: w.pid };
                }
                Err(e) => {
                    worker = None;
                    set_pid(0);
                    job.complete(Err(e));
                    continue;
                }
            }
        }
        let payload = job.payload.lock().unwrap().take().unwrap_or_default();
        next_id += 1;
        let sent = w.send_task(next_id, job.tramp, job.func, payload);
        let outcome = match sent.and_then(|()| w.recv()) {
            Ok((_, Ok(bytes))) => Ok(bytes),
            Ok((_, Err(msg))) => Err(TaskError::Protocol(msg)),
            Err(_) => {
                let err = w.death(job.base);
                worker = None; // replaced before the next job
                set_pid(0);
                Err(err)
            }
        };
        job.complete(outcome);
    }
    if let Some(mut w) = worker {
        w.shutdown(Duration::from_secs(2));
    }
}

/// A pool of worker processes. See the [module docs](self).
pub struct Pool {
    shared: Arc<Shared>,
    drivers: Vec<JoinHandle<()>>,
    size: usize,
}

impl Pool {
    /// `n` workers started with the spawn method (`n == 0`: one per available core).
    /// The program's `main` must call [`crate::process::init`] first.
    pub fn new(n: usize) -> Result<Pool, TaskError> {
        Pool::with_method(n, StartMethod::Spawn)
    }

    /// `n` workers with the given start method. With `Fork`, create the pool before
    /// starting other threads (replacement workers are forked by the pool's own
    /// threads; see [`StartMethod::Fork`]).
    pub fn with_method(n: usize, method: StartMethod) -> Result<Pool, TaskError> {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            n
        };
        // Start every worker from this thread first (fork before any pool thread).
        let workers: Vec<Worker> = (0..n)
            .map(|_| start_worker(method))
            .collect::<Result<_, _>>()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            method,
            pids: Mutex::new(workers.iter().map(|w| w.pid).collect()),
        });
        let drivers = workers
            .into_iter()
            .enumerate()
            .map(|(slot, w)| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("shmarray-pool-{}", w.pid))
                    .spawn(move || drive(s, slot, w))
                    .map_err(TaskError::Io)
            })
            .collect::<Result<_, _>>()?;
        Ok(Pool {
            shared,
            drivers,
            size: n,
        })
    }

    /// Number of worker processes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Pids of the current workers (a worker being replaced is left out).
    pub fn worker_pids(&self) -> Vec<u32> {
        let pids = self.shared.pids.lock().unwrap();
        pids.iter().copied().filter(|&p| p != 0).collect()
    }

    fn enqueue(
        &self,
        base: usize,
        tramp: Trampoline,
        func: usize,
        payload: Vec<u8>,
        batch: Option<Arc<Latch>>,
    ) -> Result<Arc<Job>, TaskError> {
        let job = Arc::new(Job {
            base,
            tramp: offset_of_fn(tramp as usize),
            func: offset_of_fn(func),
            payload: Mutex::new(Some(payload)),
            status: Mutex::new((Status::Queued, false)),
            done: Condvar::new(),
            listener: Mutex::new(None),
            batch,
        });
        let mut q = self.shared.queue.lock().unwrap();
        if q.closed {
            return Err(TaskError::PoolClosed);
        }
        q.jobs.push_back(job.clone());
        drop(q);
        self.shared.ready.notify_one();
        Ok(job)
    }

    fn submit_chunk<A: Serialize, R>(
        &self,
        base: usize,
        tramp: Trampoline,
        func: usize,
        inputs: &[A],
        batch: Option<Arc<Latch>>,
    ) -> Result<Chunk<R>, TaskError> {
        let payload = encode(&inputs).map_err(TaskError::Protocol)?;
        Ok(Chunk {
            job: self.enqueue(base, tramp, func, payload, batch)?,
            len: inputs.len(),
            _r: PhantomData,
        })
    }

    /// Runs `f(arg)` in a worker; returns a future (Python's `executor.submit`).
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<TaskFuture<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let chunk = self.submit_chunk(0, call_fn::<A, R>, f as usize, &[arg], None)?;
        Ok(TaskFuture { chunk })
    }

    fn default_chunksize(&self, n: usize) -> usize {
        // Python's heuristic: about four chunks per worker.
        n.div_ceil(self.size * 4).max(1)
    }

    /// `f` over every input, results in input order; the first error (in input
    /// order) if any task failed. Chunk size: about four chunks per worker.
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
        self.map_async(f, inputs, cs)?.get(None)
    }

    /// `map` with an explicit `chunksize` (inputs per message to a worker).
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
        self.map_async(f, inputs, chunksize)?.get(None)
    }

    /// Starts a map and returns at once; collect with [`MapResult::get`].
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
        self.batch(call_fn::<A, R>, f as usize, &inputs, chunksize)
    }

    /// Submits `inputs` in chunks of `chunksize` as one batch.
    fn batch<A: Serialize, R>(
        &self,
        tramp: Trampoline,
        func: usize,
        inputs: &[A],
        chunksize: usize,
    ) -> Result<MapResult<R>, TaskError> {
        let cs = chunksize.max(1);
        let latch = Latch::new(inputs.len().div_ceil(cs));
        let mut chunks = Vec::with_capacity(inputs.len().div_ceil(cs));
        for (i, c) in inputs.chunks(cs).enumerate() {
            match self.submit_chunk(i * cs, tramp, func, c, Some(latch.clone())) {
                Ok(chunk) => chunks.push(chunk),
                Err(e) => {
                    // Nothing waits for a batch that is not returned: cancel what
                    // was queued so it does not run.
                    for c in &chunks {
                        c.job.cancel();
                    }
                    return Err(e);
                }
            }
        }
        Ok(MapResult { chunks, latch })
    }

    /// `f(a, b)` over pairs, in order (Python's `starmap`).
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
        self.batch(call_fn2::<A, B, R>, f as usize, &inputs, cs)?
            .get(None)
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
            f,
            inputs: inputs.into_iter(),
            chunksize: chunksize.max(1),
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            next_base: 0,
            unordered: None,
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

/// How long `drop` lets running tasks finish before it kills their workers.
const DROP_GRACE: Duration = Duration::from_secs(2);

impl Drop for Pool {
    /// Queued tasks fail with `PoolClosed`; running tasks get 2 seconds to
    /// finish, then their workers are SIGKILLed (their futures report `WorkerDied`).
    /// Every worker is reaped; dropping never hangs on a stuck task. Collect results
    /// before dropping the pool if you need them.
    fn drop(&mut self) {
        {
            let mut q = self.shared.queue.lock().unwrap();
            q.closed = true;
            for j in q.jobs.drain(..) {
                j.complete(Err(TaskError::PoolClosed));
            }
        }
        self.shared.ready.notify_all();
        let deadline = Instant::now() + DROP_GRACE;
        while Instant::now() < deadline && !self.drivers.iter().all(|d| d.is_finished()) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if !self.drivers.iter().all(|d| d.is_finished()) {
            for pid in self.worker_pids() {
                crate::process::kill_pid(pid);
            }
        }
        for d in self.drivers.drain(..) {
            let _ = d.join();
        }
    }
}

/// A chunk of a batch, typed by its result.
struct Chunk<R> {
    job: Arc<Job>,
    len: usize,
    _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Chunk<R> {
    /// One outcome per input of the chunk.
    fn results(&self, timeout: Option<Duration>) -> Result<Vec<Result<R, TaskError>>, TaskError> {
        let base = self.job.base;
        match self.job.wait(timeout) {
            Ok(bytes) => {
                let items: Vec<ItemOutcome<R>> = decode(&bytes).map_err(TaskError::Protocol)?;
                Ok(items
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        r.map_err(|message| TaskError::Panicked {
                            task: base + i,
                            message,
                        })
                    })
                    .collect())
            }
            Err(e @ TaskError::Timeout(_)) => Err(e),
            // The whole chunk failed (worker died, cancelled, ...): one error per input.
            Err(e) => {
                let mut v = Vec::with_capacity(self.len);
                v.push(Err(e.clone_for(base)));
                for i in 1..self.len {
                    v.push(Err(e.clone_for(base + i)));
                }
                Ok(v)
            }
        }
    }
}

impl TaskError {
    /// The same failure, attributed to input `task` (a whole chunk fails together).
    fn clone_for(&self, task: usize) -> TaskError {
        match self {
            TaskError::WorkerDied {
                pid, signal, code, ..
            } => TaskError::WorkerDied {
                task,
                pid: *pid,
                signal: *signal,
                code: *code,
            },
            TaskError::Cancelled { .. } => TaskError::Cancelled { task },
            TaskError::Panicked { message, .. } => TaskError::Panicked {
                task,
                message: message.clone(),
            },
            TaskError::Timeout(d) => TaskError::Timeout(*d),
            TaskError::Protocol(s) => TaskError::Protocol(s.clone()),
            TaskError::Io(e) => TaskError::Io(std::io::Error::new(e.kind(), e.to_string())),
            TaskError::PoolClosed => TaskError::PoolClosed,
            TaskError::Array(s) => TaskError::Array(s.clone()),
        }
    }
}

/// The result of [`Pool::submit`] (Python's `concurrent.futures.Future`).
pub struct TaskFuture<R> {
    chunk: Chunk<R>,
}

impl<R: DeserializeOwned> TaskFuture<R> {
    /// Waits for the result, at most `timeout` (`None`: forever). `Timeout` leaves
    /// the task running; call again or `cancel`.
    pub fn result(&self, timeout: Option<Duration>) -> Result<R, TaskError> {
        self.chunk
            .results(timeout)?
            .pop()
            .unwrap_or(Err(TaskError::Protocol("empty result".into())))
    }

    /// Whether the task has finished (result, error or cancelled).
    pub fn done(&self) -> bool {
        self.chunk.job.is_done()
    }

    /// Cancels the task: a queued task never runs; a running task's worker is
    /// killed and replaced. Returns false if it had already finished.
    pub fn cancel(&self) -> bool {
        self.chunk.job.cancel()
    }
}

/// Yields `(index, result)` for each future as it completes (Python's
/// `concurrent.futures.as_completed`). Each future's result is taken once.
pub fn as_completed<R: DeserializeOwned>(
    futures: &[TaskFuture<R>],
) -> impl Iterator<Item = (usize, Result<R, TaskError>)> + '_ {
    let (tx, rx) = mpsc::channel();
    for (i, f) in futures.iter().enumerate() {
        f.chunk.job.set_listener(tx.clone(), i);
    }
    drop(tx);
    rx.into_iter().map(move |i| (i, futures[i].result(None)))
}

/// The result of [`Pool::map_async`] (Python's `AsyncResult`).
pub struct MapResult<R> {
    chunks: Vec<Chunk<R>>,
    latch: Arc<Latch>,
}

impl<R: DeserializeOwned> MapResult<R> {
    /// Whether every chunk has finished.
    pub fn ready(&self) -> bool {
        self.latch.is_open()
    }

    /// All results in input order, or the first error; `Timeout` if not all done
    /// within `timeout` (then call again: nothing is lost).
    pub fn get(&self, timeout: Option<Duration>) -> Result<Vec<R>, TaskError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        if !self.latch.wait(deadline) {
            return Err(TaskError::Timeout(timeout.unwrap_or_default()));
        }
        let mut out = Vec::new();
        for c in &self.chunks {
            for r in c.results(None)? {
                out.push(r?);
            }
        }
        Ok(out)
    }
}

/// Iterator of [`Pool::imap`] / [`Pool::imap_unordered`].
pub struct Imap<'p, A, R, I> {
    pool: &'p Pool,
    f: fn(A) -> R,
    inputs: I,
    chunksize: usize,
    in_flight: VecDeque<Chunk<R>>,
    ready: VecDeque<(usize, Result<R, TaskError>)>,
    next_base: usize,
    unordered: Option<(Sender<usize>, Receiver<usize>)>,
}

impl<A, R, I> Imap<'_, A, R, I>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
    I: Iterator<Item = A>,
{
    fn refill(&mut self) {
        while self.in_flight.len() < 2 * self.pool.size {
            let batch: Vec<A> = self.inputs.by_ref().take(self.chunksize).collect();
            if batch.is_empty() {
                return;
            }
            let base = self.next_base;
            self.next_base += batch.len();
            match self
                .pool
                .submit_chunk(base, call_fn::<A, R>, self.f as usize, &batch, None)
            {
                Ok(c) => {
                    if let Some((tx, _)) = &self.unordered {
                        c.job.set_listener(tx.clone(), base);
                    }
                    self.in_flight.push_back(c);
                }
                Err(e) => {
                    for i in 0..batch.len() {
                        self.ready.push_back((base + i, Err(e.clone_for(base + i))));
                    }
                }
            }
        }
    }

    fn take_chunk(&mut self, pos: usize) {
        if let Some(c) = self.in_flight.remove(pos) {
            let base = c.job.base;
            match c.results(None) {
                Ok(rs) => self
                    .ready
                    .extend(rs.into_iter().enumerate().map(|(i, r)| (base + i, r))),
                Err(e) => self.ready.push_back((base, Err(e))),
            }
        }
    }
}

impl<A, R, I> Iterator for Imap<'_, A, R, I>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
    I: Iterator<Item = A>,
{
    /// `(input index, result)`.
    type Item = (usize, Result<R, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            self.refill();
            if self.in_flight.is_empty() {
                return self.ready.pop_front();
            }
            let pos = match &self.unordered {
                None => 0,
                Some((_, rx)) => {
                    let base = rx.recv().ok()?;
                    self.in_flight
                        .iter()
                        .position(|c| c.job.base == base)
                        .unwrap_or(0)
                }
            };
            self.take_chunk(pos);
        }
    }
}
