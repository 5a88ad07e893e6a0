//! The `shmarray` command: every subcommand, and hostile directories (FIFOs,
//! directories and sockets under segment names, files that change size under the
//! command, control bytes in names and headers, other users' files, concurrent `gc`).
//!
//! Each test works in its own directory under /dev/shm (`--dir`), so `gc` and `ls`
//! only ever see this test's files; the directory is removed with its contents when
//! the test ends, also when it fails. Every command runs under a watchdog, and every
//! child process is killed and reaped by a guard.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{python, unique_name, wait_with_deadline};
use shmarray::ndarray::{Ix1, Ix2};
use shmarray::{Namespace, Options, SharedArray};

const CHILD_ENV: &str = "SHMARRAY_TEST_CHILD";
const DIR_ENV: &str = "SHMARRAY_TEST_DIR";
/// Segment names for a child, separated by `/` (which no name can contain).
const NAMES_ENV: &str = "SHMARRAY_TEST_NAMES";

/// Exit statuses documented in `shmarray --help`.
const EXIT_FAILED: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_NO_DIR: i32 = 3;

/// Not a real test: the entry point of this binary re-executed as a child.
/// - `create`: creates each of the names as an `f64` array of 10 elements and exits
///   without dropping them: segments whose creator is dead, as a crash leaves them.
/// - `hold`: opens the one name, prints `holder-ready` and keeps it open until its standard
///   input closes: a segment in use by another process.
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::env::var(DIR_ENV).unwrap();
    let names = std::env::var(NAMES_ENV).unwrap();
    let opts = Options::new().namespace(Namespace::at(dir).unwrap());
    match mode.as_str() {
        "create" => {
            for name in names.split('/') {
                let a = opts.create::<SharedArray<f64, Ix1>, _>(name, 10).unwrap();
                std::mem::forget(a);
            }
        }
        "hold" => {
            let a = opts.open::<SharedArray<f64, Ix1>>(&names).unwrap();
            println!("holder-ready");
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {}
            drop(a);
        }
        _ => std::process::exit(2),
    }
    std::process::exit(0);
}

/// The command that re-executes this test binary as `child_entry`.
fn child_command(mode: &str, dir: &Path, names: &[&str]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env(DIR_ENV, dir)
        .env(NAMES_ENV, names.join("/"))
        .stdout(Stdio::null());
    c
}

/// Runs a prepared child to its end (with a watchdog) and checks it succeeded.
fn run_child(mut cmd: Command) {
    let mut child = cmd.spawn().unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    assert!(status.success(), "child failed: {status}");
}

/// Creates `names` in `dir` from a child process that then exits without cleanup.
fn create_orphans(dir: &Path, names: &[&str]) {
    run_child(child_command("create", dir, names));
}

/// A child process that keeps a segment open until dropped (then it is told to
/// exit, and killed if it does not; always reaped).
struct Holder(Child);

impl Holder {
    fn new(dir: &Path, name: &str) -> Holder {
        let mut cmd = child_command("hold", dir, &[name]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut h = Holder(cmd.spawn().unwrap());
        // Wait for its word on a thread, so a child that never gets ready fails the
        // test (and is killed by the guard) instead of hanging it. The test harness
        // prints its own lines first.
        let stdout = h.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ready = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.contains("holder-ready"));
            let _ = tx.send(ready);
        });
        let ready = rx.recv_timeout(Duration::from_secs(20));
        assert_eq!(ready, Ok(true), "holder did not get ready");
        h
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    fn opts(&self) -> Options {
        Options::new().namespace(self.ns())
    }
    /// The entries, escaped like `ls` prints them.
    fn names(&self) -> Vec<String> {
        self.ns()
            .entries()
            .unwrap()
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Entries made read-only or immutable by a test must not survive it.
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits for a running command, killing it (and failing) after `limit`.
fn finish(mut child: Child, what: &str, limit: Duration) -> Output {
    // Read the pipes on threads so a chatty command cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).map(|_| v)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

fn spawn_shmarray(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shmarray"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        // Only `dir`: no huge-page mounts this machine may have (tests/huge.rs).
        .env("SHMARRAY_HUGE_DIR", "")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `shmarray --dir DIR ARGS` with a watchdog of `limit`; never killed by a
/// signal (a SIGBUS, SIGSEGV or abort fails the test).
fn shmarray_within(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let what = format!("shmarray {args:?}");
    let o = finish(spawn_shmarray(dir, args), &what, limit);
    assert_eq!(o.status.signal(), None, "{what} was killed: {o:?}");
    o
}

fn shmarray(dir: &Path, args: &[&str]) -> Output {
    shmarray_within(dir, args, Duration::from_secs(30))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts success; returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let o = shmarray(dir, args);
    assert!(o.status.success(), "shmarray {args:?}: {o:?}");
    stdout(&o)
}

/// The `ls` row whose first column is `name`.
fn row<'a>(ls: &'a str, name: &str) -> &'a str {
    ls.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} missing from:\n{ls}"))
}

/// Asserts that bytes a terminal would receive hold no raw control character (other
/// than newlines) and are UTF-8.
fn assert_terminal_safe(what: &str, bytes: &[u8]) {
    let s = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    if let Some(c) = s.chars().find(|&c| c.is_control() && c != '\n') {
        panic!("{what}: raw control character {c:?} in output:\n{s:?}");
    }
}

/// A plain `.npy` file (format 1.0) with this descriptor, shape literal and data.
fn plain_npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    v.extend_from_slice(dict.as_bytes());
    v.extend_from_slice(data);
    v
}

/// Whether this process may change file owners (root); prints why not otherwise.
fn can_chown(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        println!("{test}: SKIPPED the other-owner case: needs root to chown a file to uid 65534");
    }
    root
}

// ---------------------------------------------------------------------------
// Subcommands
// ---------------------------------------------------------------------------

