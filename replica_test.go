package mire_test

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"log/slog"
	"os"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// replicated is a throwaway primary with a streaming replica, and one
// fresh database's pool on each.
type replicated struct {
	replica      *pgtest.Server
	primaryPool  *pgxpool.Pool
	replicaPool  *pgxpool.Pool
	primaryDBURL string
	replicaDBURL string
}

// startReplicated starts a primary and a replica of it, both stopped when
// the current node ends, and a database on them.
func startReplicated(ctx context.Context) *replicated {
	if _, err := pgtest.FindBinaries(); err != nil && os.Getenv(pgtest.EnvTestDatabase) != "" {
		Skip("the suite runs on " + pgtest.EnvTestDatabase + "'s server, and a replica needs the PostgreSQL server programs here: " + err.Error())
	}
	primary, err := pgtest.StartThrowaway(ctx, nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(primary.Stop)
	replica, err := pgtest.StartReplica(ctx, primary, nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(replica.Stop) // before the primary's: cleanups run last in, first out
	url, _, err := pgtest.NewDatabase(ctx, primary.URL())
	Expect(err).NotTo(HaveOccurred())
	rurl, err := replica.DatabaseURL(url)
	Expect(err).NotTo(HaveOccurred())
	Expect(replica.CatchUp(ctx)).To(Succeed())
	return &replicated{replica: replica, primaryDBURL: url, replicaDBURL: rurl,
		primaryPool: db.Connect(ctx, url), replicaPool: db.Connect(ctx, rurl)}
}

// store returns a store on the pair, with cfg's replica settings, metrics
// into a reader of its own, and its log into a buffer.
func (r *replicated) store(cfg mire.Config) (*mire.Store, *sdkmetric.ManualReader, *syncBuffer) {
	reader := sdkmetric.NewManualReader()
	logs := &syncBuffer{}
	cfg.Replica = r.replicaPool
	cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	store, err := mire.New(r.primaryPool, &cfg)
	Expect(err).NotTo(HaveOccurred())
	return store, reader, logs
}

// syncBuffer is a bytes.Buffer safe for the store's background checks to
// log into.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fallbacks returns mire.replica.fallbacks by attribute set.
func fallbacks(ctx context.Context, reader *sdkmetric.ManualReader) map[string]int64 {
	return sums(ctx, reader)["mire.replica.fallbacks"]
}

// deposit saves a deposit of amount on account id.
func deposit(ctx context.Context, store *mire.Store, id string, amount int64) {
	acc, err := mire.Load[Account](mire.WithPrimary(ctx), store, id)
	Expect(err).NotTo(HaveOccurred())
	Expect(acc.Record(Deposited{Amount: amount})).To(Succeed())
	Expect(store.Save(ctx, acc)).To(Succeed())
}

// noChecks keeps the store's background replica checks out of a spec
// that wants every load to consult the replica.
const noChecks = time.Hour

var _ = Describe("A store with a replica", Ordered, func() {
	var pair *replicated
	BeforeAll(func(ctx SpecContext) {
		pair = startReplicated(ctx)
	})
	// Every spec leaves the replica replaying, caught up.
	AfterEach(func(ctx SpecContext) {
		Expect(pair.replica.ResumeReplay(ctx)).To(Succeed())
		Expect(pair.replica.CatchUp(ctx)).To(Succeed())
	})

	It("loads and reads from a lagging replica the version it has, and refuses to save over newer events", func(ctx SpecContext) {
		store, reader, _ := pair.store(mire.Config{ReplicaCheckInterval: noChecks})
		id := openAccount(ctx, store, 100)
		Expect(pair.replica.CatchUp(ctx)).To(Succeed())
		Expect(pair.replica.PauseReplay(ctx)).To(Succeed())
		deposit(ctx, store, id, 5)

		stale, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(stale.Version).To(Equal(int64(1)))
		Expect(stale.State.Balance).To(Equal(int64(100)))
		fresh, err := mire.Load[Account](mire.WithPrimary(ctx), store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(fresh.Version).To(Equal(int64(2)))
		for name, read := range map[string]func() int{
			"ReadStream":   func() int { return countEvents(store.ReadStream(ctx, mire.StreamID("account", id), nil)) },
			"ReadCategory": func() int { return countEvents(store.ReadCategory(ctx, "account", nil)) },
			"ReadAll":      func() int { return countEvents(store.ReadAll(ctx, nil)) },
		} {
			Expect(read()).To(Equal(1), name)
		}
		Expect(countEvents(store.ReadStream(mire.WithPrimary(ctx), mire.StreamID("account", id), nil))).To(Equal(2))

		Expect(stale.Record(Withdrawn{Amount: 100})).To(Succeed())
		err = store.Save(ctx, stale)
		var conflict *mire.ConcurrencyError
		Expect(errors.As(err, &conflict)).To(BeTrue(), "%v", err)
		Expect(conflict.Actual).To(Equal(int64(2)))
		after, err := mire.Load[Account](mire.WithPrimary(ctx), store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(after.State.Balance).To(Equal(int64(105)))
		Expect(fallbacks(ctx, reader)).To(BeEmpty())
	})

	It("loads what a save's token covers, from the primary while the replica's replay is paused", func(ctx SpecContext) {
		store, reader, logs := pair.store(mire.Config{ReplicaWait: time.Minute, ReplicaCheckInterval: noChecks})
		id := openAccount(ctx, store, 100)
		Expect(pair.replica.PauseReplay(ctx)).To(Succeed())
		deposit(ctx, store, id, 5)
		tok, err := store.Token(ctx)
		Expect(err).NotTo(HaveOccurred())

		acc, err := mire.Load[Account](mire.WithToken(ctx, tok), store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Version).To(Equal(int64(2)))
		Expect(countEvents(store.ReadStream(mire.WithToken(ctx, tok), acc.StreamID(), nil))).To(Equal(2))
		Expect(fallbacks(ctx, reader)).To(Equal(map[string]int64{
			"db.operation.name=load,mire.reason=lag": 1,
			"db.operation.name=read,mire.reason=lag": 1,
		}))
		Expect(logs.String()).To(ContainSubstring("read from the primary instead of the replica"))
		Expect(logs.String()).To(ContainSubstring("replay is paused"))

		// Resumed, the replica replays past the token and serves it.
		Expect(pair.replica.ResumeReplay(ctx)).To(Succeed())
		acc, err = mire.Load[Account](mire.WithToken(ctx, tok), store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Version).To(Equal(int64(2)))
		Expect(fallbacks(ctx, reader)).To(HaveKeyWithValue("db.operation.name=load,mire.reason=lag", int64(1)))
	})

	When("the replica applies commits late", func() {
		// applyDelay outlasts the steps from a save to its load on a
		// loaded machine by far.
		const applyDelay = "3s"
		BeforeEach(func(ctx SpecContext) {
			setApplyDelay(ctx, pair.replicaDBURL, applyDelay)
			DeferCleanup(setApplyDelay, pair.replicaDBURL, "0")
		})

		It("waits for the replica to replay past the token, and reads it there", func(ctx SpecContext) {
			store, reader, _ := pair.store(mire.Config{ReplicaWait: time.Minute, ReplicaCheckInterval: noChecks})
			id := openAccount(ctx, store, 100)
			tok, err := store.Token(ctx)
			Expect(err).NotTo(HaveOccurred())
			acc, err := mire.Load[Account](mire.WithToken(ctx, tok), store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Version).To(Equal(int64(1)))
			Expect(fallbacks(ctx, reader)).To(BeEmpty())
		})

		It("returns the context's error when it ends during the wait, counting no fallback", func(ctx SpecContext) {
			store, reader, _ := pair.store(mire.Config{ReplicaWait: time.Minute, ReplicaCheckInterval: noChecks})
			id := openAccount(ctx, store, 100)
			tok, err := store.Token(ctx)
			Expect(err).NotTo(HaveOccurred())
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			_, err = mire.Load[Account](mire.WithToken(short, tok), store, id)
			Expect(err).To(MatchError(context.DeadlineExceeded))
			Expect(fallbacks(ctx, reader)).To(BeEmpty())
		})

		It("reads from the primary once the bound has passed", func(ctx SpecContext) {
			// The replica applies no commit within applyDelay; the bound is 1 ms.
			store, reader, _ := pair.store(mire.Config{ReplicaWait: time.Millisecond, ReplicaCheckInterval: noChecks})
			id := openAccount(ctx, store, 100)
			tok, err := store.Token(ctx)
			Expect(err).NotTo(HaveOccurred())
			acc, err := mire.Load[Account](mire.WithToken(ctx, tok), store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Version).To(Equal(int64(1)))
			Expect(fallbacks(ctx, reader)).To(Equal(map[string]int64{"db.operation.name=load,mire.reason=lag": 1}))
		})
	})

	It("sends every load to the primary while its checks find the replica lagging, and back once it keeps up", func(ctx SpecContext) {
		interval := 20 * time.Millisecond
		store, reader, _ := pair.store(mire.Config{ReplicaWait: 50 * time.Millisecond, ReplicaCheckInterval: interval})
		id := openAccount(ctx, store, 100)
		Expect(pair.replica.CatchUp(ctx)).To(Succeed())
		opened, err := store.Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(pair.replica.PauseReplay(ctx)).To(Succeed())
		deposit(ctx, store, id, 5)
		// No token: the loads see version 2 once a check has found the
		// replica behind the primary's position.
		Eventually(func(ctx context.Context) int64 {
			acc, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			return acc.Version
		}).WithContext(ctx).WithPolling(interval).WithTimeout(500 * interval).Should(Equal(int64(2)))
		lagging := fallbacks(ctx, reader)["db.operation.name=load,mire.reason=lag"]
		Expect(lagging).To(BeNumerically(">", 0))

		// A token the lagging replica has replayed is served there.
		acc, err := mire.Load[Account](mire.WithToken(ctx, opened), store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Version).To(Equal(int64(1)))
		Expect(fallbacks(ctx, reader)["db.operation.name=load,mire.reason=lag"]).To(Equal(lagging))

		Expect(pair.replica.ResumeReplay(ctx)).To(Succeed())
		Expect(pair.replica.CatchUp(ctx)).To(Succeed())
		// Once a check has found it current, loads stop falling back.
		Eventually(func(ctx context.Context) int64 {
			before := fallbacks(ctx, reader)["db.operation.name=load,mire.reason=lag"]
			_, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			return fallbacks(ctx, reader)["db.operation.name=load,mire.reason=lag"] - before
		}).WithContext(ctx).WithPolling(interval).WithTimeout(500 * interval).Should(BeZero())
	})

	It("loads an aggregate that takes snapshots from the replica, with a token, from its snapshot", func(ctx SpecContext) {
		store, reader, _ := pair.store(mire.Config{ReplicaWait: time.Minute, ReplicaCheckInterval: noChecks})
		ledger, err := mire.Create[Ledger](store, "snap")
		Expect(err).NotTo(HaveOccurred())
		Expect(ledger.Record(LedgerOpened{Name: "snap"})).To(Succeed())
		for i := range 149 {
			Expect(ledger.Record(LedgerPosted{Amount: 1})).To(Succeed())
			if i == 98 { // version 100: a snapshot
				Expect(store.Save(ctx, ledger)).To(Succeed())
			}
		}
		Expect(store.Save(ctx, ledger)).To(Succeed())
		tok, err := store.Token(ctx)
		Expect(err).NotTo(HaveOccurred())

		loaded, err := mire.Load[Ledger](mire.WithToken(ctx, tok), store, "snap")
		Expect(err).NotTo(HaveOccurred())
		Expect(loaded.Version).To(Equal(int64(150)))
		Expect(loaded.State.Balance).To(Equal(int64(149)))
		Expect(loaded.State.Applied).To(Equal(50), "the events after the snapshot at 100")
		Expect(fallbacks(ctx, reader)).To(BeEmpty())
	})

	It("says on the load's span whether it read the replica, and why it did not", func(ctx SpecContext) {
		spans := tracetest.NewInMemoryExporter()
		store, _, _ := pair.store(mire.Config{ReplicaCheckInterval: noChecks,
			TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))})
		id := openAccount(ctx, store, 100)
		Expect(pair.replica.CatchUp(ctx)).To(Succeed())
		spans.Reset()
		_, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(spans.GetSpans()).To(HaveLen(1))
		Expect(spanAttrs(spans.GetSpans()[0])).To(HaveKeyWithValue(attribute.Key("mire.replica"), attribute.BoolValue(true)))

		Expect(pair.replica.PauseReplay(ctx)).To(Succeed())
		deposit(ctx, store, id, 5)
		tok, err := store.Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		spans.Reset()
		_, err = mire.Load[Account](mire.WithToken(ctx, tok), store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(spans.GetSpans()).To(HaveLen(1))
		span := spans.GetSpans()[0]
		Expect(spanAttrs(span)).To(HaveKeyWithValue(attribute.Key("mire.replica"), attribute.BoolValue(false)))
		Expect(span.Events).To(HaveLen(1))
		Expect(span.Events[0].Name).To(Equal("mire.replica.fallback"))
		Expect(span.Events[0].Attributes).To(ContainElement(attribute.String("mire.reason", "lag")))
	})

	It("never touches the replica in a TxScope, a save, an append or a token", func(ctx SpecContext) {
		store, _, _ := pair.store(mire.Config{ReplicaCheckInterval: noChecks})
		id := openAccount(ctx, store, 100)
		other := openAccount(ctx, store, 100)
		acquired := pair.replicaPool.Stat().AcquireCount()

		Expect(store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
			Expect(err).NotTo(HaveOccurred())
			plain, err := mire.Load[Account](ctx, scope, other)
			Expect(err).NotTo(HaveOccurred())
			Expect(countEvents(scope.ReadStream(ctx, acc.StreamID(), nil))).To(Equal(1))
			Expect(acc.Record(Withdrawn{Amount: 10})).To(Succeed())
			Expect(plain.Record(Deposited{Amount: 10})).To(Succeed())
			return scope.Save(ctx, acc, plain)
		})).To(Succeed())
		Expect(store.Append(ctx, mire.StreamID("account", id), mire.Any, Deposited{Amount: 1})).Error().NotTo(HaveOccurred())
		_, err := store.Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(pair.replicaPool.Stat().AcquireCount()).To(Equal(acquired))

		// A load on the store does use it.
		_, err = mire.LoadOrNew[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(pair.replicaPool.Stat().AcquireCount()).To(BeNumerically(">", acquired))
	})

	Describe("Update", func() {
		It("reloads from the primary after a conflict with a stale load, and saves", func(ctx SpecContext) {
			store, _, _ := pair.store(mire.Config{ReplicaCheckInterval: noChecks})
			id := openAccount(ctx, store, 100)
			Expect(pair.replica.CatchUp(ctx)).To(Succeed())
			Expect(pair.replica.PauseReplay(ctx)).To(Succeed())
			deposit(ctx, store, id, 5)

			var seen []int64
			acc, err := mire.Update[Account](ctx, store, id, func(acc *mire.Root[Account]) error {
				seen = append(seen, acc.Version)
				return acc.Record(Withdrawn{Amount: 50})
			}, nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(seen).To(Equal([]int64{1, 2}))
			Expect(acc.Version).To(Equal(int64(3)))
			Expect(acc.State.Balance).To(Equal(int64(55)))
		})

		It("gives up after its attempts, wrapping the last conflict", func(ctx SpecContext) {
			store, _, _ := pair.store(mire.Config{ReplicaCheckInterval: noChecks})
			id := openAccount(ctx, store, 100)
			Expect(pair.replica.CatchUp(ctx)).To(Succeed())
			Expect(pair.replica.PauseReplay(ctx)).To(Succeed())
			deposit(ctx, store, id, 5)

			_, err := mire.Update[Account](ctx, store, id, func(acc *mire.Root[Account]) error {
				return acc.Record(Withdrawn{Amount: 50})
			}, &mire.UpdateOpts{Attempts: 1})
			var conflict *mire.ConcurrencyError
			Expect(errors.As(err, &conflict)).To(BeTrue(), "%v", err)
			Expect(err).To(MatchError(ContainSubstring("gave up after 1 attempts")))
			Expect(conflict.Expected).To(Equal(mire.ExpectedVersion(1)))
		})

		It("decides again on the primary's state before it reports a refusal made on a stale load", func(ctx SpecContext) {
			store, _, _ := pair.store(mire.Config{ReplicaCheckInterval: noChecks})
			id := openAccount(ctx, store, 10)
			Expect(pair.replica.CatchUp(ctx)).To(Succeed())
			Expect(pair.replica.PauseReplay(ctx)).To(Succeed())
			deposit(ctx, store, id, 90)

			errShort := errors.New("insufficient funds")
			var seen []int64
			acc, err := mire.Update[Account](ctx, store, id, func(acc *mire.Root[Account]) error {
				seen = append(seen, acc.State.Balance)
				if acc.State.Balance < 50 {
					return errShort
				}
				return acc.Record(Withdrawn{Amount: 50})
			}, nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(seen).To(Equal([]int64{10, 100}))
			Expect(acc.State.Balance).To(Equal(int64(50)))

			// A refusal on a current Root is reported as it is.
			_, err = mire.Update[Account](mire.WithPrimary(ctx), store, id, func(acc *mire.Root[Account]) error {
				return errShort
			}, nil)
			Expect(err).To(BeIdenticalTo(errShort))
		})
	})
})

var _ = Describe("A store whose replica stops mid-run", func() {
	It("keeps loading and reading from the primary, and says so", func(ctx SpecContext) {
		pair := startReplicated(ctx)
		store, reader, logs := pair.store(mire.Config{ReplicaCheckInterval: noChecks})
		id := openAccount(ctx, store, 100)
		Expect(pair.replica.CatchUp(ctx)).To(Succeed())
		_, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())

		Expect(pair.replica.Stop()).To(Succeed())
		deposit(ctx, store, id, 5)
		for range 3 {
			acc, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Version).To(Equal(int64(2)))
			Expect(countEvents(store.ReadAll(ctx, nil))).To(Equal(2))
		}
		tok, err := store.Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		acc, err := mire.Load[Account](mire.WithToken(ctx, tok), store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Version).To(Equal(int64(2)))

		got := fallbacks(ctx, reader)
		Expect(got).To(HaveKey("db.operation.name=load,mire.reason=unavailable"))
		Expect(got["db.operation.name=load,mire.reason=unavailable"] + got["db.operation.name=read,mire.reason=unavailable"]).To(Equal(int64(7)))
		Expect(logs.String()).To(ContainSubstring("reason=unavailable"))
		Expect(logs.String()).To(ContainSubstring(`msg="mire: read from the primary instead of the replica"`))
	})
})

var _ = Describe("A read whose replica stops mid-way", func() {
	It("goes on from the primary where it got to", func(ctx SpecContext) {
		pair := startReplicated(ctx)
		store, reader, _ := pair.store(mire.Config{ReplicaCheckInterval: noChecks})
		id := openAccount(ctx, store, 100)
		for range 4 {
			deposit(ctx, store, id, 1)
		}
		Expect(pair.replica.CatchUp(ctx)).To(Succeed())

		var versions []int64
		for env, err := range store.ReadStream(ctx, mire.StreamID("account", id), &mire.ReadOpts{BatchSize: 2}) {
			Expect(err).NotTo(HaveOccurred())
			versions = append(versions, env.Version)
			if len(versions) == 2 {
				Expect(pair.replica.Stop()).To(Succeed())
			}
		}
		Expect(versions).To(Equal([]int64{1, 2, 3, 4, 5}))
		Expect(fallbacks(ctx, reader)).To(Equal(map[string]int64{"db.operation.name=read,mire.reason=unavailable": 1}))
	})
})

var _ = Describe("Replica configuration", func() {
	It("refuses bad settings, naming them", func(ctx SpecContext) {
		_, pool := db.Fresh(ctx)
		for cfg, want := range map[*mire.Config]string{
			{Replica: pool, ReplicaWait: -time.Second}:          "negative ReplicaWait -1s",
			{Replica: pool, ReplicaCheckInterval: -time.Second}: "negative ReplicaCheckInterval -1s",
			{ReplicaWait: time.Second}:                          "ReplicaWait or ReplicaCheckInterval is set but Replica is nil",
		} {
			_, err := mire.New(pool, cfg)
			Expect(err).To(MatchError(ContainSubstring(want)))
		}
	})

	It("without a replica, reads the primary whatever the context asks", func(ctx SpecContext) {
		_, pool := db.Fresh(ctx)
		store := newStore(pool)
		id := openAccount(ctx, store, 100)
		tok, err := store.Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(tok.IsZero()).To(BeFalse())
		acc, err := mire.Load[Account](mire.WithToken(ctx, tok), store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Version).To(Equal(int64(1)))
		Expect(store.Replica()).To(BeNil())
	})

	It("refuses bad Update options and a nil decision", func(ctx SpecContext) {
		_, pool := db.Fresh(ctx)
		store := newStore(pool)
		_, err := mire.Update[Account](ctx, store, "a", nil, nil)
		Expect(err).To(MatchError(`mire: update *mire_test.Account "a": decide is nil`))
		noop := func(*mire.Root[Account]) error { return nil }
		_, err = mire.Update[Account](ctx, store, "a", noop, &mire.UpdateOpts{Attempts: -1})
		Expect(err).To(MatchError(ContainSubstring("negative attempts -1")))
		_, err = mire.Update[Account](ctx, store, "", noop, nil)
		Expect(err).To(MatchError(mire.ErrInvalidID))
	})

	It("retries Update under contention until every decision is saved", func(ctx SpecContext) {
		_, pool := db.Fresh(ctx)
		store := newStore(pool)
		id := openAccount(ctx, store, 0)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				_, err := mire.Update[Account](ctx, store, id, func(acc *mire.Root[Account]) error {
					return acc.Record(Deposited{Amount: 1})
				}, &mire.UpdateOpts{Attempts: 100, RetryBackoff: time.Millisecond})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			Expect(err).NotTo(HaveOccurred())
		}
		acc, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.State.Balance).To(Equal(int64(8)))
	})
})

