package mire

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Save writes the pending events of each root, checking that no other
// writer appended to its stream since it was loaded. One root is one
// statement; several are one transaction, all saved or none, whose BEGIN,
// appends and COMMIT go to the server together in one round trip (two,
// BEGIN with the appends and then COMMIT, when a refusal may be a retry,
// as for events with ids given by WithID or a Root whose own earlier save
// sent its events and failed, or when a snapshot is due or inline
// projections run).
//
// On success each Root's Version advances and its pending list empties. On
// a conflict the error is a *ConcurrencyError (errors.Is(err,
// ErrConcurrency)) and every Root is unchanged: reload and decide again.
// Saving a Root again after an unknown outcome (a lost connection after
// commit) stores its events once: the save is recognised as a retry, and
// events recorded since are written after them. Metadata set with
// WithMetadata on ctx is stored with every event.
func (s *Store) Save(ctx context.Context, roots ...Saveable) error {
	if err := s.check(ctx, "save"); err != nil {
		return err
	}
	writes, versions, err := s.save(ctx, nil, roots)
	if err != nil {
		return err
	}
	advance(writes, versions)
	if len(writes) > 0 {
		s.Notify()
	}
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
	writes, versions, err := s.save(ctx, tx, roots)
	if err != nil {
		return err
	}
	advance(writes, versions)
	return nil
}

// save is the one body of Save, SaveTx and TxScope.Save. It writes the
// pending events of roots in tx or, with tx nil, in a transaction of its
// own (a single statement for one root), and returns the writes and the
// versions they reached, leaving the Roots as they were.
func (s *Store) save(ctx context.Context, tx pgx.Tx, roots []Saveable) ([]rootWrite, []int64, error) {
	writes, err := collectWrites(roots)
	if err != nil || len(writes) == 0 {
		return nil, nil, err
	}
	versions, err := s.traced(ctx, writes, func(ctx context.Context) ([]int64, error) { return s.write(ctx, tx, writes) })
	if err != nil {
		return nil, nil, err
	}
	return writes, versions, nil
}

// traced runs write, the writing of writes, inside a save span when
// telemetry is on.
func (s *Store) traced(ctx context.Context, writes []rootWrite, write func(context.Context) ([]int64, error)) ([]int64, error) {
	if !s.tel.on() {
		return write(ctx)
	}
	ctx, o := s.tel.begin(ctx, "save", "save")
	versions, err := write(ctx)
	s.tel.written(ctx, o, streamWrites(writes), versions, err)
	return versions, err
}

// write is save's body, after the roots are checked: it writes writes, in
// tx or a transaction of its own.
func (s *Store) write(ctx context.Context, tx pgx.Tx, writes []rootWrite) ([]int64, error) {
	meta, err := metadataJSON(ctx)
	if err != nil {
		return nil, err
	}
	oneTrip := tx == nil && len(writes) > 1 && s.oneTrip(writes) // before markSent
	markSent(writes)
	if tx != nil {
		return s.appendAll(ctx, tx, writes, meta)
	}
	if len(s.inline.load()) == 0 {
		if len(writes) == 1 {
			version, err := s.append(ctx, s.pool, writes[0].write, meta)
			return []int64{version}, err
		}
		if oneTrip {
			// BEGIN, the appends (failing when refused) and COMMIT in one
			// round trip, as TxScope.SaveAndCommit sends them.
			versions, err := (&TxScope{store: s}).appendAndCommit(ctx, writes, meta)
			if !errors.Is(err, errTwoTrips) {
				return versions, err
			}
		}
		// BEGIN goes with the appends: two round trips, not three.
		versions, tx, err := s.appendBatch(ctx, nil, writes, meta)
		if tx == nil {
			return nil, err
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return nil, err
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("mire: save: %w", translate(ctx, err))
		}
		return versions, nil
	}
	// Inline projections run after each append, in its transaction.
	var versions []int64
	var appendErr error // already in mire's terms; only begin and commit errors need translating
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		versions, appendErr = s.appendAll(ctx, tx, writes, meta)
		return appendErr
	})
	if appendErr != nil {
		return nil, appendErr
	}
	if err != nil {
		return nil, fmt.Errorf("mire: save: %w", translate(ctx, err))
	}
	return versions, nil
}

// markSent marks the roots of writes as sending their pending events (see
// Root.sent).
func markSent(writes []rootWrite) {
	for _, w := range writes {
		w.root.markSent()
	}
}

// advance moves each written Root to the version its events reached.
func advance(writes []rootWrite, versions []int64) {
	for i, w := range writes {
		w.root.saved(versions[i])
	}
}

type rootWrite struct {
	root  rootSaver
	write streamWrite
}

// collectWrites returns the roots that have pending events, sorted by stream
// id (so two saves of the same streams lock their rows in the same order and
// cannot deadlock), rejecting nil roots, Roots edited into an invalid id or
// version, a stream given twice and an event id given twice.
func collectWrites(saveables []Saveable) ([]rootWrite, error) {
	roots := make([]rootSaver, 0, len(saveables))
	for i, s := range saveables {
		if s == nil {
			return nil, fmt.Errorf("mire: save: root %d is nil", i)
		}
		var err error
		if roots, err = s.appendRoots(roots); err != nil {
			return nil, fmt.Errorf("mire: save: argument %d: %w", i, err)
		}
	}
	writes := make([]rootWrite, 0, len(roots))
	seen := make(map[string]bool, len(roots))
	var ids eventIDs
	for _, root := range roots {
		w, err := root.write()
		if err != nil {
			return nil, err
		}
		id := root.StreamID()
		if seen[id] {
			return nil, fmt.Errorf("mire: save: stream %q given twice", id)
		}
		seen[id] = true
		if len(w.events) == 0 {
			continue
		}
		if err := ids.add(w.events); err != nil {
			return nil, fmt.Errorf("mire: save stream %q: %w", id, err)
		}
		writes = append(writes, rootWrite{root, w})
	}
	slices.SortFunc(writes, func(a, b rootWrite) int { return cmp.Compare(a.write.streamID, b.write.streamID) })
	return writes, nil
}

// eventIDs finds an event id given twice (WithID) in one write. Ids that
// Record and Append made are new UUIDv7s and are not tracked, so a write
// without given ids allocates nothing here.
type eventIDs map[uuid.UUID]bool

func (ids *eventIDs) add(events []pendingEvent) error {
	for i, e := range events {
		if !e.given {
			continue
		}
		if *ids == nil {
			*ids = make(eventIDs, len(events))
		}
		if (*ids)[e.id] {
			return fmt.Errorf("%w: event %d: event id %s is given twice", ErrInvalidEvent, i, e.id)
		}
		(*ids)[e.id] = true
	}
	return nil
}
