// Command mire-relay-bench measures the JetStream relay against a raw
// nats.go asynchronous publisher sending the same messages (subjects,
// headers, Nats-Msg-Id, payloads) to a stream of the same configuration on
// the same server, in the same run, and reports the ratio, beside what a
// projection with a handler that does nothing reads in the same run (the
// relay's ceiling: the projections runner's own cost); then the
// commit-to-broker latency (p50, p99) under a steady write load.
//
//	go run ./cmd/mire-relay-bench           # in the jetstream module
//	go run ./cmd/mire-relay-bench -short    # a quick run
//
// It starts a throwaway PostgreSQL with durable commits (unless
// DATABASE_URL names a server, on which it creates and drops a database)
// and an embedded NATS server with JetStream file storage in a temporary
// directory (unless NATS_URL names one).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/mire-go/mire/jetstream/natstest"
	"github.com/mire-go/mire/pgtest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Placed is the benchmark's event: an order placed.
type Placed struct {
	mire.Event `mire:"entity=order,type=Placed"`
	Customer   string `json:"customer"`
	Amount     int64  `json:"amount"`
}

// Order is the benchmark's aggregate.
type Order struct{ Amount int64 }

// Category implements mire.Aggregate.
func (*Order) Category() string { return "order" }

// Apply implements mire.Aggregate.
func (o *Order) Apply(event any) {
	if e, ok := event.(Placed); ok {
		o.Amount += e.Amount
	}
}

func init() { mire.MustRegister(Placed{}) }

type options struct {
	events, streams, rounds int
	rate                    int
	duration                time.Duration
	batch, inFlight         int
	cpuProfile              string
}

func main() {
	var o options
	short := flag.Bool("short", false, "a quick run: fewer events, a shorter latency phase")
	flag.IntVar(&o.events, "events", 100_000, "events in the log for the throughput phase")
	flag.IntVar(&o.streams, "streams", 10_000, "streams (orders) the events are spread over")
	flag.IntVar(&o.rounds, "rounds", 5, "throughput rounds, each running the raw publisher then the relay")
	flag.IntVar(&o.rate, "rate", 2_000, "events per second written during the latency phase")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of the latency phase")
	flag.IntVar(&o.batch, "batch", mjs.BatchSizeDefault, "the relay's BatchSize")
	flag.IntVar(&o.inFlight, "inflight", mjs.MaxInFlightDefault, "the relay's MaxInFlight, and the raw publisher's bound")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the relay's rounds to this file")
	flag.Parse()
	o.cpuProfile = *cpuProfile
	if *short {
		o.events, o.rounds, o.duration = 20_000, 2, 3*time.Second
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mire-relay-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) error {
	pg, err := pgServer(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = pg.Stop() }()
	url, drop, err := pgtest.NewDatabase(ctx, pg.URL())
	if err != nil {
		return err
	}
	defer func() { _ = drop(context.WithoutCancel(ctx)) }()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	mire.ConfigurePool(cfg)
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := mire.New(pool, &mire.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	ns, err := natstest.Start()
	if err != nil {
		return err
	}
	defer ns.Stop()
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "writing %d events over %d streams ...\n", o.events, o.streams)
	if err := prefill(ctx, store, o); err != nil {
		return err
	}
	// Statistics as autovacuum keeps them on a live log: without them the
	// planner takes the fresh log for empty and reads it with a bitmap
	// scan and a sort of everything after the cursor, for every batch.
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE mire.events`); err != nil {
		return err
	}
	msgs, err := messagesOf(ctx, store, js)
	if err != nil {
		return err
	}
	var relayBest, rawBest float64
	var ratios []float64
	for round := range o.rounds {
		var raw, rel float64
		var rawCost, relCost string
		runRaw := func() error {
			var err error
			raw, rawCost, err = rawPublish(ctx, nc, fmt.Sprintf("RAW%d", round), msgs, o.inFlight)
			if err != nil {
				return fmt.Errorf("raw publisher: %w", err)
			}
			return nil
		}
		runRelay := func() error {
			if o.cpuProfile != "" && round == 0 {
				f, err := os.Create(o.cpuProfile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			var err error
			rel, relCost, err = relayPublish(ctx, store, js, fmt.Sprintf("RELAY%d", round), o)
			if err != nil {
				return fmt.Errorf("relay: %w", err)
			}
			return nil
		}
		// The sides take turns going first (raw, relay; relay, raw; ...),
		// so that what one leaves behind (files the broker deletes,
		// garbage) falls on both alike.
		first, second := runRaw, runRelay
		if round%2 == 1 {
			first, second = runRelay, runRaw
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
		nop, err := noopProjection(ctx, store, round, o)
		if err != nil {
			return fmt.Errorf("no-op projection: %w", err)
		}
		fmt.Fprintf(out, "round %d: relay %7.0f msgs/s   raw nats.go async publisher %7.0f msgs/s   ratio %.2f   (no-op projection %7.0f events/s)\n",
			round+1, rel, raw, rel/raw, nop)
		if relCost != "" {
			fmt.Fprintf(out, "         CPU per message: relay %s, raw publisher %s\n", relCost, rawCost)
		}
		relayBest, rawBest = max(relayBest, rel), max(rawBest, raw)
		ratios = append(ratios, rel/raw)
	}
	// Each round's two sides run back to back, so the ratio of a round is
	// fairer than the ratio of the bests on a machine whose load varies.
	slices.Sort(ratios)
	fmt.Fprintf(out, "throughput (%d messages, best of %d rounds): relay %.0f msgs/s, raw %.0f msgs/s; median ratio of the rounds %.2f\n",
		len(msgs), o.rounds, relayBest, rawBest, ratios[len(ratios)/2])

	p50, p99, n, err := latency(ctx, store, js, o)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	fmt.Fprintf(out, "commit-to-broker latency at %d events/s for %v (%d events): p50 %.1f ms, p99 %.1f ms\n",
		o.rate, o.duration, n, ms(p50), ms(p99))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pgServer(ctx context.Context) (*pgtest.Server, error) {
	if os.Getenv(pgtest.EnvDatabase) != "" {
		return pgtest.Start(ctx, pgtest.EnvDatabase)
	}
	return pgtest.StartThrowaway(ctx, &pgtest.Options{Durable: true})
}
