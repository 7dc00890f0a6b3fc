package mtest

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire/pgtest"
)

// Examples gives the runnable examples of one test package a fresh database
// each, on one server per test process: TEST_DATABASE_URL's, or a throwaway
// one started by the first example that asks. Each example thus starts from
// an empty log and can use readable ids, also under go test -count=2. Call
// Close from TestMain.
type Examples struct {
	srv  *pgtest.Server
	drop func() // closes the current database's pool and drops it
}

// Database drops the previous example's database and returns a pool on a
// new one, with mire's schema if migrated. Examples have no *testing.T, so
// a failure ends the process.
func (e *Examples) Database(ctx context.Context, migrated bool) *pgxpool.Pool {
	e.Drop()
	if e.srv == nil {
		srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
		if err != nil {
			log.Fatal(err)
		}
		e.srv = srv
	}
	newDatabase := pgtest.NewEmptyDatabase
	if migrated {
		newDatabase = pgtest.NewDatabase
	}
	url, drop, err := newDatabase(ctx, e.srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		_ = drop(ctx)
		log.Fatal(err)
	}
	e.drop = func() { pool.Close(); _ = drop(context.Background()) }
	return pool
}

// Drop closes the current database's pool and drops it, if there is one.
func (e *Examples) Drop() {
	if e.drop != nil {
		e.drop()
		e.drop = nil
	}
}

// Close drops the last database and stops a throwaway server.
func (e *Examples) Close() {
	e.Drop()
	if e.srv != nil {
		_ = e.srv.Stop()
		e.srv = nil
	}
}
