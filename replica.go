package mire

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ReplicaWaitDefault is how long a load or read given a Token waits for the
// replica to replay past it before it reads from the primary, and the lag
// past which the store sends every load and read to the primary.
const ReplicaWaitDefault = 100 * time.Millisecond

// ReplicaCheckIntervalDefault is how often the store checks that its
// replica answers and keeps up with the primary.
const ReplicaCheckIntervalDefault = time.Second

// The replica queries. selectWALInsertPosition runs on the primary;
// selectReplayed on the replica reports whether it has replayed past $1
// and whether its replay is paused (waiting would be in vain). A server
// that is not in recovery (a replica promoted, or the primary given as its
// own replica) has nothing left to replay.
const (
	selectWALInsertPosition = `SELECT pg_current_wal_insert_lsn()::text`
	selectReplayed          = `SELECT CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) ELSE true END,
	CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END`
)

// Why a load or read that could have gone to the replica went to the
// primary: the values of the mire.reason attribute of
// mire.replica.fallbacks.
const (
	// fallbackLag: the replica had not replayed a token's position within
	// Config.ReplicaWait (or its replay is paused), or the last check found
	// it lagging by more than that.
	fallbackLag = "lag"
	// fallbackUnavailable: a query on the replica failed, or the last
	// check could not reach it.
	fallbackUnavailable = "unavailable"
)

// replicaState is what the last check (or the last failed query) found.
type replicaState int32

const (
	replicaOK replicaState = iota
	replicaLagging
	replicaDown
)

// checkTimeout bounds a check's queries, beyond the wait for replay.
const checkTimeout = 5 * time.Second

// fallbackLogEvery is the least time between two log lines about
// fallbacks: with the replica down, every load falls back.
const fallbackLogEvery = 10 * time.Second

// replica is a store's streaming replica: its pool, and what the store
// knows of its health. Loads and reads consult it; a check runs in the
// background at most once per interval, started by the load or read that
// finds it due, so an idle store runs none.
type replica struct {
	pool     *pgxpool.Pool
	wait     time.Duration // Config.ReplicaWait
	interval time.Duration // Config.ReplicaCheckInterval

	state    atomic.Int32 // a replicaState
	due      atomic.Int64 // unix nanoseconds after which the next check is due
	checking atomic.Bool  // a check is running

	logged     atomic.Int64 // unix nanoseconds of the last fallback logged
	suppressed atomic.Int64 // fallbacks not logged since
}

func newReplica(pool *pgxpool.Pool, wait, interval time.Duration) *replica {
	r := &replica{pool: pool, wait: wait, interval: interval}
	r.due.Store(time.Now().Add(interval).UnixNano())
	return r
}

// validateReplica checks the replica fields of cfg.
func validateReplica(cfg *Config) error {
	switch {
	case cfg.ReplicaWait < 0:
		return fmt.Errorf("negative ReplicaWait %v", cfg.ReplicaWait)
	case cfg.ReplicaCheckInterval < 0:
		return fmt.Errorf("negative ReplicaCheckInterval %v", cfg.ReplicaCheckInterval)
	case cfg.Replica == nil && (cfg.ReplicaWait != 0 || cfg.ReplicaCheckInterval != 0):
		return errors.New("ReplicaWait or ReplicaCheckInterval is set but Replica is nil")
	}
	return nil
}

// Replica returns the replica pool of the store (Config.Replica), or nil.
func (s *Store) Replica() *pgxpool.Pool {
	if s.replica == nil {
		return nil
	}
	return s.replica.pool
}

