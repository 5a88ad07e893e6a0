//! Helpers shared by the integration tests: unique names, cleanup guards, watchdogs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A segment name unique to this process and call: `shmarray-test-<pid>-<tag>-<n>`.
pub fn unique_name(tag: &str) -> String {
    format!(
        "shmarray-test-{}-{}-{}",
        std::process::id(),
        tag,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes a file in /dev/shm when dropped (also when the test panics).
pub struct ShmFile(pub PathBuf);

impl ShmFile {
    pub fn new(name: &str) -> ShmFile {
        ShmFile(PathBuf::from("/dev/shm").join(name))
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits for a child with a deadline; kills it (and fails) if it does not finish.
pub fn wait_with_deadline(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not finish within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lists /dev/shm entries that start with `prefix`.
pub fn leftovers(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// How long any child may run before the watchdog kills it (and fails the test).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Running children; killed and reaped on drop, so a failing test leaves none behind.
/// Each child's stdout is read by a thread into a channel, so every wait for a line
/// has a deadline (a hang fails the test) and no line is lost between calls.
pub struct Children {
    env: &'static str,
    kids: Vec<(Child, Receiver<String>)>,
}

impl Children {
    /// Children that find their role in the environment variable `env`.
    pub fn new(env: &'static str) -> Children {
        Children {
            env,
            kids: Vec::new(),
        }
    }

    /// The command that re-executes this test binary's `child_entry` with `role`.
    pub fn command(&self, role: &str) -> Command {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(self.env, role)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        c
    }

    /// Starts `role` in a re-executed child; returns its index.
    pub fn spawn(&mut self, role: &str) -> usize {
        let cmd = self.command(role);
        self.spawn_command(cmd)
    }

    /// Starts a prepared command (e.g. wrapped in `unshare`; stdout must be piped);
    /// returns its index.
    pub fn spawn_command(&mut self, mut cmd: Command) -> usize {
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.kids.push((child, rx));
        self.kids.len() - 1
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.kids[i].0.id()
    }

    /// The child's stdin (when the command piped it).
    pub fn stdin(&mut self, i: usize) -> Option<std::process::ChildStdin> {
        self.kids[i].0.stdin.take()
    }

    /// Waits (at most DEADLINE) for a stdout line of child `i` that contains `text`
    /// (libtest may print "test child_entry ... " before it on the same line).
    pub fn expect_line(&mut self, i: usize, text: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.kids[i].1.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line.trim().to_string(),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("child {i} printed no line with {text:?} within {DEADLINE:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("child {i} closed stdout before {text:?}")
                }
            }
        }
    }

    pub fn kill(&mut self, i: usize) {
        self.kids[i].0.kill().unwrap();
        self.kids[i].0.wait().unwrap();
    }

    /// Waits for child `i` (watchdog: killed after DEADLINE) and returns its exit code
    /// (-1 if a signal ended it) and remaining stdout.
    pub fn wait(&mut self, i: usize) -> (i32, String) {
        let status = wait_with_deadline(&mut self.kids[i].0, DEADLINE);
        let mut rest = String::new();
        while let Ok(line) = self.kids[i].1.recv_timeout(Duration::from_secs(5)) {
            rest.push_str(&line);
            rest.push('\n');
        }
        (status.code().unwrap_or(-1), rest)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (c, _) in &mut self.kids {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a Python snippet with numpy imported as `np`; returns its stdout.
/// `None` when numpy is unavailable and skipping was requested.
pub fn python(code: &str) -> Option<String> {
    let script = format!("import sys\nimport numpy as np\n{code}\n");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed");
    let status = wait_with_deadline(&mut child, Duration::from_secs(60));
    let out = child.wait_with_output().expect("python output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !status.success() && stderr.contains("No module named 'numpy'") {
        if std::env::var_os("SHMARRAY_SKIP_NUMPY").is_some() {
            eprintln!("SKIPPED: numpy is not installed (SHMARRAY_SKIP_NUMPY is set)");
            return None;
        }
        panic!("numpy is not installed: run `python3 -m pip install numpy` (or set SHMARRAY_SKIP_NUMPY=1)");
    }
    assert!(status.success(), "python failed:\n{script}\n{stderr}");
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
