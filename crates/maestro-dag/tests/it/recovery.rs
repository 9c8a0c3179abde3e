//! Recovery (DESIGN §3 "Durability"): a run resumes from whatever the store last held. A store
//! that forks itself after every write gives one snapshot per transition; recovering from each of
//! them must end exactly like the run that was never interrupted, and must execute again only
//! the nodes that were running when the "crash" happened.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use maestro_dag::store::{CreateRun, NewRun, RunFilter, WriteBatch};
use maestro_dag::{
    Engine, EngineConfig, EngineError, Event, EventType, MemoryStore, NodeStatus as N, RetryPolicy,
    RunRecord, RunSnapshot, RunStatus, RunStore, StartOptions, StoreError, Workflow,
    WorkflowDefinition,
};
use serde_json::{Value, json};

use crate::support::{
    Harness, NodeExt, Probe, Report, no_inputs, node, registry, review, wait, workflow,
};

/// A memory store that keeps a copy of itself after every successful write: the states a crash
/// could leave behind.
#[derive(Default)]
struct ForkingStore {
    inner: MemoryStore,
    forks: Mutex<Vec<MemoryStore>>,
}

impl ForkingStore {
    fn snapshot(&self) {
        let fork = self.inner.fork();
        self.forks.lock().unwrap().push(fork);
    }

    fn forks(&self) -> Vec<MemoryStore> {
        self.forks.lock().unwrap().clone()
    }
}

#[async_trait]
impl RunStore for ForkingStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateRun, StoreError> {
        let created = self.inner.create_run(run).await?;
        self.snapshot();
        Ok(created)
    }

    async fn write(&self, batch: &mut WriteBatch) -> Result<(), StoreError> {
        self.inner.write(batch).await?;
        self.snapshot();
        Ok(())
    }

    async fn load_run(&self, run_id: &str) -> Result<Option<RunSnapshot>, StoreError> {
        self.inner.load_run(run_id).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.list_runs(filter).await
    }

    async fn events(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events(run_id, after, limit).await
    }
}

/// An engine over `store` as the tests' replicas are configured: at most two attempts at once,
/// so that some node has to wait as `ready`.
fn replica(store: Arc<dyn RunStore>, probe: &Arc<Probe>) -> Engine {
    let config = EngineConfig {
        max_concurrent_nodes: 2,
        ..EngineConfig::default()
    };
    Engine::with_config(store, registry(probe), config)
}

/// Parallel branches, a node that fails once and is retried, a condition that skips a branch
/// (and the skip propagating), a node that tolerates the skip, and a concurrency limit.
fn crash_course() -> WorkflowDefinition {
    let mut def = workflow(
        "crash_course",
        vec![
            node("start").cfg(json!({"sleep_ms": 5})),
            node("left").after(["start"]).cfg(json!({"sleep_ms": 10})),
            node("right")
                .after(["start"])
                .cfg(json!({"sleep_ms": 10, "fail_attempts": 1}))
                .retries(RetryPolicy::fixed(3, 20)),
            node("extra").after(["start"]).cfg(json!({"sleep_ms": 15})),
            node("optional")
                .after(["start"])
                .when("inputs.include_optional == true"),
            node("after_optional").after(["optional"]),
            node("join").after(["left", "right", "extra"]),
            node("cleanup")
                .after(["join", "after_optional"])
                .rule("none_failed"),
        ],
    );
    def.max_concurrency = Some(2);
    def
}

/// What must be identical between an interrupted and an uninterrupted run, per node.
type Outcome = (
    N,
    Option<Arc<Value>>,
    Option<Arc<str>>,
    Option<Arc<str>>,
    u32,
);

fn outcomes(report: &Report) -> BTreeMap<String, Outcome> {
    report
        .node_ids
        .iter()
        .map(|id| {
            let n = report.node(id);
            (
                id.clone(),
                (n.status, n.output, n.reason, n.error, n.attempt),
            )
        })
        .collect()
}

