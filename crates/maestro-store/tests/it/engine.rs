//! The engine over each store: a run completes with every transition persisted, and a run
//! stopped half-way is recovered from the store by a new engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use maestro_dag::store::{Store, StoreError};
use maestro_dag::{
    Engine, EventType, ExecutorRegistry, FnExecutor, NodeContext, NodeDefinition, NodeError,
    NodeStatus, RetryPolicy, RunStatus, StartOptions, Workflow, WorkflowDefinition,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Counts executions per node, outside the store.
#[derive(Default, Clone)]
pub(crate) struct Counter(Arc<Mutex<HashMap<String, u32>>>);

impl Counter {
    fn hit(&self, node: &str) {
        *self.0.lock().unwrap().entry(node.to_string()).or_default() += 1;
    }

    fn get(&self, node: &str) -> u32 {
        self.0.lock().unwrap().get(node).copied().unwrap_or(0)
    }
}

fn registry(counter: &Counter, gate: Option<Arc<Notify>>) -> ExecutorRegistry {
    let c = counter.clone();
    let mut r = maestro_executors::builtin_registry();
    r.register(
        "count",
        FnExecutor::new(move |ctx: NodeContext| {
            let c = c.clone();
            async move {
                c.hit(&ctx.node_id);
                Ok::<Value, NodeError>(json!({"node": &*ctx.node_id, "attempt": ctx.attempt}))
            }
        }),
    );
    let c = counter.clone();
    r.register(
        "gate",
        FnExecutor::new(move |ctx: NodeContext| {
            let c = c.clone();
            let gate = gate.clone();
            async move {
                c.hit(&ctx.node_id);
                match gate {
                    // Blocks until the run is stopped (cancellation) or the gate opens.
                    Some(g) => {
                        tokio::select! {
                            () = g.notified() => Ok(json!({"gated": true})),
                            () = ctx.cancellation.cancelled() => Err(NodeError::new("stopped")),
                        }
                    }
                    None => Ok(json!({"gated": false})),
                }
            }
        }),
    );
    r
}

/// start → fan-out of `width` counted nodes (one of them fails once and is retried) → join.
fn workflow(width: usize, reg: &ExecutorRegistry) -> Arc<Workflow> {
    let mut nodes = vec![NodeDefinition::new("start", "count")];
    for i in 0..width {
        nodes.push(NodeDefinition::new(format!("mid{i}"), "count").after(["start"]));
    }
    let mut flaky = NodeDefinition::new("flaky", "fail").after(["start"]);
    flaky.config = json!({"message": "transient", "times": 1});
    flaky.retry = RetryPolicy::fixed(3, 5);
    nodes.push(flaky);
    let mut join: Vec<String> = (0..width).map(|i| format!("mid{i}")).collect();
    join.push("flaky".into());
    nodes.push(NodeDefinition::new("join", "gate").after(join));
    Arc::new(Workflow::compile(WorkflowDefinition::new("engine_wf", nodes), Some(reg)).unwrap())
}

async fn check_log(s: &Arc<dyn Store>, run_id: &str, nodes: usize) {
    let events = s.events(run_id, 0, 100_000).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "gap-free from 1"
    );
    let completed = events
        .iter()
        .filter(|e| e.kind == EventType::NodeCompleted)
        .count();
    assert_eq!(completed, nodes, "one node_completed per node");
    assert_eq!(events.last().unwrap().kind, EventType::WorkflowCompleted);
    assert_eq!(
        s.load_run(run_id).await.unwrap().unwrap().last_seq,
        events.len() as u64
    );
}

