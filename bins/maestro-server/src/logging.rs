//! Logging to stderr through `tracing-subscriber`: `MAESTRO_LOG_FORMAT` picks JSON or
//! human-readable lines, `RUST_LOG` the level (default `warn` for the CLI subcommands).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. Fails on an invalid `RUST_LOG`; a subscriber installed
/// earlier (by a test, say) is left in place.
pub(crate) fn init(format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env()
        .map_err(|e| format!("invalid RUST_LOG: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    // Already installed: keep the first one.
    let _ = result;
    Ok(())
}
