package mire

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
}

// pendingEvent is a recorded event, validated and encoded, awaiting Save.
type pendingEvent struct {
	id     uuid.UUID
	typ    string
	schema int32
	data   []byte
	value  any
}

// Source is what Load reads from: a *Store, or a *TxScope to read inside
// its transaction.
type Source interface {
	// source returns the store and the connection or transaction to use.
	source() (*Store, dbtx)
}

func (s *Store) source() (*Store, dbtx) { return s, s.pool }

// Load rebuilds aggregate T with id from its stream. A stream with no events
// is ErrNotFound; a stream whose versions do not run 1..n is ErrCorruptStream;
// a stored event that cannot be decoded is a *DecodeError.
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
	store, db := src.source()
	root, err := newRoot[T, PT](ctx, store, id, "load")
	if err != nil {
		return nil, err
	}
	if err := store.replay(ctx, db, root); err != nil {
		return nil, err
	}
	return root, nil
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
	if err := validateID("aggregate id", id); err != nil {
		return nil, fmt.Errorf("mire: %s %T: %w", op, PT(nil), err)
	}
	if err := checkAggregateType(reflect.TypeFor[T]()); err != nil {
		return nil, fmt.Errorf("mire: %s %T: %w", op, PT(nil), err)
	}
	root := &Root[T]{ID: id, registry: store.registry}
	root.category = PT(&root.State).Category()
	if err := validateCategory(root.category); err != nil {
		return nil, fmt.Errorf("mire: %s %T: %w", op, PT(nil), err)
	}
	return root, nil
}

// replay applies the stream's events after root.Version to root.State,
// checking that versions run on without a gap. A new Root of an aggregate
// that takes snapshots starts from its snapshot (snapshot.go).
func (s *Store) replay(ctx context.Context, db dbtx, root applier) error {
	query, args := s.replayQuery(root)
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("mire: load stream %q: %w", root.StreamID(), translate(ctx, err))
	}
	err = s.fold(ctx, root, rows)
	if errors.Is(err, errSnapshotUnusable) {
		return s.replay(ctx, db, fullReplay{root})
	}
	return err
}

// fold applies the rows of replayQuery to root, checking that versions run
// on without a gap. It returns errSnapshotUnusable, with root unchanged, if
// the rows start with a snapshot that does not decode.
func (s *Store) fold(ctx context.Context, root applier, rows pgx.Rows) error {
	defer rows.Close()
	streamID := root.StreamID()
	var (
		version, position int64
		typ               string
		schema            int32
		data              []byte
	)
	expected := root.version() + 1
	_, err := pgx.ForEachRow(rows, []any{&version, &position, &typ, &schema, &data}, func() error {
		if position == 0 { // the snapshot row, first if any
			if err := s.restoreSnapshot(ctx, root, version, data); err != nil {
				return err
			}
			expected = version + 1
			return nil
		}
		if version != expected {
			return fmt.Errorf("mire: load stream %q: %w: version %d follows version %d (position %d)",
				streamID, ErrCorruptStream, version, expected-1, position)
		}
		event, target, err := s.registry.decode(root.categoryName(), typ, int(schema), data)
		if err != nil {
			return &DecodeError{StreamID: streamID, Position: position, Version: version, Type: typ, SchemaVersion: int(schema), TargetVersion: target, Err: err}
		}
		root.apply(event, version)
		expected++
		return nil
	})
	if err != nil && !errors.Is(err, errSnapshotUnusable) {
		return fmt.Errorf("mire: load stream %q: %w", streamID, translate(ctx, err))
	}
	return err
}

// applier is the non-generic face of a Root that replay folds into.
type applier interface {
	StreamID() string
	categoryName() string
	version() int64
	apply(event any, version int64)
}

func (r *Root[T]) categoryName() string { return r.category }
func (r *Root[T]) version() int64       { return r.Version }

