package mire_test

import (
	"errors"
	"fmt"
	"log"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

// notRegistered is an account event no registry knows.
type notRegistered struct {
	mire.Event `mire:"entity=account,type=NotRegistered"`
}

// openedOnly returns a registry that knows Opened and no other event.
func openedOnly() *mire.Registry {
	reg := mire.NewRegistry()
	reg.MustRegister(Opened{})
	return reg
}

var _ = Describe("Rehydrate", func() {
	It("applies the history as versions 1..n with nothing pending, and Record works on the Root", func() {
		acc, err := mire.Rehydrate[Account](nil, "alice", Opened{Owner: "alice", Initial: 10}, Deposited{Amount: 5})
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.ID).To(Equal("alice"))
		Expect(acc.StreamID()).To(Equal("account-alice"))
		Expect(acc.Version).To(BeEquivalentTo(2))
		Expect(acc.State).To(Equal(Account{Owner: "alice", Balance: 15, Applied: 2}))
		Expect(acc.Pending()).To(BeEmpty())

		Expect(acc.Record(Withdrawn{Amount: 3})).To(Succeed())
		Expect(acc.Pending()).To(Equal([]any{Withdrawn{Amount: 3}}))
		Expect(acc.State.Balance).To(BeEquivalentTo(12))
		Expect(acc.Version).To(BeEquivalentTo(2), "Version counts applied history, not pending events")
	})

	It("gives a new Root at version 0 for no history", func() {
		acc, err := mire.Rehydrate[Account](nil, "bob")
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Version).To(BeZero())
		Expect(acc.State).To(Equal(Account{}))
	})

	It("saves onto a stored stream that is at version n", func(ctx SpecContext) {
		store := newStore(db.Pool)
		id := openAccount(ctx, store, 10)
		acc, err := mire.Rehydrate[Account](store.Registry(), id, Opened{Owner: id, Initial: 10})
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Deposited{Amount: 1})).To(Succeed())
		Expect(store.Save(ctx, acc)).To(Succeed())
		loaded, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(loaded.Version).To(BeEquivalentTo(2))
		Expect(loaded.State.Balance).To(BeEquivalentTo(11))

		stale, err := mire.Rehydrate[Account](nil, id, Opened{Owner: id, Initial: 10})
		Expect(err).NotTo(HaveOccurred())
		Expect(stale.Record(Deposited{Amount: 1})).To(Succeed())
		var cerr *mire.ConcurrencyError
		Expect(errors.As(store.Save(ctx, stale), &cerr)).To(BeTrue())
		Expect(cerr.Actual).To(BeEquivalentTo(2))
	})

	DescribeTable("refuses an id that Create refuses, with ErrInvalidID",
		func(id string) {
			_, err := mire.Rehydrate[Account](nil, id, Opened{Owner: "x"})
			Expect(errors.Is(err, mire.ErrInvalidID)).To(BeTrue(), "%v", err)
			Expect(err).To(MatchError(HavePrefix("mire: rehydrate *mire_test.Account: mire: invalid id: aggregate id")))
			_, createErr := mire.Create[Account](newStore(db.Pool), id)
			Expect(errors.Is(createErr, mire.ErrInvalidID)).To(BeTrue())
		},
		Entry("empty", ""),
		Entry("a control character", "a\nb"),
		Entry("not UTF-8", "\xff"),
		Entry("longer than MaxIDLength", string(make([]byte, mire.MaxIDLength+1))),
	)

	It("refuses an aggregate whose Apply has a value receiver, as Load does", func() {
		_, err := mire.Rehydrate[ValueApply](nil, mtest.Unique("acc"))
		Expect(err).To(MatchError("mire: rehydrate *mire_test.ValueApply: method Apply has a value receiver (func (ValueApply) Apply), " +
			"so it folds events into a copy and State never changes: declare func (*ValueApply) Apply(event any)"))
	})

	DescribeTable("refuses a history event that Record refuses, naming its index, and returns no Root",
		func(reg *mire.Registry, event any, sentinel error, message string) {
			acc, err := mire.Rehydrate[Account](reg, "carol", Opened{Owner: "carol"}, event)
			Expect(acc).To(BeNil())
			Expect(errors.Is(err, sentinel)).To(BeTrue(), "%v", err)
			Expect(err).To(MatchError(`mire: rehydrate stream "account-carol": event 1: ` + message))

			recorder, rerr := mire.Rehydrate[Account](reg, "carol")
			Expect(rerr).NotTo(HaveOccurred())
			Expect(errors.Is(recorder.Record(event), sentinel)).To(BeTrue(), "Record gives the same error")
		},
		Entry("unregistered", nil, notRegistered{}, mire.ErrUnregistered,
			"mire: event type not registered: mire_test.notRegistered (call mire.Register)"),
		Entry("registered in another registry only", openedOnly(), Deposited{Amount: 1}, mire.ErrUnregistered,
			"mire: event type not registered: mire_test.Deposited (call mire.Register)"),
		Entry("of another entity", nil, Renamed{Name: "x"}, mire.ErrInvalidEvent,
			`mire: invalid event: mire_test.Renamed belongs to entity "customer", not "account"`),
		Entry("nil", nil, nil, mire.ErrInvalidEvent, "mire: invalid event: nil event"),
		Entry("a pointer", nil, &Deposited{Amount: 1}, mire.ErrInvalidEvent,
			"mire: invalid event: record *mire_test.Deposited as a value, not a pointer"),
		Entry("failing its validate tags", nil, Deposited{Amount: 0}, mire.ErrInvalidEvent,
			`invalid mire_test.Deposited event: field Deposited.Amount = 0 fails "gt=0"`),
	)
})

// A command's spec needs no store: Rehydrate rebuilds the account from the
// events it would have loaded, and the command records on it.
func ExampleRehydrate() {
	acc, err := mire.Rehydrate[Account](nil, "alice", Opened{Owner: "Alice", Initial: 100}, Deposited{Amount: 20})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(acc.StreamID(), "version", acc.Version, "balance", acc.State.Balance)
	if err := acc.Record(Withdrawn{Amount: 30}); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("pending %+v, balance %d\n", acc.Pending(), acc.State.Balance)

	_, err = mire.Rehydrate[Account](nil, "alice", Renamed{Name: "Al"})
	fmt.Println(err)
	// Output:
	// account-alice version 2 balance 120
	// pending [{Event:{} Amount:30}], balance 90
	// mire: rehydrate stream "account-alice": event 0: mire: invalid event: mire_test.Renamed belongs to entity "customer", not "account"
}
