//! The plain-HTTP client shared by the `http` executor and the HTTP team engine: a pooled
//! hyper client whose calls are bounded by a timeout, a cancellation token and a response size
//! limit. `http://` only: this crate carries no TLS stack.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use maestro_dag::CancellationToken;

/// How long establishing a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of a response body an error message quotes.
const SNIPPET_CHARS: usize = 300;

/// The `User-Agent` of every request.
pub(crate) const USER_AGENT: &str = concat!("maestro/", env!("CARGO_PKG_VERSION"));

/// The default limit on a response body: 10 MiB.
pub(crate) const DEFAULT_MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

/// A URL this crate cannot call: not absolute, not `http://`, or without a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL `{url}`: {reason}")]
pub struct UrlError {
    url: String,
    reason: String,
}

impl UrlError {
    pub(crate) fn new(url: &str, reason: impl Into<String>) -> Self {
        Self {
            url: url.to_string(),
            reason: reason.into(),
        }
    }

    /// The URL as it was given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Parses an absolute `http://` URL. `https://` is refused with a message saying that this
/// build speaks plain HTTP only.
pub(crate) fn parse_http_url(url: &str) -> Result<Uri, UrlError> {
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| UrlError::new(url, e.to_string()))?;
    match uri.scheme() {
        None => {
            return Err(UrlError::new(
                url,
                "not an absolute URL (it must start with http://)",
            ));
        }
        Some(s) if *s == Scheme::HTTP => {}
        Some(s) if *s == Scheme::HTTPS => {
            return Err(UrlError::new(
                url,
                "https is not supported: only plain http:// URLs (this build has no TLS; \
                 put a TLS-terminating proxy or sidecar in front of the service)",
            ));
        }
        Some(s) => {
            return Err(UrlError::new(
                url,
                format!("unsupported scheme `{s}`: only http:// URLs are supported"),
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(UrlError::new(url, "the URL has no host"));
    }
    Ok(uri)
}

/// A response whose body was read in full.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Response {
    /// The start of the body, for error messages (`(empty body)` when there is none).
    pub(crate) fn snippet(&self) -> String {
        snippet(&self.body)
    }
}

/// Why a call produced no response.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Connecting, sending or receiving failed (refused, reset, DNS, a broken body, …).
    Transport(String),
    /// The call took longer than its timeout.
    TimedOut(Duration),
    /// The cancellation token fired first.
    Cancelled,
    /// The response body is larger than the limit.
    TooLarge(usize),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => f.write_str(e),
            Self::TimedOut(t) => write!(f, "timed out after {} ms", t.as_millis()),
            Self::Cancelled => f.write_str("cancelled"),
            Self::TooLarge(limit) => write!(f, "the response body exceeds {limit} bytes"),
        }
    }
}

/// How a response status is treated by the executors of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: read the body.
    Success,
    /// 408, 429 and 5xx: another attempt may succeed.
    Retryable,
    /// Any other status (other 4xx, 3xx since redirects are not followed): no retry can help.
    Permanent,
}

impl Verdict {
    pub(crate) fn of(status: StatusCode) -> Self {
        if status.is_success() {
            Self::Success
        } else if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Self::Retryable
        } else {
            Self::Permanent
        }
    }
}

/// A pooled plain-HTTP/1.1 client. Cloning shares the pool.
#[derive(Clone)]
pub(crate) struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client; needs no runtime until the first call.
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Self { inner }
    }

    /// Sends `request` and reads the response body (at most `max_body` bytes). Stops at the
    /// timeout or when `cancellation` fires, whichever comes first; stopping drops the
    /// connection, which aborts the request.
    pub(crate) async fn call(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Option<Duration>,
        cancellation: &CancellationToken,
        max_body: usize,
    ) -> Result<Response, CallError> {
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| CallError::Transport(chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        CallError::TooLarge(max_body)
                    } else {
                        CallError::Transport(format!("reading the response: {}", chain(&*e)))
                    }
                })?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                body,
            })
        };
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = exchange => result,
            () = deadline => Err(CallError::TimedOut(timeout.unwrap_or_default())),
            () = cancellation.cancelled() => Err(CallError::Cancelled),
        }
    }
}

/// Sets the headers every call sends: a JSON body, the idempotency key and the user agent.
pub(crate) fn json_headers(headers: &mut HeaderMap, idempotency_key: &str) -> Result<(), String> {
    use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue, USER_AGENT as UA};
    let json = HeaderValue::from_static("application/json");
    headers.insert(CONTENT_TYPE, json.clone());
    headers.insert(ACCEPT, json);
    headers.insert(UA, HeaderValue::from_static(USER_AGENT));
    let key = HeaderValue::from_str(idempotency_key)
        .map_err(|_| format!("the idempotency key `{idempotency_key}` is not a valid header"))?;
    headers.insert("idempotency-key", key);
    Ok(())
}

/// An error and its sources, joined with `: ` (hyper's own messages are terse, the cause is
/// in the sources: `client error (Connect): tcp connect error: Connection refused`).
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The first [`SNIPPET_CHARS`] characters of a body, lossily decoded and trimmed.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_urls_are_accepted() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/hook?x=1")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080/hook?x=1"
        );
        for (url, reason) in [
            ("https://example.com/", "https is not supported"),
            ("ftp://example.com/", "unsupported scheme `ftp`"),
            ("/relative/path", "not an absolute URL"),
            ("not a url", "invalid"),
        ] {
            let err = parse_http_url(url).unwrap_err();
            assert!(err.reason().contains(reason), "{url}: {err}");
            assert_eq!(err.url(), url);
        }
    }

    #[test]
    fn statuses_are_sorted_into_verdicts() {
        for (status, verdict) in [
            (200, Verdict::Success),
            (204, Verdict::Success),
            (301, Verdict::Permanent),
            (400, Verdict::Permanent),
            (404, Verdict::Permanent),
            (408, Verdict::Retryable),
            (429, Verdict::Retryable),
            (500, Verdict::Retryable),
            (503, Verdict::Retryable),
        ] {
            assert_eq!(
                Verdict::of(StatusCode::from_u16(status).unwrap()),
                verdict,
                "{status}"
            );
        }
    }

    #[test]
    fn snippets_are_short_and_trimmed() {
        assert_eq!(snippet(b"  oops \n"), "oops");
        assert_eq!(snippet(b""), "(empty body)");
        let long = "é".repeat(SNIPPET_CHARS + 10);
        let s = snippet(long.as_bytes());
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert!(s.ends_with('…'));
    }
}
