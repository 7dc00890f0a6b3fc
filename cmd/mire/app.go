package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgschema"
	"github.com/spf13/cobra"
)

// app holds the global flags and the connection the commands share.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	databaseURL string
	schema      string
	json        bool

	ran   bool // a command's RunE started: its errors are not usage errors
	pool  *pgxpool.Pool
	store *mire.Store
}

const rootLong = `mire is the operator's tool for a mire event store in PostgreSQL: it
migrates the schema, shows streams and events, reports and administers
projections, and exports and imports the log.

It connects with --database-url, or the DATABASE_URL environment variable,
to the schema given by --schema (default "mire").

Output is for people by default; --json gives JSON for scripts (one
document, or one object per line for export and tail).

Exit codes: 0 success, 1 error, 2 usage error (an unknown command, flag or
argument, or no database given).`

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "mire",
		Short:         "Operate a mire event store: migrate, inspect, administer projections",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			a.ran = true
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	flags := root.PersistentFlags()
	flags.StringVar(&a.databaseURL, "database-url", "", "PostgreSQL connection URL (defaults to $DATABASE_URL)")
	flags.StringVar(&a.schema, "schema", pgschema.SchemaDefault, "the Postgres schema holding mire's tables")
	flags.BoolVar(&a.json, "json", false, "print JSON for scripts instead of text")
	root.AddCommand(
		a.migrateCommand(),
		a.versionCommand(),
		a.streamsCommand(),
		a.showCommand(),
		a.projectionsCommand(),
		a.sagasCommand(),
		a.exportCommand(),
		a.importCommand(),
		a.tailCommand(),
	)
	return root
}

// connect opens the pool and the store, once.
func (a *app) connect(ctx context.Context) (*mire.Store, error) {
	if a.store != nil {
		return a.store, nil
	}
	url := a.databaseURL
	if url == "" {
		url = envDatabaseURL()
	}
	if url == "" {
		return nil, usagef("no database: pass --database-url or set DATABASE_URL")
	}
	if err := pgschema.ValidateSchema(a.schema); err != nil {
		return nil, usageError{err}
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, usagef("bad database URL: %v", err)
	}
	mire.ConfigurePool(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to the database: %w", err)
	}
	store, err := mire.New(pool, &mire.Config{Schema: a.schema, Registry: mire.NewRegistry()})
	if err != nil {
		pool.Close()
		return nil, err
	}
	a.pool, a.store = pool, store
	return store, nil
}

// connectMigrated is connect for commands that need the schema in place:
// an unmigrated or outdated schema is an error that says what to do.
func (a *app) connectMigrated(ctx context.Context) (*mire.Store, error) {
	store, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	current, err := pgschema.Current(ctx, a.pool, a.schema)
	if err != nil {
		return nil, err
	}
	switch {
	case current == 0:
		return nil, fmt.Errorf("schema %q is not migrated: run `mire migrate` (or apply `mire migrate --print`)", a.schema)
	case current < pgschema.Latest():
		return nil, fmt.Errorf("schema %q is at migration %d, behind this mire's %d: run `mire migrate`", a.schema, current, pgschema.Latest())
	}
	return store, nil
}

func (a *app) close() {
	if a.store != nil {
		a.store.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
}

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func envDatabaseURL() string { return os.Getenv("DATABASE_URL") }
