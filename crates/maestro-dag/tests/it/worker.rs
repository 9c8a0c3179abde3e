//! Several replicas on one store: claims, takeover after a dead replica's lease expires, fencing
//! of a replica that lost its lease, and release on shutdown.

use std::sync::Arc;
use std::time::Duration;

use maestro_dag::{
    CancellationToken, DefinitionStore, Engine, LeaseStore, MemoryStore, NodeStatus, RunStatus,
    RunStore, StartOptions, StoreResolver, Worker, WorkerConfig, Workflow,
};
use serde_json::json;

use crate::support::{NodeExt, Probe, Report, eventually, node, registry, workflow};

const TTL: Duration = Duration::from_millis(300);

fn replica(store: &MemoryStore, probe: &Arc<Probe>, owner: &str) -> Arc<Worker> {
    let registry = registry(probe);
    let engine = Engine::new(Arc::new(store.clone()), registry.clone());
    let resolver = Arc::new(StoreResolver::new(Arc::new(store.clone()), registry));
    Worker::new(
        engine,
        Arc::new(store.clone()),
        resolver,
        WorkerConfig {
            owner: owner.to_string(),
            lease_ttl: TTL,
            poll_interval: Duration::from_millis(20),
            claim_batch: 8,
        },
    )
}

async fn stored_workflow(store: &MemoryStore, probe: &Arc<Probe>) -> Arc<Workflow> {
    let def = workflow(
        "w",
        vec![
            node("a"),
            node("b").after(["a"]).cfg(json!({"gate": "b"})),
            node("c").after(["b"]),
        ],
    );
    let put = store.put_definition(&def).await.unwrap();
    Arc::new(
        Workflow::compile(def, Some(&registry(probe)))
            .unwrap()
            .with_version(put.record.version),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_through_a_worker_is_leased_driven_and_released() {
    let store = MemoryStore::new();
    let probe = Arc::new(Probe::default());
    let wf = stored_workflow(&store, &probe).await;
    let w = replica(&store, &probe, "r1");
    let started = w
        .start_run(wf, json!({}), StartOptions::default())
        .await
        .unwrap();
    assert!(started.created);
    let handle = started.handle.expect("the starting replica drives its run");
    let run_id = started.run.run_id.clone();
    let lease = store.lease(&run_id).await.unwrap().expect("a lease");
    assert_eq!(lease.owner, "r1");
    assert_eq!(w.held_count(), 1);
    probe.open("b");
    let outcome = tokio::time::timeout(Duration::from_secs(5), handle.wait())
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Completed);
    w.claim_once().await; // housekeeping releases the lease of the finished run
    assert_eq!(w.held_count(), 0);
    assert!(store.lease(&run_id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_run_is_taken_over_after_its_lease_expires() {
    let store = MemoryStore::new();
    let probe = Arc::new(Probe::default());
    let wf = stored_workflow(&store, &probe).await;

    // Replica 1 starts the run and "dies" while `b` runs: its engine stops, nothing is released.
    let r1 = replica(&store, &probe, "r1");
    let started = r1
        .start_run(wf.clone(), json!({}), StartOptions::default())
        .await
        .unwrap();
    let run_id = started.run.run_id.to_string();
    eventually("b to start", || async { probe.executions("b") == 1 }).await;
    r1.engine().shutdown().await;

    // Replica 2 polls: nothing to take while the lease is live, the run once it expired.
    let r2 = replica(&store, &probe, "r2");
    assert_eq!(r2.claim_once().await, 0, "a live lease is respected");
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    probe.open("b");
    assert_eq!(r2.claim_once().await, 1);
    // (Read from the worker: the run may already have ended, and its terminal write let the
    // stored lease go.)
    let lease = r2
        .held()
        .into_iter()
        .next()
        .expect("r2 holds the run's lease");
    assert_eq!(
        (&*lease.run_id, lease.owner.as_str(), lease.epoch),
        (run_id.as_str(), "r2", 2)
    );

    eventually("the run to complete", || async {
        store.load_run(&run_id).await.unwrap().unwrap().run.status == RunStatus::Completed
    })
    .await;
    assert_eq!(
        probe.executions("a"),
        1,
        "a completed node never runs twice"
    );
    assert_eq!(probe.executions("b"), 2, "the node in flight runs again");
    assert_eq!(probe.executions("c"), 1);
    let report = Report::load(&store, &wf, &run_id).await;
    let seqs: Vec<u64> = report.events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_lease_is_fenced_and_stops() {
    let store = MemoryStore::new();
    let probe = Arc::new(Probe::default());
    let wf = stored_workflow(&store, &probe).await;
    let stale = replica(&store, &probe, "stale");
    let started = stale
        .start_run(wf.clone(), json!({}), StartOptions::default())
        .await
        .unwrap();
    let run_id = started.run.run_id.to_string();
    eventually("b to start", || async { probe.executions("b") == 1 }).await;

    // The stale replica stops renewing (paused); its lease expires and another replica claims.
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    let fresh = replica(&store, &probe, "fresh");
    assert_eq!(fresh.claim_once().await, 1);
    eventually("the new owner to restart b", || async {
        probe.executions("b") == 2
    })
    .await;

    // The stale replica wakes up: b's first attempt finishes; its write is refused (fenced), so
    // it stops without touching the run, and its next renewal confirms the loss.
    probe.open("b");
    eventually("the stale driver to stop", || async {
        !stale.engine().is_driving(&run_id)
    })
    .await;
    stale.renew_once().await;
    assert_eq!(stale.held_count(), 0);

    eventually("the run to complete", || async {
        store.load_run(&run_id).await.unwrap().unwrap().run.status == RunStatus::Completed
    })
    .await;
    let report = Report::load(&store, &wf, &run_id).await;
    assert_eq!(report.status("c"), NodeStatus::Completed);
    assert_eq!(probe.executions("c"), 1);
    let seqs: Vec<u64> = report.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_polling_never_drive_the_same_run() {
    let store = MemoryStore::new();
    let probe = Arc::new(Probe::default());
    let wf = stored_workflow(&store, &probe).await;
    // Runs created without an owner (e.g. by a replica that died right after creating them).
    let creator = Engine::new(Arc::new(store.clone()), registry(&probe));
    let mut ids = Vec::new();
    for _ in 0..12 {
        let created = creator
            .create_run(&wf, json!({}), StartOptions::default())
            .await
            .unwrap();
        ids.push(created.run.run_id.to_string());
    }
    let (r1, r2) = (replica(&store, &probe, "r1"), replica(&store, &probe, "r2"));
    let shutdown = CancellationToken::new();
    let t1 = tokio::spawn(r1.clone().run(shutdown.clone()));
    let t2 = tokio::spawn(r2.clone().run(shutdown.clone()));
    eventually("every run to be claimed", || async {
        r1.held_count() + r2.held_count() == 12
    })
    .await;
    for id in &ids {
        let owners = [&r1, &r2]
            .iter()
            .filter(|w| w.engine().is_driving(id))
            .count();
        assert_eq!(owners, 1, "run {id} driven by {owners} replicas");
    }
    probe.open("b");
    for id in &ids {
        eventually("each run to complete", || async {
            store.load_run(id).await.unwrap().unwrap().run.status == RunStatus::Completed
        })
        .await;
    }
    assert_eq!(probe.executions("a"), 12);
    assert_eq!(probe.executions("c"), 12);
    shutdown.cancel();
    t1.await.unwrap();
    t2.await.unwrap();
    assert_eq!(
        r1.held_count() + r2.held_count(),
        0,
        "leases released on shutdown"
    );
}
