package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
)

// takeXid gives tx its transaction id now, as any first write would.
func takeXid(ctx context.Context, tx pgx.Tx) {
	var xid uint64
	Expect(tx.QueryRow(ctx, `SELECT pg_current_xact_id()`).Scan(&xid)).To(Succeed())
}

func begin(ctx context.Context, store *mire.Store) pgx.Tx {
	tx, err := store.Pool().Begin(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx SpecContext) { _ = tx.Rollback(ctx) })
	return tx
}

func appendTx(ctx context.Context, store *mire.Store, tx pgx.Tx, stream string, events ...any) {
	_, err := store.AppendTx(ctx, tx, stream, mire.StreamExists, events...)
	Expect(err).NotTo(HaveOccurred())
}

func positionOf(ctx context.Context, store *mire.Store, stream string, version int64) int64 {
	var pos int64
	Expect(store.Pool().QueryRow(ctx, `SELECT position FROM mire.events WHERE stream_id = $1 AND version = $2`,
		stream, version).Scan(&pos)).To(Succeed())
	return pos
}

var _ = Describe("Guarantee 1: no event is skipped", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	It("delivers an event whose transaction took the lower position but committed after a later one was handled", func(ctx SpecContext) {
		a, b := open(ctx, e.store, 0), open(ctx, e.store, 0)
		var s seen
		start(newRunner(e.store, "", projections.Projection{Name: "noskip", Handler: s.recorder("r")}))
		Eventually(s.count).WithContext(ctx).Should(Equal(2))

		// B gets its transaction id first, so it may commit and be read
		// while A is still open; A then appends first and stays open.
		txB := begin(ctx, e.store)
		takeXid(ctx, txB)
		txA := begin(ctx, e.store)
		appendTx(ctx, e.store, txA, a, Deposited{Amount: 1})
		appendTx(ctx, e.store, txB, b, Deposited{Amount: 2})
		Expect(txB.Commit(ctx)).To(Succeed())

		Eventually(s.streamVersions).WithContext(ctx).WithArguments(b).Should(Equal([]int64{1, 2}))
		Expect(s.streamVersions(a)).To(Equal([]int64{1}))

		Expect(txA.Commit(ctx)).To(Succeed())
		Eventually(s.streamVersions).WithContext(ctx).WithArguments(a).Should(Equal([]int64{1, 2}))
		Expect(positionOf(ctx, e.store, a, 2)).To(BeNumerically("<", positionOf(ctx, e.store, b, 2)))
		Expect(s.positions()).To(HaveLen(4), "each event exactly once")
		Eventually(statusFn(e.store, "noskip")).WithContext(ctx).Should(HaveField("Lag", BeZero()))
	})

	It("waits for an older open transaction instead of reading past it", func(ctx SpecContext) {
		a, b := open(ctx, e.store, 0), open(ctx, e.store, 0)
		txA := begin(ctx, e.store)
		appendTx(ctx, e.store, txA, a, Deposited{Amount: 1})
		deposit(ctx, e.store, b, 2) // commits, with a later transaction id

		r := newRunner(e.store, "", projections.Projection{Name: "older", Handler: balanceHandler(), BatchSize: 1})
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 0, b: 0}), "b's deposit waits behind A")
		Expect(status(ctx, e.store, "older").Lag).To(BeEquivalentTo(1))

		Expect(txA.Commit(ctx)).To(Succeed())
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 1, b: 2}))
	})
})