func (r *Root[T]) apply(event any, version int64) {
	any(&r.State).(Aggregate).Apply(event)
	r.Version = version
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
// Each recorded event gets a new UUIDv7 id.
func (r *Root[T]) Record(event any) error {
	if r.registry == nil {
		return fmt.Errorf("mire: record on a %v with id %q: the Root was not made by Load, LoadOrNew or Create", reflect.TypeFor[Root[T]](), r.ID)
	}
	p, err := r.registry.prepare(r.category, event)
	if err != nil {
		return fmt.Errorf("mire: record on stream %q: %w", r.StreamID(), err)
	}
	any(&r.State).(Aggregate).Apply(event)
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

// prepare checks, validates and encodes an event bound for a stream of
// category.
func (reg *Registry) prepare(category string, event any) (pendingEvent, error) {
	if event != nil {
		if v := reflect.ValueOf(event); v.Kind() == reflect.Pointer && v.IsNil() {
			return pendingEvent{}, fmt.Errorf("%w: nil %T", ErrInvalidEvent, event)
		}
	}
	et, err := reg.lookup(event)
	if err != nil {
		return pendingEvent{}, err
	}
	if et.tag.Entity != category {
		return pendingEvent{}, fmt.Errorf("%w: %v belongs to entity %q, not %q", ErrInvalidEvent, et.goType, et.tag.Entity, category)
	}
	if err := reg.check(et, event); err != nil {
		return pendingEvent{}, err
	}
	data, err := json.Marshal(event)
	if err != nil {
		return pendingEvent{}, fmt.Errorf("%w: encode %v: %v", ErrInvalidEvent, et.goType, err)
	}
	if err := checkStorable(data); err != nil {
		return pendingEvent{}, fmt.Errorf("%w: %v %v", ErrInvalidEvent, et.goType, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return pendingEvent{}, fmt.Errorf("mire: new event id: %w", err)
	}
	return pendingEvent{id: id, typ: et.tag.Type, schema: int32(et.tag.Version), data: data, value: event}, nil
}

// Saveable is a Root with events to save. Only *Root[T] implements it.
type Saveable interface {
	StreamID() string
	// write returns the Root's pending append.
	write() streamWrite
	// saved moves the Root to version after its pending events were written.
	saved(version int64)
	// restore puts the Root back to a version and pending list taken earlier.
	restore(version int64, pending []pendingEvent)
}

func (r *Root[T]) write() streamWrite {
	return streamWrite{streamID: r.StreamID(), category: r.category, expected: ExpectedVersion(r.Version), events: r.pending, snapshot: r.snapshot()}
}

func (r *Root[T]) saved(version int64) {
	r.Version = version
	r.pending = nil
}

func (r *Root[T]) restore(version int64, pending []pendingEvent) {
	r.Version = version
	r.pending = pending
}

// Save writes the pending events of each root, checking that no other
// writer appended to its stream since it was loaded. One root is one
// statement; several are one transaction, all saved or none, whose
// appends go to the server together in one round trip.
//
// On success each Root's Version advances and its pending list empties. On
// a conflict the error is a *ConcurrencyError (errors.Is(err,
// ErrConcurrency)) and every Root is unchanged: reload and decide again.
// Saving a Root again after an unknown outcome (a lost connection after
// commit) does not duplicate its events: their ids are recognised. Metadata
// set with WithMetadata on ctx is stored with every event.
func (s *Store) Save(ctx context.Context, roots ...Saveable) error {
	if err := s.check(ctx, "save"); err != nil {
		return err
	}
	writes, err := collectWrites(roots)
	if err != nil || len(writes) == 0 {
		return err
	}
	meta, err := metadataJSON(ctx)
	if err != nil {
		return err
	}
	if len(writes) == 1 && len(s.inline.load()) == 0 {
		version, err := s.append(ctx, s.pool, writes[0].write, meta)
		if err != nil {
			return err
		}
		writes[0].root.saved(version)
		s.notifyCommitted()
		return nil
	}
	var versions []int64
	var appendErr error // already in mire's terms; only begin and commit errors need translating
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		versions, appendErr = s.appendAll(ctx, tx, writes, meta)
		return appendErr
	})
	if appendErr != nil {
		return appendErr
	}
	if err != nil {
		return fmt.Errorf("mire: save: %w", translate(ctx, err))
	}
	for i, w := range writes {
		w.root.saved(versions[i])
	}
	s.notifyCommitted()
	return nil
}

// SaveTx is Save inside the caller's transaction, so the events commit or
// roll back with the caller's own rows. Several roots go in one pipelined
// round trip. The Roots advance when the statements succeed: if the caller
// then rolls back, reload them. If SaveTx fails, roll tx back: the other
// roots' events may be written in it.
func (s *Store) SaveTx(ctx context.Context, tx pgx.Tx, roots ...Saveable) error {
	if err := s.check(ctx, "save"); err != nil {
		return err
	}
	if tx == nil {
		return fmt.Errorf("mire: save: tx is nil")
	}
	writes, err := collectWrites(roots)
	if err != nil || len(writes) == 0 {
		return err
	}
	meta, err := metadataJSON(ctx)
	if err != nil {
		return err
	}
	versions, err := s.appendAll(ctx, tx, writes, meta)
	if err != nil {
		return err
	}
	for i, w := range writes {
		w.root.saved(versions[i])
	}
	return nil
}

type rootWrite struct {
	root  Saveable
	write streamWrite
}

// collectWrites returns the roots that have pending events, sorted by stream
// id (so two saves of the same streams lock their rows in the same order and
// cannot deadlock), rejecting nil roots and a stream given twice.
func collectWrites(roots []Saveable) ([]rootWrite, error) {
	writes := make([]rootWrite, 0, len(roots))
	seen := make(map[string]bool, len(roots))
	for i, root := range roots {
		if root == nil || reflect.ValueOf(root).IsNil() {
			return nil, fmt.Errorf("mire: save: root %d is nil", i)
		}
		id := root.StreamID()
		if seen[id] {
			return nil, fmt.Errorf("mire: save: stream %q given twice", id)
		}
		seen[id] = true
		if w := root.write(); len(w.events) > 0 {
			writes = append(writes, rootWrite{root, w})
		}
	}
	slices.SortFunc(writes, func(a, b rootWrite) int { return cmp.Compare(a.write.streamID, b.write.streamID) })
	return writes, nil
}
