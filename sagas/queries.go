package sagas

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// The package's runtime SQL, with {{schema}} standing for the store's
// quoted schema; queriesFor fills it in.
const (
	insertTimer = `INSERT INTO {{schema}}.saga_timers (saga, instance_id, step, attempt, due_at)
		VALUES ($1, $2, $3, $4, now() + $5::interval) ON CONFLICT DO NOTHING`
	// The step's timers that no timer loop is firing: one being fired is
	// left, and its TimedOut is then ignored as stale, so a settling step
	// never waits for the loop (which waits for the instance's lock).
	deleteTimers = `DELETE FROM {{schema}}.saga_timers WHERE (saga, instance_id, step, attempt) IN (
		SELECT saga, instance_id, step, attempt FROM {{schema}}.saga_timers
		WHERE saga = $1 AND instance_id = $2 AND step = $3 FOR UPDATE SKIP LOCKED)`
	selectDueTimers = `SELECT saga, instance_id, step, attempt FROM {{schema}}.saga_timers
		WHERE saga = ANY($1) AND due_at <= now() ORDER BY due_at LIMIT $2`
	claimTimer = `SELECT 1 FROM {{schema}}.saga_timers
		WHERE saga = $1 AND instance_id = $2 AND step = $3 AND attempt = $4 FOR UPDATE SKIP LOCKED`
	deleteTimer = `DELETE FROM {{schema}}.saga_timers
		WHERE saga = $1 AND instance_id = $2 AND step = $3 AND attempt = $4`
	upsertInstance = `INSERT INTO {{schema}}.saga_instances (saga, instance_id, status, step, reason, version)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (saga, instance_id) DO UPDATE SET status = $3, step = $4, reason = $5, version = $6, updated_at = now()`
	selectInstances = `SELECT instance_id, status, step, reason, version, started_at, updated_at
		FROM {{schema}}.saga_instances
		WHERE saga = $1 AND ($2 = '' OR status = $2) AND instance_id > $3
		ORDER BY instance_id LIMIT $4`
	countInstances    = `SELECT status, count(*) FROM {{schema}}.saga_instances WHERE saga = $1 GROUP BY status`
	selectEventStream = `SELECT stream_id FROM {{schema}}.events WHERE event_id = $1`
)

// queries is the SQL above for one schema.
type queries struct {
	insertTimer, deleteTimers, selectDueTimers, claimTimer, deleteTimer string
	upsertInstance, selectInstances, countInstances, selectEventStream  string
}

func queriesFor(schema string) *queries {
	q := pgx.Identifier{schema}.Sanitize()
	f := func(sql string) string { return strings.ReplaceAll(sql, "{{schema}}", q) }
	return &queries{
		insertTimer: f(insertTimer), deleteTimers: f(deleteTimers), selectDueTimers: f(selectDueTimers),
		claimTimer: f(claimTimer), deleteTimer: f(deleteTimer), upsertInstance: f(upsertInstance),
		selectInstances: f(selectInstances), countInstances: f(countInstances), selectEventStream: f(selectEventStream),
	}
}
