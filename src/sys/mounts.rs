//! What the system offers for huge pages: the mount table, hugetlb pools, the THP
//! setting for shmem, and `fstatfs`. Reads files under `/proc` and `/sys`; the
//! parsing lives in `segment::huge`.

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

/// `f_type` of a hugetlbfs file system.
pub(crate) const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// This process's mount table (`/proc/self/mountinfo`), or `None` without `/proc`.
pub(crate) fn mountinfo() -> Option<String> {
    std::fs::read_to_string("/proc/self/mountinfo").ok()
}

/// `/proc/meminfo`, or `None`.
pub(crate) fn meminfo() -> Option<String> {
    std::fs::read_to_string("/proc/meminfo").ok()
}

/// The THP policy for shmem (`/sys/kernel/mm/transparent_hugepage/shmem_enabled`).
pub(crate) fn thp_shmem_enabled() -> Option<String> {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled").ok()
}

/// `(page size in KiB, nr, free, reserved, surplus)` of each hugetlb pool under
/// `/sys/kernel/mm/hugepages`.
pub(crate) fn hugetlb_pools() -> Vec<(u64, [u64; 4])> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut pools: Vec<(u64, [u64; 4])> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kib: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let read = |f: &str| -> u64 {
                std::fs::read_to_string(e.path().join(f))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0)
            };
            Some((
                kib,
                [
                    read("nr_hugepages"),
                    read("free_hugepages"),
                    read("resv_hugepages"),
                    read("surplus_hugepages"),
                ],
            ))
        })
        .collect();
    pools.sort();
    pools
}

/// What `fstatfs` says: `(f_type, f_bsize, total bytes, free bytes)`.
pub(crate) fn fstatfs(file: &impl AsFd) -> Result<(i64, u64, u64, u64), Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `st` is a valid out-pointer; the descriptor is open.
    Errno::result(unsafe { libc::fstatfs(file.as_fd().as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatfs succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    let bsize = u64::try_from(st.f_bsize).unwrap_or(0);
    Ok((
        st.f_type,
        bsize,
        st.f_blocks.saturating_mul(bsize),
        st.f_bavail.saturating_mul(bsize),
    ))
}

/// `(major, minor)` of a `st_dev`.
pub(crate) fn split_dev(dev: u64) -> (u32, u32) {
    (libc::major(dev), libc::minor(dev))
}

/// Whether this process may create files in `path` (`access(W_OK|X_OK)`).
pub(crate) fn writable_dir(path: &std::path::Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}
