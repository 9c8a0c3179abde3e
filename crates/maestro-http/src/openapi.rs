//! The OpenAPI 3.1 document served at `GET /api/v1/openapi.json` and committed at
//! `docs/openapi.json` (a test fails when the two differ; `UPDATE_OPENAPI=1 cargo test -p
//! maestro-http openapi` rewrites the file).
//!
//! It is built from the route table ([`Route::ALL`] and [`Route::methods`]), so a route cannot
//! be missing from it: each (route, method) gets its operation from `operation`, an
//! exhaustive `match` on [`Route`] that fails to compile when a route is added without one.
//! Schemas are written by hand here, next to that table (a derive-based generator would add a
//! large dependency for a few dozen shapes).

use http::Method;
use serde_json::{Map, Value, json};

use crate::router::{Decision, ProbeKind, Route, RunAction};

/// The document, as JSON.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (pattern, route) in Route::ALL {
        let mut item = Map::new();
        let params = path_params(pattern);
        if !params.is_empty() {
            item.insert("parameters".into(), Value::Array(params));
        }
        for method in route.methods() {
            if *method == Method::HEAD {
                continue;
            }
            item.insert(
                method.as_str().to_ascii_lowercase(),
                operation(*route, method).into_json(*route),
            );
        }
        paths.insert((*pattern).to_string(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Maestro",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "A durable DAG workflow engine",
            "description": "Workflow definitions, runs, their events (JSON pages, Server-Sent Events and WebSockets), health probes and metrics. Errors are `application/problem+json` with a stable `code`. When the server has API tokens, every `/api` route and every WebSocket needs `Authorization: Bearer <token>`; probes and `/metrics` stay open.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": "workflows", "description": "Workflow definitions"},
            {"name": "runs", "description": "Runs and their control"},
            {"name": "events", "description": "Run events: pages, SSE and WebSockets"},
            {"name": "compat", "description": "The original system's routes, for its clients"},
            {"name": "operations", "description": "Probes, metrics and this document"},
            {"name": "dashboard", "description": "The web dashboard (no token needed to load it)"}
        ],
        "paths": paths,
        "components": components(),
    })
}

/// The document as committed: pretty-printed, with a final newline.
pub fn render() -> String {
    let mut s = serde_json::to_string_pretty(&document()).expect("the document serializes");
    s.push('\n');
    s
}

fn path_params(pattern: &str) -> Vec<Value> {
    pattern
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            if name == "file" {
                return json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "description": "The asset's file name",
                    "schema": {"type": "string", "enum": ["app.js", "app.css"]},
                });
            }
            let description = match name {
                "run_id" => "The run's id",
                "node_id" => "A node's id within the run's workflow",
                _ if pattern.starts_with("/api/executions") => "The execution (run) id",
                _ => "The workflow's id",
            };
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": description,
                "schema": schema("Id"),
            })
        })
        .collect()
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// One response of an operation.
struct Resp {
    status: &'static str,
    description: &'static str,
    content: Vec<(&'static str, Value)>,
    headers: Vec<(&'static str, &'static str)>,
}

fn ok(status: &'static str, description: &'static str, schema_name: &str) -> Resp {
    Resp {
        status,
        description,
        content: vec![("application/json", schema(schema_name))],
        headers: Vec::new(),
    }
}

fn problem(status: &'static str, description: &'static str) -> Resp {
    Resp {
        status,
        description,
        content: vec![("application/problem+json", schema("Problem"))],
        headers: Vec::new(),
    }
}

/// One operation (route and method).
struct Op {
    id: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    tag: &'static str,
    query: Vec<Value>,
    headers: Vec<Value>,
    body: Option<(&'static str, bool)>,
    responses: Vec<Resp>,
}

impl Op {
    fn new(id: &'static str, tag: &'static str, summary: &'static str) -> Self {
        Self {
            id,
            summary,
            description: None,
            tag,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            responses: Vec::new(),
        }
    }

    fn describe(mut self, d: &'static str) -> Self {
        self.description = Some(d);
        self
    }

    fn query(mut self, name: &str, description: &str, schema: Value) -> Self {
        self.query.push(json!({
            "name": name, "in": "query", "required": false,
            "description": description, "schema": schema,
        }));
        self
    }

