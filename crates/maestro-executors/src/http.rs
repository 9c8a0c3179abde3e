//! The `http` executor: calls an HTTP endpoint with the node input (DESIGN §3) as a JSON body
//! and takes the JSON object it answers as the node's output.
//!
//! Config: `{url, method, headers, timeout_ms}`.
//!
//! - `url` (required): an absolute `http://` URL. **Plain HTTP only**: this crate has no TLS
//!   stack, so `https://` URLs fail permanently with a message saying so; reach TLS services
//!   through a proxy or sidecar.
//! - `method` (default `POST`, case-insensitive).
//! - `headers`: an object of strings, added after (and so able to replace) the defaults.
//! - `timeout_ms`: the whole exchange, connection and body included (default 30 s,
//!   [`HttpExecutor::DEFAULT_TIMEOUT`]). The node's own `timeout_ms` and run cancellation
//!   abort the request as well.
//!
//! Every request carries the node input as its body (`GET` and `HEAD` included) with
//! `Content-Type: application/json`, `Accept: application/json`, `User-Agent: maestro/<version>`
//! and `Idempotency-Key: <run id>:<node id>`, which stays the same across retries and restarts
//! so that the endpoint can deduplicate.
//!
//! The answer:
//!
//! | response | result |
//! |---|---|
//! | 2xx with a JSON object body | the output |
//! | 204 No Content | `{}` |
//! | other 2xx | permanent error (the endpoint does not speak this protocol) |
//! | 408, 429, 5xx | retryable error, quoting the start of the body |
//! | other 4xx, 3xx (redirects are not followed) | permanent error |
//! | connection failure, timeout, cancellation | retryable error |
//! | a body over 10 MiB ([`HttpExecutor::with_max_response_bytes`]) | permanent error |

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use maestro_dag::{NodeContext, NodeError, NodeExecutor};
use serde_json::{Map, Value};
use tracing::debug;

use crate::client::{
    CallError, DEFAULT_MAX_RESPONSE_BYTES, HttpClient, Verdict, json_headers, parse_http_url,
    snippet,
};
use crate::config::Config;

/// Calls `config.url` with the node input and outputs the JSON object it answers (see the
/// [module documentation](self) for the whole contract).
///
/// One executor keeps one connection pool; register one instance and share it.
#[derive(Debug, Clone)]
pub struct HttpExecutor {
    client: HttpClient,
    default_timeout: Duration,
    max_response_bytes: usize,
}

impl Default for HttpExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpExecutor {
    /// Its registry key.
    pub const KEY: &'static str = "http";

    /// The timeout of a request whose config sets no `timeout_ms`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// The default limit on a response body: 10 MiB.
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = DEFAULT_MAX_RESPONSE_BYTES;

    /// An executor with the default timeout and response limit. Needs no runtime until it
    /// runs a node.
    pub fn new() -> Self {
        Self {
            client: HttpClient::new(),
            default_timeout: Self::DEFAULT_TIMEOUT,
            max_response_bytes: Self::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// Sets the timeout of requests whose config sets no `timeout_ms`.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Sets the largest response body accepted, in bytes.
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// Builds the request from the node's config and input.
    fn request(
        &self,
        ctx: &NodeContext,
    ) -> Result<(Request<Full<Bytes>>, Duration, String), NodeError> {
        let key = Self::KEY;
        let config = Config::new(key, &ctx.node_config)?;
        let url = config.required_str("url")?;
        let uri = parse_http_url(url)
            .map_err(|e| NodeError::permanent(format!("{key}: `config.url`: {e}")))?;
        let method = match config.str("method")? {
            None => Method::POST,
            Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                NodeError::permanent(format!(
                    "{key}: `config.method` `{m}` is not an HTTP method"
                ))
            })?,
        };
        let headers = config.string_map("headers")?;
        let timeout = config
            .timeout_ms("timeout_ms")?
            .unwrap_or(self.default_timeout);
        let body = serde_json::to_vec(&ctx.input_json())
            .map_err(|e| NodeError::permanent(format!("{key}: cannot encode the input: {e}")))?;

        let what = format!("{method} {uri}");
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        json_headers(request.headers_mut(), &ctx.idempotency_key())
            .map_err(|e| NodeError::permanent(format!("{key}: {e}")))?;
        for (name, value) in headers {
            let bad = |what: &str| {
                NodeError::permanent(format!(
                    "{key}: `config.headers.{name}` is not a valid header {what}"
                ))
            };
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("name"))?;
            let value = HeaderValue::from_str(value).map_err(|_| bad("value"))?;
            request.headers_mut().insert(header, value);
        }
        Ok((request, timeout, what))
    }
}

