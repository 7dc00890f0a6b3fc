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

	It("hands the handler each event as the log holds it, with position, time and metadata", func(ctx SpecContext) {
		var seen []mire.Envelope
		Expect(projections.Inline(e.store, projections.Projection{Name: "seen", Handler: projections.HandlerFunc(
			func(_ context.Context, _ pgx.Tx, env mire.Envelope) error { seen = append(seen, env); return nil })})).To(Succeed())
		md := mire.Metadata{CorrelationID: "c-1", Actor: "alice", Values: map[string]string{"k": "v"}}
		stream := "account-" + mtest.Unique("seen")
		_, err := e.store.Append(mire.WithMetadata(ctx, md), stream, mire.NoStream, Opened{Initial: 7}, Deposited{Amount: 3})
		Expect(err).NotTo(HaveOccurred())

		var stored []mire.Envelope
		for env, err := range e.store.ReadStream(ctx, stream, nil) {
			Expect(err).NotTo(HaveOccurred())
			stored = append(stored, env)
		}
		Expect(stored).To(HaveLen(2))
		Expect(seen).To(HaveLen(2))
		for i := range stored {
			Expect(seen[i].RecordedAt.Equal(stored[i].RecordedAt)).To(BeTrue(), "recorded at %v, stored %v", seen[i].RecordedAt, stored[i].RecordedAt)
			seen[i].RecordedAt = stored[i].RecordedAt
			Expect(seen[i].Raw).To(MatchJSON(stored[i].Raw))
			seen[i].Raw = stored[i].Raw
		}
		Expect(seen).To(Equal(stored))
		Expect(seen[1].Metadata.CorrelationID).To(Equal("c-1"))
	})
})
