package mire

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// ExpectedVersion is what an Append expects of its stream: Any, NoStream,
// StreamExists, or an exact version (Exactly).
type ExpectedVersion int64

const (
	// Any appends whatever the stream's state, creating it if needed.
	Any ExpectedVersion = -1
	// StreamExists appends only to a stream that has at least one event.
	StreamExists ExpectedVersion = -2
	// NoStream appends only if the stream does not exist yet. It is
	// Exactly(0).
	NoStream ExpectedVersion = 0
)

// Exactly expects the stream to be at version v (0 meaning no stream).
func Exactly(v int64) ExpectedVersion { return ExpectedVersion(v) }

func (e ExpectedVersion) String() string {
	switch {
	case e == Any:
		return "any"
	case e == StreamExists:
		return "stream exists"
	case e == NoStream:
		return "no stream"
	case e < 0:
		return "invalid(" + strconv.FormatInt(int64(e), 10) + ")"
	}
	return strconv.FormatInt(int64(e), 10)
}

// streamWrite is one stream's share of a write.
type streamWrite struct {
	streamID string
	category string
	expected ExpectedVersion
	events   []pendingEvent
	snapshot *snapshotWrite // the aggregate's snapshot to store with the events, if any (snapshot.go)
}

// Append writes events to the stream streamID ("category-id") if the stream
// meets the expectation, and returns the stream's new version. Every event
// must belong to the stream's category. Like Save, it is one statement; a
// refused expectation is a *ConcurrencyError and writes nothing.
func (s *Store) Append(ctx context.Context, streamID string, expected ExpectedVersion, events ...any) (int64, error) {
	var version int64
	err := s.autocommit(ctx, "append", func(db dbtx) (err error) {
		version, err = s.appendEvents(ctx, db, streamID, expected, events)
		return err
	})
	if err == nil {
		s.notifyCommitted()
	}
	return version, err
}

// AppendTx is Append inside the caller's transaction.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected ExpectedVersion, events ...any) (int64, error) {
	if tx == nil {
		return 0, fmt.Errorf("mire: append to stream %q: tx is nil", streamID)
	}
	return s.appendEvents(ctx, tx, streamID, expected, events)
}

func (s *Store) appendEvents(ctx context.Context, db dbtx, streamID string, expected ExpectedVersion, events []any) (int64, error) {
	if err := s.check(ctx, "append"); err != nil {
		return 0, err
	}
	if err := validateID("stream id", streamID); err != nil {
		return 0, fmt.Errorf("mire: append: %w", err)
	}
	category := categoryOf(streamID)
	if err := validateCategory(category); err != nil {
		return 0, fmt.Errorf("mire: append to stream %q: %w", streamID, err)
	}
	if expected < StreamExists {
		return 0, fmt.Errorf("mire: append to stream %q: invalid expected version %d", streamID, int64(expected))
	}
	if len(events) == 0 {
		return 0, fmt.Errorf("%w: append to stream %q: no events", ErrInvalidEvent, streamID)
	}
	w := streamWrite{streamID: streamID, category: category, expected: expected, events: make([]pendingEvent, len(events))}
	for i, event := range events {
		p, err := s.registry.prepare(category, event)
		if err != nil {
			return 0, fmt.Errorf("mire: append to stream %q: event %d: %w", streamID, i, err)
		}
		w.events[i] = p
	}
	meta, err := metadataJSON(ctx)
	if err != nil {
		return 0, err
	}
	return s.append(ctx, db, w, meta)
}

// append writes one stream's events in one statement and returns the
// stream's new version. When the statement writes nothing (the expectation
// failed) or hits a taken event id, it checks whether these very events are
// already stored, which is what a retry after a lost acknowledgement sees,
// and reports success if so; otherwise a *ConcurrencyError.
func (s *Store) append(ctx context.Context, db dbtx, w streamWrite, meta []byte) (int64, error) {
	sql, args := s.appendStatement(w, meta)
	var written, version int64
	var err error
	if w.snapshot != nil {
		written, version, err = s.appendWithSnapshot(ctx, db, w, sql, args)
	} else {
		err = db.QueryRow(ctx, sql, args...).Scan(&written, &version)
	}
	return s.appended(ctx, db, w, written, version, err)
}

// appendStatement picks the append statement for w's expectation and
// builds its arguments.
func (s *Store) appendStatement(w streamWrite, meta []byte) (string, []any) {
	n := len(w.events)
	// Ids go as [16]byte, which pgx encodes as binary uuid directly; a
	// uuid.UUID would go through its driver.Valuer text form, element by
	// element, at a third of the save's client time.
	ids := make([][16]byte, n)
	types := make([]string, n)
	schemas := make([]int32, n)
	data := make([][]byte, n)
	for i, e := range w.events {
		ids[i], types[i], schemas[i], data[i] = e.id, e.typ, e.schema, e.data
	}
	args := []any{ids, types, schemas, data, meta, w.streamID, w.category, int64(n)}
	switch {
	case w.expected == Any:
		return s.sql.appendAny, args
	case w.expected == StreamExists:
		return s.sql.appendStreamExists, args
	case w.expected == NoStream:
		return s.sql.appendNoStream, args
	}
	return s.sql.appendExact, append(args, int64(w.expected))
}

