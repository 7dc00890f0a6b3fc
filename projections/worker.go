package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/bridge"
	"github.com/mire-go/mire/internal/pgerr"
	"github.com/mire-go/mire/internal/telemetry"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// errFenced means the worker's fence token is no longer the projection's:
// another worker took over (or an admin operation reset the lease). The
// batch rolled back; the worker competes for the lease again.
var errFenced = errors.New("mire: projection lease lost to another worker")

// eventError is a handler (or decoding) failure on one event.
type eventError struct {
	env mire.Envelope
	err error
}

func (e *eventError) Error() string {
	return fmt.Sprintf("mire: projection: event %s v%d (position %d, type %s): %v",
		e.env.StreamID, e.env.Version, e.env.Position, e.env.Type, e.err)
}

func (e *eventError) Unwrap() error { return e.err }

// worker runs one projection in one Runner. Its fields are owned by the
// goroutine running it (Run's or CatchUp's).
type worker struct {
	r         *Runner
	g         *group
	p         Projection
	part      int      // the partition it runs (0 of 1 if unpartitioned)
	sql       *queries // the runtime SQL of its partition count
	wake      chan struct{}
	rebalance chan struct{} // its partition's share or lease may have moved (see group.coordinate)
	assigned  atomic.Bool   // its partition is this runner's share (partitioned projections)

	fence          int64 // 0: no lease
	cursorXid      uint64
	cursorPos      int64
	cursorHead     int64 // the position of the first row of the cursor's append
	floor          int64
	order          *order
	halted         bool
	renewedAt      time.Time
	countCheckedAt time.Time // see recheckCount
	releaseErr     error     // why the last stop could not release the lease
	reload         bool      // a batch failed with the commit's outcome unknown: take the lease again (which reloads the checkpoint), keeping fence to release it meanwhile

	heads     int   // how many heads (appends' first rows) the next read asks for; 0: limit + 1
	failPos   int64 // the position of the event that failed last, 0 if none
	failCount int   // how many times in a row it failed
	contended int   // how many batches in a row failed for the moment (see transient)
	single    int   // after a failure: how many more batches read one event each
	// After failures of the moment, the most events a batch reads (halved
	// by each, doubled back by every growAfter batches in a row that
	// commit), or 0 for BatchSize: a batch too large to finish in time
	// gets through.
	shrunk    int
	committed int // batches committed in a row since shrunk last changed

	lastSpan trace.SpanContext // the last batch's span, for the log lines about its failure

	ahead *readAhead // the next batch, read ahead (see prefetch)
}

// growAfter is how many batches in a row must commit before a batch
// halved by failures of the moment doubles back.
const growAfter = 4

// readAhead is a batch read beside the batch before it: from at, at most
// limit events; its result arrives on done (capacity 1).
type readAhead struct {
	at    readAt
	limit int
	done  chan aheadResult
}

type aheadResult struct {
	rows  []scannedRow
	more  bool
	heads int
	err   error
}

// prefetch starts reading the batch that follows last (the last event of
// the batch about to be handled) beside it. Reading ahead is safe: every
// row it returns is of a transaction older than all still running, so a
// later read from the same cursor returns the same rows first; it is used
// only if the batch commits and the next read starts where it did.
func (w *worker) prefetch(ctx context.Context, limit int, last scannedRow) {
	w.waitAhead()
	at := readAt{xid: last.xid, pos: last.env.Position, head: last.head, floor: w.floor, heads: w.heads}
	a := &readAhead{at: at, limit: limit, done: make(chan aheadResult, 1)}
	w.ahead = a
	go func() {
		var r aheadResult
		r.rows, r.more, r.heads, r.err = w.readFrom(ctx, w.r.store.Pool(), limit, at)
		a.done <- r
	}()
}

// readAhead returns the next batch: the one read ahead, if it starts at
// the cursor, or a fresh read.
func (w *worker) readAhead(ctx context.Context, limit int) ([]scannedRow, bool, error) {
	if a := w.ahead; a != nil {
		w.ahead = nil
		r := <-a.done
		if a.at == w.at() && a.limit == limit && r.err == nil && len(r.rows) > 0 {
			w.heads = r.heads
			return r.rows, r.more, nil
		}
	}
	return w.read(ctx, w.r.store.Pool(), limit)
}

