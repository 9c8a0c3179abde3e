//! Following the events of one run, or of every run of a workflow, in order, gap-free and
//! without duplicates, for the WebSocket routes.
//!
//! The approach is the SSE stream's: subscribe to the engine's broadcast *before* reading the
//! store, then only ever forward the event numbered `last + 1` of a run. Anything out of order
//! (a lagging subscriber, a run driven by another replica) is read from the store instead, and
//! runs this replica does not drive are polled from the store once a second. On a server with a
//! worker (several replicas), a workflow follower also lists the workflow's newest runs on each
//! poll, so it discovers runs started on other replicas.
//!
//! Which events of a workflow's runs a workflow follower forwards:
//! - runs active (not terminal) when it starts: events after `after` if given (`after=0`
//!   replays them whole), otherwise only the ones that happen from then on;
//! - runs created after it started: every event, from seq 1;
//! - older runs that come back (a retry): events stamped at or after its start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use maestro_dag::store::RunFilter;
use maestro_dag::{Event, RunRecord, RunStatus};
use tokio::sync::{broadcast, mpsc};

use crate::state::ApiContext;

/// Events read from the store per page while catching up.
const PAGE: usize = 500;
/// How often runs driven elsewhere (and a workflow's run list) are read from the store.
pub(crate) const POLL: Duration = Duration::from_secs(1);
/// Runs listed per poll of a workflow (newest first).
const LIST_LIMIT: usize = 100;
/// At most this many finished runs are remembered by a workflow follower.
const MAX_FINISHED: usize = 10_000;

/// What is followed.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// One run; the follower ends after the run's terminal event.
    Run(Arc<str>),
    /// Every run of a workflow; the follower ends only when the receiver goes away.
    Workflow(Arc<str>),
}

#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// The last seq forwarded (or skipped as too old).
    last: u64,
    /// Events stamped before this are skipped (runs that existed before the follower).
    not_before: Option<DateTime<Utc>>,
    /// The run's terminal event was forwarded; it is not polled until it moves again.
    done: bool,
}

/// Why a follower stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// A run follower forwarded its run's terminal event.
    Finished,
    /// The receiver went away or the server is shutting down.
    Gone,
    /// The store failed.
    Failed,
}

/// Forwards events into a channel; see the module docs.
pub(crate) struct Follower {
    ctx: ApiContext,
    scope: Scope,
    since: DateTime<Utc>,
    cursors: HashMap<Arc<str>, Cursor>,
    tx: mpsc::Sender<Arc<Event>>,
}

impl Follower {
    /// A follower of one run from `after`.
    pub(crate) fn run(
        ctx: ApiContext,
        run_id: Arc<str>,
        after: u64,
        tx: mpsc::Sender<Arc<Event>>,
    ) -> Self {
        let mut cursors = HashMap::new();
        cursors.insert(
            run_id.clone(),
            Cursor {
                last: after,
                not_before: None,
                done: false,
            },
        );
        Self {
            ctx,
            scope: Scope::Run(run_id),
            since: Utc::now(),
            cursors,
            tx,
        }
    }

    /// A follower of every run of a workflow (see the module docs for `after`).
    pub(crate) fn workflow(
        ctx: ApiContext,
        workflow_id: Arc<str>,
        tx: mpsc::Sender<Arc<Event>>,
    ) -> Self {
        Self {
            ctx,
            scope: Scope::Workflow(workflow_id),
            since: Utc::now(),
            cursors: HashMap::new(),
            tx,
        }
    }

    /// Follows until the scope ends or the receiver goes away. `live` must have been
    /// subscribed before anything was read from the store (it is, when `start` is used).
    pub(crate) async fn follow(
        mut self,
        mut live: broadcast::Receiver<Arc<Event>>,
        after: Option<u64>,
    ) -> End {
        let end = self.pump(&mut live, after).await;
        tracing::debug!(scope = ?self.scope, end = ?end, "event follower ended");
        end
    }

