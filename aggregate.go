package mire

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/mire-go/mire/internal/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// Aggregate is met by the pointer type of an aggregate's state: it names the
// category of its streams and folds events into itself. Apply receives event
// values (case Opened:, not *Opened) and never fails.
type Aggregate interface {
	Category() string
	Apply(event any)
}

// Root is an aggregate loaded from its stream: its id, the number of events
// applied (0 for a new one), its state, and the events recorded since it was
// loaded or saved.
type Root[T any] struct {
	ID      string // the aggregate id; the stream id is Category()-ID
	Version int64  // events applied from the store; 0 = never saved
	State   T      // the fold of every event applied and recorded

	category string
	registry *Registry
	pending  []pendingEvent
	// sent says a save has sent the pending events (or some of them)
	// before and did not succeed: they may be stored all the same (a lost
	// acknowledgement), so a refusal may be a retry, not a conflict.
	sent bool
}

// Source is what Load reads from: a *Store, or a *TxScope to read inside
// its transaction.
type Source interface {
	// source returns the store and the connection or transaction to use.
	source() (*Store, dbtx)
	// scoped returns ctx for a span of a call on the source (see
	// TxScope.scoped).
	scoped(ctx context.Context) context.Context
}

func (s *Store) source() (*Store, dbtx)                     { return s, s.pool }
func (s *Store) scoped(ctx context.Context) context.Context { return ctx }

// Load rebuilds aggregate T with id from its stream. A stream with no events
// is ErrNotFound; a stream whose versions do not run 1..n, or do not end at
// the version of its stream row (events deleted by hand, say), is
// ErrCorruptStream; a stored event that cannot be decoded is a *DecodeError.
// From a *Store with a Config.Replica, Load and LoadOrNew read from the
// replica (see Config.Replica, WithToken and WithPrimary); in a TxScope,
// from its transaction on the primary.
//
//	acc, err := mire.Load[Account](ctx, store, "alice")
func Load[T any, PT interface {
	*T
	Aggregate
}](ctx context.Context, src Source, id string) (*Root[T], error) {
	root, err := LoadOrNew[T, PT](ctx, src, id)
	if err != nil {
		return nil, err
	}
	if root.Version == 0 {
		return nil, fmt.Errorf("mire: load stream %q: %w", root.StreamID(), ErrNotFound)
	}
	return root, nil
}

// LoadOrNew is Load that returns a new Root at version 0 when the stream
// does not exist yet.
func LoadOrNew[T any, PT interface {
	*T
	Aggregate
}](ctx context.Context, src Source, id string) (*Root[T], error) {
	root, _, err := loadOrNew[T, PT](ctx, src, id)
	return root, err
}

// loadOrNew is LoadOrNew, reporting whether it read from the replica.
func loadOrNew[T any, PT interface {
	*T
	Aggregate
}](ctx context.Context, src Source, id string) (*Root[T], bool, error) {
	store, db := src.source()
	root, err := newRoot[T, PT](ctx, store, id, "load")
	if err != nil {
		return nil, false, err
	}
	_, routed := src.(*Store) // a TxScope reads in its transaction
	var st replayStats
	var onReplica bool
	if !store.tel.on() {
		onReplica, err = store.load(ctx, db, routed, root, &st)
	} else {
		ctx, o := store.tel.begin(src.scoped(ctx), "load", "load")
		onReplica, err = store.load(ctx, db, routed, root, &st)
		store.tel.loaded(ctx, o, root.category, []string{root.StreamID()}, st, err)
	}
	if err != nil {
		return nil, false, err
	}
	return root, onReplica, nil
}

// load replays root from db or, when routed, from the replica or the
// primary (see Store.loadRouted). It reports whether root was read from
// the replica.
func (s *Store) load(ctx context.Context, db dbtx, routed bool, root applier, st *replayStats) (bool, error) {
	if !routed || s.replica == nil {
		return false, s.replay(ctx, db, root, st)
	}
	onReplica, err := s.loadRouted(ctx, root, st)
	if s.tel.tracer != nil {
		trace.SpanFromContext(ctx).SetAttributes(telemetry.Replica.Bool(onReplica))
	}
	return onReplica, err
}

// Create returns a new Root for id at version 0 without reading the store,
// for a command that creates the aggregate (often under a fresh id). Its
// first Save expects the stream not to exist: if it does, the Save is a
// *ConcurrencyError and writes nothing. Use LoadOrNew when the stream may
// already exist and that is fine.
func Create[T any, PT interface {
	*T
	Aggregate
}](store *Store, id string) (*Root[T], error) {
	return newRoot[T, PT](context.Background(), store, id, "create")
}

