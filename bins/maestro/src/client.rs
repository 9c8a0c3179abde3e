//! A small client of the Maestro HTTP API (DESIGN §5) over plain HTTP/1.1: hyper-util's legacy
//! client with a connect timeout and a per-request timeout, bearer-token auth, and problem+json
//! answers turned into [`Failure`]s with the documented exit codes.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::exit::{self, Failure};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one server.
pub(crate) struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// `http://host:port` plus any path prefix, without a trailing `/`.
    base: String,
    token: Option<String>,
    timeout: Duration,
}

/// A successful (2xx) answer.
pub(crate) struct Reply {
    /// The status code.
    pub(crate) status: u16,
    /// The whole body.
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON (`null` when empty).
    pub(crate) fn json(&self) -> Result<Value, Failure> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::new(
                exit::PROTOCOL,
                format!("the server's answer is not JSON: {e}"),
            )
        })
    }
}

impl Client {
    /// A client of `server` (`http://host[:port][/prefix]`); a usage failure for any other URL.
    pub(crate) fn new(
        server: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let usage = |why: &str| {
            Failure::new(
                exit::USAGE,
                format!("--server `{server}`: {why} (expected http://HOST[:PORT])"),
            )
        };
        let uri: Uri = server.parse().map_err(|_| usage("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(usage(
                    "https is not supported; this client speaks plain http (use a port-forward or a local proxy)",
                ));
            }
            _ => return Err(usage("the scheme must be http://")),
        }
        let authority = uri.authority().ok_or_else(|| usage("no host"))?;
        if uri.query().is_some() {
            return Err(usage("a query string is not allowed"));
        }
        let prefix = uri.path().trim_end_matches('/');
        let base = format!("http://{authority}{prefix}");
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            http,
            base,
            token: token.filter(|t| !t.is_empty()),
            timeout,
        })
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("maestro-cli/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let bytes = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).expect("JSON values serialize"))
            }
            None => Bytes::new(),
        };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(Full::new(bytes))
            .map_err(|e| Failure::new(exit::USAGE, format!("cannot build the request: {e}")))
    }

    /// Sends a request and reads the whole answer; a non-2xx answer is a [`Failure`].
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, Failure> {
        let req = self.build(method.clone(), path, body, headers)?;
        let what = format!("{method} {}{path}", self.base);
        let exchange = async {
            let res = self
                .http
                .request(req)
                .await
                .map_err(|e| self.transport_failure(&e))?;
            let status = res.status().as_u16();
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| {
                    Failure::new(
                        exit::UNAVAILABLE,
                        format!("{what}: the answer broke off: {e}"),
                    )
                })?
                .to_bytes();
            Ok::<_, Failure>(Reply { status, body })
        };
        let reply = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                Failure::new(
                    exit::UNAVAILABLE,
                    format!("{what}: no answer within {}s", self.timeout.as_secs()),
                )
            })??;
        if (200..300).contains(&reply.status) {
            Ok(reply)
        } else {
            Err(Failure::from_problem(reply.status, &reply.body))
        }
    }

    /// `GET path` as JSON.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(Method::GET, path, None, &[]).await?.json()
    }

    /// `POST path` with an optional JSON body, answered with JSON.
    pub(crate) async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        self.send(Method::POST, path, body, &[]).await?.json()
    }

    /// Opens a Server-Sent Events stream at `path`, resuming after `last_event_id`; returns the
    /// body to read incrementally. Only the answer's head is bounded by the timeout.
    pub(crate) async fn open_stream(
        &self,
        path: &str,
        last_event_id: u64,
    ) -> Result<Incoming, Failure> {
        let last = last_event_id.to_string();
        let mut headers = vec![("Cache-Control", "no-cache")];
        if last_event_id > 0 {
            headers.push(("Last-Event-ID", last.as_str()));
        }
        let mut req = self.build(Method::GET, path, None, &headers)?;
        req.headers_mut().insert(
            header::ACCEPT,
            header::HeaderValue::from_static("text/event-stream"),
        );
        let res = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| {
                Failure::new(
                    exit::UNAVAILABLE,
                    format!(
                        "GET {}{path}: no answer within {}s",
                        self.base,
                        self.timeout.as_secs()
                    ),
                )
            })?
            .map_err(|e| self.transport_failure(&e))?;
        let status = res.status().as_u16();
        if !(200..300).contains(&status) {
            let body = tokio::time::timeout(self.timeout, res.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(Failure::from_problem(status, &body));
        }
        Ok(res.into_body())
    }

    fn transport_failure(&self, e: &hyper_util::client::legacy::Error) -> Failure {
        let mut cause = String::new();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        if cause.is_empty() {
            cause = e.to_string();
        }
        let what = if e.is_connect() {
            "cannot connect to"
        } else {
            "lost the connection to"
        };
        Failure::new(exit::UNAVAILABLE, format!("{what} {}: {cause}", self.base))
    }
}

/// `s` as one path segment: unreserved characters as they are, everything else
/// percent-encoded.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string (`?a=1&b=x`) of the pairs whose value is present, or an empty string.
pub(crate) fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", segment(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_must_be_plain_http() {
        let t = Duration::from_secs(1);
        let ok = Client::new("http://127.0.0.1:8003/", None, t).unwrap();
        assert_eq!(ok.base, "http://127.0.0.1:8003");
        let prefixed = Client::new("http://maestro.local/prefix/", None, t).unwrap();
        assert_eq!(prefixed.base, "http://maestro.local/prefix");
        for bad in ["https://x", "ftp://x", "not a url", "127.0.0.1:8003"] {
            let e = Client::new(bad, None, t).err().unwrap();
            assert_eq!(e.code, exit::USAGE, "{bad}");
        }
    }

    #[test]
    fn segments_and_queries_are_encoded() {
        assert_eq!(segment("a_b-1"), "a_b-1");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(
            query(&[("workflow_id", Some("x y".into())), ("status", None)]),
            "?workflow_id=x%20y"
        );
        assert_eq!(query(&[("status", None)]), "");
    }
}
