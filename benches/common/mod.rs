//! What the page-size benches share: the segment directories to compare.

use ndarray::Ix1;
use shmarray::{HugePages, Namespace, Options, PageKind, SharedArray};

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
    match SharedArray::<f64, Ix1>::create_with(&opts, name, n) {
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
