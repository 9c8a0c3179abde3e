//! Phase workflows run end to end on the real engine and a `MemoryStore`, with the phases
//! answered by `ScriptedPhaseExecutor` and contexts recorded by `RecordingContextFactory`.

use std::sync::Arc;
use std::time::Duration;

use maestro_dag::{
    Engine, EventType, ExecutorRegistry, MemoryStore, NodeRecord, NodeStatus, RetryPolicy,
    RunOutcome, RunSnapshot, RunStatus, StartOptions, Workflow, WorkflowDefinition,
};
use maestro_phase::testing::{RecordingContextFactory, ScriptedPhaseExecutor, Step};
use maestro_phase::{PhaseError, PhaseNodeExecutor, PhaseResult, linear_workflow, templates};
use serde_json::{Value, json};

/// One finished run and the doubles it ran with.
struct Ran {
    outcome: RunOutcome,
    snapshot: RunSnapshot,
    events: Vec<EventType>,
    phases: Arc<ScriptedPhaseExecutor>,
    contexts: Arc<RecordingContextFactory>,
}

impl Ran {
    fn node(&self, phase: &str) -> &NodeRecord {
        let id = templates::phase_node_id(phase);
        self.snapshot
            .nodes
            .iter()
            .find(|n| *n.node_id == *id)
            .unwrap_or_else(|| panic!("{id} has no stored state"))
    }

    fn output(&self, phase: &str) -> &Value {
        self.node(phase)
            .output
            .as_deref()
            .expect("a completed node has an output")
    }

    fn status(&self, phase: &str) -> NodeStatus {
        self.snapshot
            .nodes
            .iter()
            .find(|n| *n.node_id == *templates::phase_node_id(phase))
            .map_or(NodeStatus::Pending, |n| n.status)
    }

    fn count(&self, event: EventType) -> usize {
        self.events.iter().filter(|e| **e == event).count()
    }
}

