package projections

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/bridge"
)

// BatchSizeDefault is how many events a projection reads per batch (and per
// checkpoint) unless Projection.BatchSize says otherwise.
const BatchSizeDefault = 500

// MaxPartitions is the most partitions a projection may have.
const MaxPartitions = 1024

// Projection is a named subscription to the log: its handler sees every
// event of its categories once per checkpoint, in an order that keeps each
// stream's versions in sequence.
type Projection struct {
	// Name identifies the projection's checkpoint and lease; every replica
	// hosting the same projection must use the same name. Required.
	Name string
	// Categories limits the projection to the streams of these categories.
	// Defaults to none: every event of the log.
	Categories []string
	// BatchSize is how many events are read, handled and checkpointed in one
	// transaction. Defaults to BatchSizeDefault.
	BatchSize int
	// Handler handles each event. Required.
	Handler Handler
	// Partitions splits the projection into this many partitions, each
	// with its own checkpoint, lease and fence, spread over the runners
	// that host the projection (see the package documentation): a stream
	// belongs to one partition, so its events keep their version order,
	// but the order of events across partitions is lost. 1 is today's
	// single worker. A partitioned projection reads through an index of
	// its own, created by MigratePartitions. Changing the count of a
	// projection that has run is refused (ErrPartitionCount) until
	// Runner.Rebuild starts it over with the new count. At most
	// MaxPartitions. Defaults to 1.
	Partitions int
	// Raw delivers events without decoding their payloads: an Envelope's
	// Data is nil and its Raw holds the payload as stored (not upcast),
	// beside the decoded metadata. The projection then needs no event
	// type registered and spends nothing on decoding. Outbox messages
	// (mire.MessageType) still arrive as mire.Message. It is for handlers
	// that pass payloads on as they are, such as a relay to a broker; a
	// Routes handler, which dispatches on Data's type, is refused with it.
	// Defaults to false.
	Raw bool
	// Truncate, if set, clears the projection's read model. Runner.Rebuild
	// calls it in the transaction that resets the checkpoint, so the read
	// model and the checkpoint start over together. Defaults to nil:
	// nothing is cleared.
	Truncate func(ctx context.Context, tx pgx.Tx) error
}

var projectionName = regexp.MustCompile(`^[A-Za-z0-9_.:\-]{1,128}$`)

func (p *Projection) validate() error {
	if !projectionName.MatchString(p.Name) {
		return fmt.Errorf("mire: projection name %q must be 1 to 128 letters, digits or _.:-", p.Name)
	}
	if p.Handler == nil {
		return fmt.Errorf("mire: projection %q: handler is nil", p.Name)
	}
	if p.Partitions < 0 || p.Partitions > MaxPartitions {
		return fmt.Errorf("mire: projection %q: partitions %d out of range 1..%d", p.Name, p.Partitions, MaxPartitions)
	}
	if p.BatchSize < 0 {
		return fmt.Errorf("mire: projection %q: negative batch size %d", p.Name, p.BatchSize)
	}
	for _, c := range p.Categories {
		if c == "" {
			return fmt.Errorf("mire: projection %q: empty category", p.Name)
		}
	}
	return nil
}

// checkRoutes refuses typed routes of p's handler that can never fire on
// store (see On). Handlers other than Routes are not inspected.
func (p *Projection) checkRoutes(store *mire.Store) error {
	if r, ok := p.Handler.(router); ok {
		if p.Raw {
			return fmt.Errorf("projection %q: Raw leaves every payload undecoded, so no route of its Routes handler can fire: route on types without Raw, or handle the envelopes' Raw yourself", p.Name)
		}
		return r.check(store, p)
	}
	return nil
}

// Handler handles one event. tx is the transaction in which the
// projection's checkpoint is written after the batch: rows written through
// tx commit together with the checkpoint (exactly once), and roll back with
// it when the batch fails or the worker has lost its lease. Anything done
// outside tx (a message sent, an HTTP call) happens at least once: it may
// be repeated after a crash, a retry or a takeover, so it must be
// idempotent. A returned error rolls back the whole batch and is retried
// with backoff; see Config.MaxAttempts.
type Handler interface {
	Handle(ctx context.Context, tx pgx.Tx, env mire.Envelope) error
}

