//! The handles of each segment file in this process, so that direct views
//! (`SharedArray::view`, `view_mut`) are only ever taken through a handle that is
//! alone in its process.
//!
//! Direct views borrow their handle (`&mut self`), which the borrow checker makes
//! exclusive, but two handles of one file would be two independent owners of the
//! same bytes. So a handle that takes a direct view first *claims* its file: the
//! claim succeeds only while it is the file's only handle in the process, and while
//! it stands, opening the file again in this process fails. Locking (`lock()`)
//! needs no claim: the lock itself excludes every other locker.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A file: device and inode.
pub(crate) type FileId = (u64, u64);

#[derive(Default)]
struct Entry {
    handles: usize,
    claimed: bool,
}

static HANDLES: Mutex<Option<HashMap<FileId, Entry>>> = Mutex::new(None);

fn table() -> MutexGuard<'static, Option<HashMap<FileId, Entry>>> {
    // The table stays consistent even if a holder panicked (every update is one
    // statement), so a poisoned lock is simply taken over.
    HANDLES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One handle's registration; unregisters on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    id: FileId,
    claimed: bool,
}

/// Why a registration or claim was refused.
pub(crate) const CLAIMED: &str = "another handle has taken direct views of it";
/// Why a claim was refused.
pub(crate) const SHARED: &str = "direct views need the only handle of it in this process";

impl Registration {
    /// Registers a new handle of `id`; refused while another handle holds a claim.
    pub(crate) fn new(id: FileId) -> Result<Registration, &'static str> {
        let mut t = table();
        let e = t.get_or_insert_with(HashMap::new).entry(id).or_default();
        if e.claimed {
            return Err(CLAIMED);
        }
        e.handles += 1;
        Ok(Registration { id, claimed: false })
    }

    /// Claims the file for direct views; refused unless this is its only handle.
    pub(crate) fn claim(&mut self) -> Result<(), &'static str> {
        if self.claimed {
            return Ok(());
        }
        let mut t = table();
        let e = t
            .get_or_insert_with(HashMap::new)
            .get_mut(&self.id)
            .expect("a registration's entry exists while it lives");
        if e.handles != 1 {
            return Err(SHARED);
        }
        e.claimed = true;
        self.claimed = true;
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut t = table();
        let map = t.get_or_insert_with(HashMap::new);
        if let Some(e) = map.get_mut(&self.id) {
            e.handles -= 1;
            if self.claimed {
                e.claimed = false;
            }
            if e.handles == 0 {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_need_a_lone_handle_and_block_new_ones() {
        let id = (u64::MAX, 1);
        let mut a = Registration::new(id).unwrap();
        let b = Registration::new(id).unwrap();
        assert_eq!(a.claim(), Err(SHARED));
        drop(b);
        a.claim().unwrap();
        assert_eq!(Registration::new(id).unwrap_err(), CLAIMED);
        drop(a);
        let mut c = Registration::new(id).unwrap();
        c.claim().unwrap();
    }
}
