//! A job (one chunk of inputs for one worker) and its state machine, and the latch
//! that wakes whoever waits for a whole batch once.
//!
//! ```text
//! Queued ──driver takes it──▶ Running{pid} ──result──────────▶ Done ──wait()──▶ Taken
//!   ▲ │                         │      └──worker died──▶ Ending ──reaped──▶ Done
//!   │ └──cancel()──▶ Done(Cancelled)    cancel(): kill the worker's group; the
//!   │                                   driver then completes it as Cancelled
//!   └──────────── Ending ◀── the worker died before it began the task (requeue)
//! ```
//! A cancel flag set in any state before `Done` turns the outcome into `Cancelled`.
//! A job goes back to `Queued` only if its worker never began it (see the started
//! page in `process`), so a task that may have run is never run again.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub(crate) use crate::process::lock;
use crate::process::{wait_until, TaskError, TaskOffsets};
use crate::sync::Wait;
use crate::sys::process as sys;

#[derive(Debug)]
enum Status {
    Queued,
    Running {
        pid: u32,
    },
    /// The worker died; its driver is reaping it (its pid must not be signalled).
    Ending,
    Done(Result<Vec<u8>, TaskError>),
    Taken,
}

/// One unit of work sent to a worker: a serialized chunk of inputs.
#[derive(Debug)]
pub(crate) struct Job {
    /// Index of the chunk's first input in its batch (for error messages).
    pub(crate) base: usize,
    pub(crate) task: TaskOffsets,
    payload: Mutex<Option<Vec<u8>>>,
    status: Mutex<(Status, bool)>, // (status, cancel requested)
    /// Workers that died holding this job before they began it.
    lost_deliveries: Mutex<u32>,
    done: Condvar,
    listener: Mutex<Option<(Sender<usize>, usize)>>,
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
            payload: Mutex::new(Some(payload)),
            status: Mutex::new((Status::Queued, false)),
            lost_deliveries: Mutex::new(0),
            done: Condvar::new(),
            listener: Mutex::new(None),
            batch,
        })
    }

    pub(crate) fn take_payload(&self) -> Vec<u8> {
        lock(&self.payload).take().unwrap_or_default()
    }

    /// Whether the job is still queued and not cancelled (worth starting a worker).
    pub(crate) fn is_pending(&self) -> bool {
        let st = lock(&self.status);
        !st.1 && matches!(st.0, Status::Queued)
    }

    /// Marks the job as running on worker `pid`; `false` if it was cancelled.
    pub(crate) fn start(&self, pid: u32) -> bool {
        let mut st = lock(&self.status);
        if st.1 || !matches!(st.0, Status::Queued) {
            return false;
        }
        st.0 = Status::Running { pid };
        true
    }

    /// The job's worker died before it began the job: back to `Queued` with its
    /// payload, to run on another worker. Returns how many workers have died so
    /// with it, or `None` if it was cancelled meanwhile (then it is completed as
    /// `Cancelled` here).
    pub(crate) fn requeue(&self, payload: Vec<u8>) -> Option<u32> {
        let mut st = lock(&self.status);
        if st.1 {
            drop(st);
            self.complete(Err(TaskError::Cancelled { task: self.base }));
            return None;
        }
        *lock(&self.payload) = Some(payload);
        st.0 = Status::Queued;
        let mut lost = lock(&self.lost_deliveries);
        *lost += 1;
        Some(*lost)
    }

    /// The job's worker died: from now on `cancel` must not signal its pid.
    pub(crate) fn ending(&self) {
        let mut st = lock(&self.status);
        if matches!(st.0, Status::Running { .. }) {
            st.0 = Status::Ending;
        }
    }

    /// Records the outcome, once: a job cancelled while queued is completed then,
    /// and must not be completed again when a driver or `Drop` meets it later.
    pub(crate) fn complete(&self, outcome: Result<Vec<u8>, TaskError>) {
        let mut st = lock(&self.status);
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
        if let Some((tx, idx)) = lock(&self.listener).take() {
            let _ = tx.send(idx);
        }
        if let Some(b) = &self.batch {
            b.count_down();
        }
    }

    /// Waits for the outcome; `Timeout` leaves the job running.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<Vec<u8>, TaskError> {
        let deadline = Wait::optional(timeout);
        let finished = |st: &(Status, bool)| matches!(st.0, Status::Done(_) | Status::Taken);
        let Some(mut st) = wait_until(&self.done, lock(&self.status), deadline, finished) else {
            return Err(TaskError::Timeout(timeout.unwrap_or_default()));
        };
        match std::mem::replace(&mut st.0, Status::Taken) {
            Status::Done(o) => o,
            _ => Err(TaskError::Protocol("result already taken".into())),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(lock(&self.status).0, Status::Done(_) | Status::Taken)
    }

    /// Cancels: a queued job never runs; a running one has its worker's process
    /// group killed (the pool replaces the worker). `false` if already finished.
    pub(crate) fn cancel(&self) -> bool {
        let mut st = lock(&self.status);
        match st.0 {
            Status::Queued => {
                st.1 = true;
                drop(st);
                self.complete(Err(TaskError::Cancelled { task: self.base }));
                true
            }
            Status::Running { pid } => {
                st.1 = true;
                // Signalled under the lock: the driver cannot reap the pid meanwhile
                // (it moves the job to `Ending` first), so the pid is still ours.
                sys::kill_group(pid);
                true
            }
            Status::Ending => {
                st.1 = true;
                true
            }
            Status::Done(_) | Status::Taken => false,
        }
    }

    pub(crate) fn set_listener(&self, tx: Sender<usize>, idx: usize) {
        *lock(&self.listener) = Some((tx, idx));
        if self.is_done() {
            if let Some((tx, idx)) = lock(&self.listener).take() {
                let _ = tx.send(idx);
            }
        }
    }
}

/// Counts a batch's unfinished jobs, so whoever waits for the whole batch is woken
/// once, when the last job finishes, not once per job.
#[derive(Debug)]
pub(crate) struct Latch {
    left: Mutex<usize>,
    zero: Condvar,
}

impl Latch {
    pub(crate) fn new(n: usize) -> Arc<Latch> {
        Arc::new(Latch {
            left: Mutex::new(n),
            zero: Condvar::new(),
        })
    }

    fn count_down(&self) {
        let mut left = lock(&self.left);
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.zero.notify_all();
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        *lock(&self.left) == 0
    }

    /// Waits until every job finished; `false` if `deadline` ran out first.
    pub(crate) fn wait(&self, deadline: Wait) -> bool {
        wait_until(&self.zero, lock(&self.left), deadline, |left| *left == 0).is_some()
    }
}