// Transient marks err as a failure of the moment rather than of the event
// (a broker or a service that is down, a timeout): a batch that fails with
// it (or with an error wrapping it) is retried with a jittered backoff
// that grows up to 64 RetryBackoffs, for as long as the failure lasts,
// without counting towards Config.MaxAttempts. Each such failure halves
// the batch (down to one event; every 4 batches in a row that commit
// double it back), so a batch too large to finish within a timeout still
// gets through. Deadlocks and serialization failures are treated so
// without it. Use it only for what time cures: an event that can never
// be handled, marked Transient, stops its projection for good instead of
// halting it. Transient(nil) is nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err}
}

type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// BatchHandler is a Handler that takes a whole batch at once, in delivery
// order, in the checkpoint's transaction: the way to write a read model
// with one round trip per batch (a pgx.Batch of upserts, a COPY) instead of
// one per event. Runners call HandleBatch and never Handle; inline
// projections call Handle. A failing batch is retried one event at a time,
// so the event that keeps failing is the one reported when the projection
// halts.
type BatchHandler interface {
	Handler
	HandleBatch(ctx context.Context, tx pgx.Tx, events []mire.Envelope) error
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
	return f(ctx, tx, env)
}

// Plain adapts a function that does not write through the checkpoint's
// transaction: an at-least-once handler, which must be idempotent.
func Plain(fn func(ctx context.Context, env mire.Envelope) error) Handler {
	return HandlerFunc(func(ctx context.Context, _ pgx.Tx, env mire.Envelope) error { return fn(ctx, env) })
}

// Route sends the events of one Go type to a typed function; see On.
type Route struct {
	typ reflect.Type
	fn  func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error
}

// On routes events whose decoded Data is an E (a registered event struct,
// as a value) to fn:
//
//	projections.Routes(
//		projections.On(func(ctx context.Context, tx pgx.Tx, e Opened, env mire.Envelope) error { ... }),
//		projections.On(func(ctx context.Context, tx pgx.Tx, e Deposited, env mire.Envelope) error { ... }),
//	)
//
// A route that could never fire would checkpoint past its events, and the
// read model would silently lose them, so it is refused where the
// information is: On panics if E is not a struct type (a pointer, an
// interface); NewRunner and Inline return an error if E is not in the
// store's registry or its entity is outside the projection's Categories.
func On[E any](fn func(ctx context.Context, tx pgx.Tx, e E, env mire.Envelope) error) Route {
	t := reflect.TypeFor[E]()
	switch {
	case t.Kind() == reflect.Pointer:
		panic(fmt.Errorf("mire: projections.On: route for %v: events are delivered as values: route %v, not a pointer", t, t.Elem()))
	case t.Kind() != reflect.Struct:
		panic(fmt.Errorf("mire: projections.On: route for %v: not an event struct type, so no event can match it", t))
	}
	return Route{
		typ: t,
		fn: func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
			return fn(ctx, tx, env.Data.(E), env)
		},
	}
}

// Routes returns a Handler that dispatches each event to the route for its
// Go type. Events of types without a route are skipped (and checkpointed).
// It panics if two routes name the same type, or a route was not made by On.
func Routes(routes ...Route) Handler {
	m := make(map[reflect.Type]func(context.Context, pgx.Tx, mire.Envelope) error, len(routes))
	for _, r := range routes {
		if r.fn == nil {
			panic("projections: Routes: a Route not made by On")
		}
		if _, dup := m[r.typ]; dup {
			panic(fmt.Sprintf("projections: Routes: two routes for %v", r.typ))
		}
		m[r.typ] = r.fn
	}
	return router(m)
}

// router maps an event's Go type to its route.
type router map[reflect.Type]func(context.Context, pgx.Tx, mire.Envelope) error

// check refuses routes that can never fire for a projection of store:
// types missing from the store's registry, or whose entity is outside the
// projection's categories.
func (r router) check(store *mire.Store, p *Projection) error {
	types := slices.SortedFunc(maps.Keys(r), func(a, b reflect.Type) int { return strings.Compare(a.String(), b.String()) })
	for _, t := range types {
		entity, ok := bridge.Entity(store.Registry(), t)
		if !ok {
			return fmt.Errorf("projection %q: route for %v: the store's registry does not hold it (call Register on it), so no event can match it: %w", p.Name, t, mire.ErrUnregistered)
		}
		if len(p.Categories) > 0 && !slices.Contains(p.Categories, entity) {
			return fmt.Errorf("projection %q: route for %v (entity %q) can never fire: the projection reads only categories %q", p.Name, t, entity, p.Categories)
		}
	}
	return nil
}

func (r router) Handle(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
	if fn := r[reflect.TypeOf(env.Data)]; fn != nil {
		return fn(ctx, tx, env)
	}
	return nil
}
