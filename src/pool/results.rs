//! What the pool hands back: [`TaskFuture`] (`submit`), [`MapResult`]
//! (`map_async`), [`as_completed`], and the lazy [`Imap`] iterator.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::job::{Job, Latch};
use super::Pool;
use crate::process::lane::Bytes;
use crate::process::{decode, ItemOutcome, TaskError, TaskOffsets};
use crate::sync::Wait;

/// A chunk of a batch, typed by its result.
pub(crate) struct Chunk<R> {
    pub(crate) job: Arc<Job>,
    pub(crate) len: usize,
    pub(crate) _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Chunk<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("base", &self.job.base)
            .field("len", &self.len)
            .field("done", &self.job.is_done())
            .finish()
    }
}

impl<R: DeserializeOwned> Chunk<R> {
    /// One outcome per input of the chunk.
    pub(crate) fn results(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Vec<Result<R, TaskError>>, TaskError> {
        let base = self.job.base;
        match self.job.wait(timeout) {
            Ok(bytes) => {
                let items: Vec<ItemOutcome<R>> =
                    decode(&bytes).map_err(|message| TaskError::Serialization { message })?;
                Ok(items
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| r.map_err(|f| f.into_error(base + i)))
                    .collect())
            }
            Err(e @ TaskError::Timeout(_)) => Err(e),
            // The whole chunk failed (worker died, cancelled, ...): one error per input.
            Err(e) => Ok((0..self.len).map(|i| Err(e.clone_for(base + i))).collect()),
        }
    }
}

impl<R: DeserializeOwned> Chunk<R> {
    /// Appends the finished chunk's results to `out`; the first failed input's
    /// error instead, if any.
    fn take_into(
        &self,
        outcome: Result<Bytes, TaskError>,
        out: &mut Vec<R>,
    ) -> Result<(), TaskError> {
        let base = self.job.base;
        match outcome {
            Ok(bytes) => {
                let items: Vec<ItemOutcome<R>> =
                    decode(&bytes).map_err(|message| TaskError::Serialization { message })?;
                for (i, r) in items.into_iter().enumerate() {
                    out.push(r.map_err(|f| f.into_error(base + i))?);
                }
                Ok(())
            }
            Err(e) => Err(e.clone_for(base)),
        }
    }
}

/// The result of [`Pool::submit`] (Python's `concurrent.futures.Future`).
///
/// ```
/// use std::time::Duration;
/// use shmarray::pool::{Pool, TaskError};
///
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// fn main() -> Result<(), TaskError> {
///     shmarray::init(); // in a worker, this runs the worker loop and exits
///     let pool = Pool::new(1)?;
///     let long = pool.submit(nap, 300)?;
///     let queued = pool.submit(nap, 0)?; // one worker: waits behind `long`
///     assert!(queued.cancel()); // it never runs
///     assert!(matches!(queued.result(), Err(TaskError::Cancelled { .. })));
///     // A timeout leaves the task running: ask again.
///     let waited = long.result_timeout(Duration::from_millis(1));
///     assert!(matches!(waited, Err(TaskError::Timeout(_))));
///     assert_eq!(long.result()?, 300);
///     assert!(long.done());
///     Ok(())
/// }
/// ```
#[must_use = "a TaskFuture does nothing unless its result is collected (or it is cancelled)"]
#[derive(Debug)]
pub struct TaskFuture<R> {
    pub(crate) chunk: Chunk<R>,
}

impl<R: DeserializeOwned> TaskFuture<R> {
    /// Waits for the result.
    ///
    /// # Errors
    /// The task's failure ([`TaskError::Panicked`], [`TaskError::WorkerDied`],
    /// [`TaskError::Cancelled`], [`TaskError::PoolClosed`], ...).
    pub fn result(&self) -> Result<R, TaskError> {
        self.result_within(None)
    }

    /// Waits for the result at most `timeout`. `Timeout` leaves the task running;
    /// call again or `cancel`.
    ///
    /// # Errors
    /// As [`result`](Self::result), and [`TaskError::Timeout`].
    pub fn result_timeout(&self, timeout: Duration) -> Result<R, TaskError> {
        self.result_within(Some(timeout))
    }

    fn result_within(&self, timeout: Option<Duration>) -> Result<R, TaskError> {
        self.chunk
            .results(timeout)?
            .pop()
            .unwrap_or(Err(TaskError::Protocol("empty result".into())))
    }

    /// Whether the task has finished (result, error or cancelled).
    pub fn done(&self) -> bool {
        self.chunk.job.is_done()
    }

    /// Cancels the task: a task still waiting (in the pool's queue, or in a
    /// worker's lane behind the task it runs) never runs; a running task's
    /// worker is killed with its process group (whatever the task started) and
    /// replaced.
    /// Returns at once, false if the task had already finished. The future then
    /// completes with [`TaskError::Cancelled`] as soon as the pool has seen the
    /// worker die: at once, or within about 50 ms when a process the task started
    /// (and moved out of the worker's group) still holds the worker's socket open.
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
    rx.into_iter().map(move |i| (i, futures[i].result()))
}

