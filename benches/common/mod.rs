//! What benches share: the segment directories to compare (page-size benches),
//! and a second process to run beside this one (two-process benches). Each bench
//! uses some of it.
#![allow(dead_code)]

use shmarray::ndarray::Ix1;
use shmarray::{
    huge::{HugePages, PageKind},
    Namespace, Options, Segment, SharedArray,
};

/// `(label, namespace)` for every kind of page this machine offers a directory for:
/// `4k` (the default directory), then `hugetlb` and `thp` for the first directory
/// of each kind among the default namespace's huge directories. Prints what is
/// missing and how to add it.
pub fn page_variants() -> Vec<(&'static str, Namespace)> {
    let ns = Namespace::default_dir().expect("the default segment directory");
    let mut v = vec![("4k", Namespace::at(ns.path()).expect("default directory"))];
    let dirs = ns.directories();
    for (label, kind) in [
        ("hugetlb", PageKind::HugeTlb),
        ("thp", PageKind::Transparent),
    ] {
        match dirs.iter().find(|d| d.backing.kind == kind) {
            Some(d) => v.push((
                label,
                Namespace::at(ns.path())
                    .and_then(|n| n.with_huge_dir(&d.path))
                    .expect("huge directory"),
            )),
            None => eprintln!(
                "note: no {label} directory, so no {label} variant (`shmarray doctor` says how \
                 to make one; set SHMARRAY_HUGE_DIR to pick one)"
            ),
        }
    }
    v
}

/// A 1-filled f64 array of `n` elements named `name` in the variant `(label, ns)`
/// (huge pages required except for `4k`), or `None` after printing why not.
pub fn array(label: &str, ns: &Namespace, name: &str, n: usize) -> Option<SharedArray<f64, Ix1>> {
    let huge = if label == "4k" {
        HugePages::Off
    } else {
        HugePages::Require
    };
    let opts = Options::new().namespace(ns.clone()).huge_pages(huge);
    match opts.create::<SharedArray<f64, Ix1>, _>(name, n) {
        Ok(mut a) => {
            eprintln!("{label}: {name} on {}", a.backing());
            a.view_mut().expect("writable").fill(1.0);
            Some(a)
        }
        Err(e) => {
            eprintln!("note: no {label} variant: {e}");
            None
        }
    }
}

/// The second process of a two-process bench: this bench binary re-executed with
/// `env` set to `kind:name:ready:go:iters`. Runs `here` `iters` times in this
/// process while the child runs its part; returns the wall time from the start
/// signal until both are done.
pub fn two_processes(
    env: &str,
    kind: &str,
    name: &str,
    iters: u64,
    mut here: impl FnMut(),
) -> std::time::Duration {
    use std::time::{Duration, Instant};
    let pid = std::process::id();
    let (ready_name, go_name) = (
        format!("shmarray-bench-ready-{pid}"),
        format!("shmarray-bench-go-{pid}"),
    );
    let ready = shmarray::Event::create(&ready_name).unwrap();
    let go = shmarray::Event::create(&go_name).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(env, format!("{kind}:{name}:{ready_name}:{go_name}:{iters}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ready
        .wait_timeout(Duration::from_secs(60))
        .expect("child ready");
    let t = Instant::now();
    go.set();
    for _ in 0..iters {
        here();
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    t.elapsed()
}

/// In the child of [`two_processes`]: what to do (`kind` on segment `name`,
/// `iters` times) and the start signal.
pub struct ChildSpec {
    pub kind: String,
    pub name: String,
    pub iters: u64,
    ready: shmarray::Event,
    go: shmarray::Event,
}

impl ChildSpec {
    /// Parses the child's spec; exits with code 2 on a bad one.
    pub fn parse(spec: &str) -> ChildSpec {
        let parts: Vec<&str> = spec.split(':').collect();
        let [kind, name, ready, go, iters] = parts.as_slice() else {
            std::process::exit(2)
        };
        ChildSpec {
            kind: kind.to_string(),
            name: name.to_string(),
            iters: iters.parse().unwrap_or_else(|_| std::process::exit(2)),
            ready: shmarray::Event::open(ready).unwrap(),
            go: shmarray::Event::open(go).unwrap(),
        }
    }

    /// Says "ready" (call after opening what the child works on, so that the
    /// opening is not timed) and waits for the start signal.
    pub fn wait_go(&self) {
        self.ready.set();
        self.go
            .wait_timeout(std::time::Duration::from_secs(60))
            .unwrap();
    }
}
