//! The PostgreSQL store: diesel-async's `AsyncPgConnection` (tokio-postgres, no TLS) pooled by
//! deadpool.
//!
//! A write batch is **one statement**: a data-modifying CTE that updates the run row (checking
//! the fencing epoch and the event sequence in its `WHERE`, which also locks the row against
//! concurrent writers), upserts the node rows and appends the events, both from `unnest`ed
//! arrays. So one engine turn costs one round trip and one commit, whatever its size, and a
//! refused batch writes nothing without raising an error (which lets group commit put many
//! runs' batches in one transaction). Claims use `FOR UPDATE SKIP LOCKED`; lease times come
//! from the database clock, so replicas with skewed clocks agree on expiry.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use diesel::OptionalExtension;
use diesel::QueryableByName;
use diesel::result::Error as DieselError;
use diesel::sql_query;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use maestro_dag::definition::WorkflowDefinition;
use maestro_dag::event::{Event, EventData};
use maestro_dag::status::RunStatus;
use maestro_dag::store::{
    CreateRun, DefinitionRecord, DefinitionStore, Lease, LeaseStore, NewRun, NodeRecord,
    PutDefinition, RunFilter, RunRecord, RunSnapshot, RunStore, StoreError, WriteBatch,
};

use crate::codec::{
    self, arc_str, first_seq, i32_of, i64_of, json, last_rows, refusal, to_json, u32_of, u64_of,
};
use crate::error::{Error, from_diesel, from_pool, timed_out};
use crate::group::{Committer, GroupResult, GroupWriter, commit_one};
use crate::{Backend, DurableStore, PoolState, StoreOptions};

/// The PostgreSQL migrations, compiled in.
pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// The advisory lock held while migrating ("maestro" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_6165_7374_726f;

type Conn = AsyncPgConnection;

