package pgschema

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire/internal/pgerr"
)

// SchemaDefault is the Postgres schema mire's objects live in unless another
// is given.
const SchemaDefault = "mire"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one numbered, embedded SQL file.
type Migration struct {
	Version int    // from the file name's numeric prefix, starting at 1
	Name    string // the file name without prefix and extension
	SQL     string // the statements, with {{schema}} still in place
}

var migrations = mustLoad()

func mustLoad() []Migration {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		panic(err)
	}
	var out []Migration
	for i, e := range entries {
		prefix, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		version, err := strconv.Atoi(prefix)
		if !ok || err != nil || version != i+1 {
			panic(fmt.Sprintf("pgschema: migration %s: want the name NNNN_name.sql numbered from 1 without a gap", e.Name()))
		}
		sql, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			panic(err)
		}
		out = append(out, Migration{Version: version, Name: name, SQL: string(sql)})
	}
	return out
}

// Migrations returns every embedded migration in order.
func Migrations() []Migration { return append([]Migration(nil), migrations...) }

// Latest returns the version of the newest embedded migration.
func Latest() int { return migrations[len(migrations)-1].Version }

// Render returns the migration's SQL for the given schema, quoted.
func (m Migration) Render(schema string) string { return fill(schema, m.SQL) }

// MaxSchemaLength is the longest schema name accepted, in bytes. Postgres
// identifiers are at most 63 bytes (longer ones are cut short, or refused),
// and the longest identifier mire derives from the schema name, its
// LISTEN/NOTIFY channel (NotifyChannel), must fit too.
const MaxSchemaLength = maxIdentifierLength - len(channelPrefix)

// maxIdentifierLength is Postgres's limit on identifiers: NAMEDATALEN - 1.
const maxIdentifierLength = 63

// channelPrefix starts the NOTIFY channel of every schema.
const channelPrefix = "mire_events:"

// NotifyChannel returns the LISTEN/NOTIFY channel on which mire announces
// events committed in schema.
func NotifyChannel(schema string) string { return channelPrefix + schema }

// ValidateSchema reports whether name can be used as mire's schema name: 1
// to MaxSchemaLength bytes of valid UTF-8, without control characters or
// double quotes, and not starting with "pg_", which Postgres reserves.
func ValidateSchema(name string) error {
	switch {
	case name == "" || len(name) > MaxSchemaLength:
		return fmt.Errorf("pgschema: schema name %q is %d bytes, but must be 1 to %d bytes (its NOTIFY channel, %q + the name, must fit in Postgres's %d-byte identifiers)",
			name, len(name), MaxSchemaLength, channelPrefix, maxIdentifierLength)
	case !utf8.ValidString(name):
		return fmt.Errorf("pgschema: schema name %q is not valid UTF-8", name)
	case strings.HasPrefix(name, "pg_"):
		return fmt.Errorf("pgschema: schema name %q starts with \"pg_\", which Postgres reserves for system schemas", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '"' {
			return fmt.Errorf("pgschema: schema name %q contains %q", name, r)
		}
	}
	return nil
}

// Current returns the newest migration version applied in schema, or 0 if
// mire has never been migrated there. A name ValidateSchema refuses is an
// error.
func Current(ctx context.Context, pool *pgxpool.Pool, schema string) (int, error) {
	if err := ValidateSchema(schema); err != nil {
		return 0, err
	}
	var version int
	err := pool.QueryRow(ctx, fill(schema, selectCurrent)).Scan(&version)
	if pgerr.NotMigrated(err) {
		return 0, nil // undefined table or schema: never migrated
	}
	if err != nil {
		return 0, fmt.Errorf("pgschema: read applied version in schema %q: %w", schema, err)
	}
	return version, nil
}

// Migrate brings schema up to the latest embedded migration. Many processes
// may call it at once: they queue on a Postgres advisory lock and each
// migration is applied once, in its own transaction with its version row. A
// schema that is already current takes a fast path of one query, with no
// advisory or DDL lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	if err := ValidateSchema(schema); err != nil {
		return err
	}
	current, err := Current(ctx, pool, schema)
	if err != nil {
		return err
	}
	if current >= Latest() {
		return nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgschema: migrate schema %q: %w", schema, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, lockMigrations, schema); err != nil {
		return fmt.Errorf("pgschema: migrate schema %q: take advisory lock: %w", schema, err)
	}
	defer func() {
		// Unlock even when ctx is cancelled; if that fails, drop the connection
		// so the session-level lock goes with it.
		if _, err := conn.Exec(context.WithoutCancel(ctx), unlockMigrations, schema); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	return apply(ctx, conn.Conn(), schema)
}

// apply runs the missing migrations; the caller holds the advisory lock.
func apply(ctx context.Context, conn *pgx.Conn, schema string) error {
	for _, stmt := range []string{createSchema, createVersionTable} {
		if _, err := conn.Exec(ctx, fill(schema, stmt)); err != nil {
			return fmt.Errorf("pgschema: migrate schema %q: %w", schema, err)
		}
	}
	var current int
	if err := conn.QueryRow(ctx, fill(schema, selectCurrent)).Scan(&current); err != nil {
		return fmt.Errorf("pgschema: migrate schema %q: %w", schema, err)
	}
	for _, m := range migrations[current:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.Render(schema)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, fill(schema, insertVersion), m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("pgschema: migrate schema %q: apply %04d_%s: %w", schema, m.Version, m.Name, err)
		}
	}
	return nil
}
