package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
	"github.com/spf13/cobra"
)

// projectionRow is one projection as `mire projections` reports it.
type projectionRow struct {
	Name string `json:"name"`
	// Partition is the partition a row of ByPartition is of.
	Partition int `json:"partition"`
	// Partitions is the projection's partition count (1: unpartitioned);
	// the other fields of a partitioned projection roll its partitions up
	// (see projections.Status).
	Partitions  int             `json:"partitions"`
	ByPartition []projectionRow `json:"by_partition,omitempty"`
	Position    int64           `json:"position"`
	// Floor is the position at or below which nothing is read (set by
	// move-to-watermark).
	Floor int64 `json:"floor"`
	// Lag is the number of committed events still to deliver; LagSeconds
	// the age of the first of them (roughly: see selectProjections), 0
	// when there is none.
	Lag         int64             `json:"lag"`
	LagSeconds  float64           `json:"lag_seconds"`
	Delivered   int64             `json:"delivered"`
	Held        int               `json:"held"`
	Owner       string            `json:"owner"`
	LeaseUntil  *time.Time        `json:"lease_until,omitempty"`
	Fence       int64             `json:"fence"`
	State       projections.State `json:"state"`
	LastError   string            `json:"last_error,omitempty"`
	FailedEvent *eventRef         `json:"failed_event,omitempty"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

// eventRef is projections.EventRef with JSON names.
type eventRef struct {
	StreamID string `json:"stream_id"`
	Version  int64  `json:"version"`
	Position int64  `json:"position"`
	Type     string `json:"type"`
}

func (a *app) projectionsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "projections",
		Short: "Report every projection's position, lag, owner and state; reset, resume, move",
		Long: `projections lists every projection that has run (has a checkpoint): its
position, its lag in events and in time, the runner holding its lease, its
fence token, its state and, for a halted projection, the error and the event
it halted on.

The subcommands act on one projection by name; the application's runners
pick the change up within their recheck interval. A name that has never
run is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			list, err := a.projections(ctx)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(orEmpty(list))
			}
			if len(list) == 0 {
				fmt.Fprintln(a.stdout, "No projections have run.")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPARTITIONS\tPOSITION\tLAG\tLAG TIME\tOWNER\tFENCE\tSTATE\tLAST ERROR")
			for _, p := range list {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t%s\n", p.Name, p.Partitions, p.Position, p.Lag, lagTime(p),
					orDash(p.Owner), p.Fence, p.State, lastError(p))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(
		a.adminCommand("reset", "Move a projection's checkpoint back to the start of the log",
			`reset moves the projection's checkpoint back to the beginning of the log
and clears its error, without touching its read model: the runner holding
it replays every event into the read model as it is (handlers must then be
idempotent). To replay into an empty read model, clear it first, or use
the application's Runner.Rebuild.`,
			projections.ResetCheckpoint, "reset to the start of the log; its runner replays every event"),
		a.adminCommand("resume", "Let a halted projection run again from the event it halted on",
			`resume lets a halted projection run again from the event it halted on,
after a fix of the handler or of the data. The lease is freed and the fence
raised, so a runner takes it over afresh.`,
			projections.Resume, "resumed; a runner takes it over within its recheck interval"),
		a.adminCommand("move-to-watermark", "Move a projection's checkpoint past every event stored now",
			`move-to-watermark moves the projection's checkpoint past every event
stored now, without delivering them, keeping its read model. Run it for
each projection after a logical dump and restore (or `+"`mire import`"+`) into
another cluster, before writers start again: transaction ids restart
there, so restored events no longer sort before new ones.`,
			projections.MoveToWatermark, "moved past every event stored now; those events will not be delivered to it"),
		a.rebuildCommand(),
		a.partitionsCommand(),
	)
	return cmd
}

