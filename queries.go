package mire

import (
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire/internal/bridge"
)

// The runtime SQL, with {{schema}} standing for the quoted schema name. New
// fills the schema in once per Store.
//
// An append is one statement: a CTE moves the stream row (the optimistic
// check: it returns no row when the expectation fails) and the INSERT takes
// the events' versions from it, so zero events are written on a conflict.
// The statement returns how many events it wrote and the stream's new
// version. Parameters: $1 event ids, $2 types, $3 schema versions, $4 data,
// $5 metadata, $6 stream id, $7 category, $8 event count, $9 expected version.
// The append's first row carries its size (append_size), the rest 0: the
// projections' readers index only first rows (see migration 0003).
const (
	appendTail = `
INSERT INTO {{schema}}.events (stream_id, version, category, event_id, type, schema_version, data, metadata, prev_xid, append_size)
SELECT $6, s.before + e.ord, $7, e.id, e.type, e.sv, e.data, $5::jsonb, s.prev_xid, CASE WHEN e.ord = 1 THEN $8::bigint ELSE 0 END
FROM s, ` + appendEvents + `
RETURNING version, position)
SELECT count(*), coalesce(max(version), 0) FROM ins`

	// appendRefused begins the message of a strict append's refusal.
	appendRefused = `mire: append refused, rolling back: `

	// appendEvents is where the append statements take their events from:
	// the columns' arrays, zipped. appendEvent, in the form for an append
	// of one event, takes them as scalars instead (see appendForms).
	appendEvents = `unnest($1::uuid[], $2::text[], $3::int[], $4::jsonb[]) WITH ORDINALITY AS e(id, type, sv, data, ord)`
	appendEvent  = `(VALUES ($1::uuid, $2::text, $3::int, $4::jsonb, 1::bigint)) AS e(id, type, sv, data, ord)`

	// appendTotals is the last line of the append statements; with inline
	// projections, appendInlineResult replaces it.
	appendTotals = `SELECT count(*), coalesce(max(version), 0) FROM ins`
	// appendStrictTotals replaces appendTotals in the statements
	// TxScope.SaveAndCommit sends ahead of COMMIT: a refused append fails,
	// aborting the transaction, instead of answering that it wrote nothing.
	// The failure is a cast whose message says why (count(*) in it keeps
	// the planner from folding it into a failure of every execution).
	appendStrictTotals = `SELECT CASE WHEN count(*) = $8::bigint THEN count(*)
ELSE ('` + appendRefused + `' || count(*) || ' of ' || $8::bigint || ' events written')::bigint END, coalesce(max(version), 0) FROM ins`
	appendInlineResult = `SELECT count(*), coalesce(max(version), 0), coalesce(array_agg(position ORDER BY version), '{}'), now() FROM ins`

	// appendExact: the stream must be at version $9 (>= 1).
	appendExact = `WITH s AS (
UPDATE {{schema}}.streams SET version = version + $8::bigint, prev_xid = last_xid, last_xid = pg_current_xact_id()
WHERE stream_id = $6 AND version = $9::bigint
RETURNING version - $8::bigint AS before, prev_xid), ins AS (` + appendTail

	// appendNoStream: the stream must not exist.
	appendNoStream = `WITH s AS (
INSERT INTO {{schema}}.streams (stream_id, category, version) VALUES ($6, $7, $8::bigint)
ON CONFLICT (stream_id) DO NOTHING
RETURNING 0::bigint AS before, prev_xid), ins AS (` + appendTail

	// appendStreamExists: the stream must exist, at any version.
	appendStreamExists = `WITH s AS (
UPDATE {{schema}}.streams SET version = version + $8::bigint, prev_xid = last_xid, last_xid = pg_current_xact_id()
WHERE stream_id = $6
RETURNING version - $8::bigint AS before, prev_xid), ins AS (` + appendTail

	// appendAny: no expectation; creates the stream if needed.
	appendAny = `WITH s AS (
INSERT INTO {{schema}}.streams (stream_id, category, version) VALUES ($6, $7, $8::bigint)
ON CONFLICT (stream_id) DO UPDATE
SET version = streams.version + EXCLUDED.version, prev_xid = streams.last_xid, last_xid = pg_current_xact_id()
RETURNING version - $8::bigint AS before, prev_xid), ins AS (` + appendTail

	selectStreamVersion = `SELECT version FROM {{schema}}.streams WHERE stream_id = $1`

	// notify wakes the projection runners listening on channel $1.
	notify = `SELECT pg_notify($1, '')`

	// setLockTimeout sets lock_timeout ($1, e.g. '20ms') for the rest of
	// the transaction only.
	setLockTimeout = `SELECT set_config('lock_timeout', $1, true)`
	lockStreams    = `SELECT stream_id FROM {{schema}}.streams WHERE stream_id = ANY($1::text[]) ORDER BY stream_id FOR UPDATE`

	// selectRefused explains a refused append in one round trip: stream
	// $2's version (NULL if it does not exist), then for each event id of
	// $1, in order, where it is stored (NULLs if nowhere), all from the same
	// snapshot.
	selectRefused = `SELECT (SELECT version FROM {{schema}}.streams WHERE stream_id = $2), i.ord, e.stream_id, e.version
FROM unnest($1::uuid[]) WITH ORDINALITY AS i(id, ord) LEFT JOIN {{schema}}.events e ON e.event_id = i.id
ORDER BY i.ord`

	// givenIDsFree is the condition the append statements for events with
	// caller-given ids (WithID) add to their stream-row step: none of the
	// ids is stored yet. A retry then writes nothing, like a failed
	// expectation, instead of failing on the unique index.
	givenIDsFree = `NOT EXISTS (SELECT FROM {{schema}}.events WHERE event_id = ANY($1::uuid[]))`

	// selectStreamEvents is the replay of stream $1 after version $2: its
	// stream row (a headRow, see fold) and then its events in version
	// order, from one database snapshot, so the events can be checked
	// against the row without another round trip.
	selectStreamEvents = `SELECT -2::bigint, version, ''::text, 0, NULL::jsonb FROM {{schema}}.streams WHERE stream_id = $1
UNION ALL
SELECT version, position, type, schema_version, data FROM {{schema}}.events
WHERE stream_id = $1 AND version > $2
ORDER BY 1`

	readStream = `SELECT ` + bridge.EnvelopeColumns + ` FROM {{schema}}.events e
WHERE stream_id = $1 AND version > $2 ORDER BY version LIMIT $3`
	readCategory = `SELECT ` + bridge.EnvelopeColumns + ` FROM {{schema}}.events e
WHERE category = $1 AND position > $2 ORDER BY position LIMIT $3`
	readAll = `SELECT ` + bridge.EnvelopeColumns + ` FROM {{schema}}.events e
WHERE position > $1 ORDER BY position LIMIT $2`
)

