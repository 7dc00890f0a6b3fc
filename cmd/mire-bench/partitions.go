package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
)

// Issue 15's figures for partitioned projections: what the partition
// index costs writers (workloads 1p and 3p, in the main table), how a
// catch-up scales with runner processes (10 and 10n, scaling.go) and how
// long partitions take to move when a process joins or dies (10r,
// rebalance.go). The last three start runner processes (runnerproc.go),
// which this file waits for, and report in sections of their own after
// the table.

// benchPartitions is the partition count of every partitioned workload.
const benchPartitions = 16

// withPartitionIndex turns a writer workload into its index-cost twin:
// both columns run mire's op, the mire column with the index of
// benchPartitions partitions present and the baseline column without it.
// The index is created (MigratePartitions) before each of the mire
// column's rounds and dropped before each of the other's, on the same
// table, so that the rounds alternate as in every case.
func withPartitionIndex(setup func(ctx context.Context, e *env, writers int) (*bcase, error)) func(ctx context.Context, e *env, writers int) (*bcase, error) {
	return func(ctx context.Context, e *env, writers int) (*bcase, error) {
		c, err := setup(ctx, e, writers)
		if err != nil {
			return nil, err
		}
		create := func(ctx context.Context) error {
			return projections.MigratePartitions(ctx, e.store, benchPartitions)
		}
		drop := func(ctx context.Context) error { return dropPartitionIndexes(ctx, e) }
		if c.mire.round != nil || c.baseline.round != nil || c.cleanup != nil {
			return nil, errors.New("withPartitionIndex: the workload has rounds or a cleanup of its own")
		}
		c.mire.round = create
		c.baseline = side{op: c.mire.op, round: drop}
		c.cleanup = func() error { return drop(context.Background()) }
		c.note = func(m, b *sample) string {
			return fmt.Sprintf("both columns run mire: the mire column with the index of %d partitions (projections.MigratePartitions), "+
				"the baseline column without it (dropped and created again between rounds, on the same table)", benchPartitions)
		}
		return c, nil
	}
}

// dropPartitionIndexes drops the partition indexes of mire's events (the
// ones on the hashtext of the stream id; their names are the projections
// package's business).
func dropPartitionIndexes(ctx context.Context, e *env) error {
	rows, err := e.pool.Query(ctx, partitionIndexes, e.store.Schema())
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, name := range names {
		if _, err := e.pool.Exec(ctx, "DROP INDEX "+name); err != nil {
			return fmt.Errorf("drop the partition index %s: %w", name, err)
		}
	}
	return nil
}

const partitionIndexes = `SELECT format('%I.%I', schemaname, indexname) FROM pg_indexes
WHERE schemaname = $1 AND tablename = 'events' AND indexdef LIKE '%hashtext(stream_id)%'`

// procEnv is what the process workloads (10, 10n, 10r) run in: each makes
// its own databases on the server and starts runner processes.
type procEnv struct {
	serverURL string
	scale     scale
	// rounds is 1, or 2 for the ABBA order (1, 2, 4 processes, then 4, 2,
	// 1), so that drift in the machine's load falls on every count alike.
	rounds int
	out    io.Writer // the runner processes' output and progress lines
}

// procResults are the process workloads' figures.
type procResults struct {
	Scaling   []*scalingResult   `json:"scaling,omitempty"`
	Rebalance []*rebalanceResult `json:"rebalance,omitempty"`
	Notes     []string           `json:"notes,omitempty"`
}

func (r *procResults) add(o *procResults) {
	r.Scaling = append(r.Scaling, o.Scaling...)
	r.Rebalance = append(r.Rebalance, o.Rebalance...)
	r.Notes = append(r.Notes, o.Notes...)
}

// The process workloads' waits.
const (
	deliveredPoll  = 20 * time.Millisecond
	spreadPoll     = 10 * time.Millisecond
	spreadTimeout  = 30 * time.Second
	catchUpTimeout = 10 * time.Minute
)

// waitSpread waits until every partition of the bench projection is held
// by one of runners, each holding its round-robin share, and returns how
// long that took. It fails if one of runners exits, or after
// spreadTimeout.
func waitSpread(ctx context.Context, store *mire.Store, runners []*runnerProc) (time.Duration, error) {
	start := time.Now()
	owners := make([]string, len(runners))
	for i, p := range runners {
		owners[i] = p.owner
	}
	for {
		st, err := projections.StatusOf(ctx, store, benchProjection)
		if err != nil && !errors.Is(err, mire.ErrNotFound) {
			return 0, err
		}
		if err == nil && spread(st, owners) {
			return time.Since(start), nil
		}
		for _, p := range runners {
			if err := p.alive(); err != nil {
				return 0, err
			}
		}
		if time.Since(start) > spreadTimeout {
			return 0, fmt.Errorf("the partitions are not spread over %v after %v: owners %q", owners, spreadTimeout, st.Owner)
		}
		if err := pause(ctx, spreadPoll); err != nil {
			return 0, err
		}
	}
}

// spread reports whether st's partitions are all held by owners, each
// holding its round-robin share (n/len(owners), rounded down or up).
func spread(st projections.Status, owners []string) bool {
	parts := st.ByPartition
	if len(parts) == 0 {
		parts = []projections.Status{st}
	}
	held := map[string]int{}
	for _, p := range parts {
		held[p.Owner]++
	}
	if len(held) != len(owners) {
		return false
	}
	lo, hi := len(parts)/len(owners), (len(parts)+len(owners)-1)/len(owners)
	for _, o := range owners {
		if c := held[o]; c < lo || c > hi {
			return false
		}
	}
	return true
}

// pause waits for d or the end of ctx.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

const (
	scalingHeader = `| # | handler | partitions | processes | events/s | ratio | vs | target |
|---|---|--:|--:|--:|--:|---|---|`
	rebalanceHeader = `| # | event | tries | p50 | max | LeaseTTL | RecheckInterval | PollInterval |
|---|---|--:|--:|--:|--:|--:|--:|`
)

// printProcs writes the process workloads' figures as two Markdown
// tables, then their notes.
func printProcs(w io.Writer, r *procResults) {
	if len(r.Scaling) > 0 {
		fmt.Fprintf(w, "\nPartitioned catch-up, by runner processes\n\n%s\n", scalingHeader)
		for _, s := range r.Scaling {
			ratio := "-"
			if s.Ratio > 0 {
				ratio = fmt.Sprintf("%.2f", s.Ratio)
			}
			target := s.Target
			if s.Met != nil {
				target += map[bool]string{true: " ✓", false: " ✗ missed"}[*s.Met]
			}
			procs := strconv.Itoa(s.Processes)
			if s.Serial {
				procs = "CatchUp"
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s events/s | %s | %s | %s |\n",
				s.Workload, s.Handler, s.Partitions, procs, thousands(s.Rate), ratio, s.Versus, target)
		}
	}
	if len(r.Rebalance) > 0 {
		fmt.Fprintf(w, "\nRebalance of %d partitions\n\n%s\n", benchPartitions, rebalanceHeader)
		for _, b := range r.Rebalance {
			fmt.Fprintf(w, "| %s | %s | %d | %s ms | %s ms | %s ms | %s ms | %s ms |\n", b.Workload, b.Event, b.Tries,
				ms(b.P50), ms(b.Max), ms(b.LeaseTTL), ms(b.RecheckInterval), ms(b.PollInterval))
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintf(w, "\n- %s\n", strings.Join(r.Notes, "\n- "))
	}
}
