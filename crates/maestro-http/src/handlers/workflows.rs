//! `/api/v1/workflows…`: create or version, validate, list, read, delete, and the graph.

use http::{HeaderValue, Response, StatusCode, header};
use maestro_dag::{DefinitionRecord, Workflow, WorkflowDefinition};
use serde_json::{Value, json};

use super::{id_param, page, query_u64, workflow_not_found};
use crate::body::{Body, check_json_media_type, empty, json, parse_json, text};
use crate::error::ApiError;
use crate::service::Req;
use crate::state::ApiContext;

/// Parses a definition from a request body: 415 for a non-JSON media type, 400 for broken
/// JSON (with line and column) or excessive nesting, 422 for a wrong shape (with the field).
pub(super) fn definition_from_body(
    ctx: &ApiContext,
    req: &Req,
) -> Result<WorkflowDefinition, ApiError> {
    check_json_media_type(&req.headers, &req.body)?;
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the request body is empty; a workflow definition is expected",
        ));
    }
    let value = parse_json(&req.body, ctx.config.max_json_depth)?;
    if !value.is_object() {
        return Err(ApiError::unprocessable(
            "invalid_definition",
            "a workflow definition must be a JSON object",
        ));
    }
    let text = std::str::from_utf8(&req.body)
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8"))?;
    Ok(WorkflowDefinition::from_json_str(text)?)
}

fn compile(ctx: &ApiContext, def: &WorkflowDefinition) -> Result<Workflow, ApiError> {
    Ok(Workflow::compile_ref(def, Some(ctx.engine.executors()))?)
}

fn levels_json(wf: &Workflow) -> Value {
    json!(wf.levels())
}

/// `POST /api/v1/workflows`: 201 for a new definition or version, 200 when unchanged.
pub(super) async fn create(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let def = definition_from_body(ctx, req)?;
    let compiled = compile(ctx, &def)?;
    let put = ctx.store.put_definition(&def).await?;
    let record = put.record;
    if record.content_hash == compiled.content_hash() {
        ctx.cache.insert(
            record.version,
            std::sync::Arc::new(compiled.with_version(record.version)),
        );
    }
    tracing::info!(
        workflow_id = %record.workflow_id,
        version = record.version,
        created = put.created,
        "workflow stored"
    );
    let status = if put.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut res = json(
        status,
        &json!({
            "workflow_id": record.workflow_id,
            "version": record.version,
            "content_hash": record.content_hash,
            "created_at": record.created_at,
            "created": put.created,
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/workflows/{}", record.workflow_id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// `POST /api/v1/workflows/validate`: 200 `{valid: true, levels}` or 422 with every problem.
pub(super) async fn validate(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let def = definition_from_body(ctx, req)?;
    let wf = compile(ctx, &def)?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "valid": true,
            "workflow_id": def.id,
            "nodes": wf.len(),
            "levels": levels_json(&wf),
            "content_hash": wf.content_hash(),
        }),
    ))
}

fn summary(r: &DefinitionRecord) -> Value {
    json!({
        "workflow_id": r.workflow_id,
        "name": r.definition.display_name(),
        "description": r.definition.description,
        "version": r.version,
        "content_hash": r.content_hash,
        "nodes": r.definition.nodes.len(),
        "created_at": r.created_at,
    })
}

/// `GET /api/v1/workflows?limit=&offset=`: the latest version of each definition, by id.
pub(super) async fn list(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let (limit, offset) = page(ctx, req)?;
    // One more than asked tells whether another page exists.
    let mut records = ctx.store.list_definitions(offset, limit + 1).await?;
    let more = records.len() > limit;
    records.truncate(limit);
    Ok(json(
        StatusCode::OK,
        &json!({
            "workflows": records.iter().map(summary).collect::<Vec<_>>(),
            "limit": limit,
            "offset": offset,
            "next_offset": more.then_some(offset + limit),
        }),
    ))
}

