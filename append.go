package mire

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
		s.Notify()
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
	category, err := validateStreamID(streamID)
	if err != nil {
		return 0, fmt.Errorf("mire: append: %w", err)
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
	var ids eventIDs
	if err := ids.add(w.events); err != nil {
		return 0, fmt.Errorf("mire: append to stream %q: %w", streamID, err)
	}
	if !s.tel.on() {
		return s.appendWrite(ctx, db, w)
	}
	ctx, o := s.tel.begin(ctx, "append", "append")
	version, err := s.appendWrite(ctx, db, w)
	s.tel.written(ctx, o, []streamWrite{w}, []int64{version}, err)
	return version, err
}

// appendWrite is the end of appendEvents: it stores w with the context's
// metadata.
func (s *Store) appendWrite(ctx context.Context, db dbtx, w streamWrite) (int64, error) {
	meta, err := metadataJSON(ctx)
	if err != nil {
		return 0, err
	}
	return s.append(ctx, db, w, meta)
}

// append writes one stream's events in one statement and returns the
// stream's new version. When the statement writes nothing (the expectation
// failed, or an event id is taken) it looks at what is stored, as
// resolveRefused describes: a retry after a lost acknowledgement is
// recognised, anything else is a *ConcurrencyError.
func (s *Store) append(ctx context.Context, db dbtx, w streamWrite, meta []byte) (int64, error) {
	hooks := s.inline.load()
	sql, args := s.appendStatement(w, meta, len(hooks) > 0)
	var res appendResult
	dest := res.dest(len(hooks) > 0)
	var err error
	if w.snapshot != nil {
		err = s.appendWithSnapshot(ctx, db, w, sql, args, dest)
	} else {
		err = db.QueryRow(ctx, sql, args...).Scan(dest...)
	}
	return s.appended(ctx, db, w, meta, res, hooks, err)
}

// appendResult is what an append statement returns: how many events it
// wrote and the stream's new version, and, from the statements for inline
// projections, the events' positions (in version order) and the
// transaction's timestamp, their recorded_at.
type appendResult struct {
	written, version int64
	positions        []int64
	at               time.Time
}

// dest returns the scan destinations of the statement's row.
func (r *appendResult) dest(inline bool) []any {
	if inline {
		return []any{&r.written, &r.version, &r.positions, &r.at}
	}
	return []any{&r.written, &r.version}
}

// appendStatement picks the append statement for w's expectation and
// builds its arguments; inline picks the form that also returns what
// inline projections need.
func (s *Store) appendStatement(w streamWrite, meta []byte, inline bool) (string, []any) {
	// Events that came with their ids (WithID) may be a retry: those
	// statements write nothing when an id is taken, instead of failing on
	// the unique index, which would abort the caller's transaction before
	// resolveRefused could look.
	given := slices.ContainsFunc(w.events, func(e pendingEvent) bool { return e.given })
	forms := &s.sql.appendNew
	switch {
	case given && inline:
		forms = &s.sql.appendGivenInline
	case given:
		forms = &s.sql.appendGiven
	case inline:
		forms = &s.sql.appendNewInline
	}
	return forms.statement(w, meta)
}

// statement picks, among forms, the statement for w's expectation and
// number of events, and builds its arguments.
func (forms *appendForms) statement(w streamWrite, meta []byte) (string, []any) {
	n := len(w.events)
	var args []any
	q := &forms.many
	if n == 1 {
		q = &forms.one
		e := &w.events[0]
		args = append(make([]any, 0, 9), [16]byte(e.id), e.typ, e.schema, e.data, meta, w.streamID, w.category, int64(1))
	} else {
		// Ids go as [16]byte, which pgx encodes as binary uuid directly;
		// a uuid.UUID would go through its driver.Valuer text form,
		// element by element, at a third of the save's client time.
		ids := make([][16]byte, n)
		types := make([]string, n)
		schemas := make([]int32, n)
		data := make([][]byte, n)
		for i, e := range w.events {
			ids[i], types[i], schemas[i], data[i] = e.id, e.typ, e.schema, e.data
		}
		args = []any{ids, types, schemas, data, meta, w.streamID, w.category, int64(n)}
	}
	switch {
	case w.expected == Any:
		return q.any, args
	case w.expected == StreamExists:
		return q.streamExists, args
	case w.expected == NoStream:
		return q.noStream, args
	}
	return q.exact, append(args, int64(w.expected))
}

