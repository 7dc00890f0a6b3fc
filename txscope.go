package mire

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"
)

// TxScope is one Postgres transaction for a decision that spans several
// aggregates: it loads them (locking what the decision depends on) and saves
// them as one atomic unit. It is the escape hatch, not the default; most
// commands load and save one aggregate with Store.Save.
//
//	scope, err := store.Begin(ctx, nil)
//	if err != nil { ... }
//	defer scope.Rollback(ctx)
//	accs, err := mire.LoadManyForUpdate[Account](ctx, scope, from, to)
//	... decide, Record on both ...
//	if err := scope.Save(ctx, accs); err != nil { ... }
//	err = scope.Commit(ctx)
//
// or, the appends and COMMIT in one round trip, err =
// scope.SaveAndCommit(ctx, accs). Store.InTx wraps the same steps around a function. A TxScope is not safe
// for concurrent use.
type TxScope struct {
	store *Store
	// tx is the scope's transaction: nil until its first statement, in
	// front of which BEGIN goes (see begin).
	tx      pgx.Tx
	conn    *pgxpool.Conn   // the pooled connection tx runs on, released when the scope ends; nil for ScopeTx
	opts    pgx.TxOptions   // to begin tx with
	began   context.Context // Begin's context, for a Tx call that has to begin tx
	timeout string          // the lock timeout to set at BEGIN, as lock_timeout reads it; empty for none
	saved   []savedRoot     // roots advanced by Save, restored if the scope does not commit
	failed  error           // an earlier call's error (a Save, a lock wait) that makes Commit refuse
	done    bool
	callers bool // tx is the caller's (ScopeTx): the caller commits or rolls back
	// committed says SaveAndCommit committed the scope, which InTx then
	// has nothing left to commit.
	committed bool

	span   trace.Span        // the mire.tx span from begin to commit or rollback; nil when tracing is off
	parent trace.SpanContext // the span context of Begin's ctx: calls in the same context nest under span
}

// savedRoot is a Root's state before a scope's Save advanced it.
type savedRoot struct {
	root    rootSaver
	version int64
	pending []pendingEvent
}

// TxOpts tunes the transaction of a TxScope, for Begin and (inside
// InTxOpts) InTx. A nil *TxOpts means all defaults.
type TxOpts struct {
	// LockTimeout bounds each wait for a row lock inside the scope (a
	// locking load, or a save behind another scope's lock); past it the call
	// fails with ErrLockTimeout and the scope can only be rolled back.
	// Defaults to 0: wait as long as the context allows.
	LockTimeout time.Duration
	// IsoLevel is the transaction's isolation level. Defaults to read
	// committed, which the row locks of LoadForUpdate make safe for
	// read-decide-write. Under repeatable read or serializable, a lock on a
	// stream another transaction changed meanwhile is ErrSerialization.
	IsoLevel pgx.TxIsoLevel
}

// InTxOpts tunes InTx: its transaction, and its retries. A nil *InTxOpts
// means all defaults.
type InTxOpts struct {
	TxOpts
	// Retries is how many more times InTx runs its function after a run
	// failed with ErrConcurrency or ErrSerialization. Defaults to 0: no
	// retry.
	Retries int
	// RetryBackoff is the base of the jittered, doubling wait between
	// attempts. Defaults to RetryBackoffDefault.
	RetryBackoff time.Duration
}

// RetryBackoffDefault is the first wait between InTx attempts.
const RetryBackoffDefault = 5 * time.Millisecond

// retryBackoffMaxShift caps the doubling of the wait between attempts at
// RetryBackoff << 6.
const retryBackoffMaxShift = 6

// withDefaults returns a copy of opts (nil meaning the zero value), or an
// error naming the first bad field.
func (opts *TxOpts) withDefaults() (TxOpts, error) {
	var o TxOpts
	if opts != nil {
		o = *opts
	}
	if o.LockTimeout < 0 {
		return o, fmt.Errorf("negative lock timeout %v", o.LockTimeout)
	}
	switch o.IsoLevel {
	case "", pgx.ReadUncommitted, pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable:
	default:
		return o, fmt.Errorf("unsupported isolation level %q", o.IsoLevel)
	}
	return o, nil
}

