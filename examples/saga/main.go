// Command saga runs an order fulfilment saga: an OrderPlaced reserves
// stock (a command on an Inventory aggregate, in the saga's transaction),
// charges a payment service (another service, simulated here, reached
// through the outbox, answering through sagas.Deliver), and confirms the
// order. The payment service pays, declines, or never answers (the charge
// times out, is sent again, times out again); a decline or a timeout
// releases the stock and cancels the order. It prints each saga's path. It
// starts a throwaway Postgres unless DATABASE_URL is set.
//
//	go run ./examples/saga
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
	"github.com/mire-go/mire/projections"
	"github.com/mire-go/mire/sagas"
)

// The order service's events.
type (
	OrderPlaced struct {
		mire.Event `mire:"entity=order,type=OrderPlaced"`
		SKU        string `json:"sku" validate:"required"`
		Qty        int64  `json:"qty" validate:"gt=0"`
		Amount     int64  `json:"amount" validate:"gt=0"`
		Card       string `json:"card" validate:"required"`
	}
	OrderConfirmed struct {
		mire.Event `mire:"entity=order,type=OrderConfirmed"`
		Amount     int64 `json:"amount"`
	}
	OrderCancelled struct {
		mire.Event `mire:"entity=order,type=OrderCancelled"`
		Reason     string `json:"reason"`
	}
	Stocked struct {
		mire.Event `mire:"entity=inventory,type=Stocked"`
		Qty        int64 `json:"qty" validate:"gt=0"`
	}
	Reserved struct {
		mire.Event `mire:"entity=inventory,type=Reserved"`
		Order      string `json:"order"`
		Qty        int64  `json:"qty"`
	}
	Released struct {
		mire.Event `mire:"entity=inventory,type=Released"`
		Order      string `json:"order"`
		Qty        int64  `json:"qty"`
	}
)

func init() {
	mire.MustRegister(OrderPlaced{}, OrderConfirmed{}, OrderCancelled{}, Stocked{}, Reserved{}, Released{})
}

// Order is the order aggregate.
type Order struct{ Status string }

func (*Order) Category() string { return "order" }
func (o *Order) Apply(event any) {
	switch event.(type) {
	case OrderPlaced:
		o.Status = "placed"
	case OrderConfirmed:
		o.Status = "confirmed"
	case OrderCancelled:
		o.Status = "cancelled"
	}
}

// Inventory is the stock of one item.
type Inventory struct{ Available, Reserved int64 }

func (*Inventory) Category() string { return "inventory" }
func (i *Inventory) Apply(event any) {
	switch e := event.(type) {
	case Stocked:
		i.Available += e.Qty
	case Reserved:
		i.Available, i.Reserved = i.Available-e.Qty, i.Reserved+e.Qty
	case Released:
		i.Available, i.Reserved = i.Available+e.Qty, i.Reserved-e.Qty
	}
}

// Fulfilment is the saga's state.
type Fulfilment struct {
	Order  string `json:"order"`
	SKU    string `json:"sku"`
	Qty    int64  `json:"qty"`
	Amount int64  `json:"amount"`
	Card   string `json:"card"`
}

// Charge is the payment service's message (charge or refund).
type Charge struct {
	Order  string `json:"order"`
	Amount int64  `json:"amount"`
	Card   string `json:"card"`
}

// The timeout of a charge, sent twice (one retry) before it fails.
const chargeTimeout = 500 * time.Millisecond

var fulfilment = sagas.MustDefine(sagas.Spec[Fulfilment]{
	Name: "fulfilment",
	Start: sagas.StartOn(func(e OrderPlaced, env mire.Envelope) (string, Fulfilment, bool) {
		id := env.AggregateID()
		return id, Fulfilment{Order: id, SKU: e.SKU, Qty: e.Qty, Amount: e.Amount, Card: e.Card}, true
	}),
	Steps: []sagas.Step[Fulfilment]{
		{Name: "reserve", Action: sagas.Command(reserve), Compensation: sagas.Command(release)},
		{Name: "charge", After: "reserve", Action: sagas.Send(charge("payments.charge")),
			Compensation: sagas.Send(charge("payments.refund")), Timeout: chargeTimeout, Retries: 1},
		{Name: "confirm", After: "charge", Action: sagas.Command(confirm)},
	},
})

