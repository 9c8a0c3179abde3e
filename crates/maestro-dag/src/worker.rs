//! Running runs across replicas (DESIGN §3 "Multi-replica"): a [`Worker`] claims runs through
//! leases, drives them with its [`Engine`], renews its leases, lets go of the ones it lost, and
//! releases them when a run ends or the replica shuts down.
//!
//! Ownership is decided by the store, never by the worker: a run is driven only under a lease,
//! every write carries the lease's epoch, and a store refuses the writes of an older epoch. So a
//! replica that stalls past its lease (a long GC pause, `SIGSTOP`) finds its writes fenced and
//! stops, while the replica that took the run over resumes it from the store.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::engine::{Engine, EngineError, RunHandle, StartOptions};
use crate::executor::ExecutorRegistry;
use crate::store::{DefinitionStore, Lease, LeaseStore, RunRecord};
use crate::workflow::Workflow;

/// Finds the compiled workflow a run is pinned to.
#[async_trait]
pub trait WorkflowResolver: Send + Sync {
    /// The workflow `workflow_id` at `version`.
    async fn resolve(&self, workflow_id: &str, version: u32) -> Result<Arc<Workflow>, EngineError>;
}

/// Resolves workflows from a definition store, compiling each version once.
pub struct StoreResolver {
    definitions: Arc<dyn DefinitionStore>,
    executors: ExecutorRegistry,
    cache: Mutex<HashMap<(String, u32), Arc<Workflow>>>,
}

impl fmt::Debug for StoreResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreResolver")
            .field("executors", &self.executors)
            .finish_non_exhaustive()
    }
}

