//! Starting workers and talking to them from the parent side: [`Worker`] (one
//! connected worker process), spawn and fork, and the launcher thread that spawns
//! the workers of [`Process`](super::Process).
//!
//! Every worker leads its own process group, so killing the group also kills what
//! its tasks started. The parent never relies on end-of-file alone to notice a dead
//! worker (a task's child may hold the worker's socket): reads and writes wake every
//! [`WAKE`] and check whether the worker process still exists.

use std::borrow::Cow;
use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::{MessageFailure, TaskError};
use super::lane::LaneMem;
use super::task::{image, TaskOffsets};
use super::waiting::lock;
use super::wire::{Channel, FromWorker, Lost, ToWorker};
use super::worker::{run_forked, WORKER_ENV};
use super::zygote::ForkServer;
use crate::sync::Wait;
use crate::sys::process::{self as sys, Exit, ForkError};

/// How often a blocked read or write wakes to check that the worker still exists.
const WAKE: Duration = Duration::from_millis(50);

/// How long a new worker may take to answer the handshake.
const HANDSHAKE: Duration = Duration::from_secs(30);

/// Who reaps a worker and so knows how it ended.
#[derive(Debug)]
enum Reaper {
    /// Our own child: `waitpid`.
    Us,
    /// A child of the fork server, which reports its end.
    Server(Arc<ForkServer>),
}

/// A connected worker process (one socket, one pid, its own process group).
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) pid: u32,
    chan: Channel,
    /// The lane shared with the worker (where it records the task it begins, and
    /// the rings); `None` if none could be made (then every task sent counts as
    /// begun, and tasks go over the socket one at a time).
    lane: Option<Arc<LaneMem>>,
    reaper: Reaper,
    /// How it ended, once reaped.
    exit: Option<Exit>,
    /// Reaped, and what was left of its process group killed.
    finished: bool,
}

impl From<ForkError> for TaskError {
    fn from(e: ForkError) -> TaskError {
        match e {
            ForkError::NotSingleThreaded(threads) => TaskError::NotSingleThreaded { threads },
            ForkError::Io(e) => TaskError::Io(e),
        }
    }
}

/// Whether `pid` is still running, without reaping it (so its pid and group stay
/// reserved while a canceller might signal them).
fn running(pid: u32, reaper: &Reaper, exit: &Option<Exit>) -> bool {
    exit.is_none()
        && match reaper {
            Reaper::Us => !sys::has_ended(pid),
            Reaper::Server(s) => s.exit_of(pid) == Exit::Running,
        }
}

impl Worker {
    /// Spawns a worker (re-executes this program) from the calling thread, which
    /// must outlive it: the worker is SIGKILLed when that thread exits.
    /// `lane`: give it a lane (else tasks go over the socket one at a time).
    pub(crate) fn spawn(lane: bool) -> Result<Worker, TaskError> {
        let (pid, ours) = spawn_child()?;
        Worker::connect(pid, ours, Reaper::Us, lane)
    }

    /// Spawns a worker from the process-wide launcher thread (which lives as long
    /// as the process), so the worker does not die with the calling thread.
    pub(crate) fn spawn_detached() -> Result<Worker, TaskError> {
        let (pid, ours) = on_launcher(spawn_child)??;
        Worker::connect(pid, ours, Reaper::Us, true)
    }

    /// Forks a worker from this process, which must be single-threaded.
    pub(crate) fn fork() -> Result<Worker, TaskError> {
        let (ours, theirs) = UnixStream::pair()?;
        let parent = sys::pid();
        let ours = Cell::new(Some(ours));
        let ours_ref = &ours;
        let pid = sys::fork_single_threaded(move || {
            drop(ours_ref.take()); // the child keeps only its own end
            run_forked(theirs, parent)
        })?;
        sys::put_in_own_group(pid);
        let ours = ours
            .take()
            .ok_or_else(|| TaskError::Protocol("socket lost".into()))?;
        Worker::connect(pid, ours, Reaper::Us, true)
    }

