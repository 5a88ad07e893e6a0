//! A job (one chunk of inputs for one worker) and its state machine, and the latch
//! that wakes whoever waits for a whole batch once.
//!
//! ```text
//! Queued ──a driver puts it in its worker's lane──▶ Sent(lane) ──result──▶ Done ──wait()──▶ Taken
//!   ▲ │                                               │   └──worker died having begun it──▶ Done(WorkerDied)
//!   │ └──cancel()──▶ Done(Cancelled)                  │
//!   └─────────── taken back: not begun when its worker died, or revoked from the
//!                lane (stolen by an idle worker's driver, cancel of another job)
//! ```
//! A cancel flag set in any state before `Done` turns the outcome into `Cancelled`.
//! A job goes back to `Queued` only if its worker never began it (the lane's
//! started word, or a record the worker had not taken), so a task that may have
//! run is never run again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::lanes::Lane;
use crate::process::lane::Bytes;
pub(crate) use crate::process::lock;
use crate::process::{TaskError, TaskOffsets};
use crate::sync::Wait;

#[derive(Debug)]
enum Status {
    Queued,
    /// In a worker's lane: perhaps waiting there, perhaps running.
    Sent(Arc<Lane>),
    Done(Result<Bytes, TaskError>),
    Taken,
}

/// What [`Job::start_with`] did.
pub(crate) enum Start<T> {
    Sent(T),
    /// Cancelled (and completed) meanwhile: not sent.
    Cancelled,
    /// The sender could not take it now: still queued.
    Refused,
}

#[derive(Debug)]
struct State {
    status: Status,
    /// The encoded inputs, kept until the outcome is taken (to send the job
    /// again if its worker never began it).
    payload: Option<Vec<u8>>,
    /// Cancel requested.
    cancel: bool,
    /// Threads blocked in `wait` (completion signals the condvar only then).
    waiters: u32,
}

/// One unit of work sent to a worker: a serialized chunk of inputs.
#[derive(Debug)]
pub(crate) struct Job {
    /// Index of the chunk's first input in its batch (for error messages).
    pub(crate) base: usize,
    pub(crate) task: TaskOffsets,
    state: Mutex<State>,
    /// Workers that died holding this job before they began it.
    lost_deliveries: Mutex<u32>,
    done: Condvar,
    listener: Mutex<Option<(Sender<usize>, usize)>>,
    /// A listener was ever set (completion skips its lock otherwise).
    listened: AtomicBool,
    /// The batch this job belongs to (`map`, `starmap`, `map_async`), if any.
    batch: Option<Arc<Latch>>,
}

impl Job {
    pub(crate) fn new(
        base: usize,
        task: TaskOffsets,
        payload: Vec<u8>,
        batch: Option<Arc<Latch>>,
    ) -> Arc<Job> {
        Arc::new(Job {
            base,
            task,
            state: Mutex::new(State {
                status: Status::Queued,
                payload: Some(payload),
                cancel: false,
                waiters: 0,
            }),
            lost_deliveries: Mutex::new(0),
            done: Condvar::new(),
            listener: Mutex::new(None),
            listened: AtomicBool::new(false),
            batch,
        })
    }

    /// Runs `f` on the encoded inputs.
    #[cfg(test)]
    pub(crate) fn with_payload<T>(&self, f: impl FnOnce(&[u8]) -> T) -> T {
        f(lock(&self.state).payload.as_deref().unwrap_or_default())
    }

    /// Whether the job is still queued and not cancelled (worth starting a worker).
    pub(crate) fn is_pending(&self) -> bool {
        let st = lock(&self.state);
        !st.cancel && matches!(st.status, Status::Queued)
    }

    /// The batch this job belongs to, if any.
    pub(crate) fn batch(&self) -> Option<&Arc<Latch>> {
        self.batch.as_ref()
    }

