-- Maestro's durable state on SQLite (DESIGN §3). Timestamps are UTC text in one fixed format,
-- `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so they sort and compare as text; JSON is text.
-- Foreign keys need `PRAGMA foreign_keys = ON`, which the store sets on every connection.

-- Versioned, immutable workflow definitions. Runs deliberately have no foreign key to this
-- table: deleting a definition must not touch its runs.
CREATE TABLE workflow_definitions (
    workflow_id  TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version > 0),
    content_hash TEXT    NOT NULL,
    definition   TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    PRIMARY KEY (workflow_id, version)
) WITHOUT ROWID;

CREATE TABLE runs (
    id               INTEGER PRIMARY KEY,
    run_id           TEXT    NOT NULL UNIQUE,
    workflow_id      TEXT    NOT NULL,
    version          INTEGER NOT NULL CHECK (version > 0),
    content_hash     TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN
                         ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    inputs           TEXT    NOT NULL,
    idempotency_key  TEXT,
    error            TEXT,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    epoch            INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    last_seq         INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    CONSTRAINT runs_lease_complete CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT runs_idempotency UNIQUE (workflow_id, idempotency_key)
);

CREATE INDEX runs_workflow ON runs (workflow_id, id);
CREATE INDEX runs_status ON runs (status, id);
CREATE INDEX runs_claimable ON runs (id, lease_expires_at)
    WHERE status IN ('pending', 'running', 'paused');

CREATE TABLE node_states (
    run_pk      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    node_id     TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'ready', 'running', 'completed',
                    'failed', 'skipped', 'cancelled', 'waiting_approval')),
    attempt     INTEGER NOT NULL CHECK (attempt >= 0),
    started_at  TEXT,
    finished_at TEXT,
    output      TEXT,
    error       TEXT,
    reason      TEXT,
    retry_at    TEXT,
    PRIMARY KEY (run_pk, node_id)
) WITHOUT ROWID;

CREATE TABLE run_events (
    run_pk  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL CHECK (seq > 0),
    type    TEXT    NOT NULL,
    node_id TEXT,
    data    TEXT    NOT NULL,
    ts      TEXT    NOT NULL,
    PRIMARY KEY (run_pk, seq)
) WITHOUT ROWID;