/// The stored definition named by the `{id}` path parameter and an optional `?version=`.
pub(super) async fn record(ctx: &ApiContext, req: &Req) -> Result<DefinitionRecord, ApiError> {
    let id = id_param(req, "id", "workflow id")?;
    let version = match query_u64(req, "version")? {
        None => None,
        Some(v) => Some(u32::try_from(v).ok().filter(|v| *v >= 1).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "`version` must be between 1 and 4294967295",
            )
        })?),
    };
    match ctx.store.get_definition(id, version).await? {
        Some(r) => Ok(r),
        None => Err(match version {
            Some(v) => ApiError::not_found(
                "workflow_not_found",
                format!("workflow {id} has no version {v}"),
            ),
            None => workflow_not_found(id),
        }),
    }
}

/// `GET /api/v1/workflows/{id}[?version=N]`.
pub(super) async fn get(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let r = record(ctx, req).await?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "workflow_id": r.workflow_id,
            "version": r.version,
            "content_hash": r.content_hash,
            "created_at": r.created_at,
            "definition": &*r.definition,
        }),
    ))
}

/// `DELETE /api/v1/workflows/{id}`: 204, or 404. Runs keep their pinned copy.
pub(super) async fn delete(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let id = id_param(req, "id", "workflow id")?;
    if !ctx.store.delete_definition(id).await? {
        return Err(workflow_not_found(id));
    }
    tracing::info!(workflow_id = %id, "workflow deleted");
    let mut res = Response::new(empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    Ok(res)
}

/// `GET /api/v1/workflows/{id}/graph?format=json|dot|mermaid|svg|layout[&version=N]`.
pub(super) async fn graph(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let format = req.query("format").unwrap_or("json");
    if !matches!(format, "json" | "dot" | "mermaid" | "svg" | "layout") {
        return Err(ApiError::bad_request(
            "invalid_query",
            "query parameter `format` must be one of json, dot, mermaid, svg, layout",
        ));
    }
    let r = record(ctx, req).await?;
    // Drawing needs the structure only: a stored definition whose executors this server lacks
    // (the SDLC templates without a team engine) still has a picture.
    let wf = match ctx.compiled(&r) {
        Ok(wf) => wf,
        Err(_) => std::sync::Arc::new(Workflow::compile_ref(&r.definition, None)?),
    };
    let def = &r.definition;
    Ok(match format {
        "dot" => text(
            StatusCode::OK,
            "text/vnd.graphviz; charset=utf-8",
            super::render_dot(def, &wf),
        ),
        "mermaid" => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            super::render_mermaid(def, &wf),
        ),
        // Laid out once per content (see `Drawings`).
        "svg" => {
            let (d, w) = (r.definition.clone(), wf.clone());
            let svg = ctx
                .drawings
                .svg(&r.content_hash, move || {
                    super::graph::render_svg(&d, &w).into()
                })
                .await?;
            text(StatusCode::OK, "image/svg+xml", svg.to_string())
        }
        "layout" => {
            let (d, w) = (r.definition.clone(), wf.clone());
            let layout = ctx
                .drawings
                .layout(&r.content_hash, move || {
                    std::sync::Arc::new(super::graph::layout_json(&d, &w))
                })
                .await?;
            let mut layout = (*layout).clone();
            layout["workflow_id"] = json!(r.workflow_id);
            layout["version"] = json!(r.version);
            json(StatusCode::OK, &layout)
        }
        _ => json(
            StatusCode::OK,
            &json!({
                "workflow_id": r.workflow_id,
                "version": r.version,
                "nodes": def.nodes.iter().map(|n| json!({
                    "id": n.id,
                    "name": n.display_name(),
                    "type": n.node_type.as_str(),
                    "executor": n.executor_key(),
                    "depends_on": n.depends_on,
                })).collect::<Vec<_>>(),
                "edges": wf.edges().iter().map(|(s, t)| json!({"source": s, "target": t}))
                    .collect::<Vec<_>>(),
                "levels": levels_json(&wf),
            }),
        ),
    })
}
