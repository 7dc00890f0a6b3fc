package projections

import (
	"hash/fnv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire/internal/bridge"
)

// The runtime SQL, with {{schema}} standing for the quoted schema name;
// queriesFor fills it in once per schema. Leases are timed by the
// database's clock (clock_timestamp), so replicas' clocks need not agree.
const (
	rowColumns = `e.xid, e.prev_xid, ` + bridge.EnvelopeColumns + `, e.append_size`

	// Only the first row of each append is indexed by (xid, position)
	// (migration 0003). It carries the append's size; the append's other
	// rows follow it at consecutive versions of its stream. The reader
	// takes the next first rows ("heads") in (xid, position) order, then
	// the rest of the multi-event appends among them through the
	// (stream_id, version) key (see worker.read).

	// cursorHead finds the position of the first row of the append that
	// holds the cursor ($1 xid, $2 position), or 0: appends in one
	// transaction are successive statements, so their positions do not
	// interleave, and the last head at or before the cursor begins its
	// append. A worker looks it up when it takes the lease, and then
	// follows it from the rows it reads.
	cursorHead = `SELECT coalesce(max(position), 0) FROM {{schema}}.events
WHERE append_size > 0 AND xid = $1::xid8 AND position <= $2::bigint`

	// readHeads reads the heads from the cursor's own append on ($1 xid,
	// $2 the position of that append's head), above the floor $3, at most
	// $4, from transactions below the oldest one still running: every
	// transaction that can still commit sorts after them, so nothing can
	// land behind the cursor. (It compares with > $2 - 1, not >= $2: with
	// a >= row comparison beside the floor's condition, PostgreSQL 15
	// starts the index scan at the start of the cursor's transaction.)
	readHeads = headsWhere + headsOrder

	// readHeadsCategories is readHeads limited to the categories $5.
	readHeadsCategories = headsWhere + `AND e.category = ANY($5::text[])
` + headsOrder

	headsWhere = `SELECT ` + rowColumns + ` FROM {{schema}}.events e
WHERE e.append_size > 0 AND (e.xid, e.position) > ($1::xid8, $2::bigint - 1)
AND e.position > $3::bigint AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
`
	headsOrder = `ORDER BY e.xid, e.position LIMIT $4`

	// readRest reads the rest of the appends whose heads are at versions
	// $2 of streams $1, up to versions $3, append by append. A first
	// version of 0 marks the cursor's own append: it starts after the
	// cursor's event, at position $4.
	readRest = `SELECT ` + rowColumns + `
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS a(stream_id, first, last, ord)
JOIN {{schema}}.events e ON e.stream_id = a.stream_id AND e.version <= a.last
AND e.version >= CASE WHEN a.first > 0 THEN a.first
    ELSE (SELECT c.version + 1 FROM {{schema}}.events c WHERE c.position = $4::bigint) END
ORDER BY a.ord, e.version`

	// lag counts the events a projection has still to read after its
	// cursor: whole appends in later transactions and later in the
	// cursor's transaction, plus what is left of the cursor's own append
	// (its versions are consecutive). Like the reader, it skips appends
	// whose first row lies at or below the floor. (The floor is tested in
	// a form no index serves, or the planner may walk the primary key
	// from the floor instead of the heads from the cursor.)
	lag = `(SELECT coalesce(sum(h.append_size), 0) FROM {{schema}}.events h
    WHERE h.append_size > 0 AND h.xid > s.cursor_xid AND (h.position > s.floor_position OR s.floor_position = 0)
    AND (s.categories IS NULL OR h.category = ANY(s.categories)))
+ (SELECT coalesce(sum(h.append_size), 0) FROM {{schema}}.events h
    WHERE h.append_size > 0 AND h.xid = s.cursor_xid AND h.position > s.cursor_position
    AND (h.position > s.floor_position OR s.floor_position = 0)
    AND (s.categories IS NULL OR h.category = ANY(s.categories)))
+ coalesce((SELECT h.version + h.append_size - 1 - c.version FROM {{schema}}.events c
    CROSS JOIN LATERAL (SELECT * FROM {{schema}}.events h WHERE h.append_size > 0 AND h.xid = c.xid
        AND h.position <= c.position ORDER BY h.position DESC LIMIT 1) h
    WHERE c.position = s.cursor_position AND h.position > s.floor_position
    AND (s.categories IS NULL OR h.category = ANY(s.categories))), 0)`

	readPositions = `SELECT ` + rowColumns + ` FROM {{schema}}.events e
WHERE e.position = ANY($1::bigint[]) ORDER BY e.xid, e.position`

	selectPosition = `SELECT position FROM {{schema}}.events WHERE stream_id = $1 AND version = $2`

	subscriptionColumns = `fence, cursor_xid, cursor_position, floor_position, held, state, coalesce(last_error, '')`

	// acquire takes the lease ($2 owner, $3 TTL in seconds) if it is free,
	// expired, or already this owner's, raising the fence; it returns no row
	// when another owner holds a live lease.
	acquire = `INSERT INTO {{schema}}.subscriptions AS s (name, owner, lease_until, fence, categories)
VALUES ($1, $2, clock_timestamp() + $3::float8 * interval '1 second', 1, $4::text[])
ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until,
    fence = s.fence + 1, categories = EXCLUDED.categories, updated_at = clock_timestamp()
WHERE s.owner IS NULL OR s.lease_until < clock_timestamp() OR s.owner = EXCLUDED.owner
RETURNING ` + subscriptionColumns

	renew = `UPDATE {{schema}}.subscriptions
SET lease_until = clock_timestamp() + $3::float8 * interval '1 second'
WHERE name = $1 AND fence = $2 RETURNING state`

	release = `UPDATE {{schema}}.subscriptions SET owner = NULL, lease_until = NULL
WHERE name = $1 AND fence = $2`

	// batchLock is taken, shared, by a batch's transaction before its
	// handlers write, and adminLock, exclusive, by an admin transaction
	// before it clears the read model ($1: the projection's lockKey). An
	// admin operation so waits for the batches in flight and new batches
	// wait for it, whatever tables the read model spans and in whatever
	// order the handlers and Truncate touch them: they cannot deadlock.
	// Unlike a lock on the subscription row, it does not stand in the way
	// of a takeover: a worker paused in its handler holds only a shared
	// lock, which its successor's batches share.
	batchLock = `SELECT pg_advisory_xact_lock_shared($1)`
	adminLock = `SELECT pg_advisory_xact_lock($1)`

	// checkpoint moves the cursor inside the batch's transaction, only while
	// the fence is still this worker's; it also extends the lease.
	checkpoint = `UPDATE {{schema}}.subscriptions
SET cursor_xid = $3, cursor_position = $4, held = $5, delivered = delivered + $6,
    lease_until = clock_timestamp() + $7::float8 * interval '1 second', updated_at = clock_timestamp()
WHERE name = $1 AND fence = $2`

	halt = `UPDATE {{schema}}.subscriptions
SET state = 'halted', last_error = $3, error_position = $4, error_stream = $5, error_version = $6,
    error_type = $7, updated_at = clock_timestamp()
WHERE name = $1 AND fence = $2`

	// The admin operations revoke the lease: they raise the fence and free
	// the lease, so the worker holding it stops at its next checkpoint and
	// a worker (maybe the same) takes over with the new state.
	revokeLease = `fence = fence + 1, owner = NULL, lease_until = NULL, updated_at = clock_timestamp()`
	clearError  = `state = 'running', last_error = NULL, error_position = NULL, error_stream = NULL,
    error_version = NULL, error_type = NULL`

	resume = `UPDATE {{schema}}.subscriptions SET ` + clearError + `, ` + revokeLease + `
WHERE name = $1`

	reset = `UPDATE {{schema}}.subscriptions
SET cursor_xid = '0', cursor_position = 0, floor_position = 0, held = '{}', delivered = 0,
    ` + clearError + `, ` + revokeLease + `
WHERE name = $1`

	// toWatermark skips every event stored now: the cursor goes to the
	// oldest running transaction and the floor to the highest position.
	toWatermark = `UPDATE {{schema}}.subscriptions
SET cursor_xid = pg_snapshot_xmin(pg_current_snapshot()), cursor_position = 0,
    floor_position = (SELECT coalesce(max(position), 0) FROM {{schema}}.events), held = '{}',
    ` + revokeLease + `
WHERE name = $1`

	lockSubscription = `SELECT name FROM {{schema}}.subscriptions WHERE name = $1 FOR UPDATE`

	// lagSeconds is the time since the event at cursor position $1 (or,
	// before the first, the log's first event) was recorded.
	lagSeconds = `SELECT extract(epoch FROM now() - coalesce(
    (SELECT recorded_at FROM {{schema}}.events WHERE position = $1),
    (SELECT recorded_at FROM {{schema}}.events ORDER BY position LIMIT 1),
    now()))::float8`

	status = `SELECT s.name, s.cursor_xid, s.cursor_position, s.floor_position, cardinality(s.held), s.delivered,
    coalesce(s.owner, ''), s.lease_until, s.fence, s.state, coalesce(s.last_error, ''),
    s.error_position, coalesce(s.error_stream, ''), coalesce(s.error_version, 0), coalesce(s.error_type, ''),
    s.updated_at, cardinality(s.held) + ` + lag + `
FROM {{schema}}.subscriptions s WHERE s.name = $1`
)

