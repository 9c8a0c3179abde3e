//! Test support: definitions in one line, a scripted executor whose behaviour is written in each
//! node's `config`, a probe that records what really ran, and a harness that runs a workflow and
//! gathers everything the tests assert on (the `check` helper is the engine's single entry point).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use maestro_dag::{
    CancellationToken, Engine, EngineConfig, Event, EventType, ExecutorRegistry, FnExecutor,
    NodeContext, NodeDefinition, NodeError, NodeExecutor, NodeInput, NodeRecord, NodeStatus,
    NodeType, RetryPolicy, RunHandle, RunOutcome, RunRecord, RunStatus, RunStore, StartOptions,
    TriggerRule, Workflow, WorkflowDefinition,
};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

/// The key of the scripted executor (spawned per attempt).
pub(crate) const SCRIPT: &str = "script";
/// The key of the same scripted executor, polled inline on the run's task.
pub(crate) const INLINE: &str = "inline";
/// The key of the scripted executor's synchronous form (`execute_now`), for scripts that do
/// not wait; a script that waits goes to its asynchronous form.
pub(crate) const NOW: &str = "now";

/// A node run by the scripted executor.
pub(crate) fn node(id: &str) -> NodeDefinition {
    NodeDefinition::new(id, SCRIPT)
}

/// A `human_review` node (no executor: it waits for a person).
pub(crate) fn review(id: &str) -> NodeDefinition {
    let mut n = NodeDefinition::new(id, SCRIPT);
    n.executor = None;
    n.node_type = NodeType::HumanReview;
    n
}

/// A definition with the given nodes and every other field at its default.
pub(crate) fn workflow(id: &str, nodes: Vec<NodeDefinition>) -> WorkflowDefinition {
    WorkflowDefinition::new(id, nodes)
}

/// Builder methods for the fields tests set most.
pub(crate) trait NodeExt: Sized {
    /// Merges `config` (an object) into the node's config: the scripted executor's script.
    fn cfg(self, config: Value) -> Self;
    /// Sets the trigger rule by wire name.
    fn rule(self, rule: &str) -> Self;
    /// Sets the condition.
    fn when(self, condition: &str) -> Self;
    /// Sets the retry policy.
    fn retries(self, policy: RetryPolicy) -> Self;
    /// Sets the per-attempt timeout.
    fn timeout(self, ms: u64) -> Self;
}

impl NodeExt for NodeDefinition {
    fn cfg(mut self, config: Value) -> Self {
        let Value::Object(extra) = config else {
            panic!("cfg takes an object")
        };
        match &mut self.config {
            Value::Object(map) => map.extend(extra),
            other => *other = Value::Object(extra),
        }
        self
    }

    fn rule(mut self, rule: &str) -> Self {
        self.trigger_rule = TriggerRule::parse(rule);
        self
    }

    fn when(mut self, condition: &str) -> Self {
        self.condition = Some(condition.to_string());
        self
    }

