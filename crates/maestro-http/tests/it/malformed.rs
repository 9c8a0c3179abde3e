//! Malformed and hostile input: only 4xx problem+json, never a 5xx, a panic or a hang.

use http::Method;
use serde_json::json;

use crate::security::raw;
use crate::support::{TestServer, chain};

#[tokio::test]
async fn broken_json_has_line_and_column() {
    let s = TestServer::start().await;
    let res = s
        .post_raw("/api/v1/workflows", "{\n  \"id\": \"x\",\n  \"nodes\": [\n")
        .await;
    let body = res.problem(400, "invalid_json");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("line 4") && detail.contains("column"),
        "{detail}"
    );
}

#[tokio::test]
async fn wrong_types_name_the_field() {
    let s = TestServer::start().await;
    let res = s
        .post(
            "/api/v1/workflows",
            &json!({"id": "x", "nodes": [{"id": "a", "depends_on": 5}]}),
        )
        .await;
    let body = res.problem(422, "invalid_definition");
    assert_eq!(body["errors"][0]["path"], "nodes[0].depends_on", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("line 1"),
        "{body}"
    );
    s.post("/api/v1/workflows", &json!([1, 2]))
        .await
        .problem(422, "invalid_definition");
    s.post("/api/v1/workflows", &json!({"id": 5, "nodes": []}))
        .await
        .problem(422, "invalid_definition");
}

#[tokio::test]
async fn deep_nesting_is_refused() {
    let s = TestServer::start().await;
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    s.post_raw("/api/v1/workflows", deep.clone())
        .await
        .problem(400, "json_too_deep");
    s.create(&chain("nest")).await;
    let inputs = format!("{{\"inputs\": {{\"a\": {deep}}}}}");
    s.post_raw("/api/v1/workflows/nest/runs", inputs)
        .await
        .problem(400, "json_too_deep");
}