var _ = DescribeTable("ParseToken",
	func(s, want string) {
		tok, err := mire.ParseToken(s)
		if want == "" {
			Expect(err).NotTo(HaveOccurred())
			Expect(tok.String()).To(Equal(s))
			return
		}
		Expect(err).To(MatchError(want))
	},
	Entry("an LSN", "16/B374D848", ""),
	Entry("zero", "0/0", ""),
	Entry("empty", "", `mire: parse token "": want a WAL position such as 16/B374D848`),
	Entry("garbage", "hello", `mire: parse token "hello": want a WAL position such as 16/B374D848`),
	Entry("no low half", "16/", `mire: parse token "16/": want a WAL position such as 16/B374D848`),
	Entry("not hex", "16/XYZ", `mire: parse token "16/XYZ": want a WAL position such as 16/B374D848`),
	Entry("too long", "123456789/0", `mire: parse token "123456789/0": want a WAL position such as 16/B374D848`),
	Entry("signed", "-1/0", `mire: parse token "-1/0": want a WAL position such as 16/B374D848`),
)

// setApplyDelay sets the replica's recovery_min_apply_delay, which holds
// back the replay of each commit record for that long after the commit.
func setApplyDelay(ctx context.Context, replicaURL, delay string) {
	conn, err := pgx.Connect(ctx, replicaURL)
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `ALTER SYSTEM SET recovery_min_apply_delay = '`+delay+`'`)
	Expect(err).NotTo(HaveOccurred())
	_, err = conn.Exec(ctx, `SELECT pg_reload_conf()`)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func(ctx context.Context) string {
		var got string
		Expect(conn.QueryRow(ctx, `SHOW recovery_min_apply_delay`).Scan(&got)).To(Succeed())
		return got
	}).WithContext(ctx).Should(Equal(delay))
}

// countEvents counts what a read yields, failing on an error.
func countEvents(events iter.Seq2[mire.Envelope, error]) int {
	n := 0
	for _, err := range events {
		Expect(err).NotTo(HaveOccurred())
		n++
	}
	return n
}
