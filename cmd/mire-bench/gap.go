package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
)

// Workloads 1s and 1t split workload 1a's gap to the baseline (issue 19):
// 1t is what mire's events table (its columns, defaults and indexes) costs
// the baseline's own INSERT, without a stream row; 1s is mire's own append
// statement, sent by hand with raw pgx on mire's schema, so what is left
// between 1s and 1a is mire's Go side.

// handStatementCase is 1s: the statement Store.Append sends for a one-event
// append to a new stream, captured from a real Append, sent with raw pgx
// with fresh ids, against the baseline's INSERT.
func handStatementCase(ctx context.Context, e *env, writers int) (*bcase, error) {
	sql, template, err := captureAppend(ctx, e)
	if err != nil {
		return nil, err
	}
	return &bcase{
		mire: side{op: func(ctx context.Context, w *worker) (int, error) {
			id := e.newID("h")
			data, eid, err := baseEncode(Opened{Owner: id, Initial: 100})
			if err != nil {
				return 0, err
			}
			args := slices.Clone(template)
			args[0], args[3], args[5] = eid, data, mire.StreamID("account", id)
			var written, version int64
			return 1, e.pool.QueryRow(ctx, sql, args...).Scan(&written, &version)
		}},
		baseline: side{op: insertOp(e, baseInsertEvent)},
		note: func(_, _ *sample) string {
			return "mire column: Store.Append's own statement for a one-event append to a new stream (captured from an Append, stream row and all), sent with raw pgx on mire's schema; baseline column: workload 1's INSERT"
		},
	}, nil
}

// captureAppend returns the SQL and arguments of the statement Store.Append
// sends for one event to a new stream, from a pool that traces its queries.
func captureAppend(ctx context.Context, e *env) (string, []any, error) {
	cfg := e.pool.Config().Copy()
	tracer := &appendTracer{}
	cfg.ConnConfig.Tracer = tracer
	cfg.MinConns, cfg.MaxConns = 0, 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return "", nil, err
	}
	defer pool.Close()
	store, err := mire.New(pool, &mire.Config{Schema: e.store.Schema()})
	if err != nil {
		return "", nil, err
	}
	defer store.Close()
	id := e.newID("capture")
	if _, err := store.Append(ctx, mire.StreamID("account", id), mire.NoStream, Opened{Owner: id, Initial: 100}); err != nil {
		return "", nil, fmt.Errorf("capture the append statement: %w", err)
	}
	if tracer.sql == "" {
		return "", nil, errors.New("capture the append statement: Append sent no statement beginning WITH s AS")
	}
	return tracer.sql, tracer.args, nil
}

// appendTracer keeps the last append statement a pool sends.
type appendTracer struct {
	sql  string
	args []any
}

func (t *appendTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(d.SQL, "WITH s AS") {
		t.sql, t.args = d.SQL, slices.Clone(d.Args)
	}
	return ctx
}

func (t *appendTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// wideTableCase is 1t: the baseline's INSERT into a table shaped as mire's
// events (LIKE it, INCLUDING ALL: its columns, defaults, constraints and
// six indexes), against the same INSERT into the baseline's own table. No
// stream row on either side.
func wideTableCase(ctx context.Context, e *env, writers int) (*bcase, error) {
	create := fmt.Sprintf(`CREATE TABLE baseline.wide (LIKE %s.events INCLUDING ALL)`, pgx.Identifier{e.store.Schema()}.Sanitize())
	if _, err := e.pool.Exec(ctx, create); err != nil {
		return nil, fmt.Errorf("create baseline.wide: %w", err)
	}
	return &bcase{
		mire:     side{op: insertOp(e, strings.Replace(baseInsertEvent, "baseline.events", "baseline.wide", 1))},
		baseline: side{op: insertOp(e, baseInsertEvent)},
		note: func(_, _ *sample) string {
			return "mire column: workload 1's INSERT into a table shaped as mire's events (LIKE it INCLUDING ALL), no stream row; baseline column: the same INSERT into the baseline's table"
		},
	}, nil
}
