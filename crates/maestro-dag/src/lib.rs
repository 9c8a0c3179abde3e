//! Maestro's DAG core: the workflow definition model, validation, graph queries, the run engine
//! and its events, and the ports (traits) the engine needs from the outside world.
//!
//! This is the crate an embedding Rust service depends on; the bundled server is built on it
//! too, so both run workflows with the same semantics.
//!
//! # Invariants
//!
//! - **No I/O of its own.** The crate knows nothing of HTTP or SQL and depends on no database,
//!   HTTP or other Maestro crate (the workspace's tidy test checks its `Cargo.toml`).
//! - **Everything outside is injected.** Node executors come in an [`ExecutorRegistry`], the
//!   store as an `Arc<dyn RunStore>`; [`MemoryStore`] makes the crate usable on its own, and
//!   `maestro-store` provides durable adapters of the same ports.
//! - **A compiled [`Workflow`] is valid.** The only way to get one is through [`validate()`], which
//!   reports every problem at once, each with a stable [`ValidationCode`].
//! - **Stored before acted on.** The engine writes every transition of a run through the store,
//!   in one batch per turn, before it starts an attempt or broadcasts an event; a run can
//!   therefore be resumed from the store with [`Engine::recover`]. (Attempts that finish
//!   synchronously, [`NodeExecutor::execute_now`], are settled before the write of their turn:
//!   at-least-once still holds, and nothing stored as completed runs again.)
//!
//! # A quick tour
//!
//! - **Definitions**, what users write in JSON or YAML: [`WorkflowDefinition`],
//!   [`NodeDefinition`], [`NodeType`], [`TriggerRule`], [`RetryPolicy`], [`FailurePolicy`], and
//!   [`ParseError`] (line, column and field path of a problem).
//! - **Validation and compilation**: [`validate()`], [`ValidationErrors`] with a
//!   [`ValidationCode`] per problem, and [`Workflow`], the compiled graph, which also answers
//!   graph queries (levels, topological order, descendants, a petgraph export).
//! - **Conditions**: [`Condition`], a CEL expression over `inputs` and `outputs`.
//! - **Running**: [`Engine`], [`EngineConfig`], [`StartOptions`], [`RunHandle`], [`RunOutcome`],
//!   [`EngineError`] (each with a stable [`EngineError::code`]).
//! - **Executors**, the node port: [`NodeExecutor`], the [`NodeContext`] it receives (or the
//!   borrowed [`NodeInput`] of its synchronous fast path), its [`NodeError`], the
//!   [`ExecutorRegistry`], [`FnExecutor`] for closures, and the [`CancellationToken`]
//!   re-exported from `tokio-util`.
//! - **Events**: [`Event`] (the wire shape), [`EventType`], [`EventData`].
//! - **Statuses**: [`RunStatus`], [`NodeStatus`].
//! - **Stores**, the persistence ports: [`RunStore`], [`DefinitionStore`], [`LeaseStore`],
//!   [`Store`] (all three), [`MemoryStore`], and what they hold ([`RunSnapshot`],
//!   [`RunRecord`], [`NodeRecord`], [`DefinitionRecord`]) or fail with ([`StoreError`]).
//!
//! The path of a workflow: text → [`WorkflowDefinition::from_json_str`] (or
//! [`WorkflowDefinition::from_file_text`], or the builder [`NodeDefinition::new`] +
//! [`NodeDefinition::after`]) → [`Workflow::compile`] → [`Engine::start`] → [`RunHandle::wait`],
//! with [`Engine::subscribe`] for live events and [`Engine::store`] for the stored state. Runs
//! are controlled through [`Engine::cancel`], [`Engine::pause`], [`Engine::resume`],
//! [`Engine::approve`], [`Engine::reject`] and [`Engine::retry`]. `docs/embedding.md` in the
//! repository is the guide.
//!
//! # Cargo features
//!
//! - `cel` (default): node `condition`s, evaluated with the [`cel`](https://docs.rs/cel)
//!   interpreter (about 50 crates). Without it, a definition that has a condition fails
//!   validation with `invalid_condition`, so a condition is never silently ignored.
//! - `yaml` (default): [`WorkflowDefinition::from_yaml_str`], and YAML files in
//!   [`WorkflowDefinition::from_file_text`].
//!
//! To keep the core lean without conditions, turn the defaults off and pick what you need:
//!
//! ```toml
//! [dependencies.maestro-dag]
//! path = "../maestro/crates/maestro-dag"
//! default-features = false
//! features = ["yaml"]   # [] for neither
//! ```
//!
//! Inside the Maestro workspace, `maestro-dag.workspace = true` already has the defaults off;
//! each crate lists the features it uses.
//!
//! # Example
//!
//! A two-node workflow with a custom executor, run on the in-memory store:
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use maestro_dag::{
//!     Engine, EventType, ExecutorRegistry, FnExecutor, MemoryStore, NodeContext, NodeError,
//!     NodeExecutor, NodeStatus, RunStatus, StartOptions, Workflow, WorkflowDefinition,
//! };
//! use serde_json::{Value, json};
//!
//! /// Greets the person named in the run's inputs, with the greeting from the node's config.
//! struct Greet;
//!
//! #[async_trait]
//! impl NodeExecutor for Greet {
//!     async fn execute(&self, ctx: NodeContext) -> Result<Value, NodeError> {
//!         let name = ctx.inputs["name"]
//!             .as_str()
//!             // No retry can fix bad inputs: fail the node at once.
//!             .ok_or_else(|| NodeError::permanent("inputs.name must be a string"))?;
//!         let greeting = ctx.node_config["greeting"].as_str().unwrap_or("hello");
//!         // A node's output is a JSON object.
//!         Ok(json!({ "message": format!("{greeting}, {name}") }))
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! # runtime.block_on(async {
//! let definition = WorkflowDefinition::from_json_str(
//!     r#"{
//!         "id": "greeting",
//!         "nodes": [
//!             {"id": "greet", "executor": "greet", "config": {"greeting": "hello"}},
//!             {"id": "shout", "executor": "shout", "depends_on": ["greet"],
//!              "retry": {"max_attempts": 3, "initial_delay_ms": 100}}
//!         ]
//!     }"#,
//! )?;
//!
//! let mut registry = ExecutorRegistry::new();
//! registry.register("greet", Greet);
//! // Small executors can be closures.
//! registry.register(
//!     "shout",
//!     FnExecutor::new(|ctx: NodeContext| async move {
//!         let message = ctx.dependency_output("greet").and_then(|out| out["message"].as_str());
//!         Ok::<_, NodeError>(json!({ "message": message.unwrap_or_default().to_uppercase() }))
//!     }),
//! );
//!
//! // Validation checks every executor key against the registry.
//! let workflow = Arc::new(Workflow::compile(definition, Some(&registry))?);
//! let engine = Engine::new(Arc::new(MemoryStore::new()), registry);
//!
//! let mut events = engine.subscribe();
//! let run = engine
//!     .start(workflow, json!({ "name": "Ada" }), StartOptions::default())
//!     .await?;
//! let outcome = run.wait().await;
//! assert_eq!(outcome.status, RunStatus::Completed);
//! assert_eq!(outcome.completed, 2);
//!
//! // Events arrive after they are stored, numbered from 1 in every run.
//! let mut seen = Vec::new();
//! while let Ok(event) = events.try_recv() {
//!     seen.push((event.seq, event.kind.as_str(), event.node_id.clone()));
//! }
//! assert_eq!(seen[0], (1, "workflow_started", None));
//! assert_eq!(seen.last().unwrap().1, EventType::WorkflowCompleted.as_str());
//! assert!(seen.iter().enumerate().all(|(i, e)| e.0 == i as u64 + 1));
//!
//! // Everything is in the store: node states, outputs and the event log.
//! let snapshot = engine.store().load_run(&outcome.run_id).await?.expect("the run is stored");
//! let shout = snapshot.nodes.iter().find(|n| &*n.node_id == "shout").unwrap();
//! assert_eq!(shout.status, NodeStatus::Completed);
//! assert_eq!(shout.output.as_deref(), Some(&json!({ "message": "HELLO, ADA" })));
//! assert_eq!(engine.store().events(&outcome.run_id, 0, 100).await?.len(), seen.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```

pub mod condition;
pub mod definition;
pub mod engine;
pub mod event;
pub mod executor;
pub mod layout;
mod legacy;
pub mod status;
pub mod store;
pub mod validate;
pub mod worker;
pub mod workflow;

pub use condition::Condition;
pub use definition::{
    FailurePolicy, NodeDefinition, NodeType, ParseError, RetryPolicy, TriggerRule,
    WorkflowDefinition,
};
pub use engine::{
    Engine, EngineConfig, EngineError, RunHandle, RunOutcome, RunStopper, StartOptions,
};
pub use event::{Event, EventData, EventType};
pub use executor::{
    ExecutorRegistry, FnExecutor, NodeContext, NodeError, NodeExecutor, NodeInput, artifacts_of,
    idempotency_key,
};
pub use layout::{LaidEdge, LaidNode, Layout, LayoutConfig};
pub use status::{NodeStatus, RunStatus};
pub use store::{
    DefinitionRecord, DefinitionStore, Lease, LeaseStore, MemoryStore, NodeRecord, RunRecord,
    RunSnapshot, RunStore, Store, StoreError,
};
pub use validate::{ExecutorLookup, ValidationCode, ValidationError, ValidationErrors, validate};
pub use worker::{StartedRun, StoreResolver, Worker, WorkerConfig, WorkflowResolver};
pub use workflow::Workflow;

/// Re-exported so executors can use the same cancellation token type.
pub use tokio_util::sync::CancellationToken;
