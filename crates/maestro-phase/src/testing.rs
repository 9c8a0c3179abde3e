//! Test doubles for phase workflows: a [`RecordingContextFactory`] that remembers every context
//! it was asked for, and a [`ScriptedPhaseExecutor`] that answers each phase from a script and
//! remembers every request. With them, a phase workflow (or a [`crate::PhaseNodeExecutor`]
//! wiring) can be tested against the real engine and a `MemoryStore`, without a team engine,
//! a server or a database.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use maestro_phase::testing::{RecordingContextFactory, ScriptedPhaseExecutor, Step};
//! use maestro_phase::{PhaseNodeExecutor, PhaseResult};
//! use serde_json::json;
//!
//! let phases = Arc::new(
//!     ScriptedPhaseExecutor::new()
//!         .on("design", Step::reply(
//!             PhaseResult::completed(json!({"doc": "…"})).with_artifacts(["design.md"]),
//!         ))
//!         .fail_first("testing", 2, Step::succeed(json!({"passed": 42})))
//!         .on(
//!             "review",
//!             Step::report_failure("changes requested").with_delay(Duration::from_millis(5)),
//!         ),
//! );
//! let contexts = Arc::new(RecordingContextFactory::new());
//! let executor = PhaseNodeExecutor::new(phases.clone(), contexts.clone());
//! // … register `executor` under "phase", run a workflow, then inspect
//! // `phases.calls_for("testing")` and `contexts.calls_for("review")`.
//! # let _ = executor;
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::context::{ContextFactory, ContextRequest, DefaultContextFactory, TeamContext};
use crate::phase::{PhaseError, PhaseExecutor, PhaseRequest, PhaseResult};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is only pushed to or counted, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A [`ContextFactory`] that records every request and delegates to another factory
/// ([`DefaultContextFactory`] unless told otherwise), or fails with a given error.
pub struct RecordingContextFactory {
    inner: Arc<dyn ContextFactory>,
    error: Option<PhaseError>,
    calls: Mutex<Vec<ContextRequest>>,
}

impl std::fmt::Debug for RecordingContextFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingContextFactory")
            .field("error", &self.error)
            .field("calls", &lock(&self.calls).len())
            .finish_non_exhaustive()
    }
}

impl Default for RecordingContextFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingContextFactory {
    /// Records, then creates contexts like [`DefaultContextFactory`].
    pub fn new() -> Self {
        Self::wrapping(Arc::new(DefaultContextFactory))
    }

    /// Records, then delegates to `inner`.
    pub fn wrapping(inner: Arc<dyn ContextFactory>) -> Self {
        Self {
            inner,
            error: None,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Records, then fails every call with `error`.
    pub fn failing(error: PhaseError) -> Self {
        Self {
            error: Some(error),
            ..Self::new()
        }
    }

    /// Every request so far, in call order.
    pub fn calls(&self) -> Vec<ContextRequest> {
        lock(&self.calls).clone()
    }

    /// The requests for one phase, in call order.
    pub fn calls_for(&self, phase: &str) -> Vec<ContextRequest> {
        lock(&self.calls)
            .iter()
            .filter(|c| c.phase == phase)
            .cloned()
            .collect()
    }
}

#[async_trait]
impl ContextFactory for RecordingContextFactory {
    async fn create_context(&self, request: ContextRequest) -> Result<TeamContext, PhaseError> {
        lock(&self.calls).push(request.clone());
        match &self.error {
            Some(e) => Err(e.clone()),
            None => self.inner.create_context(request).await,
        }
    }
}

/// One scripted answer of a [`ScriptedPhaseExecutor`], optionally after a delay.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    reply: Result<PhaseResult, PhaseError>,
    delay: Duration,
}

impl Step {
    /// Completes the phase with this output (no artifacts or contracts).
    pub fn succeed(output: Value) -> Self {
        Self::reply(PhaseResult::completed(output))
    }

    /// Answers with this result: a completed one carrying artifacts and contracts, or any
    /// other.
    pub fn reply(result: PhaseResult) -> Self {
        Self {
            reply: Ok(result),
            delay: Duration::ZERO,
        }
    }

