//! A rolling restart under load (DESIGN §6 SIGTERM, §9): three replicas, two clients that keep
//! submitting runs (with idempotency keys) and reading them back, moving to another replica on
//! 503 or on a refused or reset connection. Each replica in turn gets SIGTERM, drains and exits
//! 0, and a replacement starts. No client sees a 5xx other than 503, every submitted run
//! completes, no active run's lease is let go but by a drain, and every `http` node is executed
//! exactly once: a drain lets the attempts in flight finish and records them, so a node may run
//! again elsewhere only if it was in flight on a replica whose grace period ran out (never here:
//! the drains take well under a second; `Faults::after_sigterm` says which nodes that would be).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::harness::{
    Addrs, Counter, Faults, Load, LoadOptions, Replica, TTL_SECS, create_workflows, diamond, fan,
    install_audit, micros, released_while_active, start_replicas, verify, wait_all_ended,
};
use crate::support::PgDatabase;

#[test]
fn a_rolling_restart_under_load_loses_no_run_and_runs_every_node_once() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let counter = Counter::start();
    let mut live = start_replicas(&db, &["roll-1", "roll-2", "roll-3"], TTL_SECS);
    install_audit(&db);
    let mut draining: HashMap<String, SystemTime> = HashMap::new();
    let definitions = [
        fan("roll_fan", &counter, 50),
        diamond("roll_diamond", &counter, 100),
    ];
    create_workflows(&live[0].server, &definitions);
    let addrs: Addrs = Arc::new(Mutex::new(live.iter().map(Replica::addr).collect()));
    let load = Load::start(
        &addrs,
        &["roll_fan", "roll_diamond"],
        LoadOptions {
            clients: 2,
            interval: Duration::from_millis(25),
            poll: true,
            limit: usize::MAX,
            window: None,
        },
    );
    let mut faults = Faults::default();
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..3 {
        let mut old = live.remove(0);
        let sent = Instant::now();
        let sent_at = SystemTime::now();
        draining.insert(old.name.clone(), sent_at);
        let term = Faults::sigterm(&db, &old);
        let status = old.server.wait_exit(Duration::from_secs(20));
        let drained = sent.elapsed();
        assert!(status.success(), "{} exited with {status:?}", old.name);
        faults.after_sigterm(&db, term, drained);
        // The clients keep trying the old address until the replacement is ready, like a
        // client with a stale endpoint list: refused connections, then another replica.
        let replacement = Replica::spawn(&db, &format!("roll-{}", 4 + i), TTL_SECS);
        replacement.ready();
        addrs.lock().unwrap().retain(|a| *a != old.addr());
        eprintln!(
            "rolling: {} got SIGTERM at {} µs, drained in {} ms; {} ready {} ms after the SIGTERM",
            old.name,
            micros(sent_at),
            drained.as_millis(),
            replacement.name,
            sent.elapsed().as_millis()
        );
        addrs.lock().unwrap().push(replacement.addr());
        live.push(replacement);
    }
    std::thread::sleep(Duration::from_secs(1));
    let seen = load.finish();
    let took = wait_all_ended(&db, seen.runs.len(), Duration::from_secs(60));
    let figures = verify(&db, &counter, &definitions, &seen.runs, &faults);
    eprintln!(
        "rolling: {} runs completed ({} ms after the load stopped), {} http calls, {} nodes \
         executed twice, drains past their grace period: {:?}; client: statuses {:?}, {} \
         connection errors",
        figures.runs,
        took.as_millis(),
        figures.http_calls,
        figures.executed_twice,
        faults.graceless,
        seen.statuses,
        seen.connection_errors
    );
    let released = released_while_active(&db, &draining);
    assert!(
        released.is_empty(),
        "leases of active runs released outside a drain: {released:?}"
    );
    assert_eq!(
        seen.server_errors(),
        0,
        "the clients saw 5xx other than 503: {:?}",
        seen.unexpected
    );
    assert!(
        seen.unexpected.is_empty(),
        "the clients saw errors: {:?}",
        seen.unexpected
    );
    for r in live {
        assert!(r.server.terminate().success(), "{} did not exit 0", r.name);
    }
}
