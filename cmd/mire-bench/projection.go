package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
)

// runnerConfig keeps the runners' routine lease messages off the report.
var runnerConfig = &projections.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}

// catchUpCase is workload 7's catch-up: a projection replays the whole log
// (each op resets it and catches up to the end) into a transactional
// handler that does nothing, or that upserts a balance per stream.
// Baseline: the minimum gap-safe consumer in raw pgx, with the same batch
// size, over a copy of the same log with its own (xid, position) index:
// in one transaction per batch, read the next events below the
// oldest running transaction in (xid, position) order, decode them into
// the same structs, run the same handler SQL, and update a checkpoint row.
// It does none of mire's per-stream order keeping, leases or fencing.
func catchUpCase(upsert bool) func(ctx context.Context, e *env, writers int) (*bcase, error) {
	return func(ctx context.Context, e *env, writers int) (*bcase, error) {
		n, per := e.scale.ProjEvents, e.scale.LongLen
		if upsert {
			n = e.scale.ProjUpsert
		}
		if err := fill(ctx, e, (n+per-1)/per, per, n); err != nil {
			return nil, err
		}
		if _, err := e.pool.Exec(ctx, baseCopyLog); err != nil {
			return nil, fmt.Errorf("copy the log for the baseline: %w", err)
		}
		if _, err := e.pool.Exec(ctx, `VACUUM ANALYZE baseline.log`); err != nil {
			return nil, err
		}
		handle := func(table string) func(ctx context.Context, tx pgx.Tx, env *mire.Envelope) error {
			if !upsert {
				return func(context.Context, pgx.Tx, *mire.Envelope) error { return nil }
			}
			sql := fmt.Sprintf(upsertReadModel, table)
			return func(ctx context.Context, tx pgx.Tx, env *mire.Envelope) error {
				var amount int64
				switch ev := env.Data.(type) {
				case Deposited:
					amount = ev.Amount
				case Opened:
					amount = ev.Initial
				}
				_, err := tx.Exec(ctx, sql, env.StreamID, amount)
				return err
			}
		}
		truncate := func(ctx context.Context, table string) error {
			if !upsert {
				return nil
			}
			_, err := e.pool.Exec(ctx, "TRUNCATE "+table)
			return err
		}
		mireHandle := handle("read_model_mire")
		p := projections.Projection{Name: "catch-up", Handler: projections.HandlerFunc(
			func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error { return mireHandle(ctx, tx, &env) })}
		baseHandle := handle("read_model_baseline")
		return &bcase{
			mire: side{op: func(ctx context.Context, w *worker) (int, error) {
				// Start from the beginning of the log; the first round has no
				// checkpoint to reset yet.
				if err := projections.ResetCheckpoint(ctx, e.store, p.Name); err != nil && !errors.Is(err, mire.ErrNotFound) {
					return 0, err
				}
				if err := truncate(ctx, "read_model_mire"); err != nil {
					return 0, err
				}
				r, err := projections.NewRunner(e.store, runnerConfig, p)
				if err != nil {
					return 0, err
				}
				if err := r.CatchUp(ctx); err != nil {
					return 0, err
				}
				st, err := r.Status(ctx, p.Name)
				if err == nil && st.Delivered != int64(n) {
					err = fmt.Errorf("projection delivered %d events, want %d", st.Delivered, n)
				}
				return n, err
			}},
			baseline: side{op: func(ctx context.Context, w *worker) (int, error) {
				if err := truncate(ctx, "read_model_baseline"); err != nil {
					return 0, err
				}
				count, err := baseCatchUp(ctx, e, projections.BatchSizeDefault, baseHandle)
				if err == nil && count != n {
					err = fmt.Errorf("baseline consumer handled %d events, want %d", count, n)
				}
				return count, err
			}},
		}, nil
	}
}