type queries struct {
	readHeads, readHeadsCategories, readRest, readPositions, selectPosition, cursorHead string
	acquire, renew, release, batchLock, adminLock, checkpoint, halt                     string
	resume, reset, toWatermark, lockSubscription, status, lagSeconds                    string
}

// queryCache holds the runtime SQL of each schema in use:
// map[string]*queries, keyed by schema name. Runners and the admin
// functions share it, so the SQL is filled in once per schema, not per
// call.
var queryCache sync.Map

// queriesFor returns the runtime SQL of schema, filled in on first use.
func queriesFor(schema string) *queries {
	if q, ok := queryCache.Load(schema); ok {
		return q.(*queries)
	}
	q, _ := queryCache.LoadOrStore(schema, newQueries(schema))
	return q.(*queries)
}

func newQueries(schema string) *queries {
	fill := strings.NewReplacer("{{schema}}", pgx.Identifier{schema}.Sanitize()).Replace
	return &queries{
		readHeads:           fill(readHeads),
		readHeadsCategories: fill(readHeadsCategories),
		readRest:            fill(readRest),
		cursorHead:          fill(cursorHead),
		readPositions:       fill(readPositions),
		selectPosition:      fill(selectPosition),
		acquire:             fill(acquire),
		renew:               fill(renew),
		release:             fill(release),
		batchLock:           batchLock,
		adminLock:           adminLock,
		checkpoint:          fill(checkpoint),
		halt:                fill(halt),
		resume:              fill(resume),
		reset:               fill(reset),
		toWatermark:         fill(toWatermark),
		lockSubscription:    fill(lockSubscription),
		status:              fill(status),
		lagSeconds:          fill(lagSeconds),
	}
}

// lockKey is the advisory lock key of projection name in schema, for
// batchLock and adminLock. A collision with another advisory lock of the
// database costs waiting, never correctness.
func lockKey(schema, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("mire.projection\x00" + schema + "\x00" + name))
	return int64(h.Sum64())
}
