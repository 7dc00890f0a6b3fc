package main

import (
	"encoding/json"
	"fmt"

	"github.com/mire-go/mire"
)

// The benchmark's events: a bank account's, as in the README.
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

func init() { mire.MustRegister(Opened{}, Deposited{}, Withdrawn{}) }

// Account is the aggregate every workload folds.
type Account struct {
	Owner   string
	Balance int64
	Events  int
}

func (*Account) Category() string { return "account" }

func (a *Account) Apply(event any) {
	a.Events++
	switch e := event.(type) {
	case Opened:
		a.Owner, a.Balance = e.Owner, e.Initial
	case Deposited:
		a.Balance += e.Amount
	case Withdrawn:
		a.Balance -= e.Amount
	}
}

// decodeEvent is what a hand-written store does on read: switch on the
// stored type and unmarshal the payload into the same structs mire uses.
func decodeEvent(typ string, data []byte) (any, error) {
	switch typ {
	case "Opened":
		var e Opened
		err := json.Unmarshal(data, &e)
		return e, err
	case "Deposited":
		var e Deposited
		err := json.Unmarshal(data, &e)
		return e, err
	case "Withdrawn":
		var e Withdrawn
		err := json.Unmarshal(data, &e)
		return e, err
	}
	return nil, fmt.Errorf("unknown event type %q", typ)
}

// SnapAccount is Account with snapshots: Save stores its state every 100
// events, and loads start from the latest snapshot.
type SnapAccount struct{ Account }

func (*SnapAccount) SnapshotPolicy() mire.SnapshotPolicy {
	return mire.SnapshotPolicy{Every: 100, Version: 1}
}
