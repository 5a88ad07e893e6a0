//! Huge pages: what a segment is backed by, where huge-page segments can live, and
//! what this machine offers.
//!
//! A fresh process that attaches a large segment pays one page fault per page it
//! touches: 65 536 of them for 256 MiB of 4 KiB pages, 128 with 2 MiB pages. Two
//! kinds of file systems give segments huge pages:
//! - **hugetlbfs** (`mount -t hugetlbfs`): pages from the reserved hugetlb pool
//!   (`/proc/sys/vm/nr_hugepages`); `posix_fallocate` takes them up front, so an
//!   exhausted pool is `NoSpace` at create, never a `SIGBUS` later;
//! - **tmpfs with `huge=always` or `huge=within_size`**: transparent huge pages,
//!   which the kernel uses where it can (best effort).
//!
//! Segments on either are found by name like any other: the default namespace is
//! `/dev/shm` (or `$SHMARRAY_DIR`) followed by the huge-capable directories, which
//! are `$SHMARRAY_HUGE_DIR` if set (none if set but empty), else the mounts of
//! `/proc/self/mountinfo` that pass these rules. Anonymous segments use
//! `memfd_create(MFD_HUGETLB)`.
//!
//! # Mounts nobody configured
//!
//! Any tool may mount a hugetlbfs or a THP tmpfs; finding one in mountinfo says
//! nothing about whom it is for. A discovered mount joins the default namespace
//! only if
//! - it is hugetlbfs with 2 MiB pages (a 1 GiB page would make every segment
//!   at least 1 GiB) or tmpfs with `huge=always`/`within_size`;
//! - this user may create files in it;
//! - its path has no control character (a newline or an escape in a mount point is
//!   a sign of trouble, and would garble every listing);
//! - it passes the directory rule every segment directory passes (see
//!   [`Namespace`](crate::Namespace)): not a symlink, owned by this user or root,
//!   sticky if others may write it.
//!
//! A mount that fails is never created in, opened from, listed or collected in;
//! [`HugeMount::refused`] and [`Namespace::refused`](crate::Namespace::refused)
//! say why, and `shmarray doctor` shows it. A mount that passes is part of the
//! namespace like `/dev/shm`: `shmarray ls` shows the directory of every segment,
//! and `gc` collects there only what it collects anywhere (this user's segments
//! that are not persistent and that no process has open). To use no discovered
//! mount at all, set `SHMARRAY_HUGE_DIR=` (empty); to use one that is refused only
//! for its path, name it in `$SHMARRAY_HUGE_DIR`.

use std::fmt;
use std::path::PathBuf;

use crate::sys::mounts;

/// Whether a segment should be on huge pages (see [`crate::Options::huge_pages`]).
///
/// ```
/// use shmarray::{huge::HugePages, ndarray::Ix1, Error, Options, Segment, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-huge-pages-{}", std::process::id());
/// assert_eq!(HugePages::default(), HugePages::Off);
/// // Require: huge pages, or an error saying what is missing (nothing is created).
/// let required: Result<SharedArray<u8, Ix1>, Error> =
///     Options::new().huge_pages(HugePages::Require).create(&name, 1 << 21);
/// match required {
///     Ok(a) => assert!(a.backing().is_huge() && a.backing().fallback.is_none()),
///     Err(Error::HugePagesUnavailable { missing, .. }) => println!("no huge pages: {missing}"),
///     Err(Error::NoSpace { .. } | Error::DirectoryRefused { .. }) => {} // pool empty, directory refused
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HugePages {
    /// Ordinary pages, in the namespace's first directory (the default).
    #[default]
    Off,
    /// Huge pages where available; otherwise ordinary pages, and
    /// [`Backing::fallback`] says why (also when a huge-page directory was refused:
    /// which, and why).
    Prefer,
    /// Huge pages or a typed error that says what is missing
    /// ([`crate::Error::HugePagesUnavailable`]; `NoSpace` for an exhausted pool;
    /// [`crate::Error::DirectoryRefused`], naming the directory and why, when the
    /// only huge-page directories fail the directory rule).
    Require,
}

/// What kind of pages back a segment.
///
/// ```
/// use shmarray::huge::{huge_page_support, PageKind};
/// assert_eq!(PageKind::HugeTlb.to_string(), "hugetlb pages");
/// // The mounts that can hold huge-page segments are never of base pages.
/// assert!(huge_page_support().mounts.iter().all(|m| m.kind != PageKind::Base));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PageKind {
    /// Ordinary pages (4 KiB).
    Base,
    /// Transparent huge pages (a tmpfs mounted `huge=always`/`within_size`): the
    /// kernel uses huge pages where it can.
    Transparent,
    /// hugetlb pages (hugetlbfs, or an `MFD_HUGETLB` memfd): always huge.
    HugeTlb,
}

