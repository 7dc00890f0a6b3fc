package jetstream

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The headers a relay sets on every message, beside Nats-Msg-Id (the
// event's or message's id) and, when the event was written under a span,
// the W3C traceparent and tracestate.
const (
	HeaderStream        = "Mire-Stream"         // the stream of the log, "category-id" ("outbox-key" for messages)
	HeaderVersion       = "Mire-Version"        // the version in that stream
	HeaderPosition      = "Mire-Position"       // the global position in the log
	HeaderType          = "Mire-Type"           // the stored type (mire.MessageType for messages)
	HeaderSchemaVersion = "Mire-Schema-Version" // the payload's schema version
	HeaderCorrelationID = "Mire-Correlation-Id" // Metadata.CorrelationID, if set
	HeaderCausationID   = "Mire-Causation-Id"   // Metadata.CausationID, if set
	HeaderActor         = "Mire-Actor"          // Metadata.Actor, if set
	HeaderRecordedAt    = "Mire-Recorded-At"    // when it was written, RFC 3339 with nanoseconds
	HeaderTraceParent   = "traceparent"
	HeaderTraceState    = "tracestate"
)

// Message returns the message the relay publishes for env: its subject
// (Config.Subject), its headers (a mire.Message's own, then the relay's,
// which win: Nats-Msg-Id, Nats-Expected-Stream and those named Header...)
// and its payload (the event's JSON as stored, or the message's payload).
func (r *Relay) Message(env mire.Envelope) (*nats.Msg, error) {
	subject, err := r.subj(env)
	if err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	if !validSubject(subject) {
		return nil, fmt.Errorf("subject %q is not a NATS subject without wildcards", subject)
	}
	md := env.Metadata
	// The values the relay formats share one string, and all values one
	// backing array: a message costs a few allocations, not one per header.
	var buf [128]byte
	b := appendUUID(buf[:0], env.ID)
	idEnd := len(b)
	b = strconv.AppendInt(b, env.Version, 10)
	versionEnd := len(b)
	b = strconv.AppendInt(b, env.Position, 10)
	positionEnd := len(b)
	b = strconv.AppendInt(b, int64(env.SchemaVersion), 10)
	schemaEnd := len(b)
	b = env.RecordedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	formatted := string(b)
	// Sized exactly: a map of at most 8 headers, the common case, is one
	// group, much cheaper to build than a larger one.
	m, isMessage := env.Data.(mire.Message)
	n := 8 + len(m.Headers)
	for _, v := range [...]string{md.CorrelationID, md.CausationID, md.Actor, md.TraceParent, md.TraceState} {
		if v != "" {
			n++
		}
	}
	vals := make([]string, 0, n)
	h := make(nats.Header, n)
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	msg := &nats.Msg{Subject: subject, Header: h}
	if isMessage {
		for k, v := range m.Headers {
			h[k] = []string{v}
		}
		msg.Data = m.Payload
	} else {
		msg.Data = env.Raw
	}
	set(jetstream.MsgIDHeader, formatted[:idEnd])
	set(jetstream.ExpectedStreamHeader, r.cfg.Stream)
	set(HeaderStream, env.StreamID)
	set(HeaderVersion, formatted[idEnd:versionEnd])
	set(HeaderPosition, formatted[versionEnd:positionEnd])
	set(HeaderType, env.Type)
	set(HeaderSchemaVersion, formatted[positionEnd:schemaEnd])
	set(HeaderRecordedAt, formatted[schemaEnd:])
	for _, kv := range [...]struct{ k, v string }{{HeaderCorrelationID, md.CorrelationID}, {HeaderCausationID, md.CausationID},
		{HeaderActor, md.Actor}, {HeaderTraceParent, md.TraceParent}, {HeaderTraceState, md.TraceState}} {
		if kv.v != "" {
			set(kv.k, kv.v)
		}
	}
	return msg, nil
}

// validSubject reports whether s is a NATS subject without wildcards:
// non-empty dot-separated tokens without white space, '*' or '>'. (It runs
// for every message, so it is no regexp.)
func validSubject(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r', '\f', '\v', '*', '>':
			return false
		case '.':
			if s[i+1] == '.' {
				return false
			}
		}
	}
	return true
}

