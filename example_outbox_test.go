package mire_test

import (
	"context"
	"fmt"
	"log"

	"github.com/google/uuid"
	"github.com/mire-go/mire"
)

// A command records an event and the message that tells other services
// about it in one transaction: both are stored, or neither. A relay (module
// github.com/mire-go/mire/jetstream) later hands the message to the broker.
func ExampleStore_EnqueueTx() {
	ctx := context.Background()
	store := exampleStore()
	err := store.InTx(ctx, nil, func(scope *mire.TxScope) error {
		if _, err := store.AppendTx(ctx, scope.Tx(), "account-ann", mire.NoStream, Opened{Owner: "Ann"}); err != nil {
			return err
		}
		return store.EnqueueTx(ctx, scope.Tx(), nil, mire.Message{
			ID:      uuid.NewSHA1(uuid.NameSpaceURL, []byte("account-ann/opened")), // stable: a retry is recognised
			Subject: "accounts.opened",
			Key:     "ann", // messages with one key are relayed in order
			Headers: map[string]string{"Content-Type": "text/plain"},
			Payload: []byte("Ann opened an account"),
		})
	})
	if err != nil {
		log.Fatal(err)
	}
	for env, err := range store.ReadCategory(ctx, mire.OutboxDefault, nil) {
		if err != nil {
			log.Fatal(err)
		}
		m := env.Data.(mire.Message)
		fmt.Printf("%s v%d %s: %s %q %s\n", env.StreamID, env.Version, env.Type, m.Subject, m.Payload, m.Headers["Content-Type"])
	}
	// Output:
	// outbox-ann v1 $message: accounts.opened "Ann opened an account" text/plain
}

// A service that receives events from a broker, not from the store,
// decodes them through its registry, older schema versions included.
func ExampleRegistry_Decode() {
	env := mire.Envelope{StreamID: "account-bo", Category: "account", Version: 2, Type: "Deposited",
		SchemaVersion: 1, Raw: []byte(`{"amount": 25}`)}
	if err := mire.DefaultRegistry().Decode(&env); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%#v\n", env.Data.(Deposited).Amount)
	env.Type = "Refunded"
	fmt.Println(mire.DefaultRegistry().Decode(&env))
	// Output:
	// 25
	// mire: cannot decode event at position 0 (stream "account-bo" version 2, type "Refunded", stored schema version 1, target version 0): mire: event type not registered: entity "account" type "Refunded"
}
