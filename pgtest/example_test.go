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