impl fmt::Display for PageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageKind::Base => "base pages",
            PageKind::Transparent => "transparent huge pages",
            PageKind::HugeTlb => "hugetlb pages",
        })
    }
}

/// The pages backing a segment.
///
/// ```
/// use shmarray::huge::{Backing, PageKind};
/// use shmarray::{ndarray::Ix1, Namespace, Segment, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = SharedArray::<u8, Ix1>::create(&format!("doc-backing-{}", std::process::id()), 4096)?;
/// let b: &Backing = a.backing();
/// // Huge pages not asked for: the pages of the namespace's first directory.
/// assert_eq!(b, &Namespace::default_dir()?.directories()[0].backing);
/// assert!(b.fallback.is_none()); // nothing asked for, nothing fell back
/// if b.kind == PageKind::Base {
///     // (/dev/shm on most machines)
///     assert!(!b.is_huge());
///     assert_eq!(b.to_string(), "4 KiB base pages");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Backing {
    /// What kind of pages.
    pub kind: PageKind,
    /// Their size in bytes (for `Transparent`, the size the kernel uses where it
    /// can).
    pub page_size: u64,
    /// Why a segment asked to `Prefer` huge pages got ordinary ones.
    pub fallback: Option<String>,
}

impl Backing {
    /// Ordinary 4 KiB pages.
    pub(crate) fn base() -> Backing {
        Backing {
            kind: PageKind::Base,
            page_size: crate::format::PAGE as u64,
            fallback: None,
        }
    }

    /// Whether the pages are huge.
    pub fn is_huge(&self) -> bool {
        self.kind != PageKind::Base
    }

    /// Where the data of a new segment on these pages starts: the header is padded
    /// to a multiple of this. Base pages: a page, so the data has pages of its own.
    /// Huge pages: [`COMPACT_ALIGN`](crate::format::npy::COMPACT_ALIGN), so the data
    /// starts inside the first 4 KiB. numpy maps a file from the data offset rounded
    /// down to 4 KiB, which is then 0: the only such offset a hugetlbfs file accepts
    /// (it maps from multiples of its page size only), and one at which the kernel
    /// places a THP file's mapping on a huge-page boundary. The header also stays
    /// below numpy's default `max_header_size` and takes no huge page of its own.
    pub(crate) fn header_align(&self) -> usize {
        match self.kind {
            PageKind::Base => crate::format::PAGE,
            PageKind::Transparent | PageKind::HugeTlb => crate::format::npy::COMPACT_ALIGN,
        }
    }
}

impl Backing {
    /// How many bytes to map (and to reserve) for a segment of `len` bytes: hugetlb
    /// mappings are made and unmapped in whole pages (`munmap` of a partial one
    /// fails), so `len` rounded up to the page; `len` otherwise. `None` on overflow.
    pub(crate) fn map_len(&self, len: usize) -> Option<usize> {
        if self.kind != PageKind::HugeTlb {
            return Some(len);
        }
        let page = usize::try_from(self.page_size).ok()?.max(1);
        len.checked_add(page - 1).map(|v| v / page * page)
    }
}

impl fmt::Display for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", human_size(self.page_size), self.kind)?;
        if let Some(why) = &self.fallback {
            write!(f, " (huge pages unavailable: {why})")?;
        }
        Ok(())
    }
}

pub(crate) fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A mount that can hold huge-page segments.
///
/// ```
/// use shmarray::huge::{huge_page_support, HugeMount};
/// let mounts: Vec<HugeMount> = huge_page_support().mounts;
/// for m in &mounts {
///     // As `shmarray doctor` lists them.
///     println!("{} {} ({}), writable: {}", m.path.display(), m.kind, m.options, m.writable);
///     assert!(m.kind.to_string().contains("huge") && m.page_size.is_power_of_two());
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HugeMount {
    /// Where it is mounted.
    pub path: PathBuf,
    /// `(major, minor)` of its device, as `stat` reports `st_dev`.
    pub device: (u32, u32),
    /// hugetlbfs or a THP tmpfs.
    pub kind: PageKind,
    /// Its page size (hugetlbfs: its `pagesize=`; THP tmpfs: the PMD size).
    pub page_size: u64,
    /// Its mount options, for people (`pagesize=2M`, `huge=within_size`, ...).
    pub options: String,
    /// Whether this user may create files there.
    pub writable: bool,
    /// Why it does not join the default namespace although it may be written
    /// (`None`: it joins, if writable and of 2 MiB pages). See the module docs.
    pub refused: Option<crate::error::DirectoryProblem>,
}