pub(crate) async fn engine_runs_a_workflow(s: Arc<dyn Store>) {
    let counter = Counter::default();
    let reg = registry(&counter, None);
    let wf = workflow(20, &reg);
    let engine = Engine::new(s.clone(), reg);
    let handle = engine
        .start(
            wf.clone(),
            json!({"x": 1}),
            StartOptions {
                idempotency_key: Some("k".into()),
                ..StartOptions::default()
            },
        )
        .await
        .unwrap();
    let run_id = handle.run_id().to_string();
    let outcome = handle.wait().await;
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.completed, wf.len());
    let snap = s.load_run(&run_id).await.unwrap().unwrap();
    assert_eq!(snap.run.status, RunStatus::Completed);
    assert!(snap.run.finished_at.is_some());
    assert_eq!(snap.nodes.len(), wf.len());
    assert!(snap.nodes.iter().all(|n| n.status == NodeStatus::Completed));
    let flaky = snap.nodes.iter().find(|n| &*n.node_id == "flaky").unwrap();
    assert_eq!(flaky.attempt, 2);
    let mid3 = snap.nodes.iter().find(|n| &*n.node_id == "mid3").unwrap();
    assert_eq!(
        **mid3.output.as_ref().unwrap(),
        json!({"node": "mid3", "attempt": 1})
    );
    check_log(&s, &run_id, wf.len()).await;
    for i in 0..20 {
        assert_eq!(counter.get(&format!("mid{i}")), 1);
    }
    // The idempotency key finds the finished run.
    let again = engine
        .start(
            wf,
            json!({}),
            StartOptions {
                idempotency_key: Some("k".into()),
                ..StartOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(!again.created());
    assert_eq!(again.run_id(), run_id);
}

pub(crate) async fn engine_recovers_after_a_stop(s: Arc<dyn Store>) {
    let counter = Counter::default();
    let gate = Arc::new(Notify::new());
    let reg = registry(&counter, Some(gate.clone()));
    let wf = workflow(10, &reg);
    let first = Engine::new(s.clone(), reg.clone());
    let lease = {
        let handle = first
            .start(wf.clone(), json!({}), StartOptions::default())
            .await
            .unwrap();
        let run_id = handle.run_id().to_string();
        // Wait until the join node is running, blocked on the gate.
        for _ in 0..500 {
            if counter.get("join") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(counter.get("join"), 1);
        // The replica stops without finishing (its stored state stays "running").
        first.shutdown().await;
        let snap = s.load_run(&run_id).await.unwrap().unwrap();
        assert_eq!(snap.run.status, RunStatus::Running);
        // Another replica takes the run over through a lease and resumes it.
        s.claim_run(&run_id, "replica-2", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap()
    };
    let second = Engine::new(s.clone(), registry(&counter, None));
    let handle = second
        .recover(wf.clone(), &lease.run_id, lease.epoch)
        .await
        .unwrap();
    let outcome = handle.wait().await;
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    // Completed nodes ran once; the node in flight at the stop ran twice.
    assert_eq!(counter.get("start"), 1);
    for i in 0..10 {
        assert_eq!(counter.get(&format!("mid{i}")), 1);
    }
    assert_eq!(counter.get("join"), 2);
    check_log(&s, &lease.run_id, wf.len()).await;
}

pub(crate) async fn engine_stale_replica_is_fenced(s: Arc<dyn Store>) {
    let counter = Counter::default();
    let gate = Arc::new(Notify::new());
    let reg = registry(&counter, Some(gate.clone()));
    let wf = workflow(3, &reg);
    let created = s
        .create_run(maestro_dag::store::NewRun {
            run_id: Arc::from("fenced-run"),
            workflow_id: Arc::from(wf.id()),
            version: wf.version(),
            content_hash: wf.content_hash().to_string(),
            inputs: Arc::new(json!({})),
            idempotency_key: None,
        })
        .await
        .unwrap();
    let a = s
        .claim_run(&created.run.run_id, "a", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let engine_a = Engine::new(s.clone(), reg);
    let handle_a = engine_a
        .recover(wf.clone(), "fenced-run", a.epoch)
        .await
        .unwrap();
    for _ in 0..500 {
        if counter.get("join") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // b takes over (as if a's lease had lapsed): a's next write is fenced and its driver stops.
    s.release(&a).await.unwrap();
    let b = s
        .claim_run("fenced-run", "b", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(b.epoch > a.epoch);
    let before = s.load_run("fenced-run").await.unwrap().unwrap();
    gate.notify_one();
    let outcome_a = handle_a.wait().await;
    assert_ne!(outcome_a.status, RunStatus::Completed, "{outcome_a:?}");
    assert!(outcome_a.error.is_some(), "{outcome_a:?}");
    assert_eq!(
        s.load_run("fenced-run").await.unwrap().unwrap(),
        before,
        "a wrote nothing"
    );
    // b finishes the run.
    let engine_b = Engine::new(s.clone(), registry(&counter, None));
    let outcome_b = engine_b
        .recover(wf.clone(), "fenced-run", b.epoch)
        .await
        .unwrap()
        .wait()
        .await;
    assert_eq!(outcome_b.status, RunStatus::Completed, "{outcome_b:?}");
    check_log(&s, "fenced-run", wf.len()).await;
}

/// PostgreSQL goes away in the middle of a run (every connection terminated, new ones refused)
/// and comes back: the engine's writes fail as `Unavailable`, it retries them, nothing panics,
/// and the run completes with every node executed once and a gap-free event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_postgres_going_away_and_coming_back() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    let Some(db) = crate::support::TestDatabase::create().await else {
        return;
    };
    let admin_url = crate::support::admin_url().expect("a test database implies an admin URL");
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let store = maestro_store::connect(&db.url).unwrap();
    store.migrate().await.unwrap();
    let s: Arc<dyn Store> = store.clone();

    let counter = Counter::default();
    let gate = Arc::new(Notify::new());
    let reg = registry(&counter, Some(gate.clone()));
    let wf = workflow(4, &reg);
    let engine = Engine::new(s.clone(), reg);
    let handle = engine
        .start(wf.clone(), json!({}), StartOptions::default())
        .await
        .unwrap();
    let run_id = handle.run_id().to_string();
    for _ in 0..500 {
        if counter.get("join") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counter.get("join"), 1, "the join node is running");

    // The database goes away.
    let mut admin = AsyncPgConnection::establish(&admin_url).await.unwrap();
    diesel::sql_query(format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    assert!(
        matches!(store.ping().await, Err(StoreError::Unavailable(_))),
        "an unreachable database is Unavailable"
    );

    // The join node finishes while the database is away: its write cannot commit.
    gate.notify_one();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        engine.is_driving(&run_id),
        "the run waits for the database; it is not lost"
    );
    assert!(handle.outcome().is_none());

    // The database comes back: the write goes through and the run completes.
    diesel::sql_query(format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(20), handle.wait())
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert_eq!(counter.get("join"), 1, "no node ran twice");
    for i in 0..4 {
        assert_eq!(counter.get(&format!("mid{i}")), 1);
    }
    check_log(&s, &run_id, wf.len()).await;
    drop(admin);
    db.drop_it().await;
}
