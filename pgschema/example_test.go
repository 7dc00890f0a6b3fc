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

// exampleDB is where ExampleMigrate runs: TEST_DATABASE_URL's server, or a
// throwaway one started by the first run and stopped by TestMain.
var exampleDB struct {
	srv  *pgtest.Server
	drop func() // closes the pool of the last empty database and drops it
}

// emptyDatabase returns a pool on a new database without mire's schema,
// after dropping the one made before.
func emptyDatabase(ctx context.Context) *pgxpool.Pool {
	dropExampleDB()
	if exampleDB.srv == nil {
		srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
		if err != nil {
			log.Fatal(err)
		}
		exampleDB.srv = srv
	}
	url, drop, err := pgtest.NewEmptyDatabase(ctx, exampleDB.srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		_ = drop(ctx)
		log.Fatal(err)
	}
	exampleDB.drop = func() { pool.Close(); _ = drop(context.Background()) }
	return pool
}

func dropExampleDB() {
	if exampleDB.drop != nil {
		exampleDB.drop()
		exampleDB.drop = nil
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	dropExampleDB()
	if exampleDB.srv != nil {
		_ = exampleDB.srv.Stop()
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
