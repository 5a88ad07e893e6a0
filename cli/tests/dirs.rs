//! Segment directories (issue 18): every directory the crate creates in, opens from,
//! lists or collects in passes one rule (owned by this user or root, sticky if
//! others may write it, not reached through a symlink); one name means the caller's
//! one file across all directories; mounts nobody configured are not swept; names
//! that are not UTF-8 can be inspected and removed.
//!
//! Cases that need another user's directories or files, or mounts, run as root (CI
//! runs as root: files are given to uid 65534, `nobody`) and print `SKIPPED` with
//! the reason otherwise. Every directory and mount is removed on drop, also when a
//! test fails. No test here reserves huge pages: a refused directory is refused
//! before any page is asked for.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{unique_name, wait_with_deadline};
use shmarray::ndarray::Ix1;
use shmarray::Segment;
use shmarray::{
    admin::{inspect, DirectoryProblem},
    huge::{huge_page_support, HugePages},
    Error, Namespace, Options, SharedArray,
};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

/// A fresh directory (mode 0755) under `parent`, removed with its contents on drop
/// (unmounted first if a test mounted something on it).
struct TempDir {
    path: PathBuf,
    mounted: bool,
}

impl TempDir {
    fn new(parent: &str, tag: &str) -> TempDir {
        TempDir::at(Path::new(parent).join(unique_name(tag)))
    }

    fn at(path: PathBuf) -> TempDir {
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir {
            path,
            mounted: false,
        }
    }

