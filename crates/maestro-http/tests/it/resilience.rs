//! Last-resort behaviour: a panicking or failing store, slow clients, HTTP/2, the observer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use maestro_dag::store::{CreateRun, NewRun, PutDefinition, RunFilter, WriteBatch};
use maestro_dag::{
    DefinitionRecord, DefinitionStore, Engine, Event, Lease, LeaseStore, MemoryStore, RunRecord,
    RunSnapshot, RunStore, Store, StoreError, WorkflowDefinition,
};
use maestro_http::{ApiContext, HttpConfig, RequestObserver};
use serde_json::json;

use crate::security::raw;
use crate::support::{TestServer, chain};

/// A memory store whose `list_definitions` misbehaves on demand.
#[derive(Default)]
struct Faulty {
    inner: MemoryStore,
    /// 0: fine, 1: panic, 2: unavailable, 3: corrupt.
    mode: AtomicU8,
}

#[async_trait]
impl DefinitionStore for Faulty {
    async fn put_definition(&self, def: &WorkflowDefinition) -> Result<PutDefinition, StoreError> {
        self.inner.put_definition(def).await
    }
    async fn get_definition(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<DefinitionRecord>, StoreError> {
        self.inner.get_definition(id, version).await
    }
    async fn list_definitions(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<DefinitionRecord>, StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            1 => panic!("the store exploded"),
            2 => Err(StoreError::Unavailable("connection refused".into())),
            3 => Err(StoreError::Corrupt("secret internals".into())),
            _ => self.inner.list_definitions(offset, limit).await,
        }
    }
    async fn delete_definition(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_definition(id).await
    }
}

#[async_trait]
impl RunStore for Faulty {
    async fn create_run(&self, run: NewRun) -> Result<CreateRun, StoreError> {
        self.inner.create_run(run).await
    }
    async fn write(&self, batch: &mut WriteBatch) -> Result<(), StoreError> {
        self.inner.write(batch).await
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

#[async_trait]
impl LeaseStore for Faulty {
    async fn claim_runs(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        self.inner.claim_runs(owner, ttl, limit).await
    }
    async fn claim_run(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.inner.claim_run(run_id, owner, ttl).await
    }
    async fn claim_active_run(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.inner.claim_active_run(run_id, owner, ttl).await
    }
    async fn renew(
        &self,
        owner: &str,
        leases: &[Lease],
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        self.inner.renew(owner, leases, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.inner.release(lease).await
    }
    async fn lease(&self, run_id: &str) -> Result<Option<Lease>, StoreError> {
        self.inner.lease(run_id).await
    }
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_and_the_server_carries_on() {
    let store = Arc::new(Faulty::default());
    let s = TestServer::start_with_store(HttpConfig::default(), store.clone()).await;
    s.create(&chain("p")).await;
    store.mode.store(1, Ordering::SeqCst);
    let res = s.get("/api/v1/workflows").await;
    let body = res.problem(500, "internal_error");
    assert!(
        !res.text.contains("exploded"),
        "panic messages stay in the log: {}",
        res.text
    );
    assert!(body["request_id"].is_string());

    store.mode.store(2, Ordering::SeqCst);
    let res = s.get("/api/v1/workflows").await;
    res.problem(503, "store_unavailable");
    assert_eq!(res.headers["retry-after"], "1");

    store.mode.store(3, Ordering::SeqCst);
    let res = s.get("/api/workflows").await;
    res.problem(500, "internal_error");
    assert!(!res.text.contains("secret"), "{}", res.text);

    store.mode.store(0, Ordering::SeqCst);
    assert_eq!(s.get("/api/v1/workflows").await.status, 200);
    let run_id = s.start_run("p", json!({})).await;
    s.wait_status(&run_id, &["completed"]).await;
}

#[tokio::test]
async fn slow_bodies_time_out_with_408() {
    let mut config = HttpConfig::default();
    config.body_timeout = Duration::from_millis(200);
    let s = TestServer::start_with(config).await;
    let started = std::time::Instant::now();
    let answer = raw(
        s.addr,
        b"POST /api/v1/workflows HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"id\"",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn http2_serves_the_same_routes() {
    let s = TestServer::start().await.http2();
    s.create(&chain("h2")).await;
    let run_id = s.start_run("h2", json!({})).await;
    assert_eq!(
        s.wait_status(&run_id, &["completed"]).await["status"],
        "completed"
    );
    s.get("/api/v1/nope").await.problem(404, "route_not_found");
}

#[derive(Default)]
struct Counter {
    seen: AtomicUsize,
    matched_run: AtomicUsize,
}

impl RequestObserver for Counter {
    fn on_response(
        &self,
        _method: &http::Method,
        route: &'static str,
        _status: http::StatusCode,
        _elapsed: Duration,
    ) {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if route == "/api/v1/runs/{run_id}" {
            self.matched_run.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn the_observer_sees_every_request_with_its_route_pattern() {
    let counter = Arc::new(Counter::default());
    let store = Arc::new(MemoryStore::new());
    let ctx = ApiContext::new(
        Engine::new(store.clone(), maestro_dag::ExecutorRegistry::new()),
        store as Arc<dyn Store>,
        HttpConfig::default(),
    )
    .with_observer(counter.clone());
    let s = TestServer::start_on(ctx).await;
    s.get("/api/v1/runs/abc")
        .await
        .problem(404, "run_not_found");
    s.get("/api/v1/runs/def").await;
    s.get("/elsewhere").await;
    assert_eq!(counter.seen.load(Ordering::SeqCst), 3);
    assert_eq!(counter.matched_run.load(Ordering::SeqCst), 2);
}
