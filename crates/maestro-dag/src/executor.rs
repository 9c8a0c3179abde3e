//! The node-executor port: what runs a node, what it receives, and the registry of executors.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::definition::NodeType;
use crate::validate::ExecutorLookup;

/// Runs nodes of one kind (`http`, `command`, `phase`, …).
///
/// An executor receives a [`NodeContext`] and returns the node's output, a JSON object (an
/// `artifacts` array in it is recorded as the node's artifacts). Returning an error fails the
/// attempt; the engine retries it according to the node's policy unless the error says it is not
/// retryable. Executors should watch [`NodeContext::cancellation`] in long waits.
#[async_trait]
pub trait NodeExecutor: Send + Sync + 'static {
    /// Executes one attempt of a node.
    async fn execute(&self, ctx: NodeContext) -> Result<Value, NodeError>;

    /// Whether the engine may poll this executor on the run's own task instead of spawning a
    /// task per attempt. Only for executors that never block and finish in microseconds.
    fn runs_inline(&self) -> bool {
        false
    }

    /// A synchronous fast path: an executor whose work is trivial (no I/O, no waiting) may
    /// return the result here from a borrowed view of the input, and the engine then builds no
    /// context, future or task for the attempt. `None` (the default) means "call
    /// [`NodeExecutor::execute`]". Not used for nodes with a timeout. Returning `None` must have
    /// no side effect. The engine may settle several such attempts before it writes their
    /// `node_started` (one write for many), so an attempt here may run again after a crash:
    /// keep it pure, or idempotent.
    fn execute_now(&self, input: &NodeInput<'_>) -> Option<Result<Value, NodeError>> {
        let _ = input;
        None
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    /// What went wrong.
    pub message: String,
    /// Whether another attempt may succeed (true unless the executor knows better).
    pub retryable: bool,
}

impl NodeError {
    /// A retryable failure.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that no retry can fix (bad configuration, a rejected request).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

impl From<String> for NodeError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for NodeError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// Everything an executor gets for one attempt (DESIGN §3 "Node input").
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The node's id.
    pub node_id: Arc<str>,
    /// The node's display name.
    pub node_name: Arc<str>,
    /// The node's type.
    pub node_type: NodeType,
    /// The node's `config`.
    pub node_config: Arc<Value>,
    /// The run.
    pub run_id: Arc<str>,
    /// The workflow definition's id.
    pub workflow_id: Arc<str>,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The run's inputs.
    pub inputs: Arc<Value>,
    /// Outputs of the dependencies that completed, in declaration order.
    pub dependency_outputs: Vec<(Arc<str>, Arc<Value>)>,
    /// Cancelled when the run is cancelled or the attempt times out.
    pub cancellation: CancellationToken,
}

impl NodeContext {
    /// A context for tests and direct calls: attempt 1, no inputs, no dependencies.
    pub fn for_node(node_id: &str, node_config: Value) -> Self {
        Self {
            node_id: node_id.into(),
            node_name: node_id.into(),
            node_type: NodeType::Custom,
            node_config: Arc::new(node_config),
            run_id: "run".into(),
            workflow_id: "workflow".into(),
            attempt: 1,
            inputs: Arc::new(Value::Object(Map::new())),
            dependency_outputs: Vec::new(),
            cancellation: CancellationToken::new(),
        }
    }

    /// Stable per (run, node) across retries and restarts: use it to deduplicate external calls.
    pub fn idempotency_key(&self) -> String {
        idempotency_key(&self.run_id, &self.node_id)
    }

    /// The output of one dependency, if it completed.
    pub fn dependency_output(&self, node_id: &str) -> Option<&Value> {
        self.dependency_outputs
            .iter()
            .find(|(id, _)| &**id == node_id)
            .map(|(_, v)| &**v)
    }

    /// `{dep_id: output}` for the dependencies that completed.
    pub fn dependency_outputs_json(&self) -> Value {
        Value::Object(
            self.dependency_outputs
                .iter()
                .map(|(id, v)| (id.to_string(), (**v).clone()))
                .collect(),
        )
    }

    /// `{dep_id: [artifact, …]}`: the `artifacts` arrays of the dependencies' outputs.
    pub fn dependency_artifacts_json(&self) -> Value {
        Value::Object(
            self.dependency_outputs
                .iter()
                .map(|(id, v)| (id.to_string(), Value::Array(artifacts_of(v))))
                .collect(),
        )
    }

    /// The full node input as JSON, the body sent by the `http` and `command` executors:
    /// `{node_id, node_name, node_config, run_id, workflow_id, attempt, idempotency_key, inputs,
    /// dependency_outputs, dependency_artifacts}`.
    pub fn input_json(&self) -> Value {
        json!({
            "node_id": &*self.node_id,
            "node_name": &*self.node_name,
            "node_config": &*self.node_config,
            "run_id": &*self.run_id,
            "workflow_id": &*self.workflow_id,
            "attempt": self.attempt,
            "idempotency_key": self.idempotency_key(),
            "inputs": &*self.inputs,
            "dependency_outputs": self.dependency_outputs_json(),
            "dependency_artifacts": self.dependency_artifacts_json(),
        })
    }
}

