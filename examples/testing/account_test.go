package main

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/miretest"
)

// db is this process's database, set up once for the suite.
var db = miretest.Suite()

// Commands as a scenario's When takes them.
func open(owner string) func(*mire.Root[Account]) error {
	return func(acc *mire.Root[Account]) error { return Open(acc, owner) }
}

func deposit(amount int64) func(*mire.Root[Account]) error {
	return func(acc *mire.Root[Account]) error { return Deposit(acc, amount) }
}

func withdraw(amount int64) func(*mire.Root[Account]) error {
	return func(acc *mire.Root[Account]) error { return Withdraw(acc, amount) }
}

var _ = Describe("An account", func() {
	var (
		opened    = Opened{Owner: "Ann"}
		deposited = Deposited{Amount: 100}
	)

	Describe("opening", func() {
		It("opens a new account", func() {
			miretest.Given[Account]().When(open("Ann")).Then(Opened{Owner: "Ann"})
		})

		It("refuses to open it twice", func() {
			miretest.Given[Account](opened).When(open("Bob")).ThenError(ErrAlreadyOpen)
		})
	})

	Describe("deposits", func() {
		It("adds to the balance", func() {
			miretest.Given[Account](opened, deposited).When(deposit(50)).
				Then(Deposited{Amount: 50}).
				ThenState(Account{Owner: "Ann", Balance: 150})
		})

		It("needs an open account", func() {
			miretest.Given[Account]().When(deposit(50)).ThenError(ErrNotOpen)
		})

		It("must be positive: the event's validate tag refuses it", func() {
			miretest.Given[Account](opened).When(deposit(0)).ThenError(mire.ErrInvalidEvent)
		})
	})

	Describe("withdrawals", func() {
		It("take what the account holds", func() {
			miretest.Given[Account](opened, deposited).When(withdraw(30)).Then(Withdrawn{Amount: 30})
		})

		It("take all of it", func() {
			miretest.Given[Account](opened, deposited).When(withdraw(100)).
				Then(Withdrawn{Amount: 100}).
				ThenState(HaveField("Balance", BeZero()))
		})

		It("refuse more than the balance", func() {
			miretest.Given[Account](opened, deposited, Withdrawn{Amount: 80}).When(withdraw(30)).
				ThenError("withdraw 30 with a balance of 20: insufficient funds")
		})
	})

	// The handler needs a database: the suite's, one for each process.
	Describe("the command handler", func() {
		It("saves what the command recorded", func(ctx SpecContext) {
			const id = "ann"
			for _, command := range []func(*mire.Root[Account]) error{open("Ann"), deposit(100), withdraw(30)} {
				_, err := Handle(ctx, db.Store, id, command)
				Expect(err).NotTo(HaveOccurred())
			}
			acc, err := mire.Load[Account](ctx, db.Store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc).To(miretest.HaveVersion(3))
			Expect(acc).To(miretest.HaveState(Account{Owner: "Ann", Balance: 70}))
		})

		It("saves nothing for a refused command", func(ctx SpecContext) {
			fresh := db.Fresh(ctx) // an empty log of this spec's own
			_, err := Handle(ctx, fresh.Store, "bob", withdraw(1))
			Expect(err).To(MatchError(ErrNotOpen))
			_, err = mire.Load[Account](ctx, fresh.Store, "bob")
			Expect(err).To(MatchError(mire.ErrNotFound))
		})

		It("refuses to save over a change made since it loaded", func(ctx context.Context) {
			_, err := Handle(ctx, db.Store, "carol", open("Carol"))
			Expect(err).NotTo(HaveOccurred())
			stale, err := mire.Load[Account](ctx, db.Store, "carol")
			Expect(err).NotTo(HaveOccurred())
			_, err = Handle(ctx, db.Store, "carol", deposit(10))
			Expect(err).NotTo(HaveOccurred())

			Expect(Deposit(stale, 5)).To(Succeed())
			Expect(stale).To(miretest.HaveRecorded(Deposited{Amount: 5}))
			Expect(db.Store.Save(ctx, stale)).To(miretest.BeConcurrencyError().WithStream("account-carol").WithActual(2))
		})
	})
})
