//! `maestro-bench`: benchmark driver. Prints one JSON object per line (DESIGN §8) so results can
//! be compared by scripts against the peer engine (`../shared/bench/dagrs-bench`).
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use maestro_dag::{
    Engine, ExecutorRegistry, MemoryStore, NodeContext, NodeDefinition, NodeError, NodeExecutor,
    NodeInput, StartOptions, Workflow, WorkflowDefinition,
};
use serde_json::{Value, json};

mod shapes;
mod store;

// The same allocator the server uses: the engine allocates small, short-lived objects per node.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use shapes::Shape;

#[derive(Parser)]
#[command(
    name = "maestro-bench",
    about = "Maestro benchmark driver (one JSON object per line)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The in-memory engine running N no-op nodes of a shape.
    Core {
        /// Graph shape (see ../shared/bench/SHAPES.md).
        #[arg(long, value_enum)]
        shape: ShapeArg,
        /// Number of nodes.
        #[arg(long)]
        nodes: usize,
        /// Number of timed runs.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// The tokio runtime the engine runs on.
        #[arg(long, value_enum, default_value_t = RuntimeArg::Multi)]
        runtime: RuntimeArg,
    },
    /// Time validation and compilation of a definition of N nodes.
    Validate {
        /// Graph shape.
        #[arg(long, value_enum)]
        shape: ShapeArg,
        /// Number of nodes.
        #[arg(long)]
        nodes: usize,
        /// Number of timed runs.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// The same graph through the engine with a durable store, every transition persisted.
    Store(store::StoreArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeArg {
    /// Multi-threaded (one worker per core), as the server runs.
    Multi,
    /// Current-thread: everything on the main thread.
    Current,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShapeArg {
    Chain,
    Fanout,
    Layered,
}

impl From<ShapeArg> for Shape {
    fn from(s: ShapeArg) -> Self {
        match s {
            ShapeArg::Chain => Shape::Chain,
            ShapeArg::Fanout => Shape::Fanout,
            ShapeArg::Layered => Shape::Layered,
        }
    }
}

/// The no-op executor: output `{}`, completed synchronously.
struct Noop;

#[async_trait::async_trait]
impl NodeExecutor for Noop {
    async fn execute(&self, _ctx: NodeContext) -> Result<Value, NodeError> {
        Ok(json!({}))
    }

    fn execute_now(&self, _input: &NodeInput<'_>) -> Option<Result<Value, NodeError>> {
        Some(Ok(Value::Object(serde_json::Map::new())))
    }
}

fn definition(shape: Shape, n: usize) -> WorkflowDefinition {
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (a, b) in shapes::edges(shape, n) {
        deps[b].push(a);
    }
    let nodes = deps
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            NodeDefinition::new(format!("n{i}"), "noop")
                .after(d.into_iter().map(|j| format!("n{j}")))
        })
        .collect();
    WorkflowDefinition::new(format!("bench_{}_{n}", shape.name()), nodes)
}

fn stats(mut times_ms: Vec<f64>) -> (f64, f64) {
    times_ms.sort_by(f64::total_cmp);
    (times_ms[0], times_ms[times_ms.len() / 2])
}

fn core(shape: Shape, n: usize, repeats: usize, runtime: RuntimeArg) -> anyhow::Result<Value> {
    let rt = match runtime {
        RuntimeArg::Multi => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        RuntimeArg::Current => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };
    let registry = ExecutorRegistry::new().with("noop", Noop);
    let def = definition(shape, n);
    let workflow =
        Arc::new(Workflow::compile(def, Some(&registry)).context("invalid bench graph")?);
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let engine = Engine::new(Arc::new(MemoryStore::new()), registry.clone());
        let wf = workflow.clone();
        let t = Instant::now();
        let outcome = rt.block_on(async move {
            let handle = engine.start(wf, json!({}), StartOptions::default()).await?;
            anyhow::Ok(handle.wait().await)
        })?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if outcome.completed != n {
            bail!(
                "run ended {} with {} of {n} nodes completed",
                outcome.status,
                outcome.completed
            );
        }
    }
    let (best, median) = stats(times);
    Ok(json!({
        "shape": shape.name(),
        "nodes": n,
        "best_ms": round3(best),
        "median_ms": round3(median),
        "runtime": match runtime { RuntimeArg::Multi => "multi_thread", RuntimeArg::Current => "current_thread" },
        "peak_rss_bytes_per_node": peak_rss_bytes() / n.max(1) as u64,
    }))
}

fn validate(shape: Shape, n: usize, repeats: usize) -> anyhow::Result<Value> {
    let registry = ExecutorRegistry::new().with("noop", Noop);
    let def = definition(shape, n);
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let d = def.clone();
        let t = Instant::now();
        let wf = Workflow::compile(d, Some(&registry)).context("invalid bench graph")?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drop(wf);
    }
    let (best, median) = stats(times);
    Ok(
        json!({"bench": "validate", "shape": shape.name(), "nodes": n, "best_ms": round3(best), "median_ms": round3(median)}),
    )
}

/// The process's peak resident memory (`VmHWM`), in bytes; 0 where /proc is not there.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let line = match cli.command {
        Command::Core {
            shape,
            nodes,
            repeats,
            runtime,
        } => core(shape.into(), nodes, repeats.max(1), runtime)?,
        Command::Validate {
            shape,
            nodes,
            repeats,
        } => validate(shape.into(), nodes, repeats.max(1))?,
        Command::Store(args) => store::run(args)?,
    };
    println!("{line}");
    Ok(())
}
