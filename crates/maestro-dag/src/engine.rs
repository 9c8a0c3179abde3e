//! The run engine: dependency-driven scheduling with trigger rules, concurrency limits, retries,
//! timeouts, pause/resume/cancel, human review, retry-from-failed and recovery from a store.
//!
//! Each run is driven by one task (the *driver*). The driver owns the run's state; everything
//! else talks to it through commands. One turn of the driver:
//! 1. takes in whatever happened (attempts finished, timers fired, commands arrived),
//! 2. decides the consequences (nodes completed, skipped, started…) as node rows and events,
//! 3. writes them through the store as **one batch** (the transitions of a turn commit together),
//! 4. only then acts on them: launches attempts and broadcasts the events, in sequence order.
//!
//! So nothing is acted on before it is durable, the event log is gap-free by construction, and
//! a fan-out of ten thousand nodes costs a few store writes, not ten thousand.
//!
//! One exception, for speed: attempts whose executor finishes synchronously
//! ([`NodeExecutor::execute_now`], pure in-process work) are
//! settled before the turn's write, together with the nodes they make ready, up to a thousand
//! events a turn. Such an attempt may run before its `node_started` is stored; after a crash
//! before the write it runs again (at-least-once), and nothing stored as completed runs twice.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::definition::{FailurePolicy, NodeType, TriggerRule};
use crate::event::{Event, EventData, EventType};
use crate::executor::{
    ExecutorRegistry, NodeContext, NodeError, NodeExecutor, NodeInput, OutputSource,
};
use crate::status::{NodeStatus, RunStatus};
use crate::store::{
    CreateRun, NewRun, NodeRecord, RunPatch, RunSnapshot, RunStore, StoreError, WriteBatch,
};
use crate::workflow::Workflow;

/// Most attempts one driver turn starts (and so most transitions one batch carries, but for a
/// cascade of skips).
const TURN_STARTS: usize = 1024;
/// Events a turn's synchronous attempts may add before the turn's write ([`Driver::run_sync`]).
const TURN_EVENTS: usize = 1024;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Attempts executing at once across all runs (0 = unlimited).
    pub max_concurrent_nodes: usize,
    /// Capacity of the event broadcast; a subscriber further behind gets `Lagged`.
    pub event_capacity: usize,
    /// Longest pause between retries of a failing store write.
    pub store_retry_max: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_concurrent_nodes: 0,
            event_capacity: 4096,
            store_retry_max: Duration::from_secs(5),
        }
    }
}

/// Why an engine call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No such run (or it is not active in this engine).
    #[error("run {0} not found")]
    RunNotFound(String),
    /// No such node in the run's workflow.
    #[error("node {node_id} not found in run {run_id}")]
    NodeNotFound {
        /// The run.
        run_id: String,
        /// The node.
        node_id: String,
    },
    /// The run's workflow is not the one given.
    #[error("run {run_id} is pinned to {expected}, not {given}")]
    WorkflowMismatch {
        /// The run.
        run_id: String,
        /// The content hash the run was started with.
        expected: String,
        /// The content hash of the workflow given.
        given: String,
    },
    /// The transition is impossible in the current state (HTTP 409).
    #[error("{0}")]
    InvalidTransition(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// No such workflow (or version).
    #[error("workflow {0} not found")]
    WorkflowNotFound(String),
    /// A stored definition no longer compiles (e.g. an executor was removed).
    #[error("invalid workflow: {0}")]
    InvalidWorkflow(String),
}

impl EngineError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RunNotFound(_) => "run_not_found",
            Self::NodeNotFound { .. } => "node_not_found",
            Self::WorkflowMismatch { .. } => "workflow_mismatch",
            Self::InvalidTransition(_) => "invalid_transition",
            Self::Store(e) => e.code(),
            Self::ShuttingDown => "shutting_down",
            Self::WorkflowNotFound(_) => "workflow_not_found",
            Self::InvalidWorkflow(_) => "invalid_workflow",
        }
    }
}

/// Options for starting a run.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// The run's id (a UUIDv7 when absent).
    pub run_id: Option<String>,
    /// Start at most one run per (workflow, key).
    pub idempotency_key: Option<String>,
    /// The fencing epoch of the caller's lease on the run (0 without leases).
    pub epoch: u64,
}

/// How a run ended (or why its driver stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The run.
    pub run_id: Arc<str>,
    /// Its status when the driver stopped.
    pub status: RunStatus,
    /// Nodes completed.
    pub completed: usize,
    /// Nodes failed.
    pub failed: usize,
    /// Nodes skipped.
    pub skipped: usize,
    /// Nodes cancelled.
    pub cancelled: usize,
    /// Why the driver stopped early (the store failed, the lease was lost, shutdown).
    pub error: Option<String>,
}

/// A started run: its id and a way to wait for its end.
#[derive(Debug, Clone)]
pub struct RunHandle {
    run_id: Arc<str>,
    created: bool,
    done: watch::Receiver<Option<RunOutcome>>,
}

impl RunHandle {
    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// False when `start` found an earlier run with the same idempotency key.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Waits until the run's driver stops (the run ended, or the driver gave up).
    pub async fn wait(mut self) -> RunOutcome {
        loop {
            if let Some(outcome) = self.done.borrow_and_update().clone() {
                return outcome;
            }
            if self.done.changed().await.is_err() {
                let outcome = self.done.borrow().clone();
                return outcome.unwrap_or_else(|| RunOutcome {
                    run_id: self.run_id.clone(),
                    status: RunStatus::Running,
                    completed: 0,
                    failed: 0,
                    skipped: 0,
                    cancelled: 0,
                    error: Some("the run's driver stopped unexpectedly".into()),
                });
            }
        }
    }

    /// The outcome, if the run's driver has stopped.
    pub fn outcome(&self) -> Option<RunOutcome> {
        self.done.borrow().clone()
    }
}

enum Command {
    /// Wakes the driver up to look at engine-wide flags.
    Nudge,
    Cancel,
    Pause,
    Resume,
    Approve(u32, Option<Value>),
    Reject(u32, Option<String>),
    Shutdown,
}

/// Stops one driver ([`Engine::stopper`]).
#[derive(Debug)]
pub struct RunStopper {
    tx: mpsc::UnboundedSender<(Command, Reply)>,
    done: watch::Receiver<Option<RunOutcome>>,
    halt: CancellationToken,
}

impl RunStopper {
    /// Stops the driver (see [`Engine::stop`]) and waits until it has.
    pub async fn stop(mut self) {
        self.halt.cancel();
        let (reply, _answer) = oneshot::channel();
        let _ = self.tx.send((Command::Shutdown, reply));
        while self.done.borrow_and_update().is_none() {
            if self.done.changed().await.is_err() {
                break;
            }
        }
    }
}

struct Control {
    tx: mpsc::UnboundedSender<(Command, Reply)>,
    done: watch::Receiver<Option<RunOutcome>>,
    workflow: Arc<Workflow>,
    /// Cancelled by [`Engine::stop`] and [`Engine::shutdown`], so that a driver waiting out a
    /// store outage stops at once instead of after its backoff.
    halt: CancellationToken,
}

struct Inner {
    /// Attempts executing now, across runs.
    executing: std::sync::atomic::AtomicUsize,
    /// Set while the engine drains: drivers start no new attempt.
    quiescing: std::sync::atomic::AtomicBool,
    store: Arc<dyn RunStore>,
    executors: ExecutorRegistry,
    permits: Option<Arc<Semaphore>>,
    events: broadcast::Sender<Arc<Event>>,
    runs: Mutex<HashMap<Arc<str>, Control>>,
    config: EngineConfig,
}

