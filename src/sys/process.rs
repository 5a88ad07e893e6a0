//! FFI of the process layer: fork (only from a single-threaded process), waitpid,
//! signals and process groups, the parent-death signal, the worker's inherited
//! socket, descriptor passing (`SCM_RIGHTS`) and the fork server's `SIGCHLD` fd.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Still running.
    Running,
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Gone, but how it ended is not known (already reaped elsewhere, or its
    /// reaper died).
    Unknown,
}

impl Exit {
    /// `(signal, code)` as reported in `TaskError::WorkerDied`.
    pub(crate) fn signal_and_code(self) -> (Option<i32>, Option<i32>) {
        match self {
            Exit::Signal(s) => (Some(s), None),
            Exit::Code(c) => (None, Some(c)),
            Exit::Running | Exit::Unknown => (None, None),
        }
    }

    fn of(status: WaitStatus) -> Option<Exit> {
        match status {
            WaitStatus::Exited(_, code) => Some(Exit::Code(code)),
            WaitStatus::Signaled(_, sig, _) => Some(Exit::Signal(sig as i32)),
            WaitStatus::StillAlive => Some(Exit::Running),
            _ => None, // stopped/continued: not an end
        }
    }
}

/// Non-blocking (`WNOHANG`) or blocking reap of our child `pid`.
pub(crate) fn reap(pid: u32, block: bool) -> Exit {
    let flags = (!block).then_some(WaitPidFlag::WNOHANG);
    loop {
        match waitpid(Pid::from_raw(pid as i32), flags) {
            Ok(status) => match Exit::of(status) {
                Some(e) => return e,
                None => continue,
            },
            Err(Errno::EINTR) => continue,
            // ECHILD: already reaped, or not our child.
            Err(_) => return Exit::Unknown,
        }
    }
}

/// Whether our child `pid` has ended, *without* reaping it (`WNOWAIT`): its pid
/// stays reserved until [`reap`], so it can still be signalled safely meanwhile.
pub(crate) fn has_ended(pid: u32) -> bool {
    use nix::sys::wait::{waitid, Id};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
            Ok(WaitStatus::StillAlive) => return false,
            Ok(_) => return true,
            Err(Errno::EINTR) => continue,
            // ECHILD: reaped already (or not our child): certainly not running.
            Err(_) => return true,
        }
    }
}

/// Any one ended child of ours, *not* reaped (`WNOWAIT`): its pid, which stays
/// reserved (with its process group id) until [`reap`]; `None` when no child has
/// ended (or there are no children).
pub(crate) fn ended_child() -> Option<u32> {
    use nix::sys::wait::{waitid, Id};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::All, flags) {
            Ok(WaitStatus::StillAlive) => return None,
            Ok(status) => return status.pid().map(|p| p.as_raw() as u32),
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Sends `sig` to `pid` (errors, e.g. an already reaped pid, are ignored).
pub(crate) fn send_signal(pid: u32, sig: Signal) {
    let _ = signal::kill(Pid::from_raw(pid as i32), sig);
}

/// SIGKILLs the process group led by `pid` (a worker and whatever its tasks
/// started), and `pid` itself in case it has not made its group yet.
pub(crate) fn kill_group(pid: u32) {
    if pid > 1 {
        let _ = signal::killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        send_signal(pid, Signal::SIGKILL);
    }
}

/// This process's pid.
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// Number of threads of this process (`Threads:` in `/proc/self/status`), `None` if
/// it cannot be read.
pub(crate) fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_threads(&status)
}

