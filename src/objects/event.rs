//! `Event`: Python's `multiprocessing.Event`, by name.

use std::fmt;
use std::time::Duration;

use ndarray::Ix0;

use crate::array::SharedArray;
use crate::error::{Error, Result};
use crate::format::control::ObjectKind;
use crate::segment::{KindSpec, Options, Target};
use crate::sync::{RawEvent, TimedOut};

/// Python's `multiprocessing.Event`, by name: `set`, `clear`, `is_set`, `wait`.
/// Waiters sleep on a process-shared futex (no polling).
///
/// # Threads
/// `Send + Sync`: threads may share one handle.
pub struct Event {
    word: SharedArray<u32, Ix0>,
}

impl Event {
    /// Creates a clear event `name`.
    pub fn create(name: &str) -> Result<Event> {
        Self::create_with(&Options::new(), name)
    }

    /// Creates a clear event `name` with the given options.
    pub fn create_with(opts: &Options, name: &str) -> Result<Event> {
        let ns = opts.ns()?;
        let word = SharedArray::create_kind(
            Target::Named(&ns, name),
            KindSpec::plain(ObjectKind::Event),
            opts,
            &[],
            |_| {},
        )?;
        Ok(Event { word })
    }

    /// Attaches event `name`.
    pub fn open(name: &str) -> Result<Event> {
        Self::open_with(&Options::new(), name)
    }

    /// Attaches event `name` with the given options (it must be writable).
    pub fn open_with(opts: &Options, name: &str) -> Result<Event> {
        let word: SharedArray<u32, Ix0> = SharedArray::open_kind(opts, name, ObjectKind::Event)?;
        if !word.is_writable() {
            return Err(Error::ReadOnly {
                name: name.to_string(),
            });
        }
        Ok(Event { word })
    }

    fn raw(&self) -> &RawEvent {
        // SAFETY: the data is one page-aligned u32 in a writable mapping that lives as
        // long as `self`; RawEvent is `#[repr(C)]` around one AtomicU32 (same size and
        // alignment) and only accesses it atomically.
        unsafe { &*self.word.data_ptr().cast::<RawEvent>() }
    }

    /// Sets the event, waking every waiter in every process.
    pub fn set(&self) {
        self.raw().set()
    }

    /// Clears the event.
    pub fn clear(&self) {
        self.raw().clear()
    }

    /// Whether it is set.
    pub fn is_set(&self) -> bool {
        self.raw().is_set()
    }

    /// Waits until the event is set.
    pub fn wait(&self) {
        // Without a deadline the wait can only end with the event set.
        let _ = self.raw().wait(None);
    }

    /// Waits until the event is set, at most `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<(), TimedOut> {
        self.raw().wait(Some(timeout))
    }

    segment_accessors!(persistent word);
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name())
            .field("set", &self.is_set())
            .finish()
    }
}
