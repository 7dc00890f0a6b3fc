package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgschema"
)

// ErrPartitionCount is returned (wrapped, naming both counts) by Run,
// CatchUp and Rebuild's waiting when a projection's Partitions differs
// from the count its stored checkpoints were created with. A projection's
// events are never split two ways at once: Runner.Rebuild starts it over
// with the new count.
var ErrPartitionCount = errors.New("mire: projection stored with another partition count")

// group is one projection in one runner: its workers, one per partition,
// and, when it is partitioned, which of the partitions are this runner's
// share (set by coordinate).
type group struct {
	r       *Runner
	p       Projection
	sql     *queries
	workers []*worker

	mu       sync.Mutex
	prepared bool // the projection's rows exist with its partition count

	rebalance  chan struct{} // wakes coordinate
	members    []string      // the live members coordinate saw last (its goroutine's)
	beginBatch string        // batchLock for this projection
}

func newGroup(r *Runner, p Projection) *group {
	g := &group{r: r, p: p, sql: partitionQueriesFor(r.store.Schema(), p.Partitions), rebalance: make(chan struct{}, 1),
		beginBatch: fmt.Sprintf(batchLock, lockKey(r.store.Schema(), p.Name))}
	for part := range p.Partitions {
		g.workers = append(g.workers, &worker{r: r, g: g, p: p, part: part, sql: g.sql,
			wake: make(chan struct{}, 1), rebalance: make(chan struct{}, 1)})
	}
	return g
}

func (g *group) partitioned() bool { return g.p.Partitions > 1 }

