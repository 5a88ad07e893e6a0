//! Hostile and unlucky conditions (issue 9), each reproduced with real files and
//! processes: another user's files, group-writable files, a file flipped between
//! full size and empty while we look, a FIFO under a segment name, live processes in
//! another pid namespace or without `/proc`, creators killed at any instant, and
//! removal racing with creation.
//!
//! Tests that need root (another user's files, `unshare`, `chattr`) run when the
//! test process may do it (CI runs as root) and print `SKIPPED ...` otherwise.
//! Child processes are this test binary re-executed with `SHMARRAY_HOSTILE_CHILD`.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::{unique_name, Children, ShmFile};
use shmarray::ndarray::{Ix0, Ix1};
use shmarray::{
    admin::{collect_garbage, find_garbage, inspect, Liveness, Usage},
    Barrier, ByteQueue, Error, Namespace, Options, Segment, SharedArray,
};

const CHILD_ENV: &str = "SHMARRAY_HOSTILE_CHILD";

/// Child roles. Not a real test when the variable is unset.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<&str> = spec.split('|').collect();
    let code = match args.as_slice() {
        ["flip", name, rounds] => flip_while_opening(name, rounds.parse().unwrap()),
        ["hold", dir, name, barrier, queue] => hold_in_foreign_namespace(dir, name, barrier, queue),
        ["create_loop", dir] => create_forever(dir),
        ["fork_drop", name] => fork_and_drop_in_the_child(name),
        _ => 2,
    };
    std::process::exit(code);
}

fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A private directory under /dev/shm (same file system, its own namespace),
/// removed with everything in it on drop.
struct ShmDir(PathBuf);

impl ShmDir {
    fn new(tag: &str) -> ShmDir {
        let p = Path::new("/dev/shm").join(unique_name(tag));
        std::fs::create_dir(&p).unwrap();
        ShmDir(p)
    }

