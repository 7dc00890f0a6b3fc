package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/mire-go/mire/projections"
	"github.com/nats-io/nats.go/jetstream"
)

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
