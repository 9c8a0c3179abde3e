//! The route table: path patterns on [`matchit`], each with the methods it answers. Unknown
//! paths are 404, known paths with another method are 405 with an `Allow` header.
//!
//! Every route is also an operation of the OpenAPI document (`crate::openapi`), which is built
//! from [`Route::ALL`], so the two cannot drift apart.

use http::Method;

/// Which control operation a `POST /api/v1/runs/{run_id}/…` route performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAction {
    /// `cancel`.
    Cancel,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `retry` (from the failed nodes).
    Retry,
}

/// A human-review decision on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `approve`.
    Approve,
    /// `reject`.
    Reject,
}

/// Every route the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// `GET|POST /api/v1/workflows`.
    Workflows,
    /// `POST /api/v1/workflows/validate`.
    ValidateWorkflow,
    /// `GET|DELETE /api/v1/workflows/{id}`.
    Workflow,
    /// `GET /api/v1/workflows/{id}/graph`.
    WorkflowGraph,
    /// `POST /api/v1/workflows/{id}/runs`.
    StartRun,
    /// `GET /api/v1/runs`.
    Runs,
    /// `GET /api/v1/runs/{run_id}`.
    Run,
    /// `POST /api/v1/runs/{run_id}/{cancel|pause|resume|retry}`.
    RunControl(RunAction),
    /// `POST /api/v1/runs/{run_id}/nodes/{node_id}/{approve|reject}`.
    Review(Decision),
    /// `GET /api/v1/runs/{run_id}/events`.
    RunEvents,
    /// `GET /api/workflows` (original clients).
    CompatWorkflows,
    /// `GET /api/workflows/{id}` (original clients, React-Flow shape).
    CompatWorkflow,
    /// `POST /api/workflows/{id}/execute` (original clients).
    CompatExecute,
    /// `GET /api/executions/{id}` (original clients).
    CompatExecution,
    /// `GET /health`, `/health/ready`, `/health/live`, `/health/startup` (no authentication).
    Probe(ProbeKind),
    /// `GET /api/v1/runs/{run_id}/ws`: a WebSocket of one run's events.
    RunSocket,
    /// `GET /api/v1/workflows/{id}/ws`: a WebSocket of the events of every run of a workflow.
    WorkflowSocket,
    /// `GET /ws/workflow/{id}` (original clients): the workflow's events in the original shape.
    CompatSocket,
    /// `GET /api/v1/openapi.json`: the OpenAPI 3.1 document.
    OpenApi,
    /// `GET /metrics`: Prometheus text format (no authentication).
    Metrics,
    /// `GET /`: the web dashboard's page (no authentication; its API calls carry the token).
    Dashboard,
    /// `GET /assets/{file}`: the dashboard's script and style sheet (no authentication).
    DashboardAsset,
}

/// Which health probe a `/health…` route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// `/health`: the overall report, always 200.
    Overall,
    /// `/health/ready`.
    Ready,
    /// `/health/live`.
    Live,
    /// `/health/startup`.
    Startup,
}

const GET: &[Method] = &[Method::GET, Method::HEAD];
const POST: &[Method] = &[Method::POST];

