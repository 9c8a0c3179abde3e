//! The test server and a small HTTP client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashSet;
use std::sync::Mutex;

use maestro_dag::{
    Engine, ExecutorRegistry, FnExecutor, MemoryStore, NodeContext, NodeError, Store,
};
use maestro_http::{ApiContext, HttpConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A running server and a client for it.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    h2: bool,
    token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A response: status, headers and the body as JSON (or `Value::String` when not JSON).
#[derive(Debug)]
pub(crate) struct Res {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) text: String,
}

impl Res {
    /// Asserts a problem+json error with `status` and `code`, returning the body.
    #[track_caller]
    pub(crate) fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.body["code"], code, "{}", self.text);
        assert_eq!(self.body["status"], status);
        for field in ["type", "title", "detail"] {
            assert!(
                self.body[field].is_string(),
                "missing {field}: {}",
                self.text
            );
        }
        assert!(self.body["errors"].is_array(), "{}", self.text);
        &self.body
    }
}

impl TestServer {
    /// A server with default settings.
    pub(crate) async fn start() -> Self {
        Self::start_with(HttpConfig::default()).await
    }

    /// A server with the given settings.
    pub(crate) async fn start_with(config: HttpConfig) -> Self {
        let store = Arc::new(MemoryStore::new());
        Self::start_on(ApiContext::new(
            Engine::new(store.clone(), registry()),
            store as Arc<dyn Store>,
            config,
        ))
        .await
    }