/// A hugetlb pool (`/sys/kernel/mm/hugepages/hugepages-<size>kB`).
///
/// ```
/// use shmarray::huge::{huge_page_support, HugePool};
/// let support = huge_page_support();
/// let pools: &[HugePool] = &support.pools; // empty where the kernel has no hugetlb
/// for p in pools {
///     println!("{} KiB pages: {} of {} free", p.page_size >> 10, p.free, p.total);
///     assert_eq!(support.free_pages(p.page_size), Some(p.free));
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HugePool {
    /// Page size in bytes.
    pub page_size: u64,
    /// Pages in the pool (`nr_hugepages`).
    pub total: u64,
    /// Pages not in use (`free_hugepages`).
    pub free: u64,
    /// Pages promised to mappings but not yet faulted in (`resv_hugepages`).
    pub reserved: u64,
    /// Pages above `nr_hugepages` from overcommit (`surplus_hugepages`).
    pub surplus: u64,
}

/// What this machine offers for huge pages (`shmarray doctor`).
///
/// ```
/// let support = shmarray::huge::huge_page_support();
/// for m in &support.mounts {
///     println!("{} ({:?})", m.path.display(), m.kind);
/// }
/// if let Some(size) = support.default_huge_page {
///     println!("{size}-byte pages: {:?} free", support.free_pages(size));
/// }
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct HugePageSupport {
    /// hugetlbfs mounts and tmpfs mounts with `huge=always`/`within_size`.
    pub mounts: Vec<HugeMount>,
    /// The hugetlb pools.
    pub pools: Vec<HugePool>,
    /// The THP policy for shmem and memfds (`shmem_enabled`), e.g.
    /// `always within_size advise [never] deny force`.
    pub thp_shmem: Option<String>,
    /// The default huge page size (`Hugepagesize` of `/proc/meminfo`).
    pub default_huge_page: Option<u64>,
}

impl HugePageSupport {
    /// Free pages of the pool of `page_size`, if there is one.
    pub fn free_pages(&self, page_size: u64) -> Option<u64> {
        self.pools
            .iter()
            .find(|p| p.page_size == page_size)
            .map(|p| p.free)
    }
}

/// Reads what this machine offers for huge pages (`/proc/self/mountinfo`,
/// `/proc/meminfo`, `/sys/kernel/mm`). Missing files give empty fields.
pub fn huge_page_support() -> HugePageSupport {
    let default_huge_page = mounts::meminfo().and_then(|m| parse_hugepagesize(&m));
    let mut found = mounts::mountinfo()
        .map(|m| parse_mountinfo(&m, default_huge_page.unwrap_or(2 << 20)))
        .unwrap_or_default();
    for m in &mut found {
        m.writable = mounts::writable_dir(&m.path);
        m.refused = super::namespace::directory_problem(&m.path, true);
    }
    HugePageSupport {
        mounts: found,
        pools: mounts::hugetlb_pools()
            .into_iter()
            .map(|(kib, [total, free, reserved, surplus])| HugePool {
                page_size: kib * 1024,
                total,
                free,
                reserved,
                surplus,
            })
            .collect(),
        thp_shmem: mounts::thp_shmem_enabled().map(|s| s.trim().to_string()),
        default_huge_page,
    }
}

