package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// A worker's lease on its projection: taken (with the checkpoint) by
// acquire, extended by renew and every checkpoint, given back by stop.

// acquire tries to take the projection's lease; on success it loads the
// checkpoint and the held-back events.
func (w *worker) acquire(ctx context.Context) (bool, error) {
	var held []int64
	var state, lastError string
	var fence int64
	var cursorXid uint64
	var cursorPos, floor int64
	// The lease statement runs to its end even when ctx ends meanwhile
	// (a stop): a lease taken under a fence the worker never learnt could
	// not be released, and would block every replica for LeaseTTL.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.r.cfg.LeaseTTL)
	defer cancel()
	err := w.r.store.Pool().QueryRow(lctx, w.sql.acquire, w.p.Name, w.part, w.r.cfg.Owner, w.r.cfg.LeaseTTL.Seconds(), w.p.Categories, w.p.Partitions).
		Scan(&fence, &cursorXid, &cursorPos, &floor, &held, &state, &lastError)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mire: projection %q: acquire lease: %w", w.p.Name, notMigrated(w.r.store.Schema(), err))
	}
	w.fence, w.reload = fence, false // from here on, stop releases the lease
	renewedAt := time.Now()
	rows, err := w.readHeld(ctx, held)
	if err != nil {
		w.stop()
		return false, err
	}
	var cursorHead int64
	if err := w.r.store.Pool().QueryRow(ctx, w.sql.cursorHead, cursorXid, cursorPos).Scan(&cursorHead); err != nil {
		w.stop()
		return false, fmt.Errorf("mire: projection %q: find the cursor's append: %w", w.p.Name, err)
	}
	w.cursorXid, w.cursorPos, w.cursorHead, w.floor = cursorXid, cursorPos, cursorHead, floor
	w.order, w.halted, w.renewedAt = newOrder(rows), state == string(Halted), renewedAt
	w.failPos, w.failCount, w.single = 0, 0, 0
	w.r.cfg.Logger.Info("mire: projection: lease acquired", w.logAttrs("owner", w.r.cfg.Owner, "fence", fence)...)
	if w.halted {
		w.r.halted(w.p.Name, fmt.Errorf("mire: projection %s: %w: %s", w.label(), ErrHalted, lastError))
	}
	return true, nil
}

func (w *worker) readHeld(ctx context.Context, positions []int64) ([]row, error) {
	if len(positions) == 0 {
		return nil, nil
	}
	rows, err := w.r.store.Pool().Query(ctx, w.sql.readPositions, positions)
	if err != nil {
		return nil, fmt.Errorf("mire: projection %q: read held events: %w", w.p.Name, err)
	}
	out, err := w.scan(rows, len(positions))
	if err != nil {
		return nil, err
	}
	held := make([]row, len(out))
	for i, r := range out {
		if r.err != nil {
			return nil, r.err
		}
		held[i] = r.row
	}
	return held, nil
}

// renew extends the lease; a lost lease sets fence to 0. It also notices a
// halted projection's Resume (which raises the fence).
func (w *worker) renew(ctx context.Context) {
	var state string
	err := w.r.store.Pool().QueryRow(ctx, w.sql.renew, w.p.Name, w.fence, w.r.cfg.LeaseTTL.Seconds(), w.part).Scan(&state)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		w.r.cfg.Logger.Info("mire: projection: lease lost", w.logAttrs("fence", w.fence)...)
		w.fence, w.reload = 0, false
	case err != nil:
		if ctx.Err() == nil {
			w.r.cfg.Logger.Warn("mire: projection: renew lease", "projection", w.p.Name, "err", err)
		}
	default:
		w.renewedAt = time.Now()
		w.halted = state == string(Halted)
	}
}

// stop releases the lease, so that another replica takes over at once. A
// failure is logged and kept in releaseErr.
func (w *worker) stop() {
	w.waitAhead()
	w.releaseErr = nil
	if w.fence == 0 {
		return
	}
	if !w.r.noRelease {
		if err := w.release(); err != nil {
			w.r.cfg.Logger.Warn("mire: projection: release lease", "projection", w.p.Name, "err", err)
			w.releaseErr = fmt.Errorf("mire: projection %q: release lease (it expires after LeaseTTL): %w", w.p.Name, err)
		}
	}
	w.fence, w.reload = 0, false
}

// release gives the lease back through the store's pool or, if that fails
// (a pool closed under a running runner: a shutdown in the wrong order),
// through a connection of its own, so that the next start of the
// application does not wait for the lease to expire.
func (w *worker) release() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pool := w.r.store.Pool()
	_, err := pool.Exec(ctx, w.sql.release, w.p.Name, w.fence, w.part)
	if err == nil || ctx.Err() != nil {
		return err
	}
	conn, cerr := pgx.ConnectConfig(ctx, pool.Config().ConnConfig)
	if cerr != nil {
		return errors.Join(err, cerr)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, cerr := conn.Exec(ctx, w.sql.release, w.p.Name, w.fence, w.part); cerr != nil {
		return errors.Join(err, cerr)
	}
	return nil
}