#[test]
fn create_ls_inspect_path_rm() {
    let d = TestDir::new();
    let out = ok(
        &d.0,
        &["create", "frames", "--dtype", "float32", "--shape", "10,20"],
    );
    assert_eq!(out.trim(), d.0.join("frames").display().to_string());
    // The created segment stays (persistent) and opens with the right type.
    let mut a = d.opts().open::<SharedArray<f32, Ix2>>("frames").unwrap();
    assert_eq!(a.shape(), &[10, 20]);
    assert_eq!(a.view().unwrap().sum(), 0.0);
    drop(a);

    let ls = ok(&d.0, &["ls"]);
    assert!(ls.starts_with("NAME"), "{ls}");
    let frames = row(&ls, "frames");
    let cols: Vec<&str> = frames.split_whitespace().collect();
    assert_eq!(
        cols[..5],
        ["frames", "array", "<f4", "(10,20)", "800"],
        "{frames}"
    );
    assert!(frames.contains(" idle "), "{frames}");
    assert!(frames.contains(" dead "), "creator exited: {frames}");
    assert!(frames.ends_with("persistent"), "{frames}");

    let inspect = ok(&d.0, &["inspect", "frames"]);
    for line in [
        "descr          <f4",
        "dtype          f32",
        "shape          (10,20)",
        "kind           array",
        "usage          idle",
        "persistent     yes",
        "garbage        no: persistent",
    ] {
        assert!(
            inspect.lines().any(|l| l == line),
            "{line:?} in:\n{inspect}"
        );
    }
    let created = inspect.lines().find(|l| l.starts_with("created")).unwrap();
    assert!(created.ends_with(" UTC"), "readable time: {created}");

    let path = ok(&d.0, &["path", "frames"]);
    assert_eq!(path.trim(), d.0.join("frames").display().to_string());

    ok(&d.0, &["rm", "frames"]);
    assert!(d.names().is_empty());
    let again = shmarray(&d.0, &["rm", "frames"]);
    assert_eq!(again.status.code(), Some(EXIT_FAILED));
    assert!(stderr(&again).contains("not found"), "{again:?}");
}

#[test]
fn create_with_an_empty_shape_makes_a_0d_array() {
    let d = TestDir::new();
    ok(&d.0, &["create", "scalar", "--dtype", "i64", "--shape", ""]);
    let a = d
        .opts()
        .open::<SharedArray<i64, shmarray::ndarray::Ix0>>("scalar")
        .unwrap();
    assert_eq!(a.shape(), &[] as &[usize]);
    assert_eq!(a.len(), 1);
    let ls = ok(&d.0, &["ls"]);
    assert!(row(&ls, "scalar").contains(" () "), "{ls}");
    // `()` and a trailing comma are understood too; a bad dimension is a usage error.
    ok(&d.0, &["create", "scalar2", "--shape", "()"]);
    ok(&d.0, &["create", "vec", "--shape", "5,"]);
    assert!(row(&ok(&d.0, &["ls"]), "vec").contains(" (5,) "));
    let bad = shmarray(&d.0, &["create", "bad", "--shape", "3,x"]);
    assert_eq!(bad.status.code(), Some(EXIT_USAGE), "{bad:?}");
    assert!(stderr(&bad).contains("invalid dimension"), "{bad:?}");
}

#[test]
fn create_refuses_more_than_64_dimensions_and_makes_64() {
    let d = TestDir::new();
    for n in [65, 66] {
        let shape = vec!["1"; n].join(",");
        let bad = shmarray(&d.0, &["create", "many", "--shape", &shape]);
        assert_eq!(bad.status.code(), Some(EXIT_USAGE), "{bad:?}");
        assert!(stderr(&bad).contains("at most 64"), "{bad:?}");
        assert!(!d.0.join("many").exists());
    }
    let shape = vec!["1"; 64].join(",");
    ok(&d.0, &["create", "many", "--shape", &shape]);
    assert!(ok(&d.0, &["inspect", "many"]).contains("(1,1,1,"));
    let a = d
        .opts()
        .open::<SharedArray<f64, shmarray::ndarray::IxDyn>>("many")
        .unwrap();
    assert_eq!(a.shape().len(), 64);
}

#[test]
fn create_takes_bool_f16_complex_and_records_and_inspect_lists_fields() {
    let d = TestDir::new();
    ok(&d.0, &["create", "mask", "--dtype", "?", "--shape", "4"]);
    ok(
        &d.0,
        &["create", "half", "--dtype", "float16", "--shape", "2,2"],
    );
    ok(&d.0, &["create", "fft", "--dtype", "c16", "--shape", "8"]);
    ok(
        &d.0,
        &[
            "create",
            "p",
            "--dtype",
            "x:f4,y:f4,mass:f8,pos:i2[3]",
            "--shape",
            "5",
        ],
    );
    ok(
        &d.0,
        &[
            "create",
            "al",
            "--dtype",
            "[('a', '|u1'), ('', '|V7'), ('b', '<f8')]",
            "--shape",
            "2",
        ],
    );
    let ls = ok(&d.0, &["ls"]);
    assert!(row(&ls, "mask").contains("|b1"), "{ls}");
    assert!(row(&ls, "fft").contains("<c16"), "{ls}");
    assert!(
        row(&ls, "p").contains("{x:<f4,y:<f4,mass:<f8,pos:<i2(3,)}"),
        "{ls}"
    );
    let inspect = ok(&d.0, &["inspect", "al"]);
    for line in [
        "descr          [('a', '|u1'), ('', '|V7'), ('b', '<f8')]",
        "dtype          record of 16 bytes",
        "field          a: |u1 at byte 0",
        "field          b: <f8 at byte 8",
    ] {
        assert!(
            inspect.lines().any(|l| l == line),
            "{line:?} in:\n{inspect}"
        );
    }
    let json = self::json(&d.0, &["inspect", "--json", "p"]);
    assert_eq!(json["itemsize"], 22);
    assert_eq!(json["fields"][3]["name"], "pos");
    assert_eq!(json["fields"][3]["offset"], 16);
    assert_eq!(json["fields"][3]["shape"], serde_json::json!([3]));
    assert_eq!(json["fields"][3]["descr"], "<i2");
    // A queue's header holds bytes: inspect names its item type from the parameters.
    shmarray::record! { struct Hit { t: f64, channel: u32, ok: shmarray::element::Bool, _p: shmarray::element::Pad<3> } }
    let _zq = d
        .opts()
        .create::<shmarray::Queue<shmarray::num_complex::Complex<f64>>, _>("zq", 4)
        .unwrap();
    let _hq = d.opts().create::<shmarray::Queue<Hit>, _>("hq", 4).unwrap();
    let zq = ok(&d.0, &["inspect", "zq"]);
    assert!(
        zq.lines().any(|l| l == "item type      c128 (16 bytes)"),
        "{zq}"
    );
    let hq = ok(&d.0, &["inspect", "hq"]);
    assert!(
        hq.lines()
            .any(|l| l.starts_with("item type      a record of 16 bytes (fields fingerprint 0x")),
        "{hq}"
    );
    let json = self::json(&d.0, &["inspect", "--json", "fft"]);
    assert_eq!(
        (json["dtype"].as_str(), json["fields"].is_null()),
        (Some("c128"), true)
    );
    let Some(out) = python(&format!(
        "for n in ('mask', 'half', 'fft', 'p', 'al'):\n\
         \x20   a = np.load({:?} + '/' + n, mmap_mode='r+')\n\
         \x20   print(n, a.dtype.str if a.dtype.names is None else a.dtype.descr, a.shape)",
        d.0
    )) else {
        return;
    };
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "mask |b1 (4,)",
            "half <f2 (2, 2)",
            "fft <c16 (8,)",
            "p [('x', '<f4'), ('y', '<f4'), ('mass', '<f8'), ('pos', '<i2', (3,))] (5,)",
            "al [('a', '|u1'), ('', '|V7'), ('b', '<f8')] (2,)",
        ]
    );
}

