//! Processes as seen from `/proc`: pid, start time, liveness, wall-clock time.

use std::time::{SystemTime, UNIX_EPOCH};

/// This process's id.
pub fn current_pid() -> u32 {
    std::process::id()
}

/// Start time of a process in clock ticks since boot (`/proc/<pid>/stat` field 22),
/// or `None` if there is no such process. Pid + start time identify a process even
/// when pids are reused.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Parses field 22 from the text of `/proc/<pid>/stat`. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After ")" come fields 3, 4, ...; field 22 is the 20th of them.
    after.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Whether a process recorded as (pid, start time) still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The same process still runs.
    Alive,
    /// It has exited (or the pid now belongs to a different process).
    Dead,
}

/// Checks whether the process `(pid, start_time)` is still alive.
pub fn liveness(pid: u32, start_time: u64) -> Liveness {
    match process_start_time(pid) {
        Some(t) if t == start_time => Liveness::Alive,
        _ => Liveness::Dead,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_parsing_survives_odd_command_names() {
        let line = "1234 (my (weird) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(line), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn own_process_is_alive() {
        let pid = current_pid();
        let t = process_start_time(pid).unwrap();
        assert_eq!(liveness(pid, t), Liveness::Alive);
        assert_eq!(liveness(pid, t + 1), Liveness::Dead);
    }
}