    fn ns(&self) -> Namespace {
        Namespace::at(&self.0).unwrap()
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        // Undo any immutable attribute a test set, then remove everything.
        let _ = Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` on a thread and fails the test if it does not return within `limit`
/// (a hang must be a failure, not a stuck run).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

#[test]
fn another_users_segment_is_never_adopted() {
    if !is_root() {
        return skip(
            "another_users_segment_is_never_adopted",
            "needs root to make a file of another user",
        );
    }
    // What an attacker leaves: a valid segment (with a lock they control) under
    // the victim's name, owned by them, mode 0666.
    let name = unique_name("foreign-owner");
    let _guard = ShmFile::new(&name);
    drop(
        SharedArray::<f64, Ix1>::create(&name, 8)
            .unwrap()
            .into_persistent(),
    );
    let path = Path::new("/dev/shm").join(&name);
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();

    assert!(matches!(
        SharedArray::<f64, Ix1>::create(&name, 8),
        Err(Error::AlreadyExists { .. })
    ));
    match SharedArray::<f64, Ix1>::open(&name) {
        Err(Error::ForeignOwner { owner, euid, .. }) => {
            assert_eq!(owner, 65534);
            assert_eq!(euid, 0);
        }
        other => panic!("expected ForeignOwner, got {other:?}"),
    }
    // Trusting the owner is a deliberate act; its 0666 mode is refused separately.
    let trusted = Options::new().trust_owner(65534);
    assert!(matches!(
        trusted.open::<SharedArray<f64, Ix1>>(&name),
        Err(Error::InsecureMode { mode: 0o666, .. })
    ));
    let mut a = (trusted.allow_shared_write(true))
        .open::<SharedArray<f64, Ix1>>(&name)
        .expect("trusted owner and shared write allowed");
    assert_eq!(a.view().unwrap().len(), 8);
    // Inspection shows it (adopting nothing) with its owner.
    let info = inspect(&Namespace::default_dir().unwrap(), &name).unwrap();
    assert_eq!(info.owner, 65534);
}

#[test]
fn group_or_other_writable_files_are_refused_unless_allowed() {
    let name = unique_name("groupw");
    let _guard = ShmFile::new(&name);
    drop(
        SharedArray::<u8, Ix1>::create(&name, 8)
            .unwrap()
            .into_persistent(),
    );
    let path = Path::new("/dev/shm").join(&name);
    for mode in [0o620, 0o602] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        assert!(
            matches!(
                SharedArray::<u8, Ix1>::open(&name),
                Err(Error::InsecureMode { mode: m, .. }) if m == mode
            ),
            "{mode:o}"
        );
    }
    assert!(Options::new()
        .allow_shared_write(true)
        .open::<SharedArray<u8, Ix1>>(&name)
        .is_ok());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        SharedArray::<u8, Ix1>::open(&name).is_ok(),
        "read for others is fine"
    );
}

/// Child: creates a segment, flips its size between full and 0 from a thread, and
/// opens/inspects it in a loop. Exits 0 unless killed by a signal.
fn flip_while_opening(name: &str, rounds: u32) -> i32 {
    let seg = SharedArray::<f64, Ix1>::create(name, 100_000).unwrap();
    let path = seg.path().unwrap();
    let full = std::fs::metadata(&path).unwrap().len();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = f.set_len(0);
                let _ = f.set_len(full);
            }
        })
    };
    let ns = Namespace::default_dir().unwrap();
    let (mut ok, mut refused) = (0u32, 0u32);
    for _ in 0..rounds {
        match SharedArray::<f64, Ix1>::open(name) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
        let _ = inspect(&ns, name);
        let _ = find_garbage(&ns);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    println!("flip: {ok} opened, {refused} refused");
    0
}

#[test]
fn a_file_flipped_between_full_size_and_empty_never_kills_open_inspect_or_gc() {
    let name = unique_name("flip");
    let _guard = ShmFile::new(&name);
    let mut kids = Children::new(CHILD_ENV);
    let c = kids.spawn(&format!("flip|{name}|2000"));
    let (code, out) = kids.wait(c);
    assert_eq!(code, 0, "killed or failed (a SIGBUS shows as -1): {out}");
    assert!(out.contains("flip:"), "{out}");
}

#[test]
fn a_fifo_under_a_segment_name_never_blocks() {
    let dir = ShmDir::new("fifo");
    let fifo = dir.0.join("frames");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let ns = dir.ns();
    let (a, b, c) = (ns.clone(), ns.clone(), ns);
    let opened = within(Duration::from_secs(10), "open of a FIFO", move || {
        Options::new()
            .namespace(a)
            .open::<SharedArray<u8, Ix1>>("frames")
    });
    assert!(
        matches!(
            opened,
            Err(Error::NotShmarray {
                reason: "it is a FIFO",
                ..
            })
        ),
        "{opened:?}"
    );
    let inspected = within(Duration::from_secs(10), "inspect of a FIFO", move || {
        inspect(&b, "frames")
    });
    assert!(matches!(inspected, Err(Error::NotShmarray { .. })));
    let report = within(Duration::from_secs(10), "gc over a FIFO", move || {
        collect_garbage(&c)
    })
    .unwrap();
    assert!(report.removed.is_empty() && report.failed.is_empty());
    assert!(fifo.exists(), "foreign files are left alone");
}

/// Child (run in another pid namespace, or without /proc): holds a segment, joins a
/// barrier and puts a queue message slowly.
fn hold_in_foreign_namespace(dir: &str, name: &str, barrier: &str, queue: &str) -> i32 {
    let ns = Namespace::at(dir).unwrap();
    let opts = Options::new().namespace(ns.clone());
    let _seg = opts.create::<SharedArray<u64, Ix0>, _>(name, ()).unwrap();
    let b = opts.open::<Barrier>(barrier).unwrap();
    let q = ByteQueue::open(queue).unwrap();
    println!("ready pid={}", std::process::id());
    // Our own gc must not take what a live process elsewhere holds either.
    let report = collect_garbage(&ns).unwrap();
    println!("gc removed {}", report.removed.len());
    // A slow participant and a slow producer: alive all along.
    std::thread::sleep(Duration::from_millis(300));
    let arrived = b.wait_timeout(Duration::from_secs(20));
    q.put_with(5, |buf| {
        std::thread::sleep(Duration::from_millis(500));
        buf.copy_from_slice(b"hello");
    })
    .unwrap();
    println!("barrier {arrived:?}");
    // Stay alive until the parent is done looking (it closes our stdin).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    0
}

/// Runs the `hold` role wrapped by `wrapper` (an `unshare` command line) and checks
/// that this process sees it alive: gc keeps its segment, the barrier and queue
/// never call it dead.
fn a_live_process_elsewhere_is_never_called_dead(test: &str, wrapper: &[&str]) {
    if !is_root()
        || !Command::new("unshare")
            .arg("--help")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return skip(test, "needs root and unshare(1)");
    }
    let dir = ShmDir::new("ns");
    let ns = dir.ns();
    let opts = Options::new().namespace(ns.clone());
    let (name, bname) = ("held", "barrier");
    let qname = unique_name("nsqueue");
    let b = opts.create::<Barrier, _>(bname, 2).unwrap();
    let q = ByteQueue::create(&qname, 4, 64).unwrap();
    // Something that IS garbage, so the child's gc has work: a segment whose
    // handles are all gone.
    drop(
        opts.create::<SharedArray<u8, Ix1>, _>("orphan", 4)
            .unwrap()
            .into_persistent(),
    );
    std::fs::write(dir.0.join("plain"), b"not ours").unwrap();

    let mut kids = Children::new(CHILD_ENV);
    let mut cmd = Command::new(wrapper[0]);
    cmd.args(&wrapper[1..]);
    let inner = kids.command(&format!("hold|{}|{name}|{bname}|{qname}", dir.0.display()));
    cmd.arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let c = kids.spawn_command(cmd);
    kids.expect_line(c, "gc removed 0");

    // From here the child is alive somewhere we cannot see its pid.
    let info = inspect(&ns, name).unwrap();
    assert_eq!(info.usage, Usage::InUse, "{info:?}");
    assert_eq!(info.creator, Some(Liveness::Alive));
    let report = collect_garbage(&ns).unwrap();
    assert!(
        report.removed.iter().all(|(n, _)| n != name),
        "gc took a live segment: {report:?}"
    );
    assert!(inspect(&ns, name).is_ok());
    let arrived = b.wait_timeout(Duration::from_secs(20));
    assert!(
        arrived.is_ok(),
        "a live participant was called dead: {arrived:?}"
    );
    let msg = q
        .get_timeout(Duration::from_secs(20))
        .expect("the slow producer's message");
    assert_eq!(msg, b"hello");
    assert_eq!(q.lost(), 0, "a live producer's message was declared lost");
    kids.expect_line(c, "barrier Ok(");
    drop(kids.stdin(c));
    assert_eq!(kids.wait(c).0, 0);
}

#[test]
fn a_live_process_in_another_pid_namespace_is_never_called_dead() {
    a_live_process_elsewhere_is_never_called_dead(
        "a_live_process_in_another_pid_namespace_is_never_called_dead",
        &["unshare", "--pid", "--fork", "--mount-proc"],
    );
}

#[test]
fn a_live_process_without_proc_is_never_called_dead() {
    a_live_process_elsewhere_is_never_called_dead(
        "a_live_process_without_proc_is_never_called_dead",
        &[
            "unshare",
            "--mount",
            "--",
            "sh",
            "-c",
            "umount -l /proc && exec \"$@\"",
            "sh",
        ],
    );
}

/// Child: creates and drops 4 MiB segments under fresh names until killed.
fn create_forever(dir: &str) -> i32 {
    let opts = Options::new().namespace(Namespace::at(dir).unwrap());
    for i in 0u64.. {
        let name = format!("seg-{}-{i}", std::process::id());
        let a = opts
            .create::<SharedArray<u8, Ix1>, _>(&name, 4 << 20)
            .unwrap();
        if i % 2 == 0 {
            drop(a);
        } else {
            std::mem::forget(a); // left for gc once this process is gone
        }
    }
    0
}

fn killed_creators_leave_nothing_gc_cannot_collect(method: Option<&str>) {
    let rounds: u64 = std::env::var("SHMARRAY_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = ShmDir::new("killed");
    let ns = dir.ns();
    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut pids = Vec::new();
    for _ in 0..rounds {
        let mut kids = Children::new(CHILD_ENV);
        let mut cmd = kids.command(&format!("create_loop|{}", dir.0.display()));
        if let Some(m) = method {
            cmd.env("SHMARRAY_CREATE", m);
        }
        let c = kids.spawn_command(cmd);
        pids.push(kids.pid(c));
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(2_000 + seed % 30_000));
        kids.kill(c);
    }
    let left_before = dir.names();
    let report = collect_garbage(&ns).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(report.undecided.is_empty(), "{report:?}");
    assert_eq!(
        dir.names(),
        Vec::<String>::new(),
        "left after gc (before: {left_before:?})"
    );
    // Every name a killed creator used is creatable again.
    let opts = Options::new().namespace(ns);
    for pid in pids {
        for i in 0..3 {
            opts.create::<SharedArray<u8, Ix1>, _>(&format!("seg-{pid}-{i}"), 1)
                .unwrap();
        }
    }
}

#[test]
fn creators_killed_at_random_instants_leave_nothing_gc_cannot_collect() {
    killed_creators_leave_nothing_gc_cannot_collect(None);
}

#[test]
fn creators_killed_while_building_under_temporary_names_leave_nothing_either() {
    killed_creators_leave_nothing_gc_cannot_collect(Some("named"));
}

#[test]
fn two_gc_at_once_collect_everything_once_and_never_a_live_segment() {
    let dir = ShmDir::new("twogc");
    let ns = dir.ns();
    let opts = Options::new().namespace(ns.clone());
    for i in 0..40 {
        leak_without_unlink(
            opts.create::<SharedArray<u8, Ix1>, _>(&format!("g{i}"), 4)
                .unwrap(),
        );
    }
    let live = opts.create::<SharedArray<u8, Ix1>, _>("live", 4).unwrap();
    let (n1, n2) = (ns.clone(), ns.clone());
    let t1 = std::thread::spawn(move || collect_garbage(&n1).unwrap());
    let t2 = std::thread::spawn(move || collect_garbage(&n2).unwrap());
    let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
    assert!(
        r1.failed.is_empty() && r2.failed.is_empty(),
        "{r1:?} {r2:?}"
    );
    let mut removed: Vec<String> = r1
        .removed
        .iter()
        .chain(&r2.removed)
        .map(|(n, _)| n.clone())
        .collect();
    removed.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("g{i}")).collect();
    want.sort();
    assert_eq!(removed, want, "each garbage segment removed exactly once");
    assert_eq!(dir.names(), vec!["live".to_string()]);
    drop(live);
}

/// Drops a handle's mapping and descriptor without removing its name, as a crash
/// would: the segment stays, non-persistent and idle.
fn leak_without_unlink<T: shmarray::element::Element, D: shmarray::ndarray::Dimension>(
    a: SharedArray<T, D>,
) {
    let name = a.name().unwrap().to_string();
    let dir = a.path().unwrap().parent().unwrap().to_path_buf();
    // Keep the file: hard-link it aside, let the owner remove the name, link back.
    let aside = dir.join(format!("{name}.aside"));
    std::fs::hard_link(dir.join(&name), &aside).unwrap();
    drop(a);
    std::fs::rename(&aside, dir.join(&name)).unwrap();
}

#[test]
fn gc_goes_on_after_a_failure_and_reports_every_one() {
    if !is_root() {
        return skip(
            "gc_goes_on_after_a_failure_and_reports_every_one",
            "needs root for chattr +i",
        );
    }
    let dir = ShmDir::new("gcfail");
    let ns = dir.ns();
    let opts = Options::new().namespace(ns.clone());
    for n in ["a-stuck", "b-free", "c-free"] {
        leak_without_unlink(opts.create::<SharedArray<u8, Ix1>, _>(n, 4).unwrap());
    }
    let stuck = dir.0.join("a-stuck");
    if !Command::new("chattr")
        .arg("+i")
        .arg(&stuck)
        .status()
        .is_ok_and(|s| s.success())
    {
        return skip(
            "gc_goes_on_after_a_failure_and_reports_every_one",
            "chattr +i not supported here",
        );
    }
    let report = collect_garbage(&ns).unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, "a-stuck");
    let removed: Vec<&str> = report.removed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        removed,
        ["b-free", "c-free"],
        "sorted first, failed, and gc went on"
    );
}

#[test]
fn gc_keeps_live_persistent_foreign_and_plain_files() {
    let dir = ShmDir::new("gckeep");
    let ns = dir.ns();
    let opts = Options::new().namespace(ns.clone());
    let _live = opts.create::<SharedArray<u8, Ix1>, _>("live", 4).unwrap();
    drop(
        (opts.clone().persistent(true))
            .create::<SharedArray<u8, Ix1>, _>("kept", 4)
            .unwrap(),
    );
    let mut f = std::fs::File::create(dir.0.join("foreign")).unwrap();
    f.write_all(b"not a segment").unwrap();
    std::fs::write(dir.0.join("plain.npy"), {
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }";
        v.extend_from_slice(&((dict.len() + 1) as u16).to_le_bytes());
        v.extend_from_slice(dict.as_bytes());
        v.push(b'\n');
        v.push(7);
        v
    })
    .unwrap();
    leak_without_unlink(opts.create::<SharedArray<u8, Ix1>, _>("orphan", 4).unwrap());
    let report = collect_garbage(&ns).unwrap();
    let removed: Vec<&str> = report.removed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(removed, ["orphan"], "{report:?}");
    assert_eq!(dir.names(), ["foreign", "kept", "live", "plain.npy"]);
    // A dry run reports without removing; a second real run finds nothing.
    leak_without_unlink(
        opts.create::<SharedArray<u8, Ix1>, _>("orphan2", 4)
            .unwrap(),
    );
    let dry = find_garbage(&ns).unwrap();
    assert_eq!(dry.removed.len(), 1);
    assert!(dir.names().contains(&"orphan2".to_string()));
    assert_eq!(collect_garbage(&ns).unwrap().removed.len(), 1);
    assert!(collect_garbage(&ns).unwrap().removed.is_empty());
}

/// Child: creates an owning segment, forks, and lets the forked copy drop its copy
/// of the handle; the name must survive that (the child did not create it).
fn fork_and_drop_in_the_child(name: &str) -> i32 {
    let a = SharedArray::<u8, Ix1>::create(name, 8).unwrap();
    // SAFETY: this process runs the test harness's main thread (blocked waiting for
    // this test) and this one; the forked child only drops a handle and exits.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(a);
            // SAFETY: _exit ends the child without running the parent's atexit state.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).unwrap();
            let survived = SharedArray::<u8, Ix1>::open(name).is_ok();
            println!("survived {survived}");
            drop(a);
            let removed = SharedArray::<u8, Ix1>::open(name).is_err();
            println!("removed by its creator {removed}");
            0
        }
    }
}

#[test]
fn a_forked_copy_of_an_owning_handle_never_removes_the_name() {
    let name = unique_name("forkdrop");
    let _guard = ShmFile::new(&name);
    let mut kids = Children::new(CHILD_ENV);
    let c = kids.spawn(&format!("fork_drop|{name}"));
    let (code, out) = kids.wait(c);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("survived true"), "{out}");
    assert!(out.contains("removed by its creator true"), "{out}");
}
