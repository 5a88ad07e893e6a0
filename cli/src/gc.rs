//! `shmarray gc`: the library's garbage collection (`shmarray::admin::collect_garbage`),
//! reported. Collection goes on after a failure; every failure is reported at the
//! end, and only failures make the exit status 1.

use std::io::Write;

use shmarray::Namespace;

use crate::inspect::error_text;
use crate::text::escape;
use crate::{CliError, Status};

/// Arguments of `shmarray gc`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Only print what would be removed.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn run(ns: &Namespace, args: &Args, out: &mut dyn Write) -> Result<Status, CliError> {
    let report = if args.dry_run {
        shmarray::admin::find_garbage(ns)?
    } else {
        shmarray::admin::collect_garbage(ns)?
    };
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for (name, why) in &report.removed {
        writeln!(out, "{verb} {} ({why})", escape(name))?;
    }
    for name in &report.undecided {
        writeln!(
            out,
            "kept {} (whether it is in use cannot be decided here)",
            escape(name)
        )?;
    }
    if report.removed.is_empty() && report.failed.is_empty() {
        writeln!(out, "nothing to collect")?;
    }
    if report.failed.is_empty() {
        return Ok(Status::Ok);
    }
    out.flush()?;
    for (name, e) in &report.failed {
        eprintln!(
            "shmarray: gc could not remove {}: {}",
            escape(name),
            error_text(e)
        );
    }
    eprintln!(
        "shmarray: gc: {} removed, {} failed",
        report.removed.len(),
        report.failed.len()
    );
    Ok(Status::Failed)
}
