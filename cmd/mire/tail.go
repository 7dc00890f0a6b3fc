package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire/pgschema"
	"github.com/spf13/cobra"
)

// tailTime is the time format of tail's lines: fixed width, so that they
// align.
const tailTime = "2006-01-02T15:04:05.000000Z07:00"

// tailPageAppends is how many appends tail reads per query.
const tailPageAppends = 500

const tailLong = `tail prints events as they are committed, one line per event, until
Ctrl-C (which exits with 0). With --json each line is the event as ` + "`mire export`" + `
writes it, for piping.

It is gap-safe as projections are: it reads in (transaction, position)
order, and only events of transactions older than every transaction still
running, so an event whose transaction commits late is printed late, never
skipped. Events of different streams come in that order, not in position
order; so may, rarely, two appends to one stream by overlapping
transactions.

It starts at the beginning of the log, or with --from-now at the events of
transactions that had not finished when it started. New events wake it at
once (LISTEN/NOTIFY); it also polls every --poll.`

func (a *app) tailCommand() *cobra.Command {
	var category string
	var fromNow bool
	var poll time.Duration
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow the log live, one line per event, gap-safe (Ctrl-C to stop)",
		Long:  tailLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if poll <= 0 {
				return usagef("--poll must be positive, not %s", poll)
			}
			err := a.tail(cmd.Context(), nullable(category), fromNow, poll)
			if errors.Is(err, context.Canceled) {
				return nil // Ctrl-C: the way to stop
			}
			return err
		},
	}
	cmd.Flags().StringVar(&category, "category", "", "only this category's events")
	cmd.Flags().BoolVar(&fromNow, "from-now", false, "skip the events already stored")
	cmd.Flags().DurationVar(&poll, "poll", time.Second, "read at least this often, without a notification")
	return cmd
}

func (a *app) tail(ctx context.Context, category *string, fromNow bool, poll time.Duration) error {
	if _, err := a.connectMigrated(ctx); err != nil {
		return err
	}
	cursorXid, cursorPos := "0", int64(0)
	if fromNow {
		if err := a.pool.QueryRow(ctx, tailNow).Scan(&cursorXid); err != nil {
			return fmt.Errorf("tail: %w", err)
		}
	}
	listener, err := a.listen(ctx)
	if err != nil {
		return err
	}
	defer listener.Release()
	page := fill(a.schema, tailPage)
	enc := json.NewEncoder(a.stdout)
	for {
		rows, err := a.pool.Query(ctx, page, cursorXid, cursorPos, category, tailPageAppends)
		if err != nil {
			return fmt.Errorf("tail: %w", err)
		}
		appends := 0
		var e eventRecord
		var xid string
		var head int64
		_, err = pgx.ForEachRow(rows, []any{&xid, &head, &e.Position, &e.StreamID, &e.Version, &e.Category, &e.ID, &e.Type,
			&e.SchemaVersion, &e.Data, &e.Metadata, &e.RecordedAt}, func() error {
			if xid != cursorXid || head != cursorPos {
				cursorXid, cursorPos = xid, head
				appends++
			}
			if string(e.Metadata) == "null" {
				e.Metadata = nil
			}
			if a.json {
				return enc.Encode(e)
			}
			_, err := fmt.Fprintf(a.stdout, "%s  %s v%d  %s  %s\n", e.RecordedAt.UTC().Format(tailTime), e.StreamID, e.Version, e.Type, compact(e.Data))
			return err
		})
		if err != nil {
			return fmt.Errorf("tail: %w", err)
		}
		if appends == tailPageAppends {
			continue // more waiting
		}
		wait, cancel := context.WithTimeout(ctx, poll)
		_, err = listener.Conn().WaitForNotification(wait)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("tail: wait for events: %w", err)
		}
	}
}

// listen takes a connection of its own and listens on the schema's
// channel, on which the store announces commits.
func (a *app) listen(ctx context.Context) (*pgxpool.Conn, error) {
	conn, err := a.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("tail: %w", err)
	}
	channel := pgx.Identifier{pgschema.NotifyChannel(a.schema)}.Sanitize()
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		conn.Release()
		return nil, fmt.Errorf("tail: listen: %w", err)
	}
	return conn, nil
}

// compact returns JSON without insignificant space.
func compact(raw json.RawMessage) string {
	var out []byte
	if b, err := json.Marshal(raw); err == nil {
		out = b
	} else {
		out = raw
	}
	return string(out)
}
