//! Failover (DESIGN §9): three replicas on one database under a steady stream of runs; one is
//! `kill -9`ed at a random moment. Its runs are taken over within lease TTL + 1 s (from the kill
//! to the new lease, by the database's audit), every run completes, no node that the database had
//! as completed runs again, a node in flight at the kill runs at most twice (any other node
//! exactly once), every event log is gap-free, no active run's lease is ever released, and once
//! every run ended no lease is left (a run's terminal write lets its lease go). The long variant
//! repeats the kill (`MAESTRO_KILL_ROUNDS`, default 20) and prints the takeover times that
//! docs/reliability.md reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::harness::{
    Addrs, Counter, Faults, Load, LoadOptions, Replica, Rng, TTL_SECS, chain, create_workflows,
    env_number, fan, held_runs, install_audit, median_max, micros, released_while_active, since,
    start_replicas, takeover_bound, verify, wait_all_ended, wait_takeover,
};
use crate::support::PgDatabase;

const REPLICAS: [&str; 3] = ["replica-1", "replica-2", "replica-3"];

#[test]
fn a_killed_replica_s_runs_are_taken_over_within_the_lease_and_finish_once() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    kill_rounds(&db, "failover", 1);
}

#[test]
#[ignore = "long (about 2 minutes): MAESTRO_KILL_ROUNDS kills (default 20); run with --ignored"]
fn repeated_kills_are_each_taken_over_within_the_lease() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    kill_rounds(&db, "kill rounds", env_number("MAESTRO_KILL_ROUNDS", 20));
}

/// Kills a random replica `rounds` times under load (starting a replacement each time, as a
/// Deployment would), then checks the takeover times and every run.
fn kill_rounds(db: &PgDatabase, test: &str, rounds: usize) {
    let mut rng = Rng::seeded(test);
    let counter = Counter::start();
    let mut live = start_replicas(db, &REPLICAS, TTL_SECS);
    install_audit(db);
    let definitions = [fan("fan", &counter, 100), chain("chain", &counter, 100)];
    create_workflows(&live[0].server, &definitions);
    let addrs: Addrs = Arc::new(Mutex::new(live.iter().map(Replica::addr).collect()));
    let load = Load::start(
        &addrs,
        &["fan", "chain"],
        LoadOptions {
            clients: 1,
            interval: Duration::from_millis(60),
            poll: false,
            limit: usize::MAX,
            window: None,
        },
    );
    let bound = takeover_bound(TTL_SECS);
    let mut faults = Faults::default();
    let mut per_run: Vec<Duration> = Vec::new();
    let mut per_kill: Vec<Duration> = Vec::new();
    let mut idle_kills = 0;
    std::thread::sleep(Duration::from_millis(1500)); // Let the load build up.
    for round in 1..=rounds {
        std::thread::sleep(rng.between(Duration::from_millis(300), Duration::from_millis(2500)));
        let mut victim = live.remove(rng.below(live.len()));
        addrs.lock().unwrap().retain(|a| *a != victim.addr());
        let killed_at = SystemTime::now();
        victim.server.sigkill();
        let held = held_runs(db, &victim.name);
        faults.after_kill(db, &victim.name);
        // A replacement, as a Deployment would start; it may take runs over too.
        let name = format!("replica-{}", REPLICAS.len() + round);
        let replacement = Replica::spawn(db, &name, TTL_SECS);
        let taken = wait_takeover(db, &held, true, bound + Duration::from_secs(30));
        let times: Vec<Duration> = taken.values().map(|t| since(killed_at, *t)).collect();
        let (median, max) = median_max(&times);
        eprintln!(
            "{test}: round {round}: killed {} at {} µs holding {} unfinished runs; taken over \
             after median {} ms, max {} ms",
            victim.name,
            micros(killed_at),
            held.len(),
            median.as_millis(),
            max.as_millis()
        );
        if held.is_empty() {
            idle_kills += 1;
        } else {
            per_kill.push(max);
        }
        per_run.extend(times);
        replacement.ready();
        addrs.lock().unwrap().push(replacement.addr());
        live.push(replacement);
    }
    std::thread::sleep(Duration::from_secs(1)); // Load on the last set of replicas.
    let seen = load.finish();
    let took = wait_all_ended(db, seen.runs.len(), Duration::from_secs(120));
    let figures = verify(db, &counter, &definitions, &seen.runs, &faults);
    let (run_median, run_max) = median_max(&per_run);
    let (kill_median, kill_max) = median_max(&per_kill);
    eprintln!(
        "{test}: {rounds} kills ({idle_kills} of an idle replica), lease TTL {TTL_SECS} s; \
         takeover per run (n={}): median {} ms, max {} ms; per kill, until its last run was \
         taken (n={}): median {} ms, max {} ms",
        per_run.len(),
        run_median.as_millis(),
        run_max.as_millis(),
        per_kill.len(),
        kill_median.as_millis(),
        kill_max.as_millis()
    );
    eprintln!(
        "{test}: {} runs completed ({} ms after the load stopped), {} nodes, {} http calls, \
         {} nodes executed more than once (each in flight at a kill), {} completed nodes \
         executed again, {} events; client: {} connection errors, statuses {:?}",
        figures.runs,
        took.as_millis(),
        figures.nodes,
        figures.http_calls,
        figures.executed_twice,
        figures.completed_rerun,
        figures.events,
        seen.connection_errors,
        seen.statuses
    );
    assert!(
        idle_kills * 2 <= rounds && !per_kill.is_empty(),
        "too many kills hit a replica without runs ({idle_kills} of {rounds}): too light a load"
    );
    assert!(
        run_max <= bound,
        "a run was taken over {} ms after the kill, past lease TTL + 1 s ({} ms)",
        run_max.as_millis(),
        bound.as_millis()
    );
    assert!(
        seen.unexpected.is_empty(),
        "the client saw errors: {:?}",
        seen.unexpected
    );
    let released = released_while_active(db, &HashMap::new());
    assert!(
        released.is_empty(),
        "leases of active runs released with no drain: {released:?}"
    );
    let leases = db.query("SELECT count(*) FROM runs WHERE lease_owner IS NOT NULL");
    assert_eq!(leases, ["0"], "leases left on ended runs");
    for r in live {
        assert!(r.server.terminate().success(), "{} did not exit 0", r.name);
    }
}
