//! Maestro's built-in node executors (DESIGN §4), ready to register in an
//! [`ExecutorRegistry`]:
//!
//! - [`noop`]: output `{}`; polled inline because it never blocks.
//! - [`sleep`]: `{duration_ms}` → `{"slept_ms": N}`; stops early when the attempt is cancelled.
//! - [`fail`]: `{message, times}`: fails the first `times` attempts (every attempt when absent),
//!   then succeeds with `{}`; for exercising retries.
//!
//! A node whose `config` has the wrong shape fails permanently (no retry can fix it) with a
//! message naming the field, e.g. ``sleep: `config.duration_ms` must be a non-negative integer,
//! got a string``.
//!
//! Not here yet: the `http`, `command` and `phase` executors of DESIGN §4 come in a later issue
//! (`phase` adapts `maestro-phase`'s team engine, so it will be wired by the server, not here).
//!
//! ```
//! let registry = maestro_executors::builtin_registry();
//! assert!(registry.get("sleep").is_some());
//! ```

mod config;
pub mod fail;
pub mod noop;
pub mod sleep;

use maestro_dag::ExecutorRegistry;

pub use fail::FailExecutor;
pub use noop::NoopExecutor;
pub use sleep::SleepExecutor;

/// The keys of the executors [`builtin_registry`] registers, in documentation order.
pub const BUILTIN_KEYS: [&str; 3] = [NoopExecutor::KEY, SleepExecutor::KEY, FailExecutor::KEY];

/// A registry holding every built-in executor under its key (`noop`, `sleep`, `fail`).
///
/// Callers add their own executors to it (`register` replaces a built-in of the same key).
pub fn builtin_registry() -> ExecutorRegistry {
    ExecutorRegistry::new()
        .with(NoopExecutor::KEY, NoopExecutor)
        .with(SleepExecutor::KEY, SleepExecutor)
        .with(FailExecutor::KEY, FailExecutor)
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