// prepare makes sure, once, that the projection's rows exist with its
// partition count (creating them if it never ran) and, if it is
// partitioned, that its index exists. Errors wrapping ErrPartitionCount or
// mire.ErrNotMigrated are mistakes to report, not to retry.
func (g *group) prepare(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.prepared {
		return nil
	}
	store, n := g.r.store, g.p.Partitions
	count, lo, hi, err := storedPartitions(ctx, store.Pool(), g.sql, g.p.Name)
	if err != nil {
		return fmt.Errorf("mire: projection %q: read its checkpoints: %w", g.p.Name, notMigrated(store.Schema(), err))
	}
	if count > 0 {
		if err := partitionCountError(g.p.Name, n, count, lo, hi); err != nil {
			return err
		}
	}
	if n > 1 {
		ok, err := partitionIndexExists(ctx, store, n)
		if err != nil {
			return fmt.Errorf("mire: projection %q: %w", g.p.Name, notMigrated(store.Schema(), err))
		}
		if !ok {
			return fmt.Errorf("mire: projection %q: %w: the index of %d partitions is missing: call projections.MigratePartitions(ctx, store, %d) or run `mire migrate --partitions %d`",
				g.p.Name, mire.ErrNotMigrated, n, n, n)
		}
	}
	if count > 0 {
		g.prepared = true
		return nil
	}
	err = pgx.BeginFunc(ctx, store.Pool(), func(tx pgx.Tx) error {
		// Two runners creating the rows at once queue on the admin lock,
		// so the second sees the first's rows and their count.
		if _, err := tx.Exec(ctx, g.sql.adminLock, lockKey(store.Schema(), g.p.Name)); err != nil {
			return err
		}
		if count, _, _, err := storedPartitions(ctx, tx, g.sql, g.p.Name); err != nil || count > 0 {
			return err
		}
		_, err := tx.Exec(ctx, g.sql.createPartitions, g.p.Name, n, g.p.Categories, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("mire: projection %q: create its checkpoints: %w", g.p.Name, notMigrated(store.Schema(), err))
	}
	if err := g.checkCount(ctx); err != nil {
		return err
	}
	g.prepared = true
	return nil
}

// checkCount returns an error wrapping ErrPartitionCount unless the
// projection's stored rows are exactly its partitions.
func (g *group) checkCount(ctx context.Context) error {
	count, lo, hi, err := storedPartitions(ctx, g.r.store.Pool(), g.sql, g.p.Name)
	if err != nil {
		return fmt.Errorf("mire: projection %q: read its checkpoints: %w", g.p.Name, notMigrated(g.r.store.Schema(), err))
	}
	return partitionCountError(g.p.Name, g.p.Partitions, count, lo, hi)
}

func partitionCountError(name string, n, count, lo, hi int) error {
	if count == n && lo == n && hi == n {
		return nil
	}
	stored := strconv.Itoa(lo)
	if lo != hi || count != lo {
		stored = fmt.Sprintf("%d rows of counts %d..%d", count, lo, hi)
	}
	return fmt.Errorf("mire: projection %q: %w: it is stored with %s partitions and declared with %d: rebuild it (Runner.Rebuild) to change the count",
		name, ErrPartitionCount, stored, n)
}

func storedPartitions(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, sql *queries, name string) (count, lo, hi int, err error) {
	err = db.QueryRow(ctx, sql.partitionsOf, name).Scan(&count, &lo, &hi)
	return count, lo, hi, err
}

// coordinate keeps this runner's membership of a partitioned projection
// alive and assigns it its share: with the live members sorted by name,
// member i holds the partitions p with p % members == i. It runs every
// RecheckInterval, and at once when a runner joins, leaves or hands a
// partition over (announce). A worker whose partition stops being this
// runner's releases it after its batch in flight; one whose partition
// becomes this runner's takes it as soon as its lease is free.
func (g *group) coordinate(ctx context.Context, fail func(error)) {
	joined := false
	for ctx.Err() == nil {
		var members []string
		var count, lo, hi int
		err := g.r.store.Pool().QueryRow(ctx, g.sql.heartbeat, g.p.Name, g.r.cfg.Owner, g.r.cfg.LeaseTTL.Seconds()).
			Scan(&members, &count, &lo, &hi)
		switch {
		case err != nil && ctx.Err() == nil:
			g.r.cfg.Logger.Warn("mire: projection: heartbeat", "projection", g.p.Name, "err", err)
		case err == nil:
			if err := partitionCountError(g.p.Name, g.p.Partitions, count, lo, hi); count > 0 && err != nil {
				fail(err) // a Rebuild changed the count under this runner
				return
			}
			g.assign(members)
			if !joined {
				joined = true
				g.announce(ctx)
			}
		}
		t := time.NewTimer(g.r.cfg.RecheckInterval)
		select {
		case <-ctx.Done():
		case <-g.rebalance:
		case <-t.C:
		}
		t.Stop()
	}
}

// assign gives this runner the share of the partitions that members
// (sorted, live) implies, and wakes the workers whose share changed.
func (g *group) assign(members []string) {
	if !slices.Equal(members, g.members) {
		g.r.cfg.Logger.Info("mire: projection: members", "projection", g.p.Name, "owner", g.r.cfg.Owner, "members", members)
		g.members = members
	}
	i := slices.Index(members, g.r.cfg.Owner)
	for part, w := range g.workers {
		mine := i >= 0 && part%len(members) == i
		if w.assigned.Swap(mine) != mine {
			signal(w.rebalance)
		}
	}
}

// announce tells the runners hosting the projection to look at its
// members and leases again.
func (g *group) announce(ctx context.Context) {
	channel := pgschema.NotifyChannel(g.r.store.Schema())
	if _, err := g.r.store.Pool().Exec(ctx, g.sql.announce, channel, rebalancePrefix+g.p.Name); err != nil && ctx.Err() == nil {
		g.r.cfg.Logger.Warn("mire: projection: announce", "projection", g.p.Name, "err", err)
	}
}

// leave ends this runner's membership (once its workers have released
// their leases), so that the others take its share at once.
func (g *group) leave() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	channel := pgschema.NotifyChannel(g.r.store.Schema())
	if _, err := g.r.store.Pool().Exec(ctx, g.sql.leave, g.p.Name, g.r.cfg.Owner, channel, rebalancePrefix+g.p.Name); err != nil {
		return fmt.Errorf("mire: projection %q: leave (its share moves after LeaseTTL): %w", g.p.Name, err)
	}
	return nil
}

// woken handles an announcement about the projection (a member joined or
// left, a partition was handed over, an admin operation revoked the
// leases): the coordinator looks at the members again, the workers
// waiting for a lease try it, and idle holders renew theirs, which tells
// them whether it was revoked.
func (g *group) woken() {
	signal(g.rebalance)
	for _, w := range g.workers {
		signal(w.rebalance)
	}
}

// signal sends on a wake-up channel of capacity 1 without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// MigratePartitions creates the index that the readers of projections of
// n partitions need (one per partition count in use, whatever the
// projections' names), without blocking writers (CREATE INDEX
// CONCURRENTLY): call it once at boot, after Store.Migrate, for each count
// your projections declare, or run `mire migrate --partitions n`. A Run of
// a projection whose index is missing fails at once with an error wrapping
// mire.ErrNotMigrated. It is safe to call from many processes at once, and
// cheap when the index exists; an index left invalid by a failed attempt
// is dropped and built again. Each index costs writers one index entry per
// append (not per event). n of 1 needs no index: it returns nil.
func MigratePartitions(ctx context.Context, store *mire.Store, n int) error {
	if n < 1 || n > MaxPartitions {
		return fmt.Errorf("mire: migrate partitions: count %d out of range 1..%d", n, MaxPartitions)
	}
	if n == 1 {
		return nil
	}
	if ok, err := partitionIndexExists(ctx, store, n); err != nil || ok {
		if err != nil {
			return fmt.Errorf("mire: migrate partitions %d: %w", n, notMigrated(store.Schema(), err))
		}
		return nil
	}
	// CREATE INDEX CONCURRENTLY runs outside a transaction, on one
	// connection, under a session lock that queues other callers.
	conn, err := store.Pool().Acquire(ctx)
	if err != nil {
		return fmt.Errorf("mire: migrate partitions %d: %w", n, err)
	}
	defer conn.Release()
	schema := store.Schema()
	for locked := false; !locked; {
		if err := conn.QueryRow(ctx, lockPartitionIndex, schema, n).Scan(&locked); err != nil {
			return fmt.Errorf("mire: migrate partitions %d: lock: %w", n, err)
		}
		if !locked {
			sleep(ctx, 50*time.Millisecond) // another caller is creating it
			if ctx.Err() != nil {
				return fmt.Errorf("mire: migrate partitions %d: %w", n, ctx.Err())
			}
		}
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), unlockPartitionIndex, schema, n) }()
	ok, err := partitionIndexExists(ctx, store, n)
	if err != nil || ok {
		return err
	}
	// Not valid here means missing, or left invalid by a failed attempt,
	// which CREATE INDEX IF NOT EXISTS would take for done.
	if _, err := conn.Exec(ctx, fillPartitionSQL(dropPartitionIndex, schema, n)); err != nil {
		return fmt.Errorf("mire: migrate partitions %d: drop an invalid index: %w", n, err)
	}
	if _, err := conn.Exec(ctx, PartitionsScript(schema, n)); err != nil {
		return fmt.Errorf("mire: migrate partitions %d: %w", n, notMigrated(schema, err))
	}
	return nil
}

// PartitionsScript returns the SQL statement MigratePartitions runs for n
// partitions in schema, for teams that apply their DDL themselves (`mire
// migrate --print --partitions n`). It must run outside a transaction.
func PartitionsScript(schema string, n int) string {
	return fillPartitionSQL(partitionIndex, schema, n)
}

func fillPartitionSQL(sql, schema string, n int) string {
	return strings.NewReplacer("{{schema}}", pgx.Identifier{schema}.Sanitize(),
		"{{name}}", pgx.Identifier{schema, partitionIndexName(n)}.Sanitize(),
		"{{index}}", pgx.Identifier{partitionIndexName(n)}.Sanitize(),
		"{{n}}", strconv.Itoa(n)).Replace(sql)
}

// partitionIndexExists reports whether the index of n partitions exists
// and is valid.
func partitionIndexExists(ctx context.Context, store *mire.Store, n int) (bool, error) {
	var ok bool
	name := pgx.Identifier{store.Schema(), partitionIndexName(n)}.Sanitize()
	err := store.Pool().QueryRow(ctx, partitionIndexValid, name).Scan(&ok)
	return ok, err
}
