//! The `phase` executor's team engine over HTTP: [`HttpTeamEngine`] implements
//! [`maestro_phase::PhaseExecutor`] by calling a team engine service, and [`phase_executor`]
//! wires it into a [`PhaseNodeExecutor`] with the [`DefaultContextFactory`].
//!
//! # Wire contract
//!
//! For each attempt of a phase node the engine sends
//! `POST {base_url}/phases/{phase}` (the phase name percent-encoded; `base_url` is the
//! server's `MAESTRO_TEAM_ENGINE_URL`, a trailing `/` ignored) with the headers
//! `Content-Type: application/json`, `Accept: application/json`,
//! `Idempotency-Key: <run id>:<node id>` (stable across retries and restarts: a team engine
//! should answer a repeated key with the result of the first call rather than redo the phase),
//! `User-Agent: maestro/<version>`, plus any set with [`HttpTeamEngine::with_header`] (e.g.
//! `Authorization`). The body is the [`PhaseRequest`] with the [`TeamContext`] beside it:
//!
//! ```json
//! {
//!   "phase": "design",
//!   "requirement": "## Original Requirement:\nA todo app\n…",
//!   "run_id": "0190…",
//!   "node_id": "phase_design",
//!   "attempt": 1,
//!   "idempotency_key": "0190…:phase_design",
//!   "context": {
//!     "requirement": "A todo app",
//!     "workflow_id": "sdlc_parallel",
//!     "run_id": "0190…",
//!     "phase": "design",
//!     "previous_phase_outputs": {"phase_requirement_analysis": {…}},
//!     "artifacts": {"phase_requirement_analysis": ["requirements.md"]},
//!     "contracts": [],
//!     "execution_mode": "phased",
//!     "metadata": {"workflow_type": "sdlc", "node_id": "phase_design"}
//!   }
//! }
//! ```
//!
//! `requirement` is the phase requirement text (the original requirement plus what earlier
//! phases produced, see [`maestro_phase::requirement_text`]); `context.requirement` is the
//! original requirement alone.
//!
//! The expected answer is a 2xx response whose body is a [`PhaseResult`]:
//! `{"status": "completed" | "failed", "output": {…}, "artifacts": […], "contracts": […],
//! "execution_time": 1.5, "personas_executed": […], "error": "…"}`, where only `status` is
//! required (`files` and `generated_files` lists are folded into `artifacts`). A result with
//! status `failed` fails the node, retryably, with its `error`.
//!
//! Everything else maps to a [`PhaseError`] the way the `http` executor maps it to a node
//! error: 408, 429, 5xx, connection failures and timeouts are
//! [`PhaseError::Unavailable`] (retryable); other statuses, a 2xx body that is not a phase
//! result, and a body over 10 MiB are [`PhaseError::Rejected`] (permanent); cancellation is
//! [`PhaseError::Cancelled`]. Plain `http://` only (no TLS in this crate).
//!
//! Phases can take long, so by default a call has no timeout of its own: bound it with the
//! node's `timeout_ms` or [`HttpTeamEngine::with_timeout`].

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use maestro_phase::{
    DefaultContextFactory, PhaseError, PhaseExecutor, PhaseNodeExecutor, PhaseRequest, PhaseResult,
    TeamContext,
};
use serde::Serialize;
use tracing::debug;

use crate::client::{
    CallError, DEFAULT_MAX_RESPONSE_BYTES, HttpClient, UrlError, Verdict, json_headers,
    parse_http_url,
};

