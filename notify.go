package mire

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/mire-go/mire/pgschema"
)

// NotifyWindow is the shortest time between two wake-up notifications one
// Store sends. Writes inside a window share one NOTIFY, sent at its end.
const NotifyWindow = 5 * time.Millisecond

// notifier coalesces wake-ups: a write marks it dirty and, if no sender is
// running, starts one. The sender sends one NOTIFY, waits NotifyWindow, and
// sends again only if writes happened meanwhile; when a window passes
// without writes it exits, so an idle Store runs no goroutine. Writers pay
// two atomic operations: the NOTIFY is never part of their transaction, so
// Postgres does not serialise their commits on the notification queue.
type notifier struct {
	dirty   atomic.Bool
	running atomic.Bool
}

// Notify tells projection runners listening on this store's schema that
// events were committed. Save, Append and TxScope.Commit call it themselves;
// call it after committing a transaction of your own in which you used
// SaveTx or AppendTx, to wake runners at once instead of at their next
// poll. It returns at once, never blocks on the database, and coalesces
// calls: at most one NOTIFY per NotifyWindow per Store.
func (s *Store) Notify() {
	n := &s.notify
	n.dirty.Store(true)
	if n.running.CompareAndSwap(false, true) {
		go s.sendNotifications()
	}
}

func (s *Store) sendNotifications() {
	n := &s.notify
	channel := pgschema.NotifyChannel(s.schema)
	for {
		for n.dirty.Swap(false) {
			if s.closed.Load() {
				n.running.Store(false)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if _, err := s.pool.Exec(ctx, s.sql.notify, channel); err != nil {
				s.logger.Debug("mire: notify projection runners", "err", err)
			}
			cancel()
			time.Sleep(NotifyWindow)
		}
		n.running.Store(false)
		// A write between the last Swap and the Store above found the
		// sender running and did not start one: take the work back.
		if !n.dirty.Load() || !n.running.CompareAndSwap(false, true) {
			return
		}
	}
}
