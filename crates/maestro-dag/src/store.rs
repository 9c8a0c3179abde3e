//! The persistence ports the engine and the server need, and an in-memory implementation.
//!
//! The engine writes every transition of a run as one [`WriteBatch`] (node states, the run's
//! status and the events they produce, committed atomically) *before* acting on it, and resumes a
//! run from whatever [`RunStore::load_run`] returns. Durable adapters live in `maestro-store`.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definition::WorkflowDefinition;
use crate::event::Event;
use crate::status::{NodeStatus, RunStatus};

/// Why a store operation failed. Each variant maps to a stable [`StoreError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The write conflicts with existing state (e.g. an event sequence number already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The writer no longer owns the run: another replica took its lease over.
    #[error("run {run_id} is owned by a newer lease (epoch {current} > {attempted})")]
    Fenced {
        /// The run.
        run_id: String,
        /// The epoch the write carried.
        attempted: u64,
        /// The epoch the store holds.
        current: u64,
    },
    /// The store cannot be reached now; the same call may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Fenced { .. } => "fenced",
            Self::Unavailable(_) => "store_unavailable",
            Self::Corrupt(_) => "store_corrupt",
            Self::Other(_) => "store_error",
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A stored version of a definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinitionRecord {
    /// The definition's id.
    pub workflow_id: String,
    /// Version, from 1.
    pub version: u32,
    /// `sha256:…` of the canonical form.
    pub content_hash: String,
    /// The definition itself.
    pub definition: Arc<WorkflowDefinition>,
    /// When this version was stored.
    pub created_at: DateTime<Utc>,
}

/// The result of storing a definition.
#[derive(Debug, Clone, PartialEq)]
pub struct PutDefinition {
    /// The version now current.
    pub record: DefinitionRecord,
    /// False when the content was identical to the latest version (nothing stored).
    pub created: bool,
}

/// Stores versioned workflow definitions.
#[async_trait]
pub trait DefinitionStore: Send + Sync {
    /// Stores `def` as a new version unless the latest version has the same content.
    async fn put_definition(&self, def: &WorkflowDefinition) -> Result<PutDefinition, StoreError>;
    /// The given version, or the latest when `version` is `None`.
    async fn get_definition(
        &self,
        workflow_id: &str,
        version: Option<u32>,
    ) -> Result<Option<DefinitionRecord>, StoreError>;
    /// The latest version of each definition, ordered by id.
    async fn list_definitions(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<DefinitionRecord>, StoreError>;
    /// Deletes every version; false when there was none. Runs keep their pinned copy.
    async fn delete_definition(&self, workflow_id: &str) -> Result<bool, StoreError>;
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub run_id: Arc<str>,
    /// The definition's id.
    pub workflow_id: Arc<str>,
    /// The definition version the run is pinned to.
    pub version: u32,
    /// The pinned version's content hash.
    pub content_hash: String,
    /// Status.
    pub status: RunStatus,
    /// The run's inputs.
    pub inputs: Arc<Value>,
    /// The `Idempotency-Key` the run was created with, if any.
    pub idempotency_key: Option<String>,
    /// Why the run failed or was cancelled.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When the run first started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the run last reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a new run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// The run's id (chosen by the caller, e.g. a UUIDv7).
    pub run_id: Arc<str>,
    /// The definition's id.
    pub workflow_id: Arc<str>,
    /// The pinned version.
    pub version: u32,
    /// The pinned version's content hash.
    pub content_hash: String,
    /// The run's inputs.
    pub inputs: Arc<Value>,
    /// An idempotency key: a second create with the same (workflow, key) returns the first run.
    pub idempotency_key: Option<String>,
}

/// The result of creating a run.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRun {
    /// The run (the earlier one when the idempotency key matched).
    pub run: RunRecord,
    /// False when an earlier run with the same idempotency key was returned.
    pub created: bool,
}

