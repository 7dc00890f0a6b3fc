package jetstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/mire-go/mire"
	"github.com/nats-io/nats.go/jetstream"
)

// NakDelayDefault is how long a message whose handler failed waits before
// JetStream delivers it again, unless ConsumeOpts.NakDelay says otherwise.
const NakDelayDefault = time.Second

// Delivery is one message a relay published, as Consume hands it to a
// handler: the event (or outbox message) rebuilt from the message's
// headers and payload, and the message itself.
type Delivery struct {
	// Envelope is the event as the relay read it: ID is the message id
	// (Nats-Msg-Id), the key to make a handler idempotent (JetStream
	// delivers a message again if its ack is lost); stream, version,
	// position, type, schema version, recording time and metadata
	// (correlation, causation, actor, trace context) come from the
	// headers; Raw is the payload; Data is decoded through the registry
	// (for an outbox message, a mire.Message), unless ConsumeOpts.Raw.
	mire.Envelope
	// Subject is the message's subject.
	Subject string
	// Msg is the JetStream message.
	Msg jetstream.Msg
}

// Handler handles one delivery. A nil error acknowledges the message; an
// error makes JetStream deliver it again after ConsumeOpts.NakDelay.
type Handler func(ctx context.Context, d Delivery) error

// ConsumeOpts are Consume's options. A nil *ConsumeOpts means all
// defaults.
type ConsumeOpts struct {
	// Registry decodes the events. Defaults to mire.DefaultRegistry().
	Registry *mire.Registry
	// Raw leaves Delivery.Data nil: the handler decodes Raw itself.
	// Defaults to false: Data holds the decoded event.
	Raw bool
	// NakDelay is how long a message waits to be delivered again after its
	// handler failed, or after it could not be decoded (newer code, with
	// its type registered, may take it). Defaults to NakDelayDefault.
	NakDelay time.Duration
	// Logger receives the failures of handlers, decoding and acks.
	// Defaults to slog.Default().
	Logger *slog.Logger
}

// Consume receives the messages of consumer (a durable JetStream consumer
// on a relay's stream, typically with explicit acks) one at a time, hands
// each to handler, and acknowledges it when handler returns nil. It
// returns nil when ctx ends, or an error if the consumer was deleted or
// cannot be read at all; a broker outage is waited out.
//
// Delivery is at least once: a message whose ack is lost, or whose handler
// fails, is delivered again, so handler must be idempotent; Delivery.ID is
// the message's stable id for that. A message that is not a relay's (no
// Mire-Stream header) or that the registry cannot decode is not handed
// to handler: it is logged and delivered again after NakDelay.
func Consume(ctx context.Context, consumer jetstream.Consumer, handler Handler, opts *ConsumeOpts) error {
	switch {
	case consumer == nil:
		return fmt.Errorf("mire/jetstream: consume: consumer is nil")
	case handler == nil:
		return fmt.Errorf("mire/jetstream: consume: handler is nil")
	}
	var o ConsumeOpts
	if opts != nil {
		o = *opts
	}
	if o.NakDelay < 0 {
		return fmt.Errorf("mire/jetstream: consume: negative NakDelay %v", o.NakDelay)
	}
	o.Registry = cmp.Or(o.Registry, mire.DefaultRegistry())
	o.NakDelay = cmp.Or(o.NakDelay, NakDelayDefault)
	o.Logger = cmp.Or(o.Logger, slog.Default())
	// A missing heartbeat (a broker outage) must not end Consume: the
	// iterator resumes by itself after the reconnect.
	it, err := consumer.Messages(jetstream.WithMessagesErrOnMissingHeartbeat(false))
	if err != nil {
		return fmt.Errorf("mire/jetstream: consume: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err == nil:
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return nil
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrBadRequest):
			return fmt.Errorf("mire/jetstream: consume: %w", err)
		default:
			o.Logger.WarnContext(ctx, "mire/jetstream: consume: next message; retrying", "err", err)
			sleep(ctx, o.NakDelay)
			continue
		}
		d, err := Decode(msg, &o)
		if err != nil {
			o.Logger.WarnContext(ctx, "mire/jetstream: consume: cannot decode; delivered again later", "subject", msg.Subject(), "err", err)
			_ = msg.NakWithDelay(o.NakDelay)
			continue
		}
		if err := handle(ctx, handler, d); err != nil {
			o.Logger.WarnContext(ctx, "mire/jetstream: consume: handler failed; delivered again later", "id", d.ID, "stream", d.StreamID, "version", d.Version, "err", err)
			_ = msg.NakWithDelay(o.NakDelay)
			continue
		}
		if err := msg.Ack(); err != nil {
			o.Logger.WarnContext(ctx, "mire/jetstream: consume: ack", "id", d.ID, "err", err)
		}
	}
}

