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
)

// TxScope is one Postgres transaction for a decision that spans several
// aggregates: it loads them (locking what the decision depends on) and saves
// them as one atomic unit. It is the escape hatch, not the default; most
// commands load and save one aggregate with Store.Save.
//
// A TxScope is not safe for concurrent use.
type TxScope struct {
	store  *Store
	tx     pgx.Tx
	saved  []savedRoot // roots advanced by Save, restored if the scope does not commit
	failed error       // the Save error that makes Commit refuse
	done   bool
}

// savedRoot is a Root's state before a scope's Save advanced it.
type savedRoot struct {
	root    Saveable
	version int64
	pending []pendingEvent
}

// TxOpts tunes a TxScope. A nil *TxOpts means all defaults.
type TxOpts struct {
	// LockTimeout bounds each wait for a row lock (a locking load, or a save
	// behind another scope's lock); past it the call fails with
	// ErrLockTimeout. Defaults to 0: wait as long as the context allows.
	LockTimeout time.Duration
	// IsoLevel is the transaction's isolation level. Defaults to read
	// committed, which the row locks make safe for read-decide-write.
	IsoLevel pgx.TxIsoLevel
	// Retries is how many more times InTx runs its function after it failed
	// with ErrConcurrency, ErrSerialization or ErrLockTimeout. Defaults to 0.
	Retries int
	// RetryBackoff is the base of the jittered, doubling wait between InTx
	// attempts. Defaults to RetryBackoffDefault.
	RetryBackoff time.Duration
}

// RetryBackoffDefault is the first wait between InTx attempts.
const RetryBackoffDefault = 5 * time.Millisecond

// Begin opens a TxScope with default options. Always defer Rollback:
//
//	scope, err := store.Begin(ctx)
//	if err != nil { ... }
//	defer scope.Rollback(ctx) // a no-op after Commit
func (s *Store) Begin(ctx context.Context) (*TxScope, error) { return s.BeginTx(ctx, nil) }

// BeginTx opens a TxScope with opts.
func (s *Store) BeginTx(ctx context.Context, opts *TxOpts) (*TxScope, error) {
	if err := s.check(ctx, "begin"); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &TxOpts{}
	}
	if opts.LockTimeout < 0 {
		return nil, fmt.Errorf("mire: begin: negative lock timeout %v", opts.LockTimeout)
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: opts.IsoLevel})
	if err != nil {
		return nil, fmt.Errorf("mire: begin: %w", translate(ctx, err))
	}
	if opts.LockTimeout > 0 {
		ms := strconv.FormatInt(max(opts.LockTimeout.Milliseconds(), 1), 10) + "ms"
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, ms); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("mire: begin: set lock timeout: %w", translate(ctx, err))
		}
	}
	return &TxScope{store: s, tx: tx}, nil
}

func (t *TxScope) source() (*Store, dbtx) { return t.store, t.tx }

// Tx returns the scope's transaction, for plain SQL that must commit or roll
// back with the scope's events.
func (t *TxScope) Tx() pgx.Tx { return t.tx }

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

// LoadManyForUpdate locks the streams of every id in one stable order
// (sorted by stream id, whatever order the ids come in, so two scopes
// locking the same streams cannot deadlock) and then loads them. The roots
// come back in the order of ids. If any stream is missing the error is
// ErrNotFound naming it.
func LoadManyForUpdate[T any, PT interface {
	*T
	Aggregate
}](ctx context.Context, scope *TxScope, ids ...string) ([]*Root[T], error) {
	if err := scope.usable(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("mire: load for update: no ids")
	}
	roots := make([]*Root[T], len(ids))
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
	streamIDs = slices.Compact(streamIDs)
	locked, err := scope.lock(ctx, streamIDs)
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
	for _, root := range roots {
		if err := scope.store.replay(ctx, scope.tx, root); err != nil {
			return nil, err
		}
	}
	return roots, nil
}

// lock row-locks the given (sorted) streams and returns those that exist.
func (t *TxScope) lock(ctx context.Context, streamIDs []string) ([]string, error) {
	rows, err := t.tx.Query(ctx, t.store.sql.lockStreams, streamIDs)
	if err != nil {
		return nil, fmt.Errorf("mire: lock streams %q: %w", streamIDs, translate(ctx, err))
	}
	locked, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("mire: lock streams %q: %w", streamIDs, translate(ctx, err))
	}
	return locked, nil
}