/// A [`PhaseNodeExecutor`] running phases on the team engine at `base_url` (see the
/// [module documentation](self) for the wire contract), with contexts from the
/// [`DefaultContextFactory`]. Register it under [`maestro_phase::templates::PHASE_EXECUTOR`].
///
/// ```
/// let executor = maestro_executors::phase_executor("http://team-engine:8080").unwrap();
/// let registry = maestro_executors::builtin_registry().with("phase", executor);
/// assert!(registry.get("phase").is_some());
///
/// assert!(maestro_executors::phase_executor("https://team-engine").is_err());
/// ```
pub fn phase_executor(base_url: &str) -> Result<PhaseNodeExecutor, UrlError> {
    let engine = HttpTeamEngine::new(base_url)?;
    Ok(PhaseNodeExecutor::new(
        Arc::new(engine),
        Arc::new(DefaultContextFactory),
    ))
}

/// A team engine reached over plain HTTP (see the [module documentation](self) for the wire
/// contract). Cloning shares the connection pool.
#[derive(Clone)]
pub struct HttpTeamEngine {
    /// `http://host:port/path`, without a trailing `/`.
    base: String,
    client: HttpClient,
    headers: HeaderMap,
    timeout: Option<Duration>,
    max_response_bytes: usize,
}

impl fmt::Debug for HttpTeamEngine {
    /// Shows the names of the extra headers, never their values (they may hold credentials).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("HttpTeamEngine")
            .field("base", &self.base)
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

/// The request body: the phase request's fields and the team context.
#[derive(Serialize)]
struct WireRequest<'a> {
    #[serde(flatten)]
    request: &'a PhaseRequest,
    context: &'a TeamContext,
}

impl HttpTeamEngine {
    /// A team engine at `base_url`, an absolute `http://` URL without query (the
    /// `MAESTRO_TEAM_ENGINE_URL` of the server). Needs no runtime until it runs a phase.
    pub fn new(base_url: &str) -> Result<Self, UrlError> {
        let uri = parse_http_url(base_url)?;
        if uri.query().is_some() {
            return Err(UrlError::new(
                base_url,
                "a team engine base URL takes no query string",
            ));
        }
        let authority = uri
            .authority()
            .map(|a| a.as_str())
            .ok_or_else(|| UrlError::new(base_url, "the URL has no host"))?;
        let base = format!("http://{authority}{}", uri.path().trim_end_matches('/'));
        Ok(Self {
            base,
            client: HttpClient::new(),
            headers: HeaderMap::new(),
            timeout: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// Bounds every call (connection, phase and answer) to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a header to every call (e.g. `Authorization`); it replaces a default of the same
    /// name.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the largest response body accepted, in bytes (default 10 MiB).
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// The base URL, normalised (no trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL a phase is posted to: `{base_url}/phases/{phase}`, the phase percent-encoded.
    pub fn phase_url(&self, phase: &str) -> String {
        let mut url = format!("{}/phases/", self.base);
        for &b in phase.as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                url.push(char::from(b));
            } else {
                let _ = write!(url, "%{b:02X}");
            }
        }
        url
    }

    fn request(
        &self,
        context: &TeamContext,
        request: &PhaseRequest,
    ) -> Result<(Request<Full<Bytes>>, String), PhaseError> {
        let url = self.phase_url(&request.phase);
        let uri: Uri = url
            .parse()
            .map_err(|e| PhaseError::Rejected(format!("invalid phase URL `{url}`: {e}")))?;
        let body = serde_json::to_vec(&WireRequest { request, context })
            .map_err(|e| PhaseError::Rejected(format!("cannot encode the request: {e}")))?;
        let mut http_request = Request::new(Full::new(Bytes::from(body)));
        *http_request.method_mut() = Method::POST;
        *http_request.uri_mut() = uri;
        json_headers(http_request.headers_mut(), &request.idempotency_key)
            .map_err(PhaseError::Rejected)?;
        for (name, value) in &self.headers {
            http_request.headers_mut().insert(name, value.clone());
        }
        Ok((http_request, format!("POST {url}")))
    }
}

#[async_trait]
impl PhaseExecutor for HttpTeamEngine {
    async fn execute_phase(
        &self,
        context: TeamContext,
        request: PhaseRequest,
    ) -> Result<PhaseResult, PhaseError> {
        let (http_request, what) = self.request(&context, &request)?;
        debug!(run_id = %request.run_id, node = %request.node_id, request = %what, "team engine call");
        let response = self
            .client
            .call(
                http_request,
                self.timeout,
                &request.cancellation,
                self.max_response_bytes,
            )
            .await
            .map_err(|e| match e {
                CallError::Cancelled => PhaseError::Cancelled,
                CallError::TooLarge(_) => PhaseError::Rejected(format!("{what}: {e}")),
                CallError::Transport(_) | CallError::TimedOut(_) => {
                    PhaseError::Unavailable(format!("{what}: {e}"))
                }
            })?;
        let status = response.status;
        let answered = || format!("{what} answered {status}: {}", response.snippet());
        match Verdict::of(status) {
            Verdict::Success => serde_json::from_slice(&response.body).map_err(|e| {
                PhaseError::Rejected(format!(
                    "{what} answered {status} with a body that is not a phase result ({e}): {}",
                    response.snippet()
                ))
            }),
            Verdict::Retryable => Err(PhaseError::Unavailable(answered())),
            Verdict::Permanent => Err(PhaseError::Rejected(answered())),
        }
    }
}

#[cfg(test)]
mod tests {
    use maestro_dag::CancellationToken;
    use serde_json::json;

