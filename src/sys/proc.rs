//! This process: pid, user, start time and pid namespace (recorded for people, never
//! used to decide liveness), the fork generation, wall-clock time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

/// This process's id, as seen in its own pid namespace.
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

/// The effective user id (who new files belong to, and whose files we trust).
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// This process's start time in clock ticks since boot (`/proc/self/stat` field 22),
/// or `None` without `/proc`. Informational: shown by `shmarray inspect`.
pub(crate) fn own_start_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_start_time(&stat)
}

/// Parses field 22 from the text of `/proc/<pid>/stat`. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last `)`.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After ")" come fields 3, 4, ...; field 22 is the 20th of them.
    after.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid` reads
/// `pid:[4026531836]`), or `None` without `/proc`. Tells whether a recorded pid
/// means anything here.
pub(crate) fn pid_namespace() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    parse_namespace_link(link.to_str()?)
}

/// Parses `pid:[4026531836]`.
pub(crate) fn parse_namespace_link(link: &str) -> Option<u64> {
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: one atomic add.
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// A number that changes in a child after every `fork()` (counted by a
/// `pthread_atfork` handler registered on first call). Handles that own per-process
/// state in shared memory (queue and barrier membership) compare it to notice that
/// they were copied into a forked child, which must not share their slot.
#[inline]
pub(crate) fn fork_generation() -> u64 {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registering a handler that only performs an atomic add, which is
        // async-signal-safe as the child handler must be. Failure (ENOMEM) leaves
        // fork detection off, which only matters to callers that fork.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// [`fork_generation`] without making sure the counting handler is registered:
/// one relaxed load, for hot paths whose handle called `fork_generation` when it
/// was made (so the handler is registered; without that, this never changes).
#[inline(always)]
pub(crate) fn fork_generation_registered() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_parsing_survives_odd_command_names() {
        let line = "1234 (my (weird) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(line), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        assert!(own_start_time().is_some());
    }

    #[test]
    fn namespace_links() {
        assert_eq!(parse_namespace_link("pid:[4026531836]"), Some(4026531836));
        assert_eq!(parse_namespace_link("net:[1]"), None);
        assert!(pid_namespace().is_some());
    }
}