#[test]
fn bad_input_is_a_clear_error_with_a_documented_exit_code() {
    let d = TestDir::new();
    let o = shmarray(
        &d.0,
        &["create", "x", "--dtype", "complex256", "--shape", "3"],
    );
    assert_eq!(o.status.code(), Some(EXIT_USAGE), "{o:?}");
    assert!(stderr(&o).contains("complex256"), "{o:?}");
    let o = shmarray(
        &d.0,
        &["create", "x", "--dtype", "a:f4,a:f8", "--shape", "3"],
    );
    assert_eq!(o.status.code(), Some(EXIT_USAGE), "{o:?}");
    assert!(stderr(&o).contains("two record fields named"), "{o:?}");
    let o = shmarray(&d.0, &["inspect", "a/b"]);
    assert_eq!(o.status.code(), Some(EXIT_USAGE), "{o:?}");
    assert!(stderr(&o).contains("invalid segment name"), "{o:?}");
    let o = shmarray(&d.0, &["inspect", "missing"]);
    assert_eq!(o.status.code(), Some(EXIT_FAILED), "{o:?}");
    assert!(stderr(&o).contains("not found"), "{o:?}");
    let o = shmarray(&d.0, &["no-such-command"]);
    assert_eq!(o.status.code(), Some(EXIT_USAGE), "{o:?}");
}

#[test]
fn a_missing_directory_is_named_with_exit_code_3() {
    let missing = Path::new("/nonexistent").join(unique_name("nodir"));
    for args in [&["ls"][..], &["gc"], &["inspect", "x"]] {
        let o = shmarray(&missing, args);
        assert_eq!(o.status.code(), Some(EXIT_NO_DIR), "{args:?}: {o:?}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("{} does not exist", missing.display())),
            "{err}"
        );
        assert!(o.stdout.is_empty());
    }
    // A file is not a directory either.
    let d = TestDir::new();
    std::fs::write(d.0.join("file"), b"x").unwrap();
    let o = shmarray(&d.0.join("file"), &["ls"]);
    assert_eq!(o.status.code(), Some(EXIT_NO_DIR), "{o:?}");
}

#[test]
fn rm_refuses_foreign_files_without_force() {
    let d = TestDir::new();
    std::fs::write(d.0.join("foreign"), b"not an array").unwrap();
    let o = shmarray(&d.0, &["rm", "foreign"]);
    assert_eq!(o.status.code(), Some(EXIT_FAILED));
    assert!(stderr(&o).contains("--force"), "{o:?}");
    assert!(d.0.join("foreign").exists());
    ok(&d.0, &["rm", "--force", "foreign"]);
    assert!(!d.0.join("foreign").exists());
    // rm goes on after a failure; an invalid name among them removes nothing.
    ok(&d.0, &["create", "one", "--shape", "1"]);
    ok(&d.0, &["create", "two", "--shape", "1"]);
    let o = shmarray(&d.0, &["rm", "one", "a/b", "two"]);
    assert_eq!(o.status.code(), Some(EXIT_USAGE), "{o:?}");
    assert_eq!(d.names(), ["one", "two"]);
    let o = shmarray(&d.0, &["rm", "one", "missing", "two"]);
    assert_eq!(o.status.code(), Some(EXIT_FAILED), "{o:?}");
    assert_eq!(stdout(&o), "removed one\nremoved two\n");
    assert!(stderr(&o).contains("\"missing\" not found"), "{o:?}");
    assert!(d.names().is_empty());
}

