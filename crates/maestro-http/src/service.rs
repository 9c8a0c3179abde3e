//! One request, start to end: request id and tracing span, CORS, authentication, routing,
//! the body (limit, timeout, media type), dispatch to a handler, panic containment, and the
//! problem+json rendering of every error.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use tracing::{Instrument, debug, error, info_span, warn};

use crate::body::{Body, empty, read_limited};
use crate::error::ApiError;
use crate::handlers;
use crate::router::{Route, Router};
use crate::state::ApiContext;

/// The request id header, taken from the client when sane and generated otherwise.
pub const REQUEST_ID: &str = "x-request-id";

/// What a handler sees of a request: routed, authenticated, body read and size-checked.
#[derive(Debug)]
pub struct Req {
    /// The method (`HEAD` is handled as `GET`).
    pub method: Method,
    /// Path parameters.
    pub params: Vec<(&'static str, String)>,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The body (empty for `GET`).
    pub body: Bytes,
    /// The request id.
    pub request_id: String,
    /// The connection's upgrade, for WebSocket routes on HTTP/1.1 (taken once by the handler).
    pub(crate) upgrade: std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>,
}

impl Req {
    /// A path parameter (the router guarantees the names it declares).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Takes the connection's upgrade (HTTP/1.1 with upgrades enabled); `None` the second
    /// time, on HTTP/2 and when the request was not served by [`serve`](crate::serve).
    pub(crate) fn take_upgrade(&self) -> Option<hyper::upgrade::OnUpgrade> {
        self.upgrade
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Handles one request against the routes. Never fails: every error becomes a problem+json
/// response, and a panicking handler a 500.
pub async fn handle<B>(ctx: &ApiContext, router: &Router, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let request_id = request_id(req.headers());
    let span = info_span!(
        "request",
        method = %req.method(),
        path = %truncate(req.uri().path(), 256),
        request_id = %request_id,
    );
    let method = req.method().clone();
    async move {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let (route, mut res) = route_and_run(ctx, router, req, &request_id).await;
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert(REQUEST_ID, v);
        }
        cors_headers(ctx, origin.as_ref(), h);
        let status = res.status();
        let elapsed = started.elapsed();
        // A probe's 503 is an answer (starting, draining, database away), not a failure: it is
        // polled every few seconds and would flood the log.
        let probe = matches!(route, Some(Route::Probe(_)));
        if status.is_server_error() && !probe {
            warn!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                "request failed"
            );
        } else {
            debug!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                "request served"
            );
        }
        if let Some(o) = &ctx.observer {
            o.on_response(
                &method,
                route.map_or("unmatched", Route::pattern),
                status,
                elapsed,
            );
        }
        res
    }
    .instrument(span)
    .await
}

async fn route_and_run<B>(
    ctx: &ApiContext,
    router: &Router,
    req: Request<B>,
    request_id: &str,
) -> (Option<Route>, Response<Body>)
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path();
    let matched = router.at(path);
    let route = matched.as_ref().map(|m| m.route);
    let fail = |e: ApiError| (route, e.into_response(Some(request_id)));

    // Preflight and plain OPTIONS: answered without authentication (browsers never send
    // credentials on a preflight).
    if parts.method == Method::OPTIONS {
        return match &matched {
            Some(m) => {
                let mut res = Response::new(empty());
                *res.status_mut() = StatusCode::NO_CONTENT;
                if let Ok(v) = HeaderValue::from_str(&m.route.allow_header()) {
                    res.headers_mut().insert(header::ALLOW, v);
                }
                preflight_headers(ctx, &parts.headers, m.route, res.headers_mut());
                (route, res)
            }
            None => fail(not_found(path)),
        };
    }
    // Every `/api` route and every WebSocket (including unknown `/api` paths, so that they
    // reveal nothing without a token); probes and `/metrics` stay open.
    let protected = match &matched {
        Some(m) => m.route.needs_auth(),
        None => path.starts_with("/api") || path.starts_with("/ws/"),
    };
    let websocket = matched.as_ref().is_some_and(|m| m.route.is_websocket());
    if protected && !authorized(ctx, &parts.headers, websocket) {
        let detail = if parts.headers.contains_key(header::AUTHORIZATION)
            || (websocket && subprotocol_token(&parts.headers).is_some())
        {
            "the bearer token is not valid"
        } else {
            "this route needs an `Authorization: Bearer <token>` header"
        };
        return fail(
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"maestro\""),
            ),
        );
    }
    let Some(m) = matched else {
        return fail(not_found(path));
    };
    let method = if parts.method == Method::HEAD {
        Method::GET
    } else {
        parts.method.clone()
    };
    if !m.route.methods().contains(&parts.method) {
        let allow = HeaderValue::from_str(&m.route.allow_header())
            .unwrap_or_else(|_| HeaderValue::from_static("OPTIONS"));
        return fail(
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "{} is not allowed here; allowed: {}",
                    parts.method,
                    m.route.allow_header()
                ),
            )
            .with_header(header::ALLOW, allow),
        );
    }
    let body = if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        match read_limited(
            &parts.headers,
            body,
            ctx.config.max_body_bytes,
            ctx.config.body_timeout,
        )
        .await
        {
            Ok(b) => b,
            Err(e) => return fail(e),
        }
    } else {
        Bytes::new()
    };
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let upgrade = if m.route.is_websocket() {
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    let req = Req {
        method,
        params: m.params,
        query,
        headers: parts.headers,
        body,
        request_id: request_id.to_string(),
        upgrade: std::sync::Mutex::new(upgrade),
    };
    let outcome = AssertUnwindSafe(handlers::dispatch(ctx, m.route, &req))
        .catch_unwind()
        .await;
    match outcome {
        Ok(Ok(res)) => (route, res),
        Ok(Err(e)) => fail(e),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a handler panicked".into());
            error!(panic = %msg, "handler panicked");
            fail(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an unexpected error occurred",
            ))
        }
    }
}

