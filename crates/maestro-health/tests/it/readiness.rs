//! Readiness: 503 while startup is pending, while draining, or while a critical check is down,
//! stale or pending; 200 otherwise. Decisions follow the cached outcomes within one interval.

use std::time::Duration;

use maestro_health::{CheckState, HealthStatus};

use crate::support::{
    INTERVAL, POLL, Switch, health, not_ready, ready, started_with_database, wait_until,
};

#[tokio::test(start_paused = true)]
async fn a_started_server_with_its_checks_up_is_ready() {
    let (h, _db) = started_with_database().await;
    let probe = h.readiness();
    assert_eq!(probe.status, 200);
    let body = ready(probe.body);
    assert!(body.ready);
    assert_eq!(body.checks.dependencies["database"], CheckState::Ok);
}

#[tokio::test(start_paused = true)]
async fn a_failing_critical_check_turns_readiness_503_within_one_interval_and_back_after() {
    let (h, db) = started_with_database().await;
    assert_eq!(h.readiness().status, 200);

    db.down();
    let took = wait_until(INTERVAL * 3, || h.readiness().status == 503).await;
    assert!(
        took <= INTERVAL + POLL,
        "503 after {took:?}, more than one interval"
    );
    let body = not_ready(h.readiness().body);
    assert_eq!(body.errors, ["database_unavailable"]);
    assert_eq!(body.message, "Service not ready to accept traffic");

    db.up();
    let took = wait_until(INTERVAL * 3, || h.readiness().status == 200).await;
    assert!(
        took <= INTERVAL + POLL,
        "200 again after {took:?}, more than one interval"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_critical_check_fails_by_its_timeout() {
    let (h, db) = started_with_database().await;
    db.hang();
    let took = wait_until(INTERVAL * 3, || h.readiness().status == 503).await;
    // The next run starts within one interval and times out 500 ms later.
    assert!(
        took <= INTERVAL + Duration::from_millis(500) + POLL,
        "503 after {took:?}"
    );
    let snap = h.registry().get("database").unwrap();
    assert_eq!(snap.state, CheckState::Down);
    assert_eq!(snap.error.as_deref(), Some("timed out after 500 ms"));
}

#[tokio::test(start_paused = true)]
async fn a_check_that_never_completes_goes_stale_and_fails_readiness() {
    // A timeout longer than the stale threshold: the run is still in flight, yet the old
    // outcome stops counting after three intervals.
    let h = health();
    let db = Switch::new("database").timeout(Duration::from_secs(60));
    h.register_check(db.arc()).unwrap();
    h.start();
    h.registry().refresh().await;
    h.mark_started();
    assert_eq!(h.readiness().status, 200);

    db.hang();
    let took = wait_until(INTERVAL * 10, || h.readiness().status == 503).await;
    assert!(took <= INTERVAL * 3 + POLL, "503 after {took:?}");
    assert_eq!(
        h.registry().get("database").unwrap().state,
        CheckState::Stale
    );
    assert_eq!(
        not_ready(h.readiness().body).errors,
        ["database_unavailable"]
    );
}

#[tokio::test(start_paused = true)]
async fn draining_turns_readiness_503_and_can_be_undone() {
    let (h, _db) = started_with_database().await;
    h.set_draining(true);
    let probe = h.readiness();
    assert_eq!(probe.status, 503);
    assert_eq!(not_ready(probe.body).errors, ["draining"]);
    h.set_draining(false);
    assert_eq!(h.readiness().status, 200);
}

#[tokio::test(start_paused = true)]
async fn readiness_waits_for_startup_and_for_the_first_outcome() {
    let h = health();
    let db = Switch::new("database");
    h.register_check(db.arc()).unwrap();
    assert_eq!(
        not_ready(h.readiness().body).errors,
        ["not_started", "database_unavailable"],
        "a check that never ran is not up"
    );
    h.mark_started();
    h.start();
    wait_until(INTERVAL, || h.readiness().status == 200).await;
}

#[tokio::test(start_paused = true)]
async fn a_non_critical_check_only_degrades_the_overall_report() {
    let (h, _db) = started_with_database().await;
    let cache = Switch::new("team_engine").non_critical();
    cache.down();
    h.register_check(cache.arc()).unwrap();
    wait_until(INTERVAL, || {
        h.registry().get("team_engine").unwrap().state == CheckState::Down
    })
    .await;

    let body = ready(h.readiness().body);
    assert_eq!(body.checks.dependencies["team_engine"], CheckState::Down);
    assert_eq!(h.report().body.status, HealthStatus::Degraded);
    assert!(h.report().body.database.connected);
}

#[tokio::test(start_paused = true)]
async fn stopping_the_checks_lets_their_outcomes_go_stale() {
    let (h, _db) = started_with_database().await;
    h.stop();
    let took = wait_until(INTERVAL * 10, || h.readiness().status == 503).await;
    assert!(
        took > INTERVAL * 2,
        "stale only after three intervals, got {took:?}"
    );
    h.start();
    wait_until(INTERVAL, || h.readiness().status == 200).await;
}
