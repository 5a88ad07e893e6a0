//! Open-file-description locks (`fcntl(F_OFD_SETLK / F_OFD_GETLK)`): liveness the
//! kernel keeps for us.
//!
//! A process holds a lock on a byte of a segment file that stands for it (a handle,
//! a member slot). The kernel releases the lock when the last descriptor of the
//! open file description is closed, which happens when the process dies, in
//! whatever pid namespace and whether or not `/proc` is mounted. Another process
//! asks with `F_OFD_GETLK`. Locked bytes need not exist: they lie far beyond any
//! data.
//!
//! Two traps: an OFD lock belongs to the open file description, so a forked child
//! that keeps the descriptor keeps the lock alive (liveness then errs on the side of
//! "alive"), and `F_OFD_GETLK` does not report locks held through the *asking*
//! description (a handle cannot ask about its own locks).

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

/// What a probe found on a lock byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Nobody (else) holds a lock on the byte.
    Free,
    /// Another open file description holds a lock on it.
    Held,
    /// The file system or kernel cannot say (no OFD lock support).
    Unknown,
}

fn flock(kind: libc::c_int, offset: u64) -> Result<libc::flock, Errno> {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
    fl.l_len = 1;
    fl.l_pid = 0; // required for OFD locks
    Ok(fl)
}

fn fcntl_lock(fd: &impl AsFd, cmd: libc::c_int, fl: &mut libc::flock) -> Result<(), Errno> {
    loop {
        // SAFETY: `fl` is a valid, initialised flock that outlives the call; the
        // descriptor is open.
        let rc = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), cmd, fl as *mut libc::flock) };
        match Errno::result(rc) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// Takes a lock on byte `offset` without waiting: `Ok(true)` if taken, `Ok(false)`
/// if another description holds a conflicting lock. `exclusive` asks for a write
/// lock (the descriptor must be writable), else a read lock.
pub(crate) fn try_lock(fd: &impl AsFd, offset: u64, exclusive: bool) -> Result<bool, Errno> {
    let kind = if exclusive {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    };
    let mut fl = flock(kind, offset)?;
    match fcntl_lock(fd, libc::F_OFD_SETLK, &mut fl) {
        Ok(()) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases this description's lock on byte `offset` (no-op if it holds none).
pub(crate) fn unlock(fd: &impl AsFd, offset: u64) -> Result<(), Errno> {
    let mut fl = flock(libc::F_UNLCK, offset)?;
    fcntl_lock(fd, libc::F_OFD_SETLK, &mut fl)
}

/// Whether another open file description holds any lock on byte `offset`.
pub(crate) fn probe(fd: &impl AsFd, offset: u64) -> Probe {
    let Ok(mut fl) = flock(libc::F_WRLCK, offset) else {
        return Probe::Unknown;
    };
    match fcntl_lock(fd, libc::F_OFD_GETLK, &mut fl) {
        Ok(()) if fl.l_type == libc::F_UNLCK as libc::c_short => Probe::Free,
        Ok(()) => Probe::Held,
        Err(_) => Probe::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fs::{memfd, reopen, Access};

    #[test]
    fn locks_are_per_description_and_seen_by_others() {
        let a = memfd("lock-test", false).unwrap();
        crate::sys::fs::reserve(&a, 4096).unwrap();
        let b = reopen(&a, Access::ReadWrite).unwrap();
        let far = 1 << 62;
        assert_eq!(probe(&b, far), Probe::Free);
        assert!(try_lock(&a, far, true).unwrap());
        assert_eq!(probe(&b, far), Probe::Held);
        assert_eq!(
            probe(&a, far),
            Probe::Free,
            "a description does not see itself"
        );
        assert!(
            !try_lock(&b, far, false).unwrap(),
            "write lock excludes readers"
        );
        unlock(&a, far).unwrap();
        assert!(try_lock(&b, far, false).unwrap());
        assert!(try_lock(&a, far, false).unwrap(), "readers share");
        drop(b);
        assert_eq!(probe(&reopen(&a, Access::Read).unwrap(), far), Probe::Held);
        // Closing the last descriptor of a description releases its locks.
        let c = reopen(&a, Access::ReadWrite).unwrap();
        assert!(try_lock(&c, far + 1, true).unwrap());
        assert_eq!(probe(&a, far + 1), Probe::Held);
        drop(c);
        assert_eq!(probe(&a, far + 1), Probe::Free);
    }
}
