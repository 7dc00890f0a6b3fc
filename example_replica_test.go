package mire_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"

	"github.com/mire-go/mire"
)

// Update loads, decides and saves; a conflict (another writer, or a Root
// loaded from a lagging replica) makes it load again, from the primary,
// and decide again.
func ExampleUpdate() {
	ctx := context.Background()
	store := exampleStore()
	errInsufficient := errors.New("insufficient funds")
	withdraw := func(amount int64) func(*mire.Root[Account]) error {
		return func(acc *mire.Root[Account]) error {
			if acc.State.Balance < amount {
				return fmt.Errorf("withdraw %d from %d: %w", amount, acc.State.Balance, errInsufficient)
			}
			return acc.Record(Withdrawn{Amount: amount})
		}
	}
	if _, err := mire.Update[Account](ctx, store, "ann", func(acc *mire.Root[Account]) error {
		return acc.Record(Opened{Owner: "Ann", Initial: 100})
	}, nil); err != nil {
		log.Fatal(err)
	}
	acc, err := mire.Update[Account](ctx, store, "ann", withdraw(30), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("balance %d at version %d\n", acc.State.Balance, acc.Version)
	_, err = mire.Update[Account](ctx, store, "ann", withdraw(500), &mire.UpdateOpts{Attempts: 3})
	fmt.Println(err, errors.Is(err, errInsufficient))
	// Output:
	// balance 70 at version 2
	// withdraw 500 from 70: insufficient funds true
}

// A token travels as a string, in a cookie, a header or JSON; ParseToken
// refuses anything else.
func ExampleParseToken() {
	tok, err := mire.ParseToken("16/B374D848")
	fmt.Println(tok, err)
	b, _ := json.Marshal(map[string]mire.Token{"token": tok})
	fmt.Println(string(b))
	_, err = mire.ParseToken("16/B374D848; Path=/")
	fmt.Println(err)
	// Output:
	// 16/B374D848 <nil>
	// {"token":"16/B374D848"}
	// mire: parse token "16/B374D848; Path=/": want a WAL position such as 16/B374D848
}

// After a save, Token covers it; a load given the token in its context
// waits for the replica to replay past it (here the "replica" is the
// primary itself, which has nothing to replay), or reads from the primary.
func ExampleWithToken() {
	ctx := context.Background()
	pool := exampleStore().Pool()
	store, err := mire.New(pool, &mire.Config{Replica: pool}) // a real replica in production
	if err != nil {
		log.Fatal(err)
	}
	acc, _ := mire.Create[Account](store, "bo")
	if err := acc.Record(Opened{Owner: "Bo", Initial: 10}); err != nil {
		log.Fatal(err)
	}
	if err := store.Save(ctx, acc); err != nil {
		log.Fatal(err)
	}
	tok, err := store.Token(ctx)
	if err != nil {
		log.Fatal(err)
	}
	header := tok.String() // to the client, and back with its next request

	parsed, err := mire.ParseToken(header)
	if err != nil {
		log.Fatal(err)
	}
	loaded, err := mire.Load[Account](mire.WithToken(ctx, parsed), store, "bo")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("balance %d at version %d\n", loaded.State.Balance, loaded.Version)
	// Output:
	// balance 10 at version 1
}

// A decision that must see every commit loads from the primary, whatever
// the store's replica has replayed.
func ExampleWithPrimary() {
	ctx := context.Background()
	pool := exampleStore().Pool()
	store, err := mire.New(pool, &mire.Config{Replica: pool}) // a real replica in production
	if err != nil {
		log.Fatal(err)
	}
	acc, _ := mire.Create[Account](store, "cy")
	if err := acc.Record(Opened{Owner: "Cy", Initial: 5}); err != nil {
		log.Fatal(err)
	}
	if err := store.Save(ctx, acc); err != nil {
		log.Fatal(err)
	}
	latest, err := mire.Load[Account](mire.WithPrimary(ctx), store, "cy")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("balance %d at version %d\n", latest.State.Balance, latest.Version)
	// Output:
	// balance 5 at version 1
}