    /// A server over a store of the caller's (the engine writes through it too).
    pub(crate) async fn start_with_store<S: Store + 'static>(
        config: HttpConfig,
        store: Arc<S>,
    ) -> Self {
        Self::start_on(ApiContext::new(
            Engine::new(store.clone(), registry()),
            store as Arc<dyn Store>,
            config,
        ))
        .await
    }

    /// A server over a ready context.
    pub(crate) async fn start_on(ctx: ApiContext) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(maestro_http::serve(listener, ctx, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            h2: false,
            token: None,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// Talks HTTP/2 (prior knowledge, no upgrade) from now on.
    pub(crate) fn http2(mut self) -> Self {
        self.client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        self.h2 = true;
        self
    }

    /// A second client of the same server without a token (stopping it does nothing).
    pub(crate) fn anonymous(&self) -> TestServer {
        TestServer {
            addr: self.addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            h2: false,
            token: None,
            stop: None,
            done: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` from now on.
    pub(crate) fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Sends a request with extra headers and a raw body.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Res {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body.into())).unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("the server answers within 10 s")
            .expect("the request succeeds at the HTTP level");
        if self.h2 {
            assert_eq!(res.version(), http::Version::HTTP_2);
        }
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(text.clone()));
        Res {
            status: parts.status,
            headers: parts.headers,
            body,
            text,
        }
    }

    /// Opens an SSE stream and collects its events (parsed `data:` JSON, with the `id:` checked
    /// against `seq`) until the server ends it, or until `until` events arrived.
    pub(crate) async fn sse(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        until: usize,
    ) -> Vec<Value> {
        let mut b = Request::builder()
            .method(Method::GET)
            .uri(format!("http://{}{}", self.addr, path))
            .header("accept", "text/event-stream");
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let res = self
            .client
            .request(b.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut body = res.into_body();
        let mut buf = String::new();
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while events.len() < until {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .expect("the stream makes progress within 10 s");
            let Some(frame) = frame else { break };
            let Ok(data) = frame.unwrap().into_data() else {
                continue;
            };
            buf.push_str(std::str::from_utf8(&data).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let message: String = buf.drain(..end + 2).collect();
                let mut id = None;
                for line in message.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse::<u64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        let event: Value = serde_json::from_str(v).unwrap();
                        assert_eq!(Some(event["seq"].as_u64().unwrap()), id, "{message}");
                        events.push(event);
                    }
                }
            }
        }
        events
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Res {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Res {
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// `POST path` with a raw body and a JSON content type.
    pub(crate) async fn post_raw(&self, path: &str, body: impl Into<Bytes>) -> Res {
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// Creates a workflow, asserting 201.
    pub(crate) async fn create(&self, def: &Value) -> Res {
        let res = self.post("/api/v1/workflows", def).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        res
    }

    /// Starts a run of `workflow_id`, asserting 202, and returns its id.
    pub(crate) async fn start_run(&self, workflow_id: &str, inputs: Value) -> String {
        let res = self
            .post(
                &format!("/api/v1/workflows/{workflow_id}/runs"),
                &json!({ "inputs": inputs }),
            )
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
        res.body["run_id"].as_str().unwrap().to_string()
    }

    /// Polls a run until its status is one of `statuses` (10 s at most) and returns it.
    pub(crate) async fn wait_status(&self, run_id: &str, statuses: &[&str]) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let res = self.get(&format!("/api/v1/runs/{run_id}")).await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.text);
            if statuses.iter().any(|s| res.body["status"] == *s) {
                return res.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run_id} never reached {statuses:?}: {}",
                res.text
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls until a node has `status`.
    pub(crate) async fn wait_node(&self, run_id: &str, node: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let res = self.get(&format!("/api/v1/runs/{run_id}")).await;
            if res.body["nodes"][node]["status"] == status {
                return res.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {node} never reached {status}: {}",
                res.text
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server gracefully and waits for it.
    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(10), d)
                .await
                .expect("the server stops within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The built-in executors plus `fail_once`, which fails the first attempt of each (run, node)
/// ever made on this engine and succeeds afterwards (retries from a failed run included).
pub(crate) fn registry() -> ExecutorRegistry {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    maestro_executors::builtin_registry().with(
        "fail_once",
        FnExecutor::new(move |ctx: NodeContext| {
            let first = seen
                .lock()
                .unwrap()
                .insert(format!("{}/{}", ctx.run_id, ctx.node_id));
            async move {
                if first {
                    Err(NodeError::new("boom"))
                } else {
                    Ok(json!({"second": true}))
                }
            }
        }),
    )
}

/// A linear `a → b → c` workflow of `noop` nodes.
pub(crate) fn chain(id: &str) -> Value {
    json!({
        "id": id,
        "name": format!("{id} chain"),
        "nodes": [
            {"id": "a", "executor": "noop"},
            {"id": "b", "executor": "noop", "depends_on": ["a"]},
            {"id": "c", "executor": "noop", "depends_on": ["b"]},
        ]
    })
}

/// A WebSocket client connection to the test server.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What one socket received: JSON text messages, then how it was closed (`None` when the
/// collection stopped at `until` messages instead).
#[derive(Debug)]
pub(crate) struct WsLog {
    pub(crate) messages: Vec<Value>,
    pub(crate) close: Option<u16>,
}

impl TestServer {
    /// Opens a WebSocket on `path` (with the server's token, if any), or returns the refused
    /// handshake's status and body.
    pub(crate) async fn ws(&self, path: &str) -> Result<Ws, (StatusCode, Value)> {
        ws_connect(self.addr, path, self.token.as_deref()).await
    }
}

/// Opens a WebSocket, or returns the refused handshake's status and problem body.
pub(crate) async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<Ws, (StatusCode, Value)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("the handshake completes within 10 s");
    match connected {
        Ok((ws, res)) => {
            assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            let body = res
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            if res.status() != StatusCode::SWITCHING_PROTOCOLS {
                assert_eq!(
                    res.headers()["content-type"],
                    "application/problem+json",
                    "{body}"
                );
            }
            Err((res.status(), body))
        }
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

/// Reads JSON text messages until the server closes the socket or `until` messages arrived
/// (10 s at most). Protocol pings and pongs are skipped.
pub(crate) async fn ws_read(ws: &mut Ws, until: usize) -> WsLog {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut messages = Vec::new();
    while messages.len() < until {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the socket makes progress within 10 s");
        match next {
            Some(Ok(Message::Text(t))) => messages.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                return WsLog {
                    messages,
                    close: Some(frame.map_or(1005, |f| u16::from(f.code))),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket error after {} messages: {e}", messages.len()),
            None => {
                return WsLog {
                    messages,
                    close: Some(1006),
                };
            }
        }
    }
    WsLog {
        messages,
        close: None,
    }
}
