//! The command line of `maestro`: global flags (with their environment fallbacks) and the
//! subcommands, as clap derive types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::exit;

/// Maestro's command-line client: workflows, runs, events and graphs on a Maestro server,
/// over its HTTP API (plain http only), and offline validation of definition files.
#[derive(Debug, Parser)]
#[command(name = "maestro", version, about, long_about = None, after_help = exit::HELP)]
pub(crate) struct Cli {
    /// The server's base URL (plain http:// only; no TLS).
    #[arg(
        long,
        global = true,
        env = "MAESTRO_SERVER",
        display_order = 100,
        default_value = "http://127.0.0.1:8003",
        value_name = "URL"
    )]
    pub(crate) server: String,

    /// API token, sent as `Authorization: Bearer <token>` (servers with MAESTRO_API_TOKENS).
    #[arg(
        long,
        global = true,
        env = "MAESTRO_TOKEN",
        display_order = 101,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,

    /// Output format: readable tables, or exactly one JSON document on stdout (`events`: one
    /// event per line).
    #[arg(long, global = true, value_enum, default_value_t = Output::Table, display_order = 102)]
    pub(crate) output: Output,

    /// Seconds to wait for each answer of the server.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS", display_order = 103,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) timeout: u64,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Readable text and tables.
    Table,
    /// JSON on stdout, nothing else there.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List, read, create (apply) and delete workflow definitions.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Check a definition file offline (JSON, or YAML by extension); no server needed.
    Validate(ValidateArgs),
    /// Start a run of a workflow, optionally watching it to the end.
    Run(RunArgs),
    /// List, read and control runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Print a run's events, or follow them live.
    Events(EventsArgs),
    /// Print the server's rendering of a workflow's DAG.
    Graph(GraphArgs),
}

/// `maestro workflows …`
#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowsCommand {
    /// List workflows (the latest version of each).
    List(PageArgs),
    /// Show a workflow's definition.
    Get {
        /// The workflow id.
        id: String,
        /// A version (default: the latest).
        #[arg(long)]
        version: Option<u64>,
    },
    /// Create a workflow or a new version of it from a JSON or YAML file.
    Apply {
        /// The definition file (`.yaml`/`.yml` is read as YAML, anything else as JSON).
        file: PathBuf,
    },
    /// Delete a workflow and all its versions.
    Delete {
        /// The workflow id.
        id: String,
    },
}

/// Paging of list commands.
#[derive(Debug, Clone, Args)]
pub(crate) struct PageArgs {
    /// Items per page (1–500).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=500))]
    pub(crate) limit: u64,
    /// Items to skip.
    #[arg(long, default_value_t = 0)]
    pub(crate) offset: u64,
}

/// `maestro validate FILE`
#[derive(Debug, Clone, Args)]
pub(crate) struct ValidateArgs {
    /// The definition file (`.yaml`/`.yml` is read as YAML, anything else as JSON).
    pub(crate) file: PathBuf,
    /// An executor key the target server has besides the built-in ones (repeatable).
    #[arg(long = "executor", value_name = "KEY")]
    pub(crate) executors: Vec<String>,
}

/// `maestro run WORKFLOW`
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// The workflow id.
    pub(crate) workflow: String,
    /// The run's inputs, a JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_object, conflicts_with = "inputs_file")]
    pub(crate) inputs: Option<Value>,
    /// A file holding the run's inputs as a JSON object.
    #[arg(long, value_name = "FILE")]
    pub(crate) inputs_file: Option<PathBuf>,
    /// Follow the run live to its end, then print a summary; exits 1 unless it completed.
    #[arg(long)]
    pub(crate) watch: bool,
    /// Sent as `Idempotency-Key`: the same key again returns the same run.
    #[arg(long, value_name = "KEY")]
    pub(crate) idempotency_key: Option<String>,
}

/// `maestro runs …`
#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs of this workflow.
        #[arg(long, value_name = "ID")]
        workflow: Option<String>,
        /// Only runs with this status (pending, running, paused, completed, failed, cancelled).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Paging.
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a run with every node's status, attempts, duration and error.
    Get {
        /// The run id.
        run: String,
    },
    /// Cancel a run (running attempts are cancelled).
    Cancel {
        /// The run id.
        run: String,
    },
    /// Pause a run (running nodes finish, no new ones start).
    Pause {
        /// The run id.
        run: String,
    },
    /// Resume a paused run.
    Resume {
        /// The run id.
        run: String,
    },
    /// Run a failed or cancelled run again from its failed nodes.
    Retry {
        /// The run id.
        run: String,
    },
    /// Approve a human_review node that waits for approval.
    Approve {
        /// The run id.
        run: String,
        /// The node id.
        node: String,
        /// The node's output, a JSON object (named so that it does not clash with the global
        /// `--output`).
        #[arg(long, value_name = "JSON", value_parser = parse_object)]
        node_output: Option<Value>,
    },
    /// Reject a human_review node that waits for approval (the node fails).
    Reject {
        /// The run id.
        run: String,
        /// The node id.
        node: String,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

/// `maestro events RUN`
#[derive(Debug, Clone, Args)]
pub(crate) struct EventsArgs {
    /// The run id.
    pub(crate) run: String,
    /// Keep streaming live events until the run ends; exits 1 unless it completed.
    #[arg(long)]
    pub(crate) follow: bool,
    /// Only events after this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub(crate) after: u64,
}

/// `maestro graph WORKFLOW`
#[derive(Debug, Clone, Args)]
pub(crate) struct GraphArgs {
    /// The workflow id.
    pub(crate) workflow: String,
    /// The rendering (printed as the server sends it).
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub(crate) format: GraphFormat,
    /// A version (default: the latest).
    #[arg(long)]
    pub(crate) version: Option<u64>,
}

/// Graph renderings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
    /// An SVG picture (the dashboard's layered layout).
    Svg,
    /// Nodes, edges and levels as JSON.
    Json,
}

impl GraphFormat {
    /// The `format` query value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Dot => "dot",
            Self::Mermaid => "mermaid",
            Self::Svg => "svg",
            Self::Json => "json",
        }
    }
}

/// A JSON object given on the command line.
fn parse_object(s: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("expected a JSON object, like '{\"key\": \"value\"}'".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn inputs_must_be_objects() {
        assert!(parse_object("{\"a\": 1}").is_ok());
        assert!(parse_object("[1]").is_err());
        assert!(parse_object("{").is_err());
    }
}
