//! The executor registry of the server, from its settings.

use maestro_dag::ExecutorRegistry;
use maestro_executors::{BuiltinOptions, CommandPolicy};

use crate::cli::ServeArgs;

/// The built-in executors with the server's settings applied: `command` runs only the programs
/// `MAESTRO_ALLOW_COMMANDS` allows, and `phase` is there when `MAESTRO_TEAM_ENGINE_URL` is set.
pub(crate) fn registry(args: &ServeArgs) -> anyhow::Result<ExecutorRegistry> {
    let mut options = BuiltinOptions::new().commands(CommandPolicy::parse(
        args.allow_commands.as_deref().unwrap_or(""),
    ));
    if let Some(url) = args.team_engine_url.as_deref().filter(|u| !u.is_empty()) {
        options = options.team_engine_url(url);
    }
    maestro_executors::builtin_registry_with(options)
        .map_err(|e| anyhow::anyhow!("MAESTRO_TEAM_ENGINE_URL: {e}"))
}