fn parse_threads(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// Why [`fork_single_threaded`] did not fork.
#[derive(Debug)]
pub(crate) enum ForkError {
    /// The process has other threads (or their number could not be read).
    NotSingleThreaded(Option<usize>),
    /// `fork` itself failed.
    Io(io::Error),
}

/// Forks, but only when this process has exactly one thread (then no other thread
/// can hold a lock the child needs, and none can be started between the check and
/// the fork: only this thread could start it). In the child, runs `child` and
/// `_exit`s with its return value (70 if it panics) without running the parent's
/// destructors or atexit handlers. Returns the child's pid.
pub(crate) fn fork_single_threaded(child: impl FnOnce() -> i32) -> Result<u32, ForkError> {
    match thread_count() {
        Some(1) => {}
        n => return Err(ForkError::NotSingleThreaded(n)),
    }
    // SAFETY: this process has a single thread (checked just above, and only this
    // thread could have started another since), so the child's copy of every lock
    // (allocator, stdio, user locks) is in a consistent state.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(ForkError::Io(e.into())),
        Ok(ForkResult::Parent { child }) => Ok(child.as_raw() as u32),
        Ok(ForkResult::Child) => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(70);
            // SAFETY: _exit is async-signal-safe and ends the child at once.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Moves the calling process into a new process group led by itself.
pub(crate) fn new_process_group() {
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
}

/// Makes `pid` (our just-forked child) lead its own process group; the child does
/// the same, so the group exists whichever of the two runs first.
pub(crate) fn put_in_own_group(pid: u32) {
    let p = Pid::from_raw(pid as i32);
    let _ = nix::unistd::setpgid(p, p);
}

/// Asks the kernel to SIGKILL this process when its parent (strictly: the parent
/// *thread* that started it) exits, then checks that the parent is still
/// `expected_parent` (it may have died before the request). `false`: the parent is
/// gone or the request failed; the caller should exit.
pub(crate) fn die_with_parent(expected_parent: u32) -> bool {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_ok()
        && nix::unistd::getppid().as_raw() as u32 == expected_parent
}

/// Spawns `exe` as a worker in its own process group, with `env` added and the
/// socket `fd` inherited under its own number (it is close-on-exec here, and only
/// the child's copy is made inheritable, so workers spawned concurrently by other
/// threads never inherit it). Standard input/output/error are inherited.
pub(crate) fn spawn_worker(
    exe: &str,
    fd: BorrowedFd<'_>,
    env: &[(&str, String)],
) -> io::Result<u32> {
    let raw = fd.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let hook = move || {
        // SAFETY: `raw` is open in the child (a copy of the parent's table), and
        // clearing FD_CLOEXEC touches nothing but that descriptor's flags.
        if unsafe { libc::fcntl(raw, libc::F_SETFD, 0) } == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: the hook runs in the forked child before exec and only calls fcntl,
    // which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe { cmd.pre_exec(hook) };
    Ok(cmd.spawn()?.id())
}

/// Takes ownership of the socket a spawned worker inherited as descriptor `fd`,
/// after checking that it is a socket, and makes it close-on-exec so that nothing
/// the worker's tasks start can inherit it.
///
/// # Safety
/// `fd` must not be owned by anything else in this process (the spawner passed it
/// for exactly this), and this must be called at most once for it.
pub(crate) unsafe fn adopt_socket(fd: RawFd) -> io::Result<UnixStream> {
    // SAFETY: per the caller's contract `fd` is ours to use for as long as this
    // call; it is owned (below) only once it is known to be an open socket.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let st = nix::sys::stat::fstat(borrowed).map_err(io::Error::from)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::other(format!("descriptor {fd} is not a socket")));
    }
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    // SAFETY: `fd` is an open socket (checked) that nothing else owns (caller).
    Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Sends one byte with descriptor `fd` attached (`SCM_RIGHTS`), or the byte alone
/// when `fd` is `None` (the receiver's [`recv_fd`] then gets no descriptor).
pub(crate) fn send_fd(sock: &UnixStream, byte: u8, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let mut data = [byte];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut space = [0u64; 8]; // room for one cmsghdr + one int, 8-aligned
    let n = loop {
        // SAFETY: every pointer in `msg` points at a live local buffer of the stated
        // length; CMSG_* compute offsets within `space`, which is large enough for
        // one descriptor (CMSG_SPACE(4) <= 24 bytes on Linux).
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if let Some(fd) = fd {
                msg.msg_control = space.as_mut_ptr().cast();
                msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
            }
            libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
        };
        if n == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break n;
    };
    match n {
        1 => Ok(()),
        -1 => Err(io::Error::last_os_error()),
        _ => Err(io::Error::other("short sendmsg")),
    }
}

/// Receives one byte and the descriptor sent with it, if any (made close-on-exec).
/// `Ok(None)` at end of file.
pub(crate) fn recv_fd(sock: &UnixStream) -> io::Result<Option<(u8, Option<OwnedFd>)>> {
    let mut data = [0u8];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut space = [0u64; 8];
    loop {
        // SAFETY: as in `send_fd`: `msg` points at live local buffers of the stated
        // sizes; the kernel writes at most `msg_controllen` bytes of control data.
        let (n, msg) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = space.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&space) as _;
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            (n, msg)
        };
        if n == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(None);
        }
        let mut fd = None;
        // SAFETY: the kernel filled `msg_controllen` bytes of `space` with well-formed
        // control messages; CMSG_FIRSTHDR/CMSG_DATA stay within them, and an
        // SCM_RIGHTS message carries descriptors now owned by this process.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if !cmsg.is_null()
                && (*cmsg).cmsg_level == libc::SOL_SOCKET
                && (*cmsg).cmsg_type == libc::SCM_RIGHTS
            {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
        }
        return Ok(Some((data[0], fd)));
    }
}

