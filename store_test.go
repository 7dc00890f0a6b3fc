package mire_test

import (
	"errors"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
)

var _ = Describe("Store", func() {
	var store *mire.Store
	BeforeEach(func() { store = newStore(db.Pool) })

	It("saves recorded events and loads the aggregate back", func(ctx SpecContext) {
		id := openAccount(ctx, store, 10)
		acc, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Deposited{Amount: 5})).To(Succeed())
		Expect(store.Save(ctx, acc)).To(Succeed())
		Expect(acc.Version).To(BeEquivalentTo(2))
		Expect(acc.Pending()).To(BeEmpty())

		loaded, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(loaded.State).To(Equal(Account{Owner: id, Balance: 15, Applied: 2}))
		Expect(loaded.Version).To(BeEquivalentTo(2))
	})

	It("returns ErrNotFound from Load for a missing stream", func(ctx SpecContext) {
		_, err := mire.Load[Account](ctx, store, "nobody")
		Expect(errors.Is(err, mire.ErrNotFound)).To(BeTrue(), "%v", err)
	})
})
