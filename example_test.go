package mire_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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

// A transfer locks both accounts in one stable order, decides, and saves
// both in one transaction; InTx commits, or rolls back on an error, and
// retries a conflict.
func ExampleStore_InTx() {
	ctx := context.Background()
	store := exampleStore()
	alice, bob := "alice-"+uuid.NewString(), "bob-"+uuid.NewString()
	for _, id := range []string{alice, bob} {
		acc, _ := mire.Create[Account](store, id)
		if err := acc.Record(Opened{Owner: id, Initial: 100}); err != nil {
			log.Fatal(err)
		}
		if err := store.Save(ctx, acc); err != nil {
			log.Fatal(err)
		}
	}

	err := store.InTx(ctx, &mire.InTxOpts{Retries: 3}, func(scope *mire.TxScope) error {
		accs, err := mire.LoadManyForUpdate[Account](ctx, scope, alice, bob)
		if err != nil {
			return err
		}
		if accs[0].State.Balance < 30 {
			return errors.New("insufficient funds")
		}
		if err := accs[0].Record(Withdrawn{Amount: 30}); err != nil {
			return err
		}
		if err := accs[1].Record(Deposited{Amount: 30}); err != nil {
			return err
		}
		return scope.Save(ctx, accs)
	})
	fmt.Println("transfer:", err)
	for _, id := range []string{alice, bob} {
		acc, _ := mire.Load[Account](ctx, store, id)
		fmt.Println(acc.State.Balance, "at version", acc.Version)
	}
	// Output:
	// transfer: <nil>
	// 70 at version 2
	// 130 at version 2
}

// Code that already runs in a transaction (a job worker, a unit of work)
// loads and saves aggregates in it through ScopeTx, so the events commit
// with its own rows.
func ExampleStore_ScopeTx() {
	ctx := context.Background()
	store := exampleStore()
	id := uuid.NewString()

	err := pgx.BeginFunc(ctx, store.Pool(), func(tx pgx.Tx) error {
		// ... the caller's own statements in tx ...
		scope, err := store.ScopeTx(tx)
		if err != nil {
			return err
		}
		acc, err := mire.LoadOrNew[Account](ctx, scope, id)
		if err != nil {
			return err
		}
		if err := acc.Record(Opened{Owner: "Carol", Initial: 5}); err != nil {
			return err
		}
		return scope.Save(ctx, acc)
	})
	fmt.Println("committed:", err)
	acc, err := mire.Load[Account](ctx, store, id)
	fmt.Println(acc.State.Owner, acc.State.Balance, err)
	// Output:
	// committed: <nil>
	// Carol 5 <nil>
}
