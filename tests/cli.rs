//! The `shmarray` command: ls, inspect, rm, gc, path, create, demo.
//!
//! Each test works in its own directory under /dev/shm (`--dir`), so `gc` and `ls`
//! only ever see this test's files, and the directory is removed afterwards.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{unique_name, wait_with_deadline};
use ndarray::Ix1;
use shmarray::{Namespace, Options};

const CHILD_ENV: &str = "SHMARRAY_TEST_CHILD";

/// Not a real test: when re-executed with `SHMARRAY_TEST_CHILD=create:DIR:NAME`, this
/// process creates a segment and exits without dropping it, leaving a segment whose
/// creator is dead — what a crashed program leaves behind.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let (Some("create"), Some(dir), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        std::process::exit(2);
    };
    let a = Options::new()
        .namespace(Namespace::at(dir).unwrap())
        .create::<f64, Ix1>(name, 10)
        .unwrap();
    std::mem::forget(a);
    std::process::exit(0);
}

/// Creates `name` in `dir` from a child process that then exits without cleanup.
fn create_orphan(dir: &Path, name: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("create:{}:{name}", dir.display()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    assert!(status.success(), "child failed: {status}");
}

/// A private segment directory under /dev/shm, removed with its contents on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new() -> TestDir {
        let p = Path::new("/dev/shm").join(unique_name("clidir"));
        std::fs::create_dir(&p).unwrap();
        TestDir(p)
    }
    fn ns(&self) -> Namespace {
        Namespace::at(&self.0).unwrap()
    }
    fn names(&self) -> Vec<String> {
        self.ns().entries().unwrap()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shmarray(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmarray"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Watchdog: a hung command fails the test instead of the CI run.
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("shmarray {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn create_ls_inspect_path_rm() {
    let d = TestDir::new();
    let o = shmarray(
        &d.0,
        &["create", "frames", "--dtype", "float32", "--shape", "10,20"],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), d.0.join("frames").display().to_string());
    // The created segment stays (persistent) and opens with the right type.
    let a = Options::new()
        .namespace(d.ns())
        .open::<f32, ndarray::Ix2>("frames")
        .unwrap();
    assert_eq!(a.shape(), &[10, 20]);
    assert_eq!(a.view().sum(), 0.0);
    drop(a);

    let ls = stdout(&shmarray(&d.0, &["ls"]));
    let row = ls.lines().find(|l| l.starts_with("frames")).expect(&ls);
    assert!(
        row.contains("<f4") && row.contains("(10,20)") && row.contains("800 B"),
        "{row}"
    );
    assert!(row.contains("persistent"), "{row}");

    let inspect = stdout(&shmarray(&d.0, &["inspect", "frames"]));
    assert!(inspect.contains("descr          <f4"), "{inspect}");
    assert!(inspect.contains("shape          (10,20)"), "{inspect}");
    assert!(inspect.contains("persistent     true"), "{inspect}");

    let path = stdout(&shmarray(&d.0, &["path", "frames"]));
    assert_eq!(path.trim(), d.0.join("frames").display().to_string());

    let rm = shmarray(&d.0, &["rm", "frames"]);
    assert!(rm.status.success());
    assert!(d.names().is_empty());
    let rm_again = shmarray(&d.0, &["rm", "frames"]);
    assert!(!rm_again.status.success());
    assert!(String::from_utf8_lossy(&rm_again.stderr).contains("not found"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let d = TestDir::new();
    let o = shmarray(
        &d.0,
        &["create", "x", "--dtype", "complex128", "--shape", "3"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown dtype"));
    let o = shmarray(&d.0, &["inspect", "a/b"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid segment name"));
    let o = shmarray(&d.0, &["inspect", "missing"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
}

#[test]
fn gc_removes_only_segments_of_dead_creators() {
    let d = TestDir::new();
    let ns = d.ns();
    // live: created (and held) by this test process
    let live = Options::new()
        .namespace(ns.clone())
        .create::<f64, Ix1>("live", 4)
        .unwrap();
    // dead: its creator exited without cleaning up
    create_orphan(&d.0, "dead");
    // persistent: made by `shmarray create`, whose process has exited too
    assert!(shmarray(&d.0, &["create", "kept", "--shape", "3"])
        .status
        .success());
    // half-built: a dead creator's segment that never got its magic published
    create_orphan(&d.0, "half");
    let half = d.0.join("half");
    let mut bytes = std::fs::read(&half).unwrap();
    bytes[..8].fill(0);
    let state_at = 8192 + 12;
    bytes[state_at..state_at + 4].fill(0);
    std::fs::write(&half, &bytes).unwrap();
    // foreign: not ours, and an all-zero file that looks half-built but has no
    // control block of ours
    std::fs::write(d.0.join("foreign"), b"somebody else's file").unwrap();
    std::fs::write(d.0.join("zeros"), vec![0u8; 16384]).unwrap();

    let ls = stdout(&shmarray(&d.0, &["ls"]));
    let status_of = |name: &str| {
        ls.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{ls}"))
            .to_string()
    };
    assert!(status_of("live").ends_with("alive"), "{ls}");
    assert!(status_of("dead").ends_with("dead"), "{ls}");
    assert!(status_of("half").contains("dead, building"), "{ls}");
    assert!(status_of("kept").contains("persistent"), "{ls}");
    assert!(
        !ls.contains("foreign"),
        "plain ls lists only segments:\n{ls}"
    );
    let ls_all = stdout(&shmarray(&d.0, &["ls", "--all"]));
    assert!(ls_all.contains("foreign"), "{ls_all}");

    let dry = stdout(&shmarray(&d.0, &["gc", "--dry-run"]));
    assert!(
        dry.contains("would remove dead") && dry.contains("would remove half"),
        "{dry}"
    );
    assert_eq!(d.names().len(), 6, "dry run removes nothing");

    let gc = shmarray(&d.0, &["gc"]);
    assert!(gc.status.success(), "{gc:?}");
    assert_eq!(d.names(), vec!["foreign", "kept", "live", "zeros"]);
    assert_eq!(live.view().len(), 4);
}

#[test]
fn rm_refuses_foreign_files_without_force() {
    let d = TestDir::new();
    std::fs::write(d.0.join("foreign"), b"not an array").unwrap();
    let o = shmarray(&d.0, &["rm", "foreign"]);
    assert!(!o.status.success());
    assert!(d.0.join("foreign").exists());
    let o = shmarray(&d.0, &["rm", "--force", "foreign"]);
    assert!(o.status.success());
    assert!(!d.0.join("foreign").exists());
}

#[test]
fn demo_runs_and_checks_its_result() {
    let d = TestDir::new();
    let o = shmarray(&d.0, &["demo", "--mib", "4"]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("result checked: all 524288 elements doubled"),
        "{out}"
    );
    assert!(out.contains("round trip, pipe (copy)"), "{out}");
    assert!(d.names().is_empty(), "demo leaves nothing behind");
}

#[test]
fn ls_tells_arrays_values_queues_barriers_and_events_apart() {
    let q = unique_name("kind-q");
    let b = unique_name("kind-b");
    let e = unique_name("kind-e");
    let v = unique_name("kind-v");
    let a = unique_name("kind-a");
    let _q = shmarray::Queue::<u64>::create(&q, 8).unwrap();
    let _b = shmarray::Barrier::create(&b, 2).unwrap();
    let _e = shmarray::Event::create(&e).unwrap();
    let _v = shmarray::SharedValue::<i32>::create(&v, 0).unwrap();
    let _a = shmarray::SharedArray::<u8, Ix1>::create(&a, 100).unwrap();
    let ls = stdout(&shmarray(Path::new("/dev/shm"), &["ls"]));
    for (name, kind) in [
        (&q, "queue"),
        (&b, "barrier"),
        (&e, "event"),
        (&v, "value"),
        (&a, "array"),
    ] {
        let row = ls
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} missing:\n{ls}"));
        assert_eq!(row.split_whitespace().nth(1), Some(kind), "{row}");
    }
}