// waitAhead waits for a read ahead in flight and drops it, so that a
// stopped worker is done with the pool.
func (w *worker) waitAhead() {
	if a := w.ahead; a != nil {
		w.ahead = nil
		<-a.done
	}
}

// run is run for Run: it competes for the lease and runs batches until ctx
// ends. An unmigrated schema is passed to fail, which ends the run.
func (w *worker) run(ctx context.Context, fail func(error)) {
	defer w.stop()
	for ctx.Err() == nil {
		if err := w.g.prepare(ctx); err != nil {
			if fatal(err) {
				fail(err)
				return
			}
			if ctx.Err() == nil {
				w.r.cfg.Logger.Warn("mire: projection: prepare", "projection", w.p.Name, "err", err)
			}
			w.waitRebalance(ctx)
			continue
		}
		if w.g.partitioned() && !w.assigned.Load() {
			// Not this runner's share (any more): hand it over between
			// batches, and wait until the members change.
			if w.fence != 0 {
				w.stop()
				w.g.announce(ctx)
			}
			w.waitRebalance(ctx)
			continue
		}
		if w.fence == 0 || w.reload {
			ok, err := w.acquire(ctx)
			if fatal(err) {
				fail(err)
				return
			}
			if err != nil && ctx.Err() == nil {
				w.r.cfg.Logger.Warn("mire: projection: acquire lease", w.logAttrs("err", err)...)
			}
			if !ok {
				if err := w.recheckCount(ctx); fatal(err) {
					fail(err)
					return
				}
				w.waitRebalance(ctx)
				continue
			}
		}
		if w.halted {
			w.waitRebalance(ctx)
			w.renew(ctx)
			continue
		}
		more, err := w.step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.failed(ctx, err)
			continue
		}
		if !more {
			w.idle(ctx)
		}
	}
}

// recheckCount, for a standby of an unpartitioned projection (whose
// runner has no coordinator to notice it), checks every LeaseTTL that a
// Rebuild elsewhere has not given the projection partitions: acquire
// never succeeds then, and waiting would hide the mistake.
func (w *worker) recheckCount(ctx context.Context) error {
	if w.g.partitioned() || time.Since(w.countCheckedAt) < w.r.cfg.LeaseTTL {
		return nil
	}
	w.countCheckedAt = time.Now()
	return w.g.checkCount(ctx)
}

// transient reports whether err is a failure of the moment, not of the
// event: a deadlock, a serialization failure, or what a handler marked
// with Transient.
func transient(err error) bool {
	var t *transientError
	code := pgerr.Code(err)
	return code == pgerr.DeadlockDetected || code == pgerr.SerializationFail || errors.As(err, &t)
}

// fatal reports whether err is a mistake that ends a Run at once: an
// unmigrated schema (or a missing partition index), or a projection
// declared with another partition count than it is stored with.
func fatal(err error) bool {
	return errors.Is(err, mire.ErrNotMigrated) || errors.Is(err, ErrPartitionCount)
}

// waitRebalance waits RecheckInterval, or less if the projection's members
// or leases moved (see group.announce).
func (w *worker) waitRebalance(ctx context.Context) {
	t := time.NewTimer(w.r.cfg.RecheckInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-w.rebalance:
	case <-t.C:
	}
}

// logAttrs returns the attributes of a log line about w: the projection,
// its partition if it is partitioned, and more.
func (w *worker) logAttrs(more ...any) []any {
	attrs := []any{"projection", w.p.Name}
	if w.g.partitioned() {
		attrs = append(attrs, "partition", w.part)
	}
	return append(attrs, more...)
}

// label names w's projection (and partition) in errors.
func (w *worker) label() string {
	if w.g.partitioned() {
		return fmt.Sprintf("%q partition %d", w.p.Name, w.part)
	}
	return strconv.Quote(w.p.Name)
}

