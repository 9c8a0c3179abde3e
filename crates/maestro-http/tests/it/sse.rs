//! Server-Sent Events: `GET /api/v1/runs/{run_id}/events` with `Accept: text/event-stream`.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use maestro_dag::{Engine, LeaseStore, MemoryStore, Store, StoreResolver, Worker, WorkerConfig};
use maestro_http::{ApiContext, HttpConfig};
use serde_json::{Value, json};

use crate::security::raw;
use crate::support::{TestServer, registry};

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn slow(id: &str) -> Value {
    json!({
        "id": id,
        "nodes": [
            {"id": "a", "executor": "sleep", "config": {"duration_ms": 150}},
            {"id": "b", "executor": "noop", "depends_on": ["a"]},
            {"id": "c", "executor": "sleep", "config": {"duration_ms": 100}, "depends_on": ["b"]},
        ]
    })
}

#[tokio::test]
async fn a_live_stream_runs_from_the_first_event_to_the_last_without_gaps() {
    let s = TestServer::start().await;
    s.create(&slow("live")).await;
    let run_id = s.start_run("live", json!({})).await;
    let events = s
        .sse(&format!("/api/v1/runs/{run_id}/events"), &[], usize::MAX)
        .await;
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[0]["type"], "workflow_started");
    assert_eq!(events.last().unwrap()["type"], "workflow_completed");
    let stored = s.get(&format!("/api/v1/runs/{run_id}/events")).await;
    assert_eq!(
        stored.body["events"].as_array().unwrap().len(),
        events.len()
    );

    // Resuming: `after=` and `Last-Event-ID` (which wins).
    let resumed = s
        .sse(
            &format!("/api/v1/runs/{run_id}/events?after=2"),
            &[],
            usize::MAX,
        )
        .await;
    assert_eq!(seqs(&resumed)[0], 3);
    assert_eq!(resumed.len(), events.len() - 2);
    let by_id = s
        .sse(
            &format!("/api/v1/runs/{run_id}/events?after=1"),
            &[("last-event-id", "4")],
            1,
        )
        .await;
    assert_eq!(seqs(&by_id), [5]);

    // Resuming a finished run at (or past) its last event: nothing more will come, so the
    // answer is 204 at once (which also stops an `EventSource` from reconnecting), not a
    // stream of keep-alives.
    let last = events.len().to_string();
    let path = format!("/api/v1/runs/{run_id}/events");
    let sse = ("accept", "text/event-stream");
    for (path, headers) in [
        (format!("{path}?after={last}"), vec![sse]),
        (path.clone(), vec![sse, ("last-event-id", last.as_str())]),
    ] {
        let res = s.send(Method::GET, &path, &headers, "").await;
        assert_eq!(res.status, 204, "{path} {headers:?}: {}", res.text);
    }
}

#[tokio::test]
async fn reconnecting_mid_run_misses_nothing() {
    let s = TestServer::start().await;
    s.create(&slow("mid")).await;
    let run_id = s.start_run("mid", json!({})).await;
    let path = format!("/api/v1/runs/{run_id}/events");
    let first = s.sse(&path, &[], 2).await;
    assert_eq!(seqs(&first), [1, 2]);
    let rest = s.sse(&format!("{path}?after=2"), &[], usize::MAX).await;
    let all: Vec<u64> = seqs(&first).into_iter().chain(seqs(&rest)).collect();
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>());
    assert_eq!(rest.last().unwrap()["type"], "workflow_completed");
}

#[tokio::test]
async fn bad_stream_requests_are_4xx() {
    let s = TestServer::start().await;
    let res = s
        .send(
            Method::GET,
            "/api/v1/runs/nobody/events",
            &[("accept", "text/event-stream")],
            "",
        )
        .await;
    res.problem(404, "run_not_found");
    s.create(&slow("bad")).await;
    let run_id = s.start_run("bad", json!({})).await;
    s.send(
        Method::GET,
        &format!("/api/v1/runs/{run_id}/events"),
        &[("accept", "text/event-stream"), ("last-event-id", "x")],
        "",
    )
    .await
    .problem(400, "invalid_header");
}

#[tokio::test]
async fn a_replica_streams_a_run_another_replica_drives() {
    let store = Arc::new(MemoryStore::new());
    let mut servers = Vec::new();
    for owner in ["a", "b"] {
        let engine = Engine::new(store.clone(), registry());
        let worker = Worker::new(
            engine.clone(),
            store.clone() as Arc<dyn LeaseStore>,
            Arc::new(StoreResolver::new(store.clone(), registry())),
            WorkerConfig {
                owner: owner.into(),
                ..WorkerConfig::default()
            },
        );
        let ctx = ApiContext::new(
            engine,
            store.clone() as Arc<dyn Store>,
            HttpConfig::default(),
        )
        .with_worker(worker);
        servers.push(TestServer::start_on(ctx).await);
    }
    let (a, b) = (&servers[0], &servers[1]);
    a.create(&json!({
        "id": "gate",
        "nodes": [
            {"id": "draft", "executor": "noop"},
            {"id": "review", "type": "human_review", "depends_on": ["draft"]},
            {"id": "publish", "executor": "noop", "depends_on": ["review"]},
        ]
    }))
    .await;
    let run_id = a.start_run("gate", json!({})).await;
    a.wait_node(&run_id, "review", "waiting_approval").await;
    let approve = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ok = a
            .send(
                Method::POST,
                &format!("/api/v1/runs/{run_id}/nodes/review/approve"),
                &[],
                "",
            )
            .await;
        assert_eq!(ok.status, 200, "{}", ok.text);
    };
    let path = format!("/api/v1/runs/{run_id}/events");
    let (events, ()) = tokio::join!(b.sse(&path, &[], usize::MAX), approve);
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events.last().unwrap()["type"], "workflow_completed");
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let s = TestServer::start().await;
    s.create(&json!({
        "id": "waits",
        "nodes": [{"id": "review", "type": "human_review"}]
    }))
    .await;
    let run_id = s.start_run("waits", json!({})).await;
    s.wait_node(&run_id, "review", "waiting_approval").await;
    // A stream that would stay open as long as the run waits for approval.
    let request = format!(
        "GET /api/v1/runs/{run_id}/events HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n"
    );
    let addr = s.addr;
    let reader = tokio::spawn(async move { raw(addr, request.as_bytes()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !reader.is_finished(),
        "the stream stays open while the run waits"
    );
    let started = std::time::Instant::now();
    s.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the drain waited for the stream"
    );
    let seen = reader.await.unwrap();
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        seen.contains("\"type\":\"node_waiting_approval\""),
        "{seen}"
    );
}
