package mire

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// InlineProjection runs inside the transaction that appends events, right
// after they are written, with those events (one stream's, in version
// order, with their positions): its writes through tx commit or roll back
// with the events, so a caller reads its own writes as soon as the save
// returns. An error fails the save: Save, Append and TxScope roll back;
// after SaveTx or AppendTx, roll your transaction back. Inline
// projections add a round trip (reading the events back) to every write
// and hold the stream's row lock while they run: keep them small. The
// projections package builds them from its handlers (projections.Inline).
type InlineProjection func(ctx context.Context, tx pgx.Tx, events []Envelope) error

// inlineProjections is the store's list of inline projections, copied on
// write so the write path reads it without a lock.
type inlineProjections struct {
	mu   sync.Mutex
	list atomic.Pointer[[]InlineProjection]
}

// AddInline registers fn to run in every later write of the store (Save,
// SaveTx, Append, AppendTx, TxScope.Save). Register inline projections at
// setup: a write already running does not see a new one. Once one is
// registered, Save and Append of a single stream run in a transaction
// instead of one autocommit statement.
func (s *Store) AddInline(fn InlineProjection) error {
	if fn == nil {
		return fmt.Errorf("mire: add inline projection: nil function")
	}
	ip := &s.inline
	ip.mu.Lock()
	defer ip.mu.Unlock()
	var list []InlineProjection
	if old := ip.list.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, fn)
	ip.list.Store(&list)
	return nil
}

func (ip *inlineProjections) load() []InlineProjection {
	if l := ip.list.Load(); l != nil {
		return *l
	}
	return nil
}

// autocommit runs fn on the pool, or in a transaction when inline
// projections need one.
func (s *Store) autocommit(ctx context.Context, op string, fn func(db dbtx) error) error {
	if len(s.inline.load()) == 0 {
		return fn(s.pool)
	}
	var inner error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		inner = fn(tx)
		return inner
	})
	if err != nil && inner == nil {
		return fmt.Errorf("mire: %s: %w", op, translate(ctx, err))
	}
	return err
}

// runInline hands the events just written (the stream's versions after
// version-n up to version) to the inline projections.
func (s *Store) runInline(ctx context.Context, db dbtx, w streamWrite, version int64) error {
	hooks := s.inline.load()
	if len(hooks) == 0 {
		return nil
	}
	tx, ok := db.(pgx.Tx)
	if !ok {
		return fmt.Errorf("mire: append to stream %q: inline projections need a transaction", w.streamID)
	}
	n := int64(len(w.events))
	rows, err := tx.Query(ctx, s.sql.readStream, w.streamID, version-n, n)
	if err != nil {
		return fmt.Errorf("mire: append to stream %q: inline projection: %w", w.streamID, translate(ctx, err))
	}
	envs := make([]Envelope, 0, n)
	for rows.Next() {
		var env Envelope
		if err := s.scanEnvelope(rows, &env); err != nil {
			rows.Close()
			return err
		}
		envs = append(envs, env)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mire: append to stream %q: inline projection: %w", w.streamID, translate(ctx, err))
	}
	for _, fn := range hooks {
		if err := fn(ctx, tx, envs); err != nil {
			return fmt.Errorf("mire: append to stream %q: inline projection: %w", w.streamID, err)
		}
	}
	return nil
}
