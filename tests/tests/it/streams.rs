//! End-to-end, on SQLite and PostgreSQL: live events over SSE and WebSocket from the first event to
//! `workflow_completed` with gap-free sequence numbers, a reconnection mid-run that misses
//! nothing, and every control route (pause, resume, cancel, approve, reject, retry) with its 409s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{PgDatabase, Server};

fn workflow(id: &str, sleep_ms: u64) -> Value {
    json!({"id": id, "nodes": [
        {"id": "a", "executor": "noop"},
        {"id": "b", "executor": "sleep", "config": {"duration_ms": sleep_ms}, "depends_on": ["a"]},
        {"id": "c", "executor": "sleep", "config": {"duration_ms": sleep_ms}, "depends_on": ["b"]},
        {"id": "d", "executor": "noop", "depends_on": ["c"]}
    ]})
}

fn create(server: &Server, def: &Value) {
    let r = server.request("POST", "/api/v1/workflows", Some(def));
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
}

fn start(server: &Server, workflow: &str) -> String {
    let r = server.request(
        "POST",
        &format!("/api/v1/workflows/{workflow}/runs"),
        Some(&json!({"inputs": {}})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["run_id"].as_str().unwrap().to_string()
}

fn wait_status(server: &Server, run_id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = server
            .request("GET", &format!("/api/v1/runs/{run_id}"), None)
            .json();
        if run["status"] == status {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} never became {status}: {run}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads an SSE stream until `workflow_completed` or until `stop_after` events; returns the
/// (seq, type) of each event.
fn sse(
    server: &Server,
    run_id: &str,
    last_event_id: Option<u64>,
    stop_after: Option<usize>,
) -> Vec<(u64, String)> {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /api/v1/runs/{run_id}/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{resume}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut events = Vec::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(data) = line.trim_end().strip_prefix("data:")
            && let Ok(e) = serde_json::from_str::<Value>(data.trim())
        {
            let kind = e["type"].as_str().unwrap_or_default().to_string();
            events.push((e["seq"].as_u64().unwrap(), kind.clone()));
            if kind == "workflow_completed" || stop_after.is_some_and(|n| events.len() >= n) {
                break;
            }
        }
        line.clear();
    }
    events
}

/// A minimal WebSocket client: the handshake, then the server's (unmasked) text frames until
/// `workflow_completed`.
fn websocket(server: &Server, path: &str) -> Vec<(u64, String)> {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut events = Vec::new();
    loop {
        let mut h = [0u8; 2];
        stream.read_exact(&mut h).unwrap();
        let opcode = h[0] & 0x0f;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut l = [0u8; 2];
            stream.read_exact(&mut l).unwrap();
            len = u64::from(u16::from_be_bytes(l));
        } else if len == 127 {
            let mut l = [0u8; 8];
            stream.read_exact(&mut l).unwrap();
            len = u64::from_be_bytes(l);
        }
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).unwrap();
        match opcode {
            1 => {
                let e: Value = serde_json::from_slice(&payload).unwrap();
                let kind = e["type"].as_str().unwrap_or_default().to_string();
                events.push((e["seq"].as_u64().unwrap(), kind.clone()));
                if kind == "workflow_completed" {
                    return events;
                }
            }
            8 => return events,
            _ => {}
        }
    }
}

fn assert_gap_free(events: &[(u64, String)]) {
    let seqs: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{events:?}"
    );
    assert_eq!(
        events.first().map(|e| e.1.as_str()),
        Some("workflow_started")
    );
    assert_eq!(
        events.last().map(|e| e.1.as_str()),
        Some("workflow_completed")
    );
}

fn live_events(server: &Server) {
    create(server, &workflow("streamed", 150));
    // SSE from the first event to the end.
    let run = start(server, "streamed");
    assert_gap_free(&sse(server, &run, None, None));
    // WebSocket from the first event to the end (replayed from the store, then live).
    let run = start(server, "streamed");
    assert_gap_free(&websocket(
        server,
        &format!("/api/v1/runs/{run}/ws?after=0"),
    ));
    // A reconnection mid-run with the last id seen misses nothing and repeats nothing.
    let run = start(server, "streamed");
    let first = sse(server, &run, None, Some(3));
    let last = first.last().unwrap().0;
    let rest = sse(server, &run, Some(last), None);
    let mut all = first.clone();
    all.extend(rest.clone());
    assert_gap_free(&all);
    // The same over WebSocket with `after=`.
    let run = start(server, "streamed");
    wait_status(server, &run, "completed");
    let tail = websocket(server, &format!("/api/v1/runs/{run}/ws?after=2"));
    assert_eq!(tail.first().unwrap().0, 3);
}

fn post(server: &Server, path: &str, body: Option<&Value>) -> u16 {
    server.request("POST", path, body).status
}