    use super::*;

    #[test]
    fn base_urls_are_checked_and_normalised() {
        let engine = HttpTeamEngine::new("http://team:8080/api/").unwrap();
        assert_eq!(engine.base_url(), "http://team:8080/api");
        assert_eq!(
            engine.phase_url("backend_development"),
            "http://team:8080/api/phases/backend_development"
        );
        assert_eq!(
            engine.phase_url("a b/ü"),
            "http://team:8080/api/phases/a%20b%2F%C3%BC"
        );
        let bare = HttpTeamEngine::new("http://team").unwrap();
        assert_eq!(bare.phase_url("design"), "http://team/phases/design");

        for (url, reason) in [
            ("https://team", "https is not supported"),
            ("http://team/?x=1", "no query string"),
            ("team:8080", "invalid URL"),
        ] {
            let err = HttpTeamEngine::new(url).unwrap_err();
            assert!(err.to_string().contains(reason), "{url}: {err}");
        }
    }

    #[test]
    fn the_body_is_the_request_with_the_context_beside_it() {
        let engine = HttpTeamEngine::new("http://team").unwrap().with_header(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer s3cret"),
        );
        let context: TeamContext = serde_json::from_value(json!({
            "requirement": "A todo app", "workflow_id": "wf", "run_id": "r1", "phase": "design"
        }))
        .unwrap();
        let request = PhaseRequest {
            phase: "design".into(),
            requirement: "## Original Requirement:\nA todo app\n".into(),
            run_id: "r1".into(),
            node_id: "phase_design".into(),
            attempt: 2,
            idempotency_key: "r1:phase_design".into(),
            cancellation: CancellationToken::new(),
        };
        let (http_request, what) = engine.request(&context, &request).unwrap();
        assert_eq!(what, "POST http://team/phases/design");
        assert_eq!(http_request.headers()["idempotency-key"], "r1:phase_design");
        assert_eq!(http_request.headers()["authorization"], "Bearer s3cret");
        let debug = format!("{engine:?}");
        assert!(
            debug.contains("authorization") && !debug.contains("s3cret"),
            "{debug}"
        );
        let body = serde_json::to_value(WireRequest {
            request: &request,
            context: &context,
        })
        .unwrap();
        assert_eq!(body["phase"], "design");
        assert_eq!(body["attempt"], 2);
        assert_eq!(body["node_id"], "phase_design");
        assert_eq!(body["idempotency_key"], "r1:phase_design");
        assert_eq!(body["context"]["requirement"], "A todo app");
        assert_eq!(body["context"]["execution_mode"], "phased");
        assert!(body.get("cancellation").is_none());
    }
}