// Save writes the pending events of each root inside the scope, with the
// same optimistic checks as Store.Save. The roots advance at once (so they
// can record and save again in the scope); if the scope then rolls back or
// fails to commit, they are put back as they were before this Save. A
// failed Save poisons the scope: Commit rolls back and returns the error.
func (t *TxScope) Save(ctx context.Context, roots ...Saveable) error {
	if err := t.usable(); err != nil {
		return err
	}
	if err := checkContext(ctx, "save"); err != nil {
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
	for _, w := range writes {
		version, err := t.store.append(ctx, t.tx, w.write, meta)
		if err != nil {
			t.failed = err
			return err
		}
		t.saved = append(t.saved, savedRoot{root: w.root, version: int64(w.write.expected), pending: w.write.events})
		w.root.saved(version)
	}
	return nil
}

// Commit commits the scope. If a Save in it failed, or the commit itself
// fails, nothing is written, the saved roots are restored, and the error is
// returned. Commit after Commit or Rollback returns ErrTxDone.
func (t *TxScope) Commit(ctx context.Context) error {
	if err := t.usable(); err != nil {
		return err
	}
	if t.failed != nil {
		_ = t.Rollback(ctx)
		return fmt.Errorf("mire: commit: a save in this scope failed, rolled back: %w", t.failed)
	}
	t.done = true
	if err := t.tx.Commit(ctx); err != nil {
		t.restore()
		return fmt.Errorf("mire: commit: %w", translate(ctx, err))
	}
	t.store.notifyCommitted()
	t.saved = nil
	return nil
}

// Rollback rolls the scope back and restores the roots it saved. It is safe
// to call after Commit (a no-op) and more than once.
func (t *TxScope) Rollback(ctx context.Context) error {
	if t.done {
		return nil
	}
	t.done = true
	t.restore()
	err := t.tx.Rollback(context.WithoutCancel(ctx))
	if err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("mire: rollback: %w", translate(ctx, err))
	}
	return nil
}

func (t *TxScope) restore() {
	for i := len(t.saved) - 1; i >= 0; i-- {
		s := t.saved[i]
		s.root.restore(s.version, s.pending)
	}
	t.saved = nil
}

func (t *TxScope) usable() error {
	if t.done {
		return ErrTxDone
	}
	return nil
}

// InTx runs fn in a new TxScope with default options: it commits when fn
// returns nil and rolls back when fn returns an error or panics (the panic
// goes on after the rollback).
func (s *Store) InTx(ctx context.Context, fn func(*TxScope) error) error {
	return s.InTxOpts(ctx, nil, fn)
}

// InTxOpts is InTx with options. With opts.Retries > 0, a run that fails
// with ErrConcurrency, ErrSerialization or ErrLockTimeout is rolled back and
// fn runs again in a new scope (so it must load what it decides on inside
// the scope), after a jittered, doubling backoff.
func (s *Store) InTxOpts(ctx context.Context, opts *TxOpts, fn func(*TxScope) error) error {
	if opts == nil {
		opts = &TxOpts{}
	}
	backoff := cmp.Or(opts.RetryBackoff, RetryBackoffDefault)
	for attempt := 0; ; attempt++ {
		err := s.runTx(ctx, opts, fn)
		if err == nil || attempt >= opts.Retries || !retryable(err) {
			return err
		}
		wait := backoff<<min(attempt, 10) + rand.N(backoff)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
	}
}

func (s *Store) runTx(ctx context.Context, opts *TxOpts, fn func(*TxScope) error) (err error) {
	scope, err := s.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = scope.Rollback(ctx)
			panic(p)
		}
	}()
	if err := fn(scope); err != nil {
		_ = scope.Rollback(ctx)
		return err
	}
	return scope.Commit(ctx)
}

func retryable(err error) bool {
	return errors.Is(err, ErrConcurrency) || errors.Is(err, ErrSerialization) || errors.Is(err, ErrLockTimeout)
}
