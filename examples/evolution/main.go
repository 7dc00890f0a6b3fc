// Command evolution shows an event whose shape changed: Shipped gained a
// field (carrier) and renamed another (addr became address), and the type
// itself was once called Dispatched. History written by the old code (here
// with plain SQL, as that code would have stored it) and events written
// today load into the same struct. It starts a throwaway Postgres unless
// DATABASE_URL is set.
//
//	go run ./examples/evolution
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
)

// Shipped is at schema version 2. Version 1 stored {"addr": "..."}; version
// 2 renamed addr to address and added carrier. Events stored under the old
// type name Dispatched load as Shipped too (the alias tag key).
type Shipped struct {
	mire.Event `mire:"entity=parcel,type=Shipped,version=2,alias=Dispatched"`
	Address    string `json:"address" validate:"required"`
	Carrier    string `json:"carrier" validate:"required"`
}

// shippedV1toV2 upcasts a version 1 payload: it renames addr and fills in
// the carrier every parcel went by before carriers were recorded.
func shippedV1toV2(p map[string]any) (map[string]any, error) {
	addr, ok := p["addr"].(string)
	if !ok {
		return nil, fmt.Errorf("addr is %T, want a string", p["addr"])
	}
	delete(p, "addr")
	p["address"] = addr
	p["carrier"] = "post"
	return p, nil
}

func init() {
	mire.MustRegister(Shipped{})
	mire.MustRegisterUpcaster("parcel", "Shipped", 1, shippedV1toV2)
}

// Parcel is the aggregate: where it went, and with whom.
type Parcel struct {
	Legs []string
}

func (*Parcel) Category() string { return "parcel" }

func (p *Parcel) Apply(event any) {
	if e, ok := event.(Shipped); ok {
		p.Legs = append(p.Legs, e.Address+" by "+e.Carrier)
	}
}

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	// Check at boot that every upcaster chain reaches its type's version.
	if err := mire.DefaultRegistry().Check(); err != nil {
		return err
	}
	dbURL, stop, err := pgtest.ForExample(ctx)
	if err != nil {
		return err
	}
	defer stop()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	mire.ConfigurePool(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := mire.New(pool, nil)
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return err
	}

	// The old code's history: two version 1 events, one under the old name.
	_, err = pool.Exec(ctx, `
INSERT INTO mire.streams (stream_id, category, version) VALUES ('parcel-p1', 'parcel', 2);
INSERT INTO mire.events (stream_id, version, category, event_id, type, schema_version, data) VALUES
  ('parcel-p1', 1, 'parcel', gen_random_uuid(), 'Dispatched', 1, '{"addr": "1 Old Road"}'),
  ('parcel-p1', 2, 'parcel', gen_random_uuid(), 'Shipped', 1, '{"addr": "2 Mid Street"}')`)
	if err != nil {
		return fmt.Errorf("write old history: %w", err)
	}

	// Today's code loads that history and adds to it at version 2.
	parcel, err := mire.Load[Parcel](ctx, store, "p1")
	if err != nil {
		return err
	}
	if err := parcel.Record(Shipped{Address: "3 New Lane", Carrier: "courier"}); err != nil {
		return err
	}
	if err := store.Save(ctx, parcel); err != nil {
		return err
	}

	loaded, err := mire.Load[Parcel](ctx, store, "p1")
	if err != nil {
		return err
	}
	fmt.Printf("%s at version %d:\n", loaded.StreamID(), loaded.Version)
	for _, leg := range loaded.State.Legs {
		fmt.Println("  " + leg)
	}

	fmt.Println("as stored, and as read:")
	for env, err := range store.ReadStream(ctx, loaded.StreamID(), nil) {
		if err != nil {
			return err
		}
		s := env.Data.(Shipped)
		fmt.Printf("  v%d %-10s schema %d  %-46s -> Shipped{Address: %q, Carrier: %q}\n",
			env.Version, env.Type, env.SchemaVersion, env.Raw, s.Address, s.Carrier)
	}
	return nil
}
