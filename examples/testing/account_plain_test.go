package main

import (
	"context"
	"testing"

	"github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/miretest"
)

// The same kind of specs in plain test functions: WithT(t) for scenarios,
// gomega.NewWithT(t) for the matchers, miretest.Store(t) for a database.

func TestWithdrawRefusesAnOverdraft(t *testing.T) {
	miretest.Given[Account](Opened{Owner: "Ann"}, Deposited{Amount: 20}).WithT(t).
		When(withdraw(30)).
		ThenError(ErrInsufficientFunds)
}

func TestHandleSavesTheWithdrawal(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	store := miretest.Store(t) // a fresh database, dropped when the test ends

	for _, command := range []func(*mire.Root[Account]) error{open("Ann"), deposit(100), withdraw(30)} {
		_, err := Handle(ctx, store, "ann", command)
		g.Expect(err).NotTo(gomega.HaveOccurred())
	}
	acc, err := mire.Load[Account](ctx, store, "ann")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(acc).To(miretest.HaveVersion(3))
	g.Expect(acc).To(miretest.HaveState(gomega.HaveField("Balance", gomega.BeEquivalentTo(70))))
}