// catchUp is run for CatchUp: batches until nothing is left below the
// watermark and nothing is held back.
func (w *worker) catchUp(ctx context.Context) error {
	defer w.stop()
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("mire: projection %s: catch up: %w", w.label(), context.Cause(ctx))
		}
		if err := w.g.prepare(ctx); err != nil {
			return err
		}
		if w.fence == 0 || w.reload {
			ok, err := w.acquire(ctx)
			if err != nil {
				return err
			}
			if !ok {
				sleep(ctx, w.r.cfg.RecheckInterval)
				continue
			}
		}
		if w.halted {
			st, err := w.r.Status(ctx, w.p.Name)
			if err != nil {
				return err
			}
			return fmt.Errorf("mire: projection %s: %w: %s", w.label(), ErrHalted, st.partition(w.part).LastError)
		}
		more, err := w.step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("mire: projection %s: catch up: %w", w.label(), context.Cause(ctx))
			}
			w.failed(ctx, err)
			continue
		}
		if !more && w.order.n == 0 {
			return nil
		}
		if !more {
			sleep(ctx, min(w.r.cfg.PollInterval, 10*time.Millisecond)) // held events wait for older transactions
		}
	}
}

// failed handles a failed batch: a lost lease, a failing event (retried
// with backoff, then halting the projection), or a database error.
func (w *worker) failed(ctx context.Context, err error) {
	log := w.r.cfg.Logger
	lctx := w.logContext(ctx)
	if errors.Is(err, errFenced) {
		log.InfoContext(lctx, "mire: projection: lease lost", "projection", w.p.Name, "fence", w.fence)
		w.fence = 0
		return
	}
	if transient(err) {
		// No fault of the event (batches that lock shared rows in
		// different orders abort one another now and then; a broker is
		// down or too slow for the whole batch), so no step towards a
		// halt. The batch is retried, halved, after a jittered backoff
		// that grows while the failures go on.
		w.contended++
		w.shrunk, w.committed = max(cmp.Or(w.shrunk, w.p.BatchSize)/2, 1), 0
		log.WarnContext(lctx, "mire: projection: batch failed for the moment, retrying", w.logAttrs("attempt", w.contended, "next_batch", w.shrunk, "err", err)...)
		backoff := w.r.cfg.RetryBackoff
		sleep(ctx, backoff<<min(w.contended-1, 6)+rand.N(backoff+1))
		return
	}
	var ee *eventError
	if !errors.As(err, &ee) {
		log.WarnContext(lctx, "mire: projection: batch failed", "projection", w.p.Name, "err", err)
		// Reload the checkpoint (the commit's outcome may be unknown) by
		// taking the lease again; until then the lease is still ours, and
		// a stop must release it.
		w.reload = true
		sleep(ctx, w.r.cfg.RetryBackoff)
		return
	}
	// A handler may fail because an admin operation reset the projection
	// and cleared its read model under the batch: then the fence has moved
	// on and the failure is not the event's.
	if w.renew(ctx); w.fence == 0 {
		return
	}
	w.single = w.p.BatchSize // close in on the failing event one at a time
	if ee.env.Position == w.failPos {
		w.failCount++
	} else {
		w.failPos, w.failCount = ee.env.Position, 1
	}
	log.WarnContext(lctx, "mire: projection: handler failed", "projection", w.p.Name, "attempt", w.failCount, "err", err)
	if w.failCount >= w.r.cfg.MaxAttempts {
		w.halt(ctx, ee)
		return
	}
	backoff := w.r.cfg.RetryBackoff
	sleep(ctx, backoff<<min(w.failCount-1, 10)+rand.N(backoff+1))
}

func (w *worker) halt(ctx context.Context, ee *eventError) {
	tag, err := w.r.store.Pool().Exec(ctx, w.sql.halt, w.p.Name, w.fence, ee.Error(),
		ee.env.Position, ee.env.StreamID, ee.env.Version, ee.env.Type, w.part)
	switch {
	case err != nil:
		w.r.cfg.Logger.WarnContext(w.logContext(ctx), "mire: projection: record halt", "projection", w.p.Name, "err", err)
		w.fence = 0
	case tag.RowsAffected() == 0:
		w.fence = 0
	default:
		w.r.cfg.Logger.ErrorContext(w.logContext(ctx), "mire: projection halted", "projection", w.p.Name, "err", ee)
		if w.r.tel.meter != nil {
			w.r.tel.halts.Add(ctx, 1, metric.WithAttributes(telemetry.Projection.String(w.p.Name)))
		}
		w.halted = true
		w.r.halted(w.p.Name, fmt.Errorf("mire: projection %s: %w: %w", w.label(), ErrHalted, ee))
	}
}

