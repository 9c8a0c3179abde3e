//! The `maestro-server` binary's logic, kept in a library so that tests can call it in process.
//!
//! Steps, in order (each explicit, as in a thin `main`): parse flags and environment (a bad
//! setting exits with [`exit::USAGE`]), initialise logging to stderr, then run the subcommand:
//!
//! - `validate FILE`: parse and validate a definition; print its levels, or every problem.
//! - `run FILE [--inputs JSON] [--approve-all]`: run a definition to completion on the in-memory
//!   store with the built-in executors, with a progress bar, then print a table of node results.
//! - `serve` (the default): the HTTP API over PostgreSQL or SQLite, with probes, leases across
//!   replicas and a graceful drain on SIGTERM; `migrate`: apply the migrations and exit.

mod cli;
mod definition;
mod executors;
mod logging;
mod run;
mod serve;

use std::ffi::OsString;
use std::io::Write;

pub use cli::{
    Cli, Command, DatabaseArgs, LogFormat, RunArgs, ServeArgs, ValidateArgs, exit_status,
};

/// Process exit statuses.
pub mod exit {
    /// The command did what was asked (a valid definition, a completed run).
    pub const SUCCESS: u8 = 0;
    /// The command ran and the answer is "no": an invalid definition, a failed or cancelled run,
    /// an unreadable file.
    pub const FAILURE: u8 = 1;
    /// The subcommand is not available in this build.
    pub const UNAVAILABLE: u8 = 2;
    /// Bad flags or configuration (`EX_USAGE` of sysexits.h).
    pub const USAGE: u8 = 64;
}

/// Parses `args` (the program name first) and runs the command, writing results to stdout and
/// diagnostics, logs and progress to stderr. Returns the process exit status.
pub fn main_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::parse_args(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Err(e) = logging::init(cli.log_format) {
        eprintln!("maestro-server: {e}");
        return exit::USAGE;
    }
    let mut stdout = std::io::stdout().lock();
    match run(cli, &mut stdout) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("maestro-server: {e:#}");
            exit::FAILURE
        }
    }
}

/// Runs a parsed command line (logging must be initialised by the caller, if wanted), writing
/// results to `out`. Returns the exit status; `Err` is an unexpected failure (exit 1).
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    // `Cli::parse_args` turns a missing subcommand into `serve` with its settings.
    let Some(command) = cli.command else {
        anyhow::bail!("no subcommand");
    };
    match command {
        Command::Serve(args) => serve::serve_command(args),
        Command::Migrate(db) => serve::migrate_command(&db, out),
        Command::Validate(args) => definition::validate_command(&args, out),
        Command::Run(args) => run::run_command(args, out),
    }
}

pub use serve::serve;
