//! Who is using a segment, as the kernel knows it: open-file-description locks on
//! bytes far beyond any data (see `sys::lock`).
//!
//! | byte | held by | as |
//! |---|---|---|
//! | [`HANDLE_BYTE`] | every open handle (creator and openers) | read lock |
//! | [`HANDLE_BYTE`] | a remover (`gc`) while it takes the name away | write lock |
//! | [`CREATOR_BYTE`] | the handle that created the segment | write lock |
//! | [`MEMBER_BASE`] + i | the member in slot i of a queue's or barrier's table | write lock |
//!
//! The kernel drops a process's locks when it dies, in any pid namespace and without
//! `/proc`, so "nobody holds it" means dead or closed, and "somebody holds it" means
//! alive (or a forked child kept the descriptor: we then err on the side of alive).
//! Where the file system cannot answer, the answer is `Unknown`, and nothing is
//! removed or recovered on an unknown.

use std::fmt;
use std::fs::File;

use crate::sys::lock::{self, Probe};

/// Base of the lock bytes: beyond any data a segment can have.
pub(crate) const LOCK_BASE: u64 = 1 << 62;
/// Held (shared) by every handle; held exclusively by a remover.
pub(crate) const HANDLE_BYTE: u64 = LOCK_BASE;
/// Held (exclusively) by the creating handle.
pub(crate) const CREATOR_BYTE: u64 = LOCK_BASE + 1;
/// Member slot `i` of a member table is `MEMBER_BASE + i`.
pub(crate) const MEMBER_BASE: u64 = LOCK_BASE + 1024;

/// Whether a process (a creator, a member) is alive, as far as can be known.
///
/// Known from a lock the kernel releases when the process closes its handle or
/// dies, never from a pid (which another process may have by now). [`Usage`] shows
/// a creator that is gone while its segment is still in use.
///
/// ```
/// use shmarray::{admin::{inspect, Liveness}, atomic::SharedAtomicU32, Namespace};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-liveness-{}", std::process::id());
/// let _flag = SharedAtomicU32::create(&name, 0)?;
/// let creator = inspect(&Namespace::default_dir()?, &name)?.creator;
/// assert_eq!(creator, Some(Liveness::Alive)); // this process holds the creator's lock
/// // Tables print it as a word; `Unknown` is never taken for `Dead`.
/// assert_eq!(creator.map(|l| l.to_string()).as_deref(), Some("alive"));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// It holds its lock: alive.
    Alive,
    /// Its lock is free: it exited or closed its handle.
    Dead,
    /// The file system cannot say (no lock support); treated as alive by every
    /// decision that would delete or recover something.
    Unknown,
}

impl Liveness {
    pub(crate) fn from_probe(p: Probe) -> Liveness {
        match p {
            Probe::Held => Liveness::Alive,
            Probe::Free => Liveness::Dead,
            Probe::Unknown => Liveness::Unknown,
        }
    }

    /// Lower-case word for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Dead => "dead",
            Liveness::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether any process has a segment open.
///
/// ```
/// use shmarray::admin::{self, Liveness, Usage};
/// use shmarray::{ndarray::Ix1, Namespace, Options, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-usage-{}", std::process::id());
/// let ns = Namespace::default_dir()?;
/// let state = || -> shmarray::Result<_> {
///     let info = admin::inspect(&ns, &name)?;
///     Ok((info.usage, info.creator))
/// };
/// // Persistent: the name outlives its creator's handle.
/// let creator: SharedArray<u8, Ix1> = Options::new().persistent(true).create(&name, 16)?;
/// let other = SharedArray::<u8, Ix1>::open(&name)?;
/// assert_eq!(state()?, (Usage::InUse, Some(Liveness::Alive)));
/// drop(creator);
/// assert_eq!(state()?, (Usage::InUse, Some(Liveness::Dead))); // `other` has it open
/// drop(other);
/// assert_eq!(state()?, (Usage::Idle, Some(Liveness::Dead)));
/// assert!(!admin::inspect(&ns, &name)?.is_garbage()); // persistent: `gc` keeps it
/// admin::remove(&name)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Usage {
    /// At least one handle is open somewhere.
    InUse,
    /// No handle is open: nobody would notice if it were removed (unless it is
    /// persistent, which is for exactly that).
    Idle,
    /// The file system cannot say.
    Unknown,
}

impl Usage {
    pub(crate) fn from_probe(p: Probe) -> Usage {
        match p {
            Probe::Held => Usage::InUse,
            Probe::Free => Usage::Idle,
            Probe::Unknown => Usage::Unknown,
        }
    }

    /// Lower-case words for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Usage::InUse => "in use",
            Usage::Idle => "idle",
            Usage::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What taking a handle lock found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Taken.
    Taken,
    /// A remover holds the byte exclusively: the segment is going away.
    Refused,
    /// The file system has no OFD locks; proceed without (others will see Unknown).
    Unsupported,
}

/// Takes this handle's shared lock on [`HANDLE_BYTE`].
pub(crate) fn hold_handle(file: &File) -> Hold {
    match lock::try_lock(file, HANDLE_BYTE, false) {
        Ok(true) => Hold::Taken,
        Ok(false) => Hold::Refused,
        Err(_) => Hold::Unsupported,
    }
}

/// Takes the creator's exclusive lock on [`CREATOR_BYTE`] of a fresh file.
pub(crate) fn hold_creator(file: &File) {
    // A fresh file has no other holders; a file system without OFD locks leaves the
    // creator's liveness Unknown, which is safe.
    let _ = lock::try_lock(file, CREATOR_BYTE, true);
}

/// Whether any handle other than those of `file`'s description is open.
pub(crate) fn usage(file: &File) -> Usage {
    Usage::from_probe(lock::probe(file, HANDLE_BYTE))
}

/// Whether the creating handle is still open.
/// Whether the member (or reader) in slot `slot` is alive, probed through `file`
/// (a description of the asker's own).
pub(crate) fn member(file: &File, slot: usize) -> Liveness {
    Liveness::from_probe(lock::probe(file, MEMBER_BASE + slot as u64))
}

pub(crate) fn creator(file: &File) -> Liveness {
    Liveness::from_probe(lock::probe(file, CREATOR_BYTE))
}

/// Takes the exclusive remover's lock: succeeds only when no handle is open, and
/// keeps new handles from opening until `file` is closed.
pub(crate) fn hold_for_removal(file: &File) -> Result<bool, nix::errno::Errno> {
    lock::try_lock(file, HANDLE_BYTE, true)
}