// withDefaults returns a copy of opts (nil meaning the zero value) with its
// defaults filled in, or an error naming the first bad field.
func (opts *InTxOpts) withDefaults() (InTxOpts, error) {
	var o InTxOpts
	if opts != nil {
		o = *opts
	}
	var err error
	if o.TxOpts, err = o.TxOpts.withDefaults(); err != nil {
		return o, err
	}
	o.RetryBackoff = cmp.Or(o.RetryBackoff, RetryBackoffDefault)
	switch {
	case o.Retries < 0:
		return o, fmt.Errorf("negative retries %d", o.Retries)
	case o.RetryBackoff < 0:
		return o, fmt.Errorf("negative retry backoff %v", o.RetryBackoff)
	}
	return o, nil
}

// Begin opens a TxScope with opts (nil for defaults). It sends nothing:
// BEGIN goes out before the scope's first statement, in the same round
// trip when that is a LoadForUpdate or LoadManyForUpdate (the usual first
// call), in one of its own otherwise, so a failure to reach the database
// surfaces at that first call. Always defer Rollback:
//
//	scope, err := store.Begin(ctx, nil)
//	if err != nil { ... }
//	defer scope.Rollback(ctx) // a no-op after Commit
func (s *Store) Begin(ctx context.Context, opts *TxOpts) (*TxScope, error) {
	if err := s.check(ctx, "begin"); err != nil {
		return nil, err
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("mire: begin: %w", err)
	}
	return s.begin(ctx, o)
}

// ScopeTx returns a TxScope inside the caller's transaction tx, for code
// that already runs in one (a job worker completing its job, an HTTP
// handler's unit of work): Load, LoadForUpdate, LoadManyForUpdate,
// TxScope.ReadStream and TxScope.Save all run in tx, and commit or roll back
// with the caller's own rows. The caller ends tx: Commit and Rollback of
// this scope are errors. Like SaveTx, the roots advance when their
// statements succeed; if the caller then rolls back, reload them.
func (s *Store) ScopeTx(tx pgx.Tx) (*TxScope, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("mire: scope tx: %w", ErrClosed)
	}
	if tx == nil {
		return nil, fmt.Errorf("mire: scope tx: tx is nil")
	}
	return &TxScope{store: s, tx: tx, callers: true}, nil
}

func (s *Store) begin(ctx context.Context, o TxOpts) (*TxScope, error) {
	t := &TxScope{store: s, began: ctx}
	if s.tel.tracer != nil {
		t.parent = trace.SpanContextFromContext(ctx)
		_, sp := s.tel.begin(ctx, "tx", "transaction")
		t.span = sp.span
	}
	// Nothing is sent yet: BEGIN goes out in front of the scope's first
	// statement (see queueBegin).
	t.opts = pgx.TxOptions{IsoLevel: o.IsoLevel}
	if o.LockTimeout > 0 {
		t.timeout = strconv.FormatInt(max(o.LockTimeout.Milliseconds(), 1), 10) + "ms"
	}
	return t, nil
}

// queueBegin queues the scope's BEGIN (and its lock timeout) at the head of
// batch, and reports whether it did: not once the scope has begun.
func (t *TxScope) queueBegin(batch *pgx.Batch) bool {
	if t.tx != nil {
		return false
	}
	batch.BeginTx(t.opts)
	if t.timeout != "" {
		batch.Queue(t.store.sql.setLockTimeout, t.timeout)
	}
	return true
}

