//! How long a blocking call may wait: the one deadline type of the crate.
//!
//! The public API says it three ways (the blocking form, `try_*`, `*_timeout(d)`
//! or an `Option<Duration>`); each converts once, at the API edge, into a [`Wait`],
//! and the code below asks the `Wait` what is left instead of building and
//! comparing `Instant`s itself. A timeout too large for an `Instant` waits forever.

use std::time::{Duration, Instant};

/// How long a call may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not at all (`try_*`: `WouldBlock`, `Full`, `Empty`).
    No,
    /// Until it succeeds (or what it waits for is gone).
    Forever,
    /// Until the instant, then a timeout error naming the duration the caller gave.
    Until(Instant, Duration),
}

impl Wait {
    /// At most `timeout` from now (forever if the instant cannot be represented).
    pub(crate) fn timeout(timeout: Duration) -> Wait {
        Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, |t| Wait::Until(t, timeout))
    }

    /// `Some(timeout)`: at most that long; `None`: forever.
    pub(crate) fn optional(timeout: Option<Duration>) -> Wait {
        timeout.map_or(Wait::Forever, Wait::timeout)
    }

    /// What is left of it: `None` for `Forever`, zero once it has passed.
    pub(crate) fn remaining(self) -> Option<Duration> {
        match self {
            Wait::No => Some(Duration::ZERO),
            Wait::Forever => None,
            Wait::Until(t, _) => Some(t.saturating_duration_since(Instant::now())),
        }
    }

    /// Whether it has passed (`No`: always, `Forever`: never).
    #[cfg_attr(not(feature = "pool"), allow(dead_code))] // processes and the pool
    pub(crate) fn expired(self) -> bool {
        self.remaining().is_some_and(|r| r.is_zero())
    }

    /// What is left, at most `slice`: `None` once it has passed. For loops that
    /// sleep in slices and check something between them.
    pub(crate) fn slice(self, slice: Duration) -> Option<Duration> {
        match self.remaining() {
            None => Some(slice),
            Some(r) if r.is_zero() => None,
            Some(r) => Some(r.min(slice)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert!(Wait::No.expired());
        assert_eq!(Wait::No.slice(Duration::from_secs(1)), None);
        assert!(!Wait::Forever.expired());
        assert_eq!(Wait::Forever.remaining(), None);
        let s = Duration::from_millis(5);
        assert_eq!(Wait::Forever.slice(s), Some(s));
        // Too far for an Instant: forever, not a panic.
        assert_eq!(Wait::timeout(Duration::MAX), Wait::Forever);
        assert_eq!(Wait::optional(None), Wait::Forever);
        let w = Wait::optional(Some(Duration::from_secs(60)));
        assert!(matches!(w, Wait::Until(_, d) if d == Duration::from_secs(60)));
        assert!(!w.expired());
        assert!(w.remaining().unwrap() > Duration::from_secs(59));
        assert_eq!(w.slice(s), Some(s));
        let w = Wait::timeout(Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(15));
        assert!(w.expired());
        assert_eq!(w.remaining(), Some(Duration::ZERO));
        assert_eq!(w.slice(s), None);
    }
}
