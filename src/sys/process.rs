//! FFI of the process layer: fork, waitpid, signals, the worker's inherited socket.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Still running.
    Running,
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Non-blocking (`WNOHANG`) or blocking reap of `pid`.
pub fn reap(pid: u32, block: bool) -> Exit {
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    loop {
        match waitpid(Pid::from_raw(pid as i32), flags) {
            Ok(WaitStatus::Exited(_, code)) => return Exit::Code(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Exit::Signal(sig as i32),
            Ok(WaitStatus::StillAlive) => return Exit::Running,
            Ok(_) => continue, // stopped/continued: keep waiting
            Err(nix::errno::Errno::EINTR) => continue,
            // ECHILD: already reaped (or not our child).
            Err(_) => return Exit::Code(-1),
        }
    }
}

/// Sends `sig` to `pid` (errors, e.g. an already reaped pid, are ignored).
pub fn send_signal(pid: u32, sig: Signal) {
    let _ = signal::kill(Pid::from_raw(pid as i32), sig);
}

/// Forks. In the child, runs `child` and exits with its return value without
/// running destructors or atexit handlers of the parent's state.
///
/// # Safety
/// Fork is only sound when no other thread of this process could hold a lock the
/// child needs (allocator, stdio, user locks): call it before other threads exist,
/// or accept that risk (the `Fork` start method documents it).
pub unsafe fn fork_run(child: impl FnOnce() -> i32) -> std::io::Result<u32> {
    // SAFETY: the caller accepts fork's restrictions (see above).
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        ForkResult::Parent { child } => Ok(child.as_raw() as u32),
        ForkResult::Child => {
            let code = child();
            // SAFETY: _exit is async-signal-safe and ends the child at once.
            unsafe { libc::_exit(code) }
        }
    }
}

/// The socket a spawned worker inherits as its standard input.
///
/// # Safety
/// Only call in a process started as a worker (its fd 0 is the parent's socket), and
/// only once: the returned stream owns fd 0.
pub unsafe fn inherited_socket() -> UnixStream {
    // SAFETY: per the caller's contract fd 0 is an open socket we may own.
    UnixStream::from(unsafe { OwnedFd::from_raw_fd(0) })
}

/// Closes a raw descriptor (used in a forked child for the parent's socket end).
pub fn close_fd(fd: std::os::fd::RawFd) {
    let _ = nix::unistd::close(fd);
}
