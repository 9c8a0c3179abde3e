//! The command line: subcommands, flags and their environment fallbacks (DESIGN §6).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::exit;

/// Maestro, a durable DAG workflow engine.
#[derive(Debug, Parser)]
#[command(name = "maestro-server", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "MAESTRO_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Pretty
    )]
    pub log_format: LogFormat,

    /// What to do (`serve` when absent).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(DatabaseArgs),
    /// Check a workflow definition (JSON, or YAML by extension) and print its levels.
    Validate(ValidateArgs),
    /// Run a workflow definition to completion in process, on the in-memory store.
    Run(RunArgs),
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Settings of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MAESTRO_BIND", default_value = "0.0.0.0:8003")]
    pub bind: SocketAddr,

    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Bearer tokens accepted on `/api` routes, comma-separated (none: no authentication).
    #[arg(long, env = "MAESTRO_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<String>,

    /// Origins allowed by CORS, comma-separated (`*` for any; none by default).
    #[arg(long, env = "MAESTRO_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAESTRO_MAX_BODY_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: u64,

    /// Node attempts executing at once across all runs of this replica.
    #[arg(long, env = "MAESTRO_MAX_CONCURRENT_NODES", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_concurrent_nodes: u64,

    /// Lease time of a run, in seconds: a dead replica's runs are taken over after it.
    #[arg(long, env = "MAESTRO_LEASE_TTL_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_ttl_secs: u64,

    /// On SIGTERM, how long running nodes may take to finish, in seconds.
    #[arg(long, env = "MAESTRO_SHUTDOWN_GRACE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,

    /// Database connections in the pool.
    #[arg(long, env = "MAESTRO_DB_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub db_pool_size: u64,

    /// WebSocket connections per server (per run or workflow: a tenth of it, at least 1).
    #[arg(long, env = "MAESTRO_MAX_WEBSOCKETS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_websockets: u64,

    /// Base URL of the team engine that carries out `phase` nodes.
    #[arg(long, env = "MAESTRO_TEAM_ENGINE_URL")]
    pub team_engine_url: Option<String>,

    /// Programs the `command` executor may run: comma-separated names or paths, `*` for any;
    /// none (the default) disables it.
    #[arg(long, env = "MAESTRO_ALLOW_COMMANDS")]
    pub allow_commands: Option<String>,
}

/// The database to use.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `postgres://…` or `sqlite://PATH` (default `sqlite://maestro.db`; `USE_SQLITE=true` with
    /// `SQLITE_PATH` is honoured for compatibility when this is not set).
    #[arg(long, env = "DATABASE_URL", value_parser = parse_database_url)]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    /// The database URL to use.
    pub fn url(&self) -> String {
        if let Some(url) = &self.database_url {
            return url.clone();
        }
        let use_sqlite = std::env::var("USE_SQLITE")
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"));
        match std::env::var("SQLITE_PATH") {
            Ok(path) if use_sqlite && !path.is_empty() => format!("sqlite://{path}"),
            _ => "sqlite://maestro.db".to_string(),
        }
    }
}

/// Arguments of `validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// The definition file (`.yaml`/`.yml` is read as YAML, anything else as JSON).
    pub file: PathBuf,
}

/// Arguments of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The definition file (`.yaml`/`.yml` is read as YAML, anything else as JSON).
    pub file: PathBuf,

    /// The run's inputs, a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}", value_parser = parse_inputs)]
    pub inputs: Value,

    /// Approve every human_review node as soon as it waits (otherwise it is rejected, since
    /// nobody can review it in an embedded run).
    #[arg(long)]
    pub approve_all: bool,
}

/// `serve`'s flags, read from the environment alone (for a command line without a subcommand).
#[derive(Debug, Parser)]
#[command(name = "maestro-server")]
struct ServeFromEnv {
    #[command(flatten)]
    args: ServeArgs,
}

