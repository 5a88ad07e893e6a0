//! The attach cache: shared arrays a process attached for tasks, kept mapped so
//! that repeated kernels pay no attach or page-fault cost again.
//!
//! - Keyed by the file (device, inode) and the handle's type.
//! - Every use checks that the segment's name still refers to that file; if not,
//!   the handle's array was removed or replaced: [`TaskError::SegmentReplaced`].
//! - Entries whose name no longer refers to their file are dropped before every new
//!   attach, when the pool asks (`Sweep`: its process removed a segment it had
//!   handed out, and waits for idle workers to let go), and whenever an idle worker
//!   wakes (every 250 ms: segments other processes removed), so a removed segment's
//!   memory is given back to the system instead of staying mapped until the pool
//!   ends (on a small tmpfs that meant `NoSpace`).
//! - At most [`CAPACITY`] entries; the least recently used goes first.
//! - A handle is taken *out* of the cache while a task uses it, and the task gets
//!   it by `&mut`: kernels take their part through the safe, claiming
//!   `view_mut`/`view`, so code inside a kernel that reaches the same array again
//!   (another `ArrayHandle::with`, an `open` by name) gets a fresh handle, which the
//!   claim refuses (`InUse`) — never a second view of the part being written.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;

use ndarray::Dimension;
use serde::{Deserialize, Serialize};

use super::TaskError;
use crate::array::SharedArray;
use crate::element::Element;
use crate::segment::Segment as _;
use crate::segment::{Namespace, Options};

/// Where a named segment is, and which file it was when the handle was made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) dir: String,
    pub(crate) name: String,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl Location {
    /// Where `array` is; anonymous arrays have no name to attach by.
    pub(crate) fn of<T: Element, D: Dimension>(
        array: &SharedArray<T, D>,
    ) -> Result<Location, TaskError> {
        let (Some(name), Some(path)) = (array.name(), array.path()) else {
            return Err(TaskError::AnonymousArray);
        };
        let (dev, ino) = array.file_id();
        Ok(Location {
            dir: path
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            name: name.to_string(),
            dev,
            ino,
        })
    }
}

/// Most arrays kept attached per thread.
pub(crate) const CAPACITY: usize = 16;

struct Entry {
    file: (u64, u64),
    ty: TypeId,
    dir: String,
    name: String,
    array: Box<dyn Any>,
}

thread_local! {
    /// Least recently used first.
    static CACHE: RefCell<VecDeque<Entry>> = const { RefCell::new(VecDeque::new()) };
}

/// The (device, inode) that `dir/name` refers to now, if any.
fn current_file(dir: &str, name: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let bare = name.strip_prefix('/').unwrap_or(name);
    std::fs::metadata(Path::new(dir).join(bare))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Drops cached arrays whose name no longer refers to their file (removed or
/// replaced), so their memory can be freed.
pub(crate) fn release_stale_mappings() {
    // Collected first: dropping an array must not happen under the borrow.
    let stale: Vec<Entry> = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let (keep, stale): (Vec<Entry>, Vec<Entry>) = c
            .drain(..)
            .partition(|e| current_file(&e.dir, &e.name) == Some(e.file));
        *c = keep.into();
        stale
    });
    drop(stale);
}

/// Runs `f` with the `SharedArray<T, D>` at `at`, attaching it on first use and
/// reusing the mapping afterwards. The handle is out of the cache while `f` runs
/// (see the module docs), so `f` may use other handles.
///
/// # Errors
/// [`TaskError::SegmentReplaced`] if the name no longer refers to the handle's
/// file; [`TaskError::Attach`] if attaching fails (not found, wrong type, ...).
pub(crate) fn with_attached<T: Element, D: Dimension + 'static, O>(
    at: &Location,
    f: impl FnOnce(&mut SharedArray<T, D>) -> O,
) -> Result<O, TaskError> {
    let file = (at.dev, at.ino);
    let replaced = || TaskError::SegmentReplaced {
        name: at.name.clone(),
    };
    if current_file(&at.dir, &at.name) != Some(file) {
        release_stale_mappings();
        return Err(replaced());
    }
    let ty = TypeId::of::<SharedArray<T, D>>();
    let hit = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let pos = c.iter().position(|e| e.file == file && e.ty == ty)?;
        c.remove(pos)
    });
    let mut array = match hit.and_then(|e| e.array.downcast::<SharedArray<T, D>>().ok()) {
        Some(a) => a,
        None => {
            release_stale_mappings();
            let attach_error = |e: crate::error::Error| TaskError::Attach {
                name: at.name.clone(),
                reason: e.to_string(),
            };
            let ns = Namespace::at(&at.dir).map_err(attach_error)?;
            let a: SharedArray<T, D> = Options::new()
                .namespace(ns)
                .open(&at.name)
                .map_err(attach_error)?;
            if a.file_id() != file {
                return Err(replaced());
            }
            Box::new(a)
        }
    };
    let out = f(&mut array);
    // Back in, as the most recently used.
    let evicted = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let evicted = if c.len() >= CAPACITY {
            c.pop_front()
        } else {
            None
        };
        c.push_back(Entry {
            file,
            ty,
            dir: at.dir.clone(),
            name: at.name.clone(),
            array,
        });
        evicted
    });
    drop(evicted);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached() -> Vec<String> {
        CACHE.with(|c| c.borrow().iter().map(|e| e.name.clone()).collect())
    }

    #[test]
    fn bounded_least_recently_used_and_drops_removed_segments() {
        let name = |i: usize| format!("shmarray-unit-{}-cache-{i}", std::process::id());
        let arrays: Vec<SharedArray<f64, ndarray::Ix1>> = (0..20)
            .map(|i| SharedArray::create(&name(i), 1).unwrap())
            .collect();
        let at = |a: &SharedArray<f64, ndarray::Ix1>| {
            let (dev, ino) = a.file_id();
            Location {
                dir: a.path().unwrap().parent().unwrap().display().to_string(),
                name: a.name().unwrap().to_string(),
                dev,
                ino,
            }
        };
        let locs: Vec<Location> = arrays.iter().map(at).collect();
        for (i, l) in locs.iter().enumerate() {
            with_attached::<f64, ndarray::Ix1, _>(l, |_| ()).unwrap();
            if i == 14 {
                // Touch 0 again before anything is evicted: 1 is now the least
                // recently used.
                with_attached::<f64, ndarray::Ix1, _>(&locs[0], |_| ()).unwrap();
            }
        }
        let names = cached();
        assert_eq!(names.len(), CAPACITY);
        assert!(
            names.contains(&name(0)) && !names.contains(&name(1)),
            "{names:?}"
        );
        // Removing segments lets their mappings go.
        let mut arrays = arrays;
        arrays.truncate(15);
        release_stale_mappings();
        assert_eq!(cached().len(), CAPACITY - 5);
        assert!(matches!(
            with_attached::<f64, ndarray::Ix1, _>(&locs[19], |_| ()),
            Err(TaskError::SegmentReplaced { .. })
        ));
    }
}
