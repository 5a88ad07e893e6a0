//! `shmarray`: list, inspect, create, export and clean up shared-array segments, and
//! run the demo. One module per subcommand; `text` holds escaping, tables, sizes and
//! times.
//!
//! Everything printed that comes from a file or a directory (names, descriptors,
//! paths, error messages) is escaped first: see [`text`].

mod completions;
mod create;
mod demo;
mod doctor;
mod export;
mod gc;
mod inspect;
mod ls;
mod rm;
mod text;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shmarray::{Error, Namespace};

/// Exit status: everything asked for was done.
const EXIT_OK: u8 = 0;
/// Exit status: an operation failed (not found, not a segment, some removals failed).
const EXIT_FAILED: u8 = 1;
/// Exit status: the command line is wrong (unknown option, bad value, invalid name).
const EXIT_USAGE: u8 = 2;
/// Exit status: the segment directory does not exist.
const EXIT_NO_DIR: u8 = 3;
/// Exit status: a segment directory is refused (another user's, writable by others
/// and not sticky, or a symlink).
const EXIT_REFUSED_DIR: u8 = 4;

/// The exit statuses, as `--help` lists them (keep in step with the constants).
const EXIT_HELP: &str = "\
Exit status:
  0  success
  1  an operation failed: not found, not a segment, some removals failed, ...
  2  usage error: unknown option, bad value (dtype, shape), invalid segment name
  3  the segment directory does not exist
  4  a segment directory is refused: another user's, writable by others and not
     sticky, or a symbolic link (see `shmarray doctor`)";

#[derive(Parser)]
#[command(
    name = "shmarray",
    version,
    about = "Zero-copy shared-memory arrays: list, inspect, create, export, clean up, demo",
    after_help = EXIT_HELP
)]
struct Cli {
    /// Segment directory (default: $SHMARRAY_DIR or /dev/shm).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Directory for huge-page segments, looked up after --dir (repeatable; default:
    /// $SHMARRAY_HUGE_DIR, else the writable hugetlbfs and THP tmpfs mounts).
    #[arg(long, global = true, value_name = "DIR")]
    huge_dir: Vec<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the segments: name, kind, dtype, shape, bytes, use, creator.
    Ls(ls::Args),
    /// Show a segment's header and control block.
    Inspect(inspect::Args),
    /// Remove your segments by name (a deliberate act: also when in use).
    Rm(rm::Args),
    /// Remove garbage: segments nobody has open that are not persistent.
    Gc(gc::Args),
    /// Print the file path of a segment (for numpy.load(path, mmap_mode="r+")).
    Path(inspect::PathArgs),
    /// Create a zero-filled persistent array segment (stays until `shmarray rm`).
    Create(create::Args),
    /// Write a segment's array to a plain .npy file (without the control block).
    Export(export::Args),
    /// Demo: a worker process doubles an array in place; compared with a pipe round trip.
    Demo(demo::Args),
    /// What this machine offers for huge pages, and how to turn them on.
    Doctor(doctor::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
    /// Internal: the demo/benchmark worker (line protocol on stdin/stdout).
    #[command(hide = true, name = "__worker")]
    Worker,
}

/// How a command that ran to its end went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Everything was done.
    Ok,
    /// Something was not done; it was reported on stderr.
    Failed,
}

/// Why a command stopped.
#[derive(Debug)]
enum CliError {
    /// A segment operation failed.
    Segment(Error),
    /// Writing the output failed (other than a closed pipe).
    Output(io::Error),
    /// Something else failed; the message says what.
    Failed(String),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Segment(e)
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Output(e)
    }
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Segment(Error::InvalidName { .. }) => EXIT_USAGE,
            CliError::Segment(Error::DirectoryNotFound { .. }) => EXIT_NO_DIR,
            CliError::Segment(Error::DirectoryRefused { .. }) => EXIT_REFUSED_DIR,
            CliError::Segment(_) | CliError::Output(_) | CliError::Failed(_) => EXIT_FAILED,
        }
    }

    fn message(&self) -> String {
        match self {
            CliError::Segment(e) => inspect::error_text(e),
            CliError::Output(e) => text::sanitize(&format!("writing output failed: {e}")),
            CliError::Failed(m) => text::sanitize(m),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = run(cli, &mut out).and_then(|s| out.flush().map(|()| s).map_err(CliError::from));
    ExitCode::from(match result {
        Ok(Status::Ok) => EXIT_OK,
        Ok(Status::Failed) => EXIT_FAILED,
        // Output cut short by a reader that went away (`shmarray ls | head -1`).
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("shmarray: {}", e.message());
            e.exit_code()
        }
    })
}

/// The namespace of `--dir` (or the default directory) and `--huge-dir` (or the
/// default huge directories).
fn namespace(dir: Option<&PathBuf>, huge: &[PathBuf]) -> Result<Namespace, Error> {
    if huge.is_empty() {
        return match dir {
            Some(d) => Namespace::discover(d),
            None => Namespace::default_dir(),
        };
    }
    let mut ns = match dir {
        Some(d) => Namespace::at(d)?,
        None => Namespace::at(Namespace::default_dir()?.path())?,
    };
    for h in huge {
        ns = ns.with_huge_dir(h)?;
    }
    Ok(ns)
}

fn run(cli: Cli, out: &mut dyn Write) -> Result<Status, CliError> {
    if let Cmd::Completions(args) = &cli.cmd {
        // Needs no segment directory.
        return completions::run(args, out);
    }
    let ns = namespace(cli.dir.as_ref(), &cli.huge_dir)?;
    match cli.cmd {
        Cmd::Ls(args) => ls::run(&ns, &args, out),
        Cmd::Inspect(args) => inspect::run(&ns, &args, out),
        Cmd::Rm(args) => rm::run(&ns, &args, out),
        Cmd::Gc(args) => gc::run(&ns, &args, out),
        Cmd::Path(args) => inspect::run_path(&ns, &args, out),
        Cmd::Create(args) => create::run(&ns, &args, out),
        Cmd::Export(args) => export::run(&ns, &args, out),
        Cmd::Demo(args) => demo::run(&ns, &args, out),
        Cmd::Doctor(args) => doctor::run(&ns, &args, out),
        Cmd::Completions(args) => completions::run(&args, out),
        Cmd::Worker => shmarray::demo::serve(&ns)
            .map(|()| Status::Ok)
            .map_err(CliError::from),
    }
}