// reader returns where a load or read (op) in ctx runs: on the replica
// (onReplica true) or on the primary. It goes to the primary without a
// replica or in a WithPrimary context, and falls back to it (counted and
// logged) when the replica is down or lagging, or has not replayed ctx's
// token within the bound.
func (s *Store) reader(ctx context.Context, op string) (db dbtx, onReplica bool) {
	r := s.replica
	if r == nil || primaryRequested(ctx) {
		return s.pool, false
	}
	s.checkReplicaIfDue()
	state := replicaState(r.state.Load())
	t, hasToken := TokenFromContext(ctx)
	switch {
	case state == replicaDown:
		s.fellBack(ctx, op, fallbackUnavailable, nil)
		return s.pool, false
	case state == replicaLagging && !hasToken:
		s.fellBack(ctx, op, fallbackLag, nil)
		return s.pool, false
	case !hasToken:
		return r.pool, true
	}
	// A token says what the load needs: a replica found lagging may have
	// replayed it already. It is asked once, not waited for.
	wait := r.wait
	if state == replicaLagging {
		wait = 0
	}
	reason, err := r.waitFor(ctx, t, wait)
	switch {
	case ctx.Err() != nil:
		return s.pool, false // the call fails with ctx's error: no fallback to count
	case reason == "":
		if state == replicaLagging {
			s.recheckReplica() // it may have caught up: let the other loads know soon
		}
		return r.pool, true
	case reason == fallbackUnavailable:
		s.replicaFailed()
	}
	s.fellBack(ctx, op, reason, err)
	return s.pool, false
}

// waitFor waits until the replica has replayed past t, at most wait. It
// returns "" when it has, or the reason to go to the primary instead:
// fallbackLag when the bound passed or replay is paused, and
// fallbackUnavailable (with the error) when the replica did not answer.
// The first check is at once, so a replica that is current costs one
// round trip; then it polls, every millisecond at first, backing off to
// every 10 ms.
func (r *replica) waitFor(ctx context.Context, t Token, wait time.Duration) (reason string, err error) {
	deadline := time.Now().Add(wait)
	poll := time.Millisecond
	target := t.String()
	for {
		var done, paused bool
		if err := r.pool.QueryRow(ctx, selectReplayed, target).Scan(&done, &paused); err != nil {
			return fallbackUnavailable, translate(ctx, err)
		}
		switch {
		case done:
			return "", nil
		case paused:
			return fallbackLag, fmt.Errorf("replay is paused before %s", target)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fallbackLag, fmt.Errorf("not replayed %s after %v", target, wait)
		}
		timer := time.NewTimer(min(poll, left))
		select {
		case <-ctx.Done():
			timer.Stop()
			return fallbackLag, ctx.Err()
		case <-timer.C:
		}
		poll = min(2*poll, 10*time.Millisecond)
	}
}

// replicaFailed marks the replica down after a failed query, and checks it
// at once: the check restores it if it answers and keeps up.
func (s *Store) replicaFailed() {
	s.replica.state.Store(int32(replicaDown))
	s.recheckReplica()
}

// recheckReplica makes a check due now and starts it.
func (s *Store) recheckReplica() {
	s.replica.due.Store(0)
	s.checkReplicaIfDue()
}

// checkReplicaIfDue starts a check in the background if one is due and
// none is running. While the replica is down or lagging, checks run
// recheckFactor times as often, so loads go back to it soon after it
// recovers.
func (s *Store) checkReplicaIfDue() {
	r := s.replica
	if time.Now().UnixNano() < r.due.Load() || !r.checking.CompareAndSwap(false, true) {
		return
	}
	r.due.Store(math.MaxInt64) // until this check ends
	go func() {
		defer r.checking.Store(false)
		state := s.checkReplica()
		r.state.Store(int32(state))
		next := r.interval
		if state != replicaOK {
			next /= recheckFactor
		}
		r.due.Store(time.Now().Add(next).UnixNano())
	}()
}

// recheckFactor is how many times more often a replica that is down or
// lagging is checked than one that is fine.
const recheckFactor = 10

// checkReplica reads the primary's WAL position and waits, at most
// r.wait, for the replica to replay past it: a replica that does is OK,
// one that does not is lagging, one that does not answer is down. A
// primary that does not answer leaves the state as it was.
func (s *Store) checkReplica() replicaState {
	r := s.replica
	// A replica that takes longer to answer than checkTimeout is down.
	ctx, cancel := context.WithTimeout(context.Background(), r.wait+checkTimeout)
	defer cancel()
	var lsn string
	if err := s.pool.QueryRow(ctx, selectWALInsertPosition).Scan(&lsn); err != nil {
		return replicaState(r.state.Load())
	}
	t, err := ParseToken(lsn)
	if err != nil {
		return replicaState(r.state.Load())
	}
	switch reason, _ := r.waitFor(ctx, t.replayTarget(), r.wait); reason {
	case "":
		return replicaOK
	case fallbackLag:
		return replicaLagging
	}
	return replicaDown
}

