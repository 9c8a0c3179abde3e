//! What the routes work with, injected by the binary: the engine, the store, the compiled
//! workflow cache and the settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use maestro_dag::{CancellationToken, DefinitionRecord, Engine, Store, Worker, Workflow};
use maestro_health::Health;

use crate::config::HttpConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::sockets::SocketLimits;

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct ApiContext {
    /// The engine that drives runs started through the API.
    pub engine: Engine,
    /// Definitions, runs, events (and leases) — the same store the engine writes through.
    pub store: Arc<dyn Store>,
    /// Compiled workflows by (workflow id, version).
    pub cache: WorkflowCache,
    /// Settings.
    pub config: Arc<HttpConfig>,
    /// Called once per request with its outcome (metrics slot in here).
    pub observer: Option<Arc<dyn RequestObserver>>,
    /// The probes behind `/health…`; without it those routes are 404.
    pub health: Option<Health>,
    /// The lease-holding worker of a multi-replica server. With it, runs are started, retried
    /// and adopted under leases; without it (embedded, single process), the engine drives them
    /// directly.
    pub worker: Option<Arc<Worker>>,
    /// The Prometheus metrics behind `/metrics`; without them that route is 404.
    pub metrics: Option<Arc<Metrics>>,
    /// Cancelled when the server shuts down, so long-lived streams end and the drain finishes.
    pub(crate) streams: CancellationToken,
    /// Open WebSockets, for the limits.
    pub(crate) sockets: SocketLimits,
    /// Laid-out graphs, by content.
    pub(crate) drawings: Drawings,
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext")
            .field("engine", &self.engine)
            .field("cache", &self.cache)
            .field("config", &self.config)
            .field("health", &self.health)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiContext {
    /// A context over an engine and the store it writes through.
    pub fn new(engine: Engine, store: Arc<dyn Store>, config: HttpConfig) -> Self {
        Self {
            engine,
            store,
            cache: WorkflowCache::new(config.workflow_cache_capacity),
            config: Arc::new(config),
            observer: None,
            health: None,
            worker: None,
            metrics: None,
            streams: CancellationToken::new(),
            sockets: SocketLimits::default(),
            drawings: Drawings::new(),
        }
    }

    /// Starts and retries runs through `worker`, under leases (builder style). The worker must
    /// drive runs with the same engine as `self.engine`.
    pub fn with_worker(mut self, worker: Arc<Worker>) -> Self {
        self.worker = Some(worker);
        self
    }

    /// Serves `/health`, `/health/ready`, `/health/live` and `/health/startup` from `health`
    /// (builder style). The routes keep its `workflows` gauge at the cache's size.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Serves `/metrics` from `metrics` (builder style). The metrics also observe every
    /// request (they become the [`RequestObserver`] unless one was set before), and
    /// [`serve`](crate::serve) feeds them the engine's events while it runs.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        if self.observer.is_none() {
            self.observer = Some(metrics.clone());
        }
        self.metrics = Some(metrics);
        self
    }

    /// WebSockets open now on this server.
    pub fn open_websockets(&self) -> usize {
        self.sockets.open()
    }

    /// Sets the request observer (builder style).
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The compiled workflow of a stored definition version, from the cache or compiled now
    /// (and cached). Executor keys are checked against the engine's registry.
    pub fn compiled(&self, record: &DefinitionRecord) -> Result<Arc<Workflow>, ApiError> {
        if let Some(wf) = self
            .cache
            .get(&record.workflow_id, record.version, &record.content_hash)
        {
            return Ok(wf);
        }
        let wf = Workflow::compile_ref(&record.definition, Some(self.engine.executors()))?
            .with_version(record.version);
        let wf = Arc::new(wf);
        self.cache.insert(record.version, wf.clone());
        Ok(wf)
    }

    /// The compiled workflow a run is pinned to: (workflow id, version) with the run's content
    /// hash, from the cache or the store. `None` when that version is no longer stored.
    pub async fn pinned(
        &self,
        workflow_id: &str,
        version: u32,
        content_hash: &str,
    ) -> Result<Option<Arc<Workflow>>, ApiError> {
        if let Some(wf) = self.cache.get(workflow_id, version, content_hash) {
            return Ok(Some(wf));
        }
        match self
            .store
            .get_definition(workflow_id, Some(version))
            .await?
        {
            Some(record) if record.content_hash == content_hash => self.compiled(&record).map(Some),
            _ => Ok(None),
        }
    }
}