var _ = Describe("Guarantee 2: each stream in version order across transactions", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	// inverted builds the interleaving: a transaction takes its id early
	// (by how), a later transaction appends v2 to the stream and commits,
	// then the early one appends v3 and commits. Read by (xid, position),
	// v3 comes before v2.
	inverted := func(ctx context.Context, how string) string {
		id := strings.TrimPrefix(open(ctx, e.store, 100), "account-")
		stream := mire.StreamID("account", id)
		scope, err := e.store.Begin(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = scope.Rollback(ctx) }()
		switch how {
		case "a TxScope that saved another aggregate first":
			other, err := mire.LoadOrNew[Account](ctx, e.store, id+"-other")
			Expect(err).NotTo(HaveOccurred())
			Expect(other.Record(Opened{Initial: 1})).To(Succeed())
			Expect(scope.Save(ctx, other)).To(Succeed())
		case "a user transaction that wrote its own rows first":
			_, err := scope.Tx().Exec(ctx, `CREATE TEMP TABLE own_rows (x int); INSERT INTO own_rows VALUES (1)`)
			Expect(err).NotTo(HaveOccurred())
		}
		deposit(ctx, e.store, stream, 10) // v2, later transaction, committed
		acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Version).To(BeEquivalentTo(2))
		Expect(acc.Record(Withdrawn{Amount: 30})).To(Succeed()) // v3, early transaction
		Expect(scope.Save(ctx, acc)).To(Succeed())
		Expect(scope.Commit(ctx)).To(Succeed())

		var v2, v3 uint64
		Expect(e.pool.QueryRow(ctx, `SELECT
			(SELECT xid FROM mire.events WHERE stream_id = $1 AND version = 2),
			(SELECT xid FROM mire.events WHERE stream_id = $1 AND version = 3)`, stream).Scan(&v2, &v3)).To(Succeed())
		Expect(v3).To(BeNumerically("<", v2), "the interleaving sorts v3 before v2")
		return stream
	}

	for _, how := range []string{"a TxScope that saved another aggregate first", "a user transaction that wrote its own rows first"} {
		DescribeTable("delivers v1, v2, v3 when "+how+" appends v3",
			func(ctx SpecContext, batch int) {
				stream := inverted(ctx, how)
				var s seen
				r := newRunner(e.store, "", projections.Projection{Name: "ordered", BatchSize: batch,
					Handler: projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
						s.add(env, "")
						return balanceHandler().Handle(ctx, tx, env)
					})})
				Expect(r.CatchUp(ctx)).To(Succeed())
				Expect(s.streamVersions(stream)).To(Equal([]int64{1, 2, 3}))
				Expect(balances(ctx, e.pool)).To(Equal(foldedBalances(ctx, e.pool)))
				st := status(ctx, e.store, "ordered")
				Expect(st.State).To(Equal(projections.Running))
				Expect(st.Held).To(BeZero())
			},
			Entry("batch size 1", 1),
			Entry("batch size 2", 2),
			Entry("default batch size", 0),
		)
	}

	It("keeps the held-back event with the checkpoint across a takeover", func(ctx SpecContext) {
		id := strings.TrimPrefix(open(ctx, e.store, 100), "account-")
		stream := mire.StreamID("account", id)
		early := begin(ctx, e.store)
		takeXid(ctx, early)
		middle := begin(ctx, e.store) // its id sorts between: it keeps v2 unreadable
		takeXid(ctx, middle)
		deposit(ctx, e.store, stream, 10)
		appendTx(ctx, e.store, early, stream, Withdrawn{Amount: 30})
		Expect(early.Commit(ctx)).To(Succeed())

		var s seen
		p := func(who string) projections.Projection {
			return projections.Projection{Name: "held", BatchSize: 1, Handler: projections.HandlerFunc(
				func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
					s.add(env, who)
					return balanceHandler().Handle(ctx, tx, env)
				})}
		}
		stop := start(newRunner(e.store, "first", p("first")))
		Eventually(statusFn(e.store, "held")).WithContext(ctx).Should(HaveField("Held", 1))
		Expect(s.streamVersions(stream)).To(Equal([]int64{1}))
		stop()

		Expect(middle.Commit(ctx)).To(Succeed())
		start(newRunner(e.another(ctx), "second", p("second")))
		Eventually(s.streamVersions).WithContext(ctx).WithArguments(stream).Should(Equal([]int64{1, 2, 3}))
		Expect(s.owners()).To(Equal(map[string]int{"first": 1, "second": 2}))
		// The recorder sees events before their batch commits.
		Eventually(balances).WithContext(ctx).WithArguments(e.pool).Should(Equal(map[string]int64{stream: 80}))
	})
})

