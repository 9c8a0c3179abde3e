//! End-to-end: the real `maestro-server` binary, started as a child process on SQLite (and on
//! PostgreSQL when `MAESTRO_TEST_DATABASE_URL` is set), driven over HTTP like a client would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{PgDatabase, Response, Server, team_engine};

pub(crate) fn definition(id: &str, sleep_ms: u64) -> Value {
    json!({
        "id": id,
        "nodes": [
            {"id": "extract", "executor": "noop"},
            {"id": "transform", "executor": "sleep", "config": {"duration_ms": sleep_ms}, "depends_on": ["extract"]},
            {"id": "load", "executor": "noop", "depends_on": ["transform"]}
        ]
    })
}

pub(crate) fn wait_for_run(server: &Server, run_id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = server
            .request("GET", &format!("/api/v1/runs/{run_id}"), None)
            .json();
        if run["status"] == status {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not become {status}: {run}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exercise(server: &Server) {
    // Definitions: created, unchanged, new version.
    let created = server.request("POST", "/api/v1/workflows", Some(&definition("etl", 50)));
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_eq!(created.json()["version"], 1);
    let same = server.request("POST", "/api/v1/workflows", Some(&definition("etl", 50)));
    assert_eq!(same.status, 200);
    let changed = server.request("POST", "/api/v1/workflows", Some(&definition("etl", 60)));
    assert_eq!(changed.status, 201);
    assert_eq!(changed.json()["version"], 2);

    // A cycle is a 422 with its code and nodes.
    let cycle = json!({"id": "loop", "nodes": [
        {"id": "a", "executor": "noop", "depends_on": ["b"]},
        {"id": "b", "executor": "noop", "depends_on": ["a"]}
    ]});
    let bad = server.request("POST", "/api/v1/workflows", Some(&cycle));
    assert_eq!(bad.status, 422);
    assert_eq!(bad.header("content-type"), Some("application/problem+json"));
    let problem = bad.json();
    let errors = problem["errors"].as_array().unwrap();
    let cyc = errors
        .iter()
        .find(|e| e["code"] == "cycle")
        .expect("a cycle error");
    assert_eq!(cyc["nodes"], json!(["a", "b"]));

    // Runs: the same idempotency key gives one run.
    let start = |key: &str| {
        server
            .try_request(
                "POST",
                "/api/v1/workflows/etl/runs",
                Some(&json!({"inputs": {"n": 1}})),
                &[("Idempotency-Key", key)],
            )
            .unwrap()
    };
    let first = start("k-1");
    assert_eq!(
        first.status,
        202,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let run_id = first.json()["run_id"].as_str().unwrap().to_string();
    let again = start("k-1");
    assert_eq!(again.json()["run_id"], run_id.as_str());
    let run = wait_for_run(server, &run_id, "completed");
    for node in ["extract", "transform", "load"] {
        assert_eq!(run["nodes"][node]["status"], "completed", "{run}");
    }
    assert_eq!(run["version"], 2);

    // The event log: gap-free from 1 to workflow_completed.
    let events = server
        .request(
            "GET",
            &format!("/api/v1/runs/{run_id}/events?after=0"),
            None,
        )
        .json();
    let events = events["events"].as_array().unwrap().clone();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], json!(i + 1));
    }
    assert_eq!(events.last().unwrap()["type"], "workflow_completed");

    // Control on a finished run is a conflict.
    let cancel = server.request("POST", &format!("/api/v1/runs/{run_id}/cancel"), None);
    assert_eq!(cancel.status, 409);

    // The compatibility routes: the SDLC template exists and its execution lists all six nodes.
    let exec = server.request(
        "POST",
        "/api/workflows/sdlc_parallel/execute",
        Some(&json!({"requirement": "build a todo app"})),
    );
    assert!(
        exec.status == 200 || exec.status == 202,
        "{}",
        String::from_utf8_lossy(&exec.body)
    );
    let exec_id = exec.json()["execution_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let state = server
            .request("GET", &format!("/api/executions/{exec_id}"), None)
            .json();
        if state["status"] == "completed" || Instant::now() > deadline {
            break state;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(state["status"], "completed", "{state}");
    let nodes = state["node_states"].as_array().unwrap();
    assert_eq!(nodes.len(), 6, "{state}");
    assert!(nodes.iter().all(|n| n["status"] == "completed"), "{state}");

    // Malformed input gets a 4xx problem, never a 5xx.
    for (method, path, body) in [
        ("POST", "/api/v1/workflows", "{not json"),
        ("POST", "/api/v1/workflows", "[1, 2]"),
        ("GET", "/api/v1/workflows/bad%20id", ""),
        ("POST", "/api/v1/workflows/etl/runs", "{\"inputs\": 5}"),
    ] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let r = Response::parse(&raw);
        assert!(
            (400..500).contains(&r.status),
            "{method} {path} {body}: {}",
            r.status
        );
    }
}

#[test]
fn the_server_on_sqlite_serves_the_api_and_drains_on_sigterm() {
    let team = team_engine();
    let server = Server::sqlite(&[("MAESTRO_TEAM_ENGINE_URL", &team)]);
    exercise(&server);
    let live = server.request("GET", "/health/live", None);
    assert_eq!(live.status, 200);
    assert_eq!(live.json()["alive"], true);
    assert_eq!(server.request("GET", "/health/ready", None).status, 200);
    let metrics = server.request("GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    for name in [
        "dag_workflow_executions_total",
        "dag_node_executions_total",
        "dag_api_requests_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let status = server.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
}

#[test]
fn the_server_on_postgres_serves_the_api() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let team = team_engine();
    let server = Server::start(&db.url, &[("MAESTRO_TEAM_ENGINE_URL", &team)]);
    exercise(&server);
    assert!(server.terminate().success());
}
