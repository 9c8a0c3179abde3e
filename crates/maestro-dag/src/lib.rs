//! Maestro's DAG core: the workflow definition model, validation, graph queries, the run engine
//! and its events, and the ports (traits) the engine needs from the outside world.
//!
//! This crate does no I/O of its own and knows nothing of HTTP or SQL: executors and stores are
//! injected. The in-memory [`MemoryStore`] makes it usable on its own.

pub mod condition;
pub mod definition;
pub mod engine;
pub mod event;
pub mod executor;
mod legacy;
pub mod status;
pub mod store;
pub mod validate;
pub mod workflow;

pub use condition::Condition;
pub use definition::{
    FailurePolicy, NodeDefinition, NodeType, ParseError, RetryPolicy, TriggerRule,
    WorkflowDefinition,
};
pub use engine::{Engine, EngineConfig, EngineError, RunHandle, RunOutcome, StartOptions};
pub use event::{Event, EventData, EventType};
pub use executor::{ExecutorRegistry, FnExecutor, NodeContext, NodeError, NodeExecutor};
pub use status::{NodeStatus, RunStatus};
pub use store::{
    DefinitionRecord, DefinitionStore, MemoryStore, NodeRecord, RunRecord, RunSnapshot, RunStore,
    Store, StoreError,
};
pub use validate::{ExecutorLookup, ValidationCode, ValidationError, ValidationErrors, validate};
pub use workflow::Workflow;

/// Re-exported so executors can use the same cancellation token type.
pub use tokio_util::sync::CancellationToken;
