//! A probe never waits on a check: with checks in the middle of five-second runs, every probe
//! answers from the cache in well under a millisecond (real time, multi-threaded runtime).

use std::sync::Arc;
use std::time::{Duration, Instant};

use maestro_health::{FnCheck, Health};

use crate::support::{Switch, health, wait_until};

/// A check that sleeps five seconds per run; `timeout` bounds it (a long one keeps the run in
/// flight during the measurement, a short one makes it fail while the next run is pending).
fn sleeper(name: &'static str, timeout: Duration) -> Arc<dyn maestro_health::HealthCheck> {
    FnCheck::new(name, || async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    })
    .timeout(timeout)
    .into_arc()
}

/// Times `n` calls of `probe`; returns the median and the maximum.
fn time_calls(n: usize, mut probe: impl FnMut()) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            probe();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[n / 2], times[n - 1])
}

#[track_caller]
fn assert_fast(what: &str, (median, max): (Duration, Duration)) {
    assert!(
        median < Duration::from_millis(1),
        "{what}: median {median:?}"
    );
    // A probe that waited on the check would take seconds; the maximum allows for a busy machine.
    assert!(max < Duration::from_millis(100), "{what}: max {max:?}");
}

fn time_every_probe(h: &Health) {
    assert_fast(
        "readiness",
        time_calls(500, || drop(h.readiness().to_json_bytes())),
    );
    assert_fast(
        "liveness",
        time_calls(500, || drop(h.liveness().to_json_bytes())),
    );
    assert_fast(
        "startup",
        time_calls(500, || drop(h.startup().to_json_bytes())),
    );
    assert_fast(
        "overall",
        time_calls(500, || drop(h.report().to_json_bytes())),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_from_the_cache_while_a_check_sleeps_five_seconds() {
    let h = health();
    let db = Switch::new("database").timeout(Duration::from_secs(60));
    db.hang();
    h.register_check(db.arc()).unwrap();
    h.register_check(sleeper("slow", Duration::from_secs(10)))
        .unwrap();
    h.mark_started();
    h.start();
    // The database run is in flight (it hangs for an hour under a 60 s timeout).
    wait_until(Duration::from_secs(5), || db.take_entered()).await;

    let started = Instant::now();
    time_every_probe(&h);
    assert_eq!(
        h.readiness().status,
        503,
        "no outcome yet: not ready, but at once"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "all probes took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_check_is_down_after_its_timeout_and_probes_stay_fast() {
    let h = health();
    h.register_check(sleeper("database", Duration::from_millis(200)))
        .unwrap();
    h.mark_started();
    h.start();
    let took = wait_until(Duration::from_secs(3), || {
        h.registry()
            .get("database")
            .is_some_and(|s| s.error.as_deref() == Some("timed out after 200 ms"))
    })
    .await;
    assert!(took < Duration::from_secs(1), "down after {took:?}");
    time_every_probe(&h);
    assert_eq!(h.readiness().status, 503);
    assert_eq!(h.liveness().status, 200);
}
