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
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/mire-go/mire/jetstream/natstest"
	"github.com/mire-go/mire/pgtest"
	"github.com/mire-go/mire/projections"
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
	msgs, err := messagesOf(ctx, store, js)
	if err != nil {
		return err
	}
	var relayBest, rawBest float64
	var ratios []float64
	for round := range o.rounds {
		raw, err := rawPublish(ctx, nc, fmt.Sprintf("RAW%d", round), msgs, o.inFlight)
		if err != nil {
			return fmt.Errorf("raw publisher: %w", err)
		}
		if o.cpuProfile != "" && round == 0 {
			f, err := os.Create(o.cpuProfile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
		}
		rel, err := relayPublish(ctx, store, js, fmt.Sprintf("RELAY%d", round), o)
		if o.cpuProfile != "" && round == 0 {
			pprof.StopCPUProfile()
		}
		if err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		nop, err := noopProjection(ctx, store, round, o)
		if err != nil {
			return fmt.Errorf("no-op projection: %w", err)
		}
		fmt.Fprintf(out, "round %d: relay %7.0f msgs/s   raw nats.go async publisher %7.0f msgs/s   ratio %.2f   (no-op projection %7.0f events/s)\n",
			round+1, rel, raw, rel/raw, nop)
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

// prefill writes o.events single-event appends, spread over o.streams
// streams (orders), 500 streams per Save (one round trip).
func prefill(ctx context.Context, store *mire.Store, o options) error {
	roots := make([]*mire.Root[Order], o.streams)
	for i := range roots {
		var err error
		if roots[i], err = mire.Create[Order](store, "o"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	next := 0
	for written := 0; written < o.events; {
		n := min(500, o.events-written, o.streams)
		batch := make([]mire.Saveable, 0, n)
		for range n {
			r := roots[next]
			next = (next + 7919) % o.streams // every stream in turn, out of order (7919 is prime)
			if err := r.Record(Placed{Customer: "c" + strconv.Itoa(next%97), Amount: int64(1 + next%50)}); err != nil {
				return err
			}
			batch = append(batch, r)
		}
		if err := store.Save(ctx, batch...); err != nil {
			return err
		}
		written += n
	}
	return nil
}

// messagesOf returns the messages the relay publishes for the log, built
// by the relay's own code (Relay.Message), for the raw publisher.
func messagesOf(ctx context.Context, store *mire.Store, js jetstream.JetStream) ([]*nats.Msg, error) {
	relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: "RAW", SubjectPrefix: "bench", Categories: []string{"order"}})
	if err != nil {
		return nil, err
	}
	var out []*nats.Msg
	for env, err := range store.ReadAll(ctx, nil) {
		if err != nil {
			return nil, err
		}
		m, err := relay.Message(env)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func createStream(ctx context.Context, js jetstream.JetStream, name string) error {
	_ = js.DeleteStream(ctx, name)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.FileStorage})
	return err
}

// rawPublish publishes msgs to a new stream the way nats.go's
// asynchronous publishing is meant to be used: PublishMsgAsync for every
// message (it blocks while inFlight are unacknowledged), then
// PublishAsyncComplete. It returns messages/s.
func rawPublish(ctx context.Context, nc *nats.Conn, name string, msgs []*nats.Msg, inFlight int) (float64, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(inFlight))
	if err != nil {
		return 0, err
	}
	if err := createStream(ctx, js, name); err != nil {
		return 0, err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), name) }()
	own := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		h := nats.Header{}
		for k, v := range m.Header {
			h[k] = v
		}
		h.Set(jetstream.ExpectedStreamHeader, name)
		own[i] = &nats.Msg{Subject: name + "." + m.Subject, Header: h, Data: m.Data}
	}
	futures := make([]jetstream.PubAckFuture, 0, len(own))
	start := time.Now()
	for _, m := range own {
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return 0, err
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return 0, errors.New("not every message acknowledged within a minute")
	}
	elapsed := time.Since(start)
	for _, f := range futures {
		select {
		case err := <-f.Err():
			return 0, err
		default:
		}
	}
	return float64(len(own)) / elapsed.Seconds(), nil
}

// noopHandler is a projection handler that does nothing.
type noopHandler struct{}

