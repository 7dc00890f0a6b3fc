package projections_test

import (
	"context"
	"errors"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/projections"
)

var _ = Describe("Inline projections", func() {
	var e env
	BeforeEach(func(ctx SpecContext) {
		e = freshEnv(ctx)
		Expect(projections.Inline(e.store, projections.Projection{Name: "inline", Categories: []string{"account"},
			Handler: balanceHandler()})).To(Succeed())
	})

	It("update the read model in the saving transaction, for Append, Save and TxScope", func(ctx SpecContext) {
		a := open(ctx, e.store, 10) // Append
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 10}), "read your own write")

		id := mtest.Unique("b")
		acc, err := mire.LoadOrNew[Account](ctx, e.store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Opened{Initial: 1})).To(Succeed())
		Expect(acc.Record(Deposited{Amount: 2})).To(Succeed())
		Expect(e.store.Save(ctx, acc)).To(Succeed())
		b := acc.StreamID()
		Expect(balances(ctx, e.pool)).To(HaveKeyWithValue(b, BeEquivalentTo(3)))

		Expect(e.store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
			if err != nil {
				return err
			}
			if err := acc.Record(Withdrawn{Amount: 1}); err != nil {
				return err
			}
			return scope.Save(ctx, acc)
		})).To(Succeed())
		_, err = e.store.Append(ctx, "note-1", mire.Any, Noted{Text: "not an account"})
		Expect(err).NotTo(HaveOccurred())
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 10, b: 2}))
		Expect(balances(ctx, e.pool)).To(Equal(foldedBalances(ctx, e.pool)))
	})

	It("fails the save when the handler fails, leaving no event behind", func(ctx SpecContext) {
		boom := errors.New("boom")
		Expect(projections.Inline(e.store, projections.Projection{Name: "failing", Handler: projections.Routes(
			projections.On(func(context.Context, pgx.Tx, Withdrawn, mire.Envelope) error { return boom }),
		)})).To(Succeed())
		a := open(ctx, e.store, 5)
		_, err := e.store.Append(ctx, a, mire.StreamExists, Withdrawn{Amount: 1})
		Expect(errors.Is(err, boom)).To(BeTrue(), "%v", err)
		Expect(err).To(MatchError(ContainSubstring(`projection "failing"`)))
		Expect(mtest.Count(ctx, e.pool, "events", "stream_id = $1", a)).To(Equal(1))
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 5}))
	})
})
