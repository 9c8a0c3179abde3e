//! The child process of the crash test (`tests/it/crash.rs`); not a tool for users.
//!
//! `maestro-store-crash URL EFFECTS RUNS INCARNATION` opens the store at `URL`, creates `RUNS`
//! runs of a fixed workflow if the store has none, then claims and drives every run that has not
//! ended until all are completed. Every node execution appends `X <incarnation> <run> <node>` to
//! the file `EFFECTS` (a side effect outside the store, counted by the test), and before a run
//! is resumed its completed nodes, as loaded from the store, are appended as
//! `C <incarnation> <run> <node>`. The test SIGKILLs this process at random moments.
#![allow(clippy::print_stdout)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use maestro_dag::store::{NewRun, RunFilter};
use maestro_dag::{
    Engine, ExecutorRegistry, FnExecutor, NodeContext, NodeDefinition, NodeError, NodeStatus,
    RunStatus, Workflow, WorkflowDefinition,
};
use serde_json::{Value, json};

/// start → six parallel nodes → join → a chain of sixteen (24 nodes).
fn workflow(registry: &ExecutorRegistry) -> Arc<Workflow> {
    let mut nodes = vec![NodeDefinition::new("start", "work")];
    let mids: Vec<String> = (0..6).map(|i| format!("mid{i}")).collect();
    for m in &mids {
        nodes.push(NodeDefinition::new(m.clone(), "work").after(["start"]));
    }
    nodes.push(NodeDefinition::new("join", "work").after(mids));
    let mut prev = "join".to_string();
    for i in 1..=16 {
        let id = format!("t{i}");
        nodes.push(NodeDefinition::new(id.clone(), "work").after([prev]));
        prev = id;
    }
    let def = WorkflowDefinition::new("crash_wf", nodes);
    Arc::new(Workflow::compile(def, Some(registry)).expect("the crash workflow is valid"))
}

fn append(file: &Mutex<File>, line: String) {
    let mut f = file
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f.write_all(line.as_bytes())
        .expect("append to the effects file");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, effects, runs, incarnation] = &args[..] else {
        return Err("usage: maestro-store-crash URL EFFECTS RUNS INCARNATION".into());
    };
    let runs: usize = runs.parse()?;
    let effects = Arc::new(Mutex::new(
        OpenOptions::new().create(true).append(true).open(effects)?,
    ));
    let store = maestro_store::connect(url)?;
    store.migrate().await?;

    let inc = incarnation.clone();
    let fx = effects.clone();
    let registry = ExecutorRegistry::new().with(
        "work",
        FnExecutor::new(move |ctx: NodeContext| {
            let (inc, fx) = (inc.clone(), fx.clone());
            async move {
                append(&fx, format!("X {inc} {} {}\n", ctx.run_id, ctx.node_id));
                tokio::time::sleep(Duration::from_millis(fastrand::u64(5..40))).await;
                Ok::<Value, NodeError>(json!({"by": inc}))
            }
        }),
    );
    let wf = workflow(&registry);
    let engine = Engine::new(store.clone(), registry);

    let existing = store
        .list_runs(&RunFilter {
            limit: 10_000,
            ..RunFilter::default()
        })
        .await?;
    if existing.is_empty() {
        for i in 0..runs {
            store
                .create_run(NewRun {
                    run_id: Arc::from(format!("run{i:02}")),
                    workflow_id: Arc::from(wf.id()),
                    version: wf.version(),
                    content_hash: wf.content_hash().to_string(),
                    inputs: Arc::new(json!({"i": i})),
                    idempotency_key: Some(format!("crash-{i}")),
                })
                .await?;
        }
    }
    let all = store
        .list_runs(&RunFilter {
            limit: 10_000,
            ..RunFilter::default()
        })
        .await?;
    let mut handles = Vec::new();
    for run in all.iter().filter(|r| !r.status.is_terminal()) {
        // The same replica identity in every incarnation: its own lease is claimable at once.
        let Some(lease) = store
            .claim_run(&run.run_id, "crash-replica", Duration::from_secs(60))
            .await?
        else {
            return Err(format!("run {} is leased by someone else", run.run_id).into());
        };
        let snapshot = store.load_run(&run.run_id).await?.ok_or("run vanished")?;
        for n in snapshot
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Completed)
        {
            append(
                &effects,
                format!("C {incarnation} {} {}\n", run.run_id, n.node_id),
            );
        }
        handles.push(engine.recover(wf.clone(), &run.run_id, lease.epoch).await?);
    }
    for h in handles {
        let outcome = h.wait().await;
        if outcome.status != RunStatus::Completed {
            return Err(format!("run {} ended {:?}", outcome.run_id, outcome).into());
        }
    }
    println!("all runs completed");
    Ok(())
}
