package mire_test

import (
	"context"

	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

// db is this process's database, set up once for the suite.
var db = mtest.Suite()

// The account events and aggregate the specs share.
type Opened struct {
	mire.Event `mire:"entity=account,type=Opened"`
	Owner      string `json:"owner" validate:"required"`
	Initial    int64  `json:"initial" validate:"gte=0"`
}

type Deposited struct {
	mire.Event `mire:"entity=account,type=Deposited"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

type Withdrawn struct {
	mire.Event `mire:"entity=account,type=Withdrawn"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

// Renamed belongs to another entity, to prove Record refuses it on accounts.
type Renamed struct {
	mire.Event `mire:"entity=customer,type=Renamed"`
	Name       string `json:"name"`
}

func init() { mire.MustRegister(Opened{}, Deposited{}, Withdrawn{}, Renamed{}) }

type Account struct {
	Owner   string
	Balance int64
	Applied int
}

func (*Account) Category() string { return "account" }

func (a *Account) Apply(event any) {
	a.Applied++
	switch e := event.(type) {
	case Opened:
		a.Owner, a.Balance = e.Owner, e.Initial
	case Deposited:
		a.Balance += e.Amount
	case Withdrawn:
		a.Balance -= e.Amount
	}
}

// newStore returns a store on pool with the default registry.
func newStore(pool *pgxpool.Pool) *mire.Store {
	store, err := mire.New(pool, nil)
	Expect(err).NotTo(HaveOccurred())
	return store
}

// openAccount saves a new account with an initial balance and returns its id.
func openAccount(ctx context.Context, store *mire.Store, initial int64) string {
	id := mtest.Unique("acc")
	acc, err := mire.LoadOrNew[Account](ctx, store, id)
	Expect(err).NotTo(HaveOccurred())
	Expect(acc.Record(Opened{Owner: id, Initial: initial})).To(Succeed())
	Expect(store.Save(ctx, acc)).To(Succeed())
	return id
}

// rowCounts returns the number of stream and event rows in the database.
func rowCounts(ctx context.Context, pool *pgxpool.Pool) [2]int {
	return [2]int{mtest.Count(ctx, pool, "streams", ""), mtest.Count(ctx, pool, "events", "")}
}
