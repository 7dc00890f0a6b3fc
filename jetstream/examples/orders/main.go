// Command orders shows two services talking through NATS JetStream. The
// order service saves orders; a transactional projection of its orders
// enqueues an "order placed" message in the outbox in the same transaction
// as its read model; a relay publishes the outbox to JetStream, each
// message once. The shipping service (a goroutine here, a process of its
// own in life) consumes the messages from a durable consumer and prints
// them.
//
// It starts a throwaway Postgres unless DATABASE_URL is set, and an
// embedded NATS server with JetStream (file storage in a temporary
// directory) unless NATS_URL is set:
//
//	go run ./examples/orders   # in the jetstream module
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/mire-go/mire/jetstream/natstest"
	"github.com/mire-go/mire/pgtest"
	"github.com/mire-go/mire/projections"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Placed is the order service's event.
type Placed struct {
	mire.Event `mire:"entity=order,type=Placed"`
	Customer   string `json:"customer" validate:"required"`
	Item       string `json:"item" validate:"required"`
	Quantity   int    `json:"quantity" validate:"gt=0"`
}

func init() { mire.MustRegister(Placed{}) }

// Order is the order aggregate.
type Order struct{ Placed bool }

// Category implements mire.Aggregate.
func (*Order) Category() string { return "order" }

// Apply implements mire.Aggregate.
func (o *Order) Apply(event any) {
	if _, ok := event.(Placed); ok {
		o.Placed = true
	}
}

// OrderPlaced is the message other services receive: the order service's
// public contract, not its event.
type OrderPlaced struct {
	Order    string `json:"order"`
	Customer string `json:"customer"`
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
}

// orders keeps the read model of orders per customer and, in the same
// transaction, enqueues an OrderPlaced message for each order: the message
// is recorded exactly once with the read model's change.
func orders(store *mire.Store) projections.Projection {
	return projections.Projection{
		Name:       "orders",
		Categories: []string{"order"},
		Handler: projections.Routes(projections.On(func(ctx context.Context, tx pgx.Tx, e Placed, env mire.Envelope) error {
			if _, err := tx.Exec(ctx, `INSERT INTO customer_orders (customer, orders) VALUES ($1, 1)
				ON CONFLICT (customer) DO UPDATE SET orders = customer_orders.orders + 1`, e.Customer); err != nil {
				return err
			}
			payload, err := json.Marshal(OrderPlaced{Order: env.AggregateID(), Customer: e.Customer, Item: e.Item, Quantity: e.Quantity})
			if err != nil {
				return err
			}
			return store.EnqueueTx(ctx, tx, nil, mire.Message{
				ID:      uuid.NewSHA1(env.ID, []byte("order-placed")), // stable across redeliveries
				Subject: "shop.orders.placed",
				Key:     e.Customer, // one customer's messages in order
				Headers: map[string]string{"Content-Type": "application/json"},
				Payload: payload,
			})
		})),
	}
}

// stream is the example's JetStream stream.
const stream = "MIRE_EXAMPLE_SHOP"

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	dbURL, stopDB, err := pgtest.ForExample(ctx)
	if err != nil {
		return err
	}
	defer stopDB()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	quiet := slog.New(slog.DiscardHandler)
	store, err := mire.New(pool, &mire.Config{Logger: quiet})
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS customer_orders (customer text PRIMARY KEY, orders int NOT NULL)`); err != nil {
		return err
	}

	srv, err := natstest.Start()
	if err != nil {
		return err
	}
	defer srv.Stop()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// The stream keeps message ids for two minutes: a relay that crashes
	// publishes its last batch again well within it, and JetStream drops
	// the copies. (The example starts from an empty stream, also on a
	// server NATS_URL names.)
	_ = js.DeleteStream(ctx, stream)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"shop.>"},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
		return err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), stream) }()

	// The order service: its projection and its relay, in one runner
	// each, as every replica of the service runs them.
	runner, err := projections.NewRunner(store, &projections.Config{Logger: quiet}, orders(store))
	if err != nil {
		return err
	}
	relay, err := mjs.NewRelay(store, js, &mjs.Config{Name: "shop-relay", Stream: stream, Categories: []string{mire.OutboxDefault},
		Runner: &projections.Config{Logger: quiet}})
	if err != nil {
		return err
	}
	svc, stopSvc := context.WithCancel(ctx)
	defer stopSvc()
	go func() { _ = runner.Run(svc) }()
	go func() { _ = relay.Run(svc) }()
	defer func() { stopSvc(); _ = runner.Stop(ctx); _ = relay.Stop(ctx) }()

	// The shipping service: a durable consumer of the placed orders.
	consumer, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "shipping",
		FilterSubject: "shop.orders.placed", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return err
	}
	received := make(chan string)
	shipping, stopShipping := context.WithCancel(ctx)
	defer stopShipping()
	go func() {
		_ = mjs.Consume(shipping, consumer, func(ctx context.Context, d mjs.Delivery) error {
			m := d.Data.(mire.Message) // an outbox message, rebuilt
			var o OrderPlaced
			if err := json.Unmarshal(m.Payload, &o); err != nil {
				return err
			}
			received <- fmt.Sprintf("shipping: %s on %s: %d x %s for %s (key %s, #%d)", d.Subject, d.Msg.Headers().Get("Content-Type"),
				o.Quantity, o.Item, o.Customer, m.Key, d.Version)
			return nil
		}, &mjs.ConsumeOpts{Logger: quiet})
	}()

	// The order service takes three orders.
	for i, p := range []Placed{{Customer: "ann", Item: "book", Quantity: 2}, {Customer: "ann", Item: "lamp", Quantity: 1},
		{Customer: "ann", Item: "pen", Quantity: 5}} {
		order, err := mire.Create[Order](store, fmt.Sprintf("o%d", i+1))
		if err != nil {
			return err
		}
		if err := order.Record(p); err != nil {
			return err
		}
		if err := store.Save(ctx, order); err != nil {
			return err
		}
		fmt.Printf("orders: placed %s: %d x %s for %s\n", order.StreamID(), p.Quantity, p.Item, p.Customer)
	}
	timeout := time.After(time.Minute)
	for range 3 {
		select {
		case line := <-received:
			fmt.Println(line)
		case <-timeout:
			return fmt.Errorf("the shipping service did not receive three orders within a minute")
		}
	}
	stopShipping()
	var n int
	if err := pool.QueryRow(ctx, `SELECT orders FROM customer_orders WHERE customer = 'ann'`).Scan(&n); err != nil {
		return err
	}
	// The relay checkpoints just after JetStream's acks: wait for it.
	var st projections.Status
	for st, err = relay.Status(ctx); err == nil && st.Lag > 0; st, err = relay.Status(ctx) {
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	fmt.Printf("orders: read model: ann has %d orders; relay %s published %d messages, lag %d\n", n, relay.Name(), st.Delivered, st.Lag)
	return nil
}
