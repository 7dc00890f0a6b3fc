package mire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SnapshotPolicy is an aggregate's choice of snapshots: how often Save
// stores its State, and under which schema version.
type SnapshotPolicy struct {
	// Every is the interval in events: a Save that takes the stream's
	// version onto or past a multiple of Every stores a snapshot of State at
	// the new version. Zero or less takes none.
	Every int64
	// Version is the schema version of the stored State. Loads use only
	// snapshots taken under the same Version, so bump it whenever State's
	// fields or Apply's meaning change: old snapshots are then ignored (a
	// full replay) until the next one is taken.
	Version int
}

// Snapshotter is met by the pointer type of an aggregate that opts in to
// snapshots:
//
//	func (*Account) SnapshotPolicy() mire.SnapshotPolicy {
//	    return mire.SnapshotPolicy{Every: 100, Version: 1}
//	}
//
// Save then stores State as JSON, with the events and in the same
// transaction, when the stream's version crosses a multiple of Every; a save
// that does not cross pays nothing. Load, LoadOrNew, LoadForUpdate and
// LoadManyForUpdate start from the stream's snapshot, if its Version matches,
// and apply only the events after it, in the same query. State must survive
// a JSON round trip (exported fields, or its own MarshalJSON and
// UnmarshalJSON), since a loaded snapshot is decoded into a new State.
//
// Snapshots are an optimisation and never an error: a State that cannot be
// encoded is logged through Config.Logger and the events are saved without
// it; a snapshot that is missing, of another Version, not of the stream's
// history (above its version, or left by a stream deleted and written
// again), or that does not decode into State (unknown fields included) is
// passed over for a full replay. Snapshots live in their own table, so reads and projections never
// see them.
type Snapshotter interface {
	SnapshotPolicy() SnapshotPolicy
}

// snapshotWrite is a snapshot to store with a save's events.
type snapshotWrite struct {
	version int64  // the stream version whose fold state is
	schema  int    // the policy's Version
	state   []byte // State as JSON
	err     error  // why State could not be encoded; the save goes on without it
}

// snapshotRoot is the snapshot face of a Root; every *Root[T] has it.
type snapshotRoot interface {
	snapshotPolicy() (SnapshotPolicy, bool)
	restoreSnapshot(version int64, state []byte) error
}

// snapshotPolicy returns the aggregate's policy, and whether it takes
// snapshots at all.
func (r *Root[T]) snapshotPolicy() (SnapshotPolicy, bool) {
	s, ok := any(&r.State).(Snapshotter)
	if !ok {
		return SnapshotPolicy{}, false
	}
	p := s.SnapshotPolicy()
	return p, p.Every > 0
}

// snapshot returns the snapshot to store with the pending events, or nil
// when they do not take the stream across a multiple of the policy's Every.
func (r *Root[T]) snapshot() *snapshotWrite {
	policy, ok := r.snapshotPolicy()
	to := r.Version + int64(len(r.pending))
	if !ok || to/policy.Every == r.Version/policy.Every {
		return nil
	}
	snap := &snapshotWrite{version: to, schema: policy.Version}
	snap.state, snap.err = json.Marshal(r.State)
	if snap.err == nil && bytes.Contains(snap.state, []byte(`\u0000`)) {
		// Postgres's jsonb refuses the NUL character, and a refused
		// snapshot would take the events down with it.
		snap.state, snap.err = nil, errors.New("the state holds a NUL character, which jsonb cannot store")
	}
	if snap.err != nil {
		snap.err = fmt.Errorf("encode %T: %w", r.State, snap.err)
	}
	return snap
}

// restoreSnapshot replaces State with the snapshot's and sets Version. On
// error (state that does not decode, or decodes only by dropping fields)
// the Root is unchanged.
func (r *Root[T]) restoreSnapshot(version int64, state []byte) error {
	if bytes.Equal(bytes.TrimSpace(state), []byte("null")) {
		return errors.New("the state is null")
	}
	var fresh T
	dec := json.NewDecoder(bytes.NewReader(state))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fresh); err != nil {
		return fmt.Errorf("decode %T: %w", fresh, err)
	}
	r.State, r.Version = fresh, version
	return nil
}

