package sagas_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/projections"
	"github.com/mire-go/mire/sagas"
)

// db is this process's database; specs take fresh ones.
var db = mtest.Suite()

// The order domain of the specs: an order placed reserves stock of an
// Inventory aggregate, charges a payment service through the outbox, and
// is confirmed; a decline or a timeout releases the stock and cancels it.

type OrderPlaced struct {
	mire.Event `mire:"entity=order,type=OrderPlaced"`
	SKU        string `json:"sku" validate:"required"`
	Qty        int64  `json:"qty" validate:"gt=0"`
	Amount     int64  `json:"amount" validate:"gt=0"`
}

type OrderConfirmed struct {
	mire.Event `mire:"entity=order,type=OrderConfirmed"`
	At         string `json:"at"`
}

type OrderCancelled struct {
	mire.Event `mire:"entity=order,type=OrderCancelled"`
	Reason     string `json:"reason"`
}

type Stocked struct {
	mire.Event `mire:"entity=inventory,type=Stocked"`
	Qty        int64 `json:"qty" validate:"gt=0"`
}

type Reserved struct {
	mire.Event `mire:"entity=inventory,type=Reserved"`
	Order      string `json:"order"`
	Qty        int64  `json:"qty"`
}

type Released struct {
	mire.Event `mire:"entity=inventory,type=Released"`
	Order      string `json:"order"`
	Qty        int64  `json:"qty"`
}

// PaymentDeclined is an event of the payment service's own category, for
// listener specs.
type PaymentSettled struct {
	mire.Event `mire:"entity=payment,type=PaymentSettled"`
	Order      string `json:"order"`
	Declined   string `json:"declined,omitempty"`
}

func init() {
	mire.MustRegister(OrderPlaced{}, OrderConfirmed{}, OrderCancelled{}, Stocked{}, Reserved{}, Released{}, PaymentSettled{})
}

type Order struct {
	Status string
}

func (*Order) Category() string { return "order" }
func (o *Order) Apply(e any) {
	switch e.(type) {
	case OrderPlaced:
		o.Status = "placed"
	case OrderConfirmed:
		o.Status = "confirmed"
	case OrderCancelled:
		o.Status = "cancelled"
	}
}

type Inventory struct {
	Available int64
	Reserved  map[string]int64
}

func (*Inventory) Category() string { return "inventory" }
func (i *Inventory) Apply(e any) {
	if i.Reserved == nil {
		i.Reserved = map[string]int64{}
	}
	switch e := e.(type) {
	case Stocked:
		i.Available += e.Qty
	case Reserved:
		i.Available -= e.Qty
		i.Reserved[e.Order] += e.Qty
	case Released:
		i.Available += e.Qty
		i.Reserved[e.Order] -= e.Qty
	}
}

// Fulfilment is the saga's state.
type Fulfilment struct {
	Order  string `json:"order"`
	SKU    string `json:"sku"`
	Qty    int64  `json:"qty"`
	Amount int64  `json:"amount"`
}

// reserve, release, charge, confirm and cancel are the saga's actions.
func reserve(ctx context.Context, scope *mire.TxScope, x *sagas.Exec[Fulfilment]) error {
	inv, err := mire.LoadForUpdate[Inventory](ctx, scope, x.State.SKU)
	if err != nil {
		return err
	}
	if inv.State.Available < x.State.Qty {
		return sagas.Fail(fmt.Sprintf("out of stock: %d of %s available, %d wanted", inv.State.Available, x.State.SKU, x.State.Qty))
	}
	if err := inv.Record(Reserved{Order: x.State.Order, Qty: x.State.Qty}); err != nil {
		return err
	}
	return scope.Save(ctx, inv)
}

func release(ctx context.Context, scope *mire.TxScope, x *sagas.Exec[Fulfilment]) error {
	inv, err := mire.LoadForUpdate[Inventory](ctx, scope, x.State.SKU)
	if err != nil {
		return err
	}
	if err := inv.Record(Released{Order: x.State.Order, Qty: x.State.Qty}); err != nil {
		return err
	}
	if err := scope.Save(ctx, inv); err != nil {
		return err
	}
	order, err := mire.LoadForUpdate[Order](ctx, scope, x.State.Order)
	if err != nil {
		return err
	}
	if err := order.Record(OrderCancelled{Reason: "saga compensated"}); err != nil {
		return err
	}
	return scope.Save(ctx, order)
}

// ChargeRequest is the payment message's payload.
type ChargeRequest struct {
	Order  string `json:"order"`
	Amount int64  `json:"amount"`
}

func charge(_ context.Context, x *sagas.Exec[Fulfilment]) (mire.Message, error) {
	payload, err := json.Marshal(ChargeRequest{Order: x.State.Order, Amount: x.State.Amount})
	return mire.Message{Subject: "payments.charge", Key: x.State.Order, Payload: payload}, err
}

func refund(_ context.Context, x *sagas.Exec[Fulfilment]) (mire.Message, error) {
	payload, err := json.Marshal(ChargeRequest{Order: x.State.Order, Amount: x.State.Amount})
	return mire.Message{Subject: "payments.refund", Key: x.State.Order, Payload: payload}, err
}

func confirm(ctx context.Context, scope *mire.TxScope, x *sagas.Exec[Fulfilment]) error {
	order, err := mire.LoadForUpdate[Order](ctx, scope, x.State.Order)
	if err != nil {
		return err
	}
	if err := order.Record(OrderConfirmed{}); err != nil {
		return err
	}
	return scope.Save(ctx, order)
}