#[tokio::test]
async fn a_corpus_of_bad_requests_gets_only_4xx() {
    let s = TestServer::start().await;
    s.create(&chain("ok")).await;
    let run_id = s.start_run("ok", json!({})).await;
    let long_id = "a".repeat(300);
    let posts: Vec<(String, String, &str)> = vec![
        ("/api/v1/workflows".into(), "".into(), "invalid_json"),
        (
            "/api/v1/workflows".into(),
            "null".into(),
            "invalid_definition",
        ),
        (
            "/api/v1/workflows".into(),
            "{\"id\": \"x\"".into(),
            "invalid_json",
        ),
        (
            "/api/v1/workflows".into(),
            "\u{0}\u{1}garbage".into(),
            "invalid_json",
        ),
        (
            "/api/v1/workflows".into(),
            "{\"id\":\"x\",\"nodes\":\"a\"}".into(),
            "invalid_definition",
        ),
        (
            "/api/v1/workflows".into(),
            json!({"id": "bad id!", "nodes": [{"id": "a", "executor": "noop"}]}).to_string(),
            "validation_failed",
        ),
        (
            "/api/v1/workflows".into(),
            json!({"id": "x", "nodes": [{"id": "a", "executor": "nuke"}]}).to_string(),
            "validation_failed",
        ),
        (
            "/api/v1/workflows".into(),
            json!({"id": "x", "nodes": [{"id": "a", "executor": "noop",
                   "retry": {"max_attempts": -1}}]})
            .to_string(),
            "invalid_definition",
        ),
        (
            "/api/v1/workflows".into(),
            json!({"id": "x", "nodes": [{"id": "a", "executor": "noop",
                   "condition": "inputs.(("}]})
            .to_string(),
            "validation_failed",
        ),
        (
            "/api/v1/workflows/ok/runs".into(),
            "{\"inputs\": 5}".into(),
            "invalid_body",
        ),
        (
            "/api/v1/workflows/ok/runs".into(),
            "{\"input\": {}}".into(),
            "invalid_body",
        ),
        (
            "/api/v1/workflows/ok/runs".into(),
            "[".into(),
            "invalid_json",
        ),
        (
            format!("/api/v1/workflows/{long_id}/runs"),
            "{}".into(),
            "invalid_id",
        ),
        (
            "/api/v1/workflows/a%2Fb/runs".into(),
            "{}".into(),
            "invalid_id",
        ),
        (
            "/api/v1/runs/..%2F../cancel".into(),
            "".into(),
            "invalid_id",
        ),
        (
            format!("/api/v1/runs/{run_id}/nodes/a%00/approve"),
            "".into(),
            "invalid_id",
        ),
        (
            format!("/api/v1/runs/{run_id}/nodes/a/reject"),
            "{\"reason\": 1}".into(),
            "invalid_body",
        ),
        (
            "/api/workflows/ok/execute".into(),
            "{\"requirement\": [\"x\"]}".into(),
            "invalid_body",
        ),
    ];
    for (path, body, code) in posts {
        let res = s.post_raw(&path, body.clone()).await;
        assert!(
            res.status.is_client_error(),
            "{path} {body:?}: {}",
            res.text
        );
        assert_eq!(res.body["code"], code, "{path} {body:?}: {}", res.text);
    }
    let gets: Vec<(String, u16, &str)> = vec![
        ("/api/v1/workflows/bad%20id".into(), 400, "invalid_id"),
        (format!("/api/v1/workflows/{long_id}"), 400, "invalid_id"),
        ("/api/v1/workflows/%F0%9F%98%80".into(), 400, "invalid_id"),
        ("/api/v1/workflows?limit=abc".into(), 400, "invalid_query"),
        (
            "/api/v1/workflows?limit=99999999999999999999999".into(),
            400,
            "invalid_query",
        ),
        ("/api/v1/runs?workflow_id=no%20pe".into(), 400, "invalid_id"),
        ("/api/v1/runs?status=".into(), 400, "invalid_query"),
        (
            format!("/api/v1/runs/{run_id}/events?limit=0"),
            400,
            "invalid_query",
        ),
        (
            format!("/api/v1/runs/{run_id}/events?after=1e3"),
            400,
            "invalid_query",
        ),
        ("/api/v1/runs/%%%".into(), 400, "invalid_id"),
        ("/api/executions/%20".into(), 400, "invalid_id"),
        ("/api/v2/everything".into(), 404, "route_not_found"),
        ("/api/v1/workflows/a/b/c/d".into(), 404, "route_not_found"),
    ];
    for (path, status, code) in gets {
        s.get(&path).await.problem(status, code);
    }
    let put = s.send(Method::PUT, "/api/v1/workflows", &[], "{}").await;
    put.problem(405, "method_not_allowed");
    assert_eq!(put.headers["allow"], "GET, HEAD, POST, OPTIONS");
    s.send(Method::DELETE, "/api/v1/runs/x", &[], "")
        .await
        .problem(405, "method_not_allowed");
    s.send(Method::GET, "/api/v1/runs/x/cancel", &[], "")
        .await
        .problem(405, "method_not_allowed");
    s.send(
        Method::POST,
        "/api/v1/workflows",
        &[("content-type", "text/plain")],
        "{}",
    )
    .await
    .problem(415, "unsupported_media_type");
    s.send(
        Method::POST,
        "/api/v1/workflows",
        &[("content-type", "application/x-www-form-urlencoded")],
        "id=x",
    )
    .await
    .problem(415, "unsupported_media_type");
    s.send(
        Method::POST,
        "/api/v1/workflows",
        &[],
        vec![0xff, 0xfe, 0x00],
    )
    .await
    .problem(400, "invalid_json");
    // The server is still healthy, and the run finished.
    assert_eq!(
        s.wait_status(&run_id, &["completed"]).await["status"],
        "completed"
    );
}

#[tokio::test]
async fn protocol_abuse_gets_4xx_and_the_server_survives() {
    let s = TestServer::start().await;
    let cases: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        format!(
            "GET /api/v1/workflows HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "h".repeat(200_000)
        )
        .into_bytes(),
        b"POST /api/v1/workflows HTTP/1.1\r\nhost: x\r\ncontent-length: nope\r\n\r\n".to_vec(),
        b"POST /api/v1/workflows HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\nconnection: close\r\n\r\n{".to_vec(),
    ];
    for case in cases {
        let answer = raw(s.addr, &case).await;
        let status: u16 = answer
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {answer:?}"));
        assert!((400..500).contains(&status), "{answer}");
    }
    assert_eq!(s.get("/api/v1/workflows").await.status, 200);
}
