//! `shmarray rm NAME...`: deliberate removal by name of your own files (another
//! user's only with `--owner UID`). Refuses files that are not segments unless
//! `--force`; goes on after a failure. Names are taken as the bytes given, so a name
//! `ls` shows escaped (not UTF-8) can be passed back (`$'bad\xff'` in bash).

use std::ffi::{OsStr, OsString};
use std::io::Write;

use shmarray::{Error, Namespace};

use crate::inspect::error_text;
use crate::text::escape_os;
use crate::{CliError, Status};

/// Arguments of `shmarray rm`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Names of the segments to remove.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<OsString>,
    /// Also remove files that are not shmarray/NPY segments.
    #[arg(long)]
    force: bool,
    /// Remove the files of user UID instead of your own (root cleaning up after
    /// another user). Without it, another user's file is never removed.
    #[arg(long, value_name = "UID")]
    owner: Option<u32>,
}

/// Whether `name` may be removed: segments (also unfinished ones) yes, damaged and
/// other files only with `--force`. Judges the file `rm` would take: the caller's
/// own (as `inspect` picks it) or, with `--owner`, that user's.
fn may_remove(ns: &Namespace, name: &OsStr, force: bool, owner: Option<u32>) -> Result<(), Error> {
    if owner.is_some() {
        // Inspection picks the caller's own file; another owner's is judged by
        // removal's own lookup, and only `--force` skips the segment check.
        return Ok(());
    }
    match shmarray::admin::inspect(ns, name) {
        Ok(_) | Err(Error::NotReady { .. }) => Ok(()),
        Err(e @ (Error::NotFound { .. } | Error::DuplicateName { .. })) => Err(e),
        Err(_) if force => Ok(()),
        Err(e) => Err(e),
    }
}

fn remove(ns: &Namespace, name: &OsStr, owner: Option<u32>) -> Result<(), Error> {
    match owner {
        Some(uid) => ns.remove_owned_by(name, uid),
        None => ns.remove(name),
    }
}

pub(crate) fn run(ns: &Namespace, args: &Args, out: &mut dyn Write) -> Result<Status, CliError> {
    // An invalid name is a usage error: nothing is removed then.
    for name in &args.names {
        if let Err(e @ Error::InvalidName { .. }) = ns.path_of(name) {
            return Err(e.into());
        }
    }
    let mut status = Status::Ok;
    for name in &args.names {
        match may_remove(ns, name, args.force, args.owner)
            .and_then(|()| remove(ns, name, args.owner))
        {
            Ok(()) => writeln!(out, "removed {}", escape_os(name))?,
            Err(e) => {
                let hint = match e {
                    Error::NotFound { .. } => String::new(),
                    Error::ForeignOwner { owner, .. } => {
                        format!(" (use --owner {owner} to remove another user's file)")
                    }
                    Error::DuplicateName { .. } => {
                        " (remove one through its directory alone: SHMARRAY_HUGE_DIR= shmarray --dir DIR rm NAME)".into()
                    }
                    _ if args.force => String::new(),
                    _ => " (use --force to remove it anyway)".into(),
                };
                eprintln!("shmarray: not removed: {}{hint}", error_text(&e));
                status = Status::Failed;
            }
        }
    }
    Ok(status)
}
