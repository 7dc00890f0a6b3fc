package main

// The baseline is what a careful engineer would write by hand with pgx and
// no library: the minimum SQL for each workload, on tables of the same
// shape as mire's. Its events table has mire's columns and the constraints
// an event store cannot do without (the position key, unique (stream,
// version) for optimistic concurrency, unique event ids for idempotent
// retries), but not mire's two subscriber indexes ((xid, position) and
// (category, position)), so the baseline pays for less than mire does.
const baselineSchema = `
CREATE SCHEMA baseline;
CREATE TABLE baseline.streams (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL
);
CREATE TABLE baseline.events (
    position       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL,
    category       text        NOT NULL,
    event_id       uuid        NOT NULL UNIQUE,
    type           text        NOT NULL,
    schema_version integer     NOT NULL DEFAULT 1,
    data           jsonb       NOT NULL,
    metadata       jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);
CREATE TABLE baseline.checkpoints (
    name            text   PRIMARY KEY,
    cursor_xid      xid8   NOT NULL,
    cursor_position bigint NOT NULL
);
INSERT INTO baseline.checkpoints VALUES ('catch-up', '0', 0);
CREATE TABLE public.read_model_mire (stream_id text PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE public.read_model_baseline (stream_id text PRIMARY KEY, balance bigint NOT NULL);`

const (
	// baseInsertEvent inserts one event: $1 stream, $2 version, $3 event
	// id, $4 type, $5 data.
	baseInsertEvent = `INSERT INTO baseline.events (stream_id, version, category, event_id, type, schema_version, data)
VALUES ($1, $2, 'account', $3, $4, 1, $5)`

	// baseInsertTwo inserts one event into each of two streams.
	baseInsertTwo = `INSERT INTO baseline.events (stream_id, version, category, event_id, type, schema_version, data)
VALUES ($1, $2, 'account', $3, $4, 1, $5), ($6, $7, 'account', $8, $9, 1, $10)`

	baseSelectStream = `SELECT version, type, data FROM baseline.events WHERE stream_id = $1 ORDER BY version`

	baseBumpVersion = `UPDATE baseline.streams SET version = version + 1 WHERE stream_id = $1 AND version = $2`

	baseCreateStream = `INSERT INTO baseline.streams (stream_id, version) VALUES ($1, 1)`

	baseLockStreams = `SELECT stream_id, version FROM baseline.streams WHERE stream_id = ANY($1::text[])
ORDER BY stream_id FOR UPDATE`

	baseSelectStreams = `SELECT stream_id, type, data FROM baseline.events WHERE stream_id = ANY($1::text[])
ORDER BY stream_id, version`

	baseBumpVersions = `UPDATE baseline.streams SET version = version + 1 WHERE stream_id = ANY($1::text[])`

	// baseCopyLog copies mire's log, once filled, into the baseline's own
	// log table with the plain index a hand-written gap-safe consumer
	// reads through: (xid, position) on every row. (mire indexes only the
	// first row of each append, and joins the rest; see migration 0003.)
	baseCopyLog = `DROP TABLE IF EXISTS baseline.log;
CREATE TABLE baseline.log AS SELECT * FROM mire.events;
CREATE INDEX ON baseline.log (xid, position)`

	// baseReadBatch is a gap-safe consumer's read: the next events after
	// the cursor ($1 xid, $2 position) from transactions older than every
	// one still running, in (xid, position) order, the columns mire's
	// projections read.
	baseReadBatch = `SELECT e.xid, e.prev_xid, e.event_id, e.stream_id, e.category, e.version, e.position,
e.type, e.schema_version, e.data, e.metadata, e.recorded_at FROM baseline.log e
WHERE (e.xid, e.position) > ($1::xid8, $2::bigint) AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.xid, e.position LIMIT $3`

	baseCheckpoint = `UPDATE baseline.checkpoints SET cursor_xid = $1, cursor_position = $2 WHERE name = 'catch-up'`

	// upsertReadModel is the read model both sides' handlers write: a
	// balance per stream. %s is the table.
	upsertReadModel = `INSERT INTO %s AS rm (stream_id, balance) VALUES ($1, $2)
ON CONFLICT (stream_id) DO UPDATE SET balance = rm.balance + EXCLUDED.balance`

	// baseReadAll reads the same columns mire's ReadAll reads, from mire's
	// own events table, in one streamed query.
	baseReadAll = `SELECT event_id, stream_id, category, version, position, type, schema_version, data, metadata, recorded_at
FROM mire.events ORDER BY position`
)