// sleep waits for d or the end of ctx.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handle calls handler, turning a panic into an error.
func handle(ctx context.Context, handler Handler, d Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return handler(ctx, d)
}

// Decode rebuilds the Delivery of msg, a message a relay published,
// decoding its payload through opts.Registry unless opts.Raw (opts may be
// nil: the default registry). Consume calls it; it is for consumers that
// receive messages their own way.
func Decode(msg jetstream.Msg, opts *ConsumeOpts) (Delivery, error) {
	var o ConsumeOpts
	if opts != nil {
		o = *opts
	}
	h := msg.Headers()
	d := Delivery{Subject: msg.Subject(), Msg: msg}
	env := &d.Envelope
	env.StreamID = h.Get(HeaderStream)
	category, _, ok := strings.Cut(env.StreamID, "-")
	if !ok {
		return Delivery{}, fmt.Errorf("mire/jetstream: message on %q: %s %q is not a stream id: not a message of a relay", msg.Subject(), HeaderStream, env.StreamID)
	}
	env.Category, env.Type, env.Raw = category, h.Get(HeaderType), msg.Data()
	var err error
	if env.ID, err = uuid.Parse(h.Get(jetstream.MsgIDHeader)); err != nil {
		return Delivery{}, fmt.Errorf("mire/jetstream: message %s v%s: message id %q: %w", env.StreamID, h.Get(HeaderVersion), h.Get(jetstream.MsgIDHeader), err)
	}
	ints := []struct {
		name string
		dst  *int64
	}{{HeaderVersion, &env.Version}, {HeaderPosition, &env.Position}}
	for _, f := range ints {
		if *f.dst, err = strconv.ParseInt(h.Get(f.name), 10, 64); err != nil {
			return Delivery{}, fmt.Errorf("mire/jetstream: message %s: header %s %q: %w", env.ID, f.name, h.Get(f.name), err)
		}
	}
	if env.SchemaVersion, err = strconv.Atoi(h.Get(HeaderSchemaVersion)); err != nil {
		return Delivery{}, fmt.Errorf("mire/jetstream: message %s: header %s %q: %w", env.ID, HeaderSchemaVersion, h.Get(HeaderSchemaVersion), err)
	}
	if at := h.Get(HeaderRecordedAt); at != "" {
		if env.RecordedAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return Delivery{}, fmt.Errorf("mire/jetstream: message %s: header %s %q: %w", env.ID, HeaderRecordedAt, at, err)
		}
	}
	env.Metadata = mire.Metadata{CorrelationID: h.Get(HeaderCorrelationID), CausationID: h.Get(HeaderCausationID),
		Actor: h.Get(HeaderActor), TraceParent: h.Get(HeaderTraceParent), TraceState: h.Get(HeaderTraceState)}
	if o.Raw {
		return d, nil
	}
	if env.Type == mire.MessageType {
		// The payload is the message's, not its stored form: rebuild it.
		m := mire.Message{ID: env.ID, Subject: d.Subject, Key: env.AggregateID(), Payload: env.Raw}
		for k, vs := range h {
			if len(vs) > 0 && !relayHeader(k) {
				if m.Headers == nil {
					m.Headers = map[string]string{}
				}
				m.Headers[k] = vs[0]
			}
		}
		env.Data = m
		return d, nil
	}
	if err := cmp.Or(o.Registry, mire.DefaultRegistry()).Decode(env); err != nil {
		return Delivery{}, err
	}
	return d, nil
}

// relayHeader reports whether k is a header the relay sets.
func relayHeader(k string) bool {
	switch k {
	case jetstream.MsgIDHeader, jetstream.ExpectedStreamHeader, HeaderTraceParent, HeaderTraceState:
		return true
	}
	return strings.HasPrefix(k, "Mire-")
}
