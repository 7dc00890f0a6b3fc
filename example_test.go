package mire_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
)

// exampleDB is the database the runnable examples share: DATABASE_URL, or
// a throwaway server started by the first example that runs and stopped
// by TestMain.
var exampleDB struct {
	once  sync.Once
	store *mire.Store
	stop  func()
}

// exampleStore returns a migrated store on exampleDB.
func exampleStore() *mire.Store {
	exampleDB.once.Do(func() {
		ctx := context.Background()
		url, stop, err := pgtest.ForExample(ctx)
		if err != nil {
			log.Fatal(err)
		}
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			stop()
			log.Fatal(err)
		}
		exampleDB.stop = func() { pool.Close(); stop() }
		if exampleDB.store, err = mire.New(pool, nil); err == nil {
			err = exampleDB.store.Migrate(ctx)
		}
		if err != nil {
			exampleDB.stop()
			log.Fatal(err)
		}
	})
	return exampleDB.store
}

func TestMain(m *testing.M) {
	code := m.Run()
	if exampleDB.stop != nil {
		exampleDB.stop()
	}
	os.Exit(code)
}

// A consumer appends one event per incoming message and may see the same
// message again after a crash. With the message id as the event id, the
// redelivery is recognised instead of stored twice.
func ExampleWithID() {
	ctx := context.Background()
	store := exampleStore()
	stream := "account-" + uuid.NewString()
	messageID := uuid.New() // from the broker, say

	for delivery := 1; delivery <= 3; delivery++ {
		version, err := store.Append(ctx, stream, mire.Any, mire.WithID(messageID, Deposited{Amount: 10}))
		fmt.Printf("delivery %d: version %d, error %v\n", delivery, version, err)
	}
	events := 0
	for env, err := range store.ReadStream(ctx, stream, nil) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("stored:", env.Type, env.ID == messageID)
		events++
	}
	fmt.Println("events:", events)
	// Output:
	// delivery 1: version 1, error <nil>
	// delivery 2: version 1, error <nil>
	// delivery 3: version 1, error <nil>
	// stored: Deposited true
	// events: 1
}