fn not_found(path: &str) -> ApiError {
    ApiError::not_found(
        "route_not_found",
        format!("no route for `{}`", truncate(path, 200)),
    )
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings: every
/// byte of the presented token is looked at whatever the configured one's length, and a length
/// mismatch is folded into the same accumulator.
fn same(presented: &[u8], configured: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != configured.len());
    for (i, x) in presented.iter().enumerate() {
        let y = configured
            .get(i % configured.len().max(1))
            .copied()
            .unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0 && !configured.is_empty()
}

/// The subprotocol prefix that carries a token on a browser's WebSocket (browsers cannot set
/// `Authorization` there): `maestro.bearer.<base64url without padding of the token>`, offered
/// together with `maestro`, which the server then selects.
const BEARER_SUBPROTOCOL: &str = "maestro.bearer.";

/// The token of a `maestro.bearer.…` entry of `Sec-WebSocket-Protocol`, decoded (`Some` of an
/// empty vector when the entry is there but does not decode, so it still counts as a wrong
/// token). Never read from the query string: URLs end up in logs.
fn subprotocol_token(headers: &HeaderMap) -> Option<Vec<u8>> {
    use base64::Engine as _;
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(BEARER_SUBPROTOCOL))
        .map(|encoded| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .unwrap_or_default()
        })
}

/// Whether the request carries one of the configured tokens: as `Authorization: Bearer`, or,
/// on a WebSocket route, as the `maestro.bearer.…` subprotocol.
fn authorized(ctx: &ApiContext, headers: &HeaderMap, websocket: bool) -> bool {
    if ctx.config.api_tokens.is_empty() {
        return true;
    }
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|value| {
            let mut parts = value.trim().splitn(2, ' ');
            let scheme = parts.next().unwrap_or("");
            let token = parts.next().unwrap_or("").trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
                .then(|| token.as_bytes().to_vec())
        });
    let token = match from_header {
        Some(t) => t,
        None if websocket => match subprotocol_token(headers) {
            Some(t) if !t.is_empty() => t,
            _ => return false,
        },
        None => return false,
    };
    // Compare with every token (no early exit on a match), so timing says nothing either.
    ctx.config
        .api_tokens
        .iter()
        .fold(false, |ok, t| same(&token, t.as_bytes()) | ok)
}

fn allowed_origin<'a>(
    ctx: &ApiContext,
    origin: Option<&'a HeaderValue>,
) -> Option<&'a HeaderValue> {
    let origin = origin?;
    let s = origin.to_str().ok()?;
    ctx.config
        .cors_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(s))
        .then_some(origin)
}

fn cors_headers(ctx: &ApiContext, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
    if ctx.config.cors_origins.is_empty() {
        return;
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed_origin(ctx, origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id, location, idempotent-replayed"),
        );
    }
}

fn preflight_headers(ctx: &ApiContext, req: &HeaderMap, route: Route, h: &mut HeaderMap) {
    if allowed_origin(ctx, req.get(header::ORIGIN)).is_none() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&route.allow_header()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "authorization, content-type, idempotency-key, last-event-id, x-request-id",
        ),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same(b"secret", b"secret"));
        for presented in [&b""[..], b"secre", b"secret2", b"secreT", b"secretsecret"] {
            assert!(!same(presented, b"secret"), "{presented:?}");
        }
        assert!(!same(b"", b""), "an empty configured token matches nothing");
    }
}