var _ = Describe("Guarantee 3: one active worker per projection", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	It("lets one of two runners handle events, and the other take over within TTL + recheck after a crash", func(ctx SpecContext) {
		var s seen
		runners := map[string]*projections.Runner{}
		stops := map[string]func(){}
		for _, name := range []string{"one", "two"} {
			store := e.another(ctx) // separate pools
			r := newRunner(store, name, projections.Projection{Name: "single", Handler: s.recorder(name), BatchSize: 3})
			projections.CrashOnStop(r)
			runners[name], stops[name] = r, start(r)
		}
		a := open(ctx, e.store, 0)
		for range 20 {
			deposit(ctx, e.store, a, 1)
		}
		Eventually(s.count).WithContext(ctx).Should(Equal(21))
		// The handler sees a batch before its checkpoint commits: a crash
		// in between would rightly deliver that batch again (a Plain
		// handler is at least once). Crash only once all is checkpointed.
		Eventually(statusFn(e.store, "single")).WithContext(ctx).Should(HaveField("Delivered", BeEquivalentTo(21)))
		Expect(s.owners()).To(HaveLen(1))
		before := status(ctx, e.store, "single")
		active := before.Owner
		Expect(s.owners()).To(HaveKey(active))
		standby := map[string]string{"one": "two", "two": "one"}[active]

		stops[active]() // cancelled without releasing its lease
		deposit(ctx, e.store, a, 1)
		cfg := quiet()
		Eventually(statusFn(e.store, "single")).WithContext(ctx).WithTimeout(patience(cfg)).Should(HaveField("Owner", standby))
		Eventually(s.count).WithContext(ctx).Should(Equal(22))
		Expect(s.owners()[standby]).To(Equal(1))
		Expect(status(ctx, e.store, "single").Fence).To(BeNumerically(">", before.Fence))
	})

	It("hands over at once when the active runner stops cleanly", func(ctx SpecContext) {
		var s seen
		stop1 := start(newRunner(e.store, "one", projections.Projection{Name: "clean", Handler: s.recorder("one")}))
		Eventually(statusFn(e.store, "clean")).WithContext(ctx).Should(HaveField("Owner", "one"))
		start(newRunner(e.another(ctx), "two", projections.Projection{Name: "clean", Handler: s.recorder("two")}))
		stop1() // releases the lease: "two" need not wait for it to expire
		Eventually(statusFn(e.store, "clean")).WithContext(ctx).Should(HaveField("Owner", "two"))
		open(ctx, e.store, 0)
		Eventually(s.owners).WithContext(ctx).Should(Equal(map[string]int{"two": 1}))
	})
})