fn control(server: &Server, flag: &str) {
    create(server, &workflow("controlled", 400));
    // Pause: no new node starts; resume: the run finishes.
    let run = start(server, "controlled");
    wait_node(server, &run, "b", "running");
    assert_eq!(
        post(server, &format!("/api/v1/runs/{run}/pause"), None),
        200
    );
    assert_eq!(
        post(server, &format!("/api/v1/runs/{run}/pause"), None),
        409
    );
    let paused = wait_status(server, &run, "paused");
    std::thread::sleep(Duration::from_millis(700));
    let still = server
        .request("GET", &format!("/api/v1/runs/{run}"), None)
        .json();
    let c = still["nodes"]["c"]["status"].as_str().unwrap_or_default();
    assert!(
        c == "pending" || c == "ready",
        "nothing starts while paused: {still} {paused}"
    );
    assert!(still["nodes"]["c"]["started_at"].is_null(), "{still}");
    assert_eq!(
        post(server, &format!("/api/v1/runs/{run}/resume"), None),
        200
    );
    wait_status(server, &run, "completed");
    assert_eq!(
        post(server, &format!("/api/v1/runs/{run}/resume"), None),
        409
    );

    // Cancel: the run and its unfinished nodes are cancelled; a second cancel is a conflict.
    let run = start(server, "controlled");
    wait_node(server, &run, "b", "running");
    assert_eq!(
        post(server, &format!("/api/v1/runs/{run}/cancel"), None),
        200
    );
    let cancelled = wait_status(server, &run, "cancelled");
    assert_eq!(cancelled["nodes"]["b"]["status"], "cancelled");
    assert_eq!(cancelled["nodes"]["d"]["status"], "cancelled");
    assert_eq!(
        post(server, &format!("/api/v1/runs/{run}/cancel"), None),
        409
    );

    // Human review: approve lets the run go on; reject fails the node and the run.
    create(
        server,
        &json!({"id": "gated", "nodes": [
            {"id": "build", "executor": "noop"},
            {"id": "review", "type": "human_review", "depends_on": ["build"]},
            {"id": "deploy", "executor": "noop", "depends_on": ["review"]}
        ]}),
    );
    let run = start(server, "gated");
    wait_node(server, &run, "review", "waiting_approval");
    assert_eq!(
        post(
            server,
            &format!("/api/v1/runs/{run}/nodes/deploy/approve"),
            None
        ),
        409
    );
    let approve = json!({"output": {"by": "e2e"}});
    assert_eq!(
        post(
            server,
            &format!("/api/v1/runs/{run}/nodes/review/approve"),
            Some(&approve)
        ),
        200
    );
    let done = wait_status(server, &run, "completed");
    assert_eq!(done["nodes"]["review"]["output"]["approved"], true);
    let run = start(server, "gated");
    wait_node(server, &run, "review", "waiting_approval");
    let reject = json!({"reason": "not today"});
    assert_eq!(
        post(
            server,
            &format!("/api/v1/runs/{run}/nodes/review/reject"),
            Some(&reject)
        ),
        200
    );
    let failed = wait_status(server, &run, "failed");
    assert_eq!(failed["nodes"]["deploy"]["status"], "skipped");

    // Retry from failed: a node that fails until a file exists; completed work is kept.
    create(
        server,
        &json!({"id": "flaky", "nodes": [
            {"id": "first", "executor": "noop"},
            {"id": "check", "executor": "command", "depends_on": ["first"],
             "config": {"program": "sh", "args": ["-c", format!("test -f {flag}")]}},
            {"id": "after", "executor": "noop", "depends_on": ["check"]}
        ]}),
    );
    let run = start(server, "flaky");
    let failed = wait_status(server, &run, "failed");
    assert_eq!(failed["nodes"]["check"]["status"], "failed");
    let first_done = failed["nodes"]["first"]["finished_at"].clone();
    std::fs::write(flag, b"ok").unwrap();
    let retried = server.request("POST", &format!("/api/v1/runs/{run}/retry"), None);
    assert_eq!(retried.status, 202, "{}", retried.text());
    let done = wait_status(server, &run, "completed");
    assert_eq!(
        done["nodes"]["first"]["finished_at"], first_done,
        "completed work is kept"
    );
    assert_eq!(done["nodes"]["after"]["status"], "completed");
    assert_eq!(
        post(server, &format!("/api/v1/runs/{run}/retry"), None),
        409
    );
}

fn wait_node(server: &Server, run_id: &str, node: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = server
            .request("GET", &format!("/api/v1/runs/{run_id}"), None)
            .json();
        if run["nodes"][node]["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} never became {status}: {run}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn flag_path(tag: &str) -> String {
    let p = std::env::temp_dir().join(format!(
        "maestro-e2e-flag-{tag}-{}",
        crate::support::free_port()
    ));
    let _ = std::fs::remove_file(&p);
    p.display().to_string()
}

#[test]
fn events_stream_and_control_works_on_sqlite() {
    let server = Server::sqlite(&[("MAESTRO_ALLOW_COMMANDS", "sh")]);
    live_events(&server);
    let flag = flag_path("sqlite");
    control(&server, &flag);
    let _ = std::fs::remove_file(&flag);
}

#[test]
fn events_stream_and_control_works_on_postgres() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let server = Server::start(&db.url, &[("MAESTRO_ALLOW_COMMANDS", "sh")]);
    live_events(&server);
    let flag = flag_path("pg");
    control(&server, &flag);
    let _ = std::fs::remove_file(&flag);
    drop(server);
}