// newRoot checks the call and returns an empty Root for id.
func newRoot[T any, PT interface {
	*T
	Aggregate
}](ctx context.Context, store *Store, id, op string) (*Root[T], error) {
	if err := store.check(ctx, op); err != nil {
		return nil, err
	}
	return emptyRoot[T, PT](store.registry, id, op)
}

// emptyRoot checks id and the aggregate type and returns an empty Root for
// id on reg: the start of newRoot and Rehydrate.
func emptyRoot[T any, PT interface {
	*T
	Aggregate
}](reg *Registry, id, op string) (*Root[T], error) {
	if err := validateID("aggregate id", id); err != nil {
		return nil, fmt.Errorf("mire: %s %T: %w", op, PT(nil), err)
	}
	if err := checkAggregateType(reflect.TypeFor[T]()); err != nil {
		return nil, fmt.Errorf("mire: %s %T: %w", op, PT(nil), err)
	}
	root := &Root[T]{ID: id, registry: reg}
	root.category = PT(&root.State).Category()
	if err := validateCategory(root.category); err != nil {
		return nil, fmt.Errorf("mire: %s %T: %w", op, PT(nil), err)
	}
	return root, nil
}

// replay applies the stream's events after root.Version to root.State,
// checking that versions run on without a gap. A new Root of an aggregate
// that takes snapshots starts from its snapshot (snapshot.go).
// It adds what it applied to st.
func (s *Store) replay(ctx context.Context, db dbtx, root applier, st *replayStats) error {
	query, args := s.replayQuery(root)
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("mire: load stream %q: %w", root.StreamID(), translate(ctx, err))
	}
	err = s.fold(ctx, root, rows, st)
	if errors.Is(err, errSnapshotUnusable) {
		return s.replay(ctx, db, fullReplay{root}, st)
	}
	return err
}

// The rows of the replay queries (selectStreamEvents and
// selectStreamFromSnapshot) are (version, position, type, schema version,
// data). Before the events come rows that carry none, marked by a negative
// version (which sorts them first), with their own version in the position
// column.
const (
	headRow     = -2 // the stream row, if there is one
	snapshotRow = -1 // the stream's snapshot; its data is the state, or NULL if it is not of the stream's history
)

// fold applies the rows of replayQuery to root, checking that versions run
// on without a gap and end at the stream row's version. It returns
// errSnapshotUnusable, with root unchanged, if the rows start with a
// snapshot that does not decode. It adds what it applied to st.
func (s *Store) fold(ctx context.Context, root applier, rows pgx.Rows, st *replayStats) error {
	defer rows.Close()
	streamID := root.StreamID()
	var (
		version, position int64
		typ               string
		schema            int32
		data              pgtype.DriverBytes // pgx's buffer, decoded at once: no copy per event
		head              int64              // the stream row's version
		hasRow            bool               // whether the stream has a row
	)
	expected := root.version() + 1
	_, err := pgx.ForEachRow(rows, []any{&version, &position, &typ, &schema, &data}, func() error {
		switch version {
		case headRow:
			head, hasRow = position, true
			return nil
		case snapshotRow:
			if err := s.restoreSnapshot(ctx, root, position, []byte(data)); err != nil {
				return err
			}
			st.snapshot = st.snapshot || root.version() > 0
			expected = root.version() + 1
			return nil
		}
		if version != expected {
			return fmt.Errorf("mire: load stream %q: %w: version %d follows version %d (position %d)",
				streamID, ErrCorruptStream, version, expected-1, position)
		}
		event, target, err := s.registry.decode(root.categoryName(), typ, int(schema), []byte(data))
		if err != nil {
			return newDecodeError(streamID, position, version, typ, int(schema), target, err)
		}
		root.apply(event, version)
		st.events++
		expected++
		return nil
	})
	switch {
	case errors.Is(err, errSnapshotUnusable):
		return err
	case err != nil:
		return fmt.Errorf("mire: load stream %q: %w", streamID, translate(ctx, err))
	case !hasRow && root.version() > 0:
		return fmt.Errorf("mire: load stream %q: %w: the stream has no row but its events end at version %d",
			streamID, ErrCorruptStream, root.version())
	case root.version() != head:
		// A save checks the stream row: a Root at another version could
		// never save, and reloading would not help.
		return fmt.Errorf("mire: load stream %q: %w: the stream row is at version %d but its events end at version %d",
			streamID, ErrCorruptStream, head, root.version())
	}
	return nil
}

// applier is the non-generic face of a Root that replay folds into.
type applier interface {
	StreamID() string
	categoryName() string
	version() int64
	apply(event any, version int64)
	// reset puts the Root back to version 0 and a zero State, for a load
	// that starts again elsewhere.
	reset()
}

func (r *Root[T]) categoryName() string { return r.category }
func (r *Root[T]) version() int64       { return r.Version }

func (r *Root[T]) apply(event any, version int64) {
	any(&r.State).(Aggregate).Apply(event)
	r.Version = version
}