func placed(e OrderPlaced, env mire.Envelope) (string, Fulfilment, bool) {
	return env.AggregateID(), Fulfilment{Order: env.AggregateID(), SKU: e.SKU, Qty: e.Qty, Amount: e.Amount}, true
}

// fulfilment returns the order fulfilment saga with the given charge
// timeout and retries.
func fulfilment(timeout time.Duration, retries int, listen ...sagas.Listener) *sagas.Definition[Fulfilment] {
	return sagas.MustDefine(sagas.Spec[Fulfilment]{
		Name:  "fulfilment",
		Start: sagas.StartOn(placed),
		Steps: []sagas.Step[Fulfilment]{
			{Name: "reserve", Action: sagas.Command(reserve), Compensation: sagas.Command(release)},
			{Name: "charge", After: "reserve", Action: sagas.Send(charge), Compensation: sagas.Send(refund), Timeout: timeout, Retries: retries},
			{Name: "confirm", After: "charge", Action: sagas.Command(confirm)},
		},
		Listen: listen,
	})
}

// settled maps the payment service's events to responses of "charge".
var settled = sagas.ListenFor(func(e PaymentSettled, _ mire.Envelope) (string, sagas.Response, bool) {
	return e.Order, sagas.Response{Step: "charge", Failure: e.Declined}, true
})

// quiet is the runner configuration of the specs: short leases and
// intervals, a silent logger.
func quiet() *sagas.Config {
	return &sagas.Config{
		Projections: &projections.Config{
			LeaseTTL:        2 * time.Second,
			RecheckInterval: 100 * time.Millisecond,
			PollInterval:    50 * time.Millisecond,
			RetryBackoff:    5 * time.Millisecond,
			Logger:          testLogger(),
		},
		TimerInterval: 50 * time.Millisecond,
	}
}

// patience is how long a spec waits for what a runner with cfg must do,
// derived from its lease and intervals with a generous margin.
func patience(cfg *sagas.Config) time.Duration {
	p := cfg.Projections
	return 10 * (p.LeaseTTL + p.RecheckInterval + p.PollInterval + cfg.TimerInterval)
}

func testLogger() *slog.Logger {
	if os.Getenv("MIRE_SAGAS_LOG") != "" {
		return slog.New(slog.NewTextHandler(GinkgoWriter, nil))
	}
	return slog.New(slog.DiscardHandler)
}

var _ = BeforeEach(func() {
	SetDefaultEventuallyTimeout(patience(quiet()))
	EnforceDefaultTimeoutsWhenUsingContexts()
})

// env is a fresh database with a store.
type env struct {
	url   string
	pool  *pgxpool.Pool
	store *mire.Store
}

func freshEnv(ctx context.Context) env {
	url, pool := db.Fresh(ctx)
	store, err := mire.New(pool, nil)
	Expect(err).NotTo(HaveOccurred())
	return env{url: url, pool: pool, store: store}
}

// run starts a runner of defs on e's store, stopped when the spec ends.
func (e env) run(cfg *sagas.Config, defs ...sagas.Saga) *sagas.Runner {
	r, err := sagas.NewRunner(e.store, cfg, defs...)
	Expect(err).NotTo(HaveOccurred())
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	DeferCleanup(func(ctx SpecContext) {
		Expect(r.Stop(ctx)).To(Succeed())
		Expect(<-done).To(Succeed())
	})
	return r
}

// stock puts qty of sku in stock.
func (e env) stock(ctx context.Context, sku string, qty int64) {
	_, err := e.store.Append(ctx, mire.StreamID("inventory", sku), mire.Any, Stocked{Qty: qty})
	Expect(err).NotTo(HaveOccurred())
}

// place places an order.
func (e env) place(ctx context.Context, order, sku string, qty, amount int64) {
	_, err := e.store.Append(ctx, mire.StreamID("order", order), mire.NoStream, OrderPlaced{SKU: sku, Qty: qty, Amount: amount})
	Expect(err).NotTo(HaveOccurred())
}

// instance returns a function giving instance id of saga, for Eventually.
func (e env) instance(saga, id string) func(context.Context) (sagas.Instance, error) {
	return func(ctx context.Context) (sagas.Instance, error) {
		root, err := sagas.Load(ctx, e.store, saga, id)
		if err != nil {
			return sagas.Instance{}, err
		}
		return root.State, nil
	}
}

// history returns the types of the events of instance id of saga.
func (e env) history(ctx context.Context, saga, id string) []string {
	var out []string
	for env, err := range e.store.ReadStream(ctx, mire.StreamID(sagas.Category, sagas.InstanceID(saga, id)), nil) {
		Expect(err).NotTo(HaveOccurred())
		out = append(out, env.Type)
	}
	return out
}

// messages returns the outbox messages of subject, in log order.
func (e env) messages(ctx context.Context, subject string) []mire.Message {
	var out []mire.Message
	for env, err := range e.store.ReadCategory(ctx, mire.OutboxDefault, nil) {
		Expect(err).NotTo(HaveOccurred())
		if m := env.Data.(mire.Message); m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}

// inventory loads sku's inventory.
func (e env) inventory(ctx context.Context, sku string) Inventory {
	root, err := mire.Load[Inventory](ctx, e.store, sku)
	Expect(err).NotTo(HaveOccurred())
	return root.State
}

var _ = pgx.Identifier{}