    /// Has the fork server fork a worker.
    pub(crate) fn from_server(server: &Arc<ForkServer>, lane: bool) -> Result<Worker, TaskError> {
        let (pid, ours) = server.fork_worker()?;
        Worker::connect(pid, ours, Reaper::Server(server.clone()), lane)
    }

    fn connect(
        pid: u32,
        stream: UnixStream,
        reaper: Reaper,
        lane: bool,
    ) -> Result<Worker, TaskError> {
        // The lane goes first, in the first byte, before the handshake. A memfd
        // can fail (limits, seccomp); the worker then runs without one.
        let lane = lane.then(LaneMem::new).and_then(Result::ok).map(Arc::new);
        let setup = sys::send_fd(&stream, b'S', lane.as_ref().and_then(|l| l.fd()))
            .and_then(|()| Channel::new(stream, Some(WAKE)));
        let chan = match setup {
            Ok(c) => c,
            Err(e) => {
                sys::kill_group(pid);
                return Err(e.into());
            }
        };
        let mut w = Worker {
            pid,
            chan,
            lane,
            reaper,
            exit: None,
            finished: false,
        };
        let deadline = Wait::timeout(HANDSHAKE);
        let hello = ToWorker::Hello {
            image: image().clone(),
        };
        let answer = w.send(&hello).and_then(|()| w.recv_msg(deadline));
        match answer {
            Ok(FromWorker::Ready { lane, .. }) => {
                if !lane {
                    // It could not map the lane: one task at a time over the
                    // socket, each counted as begun.
                    w.lane = None;
                }
                Ok(w)
            }
            Ok(FromWorker::Refused { worker }) => Err(TaskError::DifferentExecutable {
                parent: image().to_string(),
                worker: worker.to_string(),
            }),
            Ok(other) => Err(TaskError::Protocol(format!(
                "unexpected handshake {other:?}"
            ))),
            Err(Lost::Garbled(m)) => Err(TaskError::Protocol(m)),
            Err(Lost::Closed | Lost::Timeout) => {
                let (signal, code) = w.end().signal_and_code();
                Err(TaskError::StartFailed { pid, signal, code })
            }
        }
    }

    fn send(&mut self, msg: &ToWorker<'_>) -> Result<(), Lost> {
        let (pid, reaper, exit) = (self.pid, &self.reaper, &self.exit);
        self.chan.send(msg, &mut || running(pid, reaper, exit))
    }

    /// The next message, including wake-ups.
    pub(crate) fn recv_any(&mut self, deadline: Wait) -> Result<FromWorker, Lost> {
        let (pid, reaper, exit) = (self.pid, &self.reaper, &self.exit);
        self.chan.recv(deadline, &mut || running(pid, reaper, exit))
    }

    /// The next message other than a wake-up (one can be left over from the
    /// lane's sleeping handshake at any time).
    fn recv_msg(&mut self, deadline: Wait) -> Result<FromWorker, Lost> {
        loop {
            match self.recv_any(deadline)? {
                FromWorker::Wake => {}
                m => return Ok(m),
            }
        }
    }

    /// The lane shared with the worker, if it has one.
    pub(crate) fn lane(&self) -> Option<&Arc<LaneMem>> {
        self.lane.as_ref()
    }

    /// Wakes the worker, which sleeps on its socket (see `lane`).
    pub(crate) fn wake(&mut self) -> Result<(), Lost> {
        self.send(&ToWorker::Wake)
    }

    /// Sends task message `id` (its inputs already encoded); ids must grow. `Err`:
    /// the worker is gone.
    pub(crate) fn send_task(
        &mut self,
        id: u64,
        task: TaskOffsets,
        payload: &[u8],
    ) -> Result<(), Lost> {
        let (tramp, func) = task.get();
        self.send(&ToWorker::Task {
            id,
            tramp,
            func,
            payload: Cow::Borrowed(payload),
        })
    }

