package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/mire-go/mire/projections"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
)

var _ = Describe("Relay", func() {
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

	It("publishes events and outbox messages once each, with their ids, subjects and headers", func(ctx SpecContext) {
		tctx := mire.WithMetadata(ctx, mire.Metadata{CorrelationID: "corr-1", CausationID: "cause-1", Actor: "ann"})
		_, err := store.Append(tctx, "account-a", mire.NoStream, Deposited{Amount: 1}, Deposited{Amount: 2})
		Expect(err).NotTo(HaveOccurred())
		_, err = store.Append(ctx, "customer-c", mire.NoStream, Renamed{Name: "Carl"})
		Expect(err).NotTo(HaveOccurred())
		msgID := uuid.New()
		Expect(store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			return store.EnqueueTx(ctx, scope.Tx(), nil, mire.Message{ID: msgID, Subject: name + ".orders.placed", Key: "o1",
				Headers: map[string]string{"Content-Type": "text/plain"}, Payload: []byte("order o1 placed")})
		})).To(Succeed())

		relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, SubjectPrefix: name,
			Categories: []string{"account", mire.OutboxDefault}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		Expect(relay.CheckStream(ctx)).To(Succeed())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		Expect(relay.CatchUp(ctx)).To(Succeed()) // nothing new: nothing published again

		msgs := storedMessages(ctx, js, name)
		Expect(msgs).To(HaveLen(3), "the customer's event is not in the relay's categories")
		Expect(checkExactlyOnceInOrder(msgs)).To(Equal(map[string]int64{"account-a": 2, "outbox-o1": 1}))
		var events []mire.Envelope
		for env, err := range store.ReadAll(ctx, nil) {
			Expect(err).NotTo(HaveOccurred())
			events = append(events, env)
		}
		byID := map[string]stored{}
		for _, m := range msgs {
			byID[m.ID] = m
		}
		first := byID[events[0].ID.String()]
		Expect(first.Subject).To(Equal(name + ".account.Deposited"))
		Expect(string(first.Data)).To(MatchJSON(`{"amount": 1}`))
		Expect(first.Header.Get(mjs.HeaderStream)).To(Equal("account-a"))
		Expect(first.Header.Get(mjs.HeaderVersion)).To(Equal("1"))
		Expect(first.Header.Get(mjs.HeaderPosition)).To(Equal(strconv.FormatInt(events[0].Position, 10)))
		Expect(first.Header.Get(mjs.HeaderType)).To(Equal("Deposited"))
		Expect(first.Header.Get(mjs.HeaderSchemaVersion)).To(Equal("1"))
		Expect(first.Header.Get(mjs.HeaderCorrelationID)).To(Equal("corr-1"))
		Expect(first.Header.Get(mjs.HeaderCausationID)).To(Equal("cause-1"))
		Expect(first.Header.Get(mjs.HeaderActor)).To(Equal("ann"))
		Expect(first.Header.Get(mjs.HeaderRecordedAt)).To(Equal(events[0].RecordedAt.UTC().Format(time.RFC3339Nano)))

		m := byID[msgID.String()]
		Expect(m.Subject).To(Equal(name + ".orders.placed"))
		Expect(string(m.Data)).To(Equal("order o1 placed"))
		Expect(m.Header.Get("Content-Type")).To(Equal("text/plain"))
		Expect(m.Header.Get(mjs.HeaderType)).To(Equal(mire.MessageType))

		st, err := relay.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Lag).To(BeZero())
		Expect(st.Delivered).To(BeEquivalentTo(3))
	})

	It("publishes payloads as stored from a process whose registry knows none of their types", func(ctx SpecContext) {
		_, err := store.Append(ctx, "account-a", mire.NoStream, Deposited{Amount: 1}, Deposited{Amount: 2})
		Expect(err).NotTo(HaveOccurred())
		Expect(store.Enqueue(ctx, nil, mire.Message{Subject: name + ".orders.placed", Key: "o1", Payload: []byte("placed")})).To(Succeed())
		blank, err := mire.New(store.Pool(), &mire.Config{Registry: mire.NewRegistry()})
		Expect(err).NotTo(HaveOccurred())

		relay, err := mjs.NewRelay(blank, js, &mjs.Config{Stream: name, SubjectPrefix: name,
			Categories: []string{"account", mire.OutboxDefault}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		msgs := storedMessages(ctx, js, name)
		Expect(checkExactlyOnceInOrder(msgs)).To(Equal(map[string]int64{"account-a": 2, "outbox-o1": 1}))
		var payloads []string
		for _, m := range msgs {
			payloads = append(payloads, string(m.Data))
		}
		Expect(payloads).To(ConsistOf(`{"amount": 1}`, `{"amount": 2}`, "placed"))
	})

	It("shares its partitions between the relays of two replicas, each stream once and in order on the broker", func(ctx SpecContext) {
		Expect(projections.MigratePartitions(ctx, store, 4)).To(Succeed())
		cfg := func(owner string) *mjs.Config {
			rc := quiet()
			rc.Owner = owner
			return &mjs.Config{Stream: name, SubjectPrefix: name, Partitions: 4, BatchSize: 7,
				Categories: []string{"account", mire.OutboxDefault}, Runner: rc}
		}
		for _, owner := range []string{"r1", "r2"} {
			relay, err := mjs.NewRelay(store, js, cfg(owner))
			Expect(err).NotTo(HaveOccurred())
			start(relay)
		}
		for i := range 120 {
			stream := fmt.Sprintf("account-p%d", i%12)
			_, err := store.Append(ctx, stream, mire.Any, Deposited{Amount: int64(i + 1)})
			Expect(err).NotTo(HaveOccurred())
			if i%10 == 0 {
				Expect(store.Enqueue(ctx, nil, mire.Message{Subject: name + ".m", Key: stream})).To(Succeed())
			}
		}
		Eventually(func(ctx context.Context) (projections.Status, error) {
			return projections.StatusOf(ctx, store, "jetstream."+name)
		}).WithContext(ctx).Should(And(HaveField("Lag", BeZero()), HaveField("Owner", "r1, r2")))
		msgs := storedMessages(ctx, js, name)
		Expect(msgs).To(HaveLen(132), "every event and message once")
		perStream := checkExactlyOnceInOrder(msgs)
		Expect(perStream).To(HaveLen(12+6), "12 account streams, and the outbox streams of the 6 keys enqueued to")
		Expect(perStream).To(HaveKeyWithValue("account-p0", BeEquivalentTo(10)))
	})

	It("carries the W3C trace context of the write", func(ctx SpecContext) {
		tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		sc := mire.Metadata{TraceParent: tp}.SpanContext()
		Expect(sc.IsValid()).To(BeTrue())
		_, err := store.Append(trace.ContextWithSpanContext(ctx, sc), "account-t", mire.NoStream, Deposited{Amount: 1})
		Expect(err).NotTo(HaveOccurred())
		relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, SubjectPrefix: name, Categories: []string{"account"}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		msgs := storedMessages(ctx, js, name)
		Expect(msgs).To(HaveLen(1))
		Expect(msgs[0].Header.Get(mjs.HeaderTraceParent)).To(Equal(tp))
	})

	It("never skips a message committed late by a slow transaction, and keeps the key's order", func(ctx SpecContext) {
		slow, err := store.Pool().Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = slow.Rollback(ctx) }()
		// The slow transaction takes its transaction id first, then a quick
		// one enqueues and commits while it is still open.
		Expect(store.EnqueueTx(ctx, slow, nil, mire.Message{Subject: name + ".m", Key: "a", Payload: []byte("slow")})).To(Succeed())
		Expect(store.Enqueue(ctx, nil, mire.Message{Subject: name + ".m", Key: "b", Payload: []byte("quick")})).To(Succeed())
		relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, Categories: []string{mire.OutboxDefault}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		Expect(storedMessages(ctx, js, name)).To(BeEmpty(), "nothing is read past a transaction still running")
		Expect(slow.Commit(ctx)).To(Succeed())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		var got []string
		for _, m := range storedMessages(ctx, js, name) {
			got = append(got, string(m.Data))
		}
		Expect(got).To(Equal([]string{"slow", "quick"}))
	})

	It("warns when the stream's duplicate window is shorter than a republish can take", func(ctx SpecContext) {
		short := newStream(ctx, js, time.Second)
		relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: short, Categories: []string{"account"}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		err = relay.CheckStream(ctx)
		Expect(errors.Is(err, mjs.ErrDuplicateWindow)).To(BeTrue())
		Expect(err.Error()).To(ContainSubstring("keeps message ids for 1s"))
		missing, err := mjs.NewRelay(store, js, &mjs.Config{Stream: "nope", Categories: []string{"account"}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		Expect(missing.CheckStream(ctx)).To(MatchError(jetstream.ErrStreamNotFound))
	})

	It("halts on an event whose subject function fails, naming it", func(ctx SpecContext) {
		_, err := store.Append(ctx, "account-x", mire.NoStream, Deposited{Amount: 1})
		Expect(err).NotTo(HaveOccurred())
		cfg := quiet()
		cfg.MaxAttempts = 2
		relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, Categories: []string{"account"}, Runner: cfg,
			Subject: func(env mire.Envelope) (string, error) { return "", fmt.Errorf("no subject for %s", env.StreamID) }})
		Expect(err).NotTo(HaveOccurred())
		err = relay.CatchUp(ctx)
		Expect(err).To(MatchError(projections.ErrHalted))
		Expect(err.Error()).To(ContainSubstring("no subject for account-x"))
	})

	DescribeTable("refuses a bad configuration, naming the problem and the value",
		func(cfg *mjs.Config, want string) {
			_, err := mjs.NewRelay(store, js, cfg)
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("no config", nil, "Stream and Categories are required"),
		Entry("no stream", &mjs.Config{Categories: []string{"a"}}, `stream name ""`),
		Entry("a stream with a dot", &mjs.Config{Stream: "a.b", Categories: []string{"a"}}, `stream name "a.b"`),
		Entry("no categories", &mjs.Config{Stream: "S"}, "no categories"),
		Entry("a wildcard prefix", &mjs.Config{Stream: "S", Categories: []string{"a"}, SubjectPrefix: "x.*"}, `subject prefix "x.*"`),
		Entry("a prefix with an empty token", &mjs.Config{Stream: "S", Categories: []string{"a"}, SubjectPrefix: "x..y"}, `subject prefix "x..y"`),
		Entry("a publish timeout past the lease", &mjs.Config{Stream: "S", Categories: []string{"a"}, PublishTimeout: time.Minute},
			"PublishTimeout 1m0s must be shorter than the runner's LeaseTTL 10s"),
		Entry("a negative in-flight bound", &mjs.Config{Stream: "S", Categories: []string{"a"}, MaxInFlight: -1}, "negative MaxInFlight"),
	)

	DescribeTable("refuses to build a message on a subject that is not a NATS subject without wildcards",
		func(subject string) {
			relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: "S", Categories: []string{"account"},
				Subject: func(mire.Envelope) (string, error) { return subject, nil }})
			Expect(err).NotTo(HaveOccurred())
			_, err = relay.Message(mire.Envelope{StreamID: "account-a", Category: "account", Type: "Deposited"})
			Expect(err).To(MatchError(fmt.Sprintf("subject %q is not a NATS subject without wildcards", subject)))
		},
		Entry("empty", ""), Entry("a wildcard", "a.*"), Entry("a full wildcard", "a.>"), Entry("an empty token", "a..b"),
		Entry("a leading dot", ".a"), Entry("a trailing dot", "a."), Entry("a space", "a b"), Entry("a tab", "a\tb"),
	)

	It("refuses a nil store or JetStream", func() {
		_, err := mjs.NewRelay(nil, js, &mjs.Config{Stream: "S", Categories: []string{"a"}})
		Expect(err).To(MatchError(ContainSubstring("store is nil")))
		_, err = mjs.NewRelay(store, nil, &mjs.Config{Stream: "S", Categories: []string{"a"}})
		Expect(err).To(MatchError(ContainSubstring("JetStream is nil")))
	})

	It("publishes what a transactional projection enqueues, exactly once with its read model", func(ctx SpecContext) {
		_, err := store.Pool().Exec(ctx, `CREATE TABLE totals (stream text PRIMARY KEY, total bigint NOT NULL)`)
		Expect(err).NotTo(HaveOccurred())
		totals, err := projections.NewRunner(store, quiet(), projections.Projection{Name: "totals", Categories: []string{"account"},
			Handler: projections.Routes(projections.On(func(ctx context.Context, tx pgx.Tx, e Deposited, env mire.Envelope) error {
				var total int64
				err := tx.QueryRow(ctx, `INSERT INTO totals VALUES ($1, $2) ON CONFLICT (stream) DO UPDATE SET total = totals.total + $2
					RETURNING total`, env.StreamID, e.Amount).Scan(&total)
				if err != nil {
					return err
				}
				return store.EnqueueTx(ctx, tx, nil, mire.Message{ID: uuid.NewSHA1(env.ID, []byte("total")),
					Subject: name + ".totals", Key: env.StreamID, Payload: []byte(strconv.FormatInt(total, 10))})
			}))})
		Expect(err).NotTo(HaveOccurred())
		for i := range 5 {
			_, err := store.Append(ctx, "account-p", mire.Any, Deposited{Amount: int64(i + 1)})
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(totals.CatchUp(ctx)).To(Succeed())
		relay, err := mjs.NewRelay(store, js, &mjs.Config{Stream: name, Categories: []string{mire.OutboxDefault}, Runner: quiet()})
		Expect(err).NotTo(HaveOccurred())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		var got []string
		for _, m := range storedMessages(ctx, js, name) {
			got = append(got, string(m.Data))
		}
		Expect(got).To(Equal([]string{"1", "3", "6", "10", "15"}))
	})
})
