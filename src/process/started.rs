//! The started page: one word shared by the pool and one worker, in which the
//! worker records the id of the task message it is about to run, *before* it calls
//! anything. It is how the pool tells "the worker died running this task" from
//! "the worker died before it began it" without a message per task.
//!
//! A memfd of one word, sealed against shrinking and growing, created by the
//! parent and passed to the worker (`SCM_RIGHTS`) before the handshake; both map
//! it shared. The parent reads the word only once the worker is known to be dead
//! (end of file, or its exit seen), so the worker's last store is visible: it
//! happened before the worker's death, and the kernel's exit and the parent's
//! observation of it order the two (`SeqCst` on both sides besides).
//!
//! Tasks run arbitrary code in the worker, which could scribble on the word: that
//! only misleads the pool about that worker's own task.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::sys::fs;

const LEN: usize = std::mem::size_of::<AtomicU64>();

/// One mapped started word (see the module docs).
#[derive(Debug)]
pub(crate) struct StartedPage {
    file: File,
    map: MmapRaw,
}

impl StartedPage {
    /// Parent side: a fresh page (word 0: nothing started).
    pub(crate) fn new() -> io::Result<StartedPage> {
        let file = fs::memfd("shmarray-started", false).map_err(io::Error::from)?;
        file.set_len(LEN as u64)?;
        fs::seal_size(&file).map_err(io::Error::from)?;
        StartedPage::map(file)
    }

    /// Worker side: the page the parent sent, checked to be at least a word long.
    pub(crate) fn adopt(fd: OwnedFd) -> io::Result<StartedPage> {
        let file = File::from(fd);
        if file.metadata()?.len() < LEN as u64 {
            return Err(io::Error::other("the started page is too short"));
        }
        StartedPage::map(file)
    }

    fn map(file: File) -> io::Result<StartedPage> {
        let map = MmapOptions::new().len(LEN).map_raw(&file)?;
        Ok(StartedPage { file, map })
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: the mapping is LEN bytes of a file at least that long, sealed
        // against shrinking by its creator (a worker checks the length before
        // mapping); its base is page aligned, so aligned for an AtomicU64; another
        // process writes it only through atomics; it lives as long as `&self`.
        unsafe { &*self.map.as_mut_ptr().cast::<AtomicU64>() }
    }

    /// Worker: records that the task message `id` begins now.
    pub(crate) fn mark(&self, id: u64) {
        self.word().store(id, Ordering::SeqCst);
    }

    /// Parent: whether the (dead) worker began the task message `id` (ids only
    /// grow, so a later one also means this one began).
    pub(crate) fn began(&self, id: u64) -> bool {
        self.word().load(Ordering::SeqCst) >= id
    }
}

impl AsFd for StartedPage {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_seen_through_the_other_mapping() {
        let parent = StartedPage::new().unwrap();
        let dup = parent.file.try_clone().unwrap();
        let worker = StartedPage::adopt(OwnedFd::from(dup)).unwrap();
        assert!(!parent.began(1));
        worker.mark(3);
        assert!(parent.began(3) && parent.began(2) && !parent.began(4));
        // Sealed: nobody can shrink it under a mapping.
        assert!(parent.file.set_len(0).is_err());
        let short = fs::memfd("short", false).unwrap();
        assert!(StartedPage::adopt(OwnedFd::from(short)).is_err());
    }
}
