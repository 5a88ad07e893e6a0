//! Huge pages, on real hugetlbfs and THP tmpfs mounts.
//!
//! As root (CI runs as root), each test that needs them mounts a hugetlbfs
//! (`pagesize=2M`) and a tmpfs (`huge=always`) in fresh directories under `/tmp`
//! and raises `/proc/sys/vm/nr_hugepages`; the fixture unmounts, removes and
//! restores everything on drop, also when the test fails. Elsewhere those tests
//! print `SKIPPED:` with the reason and pass. The tests share the machine's pool,
//! so they run one at a time (a lock in this file).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::{python, unique_name, wait_with_deadline, Children};
use shmarray::ndarray::{Array1, Ix1};
use shmarray::{
    admin::{collect_garbage, inspect},
    huge::{huge_page_support, HugePages, PageKind},
    Barrier, Error, Namespace, Options, Queue, Segment, SharedArray, SharedMap, SharedVec,
};

const MIB2: u64 = 2 << 20;
const POOL: &str = "/proc/sys/vm/nr_hugepages";
const CHILD_ENV: &str = "SHMARRAY_HUGE_TEST_CHILD";

/// One test at a time: they change the machine's hugetlb pool.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn free_pages() -> u64 {
    huge_page_support().free_pages(MIB2).unwrap_or(0)
}