/// Where a [`NodeInput`] finds the outputs of dependencies (implemented by the engine).
pub(crate) trait OutputSource {
    /// The id and output of node `j`, if it completed.
    fn output(&self, j: u32) -> Option<(&str, &Value)>;
}

/// A borrowed view of an attempt's input, for [`NodeExecutor::execute_now`]: the same
/// information as a [`NodeContext`] without building one.
pub struct NodeInput<'a> {
    /// The node's id.
    pub node_id: &'a str,
    /// The node's display name.
    pub node_name: &'a str,
    /// The node's type.
    pub node_type: NodeType,
    /// The node's `config`.
    pub node_config: &'a Value,
    /// The run.
    pub run_id: &'a str,
    /// The workflow definition's id.
    pub workflow_id: &'a str,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The run's inputs.
    pub inputs: &'a Value,
    pub(crate) deps: &'a [u32],
    pub(crate) source: &'a dyn OutputSource,
}

impl fmt::Debug for NodeInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeInput")
            .field("node_id", &self.node_id)
            .field("run_id", &self.run_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl<'a> NodeInput<'a> {
    /// Outputs of the dependencies that completed, in declaration order.
    pub fn dependency_outputs(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + '_ {
        self.deps.iter().filter_map(|&j| self.source.output(j))
    }

    /// The output of one dependency, if it completed.
    pub fn dependency_output(&self, node_id: &str) -> Option<&'a Value> {
        self.dependency_outputs()
            .find(|(id, _)| *id == node_id)
            .map(|(_, v)| v)
    }

    /// Stable per (run, node) across retries and restarts.
    pub fn idempotency_key(&self) -> String {
        idempotency_key(self.run_id, self.node_id)
    }
}

/// The idempotency key of a node within a run.
pub fn idempotency_key(run_id: &str, node_id: &str) -> String {
    format!("{run_id}:{node_id}")
}

/// The entries of an output's `artifacts` array (empty when absent or not an array).
pub fn artifacts_of(output: &Value) -> Vec<Value> {
    match output.get("artifacts") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

/// Executors by key. Cloning is cheap (executors are shared).
#[derive(Clone, Default)]
pub struct ExecutorRegistry {
    executors: HashMap<String, Arc<dyn NodeExecutor>>,
}

impl fmt::Debug for ExecutorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&str> = self.keys().collect();
        keys.sort_unstable();
        f.debug_struct("ExecutorRegistry")
            .field("keys", &keys)
            .finish()
    }
}

impl ExecutorRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) an executor.
    pub fn register(&mut self, key: impl Into<String>, executor: impl NodeExecutor) -> &mut Self {
        self.executors.insert(key.into(), Arc::new(executor));
        self
    }

    /// Registers a shared executor.
    pub fn register_arc(
        &mut self,
        key: impl Into<String>,
        executor: Arc<dyn NodeExecutor>,
    ) -> &mut Self {
        self.executors.insert(key.into(), executor);
        self
    }

    /// Builder-style [`ExecutorRegistry::register`].
    pub fn with(mut self, key: impl Into<String>, executor: impl NodeExecutor) -> Self {
        self.register(key, executor);
        self
    }

    /// Looks an executor up.
    pub fn get(&self, key: &str) -> Option<&Arc<dyn NodeExecutor>> {
        self.executors.get(key)
    }

    /// The registered keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.executors.keys().map(String::as_str)
    }

    /// How many executors are registered.
    pub fn len(&self) -> usize {
        self.executors.len()
    }

    /// Whether no executor is registered.
    pub fn is_empty(&self) -> bool {
        self.executors.is_empty()
    }
}

impl ExecutorLookup for ExecutorRegistry {
    fn has_executor(&self, key: &str) -> bool {
        self.executors.contains_key(key)
    }
}

/// An executor made from an async closure, handy in tests and small embeddings.
pub struct FnExecutor<F> {
    f: F,
    inline: bool,
}

impl<F, Fut> FnExecutor<F>
where
    F: Fn(NodeContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, NodeError>> + Send + 'static,
{
    /// Wraps a closure; each attempt is spawned as its own task.
    pub fn new(f: F) -> Self {
        Self { f, inline: false }
    }

    /// Wraps a closure that is polled on the run's task (it must not block).
    pub fn inline(f: F) -> Self {
        Self { f, inline: true }
    }
}

#[async_trait]
impl<F, Fut> NodeExecutor for FnExecutor<F>
where
    F: Fn(NodeContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, NodeError>> + Send + 'static,
{
    async fn execute(&self, ctx: NodeContext) -> Result<Value, NodeError> {
        (self.f)(ctx).await
    }

    fn runs_inline(&self) -> bool {
        self.inline
    }
}