    async fn pump(
        &mut self,
        live: &mut broadcast::Receiver<Arc<Event>>,
        after: Option<u64>,
    ) -> End {
        if let Scope::Workflow(_) = self.scope
            && let Err(end) = self.initial_runs(after).await
        {
            return end;
        }
        if let Err(end) = self.catch_up_all().await {
            return end;
        }
        let mut poll = tokio::time::interval(POLL);
        poll.reset();
        let shutdown = self.ctx.streams.clone();
        loop {
            let step = tokio::select! {
                () = shutdown.cancelled() => Err(End::Gone),
                () = self.tx.closed() => Err(End::Gone),
                received = live.recv() => match received {
                    Ok(e) => self.on_live(e).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.poll(true).await,
                    Err(broadcast::error::RecvError::Closed) => Err(End::Gone),
                },
                _ = poll.tick() => self.poll(false).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    fn in_scope(&self, e: &Event) -> bool {
        match &self.scope {
            Scope::Run(id) => *e.run_id == **id,
            Scope::Workflow(id) => *e.workflow_id == **id,
        }
    }

    /// The runs of the workflow that are active now, starting at `after` or at their current
    /// end.
    async fn initial_runs(&mut self, after: Option<u64>) -> Result<(), End> {
        let runs = self.list().await?;
        for r in runs.into_iter().filter(|r| !r.status.is_terminal()) {
            let last = match after {
                Some(a) => a,
                None => match self.ctx.store.load_run(&r.run_id).await {
                    Ok(Some(s)) => s.last_seq,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(run_id = %r.run_id, error = %e, "event follower: store read failed");
                        return Err(End::Failed);
                    }
                },
            };
            self.cursors.insert(
                r.run_id.clone(),
                Cursor {
                    last,
                    not_before: None,
                    done: false,
                },
            );
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<RunRecord>, End> {
        let Scope::Workflow(id) = &self.scope else {
            return Ok(Vec::new());
        };
        let filter = RunFilter {
            workflow_id: Some(id.to_string()),
            limit: LIST_LIMIT,
            ..RunFilter::default()
        };
        self.ctx.store.list_runs(&filter).await.map_err(|e| {
            tracing::warn!(workflow_id = %id, error = %e, "event follower: listing runs failed");
            End::Failed
        })
    }

    /// A cursor for a run seen for the first time after the follower started.
    fn discovered(&self, created_at: Option<DateTime<Utc>>) -> Cursor {
        let new = created_at.is_some_and(|t| t >= self.since);
        Cursor {
            last: 0,
            not_before: (!new).then_some(self.since),
            done: false,
        }
    }

    async fn on_live(&mut self, e: Arc<Event>) -> Result<(), End> {
        if !self.in_scope(&e) {
            return Ok(());
        }
        let cursor = match self.cursors.get(&e.run_id) {
            Some(c) => *c,
            None => {
                // A workflow's run not seen before (a run follower always knows its run).
                let created = match self.ctx.store.load_run(&e.run_id).await {
                    Ok(s) => s.map(|s| s.run.created_at),
                    Err(err) => {
                        tracing::warn!(run_id = %e.run_id, error = %err, "event follower: store read failed");
                        return Err(End::Failed);
                    }
                };
                let c = self.discovered(created);
                self.cursors.insert(e.run_id.clone(), c);
                return self.catch_up(&e.run_id).await;
            }
        };
        if e.seq <= cursor.last {
            Ok(())
        } else if e.seq == cursor.last + 1 {
            self.forward(&e).await
        } else {
            self.catch_up(&e.run_id).await
        }
    }

    /// Reads the store for runs driven elsewhere (all runs after a lag), and for a workflow
    /// the list of its runs.
    async fn poll(&mut self, all: bool) -> Result<(), End> {
        // Without a worker every run is driven by this engine, whose broadcast announces it:
        // the run list is only read after a lag. With one, other replicas start runs too.
        if let Scope::Workflow(_) = self.scope
            && (all || self.ctx.worker.is_some())
        {
            let runs = self.list().await?;
            for r in runs {
                match self.cursors.get_mut(&r.run_id) {
                    Some(c) => {
                        if c.done && !r.status.is_terminal() {
                            c.done = false;
                        }
                    }
                    None => {
                        let relevant = r.created_at >= self.since
                            || !r.status.is_terminal()
                            || r.finished_at.is_some_and(|t| t >= self.since);
                        if relevant {
                            let c = self.discovered(Some(r.created_at));
                            self.cursors.insert(r.run_id.clone(), c);
                        }
                    }
                }
            }
            self.forget_finished();
        }
        let ids: Vec<Arc<str>> = self
            .cursors
            .iter()
            .filter(|(id, c)| !c.done && (all || !self.ctx.engine.is_driving(id)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.catch_up(&id).await?;
        }
        Ok(())
    }

    fn forget_finished(&mut self) {
        if self.cursors.len() <= MAX_FINISHED {
            return;
        }
        self.cursors.retain(|_, c| !c.done);
    }

    async fn catch_up_all(&mut self) -> Result<(), End> {
        let ids: Vec<Arc<str>> = self.cursors.keys().cloned().collect();
        for id in ids {
            self.catch_up(&id).await?;
        }
        Ok(())
    }

    /// Forwards every stored event of `run_id` after its cursor.
    async fn catch_up(&mut self, run_id: &Arc<str>) -> Result<(), End> {
        loop {
            let Some(last) = self.cursors.get(run_id).map(|c| c.last) else {
                return Ok(());
            };
            let page = match self.ctx.store.events(run_id, last, PAGE).await {
                Ok(p) => p,
                Err(maestro_dag::StoreError::NotFound(_)) => {
                    // Deleted along with its workflow: nothing more will come.
                    self.cursors.remove(run_id);
                    return match self.scope {
                        Scope::Run(_) => Err(End::Finished),
                        Scope::Workflow(_) => Ok(()),
                    };
                }
                Err(e) => {
                    tracing::warn!(run_id = %run_id, error = %e, "event follower: store read failed");
                    return Err(End::Failed);
                }
            };
            let full = page.len() == PAGE;
            let mut progressed = false;
            for e in page {
                let expected = self.cursors.get(run_id).map_or(0, |c| c.last + 1);
                if e.seq != expected {
                    continue;
                }
                progressed = true;
                self.forward(&Arc::new(e)).await?;
            }
            if !full || !progressed {
                return Ok(());
            }
        }
    }

    /// Forwards one event (the next of its run), or skips it when it predates the cursor's
    /// `not_before`.
    async fn forward(&mut self, e: &Arc<Event>) -> Result<(), End> {
        let Some(c) = self.cursors.get_mut(&e.run_id) else {
            return Ok(());
        };
        c.last = e.seq;
        let terminal = e.kind.is_terminal();
        c.done = terminal;
        let skip = c.not_before.is_some_and(|t| e.timestamp < t);
        if !skip && self.tx.send(e.clone()).await.is_err() {
            return Err(End::Gone);
        }
        if terminal && let Scope::Run(_) = self.scope {
            return Err(End::Finished);
        }
        Ok(())
    }
}

/// Whether a run with this status and last seq has nothing more to send after `after`.
pub(crate) fn finished(status: RunStatus, last_seq: u64, after: u64) -> bool {
    status.is_terminal() && after >= last_seq
}
