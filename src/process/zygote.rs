//! The fork server (zygote) of a fork pool.
//!
//! `fork` is only sound from a single-threaded process, but a pool has threads and
//! must replace dead workers at any time. So a fork pool forks one server process
//! at creation, from the calling thread, after checking that it is the only thread.
//! The server stays single-threaded forever and forks every worker, first and
//! replacement, on request: the pool sends the worker's end of a fresh socket pair
//! (`SCM_RIGHTS`) and keeps its own end; the server forks, replies with the pid,
//! reaps its children and reports how each ended. It kills a dead worker's process
//! group before reaping it (the zombie keeps the pid and group id from reuse), and
//! the pool signals no worker the server has reported ended.
//!
//! Server → pool records are 16 bytes: tag, pid, and two values.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::TaskError;
use super::waiting::{lock, wait_until};
use super::worker::run_forked;
use crate::sync::Wait;
use crate::sys::process::{self as sys, ChildSignals, Exit, ForkError};

const FORKED: u32 = 1;
const FORK_FAILED: u32 = 2;
const EXITED: u32 = 3;
/// `FORK_FAILED` value when the server had more than one thread (it never should).
const NOT_SINGLE_THREADED: i32 = -1;

fn record(tag: u32, pid: u32, a: i32, b: i32) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[0..4].copy_from_slice(&tag.to_le_bytes());
    r[4..8].copy_from_slice(&pid.to_le_bytes());
    r[8..12].copy_from_slice(&a.to_le_bytes());
    r[12..16].copy_from_slice(&b.to_le_bytes());
    r
}

fn field(r: &[u8; 16], i: usize) -> [u8; 4] {
    [r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]]
}

#[derive(Debug, Default)]
struct State {
    /// Answer to the pending fork request: pid, or an errno.
    reply: Option<Result<u32, i32>>,
    /// How reported workers ended, until the pool forgets them.
    exits: HashMap<u32, Exit>,
    /// The server is gone (its socket closed).
    gone: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// The pool's handle on its fork server.
#[derive(Debug)]
pub(crate) struct ForkServer {
    pid: u32,
    /// Requests go here; the lock also keeps one request in flight at a time.
    requests: Mutex<UnixStream>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
}

impl ForkServer {
    /// Forks the server from this process, which must be single-threaded.
    ///
    /// # Errors
    /// [`TaskError::NotSingleThreaded`] if this process has other threads.
    pub(crate) fn start() -> Result<ForkServer, TaskError> {
        let (ours, theirs) = UnixStream::pair()?;
        let parent = sys::pid();
        let ours = std::cell::Cell::new(Some(ours));
        let ours_ref = &ours;
        let pid = sys::fork_single_threaded(move || {
            drop(ours_ref.take());
            serve(theirs, parent)
        })
        .map_err(TaskError::from)?;
        let ours = ours
            .take()
            .ok_or_else(|| TaskError::Protocol("socket lost".into()))?;
        let shared = Arc::new(Shared::default());
        let spawned = ours.try_clone().and_then(|mut incoming| {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("shmarray-forkserver-{pid}"))
                .spawn(move || read_reports(&mut incoming, &s))
        });
        let reader = match spawned {
            Ok(r) => r,
            Err(e) => {
                sys::kill_group(pid);
                sys::reap(pid, true);
                return Err(e.into());
            }
        };
        Ok(ForkServer {
            pid,
            requests: Mutex::new(ours),
            shared,
            reader: Some(reader),
        })
    }

    /// Has the server fork a worker; returns its pid and our end of its socket.
    pub(crate) fn fork_worker(&self) -> Result<(u32, UnixStream), TaskError> {
        let (ours, theirs) = UnixStream::pair()?;
        let requests = lock(&self.requests);
        self.shared.lock().reply = None;
        sys::send_fd(&requests, b'F', Some(theirs.as_fd()))?;
        drop(theirs);
        let deadline = Wait::timeout(Duration::from_secs(30));
        let answered = |st: &State| st.reply.is_some() || st.gone;
        let st = wait_until(&self.shared.changed, self.shared.lock(), deadline, answered);
        match st.and_then(|mut st| st.reply.take()) {
            Some(Ok(pid)) => Ok((pid, ours)),
            Some(Err(NOT_SINGLE_THREADED)) => Err(TaskError::NotSingleThreaded { threads: None }),
            Some(Err(errno)) => Err(std::io::Error::from_raw_os_error(errno).into()),
            None => Err(TaskError::Io(std::io::Error::other(
                "the pool's fork server is gone",
            ))),
        }
    }

    /// How worker `pid` ended, `Running` if the server has not reported it.
    pub(crate) fn exit_of(&self, pid: u32) -> Exit {
        let st = self.shared.lock();
        match st.exits.get(&pid) {
            Some(e) => *e,
            None if st.gone => Exit::Unknown,
            None => Exit::Running,
        }
    }

