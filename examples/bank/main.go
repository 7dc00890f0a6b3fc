// Command bank moves money between two accounts in one TxScope: both
// accounts are locked, the decision is taken on what was read, and both
// are saved together or not at all. It starts a throwaway Postgres unless
// DATABASE_URL is set.
//
//	go run ./examples/bank
package main

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
)

// Opened, Debited and Credited are the account's events.
type Opened struct {
	mire.Event `mire:"entity=account,type=Opened"`
	Owner      string `json:"owner" validate:"required"`
	Initial    int64  `json:"initial" validate:"gte=0"`
}

type Debited struct {
	mire.Event `mire:"entity=account,type=Debited"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

type Credited struct {
	mire.Event `mire:"entity=account,type=Credited"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

func init() { mire.MustRegister(Opened{}, Debited{}, Credited{}) }

// Account is the aggregate: its balance is the fold of its events.
type Account struct {
	Owner   string
	Balance int64
}

func (*Account) Category() string { return "account" }

func (a *Account) Apply(event any) {
	switch e := event.(type) {
	case Opened:
		a.Owner, a.Balance = e.Owner, e.Initial
	case Debited:
		a.Balance -= e.Amount
	case Credited:
		a.Balance += e.Amount
	}
}

// ErrInsufficientFunds rejects a transfer larger than the source's balance.
var ErrInsufficientFunds = errors.New("insufficient funds")

// openAccount opens an account with an initial balance. One aggregate: no
// scope needed, the plain optimistic Save is enough.
func openAccount(ctx context.Context, store *mire.Store, id, owner string, initial int64) error {
	acc, err := mire.LoadOrNew[Account](ctx, store, id)
	if err != nil {
		return err
	}
	if err := acc.Record(Opened{Owner: owner, Initial: initial}); err != nil {
		return err
	}
	return store.Save(ctx, acc)
}

// transfer moves amount from one account to another, both or neither.
//
// LoadManyForUpdate row-locks both streams before reading them, in one
// stable order whatever the direction, so a concurrent writer cannot slip a
// withdrawal in between this read and this write, and two opposite transfers
// wait for each other instead of deadlocking.
func transfer(ctx context.Context, store *mire.Store, fromID, toID string, amount int64) error {
	if amount <= 0 {
		return fmt.Errorf("transfer amount must be positive, not %d", amount)
	}
	scope, err := store.Begin(ctx, nil)
	if err != nil {
		return err
	}
	// Rolling back releases both locks and writes nothing. After Commit it
	// is a no-op.
	defer scope.Rollback(ctx)

	accs, err := mire.LoadManyForUpdate[Account](ctx, scope, fromID, toID)
	if err != nil {
		return err
	}
	from, to := accs[0], accs[1]

	// The cross-aggregate invariant: the source cannot overdraw.
	if from.State.Balance < amount {
		return fmt.Errorf("transfer %d from %s (balance %d): %w", amount, from.State.Owner, from.State.Balance, ErrInsufficientFunds)
	}
	if err := from.Record(Debited{Amount: amount}); err != nil {
		return err
	}
	if err := to.Record(Credited{Amount: amount}); err != nil {
		return err
	}
	// Both appends and COMMIT in one round trip; a conflict commits
	// nothing of either account.
	return scope.SaveAndCommit(ctx, accs)
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
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	mire.ConfigurePool(cfg) // a cancelled context cancels the statement on the server
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

	// New ids on every run, so a shared DATABASE_URL can run it again.
	alice, bob := uuid.NewString(), uuid.NewString()
	if err := openAccount(ctx, store, alice, "Alice", 100); err != nil {
		return err
	}
	if err := openAccount(ctx, store, bob, "Bob", 0); err != nil {
		return err
	}

	if err := transfer(ctx, store, alice, bob, 30); err != nil {
		return err
	}
	a, b, err := balances(ctx, store, alice, bob)
	if err != nil {
		return err
	}
	fmt.Printf("after transferring 30: Alice=%d, Bob=%d (sum %d)\n", a, b, a+b)

	// Overdraft is caught inside the scope; nothing commits.
	err = transfer(ctx, store, alice, bob, 1_000_000)
	if !errors.Is(err, ErrInsufficientFunds) {
		return fmt.Errorf("the overdraft was not rejected: %v", err)
	}
	fmt.Println("rejected:", err)
	a, b, err = balances(ctx, store, alice, bob)
	if err != nil {
		return err
	}
	fmt.Printf("after the rejected transfer: Alice=%d, Bob=%d (sum %d, unchanged)\n", a, b, a+b)
	return nil
}

// balances loads both accounts, outside any scope.
func balances(ctx context.Context, store *mire.Store, aliceID, bobID string) (alice, bob int64, err error) {
	a, err := mire.Load[Account](ctx, store, aliceID)
	if err != nil {
		return 0, 0, err
	}
	b, err := mire.Load[Account](ctx, store, bobID)
	if err != nil {
		return 0, 0, err
	}
	return a.State.Balance, b.State.Balance, nil
}
