//! The `command` executor with real processes (`/bin/sh`, `cat`, `false`): what the program
//! receives, how its output and exit status are read, the policy, and killing on timeout and
//! cancellation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maestro_dag::{
    Engine, MemoryStore, NodeContext, NodeDefinition, NodeError, NodeExecutor, RunStatus,
    StartOptions, Workflow, WorkflowDefinition,
};
use maestro_executors::{BuiltinOptions, CommandExecutor, CommandPolicy, builtin_registry_with};
use serde_json::{Value, json};

use crate::support::eventually;

/// Runs one attempt of a `command` node with `config` under `policy`.
async fn run(policy: CommandPolicy, config: Value) -> Result<Value, NodeError> {
    CommandExecutor::new(policy)
        .execute(NodeContext::for_node("job", config))
        .await
}

/// Runs `script` with `/bin/sh -c` under [`CommandPolicy::Any`].
async fn sh(script: &str) -> Result<Value, NodeError> {
    run(
        CommandPolicy::Any,
        json!({"program": "/bin/sh", "args": ["-c", script]}),
    )
    .await
}

#[track_caller]
fn assert_err(result: Result<Value, NodeError>, retryable: bool, parts: &[&str]) -> NodeError {
    let err = result.unwrap_err();
    assert_eq!(err.retryable, retryable, "{err}");
    for part in parts {
        assert!(err.message.contains(part), "{err} should contain {part:?}");
    }
    err
}

/// A fresh path under the system's temporary directory.
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "maestro-executors-{}-{name}-{}",
        std::process::id(),
        nanos()
    ))
}

/// Nanoseconds since the epoch, to keep temporary names apart.
fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Whether the process with this pid is still running, not gone or a zombie (Linux `/proc`).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// Starts `sh` writing its pid to a fresh file then sleeping 30 s, and returns the file.
fn sleeper(config: &mut Value) -> PathBuf {
    let pid_file = temp_path("sleeper.pid");
    config["program"] = json!("/bin/sh");
    config["args"] = json!([
        "-c",
        r#"echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 30"#,
        "sh",
        pid_file.to_str().unwrap()
    ]);
    pid_file
}

/// Waits for the pid file of [`sleeper`], reads it and removes it.
async fn sleeper_pid(pid_file: &std::path::Path) -> u32 {
    assert!(
        eventually(|| pid_file.exists()).await,
        "the script never started"
    );
    let pid = std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::fs::remove_file(pid_file).unwrap();
    pid
}

#[tokio::test]
async fn the_node_input_arrives_on_stdin() {
    let mut ctx = NodeContext::for_node("job", json!({"program": "cat"}));
    ctx.inputs = Arc::new(json!({"file": "data.csv"}));
    ctx.dependency_outputs = vec![("prep".into(), Arc::new(json!({"rows": 3})))];
    let expected = ctx.input_json();
    let out = CommandExecutor::new(CommandPolicy::Any)
        .execute(ctx)
        .await
        .unwrap();
    assert_eq!(out, expected, "cat echoes the input, a JSON object");
}

#[tokio::test]
async fn stdout_json_objects_are_the_output_and_text_is_wrapped() {
    assert_eq!(
        sh(r#"echo '{"rows": 42, "ok": true}'"#).await.unwrap(),
        json!({"rows": 42, "ok": true})
    );
    assert_eq!(
        sh("echo hello; echo world").await.unwrap(),
        json!({"stdout": "hello\nworld"})
    );
    assert_eq!(
        sh("echo '[1, 2]'").await.unwrap(),
        json!({"stdout": "[1, 2]"})
    );
    assert_eq!(sh("true").await.unwrap(), json!({"stdout": ""}));
}

#[tokio::test]
async fn args_and_env_reach_the_program() {
    let out = run(
        CommandPolicy::Any,
        json!({
            "program": "/bin/sh",
            "args": ["-c", r#"printf '%s|%s|%s|%s|%s' "$1" "$GREETING" "$MAESTRO_NODE_ID" "$MAESTRO_ATTEMPT" "$MAESTRO_IDEMPOTENCY_KEY""#, "sh", "two words"],
            "env": {"GREETING": "hi"},
        }),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"stdout": "two words|hi|job|1|run:job"}));
}

#[tokio::test]
async fn a_non_zero_exit_fails_retryably_with_the_tail_of_stderr() {
    assert_err(
        run(CommandPolicy::Any, json!({"program": "false"})).await,
        true,
        &["command: `false` failed (exit status: 1) with no output on stderr"],
    );
    assert_err(
        sh("echo partial; echo 'disk full' >&2; exit 3").await,
        true,
        &["command: `/bin/sh` failed (exit status: 3): disk full"],
    );
    let err = assert_err(
        sh("i=0; while [ $i -lt 3000 ]; do echo line$i >&2; i=$((i+1)); done; exit 1").await,
        true,
        &["line2999"],
    );
    assert!(!err.message.contains("line0\n"), "only the tail is kept");
    assert!(err.message.len() < 2300, "{} bytes", err.message.len());
}

