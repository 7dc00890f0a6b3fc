package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
)

// State is whether a projection runs or has halted on a failing event.
type State string

// The states of a projection.
const (
	Running State = "running"
	Halted  State = "halted"
)

// Status is a projection's checkpoint, lease and health, as stored. The
// status of a partitioned projection rolls up its partitions' (see
// ByPartition).
type Status struct {
	Name string
	// Partition is the partition this status is of: 0 for an
	// unpartitioned projection and for a partitioned one's roll-up.
	Partition int
	// Partitions is the projection's partition count; 1 if it is not
	// partitioned.
	Partitions int
	// ByPartition holds each partition's own status, in partition order,
	// when Partitions > 1 (nil otherwise). The fields of the roll-up then
	// sum Held, Delivered and Lag; Position and CursorXID are the least
	// advanced partition's cursor; Floor, Fence and UpdatedAt are the
	// highest; LeaseUntil the earliest of the held leases; Owner lists the
	// distinct owners, sorted, joined by ", " ("" if no partition is held);
	// State is Halted if any partition is, and LastError and FailedEvent
	// are then the first halted partition's (LastError prefixed with
	// "partition N: ").
	ByPartition []Status
	// Position is the global position of the last event read; with CursorXID
	// (its transaction) it is the reader's cursor in (transaction, position)
	// order.
	Position  int64
	CursorXID uint64
	// Floor is the position at or below which nothing is read (see
	// MoveToWatermark); 0 normally.
	Floor int64
	// Held is how many events were read but are held back until an earlier
	// event of their stream, from a later-sorting transaction, is delivered.
	Held int
	// Delivered counts the events handled since the last reset.
	Delivered int64
	// Lag is how many committed events the projection has still to deliver.
	Lag int64
	// Owner is the runner holding the lease ("" when free) until LeaseUntil.
	Owner      string
	LeaseUntil time.Time
	// Fence is the current fence token; it grows with every takeover.
	Fence int64
	State State
	// LastError and FailedEvent say why a halted projection stopped.
	LastError   string
	FailedEvent *EventRef
	UpdatedAt   time.Time
}

// EventRef names one stored event.
type EventRef struct {
	StreamID string
	Version  int64
	Position int64
	Type     string
}

// StatusOf returns the status of the projection name. A projection that
// has never run has no status: the error wraps mire.ErrNotFound.
func StatusOf(ctx context.Context, store *mire.Store, name string) (Status, error) {
	return statusOf(ctx, store, queriesFor(store.Schema()), name)
}

