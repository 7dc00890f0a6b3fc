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
	selectProjections = `
SELECT s.name, (
	SELECT e.recorded_at FROM {{schema}}.events e
	WHERE e.position > greatest(s.cursor_position, s.floor_position)
	  AND (s.categories IS NULL OR e.category = ANY (s.categories))
	ORDER BY e.position LIMIT 1)
FROM {{schema}}.subscriptions s
ORDER BY s.name`
)

// fill returns sql with schema, quoted, in place of {{schema}}.
func fill(schema, sql string) string {
	return strings.ReplaceAll(sql, "{{schema}}", pgx.Identifier{schema}.Sanitize())
}