    fn header(mut self, name: &str, description: &str) -> Self {
        self.headers.push(json!({
            "name": name, "in": "header", "required": false,
            "description": description, "schema": {"type": "string"},
        }));
        self
    }

    fn body(mut self, schema_name: &'static str, required: bool) -> Self {
        self.body = Some((schema_name, required));
        self
    }

    fn resp(mut self, r: Resp) -> Self {
        self.responses.push(r);
        self
    }

    fn paging(self) -> Self {
        self.query(
            "limit",
            "Page size (default 50, at most 500)",
            json!({"type": "integer", "minimum": 1}),
        )
        .query(
            "offset",
            "Items to skip",
            json!({"type": "integer", "minimum": 0}),
        )
    }

    fn into_json(self, route: Route) -> Value {
        let mut responses = Map::new();
        let mut all = self.responses;
        if route.needs_auth() {
            all.push(problem(
                "401",
                "Missing or invalid bearer token (`unauthorized`), when tokens are configured",
            ));
        }
        all.push(problem(
            "default",
            "Any other error, as problem+json with a stable `code`",
        ));
        for r in all {
            let mut v = Map::new();
            v.insert("description".into(), r.description.into());
            if !r.content.is_empty() {
                let content: Map<String, Value> = r
                    .content
                    .into_iter()
                    .map(|(t, s)| (t.to_string(), json!({ "schema": s })))
                    .collect();
                v.insert("content".into(), Value::Object(content));
            }
            if !r.headers.is_empty() {
                let headers: Map<String, Value> = r
                    .headers
                    .into_iter()
                    .map(|(h, d)| {
                        (
                            h.to_string(),
                            json!({"description": d, "schema": {"type": "string"}}),
                        )
                    })
                    .collect();
                v.insert("headers".into(), Value::Object(headers));
            }
            responses.insert(r.status.to_string(), Value::Object(v));
        }
        let mut op = Map::new();
        op.insert("operationId".into(), self.id.into());
        op.insert("summary".into(), self.summary.into());
        if let Some(d) = self.description {
            op.insert("description".into(), d.into());
        }
        op.insert("tags".into(), json!([self.tag]));
        let params: Vec<Value> = self.query.into_iter().chain(self.headers).collect();
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some((name, required)) = self.body {
            op.insert(
                "requestBody".into(),
                json!({
                    "required": required,
                    "content": {"application/json": {"schema": schema(name)}},
                }),
            );
        }
        op.insert("responses".into(), Value::Object(responses));
        if !route.needs_auth() {
            op.insert("security".into(), json!([]));
        }
        Value::Object(op)
    }
}

const WS_DESCRIPTION: &str = "An HTTP/1.1 WebSocket upgrade (RFC 6455). Browsers, which cannot send `Authorization` on a WebSocket, may offer the token as the subprotocol `maestro.bearer.<base64url without padding of the token>` together with `maestro`, which the server then selects (never in the query string). Each event is one text message; a text `ping` is answered with `{\"type\":\"pong\",\"timestamp\"}`. Refused with 503 `too_many_websockets` past the server's limits (1,000 sockets per server and 100 per run or workflow by default) and with 426 `upgrade_required` without an upgrade handshake. The server closes with 1001 when it shuts down.";

fn websocket(op: Op, message: &'static str) -> Op {
    op.describe(WS_DESCRIPTION)
        .resp(Resp {
            status: "101",
            description: message,
            content: Vec::new(),
            headers: vec![
                ("Upgrade", "`websocket`"),
                ("Sec-WebSocket-Accept", "The handshake's answer"),
            ],
        })
        .resp(problem("404", "Unknown run or workflow"))
        .resp(problem(
            "426",
            "Not a WebSocket handshake (`upgrade_required`)",
        ))
        .resp(problem(
            "503",
            "Too many WebSockets (`too_many_websockets`, with `Retry-After`)",
        ))
}

fn probe(id: &'static str, summary: &'static str, schema_name: &'static str) -> Op {
    Op::new(id, "operations", summary)
        .resp(ok("200", "The report", schema_name))
        .resp(Resp {
            status: "503",
            description: "Not ready or not started (the report says why)",
            content: vec![("application/json", schema(schema_name))],
            headers: Vec::new(),
        })
        .resp(problem("404", "Probes are not configured on this server"))
}

/// The operation of a (route, method). Exhaustive on purpose: a new route does not compile
/// until it is documented here.
fn operation(route: Route, method: &Method) -> Op {
    let after = json!({"type": "integer", "minimum": 0});
    match route {
        Route::Workflows if method == Method::POST => {
            Op::new("createWorkflow", "workflows", "Create a workflow or a new version")
                .describe("201 for a new workflow or a new version, 200 when the definition is unchanged. 422 lists every validation error with its code (`cycle` with `nodes`, `unknown_executor` with `node_id`, …).")
                .body("WorkflowDefinition", true)
                .resp(ok("201", "Created (a new workflow or version)", "WorkflowCreated"))
                .resp(ok("200", "Unchanged", "WorkflowCreated"))
                .resp(problem("413", "Body over the limit (`body_too_large`)"))
                .resp(problem("415", "Not JSON (`unsupported_media_type`)"))
                .resp(problem("422", "Invalid definition (`validation_failed`, `invalid_definition`)"))
        }
        Route::Workflows => Op::new("listWorkflows", "workflows", "List workflows")
            .paging()
            .resp(ok("200", "A page of workflows", "WorkflowList")),
        Route::ValidateWorkflow => {
            Op::new("validateWorkflow", "workflows", "Validate a definition without storing it")
                .body("WorkflowDefinition", true)
                .resp(ok("200", "Valid", "Validation"))
                .resp(problem("422", "Invalid definition (`validation_failed`)"))
        }
        Route::Workflow if method == Method::DELETE => {
            Op::new("deleteWorkflow", "workflows", "Delete a workflow (every version)")
                .resp(Resp {
                    status: "204",
                    description: "Deleted",
                    content: Vec::new(),
                    headers: Vec::new(),
                })
                .resp(problem("404", "Unknown workflow (`workflow_not_found`)"))
        }
        Route::Workflow => Op::new("getWorkflow", "workflows", "Read a workflow definition")
            .query(
                "version",
                "A version (default: the latest)",
                json!({"type": "integer", "minimum": 1}),
            )
            .resp(ok("200", "The definition", "WorkflowRecord"))
            .resp(problem("404", "Unknown workflow or version (`workflow_not_found`)")),
        Route::WorkflowGraph => Op::new("getWorkflowGraph", "workflows", "The workflow's DAG as a picture source")
            .query("format", "Output format (default `json`): `svg` is the laid-out picture, `layout` its coordinates", json!({"type": "string", "enum": ["json", "dot", "mermaid", "svg", "layout"]}))
            .query("version", "A version (default: the latest)", json!({"type": "integer", "minimum": 1}))
            .resp(Resp {
                status: "200",
                description: "The graph: JSON `{nodes, edges}` (`json`) or the layered layout (`layout`), Graphviz DOT, Mermaid, or an SVG picture",
                content: vec![
                    ("application/json", json!({"oneOf": [schema("Graph"), {
                        "type": "object",
                        "description": "`format=layout`: boxes (top-left corner, size) and edge polylines, left to right",
                        "required": ["workflow_id", "version", "width", "height", "layers", "crossings", "nodes", "edges"],
                        "properties": {
                            "workflow_id": schema("Id"),
                            "version": {"type": "integer"},
                            "width": {"type": "number"},
                            "height": {"type": "number"},
                            "layers": {"type": "integer"},
                            "crossings": {"type": "integer"},
                            "nodes": {"type": "array", "items": {
                                "type": "object",
                                "required": ["id", "name", "type", "executor", "layer", "order", "x", "y", "width", "height"],
                                "properties": {
                                    "id": schema("Id"),
                                    "name": {"type": "string"},
                                    "type": {"type": "string"},
                                    "executor": {"type": ["string", "null"]},
                                    "layer": {"type": "integer"},
                                    "order": {"type": "integer"},
                                    "x": {"type": "number"},
                                    "y": {"type": "number"},
                                    "width": {"type": "number"},
                                    "height": {"type": "number"}
                                }
                            }},
                            "edges": {"type": "array", "items": {
                                "type": "object",
                                "required": ["from", "to", "points"],
                                "properties": {
                                    "from": schema("Id"),
                                    "to": schema("Id"),
                                    "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}}
                                }
                            }}
                        }
                    }]})),
                    ("text/vnd.graphviz", json!({"type": "string"})),
                    ("text/plain", json!({"type": "string"})),
                    ("image/svg+xml", json!({"type": "string"})),
                ],
                headers: Vec::new(),
            })
            .resp(problem("400", "Unknown `format` (`invalid_query`)"))
            .resp(problem("404", "Unknown workflow (`workflow_not_found`)")),
        Route::StartRun => Op::new("startRun", "runs", "Start a run of the latest version")
            .header("Idempotency-Key", "The same key again returns the same run")
            .body("StartRun", false)
            .resp(ok("202", "Accepted; the run starts in the background", "RunCreated"))
            .resp(problem("404", "Unknown workflow (`workflow_not_found`)"))
            .resp(problem("503", "The store is unavailable (`store_unavailable`) or the server is shutting down")),
        Route::Runs => Op::new("listRuns", "runs", "List runs, newest first")
            .query("workflow_id", "Only runs of this workflow", schema("Id"))
            .query("status", "Only runs with this status", schema("RunStatus"))
            .paging()
            .resp(ok("200", "A page of runs", "RunList")),
        Route::Run => Op::new("getRun", "runs", "A run with every node's state and its progress")
            .resp(ok("200", "The run", "Run"))
            .resp(problem("404", "Unknown run (`run_not_found`)")),
        Route::RunControl(action) => {
            let (id, summary) = match action {
                RunAction::Cancel => ("cancelRun", "Cancel a run"),
                RunAction::Pause => ("pauseRun", "Pause a run (running nodes finish, no new ones start)"),
                RunAction::Resume => ("resumeRun", "Resume a paused run"),
                RunAction::Retry => ("retryRun", "Retry a failed or cancelled run from its failed nodes"),
            };
            let op = Op::new(id, "runs", summary);
            let op = if action == RunAction::Retry {
                op.resp(ok("202", "Accepted; the run restarts", "RunStatusResult"))
            } else {
                op.resp(ok("200", "The run's status now", "RunStatusResult"))
            };
            op.resp(problem("404", "Unknown run (`run_not_found`)"))
                .resp(problem("409", "Impossible in the run's status (`invalid_transition`), or held by another replica"))
        }
        Route::Review(decision) => {
            let (id, summary, body) = match decision {
                Decision::Approve => ("approveNode", "Approve a node waiting for review", "ApproveBody"),
                Decision::Reject => ("rejectNode", "Reject a node waiting for review", "RejectBody"),
            };
            Op::new(id, "runs", summary)
                .body(body, false)
                .resp(ok("200", "Decided", "ReviewResult"))
                .resp(problem("404", "Unknown run or node (`run_not_found`, `node_not_found`)"))
                .resp(problem("409", "The node does not wait for review (`invalid_transition`)"))
        }
        Route::RunEvents => Op::new("getRunEvents", "events", "A run's events: a page, or a live SSE stream")
            .describe("With `Accept: text/event-stream`, a Server-Sent Events stream (`id: <seq>`, `data: <event JSON>`), resumable with `after` or `Last-Event-ID`, gap-free and without duplicates, ending after the run's terminal event.")
            .query("after", "Only events with `seq` greater than this", after.clone())
            .query("limit", "Page size (JSON pages only)", json!({"type": "integer", "minimum": 1}))
            .header("Last-Event-ID", "SSE resume point (wins over `after`)")
            .resp(Resp {
                status: "200",
                description: "A page of events, or an SSE stream",
                content: vec![
                    ("application/json", schema("EventPage")),
                    ("text/event-stream", json!({"type": "string"})),
                ],
                headers: Vec::new(),
            })
            .resp(Resp {
                status: "204",
                description: "SSE only: the run has ended and `after` (or `Last-Event-ID`) is at or past its last event, so nothing more will come (this also stops an `EventSource` from reconnecting)",
                content: Vec::new(),
                headers: Vec::new(),
            })
            .resp(problem("404", "Unknown run (`run_not_found`)")),
        Route::RunSocket => websocket(
            Op::new("runWebSocket", "events", "WebSocket of one run's events")
                .query("after", "Resume after this `seq` (default 0: the whole log)", after),
            "Switching protocols; messages are `Event`s from `after + 1` to the run's terminal event, then a 1000 close",
        ),
        Route::WorkflowSocket => websocket(
            Op::new("workflowWebSocket", "events", "WebSocket of the events of every run of a workflow")
                .query("after", "For runs active when the socket opens: replay their events after this `seq` (default: only new events)", after),
            "Switching protocols; messages are `Event`s of the workflow's runs as they happen",
        ),
        Route::OpenApi => Op::new("getOpenApi", "operations", "This document")
            .resp(ok("200", "The OpenAPI 3.1 document", "OpenApiDocument")),
        Route::CompatWorkflows => Op::new("compatListWorkflows", "compat", "Original clients: list workflows")
            .resp(Resp {
                status: "200",
                description: "At most 100 workflows",
                content: vec![("application/json", json!({"type": "array", "items": schema("CompatWorkflowSummary")}))],
                headers: Vec::new(),
            }),
        Route::CompatWorkflow => Op::new("compatGetWorkflow", "compat", "Original clients: a workflow as React-Flow nodes and edges")
            .resp(ok("200", "The workflow", "CompatWorkflow"))
            .resp(problem("404", "Unknown workflow (`workflow_not_found`)")),
        Route::CompatExecute => Op::new("compatExecute", "compat", "Original clients: start a run")
            .body("CompatExecuteRequest", true)
            .resp(ok("200", "Started", "CompatExecutionStarted"))
            .resp(problem("404", "Unknown workflow (`workflow_not_found`)"))
            .resp(problem("422", "Invalid body (`invalid_body`)")),
        Route::CompatExecution => Op::new("compatGetExecution", "compat", "Original clients: a run with every node")
            .resp(ok("200", "The execution", "CompatExecution"))
            .resp(problem("404", "Unknown execution (`execution_not_found`)")),
        Route::CompatSocket => websocket(
            Op::new("compatWebSocket", "compat", "Original clients: WebSocket of a workflow's events"),
            "Switching protocols; messages are `CompatEvent`s (one per event) and `Pong`s",
        ),
        Route::Probe(kind) => match kind {
            ProbeKind::Overall => Op::new("health", "operations", "Overall health (always 200)")
                .resp(ok("200", "The report", "HealthReport"))
                .resp(problem("404", "Probes are not configured on this server")),
            ProbeKind::Ready => probe("readiness", "Readiness: 503 when the database is unreachable, migrations are missing or the server drains", "ReadinessReport"),
            ProbeKind::Live => probe("liveness", "Liveness: the runtime and the scheduler loop make progress", "LivenessReport"),
            ProbeKind::Startup => probe("startup", "Startup: 503 until migrations ran and the executors are loaded", "StartupReport"),
        },
        Route::Metrics => Op::new("metrics", "operations", "Prometheus metrics (text format 0.0.4), `dag_*` names")
            .resp(Resp {
                status: "200",
                description: "The metrics",
                content: vec![("text/plain", json!({"type": "string"}))],
                headers: Vec::new(),
            })
            .resp(problem("404", "Metrics are not configured on this server")),
        Route::Dashboard => Op::new("dashboard", "dashboard", "The web dashboard's page")
            .describe("Plain HTML; its script calls this API with the token the user enters (kept in the browser's local storage). Served with `ETag` (304 on `If-None-Match`), `Cache-Control: no-cache`, a strict `Content-Security-Policy`, `X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY`.")
            .resp(Resp {
                status: "200",
                description: "The page",
                content: vec![("text/html", json!({"type": "string"}))],
                headers: vec![("ETag", "A hash of the content"), ("Content-Security-Policy", "What the page may load")],
            })
            .resp(Resp {
                status: "304",
                description: "Not modified (`If-None-Match` matched the `ETag`)",
                content: Vec::new(),
                headers: vec![("ETag", "A hash of the content")],
            }),
        Route::DashboardAsset => Op::new("dashboardAsset", "dashboard", "The dashboard's script or style sheet")
            .describe("`app.js` or `app.css`, with the same caching and security headers as the page.")
            .resp(Resp {
                status: "200",
                description: "The file",
                content: vec![
                    ("text/javascript", json!({"type": "string"})),
                    ("text/css", json!({"type": "string"})),
                ],
                headers: vec![("ETag", "A hash of the content")],
            })
            .resp(Resp {
                status: "304",
                description: "Not modified (`If-None-Match` matched the `ETag`)",
                content: Vec::new(),
                headers: vec![("ETag", "A hash of the content")],
            })
            .resp(problem("404", "No such asset (`route_not_found`)")),
    }
}

fn components() -> Value {
    let ts = json!({"type": "string", "format": "date-time"});
    let ts_or_null = json!({"type": ["string", "null"], "format": "date-time"});
    json!({
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "One of the server's API tokens (`MAESTRO_API_TOKENS`)"}
        },
        "schemas": {
            "Id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,255}$"},
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details with a stable `code`",
                "required": ["type", "title", "status", "detail", "code", "errors"],
                "properties": {
                    "type": {"type": "string", "format": "uri"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "code": {"type": "string", "examples": ["validation_failed", "run_not_found", "unauthorized", "too_many_websockets"]},
                    "errors": {"type": "array", "items": schema("ProblemItem")},
                    "request_id": {"type": "string"}
                }
            },
            "ProblemItem": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "examples": ["cycle", "unknown_executor"]},
                    "message": {"type": "string"},
                    "node_id": {"type": "string"},
                    "nodes": {"type": "array", "items": {"type": "string"}},
                    "path": {"type": "string"}
                }
            },
            "WorkflowDefinition": {
                "type": "object",
                "required": ["id", "nodes"],
                "properties": {
                    "id": schema("Id"),
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "nodes": {"type": "array", "items": schema("NodeDefinition"), "minItems": 1},
                    "max_concurrency": {"type": "integer", "minimum": 1},
                    "failure_policy": {"type": "string"},
                    "metadata": {"type": "object"}
                }
            },
            "NodeDefinition": {
                "type": "object",
                "required": ["id"],
                "properties": {
                    "id": schema("Id"),
                    "name": {"type": "string"},
                    "type": {"type": "string"},
                    "executor": {"type": "string", "examples": ["noop", "sleep", "fail", "http", "command", "phase"]},
                    "config": {"type": "object"},
                    "depends_on": {"type": "array", "items": schema("Id")},
                    "trigger_rule": {"type": "string"},
                    "condition": {"type": "string", "description": "A CEL expression over `inputs` and `outputs`"},
                    "retry": {"type": "object"},
                    "timeout_ms": {"type": "integer", "minimum": 0},
                    "metadata": {"type": "object"}
                }
            },
            "WorkflowCreated": {
                "type": "object",
                "required": ["workflow_id", "version", "content_hash", "created_at"],
                "properties": {
                    "workflow_id": schema("Id"),
                    "version": {"type": "integer"},
                    "content_hash": {"type": "string"},
                    "created_at": ts,
                    "created": {"type": "boolean"}
                }
            },
            "WorkflowRecord": {
                "type": "object",
                "required": ["workflow_id", "version", "content_hash", "created_at", "definition"],
                "properties": {
                    "workflow_id": schema("Id"),
                    "version": {"type": "integer"},
                    "content_hash": {"type": "string"},
                    "created_at": ts,
                    "definition": schema("WorkflowDefinition")
                }
            },
            "WorkflowList": {
                "type": "object",
                "required": ["workflows", "limit", "offset"],
                "properties": {
                    "workflows": {"type": "array", "items": {"type": "object"}},
                    "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "next_offset": {"type": ["integer", "null"]}
                }
            },
            "Validation": {
                "type": "object",
                "required": ["valid", "levels"],
                "properties": {
                    "valid": {"type": "boolean"},
                    "workflow_id": schema("Id"),
                    "nodes": {"type": "integer"},
                    "levels": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}
                }
            },
            "Graph": {
                "type": "object",
                "properties": {
                    "nodes": {"type": "array", "items": {"type": "object"}},
                    "edges": {"type": "array", "items": {"type": "object"}}
                }
            },
            "StartRun": {
                "type": "object",
                "properties": {"inputs": {"type": "object"}}
            },
            "RunCreated": {
                "type": "object",
                "required": ["run_id", "workflow_id", "version", "status"],
                "properties": {
                    "run_id": schema("Id"),
                    "workflow_id": schema("Id"),
                    "version": {"type": "integer"},
                    "status": schema("RunStatus"),
                    "created": {"type": "boolean", "description": "false when an `Idempotency-Key` replayed an earlier run"}
                }
            },
            "RunStatus": {"type": "string", "enum": ["pending", "running", "paused", "completed", "failed", "cancelled"]},
            "NodeStatus": {"type": "string", "enum": ["pending", "ready", "running", "waiting_approval", "completed", "failed", "skipped", "cancelled"]},
            "NodeState": {
                "type": "object",
                "required": ["status", "attempts"],
                "properties": {
                    "status": schema("NodeStatus"),
                    "attempts": {"type": "integer"},
                    "started_at": ts_or_null,
                    "finished_at": ts_or_null,
                    "output": {},
                    "error": {"type": ["string", "null"]}
                }
            },
            "Progress": {
                "type": "object",
                "required": ["completed", "total", "percent"],
                "properties": {
                    "completed": {"type": "integer"},
                    "total": {"type": "integer"},
                    "percent": {"type": "number"}
                }
            },
            "Run": {
                "type": "object",
                "required": ["run_id", "workflow_id", "version", "status", "inputs", "nodes", "progress", "created_at"],
                "properties": {
                    "run_id": schema("Id"),
                    "workflow_id": schema("Id"),
                    "version": {"type": "integer"},
                    "status": schema("RunStatus"),
                    "inputs": {"type": "object"},
                    "nodes": {"type": "object", "additionalProperties": schema("NodeState")},
                    "progress": schema("Progress"),
                    "created_at": ts,
                    "started_at": ts_or_null,
                    "finished_at": ts_or_null,
                    "error": {"type": ["string", "null"]}
                }
            },
            "RunList": {
                "type": "object",
                "required": ["runs", "limit", "offset"],
                "properties": {
                    "runs": {"type": "array", "items": {"type": "object"}},
                    "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "next_offset": {"type": ["integer", "null"]}
                }
            },
            "RunStatusResult": {
                "type": "object",
                "required": ["run_id", "status"],
                "properties": {
                    "run_id": schema("Id"),
                    "workflow_id": schema("Id"),
                    "version": {"type": "integer"},
                    "status": schema("RunStatus")
                }
            },
            "ApproveBody": {"type": "object", "properties": {"output": {"type": "object"}}, "additionalProperties": false},
            "RejectBody": {"type": "object", "properties": {"reason": {"type": "string"}}, "additionalProperties": false},
            "ReviewResult": {
                "type": "object",
                "required": ["run_id", "node_id", "status"],
                "properties": {
                    "run_id": schema("Id"),
                    "node_id": schema("Id"),
                    "status": schema("RunStatus"),
                    "node_status": schema("NodeStatus")
                }
            },
            "EventType": {"type": "string", "enum": ["workflow_started", "workflow_paused", "workflow_resumed", "workflow_completed", "workflow_failed", "workflow_cancelled", "node_started", "node_completed", "node_failed", "node_retry", "node_skipped", "node_waiting_approval"]},
            "Event": {
                "type": "object",
                "description": "One event of a run; `seq` counts 1, 2, 3… per run with no gaps",
                "required": ["seq", "type", "workflow_id", "run_id", "node_id", "data", "timestamp"],
                "properties": {
                    "seq": {"type": "integer", "minimum": 1},
                    "type": schema("EventType"),
                    "workflow_id": schema("Id"),
                    "run_id": schema("Id"),
                    "node_id": {"type": ["string", "null"]},
                    "data": {
                        "type": "object",
                        "properties": {
                            "attempt": {"type": "integer"},
                            "max_attempts": {"type": "integer"},
                            "output": {},
                            "error": {"type": "string"},
                            "delay_ms": {"type": "integer"},
                            "reason": {"type": "string"}
                        }
                    },
                    "timestamp": ts
                }
            },
            "EventPage": {
                "type": "object",
                "required": ["events", "next_after"],
                "properties": {
                    "run_id": schema("Id"),
                    "events": {"type": "array", "items": schema("Event")},
                    "next_after": {"type": "integer"}
                }
            },
            "CompatEvent": {
                "type": "object",
                "description": "An event in the original system's WebSocket shape",
                "required": ["type", "timestamp", "workflow_id", "execution_id", "node_id", "data"],
                "properties": {
                    "type": schema("EventType"),
                    "timestamp": ts,
                    "workflow_id": schema("Id"),
                    "execution_id": schema("Id"),
                    "node_id": {"type": ["string", "null"]},
                    "data": {"type": "object"},
                    "seq": {"type": "integer"}
                }
            },
            "Pong": {
                "type": "object",
                "required": ["type", "timestamp"],
                "properties": {"type": {"const": "pong"}, "timestamp": ts}
            },
            "CompatWorkflowSummary": {
                "type": "object",
                "required": ["workflow_id", "name", "type", "nodes", "edges", "created_at"],
                "properties": {
                    "workflow_id": schema("Id"),
                    "name": {"type": "string"},
                    "type": {"type": "string"},
                    "nodes": {"type": "integer"},
                    "edges": {"type": "integer"},
                    "created_at": ts
                }
            },
            "CompatWorkflow": {
                "type": "object",
                "required": ["workflow_id", "name", "type", "nodes", "edges"],
                "properties": {
                    "workflow_id": schema("Id"),
                    "name": {"type": "string"},
                    "type": {"type": "string"},
                    "nodes": {"type": "array", "items": {"type": "object"}},
                    "edges": {"type": "array", "items": {"type": "object"}}
                }
            },
            "CompatExecuteRequest": {
                "type": "object",
                "required": ["requirement"],
                "properties": {
                    "requirement": {"type": "string", "minLength": 1, "maxLength": 10000},
                    "initial_context": {"type": "object"}
                }
            },
            "CompatExecutionStarted": {
                "type": "object",
                "required": ["execution_id", "workflow_id", "status", "started_at"],
                "properties": {
                    "execution_id": schema("Id"),
                    "workflow_id": schema("Id"),
                    "status": {"type": "string"},
                    "started_at": ts
                }
            },
            "CompatExecution": {
                "type": "object",
                "required": ["execution_id", "workflow_id", "status", "completed_nodes", "total_nodes", "progress_percent", "node_states"],
                "properties": {
                    "execution_id": schema("Id"),
                    "workflow_id": schema("Id"),
                    "status": {"type": "string"},
                    "completed_nodes": {"type": "integer"},
                    "total_nodes": {"type": "integer"},
                    "progress_percent": {"type": "number"},
                    "node_states": {"type": "array", "items": {"type": "object"}},
                    "started_at": ts_or_null,
                    "completed_at": ts_or_null
                }
            },
            "HealthReport": {
                "type": "object",
                "required": ["status", "timestamp", "version", "database", "cache", "tasks"],
                "properties": {
                    "status": {"type": "string", "enum": ["healthy", "degraded"]},
                    "timestamp": {"type": "string"},
                    "version": {"type": "string"},
                    "database": {"type": "object"},
                    "cache": {"type": "object"},
                    "tasks": {"type": "object"}
                }
            },
            "ReadinessReport": {"type": "object", "properties": {"ready": {"type": "boolean"}, "timestamp": {"type": "string"}, "checks": {"type": "object"}, "errors": {"type": "array", "items": {"type": "string"}}, "message": {"type": "string"}}},
            "LivenessReport": {"type": "object", "properties": {"alive": {"type": "boolean"}, "timestamp": {"type": "string"}, "uptime_checks": {"type": "object"}}},
            "StartupReport": {"type": "object", "properties": {"started": {"type": "boolean"}, "timestamp": {"type": "string"}, "initialization": {"type": "object"}, "errors": {"type": "array", "items": {"type": "string"}}}},
            "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"]}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_method_is_documented() {
        let doc = document();
        for (pattern, route) in Route::ALL {
            for m in route.methods().iter().filter(|m| **m != Method::HEAD) {
                let op = &doc["paths"][*pattern][m.as_str().to_ascii_lowercase()];
                assert!(op.is_object(), "{m} {pattern} is missing from the document");
            }
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "dangling reference to {name}"
            );
        }
    }
}