func statusOf(ctx context.Context, store *mire.Store, sql *queries, name string) (Status, error) {
	var n int
	err := store.Pool().QueryRow(ctx, sql.partitionsOf, name).Scan(new(int), new(int), &n)
	if err == nil && n == 0 {
		err = pgx.ErrNoRows
	}
	if err == nil {
		if n > 1 {
			sql = partitionQueriesFor(store.Schema(), n)
		}
		var rows pgx.Rows
		if rows, err = store.Pool().Query(ctx, sql.status, name); err == nil {
			var parts []Status
			if parts, err = pgx.CollectRows(rows, scanStatus); err == nil {
				return rollUp(parts), nil
			}
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return Status{}, fmt.Errorf("mire: projection %q: status: %w", name, mire.ErrNotFound)
	}
	return Status{}, fmt.Errorf("mire: projection %q: status: %w", name, notMigrated(store.Schema(), err))
}

func scanStatus(row pgx.CollectableRow) (Status, error) {
	var st Status
	var state string
	var leaseUntil *time.Time
	var errPos *int64
	var ref EventRef
	err := row.Scan(&st.Name, &st.Partition, &st.Partitions, &st.CursorXID, &st.Position, &st.Floor,
		&st.Held, &st.Delivered, &st.Owner, &leaseUntil, &st.Fence, &state, &st.LastError,
		&errPos, &ref.StreamID, &ref.Version, &ref.Type, &st.UpdatedAt, &st.Lag)
	st.State = State(state)
	if leaseUntil != nil {
		st.LeaseUntil = *leaseUntil
	}
	if errPos != nil {
		ref.Position = *errPos
		st.FailedEvent = &ref
	}
	return st, err
}

// rollUp returns the status of a projection whose partitions have the
// statuses parts (see Status.ByPartition).
func rollUp(parts []Status) Status {
	if len(parts) == 1 {
		return parts[0]
	}
	st := Status{Name: parts[0].Name, Partitions: len(parts), ByPartition: parts, State: Running}
	var owners []string
	for i, p := range parts {
		st.Held += p.Held
		st.Delivered += p.Delivered
		st.Lag += p.Lag
		if i == 0 || p.CursorXID < st.CursorXID || p.CursorXID == st.CursorXID && p.Position < st.Position {
			st.CursorXID, st.Position = p.CursorXID, p.Position
		}
		st.Floor, st.Fence = max(st.Floor, p.Floor), max(st.Fence, p.Fence)
		if p.UpdatedAt.After(st.UpdatedAt) {
			st.UpdatedAt = p.UpdatedAt
		}
		if p.Owner != "" {
			owners = append(owners, p.Owner)
			if st.LeaseUntil.IsZero() || p.LeaseUntil.Before(st.LeaseUntil) {
				st.LeaseUntil = p.LeaseUntil
			}
		}
		if p.State == Halted && st.State != Halted {
			st.State, st.FailedEvent = Halted, p.FailedEvent
			st.LastError = fmt.Sprintf("partition %d: %s", p.Partition, p.LastError)
		}
	}
	slices.Sort(owners)
	st.Owner = strings.Join(slices.Compact(owners), ", ")
	return st
}

// partition returns the status of partition part (st itself if the
// projection is not partitioned).
func (st Status) partition(part int) Status {
	if part < len(st.ByPartition) {
		return st.ByPartition[part]
	}
	return st
}

// held reports whether every partition's lease is held.
func (st Status) held() bool {
	for _, p := range st.ByPartition {
		if p.Owner == "" {
			return false
		}
	}
	return st.Owner != ""
}

// Resume lets a halted projection run again, from the event it halted on
// (after a fix of the handler, or of the data). The fence is raised and
// the lease freed, so the projection is taken over afresh within the
// runners' RecheckInterval. Resuming a running projection only does that.
// A name that has no checkpoint (it never ran) is an error wrapping
// mire.ErrNotFound; nothing is changed.
func Resume(ctx context.Context, store *mire.Store, name string) error {
	q := queriesFor(store.Schema())
	return admin(ctx, store, q, name, "resume", q.resume, nil, 0)
}

// ResetCheckpoint moves the projection's checkpoint back to the beginning
// of the log and clears its error, without touching its read model: the
// runner holding it replays every event into the read model as it is. To
// replay into an empty read model, use Runner.Rebuild, which also clears
// it (Projection.Truncate) in the same transaction. The lease is freed
// and the fence raised: a worker in the middle of a batch cannot write its
// checkpoint over the reset. A name that has no checkpoint (it never ran)
// is an error wrapping mire.ErrNotFound; nothing is changed.
func ResetCheckpoint(ctx context.Context, store *mire.Store, name string) error {
	q := queriesFor(store.Schema())
	return admin(ctx, store, q, name, "reset checkpoint", q.reset, nil, 0)
}

// MoveToWatermark moves the projection's checkpoint past every event
// stored now, without delivering them. It is the admin operation after a
// logical dump and restore into another cluster: transaction ids restart
// there, so the (transaction, position) order of old and new events no
// longer holds, and a restored projection would wait or skip. Run it for
// each projection after the restore, before writers start again (events of
// transactions in flight at that moment may be skipped). The read models
// restored with the dump stay as they are. A name that has no checkpoint
// (it never ran) is an error wrapping mire.ErrNotFound; nothing is changed.
func MoveToWatermark(ctx context.Context, store *mire.Store, name string) error {
	q := queriesFor(store.Schema())
	return admin(ctx, store, q, name, "move to watermark", q.toWatermark, nil, 0)
}

// admin runs one admin statement (stmt, one of q's) on the subscription
// rows (every partition's), in one transaction with before (if set: a
// runner's Truncate). A projection that never ran has no row: with before
// (a runner's own projection) that is fine, there is nothing to move;
// without, the name is unknown. With partitions > 0 (a runner's Rebuild),
// rows stored with another partition count are replaced by fresh rows of
// partitions, instead of stmt.
//
// It first takes the projection's advisory lock (see adminLock), so it
// waits for the batches in flight, and new batches wait for it, whatever
// tables before clears: the two never deadlock, and the batches that
// waited are fenced.
func admin(ctx context.Context, store *mire.Store, q *queries, name, op, stmt string, before func(context.Context, pgx.Tx) error, partitions int) error {
	err := pgx.BeginFunc(ctx, store.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, q.adminLock, lockKey(store.Schema(), name)); err != nil {
			return err
		}
		if before != nil {
			if err := before(ctx, tx); err != nil {
				return err
			}
		}
		var found int
		err := tx.QueryRow(ctx, q.lockSubscription, name).Scan(&found)
		switch {
		case err != nil:
			return err
		case found == 0 && before == nil:
			return fmt.Errorf("no projection of that name has run (no checkpoint): %w", mire.ErrNotFound)
		case found == 0:
			return nil // never ran: nothing to move
		}
		if partitions > 0 {
			count, lo, hi, err := storedPartitions(ctx, tx, q, name)
			if err != nil {
				return err
			}
			if partitionCountError(name, partitions, count, lo, hi) != nil {
				return repartition(ctx, tx, q, name, partitions)
			}
		}
		_, err = tx.Exec(ctx, stmt, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("mire: projection %q: %s: %w", name, op, notMigrated(store.Schema(), err))
	}
	return nil
}

// Status returns the status of one of the runner's projections.
func (r *Runner) Status(ctx context.Context, name string) (Status, error) {
	return statusOf(ctx, r.store, r.sql, name)
}

// RebuildOpts are the options of Runner.Rebuild. A nil *RebuildOpts means
// all defaults.
type RebuildOpts struct {
	// Progress, if set, is called with the projection's status each time
	// Rebuild checks it while it waits for the replay. Defaults to nil.
	Progress func(Status)
	// NoWait makes Rebuild return once the read model is cleared and the
	// checkpoint reset, leaving the replay to the runners (for an admin
	// endpoint that must answer at once, say); Progress must then be nil.
	// Defaults to false: Rebuild waits until the replay has caught up.
	NoWait bool
}

// rebuildCheckMax caps how long Rebuild waits between two checks of the
// projection's status, so that it returns soon after the replay has caught
// up even with a long PollInterval.
const rebuildCheckMax = 100 * time.Millisecond

// Rebuild clears the read model of one of the runner's projections with
// its Truncate (if set) and, in the same transaction, moves its checkpoint
// back to the beginning of the log (as ResetCheckpoint does), then waits
// until the projection has replayed the log and caught up. It checks the
// projection's status every PollInterval or 100 ms, whichever is shorter,
// passing it to opts.Progress. The replay itself is done by whichever
// replica's Run holds the projection, so some runner must be running it
// (this one or another) or Rebuild waits until ctx ends; with opts.NoWait
// it returns at once after the reset. A projection that halts during the
// replay makes Rebuild return an error wrapping ErrHalted.
//
// It is safe while a runner (this one or another) is in the middle of a
// batch: it waits for that batch to commit, then clears and resets, and
// that batch's worker cannot write its checkpoint over the reset; Truncate
// may clear any tables in any order. A name that is not one of the
// runner's projections is an error wrapping mire.ErrNotFound.
func (r *Runner) Rebuild(ctx context.Context, name string, opts *RebuildOpts) error {
	g := r.byName[name]
	if g == nil {
		return fmt.Errorf("mire: projection %q: rebuild: not in this runner: %w", name, mire.ErrNotFound)
	}
	if opts == nil {
		opts = &RebuildOpts{}
	}
	if opts.NoWait && opts.Progress != nil {
		return fmt.Errorf("mire: projection %q: rebuild: RebuildOpts.Progress is set with NoWait, which never calls it", name)
	}
	if err := admin(ctx, r.store, r.sql, name, "rebuild", r.sql.reset, g.p.Truncate, g.p.Partitions); err != nil {
		return err
	}
	if opts.NoWait {
		return nil
	}
	for {
		st, err := r.Status(ctx, name)
		if err != nil && !errors.Is(err, mire.ErrNotFound) {
			return err
		}
		if err == nil {
			if opts.Progress != nil {
				opts.Progress(st)
			}
			if st.State == Halted {
				return fmt.Errorf("mire: projection %q: rebuild: %w: %s", name, ErrHalted, st.LastError)
			}
			if st.Lag == 0 && st.held() {
				return nil
			}
		}
		sleep(ctx, min(r.cfg.PollInterval, rebuildCheckMax))
		if ctx.Err() != nil {
			return fmt.Errorf("mire: projection %q: rebuild: %w", name, ctx.Err())
		}
	}
}

// repartition replaces the rows of projection name by fresh rows of n
// partitions, at the beginning of the log, with fences above the old
// rows': a worker of the old count can neither checkpoint into them nor
// take their leases (acquire checks the count).
func repartition(ctx context.Context, tx pgx.Tx, q *queries, name string, n int) error {
	var fence int64
	if err := tx.QueryRow(ctx, q.maxFence, name).Scan(&fence); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, q.deletePartitions, name); err != nil {
		return err
	}
	var categories []string
	_, err := tx.Exec(ctx, q.createPartitions, name, n, categories, fence+1)
	return err
}