// eventError is a message the relay cannot build: the event is at fault,
// not the broker, so retrying the batch within it is pointless.
type eventError struct {
	env mire.Envelope
	err error
}

func (e *eventError) Error() string {
	return fmt.Sprintf("mire/jetstream: %s v%d (position %d, type %s): %v", e.env.StreamID, e.env.Version, e.env.Position, e.env.Type, e.err)
}

func (e *eventError) Unwrap() error { return e.err }

// inFlight is a message published and not yet acknowledged: the event it
// carries (an index into the batch), its future and when it was sent.
type inFlight struct {
	event int
	f     jetstream.PubAckFuture
	at    time.Time
}

// publish publishes events (in delivery order: each stream's in version
// order) and returns when JetStream has acknowledged every one, or with an
// error when it could not within PublishTimeout.
//
// Only the oldest unacknowledged message of a stream of the log is in
// flight: the next message of a stream is published only after JetStream
// acknowledged its predecessor, so a publish that fails (and is retried)
// can never be overtaken by a later message of its stream, whatever the
// broker stored of the messages in flight. Messages of different streams
// are in flight together, up to MaxInFlight. A failed publish goes back to
// the front and is retried, after a pause that doubles while nothing
// succeeds (a broker outage), until PublishTimeout.
//
// JetStream acknowledges the messages of one connection in the order it
// received them, so publish waits on the oldest message in flight, then
// takes every later acknowledgement that has come, then publishes the
// next messages in one burst: the client's writes and the broker's reads
// carry many messages each. Messages are built as they are published,
// so the broker has work while the rest are built.
func (r *Relay) publish(ctx context.Context, events []mire.Envelope) error {
	// next[i] is the index of the event after events[i] in its stream, or
	// -1; ready holds the events that may be published, in delivery order:
	// at first each stream's first.
	next := make([]int, len(events))
	ready := make([]int, 0, len(events))
	last := make(map[string]int, len(events))
	for i, env := range events {
		next[i] = -1
		if j, ok := last[env.StreamID]; ok {
			next[j] = i
		} else {
			ready = append(ready, i)
		}
		last[env.StreamID] = i
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(r.cfg.PublishTimeout)
	flights := make([]inFlight, 0, min(r.cfg.MaxInFlight, len(events)))
	left := len(events)
	var lastErr error
	failures := 0                  // in a row, for the pause
	acked, dups, failed := 0, 0, 0 // for the instruments
	defer func() { r.tel.record(ctx, acked, dups, failed) }()
	var pauseUntil time.Time
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	// done takes the outcome of the oldest message in flight.
	done := func(ack *jetstream.PubAck, err error) {
		fl := flights[0]
		flights = flights[1:]
		if err != nil {
			failures++
			failed++
			lastErr = &eventError{env: events[fl.event], err: err}
			pause := min(10*time.Millisecond<<min(failures-1, 8), time.Second)
			pauseUntil = time.Now().Add(pause)
			ready = slices.Insert(ready, 0, fl.event) // first again
			if failures == 1 || failures%20 == 0 {
				r.log.WarnContext(ctx, "mire/jetstream: relay: publish failed, retrying", "relay", r.cfg.Name, "failures", failures, "err", lastErr)
			}
			return
		}
		failures, left, acked = 0, left-1, acked+1
		if ack != nil && ack.Duplicate {
			dups++
		}
		if n := next[fl.event]; n >= 0 {
			ready = append(ready, n)
		}
	}
	// settled takes the outcome of the oldest message in flight if it has
	// come, and reports whether it had. It looks for an error only when no
	// acknowledgement has come: each look takes the JetStream context's
	// lock and, the first time, makes a channel.
	settled := func() bool {
		select {
		case ack := <-flights[0].f.Ok():
			done(ack, nil)
			return true
		default:
		}
		select {
		case err := <-flights[0].f.Err():
			done(nil, err)
			return true
		default:
			return false
		}
	}

	for left > 0 {
		now := time.Now()
		stopping := now.After(deadline) || ctx.Err() != nil
		if !stopping && now.After(pauseUntil) {
			for len(flights) < r.cfg.MaxInFlight && len(ready) > 0 {
				i := ready[0]
				ready = ready[1:]
				msg, err := r.Message(events[i])
				if err != nil {
					r.drain(flights)
					return &eventError{env: events[i], err: err}
				}
				f, err := r.js.PublishMsgAsync(msg)
				if err != nil {
					// Not sent: it waits for its turn like a failed one.
					flights = append(flights, inFlight{event: i, f: failedFuture{err}, at: now})
					break
				}
				flights = append(flights, inFlight{event: i, f: f, at: now})
			}
		}
		if len(flights) == 0 {
			if stopping {
				break
			}
			// Everything waits for the pause after a failure.
			timer.Reset(time.Until(pauseUntil))
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
			}
			continue
		}
		if !settled() {
			// No wait outlives the batch's deadline: a batch must end
			// within the lease.
			timer.Reset(max(min(r.cfg.AckTimeout-time.Since(flights[0].at), time.Until(deadline)), time.Millisecond))
			select {
			case ack := <-flights[0].f.Ok():
				done(ack, nil)
			case err := <-flights[0].f.Err():
				done(nil, err)
			case <-timer.C:
				done(nil, jetstream.ErrAsyncPublishTimeout)
			case <-ctx.Done():
				done(nil, ctx.Err())
			}
			timer.Stop() // since Go 1.23 no stale tick survives Stop or Reset
		}
		for len(flights) > 0 && settled() {
		}
	}
	if left == 0 {
		return nil
	}
	r.drain(flights)
	if err := ctx.Err(); err != nil {
		return err
	}
	err := fmt.Errorf("mire/jetstream: relay %q: %d of %d messages not acknowledged within PublishTimeout %v: %w",
		r.cfg.Name, left, len(events), r.cfg.PublishTimeout, lastErr)
	if errors.Is(lastErr, nats.ErrMaxPayload) || errors.Is(lastErr, nats.ErrBadSubject) {
		return err // the message can never be published: let the projection halt on it
	}
	// A broker that is down or slow: the runner retries the batch for as
	// long as that lasts, without counting it towards a halt.
	return projections.Transient(err)
}