async fn run_with(
    def: WorkflowDefinition,
    phases: ScriptedPhaseExecutor,
    contexts: RecordingContextFactory,
    inputs: Value,
) -> Ran {
    let phases = Arc::new(phases);
    let contexts = Arc::new(contexts);
    let mut executors = ExecutorRegistry::new();
    executors.register(
        templates::PHASE_EXECUTOR,
        PhaseNodeExecutor::new(phases.clone(), contexts.clone()),
    );
    let workflow = Workflow::compile(def, Some(&executors)).expect("a valid workflow");
    let engine = Engine::new(Arc::new(MemoryStore::new()), executors);
    let handle = engine
        .start(Arc::new(workflow), inputs, StartOptions::default())
        .await
        .unwrap();
    let run_id = handle.run_id().to_string();
    let outcome = tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("the run finishes");
    let snapshot = engine.store().load_run(&run_id).await.unwrap().unwrap();
    let events = engine
        .store()
        .events(&run_id, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    Ran {
        outcome,
        snapshot,
        events,
        phases,
        contexts,
    }
}

async fn run(def: WorkflowDefinition, phases: ScriptedPhaseExecutor) -> Ran {
    run_with(
        def,
        phases,
        RecordingContextFactory::new(),
        json!({"requirement": "Build a todo app"}),
    )
    .await
}

fn with_retry(mut def: WorkflowDefinition, phase: &str, attempts: u32) -> WorkflowDefinition {
    let id = templates::phase_node_id(phase);
    let node = def.nodes.iter_mut().find(|n| n.id == id).unwrap();
    node.retry = RetryPolicy::fixed(attempts, 1);
    def
}

#[tokio::test]
async fn every_phase_completes_with_the_documented_output() {
    let phases = ScriptedPhaseExecutor::new().on(
        "review",
        Step::reply(
            PhaseResult::completed(json!({"verdict": "ship it"}))
                .with_execution_time(1.5)
                .with_personas(["reviewer", "architect"]),
        ),
    );
    let ran = run(templates::sdlc_parallel(), phases).await;
    assert_eq!(ran.outcome.status, RunStatus::Completed);
    assert_eq!(ran.outcome.completed, 6);
    assert_eq!(ran.phases.calls().len(), 6);
    assert_eq!(
        *ran.output("review"),
        json!({
            "phase": "review",
            "status": "completed",
            "output": {"verdict": "ship it"},
            "artifacts": [],
            "contracts": [],
            "execution_time": 1.5,
            "personas_executed": ["reviewer", "architect"],
        })
    );
}

#[tokio::test]
async fn phases_run_after_their_dependencies() {
    let ran = run(templates::sdlc_parallel(), ScriptedPhaseExecutor::new()).await;
    let order = ran.phases.phases_called();
    let pos = |p: &str| order.iter().position(|x| x == p).unwrap();
    assert_eq!(pos("requirement_analysis"), 0);
    assert_eq!(pos("design"), 1);
    assert!(pos("testing") > pos("backend_development").max(pos("frontend_development")));
    assert_eq!(pos("review"), 5);
}

#[tokio::test]
async fn a_phase_reporting_failure_fails_its_node_and_the_run() {
    let phases =
        ScriptedPhaseExecutor::new().on("design", Step::report_failure("quality gate missed"));
    let ran = run(templates::sdlc_parallel(), phases).await;
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert_eq!(ran.status("requirement_analysis"), NodeStatus::Completed);
    assert_eq!(ran.status("design"), NodeStatus::Failed);
    let error = ran.node("design").error.as_deref().unwrap();
    assert!(error.contains("phase design failed") && error.contains("quality gate missed"));
    assert!(ran.node("design").output.is_none());
    for later in [
        "backend_development",
        "frontend_development",
        "testing",
        "review",
    ] {
        assert_eq!(ran.status(later), NodeStatus::Skipped, "{later}");
        assert_eq!(ran.phases.call_count(later), 0, "{later}");
    }
    assert_eq!(ran.count(EventType::WorkflowCompleted), 0);
    assert_eq!(ran.count(EventType::WorkflowFailed), 1);
    assert_eq!(ran.count(EventType::NodeFailed), 1);
}

#[tokio::test]
async fn a_failure_without_a_reason_still_fails() {
    let mut silent = PhaseResult::failed("");
    silent.error = None;
    let phases = ScriptedPhaseExecutor::new().on("design", Step::reply(silent));
    let ran = run(linear_workflow("w", ["design"]), phases).await;
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert!(
        ran.node("design")
            .error
            .as_deref()
            .unwrap()
            .contains("without a reason")
    );
}

#[tokio::test]
async fn a_phase_returning_an_error_fails_its_node_and_the_run() {
    let phases = ScriptedPhaseExecutor::new().on(
        "testing",
        Step::error(PhaseError::Unavailable("connection refused".into())),
    );
    let ran = run(templates::sdlc_linear(), phases).await;
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert_eq!(ran.outcome.completed, 4);
    assert_eq!(ran.status("testing"), NodeStatus::Failed);
    assert_eq!(ran.status("review"), NodeStatus::Skipped);
    let error = ran.node("testing").error.as_deref().unwrap();
    assert!(
        error.contains("team engine unavailable: connection refused"),
        "{error}"
    );
}

#[tokio::test]
async fn artifacts_and_contracts_flow_to_dependent_phases() {
    let contract = json!({"name": "todo-api", "kind": "openapi"});
    let phases = ScriptedPhaseExecutor::new()
        .on(
            "design",
            Step::reply(
                PhaseResult::completed(json!({"generated_files": ["schema.sql"]}))
                    .with_artifacts(["design.md"])
                    .with_contracts([contract.clone()]),
            ),
        )
        .on(
            "backend_development",
            Step::reply(
                PhaseResult::completed(json!({"files": ["api.rs"]}))
                    .with_contracts([contract.clone()]),
            ),
        );
    let ran = run(templates::sdlc_parallel(), phases).await;
    assert_eq!(ran.outcome.status, RunStatus::Completed);

    // Artifacts from the result and from `files` / `generated_files` land in `artifacts`.
    assert_eq!(
        ran.output("design")["artifacts"],
        json!(["design.md", "schema.sql"])
    );
    assert_eq!(ran.output("design")["contracts"], json!([contract]));
    assert_eq!(
        ran.output("backend_development")["artifacts"],
        json!(["api.rs"])
    );

    // Both fan-out phases see design's artifacts and contract.
    for phase in ["backend_development", "frontend_development"] {
        let call = &ran.phases.calls_for(phase)[0];
        let text = &call.request.requirement;
        assert!(
            text.contains("\n### phase_design:\n- design.md\n- schema.sql"),
            "{text}"
        );
        assert!(text.contains("## Previous Phase Contracts:"), "{text}");
        assert_eq!(call.context.contracts, vec![contract.clone()]);
        assert_eq!(
            call.context.artifacts["phase_design"],
            vec![json!("design.md"), json!("schema.sql")]
        );
    }

    // Testing sees backend's artifacts, and the contract backend passed on once.
    let testing = &ran.phases.calls_for("testing")[0];
    assert!(
        testing
            .request
            .requirement
            .contains("### phase_backend_development:\n- api.rs")
    );
    assert_eq!(testing.context.contracts, vec![contract]);
}

#[tokio::test]
async fn the_context_factory_receives_the_upstream_outputs() {
    let phases = ScriptedPhaseExecutor::new()
        .on(
            "backend_development",
            Step::succeed(json!({"side": "back"})),
        )
        .on(
            "frontend_development",
            Step::succeed(json!({"side": "front"})),
        );
    let ran = run_with(
        templates::sdlc_parallel(),
        phases,
        RecordingContextFactory::new(),
        json!({"requirement": "Build a todo app", "team": "blue"}),
    )
    .await;
    let run_id = &*ran.snapshot.run.run_id;
    assert_eq!(ran.contexts.calls().len(), 6);

    let first = &ran.contexts.calls_for("requirement_analysis")[0];
    assert!(first.upstream.is_empty());
    assert_eq!(first.requirement, "Build a todo app");

    let testing = &ran.contexts.calls_for("testing")[0];
    assert_eq!(testing.run_id, run_id);
    assert_eq!(testing.workflow_id, "sdlc_parallel");
    assert_eq!(testing.node_id, "phase_testing");
    assert_eq!(testing.inputs["team"], "blue");
    let upstream: Vec<(&str, &Value)> = testing
        .upstream
        .iter()
        .map(|u| (u.node_id.as_str(), &u.output["output"]))
        .collect();
    assert_eq!(
        upstream,
        [
            ("phase_backend_development", &json!({"side": "back"})),
            ("phase_frontend_development", &json!({"side": "front"})),
        ]
    );

    // The context the phase executor got is the one the factory made.
    let context = &ran.phases.calls_for("testing")[0].context;
    assert_eq!(context.execution_mode, "phased");
    assert_eq!(context.requirement, "Build a todo app");
    assert_eq!(context.run_id, run_id);
    assert_eq!(
        context.previous_phase_outputs["phase_frontend_development"]["output"],
        json!({"side": "front"})
    );
}

#[tokio::test]
async fn the_phase_request_identifies_run_node_and_attempt() {
    let ran = run(
        linear_workflow("w", ["design"]),
        ScriptedPhaseExecutor::new(),
    )
    .await;
    let request = &ran.phases.calls()[0].request;
    let run_id = &*ran.snapshot.run.run_id;
    assert_eq!(request.phase, "design");
    assert_eq!(request.node_id, "phase_design");
    assert_eq!(request.run_id, run_id);
    assert_eq!(request.attempt, 1);
    assert_eq!(request.idempotency_key, format!("{run_id}:phase_design"));
    assert_eq!(
        request.requirement,
        "## Original Requirement:\nBuild a todo app\n"
    );
}

#[tokio::test]
async fn a_failing_context_factory_fails_the_node() {
    let ran = run_with(
        linear_workflow("w", ["design"]),
        ScriptedPhaseExecutor::new(),
        RecordingContextFactory::failing(PhaseError::Context("no checkpoint".into())),
        json!({}),
    )
    .await;
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert_eq!(ran.contexts.calls().len(), 1);
    assert_eq!(ran.phases.calls().len(), 0);
    assert!(
        ran.node("design")
            .error
            .as_deref()
            .unwrap()
            .contains("no checkpoint")
    );
}

#[tokio::test]
async fn a_phase_failing_its_first_attempts_is_retried_to_success() {
    let def = with_retry(templates::sdlc_linear(), "design", 3);
    let phases =
        ScriptedPhaseExecutor::new().fail_first("design", 2, Step::succeed(json!({"ok": true})));
    let ran = run(def, phases).await;
    assert_eq!(ran.outcome.status, RunStatus::Completed);
    assert_eq!(ran.node("design").attempt, 3);
    assert_eq!(ran.output("design")["output"], json!({"ok": true}));
    assert_eq!(ran.count(EventType::NodeRetry), 2);

    let calls = ran.phases.calls_for("design");
    let attempts: Vec<u32> = calls.iter().map(|c| c.request.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(
        calls
            .iter()
            .all(|c| c.request.idempotency_key == calls[0].request.idempotency_key)
    );
    assert_eq!(ran.contexts.calls_for("design").len(), 3);
}

#[tokio::test]
async fn a_phase_failing_more_often_than_its_attempts_fails_the_run() {
    let def = with_retry(templates::sdlc_linear(), "design", 3);
    let phases = ScriptedPhaseExecutor::new().fail_first("design", 3, Step::succeed(json!({})));
    let ran = run(def, phases).await;
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert_eq!(ran.status("design"), NodeStatus::Failed);
    assert_eq!(ran.phases.call_count("design"), 3);
    let error = ran.node("design").error.as_deref().unwrap();
    assert!(error.contains("scripted failure 3 of 3"), "{error}");
}

#[tokio::test]
async fn reported_failures_are_retried_too() {
    let def = with_retry(linear_workflow("w", ["testing"]), "testing", 2);
    let phases = ScriptedPhaseExecutor::new().on_sequence(
        "testing",
        [
            Step::report_failure("flaky test"),
            Step::succeed(json!({"passed": 10})),
        ],
    );
    let ran = run(def, phases).await;
    assert_eq!(ran.outcome.status, RunStatus::Completed);
    assert_eq!(ran.phases.call_count("testing"), 2);
}

#[tokio::test]
async fn a_rejected_request_is_not_retried() {
    let def = with_retry(linear_workflow("w", ["design"]), "design", 5);
    let phases = ScriptedPhaseExecutor::new().on(
        "design",
        Step::error(PhaseError::Rejected("unknown phase".into())),
    );
    let ran = run(def, phases).await;
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert_eq!(ran.phases.call_count("design"), 1);
    assert_eq!(ran.count(EventType::NodeRetry), 0);
}

#[tokio::test]
async fn a_timed_out_phase_sees_its_cancellation_token_fire() {
    let mut def = linear_workflow("w", ["design"]);
    def.nodes[0].timeout_ms = Some(20);
    let phases = ScriptedPhaseExecutor::new().on(
        "design",
        Step::succeed(json!({})).with_delay(Duration::from_secs(30)),
    );
    let ran = run(def, phases).await;
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert!(
        ran.node("design")
            .error
            .as_deref()
            .unwrap()
            .contains("timed out")
    );
    assert!(ran.phases.calls()[0].request.cancellation.is_cancelled());
}

#[tokio::test]
async fn a_bad_requirement_input_fails_without_calling_the_team_engine() {
    let ran = run_with(
        linear_workflow("w", ["design"]),
        ScriptedPhaseExecutor::new(),
        RecordingContextFactory::new(),
        json!({"requirement": 42}),
    )
    .await;
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert!(ran.phases.calls().is_empty() && ran.contexts.calls().is_empty());
}