// appended turns what w's append statement returned (the rows it wrote,
// the stream's new version, its error) into the stream's new version or
// mire's error, resolving a refusal as append describes, then runs the
// inline projections.
func (s *Store) appended(ctx context.Context, db dbtx, w streamWrite, written, version int64, err error) (int64, error) {
	if err == nil && written == int64(len(w.events)) {
		return version, s.runInline(ctx, db, w, version)
	}
	if err != nil && !isUniqueViolation(err, "event_id") {
		return 0, fmt.Errorf("mire: append to stream %q: %w", w.streamID, translate(ctx, err))
	}
	version, resolveErr := s.resolveRefused(ctx, db, w)
	if resolveErr != nil && err != nil {
		// Inside a transaction the failed statement aborted it, so the
		// lookup cannot run; report the statement's own error.
		return 0, fmt.Errorf("mire: append to stream %q: %w", w.streamID, translate(ctx, err))
	}
	return version, resolveErr
}

// appendAll writes several streams' events inside tx, in the order given,
// and returns their new versions. Without inline projections it sends every
// append, with its snapshot if any, in one pipelined batch: one round trip
// however many streams the save spans. With them, the appends run one by
// one, each followed by its inline projections.
//
// On an error some of the appends may be written in tx; the caller rolls
// it back. A refusal that a statement error in the same batch makes
// impossible to look into (the error aborted the transaction) gives way to
// that error.
func (s *Store) appendAll(ctx context.Context, tx pgx.Tx, writes []rootWrite, meta []byte) ([]int64, error) {
	versions := make([]int64, len(writes))
	if len(writes) == 1 || len(s.inline.load()) > 0 {
		for i, w := range writes {
			var err error
			if versions[i], err = s.append(ctx, tx, w.write, meta); err != nil {
				return nil, err
			}
		}
		return versions, nil
	}
	return s.appendBatch(ctx, tx, writes, meta)
}

// appendBatch is appendAll's pipelined path.
func (s *Store) appendBatch(ctx context.Context, tx pgx.Tx, writes []rootWrite, meta []byte) ([]int64, error) {
	batch := &pgx.Batch{}
	snapshots := make([]bool, len(writes)) // whether writes[i]'s snapshot follows its append
	for i, w := range writes {
		sql, args := s.appendStatement(w.write, meta)
		batch.Queue(sql, args...)
		snapshots[i] = s.queueSnapshot(ctx, batch, w.write)
	}
	type outcome struct {
		written, version int64
		err              error
	}
	outcomes := make([]outcome, len(writes))
	aborted := -1 // the first write whose statements failed, if any
	results := tx.SendBatch(ctx, batch)
	for i, w := range writes {
		o := &outcomes[i]
		o.err = results.QueryRow().Scan(&o.written, &o.version)
		if snapshots[i] {
			if _, err := results.Exec(); err != nil && o.err == nil {
				o.err = fmt.Errorf("store snapshot at version %d: %w", w.write.snapshot.version, err)
			}
		}
		if o.err != nil && aborted < 0 {
			aborted = i
		}
	}
	if err := results.Close(); err != nil && aborted < 0 {
		return nil, fmt.Errorf("mire: save: %w", translate(ctx, err))
	}
	if aborted >= 0 {
		o := outcomes[aborted]
		_, err := s.appended(ctx, tx, writes[aborted].write, o.written, o.version, o.err)
		return nil, err
	}
	versions := make([]int64, len(writes))
	for i, w := range writes {
		o := outcomes[i]
		var err error
		if versions[i], err = s.appended(ctx, tx, w.write, o.written, o.version, o.err); err != nil {
			return nil, err
		}
	}
	return versions, nil
}

// resolveRefused decides what a refused append means: the same events
// stored already (success, returning the version they reached), or a
// conflict with the stream's actual version.
func (s *Store) resolveRefused(ctx context.Context, db dbtx, w streamWrite) (int64, error) {
	var storedStream *string
	var storedVersion, actual *int64
	err := db.QueryRow(ctx, s.sql.selectRefused, [16]byte(w.events[0].id), w.streamID).Scan(&storedStream, &storedVersion, &actual)
	switch {
	case err != nil:
		return 0, fmt.Errorf("mire: append to stream %q: %w", w.streamID, translate(ctx, err))
	case storedStream != nil && *storedStream == w.streamID:
		return *storedVersion + int64(len(w.events)) - 1, nil
	case storedStream != nil:
		return 0, fmt.Errorf("%w: append to stream %q: event id %s is already stored in stream %q", ErrInvalidEvent, w.streamID, w.events[0].id, *storedStream)
	}
	cerr := &ConcurrencyError{StreamID: w.streamID, Expected: int64(w.expected)}
	if actual != nil {
		cerr.Actual = *actual
	}
	return 0, cerr
}
