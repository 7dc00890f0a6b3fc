package miretest_test

import (
	"errors"
	"fmt"

	"github.com/mire-go/mire"
)

// The account the specs test, as a user of mire would write it.
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

type Fee struct {
	mire.Event `mire:"entity=account,type=Fee"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

func init() { mire.MustRegister(Opened{}, Deposited{}, Withdrawn{}, Fee{}) }

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
	case Fee:
		a.Balance -= e.Amount
	}
}

var ErrInsufficientFunds = errors.New("insufficient funds")

// Withdraw is a command: it decides on the state and records.
func Withdraw(acc *mire.Root[Account], amount int64) error {
	if acc.State.Balance < amount {
		return fmt.Errorf("withdraw %d from %d: %w", amount, acc.State.Balance, ErrInsufficientFunds)
	}
	return acc.Record(Withdrawn{Amount: amount})
}

// withdraw is Withdraw as a When command.
func withdraw(amount int64) func(*mire.Root[Account]) error {
	return func(acc *mire.Root[Account]) error { return Withdraw(acc, amount) }
}