/// A store in a PostgreSQL database, shareable by several replicas.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    pool: Pool<Conn>,
    options: StoreOptions,
    group: OnceLock<GroupWriter>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool_state())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// A store for the database at `url` (`postgres://user@host:port/db`). Lazy: connections
    /// are opened on first use.
    pub fn new(url: &str, options: StoreOptions) -> Result<Self, Error> {
        let mut config = ManagerConfig::<Conn>::default();
        // A broken connection shows up as an error on its next query (transient, retried);
        // verifying every checkout would cost a round trip per call.
        config.recycling_method = RecyclingMethod::Fast;
        let pool = Pool::builder(AsyncDieselConnectionManager::new_with_config(url, config))
            .max_size(options.pool_size.max(1))
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(options.operation_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| Error::Store(StoreError::Other(format!("postgres pool: {e}"))))?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.to_string(),
                pool,
                options,
                group: OnceLock::new(),
            }),
        })
    }

    /// Runs `f` with a pooled connection, within the operation timeout.
    async fn with<R, F>(&self, what: &'static str, f: F) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut Conn) -> Result<R, StoreError>,
    {
        let work = async {
            let mut conn = self.inner.pool.get().await.map_err(from_pool)?;
            f(&mut conn).await
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

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn db(what: &'static str) -> impl Fn(DieselError) -> StoreError {
    move |e| from_diesel(what, e)
}

fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

const DEF_COLUMNS: &str =
    "workflow_id, version, content_hash, definition::text AS definition, created_at";

impl DefRow {
    fn decode(self) -> Result<DefinitionRecord, StoreError> {
        Ok(DefinitionRecord {
            version: u32_of("definition version", self.version)?,
            definition: Arc::new(json::<WorkflowDefinition>(
                &format!("definition {}", self.workflow_id),
                &self.definition,
            )?),
            created_at: self.created_at,
            workflow_id: self.workflow_id,
            content_hash: self.content_hash,
        })
    }
}

const RUN_COLUMNS: &str = "id, run_id, workflow_id, version, content_hash, status, \
     inputs::text AS inputs, idempotency_key, error, created_at, started_at, finished_at, last_seq";

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
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    finished_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

impl RunRow {
    fn decode(self) -> Result<RunRecord, StoreError> {
        Ok(RunRecord {
            status: codec::run_status(&self.status)?,
            inputs: Arc::new(json(&format!("run {} inputs", self.run_id), &self.inputs)?),
            version: u32_of("run version", self.version)?,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
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
    #[diesel(sql_type = Nullable<Timestamptz>)]
    started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    finished_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    output: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    retry_at: Option<DateTime<Utc>>,
}

impl NodeRow {
    fn decode(self) -> Result<NodeRecord, StoreError> {
        Ok(NodeRecord {
            status: codec::node_status(&self.status)?,
            attempt: u32_of("node attempt", self.attempt)?,
            started_at: self.started_at,
            finished_at: self.finished_at,
            output: self
                .output
                .map(|o| json(&format!("node {} output", self.node_id), &o).map(Arc::new))
                .transpose()?,
            error: arc_str(self.error),
            reason: arc_str(self.reason),
            retry_at: self.retry_at,
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
    #[diesel(sql_type = Timestamptz)]
    ts: DateTime<Utc>,
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
            timestamp: self.ts,
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
struct IdRow {
    #[diesel(sql_type = BigInt)]
    #[allow(dead_code)]
    id: i64,
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
    #[diesel(sql_type = Nullable<Timestamptz>)]
    lease_expires_at: Option<DateTime<Utc>>,
}

impl LeaseRow {
    fn decode(self) -> Result<Option<Lease>, StoreError> {
        let (Some(owner), Some(expires_at)) = (self.lease_owner, self.lease_expires_at) else {
            return Ok(None);
        };
        Ok(Some(Lease {
            run_id: Arc::from(self.run_id),
            owner,
            epoch: u64_of("run epoch", self.epoch)?,
            expires_at,
        }))
    }
}

// ---- the write path ----------------------------------------------------------------------------

/// One batch as one statement. `$3` is the number of events and `$4` the first one's `seq`: the
/// `WHERE` refuses a stale epoch or a log that does not continue at `$4`; the inserts take the
/// run's id from the update, so a refused batch inserts nothing.
const WRITE: &str = "\
WITH r AS (
    UPDATE runs SET
        last_seq    = last_seq + $3,
        status      = CASE WHEN $5 THEN $6 ELSE status END,
        started_at  = CASE WHEN $5 THEN COALESCE(started_at, $7) ELSE started_at END,
        finished_at = CASE WHEN $5 THEN $8 ELSE finished_at END,
        error       = CASE WHEN $5 THEN $9 ELSE error END,
        -- A run that ends lets its lease go in the same write (the epoch stays, for fencing).
        lease_owner = CASE WHEN $5 AND $6 IN ('completed', 'failed', 'cancelled')
                           THEN NULL ELSE lease_owner END,
        lease_expires_at = CASE WHEN $5 AND $6 IN ('completed', 'failed', 'cancelled')
                           THEN NULL ELSE lease_expires_at END
    WHERE run_id = $1 AND epoch <= $2 AND ($3 = 0 OR last_seq = $4 - 1)
    RETURNING id
), n AS (
    INSERT INTO node_states
        (run_pk, node_id, status, attempt, started_at, finished_at, output, error, reason, retry_at)
    SELECT r.id, u.node_id, u.status, u.attempt, u.started_at, u.finished_at, u.output::jsonb,
           u.error, u.reason, u.retry_at
    FROM r, unnest($10::text[], $11::text[], $12::int4[], $13::timestamptz[], $14::timestamptz[],
                   $15::text[], $16::text[], $17::text[], $18::timestamptz[])
         AS u(node_id, status, attempt, started_at, finished_at, output, error, reason, retry_at)
    ON CONFLICT (run_pk, node_id) DO UPDATE SET
        status = EXCLUDED.status, attempt = EXCLUDED.attempt, started_at = EXCLUDED.started_at,
        finished_at = EXCLUDED.finished_at, output = EXCLUDED.output, error = EXCLUDED.error,
        reason = EXCLUDED.reason, retry_at = EXCLUDED.retry_at
), e AS (
    INSERT INTO run_events (run_pk, seq, type, node_id, data, ts)
    SELECT r.id, $4 + u.ord - 1, u.type, u.node_id, u.data::jsonb, u.ts
    FROM r, unnest($19::text[], $20::text[], $21::text[], $22::timestamptz[])
         WITH ORDINALITY AS u(type, node_id, data, ts, ord)
)
SELECT id FROM r";

/// A batch as bind values.
struct Encoded<'a> {
    first_seq: i64,
    attempts: Vec<i32>,
    outputs: Vec<Option<String>>,
    data: Vec<String>,
    rows: Vec<usize>,
    batch: &'a WriteBatch,
}

fn encode(b: &WriteBatch) -> Result<Encoded<'_>, StoreError> {
    let first = first_seq(b)?.unwrap_or(1);
    let rows = last_rows(b);
    let mut attempts = Vec::with_capacity(rows.len());
    let mut outputs = Vec::with_capacity(rows.len());
    for &i in &rows {
        let n = &b.nodes[i];
        attempts.push(i32_of("node attempt", n.attempt)?);
        outputs.push(
            n.output
                .as_deref()
                .map(|o| to_json("node output", o))
                .transpose()?,
        );
    }
    let data = b
        .events
        .iter()
        .map(|e| to_json("event data", &e.data))
        .collect::<Result<_, _>>()?;
    i64_of("event seq", b.events.last().map_or(0, |e| e.seq))?;
    Ok(Encoded {
        first_seq: i64_of("event seq", first)?,
        attempts,
        outputs,
        data,
        rows,
        batch: b,
    })
}

/// Applies one batch. `Err` is a database error; `Ok(Err(_))` a refusal that wrote nothing.
async fn apply(c: &mut Conn, b: &WriteBatch) -> Result<Result<(), StoreError>, DieselError> {
    let enc = match encode(b) {
        Ok(e) => e,
        Err(e) => return Ok(Err(e)),
    };
    let Ok(epoch) = i64::try_from(b.epoch) else {
        return Ok(Err(StoreError::Other(format!(
            "epoch {} is out of range",
            b.epoch
        ))));
    };
    let nodes = enc.rows.iter().map(|&i| &enc.batch.nodes[i]);
    let patch = b.run.as_ref();
    let applied = sql_query(WRITE)
        .bind::<Text, _>(&*b.run_id)
        .bind::<BigInt, _>(epoch)
        .bind::<BigInt, _>(b.events.len() as i64)
        .bind::<BigInt, _>(enc.first_seq)
        .bind::<Bool, _>(patch.is_some())
        .bind::<Text, _>(patch.map_or("pending", |p| p.status.as_str()))
        .bind::<Nullable<Timestamptz>, _>(patch.and_then(|p| p.started_at))
        .bind::<Nullable<Timestamptz>, _>(patch.and_then(|p| p.finished_at))
        .bind::<Nullable<Text>, _>(patch.and_then(|p| p.error.as_deref()))
        .bind::<Array<Text>, _>(nodes.clone().map(|n| &*n.node_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(nodes.clone().map(|n| n.status.as_str()).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(&enc.attempts)
        .bind::<Array<Nullable<Timestamptz>>, _>(
            nodes.clone().map(|n| n.started_at).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Timestamptz>>, _>(
            nodes.clone().map(|n| n.finished_at).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(&enc.outputs)
        .bind::<Array<Nullable<Text>>, _>(
            nodes
                .clone()
                .map(|n| n.error.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            nodes
                .clone()
                .map(|n| n.reason.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Timestamptz>>, _>(nodes.map(|n| n.retry_at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(b.events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            b.events
                .iter()
                .map(|e| e.node_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(&enc.data)
        .bind::<Array<Timestamptz>, _>(b.events.iter().map(|e| e.timestamp).collect::<Vec<_>>())
        .load::<IdRow>(c)
        .await?;
    if !applied.is_empty() {
        return Ok(Ok(()));
    }
    // Refused: say why.
    let Some(h) = head(c, &b.run_id).await? else {
        return Ok(Err(StoreError::NotFound(format!("run {}", b.run_id))));
    };
    let (Ok(epoch), Ok(last_seq)) = (
        u64_of("run epoch", h.epoch),
        u64_of("run last_seq", h.last_seq),
    ) else {
        return Ok(Err(codec::corrupt("run", "negative epoch or sequence")));
    };
    if b.epoch >= epoch && already_applied(c, h.id, b, last_seq).await? {
        return Ok(Ok(()));
    }
    Ok(Err(refusal(b, epoch, last_seq)))
}

async fn head(c: &mut Conn, run_id: &str) -> Result<Option<HeadRow>, DieselError> {
    sql_query("SELECT id, workflow_id, epoch, last_seq FROM runs WHERE run_id = $1")
        .bind::<Text, _>(run_id)
        .get_result::<HeadRow>(c)
        .await
        .optional()
}

/// Whether this exact batch is the last one committed: a retry after a commit whose answer was
/// lost (the connection dropped during `COMMIT`). Its last event ends the log, and its first and
/// last events are stored with the same type, node and timestamp.
async fn already_applied(
    c: &mut Conn,
    pk: i64,
    b: &WriteBatch,
    last_seq: u64,
) -> Result<bool, DieselError> {
    let (Some(first), Some(last)) = (<[Event]>::first(&b.events), b.events.last()) else {
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
            "SELECT seq, type AS kind, node_id, data::text AS data, ts FROM run_events \
             WHERE run_pk = $1 AND seq = $2",
        )
        .bind::<BigInt, _>(pk)
        .bind::<BigInt, _>(seq)
        .get_result::<EventRow>(c)
        .await
        .optional()?;
        let same = row.is_some_and(|r| {
            r.kind == e.kind.as_str()
                && r.node_id.as_deref() == e.node_id.as_deref()
                && r.ts == e.timestamp
        });
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

#[async_trait]
impl Committer for PgStore {
    async fn commit_group(&self, batches: Arc<Vec<WriteBatch>>) -> GroupResult {
        self.with("write", async move |c| {
            if batches.len() == 1 {
                // One statement is its own transaction: no BEGIN/COMMIT round trips.
                return Ok(vec![apply(c, &batches[0]).await.map_err(db("write"))?]);
            }
            c.transaction(async |c| {
                let mut out = Vec::with_capacity(batches.len());
                for b in batches.iter() {
                    out.push(apply(c, b).await?);
                }
                Ok::<_, DieselError>(out)
            })
            .await
            .map_err(db("write"))
        })
        .await
    }
}

// ---- the ports -------------------------------------------------------------------------------

#[async_trait]
impl DefinitionStore for PgStore {
    async fn put_definition(&self, def: &WorkflowDefinition) -> Result<PutDefinition, StoreError> {
        let hash = def.content_hash();
        let text = String::from_utf8(def.canonical_json())
            .map_err(|e| StoreError::Other(format!("definition: {e}")))?;
        self.with("put definition", async |c| {
            let outcome = c
                .transaction(async |c| {
                    // Serialize versioning of one id across replicas.
                    sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7)) IS NULL AS x")
                        .bind::<Text, _>(&def.id)
                        .execute(c)
                        .await?;
                    let latest = sql_query(format!(
                        "SELECT {DEF_COLUMNS} FROM workflow_definitions WHERE workflow_id = $1 \
                         ORDER BY version DESC LIMIT 1"
                    ))
                    .bind::<Text, _>(&def.id)
                    .get_result::<DefRow>(c)
                    .await
                    .optional()?;
                    if let Some(l) = latest
                        && l.content_hash == hash
                    {
                        return Ok(Err(l));
                    }
                    let version = latest_version_plus_one(c, &def.id).await?;
                    let created_at = now();
                    sql_query(
                        "INSERT INTO workflow_definitions \
                         (workflow_id, version, content_hash, definition, created_at) \
                         VALUES ($1, $2, $3, $4::jsonb, $5)",
                    )
                    .bind::<Text, _>(&def.id)
                    .bind::<Integer, _>(version)
                    .bind::<Text, _>(&hash)
                    .bind::<Text, _>(&text)
                    .bind::<Timestamptz, _>(created_at)
                    .execute(c)
                    .await?;
                    Ok::<_, DieselError>(Ok((version, created_at)))
                })
                .await
                .map_err(db("put definition"))?;
            match outcome {
                Err(existing) => Ok(PutDefinition {
                    record: existing.decode()?,
                    created: false,
                }),
                Ok((version, created_at)) => Ok(PutDefinition {
                    record: DefinitionRecord {
                        workflow_id: def.id.clone(),
                        version: u32_of("definition version", version)?,
                        content_hash: hash.clone(),
                        definition: Arc::new(def.clone()),
                        created_at,
                    },
                    created: true,
                }),
            }
        })
        .await
    }

    async fn get_definition(
        &self,
        workflow_id: &str,
        version: Option<u32>,
    ) -> Result<Option<DefinitionRecord>, StoreError> {
        self.with("get definition", async |c| {
            let row = match version {
                None => {
                    sql_query(format!(
                        "SELECT {DEF_COLUMNS} FROM workflow_definitions WHERE workflow_id = $1 \
                         ORDER BY version DESC LIMIT 1"
                    ))
                    .bind::<Text, _>(workflow_id)
                    .get_result::<DefRow>(c)
                    .await
                }
                Some(v) => {
                    let Ok(v) = i32::try_from(v) else {
                        return Ok(None);
                    };
                    sql_query(format!(
                        "SELECT {DEF_COLUMNS} FROM workflow_definitions \
                         WHERE workflow_id = $1 AND version = $2"
                    ))
                    .bind::<Text, _>(workflow_id)
                    .bind::<Integer, _>(v)
                    .get_result::<DefRow>(c)
                    .await
                }
            }
            .optional()
            .map_err(db("get definition"))?;
            row.map(DefRow::decode).transpose()
        })
        .await
    }

    async fn list_definitions(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<DefinitionRecord>, StoreError> {
        self.with("list definitions", async |c| {
            let rows = sql_query(format!(
                "SELECT DISTINCT ON (workflow_id) {DEF_COLUMNS} FROM workflow_definitions \
                 ORDER BY workflow_id, version DESC OFFSET $1 LIMIT $2"
            ))
            .bind::<BigInt, _>(clamp(offset))
            .bind::<BigInt, _>(clamp(limit))
            .load::<DefRow>(c)
            .await
            .map_err(db("list definitions"))?;
            rows.into_iter().map(DefRow::decode).collect()
        })
        .await
    }

    async fn delete_definition(&self, workflow_id: &str) -> Result<bool, StoreError> {
        self.with("delete definition", async |c| {
            sql_query("DELETE FROM workflow_definitions WHERE workflow_id = $1")
                .bind::<Text, _>(workflow_id)
                .execute(c)
                .await
                .map(|n| n > 0)
                .map_err(db("delete definition"))
        })
        .await
    }
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = Integer)]
    v: i32,
}

async fn latest_version_plus_one(c: &mut Conn, id: &str) -> Result<i32, DieselError> {
    sql_query("SELECT COALESCE(max(version), 0) + 1 AS v FROM workflow_definitions WHERE workflow_id = $1")
        .bind::<Text, _>(id)
        .get_result::<VersionRow>(c)
        .await
        .map(|r| r.v)
}

#[async_trait]
impl RunStore for PgStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateRun, StoreError> {
        let inputs = to_json("run inputs", &*run.inputs)?;
        let version = i32_of("run version", run.version)?;
        let created_at = now();
        self.with("create run", async |c| {
            let inserted = sql_query(
                "INSERT INTO runs (run_id, workflow_id, version, content_hash, status, inputs, \
                 idempotency_key, created_at) VALUES ($1, $2, $3, $4, 'pending', $5::jsonb, $6, $7) \
                 ON CONFLICT (workflow_id, idempotency_key) DO NOTHING RETURNING id",
            )
            .bind::<Text, _>(&*run.run_id)
            .bind::<Text, _>(&*run.workflow_id)
            .bind::<Integer, _>(version)
            .bind::<Text, _>(&run.content_hash)
            .bind::<Text, _>(&inputs)
            .bind::<Nullable<Text>, _>(run.idempotency_key.as_deref())
            .bind::<Timestamptz, _>(created_at)
            .load::<IdRow>(c)
            .await
            .map_err(|e| match from_diesel("create run", e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("run {} already exists", run.run_id))
                }
                e => e,
            })?;
            if inserted.is_empty() {
                let existing = sql_query(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = $1 AND idempotency_key = $2"
                ))
                .bind::<Text, _>(&*run.workflow_id)
                .bind::<Nullable<Text>, _>(run.idempotency_key.as_deref())
                .get_result::<RunRow>(c)
                .await
                .map_err(db("create run"))?;
                return Ok(CreateRun {
                    run: existing.decode()?,
                    created: false,
                });
            }
            Ok(CreateRun {
                run: RunRecord {
                    run_id: run.run_id.clone(),
                    workflow_id: run.workflow_id.clone(),
                    version: run.version,
                    content_hash: run.content_hash.clone(),
                    status: RunStatus::Pending,
                    inputs: run.inputs.clone(),
                    idempotency_key: run.idempotency_key.clone(),
                    error: None,
                    created_at,
                    started_at: None,
                    finished_at: None,
                },
                created: true,
            })
        })
        .await
    }

    async fn write(&self, batch: &mut WriteBatch) -> Result<(), StoreError> {
        if self.inner.options.group_commit.unwrap_or(false) {
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
        self.with("load run", async |c| {
            let rows = c
                .build_transaction()
                .repeatable_read()
                .read_only()
                .run(async |c| {
                    let Some(run) =
                        sql_query(format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"))
                            .bind::<Text, _>(run_id)
                            .get_result::<RunRow>(c)
                            .await
                            .optional()?
                    else {
                        return Ok(None);
                    };
                    let nodes = sql_query(
                        "SELECT node_id, status, attempt, started_at, finished_at, \
                         output::text AS output, error, reason, retry_at \
                         FROM node_states WHERE run_pk = $1 ORDER BY node_id",
                    )
                    .bind::<BigInt, _>(run.id)
                    .load::<NodeRow>(c)
                    .await?;
                    Ok::<_, DieselError>(Some((run, nodes)))
                })
                .await
                .map_err(db("load run"))?;
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
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        self.with("list runs", async |c| {
            let rows = sql_query(format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE ($1::text IS NULL OR workflow_id = $1) \
                 AND ($2::text IS NULL OR status = $2) ORDER BY id DESC OFFSET $3 LIMIT $4"
            ))
            .bind::<Nullable<Text>, _>(filter.workflow_id.as_deref())
            .bind::<Nullable<Text>, _>(filter.status.map(|s| s.as_str()))
            .bind::<BigInt, _>(clamp(filter.offset))
            .bind::<BigInt, _>(clamp(limit))
            .load::<RunRow>(c)
            .await
            .map_err(db("list runs"))?;
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
        self.with("read events", async |c| {
            let Some(h) = head(c, run_id).await.map_err(db("read events"))? else {
                return Err(StoreError::NotFound(format!("run {run_id}")));
            };
            let rows = sql_query(
                "SELECT seq, type AS kind, node_id, data::text AS data, ts FROM run_events \
                 WHERE run_pk = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind::<BigInt, _>(h.id)
            .bind::<BigInt, _>(i64::try_from(after).unwrap_or(i64::MAX))
            .bind::<BigInt, _>(clamp(limit))
            .load::<EventRow>(c)
            .await
            .map_err(db("read events"))?;
            let workflow_id: Arc<str> = Arc::from(h.workflow_id);
            let run_id: Arc<str> = Arc::from(run_id);
            rows.into_iter()
                .map(|r| r.decode(&workflow_id, &run_id))
                .collect()
        })
        .await
    }
}

const ACTIVE: &str = "status IN ('pending', 'running', 'paused')";

impl PgStore {
    /// `claim_run`, or `claim_active_run` when `active_only`.
    async fn claim_one(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        active_only: bool,
    ) -> Result<Option<Lease>, StoreError> {
        self.with("claim run", async |c| {
            let row = sql_query(format!(
                "UPDATE runs SET epoch = epoch + 1, lease_owner = $2,
                     lease_expires_at = now() + $3 * interval '1 microsecond'
                 WHERE run_id = $1
                   AND (lease_owner IS NULL OR lease_expires_at <= now() OR lease_owner = $2)
                   {}
                 RETURNING id, run_id, lease_owner, epoch, lease_expires_at",
                if active_only {
                    format!("AND {ACTIVE}")
                } else {
                    String::new()
                }
            ))
            .bind::<Text, _>(run_id)
            .bind::<Text, _>(owner)
            .bind::<BigInt, _>(codec::ttl_micros(ttl))
            .get_result::<LeaseRow>(c)
            .await
            .optional()
            .map_err(db("claim run"))?;
            if row.is_none() && head(c, run_id).await.map_err(db("claim run"))?.is_none() {
                return Err(StoreError::NotFound(format!("run {run_id}")));
            }
            Ok(row.map(LeaseRow::decode).transpose()?.flatten())
        })
        .await
    }
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn claim_runs(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        self.with("claim runs", async |c| {
            let mut rows = sql_query(format!(
                "WITH c AS (
                    SELECT id FROM runs
                    WHERE {ACTIVE} AND (lease_expires_at IS NULL OR lease_expires_at <= now())
                    ORDER BY id LIMIT $2
                    FOR UPDATE SKIP LOCKED
                 )
                 UPDATE runs SET epoch = runs.epoch + 1, lease_owner = $1,
                     lease_expires_at = now() + $3 * interval '1 microsecond'
                 FROM c WHERE runs.id = c.id
                 RETURNING runs.id, runs.run_id, runs.lease_owner, runs.epoch, runs.lease_expires_at"
            ))
            .bind::<Text, _>(owner)
            .bind::<BigInt, _>(clamp(limit))
            .bind::<BigInt, _>(codec::ttl_micros(ttl))
            .load::<LeaseRow>(c)
            .await
            .map_err(db("claim runs"))?;
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
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = leases.iter().map(|l| &*l.run_id).collect();
        let epochs: Vec<i64> = leases
            .iter()
            .map(|l| i64::try_from(l.epoch).unwrap_or(-1))
            .collect();
        self.with("renew leases", async |c| {
            let rows = sql_query(
                "UPDATE runs SET lease_expires_at = now() + $3 * interval '1 microsecond'
                 FROM unnest($2::text[], $4::int8[]) AS l(run_id, epoch)
                 WHERE runs.run_id = l.run_id AND runs.epoch = l.epoch AND runs.lease_owner = $1
                 RETURNING runs.id, runs.run_id, runs.lease_owner, runs.epoch, runs.lease_expires_at",
            )
            .bind::<Text, _>(owner)
            .bind::<Array<Text>, _>(&ids)
            .bind::<BigInt, _>(codec::ttl_micros(ttl))
            .bind::<Array<BigInt>, _>(&epochs)
            .load::<LeaseRow>(c)
            .await
            .map_err(db("renew leases"))?;
            let mut renewed: Vec<Lease> = rows
                .into_iter()
                .filter_map(|r| r.decode().transpose())
                .collect::<Result<_, _>>()?;
            // In the order asked.
            renewed.sort_by_key(|l| ids.iter().position(|id| **id == *l.run_id));
            Ok(renewed)
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let Ok(epoch) = i64::try_from(lease.epoch) else {
            return Ok(());
        };
        self.with("release lease", async |c| {
            sql_query(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL \
                 WHERE run_id = $1 AND lease_owner = $2 AND epoch = $3",
            )
            .bind::<Text, _>(&*lease.run_id)
            .bind::<Text, _>(&lease.owner)
            .bind::<BigInt, _>(epoch)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(db("release lease"))
        })
        .await
    }

    async fn lease(&self, run_id: &str) -> Result<Option<Lease>, StoreError> {
        self.with("read lease", async |c| {
            let row = sql_query(
                "SELECT id, run_id, lease_owner, epoch, lease_expires_at FROM runs WHERE run_id = $1",
            )
            .bind::<Text, _>(run_id)
            .get_result::<LeaseRow>(c)
            .await
            .optional()
            .map_err(db("read lease"))?;
            Ok(row.map(LeaseRow::decode).transpose()?.flatten())
        })
        .await
    }
}

type SyncPg = diesel_async::async_connection_wrapper::AsyncConnectionWrapper<AsyncPgConnection>;

/// Runs `f` on a fresh synchronous connection in a blocking task (diesel's migration harness is
/// synchronous; a blocking task works on any Tokio runtime flavour).
async fn blocking<R: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut SyncPg) -> Result<R, Error> + Send + 'static,
) -> Result<R, Error> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let mut conn = <SyncPg as diesel::Connection>::establish(&url)
            .map_err(|e| Error::Store(StoreError::Unavailable(format!("connect: {e}"))))?;
        f(&mut conn)
    })
    .await
    .map_err(|e| Error::Migration(format!("migration task: {e}")))?
}

#[async_trait]
impl DurableStore for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<Vec<String>, Error> {
        blocking(&self.inner.url, |c| {
            let lock = |c: &mut SyncPg, sql: &str| {
                diesel::RunQueryDsl::execute(sql_query(sql).bind::<BigInt, _>(MIGRATION_LOCK), c)
                    .map_err(|e| Error::Store(from_diesel("migration lock", e)))
            };
            // Replicas starting together: the first migrates, the others wait here and then
            // find nothing pending. The lock goes with the session if this process dies.
            lock(c, "SELECT pg_advisory_lock($1) IS NULL")?;
            let applied = c
                .run_pending_migrations(MIGRATIONS)
                .map(|v| v.into_iter().map(|v| v.to_string()).collect())
                .map_err(|e| Error::Migration(e.to_string()));
            lock(c, "SELECT pg_advisory_unlock($1) IS NULL")?;
            applied
        })
        .await
    }

    async fn pending_migrations(&self) -> Result<Vec<String>, Error> {
        blocking(&self.inner.url, |c| {
            c.pending_migrations(MIGRATIONS)
                .map(|list| list.iter().map(|m| m.name().to_string()).collect())
                .map_err(|e| Error::Migration(e.to_string()))
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with("ping", async |c| {
            sql_query("SELECT 1::int8 AS id")
                .get_result::<IdRow>(c)
                .await
                .map(|_| ())
                .map_err(db("ping"))
        })
        .await
    }

    fn pool_state(&self) -> PoolState {
        let s = self.inner.pool.status();
        PoolState {
            max_size: s.max_size,
            size: s.size,
            available: s.available,
        }
    }
}