// reserve takes the order's quantity from stock, or fails the step.
func reserve(ctx context.Context, scope *mire.TxScope, x *sagas.Exec[Fulfilment]) error {
	inv, err := mire.LoadForUpdate[Inventory](ctx, scope, x.State.SKU)
	if err != nil {
		return err
	}
	if inv.State.Available < x.State.Qty {
		return sagas.Fail(fmt.Sprintf("out of stock: %d %s available, %d wanted", inv.State.Available, x.State.SKU, x.State.Qty))
	}
	if err := inv.Record(Reserved{Order: x.State.Order, Qty: x.State.Qty}); err != nil {
		return err
	}
	return scope.Save(ctx, inv)
}

// release puts the reservation back and cancels the order.
func release(ctx context.Context, scope *mire.TxScope, x *sagas.Exec[Fulfilment]) error {
	inv, err := mire.LoadForUpdate[Inventory](ctx, scope, x.State.SKU)
	if err != nil {
		return err
	}
	order, err := mire.LoadForUpdate[Order](ctx, scope, x.State.Order)
	if err != nil {
		return err
	}
	if err := inv.Record(Released{Order: x.State.Order, Qty: x.State.Qty}); err != nil {
		return err
	}
	if err := order.Record(OrderCancelled{Reason: "not fulfilled"}); err != nil {
		return err
	}
	if err := scope.Save(ctx, inv); err != nil {
		return err
	}
	return scope.Save(ctx, order)
}

func confirm(ctx context.Context, scope *mire.TxScope, x *sagas.Exec[Fulfilment]) error {
	order, err := mire.LoadForUpdate[Order](ctx, scope, x.State.Order)
	if err != nil {
		return err
	}
	if err := order.Record(OrderConfirmed{Amount: x.State.Amount}); err != nil {
		return err
	}
	return scope.Save(ctx, order)
}

// charge returns the action that sends a message of subject to the
// payment service.
func charge(subject string) func(context.Context, *sagas.Exec[Fulfilment]) (mire.Message, error) {
	return func(_ context.Context, x *sagas.Exec[Fulfilment]) (mire.Message, error) {
		payload, err := json.Marshal(Charge{Order: x.State.Order, Amount: x.State.Amount, Card: x.State.Card})
		return mire.Message{Subject: subject, Key: x.State.Order, Payload: payload}, err
	}
}

