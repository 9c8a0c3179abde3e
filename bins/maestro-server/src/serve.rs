//! `serve` and `migrate`: the bundled server, wired in explicit steps (STYLE.md item 7).
//!
//! 1. open the store (lazy), start the health registry (a background database check) and the
//!    runtime watchdog, build the executor registry, the engine and the worker (no I/O yet);
//! 2. serve HTTP, so the probes answer from the start (`/health/startup` 503 until step 4);
//! 3. apply the migrations (under an advisory lock on PostgreSQL), retried while the database is
//!    unreachable;
//! 4. register the SDLC templates, start the worker (claims runs under leases, renews them,
//!    takes over a dead replica's runs), and mark the server started;
//! 5. on SIGTERM or Ctrl-C, drain: readiness turns 503, no new run is claimed and no new node
//!    starts, running nodes get the grace period, leases are released, and the process exits 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use maestro_dag::{Engine, EngineConfig, Store, StoreResolver, Worker, WorkerConfig};
use maestro_health::{FnCheck, Health, HealthConfig, StartupComponent};
use maestro_http::{ApiContext, HttpConfig};
use maestro_store::{DurableStore, StoreOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{DatabaseArgs, ServeArgs};

/// The version reported by `/health` and `--version`.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

fn open_store(db: &DatabaseArgs, pool_size: usize) -> anyhow::Result<Arc<dyn DurableStore>> {
    let url = db.url();
    let options = StoreOptions::default().with_pool_size(pool_size.max(1));
    maestro_store::connect_with(&url, options)
        .with_context(|| format!("cannot open the database `{}`", redact(&url)))
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// `migrate`: applies the pending migrations and prints their names.
pub(crate) fn migrate_command(
    db: &DatabaseArgs,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = open_store(db, 2)?;
        let applied = store.migrate().await.context("migrations failed")?;
        if applied.is_empty() {
            writeln!(out, "the database is up to date")?;
        }
        for name in applied {
            writeln!(out, "applied {name}")?;
        }
        Ok(crate::exit::SUCCESS)
    })
}

