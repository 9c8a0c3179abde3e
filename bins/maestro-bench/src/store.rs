//! `maestro-bench store`: the no-op graph of a shape through the engine with the durable store,
//! every transition persisted (DESIGN §8). Each invocation gets a fresh database: a new
//! PostgreSQL database next to the one in the URL (dropped afterwards), or a new SQLite file at
//! the URL's path (an existing file there is replaced).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use maestro_dag::{Engine, EventType, ExecutorRegistry, StartOptions, Workflow};
use maestro_store::{DatabaseUrl, DurableStore, StoreOptions};
use serde_json::{Value, json};

use crate::shapes::Shape;
use crate::{Noop, ShapeArg, definition, round3};

/// Arguments of `maestro-bench store`.
#[derive(Args)]
pub(crate) struct StoreArgs {
    /// `postgres://…` (a fresh database is created on that server) or `sqlite://PATH`.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Graph shape (see ../shared/bench/SHAPES.md).
    #[arg(long, value_enum)]
    shape: ShapeArg,
    /// Number of nodes.
    #[arg(long)]
    nodes: usize,
    /// Runs of the graph at once (completions are counted over all of them).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Group commit (`true`/`false`); the backend's default when absent.
    #[arg(long)]
    group_commit: Option<bool>,
    /// Connection pool size.
    #[arg(long, default_value_t = 8)]
    pool_size: usize,
}

pub(crate) fn run(args: StoreArgs) -> anyhow::Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(args))
}

/// A fresh database for this invocation, and how to remove it.
enum Fresh {
    Postgres { server: String, name: String },
    Sqlite,
}

async fn bench(args: StoreArgs) -> anyhow::Result<Value> {
    let shape: Shape = args.shape.into();
    let n = args.nodes;
    let parsed = DatabaseUrl::parse(&args.database_url)?;
    let (url, fresh) = match &parsed {
        DatabaseUrl::Postgres(server) => {
            let name = format!("maestro_bench_{}_{}", std::process::id(), fastrand::u32(..));
            let url = maestro_store::admin::create_database(server, &name).await?;
            (
                url,
                Fresh::Postgres {
                    server: server.clone(),
                    name,
                },
            )
        }
        DatabaseUrl::Sqlite(path) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
            (args.database_url.clone(), Fresh::Sqlite)
        }
        _ => bail!("unsupported database url"),
    };
    let result = timed(&args, shape, n, &url).await;
    if let Fresh::Postgres { server, name } = fresh {
        maestro_store::admin::drop_database(&server, &name).await?;
    }
    result
}

async fn timed(args: &StoreArgs, shape: Shape, n: usize, url: &str) -> anyhow::Result<Value> {
    let mut options = StoreOptions::default().with_pool_size(args.pool_size);
    if let Some(on) = args.group_commit {
        options = options.with_group_commit(on);
    }
    let store: Arc<dyn DurableStore> = maestro_store::connect_with(url, options)?;
    store.migrate().await.context("migrations")?;
    let registry = ExecutorRegistry::new().with("noop", Noop);
    let workflow = Arc::new(
        Workflow::compile(definition(shape, n), Some(&registry)).context("invalid bench graph")?,
    );
    let engine = Engine::new(store.clone(), registry);
    // Node completions as they are broadcast (after they are stored), for the chain's
    // per-node latency.
    let mut events = engine.subscribe();
    let stamps = tokio::spawn(async move {
        let mut at = Vec::new();
        while let Ok(e) = events.recv().await {
            if e.kind == EventType::NodeCompleted {
                at.push(Instant::now());
            }
            if e.kind.is_terminal() {
                break;
            }
        }
        at
    });
    let t = Instant::now();
    let mut handles = Vec::with_capacity(args.runs);
    for _ in 0..args.runs.max(1) {
        handles.push(
            engine
                .start(workflow.clone(), json!({}), StartOptions::default())
                .await?,
        );
    }
    let mut completed = 0;
    for h in handles {
        let outcome = h.wait().await;
        if outcome.completed != n {
            bail!(
                "run ended {} with {} of {n} nodes completed ({:?})",
                outcome.status,
                outcome.completed,
                outcome.error
            );
        }
        completed += outcome.completed;
    }
    let secs = t.elapsed().as_secs_f64();
    let mut line = json!({
        "shape": shape.name(),
        "nodes": n,
        "ms": round3(secs * 1e3),
        "completions_per_s": (completed as f64 / secs).round(),
    });
    if args.runs > 1 {
        line["runs"] = json!(args.runs);
    }
    if let Some(on) = args.group_commit {
        line["group_commit"] = json!(on);
    }
    if matches!(shape, Shape::Chain) && args.runs <= 1 {
        let at = stamps.await?;
        let mut gaps: Vec<f64> = at
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
            .collect();
        if !gaps.is_empty() {
            gaps.sort_by(f64::total_cmp);
            line["node_p50_ms"] = json!(round3(gaps[gaps.len() / 2]));
            line["node_p99_ms"] = json!(round3(gaps[gaps.len() * 99 / 100]));
        }
    } else {
        stamps.abort();
    }
    Ok(line)
}
