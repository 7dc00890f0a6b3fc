// Package pgschema holds mire's PostgreSQL schema as embedded, numbered SQL
// migrations, and the migrator that applies them.
//
// # Migrating
//
// Call [Migrate] at boot from every replica; it is safe to run concurrently
// and a current schema costs one query:
//
//	if err := pgschema.Migrate(ctx, pool, pgschema.SchemaDefault); err != nil { ... }
//
// mire.Store.Migrate calls it with the store's schema.
//
// # Schema names
//
// A schema name is quoted, so any valid UTF-8 without control characters or
// double quotes will do, up to [MaxSchemaLength] bytes: the schema's NOTIFY
// channel ([NotifyChannel]) must fit in a Postgres identifier too. Names
// starting with "pg_" are Postgres's own. [ValidateSchema] checks a name;
// [Migrate], [Current] and mire.New refuse one it rejects.
//
// # Objects
//
// All objects live in one schema (default "mire"): streams (one row per
// stream with its version), events (the log, ordered by a global position
// and by the writing transaction's xid8), snapshots, and schema_migrations
// (one row per applied migration).
package pgschema
