package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire/sagas"
	"github.com/spf13/cobra"
)

// sagaRow is one saga as `mire sagas` reports it: its instances by status.
type sagaRow struct {
	Saga        string `json:"saga"`
	Running     int    `json:"running"`
	Completed   int    `json:"completed"`
	Compensated int    `json:"compensated"`
	Failed      int    `json:"failed"`
}

// instanceRow is one instance as `mire sagas list` reports it.
type instanceRow struct {
	ID        string    `json:"id"`
	Stream    string    `json:"stream"`
	Status    string    `json:"status"`
	Step      string    `json:"step"`
	Reason    string    `json:"reason,omitempty"`
	Version   int64     `json:"version"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (a *app) sagasCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sagas",
		Short: "Count each saga's instances by status; list a saga's instances",
		Long: `sagas counts the instances of every saga that has started one, by status
(running, completed, compensated, failed), as the sagas' projections last
committed them. "sagas list NAME" lists one saga's instances; "mire show
saga-NAME:ID" shows an instance's history.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if _, err := a.connectMigrated(ctx); err != nil {
				return err
			}
			rows, err := a.pool.Query(ctx, fill(a.schema, countSagaInstances))
			if err != nil {
				return fmt.Errorf("count saga instances: %w", err)
			}
			bySaga := map[string]*sagaRow{}
			var saga, status string
			var n int
			if _, err := pgx.ForEachRow(rows, []any{&saga, &status, &n}, func() error {
				r := bySaga[saga]
				if r == nil {
					r = &sagaRow{Saga: saga}
					bySaga[saga] = r
				}
				switch sagas.Status(status) {
				case sagas.Running:
					r.Running = n
				case sagas.Completed:
					r.Completed = n
				case sagas.Compensated:
					r.Compensated = n
				case sagas.Failed:
					r.Failed = n
				}
				return nil
			}); err != nil {
				return fmt.Errorf("count saga instances: %w", err)
			}
			list := make([]sagaRow, 0, len(bySaga))
			for _, r := range bySaga {
				list = append(list, *r)
			}
			slices.SortFunc(list, func(x, y sagaRow) int { return strings.Compare(x.Saga, y.Saga) })
			if a.json {
				return a.printJSON(list)
			}
			if len(list) == 0 {
				fmt.Fprintln(a.stdout, "No saga instances.")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SAGA\tRUNNING\tCOMPLETED\tCOMPENSATED\tFAILED")
			for _, r := range list {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", r.Saga, r.Running, r.Completed, r.Compensated, r.Failed)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(a.sagasListCommand())
	return cmd
}

func (a *app) sagasListCommand() *cobra.Command {
	var status, after string
	var limit int
	cmd := &cobra.Command{
		Use:   "list NAME",
		Short: "List a saga's instances in id order, with status, step and reason",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 {
				return usagef("--limit must be at least 1, not %d", limit)
			}
			switch sagas.Status(status) {
			case "", sagas.Running, sagas.Completed, sagas.Compensated, sagas.Failed:
			default:
				return usagef("--status %q: want running, completed, compensated or failed", status)
			}
			ctx := cmd.Context()
			store, err := a.connectMigrated(ctx)
			if err != nil {
				return err
			}
			infos, err := sagas.List(ctx, store, args[0], &sagas.ListOpts{Status: sagas.Status(status), After: after, Limit: limit})
			if err != nil {
				return err
			}
			list := make([]instanceRow, 0, len(infos))
			for _, in := range infos {
				list = append(list, instanceRow{ID: in.ID, Stream: "saga-" + sagas.InstanceID(args[0], in.ID), Status: string(in.Status),
					Step: in.Step, Reason: in.Reason, Version: in.Version, StartedAt: in.Started, UpdatedAt: in.Updated})
			}
			if a.json {
				return a.printJSON(list)
			}
			if len(list) == 0 {
				fmt.Fprintf(a.stdout, "No instances of saga %q.\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tSTEP\tVERSION\tUPDATED\tREASON")
			for _, r := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Status, dash(r.Step), r.Version, formatTime(&r.UpdatedAt), dash(r.Reason))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only instances of this status (running, completed, compensated, failed)")
	cmd.Flags().StringVar(&after, "after", "", "start after this instance id (paging)")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many instances")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