impl StoreResolver {
    /// A resolver over `definitions`, validating executor keys against `executors`.
    pub fn new(definitions: Arc<dyn DefinitionStore>, executors: ExecutorRegistry) -> Self {
        Self {
            definitions,
            executors,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Adds an already compiled workflow to the cache.
    pub fn insert(&self, workflow: Arc<Workflow>) {
        let key = (workflow.id().to_string(), workflow.version());
        self.lock().insert(key, workflow);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Arc<Workflow>>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl WorkflowResolver for StoreResolver {
    async fn resolve(&self, workflow_id: &str, version: u32) -> Result<Arc<Workflow>, EngineError> {
        if let Some(wf) = self.lock().get(&(workflow_id.to_string(), version)) {
            return Ok(wf.clone());
        }
        let record = self
            .definitions
            .get_definition(workflow_id, Some(version))
            .await?
            .ok_or_else(|| {
                EngineError::WorkflowNotFound(format!("{workflow_id} version {version}"))
            })?;
        let compiled = Workflow::compile_arc(record.definition.clone(), Some(&self.executors))
            .map_err(|e| EngineError::InvalidWorkflow(e.to_string()))?
            .with_version(version);
        let wf = Arc::new(compiled);
        self.insert(wf.clone());
        Ok(wf)
    }
}

/// Settings of a [`Worker`].
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This replica's identity in leases (unique per process).
    pub owner: String,
    /// How long a lease lasts without renewal; a dead replica's runs are taken over after it.
    pub lease_ttl: Duration,
    /// How often to look for runs that need an owner.
    pub poll_interval: Duration,
    /// Runs claimed at most per poll.
    pub claim_batch: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            owner: format!("maestro-{}", uuid::Uuid::new_v4()),
            lease_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_secs(1),
            claim_batch: 32,
        }
    }
}

/// A run started through a worker.
#[derive(Debug)]
pub struct StartedRun {
    /// The run as stored (the earlier one when an idempotency key matched).
    pub run: RunRecord,
    /// False when an earlier run with the same idempotency key was returned.
    pub created: bool,
    /// A handle when this replica drives the run.
    pub handle: Option<RunHandle>,
}

/// Claims, drives, renews and releases runs for one replica.
pub struct Worker {
    engine: Engine,
    leases: Arc<dyn LeaseStore>,
    resolver: Arc<dyn WorkflowResolver>,
    config: WorkerConfig,
    held: Mutex<HashMap<Arc<str>, Lease>>,
    /// When the last poll ran, for liveness.
    last_poll: Mutex<std::time::Instant>,
    /// Set when the replica drains: no new run is claimed.
    claiming: std::sync::atomic::AtomicBool,
    /// Runs taken over from another owner (or from none) by polling.
    takeovers: std::sync::atomic::AtomicU64,
    /// Held while a run is claimed and handed to the engine, so two paths never adopt one run.
    adopting: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("owner", &self.config.owner)
            .field("held", &self.held_count())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker driving runs with `engine`, under leases from `leases`.
    pub fn new(
        engine: Engine,
        leases: Arc<dyn LeaseStore>,
        resolver: Arc<dyn WorkflowResolver>,
        config: WorkerConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            leases,
            resolver,
            config,
            held: Mutex::new(HashMap::new()),
            last_poll: Mutex::new(std::time::Instant::now()),
            claiming: std::sync::atomic::AtomicBool::new(true),
            takeovers: std::sync::atomic::AtomicU64::new(0),
            adopting: tokio::sync::Mutex::new(()),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// This replica's lease owner id.
    pub fn owner(&self) -> &str {
        &self.config.owner
    }

    /// Time since the last poll (liveness: the scheduler loop makes progress).
    pub fn last_poll_age(&self) -> Duration {
        self.last_poll
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// Runs this worker took over by polling (runs whose owner died, or that had none), for the
    /// `dag_lease_takeovers_total` metric.
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops claiming runs (draining); renewals go on, so the runs held keep their leases.
    pub fn stop_claiming(&self) {
        self.claiming
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many leases this worker holds.
    pub fn held_count(&self) -> usize {
        self.lock().len()
    }

    /// The leases this worker holds.
    pub fn held(&self) -> Vec<Lease> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Lease>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores a new run, claims it and drives it here. If another replica claimed it first (it
    /// polls for unowned runs), that replica drives it and `handle` is `None`.
    pub async fn start_run(
        &self,
        workflow: Arc<Workflow>,
        inputs: Value,
        options: StartOptions,
    ) -> Result<StartedRun, EngineError> {
        let created = self.engine.create_run(&workflow, inputs, options).await?;
        let run = created.run;
        if !created.created {
            return Ok(StartedRun {
                run,
                created: false,
                handle: None,
            });
        }
        let handle = self.drive(workflow, &run.run_id).await?;
        Ok(StartedRun {
            run,
            created: true,
            handle,
        })
    }

    /// Claims a run that has not ended and drives it here, if it is free. Used for new runs, and
    /// by the HTTP layer for runs it must control whose replica died (to approve a node, say);
    /// an ended run is retried with [`Worker::retry`].
    pub async fn drive(
        &self,
        workflow: Arc<Workflow>,
        run_id: &str,
    ) -> Result<Option<RunHandle>, EngineError> {
        // One adoption at a time: a run this worker drives already is never claimed again (a
        // claim raises the epoch and would fence the driver that runs it).
        let _one = self.adopting.lock().await;
        if self.engine.is_driving(run_id) {
            let epoch = self.lock().get(run_id).map_or(0, |l| l.epoch);
            return self.engine.recover(workflow, run_id, epoch).await.map(Some);
        }
        // Only while the run has not ended: another replica may have claimed, driven and ended
        // it since it was created (its terminal write let the lease go).
        let Some(lease) = self
            .leases
            .claim_active_run(run_id, &self.config.owner, self.config.lease_ttl)
            .await?
        else {
            return Ok(None);
        };
        self.adopt(workflow, lease).await.map(Some)
    }

    /// Retries a failed or cancelled run from its failed nodes, under a fresh lease.
    pub async fn retry(
        &self,
        workflow: Arc<Workflow>,
        run_id: &str,
    ) -> Result<RunHandle, EngineError> {
        // Under the adoption lock, so that a poll never sees the lease before the driver runs.
        let _one = self.adopting.lock().await;
        let lease = self
            .leases
            .claim_run(run_id, &self.config.owner, self.config.lease_ttl)
            .await?
            .ok_or_else(|| {
                EngineError::InvalidTransition(format!("run {run_id} is owned by another replica"))
            })?;
        self.lock().insert(lease.run_id.clone(), lease.clone());
        match self.engine.retry(workflow, run_id, lease.epoch).await {
            Ok(handle) => Ok(handle),
            Err(e) => {
                self.release(run_id).await;
                Err(e)
            }
        }
    }

    async fn adopt(&self, workflow: Arc<Workflow>, lease: Lease) -> Result<RunHandle, EngineError> {
        let run_id = lease.run_id.clone();
        self.lock().insert(run_id.clone(), lease.clone());
        match self.engine.recover(workflow, &run_id, lease.epoch).await {
            Ok(handle) => Ok(handle),
            Err(e) => {
                self.release(&run_id).await;
                Err(e)
            }
        }
    }

    async fn release(&self, run_id: &str) {
        let lease = self.lock().remove(run_id);
        if let Some(lease) = lease
            && let Err(e) = self.leases.release(&lease).await
        {
            warn!(run_id, error = %e, "could not release a lease; it will expire");
        }
    }

    /// One poll: releases the leases of runs that ended here, then claims and drives runs that
    /// need an owner. Returns how many runs it took on.
    pub async fn claim_once(&self) -> usize {
        *self
            .last_poll
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Instant::now();
        {
            // A lease is held before its driver is registered (`adopt`): under the adoption
            // lock, no run is between the two, so "held but not driven" means it ended.
            let _one = self.adopting.lock().await;
            self.release_finished().await;
        }
        if !self.claiming.load(std::sync::atomic::Ordering::SeqCst) {
            return 0;
        }
        let leases = match self
            .leases
            .claim_runs(
                &self.config.owner,
                self.config.lease_ttl,
                self.config.claim_batch,
            )
            .await
        {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "could not claim runs");
                return 0;
            }
        };
        let mut taken = 0;
        for lease in leases {
            let run_id = lease.run_id.clone();
            let run = match self.engine.store().load_run(&run_id).await {
                Ok(Some(snapshot)) => snapshot.run,
                Ok(None) => continue,
                Err(e) => {
                    warn!(run_id = %run_id, error = %e, "could not load a claimed run");
                    let _ = self.leases.release(&lease).await;
                    continue;
                }
            };
            let workflow = match self.resolver.resolve(&run.workflow_id, run.version).await {
                Ok(wf) => wf,
                Err(e) => {
                    warn!(run_id = %run_id, error = %e, "cannot resolve the workflow of a claimed run");
                    let _ = self.leases.release(&lease).await;
                    continue;
                }
            };
            let _one = self.adopting.lock().await;
            if self.engine.is_driving(&run_id) {
                let held = self.lock().get(&run_id).map(|l| l.epoch);
                if held.is_some_and(|epoch| epoch >= lease.epoch) {
                    // Started here meanwhile (its own claim came after this one): that driver,
                    // with the newer epoch, keeps the run; this older lease is dropped.
                    continue;
                }
                // A driver left over from a lease this replica lost, still stopping: the new
                // claim has fenced it anyway. Let it stop without waiting for it (renewals and
                // other runs must not wait), give the lease back, and take the run on at a later
                // poll, once the old driver is gone.
                if let Some(stopper) = self.engine.stopper(&run_id) {
                    tokio::spawn(stopper.stop());
                }
                if let Err(e) = self.leases.release(&lease).await {
                    warn!(run_id = %run_id, error = %e, "could not release a lease; it will expire");
                }
                continue;
            }
            info!(run_id = %run_id, epoch = lease.epoch, "took over a run");
            match self.adopt(workflow, lease).await {
                Ok(_) => {
                    taken += 1;
                    self.takeovers
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => warn!(run_id = %run_id, error = %e, "could not resume a claimed run"),
            }
        }
        taken
    }

    /// Renews every held lease; stops driving the runs whose lease was lost.
    pub async fn renew_once(&self) {
        let held = self.held();
        if held.is_empty() {
            return;
        }
        let renewed = match self
            .leases
            .renew(&self.config.owner, &held, self.config.lease_ttl)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Keep driving: if the store is down, nobody else can take the runs over either,
                // and the fencing epoch protects the store if they do.
                warn!(error = %e, "could not renew leases");
                return;
            }
        };
        let kept: HashMap<Arc<str>, Lease> =
            renewed.into_iter().map(|l| (l.run_id.clone(), l)).collect();
        let lost: Vec<Arc<str>> = held
            .iter()
            .map(|l| l.run_id.clone())
            .filter(|id| !kept.contains_key(id))
            .collect();
        {
            let mut g = self.lock();
            for (id, lease) in &kept {
                if let Some(slot) = g.get_mut(id) {
                    *slot = lease.clone();
                }
            }
            for id in &lost {
                g.remove(id);
            }
        }
        for id in lost {
            // Taken now, so a late stop never reaches a driver started for the run afterwards.
            let Some(stopper) = self.engine.stopper(&id) else {
                continue; // It ended here; its terminal write let the lease go.
            };
            warn!(run_id = %id, "lost the lease of a run; stopping it here");
            // Not awaited here: renewing and polling go on while the driver stops.
            tokio::spawn(stopper.stop());
        }
    }

    async fn release_finished(&self) {
        let finished: Vec<Arc<str>> = self
            .lock()
            .keys()
            .filter(|id| !self.engine.is_driving(id))
            .cloned()
            .collect();
        for id in finished {
            debug!(run_id = %id, "releasing the lease of a run that stopped here");
            self.release(&id).await;
        }
    }

    /// Polls and renews until `shutdown` is cancelled, then stops every run it drives (their
    /// stored state stays as it is) and releases their leases so another replica resumes them at
    /// once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renew =
            tokio::time::interval((self.config.lease_ttl / 3).max(Duration::from_millis(10)));
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = renew.tick() => self.renew_once().await,
                _ = poll.tick() => {
                    self.claim_once().await;
                }
            }
        }
        self.drain().await;
    }

    /// Stops every run driven here and releases the leases.
    pub async fn drain(&self) {
        self.engine.shutdown().await;
        for lease in self.held() {
            self.release(&lease.run_id).await;
        }
    }
}