// loadRouted replays root from the replica or the primary (see reader). A
// load with a token on a replica found current sends the token's check and
// the load in one round trip, and uses the load's rows if the check
// passed; if it did not, reader waits or falls back. A load on the replica
// that fails for the replica's own trouble runs again on the primary. It
// reports whether root was read from the replica.
func (s *Store) loadRouted(ctx context.Context, root applier, st *replayStats) (bool, error) {
	if t, ok := TokenFromContext(ctx); ok && !primaryRequested(ctx) && replicaState(s.replica.state.Load()) == replicaOK {
		s.checkReplicaIfDue()
		done, err := s.loadAfter(ctx, t, root, st)
		switch {
		case err != nil && replicaTrouble(ctx, err):
			return false, s.loadFallback(ctx, err, root, st)
		case done || err != nil:
			return done, err
		}
	}
	db, onReplica := s.reader(ctx, "load")
	err := s.replay(ctx, db, root, st)
	if onReplica && err != nil && replicaTrouble(ctx, err) {
		return false, s.loadFallback(ctx, err, root, st)
	}
	return onReplica, err
}

// loadFallback loads root from the primary after err on the replica.
func (s *Store) loadFallback(ctx context.Context, err error, root applier, st *replayStats) error {
	s.replicaFailed()
	s.fellBack(ctx, "load", fallbackUnavailable, err)
	root.reset()
	*st = replayStats{}
	return s.replay(ctx, s.pool, root, st)
}

// loadAfter loads root from the replica if it has replayed past t,
// checking that and loading in one round trip (a pipeline of both
// queries). It reports false, with nothing applied, if the replica has not
// replayed t yet.
func (s *Store) loadAfter(ctx context.Context, t Token, root applier, st *replayStats) (bool, error) {
	conn, err := s.replica.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("mire: load stream %q: %w", root.StreamID(), translate(ctx, err))
	}
	defer conn.Release()
	query, args := s.replayQuery(root)
	batch := &pgx.Batch{}
	batch.Queue(selectReplayed, t.String())
	batch.Queue(query, args...)
	results := conn.SendBatch(ctx, batch)
	var done, paused bool
	if err := results.QueryRow().Scan(&done, &paused); err != nil || !done {
		err = errors.Join(err, results.Close())
		if err != nil {
			return false, fmt.Errorf("mire: load stream %q: %w", root.StreamID(), translate(ctx, err))
		}
		return false, nil
	}
	rows, err := results.Query()
	if err != nil {
		_ = results.Close()
		return true, fmt.Errorf("mire: load stream %q: %w", root.StreamID(), translate(ctx, err))
	}
	err = s.fold(ctx, root, rows, st)
	if closeErr := results.Close(); err == nil && closeErr != nil {
		err = fmt.Errorf("mire: load stream %q: %w", root.StreamID(), translate(ctx, closeErr))
	}
	if errors.Is(err, errSnapshotUnusable) {
		return true, s.replay(ctx, conn, fullReplay{root}, st)
	}
	return true, err
}

// replicaTrouble reports whether err, from a load or read on the replica,
// is the replica's trouble (a lost connection, a query cancelled by
// recovery, a schema not replayed yet), which the primary may not have. A
// finished context, and data the store cannot decode, are the caller's on
// any server.
func replicaTrouble(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, ErrDecode) && !errors.Is(err, ErrCorruptStream) && !errors.Is(err, ErrUnregistered)
}

// fellBack counts a load or read (op) that went to the primary instead of
// the replica, for reason, and logs it: the first, then at most one line
// every fallbackLogEvery, with the number not logged since.
func (s *Store) fellBack(ctx context.Context, op, reason string, err error) {
	s.tel.fellBack(ctx, op, reason)
	r := s.replica
	now := time.Now().UnixNano()
	last := r.logged.Load()
	if now-last < int64(fallbackLogEvery) || !r.logged.CompareAndSwap(last, now) {
		r.suppressed.Add(1)
		return
	}
	attrs := []any{"op", op, "reason", reason, "not_logged_since", r.suppressed.Swap(0)}
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	s.logger.WarnContext(ctx, "mire: read from the primary instead of the replica", attrs...)
}
