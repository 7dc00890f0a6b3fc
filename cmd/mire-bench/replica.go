package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// replicaReaders is how many goroutines load at once in the replica
// figures, as the issue asks.
const replicaReaders = 8

// replicaFigures are the figures of -replica: loads on a primary alone
// and with a streaming replica, the latency a token adds to a load when
// the replica is current, and how many loads fall back to the primary
// while the replica's replay is paused.
type replicaFigures struct {
	PrimaryLoadsPerSec float64       `json:"primary_loads_per_sec"` // 8 readers, store without a replica
	ReplicaLoadsPerSec float64       `json:"replica_loads_per_sec"` // 8 readers, store with a replica
	PlainLoad          float64       `json:"plain_load_us"`         // one reader, replica, no token
	TokenLoad          float64       `json:"token_load_us"`         // one reader, replica, token already replayed
	Pause              time.Duration `json:"pause"`
	TokenPhases        [3]phase      `json:"token_phases"`   // before, during and after the pause: readers with the latest token
	NoTokenPhases      [3]phase      `json:"notoken_phases"` // the same, readers without a token
}

// phase is the loads of one phase of the pause run and how many of them
// fell back to the primary.
type phase struct {
	Loads, Fallbacks int64
}

func (p phase) String() string {
	if p.Loads == 0 {
		return "no loads"
	}
	return fmt.Sprintf("%d/%d (%.1f%%)", p.Fallbacks, p.Loads, 100*float64(p.Fallbacks)/float64(p.Loads))
}

// runReplica measures the replica figures on a throwaway primary and a
// streaming replica of it, per side for d in rounds alternating rounds.
func runReplica(ctx context.Context, o *options, streams int, stdout io.Writer) (f *replicaFigures, err error) {
	primary, err := pgtest.StartThrowaway(ctx, &pgtest.Options{Durable: o.durable})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, primary.Stop()) }()
	replica, err := pgtest.StartReplica(ctx, primary, nil)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, replica.Stop()) }()
	e, err := newEnv(ctx, primary.URL(), scale{}, replicaReaders+4)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, e.close(ctx)) }()
	if err := e.seed(ctx, "r", streams, 10); err != nil {
		return nil, err
	}
	if err := replica.CatchUp(ctx); err != nil {
		return nil, err
	}
	replicaURL, err := replica.DatabaseURL(e.pool.Config().ConnString())
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(replicaURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns, cfg.MinConns = replicaReaders+4, replicaReaders+4
	rpool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer rpool.Close()
	reader := sdkmetric.NewManualReader()
	withReplica, err := mire.New(e.pool, &mire.Config{Replica: rpool, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		return nil, err
	}
	f = &replicaFigures{Pause: o.pause}
	load := func(store *mire.Store) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := mire.Load[Account](ctx, store, fmt.Sprintf("r%d", 1+rand.IntN(streams)))
			return err
		}
	}

	// Throughput: 8 readers on the primary alone, then with the replica.
	per := o.duration / time.Duration(o.rounds)
	var primaryLoads, replicaLoads int64
	for range o.rounds {
		n, err := hammer(ctx, replicaReaders, per, load(e.store))
		if err != nil {
			return nil, err
		}
		primaryLoads += n
		if n, err = hammer(ctx, replicaReaders, per, load(withReplica)); err != nil {
			return nil, err
		}
		replicaLoads += n
	}
	secs := (per * time.Duration(o.rounds)).Seconds()
	f.PrimaryLoadsPerSec, f.ReplicaLoadsPerSec = float64(primaryLoads)/secs, float64(replicaLoads)/secs

	// Latency: one reader, with and without a token the replica has replayed.
	tok, err := withReplica.Token(ctx)
	if err != nil {
		return nil, err
	}
	if err := replica.CatchUp(ctx); err != nil {
		return nil, err
	}
	tokenCtx := mire.WithToken(ctx, tok)
	var plain, token time.Duration
	var plainN, tokenN int64
	for range o.rounds {
		start := time.Now()
		n, err := hammer(ctx, 1, per, load(withReplica))
		if err != nil {
			return nil, err
		}
		plain, plainN = plain+time.Since(start), plainN+n
		start = time.Now()
		if n, err = hammer(tokenCtx, 1, per, load(withReplica)); err != nil {
			return nil, err
		}
		token, tokenN = token+time.Since(start), tokenN+n
	}
	f.PlainLoad = float64(plain.Microseconds()) / float64(plainN)
	f.TokenLoad = float64(token.Microseconds()) / float64(tokenN)
	if before := fallbackCount(ctx, reader); before != 0 {
		fmt.Fprintf(stdout, "note: %d fallbacks before the pause run\n", before)
	}

	// Fallbacks under a paused replica: a writer saves all along and
	// publishes the token of each save; 8 readers load with the latest
	// token (or none) before, during and after a 1 s pause of replay.
	for _, withToken := range []bool{true, false} {
		phases, err := pauseRun(ctx, e.store, withReplica, replica, reader, streams, f.Pause, withToken)
		if err != nil {
			return nil, err
		}
		if withToken {
			f.TokenPhases = phases
		} else {
			f.NoTokenPhases = phases
		}
	}
	return f, nil
}