// appendQueries are the four append statements, one per kind of
// expectation.
type appendQueries struct{ exact, noStream, streamExists, any string }

// each returns the statements with f applied to each.
func (q appendQueries) each(f func(string) string) appendQueries {
	return appendQueries{exact: f(q.exact), noStream: f(q.noStream), streamExists: f(q.streamExists), any: f(q.any)}
}

// appendForms are the append statements in two forms: many, whose event
// columns go as arrays, for any number of events; and one, for an append
// of a single event (the common case), whose columns go as scalars, so
// there is no array for pgx to build and for the server to take apart.
// Both write the same rows.
type appendForms struct{ many, one appendQueries }

// newAppendQueries returns the append statements; with givenIDs, the
// variants for events with caller-given ids (see givenIDsFree); with
// inline, the variants that also return the events' positions and
// timestamp, which inline projections are handed.
func newAppendQueries(fill func(string) string, givenIDs, inline bool) appendForms {
	q := appendQueries{exact: appendExact, noStream: appendNoStream, streamExists: appendStreamExists, any: appendAny}
	if inline {
		q.exact = mustReplace(q.exact, appendTotals, appendInlineResult)
		q.noStream = mustReplace(q.noStream, appendTotals, appendInlineResult)
		q.streamExists = mustReplace(q.streamExists, appendTotals, appendInlineResult)
		q.any = mustReplace(q.any, appendTotals, appendInlineResult)
	}
	if givenIDs {
		q.exact = mustReplace(q.exact, "WHERE stream_id = $6 AND", "WHERE "+givenIDsFree+" AND stream_id = $6 AND")
		q.streamExists = mustReplace(q.streamExists, "WHERE stream_id = $6\n", "WHERE "+givenIDsFree+" AND stream_id = $6\n")
		q.noStream = mustReplace(q.noStream, "VALUES ($6, $7, $8::bigint)", "SELECT $6, $7, $8::bigint WHERE "+givenIDsFree)
		q.any = mustReplace(q.any, "VALUES ($6, $7, $8::bigint)", "SELECT $6, $7, $8::bigint WHERE "+givenIDsFree)
	}
	one := q.each(func(sql string) string {
		sql = mustReplace(sql, appendEvents, appendEvent)
		if givenIDs {
			sql = mustReplace(sql, "event_id = ANY($1::uuid[])", "event_id = $1::uuid")
		}
		return sql
	})
	return appendForms{many: q.each(fill), one: one.each(fill)}
}

// strictAppendQueries returns forms whose statements fail when refused
// (see appendStrictTotals).
func strictAppendQueries(forms appendForms) appendForms {
	strict := func(sql string) string { return mustReplace(sql, appendTotals, appendStrictTotals) }
	return appendForms{many: forms.many.each(strict), one: forms.one.each(strict)}
}