// baseCatchUp reads the log from the start to the watermark in batches,
// each in its own transaction with its checkpoint, and returns the number
// of events handled.
func baseCatchUp(ctx context.Context, e *env, batch int, handle func(context.Context, pgx.Tx, *mire.Envelope) error) (int, error) {
	var (
		cursorXID uint64
		cursorPos int64
		total     int
		envs      = make([]mire.Envelope, 0, batch)
	)
	for {
		envs = envs[:0]
		err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, baseReadBatch, cursorXID, cursorPos, batch)
			if err != nil {
				return err
			}
			var (
				xid      uint64
				prev     *uint64
				schema   int32
				raw, md  []byte
				env      mire.Envelope
				position int64
			)
			_, err = pgx.ForEachRow(rows, []any{&xid, &prev, (*[16]byte)(&env.ID), &env.StreamID, &env.Category,
				&env.Version, &position, &env.Type, &schema, &raw, &md, &env.RecordedAt}, func() error {
				env.Position, env.SchemaVersion, env.Raw = position, int(schema), raw
				data, err := decodeEvent(env.Type, raw)
				if err != nil {
					return err
				}
				env.Data = data
				if len(md) > 0 {
					env.Metadata = mire.Metadata{}
				}
				envs = append(envs, env)
				cursorXID, cursorPos = xid, position
				return nil
			})
			if err != nil || len(envs) == 0 {
				return err
			}
			for i := range envs {
				if err := handle(ctx, tx, &envs[i]); err != nil {
					return err
				}
			}
			_, err = tx.Exec(ctx, baseCheckpoint, cursorXID, cursorPos)
			return err
		})
		if err != nil {
			return total, err
		}
		total += len(envs)
		if len(envs) < batch {
			return total, nil
		}
	}
}

// runnerCase is workload 7's live half: writers save one event each to a
// new stream while a runner with a no-op handler follows the log (mire
// column), and with no runner at all (baseline column), so the ratio is
// what attaching a runner costs the writers. The note gives the latency
// from each event's recorded_at (its transaction's start, on the server's
// clock) to its handler.
func runnerCase(ctx context.Context, e *env, writers int) (*bcase, error) {
	const name = "follow"
	var (
		mu      sync.Mutex
		lats    []time.Duration
		stop    context.CancelFunc
		stopped chan error
	)
	p := projections.Projection{Name: name, Handler: projections.HandlerFunc(
		func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
			d := time.Since(env.RecordedAt)
			mu.Lock()
			lats = append(lats, d)
			mu.Unlock()
			return nil
		})}
	stopRunner := func() error {
		if stop == nil {
			return nil
		}
		stop()
		err := <-stopped
		stop = nil
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return err
	}
	startRunner := func(ctx context.Context) error {
		if err := stopRunner(); err != nil {
			return err
		}
		// Skip what earlier rounds wrote: only this round's events count.
		// The warm-up finds no checkpoint yet (the runner makes one when it
		// first runs), and starts from the beginning: it is not measured.
		if err := projections.MoveToWatermark(ctx, e.store, name); err != nil && !errors.Is(err, mire.ErrNotFound) {
			return err
		}
		r, err := projections.NewRunner(e.store, runnerConfig, p)
		if err != nil {
			return err
		}
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stop, stopped = cancel, make(chan error, 1)
		go func() { stopped <- r.Run(runCtx) }()
		return nil
	}
	save := func(ctx context.Context, w *worker) (int, error) {
		id := e.newID("w")
		_, err := e.store.Append(ctx, mire.StreamID("account", id), mire.NoStream, Opened{Owner: id, Initial: 100})
		return 1, err
	}
	return &bcase{
		mire:     side{op: save, round: startRunner},
		baseline: side{op: save, round: func(context.Context) error { return stopRunner() }},
		cleanup:  func() error { return stopRunner() },
		note: func(m, b *sample) string {
			return "mire column: writers with a runner attached; baseline column: the same writers, no runner; " +
				"the runner's commit-to-handler latency has a table of its own"
		},
		handler: func() *handlerLatency {
			mu.Lock()
			defer mu.Unlock()
			if len(lats) == 0 {
				return nil
			}
			slices.Sort(lats)
			q := func(f float64) time.Duration { return lats[int(f*float64(len(lats)-1))] }
			return &handlerLatency{Events: len(lats), P50: q(0.5), P99: q(0.99)}
		},
	}, nil
}