    fn retries(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    fn timeout(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records what the scripted executor did, and lets tests steer it (gates and flags).
#[derive(Default)]
pub(crate) struct Probe {
    executions: Mutex<BTreeMap<String, u32>>,
    contexts: Mutex<Vec<NodeContext>>,
    starts: Mutex<Vec<(String, u32, Instant)>>,
    ends: Mutex<Vec<(String, Instant)>>,
    running: AtomicUsize,
    peak: AtomicUsize,
    gates: Mutex<HashMap<String, CancellationToken>>,
    flags: Mutex<HashMap<String, bool>>,
}

struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Probe {
    /// How many attempts of `node` the executor began.
    pub(crate) fn executions(&self, node: &str) -> u32 {
        lock(&self.executions).get(node).copied().unwrap_or(0)
    }

    /// Attempts begun, per node (nodes never executed are absent).
    pub(crate) fn all_executions(&self) -> BTreeMap<String, u32> {
        lock(&self.executions).clone()
    }

    /// Total attempts begun.
    pub(crate) fn total_executions(&self) -> u32 {
        lock(&self.executions).values().sum()
    }

    /// The most attempts that were executing at the same time.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Attempts executing now.
    pub(crate) fn running_now(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Every context `node` was executed with, in order.
    pub(crate) fn contexts(&self, node: &str) -> Vec<NodeContext> {
        lock(&self.contexts)
            .iter()
            .filter(|c| &*c.node_id == node)
            .cloned()
            .collect()
    }

    /// When each attempt of `node` began (tokio's clock), in order.
    pub(crate) fn start_times(&self, node: &str) -> Vec<Instant> {
        lock(&self.starts)
            .iter()
            .filter(|(n, _, _)| n == node)
            .map(|(_, _, t)| *t)
            .collect()
    }

    /// When the first attempt of `node` began.
    pub(crate) fn started_at(&self, node: &str) -> Instant {
        *self
            .start_times(node)
            .first()
            .unwrap_or_else(|| panic!("{node} never started"))
    }

    /// When the last attempt of `node` finished (successfully or not, but not cancelled).
    pub(crate) fn ended_at(&self, node: &str) -> Instant {
        lock(&self.ends)
            .iter()
            .rev()
            .find(|(n, _)| n == node)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("{node} never finished"))
    }

    /// The gate named `name` (nodes with `{"gate": name}` wait for it to open).
    pub(crate) fn gate(&self, name: &str) -> CancellationToken {
        lock(&self.gates)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Opens a gate: every node waiting on it proceeds.
    pub(crate) fn open(&self, name: &str) {
        self.gate(name).cancel();
    }

    /// Sets a flag read by nodes with `{"fail_if": name}`.
    pub(crate) fn set_flag(&self, name: &str, value: bool) {
        lock(&self.flags).insert(name.to_string(), value);
    }

    fn flag(&self, name: &str) -> bool {
        lock(&self.flags).get(name).copied().unwrap_or(false)
    }

    /// One attempt, as scripted by the node's config:
    /// - `yields`: yield to the scheduler this many times first;
    /// - `gate`: wait until the named gate opens;
    /// - `sleep_ms`: sleep that long;
    ///   (both give up with an error when the attempt's token is cancelled)
    /// - `panic`: panic;
    /// - `fail_attempts`: fail (retryably) every attempt up to this number;
    /// - `fail`: fail retryably; `permanent`: fail with a non-retryable error;
    /// - `fail_if`: fail (non-retryably) while the named flag is set;
    /// - `output`: return this value as is;
    /// - otherwise return `{"node": id, "attempt": n, "value": 1 + Σ dependency values}`.
    pub(crate) async fn execute(self: Arc<Self>, ctx: NodeContext) -> Result<Value, NodeError> {
        let id = ctx.node_id.to_string();
        *lock(&self.executions).entry(id.clone()).or_default() += 1;
        lock(&self.contexts).push(ctx.clone());
        lock(&self.starts).push((id.clone(), ctx.attempt, Instant::now()));
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let _running = Running(&self.running);

        let cfg = ctx.node_config.clone();
        for _ in 0..cfg.get("yields").and_then(Value::as_u64).unwrap_or(0) {
            tokio::task::yield_now().await;
        }
        if let Some(gate) = cfg.get("gate").and_then(Value::as_str) {
            let gate = self.gate(gate);
            tokio::select! {
                _ = gate.cancelled() => {}
                _ = ctx.cancellation.cancelled() => return Err(NodeError::new("cancelled at the gate")),
            }
        }
        if let Some(ms) = cfg.get("sleep_ms").and_then(Value::as_u64) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                _ = ctx.cancellation.cancelled() => return Err(NodeError::new("cancelled while sleeping")),
            }
        }
        lock(&self.ends).push((id.clone(), Instant::now()));
        if cfg.get("panic") == Some(&Value::Bool(true)) {
            panic!("kaboom in {id}");
        }
        if let Some(n) = cfg.get("fail_attempts").and_then(Value::as_u64)
            && u64::from(ctx.attempt) <= n
        {
            return Err(NodeError::new(format!(
                "attempt {} of {id} failed",
                ctx.attempt
            )));
        }
        if cfg.get("fail") == Some(&Value::Bool(true)) {
            return Err(NodeError::new(format!("{id} failed")));
        }
        if cfg.get("permanent") == Some(&Value::Bool(true)) {
            return Err(NodeError::permanent(format!("{id} failed for good")));
        }
        if let Some(flag) = cfg.get("fail_if").and_then(Value::as_str)
            && self.flag(flag)
        {
            return Err(NodeError::permanent(format!(
                "{id} failed: flag {flag} is set"
            )));
        }
        if let Some(out) = cfg.get("output") {
            return Ok(out.clone());
        }
        let upstream: u64 = ctx
            .dependency_outputs
            .iter()
            .filter_map(|(_, v)| v.get("value").and_then(Value::as_u64))
            .sum();
        Ok(json!({"node": id, "attempt": ctx.attempt, "value": 1 + upstream}))
    }
}

impl Probe {
    /// The script of [`Probe::execute`] without waiting, for the synchronous path; `None` when
    /// the script waits (`gate`, `sleep_ms`, `yields`) or panics.
    fn execute_now(&self, input: &NodeInput<'_>) -> Option<Result<Value, NodeError>> {
        let cfg = input.node_config;
        let waits = ["gate", "sleep_ms", "panic"].iter().any(|k| {
            cfg.get(*k)
                .is_some_and(|v| !v.is_null() && *v != json!(false))
        }) || cfg.get("yields").and_then(Value::as_u64).unwrap_or(0) > 0;
        if waits {
            return None;
        }
        let id = input.node_id.to_string();
        *lock(&self.executions).entry(id.clone()).or_default() += 1;
        lock(&self.starts).push((id.clone(), input.attempt, Instant::now()));
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let _running = Running(&self.running);
        lock(&self.ends).push((id.clone(), Instant::now()));
        let attempt = input.attempt;
        if let Some(n) = cfg.get("fail_attempts").and_then(Value::as_u64)
            && u64::from(attempt) <= n
        {
            return Some(Err(NodeError::new(format!(
                "attempt {attempt} of {id} failed"
            ))));
        }
        if cfg.get("fail") == Some(&Value::Bool(true)) {
            return Some(Err(NodeError::new(format!("{id} failed"))));
        }
        if cfg.get("permanent") == Some(&Value::Bool(true)) {
            return Some(Err(NodeError::permanent(format!("{id} failed for good"))));
        }
        if let Some(flag) = cfg.get("fail_if").and_then(Value::as_str)
            && self.flag(flag)
        {
            return Some(Err(NodeError::permanent(format!(
                "{id} failed: flag {flag} is set"
            ))));
        }
        if let Some(out) = cfg.get("output") {
            return Some(Ok(out.clone()));
        }
        let upstream: u64 = input
            .dependency_outputs()
            .filter_map(|(_, v)| v.get("value").and_then(Value::as_u64))
            .sum();
        Some(Ok(
            json!({"node": id, "attempt": attempt, "value": 1 + upstream}),
        ))
    }
}

/// The scripted executor, synchronous where the script allows ([`NOW`]).
struct ScriptNow(Arc<Probe>);

#[async_trait::async_trait]
impl NodeExecutor for ScriptNow {
    async fn execute(&self, ctx: NodeContext) -> Result<Value, NodeError> {
        self.0.clone().execute(ctx).await
    }

    fn execute_now(&self, input: &NodeInput<'_>) -> Option<Result<Value, NodeError>> {
        self.0.execute_now(input)
    }
}

/// The scripted executor over `probe`, spawned per attempt.
pub(crate) fn script(probe: &Arc<Probe>) -> impl NodeExecutor + use<> {
    let probe = probe.clone();
    FnExecutor::new(move |ctx| probe.clone().execute(ctx))
}

/// The scripted executor over `probe`, polled inline on the run's task.
pub(crate) fn script_inline(probe: &Arc<Probe>) -> impl NodeExecutor + use<> {
    let probe = probe.clone();
    FnExecutor::inline(move |ctx| probe.clone().execute(ctx))
}

/// A registry with the scripted executor as `script`, `inline` (polled inline) and `phase`.
pub(crate) fn registry(probe: &Arc<Probe>) -> ExecutorRegistry {
    ExecutorRegistry::new()
        .with(SCRIPT, script(probe))
        .with(INLINE, script_inline(probe))
        .with(NOW, ScriptNow(probe.clone()))
        .with("phase", script(probe))
}

/// An engine over a memory store with the scripted executors, and its probe.
pub(crate) struct Harness {
    pub(crate) store: maestro_dag::MemoryStore,
    pub(crate) probe: Arc<Probe>,
    pub(crate) engine: Engine,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_config(EngineConfig::default())
    }

    pub(crate) fn with_config(config: EngineConfig) -> Self {
        let store = maestro_dag::MemoryStore::new();
        let probe = Arc::new(Probe::default());
        let engine = Engine::with_config(Arc::new(store.clone()), registry(&probe), config);
        Self {
            store,
            probe,
            engine,
        }
    }

    /// Validates and compiles a definition against this engine's executors.
    pub(crate) fn compile(&self, def: WorkflowDefinition) -> Arc<Workflow> {
        Arc::new(
            Workflow::compile(def, Some(self.engine.executors()))
                .unwrap_or_else(|e| panic!("the test workflow is invalid: {e}")),
        )
    }

    /// Starts a run.
    pub(crate) async fn start(
        &self,
        def: WorkflowDefinition,
        inputs: Value,
    ) -> (Arc<Workflow>, RunHandle) {
        let wf = self.compile(def);
        let handle = self
            .engine
            .start(wf.clone(), inputs, StartOptions::default())
            .await
            .expect("start");
        (wf, handle)
    }

    /// Runs a workflow to its end and reports.
    pub(crate) async fn run(&self, def: WorkflowDefinition, inputs: Value) -> Report {
        let (wf, handle) = self.start(def, inputs).await;
        let run_id = handle.run_id().to_string();
        let outcome = wait(handle).await;
        let mut report = Report::load(&self.store, &wf, &run_id).await;
        report.outcome = Some(outcome);
        report
    }

    /// Waits until `node` of `run_id` has `status` in the store.
    pub(crate) async fn until_node(&self, run_id: &str, node: &str, status: NodeStatus) {
        let store = self.store.clone();
        eventually(&format!("{node} to be {status}"), || {
            let store = store.clone();
            async move {
                let snap = store.load_run(run_id).await.unwrap().unwrap();
                snap.nodes
                    .iter()
                    .any(|n| &*n.node_id == node && n.status == status)
            }
        })
        .await;
    }

    /// Waits until the run has `status` in the store.
    pub(crate) async fn until_run(&self, run_id: &str, status: RunStatus) {
        let store = self.store.clone();
        eventually(&format!("run to be {status}"), || {
            let store = store.clone();
            async move { store.load_run(run_id).await.unwrap().unwrap().run.status == status }
        })
        .await;
    }

    /// Waits until the scripted executor has begun `n` attempts of `node`.
    pub(crate) async fn until_executed(&self, node: &str, n: u32) {
        let probe = self.probe.clone();
        eventually(&format!("{node} to execute {n} time(s)"), || {
            let probe = probe.clone();
            async move { probe.executions(node) >= n }
        })
        .await;
    }
}

/// Waits for a run's end, at most 10 s (of tokio's clock).
pub(crate) async fn wait(handle: RunHandle) -> RunOutcome {
    tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("the run did not end within 10 s")
}

/// Polls `cond` every millisecond until it holds; panics after 5 s (of tokio's clock).
pub(crate) async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Everything stored about one run, loaded after the fact.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) node_ids: Vec<String>,
    pub(crate) run: RunRecord,
    pub(crate) nodes: BTreeMap<String, NodeRecord>,
    pub(crate) events: Vec<Event>,
    pub(crate) outcome: Option<RunOutcome>,
}

