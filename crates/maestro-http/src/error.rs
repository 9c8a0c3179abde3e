//! The one error type of the HTTP layer, rendered as RFC 9457 `application/problem+json`:
//! `{type, title, status, detail, code, errors: [{code, message, node_id?, nodes?}]}`.
//!
//! Every `code` is stable and machine-readable; clients branch on it, never on `detail`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use maestro_dag::{EngineError, ParseError, StoreError, ValidationErrors};
use serde::Serialize;

use crate::body::{Body, full};

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One item of a problem's `errors` list (a validation problem, or a bad field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemItem {
    /// Stable code, e.g. `cycle` or `unknown_executor`.
    pub code: String,
    /// What is wrong, lowercase.
    pub message: String,
    /// The node concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The nodes concerned (a cycle, in order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    /// The field path concerned (a body field), if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// An error answered to the client: a status, a stable code and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub detail: String,
    /// Itemised problems (validation errors).
    pub errors: Vec<ProblemItem>,
    /// Extra response headers (e.g. `Allow` on 405, `WWW-Authenticate` on 401).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    errors: &'a [ProblemItem],
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl ApiError {
    /// An error with a status, a code and a detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    /// 409 `invalid_transition`.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_transition", detail)
    }

    /// 422 with `code`.
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    /// 500 `internal_error`; the detail stays in the log, the client gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an unexpected error occurred",
        )
    }

    /// 400 `invalid_id` for a path or query id that breaks `[A-Za-z0-9_-]{1,255}`.
    pub fn invalid_id(what: &str, id: &str) -> Self {
        let shown: String = id.chars().take(64).collect();
        Self::bad_request(
            "invalid_id",
            format!("invalid {what} `{shown}`: ids match [A-Za-z0-9_-]{{1,255}}"),
        )
    }

    /// Adds an item to `errors`.
    pub fn with_item(mut self, item: ProblemItem) -> Self {
        self.errors.push(item);
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The problem's `type` URI (a stable, documentation-style tag per code).
    pub fn type_uri(&self) -> String {
        format!(
            "https://maestro.dev/problems/{}",
            self.code.replace('_', "-")
        )
    }

    /// Renders the problem+json response; `request_id` is echoed in the body when given.
    pub fn into_response(self, request_id: Option<&str>) -> Response<Body> {
        let body = ProblemBody {
            kind: self.type_uri(),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            errors: &self.errors,
            request_id,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = Response::new(full(Bytes::from(bytes)));
        *res.status_mut() = self.status;
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            res.headers_mut().append(name, value);
        }
        res
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        let n = errors.0.len();
        let mut e = Self::unprocessable(
            "validation_failed",
            format!(
                "the workflow definition has {n} problem{}",
                if n == 1 { "" } else { "s" }
            ),
        );
        e.errors = errors
            .0
            .into_iter()
            .map(|v| ProblemItem {
                code: v.code.as_str().to_string(),
                message: v.message,
                node_id: v.node_id,
                nodes: (!v.nodes.is_empty()).then_some(v.nodes),
                path: None,
            })
            .collect();
        e
    }
}

impl From<ParseError> for ApiError {
    fn from(p: ParseError) -> Self {
        let path = (!p.path.is_empty()).then(|| p.path.clone());
        Self::unprocessable("invalid_definition", p.to_string()).with_item(ProblemItem {
            code: "invalid_definition".into(),
            message: p.message,
            node_id: None,
            nodes: None,
            path,
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found("not_found", format!("{what} not found")),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Unavailable(m) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("the store is unavailable: {m}"),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            other => Self::internal(other),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::RunNotFound(id) => {
                Self::not_found("run_not_found", format!("run {id} not found"))
            }
            e @ EngineError::NodeNotFound { .. } => {
                Self::not_found("node_not_found", e.to_string())
            }
            EngineError::InvalidTransition(m) => Self::conflict(m),
            e @ EngineError::WorkflowMismatch { .. } => {
                Self::new(StatusCode::CONFLICT, "workflow_mismatch", e.to_string())
            }
            EngineError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ),
            EngineError::Store(s) => s.into(),
            EngineError::WorkflowNotFound(what) => {
                Self::not_found("workflow_not_found", format!("workflow {what} not found"))
            }
            EngineError::InvalidWorkflow(m) => Self::unprocessable("invalid_workflow", m),
            other => Self::internal(other),
        }
    }
}