/// `serve`: runs the server until SIGTERM or Ctrl-C.
pub(crate) fn serve_command(args: ServeArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args, shutdown_signal()))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the server until `shutdown` resolves, then drains. Returns the exit status.
pub async fn serve(
    args: ServeArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<u8> {
    // The shutdown signal, as a token every step can watch.
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.cancel();
        });
    }

    // 1. The store (lazy: nothing is connected yet), health checks, executors, the engine and the
    //    worker. None of this does I/O.
    let store = open_store(&args.database, args.db_pool_size as usize)?;
    let backend = store.backend();
    let health = Health::new(HealthConfig::new(VERSION, display_name(backend)));
    {
        let db = store.clone();
        let check = FnCheck::new("database", move || {
            let db = db.clone();
            async move { db.ping().await.map_err(|e| e.to_string().into()) }
        })
        .timeout(Duration::from_secs(1));
        health
            .register_check(Arc::new(check))
            .context("registering the database check")?;
    }
    health.start();
    let registry = crate::executors::registry(&args)?;
    let engine = Engine::with_config(
        store.clone() as Arc<dyn maestro_dag::RunStore>,
        registry.clone(),
        EngineConfig {
            max_concurrent_nodes: usize::try_from(args.max_concurrent_nodes).unwrap_or(usize::MAX),
            ..EngineConfig::default()
        },
    );
    health.mark_initialized(StartupComponent::Engine);
    let store_dyn: Arc<dyn Store> = store.clone();
    let resolver = Arc::new(StoreResolver::new(store_dyn.clone(), registry));
    let worker = Worker::new(
        engine.clone(),
        store_dyn.clone(),
        resolver,
        WorkerConfig {
            owner: replica_id(),
            lease_ttl: Duration::from_secs(args.lease_ttl_secs.max(1)),
            ..WorkerConfig::default()
        },
    );

    // 2. HTTP first, so the probes answer while the server starts: `/health/startup` is 503
    //    until the migrations ran and the templates are registered.
    let mut http = HttpConfig::default()
        .with_max_body_bytes(usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX))
        .with_shutdown_grace(Duration::from_secs(args.shutdown_grace_secs));
    if let Some(tokens) = &args.api_tokens {
        http = http.with_api_tokens(HttpConfig::split_list(tokens));
    }
    if let Some(origins) = &args.cors_origins {
        http = http.with_cors_origins(HttpConfig::split_list(origins));
    }
    let max_ws = usize::try_from(args.max_websockets).unwrap_or(usize::MAX);
    let http = http.with_websocket_limits(max_ws, (max_ws / 10).clamp(1, 100));
    let metrics = Arc::new(maestro_http::Metrics::new());
    metrics.set_database_pool_size(args.db_pool_size);
    let ctx = ApiContext::new(engine.clone(), store_dyn, http)
        .with_worker(worker.clone())
        .with_health(health.clone())
        .with_metrics(metrics);
    let listener = TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    info!(addr = %listener.local_addr()?, database = display_name(backend), "maestro-server listening");
    let draining = CancellationToken::new();
    let http_stop = draining.clone();
    let server = tokio::spawn(maestro_http::serve(listener, ctx, async move {
        http_stop.cancelled().await
    }));

    // 3. Migrations, retried while the database is unreachable (startup stays 503 meanwhile).
    let mut delay = Duration::from_millis(200);
    loop {
        match store.migrate().await {
            Ok(applied) => {
                for name in applied {
                    info!(migration = %name, "applied a migration");
                }
                break;
            }
            Err(e) => {
                warn!(error = %e, "migrations failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => {
                        draining.cancel();
                        let _ = server.await;
                        health.stop();
                        return Ok(crate::exit::SUCCESS);
                    }
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    health.mark_initialized(StartupComponent::Database);

    // 4. The SDLC templates.
    for def in [
        maestro_phase::templates::sdlc_linear(),
        maestro_phase::templates::sdlc_parallel(),
    ] {
        store
            .put_definition(&def)
            .await
            .with_context(|| format!("registering the template {}", def.id))?;
    }
    health.mark_initialized(StartupComponent::Workflows);

    // 5. The worker: claims runs (its own and those of dead replicas), renews leases.
    let stop_worker = CancellationToken::new();
    let worker_task = tokio::spawn(worker.clone().run(stop_worker.clone()));
    // Registered only now: while migrations wait for the database there is no scheduler loop
    // to watch, and liveness must not depend on the database.
    let scheduler_beat = health.register_heartbeat("scheduler", Duration::from_secs(10));
    {
        // Liveness: the scheduler loop must keep polling.
        let worker = worker.clone();
        let stop = stop_worker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        if worker.last_poll_age() < Duration::from_secs(10) {
                            scheduler_beat.beat();
                        }
                    }
                }
            }
            scheduler_beat.retire();
        });
    }
    health.registry().refresh().await;
    health.mark_started();
    info!("maestro-server started");
    stop.cancelled().await;

    // Drain: not ready, no new run claimed and no new node started; attempts in flight get the
    // grace period to finish (their results are written); then the runs are let go and their
    // leases released, so another replica resumes them at once.
    info!("shutting down: draining");
    health.set_draining(true);
    worker.stop_claiming();
    engine.quiesce();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.shutdown_grace_secs);
    while engine.executing() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if engine.executing() > 0 {
        warn!(
            attempts = engine.executing(),
            "grace period over; unfinished attempts will run again elsewhere"
        );
    }
    stop_worker.cancel(); // The worker's drain stops the drivers and releases the leases.
    let _ = worker_task.await;
    draining.cancel();
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "the HTTP server stopped with an error"),
        Err(e) => warn!(error = %e, "the HTTP server task failed"),
    }
    health.stop();
    info!("stopped");
    Ok(crate::exit::SUCCESS)
}

/// The database's name as `/health` shows it.
fn display_name(backend: maestro_store::Backend) -> &'static str {
    match backend {
        maestro_store::Backend::Postgres => "PostgreSQL",
        _ => "SQLite",
    }
}

/// This replica's identity in leases: the pod name where there is one, plus a random suffix so a
/// restarted pod never mistakes an old lease for its own.
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "maestro".to_string());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://maestro.db"), "sqlite://maestro.db");
    }
}
