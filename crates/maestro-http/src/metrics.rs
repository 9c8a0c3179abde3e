//! Prometheus metrics (DESIGN §6) on `prometheus-client`, served at `GET /metrics` in the
//! Prometheus text format (version 0.0.4), with the `dag_*` names the original system planned.
//!
//! | Metric | Type | Labels | Source |
//! |---|---|---|---|
//! | `dag_workflow_executions_total` | counter | `workflow_name`, `status` | terminal run events |
//! | `dag_workflow_execution_duration_seconds` | histogram (1 s … 3600 s) | `workflow_name` | `workflow_started` → terminal |
//! | `dag_node_executions_total` | counter | `node_type`, `status` | `node_completed` / `node_failed` / `node_skipped` |
//! | `dag_node_execution_duration_seconds` | histogram (0.1 s … 600 s) | `node_type` | `node_started` → end of that attempt |
//! | `dag_node_retries_total` | counter | `node_type` | `node_retry` |
//! | `dag_active_workflows` · `dag_active_nodes` | gauges | | runs driven and attempts executing on this replica, read from the engine at scrape time |
//! | `dag_api_requests_total` | counter | `method`, `endpoint`, `status_code` | every request ([`RequestObserver`]) |
//! | `dag_api_request_duration_seconds` | histogram (5 ms … 10 s) | `method`, `endpoint` | every request |
//! | `dag_websocket_connections` | gauge | | open WebSockets, read at scrape time |
//! | `dag_health_check_status` | gauge (1 up / 0 down) | `check_type` | `maestro-health`'s registry, at scrape time |
//! | `dag_database_pool_size` | gauge | | set by the binary ([`Metrics::set_database_pool_size`]) |
//! | `dag_metrics_events_dropped_total` | counter | | engine events the metrics missed (a lagging subscriber) |
//! | `dag_lease_takeovers_total` | counter | | runs this replica took over by polling (their owner died), from the worker at scrape time |
//!
//! `endpoint` is the route pattern (`/api/v1/runs/{run_id}`), never the raw path, and
//! `workflow_name` is the workflow id, so label sets stay bounded. `node_type` is the node's
//! executor key (`noop`, `http`, `phase`, …). The engine-derived metrics come from a task that
//! [`serve`](crate::serve) starts over `engine.subscribe()`: they count the runs this replica
//! drives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use maestro_dag::{Event, EventType};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use crate::state::{ApiContext, RequestObserver};

