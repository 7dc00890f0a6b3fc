package pgschema_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/pgschema"
)

// examples gives each runnable example a fresh database (internal/mtest).
var examples mtest.Examples

// emptyDatabase returns a pool on a fresh database without mire's schema.
func emptyDatabase(ctx context.Context) *pgxpool.Pool { return examples.Database(ctx, false) }

func TestMain(m *testing.M) {
	code := m.Run()
	examples.Close()
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
