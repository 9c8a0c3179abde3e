//! The SQLite store: diesel's `SqliteConnection` behind diesel-async's `SyncConnectionWrapper`,
//! pooled by deadpool. WAL mode, a busy timeout and foreign keys on every connection.
//!
//! SQLite has one writer at a time, so the store has one writer connection (a pool of one:
//! writes queue in order instead of spinning on `SQLITE_BUSY`) and a pool of readers, which WAL
//! lets read while the writer writes. Every operation runs as one blocking task on its
//! connection: the statements of a transaction do not hop between threads.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use diesel::connection::SimpleConnection;
use diesel::result::{ConnectionError, Error as DieselError};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::upsert::excluded;
use diesel::{
    Connection, ExpressionMethods, OptionalExtension, QueryableByName, RunQueryDsl, sql_query,
};
use diesel_async::AsyncConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use maestro_dag::definition::WorkflowDefinition;
use maestro_dag::event::{Event, EventData};
use maestro_dag::status::RunStatus;
use maestro_dag::store::{
    CreateRun, DefinitionRecord, DefinitionStore, Lease, LeaseStore, NewRun, NodeRecord,
    PutDefinition, RunFilter, RunRecord, RunSnapshot, RunStore, StoreError, WriteBatch,
};

use crate::codec::{
    self, arc_str, first_seq, i32_of, i64_of, json, last_rows, refusal, to_json, ts_parse,
    ts_parse_opt, ts_text, u32_of, u64_of,
};
use crate::error::{Error, from_diesel, from_pool, timed_out};
use crate::group::{Committer, GroupResult, GroupWriter, commit_one};
use crate::{Backend, DurableStore, PoolState, SqliteSync, StoreOptions};

/// The SQLite migrations, compiled in.
pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

type Conn = SyncConnectionWrapper<SqliteConnection>;

mod schema {
    diesel::table! {
        node_states (run_pk, node_id) {
            run_pk -> BigInt,
            node_id -> Text,
            status -> Text,
            attempt -> Integer,
            started_at -> Nullable<Text>,
            finished_at -> Nullable<Text>,
            output -> Nullable<Text>,
            error -> Nullable<Text>,
            reason -> Nullable<Text>,
            retry_at -> Nullable<Text>,
        }
    }

    diesel::table! {
        run_events (run_pk, seq) {
            run_pk -> BigInt,
            seq -> BigInt,
            #[sql_name = "type"]
            kind -> Text,
            node_id -> Nullable<Text>,
            data -> Text,
            ts -> Text,
        }
    }
}

/// A store in an SQLite database file (or in memory).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: String,
    writer: Pool<Conn>,
    /// The same pool as `writer` for an in-memory database (each connection would otherwise
    /// see its own empty database).
    reader: Pool<Conn>,
    options: StoreOptions,
    group: OnceLock<GroupWriter>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("pool", &self.pool_state())
            .finish()
    }
}

fn pool(path: &str, size: usize, options: &StoreOptions) -> Result<Pool<Conn>, Error> {
    let sync = match options.sqlite_sync {
        SqliteSync::Normal => "NORMAL",
        SqliteSync::Full => "FULL",
    };
    let pragmas = format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
         PRAGMA foreign_keys = ON;",
        options.busy_timeout.as_millis()
    );
    let mut config = ManagerConfig::<Conn>::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        let pragmas = pragmas.clone();
        let url = url.to_string();
        Box::pin(async move {
            let mut conn = Conn::establish(&url).await?;
            conn.spawn_blocking(move |c| c.batch_execute(&pragmas))
                .await
                .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
            Ok(conn)
        })
    });
    Pool::builder(AsyncDieselConnectionManager::new_with_config(path, config))
        .max_size(size)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(options.operation_timeout))
        .create_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| Error::Store(StoreError::Other(format!("sqlite pool: {e}"))))
}

