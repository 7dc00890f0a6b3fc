// Command quickstart registers an account's events, saves them, loads the
// account back and prints it. It starts a throwaway Postgres unless
// DATABASE_URL is set.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
)

// Opened, Deposited and Withdrawn are the account's events: plain structs
// whose tags give their stored names.
type Opened struct {
	mire.Event `mire:"entity=account,type=Opened"`
	Owner      string `json:"owner" validate:"required"`
}

type Deposited struct {
	mire.Event `mire:"entity=account,type=Deposited"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

type Withdrawn struct {
	mire.Event `mire:"entity=account,type=Withdrawn"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

func init() { mire.MustRegister(Opened{}, Deposited{}, Withdrawn{}) }

// Account is the aggregate: its state is the fold of its events.
type Account struct {
	Owner   string
	Balance int64
}

func (*Account) Category() string { return "account" }

func (a *Account) Apply(event any) {
	switch e := event.(type) {
	case Opened:
		a.Owner = e.Owner
	case Deposited:
		a.Balance += e.Amount
	case Withdrawn:
		a.Balance -= e.Amount
	}
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

	// A new account: LoadOrNew gives version 0; Record validates and applies.
	acc, err := mire.LoadOrNew[Account](ctx, store, "alice")
	if err != nil {
		return err
	}
	if acc.Version == 0 {
		if err := acc.Record(Opened{Owner: "Alice"}); err != nil {
			return err
		}
	}
	if err := acc.Record(Deposited{Amount: 100}); err != nil {
		return err
	}
	if err := acc.Record(Withdrawn{Amount: 30}); err != nil {
		return err
	}
	if err := store.Save(ctx, acc); err != nil {
		return err
	}

	// An invalid event is refused before anything is written.
	err = acc.Record(Deposited{Amount: -5})
	var invalid *mire.ValidationError
	fmt.Println("refused:", errors.As(err, &invalid), err)

	// Load rebuilds the account from its stream.
	loaded, err := mire.Load[Account](ctx, store, "alice")
	if err != nil {
		return err
	}
	fmt.Printf("%s: owner %s, balance %d, version %d\n",
		loaded.StreamID(), loaded.State.Owner, loaded.State.Balance, loaded.Version)

	for env, err := range store.ReadStream(ctx, loaded.StreamID(), nil) {
		if err != nil {
			return err
		}
		fmt.Printf("  v%d %-9s %s\n", env.Version, env.Type, env.Raw)
	}
	return nil
}
