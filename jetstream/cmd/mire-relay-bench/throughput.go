package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/mire-go/mire/projections"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

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

// message is one message of the relay's in a compact form: the raw
// publisher's source, held through the whole run. (As *nats.Msg values,
// 100,000 header maps would make every garbage collection of the relay's
// phase scan them too.)
type message struct {
	subject string
	header  []string // name, value, name, value, ...
	data    []byte
}

// messagesOf returns the messages the relay publishes for the log, built
// by the relay's own code (Relay.Message), for the raw publisher.
func messagesOf(ctx context.Context, store *mire.Store, js jetstream.JetStream) ([]message, error) {
	relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: "RAW", SubjectPrefix: "bench", Categories: []string{"order"}})
	if err != nil {
		return nil, err
	}
	var out []message
	for env, err := range store.ReadAll(ctx, nil) {
		if err != nil {
			return nil, err
		}
		m, err := relay.Message(env)
		if err != nil {
			return nil, err
		}
		c := message{subject: m.Subject, data: m.Data}
		for k, vs := range m.Header {
			for _, v := range vs {
				c.header = append(c.header, k, v)
			}
		}
		out = append(out, c)
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
func rawPublish(ctx context.Context, nc *nats.Conn, name string, msgs []message, inFlight int) (float64, string, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(inFlight))
	if err != nil {
		return 0, "", err
	}
	if err := createStream(ctx, js, name); err != nil {
		return 0, "", err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), name) }()
	// Every message is built before the clock starts: the publisher
	// only publishes.
	own := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		h := make(nats.Header, len(m.header)/2)
		for j := 0; j < len(m.header); j += 2 {
			h[m.header[j]] = []string{m.header[j+1]}
		}
		h.Set(jetstream.ExpectedStreamHeader, name)
		own[i] = &nats.Msg{Subject: name + "." + m.subject, Header: h, Data: m.data}
	}
	futures := make([]jetstream.PubAckFuture, 0, len(own))
	runtime.GC() // each side starts without the other's garbage
	cpu := startCPU()
	start := time.Now()
	for _, m := range own {
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return 0, "", err
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return 0, "", errors.New("not every message acknowledged within a minute")
	}
	elapsed := time.Since(start)
	cost := cpu.perMessage(len(own))
	for _, f := range futures {
		select {
		case err := <-f.Err():
			return 0, "", err
		default:
		}
	}
	return float64(len(own)) / elapsed.Seconds(), cost, nil
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
func relayPublish(ctx context.Context, store *mire.Store, js jetstream.JetStream, name string, o options) (float64, string, error) {
	if err := createStream(ctx, js, name); err != nil {
		return 0, "", err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), name) }()
	relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, SubjectPrefix: name + ".bench", Categories: []string{"order"},
		BatchSize: o.batch, MaxInFlight: o.inFlight, Runner: &projections.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		return 0, "", err
	}
	runtime.GC() // each side starts without the other's garbage
	cpu := startCPU()
	start := time.Now()
	if err := relay.CatchUp(ctx); err != nil {
		return 0, "", err
	}
	elapsed := time.Since(start)
	cost := cpu.perMessage(o.events)
	st, err := relay.Status(ctx)
	if err != nil {
		return 0, "", err
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, "", err
	}
	if got := s.CachedInfo().State.Msgs; got != uint64(st.Delivered) {
		return 0, "", fmt.Errorf("stream holds %d messages, relay delivered %d", got, st.Delivered)
	}
	return float64(st.Delivered) / elapsed.Seconds(), cost, nil
}