// idle waits for a notification or the poll interval, renewing the lease
// when a third of it has passed, or at once when the projection's leases
// may have moved (an announcement: see group.woken).
func (w *worker) idle(ctx context.Context) {
	ttl := w.r.cfg.LeaseTTL
	t := time.NewTimer(min(w.r.cfg.PollInterval, ttl/3))
	renew := false
	select {
	case <-ctx.Done():
	case <-w.wake:
	case <-w.rebalance:
		renew = true // an admin operation may have revoked the lease
	case <-t.C:
	}
	t.Stop()
	if renew || time.Since(w.renewedAt) >= ttl/3 {
		w.renew(ctx)
	}
}

// scannedRow is a row with its decoding error, if any, the size of the
// append it begins (0 if it is not an append's first row), and the
// position of that append's first row (set by read).
type scannedRow struct {
	row
	size int64
	head int64
	err  error
}

// scan reads rows (of rowColumns), expecting about size of them.
func (w *worker) scan(rows pgx.Rows, size int) ([]scannedRow, error) {
	defer rows.Close()
	out := make([]scannedRow, 0, size)
	var r scannedRow
	scan := bridge.EnvelopeScanner(w.r.store, &r.env, []any{&r.xid, &r.prevXid}, []any{&r.size}, w.p.Raw)
	for rows.Next() {
		decodeErr, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("mire: projection %q: read events: %w", w.p.Name, err)
		}
		r.err = nil
		if decodeErr != nil {
			r.err = &eventError{env: r.env, err: decodeErr}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mire: projection %q: read events: %w", w.p.Name, err)
	}
	return out, nil
}

