package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

const rebuildLong = `rebuild moves the projection's checkpoint back to the beginning of the log,
as reset does, and with --wait follows the replay with a progress bar
(events delivered of the total, rate, time left) until it has caught up.

The replay is done by the application's runners, which must be running:
this command runs no handlers. Nor can it clear the read model, which only
the application knows (Projection.Truncate): handlers must be idempotent,
or the read model cleared first; the application's Runner.Rebuild does
both in one transaction.

With --wait it exits 0 once caught up, and 1 if the projection halts (with
the error and the event) or on Ctrl-C (the replay goes on in the runners).`

// noOwnerWarning is how long rebuild --wait waits for a runner to take the
// projection before it says that none seems to be running.
const noOwnerWarning = 10 * time.Second

func (a *app) rebuildCommand() *cobra.Command {
	var wait bool
	var poll time.Duration
	cmd := &cobra.Command{
		Use:               "rebuild NAME",
		Short:             "Reset a projection to the start of the log and follow the runners' replay (--wait)",
		Long:              rebuildLong,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeProjection,
		RunE: func(cmd *cobra.Command, args []string) error {
			if poll <= 0 {
				return usagef("--poll must be positive, not %s", poll)
			}
			ctx := cmd.Context()
			store, err := a.connectMigrated(ctx)
			if err != nil {
				return err
			}
			name := args[0]
			if err := projections.ResetCheckpoint(ctx, store, name); err != nil {
				if errors.Is(err, mire.ErrNotFound) {
					return fmt.Errorf("no projection %q has run (see `mire projections`)", name)
				}
				return err
			}
			if !wait {
				st, err := projections.StatusOf(ctx, store, name)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(map[string]any{"name": name, "done": "rebuild", "lag": st.Lag, "fence": st.Fence})
				}
				_, err = fmt.Fprintf(a.stdout, "Projection %q reset to the start of the log: the runners replay %d events (follow with `mire projections rebuild %s --wait`, or `mire projections`).\n", name, st.Lag, name)
				return err
			}
			st, err := a.followReplay(ctx, store, name, poll)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"name": name, "done": "rebuild", "delivered": st.Delivered, "position": st.Position, "owner": st.Owner, "fence": st.Fence})
			}
			_, err = fmt.Fprintf(a.stdout, "Projection %q rebuilt: %d events replayed by %s; caught up at position %d.\n", name, st.Delivered, st.Owner, st.Position)
			return err
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the replay until it has caught up, with a progress bar on stderr")
	cmd.Flags().DurationVar(&poll, "poll", 200*time.Millisecond, "with --wait, how often to check the projection's status")
	return cmd
}

// followReplay polls the projection's status, drawing the replay's
// progress on stderr (not with --json), until it has caught up: no lag,
// and a runner holds it (right after the reset none does, and the lag
// reads 0 only once one has read).
func (a *app) followReplay(ctx context.Context, store *mire.Store, name string, poll time.Duration) (projections.Status, error) {
	var bar *progressbar.ProgressBar
	if !a.json {
		bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(a.stderr),
			progressbar.OptionSetDescription("replay "+name),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.stderr) }),
		)
	}
	start, warned := time.Now(), false
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	for {
		st, err := projections.StatusOf(ctx, store, name)
		if err != nil {
			return st, err
		}
		if st.State == projections.Halted {
			if bar != nil {
				_ = bar.Exit()
				fmt.Fprintln(a.stderr)
			}
			return st, fmt.Errorf("projection %q halted during the replay: %s\nFix the cause, then run `mire projections resume %s`", name, st.LastError, name)
		}
		if bar != nil {
			bar.ChangeMax64(max(st.Delivered+st.Lag, 1))
			_ = bar.Set64(st.Delivered)
		}
		if st.Owner != "" && st.Lag == 0 {
			if bar != nil {
				_ = bar.Finish()
			}
			return st, nil
		}
		if st.Owner == "" && !warned && time.Since(start) > noOwnerWarning {
			warned = true
			fmt.Fprintf(a.stderr, "\nNo runner has taken projection %q for %s: is the application running? (still waiting; Ctrl-C to stop)\n", name, noOwnerWarning)
		}
		select {
		case <-ctx.Done():
			if bar != nil {
				_ = bar.Exit()
				fmt.Fprintln(a.stderr)
			}
			return st, errors.New("interrupted: the runners go on with the replay (follow with `mire projections`)")
		case <-ticker.C:
		}
	}
}