func (r *Root[T]) reset() {
	var zero T
	r.State, r.Version = zero, 0
}

// StreamID returns the id of the Root's stream: "category-id".
func (r *Root[T]) StreamID() string { return StreamID(r.category, r.ID) }

// Category returns the category of the Root's stream.
func (r *Root[T]) Category() string { return r.category }

// Record validates event, applies it to State at once, and queues it for
// the next Save. It refuses (and changes nothing) for a nil event, a type
// that is not registered, an event of another entity than the Root's
// category, a payload that fails its `validate` tags (*ValidationError), or
// one that PostgreSQL's jsonb cannot store or json cannot load back (a NUL
// character or half a surrogate pair in a string or key, a json.Number
// outside PostgreSQL's numeric range, nesting deeper than 10000 levels:
// ErrInvalidEvent naming the field), and on a Root that Load, LoadOrNew or
// Create did not make.
//
// Each recorded event gets a new UUIDv7 id, or the one given with WithID;
// Apply and Pending see the event itself.
func (r *Root[T]) Record(event any) error {
	if r.registry == nil {
		return fmt.Errorf("mire: record on a %v with id %q: the Root was not made by Load, LoadOrNew or Create", reflect.TypeFor[Root[T]](), r.ID)
	}
	p, err := r.registry.prepare(r.category, event)
	if err != nil {
		return fmt.Errorf("mire: record on stream %q: %w", r.StreamID(), err)
	}
	any(&r.State).(Aggregate).Apply(p.value)
	r.pending = append(r.pending, p)
	return nil
}

// Pending returns the events recorded and not yet saved, in order.
func (r *Root[T]) Pending() []any {
	out := make([]any, len(r.pending))
	for i, p := range r.pending {
		out[i] = p.value
	}
	return out
}

// Saveable is what Save takes: a *Root[T], or the Roots[T] that
// LoadManyForUpdate returns, which saves every Root in it. No other type
// implements it.
type Saveable interface {
	// appendRoots appends the Roots to save to dst, refusing a nil one.
	appendRoots(dst []rootSaver) ([]rootSaver, error)
}

// Roots is several Roots of one aggregate type, as LoadManyForUpdate
// returns them. It is Saveable: scope.Save(ctx, accs) saves them all.
type Roots[T any] []*Root[T]

func (rs Roots[T]) appendRoots(dst []rootSaver) ([]rootSaver, error) {
	for i, r := range rs {
		if r == nil {
			return nil, fmt.Errorf("root %d of %T is nil", i, rs)
		}
		dst = append(dst, r)
	}
	return dst, nil
}

func (r *Root[T]) appendRoots(dst []rootSaver) ([]rootSaver, error) {
	if r == nil {
		return nil, fmt.Errorf("%T is nil", r)
	}
	return append(dst, r), nil
}

// rootSaver is the face of one *Root[T] that a save writes through.
type rootSaver interface {
	StreamID() string
	// write returns the Root's pending append, or why the Root cannot be
	// saved (an id or version edited by hand).
	write() (streamWrite, error)
	// pendingEvents returns the Root's pending events.
	pendingEvents() []pendingEvent
	// saved moves the Root to version after its pending events were written.
	saved(version int64)
	// restore puts the Root back to a version and pending list taken earlier.
	restore(version int64, pending []pendingEvent)
	// markSent records that a save is sending the pending events, and
	// pendingSent whether one has (see Root.sent).
	markSent()
	pendingSent() bool
}

func (r *Root[T]) write() (streamWrite, error) {
	if err := validateID("aggregate id", r.ID); err != nil {
		return streamWrite{}, fmt.Errorf("mire: save %T: %w", r, err)
	}
	if err := validateCategory(r.category); err != nil {
		return streamWrite{}, fmt.Errorf("mire: save %T %q (a Root not made by Create, Load or LoadOrNew?): %w", r, r.ID, err)
	}
	if r.Version < 0 {
		return streamWrite{}, fmt.Errorf("mire: save stream %q: version %d is negative", r.StreamID(), r.Version)
	}
	if len(r.pending) == 0 {
		return streamWrite{}, nil
	}
	return streamWrite{streamID: r.StreamID(), category: r.category, expected: ExpectedVersion(r.Version), events: r.pending, snapshot: r.snapshot()}, nil
}

func (r *Root[T]) pendingEvents() []pendingEvent { return r.pending }

func (r *Root[T]) saved(version int64) {
	r.Version = version
	r.pending = nil
	r.sent = false
}

func (r *Root[T]) markSent()         { r.sent = true }
func (r *Root[T]) pendingSent() bool { return r.sent }

func (r *Root[T]) restore(version int64, pending []pendingEvent) {
	r.Version = version
	r.pending = pending
}
