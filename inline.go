package mire

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// inlineProjection runs inside the transaction that appends events, right
// after they are written, with those events (one stream's, in version
// order, with their positions): its writes through tx commit or roll back
// with the events. An error fails the save. The projections package builds
// them from its handlers (projections.Inline) and registers them through
// the bridge.
type inlineProjection func(ctx context.Context, tx pgx.Tx, events []Envelope) error

// inlineProjections is the store's list of inline projections, copied on
// write so the write path reads it without a lock.
type inlineProjections struct {
	mu   sync.Mutex
	list atomic.Pointer[[]inlineProjection]
}

// addInline registers fn to run in every later write of the store (Save,
// SaveTx, Append, AppendTx, TxScope.Save). A write already running does not
// see a new one. Once one is registered, Save and Append of a single stream
// run in a transaction instead of one autocommit statement.
func (s *Store) addInline(fn inlineProjection) error {
	if fn == nil {
		return fmt.Errorf("mire: add inline projection: nil function")
	}
	ip := &s.inline
	ip.mu.Lock()
	defer ip.mu.Unlock()
	var list []inlineProjection
	if old := ip.list.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, fn)
	ip.list.Store(&list)
	return nil
}

func (ip *inlineProjections) load() []inlineProjection {
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

// runInline hands the events just written to the inline projections
// hooks, without reading them back: the append statement returned their
// positions and timestamp, and the rest is in w. The payloads are decoded
// from the JSON stored, so an inline handler sees what a Runner's would.
func (s *Store) runInline(ctx context.Context, db dbtx, w streamWrite, meta []byte, res appendResult, hooks []inlineProjection) error {
	if len(hooks) == 0 {
		return nil
	}
	tx, ok := db.(pgx.Tx)
	if !ok {
		return fmt.Errorf("mire: append to stream %q: inline projections need a transaction", w.streamID)
	}
	n := int64(len(w.events))
	if int64(len(res.positions)) != n {
		return fmt.Errorf("mire: append to stream %q: inline projection: %d positions for %d events", w.streamID, len(res.positions), n)
	}
	var md Metadata
	if len(meta) > 0 {
		if err := json.Unmarshal(meta, &md); err != nil {
			return fmt.Errorf("mire: append to stream %q: inline projection: metadata: %w", w.streamID, err)
		}
	}
	envs := make([]Envelope, n)
	for i, e := range w.events {
		env := &envs[i]
		*env = Envelope{ID: e.id, StreamID: w.streamID, Category: w.category, Version: res.version - n + 1 + int64(i),
			Position: res.positions[i], Type: e.typ, SchemaVersion: int(e.schema), Raw: e.data, Metadata: md, RecordedAt: res.at}
		var data any
		var target int
		var err error
		if e.typ == MessageType {
			data, target, err = decodeMessage(env)
		} else {
			data, target, err = s.registry.decode(w.category, e.typ, int(e.schema), e.data)
		}
		if err != nil {
			return fmt.Errorf("mire: append to stream %q: inline projection: %w", w.streamID,
				newDecodeError(env.StreamID, env.Position, env.Version, env.Type, env.SchemaVersion, target, err))
		}
		env.Data = data
	}
	for _, fn := range hooks {
		if err := fn(ctx, tx, envs); err != nil {
			return fmt.Errorf("mire: append to stream %q: inline projection: %w", w.streamID, err)
		}
	}
	return nil
}
