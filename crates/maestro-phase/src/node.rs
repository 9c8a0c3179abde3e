//! [`PhaseNodeExecutor`]: the adapter that runs `phase` nodes of a workflow on an injected
//! [`PhaseExecutor`], with team contexts from an injected [`ContextFactory`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use maestro_dag::{NodeContext, NodeError, NodeExecutor};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::context::{ContextFactory, ContextRequest, UpstreamOutput};
use crate::phase::{PhaseError, PhaseExecutor, PhaseRequest, PhaseResult, PhaseStatus};
use crate::requirement::{gather_contracts, requirement_text};

/// The node executor for `phase` nodes (register it under the key `"phase"`).
///
/// For each attempt it:
/// 1. reads the phase from `node_config.phase`, or else the node's name without a `phase_`
///    prefix, and the requirement from the run's `inputs.requirement` (default `""`);
/// 2. gathers the completed dependencies' outputs and the contracts in them, and builds the
///    phase requirement text ([`requirement_text`]);
/// 3. asks the [`ContextFactory`] for the team context and the [`PhaseExecutor`] to run the
///    phase;
/// 4. returns `{phase, status: "completed", output, artifacts, contracts, execution_time,
///    personas_executed}`.
///
/// A phase that fails, whether the executor returns an error or a result with status `failed`,
/// fails the attempt, so the node fails (or is retried by its retry policy). It is never
/// reported as a completed node.
///
/// The output's `artifacts` are the result's `artifacts` followed by the entries of any
/// `artifacts`, `files` and `generated_files` arrays inside the result's `output`, each kept
/// once. Its `contracts` are the ones this phase published; downstream phases receive the
/// contracts of their direct dependencies.
pub struct PhaseNodeExecutor {
    phases: Arc<dyn PhaseExecutor>,
    contexts: Arc<dyn ContextFactory>,
}

impl fmt::Debug for PhaseNodeExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhaseNodeExecutor").finish_non_exhaustive()
    }
}

impl PhaseNodeExecutor {
    /// An executor running phases on `phases` with contexts from `contexts`.
    pub fn new(phases: Arc<dyn PhaseExecutor>, contexts: Arc<dyn ContextFactory>) -> Self {
        Self { phases, contexts }
    }

    /// Builds the context and the request, runs the phase, and turns a reported failure into
    /// an error.
    async fn run_phase(
        &self,
        ctx: &NodeContext,
        phase: &str,
        requirement: String,
    ) -> Result<PhaseResult, PhaseError> {
        let upstream: Vec<UpstreamOutput> = ctx
            .dependency_outputs
            .iter()
            .map(|(id, out)| UpstreamOutput::new(&**id, (**out).clone()))
            .collect();
        let contracts = gather_contracts(&upstream);
        let text = requirement_text(&requirement, &upstream);
        let context = self
            .contexts
            .create_context(ContextRequest {
                workflow_id: ctx.workflow_id.to_string(),
                run_id: ctx.run_id.to_string(),
                node_id: ctx.node_id.to_string(),
                phase: phase.to_string(),
                attempt: ctx.attempt,
                requirement,
                inputs: (*ctx.inputs).clone(),
                upstream,
                contracts,
            })
            .await?;
        let request = PhaseRequest {
            phase: phase.to_string(),
            requirement: text,
            run_id: ctx.run_id.to_string(),
            node_id: ctx.node_id.to_string(),
            attempt: ctx.attempt,
            idempotency_key: ctx.idempotency_key(),
            cancellation: ctx.cancellation.clone(),
        };
        let result = self.phases.execute_phase(context, request).await?;
        match result.status {
            PhaseStatus::Completed => Ok(result),
            PhaseStatus::Failed => {
                Err(PhaseError::Failed(result.error.unwrap_or_else(|| {
                    "the team engine reported failure without a reason".into()
                })))
            }
        }
    }
}

