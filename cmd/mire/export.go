package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire/pgschema"
	"github.com/spf13/cobra"
)

// importBatchSize is how many events import writes per transaction.
const importBatchSize = 1000

// progressEvery is how often (in events) export and import report
// progress on stderr.
const progressEvery = 10_000

const exportLong = `export writes the log (or one category's streams) to stdout as JSON lines,
one event per line in position order, keeping each event's stream id,
version, category, id, type, schema version, data, metadata and recording
time:

  mire export > log.jsonl
  mire export --category account > accounts.jsonl

The dump is one consistent snapshot: the log as it stood when the export
began, whatever writers do meanwhile. Progress goes to stderr.
` + "`mire import`" + ` reads the file back.`

func (a *app) exportCommand() *cobra.Command {
	var category string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the log to stdout as JSON lines, one event per line",
		Long:  exportLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if _, err := a.connectMigrated(ctx); err != nil {
				return err
			}
			out := bufio.NewWriter(a.stdout)
			enc := json.NewEncoder(out)
			// One snapshot: positions commit out of order, so paging by
			// position while writers run could pass an event whose
			// transaction commits later. In one repeatable-read snapshot
			// the dump is the log at one instant, and rows stream in as
			// they are written out. (Read-only, it takes no transaction
			// id, so it delays no projection.)
			var n int64
			err := pgx.BeginTxFunc(ctx, a.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
				rows, err := tx.Query(ctx, fill(a.schema, selectExport), nullable(category))
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					e, err := scanEvent(rows)
					if err != nil {
						return err
					}
					if err := enc.Encode(e); err != nil {
						return err
					}
					if n++; n%progressEvery == 0 {
						fmt.Fprintf(a.stderr, "exported %d events...\n", n)
					}
				}
				return rows.Err()
			})
			if err != nil {
				return fmt.Errorf("export (after %d events): %w", n, err)
			}
			if err := out.Flush(); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			fmt.Fprintf(a.stderr, "Exported %d events.\n", n)
			return nil
		},
	}
	cmd.Flags().StringVar(&category, "category", "", "only this category's streams")
	return cmd
}

const importLong = `import reads events written by ` + "`mire export`" + ` from stdin and stores them,
keeping their stream ids, versions, ids, types, schema versions, data,
metadata and recording times (the log's positions are the target's own):

  mire import < log.jsonl

It writes raw rows with its own SQL, as the store's appends do, so that
recording times survive (an application's Append cannot set them), and it
needs no Go types. It is idempotent: an event whose id is stored already is
skipped, so an import that stopped half-way can be run again. Each stream's
events must follow on from what the target holds: an event whose stream is
at another version is an error, and the events before it stay imported.
Events are written in transactions of 1000. At the end it analyzes the
events table, so projections catching up on the imported events are
planned on statistics that count them.

Projections that run on the target afterwards see the imported events as
new and deliver them. Read models restored from the source's database
already hold them: run ` + "`mire projections move-to-watermark NAME`" + ` for each such
projection, before writers start again.`

// importStats is what `mire import` reports.
type importStats struct {
	Read     int64 `json:"read"`
	Imported int64 `json:"imported"`
	Skipped  int64 `json:"skipped"` // stored already
}

func (a *app) importCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "import",
		Short: "Store events exported by `mire export`, read from stdin; safe to re-run",
		Long:  importLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if _, err := a.connectMigrated(ctx); err != nil {
				return err
			}
			stats, err := a.importEvents(ctx, a.stdin)
			if stats.Imported > 0 {
				if _, aerr := a.pool.Exec(ctx, fill(a.schema, analyzeEvents)); aerr != nil {
					// Only a cost: autovacuum analyzes it later.
					fmt.Fprintf(a.stderr, "warning: could not analyze the events table (projections may catch up slowly until autovacuum does): %v\n", aerr)
				}
				// Wake the runners, as the store's writes do.
				_, _ = a.pool.Exec(ctx, notify, pgschema.NotifyChannel(a.schema))
			}
			if err != nil {
				fmt.Fprintf(a.stderr, "Imported %d events (%d stored already) before the error.\n", stats.Imported, stats.Skipped)
				return err
			}
			if a.json {
				return a.printJSON(stats)
			}
			fmt.Fprintf(a.stdout, "Imported %d events; %d were stored already.\n", stats.Imported, stats.Skipped)
			if stats.Imported > 0 {
				fmt.Fprintln(a.stdout, "Projections on this database deliver them as new events. If you restored read models\n"+
					"that already hold them, run `mire projections move-to-watermark NAME` for each, before writers start.")
			}
			return nil
		},
	}
}

