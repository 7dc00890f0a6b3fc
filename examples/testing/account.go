package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/mire-go/mire"
)

// Opened, Deposited and Withdrawn are the account's events.
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

// The commands' refusals.
var (
	ErrAlreadyOpen       = errors.New("account already open")
	ErrNotOpen           = errors.New("account not open")
	ErrInsufficientFunds = errors.New("insufficient funds")
)

// A command decides on the account's state and records what happened. The
// specs in account_test.go run them without a database.

// Open opens the account for owner.
func Open(acc *mire.Root[Account], owner string) error {
	if acc.State.Owner != "" {
		return fmt.Errorf("open %s: %w", acc.ID, ErrAlreadyOpen)
	}
	return acc.Record(Opened{Owner: owner})
}

// Deposit adds amount to an open account.
func Deposit(acc *mire.Root[Account], amount int64) error {
	if acc.State.Owner == "" {
		return fmt.Errorf("deposit to %s: %w", acc.ID, ErrNotOpen)
	}
	return acc.Record(Deposited{Amount: amount})
}

// Withdraw takes amount from an open account that holds it.
func Withdraw(acc *mire.Root[Account], amount int64) error {
	if acc.State.Owner == "" {
		return fmt.Errorf("withdraw from %s: %w", acc.ID, ErrNotOpen)
	}
	if acc.State.Balance < amount {
		return fmt.Errorf("withdraw %d with a balance of %d: %w", amount, acc.State.Balance, ErrInsufficientFunds)
	}
	return acc.Record(Withdrawn{Amount: amount})
}

// Handle runs command on account id and saves what it recorded: the
// application's side of a command, which needs a database to spec.
func Handle(ctx context.Context, store *mire.Store, id string, command func(*mire.Root[Account]) error) (*mire.Root[Account], error) {
	acc, err := mire.LoadOrNew[Account](ctx, store, id)
	if err != nil {
		return nil, err
	}
	if err := command(acc); err != nil {
		return nil, err
	}
	if err := store.Save(ctx, acc); err != nil {
		return nil, err
	}
	return acc, nil
}