impl Report {
    pub(crate) async fn load(store: &dyn RunStore, wf: &Workflow, run_id: &str) -> Self {
        let snap = store
            .load_run(run_id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("run {run_id} not stored"));
        let events = store.events(run_id, 0, usize::MAX).await.unwrap();
        Self {
            node_ids: wf.node_ids().map(str::to_string).collect(),
            run: snap.run,
            nodes: snap
                .nodes
                .into_iter()
                .map(|n| (n.node_id.to_string(), n))
                .collect(),
            events,
            outcome: None,
        }
    }

    /// A node's stored state (pending when it never left `pending`).
    pub(crate) fn node(&self, id: &str) -> NodeRecord {
        assert!(self.node_ids.iter().any(|n| n == id), "no node {id}");
        self.nodes
            .get(id)
            .cloned()
            .unwrap_or_else(|| NodeRecord::pending(Arc::from(id)))
    }

    pub(crate) fn status(&self, id: &str) -> NodeStatus {
        self.node(id).status
    }

    /// A node's output (panics when it has none).
    pub(crate) fn output(&self, id: &str) -> Value {
        self.node(id)
            .output
            .map(|v| (*v).clone())
            .unwrap_or_else(|| panic!("{id} has no output"))
    }

    pub(crate) fn statuses(&self) -> BTreeMap<String, NodeStatus> {
        self.node_ids
            .iter()
            .map(|id| (id.clone(), self.status(id)))
            .collect()
    }

