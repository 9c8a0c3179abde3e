//! `/api/v1/runs…` and `POST /api/v1/workflows/{id}/runs`: start, list, read, control, human
//! review and the event history.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::{HeaderValue, Response, StatusCode};
use maestro_dag::store::RunFilter;
use maestro_dag::{
    EngineError, NodeRecord, NodeStatus, RunRecord, RunSnapshot, RunStatus, StartOptions, Workflow,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{id_param, page, query_u64, run_not_found, workflow_not_found};
use crate::body::{Body, check_json_media_type, decode_body, json};
use crate::error::ApiError;
use crate::router::{Decision, RunAction};
use crate::service::Req;
use crate::state::ApiContext;

/// The header that makes starting a run idempotent.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    #[serde(default)]
    inputs: Option<Map<String, Value>>,
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters, or 400.
pub(super) fn idempotency_key(req: &Req) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s)
            if !s.trim().is_empty()
                && s.len() <= 255
                && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            Ok(Some(s.trim().to_string()))
        }
        _ => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "`Idempotency-Key` must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// A run as started: the stored record and whether it is new.
pub(super) struct Started {
    pub(super) run: RunRecord,
    pub(super) created: bool,
}

/// Starts (or, for a known idempotency key, finds) a run of the latest version of a workflow.
pub(super) async fn start_run(
    ctx: &ApiContext,
    workflow_id: &str,
    inputs: Value,
    key: Option<String>,
) -> Result<Started, ApiError> {
    let record = ctx
        .store
        .get_definition(workflow_id, None)
        .await?
        .ok_or_else(|| workflow_not_found(workflow_id))?;
    let wf = ctx.compiled(&record)?;
    let options = StartOptions {
        idempotency_key: key,
        ..StartOptions::default()
    };
    let (run, created) = match &ctx.worker {
        // Under a lease: this replica claims the new run and drives it (or another replica
        // that claimed it first does).
        Some(worker) => {
            let started = worker.start_run(wf, inputs, options).await?;
            (started.run, started.created)
        }
        None => {
            let handle = ctx.engine.start(wf, inputs, options).await?;
            let snapshot =
                ctx.store.load_run(handle.run_id()).await?.ok_or_else(|| {
                    ApiError::internal(format!("run {} vanished", handle.run_id()))
                })?;
            (snapshot.run, handle.created())
        }
    };
    if created {
        tracing::info!(run_id = %run.run_id, workflow_id, version = record.version, "run started");
    }
    Ok(Started { run, created })
}

/// `POST /api/v1/workflows/{id}/runs` `{inputs}` → 202 `{run_id, workflow_id, version, status}`.
pub(super) async fn start(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let id = id_param(req, "id", "workflow id")?;
    check_json_media_type(&req.headers, &req.body)?;
    let body: StartBody = decode_body(&req.body, ctx.config.max_json_depth)?;
    let key = idempotency_key(req)?;
    let inputs = Value::Object(body.inputs.unwrap_or_default());
    let started = start_run(ctx, id, inputs, key).await?;
    let run = &started.run;
    let mut res = json(
        StatusCode::ACCEPTED,
        &json!({
            "run_id": run.run_id,
            "workflow_id": run.workflow_id,
            "version": run.version,
            "status": run.status,
            "created": started.created,
            "created_at": run.created_at,
        }),
    );
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/runs/{}", run.run_id)) {
        h.insert(http::header::LOCATION, v);
    }
    if !started.created {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

fn run_summary(r: &RunRecord) -> Value {
    json!({
        "run_id": r.run_id,
        "workflow_id": r.workflow_id,
        "version": r.version,
        "status": r.status,
        "error": r.error,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
    })
}

/// `GET /api/v1/runs[?workflow_id=&status=&limit=&offset=]`, newest first.
pub(super) async fn list(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let (limit, offset) = page(ctx, req)?;
    let workflow_id = match req.query("workflow_id") {
        Some(w) if !maestro_dag::validate::is_valid_id(w) => {
            return Err(ApiError::invalid_id("workflow id", w));
        }
        w => w.map(str::to_string),
    };
    let status = match req.query("status") {
        None => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "query parameter `status` must be one of {}",
                    RunStatus::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?),
    };
    let filter = RunFilter {
        workflow_id,
        status,
        offset,
        limit: limit + 1,
    };
    let mut runs = ctx.store.list_runs(&filter).await?;
    let more = runs.len() > limit;
    runs.truncate(limit);
    Ok(json(
        StatusCode::OK,
        &json!({
            "runs": runs.iter().map(run_summary).collect::<Vec<_>>(),
            "limit": limit,
            "offset": offset,
            "next_offset": more.then_some(offset + limit),
        }),
    ))
}