/// `Hugepagesize:       2048 kB` of `/proc/meminfo`, in bytes.
pub(crate) fn parse_hugepagesize(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("Hugepagesize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `pagesize=` value (`2M`, `1G`, `2048k`, bytes) in bytes.
fn parse_size(v: &str) -> Option<u64> {
    let (num, mul) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1 << 10),
        'm' | 'M' => (&v[..v.len() - 1], 1 << 20),
        'g' | 'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// The huge-capable mounts of a mountinfo text: hugetlbfs mounts (page size from
/// `pagesize=`, else `default_huge_page`) and tmpfs mounts with `huge=always` or
/// `huge=within_size` (2 MiB pages). Pure.
pub(crate) fn parse_mountinfo(text: &str, default_huge_page: u64) -> Vec<HugeMount> {
    text.lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options [optional...] - fstype source super-options
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (dev, path) = (left.get(2)?, left.get(4)?);
            let (major, minor) = dev.split_once(':')?;
            let device = (major.parse().ok()?, minor.parse().ok()?);
            let (fstype, opts) = (*right.first()?, *right.get(2).unwrap_or(&""));
            let opt = |key: &str| {
                opts.split(',')
                    .find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
            };
            let (kind, page_size) = match fstype {
                "hugetlbfs" => (
                    PageKind::HugeTlb,
                    opt("pagesize")
                        .and_then(parse_size)
                        .unwrap_or(default_huge_page),
                ),
                "tmpfs" if matches!(opt("huge"), Some("always" | "within_size")) => {
                    (PageKind::Transparent, 2 << 20)
                }
                _ => return None,
            };
            Some(HugeMount {
                path: PathBuf::from(unescape(path)),
                device,
                kind,
                page_size,
                options: opts.to_string(),
                writable: false,
                refused: None,
            })
        })
        .collect()
}

/// The backing a file on device `(major, minor)` with `fstatfs` `(f_type, f_bsize)`
/// has: hugetlbfs from the file system type, THP from the mount's options.
pub(crate) fn backing_of(device: (u32, u32), f_type: i64, f_bsize: u64) -> Backing {
    if f_type == mounts::HUGETLBFS_MAGIC {
        return Backing {
            kind: PageKind::HugeTlb,
            page_size: f_bsize,
            fallback: None,
        };
    }
    let thp = mounts::mountinfo()
        .map(|m| parse_mountinfo(&m, 2 << 20))
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.device == device && m.kind == PageKind::Transparent);
    match thp {
        Some(m) => Backing {
            kind: PageKind::Transparent,
            page_size: m.page_size,
            fallback: None,
        },
        None => Backing::base(),
    }
}

/// The pages behind an open segment file: hugetlb pages if its file system is
/// hugetlbfs (`fstatfs`: one cheap call, so every attach asks), else those of the
/// directory it was found in (a THP tmpfs), else base pages.
pub(crate) fn file_backing(file: &impl std::os::fd::AsFd, dir: Option<&Backing>) -> Backing {
    match mounts::fstatfs(file) {
        Ok((f_type, f_bsize, _, _)) if f_type == mounts::HUGETLBFS_MAGIC => Backing {
            kind: PageKind::HugeTlb,
            page_size: f_bsize,
            fallback: None,
        },
        _ => dir
            .filter(|d| d.kind == PageKind::Transparent)
            .cloned()
            .unwrap_or_else(Backing::base),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
42 27 0:39 / /dev/hugepages rw,relatime shared:5 - hugetlbfs hugetlbfs rw,pagesize=2M
43 27 0:40 / /mnt/huge\\0401g rw,relatime - hugetlbfs none rw,pagesize=1024M
44 27 0:41 / /mnt/thp rw - tmpfs tmpfs rw,size=1g,huge=within_size
45 27 0:42 / /mnt/advise rw - tmpfs tmpfs rw,huge=advise
46 27 0:43 / /mnt/plainhuge rw - hugetlbfs none rw
";

    #[test]
    fn huge_capable_mounts_are_found_with_their_page_sizes() {
        let m = parse_mountinfo(MOUNTINFO, 2 << 20);
        let got: Vec<(&str, PageKind, u64, (u32, u32))> = m
            .iter()
            .map(|m| (m.path.to_str().unwrap(), m.kind, m.page_size, m.device))
            .collect();
        assert_eq!(
            got,
            [
                ("/dev/hugepages", PageKind::HugeTlb, 2 << 20, (0, 39)),
                ("/mnt/huge 1g", PageKind::HugeTlb, 1 << 30, (0, 40)),
                ("/mnt/thp", PageKind::Transparent, 2 << 20, (0, 41)),
                ("/mnt/plainhuge", PageKind::HugeTlb, 2 << 20, (0, 43)),
            ]
        );
        assert_eq!(parse_mountinfo("garbage\n\n- x", 1), vec![]);
    }

    #[test]
    fn meminfo_and_sizes() {
        assert_eq!(
            parse_hugepagesize("MemTotal: 1 kB\nHugepagesize:       2048 kB\n"),
            Some(2 << 20)
        );
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("2048k"), Some(2 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(human_size(2 << 20), "2 MiB");
        assert_eq!(Backing::base().to_string(), "4 KiB base pages");
    }

    #[test]
    fn this_machine_can_be_asked() {
        let s = huge_page_support();
        assert!(s.default_huge_page.is_some() || s.pools.is_empty());
    }
}