#[test]
fn export_writes_a_plain_npy_that_numpy_loads_without_trailing_bytes() {
    let d = TestDir::new();
    for (name, order) in [("c", &[][..]), ("f", &["--fortran"][..])] {
        let mut args = vec!["create", name, "--dtype", "i32", "--shape", "3,4"];
        args.extend_from_slice(order);
        ok(&d.0, &args);
        let mut a = d.opts().open::<SharedArray<i32, Ix2>>(name).unwrap();
        a.view_mut()
            .unwrap()
            .indexed_iter_mut()
            .for_each(|((i, j), x)| *x = (i * 10 + j) as i32);
    }
    for name in ["c", "f"] {
        let file = d.0.join(format!("{name}-out.npy"));
        let file_s = file.to_str().unwrap();
        let out = ok(&d.0, &["export", name, file_s]);
        assert!(out.contains("exported"), "{out}");
        let Some(py) = python(&format!(
            "import os\n\
             p = {file_s:?}\n\
             a = np.load(p)\n\
             with open(p, 'rb') as f:\n\
             \x20   np.lib.format.read_magic(f)\n\
             \x20   np.lib.format.read_array_header_1_0(f)\n\
             \x20   header = f.tell()\n\
             print(a.dtype, a.shape, a.flags['F_CONTIGUOUS'] and not a.flags['C_CONTIGUOUS'], \
                   int(a[2, 3]), int(a.sum()), os.path.getsize(p) == header + a.nbytes, header % 64)"
        )) else {
            return;
        };
        let fortran = if name == "f" { "True" } else { "False" };
        assert_eq!(
            py,
            format!("int32 (3, 4) {fortran} 23 138 True 0"),
            "{name}"
        );
        std::fs::remove_file(&file).unwrap();
    }
    // An existing file is kept unless --force; a failed export leaves no file.
    let existing = d.0.join("existing.npy");
    std::fs::write(&existing, b"keep me").unwrap();
    let o = shmarray(&d.0, &["export", "c", existing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(EXIT_FAILED), "{o:?}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    ok(
        &d.0,
        &["export", "c", existing.to_str().unwrap(), "--force"],
    );
    assert!(std::fs::read(&existing).unwrap().starts_with(b"\x93NUMPY"));
    let nothing = d.0.join("nothing.npy");
    let o = shmarray(&d.0, &["export", "missing", nothing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(EXIT_FAILED), "{o:?}");
    let mut left = d.names();
    left.retain(|n| n.starts_with("nothing"));
    assert!(left.is_empty(), "{left:?}");
    // To standard output, byte for byte the same file.
    let o = shmarray(&d.0, &["export", "c", "-"]);
    assert_eq!(o.stdout, std::fs::read(&existing).unwrap());
}

#[test]
fn demo_runs_and_checks_its_result() {
    let d = TestDir::new();
    let out = ok(&d.0, &["demo", "--mib", "4"]);
    assert!(
        out.contains("result checked: all 524288 elements doubled"),
        "{out}"
    );
    assert!(out.contains("round trip, pipe (copy)"), "{out}");
    assert!(d.names().is_empty(), "demo leaves nothing behind");
}

/// The benchmark worker (`__worker`) doubles exactly the part it is given, however
/// it maps it first, and answers a part outside the array with an error, staying up.
#[test]
fn worker_doubles_the_part_it_is_given_however_it_maps_it() {
    use shmarray_cli::worker::{Prefault, WorkerProc};
    use std::ops::Range;
    let d = TestDir::new();
    let ns = Namespace::at(&d.0).unwrap();
    let name = unique_name("part");
    // Several pages, not a whole number of them.
    let n = 3 * 512 + 5;
    let mut a: SharedArray<f64, Ix1> = Options::new()
        .namespace(ns.clone())
        .create(&name, n)
        .unwrap();
    a.view_mut().unwrap().fill(1.0);
    let requests = [
        (Prefault::Lazy, None),
        (Prefault::Read, Some(10..600)),
        (Prefault::Write, Some(600..1100)),
        (Prefault::All, Some(1100..n)),
        (Prefault::Read, Some(0..n + 1)),
        // Start after end (a hostile request; the range is built, not written).
        (Prefault::Lazy, Some(Range { start: 5, end: 4 })),
        (Prefault::Lazy, Some(0..0)),
    ];
    let (tx, rx) = std::sync::mpsc::channel();
    let worker_name = name.clone();
    std::thread::spawn(move || {
        let exe = Path::new(env!("CARGO_BIN_EXE_shmarray"));
        let mut w = WorkerProc::start(exe, &ns).unwrap();
        let replies: Vec<Result<(), String>> = requests
            .into_iter()
            .map(|(mode, range)| {
                w.double_shm_with(&worker_name, mode, range)
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .collect();
        let _ = tx.send(replies);
    });
    // The worker ends when this process does (its input closes).
    let replies = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the worker answered in time");
    assert!(replies[..4].iter().all(Result::is_ok), "{replies:?}");
    for r in &replies[4..6] {
        assert!(
            r.as_ref().is_err_and(|e| e.contains("worker range")),
            "{r:?}"
        );
    }
    assert!(replies[6].is_ok(), "{replies:?}");
    let v = a.view().unwrap();
    assert!(v.iter().take(10).all(|&x| x == 2.0), "{v}");
    assert!(v.iter().skip(10).all(|&x| x == 4.0), "{v}");
}

#[test]
fn ls_tells_arrays_values_queues_barriers_and_events_apart() {
    // The queue has no namespace option yet, so all of these live in /dev/shm
    // itself under unique names, and the kinds are read from the control block.
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
    let ls = ok(Path::new("/dev/shm"), &["ls"]);
    for (name, kind) in [
        (&q, "queue"),
        (&b, "barrier"),
        (&e, "event"),
        (&v, "value"),
        (&a, "array"),
    ] {
        let r = row(&ls, name);
        assert_eq!(r.split_whitespace().nth(1), Some(kind), "{r}");
        assert!(r.contains(" in use "), "our handle is open: {r}");
        assert!(
            r.contains(&format!("pid {} alive", std::process::id())),
            "{r}"
        );
    }
}

#[test]
fn ls_says_when_the_creator_was_in_another_pid_namespace() {
    let d = TestDir::new();
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        println!("SKIPPED: `unshare --pid` is not available here (needs root or user namespaces)");
        return;
    }
    // The child creates the segment as pid 1 of a new pid namespace.
    let mut cmd = Command::new("unshare");
    let inner = child_command("create", &d.0, &["elsewhere"]);
    cmd.args(["--pid", "--fork"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::null());
    run_child(cmd);
    create_orphans(&d.0, &["here"]);
    let ls = ok(&d.0, &["ls"]);
    assert!(
        row(&ls, "elsewhere").contains("pid 1 (other pid namespace) dead"),
        "{ls}"
    );
    assert!(!row(&ls, "here").contains("other pid namespace"), "{ls}");
    let inspect = ok(&d.0, &["inspect", "elsewhere"]);
    assert!(inspect.contains("other pid namespace"), "{inspect}");
}

// ---------------------------------------------------------------------------
// Hostile directories
// ---------------------------------------------------------------------------

#[test]
fn a_fifo_under_a_segment_name_is_foreign_and_blocks_nothing() {
    let d = TestDir::new();
    nix::unistd::mkfifo(
        &d.0.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    create_orphans(&d.0, &["seg"]);
    // Opening a FIFO for reading blocks until a writer comes: a command that did
    // would hang here, and the watchdog fails it after 10 s.
    let limit = Duration::from_secs(10);
    for args in [&["ls"][..], &["ls", "--all"]] {
        let o = shmarray_within(&d.0, args, limit);
        assert!(o.status.success(), "{o:?}");
        let ls = stdout(&o);
        let r = row(&ls, "pipe");
        assert_eq!(r.split_whitespace().nth(1), Some("foreign"), "{r}");
        assert!(r.ends_with("not a shmarray segment: it is a FIFO"), "{r}");
    }
    let o = shmarray_within(&d.0, &["inspect", "pipe"], limit);
    assert_eq!(o.status.code(), Some(EXIT_FAILED), "{o:?}");
    assert!(
        stderr(&o).contains("pipe: not a shmarray segment: it is a FIFO"),
        "{o:?}"
    );
    let o = shmarray_within(&d.0, &["gc"], limit);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("removed seg"), "{o:?}");
    assert_eq!(d.names(), ["pipe"], "the FIFO is not ours to remove");
}

#[test]
fn a_directory_under_a_segment_name_is_reported_as_such() {
    let d = TestDir::new();
    std::fs::create_dir(d.0.join("subdir")).unwrap();
    let ls = ok(&d.0, &["ls"]);
    let r = row(&ls, "subdir");
    assert_eq!(r.split_whitespace().nth(1), Some("foreign"), "{r}");
    assert!(
        r.ends_with("not a shmarray segment: it is a directory"),
        "{r}"
    );
    let o = shmarray(&d.0, &["inspect", "subdir"]);
    assert_eq!(o.status.code(), Some(EXIT_FAILED), "{o:?}");
    assert!(
        stderr(&o).contains("subdir: not a shmarray segment: it is a directory"),
        "{o:?}"
    );
    let o = shmarray(&d.0, &["gc"]);
    assert!(o.status.success(), "{o:?}");
    assert!(d.0.join("subdir").is_dir());
}

/// Flips `path` between its full contents and 0 bytes (through every length in
/// between while it is rewritten) until dropped.
struct Flipper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Flipper {
    fn new(path: &Path) -> Flipper {
        let contents = std::fs::read(path).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut flips = 0;
            while !flag.load(Ordering::Relaxed) {
                file.set_len(0).unwrap();
                std::thread::yield_now();
                file.write_all_at(&contents, 0).unwrap();
                // Whole for a while, so readers also see it complete.
                std::thread::sleep(Duration::from_micros(300));
                flips += 1;
            }
            flips
        });
        Flipper {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Flipper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let flips = t.join().unwrap_or(0);
            println!("flipped {flips} times");
        }
    }
}

#[test]
fn a_file_flipping_size_under_ls_gc_inspect_export_never_kills_them() {
    let d = TestDir::new();
    // Persistent, so gc reads it every time but never takes it away.
    ok(
        &d.0,
        &["create", "flip", "--dtype", "u8", "--shape", "100000"],
    );
    let flipper = Flipper::new(&d.0.join("flip"));
    let mut outcomes = BTreeSet::new();
    for _ in 0..100 {
        for args in [
            &["ls"][..],
            &["gc"],
            &["inspect", "flip"],
            &["export", "flip", "-"],
        ] {
            // `shmarray_within` fails on any signal (SIGBUS from a mapping).
            let o = shmarray(&d.0, args);
            let code = o.status.code().unwrap();
            assert!(code == 0 || code == EXIT_FAILED, "{args:?}: {o:?}");
            outcomes.insert((args[0], code));
        }
    }
    drop(flipper);
    println!("outcomes: {outcomes:?}");
    assert_eq!(d.names(), ["flip"]);
}

#[test]
fn control_bytes_in_names_and_headers_are_escaped() {
    let d = TestDir::new();
    let evil = "evil\x1b]0;pwned\x07\x1b[2J";
    let evil_escaped = "evil\\x1b]0;pwned\\x07\\x1b[2J";
    let csi = "c1\u{9b}31m\u{202e}";
    let csi_escaped = "c1\\xc2\\x9b31m\\u{202e}";
    // A live segment of ours (persistent) and dead creators' segments, all named
    // with control characters.
    (d.opts().persistent(true))
        .create::<SharedArray<f64, Ix1>, _>(evil, 3)
        .unwrap();
    create_orphans(&d.0, &["dead\x1b[31m", csi, "new\nline"]);
    // A name that is not UTF-8, and a header whose descr holds an escape sequence.
    let raw_name = OsStr::from_bytes(b"raw\xff\x1b[1m");
    std::fs::write(d.0.join(raw_name), b"junk").unwrap();
    std::fs::write(d.0.join("descr"), plain_npy("<f8\x1b[2J", "(1,)", &[0; 8])).unwrap();

    let ls = shmarray(&d.0, &["ls", "--all"]);
    assert_terminal_safe("ls", &ls.stdout);
    let text = stdout(&ls);
    for name in [
        evil_escaped,
        "dead\\x1b[31m",
        csi_escaped,
        "new\\x0aline",
        "raw\\xff\\x1b[1m",
    ] {
        row(&text, name);
    }
    assert!(row(&text, "descr").contains("corrupt"), "{text}");

    let o = shmarray(&d.0, &["inspect", evil]);
    assert!(o.status.success(), "{o:?}");
    assert_terminal_safe("inspect", &o.stdout);
    assert!(stdout(&o).contains(&format!("name           {evil_escaped}")));
    for args in [
        &["inspect", "descr"][..],
        &["inspect", "new\nline\x1b"],
        &["rm", evil],
    ] {
        let o = shmarray(&d.0, args);
        assert_terminal_safe("stdout", &o.stdout);
        assert_terminal_safe("stderr", &o.stderr);
    }
    let o = shmarray(&d.0, &["gc", "--dry-run"]);
    assert_terminal_safe("gc --dry-run", &o.stdout);
    let o = shmarray(&d.0, &["gc"]);
    assert!(o.status.success(), "{o:?}");
    assert_terminal_safe("gc", &o.stdout);
    let gc = stdout(&o);
    for name in ["dead\\x1b[31m", csi_escaped, "new\\x0aline"] {
        assert!(gc.contains(&format!("removed {name} (")), "{gc}");
    }
    // A directory path with control characters, in an error message.
    let o = shmarray(&d.0.join("no\x1b[2Jdir"), &["ls"]);
    assert_eq!(o.status.code(), Some(EXIT_NO_DIR));
    assert_terminal_safe("missing dir", &o.stderr);
}

// ---------------------------------------------------------------------------
// gc
// ---------------------------------------------------------------------------

#[test]
fn gc_never_removes_in_use_persistent_other_users_or_plain_npy_files() {
    let d = TestDir::new();
    create_orphans(&d.0, &["dead", "held", "other-user"]);
    let _holder = Holder::new(&d.0, "held");
    ok(&d.0, &["create", "kept", "--shape", "3"]);
    std::fs::write(d.0.join("plain.npy"), plain_npy("<f8", "(2,)", &[0; 16])).unwrap();
    let chown = can_chown("gc_never_removes...");
    if chown {
        std::os::unix::fs::chown(d.0.join("other-user"), Some(65534), Some(65534)).unwrap();
    } else {
        std::fs::remove_file(d.0.join("other-user")).unwrap();
    }

    let ls = ok(&d.0, &["ls"]);
    assert!(row(&ls, "dead").contains(" idle "), "{ls}");
    assert!(
        row(&ls, "dead").ends_with("garbage (gc removes it)"),
        "{ls}"
    );
    assert!(row(&ls, "held").contains(" in use "), "{ls}");
    assert!(row(&ls, "kept").ends_with("persistent"), "{ls}");
    assert!(row(&ls, "plain.npy").ends_with("plain .npy"), "{ls}");
    if chown {
        assert!(row(&ls, "other-user").ends_with("owner uid 65534"), "{ls}");
    }

    let dry = ok(&d.0, &["gc", "--dry-run"]);
    assert_eq!(
        dry.lines().collect::<Vec<_>>(),
        ["would remove dead (not persistent, and no process has it open)"]
    );
    assert!(d.0.join("dead").exists(), "a dry run removes nothing");

    let gc = ok(&d.0, &["gc"]);
    assert_eq!(
        gc.lines().collect::<Vec<_>>(),
        ["removed dead (not persistent, and no process has it open)"]
    );
    let mut expect = vec!["held", "kept", "other-user", "plain.npy"];
    expect.retain(|n| chown || *n != "other-user");
    assert_eq!(d.names(), expect);
}

#[test]
fn gc_removes_what_a_creator_killed_mid_create_left() {
    let d = TestDir::new();
    let build = ".shmarray-build-999999-0";
    std::fs::write(d.0.join(build), vec![0u8; 8192]).unwrap();
    let ls = ok(&d.0, &["ls"]);
    assert!(
        !ls.contains(build),
        "temporaries are hidden without --all:\n{ls}"
    );
    let all = ok(&d.0, &["ls", "--all"]);
    assert!(row(&all, build).contains("temporary"), "{all}");
    let gc = ok(&d.0, &["gc"]);
    assert!(
        gc.contains(&format!(
            "removed {build} (its creator died while building it)"
        )),
        "{gc}"
    );
    assert!(d.names().is_empty());
}

#[test]
fn two_gcs_at_once_both_succeed_and_collect_everything_once() {
    let d = TestDir::new();
    let names: Vec<String> = (0..24).map(|i| format!("orphan-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    create_orphans(&d.0, &refs);
    let a = spawn_shmarray(&d.0, &["gc"]);
    let b = spawn_shmarray(&d.0, &["gc"]);
    let limit = Duration::from_secs(30);
    let (a, b) = (finish(a, "gc a", limit), finish(b, "gc b", limit));
    let mut removed = Vec::new();
    for o in [&a, &b] {
        assert!(o.status.success(), "{o:?}");
        assert!(o.stderr.is_empty(), "{o:?}");
        for line in stdout(o).lines() {
            if let Some(rest) = line.strip_prefix("removed ") {
                removed.push(rest.split(' ').next().unwrap().to_string());
            }
        }
    }
    removed.sort();
    assert_eq!(removed, names, "each removed exactly once");
    assert!(d.names().is_empty(), "{:?}", d.names());
}

#[test]
fn gc_goes_on_after_a_failure_and_reports_it_at_the_end() {
    // A name that is a mount point cannot be renamed or removed (EBUSY): bind-mount
    // a collectable segment over a name in a private mount namespace, so the mount
    // vanishes with the command.
    let d = TestDir::new();
    let src = TestDir::new();
    create_orphans(&d.0, &["a-first", "z-last"]);
    create_orphans(&src.0, &["victim"]);
    std::fs::write(d.0.join("m-busy"), b"").unwrap();
    let script = r#"mount --bind "$1" "$2" || exit 77; exec "$3" --dir "$4" gc 2>&1"#;
    let child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(src.0.join("victim"))
        .arg(d.0.join("m-busy"))
        .arg(env!("CARGO_BIN_EXE_shmarray"))
        .arg(&d.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = finish(child, "unshare ... gc", Duration::from_secs(30));
    if o.status.code() == Some(77) || stderr(&o).contains("unshare") {
        println!("SKIPPED: cannot bind-mount in a private mount namespace here: {o:?}");
        return;
    }
    assert_eq!(o.status.code(), Some(EXIT_FAILED), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("removed a-first ("), "{out}");
    assert!(lines[1].starts_with("removed z-last ("), "{out}");
    assert!(
        lines[2].starts_with("shmarray: gc could not remove m-busy: "),
        "{out}"
    );
    assert_eq!(lines[3], "shmarray: gc: 2 removed, 1 failed", "{out}");
    assert_eq!(d.names(), ["m-busy"]);
}

#[test]
fn gc_passes_over_odd_files_sorted_first() {
    let d = TestDir::new();
    let _socket = std::os::unix::net::UnixListener::bind(d.0.join("0-socket")).unwrap();
    nix::unistd::mkfifo(
        &d.0.join("1-fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::create_dir(d.0.join("2-dir")).unwrap();
    let unreadable = d.0.join("3-unreadable");
    std::fs::write(&unreadable, plain_npy("<f8", "(1,)", &[0; 8])).unwrap();
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::write(d.0.join("4-short"), b"\x93NUMPY").unwrap();
    create_orphans(&d.0, &["5-seg", "6-seg"]);

    let ls = ok(&d.0, &["ls"]);
    assert!(
        row(&ls, "0-socket").ends_with("it is a socket or device"),
        "{ls}"
    );
    let o = shmarray(&d.0, &["gc"]);
    let out = stdout(&o);
    assert!(
        out.contains("removed 5-seg (") && out.contains("removed 6-seg ("),
        "{o:?}"
    );
    // A socket is kept and never stops collection, and is no failure either.
    assert!(o.status.success(), "{o:?}");
    assert!(stderr(&o).is_empty(), "{o:?}");
    assert_eq!(
        d.names(),
        ["0-socket", "1-fifo", "2-dir", "3-unreadable", "4-short"]
    );
}

// ---------------------------------------------------------------------------
// Machine-readable output
// ---------------------------------------------------------------------------

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let o = shmarray(dir, args);
    assert!(o.status.success(), "{o:?}");
    assert_terminal_safe("json", &o.stdout);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

/// Whether `s` looks like `2026-11-25T10:11:12.345Z`.
fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s[..4].parse::<u32>().is_ok_and(|y| y >= 2020)
}

#[test]
fn ls_and_inspect_speak_json() {
    let d = TestDir::new();
    ok(
        &d.0,
        &["create", "frames", "--dtype", "u16", "--shape", "3,5"],
    );
    create_orphans(&d.0, &["dead", "ctl\x1b[2J"]);
    nix::unistd::mkfifo(
        &d.0.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::write(d.0.join(OsStr::from_bytes(b"raw\xff")), b"x").unwrap();
    std::fs::write(d.0.join(".shmarray-build-1-0"), b"").unwrap();
    let _mine = d
        .opts()
        .create::<SharedArray<f32, Ix1>, _>("mine", 4)
        .unwrap();

    let list = json(&d.0, &["ls", "--json"]);
    let list = list.as_array().unwrap();
    let by_name = |n: &str| {
        list.iter()
            .find(|e| e["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing from {list:?}"))
    };
    assert!(list.iter().all(|e| e["kind"] != "temporary"), "{list:?}");
    let frames = by_name("frames");
    assert_eq!(frames["kind"], "array");
    assert_eq!(frames["dtype"], "u16");
    assert_eq!(frames["descr"], "<u2");
    assert_eq!(frames["shape"], serde_json::json!([3, 5]));
    assert_eq!(frames["data_bytes"], 30);
    assert_eq!(frames["usage"], "idle");
    assert_eq!(frames["persistent"], true);
    assert_eq!(frames["creator"]["liveness"], "dead");
    assert!(frames["file_size"].as_u64().unwrap() >= 4096 + 30);
    assert!(
        is_rfc3339_utc(frames["created"].as_str().unwrap()),
        "{frames}"
    );
    let mine = by_name("mine");
    assert_eq!(mine["usage"], "in_use");
    assert_eq!(mine["creator"]["liveness"], "alive");
    assert_eq!(mine["creator"]["pid"], std::process::id());
    assert_eq!(mine["creator"]["other_pid_namespace"], false);
    assert_eq!(by_name("dead")["garbage"], true);
    // Exact names survive JSON, escaped so no raw control character is printed.
    assert_eq!(by_name("ctl\x1b[2J")["kind"], "array");
    let pipe = by_name("pipe");
    assert_eq!(pipe["kind"], "foreign");
    assert_eq!(pipe["problem"], "not a shmarray segment: it is a FIFO");
    let raw = by_name("raw\\xff");
    assert_eq!(raw["name_is_utf8"], false);

    let all = json(&d.0, &["ls", "--all", "--json"]);
    let temp = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "temporary");
    assert!(temp.is_some(), "{all}");

    let one = json(&d.0, &["inspect", "--json", "frames"]);
    assert_eq!(one["name"], "frames");
    assert_eq!(one["elements"], 15);
    assert_eq!(one["data_offset"], 4096);
    assert_eq!(one["mode"], "0600");
    assert_eq!(one["control"]["layout_version"], 3);
    assert_eq!(one["rwlock"]["writer"], "free");
    assert_eq!(one["rwlock"]["readers"].as_array().map(Vec::len), Some(0));
    assert_eq!(one["gc_verdict"], "no: persistent");
    assert!(is_rfc3339_utc(one["created"].as_str().unwrap()));
    let o = shmarray(&d.0, &["inspect", "--json", "pipe"]);
    assert_eq!(
        o.status.code(),
        Some(EXIT_FAILED),
        "errors stay on stderr: {o:?}"
    );
    assert!(o.stdout.is_empty());
}

// ---------------------------------------------------------------------------
// Help, value lists, completions
// ---------------------------------------------------------------------------

#[test]
fn help_lists_dtypes_exit_codes_and_explains_arguments() {
    let d = TestDir::new();
    let help = ok(&d.0, &["--help"]);
    for line in [
        "Exit status:",
        "  0  success",
        "  1  an operation failed",
        "  2  usage error",
        "  3  the segment directory does not exist",
    ] {
        assert!(
            help.lines().any(|l| l.starts_with(line)),
            "{line:?} in:\n{help}"
        );
    }
    let create = ok(&d.0, &["create", "--help"]);
    assert!(create.contains("Possible values:"), "{create}");
    for dtype in [
        "f32", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f16", "bool", "c64",
        "c128",
    ] {
        assert!(
            create.contains(&format!("- {dtype}:")),
            "{dtype} in:\n{create}"
        );
    }
    // Positional arguments are explained, whichever layout clap picks.
    for (cmd, arg, text) in [
        ("create", "<NAME>", "Name of the new segment"),
        ("inspect", "<NAME>", "Segment name"),
        ("export", "<FILE>", "The .npy file to write"),
        ("rm", "<NAME>...", "Names of the segments"),
    ] {
        let help = ok(&d.0, &[cmd, "--help"]);
        let args = &help[help.find("Arguments:").expect(&help)..];
        let at = args.find(arg).expect(&help);
        let after = args[at..].trim_start_matches(arg).trim_start();
        assert!(after.starts_with(text), "{help}");
    }

    // numpy names and descriptors are accepted; anything else lists the values.
    ok(&d.0, &["create", "a", "--dtype", "float32", "--shape", "2"]);
    ok(&d.0, &["create", "b", "--dtype", "<u2", "--shape", "2"]);
    let ls = ok(&d.0, &["ls"]);
    assert!(
        row(&ls, "a").contains("<f4") && row(&ls, "b").contains("<u2"),
        "{ls}"
    );
    let o = shmarray(
        &d.0,
        &["create", "c", "--dtype", "quaternion", "--shape", "2"],
    );
    assert_eq!(o.status.code(), Some(EXIT_USAGE));
    assert!(
        stderr(&o).contains("possible values: f64, f32, f16, i8"),
        "{o:?}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    // No segment directory is needed for completions.
    let missing = Path::new("/nonexistent").join(unique_name("nodir"));
    for (shell, marker) in [
        ("bash", "complete -F _shmarray"),
        ("zsh", "#compdef shmarray"),
        ("fish", "complete -c shmarray"),
    ] {
        let out = ok(&missing, &["completions", shell]);
        assert!(out.contains(marker), "{shell}:\n{out}");
        for sub in ["inspect", "gc", "export", "dtype"] {
            assert!(out.contains(sub), "{shell} lacks {sub}");
        }
    }
    let o = shmarray(&missing, &["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(EXIT_USAGE), "{o:?}");
}

#[test]
fn the_library_alone_does_not_pull_in_the_cli_dependencies() {
    let tree = |args: &[&str]| {
        let o = Command::new(env!("CARGO"))
            .args(["tree", "--offline", "-e", "normal", "--prefix", "none"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(o.status.success(), "cargo tree failed");
        stdout(&o)
    };
    // A library user, with the default features and with none: no CLI crates.
    for features in [&[][..], &["--no-default-features"][..]] {
        let lib = tree(&[&["-p", "shmarray"][..], features].concat());
        assert!(lib.starts_with("shmarray v"), "{lib}");
        for dep in ["clap ", "clap_complete ", "serde_json ", "shmarray-cli "] {
            assert!(
                !lib.lines().any(|l| l.starts_with(dep)),
                "{dep}in {features:?}:\n{lib}"
            );
        }
    }
    let cli = tree(&["-p", "shmarray-cli"]);
    assert!(
        cli.lines().any(|l| l.starts_with("clap_complete ")),
        "{cli}"
    );
}

#[test]
fn ls_and_inspect_show_maps_and_vecs_with_their_occupancy() {
    use shmarray::{SharedMap, SharedVec};
    let d = TestDir::new();
    let m = d
        .opts()
        .create::<SharedMap<u64, f64>, _>("prices", 100)
        .unwrap();
    m.insert(1, 2.0).unwrap();
    m.insert(2, 4.0).unwrap();
    let v = d.opts().create::<SharedVec<i32>, _>("list", 10).unwrap();
    v.extend_from_slice(&[1, 2, 3]).unwrap();

    let ls = ok(&d.0, &["ls"]);
    let cols: Vec<&str> = row(&ls, "prices").split_whitespace().collect();
    assert_eq!((cols[1], cols[2], cols[6]), ("map", "|u1", "2/100"), "{ls}");
    let cols: Vec<&str> = row(&ls, "list").split_whitespace().collect();
    assert_eq!(
        cols[..7],
        ["list", "vec", "<i4", "(10,)", "40", "B", "3/10"],
        "{ls}"
    );

    let text = ok(&d.0, &["inspect", "prices"]);
    for line in [
        "kind           map",
        "len            2",
        "capacity       100 (at most 100 entries)",
        "key size       8 bytes",
        "value size     8 bytes",
        "shards         1 of 256 slots",
        "repairs        0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
    assert!(
        text.contains("'names': ['state', 'hash', 'key', 'value']"),
        "{text}"
    );
    let j = json(&d.0, &["inspect", "--json", "prices"]);
    assert_eq!(j["kind"], "map");
    assert_eq!(j["contents"]["len"], 2);
    assert_eq!(j["contents"]["entry_stride"], 32);
    assert_eq!(
        (
            j["contents"]["key_offset"].as_u64(),
            j["contents"]["value_offset"].as_u64()
        ),
        (Some(16), Some(8))
    );
    assert_eq!(j["contents"]["entries_offset"], 4096 + 128);
    let j = json(&d.0, &["inspect", "--json", "list"]);
    assert_eq!(
        (j["kind"].as_str(), j["contents"]["len"].as_u64()),
        (Some("vec"), Some(3))
    );
    let j = json(&d.0, &["ls", "--json"]);
    assert!(j
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["contents"]["capacity"] == 100));
}
