package projections_test

import (
	"context"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
)

// A Raw projection passes payloads on as they are stored: it needs no type
// registered and decodes nothing but metadata and outbox messages.
var _ = Describe("Raw projections", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	// collect returns a handler that keeps what it is given.
	collect := func() (projections.Handler, func() []mire.Envelope) {
		var mu sync.Mutex
		var got []mire.Envelope
		h := projections.HandlerFunc(func(_ context.Context, _ pgx.Tx, env mire.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, env)
			return nil
		})
		return h, func() []mire.Envelope {
			mu.Lock()
			defer mu.Unlock()
			return got
		}
	}

	It("delivers payloads undecoded, as stored, with metadata and outbox messages decoded, on a store whose registry knows no type", func(ctx SpecContext) {
		wctx := mire.WithMetadata(ctx, mire.Metadata{CorrelationID: "c-1"})
		_, err := e.store.Append(wctx, "account-a", mire.NoStream, Opened{Initial: 5}, Deposited{Amount: 7})
		Expect(err).NotTo(HaveOccurred())
		Expect(e.store.Enqueue(ctx, nil, mire.Message{Subject: "orders.placed", Key: "k", Payload: []byte("p")})).To(Succeed())

		blank, err := mire.New(e.pool, &mire.Config{Registry: mire.NewRegistry()})
		Expect(err).NotTo(HaveOccurred())
		h, got := collect()
		r, err := projections.NewRunner(blank, quiet(), projections.Projection{Name: "raw", Raw: true, Handler: h})
		Expect(err).NotTo(HaveOccurred())
		Expect(r.CatchUp(ctx)).To(Succeed())

		envs := got()
		Expect(envs).To(HaveLen(3))
		Expect(envs[0].Type).To(Equal("Opened"))
		Expect(envs[0].Data).To(BeNil())
		Expect(string(envs[0].Raw)).To(MatchJSON(`{"initial": 5}`))
		Expect(envs[0].Metadata.CorrelationID).To(Equal("c-1"))
		Expect(envs[1].Data).To(BeNil())
		Expect(string(envs[1].Raw)).To(MatchJSON(`{"amount": 7}`))
		msg, ok := envs[2].Data.(mire.Message)
		Expect(ok).To(BeTrue(), "outbox message data: %T", envs[2].Data)
		Expect(msg.Subject).To(Equal("orders.placed"))
		Expect(msg.Payload).To(Equal([]byte("p")))

		// Without Raw the same store cannot read the log: it halts on the
		// first payload its registry does not know.
		h, _ = collect()
		cfg := quiet()
		cfg.MaxAttempts = 1
		typed, err := projections.NewRunner(blank, cfg, projections.Projection{Name: "typed", Handler: h})
		Expect(err).NotTo(HaveOccurred())
		Expect(typed.CatchUp(ctx)).To(MatchError(ContainSubstring("not registered")))
	})

	It("delivers inline events undecoded too", func(ctx SpecContext) {
		h, got := collect()
		Expect(projections.Inline(e.store, projections.Projection{Name: "raw-inline", Raw: true, Handler: h})).To(Succeed())
		_, err := e.store.Append(ctx, "account-a", mire.NoStream, Opened{Initial: 5})
		Expect(err).NotTo(HaveOccurred())
		Expect(got()).To(HaveLen(1))
		Expect(got()[0].Data).To(BeNil())
		Expect(string(got()[0].Raw)).To(MatchJSON(`{"initial": 5}`))
	})

	It("refuses a Routes handler, whose routes could never fire, in a runner and inline", func() {
		p := projections.Projection{Name: "routed", Raw: true, Handler: projections.Routes(
			projections.On(func(context.Context, pgx.Tx, Opened, mire.Envelope) error { return nil }))}
		_, err := projections.NewRunner(e.store, nil, p)
		Expect(err).To(MatchError(And(ContainSubstring(`"routed"`), ContainSubstring("Raw"))))
		Expect(projections.Inline(e.store, p)).To(MatchError(ContainSubstring("Raw")))
	})
})