    /// Answers with a result whose status is `failed`, the way a team engine reports a phase
    /// that ran and did not succeed.
    pub fn report_failure(reason: impl Into<String>) -> Self {
        Self::reply(PhaseResult::failed(reason))
    }

    /// Returns this error instead of a result.
    pub fn error(error: PhaseError) -> Self {
        Self {
            reply: Err(error),
            delay: Duration::ZERO,
        }
    }

    /// Waits this long before answering. If the request's cancellation token fires meanwhile,
    /// the step answers [`PhaseError::Cancelled`] at once.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A call a [`ScriptedPhaseExecutor`] received.
#[derive(Debug, Clone)]
pub struct PhaseCall {
    /// The team context it was given.
    pub context: TeamContext,
    /// The request.
    pub request: PhaseRequest,
}

/// A [`PhaseExecutor`] that answers from per-phase scripts and records every call.
///
/// A phase's script is a list of [`Step`]s, taken in order by successive calls for the same
/// (phase, run, node); the last step repeats. Phases without a script answer with the default
/// step, which completes with the output `{}` unless set with
/// [`ScriptedPhaseExecutor::otherwise`].
#[derive(Debug)]
pub struct ScriptedPhaseExecutor {
    scripts: HashMap<String, Vec<Step>>,
    default: Step,
    calls: Mutex<Vec<PhaseCall>>,
    counts: Mutex<HashMap<(String, String, String), usize>>,
}

impl Default for ScriptedPhaseExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedPhaseExecutor {
    /// An executor with no scripts: every phase completes with the output `{}`.
    pub fn new() -> Self {
        Self {
            scripts: HashMap::new(),
            default: Step::succeed(Value::Object(Map::new())),
            calls: Mutex::new(Vec::new()),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Every call for `phase` answers with `step`.
    pub fn on(self, phase: impl Into<String>, step: Step) -> Self {
        self.on_sequence(phase, [step])
    }

    /// Calls for `phase` answer with `steps` in order; the last one repeats. An empty list
    /// removes the phase's script.
    pub fn on_sequence(
        mut self,
        phase: impl Into<String>,
        steps: impl IntoIterator<Item = Step>,
    ) -> Self {
        let phase = phase.into();
        let steps: Vec<Step> = steps.into_iter().collect();
        if steps.is_empty() {
            self.scripts.remove(&phase);
        } else {
            self.scripts.insert(phase, steps);
        }
        self
    }

    /// The first `failures` calls for `phase` (per run and node) return a retryable
    /// [`PhaseError::Failed`]; later calls answer with `then`.
    pub fn fail_first(self, phase: impl Into<String>, failures: usize, then: Step) -> Self {
        let steps = (1..=failures)
            .map(|k| {
                Step::error(PhaseError::Failed(format!(
                    "scripted failure {k} of {failures}"
                )))
            })
            .chain([then]);
        self.on_sequence(phase, steps)
    }

    /// Phases without a script answer with `step`.
    pub fn otherwise(mut self, step: Step) -> Self {
        self.default = step;
        self
    }

    /// Every call so far, in call order.
    pub fn calls(&self) -> Vec<PhaseCall> {
        lock(&self.calls).clone()
    }

    /// The calls for one phase, in call order.
    pub fn calls_for(&self, phase: &str) -> Vec<PhaseCall> {
        lock(&self.calls)
            .iter()
            .filter(|c| c.request.phase == phase)
            .cloned()
            .collect()
    }

    /// How many calls `phase` received.
    pub fn call_count(&self, phase: &str) -> usize {
        lock(&self.calls)
            .iter()
            .filter(|c| c.request.phase == phase)
            .count()
    }

    /// The phase of every call, in call order.
    pub fn phases_called(&self) -> Vec<String> {
        lock(&self.calls)
            .iter()
            .map(|c| c.request.phase.clone())
            .collect()
    }

    fn next_step(&self, request: &PhaseRequest) -> Step {
        let Some(steps) = self.scripts.get(&request.phase) else {
            return self.default.clone();
        };
        let key = (
            request.phase.clone(),
            request.run_id.clone(),
            request.node_id.clone(),
        );
        let mut counts = lock(&self.counts);
        let n = counts.entry(key).or_insert(0);
        let step = steps[(*n).min(steps.len() - 1)].clone();
        *n += 1;
        step
    }
}

#[async_trait]
impl PhaseExecutor for ScriptedPhaseExecutor {
    async fn execute_phase(
        &self,
        context: TeamContext,
        request: PhaseRequest,
    ) -> Result<PhaseResult, PhaseError> {
        let step = self.next_step(&request);
        let cancellation = request.cancellation.clone();
        lock(&self.calls).push(PhaseCall { context, request });
        if !step.delay.is_zero()
            && tokio::time::timeout(step.delay, cancellation.cancelled())
                .await
                .is_ok()
        {
            return Err(PhaseError::Cancelled);
        }
        step.reply
    }
}

#[cfg(test)]
mod tests {
    use maestro_dag::CancellationToken;
    use serde_json::json;

    use super::*;

    fn request(phase: &str, node: &str) -> PhaseRequest {
        PhaseRequest {
            phase: phase.into(),
            requirement: String::new(),
            run_id: "r".into(),
            node_id: node.into(),
            attempt: 1,
            idempotency_key: format!("r:{node}"),
            cancellation: CancellationToken::new(),
        }
    }

    fn context(phase: &str) -> TeamContext {
        DefaultContextFactory::build(ContextRequest {
            workflow_id: "w".into(),
            run_id: "r".into(),
            node_id: format!("phase_{phase}"),
            phase: phase.into(),
            attempt: 1,
            requirement: String::new(),
            inputs: json!({}),
            upstream: Vec::new(),
            contracts: Vec::new(),
        })
    }

    async fn call(
        exec: &ScriptedPhaseExecutor,
        req: PhaseRequest,
    ) -> Result<PhaseResult, PhaseError> {
        let ctx = context(&req.phase);
        exec.execute_phase(ctx, req).await
    }

    #[tokio::test]
    async fn sequences_advance_per_node_and_the_last_step_repeats() {
        let exec = ScriptedPhaseExecutor::new().fail_first("t", 1, Step::succeed(json!({"ok": 1})));
        assert_eq!(
            call(&exec, request("t", "a")).await.unwrap_err(),
            PhaseError::Failed("scripted failure 1 of 1".into())
        );
        // Another node of the same phase has its own count.
        assert!(call(&exec, request("t", "b")).await.is_err());
        for _ in 0..2 {
            assert_eq!(
                call(&exec, request("t", "a")).await.unwrap().output,
                json!({"ok": 1})
            );
        }
        assert_eq!(exec.call_count("t"), 4);
        assert!(
            call(&exec, request("other", "c"))
                .await
                .unwrap()
                .is_completed()
        );
        assert_eq!(exec.phases_called(), ["t", "t", "t", "t", "other"]);
    }

    #[tokio::test]
    async fn a_delayed_step_answers_cancelled_when_the_token_fires() {
        let exec = ScriptedPhaseExecutor::new().on(
            "slow",
            Step::succeed(json!({})).with_delay(Duration::from_secs(60)),
        );
        let req = request("slow", "n");
        req.cancellation.cancel();
        assert_eq!(call(&exec, req).await.unwrap_err(), PhaseError::Cancelled);
    }

    #[tokio::test]
    async fn a_failing_factory_records_the_call() {
        let f = RecordingContextFactory::failing(PhaseError::Context("no checkpoint".into()));
        let req = ContextRequest {
            workflow_id: "w".into(),
            run_id: "r".into(),
            node_id: "n".into(),
            phase: "design".into(),
            attempt: 1,
            requirement: String::new(),
            inputs: json!({}),
            upstream: Vec::new(),
            contracts: Vec::new(),
        };
        assert!(f.create_context(req).await.is_err());
        assert_eq!(f.calls_for("design").len(), 1);
    }
}
