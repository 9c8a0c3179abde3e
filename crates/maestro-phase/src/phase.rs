//! The team-engine port: [`PhaseExecutor`] runs one SDLC phase and answers with a
//! [`PhaseResult`] or a [`PhaseError`].

use async_trait::async_trait;
use maestro_dag::CancellationToken;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::context::TeamContext;

/// The team engine: carries out one SDLC phase (requirement analysis, design, …) for a run.
///
/// Implementations talk to whatever does the work (an HTTP service, a local agent team, a test
/// double from [`crate::testing`]). They should watch [`PhaseRequest::cancellation`] during long
/// waits and use [`PhaseRequest::idempotency_key`] to deduplicate external side effects, because a
/// phase may run again after a retry or a crash.
///
/// A phase that did not succeed must say so, either by returning an error or a result whose
/// [`PhaseResult::status`] is [`PhaseStatus::Failed`]; either way the node fails.
#[async_trait]
pub trait PhaseExecutor: Send + Sync + 'static {
    /// Executes one attempt of a phase.
    async fn execute_phase(
        &self,
        context: TeamContext,
        request: PhaseRequest,
    ) -> Result<PhaseResult, PhaseError>;
}

/// What the team engine is asked to do in one attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseRequest {
    /// The phase, e.g. `design`.
    pub phase: String,
    /// The phase requirement text: the original requirement plus what earlier phases produced,
    /// in markdown (see [`crate::requirement_text`]).
    pub requirement: String,
    /// The run.
    pub run_id: String,
    /// The node carrying out the phase, e.g. `phase_design`.
    pub node_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Stable per (run, node) across retries and restarts.
    pub idempotency_key: String,
    /// Cancelled when the run is cancelled or the attempt times out (not serialized).
    #[serde(skip)]
    pub cancellation: CancellationToken,
}

/// Whether a phase succeeded, as the team engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    /// The phase did its work.
    Completed,
    /// The phase ran but did not succeed; [`PhaseResult::error`] says why.
    Failed,
}

impl PhaseStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// What a phase produced.
///
/// On the wire this is the original team engine's result shape. When deserializing, top-level
/// `files` and `generated_files` lists are folded into [`PhaseResult::artifacts`], so results
/// from engines that report files under those names lose nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "WirePhaseResult")]
pub struct PhaseResult {
    /// Whether the phase succeeded.
    pub status: PhaseStatus,
    /// The phase's own output (design documents, test reports, …), as the engine returned it.
    pub output: Value,
    /// Files or other artifacts the phase created, usually paths.
    pub artifacts: Vec<Value>,
    /// Contracts (API specifications, interfaces) the phase published for later phases.
    pub contracts: Vec<Value>,
    /// How long the phase took, in seconds.
    pub execution_time: f64,
    /// The personas (roles) that took part.
    pub personas_executed: Vec<String>,
    /// Why the phase failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PhaseResult {
    /// A completed phase with this output and nothing else.
    pub fn completed(output: Value) -> Self {
        Self {
            status: PhaseStatus::Completed,
            output,
            artifacts: Vec::new(),
            contracts: Vec::new(),
            execution_time: 0.0,
            personas_executed: Vec::new(),
            error: None,
        }
    }