/// The stored state of a run, or 404.
pub(super) async fn snapshot(ctx: &ApiContext, run_id: &str) -> Result<RunSnapshot, ApiError> {
    ctx.store
        .load_run(run_id)
        .await?
        .ok_or_else(|| run_not_found(run_id))
}

/// Every node of the run's pinned definition, in definition order, with its stored state (or
/// `pending` when it never left that state). Falls back to the stored rows when the pinned
/// version is no longer available.
pub(super) async fn all_nodes(
    ctx: &ApiContext,
    snap: &RunSnapshot,
) -> Result<(Vec<NodeRecord>, Option<Arc<Workflow>>), ApiError> {
    let run = &snap.run;
    let wf = ctx
        .pinned(&run.workflow_id, run.version, &run.content_hash)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(run_id = %run.run_id, error = %e, "pinned workflow unavailable");
            None
        });
    let Some(wf) = wf else {
        return Ok((snap.nodes.clone(), None));
    };
    let mut stored: std::collections::HashMap<&str, &NodeRecord> =
        snap.nodes.iter().map(|n| (&*n.node_id, n)).collect();
    let mut out: Vec<NodeRecord> = wf
        .node_ids()
        .map(|id| {
            stored
                .remove(id)
                .cloned()
                .unwrap_or_else(|| NodeRecord::pending(Arc::from(id)))
        })
        .collect();
    out.extend(stored.into_values().cloned());
    Ok((out, Some(wf)))
}

/// Counts for `progress`.
pub(super) struct Progress {
    pub(super) completed: usize,
    pub(super) finished: usize,
    pub(super) total: usize,
}

impl Progress {
    pub(super) fn of(nodes: &[NodeRecord]) -> Self {
        Self {
            completed: nodes
                .iter()
                .filter(|n| n.status == NodeStatus::Completed)
                .count(),
            finished: nodes.iter().filter(|n| n.status.is_terminal()).count(),
            total: nodes.len(),
        }
    }

    /// Finished nodes (completed, failed, skipped or cancelled) in percent, one decimal.
    pub(super) fn percent(&self) -> f64 {
        if self.total == 0 {
            return 100.0;
        }
        (self.finished as f64 * 1000.0 / self.total as f64).round() / 10.0
    }
}

fn node_json(n: &NodeRecord) -> Value {
    json!({
        "status": n.status,
        "attempts": n.attempt,
        "started_at": n.started_at,
        "finished_at": n.finished_at,
        "output": n.output.as_deref(),
        "error": n.error.as_deref(),
        "reason": n.reason.as_deref(),
        "retry_at": n.retry_at,
    })
}

/// `GET /api/v1/runs/{run_id}`: the run with every node of its pinned definition.
pub(super) async fn get(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let run_id = id_param(req, "run_id", "run id")?;
    let snap = snapshot(ctx, run_id).await?;
    let (nodes, _) = all_nodes(ctx, &snap).await?;
    let p = Progress::of(&nodes);
    let r = &snap.run;
    let node_map: Map<String, Value> = nodes
        .iter()
        .map(|n| (n.node_id.to_string(), node_json(n)))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({
            "run_id": r.run_id,
            "workflow_id": r.workflow_id,
            "version": r.version,
            "content_hash": r.content_hash,
            "status": r.status,
            "error": r.error,
            "inputs": &*r.inputs,
            "nodes": node_map,
            "progress": {
                "completed": p.completed,
                "finished": p.finished,
                "total": p.total,
                "percent": p.percent(),
            },
            "last_seq": snap.last_seq,
            "created_at": r.created_at,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
        }),
    ))
}

