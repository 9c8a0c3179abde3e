//! The original clients' routes: `/api/workflows…` and `/api/executions/{id}`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::TestServer;

/// The SDLC parallel shape on `noop` nodes: design fans out to backend and frontend, both join
/// into testing (6 nodes, 6 edges).
fn sdlc_parallel() -> Value {
    let phases = [
        ("requirement_analysis", vec![]),
        ("design", vec!["phase_requirement_analysis"]),
        ("backend_development", vec!["phase_design"]),
        ("frontend_development", vec!["phase_design"]),
        (
            "testing",
            vec!["phase_backend_development", "phase_frontend_development"],
        ),
        ("review", vec!["phase_testing"]),
    ];
    json!({
        "id": "sdlc_parallel",
        "name": "SDLC, backend and frontend in parallel",
        "metadata": {"type": "parallel"},
        "nodes": phases.iter().map(|(p, deps)| json!({
            "id": format!("phase_{p}"),
            "name": p,
            "type": "custom",
            "executor": "noop",
            "config": {"phase": p},
            "depends_on": deps,
        })).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn workflows_list_and_react_flow_shape() {
    let s = TestServer::start().await;
    s.create(&sdlc_parallel()).await;
    let list = s.get("/api/workflows").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body[0]["workflow_id"], "sdlc_parallel");
    assert_eq!(list.body[0]["type"], "parallel");
    assert_eq!(list.body[0]["nodes"], 6);
    assert_eq!(list.body[0]["edges"], 6);
    assert!(list.body[0]["created_at"].is_string());

    let wf = s.get("/api/workflows/sdlc_parallel").await;
    assert_eq!(wf.status, 200, "{}", wf.text);
    assert_eq!(
        wf.body["workflow_id"], "sdlc_parallel",
        "the real id, not a UUID"
    );
    assert_eq!(wf.body["type"], "parallel");
    let design = wf.body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "phase_design")
        .unwrap();
    assert_eq!(design["type"], "phase");
    assert_eq!(design["data"]["phase"], "design");
    assert_eq!(design["data"]["label"], "Design");
    assert_eq!(design["data"]["status"], "pending");
    assert_eq!(design["data"]["node_type"], "custom");
    assert!(design["position"]["x"].is_number() && design["position"]["y"].is_number());
    let edges = wf.body["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 6);
    assert!(edges.contains(&json!({
        "id": "phase_design-phase_backend_development",
        "source": "phase_design",
        "target": "phase_backend_development",
        "type": "smoothstep",
    })));

    // Never "create on the fly".
    s.get("/api/workflows/anything-goes")
        .await
        .problem(404, "workflow_not_found");
    s.get("/api/workflows/bad%20id")
        .await
        .problem(400, "invalid_id");
}

#[tokio::test]
async fn execute_then_execution_lists_every_node() {
    let s = TestServer::start().await;
    s.create(&sdlc_parallel()).await;
    let res = s
        .post(
            "/api/workflows/sdlc_parallel/execute",
            &json!({"requirement": "  build a todo app  ", "initial_context": {"team": "a"}}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body["workflow_id"], "sdlc_parallel");
    assert_eq!(res.body["status"], "running");
    assert!(res.body["started_at"].is_string());
    let id = res.body["execution_id"].as_str().unwrap().to_string();

    let run = s.wait_status(&id, &["completed", "failed"]).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["inputs"],
        json!({"requirement": "build a todo app", "team": "a"})
    );

    let exec = s.get(&format!("/api/executions/{id}")).await;
    assert_eq!(exec.status, 200, "{}", exec.text);
    assert_eq!(exec.body["execution_id"], id.as_str());
    assert_eq!(exec.body["status"], "completed");
    assert_eq!(exec.body["completed_nodes"], 6);
    assert_eq!(exec.body["total_nodes"], 6);
    assert_eq!(exec.body["progress_percent"], 100.0);
    let states = exec.body["node_states"].as_array().unwrap();
    let ids: BTreeSet<&str> = states
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 6, "{}", exec.text);
    for n in states {
        for field in [
            "status",
            "attempt_count",
            "started_at",
            "completed_at",
            "duration",
            "outputs",
            "artifacts",
            "error",
        ] {
            assert!(n.get(field).is_some(), "{field} missing in {n}");
        }
        assert_eq!(n["status"], "completed");
    }
    assert!(exec.body["completed_at"].is_string());
    s.get("/api/executions/nope")
        .await
        .problem(404, "execution_not_found");
}

#[tokio::test]
async fn execute_checks_its_body() {
    let s = TestServer::start().await;
    s.create(&sdlc_parallel()).await;
    let path = "/api/workflows/sdlc_parallel/execute";
    for body in [
        json!({"requirement": "   "}),
        json!({"requirement": ""}),
        json!({}),
        json!({"requirement": 42}),
        json!({"requirement": "x".repeat(10_001)}),
        json!({"requirement": "ok", "initial_context": [1, 2]}),
    ] {
        let res = s.post(path, &body).await;
        assert_eq!(res.status, 422, "{body}: {}", res.text);
        assert_eq!(res.body["code"], "invalid_body");
    }
    let max = s
        .post(path, &json!({"requirement": "x".repeat(10_000)}))
        .await;
    assert_eq!(max.status, 200, "{}", max.text);
    s.post(
        "/api/workflows/anything-goes/execute",
        &json!({"requirement": "hi"}),
    )
    .await
    .problem(404, "workflow_not_found");
    s.post(
        "/api/workflows/no$pe/execute",
        &json!({"requirement": "hi"}),
    )
    .await
    .problem(400, "invalid_id");
}
