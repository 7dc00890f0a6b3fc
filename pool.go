package mire

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ConfigurePool sets up a pool configuration the way mire works best with
// it. A cancelled context then cancels its statement on the server (pgx's
// default only drops the connection, and a statement that was waiting on a
// lock may then still commit after the call returned the context's error),
// and a connection on which a cancel request was sent is closed when it is
// released instead of going back to the pool: Postgres may deliver a cancel
// request after the statement it was meant for has finished, and it would
// then cancel whatever statement the connection runs next. Call it on the
// config before pgxpool.NewWithConfig; it keeps an AfterRelease hook you
// set before:
//
//	cfg, err := pgxpool.ParseConfig(url)
//	mire.ConfigurePool(cfg)
//	pool, err := pgxpool.NewWithConfig(ctx, cfg)
//
// Without it mire is still safe: a save is one statement, so a cancelled
// save either wrote all its events or none, and saving the same Root again
// recognises events already written.
func ConfigurePool(cfg *pgxpool.Config) {
	cfg.ConnConfig.BuildContextWatcherHandler = func(conn *pgconn.PgConn) ctxwatch.Handler {
		h := &cancelHandler{conn: conn}
		conn.CustomData()[cancelHandlerKey] = h
		return h
	}
	after := cfg.AfterRelease
	cfg.AfterRelease = func(c *pgx.Conn) bool {
		if h, ok := c.PgConn().CustomData()[cancelHandlerKey].(*cancelHandler); ok && h.sent.Load() {
			return false // a late cancel request could still reach it: close it
		}
		return after == nil || after(c)
	}
}

// CancelDeadlineDefault is how long a call whose context was cancelled waits
// for the server to confirm the cancellation before it drops the connection.
const CancelDeadlineDefault = 2 * time.Second

// cancelHandlerKey finds a connection's cancelHandler in its CustomData.
const cancelHandlerKey = "mire.cancelHandler"

// cancelHandler is the context watcher ConfigurePool gives each connection.
// On a cancelled context it sends the server a cancel request and sets a
// deadline on the socket, as pgx's CancelRequestContextWatcherHandler does;
// unlike it, it does not sleep afterwards hoping the request has landed,
// but marks the connection so that it is closed on release.
type cancelHandler struct {
	conn *pgconn.PgConn
	sent atomic.Bool // a cancel request was (or may have been) sent on this connection
	stop context.CancelFunc
	done chan struct{}
}

func (h *cancelHandler) HandleCancel(context.Context) {
	deadline := time.Now().Add(CancelDeadlineDefault)
	_ = h.conn.Conn().SetDeadline(deadline)
	ctx, stop := context.WithDeadline(context.Background(), deadline)
	h.stop, h.done = stop, make(chan struct{})
	h.sent.Store(true)
	go func() {
		defer close(h.done)
		_ = h.conn.CancelRequest(ctx)
	}()
}

func (h *cancelHandler) HandleUnwatchAfterCancel() {
	h.stop() // the statement is over: a request not yet sent need not be
	<-h.done
	_ = h.conn.Conn().SetDeadline(time.Time{})
}