// partitionsCommand reports each partition of one projection.
func (a *app) partitionsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "partitions NAME",
		Short: "Report each partition of a projection: position, lag, owner, fence, state",
		Long: `partitions reports each partition of one projection: its position, its
lag, the runner holding it, its fence token and its state (a halted
partition halts only itself). An unpartitioned projection has one, 0.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeProjection,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := a.connectMigrated(ctx)
			if err != nil {
				return err
			}
			st, err := projections.StatusOf(ctx, store, args[0])
			if errors.Is(err, mire.ErrNotFound) {
				return errNeverRan(args[0])
			}
			if err != nil {
				return err
			}
			whole := rowOf(st)
			parts := whole.ByPartition
			if parts == nil {
				parts = []projectionRow{whole}
			}
			if a.json {
				return a.printJSON(parts)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PARTITION\tPOSITION\tLAG\tDELIVERED\tOWNER\tFENCE\tSTATE\tLAST ERROR")
			for _, p := range parts {
				fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n", p.Partition, p.Position, p.Lag, p.Delivered,
					orDash(p.Owner), p.Fence, p.State, lastError(p))
			}
			return tw.Flush()
		},
	}
}

// rowOf returns the report of a projection's status.
func rowOf(st projections.Status) projectionRow {
	p := projectionRow{
		Name: st.Name, Partition: st.Partition, Partitions: st.Partitions,
		Position: st.Position, Floor: st.Floor, Lag: st.Lag, Delivered: st.Delivered, Held: st.Held,
		Owner: st.Owner, Fence: st.Fence, State: st.State, LastError: st.LastError,
		UpdatedAt: st.UpdatedAt,
	}
	if e := st.FailedEvent; e != nil {
		p.FailedEvent = &eventRef{e.StreamID, e.Version, e.Position, e.Type}
	}
	if !st.LeaseUntil.IsZero() {
		p.LeaseUntil = &st.LeaseUntil
	}
	for _, part := range st.ByPartition {
		p.ByPartition = append(p.ByPartition, rowOf(part))
	}
	return p
}

// errNeverRan is the error for a projection name that has no checkpoint.
func errNeverRan(name string) error {
	return fmt.Errorf("no projection %q has run (see `mire projections`)", name)
}

// adminCommand is a subcommand that runs op on one projection by name.
func (a *app) adminCommand(use, short, long string, op func(context.Context, *mire.Store, string) error, done string) *cobra.Command {
	return &cobra.Command{
		Use:               use + " NAME",
		Short:             short,
		Long:              long,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeProjection,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := a.connectMigrated(ctx)
			if err != nil {
				return err
			}
			name := args[0]
			if err := op(ctx, store, name); err != nil {
				if errors.Is(err, mire.ErrNotFound) {
					return errNeverRan(name)
				}
				return err
			}
			st, err := projections.StatusOf(ctx, store, name)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"name": name, "done": use, "position": st.Position, "floor": st.Floor, "lag": st.Lag, "fence": st.Fence, "state": st.State})
			}
			_, err = fmt.Fprintf(a.stdout, "Projection %q %s (position %d, floor %d, lag %d, fence %d).\n", name, done, st.Position, st.Floor, st.Lag, st.Fence)
			return err
		},
	}
}

// projections returns every projection with a checkpoint.
func (a *app) projections(ctx context.Context) ([]projectionRow, error) {
	store, err := a.connectMigrated(ctx)
	if err != nil {
		return nil, err
	}
	type head struct {
		name  string
		first *time.Time
	}
	rows, err := a.pool.Query(ctx, fill(a.schema, selectProjections))
	if err != nil {
		return nil, fmt.Errorf("list projections: %w", err)
	}
	heads, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (head, error) {
		var h head
		return h, row.Scan(&h.name, &h.first)
	})
	if err != nil {
		return nil, fmt.Errorf("list projections: %w", err)
	}
	var list []projectionRow
	for _, h := range heads {
		st, err := projections.StatusOf(ctx, store, h.name)
		if errors.Is(err, mire.ErrNotFound) {
			continue // removed since the list was read
		}
		if err != nil {
			return nil, err
		}
		p := rowOf(st)
		if st.Lag > 0 && h.first != nil {
			p.LagSeconds = max(time.Since(*h.first).Seconds(), 0)
		}
		list = append(list, p)
	}
	return list, nil
}

// completeProjection completes a projection name, for shell completion.
func (a *app) completeProjection(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	list, err := a.projections(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, p := range list {
		names = append(names, p.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func lagTime(p projectionRow) string {
	if p.Lag == 0 {
		return "-"
	}
	return (time.Duration(p.LagSeconds * float64(time.Second))).Round(time.Second).String()
}

func lastError(p projectionRow) string {
	if p.LastError == "" {
		return "-"
	}
	msg := strings.ReplaceAll(p.LastError, "\n", " ")
	if e := p.FailedEvent; e != nil && !strings.Contains(msg, e.StreamID) {
		return fmt.Sprintf("at %s v%d (position %d, %s): %s", e.StreamID, e.Version, e.Position, e.Type, msg)
	}
	return msg
}

// orDash returns s, or "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
