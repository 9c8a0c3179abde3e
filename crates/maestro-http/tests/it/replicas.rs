//! With a lease-holding worker (the multi-replica server): runs start, retry and are adopted
//! under leases.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use maestro_dag::{Engine, LeaseStore, MemoryStore, Store, StoreResolver, Worker, WorkerConfig};
use maestro_http::{ApiContext, HttpConfig};
use serde_json::json;

use crate::support::{TestServer, registry};

/// A "replica": an engine, its worker and a server, over a shared store.
async fn replica(store: &Arc<MemoryStore>, owner: &str) -> (TestServer, Arc<Worker>, Engine) {
    let engine = Engine::new(store.clone(), registry());
    let worker = Worker::new(
        engine.clone(),
        store.clone() as Arc<dyn LeaseStore>,
        Arc::new(StoreResolver::new(store.clone(), registry())),
        WorkerConfig {
            owner: owner.to_string(),
            lease_ttl: Duration::from_millis(300),
            ..WorkerConfig::default()
        },
    );
    let ctx = ApiContext::new(
        engine.clone(),
        store.clone() as Arc<dyn Store>,
        HttpConfig::default(),
    )
    .with_worker(worker.clone());
    (TestServer::start_on(ctx).await, worker, engine)
}

fn gate() -> serde_json::Value {
    json!({
        "id": "gate",
        "nodes": [
            {"id": "draft", "executor": "noop"},
            {"id": "review", "type": "human_review", "depends_on": ["draft"]},
            {"id": "publish", "executor": "fail_once", "depends_on": ["review"]},
        ]
    })
}

#[tokio::test]
async fn runs_start_and_retry_under_a_lease() {
    let store = Arc::new(MemoryStore::new());
    let (s, worker, _engine) = replica(&store, "replica-a").await;
    s.create(&gate()).await;
    let run_id = s.start_run("gate", json!({})).await;
    s.wait_node(&run_id, "review", "waiting_approval").await;
    let lease = store.lease(&run_id).await.unwrap().expect("a lease");
    assert_eq!(lease.owner, "replica-a");
    assert_eq!(worker.held_count(), 1);

    let ok = s
        .send(
            Method::POST,
            &format!("/api/v1/runs/{run_id}/nodes/review/approve"),
            &[],
            "",
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    s.wait_status(&run_id, &["failed"]).await;
    let retried = s
        .send(
            Method::POST,
            &format!("/api/v1/runs/{run_id}/retry"),
            &[],
            "",
        )
        .await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    assert_eq!(
        s.wait_status(&run_id, &["completed"]).await["status"],
        "completed"
    );
}

#[tokio::test]
async fn a_run_whose_replica_died_is_adopted_to_be_controlled() {
    let store = Arc::new(MemoryStore::new());
    let (a, _worker_a, engine_a) = replica(&store, "replica-a").await;
    let (b, _worker_b, _engine_b) = replica(&store, "replica-b").await;
    a.create(&gate()).await;
    let run_id = a.start_run("gate", json!({})).await;
    a.wait_node(&run_id, "review", "waiting_approval").await;

    // While replica A holds the lease, B cannot control the run.
    b.send(
        Method::POST,
        &format!("/api/v1/runs/{run_id}/nodes/review/approve"),
        &[],
        "",
    )
    .await
    .problem(409, "invalid_transition");

    // A dies: it stops driving and never renews; its lease runs out.
    assert!(engine_a.stop(&run_id).await);
    a.stop().await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let ok = b
        .send(
            Method::POST,
            &format!("/api/v1/runs/{run_id}/nodes/review/approve"),
            &[],
            "",
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // B holds the lease now (or the run already ended, which lets the lease go).
    let lease = store.lease(&run_id).await.unwrap();
    assert!(
        lease.as_ref().is_none_or(|l| l.owner == "replica-b"),
        "{lease:?}"
    );
    let done = b.wait_status(&run_id, &["failed", "completed"]).await;
    assert_eq!(
        store.lease(&run_id).await.unwrap(),
        None,
        "an ended run holds no lease"
    );
    assert_eq!(done["nodes"]["review"]["status"], "completed", "{done}");
    assert_eq!(
        done["nodes"]["draft"]["attempts"], 1,
        "completed nodes never run again"
    );
}
