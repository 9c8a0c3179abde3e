//! `maestro`: the command-line client of a Maestro server. It manages workflows and runs over
//! the HTTP API (plain http), follows runs live with a progress display, renders DAGs, and
//! validates definition files offline. Exit codes are documented in [`exit`] and in
//! `docs/cli.md`.

mod cli;
mod client;
mod commands;
mod exit;
mod follow;
mod output;
mod validate;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    // Usage errors exit with 2 (clap's own code), `--help` and `--version` with 0.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::PROTOCOL);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            failure.report();
            ExitCode::from(failure.code)
        }
    }
}
