//! Route handlers, one module per resource, and the helpers they share (ids, queries, paging).

mod compat;
mod dashboard;
mod graph;
mod meta;
mod probes;
mod runs;
mod sse;
mod workflows;
mod ws;

use http::Response;
use maestro_dag::validate::is_valid_id;

use crate::body::Body;
use crate::error::ApiError;
use crate::router::Route;
use crate::service::Req;
use crate::state::ApiContext;

pub(crate) use graph::{render_dot, render_mermaid};

/// Runs the handler of `route`.
pub(crate) async fn dispatch(
    ctx: &ApiContext,
    route: Route,
    req: &Req,
) -> Result<Response<Body>, ApiError> {
    match route {
        Route::Workflows if req.method == http::Method::POST => workflows::create(ctx, req).await,
        Route::Workflows => workflows::list(ctx, req).await,
        Route::ValidateWorkflow => workflows::validate(ctx, req).await,
        Route::Workflow if req.method == http::Method::DELETE => workflows::delete(ctx, req).await,
        Route::Workflow => workflows::get(ctx, req).await,
        Route::WorkflowGraph => workflows::graph(ctx, req).await,
        Route::StartRun => runs::start(ctx, req).await,
        Route::Runs => runs::list(ctx, req).await,
        Route::Run => runs::get(ctx, req).await,
        Route::RunControl(action) => runs::control(ctx, req, action).await,
        Route::Review(decision) => runs::review(ctx, req, decision).await,
        Route::RunEvents => runs::events(ctx, req).await,
        Route::CompatWorkflows => compat::list(ctx, req).await,
        Route::CompatWorkflow => compat::get(ctx, req).await,
        Route::CompatExecute => compat::execute(ctx, req).await,
        Route::CompatExecution => compat::execution(ctx, req).await,
        Route::Probe(kind) => probes::probe(ctx, kind),
        Route::RunSocket => ws::run_socket(ctx, req).await,
        Route::WorkflowSocket => ws::workflow_socket(ctx, req).await,
        Route::CompatSocket => ws::compat_socket(ctx, req).await,
        Route::OpenApi => Ok(meta::openapi()),
        Route::Metrics => meta::metrics(ctx),
        Route::Dashboard => dashboard::page(req),
        Route::DashboardAsset => dashboard::asset(req),
    }
}

/// A path parameter that must be a valid id, or 400 `invalid_id`.
fn id_param<'a>(req: &'a Req, name: &str, what: &str) -> Result<&'a str, ApiError> {
    let id = req.param(name);
    if is_valid_id(id) {
        Ok(id)
    } else {
        Err(ApiError::invalid_id(what, id))
    }
}

/// An unsigned integer query parameter, or 400 `invalid_query`.
fn query_u64(req: &Req, name: &str) -> Result<Option<u64>, ApiError> {
    match req.query(name) {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "query parameter `{name}` must be a non-negative integer, got `{}`",
                    v.chars().take(64).collect::<String>()
                ),
            )
        }),
    }
}

/// `?limit=&offset=` with the configured default and maximum.
fn page(ctx: &ApiContext, req: &Req) -> Result<(usize, usize), ApiError> {
    let limit = query_u64(req, "limit")?.unwrap_or(ctx.config.default_page_size as u64);
    let max = ctx.config.max_page_size as u64;
    if limit == 0 || limit > max {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("query parameter `limit` must be between 1 and {max}"),
        ));
    }
    let offset = query_u64(req, "offset")?.unwrap_or(0);
    let offset = usize::try_from(offset)
        .map_err(|_| ApiError::bad_request("invalid_query", "`offset` is too large"))?;
    Ok((limit as usize, offset))
}

fn workflow_not_found(id: &str) -> ApiError {
    ApiError::not_found("workflow_not_found", format!("workflow {id} not found"))
}

fn run_not_found(id: &str) -> ApiError {
    ApiError::not_found("run_not_found", format!("run {id} not found"))
}
