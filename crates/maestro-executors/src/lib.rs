//! Maestro's built-in node executors (DESIGN §4), ready to register in an
//! [`ExecutorRegistry`]:
//!
//! - [`noop`]: output `{}`; polled inline because it never blocks.
//! - [`sleep`]: `{duration_ms}` → `{"slept_ms": N}`; stops early when the attempt is cancelled.
//! - [`fail`]: `{message, times}`: fails the first `times` attempts (every attempt when absent),
//!   then succeeds with `{}`; for exercising retries.
//! - [`http`]: `{url, method, headers, timeout_ms}`: sends the node input as a JSON body and
//!   outputs the JSON object answered. Plain `http://` only: this crate has no TLS stack.
//! - [`command`]: `{program, args, env, timeout_ms}`: runs a program with the node input on
//!   stdin and outputs its stdout; only programs allowed by a [`CommandPolicy`] (none by
//!   default).
//! - [`phase`]: [`HttpTeamEngine`], the team engine of `phase` nodes over HTTP, and
//!   [`phase_executor`] wiring it into `maestro-phase`'s [`maestro_phase::PhaseNodeExecutor`].
//!
//! [`builtin_registry`] registers `noop`, `sleep`, `fail`, `http` and `command` (disabled);
//! [`builtin_registry_with`] takes [`BuiltinOptions`] to allow commands and add `phase`.
//!
//! A node whose `config` has the wrong shape fails permanently (no retry can fix it) with a
//! message naming the field, e.g. ``sleep: `config.duration_ms` must be a non-negative integer,
//! got a string``.
//!
//! This crate reads no environment variables: the server maps its settings
//! (`MAESTRO_ALLOW_COMMANDS`, `MAESTRO_TEAM_ENGINE_URL`) to [`BuiltinOptions`].
//!
//! ```
//! use maestro_executors::{BuiltinOptions, CommandPolicy, builtin_registry_with};
//!
//! let registry = maestro_executors::builtin_registry();
//! assert!(registry.get("sleep").is_some() && registry.get("phase").is_none());
//!
//! let registry = builtin_registry_with(
//!     BuiltinOptions::new()
//!         .commands(CommandPolicy::parse("jq,cat"))
//!         .team_engine_url("http://team-engine:8080"),
//! )
//! .unwrap();
//! assert!(registry.get("phase").is_some());
//! ```

mod client;
pub mod command;
mod config;
pub mod fail;
pub mod http;
pub mod noop;
pub mod phase;
pub mod sleep;

use maestro_dag::ExecutorRegistry;
use maestro_phase::templates::PHASE_EXECUTOR;

pub use client::UrlError;
pub use command::{ALLOW_COMMANDS_SETTING, CommandExecutor, CommandPolicy};
pub use fail::FailExecutor;
pub use http::HttpExecutor;
pub use noop::NoopExecutor;
pub use phase::{HttpTeamEngine, phase_executor};
pub use sleep::SleepExecutor;

/// The keys of the executors [`builtin_registry`] registers, in documentation order.
/// [`builtin_registry_with`] adds [`PHASE_KEY`] when given a team engine.
pub const BUILTIN_KEYS: [&str; 5] = [
    NoopExecutor::KEY,
    SleepExecutor::KEY,
    FailExecutor::KEY,
    HttpExecutor::KEY,
    CommandExecutor::KEY,
];

/// The key of the `phase` executor.
pub const PHASE_KEY: &str = PHASE_EXECUTOR;

/// What [`builtin_registry_with`] sets up beyond the executors that need no settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuiltinOptions {
    /// Which programs the `command` executor may run (default: none; the server's
    /// `MAESTRO_ALLOW_COMMANDS`).
    pub commands: CommandPolicy,
    /// The team engine's base URL (the server's `MAESTRO_TEAM_ENGINE_URL`); without one, no
    /// `phase` executor is registered.
    pub team_engine_url: Option<String>,
}

impl BuiltinOptions {
    /// The defaults: commands disabled, no team engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the command policy.
    pub fn commands(mut self, policy: CommandPolicy) -> Self {
        self.commands = policy;
        self
    }

    /// Sets the team engine's base URL.
    pub fn team_engine_url(mut self, url: impl Into<String>) -> Self {
        self.team_engine_url = Some(url.into());
        self
    }
}