// appended turns what w's append statement returned (the rows it wrote,
// the stream's new version, its error) into the stream's new version or
// mire's error, resolving a refusal as append describes, then runs the
// inline projections.
func (s *Store) appended(ctx context.Context, db dbtx, w streamWrite, meta []byte, res appendResult, hooks []inlineProjection, err error) (int64, error) {
	if err == nil && res.written == int64(len(w.events)) {
		return res.version, s.runInline(ctx, db, w, meta, res, hooks)
	}
	if isUniqueViolation(err, "stream_id_version") {
		// Event rows the stream row does not account for (a hand-made
		// repair): the stream is not at the version the writer expected.
		cerr := &ConcurrencyError{StreamID: w.streamID, Expected: w.expected}
		if _, inTx := db.(pgx.Tx); !inTx { // the failure aborted a transaction: no statement can run there
			_ = db.QueryRow(ctx, s.sql.selectStreamVersion, w.streamID).Scan(&cerr.Actual)
		}
		return 0, cerr
	}
	if err != nil && !isUniqueViolation(err, "event_id") {
		return 0, fmt.Errorf("mire: append to stream %q: %w", w.streamID, translate(ctx, err))
	}
	version, resolveErr := s.resolveRefused(ctx, db, w, meta)
	if resolveErr != nil && err != nil {
		// A taken event id that the statement did not see taken: a
		// concurrent write of these very events committed while it ran.
		// Inside a transaction the failure aborted it, so the lookup
		// cannot tell more; a retry in a new transaction will.
		return 0, &ConcurrencyError{StreamID: w.streamID, Expected: w.expected}
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
	versions, _, err := s.appendBatch(ctx, tx, writes, meta)
	return versions, err
}

// appendBatch is appendAll's pipelined path. The snapshots follow every
// append, under one savepoint, so a snapshot Postgres refuses is undone
// alone (see queueSnapshots).
//
// With a nil tx it begins a transaction of its own, BEGIN sent in front of
// the appends, and returns it, to be committed by the caller (and rolled
// back by it also after an error: it is nil only if BEGIN failed).
func (s *Store) appendBatch(ctx context.Context, tx pgx.Tx, writes []rootWrite, meta []byte) ([]int64, pgx.Tx, error) {
	batch := &pgx.Batch{}
	own := tx == nil
	if own {
		batch.BeginTx(pgx.TxOptions{})
	}
	ws := make([]streamWrite, len(writes))
	for i, w := range writes {
		sql, args := s.appendStatement(w.write, meta, false)
		batch.Queue(sql, args...)
		ws[i] = w.write
	}
	snapshots := s.queueSnapshots(ctx, batch, true, ws...)
	type outcome struct {
		res appendResult
		err error
	}
	outcomes := make([]outcome, len(writes))
	aborted := -1 // the first write whose statement failed, if any
	var results pgx.BatchResults
	if own {
		results = s.pool.SendBatch(ctx, batch)
		tx = results.Tx()
		if _, err := results.Exec(); err != nil { // BEGIN
			_ = results.Close()
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return nil, nil, fmt.Errorf("mire: save: begin: %w", translate(ctx, err))
		}
	} else {
		results = tx.SendBatch(ctx, batch)
	}
	for i := range writes {
		o := &outcomes[i]
		o.err = results.QueryRow().Scan(o.res.dest(false)...)
		if o.err != nil && aborted < 0 {
			aborted = i
		}
	}
	snapErr := snapshotsStored(results, snapshots)
	if err := results.Close(); err != nil && aborted < 0 && snapErr == nil {
		return nil, tx, fmt.Errorf("mire: save: %w", translate(ctx, err))
	}
	if aborted >= 0 {
		o := outcomes[aborted]
		_, err := s.appended(ctx, tx, writes[aborted].write, meta, o.res, nil, o.err)
		return nil, tx, err
	}
	if snapErr != nil {
		if err := s.snapshotsRefused(ctx, tx, true, snapErr, ws...); err != nil {
			return nil, tx, fmt.Errorf("mire: save: %w", translate(ctx, err))
		}
	}
	versions := make([]int64, len(writes))
	for i, w := range writes {
		o := outcomes[i]
		var err error
		if versions[i], err = s.appended(ctx, tx, w.write, meta, o.res, nil, o.err); err != nil {
			return nil, tx, err
		}
	}
	return versions, tx, nil
}

// placement is where a refused append's event id is stored: a stream and
// version, or nil for not at all.
type placement struct {
	stream  *string
	version *int64
}

// readRefused reads, in one statement, stream w's version (nil if it does
// not exist) and where each of w's event ids is stored, in order.
func (s *Store) readRefused(ctx context.Context, db dbtx, w streamWrite) (*int64, []placement, error) {
	ids := make([][16]byte, len(w.events))
	for i, e := range w.events {
		ids[i] = e.id
	}
	rows, err := db.Query(ctx, s.sql.selectRefused, ids, w.streamID)
	if err != nil {
		return nil, nil, fmt.Errorf("mire: append to stream %q: %w", w.streamID, translate(ctx, err))
	}
	var (
		actual *int64
		ord    int64
		p      placement
	)
	stored := make([]placement, 0, len(w.events))
	if _, err := pgx.ForEachRow(rows, []any{&actual, &ord, &p.stream, &p.version}, func() error {
		stored = append(stored, p)
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("mire: append to stream %q: %w", w.streamID, translate(ctx, err))
	}
	return actual, stored, nil
}

// refusedConflict is the *ConcurrencyError of w's refused append, the
// stream at version actual (nil: it does not exist).
func refusedConflict(w streamWrite, actual *int64) *ConcurrencyError {
	cerr := &ConcurrencyError{StreamID: w.streamID, Expected: w.expected}
	if actual != nil {
		cerr.Actual = *actual
	}
	return cerr
}

// resolveRefused decides what a refused append means, from where its event
// ids are stored and the stream's version, read in one statement:
//
//   - none stored: another writer got there first, a *ConcurrencyError;
//   - all stored, in order, in this stream, from the version the
//     expectation allows: a retry after a lost acknowledgement, a success
//     at the version the events reached;
//   - the first k stored so: a retry that carries more events than the lost
//     write; the rest are written, expecting the stream where the stored
//     ones left it (a *ConcurrencyError if another writer followed them);
//   - any other placement (another stream, another version, a gap): the
//     ids were reused for other events, ErrInvalidEvent.
func (s *Store) resolveRefused(ctx context.Context, db dbtx, w streamWrite, meta []byte) (int64, error) {
	actual, stored, err := s.readRefused(ctx, db, w)
	if err != nil {
		return 0, err
	}
	k := 0 // the events stored as a retry's prefix
	for i, p := range stored {
		switch {
		case p.stream == nil:
			continue
		case *p.stream != w.streamID:
			return 0, fmt.Errorf("%w: append to stream %q: event %d: event id %s is already stored in stream %q",
				ErrInvalidEvent, w.streamID, i, w.events[i].id, *p.stream)
		case i != k:
			return 0, fmt.Errorf("%w: append to stream %q: event %d: event id %s is already stored at version %d, but event %d is not stored",
				ErrInvalidEvent, w.streamID, i, w.events[i].id, *p.version, k)
		case i > 0 && *p.version != *stored[0].version+int64(i),
			i == 0 && w.expected >= 0 && *p.version != int64(w.expected)+1:
			want := int64(w.expected) + 1 + int64(i)
			if w.expected < 0 {
				want = *stored[0].version + int64(i)
			}
			return 0, fmt.Errorf("%w: append to stream %q: event %d: event id %s is already stored at version %d, not %d",
				ErrInvalidEvent, w.streamID, i, w.events[i].id, *p.version, want)
		}
		k++
	}
	cerr := refusedConflict(w, actual)
	if k == 0 {
		return 0, cerr
	}
	last := *stored[0].version + int64(k) - 1
	if k == len(w.events) {
		return last, nil
	}
	if cerr.Actual != last {
		return 0, cerr
	}
	rest := w
	rest.events, rest.expected = w.events[k:], Exactly(last)
	version, err := s.append(ctx, db, rest, meta)
	if errors.As(err, &cerr) {
		cerr.Expected = w.expected
	}
	return version, err
}

// appendWithSnapshot runs the append statement sql of w and the snapshot
// upsert as one pipelined batch: one round trip, and, on a pool, one
// implicit transaction. It returns what the append statement returned.
//
// The snapshot never costs the save. A State that could not be encoded is
// logged and the append runs alone. If Postgres refuses the snapshot row,
// that is logged too; on a pool the batch rolled back as a whole, so the
// append runs again alone; inside a transaction the snapshot is rolled
// back to its savepoint, and the append stands.
func (s *Store) appendWithSnapshot(ctx context.Context, db dbtx, w streamWrite, sql string, args []any, dest []any) error {
	b, ok := db.(batcher)
	_, onPool := db.(*pgxpool.Pool)
	batch := &pgx.Batch{}
	batch.Queue(sql, args...)
	n := 0
	if ok {
		n = s.queueSnapshots(ctx, batch, !onPool, w)
	}
	if n == 0 {
		return db.QueryRow(ctx, sql, args...).Scan(dest...)
	}
	results := b.SendBatch(ctx, batch)
	err := results.QueryRow().Scan(dest...)
	snapErr := snapshotsStored(results, n)
	closeErr := results.Close()
	if err != nil {
		return err
	}
	if snapErr = cmp.Or(snapErr, closeErr); snapErr == nil {
		return nil
	}
	if err := s.snapshotsRefused(ctx, db, !onPool, snapErr, w); err != nil {
		return err
	}
	if onPool {
		return db.QueryRow(ctx, sql, args...).Scan(dest...)
	}
	return nil
}
