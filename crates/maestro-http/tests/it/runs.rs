//! Runs: start (idempotent), read with every node, list, control, human review, events.

use std::collections::BTreeSet;

use http::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, chain};

fn sleepy(id: &str, ms: u64) -> Value {
    json!({
        "id": id,
        "nodes": [
            {"id": "slow", "executor": "sleep", "config": {"duration_ms": ms}},
            {"id": "after", "executor": "noop", "depends_on": ["slow"]},
            {"id": "last", "executor": "noop", "depends_on": ["after"]},
        ]
    })
}

fn reviewed(id: &str) -> Value {
    json!({
        "id": id,
        "nodes": [
            {"id": "draft", "executor": "noop"},
            {"id": "review", "type": "human_review", "depends_on": ["draft"]},
            {"id": "publish", "executor": "noop", "depends_on": ["review"]},
        ]
    })
}

async fn post_empty(s: &TestServer, path: &str) -> crate::support::Res {
    s.send(Method::POST, path, &[], "").await
}

#[tokio::test]
async fn the_same_idempotency_key_starts_one_run() {
    let s = TestServer::start().await;
    s.create(&chain("idem")).await;
    let start = |key: &'static str| {
        let s = &s;
        async move {
            s.send(
                Method::POST,
                "/api/v1/workflows/idem/runs",
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                r#"{"inputs": {"n": 1}}"#,
            )
            .await
        }
    };
    let first = start("key-1").await;
    assert_eq!(first.status, 202, "{}", first.text);
    assert_eq!(first.body["workflow_id"], "idem");
    assert_eq!(first.body["version"], 1);
    assert!(first.body["status"].is_string());
    let again = start("key-1").await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(again.body["run_id"], first.body["run_id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = start("key-2").await;
    assert_ne!(other.body["run_id"], first.body["run_id"]);

    let runs = s.get("/api/v1/runs?workflow_id=idem").await;
    assert_eq!(
        runs.body["runs"].as_array().unwrap().len(),
        2,
        "{}",
        runs.text
    );
    s.send(
        Method::POST,
        "/api/v1/workflows/idem/runs",
        &[("idempotency-key", "")],
        "",
    )
    .await
    .problem(400, "invalid_idempotency_key");
}

#[tokio::test]
async fn a_run_shows_every_node_and_finishes_completed() {
    let s = TestServer::start().await;
    s.create(&sleepy("shown", 150)).await;
    let run_id = s.start_run("shown", json!({"who": "ada"})).await;
    let early = s.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(early.status, 200);
    let nodes: BTreeSet<&str> = early.body["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["after", "last", "slow"]),
        "{}",
        early.text
    );
    assert_eq!(early.body["nodes"]["last"]["status"], "pending");
    assert_eq!(early.body["nodes"]["last"]["attempts"], 0);
    assert_eq!(early.body["progress"]["total"], 3);
    assert_eq!(early.body["inputs"], json!({"who": "ada"}));

    let done = s.wait_status(&run_id, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["progress"],
        json!({"completed": 3, "finished": 3, "total": 3, "percent": 100.0})
    );
    assert_eq!(done["nodes"]["slow"]["output"], json!({"slept_ms": 150}));
    assert_eq!(done["nodes"]["slow"]["attempts"], 1);
    for key in ["created_at", "started_at", "finished_at"] {
        assert!(done[key].is_string(), "{key}: {done}");
    }
    assert!(done["nodes"]["last"]["finished_at"].is_string());

    let listed = s.get("/api/v1/runs?status=completed").await;
    assert_eq!(listed.body["runs"][0]["run_id"], run_id.as_str());
    s.get("/api/v1/runs?status=exploded")
        .await
        .problem(400, "invalid_query");
}

#[tokio::test]
async fn cancel_then_every_other_transition_is_409() {
    let s = TestServer::start().await;
    s.create(&sleepy("cancel", 10_000)).await;
    let run_id = s.start_run("cancel", json!({})).await;
    s.wait_node(&run_id, "slow", "running").await;
    let res = post_empty(&s, &format!("/api/v1/runs/{run_id}/cancel")).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let run = s.wait_status(&run_id, &["cancelled"]).await;
    assert_eq!(run["nodes"]["last"]["status"], "cancelled", "{run}");
    for action in ["cancel", "pause", "resume"] {
        post_empty(&s, &format!("/api/v1/runs/{run_id}/{action}"))
            .await
            .problem(409, "invalid_transition");
    }
    post_empty(&s, "/api/v1/runs/no-such-run/cancel")
        .await
        .problem(404, "run_not_found");
}

#[tokio::test]
async fn pause_and_resume() {
    let s = TestServer::start().await;
    s.create(&sleepy("pausable", 300)).await;
    let run_id = s.start_run("pausable", json!({})).await;
    s.wait_node(&run_id, "slow", "running").await;
    post_empty(&s, &format!("/api/v1/runs/{run_id}/resume"))
        .await
        .problem(409, "invalid_transition");
    let paused = post_empty(&s, &format!("/api/v1/runs/{run_id}/pause")).await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    assert_eq!(paused.body["status"], "paused");
    post_empty(&s, &format!("/api/v1/runs/{run_id}/pause"))
        .await
        .problem(409, "invalid_transition");
    // The running node finishes; nothing new starts while paused.
    s.wait_node(&run_id, "slow", "completed").await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let still = s.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(still.body["status"], "paused");
    assert_eq!(
        still.body["nodes"]["after"]["attempts"], 0,
        "{}",
        still.text
    );
    assert_ne!(
        still.body["nodes"]["after"]["status"], "running",
        "{}",
        still.text
    );
    let resumed = post_empty(&s, &format!("/api/v1/runs/{run_id}/resume")).await;
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    assert_eq!(
        s.wait_status(&run_id, &["completed"]).await["status"],
        "completed"
    );
}

#[tokio::test]
async fn approve_and_reject_a_human_review() {
    let s = TestServer::start().await;
    s.create(&reviewed("gate")).await;

    let run_id = s.start_run("gate", json!({})).await;
    s.wait_node(&run_id, "review", "waiting_approval").await;
    post_empty(&s, &format!("/api/v1/runs/{run_id}/nodes/draft/approve"))
        .await
        .problem(409, "invalid_transition");
    post_empty(&s, &format!("/api/v1/runs/{run_id}/nodes/ghost/approve"))
        .await
        .problem(404, "node_not_found");
    s.post(
        &format!("/api/v1/runs/{run_id}/nodes/review/approve"),
        &json!({"output": 7}),
    )
    .await
    .problem(422, "invalid_body");
    let ok = s
        .post(
            &format!("/api/v1/runs/{run_id}/nodes/review/approve"),
            &json!({"output": {"note": "fine"}}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let done = s.wait_status(&run_id, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["nodes"]["review"]["output"]["note"], "fine");
    assert_eq!(done["nodes"]["review"]["output"]["approved"], true);
    post_empty(&s, &format!("/api/v1/runs/{run_id}/nodes/review/approve"))
        .await
        .problem(409, "invalid_transition");

    // Rejected: the node fails with the reason, and so does the run; then retry and approve.
    let run_id = s.start_run("gate", json!({})).await;
    s.wait_node(&run_id, "review", "waiting_approval").await;
    let no = s
        .post(
            &format!("/api/v1/runs/{run_id}/nodes/review/reject"),
            &json!({"reason": "not good enough"}),
        )
        .await;
    assert_eq!(no.status, 200, "{}", no.text);
    let failed = s.wait_status(&run_id, &["failed"]).await;
    assert!(
        failed["nodes"]["review"]["error"]
            .as_str()
            .unwrap()
            .contains("not good enough"),
        "{failed}"
    );
    assert_eq!(failed["nodes"]["publish"]["status"], "skipped", "{failed}");
    let retried = post_empty(&s, &format!("/api/v1/runs/{run_id}/retry")).await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    s.wait_node(&run_id, "review", "waiting_approval").await;
    post_empty(&s, &format!("/api/v1/runs/{run_id}/retry"))
        .await
        .problem(409, "invalid_transition");
    let ok = post_empty(&s, &format!("/api/v1/runs/{run_id}/nodes/review/approve")).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(
        s.wait_status(&run_id, &["completed"]).await["nodes"]["draft"]["attempts"],
        1
    );
}

#[tokio::test]
async fn retry_runs_a_failed_run_from_its_failed_nodes() {
    let s = TestServer::start().await;
    s.create(&json!({
        "id": "flaky",
        "nodes": [
            {"id": "ok", "executor": "noop"},
            {"id": "flaky", "executor": "fail_once",
             "depends_on": ["ok"]},
        ]
    }))
    .await;
    let run_id = s.start_run("flaky", json!({})).await;
    let failed = s.wait_status(&run_id, &["failed", "completed"]).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["nodes"]["flaky"]["error"], "boom");
    let retried = post_empty(&s, &format!("/api/v1/runs/{run_id}/retry")).await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    assert_eq!(retried.body["status"], "running");
    let done = s.wait_status(&run_id, &["completed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["nodes"]["ok"]["attempts"], 1,
        "completed nodes never run again"
    );
    assert_eq!(done["nodes"]["flaky"]["output"], json!({"second": true}));
    post_empty(&s, &format!("/api/v1/runs/{run_id}/retry"))
        .await
        .problem(409, "invalid_transition");
}

#[tokio::test]
async fn events_page_with_after_and_limit() {
    let s = TestServer::start().await;
    s.create(&chain("evented")).await;
    let run_id = s.start_run("evented", json!({})).await;
    s.wait_status(&run_id, &["completed"]).await;
    let all = s.get(&format!("/api/v1/runs/{run_id}/events")).await;
    assert_eq!(all.status, 200, "{}", all.text);
    let events = all.body["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[0]["type"], "workflow_started");
    assert_eq!(events.last().unwrap()["type"], "workflow_completed");
    assert_eq!(all.body["next_after"], seqs.len());
    for field in [
        "seq",
        "type",
        "workflow_id",
        "run_id",
        "node_id",
        "data",
        "timestamp",
    ] {
        assert!(
            events[1].get(field).is_some(),
            "{field} missing: {}",
            events[1]
        );
    }

    let page = s
        .get(&format!("/api/v1/runs/{run_id}/events?after=2&limit=2"))
        .await;
    let seqs: Vec<u64> = page.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4]);
    assert_eq!(page.body["next_after"], 4);
    let past = s
        .get(&format!("/api/v1/runs/{run_id}/events?after=1000"))
        .await;
    assert_eq!(past.body["events"], json!([]));
    assert_eq!(past.body["next_after"], 1000);
    s.get("/api/v1/runs/nobody/events")
        .await
        .problem(404, "run_not_found");
    s.get(&format!("/api/v1/runs/{run_id}/events?after=-1"))
        .await
        .problem(400, "invalid_query");
}

#[tokio::test]
async fn unknown_things_are_404() {
    let s = TestServer::start().await;
    s.get("/api/v1/runs/nobody")
        .await
        .problem(404, "run_not_found");
    s.post("/api/v1/workflows/nobody/runs", &json!({}))
        .await
        .problem(404, "workflow_not_found");
    post_empty(&s, "/api/v1/runs/nobody/retry")
        .await
        .problem(404, "run_not_found");
    post_empty(&s, "/api/v1/runs/nobody/nodes/x/reject")
        .await
        .problem(404, "run_not_found");
}

#[tokio::test]
async fn a_run_keeps_its_pinned_version_after_the_definition_changes_or_goes() {
    let s = TestServer::start().await;
    s.create(&chain("pinned")).await;
    let run_id = s.start_run("pinned", json!({})).await;
    s.wait_status(&run_id, &["completed"]).await;
    let mut v2 = chain("pinned");
    v2["nodes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "d", "executor": "noop"}));
    s.create(&v2).await;
    let del = s
        .send(Method::DELETE, "/api/v1/workflows/pinned", &[], "")
        .await;
    assert_eq!(del.status, 204);
    let run = s.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run.body["version"], 1);
    let nodes: BTreeSet<&str> = run.body["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(nodes, BTreeSet::from(["a", "b", "c"]));
    s.post("/api/v1/workflows/pinned/runs", &json!({}))
        .await
        .problem(404, "workflow_not_found");
}
