package mire_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

// examples gives each runnable example a fresh database (internal/mtest).
var examples mtest.Examples

// exampleStore returns a store on a fresh database with mire's schema.
func exampleStore() *mire.Store {
	store, err := mire.New(examples.Database(context.Background(), true), nil)
	if err != nil {
		log.Fatal(err)
	}
	return store
}

func TestMain(m *testing.M) {
	code := m.Run()
	examples.Close()
	os.Exit(code)
}

// A consumer appends one event per incoming message and may see the same
// message again after a crash. With the message id as the event id, the
// redelivery is recognised instead of stored twice.
func ExampleWithID() {
	ctx := context.Background()
	store := exampleStore()
	stream := "account-kim"
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
	alice, bob := "alice", "bob"
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

// A transfer that ends with SaveAndCommit sends its appends and COMMIT
// together: two round trips in all, BEGIN having gone with the locking
// load. A refused append commits nothing, not even the other account's.
func ExampleTxScope_SaveAndCommit() {
	ctx := context.Background()
	store := exampleStore()
	for _, id := range []string{"dana", "eli"} {
		acc, _ := mire.Create[Account](store, id)
		if err := acc.Record(Opened{Owner: id, Initial: 100}); err != nil {
			log.Fatal(err)
		}
		if err := store.Save(ctx, acc); err != nil {
			log.Fatal(err)
		}
	}
	transfer := func(scope *mire.TxScope, from *mire.Root[Account], to string, amount int64) error {
		dst, err := mire.LoadForUpdate[Account](ctx, scope, to)
		if err != nil {
			return err
		}
		if err := from.Record(Withdrawn{Amount: amount}); err != nil {
			return err
		}
		if err := dst.Record(Deposited{Amount: amount}); err != nil {
			return err
		}
		return scope.SaveAndCommit(ctx, from, dst)
	}

	err := store.InTx(ctx, nil, func(scope *mire.TxScope) error {
		src, err := mire.LoadForUpdate[Account](ctx, scope, "dana")
		if err != nil {
			return err
		}
		return transfer(scope, src, "eli", 30)
	})
	fmt.Println("transfer:", err)

	// A root loaded before another writer moved its stream is refused.
	stale, _ := mire.Load[Account](ctx, store, "dana")
	if _, err := store.Append(ctx, stale.StreamID(), mire.Exactly(stale.Version), Deposited{Amount: 1}); err != nil {
		log.Fatal(err)
	}
	err = store.InTx(ctx, nil, func(scope *mire.TxScope) error { return transfer(scope, stale, "eli", 10) })
	fmt.Println("stale transfer refused:", errors.Is(err, mire.ErrConcurrency))
	for _, id := range []string{"dana", "eli"} {
		acc, _ := mire.Load[Account](ctx, store, id)
		fmt.Println(id, acc.State.Balance, "at version", acc.Version)
	}
	// Output:
	// transfer: <nil>
	// stale transfer refused: true
	// dana 71 at version 3
	// eli 130 at version 2
}

// Code that already runs in a transaction (a job worker, a unit of work)
// loads and saves aggregates in it through ScopeTx, so the events commit
// with its own rows.
func ExampleStore_ScopeTx() {
	ctx := context.Background()
	store := exampleStore()
	id := "carol"

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

// The quickstart: load an account (new, at version 0), record what happened
// to it, save, and load it back from its stream.
func Example() {
	ctx := context.Background()
	store := exampleStore()

	acc, err := mire.LoadOrNew[Account](ctx, store, "alice")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(acc.StreamID(), "at version", acc.Version)
	if err := acc.Record(Opened{Owner: "Alice"}); err != nil { // validated, applied, queued
		log.Fatal(err)
	}
	if err := acc.Record(Deposited{Amount: 100}); err != nil {
		log.Fatal(err)
	}
	if err := store.Save(ctx, acc); err != nil {
		log.Fatal(err)
	}

	loaded, err := mire.Load[Account](ctx, store, "alice")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: owner %s, balance %d, version %d\n",
		loaded.StreamID(), loaded.State.Owner, loaded.State.Balance, loaded.Version)
	// Output:
	// account-alice at version 0
	// account-alice: owner Alice, balance 100, version 2
}

// A stream id is the aggregate's category and id, joined by a hyphen.
func ExampleStreamID() {
	fmt.Println(mire.StreamID("account", "alice"))
	// Output:
	// account-alice
}

// Create starts a new aggregate without reading the store. Its first save
// expects the stream not to exist, so a second Create under the same id
// cannot overwrite the first.
func ExampleCreate() {
	ctx := context.Background()
	store := exampleStore()

	for _, owner := range []string{"Bea", "Bea's twin"} {
		acc, err := mire.Create[Account](store, "bea")
		if err != nil {
			log.Fatal(err)
		}
		if err := acc.Record(Opened{Owner: owner}); err != nil {
			log.Fatal(err)
		}
		err = store.Save(ctx, acc)
		fmt.Println(owner+":", err)
	}
	// Output:
	// Bea: <nil>
	// Bea's twin: mire: concurrency conflict on stream "account-bea": expected version no stream, actual 1
}

// Load rebuilds an aggregate from its stream; a stream with no events is
// ErrNotFound.
func ExampleLoad() {
	ctx := context.Background()
	store := exampleStore()

	_, err := mire.Load[Account](ctx, store, "nobody")
	fmt.Println(errors.Is(err, mire.ErrNotFound))
	fmt.Println(err)
	// Output:
	// true
	// mire: load stream "account-nobody": mire: not found
}

// LoadOrNew is Load for commands that may come first: a missing stream is a
// new Root at version 0, and after the save the same call loads what was
// saved.
func ExampleLoadOrNew() {
	ctx := context.Background()
	store := exampleStore()

	for range 2 {
		acc, err := mire.LoadOrNew[Account](ctx, store, "dora")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("loaded at version", acc.Version, "with balance", acc.State.Balance)
		if acc.Version == 0 {
			if err := acc.Record(Opened{Owner: "Dora"}); err != nil {
				log.Fatal(err)
			}
		}
		if err := acc.Record(Deposited{Amount: 25}); err != nil {
			log.Fatal(err)
		}
		if err := store.Save(ctx, acc); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// loaded at version 0 with balance 0
	// loaded at version 2 with balance 25
}

// Two requests load the same account and both decide to withdraw. The first
// save wins; the second is a *ConcurrencyError and writes nothing, so its
// caller reloads and decides again on the new balance.
func ExampleStore_Save() {
	ctx := context.Background()
	store := exampleStore()
	if _, err := store.Append(ctx, "account-erin", mire.NoStream, Opened{Owner: "Erin", Initial: 50}); err != nil {
		log.Fatal(err)
	}

	first, _ := mire.Load[Account](ctx, store, "erin")
	second, _ := mire.Load[Account](ctx, store, "erin")
	if err := first.Record(Withdrawn{Amount: 40}); err != nil {
		log.Fatal(err)
	}
	if err := second.Record(Withdrawn{Amount: 30}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("first:", store.Save(ctx, first))
	err := store.Save(ctx, second)
	fmt.Println("second:", errors.Is(err, mire.ErrConcurrency))

	again, _ := mire.Load[Account](ctx, store, "erin")
	fmt.Println("balance now", again.State.Balance, "at version", again.Version)
	// Output:
	// first: <nil>
	// second: true
	// balance now 10 at version 2
}

// Append writes events without an aggregate, if the stream meets the
// expectation: NoStream, Exactly(n), StreamExists or Any. A stale
// expectation is a *ConcurrencyError with the versions involved.
func ExampleStore_Append() {
	ctx := context.Background()
	store := exampleStore()

	v, err := store.Append(ctx, "account-finn", mire.NoStream, Opened{Owner: "Finn"}, Deposited{Amount: 10})
	fmt.Println(v, err)
	v, err = store.Append(ctx, "account-finn", mire.Exactly(2), Deposited{Amount: 5})
	fmt.Println(v, err)

	_, err = store.Append(ctx, "account-finn", mire.Exactly(2), Withdrawn{Amount: 15})
	var conflict *mire.ConcurrencyError
	if errors.As(err, &conflict) {
		fmt.Println("expected", conflict.Expected, "actual", conflict.Actual)
	}
	fmt.Println(err)
	// Output:
	// 2 <nil>
	// 3 <nil>
	// expected 2 actual 3
	// mire: concurrency conflict on stream "account-finn": expected version 2, actual 3
}

// AppendTx writes events inside the caller's own transaction, so they
// commit with the caller's rows, or not at all. Call Notify after the
// commit to wake projection runners at once.
func ExampleStore_AppendTx() {
	ctx := context.Background()
	store := exampleStore()
	if _, err := store.Pool().Exec(ctx, `CREATE TABLE signups (email text PRIMARY KEY)`); err != nil {
		log.Fatal(err)
	}

	signUp := func(email, owner string) error {
		return pgx.BeginFunc(ctx, store.Pool(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO signups VALUES ($1)`, email); err != nil {
				return err // the address is taken: the event rolls back with the row
			}
			_, err := store.AppendTx(ctx, tx, mire.StreamID("account", owner), mire.NoStream, Opened{Owner: owner})
			return err
		})
	}
	fmt.Println("jo:", signUp("jo@example.com", "jo"))
	fmt.Println("jo's twin failed:", signUp("jo@example.com", "jo2") != nil)
	store.Notify()

	_, err := mire.Load[Account](ctx, store, "jo2")
	fmt.Println("jo2:", errors.Is(err, mire.ErrNotFound))
	// Output:
	// jo: <nil>
	// jo's twin failed: true
	// jo2: true
}

// ReadStream yields a stream's events in version order, each with its
// decoded value and the payload as stored. ReadOpts.After skips what the
// caller has already seen.
func ExampleStore_ReadStream() {
	ctx := context.Background()
	store := exampleStore()
	if _, err := store.Append(ctx, "account-gus", mire.NoStream,
		Opened{Owner: "Gus"}, Deposited{Amount: 70}, Withdrawn{Amount: 20}); err != nil {
		log.Fatal(err)
	}

	for env, err := range store.ReadStream(ctx, "account-gus", &mire.ReadOpts{After: 1}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("v%d %s %s %T\n", env.Version, env.Type, env.Raw, env.Data)
	}
	// Output:
	// v2 Deposited {"amount": 70} mire_test.Deposited
	// v3 Withdrawn {"amount": 20} mire_test.Withdrawn
}

// ReadCategory yields the events of every stream of a category, in the
// order they were stored.
func ExampleStore_ReadCategory() {
	ctx := context.Background()
	store := exampleStore()
	for _, write := range []struct{ stream, name string }{
		{"customer-1", "Ann"}, {"customer-2", "Bo"}, {"customer-1", "Anna"},
	} {
		if _, err := store.Append(ctx, write.stream, mire.Any, Renamed{Name: write.name}); err != nil {
			log.Fatal(err)
		}
	}

	for env, err := range store.ReadCategory(ctx, "customer", nil) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(env.StreamID, env.Version, env.Data.(Renamed).Name)
	}
	// Output:
	// customer-1 1 Ann
	// customer-2 1 Bo
	// customer-1 2 Anna
}

// WithMetadata puts who and why on a context; every event saved or
// appended with it carries that metadata, and every read gives it back.
func ExampleWithMetadata() {
	store := exampleStore()
	ctx := mire.WithMetadata(context.Background(), mire.Metadata{
		CorrelationID: "req-42",
		Actor:         "support:hana",
		Values:        map[string]string{"reason": "goodwill"},
	})
	if _, err := store.Append(ctx, "account-hana", mire.NoStream, Opened{Owner: "Hana", Initial: 5}); err != nil {
		log.Fatal(err)
	}

	for env, err := range store.ReadStream(context.Background(), "account-hana", nil) {
		if err != nil {
			log.Fatal(err)
		}
		md := env.Metadata
		fmt.Println(env.Type, md.CorrelationID, md.Actor, md.Values["reason"])
	}
	// Output:
	// Opened req-42 support:hana goodwill
}

// An event that fails its `validate` tags is refused with a
// *ValidationError naming each failing field; nothing is recorded.
func ExampleValidationError() {
	acc, err := mire.Create[Account](exampleStore(), "ivan")
	if err != nil {
		log.Fatal(err)
	}

	err = acc.Record(Opened{Owner: "", Initial: -1})
	var invalid *mire.ValidationError
	if errors.As(err, &invalid) {
		for _, f := range invalid.Fields {
			fmt.Printf("%s fails %s (value %#v)\n", f.Path, f.Tag, f.Value)
		}
	}
	fmt.Println(err)
	fmt.Println("pending:", len(acc.Pending()))
	// Output:
	// Opened.Owner fails required (value "")
	// Opened.Initial fails gte (value -1)
	// mire: record on stream "account-ivan": invalid mire_test.Opened event: field Opened.Owner =  fails "required", field Opened.Initial = -1 fails "gte=0"
	// pending: 0
}
