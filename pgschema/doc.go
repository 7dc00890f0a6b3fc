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
// # Objects
//
// All objects live in one schema (default "mire"): streams (one row per
// stream with its version), events (the log, ordered by a global position
// and by the writing transaction's xid8), snapshots, and schema_migrations
// (one row per applied migration).
package pgschema
