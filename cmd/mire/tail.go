package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
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
order; each stream's events come in version order.

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
	var cursorXid uint64
	var cursorPos int64
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
	out := &tailOrder{a: a, enc: json.NewEncoder(a.stdout), held: map[string][]eventRecord{}}
	for {
		rows, err := a.pool.Query(ctx, page, cursorXid, cursorPos, category, tailPageAppends)
		if err != nil {
			return fmt.Errorf("tail: %w", err)
		}
		appends := 0
		var e eventRecord
		var head int64
		var prev *uint64
		var xid8 uint64
		_, err = pgx.ForEachRow(rows, []any{&xid8, &prev, &head, &e.Position, &e.StreamID, &e.Version, &e.Category, &e.ID, &e.Type,
			&e.SchemaVersion, &e.Data, &e.Metadata, &e.RecordedAt}, func() error {
			if xid8 != cursorXid || head != cursorPos {
				cursorXid, cursorPos = xid8, head
				appends++
			}
			if string(e.Metadata) == "null" {
				e.Metadata = nil
			}
			return out.offer(e, xid8, prev)
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

// tailOrder prints events in each stream's version order. Events come in
// (transaction, position) order, in which an append can come before its
// stream's previous one, when the transaction that made it started first
// (its event records the previous append's transaction, prev_xid, which
// then sorts after its own): such an event, and the stream's events after
// it, are held until the predecessor is printed, as projections do.
type tailOrder struct {
	a    *app
	enc  *json.Encoder
	held map[string][]eventRecord // by stream, in version order
}

// offer prints e, with the events it releases, or holds it.
func (t *tailOrder) offer(e eventRecord, xid uint64, prev *uint64) error {
	q := t.held[e.StreamID]
	if (prev != nil && *prev > xid) || (len(q) > 0 && e.Version > q[0].Version) {
		// The row's buffers are the scan's: keep copies.
		e.Data, e.Metadata = slices.Clone(e.Data), slices.Clone(e.Metadata)
		i := sort.Search(len(q), func(i int) bool { return q[i].Version > e.Version })
		t.held[e.StreamID] = slices.Insert(q, i, e)
		return nil
	}
	for {
		if err := t.print(e); err != nil {
			return err
		}
		q := t.held[e.StreamID]
		if len(q) == 0 || q[0].Version != e.Version+1 {
			return nil
		}
		e = q[0]
		if len(q) == 1 {
			delete(t.held, e.StreamID)
		} else {
			t.held[e.StreamID] = q[1:]
		}
	}
}

func (t *tailOrder) print(e eventRecord) error {
	if t.a.json {
		return t.enc.Encode(e)
	}
	_, err := fmt.Fprintf(t.a.stdout, "%s  %s v%d  %s  %s\n", e.RecordedAt.UTC().Format(tailTime), e.StreamID, e.Version, e.Type, compact(e.Data))
	return err
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
