//! `run FILE`: an embedded run on the in-memory store with the built-in executors. The engine's
//! events drive a progress bar on stderr; the node results are printed as a table at the end.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use maestro_dag::{
    Engine, Event, EventType, MemoryStore, NodeRecord, NodeStatus, RunOutcome, RunStatus,
    StartOptions, Workflow,
};
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::definition;
use crate::exit;

/// Why a human_review node is rejected when `--approve-all` is not given.
const NO_REVIEWER: &str = "nobody can review in an embedded run; pass --approve-all to approve";

/// Parses and validates the file, runs it on a multi-threaded runtime, prints the results.
pub(crate) fn run_command(args: RunArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let registry = maestro_executors::builtin_registry();
    let workflow = match definition::load(&args.file, &registry) {
        Ok(w) => Arc::new(w),
        Err(d) => {
            d.print();
            return Ok(exit::FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let engine = Engine::new(Arc::new(MemoryStore::new()), registry);
    let report = runtime.block_on(drive(&engine, workflow.clone(), args))?;
    report.print(&workflow, out)?;
    Ok(
        if report.outcome.status == RunStatus::Completed && report.outcome.error.is_none() {
            exit::SUCCESS
        } else {
            exit::FAILURE
        },
    )
}

/// What a finished run leaves to print.
struct Report {
    outcome: RunOutcome,
    nodes: HashMap<Arc<str>, NodeRecord>,
    /// When each node's first attempt started (or it began waiting for approval), in
    /// milliseconds since the Unix epoch.
    first_started: HashMap<Arc<str>, i64>,
    elapsed: Duration,
}

async fn drive(engine: &Engine, workflow: Arc<Workflow>, args: RunArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    // Subscribe before starting, so that no event of the run is missed.
    let mut events = engine.subscribe();
    let handle = engine
        .start(workflow.clone(), args.inputs, StartOptions::default())
        .await
        .context("cannot start the run")?;
    let run_id: Arc<str> = Arc::from(handle.run_id());
    info!(run_id = %run_id, workflow = %workflow.id(), "run started");

    let progress = progress_bar(workflow.len() as u64);
    let wait = handle.wait();
    tokio::pin!(wait);
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let mut events_open = true;
    let outcome = loop {
        tokio::select! {
            outcome = &mut wait => break outcome,
            event = events.recv(), if events_open => match event {
                Ok(event) if event.run_id == run_id => {
                    on_event(engine, &event, args.approve_all, &progress).await;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "the progress display fell behind the engine's events");
                }
                Err(RecvError::Closed) => events_open = false,
            },
            () = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                progress.set_message("interrupted: cancelling the run");
                if let Err(e) = engine.cancel(&run_id).await {
                    warn!(run_id = %run_id, error = %e, "cannot cancel the run");
                }
            }
        }
    };
    progress.finish_and_clear();

    let snapshot = engine
        .store()
        .load_run(&run_id)
        .await
        .context("cannot read the run's results")?
        .with_context(|| format!("run {run_id} is not in the store"))?;
    let log = engine
        .store()
        .events(&run_id, 0, usize::MAX)
        .await
        .context("cannot read the run's events")?;
    let mut first_started = HashMap::new();
    for e in &log {
        if matches!(
            e.kind,
            EventType::NodeStarted | EventType::NodeWaitingApproval
        ) && let Some(node) = &e.node_id
        {
            first_started
                .entry(node.clone())
                .or_insert(e.timestamp.timestamp_millis());
        }
    }
    Ok(Report {
        outcome,
        nodes: snapshot
            .nodes
            .into_iter()
            .map(|n| (n.node_id.clone(), n))
            .collect(),
        first_started,
        elapsed: started.elapsed(),
    })
}

fn progress_bar(nodes: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(nodes), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} nodes  {wide_msg}",
        )
        .expect("the progress template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Advances the progress bar, and answers human reviews.
async fn on_event(engine: &Engine, event: &Event, approve_all: bool, progress: &ProgressBar) {
    let node = event.node_id.as_deref().unwrap_or_default();
    match event.kind {
        EventType::NodeStarted => {
            let attempt = event.data.attempt.unwrap_or(1);
            progress.set_message(if attempt > 1 {
                format!("{node}: attempt {attempt}")
            } else {
                format!("{node}: started")
            });
            info!(node = %node, attempt, "node started");
        }
        EventType::NodeCompleted => {
            progress.inc(1);
            progress.set_message(format!("{node}: completed"));
            info!(node = %node, "node completed");
        }
        EventType::NodeFailed => {
            progress.inc(1);
            let error = event.data.error.as_deref().unwrap_or_default();
            progress.set_message(format!("{node}: failed: {error}"));
            info!(node = %node, error = %error, "node failed");
        }
        EventType::NodeSkipped => {
            progress.inc(1);
            info!(node = %node, reason = event.data.reason.as_deref().unwrap_or_default(), "node skipped");
        }
        EventType::NodeRetry => {
            let error = event.data.error.as_deref().unwrap_or_default();
            let delay = event.data.delay_ms.unwrap_or_default();
            progress.set_message(format!("{node}: {error}; retrying in {delay} ms"));
            info!(node = %node, error = %error, delay_ms = delay, "node will retry");
        }
        EventType::NodeWaitingApproval => {
            let result = if approve_all {
                progress.set_message(format!("{node}: approved (--approve-all)"));
                info!(node = %node, "approving (--approve-all)");
                engine.approve(&event.run_id, node, None).await
            } else {
                warn!(node = %node, "a human_review node waits; rejecting it: {NO_REVIEWER}");
                engine
                    .reject(&event.run_id, node, Some(NO_REVIEWER.to_string()))
                    .await
            };
            if let Err(e) = result {
                warn!(node = %node, error = %e, "cannot settle the review");
            }
        }
        EventType::WorkflowCancelled => {
            let n = event
                .data
                .extra
                .get("cancelled_nodes")
                .and_then(|v| v.as_array())
                .map_or(0, Vec::len);
            progress.inc(n as u64);
        }
        _ => {}
    }
}

impl Report {
    /// The table of node results, in definition order, then a summary line.
    fn print(&self, workflow: &Workflow, out: &mut dyn Write) -> std::io::Result<()> {
        let mut rows = vec![[
            "NODE".to_string(),
            "STATUS".to_string(),
            "ATTEMPTS".to_string(),
            "DURATION".to_string(),
            "ERROR / REASON".to_string(),
        ]];
        for id in workflow.node_ids() {
            let Some(rec) = self.nodes.get(id) else {
                rows.push([
                    id.to_string(),
                    NodeStatus::Pending.to_string(),
                    "0".into(),
                    "-".into(),
                    String::new(),
                ]);
                continue;
            };
            let start = self
                .first_started
                .get(id)
                .copied()
                .or_else(|| rec.started_at.map(|t| t.timestamp_millis()));
            let end = rec.finished_at.map(|t| t.timestamp_millis());
            let duration = match (start, end) {
                (Some(s), Some(e)) => format_duration(Duration::from_millis((e - s).max(0) as u64)),
                _ => "-".into(),
            };
            let detail = match rec.status {
                NodeStatus::Completed => "",
                NodeStatus::Failed => rec.error.as_deref().unwrap_or_default(),
                _ => rec
                    .reason
                    .as_deref()
                    .or(rec.error.as_deref())
                    .unwrap_or_default(),
            };
            rows.push([
                id.to_string(),
                rec.status.to_string(),
                rec.attempt.to_string(),
                duration,
                detail.replace('\n', " "),
            ]);
        }
        let mut widths = [0usize; 5];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let line = format!(
                "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
            );
            writeln!(out, "{}", line.trim_end())?;
        }
        let o = &self.outcome;
        writeln!(
            out,
            "\nrun {} {} in {}: {} completed, {} failed, {} skipped, {} cancelled",
            o.run_id,
            o.status,
            format_duration(self.elapsed),
            o.completed,
            o.failed,
            o.skipped,
            o.cancelled
        )?;
        if let Some(error) = &o.error {
            writeln!(out, "the run stopped early: {error}")?;
        }
        Ok(())
    }
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short_and_readable() {
        assert_eq!(format_duration(Duration::from_millis(0)), "0 ms");
        assert_eq!(format_duration(Duration::from_millis(999)), "999 ms");
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.23 s");
    }
}
