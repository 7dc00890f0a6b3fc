package pgtest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgschema"
	"github.com/mire-go/mire/pgtest"
)

// A test suite starts one throwaway server, with durability off, and gives
// each test process (or spec) a fresh database that already holds mire's
// schema. Stop removes the server and its files.
func ExampleStartThrowaway() {
	ctx := context.Background()
	srv, err := pgtest.StartThrowaway(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop()

	url, drop, err := pgtest.NewDatabase(ctx, srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer drop(ctx)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	var fsync string
	if err := pool.QueryRow(ctx, `SHOW fsync`).Scan(&fsync); err != nil {
		log.Fatal(err)
	}
	version, err := pgschema.Current(ctx, pool, pgschema.SchemaDefault)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("fsync:", fsync)
	fmt.Println("mire's schema at the latest version:", version == pgschema.Latest())
	// Output:
	// fsync: off
	// mire's schema at the latest version: true
}

// A runnable program gets its database from ForExample: DATABASE_URL if it
// is set, and otherwise a fresh one on a throwaway server, so that `go run`
// works on a machine with nothing running. stop drops the database and
// stops the server.
func ExampleForExample() {
	ctx := context.Background()
	url, stop, err := pgtest.ForExample(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	store, err := mire.New(pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("migrate:", store.Migrate(ctx)) // its databases hold mire's schema already; DATABASE_URL's may not
	// Output:
	// migrate: <nil>
}

// A spec of reads from a replica starts a streaming replica of a throwaway
// server, makes it lag by pausing its replay, and catches it up.
func ExampleStartReplica() {
	ctx := context.Background()
	primary, err := pgtest.StartThrowaway(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer primary.Stop()
	replica, err := pgtest.StartReplica(ctx, primary, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer replica.Stop() // before the primary's

	url, drop, err := pgtest.NewDatabase(ctx, primary.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer drop(ctx)
	replicaURL, err := replica.DatabaseURL(url)
	if err != nil {
		log.Fatal(err)
	}
	if err := replica.CatchUp(ctx); err != nil { // the new database is on the replica
		log.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	rpool, err := pgxpool.New(ctx, replicaURL)
	if err != nil {
		log.Fatal(err)
	}
	defer rpool.Close()
	streams := func(pool *pgxpool.Pool) (n int) {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM mire.streams`).Scan(&n); err != nil {
			log.Fatal(err)
		}
		return n
	}

	if err := replica.PauseReplay(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO mire.streams (stream_id, category, version) VALUES ('account-a', 'account', 1)`); err != nil {
		log.Fatal(err)
	}
	fmt.Println("paused: primary", streams(pool), "replica", streams(rpool))
	if err := replica.ResumeReplay(ctx); err != nil {
		log.Fatal(err)
	}
	if err := replica.CatchUp(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("caught up: primary", streams(pool), "replica", streams(rpool))
	// Output:
	// paused: primary 1 replica 0
	// caught up: primary 1 replica 1
}
