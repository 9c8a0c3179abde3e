//! The adoption race (found by the failover test, fixed): a replica released the lease of a run
//! it had just started, with no fault anywhere.
//!
//! `Worker::drive` (a run started through the API) claims the run and `adopt` puts the lease in
//! the worker's `held` map before `Engine::recover` has registered the run's driver (it first
//! loads the run from the store). A poll in that window had `release_finished` take the held,
//! undriven lease for a run that ended and release it; the free run was then claimed again
//! (epoch + 1), its first driver fenced, and its first node executed twice — or the run stalled
//! for a lease TTL. `release_finished` now runs under the adoption lock (as do `drive`, `retry`
//! and the poll's adoptions), so no lease is seen between its claim and its driver.
//!
//! The regression test: three healthy replicas, a burst of 1,500 one-node runs, no fault. No
//! lease of an active run may be released (only a SIGTERM drain does that) and each node runs
//! exactly once. Before the fix about one run in a thousand had its lease released while active
//! on this machine. Runs claimed twice by the same replica (poll and API racing, epoch 2, one
//! driver) are benign and only counted.
//!
//! KNOWN BUG, reported to the lead, found by the same burst after the fix for orphaned leases (a
//! run's terminal write now clears its lease): `Worker::drive` (the API's start of a run) claims
//! the run with `LeaseStore::claim_run`, which takes any run whose lease is free, ended or not
//! (`retry` needs that). When another replica's poll claimed the new run first and finished it
//! before the API's claim came (a 20 ms node is enough), the terminal write has let the lease go,
//! and the API's replica claims the ended run (epoch 2): `Engine::recover` only reports its
//! outcome, and the lease stays on the ended run until that replica's next poll releases it (a
//! second later) — forever, if the replica dies in between. Before the fix the finisher still held
//! the lease, so the claim failed. About 3 runs in 1,500 here. `drive` now reads the run before
//! claiming it (and gives back a claim of a run that ended meanwhile); the second test checks it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::harness::{
    Addrs, Counter, Faults, Load, LoadOptions, Replica, Seen, create_workflows, history_of,
    install_audit, start_replicas, verify, wait_all_ended,
};
use crate::support::PgDatabase;

/// A finished burst: 1,500 one-node runs submitted as fast as four clients can to three healthy
/// replicas, every one ended.
struct Burst {
    db: PgDatabase,
    counter: Counter,
    replicas: Vec<Replica>,
    definition: Value,
    seen: Seen,
}

fn burst() -> Option<Burst> {
    let db = PgDatabase::create()?;
    let counter = Counter::start();
    let replicas = start_replicas(&db, &["solo-1", "solo-2", "solo-3"], 15);
    install_audit(&db);
    let definition = json!({"id": "one", "nodes": [
        {"id": "call", "executor": "http", "config": {"url": counter.url(20)}},
    ]});
    create_workflows(&replicas[0].server, std::slice::from_ref(&definition));
    let addrs: Addrs = Arc::new(Mutex::new(replicas.iter().map(Replica::addr).collect()));
    let load = Load::start(
        &addrs,
        &["one"],
        LoadOptions {
            clients: 4,
            interval: Duration::ZERO,
            poll: false,
            limit: 1500,
            window: None,
        },
    );
    let seen = load.finish_when_done();
    // A dropped lease would be taken again only once it expired: up to a TTL (15 s) later.
    wait_all_ended(&db, seen.runs.len(), Duration::from_secs(60));
    Some(Burst {
        db,
        counter,
        replicas,
        definition,
        seen,
    })
}

/// Runs claimed after they had ended (a `runs` row of the audit with an owner and a terminal
/// status).
fn claimed_after_ending(db: &PgDatabase) -> Vec<String> {
    db.query(
        "SELECT DISTINCT r.run_id FROM reliability_audit a JOIN runs r ON r.id = a.run_pk \
         WHERE a.tbl = 'runs' AND a.owner IS NOT NULL \
           AND a.what IN ('completed', 'failed', 'cancelled')",
    )
}

#[test]
fn a_run_started_on_a_healthy_replica_is_claimed_once() {
    let Some(b) = burst() else {
        return;
    };
    let db = &b.db;
    let reclaimed = db.query(
        "SELECT r.run_id || ' epoch ' || r.epoch FROM runs r WHERE r.epoch > 1 ORDER BY r.id",
    );
    let released = db.query(
        "SELECT DISTINCT r.run_id FROM reliability_audit a JOIN runs r ON r.id = a.run_pk \
         WHERE a.tbl = 'runs' AND a.owner IS NULL AND a.what IN ('pending', 'running')",
    );
    eprintln!(
        "adoption: {} runs on three healthy replicas; {} released while active, {} claimed \
         more than once (the first: {:?}), {} of them after they had ended (the known bug \
         below)",
        b.seen.runs.len(),
        released.len(),
        reclaimed.len(),
        &reclaimed[..reclaimed.len().min(3)],
        claimed_after_ending(db).len()
    );
    verify(
        db,
        &b.counter,
        std::slice::from_ref(&b.definition),
        &b.seen.runs,
        &Faults::default(),
    );
    assert!(
        released.is_empty(),
        "leases released while their runs were driven: {released:?}"
    );
    for r in b.replicas {
        assert!(r.server.terminate().success(), "{} did not exit 0", r.name);
    }
}

#[test]
fn a_run_is_never_claimed_after_it_ended() {
    let Some(b) = burst() else {
        return;
    };
    let late = claimed_after_ending(&b.db);
    let named: Vec<&str> = late.iter().map(String::as_str).collect();
    assert!(
        late.is_empty(),
        "{} of {} runs were claimed after they had ended: {late:?}\n{}",
        late.len(),
        b.seen.runs.len(),
        history_of(&b.db, &b.counter, &named)
    );
    for r in b.replicas {
        assert!(r.server.terminate().success(), "{} did not exit 0", r.name);
    }
}
