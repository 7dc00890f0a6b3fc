package mire

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// MessageType is the stored type of outbox messages (see Message). No
// registered event can have it: registered types begin with a letter.
const MessageType = "$message"

// MaxSubjectLength is the longest Message.Subject, in bytes.
const MaxSubjectLength = 1024

// Message is an outbox message: something to tell other services, recorded
// in the same transaction as the state change that caused it (EnqueueTx),
// so that it is recorded exactly once with it, and handed to a broker
// later by a relay (module github.com/mire-go/mire/jetstream).
//
// The outbox is the log itself: messages are stored as events of type
// MessageType in streams "outbox-key" (the outbox's name is the
// category), so a relay reads them with the projections' gap-safe reader,
// lease and fence, and messages of one Key reach the relay in the order
// they were enqueued, like the events of one stream. Reads and projections
// that take every category see them too, with a Message as Envelope.Data.
type Message struct {
	// ID is the message's idempotency key: a relay publishes it as the
	// broker's message id, and the message's event id is this id, so
	// enqueueing a message again with the same id (a retry after an unknown
	// outcome) is recognised as Append recognises a retry. Derive it from
	// what caused the message (uuid.NewSHA1(env.ID, []byte("placed"))) to
	// make a handler that enqueues idempotent. Defaults to a new UUIDv7.
	ID uuid.UUID `json:"-"`
	// Subject is where the broker files the message (a NATS subject, a
	// Kafka topic). Required; at most MaxSubjectLength bytes, printable
	// UTF-8 without spaces.
	Subject string `json:"subject"`
	// Key orders messages: those with the same key are relayed in the order
	// they were enqueued (one stream of the log per key, "outbox-key").
	// Defaults to Subject.
	Key string `json:"-"`
	// Headers are the message's headers, passed to the broker as they are
	// but for those a relay sets itself, which win (the JetStream relay's:
	// Nats-Msg-Id, Nats-Expected-Stream, Mire-*, traceparent, tracestate).
	// Defaults to none.
	Headers map[string]string `json:"headers,omitempty"`
	// Payload is the message's body. Defaults to empty.
	Payload []byte `json:"payload,omitempty"`
}

// EnqueueOpts are Enqueue's and EnqueueTx's options. A nil *EnqueueOpts
// means all defaults.
type EnqueueOpts struct {
	// Outbox names the outbox: the category of the streams that hold its
	// messages, and what a relay subscribes to. It follows the category
	// grammar. Defaults to OutboxDefault.
	Outbox string
}

// OutboxDefault is the outbox that Enqueue and EnqueueTx write to unless
// EnqueueOpts.Outbox says otherwise.
const OutboxDefault = "outbox"

// Enqueue records msgs in an outbox in one transaction of its own, and
// returns when they are committed. Most callers want EnqueueTx, which
// records them with the caller's own writes.
func (s *Store) Enqueue(ctx context.Context, opts *EnqueueOpts, msgs ...Message) error {
	if err := s.check(ctx, "enqueue"); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return s.enqueue(ctx, tx, opts, msgs) })
	if err != nil {
		return fmt.Errorf("mire: enqueue: %w", translate(ctx, err))
	}
	s.Notify()
	return nil
}

// EnqueueTx records msgs in an outbox inside the caller's transaction: a
// transactional projection handler (or any command) enqueues its messages
// in the transaction of its own writes, so a message is recorded if and
// only if the state change that caused it commits. Messages with the same
// Key are relayed in the order of msgs (and, across transactions, in the
// order the transactions enqueued them: the key's stream row is locked
// until commit). The context's metadata (WithMetadata, trace context) is
// stored with them.
//
// As with AppendTx, runners learn of the messages when they poll, unless
// the caller calls Store.Notify after committing.
func (s *Store) EnqueueTx(ctx context.Context, tx pgx.Tx, opts *EnqueueOpts, msgs ...Message) error {
	if tx == nil {
		return fmt.Errorf("mire: enqueue: tx is nil")
	}
	if err := s.check(ctx, "enqueue"); err != nil {
		return err
	}
	if err := s.enqueue(ctx, tx, opts, msgs); err != nil {
		return fmt.Errorf("mire: enqueue: %w", err)
	}
	return nil
}