impl SqliteStore {
    /// A store for the database file at `path` (`:memory:` for a private in-memory database).
    /// Lazy: the file is opened (and created) on first use.
    pub fn new(path: &str, options: StoreOptions) -> Result<Self, Error> {
        let memory = path == ":memory:" || path.contains("mode=memory");
        let writer = pool(path, 1, &options)?;
        let reader = if memory {
            writer.clone()
        } else {
            pool(path, options.pool_size.max(1), &options)?
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_string(),
                writer,
                reader,
                options,
                group: OnceLock::new(),
            }),
        })
    }

    /// Runs `f` on a connection of `pool` as one blocking task, within the operation timeout.
    async fn on<R: Send + 'static>(
        &self,
        write: bool,
        what: &'static str,
        f: impl FnOnce(&mut SqliteConnection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let pool = if write {
            &self.inner.writer
        } else {
            &self.inner.reader
        };
        let work = async {
            let mut conn = pool.get().await.map_err(from_pool)?;
            conn.spawn_blocking(move |c| Ok(f(c)))
                .await
                .map_err(|e| from_diesel(what, e))?
        };
        tokio::time::timeout(self.inner.options.operation_timeout, work)
            .await
            .map_err(|_| timed_out(what))?
    }

    fn group(&self) -> &GroupWriter {
        self.inner.group.get_or_init(|| {
            GroupWriter::start(Arc::new(self.clone()), self.inner.options.group_max_batches)
        })
    }
}

/// Runs `f` in an `IMMEDIATE` transaction (takes the write lock up front, so it never fails
/// half-way on a lock upgrade), mapping errors.
fn immediate<R>(
    c: &mut SqliteConnection,
    what: &str,
    f: impl FnOnce(&mut SqliteConnection) -> Result<R, TxError>,
) -> Result<R, StoreError> {
    c.immediate_transaction(f).map_err(|e| match e {
        TxError::Db(e) => from_diesel(what, e),
        TxError::Store(e) => e,
    })
}

/// Inside a transaction: a database error (rolls back) or a refusal (also rolls back).
enum TxError {
    Db(DieselError),
    Store(StoreError),
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

// ---- rows ------------------------------------------------------------------------------------

#[derive(QueryableByName)]
struct DefRow {
    #[diesel(sql_type = Text)]
    workflow_id: String,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Text)]
    content_hash: String,
    #[diesel(sql_type = Text)]
    definition: String,
    #[diesel(sql_type = Text)]
    created_at: String,
}

impl DefRow {
    fn decode(self) -> Result<DefinitionRecord, StoreError> {
        Ok(DefinitionRecord {
            version: u32_of("definition version", self.version)?,
            definition: Arc::new(json::<WorkflowDefinition>(
                &format!("definition {}", self.workflow_id),
                &self.definition,
            )?),
            created_at: ts_parse("definition created_at", &self.created_at)?,
            workflow_id: self.workflow_id,
            content_hash: self.content_hash,
        })
    }
}

const RUN_COLUMNS: &str = "id, run_id, workflow_id, version, content_hash, status, inputs, \
     idempotency_key, error, created_at, started_at, finished_at, epoch, last_seq";

#[derive(QueryableByName)]
struct RunRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    run_id: String,
    #[diesel(sql_type = Text)]
    workflow_id: String,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Text)]
    content_hash: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    inputs: String,
    #[diesel(sql_type = Nullable<Text>)]
    idempotency_key: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Text)]
    created_at: String,
    #[diesel(sql_type = Nullable<Text>)]
    started_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    finished_at: Option<String>,
    #[diesel(sql_type = BigInt)]
    #[allow(dead_code)]
    epoch: i64,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

impl RunRow {
    fn decode(self) -> Result<RunRecord, StoreError> {
        Ok(RunRecord {
            status: codec::run_status(&self.status)?,
            inputs: Arc::new(json(&format!("run {} inputs", self.run_id), &self.inputs)?),
            version: u32_of("run version", self.version)?,
            created_at: ts_parse("run created_at", &self.created_at)?,
            started_at: ts_parse_opt("run started_at", self.started_at.as_deref())?,
            finished_at: ts_parse_opt("run finished_at", self.finished_at.as_deref())?,
            run_id: Arc::from(self.run_id),
            workflow_id: Arc::from(self.workflow_id),
            content_hash: self.content_hash,
            idempotency_key: self.idempotency_key,
            error: self.error,
        })
    }
}

#[derive(QueryableByName)]
struct NodeRow {
    #[diesel(sql_type = Text)]
    node_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempt: i32,
    #[diesel(sql_type = Nullable<Text>)]
    started_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    finished_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    output: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    retry_at: Option<String>,
}