/// The engine. Cheap to clone; all clones share runs, executors and the store.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("executors", &self.inner.executors)
            .field("active_runs", &self.active_runs())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Engine {
    /// An engine over a store and a registry of executors, with default settings.
    pub fn new(store: Arc<dyn RunStore>, executors: ExecutorRegistry) -> Self {
        Self::with_config(store, executors, EngineConfig::default())
    }

    /// An engine with explicit settings.
    pub fn with_config(
        store: Arc<dyn RunStore>,
        executors: ExecutorRegistry,
        config: EngineConfig,
    ) -> Self {
        let permits = (config.max_concurrent_nodes > 0)
            .then(|| Arc::new(Semaphore::new(config.max_concurrent_nodes)));
        let (events, _) = broadcast::channel(config.event_capacity.max(16));
        Self {
            inner: Arc::new(Inner {
                executing: std::sync::atomic::AtomicUsize::new(0),
                quiescing: std::sync::atomic::AtomicBool::new(false),
                store,
                executors,
                permits,
                events,
                runs: Mutex::new(HashMap::new()),
                config,
            }),
        }
    }

    /// The executor registry.
    pub fn executors(&self) -> &ExecutorRegistry {
        &self.inner.executors
    }

    /// The run store.
    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.inner.store
    }

    /// Every event of every run driven by this engine, after it is stored, in order per run.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// Ids of the runs this engine is driving.
    pub fn active_runs(&self) -> Vec<Arc<str>> {
        self.lock_runs().keys().cloned().collect()
    }

    /// Attempts executing now, across every run this engine drives.
    pub fn executing(&self) -> usize {
        self.inner
            .executing
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts draining: drivers keep taking in results (and writing them) but start no new
    /// attempt, without changing any run's status. Used before a shutdown, so that attempts in
    /// flight can finish ([`Engine::executing`] reaches 0) before [`Engine::shutdown`].
    pub fn quiesce(&self) {
        self.inner
            .quiescing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.lock_runs().values() {
            let (reply, _answer) = oneshot::channel();
            let _ = c.tx.send((Command::Nudge, reply));
        }
    }

    /// Free slots of the engine-wide limit (when one is set).
    pub fn available_slots(&self) -> Option<usize> {
        self.inner.permits.as_ref().map(|p| p.available_permits())
    }

    fn lock_runs(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Control>> {
        self.inner
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a new run of `workflow` with `inputs`. With an idempotency key that was used before
    /// for this workflow, returns the earlier run instead (`created() == false`).
    pub async fn start(
        &self,
        workflow: Arc<Workflow>,
        inputs: Value,
        options: StartOptions,
    ) -> Result<RunHandle, EngineError> {
        let epoch = options.epoch;
        let created = self.create_run(&workflow, inputs, options).await?;
        let run_id = created.run.run_id.clone();
        let inputs = created.run.inputs.clone();
        if !created.created {
            let existing = created.run.run_id.clone();
            if let Some(c) = self.lock_runs().get(&existing) {
                return Ok(RunHandle {
                    run_id: existing,
                    created: false,
                    done: c.done.clone(),
                });
            }
            let snapshot = self.load(&existing).await?;
            return Ok(finished_handle(&snapshot, false));
        }
        let driver = Driver::new(self.clone(), workflow, run_id, inputs, epoch, 0);
        Ok(self.launch(driver, Mode::Fresh, true))
    }

    /// Stores a new run (status `pending`) without driving it: for a replica that claims the
    /// run's lease first and then drives it with [`Engine::recover`]. With an idempotency key
    /// used before for this workflow, returns the earlier run (`created == false`).
    pub async fn create_run(
        &self,
        workflow: &Workflow,
        inputs: Value,
        options: StartOptions,
    ) -> Result<CreateRun, EngineError> {
        let run_id: Arc<str> = options
            .run_id
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::now_v7().to_string()));
        Ok(self
            .inner
            .store
            .create_run(NewRun {
                run_id,
                workflow_id: workflow.workflow_id.clone(),
                version: workflow.version(),
                content_hash: workflow.content_hash().to_string(),
                inputs: Arc::new(inputs),
                idempotency_key: options.idempotency_key,
            })
            .await?)
    }

    /// Stops driving one run without changing its stored state (its lease was lost, or the
    /// replica hands it over): running attempts are cancelled and will run again wherever the
    /// run is recovered. False when this engine was not driving it.
    pub async fn stop(&self, run_id: &str) -> bool {
        match self.stopper(run_id) {
            Some(stopper) => {
                stopper.stop().await;
                true
            }
            None => false,
        }
    }

    /// A handle that stops the driver running `run_id` now, and only that driver: stopping it
    /// later never touches a driver started for the same run afterwards. `None` when this
    /// engine is not driving the run.
    pub fn stopper(&self, run_id: &str) -> Option<RunStopper> {
        self.lock_runs().get(run_id).map(|c| RunStopper {
            tx: c.tx.clone(),
            done: c.done.clone(),
            halt: c.halt.clone(),
        })
    }

    /// Whether this engine is driving the run.
    pub fn is_driving(&self, run_id: &str) -> bool {
        self.lock_runs().contains_key(run_id)
    }

    /// Continues a run from what the store holds, e.g. after a crash or on a replica that took
    /// its lease over: completed nodes never run again; a node that was running runs again with
    /// the same idempotency key. A run that already ended just reports its outcome.
    pub async fn recover(
        &self,
        workflow: Arc<Workflow>,
        run_id: &str,
        epoch: u64,
    ) -> Result<RunHandle, EngineError> {
        if let Some(c) = self.lock_runs().get(run_id) {
            return Ok(RunHandle {
                run_id: Arc::from(run_id),
                created: false,
                done: c.done.clone(),
            });
        }
        let snapshot = self.load(run_id).await?;
        check_pinned(&workflow, &snapshot)?;
        if snapshot.run.status.is_terminal() {
            return Ok(finished_handle(&snapshot, false));
        }
        let mut driver = Driver::new(
            self.clone(),
            workflow,
            snapshot.run.run_id.clone(),
            snapshot.run.inputs.clone(),
            epoch,
            snapshot.last_seq,
        );
        let fresh = snapshot.run.status == RunStatus::Pending;
        driver.restore(&snapshot, false);
        Ok(self.launch(
            driver,
            if fresh { Mode::Fresh } else { Mode::Recovered },
            false,
        ))
    }

    /// Runs a failed or cancelled run again from its failed nodes: completed nodes keep their
    /// outputs; failed, cancelled and skipped nodes run again, and so does everything
    /// downstream of them.
    pub async fn retry(
        &self,
        workflow: Arc<Workflow>,
        run_id: &str,
        epoch: u64,
    ) -> Result<RunHandle, EngineError> {
        if self.lock_runs().contains_key(run_id) {
            return Err(EngineError::InvalidTransition(format!(
                "run {run_id} is still active"
            )));
        }
        let snapshot = self.load(run_id).await?;
        check_pinned(&workflow, &snapshot)?;
        if !matches!(
            snapshot.run.status,
            RunStatus::Failed | RunStatus::Cancelled
        ) {
            return Err(EngineError::InvalidTransition(format!(
                "run {run_id} is {}; only failed or cancelled runs can be retried",
                snapshot.run.status
            )));
        }
        let mut driver = Driver::new(
            self.clone(),
            workflow,
            snapshot.run.run_id.clone(),
            snapshot.run.inputs.clone(),
            epoch,
            snapshot.last_seq,
        );
        driver.restore(&snapshot, true);
        Ok(self.launch(driver, Mode::Retried, false))
    }

    async fn load(&self, run_id: &str) -> Result<RunSnapshot, EngineError> {
        self.inner
            .store
            .load_run(run_id)
            .await?
            .ok_or_else(|| EngineError::RunNotFound(run_id.to_string()))
    }

    fn launch(&self, mut driver: Driver, mode: Mode, created: bool) -> RunHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = watch::channel(None);
        let run_id = driver.run_id.clone();
        self.lock_runs().insert(
            run_id.clone(),
            Control {
                tx,
                done: done_rx.clone(),
                workflow: driver.wf.clone(),
                halt: driver.halt.clone(),
            },
        );
        driver.commands = Some(rx);
        let engine = self.clone();
        let id = run_id.clone();
        tokio::spawn(async move {
            let outcome = driver.run(mode).await;
            engine.lock_runs().remove(&id);
            let _ = done_tx.send(Some(outcome));
        });
        RunHandle {
            run_id,
            created,
            done: done_rx,
        }
    }

    async fn command(&self, run_id: &str, cmd: Command) -> Result<(), EngineError> {
        let tx = self
            .lock_runs()
            .get(run_id)
            .map(|c| c.tx.clone())
            .ok_or_else(|| EngineError::RunNotFound(run_id.to_string()))?;
        let (reply, answer) = oneshot::channel();
        tx.send((cmd, reply))
            .map_err(|_| EngineError::RunNotFound(run_id.to_string()))?;
        answer
            .await
            .unwrap_or(Err(EngineError::RunNotFound(run_id.to_string())))
    }

    fn node_index(&self, run_id: &str, node_id: &str) -> Result<u32, EngineError> {
        let runs = self.lock_runs();
        let c = runs
            .get(run_id)
            .ok_or_else(|| EngineError::RunNotFound(run_id.to_string()))?;
        c.workflow
            .index_of(node_id)
            .map(|i| i as u32)
            .ok_or_else(|| EngineError::NodeNotFound {
                run_id: run_id.to_string(),
                node_id: node_id.to_string(),
            })
    }

    /// Cancels an active run: running attempts are cancelled through their token, every node not
    /// yet finished becomes `cancelled`.
    pub async fn cancel(&self, run_id: &str) -> Result<(), EngineError> {
        self.command(run_id, Command::Cancel).await
    }

    /// Pauses a running run: no new node starts; running ones finish.
    pub async fn pause(&self, run_id: &str) -> Result<(), EngineError> {
        self.command(run_id, Command::Pause).await
    }

    /// Resumes a paused run.
    pub async fn resume(&self, run_id: &str) -> Result<(), EngineError> {
        self.command(run_id, Command::Resume).await
    }

    /// Approves a `human_review` node that waits for approval; `output` (an object) becomes its
    /// output, merged over `{"approved": true}`.
    pub async fn approve(
        &self,
        run_id: &str,
        node_id: &str,
        output: Option<Value>,
    ) -> Result<(), EngineError> {
        let i = self.node_index(run_id, node_id)?;
        self.command(run_id, Command::Approve(i, output)).await
    }

    /// Rejects a `human_review` node that waits for approval: it fails with the reason.
    pub async fn reject(
        &self,
        run_id: &str,
        node_id: &str,
        reason: Option<String>,
    ) -> Result<(), EngineError> {
        let i = self.node_index(run_id, node_id)?;
        self.command(run_id, Command::Reject(i, reason)).await
    }

    /// Stops driving every active run without changing its stored state (running attempts are
    /// cancelled and will run again when the run is recovered), then waits for the drivers.
    pub async fn shutdown(&self) {
        let controls: Vec<_> = self
            .lock_runs()
            .values()
            .map(|c| {
                c.halt.cancel();
                (c.tx.clone(), c.done.clone())
            })
            .collect();
        for (tx, mut done) in controls {
            let (reply, _answer) = oneshot::channel();
            let _ = tx.send((Command::Shutdown, reply));
            while done.borrow_and_update().is_none() {
                if done.changed().await.is_err() {
                    break;
                }
            }
        }
    }
}

