//! The `command` executor: runs a local program with the node input (DESIGN §3) on its stdin
//! and takes what it prints as the node's output. Off unless a [`CommandPolicy`] allows it.
//!
//! Config: `{program, args, env, timeout_ms}`.
//!
//! - `program` (required): a name looked up in `PATH` or a path. It must be allowed by the
//!   executor's [`CommandPolicy`]; otherwise the node fails permanently with a message naming
//!   the server setting `MAESTRO_ALLOW_COMMANDS`.
//! - `args`: an array of strings, passed as they are (no shell is involved unless the program
//!   is one).
//! - `env`: an object of strings added to the environment the child inherits from the process.
//!   The child also gets `MAESTRO_RUN_ID`, `MAESTRO_WORKFLOW_ID`, `MAESTRO_NODE_ID`,
//!   `MAESTRO_ATTEMPT` and `MAESTRO_IDEMPOTENCY_KEY`.
//! - `timeout_ms`: kills the program after this long (default: no limit of its own; the node's
//!   `timeout_ms` and run cancellation kill it too).
//!
//! The node input JSON is written to stdin, which is then closed. When the program exits with
//! status 0, its stdout is the output: a JSON object as it is, anything else as
//! `{"stdout": "<text>"}` (trailing newlines removed). A non-zero exit or a death by signal
//! fails the attempt (retryably), with the tail of stderr in the message. A program that cannot
//! be found or executed fails permanently. Stdout is limited to 10 MiB (the attempt fails
//! permanently beyond it); of stderr only the last 2 KiB are kept.
//!
//! On timeout or cancellation the child is killed (`SIGKILL`) and reaped; if the executor's
//! future is dropped instead, tokio's `kill_on_drop` kills it. Only the child itself is killed:
//! programs that start their own background processes must clean them up, and a background
//! process that keeps stdout open keeps the attempt waiting until it closes (as
//! [`std::process::Command::output`] would).
//!
//! # Security
//!
//! Whoever can submit a workflow chooses `args`, `env` and stdin, so allowing `sh`, `python`
//! or any other interpreter allows arbitrary code. An allowlist restricts *which* program
//! runs, not what it does. Under an allowlist, `env` may not set `PATH` (which would change
//! what a bare name resolves to) nor the dynamic loader's `LD_*`/`DYLD_*` variables.

use std::fmt;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use maestro_dag::{NodeContext, NodeError, NodeExecutor};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tracing::debug;

use crate::config::Config;

/// The server setting that chooses the [`CommandPolicy`], named in error messages.
pub const ALLOW_COMMANDS_SETTING: &str = "MAESTRO_ALLOW_COMMANDS";

/// Which programs the `command` executor may run. Off ([`CommandPolicy::Disabled`]) unless
/// the embedder or the server's configuration says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CommandPolicy {
    /// No program may run (the default).
    #[default]
    Disabled,
    /// Any program may run.
    Any,
    /// Only these programs. An entry matches a node's `program` when the two are the same
    /// string: `cat` allows `"program": "cat"` (looked up in `PATH`) but not `/bin/cat`, and
    /// `/bin/cat` allows only `/bin/cat`. An empty list allows nothing.
    Allowlist(Vec<String>),
}

impl CommandPolicy {
    /// An allowlist of these programs.
    pub fn allowlist<I, S>(programs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Allowlist(programs.into_iter().map(Into::into).collect())
    }

    /// Reads the policy from the text of a setting such as `MAESTRO_ALLOW_COMMANDS`:
    /// empty, `off`, `none`, `false` or `0` disable commands; `*`, `any` or `all` allow any
    /// program; anything else is a comma-separated list of programs (entries trimmed, empty
    /// entries ignored). Keywords are case-insensitive.
    pub fn parse(setting: &str) -> Self {
        let trimmed = setting.trim();
        match trimmed.to_ascii_lowercase().as_str() {
            "" | "off" | "none" | "false" | "0" => Self::Disabled,
            "*" | "any" | "all" => Self::Any,
            _ => Self::allowlist(trimmed.split(',').map(str::trim).filter(|p| !p.is_empty())),
        }
    }

    /// Whether `program` may run.
    pub fn allows(&self, program: &str) -> bool {
        match self {
            Self::Disabled => false,
            Self::Any => true,
            Self::Allowlist(allowed) => allowed.iter().any(|a| a == program),
        }
    }

