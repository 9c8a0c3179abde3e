//! WebSocket live events (HTTP/1.1 upgrade on hyper 1, framed by tokio-tungstenite):
//!
//! - `GET /api/v1/runs/{run_id}/ws[?after=SEQ]`: one run's events after `SEQ` (default 0, the
//!   whole log), then live ones; the server closes with 1000 after the run's terminal event.
//! - `GET /api/v1/workflows/{id}/ws[?after=SEQ]`: the events of every run of a workflow as they
//!   happen (see `follow` for what `after` replays).
//! - `GET /ws/workflow/{id}`: the same for the original clients, in the original's shape
//!   `{type, timestamp, workflow_id, execution_id, node_id, data}` (plus `seq`): exactly one
//!   message per event.
//!
//! The v1 routes send each event as one text message in the event wire shape `{seq, type,
//! workflow_id, run_id, node_id, data, timestamp}`, gap-free and without duplicates, across
//! replicas (`follow`). Every socket answers a text `ping` with `{"type":"pong","timestamp"}`
//! and protocol pings with pongs; the server pings every `websocket_ping_interval` and closes
//! with 1001 on shutdown. Admission: authentication happens before the upgrade (401), then the
//! limits of `HttpConfig` (503 `too_many_websockets`), so a refused client never gets a socket.
//! Browsers, which cannot set `Authorization` on a WebSocket, offer the subprotocols `maestro`
//! and `maestro.bearer.<base64url(token)>`; the server checks the token and selects `maestro`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use maestro_dag::Event;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::{id_param, query_u64, run_not_found, workflow_not_found};
use crate::body::{Body, empty};
use crate::error::ApiError;
use crate::follow::{End, Follower, finished};
use crate::service::Req;
use crate::sockets::{Refusal, SocketPermit};
use crate::state::ApiContext;

/// Largest message a client may send (they only ever send `ping`).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Events buffered between the follower and the socket.
const BUFFER: usize = 256;
/// How long one message may take to be written before the peer counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The subprotocol the server selects when a client offers it (browsers, whose token rides
/// along as `maestro.bearer.…`; see `service::BEARER_SUBPROTOCOL`).
const SUBPROTOCOL: &str = "maestro";

/// How events are written on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The event wire shape.
    Wire,
    /// The original system's shape.
    Compat,
}

impl Shape {
    fn render(self, e: &Event) -> String {
        match self {
            Shape::Wire => serde_json::to_string(e).unwrap_or_else(|_| "{}".into()),
            Shape::Compat => json!({
                "type": e.kind.as_str(),
                "timestamp": e.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "workflow_id": e.workflow_id,
                "execution_id": e.run_id,
                "node_id": e.node_id,
                "data": e.data,
                "seq": e.seq,
            })
            .to_string(),
        }
    }
}

/// What a socket follows.
enum Target {
    Run {
        run_id: Arc<str>,
        after: u64,
    },
    Workflow {
        workflow_id: Arc<str>,
        after: Option<u64>,
    },
}

/// `GET /api/v1/runs/{run_id}/ws`.
pub(super) async fn run_socket(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let run_id = id_param(req, "run_id", "run id")?;
    let after = query_u64(req, "after")?.unwrap_or(0);
    let accept = handshake(&req.headers)?;
    let Some(snapshot) = ctx.store.load_run(run_id).await? else {
        return Err(run_not_found(run_id));
    };
    let permit = admit(ctx, format!("run:{run_id}"))?;
    let done = finished(snapshot.run.status, snapshot.last_seq, after);
    let target = Target::Run {
        run_id: Arc::from(run_id),
        after,
    };
    upgrade(ctx, req, accept, permit, target, Shape::Wire, done)
}

/// `GET /api/v1/workflows/{id}/ws`.
pub(super) async fn workflow_socket(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Response<Body>, ApiError> {
    let id = id_param(req, "id", "workflow id")?;
    let after = query_u64(req, "after")?;
    workflow_common(ctx, req, id, after, Shape::Wire).await
}

/// `GET /ws/workflow/{id}` (original clients).
pub(super) async fn compat_socket(ctx: &ApiContext, req: &Req) -> Result<Response<Body>, ApiError> {
    let id = id_param(req, "id", "workflow id")?;
    workflow_common(ctx, req, id, None, Shape::Compat).await
}

async fn workflow_common(
    ctx: &ApiContext,
    req: &Req,
    id: &str,
    after: Option<u64>,
    shape: Shape,
) -> Result<Response<Body>, ApiError> {
    let accept = handshake(&req.headers)?;
    if ctx.store.get_definition(id, None).await?.is_none() {
        return Err(workflow_not_found(id));
    }
    let permit = admit(ctx, format!("workflow:{id}"))?;
    let target = Target::Workflow {
        workflow_id: Arc::from(id),
        after,
    };
    upgrade(ctx, req, accept, permit, target, shape, false)
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks an RFC 6455 opening handshake and returns the `Sec-WebSocket-Accept` value.
fn handshake(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this route is a WebSocket: send an HTTP/1.1 `Upgrade: websocket` handshake",
        )
        .with_header(header::UPGRADE, HeaderValue::from_static("websocket"))
        .with_header(header::CONNECTION, HeaderValue::from_static("Upgrade")));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(
            ApiError::bad_request("invalid_header", "`Sec-WebSocket-Version` must be 13")
                .with_header(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                ),
        );
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|k| k.len() == 24)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_header",
                "`Sec-WebSocket-Key` must be a base64-encoded 16-byte nonce",
            )
        })?;
    HeaderValue::from_str(&derive_accept_key(key))
        .map_err(|_| ApiError::bad_request("invalid_header", "bad `Sec-WebSocket-Key`"))
}