// sendBatch sends batch in the scope's transaction, beginning it with
// batch if batch holds the scope's BEGIN (queueBegin). The scope holds the
// pooled connection itself, not a pool transaction, so that SaveAndCommit
// can send COMMIT in a batch and hand the connection back without another
// round trip.
func (t *TxScope) sendBatch(ctx context.Context, batch *pgx.Batch, begin bool) pgx.BatchResults {
	if !begin {
		return t.tx.SendBatch(ctx, batch)
	}
	conn, err := t.store.pool.Acquire(ctx)
	if err != nil {
		results := pgx.FailedBatchResults(batch, err)
		t.tx = results.Tx() // closed
		return results
	}
	t.conn = conn
	results := conn.SendBatch(ctx, batch)
	t.tx = results.Tx() // closed if BEGIN failed, never nil
	return results
}

// release hands the scope's connection back to the pool, once its
// transaction is over (the pool closes a connection left in one).
func (t *TxScope) release() {
	if t.conn != nil {
		t.conn.Release()
		t.conn = nil
	}
}

// transaction returns the scope's transaction, beginning it in a round trip
// of its own if no statement has yet. A failed BEGIN poisons the scope.
func (t *TxScope) transaction(ctx context.Context) (pgx.Tx, error) {
	if t.tx != nil {
		return t.tx, nil
	}
	if t.done {
		return nil, pgx.ErrTxClosed // as the transaction would say
	}
	batch := &pgx.Batch{}
	t.queueBegin(batch)
	if err := t.sendBatch(ctx, batch, true).Close(); err != nil {
		t.failed = fmt.Errorf("mire: begin: %w", translate(ctx, err))
		return nil, t.failed
	}
	return t.tx, nil
}

// scoped returns ctx carrying the scope's mire.tx span when ctx carries
// the span the scope was begun in (or none, as Begin's did), so the
// scope's saves and loads show as children of its transaction; a ctx with
// another span is left as it is.
func (t *TxScope) scoped(ctx context.Context) context.Context {
	if t.span == nil || !trace.SpanContextFromContext(ctx).Equal(t.parent) {
		return ctx
	}
	return trace.ContextWithSpan(ctx, t.span)
}

// endSpan ends the scope's mire.tx span, once, with err's status.
func (t *TxScope) endSpan(err error) {
	if t.span == nil {
		return
	}
	op{span: t.span}.end(err)
	t.span = nil
}

func (t *TxScope) source() (*Store, dbtx) { return t.store, scopeDB{t} }

// scopeDB runs statements in the scope's transaction, beginning it first
// if it has not begun.
type scopeDB struct{ t *TxScope }

