-- Maestro's durable state on PostgreSQL (DESIGN §3). Timestamps are timestamptz (UTC on the wire),
-- JSON is jsonb. Hot tables (node_states, run_events) use the runs' bigint surrogate key.
-- Identifiers use the "C" collation: byte order, as the in-memory store sorts them, and cheaper
-- comparisons than a linguistic collation.

-- Versioned, immutable workflow definitions. A run is pinned by (workflow_id, version,
-- content_hash) and deliberately has no foreign key to this table: deleting a definition must
-- not touch its runs, and an embedded engine may run workflows it never stored.
CREATE TABLE workflow_definitions (
    workflow_id  TEXT        COLLATE "C" NOT NULL,
    version      INTEGER     NOT NULL CHECK (version > 0),
    content_hash TEXT        NOT NULL,
    definition   JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workflow_id, version)
);

CREATE TABLE runs (
    id               BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id           TEXT        COLLATE "C" NOT NULL UNIQUE,
    workflow_id      TEXT        COLLATE "C" NOT NULL,
    version          INTEGER     NOT NULL CHECK (version > 0),
    content_hash     TEXT        NOT NULL,
    status           TEXT        NOT NULL CHECK (status IN
                         ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    inputs           JSONB       NOT NULL,
    -- NULLs are distinct, so runs without a key never collide.
    idempotency_key  TEXT,
    error            TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    -- The lease: who drives the run and until when. Its fencing epoch is `epoch`, raised by
    -- every claim; a write carrying an older epoch is refused.
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    epoch            BIGINT      NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    -- Sequence number of the run's last event: the log continues at last_seq + 1.
    last_seq         BIGINT      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    CONSTRAINT runs_lease_complete CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT runs_idempotency UNIQUE (workflow_id, idempotency_key)
);

-- Listing runs of a workflow, newest first.
CREATE INDEX runs_workflow ON runs (workflow_id, id);
-- Listing runs by status, newest first.
CREATE INDEX runs_status ON runs (status, id);
-- Claims: runs that have not ended, oldest first, filtered by lease expiry. Ended runs (the
-- vast majority over time) are not in this index at all.
CREATE INDEX runs_claimable ON runs (id, lease_expires_at)
    WHERE status IN ('pending', 'running', 'paused');

-- The latest state of every node that left `pending`.
CREATE TABLE node_states (
    run_pk      BIGINT      NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    node_id     TEXT        COLLATE "C" NOT NULL,
    status      TEXT        NOT NULL CHECK (status IN ('pending', 'ready', 'running', 'completed',
                    'failed', 'skipped', 'cancelled', 'waiting_approval')),
    attempt     INTEGER     NOT NULL CHECK (attempt >= 0),
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    output      JSONB,
    error       TEXT,
    reason      TEXT,
    retry_at    TIMESTAMPTZ,
    PRIMARY KEY (run_pk, node_id)
);

-- The per-run event log: seq 1, 2, 3… without gaps (checked against runs.last_seq on write).
CREATE TABLE run_events (
    run_pk  BIGINT      NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     BIGINT      NOT NULL CHECK (seq > 0),
    type    TEXT        NOT NULL,
    node_id TEXT        COLLATE "C",
    data    JSONB       NOT NULL,
    ts      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_pk, seq)
);
