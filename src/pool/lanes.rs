//! The pool's side of its workers' lanes (see `process::lane` for the shared
//! memory): which jobs sit in each lane, and taking not-yet-taken ones back — for
//! a cancel, for an idle driver whose peer's worker is stuck on a long task (work
//! stealing), and when the pool closes.
//!
//! A lane's state is locked briefly by its driver (to drain results and refill),
//! and by whoever takes jobs back; nobody blocks while holding it. Lock order:
//! a lane, then the pool's queue; a job's own lock is never held while taking a
//! lane's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::driver::Shared;
use super::job::{lock, Job};
use crate::process::{lane, TaskError};
use crate::sys::process as sys;

/// How long a worker must have been on one task before an idle driver takes back
/// the jobs waiting behind it.
pub(crate) const STEAL_AFTER: Duration = Duration::from_millis(1);

/// A job in a lane.
#[derive(Debug)]
pub(crate) struct Sent {
    /// Its task id in the lane (ids grow).
    pub(crate) id: u64,
    pub(crate) job: Arc<Job>,
    /// Sent over the socket (too large for the ring); such a job is alone in
    /// the lane.
    pub(crate) socket: bool,
}

#[derive(Debug)]
pub(crate) struct LaneState {
    /// The pool's end of the current worker's lane (`None`: no worker, or one
    /// started without a lane, which then gets one job at a time over the socket).
    pub(crate) sender: Option<lane::Sender>,
    /// The current worker's pid.
    pub(crate) pid: u32,
    /// The worker may be signalled: it is neither reaped nor being reaped.
    pub(crate) live: bool,
    /// Jobs sent and not completed, oldest (lowest id) first.
    pub(crate) sent: VecDeque<Sent>,
    /// Ids for jobs sent over the socket when there is no lane.
    next_id: u64,
    /// The started word a would-be thief saw last, and since when.
    seen: (u64, Instant),
}

impl LaneState {
    /// A fresh task id.
    pub(crate) fn next_id(&mut self) -> u64 {
        match &mut self.sender {
            Some(s) => s.next_id(),
            None => {
                self.next_id += 1;
                self.next_id
            }
        }
    }

    /// The id of the task the worker began last (0: none, or no lane).
    fn started(&self) -> u64 {
        self.sender.as_ref().map_or(0, |s| s.mem().started())
    }

    /// Takes back every job the worker has not taken from the ring, oldest first.
    fn revoke(&mut self) -> Vec<Sent> {
        let Some(sender) = self.sender.as_mut() else {
            return Vec::new();
        };
        let ids = sender.revoke();
        let mut back = Vec::with_capacity(ids.len());
        for id in ids.iter().rev() {
            if let Some(i) = self.sent.iter().rposition(|s| s.id == *id) {
                if let Some(s) = self.sent.remove(i) {
                    back.push(s);
                }
            }
        }
        back.reverse();
        back
    }
}

/// One worker's lane, as the pool sees it.
#[derive(Debug)]
pub(crate) struct Lane {
    shared: Weak<Shared>,
    pub(crate) state: Mutex<LaneState>,
    /// `sent.len()`, readable without the lock (idle drivers look for work to
    /// steal).
    depth: AtomicUsize,
}

impl Lane {
    pub(crate) fn new(shared: Weak<Shared>) -> Lane {
        Lane {
            shared,
            state: Mutex::new(LaneState {
                sender: None,
                pid: 0,
                live: false,
                sent: VecDeque::new(),
                next_id: 0,
                seen: (0, Instant::now()),
            }),
            depth: AtomicUsize::new(0),
        }
    }

    /// Jobs in the lane (approximate: read without the lock).
    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Records `sent.len()` for [`depth`](Self::depth); call under the lock.
    ///
    /// When jobs start to wait behind another (the depth reaches 2), wakes the
    /// idle drivers: one that looked at this lane before (in `next_work`), found
    /// nothing to take back and went to sleep without a timeout would otherwise
    /// sleep on while those jobs stay stuck behind a long task (a driver takes
    /// jobs from the queue into its lane, and the depth it then stores is seen
    /// only by the drivers that look later). The depth is stored before the
    /// queue's lock is taken to look for sleepers, and a driver reads it under
    /// that lock before it sleeps: it either sees the new depth or is woken.
    pub(crate) fn set_depth(&self, st: &LaneState) {
        let depth = st.sent.len();
        let before = self.depth.swap(depth, Ordering::Relaxed);
        if before < 2 && depth >= 2 {
            if let Some(shared) = self.shared.upgrade() {
                shared.wake_idle();
            }
        }
    }

    /// Puts jobs taken back from the lane at the head of the pool's queue, in
    /// their order (a cancelled one is completed as `Cancelled` instead).
    fn give_back(&self, back: Vec<Sent>) {
        if back.is_empty() {
            return;
        }
        match self.shared.upgrade() {
            Some(shared) => shared.put_back(back.into_iter().map(|s| s.job), false),
            None => {
                for s in back {
                    s.job.complete(Err(TaskError::PoolClosed));
                }
            }
        }
    }

    /// Cancels `job`, which was sent to this lane: if the worker has not taken it,
    /// it is taken back (with every job behind it, which go back to the queue);
    /// if the worker runs it (or is about to), the worker's process group is
    /// killed. A job the worker already finished is left to complete.
    pub(crate) fn cancel(&self, job: &Job) {
        let mut st = lock(&self.state);
        let Some(i) = st
            .sent
            .iter()
            .position(|s| std::ptr::eq(Arc::as_ptr(&s.job), job))
        else {
            return; // completed or taken back meanwhile
        };
        let (id, socket) = (st.sent[i].id, st.sent[i].socket);
        let back = if socket { Vec::new() } else { st.revoke() };
        let revoked = back.iter().any(|s| s.id == id);
        self.set_depth(&st);
        // Taken by the worker: it runs it now, or is between taking and beginning
        // it (started < id), or has finished it (started > id: the result is on
        // its way, and the worker may run another job: don't kill).
        if !revoked && (socket || st.started() <= id) && st.live {
            sys::kill_group(st.pid);
        }
        drop(st);
        self.give_back(back);
    }

    /// An idle driver's look at this lane: if its worker has been on one task for
    /// [`STEAL_AFTER`] while jobs wait behind it, takes those back into the
    /// pool's queue. Whether it took any.
    pub(crate) fn steal(&self) -> bool {
        if self.depth() < 2 {
            return false;
        }
        let Ok(mut st) = self.state.try_lock() else {
            return false;
        };
        if st.sender.is_none() {
            return false;
        }
        let started = st.started();
        let now = Instant::now();
        if st.seen.0 != started {
            st.seen = (started, now);
            return false;
        }
        if now.duration_since(st.seen.1) < STEAL_AFTER {
            return false;
        }
        let back = st.revoke();
        self.set_depth(&st);
        drop(st);
        let any = !back.is_empty();
        self.give_back(back);
        any
    }

    /// The pool is closing: jobs the worker has not taken fail with `PoolClosed`.
    pub(crate) fn close(&self) {
        let mut st = lock(&self.state);
        let back = st.revoke();
        self.set_depth(&st);
        drop(st);
        for s in back {
            s.job.complete(Err(TaskError::PoolClosed));
        }
    }
}