// mustReplace replaces old in sql, which must hold it once.
func mustReplace(sql, old, new string) string {
	if strings.Count(sql, old) != 1 {
		panic("mire: append statement does not hold " + old)
	}
	return strings.Replace(sql, old, new, 1)
}

// queries is the runtime SQL of one Store, with its schema filled in.
type queries struct {
	appendNew         appendForms // for events with the ids Record and Append made
	appendGiven       appendForms // for events with ids given by WithID
	appendNewInline   appendForms // appendNew, returning what inline projections need
	appendGivenInline appendForms // appendGiven, the same
	appendNewStrict   appendForms // appendNew, failing when refused (TxScope.SaveAndCommit)

	selectStreamVersion, lockStreams, notify, setLockTimeout string
	selectRefused                                            string
	selectStreamEvents, readStream, readCategory, readAll    string

	snapshot snapshotQueries // snapshot.go
}

func newQueries(schema string) queries {
	fill := strings.NewReplacer("{{schema}}", pgx.Identifier{schema}.Sanitize()).Replace
	q := queries{
		snapshot:            newSnapshotQueries(fill),
		appendNew:           newAppendQueries(fill, false, false),
		appendGiven:         newAppendQueries(fill, true, false),
		appendNewInline:     newAppendQueries(fill, false, true),
		appendGivenInline:   newAppendQueries(fill, true, true),
		selectStreamVersion: fill(selectStreamVersion),
		lockStreams:         fill(lockStreams),
		notify:              notify,
		setLockTimeout:      setLockTimeout,
		selectRefused:       fill(selectRefused),
		selectStreamEvents:  fill(selectStreamEvents),
		readStream:          fill(readStream),
		readCategory:        fill(readCategory),
		readAll:             fill(readAll),
	}
	q.appendNewStrict = strictAppendQueries(q.appendNew)
	return q
}

// The snapshot SQL, with {{schema}} standing for the quoted schema name
// (snapshot.go).
const (
	// upsertSnapshot stores the state of stream $1 at version $2, but only
	// if the event that took the stream to $2 ($5, the last of the save) is
	// stored there by this very transaction: a refused append writes no
	// snapshot, and neither does a retry recognised later, so every
	// snapshot shares its event's transaction (and so its recorded_at,
	// which loads check). An older snapshot, one at the same version (left
	// by a stream deleted by hand and written again) or one of another
	// schema version is replaced; a newer one is kept.
	upsertSnapshot = `INSERT INTO {{schema}}.snapshots AS s (stream_id, version, schema_version, state)
SELECT $1::text, $2::bigint, $3::int, $4::jsonb
WHERE EXISTS (SELECT FROM {{schema}}.events
  WHERE event_id = $5::uuid AND stream_id = $1::text AND version = $2::bigint AND xid = pg_current_xact_id())
ON CONFLICT (stream_id) DO UPDATE
SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version, state = EXCLUDED.state, taken_at = EXCLUDED.taken_at
WHERE s.version <= EXCLUDED.version OR s.schema_version <> EXCLUDED.schema_version`

	// selectStreamFromSnapshot is selectStreamEvents with the stream's
	// snapshot of schema version $3 (if it is past version $2) between the
	// stream row and the events: a snapshotRow (see fold) with its state as
	// data, and then only the events after it. One statement, so the stream
	// row, the snapshot and the events are read from the same database
	// snapshot.
	//
	// A snapshot is used only if the event at its version is the one it was
	// stored with: the upsert writes it in that event's transaction, so its
	// taken_at is that event's recorded_at (both are now()). A snapshot
	// above the stream's version, or left behind by a stream deleted and
	// written again, fails the test; its row then comes with a NULL state,
	// and every event is read.
	selectStreamFromSnapshot = `WITH snap AS (
SELECT s.version, s.state, EXISTS (SELECT FROM {{schema}}.events e
  WHERE e.stream_id = $1 AND e.version = s.version AND e.recorded_at = s.taken_at) AS usable
FROM {{schema}}.snapshots s WHERE s.stream_id = $1 AND s.version > $2 AND s.schema_version = $3)
SELECT -2::bigint, version, ''::text, 0, NULL::jsonb FROM {{schema}}.streams WHERE stream_id = $1
UNION ALL
SELECT -1, version, '', 0, CASE WHEN usable THEN state END FROM snap
UNION ALL
SELECT version, position, type, schema_version, data FROM {{schema}}.events
WHERE stream_id = $1 AND version > coalesce((SELECT version FROM snap WHERE usable), $2)
ORDER BY 1`
)

// snapshotQueries is the snapshot SQL of one Store, with its schema filled in.
type snapshotQueries struct {
	upsert, selectStream string
}

func newSnapshotQueries(fill func(string) string) snapshotQueries {
	return snapshotQueries{upsert: fill(upsertSnapshot), selectStream: fill(selectStreamFromSnapshot)}
}