func (d scopeDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tx, err := d.t.transaction(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return tx.Exec(ctx, sql, args...)
}

func (d scopeDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	tx, err := d.t.transaction(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Query(ctx, sql, args...)
}

func (d scopeDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	tx, err := d.t.transaction(ctx)
	if err != nil {
		return errRow{err}
	}
	return tx.QueryRow(ctx, sql, args...)
}

// errRow is the row of a statement that could not be sent.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// Tx returns the scope's transaction, for plain SQL that must commit or roll
// back with the scope's events. The scope sends BEGIN with its first
// statement; if none has gone out yet, Tx begins the transaction in a round
// trip of its own, under the context the scope was begun with. If that
// fails, the transaction Tx returns is closed, and Commit returns the
// error.
func (t *TxScope) Tx() pgx.Tx {
	if t.tx == nil {
		if _, err := t.transaction(t.scoped(t.began)); err != nil && t.tx == nil {
			// Ended before it began: a transaction that is closed.
			b := &pgx.Batch{}
			b.BeginTx(pgx.TxOptions{})
			return pgx.FailedBatchResults(b, err).Tx()
		}
	}
	return t.tx
}

// Store returns the store the scope was opened on.
func (t *TxScope) Store() *Store { return t.store }

// LoadForUpdate is Load inside the scope that first row-locks the stream, so
// no other writer can append between this read and the scope's commit. A
// missing stream is ErrNotFound and takes no lock.
func LoadForUpdate[T any, PT interface {
	*T
	Aggregate
}](ctx context.Context, scope *TxScope, id string) (*Root[T], error) {
	roots, err := LoadManyForUpdate[T, PT](ctx, scope, id)
	if err != nil {
		return nil, err
	}
	return roots[0], nil
}

// LoadManyForUpdate row-locks the streams of every id and then loads them,
// in one round trip.
// It locks in one stable order (by stream id, whatever order the ids come
// in), so two scopes locking the same streams, say for transfers in
// opposite directions, wait for each other instead of deadlocking. The
// roots come back in the order of ids, as Roots, which Save takes whole
// (scope.Save(ctx, accs)); an id given twice is an error.
//
// A missing stream is ErrNotFound naming it; the streams that do exist stay
// locked until the scope ends. A lock wait that outlasts the scope's
// LockTimeout is ErrLockTimeout; after it, or any other database error, the
// scope can only be rolled back.
func LoadManyForUpdate[T any, PT interface {
	*T
	Aggregate
}](ctx context.Context, scope *TxScope, ids ...string) (Roots[T], error) {
	if err := scope.live("load for update"); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("mire: load for update %T: no ids", PT(nil))
	}
	roots := make(Roots[T], len(ids))
	streamIDs := make([]string, 0, len(ids))
	for i, id := range ids {
		root, err := newRoot[T, PT](ctx, scope.store, id, "load for update")
		if err != nil {
			return nil, err
		}
		roots[i] = root
		streamIDs = append(streamIDs, root.StreamID())
	}
	slices.Sort(streamIDs)
	for i := 1; i < len(streamIDs); i++ {
		if streamIDs[i] == streamIDs[i-1] {
			return nil, fmt.Errorf("mire: load for update: stream %q given twice", streamIDs[i])
		}
	}
	var st replayStats
	var locked []string
	var err error
	if !scope.store.tel.on() {
		locked, err = lockAndLoad(ctx, scope, streamIDs, roots, &st)
	} else {
		ctx, o := scope.store.tel.begin(scope.scoped(ctx), "load", "load for update")
		locked, err = lockAndLoad(ctx, scope, streamIDs, roots, &st)
		scope.store.tel.loaded(ctx, o, roots[0].category, streamIDs, st, err)
	}
	if err != nil {
		return nil, err
	}
	if len(locked) < len(streamIDs) {
		for _, id := range streamIDs {
			if !slices.Contains(locked, id) {
				return nil, fmt.Errorf("mire: load for update: stream %q: %w", id, ErrNotFound)
			}
		}
	}
	return roots, nil
}

// lockAndLoad row-locks the given streams, in stream id order, then replays
// every root, in one pipelined round trip: the statements run in order, so
// each replay reads its stream after the lock is held. It returns the
// streams that exist. A failure of the lock aborts the transaction, so it
// poisons the scope.
func lockAndLoad[T any](ctx context.Context, t *TxScope, streamIDs []string, roots []*Root[T], st *replayStats) ([]string, error) {
	var locked []string
	var lockErr error
	batch := &pgx.Batch{}
	begin := t.queueBegin(batch) // BEGIN rides with the locks and loads
	batch.Queue(t.store.sql.lockStreams, streamIDs).Query(func(rows pgx.Rows) error {
		locked, lockErr = pgx.CollectRows(rows, pgx.RowTo[string])
		return lockErr
	})
	var unusable []*Root[T] // roots whose snapshot did not decode: replay them whole
	for _, root := range roots {
		query, args := t.store.replayQuery(root)
		batch.Queue(query, args...).Query(func(rows pgx.Rows) error {
			err := t.store.fold(ctx, root, rows, st)
			if errors.Is(err, errSnapshotUnusable) {
				unusable = append(unusable, root)
				return nil
			}
			return err
		})
	}
	err := t.sendBatch(ctx, batch, begin).Close()
	if lockErr != nil || (err != nil && locked == nil) {
		err = fmt.Errorf("mire: lock streams %q: %w", streamIDs, translate(ctx, cmp.Or(lockErr, err)))
		t.failed = err
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	for _, root := range unusable {
		if err := t.store.replay(ctx, t.tx, fullReplay{root}, st); err != nil {
			return nil, err
		}
	}
	return locked, nil
}

// Save writes the pending events of each root inside the scope, with the
// same optimistic checks as Store.Save, all in one pipelined round trip;
// streams are written in stream id order, so two scopes saving the same
// streams do not deadlock. The roots
// advance at once (they can record and save again in the scope); if the
// scope then rolls back or fails to commit, each is put back as it was
// before its first Save in the scope, version and pending events, so the
// caller can reload or retry.
//
// A failed Save puts back every root saved in the scope and poisons it:
// nothing it wrote can commit, and Commit rolls back and returns the error.
func (t *TxScope) Save(ctx context.Context, roots ...Saveable) error {
	if err := t.live("save"); err != nil {
		return err
	}
	if err := checkContext(ctx, "save"); err != nil {
		return err
	}
	writes, err := collectWrites(roots)
	if err != nil {
		t.failed = err
		t.restore()
		return err
	}
	return t.saveWrites(ctx, writes)
}

// saveWrites is Save after the roots are checked.
func (t *TxScope) saveWrites(ctx context.Context, writes []rootWrite) error {
	tx, err := t.transaction(ctx)
	if err != nil {
		t.restore()
		return err
	}
	if len(writes) == 0 {
		return nil
	}
	versions, err := t.store.traced(t.scoped(ctx), writes, func(ctx context.Context) ([]int64, error) {
		return t.store.write(ctx, tx, writes)
	})
	if err != nil {
		t.failed = err
		t.restore()
		return err
	}
	if !t.callers {
		for _, w := range writes {
			t.saved = append(t.saved, savedRoot{root: w.root, version: int64(w.write.expected), pending: w.write.events})
		}
	}
	advance(writes, versions)
	return nil
}

// SaveAndCommit saves the roots as Save does and commits the scope, in one
// round trip: the appends and COMMIT go to the server together, as a
// transaction written by hand would send them. After a locking load, a
// read-decide-write such as a transfer takes two round trips in all (BEGIN
// with the locks and loads, then the appends with COMMIT) instead of three.
//
// It ends the scope either way. On success the roots advance and the scope
// is committed; InTx's function may end with it (return
// scope.SaveAndCommit(ctx, accs)), and InTx then has nothing left to
// commit. On any failure nothing the scope wrote commits, the roots are as
// they were before the scope's first Save, the scope is rolled back, and
// the error is Save's or Commit's (a conflict is a *ConcurrencyError). On a
// scope an earlier call poisoned it is Commit.
//
// A refused append must abort the transaction before COMMIT reaches it, so
// the appends it sends fail when refused (where Save's answer that they
// wrote nothing). Where a refusal may not be one (events with given ids,
// WithID, or of a Root whose own earlier save sent them and failed, may be
// a retry of a write that committed, which Save recognises by reading in
// the transaction) or the save runs more than its appends (inline
// projections, a snapshot due), it saves and then commits, in two round
// trips, with the same outcome.
func (t *TxScope) SaveAndCommit(ctx context.Context, roots ...Saveable) error {
	if err := t.usable("save and commit"); err != nil {
		return err
	}
	if t.callers {
		return errCallersTx("commit")
	}
	if t.failed != nil {
		return t.Commit(ctx)
	}
	if err := checkContext(ctx, "save"); err != nil {
		_ = t.Rollback(ctx)
		return err
	}
	writes, err := collectWrites(roots)
	if err != nil {
		_ = t.Rollback(ctx)
		return err
	}
	if len(writes) == 0 || !t.store.oneTrip(writes) {
		return t.saveThenCommit(ctx, writes)
	}
	meta, err := metadataJSON(ctx)
	if err != nil {
		_ = t.Rollback(ctx)
		return err
	}
	markSent(writes)
	ctx = t.scoped(ctx)
	versions, err := t.store.traced(ctx, writes, func(ctx context.Context) ([]int64, error) {
		return t.appendAndCommit(ctx, writes, meta)
	})
	if errors.Is(err, errTwoTrips) { // nothing was sent before: begin again
		t.done, t.tx = false, nil
		return t.saveThenCommit(ctx, writes)
	}
	if err != nil {
		t.restore()
		t.endSpan(err)
		return err
	}
	advance(writes, versions)
	t.endSpan(nil)
	t.store.Notify()
	t.saved = nil
	return nil
}

// saveThenCommit is SaveAndCommit in two round trips: Save, then Commit,
// marking the scope committed for InTx.
func (t *TxScope) saveThenCommit(ctx context.Context, writes []rootWrite) error {
	if err := t.saveWrites(ctx, writes); err != nil {
		_ = t.Rollback(ctx)
		return err
	}
	if err := t.Commit(ctx); err != nil {
		return err
	}
	t.committed = true
	return nil
}

// oneTrip reports whether writes can go with COMMIT in one batch: no
// inline projections to run after them, no snapshot due, and no event that
// may be stored already: none with a given id, none sent before (a refusal
// of those may be a retry of a write whose outcome was lost, which
// resolveRefused tells by reading in the transaction).
func (s *Store) oneTrip(writes []rootWrite) bool {
	if len(s.inline.load()) > 0 {
		return false
	}
	for _, w := range writes {
		if w.write.snapshot != nil || w.root.pendingSent() || slices.ContainsFunc(w.write.events, func(e pendingEvent) bool { return e.given }) {
			return false
		}
	}
	return true
}

// appendAndCommit sends writes' appends, in the form that fails when
// refused, and COMMIT, in one batch (with BEGIN in front if the scope has
// not begun), and ends the scope: committed, its connection handed back,
// and the versions the streams reached returned; or rolled back and the
// error returned.
func (t *TxScope) appendAndCommit(ctx context.Context, writes []rootWrite, meta []byte) ([]int64, error) {
	s := t.store
	t.done = true
	batch := &pgx.Batch{}
	begin := t.queueBegin(batch)
	for _, w := range writes {
		sql, args := s.sql.appendNewStrict.statement(w.write, meta)
		batch.Queue(sql, args...)
	}
	batch.Queue("commit")
	results := t.sendBatch(ctx, batch, begin)
	if begin {
		if _, err := results.Exec(); err != nil { // BEGIN
			_ = results.Close()
			return nil, errors.Join(fmt.Errorf("mire: begin: %w", translate(ctx, err)), t.rollback(ctx))
		}
		if t.timeout != "" {
			_, _ = results.Exec() // an error shows at the first append
		}
	}
	res := make([]appendResult, len(writes))
	refused, refusal := -1, error(nil) // the first write that failed, and its error
	for i := range writes {
		if err := results.QueryRow().Scan(res[i].dest(false)...); err != nil && refused < 0 {
			refused, refusal = i, err
		}
	}
	tag, commitErr := results.Exec()
	closeErr := results.Close()
	if refused < 0 && commitErr == nil && closeErr == nil && tag.String() == "COMMIT" {
		t.committed = true
		t.release() // the transaction is over: nothing to send
		versions := make([]int64, len(writes))
		for i := range writes {
			versions[i] = res[i].version
		}
		return versions, nil
	}
	rbErr := t.rollback(ctx)
	if refused >= 0 {
		w := writes[refused].write
		if !isStrictRefusal(refusal) && !isUniqueViolation(refusal, "") {
			return nil, errors.Join(fmt.Errorf("mire: append to stream %q: %w", w.streamID, translate(ctx, refusal)), rbErr)
		}
		// What refused it is read outside the transaction, which is over:
		// read only, as nothing may be written outside it.
		actual, placed, err := s.readRefused(ctx, s.pool, w)
		stored := slices.ContainsFunc(placed, func(p placement) bool { return p.stream != nil })
		switch {
		case err != nil:
			return nil, errors.Join(err, rbErr)
		case stored && begin:
			// Events a copy of their Root sent (a save whose acknowledgement
			// was lost), which this Root did not see go: a retry, which only
			// Save's path can complete. The transaction began here, so
			// nothing else of it is lost.
			return nil, errors.Join(errTwoTrips, rbErr)
		case stored:
			return nil, errors.Join(fmt.Errorf("%w (events of it are stored by an earlier save, and the scope's transaction, rolled back, held more than this save: load again)",
				refusedConflict(w, actual)), rbErr)
		}
		return nil, errors.Join(refusedConflict(w, actual), rbErr)
	}
	err := cmp.Or(commitErr, closeErr)
	if err == nil {
		err = fmt.Errorf("the server answered %q", tag.String())
	}
	return nil, errors.Join(fmt.Errorf("mire: commit: %w", translate(ctx, err)), rbErr)
}

// errTwoTrips tells appendAndCommit's caller to save the roots again on the
// two-round-trip path, which recognises a retry: nothing was written.
var errTwoTrips = errors.New("mire: the save is a retry; saving it again with Save")

// rollback ends the transaction of a scope marked done: rolled back, if
// it is still open, and its connection handed back.
func (t *TxScope) rollback(ctx context.Context) error {
	if t.tx == nil {
		return nil
	}
	err := t.tx.Rollback(context.WithoutCancel(ctx))
	t.release()
	if err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("mire: rollback: %w", translate(ctx, err))
	}
	return nil
}

// Commit commits the scope. If a call in it failed (a Save, a lock wait),
// or the transaction was aborted by an error in the scope's own SQL, or the
// commit itself fails, nothing is written, the saved roots are put back, and
// the error is returned. Commit after Commit or Rollback is ErrTxDone.
func (t *TxScope) Commit(ctx context.Context) error {
	if err := t.usable("commit"); err != nil {
		return err
	}
	if t.callers {
		return errCallersTx("commit")
	}
	if t.failed != nil {
		t.endSpan(t.failed)
		if err := t.Rollback(ctx); err != nil {
			return errors.Join(fmt.Errorf("mire: commit: an earlier call in the scope failed: %w", t.failed), err)
		}
		return fmt.Errorf("mire: commit: an earlier call in the scope failed, rolled back: %w", t.failed)
	}
	t.done = true
	if t.tx == nil { // no statement was sent: nothing to commit
		t.endSpan(nil)
		return nil
	}
	err := t.tx.Commit(t.scoped(ctx))
	t.release()
	if err != nil {
		t.restore()
		if errors.Is(err, pgx.ErrTxCommitRollback) {
			err = fmt.Errorf("mire: commit: the transaction was aborted by an earlier error and rolled back: %w", err)
		} else {
			err = fmt.Errorf("mire: commit: %w", translate(ctx, err))
		}
		t.endSpan(err)
		return err
	}
	t.endSpan(nil)
	t.store.Notify()
	t.saved = nil
	return nil
}

// Rollback rolls the scope back, releasing its locks, and puts the roots
// it saved back as they were. It is a no-op after Commit or a previous
// Rollback, so it is safe to defer right after Begin. It runs even when ctx
// is cancelled.
func (t *TxScope) Rollback(ctx context.Context) error {
	if t.callers {
		return errCallersTx("rollback")
	}
	if t.done {
		return nil
	}
	t.done = true
	t.restore()
	if t.span != nil {
		t.span.AddEvent("mire.rollback")
		t.endSpan(t.failed)
	}
	return t.rollback(ctx)
}

// restore puts each saved root back at its version before its first Save
// in the scope, with every event it saved in the scope pending again,
// followed by those recorded since its last Save.
func (t *TxScope) restore() {
	first := make(map[rootSaver]*savedRoot, len(t.saved))
	order := make([]*savedRoot, 0, len(t.saved))
	for _, s := range t.saved {
		if u, ok := first[s.root]; ok {
			u.pending = append(u.pending, s.pending...)
			continue
		}
		u := &savedRoot{root: s.root, version: s.version, pending: slices.Clone(s.pending)}
		first[s.root] = u
		order = append(order, u)
	}
	for _, u := range order {
		u.root.restore(u.version, append(u.pending, u.root.pendingEvents()...))
	}
	t.saved = nil
}

// errCallersTx refuses op (commit, rollback) on a scope of ScopeTx.
func errCallersTx(op string) error {
	return fmt.Errorf("mire: %s: the scope is inside the caller's transaction (ScopeTx); %s that transaction instead", op, op)
}

// usable refuses a call on a scope already committed or rolled back.
func (t *TxScope) usable(op string) error {
	if t.done {
		return fmt.Errorf("mire: %s: %w", op, ErrTxDone)
	}
	return nil
}

// live is usable that also refuses a call on a scope an earlier call
// poisoned: nothing more it does could commit.
func (t *TxScope) live(op string) error {
	if err := t.usable(op); err != nil {
		return err
	}
	if t.failed != nil {
		return fmt.Errorf("mire: %s: an earlier call in the scope failed: %w", op, t.failed)
	}
	return nil
}

// InTx runs fn in a new TxScope with opts (nil for defaults): it commits
// when fn returns nil, and rolls back when fn returns an error or panics
// (the panic then goes on, with its own stack). fn must not Commit or Roll
// back the scope itself; it may end it with SaveAndCommit, which saves and
// commits in one round trip (InTx then has nothing left to commit). The
// roots fn saved are put back if nothing commits.
//
// With opts.Retries > 0, a run that fails with ErrConcurrency or
// ErrSerialization (a deadlock, or a serialization failure under a stricter
// IsoLevel) is rolled back and fn runs again in a new scope after a
// jittered, doubling backoff, so fn must load everything it decides on
// inside the scope. Other errors, ErrLockTimeout among them, are returned
// at once: the timeout is the caller's own bound.
//
//	err := store.InTx(ctx, &mire.InTxOpts{Retries: 3}, func(scope *mire.TxScope) error {
//		accs, err := mire.LoadManyForUpdate[Account](ctx, scope, from, to)
//		if err != nil {
//			return err
//		}
//		... Record on accs[0] and accs[1] ...
//		return scope.SaveAndCommit(ctx, accs)
//	})
func (s *Store) InTx(ctx context.Context, opts *InTxOpts, fn func(*TxScope) error) error {
	if err := s.check(ctx, "in tx"); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("mire: in tx: fn is nil")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return fmt.Errorf("mire: in tx: %w", err)
	}
	for attempt := 0; ; attempt++ {
		err := s.runTx(ctx, o.TxOpts, fn)
		if err == nil || attempt >= o.Retries || !retryable(err) {
			return err
		}
		wait := o.RetryBackoff<<min(attempt, retryBackoffMaxShift) + rand.N(o.RetryBackoff)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return errors.Join(err, fmt.Errorf("mire: in tx: retry: %w", ctx.Err()))
		case <-timer.C:
		}
	}
}

// runTx runs fn once in a new scope. The deferred Rollback (a no-op after
// Commit) also runs while a panic unwinds, so the connection goes back to
// the pool clean and the panic keeps its stack.
func (s *Store) runTx(ctx context.Context, o TxOpts, fn func(*TxScope) error) error {
	scope, err := s.begin(ctx, o)
	if err != nil {
		return err
	}
	defer func() { _ = scope.Rollback(ctx) }()
	if err := fn(scope); err != nil {
		return err
	}
	if scope.committed { // fn ended with SaveAndCommit
		return nil
	}
	return scope.Commit(ctx)
}

func retryable(err error) bool {
	return errors.Is(err, ErrConcurrency) || errors.Is(err, ErrSerialization)
}