impl OutputSource for Driver {
    fn output(&self, j: u32) -> Option<(&str, &Value)> {
        let out = self.nodes[j as usize].output.as_deref()?;
        Some((&self.wf.nodes[j as usize].id, out))
    }
}

fn check_pinned(workflow: &Workflow, snapshot: &RunSnapshot) -> Result<(), EngineError> {
    if workflow.content_hash() != snapshot.run.content_hash {
        return Err(EngineError::WorkflowMismatch {
            run_id: snapshot.run.run_id.to_string(),
            expected: snapshot.run.content_hash.clone(),
            given: workflow.content_hash().to_string(),
        });
    }
    Ok(())
}

fn finished_handle(snapshot: &RunSnapshot, created: bool) -> RunHandle {
    let count = |s: NodeStatus| snapshot.nodes.iter().filter(|n| n.status == s).count();
    let outcome = RunOutcome {
        run_id: snapshot.run.run_id.clone(),
        status: snapshot.run.status,
        completed: count(NodeStatus::Completed),
        failed: count(NodeStatus::Failed),
        skipped: count(NodeStatus::Skipped),
        cancelled: count(NodeStatus::Cancelled),
        error: None,
    };
    let done = if snapshot.run.status.is_terminal() {
        Some(outcome)
    } else {
        None
    };
    let (_tx, rx) = watch::channel(done);
    RunHandle {
        run_id: snapshot.run.run_id.clone(),
        created,
        done: rx,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fresh,
    Recovered,
    Retried,
}

/// The decision a trigger rule gives for the current upstream outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Wait,
    Run,
    Skip(&'static str),
}

/// Applies a trigger rule to the outcomes of `total` dependencies (DESIGN §2; Airflow's rules).
pub(crate) fn decide(rule: &TriggerRule, total: u32, succ: u32, fail: u32, skip: u32) -> Decision {
    use Decision::*;
    let done = succ + fail + skip;
    let all_done = done == total;
    if total == 0 {
        return Run;
    }
    match rule {
        TriggerRule::AllSuccess => {
            if fail > 0 {
                Skip("an upstream node failed")
            } else if skip > 0 {
                Skip("an upstream node was skipped")
            } else if succ == total {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllFailed => {
            if succ + skip > 0 {
                Skip("an upstream node did not fail")
            } else if fail == total {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllDone => {
            if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::OneSuccess => {
            if succ > 0 {
                Run
            } else if all_done {
                Skip("no upstream node succeeded")
            } else {
                Wait
            }
        }
        TriggerRule::OneFailed => {
            if fail > 0 {
                Run
            } else if all_done {
                Skip("no upstream node failed")
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailed => {
            if fail > 0 {
                Skip("an upstream node failed")
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailedMinOneSuccess => {
            if fail > 0 {
                Skip("an upstream node failed")
            } else if all_done && succ == 0 {
                Skip("no upstream node succeeded")
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::Always => Run,
        // Validation rejects unknown rules; a compiled workflow never holds one.
        TriggerRule::Invalid(_) => Skip("invalid trigger rule"),
    }
}

/// The per-node state the driver keeps.
#[derive(Debug, Clone)]
struct NodeRt {
    status: NodeStatus,
    attempt: u32,
    succ: u32,
    fail: u32,
    skip: u32,
    /// Already written as `ready` (so a wait for a slot is written once).
    ready_written: bool,
    /// In the ready queue (so a rule met twice in one turn queues it once).
    queued: bool,
    /// When a failed attempt's retry is due.
    retry_at: Option<DateTime<Utc>>,
    /// Counted as a failure of the run for the final status.
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    output: Option<Arc<Value>>,
    error: Option<Arc<str>>,
    reason: Option<Arc<str>>,
}

impl NodeRt {
    fn new() -> Self {
        Self {
            status: NodeStatus::Pending,
            attempt: 0,
            succ: 0,
            fail: 0,
            skip: 0,
            ready_written: false,
            queued: false,
            retry_at: None,
            started_at: None,
            finished_at: None,
            output: None,
            error: None,
            reason: None,
        }
    }
}

struct AttemptResult {
    node: u32,
    attempt: u32,
    result: Result<Value, NodeError>,
}

type AttemptFuture = Pin<Box<dyn Future<Output = AttemptResult> + Send>>;
type Reply = oneshot::Sender<Result<(), EngineError>>;
type CommandRx = mpsc::UnboundedReceiver<(Command, Reply)>;
type SharedExecutor = Arc<dyn NodeExecutor>;
type AttemptBody = Pin<Box<dyn Future<Output = Result<Value, NodeError>> + Send>>;

struct Launch {
    node: u32,
    attempt: u32,
    permit: Option<OwnedSemaphorePermit>,
    /// Its executor was offered the attempt synchronously and declined (`execute_now` gave
    /// `None`): it goes straight to `execute`.
    declined_now: bool,
}

enum Flow {
    Continue,
    Stop(Option<String>),
}

struct Driver {
    engine: Engine,
    wf: Arc<Workflow>,
    run_id: Arc<str>,
    inputs: Arc<Value>,
    epoch: u64,
    seq: u64,
    status: RunStatus,
    nodes: Vec<NodeRt>,
    /// Rule satisfied (or retry due), waiting to start.
    ready: VecDeque<u32>,
    /// Retry timers: (due, node).
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    running: FuturesUnordered<AttemptFuture>,
    in_flight: usize,
    /// A node failed and the policy is fail_fast: start nothing new.
    stopping: bool,
    cancel: CancellationToken,
    /// Cancelled when the engine stops driving this run (see [`Control::halt`]).
    halt: CancellationToken,
    commands: Option<CommandRx>,
    // The batch being built this turn.
    dirty: Vec<u32>,
    events: Vec<Event>,
    run_patch: Option<RunPatch>,
    launches: Vec<Launch>,
    replies: Vec<(Reply, Result<(), EngineError>)>,
    max_concurrency: usize,
    /// The timestamp of this turn.
    now: DateTime<Utc>,
    /// `is_dirty[i]`: node `i` is in `dirty`.
    is_dirty: Vec<bool>,
    /// Nodes not yet in a terminal status.
    unfinished: usize,
    /// Nodes waiting for approval.
    waiting_approval: usize,
    /// How many nodes at the back of `ready` `mark_waiting` has not looked at yet.
    unmarked: usize,
    /// Worklist of settled nodes whose dependents still need to hear of it.
    settled: Vec<u32>,
    propagating: bool,
    /// Reused buffer for the dependents of a settled node.
    scratch: Vec<u32>,
    /// Reused buffer for the node rows of a batch.
    row_buf: Vec<NodeRecord>,
    /// The shared `{}` output.
    empty_output: Arc<Value>,
    /// The last executor looked up, by key.
    last_executor: Option<(Arc<str>, Option<SharedExecutor>)>,
}

impl Driver {
    fn new(
        engine: Engine,
        wf: Arc<Workflow>,
        run_id: Arc<str>,
        inputs: Arc<Value>,
        epoch: u64,
        seq: u64,
    ) -> Self {
        let n = wf.len();
        let max_concurrency = wf.max_concurrency().map_or(usize::MAX, |m| m as usize);
        Self {
            engine,
            run_id,
            inputs,
            epoch,
            seq,
            status: RunStatus::Pending,
            nodes: vec![NodeRt::new(); n],
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            running: FuturesUnordered::new(),
            in_flight: 0,
            stopping: false,
            cancel: CancellationToken::new(),
            halt: CancellationToken::new(),
            commands: None,
            dirty: Vec::new(),
            events: Vec::new(),
            run_patch: None,
            launches: Vec::new(),
            replies: Vec::new(),
            max_concurrency,
            now: now_micros(),
            is_dirty: vec![false; n],
            unfinished: n,
            waiting_approval: 0,
            unmarked: 0,
            settled: Vec::new(),
            propagating: false,
            last_executor: None,
            empty_output: Arc::new(Value::Object(Map::new())),
            row_buf: Vec::new(),
            scratch: Vec::new(),
            wf,
        }
    }

    /// Loads node states from a snapshot. With `reset`, the failed, cancelled and skipped nodes
    /// and everything downstream of them go back to pending (retry from failed).
    fn restore(&mut self, snapshot: &RunSnapshot, reset: bool) {
        self.status = snapshot.run.status;
        for rec in &snapshot.nodes {
            let Some(i) = self.wf.index_of(&rec.node_id) else {
                continue;
            };
            let rt = &mut self.nodes[i];
            rt.status = rec.status;
            rt.attempt = rec.attempt;
            rt.started_at = rec.started_at;
            rt.finished_at = rec.finished_at;
            rt.output = rec.output.clone();
            rt.error = rec.error.clone();
            rt.reason = rec.reason.clone();
            rt.retry_at = rec.retry_at;
        }
        if reset {
            let mut stack: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| {
                    matches!(
                        self.nodes[i].status,
                        NodeStatus::Failed | NodeStatus::Cancelled | NodeStatus::Skipped
                    )
                })
                .collect();
            let mut seen = vec![false; self.nodes.len()];
            while let Some(i) = stack.pop() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                self.nodes[i] = NodeRt::new();
                self.mark_dirty(i as u32);
                stack.extend(self.wf.outs_of(i).iter().map(|&j| j as usize));
            }
        }
        // Recompute the upstream counters from terminal dependencies.
        for i in 0..self.nodes.len() {
            let (mut s, mut f, mut k) = (0, 0, 0);
            for &j in self.wf.deps_of(i) {
                match self.nodes[j as usize].status {
                    NodeStatus::Completed => s += 1,
                    NodeStatus::Failed | NodeStatus::Cancelled => f += 1,
                    NodeStatus::Skipped => k += 1,
                    _ => {}
                }
            }
            let rt = &mut self.nodes[i];
            rt.succ = s;
            rt.fail = f;
            rt.skip = k;
        }
        self.unfinished = self
            .nodes
            .iter()
            .filter(|n| !n.status.is_terminal())
            .count();
        self.waiting_approval = self
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::WaitingApproval)
            .count();
    }

    /// Starts a turn: every transition of a turn carries the same timestamp.
    fn tick(&mut self) {
        self.now = now_micros();
    }

    fn mark_dirty(&mut self, i: u32) {
        if !std::mem::replace(&mut self.is_dirty[i as usize], true) {
            self.dirty.push(i);
        }
    }

    /// Moves node `i` to a terminal or waiting status, keeping the counters right.
    fn set_node_status(&mut self, i: u32, status: NodeStatus) {
        let rt = &mut self.nodes[i as usize];
        let before = rt.status;
        rt.status = status;
        if before == NodeStatus::WaitingApproval {
            self.waiting_approval -= 1;
        }
        if status == NodeStatus::WaitingApproval {
            self.waiting_approval += 1;
        }
        if !before.is_terminal() && status.is_terminal() {
            self.unfinished -= 1;
            rt.finished_at = Some(self.now);
        }
        self.mark_dirty(i);
    }

    fn emit(&mut self, kind: EventType, node: Option<u32>, data: EventData) {
        self.seq += 1;
        self.events.push(Event {
            seq: self.seq,
            kind,
            workflow_id: self.wf.workflow_id.clone(),
            run_id: self.run_id.clone(),
            node_id: node.map(|i| self.wf.nodes[i as usize].id.clone()),
            data,
            timestamp: self.now,
        });
    }

    fn set_run_status(&mut self, status: RunStatus, error: Option<String>) {
        self.status = status;
        let now = self.now;
        self.run_patch = Some(RunPatch {
            status,
            started_at: Some(now),
            finished_at: status.is_terminal().then_some(now),
            error,
        });
    }

    async fn run(mut self, mode: Mode) -> RunOutcome {
        let stop = self.run_inner(mode).await;
        let count = |s: NodeStatus| self.nodes.iter().filter(|n| n.status == s).count();
        RunOutcome {
            run_id: self.run_id.clone(),
            status: self.status,
            completed: count(NodeStatus::Completed),
            failed: count(NodeStatus::Failed),
            skipped: count(NodeStatus::Skipped),
            cancelled: count(NodeStatus::Cancelled),
            error: stop,
        }
    }

    async fn run_inner(&mut self, mode: Mode) -> Option<String> {
        match mode {
            Mode::Fresh | Mode::Retried => {
                self.set_run_status(RunStatus::Running, None);
                let mut data = EventData::default();
                data.extra.insert("inputs".into(), (*self.inputs).clone());
                data.extra
                    .insert("version".into(), self.wf.version().into());
                if mode == Mode::Retried {
                    let reset: Vec<Value> = self
                        .dirty
                        .iter()
                        .map(|&i| Value::from(&*self.wf.nodes[i as usize].id))
                        .collect();
                    data.extra.insert("retry".into(), true.into());
                    data.extra.insert("reset_nodes".into(), Value::Array(reset));
                }
                self.emit(EventType::WorkflowStarted, None, data);
            }
            Mode::Recovered => {
                info!(run_id = %self.run_id, "recovering run");
            }
        }
        // Every node a recovered run left running runs again (same attempt number, same key).
        let mut restart = Vec::new();
        for i in 0..self.nodes.len() {
            let st = self.nodes[i].status;
            if st == NodeStatus::Running {
                restart.push(i as u32);
            } else if st == NodeStatus::Ready {
                self.nodes[i].status = NodeStatus::Pending;
            }
        }
        for i in restart {
            match self.nodes[i as usize].retry_at {
                // It was waiting to retry: wait out what is left of the delay.
                Some(due) => {
                    let left = (due - self.now).to_std().unwrap_or_default();
                    self.timers.push(Reverse((Instant::now() + left, i)));
                }
                // An attempt was in flight: run it again, same number, same idempotency key.
                None => {
                    self.nodes[i as usize].attempt =
                        self.nodes[i as usize].attempt.saturating_sub(1);
                    self.enqueue(i);
                }
            }
        }
        for i in 0..self.nodes.len() as u32 {
            self.evaluate(i);
        }
        loop {
            self.schedule();
            if let Flow::Stop(reason) = self.flush().await {
                return reason;
            }
            // Inline attempts that finished at once left transitions for another turn.
            if self.has_pending_writes() || self.can_start() {
                self.tick();
                continue;
            }
            if self.try_finish() {
                if let Flow::Stop(reason) = self.flush().await {
                    return reason;
                }
                return None;
            }
            let flow = self.wait().await;
            if let Flow::Stop(reason) = flow {
                self.abandon();
                return reason;
            }
            self.take_in_ready();
        }
    }

    /// Changes this run's count of attempts in flight and the engine-wide one together.
    fn add_in_flight(&mut self, delta: isize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.in_flight = self.in_flight.saturating_add_signed(delta);
        if delta >= 0 {
            self.engine
                .inner
                .executing
                .fetch_add(delta as usize, Relaxed);
        } else {
            self.engine
                .inner
                .executing
                .fetch_sub(delta.unsigned_abs(), Relaxed);
        }
    }

    fn has_pending_writes(&self) -> bool {
        !self.dirty.is_empty() || !self.events.is_empty() || self.run_patch.is_some()
    }

    fn can_start(&self) -> bool {
        !self.ready.is_empty()
            && !self
                .engine
                .inner
                .quiescing
                .load(std::sync::atomic::Ordering::Relaxed)
            && self.status == RunStatus::Running
            && !self.stopping
            && self.in_flight < self.max_concurrency
            && self
                .engine
                .inner
                .permits
                .as_ref()
                .is_none_or(|p| p.available_permits() > 0)
    }

    /// Takes in every attempt result and timer that is already there, without waiting.
    fn take_in_ready(&mut self) {
        while let Some(Some(res)) = self.running.next().now_or_never() {
            self.on_attempt(res);
        }
        self.fire_timers();
    }

    /// Waits for at least one thing to happen, then takes in everything else already there.
    async fn wait(&mut self) -> Flow {
        let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
        let want_permit = self.wants_global_permit();
        let permits = self.engine.inner.permits.clone();
        let mut commands = self
            .commands
            .take()
            .expect("the driver owns its command channel");
        let flow = tokio::select! {
            biased;
            cmd = commands.recv() => {
                self.tick();
                match cmd {
                    Some((cmd, reply)) => self.on_command(cmd, reply),
                    None => Flow::Stop(Some("the engine was dropped".into())),
                }
            }
            Some(res) = self.running.next(), if !self.running.is_empty() => {
                self.tick();
                self.on_attempt(res);
                Flow::Continue
            }
            _ = sleep_until(next_timer), if next_timer.is_some() => {
                self.tick();
                self.fire_timers();
                Flow::Continue
            }
            permit = acquire(permits), if want_permit => {
                // Hand the permit back: `schedule` takes it again in order.
                drop(permit);
                self.tick();
                Flow::Continue
            }
        };
        self.commands = Some(commands);
        flow
    }

    fn wants_global_permit(&self) -> bool {
        self.engine.inner.permits.is_some()
            && !self.ready.is_empty()
            && self.status == RunStatus::Running
            && !self.stopping
            && self.in_flight < self.max_concurrency
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((due, node))) = self.timers.peek().copied() {
            if due > now {
                break;
            }
            self.timers.pop();
            if self.nodes[node as usize].status == NodeStatus::Running {
                self.enqueue(node);
            }
        }
    }

    /// Re-evaluates a pending node's trigger rule and condition.
    fn evaluate(&mut self, i: u32) {
        let iu = i as usize;
        if self.nodes[iu].status != NodeStatus::Pending || self.nodes[iu].queued {
            return;
        }
        let cnode = &self.wf.nodes[iu];
        let total = self.wf.deps_of(iu).len() as u32;
        let rt = &self.nodes[iu];
        match decide(cnode.rule(), total, rt.succ, rt.fail, rt.skip) {
            Decision::Wait => {}
            Decision::Skip(reason) => self.skip(i, Arc::from(reason)),
            Decision::Run => {
                if self.stopping {
                    return; // Skipped when the run finishes failing fast.
                }
                if let Some(cond) = &cnode.condition {
                    let outputs = self.dependency_outputs_value(iu);
                    let verdict = cond.evaluate(&self.inputs, &outputs).map(|ok| {
                        ok.then_some(())
                            .ok_or_else(|| format!("condition `{}` is false", cond.source()))
                    });
                    match verdict {
                        Ok(Ok(())) => {}
                        Ok(Err(reason)) => {
                            self.skip(i, Arc::from(reason));
                            return;
                        }
                        Err(e) => {
                            self.nodes[iu].attempt = self.nodes[iu].attempt.max(1);
                            self.fail(i, Arc::from(e));
                            return;
                        }
                    }
                }
                if self.wf.nodes[iu].node_type == NodeType::HumanReview {
                    self.nodes[iu].started_at = Some(self.now);
                    self.set_node_status(i, NodeStatus::WaitingApproval);
                    self.emit(
                        EventType::NodeWaitingApproval,
                        Some(i),
                        EventData::default(),
                    );
                } else {
                    self.nodes[iu].queued = true;
                    self.enqueue(i);
                }
            }
        }
    }

    fn dependency_outputs_value(&self, i: usize) -> Value {
        let mut map = Map::new();
        for &j in self.wf.deps_of(i) {
            if let Some(out) = &self.nodes[j as usize].output {
                map.insert(self.wf.nodes[j as usize].id.to_string(), (**out).clone());
            }
        }
        Value::Object(map)
    }

    /// Tells the dependents of a node that just settled, and re-evaluates them. Iterative (a
    /// worklist, not recursion), so a skip cascading down a 100,000-node chain is fine.
    fn propagate(&mut self, i: u32) {
        self.settled.push(i);
        if self.propagating {
            return;
        }
        self.propagating = true;
        let mut outs = std::mem::take(&mut self.scratch);
        while let Some(i) = self.settled.pop() {
            let status = self.nodes[i as usize].status;
            outs.clear();
            outs.extend_from_slice(self.wf.outs_of(i as usize));
            for &j in &outs {
                let rt = &mut self.nodes[j as usize];
                match status {
                    NodeStatus::Completed => rt.succ += 1,
                    NodeStatus::Failed | NodeStatus::Cancelled => rt.fail += 1,
                    NodeStatus::Skipped => rt.skip += 1,
                    _ => continue,
                }
                self.evaluate(j);
            }
        }
        self.scratch = outs;
        self.propagating = false;
    }

    fn skip(&mut self, i: u32, reason: Arc<str>) {
        self.nodes[i as usize].reason = Some(reason.clone());
        self.set_node_status(i, NodeStatus::Skipped);
        self.emit(
            EventType::NodeSkipped,
            Some(i),
            EventData {
                reason: Some(reason),
                ..EventData::default()
            },
        );
        self.propagate(i);
    }

    fn fail(&mut self, i: u32, error: Arc<str>) {
        let rt = &mut self.nodes[i as usize];
        rt.error = Some(error.clone());
        let attempts = rt.attempt;
        self.set_node_status(i, NodeStatus::Failed);
        self.emit(
            EventType::NodeFailed,
            Some(i),
            EventData {
                error: Some(error),
                ..EventData::default()
            }
            .with("attempts", attempts),
        );
        if self.wf.failure_policy() == FailurePolicy::FailFast {
            self.stopping = true;
        }
        self.propagate(i);
    }

    fn complete(&mut self, i: u32, output: Value) {
        // Empty outputs (every no-op node) share one allocation.
        let output = match &output {
            Value::Object(m) if m.is_empty() => self.empty_output.clone(),
            _ => Arc::new(output),
        };
        let rt = &mut self.nodes[i as usize];
        rt.output = Some(output.clone());
        rt.error = None;
        let attempt = rt.attempt;
        self.set_node_status(i, NodeStatus::Completed);
        self.emit(
            EventType::NodeCompleted,
            Some(i),
            EventData {
                output: Some(output),
                attempt: Some(attempt),
                ..EventData::default()
            },
        );
        self.propagate(i);
    }

    fn on_attempt(&mut self, res: AttemptResult) {
        self.add_in_flight(-1);
        let i = res.node as usize;
        if self.nodes[i].status != NodeStatus::Running || self.nodes[i].attempt != res.attempt {
            return; // The run was cancelled or the node settled otherwise meanwhile.
        }
        let result = match res.result {
            Ok(Value::Object(map)) => Ok(Value::Object(map)),
            Ok(other) => Err(NodeError::permanent(format!(
                "the executor returned {}, but a node's output must be a JSON object",
                json_kind(&other)
            ))),
            Err(e) => Err(e),
        };
        match result {
            Ok(output) => self.complete(res.node, output),
            Err(e) => {
                let retry = self.wf.nodes[i].retry();
                let error: Arc<str> = Arc::from(e.message.as_str());
                if e.retryable && res.attempt < retry.max_attempts && !self.cancel.is_cancelled() {
                    let delay = retry.delay_ms(res.attempt, fastrand::f64());
                    self.nodes[i].error = Some(error.clone());
                    self.nodes[i].retry_at =
                        Some(self.now + chrono::Duration::milliseconds(delay as i64));
                    self.mark_dirty(res.node);
                    self.emit(
                        EventType::NodeRetry,
                        Some(res.node),
                        EventData {
                            attempt: Some(res.attempt),
                            delay_ms: Some(delay),
                            error: Some(error),
                            ..EventData::default()
                        },
                    );
                    self.timers.push(Reverse((
                        Instant::now() + Duration::from_millis(delay),
                        res.node,
                    )));
                } else {
                    debug!(run_id = %self.run_id, node = %self.wf.nodes[i].id, error = %error, "node failed");
                    self.fail(res.node, error);
                }
            }
        }
    }

    fn on_command(
        &mut self,
        cmd: Command,
        reply: oneshot::Sender<Result<(), EngineError>>,
    ) -> Flow {
        let answer = match cmd {
            Command::Nudge => Ok(()),
            Command::Shutdown => {
                let _ = reply.send(Ok(()));
                return Flow::Stop(Some("the engine is shutting down".into()));
            }
            Command::Cancel => {
                if self.status.is_terminal() {
                    Err(EngineError::InvalidTransition(format!(
                        "run {} is already {}",
                        self.run_id, self.status
                    )))
                } else {
                    self.cancel_run();
                    Ok(())
                }
            }
            Command::Pause => self.switch(
                RunStatus::Running,
                RunStatus::Paused,
                EventType::WorkflowPaused,
            ),
            Command::Resume => self.switch(
                RunStatus::Paused,
                RunStatus::Running,
                EventType::WorkflowResumed,
            ),
            Command::Approve(i, output) => self.settle_review(i, Ok(output)),
            Command::Reject(i, reason) => self.settle_review(i, Err(reason)),
        };
        // The answer goes out once this turn's writes are stored.
        self.replies.push((reply, answer));
        Flow::Continue
    }

    /// Pause and resume: `from` → `to`, with its event; impossible from any other status.
    fn switch(
        &mut self,
        from: RunStatus,
        to: RunStatus,
        event: EventType,
    ) -> Result<(), EngineError> {
        if self.status != from {
            return Err(EngineError::InvalidTransition(format!(
                "run {} is {}, not {from}",
                self.run_id, self.status
            )));
        }
        self.set_run_status(to, None);
        self.emit(event, None, EventData::default());
        Ok(())
    }

    fn settle_review(
        &mut self,
        i: u32,
        decision: Result<Option<Value>, Option<String>>,
    ) -> Result<(), EngineError> {
        let node = &self.wf.nodes[i as usize];
        if self.nodes[i as usize].status != NodeStatus::WaitingApproval {
            return Err(EngineError::InvalidTransition(format!(
                "node {} is {}, not waiting for approval",
                node.id, self.nodes[i as usize].status
            )));
        }
        if self.status.is_terminal() {
            return Err(EngineError::InvalidTransition(format!(
                "run {} is {}",
                self.run_id, self.status
            )));
        }
        self.nodes[i as usize].attempt = 1;
        match decision {
            Ok(extra) => {
                let mut out = Map::new();
                out.insert("approved".into(), true.into());
                match extra {
                    Some(Value::Object(m)) => out.extend(m),
                    Some(Value::Null) | None => {}
                    Some(other) => {
                        out.insert("data".into(), other);
                    }
                }
                self.complete(i, Value::Object(out));
            }
            Err(reason) => {
                let msg = match reason {
                    Some(r) if !r.is_empty() => format!("rejected: {r}"),
                    _ => "rejected".to_string(),
                };
                self.fail(i, Arc::from(msg));
            }
        }
        Ok(())
    }

    fn cancel_run(&mut self) {
        self.cancel.cancel();
        self.running = FuturesUnordered::new();
        self.add_in_flight(-(self.in_flight as isize));
        self.ready.clear();
        self.timers.clear();
        let reason: Arc<str> = Arc::from("run cancelled");
        let mut cancelled = Vec::new();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].status.is_terminal() {
                self.nodes[i].reason = Some(reason.clone());
                self.set_node_status(i as u32, NodeStatus::Cancelled);
                cancelled.push(Value::from(&*self.wf.nodes[i].id));
            }
        }
        self.set_run_status(RunStatus::Cancelled, Some("cancelled by request".into()));
        let data = EventData {
            reason: Some(reason),
            ..EventData::default()
        }
        .with("cancelled_nodes", Value::Array(cancelled));
        self.emit(EventType::WorkflowCancelled, None, data);
    }

    /// Starts what may start now.
    fn schedule(&mut self) {
        let quiescing = self
            .engine
            .inner
            .quiescing
            .load(std::sync::atomic::Ordering::Relaxed);
        if self.status != RunStatus::Running || self.stopping || quiescing {
            self.mark_waiting();
            return;
        }
        let mut waiting = false;
        self.events
            .reserve(self.ready.len().min(self.max_concurrency).min(TURN_STARTS));
        // At most TURN_STARTS starts a turn: a fan-out of 100,000 nodes becomes a hundred turns
        // of a thousand, so no batch (and no buffer behind it) grows with the size of the graph.
        while self.in_flight < self.max_concurrency && self.launches.len() < TURN_STARTS {
            let Some(&i) = self.ready.front() else { break };
            let permit = match &self.engine.inner.permits {
                None => None,
                Some(sem) => match sem.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        waiting = true;
                        break;
                    }
                },
            };
            self.ready.pop_front();
            self.start_attempt(i, permit);
        }
        // Nodes left only by the per-turn cap start next turn: they are not waiting for a slot.
        if waiting || self.in_flight >= self.max_concurrency {
            self.mark_waiting();
        }
    }

    /// Queues a node whose rule holds (or whose retry is due).
    fn enqueue(&mut self, i: u32) {
        self.ready.push_back(i);
        self.unmarked += 1;
    }

    /// Writes `ready` for nodes that must wait for a slot (once per wait). Only the nodes queued
    /// since the last call are looked at, so a long queue costs nothing per turn.
    fn mark_waiting(&mut self) {
        let len = self.ready.len();
        let from = len - self.unmarked.min(len);
        self.unmarked = 0;
        for k in from..len {
            let i = self.ready[k] as usize;
            let rt = &mut self.nodes[i];
            if rt.status == NodeStatus::Pending && !rt.ready_written {
                rt.status = NodeStatus::Ready;
                rt.ready_written = true;
                self.mark_dirty(i as u32);
            }
        }
    }

    fn start_attempt(&mut self, i: u32, permit: Option<OwnedSemaphorePermit>) {
        let iu = i as usize;
        let rt = &mut self.nodes[iu];
        rt.status = NodeStatus::Running;
        rt.attempt += 1;
        rt.started_at = Some(self.now);
        rt.ready_written = false;
        rt.queued = false;
        rt.retry_at = None;
        let attempt = rt.attempt;
        // In flight from the decision on, not from the launch: a drain that waits for
        // `Engine::executing` to reach 0 also waits for attempts whose start is being written.
        self.add_in_flight(1);
        self.mark_dirty(i);
        let max_attempts = self.wf.nodes[iu].retry().max_attempts;
        self.emit(
            EventType::NodeStarted,
            Some(i),
            EventData {
                attempt: Some(attempt),
                max_attempts: Some(max_attempts),
                ..EventData::default()
            },
        );
        self.launches.push(Launch {
            node: i,
            attempt,
            permit,
            declined_now: false,
        });
    }

    /// A borrowed view of an attempt's input, for executors with a synchronous fast path.
    fn input_for(&self, i: usize, attempt: u32) -> NodeInput<'_> {
        let cnode = &self.wf.nodes[i];
        NodeInput {
            node_id: &cnode.id,
            node_name: &cnode.name,
            node_type: cnode.node_type,
            node_config: &cnode.config,
            run_id: &self.run_id,
            workflow_id: &self.wf.workflow_id,
            attempt,
            inputs: &self.inputs,
            deps: self.wf.deps_of(i),
            source: self,
        }
    }

    /// The input of an attempt (DESIGN §3 "Node input").
    fn context_for(&self, i: usize, attempt: u32, cancellation: CancellationToken) -> NodeContext {
        let cnode = &self.wf.nodes[i];
        let deps = self.wf.deps_of(i);
        let mut dependency_outputs = Vec::with_capacity(deps.len());
        for &j in deps {
            if let Some(out) = &self.nodes[j as usize].output {
                dependency_outputs.push((self.wf.nodes[j as usize].id.clone(), out.clone()));
            }
        }
        NodeContext {
            node_id: cnode.id.clone(),
            node_name: cnode.name.clone(),
            node_type: cnode.node_type,
            node_config: cnode.config.clone(),
            run_id: self.run_id.clone(),
            workflow_id: self.wf.workflow_id.clone(),
            attempt,
            inputs: self.inputs.clone(),
            dependency_outputs,
            cancellation,
        }
    }

    /// Writes this turn's batch, then acts on it. Store failures are retried while transient.
    async fn flush(&mut self) -> Flow {
        self.run_sync();
        if self.dirty.is_empty() && self.events.is_empty() && self.run_patch.is_none() {
            self.act();
            return Flow::Continue;
        }
        let mut nodes = std::mem::take(&mut self.row_buf);
        nodes.reserve(self.dirty.len());
        for k in 0..self.dirty.len() {
            let i = self.dirty[k] as usize;
            self.is_dirty[i] = false;
            nodes.push(self.record(i));
        }
        self.dirty.clear();
        let broadcast = self.engine.inner.events.receiver_count() > 0;
        let mut batch = WriteBatch {
            run_id: self.run_id.clone(),
            epoch: self.epoch,
            run: self.run_patch.take(),
            nodes,
            events: std::mem::take(&mut self.events),
        };
        let published: Vec<Arc<Event>> = if broadcast {
            batch.events.iter().cloned().map(Arc::new).collect()
        } else {
            Vec::new()
        };
        let mut delay = Duration::from_millis(50);
        loop {
            let store = &self.engine.inner.store;
            let written = match store.write_now(&mut batch) {
                Some(result) => result,
                // A write under way always finishes (a drain must not lose a healthy write);
                // only the wait before a retry gives way to a stop.
                None => store.write(&mut batch).await,
            };
            match written {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    warn!(run_id = %self.run_id, error = %e, "store write failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        // Stopped (its lease lost, or the replica draining) while the store is
                        // out: stop now, not after the backoff.
                        () = self.halt.cancelled() => {
                            self.abandon();
                            return Flow::Stop(Some("stopped while the store was unavailable".into()));
                        }
                    }
                    delay = (delay * 2).min(self.engine.inner.config.store_retry_max);
                }
                Err(e) => {
                    warn!(run_id = %self.run_id, error = %e, "store write failed; the run stops here");
                    self.abandon();
                    return Flow::Stop(Some(e.to_string()));
                }
            }
        }
        for e in published {
            let _ = self.engine.inner.events.send(e);
        }
        // Take the buffers back for the next turn (an in-memory store moved their contents out).
        // Big buffers (a fan-out's turn) are let go rather than kept for small turns.
        const KEEP: usize = 4096;
        batch.nodes.clear();
        batch.events.clear();
        if batch.nodes.capacity() <= KEEP {
            self.row_buf = batch.nodes;
        }
        if batch.events.capacity() <= KEEP {
            self.events = batch.events;
        }
        self.act();
        Flow::Continue
    }

    /// Settles an attempt that needs no task: its executor is missing, or it finishes
    /// synchronously (`execute_now`, for nodes without a timeout). Gives the launch back when it
    /// must run asynchronously.
    fn try_now(&mut self, launch: Launch) -> Option<Launch> {
        let Launch {
            node,
            attempt,
            permit,
            declined_now,
        } = launch;
        let result = match self.executor_for(node as usize) {
            None => {
                let key = self.wf.nodes[node as usize]
                    .executor
                    .as_deref()
                    .unwrap_or("");
                Err(NodeError::permanent(format!(
                    "no executor registered as `{key}`"
                )))
            }
            Some(_) if declined_now || self.wf.nodes[node as usize].timeout_ms.is_some() => {
                return Some(Launch {
                    node,
                    attempt,
                    permit,
                    declined_now: true,
                });
            }
            Some(executor) => {
                // The synchronous fast path: no context, no future, no task.
                let now = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    executor.execute_now(&self.input_for(node as usize, attempt))
                }));
                match now {
                    Ok(Some(result)) => result,
                    Ok(None) => {
                        return Some(Launch {
                            node,
                            attempt,
                            permit,
                            declined_now: true,
                        });
                    }
                    Err(panic) => Err(NodeError::new(panic_message(&panic))),
                }
            }
        };
        drop(permit);
        self.on_attempt(AttemptResult {
            node,
            attempt,
            result,
        });
        None
    }

    /// Before the turn's write: settles the attempts decided this turn that finish
    /// synchronously, starts the nodes they make ready, and so on, up to [`TURN_EVENTS`]
    /// events. A chain of such nodes then costs one write per thousand nodes instead of one
    /// each. Such an attempt runs before its `node_started` is stored, which at-least-once
    /// allows: after a crash before the write, the store has the node not started, and it
    /// runs again; what the store has as completed never runs again. Attempts that must run
    /// asynchronously are launched after the write, as always.
    fn run_sync(&mut self) {
        // Attempts that declined to run synchronously: launched after the write. (They count
        // as in flight from `start_attempt` on, so `schedule` needs no view of them.)
        let mut deferred = Vec::new();
        while !self.launches.is_empty() && self.events.len() < TURN_EVENTS {
            let mut launches = std::mem::take(&mut self.launches);
            for launch in launches.drain(..) {
                if let Some(back) = self.try_now(launch) {
                    deferred.push(back);
                }
            }
            // Keep the buffer (empty now) for the next round's starts.
            self.launches = launches;
            self.schedule();
        }
        if !deferred.is_empty() {
            deferred.append(&mut self.launches);
            self.launches = deferred;
        }
    }

    /// Launches the attempts decided this turn and answers the commands. An inline executor is
    /// polled once right here; if it is already done, its result is taken in at once (its
    /// transitions go into the next batch), which saves a task and a queue round trip.
    fn act(&mut self) {
        for (reply, answer) in self.replies.drain(..) {
            let _ = reply.send(answer);
        }
        let mut launches = std::mem::take(&mut self.launches);
        // Most attempts finish at once and emit an event each: make room once.
        // (and the next turn's first start: a chain's turn is one completion and one start).
        self.events.reserve(launches.len() + 1);
        for launch in launches.drain(..) {
            let Some(Launch {
                node,
                attempt,
                permit,
                ..
            }) = self.try_now(launch)
            else {
                continue;
            };
            let Some(executor) = self.executor_for(node as usize) else {
                continue; // `try_now` settled it (no executor: a failed attempt).
            };
            let timeout = self.wf.nodes[node as usize]
                .timeout_ms
                .map(|t| Duration::from_millis(t.get()));
            // Every asynchronous attempt gets its own token: cancelling it (a timeout, or the
            // executor itself) never cancels the run.
            let ctx = self.context_for(node as usize, attempt, self.cancel.child_token());
            if executor.runs_inline() && timeout.is_none() {
                let mut fut: AttemptBody = Box::pin(async move { executor.execute(ctx).await });
                let mut cx = Context::from_waker(Waker::noop());
                match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                    Ok(Poll::Ready(result)) => {
                        drop(permit);
                        self.on_attempt(AttemptResult {
                            node,
                            attempt,
                            result,
                        });
                    }
                    Ok(Poll::Pending) => self.running.push(Box::pin(async move {
                        let result = AssertUnwindSafe(fut).catch_unwind().await;
                        drop(permit);
                        let result =
                            result.unwrap_or_else(|p| Err(NodeError::new(panic_message(&p))));
                        AttemptResult {
                            node,
                            attempt,
                            result,
                        }
                    })),
                    Err(panic) => {
                        drop(permit);
                        let result = Err(NodeError::new(panic_message(&panic)));
                        self.on_attempt(AttemptResult {
                            node,
                            attempt,
                            result,
                        });
                    }
                }
                continue;
            }
            let token = ctx.cancellation.clone();
            let attempt_fut = async move {
                let exec = AssertUnwindSafe(executor.execute(ctx)).catch_unwind();
                let result = match timeout {
                    None => exec.await,
                    Some(limit) => match tokio::time::timeout(limit, exec).await {
                        Ok(r) => r,
                        Err(_) => {
                            token.cancel();
                            Ok(Err(NodeError::new(format!(
                                "timed out after {} ms",
                                limit.as_millis()
                            ))))
                        }
                    },
                };
                drop(permit);
                let result = result.unwrap_or_else(|p| Err(NodeError::new(panic_message(&p))));
                AttemptResult {
                    node,
                    attempt,
                    result,
                }
            };
            let run_token = self.cancel.clone();
            let handle = tokio::spawn(async move {
                tokio::select! {
                    r = attempt_fut => Some(r),
                    _ = run_token.cancelled() => None,
                }
            });
            self.running.push(Box::pin(async move {
                match handle.await {
                    Ok(Some(r)) => r,
                    Ok(None) => AttemptResult {
                        node,
                        attempt,
                        result: Err(NodeError::new("cancelled")),
                    },
                    Err(e) => AttemptResult {
                        node,
                        attempt,
                        result: Err(NodeError::new(format!("executor task failed: {e}"))),
                    },
                }
            }));
        }
        self.launches = launches;
    }

    /// The executor of a node, looked up once per executor key and run.
    fn executor_for(&mut self, i: usize) -> Option<SharedExecutor> {
        let key = self.wf.nodes[i].executor.as_ref()?;
        if let Some((k, e)) = &self.last_executor
            && Arc::ptr_eq(k, key)
        {
            return e.clone();
        }
        let found = self.engine.inner.executors.get(key).cloned();
        self.last_executor = Some((key.clone(), found.clone()));
        found
    }

    fn record(&self, i: usize) -> NodeRecord {
        let rt = &self.nodes[i];
        NodeRecord {
            node_id: self.wf.nodes[i].id.clone(),
            status: rt.status,
            attempt: rt.attempt,
            started_at: rt.started_at,
            finished_at: rt.finished_at,
            output: rt.output.clone(),
            error: rt.error.clone(),
            reason: rt.reason.clone(),
            retry_at: rt.retry_at,
        }
    }

    /// Ends the run when nothing more can happen. Returns whether it ended.
    fn try_finish(&mut self) -> bool {
        if self.status.is_terminal() {
            return true;
        }
        if self.stopping {
            // Failing fast: a node waiting to retry will not start again.
            self.timers.clear();
        }
        if self.in_flight > 0 || !self.timers.is_empty() {
            return false;
        }
        if !self.stopping && !self.ready.is_empty() {
            return false; // Paused, or waiting for a slot.
        }
        if self.waiting_approval > 0 && !self.stopping {
            return false;
        }
        if self.stopping {
            let reason: Arc<str> = Arc::from("the run failed fast");
            self.ready.clear();
            for i in 0..self.nodes.len() {
                if !self.nodes[i].status.is_terminal() {
                    self.nodes[i].reason = Some(reason.clone());
                    self.set_node_status(i as u32, NodeStatus::Skipped);
                    self.emit(
                        EventType::NodeSkipped,
                        Some(i as u32),
                        EventData {
                            reason: Some(reason.clone()),
                            ..EventData::default()
                        },
                    );
                }
            }
        }
        if self.unfinished > 0 {
            if self.status == RunStatus::Running && self.ready.is_empty() {
                warn!(run_id = %self.run_id, "no node can make progress; this is a bug");
            }
            return false;
        }
        let mut counts = [0usize; 4];
        let mut failed_nodes = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            match n.status {
                NodeStatus::Completed => counts[0] += 1,
                NodeStatus::Failed => {
                    counts[1] += 1;
                    failed_nodes.push(Value::from(&*self.wf.nodes[i].id));
                }
                NodeStatus::Skipped => counts[2] += 1,
                _ => counts[3] += 1,
            }
        }
        let summary = Value::Object(Map::from_iter([
            ("completed".to_string(), counts[0].into()),
            ("failed".to_string(), counts[1].into()),
            ("skipped".to_string(), counts[2].into()),
        ]));
        if failed_nodes.is_empty() {
            self.set_run_status(RunStatus::Completed, None);
            let data = EventData::default()
                .with("completed_nodes", counts[0])
                .with("nodes", summary);
            self.emit(EventType::WorkflowCompleted, None, data);
            info!(run_id = %self.run_id, "run completed");
        } else {
            let first = failed_nodes[0].as_str().unwrap_or_default().to_string();
            let error = self.nodes[self.wf.index_of(&first).unwrap_or(0)]
                .error
                .clone();
            let msg = format!("{} node(s) failed", failed_nodes.len());
            self.set_run_status(RunStatus::Failed, Some(msg.clone()));
            let data = EventData {
                error,
                reason: Some(Arc::from(msg)),
                ..EventData::default()
            }
            .with("failed_node", first)
            .with("failed_nodes", Value::Array(failed_nodes))
            .with("nodes", summary);
            self.emit(EventType::WorkflowFailed, None, data);
            info!(run_id = %self.run_id, "run failed");
        }
        true
    }

    /// Stops every attempt without recording anything (shutdown or a lost store).
    fn abandon(&mut self) {
        self.cancel.cancel();
        self.running = FuturesUnordered::new();
        self.add_in_flight(-(self.in_flight as isize));
        for (reply, _) in self.replies.drain(..) {
            let _ = reply.send(Err(EngineError::ShuttingDown));
        }
    }
}