    /// The events as `type` or `type:node` strings, for sequence assertions that read well.
    pub(crate) fn trace(&self) -> Vec<String> {
        self.events.iter().map(label).collect()
    }

    /// The events of one type (and node, when given).
    pub(crate) fn events_of(&self, kind: EventType, node: Option<&str>) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.kind == kind && e.node_id.as_deref() == node)
            .collect()
    }

    pub(crate) fn count(&self, kind: EventType, node: Option<&str>) -> usize {
        self.events_of(kind, node).len()
    }

    /// The sequence number of the first event of `kind` for `node`.
    pub(crate) fn seq(&self, kind: EventType, node: Option<&str>) -> u64 {
        self.events_of(kind, node)
            .first()
            .unwrap_or_else(|| panic!("no {kind} event for {node:?}"))
            .seq
    }

    /// Invariants every run of a fresh start must keep, whatever it does.
    pub(crate) fn assert_invariants(&self) {
        assert_gap_free(&self.events);
        for e in &self.events {
            assert_eq!(&*e.run_id, &*self.run.run_id, "event of another run");
            assert_eq!(&*e.workflow_id, &*self.run.workflow_id);
        }
        let starts = self.count(EventType::WorkflowStarted, None);
        let ends: usize = [
            EventType::WorkflowCompleted,
            EventType::WorkflowFailed,
            EventType::WorkflowCancelled,
        ]
        .into_iter()
        .map(|k| self.count(k, None))
        .sum();
        if self.run.status.is_terminal() {
            assert_eq!(starts, 1, "one workflow_started: {:?}", self.trace());
            assert_eq!(ends, 1, "one terminal workflow event: {:?}", self.trace());
            let last = self.events.last().expect("events");
            assert!(last.kind.is_terminal(), "the terminal event comes last");
            for id in &self.node_ids {
                assert!(
                    self.status(id).is_terminal(),
                    "{id} is {} in a {} run",
                    self.status(id),
                    self.run.status
                );
            }
        }
        let any_failed = self
            .node_ids
            .iter()
            .any(|id| self.status(id) == NodeStatus::Failed);
        if any_failed && self.run.status.is_terminal() && self.run.status != RunStatus::Cancelled {
            assert_eq!(
                self.run.status,
                RunStatus::Failed,
                "a failed node makes the run failed"
            );
        }
        if self.run.status == RunStatus::Completed {
            assert!(!any_failed);
        }
        // Each node reaches at most one terminal state, and its stored status agrees with it.
        for id in &self.node_ids {
            let terminal: Vec<&Event> = self
                .events
                .iter()
                .filter(|e| e.node_id.as_deref() == Some(id.as_str()))
                .filter(|e| {
                    matches!(
                        e.kind,
                        EventType::NodeCompleted | EventType::NodeFailed | EventType::NodeSkipped
                    )
                })
                .collect();
            assert!(
                terminal.len() <= 1,
                "{id} settled {} times: {:?}",
                terminal.len(),
                self.trace()
            );
            if let Some(e) = terminal.first() {
                let want = match e.kind {
                    EventType::NodeCompleted => NodeStatus::Completed,
                    EventType::NodeFailed => NodeStatus::Failed,
                    _ => NodeStatus::Skipped,
                };
                assert_eq!(self.status(id), want, "{id}'s stored status");
            }
        }
    }
}

