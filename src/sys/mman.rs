//! Page tables of a mapping: populating (prefaulting) a range ahead of its use
//! (`madvise(MADV_POPULATE_READ/WRITE)`, Linux ≥ 5.14).
//!
//! Populating never raises `SIGBUS`: where a page is missing (a file another
//! process shrank under the mapping) the call fails with `EFAULT` instead. It does
//! not protect later accesses: a file shrunk after populating still raises
//! `SIGBUS` on the lost pages.

use memmap2::{Advice, MmapRaw};
use nix::errno::Errno;

/// How a populated range will be used (see
/// [`SharedArray::populate`](crate::SharedArray::populate)).
///
/// ```
/// use shmarray::{huge::Populate, ndarray::Ix1, Error, Options, SharedArray};
/// # fn main() -> Result<(), shmarray::Error> {
/// let name = format!("doc-populate-kind-{}", std::process::id());
/// let a = SharedArray::<f64, Ix1>::create(&name, 1 << 16)?;
/// // Before a kernel writes the whole array: write-fault its pages now.
/// let _done = a.populate(0..a.len(), Populate::Write)?; // false before Linux 5.14
/// // A read-only handle can only read-fault.
/// let ro: SharedArray<f64, Ix1> = Options::new().read_only(true).open(&name)?;
/// assert!(matches!(ro.populate(0..ro.len(), Populate::Write), Err(Error::ReadOnly { .. })));
/// let _done = ro.populate(0..ro.len(), Populate::Read)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Populate {
    /// `MADV_POPULATE_READ`: read-fault the pages in. On a shared mapping of a
    /// tmpfs or hugetlbfs file the entries come in writable (those file systems
    /// track no dirty pages), and the kernel maps the neighbours of each fault
    /// that are in memory too (fault-around, 64 KiB).
    Read,
    /// `MADV_POPULATE_WRITE`: write-fault every page (needs a writable mapping;
    /// one fault per page, no fault-around).
    Write,
}

/// What [`populate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Populated {
    /// The range's page tables are filled.
    Done,
    /// The kernel does not know the advice (before Linux 5.14) or refuses it for
    /// this mapping (`EINVAL`; also what `Write` on a read-only mapping gets):
    /// nothing was done, pages fault in on first touch as usual.
    Unsupported,
}

/// Populates the page tables of bytes `offset..offset + len` of `map` (widened to
/// whole pages).
///
/// # Errors
/// `ERANGE` for a range outside the mapping (nothing is done); `EFAULT` when part
/// of the range has no page behind it (the file is shorter than the mapping);
/// `ENOMEM`, `EHWPOISON`, `EINTR` (a fatal signal is pending) and others as the
/// kernel reports them. Pages before the failing one may
/// be populated.
pub(crate) fn populate(
    map: &MmapRaw,
    offset: usize,
    len: usize,
    how: Populate,
) -> Result<Populated, Errno> {
    let end = offset.checked_add(len).ok_or(Errno::ERANGE)?;
    if end > map.len() {
        return Err(Errno::ERANGE);
    }
    if len == 0 {
        return Ok(Populated::Done);
    }
    let advice = match how {
        Populate::Read => Advice::PopulateRead,
        Populate::Write => Advice::PopulateWrite,
    };
    // memmap2 aligns the start down to its page and calls `madvise`; the advice is
    // one of its safe ones (populating changes no contents).
    match map.advise_range(advice, offset, len) {
        Ok(()) => Ok(Populated::Done),
        Err(e) => match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::EINVAL) => Ok(Populated::Unsupported),
            Some(errno) => Err(errno),
            None => Err(Errno::EIO),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memmap2::MmapOptions;

    fn file(len: u64) -> std::fs::File {
        let f = tempfile_in_shm();
        f.set_len(len).unwrap();
        f
    }

    /// An unnamed file on /dev/shm (gone when closed).
    fn tempfile_in_shm() -> std::fs::File {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .open(crate::sys::fs::DEFAULT_DIR)
            .unwrap()
    }

    #[test]
    fn populates_in_range_and_refuses_outside() {
        let f = file(1 << 20);
        let map = MmapOptions::new().len(1 << 20).map_raw(&f).unwrap();
        for how in [Populate::Read, Populate::Write] {
            assert_eq!(populate(&map, 0, 1 << 20, how), Ok(Populated::Done));
            assert_eq!(populate(&map, 5000, 3, how), Ok(Populated::Done));
            assert_eq!(populate(&map, 1 << 20, 0, how), Ok(Populated::Done));
            assert_eq!(populate(&map, 4096, 1 << 20, how), Err(Errno::ERANGE));
            assert_eq!(populate(&map, usize::MAX, 2, how), Err(Errno::ERANGE));
        }
    }

    #[test]
    fn shrunk_file_is_an_error_not_sigbus() {
        let f = file(1 << 20);
        let map = MmapOptions::new().len(1 << 20).map_raw(&f).unwrap();
        f.set_len(8192).unwrap();
        for how in [Populate::Read, Populate::Write] {
            assert_eq!(populate(&map, 0, 8192, how), Ok(Populated::Done));
            assert_eq!(populate(&map, 0, 1 << 20, how), Err(Errno::EFAULT));
        }
    }

    #[test]
    fn writing_a_read_only_mapping_is_refused() {
        let f = file(1 << 16);
        let map = MmapOptions::new()
            .len(1 << 16)
            .map_raw_read_only(&f)
            .unwrap();
        assert_eq!(
            populate(&map, 0, 1 << 16, Populate::Read),
            Ok(Populated::Done)
        );
        // Linux 6.x says EINVAL (so: `Unsupported`); never `Done`.
        let r = populate(&map, 0, 1 << 16, Populate::Write);
        assert!(matches!(r, Ok(Populated::Unsupported) | Err(_)), "{r:?}");
    }
}
