//! `GET /api/v1/runs/{run_id}/events` with `Accept: text/event-stream`: a live Server-Sent
//! Events stream of a run, resumable with `?after=SEQ` or `Last-Event-ID`, gap-free and without
//! duplicates.
//!
//! The stream subscribes to the engine's broadcast *before* replaying the stored log, then only
//! ever sends the event numbered `last + 1`: anything out of order (a lagging subscriber, a run
//! driven by another replica) is read from the store instead, which also is polled once a second
//! for runs this replica does not drive. Each event is one SSE message, `id: <seq>` and
//! `data: <event JSON>` (no `event:` name, so `EventSource.onmessage` sees them all); the stream
//! ends after the run's terminal event (`workflow_completed|failed|cancelled`).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use maestro_dag::Event;
use tokio::sync::{broadcast, mpsc};

use crate::body::Body;
use crate::error::ApiError;
use crate::state::ApiContext;

/// Events read from the store per page while catching up.
const PAGE: usize = 500;
/// How often a stream of a run driven elsewhere polls the store.
const POLL: Duration = Duration::from_secs(1);
/// How often a comment keeps idle connections (and proxies) alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Whether the client asked for an event stream.
pub(super) fn wants_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// The resume point: `Last-Event-ID` (set by browsers on reconnect) wins over `?after=`.
pub(super) fn resume_point(headers: &http::HeaderMap, after: u64) -> Result<u64, ApiError> {
    match headers.get("last-event-id") {
        None => Ok(after),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_header",
                    "`Last-Event-ID` must be a non-negative integer",
                )
            }),
    }
}

fn frame(event: &Event) -> Bytes {
    let json = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("id: {}\ndata: {json}\n\n", event.seq))
}

/// Starts the stream of a run known to exist.
pub(super) fn stream(ctx: &ApiContext, run_id: &str, after: u64) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let live = ctx.engine.subscribe();
    let task = Streamer {
        ctx: ctx.clone(),
        run_id: run_id.to_string(),
        last: after,
        tx,
    };
    tokio::spawn(task.run(live));
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }));
    let mut res = Response::new(body.boxed());
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

struct Streamer {
    ctx: ApiContext,
    run_id: String,
    last: u64,
    tx: mpsc::Sender<Bytes>,
}

/// Why a stream stops.
enum Stop {
    /// The run's terminal event was sent.
    Finished,
    /// The client went away, the store failed, or the server is shutting down.
    Gone,
}

impl Streamer {
    async fn run(mut self, mut live: broadcast::Receiver<std::sync::Arc<Event>>) {
        // Open streams count with the WebSockets in the health gauges.
        let health = self.ctx.health.clone();
        if let Some(h) = &health {
            h.gauges().websockets.inc();
        }
        let _ = self.tx.send(Bytes::from_static(b"retry: 2000\n\n")).await;
        let outcome = self.pump(&mut live).await;
        if let Some(h) = &health {
            h.gauges().websockets.dec();
        }
        if let Stop::Finished = outcome {
            tracing::debug!(run_id = %self.run_id, last = self.last, "event stream finished");
        }
    }

    async fn pump(&mut self, live: &mut broadcast::Receiver<std::sync::Arc<Event>>) -> Stop {
        if let Some(stop) = self.catch_up().await {
            return stop;
        }
        let mut poll = tokio::time::interval(POLL);
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.reset();
        let shutdown = self.ctx.streams.clone();
        loop {
            let stop = tokio::select! {
                () = shutdown.cancelled() => Some(Stop::Gone),
                () = self.tx.closed() => Some(Stop::Gone),
                received = live.recv() => match received {
                    Ok(e) if *e.run_id != *self.run_id || e.seq <= self.last => None,
                    Ok(e) if e.seq == self.last + 1 => self.send(&e).await,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await,
                    Err(broadcast::error::RecvError::Closed) => Some(Stop::Gone),
                },
                _ = poll.tick() => {
                    if self.ctx.engine.is_driving(&self.run_id) {
                        None
                    } else {
                        self.catch_up().await
                    }
                }
                _ = keep_alive.tick() => {
                    if self.tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        Some(Stop::Gone)
                    } else {
                        None
                    }
                }
            };
            if let Some(stop) = stop {
                return stop;
            }
        }
    }

    /// Sends one event (the next in sequence).
    async fn send(&mut self, event: &Event) -> Option<Stop> {
        if self.tx.send(frame(event)).await.is_err() {
            return Some(Stop::Gone);
        }
        self.last = event.seq;
        event.kind.is_terminal().then_some(Stop::Finished)
    }

    /// Sends every stored event after `last`.
    async fn catch_up(&mut self) -> Option<Stop> {
        loop {
            let page = match self.ctx.store.events(&self.run_id, self.last, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(run_id = %self.run_id, error = %e, "event stream: store read failed");
                    return Some(Stop::Gone);
                }
            };
            let full = page.len() == PAGE;
            for e in &page {
                if e.seq != self.last + 1 {
                    continue;
                }
                if let Some(stop) = self.send(e).await {
                    return Some(stop);
                }
            }
            if !full {
                return None;
            }
        }
    }
}
