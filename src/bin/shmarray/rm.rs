//! `shmarray rm NAME...`: deliberate removal by name. Refuses files that are not
//! segments unless `--force`; goes on after a failure.

use std::io::Write;

use shmarray::{Error, Namespace};

use crate::inspect::error_text;
use crate::text::escape;
use crate::{CliError, Status};

/// Arguments of `shmarray rm`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Names of the segments to remove.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// Also remove files that are not shmarray/NPY segments.
    #[arg(long)]
    force: bool,
}

/// Whether `name` may be removed: segments (also unfinished ones) yes, damaged and
/// other files only with `--force`.
fn may_remove(ns: &Namespace, name: &str, force: bool) -> Result<(), Error> {
    match shmarray::inspect(ns, name) {
        Ok(_) | Err(Error::NotReady { .. }) => Ok(()),
        Err(e @ Error::NotFound { .. }) => Err(e),
        Err(_) if force => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn run(ns: &Namespace, args: &Args, out: &mut dyn Write) -> Result<Status, CliError> {
    // An invalid name is a usage error: nothing is removed then.
    for name in &args.names {
        ns.path_of(name)?;
    }
    let mut status = Status::Ok;
    for name in &args.names {
        match may_remove(ns, name, args.force).and_then(|()| ns.remove(name)) {
            Ok(()) => writeln!(out, "removed {}", escape(name))?,
            Err(e) => {
                let hint = match e {
                    Error::NotFound { .. } => "",
                    _ if args.force => "",
                    _ => " (use --force to remove it anyway)",
                };
                eprintln!("shmarray: not removed: {}{hint}", error_text(&e));
                status = Status::Failed;
            }
        }
    }
    Ok(status)
}