/// The `Content-Type` of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const WORKFLOW_BUCKETS: [f64; 10] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
const NODE_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];
const API_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowStatus {
    workflow_name: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowName {
    workflow_name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeStatus {
    node_type: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeType {
    node_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiStatus {
    method: String,
    endpoint: &'static str,
    status_code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiEndpoint {
    method: String,
    endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckType {
    check_type: String,
}

/// Builds histograms with fixed buckets for a [`Family`].
#[derive(Clone, Copy)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// The server's metrics. Created by the binary, handed to [`ApiContext::with_metrics`]; cheap
/// to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    workflow_executions: Family<WorkflowStatus, Counter>,
    workflow_duration: Family<WorkflowName, Histogram, Buckets>,
    node_executions: Family<NodeStatus, Counter>,
    node_duration: Family<NodeType, Histogram, Buckets>,
    node_retries: Family<NodeType, Counter>,
    active_workflows: Gauge,
    active_nodes: Gauge,
    api_requests: Family<ApiStatus, Counter>,
    api_duration: Family<ApiEndpoint, Histogram, Buckets>,
    websockets: Gauge,
    health_checks: Family<CheckType, Gauge>,
    pool_size: Gauge,
    dropped: Counter,
    takeovers: Counter,
    /// Scrapes serialise here (the scrape-time gauges are set, then everything is encoded).
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric of the table in the module docs, registered and at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let workflow_executions = Family::<WorkflowStatus, Counter>::default();
        let workflow_duration = Family::new_with_constructor(Buckets(&WORKFLOW_BUCKETS));
        let node_executions = Family::<NodeStatus, Counter>::default();
        let node_duration = Family::new_with_constructor(Buckets(&NODE_BUCKETS));
        let node_retries = Family::<NodeType, Counter>::default();
        let active_workflows = Gauge::default();
        let active_nodes = Gauge::default();
        let api_requests = Family::<ApiStatus, Counter>::default();
        let api_duration = Family::new_with_constructor(Buckets(&API_BUCKETS));
        let websockets = Gauge::default();
        let health_checks = Family::<CheckType, Gauge>::default();
        let pool_size = Gauge::default();
        let dropped = Counter::default();
        let takeovers = Counter::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "dag_workflow_executions",
            "Workflow runs that reached a terminal status",
            workflow_executions.clone(),
        );
        registry.register(
            "dag_workflow_execution_duration_seconds",
            "Duration of workflow runs, from start to terminal status",
            workflow_duration.clone(),
        );
        registry.register(
            "dag_node_executions",
            "Nodes that reached a terminal status",
            node_executions.clone(),
        );
        registry.register(
            "dag_node_execution_duration_seconds",
            "Duration of node attempts",
            node_duration.clone(),
        );
        registry.register(
            "dag_node_retries",
            "Failed node attempts that will be retried",
            node_retries.clone(),
        );
        registry.register(
            "dag_active_workflows",
            "Workflow runs in flight on this replica",
            active_workflows.clone(),
        );
        registry.register(
            "dag_active_nodes",
            "Node attempts in flight on this replica",
            active_nodes.clone(),
        );
        registry.register(
            "dag_api_requests",
            "HTTP requests answered, by route pattern",
            api_requests.clone(),
        );
        registry.register(
            "dag_api_request_duration_seconds",
            "HTTP request latency, by route pattern",
            api_duration.clone(),
        );
        registry.register(
            "dag_websocket_connections",
            "Open WebSocket connections",
            websockets.clone(),
        );
        registry.register(
            "dag_health_check_status",
            "Health checks: 1 when up, 0 otherwise",
            health_checks.clone(),
        );
        registry.register(
            "dag_database_pool_size",
            "Size of the database connection pool",
            pool_size.clone(),
        );
        registry.register(
            "dag_metrics_events_dropped",
            "Engine events the metrics missed because their subscriber lagged",
            dropped.clone(),
        );
        registry.register(
            "dag_lease_takeovers",
            "Runs this replica took over from a replica whose lease expired",
            takeovers.clone(),
        );
        Self {
            registry,
            workflow_executions,
            workflow_duration,
            node_executions,
            node_duration,
            node_retries,
            active_workflows,
            active_nodes,
            api_requests,
            api_duration,
            websockets,
            health_checks,
            pool_size,
            dropped,
            takeovers,
            scrape: Mutex::new(()),
        }
    }

    /// Sets `dag_database_pool_size` (the binary calls this when it builds the pool).
    pub fn set_database_pool_size(&self, size: u64) {
        self.pool_size.set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format, after refreshing the scrape-time gauges
    /// (open WebSockets, health checks) from `ctx`.
    pub fn render(&self, ctx: &ApiContext) -> String {
        let _g = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.websockets
            .set(i64::try_from(ctx.open_websockets()).unwrap_or(i64::MAX));
        // Read from the engine, not counted from events: a run this replica lost (or resumed
        // from another) has no matching start or end event here.
        self.active_workflows
            .set(i64::try_from(ctx.engine.active_runs().len()).unwrap_or(i64::MAX));
        self.active_nodes
            .set(i64::try_from(ctx.engine.executing()).unwrap_or(i64::MAX));
        if let Some(worker) = &ctx.worker {
            let seen = self.takeovers.get();
            self.takeovers
                .inc_by(worker.takeovers().saturating_sub(seen));
        }
        if let Some(health) = &ctx.health {
            for check in health.registry().snapshot() {
                self.health_checks
                    .get_or_create(&CheckType {
                        check_type: check.name,
                    })
                    .set(i64::from(check.state.is_up()));
            }
        }
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }

    /// Follows the engine's events until `ctx`'s server shuts down.
    pub(crate) async fn follow_engine(self: Arc<Self>, ctx: ApiContext) {
        let mut live = ctx.engine.subscribe();
        let shutdown = ctx.streams.clone();
        let mut state = EngineState::default();
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                e = live.recv() => e,
            };
            match event {
                Ok(e) => {
                    let node_type = match &e.node_id {
                        Some(node) => state.node_type(&ctx, &e.run_id, node).await,
                        None => String::new(),
                    };
                    self.record(&mut state, &e, node_type);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.dropped.inc_by(n);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn record(&self, state: &mut EngineState, e: &Event, node_type: String) {
        let since = |t: Option<DateTime<Utc>>| {
            t.map(|t| {
                (e.timestamp - t)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .as_secs_f64()
            })
        };
        match e.kind {
            EventType::WorkflowStarted => {
                // A run restarted by a retry was counted as ended; one already active is not.
                state.runs.insert(e.run_id.clone(), e.timestamp);
            }
            k if k.is_terminal() => {
                let status = match k {
                    EventType::WorkflowCompleted => "completed",
                    EventType::WorkflowFailed => "failed",
                    _ => "cancelled",
                };
                let name = e.workflow_id.to_string();
                self.workflow_executions
                    .get_or_create(&WorkflowStatus {
                        workflow_name: name.clone(),
                        status,
                    })
                    .inc();
                if let Some(secs) = since(state.runs.remove(&e.run_id)) {
                    self.workflow_duration
                        .get_or_create(&WorkflowName {
                            workflow_name: name,
                        })
                        .observe(secs);
                }
                // Attempts a cancellation stopped end with the run.
                state.attempts.retain(|(run, _), _| *run != e.run_id);
                state.executors.remove(&e.run_id);
            }
            EventType::NodeStarted => {
                let key = (e.run_id.clone(), node_key(e));
                state.attempts.insert(key, e.timestamp);
            }
            EventType::NodeCompleted | EventType::NodeFailed | EventType::NodeRetry => {
                let started = state.attempts.remove(&(e.run_id.clone(), node_key(e)));
                let label = NodeType {
                    node_type: node_type.clone(),
                };
                if let Some(secs) = since(started) {
                    self.node_duration.get_or_create(&label).observe(secs);
                }
                match e.kind {
                    EventType::NodeRetry => {
                        self.node_retries.get_or_create(&label).inc();
                    }
                    k => {
                        let status = if k == EventType::NodeCompleted {
                            "completed"
                        } else {
                            "failed"
                        };
                        self.node_executions
                            .get_or_create(&NodeStatus { node_type, status })
                            .inc();
                    }
                }
            }
            EventType::NodeSkipped => {
                self.node_executions
                    .get_or_create(&NodeStatus {
                        node_type,
                        status: "skipped",
                    })
                    .inc();
            }
            _ => {}
        }
    }
}

fn node_key(e: &Event) -> Arc<str> {
    e.node_id.clone().unwrap_or_else(|| Arc::from(""))
}

impl RequestObserver for Metrics {
    fn on_response(
        &self,
        method: &http::Method,
        route: &'static str,
        status: http::StatusCode,
        elapsed: Duration,
    ) {
        let method = method.as_str().to_string();
        self.api_requests
            .get_or_create(&ApiStatus {
                method: method.clone(),
                endpoint: route,
                status_code: status.as_u16(),
            })
            .inc();
        self.api_duration
            .get_or_create(&ApiEndpoint {
                method,
                endpoint: route,
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// What the engine listener remembers between events.
#[derive(Default)]
struct EngineState {
    /// Runs in flight and when they started.
    runs: HashMap<Arc<str>, DateTime<Utc>>,
    /// Attempts in flight by (run, node) and when they started.
    attempts: HashMap<(Arc<str>, Arc<str>), DateTime<Utc>>,
    /// Executor keys by node, per run in flight.
    executors: HashMap<Arc<str>, Arc<HashMap<String, String>>>,
}

impl EngineState {
    /// The executor key of a node of a run (`unknown` when the definition cannot be read).
    async fn node_type(&mut self, ctx: &ApiContext, run_id: &Arc<str>, node: &str) -> String {
        if !self.executors.contains_key(run_id) {
            let map = executors_of(ctx, run_id).await.unwrap_or_default();
            self.executors.insert(run_id.clone(), Arc::new(map));
        }
        self.executors
            .get(run_id)
            .and_then(|m| m.get(node).cloned())
            .unwrap_or_else(|| "unknown".to_string())
    }
}

async fn executors_of(ctx: &ApiContext, run_id: &str) -> Option<HashMap<String, String>> {
    let run = ctx.store.load_run(run_id).await.ok()??.run;
    let record = ctx
        .store
        .get_definition(&run.workflow_id, Some(run.version))
        .await
        .ok()??;
    Some(
        record
            .definition
            .nodes
            .iter()
            .map(|n| {
                (
                    n.id.clone(),
                    n.executor_key().unwrap_or("unknown").to_string(),
                )
            })
            .collect(),
    )
}