impl Cli {
    /// Parses a command line (the program name first). On `--help` or `--version` the text is
    /// printed and `Err(0)` returned; on a bad flag or setting the error, which names it, is
    /// printed and `Err(64)` returned.
    pub fn parse_args<I, T>(args: I) -> Result<Self, u8>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::try_parse_args(args).map_err(|e| {
            let _ = e.print();
            if let Some(hint) = environment_hint(&e) {
                eprintln!("{hint}");
            }
            exit_status(&e)
        })
    }

    /// [`Cli::parse_args`] without printing: a missing subcommand becomes `serve` with its
    /// settings from the environment.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut cli = Self::try_parse_from(args)?;
        if cli.command.is_none() {
            let serve = ServeFromEnv::try_parse_from(["maestro-server"])?;
            cli.command = Some(Command::Serve(serve.args));
        }
        Ok(cli)
    }
}

/// The exit status for a clap error: 0 for `--help` and `--version`, 64 (`EX_USAGE`) for a bad
/// flag or setting (clap itself would say 2).
pub fn exit_status(e: &clap::Error) -> u8 {
    if e.use_stderr() {
        exit::USAGE
    } else {
        exit::SUCCESS
    }
}

/// When a bad value may come from an environment variable (`MAESTRO_LOG_FORMAT=xml`), says so:
/// clap's message names only the flag.
fn environment_hint(e: &clap::Error) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};

    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let cli = Cli::command();
    let env = std::iter::once(&cli)
        .chain(cli.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(long))?
        .get_env()?;
    std::env::var_os(env).map(|_| {
        format!(
            "note: `--{long}` falls back to the environment variable {}, which is set",
            env.to_string_lossy()
        )
    })
}

fn parse_inputs(s: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("the inputs must be a JSON object, e.g. '{\"ticket\": 42}'".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

fn parse_database_url(s: &str) -> Result<String, String> {
    if s.starts_with("postgres://")
        || s.starts_with("postgresql://")
        || s.starts_with("sqlite://")
        || s == "sqlite::memory:"
    {
        Ok(s.to_string())
    } else {
        Err("expected `postgres://…` or `sqlite://PATH`".into())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_args([
            "maestro-server",
            "run",
            "wf.json",
            "--inputs",
            r#"{"a": 1}"#,
            "--approve-all",
        ])
        .unwrap();
        let Some(Command::Run(args)) = cli.command else {
            panic!("expected run, got {:?}", cli.command);
        };
        assert_eq!(args.file, PathBuf::from("wf.json"));
        assert_eq!(args.inputs, json!({"a": 1}));
        assert!(args.approve_all);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for args in [
            &["maestro-server", "run", "wf.json", "--inputs", "[1]"][..],
            &["maestro-server", "run", "wf.json", "--inputs", "{"],
            &[
                "maestro-server",
                "--log-format",
                "xml",
                "validate",
                "x.json",
            ],
            &["maestro-server", "validate"],
            &["maestro-server", "frobnicate"],
            &["maestro-server", "serve", "--bind", "nowhere"],
            &["maestro-server", "migrate", "--database-url", "mysql://x"],
        ] {
            let e = Cli::try_parse_args(args).unwrap_err();
            assert_eq!(exit_status(&e), exit::USAGE, "{args:?}: {e}");
        }
    }

    #[test]
    fn help_and_version_are_not_errors() {
        for flag in ["--help", "--version"] {
            let e = Cli::try_parse_args(["maestro-server", flag]).unwrap_err();
            assert_eq!(exit_status(&e), exit::SUCCESS, "{flag}");
        }
    }

    #[test]
    fn no_subcommand_means_serve() {
        let cli = Cli::try_parse_args(["maestro-server"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Serve(_))), "{cli:?}");
    }

    #[test]
    fn inputs_must_be_an_object() {
        assert_eq!(parse_inputs(r#"{"x": [1]}"#), Ok(json!({"x": [1]})));
        assert!(parse_inputs("3").unwrap_err().contains("JSON object"));
        assert!(parse_inputs("{").unwrap_err().starts_with("not valid JSON"));
    }
}