/// Observes every request once it is answered; the metrics layer implements it.
pub trait RequestObserver: Send + Sync {
    /// `route` is the matched route pattern (e.g. `/api/v1/runs/{run_id}`), or `unmatched`.
    fn on_response(
        &self,
        method: &http::Method,
        route: &'static str,
        status: http::StatusCode,
        elapsed: std::time::Duration,
    );
}

type CacheMap = HashMap<(Arc<str>, u32), Arc<Workflow>>;

/// Compiled workflows by (workflow id, version), checked against the content hash on every hit
/// so that a deleted and re-created definition never serves a stale graph. Bounded: past its
/// capacity an arbitrary entry is evicted (it is recompiled from the store when needed again).
#[derive(Clone, Debug)]
pub struct WorkflowCache {
    inner: Arc<Mutex<CacheMap>>,
    capacity: usize,
}

impl WorkflowCache {
    /// An empty cache holding at most `capacity` workflows (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheMap> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached workflow for (id, version) if its content hash is `content_hash`.
    pub fn get(
        &self,
        workflow_id: &str,
        version: u32,
        content_hash: &str,
    ) -> Option<Arc<Workflow>> {
        let key = (Arc::<str>::from(workflow_id), version);
        self.lock()
            .get(&key)
            .filter(|wf| wf.content_hash() == content_hash)
            .cloned()
    }

    /// Caches a compiled workflow under (its id, `version`).
    pub fn insert(&self, version: u32, workflow: Arc<Workflow>) {
        let key = (Arc::from(workflow.id()), version);
        let mut g = self.lock();
        if g.len() >= self.capacity
            && !g.contains_key(&key)
            && let Some(k) = g.keys().next().cloned()
        {
            g.remove(&k);
        }
        g.insert(key, workflow);
    }

    /// Number of cached workflows (the health report's `cache.workflows`).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Laid-out graphs by content hash, as SVG and as coordinates: laying a big DAG out takes a
/// while, and the dashboard asks for the same picture on every page of a workflow and its runs.
/// At most [`Drawings::LAYOUTS_AT_ONCE`] layouts run at a time, on the blocking pool.
#[derive(Debug, Clone)]
pub(crate) struct Drawings {
    svg: Arc<Mutex<HashMap<String, Arc<str>>>>,
    layout: Arc<Mutex<HashMap<String, Arc<serde_json::Value>>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Drawings {
    /// Drawings kept of each kind (a full cache is emptied).
    const CAPACITY: usize = 64;
    /// Layouts computed at once.
    const LAYOUTS_AT_ONCE: usize = 2;

    fn new() -> Self {
        Self {
            svg: Arc::default(),
            layout: Arc::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(Self::LAYOUTS_AT_ONCE)),
        }
    }

    /// The SVG of `content_hash`, from the cache or drawn by `draw`.
    pub(crate) async fn svg(
        &self,
        content_hash: &str,
        draw: impl FnOnce() -> Arc<str> + Send + 'static,
    ) -> Result<Arc<str>, ApiError> {
        self.cached(&self.svg, content_hash, draw).await
    }

    /// The coordinates of `content_hash`, from the cache or computed by `draw`.
    pub(crate) async fn layout(
        &self,
        content_hash: &str,
        draw: impl FnOnce() -> Arc<serde_json::Value> + Send + 'static,
    ) -> Result<Arc<serde_json::Value>, ApiError> {
        self.cached(&self.layout, content_hash, draw).await
    }

    async fn cached<T: Clone + Send + 'static>(
        &self,
        map: &Mutex<HashMap<String, T>>,
        key: &str,
        draw: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let lock = || {
            map.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(d) = lock().get(key) {
            return Ok(d.clone());
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ApiError::internal(format!("graph layout: {e}")))?;
        if let Some(d) = lock().get(key) {
            return Ok(d.clone());
        }
        let drawing = tokio::task::spawn_blocking(draw)
            .await
            .map_err(|e| ApiError::internal(format!("graph layout: {e}")))?;
        let mut done = lock();
        if done.len() >= Self::CAPACITY {
            done.clear();
        }
        done.insert(key.to_string(), drawing.clone());
        Ok(drawing)
    }
}