/// The state of one node in a run. Nodes absent from the store are `pending` with attempt 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node.
    pub node_id: Arc<str>,
    /// Status.
    pub status: NodeStatus,
    /// Attempts started so far (the current one included).
    pub attempt: u32,
    /// When the current or last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the node reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// The output, once completed.
    pub output: Option<Arc<Value>>,
    /// The last error (kept on failure, cleared on success).
    pub error: Option<Arc<str>>,
    /// Why the node was skipped or cancelled.
    pub reason: Option<Arc<str>>,
    /// Set while a failed attempt waits for its retry: when the next attempt is due. A running
    /// node without it has an attempt in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
}

impl NodeRecord {
    /// A pending node that never ran.
    pub fn pending(node_id: Arc<str>) -> Self {
        Self {
            node_id,
            status: NodeStatus::Pending,
            attempt: 0,
            started_at: None,
            finished_at: None,
            output: None,
            error: None,
            reason: None,
            retry_at: None,
        }
    }
}

/// A change to the run row.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPatch {
    /// New status.
    pub status: RunStatus,
    /// Set when the run starts (kept if already set).
    pub started_at: Option<DateTime<Utc>>,
    /// Set when the run ends; cleared (None) when it starts again.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed or was cancelled; cleared otherwise.
    pub error: Option<String>,
}

/// One atomic write for one run: node rows upserted, the run row patched and events appended.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteBatch {
    /// The run.
    pub run_id: Arc<str>,
    /// The writer's fencing epoch; the store rejects a write older than the run's current epoch
    /// with [`StoreError::Fenced`]. `0` for stores without leases.
    pub epoch: u64,
    /// Change to the run row.
    pub run: Option<RunPatch>,
    /// Node rows to upsert (full rows).
    pub nodes: Vec<NodeRecord>,
    /// Events to append; their `seq` continue the run's log without gaps.
    pub events: Vec<Event>,
}

/// Everything stored about a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    /// The run row.
    pub run: RunRecord,
    /// Node rows that left `pending` at some point (others are pending).
    pub nodes: Vec<NodeRecord>,
    /// The last event's sequence number (0 when none).
    pub last_seq: u64,
}

/// Filters for listing runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Only runs of this definition.
    pub workflow_id: Option<String>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Skip this many (newest first).
    pub offset: usize,
    /// At most this many (0 = a default of 100).
    pub limit: usize,
}

/// Stores runs, node states and event logs.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Creates a run (status `pending`), or returns the run created earlier with the same
    /// workflow and idempotency key.
    async fn create_run(&self, run: NewRun) -> Result<CreateRun, StoreError>;
    /// Applies one batch atomically: all of it or nothing. On success the store may move what
    /// it keeps out of the batch (an in-memory store does, to avoid copying); on failure the
    /// batch is left as it was, so the caller can retry it.
    async fn write(&self, batch: &mut WriteBatch) -> Result<(), StoreError>;
    /// The same as [`RunStore::write`] for stores that never wait (in memory): the engine tries
    /// this first and saves a future per transition. `None` (the default) means "use `write`".
    fn write_now(&self, batch: &mut WriteBatch) -> Option<Result<(), StoreError>> {
        let _ = batch;
        None
    }
    /// Everything stored about a run.
    async fn load_run(&self, run_id: &str) -> Result<Option<RunSnapshot>, StoreError>;
    /// Runs, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;
    /// Events with `seq > after`, in order, at most `limit`.
    async fn events(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;
}

