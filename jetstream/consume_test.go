package jetstream_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/google/uuid"
	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/nats-io/nats.go/jetstream"
)

var _ = Describe("Consume", func() {
	var (
		store *mire.Store
		js    jetstream.JetStream
		name  string
	)
	BeforeEach(func(ctx SpecContext) {
		store, _ = freshStore(ctx)
		js = connect(natsServer())
		name = newStream(ctx, js, 0)
	})

	durable := func(ctx context.Context) jetstream.Consumer {
		c, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: "svc", AckPolicy: jetstream.AckExplicitPolicy})
		Expect(err).NotTo(HaveOccurred())
		return c
	}

	It("hands each event decoded, and each outbox message rebuilt, acking after the handler; a failure is delivered again", func(ctx SpecContext) {
		mctx := mire.WithMetadata(ctx, mire.Metadata{CorrelationID: "c-1"})
		_, err := store.Append(mctx, "account-a", mire.NoStream, Deposited{Amount: 7}, Deposited{Amount: 8})
		Expect(err).NotTo(HaveOccurred())
		msgID := uuid.New()
		Expect(store.Enqueue(ctx, nil, mire.Message{ID: msgID, Subject: name + ".hello", Key: "k",
			Headers: map[string]string{"Content-Type": "text/plain"}, Payload: []byte("hi")})).To(Succeed())
		relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, SubjectPrefix: name,
			Categories: []string{"account", mire.OutboxDefault}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		Expect(relay.CatchUp(ctx)).To(Succeed())

		var mu sync.Mutex
		var got []mjs.Delivery
		attempts := map[uuid.UUID]int{}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- mjs.Consume(cctx, durable(ctx), func(ctx context.Context, d mjs.Delivery) error {
				mu.Lock()
				defer mu.Unlock()
				if attempts[d.ID]++; d.Version == 2 && attempts[d.ID] == 1 {
					return errors.New("not yet")
				}
				got = append(got, d)
				return nil
			}, &mjs.ConsumeOpts{NakDelay: 50 * time.Millisecond, Logger: testLogger()})
		}()
		delivered := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(got)
		}
		Eventually(delivered).WithContext(ctx).Should(Equal(3))
		cancel()
		Eventually(done).WithContext(ctx).Should(Receive(BeNil()))

		byType := map[string][]mjs.Delivery{}
		for _, d := range got {
			byType[d.Type] = append(byType[d.Type], d)
		}
		Expect(byType["Deposited"]).To(HaveLen(2))
		first := byType["Deposited"][0]
		Expect(first.Data).To(Equal(Deposited{Amount: 7}))
		Expect(first.StreamID).To(Equal("account-a"))
		Expect(first.Category).To(Equal("account"))
		Expect(first.Version).To(BeEquivalentTo(1))
		Expect(first.Metadata.CorrelationID).To(Equal("c-1"))
		Expect(first.RecordedAt).To(BeTemporally("~", time.Now(), time.Hour))
		Expect(first.Subject).To(Equal(name + ".account.Deposited"))
		Expect(byType["Deposited"][1].Data).To(Equal(Deposited{Amount: 8}))
		Expect(attempts[byType["Deposited"][1].ID]).To(Equal(2), "the failed one came again")

		Expect(byType[mire.MessageType]).To(HaveLen(1))
		Expect(byType[mire.MessageType][0].Data).To(Equal(mire.Message{ID: msgID, Subject: name + ".hello", Key: "k",
			Headers: map[string]string{"Content-Type": "text/plain"}, Payload: []byte("hi")}))

		info, err := durable(ctx).Info(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(info.NumAckPending).To(BeZero(), "every message acknowledged")
	})

	It("does not hand over what the registry cannot decode, and delivers it again later", func(ctx SpecContext) {
		_, err := store.Append(ctx, "account-u", mire.NoStream, Deposited{Amount: 1})
		Expect(err).NotTo(HaveOccurred())
		relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, SubjectPrefix: name, Categories: []string{"account"}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		c := durable(ctx)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var handled atomic.Int32
		go func() {
			_ = mjs.Consume(cctx, c, func(ctx context.Context, d mjs.Delivery) error {
				handled.Add(1)
				return nil
			}, &mjs.ConsumeOpts{Registry: mire.NewRegistry(), NakDelay: 20 * time.Millisecond, Logger: testLogger()})
		}()
		Eventually(func(ctx context.Context) (int, error) {
			info, err := c.Info(ctx)
			if err != nil {
				return 0, err
			}
			return info.NumRedelivered, nil
		}).WithContext(ctx).Should(BeNumerically(">", 0), "nak'd and delivered again")
		Expect(handled.Load()).To(BeZero())
	})

	It("gives raw messages with Raw, and refuses a nil consumer or handler", func(ctx SpecContext) {
		_, err := store.Append(ctx, "account-r", mire.NoStream, Deposited{Amount: 1})
		Expect(err).NotTo(HaveOccurred())
		relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, SubjectPrefix: name, Categories: []string{"account"}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		raw := make(chan mjs.Delivery, 1)
		go func() {
			_ = mjs.Consume(cctx, durable(ctx), func(ctx context.Context, d mjs.Delivery) error {
				raw <- d
				return nil
			}, &mjs.ConsumeOpts{Raw: true})
		}()
		var d mjs.Delivery
		Eventually(raw).WithContext(ctx).Should(Receive(&d))
		Expect(d.Data).To(BeNil())
		Expect(string(d.Raw)).To(MatchJSON(`{"amount": 1}`))

		Expect(mjs.Consume(ctx, nil, func(context.Context, mjs.Delivery) error { return nil }, nil)).To(MatchError(ContainSubstring("consumer is nil")))
		Expect(mjs.Consume(ctx, durable(ctx), nil, nil)).To(MatchError(ContainSubstring("handler is nil")))
	})
})
