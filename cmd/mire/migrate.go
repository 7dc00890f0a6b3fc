package main

import (
	"fmt"
	"runtime/debug"

	"github.com/mire-go/mire/pgschema"
	"github.com/mire-go/mire/projections"
	"github.com/spf13/cobra"
)

func (a *app) migrateCommand() *cobra.Command {
	var print bool
	var from int
	var partitions []int
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply mire's schema migrations, or print their SQL",
		Long: `migrate brings the schema up to this mire's latest migration. It is safe
to run while applications run, and from several places at once: migrators
queue on an advisory lock and each migration is applied once, in its own
transaction.

With --print it connects to nothing and prints the SQL instead, for teams
that apply migrations with their own tool; --from N prints only the
migrations after version N (see ` + "`mire version`" + `).

--partitions N (repeatable) also creates the index that projections of N
partitions read through (projections.MigratePartitions), concurrently, so
writers are not blocked; with --print it prints that statement, which must
run outside a transaction.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if print {
				script, err := pgschema.Script(a.schema, from)
				if err != nil {
					return usageError{err}
				}
				for _, n := range partitions {
					script += fmt.Sprintf("\n-- The index of projections of %d partitions (outside a transaction).\n%s;\n",
						n, projections.PartitionsScript(a.schema, n))
				}
				_, err = fmt.Fprint(a.stdout, script)
				return err
			}
			if cmd.Flags().Changed("from") {
				return usagef("--from goes with --print")
			}
			for _, n := range partitions {
				if n < 2 || n > projections.MaxPartitions {
					return usagef("--partitions %d: a partitioned projection has 2 to %d partitions", n, projections.MaxPartitions)
				}
			}
			ctx := cmd.Context()
			store, err := a.connect(ctx)
			if err != nil {
				return err
			}
			before, err := pgschema.Current(ctx, a.pool, a.schema)
			if err != nil {
				return err
			}
			if err := pgschema.Migrate(ctx, a.pool, a.schema); err != nil {
				return err
			}
			after, err := pgschema.Current(ctx, a.pool, a.schema)
			if err != nil {
				return err
			}
			for _, n := range partitions {
				if err := projections.MigratePartitions(ctx, store, n); err != nil {
					return err
				}
			}
			if a.json {
				return a.printJSON(map[string]any{"schema": a.schema, "from": before, "to": after, "applied": max(after-before, 0),
					"partitions": orEmpty(partitions)})
			}
			if after == before {
				_, err = fmt.Fprintf(a.stdout, "Schema %q is up to date at migration %d.\n", a.schema, after)
			} else {
				_, err = fmt.Fprintf(a.stdout, "Migrated schema %q from %d to %d.\n", a.schema, before, after)
			}
			for _, n := range partitions {
				if err == nil {
					_, err = fmt.Fprintf(a.stdout, "The index of projections of %d partitions is in place.\n", n)
				}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&print, "print", false, "print the migrations' SQL instead of applying it (connects to nothing)")
	cmd.Flags().IntVar(&from, "from", 0, "with --print, only the migrations after this version")
	cmd.Flags().IntSliceVar(&partitions, "partitions", nil, "also create the index of projections of N partitions (repeatable)")
	return cmd
}

// versionInfo is what `mire version` reports.
type versionInfo struct {
	Binary  string `json:"binary"`
	Schema  string `json:"schema"`
	Current *int   `json:"current,omitempty"` // nil when no database was given
	Latest  int    `json:"latest"`
	State   string `json:"state,omitempty"` // "current", "behind", "ahead", "not migrated"
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the binary's version and the schema's migration version",
		Long: `version prints this binary's module version and, when a database is given,
the schema's current migration version against the latest this binary
knows. A schema that is behind needs ` + "`mire migrate`" + `; one that is ahead was
migrated by a newer mire, and this binary should be upgraded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info := versionInfo{Binary: binaryVersion(), Schema: a.schema, Latest: pgschema.Latest()}
			if a.databaseURL != "" || envDatabaseURL() != "" {
				if _, err := a.connect(cmd.Context()); err != nil {
					return err
				}
				current, err := pgschema.Current(cmd.Context(), a.pool, a.schema)
				if err != nil {
					return err
				}
				info.Current = &current
				switch {
				case current == 0:
					info.State = "not migrated"
				case current < info.Latest:
					info.State = "behind"
				case current > info.Latest:
					info.State = "ahead"
				default:
					info.State = "current"
				}
			}
			if a.json {
				return a.printJSON(info)
			}
			fmt.Fprintf(a.stdout, "mire %s\n", info.Binary)
			if info.Current == nil {
				fmt.Fprintf(a.stdout, "latest migration: %d (no database given)\n", info.Latest)
				return nil
			}
			fmt.Fprintf(a.stdout, "schema %q: migration %d of %d", info.Schema, *info.Current, info.Latest)
			switch info.State {
			case "not migrated":
				fmt.Fprintln(a.stdout, ", not migrated: run `mire migrate`")
			case "behind":
				fmt.Fprintln(a.stdout, ", behind: run `mire migrate`")
			case "ahead":
				fmt.Fprintln(a.stdout, ", ahead: a newer mire migrated it; upgrade this binary")
			default:
				fmt.Fprintln(a.stdout, ", up to date")
			}
			return nil
		},
	}
}

// binaryVersion is the module version this binary was built from:
// "v1.2.3" when installed with go install ...@version, "(devel)" in a
// checkout.
func binaryVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}