    /// Why `program` may not run, naming the setting; `None` when it may.
    fn refusal(&self, program: &str) -> Option<String> {
        match self {
            _ if self.allows(program) => None,
            Self::Disabled | Self::Any => Some(format!(
                "command: running programs is disabled; set {ALLOW_COMMANDS_SETTING} to allow \
                 `{program}`"
            )),
            Self::Allowlist(allowed) => Some(format!(
                "command: `{program}` is not allowed by {ALLOW_COMMANDS_SETTING} (allowed: {})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )),
        }
    }
}

impl FromStr for CommandPolicy {
    type Err = std::convert::Infallible;

    /// [`CommandPolicy::parse`]; never fails.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

impl fmt::Display for CommandPolicy {
    /// The policy in the form [`CommandPolicy::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled => f.write_str("off"),
            Self::Any => f.write_str("*"),
            Self::Allowlist(allowed) => f.write_str(&allowed.join(",")),
        }
    }
}

/// Runs allowed programs with the node input on stdin (see the [module documentation](self)
/// for the whole contract).
#[derive(Debug, Clone, Default)]
pub struct CommandExecutor {
    policy: CommandPolicy,
    max_stdout_bytes: usize,
}

/// How much of stderr is kept for the error message.
const STDERR_TAIL_BYTES: usize = 2048;

/// Why running the program stopped short.
enum Stop {
    TimedOut(Duration),
    Cancelled,
    Failed(NodeError),
}

impl CommandExecutor {
    /// Its registry key.
    pub const KEY: &'static str = "command";

    /// The default limit on stdout: 10 MiB.
    pub const DEFAULT_MAX_STDOUT_BYTES: usize = 10 * 1024 * 1024;

    /// An executor running the programs `policy` allows.
    pub fn new(policy: CommandPolicy) -> Self {
        Self {
            policy,
            max_stdout_bytes: Self::DEFAULT_MAX_STDOUT_BYTES,
        }
    }

    /// Sets the largest stdout accepted, in bytes.
    pub fn with_max_stdout_bytes(mut self, limit: usize) -> Self {
        self.max_stdout_bytes = limit;
        self
    }

    /// The policy it runs under.
    pub fn policy(&self) -> &CommandPolicy {
        &self.policy
    }

    /// Builds the command from the config, checking the policy.
    fn command(&self, ctx: &NodeContext) -> Result<(Command, String, Option<Duration>), NodeError> {
        let config = Config::new(Self::KEY, &ctx.node_config)?;
        let program = config.required_str("program")?;
        if let Some(refusal) = self.policy.refusal(program) {
            return Err(NodeError::permanent(refusal));
        }
        let args = config.strings("args")?;
        let env = config.string_map("env")?;
        let timeout = config.timeout_ms("timeout_ms")?;
        if matches!(self.policy, CommandPolicy::Allowlist(_))
            && let Some((name, _)) = env.iter().find(|(name, _)| is_loader_variable(name))
        {
            return Err(NodeError::permanent(format!(
                "command: `config.env.{name}` may not be set while {ALLOW_COMMANDS_SETTING} is \
                 an allowlist (it would change which code runs)"
            )));
        }
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env)
            .env("MAESTRO_RUN_ID", &*ctx.run_id)
            .env("MAESTRO_WORKFLOW_ID", &*ctx.workflow_id)
            .env("MAESTRO_NODE_ID", &*ctx.node_id)
            .env("MAESTRO_ATTEMPT", ctx.attempt.to_string())
            .env("MAESTRO_IDEMPOTENCY_KEY", ctx.idempotency_key())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Ok((command, program.to_string(), timeout))
    }
}

/// `PATH` and the dynamic loader's variables, which would let an allowlisted program run
/// other code.
fn is_loader_variable(name: &str) -> bool {
    name == "PATH" || name.starts_with("LD_") || name.starts_with("DYLD_")
}

#[async_trait]
impl NodeExecutor for CommandExecutor {
    async fn execute(&self, ctx: NodeContext) -> Result<Value, NodeError> {
        let (mut command, program, timeout) = self.command(&ctx)?;
        let input = serde_json::to_vec(&ctx.input_json())
            .map_err(|e| NodeError::permanent(format!("command: cannot encode the input: {e}")))?;
        let mut child = command.spawn().map_err(|e| {
            let message = format!("command: cannot run `{program}`: {e}");
            match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                    NodeError::permanent(message)
                }
                _ => NodeError::new(message),
            }
        })?;
        debug!(run_id = %ctx.run_id, node = %ctx.node_id, program, pid = child.id(), "command started");
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let max_stdout = self.max_stdout_bytes;

        let outcome = {
            let feed = async move {
                if let Some(mut stdin) = stdin {
                    // A program that does not read its input closes the pipe: not an error.
                    if let Err(e) = stdin.write_all(&input).await {
                        debug!(error = %e, "command: stdin not fully written");
                    }
                }
                Ok::<(), Stop>(())
            };
            let out = async {
                match stdout {
                    Some(pipe) => read_capped(pipe, max_stdout).await,
                    None => Ok(Vec::new()),
                }
            };
            let err = async {
                match stderr {
                    Some(pipe) => Ok(read_tail(pipe, STDERR_TAIL_BYTES).await),
                    None => Ok(Vec::new()),
                }
            };
            let wait = async {
                child.wait().await.map_err(|e| {
                    Stop::Failed(NodeError::new(format!(
                        "command: waiting for `{program}`: {e}"
                    )))
                })
            };
            let run = async {
                tokio::try_join!(feed, out, err, wait)
                    .map(|((), out, err, status)| (out, err, status))
            };
            let deadline = async {
                match timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = run => result,
                () = deadline => Err(Stop::TimedOut(timeout.unwrap_or_default())),
                () = ctx.cancellation.cancelled() => Err(Stop::Cancelled),
            }
        };

        let (stdout, stderr, status) = match outcome {
            Ok(done) => done,
            Err(stop) => {
                // Kill and reap; the child may have exited already.
                if let Err(e) = child.kill().await {
                    debug!(error = %e, "command: kill failed");
                }
                return Err(match stop {
                    Stop::TimedOut(t) => NodeError::new(format!(
                        "command: `{program}` timed out after {} ms and was killed",
                        t.as_millis()
                    )),
                    Stop::Cancelled => {
                        NodeError::new(format!("command: `{program}` cancelled and killed"))
                    }
                    Stop::Failed(e) => e,
                });
            }
        };
        if !status.success() {
            return Err(NodeError::new(failure_message(&program, status, &stderr)));
        }
        Ok(output_of(&stdout))
    }
}

