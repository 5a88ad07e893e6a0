//! `Event`: Python's `multiprocessing.Event`, by name.

use std::fmt;
use std::fs::File;
use std::time::Duration;

use ndarray::Ix0;

use crate::array::SharedArray;
use crate::error::{Error, Result};
use crate::format::control::ObjectKind;
use crate::segment::handle::sealed;
use crate::segment::{Create, KindSpec, Mapping, Open, Options, Segment, Source};
use crate::sync::{RawEvent, TimedOut};

/// Python's `multiprocessing.Event`, by name: `set`, `clear`, `is_set`, `wait`.
/// Waiters sleep on a process-shared futex (no polling).
///
/// ```
/// use std::time::Duration;
/// use shmarray::Event;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-event-{}", std::process::id());
/// let ready = Event::create(&name)?; // clear
/// let waiter = Event::open(&name)?; // e.g. in another process
/// std::thread::scope(|s| {
///     s.spawn(|| ready.set());
///     waiter.wait(); // until the other thread sets it
/// });
/// assert!(waiter.is_set());
/// waiter.clear();
/// assert!(ready.wait_timeout(Duration::from_millis(5)).is_err());
/// # Ok(()) }
/// ```
///
/// # Threads
/// `Send + Sync`: threads may share one handle.
pub struct Event {
    word: SharedArray<u32, Ix0>,
}

impl Event {
    /// Creates a clear event `name` (owner: removed on drop);
    /// [`Options::create`] creates with other options (its argument is `()`).
    pub fn create(name: &str) -> Result<Event> {
        Options::new().create(name, ())
    }

    /// Attaches event `name`; [`Options::open`] opens with other options (the
    /// mapping must be writable).
    pub fn open(name: &str) -> Result<Event> {
        Options::new().open(name)
    }

    fn checked(word: SharedArray<u32, Ix0>) -> Result<Event> {
        if !word.is_writable() {
            return Err(Error::ReadOnly {
                name: word.name().unwrap_or("<anonymous>").to_string(),
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
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmarray::Event;
    /// let go = Event::create(&format!("doc-event-clear-{}", std::process::id()))?;
    /// go.set();
    /// assert!(go.is_set());
    /// go.wait(); // returns at once while set, for every waiter
    /// go.clear();
    /// assert!(!go.is_set());
    /// assert!(go.wait_timeout(Duration::from_millis(1)).is_err()); // waits again
    /// # Ok::<(), shmarray::Error>(())
    /// ```
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
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmarray::{Event, Segment};
    /// let ready = Event::create(&format!("doc-event-wait-{}", std::process::id()))?;
    /// let other = Event::open(ready.name().unwrap())?; // as another process would
    /// std::thread::scope(|s| {
    ///     s.spawn(|| other.set());
    ///     assert_eq!(ready.wait_timeout(Duration::from_secs(10)), Ok(()));
    /// });
    /// # Ok::<(), shmarray::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<(), TimedOut> {
        self.raw().wait(Some(timeout))
    }
}

impl sealed::Sealed for Event {
    fn mapping(&self) -> &Mapping {
        self.word.mapping()
    }
    fn mapping_mut(&mut self) -> &mut Mapping {
        self.word.mapping_mut()
    }
}

impl Segment for Event {
    type Error = Error;
}

impl Create<()> for Event {
    fn create_segment(opts: &Options, name: Option<&str>, (): ()) -> Result<Self> {
        let kind = KindSpec::plain(ObjectKind::Event);
        let word = SharedArray::create_named_or_anonymous(opts, name, kind, &[], |_| {})?;
        Ok(Event { word })
    }
}

impl Open for Event {
    fn open_segment(opts: &Options, name: &str) -> Result<Self> {
        Self::checked(SharedArray::open_kind(
            opts,
            Source::Named(name),
            ObjectKind::Event,
        )?)
    }

    fn open_file(opts: &Options, file: File) -> Result<Self> {
        Self::checked(SharedArray::open_kind(
            opts,
            Source::File(file),
            ObjectKind::Event,
        )?)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name())
            .field("set", &self.is_set())
            .finish()
    }
}