/// Takes a place within the limits, or 503 `too_many_websockets`.
fn admit(ctx: &ApiContext, key: String) -> Result<SocketPermit, ApiError> {
    let cfg = &ctx.config;
    ctx.sockets
        .acquire(key, cfg.max_websockets, cfg.max_websockets_per_key)
        .map_err(|refusal| {
            let detail = match refusal {
                Refusal::Server(n) => {
                    format!("this server already holds its maximum of {n} WebSockets")
                }
                Refusal::Key(n) => {
                    format!("this run or workflow already has its maximum of {n} WebSockets")
                }
            };
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_websockets",
                detail,
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
        })
}

/// Answers 101 and serves the socket on the upgraded connection.
fn upgrade(
    ctx: &ApiContext,
    req: &Req,
    accept: HeaderValue,
    permit: SocketPermit,
    target: Target,
    shape: Shape,
    done: bool,
) -> Result<Response<Body>, ApiError> {
    let Some(on_upgrade) = req.take_upgrade() else {
        // HTTP/2 (no extended CONNECT here) or a request not served by `serve`.
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "WebSockets are served over HTTP/1.1 upgrades only",
        )
        .with_header(header::UPGRADE, HeaderValue::from_static("websocket")));
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        serve_socket(ctx, ws, permit, target, shape, done).await;
    });
    let mut res = Response::new(empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    // A browser offers `maestro` (with its token as `maestro.bearer.…`) and fails the
    // connection unless the server selects one of the offered protocols.
    if has_token(&req.headers, header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    Ok(res)
}

fn close(code: CloseCode, reason: &'static str) -> Option<CloseFrame> {
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

fn pong() -> Message {
    Message::Text(
        json!({
            "type": "pong",
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
        .to_string()
        .into(),
    )
}

/// Sends one message; false when the peer is gone or has not read for [`WRITE_TIMEOUT`] (a
/// stuck client must not hold its place, or the server's shutdown, forever).
async fn send<S>(sink: &mut S, message: Message) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

async fn serve_socket<S>(
    ctx: ApiContext,
    ws: WebSocketStream<S>,
    permit: SocketPermit,
    target: Target,
    shape: Shape,
    done: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let health = ctx.health.clone();
    if let Some(h) = &health {
        h.gauges().websockets.inc();
    }
    let (tx, mut rx) = mpsc::channel::<Arc<Event>>(BUFFER);
    // Subscribed before the follower reads the store, so nothing falls between the two.
    let live = ctx.engine.subscribe();
    let mut follower = if done {
        drop(tx);
        None
    } else {
        Some(tokio::spawn(match target {
            Target::Run { run_id, after } => {
                Follower::run(ctx.clone(), run_id, after, tx).follow(live, None)
            }
            Target::Workflow { workflow_id, after } => {
                Follower::workflow(ctx.clone(), workflow_id, tx).follow(live, after)
            }
        }))
    };
    let (mut sink, mut stream) = ws.split();
    let interval = ctx.config.websocket_ping_interval;
    let mut ping = tokio::time::interval(interval);
    ping.reset();
    let mut last_heard = Instant::now();
    let shutdown = ctx.streams.clone();
    let frame = loop {
        tokio::select! {
            () = shutdown.cancelled() => break close(CloseCode::Away, "server shutting down"),
            event = rx.recv() => match event {
                Some(e) => {
                    if !send(&mut sink, Message::Text(shape.render(&e).into())).await {
                        break None;
                    }
                }
                None => {
                    let end = match follower.take() {
                        Some(f) => f.await.unwrap_or(End::Failed),
                        None => End::Finished,
                    };
                    break match end {
                        End::Finished => close(CloseCode::Normal, "run finished"),
                        End::Gone => close(CloseCode::Away, "server shutting down"),
                        End::Failed => close(CloseCode::Error, "event store unavailable"),
                    };
                }
            },
            message = stream.next() => match message {
                Some(Ok(Message::Text(t))) if t.trim().eq_ignore_ascii_case("ping") => {
                    last_heard = Instant::now();
                    if !send(&mut sink, pong()).await {
                        break None;
                    }
                }
                // Protocol pings are answered by tungstenite on the next read or write.
                Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_)
                    | Message::Pong(_) | Message::Frame(_))) => last_heard = Instant::now(),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
            },
            _ = ping.tick() => {
                // A peer that answered nothing (not even our pings) for two intervals is gone.
                if last_heard.elapsed() > interval * 2 {
                    break close(CloseCode::Away, "no answer to pings");
                }
                if !send(&mut sink, Message::Ping(Bytes::new())).await {
                    break None;
                }
            }
        }
    };
    if let Some(frame) = frame {
        let _ = send(&mut sink, Message::Close(Some(frame))).await;
    }
    // Completes a close handshake the client started, or ours (bounded, never hangs).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = sink.close().await;
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    drop(permit);
    if let Some(h) = &health {
        h.gauges().websockets.dec();
    }
}