    /// After the worker died (and was reaped, see [`death`](Self::death)): whether it
    /// had begun task `id`. `false` means it never called the task's function, so
    /// the task may run elsewhere; without a lane, `true`.
    pub(crate) fn began(&self, id: u64) -> bool {
        self.lane.as_ref().is_none_or(|l| l.began(id))
    }

    /// Has the idle worker drop cached mappings of removed or replaced segments,
    /// and waits for it to say so (as long as it lives). `Err`: the worker is gone.
    pub(crate) fn sweep(&mut self) -> Result<(), Lost> {
        self.send(&ToWorker::Sweep)?;
        match self.recv_msg(Wait::Forever)? {
            FromWorker::Swept => Ok(()),
            other => Err(Lost::Garbled(format!("unexpected message {other:?}"))),
        }
    }

    /// Sends `Exit` after the current task (the worker exits when it is done).
    pub(crate) fn send_exit(&mut self) -> Result<(), Lost> {
        self.send(&ToWorker::Exit)
    }

    /// Waits for the next result, until `deadline` runs out (`Wait::Forever`: as
    /// long as the worker lives).
    pub(crate) fn recv(
        &mut self,
        deadline: Wait,
    ) -> Result<(u64, Result<Vec<u8>, MessageFailure>), Lost> {
        match self.recv_msg(deadline)? {
            FromWorker::Done { id, outcome } => Ok((id, outcome)),
            other => Err(Lost::Garbled(format!("unexpected message {other:?}"))),
        }
    }

    /// Whether the worker still runs (without reaping it). A closed channel counts
    /// as ended too: a fork pool's server reports deaths asynchronously, and an idle
    /// worker that died must not be handed a job.
    pub(crate) fn is_running(&self) -> bool {
        running(self.pid, &self.reaper, &self.exit) && !self.chan.peer_closed()
    }

    /// Whether the worker process has ended (without reaping it).
    pub(crate) fn has_ended(&self) -> bool {
        !running(self.pid, &self.reaper, &self.exit)
    }