var _ = Describe("Guarantee 4: fencing", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	It("keeps a worker paused past its lease from checkpointing, and rolls its writes back", func(ctx SpecContext) {
		_, err := e.pool.Exec(ctx, `CREATE TABLE writes (owner text, position bigint)`)
		Expect(err).NotTo(HaveOccurred())
		a := open(ctx, e.store, 5)
		deposit(ctx, e.store, a, 1)

		paused, resumed := make(chan struct{}), make(chan struct{})
		var resumeOnce sync.Once
		resume := func() { resumeOnce.Do(func() { close(resumed) }) }
		var pausedOnce sync.Once
		handler := func(owner string) projections.Handler {
			return projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
				if _, err := tx.Exec(ctx, `INSERT INTO writes VALUES ($1, $2)`, owner, env.Position); err != nil {
					return err
				}
				if owner == "old" {
					pausedOnce.Do(func() { close(paused) })
					<-resumed // a GC pause, a stopped VM: no lease renewal meanwhile
				}
				return balanceHandler().Handle(ctx, tx, env)
			})
		}
		old := newRunner(e.store, "old", projections.Projection{Name: "fenced", Handler: handler("old")})
		stopOld := start(old)
		DeferCleanup(resume) // before stopOld, after a failure too, or stopping it waits for ever
		Eventually(paused).WithContext(ctx).Should(BeClosed())
		oldFence := status(ctx, e.store, "fenced").Fence

		start(newRunner(e.another(ctx), "new", projections.Projection{Name: "fenced", Handler: handler("new")}))
		Eventually(statusFn(e.store, "fenced")).WithContext(ctx).Should(HaveField("Delivered", BeEquivalentTo(2)))
		st := status(ctx, e.store, "fenced")
		Expect(st.Owner).To(Equal("new"))
		Expect(st.Fence).To(BeNumerically(">", oldFence))

		resume() // the old worker wakes up and tries to finish its batch
		stopOld()
		after := status(ctx, e.store, "fenced")
		Expect(after.Fence).To(Equal(st.Fence))
		Expect(after.Position).To(Equal(st.Position))
		Expect(after.Delivered).To(BeEquivalentTo(2))
		Expect(mtestCount(ctx, e, `SELECT count(*) FROM writes WHERE owner = 'old'`)).To(BeZero())
		Expect(mtestCount(ctx, e, `SELECT count(*) FROM writes WHERE owner = 'new'`)).To(Equal(2))
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 6}))
	})
})

func mtestCount(ctx context.Context, e env, sql string) int {
	var n int
	Expect(e.pool.QueryRow(ctx, sql).Scan(&n)).To(Succeed())
	return n
}

var _ = Describe("Guarantee 5: a crash between handler and checkpoint", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	It("delivers the event again to at-least-once effects, and exactly once to the transactional read model", func(ctx SpecContext) {
		a := open(ctx, e.store, 1)
		deposit(ctx, e.store, a, 2)
		var effects sync.Map // position -> *atomic.Int32, outside any transaction
		runCtx, crash := context.WithCancel(ctx)
		var crashed atomic.Bool
		handler := projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
			n, _ := effects.LoadOrStore(env.Position, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			if err := balanceHandler().Handle(ctx, tx, env); err != nil {
				return err
			}
			if env.Version == 2 && crashed.CompareAndSwap(false, true) {
				crash() // the process dies before the checkpoint commits
			}
			return nil
		})
		first := newRunner(e.store, "first", projections.Projection{Name: "crash", Handler: handler, BatchSize: 10})
		projections.CrashOnStop(first)
		Expect(first.Run(runCtx)).To(Succeed())
		Expect(crashed.Load()).To(BeTrue())
		Expect(balances(ctx, e.pool)).To(BeEmpty(), "the batch rolled back")

		start(newRunner(e.another(ctx), "second", projections.Projection{Name: "crash", Handler: handler, BatchSize: 10}))
		Eventually(statusFn(e.store, "crash")).WithContext(ctx).Should(HaveField("Delivered", BeEquivalentTo(2)))
		for _, v := range []int64{1, 2} {
			n, _ := effects.Load(positionOf(ctx, e.store, a, v))
			Expect(n.(*atomic.Int32).Load()).To(BeEquivalentTo(2), "v%d seen again", v)
		}
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 3}))
		Expect(mtestCount(ctx, e, `SELECT applied FROM balances`)).To(Equal(2))
	})
})