func (noopHandler) Handle(context.Context, pgx.Tx, mire.Envelope) error        { return nil }
func (noopHandler) HandleBatch(context.Context, pgx.Tx, []mire.Envelope) error { return nil }

// noopProjection runs a projection with a handler that does nothing over
// the whole log, in batches of the relay's size, and returns events/s: the
// relay's ceiling, what the projections runner costs by itself (reading,
// ordering, checkpointing with a durable commit per batch).
func noopProjection(ctx context.Context, store *mire.Store, round int, o options) (float64, error) {
	r, err := projections.NewRunner(store, &projections.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		projections.Projection{Name: "noop" + strconv.Itoa(round), Categories: []string{"order"}, BatchSize: o.batch, Handler: noopHandler{}})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := r.CatchUp(ctx); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	st, err := r.Status(ctx, "noop"+strconv.Itoa(round))
	if err != nil {
		return 0, err
	}
	return float64(st.Delivered) / elapsed.Seconds(), nil
}

// relayPublish relays the whole log to a new stream with CatchUp and
// returns messages/s.
func relayPublish(ctx context.Context, store *mire.Store, js jetstream.JetStream, name string, o options) (float64, error) {
	if err := createStream(ctx, js, name); err != nil {
		return 0, err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), name) }()
	relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, SubjectPrefix: name + ".bench", Categories: []string{"order"},
		BatchSize: o.batch, MaxInFlight: o.inFlight, Runner: &projections.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := relay.CatchUp(ctx); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	st, err := relay.Status(ctx)
	if err != nil {
		return 0, err
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	if got := s.CachedInfo().State.Msgs; got != uint64(st.Delivered) {
		return 0, fmt.Errorf("stream holds %d messages, relay delivered %d", got, st.Delivered)
	}
	return float64(st.Delivered) / elapsed.Seconds(), nil
}

// latency runs the relay while writers append o.rate events per second
// for o.duration, and measures, for each event, the time from its commit
// (Append returned) to its arrival at a consumer of the stream (JetStream
// delivers a message once it is stored).
func latency(ctx context.Context, store *mire.Store, js jetstream.JetStream, o options) (p50, p99 time.Duration, n int, err error) {
	name := "LATENCY"
	if err := createStream(ctx, js, name); err != nil {
		return 0, 0, 0, err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), name) }()
	relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, SubjectPrefix: name, Categories: []string{"lat"},
		Runner: &projections.Config{PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		return 0, 0, 0, err
	}
	var mu sync.Mutex
	committed := map[string]time.Time{}
	var samples []time.Duration
	arrived := map[string]time.Time{}
	cons, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, 0, 0, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		mu.Lock()
		arrived[m.Headers().Get(jetstream.MsgIDHeader)] = now
		mu.Unlock()
	})
	if err != nil {
		return 0, 0, 0, err
	}
	defer cc.Stop()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()

	// Writers: o.rate single-event appends per second, over 4 goroutines.
	const writers = 4
	var wg sync.WaitGroup
	end := time.Now().Add(o.duration)
	var writeErr error
	var errOnce sync.Once
	for w := range writers {
		wg.Go(func() {
			interval := time.Duration(float64(time.Second) * writers / float64(o.rate))
			next := time.Now()
			for i := 0; time.Now().Before(end); i++ {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				id := fmt.Sprintf("w%d-%d", w, i%500)
				ev := mire.WithID(uuid.Must(uuid.NewV7()), LatPlaced{Amount: 1})
				if _, err := store.Append(ctx, "lat-"+id, mire.Any, ev); err != nil {
					errOnce.Do(func() { writeErr = err })
					return
				}
				at := time.Now()
				mu.Lock()
				committed[ev.ID().String()] = at
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if writeErr != nil {
		return 0, 0, 0, writeErr
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		all := len(arrived) >= len(committed)
		mu.Unlock()
		if all {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, 0, errors.New("not every event arrived within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for id, c := range committed {
		samples = append(samples, arrived[id].Sub(c))
	}
	slices.Sort(samples)
	return samples[len(samples)/2], samples[len(samples)*99/100], len(samples), nil
}

// LatPlaced is the latency phase's event, in a category of its own.
type LatPlaced struct {
	mire.Event `mire:"entity=lat,type=Placed"`
	Amount     int64 `json:"amount"`
}

func init() { mire.MustRegister(LatPlaced{}) }
