package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
)

// scale sizes the data of the workloads.
type scale struct {
	Streams    int `json:"streams"`     // workload 2: existing streams to pick from
	StreamLen  int `json:"stream_len"`  // workload 2: events in each of them
	Batch      int `json:"batch"`       // workload 3: events per save
	LongLen    int `json:"long_len"`    // workload 4: events in the stream loaded
	Accounts   int `json:"accounts"`    // workload 6: accounts to transfer between
	ProjEvents int `json:"proj_events"` // workload 7: events a projection catches up on
	ProjUpsert int `json:"proj_upsert"` // workload 7u: the same, into the upsert read model
	SnapLen    int `json:"snap_len"`    // workload 8: events in the stream loaded
	ReadAll    int `json:"read_all"`    // workload 9: events in the log

	PartStreams    int `json:"part_streams"`    // workloads 10, 10n: streams the events are spread over
	PartEvents     int `json:"part_events"`     // workload 10: events caught up on, 2 ms handler
	PartNoop       int `json:"part_noop"`       // workload 10n: events caught up on, no-op handler
	RebalanceTries int `json:"rebalance_tries"` // workload 10r: joins and kills
}

var (
	fullScale = scale{Streams: 10_000, StreamLen: 10, Batch: 100, LongLen: 1_000, Accounts: 1_000, ProjEvents: 200_000, ProjUpsert: 10_000, SnapLen: 10_000, ReadAll: 1_000_000,
		PartStreams: 1_600, PartEvents: 19_200, PartNoop: 192_000, RebalanceTries: 10}
	shortScale = scale{Streams: 2_000, StreamLen: 10, Batch: 100, LongLen: 1_000, Accounts: 1_000, ProjEvents: 30_000, ProjUpsert: 2_000, SnapLen: 10_000, ReadAll: 100_000,
		PartStreams: 1_600, PartEvents: 4_800, PartNoop: 48_000, RebalanceTries: 10}
)

// env is one case's database: fresh, with mire's schema and the baseline's,
// so no case inherits another's tables.
type env struct {
	url   string // the database's
	pool  *pgxpool.Pool
	store *mire.Store
	scale scale
	seq   atomic.Int64 // for unique stream ids
	drop  func(context.Context) error
}

// newEnv creates a fresh database on the server at serverURL.
func newEnv(ctx context.Context, serverURL string, sc scale, maxConns int) (*env, error) {
	url, drop, err := pgtest.NewDatabase(ctx, serverURL)
	if err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	e := &env{url: url, scale: sc, drop: drop}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, errors.Join(err, drop(ctx))
	}
	cfg.MaxConns = int32(maxConns)
	cfg.MinConns = int32(maxConns)
	if e.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, errors.Join(err, drop(ctx))
	}
	if e.store, err = mire.New(e.pool, nil); err == nil {
		err = e.store.Migrate(ctx)
	}
	if err == nil {
		_, err = e.pool.Exec(ctx, baselineSchema)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("prepare database: %w", err), e.close(ctx))
	}
	return e, nil
}

// empty removes every row the workloads write, for a database reused
// from case to case (the specs do, to stay fast).
func (e *env) empty(ctx context.Context) error {
	_, err := e.pool.Exec(ctx, `TRUNCATE mire.events, mire.streams, mire.snapshots, mire.subscriptions,
	baseline.events, baseline.streams, public.read_model_mire, public.read_model_baseline RESTART IDENTITY`)
	return err
}

func (e *env) close(ctx context.Context) error {
	if e.pool != nil {
		e.pool.Close()
	}
	return e.drop(context.WithoutCancel(ctx))
}

// newID returns an aggregate id no other op of this case uses.
func (e *env) newID(prefix string) string {
	return prefix + strconv.FormatInt(e.seq.Add(1), 10)
}

// seed writes n account streams of length events each (an Opened then
// Deposited events) into mire's tables and into the baseline's, straight in
// SQL since seeding is not what is measured. Stream ids are "account-"
// prefix and a number from 1.
func (e *env) seed(ctx context.Context, prefix string, n, length int) error {
	for _, sql := range []string{seedMireStreams, seedMireEvents, seedBaselineStreams, seedBaselineEvents} {
		if _, err := e.pool.Exec(ctx, sql, prefix, n, length); err != nil {
			return fmt.Errorf("seed %d streams of %d events: %w", n, length, err)
		}
	}
	_, err := e.pool.Exec(ctx, `ANALYZE`)
	return err
}

const (
	seedEventsSelect = `SELECT 'account-' || $1::text || i, v, 'account', gen_random_uuid(),
	CASE WHEN v = 1 THEN 'Opened' ELSE 'Deposited' END, 1,
	CASE WHEN v = 1 THEN jsonb_build_object('owner', $1::text || i, 'initial', 1000000000)
	     ELSE jsonb_build_object('amount', v) END
FROM generate_series(1, $2::int) i, generate_series(1, $3::int) v ORDER BY i, v`

	seedMireStreams = `INSERT INTO mire.streams (stream_id, category, version)
SELECT 'account-' || $1::text || i, 'account', $3::int FROM generate_series(1, $2::int) i`
	seedMireEvents = `INSERT INTO mire.events (stream_id, version, category, event_id, type, schema_version, data) ` + seedEventsSelect

	seedBaselineStreams = `INSERT INTO baseline.streams (stream_id, version)
SELECT 'account-' || $1::text || i, $3::int FROM generate_series(1, $2::int) i`
	seedBaselineEvents = `INSERT INTO baseline.events (stream_id, version, category, event_id, type, schema_version, data) ` + seedEventsSelect
)