// importEvents reads JSON lines from r and stores them, a batch per
// transaction.
func (a *app) importEvents(ctx context.Context, r io.Reader) (importStats, error) {
	var stats importStats
	dec := json.NewDecoder(bufio.NewReader(r))
	dec.DisallowUnknownFields()
	batch := make([]eventRecord, 0, importBatchSize)
	for {
		var e eventRecord
		err := dec.Decode(&e)
		if err != nil && !errors.Is(err, io.EOF) {
			return stats, fmt.Errorf("import: line %d: %w (is it the output of `mire export`?)", stats.Read+1, err)
		}
		if err == nil {
			stats.Read++
			if err := e.check(); err != nil {
				return stats, fmt.Errorf("import: line %d: %w", stats.Read, err)
			}
			batch = append(batch, e)
		}
		if len(batch) == importBatchSize || (errors.Is(err, io.EOF) && len(batch) > 0) {
			first := stats.Read - int64(len(batch)) + 1
			imported, skipped, berr := a.importBatch(ctx, batch, first)
			stats.Imported += imported
			stats.Skipped += skipped
			if berr != nil {
				return stats, berr
			}
			if stats.Read/progressEvery != (stats.Read-int64(len(batch)))/progressEvery {
				fmt.Fprintf(a.stderr, "imported %d events...\n", stats.Imported)
			}
			batch = batch[:0]
		}
		if errors.Is(err, io.EOF) {
			return stats, nil
		}
	}
}

// check refuses a line that cannot be an exported event.
func (e eventRecord) check() error {
	switch {
	case e.StreamID == "" || e.Category == "" || e.Type == "":
		return errors.New("stream_id, category and type must be set")
	case e.Version < 1:
		return fmt.Errorf("version %d: want 1 or more", e.Version)
	case e.ID == uuid.Nil:
		return errors.New("id must be set")
	case len(e.Data) == 0:
		return errors.New("data must be set")
	case e.SchemaVersion < 1:
		return fmt.Errorf("schema_version %d: want 1 or more", e.SchemaVersion)
	case e.RecordedAt.IsZero():
		return errors.New("recorded_at must be set")
	}
	return nil
}

// importBatch stores the events of one batch (lines first...) in one
// transaction, skipping those stored already.
func (a *app) importBatch(ctx context.Context, batch []eventRecord, first int64) (imported, skipped int64, err error) {
	err = pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		imported, skipped = 0, 0
		ids := make([]uuid.UUID, len(batch))
		var streams []string
		seen := map[string]bool{}
		for i, e := range batch {
			ids[i] = e.ID
			if !seen[e.StreamID] {
				seen[e.StreamID] = true
				streams = append(streams, e.StreamID)
			}
		}
		type where struct {
			stream  string
			version int64
		}
		stored := map[uuid.UUID]where{}
		rows, err := tx.Query(ctx, fill(a.schema, selectStoredIDs), ids)
		if err != nil {
			return err
		}
		var id uuid.UUID
		var w where
		if _, err := pgx.ForEachRow(rows, []any{&id, &w.stream, &w.version}, func() error { stored[id] = w; return nil }); err != nil {
			return err
		}
		versions := map[string]int64{}
		rows, err = tx.Query(ctx, fill(a.schema, lockImportedStreams), streams)
		if err != nil {
			return err
		}
		var stream string
		var version int64
		if _, err := pgx.ForEachRow(rows, []any{&stream, &version}, func() error { versions[stream] = version; return nil }); err != nil {
			return err
		}
		// Checked under the streams' locks, the batch's inserts go in one
		// round trip.
		insert := fill(a.schema, importEvent)
		var writes pgx.Batch
		var lines []int64
		for i, e := range batch {
			line := first + int64(i)
			if w, ok := stored[e.ID]; ok {
				if w.stream != e.StreamID || w.version != e.Version {
					return fmt.Errorf("line %d: event %s of %s v%d is stored already as %s v%d", line, e.ID, e.StreamID, e.Version, w.stream, w.version)
				}
				skipped++
				continue
			}
			if cur := versions[e.StreamID]; cur != e.Version-1 {
				return fmt.Errorf("line %d: event %s v%d does not follow on: the stream is at version %d here "+
					"(import into a store without these streams, or export whole streams)", line, e.StreamID, e.Version, cur)
			}
			var md any // NULL unless set
			if e.Metadata != nil {
				md = e.Metadata
			}
			writes.Queue(insert, e.StreamID, e.Category, e.Version, e.ID, e.Type, e.SchemaVersion, e.Data, md, e.RecordedAt)
			lines = append(lines, line)
			versions[e.StreamID] = e.Version
		}
		if len(lines) == 0 {
			return nil
		}
		results := tx.SendBatch(ctx, &writes)
		for _, line := range lines {
			var pos int64
			if err := results.QueryRow().Scan(&pos); err != nil {
				_ = results.Close()
				return fmt.Errorf("line %d: %s: %w", line, batch[line-first].StreamID, err)
			}
		}
		if err := results.Close(); err != nil {
			return err
		}
		imported = int64(len(lines))
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("import: %w", err)
	}
	return imported, skipped, nil
}