// pauseRun loads with 8 readers for pause before, during and after a
// pause of the replica's replay, while a writer saves, and counts the
// loads and fallbacks of each phase.
func pauseRun(ctx context.Context, writerStore, store *mire.Store, replica *pgtest.Server, reader *sdkmetric.ManualReader, streams int, pause time.Duration, withToken bool) ([3]phase, error) {
	var phases [3]phase
	var latest atomic.Pointer[mire.Token]
	tok, err := store.Token(ctx)
	if err != nil {
		return phases, err
	}
	latest.Store(&tok)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var loads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, replicaReaders+1)
	wg.Go(func() { // the writer
		for ctx.Err() == nil {
			acc, err := mire.Load[Account](mire.WithPrimary(ctx), writerStore, fmt.Sprintf("r%d", 1+rand.IntN(streams)))
			if err == nil {
				err = acc.Record(Deposited{Amount: 1})
			}
			if err == nil {
				err = writerStore.Save(ctx, acc)
			}
			if err == nil {
				var t mire.Token
				if t, err = writerStore.Token(ctx); err == nil {
					latest.Store(&t)
				}
			}
			if err != nil && !errors.Is(err, mire.ErrConcurrency) && ctx.Err() == nil {
				errs <- err
				return
			}
		}
	})
	for range replicaReaders {
		wg.Go(func() {
			for ctx.Err() == nil {
				lctx := ctx
				if withToken {
					lctx = mire.WithToken(ctx, *latest.Load())
				}
				if _, err := mire.Load[Account](lctx, store, fmt.Sprintf("r%d", 1+rand.IntN(streams))); err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				loads.Add(1)
			}
		})
	}
	mark := func() phase { return phase{Loads: loads.Load(), Fallbacks: fallbackCount(ctx, reader)} }
	sleep := func() {
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
	marks := [4]phase{mark()}
	sleep()
	marks[1] = mark()
	err = replica.PauseReplay(ctx)
	if err == nil {
		sleep()
		marks[2] = mark()
		err = replica.ResumeReplay(ctx)
	}
	if err == nil {
		sleep()
		marks[3] = mark()
	}
	cancel()
	wg.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	for i := range phases {
		phases[i] = phase{Loads: marks[i+1].Loads - marks[i].Loads, Fallbacks: marks[i+1].Fallbacks - marks[i].Fallbacks}
	}
	return phases, err
}

// hammer runs op in n goroutines for d and returns how many ops finished.
func hammer(ctx context.Context, n int, d time.Duration, op func(context.Context) error) (int64, error) {
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	deadline := time.Now().Add(d)
	for range n {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := op(ctx); err != nil {
					errs <- err
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	return done.Load(), <-errs
}

// fallbackCount returns the sum of mire.replica.fallbacks so far.
func fallbackCount(ctx context.Context, reader *sdkmetric.ManualReader) int64 {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return 0
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "mire.replica.fallbacks" {
				for _, p := range sum.DataPoints {
					n += p.Value
				}
			}
		}
	}
	return n
}

// printReplica prints the replica figures.
func printReplica(w io.Writer, f *replicaFigures) {
	fmt.Fprintf(w, "Loads of a 10-event stream, %d readers: primary alone %.0f/s, primary + replica %.0f/s (ratio %.2f)\n",
		replicaReaders, f.PrimaryLoadsPerSec, f.ReplicaLoadsPerSec, f.ReplicaLoadsPerSec/f.PrimaryLoadsPerSec)
	fmt.Fprintf(w, "One reader on a current replica: %.0f µs a load without a token, %.0f µs with one (+%.0f µs)\n",
		f.PlainLoad, f.TokenLoad, f.TokenLoad-f.PlainLoad)
	fmt.Fprintf(w, "Fallbacks to the primary, %d readers, a writer saving all along, replay paused for %v:\n", replicaReaders, f.Pause)
	fmt.Fprintf(w, "  with the latest token: before %v, paused %v, after %v\n", f.TokenPhases[0], f.TokenPhases[1], f.TokenPhases[2])
	fmt.Fprintf(w, "  without a token:       before %v, paused %v, after %v\n", f.NoTokenPhases[0], f.NoTokenPhases[1], f.NoTokenPhases[2])
}