// step reads one batch, then delivers what it may in stream order and
// writes the checkpoint in one transaction, only while the fence is ours.
// It reports whether the batch was full (more may be waiting).
//
// Before its handlers write, the batch takes the projection's advisory
// lock, shared (see batchLock): an admin operation that clears the read
// model takes it exclusive first, so the two never deadlock. (Locking the
// checkpoint row first would do too, but a worker paused in its handler
// would then hold that lock and block the takeover its lease expiry
// allows.)
func (w *worker) step(ctx context.Context) (more bool, err error) {
	var start time.Time
	if w.r.tel.tracer != nil || w.r.tel.meter != nil {
		start = time.Now()
	}
	limit := cmp.Or(w.shrunk, w.p.BatchSize)
	if w.single > 0 {
		limit = 1 // after a failure, advance one event at a time up to it
	}
	// The read needs no transaction (the fence, checked by the
	// checkpoint, is what makes the batch's writes safe), so an idle poll,
	// the common case of a woken worker, costs one round trip; and while a
	// projection catches up, the next batch is read ahead, beside this
	// one's handlers and commit.
	rows, more, err := w.readAhead(ctx, limit)
	if err != nil || len(rows) == 0 {
		return false, err
	}
	if more {
		w.prefetch(ctx, limit, rows[len(rows)-1])
	}
	var delivered int64
	if !start.IsZero() {
		var b batchSpan
		ctx, b = w.beginBatch(ctx, start)
		defer func() { w.endBatch(ctx, b, delivered, rows[len(rows)-1].env.Position, err) }()
	}
	// BEGIN and the lock go in one round trip (see beginBatch).
	tx, err := w.r.store.Pool().BeginTx(ctx, pgx.TxOptions{BeginQuery: w.g.beginBatch})
	if err != nil {
		return false, fmt.Errorf("mire: projection %q: begin, locking against admin operations: %w", w.p.Name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	ord := w.order.clone()
	clearedFailure := false
	batcher, _ := w.p.Handler.(BatchHandler)
	var batch []mire.Envelope
	if batcher != nil {
		batch = make([]mire.Envelope, 0, len(rows))
	}
	// Rows go by pointer: a row is a few hundred bytes.
	deliver := func(r *row) error {
		if batcher != nil {
			batch = append(batch, r.env)
		} else if err := w.handle(ctx, tx, r.env); err != nil {
			return err
		}
		delivered++
		if r.env.Position == w.failPos {
			clearedFailure = true
		}
		return nil
	}
	for i := range rows {
		r := &rows[i]
		if r.err != nil {
			return false, r.err
		}
		wait, err := w.mustWait(ctx, tx, ord, &r.row)
		if err != nil {
			return false, err
		}
		if wait {
			ord.hold(r.row)
			continue
		}
		if err := deliver(&r.row); err != nil {
			return false, err
		}
		released := ord.release(r.env.StreamID, r.env.Version)
		for j := range released {
			if err := deliver(&released[j]); err != nil {
				return false, err
			}
		}
	}
	if len(batch) > 0 {
		if err := w.handleBatch(ctx, tx, batcher, batch); err != nil {
			return false, err
		}
	}
	last := rows[len(rows)-1]
	tag, err := tx.Exec(ctx, w.sql.checkpoint, w.p.Name, w.fence, last.xid, last.env.Position,
		ord.positions(), delivered, w.r.cfg.LeaseTTL.Seconds(), w.part)
	if err != nil {
		return false, fmt.Errorf("mire: projection %q: checkpoint: %w", w.p.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return false, errFenced
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("mire: projection %q: commit checkpoint: %w", w.p.Name, err)
	}
	w.cursorXid, w.cursorPos, w.cursorHead, w.order, w.renewedAt = last.xid, last.env.Position, last.head, ord, time.Now()
	w.contended = 0
	if w.shrunk > 0 {
		if w.committed++; w.committed == growAfter {
			w.shrunk, w.committed = 2*w.shrunk, 0
			if w.shrunk >= w.p.BatchSize {
				w.shrunk = 0
			}
		}
	}
	if clearedFailure {
		w.failPos, w.failCount = 0, 0
	}
	if w.single > 0 {
		w.single--
	}
	return more, nil
}

// mustWait applies the stream order (see order), with one exception: below
// the floor set by MoveToWatermark, a predecessor counts as delivered.
func (w *worker) mustWait(ctx context.Context, tx pgx.Tx, ord *order, r *row) (bool, error) {
	if !ord.mustWait(r) {
		return false, nil
	}
	if w.floor == 0 || len(ord.held[r.env.StreamID]) > 0 || r.env.Version == 1 {
		return true, nil
	}
	var pos int64
	err := tx.QueryRow(ctx, w.sql.selectPosition, r.env.StreamID, r.env.Version-1).Scan(&pos)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("mire: projection %q: look up predecessor of %s v%d: %w", w.p.Name, r.env.StreamID, r.env.Version, err)
	}
	return err == nil && pos > w.floor, nil
}

// handle calls the handler, turning a panic into an error.
func (w *worker) handle(ctx context.Context, tx pgx.Tx, env mire.Envelope) (err error) {
	ctx, span := w.beginHandle(ctx, env)
	defer func() { w.endHandle(ctx, span, err) }() // after the recover below
	defer func() {
		if p := recover(); p != nil {
			err = &eventError{env: env, err: fmt.Errorf("handler panicked: %v", p)}
		}
	}()
	if err := w.p.Handler.Handle(ctx, tx, env); err != nil {
		return &eventError{env: env, err: err}
	}
	return nil
}

// handleBatch calls a BatchHandler, turning a panic into an error. A
// failure is reported on the batch's first event; the retries then read
// one event at a time, so a poison event is named exactly.
func (w *worker) handleBatch(ctx context.Context, tx pgx.Tx, h BatchHandler, batch []mire.Envelope) (err error) {
	ctx, span := w.beginHandle(ctx, batch...)
	defer func() { w.endHandle(ctx, span, err) }() // after the recover below
	defer func() {
		if p := recover(); p != nil {
			err = &eventError{env: batch[0], err: fmt.Errorf("handler panicked: %v", p)}
		}
	}()
	if err := h.HandleBatch(ctx, tx, batch); err != nil {
		return &eventError{env: batch[0], err: err}
	}
	return nil
}
