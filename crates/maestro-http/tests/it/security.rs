//! Authentication, CORS, request ids, the body limit and graceful shutdown.

use std::time::Duration;

use http::Method;
use maestro_http::HttpConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestServer, chain};

/// Sends raw bytes and returns whatever the server answers before closing (5 s at most).
pub(crate) async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before reading everything: ignore write errors.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn every_api_route_needs_a_valid_bearer_token() {
    let config = HttpConfig::default().with_api_tokens(["t0ken", "other"]);
    let anon = TestServer::start_with(config.clone()).await;
    for (method, path) in [
        (Method::GET, "/api/v1/workflows"),
        (Method::POST, "/api/v1/workflows"),
        (Method::GET, "/api/v1/runs/x"),
        (Method::POST, "/api/v1/runs/x/cancel"),
        (Method::GET, "/api/workflows"),
        (Method::POST, "/api/workflows/x/execute"),
        (Method::GET, "/api/executions/x"),
        (Method::GET, "/api/v1/unknown"),
    ] {
        let res = anon.send(method.clone(), path, &[], "").await;
        res.problem(401, "unauthorized");
        assert!(res.headers.contains_key("www-authenticate"), "{path}");
    }
    for header in [
        "Bearer wrong",
        "Basic dDBrZW46",
        "Bearer",
        "t0ken",
        "Bearer t0ke",
    ] {
        anon.send(
            Method::GET,
            "/api/v1/workflows",
            &[("authorization", header)],
            "",
        )
        .await
        .problem(401, "unauthorized");
    }
    let ok = anon
        .send(
            Method::GET,
            "/api/v1/workflows",
            &[("authorization", "bearer other")],
            "",
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // Outside /api: no authentication (probes and /metrics will live there).
    anon.get("/nothing-here")
        .await
        .problem(404, "route_not_found");

    let authed = TestServer::start_with(config).await.with_token("t0ken");
    authed.create(&chain("secured")).await;
    assert_eq!(authed.get("/api/workflows").await.status, 200);
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let none = TestServer::start().await;
    let res = none
        .send(
            Method::GET,
            "/api/v1/workflows",
            &[("origin", "https://app.example")],
            "",
        )
        .await;
    assert!(!res.headers.contains_key("access-control-allow-origin"));

    let s = TestServer::start_with(
        HttpConfig::default()
            .with_cors_origins(["https://app.example"])
            .with_api_tokens(["tok"]),
    )
    .await;
    // A preflight carries no credentials and is answered anyway.
    let pre = s
        .send(
            Method::OPTIONS,
            "/api/v1/workflows/x/runs",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, idempotency-key",
                ),
            ],
            "",
        )
        .await;
    assert_eq!(pre.status, 204, "{}", pre.text);
    assert_eq!(
        pre.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        pre.headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        pre.headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("idempotency-key")
    );
    let other = s
        .send(
            Method::OPTIONS,
            "/api/v1/workflows",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            "",
        )
        .await;
    assert!(!other.headers.contains_key("access-control-allow-origin"));
    let s = s.with_token("tok");
    let res = s
        .send(
            Method::GET,
            "/api/v1/workflows",
            &[("origin", "https://app.example")],
            "",
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.headers["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let s = TestServer::start().await;
    let given = s
        .send(
            Method::GET,
            "/api/v1/workflows",
            &[("x-request-id", "abc-123")],
            "",
        )
        .await;
    assert_eq!(given.headers["x-request-id"], "abc-123");
    let made = s.get("/api/v1/nope").await;
    let id = made.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    assert_eq!(made.body["request_id"], id.as_str());
    let junk = s
        .send(
            Method::GET,
            "/api/v1/workflows",
            &[("x-request-id", "<script>")],
            "",
        )
        .await;
    assert_ne!(junk.headers["x-request-id"], "<script>");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_while_reading() {
    let s = TestServer::start_with(HttpConfig::default().with_max_body_bytes(1024)).await;
    let big = json!({"id": "big", "description": "x".repeat(4096), "nodes": []});
    s.post("/api/v1/workflows", &big)
        .await
        .problem(413, "body_too_large");
    // Chunked, so no Content-Length: the limit is enforced while reading.
    let chunk = "y".repeat(800);
    let mut req = String::from(
        "POST /api/v1/workflows HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    );
    for _ in 0..3 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    let answer = raw(s.addr, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    // Under the limit is fine.
    s.create(&chain("small")).await;
}

#[tokio::test]
async fn shutdown_is_graceful() {
    let s = TestServer::start().await;
    s.create(&chain("bye")).await;
    let addr = s.addr;
    s.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
