package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

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
	// One backing array for the header values: a message costs a few
	// allocations, not one per header.
	vals := make([]string, 0, 15)
	h := make(nats.Header, 15)
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	msg := &nats.Msg{Subject: subject, Header: h}
	if m, ok := env.Data.(mire.Message); ok {
		for k, v := range m.Headers {
			h[k] = []string{v}
		}
		msg.Data = m.Payload
	} else {
		msg.Data = env.Raw
	}
	set(jetstream.MsgIDHeader, env.ID.String())
	set(jetstream.ExpectedStreamHeader, r.cfg.Stream)
	set(HeaderStream, env.StreamID)
	set(HeaderVersion, strconv.FormatInt(env.Version, 10))
	set(HeaderPosition, strconv.FormatInt(env.Position, 10))
	set(HeaderType, env.Type)
	set(HeaderSchemaVersion, strconv.Itoa(env.SchemaVersion))
	set(HeaderRecordedAt, env.RecordedAt.UTC().Format(time.RFC3339Nano))
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

// published is the outcome of one publish: the stream queue it belongs to
// and its error, if any.
type published struct {
	queue int
	err   error
	dup   bool // JetStream had stored it already
}

// publish publishes events (in delivery order: each stream's in version
// order) and returns when JetStream has acknowledged every one, or with an
// error when it could not within PublishTimeout.
//
// Each stream of the log has a queue, and only its head is in flight: the
// next message of a stream is published only after JetStream acknowledged
// its predecessor, so a publish that fails (and is retried) can never be
// overtaken by a later message of its stream, whatever the broker stored
// of the messages in flight. Messages of different streams are in flight
// together, up to MaxInFlight. A failed publish goes back to the head of
// its queue and is retried, after a pause that doubles while nothing
// succeeds (a broker outage), until PublishTimeout.
func (r *Relay) publish(ctx context.Context, events []mire.Envelope) error {
	type queue struct {
		msgs []*nats.Msg
		envs []mire.Envelope
		next int
	}
	var queues []*queue
	byStream := make(map[string]int)
	for _, env := range events {
		msg, err := r.Message(env)
		if err != nil {
			return &eventError{env: env, err: err}
		}
		i, ok := byStream[env.StreamID]
		if !ok {
			i = len(queues)
			byStream[env.StreamID] = i
			queues = append(queues, &queue{})
		}
		q := queues[i]
		q.msgs, q.envs = append(q.msgs, msg), append(q.envs, env)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(r.cfg.PublishTimeout)
	results := make(chan published, len(queues))
	ready := make([]int, len(queues)) // the queues whose head may be published, in delivery order
	for i := range ready {
		ready[i] = i
	}
	inFlight, left := 0, len(events)
	var lastErr error
	failures := 0                  // in a row, for the pause
	acked, dups, failed := 0, 0, 0 // for the instruments
	defer func() { r.tel.record(ctx, acked, dups, failed) }()
	var pauseUntil time.Time
	// One goroutine waits for the acks, in the order the messages were
	// sent, which is the order JetStream stores and acknowledges them in;
	// an ack that came early waits in its future.
	type sentMsg struct {
		queue int
		f     jetstream.PubAckFuture
		at    time.Time
	}
	sent := make(chan sentMsg, min(r.cfg.MaxInFlight, len(events)))
	defer close(sent)
	go func() {
		t := time.NewTimer(time.Hour)
		defer t.Stop()
		for m := range sent {
			// No wait outlives the batch's deadline: a batch must end
			// within the lease.
			t.Reset(max(min(r.cfg.AckTimeout-time.Since(m.at), time.Until(deadline)), time.Millisecond))
			var err error
			var dup bool
			select {
			case ack := <-m.f.Ok():
				dup = ack != nil && ack.Duplicate
			case err = <-m.f.Err():
			case <-t.C:
				err = jetstream.ErrAsyncPublishTimeout
			case <-ctx.Done():
				err = ctx.Err()
			}
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
			results <- published{queue: m.queue, err: err, dup: dup}
		}
	}()
	send := func(i int) {
		q := queues[i]
		f, err := r.js.PublishMsgAsync(q.msgs[q.next])
		if err != nil {
			results <- published{queue: i, err: err}
			return
		}
		sent <- sentMsg{queue: i, f: f, at: time.Now()}
	}
	for left > 0 {
		now := time.Now()
		stopping := now.After(deadline) || ctx.Err() != nil
		if !stopping && now.After(pauseUntil) {
			for inFlight < r.cfg.MaxInFlight && len(ready) > 0 {
				i := ready[0]
				ready = ready[1:]
				inFlight++
				send(i)
			}
		}
		if inFlight == 0 {
			if stopping {
				break
			}
			// Everything waits for the pause after a failure.
			t := time.NewTimer(time.Until(pauseUntil))
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			continue
		}
		res := <-results
		inFlight--
		q := queues[res.queue]
		if res.err != nil {
			failures++
			failed++
			lastErr = &eventError{env: q.envs[q.next], err: res.err}
			pause := min(10*time.Millisecond<<min(failures-1, 8), time.Second)
			pauseUntil = time.Now().Add(pause)
			ready = append([]int{res.queue}, ready...) // its head again, first
			if failures == 1 || failures%20 == 0 {
				r.log.WarnContext(ctx, "mire/jetstream: relay: publish failed, retrying", "relay", r.cfg.Name, "failures", failures, "err", lastErr)
			}
			continue
		}
		failures, left, acked = 0, left-1, acked+1
		if res.dup {
			dups++
		}
		if q.next++; q.next < len(q.msgs) {
			ready = append(ready, res.queue)
		}
	}
	if left == 0 {
		return nil
	}
	// Wait out the publishes in flight: none may outlive the batch.
	for ; inFlight > 0; inFlight-- {
		<-results
	}
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
