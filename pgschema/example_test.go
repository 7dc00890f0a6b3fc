package pgschema_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire/pgschema"
	"github.com/mire-go/mire/pgtest"
)

// exampleDB is the empty database ExampleMigrate migrates, on
// TEST_DATABASE_URL's server or a throwaway one; TestMain drops it.
var exampleDB struct{ stop func() }

// emptyDatabase returns a pool on a new database without mire's schema.
func emptyDatabase(ctx context.Context) *pgxpool.Pool {
	srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
	if err != nil {
		log.Fatal(err)
	}
	url, drop, err := pgtest.NewEmptyDatabase(ctx, srv.URL())
	if err != nil {
		_ = srv.Stop()
		log.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		_ = drop(ctx)
		_ = srv.Stop()
		log.Fatal(err)
	}
	exampleDB.stop = func() { pool.Close(); _ = drop(ctx); _ = srv.Stop() }
	return pool
}

func TestMain(m *testing.M) {
	code := m.Run()
	if exampleDB.stop != nil {
		exampleDB.stop()
	}
	os.Exit(code)
}

// Migrate brings mire's schema up to the latest embedded migration. Call it
// at boot from every replica: they queue on an advisory lock, and once the
// schema is current a call costs one query and takes no lock.
func ExampleMigrate() {
	ctx := context.Background()
	pool := emptyDatabase(ctx)

	before, err := pgschema.Current(ctx, pool, pgschema.SchemaDefault)
	fmt.Println("before:", before, err)
	if err := pgschema.Migrate(ctx, pool, pgschema.SchemaDefault); err != nil {
		log.Fatal(err)
	}
	after, err := pgschema.Current(ctx, pool, pgschema.SchemaDefault)
	fmt.Println("after, at the latest:", after == pgschema.Latest(), err)
	fmt.Println("again:", pgschema.Migrate(ctx, pool, pgschema.SchemaDefault))
	// Output:
	// before: 0 <nil>
	// after, at the latest: true <nil>
	// again: <nil>
}

// ValidateSchema says whether a name can hold mire's objects; Migrate,
// Current and mire.New refuse a name it rejects.
func ExampleValidateSchema() {
	for _, name := range []string{"billing", "pg_mire", `my"schema`} {
		fmt.Printf("%s: %v\n", name, pgschema.ValidateSchema(name))
	}
	// Output:
	// billing: <nil>
	// pg_mire: pgschema: schema name "pg_mire" starts with "pg_", which Postgres reserves for system schemas
	// my"schema: pgschema: schema name "my\"schema" contains '"'

}