impl NodeRow {
    fn decode(self) -> Result<NodeRecord, StoreError> {
        Ok(NodeRecord {
            status: codec::node_status(&self.status)?,
            attempt: u32_of("node attempt", self.attempt)?,
            started_at: ts_parse_opt("node started_at", self.started_at.as_deref())?,
            finished_at: ts_parse_opt("node finished_at", self.finished_at.as_deref())?,
            output: self
                .output
                .map(|o| json(&format!("node {} output", self.node_id), &o).map(Arc::new))
                .transpose()?,
            error: arc_str(self.error),
            reason: arc_str(self.reason),
            retry_at: ts_parse_opt("node retry_at", self.retry_at.as_deref())?,
            node_id: Arc::from(self.node_id),
        })
    }
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Nullable<Text>)]
    node_id: Option<String>,
    #[diesel(sql_type = Text)]
    data: String,
    #[diesel(sql_type = Text)]
    ts: String,
}

impl EventRow {
    fn decode(self, workflow_id: &Arc<str>, run_id: &Arc<str>) -> Result<Event, StoreError> {
        Ok(Event {
            seq: u64_of("event seq", self.seq)?,
            kind: codec::event_type(&self.kind)?,
            workflow_id: workflow_id.clone(),
            run_id: run_id.clone(),
            node_id: arc_str(self.node_id),
            data: json::<EventData>("event data", &self.data)?,
            timestamp: ts_parse("event timestamp", &self.ts)?,
        })
    }
}

#[derive(QueryableByName)]
struct HeadRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    workflow_id: String,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

#[derive(QueryableByName)]
struct LeaseRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    run_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    lease_owner: Option<String>,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
    #[diesel(sql_type = Nullable<Text>)]
    lease_expires_at: Option<String>,
}

impl LeaseRow {
    fn decode(self) -> Result<Option<Lease>, StoreError> {
        let (Some(owner), Some(exp)) = (self.lease_owner, self.lease_expires_at) else {
            return Ok(None);
        };
        Ok(Some(Lease {
            run_id: Arc::from(self.run_id),
            owner,
            epoch: u64_of("run epoch", self.epoch)?,
            expires_at: ts_parse("lease expiry", &exp)?,
        }))
    }
}

#[derive(QueryableByName)]
struct One {
    #[diesel(sql_type = BigInt)]
    #[allow(dead_code)]
    one: i64,
}

// ---- the write path ----------------------------------------------------------------------------

fn head(c: &mut SqliteConnection, run_id: &str) -> Result<Option<HeadRow>, DieselError> {
    sql_query("SELECT id, workflow_id, epoch, last_seq FROM runs WHERE run_id = ?")
        .bind::<Text, _>(run_id)
        .get_result::<HeadRow>(c)
        .optional()
}

