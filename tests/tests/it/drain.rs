//! End-to-end: SIGTERM drains a replica (DESIGN §6): readiness turns 503, the nodes in flight
//! finish within the grace period, the leases are released, the process exits 0, and another
//! replica on the same PostgreSQL database finishes every run without running a node twice.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{definition, wait_for_run};
use crate::support::{PgDatabase, Server};

const RUNS: usize = 6;
const GRACE: Duration = Duration::from_secs(5);

/// The status code of `GET path`, or `None` when the server does not answer.
fn status_of(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn sigterm_drains_a_replica_and_another_finishes_its_runs() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let env = |host: &'static str| {
        [
            ("MAESTRO_LEASE_TTL_SECS", "2"),
            ("MAESTRO_SHUTDOWN_GRACE_SECS", "5"),
            ("HOSTNAME", host),
        ]
    };
    let mut a = Server::start(&db.url, &env("replica-a"));
    let b = Server::start(&db.url, &env("replica-b"));

    // Runs on A whose middle node sleeps for a second.
    let created = a.request(
        "POST",
        "/api/v1/workflows",
        Some(&definition("drain", 1000)),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let runs: Vec<String> = (0..RUNS)
        .map(|_| {
            let r = a.request(
                "POST",
                "/api/v1/workflows/drain/runs",
                Some(&json!({"inputs": {}})),
            );
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["run_id"].as_str().unwrap().to_string()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    for run_id in &runs {
        loop {
            let run = a
                .request("GET", &format!("/api/v1/runs/{run_id}"), None)
                .json();
            if run["nodes"]["transform"]["status"] == "running" {
                break;
            }
            assert!(Instant::now() < deadline, "transform is not running: {run}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let held = db.query("SELECT run_id FROM runs WHERE lease_owner LIKE 'replica-a-%'");
    assert_eq!(held.len(), RUNS, "A holds every run's lease: {held:?}");

    // Watch A's readiness through the drain.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (addr, stop) = (a.addr, stop.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match status_of(addr, "/health/ready") {
                    Some(s) => seen.push(s),
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        })
    };

    let sent = Instant::now();
    a.sigterm();
    let status = a.wait_exit(GRACE + Duration::from_secs(10));
    let took = sent.elapsed();
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    eprintln!(
        "replica A exited with {status:?} {took:?} after SIGTERM; readiness seen: {} answers, {} × 503",
        seen.len(),
        seen.iter().filter(|&&s| s == 503).count()
    );
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(
        took <= GRACE + Duration::from_millis(500),
        "A took {took:?} to exit, past the {GRACE:?} grace period"
    );
    let first_503 = seen
        .iter()
        .position(|&s| s == 503)
        .unwrap_or_else(|| panic!("readiness never turned 503 during the drain: {seen:?}"));
    assert!(
        seen[first_503..].iter().all(|&s| s == 503),
        "readiness went back to 200 during the drain: {seen:?}"
    );

    // No lease left with A: released, not left to expire.
    let left = db.query(
        "SELECT run_id || ' ' || status || ' ' || lease_expires_at FROM runs \
         WHERE lease_owner LIKE 'replica-a-%'",
    );
    assert!(
        left.is_empty(),
        "runs still leased by A after it exited: {left:?}"
    );

    // B finishes every run, each node once.
    let picked = Instant::now();
    for run_id in &runs {
        let run = wait_for_run(&b, run_id, "completed");
        for node in ["extract", "transform", "load"] {
            assert_eq!(run["nodes"][node]["status"], "completed", "{run}");
            assert_eq!(run["nodes"][node]["attempts"], 1, "{node} ran twice: {run}");
        }
        let events = b
            .request(
                "GET",
                &format!("/api/v1/runs/{run_id}/events?after=0"),
                None,
            )
            .json();
        let events = events["events"].as_array().unwrap().clone();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                e["seq"],
                json!(i + 1),
                "a gap in {run_id}'s events: {events:?}"
            );
        }
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for e in &events {
            let key = (
                e["type"].as_str().unwrap().to_string(),
                e["node_id"].as_str().unwrap_or("").to_string(),
            );
            *counts.entry(key).or_default() += 1;
        }
        for node in ["extract", "transform", "load"] {
            for kind in ["node_started", "node_completed"] {
                assert_eq!(
                    counts.get(&(kind.to_string(), node.to_string())),
                    Some(&1),
                    "{run_id}: {kind} of {node} not exactly once: {}",
                    Value::Array(events.clone())
                );
            }
        }
        assert_eq!(
            counts.get(&("workflow_completed".to_string(), String::new())),
            Some(&1)
        );
        assert_eq!(events.last().unwrap()["type"], "workflow_completed");
    }
    eprintln!(
        "replica B finished the {RUNS} runs {:?} after A exited",
        picked.elapsed()
    );
    assert!(b.terminate().success());
}