/// The current time at microsecond precision: what the wire format and the databases keep, so a
/// stored or serialized event compares equal to the one broadcast.
fn now_micros() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("the executor panicked: {detail}")
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn acquire(sem: Option<Arc<Semaphore>>) -> Option<OwnedSemaphorePermit> {
    match sem {
        Some(s) => s.acquire_owned().await.ok(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_rules_decide_like_airflow() {
        use Decision::*;
        let r = |s: &str| TriggerRule::parse(s);
        // (rule, total, succ, fail, skip) -> decision
        let cases: &[(&str, u32, u32, u32, u32, Decision)] = &[
            ("all_success", 2, 2, 0, 0, Run),
            ("all_success", 2, 1, 0, 0, Wait),
            ("all_success", 2, 0, 1, 0, Skip("an upstream node failed")),
            (
                "all_success",
                2,
                1,
                0,
                1,
                Skip("an upstream node was skipped"),
            ),
            ("all_done", 3, 1, 1, 1, Run),
            ("all_done", 3, 1, 1, 0, Wait),
            ("all_failed", 2, 0, 2, 0, Run),
            ("all_failed", 2, 0, 1, 0, Wait),
            (
                "all_failed",
                2,
                1,
                1,
                0,
                Skip("an upstream node did not fail"),
            ),
            ("one_success", 3, 1, 0, 0, Run),
            ("one_success", 3, 0, 2, 0, Wait),
            (
                "one_success",
                3,
                0,
                2,
                1,
                Skip("no upstream node succeeded"),
            ),
            ("one_failed", 3, 0, 1, 0, Run),
            ("one_failed", 3, 2, 0, 1, Skip("no upstream node failed")),
            ("none_failed", 2, 1, 0, 1, Run),
            ("none_failed", 2, 1, 1, 0, Skip("an upstream node failed")),
            ("none_failed", 2, 1, 0, 0, Wait),
            ("none_failed_min_one_success", 2, 1, 0, 1, Run),
            (
                "none_failed_min_one_success",
                2,
                0,
                0,
                2,
                Skip("no upstream node succeeded"),
            ),
            (
                "none_failed_min_one_success",
                2,
                0,
                1,
                0,
                Skip("an upstream node failed"),
            ),
            ("always", 2, 0, 0, 0, Run),
            ("all_failed", 0, 0, 0, 0, Run),
        ];
        for &(rule, total, s, f, k, want) in cases {
            assert_eq!(
                decide(&r(rule), total, s, f, k),
                want,
                "{rule} total={total} s={s} f={f} k={k}"
            );
        }
    }
}