/// Applies one batch inside the caller's transaction. `Err` is a database error (the whole
/// transaction must roll back); `Ok(Err(_))` a refusal that wrote nothing.
fn apply(c: &mut SqliteConnection, b: &WriteBatch) -> Result<Result<(), StoreError>, DieselError> {
    use schema::node_states::dsl as ns;
    use schema::run_events::dsl as ev;

    let Some(h) = head(c, &b.run_id)? else {
        return Ok(Err(StoreError::NotFound(format!("run {}", b.run_id))));
    };
    let checked = (|| {
        let epoch = u64_of("run epoch", h.epoch)?;
        let last_seq = u64_of("run last_seq", h.last_seq)?;
        let first = first_seq(b)?;
        Ok::<_, StoreError>((epoch, last_seq, first))
    })();
    let (epoch, last_seq, first) = match checked {
        Ok(x) => x,
        Err(e) => return Ok(Err(e)),
    };
    if b.epoch < epoch {
        return Ok(Err(refusal(b, epoch, last_seq)));
    }
    if first.is_some_and(|f| f != last_seq + 1) {
        if already_applied(c, h.id, b, last_seq)? {
            return Ok(Ok(()));
        }
        return Ok(Err(refusal(b, epoch, last_seq)));
    }
    // Encode everything before writing anything.
    let encoded = (|| {
        let mut nodes = Vec::with_capacity(b.nodes.len());
        for i in last_rows(b) {
            let n = &b.nodes[i];
            let output = n
                .output
                .as_deref()
                .map(|o| to_json("node output", o))
                .transpose()?;
            nodes.push((n, i32_of("node attempt", n.attempt)?, output));
        }
        let mut events = Vec::with_capacity(b.events.len());
        for e in &b.events {
            events.push((
                e,
                i64_of("event seq", e.seq)?,
                to_json("event data", &e.data)?,
            ));
        }
        Ok::<_, StoreError>((nodes, events))
    })();
    let (nodes, events) = match encoded {
        Ok(x) => x,
        Err(e) => return Ok(Err(e)),
    };
    for (n, attempt, output) in nodes {
        diesel::insert_into(ns::node_states)
            .values((
                ns::run_pk.eq(h.id),
                ns::node_id.eq(&*n.node_id),
                ns::status.eq(n.status.as_str()),
                ns::attempt.eq(attempt),
                ns::started_at.eq(n.started_at.map(ts_text)),
                ns::finished_at.eq(n.finished_at.map(ts_text)),
                ns::output.eq(output),
                ns::error.eq(n.error.as_deref()),
                ns::reason.eq(n.reason.as_deref()),
                ns::retry_at.eq(n.retry_at.map(ts_text)),
            ))
            .on_conflict((ns::run_pk, ns::node_id))
            .do_update()
            .set((
                ns::status.eq(excluded(ns::status)),
                ns::attempt.eq(excluded(ns::attempt)),
                ns::started_at.eq(excluded(ns::started_at)),
                ns::finished_at.eq(excluded(ns::finished_at)),
                ns::output.eq(excluded(ns::output)),
                ns::error.eq(excluded(ns::error)),
                ns::reason.eq(excluded(ns::reason)),
                ns::retry_at.eq(excluded(ns::retry_at)),
            ))
            .execute(c)?;
    }
    for (e, seq, data) in &events {
        diesel::insert_into(ev::run_events)
            .values((
                ev::run_pk.eq(h.id),
                ev::seq.eq(*seq),
                ev::kind.eq(e.kind.as_str()),
                ev::node_id.eq(e.node_id.as_deref()),
                ev::data.eq(data.as_str()),
                ev::ts.eq(ts_text(e.timestamp)),
            ))
            .execute(c)?;
    }
    let new_last = h.last_seq + events.len() as i64;
    match &b.run {
        Some(p) => {
            // A run that ends lets its lease go in the same write (the epoch stays, for fencing).
            let sql = if p.status.is_terminal() {
                "UPDATE runs SET last_seq = ?, status = ?, started_at = COALESCE(started_at, ?), \
                 finished_at = ?, error = ?, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = ?"
            } else {
                "UPDATE runs SET last_seq = ?, status = ?, started_at = COALESCE(started_at, ?), \
                 finished_at = ?, error = ? WHERE id = ?"
            };
            sql_query(sql)
                .bind::<BigInt, _>(new_last)
                .bind::<Text, _>(p.status.as_str())
                .bind::<Nullable<Text>, _>(p.started_at.map(ts_text))
                .bind::<Nullable<Text>, _>(p.finished_at.map(ts_text))
                .bind::<Nullable<Text>, _>(p.error.as_deref())
                .bind::<BigInt, _>(h.id)
                .execute(c)?;
        }
        None if !events.is_empty() => {
            sql_query("UPDATE runs SET last_seq = ? WHERE id = ?")
                .bind::<BigInt, _>(new_last)
                .bind::<BigInt, _>(h.id)
                .execute(c)?;
        }
        None => {}
    }
    Ok(Ok(()))
}