// replayQuery returns the query that replay runs for root, and its
// arguments: from the stream's snapshot for a new Root whose aggregate takes
// snapshots, otherwise the events after root's version.
func (s *Store) replayQuery(root applier) (string, []any) {
	if sr, ok := root.(snapshotRoot); ok && root.version() == 0 {
		if policy, ok := sr.snapshotPolicy(); ok {
			return s.sql.snapshot.selectStream, []any{root.StreamID(), root.version(), policy.Version}
		}
	}
	return s.sql.selectStreamEvents, []any{root.StreamID(), root.version()}
}

// errSnapshotUnusable stops a replay that started from a snapshot that does
// not decode; replay starts again without it.
var errSnapshotUnusable = errors.New("mire: snapshot unusable")

// restoreSnapshot loads the snapshot row of replayQuery into root. A
// snapshot the query found not to be of the stream's history (a nil state)
// is logged and passed over: the query reads every event then. A state
// that does not decode is logged and errSnapshotUnusable.
func (s *Store) restoreSnapshot(ctx context.Context, root applier, version int64, state []byte) error {
	if state == nil {
		s.logger.WarnContext(ctx, "mire: snapshot ignored, replaying the whole stream",
			"stream", root.StreamID(), "version", version,
			"error", fmt.Sprintf("the stream has no event at version %d stored with the snapshot", version))
		return nil
	}
	sr, ok := root.(snapshotRoot)
	if !ok {
		return errSnapshotUnusable
	}
	if err := sr.restoreSnapshot(version, state); err != nil {
		s.logger.WarnContext(ctx, "mire: snapshot ignored, replaying the whole stream",
			"stream", root.StreamID(), "version", version, "error", err)
		return errSnapshotUnusable
	}
	return nil
}

// fullReplay hides a Root's snapshot face, so replay reads every event.
type fullReplay struct{ applier }

// batcher is what a pool and a transaction offer for pipelined statements.
type batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// A save inside a transaction stores its snapshots under this savepoint, so
// a snapshot row that Postgres refuses (a trigger, a constraint, a full
// disk) is undone alone and the events still commit.
const (
	snapshotSavepoint = "SAVEPOINT mire_snapshot"
	snapshotRollback  = "ROLLBACK TO SAVEPOINT mire_snapshot"
	snapshotRelease   = "RELEASE SAVEPOINT mire_snapshot"
)

// queueSnapshots queues on batch the upserts of the snapshots of writes
// that have one, inside the savepoint when inTx, and returns how many
// statements it queued. A State that could not be encoded is logged
// instead: the save goes on without it.
func (s *Store) queueSnapshots(ctx context.Context, batch *pgx.Batch, inTx bool, writes ...streamWrite) int {
	n := 0
	for _, w := range writes {
		snap := w.snapshot
		if snap == nil {
			continue
		}
		if snap.err != nil {
			s.logger.WarnContext(ctx, "mire: snapshot not taken, saving without it",
				"stream", w.streamID, "version", snap.version, "error", snap.err)
			continue
		}
		if n == 0 && inTx {
			batch.Queue(snapshotSavepoint)
			n++
		}
		batch.Queue(s.sql.snapshot.upsert, w.streamID, snap.version, snap.schema, snap.state, w.events[len(w.events)-1].id)
		n++
	}
	if n > 0 && inTx {
		batch.Queue(snapshotRelease)
		n++
	}
	return n
}

// snapshotsStored reads the n results that queueSnapshots queued and
// returns the first error among them.
func snapshotsStored(results pgx.BatchResults, n int) error {
	var first error
	for range n {
		if _, err := results.Exec(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// snapshotsRefused logs that Postgres refused the snapshots of writes and,
// inside a transaction, undoes them back to the savepoint so the events
// can still commit.
func (s *Store) snapshotsRefused(ctx context.Context, tx dbtx, inTx bool, refusal error, writes ...streamWrite) error {
	for _, w := range writes {
		if w.snapshot != nil && w.snapshot.err == nil {
			s.logger.WarnContext(ctx, "mire: snapshot refused, saving without it",
				"stream", w.streamID, "version", w.snapshot.version, "error", refusal)
		}
	}
	if !inTx {
		return nil
	}
	if _, err := tx.Exec(ctx, snapshotRollback); err != nil {
		return fmt.Errorf("undo refused snapshot: %w", err)
	}
	if _, err := tx.Exec(ctx, snapshotRelease); err != nil {
		return fmt.Errorf("undo refused snapshot: %w", err)
	}
	return nil
}