fn sh(cmd: &str, args: &[&str]) -> Result<(), String> {
    let o = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// A plain tmpfs directory, a hugetlbfs and a THP tmpfs, with `pages` more 2 MiB
/// pages in the pool; all undone on drop.
struct Mounts {
    plain: PathBuf,
    hugetlb: PathBuf,
    thp: PathBuf,
    mounted: Vec<PathBuf>,
    old_pool: Option<u64>,
    _serial: MutexGuard<'static, ()>,
}

impl Mounts {
    /// The mounts, or `None` (after printing why) where they cannot be made.
    fn new(pages: u64) -> Option<Mounts> {
        let serial = serial();
        let skip = |why: String| {
            eprintln!("SKIPPED: {why}");
            None
        };
        if !nix::unistd::geteuid().is_root() {
            return skip("not root: cannot mount hugetlbfs or reserve huge pages".into());
        }
        let Ok(old) = std::fs::read_to_string(POOL) else {
            return skip(format!("no {POOL}: this kernel has no hugetlb pages"));
        };
        let old: u64 = old.trim().parse().unwrap_or(0);
        let base = PathBuf::from("/tmp").join(unique_name("huge"));
        let mut m = Mounts {
            plain: PathBuf::from("/dev/shm").join(unique_name("huge-plain")),
            hugetlb: base.join("hugetlb"),
            thp: base.join("thp"),
            mounted: Vec::new(),
            old_pool: None,
            _serial: serial,
        };
        for d in [&m.plain, &m.hugetlb, &m.thp] {
            std::fs::create_dir_all(d).unwrap();
        }
        let want = free_pages() + pages;
        if std::fs::write(POOL, (old + pages).to_string()).is_err() {
            return skip(format!("cannot write {POOL}"));
        }
        m.old_pool = Some(old);
        if free_pages() < want {
            return skip(format!(
                "the kernel reserved fewer than {pages} more 2 MiB pages (memory too fragmented?)"
            ));
        }
        let hugetlb = m.hugetlb.to_str().unwrap().to_string();
        if let Err(e) = sh(
            "mount",
            &["-t", "hugetlbfs", "-o", "pagesize=2M", "none", &hugetlb],
        ) {
            return skip(format!("cannot mount hugetlbfs: {e}"));
        }
        m.mounted.push(m.hugetlb.clone());
        let thp = m.thp.to_str().unwrap().to_string();
        if let Err(e) = sh(
            "mount",
            &["-t", "tmpfs", "-o", "huge=always,size=256m", "none", &thp],
        ) {
            return skip(format!("cannot mount a huge=always tmpfs: {e}"));
        }
        m.mounted.push(m.thp.clone());
        Some(m)
    }

    /// The plain directory with the hugetlbfs as its huge directory.
    fn hugetlb_ns(&self) -> Namespace {
        Namespace::at(&self.plain)
            .unwrap()
            .with_huge_dir(&self.hugetlb)
            .unwrap()
    }

    fn opts(&self, huge: HugePages) -> Options {
        Options::new().namespace(self.hugetlb_ns()).huge_pages(huge)
    }

    /// Names in a directory.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// `shmarray --dir <plain> ARGS` with the default huge directories: the
    /// writable mounts of this machine, found without any flag.
    fn cli(&self, args: &[&str]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmarray"))
            .env_remove("SHMARRAY_HUGE_DIR")
            .env("SHMARRAY_DIR", &self.plain)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_with_deadline(&mut child, Duration::from_secs(60));
        child.wait_with_output().unwrap()
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(o.status.success(), "shmarray {args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.mounted.iter().rev() {
            if sh("umount", &[m.to_str().unwrap()]).is_err() {
                let _ = sh("umount", &["-l", m.to_str().unwrap()]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.plain);
        if let Some(parent) = self.hugetlb.parent() {
            let _ = std::fs::remove_dir(&self.hugetlb);
            let _ = std::fs::remove_dir(&self.thp);
            let _ = std::fs::remove_dir(parent);
        }
        if let Some(old) = self.old_pool {
            let _ = std::fs::write(POOL, old.to_string());
        }
    }
}

#[test]
fn without_a_huge_directory_prefer_falls_back_and_require_says_what_is_missing() {
    let dir = PathBuf::from("/dev/shm").join(unique_name("huge-none"));
    std::fs::create_dir(&dir).unwrap();
    let ns = Namespace::at(&dir).unwrap();
    let only_plain = ns.directories().iter().all(|d| !d.backing.is_huge());
    if only_plain {
        let opts = Options::new().namespace(ns.clone());
        let a = (opts.clone().huge_pages(HugePages::Prefer))
            .create::<SharedArray<f64, Ix1>, _>("p", 10)
            .unwrap();
        assert_eq!(a.backing().kind, PageKind::Base);
        let why = a.backing().fallback.clone().unwrap();
        assert!(why.contains("no huge-page directory"), "{why}");
        match (opts.huge_pages(HugePages::Require)).create::<SharedArray<f64, Ix1>, _>("r", 10) {
            Err(Error::HugePagesUnavailable { name, missing }) => {
                assert_eq!(name, "r");
                assert!(missing.contains("shmarray doctor"), "{missing}");
            }
            other => panic!("expected HugePagesUnavailable, got {other:?}"),
        }
        drop(a);
    }
    assert_eq!(Mounts::names(&dir), Vec::<String>::new());
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn require_puts_a_named_segment_on_hugetlbfs_and_every_lookup_finds_it() {
    let Some(m) = Mounts::new(16) else { return };
    let name = unique_name("named");
    let data = Array1::from_iter((0..1_000_000).map(|i| i as f64));
    let a = (m.opts(HugePages::Require))
        .create_from(&name, &data)
        .unwrap();
    assert_eq!(a.backing().kind, PageKind::HugeTlb);
    assert_eq!(a.backing().page_size, MIB2);
    assert_eq!(a.backing().fallback, None);
    assert_eq!(a.path().unwrap(), m.hugetlb.join(&name));
    // Sizes and offsets stay valid with the file rounded up to whole pages.
    let info = inspect(&m.hugetlb_ns(), &name).unwrap();
    assert_eq!(info.backing.kind, PageKind::HugeTlb);
    assert!(info.layout.data_offset < 4096 && info.layout.data_offset % 128 == 0);
    assert_eq!(info.file_size % MIB2, 0);
    assert!(info.file_size >= info.layout.total_len() as u64);
    let meta = std::fs::metadata(m.hugetlb.join(&name)).unwrap();
    assert_eq!(meta.size(), info.file_size);

    // Opened by name through a namespace that only lists the directories (read
    // under the lock: direct views are one handle's per process).
    let b = Options::new()
        .namespace(m.hugetlb_ns())
        .open::<SharedArray<f64, Ix1>>(&name)
        .unwrap();
    assert_eq!(b.backing().kind, PageKind::HugeTlb);
    assert_eq!(*b.lock().unwrap(), data);
    // A name means one segment in the whole namespace.
    match (m.opts(HugePages::Off)).create::<SharedArray<f64, Ix1>, _>(&name, 4) {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(Mounts::names(&m.plain), Vec::<String>::new());
    drop(b);
    drop(a);
    assert_eq!(Mounts::names(&m.hugetlb), Vec::<String>::new());
}

#[test]
fn the_cli_finds_huge_segments_without_flags() {
    let Some(m) = Mounts::new(16) else { return };
    let name = unique_name("cli");
    // `create --huge-pages require` with the default namespace: the mount is found
    // in /proc/self/mountinfo.
    let out = m.cli_ok(&[
        "create",
        &name,
        "--shape",
        "1000,1000",
        "--huge-pages",
        "require",
    ]);
    let dir = out.trim().strip_suffix(&format!("/{name}")).unwrap();
    let dir = PathBuf::from(dir);
    assert!(
        dir == m.hugetlb
            || dir == m.thp
            || huge_page_support().mounts.iter().any(|x| x.path == dir),
        "created in {dir:?}"
    );
    let ls = m.cli_ok(&["ls"]);
    let row = ls.lines().find(|l| l.starts_with(&name)).unwrap();
    assert!(row.contains("2M hugetlb") || row.contains("2M thp"), "{ls}");
    let inspect = m.cli_ok(&["inspect", &name]);
    assert!(inspect.contains("pages          2 MiB"), "{inspect}");
    // numpy's plain one-liner opens it: no `max_header_size` hint.
    assert!(!inspect.contains("max_header_size"), "{inspect}");
    assert_eq!(m.cli_ok(&["path", &name]).trim(), out.trim());
    let json = m.cli_ok(&["inspect", "--json", &name]);
    assert!(json.contains("\"page_size\": 2097152"), "{json}");
    m.cli_ok(&["rm", &name]);
    assert!(!dir.join(&name).exists());
    let o = m.cli(&["inspect", &name]);
    assert_eq!(o.status.code(), Some(1));

    // `doctor` shows the pool, the mounts and the commands.
    let doctor = m.cli_ok(&["doctor"]);
    for want in [
        "hugetlb pools",
        m.hugetlb.to_str().unwrap(),
        m.thp.to_str().unwrap(),
        "shmem_enabled",
        "mount -t hugetlbfs",
        "nr_hugepages",
    ] {
        assert!(doctor.contains(want), "doctor lacks {want:?}:\n{doctor}");
    }
}

#[test]
fn an_exhausted_pool_is_no_space_at_create_and_prefer_falls_back() {
    let Some(m) = Mounts::new(4) else { return };
    let pages = free_pages() + 1;
    let n = usize::try_from(pages * MIB2 / 8).unwrap();
    let name = unique_name("nospace");
    match (m.opts(HugePages::Require)).create::<SharedArray<f64, Ix1>, _>(&name, n) {
        Err(Error::NoSpace {
            name: got,
            requested,
        }) => {
            assert_eq!(got, name);
            assert!(requested > pages * MIB2 - MIB2, "{requested}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    // Nothing left behind, the pool is whole again.
    assert_eq!(Mounts::names(&m.hugetlb), Vec::<String>::new());
    assert_eq!(free_pages() + 1, pages);
    // Prefer takes base pages in the first directory and says why.
    let mut a = (m.opts(HugePages::Prefer))
        .create::<SharedArray<f64, Ix1>, _>(&name, n)
        .unwrap();
    assert_eq!(a.backing().kind, PageKind::Base);
    let why = a.backing().fallback.clone().unwrap();
    assert!(why.contains("hugetlb pool"), "{why}");
    assert_eq!(a.path().unwrap(), m.plain.join(&name));
    a.view_mut().unwrap().fill(1.0);
    // Anonymous segments too.
    match Options::new()
        .huge_pages(HugePages::Require)
        .create_anonymous::<SharedArray<f64, Ix1>, _>(n)
    {
        Err(Error::NoSpace { .. }) => {}
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

#[test]
fn anonymous_segments_use_mfd_hugetlb() {
    let Some(_m) = Mounts::new(8) else { return };
    let before = free_pages();
    let a = Options::new()
        .huge_pages(HugePages::Require)
        .create_anonymous::<SharedArray<u64, Ix1>, _>(1 << 20)
        .unwrap();
    assert_eq!(a.backing().kind, PageKind::HugeTlb);
    assert_eq!(a.backing().page_size, MIB2);
    // The header, 8 MiB of data and the control block: 5 pages, taken up front.
    assert_eq!(before - free_pages(), 5);
    a.lock()
        .unwrap()
        .iter_mut()
        .enumerate()
        .for_each(|(i, x)| *x = i as u64);
    // A second handle (direct views are one handle's per process: both use the lock).
    let b = SharedArray::<u64, Ix1>::from_file(a.file().try_clone().unwrap()).unwrap();
    assert_eq!(b.backing().kind, PageKind::HugeTlb);
    assert_eq!(b.lock().unwrap()[12345], 12345);
    drop((a, b));
    assert_eq!(free_pages(), before);
}

#[test]
fn thp_tmpfs_segments_report_transparent_pages_and_open_in_numpy_as_usual() {
    let Some(m) = Mounts::new(0) else { return };
    let ns = Namespace::at(&m.plain)
        .unwrap()
        .with_huge_dir(&m.thp)
        .unwrap();
    let name = unique_name("thp");
    let opts = Options::new()
        .namespace(ns.clone())
        .huge_pages(HugePages::Require);
    let mut a = opts
        .create::<SharedArray<f64, Ix1>, _>(&name, 1 << 20)
        .unwrap();
    assert_eq!(a.backing().kind, PageKind::Transparent);
    assert_eq!(a.path().unwrap(), m.thp.join(&name));
    a.view_mut().unwrap().fill(3.0);
    // The compact header of huge-page segments: numpy maps the file from offset 0,
    // at an address the kernel aligns to 2 MiB, so every data page can be a huge
    // page in numpy too (from the data offset, the first 2 MiB could not).
    let offset = inspect(&ns, &name).unwrap().layout.data_offset;
    assert!(
        offset < 4096 && offset.is_multiple_of(128),
        "data offset {offset}"
    );
    let Some(out) = numpy_plain_load(&a.path().unwrap(), "float(a.sum())", "a[0] = 7") else {
        return;
    };
    assert_eq!(out, format!("{:.1} 0 0", 3.0 * (1 << 20) as f64));
    assert_eq!(a.view().unwrap()[0], 7.0);
}

/// Loads `path` with numpy's plain one-liner, prints `show` (Python expressions),
/// the file offset numpy mapped from and the mapping's address modulo 2 MiB, runs
/// `then` and flushes.
fn numpy_plain_load(path: &Path, show: &str, then: &str) -> Option<String> {
    python(&format!(
        "path = {path:?}\n\
         a = np.load(path, mmap_mode='r+')\n\
         m = [l.split() for l in open('/proc/self/maps') if l.rstrip().endswith(path)]\n\
         start = int(m[0][0].split('-')[0], 16)\n\
         print({show}, int(m[0][2], 16), start % {MIB2})\n\
         {then}\n\
         a.flush()"
    ))
}

#[test]
fn numpy_plain_load_opens_hugetlb_segments_both_ways() {
    let Some(m) = Mounts::new(8) else { return };
    let name = unique_name("np");
    let data = Array1::from_iter((0..100_000).map(|i| i as f32));
    let a = (m.opts(HugePages::Require))
        .create_from(&name, &data)
        .unwrap();
    assert_eq!(a.backing().kind, PageKind::HugeTlb);
    let path = a.path().unwrap();
    // The header stays under numpy's default `max_header_size`, and the data starts
    // inside the first huge page: numpy maps the file from offset 0 (the only
    // offset below the data that hugetlbfs accepts), at a huge-page address.
    let offset = inspect(&m.hugetlb_ns(), &name).unwrap().layout.data_offset;
    assert!(offset < 4096 && offset % 128 == 0, "data offset {offset}");
    // Rust wrote, numpy reads; numpy writes, Rust reads.
    let Some(out) = numpy_plain_load(&path, "a.dtype, a.shape, float(a[99999])", "a *= 2") else {
        return;
    };
    assert_eq!(out, "float32 (100000,) 99999.0 0 0");
    assert_eq!(*a.lock().unwrap(), data.mapv(|x| 2.0 * x));
    // And again after Rust changed it.
    a.lock().unwrap()[7] = -1.5;
    let out = numpy_plain_load(&path, "float(a[7]), float(a[8])", "a[8] = 42").unwrap();
    assert_eq!(out, "-1.5 16.0 0 0");
    assert_eq!(a.lock().unwrap()[8], 42.0);
}

/// A segment as versions before the compact huge-page header wrote it on
/// hugetlbfs: an NPY 2.0 header padded to 2 MiB, the data, and at the next page
/// boundary the control block `cb` (one this version wrote for the same array,
/// with an initialised lock) with the data offset and checksum (FNV-1a 64 over the
/// 4 KiB header window and bytes 0..136) of the old layout. Written through a
/// mapping: hugetlbfs files have no `write`.
fn write_legacy_hugetlb_segment(path: &Path, mut cb: Vec<u8>, data: &[f64]) {
    const OFFSET: usize = 2 << 20;
    let dict = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({},), }}",
        data.len()
    );
    let mut header = b"\x93NUMPY\x02\x00".to_vec();
    header.extend_from_slice(&((OFFSET - 12) as u32).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header.resize(OFFSET - 1, b' ');
    header.push(b'\n');
    let control = (OFFSET + data.len() * 8).div_ceil(4096) * 4096;
    cb[56..64].copy_from_slice(&(OFFSET as u64).to_le_bytes());
    let mut sum: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in header[..4096].iter().chain(&cb[..136]) {
        sum = (sum ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    cb[136..144].copy_from_slice(&sum.to_le_bytes());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.set_len((control as u64 + 4096).div_ceil(MIB2) * MIB2)
        .unwrap();
    // SAFETY: a file this test just created and nobody else knows about.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
    map[..OFFSET].copy_from_slice(&header);
    for (i, x) in data.iter().enumerate() {
        map[OFFSET + 8 * i..OFFSET + 8 * i + 8].copy_from_slice(&x.to_le_bytes());
    }
    map[control..control + 4096].copy_from_slice(&cb);
}

#[test]
fn hugetlb_segments_with_the_old_2mib_header_still_open() {
    let Some(m) = Mounts::new(8) else { return };
    let data: Vec<f64> = (0..1000).map(f64::from).collect();
    // The control block this version writes for such an array (on base pages).
    let cb = {
        let plain = Namespace::at(&m.plain).unwrap();
        let name = unique_name("template");
        let opts = Options::new().namespace(plain.clone());
        let t = opts
            .create_from(&name, &Array1::from(data.clone()))
            .unwrap();
        let control = inspect(&plain, &name).unwrap().layout.control_offset;
        std::fs::read(t.path().unwrap()).unwrap()[control..control + 4096].to_vec()
    };
    let name = unique_name("legacy");
    let path = m.hugetlb.join(&name);
    let _remove = scopeguard(&path);
    write_legacy_hugetlb_segment(&path, cb, &data);
    let ns = m.hugetlb_ns();
    assert_eq!(inspect(&ns, &name).unwrap().layout.data_offset, 2 << 20);
    let a = Options::new()
        .namespace(ns)
        .open::<SharedArray<f64, Ix1>>(&name)
        .unwrap();
    assert_eq!(a.backing().kind, PageKind::HugeTlb);
    assert_eq!(a.lock().unwrap().to_vec(), data);
    a.lock().unwrap()[3] = 0.5;
    // `shmarray inspect` says how numpy opens such a file.
    let text = m.cli_ok(&["inspect", &name]);
    assert!(text.contains("max_header_size=2097152"), "{text}");
    let Some(out) = python(&format!(
        "try:\n    np.load({path:?}, mmap_mode='r')\n    print('opened')\nexcept ValueError as e:\n    print('refused' if 'max_header_size' in str(e) else e)\n\
         a = np.load({path:?}, mmap_mode='r', max_header_size=1 << 22)\n\
         print(float(a[3]), float(a[999]))"
    )) else {
        return;
    };
    assert_eq!(out, "refused\n0.5 999.0");
}

/// Removes `path` on drop.
fn scopeguard(path: &Path) -> impl Drop + '_ {
    struct Rm<'a>(&'a Path);
    impl Drop for Rm<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    Rm(path)
}

/// Every kind lays its data out from the data offset, which on huge pages is only
/// 128-aligned (queues' ring header and maps' shard heads need exactly that): each
/// works there, through a second handle too.
#[test]
fn every_kind_works_with_the_compact_header_on_hugetlbfs() {
    let Some(m) = Mounts::new(16) else { return };
    let opts = m.opts(HugePages::Require);
    let reader = Options::new().namespace(m.hugetlb_ns());
    let compact = |name: &str| {
        let info = inspect(&m.hugetlb_ns(), name).unwrap();
        assert_eq!(info.backing.kind, PageKind::HugeTlb, "{name}");
        let offset = info.layout.data_offset;
        assert!(offset < 4096 && offset % 128 == 0, "{name}: {offset}");
    };
    let name = unique_name("queue");
    let q = opts.create::<Queue<u64>, _>(&name, 64).unwrap();
    compact(&name);
    let q2 = reader.open::<Queue<u64>>(&name).unwrap();
    q.put(41).unwrap();
    assert_eq!(q2.get().unwrap(), 41);

    let name = unique_name("map");
    let map = opts.create::<SharedMap<u64, u64>, _>(&name, 5000).unwrap();
    compact(&name);
    let map2 = reader.open::<SharedMap<u64, u64>>(&name).unwrap();
    for k in 0..1000 {
        map.insert(k, k * 3).unwrap();
    }
    assert_eq!(map2.get(&999).unwrap(), Some(2997));

    let name = unique_name("vec");
    let v = opts.create::<SharedVec<u32>, _>(&name, 100).unwrap();
    compact(&name);
    let v2 = reader.open::<SharedVec<u32>>(&name).unwrap();
    v.push(7).unwrap();
    assert_eq!(v2.get(0).unwrap(), Some(7));

    let name = unique_name("barrier");
    let b = opts.create::<Barrier, _>(&name, 1).unwrap();
    compact(&name);
    b.wait().unwrap();
}

#[test]
fn gc_collects_huge_segments_of_dead_creators() {
    let Some(m) = Mounts::new(8) else { return };
    let name = unique_name("gc");
    let mut kids = Children::new(CHILD_ENV);
    let mut cmd = kids.command("create");
    cmd.env("SHMARRAY_HUGE_TEST_NAME", &name)
        .env("SHMARRAY_HUGE_TEST_PLAIN", &m.plain)
        .env("SHMARRAY_HUGE_TEST_DIR", &m.hugetlb);
    let k = kids.spawn_command(cmd);
    kids.expect_line(k, "created");
    kids.kill(k);
    assert_eq!(Mounts::names(&m.hugetlb), vec![name.clone()]);
    let report = collect_garbage(&m.hugetlb_ns()).unwrap();
    assert_eq!(
        report
            .removed
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        [name.as_str()]
    );
    assert_eq!(Mounts::names(&m.hugetlb), Vec::<String>::new());
}

/// Child roles (re-executed test binary).
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap();
    match role.as_str() {
        "create" => {
            let ns = Namespace::at(var("SHMARRAY_HUGE_TEST_PLAIN"))
                .unwrap()
                .with_huge_dir(var("SHMARRAY_HUGE_TEST_DIR"))
                .unwrap();
            let opts = Options::new().namespace(ns).huge_pages(HugePages::Require);
            let a = opts
                .create::<SharedArray<f64, Ix1>, _>(&var("SHMARRAY_HUGE_TEST_NAME"), 1000)
                .unwrap();
            assert_eq!(a.backing().kind, PageKind::HugeTlb);
            println!("created");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}