    /// A phase that ran and failed, with the reason.
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            status: PhaseStatus::Failed,
            error: Some(error.into()),
            ..Self::completed(Value::Object(Map::new()))
        }
    }

    /// Adds artifacts (anything JSON; usually paths).
    pub fn with_artifacts<I, A>(mut self, artifacts: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<Value>,
    {
        self.artifacts.extend(artifacts.into_iter().map(Into::into));
        self
    }

    /// Adds contracts.
    pub fn with_contracts<I, C>(mut self, contracts: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<Value>,
    {
        self.contracts.extend(contracts.into_iter().map(Into::into));
        self
    }

    /// Sets the execution time, in seconds.
    pub fn with_execution_time(mut self, seconds: f64) -> Self {
        self.execution_time = seconds;
        self
    }

    /// Adds the personas that took part.
    pub fn with_personas<I, S>(mut self, personas: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.personas_executed
            .extend(personas.into_iter().map(Into::into));
        self
    }

    /// Whether the phase succeeded.
    pub fn is_completed(&self) -> bool {
        self.status == PhaseStatus::Completed
    }
}

/// The accepted wire form: [`PhaseResult`] plus the original engine's extra artifact lists.
#[derive(Deserialize)]
struct WirePhaseResult {
    status: PhaseStatus,
    #[serde(default = "empty_object")]
    output: Value,
    #[serde(default)]
    artifacts: Vec<Value>,
    #[serde(default)]
    files: Vec<Value>,
    #[serde(default)]
    generated_files: Vec<Value>,
    #[serde(default)]
    contracts: Vec<Value>,
    #[serde(default)]
    execution_time: f64,
    #[serde(default)]
    personas_executed: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl From<WirePhaseResult> for PhaseResult {
    fn from(w: WirePhaseResult) -> Self {
        let mut artifacts = w.artifacts;
        artifacts.extend(w.files);
        artifacts.extend(w.generated_files);
        Self {
            status: w.status,
            output: w.output,
            artifacts,
            contracts: w.contracts,
            execution_time: w.execution_time,
            personas_executed: w.personas_executed,
            error: w.error,
        }
    }
}

/// Why a phase could not be carried out. Each variant has a stable [`PhaseError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhaseError {
    /// The phase ran and failed; another attempt may succeed.
    #[error("{0}")]
    Failed(String),
    /// The team engine could not be reached or did not answer; another attempt may succeed.
    #[error("team engine unavailable: {0}")]
    Unavailable(String),
    /// The team engine refused the request (unknown phase, bad input); retrying cannot help.
    #[error("team engine rejected the request: {0}")]
    Rejected(String),
    /// The team context could not be created.
    #[error("team context: {0}")]
    Context(String),
    /// The attempt was cancelled through its cancellation token.
    #[error("cancelled")]
    Cancelled,
}

impl PhaseError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Failed(_) => "phase_failed",
            Self::Unavailable(_) => "team_engine_unavailable",
            Self::Rejected(_) => "team_engine_rejected",
            Self::Context(_) => "team_context_failed",
            Self::Cancelled => "phase_cancelled",
        }
    }

    /// Whether another attempt may succeed. Cancellation is not retryable here: the engine
    /// itself decides whether a timed-out attempt runs again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Failed(_) | Self::Unavailable(_) | Self::Context(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wire_results_fold_files_into_artifacts_and_default_the_rest() {
        let r: PhaseResult = serde_json::from_value(json!({
            "status": "completed",
            "artifacts": ["a.md"],
            "files": ["b.rs"],
            "generated_files": ["c.rs"],
            "extra": "ignored",
        }))
        .unwrap();
        assert_eq!(r.artifacts, [json!("a.md"), json!("b.rs"), json!("c.rs")]);
        assert_eq!(r.output, json!({}));
        assert_eq!(r.execution_time, 0.0);
        assert!(r.is_completed() && r.contracts.is_empty() && r.error.is_none());
    }

    #[test]
    fn a_result_without_a_status_is_rejected() {
        let err = serde_json::from_value::<PhaseResult>(json!({"output": {}})).unwrap_err();
        assert!(err.to_string().contains("status"), "{err}");
    }

    #[test]
    fn results_round_trip() {
        let r = PhaseResult::failed("tests red")
            .with_artifacts(["report.xml"])
            .with_contracts([json!({"name": "api"})])
            .with_execution_time(2.5)
            .with_personas(["qa"]);
        let wire = serde_json::to_value(&r).unwrap();
        assert_eq!(wire["status"], "failed");
        assert_eq!(serde_json::from_value::<PhaseResult>(wire).unwrap(), r);
    }

    #[test]
    fn only_failures_a_retry_can_fix_are_retryable() {
        let cases = [
            (PhaseError::Failed("x".into()), "phase_failed", true),
            (
                PhaseError::Unavailable("x".into()),
                "team_engine_unavailable",
                true,
            ),
            (
                PhaseError::Rejected("x".into()),
                "team_engine_rejected",
                false,
            ),
            (PhaseError::Context("x".into()), "team_context_failed", true),
            (PhaseError::Cancelled, "phase_cancelled", false),
        ];
        for (error, code, retryable) in cases {
            assert_eq!((error.code(), error.is_retryable()), (code, retryable));
        }
    }
}