    /// Marks the job as sent to `lane`; `false` if it was cancelled.
    #[cfg(test)]
    pub(crate) fn start(&self, lane: &Arc<Lane>) -> bool {
        matches!(self.start_with(lane, |_| Some(())), Start::Sent(()))
    }

    /// Sends the job with `send` (given the encoded inputs; `None`: it could
    /// not be sent now) and marks it as sent to `lane`, under one lock.
    pub(crate) fn start_with<T>(
        &self,
        lane: &Arc<Lane>,
        send: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Start<T> {
        let mut st = lock(&self.state);
        if st.cancel || !matches!(st.status, Status::Queued) {
            return Start::Cancelled;
        }
        match send(st.payload.as_deref().unwrap_or_default()) {
            Some(t) => {
                st.status = Status::Sent(lane.clone());
                Start::Sent(t)
            }
            None => Start::Refused,
        }
    }

    /// The job never began in its worker: back to `Queued`, to run on another
    /// worker. `lost`: its worker died holding it (counted: see
    /// `MAX_LOST_DELIVERIES`), rather than the pool taking it back from a live
    /// worker's lane. Returns how many workers have died so with it, or `None` if
    /// it was cancelled meanwhile (then it is completed as `Cancelled` here).
    pub(crate) fn requeue(&self, lost: bool) -> Option<u32> {
        let mut st = lock(&self.state);
        if st.cancel {
            drop(st);
            self.complete(Err(TaskError::Cancelled { task: self.base }));
            return None;
        }
        st.status = Status::Queued;
        let mut n = lock(&self.lost_deliveries);
        if lost {
            *n += 1;
        }
        Some(*n)
    }

    /// Records the outcome, once: a job cancelled while queued is completed then,
    /// and must not be completed again when a driver or `Drop` meets it later.
    pub(crate) fn complete(&self, outcome: Result<Bytes, TaskError>) {
        if let Some(b) = self.finish(outcome) {
            b.count_down(1);
        }
    }

    /// [`complete`](Self::complete) but for the batch's count: the batch to count
    /// down if this call completed the job (a driver counts a run of one batch's
    /// jobs down at once).
    pub(crate) fn finish(&self, outcome: Result<Bytes, TaskError>) -> Option<&Arc<Latch>> {
        let mut st = lock(&self.state);
        if matches!(st.status, Status::Done(_) | Status::Taken) {
            return None;
        }
        let outcome = if st.cancel {
            Err(TaskError::Cancelled { task: self.base })
        } else {
            outcome
        };
        st.status = Status::Done(outcome);
        let waiters = st.waiters > 0;
        drop(st);
        if waiters {
            self.done.notify_all();
        }
        if self.listened.load(Ordering::Acquire) {
            if let Some((tx, idx)) = lock(&self.listener).take() {
                let _ = tx.send(idx);
            }
        }
        self.batch.as_ref()
    }

    /// Waits for the outcome; `Timeout` leaves the job running.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<Bytes, TaskError> {
        let deadline = Wait::optional(timeout);
        let finished = |st: &State| matches!(st.status, Status::Done(_) | Status::Taken);
        let mut st = lock(&self.state);
        st.waiters += 1;
        while !finished(&st) {
            st = match deadline.remaining() {
                None => self
                    .done
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(left) if left.is_zero() => break,
                Some(left) => {
                    self.done
                        .wait_timeout(st, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
        st.waiters -= 1;
        if !finished(&st) {
            return Err(TaskError::Timeout(timeout.unwrap_or_default()));
        }
        Job::take(&mut st)
    }

    /// The outcome, if the job is done (taken: a second call is an error).
    pub(crate) fn try_take(&self) -> Option<Result<Bytes, TaskError>> {
        let mut st = lock(&self.state);
        matches!(st.status, Status::Done(_) | Status::Taken).then(|| Job::take(&mut st))
    }

    fn take(st: &mut State) -> Result<Bytes, TaskError> {
        // Freed here, usually by the thread that encoded it (cheaper for malloc).
        st.payload = None;
        match std::mem::replace(&mut st.status, Status::Taken) {
            Status::Done(o) => o,
            _ => Err(TaskError::Protocol("result already taken".into())),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(lock(&self.state).status, Status::Done(_) | Status::Taken)
    }

    /// Cancels: a queued job never runs; one in a worker's lane is taken back if
    /// the worker has not taken it yet, else its worker's process group is killed
    /// (the pool replaces the worker). `false` if already finished.
    pub(crate) fn cancel(&self) -> bool {
        let mut st = lock(&self.state);
        match &st.status {
            Status::Queued => {
                st.cancel = true;
                drop(st);
                self.complete(Err(TaskError::Cancelled { task: self.base }));
                true
            }
            Status::Sent(lane) => {
                let lane = lane.clone();
                st.cancel = true;
                drop(st);
                lane.cancel(self);
                true
            }
            Status::Done(_) | Status::Taken => false,
        }
    }

    pub(crate) fn set_listener(&self, tx: Sender<usize>, idx: usize) {
        *lock(&self.listener) = Some((tx, idx));
        // SeqCst on both sides with the status lock in between: either `complete`
        // sees the flag, or this sees the job done below.
        self.listened.store(true, Ordering::SeqCst);
        if self.is_done() {
            if let Some((tx, idx)) = lock(&self.listener).take() {
                let _ = tx.send(idx);
            }
        }
    }
}

/// Counts a batch's unfinished jobs, so whoever waits for the whole batch is woken
/// once, when the last job finishes, not once per job (or once per so many jobs,
/// when it asked to take results as they come).
///
/// ## Memory ordering
/// A waiter stores its threshold in `wake_at`, then reads `left`; a finishing job
/// decrements `left`, then reads `wake_at` (all SeqCst): one of the two sees the
/// other. The finisher then takes the lock before it notifies, and the waiter
/// holds it from its check until it waits, so the notification is not lost.
#[derive(Debug)]
pub(crate) struct Latch {
    left: AtomicUsize,
    /// Wake waiters once `left` is at most this (0: only when all are done).
    wake_at: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Latch {
    pub(crate) fn new(n: usize) -> Arc<Latch> {
        Arc::new(Latch {
            left: AtomicUsize::new(n),
            wake_at: AtomicUsize::new(0),
            lock: Mutex::new(()),
            zero: Condvar::new(),
        })
    }

    /// `n` more jobs finished.
    pub(crate) fn count_down(&self, n: usize) {
        let Ok(before) = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(n))
        else {
            return;
        };
        let now = before - n;
        if now == 0 || now <= self.wake_at.load(Ordering::SeqCst) {
            let _g = lock(&self.lock);
            self.zero.notify_all();
        }
    }

    /// Jobs not finished yet.
    pub(crate) fn left(&self) -> usize {
        self.left.load(Ordering::SeqCst)
    }

    pub(crate) fn is_open(&self) -> bool {
        self.left() == 0
    }

    /// Waits until every job finished; `false` if `deadline` ran out first.
    pub(crate) fn wait(&self, deadline: Wait) -> bool {
        self.wait_for(0, deadline)
    }

    /// Waits until at most `target` jobs are unfinished; `false` if `deadline`
    /// ran out first.
    pub(crate) fn wait_for(&self, target: usize, deadline: Wait) -> bool {
        if self.left() <= target {
            return true;
        }
        let mut g = lock(&self.lock);
        let reached = loop {
            self.wake_at.fetch_max(target, Ordering::SeqCst);
            if self.left() <= target {
                break true;
            }
            g = match deadline.remaining() {
                None => self
                    .zero
                    .wait(g)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(left) if left.is_zero() => break false,
                Some(left) => {
                    self.zero
                        .wait_timeout(g, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        };
        // Another waiter's threshold may be lost here: it is then woken at the
        // end at the latest (0 always wakes), which is correct, only later.
        self.wake_at.store(0, Ordering::SeqCst);
        drop(g);
        reached
    }
}
