//! SDLC phases on Maestro's DAG engine.
//!
//! - [`PhaseExecutor`] is the port to the *team engine* that carries out one phase
//!   (requirement analysis, design, …) and [`ContextFactory`] the port that creates the
//!   [`TeamContext`] it works in. Both are injected, nothing is looked up globally.
//! - [`PhaseNodeExecutor`] adapts them into a [`maestro_dag::NodeExecutor`] for `phase` nodes:
//!   it builds the phase requirement text ([`requirement_text`]) from the run's requirement and
//!   the upstream outputs, passes artifacts and contracts downstream, and fails the node when the
//!   phase fails.
//! - [`templates`] builds the SDLC workflows; [`testing`] offers test doubles for both ports.
//!
//! This crate depends on `maestro-dag` only and does no I/O of its own.
//!
//! # Example
//!
//! Running the parallel SDLC workflow on the engine with an in-memory store and scripted phases:
//!
//! ```
//! use std::sync::Arc;
//!
//! use maestro_dag::{Engine, ExecutorRegistry, MemoryStore, RunStatus, StartOptions, Workflow};
//! use maestro_phase::testing::{RecordingContextFactory, ScriptedPhaseExecutor, Step};
//! use maestro_phase::{PhaseNodeExecutor, PhaseResult, templates};
//! use serde_json::json;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let phases = Arc::new(ScriptedPhaseExecutor::new().on(
//!     "design",
//!     Step::reply(PhaseResult::completed(json!({"api": "REST"})).with_artifacts(["design.md"])),
//! ));
//! let contexts = Arc::new(RecordingContextFactory::new());
//!
//! let mut executors = ExecutorRegistry::new();
//! executors.register(
//!     templates::PHASE_EXECUTOR,
//!     PhaseNodeExecutor::new(phases.clone(), contexts.clone()),
//! );
//! let workflow = Workflow::compile(templates::sdlc_parallel(), Some(&executors)).unwrap();
//! let engine = Engine::new(Arc::new(MemoryStore::new()), executors);
//!
//! let run = engine
//!     .start(Arc::new(workflow), json!({"requirement": "A todo app"}), StartOptions::default())
//!     .await
//!     .unwrap();
//! let outcome = run.wait().await;
//! assert_eq!(outcome.status, RunStatus::Completed);
//! assert_eq!(outcome.completed, 6);
//!
//! // Backend development saw the design's output and artifact in its requirement text.
//! let backend = &phases.calls_for("backend_development")[0];
//! assert!(backend.request.requirement.contains("### phase_design:\n- design.md"));
//! assert_eq!(contexts.calls_for("testing")[0].upstream.len(), 2);
//! # });
//! ```

mod context;
mod node;
mod phase;
mod requirement;
pub mod templates;
pub mod testing;

pub use context::{
    ContextFactory, ContextRequest, DefaultContextFactory, EXECUTION_MODE_PHASED, TeamContext,
    UpstreamOutput,
};
pub use node::PhaseNodeExecutor;
pub use phase::{PhaseError, PhaseExecutor, PhaseRequest, PhaseResult, PhaseStatus};
pub use requirement::{gather_contracts, requirement_text};
pub use templates::{SDLC_PHASES, linear_workflow, parallel_workflow};