/// The result of [`Pool::map_async`] (Python's `AsyncResult`).
///
/// ```
/// use std::time::Duration;
/// use shmarray::pool::{MapResult, Pool, TaskError};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), TaskError> {
///     shmarray::init(); // in a worker, this runs the worker loop and exits
///     let pool = Pool::new(2)?;
///     // Submitted in chunks of 2; the caller goes on meanwhile.
///     let r: MapResult<u64> = pool.map_async(square, (1..=6).collect(), 2)?;
///     let all = loop {
///         match r.get_timeout(Duration::from_millis(50)) {
///             Err(TaskError::Timeout(_)) => continue, // nothing is lost: ask again
///             other => break other?,
///         }
///     };
///     assert_eq!(all, [1, 4, 9, 16, 25, 36]); // in input order
///     assert!(r.ready());
///     Ok(())
/// }
/// ```
#[must_use = "a MapResult does nothing unless its results are collected"]
#[derive(Debug)]
pub struct MapResult<R> {
    pub(crate) chunks: Vec<Chunk<R>>,
    pub(crate) latch: Arc<Latch>,
}

impl<R: DeserializeOwned> MapResult<R> {
    /// Whether every chunk has finished.
    pub fn ready(&self) -> bool {
        self.latch.is_open()
    }

    /// All results in input order, or the first error.
    ///
    /// # Errors
    /// The first failed input's error (in input order).
    pub fn get(&self) -> Result<Vec<R>, TaskError> {
        self.get_within(None)
    }

    /// As [`get`](Self::get), or `Timeout` if not all are done within `timeout`
    /// (then call again: nothing is lost).
    ///
    /// # Errors
    /// As [`get`](Self::get), and [`TaskError::Timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<R>, TaskError> {
        self.get_within(Some(timeout))
    }

    fn get_within(&self, timeout: Option<Duration>) -> Result<Vec<R>, TaskError> {
        if timeout.is_some() {
            // A timeout must leave every result in place for the next call.
            if !self.latch.wait(Wait::optional(timeout)) {
                return Err(TaskError::Timeout(timeout.unwrap_or_default()));
            }
        }
        // Results are taken in input order as their chunks finish, while later
        // chunks still run (woken every `STEP` finished chunks, not per chunk).
        const STEP: usize = 1024;
        let mut out = Vec::with_capacity(self.chunks.iter().map(|c| c.len).sum());
        let mut first_error = None;
        for c in &self.chunks {
            let outcome = loop {
                match c.job.try_take() {
                    Some(o) => break o,
                    None => {
                        let target = self.latch.left().saturating_sub(STEP);
                        self.latch.wait_for(target, Wait::Forever);
                    }
                }
            };
            if first_error.is_some() {
                continue;
            }
            if let Err(e) = c.take_into(outcome, &mut out) {
                first_error = Some(e);
            }
        }
        // Like before: `map` returns once every chunk has finished.
        self.latch.wait(Wait::Forever);
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Iterator of [`Pool::imap`] / [`Pool::imap_unordered`]: yields
/// `(input index, result)`.
///
/// ```
/// use shmarray::pool::{Pool, TaskError};
///
/// fn checked_half(x: u32) -> Result<u32, String> {
///     if x % 2 == 0 { Ok(x / 2) } else { Err(format!("{x} is odd")) }
/// }
///
/// fn main() -> Result<(), TaskError> {
///     shmarray::init(); // in a worker, this runs the worker loop and exits
///     let pool = Pool::new(2)?;
///     // Inputs are submitted as the iterator is consumed (chunks of 2 here), so an
///     // endless input works; each item carries its input's index.
///     let mut halves = pool.imap(checked_half, (0..).step_by(3), 2);
///     let first: Vec<(usize, Result<u32, String>)> =
///         halves.by_ref().take(3).map(|(i, r)| r.map(|h| (i, h))).collect::<Result<_, _>>()?;
///     assert_eq!(first[0], (0, Ok(0)));
///     assert_eq!(first[1], (1, Err("3 is odd".into())));
///     assert_eq!(first[2], (2, Ok(3)));
///     // Unordered: as the workers finish them.
///     let mut any: Vec<_> = pool.imap_unordered(checked_half, [2, 4, 8], 1).collect();
///     any.sort_by_key(|(i, _)| *i);
///     assert_eq!(any.into_iter().map(|(_, r)| r.unwrap().unwrap()).collect::<Vec<_>>(), [1, 2, 4]);
///     Ok(())
/// }
/// ```
#[must_use = "iterators are lazy: nothing is submitted until it is iterated"]
pub struct Imap<'p, A, R, I> {
    pub(crate) pool: &'p Pool,
    pub(crate) task: Result<TaskOffsets, TaskError>,
    pub(crate) inputs: I,
    pub(crate) chunksize: usize,
    pub(crate) in_flight: VecDeque<Chunk<R>>,
    pub(crate) ready: VecDeque<(usize, Result<R, TaskError>)>,
    pub(crate) next_base: usize,
    pub(crate) unordered: Option<(Sender<usize>, Receiver<usize>)>,
    pub(crate) _a: PhantomData<fn(A)>,
}

impl<A, R, I> std::fmt::Debug for Imap<'_, A, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("chunksize", &self.chunksize)
            .field("in_flight", &self.in_flight.len())
            .field("ready", &self.ready.len())
            .field("next_index", &self.next_base)
            .field("unordered", &self.unordered.is_some())
            .finish_non_exhaustive()
    }
}

impl<A, R, I> Imap<'_, A, R, I>
where
    A: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = A>,
{
    fn refill(&mut self) {
        while self.in_flight.len() < 2 * self.pool.size() {
            let batch: Vec<A> = self.inputs.by_ref().take(self.chunksize).collect();
            if batch.is_empty() {
                return;
            }
            let base = self.next_base;
            self.next_base += batch.len();
            let submitted = match &self.task {
                Ok(task) => self.pool.submit_chunk(base, *task, &batch, None),
                Err(e) => Err(e.clone_for(base)),
            };
            match submitted {
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
    A: Serialize,
    R: DeserializeOwned,
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
