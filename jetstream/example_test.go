package jetstream_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/mire-go/mire/jetstream/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// examples gives each runnable example a fresh database (internal/mtest).
var examples mtest.Examples

// exampleSetup returns a store on a fresh database and a JetStream context
// with the stream ORDERS on subjects "orders.>" (on an embedded server, or
// NATS_URL's), and the function that closes the connection.
func exampleSetup(ctx context.Context) (*mire.Store, jetstream.JetStream, func()) {
	store, err := mire.New(examples.Database(ctx, true), nil)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := natstest.Start()
	if err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	_ = js.DeleteStream(ctx, "ORDERS")
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"},
		Duplicates: time.Minute}); err != nil {
		log.Fatal(err)
	}
	return store, js, func() { _ = js.DeleteStream(ctx, "ORDERS"); nc.Close(); srv.Stop() }
}

// Placed is the examples' event.
type Placed struct {
	mire.Event `mire:"entity=order,type=Placed"`
	Item       string `json:"item"`
}

func init() { mire.MustRegister(Placed{}) }

// A relay publishes the events of the category "order" and the messages
// of the default outbox to JetStream, each once, with the event's (or
// message's) id as Nats-Msg-Id.
func ExampleNewRelay() {
	ctx := context.Background()
	store, js, done := exampleSetup(ctx)
	defer done()
	if _, err := store.Append(ctx, "order-1", mire.NoStream, Placed{Item: "book"}); err != nil {
		log.Fatal(err)
	}
	if err := store.Enqueue(ctx, nil, mire.Message{Subject: "orders.welcome", Key: "ann", Payload: []byte("hello Ann")}); err != nil {
		log.Fatal(err)
	}
	relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: "ORDERS", SubjectPrefix: "orders",
		Categories: []string{"order", mire.OutboxDefault}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("duplicate window:", relay.CheckStream(ctx)) // a minute covers a republish

	if err := relay.CatchUp(ctx); err != nil { // a service calls relay.Run(ctx) instead
		log.Fatal(err)
	}
	st, err := relay.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("relay %s: %d published, lag %d\n", relay.Name(), st.Delivered, st.Lag)
	// Output:
	// duplicate window: <nil>
	// relay jetstream.ORDERS: 2 published, lag 0
}

// Another service consumes what the relay published through a durable
// consumer: events decoded through its registry, outbox messages rebuilt.
func ExampleConsume() {
	ctx := context.Background()
	store, js, done := exampleSetup(ctx)
	defer done()
	if _, err := store.Append(ctx, "order-2", mire.NoStream, Placed{Item: "lamp"}); err != nil {
		log.Fatal(err)
	}
	relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: "ORDERS", SubjectPrefix: "orders", Categories: []string{"order"}})
	if err != nil {
		log.Fatal(err)
	}
	if err := relay.CatchUp(ctx); err != nil {
		log.Fatal(err)
	}
	consumer, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "shipping", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		log.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	err = mjs.Consume(cctx, consumer, func(ctx context.Context, d mjs.Delivery) error {
		// d.ID is the message id: record it to handle a redelivery once.
		fmt.Printf("%s: %s v%d %#v\n", d.Subject, d.StreamID, d.Version, d.Data)
		stop()
		return nil
	}, nil)
	fmt.Println("consume:", err)
	// Output:
	// orders.order.Placed: order-2 v1 jetstream_test.Placed{Event:mire.Event{}, Item:"lamp"}
	// consume: <nil>
}
