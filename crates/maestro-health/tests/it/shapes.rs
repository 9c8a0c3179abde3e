//! The wire shapes: every report's JSON has exactly the keys (and JSON types) of the seed's
//! Phase 2 report, failure bodies at the top level (no `detail`), timestamps RFC 3339 UTC, and
//! each body reads back into its type. Liveness may add keys inside `uptime_checks` (the seed's
//! list is open there); nothing else may.

use serde_json::{Value, json};

use maestro_health::{HealthReport, LivenessReport, ReadinessReport, StartupReport};

use crate::support::{health, started_with_database};

/// Asserts that `actual` has the shape of `expected`: the same keys in every object (extra keys
/// allowed only in the objects at `open` paths) and the same JSON type at every leaf. Arrays
/// are compared by their first element when `expected` has one.
#[track_caller]
fn check_shape(expected: &Value, actual: &Value, open: &[&str]) {
    let mut problems = Vec::new();
    shape(expected, actual, "$", open, &mut problems);
    assert!(
        problems.is_empty(),
        "shape mismatch:\n  {}\nin {actual:#}",
        problems.join("\n  ")
    );
}

fn shape(expected: &Value, actual: &Value, path: &str, open: &[&str], problems: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let p = format!("{path}.{key}");
                match a.get(key) {
                    Some(av) => shape(ev, av, &p, open, problems),
                    None => problems.push(format!("{p}: missing")),
                }
            }
            if !open.contains(&path) {
                for key in a.keys().filter(|k| !e.contains_key(*k)) {
                    problems.push(format!("{path}.{key}: unexpected key"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(ev), Some(av)) = (e.first(), a.first()) {
                shape(ev, av, &format!("{path}[0]"), open, problems);
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        _ => problems.push(format!("{path}: expected {expected}, got {actual}")),
    }
}

#[track_caller]
fn check_timestamp(body: &Value) {
    let ts = body["timestamp"].as_str().expect("a timestamp string");
    assert!(ts.ends_with('Z'), "{ts} is not UTC with a Z");
    chrono::DateTime::parse_from_rfc3339(ts).expect("an RFC 3339 timestamp");
}

#[tokio::test(start_paused = true)]
async fn overall_report_matches_the_seed() {
    let (h, _db) = started_with_database().await;
    let probe = h.report();
    assert_eq!(probe.status, 200);
    let body = probe.to_json();
    check_shape(
        &json!({
            "status": "healthy",
            "timestamp": "2025-10-11T21:30:00Z",
            "version": "3.0.0",
            "database": {"connected": true, "type": "PostgreSQL"},
            "cache": {"workflows": 5, "websockets": 12},
            "tasks": {"background": 3, "active": 1}
        }),
        &body,
        &[],
    );
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["database"]["type"], "SQLite");
    check_timestamp(&body);
    let back: HealthReport = serde_json::from_value(body).unwrap();
    assert_eq!(back, probe.body);
}

#[tokio::test(start_paused = true)]
async fn a_degraded_report_adds_only_the_database_error() {
    let h = health();
    let body = h.report().to_json();
    assert_eq!(body["status"], "degraded");
    check_shape(
        &json!({"connected": false, "type": "SQLite", "error": "no database check registered"}),
        &body["database"],
        &[],
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_bodies_match_the_seed() {
    let (h, _db) = started_with_database().await;
    h.gauges().workflows.set(5);
    h.gauges().active_tasks.set(2);
    let probe = h.readiness();
    let body = probe.to_json();
    check_shape(
        &json!({
            "ready": true,
            "timestamp": "2025-10-11T21:30:00Z",
            "checks": {"database": "ok", "workflows": 5, "background_tasks": 2}
        }),
        &body,
        &[],
    );
    assert_eq!(
        body["checks"],
        json!({"database": "ok", "workflows": 5, "background_tasks": 2})
    );
    check_timestamp(&body);
    let back: ReadinessReport = serde_json::from_value(body).unwrap();
    assert_eq!(back, probe.body);

    h.set_draining(true);
    let probe = h.readiness();
    assert_eq!(probe.status, 503);
    let body = probe.to_json();
    assert_eq!(
        body,
        json!({
            "ready": false,
            "errors": ["draining"],
            "message": "Service not ready to accept traffic"
        }),
        "the failure body is at the top level, not under `detail`"
    );
    let back: ReadinessReport = serde_json::from_value(body).unwrap();
    assert_eq!(back, probe.body);
}

#[tokio::test(start_paused = true)]
async fn liveness_body_matches_the_seed() {
    let (h, _db) = started_with_database().await;
    h.gauges().background_tasks.set(3);
    h.gauges().websockets.set(12);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let probe = h.liveness();
    assert_eq!(probe.status, 200);
    let body = probe.to_json();
    check_shape(
        &json!({
            "alive": true,
            "timestamp": "2025-10-11T21:30:00Z",
            "uptime_checks": {
                "api_responsive": true,
                "background_tasks_total": 3,
                "active_connections": 12
            }
        }),
        &body,
        &["$.uptime_checks"],
    );
    assert_eq!(body["uptime_checks"]["api_responsive"], true);
    assert_eq!(body["uptime_checks"]["background_tasks_total"], 3);
    assert_eq!(body["uptime_checks"]["active_connections"], 12);
    // The additions: the watchdog's view.
    check_shape(
        &json!({"alive": true, "age_ms": 0, "max_gap_ms": 5000}),
        &body["uptime_checks"]["heartbeats"]["runtime"],
        &[],
    );
    assert!(body["uptime_checks"]["runtime_lag_ms"].is_number());
    assert!(body["uptime_checks"]["uptime_seconds"].is_number());
    check_timestamp(&body);
    let back: LivenessReport = serde_json::from_value(body).unwrap();
    assert_eq!(back, probe.body);

    let _scheduler = h.register_heartbeat("scheduler", std::time::Duration::from_secs(1));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let probe = h.liveness();
    assert_eq!(probe.status, 503);
    let body = probe.to_json();
    assert_eq!(body["alive"], false);
    assert_eq!(body["errors"], json!(["scheduler_stalled"]));
    assert_eq!(body["message"], "Service is not making progress");
    assert!(body.get("detail").is_none());
}

#[test]
fn startup_bodies_match_the_seed() {
    let h = health();
    let probe = h.startup();
    assert_eq!(probe.status, 503);
    let body = probe.to_json();
    check_shape(
        &json!({
            "started": false,
            "errors": ["database_not_initialized"],
            "message": "Service still starting up"
        }),
        &body,
        &[],
    );
    let back: StartupReport = serde_json::from_value(body).unwrap();
    assert_eq!(back, probe.body);

    h.mark_started();
    let probe = h.startup();
    let body = probe.to_json();
    check_shape(
        &json!({
            "started": true,
            "timestamp": "2025-10-11T21:30:00Z",
            "initialization": {
                "database": "initialized",
                "engine": "initialized",
                "workflows": "ready"
            }
        }),
        &body,
        &[],
    );
    assert_eq!(
        body["initialization"],
        json!({"database": "initialized", "engine": "initialized", "workflows": "ready"})
    );
    check_timestamp(&body);
    let back: StartupReport = serde_json::from_value(body).unwrap();
    assert_eq!(back, probe.body);
}

#[test]
fn bodies_serialize_the_same_as_bytes_and_as_values() {
    let h = health();
    let probe = h.readiness();
    let from_bytes: Value = serde_json::from_slice(&probe.to_json_bytes()).unwrap();
    assert_eq!(from_bytes, probe.to_json());
    let (status, value) = probe.into_parts();
    assert_eq!((status, value), (503, from_bytes));
}