    /// Waits until the server reports worker `pid`'s end, or `deadline`.
    pub(crate) fn wait_exit(&self, pid: u32, deadline: Wait) -> Exit {
        let ended = |st: &State| st.gone || st.exits.contains_key(&pid);
        match wait_until(&self.shared.changed, self.shared.lock(), deadline, ended) {
            Some(st) => st.exits.get(&pid).copied().unwrap_or(Exit::Unknown),
            None => Exit::Running,
        }
    }

    /// Drops the record of a reaped worker.
    pub(crate) fn forget(&self, pid: u32) {
        self.shared.lock().exits.remove(&pid);
    }
}

impl Drop for ForkServer {
    /// Closes the request channel: the server kills and reaps the workers it still
    /// has, then exits; we reap it (killing it if it takes longer than 5 s).
    fn drop(&mut self) {
        if let Ok(r) = self.requests.get_mut() {
            let _ = r.shutdown(Shutdown::Write);
        }
        let deadline = Wait::timeout(Duration::from_secs(5));
        while sys::reap(self.pid, false) == Exit::Running {
            if deadline.expired() {
                sys::kill_group(self.pid);
                sys::reap(self.pid, true);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The pool's reader of server records.
fn read_reports(incoming: &mut UnixStream, shared: &Shared) {
    let mut r = [0u8; 16];
    while incoming.read_exact(&mut r).is_ok() {
        let tag = u32::from_le_bytes(field(&r, 0));
        let pid = u32::from_le_bytes(field(&r, 1));
        let a = i32::from_le_bytes(field(&r, 2));
        let b = i32::from_le_bytes(field(&r, 3));
        let mut st = shared.lock();
        match tag {
            FORKED => st.reply = Some(Ok(pid)),
            FORK_FAILED => st.reply = Some(Err(a)),
            EXITED => {
                let e = if a == 1 {
                    Exit::Signal(b)
                } else {
                    Exit::Code(b)
                };
                st.exits.insert(pid, e);
            }
            _ => {}
        }
        drop(st);
        shared.changed.notify_all();
    }
    shared.lock().gone = true;
    shared.changed.notify_all();
}

/// What the server owns; a forked worker drops its copies.
struct Server {
    requests: Option<UnixStream>,
    signals: Option<ChildSignals>,
}

/// The server's loop (runs in the forked server process).
fn serve(requests: UnixStream, parent: u32) -> i32 {
    sys::new_process_group();
    if !sys::die_with_parent(parent) {
        return 0;
    }
    let me = sys::pid();
    let signals = match ChildSignals::new() {
        Ok(s) => s,
        Err(_) => return 70,
    };
    let mut srv = Server {
        requests: Some(requests),
        signals: Some(signals),
    };
    let mut children = HashSet::new();
    while let (Some(req), Some(sig)) = (srv.requests.as_ref(), srv.signals.as_ref()) {
        let ready = match sys::wait_readable(&[req.as_fd(), sig.as_fd()], None) {
            Ok(r) => r,
            Err(_) => break,
        };
        let mut out: Vec<[u8; 16]> = Vec::new();
        if ready.contains(&1) {
            if let Some(s) = srv.signals.as_mut() {
                s.drain();
            }
            while let Some(pid) = sys::ended_child() {
                // What the worker's tasks left in its group goes now, while the
                // unreaped worker still holds its pid and group id: after the reap
                // the number is free, and the pool never signals it again once
                // this report is in.
                sys::kill_group(pid);
                let e = sys::reap(pid, true); // a zombie: returns at once
                children.remove(&pid);
                let (kind, value) = match e {
                    Exit::Signal(s) => (1, s),
                    Exit::Code(c) => (0, c),
                    Exit::Running | Exit::Unknown => continue,
                };
                out.push(record(EXITED, pid, kind, value));
            }
        }
        if ready.contains(&0) {
            let got = srv.requests.as_ref().map(sys::recv_fd);
            match got {
                Some(Ok(Some((_, Some(fd))))) => {
                    let stream = UnixStream::from(fd);
                    let srv_ref = &mut srv;
                    let forked = sys::fork_single_threaded(move || {
                        drop(srv_ref.requests.take());
                        if let Some(s) = srv_ref.signals.take() {
                            s.restore();
                        }
                        run_forked(stream, me)
                    });
                    out.push(match forked {
                        Ok(pid) => {
                            sys::put_in_own_group(pid);
                            children.insert(pid);
                            record(FORKED, pid, 0, 0)
                        }
                        Err(ForkError::NotSingleThreaded(_)) => {
                            record(FORK_FAILED, 0, NOT_SINGLE_THREADED, 0)
                        }
                        Err(ForkError::Io(e)) => {
                            record(FORK_FAILED, 0, e.raw_os_error().unwrap_or(libc::EIO), 0)
                        }
                    });
                }
                Some(Ok(Some((_, None)))) => out.push(record(FORK_FAILED, 0, libc::EINVAL, 0)),
                _ => break, // the pool closed the channel (or is gone)
            }
        }
        if let Some(mut req) = srv.requests.as_ref() {
            if out.iter().any(|r| req.write_all(r).is_err()) {
                break;
            }
        }
    }
    for pid in children {
        sys::kill_group(pid);
        sys::reap(pid, true);
    }
    0
}
