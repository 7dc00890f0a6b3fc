package jetstream_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// flaky is a real JetStream whose asynchronous publishes fail at random,
// one in failEvery, without reaching the server: a publish lost on the way
// while the ones after it go through, which a broker only does now and then
// (a connection lost between two messages, a leader election).
type flaky struct {
	jetstream.JetStream
	mu        sync.Mutex
	rng       *rand.Rand
	failEvery int
	failed    int
}

var errInjected = errors.New("injected publish failure")

func (f *flaky) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f.mu.Lock()
	fail := f.rng.IntN(f.failEvery) == 0
	if fail {
		f.failed++
	}
	f.mu.Unlock()
	if fail {
		return nil, errInjected
	}
	return f.JetStream.PublishMsgAsync(m, opts...)
}

var _ = Describe("Publishes that fail at random", func() {
	It("never let a later message of a stream overtake a failed one", func(ctx SpecContext) {
		store, _ := freshStore(ctx)
		js := connect(natsServer())
		name := newStream(ctx, js, 0)
		streams := []string{"account-f1", "account-f2", "account-f3"}
		for i := range 600 {
			_, err := store.Append(ctx, streams[i%len(streams)], mire.Any, Deposited{Amount: 1})
			Expect(err).NotTo(HaveOccurred())
		}
		f := &flaky{JetStream: js, rng: rand.New(rand.NewPCG(1, 2)), failEvery: 10}
		relay, err := mjs.NewRelay(store, f, &mjs.Config{Stream: name, SubjectPrefix: name, BatchSize: 100,
			Categories: []string{"account"}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		Expect(f.failed).To(BeNumerically(">", 10), "publishes failed")
		msgs := storedMessages(ctx, js, name)
		Expect(msgs).To(HaveLen(600))
		Expect(checkExactlyOnceInOrder(msgs)).To(HaveLen(3))
	})
})

// slow is a real JetStream behind a long round trip: every publish waits
// before it leaves.
type slow struct {
	jetstream.JetStream
	delay time.Duration
}

func (s *slow) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	time.Sleep(s.delay)
	return s.JetStream.PublishMsgAsync(m, opts...)
}

var _ = Describe("A hot stream behind a slow broker", func() {
	It("gets through though its backlog takes longer than PublishTimeout to publish in one batch", func(ctx SpecContext) {
		store, _ := freshStore(ctx)
		js := connect(natsServer())
		name := newStream(ctx, js, 0)
		const events = 200
		for range events {
			_, err := store.Append(ctx, "account-hot", mire.Any, Deposited{Amount: 1})
			Expect(err).NotTo(HaveOccurred())
		}
		// One message per round trip: the whole backlog takes 2 s, and a
		// batch may take 0.5 s.
		s := &slow{JetStream: js, delay: 10 * time.Millisecond}
		relay, err := mjs.NewRelay(store, s, &mjs.Config{Stream: name, SubjectPrefix: name, PublishTimeout: 500 * time.Millisecond,
			Categories: []string{"account"}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		cctx, cancel := context.WithTimeout(ctx, patience(quiet()))
		defer cancel()
		Expect(relay.CatchUp(cctx)).To(Succeed())
		msgs := storedMessages(ctx, js, name)
		Expect(msgs).To(HaveLen(events))
		Expect(checkExactlyOnceInOrder(msgs)).To(Equal(map[string]int64{"account-hot": events}))
	})
})
