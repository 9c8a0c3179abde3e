//! The overall report (`/health`): always 200; `healthy` or `degraded`; the database check, the
//! gauges and the configured version and backend.

use maestro_health::HealthStatus;

use crate::support::{INTERVAL, health, started_with_database, wait_until};

#[tokio::test(start_paused = true)]
async fn healthy_with_everything_up_and_the_gauges_reported() {
    let (h, _db) = started_with_database().await;
    let g = h.gauges();
    g.workflows.set(5);
    g.websockets.inc();
    g.websockets.inc();
    g.background_tasks.set(3);
    g.active_tasks.set(1);
    let probe = h.report();
    assert_eq!(probe.status, 200);
    let body = probe.body;
    assert_eq!(body.status, HealthStatus::Healthy);
    assert_eq!(body.version, "1.2.3");
    assert!(body.database.connected);
    assert_eq!(body.database.kind, "SQLite");
    assert_eq!(body.database.error, None);
    assert_eq!((body.cache.workflows, body.cache.websockets), (5, 2));
    assert_eq!((body.tasks.background, body.tasks.active), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn degraded_but_200_when_the_database_is_down() {
    let (h, db) = started_with_database().await;
    db.down();
    wait_until(INTERVAL * 3, || !h.report().body.database.connected).await;
    let probe = h.report();
    assert_eq!(probe.status, 200);
    assert_eq!(probe.body.status, HealthStatus::Degraded);
    assert_eq!(
        probe.body.database.error.as_deref(),
        Some("connection refused")
    );
}

#[tokio::test(start_paused = true)]
async fn degraded_while_a_heartbeat_is_late() {
    let (h, _db) = started_with_database().await;
    let _scheduler = h.register_heartbeat("scheduler", INTERVAL);
    tokio::time::sleep(INTERVAL * 2).await;
    // Keep the database outcome fresh: only the heartbeat is late.
    h.registry().refresh().await;
    assert_eq!(h.report().body.status, HealthStatus::Degraded);
}

#[test]
fn degraded_before_any_check_ran() {
    let h = health();
    let body = h.report().body;
    assert_eq!(body.status, HealthStatus::Degraded);
    assert!(!body.database.connected);
}