/// Runs `def` once on a forking store and returns the workflow, the run's id, the final report
/// and every snapshot taken along the way.
async fn run_with_snapshots(
    def: WorkflowDefinition,
    inputs: Value,
) -> (Arc<Workflow>, String, Report, Vec<MemoryStore>) {
    let store = Arc::new(ForkingStore::default());
    let probe = Arc::new(Probe::default());
    let engine = replica(store.clone(), &probe);
    let wf = Arc::new(Workflow::compile(def, Some(engine.executors())).unwrap());
    let handle = engine
        .start(wf.clone(), inputs, StartOptions::default())
        .await
        .unwrap();
    let run_id = handle.run_id().to_string();
    let outcome = wait(handle).await;
    assert_eq!(outcome.error, None);
    let report = Report::load(&*store, &wf, &run_id).await;
    report.assert_invariants();
    (wf, run_id, report, store.forks())
}

#[tokio::test(start_paused = true)]
async fn recovery_from_every_snapshot_ends_like_the_uninterrupted_run() {
    let (wf, run_id, reference, forks) =
        run_with_snapshots(crash_course(), json!({"include_optional": false})).await;
    assert_eq!(reference.run.status, RunStatus::Completed);
    assert_eq!(reference.status("optional"), N::Skipped);
    assert_eq!(reference.status("after_optional"), N::Skipped);
    assert_eq!(reference.status("cleanup"), N::Completed);
    assert_eq!(reference.node("right").attempt, 2);
    let want = outcomes(&reference);
    // One snapshot per write: the run's creation and each turn of its driver.
    assert!(forks.len() >= 10, "only {} snapshots", forks.len());
    let mut saw = BTreeMap::<&str, usize>::new();

    for (k, fork) in forks.into_iter().enumerate() {
        let before = fork.load_run(&run_id).await.unwrap().unwrap();
        let before_events = fork.events(&run_id, 0, usize::MAX).await.unwrap();
        let status_before = |id: &str| {
            before
                .nodes
                .iter()
                .find(|n| &*n.node_id == id)
                .map_or(N::Pending, |n| n.status)
        };
        for n in &before.nodes {
            *saw.entry(n.status.as_str()).or_default() += 1;
        }

        // A new engine (another replica, or the same process restarted) picks the run up.
        let probe = Arc::new(Probe::default());
        let engine = replica(Arc::new(fork.clone()), &probe);
        let handle = engine.recover(wf.clone(), &run_id, 0).await.unwrap();
        let outcome = wait(handle).await;
        assert_eq!(outcome.error, None, "snapshot {k}");
        let after = Report::load(&fork, &wf, &run_id).await;

        assert_eq!(after.run.status, reference.run.status, "snapshot {k}");
        assert_eq!(outcomes(&after), want, "snapshot {k}");
        after.assert_invariants();
        // The log continues the one the crash left behind.
        assert_eq!(
            after.events[..before_events.len()],
            before_events[..],
            "snapshot {k}"
        );
        // Only nodes that were running are executed again; finished nodes never are.
        for id in wf.node_ids() {
            let runs = probe.executions(id);
            let was = status_before(id);
            if was.is_terminal() {
                assert_eq!(runs, 0, "snapshot {k}: {id} was {was} and ran again");
            }
            if was == N::Running {
                assert!(
                    runs >= 1,
                    "snapshot {k}: {id} was running and did not run again"
                );
            }
            let started_before = before_events
                .iter()
                .any(|e| e.kind == EventType::NodeStarted && e.node_id.as_deref() == Some(id));
            if started_before && runs > 0 {
                assert_eq!(was, N::Running, "snapshot {k}: {id} executed again");
            }
            // Same idempotency key as before the crash.
            for ctx in probe.contexts(id) {
                assert_eq!(ctx.idempotency_key(), format!("{run_id}:{id}"));
            }
        }
    }
    // The snapshots did cover the interesting states.
    for status in ["running", "ready", "completed", "skipped"] {
        assert!(
            saw.contains_key(status),
            "no snapshot with a {status} node: {saw:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn recovery_from_every_snapshot_of_a_failing_run_ends_failed() {
    let mut def = workflow(
        "failing",
        vec![
            node("a").cfg(json!({"sleep_ms": 5})),
            node("bad")
                .after(["a"])
                .cfg(json!({"sleep_ms": 5, "fail": true}))
                .retries(RetryPolicy::fixed(2, 10)),
            node("good").after(["a"]).cfg(json!({"sleep_ms": 30})),
            node("after_bad").after(["bad"]),
            node("after_good").after(["good"]),
        ],
    );
    def.failure_policy = maestro_dag::FailurePolicy::Continue;
    let (wf, run_id, reference, forks) = run_with_snapshots(def, no_inputs()).await;
    assert_eq!(reference.run.status, RunStatus::Failed);
    let want = outcomes(&reference);
    for (k, fork) in forks.into_iter().enumerate() {
        let before = fork.load_run(&run_id).await.unwrap().unwrap();
        let probe = Arc::new(Probe::default());
        let engine = replica(Arc::new(fork.clone()), &probe);
        wait(engine.recover(wf.clone(), &run_id, 0).await.unwrap()).await;
        let after = Report::load(&fork, &wf, &run_id).await;
        assert_eq!(after.run.status, RunStatus::Failed, "snapshot {k}");
        assert_eq!(outcomes(&after), want, "snapshot {k}");
        after.assert_invariants();
        for n in &before.nodes {
            if n.status.is_terminal() {
                assert_eq!(
                    probe.executions(&n.node_id),
                    0,
                    "snapshot {k}: {}",
                    n.node_id
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_crash_during_a_retry_backoff_does_not_repeat_the_failed_attempt() {
    // `flaky` fails attempt 1, waits 1 s, and succeeds on attempt 2 of 2. A crash during the
    // wait must leave exactly one attempt to make: attempt 2.
    let def = workflow(
        "backoff",
        vec![
            node("flaky")
                .cfg(json!({"fail_attempts": 1}))
                .retries(RetryPolicy::fixed(2, 1000)),
        ],
    );
    let (wf, run_id, reference, forks) = run_with_snapshots(def, no_inputs()).await;
    assert_eq!(reference.run.status, RunStatus::Completed);
    let mut found = false;
    for fork in forks {
        let events = fork.events(&run_id, 0, usize::MAX).await.unwrap();
        if events.last().map(|e| e.kind) != Some(EventType::NodeRetry) {
            continue;
        }
        found = true;
        let probe = Arc::new(Probe::default());
        let engine = replica(Arc::new(fork.clone()), &probe);
        let outcome = wait(engine.recover(wf.clone(), &run_id, 0).await.unwrap()).await;
        assert_eq!(outcome.status, RunStatus::Completed);
        let attempts: Vec<u32> = probe.contexts("flaky").iter().map(|c| c.attempt).collect();
        let after = Report::load(&fork, &wf, &run_id).await;
        assert_eq!(
            attempts,
            [2],
            "attempts executed after the crash; events: {:?}",
            after.trace()
        );
        let started: Vec<Option<u32>> = after
            .events_of(EventType::NodeStarted, Some("flaky"))
            .iter()
            .map(|e| e.data.attempt)
            .collect();
        assert_eq!(started, [Some(1), Some(2)]);
    }
    assert!(found, "no snapshot ends with the retry event");
}

#[tokio::test]
async fn shutdown_leaves_the_run_for_another_engine_to_finish() {
    let h = Harness::new();
    let def = workflow(
        "handover",
        vec![
            node("first"),
            node("long").after(["first"]).cfg(json!({"gate": "long"})),
            node("last").after(["long"]),
        ],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_executed("long", 1).await;
    h.engine.shutdown().await;
    // The stored state is left as it was: the run is still running, `long` still running.
    let snap = h.store.load_run(&run_id).await.unwrap().unwrap();
    assert_eq!(snap.run.status, RunStatus::Running);
    let long = snap.nodes.iter().find(|n| &*n.node_id == "long").unwrap();
    assert_eq!((long.status, long.attempt), (N::Running, 1));
    assert!(h.engine.active_runs().is_empty());
    assert!(h.probe.contexts("long")[0].cancellation.is_cancelled());

    // Another engine over the same store takes over.
    let probe = Arc::new(Probe::default());
    probe.open("long");
    let engine = Engine::new(Arc::new(h.store.clone()), registry(&probe));
    let outcome = wait(engine.recover(wf.clone(), &run_id, 0).await.unwrap()).await;
    assert_eq!(outcome.status, RunStatus::Completed);
    assert_eq!(probe.executions("first"), 0);
    assert_eq!(probe.executions("long"), 1);
    assert_eq!(probe.executions("last"), 1);
    // The interrupted attempt runs again with the same attempt number and idempotency key.
    let before = &h.probe.contexts("long")[0];
    let again = &probe.contexts("long")[0];
    assert_eq!(again.attempt, before.attempt);
    assert_eq!(again.idempotency_key(), before.idempotency_key());
    let report = Report::load(&h.store, &wf, &run_id).await;
    report.assert_invariants();
    assert_eq!(report.count(EventType::NodeStarted, Some("long")), 2);
}

#[tokio::test]
async fn a_paused_run_stays_paused_after_recovery() {
    let h = Harness::new();
    let def = workflow(
        "paused_handover",
        vec![node("a").cfg(json!({"gate": "a"})), node("b").after(["a"])],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_executed("a", 1).await;
    h.engine.pause(&run_id).await.unwrap();
    h.engine.shutdown().await;

    let probe = Arc::new(Probe::default());
    probe.open("a");
    let engine = Engine::new(Arc::new(h.store.clone()), registry(&probe));
    let handle = engine.recover(wf.clone(), &run_id, 0).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(probe.total_executions(), 0, "nothing starts while paused");
    assert!(handle.outcome().is_none());
    let snap = h.store.load_run(&run_id).await.unwrap().unwrap();
    assert_eq!(snap.run.status, RunStatus::Paused);
    engine.resume(&run_id).await.unwrap();
    assert_eq!(wait(handle).await.status, RunStatus::Completed);
    assert_eq!((probe.executions("a"), probe.executions("b")), (1, 1));
    Report::load(&h.store, &wf, &run_id)
        .await
        .assert_invariants();
}

#[tokio::test]
async fn a_run_waiting_for_review_is_approved_on_another_engine() {
    let h = Harness::new();
    let def = workflow(
        "review_handover",
        vec![review("sign_off"), node("publish").after(["sign_off"])],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_node(&run_id, "sign_off", N::WaitingApproval).await;
    h.engine.shutdown().await;

    let probe = Arc::new(Probe::default());
    let engine = Engine::new(Arc::new(h.store.clone()), registry(&probe));
    let handle = engine.recover(wf.clone(), &run_id, 0).await.unwrap();
    engine
        .approve(&run_id, "sign_off", Some(json!({"by": "ops"})))
        .await
        .unwrap();
    assert_eq!(wait(handle).await.status, RunStatus::Completed);
    assert_eq!(probe.executions("publish"), 1);
    let report = Report::load(&h.store, &wf, &run_id).await;
    report.assert_invariants();
    assert_eq!(
        report.output("sign_off"),
        json!({"approved": true, "by": "ops"})
    );
    assert_eq!(
        report.count(EventType::NodeWaitingApproval, Some("sign_off")),
        1
    );
}

#[tokio::test]
async fn recover_checks_the_run_and_its_pinned_workflow() {
    let h = Harness::new();
    let report = h
        .run(workflow("pinned", vec![node("a")]), no_inputs())
        .await;
    let run_id = report.run.run_id.to_string();
    // A finished run just reports its outcome.
    let engine = Engine::new(Arc::new(h.store.clone()), registry(&h.probe));
    let wf = h.compile(workflow("pinned", vec![node("a")]));
    let handle = engine.recover(wf, &run_id, 0).await.unwrap();
    let outcome = handle.outcome().expect("already finished");
    assert_eq!(
        (outcome.status, outcome.completed),
        (RunStatus::Completed, 1)
    );
    assert_eq!(h.probe.executions("a"), 1);
    // Another definition (another content hash) is refused.
    let other = h.compile(workflow("pinned", vec![node("a"), node("b")]));
    assert!(matches!(
        engine.recover(other, &run_id, 0).await,
        Err(EngineError::WorkflowMismatch { .. })
    ));
    // An unknown run is not found.
    let wf = h.compile(workflow("pinned", vec![node("a")]));
    assert_eq!(
        engine.recover(wf, "nope", 0).await.unwrap_err().code(),
        "run_not_found"
    );
}
