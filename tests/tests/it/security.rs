//! End-to-end: bearer tokens and the body limit (DESIGN §5 "Security") on the real binary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{definition, wait_for_run};
use crate::support::{Response, Server};

/// Every `/api` route and socket, with ids filled in.
fn routes(workflow: &str, run: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let w = workflow;
    let r = run;
    vec![
        (
            "POST",
            "/api/v1/workflows".into(),
            Some(definition("other", 1)),
        ),
        (
            "POST",
            "/api/v1/workflows/validate".into(),
            Some(definition("v", 1)),
        ),
        ("GET", "/api/v1/workflows".into(), None),
        ("GET", format!("/api/v1/workflows/{w}"), None),
        ("GET", format!("/api/v1/workflows/{w}?version=1"), None),
        (
            "GET",
            format!("/api/v1/workflows/{w}/graph?format=dot"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workflows/{w}/graph?format=mermaid"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/workflows/{w}/runs"),
            Some(json!({"inputs": {}})),
        ),
        ("GET", "/api/v1/runs".into(), None),
        (
            "GET",
            format!("/api/v1/runs?workflow_id={w}&status=completed"),
            None,
        ),
        ("GET", format!("/api/v1/runs/{r}"), None),
        ("POST", format!("/api/v1/runs/{r}/cancel"), None),
        ("POST", format!("/api/v1/runs/{r}/pause"), None),
        ("POST", format!("/api/v1/runs/{r}/resume"), None),
        ("POST", format!("/api/v1/runs/{r}/retry"), None),
        (
            "POST",
            format!("/api/v1/runs/{r}/nodes/load/approve"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/api/v1/runs/{r}/nodes/load/reject"),
            Some(json!({})),
        ),
        ("GET", format!("/api/v1/runs/{r}/events?after=0"), None),
        ("GET", format!("/api/v1/runs/{r}/ws"), None),
        ("GET", format!("/api/v1/workflows/{w}/ws"), None),
        ("GET", "/api/v1/openapi.json".into(), None),
        ("GET", "/api/v1/no-such-route".into(), None),
        ("GET", "/api/workflows".into(), None),
        ("GET", "/api/workflows/sdlc_linear".into(), None),
        (
            "POST",
            "/api/workflows/sdlc_linear/execute".into(),
            Some(json!({"requirement": "x"})),
        ),
        ("GET", format!("/api/executions/{r}"), None),
        ("GET", format!("/ws/workflow/{w}"), None),
        ("DELETE", format!("/api/v1/workflows/{w}"), None),
    ]
}

fn assert_unauthorized(r: &Response, what: &str) {
    assert_eq!(r.status, 401, "{what}: {} {}", r.status, r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(r.json()["code"], "unauthorized", "{what}: {}", r.text());
    assert_eq!(r.json()["status"], 401, "{what}");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{what}: WWW-Authenticate {:?}",
        r.header("www-authenticate")
    );
}

#[test]
fn tokens_guard_every_api_route_and_bodies_are_limited() {
    let server = Server::sqlite(&[
        ("MAESTRO_API_TOKENS", "t1,t2"),
        ("MAESTRO_MAX_BODY_BYTES", "1024"),
    ]);
    let t1 = [("Authorization", "Bearer t1")];
    let t2 = [("Authorization", "Bearer t2")];
    let send = |method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]| {
        server
            .try_request(method, path, body, headers)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    };

    // A workflow and a finished run to point the routes at, made with a valid token.
    let created = send(
        "POST",
        "/api/v1/workflows",
        Some(&definition("etl", 1)),
        &t2,
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let started = send(
        "POST",
        "/api/v1/workflows/etl/runs",
        Some(&json!({"inputs": {}})),
        &t1,
    );
    assert_eq!(started.status, 202, "{}", started.text());
    let run_id = started.json()["run_id"].as_str().unwrap().to_string();

    // Bodies over MAESTRO_MAX_BODY_BYTES get a 413 problem; one just under goes through.
    let padding = "x".repeat(2000);
    let big =
        json!({"id": "big", "description": padding, "nodes": [{"id": "a", "executor": "noop"}]});
    for path in ["/api/v1/workflows", "/api/v1/workflows/etl/runs"] {
        let r = send("POST", path, Some(&big), &t2);
        assert_eq!(r.status, 413, "POST {path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.json()["code"], "body_too_large", "{}", r.text());
    }
    // The same without a Content-Length: a chunked body is counted as it arrives.
    let chunked = {
        let body = big.to_string();
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut req = b"POST /api/v1/workflows HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
            Authorization: Bearer t2\r\nContent-Type: application/json\r\n\
            Transfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        for part in body.as_bytes().chunks(256) {
            req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            req.extend_from_slice(part);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let _ = stream.write_all(&req);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        Response::parse(&raw)
    };
    assert_eq!(chunked.status, 413, "chunked: {}", chunked.text());
    assert_eq!(chunked.json()["code"], "body_too_large");
    let small = json!({"inputs": {"pad": "x".repeat(900)}});
    assert!(small.to_string().len() <= 1024);
    let r = send("POST", "/api/v1/workflows/etl/runs", Some(&small), &t2);
    assert_eq!(r.status, 202, "{}", r.text());

    // Without a token, with an unknown one, or with another scheme: 401 everywhere.
    for (method, path, body) in routes("etl", &run_id) {
        for headers in [
            &[][..],
            &[("Authorization", "Bearer t3")][..],
            &[("Authorization", "Bearer ")][..],
            &[("Authorization", "Basic dDE6dDI=")][..],
            &[("Authorization", "t2")][..],
        ] {
            let r = send(method, &path, body.as_ref(), headers);
            assert_unauthorized(&r, &format!("{method} {path} {headers:?}"));
        }
    }
    let run = send("GET", &format!("/api/v1/runs/{run_id}"), None, &[]);
    assert_unauthorized(&run, "the run is not shown without a token");

    // WebSocket handshakes: refused without a token, switched with one.
    for path in [
        format!("/api/v1/runs/{run_id}/ws?after=0"),
        "/api/v1/workflows/etl/ws".to_string(),
        "/ws/workflow/etl".to_string(),
    ] {
        let (status, head) = upgrade(server.addr, &path, None);
        assert_eq!(status, 401, "{path} without a token: {head}");
        let (status, head) = upgrade(server.addr, &path, Some("Bearer t3"));
        assert_eq!(status, 401, "{path} with an unknown token: {head}");
        let (status, head) = upgrade(server.addr, &path, Some("Bearer t1"));
        assert_eq!(status, 101, "{path} with a token: {head}");
    }

    // With a valid token every route answers, and never 401 or 5xx.
    let _ = wait_for_run_authorized(&server, &run_id, &t2);
    for (method, path, body) in routes("etl", &run_id) {
        let r = send(method, &path, body.as_ref(), &t2);
        assert!(
            r.status != 401 && r.status < 500,
            "{method} {path} with a token: {} {}",
            r.status,
            r.text()
        );
    }
    for (path, status) in [
        ("/api/v1/workflows", 200),
        ("/api/v1/openapi.json", 200),
        ("/api/workflows", 200),
        (&*format!("/api/v1/runs/{run_id}"), 200),
        (&*format!("/api/v1/runs/{run_id}/events?after=0"), 200),
        (&*format!("/api/v1/runs/{run_id}/ws"), 426),
    ] {
        let r = send("GET", path, None, &t2);
        assert_eq!(r.status, status, "GET {path}: {}", r.text());
    }

    // Probes and metrics stay open.
    server.wait_for("/health/ready", 200, Duration::from_secs(5));
    for path in ["/health", "/health/live", "/health/startup", "/metrics"] {
        let r = send("GET", path, None, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }

    assert!(server.terminate().success());
}

/// Sends a WebSocket handshake and returns the response's status and head.
fn upgrade(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n"
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

/// Polls the run with a token until it completed.
fn wait_for_run_authorized(server: &Server, run_id: &str, auth: &[(&str, &str)]) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let run = server
            .try_request("GET", &format!("/api/v1/runs/{run_id}"), None, auth)
            .unwrap()
            .json();
        if run["status"] == "completed" {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn without_tokens_the_api_is_open() {
    let server = Server::sqlite(&[]);
    let created = server.request("POST", "/api/v1/workflows", Some(&definition("open", 1)));
    assert_eq!(created.status, 201, "{}", created.text());
    let started = server.request(
        "POST",
        "/api/v1/workflows/open/runs",
        Some(&json!({"inputs": {}})),
    );
    assert_eq!(started.status, 202, "{}", started.text());
    wait_for_run(
        &server,
        started.json()["run_id"].as_str().unwrap(),
        "completed",
    );
}