/// A replica's ownership of a run for a while. Every claim raises the run's epoch; writes carry
/// the epoch they were made under, and a store refuses a write whose epoch is not the run's
/// current one ([`StoreError::Fenced`]), so a replica that lost its lease can never overwrite
/// what the new owner wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The run.
    pub run_id: Arc<str>,
    /// Who holds it (a replica id).
    pub owner: String,
    /// The fencing epoch this lease was granted with.
    pub epoch: u64,
    /// When the lease lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// Leases on runs, for several replicas sharing one store (DESIGN §3 "Multi-replica").
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Claims up to `limit` runs that need an owner: runs not yet ended (`pending`, `running`,
    /// `paused`) with no lease or an expired one. Two concurrent claimers never get the same run
    /// (PostgreSQL: `FOR UPDATE SKIP LOCKED`). Each claim raises the run's epoch by one.
    async fn claim_runs(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError>;
    /// Claims one run, whatever its status, if it is free (no lease, an expired one, or already
    /// `owner`'s): for a run just created here, or an ended run about to be retried. `None` when
    /// another owner holds a live lease. Raises the run's epoch.
    async fn claim_run(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError>;
    /// Claims one run like [`LeaseStore::claim_run`], but only while it has not ended (in the
    /// same step, so a run another replica finishes meanwhile is never claimed): for a run
    /// created here that another replica may already have taken and finished.
    async fn claim_active_run(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError>;
    /// Extends leases still held by `owner` at their epoch. Returns the renewed leases; a lease
    /// missing from the answer was lost (expired and taken, or released).
    async fn renew(
        &self,
        owner: &str,
        leases: &[Lease],
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError>;
    /// Gives a lease up (on shutdown or when the run ended). A lease no longer held is ignored.
    async fn release(&self, lease: &Lease) -> Result<(), StoreError>;
    /// The current lease of a run, if any (expired or not).
    async fn lease(&self, run_id: &str) -> Result<Option<Lease>, StoreError>;
}

/// All store ports, as one object.
pub trait Store: DefinitionStore + RunStore + LeaseStore {}
impl<T: DefinitionStore + RunStore + LeaseStore + ?Sized> Store for T {}

#[derive(Debug, Clone, Default)]
struct RunEntry {
    record: Option<RunRecord>,
    /// Node rows in the order first written; a later row for the same node replaces it in place.
    nodes: Chunked<NodeRecord>,
    /// Position of each node's row, keyed by the address of its id: a row holds its `Arc`, so
    /// the address stays valid and unique while the row exists. A writer using another `Arc` for
    /// the same id (a recovered run) only appends a newer row; reads keep the last one.
    row_at: HashMap<usize, usize, rustc_hash::FxBuildHasher>,
    /// The event log: the event with sequence number `s` is at position `s - 1`. Kept without
    /// the run and workflow ids, which every event of a run shares.
    events: Chunked<StoredEvent>,
    last_seq: u64,
    /// Raised by every claim.
    epoch: u64,
    lease: Option<Lease>,
}

/// An append-only list in fixed-size chunks: appending never moves what is stored (no
/// reallocation of a large buffer, so no copy and no doubled peak), and a position is found by
/// a binary search over the chunks' starts.
#[derive(Debug, Clone)]
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    /// Position of the first item of each chunk.
    starts: Vec<usize>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            starts: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    const CHUNK: usize = 1024;

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    fn push(&mut self, item: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < last.capacity() => last.push(item),
            _ => {
                let mut chunk = Vec::with_capacity(Self::CHUNK);
                chunk.push(item);
                self.starts.push(self.len);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    fn get_mut(&mut self, pos: usize) -> &mut T {
        let c = self.starts.partition_point(|&s| s <= pos) - 1;
        &mut self.chunks[c][pos - self.starts[c]]
    }

    /// Items from position `start` on.
    fn iter_from(&self, start: usize) -> impl Iterator<Item = &T> {
        let c = self
            .starts
            .partition_point(|&s| s <= start)
            .saturating_sub(1);
        let offset = start.saturating_sub(self.starts.get(c).copied().unwrap_or(0));
        let head = self
            .chunks
            .get(c)
            .map_or(&[][..], |chunk| chunk.get(offset..).unwrap_or(&[]));
        head.iter().chain(self.chunks.iter().skip(c + 1).flatten())
    }
}

#[derive(Debug, Clone, Default)]
struct Inner {
    definitions: HashMap<String, Vec<DefinitionRecord>>,
    runs: HashMap<Arc<str>, RunEntry, rustc_hash::FxBuildHasher>,
    run_order: Vec<Arc<str>>,
    idempotency: HashMap<(Arc<str>, String), Arc<str>>,
}

/// An in-process store: the default for embedders and tests. It keeps everything in memory and
/// loses it with the process. [`MemoryStore::fork`] copies it, to simulate a crash at any point.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.lock();
        f.debug_struct("MemoryStore")
            .field("definitions", &g.definitions.len())
            .field("runs", &g.runs.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-written: every mutation
        // is checked before it starts. So a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies a batch: checks everything first, then moves the rows and events in.
    fn apply(&self, batch: &mut WriteBatch) -> Result<(), StoreError> {
        let mut g = self.lock();
        let entry = g
            .runs
            .get_mut(&batch.run_id)
            .ok_or_else(|| StoreError::NotFound(format!("run {}", batch.run_id)))?;
        // Check everything before changing anything, so the batch is all-or-nothing.
        if batch.epoch < entry.epoch {
            return Err(StoreError::Fenced {
                run_id: batch.run_id.to_string(),
                attempted: batch.epoch,
                current: entry.epoch,
            });
        }
        for (k, e) in batch.events.iter().enumerate() {
            let expected = entry.last_seq + 1 + k as u64;
            if e.seq != expected {
                return Err(StoreError::Conflict(format!(
                    "event seq {} for run {} but the log expects {expected}",
                    e.seq, batch.run_id
                )));
            }
        }
        if let Some(patch) = &batch.run {
            let rec = entry.record.as_mut().expect("created runs have a record");
            rec.status = patch.status;
            if rec.started_at.is_none() {
                rec.started_at = patch.started_at;
            }
            rec.finished_at = patch.finished_at;
            rec.error.clone_from(&patch.error);
            if patch.status.is_terminal() {
                // The run ended: its lease goes with the same write (the epoch stays).
                entry.lease = None;
            }
        }
        if !batch.nodes.is_empty() {
            for row in batch.nodes.drain(..) {
                let key = Arc::as_ptr(&row.node_id).cast::<u8>() as usize;
                match entry.row_at.get(&key) {
                    Some(&pos) => *entry.nodes.get_mut(pos) = row,
                    None => {
                        entry.row_at.insert(key, entry.nodes.len);
                        entry.nodes.push(row);
                    }
                }
            }
        }
        if let Some(first) = batch.events.first() {
            debug_assert_eq!(first.seq, entry.last_seq + 1);
            entry.last_seq += batch.events.len() as u64;
            for e in batch.events.drain(..) {
                entry.events.push(StoredEvent::from(e));
            }
        }
        Ok(())
    }

    /// An independent deep copy of the current contents.
    pub fn fork(&self) -> Self {
        Self {
            inner: Arc::new(Mutex::new(self.lock().clone())),
        }
    }
}

#[async_trait]
impl DefinitionStore for MemoryStore {
    async fn put_definition(&self, def: &WorkflowDefinition) -> Result<PutDefinition, StoreError> {
        let hash = def.content_hash();
        let mut g = self.lock();
        let versions = g.definitions.entry(def.id.clone()).or_default();
        if let Some(last) = versions.last()
            && last.content_hash == hash
        {
            return Ok(PutDefinition {
                record: last.clone(),
                created: false,
            });
        }
        let record = DefinitionRecord {
            workflow_id: def.id.clone(),
            version: versions.last().map_or(1, |l| l.version + 1),
            content_hash: hash,
            definition: Arc::new(def.clone()),
            created_at: Utc::now().trunc_subsecs(6),
        };
        versions.push(record.clone());
        Ok(PutDefinition {
            record,
            created: true,
        })
    }

    async fn get_definition(
        &self,
        workflow_id: &str,
        version: Option<u32>,
    ) -> Result<Option<DefinitionRecord>, StoreError> {
        let g = self.lock();
        let Some(versions) = g.definitions.get(workflow_id) else {
            return Ok(None);
        };
        Ok(match version {
            None => versions.last().cloned(),
            Some(v) => versions.iter().find(|r| r.version == v).cloned(),
        })
    }

    async fn list_definitions(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<DefinitionRecord>, StoreError> {
        let g = self.lock();
        let mut all: Vec<&DefinitionRecord> =
            g.definitions.values().filter_map(|v| v.last()).collect();
        all.sort_by(|a, b| a.workflow_id.cmp(&b.workflow_id));
        Ok(all.into_iter().skip(offset).take(limit).cloned().collect())
    }

    async fn delete_definition(&self, workflow_id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().definitions.remove(workflow_id).is_some())
    }
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateRun, StoreError> {
        let mut g = self.lock();
        if let Some(key) = &run.idempotency_key
            && let Some(existing) = g.idempotency.get(&(run.workflow_id.clone(), key.clone()))
        {
            let record = g.runs[existing]
                .record
                .clone()
                .expect("indexed runs have a record");
            return Ok(CreateRun {
                run: record,
                created: false,
            });
        }
        if g.runs.contains_key(&run.run_id) {
            return Err(StoreError::Conflict(format!(
                "run {} already exists",
                run.run_id
            )));
        }
        let record = RunRecord {
            run_id: run.run_id.clone(),
            workflow_id: run.workflow_id.clone(),
            version: run.version,
            content_hash: run.content_hash,
            status: RunStatus::Pending,
            inputs: run.inputs,
            idempotency_key: run.idempotency_key.clone(),
            error: None,
            created_at: Utc::now().trunc_subsecs(6),
            started_at: None,
            finished_at: None,
        };
        if let Some(key) = run.idempotency_key {
            g.idempotency
                .insert((run.workflow_id, key), run.run_id.clone());
        }
        g.run_order.push(run.run_id.clone());
        g.runs.insert(
            run.run_id,
            RunEntry {
                record: Some(record.clone()),
                ..RunEntry::default()
            },
        );
        Ok(CreateRun {
            run: record,
            created: true,
        })
    }

    async fn write(&self, batch: &mut WriteBatch) -> Result<(), StoreError> {
        self.apply(batch)
    }

    fn write_now(&self, batch: &mut WriteBatch) -> Option<Result<(), StoreError>> {
        Some(self.apply(batch))
    }

    async fn load_run(&self, run_id: &str) -> Result<Option<RunSnapshot>, StoreError> {
        let g = self.lock();
        let Some(entry) = g.runs.get(run_id) else {
            return Ok(None);
        };
        let Some(run) = entry.record.clone() else {
            return Ok(None);
        };
        let mut latest: HashMap<&str, &NodeRecord, rustc_hash::FxBuildHasher> = HashMap::default();
        for row in entry.nodes.iter() {
            latest.insert(&row.node_id, row);
        }
        let mut nodes: Vec<NodeRecord> = latest.into_values().cloned().collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(Some(RunSnapshot {
            run,
            nodes,
            last_seq: entry.last_seq,
        }))
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let g = self.lock();
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        Ok(g.run_order
            .iter()
            .rev()
            .filter_map(|id| g.runs.get(id).and_then(|e| e.record.as_ref()))
            .filter(|r| {
                filter
                    .workflow_id
                    .as_deref()
                    .is_none_or(|w| &*r.workflow_id == w)
            })
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .skip(filter.offset)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn events(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let g = self.lock();
        let Some(entry) = g.runs.get(run_id) else {
            return Err(StoreError::NotFound(format!("run {run_id}")));
        };
        let Some(run) = &entry.record else {
            return Ok(Vec::new());
        };
        Ok(entry
            .events
            .iter_from(after as usize)
            .take(limit)
            .zip(after + 1..)
            .map(|(e, seq)| e.to_event(seq, run))
            .collect())
    }
}

/// An event as the memory store keeps it, in 56 bytes instead of an [`Event`]'s 200: without the
/// ids its run gives, without its sequence number (its position in the log gives it), and with
/// only the data fields that the common events carry (attempts and output) inline; any other
/// data (errors, reasons, delays, extra fields) goes whole into one box.
#[derive(Debug, Clone)]
struct StoredEvent {
    node_id: Option<Arc<str>>,
    output: Option<Arc<Value>>,
    /// All of the data, when it holds more than `attempt`, `max_attempts` and `output` (those
    /// fields are then unused).
    rest: Option<Box<crate::event::EventData>>,
    timestamp: DateTime<Utc>,
    attempt: Option<NonZeroU32>,
    max_attempts: Option<NonZeroU32>,
    kind: crate::event::EventType,
}

/// A count that fits the compact form: absent, or a positive number.
fn compact_count(n: Option<u32>) -> Result<Option<NonZeroU32>, ()> {
    match n {
        None => Ok(None),
        Some(n) => NonZeroU32::new(n).map(Some).ok_or(()),
    }
}

impl From<Event> for StoredEvent {
    fn from(e: Event) -> Self {
        let d = e.data;
        let counts = compact_count(d.attempt).and_then(|a| Ok((a, compact_count(d.max_attempts)?)));
        // Every field named, so that a new one cannot be dropped here unnoticed.
        let crate::event::EventData {
            attempt: _,
            max_attempts: _,
            output: _,
            error,
            delay_ms,
            reason,
            extra,
        } = &d;
        let plain = error.is_none() && delay_ms.is_none() && reason.is_none() && extra.is_empty();
        let (output, rest, attempt, max_attempts) = match counts {
            Ok((attempt, max_attempts)) if plain => (d.output, None, attempt, max_attempts),
            _ => (None, Some(Box::new(d)), None, None),
        };
        Self {
            node_id: e.node_id,
            output,
            rest,
            timestamp: e.timestamp,
            attempt,
            max_attempts,
            kind: e.kind,
        }
    }
}

impl StoredEvent {
    fn to_event(&self, seq: u64, run: &RunRecord) -> Event {
        let data = match &self.rest {
            Some(d) => (**d).clone(),
            None => crate::event::EventData {
                attempt: self.attempt.map(NonZeroU32::get),
                max_attempts: self.max_attempts.map(NonZeroU32::get),
                output: self.output.clone(),
                ..Default::default()
            },
        };
        Event {
            seq,
            kind: self.kind,
            workflow_id: run.workflow_id.clone(),
            run_id: run.run_id.clone(),
            node_id: self.node_id.clone(),
            data,
            timestamp: self.timestamp,
        }
    }
}

impl MemoryStore {
    fn claim_one(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        active_only: bool,
    ) -> Result<Option<Lease>, StoreError> {
        let now = Utc::now();
        let mut g = self.lock();
        let Some(entry) = g.runs.get_mut(run_id) else {
            return Err(StoreError::NotFound(format!("run {run_id}")));
        };
        if active_only && entry.record.as_ref().is_none_or(|r| r.status.is_terminal()) {
            return Ok(None);
        }
        if let Some(l) = &entry.lease
            && l.expires_at > now
            && l.owner != owner
        {
            return Ok(None);
        }
        entry.epoch += 1;
        let lease = Lease {
            run_id: Arc::from(run_id),
            owner: owner.to_string(),
            epoch: entry.epoch,
            expires_at: now + lease_ttl(ttl),
        };
        entry.lease = Some(lease.clone());
        Ok(Some(lease))
    }
}

fn lease_ttl(ttl: Duration) -> chrono::Duration {
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn claim_runs(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let now = Utc::now();
        let mut g = self.lock();
        let order = g.run_order.clone();
        let mut out = Vec::new();
        for id in order {
            if out.len() >= limit {
                break;
            }
            let entry = g.runs.get_mut(&id).expect("ordered runs exist");
            let ended = entry.record.as_ref().is_none_or(|r| r.status.is_terminal());
            let free = entry.lease.as_ref().is_none_or(|l| l.expires_at <= now);
            if ended || !free {
                continue;
            }
            entry.epoch += 1;
            let lease = Lease {
                run_id: id.clone(),
                owner: owner.to_string(),
                epoch: entry.epoch,
                expires_at: now + lease_ttl(ttl),
            };
            entry.lease = Some(lease.clone());
            out.push(lease);
        }
        Ok(out)
    }

    async fn claim_run(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.claim_one(run_id, owner, ttl, false)
    }

    async fn claim_active_run(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.claim_one(run_id, owner, ttl, true)
    }

    async fn renew(
        &self,
        owner: &str,
        leases: &[Lease],
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let now = Utc::now();
        let mut g = self.lock();
        let mut out = Vec::new();
        for l in leases {
            let Some(entry) = g.runs.get_mut(&l.run_id) else {
                continue;
            };
            if let Some(cur) = &mut entry.lease
                && cur.owner == owner
                && cur.epoch == l.epoch
                && entry.epoch == l.epoch
            {
                cur.expires_at = now + lease_ttl(ttl);
                out.push(cur.clone());
            }
        }
        Ok(out)
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut g = self.lock();
        if let Some(entry) = g.runs.get_mut(&lease.run_id)
            && entry
                .lease
                .as_ref()
                .is_some_and(|l| l.owner == lease.owner && l.epoch == lease.epoch)
        {
            entry.lease = None;
        }
        Ok(())
    }

    async fn lease(&self, run_id: &str) -> Result<Option<Lease>, StoreError> {
        Ok(self.lock().runs.get(run_id).and_then(|e| e.lease.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventData, EventType};

    #[test]
    fn stored_events_are_compact_and_give_back_what_was_written() {
        assert!(std::mem::size_of::<StoredEvent>() <= 56);
        let run = RunRecord {
            run_id: "r".into(),
            workflow_id: "w".into(),
            version: 1,
            content_hash: String::new(),
            status: RunStatus::Running,
            inputs: Arc::new(Value::Null),
            idempotency_key: None,
            error: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
        };
        let ts = Utc::now();
        let datas = [
            EventData::default(),
            EventData {
                attempt: Some(2),
                max_attempts: Some(3),
                output: Some(Arc::new(serde_json::json!({"k": 1}))),
                ..Default::default()
            },
            // Not compact: a zero count, an error, a reason, a delay, an extra field.
            EventData {
                attempt: Some(0),
                ..Default::default()
            },
            EventData {
                attempt: Some(1),
                error: Some("boom".into()),
                delay_ms: Some(5),
                reason: Some("why".into()),
                ..Default::default()
            }
            .with("extra", 7),
        ];
        for (k, data) in datas.into_iter().enumerate() {
            let e = Event {
                seq: k as u64 + 1,
                kind: EventType::NodeRetry,
                workflow_id: "w".into(),
                run_id: "r".into(),
                node_id: Some("n".into()),
                data,
                timestamp: ts,
            };
            let back = StoredEvent::from(e.clone()).to_event(e.seq, &run);
            assert_eq!(back, e);
        }
    }

    #[test]
    fn chunked_lists_find_every_position_across_chunks() {
        let mut c: Chunked<usize> = Chunked::default();
        let n = Chunked::<usize>::CHUNK * 3 + 7;
        for k in 0..n {
            c.push(k);
        }
        assert_eq!(c.iter().count(), n);
        for start in [0, 1, 1023, 1024, 1025, 2048, n - 1, n, n + 5] {
            let got: Vec<usize> = c.iter_from(start).copied().collect();
            let want: Vec<usize> = (start.min(n)..n).collect();
            assert_eq!(got, want, "from {start}");
        }
        *c.get_mut(1500) = 0;
        assert_eq!(c.iter_from(1500).next(), Some(&0));
    }
}
