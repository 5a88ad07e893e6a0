//! `shmarray export NAME FILE`: the segment's array as a plain `.npy` file (the
//! header numpy writes, then the data; no page padding, no control block), read
//! with `pread` through `shmarray::admin::export_npy`.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use shmarray::Namespace;

use crate::text::{escape, escape_path};
use crate::{CliError, Status};

/// Arguments of `shmarray export`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Segment to export.
    name: String,
    /// The .npy file to write ("-" for standard output).
    file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// Writes the .npy file to `w` and flushes it; returns the bytes written.
fn export_to(ns: &Namespace, name: &str, w: impl Write) -> Result<u64, shmarray::Error> {
    let mut w = BufWriter::new(w);
    let n = shmarray::admin::export_npy(ns, name, &mut w)?;
    w.flush().map_err(|e| shmarray::Error::Io {
        op: "write",
        name: name.to_string(),
        source: e,
    })?;
    Ok(n)
}

pub(crate) fn run(ns: &Namespace, args: &Args, out: &mut dyn Write) -> Result<Status, CliError> {
    if args.file.as_os_str() == "-" {
        export_to(ns, &args.name, out)?;
        return Ok(Status::Ok);
    }
    if !args.force && args.file.symlink_metadata().is_ok() {
        return Err(CliError::Failed(format!(
            "{} exists (use --force to replace it)",
            escape_path(&args.file)
        )));
    }
    // Written under a temporary name beside FILE and renamed into place, so a
    // failure leaves neither a partial file nor a damaged old one.
    let mut tmp = args.file.clone().into_os_string();
    tmp.push(format!(".partial-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let cannot = |e: std::io::Error| {
        CliError::Failed(format!("cannot write {}: {e}", escape_path(&args.file)))
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(cannot)?;
    let written = export_to(ns, &args.name, file)
        .map_err(CliError::from)
        .and_then(|n| {
            std::fs::rename(&tmp, &args.file)
                .map(|()| n)
                .map_err(cannot)
        });
    match written {
        Ok(n) => {
            writeln!(
                out,
                "exported {} to {} ({n} bytes)",
                escape(&args.name),
                escape_path(&args.file)
            )?;
            Ok(Status::Ok)
        }
        Err(e) => {
            // Leave no half-written file behind.
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
