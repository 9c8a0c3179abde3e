//! The original system's routes (`/api/workflows…`, `/api/executions/{id}`) with their shapes,
//! made correct: ids are the real ids, unknown workflows are 404 (never "create on the fly"),
//! and an execution lists every node of its run.

use std::collections::HashMap;

use http::{Response, StatusCode};
use maestro_dag::{DefinitionRecord, RunStatus, artifacts_of};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::runs::{Progress, all_nodes, idempotency_key, rfc3339, snapshot, start_run};
use super::{id_param, workflow_not_found};
use crate::body::{Body, check_json_media_type, decode_body, json};
use crate::error::{ApiError, ProblemItem};
use crate::service::Req;
use crate::state::ApiContext;

/// Longest accepted `requirement`, in characters (the original's limit).
const MAX_REQUIREMENT_CHARS: usize = 10_000;

fn kind(r: &DefinitionRecord) -> String {
    r.definition
        .metadata
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("custom")
        .to_string()
}

fn edge_count(r: &DefinitionRecord) -> usize {
    r.definition
        .nodes
        .iter()
        .map(|n| {
            let mut deps: Vec<&String> = n.depends_on.iter().collect();
            deps.sort();
            deps.dedup();
            deps.len()
        })
        .sum()
}

/// `GET /api/workflows`: `[{workflow_id, name, type, nodes, edges, created_at}]`, at most 100.
pub(super) async fn list(ctx: &ApiContext, _req: &Req) -> Result<Response<Body>, ApiError> {
    let records = ctx.store.list_definitions(0, 100).await?;
    let out: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "workflow_id": r.workflow_id,
                "name": r.definition.display_name(),
                "type": kind(r),
                "nodes": r.definition.nodes.len(),
                "edges": edge_count(r),
                "created_at": r.created_at,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}

fn title_case(s: &str) -> String {
    s.split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `GET /api/workflows/{id}`: React-Flow nodes (laid out by level) and edges.
pub(super) async fn get(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let id = id_param(req, "id", "workflow id")?;
    let r = ctx
        .store
        .get_definition(id, None)
        .await?
        .ok_or_else(|| workflow_not_found(id))?;
    let wf = ctx.compiled(&r)?;
    let mut position: HashMap<&str, (usize, usize)> = HashMap::new();
    for (level, ids) in wf.levels().iter().enumerate() {
        for (row, node) in ids.iter().enumerate() {
            position.insert(node, (level, row));
        }
    }
    let nodes: Vec<Value> = r
        .definition
        .nodes
        .iter()
        .map(|n| {
            let (level, row) = position.get(n.id.as_str()).copied().unwrap_or((0, 0));
            let phase = n
                .config
                .get("phase")
                .and_then(Value::as_str)
                .unwrap_or(n.display_name());
            json!({
                "id": n.id,
                "type": "phase",
                "position": {"x": level * 250, "y": row * 120},
                "data": {
                    "phase": phase,
                    "label": title_case(n.display_name()),
                    "status": "pending",
                    "node_type": n.node_type.as_str(),
                },
            })
        })
        .collect();
    let edges: Vec<Value> = wf
        .edges()
        .iter()
        .map(|(s, t)| {
            json!({"id": format!("{s}-{t}"), "source": s, "target": t, "type": "smoothstep"})
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({
            "workflow_id": r.workflow_id,
            "name": r.definition.display_name(),
            "type": kind(&r),
            "version": r.version,
            "nodes": nodes,
            "edges": edges,
        }),
    ))
}

#[derive(Deserialize)]
struct ExecuteBody {
    requirement: String,
    #[serde(default)]
    initial_context: Option<Map<String, Value>>,
}

/// `POST /api/workflows/{id}/execute` `{requirement, initial_context?}` →
/// `{execution_id, workflow_id, status, started_at}`.
pub(super) async fn execute(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let id = id_param(req, "id", "workflow id")?;
    check_json_media_type(&req.headers, &req.body)?;
    let body: ExecuteBody = decode_body(&req.body, ctx.config.max_json_depth)?;
    let requirement = body.requirement.trim();
    let chars = requirement.chars().count();
    if chars == 0 || chars > MAX_REQUIREMENT_CHARS {
        let message = if chars == 0 {
            "`requirement` must not be empty".to_string()
        } else {
            format!("`requirement` must be at most {MAX_REQUIREMENT_CHARS} characters, got {chars}")
        };
        return Err(
            ApiError::unprocessable("invalid_body", message.clone()).with_item(ProblemItem {
                code: "invalid_body".into(),
                message,
                node_id: None,
                nodes: None,
                path: Some("requirement".into()),
            }),
        );
    }
    let mut inputs = body.initial_context.unwrap_or_default();
    inputs.insert("requirement".into(), Value::String(requirement.to_string()));
    let started = start_run(ctx, id, Value::Object(inputs), idempotency_key(req)?).await?;
    let run = &started.run;
    let status = match run.status {
        RunStatus::Pending | RunStatus::Running => "running",
        other => other.as_str(),
    };
    Ok(json(
        StatusCode::OK,
        &json!({
            "execution_id": run.run_id,
            "workflow_id": run.workflow_id,
            "version": run.version,
            "status": status,
            "started_at": rfc3339(&run.started_at.or(Some(run.created_at))),
        }),
    ))
}

/// `GET /api/executions/{id}`: the run in the original shape; `node_states` lists every node.
pub(super) async fn execution(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let id = id_param(req, "id", "execution id")?;
    let snap = snapshot(ctx, id).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            ApiError::not_found("execution_not_found", format!("execution {id} not found"))
        } else {
            e
        }
    })?;
    let (nodes, _) = all_nodes(ctx, &snap).await?;
    let p = Progress::of(&nodes);
    let node_states: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let duration = match (n.started_at, n.finished_at) {
                (Some(s), Some(f)) => json!((f - s).num_microseconds().unwrap_or(0) as f64 / 1e6),
                _ => Value::Null,
            };
            json!({
                "node_id": n.node_id,
                "status": n.status,
                "attempt_count": n.attempt,
                "started_at": rfc3339(&n.started_at),
                "completed_at": rfc3339(&n.finished_at),
                "duration": duration,
                "outputs": n.output.as_deref().cloned().unwrap_or_else(|| json!({})),
                "artifacts": n.output.as_deref().map(artifacts_of).unwrap_or_default(),
                "error": n.error.as_deref(),
            })
        })
        .collect();
    let r = &snap.run;
    Ok(json(
        StatusCode::OK,
        &json!({
            "execution_id": r.run_id,
            "workflow_id": r.workflow_id,
            "status": r.status,
            "completed_nodes": p.completed,
            "total_nodes": p.total,
            "progress_percent": p.percent(),
            "node_states": node_states,
            "started_at": rfc3339(&r.started_at),
            "completed_at": rfc3339(&r.finished_at),
            "error": r.error,
        }),
    ))
}
