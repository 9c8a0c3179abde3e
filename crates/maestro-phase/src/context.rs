//! The team context: what a phase knows about its run and the phases before it, and the
//! [`ContextFactory`] port that creates it (with [`DefaultContextFactory`] as the plain choice).

use std::collections::BTreeMap;

use async_trait::async_trait;
use maestro_dag::executor::artifacts_of;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::phase::PhaseError;

/// The execution mode every phase node runs in: one phase per node.
pub const EXECUTION_MODE_PHASED: &str = "phased";

/// The output of one completed upstream (dependency) node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamOutput {
    /// The upstream node's id, e.g. `phase_design` (a node id, not a phase name).
    pub node_id: String,
    /// Its output; for a phase node, `{phase, status, output, artifacts, contracts, …}`.
    pub output: Value,
}

impl UpstreamOutput {
    /// An upstream output.
    pub fn new(node_id: impl Into<String>, output: Value) -> Self {
        Self {
            node_id: node_id.into(),
            output,
        }
    }

    /// The entries of the output's `artifacts` array (empty when absent).
    pub fn artifacts(&self) -> Vec<Value> {
        artifacts_of(&self.output)
    }

    /// The entries of the output's `contracts` array (empty when absent).
    pub fn contracts(&self) -> &[Value] {
        match self.output.get("contracts") {
            Some(Value::Array(c)) => c,
            _ => &[],
        }
    }
}

/// Everything a [`ContextFactory`] is told about the phase it creates a context for.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextRequest {
    /// The workflow definition's id.
    pub workflow_id: String,
    /// The run.
    pub run_id: String,
    /// The node carrying out the phase.
    pub node_id: String,
    /// The phase.
    pub phase: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The original requirement (the run's `inputs.requirement`), without upstream additions.
    pub requirement: String,
    /// The run's inputs.
    pub inputs: Value,
    /// Outputs of the dependencies that completed, in declaration order.
    pub upstream: Vec<UpstreamOutput>,
    /// The contracts gathered from the upstream outputs, in order (see
    /// [`crate::gather_contracts`]).
    pub contracts: Vec<Value>,
}

/// The context a team engine works in for one phase of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamContext {
    /// The original requirement.
    pub requirement: String,
    /// The workflow definition's id.
    pub workflow_id: String,
    /// The run.
    pub run_id: String,
    /// The phase this context is for.
    pub phase: String,
    /// Outputs of the completed upstream nodes, keyed by node id.
    #[serde(default)]
    pub previous_phase_outputs: BTreeMap<String, Value>,
    /// Artifacts of the upstream nodes, keyed by node id.
    #[serde(default)]
    pub artifacts: BTreeMap<String, Vec<Value>>,
    /// Contracts published by the upstream nodes.
    #[serde(default)]
    pub contracts: Vec<Value>,
    /// Always [`EXECUTION_MODE_PHASED`] for phase nodes.
    #[serde(default = "phased")]
    pub execution_mode: String,
    /// Free-form metadata for the team engine.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

fn phased() -> String {
    EXECUTION_MODE_PHASED.to_string()
}

/// Creates the team context for a run and phase from the upstream outputs.
///
/// Inject an implementation into [`crate::PhaseNodeExecutor::new`]; a factory that loads
/// checkpoints or adds project settings replaces [`DefaultContextFactory`] without touching
/// anything else.
#[async_trait]
pub trait ContextFactory: Send + Sync + 'static {
    /// Creates the context for one attempt of a phase. An error fails the attempt.
    async fn create_context(&self, request: ContextRequest) -> Result<TeamContext, PhaseError>;
}

/// The plain factory: copies the request into a [`TeamContext`], keys upstream outputs and
/// artifacts by node id, and sets `metadata` to `{workflow_type: "sdlc", node_id}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultContextFactory;

impl DefaultContextFactory {
    /// The context [`DefaultContextFactory`] creates, for factories that start from it.
    pub fn build(request: ContextRequest) -> TeamContext {
        let mut previous_phase_outputs = BTreeMap::new();
        let mut artifacts = BTreeMap::new();
        for up in request.upstream {
            artifacts.insert(up.node_id.clone(), up.artifacts());
            previous_phase_outputs.insert(up.node_id, up.output);
        }
        let mut metadata = Map::new();
        metadata.insert("workflow_type".into(), "sdlc".into());
        metadata.insert("node_id".into(), request.node_id.into());
        TeamContext {
            requirement: request.requirement,
            workflow_id: request.workflow_id,
            run_id: request.run_id,
            phase: request.phase,
            previous_phase_outputs,
            artifacts,
            contracts: request.contracts,
            execution_mode: phased(),
            metadata,
        }
    }
}

#[async_trait]
impl ContextFactory for DefaultContextFactory {
    async fn create_context(&self, request: ContextRequest) -> Result<TeamContext, PhaseError> {
        Ok(Self::build(request))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn default_factory_keys_upstream_by_node_id() {
        let ctx = DefaultContextFactory::build(ContextRequest {
            workflow_id: "wf".into(),
            run_id: "r1".into(),
            node_id: "phase_testing".into(),
            phase: "testing".into(),
            attempt: 1,
            requirement: "build it".into(),
            inputs: json!({"requirement": "build it"}),
            upstream: vec![
                UpstreamOutput::new("phase_backend", json!({"artifacts": ["api.rs"]})),
                UpstreamOutput::new("phase_frontend", json!({"x": 1})),
            ],
            contracts: vec![json!({"name": "api"})],
        });
        assert_eq!(ctx.phase, "testing");
        assert_eq!(ctx.execution_mode, "phased");
        assert_eq!(
            ctx.previous_phase_outputs["phase_frontend"],
            json!({"x": 1})
        );
        assert_eq!(ctx.artifacts["phase_backend"], vec![json!("api.rs")]);
        assert!(ctx.artifacts["phase_frontend"].is_empty());
        assert_eq!(ctx.contracts, vec![json!({"name": "api"})]);
        assert_eq!(ctx.metadata["node_id"], "phase_testing");
    }

    #[test]
    fn team_context_fills_defaults_when_deserialized() {
        let ctx: TeamContext = serde_json::from_value(json!({
            "requirement": "r", "workflow_id": "w", "run_id": "x", "phase": "design"
        }))
        .unwrap();
        assert_eq!(ctx.execution_mode, EXECUTION_MODE_PHASED);
        assert!(ctx.previous_phase_outputs.is_empty() && ctx.contracts.is_empty());
    }
}