#[tokio::test]
async fn programs_need_the_policy() {
    let cat = json!({"program": "cat"});
    assert_err(
        run(CommandPolicy::Disabled, cat.clone()).await,
        false,
        &[
            "running programs is disabled",
            "MAESTRO_ALLOW_COMMANDS",
            "`cat`",
        ],
    );
    let only_cat = CommandPolicy::allowlist(["cat"]);
    assert_eq!(run(only_cat.clone(), cat).await.unwrap()["node_id"], "job");
    assert_err(
        run(only_cat.clone(), json!({"program": "/bin/cat"})).await,
        false,
        &["`/bin/cat` is not allowed by MAESTRO_ALLOW_COMMANDS (allowed: cat)"],
    );
    assert_err(
        run(
            only_cat.clone(),
            json!({"program": "sh", "args": ["-c", "true"]}),
        )
        .await,
        false,
        &["`sh` is not allowed"],
    );
    assert_err(
        run(
            only_cat,
            json!({"program": "cat", "env": {"PATH": "/tmp/evil"}}),
        )
        .await,
        false,
        &["`config.env.PATH` may not be set"],
    );
}

#[tokio::test]
async fn a_missing_program_or_bad_config_fails_permanently() {
    assert_err(
        run(
            CommandPolicy::Any,
            json!({"program": "/nonexistent/maestro-test-program"}),
        )
        .await,
        false,
        &["cannot run `/nonexistent/maestro-test-program`"],
    );
    assert_err(
        run(CommandPolicy::Any, json!({})).await,
        false,
        &["command: `config.program` is required"],
    );
    assert_err(
        run(CommandPolicy::Any, json!({"program": "cat", "args": "-n"})).await,
        false,
        &["`config.args` must be an array of strings"],
    );
}

#[tokio::test]
async fn a_timeout_kills_the_child() {
    let mut config = json!({"timeout_ms": 300});
    let pid_file = sleeper(&mut config);
    let started = Instant::now();
    let result = run(CommandPolicy::Any, config).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_err(
        result,
        true,
        &["command: `/bin/sh` timed out after 300 ms and was killed"],
    );
    let pid = sleeper_pid(&pid_file).await;
    assert!(!alive(pid), "process {pid} survived the timeout");
}

#[tokio::test]
async fn cancellation_kills_the_child() {
    let mut config = json!({});
    let pid_file = sleeper(&mut config);
    let ctx = NodeContext::for_node("job", config);
    let token = ctx.cancellation.clone();
    let attempt =
        tokio::spawn(async move { CommandExecutor::new(CommandPolicy::Any).execute(ctx).await });
    let pid = sleeper_pid(&pid_file).await;
    assert!(alive(pid));
    token.cancel();
    assert_err(
        attempt.await.unwrap(),
        true,
        &["`/bin/sh` cancelled and killed"],
    );
    assert!(!alive(pid), "process {pid} survived cancellation");
}

#[tokio::test]
async fn the_nodes_timeout_in_the_engine_kills_the_child() {
    let mut config = json!({});
    let pid_file = sleeper(&mut config);
    let mut node = NodeDefinition::new("job", "command");
    node.config = config;
    node.timeout_ms = Some(300);
    let registry =
        builtin_registry_with(BuiltinOptions::new().commands(CommandPolicy::Any)).unwrap();
    let workflow =
        Workflow::compile(WorkflowDefinition::new("jobs", vec![node]), Some(&registry)).unwrap();
    let engine = Engine::new(Arc::new(MemoryStore::new()), registry);
    let run = engine
        .start(Arc::new(workflow), json!({}), StartOptions::default())
        .await
        .unwrap();
    let pid = sleeper_pid(&pid_file).await;
    let outcome = run.wait().await;
    assert_eq!(outcome.status, RunStatus::Failed, "{outcome:?}");
    assert!(
        eventually(|| !alive(pid)).await,
        "process {pid} survived the node's timeout"
    );
}

#[tokio::test]
async fn a_program_that_ignores_stdin_is_fine() {
    // A large input the program never reads: the closed pipe is not an error.
    let mut ctx = NodeContext::for_node(
        "job",
        json!({"program": "/bin/sh", "args": ["-c", "echo '{\"ignored\": true}'"]}),
    );
    ctx.inputs = Arc::new(json!({"big": "x".repeat(1 << 20)}));
    let out = CommandExecutor::new(CommandPolicy::Any)
        .execute(ctx)
        .await
        .unwrap();
    assert_eq!(out, json!({"ignored": true}));
}

#[tokio::test]
async fn stdout_is_size_limited() {
    let err = CommandExecutor::new(CommandPolicy::Any)
        .with_max_stdout_bytes(1000)
        .execute(NodeContext::for_node(
            "job",
            json!({"program": "/bin/sh", "args": ["-c", "yes"]}),
        ))
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.message, "command: stdout exceeds 1000 bytes");
}
