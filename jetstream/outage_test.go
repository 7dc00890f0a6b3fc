package jetstream_test

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/google/uuid"
	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/mire-go/mire/jetstream/natstest"
	"github.com/mire-go/mire/projections"
	"github.com/nats-io/nats.go/jetstream"
)

var _ = Describe("A broker outage", func() {
	It("is retried with backoff, never counted towards a halt: nothing lost, nothing stored twice, order kept, the relay catches up and a consumer sees everything", func(ctx SpecContext) {
		srv, err := natstest.Start() // a server of its own, to stop
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Stop)
		if !srv.Embedded() {
			Skip("NATS_URL names the server: it cannot be stopped here")
		}
		store, _ := freshStore(ctx)
		js := connect(srv)
		name := newStream(ctx, js, 0)
		cfg := quiet()
		cfg.MaxAttempts = 1 // a batch failed by the outage must not count
		relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, SubjectPrefix: name, BatchSize: 100,
			Categories: []string{"account", mire.OutboxDefault}, Runner: cfg})
		Expect(err).NotTo(HaveOccurred())
		start(relay)

		// A service consumes throughout, and must see every message.
		consumer, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: "svc", AckPolicy: jetstream.AckExplicitPolicy})
		Expect(err).NotTo(HaveOccurred())
		var mu sync.Mutex
		consumed := map[uuid.UUID]bool{}
		cctx, stopConsuming := context.WithCancel(ctx)
		consumeDone := make(chan error, 1)
		go func() {
			consumeDone <- mjs.Consume(cctx, consumer, func(ctx context.Context, d mjs.Delivery) error {
				mu.Lock()
				defer mu.Unlock()
				consumed[d.ID] = true
				return nil
			}, &mjs.ConsumeOpts{NakDelay: 50 * time.Millisecond, Logger: testLogger()})
		}()

		streams := []string{"account-o1", "account-o2", "account-o3", "account-o4", "account-o5"}
		var written atomic.Int64
		write := func(n int) {
			for i := range n {
				s := streams[i%len(streams)]
				err := store.InTx(ctx, nil, func(scope *mire.TxScope) error {
					if _, err := store.AppendTx(ctx, scope.Tx(), s, mire.Any, Deposited{Amount: 1}); err != nil {
						return err
					}
					if i%4 != 0 {
						return nil
					}
					return store.EnqueueTx(ctx, scope.Tx(), nil, mire.Message{Subject: name + ".m", Key: s})
				})
				Expect(err).NotTo(HaveOccurred())
				store.Notify()
				written.Add(1)
			}
		}
		write(200)
		Eventually(relay.Status).WithContext(ctx).Should(HaveField("Lag", BeZero()))

		// The outage lasts two publish timeouts (half the lease each), so
		// batches fail and are retried, while writes go on.
		srv.Shutdown()
		outage := 2 * cfg.LeaseTTL / 2
		deadline := time.Now().Add(outage)
		for time.Now().Before(deadline) {
			write(10)
		}
		Expect(relay.Status(ctx)).To(HaveField("Lag", BeNumerically(">", 0)), "nothing is relayed while the broker is down")
		Expect(srv.Restart()).To(Succeed())
		write(200)

		Eventually(relay.Status).WithContext(ctx).Should(And(HaveField("Lag", BeZero()), HaveField("Held", BeZero())))
		st, err := relay.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.State).To(Equal(projections.Running), st.LastError)
		var total int
		Expect(store.Pool().QueryRow(ctx, `SELECT count(*) FROM mire.events`).Scan(&total)).To(Succeed())
		msgs := storedMessages(context.WithoutCancel(ctx), js, name)
		Expect(msgs).To(HaveLen(total), "every event and message once")
		checkExactlyOnceInOrder(msgs)
		Eventually(func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(consumed)
		}).WithContext(ctx).Should(Equal(total), "the consuming service saw every message across the outage")
		stopConsuming()
		Eventually(consumeDone).WithContext(ctx).Should(Receive(BeNil()))
	})
})
