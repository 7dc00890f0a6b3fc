package pgschema

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// The migrator's runtime SQL, with {{schema}} standing for the quoted
// schema name, as in the migrations; fill puts the schema in.
const (
	selectCurrent = `SELECT coalesce(max(version), 0) FROM {{schema}}.schema_migrations`

	// The advisory lock that queues concurrent migrators of one schema
	// ($1, the schema name, unquoted).
	lockMigrations   = `SELECT pg_advisory_lock(hashtextextended('mire.migrate:' || $1, 0))`
	unlockMigrations = `SELECT pg_advisory_unlock(hashtextextended('mire.migrate:' || $1, 0))`

	createSchema       = `CREATE SCHEMA IF NOT EXISTS {{schema}}`
	createVersionTable = `CREATE TABLE IF NOT EXISTS {{schema}}.schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`
	insertVersion = `INSERT INTO {{schema}}.schema_migrations (version, name) VALUES ($1, $2)`
)

// fill returns sql (a constant above or a migration) with schema, quoted,
// in place of {{schema}}.
func fill(schema, sql string) string {
	return strings.ReplaceAll(sql, "{{schema}}", pgx.Identifier{schema}.Sanitize())
}