    /// Mounts a file system of `fstype` with `options` here; `Err` says why not.
    fn mount(&mut self, fstype: &str, options: &str) -> Result<(), String> {
        let o = Command::new("mount")
            .args(["-t", fstype, "-o", options, "none"])
            .arg(&self.path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "mount -t {fstype} -o {options}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        self.mounted = true;
        Ok(())
    }

    fn ns(&self) -> Namespace {
        Namespace::at(&self.path).unwrap()
    }

    fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.mounted {
            let ok = Command::new("umount")
                .arg(&self.path)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.path).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `shmarray --dir PRIMARY ARGS` with `$SHMARRAY_HUGE_DIR` set to `huge` (or
/// unset: the mounts are discovered), under a watchdog.
fn cli(primary: &Path, huge: Option<&OsStr>, args: &[&OsStr]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shmarray"));
    cmd.arg("--dir").arg(primary).args(args);
    match huge {
        Some(h) => cmd.env("SHMARRAY_HUGE_DIR", h),
        None => cmd.env_remove("SHMARRAY_HUGE_DIR"),
    };
    let mut child = cmd
        .env_remove("SHMARRAY_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_with_deadline(&mut child, Duration::from_secs(60));
    child.wait_with_output().unwrap()
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn refused(r: Result<Namespace, Error>) -> (PathBuf, DirectoryProblem) {
    match r {
        Err(Error::DirectoryRefused { path, problem }) => (path, problem),
        other => panic!("expected DirectoryRefused, got {other:?}"),
    }
}

/// Leaves a valid, persistent `f64` segment of `n` elements, all `value`, named
/// `name` in `dir`.
fn leave_segment(dir: &Path, name: &str, n: usize, value: f64) {
    let opts = Options::new()
        .namespace(Namespace::at(dir).unwrap())
        .persistent(true);
    let mut a = opts.create::<SharedArray<f64, Ix1>, _>(name, n).unwrap();
    a.view_mut().unwrap().fill(value);
}

// ---------------------------------------------------------------------------
// 1. Every directory, the same rule
// ---------------------------------------------------------------------------

#[test]
fn every_directory_passes_the_same_rule() {
    // /dev/shm (root, 1777) and a directory of one's own pass.
    Namespace::at("/dev/shm").unwrap();
    let own = TempDir::new("/dev/shm", "dirs-own");
    own.ns();

    // Writable by others without the sticky bit: refused, even one's own; sticky
    // makes it fine.
    std::fs::set_permissions(&own.path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (path, problem) = refused(Namespace::at(&own.path));
    assert_eq!(path, own.path);
    assert_eq!(problem, DirectoryProblem::SharedWritable { mode: 0o777 });
    refused(Namespace::at("/dev/shm").unwrap().with_huge_dir(&own.path));
    std::fs::set_permissions(&own.path, std::fs::Permissions::from_mode(0o1777)).unwrap();
    own.ns();
    std::fs::set_permissions(&own.path, std::fs::Permissions::from_mode(0o700)).unwrap();

    // A symlink in the last component is never followed, also written `link/` or
    // `link/.`; in an earlier component it is (the directory reached still passes).
    let links = TempDir::new("/dev/shm", "dirs-links");
    let link = links.join("link");
    std::os::unix::fs::symlink(&own.path, &link).unwrap();
    for p in [link.clone(), link.join(""), link.join(".")] {
        let (_, problem) = refused(Namespace::at(&p));
        assert_eq!(problem, DirectoryProblem::Symlink, "{p:?}");
        refused(Namespace::at(&own.path).unwrap().with_huge_dir(&p));
    }
    std::fs::create_dir(own.join("sub")).unwrap();
    assert_eq!(
        Namespace::at(link.join("sub")).unwrap().path(),
        link.join("sub")
    );

    // The CLI names the directory and why, with exit status 4.
    std::fs::set_permissions(&own.path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = cli(&own.path, Some(os("")), &[os("ls")]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let err = text(&o.stderr);
    assert!(err.contains(own.path.to_str().unwrap()), "{err}");
    assert!(err.contains("not sticky"), "{err}");
    assert!(o.stdout.is_empty());
    std::fs::set_permissions(&own.path, std::fs::Permissions::from_mode(0o700)).unwrap();

    if !is_root() {
        return skip(
            "every_directory_passes_the_same_rule (another user's directory)",
            "needs root to give a directory to uid 65534",
        );
    }
    // Another user's directory, whatever its mode; `trust_owner` does not change
    // that (it trusts files, not directories).
    for mode in [0o755, 0o1777] {
        let theirs = TempDir::new("/dev/shm", "dirs-theirs");
        std::os::unix::fs::chown(&theirs.path, Some(NOBODY), Some(NOBODY)).unwrap();
        std::fs::set_permissions(&theirs.path, std::fs::Permissions::from_mode(mode)).unwrap();
        let (_, problem) = refused(Namespace::at(&theirs.path));
        assert_eq!(
            problem,
            DirectoryProblem::ForeignOwner {
                owner: NOBODY,
                euid: 0
            }
        );
        let o = cli(&theirs.path, Some(os("")), &[os("gc")]);
        assert_eq!(o.status.code(), Some(4), "{o:?}");
        assert!(text(&o.stderr).contains("belongs to uid 65534"), "{o:?}");
    }
}

/// The issue's four huge-page directories that root used to create in: a
/// hugetlbfs of another user, a world-writable hugetlbfs that is not sticky, a THP
/// tmpfs of another user, and another user's symlink named by `$SHMARRAY_HUGE_DIR`.
#[test]
fn huge_page_directories_of_others_are_never_used() {
    const TEST: &str = "huge_page_directories_of_others_are_never_used";
    if !is_root() {
        return skip(TEST, "needs root to mount file systems for another user");
    }
    let base = TempDir::new("/tmp", "dirs-huge");
    let primary = TempDir::new("/dev/shm", "dirs-huge-primary");
    let mut cases: Vec<(TempDir, PathBuf, DirectoryProblem)> = Vec::new();
    let foreign = DirectoryProblem::ForeignOwner {
        owner: NOBODY,
        euid: 0,
    };
    for (tag, fstype, options, problem) in [
        (
            "hugetlbfs-of-nobody",
            "hugetlbfs",
            "pagesize=2M,uid=65534,mode=0755",
            foreign,
        ),
        (
            "hugetlbfs-0777",
            "hugetlbfs",
            "pagesize=2M,mode=0777",
            DirectoryProblem::SharedWritable { mode: 0o777 },
        ),
        (
            "thp-of-nobody",
            "tmpfs",
            "huge=always,size=64m,uid=65534,mode=0755",
            foreign,
        ),
    ] {
        let mut d = TempDir::at(base.join(tag));
        if let Err(e) = d.mount(fstype, options) {
            return skip(TEST, &e);
        }
        let p = d.path.clone();
        cases.push((d, p, problem));
    }
    // A root-owned THP tmpfs that passes by itself, reached through nobody's
    // symlink: the symlink is refused.
    let mut target = TempDir::at(base.join("thp-of-root"));
    if let Err(e) = target.mount("tmpfs", "huge=always,size=64m,mode=0755") {
        return skip(TEST, &e);
    }
    let link = base.join("link-of-nobody");
    std::os::unix::fs::symlink(&target.path, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();

    // Before anything else: a segment root made (or that was swapped in) inside a
    // refused directory is never found by name.
    leave_segment(&target.path, "planted", 16, 7.0);

    let mut all: Vec<(PathBuf, DirectoryProblem)> = cases
        .iter()
        .map(|(_, p, problem)| (p.clone(), *problem))
        .collect();
    all.push((link.clone(), DirectoryProblem::Symlink));
    for (dir, problem) in &all {
        let what = format!("{dir:?}");
        // The library refuses it by name...
        let (path, got) = refused(primary.ns().with_huge_dir(dir));
        assert_eq!((&path, got), (dir, *problem), "{what}");
        // ...and so does `create --huge-pages require` with $SHMARRAY_HUGE_DIR: the
        // error names the directory and the reason; nothing is created there.
        let name = unique_name("req");
        let o = cli(
            &primary.path,
            Some(dir.as_os_str()),
            &[
                os("create"),
                os(&name),
                os("--shape"),
                os("1000"),
                os("--huge-pages"),
                os("require"),
            ],
        );
        assert_eq!(o.status.code(), Some(4), "{what}: {o:?}");
        let err = text(&o.stderr);
        assert!(err.contains(dir.to_str().unwrap()), "{what}: {err}");
        assert!(err.contains(&problem.to_string()), "{what}: {err}");
        assert!(!dir.join(&name).exists(), "{what}");
        assert!(!primary.join(&name).exists(), "{what}");
        // `prefer` falls back to the primary directory and says why.
        let o = cli(
            &primary.path,
            Some(dir.as_os_str()),
            &[
                os("create"),
                os(&name),
                os("--shape"),
                os("10"),
                os("--huge-pages"),
                os("prefer"),
            ],
        );
        assert!(o.status.success(), "{what}: {o:?}");
        assert_eq!(
            text(&o.stdout).trim(),
            primary.join(&name).to_str().unwrap()
        );
        let err = text(&o.stderr);
        assert!(err.contains("is on base pages"), "{what}: {err}");
        assert!(err.contains(dir.to_str().unwrap()), "{what}: {err}");
        // `doctor` lists it as refused, with why.
        let o = cli(&primary.path, Some(dir.as_os_str()), &[os("doctor")]);
        assert!(o.status.success(), "{what}: {o:?}");
        let doctor = text(&o.stdout);
        let line = doctor
            .lines()
            .skip_while(|l| !l.starts_with("refused huge-page directories"))
            .find(|l| l.contains(dir.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{what} not listed as refused:\n{doctor}"));
        assert!(line.contains(&problem.to_string()), "{line}");
    }
    // Nothing in a refused directory is opened, listed or inspected by name.
    let o = cli(&primary.path, Some(link.as_os_str()), &[os("ls")]);
    assert!(o.status.success(), "{o:?}");
    assert!(!text(&o.stdout).contains("planted"), "{o:?}");
    let o = cli(
        &primary.path,
        Some(link.as_os_str()),
        &[os("inspect"), os("planted")],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(text(&o.stderr).contains("not found"), "{o:?}");
    assert!(target.join("planted").exists());
}

// ---------------------------------------------------------------------------
// 2. One name, one segment
// ---------------------------------------------------------------------------

#[test]
fn a_file_planted_elsewhere_neither_hides_nor_stands_in_for_the_callers_segment() {
    const TEST: &str =
        "a_file_planted_elsewhere_neither_hides_nor_stands_in_for_the_callers_segment";
    if !is_root() {
        return skip(TEST, "needs root to make a file of another user");
    }
    // The caller's live segment `x` is in the second directory; another user
    // plants a valid `x` (same dtype and shape) in the first.
    let first = TempDir::new("/dev/shm", "dirs-first");
    let second = TempDir::new("/dev/shm", "dirs-second");
    let ns = first.ns().with_huge_dir(&second.path).unwrap();
    let opts = Options::new().namespace(ns.clone());
    leave_segment(&second.path, "x", 8, 1.0);
    leave_segment(&first.path, "x", 8, 2.0);
    std::os::unix::fs::chown(first.join("x"), Some(NOBODY), Some(NOBODY)).unwrap();

    // Open finds the caller's own, not the planted one (nor ForeignOwner).
    let a = opts
        .open::<SharedArray<f64, Ix1>>("x")
        .expect("the caller's own x");
    assert_eq!(a.path().unwrap(), second.join("x"));
    assert!(a.lock().unwrap().iter().all(|&v| v == 1.0));
    drop(a);
    assert_eq!(inspect(&ns, "x").unwrap().path, second.join("x"));
    assert_eq!(ns.path_of("x").unwrap(), second.join("x"));
    // Creation still refuses a name held anywhere, by anyone.
    assert!(matches!(
        opts.create::<SharedArray<f64, Ix1>, _>("x", 8),
        Err(Error::AlreadyExists { .. })
    ));
    // `ls` shows each entry's directory.
    let huge = second.path.as_os_str();
    let o = cli(&first.path, Some(huge), &[os("ls")]);
    let ls = text(&o.stdout);
    assert!(ls.lines().next().unwrap().contains(" DIR "), "{ls}");
    let rows: Vec<&str> = ls.lines().filter(|l| l.starts_with("x ")).collect();
    assert_eq!(rows.len(), 2, "{ls}");
    assert!(rows[0].contains(first.path.to_str().unwrap()), "{ls}");
    assert!(rows[0].ends_with("owner uid 65534"), "{ls}");
    assert!(rows[1].contains(second.path.to_str().unwrap()), "{ls}");

    // `rm x` removes the caller's own file, never the planted one.
    let o = cli(&first.path, Some(huge), &[os("rm"), os("x")]);
    assert!(o.status.success(), "{o:?}");
    assert!(!second.join("x").exists());
    assert!(first.join("x").exists());
    // Now only the planted file holds the name: it is refused, not adopted, and
    // not removed without naming its owner.
    match opts.open::<SharedArray<f64, Ix1>>("x") {
        Err(Error::ForeignOwner { owner: NOBODY, .. }) => {}
        other => panic!("expected ForeignOwner, got {other:?}"),
    }
    assert_eq!(ns.path_of("x").unwrap(), first.join("x"));
    assert!(matches!(
        ns.remove("x"),
        Err(Error::ForeignOwner { owner: NOBODY, .. })
    ));
    let o = cli(&first.path, Some(huge), &[os("rm"), os("x")]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(text(&o.stderr).contains("--owner 65534"), "{o:?}");
    assert!(first.join("x").exists());
    let o = cli(
        &first.path,
        Some(huge),
        &[os("rm"), os("--owner"), os("65534"), os("x")],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(!first.join("x").exists());
}

#[test]
fn a_name_the_caller_holds_twice_is_an_error_naming_both() {
    let first = TempDir::new("/dev/shm", "dirs-dup1");
    let second = TempDir::new("/dev/shm", "dirs-dup2");
    let ns = first.ns().with_huge_dir(&second.path).unwrap();
    let opts = Options::new().namespace(ns.clone());
    leave_segment(&first.path, "x", 4, 1.0);
    leave_segment(&second.path, "x", 4, 2.0);
    let both = vec![first.join("x"), second.join("x")];
    let dup = |r: Result<(), Error>, what: &str| match r {
        Err(Error::DuplicateName { name, paths }) => {
            assert_eq!(name, "x", "{what}");
            assert_eq!(paths, both, "{what}");
        }
        other => panic!("{what}: expected DuplicateName, got {other:?}"),
    };
    dup(opts.open::<SharedArray<f64, Ix1>>("x").map(drop), "open");
    dup(inspect(&ns, "x").map(drop), "inspect");
    dup(ns.path_of("x").map(drop), "path_of");
    dup(ns.remove("x"), "remove");
    assert!(matches!(
        opts.create::<SharedArray<f64, Ix1>, _>("x", 4),
        Err(Error::AlreadyExists { .. })
    ));
    let huge = second.path.as_os_str();
    for args in [&[os("rm"), os("x")][..], &[os("inspect"), os("x")]] {
        let o = cli(&first.path, Some(huge), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
        let err = text(&o.stderr);
        for p in &both {
            assert!(err.contains(p.to_str().unwrap()), "{args:?}: {err}");
        }
    }
    assert!(both.iter().all(|p| p.exists()));
    // `ls` shows both, each with its directory, and says what is wrong.
    let ls = text(&cli(&first.path, Some(huge), &[os("ls")]).stdout);
    let rows: Vec<&str> = ls.lines().filter(|l| l.starts_with("x ")).collect();
    assert_eq!(rows.len(), 2, "{ls}");
    for (row, dir) in rows.iter().zip([&first.path, &second.path]) {
        assert!(row.contains(dir.to_str().unwrap()), "{ls}");
        assert!(
            row.ends_with("yours in two directories: remove one"),
            "{ls}"
        );
    }
    // Through one directory alone, each is what the name means there.
    Namespace::at(&second.path).unwrap().remove("x").unwrap();
    assert_eq!(inspect(&ns, "x").unwrap().path, both[0]);
}

// ---------------------------------------------------------------------------
// 3. Mounts nobody configured
// ---------------------------------------------------------------------------

/// Leaves a copy of a live non-persistent segment at `to`: garbage (nobody has it
/// open, not persistent), which `gc` would remove wherever it looks.
fn leave_garbage(scratch: &Path, to: &Path) {
    let name = unique_name("garbage");
    let opts = Options::new().namespace(Namespace::at(scratch).unwrap());
    let a = opts.create::<SharedArray<f64, Ix1>, _>(&name, 4).unwrap();
    std::fs::copy(scratch.join(&name), to).unwrap();
    drop(a);
}

#[test]
fn discovered_mounts_that_fail_the_rule_are_not_swept_listed_or_used() {
    const TEST: &str = "discovered_mounts_that_fail_the_rule_are_not_swept_listed_or_used";
    if !is_root() {
        return skip(TEST, "needs root to mount file systems");
    }
    let base = TempDir::new("/tmp", "dirs-found");
    let primary = TempDir::new("/dev/shm", "dirs-found-primary");
    // Another user's THP tmpfs, and another job's world-writable sticky one at a
    // path with a newline: both writable by root, both found in mountinfo.
    let mut theirs = TempDir::at(base.join("thp-of-nobody"));
    let mut odd = TempDir::at(base.join("job\nthp"));
    for (d, options) in [
        (&mut theirs, "huge=always,size=64m,uid=65534,mode=0755"),
        (&mut odd, "huge=always,size=64m,mode=1777"),
    ] {
        if let Err(e) = d.mount("tmpfs", options) {
            return skip(TEST, &e);
        }
    }
    let names = [unique_name("in-theirs"), unique_name("in-odd")];
    leave_garbage(&primary.path, &theirs.join(&names[0]));
    leave_garbage(&primary.path, &odd.join(&names[1]));

    // The library sees both mounts and says why each stays out.
    let support = huge_page_support();
    for (path, problem) in [
        (
            &theirs.path,
            DirectoryProblem::ForeignOwner {
                owner: NOBODY,
                euid: 0,
            },
        ),
        (&odd.path, DirectoryProblem::ControlCharacters),
    ] {
        let m = support
            .mounts
            .iter()
            .find(|m| &m.path == path)
            .unwrap_or_else(|| panic!("{path:?} not found in mountinfo"));
        assert_eq!(m.refused, Some(problem), "{path:?}");
    }
    // Without $SHMARRAY_HUGE_DIR (discovery): gc would remove neither, ls lists
    // neither, inspect finds neither; doctor shows both as refused with why.
    let gc = cli(&primary.path, None, &[os("gc"), os("--dry-run")]);
    assert!(gc.status.success(), "{gc:?}");
    let ls = cli(&primary.path, None, &[os("ls")]);
    assert!(ls.status.success(), "{ls:?}");
    for n in &names {
        assert!(!text(&gc.stdout).contains(n.as_str()), "{gc:?}");
        assert!(!text(&ls.stdout).contains(n.as_str()), "{ls:?}");
        let o = cli(&primary.path, None, &[os("inspect"), os(n)]);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
    }
    let doctor = text(&cli(&primary.path, None, &[os("doctor")]).stdout);
    let row = |needle: &str| {
        doctor
            .lines()
            .find(|l| l.contains(needle) && l.contains("refused"))
            .unwrap_or_else(|| panic!("no refused mount {needle:?} in:\n{doctor}"))
            .to_string()
    };
    assert!(
        row(theirs.path.to_str().unwrap()).contains("belongs to uid 65534"),
        "{doctor}"
    );
    assert!(
        row("job\\x0athp").contains("control characters"),
        "{doctor}"
    );
    // Named explicitly, the sticky one with the odd path is used after all.
    let o = cli(&primary.path, Some(odd.path.as_os_str()), &[os("ls")]);
    assert!(text(&o.stdout).contains(names[1].as_str()), "{o:?}");
    assert!(theirs.join(&names[0]).exists() && odd.join(&names[1]).exists());
}

// ---------------------------------------------------------------------------
// 10. Names that are not UTF-8
// ---------------------------------------------------------------------------

#[test]
fn names_that_are_not_utf8_can_be_inspected_found_and_removed() {
    let d = TempDir::new("/dev/shm", "dirs-bytes");
    leave_segment(&d.path, "plain-name", 3, 0.0);
    let raw = OsStr::from_bytes(b"bad\xff-name");
    std::fs::rename(d.join("plain-name"), d.join(raw)).unwrap();
    let ls = text(&cli(&d.path, Some(os("")), &[os("ls")]).stdout);
    assert!(ls.contains("bad\\xff-name"), "{ls}");

    let o = cli(&d.path, Some(os("")), &[os("inspect"), raw]);
    assert!(o.status.success(), "{o:?}");
    let out = text(&o.stdout);
    assert!(out.contains("name           bad\\xff-name"), "{out}");
    assert!(out.contains("shape          (3,)"), "{out}");
    let o = cli(&d.path, Some(os("")), &[os("path"), raw]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        text(&o.stdout).trim(),
        format!("{}/bad\\xff-name", d.path.display())
    );
    // The library takes the same bytes.
    assert_eq!(inspect(&d.ns(), raw).unwrap().path, d.join(raw));
    let o = cli(&d.path, Some(os("")), &[os("rm"), raw]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o.stdout), "removed bad\\xff-name\n");
    assert!(!d.join(raw).exists());
    // Invalid names stay usage errors.
    let o = cli(
        &d.path,
        Some(os("")),
        &[os("rm"), OsStr::from_bytes(b"a/\xff")],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

/// `HugePages::Require` in a namespace whose only huge-page directory was refused
/// fails naming it; `Prefer` says why it fell back. (Through `discover`, which
/// records refusals; a refused directory given to `with_huge_dir` is an error at
/// once, tested above.)
#[test]
fn refused_huge_directories_are_named_by_require_and_prefer() {
    let primary = TempDir::new("/dev/shm", "dirs-req");
    let shared = TempDir::new("/dev/shm", "dirs-req-shared");
    std::fs::set_permissions(&shared.path, std::fs::Permissions::from_mode(0o777)).unwrap();
    // `discover` reads $SHMARRAY_HUGE_DIR: run it in a child with the variable set.
    let o = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("SHMARRAY_DIRS_CHILD", &primary.path)
        .env("SHMARRAY_HUGE_DIR", &shared.path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(out.contains("child ok"), "{out}");
    assert!(std::fs::read_dir(&shared.path).unwrap().next().is_none());
}

/// The child of `refused_huge_directories_are_named_by_require_and_prefer`.
#[test]
fn child_entry() {
    let Some(primary) = std::env::var_os("SHMARRAY_DIRS_CHILD") else {
        return;
    };
    let shared = PathBuf::from(std::env::var_os("SHMARRAY_HUGE_DIR").unwrap());
    let ns = Namespace::discover(&primary).unwrap();
    assert_eq!(ns.directories().len(), 1);
    let r = &ns.refused()[0];
    assert_eq!(r.path, shared);
    assert_eq!(r.problem, DirectoryProblem::SharedWritable { mode: 0o777 });
    let opts = Options::new().namespace(ns);
    match (opts.clone().huge_pages(HugePages::Require)).create::<SharedArray<f64, Ix1>, _>("r", 4) {
        Err(Error::DirectoryRefused { path, problem }) => {
            assert_eq!(path, shared);
            assert_eq!(problem, DirectoryProblem::SharedWritable { mode: 0o777 });
        }
        other => panic!("expected DirectoryRefused, got {other:?}"),
    }
    let a = (opts.huge_pages(HugePages::Prefer))
        .create::<SharedArray<f64, Ix1>, _>("p", 4)
        .unwrap();
    let why = a.backing().fallback.clone().unwrap();
    assert!(why.contains(shared.to_str().unwrap()), "{why}");
    assert!(why.contains("not sticky"), "{why}");
    assert_eq!(a.path().unwrap(), Path::new(&primary).join("p"));
    drop(a);
    println!("child ok");
}
