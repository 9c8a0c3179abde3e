//! The `phase` executor end to end: SDLC workflows run on `maestro_dag::Engine` against a fake
//! team engine server, and [`HttpTeamEngine`]'s mapping of the team engine's answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use maestro_dag::{
    CancellationToken, Engine, MemoryStore, NodeRecord, NodeStatus, RetryPolicy, RunOutcome,
    RunStatus, RunStore, StartOptions, Workflow, WorkflowDefinition,
};
use maestro_executors::{BuiltinOptions, HttpTeamEngine, builtin_registry_with};
use maestro_phase::templates::linear_workflow;
use maestro_phase::{PhaseError, PhaseExecutor, PhaseRequest, PhaseResult, TeamContext};
use serde_json::json;

use crate::support::{Recorded, Reply, TestServer, eventually};

/// A fake team engine under `/team`: `testing` fails with "3 tests red", `flaky` answers 503,
/// `unknown` 404, everything else completes with an artifact named after the phase.
async fn team_engine() -> TestServer {
    TestServer::start(|r: &Recorded| {
        let phase = r.path.strip_prefix("/team/phases/").unwrap_or("?").to_string();
        match phase.as_str() {
            "testing" => Reply::json(200, json!({"status": "failed", "error": "3 tests red"})),
            "flaky" => Reply::text(503, "overloaded"),
            "unknown" => Reply::text(404, "no such phase"),
            _ => Reply::json(
                200,
                json!({
                    "status": "completed",
                    "output": {"summary": format!("{phase} done")},
                    "files": [format!("{phase}.md")],
                    "contracts": if phase == "design" { json!([{"name": "api"}]) } else { json!([]) },
                    "execution_time": 1.5,
                    "personas_executed": ["architect"],
                }),
            ),
        }
    })
    .await
}

/// Runs `definition` on an engine whose `phase` executor calls `server`, returning the outcome
/// and the node records by id.
async fn run(
    server: &TestServer,
    definition: WorkflowDefinition,
) -> (RunOutcome, impl Fn(&str) -> NodeRecord) {
    let registry =
        builtin_registry_with(BuiltinOptions::new().team_engine_url(server.url("/team/"))).unwrap();
    let workflow = Workflow::compile(definition, Some(&registry)).unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::new(store.clone(), registry);
    let outcome = engine
        .start(
            Arc::new(workflow),
            json!({"requirement": "A todo app"}),
            StartOptions::default(),
        )
        .await
        .unwrap()
        .wait()
        .await;
    let snapshot = store.load_run(&outcome.run_id).await.unwrap().unwrap();
    let node = move |id: &str| {
        snapshot
            .nodes
            .iter()
            .find(|n| &*n.node_id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
            .clone()
    };
    (outcome, node)
}

#[tokio::test]
async fn phases_run_on_the_team_engine_through_the_dag_engine() {
    let server = team_engine().await;
    let (outcome, node) = run(&server, linear_workflow("sdlc", ["design", "review"])).await;
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");

    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/team/phases/design", "/team/phases/review"]);
    let review = &requests[1];
    assert_eq!(review.method, "POST");
    assert_eq!(review.header("content-type"), Some("application/json"));
    let key = format!("{}:phase_review", outcome.run_id);
    assert_eq!(review.header("idempotency-key"), Some(key.as_str()));
    let body = review.json();
    assert_eq!(body["phase"], "review");
    assert_eq!(body["node_id"], "phase_review");
    assert_eq!(body["run_id"], &*outcome.run_id);
    assert_eq!(body["attempt"], 1);
    assert_eq!(body["idempotency_key"], key);
    let requirement = body["requirement"].as_str().unwrap();
    assert!(
        requirement.starts_with("## Original Requirement:\nA todo app"),
        "{requirement}"
    );
    assert!(
        requirement.contains("### phase_design:\n- design.md"),
        "{requirement}"
    );
    let context = &body["context"];
    assert_eq!(context["requirement"], "A todo app");
    assert_eq!(context["phase"], "review");
    assert_eq!(context["workflow_id"], "sdlc");
    assert_eq!(context["artifacts"]["phase_design"], json!(["design.md"]));
    assert_eq!(context["contracts"], json!([{"name": "api"}]));
    assert_eq!(
        context["previous_phase_outputs"]["phase_design"]["output"],
        json!({"summary": "design done"})
    );

    let design = node("phase_design");
    assert_eq!(design.status, NodeStatus::Completed);
    let output = design.output.unwrap();
    assert_eq!(output["status"], "completed");
    assert_eq!(output["artifacts"], json!(["design.md"]));
    assert_eq!(output["personas_executed"], json!(["architect"]));
}

#[tokio::test]
async fn a_failing_phase_fails_its_node_and_the_run() {
    let server = team_engine().await;
    let mut definition = linear_workflow("sdlc", ["design", "testing", "review"]);
    definition.nodes[1].retry = RetryPolicy::fixed(2, 1);
    let (outcome, node) = run(&server, definition).await;
    assert_eq!(outcome.status, RunStatus::Failed, "{outcome:?}");

    let testing = node("phase_testing");
    assert_eq!(testing.status, NodeStatus::Failed);
    assert_eq!(testing.attempt, 2, "a reported failure is retryable");
    assert_eq!(
        testing.error.as_deref(),
        Some("phase testing failed: 3 tests red")
    );
    assert_ne!(node("phase_review").status, NodeStatus::Completed);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/team/phases/design",
            "/team/phases/testing",
            "/team/phases/testing"
        ]
    );
}