/// `command: `prog` failed (exit status: 3): <stderr tail>`.
fn failure_message(program: &str, status: ExitStatus, stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        format!("command: `{program}` failed ({status}) with no output on stderr")
    } else {
        format!("command: `{program}` failed ({status}): {stderr}")
    }
}

/// Stdout as a JSON object, or `{"stdout": text}`.
fn output_of(stdout: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(stdout) {
        Ok(object @ Value::Object(_)) => object,
        _ => {
            let text = String::from_utf8_lossy(stdout);
            json!({ "stdout": text.trim_end_matches(['\n', '\r']) })
        }
    }
}

/// Reads a pipe to its end, failing permanently once it passes `limit` bytes.
async fn read_capped(pipe: impl AsyncRead + Unpin, limit: usize) -> Result<Vec<u8>, Stop> {
    let mut buf = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    pipe.take(cap)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| Stop::Failed(NodeError::new(format!("command: reading stdout: {e}"))))?;
    if buf.len() > limit {
        return Err(Stop::Failed(NodeError::permanent(format!(
            "command: stdout exceeds {limit} bytes"
        ))));
    }
    Ok(buf)
}

/// Reads a pipe to its end, keeping the last `keep` bytes (read errors end the reading).
async fn read_tail(mut pipe: impl AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut tail = Vec::with_capacity(keep);
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > keep {
                    tail.drain(..tail.len() - keep);
                }
            }
        }
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_from_the_setting() {
        for (setting, policy) in [
            ("", CommandPolicy::Disabled),
            (" off ", CommandPolicy::Disabled),
            ("0", CommandPolicy::Disabled),
            ("*", CommandPolicy::Any),
            ("ANY", CommandPolicy::Any),
            (
                "cat, /usr/bin/jq,,",
                CommandPolicy::allowlist(["cat", "/usr/bin/jq"]),
            ),
        ] {
            assert_eq!(CommandPolicy::parse(setting), policy, "{setting:?}");
            assert_eq!(
                CommandPolicy::parse(&policy.to_string()),
                policy,
                "round trip of {setting:?}"
            );
        }
    }

    #[test]
    fn an_allowlist_matches_the_program_exactly() {
        let policy = CommandPolicy::allowlist(["cat", "/usr/bin/jq"]);
        assert!(policy.allows("cat"));
        assert!(policy.allows("/usr/bin/jq"));
        assert!(!policy.allows("/bin/cat"));
        assert!(!policy.allows("/tmp/evil/cat"));
        assert!(!policy.allows("jq"));
        assert!(!CommandPolicy::Disabled.allows("cat"));
        assert!(CommandPolicy::Any.allows("anything"));
        assert!(!CommandPolicy::allowlist::<[&str; 0], &str>([]).allows(""));
    }

    #[test]
    fn stdout_is_an_object_or_text() {
        assert_eq!(output_of(b"{\"a\": 1}\n"), json!({"a": 1}));
        assert_eq!(output_of(b"hello\n"), json!({"stdout": "hello"}));
        assert_eq!(output_of(b"[1, 2]"), json!({"stdout": "[1, 2]"}));
        assert_eq!(output_of(b""), json!({"stdout": ""}));
    }

    #[tokio::test]
    async fn the_tail_of_a_stream_is_kept() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let tail = read_tail(&data[..], 100).await;
        assert_eq!(tail, &data[data.len() - 100..]);
        assert_eq!(read_tail(&b"short"[..], 100).await, b"short");
    }

    #[tokio::test]
    async fn stdout_over_the_limit_is_refused() {
        assert_eq!(read_capped(&b"12345"[..], 5).await.ok().unwrap(), b"12345");
        match read_capped(&b"123456"[..], 5).await {
            Err(Stop::Failed(e)) => {
                assert!(!e.retryable);
                assert_eq!(e.message, "command: stdout exceeds 5 bytes");
            }
            _ => panic!("expected a refusal"),
        }
    }
}
