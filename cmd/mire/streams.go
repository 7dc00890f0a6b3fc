package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
)

// streamRow is one line of `mire streams`.
type streamRow struct {
	StreamID    string     `json:"stream_id"`
	Category    string     `json:"category"`
	Version     int64      `json:"version"`
	LastWriteAt *time.Time `json:"last_write_at"`
}

func (a *app) streamsCommand() *cobra.Command {
	var category string
	var limit int
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "List streams with their version and last write time, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 {
				return usagef("--limit must be at least 1, not %d", limit)
			}
			ctx := cmd.Context()
			if _, err := a.connectMigrated(ctx); err != nil {
				return err
			}
			rows, err := a.pool.Query(ctx, fill(a.schema, selectStreams), nullable(category), limit)
			if err != nil {
				return fmt.Errorf("list streams: %w", err)
			}
			list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (streamRow, error) {
				var s streamRow
				err := row.Scan(&s.StreamID, &s.Category, &s.Version, &s.LastWriteAt)
				return s, err
			})
			if err != nil {
				return fmt.Errorf("list streams: %w", err)
			}
			if a.json {
				return a.printJSON(orEmpty(list))
			}
			if len(list) == 0 {
				fmt.Fprintln(a.stdout, "No streams.")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STREAM\tCATEGORY\tVERSION\tLAST WRITE")
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.StreamID, s.Category, s.Version, formatTime(s.LastWriteAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&category, "category", "", "only streams of this category")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many streams")
	return cmd
}

// eventRecord is one stored event as `show` and `export` print it and
// `import` reads it: raw, with nothing decoded into Go types.
type eventRecord struct {
	Position      int64           `json:"position,omitempty"`
	StreamID      string          `json:"stream_id"`
	Version       int64           `json:"version"`
	Category      string          `json:"category"`
	ID            uuid.UUID       `json:"id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Data          json.RawMessage `json:"data"`
	Metadata      json.RawMessage `json:"metadata,omitempty"` // as stored: lossless through export and import
	RecordedAt    time.Time       `json:"recorded_at"`
}

func scanEvent(row pgx.CollectableRow) (eventRecord, error) {
	var e eventRecord
	err := row.Scan(&e.Position, &e.StreamID, &e.Version, &e.Category, &e.ID, &e.Type, &e.SchemaVersion, &e.Data, &e.Metadata, &e.RecordedAt)
	if string(e.Metadata) == "null" {
		e.Metadata = nil
	}
	return e, err
}

func (a *app) showCommand() *cobra.Command {
	var from int64
	var limit int
	cmd := &cobra.Command{
		Use:   "show STREAM",
		Short: "Print a stream's events: type, schema version, metadata, position, time and data",
		Long: `show prints the events of one stream (a stream id is "category-id"), in
version order, with their payloads as stored: the command decodes nothing
into the application's Go types, so events of any type show.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from < 1 {
				return usagef("--from must be at least 1, not %d", from)
			}
			ctx := cmd.Context()
			if _, err := a.connectMigrated(ctx); err != nil {
				return err
			}
			stream := args[0]
			var exists bool
			if err := a.pool.QueryRow(ctx, fill(a.schema, streamExists), stream).Scan(&exists); err != nil {
				return fmt.Errorf("show stream %q: %w", stream, err)
			}
			if !exists {
				return fmt.Errorf("stream %q does not exist (see `mire streams`)", stream)
			}
			var lim *int
			if limit > 0 {
				lim = &limit
			}
			rows, err := a.pool.Query(ctx, fill(a.schema, selectStreamEvents), stream, from-1, lim)
			if err != nil {
				return fmt.Errorf("show stream %q: %w", stream, err)
			}
			// Printed as they arrive: a stream may be long.
			out := bufio.NewWriter(a.stdout)
			n := 0
			for rows.Next() {
				e, err := scanEvent(rows)
				if err != nil {
					rows.Close()
					return fmt.Errorf("show stream %q: %w", stream, err)
				}
				n++
				switch {
				case a.json:
					b, err := json.MarshalIndent(e, "  ", "  ")
					if err != nil {
						rows.Close()
						return fmt.Errorf("show stream %q: %w", stream, err)
					}
					sep := ","
					if n == 1 {
						sep = "["
					}
					fmt.Fprintf(out, "%s\n  %s", sep, b)
				case n > 1:
					fmt.Fprintln(out)
					fallthrough
				default:
					printEvent(out, e)
				}
			}
			err = rows.Err()
			if err != nil {
				return fmt.Errorf("show stream %q: %w", stream, err)
			}
			switch {
			case a.json && n == 0:
				fmt.Fprintln(out, "[]")
			case a.json:
				fmt.Fprintln(out, "\n]")
			case n == 0:
				fmt.Fprintf(out, "No events in %s from version %d.\n", stream, from)
			}
			return out.Flush()
		},
	}
	cmd.Flags().Int64Var(&from, "from", 1, "start at this version")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many events (0: all)")
	return cmd
}

// printEvent prints one event for people: a header, then its data as
// indented JSON.
func printEvent(w io.Writer, e eventRecord) {
	fmt.Fprintf(w, "%s v%d  %s (schema version %d)\n", e.StreamID, e.Version, e.Type, e.SchemaVersion)
	fmt.Fprintf(w, "  position %d, recorded %s, id %s\n", e.Position, e.RecordedAt.UTC().Format(time.RFC3339Nano), e.ID)
	if e.Metadata != nil {
		fmt.Fprintf(w, "  metadata %s\n", e.Metadata)
	}
	data, err := json.MarshalIndent(e.Data, "  ", "  ")
	if err != nil {
		data = e.Data
	}
	fmt.Fprintf(w, "  %s\n", data)
}

// nullable is nil for "", so that SQL reads it as NULL (no filter).
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// orEmpty makes a nil slice print as [] in JSON.
func orEmpty[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}

func formatTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
