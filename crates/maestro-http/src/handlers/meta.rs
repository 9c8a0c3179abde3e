//! `GET /metrics` (Prometheus text format) and `GET /api/v1/openapi.json`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{Body, full};
use crate::error::ApiError;
use crate::metrics::METRICS_CONTENT_TYPE;
use crate::state::ApiContext;

/// `GET /metrics`: 404 unless the server was given [`crate::Metrics`].
pub(super) fn metrics(ctx: &ApiContext) -> Result<Response<Body>, ApiError> {
    let Some(metrics) = &ctx.metrics else {
        return Err(ApiError::not_found(
            "route_not_found",
            "metrics are not configured on this server",
        ));
    };
    let mut res = Response::new(full(Bytes::from(metrics.render(ctx))));
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `GET /api/v1/openapi.json`: the document of [`crate::openapi::document`], rendered once.
pub(super) fn openapi() -> Response<Body> {
    static DOC: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let bytes = DOC
        .get_or_init(|| Bytes::from(crate::openapi::render()))
        .clone();
    let mut res = Response::new(full(bytes));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