/// Whether this exact batch is the last one committed: a retry after a commit whose answer was
/// lost. Its last event ends the log, and its first and last events are stored with the same
/// type, node and timestamp.
fn already_applied(
    c: &mut SqliteConnection,
    pk: i64,
    b: &WriteBatch,
    last_seq: u64,
) -> Result<bool, DieselError> {
    let (Some(first), Some(last)) = (b.events.first(), b.events.last()) else {
        return Ok(false);
    };
    if last.seq != last_seq {
        return Ok(false);
    }
    for e in [first, last] {
        let Ok(seq) = i64::try_from(e.seq) else {
            return Ok(false);
        };
        let row = sql_query(
            "SELECT seq, type AS kind, node_id, data, ts FROM run_events WHERE run_pk = ? AND seq = ?",
        )
        .bind::<BigInt, _>(pk)
        .bind::<BigInt, _>(seq)
        .get_result::<EventRow>(c)
        .optional()?;
        let same = row.is_some_and(|r| {
            r.kind == e.kind.as_str()
                && r.node_id.as_deref() == e.node_id.as_deref()
                && r.ts == ts_text(e.timestamp)
        });
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

fn write_group(c: &mut SqliteConnection, batches: &[WriteBatch]) -> GroupResult {
    c.immediate_transaction(|c| {
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            out.push(apply(c, b)?);
        }
        Ok::<_, DieselError>(out)
    })
    .map_err(|e| from_diesel("write", e))
}

#[async_trait]
impl Committer for SqliteStore {
    async fn commit_group(&self, batches: Arc<Vec<WriteBatch>>) -> GroupResult {
        self.on(true, "write", move |c| Ok(write_group(c, &batches)))
            .await
            .and_then(|r| r)
    }
}

// ---- the ports -------------------------------------------------------------------------------

#[async_trait]
impl DefinitionStore for SqliteStore {
    async fn put_definition(&self, def: &WorkflowDefinition) -> Result<PutDefinition, StoreError> {
        let def = def.clone();
        self.on(true, "put definition", move |c| {
            let hash = def.content_hash();
            let text = String::from_utf8(def.canonical_json())
                .map_err(|e| StoreError::Other(format!("definition: {e}")))?;
            immediate(c, "put definition", move |c| {
                let latest = sql_query(
                    "SELECT workflow_id, version, content_hash, definition, created_at \
                     FROM workflow_definitions WHERE workflow_id = ? ORDER BY version DESC LIMIT 1",
                )
                .bind::<Text, _>(&def.id)
                .get_result::<DefRow>(c)
                .optional()?;
                if let Some(l) = &latest
                    && l.content_hash == hash
                {
                    let record = latest.expect("checked").decode()?;
                    return Ok(PutDefinition {
                        record,
                        created: false,
                    });
                }
                let version = latest.map_or(Ok(1), |l| u32_of("definition version", l.version).map(|v| v + 1))?;
                let created_at = now();
                sql_query(
                    "INSERT INTO workflow_definitions (workflow_id, version, content_hash, definition, created_at) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind::<Text, _>(&def.id)
                .bind::<Integer, _>(i32_of("definition version", version)?)
                .bind::<Text, _>(&hash)
                .bind::<Text, _>(&text)
                .bind::<Text, _>(ts_text(created_at))
                .execute(c)?;
                Ok(PutDefinition {
                    record: DefinitionRecord {
                        workflow_id: def.id.clone(),
                        version,
                        content_hash: hash,
                        definition: Arc::new(def),
                        created_at,
                    },
                    created: true,
                })
            })
        })
        .await
    }

    async fn get_definition(
        &self,
        workflow_id: &str,
        version: Option<u32>,
    ) -> Result<Option<DefinitionRecord>, StoreError> {
        let id = workflow_id.to_string();
        self.on(false, "get definition", move |c| {
            let row = match version {
                None => sql_query(
                    "SELECT workflow_id, version, content_hash, definition, created_at \
                     FROM workflow_definitions WHERE workflow_id = ? ORDER BY version DESC LIMIT 1",
                )
                .bind::<Text, _>(&id)
                .get_result::<DefRow>(c),
                Some(v) => {
                    let Ok(v) = i32::try_from(v) else {
                        return Ok(None);
                    };
                    sql_query(
                        "SELECT workflow_id, version, content_hash, definition, created_at \
                         FROM workflow_definitions WHERE workflow_id = ? AND version = ?",
                    )
                    .bind::<Text, _>(&id)
                    .bind::<Integer, _>(v)
                    .get_result::<DefRow>(c)
                }
            }
            .optional()
            .map_err(|e| from_diesel("get definition", e))?;
            row.map(DefRow::decode).transpose()
        })
        .await
    }

    async fn list_definitions(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<DefinitionRecord>, StoreError> {
        self.on(false, "list definitions", move |c| {
            let rows = sql_query(
                "SELECT d.workflow_id, d.version, d.content_hash, d.definition, d.created_at \
                 FROM workflow_definitions d \
                 WHERE d.version = (SELECT max(x.version) FROM workflow_definitions x \
                                    WHERE x.workflow_id = d.workflow_id) \
                 ORDER BY d.workflow_id LIMIT ? OFFSET ?",
            )
            .bind::<BigInt, _>(clamp(limit))
            .bind::<BigInt, _>(clamp(offset))
            .load::<DefRow>(c)
            .map_err(|e| from_diesel("list definitions", e))?;
            rows.into_iter().map(DefRow::decode).collect()
        })
        .await
    }

    async fn delete_definition(&self, workflow_id: &str) -> Result<bool, StoreError> {
        let id = workflow_id.to_string();
        self.on(true, "delete definition", move |c| {
            sql_query("DELETE FROM workflow_definitions WHERE workflow_id = ?")
                .bind::<Text, _>(&id)
                .execute(c)
                .map(|n| n > 0)
                .map_err(|e| from_diesel("delete definition", e))
        })
        .await
    }
}

fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateRun, StoreError> {
        self.on(true, "create run", move |c| {
            let inputs = to_json("run inputs", &*run.inputs)?;
            let created_at = now();
            immediate(c, "create run", move |c| {
                if let Some(key) = &run.idempotency_key {
                    let existing = sql_query(format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ? AND idempotency_key = ?"
                    ))
                    .bind::<Text, _>(&*run.workflow_id)
                    .bind::<Text, _>(key)
                    .get_result::<RunRow>(c)
                    .optional()?;
                    if let Some(row) = existing {
                        return Ok(CreateRun {
                            run: row.decode()?,
                            created: false,
                        });
                    }
                }
                let inserted = sql_query(
                    "INSERT INTO runs (run_id, workflow_id, version, content_hash, status, inputs, \
                     idempotency_key, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) \
                     ON CONFLICT (run_id) DO NOTHING",
                )
                .bind::<Text, _>(&*run.run_id)
                .bind::<Text, _>(&*run.workflow_id)
                .bind::<Integer, _>(i32_of("run version", run.version)?)
                .bind::<Text, _>(&run.content_hash)
                .bind::<Text, _>(&inputs)
                .bind::<Nullable<Text>, _>(run.idempotency_key.as_deref())
                .bind::<Text, _>(ts_text(created_at))
                .execute(c)?;
                if inserted == 0 {
                    return Err(TxError::Store(StoreError::Conflict(format!(
                        "run {} already exists",
                        run.run_id
                    ))));
                }
                Ok(CreateRun {
                    run: RunRecord {
                        run_id: run.run_id,
                        workflow_id: run.workflow_id,
                        version: run.version,
                        content_hash: run.content_hash,
                        status: RunStatus::Pending,
                        inputs: run.inputs,
                        idempotency_key: run.idempotency_key,
                        error: None,
                        created_at,
                        started_at: None,
                        finished_at: None,
                    },
                    created: true,
                })
            })
        })
        .await
    }

    async fn write(&self, batch: &mut WriteBatch) -> Result<(), StoreError> {
        if self.inner.options.group_commit.unwrap_or(true) {
            return self.group().write(batch).await;
        }
        let owned = std::mem::replace(
            batch,
            WriteBatch {
                run_id: batch.run_id.clone(),
                epoch: batch.epoch,
                run: None,
                nodes: Vec::new(),
                events: Vec::new(),
            },
        );
        let (back, result) = commit_one(self, owned).await;
        if result.is_err() {
            *batch = back;
        }
        result
    }

    async fn load_run(&self, run_id: &str) -> Result<Option<RunSnapshot>, StoreError> {
        let id = run_id.to_string();
        self.on(false, "load run", move |c| {
            let rows = c
                .transaction(|c| {
                    let Some(run) =
                        sql_query(format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"))
                            .bind::<Text, _>(&id)
                            .get_result::<RunRow>(c)
                            .optional()?
                    else {
                        return Ok(None);
                    };
                    let nodes = sql_query(
                        "SELECT node_id, status, attempt, started_at, finished_at, output, error, \
                         reason, retry_at FROM node_states WHERE run_pk = ? ORDER BY node_id",
                    )
                    .bind::<BigInt, _>(run.id)
                    .load::<NodeRow>(c)?;
                    Ok::<_, DieselError>(Some((run, nodes)))
                })
                .map_err(|e| from_diesel("load run", e))?;
            let Some((run, nodes)) = rows else {
                return Ok(None);
            };
            let last_seq = u64_of("run last_seq", run.last_seq)?;
            Ok(Some(RunSnapshot {
                run: run.decode()?,
                nodes: nodes
                    .into_iter()
                    .map(NodeRow::decode)
                    .collect::<Result<_, _>>()?,
                last_seq,
            }))
        })
        .await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let filter = filter.clone();
        self.on(false, "list runs", move |c| {
            let limit = if filter.limit == 0 { 100 } else { filter.limit };
            let rows = sql_query(format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR workflow_id = ?1) \
                 AND (?2 IS NULL OR status = ?2) ORDER BY id DESC LIMIT ?3 OFFSET ?4"
            ))
            .bind::<Nullable<Text>, _>(filter.workflow_id.as_deref())
            .bind::<Nullable<Text>, _>(filter.status.map(|s| s.as_str()))
            .bind::<BigInt, _>(clamp(limit))
            .bind::<BigInt, _>(clamp(filter.offset))
            .load::<RunRow>(c)
            .map_err(|e| from_diesel("list runs", e))?;
            rows.into_iter().map(RunRow::decode).collect()
        })
        .await
    }

    async fn events(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let id = run_id.to_string();
        self.on(false, "read events", move |c| {
            let rows = c
                .transaction(|c| {
                    let Some(h) = head(c, &id)? else {
                        return Ok(None);
                    };
                    let rows = sql_query(
                        "SELECT seq, type AS kind, node_id, data, ts FROM run_events \
                         WHERE run_pk = ? AND seq > ? ORDER BY seq LIMIT ?",
                    )
                    .bind::<BigInt, _>(h.id)
                    .bind::<BigInt, _>(i64::try_from(after).unwrap_or(i64::MAX))
                    .bind::<BigInt, _>(clamp(limit))
                    .load::<EventRow>(c)?;
                    Ok::<_, DieselError>(Some((h.workflow_id, rows)))
                })
                .map_err(|e| from_diesel("read events", e))?;
            let Some((workflow_id, rows)) = rows else {
                return Err(StoreError::NotFound(format!("run {id}")));
            };
            let workflow_id: Arc<str> = Arc::from(workflow_id);
            let run_id: Arc<str> = Arc::from(id);
            rows.into_iter()
                .map(|r| r.decode(&workflow_id, &run_id))
                .collect()
        })
        .await
    }
}

