package projections

import (
	"fmt"
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
	// A stream's first append has no previous one: its prev_xid, NULL,
	// reads as 0.
	rowColumns = `e.xid, coalesce(e.prev_xid, '0'::xid8), ` + bridge.EnvelopeColumns + `, e.append_size`

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

	// In a partitioned projection's queries, {{partition}} limits the rows
	// to one partition (the last parameter of the heads queries, the
	// subscription row's partition in lag), through the partition
	// expression its index holds (see partitionIndex); in an unpartitioned
	// one it is empty.
	headsWhere = `SELECT ` + rowColumns + ` FROM {{schema}}.events e
WHERE e.append_size > 0 {{partition}}AND (e.xid, e.position) > ($1::xid8, $2::bigint - 1)
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
    WHERE h.append_size > 0 {{partition}}AND h.xid > s.cursor_xid AND (h.position > s.floor_position OR s.floor_position = 0)
    AND (s.categories IS NULL OR h.category = ANY(s.categories)))
+ (SELECT coalesce(sum(h.append_size), 0) FROM {{schema}}.events h
    WHERE h.append_size > 0 {{partition}}AND h.xid = s.cursor_xid AND h.position > s.cursor_position
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

	// acquire takes the lease of partition $2 ($3 owner, $4 TTL in
	// seconds) if it is free, expired, or already this owner's, raising
	// the fence; it returns no row when another owner holds a live lease,
	// or when the projection is stored with another partition count than
	// $6 (a Rebuild changed it under this runner). The rows exist: prepare
	// creates them.
	acquire = `UPDATE {{schema}}.subscriptions AS s
SET owner = $3, lease_until = clock_timestamp() + $4::float8 * interval '1 second',
    fence = s.fence + 1, categories = $5::text[], updated_at = clock_timestamp()
WHERE s.name = $1 AND s.partition = $2 AND s.partitions = $6
AND (s.owner IS NULL OR s.lease_until < clock_timestamp() OR s.owner = $3)
RETURNING ` + subscriptionColumns

	renew = `UPDATE {{schema}}.subscriptions
SET lease_until = clock_timestamp() + $3::float8 * interval '1 second'
WHERE name = $1 AND fence = $2 AND partition = $4 RETURNING state`

	release = `UPDATE {{schema}}.subscriptions SET owner = NULL, lease_until = NULL
WHERE name = $1 AND fence = $2 AND partition = $3`

	// partitionsOf returns how many rows projection $1 has and the
	// partition counts they were created with.
	partitionsOf = `SELECT count(*), coalesce(min(partitions), 0), coalesce(max(partitions), 0)
FROM {{schema}}.subscriptions WHERE name = $1`

	// createPartitions creates the rows of projection $1's $2 partitions
	// (categories $3, fence $4), under the admin lock (see prepare). A
	// Rebuild that changes the count starts the fence above the old rows',
	// so that no worker of the old count can checkpoint into the new rows.
	createPartitions = `INSERT INTO {{schema}}.subscriptions (name, partition, partitions, categories, fence)
SELECT $1, g, $2, $3::text[], $4 FROM generate_series(0, $2 - 1) AS g
ON CONFLICT (name, partition) DO NOTHING`

	// deletePartitions removes projection $1's rows, for a Rebuild that
	// changes its partition count.
	deletePartitions = `DELETE FROM {{schema}}.subscriptions WHERE name = $1`
	maxFence         = `SELECT coalesce(max(fence), 0) FROM {{schema}}.subscriptions WHERE name = $1`

	// batchLock begins a batch's transaction and takes the projection's
	// advisory lock (%d: its lockKey), shared, before the handlers write;
	// adminLock ($1: the lockKey) takes it exclusive in an admin
	// transaction before it clears the read model. An admin operation so
	// waits for the batches in flight and new batches wait for it, whatever
	// tables the read model spans and in whatever order the handlers and
	// Truncate touch them: they cannot deadlock. Unlike a lock on the
	// subscription row, it does not stand in the way of a takeover: a
	// worker paused in its handler holds only a shared lock, which its
	// successor's batches share. batchLock is sent as pgx's BeginQuery, in
	// the simple protocol, so BEGIN and the lock take one round trip.
	batchLock = `BEGIN; SELECT pg_advisory_xact_lock_shared(%d)`
	adminLock = `SELECT pg_advisory_xact_lock($1)`

	// checkpoint moves the cursor inside the batch's transaction, only while
	// the fence is still this worker's; it also extends the lease.
	checkpoint = `UPDATE {{schema}}.subscriptions
SET cursor_xid = $3, cursor_position = $4, held = $5, delivered = delivered + $6,
    lease_until = clock_timestamp() + $7::float8 * interval '1 second', updated_at = clock_timestamp()
WHERE name = $1 AND fence = $2 AND partition = $8`

	halt = `UPDATE {{schema}}.subscriptions
SET state = 'halted', last_error = $3, error_position = $4, error_stream = $5, error_version = $6,
    error_type = $7, updated_at = clock_timestamp()
WHERE name = $1 AND fence = $2 AND partition = $8`

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

	// lockSubscription locks the rows of projection $1 (one per
	// partition) and counts them.
	lockSubscription = `SELECT count(*) FROM (SELECT 1 FROM {{schema}}.subscriptions WHERE name = $1 FOR UPDATE) AS l`

	// lagSeconds is the time since the events at cursor positions $1 (one
	// per partition that has events waiting; 0 before the first, the log's
	// first event) were recorded: the longest of them.
	lagSeconds = `SELECT coalesce(max(extract(epoch FROM now() - coalesce(
    (SELECT recorded_at FROM {{schema}}.events WHERE position = c.position),
    (SELECT recorded_at FROM {{schema}}.events ORDER BY position LIMIT 1),
    now()))), 0)::float8
FROM unnest($1::bigint[]) AS c(position)`

	status = `SELECT s.name, s.partition, s.partitions, s.cursor_xid, s.cursor_position, s.floor_position, cardinality(s.held), s.delivered,
    coalesce(s.owner, ''), s.lease_until, s.fence, s.state, coalesce(s.last_error, ''),
    s.error_position, coalesce(s.error_stream, ''), coalesce(s.error_version, 0), coalesce(s.error_type, ''),
    s.updated_at, cardinality(s.held) + ` + lag + `
FROM {{schema}}.subscriptions s WHERE s.name = $1 ORDER BY s.partition`

	// heartbeat renews runner $2's membership of projection $1 for $3
	// seconds, forgets members whose heartbeat has lapsed, and returns the
	// live members in name order (this one included) and what
	// partitionsOf returns.
	heartbeat = `WITH hb AS (
    INSERT INTO {{schema}}.subscription_members AS m (name, owner, alive_until)
    VALUES ($1, $2, clock_timestamp() + $3::float8 * interval '1 second')
    ON CONFLICT (name, owner) DO UPDATE SET alive_until = EXCLUDED.alive_until
    RETURNING m.owner),
gone AS (
    DELETE FROM {{schema}}.subscription_members
    WHERE name = $1 AND owner <> $2 AND alive_until < clock_timestamp())
SELECT ARRAY(SELECT owner FROM {{schema}}.subscription_members
        WHERE name = $1 AND owner <> $2 AND alive_until >= clock_timestamp()
    UNION SELECT owner FROM hb ORDER BY 1),
    p.count, p.lo, p.hi
FROM (SELECT count(*)::int AS count, coalesce(min(partitions), 0) AS lo, coalesce(max(partitions), 0) AS hi
    FROM {{schema}}.subscriptions WHERE name = $1) AS p`

	// leave ends runner $2's membership of projection $1 and tells the
	// other members on channel $3 (payload $4) to take its share.
	leave = `WITH d AS (DELETE FROM {{schema}}.subscription_members WHERE name = $1 AND owner = $2)
SELECT pg_notify($3, $4)`

	// announce tells the members of a projection, on channel $1 (payload
	// $2), that its membership or its leases changed.
	announce = `SELECT pg_notify($1, $2)`

	// partitionIndex is the index a partitioned projection of {{n}}
	// partitions reads its heads through: the heads of each partition in
	// (xid, position) order. CREATE INDEX CONCURRENTLY does not block
	// writers. {{index}} is its name (partitionIndexName), {{name}} that name
	// schema-qualified.
	partitionIndex = `CREATE INDEX CONCURRENTLY IF NOT EXISTS {{index}}
ON {{schema}}.events (((hashtext(stream_id) & 2147483647) % {{n}}), xid, position) WHERE append_size > 0`

	// partitionIndexValid reports whether the index $1 (schema-qualified)
	// exists and is valid (a CREATE INDEX CONCURRENTLY that failed leaves
	// an invalid one behind).
	partitionIndexValid = `SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)), false)`
	dropPartitionIndex  = `DROP INDEX CONCURRENTLY IF EXISTS {{name}}`

	// The lock that queues concurrent MigratePartitions calls ($1 the
	// schema, $2 the partition count). It is tried, not waited for: CREATE
	// INDEX CONCURRENTLY waits for every transaction in flight to end, the
	// statement of a session waiting for the lock included, which would
	// deadlock.
	lockPartitionIndex   = `SELECT pg_try_advisory_lock(hashtextextended('mire.partitions:' || $1 || ':' || $2::int, 0))`
	unlockPartitionIndex = `SELECT pg_advisory_unlock(hashtextextended('mire.partitions:' || $1 || ':' || $2::int, 0))`
)

// The payload of the notifications that wake runners to rebalance a
// partitioned projection (announce, leave): rebalancePrefix + its name.
// The store's own notifications, for new events, carry an empty payload.
const rebalancePrefix = "mire.rebalance:"

// partitionExpr is the partition of the stream of the event row alias in
// a projection of n partitions: what partitionIndex indexes.
func partitionExpr(alias string, n int) string {
	return fmt.Sprintf("(hashtext(%s.stream_id) & 2147483647) %% %d", alias, n)
}

// partitionIndexName is the name of partitionIndex for n partitions.
func partitionIndexName(n int) string { return fmt.Sprintf("events_heads_p%d_idx", n) }

type queries struct {
	readHeads, readHeadsCategories, readRest, readPositions, selectPosition, cursorHead    string
	acquire, renew, release, adminLock, checkpoint, halt                                   string
	resume, reset, toWatermark, lockSubscription, status, lagSeconds                       string
	partitionsOf, createPartitions, deletePartitions, maxFence, heartbeat, leave, announce string
}

// queryCache holds the runtime SQL of each schema and partition count in
// use: map[queryKey]*queries. Runners and the admin functions share it, so
// the SQL is filled in once per schema, not per call.
var queryCache sync.Map

type queryKey struct {
	schema     string
	partitions int
}

// queriesFor returns the runtime SQL of schema, filled in on first use,
// for unpartitioned projections (and the statements every projection
// shares).
func queriesFor(schema string) *queries { return partitionQueriesFor(schema, 1) }

// partitionQueriesFor returns the runtime SQL of schema for projections
// of n partitions: the readers' and the status's queries are limited to
// one partition.
func partitionQueriesFor(schema string, n int) *queries {
	key := queryKey{schema, n}
	if q, ok := queryCache.Load(key); ok {
		return q.(*queries)
	}
	q, _ := queryCache.LoadOrStore(key, newQueries(schema, n))
	return q.(*queries)
}

func newQueries(schema string, n int) *queries {
	fill := strings.NewReplacer("{{schema}}", pgx.Identifier{schema}.Sanitize()).Replace
	// in limits a query to a partition: the one in parameter param, or the
	// subscription row's.
	in := func(sql, alias, param string) string {
		part := ""
		if n > 1 {
			part = fmt.Sprintf("AND %s = %s ", partitionExpr(alias, n), param)
		}
		return strings.ReplaceAll(sql, "{{partition}}", part)
	}
	return &queries{
		readHeads:           fill(in(readHeads, "e", "$5::int")),
		readHeadsCategories: fill(in(readHeadsCategories, "e", "$6::int")),
		readRest:            fill(readRest),
		cursorHead:          fill(cursorHead),
		readPositions:       fill(readPositions),
		selectPosition:      fill(selectPosition),
		acquire:             fill(acquire),
		renew:               fill(renew),
		release:             fill(release),
		adminLock:           adminLock,
		checkpoint:          fill(checkpoint),
		halt:                fill(halt),
		resume:              fill(resume),
		reset:               fill(reset),
		toWatermark:         fill(toWatermark),
		lockSubscription:    fill(lockSubscription),
		status:              fill(in(status, "h", "s.partition")),
		lagSeconds:          fill(lagSeconds),
		partitionsOf:        fill(partitionsOf),
		createPartitions:    fill(createPartitions),
		deletePartitions:    fill(deletePartitions),
		maxFence:            fill(maxFence),
		heartbeat:           fill(heartbeat),
		leave:               fill(leave),
		announce:            announce,
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
