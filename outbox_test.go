package mire_test

import (
	"context"
	"errors"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/google/uuid"
	"github.com/mire-go/mire"
)

var _ = Describe("Outbox", func() {
	var store *mire.Store
	BeforeEach(func(ctx SpecContext) {
		_, pool := db.Fresh(ctx)
		store = newStore(pool)
	})

	messages := func(ctx context.Context, category string) []mire.Envelope {
		var out []mire.Envelope
		for env, err := range store.ReadCategory(ctx, category, nil) {
			Expect(err).NotTo(HaveOccurred())
			out = append(out, env)
		}
		return out
	}

	It("records messages with the caller's writes, and rolls them back with them", func(ctx SpecContext) {
		id := uuid.New()
		err := store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			if _, err := store.AppendTx(ctx, scope.Tx(), "account-a", mire.NoStream, Opened{Owner: "a"}); err != nil {
				return err
			}
			return store.EnqueueTx(ctx, scope.Tx(), nil, mire.Message{ID: id, Subject: "accounts.opened", Key: "a",
				Headers: map[string]string{"kind": "test"}, Payload: []byte("opened a")})
		})
		Expect(err).NotTo(HaveOccurred())
		boom := errors.New("boom")
		err = store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			if err := store.EnqueueTx(ctx, scope.Tx(), nil, mire.Message{Subject: "accounts.opened", Key: "b"}); err != nil {
				return err
			}
			return boom
		})
		Expect(err).To(MatchError(boom))

		got := messages(ctx, mire.OutboxDefault)
		Expect(got).To(HaveLen(1))
		Expect(got[0].StreamID).To(Equal("outbox-a"))
		Expect(got[0].ID).To(Equal(id))
		Expect(got[0].Type).To(Equal(mire.MessageType))
		Expect(got[0].Data).To(Equal(mire.Message{ID: id, Subject: "accounts.opened", Key: "a",
			Headers: map[string]string{"kind": "test"}, Payload: []byte("opened a")}))
	})

	It("keeps each key's messages in order, one stream per key, in the named outbox", func(ctx SpecContext) {
		var msgs []mire.Message
		for i := range 6 {
			msgs = append(msgs, mire.Message{Subject: "s", Key: []string{"x", "y"}[i%2], Payload: []byte{byte('0' + i)}})
		}
		Expect(store.Enqueue(ctx, &mire.EnqueueOpts{Outbox: "orders_out"}, msgs...)).To(Succeed())
		Expect(store.Enqueue(ctx, &mire.EnqueueOpts{Outbox: "orders_out"}, mire.Message{Subject: "s", Key: "x", Payload: []byte("6")})).To(Succeed())
		perKey := map[string]string{}
		for _, env := range messages(ctx, "orders_out") {
			m := env.Data.(mire.Message)
			Expect(env.Version).To(BeEquivalentTo(len(perKey[m.Key]) + 1))
			perKey[m.Key] += string(m.Payload)
		}
		Expect(perKey).To(Equal(map[string]string{"x": "0246", "y": "135"}))
	})

	It("defaults the key to the subject and recognises a retry with the same ids", func(ctx SpecContext) {
		m := mire.Message{ID: uuid.New(), Subject: "orders.placed"}
		Expect(store.Enqueue(ctx, nil, m)).To(Succeed())
		Expect(store.Enqueue(ctx, nil, m)).To(Succeed())
		got := messages(ctx, mire.OutboxDefault)
		Expect(got).To(HaveLen(1))
		Expect(got[0].StreamID).To(Equal("outbox-orders.placed"))
	})

	DescribeTable("refuses bad messages, naming the problem and the value",
		func(ctx SpecContext, opts *mire.EnqueueOpts, m mire.Message, want string) {
			err := store.Enqueue(ctx, opts, m)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(want))
			Expect(messages(ctx, mire.OutboxDefault)).To(BeEmpty())
		},
		Entry("no subject", nil, mire.Message{}, "message subject is empty"),
		Entry("a space in the subject", nil, mire.Message{Subject: "a b"}, `message subject "a b" holds a space`),
		Entry("a long subject", nil, mire.Message{Subject: strings.Repeat("s", 2000)}, "longer than 1024"),
		Entry("a control character in the key", nil, mire.Message{Subject: "s", Key: "a\x01"}, `message key "a\x01" contains control character`),
		Entry("a bad header name", nil, mire.Message{Subject: "s", Headers: map[string]string{"a:b": "v"}}, `header "a:b"`),
		Entry("a bad outbox name", &mire.EnqueueOpts{Outbox: "Out box"}, mire.Message{Subject: "s"}, `category "Out box"`),
	)

	It("refuses no messages, a nil tx and an id given twice", func(ctx SpecContext) {
		Expect(store.Enqueue(ctx, nil)).To(MatchError(ContainSubstring("no messages")))
		Expect(store.EnqueueTx(ctx, nil, nil, mire.Message{Subject: "s"})).To(MatchError(ContainSubstring("tx is nil")))
		id := uuid.New()
		err := store.Enqueue(ctx, nil, mire.Message{ID: id, Subject: "s"}, mire.Message{ID: id, Subject: "t"})
		Expect(err).To(MatchError(ContainSubstring("given twice")))
		Expect(errors.Is(err, mire.ErrInvalidEvent)).To(BeTrue())
	})
})