    /// Waits until `deadline` runs out for the worker to end, without reaping it.
    fn ends_within(&self, deadline: Wait) -> bool {
        loop {
            if let Reaper::Server(s) = &self.reaper {
                if self.exit.is_none() {
                    return s.wait_exit(self.pid, deadline) != Exit::Running;
                }
            }
            if self.has_ended() {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether the worker's pid may still be signalled: it is ours and not reaped
    /// (a zombie keeps its pid and group id from reuse), or the fork server has
    /// not reported it ended (after that the server has reaped it, and the number
    /// may belong to anyone).
    fn signallable(&self) -> bool {
        self.exit.is_none()
            && match &self.reaper {
                Reaper::Us => true,
                Reaper::Server(s) => s.exit_of(self.pid) == Exit::Running,
            }
    }

    /// Reaps the worker if it has ended; how it ended (`Running` if it has not).
    fn reap(&mut self) -> Exit {
        if let Some(e) = self.exit {
            return e;
        }
        let e = match &self.reaper {
            Reaper::Us => sys::reap(self.pid, false),
            Reaper::Server(s) => s.exit_of(self.pid),
        };
        if e != Exit::Running {
            self.exit = Some(e);
        }
        e
    }

    /// SIGKILLs the worker's process group (unless its pid may be someone else's by
    /// now, see `signallable`).
    pub(crate) fn kill(&self) {
        if self.signallable() {
            sys::kill_group(self.pid);
        }
    }

    /// Sends SIGTERM to the worker (unless its pid may be someone else's by now).
    pub(crate) fn terminate(&self) {
        if self.signallable() {
            sys::send_signal(self.pid, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Makes sure the worker has ended (it gets a second to exit on its own after
    /// closing its socket, then it is killed), kills what is left of its process
    /// group (processes its tasks started), and reaps it. Returns how it ended.
    fn end(&mut self) -> Exit {
        if self.finished {
            return self.exit.unwrap_or(Exit::Unknown);
        }
        self.finished = true;
        if !self.ends_within(Wait::timeout(Duration::from_secs(1))) {
            self.kill();
            self.ends_within(Wait::timeout(Duration::from_secs(10)));
        }
        // Our own child is not reaped yet, so its group id still names exactly
        // its group (what the worker's tasks left behind). A fork-server worker's
        // group was killed by the server, before it reaped it.
        if matches!(self.reaper, Reaper::Us) && self.exit.is_none() {
            sys::kill_group(self.pid);
        }
        let e = self.reap();
        if let Reaper::Server(s) = &self.reaper {
            s.forget(self.pid);
        }
        e
    }

    /// Reaps the dead (or dying) worker and says how it ended, for task `task`.
    pub(crate) fn death(&mut self, task: usize) -> TaskError {
        let (signal, code) = self.end().signal_and_code();
        TaskError::WorkerDied {
            task,
            pid: self.pid,
            signal,
            code,
        }
    }

    /// Asks the worker to exit, waits up to `grace`, then kills; always reaps.
    pub(crate) fn shutdown(&mut self, grace: Duration) {
        if self.finished {
            return;
        }
        let deadline = Wait::timeout(grace);
        let (pid, reaper, exit) = (self.pid, &self.reaper, &self.exit);
        let _ = self.chan.send(&ToWorker::Exit, &mut || {
            running(pid, reaper, exit) && !deadline.expired()
        });
        if !self.ends_within(deadline) {
            self.kill();
        }
        self.end();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}

/// Spawns a worker process from the calling thread; returns its pid and our end
/// of its socket (the handshake is still to be done).
///
/// # Errors
/// [`TaskError::DifferentExecutable`] at once, without starting anything, when this
/// crate's code is not part of the executable (a shared library, a Python
/// extension): the re-executed program would not contain it.
fn spawn_child() -> Result<(u32, UnixStream), TaskError> {
    let me = image();
    if !me.crate_in_executable() {
        return Err(TaskError::DifferentExecutable {
            parent: me.to_string(),
            worker: format!(
                "{} (what spawn re-executes, without this crate's code; use StartMethod::Fork)",
                me.exe_path
            ),
        });
    }
    let (ours, theirs) = UnixStream::pair()?;
    let env = [(WORKER_ENV, format!("{}:{}", theirs.as_raw_fd(), sys::pid()))];
    let pid = sys::spawn_worker("/proc/self/exe", theirs.as_fd(), &env)?;
    Ok((pid, ours))
}

type LauncherJob = Box<dyn FnOnce() + Send>;

/// The launcher thread of this process: (owning pid, its job queue). A forked
/// child inherits the value but not the thread, hence the pid.
static LAUNCHER: Mutex<Option<(u32, mpsc::Sender<LauncherJob>)>> = Mutex::new(None);

/// Runs `f` on the launcher thread, a thread that lives as long as the process
/// (a process's children get their parent-death signal when the *thread* that
/// started them exits).
fn on_launcher<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, TaskError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let job: LauncherJob = Box::new(move || {
        let _ = tx.send(f());
    });
    {
        let mut slot = lock(&LAUNCHER);
        let me = sys::pid();
        let mut job = Some(job);
        if let Some((pid, sender)) = slot.as_ref() {
            if *pid == me {
                if let Err(mpsc::SendError(j)) = sender.send(job.take().expect("job")) {
                    job = Some(j); // the thread is gone: start another
                }
            }
        }
        if let Some(job) = job {
            let (sender, jobs) = mpsc::channel::<LauncherJob>();
            std::thread::Builder::new()
                .name("shmarray-launcher".into())
                .spawn(move || jobs.into_iter().for_each(|j| j()))?;
            let _ = sender.send(job);
            *slot = Some((me, sender));
        }
    }
    rx.recv()
        .map_err(|_| TaskError::Protocol("the launcher thread failed".into()))
}
