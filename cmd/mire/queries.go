package main

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// The command's own SQL, with {{schema}} standing for the quoted schema
// name as in pgschema's migrations. It reads raw rows: the command has no
// registry of the application's Go types, and raw rows keep what
// decoding would lose (recorded_at, the stored schema version).
const (
	// $1: category or NULL for all; $2: limit.
	selectStreams = `
SELECT s.stream_id, s.category, s.version, e.recorded_at
FROM {{schema}}.streams s
LEFT JOIN {{schema}}.events e ON e.stream_id = s.stream_id AND e.version = s.version
WHERE $1::text IS NULL OR s.category = $1
ORDER BY e.recorded_at DESC NULLS LAST, s.stream_id
LIMIT $2`

	countSagaInstances = `SELECT saga, status, count(*)::int FROM {{schema}}.saga_instances GROUP BY saga, status`

	eventColumns = `position, stream_id, version, category, event_id, type, schema_version, data, metadata, recorded_at`

	// $1: stream id; $2: after this version; $3: limit or NULL.
	selectStreamEvents = `
SELECT ` + eventColumns + ` FROM {{schema}}.events
WHERE stream_id = $1 AND version > $2
ORDER BY version
LIMIT $3`

	streamExists = `SELECT EXISTS (SELECT 1 FROM {{schema}}.streams WHERE stream_id = $1)`

	// Every projection that has a checkpoint, with the time of the first
	// event past its checkpoint's position (in its categories), for the
	// age of its lag. Positions commit out of order, so this is the age of
	// the oldest event it has still to deliver only roughly, which is what
	// an operator needs.
	// A partitioned projection has a row per partition: its lag's age is
	// the oldest of theirs.
	selectProjections = `
SELECT s.name, min((
	SELECT e.recorded_at FROM {{schema}}.events e
	WHERE e.position > greatest(s.cursor_position, s.floor_position)
	  AND (s.categories IS NULL OR e.category = ANY (s.categories))
	ORDER BY e.position LIMIT 1))
FROM {{schema}}.subscriptions s
GROUP BY s.name
ORDER BY s.name`
	// $1: category or NULL.
	selectExport = `
SELECT ` + eventColumns + ` FROM {{schema}}.events
WHERE $1::text IS NULL OR category = $1
ORDER BY position`

	// Import: which of a batch's event ids are stored already ($1 uuid[]),
	// and where; and the streams of a batch ($1 text[]), locked.
	selectStoredIDs     = `SELECT event_id, stream_id, version FROM {{schema}}.events WHERE event_id = ANY ($1)`
	lockImportedStreams = `SELECT stream_id, version FROM {{schema}}.streams WHERE stream_id = ANY ($1) ORDER BY stream_id FOR UPDATE`

	// importEvent writes one event as an append of its own, as the store's
	// appends do (the stream row moves on, and the event records the
	// transaction of the stream's previous append for projections' order),
	// but keeping its id and recorded_at. The caller has checked that the
	// stream is at version $3 - 1 under the lock; a stream that moved
	// anyway inserts nothing. $1 stream, $2 category, $3 version, $4 id,
	// $5 type, $6 schema version, $7 data, $8 metadata, $9 recorded at.
	importEvent = `
WITH s AS (
	INSERT INTO {{schema}}.streams AS st (stream_id, category, version) VALUES ($1, $2, $3)
	ON CONFLICT (stream_id) DO UPDATE
	SET version = EXCLUDED.version, prev_xid = st.last_xid, last_xid = pg_current_xact_id()
	WHERE st.version = EXCLUDED.version - 1
	RETURNING st.prev_xid)
INSERT INTO {{schema}}.events (stream_id, version, category, event_id, type, schema_version, data, metadata, recorded_at, prev_xid, append_size)
SELECT $1, $3, $2, $4, $5, $6, $7, $8, $9, s.prev_xid, 1 FROM s
RETURNING position`

	notify = `SELECT pg_notify($1, '')`

	// analyzeEvents refreshes the planner's statistics of the events
	// table after an import. Until autovacuum gets to it (a minute or
	// more), a freshly filled table looks empty to the planner, which then
	// reads each batch of a projection's catch-up by sorting everything
	// after its cursor instead of walking the index.
	analyzeEvents = `ANALYZE {{schema}}.events`

	// tailPage reads the appends after the cursor ($1 xid, $2 the
	// position of an append's first row) in (xid, position) order, whole,
	// and only those of transactions older than every one still running:
	// no later commit can land behind the cursor (see DESIGN.md, Ordering
	// for subscribers). Only each append's first row is indexed by (xid,
	// position); the rest of an append is found by (stream_id, version).
	// $3: category or NULL; $4: at most this many appends.
	tailPage = `
SELECT h.xid, e.prev_xid, h.position, e.position, e.stream_id, e.version, e.category, e.event_id, e.type, e.schema_version,
	e.data, e.metadata, e.recorded_at
FROM (SELECT xid, position, stream_id, version, append_size FROM {{schema}}.events
	WHERE append_size > 0 AND (xid, position) > ($1::xid8, $2::bigint)
	AND xid < pg_snapshot_xmin(pg_current_snapshot())
	AND ($3::text IS NULL OR category = $3)
	ORDER BY xid, position LIMIT $4) h
JOIN {{schema}}.events e ON e.stream_id = h.stream_id AND e.version >= h.version AND e.version < h.version + h.append_size
ORDER BY h.xid, h.position, e.version`

	// tailNow is the cursor of --from-now: every transaction below it has
	// finished.
	tailNow = `SELECT pg_snapshot_xmin(pg_current_snapshot())`
)

// fill returns sql with schema, quoted, in place of {{schema}}.
func fill(schema, sql string) string {
	return strings.ReplaceAll(sql, "{{schema}}", pgx.Identifier{schema}.Sanitize())
}