// drain waits out the messages in flight, each until its acknowledgement,
// its error or AckTimeout after it was sent: none may outlive the batch.
func (r *Relay) drain(flights []inFlight) {
	for _, fl := range flights {
		t := time.NewTimer(max(r.cfg.AckTimeout-time.Since(fl.at), 0))
		select {
		case <-fl.f.Ok():
		case <-fl.f.Err():
		case <-t.C:
		}
		t.Stop()
	}
}

// failedFuture is a publish that failed before it was sent.
type failedFuture struct{ err error }

func (f failedFuture) Ok() <-chan *jetstream.PubAck { return nil }

func (f failedFuture) Err() <-chan error {
	c := make(chan error, 1)
	c <- f.err
	return c
}

func (f failedFuture) Msg() *nats.Msg { return nil }

// appendUUID appends id to b in its canonical text form, as id.String()
// writes it, without a string of its own.
func appendUUID(b []byte, id uuid.UUID) []byte {
	var text [36]byte
	hex.Encode(text[0:8], id[0:4])
	text[8] = '-'
	hex.Encode(text[9:13], id[4:6])
	text[13] = '-'
	hex.Encode(text[14:18], id[6:8])
	text[18] = '-'
	hex.Encode(text[19:23], id[8:10])
	text[23] = '-'
	hex.Encode(text[24:], id[10:])
	return append(b, text[:]...)
}