/// `SIGCHLD` as a readable descriptor, for the fork server's poll loop. Creating it
/// blocks `SIGCHLD` in the calling thread; [`ChildSignals::restore`] undoes that
/// in a forked child.
#[derive(Debug)]
pub(crate) struct ChildSignals {
    fd: SignalFd,
    old: SigSet,
}

impl ChildSignals {
    pub(crate) fn new() -> io::Result<ChildSignals> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        let mut old = SigSet::empty();
        signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .map_err(io::Error::from)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(io::Error::from)?;
        Ok(ChildSignals { fd, old })
    }

    /// Consumes pending notifications (the caller then reaps with [`reap_any`]).
    pub(crate) fn drain(&mut self) {
        while let Ok(Some(_)) = self.fd.read_signal() {}
    }

    /// In a forked child: closes the descriptor and restores the signal mask.
    pub(crate) fn restore(self) {
        let old = self.old;
        drop(self.fd);
        let _ = signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}

impl AsFd for ChildSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until one of `fds` is readable (or hung up): their indices, empty on
/// timeout (`None`: wait forever).
/// Whether the peer of a stream socket has closed its end (`POLLHUP`/`POLLRDHUP`
/// now). Never blocks.
pub(crate) fn peer_hung_up(fd: BorrowedFd<'_>) -> bool {
    // nix has no name for POLLRDHUP; the bit is kept as it is.
    let rdhup = PollFlags::from_bits_retain(libc::POLLRDHUP);
    let mut pfd = [PollFd::new(fd, rdhup)];
    matches!(poll(&mut pfd, PollTimeout::ZERO), Ok(n) if n > 0)
        && pfd[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | rdhup))
}

pub(crate) fn wait_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
    };
    loop {
        match poll(&mut pfds, timeout) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pfds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
        .map(|(i, _)| i)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_line_is_parsed() {
        assert_eq!(parse_threads("Name:\tx\nThreads:\t7\nFoo: 1\n"), Some(7));
        assert_eq!(parse_threads("Name:\tx\n"), None);
        assert!(thread_count().is_some_and(|n| n >= 1));
    }

    #[test]
    fn fork_is_refused_with_other_threads() {
        // The test harness runs tests on threads of its own: more than one thread.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(matches!(
            fork_single_threaded(|| 0),
            Err(ForkError::NotSingleThreaded(Some(n))) if n > 1
        ));
        drop(tx);
        let _ = t.join();
    }
}
