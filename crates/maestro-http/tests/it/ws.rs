//! WebSockets: `GET /api/v1/runs/{run_id}/ws`, `GET /api/v1/workflows/{id}/ws` and the
//! original clients' `GET /ws/workflow/{id}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use maestro_dag::{Engine, LeaseStore, MemoryStore, Store, StoreResolver, Worker, WorkerConfig};
use maestro_health::{Health, HealthConfig};
use maestro_http::{ApiContext, HttpConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestServer, registry, ws_connect, ws_read};

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn gap_free(events: &[Value]) {
    assert_eq!(
        seqs(events),
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "{events:#?}"
    );
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
async fn a_run_socket_sends_every_event_from_the_first_to_workflow_completed() {
    let s = TestServer::start().await;
    s.create(&slow("live")).await;
    let run_id = s.start_run("live", json!({})).await;
    let mut ws = s.ws(&format!("/api/v1/runs/{run_id}/ws")).await.unwrap();
    let log = ws_read(&mut ws, usize::MAX).await;
    let events = &log.messages;
    gap_free(events);
    assert_eq!(events[0]["type"], "workflow_started");
    assert_eq!(events.last().unwrap()["type"], "workflow_completed");
    assert_eq!(log.close, Some(1000), "closed normally after the run ended");
    for e in events {
        for field in [
            "seq",
            "type",
            "workflow_id",
            "run_id",
            "node_id",
            "data",
            "timestamp",
        ] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
        assert_eq!(e["run_id"], run_id.as_str());
    }
    let stored = s.get(&format!("/api/v1/runs/{run_id}/events")).await;
    assert_eq!(stored.body["events"].as_array().unwrap(), events);

    // A finished run: `after` replays the rest, and past the end the socket closes at once.
    let mut ws = s
        .ws(&format!("/api/v1/runs/{run_id}/ws?after=3"))
        .await
        .unwrap();
    let rest = ws_read(&mut ws, usize::MAX).await;
    assert_eq!(rest.messages, events[3..]);
    let mut ws = s
        .ws(&format!("/api/v1/runs/{run_id}/ws?after={}", events.len()))
        .await
        .unwrap();
    let none = ws_read(&mut ws, usize::MAX).await;
    assert!(none.messages.is_empty());
    assert_eq!(none.close, Some(1000));
}

#[tokio::test]
async fn reconnecting_with_after_mid_run_misses_nothing() {
    let s = TestServer::start().await;
    s.create(&slow("mid")).await;
    let run_id = s.start_run("mid", json!({})).await;
    let path = format!("/api/v1/runs/{run_id}/ws");
    let mut ws = s.ws(&path).await.unwrap();
    let first = ws_read(&mut ws, 2).await;
    assert_eq!(seqs(&first.messages), [1, 2]);
    // The client goes away mid-run, without a close handshake.
    drop(ws);
    let status = s.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_ne!(
        status.body["status"], "completed",
        "the reconnect happens mid-run"
    );
    let mut ws = s.ws(&format!("{path}?after=2")).await.unwrap();
    let rest = ws_read(&mut ws, usize::MAX).await;
    let all: Vec<Value> = first.messages.into_iter().chain(rest.messages).collect();
    gap_free(&all);
    assert_eq!(all.last().unwrap()["type"], "workflow_completed");
}

/// Groups a workflow socket's messages by run.
fn by_run(messages: &[Value], run_key: &str) -> BTreeMap<String, Vec<Value>> {
    let mut runs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in messages {
        runs.entry(m[run_key].as_str().unwrap().to_string())
            .or_default()
            .push(m.clone());
    }
    runs
}

/// Reads a workflow socket until `n` runs have sent their terminal event.
async fn read_runs(ws: &mut crate::support::Ws, n: usize) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let log = ws_read(ws, 1).await;
        assert!(log.close.is_none(), "closed early: {:?}", log.close);
        all.extend(log.messages);
        let done = all
            .iter()
            .filter(|m| m["type"] == "workflow_completed")
            .count();
        if done == n {
            return all;
        }
    }
}

