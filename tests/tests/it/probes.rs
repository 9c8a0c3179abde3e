//! End-to-end: the health probes of DESIGN §6 against a PostgreSQL database that refuses
//! connections, goes away and comes back, with the seed report's JSON shapes.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{PgDatabase, Response, Server};

/// An RFC 3339 timestamp in UTC with a `Z`.
fn assert_timestamp(v: &Value, body: &Value) {
    let t = v.as_str().unwrap_or_else(|| panic!("timestamp: {body}"));
    assert!(
        t.ends_with('Z') && t.len() >= 20 && t.as_bytes()[10] == b'T',
        "timestamp `{t}`"
    );
}

fn assert_json(r: &Response) -> Value {
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "content-type {:?}",
        r.header("content-type")
    );
    r.json()
}

/// 200 `{ready: true, timestamp, checks {database: "ok", workflows, background_tasks}}`.
fn assert_ready(r: &Response) {
    assert_eq!(r.status, 200, "{}", r.text());
    let body = assert_json(r);
    assert_eq!(body["ready"], true, "{body}");
    assert_timestamp(&body["timestamp"], &body);
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert!(body["checks"]["workflows"].is_u64(), "{body}");
    assert!(body["checks"]["background_tasks"].is_u64(), "{body}");
}

/// 503 `{ready: false, errors: [.. code ..], message}` at top level.
fn assert_not_ready(r: &Response, code: &str) {
    assert_eq!(r.status, 503, "{}", r.text());
    let body = assert_json(r);
    assert_eq!(body["ready"], false, "{body}");
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert!(errors.iter().any(|e| e == code), "{code} missing: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body.get("detail").is_none(), "not nested: {body}");
}

/// 200 `{alive: true, timestamp, uptime_checks {api_responsive, uptime_seconds, heartbeats}}`.
fn assert_alive(r: &Response) {
    assert_eq!(r.status, 200, "{}", r.text());
    let body = assert_json(r);
    assert_eq!(body["alive"], true, "{body}");
    assert_timestamp(&body["timestamp"], &body);
    let checks = &body["uptime_checks"];
    assert_eq!(checks["api_responsive"], true, "{body}");
    assert!(checks["uptime_seconds"].is_u64(), "{body}");
    assert!(checks["background_tasks_total"].is_u64(), "{body}");
    assert!(checks["active_connections"].is_u64(), "{body}");
    assert!(checks["heartbeats"].is_object(), "{body}");
}

/// 200 `{status, timestamp, version, database {connected, type}, cache {workflows, websockets},
/// tasks {background, active}}`.
fn assert_health(r: &Response, connected: bool) {
    assert_eq!(r.status, 200, "/health is always 200: {}", r.text());
    let body = assert_json(r);
    let expected = if connected { "healthy" } else { "degraded" };
    assert_eq!(body["status"], expected, "{body}");
    assert_timestamp(&body["timestamp"], &body);
    assert!(
        body["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{body}"
    );
    assert_eq!(body["database"]["connected"], connected, "{body}");
    assert_eq!(body["database"]["type"], "PostgreSQL", "{body}");
    for (group, fields) in [
        ("cache", ["workflows", "websockets"]),
        ("tasks", ["background", "active"]),
    ] {
        for field in fields {
            assert!(body[group][field].is_u64(), "{group}.{field}: {body}");
        }
    }
}

/// 200 `{started: true, timestamp, initialization {database, engine, workflows}}`.
fn assert_started(r: &Response) {
    assert_eq!(r.status, 200, "{}", r.text());
    let body = assert_json(r);
    assert_eq!(body["started"], true, "{body}");
    assert_timestamp(&body["timestamp"], &body);
    let init = &body["initialization"];
    assert_eq!(init["database"], "initialized", "{body}");
    assert_eq!(init["engine"], "initialized", "{body}");
    assert_eq!(init["workflows"], "ready", "{body}");
}

/// How long the database stays away: past the scheduler heartbeat's allowed gap (10 s), so that a
/// liveness probe that waits on the database would fail.
const OUTAGE: Duration = Duration::from_secs(11);

fn get(server: &Server, path: &str) -> Response {
    server.request("GET", path, None)
}

#[test]
fn startup_and_readiness_are_503_until_migrations_ran_while_liveness_is_200() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    db.go_away();
    let server = Server::spawn(&db.url, &[]);

    // The server answers while it cannot migrate: startup and readiness 503, liveness 200.
    let deadline = Instant::now() + Duration::from_secs(5);
    let startup = loop {
        match server.try_request("GET", "/health/startup", None, &[]) {
            Ok(r) => break r,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no answer on /health/startup within 5 s while the database refuses connections: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(startup.status, 503, "{}", startup.text());
    for _ in 0..3 {
        let startup = get(&server, "/health/startup");
        assert_eq!(startup.status, 503, "{}", startup.text());
        let body = startup.json();
        assert_eq!(body["started"], false, "{body}");
        assert!(
            body["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|c| c == "database_not_initialized")),
            "{body}"
        );
        assert!(body["message"].is_string(), "{body}");
        assert_not_ready(&get(&server, "/health/ready"), "not_started");
        assert_alive(&get(&server, "/health/live"));
        std::thread::sleep(Duration::from_millis(300));
    }

    // Once the database accepts connections, the migrations run and both turn 200.
    db.come_back();
    assert_started(&server.wait_for("/health/startup", 200, Duration::from_secs(10)));
    assert_ready(&server.wait_for("/health/ready", 200, Duration::from_secs(5)));
    assert_alive(&get(&server, "/health/live"));
}

#[test]
fn readiness_follows_the_database_while_liveness_stays_200() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let server = Server::start(&db.url, &[]);

    // Up: the four reports and their shapes.
    assert_started(&get(&server, "/health/startup"));
    assert_ready(&server.wait_for("/health/ready", 200, Duration::from_secs(5)));
    assert_alive(&get(&server, "/health/live"));
    assert_health(&get(&server, "/health"), true);

    // Gone: readiness 503 within 2 s, liveness 200 throughout, /health degraded but 200.
    db.go_away();
    let gone = Instant::now();
    loop {
        assert_alive(&get(&server, "/health/live"));
        let ready = get(&server, "/health/ready");
        if ready.status == 503 {
            assert_not_ready(&ready, "database_unavailable");
            break;
        }
        assert_ready(&ready);
        assert!(
            gone.elapsed() < Duration::from_secs(2),
            "readiness still 200 {:?} after the database went away",
            gone.elapsed()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    eprintln!("readiness turned 503 {:?} after the outage", gone.elapsed());
    // Longer than the scheduler heartbeat's 10 s allowance: an outage is not a stall.
    let until = gone + OUTAGE;
    while Instant::now() < until {
        assert_alive(&get(&server, "/health/live"));
        assert_not_ready(&get(&server, "/health/ready"), "database_unavailable");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_health(&get(&server, "/health"), false);
    assert_started(&get(&server, "/health/startup"));

    // Back: readiness 200 again, liveness never failed.
    db.come_back();
    let back = Instant::now();
    loop {
        assert_alive(&get(&server, "/health/live"));
        let ready = get(&server, "/health/ready");
        if ready.status == 200 {
            assert_ready(&ready);
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "readiness still 503 {:?} after the database came back: {}",
            back.elapsed(),
            ready.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("readiness turned 200 {:?} after the return", back.elapsed());
    assert_health(
        &server.wait_for("/health", 200, Duration::from_secs(1)),
        true,
    );
}

#[test]
fn liveness_stays_200_while_the_database_is_unreachable_at_boot() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    db.go_away();
    let server = Server::spawn(&db.url, &[]);
    server.wait_for("/health/live", 200, Duration::from_secs(5));
    let since = Instant::now();
    while since.elapsed() < OUTAGE {
        let live = get(&server, "/health/live");
        assert_eq!(
            live.status,
            200,
            "liveness failed {:?} into a database outage at boot (DESIGN §6: it never depends \
             on the database): {}",
            since.elapsed(),
            live.text()
        );
        assert_eq!(get(&server, "/health/startup").status, 503);
        std::thread::sleep(Duration::from_millis(250));
    }
    db.come_back();
    server.wait_for("/health/ready", 200, Duration::from_secs(10));
    assert_alive(&get(&server, "/health/live"));
}