/// `type` or `type:node`.
pub(crate) fn label(e: &Event) -> String {
    match &e.node_id {
        Some(n) => format!("{}:{n}", e.kind),
        None => e.kind.to_string(),
    }
}

/// Sequence numbers are 1, 2, 3… with no gap.
pub(crate) fn assert_gap_free(events: &[Event]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, want, "event sequence numbers");
}

/// Runs `def` on a fresh harness and checks the run's and every node's final status (every node
/// of the workflow must be listed), and the invariants every run keeps. Returns the harness and
/// the report for further assertions.
pub(crate) async fn check(
    def: WorkflowDefinition,
    inputs: Value,
    run: RunStatus,
    nodes: &[(&str, NodeStatus)],
) -> (Harness, Report) {
    let h = Harness::new();
    let report = h.run(def, inputs).await;
    let outcome = report.outcome.clone().expect("outcome");
    assert_eq!(outcome.error, None, "the driver stopped early");
    let want: BTreeMap<String, NodeStatus> =
        nodes.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    assert_eq!(
        report.statuses(),
        want,
        "node statuses; events: {:?}",
        report.trace()
    );
    assert_eq!(outcome.status, run, "the run's outcome");
    assert_eq!(report.run.status, run, "the run's stored status");
    report.assert_invariants();
    (h, report)
}

/// `{}`: no inputs.
pub(crate) fn no_inputs() -> Value {
    Value::Object(Map::new())
}