#[async_trait]
impl NodeExecutor for HttpExecutor {
    async fn execute(&self, ctx: NodeContext) -> Result<Value, NodeError> {
        let (request, timeout, what) = self.request(&ctx)?;
        debug!(run_id = %ctx.run_id, node = %ctx.node_id, request = %what, "http call");
        let response = self
            .client
            .call(
                request,
                Some(timeout),
                &ctx.cancellation,
                self.max_response_bytes,
            )
            .await
            .map_err(|e| {
                let message = format!("http: {what}: {e}");
                match e {
                    CallError::TooLarge(_) => NodeError::permanent(message),
                    CallError::Transport(_) | CallError::TimedOut(_) | CallError::Cancelled => {
                        NodeError::new(message)
                    }
                }
            })?;
        let status = response.status;
        match Verdict::of(status) {
            Verdict::Success => {}
            Verdict::Retryable => {
                return Err(NodeError::new(format!(
                    "http: {what} answered {status}: {}",
                    response.snippet()
                )));
            }
            Verdict::Permanent => {
                return Err(NodeError::permanent(format!(
                    "http: {what} answered {status}: {}",
                    response.snippet()
                )));
            }
        }
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Object(Map::new()));
        }
        match serde_json::from_slice::<Value>(&response.body) {
            Ok(output @ Value::Object(_)) => Ok(output),
            _ => Err(NodeError::permanent(format!(
                "http: {what} answered {status} with a body that is not a JSON object: {}",
                snippet(&response.body)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request_error(config: Value) -> NodeError {
        let ctx = NodeContext::for_node("call", config);
        HttpExecutor::new().request(&ctx).unwrap_err()
    }

    #[test]
    fn builds_the_request_from_config_and_input() {
        let mut ctx = NodeContext::for_node(
            "call",
            json!({
                "url": "http://127.0.0.1:9/hook",
                "method": "put",
                "headers": {"Authorization": "Bearer t", "Content-Type": "application/json; v=2"},
                "timeout_ms": 1500,
            }),
        );
        ctx.run_id = "r1".into();
        let (request, timeout, what) = HttpExecutor::new().request(&ctx).unwrap();
        assert_eq!(what, "PUT http://127.0.0.1:9/hook");
        assert_eq!(timeout, Duration::from_millis(1500));
        let h = request.headers();
        assert_eq!(h["authorization"], "Bearer t");
        assert_eq!(h["content-type"], "application/json; v=2");
        assert_eq!(h["idempotency-key"], "r1:call");
        assert!(h["user-agent"].to_str().unwrap().starts_with("maestro/"));

        let defaults = NodeContext::for_node("call", json!({"url": "http://h/x"}));
        let (request, timeout, _) = HttpExecutor::new()
            .with_default_timeout(Duration::from_secs(7))
            .request(&defaults)
            .unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(timeout, Duration::from_secs(7));
    }

    #[test]
    fn bad_config_fails_permanently_naming_the_field() {
        for (config, message) in [
            (
                json!({}),
                "http: `config.url` is required (a non-empty string)",
            ),
            (
                json!({"url": "https://example.com"}),
                "http: `config.url`: invalid URL `https://example.com`: https is not supported",
            ),
            (
                json!({"url": "http://h/", "method": "GE T"}),
                "http: `config.method` `GE T` is not an HTTP method",
            ),
            (
                json!({"url": "http://h/", "headers": {"X-A": 1}}),
                "http: `config.headers.X-A` must be a string, got an integer",
            ),
            (
                json!({"url": "http://h/", "headers": {"bad name": "v"}}),
                "http: `config.headers.bad name` is not a valid header name",
            ),
            (
                json!({"url": "http://h/", "headers": {"X-A": "line\nbreak"}}),
                "http: `config.headers.X-A` is not a valid header value",
            ),
            (
                json!({"url": "http://h/", "timeout_ms": 0}),
                "http: `config.timeout_ms` must be a positive integer, got 0",
            ),
        ] {
            let err = request_error(config.clone());
            assert!(!err.retryable, "{config}");
            assert!(err.message.starts_with(message), "{config}: {err}");
        }
    }
}