// enqueue is Enqueue's and EnqueueTx's one body: it appends the messages to
// their keys' streams, stream by stream in stream-id order (so two
// enqueuers lock the same streams in the same order).
func (s *Store) enqueue(ctx context.Context, tx pgx.Tx, opts *EnqueueOpts, msgs []Message) error {
	outbox := OutboxDefault
	if opts != nil {
		outbox = cmp.Or(opts.Outbox, OutboxDefault)
	}
	if err := validateCategory(outbox); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if len(msgs) == 0 {
		return fmt.Errorf("%w: no messages", ErrInvalidEvent)
	}
	byStream := map[string]*streamWrite{}
	seen := make(map[uuid.UUID]bool, len(msgs))
	for i, m := range msgs {
		p, key, err := prepareMessage(m)
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if seen[p.id] {
			return fmt.Errorf("%w: message %d: id %s given twice", ErrInvalidEvent, i, p.id)
		}
		seen[p.id] = true
		streamID := StreamID(outbox, key)
		w := byStream[streamID]
		if w == nil {
			w = &streamWrite{streamID: streamID, category: outbox, expected: Any}
			byStream[streamID] = w
		}
		w.events = append(w.events, p)
	}
	meta, err := metadataJSON(ctx)
	if err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(byStream)) {
		if _, err := s.append(ctx, tx, *byStream[id], meta); err != nil {
			return err
		}
	}
	return nil
}

// prepareMessage checks and encodes m, returning its event and its key.
func prepareMessage(m Message) (pendingEvent, string, error) {
	if err := validateSubject(m.Subject); err != nil {
		return pendingEvent{}, "", err
	}
	key := cmp.Or(m.Key, m.Subject)
	if err := validateID("message key", key); err != nil {
		return pendingEvent{}, "", err
	}
	for k, v := range m.Headers {
		if k == "" || strings.ContainsAny(k, ":\r\n") || strings.ContainsAny(v, "\r\n") || strings.ContainsRune(k+v, 0) {
			return pendingEvent{}, "", fmt.Errorf("%w: header %q: %q: a header name must be non-empty without ':', CR, LF or NUL, and its value without CR, LF or NUL", ErrInvalidEvent, k, v)
		}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return pendingEvent{}, "", fmt.Errorf("%w: encode message: %v", ErrInvalidEvent, err)
	}
	id, given := m.ID, m.ID != uuid.Nil
	if !given {
		if id, err = uuid.NewV7(); err != nil {
			return pendingEvent{}, "", fmt.Errorf("mire: new message id: %w", err)
		}
	}
	m.ID, m.Key = id, key
	return pendingEvent{id: id, typ: MessageType, schema: 1, data: data, value: m, given: given}, key, nil
}

// validateSubject checks a message subject: not empty, not too long,
// printable UTF-8 without spaces.
func validateSubject(subject string) error {
	switch {
	case subject == "":
		return fmt.Errorf("%w: message subject is empty", ErrInvalidEvent)
	case len(subject) > MaxSubjectLength:
		return fmt.Errorf("%w: message subject %.40q... is %d bytes, longer than %d", ErrInvalidEvent, subject, len(subject), MaxSubjectLength)
	case !utf8.ValidString(subject):
		return fmt.Errorf("%w: message subject %q is not valid UTF-8", ErrInvalidEvent, subject)
	}
	if i := strings.IndexFunc(subject, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }); i >= 0 {
		return fmt.Errorf("%w: message subject %q holds a space or unprintable character at byte %d", ErrInvalidEvent, subject, i)
	}
	return nil
}

// decodeMessage decodes a stored outbox message: its id is the event's,
// its key the stream's id after the outbox's name.
// It returns the decoded Message and the version it is decoded at (1).
func decodeMessage(env *Envelope) (any, int, error) {
	if env.SchemaVersion != 1 {
		return nil, 1, fmt.Errorf("stored schema version %d of an outbox message is not 1", env.SchemaVersion)
	}
	var m Message
	if err := json.Unmarshal(env.Raw, &m); err != nil {
		return nil, 1, fmt.Errorf("message does not fit mire.Message: %w", err)
	}
	m.ID, m.Key = env.ID, env.AggregateID()
	return m, 1, nil
}