#[tokio::test]
async fn a_workflow_socket_sees_the_events_of_every_run() {
    let s = TestServer::start().await;
    s.create(&slow("both")).await;
    s.create(&slow("other")).await;
    let mut ws = s.ws("/api/v1/workflows/both/ws").await.unwrap();
    let r1 = s.start_run("both", json!({})).await;
    let _elsewhere = s.start_run("other", json!({})).await;
    let r2 = s.start_run("both", json!({})).await;
    let all = read_runs(&mut ws, 2).await;
    let runs = by_run(&all, "run_id");
    assert_eq!(
        runs.keys().cloned().collect::<Vec<_>>(),
        {
            let mut v = vec![r1.clone(), r2.clone()];
            v.sort();
            v
        },
        "only this workflow's runs"
    );
    for (run_id, events) in &runs {
        gap_free(events);
        let stored = s.get(&format!("/api/v1/runs/{run_id}/events")).await;
        assert_eq!(stored.body["events"].as_array().unwrap(), events);
    }
}

#[tokio::test]
async fn a_workflow_socket_replays_active_runs_with_after() {
    let s = TestServer::start().await;
    s.create(&json!({
        "id": "waits",
        "nodes": [
            {"id": "review", "type": "human_review"},
            {"id": "after", "executor": "noop", "depends_on": ["review"]},
        ]
    }))
    .await;
    let run_id = s.start_run("waits", json!({})).await;
    s.wait_node(&run_id, "review", "waiting_approval").await;
    // Without `after`: only what happens from now on.
    let mut live = s.ws("/api/v1/workflows/waits/ws").await.unwrap();
    // With `after=0`: the active run's whole log first.
    let mut replay = s.ws("/api/v1/workflows/waits/ws?after=0").await.unwrap();
    let head = ws_read(&mut replay, 2).await.messages;
    gap_free(&head);
    assert_eq!(head[1]["type"], "node_waiting_approval");
    let ok = s
        .send(
            http::Method::POST,
            &format!("/api/v1/runs/{run_id}/nodes/review/approve"),
            &[],
            "",
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let tail = read_runs(&mut replay, 1).await;
    let all: Vec<Value> = head.into_iter().chain(tail).collect();
    gap_free(&all);
    let new_only = read_runs(&mut live, 1).await;
    assert_eq!(new_only[0]["seq"], 3, "{new_only:#?}");
    assert_eq!(new_only, all[2..]);
}

#[tokio::test]
async fn the_compat_socket_answers_ping_and_sends_each_event_once_in_the_original_shape() {
    let s = TestServer::start().await;
    s.create(&slow("sdlc_linear")).await;
    let mut ws = s.ws("/ws/workflow/sdlc_linear").await.unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    let pong = ws_read(&mut ws, 1).await.messages.remove(0);
    assert_eq!(pong["type"], "pong");
    assert!(pong["timestamp"].is_string(), "{pong}");

    let started = s
        .post(
            "/api/workflows/sdlc_linear/execute",
            &json!({"requirement": "build it"}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text);
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    let all = read_runs(&mut ws, 1).await;
    let completions = all
        .iter()
        .filter(|m| m["type"] == "workflow_completed")
        .count();
    assert_eq!(completions, 1, "exactly one completion message: {all:#?}");
    for m in &all {
        assert_eq!(m["execution_id"], execution_id.as_str());
        assert_eq!(m["workflow_id"], "sdlc_linear");
        for field in ["type", "timestamp", "node_id", "data"] {
            assert!(m.get(field).is_some(), "{field} missing in {m}");
        }
    }
    gap_free(&all);
    let stored = s.get(&format!("/api/v1/runs/{execution_id}/events")).await;
    assert_eq!(
        stored.body["events"].as_array().unwrap().len(),
        all.len(),
        "one message per event"
    );

    // Still answering after the run, and protocol pings too.
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws_read(&mut ws, 1).await.messages[0]["type"], "pong");
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a pong within 5 s");
    match answer {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[tokio::test]
async fn sockets_past_the_limits_are_refused_with_503() {
    let config = HttpConfig::default().with_websocket_limits(2, 1);
    let s = TestServer::start_with(config).await;
    s.create(&json!({"id": "w1", "nodes": [{"id": "r", "type": "human_review"}]}))
        .await;
    s.create(&json!({"id": "w2", "nodes": [{"id": "r", "type": "human_review"}]}))
        .await;
    let first = s.ws("/api/v1/workflows/w1/ws").await.unwrap();
    let (status, body) = s.ws("/api/v1/workflows/w1/ws").await.unwrap_err();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "too_many_websockets");
    let (status, _) = s.ws("/ws/workflow/w1").await.unwrap_err();
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the compat socket counts for its workflow"
    );
    let _second = s.ws("/api/v1/workflows/w2/ws").await.unwrap();
    let run_id = s.start_run("w1", json!({})).await;
    let (status, body) = s
        .ws(&format!("/api/v1/runs/{run_id}/ws"))
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["detail"].as_str().unwrap().contains("server"),
        "{body}"
    );

    // A closed socket frees its place.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match s.ws("/api/v1/workflows/w1/ws").await {
            Ok(_) => break,
            Err((status, _)) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                assert!(tokio::time::Instant::now() < deadline, "never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn sockets_need_the_token_before_the_upgrade() {
    let config = HttpConfig::default().with_api_tokens(["t0ken"]);
    let s = TestServer::start_with(config).await.with_token("t0ken");
    s.create(&slow("secret")).await;
    let run_id = s.start_run("secret", json!({})).await;
    for path in [
        format!("/api/v1/runs/{run_id}/ws"),
        "/api/v1/workflows/secret/ws".to_string(),
        "/ws/workflow/secret".to_string(),
        "/ws/workflow/unknown".to_string(),
    ] {
        let (status, body) = ws_connect(s.addr, &path, None).await.unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["code"], "unauthorized");
        let (status, _) = ws_connect(s.addr, &path, Some("wrong")).await.unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let mut ws = s.ws(&format!("/api/v1/runs/{run_id}/ws")).await.unwrap();
    let log = ws_read(&mut ws, usize::MAX).await;
    assert_eq!(log.messages.last().unwrap()["type"], "workflow_completed");
}

#[tokio::test]
async fn bad_socket_requests_are_4xx_before_any_upgrade() {
    let s = TestServer::start().await;
    let (status, body) = s.ws("/api/v1/runs/nobody/ws").await.unwrap_err();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "run_not_found");
    let (status, body) = s.ws("/api/v1/workflows/nobody/ws").await.unwrap_err();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "workflow_not_found");
    let (status, body) = s.ws("/ws/workflow/bad%20id").await.unwrap_err();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_id");
    s.create(&slow("plain")).await;
    let run_id = s.start_run("plain", json!({})).await;
    let (status, body) = s
        .ws(&format!("/api/v1/runs/{run_id}/ws?after=x"))
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_query");
    // A plain GET (no handshake), over HTTP/1.1 and HTTP/2.
    s.get(&format!("/api/v1/runs/{run_id}/ws"))
        .await
        .problem(426, "upgrade_required");
    let h2 = TestServer::start().await.http2();
    h2.create(&slow("plain")).await;
    h2.get("/api/v1/workflows/plain/ws")
        .await
        .problem(426, "upgrade_required");
    let res = s
        .send(
            http::Method::GET,
            "/api/v1/workflows/plain/ws",
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "8"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            "",
        )
        .await;
    res.problem(400, "invalid_header");
}