var _ = Describe("Guarantee 6: failing handlers", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	It("retries a transient failure with backoff", func(ctx SpecContext) {
		open(ctx, e.store, 1)
		var calls atomic.Int32
		r := newRunner(e.store, "", projections.Projection{Name: "flaky", Handler: projections.Plain(
			func(context.Context, mire.Envelope) error {
				if calls.Add(1) < 3 {
					return errors.New("not yet")
				}
				return nil
			})})
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(calls.Load()).To(BeEquivalentTo(3))
		st := status(ctx, e.store, "flaky")
		Expect(st.State).To(Equal(projections.Running))
		Expect(st.Delivered).To(BeEquivalentTo(1))
	})

	// Batches that lock the same rows in different orders (partitions or
	// projections updating shared aggregates) deadlock now and then;
	// PostgreSQL aborts one, and it must be retried without its event
	// counting it as a failure towards a halt.
	It("retries a batch aborted by a deadlock or a serialization failure without counting it towards a halt", func(ctx SpecContext) {
		open(ctx, e.store, 1)
		var calls atomic.Int32
		cfg := quiet() // MaxAttempts 3
		r, err := projections.NewRunner(e.store, cfg, projections.Projection{Name: "contended", Handler: projections.HandlerFunc(
			func(ctx context.Context, tx pgx.Tx, _ mire.Envelope) error {
				switch n := calls.Add(1); {
				case n <= 4:
					_, err := tx.Exec(ctx, `DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$`)
					return err
				case n <= 2*int32(cfg.MaxAttempts)+2:
					_, err := tx.Exec(ctx, `DO $$ BEGIN RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001'; END $$`)
					return fmt.Errorf("wrapped by the handler: %w", err)
				}
				return nil
			})})
		Expect(err).NotTo(HaveOccurred())
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(calls.Load()).To(BeEquivalentTo(2*cfg.MaxAttempts + 3))
		st := status(ctx, e.store, "contended")
		Expect(st.State).To(Equal(projections.Running))
		Expect(st.Delivered).To(BeEquivalentTo(1))
	})

	It("retries a failure the handler marks Transient (a broker down) as long as it lasts, without counting it towards a halt", func(ctx SpecContext) {
		open(ctx, e.store, 1)
		open(ctx, e.store, 2)
		var calls atomic.Int32
		cfg := quiet() // MaxAttempts 3
		r, err := projections.NewRunner(e.store, cfg, projections.Projection{Name: "broker", Handler: projections.Plain(
			func(context.Context, mire.Envelope) error {
				if calls.Add(1) <= 3*int32(cfg.MaxAttempts) {
					return projections.Transient(errors.New("broker unreachable"))
				}
				return nil
			})})
		Expect(err).NotTo(HaveOccurred())
		Expect(r.CatchUp(ctx)).To(Succeed())
		st := status(ctx, e.store, "broker")
		Expect(st.State).To(Equal(projections.Running))
		Expect(st.Delivered).To(BeEquivalentTo(2))
		Expect(projections.Transient(nil)).To(BeNil())
		wrapped := projections.Transient(context.DeadlineExceeded)
		Expect(wrapped).To(MatchError(context.DeadlineExceeded))
		Expect(wrapped.Error()).To(Equal(context.DeadlineExceeded.Error()))
	})

	// A batch can fail for the moment only because it is too large to
	// finish in time (a relay publishing a hot stream, one message per
	// broker round trip, within its publish timeout): retried whole, it
	// would fail for ever.
	It("halves a batch that keeps failing for the moment until one gets through, then grows it back", func(ctx SpecContext) {
		stream := open(ctx, e.store, 1)
		for range 199 {
			deposit(ctx, e.store, stream, 1)
		}
		const fits = 5 // the largest batch that finishes in time, for the first 100 events
		var mu sync.Mutex
		var sizes []int
		var versions []int64
		h := &batchFunc{fn: func(_ context.Context, _ pgx.Tx, events []mire.Envelope) error {
			if len(events) > fits && events[0].Version <= 100 {
				return projections.Transient(errors.New("publish timed out"))
			}
			mu.Lock()
			defer mu.Unlock()
			sizes = append(sizes, len(events))
			for _, env := range events {
				versions = append(versions, env.Version)
			}
			return nil
		}}
		r, err := projections.NewRunner(e.store, quiet(), projections.Projection{Name: "hot", BatchSize: 32, Handler: h})
		Expect(err).NotTo(HaveOccurred())
		cctx, cancel := context.WithTimeout(ctx, patience(quiet()))
		defer cancel()
		Expect(r.CatchUp(cctx)).To(Succeed())

		mu.Lock()
		defer mu.Unlock()
		want := make([]int64, 200)
		for i := range want {
			want[i] = int64(i + 1)
		}
		Expect(versions).To(Equal(want), "every event once, in order")
		Expect(sizes[0]).To(BeNumerically("<=", fits))
		Expect(sizes[len(sizes)-1]).To(BeNumerically(">", fits), "grown back: %v", sizes)
		Expect(status(ctx, e.store, "hot").State).To(Equal(projections.Running))
	})

	It("halts only the projection whose handler keeps failing, with the error and event, until resumed", func(ctx SpecContext) {
		a := open(ctx, e.store, 1)
		deposit(ctx, e.store, a, 2)
		poison := positionOf(ctx, e.store, a, 2)
		var fixed atomic.Bool
		var good, bad seen
		r := newRunner(e.store, "", projections.Projection{Name: "bad", BatchSize: 10, Handler: projections.Plain(
			func(_ context.Context, env mire.Envelope) error {
				if env.Position == poison && !fixed.Load() {
					return errors.New("cannot handle deposits")
				}
				bad.add(env, "")
				return nil
			})}, projections.Projection{Name: "good", Handler: good.recorder("")})
		start(r)
		Eventually(statusFn(e.store, "bad")).WithContext(ctx).Should(HaveField("State", projections.Halted))
		st := status(ctx, e.store, "bad")
		Expect(st.LastError).To(ContainSubstring("cannot handle deposits"))
		Expect(st.FailedEvent).To(Equal(&projections.EventRef{StreamID: a, Version: 2, Position: poison, Type: "Deposited"}))
		Expect(st.Delivered).To(BeEquivalentTo(1), "the events before the poison one are checkpointed")
		Expect(st.Lag).To(BeEquivalentTo(1))

		deposit(ctx, e.store, a, 3)
		Eventually(good.count).WithContext(ctx).Should(Equal(3))
		Expect(status(ctx, e.store, "bad").State).To(Equal(projections.Halted))
		Expect(bad.streamVersions(a)).To(HaveEach(BeEquivalentTo(1)), "v1 may be seen again: its first batch rolled back")

		fixed.Store(true)
		Expect(projections.Resume(ctx, e.store, "bad")).To(Succeed())
		Eventually(bad.streamVersions).WithContext(ctx).WithArguments(a).Should(ContainElement(BeEquivalentTo(3)))
		Expect(slices.Compact(bad.streamVersions(a))).To(Equal([]int64{1, 2, 3}))
		st = status(ctx, e.store, "bad")
		Expect(st.State).To(Equal(projections.Running))
		Expect(st.LastError).To(BeEmpty())
		Expect(st.FailedEvent).To(BeNil())
	})

	It("halts on a stored event it cannot decode rather than skip it", func(ctx SpecContext) {
		_, err := e.pool.Exec(ctx, `INSERT INTO mire.streams (stream_id, category, version) VALUES ('account-x', 'account', 1);
			INSERT INTO mire.events (stream_id, version, category, event_id, type, data)
			VALUES ('account-x', 1, 'account', gen_random_uuid(), 'Vanished', '{}')`)
		Expect(err).NotTo(HaveOccurred())
		r := newRunner(e.store, "", projections.Projection{Name: "undecodable", Handler: (&seen{}).recorder("")})
		err = r.CatchUp(ctx)
		Expect(errors.Is(err, projections.ErrHalted)).To(BeTrue(), "%v", err)
		st := status(ctx, e.store, "undecodable")
		Expect(st.FailedEvent.Type).To(Equal("Vanished"))
		Expect(st.LastError).To(ContainSubstring("account-x"))
	})
})