const ACTIVE: &str = "status IN ('pending', 'running', 'paused')";

impl SqliteStore {
    /// `claim_run`, or `claim_active_run` when `active_only`.
    async fn claim_one(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        active_only: bool,
    ) -> Result<Option<Lease>, StoreError> {
        let (id, owner) = (run_id.to_string(), owner.to_string());
        self.on(true, "claim run", move |c| {
            let now = now();
            let expires = ts_text(now + chrono::Duration::microseconds(codec::ttl_micros(ttl)));
            let row =
                immediate(c, "claim run", |c| {
                    let row = sql_query(format!(
                    "UPDATE runs SET epoch = epoch + 1, lease_owner = ?1, lease_expires_at = ?2 \
                     WHERE run_id = ?3 \
                     AND (lease_owner IS NULL OR lease_expires_at <= ?4 OR lease_owner = ?1) {} \
                     RETURNING id, run_id, lease_owner, epoch, lease_expires_at",
                    if active_only { format!("AND {ACTIVE}") } else { String::new() }
                ))
                .bind::<Text, _>(&owner)
                .bind::<Text, _>(&expires)
                .bind::<Text, _>(&id)
                .bind::<Text, _>(ts_text(now))
                .get_result::<LeaseRow>(c)
                .optional()?;
                    if row.is_none() && head(c, &id)?.is_none() {
                        return Err(TxError::Store(StoreError::NotFound(format!("run {id}"))));
                    }
                    Ok(row)
                })?;
            Ok(row.map(LeaseRow::decode).transpose()?.flatten())
        })
        .await
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn claim_runs(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let owner = owner.to_string();
        self.on(true, "claim runs", move |c| {
            let now = now();
            let expires = ts_text(now + chrono::Duration::microseconds(codec::ttl_micros(ttl)));
            let mut rows = immediate(c, "claim runs", |c| {
                Ok(sql_query(format!(
                    "UPDATE runs SET epoch = epoch + 1, lease_owner = ?1, lease_expires_at = ?2 \
                     WHERE id IN (SELECT id FROM runs WHERE {ACTIVE} \
                                  AND (lease_expires_at IS NULL OR lease_expires_at <= ?3) \
                                  ORDER BY id LIMIT ?4) \
                     RETURNING id, run_id, lease_owner, epoch, lease_expires_at"
                ))
                .bind::<Text, _>(&owner)
                .bind::<Text, _>(&expires)
                .bind::<Text, _>(ts_text(now))
                .bind::<BigInt, _>(clamp(limit))
                .load::<LeaseRow>(c)?)
            })?;
            rows.sort_by_key(|r| r.id);
            rows.into_iter()
                .filter_map(|r| r.decode().transpose())
                .collect()
        })
        .await
    }

    async fn claim_run(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.claim_one(run_id, owner, ttl, false).await
    }

    async fn claim_active_run(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.claim_one(run_id, owner, ttl, true).await
    }

    async fn renew(
        &self,
        owner: &str,
        leases: &[Lease],
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let owner = owner.to_string();
        let leases = leases.to_vec();
        self.on(true, "renew leases", move |c| {
            let expires = ts_text(now() + chrono::Duration::microseconds(codec::ttl_micros(ttl)));
            let rows = immediate(c, "renew leases", |c| {
                let mut out = Vec::with_capacity(leases.len());
                for l in &leases {
                    let Ok(epoch) = i64::try_from(l.epoch) else {
                        continue;
                    };
                    let row = sql_query(
                        "UPDATE runs SET lease_expires_at = ? \
                         WHERE run_id = ? AND lease_owner = ? AND epoch = ? \
                         RETURNING id, run_id, lease_owner, epoch, lease_expires_at",
                    )
                    .bind::<Text, _>(&expires)
                    .bind::<Text, _>(&*l.run_id)
                    .bind::<Text, _>(&owner)
                    .bind::<BigInt, _>(epoch)
                    .get_result::<LeaseRow>(c)
                    .optional()?;
                    out.extend(row);
                }
                Ok(out)
            })?;
            rows.into_iter()
                .filter_map(|r| r.decode().transpose())
                .collect()
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.on(true, "release lease", move |c| {
            let Ok(epoch) = i64::try_from(lease.epoch) else {
                return Ok(());
            };
            sql_query(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL \
                 WHERE run_id = ? AND lease_owner = ? AND epoch = ?",
            )
            .bind::<Text, _>(&*lease.run_id)
            .bind::<Text, _>(&lease.owner)
            .bind::<BigInt, _>(epoch)
            .execute(c)
            .map(|_| ())
            .map_err(|e| from_diesel("release lease", e))
        })
        .await
    }

    async fn lease(&self, run_id: &str) -> Result<Option<Lease>, StoreError> {
        let id = run_id.to_string();
        self.on(false, "read lease", move |c| {
            let row = sql_query(
                "SELECT id, run_id, lease_owner, epoch, lease_expires_at FROM runs WHERE run_id = ?",
            )
            .bind::<Text, _>(&id)
            .get_result::<LeaseRow>(c)
            .optional()
            .map_err(|e| from_diesel("read lease", e))?;
            Ok(row.map(LeaseRow::decode).transpose()?.flatten())
        })
        .await
    }
}

fn migration_names(list: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
    list.into_iter().map(|v| v.to_string()).collect()
}

#[async_trait]
impl DurableStore for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<Vec<String>, Error> {
        // One IMMEDIATE transaction around all of them: a second process migrating the same
        // file at the same moment waits, then finds nothing to do.
        self.on(true, "migrate", |c| {
            let mut failure = None;
            let applied = c
                .immediate_transaction(|c| {
                    c.run_pending_migrations(MIGRATIONS)
                        .map(migration_names)
                        .map_err(|e| {
                            failure = Some(e.to_string());
                            DieselError::RollbackTransaction
                        })
                })
                .map_err(|e| StoreError::Other(failure.unwrap_or_else(|| e.to_string())))?;
            Ok(applied)
        })
        .await
        .map_err(|e| match e {
            StoreError::Other(m) => Error::Migration(m),
            e => Error::Store(e),
        })
    }

    async fn pending_migrations(&self) -> Result<Vec<String>, Error> {
        self.on(false, "pending migrations", |c| {
            c.pending_migrations(MIGRATIONS)
                .map(|list| list.iter().map(|m| m.name().to_string()).collect())
                .map_err(|e| StoreError::Other(e.to_string()))
        })
        .await
        .map_err(|e| match e {
            StoreError::Other(m) => Error::Migration(m),
            e => Error::Store(e),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.on(false, "ping", |c| {
            sql_query("SELECT 1 AS one")
                .get_result::<One>(c)
                .map(|_| ())
                .map_err(|e| from_diesel("ping", e))
        })
        .await
    }

    fn pool_state(&self) -> PoolState {
        let r = self.inner.reader.status();
        let w = self.inner.writer.status();
        if self.inner.path == ":memory:" {
            return PoolState {
                max_size: w.max_size,
                size: w.size,
                available: w.available,
            };
        }
        PoolState {
            max_size: r.max_size + w.max_size,
            size: r.size + w.size,
            available: r.available + w.available,
        }
    }
}