#[async_trait]
impl NodeExecutor for PhaseNodeExecutor {
    async fn execute(&self, ctx: NodeContext) -> Result<Value, NodeError> {
        let phase = phase_of(&ctx)?;
        let requirement = requirement_of(&ctx)?;
        let (run_id, node) = (&*ctx.run_id, &*ctx.node_id);
        info!(run_id, node, phase, attempt = ctx.attempt, "phase started");
        match self.run_phase(&ctx, &phase, requirement).await {
            Ok(result) => {
                let execution_time = result.execution_time;
                info!(run_id, node, phase, execution_time, "phase completed");
                Ok(node_output(&phase, result))
            }
            Err(e) => {
                warn!(run_id, node, phase, attempt = ctx.attempt, error = %e, "phase failed");
                let message = format!("phase {phase} failed: {e}");
                Err(if e.is_retryable() {
                    NodeError::new(message)
                } else {
                    NodeError::permanent(message)
                })
            }
        }
    }
}

/// `node_config.phase`, or the node's name without a `phase_` prefix.
fn phase_of(ctx: &NodeContext) -> Result<String, NodeError> {
    let phase = match ctx.node_config.get("phase") {
        Some(Value::String(p)) => p.as_str(),
        None | Some(Value::Null) => ctx
            .node_name
            .strip_prefix("phase_")
            .unwrap_or(&ctx.node_name),
        Some(_) => {
            return Err(NodeError::permanent(
                "node_config.phase must be a string naming the phase",
            ));
        }
    };
    if phase.is_empty() {
        return Err(NodeError::permanent("the node names no phase"));
    }
    Ok(phase.to_string())
}

/// The run's `inputs.requirement`, `""` when absent.
fn requirement_of(ctx: &NodeContext) -> Result<String, NodeError> {
    match ctx.inputs.get("requirement") {
        Some(Value::String(r)) => Ok(r.clone()),
        None | Some(Value::Null) => Ok(String::new()),
        Some(_) => Err(NodeError::permanent("inputs.requirement must be a string")),
    }
}

fn node_output(phase: &str, result: PhaseResult) -> Value {
    let mut artifacts: Vec<Value> = Vec::new();
    let nested = ["artifacts", "files", "generated_files"]
        .into_iter()
        .filter_map(|key| result.output.get(key).and_then(Value::as_array))
        .flatten();
    for a in result.artifacts.iter().chain(nested) {
        if !artifacts.contains(a) {
            artifacts.push(a.clone());
        }
    }
    json!({
        "phase": phase,
        "status": PhaseStatus::Completed.as_str(),
        "output": result.output,
        "artifacts": artifacts,
        "contracts": result.contracts,
        "execution_time": result.execution_time,
        "personas_executed": result.personas_executed,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx(name: &str, config: Value) -> NodeContext {
        let mut ctx = NodeContext::for_node(name, config);
        ctx.node_name = name.into();
        ctx
    }

    #[test]
    fn phase_comes_from_config_then_name() {
        let check = |name: &str, config: Value, expected: Result<&str, &str>| {
            let got = phase_of(&ctx(name, config));
            match expected {
                Ok(p) => assert_eq!(got.unwrap(), p, "{name}"),
                Err(msg) => {
                    let e = got.unwrap_err();
                    assert!(!e.retryable && e.message.contains(msg), "{name}: {e}");
                }
            }
        };
        check("phase_x", json!({"phase": "design"}), Ok("design"));
        check("phase_design", json!({}), Ok("design"));
        check("review", json!({"other": 1}), Ok("review"));
        check("phase_x", json!({"phase": 3}), Err("must be a string"));
        check("phase_", json!({}), Err("names no phase"));
    }

    #[test]
    fn requirement_must_be_a_string_when_given() {
        let mut c = ctx("phase_design", json!({}));
        assert_eq!(requirement_of(&c).unwrap(), "");
        c.inputs = Arc::new(json!({"requirement": "build"}));
        assert_eq!(requirement_of(&c).unwrap(), "build");
        c.inputs = Arc::new(json!({"requirement": ["build"]}));
        assert!(!requirement_of(&c).unwrap_err().retryable);
    }

    #[test]
    fn output_gathers_artifacts_from_result_and_output_once() {
        let result = PhaseResult::completed(json!({
            "files": ["b.rs", "a.rs"],
            "generated_files": ["c.rs"],
        }))
        .with_artifacts(["a.rs"]);
        let out = node_output("backend_development", result);
        assert_eq!(out["artifacts"], json!(["a.rs", "b.rs", "c.rs"]));
        assert_eq!(out["status"], "completed");
        assert_eq!(out["phase"], "backend_development");
    }
}
