package mire_test

import (
	"context"
	"fmt"
	"log"

	"github.com/mire-go/mire"
)

// The registry examples play two generations of one program: the old code
// and today's, each with a registry of its own (mire.NewRegistry), writing
// and reading the same database. Their events are of entities ("parcel",
// "letter") that no other example uses.

// ShippedV1 is how the old code stored Shipped: version 1, {"addr": "..."}.
type ShippedV1 struct {
	mire.Event `mire:"entity=parcel,type=Shipped,version=1"`
	Addr       string `json:"addr"`
}

// Shipped is today's version 2: addr renamed to address, carrier added.
type Shipped struct {
	mire.Event `mire:"entity=parcel,type=Shipped,version=2"`
	Address    string `json:"address" validate:"required"`
	Carrier    string `json:"carrier" validate:"required"`
}

// Posted is a letter's event as the old code named it; today it is Sent.
type Posted struct {
	mire.Event `mire:"entity=letter,type=Posted"`
	To         string `json:"to"`
}

// Sent is today's name of Posted, with the same payload.
type Sent struct {
	mire.Event `mire:"entity=letter,type=Sent"`
	To         string `json:"to"`
}

// Delivered is a version 3 event whose chain of upcasters was never
// finished.
type Delivered struct {
	mire.Event `mire:"entity=parcel,type=Delivered,version=3"`
	SignedBy   string `json:"signed_by"`
}

// storeWith returns a store on base's database with registry r.
func storeWith(base *mire.Store, r *mire.Registry) *mire.Store {
	store, err := mire.New(base.Pool(), &mire.Config{Registry: r})
	if err != nil {
		log.Fatal(err)
	}
	return store
}

// An upcaster brings a payload stored at an older schema version up to the
// current one, as a map, before it is decoded into today's struct. Here the
// old code stored version 1 of Shipped; today's code reads it as version 2.
func ExampleRegistry_RegisterUpcaster() {
	ctx := context.Background()
	base := exampleStore() // the database both generations share
	old := mire.NewRegistry()
	old.MustRegister(ShippedV1{})
	if _, err := storeWith(base, old).Append(ctx, "parcel-p1", mire.NoStream, ShippedV1{Addr: "1 Old Road"}); err != nil {
		log.Fatal(err)
	}

	today := mire.NewRegistry()
	today.MustRegister(Shipped{})
	err := today.RegisterUpcaster("parcel", "Shipped", 1, func(p map[string]any) (map[string]any, error) {
		p["address"], p["carrier"] = p["addr"], "post" // every parcel went by post then
		delete(p, "addr")
		return p, nil
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := today.Check(); err != nil { // at boot: every chain reaches its version
		log.Fatal(err)
	}
	store := storeWith(base, today)
	if _, err := store.Append(ctx, "parcel-p1", mire.Exactly(1), Shipped{Address: "2 New Lane", Carrier: "courier"}); err != nil {
		log.Fatal(err)
	}

	for env, err := range store.ReadStream(ctx, "parcel-p1", nil) {
		if err != nil {
			log.Fatal(err)
		}
		s := env.Data.(Shipped)
		fmt.Printf("v%d stored at schema %d: %s -> %s by %s\n", env.Version, env.SchemaVersion, env.Raw, s.Address, s.Carrier)
	}
	// Output:
	// v1 stored at schema 1: {"addr": "1 Old Road"} -> 1 Old Road by post
	// v2 stored at schema 2: {"address": "2 New Lane", "carrier": "courier"} -> 2 New Lane by courier
}

// An alias loads history stored under an old type name as today's type.
// The `alias` tag key (alias=Posted) does the same at registration.
func ExampleRegistry_RegisterAlias() {
	ctx := context.Background()
	base := exampleStore() // the database both generations share
	old := mire.NewRegistry()
	old.MustRegister(Posted{})
	if _, err := storeWith(base, old).Append(ctx, "letter-l1", mire.NoStream, Posted{To: "Lyon"}); err != nil {
		log.Fatal(err)
	}

	today := mire.NewRegistry()
	today.MustRegister(Sent{})
	if err := today.RegisterAlias("letter", "Posted", Sent{}); err != nil {
		log.Fatal(err)
	}
	store := storeWith(base, today)
	if _, err := store.Append(ctx, "letter-l1", mire.Exactly(1), Sent{To: "Oslo"}); err != nil {
		log.Fatal(err)
	}

	for env, err := range store.ReadStream(ctx, "letter-l1", nil) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("stored as %s, read as %T to %s\n", env.Type, env.Data, env.Data.(Sent).To)
	}
	// Output:
	// stored as Posted, read as mire_test.Sent to Lyon
	// stored as Sent, read as mire_test.Sent to Oslo
}

// Check, called once every type and upcaster is registered, reports a type
// whose chain of upcasters stops short of its current version.
func ExampleRegistry_Check() {
	r := mire.NewRegistry()
	r.MustRegister(Delivered{})
	rename := func(p map[string]any) (map[string]any, error) {
		p["signed_by"] = p["signature"]
		delete(p, "signature")
		return p, nil
	}
	if err := r.RegisterUpcaster("parcel", "Delivered", 1, rename); err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Check()) // no step from version 2 to 3
	// Output:
	// mire: cannot register mire_test.Delivered: entity "parcel" type "Delivered" is at version 3 but its upcasters stop at version 2
}
