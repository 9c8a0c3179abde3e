//! `/health`, `/health/ready`, `/health/live`, `/health/startup`: the `maestro-health` reports
//! as they are (their shapes and status codes are that crate's contract). Probes are cached
//! reads, so these never wait on the database.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{Body, full};
use crate::error::ApiError;
use crate::router::ProbeKind;
use crate::state::ApiContext;

/// Answers a probe from the injected health state.
pub(super) fn probe(ctx: &ApiContext, kind: ProbeKind) -> Result<Response<Body>, ApiError> {
    let Some(health) = &ctx.health else {
        return Err(ApiError::not_found(
            "route_not_found",
            "health probes are not configured on this server",
        ));
    };
    health.gauges().workflows.set(ctx.cache.len() as u64);
    let (status, bytes) = match kind {
        ProbeKind::Overall => {
            let p = health.report();
            (p.status, p.to_json_bytes())
        }
        ProbeKind::Ready => {
            let p = health.readiness();
            (p.status, p.to_json_bytes())
        }
        ProbeKind::Live => {
            let p = health.liveness();
            (p.status, p.to_json_bytes())
        }
        ProbeKind::Startup => {
            let p = health.startup();
            (p.status, p.to_json_bytes())
        }
    };
    let mut res = Response::new(full(bytes));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