/// A registry holding the built-in executors that need no settings: `noop`, `sleep`, `fail`,
/// `http`, and `command` with commands disabled (a `command` node fails permanently, naming
/// `MAESTRO_ALLOW_COMMANDS`). No `phase` executor.
///
/// Callers add their own executors to it (`register` replaces a built-in of the same key).
pub fn builtin_registry() -> ExecutorRegistry {
    ExecutorRegistry::new()
        .with(NoopExecutor::KEY, NoopExecutor)
        .with(SleepExecutor::KEY, SleepExecutor)
        .with(FailExecutor::KEY, FailExecutor)
        .with(HttpExecutor::KEY, HttpExecutor::new())
        .with(
            CommandExecutor::KEY,
            CommandExecutor::new(CommandPolicy::Disabled),
        )
}

/// [`builtin_registry`] with `command` under `options.commands` and, when
/// `options.team_engine_url` is set, `phase` ([`phase_executor`]) calling that team engine.
///
/// Fails when the team engine URL is not an absolute `http://` URL.
pub fn builtin_registry_with(options: BuiltinOptions) -> Result<ExecutorRegistry, UrlError> {
    let mut registry =
        builtin_registry().with(CommandExecutor::KEY, CommandExecutor::new(options.commands));
    if let Some(url) = &options.team_engine_url {
        registry.register(PHASE_KEY, phase_executor(url)?);
    }
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use maestro_dag::{
        Engine, MemoryStore, NodeDefinition, NodeStatus, RetryPolicy, RunStatus, RunStore,
        StartOptions, Workflow, WorkflowDefinition,
    };
    use serde_json::json;

    use super::*;

    #[test]
    fn the_registry_holds_every_builtin() {
        let registry = builtin_registry();
        let mut keys: Vec<&str> = registry.keys().collect();
        keys.sort_unstable();
        let mut want = BUILTIN_KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
        assert!(registry.get("noop").unwrap().runs_inline());
        assert!(!registry.get("sleep").unwrap().runs_inline());
    }

    #[test]
    fn options_add_the_phase_executor_and_check_its_url() {
        let registry = builtin_registry_with(BuiltinOptions::new()).unwrap();
        assert_eq!(registry.len(), BUILTIN_KEYS.len());
        let registry =
            builtin_registry_with(BuiltinOptions::new().team_engine_url("http://team:1")).unwrap();
        assert_eq!(registry.len(), BUILTIN_KEYS.len() + 1);
        assert!(registry.get(PHASE_KEY).is_some());
        let err = builtin_registry_with(BuiltinOptions::new().team_engine_url("https://team"))
            .unwrap_err();
        assert_eq!(err.url(), "https://team");
    }

    #[tokio::test]
    async fn an_engine_runs_the_builtins_with_retries() {
        let mut flaky = NodeDefinition::new("flaky", "fail");
        flaky.config = json!({"message": "not yet", "times": 2});
        flaky.retry = RetryPolicy::fixed(3, 1);
        let mut nap = NodeDefinition::new("nap", "sleep").after(["flaky"]);
        nap.config = json!({"duration_ms": 1});
        let def = WorkflowDefinition::new(
            "builtins",
            vec![
                NodeDefinition::new("start", "noop"),
                flaky.after(["start"]),
                nap,
            ],
        );
        let registry = builtin_registry();
        let workflow = Arc::new(Workflow::compile(def, Some(&registry)).unwrap());
        let store = Arc::new(MemoryStore::new());
        let engine = Engine::new(store.clone(), registry);
        let handle = engine
            .start(workflow, json!({}), StartOptions::default())
            .await
            .unwrap();
        let outcome = handle.wait().await;
        assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
        let snapshot = store.load_run(&outcome.run_id).await.unwrap().unwrap();
        let node = |id: &str| {
            snapshot
                .nodes
                .iter()
                .find(|n| &*n.node_id == id)
                .unwrap()
                .clone()
        };
        assert_eq!(node("flaky").status, NodeStatus::Completed);
        assert_eq!(node("flaky").attempt, 3);
        assert_eq!(node("nap").output.as_deref(), Some(&json!({"slept_ms": 1})));
    }
}