// paymentService is the other service, simulated: it reads the outbox (as
// it would read a broker fed by a relay), charges and refunds once per
// idempotency key in its own table, and answers charges through Deliver.
// The card decides: "ok" pays, "declined" declines, "silent" never
// answers.
func paymentService(store *mire.Store) projections.Projection {
	return projections.Projection{Name: "payment-service", Categories: []string{mire.OutboxDefault}, Handler: projections.HandlerFunc(
		func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
			m := env.Data.(mire.Message)
			var c Charge
			if err := json.Unmarshal(m.Payload, &c); err != nil {
				return err
			}
			key := m.Headers[sagas.HeaderKey]
			if m.Subject == "payments.refund" {
				_, err := tx.Exec(ctx, `INSERT INTO payments (key, kind, order_id, amount) SELECT $1, 'refund', $2, amount
					FROM payments WHERE key = $3 ON CONFLICT DO NOTHING`, key, c.Order, strings.TrimSuffix(key, "/compensate"))
				return err
			}
			r := sagas.Response{Step: m.Headers[sagas.HeaderStep], Key: key}
			switch c.Card {
			case "silent":
				return nil
			case "declined":
				r.Failure = "card declined"
			default:
				if _, err := tx.Exec(ctx, `INSERT INTO payments (key, kind, order_id, amount) VALUES ($1, 'charge', $2, $3)
					ON CONFLICT DO NOTHING`, key, c.Order, c.Amount); err != nil {
					return err
				}
			}
			// Outside tx: at least once; Deliver recognises a repeat by r.Key.
			err := sagas.Deliver(ctx, store, m.Headers[sagas.HeaderSaga], m.Headers[sagas.HeaderInstance], r)
			if errors.Is(err, sagas.ErrFinished) || errors.Is(err, sagas.ErrNotAwaited) {
				return nil // reported, not applied
			}
			return err
		})}
}

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	dbURL, stop, err := pgtest.ForExample(ctx)
	if err != nil {
		return err
	}
	defer stop()
	pool, err := pgxpool.New(ctx, dbURL)
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
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS payments (
		key text PRIMARY KEY, kind text NOT NULL, order_id text NOT NULL, amount bigint NOT NULL)`); err != nil {
		return err
	}
	quiet := &projections.Config{PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}

	// In every replica: the saga runner. Here, also the payment service.
	runner, err := sagas.NewRunner(store, &sagas.Config{Projections: quiet, TimerInterval: 50 * time.Millisecond}, fulfilment)
	if err != nil {
		return err
	}
	payments, err := projections.NewRunner(store, quiet, paymentService(store))
	if err != nil {
		return err
	}
	go func() { _ = runner.Run(ctx) }()
	go func() { _ = payments.Run(ctx) }()
	defer func() { _ = payments.Stop(ctx); _ = runner.Stop(ctx) }()

	for sku, qty := range map[string]int64{"apple": 5, "pear": 3} {
		if _, err := store.Append(ctx, mire.StreamID("inventory", sku), mire.NoStream, Stocked{Qty: qty}); err != nil {
			return err
		}
	}
	orders := []OrderPlaced{
		{SKU: "apple", Qty: 2, Amount: 20, Card: "ok"},
		{SKU: "apple", Qty: 1, Amount: 10, Card: "declined"},
		{SKU: "pear", Qty: 1, Amount: 15, Card: "silent"},
	}
	for i, o := range orders {
		if _, err := store.Append(ctx, fmt.Sprintf("order-o%d", i+1), mire.NoStream, o); err != nil {
			return err
		}
	}

	for ended := 0; ended < len(orders); {
		time.Sleep(50 * time.Millisecond)
		counts, err := sagas.Count(ctx, store, "fulfilment")
		if err != nil {
			return err
		}
		ended = counts[sagas.Completed] + counts[sagas.Compensated] + counts[sagas.Failed]
	}
	for { // the payment service has handled every message (refunds too)
		st, err := payments.Status(ctx, "payment-service")
		if err != nil {
			return err
		}
		if st.Lag == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range orders {
		if err := printPath(ctx, store, fmt.Sprintf("o%d", i+1)); err != nil {
			return err
		}
	}
	for _, sku := range []string{"apple", "pear"} {
		inv, err := mire.Load[Inventory](ctx, store, sku)
		if err != nil {
			return err
		}
		fmt.Printf("stock of %s: %d available, %d reserved\n", sku, inv.State.Available, inv.State.Reserved)
	}
	rows, err := pool.Query(ctx, `SELECT kind, order_id, amount, key FROM payments ORDER BY key`)
	if err != nil {
		return err
	}
	var kind, order, key string
	var amount int64
	_, err = pgx.ForEachRow(rows, []any{&kind, &order, &amount, &key}, func() error {
		fmt.Printf("payment service: %s of %d for %s (key %s)\n", kind, amount, order, key)
		return nil
	})
	return err
}

// printPath prints the path of order's saga, from its history.
func printPath(ctx context.Context, store *mire.Store, order string) error {
	var path []string
	var end string
	for env, err := range store.ReadStream(ctx, mire.StreamID(sagas.Category, sagas.InstanceID("fulfilment", order)), nil) {
		if err != nil {
			return err
		}
		switch e := env.Data.(type) {
		case sagas.StepCompleted:
			path = append(path, e.Step)
		case sagas.StepStarted:
			path = append(path, fmt.Sprintf("%s sent (attempt %d)", e.Step, e.Attempt))
		case sagas.TimedOut:
			path = append(path, "timed out")
		case sagas.StepFailed:
			path = append(path, e.Step+" failed")
		case sagas.StepCompensated:
			path = append(path, "undo "+e.Step)
		case sagas.Ended:
			path = append(path, strings.ToUpper(string(e.Status)))
			if e.Reason != "" {
				end = ": " + e.Reason
			}
		}
	}
	o, err := mire.Load[Order](ctx, store, order)
	if err != nil {
		return err
	}
	fmt.Printf("%s, order %s%s\n  %s\n", order, o.State.Status, end, strings.Join(path, " -> "))
	return nil
}
