//! The soak (issue 7, behind a flag): `MAESTRO_SOAK_RUNS` runs (default 10,000) of mixed shapes
//! across three replicas, with `MAESTRO_SOAK_KILLS` replicas (default 2) `kill -9`ed on the way
//! and replaced. Afterwards every run completed, a node ran twice only if it was in flight at a
//! kill and no completed node ran again, every event log is gap-free, no active run's lease was
//! ever released, and the database holds no unfinished run and no lease — as soon as the last run
//! ended (a run's terminal write lets its lease go, even on a replica killed later), and again
//! once the replicas have drained. Prints the figures that docs/reliability.md records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::harness::{
    Addrs, Counter, Faults, Load, LoadOptions, Replica, Rng, chain, count_ended, create_workflows,
    diamond, env_number, fan, held_runs, install_audit, released_while_active, start_replicas,
    verify, wait_all_ended, wait_takeover,
};
use crate::support::PgDatabase;

/// Long enough that a loaded replica never loses a lease by a late renewal.
const SOAK_TTL_SECS: u64 = 5;

#[test]
#[ignore = "soak (minutes): MAESTRO_SOAK_RUNS runs (default 10,000); run with --ignored"]
fn soak_runs_every_run_to_completion_and_leaves_nothing_behind() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let total = env_number("MAESTRO_SOAK_RUNS", 10_000);
    let kills = env_number("MAESTRO_SOAK_KILLS", 2);
    let mut rng = Rng::seeded("soak");
    let counter = Counter::start();
    let mut live = start_replicas(&db, &["soak-1", "soak-2", "soak-3"], SOAK_TTL_SECS);
    install_audit(&db);
    let definitions = [
        fan("soak_fan", &counter, 0),
        chain("soak_chain", &counter, 0),
        diamond("soak_diamond", &counter, 0),
    ];
    create_workflows(&live[0].server, &definitions);
    let addrs: Addrs = Arc::new(Mutex::new(live.iter().map(Replica::addr).collect()));
    let ended = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    count_ended(db.url.clone(), ended.clone(), stop.clone());
    let started = Instant::now();
    let load = Load::start(
        &addrs,
        &["soak_fan", "soak_chain", "soak_diamond"],
        LoadOptions {
            clients: 4,
            interval: Duration::ZERO,
            poll: false,
            limit: total,
            window: Some((120, ended.clone())),
        },
    );

    // Kills at random points of the run count, each replaced.
    let mut marks: Vec<usize> = (0..kills)
        .map(|_| total / 10 + rng.below((total * 8 / 10).max(1)))
        .collect();
    marks.sort_unstable();
    let mut faults = Faults::default();
    for (i, mark) in marks.into_iter().enumerate() {
        while ended.load(Ordering::Relaxed) < mark {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut victim = live.remove(rng.below(live.len()));
        addrs.lock().unwrap().retain(|a| *a != victim.addr());
        let at = SystemTime::now();
        victim.server.sigkill();
        let held = held_runs(&db, &victim.name);
        faults.after_kill(&db, &victim.name);
        let replacement = Replica::spawn(&db, &format!("soak-{}", 4 + i), SOAK_TTL_SECS);
        let taken = wait_takeover(&db, &held, true, Duration::from_secs(60));
        let max = taken
            .values()
            .map(|t| t.duration_since(at).unwrap_or_default())
            .max()
            .unwrap_or_default();
        eprintln!(
            "soak: after {mark} runs, killed {} holding {} unfinished runs; all taken over \
             within {} ms",
            victim.name,
            held.len(),
            max.as_millis()
        );
        replacement.ready();
        addrs.lock().unwrap().push(replacement.addr());
        live.push(replacement);
    }

    let seen = load.finish_when_done();
    wait_all_ended(&db, seen.runs.len(), Duration::from_secs(300));
    let duration = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let unfinished = || {
        db.query(
            "SELECT count(*) FROM runs WHERE status NOT IN ('completed', 'failed', 'cancelled')",
        )
    };
    let leases = || {
        db.query(
            "SELECT run_id || ' ' || status || ' epoch ' || epoch || ' ' || lease_owner \
             FROM runs WHERE lease_owner IS NOT NULL ORDER BY id",
        )
    };
    // With the replicas still up: every run ended, so no lease may be left.
    let (unfinished_live, leases_live) = (unfinished(), leases());
    for r in live {
        assert!(r.server.terminate().success(), "{} did not exit 0", r.name);
    }
    // And once they have drained.
    let (unfinished_drained, leases_drained) = (unfinished(), leases());
    let released = released_while_active(&db, &HashMap::new());
    let figures = verify(&db, &counter, &definitions, &seen.runs, &faults);
    eprintln!(
        "soak: {} runs in {:.1} s ({:.1} runs/s) across 3 replicas with {kills} kills; {} \
         nodes completed, {} http calls, {} nodes executed more than once (each in flight at a \
         kill), {} completed nodes executed again, {} events; active runs whose lease was \
         released {}; unfinished runs {} (after the drains {}), leases left {} (after the \
         drains {}); client: {} connection errors, statuses {:?}",
        figures.runs,
        duration.as_secs_f64(),
        figures.runs as f64 / duration.as_secs_f64(),
        figures.nodes,
        figures.http_calls,
        figures.executed_twice,
        figures.completed_rerun,
        figures.events,
        released.len(),
        unfinished_live[0],
        unfinished_drained[0],
        leases_live.len(),
        leases_drained.len(),
        seen.connection_errors,
        seen.statuses
    );
    assert_eq!(figures.runs, total);
    assert_eq!(unfinished_live, ["0"], "runs left unfinished");
    assert_eq!(unfinished_drained, ["0"], "runs left unfinished");
    assert!(
        leases_live.is_empty(),
        "leases left on ended runs: {leases_live:?}"
    );
    assert!(
        leases_drained.is_empty(),
        "leases left after every replica drained: {leases_drained:?}"
    );
    assert!(
        released.is_empty(),
        "leases of active runs released with no drain: {released:?}"
    );
    assert!(seen.unexpected.is_empty(), "{:?}", seen.unexpected);
}
