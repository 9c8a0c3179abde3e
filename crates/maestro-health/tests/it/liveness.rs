//! Liveness: a watchdog on heartbeats (the runtime ticker, the scheduler loop). It stays 200
//! whatever the checks say, and turns 503 when a heartbeat is later than its allowed gap.

use std::time::Duration;

use maestro_health::{Health, HealthConfig, RUNTIME_HEARTBEAT};

use crate::support::{INTERVAL, started_with_database, wait_until};

#[tokio::test(start_paused = true)]
async fn liveness_stays_200_while_the_database_check_fails() {
    let (h, db) = started_with_database().await;
    let scheduler = h.register_heartbeat("scheduler", Duration::from_secs(5));
    db.down();
    wait_until(INTERVAL * 3, || h.readiness().status == 503).await;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        scheduler.beat();
        let probe = h.liveness();
        assert_eq!(probe.status, 200, "{:?}", probe.body);
        assert!(probe.body.alive);
    }
    db.hang();
    tokio::time::sleep(INTERVAL * 10).await;
    scheduler.beat();
    assert_eq!(h.liveness().status, 200);
}

#[tokio::test(start_paused = true)]
async fn a_late_heartbeat_turns_liveness_503_and_a_beat_brings_it_back() {
    let (h, _db) = started_with_database().await;
    let _scheduler = h.register_heartbeat("scheduler", Duration::from_secs(5));
    assert_eq!(h.liveness().status, 200);

    tokio::time::sleep(Duration::from_millis(5_100)).await;
    let probe = h.liveness();
    assert_eq!(probe.status, 503);
    assert!(!probe.body.alive);
    assert_eq!(probe.body.errors, ["scheduler_stalled"]);
    assert_eq!(
        probe.body.message.as_deref(),
        Some("Service is not making progress")
    );
    let beat = &probe.body.uptime_checks.heartbeats["scheduler"];
    assert!(!beat.alive);
    assert_eq!(beat.max_gap_ms, 5_000);
    assert!(beat.age_ms >= 5_100);
    // The runtime ticker kept going meanwhile.
    assert!(probe.body.uptime_checks.heartbeats[RUNTIME_HEARTBEAT].alive);

    assert!(h.heartbeat("scheduler"));
    assert_eq!(h.liveness().status, 200);
}

#[tokio::test(start_paused = true)]
async fn a_component_that_dies_without_retiring_is_reported_and_one_that_retires_is_not() {
    let (h, _db) = started_with_database().await;
    let loop_task = {
        let hb = h.register_heartbeat("scheduler", Duration::from_secs(1));
        tokio::spawn(async move {
            hb.beat();
            panic!("scheduler loop crashed");
        })
    };
    assert!(loop_task.await.unwrap_err().is_panic());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.liveness().status, 503);

    let hb = h.register_heartbeat("scheduler", Duration::from_secs(1));
    hb.retire();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.liveness().status, 200);
}

/// Real time on a current-thread runtime: a task that blocks the runtime's only thread stops the
/// ticker, and the first probe after the block sees the runtime stalled.
#[tokio::test(flavor = "current_thread")]
async fn a_blocked_runtime_turns_liveness_503() {
    let h = Health::new(
        HealthConfig::new("1.2.3", "SQLite").runtime_max_gap(Duration::from_millis(300)),
    );
    h.mark_started();
    h.start();
    wait_until(Duration::from_secs(5), || {
        h.watchdog().runtime_lag().is_some()
    })
    .await;
    assert_eq!(h.liveness().status, 200);

    std::thread::sleep(Duration::from_millis(600));
    let probe = h.liveness();
    assert_eq!(probe.status, 503, "{:?}", probe.body);
    assert_eq!(probe.body.errors, ["runtime_stalled"]);

    let took = wait_until(Duration::from_secs(5), || h.liveness().status == 200).await;
    assert!(took < Duration::from_secs(1), "alive again after {took:?}");
    assert!(h.liveness().body.uptime_checks.runtime_lag_ms.is_some());
}