#[tokio::test]
async fn an_unknown_phase_fails_at_once_and_an_unavailable_engine_is_retried() {
    let server = team_engine().await;
    let mut definition = linear_workflow("sdlc", ["unknown"]);
    definition.nodes[0].retry = RetryPolicy::fixed(3, 1);
    let (outcome, node) = run(&server, definition).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    let unknown = node("phase_unknown");
    assert_eq!(unknown.attempt, 1, "a rejected request is not retried");
    let error = unknown.error.unwrap();
    assert!(
        error.starts_with("phase unknown failed: team engine rejected the request: POST http://"),
        "{error}"
    );
    assert!(error.ends_with("/team/phases/unknown answered 404 Not Found: no such phase"));

    let mut definition = linear_workflow("sdlc", ["flaky"]);
    definition.nodes[0].retry = RetryPolicy::fixed(3, 1);
    let (outcome, node) = run(&server, definition).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    let flaky = node("phase_flaky");
    assert_eq!(flaky.attempt, 3);
    assert!(
        flaky
            .error
            .unwrap()
            .contains("team engine unavailable: POST http://"),
    );
}

fn phase_call(phase: &str) -> (TeamContext, PhaseRequest) {
    let context: TeamContext = serde_json::from_value(json!({
        "requirement": "r", "workflow_id": "w", "run_id": "run", "phase": phase
    }))
    .unwrap();
    let request = PhaseRequest {
        phase: phase.into(),
        requirement: "r".into(),
        run_id: "run".into(),
        node_id: format!("phase_{phase}"),
        attempt: 1,
        idempotency_key: format!("run:phase_{phase}"),
        cancellation: CancellationToken::new(),
    };
    (context, request)
}

async fn check(reply: Reply, want: Result<PhaseResult, &str>) {
    let server = TestServer::start(move |_| reply.clone()).await;
    let engine = HttpTeamEngine::new(&server.url("")).unwrap();
    let (context, request) = phase_call("design");
    let got = engine.execute_phase(context, request).await;
    match want {
        Ok(result) => assert_eq!(got.unwrap(), result),
        Err(code) => {
            let err = got.unwrap_err();
            assert_eq!(err.code(), code, "{err}");
        }
    }
}

#[tokio::test]
async fn team_engine_answers_map_to_results_and_errors() {
    check(
        Reply::json(200, json!({"status": "completed", "output": {"a": 1}})),
        Ok(PhaseResult::completed(json!({"a": 1}))),
    )
    .await;
    check(
        Reply::json(200, json!({"status": "failed", "error": "nope"})),
        Ok(PhaseResult::failed("nope")),
    )
    .await;
    check(
        Reply::json(200, json!({"output": {}})),
        Err("team_engine_rejected"),
    )
    .await;
    check(Reply::text(200, "<html>"), Err("team_engine_rejected")).await;
    check(Reply::text(400, "bad"), Err("team_engine_rejected")).await;
    check(Reply::text(500, "boom"), Err("team_engine_unavailable")).await;
    check(Reply::text(429, ""), Err("team_engine_unavailable")).await;
}

#[tokio::test]
async fn timeouts_and_cancellation_stop_the_call() {
    let server = TestServer::start(|_| {
        Reply::json(200, json!({"status": "completed"})).after(Duration::from_secs(30))
    })
    .await;
    let engine = HttpTeamEngine::new(&server.url("")).unwrap();

    let timed = engine.clone().with_timeout(Duration::from_millis(200));
    let (context, request) = phase_call("design");
    let err = timed.execute_phase(context, request).await.unwrap_err();
    assert!(
        matches!(&err, PhaseError::Unavailable(m) if m.ends_with("timed out after 200 ms")),
        "{err}"
    );

    let (context, request) = phase_call("design");
    let token = request.cancellation.clone();
    let call = tokio::spawn(async move { engine.execute_phase(context, request).await });
    assert!(eventually(|| server.requests().len() == 2).await);
    let started = Instant::now();
    token.cancel();
    assert_eq!(call.await.unwrap().unwrap_err(), PhaseError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(eventually(|| server.abandoned() == 2).await);
}

#[tokio::test]
async fn an_unreachable_team_engine_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let (context, request) = phase_call("design");
    let err = HttpTeamEngine::new(&url)
        .unwrap()
        .execute_phase(context, request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "team_engine_unavailable", "{err}");
    assert!(err.is_retryable());
}
