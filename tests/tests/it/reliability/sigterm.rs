//! A SIGTERM drain records the results of the attempts that finish within its grace period.
//! (Found by the rolling-restart test, fixed.) The drain (`serve` in
//! bins/maestro-server/src/serve.rs) waits while `Engine::executing() > 0`, then cancels the
//! worker, whose `Worker::drain` calls `Engine::shutdown`, which cancels every driver's
//! `Control::halt`. `executing` counts an attempt down when its result is taken in
//! (`Driver::on_attempt`), before the driver's next `flush` has written it, and `flush` raced the
//! store write against the halt: when the last attempts of a draining replica finished, the drain
//! could see 0 while their result writes were under way, the halt dropped them, the leases were
//! released, and another replica ran those nodes again although they had completed within the
//! grace. A write under way now always finishes; only the wait before a retry gives way to a stop.
//!
//! The test: one replica drives 40 runs whose first node waits on a call that the test holds; the
//! replica gets SIGTERM while those calls are in flight, and 300 ms later the test answers them all
//! at once, well within its 5 s grace period, so their 40 result writes are under way when the
//! last result is taken in. Every one must be recorded by the draining replica and executed once;
//! the other replica runs the rest. Before the fix, 31 to 38 of the 40 results were dropped in
//! each of four runs.

use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use super::harness::{
    Counter, Faults, GRACE_SECS, TTL_SECS, create_workflows, install_audit, micros, start_replicas,
    verify, wait_all_ended,
};
use crate::support::PgDatabase;

const RUNS: usize = 40;

#[test]
fn a_drained_replica_records_every_attempt_that_finished_within_its_grace() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let counter = Counter::start();
    let mut replicas = start_replicas(&db, &["term", "heir"], TTL_SECS);
    install_audit(&db);
    let definition = json!({"id": "drain", "nodes": [
        {"id": "call", "executor": "http", "config": {"url": counter.gated_url()}},
        {"id": "after", "executor": "http", "config": {"url": counter.url(0)},
         "depends_on": ["call"]},
    ]});
    create_workflows(&replicas[0].server, std::slice::from_ref(&definition));
    let runs: Vec<String> = (0..RUNS)
        .map(|_| {
            let r = replicas[0].server.request(
                "POST",
                "/api/v1/workflows/drain/runs",
                Some(&json!({"inputs": {}})),
            );
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["run_id"].as_str().unwrap().to_string()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter.calls().len() < RUNS {
        assert!(Instant::now() < deadline, "the calls did not all arrive");
        std::thread::sleep(Duration::from_millis(10));
    }
    let term = Faults::sigterm(&db, &replicas[0]);
    let sent = Instant::now();
    let sent_at = SystemTime::now();
    std::thread::sleep(Duration::from_millis(300));
    counter.open_gate();
    let status = replicas[0].server.wait_exit(Duration::from_secs(20));
    let drained = sent.elapsed();
    assert!(status.success(), "term exited with {status:?}");
    assert!(
        drained < Duration::from_secs(GRACE_SECS),
        "the drain took {drained:?}, past the grace period"
    );
    let mut faults = Faults::default();
    faults.after_sigterm(&db, term, drained);
    wait_all_ended(&db, RUNS, Duration::from_secs(30));

    // The draining replica recorded every result that came in within its grace.
    let recorded = db.query(
        "SELECT count(DISTINCT a.run_pk) FROM reliability_audit a \
         WHERE a.tbl = 'node_states' AND a.node_id = 'call' AND a.what = 'completed' \
           AND a.app = 'term'",
    );
    let calls = counter.by_node();
    let twice: Vec<&String> = runs
        .iter()
        .filter(|r| calls[&((*r).clone(), "call".to_string())].len() > 1)
        .collect();
    eprintln!(
        "sigterm: SIGTERM at {} µs, drained in {} ms; `call` recorded by the drained replica in \
         {} of {RUNS} runs, executed twice in {}",
        micros(sent_at),
        drained.as_millis(),
        recorded[0],
        twice.len()
    );
    verify(
        &db,
        &counter,
        std::slice::from_ref(&definition),
        &runs,
        &faults,
    );
    assert_eq!(
        recorded,
        [RUNS.to_string()],
        "the drained replica did not record every result"
    );
    assert!(replicas.remove(1).server.terminate().success());
}
