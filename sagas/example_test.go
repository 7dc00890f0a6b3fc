package sagas_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/projections"
	"github.com/mire-go/mire/sagas"
)

// examples gives each runnable example a fresh database (internal/mtest).
var examples mtest.Examples

// exampleStore returns a store on a fresh, migrated database and a runner
// of def on it, running; stop stops the runner and drops the database.
func exampleStore(ctx context.Context, defs ...sagas.Saga) (*mire.Store, func()) {
	store, err := mire.New(examples.Database(ctx, true), nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.Append(ctx, "inventory-apple", mire.NoStream, Stocked{Qty: 5}); err != nil {
		log.Fatal(err)
	}
	runner, err := sagas.NewRunner(store, &sagas.Config{
		Projections:   &projections.Config{PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)},
		TimerInterval: 20 * time.Millisecond,
	}, defs...)
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = runner.Run(ctx) }()
	return store, func() {
		if err := runner.Stop(ctx); err != nil {
			log.Fatal(err)
		}
		examples.Drop()
	}
}

// waitFor polls instance id of saga until cond holds.
func waitFor(ctx context.Context, store *mire.Store, saga, id string, cond func(sagas.Instance) bool) sagas.Instance {
	for {
		root, err := sagas.Load(ctx, store, saga, id)
		if err == nil && cond(root.State) {
			return root.State
		}
		if err != nil && !errors.Is(err, mire.ErrNotFound) {
			log.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func printHistory(ctx context.Context, store *mire.Store, saga, id string) {
	for env, err := range store.ReadStream(ctx, mire.StreamID(sagas.Category, sagas.InstanceID(saga, id)), nil) {
		if err != nil {
			log.Fatal(err)
		}
		switch e := env.Data.(type) {
		case sagas.StepCompleted:
			fmt.Println(env.Version, env.Type, e.Step)
		case sagas.StepStarted:
			fmt.Println(env.Version, env.Type, e.Step, "attempt", e.Attempt)
		case sagas.StepFailed:
			fmt.Println(env.Version, env.Type, e.Step+":", e.Reason)
		case sagas.StepCompensated:
			fmt.Println(env.Version, env.Type, e.Step)
		case sagas.Ended:
			fmt.Println(env.Version, env.Type, e.Status)
		default:
			fmt.Println(env.Version, env.Type)
		}
	}
}

// A saga reserves stock (a command on the Inventory aggregate, in the
// saga's transaction), charges a payment service through the outbox, and
// confirms the order when the payment service answers.
func ExampleDefine() {
	ctx := context.Background()
	fulfilment, err := sagas.Define(sagas.Spec[Fulfilment]{
		Name:  "fulfilment",
		Start: sagas.StartOn(placed), // an OrderPlaced starts the instance of its order
		Steps: []sagas.Step[Fulfilment]{
			{Name: "reserve", Action: sagas.Command(reserve), Compensation: sagas.Command(release)},
			{Name: "charge", After: "reserve", Action: sagas.Send(charge), Compensation: sagas.Send(refund), Timeout: time.Minute},
			{Name: "confirm", After: "charge", Action: sagas.Command(confirm)},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	store, stop := exampleStore(ctx, fulfilment)
	defer stop()

	if _, err := store.Append(ctx, "order-o1", mire.NoStream, OrderPlaced{SKU: "apple", Qty: 2, Amount: 20}); err != nil {
		log.Fatal(err)
	}
	waitFor(ctx, store, "fulfilment", "o1", func(in sagas.Instance) bool { return in.Awaiting == "charge" })
	for msg, err := range store.ReadCategory(ctx, mire.OutboxDefault, nil) {
		if err != nil {
			log.Fatal(err)
		}
		m := msg.Data.(mire.Message)
		fmt.Println("outbox:", m.Subject, string(m.Payload), "key", m.Headers[sagas.HeaderKey])
	}

	// The payment service's answer, from a broker consumer or an HTTP handler.
	err = sagas.Deliver(ctx, store, "fulfilment", "o1", sagas.Response{Step: "charge", Key: "payment-7"})
	if err != nil {
		log.Fatal(err)
	}
	in := waitFor(ctx, store, "fulfilment", "o1", func(in sagas.Instance) bool { return in.Status.Terminal() })
	fmt.Println("instance o1:", in.Status, in.Done)
	printHistory(ctx, store, "fulfilment", "o1")
	// Output:
	// outbox: payments.charge {"order":"o1","amount":20} key fulfilment/o1/charge
	// instance o1: completed [reserve charge confirm]
	// 1 Started
	// 2 StepCompleted reserve
	// 3 StepStarted charge attempt 1
	// 4 Responded
	// 5 StepCompleted charge
	// 6 StepCompleted confirm
	// 7 Ended completed
}

// A step that fails (here a declined payment) compensates the steps
// completed before it, in reverse order, and the instance ends
// compensated with the reason.
func ExampleFail() {
	ctx := context.Background()
	store, stop := exampleStore(ctx, fulfilment(time.Minute, 0))
	defer stop()

	if _, err := store.Append(ctx, "order-o2", mire.NoStream, OrderPlaced{SKU: "apple", Qty: 2, Amount: 20}); err != nil {
		log.Fatal(err)
	}
	waitFor(ctx, store, "fulfilment", "o2", func(in sagas.Instance) bool { return in.Awaiting == "charge" })
	if err := sagas.Deliver(ctx, store, "fulfilment", "o2", sagas.Response{Step: "charge", Failure: "card declined"}); err != nil {
		log.Fatal(err)
	}
	in := waitFor(ctx, store, "fulfilment", "o2", func(in sagas.Instance) bool { return in.Status.Terminal() })
	fmt.Printf("instance o2: %s (%s), undone %v\n", in.Status, in.Reason, in.Undone)
	inv, err := mire.Load[Inventory](ctx, store, "apple")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("apple available:", inv.State.Available)

	// An out-of-stock reservation fails its step with sagas.Fail: nothing
	// before it to undo.
	if _, err := store.Append(ctx, "order-o3", mire.NoStream, OrderPlaced{SKU: "apple", Qty: 9, Amount: 90}); err != nil {
		log.Fatal(err)
	}
	in = waitFor(ctx, store, "fulfilment", "o3", func(in sagas.Instance) bool { return in.Status.Terminal() })
	fmt.Printf("instance o3: %s (%s)\n", in.Status, in.Reason)
	// Output:
	// instance o2: compensated (card declined), undone [reserve]
	// apple available: 5
	// instance o3: compensated (out of stock: 5 of apple available, 9 wanted)
}

// Deliver refuses a response that cannot apply, naming why, and
// recognises one delivered again with the same key.
func ExampleDeliver() {
	ctx := context.Background()
	store, stop := exampleStore(ctx, fulfilment(time.Minute, 0))
	defer stop()

	err := sagas.Deliver(ctx, store, "fulfilment", "o9", sagas.Response{Step: "charge"})
	fmt.Println(errors.Is(err, sagas.ErrUnknownInstance), err)

	if _, err := store.Append(ctx, "order-o4", mire.NoStream, OrderPlaced{SKU: "apple", Qty: 1, Amount: 10}); err != nil {
		log.Fatal(err)
	}
	waitFor(ctx, store, "fulfilment", "o4", func(in sagas.Instance) bool { return in.Awaiting == "charge" })
	err = sagas.Deliver(ctx, store, "fulfilment", "o4", sagas.Response{Step: "confirm"})
	fmt.Println(errors.Is(err, sagas.ErrNotAwaited), err)

	ok := sagas.Response{Step: "charge", Key: "payment-8"}
	fmt.Println(sagas.Deliver(ctx, store, "fulfilment", "o4", ok))
	waitFor(ctx, store, "fulfilment", "o4", func(in sagas.Instance) bool { return in.Status.Terminal() })
	fmt.Println(sagas.Deliver(ctx, store, "fulfilment", "o4", ok)) // the same response again

	err = sagas.Deliver(ctx, store, "fulfilment", "o4", sagas.Response{Step: "charge", Key: "payment-9"})
	fmt.Println(errors.Is(err, sagas.ErrFinished), err)
	// Output:
	// true sagas: deliver to saga "fulfilment" instance "o9" step "charge": sagas: unknown saga instance: saga "fulfilment" has no instance "o9"
	// true sagas: deliver to saga "fulfilment" instance "o4" step "confirm": sagas: step not awaited: saga "fulfilment" instance "o4" awaits "charge", not "confirm"
	// <nil>
	// <nil>
	// true sagas: deliver to saga "fulfilment" instance "o4" step "charge": sagas: saga instance has ended: saga "fulfilment" instance "o4" is completed
}

// List reads the instances of a saga by status, Count how many are in each.
func ExampleList() {
	ctx := context.Background()
	store, stop := exampleStore(ctx, fulfilment(time.Minute, 0))
	defer stop()

	for i, qty := range []int64{2, 9, 1} {
		order := fmt.Sprintf("o%d", i+1)
		if _, err := store.Append(ctx, "order-"+order, mire.NoStream, OrderPlaced{SKU: "apple", Qty: qty, Amount: 10 * qty}); err != nil {
			log.Fatal(err)
		}
		waitFor(ctx, store, "fulfilment", order, func(in sagas.Instance) bool { return in.Awaiting != "" || in.Status.Terminal() })
	}
	for {
		counts, err := sagas.Count(ctx, store, "fulfilment")
		if err != nil {
			log.Fatal(err)
		}
		if counts[sagas.Running]+counts[sagas.Compensated] == 3 {
			fmt.Println(counts)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	running, err := sagas.List(ctx, store, "fulfilment", &sagas.ListOpts{Status: sagas.Running})
	if err != nil {
		log.Fatal(err)
	}
	for _, in := range running {
		fmt.Println(in.ID, in.Status, "at", in.Step)
	}
	// Output:
	// map[compensated:1 running:2]
	// o1 running at charge
	// o3 running at charge
}

// A step's response can be an event of the other service's own streams,
// mapped to the instance it answers.
func ExampleListenFor() {
	ctx := context.Background()
	settled := sagas.ListenFor(func(e PaymentSettled, _ mire.Envelope) (string, sagas.Response, bool) {
		return e.Order, sagas.Response{Step: "charge", Failure: e.Declined}, true
	})
	store, stop := exampleStore(ctx, fulfilment(time.Minute, 0, settled))
	defer stop()

	if _, err := store.Append(ctx, "order-o5", mire.NoStream, OrderPlaced{SKU: "apple", Qty: 1, Amount: 10}); err != nil {
		log.Fatal(err)
	}
	waitFor(ctx, store, "fulfilment", "o5", func(in sagas.Instance) bool { return in.Awaiting == "charge" })
	if _, err := store.Append(ctx, "payment-p5", mire.NoStream, PaymentSettled{Order: "o5"}); err != nil {
		log.Fatal(err)
	}
	in := waitFor(ctx, store, "fulfilment", "o5", func(in sagas.Instance) bool { return in.Status.Terminal() })
	fmt.Println("instance o5:", in.Status, in.Done)
	// Output:
	// instance o5: completed [reserve charge confirm]
}

// An instance is an aggregate: Load gives its status, steps and version,
// StateOf its state, and the store its history.
func ExampleLoad() {
	ctx := context.Background()
	store, stop := exampleStore(ctx, fulfilment(time.Minute, 0))
	defer stop()

	if _, err := store.Append(ctx, "order-o6", mire.NoStream, OrderPlaced{SKU: "apple", Qty: 2, Amount: 20}); err != nil {
		log.Fatal(err)
	}
	waitFor(ctx, store, "fulfilment", "o6", func(in sagas.Instance) bool { return in.Awaiting == "charge" })

	root, err := sagas.Load(ctx, store, "fulfilment", "o6")
	if err != nil {
		log.Fatal(err)
	}
	state, err := sagas.StateOf[Fulfilment](&root.State)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s at version %d: %s, done %v, awaiting %s (attempt %d)\n",
		root.StreamID(), root.Version, root.State.Status, root.State.Done, root.State.Awaiting, root.State.Attempt)
	fmt.Printf("state: %+v\n", state)
	printHistory(ctx, store, "fulfilment", "o6")
	// Output:
	// saga-fulfilment:o6 at version 3: running, done [reserve], awaiting charge (attempt 1)
	// state: {Order:o6 SKU:apple Qty:2 Amount:20}
	// 1 Started
	// 2 StepCompleted reserve
	// 3 StepStarted charge attempt 1
}
