package mire_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

// ValueApply declares Apply on its value receiver: *ValueApply still
// satisfies Aggregate, but Apply would fold into a copy.
type ValueApply struct{ Applied int }

func (ValueApply) Category() string { return "account" }
func (ValueApply) Apply(any)        {}

var _ = Describe("Misuse", func() {
	It("refuses Record on a Root that Load, LoadOrNew or Create did not make", func() {
		root := &mire.Root[Account]{ID: "x"}
		err := root.Record(Deposited{Amount: 1})
		Expect(err).To(MatchError(`mire: record on a mire.Root[github.com/mire-go/mire_test.Account] with id "x": the Root was not made by Load, LoadOrNew or Create`))
		Expect(root.Pending()).To(BeEmpty())
	})

	It("refuses an aggregate whose Apply has a value receiver, in Load, LoadOrNew and Create", func(ctx SpecContext) {
		store := newStore(db.Pool)
		id := openAccount(ctx, store, 5)
		want := "*mire_test.ValueApply: method Apply has a value receiver (func (ValueApply) Apply), " +
			"so it folds events into a copy and State never changes: declare func (*ValueApply) Apply(event any)"
		_, err := mire.LoadOrNew[ValueApply](ctx, store, id)
		Expect(err).To(MatchError("mire: load " + want))
		_, err = mire.Load[ValueApply](ctx, store, id)
		Expect(err).To(MatchError("mire: load " + want))
		_, err = mire.Create[ValueApply](store, mtest.Unique("acc"))
		Expect(err).To(MatchError("mire: create " + want))
	})
})

var _ = Describe("A registry's Must forms", func() {
	It("panic with the registration error that the plain forms return", func() {
		reg := mire.NewRegistry()
		Expect(func() { reg.MustRegisterAlias("account", "Old", Deposited{}) }).To(PanicWith(MatchError(ContainSubstring("not registered"))))
		Expect(func() { reg.MustRegisterUpcaster("account", "Deposited", 1, nil) }).To(PanicWith(MatchError(ContainSubstring("Deposited"))))
		reg.MustRegister(Deposited{})
		Expect(func() { reg.MustRegisterAlias("account", "Paid", Deposited{}) }).NotTo(Panic())
	})
})
