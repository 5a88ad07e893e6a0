//! `shmarray completions SHELL`: a completion script for the shell, on stdout.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::{Cli, CliError, Status};

/// Arguments of `shmarray completions`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The shell to complete for, e.g. `shmarray completions bash > /etc/bash_completion.d/shmarray`.
    #[arg(value_enum)]
    shell: Shell,
}

pub(crate) fn run(args: &Args, out: &mut dyn Write) -> Result<Status, CliError> {
    // Into memory first: the generator panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "shmarray", &mut script);
    out.write_all(&script)?;
    Ok(Status::Ok)
}
