//! The server: hyper 1 over hyper-util's auto builder (HTTP/1.1 and HTTP/2 on one port, with
//! upgrades enabled so WebSockets can be served), one task per connection, slow-client
//! timeouts, and a graceful shutdown bounded by the configured grace period.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::router::Router;
use crate::service::handle;
use crate::state::ApiContext;

/// Largest request head (request line and headers) accepted, in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish for up to `config.shutdown_grace` and returns.
///
/// ```no_run
/// # async fn demo(ctx: maestro_http::ApiContext) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8003").await?;
/// // The binary resolves this on SIGTERM (after turning readiness to 503).
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// # drop(stop);
/// maestro_http::serve(listener, ctx, async {
///     let _ = stopped.await;
/// })
/// .await
/// # }
/// ```
pub async fn serve<F>(listener: TcpListener, ctx: ApiContext, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let local = listener.local_addr()?;
    info!(addr = %local, "http server listening");
    let ctx = Arc::new(ctx);
    let router = Arc::new(Router::new());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.config.header_timeout)
        // Caps the request head (hyper answers 431 past it); bodies stream and are limited
        // separately.
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    if let Some(metrics) = ctx.metrics.clone() {
        // Subscribed now, before the first request can start a run.
        tokio::spawn(metrics.follow_engine((*ctx).clone()));
    }
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let router = router.clone();
        let service = service_fn(move |req: hyper::Request<Incoming>| {
            let ctx = ctx.clone();
            let router = router.clone();
            async move { Ok::<_, Infallible>(handle(&ctx, &router, req).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    info!("http server draining");
    // Long-lived streams (SSE, WebSockets, which the graceful watcher no longer tracks once
    // upgraded) end now; ordinary requests in flight get the grace period.
    ctx.streams.cancel();
    tokio::select! {
        () = graceful.shutdown() => info!("http server stopped"),
        () = tokio::time::sleep(ctx.config.shutdown_grace) => {
            warn!("grace period over; dropping the remaining connections");
        }
    }
    Ok(())
}
