package mire

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// UpdateAttemptsDefault is how many times Update tries to load, decide and
// save before it gives up on conflicts.
const UpdateAttemptsDefault = 4

// UpdateOpts tunes Update. A nil *UpdateOpts means all defaults.
type UpdateOpts struct {
	// Attempts bounds how many times Update loads, decides and saves while
	// saves are refused with ErrConcurrency; 1 means no retry. Defaults to
	// UpdateAttemptsDefault (4).
	Attempts int
	// RetryBackoff is the base of the jittered, doubling wait before the
	// third and later attempts; the second runs at once, since the usual
	// conflict is a Root loaded from a lagging replica, which a reload from
	// the primary settles. Defaults to RetryBackoffDefault.
	RetryBackoff time.Duration
}

// withDefaults returns a copy of opts (nil meaning the zero value) with its
// defaults filled in, or an error naming the first bad field.
func (opts *UpdateOpts) withDefaults() (UpdateOpts, error) {
	var o UpdateOpts
	if opts != nil {
		o = *opts
	}
	switch {
	case o.Attempts < 0:
		return o, fmt.Errorf("negative attempts %d", o.Attempts)
	case o.RetryBackoff < 0:
		return o, fmt.Errorf("negative retry backoff %v", o.RetryBackoff)
	}
	o.Attempts = cmp.Or(o.Attempts, UpdateAttemptsDefault)
	o.RetryBackoff = cmp.Or(o.RetryBackoff, RetryBackoffDefault)
	return o, nil
}

// Update runs the read-decide-write loop of one aggregate: it loads
// aggregate T with id (LoadOrNew: a stream that does not exist is a Root
// at version 0), calls decide, which records events on the Root or returns
// an error, and saves the Root. When the save is refused because another
// writer got there first (or the Root came from a replica that had not
// replayed the latest events), it loads again, from the primary, and
// decides again, up to opts.Attempts times in all; past that the error
// wraps the last *ConcurrencyError. decide may therefore run more than
// once and must only record events on the Root it is given.
//
// decide's own error is returned as it is, with nothing saved. If the Root
// came from the replica and the stream has moved on since on the primary,
// the decision was made on stale state: Update then loads from the primary
// and lets decide see the latest state before it reports a refusal. It
// returns the saved Root (the loaded one when decide recorded nothing).
//
//	acc, err := mire.Update[Account](ctx, store, id, func(acc *mire.Root[Account]) error {
//		if acc.State.Balance < amount {
//			return ErrInsufficientFunds
//		}
//		return acc.Record(Withdrawn{Amount: amount})
//	}, nil)
func Update[T any, PT interface {
	*T
	Aggregate
}](ctx context.Context, store *Store, id string, decide func(*Root[T]) error, opts *UpdateOpts) (*Root[T], error) {
	if store == nil {
		return nil, errors.New("mire: update: store is nil")
	}
	if decide == nil {
		return nil, fmt.Errorf("mire: update %T %q: decide is nil", PT(nil), id)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("mire: update %T %q: %w", PT(nil), id, err)
	}
	loadCtx := ctx
	for attempt := 1; ; attempt++ {
		root, onReplica, err := loadOrNew[T, PT](loadCtx, store, id)
		if err != nil {
			return nil, err
		}
		if err := decide(root); err != nil {
			if !onReplica || !store.movedOn(ctx, root) {
				return nil, err
			}
			// Decided on a stale Root: decide again on the latest.
			if root, _, err = loadOrNew[T, PT](WithPrimary(ctx), store, id); err != nil {
				return nil, err
			}
			if err := decide(root); err != nil {
				return nil, err
			}
		}
		err = store.Save(ctx, root)
		switch {
		case err == nil:
			return root, nil
		case !errors.Is(err, ErrConcurrency):
			return nil, err
		case attempt >= o.Attempts:
			return nil, fmt.Errorf("mire: update stream %q: gave up after %d attempts: %w", root.StreamID(), attempt, err)
		}
		loadCtx = WithPrimary(ctx)
		if attempt == 1 {
			continue
		}
		wait := o.RetryBackoff<<min(attempt-2, retryBackoffMaxShift) + rand.N(o.RetryBackoff)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, errors.Join(err, fmt.Errorf("mire: update stream %q: retry: %w", root.StreamID(), ctx.Err()))
		case <-timer.C:
		}
	}
}

// movedOn reports whether root's stream is at another version on the
// primary than root, which was loaded from the replica. If the primary
// cannot tell, it reports false: the caller keeps what it has.
func (s *Store) movedOn(ctx context.Context, root applier) bool {
	var version int64
	err := s.pool.QueryRow(ctx, s.sql.selectStreamVersion, root.StreamID()).Scan(&version)
	if translate(ctx, err) == ErrNotFound {
		return root.version() != 0
	}
	return err == nil && version != root.version()
}