/// Maps "not active in this engine" to 404 (no such run) or 409 (the run exists, but cannot
/// make that transition here).
async fn inactive(ctx: &ApiContext, run_id: &str, what: &str) -> ApiError {
    match ctx.store.load_run(run_id).await {
        Ok(None) => run_not_found(run_id),
        Ok(Some(s)) if s.run.status.is_terminal() => ApiError::conflict(format!(
            "cannot {what} run {run_id}: it is {}",
            s.run.status
        )),
        Ok(Some(s)) => ApiError::conflict(format!(
            "cannot {what} run {run_id}: it is {} and not driven by this server",
            s.run.status
        )),
        Err(e) => e.into(),
    }
}

/// A command for the driver of a run.
enum Command {
    Cancel,
    Pause,
    Resume,
    Approve(String, Option<Value>),
    Reject(String, Option<String>),
}

impl Command {
    fn what(&self) -> &'static str {
        match self {
            Command::Cancel => "cancel",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Approve(..) => "approve a node of",
            Command::Reject(..) => "reject a node of",
        }
    }

    async fn send(&self, ctx: &ApiContext, run_id: &str) -> Result<(), EngineError> {
        let e = &ctx.engine;
        match self {
            Command::Cancel => e.cancel(run_id).await,
            Command::Pause => e.pause(run_id).await,
            Command::Resume => e.resume(run_id).await,
            Command::Approve(node, output) => e.approve(run_id, node, output.clone()).await,
            Command::Reject(node, reason) => e.reject(run_id, node, reason.clone()).await,
        }
    }
}

