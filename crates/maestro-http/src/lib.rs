//! Maestro's HTTP surface (DESIGN §5) on hyper 1 + hyper-util + matchit: the `/api/v1` routes,
//! the original system's compatibility routes, `application/problem+json` errors with stable
//! codes, bearer-token auth, body limits, CORS, request ids and tracing spans; live events over
//! SSE and WebSockets; Prometheus metrics at `/metrics` ([`Metrics`]); the OpenAPI 3.1 document
//! at `/api/v1/openapi.json` ([`openapi`], committed as `docs/openapi.json`).
//!
//! # Invariants
//!
//! - **Depends on `maestro-dag` and `maestro-health` only.** The store, the engine and the
//!   health state are injected through [`ApiContext`]; this crate never names `maestro-store`.
//! - **Malformed input is a 4xx.** Broken JSON, wrong types, deep nesting, invalid ids, unknown
//!   routes or methods, bodies over the limit and foreign media types each get a problem+json
//!   with a stable `code`; a panicking handler becomes a 500 and is logged, never a dropped
//!   connection.
//! - **Multi-replica aware.** With [`ApiContext::with_worker`], runs start and retry under a
//!   lease, and a run whose replica died is adopted before it is controlled; a run another live
//!   replica holds answers 409. Event streams read the store, so any replica streams any run.
//! - **Live events miss nothing and repeat nothing.** SSE streams and WebSockets replay the
//!   store's log after the client's `after`, then forward live events strictly in sequence,
//!   reading the store for anything out of order or driven by another replica.
//! - **Tokens never ride in URLs.** With API tokens, a WebSocket may carry its token as the
//!   subprotocol `maestro.bearer.<base64url(token)>` offered with `maestro` (browsers cannot set
//!   `Authorization` there), and the server then selects `maestro`; never in the query string.
//! - **Bounded sockets.** WebSockets are admitted after authentication and within
//!   [`HttpConfig::max_websockets`] / [`HttpConfig::max_websockets_per_key`] (503 otherwise),
//!   and all close (1001) when the server shuts down.
//! - **A run is pinned.** Runs are started, shown and retried against the compiled workflow of
//!   the exact (workflow id, version, content hash) they began with ([`WorkflowCache`]).
//!
//! # Wiring (in the binary)
//!
//! ```no_run
//! use std::sync::Arc;
//! use maestro_dag::{Engine, ExecutorRegistry, MemoryStore, Store};
//! use maestro_http::{ApiContext, HttpConfig, Metrics};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let store = Arc::new(MemoryStore::new());
//! let engine = Engine::new(store.clone(), ExecutorRegistry::new());
//! let config = HttpConfig::default()
//!     .with_api_tokens(["secret"])
//!     .with_websocket_limits(1000, 100);
//! let metrics = Arc::new(Metrics::new());
//! metrics.set_database_pool_size(16);
//! let ctx = ApiContext::new(engine, store as Arc<dyn Store>, config).with_metrics(metrics);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8003").await?;
//! maestro_http::serve(listener, ctx, std::future::pending()).await
//! # }
//! ```
//!
//! # Routes
//!
//! | Route | Answers |
//! |---|---|
//! | `POST /api/v1/workflows` | 201 new definition or version, 200 unchanged; `{workflow_id, version, content_hash, created_at, created}` |
//! | `POST /api/v1/workflows/validate` | 200 `{valid: true, levels, …}` |
//! | `GET /api/v1/workflows?limit=&offset=` | `{workflows, limit, offset, next_offset}` |
//! | `GET /api/v1/workflows/{id}[?version=N]` · `DELETE …` | `{workflow_id, version, content_hash, created_at, definition}` · 204 |
//! | `GET /api/v1/workflows/{id}/graph?format=json\|dot\|mermaid\|svg\|layout` | the DAG: JSON, DOT, Mermaid, or laid out (`maestro_dag::layout`) as an SVG picture or its coordinates |
//! | `POST /api/v1/workflows/{id}/runs` `{inputs}` | 202 `{run_id, workflow_id, version, status, created}`; `Idempotency-Key` |
//! | `GET /api/v1/runs?workflow_id=&status=&limit=&offset=` | `{runs, limit, offset, next_offset}` |
//! | `GET /api/v1/runs/{run_id}` | the run with every node of its pinned definition and `progress` |
//! | `POST /api/v1/runs/{run_id}/cancel\|pause\|resume` · `…/retry` | 200 · 202 `{run_id, status, …}` |
//! | `POST /api/v1/runs/{run_id}/nodes/{node_id}/approve\|reject` | `{output}` / `{reason}`, both optional |
//! | `GET /api/v1/runs/{run_id}/events?after=&limit=` | `{events, next_after}`; with `Accept: text/event-stream` a live SSE stream (`id: <seq>`, `data: <event>`), resumable by `after` or `Last-Event-ID`, ending after the run's terminal event (204 at once when resumed at or past a finished run's last event) |
//! | `GET /api/v1/runs/{run_id}/ws[?after=SEQ]` | WebSocket: the run's events (one text message each, the event wire shape) from `after + 1` to its terminal event, then close 1000 |
//! | `GET /api/v1/workflows/{id}/ws[?after=SEQ]` | WebSocket: the events of every run of the workflow as they happen (`after` replays the runs active at connect) |
//! | `GET /api/v1/openapi.json` | the OpenAPI 3.1 document |
//! | `GET /api/workflows` · `GET /api/workflows/{id}` · `POST /api/workflows/{id}/execute` · `GET /api/executions/{id}` | the original clients' shapes |
//! | `GET /ws/workflow/{id}` | WebSocket for the original clients: text `ping` → `{"type":"pong","timestamp"}`; each event once as `{type, timestamp, workflow_id, execution_id, node_id, data, seq}` |
//! | `GET /health` · `/health/ready` · `/health/live` · `/health/startup` | the `maestro-health` reports (no token needed; 404 unless [`ApiContext::with_health`]) |
//! | `GET /metrics` | Prometheus text format, `dag_*` names (no token needed; 404 unless [`ApiContext::with_metrics`]) |
//! | `GET /` · `GET /assets/app.js\|app.css` | the web dashboard (docs/dashboard.md), embedded in the binary; no token needed; `ETag` (304 on `If-None-Match`), `Cache-Control: no-cache`, a strict `Content-Security-Policy`, `nosniff`, `X-Frame-Options: DENY` |
//!
//! # Error codes
//!
//! Every error is `application/problem+json` `{type, title, status, detail, code, errors,
//! request_id}`; `type` is `https://maestro.dev/problems/<code with dashes>`.
//!
//! | Status | Codes |
//! |---|---|
//! | 400 | `invalid_json` (with line and column), `json_too_deep`, `invalid_id`, `invalid_query`, `invalid_header`, `invalid_idempotency_key`, `body_read_failed` |
//! | 401 | `unauthorized` (with `WWW-Authenticate: Bearer`) |
//! | 404 | `route_not_found`, `workflow_not_found`, `run_not_found`, `node_not_found`, `execution_not_found` |
//! | 405 | `method_not_allowed` (with `Allow`) |
//! | 408 | `body_timeout` |
//! | 409 | `invalid_transition`, `workflow_mismatch`, `definition_unavailable`, `conflict` |
//! | 413 | `body_too_large` |
//! | 415 | `unsupported_media_type` |
//! | 422 | `validation_failed` (`errors` carry the validation codes: `cycle` with `nodes`, `unknown_executor` with `node_id`, …), `invalid_definition` and `invalid_body` (with the field `path`) |
//! | 426 | `upgrade_required` (a WebSocket route without an HTTP/1.1 upgrade handshake) |
//! | 500 | `internal_error` (details only in the log) |
//! | 503 | `store_unavailable` (with `Retry-After`), `shutting_down`, `too_many_websockets` (with `Retry-After`) |
//!
//! # Adding a route
//!
//! A new [`Route`] needs a pattern in [`Route::ALL`], its methods, an arm in the dispatch and an
//! operation in [`openapi`] (an exhaustive `match`, so it does not compile without one); then
//! `UPDATE_OPENAPI=1 cargo test -p maestro-http --test it openapi` refreshes `docs/openapi.json`.

// The OpenAPI document is one large `serde_json::json!` literal.
#![recursion_limit = "512"]

mod body;
mod config;
mod error;
mod follow;
mod handlers;
mod metrics;
pub mod openapi;
mod router;
mod server;
mod service;
mod sockets;
mod state;

pub use body::{Body, json_depth_exceeds};
pub use config::HttpConfig;
pub use error::{ApiError, PROBLEM_JSON, ProblemItem};
pub use metrics::{METRICS_CONTENT_TYPE, Metrics};
pub use router::{Decision, Matched, ProbeKind, Route, Router, RunAction};
pub use server::serve;
pub use service::{REQUEST_ID, Req, handle};
pub use state::{ApiContext, RequestObserver, WorkflowCache};
