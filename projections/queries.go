package projections

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// The runtime SQL, with {{schema}} standing for the quoted schema name;
// newQueries fills it in once per Runner. Leases are timed by the
// database's clock (clock_timestamp), so replicas' clocks need not agree.
const (
	rowColumns = `e.xid, e.prev_xid, e.event_id, e.stream_id, e.category, e.version, e.position,
e.type, e.schema_version, e.data, e.metadata, e.recorded_at`

	// readBatch reads the next events after the cursor ($1 xid, $2
	// position), above the floor $3, at most $4, from transactions below
	// the oldest one still running: every transaction that can still
	// commit sorts after them, so nothing can land behind the cursor.
	readBatch = `SELECT ` + rowColumns + ` FROM {{schema}}.events e
WHERE (e.xid, e.position) > ($1::xid8, $2::bigint) AND e.position > $3::bigint
AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.xid, e.position LIMIT $4`

	// readBatchCategories is readBatch limited to the categories $5.
	readBatchCategories = `SELECT ` + rowColumns + ` FROM {{schema}}.events e
WHERE (e.xid, e.position) > ($1::xid8, $2::bigint) AND e.position > $3::bigint
AND e.xid < pg_snapshot_xmin(pg_current_snapshot()) AND e.category = ANY($5::text[])
ORDER BY e.xid, e.position LIMIT $4`

	readPositions = `SELECT ` + rowColumns + ` FROM {{schema}}.events e
WHERE e.position = ANY($1::bigint[]) ORDER BY e.xid, e.position`

	selectPosition = `SELECT position FROM {{schema}}.events WHERE stream_id = $1 AND version = $2`

	subscriptionColumns = `fence, cursor_xid, cursor_position, floor_position, held, state`

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

	// The admin operations raise the fence and free the lease, so the
	// worker holding it stops at its next checkpoint and a worker (maybe
	// the same) takes over with the new state.
	resume = `UPDATE {{schema}}.subscriptions
SET state = 'running', last_error = NULL, error_position = NULL, error_stream = NULL,
    error_version = NULL, error_type = NULL, fence = fence + 1, owner = NULL, lease_until = NULL,
    updated_at = clock_timestamp()
WHERE name = $1`

	reset = `UPDATE {{schema}}.subscriptions
SET cursor_xid = '0', cursor_position = 0, floor_position = 0, held = '{}', delivered = 0,
    state = 'running', last_error = NULL, error_position = NULL, error_stream = NULL,
    error_version = NULL, error_type = NULL, fence = fence + 1, owner = NULL, lease_until = NULL,
    updated_at = clock_timestamp()
WHERE name = $1`

	// toWatermark skips every event stored now: the cursor goes to the
	// oldest running transaction and the floor to the highest position.
	toWatermark = `UPDATE {{schema}}.subscriptions
SET cursor_xid = pg_snapshot_xmin(pg_current_snapshot()), cursor_position = 0,
    floor_position = (SELECT coalesce(max(position), 0) FROM {{schema}}.events), held = '{}',
    fence = fence + 1, owner = NULL, lease_until = NULL, updated_at = clock_timestamp()
WHERE name = $1`

	lockSubscription = `SELECT name FROM {{schema}}.subscriptions WHERE name = $1 FOR UPDATE`

	status = `SELECT s.name, s.cursor_xid, s.cursor_position, s.floor_position, cardinality(s.held), s.delivered,
    coalesce(s.owner, ''), s.lease_until, s.fence, s.state, coalesce(s.last_error, ''),
    s.error_position, coalesce(s.error_stream, ''), coalesce(s.error_version, 0), coalesce(s.error_type, ''),
    s.updated_at, cardinality(s.held) + (SELECT count(*) FROM {{schema}}.events e
        WHERE (e.xid, e.position) > (s.cursor_xid, s.cursor_position) AND e.position > s.floor_position
        AND (s.categories IS NULL OR e.category = ANY(s.categories)))
FROM {{schema}}.subscriptions s WHERE s.name = $1`
)

type queries struct {
	readBatch, readBatchCategories, readPositions, selectPosition string
	acquire, renew, release, checkpoint, halt                     string
	resume, reset, toWatermark, lockSubscription, status          string
}

func newQueries(schema string) queries {
	fill := strings.NewReplacer("{{schema}}", pgx.Identifier{schema}.Sanitize()).Replace
	return queries{
		readBatch:           fill(readBatch),
		readBatchCategories: fill(readBatchCategories),
		readPositions:       fill(readPositions),
		selectPosition:      fill(selectPosition),
		acquire:             fill(acquire),
		renew:               fill(renew),
		release:             fill(release),
		checkpoint:          fill(checkpoint),
		halt:                fill(halt),
		resume:              fill(resume),
		reset:               fill(reset),
		toWatermark:         fill(toWatermark),
		lockSubscription:    fill(lockSubscription),
		status:              fill(status),
	}
}