impl Route {
    /// Every route with its pattern.
    pub const ALL: &'static [(&'static str, Route)] = &[
        ("/api/v1/workflows", Route::Workflows),
        ("/api/v1/workflows/validate", Route::ValidateWorkflow),
        ("/api/v1/workflows/{id}", Route::Workflow),
        ("/api/v1/workflows/{id}/graph", Route::WorkflowGraph),
        ("/api/v1/workflows/{id}/runs", Route::StartRun),
        ("/api/v1/runs", Route::Runs),
        ("/api/v1/runs/{run_id}", Route::Run),
        (
            "/api/v1/runs/{run_id}/cancel",
            Route::RunControl(RunAction::Cancel),
        ),
        (
            "/api/v1/runs/{run_id}/pause",
            Route::RunControl(RunAction::Pause),
        ),
        (
            "/api/v1/runs/{run_id}/resume",
            Route::RunControl(RunAction::Resume),
        ),
        (
            "/api/v1/runs/{run_id}/retry",
            Route::RunControl(RunAction::Retry),
        ),
        (
            "/api/v1/runs/{run_id}/nodes/{node_id}/approve",
            Route::Review(Decision::Approve),
        ),
        (
            "/api/v1/runs/{run_id}/nodes/{node_id}/reject",
            Route::Review(Decision::Reject),
        ),
        ("/api/v1/runs/{run_id}/events", Route::RunEvents),
        ("/api/v1/runs/{run_id}/ws", Route::RunSocket),
        ("/api/v1/workflows/{id}/ws", Route::WorkflowSocket),
        ("/api/v1/openapi.json", Route::OpenApi),
        ("/api/workflows", Route::CompatWorkflows),
        ("/api/workflows/{id}", Route::CompatWorkflow),
        ("/api/workflows/{id}/execute", Route::CompatExecute),
        ("/api/executions/{id}", Route::CompatExecution),
        ("/ws/workflow/{id}", Route::CompatSocket),
        ("/metrics", Route::Metrics),
        ("/health", Route::Probe(ProbeKind::Overall)),
        ("/health/ready", Route::Probe(ProbeKind::Ready)),
        ("/health/live", Route::Probe(ProbeKind::Live)),
        ("/health/startup", Route::Probe(ProbeKind::Startup)),
        ("/", Route::Dashboard),
        ("/assets/{file}", Route::DashboardAsset),
    ];

    /// The methods the route answers (besides `OPTIONS`, answered for every route).
    pub fn methods(self) -> &'static [Method] {
        match self {
            Route::Workflows => &[Method::GET, Method::HEAD, Method::POST],
            Route::Workflow => &[Method::GET, Method::HEAD, Method::DELETE],
            Route::ValidateWorkflow
            | Route::StartRun
            | Route::RunControl(_)
            | Route::Review(_)
            | Route::CompatExecute => POST,
            Route::WorkflowGraph
            | Route::Runs
            | Route::Run
            | Route::RunEvents
            | Route::CompatWorkflows
            | Route::CompatWorkflow
            | Route::CompatExecution
            | Route::Probe(_)
            | Route::OpenApi
            | Route::Metrics
            | Route::Dashboard
            | Route::DashboardAsset => GET,
            Route::RunSocket | Route::WorkflowSocket | Route::CompatSocket => &[Method::GET],
        }
    }

    /// The route's pattern, e.g. `/api/v1/runs/{run_id}` (a low-cardinality metrics label).
    pub fn pattern(self) -> &'static str {
        Route::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map_or("unmatched", |(p, _)| p)
    }

    /// Whether the route upgrades to a WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(
            self,
            Route::RunSocket | Route::WorkflowSocket | Route::CompatSocket
        )
    }

    /// Whether the route needs a bearer token when tokens are configured: every `/api` route
    /// and every WebSocket; probes, `/metrics` and the dashboard's page and assets stay open.
    pub fn needs_auth(self) -> bool {
        !matches!(
            self,
            Route::Probe(_) | Route::Metrics | Route::Dashboard | Route::DashboardAsset
        )
    }

    /// The `Allow` header value.
    pub fn allow_header(self) -> String {
        let mut names: Vec<&str> = self.methods().iter().map(Method::as_str).collect();
        names.push("OPTIONS");
        names.join(", ")
    }
}

/// The compiled route table.
#[derive(Debug, Clone)]
pub struct Router {
    inner: matchit::Router<Route>,
}

/// A matched route and its path parameters.
#[derive(Debug, Clone)]
pub struct Matched {
    /// The route.
    pub route: Route,
    /// Path parameters by name, raw (not percent-decoded; valid ids never need decoding).
    pub params: Vec<(&'static str, String)>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// The table of every [`Route`].
    pub fn new() -> Self {
        let mut inner = matchit::Router::new();
        for (pattern, route) in Route::ALL {
            inner
                .insert(*pattern, *route)
                .expect("route patterns do not conflict");
        }
        Self { inner }
    }

    /// Matches a request path (one trailing slash is ignored).
    pub fn at(&self, path: &str) -> Option<Matched> {
        let path = if path.len() > 1 {
            path.strip_suffix('/').unwrap_or(path)
        } else {
            path
        };
        let m = self.inner.at(path).ok()?;
        let route = *m.value;
        let params = m
            .params
            .iter()
            .map(|(k, v)| {
                let key = match k {
                    "id" => "id",
                    "run_id" => "run_id",
                    "node_id" => "node_id",
                    "file" => "file",
                    _ => "param",
                };
                (key, v.to_string())
            })
            .collect();
        Some(Matched { route, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_over_parameters() {
        let r = Router::new();
        assert_eq!(
            r.at("/api/v1/workflows/validate").unwrap().route,
            Route::ValidateWorkflow
        );
        let m = r.at("/api/v1/workflows/abc/").unwrap();
        assert_eq!(m.route, Route::Workflow);
        assert_eq!(m.params, vec![("id", "abc".to_string())]);
        assert!(r.at("/api/v1/nope").is_none());
        assert_eq!(Route::Workflow.allow_header(), "GET, HEAD, DELETE, OPTIONS");
    }
}