/// Sends a command to the run's driver. A run not driven here is adopted first when a worker is
/// configured and the run's lease is free (its replica died or released it); a run another
/// replica holds, or one that ended, is 409.
async fn apply(ctx: &ApiContext, run_id: &str, cmd: Command) -> Result<(), ApiError> {
    match cmd.send(ctx, run_id).await {
        Ok(()) => return Ok(()),
        Err(EngineError::RunNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(worker) = &ctx.worker
        && let Some(snap) = ctx.store.load_run(run_id).await?
        && !snap.run.status.is_terminal()
    {
        let r = &snap.run;
        if let Some(wf) = ctx
            .pinned(&r.workflow_id, r.version, &r.content_hash)
            .await?
            && worker.drive(wf, run_id).await?.is_some()
        {
            tracing::info!(run_id, "adopted a run to control it");
            match cmd.send(ctx, run_id).await {
                Ok(()) => return Ok(()),
                Err(EngineError::RunNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(inactive(ctx, run_id, cmd.what()).await)
}

async fn status_response(
    ctx: &ApiContext,
    run_id: &str,
    status: StatusCode,
) -> Result<Response<Body>, ApiError> {
    let snap = snapshot(ctx, run_id).await?;
    Ok(json(
        status,
        &json!({
            "run_id": snap.run.run_id,
            "workflow_id": snap.run.workflow_id,
            "version": snap.run.version,
            "status": snap.run.status,
        }),
    ))
}

/// `POST /api/v1/runs/{run_id}/cancel|pause|resume|retry`: 409 when impossible.
pub(super) async fn control(
    ctx: &ApiContext,
    req: &Req,
    action: RunAction,
) -> Result<Response<Body>, ApiError> {
    let run_id = id_param(req, "run_id", "run id")?;
    match action {
        RunAction::Cancel => apply(ctx, run_id, Command::Cancel).await?,
        RunAction::Pause => apply(ctx, run_id, Command::Pause).await?,
        RunAction::Resume => apply(ctx, run_id, Command::Resume).await?,
        RunAction::Retry => {
            let snap = snapshot(ctx, run_id).await?;
            let r = &snap.run;
            let Some(wf) = ctx
                .pinned(&r.workflow_id, r.version, &r.content_hash)
                .await?
            else {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "definition_unavailable",
                    format!(
                        "run {run_id} is pinned to {} version {}, which is no longer stored",
                        r.workflow_id, r.version
                    ),
                ));
            };
            match &ctx.worker {
                Some(worker) => worker.retry(wf, run_id).await?,
                None => ctx.engine.retry(wf, run_id, 0).await?,
            };
            tracing::info!(run_id, "run retried");
            // The relaunched driver records `running` on its first turn, which may not have
            // happened yet: answer what the run now is rather than the stale terminal status.
            return Ok(json(
                StatusCode::ACCEPTED,
                &json!({
                    "run_id": r.run_id,
                    "workflow_id": r.workflow_id,
                    "version": r.version,
                    "status": RunStatus::Running,
                }),
            ));
        }
    }
    tracing::info!(run_id, action = ?action, "run control");
    status_response(ctx, run_id, StatusCode::OK).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default)]
    output: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/runs/{run_id}/nodes/{node_id}/approve|reject` with an optional body
/// `{output}` / `{reason}`.
pub(super) async fn review(
    ctx: &ApiContext,
    req: &Req,
    decision: Decision,
) -> Result<Response<Body>, ApiError> {
    let run_id = id_param(req, "run_id", "run id")?;
    let node_id = id_param(req, "node_id", "node id")?;
    check_json_media_type(&req.headers, &req.body)?;
    let depth = ctx.config.max_json_depth;
    let cmd = match decision {
        Decision::Approve => {
            let body: ApproveBody = decode_body(&req.body, depth)?;
            Command::Approve(node_id.to_string(), body.output.map(Value::Object))
        }
        Decision::Reject => {
            let body: RejectBody = decode_body(&req.body, depth)?;
            Command::Reject(node_id.to_string(), body.reason)
        }
    };
    apply(ctx, run_id, cmd).await?;
    tracing::info!(run_id, node_id, decision = ?decision, "node reviewed");
    let snap = snapshot(ctx, run_id).await?;
    let node = snap.nodes.iter().find(|n| &*n.node_id == node_id);
    Ok(json(
        StatusCode::OK,
        &json!({
            "run_id": snap.run.run_id,
            "node_id": node_id,
            "status": snap.run.status,
            "node_status": node.map(|n| n.status),
        }),
    ))
}

/// `GET /api/v1/runs/{run_id}/events?after=SEQ&limit=N` → `{events, next_after}`.
pub(super) async fn events(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let run_id = id_param(req, "run_id", "run id")?;
    let after = query_u64(req, "after")?.unwrap_or(0);
    if super::sse::wants_stream(&req.headers) {
        let after = super::sse::resume_point(&req.headers, after)?;
        let snap = snapshot(ctx, run_id).await?;
        if crate::follow::finished(snap.run.status, snap.last_seq, after) {
            // Nothing more will come: 204 also tells an `EventSource` to stop reconnecting.
            let mut res = Response::new(crate::body::empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            return Ok(res);
        }
        return Ok(super::sse::stream(ctx, run_id, after));
    }
    let limit = query_u64(req, "limit")?.unwrap_or(ctx.config.default_page_size as u64 * 2);
    let max = 1000u64.max(ctx.config.max_page_size as u64);
    if limit == 0 || limit > max {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("query parameter `limit` must be between 1 and {max}"),
        ));
    }
    let events = match ctx.store.events(run_id, after, limit as usize).await {
        Ok(e) => e,
        Err(maestro_dag::StoreError::NotFound(_)) => return Err(run_not_found(run_id)),
        Err(e) => return Err(e.into()),
    };
    if events.is_empty() && ctx.store.load_run(run_id).await?.is_none() {
        return Err(run_not_found(run_id));
    }
    let next_after = events.last().map_or(after, |e| e.seq);
    Ok(json(
        StatusCode::OK,
        &json!({ "run_id": run_id, "events": events, "next_after": next_after }),
    ))
}

/// RFC 3339 with microseconds, as events use.
pub(super) fn rfc3339(t: &Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    })
}