#[tokio::test]
async fn shutdown_closes_open_sockets_with_going_away() {
    let health = Health::new(HealthConfig::new("test", "memory"));
    let store = Arc::new(MemoryStore::new());
    let ctx = ApiContext::new(
        Engine::new(store.clone(), registry()),
        store as Arc<dyn Store>,
        HttpConfig::default(),
    )
    .with_health(health.clone());
    let s = TestServer::start_on(ctx).await;
    s.create(&json!({"id": "waits", "nodes": [{"id": "r", "type": "human_review"}]}))
        .await;
    let run_id = s.start_run("waits", json!({})).await;
    let mut ws = s.ws(&format!("/api/v1/runs/{run_id}/ws")).await.unwrap();
    let mut other = s.ws("/ws/workflow/waits").await.unwrap();
    let head = ws_read(&mut ws, 2).await;
    assert_eq!(head.messages[1]["type"], "node_waiting_approval");
    assert_eq!(health.gauges().websockets.get(), 2);
    let started = std::time::Instant::now();
    s.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the drain waited"
    );
    assert_eq!(ws_read(&mut ws, usize::MAX).await.close, Some(1001));
    assert_eq!(ws_read(&mut other, usize::MAX).await.close, Some(1001));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while health.gauges().websockets.get() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "gauge not released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_replica_streams_runs_another_replica_drives() {
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
    a.create(&slow("remote")).await;
    let mut workflow = b.ws("/api/v1/workflows/remote/ws").await.unwrap();
    let run_id = a.start_run("remote", json!({})).await;
    let mut run = b.ws(&format!("/api/v1/runs/{run_id}/ws")).await.unwrap();
    let by_run = ws_read(&mut run, usize::MAX).await;
    gap_free(&by_run.messages);
    assert_eq!(
        by_run.messages.last().unwrap()["type"],
        "workflow_completed"
    );
    let by_workflow = read_runs(&mut workflow, 1).await;
    assert_eq!(by_workflow, by_run.messages);
}
