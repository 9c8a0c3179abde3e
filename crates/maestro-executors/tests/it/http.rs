//! The `http` executor against a real local server: what it sends, how it reads answers, and
//! how it stops on timeouts and cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use maestro_dag::{
    Engine, MemoryStore, NodeContext, NodeDefinition, NodeError, NodeExecutor, RetryPolicy,
    RunStatus, RunStore, StartOptions, Workflow, WorkflowDefinition,
};
use maestro_executors::{HttpExecutor, builtin_registry};
use serde_json::{Value, json};

use crate::support::{Reply, TestServer, eventually};

/// Runs one attempt of an `http` node with `config`.
async fn call(config: Value) -> Result<Value, NodeError> {
    HttpExecutor::new()
        .execute(NodeContext::for_node("call", config))
        .await
}

/// Answers every request with `reply` and checks what one call of `config` gives.
async fn check(reply: Reply, want: Result<Value, (bool, &str)>) {
    let server = TestServer::start(move |_| reply.clone()).await;
    let got = call(json!({"url": server.url("/hook")})).await;
    match (got, want) {
        (Ok(out), Ok(expected)) => assert_eq!(out, expected),
        (Err(e), Err((retryable, message))) => {
            assert_eq!(e.retryable, retryable, "{e}");
            assert!(
                e.message.contains(message),
                "{e} should contain {message:?}"
            );
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

#[tokio::test]
async fn posts_the_node_input_as_json_with_the_idempotency_key() {
    let server = TestServer::start(|_| Reply::json(200, json!({"ok": true, "n": 1}))).await;
    let mut ctx = NodeContext::for_node(
        "notify",
        json!({
            "url": server.url("/hooks/notify?source=maestro"),
            "headers": {"Authorization": "Bearer t0ken", "X-Trace": "abc"},
        }),
    );
    ctx.run_id = "run-7".into();
    ctx.attempt = 2;
    ctx.inputs = Arc::new(json!({"user": "ada"}));
    ctx.dependency_outputs = vec![("fetch".into(), Arc::new(json!({"artifacts": ["a.csv"]})))];
    let expected_body = ctx.input_json();

    let out = HttpExecutor::new().execute(ctx).await.unwrap();
    assert_eq!(out, json!({"ok": true, "n": 1}));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/notify?source=maestro");
    assert_eq!(r.json(), expected_body);
    assert_eq!(r.json()["idempotency_key"], "run-7:notify");
    assert_eq!(
        r.json()["dependency_artifacts"],
        json!({"fetch": ["a.csv"]})
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("idempotency-key"), Some("run-7:notify"));
    assert_eq!(r.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(r.header("x-trace"), Some("abc"));
    assert!(r.header("user-agent").unwrap().starts_with("maestro/"));
}

#[tokio::test]
async fn the_method_comes_from_config() {
    let server = TestServer::start(|_| Reply::json(200, json!({}))).await;
    for method in ["put", "PATCH", "GET", "DELETE"] {
        call(json!({"url": server.url("/x"), "method": method}))
            .await
            .unwrap();
    }
    let methods: Vec<String> = server.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["PUT", "PATCH", "GET", "DELETE"]);
}

#[tokio::test]
async fn a_2xx_json_object_is_the_output_and_anything_else_is_refused() {
    check(Reply::json(200, json!({"a": [1]})), Ok(json!({"a": [1]}))).await;
    check(Reply::json(201, json!({"id": 9})), Ok(json!({"id": 9}))).await;
    check(Reply::text(204, ""), Ok(json!({}))).await;
    check(
        Reply::json(200, json!([1, 2])),
        Err((
            false,
            "answered 200 OK with a body that is not a JSON object: [1,2]",
        )),
    )
    .await;
    check(
        Reply::text(200, "<html>hi</html>"),
        Err((false, "not a JSON object: <html>hi</html>")),
    )
    .await;
}

#[tokio::test]
async fn server_errors_are_retryable_and_client_errors_permanent() {
    check(
        Reply::text(500, "database down"),
        Err((true, "POST http://127.0.0.1:")),
    )
    .await;
    check(
        Reply::text(500, "database down"),
        Err((
            true,
            "/hook answered 500 Internal Server Error: database down",
        )),
    )
    .await;
    check(
        Reply::text(503, ""),
        Err((true, "503 Service Unavailable: (empty body)")),
    )
    .await;
    check(
        Reply::text(429, "slow down"),
        Err((true, "429 Too Many Requests")),
    )
    .await;
    check(Reply::text(408, ""), Err((true, "408 Request Timeout"))).await;
    check(
        Reply::text(404, "no such hook"),
        Err((false, "404 Not Found: no such hook")),
    )
    .await;
    check(Reply::text(400, "bad"), Err((false, "400 Bad Request"))).await;
    check(Reply::text(302, ""), Err((false, "302 Found"))).await;
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = call(json!({"url": format!("http://127.0.0.1:{port}/")}))
        .await
        .unwrap_err();
    assert!(err.retryable, "{err}");
    assert!(
        err.message.starts_with("http: POST http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.message.to_lowercase().contains("connect"), "{err}");
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let server =
        TestServer::start(|_| Reply::json(200, json!({})).after(Duration::from_secs(10))).await;
    let started = Instant::now();
    let err = call(json!({"url": server.url("/slow"), "timeout_ms": 200}))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(err.retryable);
    assert!(
        err.message.ends_with("/slow: timed out after 200 ms"),
        "{err}"
    );
    assert!(
        eventually(|| server.abandoned() == 1).await,
        "the request was not aborted"
    );
}

#[tokio::test]
async fn cancellation_aborts_the_request() {
    let server =
        TestServer::start(|_| Reply::json(200, json!({})).after(Duration::from_secs(30))).await;
    let ctx = NodeContext::for_node("call", json!({"url": server.url("/forever")}));
    let token = ctx.cancellation.clone();
    let attempt = tokio::spawn(async move { HttpExecutor::new().execute(ctx).await });
    assert!(eventually(|| server.requests().len() == 1).await);
    let started = Instant::now();
    token.cancel();
    let err = attempt.await.unwrap().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(err.message.ends_with("/forever: cancelled"), "{err}");
    assert!(
        eventually(|| server.abandoned() == 1).await,
        "the request was not aborted"
    );
}

#[tokio::test]
async fn response_bodies_are_size_limited() {
    let server = TestServer::start(|_| Reply::json(200, json!({"blob": "x".repeat(1000)}))).await;
    let executor = HttpExecutor::new().with_max_response_bytes(100);
    let err = executor
        .execute(NodeContext::for_node(
            "call",
            json!({"url": server.url("/")}),
        ))
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert!(
        err.message.ends_with("the response body exceeds 100 bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn retries_through_the_engine_reuse_the_idempotency_key() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let server = TestServer::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::text(503, "warming up")
        } else {
            Reply::json(200, json!({"done": true}))
        }
    })
    .await;
    let mut node = NodeDefinition::new("notify", "http");
    node.config = json!({"url": server.url("/hook")});
    node.retry = RetryPolicy::fixed(3, 1);
    let registry = builtin_registry();
    let workflow = Workflow::compile(
        WorkflowDefinition::new("hooks", vec![node]),
        Some(&registry),
    )
    .unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::new(store.clone(), registry);
    let outcome = engine
        .start(Arc::new(workflow), json!({"n": 1}), StartOptions::default())
        .await
        .unwrap()
        .wait()
        .await;
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let key = format!("{}:notify", outcome.run_id);
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(r.header("idempotency-key"), Some(key.as_str()));
        assert_eq!(r.json()["attempt"], i + 1);
        assert_eq!(r.json()["inputs"], json!({"n": 1}));
    }
    let snapshot = store.load_run(&outcome.run_id).await.unwrap().unwrap();
    assert_eq!(
        snapshot.nodes[0].output.as_deref(),
        Some(&json!({"done": true}))
    );
}
